/* gemm_cuda.cuh: the one tiled FP32 GEMM every matrix-shaped kernel of kernels/ runs on.
 *
 * C[M,N] = sum_k A(m,k) * B(k,n), where A, B and the store of C are small functors: a plain
 * (possibly transposed) matrix for sgemm/dense, an implicit im2col view of NHWC activations for
 * the convolutions. So conv2d forward, backward-data and backward-filter, dense forward/backward
 * and sgemm share one kernel and one set of bounds checks.
 *
 * Tiling: a block of 256 threads computes a 64x64 tile of C; each thread a 4x4 micro-tile in
 * registers, from 16-deep slices of A and B staged in shared memory (A as As[k][m], B as
 * Bs[k][n], so each thread reads 4 consecutive m and 4 consecutive n as one float4 each). The
 * next slice is loaded into registers while the current one is multiplied.
 * Loads: the functors are called only for (m,k), (k,n) inside the matrix (else 0); the
 * template flags choose which index runs fastest across threads, so that the global loads are
 * coalesced (k fastest when A is contiguous along k, m fastest when along m).
 * Split-K: gridDim.z slices of the reduction write raw partial sums to ws[z][M][N]; a second
 * kernel adds the slices in order z = 0,1,... and applies the store. Each output is an ordered
 * FMA chain, so results are deterministic.
 */
#ifndef KERNELS_GEMM_CUDA_CUH
#define KERNELS_GEMM_CUDA_CUH

#include "kernels/cuda_common.cuh"

namespace gemm {

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int THREADS = (BM / TM) * (BN / TN); /* 256 */
constexpr int A_PER_THREAD = BM * BK / THREADS; /* 4 */
constexpr int B_PER_THREAD = BK * BN / THREADS; /* 4 */
constexpr int PAD = 4; /* keeps rows 16-byte aligned for the float4 reads */

template <bool A_K_FAST, bool B_N_FAST, class ALoad, class BLoad, class Store>
__global__ void __launch_bounds__(THREADS)
gemm_kernel(int M, int N, int K, int k_chunk, ALoad a, BLoad b, Store st, float *partial) {
    __shared__ __align__(16) float As[BK][BM + PAD];
    __shared__ __align__(16) float Bs[BK][BN + PAD];
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int kbeg = blockIdx.z * k_chunk;
    const int kend = min(K, kbeg + k_chunk);

    /* This thread's load coordinates inside a tile (fixed for the whole loop). */
    int am[A_PER_THREAD], ak[A_PER_THREAD], bk[B_PER_THREAD], bn[B_PER_THREAD];
#pragma unroll
    for (int i = 0; i < A_PER_THREAD; i++) {
        int e = tid + i * THREADS;
        am[i] = A_K_FAST ? e / BK : e % BM;
        ak[i] = A_K_FAST ? e % BK : e / BM;
    }
#pragma unroll
    for (int i = 0; i < B_PER_THREAD; i++) {
        int e = tid + i * THREADS;
        bn[i] = B_N_FAST ? e % BN : e / BK;
        bk[i] = B_N_FAST ? e / BN : e % BK;
    }

    float ra[A_PER_THREAD], rb[B_PER_THREAD];
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < A_PER_THREAD; i++) {
            int m = m0 + am[i], k = k0 + ak[i];
            ra[i] = (m < M && k < kend) ? a(m, k) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < B_PER_THREAD; i++) {
            int n = n0 + bn[i], k = k0 + bk[i];
            rb[i] = (n < N && k < kend) ? b(k, n) : 0.0f;
        }
    };

    const int tx = tid % (BN / TN), ty = tid / (BN / TN);
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;

    if (kbeg < kend) load(kbeg);
    for (int k0 = kbeg; k0 < kend; k0 += BK) {
#pragma unroll
        for (int i = 0; i < A_PER_THREAD; i++) As[ak[i]][am[i]] = ra[i];
#pragma unroll
        for (int i = 0; i < B_PER_THREAD; i++) Bs[bk[i]][bn[i]] = rb[i];
        __syncthreads();
        if (k0 + BK < kend) load(k0 + BK); /* in flight while this slice is multiplied */
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float4 av = *reinterpret_cast<const float4 *>(&As[kk][ty * TM]);
            float4 bv = *reinterpret_cast<const float4 *>(&Bs[kk][tx * TN]);
            float ar[TM] = {av.x, av.y, av.z, av.w};
            float br[TN] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; i++) {
        int m = m0 + ty * TM + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int n = n0 + tx * TN + j;
            if (n >= N) continue;
            if (partial)
                partial[(size_t)blockIdx.z * M * N + (size_t)m * N + n] = acc[i][j];
            else
                st(m, n, acc[i][j]);
        }
    }
}

/* Sums the split-K slices in order and stores. */
template <class Store>
__global__ void splitk_reduce_kernel(int M, int N, int splits, const float *partial, Store st) {
    size_t total = (size_t)M * N;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < splits; z++) s += partial[(size_t)z * total + i];
        st((int)(i / N), (int)(i % N), s);
    }
}

/* How many slices the reduction of an M x N x K product is split into: enough blocks for two
 * waves on this GPU, each slice at least 4 k-steps long, at most 64 slices, and no more than
 * the scratch holds. */
static inline int choose_splits(int M, int N, int K, size_t ws_floats) {
    long long tiles = (long long)((M + BM - 1) / BM) * ((N + BN - 1) / BN);
    long long want = (2LL * device_sm_count() + tiles - 1) / tiles;
    long long by_k = K / (4 * BK);
    long long by_ws = (M > 0 && N > 0) ? (long long)(ws_floats / ((size_t)M * N)) : 0;
    long long s = want;
    if (s > by_k) s = by_k;
    if (s > 64) s = 64;
    if (s > by_ws) s = by_ws;
    return s < 1 ? 1 : (int)s;
}

/* Scratch (floats) that lets choose_splits split as far as it wants. */
static inline size_t splitk_floats(int M, int N, int K) {
    int s = choose_splits(M, N, K, (size_t)-1 / 2);
    return s > 1 ? (size_t)s * M * N : 0;
}

template <bool A_K_FAST, bool B_N_FAST, class ALoad, class BLoad, class Store>
static cudaError_t launch(int M, int N, int K, ALoad a, BLoad b, Store st, float *ws,
                          size_t ws_floats, cudaStream_t stream) {
    if (M <= 0 || N <= 0) return cudaSuccess;
    if (K < 0) return cudaErrorInvalidValue;
    int splits = ws ? choose_splits(M, N, K, ws_floats) : 1;
    int k_chunk = K;
    if (splits > 1) {
        k_chunk = (K + splits - 1) / splits;
        k_chunk = (k_chunk + BK - 1) / BK * BK;
        splits = (K + k_chunk - 1) / k_chunk; /* no empty slices */
    }
    if (k_chunk == 0) k_chunk = BK;
    dim3 grid((unsigned)((M + BM - 1) / BM), (unsigned)((N + BN - 1) / BN), (unsigned)splits);
    if (grid.y > 65535u) return cudaErrorInvalidConfiguration;
    gemm_kernel<A_K_FAST, B_N_FAST><<<grid, THREADS, 0, stream>>>(M, N, K, k_chunk, a, b, st,
                                                                  splits > 1 ? ws : nullptr);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || splits == 1) return e;
    splitk_reduce_kernel<<<grid_for((size_t)M * N, 256), 256, 0, stream>>>(M, N, splits, ws, st);
    return cudaGetLastError();
}

/* ---- plain row-major matrices ------------------------------------------------------------- */
/* A(m,k) of op(A): A[M,K] or, transposed, stored [K,M]. */
template <bool TRANS>
struct MatA {
    const float *p;
    int ld;
    __device__ __forceinline__ float operator()(int m, int k) const {
        return TRANS ? p[(size_t)k * ld + m] : p[(size_t)m * ld + k];
    }
};
/* B(k,n) of op(B): B[K,N] or, transposed, stored [N,K]. */
template <bool TRANS>
struct MatB {
    const float *p;
    int ld;
    __device__ __forceinline__ float operator()(int k, int n) const {
        return TRANS ? p[(size_t)n * ld + k] : p[(size_t)k * ld + n];
    }
};

/* ---- stores shared by the layers ---------------------------------------------------------- */
/* y[m,n] = acc (row-major, leading dimension ld). */
struct StorePlain {
    float *y;
    int ld;
    __device__ __forceinline__ void operator()(int m, int n, float acc) const {
        y[(size_t)m * ld + n] = acc;
    }
};

/* y[m,n] = acc + b[n] (b may be NULL), then max(., 0) when relu: a layer's bias and ReLU. */
struct StoreBiasRelu {
    float *y;
    const float *b;
    int ld, relu;
    __device__ __forceinline__ void operator()(int m, int n, float acc) const {
        float v = b ? acc + b[n] : acc;
        y[(size_t)m * ld + n] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
};

/* Weight-gradient GEMMs whose A has an extra row of ones: rows m < rows go to dw[rows,ld],
 * row `rows` (the column sums of dy) to db[ld]. */
struct StoreWeightBias {
    float *dw, *db;
    int rows, ld;
    __device__ __forceinline__ void operator()(int m, int n, float acc) const {
        if (m < rows)
            dw[(size_t)m * ld + n] = acc;
        else
            db[n] = acc;
    }
};

} /* namespace gemm */

#endif /* KERNELS_GEMM_CUDA_CUH */
