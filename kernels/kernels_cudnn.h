/* kernels_cudnn.h: the library versions of the matrix-shaped kernels, through cuDNN (conv2d)
 * and cuBLAS (sgemm, dense): the `--device cudnn` reference backend and the yardstick our own
 * CUDA kernels are benchmarked against. Same layouts and semantics as kernels.h; FP32 with FMA
 * math only (no TF32: CUDNN_FMA_MATH, CUBLAS_DEFAULT_MATH).
 *
 * Handles are the caller's, already bound to its stream (cudnnSetStream / cublasSetStream).
 * cuDNN has no HWIO filter layout: the conv calls transpose w to KRSC ([K,KH,KW,C], cuDNN's
 * NHWC filter format) in a scratch buffer of KH*KW*C*K floats, and dw back. */
#ifndef KERNELS_CUDNN_H
#define KERNELS_CUDNN_H

#include <stddef.h>

#include "kernels/load_cudnn.h" /* cuBLAS and cuDNN: loaded by cudnn_libs_load() before any call */
#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Descriptors and chosen algorithms for one conv shape. */
typedef struct Conv2dCudnn Conv2dCudnn;

/* exhaustive != 0: time the algorithms once (cudnnFind*: runs on the GPU, not inside a graph
 * capture) and take the fastest; else cuDNN's heuristic choice. FP32 FMA algorithms only, none
 * whose workspace exceeds ws_limit bytes; deterministic ones for the backward passes (so runs
 * repeat bit for bit) unless a shape has none (conv2d_cudnn_algos() then says so). Symmetric padding only (TF SAME with an odd total padding has no
 * cuDNN equivalent): NULL with a message in err otherwise. */
Conv2dCudnn *conv2d_cudnn_create(cudnnHandle_t h, const Conv2dShape *s, int exhaustive,
                                 size_t ws_limit, char *err, size_t errlen);
void conv2d_cudnn_destroy(Conv2dCudnn *p);
const Conv2dShape *conv2d_cudnn_shape(const Conv2dCudnn *p);
/* Workspace bytes the three passes need (the max of the chosen algorithms'). */
size_t conv2d_cudnn_workspace_bytes(const Conv2dCudnn *p);
/* Names of the chosen algorithms, for the benchmark tables. */
const char *conv2d_cudnn_algos(const Conv2dCudnn *p);

/* y = conv(x, w) + b (b may be NULL). w_krsc: scratch of KH*KW*C*K floats. */
cudnnStatus_t conv2d_forward_cudnn(cudnnHandle_t h, const Conv2dCudnn *p, const float *x,
                                   const float *w, const float *b, float *y, float *w_krsc,
                                   void *ws, size_t ws_bytes);
cudnnStatus_t conv2d_backward_data_cudnn(cudnnHandle_t h, const Conv2dCudnn *p, const float *dy,
                                         const float *w, float *dx, float *w_krsc, void *ws,
                                         size_t ws_bytes);
/* dw (HWIO) and db (may be NULL). dw_krsc: scratch of KH*KW*C*K floats. */
cudnnStatus_t conv2d_backward_filter_cudnn(cudnnHandle_t h, const Conv2dCudnn *p, const float *x,
                                           const float *dy, float *dw, float *db, float *dw_krsc,
                                           void *ws, size_t ws_bytes);

/* ReLU through cudnnActivation (n elements). */
cudnnStatus_t relu_forward_cudnn(cudnnHandle_t h, size_t n, const float *x, float *y);
cudnnStatus_t relu_backward_cudnn(cudnnHandle_t h, size_t n, const float *y, const float *dy,
                                  float *dx);

/* Row-major SGEMM through cuBLAS (kernels.h's sgemm). */
cublasStatus_t sgemm_cublas(cublasHandle_t h, int trans_a, int trans_b, int m, int n, int k,
                            float alpha, const float *a, int lda, const float *b, int ldb,
                            float beta, float *c, int ldc);
/* Dense layers through cuBLAS. ones: a device vector of at least n ones (bias broadcast and
 * bias gradient as rank-1 / matrix-vector products). The backward skips dx where it is NULL,
 * and dw and db where dw is (db alone where db is), as dense_backward_cuda. */
cublasStatus_t dense_forward_cublas(cublasHandle_t h, int n, int in, int out, const float *x,
                                    const float *w, const float *b, float *y, const float *ones);
cublasStatus_t dense_backward_cublas(cublasHandle_t h, int n, int in, int out, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *db, const float *ones);

#ifdef __cplusplus
}
#endif
#endif /* KERNELS_CUDNN_H */
