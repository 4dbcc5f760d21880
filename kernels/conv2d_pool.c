/* conv2d_pool.c: a conv + bias + ReLU + max pool as one op, on the CPU: the reference of the
 * CUDA twin (kernels/conv2d_pool.cu). Semantics in kernels.h.
 *
 * Layouts: x [N,H,W,C] (NHWC), w [KH,KW,C,K] (HWIO), the conv output [N,OH,OW,K] (virtual:
 * never stored), y and argmax [N,PH,PW,K], dw like w, db [K]. */
#include "kernels/kernels.h"
#include "kernels/conv_window.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/fast_div.h"
#include "kernels/parallel.h"

#include <math.h>
#include <string.h>

/* The conv output at (n, oh, ow, k), summed as the GEMM of conv2d_forward_cuda does. */
static float conv_at(const Conv2dShape *cs, const float *x, const float *w, const float *b,
                     int n, int oh, int ow, int k) {
    const int ih0 = oh * cs->stride_h - cs->pad_top, iw0 = ow * cs->stride_w - cs->pad_left;
    float acc = 0.0f;
    for (int kh = 0; kh < cs->kh; kh++)
        for (int kw = 0; kw < cs->kw; kw++) {
            const int ih = ih0 + kh, iw = iw0 + kw;
            const int inside = ih >= 0 && ih < cs->h && iw >= 0 && iw < cs->w;
            const float *xp = x + (((size_t)n * cs->h + ih) * cs->w + iw) * cs->c;
            const float *wp = w + ((size_t)(kh * cs->kw + kw) * cs->c) * cs->k + k;
            for (int c = 0; c < cs->c; c++)
                acc = fmaf(inside ? xp[c] : 0.0f, wp[(size_t)c * cs->k], acc);
        }
    return b ? acc + b[k] : acc;
}

void conv2d_relu_maxpool_forward(const Conv2dShape *cs, const Pool2dShape *ps, const float *x,
                                 const float *w, const float *b, float *y, int32_t *argmax) {
    const int K = cs->k;
    for (int n = 0; n < ps->n; n++)
        for (int ph = 0; ph < ps->oh; ph++) {
            const int h0 = ph * ps->stride_h - ps->pad_top;
            const int hb = h0 < 0 ? 0 : h0, he = h0 + ps->kh > ps->h ? ps->h : h0 + ps->kh;
            for (int pw = 0; pw < ps->ow; pw++) {
                const int w0 = pw * ps->stride_w - ps->pad_left;
                const int wb = w0 < 0 ? 0 : w0, we = w0 + ps->kw > ps->w ? ps->w : w0 + ps->kw;
                const size_t o = (((size_t)n * ps->oh + ph) * ps->ow + pw) * K;
                for (int k = 0; k < K; k++) {
                    /* The window in row-major order, the first maximum wins (strict >), as
                     * maxpool2d_forward; the ReLU as the GEMM epilogue's (v > 0 ? v : 0). */
                    float best = 0.0f;
                    int32_t at = -1;
                    for (int oh = hb; oh < he; oh++)
                        for (int ow = wb; ow < we; ow++) {
                            float v = conv_at(cs, x, w, b, n, oh, ow, k);
                            v = v > 0.0f ? v : 0.0f;
                            if (at < 0 || v > best) {
                                best = v;
                                at = (int32_t)((((size_t)n * cs->oh + oh) * cs->ow + ow) * K + k);
                            }
                        }
                    y[o + k] = best;
                    argmax[o + k] = at;
                }
            }
        }
}

/* ---- the backward from the pool's winners: the CPU engine's kernels too ----------------------
 * Both walk the pooled outputs in memory order and, for each winner the ReLU passed, touch the
 * conv taps of its filter window: the work is the alive winners' (on MNIST after the first ~20
 * steps ~5% of pool2's outputs: bench_relu_sparsity), not the conv output's. Threads take fixed
 * image groups (filter) or whole images (data), so no sum depends on the thread count. The
 * inner loops run over the C input channels; an AVX2+FMA clone is chosen at run time, with the
 * same operations (fma/fmaf), so both clones give the same bits. */

#define FROM_POOL_GROUPS 8 /* the filter gradient's fixed image groups, as conv2d.c's */

/* The conv's multiply-adds: the work whose threads a pass over the winners takes (the alive share
 * is not known before the pass). */
static double conv_macs(const Conv2dShape *cs) {
    return (double)cs->n * cs->oh * cs->ow * cs->kh * cs->kw * cs->c * cs->k;
}

/* The divisors that place a winner: by K (its channel) and by OW (its row), set up once per
 * call; 32-bit (the op keeps indices under 2^31) and by multiplies (kernels/fast_div.h), where
 * three 64-bit divisions took 8-15% of the winners' loops (docs/kernels-cpu.md, steps 50, 68). */
typedef struct {
    FastDiv k, ow;
} WinnerDiv;

static inline WinnerDiv winner_div(const Conv2dShape *cs) {
    return (WinnerDiv){fast_div_init((uint32_t)cs->k), fast_div_init((uint32_t)cs->ow)};
}

/* The conv output position (oh, ow) of a winner of image n from its flat argmax index
 * [N,OH,OW,K]. */
static inline void winner_at(const Conv2dShape *cs, WinnerDiv dv, int n, int32_t argmax, int *oh,
                             int *ow) {
    const uint32_t pos = fast_div(dv.k, (uint32_t)argmax); /* (n*OH + oh)*OW + ow */
    const uint32_t row = fast_div(dv.ow, pos);              /* n*OH + oh */
    *ow = (int)(pos - row * (uint32_t)cs->ow);
    *oh = (int)(row - (uint32_t)n * (uint32_t)cs->oh);
}

/* Layout of one group's partial sums (doubles): acc [K][KH*KW][C] (C contiguous, so a winner's
 * taps are runs of C), then db [K]. */
static size_t group_doubles(const Conv2dShape *cs) {
    return (size_t)cs->k * cs->kh * cs->kw * cs->c + (size_t)cs->k;
}

size_t conv2d_relu_maxpool_backward_filter_workspace_floats(const Conv2dShape *cs) {
    return 2 * FROM_POOL_GROUPS * group_doubles(cs);
}

/* One image's winners into a group's sums (acc, sb). */
static inline void filter_image_body(const Conv2dShape *cs, const Pool2dShape *ps, int n,
                                     const float *x, const float *y, const int32_t *argmax,
                                     const float *dy, double *acc, double *sb) {
    const int K = cs->k, C = cs->c, taps = cs->kh * cs->kw;
    const size_t first = (size_t)n * ps->oh * ps->ow * K, count = (size_t)ps->oh * ps->ow * K;
    const float *xi = x + (size_t)n * cs->h * cs->w * C;
    const WinnerDiv dv = winner_div(cs);
    /* k = o % K by a counter: first is a multiple of K */
    for (size_t o = first, k = 0; o < first + count; o++, k = k + 1 == (size_t)K ? 0 : k + 1) {
        if (!(y[o] > 0.0f)) continue; /* the ReLU passed nothing at the winner */
        const double g = dy[o];
        int oh, ow;
        winner_at(cs, dv, n, argmax[o], &oh, &ow);
        sb[k] += g;
        int kh0, kh1, kw0, kw1;
        const int ih0 = conv_window_taps(oh, cs->stride_h, cs->pad_top, cs->kh, cs->h, &kh0, &kh1);
        const int iw0 = conv_window_taps(ow, cs->stride_w, cs->pad_left, cs->kw, cs->w, &kw0, &kw1);
        for (int kh = kh0; kh < kh1; kh++)
            for (int kw = kw0; kw < kw1; kw++) {
                const float *xp = xi + ((size_t)(ih0 + kh) * cs->w + iw0 + kw) * C;
                double *a = acc + ((size_t)k * taps + kh * cs->kw + kw) * C;
                for (int c = 0; c < C; c++) a[c] = fma(g, (double)xp[c], a[c]);
            }
    }
}

/* One alive winner's taps into its image's data gradient dxi: output o (channel k, winner's
 * flat index at), gradient g. wt is the filter as [KH,KW,K,C] (C contiguous). */
static inline __attribute__((always_inline)) void
data_winner(const Conv2dShape *cs, WinnerDiv dv, int n, int32_t at, int k, float g,
            const float *wt, float *dxi) {
    const int K = cs->k, C = cs->c;
    int oh, ow;
    winner_at(cs, dv, n, at, &oh, &ow);
    int kh0, kh1, kw0, kw1; /* stride 1 */
    const int ih0 = conv_window_taps(oh, 1, cs->pad_top, cs->kh, cs->h, &kh0, &kh1);
    const int iw0 = conv_window_taps(ow, 1, cs->pad_left, cs->kw, cs->w, &kw0, &kw1);
    for (int kh = kh0; kh < kh1; kh++)
        for (int kw = kw0; kw < kw1; kw++) {
            float *out = dxi + ((size_t)(ih0 + kh) * cs->w + iw0 + kw) * C;
            const float *wp = wt + ((size_t)(kh * cs->kw + kw) * K + k) * C;
            for (int c = 0; c < C; c++) out[c] = fmaf(g, wp[c], out[c]);
        }
}

/* One image's data gradient: zeroed, then each alive winner's taps in pooled order. */
static inline void data_image_body(const Conv2dShape *cs, const Pool2dShape *ps, int n,
                                   const float *wt, const float *y, const int32_t *argmax,
                                   const float *dy, float *dx) {
    const int K = cs->k, C = cs->c;
    const size_t first = (size_t)n * ps->oh * ps->ow * K, count = (size_t)ps->oh * ps->ow * K;
    float *dxi = dx + (size_t)n * cs->h * cs->w * C;
    memset(dxi, 0, (size_t)cs->h * cs->w * C * sizeof *dxi);
    /* k = o % K by a counter: first is a multiple of K */
    const WinnerDiv dv = winner_div(cs);
    for (size_t o = first, k = 0; o < first + count; o++, k = k + 1 == (size_t)K ? 0 : k + 1)
        if (y[o] > 0.0f) /* else the ReLU passed nothing */
            data_winner(cs, dv, n, argmax[o], (int)k, dy[o], wt, dxi);
}

static void filter_image_base(const Conv2dShape *cs, const Pool2dShape *ps, int n, const float *x,
                              const float *y, const int32_t *argmax, const float *dy, double *acc,
                              double *sb) {
    filter_image_body(cs, ps, n, x, y, argmax, dy, acc, sb);
}
static void data_image_base(const Conv2dShape *cs, const Pool2dShape *ps, int n, const float *wt,
                            const float *y, const int32_t *argmax, const float *dy, float *dx) {
    data_image_body(cs, ps, n, wt, y, argmax, dy, dx);
}

typedef void (*FilterImageFn)(const Conv2dShape *, const Pool2dShape *, int, const float *,
                              const float *, const int32_t *, const float *, double *, double *);
typedef void (*DataImageFn)(const Conv2dShape *, const Pool2dShape *, int, const float *,
                            const float *, const int32_t *, const float *, float *);

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static void
filter_image_avx2(const Conv2dShape *cs, const Pool2dShape *ps, int n, const float *x,
                  const float *y, const int32_t *argmax, const float *dy, double *acc,
                  double *sb) {
    filter_image_body(cs, ps, n, x, y, argmax, dy, acc, sb);
}
__attribute__((target("avx2,fma"))) static void
data_image_avx2(const Conv2dShape *cs, const Pool2dShape *ps, int n, const float *wt,
                const float *y, const int32_t *argmax, const float *dy, float *dx) {
    data_image_body(cs, ps, n, wt, y, argmax, dy, dx);
}
__attribute__((target("avx512f"))) static void
filter_image_avx512(const Conv2dShape *cs, const Pool2dShape *ps, int n, const float *x,
                    const float *y, const int32_t *argmax, const float *dy, double *acc,
                    double *sb) {
    filter_image_body(cs, ps, n, x, y, argmax, dy, acc, sb);
}

/* The outputs o of [*from, end) whose winner the ReLU passed (y[o] > 0), in order, into list:
 * 16 at a time by a compare and a compress (no branch on each: at MNIST's ~5% alive a branch
 * mispredicts on most of them), at most ALIVE_LIST; *from is advanced past those looked at. */
#define ALIVE_LIST 2048 /* 8 KB on the stack */
__attribute__((target("avx512f"))) static int list_alive_avx512(const float *y, size_t *from,
                                                                size_t end, int32_t *list) {
    const __m512i step = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    size_t o = *from;
    int m = 0;
    for (; o + 16 <= end && m <= ALIVE_LIST - 16; o += 16) {
        const __mmask16 alive =
            _mm512_cmp_ps_mask(_mm512_loadu_ps(y + o), _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int32_t)o), step);
        _mm512_storeu_si512(list + m, _mm512_maskz_compress_epi32(alive, idx));
        m += __builtin_popcount(alive);
    }
    if (m <= ALIVE_LIST - 16) /* room for the last (< 16) one by one, each written */
        for (; o < end; o++) {
            list[m] = (int32_t)o; /* the op keeps indices under 2^31 */
            m += y[o] > 0.0f;
        }
    *from = o;
    return m;
}

/* data_image_body over the listed outputs: the same winners in the same order. */
__attribute__((target("avx512f"))) static void
data_image_avx512(const Conv2dShape *cs, const Pool2dShape *ps, int n, const float *wt,
                  const float *y, const int32_t *argmax, const float *dy, float *dx) {
    const uint32_t K = (uint32_t)cs->k;
    const size_t first = (size_t)n * ps->oh * ps->ow * K, end = first + (size_t)ps->oh * ps->ow * K;
    float *dxi = dx + (size_t)n * cs->h * cs->w * cs->c;
    memset(dxi, 0, (size_t)cs->h * cs->w * cs->c * sizeof *dxi);
    const WinnerDiv dv = winner_div(cs);
    int32_t list[ALIVE_LIST];
    for (size_t o = first; o < end;) {
        const int m = list_alive_avx512(y, &o, end, list);
        for (int i = 0; i < m; i++) {
            const int32_t at = list[i];
            data_winner(cs, dv, n, argmax[at], (int)fast_mod(dv.k, (uint32_t)at), dy[at], wt,
                        dxi);
        }
    }
}

/* ---- conv2's data gradient a pooled position at a time (AVX-512; step 63) -----------------
 * data_image_avx512 adds each winner's 25 taps to dx in memory, with two divisions to place the
 * winner and loops of run-time length: ~80% of its time went there and to the stores. Here the
 * shape is conv2's (5x5 SAME, stride 1, C = 32, a 2x2/2 pool without leading padding): all the
 * winners of a pooled position lie in its 2x2 window, so their taps cover 6 x 6 pixels. An
 * image's dx is summed in a copy padded by 2 on each side (no tap falls outside), a position at
 * a time: per row of its 6 x 6 pixels, the 6 pixels' 32 channels stay in 12 registers over the
 * position's winners. Each pixel still takes its terms in pooled order (the positions in order,
 * k ascending within one), the same fmaf's: the same bits. */
#define REGION_C 32
#define REGION_TAPS 5
#define REGION_ROWS (REGION_TAPS + 1)         /* a 2x2 window's winners' taps: 6 x 6 pixels */
#define REGION_MAX_FLOATS ((size_t)16 * 1024) /* the padded image, on the stack: 64 KB */
#define REGION_BATCH 64                       /* winners decoded at once */

static int data_regions_fit(const Conv2dShape *cs, const Pool2dShape *ps) {
    return kernels_cpu_isa() >= KERNELS_ISA_AVX512 && cs->c == REGION_C &&
           cs->kh == REGION_TAPS && cs->kw == REGION_TAPS && cs->stride_h == 1 &&
           cs->stride_w == 1 && cs->pad_top == 2 && cs->pad_left == 2 && cs->oh == cs->h &&
           cs->ow == cs->w && ps->kh == 2 && ps->kw == 2 && ps->stride_h == 2 &&
           ps->stride_w == 2 && ps->pad_top == 0 && ps->pad_left == 0 &&
           (size_t)(cs->h + 4) * (cs->w + 4) * REGION_C <= REGION_MAX_FLOATS;
}

typedef struct {
    const float *wt; /* wt[k, 0, 0, :]: the winner's channel's taps */
    int dh, dw;      /* its place in the 2x2 window */
    float g;         /* its gradient */
} RegionWinner;

/* A winner's 5 taps of filter row kh into the pixels o..o+4 of the row's registers a. */
#define REGION_TAPS_AT(o)                                                                          for (int kw = 0; kw < REGION_TAPS; kw++) {                                                         const float *wp = wr + (ptrdiff_t)kw * tap;                                                    a[(o) + kw][0] = _mm512_fmadd_ps(g, _mm512_loadu_ps(wp), a[(o) + kw][0]);                      a[(o) + kw][1] = _mm512_fmadd_ps(g, _mm512_loadu_ps(wp + 16), a[(o) + kw][1]);             }

/* Row R (0..5) of a position's 6 x 6 pixels, its first pixel at p, over winners w[0..m). */
__attribute__((target("avx512f"))) static inline void
region_row_avx512(float *p, const RegionWinner *w, int m, int R) {
    const ptrdiff_t tap = REGION_C;
    __m512 a[REGION_ROWS][2];
    for (int q = 0; q < REGION_ROWS; q++)
        for (int j = 0; j < 2; j++) a[q][j] = _mm512_loadu_ps(p + q * REGION_C + 16 * j);
    for (int i = 0; i < m; i++) {
        const int kh = R - w[i].dh;
        if ((unsigned)kh >= REGION_TAPS) continue; /* the winner's rows miss this one */
        const __m512 g = _mm512_set1_ps(w[i].g);
        const float *wr = w[i].wt + (ptrdiff_t)kh * REGION_TAPS * tap;
        if (w[i].dw == 0) {
            REGION_TAPS_AT(0)
        } else {
            REGION_TAPS_AT(1)
        }
    }
    for (int q = 0; q < REGION_ROWS; q++)
        for (int j = 0; j < 2; j++) _mm512_storeu_ps(p + q * REGION_C + 16 * j, a[q][j]);
}

/* One image's data gradient (as data_image_body) where data_regions_fit; wt [K,KH,KW,C] (a
 * winner's 25 taps in 3.2 KB: as [KH,KW,K,C] they lay 8 KB apart, a page each, and their loads
 * from L2 were half of this loop's samples). */
__attribute__((target("avx512f"))) static void
data_image_regions_avx512(const Conv2dShape *cs, const Pool2dShape *ps, int n, const float *wt,
                          const float *y, const int32_t *argmax, const float *dy, float *dx) {
    const uint32_t K = (uint32_t)cs->k, OWK = (uint32_t)cs->ow * K;
    const int H = cs->h, W = cs->w, PWIDTH = W + 4;
    const size_t first = (size_t)n * ps->oh * ps->ow * K, end = first + (size_t)ps->oh * ps->ow * K;
    float pad[REGION_MAX_FLOATS] __attribute__((aligned(64))); /* [H+4, W+4, C]: dx at (2, 2) */
    memset(pad, 0, (size_t)(H + 4) * PWIDTH * REGION_C * sizeof *pad);
    int32_t list[ALIVE_LIST];
    RegionWinner win[REGION_BATCH];
    for (size_t o = first; o < end;) {
        const int m = list_alive_avx512(y, &o, end, list);
        /* their argmax and dy, scattered over 1.25 MB each for conv2 and out of cache by now:
         * loaded on demand they stalled on a miss per winner (20% of this loop's samples) */
        for (int i = 0; i < m; i++) {
            _mm_prefetch((const char *)(argmax + list[i]), _MM_HINT_T0);
            _mm_prefetch((const char *)(dy + list[i]), _MM_HINT_T0);
        }
        for (int i = 0; i < m;) {
            /* the listed winners of one position (ph, pw), at most a batch */
            const uint32_t pos = ((uint32_t)list[i] - (uint32_t)first) / K;
            const uint32_t pos_end = (uint32_t)first + (pos + 1) * K;
            const int ph = (int)(pos / (uint32_t)ps->ow), pw = (int)(pos % (uint32_t)ps->ow);
            /* the conv output's index of channel 0 at the window's first pixel */
            const uint32_t base = ((uint32_t)(n * cs->oh + 2 * ph) * (uint32_t)cs->ow +
                                   (uint32_t)(2 * pw)) * K;
            int count = 0;
            for (; i < m && (uint32_t)list[i] < pos_end && count < REGION_BATCH; i++, count++) {
                const uint32_t at = (uint32_t)list[i], k = at - (pos_end - K);
                /* argmax - base - k: 0, K, OW*K or OW*K + K */
                const uint32_t d = (uint32_t)argmax[at] - base - k;
                const int dh = d >= OWK;
                win[count] = (RegionWinner){wt + (size_t)k * REGION_TAPS * REGION_TAPS * REGION_C, dh,
                                            d - (uint32_t)dh * OWK >= K, dy[at]};
            }
            float *p = pad + ((size_t)(2 * ph) * PWIDTH + 2 * pw) * REGION_C;
            for (int R = 0; R < REGION_ROWS; R++)
                region_row_avx512(p + (size_t)R * PWIDTH * REGION_C, win, count, R);
        }
    }
    float *dxi = dx + (size_t)n * H * W * REGION_C;
    for (int ih = 0; ih < H; ih++)
        memcpy(dxi + (size_t)ih * W * REGION_C, pad + ((size_t)(ih + 2) * PWIDTH + 2) * REGION_C,
               (size_t)W * REGION_C * sizeof *dxi);
}

static FilterImageFn filter_image_fn(void) {
    return KERNELS_PICK_CLONE(filter_image_base, filter_image_avx2, filter_image_avx512);
}
static DataImageFn data_image_fn(void) {
    return KERNELS_PICK_CLONE(data_image_base, data_image_avx2, data_image_avx512);
}
#else
static FilterImageFn filter_image_fn(void) { return filter_image_base; }
static DataImageFn data_image_fn(void) { return data_image_base; }
#endif

/* ---- conv2's filter gradient k by k (AVX-512; KW = 5, C = 32) -----------------------------
 * Per winner in pooled order, the loops above read and write the winner's channel's 25 x 32
 * double sums (6.4 KB) through L2. Here a group's winners are taken one output channel k at a
 * time: listed (branch-free, in pooled order), then per tap row kh the row's 5 x 32 sums stay in
 * 20 vector registers over the whole list. Every sum still takes its terms in pooled order (a
 * sum belongs to one k, and k's winners keep their order), the same fma on the same values: the
 * same bits (docs/kernels-cpu.md, step 54). */
#if KERNELS_HAVE_AVX2_CLONES
#define KMAJOR_KW 5
#define KMAJOR_C 32
#define KMAJOR_MAX_K 1024

/* The shapes these loops take (KWinner's 16-bit fields included), on a CPU with AVX-512. */
static int kmajor_runs(const Conv2dShape *cs, int per_group) {
    return kernels_cpu_isa() >= KERNELS_ISA_AVX512 && cs->kw == KMAJOR_KW && cs->c == KMAJOR_C &&
           cs->k <= KMAJOR_MAX_K && cs->h < 32768 && cs->w < 32768 && per_group < 32768;
}

typedef struct {
    int32_t o;        /* the pooled output [N,PH,PW,K] (the op keeps indices under 2^31) */
    int16_t n;        /* its image less the group's first */
    int16_t ih0, iw0; /* its winner's window's first input row and column (may be < 0) */
    float g;          /* its gradient */
} KWinner;

/* Tap row kh of one channel's sums (acc_row: 5 x 32 doubles) over its winners w[0..m). */
__attribute__((target("avx512f"))) static void
kmajor_row_avx512(const Conv2dShape *cs, const float *xg, const KWinner *w, int m, int kh,
                  double *acc_row) {
    __m512d a[KMAJOR_KW][4];
    for (int kw = 0; kw < KMAJOR_KW; kw++)
        for (int j = 0; j < 4; j++) a[kw][j] = _mm512_loadu_pd(acc_row + kw * KMAJOR_C + 8 * j);
    for (int i = 0; i < m; i++) {
        const int ih = w[i].ih0 + kh;
        if ((unsigned)ih >= (unsigned)cs->h) continue; /* the tap row outside the image */
        const __m512d g = _mm512_set1_pd((double)w[i].g);
        const float *xr = xg + (((size_t)w[i].n * cs->h + ih) * cs->w) * KMAJOR_C;
        for (int kw = 0; kw < KMAJOR_KW; kw++) {
            const int iw = w[i].iw0 + kw;
            if ((unsigned)iw >= (unsigned)cs->w) continue;
            const float *xp = xr + (size_t)iw * KMAJOR_C;
            for (int j = 0; j < 4; j++)
                a[kw][j] = _mm512_fmadd_pd(g, _mm512_cvtps_pd(_mm256_loadu_ps(xp + 8 * j)),
                                           a[kw][j]);
        }
    }
    for (int kw = 0; kw < KMAJOR_KW; kw++)
        for (int j = 0; j < 4; j++) _mm512_storeu_pd(acc_row + kw * KMAJOR_C + 8 * j, a[kw][j]);
}

/* The listed winners (their pooled outputs o, in pooled order) sorted by channel, stably, then
 * summed channel by channel into acc [K][KH*KW][C] and sb [K]. */
__attribute__((target("avx512f"))) static void
kmajor_flush_avx512(const Conv2dShape *cs, const Pool2dShape *ps, int n0, const float *x,
                    const int32_t *argmax, const float *dy, const int32_t *list, int m,
                    KWinner *sorted, int *start, double *acc, double *sb) {
    const int K = cs->k, taps = cs->kh * KMAJOR_KW;
    /* five divisions a winner (its channel twice, its image, winner_at's two), by multiplies:
     * 14.59 -> 14.28 ms a step (step 68) */
    const WinnerDiv dv = winner_div(cs);
    const FastDiv by_image = fast_div_init((uint32_t)(ps->oh * ps->ow * K));
    for (int k = 0; k <= K; k++) start[k] = 0;
    for (int i = 0; i < m; i++) start[fast_mod(dv.k, (uint32_t)list[i]) + 1]++;
    for (int k = 0; k < K; k++) start[k + 1] += start[k];
    for (int i = 0; i < m; i++) {
        const uint32_t o = (uint32_t)list[i];
        const int n = (int)fast_div(by_image, o);
        int oh, ow;
        winner_at(cs, dv, n, argmax[o], &oh, &ow);
        const KWinner w = {(int32_t)o, (int16_t)(n - n0),
                           (int16_t)(oh * cs->stride_h - cs->pad_top),
                           (int16_t)(ow * cs->stride_w - cs->pad_left), dy[o]};
        sorted[start[fast_mod(dv.k, o)]++] = w;
    }
    /* start[k] is now channel k's end */
    const float *xg = x + (size_t)n0 * cs->h * cs->w * KMAJOR_C;
    for (int k = 0, b = 0; k < K; b = start[k], k++) {
        if (start[k] == b) continue;
        for (int i = b; i < start[k]; i++) sb[k] += (double)sorted[i].g;
        double *acc_k = acc + (size_t)k * taps * KMAJOR_C;
        for (int kh = 0; kh < cs->kh; kh++)
            kmajor_row_avx512(cs, xg, sorted + b, start[k] - b, kh,
                              acc_k + (size_t)kh * KMAJOR_KW * KMAJOR_C);
    }
}

/* Images [n0, n1) into a group's sums (acc, sb): the alive winners' outputs listed in pooled
 * order (list_alive_avx512), each list sorted and summed. */
__attribute__((target("avx512f"))) static void
filter_group_kmajor_avx512(const Conv2dShape *cs, const Pool2dShape *ps, int n0, int n1,
                           const float *x, const float *y, const int32_t *argmax,
                           const float *dy, double *acc, double *sb) {
    const size_t per_image = (size_t)ps->oh * ps->ow * cs->k;
    int32_t list[ALIVE_LIST];
    KWinner sorted[ALIVE_LIST];
    int start[KMAJOR_MAX_K + 1];
    for (size_t o = (size_t)n0 * per_image; o < (size_t)n1 * per_image;) {
        const int m = list_alive_avx512(y, &o, (size_t)n1 * per_image, list);
        kmajor_flush_avx512(cs, ps, n0, x, argmax, dy, list, m, sorted, start, acc, sb);
    }
}
#endif

/* dw[tc*K + k] = (float)(0.0 + the groups' sums of acc[k][tc] in group order), for tc < n: the
 * groups' rows of n doubles added a chunk at a time into a row of sums, so that the adds run over
 * contiguous doubles (vectorised in the clones; one strided load per add took 1.6% of the MNIST
 * step: docs/kernels-cpu.md step 78). The same adds in the same order. */
#define ADD_GROUPS_CHUNK 512 /* doubles of the row of sums: 4 KB, in L1 */
typedef void (*AddGroupsFn)(const double *parts, size_t part, int groups, size_t n, int k, int K,
                            float *dw);
static inline __attribute__((always_inline)) void
add_groups_body(const double *parts, size_t part, int groups, size_t n, int k, int K, float *dw) {
    const double *p = parts + (size_t)k * n;
    double row[ADD_GROUPS_CHUNK];
    for (size_t t0 = 0; t0 < n; t0 += ADD_GROUPS_CHUNK) {
        const size_t len = n - t0 < ADD_GROUPS_CHUNK ? n - t0 : ADD_GROUPS_CHUNK;
        for (size_t i = 0; i < len; i++) row[i] = 0.0;
        for (int g = 0; g < groups; g++) {
            const double *pg = p + (size_t)g * part + t0;
            for (size_t i = 0; i < len; i++) row[i] += pg[i];
        }
        for (size_t i = 0; i < len; i++) dw[(t0 + i) * K + k] = (float)row[i];
    }
}
static void add_groups_base(const double *parts, size_t part, int groups, size_t n, int k, int K,
                            float *dw) {
    add_groups_body(parts, part, groups, n, k, K, dw);
}
#if KERNELS_HAVE_AVX2_CLONES
__attribute__((target("avx2"))) static void add_groups_avx2(const double *parts, size_t part,
                                                           int groups, size_t n, int k, int K,
                                                           float *dw) {
    add_groups_body(parts, part, groups, n, k, K, dw);
}
__attribute__((target("avx512f"))) static void add_groups_avx512(const double *parts, size_t part,
                                                                int groups, size_t n, int k,
                                                                int K, float *dw) {
    add_groups_body(parts, part, groups, n, k, K, dw);
}
#endif
static AddGroupsFn add_groups_fn(void) {
#if KERNELS_HAVE_AVX2_CLONES
    return KERNELS_PICK_CLONE(add_groups_base, add_groups_avx2, add_groups_avx512);
#else
    return add_groups_base;
#endif
}

void conv2d_relu_maxpool_backward_filter(const Conv2dShape *cs, const Pool2dShape *ps,
                                         const float *x, const float *y, const int32_t *argmax,
                                         const float *dy, float *dw, float *db, float *ws) {
    const int K = cs->k, taps = cs->kh * cs->kw, C = cs->c;
    const size_t part = group_doubles(cs);
    const int n = cs->n > 0 ? cs->n : 1;
    const int per_group = (n + FROM_POOL_GROUPS - 1) / FROM_POOL_GROUPS;
    const int groups = (n + per_group - 1) / per_group;
    double *parts = (double *)(void *)ws; /* 8-byte aligned: kernels.h */
    const FilterImageFn image = filter_image_fn();
#if KERNELS_HAVE_AVX2_CLONES
    const int kmajor = kmajor_runs(cs, per_group);
#endif
    const int threads = kernels_threads_for(conv_macs(cs), groups);
    KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (int g = 0; g < groups; g++) {
        double *acc = parts + (size_t)g * part;
        memset(acc, 0, part * sizeof *acc);
        const int n0 = g * per_group, n1 = n0 + per_group < cs->n ? n0 + per_group : cs->n;
#if KERNELS_HAVE_AVX2_CLONES
        if (kmajor) {
            filter_group_kmajor_avx512(cs, ps, n0, n1, x, y, argmax, dy, acc, acc + part - K);
            continue;
        }
#endif
        for (int i = n0; i < n1; i++) image(cs, ps, i, x, y, argmax, dy, acc, acc + part - K);
    }
    /* The groups added in group order, into HWIO: dw[(t*C + c)*K + k] from acc[k][t][c]; the
     * threads split k (each sum's order stays the groups'). */
    const AddGroupsFn add_groups = add_groups_fn();
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int k = 0; k < K; k++) add_groups(parts, part, groups, (size_t)taps * C, k, K, dw);
    if (db)
        for (int k = 0; k < K; k++) {
            double sum = 0.0;
            for (int g = 0; g < groups; g++) sum += parts[(size_t)g * part + part - K + k];
            db[k] = (float)sum;
        }
}

size_t conv2d_relu_maxpool_backward_data_workspace_floats(const Conv2dShape *cs) {
    return (size_t)cs->kh * cs->kw * cs->c * cs->k;
}

void conv2d_relu_maxpool_backward_data(const Conv2dShape *cs, const Pool2dShape *ps,
                                       const float *w, const float *y, const int32_t *argmax,
                                       const float *dy, float *dx, float *ws) {
    const int K = cs->k, C = cs->c, taps = cs->kh * cs->kw;
#if KERNELS_HAVE_AVX2_CLONES
    const int regions = data_regions_fit(cs, ps);
    const DataImageFn image = regions ? data_image_regions_avx512 : data_image_fn();
#else
    const int regions = 0;
    const DataImageFn image = data_image_fn();
#endif
    /* wt = w [KH,KW,C,K] transposed so a winner's C channels are a run: [KH,KW,K,C], or
     * [K,KH,KW,C] for the positions' loops (a winner's taps together) */
    float *wt = ws;
    for (int t = 0; t < taps; t++)
        for (int k = 0; k < K; k++)
            for (int c = 0; c < C; c++)
                wt[(regions ? (size_t)k * taps + t : (size_t)t * K + k) * C + c] =
                    w[((size_t)t * C + c) * K + k];
    const int threads = kernels_threads_for(conv_macs(cs), cs->n);
    KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (int n = 0; n < cs->n; n++) image(cs, ps, n, wt, y, argmax, dy, dx);
}
