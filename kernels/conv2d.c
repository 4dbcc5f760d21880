/* conv2d.c: 2-D convolution (cross-correlation, as TF) on NHWC activations and HWIO kernels.
 *
 *   x  [N,H,W,C]      w  [KH,KW,C,K]      y  [N,OH,OW,K]
 *   y[n,oh,ow,k] = b[k] + sum_{kh,kw,c} x[n, oh*sh - pad_top + kh, ow*sw - pad_left + kw, c]
 *                                       * w[kh,kw,c,k]      (outside the input: zero)
 *
 * The *_reference functions are the direct loops; the others are what core/ calls. */
#include "kernels/kernels.h"

#include <string.h>

void conv_output_dim(int in, int k, int stride, int same, int *out, int *pad_before) {
    if (same) {
        *out = (in + stride - 1) / stride;
        int total = (*out - 1) * stride + k - in;
        *pad_before = total > 0 ? total / 2 : 0; /* the odd row/col goes after */
    } else {
        *out = in >= k ? (in - k) / stride + 1 : 0;
        *pad_before = 0;
    }
}

void conv2d_shape_init(Conv2dShape *s, int n, int h, int w, int c, int kh, int kw, int k,
                       int stride_h, int stride_w, int same) {
    s->n = n; s->h = h; s->w = w; s->c = c;
    s->kh = kh; s->kw = kw; s->k = k;
    s->stride_h = stride_h; s->stride_w = stride_w;
    conv_output_dim(h, kh, stride_h, same, &s->oh, &s->pad_top);
    conv_output_dim(w, kw, stride_w, same, &s->ow, &s->pad_left);
}

/* ---- reference: direct loops --------------------------------------------------------------- */

void conv2d_forward_reference(const Conv2dShape *s, const float *x, const float *w,
                              const float *b, float *y) {
    const int C = s->c, K = s->k;
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                float *yo = y + (((size_t)n * s->oh + oh) * s->ow + ow) * K;
                for (int k = 0; k < K; k++) yo[k] = b ? b[k] : 0.0f;
                for (int kh = 0; kh < s->kh; kh++) {
                    int ih = oh * s->stride_h - s->pad_top + kh;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kw = 0; kw < s->kw; kw++) {
                        int iw = ow * s->stride_w - s->pad_left + kw;
                        if (iw < 0 || iw >= s->w) continue;
                        const float *xi = x + (((size_t)n * s->h + ih) * s->w + iw) * C;
                        const float *wk = w + ((size_t)kh * s->kw + kw) * C * K;
                        for (int c = 0; c < C; c++)
                            for (int k = 0; k < K; k++) yo[k] += xi[c] * wk[(size_t)c * K + k];
                    }
                }
            }
}

void conv2d_backward_data_reference(const Conv2dShape *s, const float *dy, const float *w,
                                    float *dx) {
    const int C = s->c, K = s->k;
    memset(dx, 0, (size_t)s->n * s->h * s->w * C * sizeof *dx);
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                const float *dyo = dy + (((size_t)n * s->oh + oh) * s->ow + ow) * K;
                for (int kh = 0; kh < s->kh; kh++) {
                    int ih = oh * s->stride_h - s->pad_top + kh;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kw = 0; kw < s->kw; kw++) {
                        int iw = ow * s->stride_w - s->pad_left + kw;
                        if (iw < 0 || iw >= s->w) continue;
                        float *dxi = dx + (((size_t)n * s->h + ih) * s->w + iw) * C;
                        const float *wk = w + ((size_t)kh * s->kw + kw) * C * K;
                        for (int c = 0; c < C; c++) {
                            float acc = 0.0f;
                            for (int k = 0; k < K; k++) acc += dyo[k] * wk[(size_t)c * K + k];
                            dxi[c] += acc;
                        }
                    }
                }
            }
}

void conv2d_backward_filter_reference(const Conv2dShape *s, const float *x, const float *dy,
                                      float *dw, float *db) {
    const int C = s->c, K = s->k;
    memset(dw, 0, (size_t)s->kh * s->kw * C * K * sizeof *dw);
    if (db) memset(db, 0, (size_t)K * sizeof *db);
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                const float *dyo = dy + (((size_t)n * s->oh + oh) * s->ow + ow) * K;
                if (db)
                    for (int k = 0; k < K; k++) db[k] += dyo[k];
                for (int kh = 0; kh < s->kh; kh++) {
                    int ih = oh * s->stride_h - s->pad_top + kh;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kw = 0; kw < s->kw; kw++) {
                        int iw = ow * s->stride_w - s->pad_left + kw;
                        if (iw < 0 || iw >= s->w) continue;
                        const float *xi = x + (((size_t)n * s->h + ih) * s->w + iw) * C;
                        float *dwk = dw + ((size_t)kh * s->kw + kw) * C * K;
                        for (int c = 0; c < C; c++)
                            for (int k = 0; k < K; k++) dwk[(size_t)c * K + k] += xi[c] * dyo[k];
                    }
                }
            }
}

/* ---- what core/ calls ---------------------------------------------------------------------- */

/* The fast kernels lower a chunk of whole images at a time to an im2col panel
 * [rows = images*OH*OW, KH*KW*C] in the workspace, about CONV_CHUNK_ROWS rows per chunk. */
#define CONV_CHUNK_ROWS 4096

static int conv_chunk_images(const Conv2dShape *s) {
    int per_image = s->oh * s->ow > 0 ? s->oh * s->ow : 1;
    int imgs = (CONV_CHUNK_ROWS + per_image - 1) / per_image;
    return imgs < s->n ? imgs : (s->n > 0 ? s->n : 1);
}

size_t conv2d_workspace_floats(const Conv2dShape *s) {
    return (size_t)conv_chunk_images(s) * s->oh * s->ow * s->kh * s->kw * s->c;
}

void conv2d_forward(const Conv2dShape *s, const float *x, const float *w, const float *b,
                    float *y, float *ws) {
    (void)ws;
    conv2d_forward_reference(s, x, w, b, y);
}

void conv2d_backward_data(const Conv2dShape *s, const float *dy, const float *w, float *dx,
                          float *ws) {
    (void)ws;
    conv2d_backward_data_reference(s, dy, w, dx);
}

void conv2d_backward_filter(const Conv2dShape *s, const float *x, const float *dy, float *dw,
                            float *db, float *ws) {
    (void)ws;
    conv2d_backward_filter_reference(s, x, dy, dw, db);
}
