/* conv2d_direct.c: see conv2d_direct.h. Each loop body is written once (always_inline) and
 * compiled three times: for the baseline ISA and, on x86-64, for AVX2 and AVX-512 (picked at run
 * time, kernels/cpu_dispatch.h); all give the same bits. */
#include "kernels/conv2d_direct.h"
#include "kernels/conv_window.h"
#include "kernels/cpu_dispatch.h"

#include <stddef.h>

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

/* filter_tap for the taps (kh, 0..KW-1) of input channel 0 and the block of 32 output
 * channels from k0 at once, into dwk = dw's tap (kh, 0) + k0; NULL where a clone has none. */
typedef void (*TapRowFn)(const Conv2dShape *s, const float *xi, const float *dyr, int kh, int k0,
                         int rows0, int rows1, float *dwk);

/* The filter gradient takes the output rows in blocks of CONV_DIRECT_FILTER_ROWS: the block's
 * dy (conv1: 8 x 28 x 32 floats, 28 KiB) stays in L1 while the 25 taps walk it, where whole
 * images' dy (100 KiB) came from L2 for each tap (measured, batch 100, 1 thread: 2.3 -> 1.8 ms).
 * Rows [r0, r1), dyr holding them; db may be NULL. tap_row: a tap row's filter_taps at once,
 * where the caller has checked the shape (NULL: filter_tap alone). */
DIRECT_INLINE void filter_body(const Conv2dShape *s, const float *restrict xi,
                               const float *restrict dyr, int r0, int r1, float *restrict dw,
                               float *restrict db, TapRowFn tap_row) {
    const int C = s->c, K = s->k;
    for (int b0 = r0; b0 < r1; b0 += CONV_DIRECT_FILTER_ROWS) {
        const int b1 = b0 + CONV_DIRECT_FILTER_ROWS < r1 ? b0 + CONV_DIRECT_FILTER_ROWS : r1;
        const float *dyb = dyr + (size_t)(b0 - r0) * s->ow * K;
        if (db) {
            int k0 = 0;
            for (; k0 + DIRECT_KB <= K; k0 += DIRECT_KB) bias_sum(s, dyb, b0, b1, k0, DIRECT_KB, db);
            if (k0 < K) bias_sum(s, dyb, b0, b1, k0, K - k0, db);
        }
        for (int kh = 0; kh < s->kh; kh++) {
            if (tap_row) {
                for (int k0 = 0; k0 < K; k0 += DIRECT_KB)
                    tap_row(s, xi, dyb, kh, k0, b0, b1, dw + (size_t)kh * s->kw * K + k0);
                continue;
            }
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
}

static void forward_base(const Conv2dShape *s, const float *xi, const float *w, const float *b,
                         int oh0, int oh1, float *yr) {
    forward_body(s, xi, w, b, oh0, oh1, yr, NULL, 1);
}
static void filter_base(const Conv2dShape *s, const float *xi, const float *dyr, int r0, int r1,
                        float *dw, float *db) {
    filter_body(s, xi, dyr, r0, r1, dw, db, NULL);
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

/* Eight pixels of a one-channel input with 5 taps a row at stride 1 (conv1; step 66): along a
 * tap row the 8 pixels' 5 taps read 12 inputs, broadcast once each per row (quad_avx512 loads
 * one per pixel and tap, and its loops over run-time kw and C cost as much as its arithmetic:
 * 7.1 cycles per tap against 4 for its 16 products and adds). 16 accumulators; each sum takes
 * the same products and adds in the same order. */
#define OCTET_TAPS 5
__attribute__((target("avx512f"))) static void octet_c1_avx512(const Conv2dShape *s,
                                                              const float *xi, const float *w,
                                                              const float *b, int ih0, int kh0,
                                                              int kh1, int iw0, int k0,
                                                              float *out) {
    const int K = s->k;
    __m512 lo[8], hi[8];
    for (int q = 0; q < 8; q++) lo[q] = hi[q] = _mm512_setzero_ps();
    for (int kh = kh0; kh < kh1; kh++) {
        const float *xr = xi + (size_t)(ih0 + kh) * s->w + iw0; /* C = 1 */
        const float *wp = w + (size_t)kh * OCTET_TAPS * K + k0;
        __m512 xb[8 + OCTET_TAPS - 1];
        for (int j = 0; j < 8 + OCTET_TAPS - 1; j++) xb[j] = _mm512_set1_ps(xr[j]);
        for (int kw = 0; kw < OCTET_TAPS; kw++) {
            const __m512 w0 = _mm512_loadu_ps(wp + (size_t)kw * K);
            const __m512 w1 = _mm512_loadu_ps(wp + (size_t)kw * K + 16);
            for (int q = 0; q < 8; q++) { /* as forward_pixel: the product, then the add */
                lo[q] = _mm512_add_ps(lo[q], _mm512_mul_ps(xb[q + kw], w0));
                hi[q] = _mm512_add_ps(hi[q], _mm512_mul_ps(xb[q + kw], w1));
            }
        }
    }
    store_pixels_avx512(lo, hi, 8, b, k0, K, out);
}

__attribute__((target("avx2"))) static void forward_avx2(const Conv2dShape *s, const float *xi,
                                                         const float *w, const float *b,
                                                         int oh0, int oh1, float *yr) {
    forward_body(s, xi, w, b, oh0, oh1, yr, pair_avx2, 2);
}
__attribute__((target("avx2"))) static void filter_avx2(const Conv2dShape *s, const float *xi,
                                                        const float *dyr, int r0, int r1,
                                                        float *dw, float *db) {
    filter_body(s, xi, dyr, r0, r1, dw, db, NULL);
}

/* filter_tap's 5 taps of a row at once where C = 1 and stride 1 (conv1; step 67): each pixel's
 * dy (two vectors) is loaded once for the 5 taps, where filter_tap loaded it per tap (3 loads
 * per 4 products and adds: the loads bound it). A tap's pixels still split between two sums by
 * parity along the row (filter_tap's acc0 takes a row's valid pixels 0, 2, 4, ... from the
 * tap's first, acc1 the others: the same split as by ow's parity, with the names swapped where
 * the first is odd, and acc0 + acc1 is symmetric), rows in order: the same bits. */
/* One pixel's dy (dp) into its parity p's sums of the 5 taps whose input (iw0 + kw) is inside
 * the row xr. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
tap_row_pixel(const float *dp, const float *xr, int iw0, int W, __m512 a[OCTET_TAPS][2][2],
              const int p) {
    const __m512 d0 = _mm512_loadu_ps(dp), d1 = _mm512_loadu_ps(dp + 16);
    for (int kw = 0; kw < OCTET_TAPS; kw++) {
        if ((unsigned)(iw0 + kw) >= (unsigned)W) continue; /* the tap is padding */
        const __m512 x = _mm512_set1_ps(xr[iw0 + kw]);
        a[kw][p][0] = _mm512_add_ps(a[kw][p][0], _mm512_mul_ps(x, d0));
        a[kw][p][1] = _mm512_add_ps(a[kw][p][1], _mm512_mul_ps(x, d1));
    }
}

__attribute__((target("avx512f"))) static void
tap_row5_c1_avx512(const Conv2dShape *s, const float *xi, const float *dyr, int kh, int k0,
                   int rows0, int rows1, float *dwk) {
    const int K = s->k, W = s->w, OW = s->ow;
    __m512 a[OCTET_TAPS][2][2]; /* [kw][ow's parity][channels 0-15, 16-31] */
    for (int kw = 0; kw < OCTET_TAPS; kw++)
        for (int p = 0; p < 2; p++) a[kw][p][0] = a[kw][p][1] = _mm512_setzero_ps();
    int oh0, oh1;
    conv_tap_outputs(kh, s->stride_h, s->pad_top, s->h, s->oh, &oh0, &oh1);
    if (oh0 < rows0) oh0 = rows0;
    if (oh1 > rows1) oh1 = rows1;
    for (int oh = oh0; oh < oh1; oh++) {
        const float *xr = xi + (size_t)(oh * s->stride_h - s->pad_top + kh) * W; /* C = 1 */
        const float *d = dyr + (size_t)(oh - rows0) * OW * K + k0;
        /* two pixels a step, so that each one's parity (its sums) is a constant */
        int ow = 0;
        for (; ow + 1 < OW; ow += 2) {
            tap_row_pixel(d + (size_t)ow * K, xr, ow - s->pad_left, W, a, 0);
            tap_row_pixel(d + (size_t)(ow + 1) * K, xr, ow + 1 - s->pad_left, W, a, 1);
        }
        if (ow < OW) tap_row_pixel(d + (size_t)ow * K, xr, ow - s->pad_left, W, a, 0);
    }
    for (int kw = 0; kw < OCTET_TAPS; kw++)
        for (int j = 0; j < 2; j++) {
            float *o = dwk + (size_t)kw * K + 16 * j;
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o),
                                              _mm512_add_ps(a[kw][0][j], a[kw][1][j])));
        }
}
/* The shapes of the one-channel row loops (octet_c1_avx512, tap_row5_c1_avx512): conv1's. */
static int one_channel_row5(const Conv2dShape *s) {
    return s->c == 1 && s->kw == OCTET_TAPS && s->stride_w == 1;
}

__attribute__((target("avx512f"))) static void forward_avx512(const Conv2dShape *s,
                                                             const float *xi, const float *w,
                                                             const float *b, int oh0, int oh1,
                                                             float *yr) {
    if (one_channel_row5(s))
        forward_body(s, xi, w, b, oh0, oh1, yr, octet_c1_avx512, 8);
    else
        forward_body(s, xi, w, b, oh0, oh1, yr, quad_avx512, 4);
}
__attribute__((target("avx512f"))) static void filter_avx512(const Conv2dShape *s,
                                                            const float *xi, const float *dyr,
                                                            int r0, int r1, float *dw,
                                                            float *db) {
    const int tap_row5 = one_channel_row5(s) && s->k % DIRECT_KB == 0;
    filter_body(s, xi, dyr, r0, r1, dw, db, tap_row5 ? tap_row5_c1_avx512 : NULL);
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
