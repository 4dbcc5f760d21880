/* bench_data.h: the training data the step benchmarks run on (header-only: each bench C file
 * is a program of its own).
 *   bench_random_data: 60,000 random 28x28 images and labels (Philox stream 3; the same bits in
 *     every program and run)
 *   bench_mnist_data:  MNIST's training set from a folder of IDX files (data/mnist ships them
 *     gzipped; io/idx.c reads them)
 * bench_data_free releases either. */
#ifndef BENCH_BENCH_DATA_H
#define BENCH_BENCH_DATA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/idx.h"
#include "kernels/philox.h"

#define BENCH_PIXELS 784

typedef struct {
    uint8_t *pixels; /* [n,28,28] */
    int32_t *labels; /* [n], 0..9 */
    int n;
} BenchData;

static inline void bench_data_free(BenchData *d) {
    free(d->pixels);
    free(d->labels);
    d->pixels = NULL;
    d->labels = NULL;
    d->n = 0;
}

static inline int bench_random_data(BenchData *d) {
    d->n = 60000;
    d->pixels = malloc((size_t)d->n * BENCH_PIXELS);
    d->labels = malloc((size_t)d->n * sizeof *d->labels);
    if (!d->pixels || !d->labels) return -1;
    for (size_t i = 0; i < (size_t)d->n * BENCH_PIXELS; i++)
        d->pixels[i] = (uint8_t)philox_u32(3, 0, i);
    for (int i = 0; i < d->n; i++) d->labels[i] = (int32_t)(philox_u32(3, 1, (uint64_t)i) % 10u);
    return 0;
}

/* 0, or -1 with the message (naming the file) printed. */
static inline int bench_mnist_data(const char *dir, BenchData *d) {
    char ip[1024], lp[1024], err[512];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte.gz", dir);
    IdxArray images, labels;
    if (idx_read_mnist(ip, lp, &images, &labels, err, sizeof err) != 0) {
        printf("%s\n", err);
        return -1;
    }
    if (images.dims[1] * images.dims[2] != BENCH_PIXELS) {
        printf("%s: images of %ux%u, not 28x28\n", ip, images.dims[1], images.dims[2]);
        idx_free(&images);
        idx_free(&labels);
        return -1;
    }
    d->n = (int)images.dims[0];
    d->pixels = images.data; /* ownership moves to d */
    d->labels = malloc((size_t)d->n * sizeof *d->labels);
    for (int i = 0; d->labels && i < d->n; i++) d->labels[i] = labels.data[i];
    idx_free(&labels);
    return d->labels ? 0 : -1;
}

#endif
