/* dropout_dense_cpu.c: see dropout_dense_cpu.h. */
#include "support/dropout_dense_cpu.h"

#include "kernels/kernels.h"

static int fits(Backend *be, int n, int in, int out) {
    (void)be;
    (void)n;
    (void)in;
    (void)out;
    return 1;
}

/* The step is in backend memory, which on the CPU is host memory. */
static void forward(Backend *be, int n, int in, int out, float rate, uint64_t seed,
                    uint64_t stream_base, const int64_t *step, const float *x, const float *w,
                    const float *b, float *y, uint8_t *mask, int relu) {
    (void)be;
    uint64_t stream = stream_base + (step ? (uint64_t)*step * 16 : 0);
    dropout_dense_forward(n, in, out, rate, seed, stream, x, w, b, y, mask, relu);
}

static void backward(Backend *be, int n, int in, int out, float rate, const uint8_t *mask,
                     int relu_x, const float *x, const float *w, const float *dy, float *dx,
                     float *dw, float *db) {
    (void)be;
    dropout_dense_backward(n, in, out, rate, mask, relu_x, x, w, dy, dx, dw, db);
}

Backend *test_add_dropout_dense_entries(Backend *be) {
    be->dropout_dense_fits = fits;
    be->dropout_dense_forward = forward;
    be->dropout_dense_backward = backward;
    return be;
}
