/* op_conv2d.c: 2-D convolution (NHWC x HWIO -> NHWC) with optional bias. */
#include "core/ops.h"

static Conv2dShape shape_at(const TapeOp *op, int n) {
    Conv2dShape s = op->p.conv;
    s.n = n;
    return s;
}

static void conv2d_fwd(Tape *t, TapeOp *op) {
    Backend *be = t->be;
    Conv2dShape s = shape_at(op, t->n);
    const float *x = tensor_f32(op->in[0]), *w = tensor_f32(op->in[1]);
    const float *b = op->n_in > 2 ? tensor_f32(op->in[2]) : NULL;
    float *y = tensor_f32(op->out);
    if (op->relu && be->conv2d_relu_forward) {
        be->conv2d_relu_forward(be, &s, x, w, b, y, t->ws);
        return;
    }
    be->conv2d_forward(be, &s, x, w, b, y, t->ws);
    if (op->relu) be->relu_forward(be, tensor_count_at(op->out, t->n), y, y);
}

static void conv2d_bwd(Tape *t, TapeOp *op) {
    Conv2dShape s = shape_at(op, t->n);
    float *dy = op->out->grad;
    /* The fused ReLU's backward, in place, unless the consumer already applied it. */
    if (op->relu && !op->relu_grad_masked)
        t->be->relu_backward(t->be, tensor_count_at(op->out, t->n), tensor_f32(op->out), dy, dy);
    /* The filter gradient is issued first: a backend may run it beside the entries after it
     * (backend.h, "Ordering"), here the data gradient. Parameters always take gradients; dx[1]
     * is set whenever the op is differentiable through the kernel (a frozen kernel is not
     * supported by the model). */
    if (op->dx[1]) {
        if (op->pool_after) { /* from the pool's winners (tape.c, plan_filter_from_pool) */
            const TapeOp *pool = op->pool_after;
            Pool2dShape ps = pool->p.pool;
            ps.n = t->n;
            t->be->conv2d_relu_maxpool_backward_filter(
                t->be, &s, &ps, tensor_f32(op->in[0]), tensor_f32(pool->out),
                tensor_i32(pool->saved[0]), pool->out->grad, op->dx[1],
                op->n_in > 2 ? op->dx[2] : NULL, t->ws);
        } else {
            t->be->conv2d_backward_filter(t->be, &s, tensor_f32(op->in[0]), dy, op->dx[1],
                                          op->n_in > 2 ? op->dx[2] : NULL, t->ws);
        }
    }
    if (op->dx[0] && op->data_from_pool) { /* tape.c, plan_filter_from_pool */
        const TapeOp *pool = op->pool_after;
        Pool2dShape ps = pool->p.pool;
        ps.n = t->n;
        t->be->conv2d_relu_maxpool_backward_data(t->be, &s, &ps, tensor_f32(op->in[1]),
                                                 tensor_f32(pool->out),
                                                 tensor_i32(pool->saved[0]), pool->out->grad,
                                                 op->dx[0], t->ws);
    } else if (op->dx[0]) {
        t->be->conv2d_backward_data(t->be, &s, dy, tensor_f32(op->in[1]), op->dx[0], t->ws);
    }
}

static const OpDef CONV2D = {"conv2d", conv2d_fwd, conv2d_bwd, NULL};

Tensor *op_conv2d(Tape *t, Tensor *x, Tensor *w, Tensor *b, int stride, int same, int relu) {
    if (!x || !w || x->rank != 4 || w->rank != 4 || w->shape[2] != x->shape[3]) return NULL;
    if (b && (b->rank != 1 || b->shape[0] != w->shape[3])) return NULL;
    Conv2dShape s;
    conv2d_shape_init(&s, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0],
                      w->shape[1], w->shape[3], stride, stride, same);
    if (s.oh <= 0 || s.ow <= 0) return NULL;
    int shape[4] = {s.n, s.oh, s.ow, s.k};
    Tensor *y = tape_tensor(t, DT_F32, 4, shape, 1);
    Tensor *in[3] = {x, w, b};
    TapeOp *op = tape_record(t, &CONV2D, y, b ? 3 : 2, in);
    if (!op) return NULL;
    op->p.conv = s;
    op->relu = relu;
    tape_need_workspace(t, t->be->conv2d_workspace_floats(t->be, &s));
    return y;
}
