/* conv2d_direct.c: see conv2d_direct.h. Each loop body is written once (always_inline) and
 * compiled twice: for the baseline ISA and, on x86-64, for AVX2 (picked at run time). */
#include "kernels/conv2d_direct.h"

#include <stddef.h>

#define DIRECT_INLINE static inline __attribute__((always_inline))


/* Valid kernel range [*k0, *k1) for output position o along one axis; returns the input index
 * of kernel index 0. */
DIRECT_INLINE int direct_range(int o, int stride, int pad, int k, int in, int *k0, int *k1) {
    int i0 = o * stride - pad;
    *k0 = i0 < 0 ? -i0 : 0;
    *k1 = in - i0 < k ? in - i0 : k;
    if (*k1 < *k0) *k1 = *k0;
    return i0;
}

/* Output channels go in blocks of DIRECT_KB (a template parameter of the helpers below, so a
 * full block's accumulators have fixed size and stay in vector registers across all taps);
 * a last partial block runs the same code with its own width. */
#define DIRECT_KB 32

/* Sum over the valid taps of one output pixel for channels [k0, k0+kb). */
DIRECT_INLINE void forward_pixel(const Conv2dShape *s, const float *restrict xi,
                                 const float *restrict w, int ih0, int kh0, int kh1, int iw0,
                                 int kw0, int kw1, int k0, int kb, float *restrict out) {
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
    for (int j = 0; j < kb; j++) out[j] = acc[j];
}

DIRECT_INLINE void forward_body(const Conv2dShape *s, const float *restrict xi,
                                const float *restrict w, const float *restrict b,
                                float *restrict yi) {
    const int K = s->k;
    for (int oh = 0; oh < s->oh; oh++) {
        int kh0, kh1, kw0, kw1;
        const int ih0 = direct_range(oh, s->stride_h, s->pad_top, s->kh, s->h, &kh0, &kh1);
        for (int ow = 0; ow < s->ow; ow++) {
            const int iw0 = direct_range(ow, s->stride_w, s->pad_left, s->kw, s->w, &kw0, &kw1);
            float *restrict yo = yi + ((size_t)oh * s->ow + ow) * K;
            int k0 = 0;
            for (; k0 + DIRECT_KB <= K; k0 += DIRECT_KB)
                forward_pixel(s, xi, w, ih0, kh0, kh1, iw0, kw0, kw1, k0, DIRECT_KB, yo + k0);
            if (k0 < K) forward_pixel(s, xi, w, ih0, kh0, kh1, iw0, kw0, kw1, k0, K - k0, yo + k0);
            if (b)
                for (int k = 0; k < K; k++) yo[k] += b[k];
        }
    }
}

/* Output positions o in [*lo, *hi) whose input index o*stride - pad + t lies in [0, in). */
DIRECT_INLINE void valid_outputs(int t, int stride, int pad, int in, int out, int *lo, int *hi) {
    int a = pad - t, b = in - 1 + pad - t; /* o*stride in [a, b] */
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    *hi = b < 0 ? 0 : b / stride + 1;
    if (*hi > out) *hi = out;
    if (*hi < *lo) *hi = *lo;
}

/* For one tap (kh, kw) and input channel c: sum over output pixels of x * dy[pixel, k0:k0+kb],
 * added to dwp. Each row's valid pixels alternate between two accumulator sets (independent
 * add chains), added together at the end: a fixed order. */
DIRECT_INLINE void filter_tap(const Conv2dShape *s, const float *restrict xi,
                              const float *restrict dyi, int kh, int kw, int c, int k0, int kb,
                              float *restrict dwp) {
    const int C = s->c, K = s->k;
    float acc0[DIRECT_KB] = {0}, acc1[DIRECT_KB] = {0};
    int oh0, oh1, ow0, ow1;
    valid_outputs(kh, s->stride_h, s->pad_top, s->h, s->oh, &oh0, &oh1);
    valid_outputs(kw, s->stride_w, s->pad_left, s->w, s->ow, &ow0, &ow1);
    const size_t xstep = (size_t)s->stride_w * C;
    for (int oh = oh0; oh < oh1; oh++) {
        const int ih = oh * s->stride_h - s->pad_top + kh;
        const float *xp = xi + ((size_t)ih * s->w + ow0 * s->stride_w - s->pad_left + kw) * C + c;
        const float *restrict d = dyi + ((size_t)oh * s->ow + ow0) * K + k0;
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

DIRECT_INLINE void filter_body(const Conv2dShape *s, const float *restrict xi,
                               const float *restrict dyi, float *restrict dw) {
    const int C = s->c, K = s->k;
    for (int kh = 0; kh < s->kh; kh++)
        for (int kw = 0; kw < s->kw; kw++)
            for (int c = 0; c < C; c++) {
                float *dwp = dw + (((size_t)kh * s->kw + kw) * C + c) * K;
                int k0 = 0;
                for (; k0 + DIRECT_KB <= K; k0 += DIRECT_KB)
                    filter_tap(s, xi, dyi, kh, kw, c, k0, DIRECT_KB, dwp + k0);
                if (k0 < K) filter_tap(s, xi, dyi, kh, kw, c, k0, K - k0, dwp + k0);
            }
}

static void forward_base(const Conv2dShape *s, const float *xi, const float *w, const float *b,
                         float *yi) {
    forward_body(s, xi, w, b, yi);
}
static void filter_base(const Conv2dShape *s, const float *xi, const float *dyi, float *dw) {
    filter_body(s, xi, dyi, dw);
}

typedef void (*ForwardFn)(const Conv2dShape *, const float *, const float *, const float *,
                          float *);
typedef void (*FilterFn)(const Conv2dShape *, const float *, const float *, float *);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static void forward_avx2(const Conv2dShape *s, const float *xi,
                                                         const float *w, const float *b,
                                                         float *yi) {
    forward_body(s, xi, w, b, yi);
}
__attribute__((target("avx2"))) static void filter_avx2(const Conv2dShape *s, const float *xi,
                                                        const float *dyi, float *dw) {
    filter_body(s, xi, dyi, dw);
}
static int have_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

void conv2d_direct_forward_image(const Conv2dShape *s, const float *xi, const float *w,
                                 const float *b, float *yi) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (have_avx2()) {
        forward_avx2(s, xi, w, b, yi);
        return;
    }
#endif
    forward_base(s, xi, w, b, yi);
}

void conv2d_direct_filter_image(const Conv2dShape *s, const float *xi, const float *dyi,
                                float *dw) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (have_avx2()) {
        filter_avx2(s, xi, dyi, dw);
        return;
    }
#endif
    filter_base(s, xi, dyi, dw);
}
