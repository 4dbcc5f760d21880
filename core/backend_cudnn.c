/* backend_cudnn.c: the reference GPU backend, `--device cudnn`: convolutions through cuDNN,
 * dense layers through cuBLAS, ReLU through cuDNN's activation; everything else (pooling with
 * argmax, philox dropout, softmax cross-entropy, Adam, the batch gather) has no library
 * equivalent with our semantics and runs on our kernels. It is the CUDA backend (stream,
 * memory, errors, graph capture) with those entries swapped.
 *
 * cuDNN needs per-shape descriptors and algorithms: they are made on the first call with a
 * shape (the algorithms timed once with cudnnFind, deterministic ones only for the backward
 * passes), which core's run_steps makes eagerly before any graph capture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend_cuda.h"
#include "kernels/kernels_cudnn.h"

#define MAX_PLANS 32
#define CONV_WS_LIMIT ((size_t)256 << 20)  /* largest cuDNN workspace an algorithm may ask */
#define CUBLAS_WS_BYTES ((size_t)32 << 20) /* cuBLAS's own workspace, fixed for graph capture */

typedef struct {
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    Conv2dCudnn *plans[MAX_PLANS];
    int nplans;
    void *ws; /* cuDNN workspace, grown when a plan needs more (never during a capture) */
    size_t ws_bytes;
    float *wtmp; /* KRSC copy of a filter or its gradient */
    size_t wtmp_floats;
    float *ones; /* n ones for the dense bias */
    size_t ones_n;
    void *blas_ws;
} CudnnExt;

#define CTX(be) ((CudaCtx *)(be)->ctx)
#define EXT(be) ((CudnnExt *)CTX(be)->ext)

static void record_msg(CudaCtx *c, const char *what, const char *why) {
    if (c->err != cudaSuccess) return;
    c->err = cudaErrorUnknown;
    snprintf(c->msg, sizeof c->msg, "%.48s: %.200s", what, why);
}

static void dnn_record(CudaCtx *c, cudnnStatus_t st, const char *what) {
    if (st != CUDNN_STATUS_SUCCESS) record_msg(c, what, cudnnGetErrorString(st));
}

static void blas_record(CudaCtx *c, cublasStatus_t st, const char *what) {
    if (st != CUBLAS_STATUS_SUCCESS) {
        char why[48];
        snprintf(why, sizeof why, "cuBLAS status %d", (int)st);
        record_msg(c, what, why);
    }
}

static int capturing(CudaCtx *c) {
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    return cudaStreamIsCapturing(c->stream, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone;
}

/* Grows a device buffer outside any capture (allocation inside a step would break the graph). */
static int grow(CudaCtx *c, void **buf, size_t *have, size_t need, const char *what) {
    if (need <= *have) return 0;
    if (capturing(c)) {
        record_msg(c, what, "a new shape appeared while capturing a CUDA graph");
        return -1;
    }
    if (cuda_record(c, cudaStreamSynchronize(c->stream), what)) return -1;
    cudaFree(*buf);
    *buf = NULL;
    *have = 0;
    if (cuda_record(c, cudaMalloc(buf, need), what)) return -1;
    *have = need;
    return 0;
}

static Conv2dCudnn *plan_for(Backend *be, const Conv2dShape *s) {
    CudaCtx *c = CTX(be);
    CudnnExt *x = EXT(be);
    for (int i = 0; i < x->nplans; i++)
        if (memcmp(conv2d_cudnn_shape(x->plans[i]), s, sizeof *s) == 0) return x->plans[i];
    if (capturing(c)) {
        record_msg(c, "cudnn conv", "a new conv shape appeared while capturing a CUDA graph");
        return NULL;
    }
    if (x->nplans == MAX_PLANS) {
        record_msg(c, "cudnn conv", "too many distinct conv shapes");
        return NULL;
    }
    char err[256];
    if (cuda_record(c, cudaStreamSynchronize(c->stream), "cudnn plan")) return NULL;
    Conv2dCudnn *p = conv2d_cudnn_create(x->dnn, s, 1, CONV_WS_LIMIT, err, sizeof err);
    if (!p) {
        record_msg(c, "cudnn plan", err);
        return NULL;
    }
    size_t wf = (size_t)s->kh * s->kw * s->c * s->k;
    size_t have_wtmp = x->wtmp_floats * sizeof(float), have_ws = x->ws_bytes;
    if (grow(c, &x->ws, &have_ws, conv2d_cudnn_workspace_bytes(p), "cudnn workspace") ||
        grow(c, (void **)&x->wtmp, &have_wtmp, wf * sizeof(float), "cudnn filter scratch")) {
        conv2d_cudnn_destroy(p);
        return NULL;
    }
    x->ws_bytes = have_ws;
    x->wtmp_floats = have_wtmp / sizeof(float);
    x->plans[x->nplans++] = p;
    return p;
}

static const float *ones_for(Backend *be, int n) {
    CudaCtx *c = CTX(be);
    CudnnExt *x = EXT(be);
    if ((size_t)n <= x->ones_n) return x->ones;
    size_t have = x->ones_n * sizeof(float);
    if (grow(c, (void **)&x->ones, &have, (size_t)n * sizeof(float), "cublas ones")) return NULL;
    float *h = malloc((size_t)n * sizeof(float));
    if (!h) {
        record_msg(c, "cublas ones", "out of host memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) h[i] = 1.0f;
    /* on the backend's stream, which does not wait for the legacy stream (a cudaMemcpy from
     * pageable memory may return before its DMA is done), and finished before h goes */
    cudaError_t e = cudaMemcpyAsync(x->ones, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice,
                                    c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    free(h);
    if (cuda_record(c, e, "cublas ones")) return NULL;
    x->ones_n = (size_t)n;
    return x->ones;
}

/* ---- the swapped entries ------------------------------------------------------------------ */
static size_t dn_conv2d_workspace_floats(Backend *be, const Conv2dShape *s) {
    (void)be;
    (void)s;
    return 0; /* the backend's own cuDNN workspace is used */
}

static void dn_conv2d_forward(Backend *be, const Conv2dShape *s, const float *xin, const float *w,
                              const float *b, float *y, float *ws) {
    (void)ws;
    CudnnExt *x = EXT(be);
    Conv2dCudnn *p = plan_for(be, s);
    if (p)
        dnn_record(CTX(be),
                   conv2d_forward_cudnn(x->dnn, p, xin, w, b, y, x->wtmp, x->ws, x->ws_bytes),
                   "conv2d_forward_cudnn");
}

static void dn_conv2d_backward_data(Backend *be, const Conv2dShape *s, const float *dy,
                                    const float *w, float *dx, float *ws) {
    (void)ws;
    CudnnExt *x = EXT(be);
    Conv2dCudnn *p = plan_for(be, s);
    if (p)
        dnn_record(CTX(be),
                   conv2d_backward_data_cudnn(x->dnn, p, dy, w, dx, x->wtmp, x->ws, x->ws_bytes),
                   "conv2d_backward_data_cudnn");
}

static void dn_conv2d_backward_filter(Backend *be, const Conv2dShape *s, const float *xin,
                                      const float *dy, float *dw, float *db, float *ws) {
    (void)ws;
    CudnnExt *x = EXT(be);
    Conv2dCudnn *p = plan_for(be, s);
    if (p)
        dnn_record(CTX(be),
                   conv2d_backward_filter_cudnn(x->dnn, p, xin, dy, dw, db, x->wtmp, x->ws,
                                                x->ws_bytes),
                   "conv2d_backward_filter_cudnn");
}

static void dn_dense_forward(Backend *be, int n, int in, int out, const float *xin,
                             const float *w, const float *b, float *y) {
    const float *ones = b ? ones_for(be, n) : NULL;
    if (b && !ones) return;
    blas_record(CTX(be), dense_forward_cublas(EXT(be)->blas, n, in, out, xin, w, b, y, ones),
                "dense_forward_cublas");
}

static void dn_dense_backward(Backend *be, int n, int in, int out, const float *xin,
                              const float *w, const float *dy, float *dx, float *dw, float *db) {
    const float *ones = db ? ones_for(be, n) : NULL;
    if (db && !ones) return;
    blas_record(CTX(be),
                dense_backward_cublas(EXT(be)->blas, n, in, out, xin, w, dy, dx, dw, db, ones),
                "dense_backward_cublas");
}

static void dn_relu_forward(Backend *be, size_t n, const float *xin, float *y) {
    dnn_record(CTX(be), relu_forward_cudnn(EXT(be)->dnn, n, xin, y), "relu_forward_cudnn");
}

static void dn_relu_backward(Backend *be, size_t n, const float *y, const float *dy, float *dx) {
    dnn_record(CTX(be), relu_backward_cudnn(EXT(be)->dnn, n, y, dy, dx), "relu_backward_cudnn");
}

/* ---- creation ----------------------------------------------------------------------------- */
static void ext_free(void *p) {
    CudnnExt *x = p;
    if (!x) return;
    for (int i = 0; i < x->nplans; i++) conv2d_cudnn_destroy(x->plans[i]);
    if (x->blas) cublasDestroy(x->blas);
    if (x->dnn) cudnnDestroy(x->dnn);
    cudaFree(x->ws);
    cudaFree(x->wtmp);
    cudaFree(x->ones);
    cudaFree(x->blas_ws);
    free(x);
}

Backend *backend_cudnn_create(char *err, size_t errlen) {
    char why[1024];
    if (cudnn_libs_load(why, sizeof why) != 0) {
        snprintf(err, errlen, "the cudnn backend needs cuBLAS and cuDNN: %s", why);
        return NULL;
    }
    Backend *be = backend_cuda_create_named("cudnn", err, errlen);
    if (!be) return NULL;
    CudaCtx *c = CTX(be);
    CudnnExt *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of host memory creating the cudnn backend");
        be->destroy(be);
        return NULL;
    }
    c->ext = x;
    c->ext_free = ext_free;
    cudnnStatus_t ds;
    cublasStatus_t bs;
    if ((ds = cudnnCreate(&x->dnn)) != CUDNN_STATUS_SUCCESS ||
        (ds = cudnnSetStream(x->dnn, c->stream)) != CUDNN_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuDNN initialisation: %s", cudnnGetErrorString(ds));
        be->destroy(be);
        return NULL;
    }
    if ((bs = cublasCreate(&x->blas)) != CUBLAS_STATUS_SUCCESS ||
        (bs = cublasSetStream(x->blas, c->stream)) != CUBLAS_STATUS_SUCCESS ||
        (bs = cublasSetMathMode(x->blas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuBLAS initialisation: status %d", (int)bs);
        be->destroy(be);
        return NULL;
    }
    /* A fixed cuBLAS workspace, so that captured GEMMs never allocate. */
    if (cudaMalloc(&x->blas_ws, CUBLAS_WS_BYTES) != cudaSuccess ||
        cublasSetWorkspace(x->blas, x->blas_ws, CUBLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuBLAS workspace of %zu bytes", CUBLAS_WS_BYTES);
        be->destroy(be);
        return NULL;
    }
    be->conv2d_workspace_floats = dn_conv2d_workspace_floats;
    be->conv2d_forward = dn_conv2d_forward;
    be->conv2d_backward_data = dn_conv2d_backward_data;
    be->conv2d_backward_filter = dn_conv2d_backward_filter;
    be->dense_forward = dn_dense_forward;
    be->dense_backward = dn_dense_backward;
    be->relu_forward = dn_relu_forward;
    be->relu_backward = dn_relu_backward;
    /* The library's conv, dense and ReLU stay separate launches: none of our fused entries
     * (which would run our GEMMs and ReLU masks) in the reference backend. */
    be->conv2d_relu_forward = NULL;
    be->dense_relu_forward = NULL;
    be->maxpool2d_relu_backward = NULL;
    be->dropout_relu_backward = NULL;
    be->softmax_xent_fused = NULL;
    be->conv2d_relu_maxpool_forward = NULL;
    be->conv2d_relu_maxpool_backward_filter = NULL;
    be->conv2d_filter_grad_from_pool = NULL;
    be->conv2d_data_grad_from_pool = NULL;
    be->conv2d_relu_maxpool_backward_data = NULL;
    be->dense_data_alive_fits = NULL;
    be->dense_backward_data_alive = NULL;
    be->maxpool2d_relu_backward_from_y = NULL;
    return be;
}
