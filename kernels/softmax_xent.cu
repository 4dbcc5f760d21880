/* softmax_xent.cu: softmax, fused sparse softmax cross-entropy (mean over the batch, kept on the
 * device), its gradient, and the accuracy count, on the GPU (kernels/softmax_xent.c's twins).
 * Logits are [N,C] row-major. The loss is reduced in double in a fixed order (per-thread sums,
 * then a tree; version 3: per-block trees, then the blocks in order): deterministic, and as the
 * CPU accumulates in double too. */
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

/* Version 2 (CNN_XENT_V=2; the default up to XENT2_MAXC classes until GPU run 5): the same
 * one-block reduction, but each row lives in registers: version 1 writes the exponentials to
 * probs and reads them back through pointers that may alias, so every row is a chain of ~3c
 * dependent global-memory round trips (5 us at batch 100, 22 us at 1000, where a thread has two
 * rows); here a row is read once and its probabilities and gradient written once. 1024 threads: at
 * batch 1000 every thread has at most one row. The same float operations in the same order as
 * softmax_row (the loss's double tree differs from version 1's: 1024 leaves, not 512). */
constexpr int XENT2_THREADS = 1024, XENT2_MAXC = 16;

/* One row of c <= XENT2_MAXC classes in registers (r[j], j < c): p = its softmax, *label_out =
 * *label; returns the row's loss, NaN for a label outside [0,c). softmax_row's float operations
 * in its order; versions 2 and 3 share it, so their probabilities and gradients are the same
 * bits. (The label is read through a pointer, once the exponentials are summed, so that version
 * 2 compiles to the PTX it had when run 4 timed it.) */
__device__ __forceinline__ double xent_row(int c, const float (&r)[XENT2_MAXC],
                                           const int32_t *label_in, int *label_out,
                                           float (&p)[XENT2_MAXC]) {
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
    const int label = *label_in;
    *label_out = label;
    float at_label = 0.0f;
#pragma unroll
    for (int j = 0; j < XENT2_MAXC; j++)
        if (j < c) {
            p[j] *= inv;
            if (j == label) at_label = r[j];
        }
    const float lse = mx + logf(sum);
    return label >= 0 && label < c ? (double)(lse - at_label) : (double)NAN;
}

/* The gradient of the mean loss (dloss = 1) at class j of a row: (p - onehot(label)) / n. */
__device__ __forceinline__ float xent_grad(float p, int j, int label, float scale) {
    return (p - (j == label ? 1.0f : 0.0f)) * scale;
}

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
        int label;
        total += xent_row(c, r, labels + i, &label, p);
        float *pr = probs + (size_t)i * c;
#pragma unroll
        for (int j = 0; j < XENT2_MAXC; j++)
            if (j < c) pr[j] = p[j];
        if (dlogits) {
            float *d = dlogits + (size_t)i * c;
#pragma unroll
            for (int j = 0; j < XENT2_MAXC; j++)
                if (j < c) d[j] = xent_grad(p[j], j, label, scale);
        }
    }
    const double sum = block_tree_sum<XENT2_THREADS>(part, total);
    if (threadIdx.x == 0) *loss = n > 0 ? (float)(sum / n) : 0.0f;
}

/* Version 3 (the default up to XENT2_MAXC classes since GPU run 5; CNN_XENT_V=2 or 1 selects
 * the older versions): the batch spread over blocks of XENT3_ROWS rows. Version 2 is one block
 * on one SM: at batch 1000 its 1024 threads each read a 40-byte row and write two, strided
 * (each warp instruction touches ten 128-byte lines), and the whole batch queues on that SM's
 * load/store unit (17.9 us on the H100 of run 4, 24% of cuDNN's softmax; 5.3 us at batch 100,
 * 104%).
 * Here a block copies its chunk of rows (XENT3_ROWS x c floats, contiguous) into shared memory
 * with coalesced loads (every load issued before the first is used), each thread takes one row
 * from there through xent_row (version 2's operations: the same probs and dlogits bits), writes
 * the probabilities and the gradient back to shared memory, and the block stores both with
 * coalesced stores. The loss: each block's rows in a fixed tree (block_tree_sum, double); one
 * block (batch <= XENT3_ROWS) writes the mean directly; with several, each block's thread 0
 * writes its sum to xent3_partial[block], fences, and counts itself in xent3_done; the block
 * that counts last sums the partials in block order (fixed: deterministic, whichever block is
 * last) and writes the mean, then sets xent3_done back to 0, so the next launch (a graph's
 * replay included) finds it at 0. No allocation, no host synchronisation. The counter and the
 * partials are one static buffer per device: two launches of version 3 must not run at the same
 * time on two streams (the backend issues the loss on its one main stream).
 * The sum's order (a tree per block, then the blocks in order) differs from version 2's tree,
 * so the loss may differ from version 2's in its last bits; within the tolerance of the CPU
 * twin's (row-order double sum).
 *
 * GPU run 5 (H200, 2026-11-28) timed the whole training step (CUDA graph) with version 3 at
 * 0.387 ms against version 2's 0.391 at batch 100 and 2.083 against 2.096 ms at batch 1000
 * (bench_kernels: 5.8 against 5.9 us at batch 100, 5.7 against 17.7 at 1000), and the GPU
 * tests passed with it: the default since.
 * PREDICTION (written before any GPU run, for run 4's H100). bench_kernels times 20 back-to-back
 * launches without PDL; run 4 shows a floor of ~5.0-5.4 us per call for every small kernel of
 * ours (gather 5.0, dropout 5.3, pool1 fwd 5.4 at batch 100), so a kernel whose device time is
 * under that floor measures at the floor.
 *   batch 100: one block of 128 threads (100 rows), no partials, no fence, no atomic. Chain:
 *   one L2 round trip for 4 KB of logits and the labels (~0.5 us), a barrier, ~100 cycles of
 *   row math, a barrier, the stores issued, the 8-barrier tree of 128 doubles (~0.2 us), the
 *   loss store: ~1.5 us on the device (version 2: one 1024-thread block, strided accesses, a
 *   10-level tree). Measured time: the floor, ~5.2 us (~105% of cuDNN's 5.5).
 *   batch 1000: 8 blocks (128 rows, 5 KB of logits and 10 KB of outputs each) on 8 SMs, each
 *   the same chain as at 100, then thread 0's partial store + __threadfence (~0.5-1 us, the
 *   fence waits for its stores to reach L2), the atomic's L2 round trip (~0.5 us), and in the
 *   last block a barrier, one L2 round trip for the 8 partials (~0.5 us) and another tree
 *   (~0.2 us): ~3-3.5 us on the device, under the floor. Measured: ~5.3 us, i.e. ~85% of run
 *   4's 4.4 us for cuDNN (which measured 5.5 us at batch 100: its floor is the same launch
 *   rate, and the 90% goal at batch 1000 hinges on that ~1 us difference, not on this
 *   kernel). If the measurement is well above 5.5 us, the fence/atomic chain costs more than
 *   guessed. */
constexpr int XENT3_ROWS = 128, XENT3_MAX_BLOCKS = 512;

__device__ double xent3_partial[XENT3_MAX_BLOCKS];
__device__ unsigned xent3_done = 0;

/* The number of blocks version 3 launches for n rows (a block loops over chunks beyond
 * XENT3_MAX_BLOCKS of them): a function of n only, so is the loss's order. */
static inline unsigned xent3_blocks(int n) {
    const int chunks = (n + XENT3_ROWS - 1) / XENT3_ROWS;
    return chunks < 1 ? 1u : chunks > XENT3_MAX_BLOCKS ? (unsigned)XENT3_MAX_BLOCKS
                                                       : (unsigned)chunks;
}

__global__ void __launch_bounds__(XENT3_ROWS)
xent3_kernel(int n, int c, const float *__restrict__ logits, const int32_t *__restrict__ labels,
             float *__restrict__ probs, float *__restrict__ loss, float *__restrict__ dlogits) {
    pdl_wait_and_release();
    /* layout: chunk rows x c, row-major, as in global memory */
    __shared__ float s_in[XENT3_ROWS * XENT2_MAXC];   /* logits, then the probabilities */
    __shared__ float s_grad[XENT3_ROWS * XENT2_MAXC]; /* the gradient */
    __shared__ int32_t s_label[XENT3_ROWS];
    __shared__ double part[XENT3_ROWS];
    __shared__ bool last;
    const int t = threadIdx.x;
    const float scale = n > 0 ? 1.0f / (float)n : 0.0f;
    double total = 0.0;
    for (int row0 = blockIdx.x * XENT3_ROWS; row0 < n; row0 += gridDim.x * XENT3_ROWS) {
        const int rows = min(XENT3_ROWS, n - row0), count = rows * c;
        const size_t base = (size_t)row0 * c;
        float v[XENT2_MAXC];
#pragma unroll
        for (int k = 0; k < XENT2_MAXC; k++) {
            const int e = t + k * XENT3_ROWS;
            v[k] = e < count ? logits[base + e] : 0.0f;
        }
        const int32_t label_t = t < rows ? labels[row0 + t] : 0;
#pragma unroll
        for (int k = 0; k < XENT2_MAXC; k++)
            if (t + k * XENT3_ROWS < count) s_in[t + k * XENT3_ROWS] = v[k];
        s_label[t] = label_t;
        __syncthreads();
        if (t < rows) {
            float r[XENT2_MAXC], p[XENT2_MAXC] = {};
#pragma unroll
            for (int j = 0; j < XENT2_MAXC; j++) r[j] = j < c ? s_in[t * c + j] : 0.0f;
            int label;
            total += xent_row(c, r, s_label + t, &label, p);
#pragma unroll
            for (int j = 0; j < XENT2_MAXC; j++)
                if (j < c) {
                    s_in[t * c + j] = p[j];
                    s_grad[t * c + j] = xent_grad(p[j], j, label, scale);
                }
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < XENT2_MAXC; k++) {
            const int e = t + k * XENT3_ROWS;
            if (e < count) {
                probs[base + e] = s_in[e];
                if (dlogits) dlogits[base + e] = s_grad[e];
            }
        }
        /* No barrier before the next chunk: a thread stores the same elements e it copies in
         * there, and the rows are read only after that chunk's first barrier. */
    }
    const double block_sum = block_tree_sum<XENT3_ROWS>(part, total);
    if (gridDim.x == 1) {
        if (t == 0) *loss = n > 0 ? (float)(block_sum / n) : 0.0f;
        return;
    }
    if (t == 0) {
        xent3_partial[blockIdx.x] = block_sum;
        __threadfence(); /* the partial is visible device-wide before the count says so */
        last = atomicAdd(&xent3_done, 1u) == gridDim.x - 1;
        /* the reading side's fence (PTX's memory model: an acquire after the count that says
         * every partial is there), before the barrier hands `last` to the block */
        if (last) __threadfence();
    }
    __syncthreads();
    if (!last) return;
    /* Every block's partial is written and fenced. Read through volatile: not from this SM's
     * L1, which is not coherent with the other SMs' writes. */
    const volatile double *partial = xent3_partial;
    double mine = 0.0;
    for (unsigned b = t; b < gridDim.x; b += XENT3_ROWS) mine += partial[b];
    const double sum = block_tree_sum<XENT3_ROWS>(part, mine);
    if (t == 0) {
        *loss = (float)(sum / n);
        xent3_done = 0; /* for the next launch */
    }
}

/* The cross-entropy version (CNN_XENT_V): 1 for every class count; 2 and 3 (the default since
 * GPU run 5) up to XENT2_MAXC classes, version 1 beyond. */
int xent_version(int c) {
    const char *v = getenv("CNN_XENT_V");
    if (c > XENT2_MAXC || (v && strcmp(v, "1") == 0)) return 1;
    return v && strcmp(v, "2") == 0 ? 2 : 3;
}

/* Probabilities, the mean loss, and (dlogits != NULL) the gradient, by the version above. */
void xent_launch(int n, int c, const float *logits, const int32_t *labels, float *probs,
                 float *loss, float *dlogits, cudaStream_t stream) {
    switch (xent_version(c)) {
    case 3:
        CNN_KERNEL(xent3_blocks(n), XENT3_ROWS, stream, xent3_kernel)(
            n, c, logits, labels, probs, loss, dlogits);
        break;
    case 2:
        CNN_KERNEL(1, XENT2_THREADS, stream, xent2_kernel)(
            n, c, logits, labels, probs, loss, dlogits);
        break;
    default:
        CNN_KERNEL(1, XENT_THREADS, stream, xent_kernel)(
            n, c, logits, labels, probs, loss, dlogits);
    }
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
    xent_launch(n, c, logits, labels, probs, loss, nullptr, stream);
    return launch_status();
}

extern "C" cudaError_t softmax_xent_fused_cuda(int n, int c, const float *logits,
                                               const int32_t *labels, float *probs, float *loss,
                                               float *dlogits, cudaStream_t stream) {
    if (n < 0 || c <= 0 || !dlogits) return cudaErrorInvalidValue;
    xent_launch(n, c, logits, labels, probs, loss, dlogits, stream);
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
