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
 * order). Deterministic; CNN_DENSE_V=1 keeps the GEMM (the before of the benchmarks). */
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_cuda.cuh"
#include "kernels/kernels_cuda.h"

namespace {

constexpr int NARROW_OUT = 16;     /* the narrow path's widest layer (registers per thread) */
constexpr int NARROW_THREADS = 128;

/* CNN_DENSE_V: 1 = the GEMM for every layer; 2 (the default) = the narrow kernels for out <= 16.
 * Read at every launch. */
bool narrow(int out) {
    const char *v = getenv("CNN_DENSE_V");
    return out <= NARROW_OUT && !(v && strcmp(v, "1") == 0);
}

/* y[r, :] for one row r per block: thread t sums x[r,i] * w[i,:] over i = t, t + 128, ...; the
 * threads' sums are added in a fixed tree; then bias and ReLU as the GEMM's store. */
__global__ void __launch_bounds__(NARROW_THREADS)
dense_narrow_fwd_kernel(int in, int out, const float *x, const float *w, const float *b, float *y,
                        int relu) {
    pdl_wait_and_release();
    __shared__ float red[NARROW_OUT][NARROW_THREADS];
    const int r = blockIdx.x, t = threadIdx.x;
    float acc[NARROW_OUT];
#pragma unroll
    for (int o = 0; o < NARROW_OUT; o++) acc[o] = 0.0f;
    const float *xr = x + (size_t)r * in;
    for (int i = t; i < in; i += NARROW_THREADS) {
        const float xv = xr[i];
        const float *wr = w + (size_t)i * out;
#pragma unroll
        for (int o = 0; o < NARROW_OUT; o++)
            if (o < out) acc[o] = fmaf(xv, wr[o], acc[o]);
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

/* dx[r, i] = sum_o dy[r, o] * w[i, o], o in order. 32-bit indices (callers check n*in < 2^31):
 * a 64-bit division is a ~70-instruction subroutine. */
__global__ void dense_narrow_dx_kernel(int n, int in, int out, const float *dy, const float *w,
                                       float *dx) {
    pdl_wait_and_release();
    const unsigned total = (unsigned)n * (unsigned)in;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += gridDim.x * blockDim.x) {
        const unsigned r = e / (unsigned)in, i = e % (unsigned)in;
        const float *d = dy + (size_t)r * out, *wr = w + (size_t)i * out;
        float s = 0.0f;
        for (int o = 0; o < out; o++) s = fmaf(d[o], wr[o], s);
        dx[e] = s;
    }
}

/* dw[i, o] = sum_r x[r, i] * dy[r, o] and, as row i == in, db[o] = sum_r dy[r, o]: one thread per
 * (i, o), i fastest across threads (coalesced x). Four partial sums over r = 0, 1, 2, 3 mod 4
 * (four independent FMA chains instead of one n long), added as (s0 + s1) + (s2 + s3). */
__global__ void dense_narrow_dw_kernel(int n, int in, int out, const float *x, const float *dy,
                                       float *dw, float *db) {
    pdl_wait_and_release();
    const unsigned rows = db ? (unsigned)in + 1 : (unsigned)in;
    const unsigned total = rows * (unsigned)out;
    for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += gridDim.x * blockDim.x) {
        const unsigned o = e / rows, i = e % rows;
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const float *xc = x + i, *dc = dy + o;
        const bool ones = i == (unsigned)in; /* the bias row */
        int r = 0;
        for (; r + 4 <= n; r += 4)
#pragma unroll
            for (int q = 0; q < 4; q++)
                s[q] = fmaf(ones ? 1.0f : xc[(size_t)(r + q) * in], dc[(size_t)(r + q) * out], s[q]);
        for (; r < n; r++) s[r & 3] = fmaf(ones ? 1.0f : xc[(size_t)r * in], dc[(size_t)r * out], s[r & 3]);
        const float v = (s[0] + s[1]) + (s[2] + s[3]);
        if (!ones) dw[(size_t)i * out + o] = v;
        else db[o] = v;
    }
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

} /* namespace */

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
    if (narrow(out) && (size_t)n * in < (1u << 31)) {
        if (n == 0 || out == 0) return cudaSuccess;
        CNN_KERNEL((unsigned)n, NARROW_THREADS, stream, dense_narrow_fwd_kernel)(in, out, x, w, b,
                                                                                 y, relu);
        return launch_status();
    }
    return gemm::launch<true, true>(n, out, in, gemm::MatA<false>{x, in}, gemm::MatB<false>{w, out},
                                    gemm::StoreBiasRelu{y, b, out, relu}, ws, ws_floats, stream);
}

extern "C" cudaError_t dense_backward_cuda(int n, int in, int out, const float *x, const float *w,
                                           const float *dy, float *dx, float *dw, float *db,
                                           float *ws, size_t ws_floats, cudaStream_t stream) {
    if (n < 0 || in < 0 || out < 0) return cudaErrorInvalidValue;
    if (narrow(out) && (size_t)n * in < (1u << 31) && (size_t)(in + 1) * out < (1u << 31)) {
        if (out == 0) return cudaSuccess;
        if (dx && n > 0 && in > 0) {
            CNN_KERNEL(grid_for((size_t)n * in, 256), 256, stream, dense_narrow_dx_kernel)(
                n, in, out, dy, w, dx);
            cudaError_t e = launch_status();
            if (e != cudaSuccess) return e;
        }
        if (!dw) return cudaSuccess;
        CNN_KERNEL(grid_for((size_t)(in + 1) * out, 128), 128, stream, dense_narrow_dw_kernel)(
            n, in, out, x, dy, dw, db);
        return launch_status();
    }
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
