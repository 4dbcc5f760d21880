/* fuzz_example: tf.train.Example parsing (io/example.c) and the MNIST record decoder
 * (io/mnist_records.c: mnist_decode_example, what the trainer and `tfrecord verify` run on every
 * record).
 *
 * Checks the parser's promise that a parsed view's accessors cannot fail: every feature's values
 * are read back, exactly `count` of them.
 */
#include "fuzz_util.h"

#include "io/example.h"
#include "io/mnist_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ExampleView v;
    char err[512];
    example_view_init(&v);
    if (example_parse(&v, data, size, err, sizeof err) != 0) {
        fuzz_check_error(err, sizeof err);
    } else {
        for (size_t i = 0; i < v.n; i++) {
            const ExFeature *f = &v.features[i];
            if (f->kind == EX_KIND_INT64 || f->kind == EX_KIND_FLOAT) {
                if (f->count > size) abort();                   /* each value takes >= 1 byte */
                void *out = malloc((f->count ? f->count : 1) * 8);
                if (!out) abort();
                if (f->kind == EX_KIND_INT64) ex_feature_int64s(f, out);
                else ex_feature_floats(f, out);
                free(out);
            } else if (f->kind == EX_KIND_BYTES) {
                ExBytesIter it;
                const uint8_t *p;
                size_t n, k = 0;
                memset(&it, 0, sizeof it);
                while (ex_feature_bytes_next(f, &it, &p, &n) == 1) {
                    if (p < (const uint8_t *)data || n > (size_t)((const uint8_t *)data + size - p))
                        abort();
                    k++;
                }
                if (k != f->count) abort();
            }
            /* the typed look-ups by the feature's own name (when it is a C string) */
            char name[64];
            if (f->name_len < sizeof name && !memchr(f->name, 0, f->name_len)) {
                memcpy(name, f->name, f->name_len);
                name[f->name_len] = 0;
                int64_t i64[4];
                float fl[4];
                const uint8_t *p;
                size_t n;
                if (example_get_int64s(&v, name, i64, 1, err, sizeof err)) fuzz_check_error(err, sizeof err);
                if (example_get_floats(&v, name, fl, 4, err, sizeof err)) fuzz_check_error(err, sizeof err);
                if (example_get_bytes(&v, name, &p, &n, err, sizeof err)) fuzz_check_error(err, sizeof err);
            }
        }
    }
    uint8_t pixels[MNIST_PIXELS];
    int32_t label = -1;
    if (mnist_decode_example(&v, data, size, pixels, &label, err, sizeof err) != 0)
        fuzz_check_error(err, sizeof err);
    else if (label < 0 || label > 9)
        abort();                                     /* a decoded record has a valid label */
    example_view_free(&v);
    return 0;
}
