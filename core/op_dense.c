/* op_dense.c: fully connected layer, x[N,in] * w[in,out] + b[out]. */
#include "core/ops.h"

static void dense_fwd(Tape *t, TapeOp *op) {
    Backend *be = t->be;
    const float *x = tensor_f32(op->in[0]), *w = tensor_f32(op->in[1]);
    const float *b = op->n_in > 2 ? tensor_f32(op->in[2]) : NULL;
    float *y = tensor_f32(op->out);
    if (op->sparse_input) { /* over x's nonzeros (tape.c, plan_dense_pooled_input) */
        be->dense_forward_sparse_input(be, t->n, op->p.dense.in, op->p.dense.out, x, w, b, y,
                                       op->relu);
        return;
    }
    if (op->relu && be->dense_relu_forward) {
        be->dense_relu_forward(be, t->n, op->p.dense.in, op->p.dense.out, x, w, b, y);
        return;
    }
    be->dense_forward(be, t->n, op->p.dense.in, op->p.dense.out, x, w, b, y);
    if (op->relu) be->relu_forward(be, tensor_count_at(op->out, t->n), y, y);
}

static void dense_bwd(Tape *t, TapeOp *op) {
    /* The fused ReLU's backward, in place, unless the consumer already applied it. */
    if (op->relu && !op->relu_grad_masked)
        t->be->relu_backward(t->be, tensor_count_at(op->out, t->n), tensor_f32(op->out),
                             op->out->grad, op->out->grad);
    /* The backend writes dw and db together; dx[1] is always set for a trainable kernel. dw
     * and db are issued first: a backend may run them beside the entries after them (backend.h,
     * "Ordering"): dx, here or where the input is alive (tape.c, plan_dense_pooled_input). */
    if (!op->dx[1]) return;
    Backend *be = t->be;
    const int n = t->n, in = op->p.dense.in, out = op->p.dense.out;
    const float *x = tensor_f32(op->in[0]), *w = tensor_f32(op->in[1]), *dy = op->out->grad;
    float *db = op->n_in > 2 ? op->dx[2] : NULL;
    const int alive = op->dx_alive && op->dx[0], gemm_dx = op->dx[0] && !alive;
    const Tensor *wt = op->in[1];
    if (t->adam && !gemm_dx && !op->sparse_input && !op->accumulate[1] &&
        wt->region == REGION_PARAM) { /* the kernel's Adam here (tape.h, TapeAdam) */
        const size_t first = tape_param_offset(t, wt);
        be->dense_backward_adam(be, n, in, out, x, tensor_f32(op->in[1]), dy,
                                alive ? op->dx[0] : NULL, op->dx[1], db, t->adam->m + first,
                                t->adam->v + first, t->adam->lr, t->adam->beta1, t->adam->beta2,
                                t->adam->eps, t->step);
        tape_mark_updated(t, first, wt->count);
        return;
    }
    if (op->sparse_input) {
        be->dense_backward_filter_sparse_input(be, n, in, out, x, dy, op->dx[1], db);
        if (gemm_dx) be->dense_backward(be, n, in, out, x, w, dy, op->dx[0], NULL, NULL);
    } else {
        be->dense_backward(be, n, in, out, x, w, dy, gemm_dx ? op->dx[0] : NULL, op->dx[1], db);
    }
    if (alive) be->dense_backward_data_alive(be, n, in, out, x, w, dy, op->dx[0]);
}

static const OpDef DENSE = {"dense", dense_fwd, dense_bwd, NULL};

Tensor *op_dense(Tape *t, Tensor *x, Tensor *w, Tensor *b, int relu) {
    if (!x || !w || x->rank != 2 || w->rank != 2 || w->shape[0] != x->shape[1]) return NULL;
    if (b && (b->rank != 1 || b->shape[0] != w->shape[1])) return NULL;
    int shape[2] = {x->shape[0], w->shape[1]};
    Tensor *y = tape_tensor(t, DT_F32, 2, shape, 1);
    Tensor *in[3] = {x, w, b};
    TapeOp *op = tape_record(t, &DENSE, y, b ? 3 : 2, in);
    if (!op) return NULL;
    op->p.dense.in = x->shape[1];
    op->p.dense.out = w->shape[1];
    op->relu = relu;
    return y;
}
