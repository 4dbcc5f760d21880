/* maxpool_row.h: max pooling a row range at a time, private to kernels/: the conv + ReLU + max
 * pool of conv2d.c pools the conv rows it has just made in a small buffer, and makes its conv
 * output's gradient a block of rows at a time. */
#ifndef KERNELS_MAXPOOL_ROW_H
#define KERNELS_MAXPOOL_ROW_H

#include "kernels/kernels.h"

/* Row oh of image n of maxpool2d_forward's y and argmax (the argmax indexing the whole input
 * [N,H,W,C]), with that image's input rows from xr: input (ih, iw, c) at
 * xr[((ih - row0) * W + iw) * C + c], for the rows of the row's windows. */
void maxpool2d_forward_row(const Pool2dShape *s, const float *xr, int row0, int n, int oh,
                           float *y, int32_t *argmax);

/* Rows [r0, r1) of image n of maxpool2d_backward's dx (y == NULL) or
 * maxpool2d_relu_backward_from_y's (y given), into dxr[r1 - r0, W, C]: each element the same adds
 * in the same order, so the same bits. The backward of conv + ReLU + pool's first layer makes its
 * conv output's gradient this way, a block of rows at a time. */
void maxpool2d_backward_rows(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                             const float *y, int n, int r0, int r1, float *dxr);

#endif
