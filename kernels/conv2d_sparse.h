/* conv2d_sparse.h: the conv forward over one image's nonzero inputs, private to kernels/.
 *
 * A conv fed by a ReLU and a max pool sees mostly zeros: on MNIST, conv2's input (pool1's
 * output) is ~40% nonzero after 100 training steps and ~25% after 2,000
 * (bench_relu_sparsity). The im2col GEMM multiplies every zero; these loops take only the
 * nonzeros, so their work is the nonzero share of the GEMM's. conv2d_forward uses them per
 * image where that image is at most CONV_SPARSE_MAX_DENSITY nonzero.
 *
 * The sum of each output, as kernels.h states for conv2d_forward on this path: acc = 0, then
 * acc = fmaf(x, w, acc) over the taps (kh, kw) inside the image in order and, within a tap,
 * over the input channels c in order whose x is not zero; then acc + b[k]. */
#ifndef KERNELS_CONV2D_SPARSE_H
#define KERNELS_CONV2D_SPARSE_H

#include "kernels/kernels.h"

/* An image at most this share nonzero takes the sparse loops. On random zeros their time meets
 * the AVX-512 GEMM's near 55% (conv2, 1 thread: 10.9 ms against 11.2; AVX2: 13.9 against 17.1);
 * MNIST's zeros come in whole background pixels, which cost the lists nothing, and there 50%
 * made the step 3 ms slower than 60%, and 75% no faster (docs/kernels-cpu.md step 28). */
#define CONV_SPARSE_MAX_DENSITY 0.6

/* Scratch for one image, in floats: the nonzero lists of conv2d_sparse_forward_image. */
size_t conv2d_sparse_image_floats(const Conv2dShape *s);

/* yi[OH,OW,K] = conv of xi[H,W,C] with w, + b when not NULL, over xi's nonzeros, when xi is at
 * most CONV_SPARSE_MAX_DENSITY nonzero: returns 1. Otherwise returns 0 and writes nothing to
 * yi. scratch: conv2d_sparse_image_floats(s) floats, 4-byte aligned. */
int conv2d_sparse_forward_image(const Conv2dShape *s, const float *xi, const float *w,
                                const float *b, float *yi, float *scratch);

#endif
