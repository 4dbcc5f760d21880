/* gemm_cuda.cuh: the one tiled FP32 GEMM every matrix-shaped kernel of kernels/ runs on.
 *
 * C[M,N] = sum_k A(m,k) * B(k,n), where A, B and the store of C are small functors: a plain
 * (possibly transposed) matrix for sgemm/dense, an implicit im2col view of NHWC activations for
 * the convolutions. So conv2d forward, backward-data and backward-filter, dense forward/backward
 * and sgemm share one kernel and one set of bounds checks.
 *
 * Tiling: a block of 256 threads computes a BM x BN tile of C (64x64, 64x32, 128x64, 128x32 or,
 * from version 3, 256x32, by shape: choose_tile; 128x128 when forced); each thread a TM x TN
 * micro-tile in registers,
 * from 16-deep slices of A and B staged
 * in shared memory (A as As[k][m], B as Bs[k][n], so each thread reads its TM consecutive m and
 * TN consecutive n as float4/float2 vectors). The next slice is loaded into registers while the
 * current one is multiplied, then stored into the other of two shared buffers: one barrier per
 * slice (GEMM versions 2 and 3; version 1, the first GPU run's kernel: one buffer, two barriers).
 * Loads: A is read as A(m,k) = a.at(a.row(m), a.kctx(k)): row() and kctx() only compute (any
 * m, k) the per-row and per-column parts of the address (an image pixel's base and window
 * origin, a filter tap's offset), once per thread and once per slice; at() combines them and
 * is called only inside the matrix (else 0). B is read as b(k,n). The template flags choose
 * which index runs fastest across threads, so that the global loads are coalesced (k fastest
 * when A is contiguous along k, m fastest when along m).
 * Version 5 (MMA) multiplies each slice on the tensor cores instead, three TF32 products per
 * float32 product (mma_tf32.cuh), from its own shared-memory layout (MmaTile); loads, split-K
 * and stores are version 4's.
 * Split-K: gridDim.z slices of the reduction write raw partial sums to ws[z][M][N]; a second
 * kernel adds the slices in order z = 0,1,... and applies the store. Each output is an ordered
 * FMA chain, so results are deterministic.
 */
#ifndef KERNELS_GEMM_CUDA_CUH
#define KERNELS_GEMM_CUDA_CUH

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/mma_tf32.cuh"

namespace gemm {

constexpr int BK = 16;
constexpr int THREADS = 256;
constexpr int PAD = 4; /* keeps rows 16-byte aligned for the vector reads */

/* A tile configuration: a BM x BN block tile, TM x TN outputs per thread, 256 threads, and
 * MIN_BLOCKS blocks resident per multiprocessor (__launch_bounds__: 2 caps a thread at 128
 * registers; 1 lets the 64 accumulators of 8x8 run without spills). */
template <int BM_, int BN_, int TM_, int TN_, int MIN_BLOCKS_ = 2>
struct Tile {
    static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_, MIN_BLOCKS = MIN_BLOCKS_;
    static_assert((BM / TM) * (BN / TN) == THREADS, "256 threads per block");
    static_assert(BM * BK % THREADS == 0 && BK * BN % THREADS == 0, "whole loads per thread");
    static_assert(TM % 4 == 0 && (TN == 2 || TN % 4 == 0), "vector reads of the micro-tile");
    static constexpr int A_PER_THREAD = BM * BK / THREADS;
    static constexpr int B_PER_THREAD = BK * BN / THREADS;
};
using Tile64x64 = Tile<64, 64, 4, 4>;   /* small or square problems */
using Tile128x64 = Tile<128, 64, 8, 4>; /* many rows: twice the FMAs per shared-memory read */
using Tile128x32 = Tile<128, 32, 8, 2>; /* many rows, 32 columns (conv1, conv2's data grad) */
using Tile64x32 = Tile<64, 32, 4, 2>;   /* few rows, few columns (conv1's filter grad, dense2) */
/* Version 3 (CNN_GEMM_V=3): 32 columns with 8x4 per thread (12 shared-memory reads per 32 FMAs
 * instead of 10 per 16): long reductions into 32 channels (conv2's data gradient). */
using Tile256x32 = Tile<256, 32, 8, 4>;
/* 128x128 at 8x8 per thread (16 FMAs per shared-memory read, the classic large-SGEMM tile):
 * only when forced (CNN_GEMM_TILE=128x128), for the benchmark's tile sweep, until a GPU run
 * says where it pays. Its B columns are split in two halves (see col_of) so that the vector
 * reads of a quarter-warp hit distinct banks. */
using Tile128x128 = Tile<128, 128, 8, 8, 1>;
/* 256x64 at 8x8 (forced only, like 128x128): the 8x8 micro-tile for 64-column outputs (conv2's
 * forward and filter gradient). */
using Tile256x64 = Tile<256, 64, 8, 8, 1>;

/* The column inside the block tile of a thread's j-th output (tx = its column group): TN
 * consecutive columns, or for TN == 8 two runs of 4, BN/2 apart (eight consecutive threads'
 * float4 reads then cover 32 consecutive words instead of two 16-word halves of 64). */
template <int BN, int TN>
__host__ __device__ __forceinline__ int col_of(int tx, int j) {
    if constexpr (TN == 8) return (j / 4) * (BN / 2) + tx * 4 + j % 4;
    return tx * TN + j;
}

/* Reads n consecutive floats of a shared-memory row (16-byte aligned for n % 4 == 0, 8 for 2). */
template <int NV>
__device__ __forceinline__ void read_row(const float *p, float *out) {
    if constexpr (NV % 4 == 0) {
#pragma unroll
        for (int v = 0; v < NV / 4; v++) {
            float4 q = reinterpret_cast<const float4 *>(p)[v];
            out[4 * v] = q.x;
            out[4 * v + 1] = q.y;
            out[4 * v + 2] = q.z;
            out[4 * v + 3] = q.w;
        }
    } else {
        float2 q = *reinterpret_cast<const float2 *>(p);
        out[0] = q.x;
        out[1] = q.y;
    }
}

/* GEMM version 5: the block tile's products on the tensor cores (mma_tf32.cuh, 3xTF32), one
 * warp tile of 32 rows x WTN columns per warp: the 8 warps as WM x WN, WM = BM / 32. A warp
 * tile is 2 x NJ mma tiles of 16x8 (NJ = WTN / 8).
 * Rows and columns are permuted inside the warp tile so that each lane ends up with whole runs
 * of the output: lane (g, t) (g = lane / 4, t = lane % 4) holds rows 4g .. 4g+3 (mma tile mi's
 * row 8h + g is tile row 4g + 2mi + h) and columns 2NJ t .. 2NJ t + 2NJ-1 (mma column 8j + c
 * is tile column NJ c + j): a 4 x 2NJ micro-tile whose rows are one 2x2 pooling window, so the
 * FMA loop's epilogue, the pooling store included, works unchanged.
 * Shared memory is laid out so that each fragment is one vector read (no register moves before
 * the mma, which needs each fragment in consecutive registers): per 8-deep k step, a row per
 * t = k % 4 holding, for each pair of tile rows (2p, 2p+1), the 4 floats
 * A(2p, t), A(2p+1, t), A(2p, t+4), A(2p+1, t+4) = a0..a3 of the mma tile that pair belongs to;
 * B likewise with column pairs (b0, b1 of two adjacent columns). The 16-byte groups of a row are
 * swizzled (group ^ swz(t)) so that the reads of a quarter-warp (t = 0..3, g = 0..1) hit 8
 * distinct groups of 4 banks. The 8x8 tiles (NJ = 8) stay on the FMA loop. */
template <class T>
struct MmaTile {
    static constexpr int WM = T::BM / 32, WN = WM > 0 && 8 % WM == 0 ? 8 / WM : 1;
    static constexpr int WTN = T::BN / WN, NJ = WTN / 8;
    static constexpr bool OK = T::BM % 32 == 0 && WM >= 1 && WM <= 8 && 8 % WM == 0 &&
                               T::BN % WN == 0 && WTN % 8 == 0 && (NJ == 1 || NJ == 2 || NJ == 4);
    /* The swizzles: a quarter-warp reads groups {q, q + 2} ^ swz (A; B with NJ = 4: lanes g = 0,
     * 1 are 2 groups apart) or {q, q + 1} ^ swz (B with NJ <= 2): swz(t) makes the 4 t's pairs
     * disjoint in the 8 groups of 32 banks. */
    static __host__ __device__ __forceinline__ int swz_a(int t) { return (t & 1) | (t & 2) << 1; }
    static __host__ __device__ __forceinline__ int swz_b(int t) {
        return NJ == 4 ? swz_a(t) : 2 * t;
    }
    /* Offset inside one k-slice (16 deep: rows 4 (k / 8) + k % 4, each 2 BM or 2 BN floats) of
     * the 4-float group of row pair p (rows 2p, 2p+1) or column pair p at k8 = k / 8, t = k % 4.
     * The fragment reads call these with run-time t and p (the compiler cannot split a run-time
     * k or m into them for free: one version of conv2's data gradient spilled). */
    static __host__ __device__ __forceinline__ int a_group(int p, int k8, int t) {
        return (4 * k8 + t) * 2 * T::BM + 4 * (p ^ swz_a(t));
    }
    static __host__ __device__ __forceinline__ int b_group(int p, int k8, int t) {
        return (4 * k8 + t) * 2 * T::BN + 4 * (p ^ swz_b(t));
    }
    /* A(m, k) and B(k, n), m and n inside the block tile: in a group, A(2p, k), A(2p+1, k),
     * A(2p, k+4), A(2p+1, k+4); B(k, 2p), B(k+4, 2p), B(k, 2p+1), B(k+4, 2p+1). */
    static __host__ __device__ __forceinline__ int a_at(int m, int k) {
        return a_group(m / 2, k / 8, k % 4) + m % 2 + 2 * (k % 8 / 4);
    }
    static __host__ __device__ __forceinline__ int b_at(int k, int n) {
        return b_group(n / 2, k / 8, k % 4) + 2 * (n % 2) + k % 8 / 4;
    }
};

/* A Store with POOL4 = true stores whole 2x2 pooling windows: store4(m, n, v0, v1, v2, v3)
 * for rows m..m+3 (m % 4 == 0) of column n, instead of operator()(m, n, v) per element. */
template <class S, class = void>
struct is_pool4 {
    static constexpr bool value = false;
};
template <class S>
struct is_pool4<S, decltype(void(S::POOL4))> {
    static constexpr bool value = S::POOL4;
};

template <class T, bool A_K_FAST, bool B_N_FAST, bool DOUBLE_BUF, bool VEC, bool MMA, class ALoad,
          class BLoad, class Store, bool SLICE_FOLD = false>
__global__ void __launch_bounds__(THREADS, T::MIN_BLOCKS)
gemm_kernel(int M, int N, int K, int k_chunk, ALoad a, BLoad b, Store st, float *partial) {
    pdl_wait_and_release();
    constexpr int BM = T::BM, BN = T::BN, TM = T::TM, TN = T::TN;
    static_assert(!MMA || (MmaTile<T>::OK && VEC && DOUBLE_BUF), "version 5 is version 4's loop");
    /* SLICE_FOLD (GEMM version 6): version 5 with each 16-deep slice's six mmas per mma tile
     * summed into zeros and added into acc once per slice, not once per 8-deep k-step: half the
     * float32 adds, for 8 more live registers per mma tile, so only where a warp tile has at
     * most 2 mma tiles across (NJ <= 2: 16 registers; NJ = 4's 32 would spill). */
    static_assert(!SLICE_FOLD || (MMA && MmaTile<T>::NJ <= 2), "version 6: NJ <= 2 tiles");
    /* MMA (GEMM version 5): the products on the tensor cores (MmaTile); each thread's outputs
     * are then a ETM x ETN micro-tile as in the FMA loop, at other places (row_in_tile,
     * col_in_tile), and the epilogue is the same. */
    constexpr int NJ = MmaTile<T>::NJ;
    constexpr int ETM = MMA ? 4 : TM, ETN = MMA ? 2 * NJ : TN;
    constexpr int AP = T::A_PER_THREAD, BP = T::B_PER_THREAD;
    /* With k fastest a thread loads AP rows at one k per slice, else one row at AP k's (256 is a
     * multiple of BK and of BM): the row and k index work is done once per row / per k. */
    static_assert(THREADS % BK == 0 && THREADS % BM == 0, "fixed k or fixed row per thread");
    /* VEC (GEMM version 4, where both loaders allow it: launch_tile): the loads are 16-byte
     * vectors of 4 elements along each operand's contiguous dimension (k for A when A_K_FAST,
     * else m; n for B when B_N_FAST, else k), so a quarter of the load instructions and of the
     * per-element index and padding tests, which the SASS of versions 1-3 shows to be most of
     * the main loop's non-FMA instructions. Groups of 4 along k never straddle the matrix or a
     * split-K slice (launch_tile requires K % 4 == 0; slices are multiples of BK); along n
     * neither (N % 4 == 0); along m only where the loader's vec4() says its at4() reads the
     * rows past M as 0 (the weight gradients' row of ones), else vec4() requires M % 4 == 0. */
    constexpr int AG = BM * BK / 4, BG = BN * BK / 4;             /* 4-groups per slice */
    constexpr int AP4 = (AG + THREADS - 1) / THREADS, BP4 = (BG + THREADS - 1) / THREADS;
    constexpr int A_ROWS = VEC ? (A_K_FAST ? AP4 : 1) : (A_K_FAST ? AP : 1);
    /* DOUBLE_BUF (GEMM versions 2 and 3): two buffers, slice s+1 is stored into one while slice
     * s is read from the other, so one barrier per slice suffices. Else (version 1, the first GPU
     * run's kernel) one buffer and two barriers per slice. The arithmetic is the same. */
    constexpr int NBUF = DOUBLE_BUF ? 2 : 1;
    /* MMA: the same floats in MmaTile's layout (As[buf][0] + MmaTile::a_at(m, k)) */
    __shared__ __align__(16) float As[NBUF][BK][BM + (MMA ? 0 : PAD)];
    __shared__ __align__(16) float Bs[NBUF][BK][BN + (MMA ? 0 : PAD)];
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int kbeg = blockIdx.z * k_chunk;
    const int kend = min(K, kbeg + k_chunk);

    /* This thread's load coordinates inside a tile: element e = tid + i*THREADS (constants
     * apart from tid, so they cost nothing per slice). */
    auto a_m = [&](int i) {
        int e = tid + i * THREADS;
        return A_K_FAST ? e / BK : e % BM;
    };
    auto a_k = [&](int i) {
        int e = tid + i * THREADS;
        return A_K_FAST ? e % BK : e / BM;
    };
    auto b_n = [&](int i) {
        int e = tid + i * THREADS;
        return B_N_FAST ? e % BN : e / BK;
    };
    auto b_k = [&](int i) {
        int e = tid + i * THREADS;
        return B_N_FAST ? e / BN : e % BK;
    };
    /* VEC: group g = tid + i*THREADS (g < AG, BG) covers 4 elements from (a4_m, a4_k) along
     * the operand's contiguous dimension. */
    auto a4_m = [&](int i) {
        int g = tid + i * THREADS;
        return A_K_FAST ? g / (BK / 4) : (g % (BM / 4)) * 4;
    };
    auto a4_k = [&](int i) {
        int g = tid + i * THREADS;
        return A_K_FAST ? (g % (BK / 4)) * 4 : g / (BM / 4);
    };
    auto b4_n = [&](int i) {
        int g = tid + i * THREADS;
        return B_N_FAST ? (g % (BN / 4)) * 4 : g / (BK / 4);
    };
    auto b4_k = [&](int i) {
        int g = tid + i * THREADS;
        return B_N_FAST ? g / (BN / 4) : (g % (BK / 4)) * 4;
    };
    auto a4_live = [&](int i) { return AG % THREADS == 0 || tid + i * THREADS < AG; };
    auto b4_live = [&](int i) { return BG % THREADS == 0 || tid + i * THREADS < BG; };

    /* Row contexts, for the whole reduction. Rows and k's past the matrix are clamped into it
     * (their loads are masked), so the index arithmetic stays inside the tensors' ranges. */
    typename ALoad::Row arow[A_ROWS];
#pragma unroll
    for (int r = 0; r < A_ROWS; r++)
        arow[r] = a.row(min(m0 + (VEC ? a4_m(r) : a_m(r)), M - 1));

    float ra[VEC ? 1 : AP], rb[VEC ? 1 : BP];
    /* (zeroed only to quiet GCC on the emulator: every element stage() reads is loaded) */
    float4 ra4[VEC ? AP4 : 1] = {}, rb4[VEC ? BP4 : 1] = {};
    const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    auto load = [&](int k0) {
        if constexpr (VEC) {
#pragma unroll
            for (int i = 0; i < AP4; i++) {
                if (!a4_live(i)) continue;
                const int m = m0 + a4_m(i), k = k0 + a4_k(i);
                /* A_K_FAST: row m, k..k+3; else rows m..m+3 at k (a group reaching past M only
                 * where the loader's vec4() allows it, which then reads those rows as 0) */
                ra4[i] = m < M && k < kend
                             ? a.at4(arow[A_K_FAST ? i : 0], a.kctx(min(k, K - 1)))
                             : zero4;
            }
#pragma unroll
            for (int i = 0; i < BP4; i++) {
                if (!b4_live(i)) continue;
                const int n = n0 + b4_n(i), k = k0 + b4_k(i);
                rb4[i] = n < N && k < kend ? b.at4(b.col(min(n, N - 1)), b.kctx(min(k, K - 1)))
                                           : zero4;
            }
        } else {
            if constexpr (A_K_FAST) {
                const int k = k0 + a_k(0);
                const typename ALoad::K kc = a.kctx(min(k, K - 1));
#pragma unroll
                for (int i = 0; i < AP; i++) {
                    int m = m0 + a_m(i);
                    ra[i] = (m < M && k < kend) ? a.at(arow[i], kc) : 0.0f;
                }
            } else {
                const int m = m0 + a_m(0);
#pragma unroll
                for (int i = 0; i < AP; i++) {
                    int k = k0 + a_k(i);
                    ra[i] = (m < M && k < kend) ? a.at(arow[0], a.kctx(min(k, K - 1))) : 0.0f;
                }
            }
#pragma unroll
            for (int i = 0; i < BP; i++) {
                int n = n0 + b_n(i), k = k0 + b_k(i);
                rb[i] = (n < N && k < kend) ? b.at(b.col(n), b.kctx(k)) : 0.0f;
            }
        }
    };

    const int tx = tid % (BN / TN), ty = tid / (BN / TN);
    /* MMA: the warp's tile (wm, wn) and the lane's group g and index t in it (MmaTile) */
    const int warp = tid / 32, lane_g = tid % 32 / 4, lane_t = tid % 4;
    const int wm = warp / MmaTile<T>::WN, wn = warp % MmaTile<T>::WN;
    /* Where output (i, j) of this thread's micro-tile lies in the block tile. */
    auto row_in_tile = [&](int i) { return MMA ? wm * 32 + 4 * lane_g + i : ty * TM + i; };
    auto col_in_tile = [&](int j) {
        return MMA ? wn * MmaTile<T>::WTN + 2 * NJ * lane_t + j : col_of<BN, TN>(tx, j);
    };
    float acc[ETM][ETN];
#pragma unroll
    for (int i = 0; i < ETM; i++)
#pragma unroll
        for (int j = 0; j < ETN; j++) acc[i][j] = 0.0f;

    auto stage = [&](int buf) {
        if constexpr (MMA) { /* MmaTile's layout (MMA implies VEC) */
            using L = MmaTile<T>;
            float *as = &As[buf][0][0], *bs = &Bs[buf][0][0];
#pragma unroll
            for (int i = 0; i < AP4; i++) {
                if (!a4_live(i)) continue;
                const int m = a4_m(i), k = a4_k(i);
                if constexpr (A_K_FAST) { /* row m at k .. k+3: four rows of the layout */
                    as[L::a_at(m, k + 0)] = ra4[i].x;
                    as[L::a_at(m, k + 1)] = ra4[i].y;
                    as[L::a_at(m, k + 2)] = ra4[i].z;
                    as[L::a_at(m, k + 3)] = ra4[i].w;
                } else { /* rows m .. m+3 at k: two row pairs, 8 bytes each */
                    *reinterpret_cast<float2 *>(&as[L::a_at(m, k)]) =
                        make_float2(ra4[i].x, ra4[i].y);
                    *reinterpret_cast<float2 *>(&as[L::a_at(m + 2, k)]) =
                        make_float2(ra4[i].z, ra4[i].w);
                }
            }
#pragma unroll
            for (int i = 0; i < BP4; i++) {
                if (!b4_live(i)) continue;
                const int n = b4_n(i), k = b4_k(i);
                if constexpr (B_N_FAST) { /* columns n .. n+3 at k */
                    bs[L::b_at(k, n + 0)] = rb4[i].x;
                    bs[L::b_at(k, n + 1)] = rb4[i].y;
                    bs[L::b_at(k, n + 2)] = rb4[i].z;
                    bs[L::b_at(k, n + 3)] = rb4[i].w;
                } else { /* column n at k .. k+3 */
                    bs[L::b_at(k + 0, n)] = rb4[i].x;
                    bs[L::b_at(k + 1, n)] = rb4[i].y;
                    bs[L::b_at(k + 2, n)] = rb4[i].z;
                    bs[L::b_at(k + 3, n)] = rb4[i].w;
                }
            }
        } else if constexpr (VEC) {
#pragma unroll
            for (int i = 0; i < AP4; i++) {
                if (!a4_live(i)) continue;
                if constexpr (A_K_FAST) { /* 4 k's of one row: a column of As */
                    As[buf][a4_k(i) + 0][a4_m(i)] = ra4[i].x;
                    As[buf][a4_k(i) + 1][a4_m(i)] = ra4[i].y;
                    As[buf][a4_k(i) + 2][a4_m(i)] = ra4[i].z;
                    As[buf][a4_k(i) + 3][a4_m(i)] = ra4[i].w;
                } else { /* 4 rows at one k: 16 bytes of a row of As */
                    *reinterpret_cast<float4 *>(&As[buf][a4_k(i)][a4_m(i)]) = ra4[i];
                }
            }
#pragma unroll
            for (int i = 0; i < BP4; i++) {
                if (!b4_live(i)) continue;
                if constexpr (B_N_FAST) {
                    *reinterpret_cast<float4 *>(&Bs[buf][b4_k(i)][b4_n(i)]) = rb4[i];
                } else {
                    Bs[buf][b4_k(i) + 0][b4_n(i)] = rb4[i].x;
                    Bs[buf][b4_k(i) + 1][b4_n(i)] = rb4[i].y;
                    Bs[buf][b4_k(i) + 2][b4_n(i)] = rb4[i].z;
                    Bs[buf][b4_k(i) + 3][b4_n(i)] = rb4[i].w;
                }
            }
        } else {
#pragma unroll
            for (int i = 0; i < AP; i++) As[buf][a_k(i)][a_m(i)] = ra[i];
#pragma unroll
            for (int i = 0; i < BP; i++) Bs[buf][b_k(i)][b_n(i)] = rb[i];
        }
    };
    if (kbeg < kend) {
        load(kbeg);
        stage(0);
    }
    __syncthreads();
    int buf = 0;
    for (int k0 = kbeg; k0 < kend; k0 += BK, buf ^= NBUF - 1) {
        const bool more = k0 + BK < kend;
        if (more) load(k0 + BK); /* global loads in flight while this slice is multiplied */
        if constexpr (MMA) {
            /* Two k-steps of 8; each fragment one vector read in MmaTile's layout; each operand
             * split into TF32 hi and lo (mma_tf32.cuh). acc[2mi + h][q NJ + j] is mma tile
             * (mi, j)'s c[2h + q]. */
            using L = MmaTile<T>;
            const float *as = &As[buf][0][0], *bs = &Bs[buf][0][0];
            /* SLICE_FOLD: mma tile (mi, j)'s sums over the slice */
            [[maybe_unused]] float cs[SLICE_FOLD ? 2 : 1][SLICE_FOLD ? NJ : 1][4];
#pragma unroll
            for (int k8 = 0; k8 < BK; k8 += 8) {
                /* the fragments' k is k8 + t; k + 4 sits beside it (h = 0) */
                /* a0..a3 of mma tile mi: rows 4g + 2mi, 4g + 2mi + 1 at k and k + 4 */
                float4 av[2];
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
                    av[mi] = *reinterpret_cast<const float4 *>(
                        &as[L::a_group(wm * 16 + 2 * lane_g + mi, k8 / 8, lane_t)]);
                /* b0, b1 of mma tile j at bv[2j], bv[2j+1]: column wn WTN + NJ g + j */
                float bv[2 * NJ];
                if constexpr (NJ == 1) { /* column g: one half of column pair g / 2's group */
                    const float2 v = *reinterpret_cast<const float2 *>(
                        &bs[L::b_group(wn * L::WTN / 2 + lane_g / 2, k8 / 8, lane_t) +
                            2 * (lane_g % 2)]);
                    bv[0] = v.x;
                    bv[1] = v.y;
                } else { /* NJ / 2 column pairs' groups: b0, b1 of two columns each */
#pragma unroll
                    for (int q = 0; q < NJ / 2; q++) {
                        const float4 v = *reinterpret_cast<const float4 *>(
                            &bs[L::b_group(wn * L::WTN / 2 + NJ / 2 * lane_g + q, k8 / 8, lane_t)]);
                        bv[4 * q] = v.x;
                        bv[4 * q + 1] = v.y;
                        bv[4 * q + 2] = v.z;
                        bv[4 * q + 3] = v.w;
                    }
                }
                uint32_t a_hi[2][4], a_lo[2][4], b_hi[NJ][2], b_lo[NJ][2];
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    tf32_split(av[mi].x, &a_hi[mi][0], &a_lo[mi][0]);
                    tf32_split(av[mi].y, &a_hi[mi][1], &a_lo[mi][1]);
                    tf32_split(av[mi].z, &a_hi[mi][2], &a_lo[mi][2]);
                    tf32_split(av[mi].w, &a_hi[mi][3], &a_lo[mi][3]);
                }
#pragma unroll
                for (int j = 0; j < NJ; j++) {
                    tf32_split(bv[2 * j], &b_hi[j][0], &b_lo[j][0]);
                    tf32_split(bv[2 * j + 1], &b_hi[j][1], &b_lo[j][1]);
                }
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
#pragma unroll
                    for (int j = 0; j < NJ; j++) {
                        /* The three mmas sum into zeros, then one float32 add (rounded to
                         * nearest) takes them into acc: the tensor cores cut each mma's sum
                         * toward zero (mma_tf32.cuh), and chained through acc the cuts add
                         * up (GPU run 5: 300 mmas, conv2's 800 taps, drifted 7e-5 below the
                         * CPU's sums of ~9; 1.6e-5 of the output against a tolerance of 1e-5).
                         * Cut on 8 products only, then added as float32 adds: ~3e-6 in a model
                         * of the hardware's rounding (tests/emu's mma), below float32's own
                         * reordered sum (7e-6). A partial accumulator folded every few slices
                         * would add fewer FADDs but 32 live registers: spills at 8x4 per
                         * thread under the 128-register cap (version 6 folds once per slice
                         * where that costs 16 or fewer: SLICE_FOLD). */
                        if constexpr (SLICE_FOLD) {
                            float *c = cs[mi][j];
                            if (k8 == 0) c[0] = c[1] = c[2] = c[3] = 0.0f;
                            mma_m16n8k8_3xtf32(c, a_hi[mi], a_lo[mi], b_hi[j], b_lo[j]);
                        } else {
                            float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                            mma_m16n8k8_3xtf32(c, a_hi[mi], a_lo[mi], b_hi[j], b_lo[j]);
                            acc[2 * mi][j] += c[0];
                            acc[2 * mi][NJ + j] += c[1];
                            acc[2 * mi + 1][j] += c[2];
                            acc[2 * mi + 1][NJ + j] += c[3];
                        }
                    }
            }
            if constexpr (SLICE_FOLD) {
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
#pragma unroll
                    for (int j = 0; j < NJ; j++) {
                        acc[2 * mi][j] += cs[mi][j][0];
                        acc[2 * mi][NJ + j] += cs[mi][j][1];
                        acc[2 * mi + 1][j] += cs[mi][j][2];
                        acc[2 * mi + 1][NJ + j] += cs[mi][j][3];
                    }
            }
        } else {
#pragma unroll
            for (int kk = 0; kk < BK; kk++) {
                float ar[TM], br[TN];
                read_row<TM>(&As[buf][kk][ty * TM], ar);
                if constexpr (TN == 8) {
                    read_row<4>(&Bs[buf][kk][tx * 4], br);
                    read_row<4>(&Bs[buf][kk][BN / 2 + tx * 4], br + 4);
                } else {
                    read_row<TN>(&Bs[buf][kk][tx * TN], br);
                }
#pragma unroll
                for (int i = 0; i < TM; i++)
#pragma unroll
                    for (int j = 0; j < TN; j++) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
            }
        }
        if constexpr (DOUBLE_BUF) {
            /* The other buffer was last read in the previous slice, before the last barrier. */
            if (more) stage(buf ^ 1);
            __syncthreads();
        } else {
            __syncthreads(); /* everyone is done reading the buffer */
            if (more) stage(0);
            __syncthreads();
        }
    }

    if constexpr (is_pool4<Store>::value) {
        /* A pooling store: rows 4i..4i+3 are one pooling window (the loader orders them so);
         * a thread's TM (4 or 8) consecutive rows hold whole windows. Never split (launch_tile). */
#pragma unroll
        for (int i = 0; i < ETM; i += 4) {
            int m = m0 + row_in_tile(i);
            if (m >= M) continue; /* M is a multiple of 4 */
#pragma unroll
            for (int j = 0; j < ETN; j++) {
                int n = n0 + col_in_tile(j);
                if (n < N) st.store4(m, n, acc[i][j], acc[i + 1][j], acc[i + 2][j], acc[i + 3][j]);
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < ETM; i++) {
            int m = m0 + row_in_tile(i);
            if (m >= M) continue;
#pragma unroll
            for (int j = 0; j < ETN; j++) {
                int n = n0 + col_in_tile(j);
                if (n >= N) continue;
                if (partial)
                    partial[(size_t)blockIdx.z * M * N + (size_t)m * N + n] = acc[i][j];
                else
                    st(m, n, acc[i][j]);
            }
        }
    }
}

/* Sums the split-K slices in order and stores. */
template <class Store>
__global__ void splitk_reduce_kernel(int M, int N, int splits, const float *partial, Store st) {
    pdl_wait_and_release();
    size_t total = (size_t)M * N;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < splits; z++) s += partial[(size_t)z * total + i];
        st((int)(i / N), (int)(i % N), s);
    }
}

/* CNN_GEMM_BUILT: the versions whose kernels are compiled, bit v for version v (default 1-6).
 * The CUDA emulator's sanitizer build (tests/emu) compiles those it runs, 2-5, as versions 1
 * and 6 cost a third of its compile time; a request for a version not compiled fails its
 * launch (cudaErrorNotSupported). Versions 2 and 3 share one kernel, which versions 4-6 also
 * take where vector loads do not apply; version 4's kernel serves 5 and 6 where the tile has no
 * tensor-core layout, and version 5's serves 6 where its fold would spill. */
#ifndef CNN_GEMM_BUILT
#define CNN_GEMM_BUILT 0x7E
#endif
constexpr bool gemm_built(int v) { return (CNN_GEMM_BUILT >> v & 1) != 0; }
static_assert(gemm_built(2) && gemm_built(4) && gemm_built(5), "the kernels others fall back on");

/* CNN_GEMM_V: 1 = the kernel and tile rules of the first GPU run (one shared buffer);
 * 2 = double-buffered shared memory, version 1's tiles; 3 = double buffers and version 3's
 * tile rules in choose_tile (the default of GPU runs 2 and 3); 4 = version 3 with 16-byte
 * vector loads wherever both operands allow them (gemm_kernel's VEC; the default of GPU run 4);
 * 5 (the default since run 4) = version 4 with the block tile's products on the tensor cores at
 * float32 accuracy (3xTF32, mma_tf32.cuh; MmaTile) where version 4's vector loads apply and the
 * tile is not an 8x8 one, else version 4, and its own tile rules (choose_tile). Run 4 (H100),
 * against version 4: conv2's three passes 3-20% faster at batch 100 and 18-23% at 1000, dense1
 * 29% faster at 1000 (at 100 its forward the same, its backward 10% slower); the step 5% faster
 * at batch 100 and 16% at 1000. Its
 * sums are float32-class (every GEMM test at 1e-5 of the CPU on the GPU) but not version 4's
 * bits. 6 (a candidate, not yet timed) = version 5 with each slice's mma sums added into the
 * accumulators once per 16-deep slice rather than per 8-deep k-step, where the warp tile is at
 * most 2 mma tiles across (gemm_kernel's SLICE_FOLD), else version 5.
 * Versions 1 and 2 give the same bits, and so do 3 and 4. Read at every launch (a host
 * getenv), so a test compares them in one process; a captured graph keeps the version it was
 * captured with. */
static inline int gemm_version(void) {
    const char *v = getenv("CNN_GEMM_V");
    if (v && strcmp(v, "1") == 0) return 1;
    if (v && strcmp(v, "2") == 0) return 2;
    if (v && strcmp(v, "3") == 0) return 3;
    if (v && strcmp(v, "4") == 0) return 4;
    if (v && strcmp(v, "6") == 0) return 6;
    return 5;
}

enum TileKind {
    TILE_64x64, TILE_128x64, TILE_128x32, TILE_64x32, TILE_256x32, TILE_128x128, TILE_256x64
};

/* CNN_GEMM_TILE forces one tile for every GEMM (the benchmarks' tile sweep; read at every
 * launch): 64 or 64x64, 128x64, 128x32, 64x32, 256x32, 128x128, 256x64. Returns 0 when
 * unset. */
static inline int forced_tile(TileKind *t) {
    const char *v = getenv("CNN_GEMM_TILE");
    if (!v || !*v) return 0;
    static const struct { const char *name; TileKind kind; } names[] = {
        {"64", TILE_64x64},     {"64x64", TILE_64x64},   {"128x64", TILE_128x64},
        {"128x32", TILE_128x32}, {"64x32", TILE_64x32},   {"256x32", TILE_256x32},
        {"128x128", TILE_128x128}, {"256x64", TILE_256x64}};
    for (const auto &n : names)
        if (strcmp(v, n.name) == 0) {
            *t = n.kind;
            return 1;
        }
    return 0;
}

/* The tile for a problem: 128-row tiles once there are enough rows to fill the GPU with them,
 * 32 columns when N is that narrow (half the wasted columns for N = 10 or 32).
 * Version 3 adds: (a) N <= 32 with many rows and a long reduction: 256x32 tiles at 8x4 per
 * thread (fewer tiles, which choose_splits then splits over K to fill the GPU); (b) wide
 * outputs (N >= 512) with few rows whose 64x64 tiles fit one wave of block slots: 128x64 tiles
 * (8x4 per thread) split over K instead of 64x64 (4x4): the dense layers. Everything else as
 * versions 1 and 2.
 * Version 5 (the tensor cores) changes three of them, from run 4's tile sweep under version 5
 * (H100, bench_kernels_cuda --sweep; docs/gpu.md, run 4): with its loop 2-3x shorter, a block
 * of 8 warps finishes a tile sooner, and at batch 100 more, smaller blocks beat fewer, larger
 * ones. Between 2048 and 65536 rows (conv2 at batch 100: 19,600; at 1000 it has 196,000):
 * (c) 33-64 columns: 64x64 instead of 128x64 (conv2's forward 77.5 -> 67.1 us);
 * (d) the 256x32 case of (a): 128x32, split at least 4 ways (choose_splits; conv2's data
 *     gradient 77.9 -> 72.2 us: 616 blocks instead of 231);
 * and (e) in (b), 128x32 where those tiles split 4 ways still fit one wave (dense1's forward at
 * batch 100: 32 tiles split 8 ways, 32.9 -> 28.8 us; at batch 1000, 256 tiles, (b) stays).
 * From run 5's sweep (H200): (f) mid-sized row counts, more than 64 columns and a short
 * reduction (K < 256: a batch of under 256 reduced): 64x64, unsplit, not 128x64 (dense1's
 * filter gradient at batch 100, 3136 x 1024 x 100: 40.5 -> 29.2 us; 784 tiles fill three
 * waves of the 264 block slots, where 400 left the second of two half empty). */
static inline bool v5_mid_rows(int M) { return M >= 2048 && M < 65536; }
/* (d)'s problems: also what choose_splits splits at least 4 ways */
static inline bool v5_narrow_mid(int M, int N, int K) {
    return gemm_version() >= 5 && v5_mid_rows(M) && N <= 32 && K >= 256;
}
static inline TileKind choose_tile(int M, int N, int K) {
    TileKind forced;
    if (forced_tile(&forced)) return forced;
    const int version = gemm_version();
    if (v5_narrow_mid(M, N, K)) return TILE_128x32;                    /* (d) */
    if (version >= 5 && v5_mid_rows(M) && N > 32 && N <= 64) return TILE_64x64; /* (c) */
    if (version >= 5 && v5_mid_rows(M) && N > 64 && K < 256) return TILE_64x64;  /* (f) */
    if (version >= 3) {
        if (M >= 2048 && N <= 32 && K >= 256) return TILE_256x32;
        long long tiles64 = (long long)((M + 63) / 64) * ((N + 63) / 64);
        if (M < 2048 && N >= 512 && tiles64 <= 2LL * device_sm_count()) {
            long long tiles128x32 = (long long)((M + 127) / 128) * ((N + 31) / 32);
            if (version >= 5 && 4 * tiles128x32 <= 2LL * device_sm_count()) return TILE_128x32;
            return TILE_128x64;
        }
    }
    if (M < 2048) return N <= 32 ? TILE_64x32 : TILE_64x64;
    return N <= 32 ? TILE_128x32 : TILE_128x64;
}
static inline int tile_rows(TileKind t) {
    if (t == TILE_64x64 || t == TILE_64x32) return 64;
    return t == TILE_256x32 || t == TILE_256x64 ? 256 : 128;
}
static inline int tile_cols(TileKind t) {
    return t == TILE_128x32 || t == TILE_64x32 || t == TILE_256x32 ? 32
           : t == TILE_128x128                                     ? 128
                                                                   : 64;
}

/* How many slices the reduction of an M x N x K product is split into: as many as fit the
 * GPU's block slots (two 256-thread blocks per multiprocessor) in one wave, each slice at least
 * 4 k-steps long, at most 128 slices, and no more than the scratch holds. A problem with as
 * many tiles as slots is not split. */
static inline int choose_splits(int M, int N, int K, size_t ws_floats) {
    TileKind t = choose_tile(M, N, K);
    long long tiles = (long long)((M + tile_rows(t) - 1) / tile_rows(t)) *
                      ((N + tile_cols(t) - 1) / tile_cols(t));
    long long want = 2LL * device_sm_count() / tiles;
    /* choose_tile's (d): version 5's 128x32 tiles on mid-sized row counts split at least 4
     * ways (run 4, conv2's data gradient at batch 100: 1, 2, 3, 4, 6 slices 97.1, 85.1, 73.6,
     * 72.2, 71.6 us) */
    if (t == TILE_128x32 && v5_narrow_mid(M, N, K) && want < 4) want = 4;
    long long by_k = K / (4 * BK);
    long long by_ws = (M > 0 && N > 0) ? (long long)(ws_floats / ((size_t)M * N)) : 0;
    long long s = want;
    /* CNN_GEMM_SPLITS=n forces n slices (the tile sweep), at least one k-step each. */
    const char *forced = getenv("CNN_GEMM_SPLITS");
    if (forced && atoi(forced) > 0) {
        s = atoi(forced);
        by_k = (K + BK - 1) / BK;
    }
    if (s > by_k) s = by_k;
    if (s > 128) s = 128;
    if (s > by_ws) s = by_ws;
    return s < 1 ? 1 : (int)s;
}

/* Scratch (floats) that lets choose_splits split as far as it wants. */
static inline size_t splitk_floats(int M, int N, int K) {
    int s = choose_splits(M, N, K, (size_t)-1 / 2);
    return s > 1 ? (size_t)s * M * N : 0;
}

template <class T, bool A_K_FAST, bool B_N_FAST, class ALoad, class BLoad, class Store>
static cudaError_t launch_tile(int M, int N, int K, ALoad a, BLoad b, Store st, float *ws,
                               size_t ws_floats, cudaStream_t stream) {
    /* a pooling store needs the whole sums in the GEMM's own epilogue: never split */
    int splits = ws && !is_pool4<Store>::value ? choose_splits(M, N, K, ws_floats) : 1;
    int k_chunk = K;
    if (splits > 1) {
        k_chunk = (K + splits - 1) / splits;
        k_chunk = (k_chunk + BK - 1) / BK * BK;
        splits = (K + k_chunk - 1) / k_chunk; /* no empty slices */
    }
    if (k_chunk == 0) k_chunk = BK;
    dim3 grid((unsigned)((M + T::BM - 1) / T::BM), (unsigned)((N + T::BN - 1) / T::BN),
              (unsigned)splits);
    if (grid.y > 65535u) return cudaErrorInvalidConfiguration;
    float *partial = splits > 1 ? ws : nullptr;
    const int version = gemm_version();
    if (!gemm_built(version)) return cudaErrorNotSupported;
    bool launched = false;
    if constexpr (ALoad::HAS_VEC4 && BLoad::HAS_VEC4) {
        /* Version 4: vector loads where both operands allow them (see gemm_kernel's VEC). */
        const bool k_groups = A_K_FAST || !B_N_FAST;
        if (version >= 4 && a.vec4(A_K_FAST, M) && b.vec4(B_N_FAST) &&
            (!k_groups || K % 4 == 0) && (!B_N_FAST || N % 4 == 0)) {
            if constexpr (MmaTile<T>::OK) {
                /* Version 5: version 4's loads with the tensor cores' 3xTF32 products;
                 * version 6 folds their sums once per slice where the tile allows it. */
                if constexpr (MmaTile<T>::NJ <= 2 && gemm_built(6)) {
                    if (version >= 6) {
                        CNN_KERNEL(grid, THREADS, stream,
                                   gemm_kernel<T, A_K_FAST, B_N_FAST, true, true, true, ALoad,
                                               BLoad, Store, true>)(M, N, K, k_chunk, a, b, st,
                                                                    partial);
                        launched = true;
                    }
                }
                if (version >= 5 && !launched) {
                    CNN_KERNEL(grid, THREADS, stream,
                               gemm_kernel<T, A_K_FAST, B_N_FAST, true, true, true, ALoad, BLoad,
                                           Store>)(M, N, K, k_chunk, a, b, st, partial);
                    launched = true;
                }
            }
            if (!launched)
                CNN_KERNEL(grid, THREADS, stream,
                           gemm_kernel<T, A_K_FAST, B_N_FAST, true, true, false, ALoad, BLoad,
                                       Store>)(M, N, K, k_chunk, a, b, st, partial);
            launched = true;
        }
    }
    if constexpr (gemm_built(1)) {
        if (!launched && version == 1) {
            CNN_KERNEL(grid, THREADS, stream,
                       gemm_kernel<T, A_K_FAST, B_N_FAST, false, false, false, ALoad, BLoad,
                                   Store>)(M, N, K, k_chunk, a, b, st, partial);
            launched = true;
        }
    }
    if (!launched)
        CNN_KERNEL(grid, THREADS, stream,
                   gemm_kernel<T, A_K_FAST, B_N_FAST, true, false, false, ALoad, BLoad, Store>)(
            M, N, K, k_chunk, a, b, st, partial);
    cudaError_t e = cudaGetLastError();
    if constexpr (!is_pool4<Store>::value) {
        if (e != cudaSuccess || splits == 1) return e;
        CNN_KERNEL(grid_for((size_t)M * N, 256), 256, stream, splitk_reduce_kernel<Store>)(
            M, N, splits, ws, st);
        return cudaGetLastError();
    }
    return e;
}

template <bool A_K_FAST, bool B_N_FAST, class ALoad, class BLoad, class Store>
static cudaError_t launch(int M, int N, int K, ALoad a, BLoad b, Store st, float *ws,
                          size_t ws_floats, cudaStream_t stream) {
    if (M <= 0 || N <= 0) return cudaSuccess;
    if (K < 0) return cudaErrorInvalidValue;
    switch (choose_tile(M, N, K)) {
    case TILE_128x128:
        return launch_tile<Tile128x128, A_K_FAST, B_N_FAST>(M, N, K, a, b, st, ws, ws_floats,
                                                            stream);
    case TILE_256x64:
        return launch_tile<Tile256x64, A_K_FAST, B_N_FAST>(M, N, K, a, b, st, ws, ws_floats,
                                                           stream);
    case TILE_256x32:
        return launch_tile<Tile256x32, A_K_FAST, B_N_FAST>(M, N, K, a, b, st, ws, ws_floats,
                                                           stream);
    case TILE_128x64:
        return launch_tile<Tile128x64, A_K_FAST, B_N_FAST>(M, N, K, a, b, st, ws, ws_floats,
                                                           stream);
    case TILE_128x32:
        return launch_tile<Tile128x32, A_K_FAST, B_N_FAST>(M, N, K, a, b, st, ws, ws_floats,
                                                           stream);
    case TILE_64x32:
        return launch_tile<Tile64x32, A_K_FAST, B_N_FAST>(M, N, K, a, b, st, ws, ws_floats,
                                                          stream);
    default:
        return launch_tile<Tile64x64, A_K_FAST, B_N_FAST>(M, N, K, a, b, st, ws, ws_floats,
                                                          stream);
    }
}

/* ---- plain row-major matrices ------------------------------------------------------------- */
/* A(m,k) of op(A): A[M,K] or, transposed, stored [K,M]: row and column offsets add up. */
template <bool TRANS>
struct MatA {
    const float *p;
    int ld;
    typedef size_t Row;
    typedef size_t K;
    __host__ __device__ __forceinline__ Row row(int m) const {
        return TRANS ? (size_t)m : (size_t)m * ld;
    }
    __host__ __device__ __forceinline__ K kctx(int k) const {
        return TRANS ? (size_t)k * ld : (size_t)k;
    }
    __device__ __forceinline__ float at(Row r, K k) const { return p[r + k]; }
    /* 4 consecutive elements along the contiguous dimension: k (plain), m (transposed; whole
     * groups only: M % 4 == 0). */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool k_fast, int M) const {
        return k_fast == !TRANS && ld % 4 == 0 && aligned16(p) &&
               (k_fast || M % 4 == 0);
    }
    __device__ __forceinline__ float4 at4(Row r, K k) const {
        return *reinterpret_cast<const float4 *>(p + r + k);
    }
};
/* B(k,n) of op(B): B[K,N] or, transposed, stored [N,K]. Read as B(k,n) = b.at(b.col(n),
 * b.kctx(k)): col() and kctx() compute the per-column and per-k parts of the address (as
 * MatA's row() and kctx()), so the kernel can make each once per column / per k. */
template <bool TRANS>
struct MatB {
    const float *p;
    int ld;
    typedef size_t Col;
    typedef size_t K;
    __host__ __device__ __forceinline__ Col col(int n) const {
        return TRANS ? (size_t)n * ld : (size_t)n;
    }
    __host__ __device__ __forceinline__ K kctx(int k) const {
        return TRANS ? (size_t)k : (size_t)k * ld;
    }
    __device__ __forceinline__ float at(Col c, K k) const { return p[c + k]; }
    /* 4 consecutive elements along the contiguous dimension: n (plain), k (transposed). */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool n_fast) const {
        return n_fast == !TRANS && ld % 4 == 0 && aligned16(p);
    }
    __device__ __forceinline__ float4 at4(Col c, K k) const {
        return *reinterpret_cast<const float4 *>(p + c + k);
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
