/* op_mean.c: y = mean of all elements of x (at the current batch); dx = dy / count. */
#include "core/ops.h"

static void mean_fwd(Tape *t, TapeOp *op) {
    t->be->mean_forward(t->be, tensor_count_at(op->in[0], t->n), tensor_f32(op->in[0]),
                        tensor_f32(op->out));
}

static void mean_bwd(Tape *t, TapeOp *op) {
    t->be->mean_backward(t->be, tensor_count_at(op->in[0], t->n), op->out->grad, op->dx[0]);
}

static const OpDef MEAN = {"mean", mean_fwd, mean_bwd, NULL};

Tensor *op_mean(Tape *t, Tensor *x) {
    if (!x || x->dtype != DT_F32) return NULL;
    int one = 1;
    Tensor *y = tape_tensor(t, DT_F32, 1, &one, 0);
    return tape_record(t, &MEAN, y, 1, &x) ? y : NULL;
}
