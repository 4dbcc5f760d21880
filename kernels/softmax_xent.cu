/* softmax_xent.cu: softmax, fused sparse softmax cross-entropy (mean over the batch, kept on the
 * device), its gradient, and the accuracy count, on the GPU (kernels/softmax_xent.c's twins).
 * Logits are [N,C] row-major. The loss is reduced by one block in a fixed order (per-thread
 * double sums, then a tree): deterministic, and as the CPU accumulates in double too. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

constexpr int XENT_THREADS = 512;

/* probs_row = softmax(row); returns logsumexp(row). The CPU twin's operations in its order. */
__device__ float softmax_row(int c, const float *row, float *p) {
    float mx = row[0];
    for (int j = 1; j < c; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < c; j++) {
        p[j] = expf(row[j] - mx);
        sum += p[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < c; j++) p[j] *= inv;
    return mx + logf(sum);
}

__global__ void softmax_kernel(int n, int c, const float *logits, float *probs) {
    pdl_wait_and_release();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        softmax_row(c, logits + (size_t)i * c, probs + (size_t)i * c);
}

/* One thread per row: dx = y * (dy - <dy, y>). */
__global__ void softmax_bwd_kernel(int n, int c, const float *y, const float *dy, float *dx) {
    pdl_wait_and_release();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float *yr = y + (size_t)i * c, *dyr = dy + (size_t)i * c;
        float *dxr = dx + (size_t)i * c;
        float dot = 0.0f;
        for (int j = 0; j < c; j++) dot += dyr[j] * yr[j];
        for (int j = 0; j < c; j++) dxr[j] = yr[j] * (dyr[j] - dot);
    }
}

/* One block: probs, the mean loss, and (dlogits != NULL) the gradient with dloss = 1.
 * A label outside [0,C) makes the loss NaN (visible, never a wild read). */
__global__ void __launch_bounds__(XENT_THREADS)
xent_kernel(int n, int c, const float *logits, const int32_t *labels, float *probs, float *loss,
            float *dlogits) {
    pdl_wait_and_release();
    __shared__ double part[XENT_THREADS];
    const float scale = n > 0 ? 1.0f / (float)n : 0.0f; /* as the CPU twin with dloss = 1 */
    double total = 0.0;
    for (int i = threadIdx.x; i < n; i += XENT_THREADS) {
        const float *row = logits + (size_t)i * c;
        float *p = probs + (size_t)i * c;
        float lse = softmax_row(c, row, p);
        int label = labels[i];
        bool ok = label >= 0 && label < c;
        total += ok ? (double)(lse - row[label]) : (double)NAN;
        if (dlogits) {
            float *d = dlogits + (size_t)i * c;
            for (int j = 0; j < c; j++) d[j] = (p[j] - (j == label ? 1.0f : 0.0f)) * scale;
        }
    }
    const double sum = block_tree_sum<XENT_THREADS>(part, total);
    if (threadIdx.x == 0) *loss = n > 0 ? (float)(sum / n) : 0.0f;
}

/* Version 2 (CNN_XENT_V, the default for up to XENT2_MAXC classes): the same one-block
 * reduction, but each row lives in registers: version 1 writes the exponentials to probs and
 * reads them back through pointers that may alias, so every row is a chain of ~3c dependent
 * global-memory round trips (5 us at batch 100, 22 us at 1000, where a thread has two rows);
 * here a row is read once and its probabilities and gradient written once. 1024 threads: at
 * batch 1000 every thread has at most one row. The same float operations in the same order as
 * softmax_row (the loss's double tree differs from version 1's: 1024 leaves, not 512). */
constexpr int XENT2_THREADS = 1024, XENT2_MAXC = 16;

__global__ void __launch_bounds__(XENT2_THREADS)
xent2_kernel(int n, int c, const float *__restrict__ logits, const int32_t *__restrict__ labels,
             float *__restrict__ probs, float *__restrict__ loss, float *__restrict__ dlogits) {
    pdl_wait_and_release();
    __shared__ double part[XENT2_THREADS];
    const float scale = n > 0 ? 1.0f / (float)n : 0.0f;
    double total = 0.0;
    for (int i = threadIdx.x; i < n; i += XENT2_THREADS) {
        const float *row = logits + (size_t)i * c;
        float r[XENT2_MAXC], p[XENT2_MAXC] = {};
#pragma unroll
        for (int j = 0; j < XENT2_MAXC; j++) r[j] = j < c ? row[j] : 0.0f;
        float mx = r[0];
#pragma unroll
        for (int j = 1; j < XENT2_MAXC; j++)
            if (j < c) mx = r[j] > mx ? r[j] : mx;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < XENT2_MAXC; j++)
            if (j < c) {
                p[j] = expf(r[j] - mx);
                sum += p[j];
            }
        const float inv = 1.0f / sum;
        const int label = labels[i];
        float at_label = 0.0f;
#pragma unroll
        for (int j = 0; j < XENT2_MAXC; j++)
            if (j < c) {
                p[j] *= inv;
                if (j == label) at_label = r[j];
            }
        const float lse = mx + logf(sum);
        total += label >= 0 && label < c ? (double)(lse - at_label) : (double)NAN;
        float *pr = probs + (size_t)i * c;
#pragma unroll
        for (int j = 0; j < XENT2_MAXC; j++)
            if (j < c) pr[j] = p[j];
        if (dlogits) {
            float *d = dlogits + (size_t)i * c;
#pragma unroll
            for (int j = 0; j < XENT2_MAXC; j++)
                if (j < c) d[j] = (p[j] - (j == label ? 1.0f : 0.0f)) * scale;
        }
    }
    const double sum = block_tree_sum<XENT2_THREADS>(part, total);
    if (threadIdx.x == 0) *loss = n > 0 ? (float)(sum / n) : 0.0f;
}

/* CNN_XENT_V=1: version 1 for every class count; else version 2 up to XENT2_MAXC classes. */
bool xent_v2(int c) {
    const char *v = getenv("CNN_XENT_V");
    return c <= XENT2_MAXC && !(v && strcmp(v, "1") == 0);
}

__global__ void xent_bwd_kernel(int n, int c, const float *probs, const int32_t *labels,
                                float scale, float *dlogits) {
    pdl_wait_and_release();
    size_t total = (size_t)n * c;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e / c), j = (int)(e % c);
        dlogits[e] = (probs[e] - (j == labels[i] ? 1.0f : 0.0f)) * scale;
    }
}

__global__ void __launch_bounds__(XENT_THREADS)
argmax_kernel(int n, int c, const float *logits, const int32_t *labels, int *correct) {
    pdl_wait_and_release();
    __shared__ int count;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    int mine = 0;
    for (int i = threadIdx.x; i < n; i += XENT_THREADS) {
        const float *row = logits + (size_t)i * c;
        int best = 0;
        for (int j = 1; j < c; j++)
            if (row[j] > row[best]) best = j;
        mine += best == labels[i];
    }
    atomicAdd(&count, mine); /* integer: exact in any order */
    __syncthreads();
    if (threadIdx.x == 0) *correct = count;
}

} /* namespace */

extern "C" cudaError_t softmax_forward_cuda(int n, int c, const float *logits, float *probs,
                                            cudaStream_t stream) {
    if (n < 0 || c <= 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for((size_t)n, 128), 128, stream, softmax_kernel)(n, c, logits, probs);
    return launch_status();
}

extern "C" cudaError_t softmax_backward_cuda(int n, int c, const float *y, const float *dy,
                                             float *dx, cudaStream_t stream) {
    if (n < 0 || c <= 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for((size_t)n, 128), 128, stream, softmax_bwd_kernel)(n, c, y, dy, dx);
    return launch_status();
}

extern "C" cudaError_t softmax_xent_forward_cuda(int n, int c, const float *logits,
                                                 const int32_t *labels, float *probs, float *loss,
                                                 cudaStream_t stream) {
    if (n < 0 || c <= 0) return cudaErrorInvalidValue;
    if (xent_v2(c))
        CNN_KERNEL(1, XENT2_THREADS, stream, xent2_kernel)(
            n, c, logits, labels, probs, loss, nullptr);
    else
        CNN_KERNEL(1, XENT_THREADS, stream, xent_kernel)(
            n, c, logits, labels, probs, loss, nullptr);
    return launch_status();
}

extern "C" cudaError_t softmax_xent_fused_cuda(int n, int c, const float *logits,
                                               const int32_t *labels, float *probs, float *loss,
                                               float *dlogits, cudaStream_t stream) {
    if (n < 0 || c <= 0 || !dlogits) return cudaErrorInvalidValue;
    if (xent_v2(c))
        CNN_KERNEL(1, XENT2_THREADS, stream, xent2_kernel)(
            n, c, logits, labels, probs, loss, dlogits);
    else
        CNN_KERNEL(1, XENT_THREADS, stream, xent_kernel)(
            n, c, logits, labels, probs, loss, dlogits);
    return launch_status();
}

extern "C" cudaError_t softmax_xent_backward_cuda(int n, int c, const float *probs,
                                                  const int32_t *labels, float dloss,
                                                  float *dlogits, cudaStream_t stream) {
    if (n < 0 || c <= 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    float scale = dloss / (float)n; /* as the CPU twin */
    CNN_KERNEL(grid_for((size_t)n * c, 256), 256, stream, xent_bwd_kernel)(
        n, c, probs, labels, scale, dlogits);
    return launch_status();
}

extern "C" cudaError_t argmax_correct_cuda(int n, int c, const float *logits,
                                           const int32_t *labels, int *correct,
                                           cudaStream_t stream) {
    if (n < 0 || c <= 0) return cudaErrorInvalidValue;
    CNN_KERNEL(1, XENT_THREADS, stream, argmax_kernel)(n, c, logits, labels, correct);
    return launch_status();
}
