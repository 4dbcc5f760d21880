/* op_relu.c: y = max(x, 0); the gradient passes where y > 0 (TF's ReluGrad). */
#include "core/ops.h"

static void relu_fwd(Tape *t, TapeOp *op) {
    t->be->relu_forward(t->be, tensor_count_at(op->out, t->n), tensor_f32(op->in[0]),
                        tensor_f32(op->out));
}

static void relu_bwd(Tape *t, TapeOp *op) {
    t->be->relu_backward(t->be, tensor_count_at(op->out, t->n), tensor_f32(op->out),
                         op->out->grad, op->dx[0]);
}

static const OpDef RELU = {"relu", relu_fwd, relu_bwd, NULL};

Tensor *op_relu(Tape *t, Tensor *x) {
    if (!x) return NULL;
    Tensor *y = tape_tensor(t, DT_F32, x->rank, x->shape, x->batched);
    return tape_record(t, &RELU, y, 1, &x) ? y : NULL;
}
