/* conv_pool_cpu.c: see conv_pool_cpu.h. */
#include "support/conv_pool_cpu.h"

#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>

/* The CPU backend's own entries for the gradients from the pools' winners and the dense dx where
 * alive (core/backend_cpu.c), from a fresh one: the product's code, not a copy of it. */
static Backend cpu_own_entries(void) {
    Backend *cpu = backend_cpu_create();
    if (!cpu || !cpu->conv2d_relu_maxpool_backward_data || !cpu->dense_backward_data_alive) {
        fprintf(stderr, "the CPU backend has no gradients from the pools' winners: unset "
                        "CNN_CPU_FROM_POOL to run this test\n");
        abort();
    }
    Backend own = *cpu;
    cpu->destroy(cpu);
    return own;
}

static void conv_pool_forward(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                              const float *x, const float *w, const float *b, float *y,
                              int32_t *argmax, float *ws) {
    (void)be, (void)ws;
    conv2d_relu_maxpool_forward(cs, ps, x, w, b, y, argmax);
}

static void pool_backward_from_y(Backend *be, const Pool2dShape *s, const float *dy,
                                 const int32_t *argmax, const float *y, float *dx) {
    (void)be;
    maxpool2d_relu_backward_from_y(s, dy, argmax, y, dx);
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

Backend *test_without_pool_entries(Backend *be) {
    be->conv2d_relu_maxpool_backward_filter = NULL;
    be->conv2d_filter_grad_from_pool = NULL;
    be->conv2d_data_grad_from_pool = NULL;
    be->conv2d_relu_maxpool_backward_data = NULL;
    be->dense_data_alive_fits = NULL;
    be->dense_backward_data_alive = NULL;
    be->conv2d_relu_maxpool_forward = NULL;
    be->conv2d_relu_maxpool_fits = NULL;
    be->maxpool2d_relu_backward_from_y = NULL;
    return be;
}

Backend *test_add_conv_pool_entries(Backend *be) {
    const Backend own = cpu_own_entries();
    be->conv2d_relu_maxpool_forward = conv_pool_forward;
    be->conv2d_relu_maxpool_backward_filter = own.conv2d_relu_maxpool_backward_filter;
    be->conv2d_filter_grad_from_pool = always; /* every conv, conv1 too (the CPU's: C >= 8) */
    return be;
}

Backend *test_add_conv_pool_middle_entry(Backend *be) {
    be->maxpool2d_relu_backward_from_y = pool_backward_from_y;
    return be;
}

Backend *test_add_conv_pool_data_entry(Backend *be) {
    const Backend own = cpu_own_entries();
    be->conv2d_data_grad_from_pool = own.conv2d_data_grad_from_pool;
    be->conv2d_relu_maxpool_backward_data = own.conv2d_relu_maxpool_backward_data;
    return be;
}

Backend *test_add_dense_dx_alive_entry(Backend *be) {
    const Backend own = cpu_own_entries();
    be->dense_data_alive_fits = own.dense_data_alive_fits;
    be->dense_backward_data_alive = own.dense_backward_data_alive;
    return be;
}

Backend *test_add_dense_sparse_input_entries(Backend *be) {
    be->dense_sparse_input_fits = sparse_input_fits;
    be->dense_forward_sparse_input = sparse_input_forward;
    be->dense_backward_filter_sparse_input = sparse_input_filter;
    return be;
}
