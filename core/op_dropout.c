/* op_dropout.c: inverted dropout, masks from Philox keyed by (seed, step, dropout index). */
#include "core/ops.h"

#include "kernels/philox.h"

static void dropout_fwd(Tape *t, TapeOp *op) {
    size_t n = tensor_count_at(op->out, t->n);
    if (!t->training) {
        t->be->copy(t->be, op->out->data, op->in[0]->data, n * sizeof(float));
        return;
    }
    uint64_t stream_base = (uint64_t)PHILOX_STREAM_DROPOUT + (uint64_t)op->p.dropout.index;
    t->be->dropout_forward(t->be, n, op->p.dropout.rate, t->seed, stream_base, t->step,
                           tensor_f32(op->in[0]), tensor_f32(op->out), op->saved[0]->data);
}

/* Valid after a training forward (the mask of that step). */
static void dropout_bwd(Tape *t, TapeOp *op) {
    size_t n = tensor_count_at(op->out, t->n);
    if (op->mask_input_relu)
        t->be->dropout_relu_backward(t->be, n, op->p.dropout.rate, op->saved[0]->data,
                                     tensor_f32(op->in[0]), op->out->grad, op->dx[0]);
    else
        t->be->dropout_backward(t->be, n, op->p.dropout.rate, op->saved[0]->data, op->out->grad,
                                op->dx[0]);
}

static int dropout_can_mask_input_relu(const Backend *be) {
    return be->dropout_relu_backward != NULL;
}

static const OpDef DROPOUT = {"dropout", dropout_fwd, dropout_bwd, dropout_can_mask_input_relu};

Tensor *op_dropout(Tape *t, Tensor *x, float rate) {
    /* The stream layout gives each step 16 dropout streams. */
    if (!x || !(rate >= 0.0f && rate < 1.0f) || t->n_dropout >= 16) return NULL;
    Tensor *y = tape_tensor(t, DT_F32, x->rank, x->shape, x->batched);
    Tensor *mask = tape_tensor(t, DT_U8, x->rank, x->shape, x->batched);
    TapeOp *op = tape_record(t, &DROPOUT, y, 1, &x);
    if (!op || !mask) return NULL;
    op->saved[0] = mask;
    op->p.dropout.rate = rate;
    op->p.dropout.index = t->n_dropout++;
    return y;
}
