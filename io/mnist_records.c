/* mnist_records.c: MNIST <-> TFRecords of Examples (see mnist_records.h). */
#include "io/mnist_records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "io/fs.h"
#include "io/idx.h"
#include "io/path_list.h"

int mnist_decode_example(ExampleView *view, const uint8_t *data, size_t n, uint8_t *pixels,
                         int32_t *label, char *err, size_t errlen) {
    if (example_parse(view, data, n, err, errlen)) return -1;
    const uint8_t *raw;
    size_t raw_len;
    int64_t v;
    if (example_get_bytes(view, "image_raw", &raw, &raw_len, err, errlen)) return -1;
    if (raw_len != MNIST_PIXELS) {
        snprintf(err, errlen, "feature 'image_raw' has %zu bytes, expected %d (28x28x1 uint8)", raw_len,
                 MNIST_PIXELS);
        return -1;
    }
    if (example_get_int64s(view, "label", &v, 1, err, errlen)) return -1;
    if (v < 0 || v >= MNIST_CLASSES) {
        snprintf(err, errlen, "feature 'label' is %lld, expected 0..9", (long long)v);
        return -1;
    }
    /* The shape features are optional (other converters omit them) but must agree when present. */
    static const struct { const char *name; int64_t want; } dims[] = {
        {"height", MNIST_ROWS}, {"width", MNIST_COLS}, {"depth", MNIST_DEPTH}};
    for (int i = 0; i < 3; i++) {
        if (!example_find(view, dims[i].name)) continue;
        int64_t d;
        if (example_get_int64s(view, dims[i].name, &d, 1, err, errlen)) return -1;
        if (d != dims[i].want) {
            snprintf(err, errlen, "feature '%s' is %lld, expected %lld (MNIST is 28x28x1)", dims[i].name,
                     (long long)d, (long long)dims[i].want);
            return -1;
        }
    }
    memcpy(pixels, raw, MNIST_PIXELS);
    *label = (int32_t)v;
    return 0;
}

int mnist_encode_example(ExampleBuilder *b, const uint8_t *pixels, int label, PbBuf *out) {
    const int64_t depth = MNIST_DEPTH, height = MNIST_ROWS, width = MNIST_COLS, lab = label;
    example_builder_reset(b);
    example_add_int64s(b, "depth", &depth, 1);
    example_add_int64s(b, "height", &height, 1);
    example_add_bytes1(b, "image_raw", pixels, MNIST_PIXELS);
    example_add_int64s(b, "label", &lab, 1);
    example_add_int64s(b, "width", &width, 1);
    return example_serialize(b, out);
}

void mnist_set_free(MnistSet *s) {
    free(s->images);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

/* A large zeroed-on-first-touch buffer; big ones ask for transparent huge pages, which turns the
 * ~11,500 page faults of the 47 MB training images into a few dozen (a third of the load time). */
static void *alloc_big(size_t n) {
    enum { HUGE = 2 << 20 };
    if (n < 2 * (size_t)HUGE) return malloc(n);
    void *p = NULL;
    size_t rounded = (n + HUGE - 1) / HUGE * HUGE;
    if (posix_memalign(&p, HUGE, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);   /* advice only: failure is harmless */
#endif
    return p;
}

/* Room for `want` images in all (want > cap: capacity at least doubles). */
static int reserve(MnistSet *s, int64_t *cap, int64_t want) {
    if (want <= *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 4096;
    if (nc < want) nc = want;
    uint8_t *im = alloc_big((size_t)nc * MNIST_PIXELS);
    if (!im) return -1;
    if (s->n) memcpy(im, s->images, (size_t)s->n * MNIST_PIXELS);
    free(s->images);
    s->images = im;
    int32_t *lb = realloc(s->labels, (size_t)nc * sizeof *lb);
    if (!lb) return -1;
    s->labels = lb;
    *cap = nc;
    return 0;
}

static int load_file(const char *path, int compression, MnistSet *out, int64_t *cap,
                     ExampleView *view, char *err, size_t errlen) {
    TfrReader *r = tfr_reader_open(path, (TfrCompression)compression, err, errlen);
    if (!r) return -1;
    const uint8_t *d;
    size_t n;
    int rc;
    char why[256];
    struct stat st;
    char ignore[512];
    int64_t file_size = fs_stat(path, &st, ignore, sizeof ignore) == 0 && S_ISREG(st.st_mode)
                            ? (int64_t)st.st_size : -1;
    int first = 1;
    while ((rc = tfr_reader_next(r, &d, &n)) == 1) {
        /* Uncompressed: the file size over the first record's size says how many to expect
         * (all MNIST records are the same size), so the arrays are allocated once. */
        int64_t want = out->n + 1;
        if (first && file_size > 0 && tfr_reader_compression(r) == TFR_NONE)
            want = out->n + file_size / (int64_t)(n + 16) + 1;
        first = 0;
        if (reserve(out, cap, want)) {
            snprintf(err, errlen, "%s: out of memory after %lld images", path, (long long)out->n);
            rc = -1;
            break;
        }
        if (mnist_decode_example(view, d, n, out->images + out->n * MNIST_PIXELS, &out->labels[out->n],
                                 why, sizeof why)) {
            snprintf(err, errlen, "%s: record %llu at offset %llu: %s", path,
                     (unsigned long long)tfr_reader_index(r), (unsigned long long)tfr_reader_offset(r),
                     why);
            rc = -1;
            break;
        }
        out->n++;
    }
    if (rc < 0 && tfr_reader_error(r)[0]) snprintf(err, errlen, "%s", tfr_reader_error(r));
    tfr_reader_close(r);
    return rc < 0 ? -1 : 0;
}

int mnist_load_tfrecords(const char *const *inputs, int ninputs, int compression, MnistSet *out,
                         char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    PathList files = {0};
    if (path_list_expand(&files, inputs, ninputs, err, errlen)) {
        path_list_free(&files);
        return -1;
    }
    ExampleView view;
    example_view_init(&view);
    int64_t cap = 0;
    int rc = 0;
    for (int i = 0; i < files.n && rc == 0; i++)
        rc = load_file(files.paths[i], compression, out, &cap, &view, err, errlen);
    if (rc == 0 && out->n == 0) {
        snprintf(err, errlen, "%s%s: no records", files.n ? files.paths[0] : "(no input)",
                 files.n > 1 ? " and the other inputs" : "");
        rc = -1;
    }
    example_view_free(&view);
    path_list_free(&files);
    if (rc) mnist_set_free(out);
    return rc;
}

int mnist_idx_to_tfrecord(const char *images_idx, const char *labels_idx, const char *out_path,
                          TfrCompression c, int64_t *count, char *err, size_t errlen) {
    IdxArray images, labels;
    if (idx_read_mnist(images_idx, labels_idx, &images, &labels, err, errlen)) return -1;
    int rc = -1;
    if (images.dims[1] != MNIST_ROWS || images.dims[2] != MNIST_COLS) {
        snprintf(err, errlen, "%s: images are %ux%u, expected 28x28", images_idx, images.dims[1],
                 images.dims[2]);
        idx_free(&images);
        idx_free(&labels);
        return -1;
    }
    TfrWriter *w = tfr_writer_open(out_path, c, TFR_WRITE_ATOMIC, err, errlen);
    if (!w) goto done;
    ExampleBuilder b;
    PbBuf rec;
    example_builder_init(&b);
    pb_buf_init(&rec);
    for (uint32_t i = 0; i < images.dims[0]; i++) {
        pb_buf_reset(&rec);
        if (mnist_encode_example(&b, images.data + (size_t)i * MNIST_PIXELS, labels.data[i], &rec)) {
            snprintf(err, errlen, "%s: out of memory", out_path);
            break;
        }
        if (tfr_writer_write(w, rec.data, rec.len)) {
            snprintf(err, errlen, "%s", tfr_writer_error(w));
            break;
        }
    }
    example_builder_free(&b);
    pb_buf_free(&rec);
    if (tfr_writer_records(w) != images.dims[0]) {
        tfr_writer_abort(w);
        goto done;
    }
    *count = (int64_t)tfr_writer_records(w);
    rc = tfr_writer_close(w, err, errlen);
done:
    idx_free(&images);
    idx_free(&labels);
    return rc;
}
