/* conv_pool_cpu.c: see conv_pool_cpu.h. */
#include "support/conv_pool_cpu.h"

#include "kernels/kernels.h"

#include <stdlib.h>

static void conv_pool_forward(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                              const float *x, const float *w, const float *b, float *y,
                              int32_t *argmax) {
    (void)be;
    conv2d_relu_maxpool_forward(cs, ps, x, w, b, y, argmax);
}

static void conv_pool_backward(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                               const float *x, const float *y, const int32_t *argmax,
                               const float *dy, float *dw, float *db, float *ws) {
    (void)be;
    conv2d_relu_maxpool_backward_filter(cs, ps, x, y, argmax, dy, dw, db, ws);
}

static void pool_backward_from_y(Backend *be, const Pool2dShape *s, const float *dy,
                                 const int32_t *argmax, const float *y, float *dx) {
    (void)be;
    maxpool2d_relu_backward_from_y(s, dy, argmax, y, dx);
}

static void conv_pool_backward_data(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                                    const float *w, const float *y, const int32_t *argmax,
                                    const float *dy, float *dx, float *ws) {
    (void)be;
    conv2d_relu_maxpool_backward_data(cs, ps, w, y, argmax, dy, dx, ws);
}

/* The CPU twin's conditions (kernels.h): a stride-1 conv, windows that do not overlap. */
static int data_from_pool_fits(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps) {
    (void)be;
    return cs->stride_h == 1 && cs->stride_w == 1 && ps->stride_h >= ps->kh &&
           ps->stride_w >= ps->kw;
}

static int dense_alive_fits(Backend *be, int n, int in, int out) {
    (void)be;
    return n >= 0 && in >= 0 && dense_backward_data_alive_fits(out);
}

static void dense_alive_backward(Backend *be, int n, int in, int out, const float *x,
                                 const float *w, const float *dy, float *dx) {
    (void)be;
    dense_backward_data_alive(n, in, out, x, w, dy, dx);
}

static int sparse_input_fits(Backend *be, int n, int in, int out) {
    (void)be;
    return n >= 0 && in >= 0 && out >= 0;
}

/* The twins' sums, with the layer's ReLU after the forward's (as the CUDA kernel applies it). */
static void sparse_input_forward(Backend *be, int n, int in, int out, const float *x,
                                 const float *w, const float *b, float *y, int relu) {
    (void)be;
    if (dense_forward_sparse_input(n, in, out, x, w, b, y) != 0) abort(); /* a test's sizes */
    if (relu) relu_forward((size_t)n * out, y, y);
}

static void sparse_input_filter(Backend *be, int n, int in, int out, const float *x,
                                const float *dy, float *dw, float *db) {
    (void)be;
    if (dense_backward_filter_sparse_input(n, in, out, x, dy, dw, db) != 0) abort();
}

static int always(Backend *be, const Conv2dShape *s) {
    (void)be;
    (void)s;
    return 1;
}

Backend *test_without_from_pool_entries(Backend *be) {
    be->conv2d_relu_maxpool_backward_filter = NULL;
    be->conv2d_filter_grad_from_pool = NULL;
    be->conv2d_data_grad_from_pool = NULL;
    be->conv2d_relu_maxpool_backward_data = NULL;
    be->dense_data_alive_fits = NULL;
    be->dense_backward_data_alive = NULL;
    return be;
}

Backend *test_add_conv_pool_entries(Backend *be) {
    be->conv2d_relu_maxpool_forward = conv_pool_forward;
    be->conv2d_relu_maxpool_backward_filter = conv_pool_backward;
    be->conv2d_filter_grad_from_pool = always;
    return be;
}

Backend *test_add_conv_pool_middle_entry(Backend *be) {
    be->maxpool2d_relu_backward_from_y = pool_backward_from_y;
    return be;
}

Backend *test_add_conv_pool_data_entry(Backend *be) {
    be->conv2d_data_grad_from_pool = data_from_pool_fits;
    be->conv2d_relu_maxpool_backward_data = conv_pool_backward_data;
    return be;
}

Backend *test_add_dense_dx_alive_entry(Backend *be) {
    be->dense_data_alive_fits = dense_alive_fits;
    be->dense_backward_data_alive = dense_alive_backward;
    return be;
}

Backend *test_add_dense_sparse_input_entries(Backend *be) {
    be->dense_sparse_input_fits = sparse_input_fits;
    be->dense_forward_sparse_input = sparse_input_forward;
    be->dense_backward_filter_sparse_input = sparse_input_filter;
    return be;
}
