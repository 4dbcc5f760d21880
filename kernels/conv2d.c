/* conv2d.c: 2-D convolution (cross-correlation, as TF) on NHWC activations and HWIO kernels.
 *
 *   x  [N,H,W,C]      w  [KH,KW,C,K]      y  [N,OH,OW,K]
 *   y[n,oh,ow,k] = b[k] + sum_{kh,kw,c} x[n, oh*sh - pad_top + kh, ow*sw - pad_left + kw, c]
 *                                       * w[kh,kw,c,k]      (outside the input: zero)
 *
 * The *_reference functions are the direct loops; the others are what core/ calls. */
#include "kernels/kernels.h"
#include "kernels/parallel.h"

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

/* ---- fast: im2col + SGEMM ----------------------------------------------------------------- */
/* A chunk of whole images is lowered to an im2col panel in the workspace:
 *   col [rows = nb*OH*OW, KKC = KH*KW*C], row (n,oh,ow), column (kh,kw,c)  (HWIO's row order)
 * so that  y_chunk[rows,K] = col * w[KKC,K],  dcol = dy_chunk * w^T  (scattered back by
 * col2im),  dw = sum over chunks of col^T * dy_chunk. The chunk size depends only on the shape,
 * so every sum has a fixed order: results do not depend on the thread count. */
#define CONV_CHUNK_ROWS 4096

static int conv_chunk_images(const Conv2dShape *s) {
    int per_image = s->oh * s->ow > 0 ? s->oh * s->ow : 1;
    int imgs = (CONV_CHUNK_ROWS + per_image - 1) / per_image;
    return imgs < s->n ? imgs : (s->n > 0 ? s->n : 1);
}

size_t conv2d_workspace_floats(const Conv2dShape *s) {
    return (size_t)conv_chunk_images(s) * s->oh * s->ow * s->kh * s->kw * s->c;
}

/* A 1x1, stride-1, unpadded conv is a plain GEMM on x itself: no im2col. */
static int conv_is_pointwise(const Conv2dShape *s) {
    return s->kh == 1 && s->kw == 1 && s->stride_h == 1 && s->stride_w == 1 && s->pad_top == 0 &&
           s->pad_left == 0 && s->oh == s->h && s->ow == s->w;
}

/* Valid kernel columns [*kw0, *kw1) for output column ow; returns the input column of kw = 0. */
static int conv_kw_range(const Conv2dShape *s, int ow, int *kw0, int *kw1) {
    int iw0 = ow * s->stride_w - s->pad_left;
    *kw0 = iw0 < 0 ? -iw0 : 0;
    *kw1 = s->w - iw0 < s->kw ? s->w - iw0 : s->kw;
    if (*kw1 < *kw0) *kw1 = *kw0;
    return iw0;
}

/* col = im2col of images [n0, n0+nb). Along kw the input columns are adjacent, so each kernel
 * row is one contiguous copy of (valid kw) * C floats plus zeros for the padding. */
static void im2col(const Conv2dShape *s, const float *x, int n0, int nb, float *col) {
    const int C = s->c, KWC = s->kw * C, KKC = s->kh * KWC;
    const int rows = nb * s->oh * s->ow;
    KERNELS_OMP(omp parallel for schedule(static) if ((size_t)rows * KKC >= 65536))
    for (int row = 0; row < rows; row++) {
        const int ow = row % s->ow, t = row / s->ow, oh = t % s->oh, n = n0 + t / s->oh;
        float *dst = col + (size_t)row * KKC;
        int kw0, kw1;
        const int iw0 = conv_kw_range(s, ow, &kw0, &kw1);
        for (int kh = 0; kh < s->kh; kh++, dst += KWC) {
            const int ih = oh * s->stride_h - s->pad_top + kh;
            if (ih < 0 || ih >= s->h) {
                memset(dst, 0, (size_t)KWC * sizeof *dst);
                continue;
            }
            const float *src = x + (((size_t)n * s->h + ih) * s->w + iw0 + kw0) * C;
            memset(dst, 0, (size_t)kw0 * C * sizeof *dst);
            memcpy(dst + kw0 * C, src, (size_t)(kw1 - kw0) * C * sizeof *dst);
            memset(dst + kw1 * C, 0, (size_t)(s->kw - kw1) * C * sizeof *dst);
        }
    }
}

/* dx[images n0..n0+nb) = col2im(col): every col element added back to the input element it was
 * copied from. Images are independent, so threads split images; within one image the adds run
 * in row order. */
static void col2im(const Conv2dShape *s, const float *col, int n0, int nb, float *dx) {
    const int C = s->c, KWC = s->kw * C, KKC = s->kh * KWC;
    const size_t img = (size_t)s->h * s->w * C;
    KERNELS_OMP(omp parallel for schedule(static) if ((size_t)nb * s->oh * s->ow * KKC >= 65536))
    for (int b = 0; b < nb; b++) {
        float *dxi = dx + (size_t)(n0 + b) * img;
        memset(dxi, 0, img * sizeof *dxi);
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++) {
                const float *src = col + ((size_t)(b * s->oh + oh) * s->ow + ow) * KKC;
                int kw0, kw1;
                const int iw0 = conv_kw_range(s, ow, &kw0, &kw1);
                for (int kh = 0; kh < s->kh; kh++, src += KWC) {
                    const int ih = oh * s->stride_h - s->pad_top + kh;
                    if (ih < 0 || ih >= s->h) continue;
                    float *d = dxi + ((size_t)ih * s->w + iw0 + kw0) * C;
                    const float *sv = src + kw0 * C;
                    const int len = (kw1 - kw0) * C;
                    for (int q = 0; q < len; q++) d[q] += sv[q];
                }
            }
    }
}

void conv2d_forward(const Conv2dShape *s, const float *x, const float *w, const float *b,
                    float *y, float *ws) {
    const int KKC = s->kh * s->kw * s->c, K = s->k, chunk = conv_chunk_images(s);
    const size_t in_img = (size_t)s->h * s->w * s->c, out_rows_img = (size_t)s->oh * s->ow;
    for (int n0 = 0; n0 < s->n; n0 += chunk) {
        const int nb = s->n - n0 < chunk ? s->n - n0 : chunk;
        const int rows = nb * (int)out_rows_img;
        const float *col = x + n0 * in_img;
        if (!conv_is_pointwise(s)) {
            im2col(s, x, n0, nb, ws);
            col = ws;
        }
        float *yc = y + (size_t)n0 * out_rows_img * K;
        sgemm(0, 0, rows, K, KKC, 1.0f, col, KKC, w, K, 0.0f, yc, K);
        if (b) {
            KERNELS_OMP(omp parallel for schedule(static) if ((size_t)rows * K >= 65536))
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < K; k++) yc[(size_t)r * K + k] += b[k];
        }
    }
}

void conv2d_backward_data(const Conv2dShape *s, const float *dy, const float *w, float *dx,
                          float *ws) {
    const int KKC = s->kh * s->kw * s->c, K = s->k, chunk = conv_chunk_images(s);
    const size_t in_img = (size_t)s->h * s->w * s->c, out_rows_img = (size_t)s->oh * s->ow;
    for (int n0 = 0; n0 < s->n; n0 += chunk) {
        const int nb = s->n - n0 < chunk ? s->n - n0 : chunk;
        const int rows = nb * (int)out_rows_img;
        const float *dyc = dy + (size_t)n0 * out_rows_img * K;
        if (conv_is_pointwise(s)) { /* dx_chunk = dy_chunk * w^T directly */
            sgemm(0, 1, rows, KKC, K, 1.0f, dyc, K, w, K, 0.0f, dx + n0 * in_img, KKC);
            continue;
        }
        sgemm(0, 1, rows, KKC, K, 1.0f, dyc, K, w, K, 0.0f, ws, KKC);
        col2im(s, ws, n0, nb, dx);
    }
}

void conv2d_backward_filter(const Conv2dShape *s, const float *x, const float *dy, float *dw,
                            float *db, float *ws) {
    const int KKC = s->kh * s->kw * s->c, K = s->k, chunk = conv_chunk_images(s);
    const size_t in_img = (size_t)s->h * s->w * s->c, out_rows_img = (size_t)s->oh * s->ow;
    if (s->n <= 0) memset(dw, 0, (size_t)KKC * K * sizeof *dw);
    for (int n0 = 0; n0 < s->n; n0 += chunk) {
        const int nb = s->n - n0 < chunk ? s->n - n0 : chunk;
        const int rows = nb * (int)out_rows_img;
        const float *col = x + n0 * in_img;
        if (!conv_is_pointwise(s)) {
            im2col(s, x, n0, nb, ws);
            col = ws;
        }
        sgemm(1, 0, KKC, K, rows, 1.0f, col, KKC, dy + (size_t)n0 * out_rows_img * K, K,
              n0 == 0 ? 0.0f : 1.0f, dw, K);
    }
    if (db) { /* column sums of dy[N*OH*OW, K], rows in order */
        const size_t rows = (size_t)s->n * out_rows_img;
        for (int k = 0; k < K; k++) db[k] = 0.0f;
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < K; k++) db[k] += dy[r * K + k];
    }
}
