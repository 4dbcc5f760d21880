/* op_dropout_dense.c: a dropout and the dense layer after it as one op, on the backend's
 * dropout_dense entries: the dropout's output [N,in] is never stored; the dense layer reads its
 * input x through the mask (saved[0], uint8 [N,in], as op_dropout's). */
#include "core/ops.h"

#include "kernels/philox.h"

static void dropout_dense_fwd(Tape *t, TapeOp *op) {
    Backend *be = t->be;
    uint64_t stream_base =
        (uint64_t)PHILOX_STREAM_DROPOUT + (uint64_t)op->p.dropout_dense.index;
    /* Inference: no mask, x as is (op_dropout's copy). */
    uint8_t *mask = t->training ? op->saved[0]->data : NULL;
    be->dropout_dense_forward(be, t->n, op->p.dropout_dense.in, op->p.dropout_dense.out,
                              op->p.dropout_dense.rate, t->seed, stream_base,
                              t->training ? t->step : NULL, tensor_f32(op->in[0]),
                              tensor_f32(op->in[1]), op->n_in > 2 ? tensor_f32(op->in[2]) : NULL,
                              tensor_f32(op->out), mask, op->relu);
}

/* Valid after a training forward (the mask of that step). */
static void dropout_dense_bwd(Tape *t, TapeOp *op) {
    Backend *be = t->be;
    int in = op->p.dropout_dense.in, out = op->p.dropout_dense.out;
    /* The fused ReLU's backward, in place, unless the consumer already applied it (op_dense). */
    if (op->relu && !op->relu_grad_masked)
        be->relu_backward(be, tensor_count_at(op->out, t->n), tensor_f32(op->out), op->out->grad,
                          op->out->grad);
    /* dx[1] is always set for a trainable kernel (op_dense). */
    if (!op->dx[1]) return;
    be->dropout_dense_backward(be, t->n, in, out, op->p.dropout_dense.rate, op->saved[0]->data,
                               op->mask_input_relu, tensor_f32(op->in[0]), tensor_f32(op->in[1]),
                               op->out->grad, op->dx[0], op->dx[1],
                               op->n_in > 2 ? op->dx[2] : NULL);
}

/* Recorded only with the backend's entries, which take the ReLU's mask of x (backend.h). */
static int dropout_dense_can_mask_input_relu(const Backend *be) {
    return be->dropout_dense_backward != NULL;
}

static const OpDef DROPOUT_DENSE = {"dropout_dense", dropout_dense_fwd, dropout_dense_bwd,
                                    dropout_dense_can_mask_input_relu};

int op_dropout_dense_fits(Tape *t, const Tensor *x, int out) {
    Backend *be = t->be;
    return be->dropout_dense_fits && be->dropout_dense_forward && be->dropout_dense_backward &&
           x && x->rank == 2 && out > 0 && t->n_dropout < 16 &&
           be->dropout_dense_fits(be, x->shape[0], x->shape[1], out);
}

Tensor *op_dropout_dense(Tape *t, Tensor *x, float rate, Tensor *w, Tensor *b, int relu) {
    if (!w || w->rank != 2 || !op_dropout_dense_fits(t, x, w->shape[1]) ||
        w->shape[0] != x->shape[1] || !(rate >= 0.0f && rate < 1.0f))
        return NULL;
    if (b && (b->rank != 1 || b->shape[0] != w->shape[1])) return NULL;
    int shape[2] = {x->shape[0], w->shape[1]};
    Tensor *y = tape_tensor(t, DT_F32, 2, shape, 1);
    Tensor *mask = tape_tensor(t, DT_U8, x->rank, x->shape, x->batched);
    Tensor *in[3] = {x, w, b};
    TapeOp *op = y && mask ? tape_record(t, &DROPOUT_DENSE, y, b ? 3 : 2, in) : NULL;
    if (!op) return NULL;
    op->saved[0] = mask;
    op->p.dropout_dense.rate = rate;
    op->p.dropout_dense.index = t->n_dropout++;
    op->p.dropout_dense.in = x->shape[1];
    op->p.dropout_dense.out = w->shape[1];
    op->relu = relu;
    return y;
}
