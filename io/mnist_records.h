/* mnist_records.h: MNIST as TFRecords of tf.train.Example, the layout of the original job's
 * converter: one Example per image, in the original order, with features
 *     depth, height, label, width : int64_list of one value (1, 28, label 0..9, 28)
 *     image_raw                   : bytes_list of one value, the 784 raw uint8 pixels, row-major
 * (features written in name order). What `tfrecord from-idx` writes and the trainer reads.
 */
#ifndef IO_MNIST_RECORDS_H
#define IO_MNIST_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "io/example.h"
#include "io/tfrecord.h"

enum { MNIST_ROWS = 28, MNIST_COLS = 28, MNIST_DEPTH = 1, MNIST_PIXELS = 784, MNIST_CLASSES = 10 };

/* A decoded set. Layout: images NHWC uint8 [n, 28, 28, 1] (pixel (i, r, c) at i*784 + r*28 + c),
 * labels int32 [n]. */
typedef struct {
    int64_t n;
    uint8_t *images;
    int32_t *labels;
} MnistSet;

/* Loads every record of the inputs (each a file, a directory or a glob: io/path_list.h), in order,
 * into out (which this allocates; free with mnist_set_free). compression: a TfrCompression,
 * TFR_AUTO to detect per file. Every record is checked (both CRCs, a parsable Example, image_raw
 * of exactly 784 bytes, label 0..9, height/width/depth 28/28/1 when present); the first problem
 * fails the load with an error naming the file, the record index and its offset. 0 ok, -1 error.
 * An input set with no records at all is an error too. */
int mnist_load_tfrecords(const char *const *inputs, int ninputs, int compression, MnistSet *out,
                         char *err, size_t errlen);
void mnist_set_free(MnistSet *s);

/* One serialized Example (its bytes) to pixels[784] and *label, using view as scratch.
 * 0 ok; -1 with err saying which feature is wrong (no file/record context: callers add it). */
int mnist_decode_example(ExampleView *view, const uint8_t *data, size_t n, uint8_t *pixels,
                         int32_t *label, char *err, size_t errlen);
/* Appends the serialized Example of one image to out (b is scratch). 0 ok, -1 out of memory. */
int mnist_encode_example(ExampleBuilder *b, const uint8_t *pixels, int label, PbBuf *out);

/* tfrecord from-idx: IDX images + labels (gzip or raw) -> out_path (written atomically).
 * *count gets the number of records written. 0 ok, -1 with err set. */
int mnist_idx_to_tfrecord(const char *images_idx, const char *labels_idx, const char *out_path,
                          TfrCompression c, int64_t *count, char *err, size_t errlen);

#endif
