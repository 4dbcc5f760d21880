/* conv2d_cudnn.c: conv2d forward / backward-data / backward-filter through cuDNN, NHWC, FP32
 * with FMA math (no TF32). cuDNN's NHWC filter layout is KRSC ([K,KH,KW,C]); ours is HWIO
 * ([KH,KW,C,K]), so w is transposed into scratch before use and dw after (cudnnTransformTensor
 * with strided descriptors; the filters are at most 51,200 floats here). */
#include "kernels/kernels_cudnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct Conv2dCudnn {
    Conv2dShape s;
    cudnnTensorDescriptor_t x, y, bias;
    cudnnTensorDescriptor_t w_hwio, w_krsc; /* the same filter as two strided 4-D views */
    cudnnFilterDescriptor_t f;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_bytes;
    char algos[96];
};

static const float ONE = 1.0f, ZERO = 0.0f;

void conv2d_cudnn_destroy(Conv2dCudnn *p) {
    if (!p) return;
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->bias) cudnnDestroyTensorDescriptor(p->bias);
    if (p->w_hwio) cudnnDestroyTensorDescriptor(p->w_hwio);
    if (p->w_krsc) cudnnDestroyTensorDescriptor(p->w_krsc);
    if (p->f) cudnnDestroyFilterDescriptor(p->f);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    free(p);
}

const Conv2dShape *conv2d_cudnn_shape(const Conv2dCudnn *p) { return &p->s; }
size_t conv2d_cudnn_workspace_bytes(const Conv2dCudnn *p) { return p->ws_bytes; }
const char *conv2d_cudnn_algos(const Conv2dCudnn *p) { return p->algos; }

/* out = the first of the perf results (sorted best first by cuDNN) with FMA math (not
 * tensor-op), within the workspace limit, deterministic when asked; -1 if none. A macro because
 * the three perf struct types differ but share these fields. */
#define PICK_ALGO(out, perf, count, limit, need_det)                                          \
    do {                                                                                      \
        (out) = -1;                                                                           \
        for (int i_ = 0; i_ < (count) && (out) < 0; i_++) {                                   \
            if ((perf)[i_].status != CUDNN_STATUS_SUCCESS) continue;                          \
            if ((perf)[i_].memory > (limit)) continue;                                        \
            if ((perf)[i_].mathType == CUDNN_TENSOR_OP_MATH ||                                \
                (perf)[i_].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)                 \
                continue;                                                                     \
            if ((need_det) && (perf)[i_].determinism != CUDNN_DETERMINISTIC) continue;        \
            (out) = i_;                                                                       \
        }                                                                                     \
    } while (0)

Conv2dCudnn *conv2d_cudnn_create(cudnnHandle_t h, const Conv2dShape *s, int exhaustive,
                                 size_t ws_limit, char *err, size_t errlen) {
    int pad_bottom = (s->oh - 1) * s->stride_h + s->kh - s->h - s->pad_top;
    int pad_right = (s->ow - 1) * s->stride_w + s->kw - s->w - s->pad_left;
    if (pad_bottom < 0) pad_bottom = 0;
    if (pad_right < 0) pad_right = 0;
    if (pad_bottom != s->pad_top || pad_right != s->pad_left) {
        snprintf(err, errlen,
                 "cuDNN conv: asymmetric padding (top %d bottom %d, left %d right %d) is not "
                 "supported by the cudnn backend",
                 s->pad_top, pad_bottom, s->pad_left, pad_right);
        return NULL;
    }
    Conv2dCudnn *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of host memory");
        return NULL;
    }
    p->s = *s;
    cudnnStatus_t st;
#define TRY(call)                                                                             \
    do {                                                                                      \
        if ((st = (call)) != CUDNN_STATUS_SUCCESS) {                                          \
            snprintf(err, errlen, "cuDNN conv %dx%dx%dx%d k%dx%dx%d: %s: %s", s->n, s->h,     \
                     s->w, s->c, s->kh, s->kw, s->k, #call, cudnnGetErrorString(st));         \
            conv2d_cudnn_destroy(p);                                                          \
            return NULL;                                                                      \
        }                                                                                     \
    } while (0)
    TRY(cudnnCreateTensorDescriptor(&p->x));
    TRY(cudnnCreateTensorDescriptor(&p->y));
    TRY(cudnnCreateTensorDescriptor(&p->bias));
    TRY(cudnnCreateTensorDescriptor(&p->w_hwio));
    TRY(cudnnCreateTensorDescriptor(&p->w_krsc));
    TRY(cudnnCreateFilterDescriptor(&p->f));
    TRY(cudnnCreateConvolutionDescriptor(&p->conv));
    TRY(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, s->n, s->c, s->h,
                                   s->w));
    TRY(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, s->n, s->k, s->oh,
                                   s->ow));
    TRY(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, s->k, 1, 1));
    /* The filter as (n=K, c=C, h=KH, w=KW): HWIO strides, and packed KRSC strides. */
    TRY(cudnnSetTensor4dDescriptorEx(p->w_hwio, CUDNN_DATA_FLOAT, s->k, s->c, s->kh, s->kw, 1,
                                     s->k, s->kw * s->c * s->k, s->c * s->k));
    TRY(cudnnSetTensor4dDescriptorEx(p->w_krsc, CUDNN_DATA_FLOAT, s->k, s->c, s->kh, s->kw,
                                     s->kh * s->kw * s->c, 1, s->kw * s->c, s->c));
    TRY(cudnnSetFilter4dDescriptor(p->f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, s->k, s->c, s->kh,
                                   s->kw));
    TRY(cudnnSetConvolution2dDescriptor(p->conv, s->pad_top, s->pad_left, s->stride_h,
                                        s->stride_w, 1, 1, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT));
    TRY(cudnnSetConvolutionMathType(p->conv, CUDNN_FMA_MATH));
    int on, oc, oh, ow;
    TRY(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->f, &on, &oc, &oh, &ow));
    if (on != s->n || oc != s->k || oh != s->oh || ow != s->ow) {
        snprintf(err, errlen, "cuDNN conv: output %dx%dx%dx%d, expected %dx%dx%dx%d", on, oh, ow,
                 oc, s->n, s->oh, s->ow, s->k);
        conv2d_cudnn_destroy(p);
        return NULL;
    }

    enum { MAXA = 16 };
    int count = 0, i, nondet = 0;
    cudnnConvolutionFwdAlgoPerf_t fperf[MAXA];
    cudnnConvolutionBwdDataAlgoPerf_t dperf[MAXA];
    cudnnConvolutionBwdFilterAlgoPerf_t wperf[MAXA];
    if (exhaustive)
        TRY(cudnnFindConvolutionForwardAlgorithm(h, p->x, p->f, p->conv, p->y, MAXA, &count, fperf));
    else
        TRY(cudnnGetConvolutionForwardAlgorithm_v7(h, p->x, p->f, p->conv, p->y, MAXA, &count, fperf));
    PICK_ALGO(i, fperf, count, ws_limit, 0);
    if (i < 0) goto none;
    p->fwd = fperf[i].algo;
    p->ws_bytes = fperf[i].memory;
    if (exhaustive)
        TRY(cudnnFindConvolutionBackwardDataAlgorithm(h, p->f, p->y, p->conv, p->x, MAXA, &count, dperf));
    else
        TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->f, p->y, p->conv, p->x, MAXA, &count, dperf));
    PICK_ALGO(i, dperf, count, ws_limit, 1);
    if (i < 0) { /* no deterministic one for this shape: take the best, and say so */
        PICK_ALGO(i, dperf, count, ws_limit, 0);
        nondet = 1;
    }
    if (i < 0) goto none;
    p->bwd_data = dperf[i].algo;
    if (dperf[i].memory > p->ws_bytes) p->ws_bytes = dperf[i].memory;
    if (exhaustive)
        TRY(cudnnFindConvolutionBackwardFilterAlgorithm(h, p->x, p->y, p->conv, p->f, MAXA, &count, wperf));
    else
        TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x, p->y, p->conv, p->f, MAXA, &count, wperf));
    PICK_ALGO(i, wperf, count, ws_limit, 1);
    if (i < 0) {
        PICK_ALGO(i, wperf, count, ws_limit, 0);
        nondet = 1;
    }
    if (i < 0) goto none;
    p->bwd_filter = wperf[i].algo;
    if (wperf[i].memory > p->ws_bytes) p->ws_bytes = wperf[i].memory;
    snprintf(p->algos, sizeof p->algos, "fwd %d, bwd-data %d, bwd-filter %d%s%s", (int)p->fwd,
             (int)p->bwd_data, (int)p->bwd_filter, exhaustive ? " (timed)" : " (heuristic)",
             nondet ? ", NON-deterministic backward" : "");
    return p;
none:
    snprintf(err, errlen,
             "cuDNN conv %dx%dx%dx%d k%dx%dx%d: no FP32 (FMA, deterministic) algorithm within "
             "%zu bytes of workspace",
             s->n, s->h, s->w, s->c, s->kh, s->kw, s->k, ws_limit);
    conv2d_cudnn_destroy(p);
    return NULL;
#undef TRY
}

cudnnStatus_t conv2d_forward_cudnn(cudnnHandle_t h, const Conv2dCudnn *p, const float *x,
                                   const float *w, const float *b, float *y, float *w_krsc,
                                   void *ws, size_t ws_bytes) {
    cudnnStatus_t st = cudnnTransformTensor(h, &ONE, p->w_hwio, w, &ZERO, p->w_krsc, w_krsc);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    st = cudnnConvolutionForward(h, &ONE, p->x, x, p->f, w_krsc, p->conv, p->fwd, ws, ws_bytes,
                                 &ZERO, p->y, y);
    if (st != CUDNN_STATUS_SUCCESS || !b) return st;
    return cudnnAddTensor(h, &ONE, p->bias, b, &ONE, p->y, y);
}

cudnnStatus_t conv2d_backward_data_cudnn(cudnnHandle_t h, const Conv2dCudnn *p, const float *dy,
                                         const float *w, float *dx, float *w_krsc, void *ws,
                                         size_t ws_bytes) {
    cudnnStatus_t st = cudnnTransformTensor(h, &ONE, p->w_hwio, w, &ZERO, p->w_krsc, w_krsc);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    return cudnnConvolutionBackwardData(h, &ONE, p->f, w_krsc, p->y, dy, p->conv, p->bwd_data, ws,
                                        ws_bytes, &ZERO, p->x, dx);
}

cudnnStatus_t conv2d_backward_filter_cudnn(cudnnHandle_t h, const Conv2dCudnn *p, const float *x,
                                           const float *dy, float *dw, float *db, float *dw_krsc,
                                           void *ws, size_t ws_bytes) {
    cudnnStatus_t st = cudnnConvolutionBackwardFilter(h, &ONE, p->x, x, p->y, dy, p->conv,
                                                      p->bwd_filter, ws, ws_bytes, &ZERO, p->f,
                                                      dw_krsc);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    st = cudnnTransformTensor(h, &ONE, p->w_krsc, dw_krsc, &ZERO, p->w_hwio, dw);
    if (st != CUDNN_STATUS_SUCCESS || !db) return st;
    return cudnnConvolutionBackwardBias(h, &ONE, p->y, dy, &ZERO, p->bias, db);
}

/* ReLU over n elements viewed as a [1,1,1,n] tensor (n < 2^31). */
static cudnnStatus_t relu_call(cudnnHandle_t h, size_t n, const float *y, const float *dy,
                               const float *x, float *out, int backward) {
    cudnnTensorDescriptor_t d;
    cudnnActivationDescriptor_t a;
    cudnnStatus_t st = cudnnCreateTensorDescriptor(&d);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    if ((st = cudnnCreateActivationDescriptor(&a)) != CUDNN_STATUS_SUCCESS) {
        cudnnDestroyTensorDescriptor(d);
        return st;
    }
    st = cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1, (int)n);
    if (st == CUDNN_STATUS_SUCCESS)
        st = cudnnSetActivationDescriptor(a, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0);
    if (st == CUDNN_STATUS_SUCCESS)
        st = backward ? cudnnActivationBackward(h, a, &ONE, d, y, d, dy, d, x, &ZERO, d, out)
                      : cudnnActivationForward(h, a, &ONE, d, x, &ZERO, d, out);
    cudnnDestroyActivationDescriptor(a);
    cudnnDestroyTensorDescriptor(d);
    return st;
}

cudnnStatus_t relu_forward_cudnn(cudnnHandle_t h, size_t n, const float *x, float *y) {
    if (n == 0) return CUDNN_STATUS_SUCCESS;
    if (n > 0x7fffffff) return CUDNN_STATUS_BAD_PARAM;
    return relu_call(h, n, NULL, NULL, x, y, 0);
}

/* ReLU's gradient needs only where y > 0, which is where x > 0: y serves as x. */
cudnnStatus_t relu_backward_cudnn(cudnnHandle_t h, size_t n, const float *y, const float *dy,
                                  float *dx) {
    if (n == 0) return CUDNN_STATUS_SUCCESS;
    if (n > 0x7fffffff) return CUDNN_STATUS_BAD_PARAM;
    return relu_call(h, n, y, dy, y, dx, 1);
}
