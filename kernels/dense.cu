/* dense.cu: fully connected layers on the GPU. x [N,in], kernel w [in,out], y [N,out], all
 * row-major (kernels.h). Bias and ReLU ride in the GEMM's store; the bias gradient rides in the
 * weight-gradient GEMM as an extra row of ones.
 *
 * Narrow layers (out <= 16: the model's logits layer, 1024 -> 10) skip the GEMM: its tiles are
 * 32+ columns wide (over two thirds idle at out = 10) and at M = N (rows) it splits over K to
 * fill the GPU, so the forward and both gradients each took a GEMM launch plus a reduce launch
 * (7.6 + 10.8 us at batch 100, GPU run 3) for ~2 MFLOP each. Here: one block per row for the
 * forward (a fixed-order tree over the inputs), one thread per dx element, one thread per
 * (input, output) weight for dw with the bias gradient as input row `in` (sums over the rows in
 * order). Deterministic. Up to NARROW_MAX_ROWS rows (below: at batch 1000 the GEMM is faster);
 * CNN_DENSE_V=1 keeps the GEMM at every batch (the before of the benchmarks).
 *
 * The same kernels take the dropout in front of a narrow layer (dropout_dense_*_cuda, the twin
 * of kernels/dropout_dense.c): the forward draws the mask and reads x through it, the backward
 * reads x through the mask for dw and applies the dropout's (and the ReLU's) backward to dx, so
 * the dropout's output is never stored and its two launches are gone. The values are those of
 * dropout_forward_cuda / dropout_backward_cuda around the plain narrow kernels, bit for bit. */
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_cuda.cuh"
#include "kernels/kernels_cuda.h"
#include "kernels/philox.h"

namespace {

constexpr int NARROW_OUT = 16;     /* the narrow path's widest layer (registers per thread) */
constexpr int NARROW_THREADS = 128;

/* The narrow kernels' largest batch under version 3. Run 4 (H100), the logits layer 1024 -> 10,
 * narrow kernels against the GEMM: forward 8.4 against 13.4 us at batch 100, 19.7 against 11.3
 * at 1000; backward 12.2 against 14.8 and 73.4 against 15.4 (the dw kernel's thread per weight
 * sums all n rows in order: its chain grows with the batch, while the GEMM splits the rows).
 * Interpolated linearly, the two paths' forward + backward cross near 190 rows. */
constexpr int NARROW_MAX_ROWS = 192;

/* CNN_DENSE_V: 1 = the GEMM for every layer; 2 = the narrow kernels for out <= 16 at every
 * batch (GPU run 4's default); 3 (the default) = the narrow kernels for out <= 16 up to
 * NARROW_MAX_ROWS rows, the GEMM above. Read at every launch. */
bool narrow(int n, int out) {
    const char *v = getenv("CNN_DENSE_V");
    if (out > NARROW_OUT || (v && strcmp(v, "1") == 0)) return false;
    return (v && strcmp(v, "2") == 0) || n <= NARROW_MAX_ROWS;
}

/* The dropout in front of a narrow layer: x'[e] = keep ? x[e] * scale : 0. mask == NULL: none
 * (a plain dense layer, or inference). */
struct DropIn {
    uint8_t *mask;        /* forward: written; backward: read */
    float rate, scale;
    uint64_t seed, stream_base, stream_per_step;
    const int64_t *d_step; /* forward: the stream is stream_base + stream_per_step * (*d_step) */
    const float *relu_x;   /* backward: dx = 0 where relu_x <= 0 too (NULL: no ReLU before) */
};

__device__ __forceinline__ uint32_t philox_word(const Philox4x32 &p, unsigned q) {
    return q == 0 ? p.v[0] : q == 1 ? p.v[1] : q == 2 ? p.v[2] : p.v[3];
}

/* Draws the keep bits of elements e0 .. e0 + cnt - 1 (cnt <= 4) as dropout_forward does,
 * writes them to the mask and applies them to xv. One Philox call where e0 starts a group of 4
 * (every group when in % 4 == 0), two where the elements straddle groups. */
__device__ __forceinline__ void dropout_group(const DropIn &d, uint64_t stream, size_t e0,
                                              int cnt, float xv[4]) {
    const Philox4x32 p0 = philox_block(d.seed, stream, e0 >> 2);
    uint32_t words[4];
    const unsigned q0 = (unsigned)(e0 & 3);
    if (q0 == 0) {
#pragma unroll
        for (int j = 0; j < 4; j++) words[j] = p0.v[j];
    } else {
        const Philox4x32 p1 = philox_block(d.seed, stream, (e0 >> 2) + 1);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const unsigned q = q0 + (unsigned)j;
            words[j] = q < 4 ? philox_word(p0, q) : philox_word(p1, q - 4);
        }
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        if (j >= cnt) break;
        const bool keep = philox_word_uniform(words[j]) >= d.rate;
        d.mask[e0 + j] = keep;
        xv[j] = keep ? xv[j] * d.scale : 0.0f;
    }
}

/* x'[e] as the dw kernel reads it. */
__device__ __forceinline__ float dropped_x(const float *x, const DropIn &d, size_t e) {
    const float v = x[e];
    return !d.mask ? v : d.mask[e] ? v * d.scale : 0.0f;
}

/* y[r, :] for one row r per block: thread t sums x'[r,i] * w[i,:] over the inputs in groups of
 * 4, i = 4g .. 4g+3 for g = t, t + 128, ... (a group is one Philox call of the dropout's mask);
 * the threads' sums are added in a fixed tree; then bias and ReLU as the GEMM's store. */
__global__ void __launch_bounds__(NARROW_THREADS)
dense_narrow_fwd_kernel(int in, int out, const float *x, const float *w, const float *b, float *y,
                        int relu, DropIn drop) {
    pdl_wait_and_release();
    __shared__ float red[NARROW_OUT][NARROW_THREADS];
    const int r = blockIdx.x, t = threadIdx.x;
    float acc[NARROW_OUT];
#pragma unroll
    for (int o = 0; o < NARROW_OUT; o++) acc[o] = 0.0f;
    const uint64_t stream =
        drop.stream_base + (drop.d_step ? drop.stream_per_step * (uint64_t)*drop.d_step : 0);
    const float *xr = x + (size_t)r * in;
    for (int i0 = 4 * t; i0 < in; i0 += 4 * NARROW_THREADS) {
        const int cnt = in - i0 < 4 ? in - i0 : 4;
        float xv[4];
#pragma unroll
        for (int j = 0; j < 4; j++) xv[j] = j < cnt ? xr[i0 + j] : 0.0f;
        if (drop.mask) dropout_group(drop, stream, (size_t)r * in + i0, cnt, xv);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (j >= cnt) break;
            const float *wr = w + (size_t)(i0 + j) * out;
#pragma unroll
            for (int o = 0; o < NARROW_OUT; o++)
                if (o < out) acc[o] = fmaf(xv[j], wr[o], acc[o]);
        }
    }
#pragma unroll
    for (int o = 0; o < NARROW_OUT; o++) red[o][t] = acc[o];
    __syncthreads();
    for (int s = NARROW_THREADS / 2; s > 0; s >>= 1) {
        if (t < s)
            for (int o = 0; o < out; o++) red[o][t] += red[o][t + s];
        __syncthreads();
    }
    if (t < out) {
        const float v = b ? red[t][0] + b[t] : red[t][0];
        y[(size_t)r * out + t] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
}

/* dx[r, i] = sum_o dy[r, o] * w[i, o], o in order; through the dropout (and ReLU) backward where
 * drop.mask is set. 32-bit indices (callers check n*in < 2^31): a 64-bit division is a
 * ~70-instruction subroutine. */
__global__ void dense_narrow_dx_kernel(int n, int in, int out, const float *dy, const float *w,
                                       float *dx, DropIn drop) {
    pdl_wait_and_release();
    const unsigned total = (unsigned)n * (unsigned)in;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += gridDim.x * blockDim.x) {
        const unsigned r = e / (unsigned)in, i = e % (unsigned)in;
        const float *d = dy + (size_t)r * out, *wr = w + (size_t)i * out;
        float s = 0.0f;
        for (int o = 0; o < out; o++) s = fmaf(d[o], wr[o], s);
        if (drop.mask) {
            const bool pass = drop.mask[e] && (!drop.relu_x || drop.relu_x[e] > 0.0f);
            s = pass ? s * drop.scale : 0.0f;
        }
        dx[e] = s;
    }
}

/* dw[i, o] = sum_r x'[r, i] * dy[r, o] and, as row i == in, db[o] = sum_r dy[r, o]: one thread per
 * (i, o), i fastest across threads (coalesced x). Four partial sums over r = 0, 1, 2, 3 mod 4
 * (four independent FMA chains instead of one n long), added as (s0 + s1) + (s2 + s3). */
__global__ void dense_narrow_dw_kernel(int n, int in, int out, const float *x, const float *dy,
                                       float *dw, float *db, DropIn drop) {
    pdl_wait_and_release();
    const unsigned rows = db ? (unsigned)in + 1 : (unsigned)in;
    const unsigned total = rows * (unsigned)out;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += gridDim.x * blockDim.x) {
        const unsigned o = e / rows, i = e % rows;
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const float *dc = dy + o;
        const bool ones = i == (unsigned)in; /* the bias row */
        int r = 0;
        for (; r + 4 <= n; r += 4)
#pragma unroll
            for (int q = 0; q < 4; q++)
                s[q] = fmaf(ones ? 1.0f : dropped_x(x, drop, (size_t)(r + q) * in + i),
                            dc[(size_t)(r + q) * out], s[q]);
        for (; r < n; r++)
            s[r & 3] = fmaf(ones ? 1.0f : dropped_x(x, drop, (size_t)r * in + i),
                            dc[(size_t)r * out], s[r & 3]);
        const float v = (s[0] + s[1]) + (s[2] + s[3]);
        if (!ones) dw[(size_t)i * out + o] = v;
        else db[o] = v;
    }
}

/* The narrow path: forward and backward launches (dense_* and dropout_dense_* below). */
bool narrow_fits(int n, int in, int out) {
    return narrow(n, out) && (size_t)n * in < (1u << 31) && (size_t)(in + 1) * out < (1u << 31);
}

cudaError_t narrow_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                           float *y, int relu, const DropIn &drop, cudaStream_t stream) {
    if (n == 0 || out == 0) return cudaSuccess;
    CNN_KERNEL((unsigned)n, NARROW_THREADS, stream, dense_narrow_fwd_kernel)(in, out, x, w, b, y,
                                                                             relu, drop);
    return launch_status();
}

cudaError_t narrow_backward(int n, int in, int out, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, const DropIn &drop,
                            cudaStream_t stream) {
    if (out == 0) return cudaSuccess;
    if (dx && n > 0 && in > 0) {
        CNN_KERNEL(grid_for((size_t)n * in, 256), 256, stream, dense_narrow_dx_kernel)(
            n, in, out, dy, w, dx, drop);
        cudaError_t e = launch_status();
        if (e != cudaSuccess) return e;
    }
    if (!dw) return cudaSuccess;
    CNN_KERNEL(grid_for((size_t)(in + 1) * out, 128), 128, stream, dense_narrow_dw_kernel)(
        n, in, out, x, dy, dw, db, drop);
    return launch_status();
}

/* A(m,k) = x^T with a row of ones appended (m == in): the GEMM x^T*dy then also gives
 * sum_k dy[k,n], the bias gradient. */
struct XtOnes {
    const float *x;
    int in;
    typedef int Row;
    typedef size_t K;
    __host__ __device__ __forceinline__ Row row(int m) const { return m; }
    __host__ __device__ __forceinline__ K kctx(int k) const { return (size_t)k * in; }
    __device__ __forceinline__ float at(Row m, K k) const { return m < in ? x[k + m] : 1.0f; }
    /* 4 consecutive inputs m (m fastest, in % 4 == 0). The row of ones (m == in, a multiple of
     * 4) is the last row and starts its group: (1, 0, 0, 0). */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool k_fast, int) const {
        return !k_fast && in % 4 == 0 && aligned16(x);
    }
    __device__ __forceinline__ float4 at4(Row m, K k) const {
        if (m >= in) return make_float4(1.0f, 0.0f, 0.0f, 0.0f);
        return *reinterpret_cast<const float4 *>(x + k + m);
    }
};

/* The data gradient where the input is alive (docs/gpu.md item 39; the twin of kernels.h's
 * dense_backward_data_alive): dx[r,i] = dy[r,:] . w[i,:] where x[r,i] > 0, else 0. For dense1,
 * whose input is pool2's output: on MNIST after one epoch ~5% of it is > 0 (bench/
 * relu_sparsity.c), and the pool's backward (or conv2's data gradient from the winners) reads
 * the gradient only there, yet the GEMM computes all of it. A warp takes 32 inputs i of one row
 * r (lane = i: x read coalesced), votes on x > 0, and for each alive i in turn computes the dot
 * product of dy's row (in registers: lane l holds columns 32s + l) with w's row i (4 KB for
 * 1,024 outputs, one coalesced 128-byte load per 32 columns, any alignment; from L2: w is
 * 12.8 MB), then adds the lanes' sums by a butterfly; the lane of i keeps it. Every dx element
 * is written. (Session 12 moved lane l from the float4 columns 128t + 4l .. +3 to 32s + l, so
 * that the CPU twin, which the CPU engine runs too, sums with contiguous vectors.)
 * Cost: one w row per alive entry (~64 MB of L2 reads at batch 100 on MNIST, ~10 us at L2
 * speed); with every entry alive, w is read once per row, ~20x the GEMM's traffic. */
constexpr int DXA_WARPS = 8;
constexpr int DXA_MAX_COLS = 32; /* columns per lane: out <= 32 x 32 = 1,024 */

__global__ void __launch_bounds__(DXA_WARPS * 32)
dense_dx_alive_kernel(int in, int out, const float *x, const float *w, const float *dy,
                      float *dx) {
    pdl_wait_and_release();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r = blockIdx.y, i0 = ((int)blockIdx.x * DXA_WARPS + warp) * 32, i = i0 + lane;
    if (i0 >= in) return; /* the whole warp: the votes and shuffles below need all 32 lanes */
    const bool alive = i < in && x[(size_t)r * in + i] > 0.0f;
    unsigned live = __ballot_sync(0xFFFFFFFFu, alive);
    float res = 0.0f;
    if (live) {
        const int cols = out / 32;
        const float *gr = dy + (size_t)r * out + lane;
        float g[DXA_MAX_COLS];
#pragma unroll
        for (int s = 0; s < DXA_MAX_COLS; s++) g[s] = s < cols ? __ldg(gr + 32 * s) : 0.0f;
        for (; live; live &= live - 1) {
            const int j = __ffs(live) - 1;
            const float *wr = w + (size_t)(i0 + j) * out + lane;
            float acc = 0.0f;
#pragma unroll
            for (int s = 0; s < DXA_MAX_COLS; s++)
                if (s < cols) acc = fmaf(g[s], __ldg(wr + 32 * s), acc);
#pragma unroll
            for (int s = 16; s > 0; s >>= 1) acc += __shfl_sync(0xFFFFFFFFu, acc, lane ^ s);
            if (lane == j) res = acc;
        }
    }
    if (i < in) dx[(size_t)r * in + i] = res;
}

/* Over x's nonzeros (docs/gpu.md item 40; the twins of kernels.h's dense_forward_sparse_input
 * and dense_backward_filter_sparse_input): dense1's input is pool2's output, ~95% zeros on MNIST
 * after the first steps (bench/relu_sparsity.c), yet the GEMMs multiply all of it.
 *
 * Forward: block = (256 output columns, one row r). The block lists row r's nonzeros in
 * ascending i in shared memory (a ballot per warp, the warps' counts added in order), then each
 * thread sums its column over them: acc = fmaf(x[r,i], w[i,j], acc), w's row segment read
 * coalesced (1 KB per warp row, from L2), then + b, then the ReLU: the CPU twin's order. The
 * blocks of one row repeat the listing (out / 256 times; x's row is 12.5 KB for dense1).
 * Cost on MNIST (~166 nonzeros a row): ~166 dependent FMAs a thread; w's rows read ~4 x 166 KB a
 * row from L2 (~66 MB at batch 100). */
constexpr int SPF_THREADS = 256;
constexpr int SPF_MAX_IN = 4096; /* inputs a row may have: the list's shared memory, 32 KB */

__global__ void __launch_bounds__(SPF_THREADS)
dense_sparse_fwd_kernel(int in, int out, const float *x, const float *w, const float *b,
                        float *y, int relu) {
    pdl_wait_and_release();
    __shared__ int sidx[SPF_MAX_IN];
    __shared__ float sval[SPF_MAX_IN];
    __shared__ int wcount[SPF_THREADS / 32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, r = blockIdx.y;
    const float *xr = x + (size_t)r * in;
    int total = 0;
    for (int base = 0; base < in; base += SPF_THREADS) {
        const int i = base + tid;
        const float v = i < in ? xr[i] : 0.0f;
        const unsigned live = __ballot_sync(0xFFFFFFFFu, v != 0.0f);
        if (lane == 0) wcount[warp] = __popc(live);
        __syncthreads();
        int at = total;
        for (int q = 0; q < warp; q++) at += wcount[q];
        if (v != 0.0f) {
            const int k = at + __popc(live & ((1u << lane) - 1u));
            sidx[k] = i;
            sval[k] = v;
        }
        for (int q = 0; q < SPF_THREADS / 32; q++) total += wcount[q];
        __syncthreads(); /* wcount is rewritten next round */
    }
    const int j = blockIdx.x * SPF_THREADS + tid;
    if (j >= out) return;
    const float *wj = w + j;
    float acc = 0.0f;
    /* unrolled: 8 of w's loads in flight per thread (the sums stay in order) */
#pragma unroll 8
    for (int k = 0; k < total; k++) acc = fmaf(sval[k], __ldg(wj + (size_t)sidx[k] * out), acc);
    const float v = b ? acc + b[j] : acc;
    y[(size_t)r * out + j] = relu ? (v > 0.0f ? v : 0.0f) : v;
}

/* Filter gradient: block = (256 output columns, 32 inputs i0 .. i0 + 31), 8 warps. First each
 * row's nonzeros among the 32 inputs as a bit mask in shared memory (one coalesced 128-byte
 * load and a ballot per row); then warp w takes the inputs i0 + w, + 8, + 16, + 24 in turn and,
 * for each, walks the rows r ascending whose bit is set: acc[c] = fmaf(x[r,i], dy[r, j_c],
 * acc[c]) for its lane's 8 columns j_c = j0 + lane + 32c (dy's row segment coalesced); then
 * writes dw's row segment (zeros where no row is set). The CPU twin's order. The extra row of
 * blocks (blockIdx.y = the input blocks' count) makes db: thread j, dy[r, j] added r ascending.
 * Cost on MNIST: each warp tests n bits per input and does ~5 rows x 8 FMAs; dw is written
 * once (12.8 MB at dense1's size). */
constexpr int SPW_WARPS = 8;
constexpr int SPW_INPUTS = 32;
constexpr int SPW_COLS = 8;                  /* columns per lane */
constexpr int SPW_BLOCK_COLS = 32 * SPW_COLS; /* 256 */
constexpr int SPW_MAX_N = 4096;              /* rows: the masks' shared memory, 16 KB */

__global__ void __launch_bounds__(SPW_WARPS * 32)
dense_sparse_dw_kernel(int n, int in, int out, const float *x, const float *dy, float *dw,
                       float *db) {
    pdl_wait_and_release();
    __shared__ unsigned rowmask[SPW_MAX_N];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int j0 = blockIdx.x * SPW_BLOCK_COLS;
    const int in_blocks = (in + SPW_INPUTS - 1) / SPW_INPUTS;
    if ((int)blockIdx.y == in_blocks) { /* db */
        for (int j = j0 + (int)threadIdx.x; j < j0 + SPW_BLOCK_COLS && j < out;
             j += SPW_WARPS * 32) {
            float acc = 0.0f; /* in row order, as the CPU's; 8 loads in flight */
#pragma unroll 8
            for (int r = 0; r < n; r++) acc += __ldg(dy + (size_t)r * out + j);
            db[j] = acc;
        }
        return;
    }
    const int i0 = blockIdx.y * SPW_INPUTS;
    for (int r = warp; r < n; r += SPW_WARPS) {
        const int i = i0 + lane;
        const bool nz = i < in && x[(size_t)r * in + i] != 0.0f;
        const unsigned m = __ballot_sync(0xFFFFFFFFu, nz);
        if (lane == 0) rowmask[r] = m;
    }
    __syncthreads();
    for (int ii = warp; ii < SPW_INPUTS; ii += SPW_WARPS) {
        const int i = i0 + ii;
        if (i >= in) break; /* the whole warp */
        float acc[SPW_COLS];
#pragma unroll
        for (int c = 0; c < SPW_COLS; c++) acc[c] = 0.0f;
        for (int r = 0; r < n; r++) {
            if (!(rowmask[r] >> ii & 1u)) continue; /* the same for every lane */
            const float v = x[(size_t)r * in + i];
            const float *g = dy + (size_t)r * out + j0 + lane;
#pragma unroll
            for (int c = 0; c < SPW_COLS; c++)
                if (j0 + lane + 32 * c < out) acc[c] = fmaf(v, g[32 * c], acc[c]);
        }
        float *d = dw + (size_t)i * out + j0 + lane;
#pragma unroll
        for (int c = 0; c < SPW_COLS; c++)
            if (j0 + lane + 32 * c < out) d[32 * c] = acc[c];
    }
}

} /* namespace */

extern "C" int dense_backward_data_alive_ok_cuda(int n, int in, int out) {
    return n >= 0 && n <= 65535 && in >= 0 && dense_backward_data_alive_fits(out);
}

extern "C" cudaError_t dense_backward_data_alive_cuda(int n, int in, int out, const float *x,
                                                      const float *w, const float *dy, float *dx,
                                                      cudaStream_t stream) {
    if (!dense_backward_data_alive_ok_cuda(n, in, out)) return cudaErrorInvalidValue;
    if (n == 0 || in == 0) return cudaSuccess;
    dim3 grid((unsigned)((in + DXA_WARPS * 32 - 1) / (DXA_WARPS * 32)), (unsigned)n);
    CNN_KERNEL(grid, DXA_WARPS * 32, stream, dense_dx_alive_kernel)(in, out, x, w, dy, dx);
    return launch_status();
}

extern "C" int dense_sparse_input_ok_cuda(int n, int in, int out) {
    return n >= 0 && n <= SPW_MAX_N && in >= 0 && in <= SPF_MAX_IN && out >= 0;
}

extern "C" cudaError_t dense_forward_sparse_input_cuda(int n, int in, int out, const float *x,
                                                       const float *w, const float *b, float *y,
                                                       int relu, cudaStream_t stream) {
    if (!dense_sparse_input_ok_cuda(n, in, out)) return cudaErrorInvalidValue;
    if (n == 0 || out == 0) return cudaSuccess;
    dim3 grid((unsigned)((out + SPF_THREADS - 1) / SPF_THREADS), (unsigned)n);
    CNN_KERNEL(grid, SPF_THREADS, stream, dense_sparse_fwd_kernel)(in, out, x, w, b, y, relu);
    return launch_status();
}

extern "C" cudaError_t dense_backward_filter_sparse_input_cuda(int n, int in, int out,
                                                               const float *x, const float *dy,
                                                               float *dw, float *db,
                                                               cudaStream_t stream) {
    if (!dense_sparse_input_ok_cuda(n, in, out)) return cudaErrorInvalidValue;
    if (out == 0 || (in == 0 && !db)) return cudaSuccess;
    const int in_blocks = (in + SPW_INPUTS - 1) / SPW_INPUTS;
    dim3 grid((unsigned)((out + SPW_BLOCK_COLS - 1) / SPW_BLOCK_COLS),
              (unsigned)(in_blocks + (db ? 1 : 0)));
    CNN_KERNEL(grid, SPW_WARPS * 32, stream, dense_sparse_dw_kernel)(n, in, out, x, dy, dw, db);
    return launch_status();
}

extern "C" size_t dense_workspace_floats_cuda(int n, int in, int out) {
    size_t f = gemm::splitk_floats(n, out, in);          /* forward */
    size_t d = gemm::splitk_floats(n, in, out);          /* dx */
    size_t w = gemm::splitk_floats(in + 1, out, n);      /* dw, db */
    size_t mx = f > d ? f : d;
    return mx > w ? mx : w;
}

extern "C" cudaError_t dense_forward_cuda(int n, int in, int out, const float *x, const float *w,
                                          const float *b, float *y, int relu, float *ws,
                                          size_t ws_floats, cudaStream_t stream) {
    if (n < 0 || in < 0 || out < 0) return cudaErrorInvalidValue;
    if (narrow_fits(n, in, out))
        return narrow_forward(n, in, out, x, w, b, y, relu, DropIn{}, stream);
    return gemm::launch<true, true>(n, out, in, gemm::MatA<false>{x, in}, gemm::MatB<false>{w, out},
                                    gemm::StoreBiasRelu{y, b, out, relu}, ws, ws_floats, stream);
}

extern "C" cudaError_t dense_backward_cuda(int n, int in, int out, const float *x, const float *w,
                                           const float *dy, float *dx, float *dw, float *db,
                                           float *ws, size_t ws_floats, cudaStream_t stream) {
    if (n < 0 || in < 0 || out < 0) return cudaErrorInvalidValue;
    if (narrow_fits(n, in, out))
        return narrow_backward(n, in, out, x, w, dy, dx, dw, db, DropIn{}, stream);
    cudaError_t e = cudaSuccess;
    if (dx) {
        /* dx[n,in] = dy[n,out] * w^T: B(k=o, n=i) = w[i*out + o], contiguous along k. */
        e = gemm::launch<true, false>(n, in, out, gemm::MatA<false>{dy, out},
                                      gemm::MatB<true>{w, out}, gemm::StorePlain{dx, in}, ws, ws_floats,
                                      stream);
        if (e != cudaSuccess || !dw) return e;
    }
    if (!dw) return cudaSuccess;
    /* dw[in,out] = x^T * dy (+ db as row `in`): A = x^T, contiguous along m. */
    return gemm::launch<false, true>(db ? in + 1 : in, out, n, XtOnes{x, in},
                                     gemm::MatB<false>{dy, out}, gemm::StoreWeightBias{dw, db, in, out}, ws,
                                     ws_floats, stream);
}

extern "C" int dropout_dense_fits_cuda(int n, int in, int out) {
    return n >= 0 && in >= 0 && out >= 0 && narrow_fits(n, in, out);
}

extern "C" cudaError_t dropout_dense_forward_cuda(int n, int in, int out, float rate,
                                                  uint64_t seed, uint64_t stream_base,
                                                  uint64_t stream_per_step, const int64_t *d_step,
                                                  const float *x, const float *w, const float *b,
                                                  float *y, uint8_t *mask, int relu,
                                                  cudaStream_t stream) {
    if (!dropout_dense_fits_cuda(n, in, out)) return cudaErrorInvalidValue;
    DropIn drop{};
    if (mask)
        drop = DropIn{mask, rate, dropout_scale(rate), seed, stream_base, stream_per_step, d_step,
                      NULL};
    return narrow_forward(n, in, out, x, w, b, y, relu, drop, stream);
}

extern "C" cudaError_t dropout_dense_backward_cuda(int n, int in, int out, float rate,
                                                   const uint8_t *mask, int relu_x, const float *x,
                                                   const float *w, const float *dy, float *dx,
                                                   float *dw, float *db, cudaStream_t stream) {
    if (!dropout_dense_fits_cuda(n, in, out) || !mask) return cudaErrorInvalidValue;
    const DropIn drop{const_cast<uint8_t *>(mask), rate, dropout_scale(rate), 0, 0, 0, NULL,
                      relu_x ? x : NULL};
    return narrow_backward(n, in, out, x, w, dy, dx, dw, db, drop, stream);
}
