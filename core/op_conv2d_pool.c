/* op_conv2d_pool.c: conv + ReLU + max pool as one op (NHWC x HWIO -> the pooled NHWC output),
 * on the backend's conv2d_relu_maxpool entries: the conv output [N,OH,OW,K] is never stored,
 * and the filter gradient is taken from the pooled gradient and the argmax (saved[0], int32
 * indices into that virtual conv output). Where x takes a gradient (a middle layer; the backend
 * then has maxpool2d_relu_backward_from_y too), dx comes from the pool's winners where the
 * backend takes that (conv2d_data_grad_from_pool); elsewhere the conv output's gradient is made
 * from the pooled gradient, the argmax and the pooled y (saved[1], [N,OH,OW,K]) and goes
 * through conv2d_backward_data as in the unfused ops. */
#include "core/ops.h"

static void conv_pool_fwd(Tape *t, TapeOp *op) {
    Conv2dShape cs = op->p.conv_pool.conv;
    Pool2dShape ps = op->p.conv_pool.pool;
    cs.n = ps.n = t->n;
    t->be->conv2d_relu_maxpool_forward(t->be, &cs, &ps, tensor_f32(op->in[0]),
                                       tensor_f32(op->in[1]),
                                       op->n_in > 2 ? tensor_f32(op->in[2]) : NULL,
                                       tensor_f32(op->out), tensor_i32(op->saved[0]), t->ws);
}

static void conv_pool_bwd(Tape *t, TapeOp *op) {
    Conv2dShape cs = op->p.conv_pool.conv;
    Pool2dShape ps = op->p.conv_pool.pool;
    cs.n = ps.n = t->n;
    /* The filter gradient first: a backend may run it beside the data gradient (backend.h,
     * "Ordering"). The parameters always take gradients. */
    Backend *be = t->be;
    if (op->dx[1])
        be->conv2d_relu_maxpool_backward_filter(
            be, &cs, &ps, tensor_f32(op->in[0]), tensor_f32(op->out), tensor_i32(op->saved[0]),
            op->out->grad, op->dx[1], op->n_in > 2 ? op->dx[2] : NULL, t->ws);
    if (op->dx[0] && op->data_from_pool)
        be->conv2d_relu_maxpool_backward_data(be, &cs, &ps, tensor_f32(op->in[1]),
                                              tensor_f32(op->out), tensor_i32(op->saved[0]),
                                              op->out->grad, op->dx[0], t->ws);
    else if (op->dx[0]) {
        float *dconv = tensor_f32(op->saved[1]);
        be->maxpool2d_relu_backward_from_y(be, &ps, op->out->grad, tensor_i32(op->saved[0]),
                                           tensor_f32(op->out), dconv);
        be->conv2d_backward_data(be, &cs, dconv, tensor_f32(op->in[1]), op->dx[0], t->ws);
    }
}

static const OpDef CONV2D_RELU_MAXPOOL = {"conv2d_relu_maxpool", conv_pool_fwd, conv_pool_bwd,
                                          NULL};

Tensor *op_conv2d_relu_maxpool(Tape *t, Tensor *x, Tensor *w, Tensor *b, int stride, int same,
                               int pool, int pool_stride, int pool_same) {
    if (!t->be->conv2d_relu_maxpool_forward || !t->be->conv2d_relu_maxpool_backward_filter)
        return NULL;
    if (!x || !w || x->rank != 4 || w->rank != 4 || w->shape[2] != x->shape[3] ||
        (x->requires_grad && !t->be->maxpool2d_relu_backward_from_y))
        return NULL;
    if (b && (b->rank != 1 || b->shape[0] != w->shape[3])) return NULL;
    Conv2dShape cs;
    conv2d_shape_init(&cs, x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0],
                      w->shape[1], w->shape[3], stride, stride, same);
    if (cs.oh <= 0 || cs.ow <= 0) return NULL;
    Pool2dShape ps;
    pool2d_shape_init(&ps, cs.n, cs.oh, cs.ow, cs.k, pool, pool, pool_stride, pool_stride,
                      pool_same);
    if (ps.oh <= 0 || ps.ow <= 0) return NULL;
    if (t->be->conv2d_relu_maxpool_fits && !t->be->conv2d_relu_maxpool_fits(t->be, &cs, &ps))
        return NULL;
    /* The argmax indexes the conv output with an int32. */
    if ((size_t)cs.n * cs.oh * cs.ow * cs.k >= ((size_t)1 << 31)) return NULL;
    int shape[4] = {ps.n, ps.oh, ps.ow, ps.c};
    Tensor *y = tape_tensor(t, DT_F32, 4, shape, 1);
    Tensor *argmax = tape_tensor(t, DT_I32, 4, shape, 1);
    Tensor *in[3] = {x, w, b};
    TapeOp *op = y && argmax ? tape_record(t, &CONV2D_RELU_MAXPOOL, y, b ? 3 : 2, in) : NULL;
    if (!op) return NULL;
    op->saved[0] = argmax;
    op->data_from_pool = x->requires_grad && t->be->conv2d_data_grad_from_pool &&
                         t->be->conv2d_data_grad_from_pool(t->be, &cs, &ps);
    if (x->requires_grad && !op->data_from_pool) {
        /* the conv output's gradient, made in the backward */
        int conv_shape[4] = {cs.n, cs.oh, cs.ow, cs.k};
        if (!(op->saved[1] = tape_tensor(t, DT_F32, 4, conv_shape, 1))) return NULL;
    }
    op->p.conv_pool.conv = cs;
    op->p.conv_pool.pool = ps;
    tape_need_workspace(t, t->be->conv2d_workspace_floats(t->be, &cs));
    return y;
}
