/* backend_cuda.c: the Backend (core/backend.h) on our own CUDA kernels (kernels/kernels_cuda.h).
 *
 * Everything runs in order on one non-blocking stream, except the parameter gradients, which go
 * to a second one (below: "the parameter-gradient stream"; CNN_CUDA_STREAMS=0 keeps one). Entries
 * only enqueue; a failing launch is recorded and reported by the next sync()/download(). Memory:
 * cudaMalloc at model creation only; the GEMMs' split-K scratch (one per stream) is allocated
 * once here (so conv2d_workspace_floats is 0).
 * run_steps() runs the first call of a step function eagerly (module loading, first-touch), then
 * captures one call into a CUDA graph per key and replays it: a whole training step becomes one
 * graph launch. Environment: CNN_CUDA_GRAPHS=0 runs steps eagerly; CNN_CUDA_VERBOSE=1 prints the
 * nodes of each captured graph (the launches per step); CNN_CUDA_FUSED=0 leaves the optional fused
 * entries out (core then issues the unfused sequences); CNN_CUDA_STREAMS=1 (the default) keeps
 * the optimizer on the main stream, =2 runs per-layer updates on the gradient stream, =0 runs
 * everything on one stream. */
#include "core/backend_cuda.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_cuda.h"

/* Split-K scratch: 4M floats (16 MB) covers every GEMM of the MNIST model at any batch (the
 * largest, dense 3136->1024 forward at batch 1000, wants 2M); larger models just split less. */
#define CUDA_WS_FLOATS ((size_t)4 << 20)

#define CTX(be) ((CudaCtx *)(be)->ctx)

int cuda_record(CudaCtx *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    if (c->err == cudaSuccess) {
        c->err = e;
        snprintf(c->msg, sizeof c->msg, "%s: %s (%s)", what, cudaGetErrorString(e),
                 cudaGetErrorName(e));
    }
    return 1;
}

/* Returns the recorded error (and clears it) as 0 / -1. */
static int take_error(CudaCtx *c) {
    if (c->err == cudaSuccess) return 0;
    c->err = cudaSuccess; /* the message stays for last_error() */
    return -1;
}

/* ---- the parameter-gradient stream ------------------------------------------------------- */
/* The entries that write only parameter gradients (filter gradients, dense dw/db) read
 * activations and gradients the main stream has already produced and write buffers nothing
 * reads before the optimizer, so they can run on a second stream beside the rest of the
 * backward pass: beside conv2's data gradient and the dense layers' dx, which at batch 100 fill
 * the GPU only partly (one wave of tiles or less). grad_stream_begin() returns the stream (and
 * split-K scratch) for such an entry: the second stream, after it has waited for everything
 * issued to the main stream so far. grads_join() makes the main stream wait for the second;
 * every main-stream entry that reads gradients (add_inplace, the one-pass optimizer), every
 * transfer, sync and step_increment call it first (backend.h, "Ordering"). Inside a captured
 * graph the two streams become two branches of the graph. */
static cudaStream_t grad_stream_begin(CudaCtx *c, float **ws) {
    if (!c->grad_stream) {
        *ws = c->ws;
        return c->stream;
    }
    cuda_record(c, cudaEventRecord(c->fork_event, c->stream), "cudaEventRecord (fork)");
    cuda_record(c, cudaStreamWaitEvent(c->grad_stream, c->fork_event, 0),
                "cudaStreamWaitEvent (fork)");
    c->grads_pending = 1;
    *ws = c->grad_ws;
    return c->grad_stream;
}

static void grads_join(CudaCtx *c) {
    if (!c->grads_pending) return;
    cuda_record(c, cudaEventRecord(c->join_event, c->grad_stream), "cudaEventRecord (join)");
    cuda_record(c, cudaStreamWaitEvent(c->stream, c->join_event, 0),
                "cudaStreamWaitEvent (join)");
    c->grads_pending = 0;
}

/* The optimizer's stream: with per-layer updates (optimizer_per_layer, CNN_CUDA_STREAMS=2) the
 * gradient stream, after everything issued so far (the layer's own backward has read its
 * parameters); else the main stream, after the gradient stream's work. */
static cudaStream_t update_stream(const Backend *be) {
    CudaCtx *c = CTX(be);
    if (be->optimizer_per_layer) {
        float *unused;
        return grad_stream_begin(c, &unused);
    }
    grads_join(c);
    return c->stream;
}

/* ---- lifetime and memory ------------------------------------------------------------------ */
static void cu_invalidate_graphs(Backend *be) {
    CudaCtx *c = CTX(be);
    for (int i = 0; i < c->ngraphs; i++) {
        cudaGraphExecDestroy(c->graphs[i].exec);
        if (c->graphs[i].multi) cudaGraphExecDestroy(c->graphs[i].multi);
    }
    c->ngraphs = 0;
}

static void cu_destroy(Backend *be) {
    if (!be) return;
    CudaCtx *c = CTX(be);
    if (c) {
        grads_join(c);
        cudaStreamSynchronize(c->stream);
        cu_invalidate_graphs(be);
        if (c->ext_free) c->ext_free(c->ext);
        cudaFree(c->ws);
        if (c->grad_stream) {
            cudaFree(c->grad_ws);
            cudaEventDestroy(c->fork_event);
            cudaEventDestroy(c->join_event);
            cudaStreamDestroy(c->grad_stream);
        }
        cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

static void *cu_alloc(Backend *be, size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        char what[64];
        snprintf(what, sizeof what, "cudaMalloc(%zu bytes)", bytes);
        cuda_record(CTX(be), e, what);
        cudaGetLastError(); /* not sticky: the context is still usable */
        return NULL;
    }
    return p;
}

static void cu_free(Backend *be, void *p) {
    if (p) cuda_record(CTX(be), cudaFree(p), "cudaFree");
}

static void cu_upload(Backend *be, void *dst, const void *src, size_t bytes) {
    CudaCtx *c = CTX(be);
    if (!bytes) return;
    grads_join(c);
    /* Synchronous: src may be reused as soon as this returns. */
    if (!cuda_record(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream),
                     "upload"))
        cuda_record(c, cudaStreamSynchronize(c->stream), "upload (sync)");
}

static int cu_download(Backend *be, void *dst, const void *src, size_t bytes) {
    CudaCtx *c = CTX(be);
    grads_join(c);
    if (bytes)
        cuda_record(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream),
                    "download");
    cuda_record(c, cudaStreamSynchronize(c->stream), "download (sync)");
    return take_error(c);
}

static void cu_copy(Backend *be, void *dst, const void *src, size_t bytes) {
    CudaCtx *c = CTX(be);
    grads_join(c);
    if (bytes)
        cuda_record(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream),
                    "copy");
}

static void cu_zero(Backend *be, void *p, size_t bytes) {
    CudaCtx *c = CTX(be);
    grads_join(c);
    if (bytes) cuda_record(c, cudaMemsetAsync(p, 0, bytes, c->stream), "zero");
}

static int cu_sync(Backend *be) {
    CudaCtx *c = CTX(be);
    grads_join(c);
    cuda_record(c, cudaStreamSynchronize(c->stream), "sync");
    return take_error(c);
}

static const char *cu_last_error(Backend *be) { return CTX(be)->msg; }

/* ---- kernels ------------------------------------------------------------------------------ */
static size_t cu_conv2d_workspace_floats(Backend *be, const Conv2dShape *s) {
    (void)be;
    (void)s;
    return 0; /* the backend's own split-K scratch is used */
}

static void cu_conv2d_forward(Backend *be, const Conv2dShape *s, const float *x, const float *w,
                              const float *b, float *y, float *ws) {
    CudaCtx *c = CTX(be);
    (void)ws;
    cuda_record(c, conv2d_forward_cuda(s, x, w, b, y, 0, c->ws, c->ws_floats, c->stream),
                "conv2d_forward_cuda");
}

static void cu_conv2d_backward_data(Backend *be, const Conv2dShape *s, const float *dy,
                                    const float *w, float *dx, float *ws) {
    CudaCtx *c = CTX(be);
    (void)ws;
    cuda_record(c, conv2d_backward_data_cuda(s, dy, w, dx, c->ws, c->ws_floats, c->stream),
                "conv2d_backward_data_cuda");
}

static void cu_conv2d_backward_filter(Backend *be, const Conv2dShape *s, const float *x,
                                      const float *dy, float *dw, float *db, float *ws) {
    CudaCtx *c = CTX(be);
    (void)ws;
    float *gws;
    cudaStream_t gs = grad_stream_begin(c, &gws);
    cuda_record(c, conv2d_backward_filter_cuda(s, x, dy, dw, db, gws, c->ws_floats, gs),
                "conv2d_backward_filter_cuda");
}

static void cu_maxpool2d_forward(Backend *be, const Pool2dShape *s, const float *x, float *y,
                                 int32_t *argmax) {
    CudaCtx *c = CTX(be);
    cuda_record(c, maxpool2d_forward_cuda(s, x, y, argmax, c->stream), "maxpool2d_forward_cuda");
}

static void cu_maxpool2d_backward(Backend *be, const Pool2dShape *s, const float *dy,
                                  const int32_t *argmax, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, maxpool2d_backward_cuda(s, dy, argmax, NULL, dx, c->stream),
                "maxpool2d_backward_cuda");
}

static void cu_dense_forward(Backend *be, int n, int in, int out, const float *x, const float *w,
                             const float *b, float *y) {
    CudaCtx *c = CTX(be);
    cuda_record(c, dense_forward_cuda(n, in, out, x, w, b, y, 0, c->ws, c->ws_floats, c->stream),
                "dense_forward_cuda");
}

static void cu_dense_backward(Backend *be, int n, int in, int out, const float *x, const float *w,
                              const float *dy, float *dx, float *dw, float *db) {
    CudaCtx *c = CTX(be);
    /* dw and db first, on the gradient stream; then dx on the main stream, beside them. */
    if (dw) {
        float *gws;
        cudaStream_t gs = grad_stream_begin(c, &gws);
        cuda_record(c,
                    dense_backward_cuda(n, in, out, x, w, dy, NULL, dw, db, gws, c->ws_floats, gs),
                    "dense_backward_cuda (dw)");
    }
    if (dx)
        cuda_record(c,
                    dense_backward_cuda(n, in, out, x, w, dy, dx, NULL, NULL, c->ws, c->ws_floats,
                                        c->stream),
                    "dense_backward_cuda (dx)");
}

static void cu_relu_forward(Backend *be, size_t n, const float *x, float *y) {
    CudaCtx *c = CTX(be);
    cuda_record(c, relu_forward_cuda(n, x, y, c->stream), "relu_forward_cuda");
}

static void cu_relu_backward(Backend *be, size_t n, const float *y, const float *dy, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, relu_backward_cuda(n, y, dy, dx, c->stream), "relu_backward_cuda");
}

static void cu_dropout_forward(Backend *be, size_t n, float rate, uint64_t seed,
                               uint64_t stream_base, const int64_t *step, const float *x,
                               float *y, uint8_t *mask) {
    CudaCtx *c = CTX(be);
    cuda_record(c, dropout_forward_cuda(n, rate, seed, stream_base, 16, step, x, y, mask, c->stream),
                "dropout_forward_cuda");
}

static void cu_dropout_backward(Backend *be, size_t n, float rate, const uint8_t *mask,
                                const float *dy, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, dropout_backward_cuda(n, rate, mask, NULL, dy, dx, c->stream),
                "dropout_backward_cuda");
}

static void cu_softmax_forward(Backend *be, int n, int cls, const float *logits, float *probs) {
    CudaCtx *c = CTX(be);
    cuda_record(c, softmax_forward_cuda(n, cls, logits, probs, c->stream), "softmax_forward_cuda");
}

static void cu_softmax_backward(Backend *be, int n, int cls, const float *y, const float *dy,
                                float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, softmax_backward_cuda(n, cls, y, dy, dx, c->stream), "softmax_backward_cuda");
}

static void cu_softmax_xent_forward(Backend *be, int n, int cls, const float *logits,
                                    const int32_t *labels, float *probs, float *loss) {
    CudaCtx *c = CTX(be);
    cuda_record(c, softmax_xent_forward_cuda(n, cls, logits, labels, probs, loss, c->stream),
                "softmax_xent_forward_cuda");
}

static void cu_softmax_xent_backward(Backend *be, int n, int cls, const float *probs,
                                     const int32_t *labels, float dloss, float *dlogits) {
    CudaCtx *c = CTX(be);
    cuda_record(c, softmax_xent_backward_cuda(n, cls, probs, labels, dloss, dlogits, c->stream),
                "softmax_xent_backward_cuda");
}

static void cu_argmax_correct(Backend *be, int n, int cls, const float *logits,
                              const int32_t *labels, int32_t *correct) {
    CudaCtx *c = CTX(be);
    cuda_record(c, argmax_correct_cuda(n, cls, logits, labels, (int *)correct, c->stream),
                "argmax_correct_cuda");
}

static void cu_adam_update(Backend *be, size_t n, float *w, const float *g, float *m, float *v,
                           float lr, float beta1, float beta2, float eps, const int64_t *step) {
    CudaCtx *c = CTX(be);
    cudaStream_t us = update_stream(be);
    cuda_record(c, adam_update_cuda(n, w, g, m, v, lr, beta1, beta2, eps, step, us),
                "adam_update_cuda");
}

static void cu_sgd_update(Backend *be, size_t n, float *w, const float *g, float lr) {
    CudaCtx *c = CTX(be);
    cuda_record(c, sgd_update_cuda(n, w, g, lr, update_stream(be)), "sgd_update_cuda");
}

static void cu_momentum_update(Backend *be, size_t n, float *w, const float *g, float *vel,
                               float lr, float momentum, int nesterov) {
    CudaCtx *c = CTX(be);
    cuda_record(c, momentum_update_cuda(n, w, g, vel, lr, momentum, nesterov, update_stream(be)),
                "momentum_update_cuda");
}

static void cu_add_inplace(Backend *be, size_t n, const float *x, float *y) {
    CudaCtx *c = CTX(be);
    grads_join(c);
    cuda_record(c, add_inplace_cuda(n, x, y, c->stream), "add_inplace_cuda");
}

static void cu_mean_forward(Backend *be, size_t n, const float *x, float *y) {
    CudaCtx *c = CTX(be);
    cuda_record(c, mean_forward_cuda(n, x, y, c->stream), "mean_forward_cuda");
}

static void cu_mean_backward(Backend *be, size_t n, const float *dy, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, mean_backward_cuda(n, dy, dx, c->stream), "mean_backward_cuda");
}

static void cu_u8_to_float(Backend *be, size_t n, const uint8_t *src, float *dst) {
    CudaCtx *c = CTX(be);
    cuda_record(c, u8_to_float_cuda(n, src, dst, c->stream), "u8_to_float_cuda");
}

static void cu_eval_accumulate(Backend *be, const float *loss, const int32_t *correct,
                               double *loss_sum, int64_t *correct_sum) {
    CudaCtx *c = CTX(be);
    cuda_record(c, eval_accumulate_cuda(loss, correct, loss_sum, correct_sum, c->stream),
                "eval_accumulate_cuda");
}

static void cu_step_increment(Backend *be, int64_t *step) {
    CudaCtx *c = CTX(be);
    grads_join(c); /* the updates on the gradient stream read the step */
    cuda_record(c, step_advance_cuda(step, c->stream), "step_advance_cuda");
}

static void cu_gather_batch(Backend *be, int batch, int example_size, int n_examples,
                            const uint8_t *pixels, const int32_t *labels, const int32_t *ring,
                            int ring_epochs, const int64_t *step, float *x, int32_t *y) {
    CudaCtx *c = CTX(be);
    cuda_record(c,
                gather_batch_cuda(batch, example_size, n_examples, pixels, labels, ring,
                                  ring_epochs, step, x, y, c->stream),
                "gather_batch_cuda");
}

/* ---- fused entries (core/backend.h's optional table; CNN_CUDA_FUSED=0 leaves them NULL) ---- */
/* Each is one launch of a kernel whose fused variant test_kernels checks bit for bit (ReLU
 * masks, dropout, pooling) or to 1e-4/1e-5 (GEMM epilogues, softmax) against the CPU sequence
 * that core/backend_cpu.c runs for the same entry. */
static void cu_conv2d_relu_forward(Backend *be, const Conv2dShape *s, const float *x,
                                   const float *w, const float *b, float *y, float *ws) {
    CudaCtx *c = CTX(be);
    (void)ws;
    cuda_record(c, conv2d_forward_cuda(s, x, w, b, y, 1, c->ws, c->ws_floats, c->stream),
                "conv2d_forward_cuda (relu)");
}

static void cu_dense_relu_forward(Backend *be, int n, int in, int out, const float *x,
                                  const float *w, const float *b, float *y) {
    CudaCtx *c = CTX(be);
    cuda_record(c, dense_forward_cuda(n, in, out, x, w, b, y, 1, c->ws, c->ws_floats, c->stream),
                "dense_forward_cuda (relu)");
}

static void cu_maxpool2d_relu_backward(Backend *be, const Pool2dShape *s, const float *dy,
                                       const int32_t *argmax, const float *relu_x, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, maxpool2d_backward_cuda(s, dy, argmax, relu_x, dx, c->stream),
                "maxpool2d_backward_cuda (relu)");
}

static void cu_maxpool2d_relu_backward_from_y(Backend *be, const Pool2dShape *s,
                                              const float *dy, const int32_t *argmax,
                                              const float *y, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, maxpool2d_relu_backward_from_y_cuda(s, dy, argmax, y, dx, c->stream),
                "maxpool2d_relu_backward_from_y_cuda");
}

static void cu_dropout_relu_backward(Backend *be, size_t n, float rate, const uint8_t *mask,
                                     const float *relu_y, const float *dy, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, dropout_backward_cuda(n, rate, mask, relu_y, dy, dx, c->stream),
                "dropout_backward_cuda (relu)");
}

static void cu_softmax_xent_fused(Backend *be, int n, int cls, const float *logits,
                                  const int32_t *labels, float *probs, float *loss,
                                  float *dlogits) {
    CudaCtx *c = CTX(be);
    cuda_record(c, softmax_xent_fused_cuda(n, cls, logits, labels, probs, loss, dlogits, c->stream),
                "softmax_xent_fused_cuda");
}

/* The first layer's conv + ReLU + max pool (kernels/conv2d_pool.cu): the same forward bits as
 * cu_conv2d_relu_forward + cu_maxpool2d_forward, the filter gradient to 1e-5 of the unfused
 * maxpool2d_relu_backward + conv2d_backward_filter (test_kernels). */
static void cu_conv2d_relu_maxpool_forward(Backend *be, const Conv2dShape *cs,
                                           const Pool2dShape *ps, const float *x, const float *w,
                                           const float *b, float *y, int32_t *argmax, float *ws) {
    (void)ws;
    CudaCtx *c = CTX(be);
    cuda_record(c, conv2d_relu_maxpool_forward_cuda(cs, ps, x, w, b, y, argmax, c->stream),
                "conv2d_relu_maxpool_forward_cuda");
}

static void cu_conv2d_relu_maxpool_backward_filter(Backend *be, const Conv2dShape *cs,
                                                   const Pool2dShape *ps, const float *x,
                                                   const float *y, const int32_t *argmax,
                                                   const float *dy, float *dw, float *db,
                                                   float *ws) {
    CudaCtx *c = CTX(be);
    (void)ws;
    float *gws;
    cudaStream_t gs = grad_stream_begin(c, &gws);
    cuda_record(c,
                conv2d_relu_maxpool_backward_filter_cuda(cs, ps, x, y, argmax, dy, dw, db, gws,
                                                         c->ws_floats, gs),
                "conv2d_relu_maxpool_backward_filter_cuda");
}

/* Filter gradients from a max pool's winners (fusion level 3) where the backward kernel's pixel
 * groups apply (C % 32 == 0: conv2's 32 input channels): a quarter of the GEMM's multiply-adds,
 * 16-byte loads, one padding test per 32 taps. Elsewhere the GEMM stays, except with the conv +
 * pool forwards split (level 3's default since GPU run 5; CNN_CUDA_CONV_POOL_FWD=0 at levels 4
 * and 5): then the first layer (C = 1) takes it too, as its fused op's backward does (GPU run
 * 4: 26.6 us at batch 100 against 67.5 for the pool backward and the GEMM). */
static int cu_conv2d_filter_grad_from_pool(Backend *be, const Conv2dShape *s) {
    return CTX(be)->pool_filter_any_c || s->c % 32 == 0;
}

/* Data gradients from a max pool's winners (from level 3, the default since GPU run 5;
 * CNN_CUDA_DATA_FROM_POOL=0 turns them off: docs/gpu.md item 38) where the kernel serves the
 * shapes (conv2: a stride-1 conv of 32 input channels under a 2x2 pool of stride 2) and the
 * workspace holds the transposed filter: dx straight from pool2's y, argmax and dy, without
 * pool2's backward and the GEMM over the conv output's gradient, most of which is zeros. */
static int cu_conv2d_data_grad_from_pool(Backend *be, const Conv2dShape *cs,
                                         const Pool2dShape *ps) {
    return conv2d_relu_maxpool_backward_data_ok_cuda(cs, ps) &&
           conv2d_relu_maxpool_backward_data_workspace_floats_cuda(cs) <= CTX(be)->ws_floats;
}

static void cu_conv2d_relu_maxpool_backward_data(Backend *be, const Conv2dShape *cs,
                                                 const Pool2dShape *ps, const float *w,
                                                 const float *y, const int32_t *argmax,
                                                 const float *dy, float *dx, float *ws) {
    CudaCtx *c = CTX(be);
    (void)ws;
    cuda_record(c,
                conv2d_relu_maxpool_backward_data_cuda(cs, ps, w, y, argmax, dy, dx, c->ws,
                                                       c->ws_floats, c->stream),
                "conv2d_relu_maxpool_backward_data_cuda");
}

/* A dense layer's data gradient only where its input (a pooled ReLU output) is > 0
 * (CNN_CUDA_DENSE_DX_ALIVE=1; opt-in until a GPU has timed it, docs/gpu.md item 39): dense1,
 * whose input is ~95% zeros on MNIST after one epoch. */
static int cu_dense_data_alive_fits(Backend *be, int n, int in, int out) {
    (void)be;
    return dense_backward_data_alive_ok_cuda(n, in, out);
}

static void cu_dense_backward_data_alive(Backend *be, int n, int in, int out, const float *x,
                                         const float *w, const float *dy, float *dx) {
    CudaCtx *c = CTX(be);
    cuda_record(c, dense_backward_data_alive_cuda(n, in, out, x, w, dy, dx, c->stream),
                "dense_backward_data_alive_cuda");
}

/* A dense layer's forward and filter gradient over its input's nonzeros (CNN_CUDA_DENSE_SPARSE=1;
 * opt-in until a GPU has timed it, docs/gpu.md item 40): dense1, whose input is ~95% zeros on
 * MNIST after the first steps. The filter gradient on the gradient stream, as
 * cu_dense_backward's. */
static int cu_dense_sparse_input_fits(Backend *be, int n, int in, int out) {
    (void)be;
    return dense_sparse_input_ok_cuda(n, in, out);
}

static void cu_dense_forward_sparse_input(Backend *be, int n, int in, int out, const float *x,
                                          const float *w, const float *b, float *y, int relu) {
    CudaCtx *c = CTX(be);
    cuda_record(c, dense_forward_sparse_input_cuda(n, in, out, x, w, b, y, relu, c->stream),
                "dense_forward_sparse_input_cuda");
}

static void cu_dense_backward_filter_sparse_input(Backend *be, int n, int in, int out,
                                                  const float *x, const float *dy, float *dw,
                                                  float *db) {
    CudaCtx *c = CTX(be);
    float *gws;
    cudaStream_t gs = grad_stream_begin(c, &gws);
    (void)gws;
    cuda_record(c, dense_backward_filter_sparse_input_cuda(n, in, out, x, dy, dw, db, gs),
                "dense_backward_filter_sparse_input_cuda");
}

/* Dropout + the narrow dense layer after it (kernels/dense.cu): the same bits as
 * cu_dropout_forward + cu_dense_forward, and cu_dense_backward + cu_dropout_relu_backward. */
static int cu_dropout_dense_fits(Backend *be, int n, int in, int out) {
    (void)be;
    return dropout_dense_fits_cuda(n, in, out);
}

static void cu_dropout_dense_forward(Backend *be, int n, int in, int out, float rate,
                                     uint64_t seed, uint64_t stream_base, const int64_t *step,
                                     const float *x, const float *w, const float *b, float *y,
                                     uint8_t *mask, int relu) {
    CudaCtx *c = CTX(be);
    cuda_record(c,
                dropout_dense_forward_cuda(n, in, out, rate, seed, stream_base, 16, step, x, w, b,
                                           y, mask, relu, c->stream),
                "dropout_dense_forward_cuda");
}

static void cu_dropout_dense_backward(Backend *be, int n, int in, int out, float rate,
                                      const uint8_t *mask, int relu_x, const float *x,
                                      const float *w, const float *dy, float *dx, float *dw,
                                      float *db) {
    CudaCtx *c = CTX(be);
    /* dw and db first, on the gradient stream; then dx on the main stream (cu_dense_backward). */
    float *unused; /* the narrow kernels take no split-K scratch */
    cudaStream_t gs = grad_stream_begin(c, &unused);
    cuda_record(c,
                dropout_dense_backward_cuda(n, in, out, rate, mask, relu_x, x, w, dy, NULL, dw, db,
                                            gs),
                "dropout_dense_backward_cuda (dw)");
    if (dx)
        cuda_record(c,
                    dropout_dense_backward_cuda(n, in, out, rate, mask, relu_x, x, w, dy, dx, NULL,
                                                NULL, c->stream),
                    "dropout_dense_backward_cuda (dx)");
}

/* ---- graph capture ------------------------------------------------------------------------ */
/* CNN_CUDA_VERBOSE=1: prints what one captured step holds (the launches per step), or a
 * multi-step graph (`steps` > 1: the same step that many times). */
static void describe_graph(const Backend *be, int key, int steps, cudaGraph_t graph) {
    const char *v = getenv("CNN_CUDA_VERBOSE");
    if (!v || !*v || strcmp(v, "0") == 0) return;
    size_t n = 0;
    if (cudaGraphGetNodes(graph, NULL, &n) != cudaSuccess) return;
    cudaGraphNode_t *nodes = malloc((n ? n : 1) * sizeof *nodes);
    if (!nodes || cudaGraphGetNodes(graph, nodes, &n) != cudaSuccess) {
        free(nodes);
        return;
    }
    size_t kernels = 0, memsets = 0, memcpys = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        enum cudaGraphNodeType t;
        if (cudaGraphNodeGetType(nodes[i], &t) != cudaSuccess) continue;
        if (t == cudaGraphNodeTypeKernel) kernels++;
        else if (t == cudaGraphNodeTypeMemset) memsets++;
        else if (t == cudaGraphNodeTypeMemcpy) memcpys++;
        else other++;
    }
    free(nodes);
    /* The edges: how many the programmatic launches made programmatic (PDL), and the forks
     * (nodes with more than one successor: the gradient stream's branches). */
    size_t edges = 0, programmatic = 0, forks = 0;
    if (cudaGraphGetEdges(graph, NULL, NULL, NULL, &edges) == cudaSuccess && edges > 0) {
        cudaGraphNode_t *from = malloc(edges * sizeof *from), *to = malloc(edges * sizeof *to);
        cudaGraphEdgeData *data = malloc(edges * sizeof *data);
        if (from && to && data &&
            cudaGraphGetEdges(graph, from, to, data, &edges) == cudaSuccess) {
            for (size_t i = 0; i < edges; i++) {
                if (data[i].type == cudaGraphDependencyTypeProgrammatic) programmatic++;
                size_t same = 0;
                for (size_t j = 0; j < edges; j++) same += from[j] == from[i];
                int first = 1; /* count each node once, at its first edge */
                for (size_t j = 0; j < i; j++) first &= from[j] != from[i];
                if (same > 1 && first) forks++;
            }
        }
        free(from);
        free(to);
        free(data);
    }
    cudaGetLastError();
    const char *fusion = be->dropout_dense_forward ? "fused 5"
                         : be->maxpool2d_relu_backward_from_y ? "fused 4"
                         : be->conv2d_filter_grad_from_pool ? "fused 3"
                         : be->conv2d_relu_maxpool_backward_filter ? "fused 2"
                         : be->conv2d_relu_forward          ? "fused 1"
                                                            : "unfused";
    const char *split = be->conv2d_relu_maxpool_backward_filter &&
                                !be->conv2d_relu_maxpool_forward
                            ? ", conv + pool forwards split" : "";
    const char *data = be->conv2d_data_grad_from_pool ? ", data gradient from pool" : "";
    const char *alive = be->dense_backward_data_alive ? ", dense dx where alive" : "";
    const char *sparse = be->dense_forward_sparse_input ? ", dense over nonzeros" : "";
    char what[32] = "step graph";
    if (steps > 1) snprintf(what, sizeof what, "%d-step graph", steps);
    const int gemm = gemm_version_cuda();
    fprintf(stderr, "%s backend (%s%s%s%s%s, GEMM v%d): captured %s (key %d): %zu edges (%zu "
            "programmatic), %zu forks\n", be->name, fusion, split, data, alive, sparse, gemm, what,
            key, edges, programmatic, forks);
    fprintf(stderr, "%s backend (%s%s%s%s%s, GEMM v%d): captured %s (key %d): %zu nodes = %zu "
            "kernels, %zu memsets, %zu memcpys, %zu other\n", be->name, fusion, split, data,
            alive, sparse, gemm, what, key, n, kernels, memsets, memcpys, other);
}

/* Captures `steps` calls of step_fn into an executable graph; NULL (with the reason in `why`)
 * when the capture or instantiation fails. Nothing runs during a capture. */
static cudaGraphExec_t capture_steps(Backend *be, int key, void (*step_fn)(void *arg), void *arg,
                                     int steps, char *why, size_t whylen) {
    CudaCtx *c = CTX(be);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        snprintf(why, whylen, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
        return NULL;
    }
    for (int i = 0; i < steps; i++) step_fn(arg);
    grads_join(c); /* a capture must end with every forked stream joined */
    e = cudaStreamEndCapture(c->stream, &graph);
    if (e != cudaSuccess || c->err != cudaSuccess) {
        snprintf(why, whylen, "%s", e != cudaSuccess ? cudaGetErrorString(e) : c->msg);
        if (graph) cudaGraphDestroy(graph);
        return NULL;
    }
    describe_graph(be, key, steps, graph);
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        snprintf(why, whylen, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
        return NULL;
    }
    return exec;
}

static int cu_run_steps(Backend *be, int key, void (*step_fn)(void *arg), void *arg, int steps) {
    CudaCtx *c = CTX(be);
    if (steps <= 0) return c->err == cudaSuccess ? 0 : -1;
    int gi = -1;
    for (int i = 0; i < c->ngraphs; i++)
        if (c->graphs[i].key == key) gi = i;
    if (gi < 0 && !c->graphs_failed) {
        /* First call for this key: one step eagerly (loads the kernels' modules, makes cuDNN's
         * plans, so nothing lazy happens during capture), then capture the next one. */
        step_fn(arg);
        steps--;
        if (c->err != cudaSuccess) return -1;
        if (c->ngraphs == (int)(sizeof c->graphs / sizeof c->graphs[0]))
            cu_invalidate_graphs(be); /* a handful of keys at most; start over if more */
        char why[256];
        cudaGraphExec_t exec = capture_steps(be, key, step_fn, arg, 1, why, sizeof why);
        if (!exec && cuda_pdl_enabled()) {
            /* The risk of a new driver feature: a capture that refuses programmatic launches.
             * The same step without them is correct and captures as runs 1-3 did. */
            fprintf(stderr, "%s backend: WARNING: CUDA graph capture with programmatic "
                    "dependent launch failed (%s); launching without it from now on\n",
                    be->name, why);
            cuda_pdl_disable();
            c->err = cudaSuccess;
            c->msg[0] = 0;
            cudaGetLastError();
            exec = capture_steps(be, key, step_fn, arg, 1, why, sizeof why);
        }
        if (exec) {
            gi = c->ngraphs++;
            c->graphs[gi].key = key;
            c->graphs[gi].exec = exec;
            c->graphs[gi].multi = NULL;
            c->graphs[gi].multi_failed = 0;
        } else {
            /* Correct either way: say so loudly and run the steps eagerly from now on. */
            fprintf(stderr, "%s backend: WARNING: CUDA graph capture failed (%s); running steps "
                    "eagerly (CNN_CUDA_PDL=0 and CNN_CUDA_STREAMS=0 capture the plainer step "
                    "of earlier versions)\n", be->name, why);
            c->graphs_failed = 1;
            c->err = cudaSuccess;
            c->msg[0] = 0;
            cudaGetLastError();
        }
    }
    if (gi < 0) {
        for (int i = 0; i < steps && c->err == cudaSuccess; i++) step_fn(arg);
        return c->err == cudaSuccess ? 0 : -1;
    }
    /* graph_steps steps per launch while that many are left: the step graphs' boundaries
     * (the previous graph's completion, the next one's launch) are paid once per graph_steps
     * steps. Captured at the first call that needs it; the same kernels in the same order, so
     * the same bits as single-step launches (test_train). A failed capture leaves one step per
     * launch, which is correct. */
    const int k = c->graph_steps;
    while (k > 1 && steps >= k && !c->graphs[gi].multi_failed) {
        if (!c->graphs[gi].multi) {
            char why[256];
            c->graphs[gi].multi = capture_steps(be, key, step_fn, arg, k, why, sizeof why);
            if (!c->graphs[gi].multi) {
                fprintf(stderr, "%s backend: WARNING: capturing %d steps in one graph failed "
                        "(%s); one step per graph from now on\n", be->name, k, why);
                c->graphs[gi].multi_failed = 1;
                c->err = cudaSuccess;
                c->msg[0] = 0;
                cudaGetLastError();
                break;
            }
        }
        if (cuda_record(c, cudaGraphLaunch(c->graphs[gi].multi, c->stream), "cudaGraphLaunch"))
            return -1;
        steps -= k;
    }
    for (int i = 0; i < steps; i++)
        if (cuda_record(c, cudaGraphLaunch(c->graphs[gi].exec, c->stream), "cudaGraphLaunch"))
            return -1;
    return 0;
}

/* ---- creation ----------------------------------------------------------------------------- */
int backend_cuda_available(void) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count > 0;
}

Backend *backend_cuda_create_named(const char *name, char *err, size_t errlen) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(err, errlen, "no CUDA GPU: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
        return NULL;
    }
    Backend *be = calloc(1, sizeof *be);
    CudaCtx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        snprintf(err, errlen, "out of host memory creating the %s backend", name);
        return NULL;
    }
    be->ctx = c;
    if ((e = cudaSetDevice(0)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->ws, CUDA_WS_FLOATS * sizeof(float))) != cudaSuccess) {
        snprintf(err, errlen, "initialising the %s backend: %s", name, cudaGetErrorString(e));
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
        free(be);
        return NULL;
    }
    c->ws_floats = CUDA_WS_FLOATS;
    /* CNN_CUDA_STREAMS: 1 (the default) = the parameter gradients on a second stream, one
     * optimizer update after them on the main stream; 2 = the gradients and per-layer updates
     * there (GPU run 4, H100: 13.5 us per step slower than 1 at batch 100, the same at 1000);
     * 0 = every entry on one stream (runs 1-3; run 4: 42 us slower than 1 at batch 100, 298 at
     * 1000). The cuDNN backend keeps one stream (its library entries are not written for a
     * second). */
    const char *streams = getenv("CNN_CUDA_STREAMS");
    const int stream_mode = streams && (streams[0] == '0' || streams[0] == '2') && !streams[1]
        ? streams[0] - '0' : 1;
    if (strcmp(name, "cuda") == 0 && stream_mode > 0) {
        if ((e = cudaStreamCreateWithFlags(&c->grad_stream, cudaStreamNonBlocking)) != cudaSuccess ||
            (e = cudaEventCreateWithFlags(&c->fork_event, cudaEventDisableTiming)) != cudaSuccess ||
            (e = cudaEventCreateWithFlags(&c->join_event, cudaEventDisableTiming)) != cudaSuccess ||
            (e = cudaMalloc((void **)&c->grad_ws, CUDA_WS_FLOATS * sizeof(float))) != cudaSuccess) {
            snprintf(err, errlen, "initialising the %s backend's gradient stream: %s", name,
                     cudaGetErrorString(e));
            if (c->grad_ws) cudaFree(c->grad_ws);
            if (c->join_event) cudaEventDestroy(c->join_event);
            if (c->fork_event) cudaEventDestroy(c->fork_event);
            if (c->grad_stream) cudaStreamDestroy(c->grad_stream);
            cudaFree(c->ws);
            cudaStreamDestroy(c->stream);
            free(c);
            free(be);
            return NULL;
        }
        be->optimizer_per_layer = stream_mode == 2;
    }

    be->name = name;
    be->destroy = cu_destroy;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->upload = cu_upload;
    be->download = cu_download;
    be->copy = cu_copy;
    be->zero = cu_zero;
    be->sync = cu_sync;
    be->last_error = cu_last_error;
    be->conv2d_workspace_floats = cu_conv2d_workspace_floats;
    be->conv2d_forward = cu_conv2d_forward;
    be->conv2d_backward_data = cu_conv2d_backward_data;
    be->conv2d_backward_filter = cu_conv2d_backward_filter;
    be->maxpool2d_forward = cu_maxpool2d_forward;
    be->maxpool2d_backward = cu_maxpool2d_backward;
    be->dense_forward = cu_dense_forward;
    be->dense_backward = cu_dense_backward;
    be->relu_forward = cu_relu_forward;
    be->relu_backward = cu_relu_backward;
    be->dropout_forward = cu_dropout_forward;
    be->dropout_backward = cu_dropout_backward;
    be->softmax_forward = cu_softmax_forward;
    be->softmax_backward = cu_softmax_backward;
    be->softmax_xent_forward = cu_softmax_xent_forward;
    be->softmax_xent_backward = cu_softmax_xent_backward;
    be->argmax_correct = cu_argmax_correct;
    be->adam_update = cu_adam_update;
    be->sgd_update = cu_sgd_update;
    be->momentum_update = cu_momentum_update;
    be->add_inplace = cu_add_inplace;
    be->mean_forward = cu_mean_forward;
    be->mean_backward = cu_mean_backward;
    be->u8_to_float = cu_u8_to_float;
    be->eval_accumulate = cu_eval_accumulate;
    be->step_increment = cu_step_increment;
    be->gather_batch = cu_gather_batch;
    /* CNN_CUDA_FUSED: 0 = no fused entries, core issues the unfused sequences (the step verified
     * in the first GPU run: 7 launches and 7 passes over activations more per step); 1 = the
     * ReLU/dropout/cross-entropy fusions (GPU runs 2 and 3); 2 = those and the first layer's
     * conv + ReLU + max pool (kernels/conv2d_pool.cu); 3 = those and conv2's filter gradient
     * from pool2's winners; 4 = those and conv2 + ReLU + pool2 as one op too (its
     * GEMM with the pool in the store; the pool backward's ReLU mask from the pool's output); 5
     * = those and the dropout with the logits layer as one op. The default is 3: GPU run 4
     * (H100) timed level 4 at 17 us per step slower than 3 at batch 100 (39 at 1000), and 5 at
     * 23 us slower than 4 (257 at 1000: the fused backward's dw sums every row in one thread).
     * From level 3, two switches below change the step: since GPU run 5 level 3 splits the
     * conv + pool forwards (the first layer's filter gradient still from pool1's winners), and
     * levels 3-5 take conv2's data gradient from pool2's winners (levels 4 and 5 too: on the GPU
     * only timed that way, run 5b; the emulator's test_backend_cuda trains them against the
     * CPU). */
    const char *fused = getenv("CNN_CUDA_FUSED");
    const int fuse = fused && *fused >= '0' && *fused <= '5' && !fused[1] ? *fused - '0' : 3;
    if (fuse >= 1) {
        be->conv2d_relu_forward = cu_conv2d_relu_forward;
        be->dense_relu_forward = cu_dense_relu_forward;
        be->maxpool2d_relu_backward = cu_maxpool2d_relu_backward;
        be->dropout_relu_backward = cu_dropout_relu_backward;
        be->softmax_xent_fused = cu_softmax_xent_fused;
    }
    if (fuse >= 2) {
        be->conv2d_relu_maxpool_forward = cu_conv2d_relu_maxpool_forward;
        be->conv2d_relu_maxpool_backward_filter = cu_conv2d_relu_maxpool_backward_filter;
    }
    if (fuse >= 3) be->conv2d_filter_grad_from_pool = cu_conv2d_filter_grad_from_pool;
    if (fuse >= 4) be->maxpool2d_relu_backward_from_y = cu_maxpool2d_relu_backward_from_y;
    /* CNN_CUDA_CONV_POOL_FWD (from level 3, docs/gpu.md item 35): 0 = no fused conv + ReLU +
     * pool forward, 1 = that forward. Unset: 0 at level 3 (the default since GPU run 5), 1 at
     * levels 4 and 5 (whose point is conv2 + ReLU + pool2 as one op: without the fused forward
     * they would be level 3). GPU run 4 timed the first layer's fused forward at 62.7 us at
     * batch 100 against 22.0 for the conv GEMM (ReLU in its store) and the pool kernel (311
     * against 185 at 1000); its backward, the filter gradient from pool1's winners, stays: core
     * then records the conv and the pool as two ops, and plans the filter gradients of both
     * convs from their pools' winners (tape.c, plan_filter_from_pool), pool1's own backward
     * skipped (nothing reads the first layer's output gradient). GPU run 5 (H200, 2026-11-28)
     * timed the whole step with it (CUDA graph, ms): 0.345 against 0.391 at batch 100 (MNIST
     * 0.385 against 0.427), 1.950 against 2.096 at 1000 (MNIST 2.774 against 2.918). */
    const char *conv_pool_fwd = getenv("CNN_CUDA_CONV_POOL_FWD");
    const int split = conv_pool_fwd && strcmp(conv_pool_fwd, "0") == 0   ? 1
                      : conv_pool_fwd && strcmp(conv_pool_fwd, "1") == 0 ? 0
                                                                         : fuse == 3;
    if (fuse >= 3 && split) {
        be->conv2d_relu_maxpool_forward = NULL;
        c->pool_filter_any_c = 1;
    }
    /* CNN_CUDA_DATA_FROM_POOL (from level 3, docs/gpu.md item 38): conv2's data gradient from
     * pool2's winners, pool2's backward and the data gradient's GEMM gone; anything but "0" is
     * on; the default at levels 3-5 since GPU run 5 (H200, 2026-11-28: the step 0.354 against
     * 0.391 ms at batch 100, MNIST 0.398 against 0.427; 1.838 against 2.096 at 1000, MNIST 2.331
     * against 2.918); 0 turns it off. */
    const char *data_from_pool = getenv("CNN_CUDA_DATA_FROM_POOL");
    if (fuse >= 3 && !(data_from_pool && strcmp(data_from_pool, "0") == 0)) {
        be->conv2d_data_grad_from_pool = cu_conv2d_data_grad_from_pool;
        be->conv2d_relu_maxpool_backward_data = cu_conv2d_relu_maxpool_backward_data;
    }
    const char *dx_alive = getenv("CNN_CUDA_DENSE_DX_ALIVE");
    if (dx_alive && strcmp(dx_alive, "1") == 0) {
        be->dense_data_alive_fits = cu_dense_data_alive_fits;
        be->dense_backward_data_alive = cu_dense_backward_data_alive;
    }
    const char *dense_sparse = getenv("CNN_CUDA_DENSE_SPARSE");
    if (dense_sparse && strcmp(dense_sparse, "1") == 0) {
        be->dense_sparse_input_fits = cu_dense_sparse_input_fits;
        be->dense_forward_sparse_input = cu_dense_forward_sparse_input;
        be->dense_backward_filter_sparse_input = cu_dense_backward_filter_sparse_input;
    }
    if (fuse >= 5) {
        be->dropout_dense_fits = cu_dropout_dense_fits;
        be->dropout_dense_forward = cu_dropout_dense_forward;
        be->dropout_dense_backward = cu_dropout_dense_backward;
    }
    /* CNN_CUDA_GRAPHS=0: eager steps (for comparison and debugging). */
    const char *graphs = getenv("CNN_CUDA_GRAPHS");
    int use_graphs = !(graphs && strcmp(graphs, "0") == 0);
    /* CNN_CUDA_GRAPH_STEPS: training steps per replayed graph where a call has that many left
     * (default 10; 1 = one step per graph, as GPU runs 1-3; at most 100). */
    const char *per_graph = getenv("CNN_CUDA_GRAPH_STEPS");
    c->graph_steps = per_graph && *per_graph ? atoi(per_graph) : 10;
    if (c->graph_steps < 1) c->graph_steps = 1;
    if (c->graph_steps > 100) c->graph_steps = 100;
    be->run_steps = use_graphs ? cu_run_steps : NULL;
    be->invalidate_graphs = use_graphs ? cu_invalidate_graphs : NULL;
    be->set_threads = NULL;
    return be;
}

Backend *backend_cuda_create(char *err, size_t errlen) {
    return backend_cuda_create_named("cuda", err, errlen);
}
