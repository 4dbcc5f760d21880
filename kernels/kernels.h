/* kernels.h: the CPU compute kernels, on plain host buffers.
 *
 * This is the contract between core/ (which calls kernels) and the kernel implementations.
 * Every function here has a CUDA twin with the same name plus `_cuda` (kernels_cuda.h), taking
 * device pointers and a stream; the CPU version is the reference each twin is tested against.
 *
 * Layouts (TensorFlow's, so checkpoints and exports need no transposes):
 *   activations  NHWC, row-major: x[((n*H + h)*W + w)*C + c]
 *   conv kernels HWIO:            w[((kh*KW + kw)*C + c)*K + k]
 *   dense        x [N,in], kernel [in,out], y [N,out], all row-major
 *
 * Conventions: outputs are overwritten, never accumulated into (a sequential model writes each
 * gradient exactly once; core/ accumulates where a tensor has several consumers). Sizes are
 * int (every tensor of this engine has far fewer than 2^31 elements). Buffers do not alias
 * unless a comment says so.
 */
#ifndef KERNELS_H
#define KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- threads ------------------------------------------------------------------------------ */
/* Number of threads the CPU kernels use (OpenMP where built with it). n > 0: exactly n.
 * n <= 0 (and before any call): automatic: all cores, minus those other processes keep busy
 * (re-read at most once a second: over the last interval, the busy time of this process's
 * CPUs in /proc/stat less this process's own CPU time; at the first read the 1-minute load
 * average less the count in use), because a parallel region waits for its slowest thread and
 * a thread sharing a busy core costs a scheduler time slice per region. Called from the thread
 * that runs the kernels. Results are bit-identical for any thread count. */
void kernels_set_threads(int n);
int kernels_get_threads(void);
/* The automatic rule: cores - round(others) (others: the cores other processes keep busy; 0
 * when negative), clamped to [1, cores]. */
int kernels_auto_threads(int cores, double others);
/* Others from the 1-minute load average, which counts this process's running threads too. */
double kernels_others_from_load(double load, int in_use);
/* One moment: the busy seconds of this process's CPUs (/proc/stat), this process's CPU seconds
 * (all threads) and the monotonic clock's seconds. */
typedef struct {
    double busy_s, own_s, wall_s;
} CpuSample;
/* Others between two samples: (busy - own) / wall, in cores; 0 when no time passed. */
double kernels_others_busy(CpuSample a, CpuSample b);
/* One line of /proc/stat: 1 with *cpu and *busy_ticks (user + nice + system + irq + softirq) for
 * a CPU's line ("cpuN ..." with at least 7 fields); 0 for any other line, the total included. */
int kernels_stat_cpu_line(const char *line, int *cpu, double *busy_ticks);
/* The vector clones (AVX2, AVX-512) the CPU kernels take are found at their first call, capped by
 * the environment's CNN_CPU_ISA (base or avx2; kernels/cpu_dispatch.h); this makes the next call
 * read it again (a test that changes it between calls). Every clone gives the same bits. */
void kernels_cpu_isa_refresh(void);

/* ---- conv2d ------------------------------------------------------------------------------- */
typedef struct {
    int n, h, w, c;          /* input  [N,H,W,C]  (NHWC) */
    int kh, kw, k;           /* kernel [KH,KW,C,K] (HWIO), K output channels */
    int stride_h, stride_w;
    int pad_top, pad_left;   /* SAME: TF's split, the extra row/col at the bottom/right */
    int oh, ow;              /* output [N,OH,OW,K] */
} Conv2dShape;

/* Fills s. same != 0: TF "SAME" padding (oh = ceil(h/stride)); else "VALID". */
void conv2d_shape_init(Conv2dShape *s, int n, int h, int w, int c, int kh, int kw, int k,
                       int stride_h, int stride_w, int same);

/* TF's output size and leading padding for one spatial dimension of a window op (conv, pool):
 * SAME: out = ceil(in/stride), pad_before = floor(total/2) (the odd row/col goes after);
 * VALID: out = (in - k)/stride + 1, no padding. */
void conv_output_dim(int in, int k, int stride, int same, int *out, int *pad_before);

/* Scratch the CPU conv kernels need (im2col panels), in floats; the caller allocates it once. */
size_t conv2d_workspace_floats(const Conv2dShape *s);

/* y[N,OH,OW,K] = conv(x, w) + b. b may be NULL (no bias). An image of more than 4 channels that
 * is at most 60% nonzero (behind a ReLU and a pool) is summed over its nonzeros only, each y as
 * acc = 0, then acc = fmaf(x, w, acc) over the taps (kh, kw) inside the image in order and,
 * within a tap, the channels c whose x is not 0 in order, then acc + b[k] (the same bits on any
 * CPU and thread count); other images take an im2col GEMM or direct loops. */
void conv2d_forward(const Conv2dShape *s, const float *x, const float *w, const float *b,
                    float *y, float *ws);
/* dx[N,H,W,C] = gradient of the loss w.r.t. x, given dy[N,OH,OW,K]. */
void conv2d_backward_data(const Conv2dShape *s, const float *dy, const float *w, float *dx,
                          float *ws);
/* dw[KH,KW,C,K] and db[K] (db may be NULL) from x and dy, summed over the batch. */
void conv2d_backward_filter(const Conv2dShape *s, const float *x, const float *dy, float *dw,
                            float *db, float *ws);

/* The direct loops the kernels above are tested against (no workspace). */
void conv2d_forward_reference(const Conv2dShape *s, const float *x, const float *w,
                              const float *b, float *y);
void conv2d_backward_data_reference(const Conv2dShape *s, const float *dy, const float *w,
                                    float *dx);
void conv2d_backward_filter_reference(const Conv2dShape *s, const float *x, const float *dy,
                                      float *dw, float *db);

/* ---- max pooling -------------------------------------------------------------------------- */
typedef struct {
    int n, h, w, c;          /* input [N,H,W,C] */
    int kh, kw, stride_h, stride_w;
    int pad_top, pad_left;
    int oh, ow;              /* output [N,OH,OW,C] */
} Pool2dShape;

void pool2d_shape_init(Pool2dShape *s, int n, int h, int w, int c, int kh, int kw,
                       int stride_h, int stride_w, int same);
/* y = max over each window; argmax[i] = flat input index (into x) of the max of output i,
 * the first one in row-major window order on ties (as TF's CPU kernel). Padding never wins. */
void maxpool2d_forward(const Pool2dShape *s, const float *x, float *y, int32_t *argmax);
/* dx = 0 everywhere, then dx[argmax[i]] += dy[i]. */
void maxpool2d_backward(const Pool2dShape *s, const float *dy, const int32_t *argmax, float *dx);
/* maxpool2d_backward, then the backward of the ReLU whose output is the pool's input, with the
 * ReLU's mask read from the pool's output y instead of its input: a window passes dy only where
 * y > 0 (its winner's value). The same values as masking dx by the ReLU's output (every window
 * that routes to an element has that element's value as its y), for when that output is not
 * stored (conv2d_relu_maxpool_forward). */
void maxpool2d_relu_backward_from_y(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                                    const float *y, float *dx);

/* conv2d_forward (with b), relu_forward and maxpool2d_forward in one call, where
 * conv2d_relu_maxpool_fused_fits says so (ps over the conv's output; the conv rows the call
 * holds at once fit a buffer of 64 KB on the stack: a pooled row's where conv2d_forward runs
 * its direct loops, as for MNIST's conv1, else the image's, as for conv2): the y and argmax of
 * those three calls, bit for bit, without the conv's output; ws as conv2d_forward's.
 * conv2d_relu_maxpool_direct_fits: fused_fits, and the conv takes the direct loops. */
int conv2d_relu_maxpool_fused_fits(const Conv2dShape *cs, const Pool2dShape *ps);
int conv2d_relu_maxpool_direct_fits(const Conv2dShape *cs, const Pool2dShape *ps);
void conv2d_relu_maxpool_forward_fused(const Conv2dShape *cs, const Pool2dShape *ps,
                                       const float *x, const float *w, const float *b, float *y,
                                       int32_t *argmax, float *ws);
/* Its backward's filter gradient, where conv2d_relu_maxpool_direct_fits: dw and db (may be NULL)
 * of conv2d_backward_filter over the conv output's gradient that maxpool2d_relu_backward_from_y
 * makes from dy, argmax and y, bit for bit, without that gradient (made a block of rows at a
 * time in the workspace: conv2d_workspace_floats(cs)). */
void conv2d_relu_maxpool_backward_filter_direct(const Conv2dShape *cs, const Pool2dShape *ps,
                                                const float *x, const float *y,
                                                const int32_t *argmax, const float *dy, float *dw,
                                                float *db, float *ws);

/* ---- conv + ReLU + max pool, fused (kernels/conv2d_pool.c) --------------------------------- *
 * A network's first layer, whose input x takes no gradient: conv (cs) + bias, ReLU, then max
 * pooling (ps, over the conv's output: ps->n,h,w,c = cs->n,oh,ow,k). The conv's output is
 * never stored, and its filter gradient needs no dy of the conv's size: only the pooled
 * windows' winners take a gradient, and a winner passes the ReLU iff the pooled value is > 0.
 *
 * Forward: y[N,PH,PW,K] and argmax exactly as maxpool2d_forward over max(conv(x,w)+b, 0)
 * (argmax: flat index into the conv output [N,OH,OW,K]; the first maximum on ties). Each conv
 * value is the GEMM's sum: acc = 0, then acc = fmaf(x_t, w_t, acc) over the taps t = (kh,kw,c)
 * in order (out-of-image taps read 0), then acc + b[k] (b may be NULL), so the CUDA twin gives
 * the same bits as conv2d_forward_cuda + maxpool2d_forward_cuda whenever that GEMM does not
 * split the taps over blocks (split-K: only for few output tiles; never for MNIST's conv1). */
void conv2d_relu_maxpool_forward(const Conv2dShape *cs, const Pool2dShape *ps, const float *x,
                                 const float *w, const float *b, float *y, int32_t *argmax);
/* Backward, from dy = dL/dy of the pooled output: g[o] = y[o] > 0 ? dy[o] : 0 goes to the conv
 * position argmax[o], so dw[t,k] = sum_o g[o] * x[tap t of argmax[o]], db[k] = sum_o g[o]
 * (db may be NULL). Summed in double, per fixed image group in output order, the groups added
 * in order (the CUDA twin's order differs); the work is the alive winners' only. ws: at least
 * conv2d_relu_maxpool_backward_filter_workspace_floats(cs) floats, 8-byte aligned (the groups'
 * double sums; independent of cs->n). */
size_t conv2d_relu_maxpool_backward_filter_workspace_floats(const Conv2dShape *cs);
void conv2d_relu_maxpool_backward_filter(const Conv2dShape *cs, const Pool2dShape *ps,
                                         const float *x, const float *y, const int32_t *argmax,
                                         const float *dy, float *dw, float *db, float *ws);
/* The conv's data gradient from the pool's winners, for a conv of stride 1 under a pool whose
 * windows do not overlap (stride >= window: each conv output is in one window at most; the
 * caller checks both): dx = conv2d_backward_data of the conv output's gradient that
 * maxpool2d_relu_backward_from_y makes from dy, argmax and y, without that gradient. Each
 * dx[n,ih,iw,c] is acc = 0, then acc = fmaf(dy[o], w[kh,kw,c,k], acc) over the pooled outputs
 * o = (n,ph,pw,k) in memory order whose winner passed the ReLU (y[o] > 0) and lies in the
 * pixel's reach (oh = ih + pad_top - kh, ow = iw + pad_left - kw inside the filter): the terms
 * of conv2d_backward_data that are not zero, in pooled order. The CUDA twin sums in this
 * order: the same bits. (Here each winner adds to the pixels it reaches, the winners in pooled
 * order: each pixel sees its terms in that order.) ws: at least
 * conv2d_relu_maxpool_backward_data_workspace_floats(cs) floats (the filter as [KH,KW,K,C]). */
size_t conv2d_relu_maxpool_backward_data_workspace_floats(const Conv2dShape *cs);
void conv2d_relu_maxpool_backward_data(const Conv2dShape *cs, const Pool2dShape *ps,
                                       const float *w, const float *y, const int32_t *argmax,
                                       const float *dy, float *dx, float *ws);

/* ---- dense (fully connected) and GEMM ----------------------------------------------------- */
/* Row-major SGEMM: C[M,N] = alpha * op(A) * op(B) + beta * C.
 * op(A) is A[M,K] (lda >= K) or, with trans_a, A stored [K,M] (lda >= M); likewise B. */
void sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
           const float *b, int ldb, float beta, float *c, int ldc);
/* The plain triple loop sgemm is tested against. */
void sgemm_reference(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                     int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* y[N,out] = x[N,in] * w[in,out] + b[out] (b may be NULL). */
void dense_forward(int n, int in, int out, const float *x, const float *w, const float *b, float *y);
/* dx[N,in] = dy * w^T (skipped when dx is NULL); dw[in,out] = x^T * dy; db[out] = sum_n dy
 * (both skipped when dw is NULL; db may be NULL). Where x is at most 1/8 nonzero, the forward
 * and dw are the *_sparse_input sums below. */
void dense_backward(int n, int in, int out, const float *x, const float *w, const float *dy,
                    float *dx, float *dw, float *db);
/* Over x's nonzeros (any x; fast where it is mostly zeros, e.g. a pooled ReLU output): y[r,j] =
 * acc + b[j] (b may be NULL), acc = 0 then acc = fmaf(x[r,i], w[i,j], acc) over the i with
 * x[r,i] != 0, ascending. The CUDA twin sums in this order: the same bits. -1 when out of
 * memory (nothing written), else 0. */
int dense_forward_sparse_input(int n, int in, int out, const float *x, const float *w,
                               const float *b, float *y);
/* dw[i,j] = acc, acc = 0 then acc = fmaf(x[r,i], dy[r,j], acc) over the r with x[r,i] != 0,
 * ascending; db[j] (may be NULL) = 0 then += dy[r,j] over every r, ascending. The CUDA twin
 * sums in these orders: the same bits. -1 when out of memory (nothing written), else 0. */
int dense_backward_filter_sparse_input(int n, int in, int out, const float *x, const float *dy,
                                       float *dw, float *db);
/* dx[r,i] = (dy * w^T)[r,i] where x[r,i] > 0, else 0: the data gradient of a dense layer whose
 * input is a max pool over a ReLU's output, where the layers before read its gradient only at
 * x > 0 (a pooled 0 is a winner the ReLU stopped, whose gradient its backward drops). out a
 * multiple of 32, at most 1024 (the CUDA twin's lanes hold a row of dy). Each value is summed
 * as the CUDA twin's warp sums it: lane l = 0..31 takes acc = fmaf(dy[r,j], w[i,j], acc) over
 * j = 32s + l (s = 0, 1, ..), then the 32 lanes' sums are added by a butterfly (s[l] +
 * s[l ^ 16], then ^ 8, ^ 4, ^ 2, ^ 1): the same bits. The work is the alive entries' only. */
int dense_backward_data_alive_fits(int out);
void dense_backward_data_alive(int n, int in, int out, const float *x, const float *w,
                               const float *dy, float *dx);
/* A dense layer's backward and its kernel's Adam update in one call: dense_backward's dw and db
 * (db may be NULL), dense_backward_data_alive's dx (dx may be NULL; else out must fit it), then
 * adam_update on w with that dw (m, v and the rest as adam_update's): the values of those three
 * calls, bit for bit. Where x is at most 1/8 nonzero it is one pass over w's rows and dw is not
 * written (it may hold anything after); otherwise the three calls, with dw as their buffer. */
void dense_backward_adam(int n, int in, int out, const float *x, float *w, const float *dy,
                         float *dx, float *dw, float *db, float *m, float *v, float lr,
                         float beta1, float beta2, float eps, int64_t t);

/* ---- elementwise -------------------------------------------------------------------------- */
/* y = max(x, 0); y may alias x. */
void relu_forward(size_t n, const float *x, float *y);
/* dx = dy where y > 0, else 0 (TF's ReluGrad); dx may alias dy. */
void relu_backward(size_t n, const float *y, const float *dy, float *dx);

/* The scale of dropout's kept elements, 1/(1-rate); rate >= 1 keeps nothing (the scale is then
 * never used). One definition for the CPU and CUDA kernels. */
static inline float dropout_scale(float rate) { return rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f; }

/* Inverted dropout with drop probability `rate`: element i is kept when
 * philox_uniform(seed, stream, i) >= rate (kernels/philox.h), and kept values are scaled by
 * 1/(1-rate). mask[i] = 1 if kept. `stream` selects an independent random stream (the trainer
 * uses the global step), so a mask depends only on (seed, stream, i), on CPU and GPU alike. */
void dropout_forward(size_t n, float rate, uint64_t seed, uint64_t stream, const float *x,
                     float *y, uint8_t *mask);
/* dx = dy * mask / (1-rate); dx may alias dy. */
void dropout_backward(size_t n, float rate, const uint8_t *mask, const float *dy, float *dx);

/* ---- dropout + dense, fused (kernels/dropout_dense.c; CUDA twin in dense.cu) --------------- *
 * A dropout whose only consumer is a dense layer: y = dense(dropout(x)) with the dropout's
 * output x' never stored; the dense layer reads x through the mask instead.
 * Forward, training (mask != NULL): keep and mask exactly as dropout_forward(n * in, rate, seed,
 * stream, x, x', mask) (element e = row * in + i), x'[e] = keep ? x[e] * scale : 0 with scale =
 * 1/(1-rate); then y = x' * w + b (b may be NULL), and with relu y = max(y, 0). mask == NULL
 * (inference): x' = x, and seed, stream and rate are unused. Each y is acc = 0, acc = fmaf(x'_i,
 * w_io, acc) over i in order, then + b (the CUDA twin adds in another order: 1e-5). */
void dropout_dense_forward(int n, int in, int out, float rate, uint64_t seed, uint64_t stream,
                           const float *x, const float *w, const float *b, float *y,
                           uint8_t *mask, int relu);
/* Backward of the forward's dense layer and dropout, from dy = dL/dy (already through the
 * forward's relu, if any): g = dy * w^T, then dx[e] = g[e] * scale where mask[e] (and, with
 * relu_x, where x[e] > 0: x is the output of a ReLU whose backward this applies too), else 0;
 * dx may be NULL. dw = x'^T * dy and db = sum over rows of dy (db may be NULL), always written. */
void dropout_dense_backward(int n, int in, int out, float rate, const uint8_t *mask, int relu_x,
                            const float *x, const float *w, const float *dy, float *dx, float *dw,
                            float *db);

/* ---- random initialisation (host only: core initialises parameters here and uploads them) - */
/* x[i] = (2 * philox_uniform(seed, stream, i) - 1) * limit: uniform in [-limit, limit). One
 * Philox call per 4 elements (philox.h's counter layout), threads over groups of 4: the values
 * do not depend on the thread count. */
void uniform_fill_symmetric(size_t n, float limit, uint64_t seed, uint64_t stream, float *x);

/* ---- softmax and loss --------------------------------------------------------------------- */
/* probs[N,C] = softmax(logits) (max-subtracted, numerically stable). */
void softmax_forward(int n, int c, const float *logits, float *probs);
/* Fused softmax + sparse cross-entropy, as tf.nn.sparse_softmax_cross_entropy_with_logits
 * followed by a mean over the batch: *loss = mean_i(logsumexp(logits_i) - logits_i[label_i]).
 * Also writes probs[N,C]. Labels must be in [0,C). */
void softmax_xent_forward(int n, int c, const float *logits, const int32_t *labels, float *probs,
                          float *loss);
/* dlogits[N,C] = dloss * (probs - onehot(labels)) / N: the gradient of the mean loss. */
void softmax_xent_backward(int n, int c, const float *probs, const int32_t *labels, float dloss,
                           float *dlogits);
/* Number of rows i whose argmax over logits[i,:] (first max on ties) equals labels[i]. */
int argmax_correct(int n, int c, const float *logits, const int32_t *labels);

/* ---- optimizers (one fused pass over a parameter buffer) ---------------------------------- */
/* Adam as Keras/TF1 AdamOptimizer compute it, t = 1-based step after increment:
 *   lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
 *   m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g;  w -= lr_t * m / (sqrt(v) + eps) */
void adam_update(size_t n, float *w, const float *g, float *m, float *v, float lr, float beta1,
                 float beta2, float eps, int64_t t);
/* Plain SGD: w -= lr * g. */
void sgd_update(size_t n, float *w, const float *g, float lr);
/* Keras momentum: vel = momentum*vel - lr*g; w += vel (nesterov: w += momentum*vel - lr*g). */
void momentum_update(size_t n, float *w, const float *g, float *vel, float lr, float momentum,
                     int nesterov);

#ifdef __cplusplus
}
#endif
#endif /* KERNELS_H */
