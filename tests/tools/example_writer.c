/* tool_example_writer OUT none|gzip|zlib N: writes N deterministic tf.train.Examples with our
 * writer, for tests/tf/test_tfrecord_interop.py (which recomputes the same values in Python).
 * Record i:
 *   "bytes"  : bytes_list [ bytes((i*7 + k) & 255 for k < i % 300), b"", b"label-<i>" ]
 *   "empty"  : float_list [] (even i only)
 *   "floats" : float_list [ float32(((i + 1) * 0.1) * (k + 1)) for k < i % 4 + 1 ]
 *   "int64s" : int64_list [ i, -i, 2^62 + i, i % 7 == 0 ? INT64_MIN : INT64_MAX ]
 *   "label"  : int64_list [ i % 10 ]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/example.h"
#include "io/tfrecord.h"

int main(int argc, char **argv) {
    TfrCompression c;
    if (argc != 4 || tfr_compression_parse(argv[2], &c) != 0 || c == TFR_AUTO) {
        fprintf(stderr, "usage: tool_example_writer OUT none|gzip|zlib N\n");
        return 2;
    }
    long n = strtol(argv[3], NULL, 10);
    char err[512];
    TfrWriter *w = tfr_writer_open(argv[1], c, TFR_WRITE_ATOMIC, err, sizeof err);
    if (!w) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    ExampleBuilder b;
    PbBuf rec;
    example_builder_init(&b);
    pb_buf_init(&rec);
    uint8_t blob[300];
    char label_text[32];
    for (long i = 0; i < n; i++) {
        example_builder_reset(&b);
        pb_buf_reset(&rec);
        size_t blob_len = (size_t)(i % 300);
        for (size_t k = 0; k < blob_len; k++) blob[k] = (uint8_t)((i * 7 + (long)k) & 255);
        int label_len = snprintf(label_text, sizeof label_text, "label-%ld", i);
        const void *vals[3] = {blob, "", label_text};
        const size_t lens[3] = {blob_len, 0, (size_t)label_len};
        example_add_bytes(&b, "bytes", vals, lens, 3);
        if (i % 2 == 0) example_add_floats(&b, "empty", NULL, 0);
        float floats[4];
        int nf = (int)(i % 4) + 1;
        for (int k = 0; k < nf; k++) floats[k] = (float)(((double)(i + 1) * 0.1) * (double)(k + 1));
        example_add_floats(&b, "floats", floats, (size_t)nf);
        const int64_t ints[4] = {i, -i, ((int64_t)1 << 62) + i, i % 7 == 0 ? INT64_MIN : INT64_MAX};
        example_add_int64s(&b, "int64s", ints, 4);
        const int64_t label = i % 10;
        example_add_int64s(&b, "label", &label, 1);
        if (example_serialize(&b, &rec) != 0 || tfr_writer_write(w, rec.data, rec.len) != 0) {
            fprintf(stderr, "%s: write failed: %s\n", argv[1], tfr_writer_error(w));
            tfr_writer_abort(w);
            return 1;
        }
    }
    example_builder_free(&b);
    pb_buf_free(&rec);
    if (tfr_writer_close(w, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}
