/* idx.c: IDX reader (see idx.h). */
#include "io/idx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Reads exactly n bytes (n may exceed what one gzread call takes). Returns bytes read, -1 error. */
static int64_t gz_read_full(gzFile g, uint8_t *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t piece = n - got > (1u << 30) ? (1u << 30) : n - got;
        int k = gzread(g, p + got, (unsigned)piece);
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (int64_t)got;
}

static const char *gz_why(gzFile g) {
    int code;
    const char *msg = gzerror(g, &code);
    return code == Z_ERRNO ? strerror(errno) : msg;
}

int idx_read(const char *path, IdxArray *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    gzFile g = gzopen(path, "rb");
    if (!g) {
        snprintf(err, errlen, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return -1;
    }
    uint8_t head[4 + 4 * IDX_MAX_DIMS];
    int rc = -1;
    int64_t k = gz_read_full(g, head, 4);
    if (k < 0) {
        snprintf(err, errlen, "%s: read failed: %s", path, gz_why(g));
        goto done;
    }
    if (k < 4) {
        snprintf(err, errlen, "%s: not an IDX file (only %lld bytes)", path, (long long)k);
        goto done;
    }
    if (head[0] != 0 || head[1] != 0 || head[3] == 0 || head[3] > IDX_MAX_DIMS) {
        snprintf(err, errlen, "%s: not an IDX file (magic %02x %02x %02x %02x)", path, head[0], head[1],
                 head[2], head[3]);
        goto done;
    }
    if (head[2] != 0x08) {
        snprintf(err, errlen, "%s: IDX data type 0x%02x is not supported (only 0x08, unsigned byte)",
                 path, head[2]);
        goto done;
    }
    out->ndims = head[3];
    size_t dims_bytes = 4 * (size_t)out->ndims;
    if (gz_read_full(g, head + 4, dims_bytes) != (int64_t)dims_bytes) {
        snprintf(err, errlen, "%s: truncated IDX header", path);
        goto done;
    }
    uint64_t size = 1;
    for (int i = 0; i < out->ndims; i++) {
        const uint8_t *d = head + 4 + 4 * i;
        out->dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        size *= out->dims[i];
        if (size > ((uint64_t)1 << 40)) {
            snprintf(err, errlen, "%s: IDX dimensions are absurd", path);
            goto done;
        }
    }
    /* The buffer grows with the bytes actually read (doubling, up to what the header promises),
     * so a short file claiming huge dimensions fails as truncated without a huge allocation. */
    out->size = (size_t)size;
    size_t cap = 0, got = 0;
    while (got < out->size) {
        if (got == cap) {
            size_t ncap = cap ? 2 * cap : (size_t)1 << 20;
            if (ncap > out->size) ncap = out->size;
            uint8_t *p = realloc(out->data, ncap);
            if (!p) {
                snprintf(err, errlen, "%s: out of memory for %zu bytes", path, ncap);
                goto done;
            }
            out->data = p;
            cap = ncap;
        }
        k = gz_read_full(g, out->data + got, cap - got);
        if (k < 0) {
            snprintf(err, errlen, "%s: read failed: %s", path, gz_why(g));
            goto done;
        }
        got += (size_t)k;
        if (got < cap) break;                 /* end of file */
    }
    if (!out->data && !(out->data = malloc(1))) {   /* a dimension of 0: no data, non-NULL */
        snprintf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    if (got < out->size) {
        snprintf(err, errlen, "%s: truncated: the header promises %llu data bytes, the file has %zu",
                 path, (unsigned long long)size, got);
        goto done;
    }
    uint8_t extra;
    k = gz_read_full(g, &extra, 1);
    if (k != 0) {
        snprintf(err, errlen, "%s: %s after the %llu data bytes the header promises", path,
                 k < 0 ? "read error" : "unexpected trailing bytes", (unsigned long long)size);
        goto done;
    }
    rc = 0;
done:
    gzclose(g);
    if (rc) idx_free(out);
    return rc;
}

void idx_free(IdxArray *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

int idx_read_mnist(const char *images_path, const char *labels_path, IdxArray *images,
                   IdxArray *labels, char *err, size_t errlen) {
    memset(labels, 0, sizeof *labels);
    if (idx_read(images_path, images, err, errlen)) return -1;
    if (images->ndims != 3) {
        snprintf(err, errlen, "%s: not an MNIST image file: %d dimensions (magic 2051 has 3)",
                 images_path, images->ndims);
        goto fail;
    }
    if (idx_read(labels_path, labels, err, errlen)) goto fail;
    if (labels->ndims != 1) {
        snprintf(err, errlen, "%s: not an MNIST label file: %d dimensions (magic 2049 has 1)",
                 labels_path, labels->ndims);
        goto fail;
    }
    if (labels->dims[0] != images->dims[0]) {
        snprintf(err, errlen, "%s has %u images but %s has %u labels", images_path, images->dims[0],
                 labels_path, labels->dims[0]);
        goto fail;
    }
    for (size_t i = 0; i < labels->size; i++) {
        if (labels->data[i] > 9) {
            snprintf(err, errlen, "%s: label %zu is %u, expected 0..9", labels_path, i, labels->data[i]);
            goto fail;
        }
    }
    return 0;
fail:
    idx_free(images);
    idx_free(labels);
    return -1;
}
