/* conv2d_direct.c: see conv2d_direct.h. Each loop body is written once (always_inline) and
 * compiled three times: for the baseline ISA and, on x86-64, for AVX2 and AVX-512 (picked at run
 * time, kernels/cpu_dispatch.h); all give the same bits. */
#include "kernels/conv2d_direct.h"
#include "kernels/conv_window.h"
#include "kernels/cpu_dispatch.h"

#include <stddef.h>
#include <stdint.h>

#define DIRECT_INLINE static inline __attribute__((always_inline))

/* Output channels go in blocks of DIRECT_KB (a template parameter of the helpers below, so a
 * full block's accumulators have fixed size and stay in vector registers across all taps);
 * a last partial block runs the same code with its own width. */
#define DIRECT_KB 32

/* Sum over the valid taps of one output pixel for channels [k0, k0+kb). */
DIRECT_INLINE void forward_pixel(const Conv2dShape *s, const float *restrict xi,
                                 const float *restrict w, const float *restrict b, int ih0,
                                 int kh0, int kh1, int iw0, int kw0, int kw1, int k0, int kb,
                                 float *restrict out) {
    const int C = s->c, K = s->k;
    float acc[DIRECT_KB] = {0};
    for (int kh = kh0; kh < kh1; kh++)
        for (int kw = kw0; kw < kw1; kw++) {
            const float *xp = xi + ((size_t)(ih0 + kh) * s->w + iw0 + kw) * C;
            const float *wp = w + ((size_t)kh * s->kw + kw) * C * K + k0;
            for (int c = 0; c < C; c++) {
                const float xv = xp[c];
                const float *restrict wc = wp + (size_t)c * K;
                for (int j = 0; j < kb; j++) acc[j] += xv * wc[j];
            }
        }
    for (int j = 0; j < kb; j++) out[j] = b ? acc[j] + b[k0 + j] : acc[j];
}

/* A group of neighbouring output pixels (2 for AVX2, 4 for AVX-512) whose windows lie inside
 * the row, one full block of DIRECT_KB output channels: out + q*K = what forward_pixel gives for
 * pixel q (same operations in the same order). Only as intrinsics kernels: written as plain
 * loops, the compiler spills the accumulators. */
typedef void (*GroupFn)(const Conv2dShape *s, const float *xi, const float *w, const float *b,
                        int ih0, int kh0, int kh1, int iw0, int k0, float *out);

/* Whole windows along w for output column ow? */
DIRECT_INLINE int whole_row_window(const Conv2dShape *s, int ow) {
    int kw0, kw1;
    conv_window_taps(ow, s->stride_w, s->pad_left, s->kw, s->w, &kw0, &kw1);
    return kw0 == 0 && kw1 == s->kw;
}

/* Output rows [oh0, oh1), row oh at yr + (oh - oh0) * OW * K. */
DIRECT_INLINE void forward_body(const Conv2dShape *s, const float *restrict xi,
                                const float *restrict w, const float *restrict b, int oh0,
                                int oh1, float *restrict yr, GroupFn group, int group_pixels) {
    const int K = s->k;
    for (int oh = oh0; oh < oh1; oh++) {
        int kh0, kh1, kw0, kw1;
        const int ih0 = conv_window_taps(oh, s->stride_h, s->pad_top, s->kh, s->h, &kh0, &kh1);
        for (int ow = 0; ow < s->ow; ow++) {
            const int iw0 = conv_window_taps(ow, s->stride_w, s->pad_left, s->kw, s->w, &kw0, &kw1);
            float *restrict yo = yr + ((size_t)(oh - oh0) * s->ow + ow) * K;
            const int last = ow + group_pixels - 1; /* whole windows at both ends: all */
            const int pixels = group && last < s->ow && whole_row_window(s, ow) &&
                                       whole_row_window(s, last)
                                   ? group_pixels
                                   : 1;
            int k0 = 0;
            for (; k0 + DIRECT_KB <= K; k0 += DIRECT_KB) {
                if (pixels > 1)
                    group(s, xi, w, b, ih0, kh0, kh1, iw0, k0, yo + k0);
                else
                    forward_pixel(s, xi, w, b, ih0, kh0, kh1, iw0, kw0, kw1, k0, DIRECT_KB,
                                  yo + k0);
            }
            for (int q = 0; q < pixels && k0 < K; q++)
                forward_pixel(s, xi, w, b, ih0, kh0, kh1, iw0 + q * s->stride_w, kw0, kw1, k0,
                              K - k0, yo + (size_t)q * K + k0);
            ow += pixels - 1;
        }
    }
}


/* For one tap (kh, kw) and input channel c: sum over the output pixels of rows [rows0, rows1)
 * of x * dy[pixel, k0:k0+kb], added to dwp (dyr: dy's rows from rows0, [rows1 - rows0, OW, K]).
 * Each row's valid pixels alternate between two accumulator sets (independent add chains),
 * added together at the end: a fixed order. */
DIRECT_INLINE void filter_tap(const Conv2dShape *s, const float *restrict xi,
                              const float *restrict dyr, int kh, int kw, int c, int k0, int kb,
                              int rows0, int rows1, float *restrict dwp) {
    const int C = s->c, K = s->k;
    float acc0[DIRECT_KB] = {0}, acc1[DIRECT_KB] = {0};
    int oh0, oh1, ow0, ow1;
    conv_tap_outputs(kh, s->stride_h, s->pad_top, s->h, s->oh, &oh0, &oh1);
    conv_tap_outputs(kw, s->stride_w, s->pad_left, s->w, s->ow, &ow0, &ow1);
    if (oh0 < rows0) oh0 = rows0;
    if (oh1 > rows1) oh1 = rows1;
    const size_t xstep = (size_t)s->stride_w * C;
    for (int oh = oh0; oh < oh1; oh++) {
        const int ih = oh * s->stride_h - s->pad_top + kh;
        const float *xp = xi + ((size_t)ih * s->w + ow0 * s->stride_w - s->pad_left + kw) * C + c;
        const float *restrict d = dyr + ((size_t)(oh - rows0) * s->ow + ow0) * K + k0;
        int ow = ow0;
        for (; ow + 1 < ow1; ow += 2, xp += 2 * xstep, d += 2 * (size_t)K) {
            const float x0 = xp[0], x1 = xp[xstep];
            for (int j = 0; j < kb; j++) {
                acc0[j] += x0 * d[j];
                acc1[j] += x1 * d[K + j];
            }
        }
        if (ow < ow1) {
            const float x0 = xp[0];
            for (int j = 0; j < kb; j++) acc0[j] += x0 * d[j];
        }
    }
    for (int j = 0; j < kb; j++) dwp[j] += acc0[j] + acc1[j];
}

/* db[k0:k0+kb] += the sum over the pixels of dy's rows [r0, r1) (dyr holding them), pixel by
 * pixel in order: kb a constant in full blocks, so the sums stay in vector registers. */
DIRECT_INLINE void bias_sum(const Conv2dShape *s, const float *restrict dyr, int r0, int r1,
                            int k0, int kb, float *restrict db) {
    const int K = s->k;
    float acc[DIRECT_KB];
    for (int j = 0; j < kb; j++) acc[j] = db[k0 + j];
    for (size_t p = 0; p < (size_t)(r1 - r0) * s->ow; p++)
        for (int j = 0; j < kb; j++) acc[j] += dyr[p * K + k0 + j];
    for (int j = 0; j < kb; j++) db[k0 + j] = acc[j];
}

/* The filter gradient takes the output rows in blocks of CONV_DIRECT_FILTER_ROWS: the block's
 * dy (conv1: 8 x 28 x 32 floats, 28 KiB) stays in L1 while the 25 taps walk it, where whole
 * images' dy (100 KiB) came from L2 for each tap (measured, batch 100, 1 thread: 2.3 -> 1.8 ms).
 * The block [b0, b1) of rows [r0, r1) (dyr holding them): its db terms first (db may be NULL). */
DIRECT_INLINE const float *filter_block(const Conv2dShape *s, const float *restrict dyr, int r0,
                                        int b0, int b1, float *restrict db) {
    const int K = s->k;
    const float *dyb = dyr + (size_t)(b0 - r0) * s->ow * K;
    if (db) {
        int k0 = 0;
        for (; k0 + DIRECT_KB <= K; k0 += DIRECT_KB) bias_sum(s, dyb, b0, b1, k0, DIRECT_KB, db);
        if (k0 < K) bias_sum(s, dyb, b0, b1, k0, K - k0, db);
    }
    return dyb;
}
/* The end of the block from b0 within rows up to r1. */
DIRECT_INLINE int filter_block_end(int b0, int r1) {
    return b0 + CONV_DIRECT_FILTER_ROWS < r1 ? b0 + CONV_DIRECT_FILTER_ROWS : r1;
}

/* Rows [r0, r1), dyr holding them; db may be NULL. */
DIRECT_INLINE void filter_body(const Conv2dShape *s, const float *restrict xi,
                               const float *restrict dyr, int r0, int r1, float *restrict dw,
                               float *restrict db) {
    const int C = s->c, K = s->k;
    for (int b0 = r0, b1; b0 < r1; b0 = b1) {
        b1 = filter_block_end(b0, r1);
        const float *dyb = filter_block(s, dyr, r0, b0, b1, db);
        for (int kh = 0; kh < s->kh; kh++)
            for (int kw = 0; kw < s->kw; kw++)
                for (int c = 0; c < C; c++) {
                    float *dwp = dw + (((size_t)kh * s->kw + kw) * C + c) * K;
                    int k0 = 0;
                    for (; k0 + DIRECT_KB <= K; k0 += DIRECT_KB)
                        filter_tap(s, xi, dyb, kh, kw, c, k0, DIRECT_KB, b0, b1, dwp + k0);
                    if (k0 < K) filter_tap(s, xi, dyb, kh, kw, c, k0, K - k0, b0, b1, dwp + k0);
                }
    }
}

static void forward_base(const Conv2dShape *s, const float *xi, const float *w, const float *b,
                         int oh0, int oh1, float *yr) {
    forward_body(s, xi, w, b, oh0, oh1, yr, NULL, 1);
}
static void filter_base(const Conv2dShape *s, const float *xi, const float *dyr, int r0, int r1,
                        float *dw, float *db) {
    filter_body(s, xi, dyr, r0, r1, dw, db);
}

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>

#if DIRECT_KB != 32
#error "pair_avx2 and quad_avx512 compute blocks of 32 output channels"
#endif
__attribute__((target("avx2"))) static void pair_avx2(const Conv2dShape *s, const float *xi,
                                                      const float *w, const float *b, int ih0,
                                                      int kh0, int kh1, int iw0, int k0,
                                                      float *out0) {
    const int C = s->c, K = s->k, step = s->stride_w * C;
    float *out1 = out0 + K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int kh = kh0; kh < kh1; kh++)
        for (int kw = 0; kw < s->kw; kw++) {
            const float *xp = xi + ((size_t)(ih0 + kh) * s->w + iw0 + kw) * C;
            const float *wp = w + ((size_t)kh * s->kw + kw) * C * K + k0;
            for (int c = 0; c < C; c++) {
                const __m256 x0 = _mm256_broadcast_ss(xp + c), x1 = _mm256_broadcast_ss(xp + step + c);
                const float *wc = wp + (size_t)c * K;
                const __m256 w0 = _mm256_loadu_ps(wc), w1 = _mm256_loadu_ps(wc + 8);
                const __m256 w2 = _mm256_loadu_ps(wc + 16), w3 = _mm256_loadu_ps(wc + 24);
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(x0, w0));
                a1 = _mm256_add_ps(a1, _mm256_mul_ps(x0, w1));
                a2 = _mm256_add_ps(a2, _mm256_mul_ps(x0, w2));
                a3 = _mm256_add_ps(a3, _mm256_mul_ps(x0, w3));
                b0 = _mm256_add_ps(b0, _mm256_mul_ps(x1, w0));
                b1 = _mm256_add_ps(b1, _mm256_mul_ps(x1, w1));
                b2 = _mm256_add_ps(b2, _mm256_mul_ps(x1, w2));
                b3 = _mm256_add_ps(b3, _mm256_mul_ps(x1, w3));
            }
        }
    if (b) { /* the sum, then + b, as forward_pixel */
        const __m256 c0 = _mm256_loadu_ps(b + k0), c1 = _mm256_loadu_ps(b + k0 + 8);
        const __m256 c2 = _mm256_loadu_ps(b + k0 + 16), c3 = _mm256_loadu_ps(b + k0 + 24);
        a0 = _mm256_add_ps(a0, c0); a1 = _mm256_add_ps(a1, c1);
        a2 = _mm256_add_ps(a2, c2); a3 = _mm256_add_ps(a3, c3);
        b0 = _mm256_add_ps(b0, c0); b1 = _mm256_add_ps(b1, c1);
        b2 = _mm256_add_ps(b2, c2); b3 = _mm256_add_ps(b3, c3);
    }
    _mm256_storeu_ps(out0, a0); _mm256_storeu_ps(out0 + 8, a1);
    _mm256_storeu_ps(out0 + 16, a2); _mm256_storeu_ps(out0 + 24, a3);
    _mm256_storeu_ps(out1, b0); _mm256_storeu_ps(out1 + 8, b1);
    _mm256_storeu_ps(out1 + 16, b2); _mm256_storeu_ps(out1 + 24, b3);
}

/* Pixels q < count, their sums of channels k0.. k0+31 in lo[q] and hi[q], + b (where not NULL)
 * as forward_pixel adds it, to out + q*K. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
store_pixels_avx512(__m512 *lo, __m512 *hi, const int count, const float *b, int k0, int K,
                    float *out) {
    for (int q = 0; q < count; q++) {
        if (b) { /* the sum, then + b, as forward_pixel */
            lo[q] = _mm512_add_ps(lo[q], _mm512_loadu_ps(b + k0));
            hi[q] = _mm512_add_ps(hi[q], _mm512_loadu_ps(b + k0 + 16));
        }
        _mm512_storeu_ps(out + (size_t)q * K, lo[q]);
        _mm512_storeu_ps(out + (size_t)q * K + 16, hi[q]);
    }
}

/* Four pixels, 32 channels each in two 16-float vectors: 8 accumulators, so the adds of one
 * tap overlap (one accumulator per pixel pair would wait on each add's latency). */
__attribute__((target("avx512f"))) static void quad_avx512(const Conv2dShape *s, const float *xi,
                                                          const float *w, const float *b, int ih0,
                                                          int kh0, int kh1, int iw0, int k0,
                                                          float *out) {
    const int C = s->c, K = s->k, step = s->stride_w * C;
    __m512 lo[4], hi[4];
    for (int q = 0; q < 4; q++) lo[q] = hi[q] = _mm512_setzero_ps();
    for (int kh = kh0; kh < kh1; kh++)
        for (int kw = 0; kw < s->kw; kw++) {
            const float *xp = xi + ((size_t)(ih0 + kh) * s->w + iw0 + kw) * C;
            const float *wp = w + ((size_t)kh * s->kw + kw) * C * K + k0;
            for (int c = 0; c < C; c++) {
                const float *wc = wp + (size_t)c * K;
                const __m512 w0 = _mm512_loadu_ps(wc), w1 = _mm512_loadu_ps(wc + 16);
                for (int q = 0; q < 4; q++) { /* as forward_pixel: the product, then the add */
                    const __m512 xq = _mm512_set1_ps(xp[q * step + c]);
                    lo[q] = _mm512_add_ps(lo[q], _mm512_mul_ps(xq, w0));
                    hi[q] = _mm512_add_ps(hi[q], _mm512_mul_ps(xq, w1));
                }
            }
        }
    store_pixels_avx512(lo, hi, 4, b, k0, K, out);
}

__attribute__((target("avx2"))) static void forward_avx2(const Conv2dShape *s, const float *xi,
                                                         const float *w, const float *b,
                                                         int oh0, int oh1, float *yr) {
    forward_body(s, xi, w, b, oh0, oh1, yr, pair_avx2, 2);
}
__attribute__((target("avx2"))) static void filter_avx2(const Conv2dShape *s, const float *xi,
                                                        const float *dyr, int r0, int r1,
                                                        float *dw, float *db) {
    filter_body(s, xi, dyr, r0, r1, dw, db);
}

/* ---- one input channel, 5 taps a row, stride 1 (conv1), on AVX-512 ---------------------------
 * The input rows a call reads are copied with their padding as zeros (C1Rows): along a tap
 * row, a pixel's 5 inputs are 5 adjacent floats of the copy, at the row's ends too, so every
 * pixel takes the vector loops (the plain loops' border pixels were 28% of the forward, step
 * 69). MNIST's images are 81% zeros, their background, in whole rows and long runs; each copied
 * row keeps its first and last nonzero column, its span, and the loops skip what lies outside
 * it: the forward a group's tap row whose inputs miss the span (half of them on MNIST), the
 * filter gradient each pixel whose window misses it (two thirds). Every term skipped or added
 * is x * w (x * dy) with x = 0 or padding: +0 or -0, and a sum that starts at +0 is never -0,
 * so adding it changes nothing. These loops give the plain loops' bits where w (forward) and
 * dy (filter gradient) are finite; a non-finite one meets zeros here that the plain loops
 * multiply (or skip, for padding) and may be NaN in one and not the other (step 76). */
#define C1_TAPS 5
#define C1_ROW 128 /* floats of a copied row: the output row's width + 16 at most */
#define C1_ROWS 16 /* rows a copy holds: 8 + KH - 1 for a filter block (CONV_DIRECT_FILTER_ROWS) */
#define C1_GROUP 8 /* pixels a forward group sums at once (a last group of 4 where it has fewer) */

/* These loops' shapes: conv1's. */
static int c1_fits(const Conv2dShape *s) {
    return s->c == 1 && s->kw == C1_TAPS && s->stride_w == 1 && s->stride_h == 1 &&
           s->k % DIRECT_KB == 0 && s->ow + 16 <= C1_ROW &&
           s->kh + CONV_DIRECT_FILTER_ROWS - 1 <= C1_ROWS;
}

/* Input rows [ih0, ih0 + rows): row r is x[r], where column j holds input column j - pad_left
 * (0 outside the image, and a whole row of 0 outside it); first[r] > last[r] when the row is all
 * zeros. Nonzero: compared unordered-or-not-equal, so a NaN is nonzero and -0 is zero. */
typedef struct {
    _Alignas(64) float x[C1_ROWS][C1_ROW];
    int first[C1_ROWS], last[C1_ROWS];
} C1Rows;

__attribute__((target("avx512f"))) static void c1_rows_fill(const Conv2dShape *s,
                                                           const float *xi, int ih0, int rows,
                                                           C1Rows *p) {
    const int cols = s->ow + 16; /* what the loops read: a group's 12 inputs from ow < OW */
    for (int r = 0; r < rows; r++) {
        const int ih = ih0 + r;
        const float *xr = xi + (size_t)(ih < 0 || ih >= s->h ? 0 : ih) * s->w;
        uint64_t nonzero[C1_ROW / 64] = {0};
        for (int j = 0; j < cols; j += 16) {
            /* lanes j .. j+15 hold input columns from iw = j - pad_left: those inside the row
             * (lanes lo .. n-1) are loaded; where the first lanes are padding, from the row's
             * first column and moved up lo lanes (an expanding load from memory took 17% of
             * this function's time on Zen 5) */
            const int iw = j - s->pad_left;
            __m512 v = _mm512_setzero_ps();
            if (ih >= 0 && ih < s->h && iw < s->w) {
                const int lo = iw < 0 ? -iw : 0, n = s->w - iw < 16 ? s->w - iw : 16;
                const __mmask16 m = (__mmask16)(((1u << n) - 1) & ~((1u << lo) - 1));
                if (lo == 0) {
                    v = _mm512_maskz_loadu_ps(m, xr + iw);
                } else {
                    const __m512i up = _mm512_sub_epi32(
                        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                        _mm512_set1_epi32(lo));
                    const __m512 row = _mm512_maskz_loadu_ps((__mmask16)(m >> lo), xr);
                    v = _mm512_maskz_permutexvar_ps(m, up, row);
                }
            }
            _mm512_store_ps(p->x[r] + j, v);
            const uint64_t nz = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
            nonzero[j / 64] |= nz << (j % 64);
        }
        p->first[r] = C1_ROW;
        p->last[r] = -1;
        for (int q = 0; q < C1_ROW / 64; q++)
            if (nonzero[q]) {
                if (p->first[r] == C1_ROW) p->first[r] = 64 * q + __builtin_ctzll(nonzero[q]);
                p->last[r] = 64 * q + 63 - __builtin_clzll(nonzero[q]);
            }
    }
}

/* Pixels [ow, ow + P) of an output row (P = 8 or 4; the first `count` stored to out),
 * channels k0..k0+31, from the copy's rows from r0 (the row's first tap row): the sum over the
 * tap rows and, within each, the 5 taps in order (a tap row whose P + 4 inputs miss the span
 * skipped), then + b, as forward_pixel. Along a tap row the P pixels' taps read P + 4 inputs,
 * broadcast once each (step 66: a load per pixel and tap cost as much as the arithmetic). */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
group_c1(const Conv2dShape *s, const C1Rows *p, int r0, const float *w, const float *b, int ow,
         int k0, const int P, int count, float *out) {
    const int K = s->k;
    __m512 lo[C1_GROUP], hi[C1_GROUP];
    for (int q = 0; q < P; q++) lo[q] = hi[q] = _mm512_setzero_ps();
    for (int kh = 0; kh < s->kh; kh++) {
        const int r = r0 + kh;
        if (p->first[r] > ow + P + C1_TAPS - 2 || p->last[r] < ow) continue;
        const float *xr = p->x[r] + ow;
        const float *wp = w + (size_t)kh * C1_TAPS * K + k0;
        __m512 xb[C1_GROUP + C1_TAPS - 1];
        for (int j = 0; j < P + C1_TAPS - 1; j++) xb[j] = _mm512_set1_ps(xr[j]);
        for (int kw = 0; kw < C1_TAPS; kw++) {
            const __m512 w0 = _mm512_loadu_ps(wp + (size_t)kw * K);
            const __m512 w1 = _mm512_loadu_ps(wp + (size_t)kw * K + 16);
            for (int q = 0; q < P; q++) { /* as forward_pixel: the product, then the add */
                lo[q] = _mm512_add_ps(lo[q], _mm512_mul_ps(xb[q + kw], w0));
                hi[q] = _mm512_add_ps(hi[q], _mm512_mul_ps(xb[q + kw], w1));
            }
        }
    }
    store_pixels_avx512(lo, hi, count, b, k0, K, out);
}

/* conv2d_direct_forward_rows where c1_fits: the inputs of up to C1_ROWS - KH + 1 output rows
 * copied at a time. */
__attribute__((target("avx512f"))) static void forward_c1_avx512(const Conv2dShape *s,
                                                                const float *xi, const float *w,
                                                                const float *b, int oh0,
                                                                int oh1, float *yr) {
    const int K = s->k, OW = s->ow, chunk = C1_ROWS - s->kh + 1;
    C1Rows p;
    for (int c0 = oh0; c0 < oh1; c0 += chunk) {
        const int c1 = c0 + chunk < oh1 ? c0 + chunk : oh1;
        c1_rows_fill(s, xi, c0 - s->pad_top, c1 - c0 + s->kh - 1, &p);
        for (int oh = c0; oh < c1; oh++) {
            float *yo = yr + (size_t)(oh - oh0) * OW * K;
            for (int k0 = 0; k0 < K; k0 += DIRECT_KB) {
                int ow = 0;
                for (; ow + C1_GROUP <= OW; ow += C1_GROUP)
                    group_c1(s, &p, oh - c0, w, b, ow, k0, C1_GROUP, C1_GROUP,
                             yo + (size_t)ow * K + k0);
                for (; ow < OW; ow += 4)
                    group_c1(s, &p, oh - c0, w, b, ow, k0, 4, OW - ow < 4 ? OW - ow : 4,
                             yo + (size_t)ow * K + k0);
            }
        }
    }
}

/* One pixel's dy (dp: two vectors) into its parity's sums of the 5 taps, whose inputs start at
 * xr. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
tap_pixel_c1(const float *dp, const float *xr, __m512 a[C1_TAPS][2][2], const int par) {
    const __m512 d0 = _mm512_loadu_ps(dp), d1 = _mm512_loadu_ps(dp + 16);
    for (int kw = 0; kw < C1_TAPS; kw++) {
        const __m512 x = _mm512_set1_ps(xr[kw]);
        a[kw][par][0] = _mm512_add_ps(a[kw][par][0], _mm512_mul_ps(x, d0));
        a[kw][par][1] = _mm512_add_ps(a[kw][par][1], _mm512_mul_ps(x, d1));
    }
}

/* filter_tap for the taps (kh, 0..4) and channels k0..k0+31 at once, over the block's rows
 * [b0, b1) (dyb holding them; the copy's row 0 is input row b0 - pad_top), added to dwk = dw's
 * tap (kh, 0) + k0. Each pixel's dy is loaded once for its 5 taps (step 67). A tap's pixels
 * split between two sums by ow's parity: filter_tap's acc0 takes a row's valid pixels 0, 2, 4,
 * ... from the tap's first, acc1 the others, the same split with the names swapped where the
 * first is odd, and acc0 + acc1 is symmetric; rows in order. Only the pixels whose window meets
 * the row's span are walked (from an even one, so that each pixel's parity is a constant). */
__attribute__((target("avx512f"))) static void tap_row_c1(const Conv2dShape *s, const C1Rows *p,
                                                         const float *dyb, int kh, int k0,
                                                         int b0, int b1, float *dwk) {
    const int K = s->k, OW = s->ow;
    __m512 a[C1_TAPS][2][2]; /* [kw][ow's parity][channels 0-15, 16-31] */
    for (int kw = 0; kw < C1_TAPS; kw++)
        for (int q = 0; q < 2; q++) a[kw][q][0] = a[kw][q][1] = _mm512_setzero_ps();
    for (int oh = b0; oh < b1; oh++) {
        const int r = oh - b0 + kh;
        if (p->first[r] > p->last[r]) continue;
        int ow = p->first[r] - (C1_TAPS - 1); /* pixel ow reads the copy's columns ow..ow+4 */
        ow = ow < 0 ? 0 : ow & ~1;
        const int end = p->last[r] + 1 < OW ? p->last[r] + 1 : OW;
        const float *xr = p->x[r], *d = dyb + (size_t)(oh - b0) * OW * K + k0;
        for (; ow + 1 < end; ow += 2) {
            tap_pixel_c1(d + (size_t)ow * K, xr + ow, a, 0);
            tap_pixel_c1(d + (size_t)(ow + 1) * K, xr + ow + 1, a, 1);
        }
        if (ow < end) tap_pixel_c1(d + (size_t)ow * K, xr + ow, a, 0);
    }
    for (int kw = 0; kw < C1_TAPS; kw++)
        for (int j = 0; j < 2; j++) {
            float *o = dwk + (size_t)kw * K + 16 * j;
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o),
                                              _mm512_add_ps(a[kw][0][j], a[kw][1][j])));
        }
}

/* conv2d_direct_filter_rows where c1_fits: filter_body's blocks, each block's inputs copied
 * once for its tap rows. */
__attribute__((target("avx512f"))) static void filter_c1_avx512(const Conv2dShape *s,
                                                               const float *xi, const float *dyr,
                                                               int r0, int r1, float *dw,
                                                               float *db) {
    C1Rows p;
    for (int b0 = r0, b1; b0 < r1; b0 = b1) {
        b1 = filter_block_end(b0, r1);
        const float *dyb = filter_block(s, dyr, r0, b0, b1, db);
        c1_rows_fill(s, xi, b0 - s->pad_top, b1 - b0 + s->kh - 1, &p);
        for (int kh = 0; kh < s->kh; kh++)
            for (int k0 = 0; k0 < s->k; k0 += DIRECT_KB)
                tap_row_c1(s, &p, dyb, kh, k0, b0, b1, dw + (size_t)kh * C1_TAPS * s->k + k0);
    }
}

__attribute__((target("avx512f"))) static void forward_avx512(const Conv2dShape *s,
                                                             const float *xi, const float *w,
                                                             const float *b, int oh0, int oh1,
                                                             float *yr) {
    if (c1_fits(s))
        forward_c1_avx512(s, xi, w, b, oh0, oh1, yr);
    else
        forward_body(s, xi, w, b, oh0, oh1, yr, quad_avx512, 4);
}
__attribute__((target("avx512f"))) static void filter_avx512(const Conv2dShape *s,
                                                            const float *xi, const float *dyr,
                                                            int r0, int r1, float *dw,
                                                            float *db) {
    if (c1_fits(s))
        filter_c1_avx512(s, xi, dyr, r0, r1, dw, db);
    else
        filter_body(s, xi, dyr, r0, r1, dw, db);
}
#endif

void conv2d_direct_forward_rows(const Conv2dShape *s, const float *xi, const float *w,
                                const float *b, int oh0, int oh1, float *yr) {
#if KERNELS_HAVE_AVX2_CLONES
    KERNELS_PICK_CLONE(forward_base, forward_avx2, forward_avx512)(s, xi, w, b, oh0, oh1, yr);
#else
    forward_base(s, xi, w, b, oh0, oh1, yr);
#endif
}

void conv2d_direct_forward_image(const Conv2dShape *s, const float *xi, const float *w,
                                 const float *b, float *yi) {
    conv2d_direct_forward_rows(s, xi, w, b, 0, s->oh, yi);
}

void conv2d_direct_filter_rows(const Conv2dShape *s, const float *xi, const float *dyr, int oh0,
                               int oh1, float *dw, float *db) {
#if KERNELS_HAVE_AVX2_CLONES
    KERNELS_PICK_CLONE(filter_base, filter_avx2, filter_avx512)(s, xi, dyr, oh0, oh1, dw, db);
#else
    filter_base(s, xi, dyr, oh0, oh1, dw, db);
#endif
}
