/* maxpool.c: 2-D max pooling on NHWC activations, with the argmax the backward pass routes
 * gradients through. */
#include "kernels/kernels.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/maxpool_row.h"
#include "kernels/parallel.h"

#include <string.h>

void pool2d_shape_init(Pool2dShape *s, int n, int h, int w, int c, int kh, int kw,
                       int stride_h, int stride_w, int same) {
    s->n = n; s->h = h; s->w = w; s->c = c;
    s->kh = kh; s->kw = kw; s->stride_h = stride_h; s->stride_w = stride_w;
    conv_output_dim(h, kh, stride_h, same, &s->oh, &s->pad_top);
    conv_output_dim(w, kw, stride_w, same, &s->ow, &s->pad_left);
}

/* One window: output (n, oh, ow), input rows [hb, he) of the window's, read from xr: input
 * (ih, iw, c) of image n at xr[((ih - row0) * W + iw) * C + c] (the whole input: xr = x +
 * n*H*W*C, row0 = 0). The argmax still indexes the whole input [N,H,W,C]. */
static inline __attribute__((always_inline)) void
window_body(const Pool2dShape *s, const float *xr, int row0, float *y, int32_t *argmax, int n,
            int oh, int ow, int hb, int he) {
    const int H = s->h, W = s->w, C = s->c;
    int w0 = ow * s->stride_w - s->pad_left;
    int wb = w0 < 0 ? 0 : w0, we = w0 + s->kw > W ? W : w0 + s->kw;
    size_t o = (((size_t)n * s->oh + oh) * s->ow + ow) * C;
    float *yo = y + o;
    int32_t *ao = argmax + o;
    /* Window in row-major order, all channels at once; the first max wins (strict
     * >). Padding is skipped, and every window holds at least one real element. */
    int32_t first = (int32_t)((((size_t)n * H + hb) * W + wb) * C);
    const float *xf = xr + ((size_t)(hb - row0) * W + wb) * C;
    for (int c = 0; c < C; c++) {
        yo[c] = xf[c];
        ao[c] = first + c;
    }
    for (int ih = hb; ih < he; ih++)
        for (int iw = wb; iw < we; iw++) {
            int32_t base = (int32_t)((((size_t)n * H + ih) * W + iw) * C);
            if (base == first) continue;
            const float *xi = xr + ((size_t)(ih - row0) * W + iw) * C;
            for (int c = 0; c < C; c++) {
                /* Written as a bit mask, so the compiler vectorises it. */
                float v = xi[c], cur = yo[c];
                int32_t take = -(int32_t)(v > cur);
                yo[c] = v > cur ? v : cur;
                ao[c] = ((base + c) & take) | (ao[c] & ~take);
            }
        }
}

/* The window rows [hb, he) of output row oh. */
static inline __attribute__((always_inline)) void window_rows(const Pool2dShape *s, int oh,
                                                              int *hb, int *he) {
    const int h0 = oh * s->stride_h - s->pad_top;
    *hb = h0 < 0 ? 0 : h0;
    *he = h0 + s->kh > s->h ? s->h : h0 + s->kh;
}

/* One output row (image n, row oh), as window_body reads it. */
static inline __attribute__((always_inline)) void
forward_row_body(const Pool2dShape *s, const float *xr, int row0, float *y, int32_t *argmax,
                 int n, int oh) {
    int hb, he;
    window_rows(s, oh, &hb, &he);
    for (int ow = 0; ow < s->ow; ow++) window_body(s, xr, row0, y, argmax, n, oh, ow, hb, he);
}

typedef void (*ForwardRowFn)(const Pool2dShape *, const float *, int, float *, int32_t *, int,
                             int);

static void forward_row_base(const Pool2dShape *s, const float *xr, int row0, float *y,
                             int32_t *argmax, int n, int oh) {
    forward_row_body(s, xr, row0, y, argmax, n, oh);
}
#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>
/* Compares and selects: exact at any width. The release build's SSE2 loop took ~4% of the MNIST
 * step (docs/kernels-cpu.md step 34). */
__attribute__((target("avx2"))) static void forward_row_avx2(const Pool2dShape *s,
                                                            const float *xr, int row0, float *y,
                                                            int32_t *argmax, int n, int oh) {
    forward_row_body(s, xr, row0, y, argmax, n, oh);
}
/* A 2x2 window whose 4 pixels are inside, C % 16 == 0 (both MNIST pools; step 65): the
 * window's 4 pixels in registers, 16 channels at a time, where window_body's loops went
 * through yo and ao in memory for each pixel. The same compares (strict >: the first max wins,
 * NaN never replaces and is never replaced) in the same order: the same y and argmax. */
__attribute__((target("avx512f"))) static void
window_2x2_avx512(const Pool2dShape *s, const float *xr, int row0, float *y, int32_t *argmax,
                  int n, int oh, int ow, int h0) {
    const int W = s->w, C = s->c, w0 = ow * s->stride_w - s->pad_left;
    const size_t o = (((size_t)n * s->oh + oh) * s->ow + ow) * C;
    const int32_t first = (int32_t)((((size_t)n * s->h + h0) * W + w0) * C), down = W * C;
    const float *x0 = xr + ((size_t)(h0 - row0) * W + w0) * C, *x1 = x0 + down;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int c = 0; c < C; c += 16) {
        const __m512i i0 = _mm512_add_epi32(_mm512_set1_epi32(first + c), lane);
        __m512 cur = _mm512_loadu_ps(x0 + c);
        __m512i at = i0;
        const float *px[3] = {x0 + C + c, x1 + c, x1 + C + c};
        const int32_t step[3] = {C, down, down + C};
        for (int q = 0; q < 3; q++) {
            const __m512 v = _mm512_loadu_ps(px[q]);
            const __mmask16 take = _mm512_cmp_ps_mask(v, cur, _CMP_GT_OQ);
            cur = _mm512_mask_blend_ps(take, cur, v);
            at = _mm512_mask_blend_epi32(take, at, _mm512_add_epi32(i0, _mm512_set1_epi32(step[q])));
        }
        _mm512_storeu_ps(y + o + c, cur);
        _mm512_storeu_si512(argmax + o + c, at);
    }
}

__attribute__((target("avx512f"))) static void forward_row_avx512(const Pool2dShape *s,
                                                                 const float *xr, int row0,
                                                                 float *y, int32_t *argmax,
                                                                 int n, int oh) {
    int hb, he;
    window_rows(s, oh, &hb, &he);
    const int rows_whole = s->kh == 2 && s->kw == 2 && s->c % 16 == 0 && he - hb == 2;
    for (int ow = 0; ow < s->ow; ow++) {
        const int w0 = ow * s->stride_w - s->pad_left;
        if (rows_whole && w0 >= 0 && w0 + 2 <= s->w)
            window_2x2_avx512(s, xr, row0, y, argmax, n, oh, ow, hb);
        else
            window_body(s, xr, row0, y, argmax, n, oh, ow, hb, he);
    }
}
static ForwardRowFn forward_row_fn(void) {
    return KERNELS_PICK_CLONE(forward_row_base, forward_row_avx2, forward_row_avx512);
}
#else
static ForwardRowFn forward_row_fn(void) { return forward_row_base; }
#endif

void maxpool2d_forward(const Pool2dShape *s, const float *x, float *y, int32_t *argmax) {
    const ForwardRowFn row = forward_row_fn();
    const size_t in_img = (size_t)s->h * s->w * s->c;
    KERNELS_OMP(omp parallel for collapse(2) schedule(static) if ((size_t)s->n * s->h * s->w * s->c >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->oh; oh++) row(s, x + n * in_img, 0, y, argmax, n, oh);
}

void maxpool2d_forward_row(const Pool2dShape *s, const float *xr, int row0, int n, int oh,
                           float *y, int32_t *argmax) {
    forward_row_fn()(s, xr, row0, y, argmax, n, oh);
}

/* g's bits and mask's: g, or +0 where mask is 0. */
static inline __attribute__((always_inline)) float masked(float g, uint32_t mask) {
    uint32_t bits;
    memcpy(&bits, &g, sizeof bits);
    bits &= mask;
    memcpy(&g, &bits, sizeof g);
    return g;
}

/* dy[i], or +0 where y is given and y[i] <= 0: the ReLU stopped the window's winner. A bit mask
 * rather than a select, which the compiler made a branch (y > 0 is a coin toss on ReLU
 * outputs: the branch's mispredictions doubled the pass). */
static inline __attribute__((always_inline)) float passed(const float *dy, const float *y,
                                                         size_t i) {
    return y ? masked(dy[i], -(uint32_t)(y[i] > 0.0f)) : dy[i];
}

/* Rows [r0, r1) of image n's dx into dxr: zero, then each window whose winner lies there adds its
 * passed gradient, the windows in memory order. A stopped winner adds +0, the same bits: dx
 * starts at +0 and no sum of these adds makes a -0 for +0 to change. */
static void scatter_rows(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                         const float *y, int n, int r0, int r1, float *dxr) {
    const size_t in_row = (size_t)s->w * s->c, out_row = (size_t)s->ow * s->c;
    const int64_t first = ((int64_t)n * s->h + r0) * (int64_t)in_row; /* dxr[0] in [N,H,W,C] */
    const uint64_t len = (uint64_t)(r1 - r0) * in_row;
    memset(dxr, 0, len * sizeof *dxr);
    for (int oh = 0; oh < s->oh; oh++) {
        const int h0 = oh * s->stride_h - s->pad_top;
        if (h0 >= r1 || h0 + s->kh <= r0) continue; /* no window row in [r0, r1) */
        const size_t i0 = ((size_t)n * s->oh + oh) * out_row;
        for (size_t i = i0; i < i0 + out_row; i++) {
            const uint64_t at = (uint64_t)((int64_t)argmax[i] - first);
            if (at < len) dxr[at] += passed(dy, y, i); /* all, for whole images */
        }
    }
}

/* Whether the windows tile the input: each element in exactly one window. */
static int windows_tile(const Pool2dShape *s) {
    return s->stride_h == s->kh && s->stride_w == s->kw && s->pad_top == 0 &&
           s->pad_left == 0 && s->oh * s->kh == s->h && s->ow * s->kw == s->w;
}

/* scatter_rows where the windows tile the input and [r0, r1) holds whole windows: each element
 * written once, the window's passed gradient + 0 where it is the window's argmax, else +0 (0 + g
 * is g + 0 for every g, -0 included), vectorised over the channels. Only into a buffer in cache:
 * over whole batches (10 MB) the vector stores read each line first, where memset does not, and
 * this pass was slower than memset and scatter (docs/kernels-cpu.md, steps 49 and 53). */
static inline __attribute__((always_inline)) void
tiled_rows_body(const Pool2dShape *s, const float *dy, const int32_t *argmax, const float *y,
                int n, int r0, int r1, float *dxr) {
    const int C = s->c;
    for (int oh = r0 / s->kh; oh < r1 / s->kh; oh++)
        for (int ow = 0; ow < s->ow; ow++) {
            const size_t o = (((size_t)n * s->oh + oh) * s->ow + ow) * C;
            for (int ih = oh * s->kh; ih < (oh + 1) * s->kh; ih++)
                for (int iw = ow * s->kw; iw < (ow + 1) * s->kw; iw++) {
                    const int32_t at = (int32_t)((((size_t)n * s->h + ih) * s->w + iw) * C);
                    float *d = dxr + ((size_t)(ih - r0) * s->w + iw) * C;
                    /* branch-free bit masks, so the loops vectorise (a select was made a
                     * branch); a stopped or losing element's 0 bits + 0 give +0 */
                    const float *g = dy + o;
                    const int32_t *a = argmax + o;
                    if (y) {
                        const float *yo = y + o;
                        for (int c = 0; c < C; c++)
                            d[c] = masked(g[c], -(uint32_t)(a[c] == at + c) &
                                                    -(uint32_t)(yo[c] > 0.0f)) + 0.0f;
                    } else {
                        for (int c = 0; c < C; c++)
                            d[c] = masked(g[c], -(uint32_t)(a[c] == at + c)) + 0.0f;
                    }
                }
        }
}

typedef void (*RowsFn)(const Pool2dShape *, const float *, const int32_t *, const float *, int,
                       int, int, float *);

static void tiled_rows_base(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                            const float *y, int n, int r0, int r1, float *dxr) {
    tiled_rows_body(s, dy, argmax, y, n, r0, r1, dxr);
}
#if KERNELS_HAVE_AVX2_CLONES
__attribute__((target("avx2"))) static void tiled_rows_avx2(const Pool2dShape *s, const float *dy,
                                                           const int32_t *argmax, const float *y,
                                                           int n, int r0, int r1, float *dxr) {
    tiled_rows_body(s, dy, argmax, y, n, r0, r1, dxr);
}
__attribute__((target("avx512f"))) static void tiled_rows_avx512(const Pool2dShape *s,
                                                                const float *dy,
                                                                const int32_t *argmax,
                                                                const float *y, int n, int r0,
                                                                int r1, float *dxr) {
    tiled_rows_body(s, dy, argmax, y, n, r0, r1, dxr);
}
static RowsFn tiled_rows_fn(void) {
    return KERNELS_PICK_CLONE(tiled_rows_base, tiled_rows_avx2, tiled_rows_avx512);
}
#else
static RowsFn tiled_rows_fn(void) { return tiled_rows_base; }
#endif

void maxpool2d_backward_rows(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                             const float *y, int n, int r0, int r1, float *dxr) {
    if (windows_tile(s) && r0 % s->kh == 0 && r1 % s->kh == 0)
        tiled_rows_fn()(s, dy, argmax, y, n, r0, r1, dxr);
    else
        scatter_rows(s, dy, argmax, y, n, r0, r1, dxr);
}

/* Both backwards: y == NULL passes every window, else only those with y > 0. */
static void pool_backward(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                          const float *y, float *dx) {
    const size_t in_img = (size_t)s->h * s->w * s->c;
    /* Overlapping windows may route several dy into one dx, but only within an image: threads
     * split images, and within one the adds run in order. The scatter, not the tiled pass, over
     * whole images (above). */
    KERNELS_OMP(omp parallel for schedule(static) if (s->n * in_img >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (int n = 0; n < s->n; n++)
        scatter_rows(s, dy, argmax, y, n, 0, s->h, dx + n * in_img);
}

void maxpool2d_backward(const Pool2dShape *s, const float *dy, const int32_t *argmax, float *dx) {
    pool_backward(s, dy, argmax, NULL, dx);
}

void maxpool2d_relu_backward_from_y(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                                    const float *y, float *dx) {
    pool_backward(s, dy, argmax, y, dx);
}
