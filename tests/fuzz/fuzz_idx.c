/* fuzz_idx: the IDX reader (io/idx.c) and the MNIST pair checks on arbitrary files.
 *
 * The input is split at a point its first byte picks into an images file and a labels file for
 * idx_read_mnist; the whole input is also read alone with idx_read. Memory must follow the
 * bytes actually present, never the sizes a header claims.
 */
#include "fuzz_util.h"

#include "io/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    IdxArray a, images, labels;
    const char *path = fuzz_file(0, data, size);
    if (idx_read(path, &a, err, sizeof err) != 0) {
        fuzz_check_error(err, sizeof err);
        if (!strstr(err, path)) abort();
    } else {
        size_t expect = 1;
        for (int i = 0; i < a.ndims; i++) expect *= a.dims[i];
        if (a.size != expect || a.size > size) abort();
        if (a.size) (void)a.data[a.size - 1];
        idx_free(&a);
    }
    if (size < 1) return 0;
    size_t split = 1 + (size - 1) * data[0] / 255;
    const char *ipath = fuzz_file(0, data + 1, split - 1);
    const char *lpath = fuzz_file(1, data + split, size - split);
    if (idx_read_mnist(ipath, lpath, &images, &labels, err, sizeof err) != 0) {
        fuzz_check_error(err, sizeof err);
    } else {
        if (images.ndims != 3 || labels.ndims != 1 || images.dims[0] != labels.dims[0]) abort();
        for (size_t i = 0; i < labels.size; i++)
            if (labels.data[i] > 9) abort();
        idx_free(&images);
        idx_free(&labels);
    }
    return 0;
}
