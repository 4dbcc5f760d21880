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

/* One output row (image n, row oh), its input rows read from xr: input (ih, iw, c) of image n
 * at xr[((ih - row0) * W + iw) * C + c] (the whole input: xr = x + n*H*W*C, row0 = 0). The
 * argmax still indexes the whole input [N,H,W,C]. */
static inline __attribute__((always_inline)) void
forward_row_body(const Pool2dShape *s, const float *xr, int row0, float *y, int32_t *argmax,
                 int n, int oh) {
    const int H = s->h, W = s->w, C = s->c;
    int h0 = oh * s->stride_h - s->pad_top;
    int hb = h0 < 0 ? 0 : h0, he = h0 + s->kh > H ? H : h0 + s->kh;
    for (int ow = 0; ow < s->ow; ow++) {
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
}

typedef void (*ForwardRowFn)(const Pool2dShape *, const float *, int, float *, int32_t *, int,
                             int);

static void forward_row_base(const Pool2dShape *s, const float *xr, int row0, float *y,
                             int32_t *argmax, int n, int oh) {
    forward_row_body(s, xr, row0, y, argmax, n, oh);
}
#if KERNELS_HAVE_AVX2_CLONES
/* Compares and selects: exact at any width. The release build's SSE2 loop took ~4% of the MNIST
 * step (docs/kernels-cpu.md step 34). */
__attribute__((target("avx2"))) static void forward_row_avx2(const Pool2dShape *s,
                                                            const float *xr, int row0, float *y,
                                                            int32_t *argmax, int n, int oh) {
    forward_row_body(s, xr, row0, y, argmax, n, oh);
}
__attribute__((target("avx512f"))) static void forward_row_avx512(const Pool2dShape *s,
                                                                 const float *xr, int row0,
                                                                 float *y, int32_t *argmax,
                                                                 int n, int oh) {
    forward_row_body(s, xr, row0, y, argmax, n, oh);
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

/* Both backwards: y == NULL passes every window, else only those with y > 0. */
static void pool_backward(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                          const float *y, float *dx) {
    const size_t in_img = (size_t)s->h * s->w * s->c, out_img = (size_t)s->oh * s->ow * s->c;
    /* Overlapping windows may route several dy into one dx, but only within an image: threads
     * split images, and within one the adds run in order. */
    KERNELS_OMP(omp parallel for schedule(static) if (s->n * in_img >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (int n = 0; n < s->n; n++) {
        memset(dx + n * in_img, 0, in_img * sizeof *dx);
        /* A stopped winner adds +0 rather than nothing, without a branch (y > 0 is a coin
         * toss on ReLU outputs: the branch's mispredictions doubled the pass). The same bits:
         * dx starts at +0 and no sum of these adds makes a -0 for +0 to change. */
        for (size_t i = n * out_img; i < (n + 1) * out_img; i++) {
            float g = dy[i];
            if (y) { /* g's bits masked by the compare: the compiler made a select a branch */
                uint32_t bits;
                memcpy(&bits, &g, sizeof bits);
                bits &= -(uint32_t)(y[i] > 0.0f);
                memcpy(&g, &bits, sizeof g);
            }
            dx[argmax[i]] += g;
        }
    }
}

void maxpool2d_backward(const Pool2dShape *s, const float *dy, const int32_t *argmax, float *dx) {
    pool_backward(s, dy, argmax, NULL, dx);
}

void maxpool2d_relu_backward_from_y(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                                    const float *y, float *dx) {
    pool_backward(s, dy, argmax, y, dx);
}
