/* backend_cpu.c: the CPU backend. Backend memory is host memory; kernel entries call the CPU
 * kernels of kernels/ (the reference every other backend is checked against). */
#include "core/backend.h"

#include <stdlib.h>
#include <string.h>

static void cpu_destroy(Backend *be) { free(be); }

static void *cpu_alloc(Backend *be, size_t bytes) {
    (void)be;
    size_t rounded = (bytes + 255) / 256 * 256;
    return aligned_alloc(256, rounded ? rounded : 256);
}

static void cpu_free(Backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_upload(Backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}

static int cpu_download(Backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}

static void cpu_copy(Backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_zero(Backend *be, void *p, size_t bytes) {
    (void)be;
    if (bytes) memset(p, 0, bytes);
}

static int cpu_sync(Backend *be) {
    (void)be;
    return 0;
}

static const char *cpu_last_error(Backend *be) {
    (void)be;
    return "";
}

/* ---- kernels ---- */
/* Also the gradients from the pool's winners (below): their group sums and transposed filter
 * share the conv's workspace. */
static size_t cpu_conv2d_workspace_floats(Backend *be, const Conv2dShape *s) {
    (void)be;
    size_t f = conv2d_workspace_floats(s);
    const size_t pf = conv2d_relu_maxpool_backward_filter_workspace_floats(s);
    const size_t pd = conv2d_relu_maxpool_backward_data_workspace_floats(s);
    if (pf > f) f = pf;
    return pd > f ? pd : f;
}

static void cpu_conv2d_forward(Backend *be, const Conv2dShape *s, const float *x, const float *w,
                               const float *b, float *y, float *ws) {
    (void)be;
    conv2d_forward(s, x, w, b, y, ws);
}

static void cpu_conv2d_backward_data(Backend *be, const Conv2dShape *s, const float *dy,
                                     const float *w, float *dx, float *ws) {
    (void)be;
    conv2d_backward_data(s, dy, w, dx, ws);
}

static void cpu_conv2d_backward_filter(Backend *be, const Conv2dShape *s, const float *x,
                                       const float *dy, float *dw, float *db, float *ws) {
    (void)be;
    conv2d_backward_filter(s, x, dy, dw, db, ws);
}

static void cpu_maxpool2d_forward(Backend *be, const Pool2dShape *s, const float *x, float *y,
                                  int32_t *argmax) {
    (void)be;
    maxpool2d_forward(s, x, y, argmax);
}

static void cpu_maxpool2d_backward(Backend *be, const Pool2dShape *s, const float *dy,
                                   const int32_t *argmax, float *dx) {
    (void)be;
    maxpool2d_backward(s, dy, argmax, dx);
}

static void cpu_dense_forward(Backend *be, int n, int in, int out, const float *x,
                              const float *w, const float *b, float *y) {
    (void)be;
    dense_forward(n, in, out, x, w, b, y);
}

static void cpu_dense_backward(Backend *be, int n, int in, int out, const float *x,
                               const float *w, const float *dy, float *dx, float *dw, float *db) {
    (void)be;
    dense_backward(n, in, out, x, w, dy, dx, dw, db);
}

static void cpu_relu_forward(Backend *be, size_t n, const float *x, float *y) {
    (void)be;
    relu_forward(n, x, y);
}

static void cpu_relu_backward(Backend *be, size_t n, const float *y, const float *dy,
                              float *dx) {
    (void)be;
    relu_backward(n, y, dy, dx);
}

static void cpu_dropout_forward(Backend *be, size_t n, float rate, uint64_t seed,
                                uint64_t stream_base, const int64_t *step, const float *x,
                                float *y, uint8_t *mask) {
    (void)be;
    dropout_forward(n, rate, seed, stream_base + (uint64_t)*step * 16u, x, y, mask);
}

static void cpu_dropout_backward(Backend *be, size_t n, float rate, const uint8_t *mask,
                                 const float *dy, float *dx) {
    (void)be;
    dropout_backward(n, rate, mask, dy, dx);
}

static void cpu_softmax_forward(Backend *be, int n, int c, const float *logits, float *probs) {
    (void)be;
    softmax_forward(n, c, logits, probs);
}

static void cpu_softmax_backward(Backend *be, int n, int c, const float *y, const float *dy,
                                 float *dx) {
    (void)be;
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * c, *dyi = dy + (size_t)i * c;
        float *dxi = dx + (size_t)i * c;
        double dot = 0.0;
        for (int j = 0; j < c; j++) dot += (double)dyi[j] * yi[j];
        for (int j = 0; j < c; j++) dxi[j] = yi[j] * (dyi[j] - (float)dot);
    }
}

static void cpu_softmax_xent_forward(Backend *be, int n, int c, const float *logits,
                                     const int32_t *labels, float *probs, float *loss) {
    (void)be;
    softmax_xent_forward(n, c, logits, labels, probs, loss);
}

static void cpu_softmax_xent_backward(Backend *be, int n, int c, const float *probs,
                                      const int32_t *labels, float dloss, float *dlogits) {
    (void)be;
    softmax_xent_backward(n, c, probs, labels, dloss, dlogits);
}

static void cpu_argmax_correct(Backend *be, int n, int c, const float *logits,
                               const int32_t *labels, int32_t *correct) {
    (void)be;
    *correct = argmax_correct(n, c, logits, labels);
}

static void cpu_adam_update(Backend *be, size_t n, float *w, const float *g, float *m, float *v,
                            float lr, float beta1, float beta2, float eps, const int64_t *step) {
    (void)be;
    adam_update(n, w, g, m, v, lr, beta1, beta2, eps, *step + 1);
}

static void cpu_dense_backward_adam(Backend *be, int n, int in, int out, const float *x,
                                    float *w, const float *dy, float *dx, float *dw, float *db,
                                    float *m, float *v, float lr, float beta1, float beta2,
                                    float eps, const int64_t *step) {
    (void)be;
    dense_backward_adam(n, in, out, x, w, dy, dx, dw, db, m, v, lr, beta1, beta2, eps, *step + 1);
}

static void cpu_sgd_update(Backend *be, size_t n, float *w, const float *g, float lr) {
    (void)be;
    sgd_update(n, w, g, lr);
}

static void cpu_momentum_update(Backend *be, size_t n, float *w, const float *g, float *vel,
                                float lr, float momentum, int nesterov) {
    (void)be;
    momentum_update(n, w, g, vel, lr, momentum, nesterov);
}

/* ---- small entries ---- */
static void cpu_add_inplace(Backend *be, size_t n, const float *x, float *y) {
    (void)be;
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_mean_forward(Backend *be, size_t n, const float *x, float *y) {
    (void)be;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    y[0] = (float)(s / (double)n);
}

static void cpu_mean_backward(Backend *be, size_t n, const float *dy, float *dx) {
    (void)be;
    float v = dy[0] / (float)n;
    for (size_t i = 0; i < n; i++) dx[i] = v;
}

static void cpu_u8_to_float(Backend *be, size_t n, const uint8_t *src, float *dst) {
    (void)be;
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

static void cpu_eval_accumulate(Backend *be, const float *loss, const int32_t *correct,
                                double *loss_sum, int64_t *correct_sum) {
    (void)be;
    loss_sum[0] += (double)loss[0];
    correct_sum[0] += correct[0];
}

static void cpu_step_increment(Backend *be, int64_t *step) {
    (void)be;
    *step += 1;
}

/* The example at position p of the stream of batches: epoch p / n_examples's permutation (the
 * ring holds ring_epochs of them), entry p % n_examples. */
static int32_t ring_example(const int32_t *ring, int ring_epochs, int n_examples, int64_t p) {
    const int64_t e = p / n_examples, j = p % n_examples;
    return ring[(size_t)(e % ring_epochs) * (size_t)n_examples + (size_t)j];
}

static void cpu_gather_batch(Backend *be, int batch, int example_size, int n_examples,
                             const uint8_t *pixels, const int32_t *labels, const int32_t *ring,
                             int ring_epochs, const int64_t *step, float *x, int32_t *y) {
    (void)be;
    /* The batch's examples are random images of the whole set (47 MB for MNIST), each a few
     * cache lines from memory: the image GATHER_AHEAD places on is prefetched while this one is
     * converted, so their misses overlap (the loop waited on each in turn; step 75). */
    enum { GATHER_AHEAD = 2 };
    const int64_t p0 = *step * (int64_t)batch;
    for (int i = 0; i < batch; i++) {
        if (i + GATHER_AHEAD < batch) {
            const int32_t next = ring_example(ring, ring_epochs, n_examples, p0 + i + GATHER_AHEAD);
            const uint8_t *np = pixels + (size_t)next * (size_t)example_size;
            for (int k = 0; k < example_size; k += 64) __builtin_prefetch(np + k);
        }
        const int32_t ex = ring_example(ring, ring_epochs, n_examples, p0 + i);
        const uint8_t *src = pixels + (size_t)ex * (size_t)example_size;
        float *dst = x + (size_t)i * (size_t)example_size;
        for (int k = 0; k < example_size; k++) dst[k] = (float)src[k];
        y[i] = labels[ex];
    }
}

/* ---- fused entries: the sequences themselves (the CPU gains little from fusing; having them
 * runs core's fusion planning in every CPU test) ---- */
/* dx = 0 where relu_y <= 0: ReLU's backward in place (a select the compiler vectorises; the
 * conditional store it replaces did not vectorise and cost ~4 ms per training step). */
static void mask_by_relu(size_t n, const float *relu_y, float *dx) { relu_backward(n, relu_y, dx, dx); }

static void cpu_conv2d_relu_forward(Backend *be, const Conv2dShape *s, const float *x,
                                    const float *w, const float *b, float *y, float *ws) {
    (void)be;
    conv2d_forward(s, x, w, b, y, ws);
    relu_forward((size_t)s->n * s->oh * s->ow * s->k, y, y);
}

static void cpu_dense_relu_forward(Backend *be, int n, int in, int out, const float *x,
                                   const float *w, const float *b, float *y) {
    (void)be;
    dense_forward(n, in, out, x, w, b, y);
    relu_forward((size_t)n * out, y, y);
}

static void cpu_maxpool2d_relu_backward(Backend *be, const Pool2dShape *s, const float *dy,
                                        const int32_t *argmax, const float *relu_x, float *dx) {
    (void)be;
    maxpool2d_backward(s, dy, argmax, dx);
    mask_by_relu((size_t)s->n * s->h * s->w * s->c, relu_x, dx);
}

static void cpu_dropout_relu_backward(Backend *be, size_t n, float rate, const uint8_t *mask,
                                      const float *relu_y, const float *dy, float *dx) {
    (void)be;
    dropout_backward(n, rate, mask, dy, dx);
    mask_by_relu(n, relu_y, dx);
}

static void cpu_softmax_xent_fused(Backend *be, int n, int c, const float *logits,
                                   const int32_t *labels, float *probs, float *loss,
                                   float *dlogits) {
    (void)be;
    softmax_xent_forward(n, c, logits, labels, probs, loss);
    softmax_xent_backward(n, c, probs, labels, 1.0f, dlogits);
}

/* Whether an optional path is on: unless the environment variable `name` is "0" (the before of
 * its benchmark, in the same binary). */
static int enabled(const char *name) {
    const char *v = getenv(name);
    return !(v && strcmp(v, "0") == 0);
}

/* ---- conv + ReLU + pool as one op (backend.h): conv1's direct loops' rows, or conv2's whole
 * images, pooled from a small buffer, the conv output never stored (docs/kernels-cpu.md, steps
 * 47 and 72); conv1's filter gradient by the direct filter loops over the conv output's
 * gradient, made from pool1's y a block of rows at a time (step 53), conv2's from the winners
 * (cpu_conv2d_relu_maxpool_backward_filter below). CNN_CPU_CONV_POOL=0 turns it off. */
static void cpu_conv2d_relu_maxpool_forward(Backend *be, const Conv2dShape *cs,
                                            const Pool2dShape *ps, const float *x,
                                            const float *w, const float *b, float *y,
                                            int32_t *argmax, float *ws) {
    (void)be;
    conv2d_relu_maxpool_forward_fused(cs, ps, x, w, b, y, argmax, ws);
}

static void cpu_maxpool2d_relu_backward_from_y(Backend *be, const Pool2dShape *s,
                                               const float *dy, const int32_t *argmax,
                                               const float *y, float *dx) {
    (void)be;
    maxpool2d_relu_backward_from_y(s, dy, argmax, y, dx);
}

/* ---- the backward from the pools' winners and the dense dx where alive (backend.h) ----
 * The work of the alive winners only: on MNIST after the first ~20 steps ~5% of pool2's outputs
 * (bench_relu_sparsity), where conv2's two GEMMs and dense1's dx do all of it
 * (docs/kernels-cpu.md, step 22). CNN_CPU_FROM_POOL=0 turns all three off. */

/* Vectors over the input channels (kernels/conv2d_pool.c): worth it from 8; conv1 (C = 1) keeps
 * its direct loops. */
static int cpu_conv2d_filter_grad_from_pool(Backend *be, const Conv2dShape *s) {
    (void)be;
    return s->c >= 8;
}

/* The conv + ReLU + pool op where its kernels fit and its filter gradient is the one the two
 * ops would take: the direct loops' (conv1), or the winners' (C >= 8, conv2). A conv of 5 to 7
 * channels keeps the two ops and conv2d_backward_filter. */
static int cpu_conv2d_relu_maxpool_fits(Backend *be, const Conv2dShape *cs,
                                        const Pool2dShape *ps) {
    return conv2d_relu_maxpool_fused_fits(cs, ps) &&
           (conv2d_relu_maxpool_direct_fits(cs, ps) || cpu_conv2d_filter_grad_from_pool(be, cs));
}

/* A conv the direct loops run (conv1, in the conv + ReLU + pool op above) takes them over its
 * output's gradient made a block at a time: at one input channel the winners' loops, one
 * channel's taps per winner, are not worth it. */
static void cpu_conv2d_relu_maxpool_backward_filter(Backend *be, const Conv2dShape *cs,
                                                    const Pool2dShape *ps, const float *x,
                                                    const float *y, const int32_t *argmax,
                                                    const float *dy, float *dw, float *db,
                                                    float *ws) {
    (void)be;
    if (conv2d_relu_maxpool_direct_fits(cs, ps))
        conv2d_relu_maxpool_backward_filter_direct(cs, ps, x, y, argmax, dy, dw, db, ws);
    else
        conv2d_relu_maxpool_backward_filter(cs, ps, x, y, argmax, dy, dw, db, ws);
}

/* kernels.h's conditions: a stride-1 conv, pool windows that do not overlap. */
static int cpu_conv2d_data_grad_from_pool(Backend *be, const Conv2dShape *cs,
                                          const Pool2dShape *ps) {
    (void)be;
    return cs->stride_h == 1 && cs->stride_w == 1 && ps->stride_h >= ps->kh &&
           ps->stride_w >= ps->kw;
}

static void cpu_conv2d_relu_maxpool_backward_data(Backend *be, const Conv2dShape *cs,
                                                  const Pool2dShape *ps, const float *w,
                                                  const float *y, const int32_t *argmax,
                                                  const float *dy, float *dx, float *ws) {
    (void)be;
    conv2d_relu_maxpool_backward_data(cs, ps, w, y, argmax, dy, dx, ws);
}

static int cpu_dense_data_alive_fits(Backend *be, int n, int in, int out) {
    (void)be;
    return n >= 0 && in >= 0 && dense_backward_data_alive_fits(out);
}

static void cpu_dense_backward_data_alive(Backend *be, int n, int in, int out, const float *x,
                                          const float *w, const float *dy, float *dx) {
    (void)be;
    dense_backward_data_alive(n, in, out, x, w, dy, dx);
}

static void cpu_set_threads(Backend *be, int threads) {
    (void)be;
    kernels_set_threads(threads);
}

Backend *backend_cpu_create(void) {
    Backend *be = calloc(1, sizeof *be);
    if (!be) return NULL;
    be->name = "cpu";
    be->destroy = cpu_destroy;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_upload;
    be->download = cpu_download;
    be->copy = cpu_copy;
    be->zero = cpu_zero;
    be->sync = cpu_sync;
    be->last_error = cpu_last_error;
    be->conv2d_workspace_floats = cpu_conv2d_workspace_floats;
    be->conv2d_forward = cpu_conv2d_forward;
    be->conv2d_backward_data = cpu_conv2d_backward_data;
    be->conv2d_backward_filter = cpu_conv2d_backward_filter;
    be->maxpool2d_forward = cpu_maxpool2d_forward;
    be->maxpool2d_backward = cpu_maxpool2d_backward;
    be->dense_forward = cpu_dense_forward;
    be->dense_backward = cpu_dense_backward;
    be->relu_forward = cpu_relu_forward;
    be->relu_backward = cpu_relu_backward;
    be->dropout_forward = cpu_dropout_forward;
    be->dropout_backward = cpu_dropout_backward;
    be->softmax_forward = cpu_softmax_forward;
    be->softmax_backward = cpu_softmax_backward;
    be->softmax_xent_forward = cpu_softmax_xent_forward;
    be->softmax_xent_backward = cpu_softmax_xent_backward;
    be->argmax_correct = cpu_argmax_correct;
    be->adam_update = cpu_adam_update;
    be->sgd_update = cpu_sgd_update;
    be->momentum_update = cpu_momentum_update;
    be->add_inplace = cpu_add_inplace;
    be->mean_forward = cpu_mean_forward;
    be->mean_backward = cpu_mean_backward;
    be->u8_to_float = cpu_u8_to_float;
    be->eval_accumulate = cpu_eval_accumulate;
    be->step_increment = cpu_step_increment;
    be->gather_batch = cpu_gather_batch;
    be->conv2d_relu_forward = cpu_conv2d_relu_forward;
    be->dense_relu_forward = cpu_dense_relu_forward;
    be->maxpool2d_relu_backward = cpu_maxpool2d_relu_backward;
    be->dropout_relu_backward = cpu_dropout_relu_backward;
    be->softmax_xent_fused = cpu_softmax_xent_fused;
    if (enabled("CNN_CPU_FROM_POOL")) {
        be->conv2d_relu_maxpool_backward_filter = cpu_conv2d_relu_maxpool_backward_filter;
        be->conv2d_filter_grad_from_pool = cpu_conv2d_filter_grad_from_pool;
        be->conv2d_data_grad_from_pool = cpu_conv2d_data_grad_from_pool;
        be->conv2d_relu_maxpool_backward_data = cpu_conv2d_relu_maxpool_backward_data;
        be->dense_data_alive_fits = cpu_dense_data_alive_fits;
        be->dense_backward_data_alive = cpu_dense_backward_data_alive;
    }
    if (enabled("CNN_CPU_CONV_POOL")) {
        be->conv2d_relu_maxpool_forward = cpu_conv2d_relu_maxpool_forward;
        be->conv2d_relu_maxpool_fits = cpu_conv2d_relu_maxpool_fits;
        be->maxpool2d_relu_backward_from_y = cpu_maxpool2d_relu_backward_from_y;
    }
    /* dense1's backward and Adam in one pass (docs/kernels-cpu.md, step 44);
     * CNN_CPU_DENSE_ADAM=0 turns it off */
    if (enabled("CNN_CPU_DENSE_ADAM")) be->dense_backward_adam = cpu_dense_backward_adam;
    be->run_steps = NULL;          /* eager: core loops */
    be->invalidate_graphs = NULL;
    be->set_threads = cpu_set_threads;
    return be;
}
