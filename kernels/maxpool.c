/* maxpool.c: 2-D max pooling on NHWC activations, with the argmax the backward pass routes
 * gradients through. */
#include "kernels/kernels.h"

#include <string.h>

void pool2d_shape_init(Pool2dShape *s, int n, int h, int w, int c, int kh, int kw,
                       int stride_h, int stride_w, int same) {
    s->n = n; s->h = h; s->w = w; s->c = c;
    s->kh = kh; s->kw = kw; s->stride_h = stride_h; s->stride_w = stride_w;
    conv_output_dim(h, kh, stride_h, same, &s->oh, &s->pad_top);
    conv_output_dim(w, kw, stride_w, same, &s->ow, &s->pad_left);
}

void maxpool2d_forward(const Pool2dShape *s, const float *x, float *y, int32_t *argmax) {
    const int H = s->h, W = s->w, C = s->c;
#ifdef _OPENMP
#pragma omp parallel for collapse(2) schedule(static)
#endif
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->oh; oh++) {
            int h0 = oh * s->stride_h - s->pad_top;
            int hb = h0 < 0 ? 0 : h0, he = h0 + s->kh > H ? H : h0 + s->kh;
            for (int ow = 0; ow < s->ow; ow++) {
                int w0 = ow * s->stride_w - s->pad_left;
                int wb = w0 < 0 ? 0 : w0, we = w0 + s->kw > W ? W : w0 + s->kw;
                size_t o = (((size_t)n * s->oh + oh) * s->ow + ow) * C;
                for (int c = 0; c < C; c++) {
                    /* Window in row-major order; the first max wins (strict >). Padding is
                     * skipped, and every window holds at least one real element. */
                    size_t best = (((size_t)n * H + hb) * W + wb) * C + c;
                    float bv = x[best];
                    for (int ih = hb; ih < he; ih++)
                        for (int iw = wb; iw < we; iw++) {
                            size_t i = (((size_t)n * H + ih) * W + iw) * C + c;
                            if (x[i] > bv) { bv = x[i]; best = i; }
                        }
                    y[o + c] = bv;
                    argmax[o + c] = (int32_t)best;
                }
            }
        }
}

void maxpool2d_backward(const Pool2dShape *s, const float *dy, const int32_t *argmax, float *dx) {
    size_t nx = (size_t)s->n * s->h * s->w * s->c;
    size_t ny = (size_t)s->n * s->oh * s->ow * s->c;
    memset(dx, 0, nx * sizeof *dx);
    /* Sequential: overlapping windows may route several dy into one dx. */
    for (size_t i = 0; i < ny; i++) dx[argmax[i]] += dy[i];
}
