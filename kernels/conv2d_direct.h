/* conv2d_direct.h: direct (no im2col) per-image conv loops for inputs with few channels, private
 * to kernels/. With C = 1 (the first layer) an im2col GEMM has k = KH*KW = 25 and spends more
 * time copying than multiplying; these loops read x and w in place, vectorised over K (AVX2 or
 * AVX-512 when the CPU has it, chosen at run time). Sums run in a fixed order. With conv1's shape
 * (one channel, 5 taps a row, stride 1) on AVX-512, terms whose input is 0 or padding are
 * skipped or added (MNIST's background): each adds +-0 to a sum that is never -0, so every
 * clone gives the same bits where w (forward) and dy (filter gradient) are finite. */
#ifndef KERNELS_CONV2D_DIRECT_H
#define KERNELS_CONV2D_DIRECT_H

#include "kernels/kernels.h"

/* Channel counts up to this use the direct loops. */
#define CONV_DIRECT_MAX_C 4

/* yi[OH,OW,K] = conv of one image xi[H,W,C] with w (+ b when not NULL). */
void conv2d_direct_forward_image(const Conv2dShape *s, const float *xi, const float *w,
                                 const float *b, float *yi);
/* Rows [oh0, oh1) of conv2d_direct_forward_image's yi, into yr[oh1 - oh0, OW, K]: the same
 * values (each pixel's sum does not depend on the rows made with it). */
void conv2d_direct_forward_rows(const Conv2dShape *s, const float *xi, const float *w,
                                const float *b, int oh0, int oh1, float *yr);
/* dw[KH,KW,C,K] += x^T dy and db[K] += dy's sum (db may be NULL) for one image's output rows
 * [oh0, oh1) (xi[H,W,C], dyr holding dy's rows: [oh1 - oh0, OW, K]), per block of
 * CONV_DIRECT_FILTER_ROWS rows from oh0: each block's db terms (its pixels in order) are added
 * first, then for dw the block's sum over its pixels is formed and added. Calls over
 * consecutive blocks from row 0, in order, give one whole-image call's bits. */
#define CONV_DIRECT_FILTER_ROWS 8
void conv2d_direct_filter_rows(const Conv2dShape *s, const float *xi, const float *dyr, int oh0,
                               int oh1, float *dw, float *db);

#endif
