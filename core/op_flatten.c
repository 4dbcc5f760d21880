/* op_flatten.c: NHWC [N,H,W,C] -> [N,H*W*C]. Row-major NHWC already is [n][h][w][c], so the
 * flatten is a view of the same memory (and its gradient the same gradient buffer). */
#include "core/ops.h"

Tensor *op_flatten(Tape *t, Tensor *x) {
    if (!x || x->rank < 1) return NULL;
    int shape[2] = {x->shape[0], (int)(x->count / (size_t)x->shape[0])};
    return tape_view(t, x, 2, shape);
}
