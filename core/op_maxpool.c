/* op_maxpool.c: max pooling over NHWC windows; argmax saved for the backward scatter. */
#include "core/ops.h"

static void maxpool_fwd(Tape *t, TapeOp *op) {
    Pool2dShape s = op->p.pool;
    s.n = t->n;
    t->be->maxpool2d_forward(t->be, &s, tensor_f32(op->in[0]), tensor_f32(op->out),
                             tensor_i32(op->saved[0]));
}

static void maxpool_bwd(Tape *t, TapeOp *op) {
    Pool2dShape s = op->p.pool;
    s.n = t->n;
    if (op->mask_input_relu)
        t->be->maxpool2d_relu_backward(t->be, &s, op->out->grad, tensor_i32(op->saved[0]),
                                       tensor_f32(op->in[0]), op->dx[0]);
    else
        t->be->maxpool2d_backward(t->be, &s, op->out->grad, tensor_i32(op->saved[0]), op->dx[0]);
}

static int maxpool_can_mask_input_relu(const Backend *be) {
    return be->maxpool2d_relu_backward != NULL;
}

static const OpDef MAXPOOL = {"maxpool2d", maxpool_fwd, maxpool_bwd, maxpool_can_mask_input_relu};

Tensor *op_maxpool2d(Tape *t, Tensor *x, int kh, int kw, int stride, int same) {
    if (!x || x->rank != 4) return NULL;
    Pool2dShape s;
    pool2d_shape_init(&s, x->shape[0], x->shape[1], x->shape[2], x->shape[3], kh, kw, stride,
                      stride, same);
    if (s.oh <= 0 || s.ow <= 0) return NULL;
    int shape[4] = {s.n, s.oh, s.ow, s.c};
    Tensor *y = tape_tensor(t, DT_F32, 4, shape, 1);
    Tensor *argmax = tape_tensor(t, DT_I32, 4, shape, 1);
    TapeOp *op = tape_record(t, &MAXPOOL, y, 1, &x);
    if (!op || !argmax) return NULL;
    op->saved[0] = argmax;
    op->p.pool = s;
    return y;
}
