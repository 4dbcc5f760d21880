/* idx.h: the IDX format of the MNIST files (http://yann.lecun.com/exdb/mnist/).
 *
 *   u8 0, u8 0, u8 type (0x08 = unsigned byte), u8 ndims,
 *   ndims x u32 big-endian dimension sizes, then the data, row-major.
 * MNIST: images magic 0x00000803 (2051) [n, 28, 28], labels 0x00000801 (2049) [n].
 * Files may be gzip-compressed (read through zlib's gzread, which also reads plain files).
 */
#ifndef IO_IDX_H
#define IO_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_MAX_DIMS 8

typedef struct {
    int ndims;
    uint32_t dims[IDX_MAX_DIMS];
    uint8_t *data;         /* product(dims) bytes (unsigned byte data only) */
    size_t size;
} IdxArray;

/* Reads a whole IDX file of unsigned bytes. Checks the magic, the type, that the data is exactly
 * as long as the dimensions say (no less, no trailing bytes). 0 ok; -1 with err naming the file. */
int idx_read(const char *path, IdxArray *out, char *err, size_t errlen);
void idx_free(IdxArray *a);

/* idx_read plus the MNIST shape checks: images [n, rows, cols] (3 dims), labels [n] (1 dim) with
 * values 0..9, and the two counts equal. */
int idx_read_mnist(const char *images_path, const char *labels_path, IdxArray *images,
                   IdxArray *labels, char *err, size_t errlen);

#endif
