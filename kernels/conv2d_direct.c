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

/* For one tap (kh, kw) and input channel c: sum over output pixels of x * dy[pixel, k0:k0+kb],
 * added to dwp. */
DIRECT_INLINE void filter_tap(const Conv2dShape *s, const float *restrict xi,
                              const float *restrict dyi, int kh, int kw, int c, int k0, int kb,
                              float *restrict dwp) {
    const int C = s->c, K = s->k;
    float acc[DIRECT_KB] = {0};
    for (int oh = 0; oh < s->oh; oh++) {
        const int ih = oh * s->stride_h - s->pad_top + kh;
        if (ih < 0 || ih >= s->h) continue;
        for (int ow = 0; ow < s->ow; ow++) {
            const int iw = ow * s->stride_w - s->pad_left + kw;
            if (iw < 0 || iw >= s->w) continue;
            const float xv = xi[((size_t)ih * s->w + iw) * C + c];
            const float *restrict d = dyi + ((size_t)oh * s->ow + ow) * K + k0;
            for (int j = 0; j < kb; j++) acc[j] += xv * d[j];
        }
    }
    for (int j = 0; j < kb; j++) dwp[j] += acc[j];
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
