/* maxpool_row.h: one output row of maxpool2d_forward, private to kernels/: the conv + ReLU +
 * max pool of conv2d_direct.c pools the conv rows it has just made in a small buffer. */
#ifndef KERNELS_MAXPOOL_ROW_H
#define KERNELS_MAXPOOL_ROW_H

#include "kernels/kernels.h"

/* Row oh of image n of maxpool2d_forward's y and argmax (the argmax indexing the whole input
 * [N,H,W,C]), with that image's input rows from xr: input (ih, iw, c) at
 * xr[((ih - row0) * W + iw) * C + c], for the rows of the row's windows. */
void maxpool2d_forward_row(const Pool2dShape *s, const float *xr, int row0, int n, int oh,
                           float *y, int32_t *argmax);

#endif
