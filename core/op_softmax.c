/* op_softmax.c: softmax, the fused softmax + sparse cross-entropy loss, and accuracy. */
#include "core/ops.h"

/* ---- softmax ---- */
static void softmax_fwd(Tape *t, TapeOp *op) {
    t->be->softmax_forward(t->be, t->n, op->p.softmax.classes, tensor_f32(op->in[0]),
                           tensor_f32(op->out));
}

static void softmax_bwd(Tape *t, TapeOp *op) {
    t->be->softmax_backward(t->be, t->n, op->p.softmax.classes, tensor_f32(op->out),
                            op->out->grad, op->dx[0]);
}

static const OpDef SOFTMAX = {"softmax", softmax_fwd, softmax_bwd, NULL};

Tensor *op_softmax(Tape *t, Tensor *x) {
    if (!x || x->rank != 2) return NULL;
    Tensor *y = tape_tensor(t, DT_F32, 2, x->shape, x->batched);
    TapeOp *op = tape_record(t, &SOFTMAX, y, 1, &x);
    if (!op) return NULL;
    op->p.softmax.classes = x->shape[1];
    return y;
}

/* ---- softmax cross-entropy (mean over the batch) ---- */
/* In a training forward with a fused backend entry, the gradient is computed here too (the loss
 * ends the tape, so nothing runs between this forward and its backward). */
static void xent_fwd(Tape *t, TapeOp *op) {
    Backend *be = t->be;
    const float *logits = tensor_f32(op->in[0]);
    const int32_t *labels = tensor_i32(op->in[1]);
    op->loss_grad_ready = t->training && op->differentiable && op->dx[0] && !op->accumulate[0] &&
                          be->softmax_xent_fused;
    if (op->loss_grad_ready)
        be->softmax_xent_fused(be, t->n, op->p.softmax.classes, logits, labels,
                               tensor_f32(op->saved[0]), tensor_f32(op->out), op->dx[0]);
    else
        be->softmax_xent_forward(be, t->n, op->p.softmax.classes, logits, labels,
                                 tensor_f32(op->saved[0]), tensor_f32(op->out));
}

static void xent_bwd(Tape *t, TapeOp *op) {
    if (op->loss_grad_ready) return;
    /* The loss ends the tape: dL/dloss = 1, a constant (no device read). */
    t->be->softmax_xent_backward(t->be, t->n, op->p.softmax.classes, tensor_f32(op->saved[0]),
                                 tensor_i32(op->in[1]), 1.0f, op->dx[0]);
}

static const OpDef SOFTMAX_XENT = {"softmax_xent", xent_fwd, xent_bwd, NULL};

Tensor *op_softmax_xent(Tape *t, Tensor *logits, Tensor *labels) {
    if (!logits || !labels || logits->rank != 2 || labels->dtype != DT_I32 ||
        labels->rank != 1 || labels->shape[0] != logits->shape[0])
        return NULL;
    int one = 1;
    Tensor *loss = tape_tensor(t, DT_F32, 1, &one, 0);
    Tensor *probs = tape_tensor(t, DT_F32, 2, logits->shape, logits->batched);
    Tensor *in[2] = {logits, labels};
    TapeOp *op = tape_record(t, &SOFTMAX_XENT, loss, 2, in);
    if (!op || !probs) return NULL;
    op->saved[0] = probs;
    op->p.softmax.classes = logits->shape[1];
    return loss;
}

/* ---- accuracy (number correct) ---- */
static void accuracy_fwd(Tape *t, TapeOp *op) {
    t->be->argmax_correct(t->be, t->n, op->p.softmax.classes, tensor_f32(op->in[0]),
                          tensor_i32(op->in[1]), tensor_i32(op->out));
}

static const OpDef ACCURACY = {"accuracy", accuracy_fwd, NULL, NULL};

Tensor *op_accuracy(Tape *t, Tensor *logits, Tensor *labels) {
    if (!logits || !labels || logits->rank != 2 || labels->dtype != DT_I32) return NULL;
    int one = 1;
    Tensor *count = tape_tensor(t, DT_I32, 1, &one, 0);
    Tensor *in[2] = {logits, labels};
    TapeOp *op = tape_record(t, &ACCURACY, count, 2, in);
    if (!op) return NULL;
    op->p.softmax.classes = logits->shape[1];
    return count;
}
