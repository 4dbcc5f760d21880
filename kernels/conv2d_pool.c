/* conv2d_pool.c: a conv + bias + ReLU + max pool as one op, on the CPU: the reference of the
 * CUDA twin (kernels/conv2d_pool.cu). Semantics in kernels.h.
 *
 * Layouts: x [N,H,W,C] (NHWC), w [KH,KW,C,K] (HWIO), the conv output [N,OH,OW,K] (virtual:
 * never stored), y and argmax [N,PH,PW,K], dw like w, db [K]. */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
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

void conv2d_relu_maxpool_backward_filter(const Conv2dShape *cs, const Pool2dShape *ps,
                                         const float *x, const float *y, const int32_t *argmax,
                                         const float *dy, float *dw, float *db) {
    const int K = cs->k, taps = cs->kh * cs->kw * cs->c;
    const size_t outputs = (size_t)ps->n * ps->oh * ps->ow * K;
    double *sw = calloc((size_t)taps * K, sizeof *sw), *sb = calloc((size_t)K, sizeof *sb);
    if (!sw || !sb) abort(); /* a reference kernel: the sizes are a test's */
    for (size_t o = 0; o < outputs; o++) {
        if (!(y[o] > 0.0f)) continue; /* the ReLU passed nothing at the winner */
        const double g = dy[o];
        const int k = (int)(o % (size_t)K);
        const size_t pos = (size_t)argmax[o] / (size_t)K; /* (n*OH + oh)*OW + ow */
        const int ow = (int)(pos % (size_t)cs->ow), oh = (int)(pos / (size_t)cs->ow % (size_t)cs->oh);
        const int n = (int)(pos / ((size_t)cs->ow * cs->oh));
        const int ih0 = oh * cs->stride_h - cs->pad_top, iw0 = ow * cs->stride_w - cs->pad_left;
        sb[k] += g;
        for (int kh = 0; kh < cs->kh; kh++)
            for (int kw = 0; kw < cs->kw; kw++) {
                const int ih = ih0 + kh, iw = iw0 + kw;
                if (ih < 0 || ih >= cs->h || iw < 0 || iw >= cs->w) continue;
                const float *xp = x + (((size_t)n * cs->h + ih) * cs->w + iw) * cs->c;
                for (int c = 0; c < cs->c; c++)
                    sw[((size_t)(kh * cs->kw + kw) * cs->c + c) * K + k] += g * xp[c];
            }
    }
    for (size_t i = 0; i < (size_t)taps * K; i++) dw[i] = (float)sw[i];
    if (db)
        for (int k = 0; k < K; k++) db[k] = (float)sb[k];
    free(sw);
    free(sb);
}

/* The range of pooled windows [*lo, *hi] along one dimension whose cells can hold conv outputs
 * in [a, b] (windows of stride s >= size, leading padding pad: output o is in window
 * (o + pad) / s or in none), clipped to [0, count). Empty (*lo > *hi) when a > b. */
static void windows_over(int a, int b, int s, int pad, int count, int *lo, int *hi) {
    *lo = (a + pad) / s;
    *hi = (b + pad) / s;
    if (*hi > count - 1) *hi = count - 1;
    if (a > b) *lo = *hi + 1;
}

void conv2d_relu_maxpool_backward_data(const Conv2dShape *cs, const Pool2dShape *ps,
                                       const float *w, const float *y, const int32_t *argmax,
                                       const float *dy, float *dx) {
    const int K = cs->k, C = cs->c;
    for (int n = 0; n < cs->n; n++)
        for (int ih = 0; ih < cs->h; ih++)
            for (int iw = 0; iw < cs->w; iw++) {
                /* the conv outputs whose window holds this pixel (stride 1) */
                int oha = ih + cs->pad_top - (cs->kh - 1), ohb = ih + cs->pad_top;
                int owa = iw + cs->pad_left - (cs->kw - 1), owb = iw + cs->pad_left;
                if (oha < 0) oha = 0;
                if (ohb > cs->oh - 1) ohb = cs->oh - 1;
                if (owa < 0) owa = 0;
                if (owb > cs->ow - 1) owb = cs->ow - 1;
                int pha, phb, pwa, pwb;
                windows_over(oha, ohb, ps->stride_h, ps->pad_top, ps->oh, &pha, &phb);
                windows_over(owa, owb, ps->stride_w, ps->pad_left, ps->ow, &pwa, &pwb);
                float *out = dx + (((size_t)n * cs->h + ih) * cs->w + iw) * C;
                for (int c = 0; c < C; c++) out[c] = 0.0f;
                for (int ph = pha; ph <= phb; ph++)
                    for (int pw = pwa; pw <= pwb; pw++)
                        for (int k = 0; k < K; k++) {
                            const size_t o = (((size_t)n * ps->oh + ph) * ps->ow + pw) * K + k;
                            if (!(y[o] > 0.0f)) continue; /* the ReLU passed nothing */
                            const size_t pos = (size_t)argmax[o] / (size_t)K;
                            const int ow = (int)(pos % (size_t)cs->ow);
                            const int oh = (int)(pos / (size_t)cs->ow % (size_t)cs->oh);
                            if (oh < oha || oh > ohb || ow < owa || ow > owb) continue;
                            const int kh = ih + cs->pad_top - oh, kw = iw + cs->pad_left - ow;
                            const float *wp = w + ((size_t)(kh * cs->kw + kw) * C) * K + k;
                            for (int c = 0; c < C; c++)
                                out[c] = fmaf(dy[o], wp[(size_t)c * K], out[c]);
                        }
            }
}
