/* kernels_cuda.h: the CUDA twins of kernels.h (same names plus `_cuda`).
 *
 * Every pointer is a device pointer, every function enqueues on `stream` and returns the launch
 * status (cudaGetLastError after the launch: cudaSuccess or the error), never synchronising.
 * Layouts and semantics are those of the CPU twin in kernels.h, which each function is tested
 * against (tests/gpu/test_kernels.c).
 *
 * CUDA graphs: a captured step is replayed unchanged, so values that change from step to step
 * are read from device memory by the kernels, never passed by value. They all derive from one
 * device counter `d_step` (int64: the number of optimizer steps taken before this one, i.e.
 * model_step()): Adam's t = *d_step + 1, the dropout stream, the batch drawn by the gather.
 * step_advance_cuda() increments it as the last launch of a step.
 *
 * Extras over the CPU contract (each documented where it appears): an optional fused ReLU in the
 * epilogues that produce activations; split-K scratch for the GEMMs; the device step counter.
 * Determinism: no floating-point atomics anywhere; split-K partial sums are reduced in a fixed
 * order, so the same inputs on the same GPU give bit-identical outputs.
 */
#ifndef KERNELS_CUDA_H
#define KERNELS_CUDA_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Programmatic dependent launch of every kernel (kernels/cuda_common.cuh): 1 unless
 * CNN_CUDA_PDL=0 or cuda_pdl_disable() was called (for the rest of the process). */
int cuda_pdl_enabled(void);
void cuda_pdl_disable(void);

/* ---- scratch for split-K ------------------------------------------------------------------- *
 * GEMMs with few output tiles and a long reduction (the filter gradients, dense layers at small
 * batch) split the reduction over blocks into `ws`, then sum the slices in a fixed order. The
 * functions below give the floats that let every GEMM of that op split as far as it wants;
 * passing fewer (or ws == NULL) is correct, only less parallel. The split count depends on the
 * GPU's multiprocessor count, so results are bit-identical on the same GPU model. */
size_t sgemm_workspace_floats_cuda(int m, int n, int k);
size_t conv2d_workspace_floats_cuda(const Conv2dShape *s);
size_t dense_workspace_floats_cuda(int n, int in, int out);

/* ---- conv2d (NHWC activations, HWIO kernels) ----------------------------------------------- */
/* y = conv(x, w) + b, then max(y, 0) when relu != 0 (the layer's ReLU fused in the epilogue). */
cudaError_t conv2d_forward_cuda(const Conv2dShape *s, const float *x, const float *w,
                                const float *b, float *y, int relu, float *ws, size_t ws_floats,
                                cudaStream_t stream);
cudaError_t conv2d_backward_data_cuda(const Conv2dShape *s, const float *dy, const float *w,
                                      float *dx, float *ws, size_t ws_floats, cudaStream_t stream);
/* dw and db (db may be NULL) in one GEMM: db is an extra row of ones in the reduction. */
cudaError_t conv2d_backward_filter_cuda(const Conv2dShape *s, const float *x, const float *dy,
                                        float *dw, float *db, float *ws, size_t ws_floats,
                                        cudaStream_t stream);

/* ---- max pooling ---------------------------------------------------------------------------- */
cudaError_t maxpool2d_forward_cuda(const Pool2dShape *s, const float *x, float *y,
                                   int32_t *argmax, cudaStream_t stream);
/* dx[i] = sum of dy[o] over the windows o whose argmax is i, in output order: no atomics, no
 * memset, and the same additions as the CPU twin. relu_x != NULL fuses the backward of the ReLU
 * that produced the pool's input x: dx[i] = 0 where relu_x[i] <= 0. */
cudaError_t maxpool2d_backward_cuda(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                                    const float *relu_x, float *dx, cudaStream_t stream);
/* As maxpool2d_relu_backward_from_y (kernels.h): the ReLU's mask from the pool's output y. */
cudaError_t maxpool2d_relu_backward_from_y_cuda(const Pool2dShape *s, const float *dy,
                                                const int32_t *argmax, const float *y, float *dx,
                                                cudaStream_t stream);

/* ---- conv + ReLU + max pool, fused ----------------------------------------------------------- */
/* As conv2d_relu_maxpool_forward (kernels.h): the same bits as conv2d_forward_cuda (relu, not
 * split over K) + maxpool2d_forward_cuda, without the conv output. */
cudaError_t conv2d_relu_maxpool_forward_cuda(const Conv2dShape *cs, const Pool2dShape *ps,
                                             const float *x, const float *w, const float *b,
                                             float *y, int32_t *argmax, cudaStream_t stream);
/* Its path for a 2x2 max pool of stride 2 without padding (conv2d_relu_pool2_gemm_ok): the conv
 * GEMM with its rows in window order and the pool in the store (conv2d.cu); the entry above
 * takes it for convs of more than 32 taps. */
int conv2d_relu_pool2_gemm_ok(const Conv2dShape *cs, const Pool2dShape *ps);
cudaError_t conv2d_relu_pool2_forward_cuda(const Conv2dShape *cs, const Pool2dShape *ps,
                                           const float *x, const float *w, const float *b,
                                           float *y, int32_t *argmax, cudaStream_t stream);
/* dw, db (db may be NULL) from the pooled gradient dy, the pooled y and the argmax. Partial sums
 * per chunk of pooled positions go to ws, then are added in chunk order (deterministic); ws must
 * hold at least one chunk's taps*K + K floats (cudaErrorInvalidValue otherwise), and
 * conv2d_relu_maxpool_workspace_floats_cuda() floats let it use as many chunks as it wants.
 * CNN_FROM_POOL_V=2 (read at each call): a warp per output channel, each dead winner skipped,
 * where C % 32 == 0 and the window has at most 25 pixels (else version 1). */
cudaError_t conv2d_relu_maxpool_backward_filter_cuda(const Conv2dShape *cs, const Pool2dShape *ps,
                                                     const float *x, const float *y,
                                                     const int32_t *argmax, const float *dy,
                                                     float *dw, float *db, float *ws,
                                                     size_t ws_floats, cudaStream_t stream);
size_t conv2d_relu_maxpool_workspace_floats_cuda(const Conv2dShape *cs, const Pool2dShape *ps);
/* As conv2d_relu_maxpool_backward_data (kernels.h), the same bits: dx from the pool's winners,
 * for the shapes conv2d_relu_maxpool_backward_data_ok_cuda accepts (a stride-1 conv, C and K
 * multiples of 32, pool windows of at most 4 cells that do not overlap; cudaErrorInvalidValue
 * otherwise). ws holds the filter transposed to [KH,KW,K,C]: at least
 * conv2d_relu_maxpool_backward_data_workspace_floats_cuda() floats. Two launches. */
int conv2d_relu_maxpool_backward_data_ok_cuda(const Conv2dShape *cs, const Pool2dShape *ps);
size_t conv2d_relu_maxpool_backward_data_workspace_floats_cuda(const Conv2dShape *cs);
cudaError_t conv2d_relu_maxpool_backward_data_cuda(const Conv2dShape *cs, const Pool2dShape *ps,
                                                   const float *w, const float *y,
                                                   const int32_t *argmax, const float *dy,
                                                   float *dx, float *ws, size_t ws_floats,
                                                   cudaStream_t stream);

/* ---- dense and GEMM ------------------------------------------------------------------------- */
/* Row-major SGEMM as kernels.h's sgemm (beta == 0: C is not read). Float32 results: FMAs
 * (GEMM versions 1-4), or three TF32 products per float32 one on the tensor cores (version 5,
 * the default: float32-class accuracy, never plain TF32). */
/* The GEMM version launches use now (CNN_GEMM_V, read at each launch; gemm_cuda.cuh). */
int gemm_version_cuda(void);
cudaError_t sgemm_cuda(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc, float *ws,
                       size_t ws_floats, cudaStream_t stream);
/* y = x*w + b (b may be NULL), then ReLU when relu != 0. */
cudaError_t dense_forward_cuda(int n, int in, int out, const float *x, const float *w,
                               const float *b, float *y, int relu, float *ws, size_t ws_floats,
                               cudaStream_t stream);
/* dx = dy*w^T (skipped when dx is NULL); dw = x^T*dy and db = column sums of dy (db may be NULL)
 * in one GEMM (skipped with db when dw is NULL: the CUDA backend issues dx and dw on two
 * streams). */
cudaError_t dense_backward_cuda(int n, int in, int out, const float *x, const float *w,
                                const float *dy, float *dx, float *dw, float *db, float *ws,
                                size_t ws_floats, cudaStream_t stream);

/* ---- elementwise ---------------------------------------------------------------------------- */
cudaError_t relu_forward_cuda(size_t n, const float *x, float *y, cudaStream_t stream);
cudaError_t relu_backward_cuda(size_t n, const float *y, const float *dy, float *dx,
                               cudaStream_t stream);
/* Dropout with the philox stream  stream_base + stream_per_step * (*d_step)  (d_step NULL: just
 * stream_base), so a replayed graph draws a fresh mask each step; the same mask as
 * dropout_forward(n, rate, seed, that stream, ...). */
cudaError_t dropout_forward_cuda(size_t n, float rate, uint64_t seed, uint64_t stream_base,
                                 uint64_t stream_per_step, const int64_t *d_step, const float *x,
                                 float *y, uint8_t *mask, cudaStream_t stream);
/* dx = dy*mask/(1-rate); relu_y != NULL fuses the backward of the ReLU that produced the
 * dropout's input relu_y: dx = 0 where relu_y <= 0. */
cudaError_t dropout_backward_cuda(size_t n, float rate, const uint8_t *mask, const float *relu_y,
                                  const float *dy, float *dx, cudaStream_t stream);

/* As dense_backward_data_alive (kernels.h), the same bits: dx only where x > 0, for the sizes
 * dense_backward_data_alive_ok_cuda accepts (out a multiple of 32, at most 1024; n <= 65535;
 * cudaErrorInvalidValue otherwise). */
int dense_backward_data_alive_ok_cuda(int n, int in, int out);
cudaError_t dense_backward_data_alive_cuda(int n, int in, int out, const float *x, const float *w,
                                           const float *dy, float *dx, cudaStream_t stream);
/* As dense_forward_sparse_input and dense_backward_filter_sparse_input (kernels.h), the same
 * bits: over x's nonzeros, for the sizes dense_sparse_input_ok_cuda accepts (n <= 4096, in <=
 * 4096; cudaErrorInvalidValue otherwise). The forward with the ReLU (relu != 0) as
 * dense_forward_cuda's; db may be NULL. */
int dense_sparse_input_ok_cuda(int n, int in, int out);
cudaError_t dense_forward_sparse_input_cuda(int n, int in, int out, const float *x, const float *w,
                                            const float *b, float *y, int relu,
                                            cudaStream_t stream);
cudaError_t dense_backward_filter_sparse_input_cuda(int n, int in, int out, const float *x,
                                                    const float *dy, float *dw, float *db,
                                                    cudaStream_t stream);

/* ---- dropout + dense, fused (the twin of kernels/dropout_dense.c; in dense.cu) -------------- */
/* Non-zero when the fused kernels take a layer of these sizes: the narrow path (out <= 16, not
 * under CNN_DENSE_V=1; up to 192 rows by default, any under CNN_DENSE_V=2) with 32-bit
 * indices. The two calls below refuse other sizes
 * (cudaErrorInvalidValue). */
int dropout_dense_fits_cuda(int n, int in, int out);
/* dropout_dense_forward with the mask's stream as dropout_forward_cuda's (stream_base +
 * stream_per_step * (*d_step); d_step NULL: stream_base); mask NULL: inference. The same bits as
 * dropout_forward_cuda then dense_forward_cuda on its output. */
cudaError_t dropout_dense_forward_cuda(int n, int in, int out, float rate, uint64_t seed,
                                       uint64_t stream_base, uint64_t stream_per_step,
                                       const int64_t *d_step, const float *x, const float *w,
                                       const float *b, float *y, uint8_t *mask, int relu,
                                       cudaStream_t stream);
/* dropout_dense_backward (dx may be NULL; dw NULL skips dw and db, as dense_backward_cuda): the
 * same bits as dense_backward_cuda on the dropout's output, then dropout_backward_cuda (with
 * relu_y = x when relu_x). */
cudaError_t dropout_dense_backward_cuda(int n, int in, int out, float rate, const uint8_t *mask,
                                        int relu_x, const float *x, const float *w,
                                        const float *dy, float *dx, float *dw, float *db,
                                        cudaStream_t stream);

/* ---- softmax and loss ----------------------------------------------------------------------- */
cudaError_t softmax_forward_cuda(int n, int c, const float *logits, float *probs,
                                 cudaStream_t stream);
/* dx = y * (dy - sum_c(dy*y)) per row: the gradient through a softmax whose output is y. */
cudaError_t softmax_backward_cuda(int n, int c, const float *y, const float *dy, float *dx,
                                  cudaStream_t stream);
/* *loss (device) = mean cross-entropy; probs written. Deterministic reduction (CNN_XENT_V picks
 * the version, kernels/softmax_xent.cu; version 3, the default up to 16 classes, must not run on
 * two streams at once: its loss's partials are one static buffer per device). */
cudaError_t softmax_xent_forward_cuda(int n, int c, const float *logits, const int32_t *labels,
                                      float *probs, float *loss, cudaStream_t stream);
cudaError_t softmax_xent_backward_cuda(int n, int c, const float *probs, const int32_t *labels,
                                       float dloss, float *dlogits, cudaStream_t stream);
/* Forward and backward (dloss = 1) in one launch: probs, *loss, dlogits. */
cudaError_t softmax_xent_fused_cuda(int n, int c, const float *logits, const int32_t *labels,
                                    float *probs, float *loss, float *dlogits,
                                    cudaStream_t stream);
/* *correct (device int) = number of rows whose argmax equals the label. */
cudaError_t argmax_correct_cuda(int n, int c, const float *logits, const int32_t *labels,
                                int *correct, cudaStream_t stream);

/* ---- optimizers (one fused pass over one contiguous parameter buffer) ----------------------- */
/* Adam with t = *d_step + 1 read on the device. */
cudaError_t adam_update_cuda(size_t n, float *w, const float *g, float *m, float *v, float lr,
                             float beta1, float beta2, float eps, const int64_t *d_step,
                             cudaStream_t stream);
cudaError_t sgd_update_cuda(size_t n, float *w, const float *g, float lr, cudaStream_t stream);
cudaError_t momentum_update_cuda(size_t n, float *w, const float *g, float *vel, float lr,
                                 float momentum, int nesterov, cudaStream_t stream);
/* *d_step += 1: the last launch of a training step. */
cudaError_t step_advance_cuda(int64_t *d_step, cudaStream_t stream);

/* ---- small reductions core needs ------------------------------------------------------------ */
/* y[i] += x[i]. */
cudaError_t add_inplace_cuda(size_t n, const float *x, float *y, cudaStream_t stream);
/* y[0] = (1/n) * sum x[i]: one block, double accumulation in a fixed order. */
cudaError_t mean_forward_cuda(size_t n, const float *x, float *y, cudaStream_t stream);
/* dx[i] = dy[0] / n. */
cudaError_t mean_backward_cuda(size_t n, const float *dy, float *dx, cudaStream_t stream);
/* loss_sum[0] += (double)loss[0]; correct_sum[0] += correct[0] (one thread: an evaluation's
 * totals in chunk order, as a host loop would add them). */
cudaError_t eval_accumulate_cuda(const float *loss, const int32_t *correct, double *loss_sum,
                                 int64_t *correct_sum, cudaStream_t stream);

/* ---- the resident data set ------------------------------------------------------------------ */
/* Draws the batch of step s = *d_step from a data set resident on the device:
 *   example k of the batch is stream position j = s*batch + k, epoch e = j / n_examples,
 *   index = perms[(e % perm_slots) * n_examples + j % n_examples] (perms NULL: j % n_examples);
 *   x[k, :] = (float)pixels[index, :] (example_size uint8 values each), y[k] = labels[index].
 * perms is a ring of perm_slots epoch permutations kept current by the caller (model.h's
 * shuffle order). d_step NULL: s = 0. */
cudaError_t gather_batch_cuda(int batch, int example_size, int n_examples, const uint8_t *pixels,
                              const int32_t *labels, const int32_t *perms, int perm_slots,
                              const int64_t *d_step, float *x, int32_t *y, cudaStream_t stream);
/* x[i] = (float)u8[i]: host-given uint8 batches (evaluation chunks). */
cudaError_t u8_to_float_cuda(size_t n, const uint8_t *u8, float *x, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* KERNELS_CUDA_H */
