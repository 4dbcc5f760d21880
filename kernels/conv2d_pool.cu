/* conv2d_pool.cu: a conv + bias + ReLU + max pool on the GPU, the twin of
 * kernels/conv2d_pool.c (semantics in kernels.h). The conv output [N,OH,OW,K] is never
 * stored: the forward computes each pooled window's conv values in registers (a first layer's
 * few taps; convs with more taps under a 2x2 pool of stride 2 run as the conv GEMM with the
 * pool in its store, conv2d.cu), the backward takes the filter gradient straight from the
 * pooled gradient and the argmax.
 *
 * Why: in the unfused step the MNIST model's conv1 writes 100 x 28 x 28 x 32 floats (10 MB at
 * batch 100), max-pool reads them, the pool backward writes a gradient of that size and the
 * filter-gradient GEMM reduces over all 78,400 positions of it, three quarters of them zeros
 * (the pool's losers). Here only the winners are read: a quarter of the filter-gradient work,
 * none of the 10 MB passes. The backward serves any conv with its ReLU that feeds only a max
 * pool (core's plan_filter_from_pool: conv2, whose data gradient still needs the pool's
 * backward), with 16-byte pixel groups where C % 32 == 0.
 *
 * Threads: lane = output channel k (32 per warp, so y/argmax/dy accesses are coalesced and the
 * warp's lanes read the same x pixel: a broadcast), warps walk pooled positions. Per thread a
 * group of up to 32 taps (kh,kw,c) lives in registers: the forward's weights w[t][k], the
 * backward's accumulators dw[t][k], and the taps' offsets in x. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

constexpr int WARPS = 4;           /* 128 threads of 64-96 registers: 5-8 blocks per SM */
constexpr int THREADS = WARPS * 32;
constexpr int TAPS = 32;           /* taps per register group */

struct Geo {
    int n, h, w, c, kh, kw, k, sh, sw, pt, pl, oh, ow; /* the conv */
    int pkh, pkw, psh, psw, ppt, ppl, ph, pw;           /* the pool over the conv output */
    int taps;                                           /* kh * kw * c */
    FastDiv d_pw, d_ph, d_k, d_ow, d_oh, d_w, d_psh, d_psw;
};

Geo geo_of(const Conv2dShape *cs, const Pool2dShape *ps) {
    Geo g;
    g.n = cs->n; g.h = cs->h; g.w = cs->w; g.c = cs->c; g.kh = cs->kh; g.kw = cs->kw;
    g.k = cs->k; g.sh = cs->stride_h; g.sw = cs->stride_w; g.pt = cs->pad_top;
    g.pl = cs->pad_left; g.oh = cs->oh; g.ow = cs->ow;
    g.pkh = ps->kh; g.pkw = ps->kw; g.psh = ps->stride_h; g.psw = ps->stride_w;
    g.ppt = ps->pad_top; g.ppl = ps->pad_left; g.ph = ps->oh; g.pw = ps->ow;
    g.taps = cs->kh * cs->kw * cs->c;
    g.d_pw = FastDiv(ps->ow); g.d_ph = FastDiv(ps->oh); g.d_k = FastDiv(cs->k);
    g.d_ow = FastDiv(cs->ow); g.d_oh = FastDiv(cs->oh); g.d_w = FastDiv(cs->w);
    g.d_psh = FastDiv(ps->stride_h); g.d_psw = FastDiv(ps->stride_w);
    return g;
}

bool shapes_ok(const Conv2dShape *cs, const Pool2dShape *ps) {
    return cs->n >= 0 && cs->h > 0 && cs->w > 0 && cs->c > 0 && cs->kh > 0 && cs->kw > 0 &&
           cs->k > 0 && cs->stride_h > 0 && cs->stride_w > 0 && cs->oh > 0 && cs->ow > 0 &&
           cs->pad_top >= 0 && cs->pad_left >= 0 &&
           ps->n == cs->n && ps->h == cs->oh && ps->w == cs->ow && ps->c == cs->k &&
           ps->kh > 0 && ps->kw > 0 && ps->stride_h > 0 && ps->stride_w > 0 && ps->oh > 0 &&
           ps->ow > 0 && ps->pad_top >= 0 && ps->pad_left >= 0 && ps->pad_top < ps->kh &&
           ps->pad_left < ps->kw &&
           /* 32-bit indices: the argmax into the conv output is an int32 */
           (size_t)cs->n * cs->oh * cs->ow * cs->k < (1ull << 31) &&
           (size_t)cs->n * cs->h * cs->w * cs->c < (1ull << 31);
}

/* The taps t0 .. t0+31 of one register group, walked in order (c fastest, then kw, then kh):
 * off = the tap's offset from the window origin's pixel in x, (kh, kw) for the padding test. */
struct TapWalk {
    int off, kh, kw, c;
    __device__ __forceinline__ void start(const Geo &g, int t) {
        c = t % g.c;
        kw = t / g.c % g.kw;
        kh = t / g.c / g.kw;
        off = (kh * g.w + kw) * g.c + c;
    }
    __device__ __forceinline__ void next(const Geo &g) {
        off++;
        if (++c == g.c) {
            c = 0;
            if (++kw == g.kw) {
                kw = 0;
                kh++;
                off += (g.w - g.kw) * g.c;
            }
        }
    }
};

/* p, hidden from the compiler's index arithmetic: without it, nvcc folds x + base and each
 * tap's offset back into x + 4 * (base + off) and spends four instructions per tap on it (a
 * 64-bit add and a 64-bit shift-add); from an opaque 64-bit register each tap's address is one
 * IMAD.WIDE (SASS). A no-op where the .cu is compiled as C++ (the emulator). */
__device__ __forceinline__ const char *opaque(const char *p) {
#if defined(__CUDA_ARCH__)
    asm("mov.b64 %0, %0;" : "+l"(p));
#endif
    return p;
}

/* The window origin of a conv output position and whether all its taps are inside x. */
struct Origin {
    int ih0, iw0;
    bool interior;
};
__device__ __forceinline__ Origin origin_of(const Geo &g, int oh, int ow) {
    Origin o;
    o.ih0 = oh * g.sh - g.pt;
    o.iw0 = ow * g.sw - g.pl;
    o.interior = o.ih0 >= 0 && o.ih0 + g.kh <= g.h && o.iw0 >= 0 && o.iw0 + g.kw <= g.w;
    return o;
}

/* Tap counts compiled in (NT > 0): the unrolled tap loops then carry no per-tap test of the
 * count (the SASS of the run-time count had an ISETP and a 64-bit index add per tap: 7
 * instructions per FMA in the interior loop instead of 3). 5x5 and 3x3 one-channel first
 * layers; NT == 0 is any count up to 32 at run time. */
__host__ __device__ constexpr bool tap_in(int nt, int j, int taps) {
    return nt > 0 ? j < nt : j < taps;
}

/* The conv value of channel k at one output position: acc = fmaf(x_t, w_t, acc) over the taps
 * in order, as the GEMM (kernels/gemm_cuda.cuh) sums: an out-of-image tap is fmaf(0, w, acc),
 * which leaves acc unchanged (acc starts at +0 and a sum is -0 only if both terms are), so it
 * is skipped. NT >= 0: the weights (taps <= 32) are in wr, the tap offsets in off (NT taps, or
 * g.taps when NT == 0); NT < 0: w is read per tap (any tap count, the slow path). */
template <int NT>
__device__ __forceinline__ float conv_value(const Geo &g, const float *x, const float *w, int k,
                                            const float (&wr)[TAPS], const int (&off)[TAPS],
                                            int n, int oh, int ow) {
    constexpr bool REG = NT >= 0;
    const Origin o = origin_of(g, oh, ow);
    /* x[base + off]: base may be negative at the border, base + off of an inside tap is not */
    const long long base = ((long long)(n * g.h + o.ih0) * g.w + o.iw0) * g.c;
    float acc = 0.0f;
    if (REG && o.interior) {
        /* inside the image: every offset is >= 0; byte offsets in 64 bits (see the backward) */
        const char *xb = opaque(reinterpret_cast<const char *>(x + base));
#pragma unroll
        for (int j = 0; j < TAPS; j++)
            if (tap_in(NT, j, g.taps))
                acc = fmaf(__ldg(reinterpret_cast<const float *>(xb + 4LL * off[j])), wr[j], acc);
    } else if (REG) {
        TapWalk t;
        t.start(g, 0);
#pragma unroll
        for (int j = 0; j < TAPS; j++) {
            if (tap_in(NT, j, g.taps)) {
                if ((unsigned)(o.ih0 + t.kh) < (unsigned)g.h &&
                    (unsigned)(o.iw0 + t.kw) < (unsigned)g.w)
                    acc = fmaf(x[base + t.off], wr[j], acc);
                t.next(g);
            }
        }
    } else {
        TapWalk t;
        t.start(g, 0);
        for (int j = 0; j < g.taps; j++, t.next(g))
            if (o.interior || ((unsigned)(o.ih0 + t.kh) < (unsigned)g.h &&
                               (unsigned)(o.iw0 + t.kw) < (unsigned)g.w))
                acc = fmaf(x[base + t.off], w[(size_t)j * g.k + k], acc);
    }
    return acc;
}

/* Forward: block = (a chunk of `per_block` pooled positions, a group of 32 channels). NT as
 * conv_value's. */
template <int NT>
__global__ void __launch_bounds__(THREADS)
conv_pool_fwd_kernel(Geo g, int per_block, const float *x, const float *w, const float *b,
                     float *y, int32_t *argmax) {
    pdl_wait_and_release();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int k = blockIdx.y * 32 + lane;
    if (k >= g.k) return; /* no barriers below */
    float wr[TAPS];
    int off[TAPS];
    if (NT >= 0) {
        TapWalk t;
        t.start(g, 0);
#pragma unroll
        for (int j = 0; j < TAPS; j++) {
            wr[j] = tap_in(NT, j, g.taps) ? w[(size_t)j * g.k + k] : 0.0f;
            off[j] = t.off;
            t.next(g);
        }
    }
    const float bias = b ? b[k] : 0.0f;
    const int total = g.n * g.ph * g.pw;
    const int p_end = min(total, (int)blockIdx.x * per_block + per_block);
    for (int p = (int)blockIdx.x * per_block + warp; p < p_end; p += WARPS) {
        int pw, ph;
        const int n = g.d_ph.divmod(g.d_pw.divmod(p, &pw), &ph);
        const int h0 = ph * g.psh - g.ppt, w0 = pw * g.psw - g.ppl;
        const int hb = max(h0, 0), he = min(h0 + g.pkh, g.oh);
        const int wb = max(w0, 0), we = min(w0 + g.pkw, g.ow);
        float best = 0.0f;
        int at = -1;
        for (int oh = hb; oh < he; oh++)
            for (int ow = wb; ow < we; ow++) {
                float v = conv_value<NT>(g, x, w, k, wr, off, n, oh, ow);
                if (b) v += bias;
                v = v > 0.0f ? v : 0.0f; /* the GEMM epilogue's ReLU */
                if (at < 0 || v > best) {
                    best = v;
                    at = ((n * g.oh + oh) * g.ow + ow) * g.k + k;
                }
            }
        y[(size_t)p * g.k + k] = best;
        argmax[(size_t)p * g.k + k] = at;
    }
}

constexpr int PIXEL_GROUPS = -2;

/* Backward, pass 1: block = (a chunk of pooled positions, 32 channels, 32 taps); each thread
 * sums g * x over its warp's positions for its channel and taps, the warps' sums are added in
 * warp order, and the chunk's partial sums go to partial[chunk][taps*K + K] (db after dw).
 * NT == PIXEL_GROUPS (C % 32 == 0, e.g. conv2's 32 input channels): the 32 taps of a group are
 * 32 consecutive channels of one pixel (kh, kw), so one padding test and eight 16-byte loads
 * serve them (x's rows are 16-byte aligned: C % 4 == 0 and an aligned base); otherwise the taps
 * are walked one by one, NT > 0 being a single group of exactly NT taps (tap_in). */
template <int NT>
__global__ void __launch_bounds__(THREADS)
conv_pool_bwd_filter_kernel(Geo g, int per_block, const float *x, const float *y,
                            const int32_t *argmax, const float *dy, float *partial) {
    pdl_wait_and_release();
    __shared__ float red[WARPS][TAPS + 1][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    constexpr bool PIXEL = NT == PIXEL_GROUPS;
    const int k = blockIdx.y * 32 + lane, t0 = blockIdx.z * TAPS;
    float acc[TAPS], accb = 0.0f;
    int off[TAPS];
    {
        TapWalk t;
        t.start(g, t0 < g.taps ? t0 : 0);
#pragma unroll
        for (int j = 0; j < TAPS; j++) {
            acc[j] = 0.0f;
            off[j] = t.off;
            t.next(g);
        }
    }
    /* PIXEL: the group's pixel, for its one padding test */
    const int pix = t0 / g.c, pkh = pix / g.kw, pkw = pix % g.kw;
    const int total = g.n * g.ph * g.pw;
    const int p_end = min(total, (int)blockIdx.x * per_block + per_block);
    if (k < g.k) {
        for (int p = (int)blockIdx.x * per_block + warp; p < p_end; p += WARPS) {
            const size_t o = (size_t)p * g.k + k;
            if (!(y[o] > 0.0f)) continue; /* the ReLU passed nothing at the winner */
            const float gv = dy[o];
            int ow, oh;
            const int n = g.d_oh.divmod(g.d_ow.divmod(g.d_k.div(argmax[o]), &ow), &oh);
            const Origin org = origin_of(g, oh, ow);
            const long long base = ((long long)(n * g.h + org.ih0) * g.w + org.iw0) * g.c;
            accb += gv;
            if (PIXEL) {
                if ((unsigned)(org.ih0 + pkh) < (unsigned)g.h &&
                    (unsigned)(org.iw0 + pkw) < (unsigned)g.w) {
                    const float4 *xv = reinterpret_cast<const float4 *>(x + base + off[0]);
#pragma unroll
                    for (int q = 0; q < TAPS / 4; q++) {
                        const float4 v = xv[q];
                        acc[4 * q + 0] = fmaf(gv, v.x, acc[4 * q + 0]);
                        acc[4 * q + 1] = fmaf(gv, v.y, acc[4 * q + 1]);
                        acc[4 * q + 2] = fmaf(gv, v.z, acc[4 * q + 2]);
                        acc[4 * q + 3] = fmaf(gv, v.w, acc[4 * q + 3]);
                    }
                }
            } else if (org.interior) {
                /* inside the image: every offset is >= 0. Byte offsets in 64 bits: one 64-bit
                 * add per tap (the compiler's own index arithmetic took four) */
                const char *xb = opaque(reinterpret_cast<const char *>(x + base));
#pragma unroll
                for (int j = 0; j < TAPS; j++)
                    if (tap_in(NT, j, g.taps - t0))
                        acc[j] = fmaf(gv, __ldg(reinterpret_cast<const float *>(xb + 4LL * off[j])),
                                      acc[j]);
            } else {
                TapWalk t;
                t.start(g, t0);
#pragma unroll
                for (int j = 0; j < TAPS; j++) {
                    if (tap_in(NT, j, g.taps - t0)) {
                        if ((unsigned)(org.ih0 + t.kh) < (unsigned)g.h &&
                            (unsigned)(org.iw0 + t.kw) < (unsigned)g.w)
                            acc[j] = fmaf(gv, x[base + t.off], acc[j]);
                        t.next(g);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < TAPS; j++) red[warp][j][lane] = acc[j];
    red[warp][TAPS][lane] = accb;
    __syncthreads();
    const size_t row = (size_t)g.taps * g.k + g.k;
    float *out = partial + (size_t)blockIdx.x * row;
    for (int e = threadIdx.x; e < (TAPS + 1) * 32; e += THREADS) {
        const int j = e >> 5, l = e & 31, kk = blockIdx.y * 32 + l;
        if (kk >= g.k) continue;
        float s = 0.0f;
        for (int v = 0; v < WARPS; v++) s += red[v][j][l];
        if (j < TAPS) {
            if (t0 + j < g.taps) out[(size_t)(t0 + j) * g.k + kk] = s;
        } else if (blockIdx.z == 0) {
            out[(size_t)g.taps * g.k + kk] = s;
        }
    }
}

/* Backward, pass 1, version 2 (CNN_FROM_POOL_V=2; docs/gpu.md item 37): a warp per output
 * channel k and 32 input channels (lane = channel c), for convs with C % 32 == 0 and at most
 * BYC_PIXELS window pixels (conv2: 25 pixels of 32 channels). Why: the winners the ReLU zeroed have
 * nothing to add, and in a trained model most are zero (MNIST: ~5% of conv2's pool winners
 * alive after one epoch, bench/relu_sparsity.c), but version 1's warp covers 32 output
 * channels at one position and skips the position only when all 32 are zero (~40% of them on
 * MNIST). Here a warp takes 32 positions of its channel at a time, one lane each: y, dy and the
 * argmax's window origin, then a vote; each alive position in turn (in position order) is
 * shuffled to every lane, which adds gv * x over the window's pixels for its input channel
 * (one coalesced 128-byte row per pixel) into its BYC_PIXELS accumulators. A dead position
 * costs one lane three loads; an alive one all its multiply-adds, as in version 1.
 * partial[chunk] as version 1's (every tap of channel k written, db in row taps*K + k), summed
 * per tap in position order: deterministic. */
constexpr int BYC_WARPS = 4;
constexpr int BYC_PIXELS = 25;

__global__ void __launch_bounds__(BYC_WARPS * 32)
conv_pool_bwd_filter_by_channel_kernel(Geo g, int per_block, const float *x, const float *y,
                                       const int32_t *argmax, const float *dy, float *partial) {
    pdl_wait_and_release();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int k = blockIdx.y * BYC_WARPS + warp, c = blockIdx.z * 32 + lane;
    const int pixels = g.kh * g.kw;
    float acc[BYC_PIXELS], accb = 0.0f;
    int off[BYC_PIXELS]; /* each window pixel's offset from the origin pixel, in floats */
#pragma unroll
    for (int q = 0; q < BYC_PIXELS; q++) {
        acc[q] = 0.0f;
        off[q] = q < pixels ? (q / g.kw * g.w + q % g.kw) * g.c : 0;
    }
    const int first = (int)blockIdx.x * per_block;
    const int p_end = min(g.n * g.ph * g.pw, first + per_block);
    if (k < g.k) { /* the whole warp: the vote and shuffles below need all 32 lanes */
        /* y, dy and the argmax of the lane's position in the batch; the next batch's are
         * loaded before this one's multiply-adds, so their latency hides behind them (a warp
         * walks per_block / 32 batches: 77 at batch 1000) */
        float yv = 0.0f, gv = 0.0f;
        int am = 0;
        if (first + lane < p_end) {
            const size_t o = (size_t)(first + lane) * g.k + k;
            yv = y[o];
            gv = dy[o];
            am = argmax[o];
        }
        for (int p0 = first; p0 < p_end; p0 += 32) {
            float y_next = 0.0f, g_next = 0.0f;
            int am_next = 0;
            if (p0 + 32 + lane < p_end) {
                const size_t o = (size_t)(p0 + 32 + lane) * g.k + k;
                y_next = y[o];
                g_next = dy[o];
                am_next = argmax[o];
            }
            const bool alive = yv > 0.0f; /* the ReLU passed the winner */
            int ih0 = 0, iw0 = 0, base = 0;
            if (alive) {
                int ow, oh;
                const int n = g.d_oh.divmod(g.d_ow.divmod(g.d_k.div(am), &ow), &oh);
                const Origin org = origin_of(g, oh, ow);
                ih0 = org.ih0;
                iw0 = org.iw0;
                /* may be negative at the border; base + off[q] + c is not for an inside
                 * pixel (shapes_ok: x has < 2^31 floats) */
                base = ((n * g.h + ih0) * g.w + iw0) * g.c;
            }
            for (unsigned live = __ballot_sync(0xFFFFFFFFu, alive); live; live &= live - 1) {
                const int j = __ffs(live) - 1;
                const float gj = __shfl_sync(0xFFFFFFFFu, gv, j);
                const int bj = __shfl_sync(0xFFFFFFFFu, base, j) + c;
                const int hj = __shfl_sync(0xFFFFFFFFu, ih0, j);
                const int wj = __shfl_sync(0xFFFFFFFFu, iw0, j);
                accb += gj;
                if (hj >= 0 && hj + g.kh <= g.h && wj >= 0 && wj + g.kw <= g.w) {
#pragma unroll
                    for (int q = 0; q < BYC_PIXELS; q++)
                        if (q < pixels) acc[q] = fmaf(gj, __ldg(x + bj + off[q]), acc[q]);
                } else {
#pragma unroll
                    for (int q = 0; q < BYC_PIXELS; q++)
                        if (q < pixels && (unsigned)(hj + q / g.kw) < (unsigned)g.h &&
                            (unsigned)(wj + q % g.kw) < (unsigned)g.w)
                            acc[q] = fmaf(gj, x[bj + off[q]], acc[q]);
                }
            }
            yv = y_next;
            gv = g_next;
            am = am_next;
        }
        float *out = partial + (size_t)blockIdx.x * ((size_t)g.taps * g.k + g.k);
#pragma unroll
        for (int q = 0; q < BYC_PIXELS; q++)
            if (q < pixels) out[(size_t)(q * g.c + c) * g.k + k] = acc[q];
        if (blockIdx.z == 0 && lane == 0) out[(size_t)g.taps * g.k + k] = accb;
    }
}

/* Backward, pass 2: dw/db[e] = the chunks' partial sums in chunk order (warp v adds chunks
 * v, v + RW, ..., then the RW warps' sums in warp order): deterministic for a given chunk
 * count. RW = 32 warps where there are many chunks (conv1: ~500 chunks of 832 sums: with 8
 * warps each would add ~65 loads in sequence, latency-bound), 8 where there are few (conv2:
 * 20 chunks of 51,264 sums, 1,602 blocks). */
template <int RW>
__global__ void __launch_bounds__(RW * 32)
conv_pool_reduce_kernel(int chunks, int dw_count, int k, const float *partial, float *dw,
                        float *db) {
    pdl_wait_and_release();
    __shared__ float red[RW][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row = dw_count + k, e = blockIdx.x * 32 + lane;
    float s = 0.0f;
    if (e < row)
        for (int c = warp; c < chunks; c += RW) s += partial[(size_t)c * row + e];
    red[warp][lane] = s;
    __syncthreads();
    if (warp == 0 && e < row) {
        float t = 0.0f;
        for (int v = 0; v < RW; v++) t += red[v][lane];
        if (e < dw_count) dw[e] = t;
        else if (db) db[e - dw_count] = t;
    }
}

/* Pooled positions per backward block: at least 32 (8 per warp), more so that there are at most
 * 4 chunks per SM and at most 1M floats of partial sums (4 MB: conv2's 51,264 sums per chunk
 * would otherwise make the scratch traffic cost more than the sums), and no more than
 * `ws_floats` of them. */
int backward_per_block(const Conv2dShape *cs, const Pool2dShape *ps, size_t ws_floats) {
    const long long total = (long long)ps->n * ps->oh * ps->ow;
    const long long row = (long long)cs->kh * cs->kw * cs->c * cs->k + cs->k;
    long long max_chunks = 4LL * device_sm_count();
    if ((1LL << 20) / row < max_chunks) max_chunks = (1LL << 20) / row;
    if ((long long)(ws_floats / (size_t)row) < max_chunks)
        max_chunks = (long long)(ws_floats / (size_t)row);
    if (max_chunks < 1) max_chunks = 1;
    long long per = (total + max_chunks - 1) / max_chunks;
    if (per < 32) per = 32;
    return (int)per;
}

/* The PIXEL variant's conditions: every 32-tap group is 32 channels of one pixel, and x's
 * pixels start on 16-byte boundaries. */
bool pixel_groups(const Conv2dShape *cs, const float *x) {
    return cs->c % TAPS == 0 && aligned16(x);
}

/* The filter gradient's version (CNN_FROM_POOL_V, read at each launch): 2 (a warp per output
 * channel) where C % 32 == 0 and the window has at most BYC_PIXELS pixels, else 1. */
int from_pool_version(const Conv2dShape *cs) {
    const char *v = getenv("CNN_FROM_POOL_V");
    return v && strcmp(v, "2") == 0 && cs->c % 32 == 0 && cs->kh * cs->kw <= BYC_PIXELS ? 2 : 1;
}

/* The data gradient from the pool's winners (docs/gpu.md item 38): dx of a stride-1 conv whose
 * ReLU output feeds only a max pool of non-overlapping windows, straight from the pool's y,
 * argmax and dy, without the conv output's gradient (three quarters zeros under a 2x2 pool,
 * and on MNIST ~99% after one epoch: bench/relu_sparsity.c) and without the GEMM that reduces
 * over all of it. Only the winners the ReLU passed add anything, and each adds to the pixels
 * its filter window covers.
 *
 * Block = (a band of DFP_ROWS input rows, one image). It stages the pooled outputs of the
 * window rows that reach the band (conv2: 4 rows x 7 x 64 = 1,792) in shared memory: dy where
 * the winner is alive (else 0), the winner's offset in the transposed filter relative to its
 * window's first cell, and per window, 32 channels and cell a bit mask of the alive winners
 * there (four votes per warp of 32 channels). Then a warp per pixel, lane = input channel c
 * (32 at a time): over the windows that reach the pixel in pooled order, the alive winners
 * inside the pixel's reach (the masks of the cells in reach, OR-ed) in channel order; each
 * adds dy * W[kh,kw,c,k], read from a transposed copy of the filter, wt [KH,KW,K,C] (the
 * lanes' 32 channels are one coalesced 128-byte row): two shared-memory broadcasts, a load and
 * an FMA per term, no division. The order is the CPU twin's: the same bits. Every dx element
 * is written (zeros included).
 *
 * Cost: with a fraction a of the winners alive, a pixel of conv2 sees ~9 windows x 64 x a x
 * 25/36 terms (on MNIST, a ~ 0.05: ~20), each a 128-byte L1/L2 row, a shared-memory broadcast
 * and an FMA. With every winner alive (a model's first steps) it is ~400 terms a pixel: about
 * the GEMM's own time, since the GEMM does four times the multiply-adds (the losers' zeros). */
constexpr int DFP_WARPS = 8;
constexpr int DFP_ROWS = 2;        /* input rows per block: 7 blocks an image for conv2, 700 at
                                      batch 100, so that 132 SMs have several blocks each */
constexpr int DFP_ENTRIES = 2048;  /* pooled outputs staged per block; conv2: 1,792 */
constexpr int DFP_CELLS = 4;       /* cells per pool window at most (2x2) */

inline __host__ __device__ int imin(int a, int b) { return a < b ? a : b; }
inline __host__ __device__ int imax(int a, int b) { return a > b ? a : b; }

/* Along one dimension, the conv outputs [*lo, *hi] whose filter window (taps, stride 1, leading
 * padding pad) holds an input in [a, b], clipped to [0, outs) (*lo > *hi: none). */
__host__ __device__ inline void outputs_reaching(int a, int b, int pad, int taps, int outs,
                                                 int *lo, int *hi) {
    *lo = imax(a + pad - (taps - 1), 0);
    *hi = imin(b + pad, outs - 1);
}

/* Input rows [r0, r1] of band b and the window rows [pha, phb] holding the conv rows that reach
 * them (pha > phb: none). */
struct Band {
    int r0, r1, pha, phb;
};
__host__ __device__ inline Band band_of(const Geo &g, int b) {
    Band d;
    d.r0 = b * DFP_ROWS;
    d.r1 = imin(d.r0 + DFP_ROWS, g.h) - 1;
    int oha, ohb;
    outputs_reaching(d.r0, d.r1, g.pt, g.kh, g.oh, &oha, &ohb);
    d.pha = (oha + g.ppt) / g.psh;
    d.phb = imin((ohb + g.ppt) / g.psh, g.ph - 1);
    if (oha > ohb) d.pha = d.phb + 1;
    return d;
}

__global__ void __launch_bounds__(DFP_WARPS * 32)
conv_pool_bwd_data_kernel(Geo g, const float *wt, const float *y, const int32_t *argmax,
                          const float *dy, float *dx) {
    pdl_wait_and_release();
    __shared__ float sg[DFP_ENTRIES];   /* dy where the winner is alive, else 0 */
    __shared__ int soff[DFP_ENTRIES];   /* k*C - (dh*KW + dw)*K*C: the winner's row of wt less
                                           that of the window's first cell */
    __shared__ unsigned smask[DFP_ENTRIES / 32][DFP_CELLS]; /* [window, 32 channels][cell] */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n = blockIdx.y, kgroups = g.k / 32;
    const Band d = band_of(g, (int)blockIdx.x);
    /* the staged outputs: window rows pha..phb of image n, contiguous in memory */
    const int entries = d.phb >= d.pha ? (d.phb - d.pha + 1) * g.pw * g.k : 0;
    const size_t first = ((size_t)(n * g.ph + d.pha) * g.pw) * g.k;
    const int tap_stride = g.k * g.c; /* floats from one filter pixel to the next in wt */
    /* entries % 32 == 0 (K % 32 == 0): a warp's lanes are all in or all out of the loop */
    for (int e = threadIdx.x; e < entries; e += DFP_WARPS * 32) {
        const size_t o = first + (size_t)e;
        const bool alive = y[o] > 0.0f; /* the ReLU passed the winner */
        int cell = -1, off = 0;
        float gv = 0.0f;
        if (alive) {
            int ow, oh, pw, k;
            g.d_oh.divmod(g.d_ow.divmod(g.d_k.div(argmax[o]), &ow), &oh);
            const int ph = d.pha + g.d_pw.divmod(g.d_k.divmod(e, &k), &pw);
            const int dh = oh - (ph * g.psh - g.ppt), dw = ow - (pw * g.psw - g.ppl);
            cell = dh * g.pkw + dw;
            off = k * g.c - (dh * g.kw + dw) * tap_stride;
            gv = dy[o];
        }
        sg[e] = gv;
        soff[e] = off;
#pragma unroll
        for (int q = 0; q < DFP_CELLS; q++) {
            const unsigned bits = __ballot_sync(0xFFFFFFFFu, cell == q);
            if (lane == 0) smask[e >> 5][q] = bits;
        }
    }
    __syncthreads();
    const int pixels = (d.r1 - d.r0 + 1) * g.w;
    for (int pix = warp; pix < pixels; pix += DFP_WARPS) {
        int iw;
        const int ih = d.r0 + g.d_w.divmod(pix, &iw);
        /* the conv outputs whose filter window holds the pixel, and their pool windows */
        int oha, ohb, owa, owb;
        outputs_reaching(ih, ih, g.pt, g.kh, g.oh, &oha, &ohb);
        outputs_reaching(iw, iw, g.pl, g.kw, g.ow, &owa, &owb);
        const int pha = g.d_psh.div(oha + g.ppt), phb = imin(g.d_psh.div(ohb + g.ppt), g.ph - 1);
        const int pwa = g.d_psw.div(owa + g.ppl), pwb = imin(g.d_psw.div(owb + g.ppl), g.pw - 1);
        const bool any = oha <= ohb && owa <= owb;
        float *out = dx + ((size_t)(n * g.h + ih) * g.w + iw) * g.c + lane;
        for (int cg = 0; cg < g.c / 32; cg++) {
            float acc = 0.0f;
            for (int ph = pha; any && ph <= phb; ph++)
                for (int pw = pwa; pw <= pwb; pw++) {
                    const int oh0 = ph * g.psh - g.ppt, ow0 = pw * g.psw - g.ppl;
                    unsigned reach = 0; /* the window's cells inside the pixel's reach */
                    for (int dh = 0, q = 0; dh < g.pkh; dh++)
                        for (int dw = 0; dw < g.pkw; dw++, q++)
                            if (oh0 + dh >= oha && oh0 + dh <= ohb && ow0 + dw >= owa &&
                                ow0 + dw <= owb)
                                reach |= 1u << q;
                    /* wt's row of (kh, kw) = the pixel's tap to the window's first cell, k = 0,
                     * at this lane's input channel; soff moves it to a winner's */
                    const int base = ((ih + g.pt - oh0) * g.kw + (iw + g.pl - ow0)) * tap_stride +
                                     cg * 32 + lane;
                    const int win = (ph - d.pha) * g.pw + pw;
                    for (int kg = 0; kg < kgroups; kg++) {
                        const int group = win * kgroups + kg;
                        unsigned live = 0;
#pragma unroll
                        for (int q = 0; q < DFP_CELLS; q++)
                            if (reach >> q & 1u) live |= smask[group][q];
                        for (; live; live &= live - 1) {
                            const int e = group * 32 + __ffs(live) - 1;
                            acc = fmaf(sg[e], __ldg(wt + base + soff[e]), acc);
                        }
                    }
                }
            out[cg * 32] = acc;
        }
    }
}

/* wt[t][k][c] = w[t][c][k] for the taps' pixels t = (kh, kw): HWIO to HWOI, so that a warp's 32
 * input channels of one (t, k) are one row. 51,200 floats for conv2: a few microseconds. */
__global__ void filter_hwoi_kernel(int pixels, int c, int k, const float *w, float *wt) {
    pdl_wait_and_release();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)pixels * c * k) return;
    const int cc = (int)(i % c), kk = (int)(i / c % k), t = (int)(i / c / k);
    wt[i] = w[((size_t)t * c + cc) * k + kk];
}

} /* namespace */

/* The shapes conv_pool_bwd_data_kernel serves. */
extern "C" int conv2d_relu_maxpool_backward_data_ok_cuda(const Conv2dShape *cs,
                                                         const Pool2dShape *ps) {
    if (!shapes_ok(cs, ps) || cs->stride_h != 1 || cs->stride_w != 1 ||
        ps->stride_h < ps->kh || ps->stride_w < ps->kw || ps->kh * ps->kw > DFP_CELLS ||
        cs->c % 32 != 0 || cs->k % 32 != 0 || cs->n > 65535)
        return 0;
    const Geo g = geo_of(cs, ps);
    for (int b = 0; b * DFP_ROWS < g.h; b++) {
        const Band d = band_of(g, b);
        if (d.phb >= d.pha && (long long)(d.phb - d.pha + 1) * g.pw * g.k > DFP_ENTRIES)
            return 0;
    }
    return 1;
}

extern "C" size_t conv2d_relu_maxpool_backward_data_workspace_floats_cuda(const Conv2dShape *cs) {
    return (size_t)cs->kh * cs->kw * cs->c * cs->k;
}

extern "C" cudaError_t conv2d_relu_maxpool_backward_data_cuda(
    const Conv2dShape *cs, const Pool2dShape *ps, const float *w, const float *y,
    const int32_t *argmax, const float *dy, float *dx, float *ws, size_t ws_floats,
    cudaStream_t stream) {
    if (!conv2d_relu_maxpool_backward_data_ok_cuda(cs, ps)) return cudaErrorInvalidValue;
    const size_t filter = conv2d_relu_maxpool_backward_data_workspace_floats_cuda(cs);
    if (!ws || ws_floats < filter) return cudaErrorInvalidValue;
    if (cs->n == 0) return cudaSuccess;
    const Geo g = geo_of(cs, ps);
    CNN_KERNEL((unsigned)((filter + 255) / 256), 256, stream, filter_hwoi_kernel)(
        cs->kh * cs->kw, cs->c, cs->k, w, ws);
    cudaError_t e = launch_status();
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((g.h + DFP_ROWS - 1) / DFP_ROWS), (unsigned)g.n);
    CNN_KERNEL(grid, DFP_WARPS * 32, stream, conv_pool_bwd_data_kernel)(g, ws, y, argmax, dy, dx);
    return launch_status();
}

extern "C" size_t conv2d_relu_maxpool_workspace_floats_cuda(const Conv2dShape *cs,
                                                            const Pool2dShape *ps) {
    const size_t row = (size_t)cs->kh * cs->kw * cs->c * cs->k + cs->k;
    const long long total = (long long)ps->n * ps->oh * ps->ow;
    const int per = backward_per_block(cs, ps, (size_t)-1 / 2);
    return (size_t)((total + per - 1) / per) * row;
}

extern "C" cudaError_t conv2d_relu_maxpool_forward_cuda(const Conv2dShape *cs,
                                                        const Pool2dShape *ps, const float *x,
                                                        const float *w, const float *b,
                                                        float *y, int32_t *argmax,
                                                        cudaStream_t stream) {
    if (!shapes_ok(cs, ps)) return cudaErrorInvalidValue;
    const int total = ps->n * ps->oh * ps->ow;
    if (total == 0) return cudaSuccess;
    /* More taps than a register group (conv2: 800) under a 2x2 pool of stride 2: the conv GEMM
     * with its rows in window order and the pool in its store (conv2d.cu). */
    if (cs->kh * cs->kw * cs->c > TAPS && conv2d_relu_pool2_gemm_ok(cs, ps))
        return conv2d_relu_pool2_forward_cuda(cs, ps, x, w, b, y, argmax, stream);
    /* 8 pooled positions per warp: each thread loads its weights once for them. */
    const int per_block = WARPS * 8;
    dim3 grid((unsigned)((total + per_block - 1) / per_block), (unsigned)((cs->k + 31) / 32));
    if (grid.y > 65535u) return cudaErrorInvalidConfiguration;
    const Geo g = geo_of(cs, ps);
    if (g.taps == 25)
        CNN_KERNEL(grid, THREADS, stream, conv_pool_fwd_kernel<25>)(g, per_block, x, w, b, y,
                                                                   argmax);
    else if (g.taps == 9)
        CNN_KERNEL(grid, THREADS, stream, conv_pool_fwd_kernel<9>)(g, per_block, x, w, b, y,
                                                                  argmax);
    else if (g.taps <= TAPS)
        CNN_KERNEL(grid, THREADS, stream, conv_pool_fwd_kernel<0>)(g, per_block, x, w, b, y,
                                                                  argmax);
    else
        CNN_KERNEL(grid, THREADS, stream, conv_pool_fwd_kernel<-1>)(g, per_block, x, w, b, y,
                                                                   argmax);
    return launch_status();
}

extern "C" cudaError_t conv2d_relu_maxpool_backward_filter_cuda(
    const Conv2dShape *cs, const Pool2dShape *ps, const float *x, const float *y,
    const int32_t *argmax, const float *dy, float *dw, float *db, float *ws, size_t ws_floats,
    cudaStream_t stream) {
    if (!shapes_ok(cs, ps)) return cudaErrorInvalidValue;
    const Geo g = geo_of(cs, ps);
    const int total = ps->n * ps->oh * ps->ow;
    const int row = g.taps * g.k + g.k;
    const int per_block = backward_per_block(cs, ps, ws ? ws_floats : 0);
    const int chunks = total > 0 ? (total + per_block - 1) / per_block : 0;
    if (chunks > 0 && (!ws || (size_t)chunks * row > ws_floats))
        return cudaErrorInvalidValue; /* no scratch for even one chunk */
    if (chunks > 0) {
        dim3 grid((unsigned)chunks, (unsigned)((g.k + 31) / 32),
                  (unsigned)((g.taps + TAPS - 1) / TAPS));
        if (grid.y > 65535u || grid.z > 65535u) return cudaErrorInvalidConfiguration;
        if (from_pool_version(cs) == 2) {
            dim3 by_channel((unsigned)chunks, (unsigned)((g.k + BYC_WARPS - 1) / BYC_WARPS),
                            (unsigned)(g.c / 32));
            if (by_channel.y > 65535u || by_channel.z > 65535u)
                return cudaErrorInvalidConfiguration;
            CNN_KERNEL(by_channel, BYC_WARPS * 32, stream,
                       conv_pool_bwd_filter_by_channel_kernel)(g, per_block, x, y, argmax, dy, ws);
        } else if (pixel_groups(cs, x))
            CNN_KERNEL(grid, THREADS, stream, conv_pool_bwd_filter_kernel<PIXEL_GROUPS>)(
                g, per_block, x, y, argmax, dy, ws);
        else if (g.taps == 25)
            CNN_KERNEL(grid, THREADS, stream, conv_pool_bwd_filter_kernel<25>)(
                g, per_block, x, y, argmax, dy, ws);
        else if (g.taps == 9)
            CNN_KERNEL(grid, THREADS, stream, conv_pool_bwd_filter_kernel<9>)(
                g, per_block, x, y, argmax, dy, ws);
        else
            CNN_KERNEL(grid, THREADS, stream, conv_pool_bwd_filter_kernel<0>)(
                g, per_block, x, y, argmax, dy, ws);
        cudaError_t e = launch_status();
        if (e != cudaSuccess) return e;
    }
    const unsigned blocks = (unsigned)((row + 31) / 32);
    if (chunks >= 64)
        CNN_KERNEL(blocks, 32 * 32, stream, conv_pool_reduce_kernel<32>)(chunks, g.taps * g.k,
                                                                         g.k, ws, dw, db);
    else
        CNN_KERNEL(blocks, 8 * 32, stream, conv_pool_reduce_kernel<8>)(chunks, g.taps * g.k, g.k,
                                                                       ws, dw, db);
    return launch_status();
}
