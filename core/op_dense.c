/* op_dense.c: fully connected layer, x[N,in] * w[in,out] + b[out]. */
#include "core/ops.h"

static void dense_fwd(Tape *t, TapeOp *op) {
    const float *b = op->n_in > 2 ? tensor_f32(op->in[2]) : NULL;
    t->be->dense_forward(t->be, t->n, op->p.dense.in, op->p.dense.out, tensor_f32(op->in[0]),
                         tensor_f32(op->in[1]), b, tensor_f32(op->out));
}

static void dense_bwd(Tape *t, TapeOp *op) {
    /* The backend writes dw and db together; dx[1] is always set for a trainable kernel. */
    if (!op->dx[1]) return;
    t->be->dense_backward(t->be, t->n, op->p.dense.in, op->p.dense.out, tensor_f32(op->in[0]),
                          tensor_f32(op->in[1]), op->out->grad, op->dx[0], op->dx[1],
                          op->n_in > 2 ? op->dx[2] : NULL);
}

static const OpDef DENSE = {"dense", dense_fwd, dense_bwd};

Tensor *op_dense(Tape *t, Tensor *x, Tensor *w, Tensor *b) {
    if (!x || !w || x->rank != 2 || w->rank != 2 || w->shape[0] != x->shape[1]) return NULL;
    if (b && (b->rank != 1 || b->shape[0] != w->shape[1])) return NULL;
    int shape[2] = {x->shape[0], w->shape[1]};
    Tensor *y = tape_tensor(t, DT_F32, 2, shape, 1);
    Tensor *in[3] = {x, w, b};
    TapeOp *op = tape_record(t, &DENSE, y, b ? 3 : 2, in);
    if (!op) return NULL;
    op->p.dense.in = x->shape[1];
    op->p.dense.out = w->shape[1];
    return y;
}
