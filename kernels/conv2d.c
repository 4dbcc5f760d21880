/* conv2d.c: 2-D convolution (cross-correlation, as TF) on NHWC activations and HWIO kernels.
 *
 *   x  [N,H,W,C]      w  [KH,KW,C,K]      y  [N,OH,OW,K]
 *   y[n,oh,ow,k] = b[k] + sum_{kh,kw,c} x[n, oh*sh - pad_top + kh, ow*sw - pad_left + kw, c]
 *                                       * w[kh,kw,c,k]      (outside the input: zero)
 *
 * The *_reference functions are the direct loops; the others are what core/ calls. */
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/sgemm_microkernel.h"
#include "kernels/conv2d_direct.h"
#include "kernels/conv2d_sparse.h"
#include "kernels/conv_window.h"
#include "kernels/maxpool_row.h"
#include "kernels/relu_serial.h"

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

/* ---- fast: im2col + SGEMM, threads over images ------------------------------------------- */
/* One image at a time is lowered to an im2col panel:
 *   col [rows = OH*OW, KKC = KH*KW*C], row (oh,ow), column (kh,kw,c)  (HWIO's row order)
 * so that  y_img[rows,K] = col * w[KKC,K],  dcol = dy_img * w^T  (scattered back by col2im),
 * dw = sum over images of col^T * dy_img. Each call is one parallel region: threads take whole
 * images (dynamically) and run single-threaded GEMMs on their own panel (one image of conv2 is
 * 627 KiB: it stays in L2 between im2col and the GEMM).
 * Workspace: CONV_MAX_THREADS panels, the packed weights (forward, backward-data), then the
 * filter gradient's per-group partial sums.
 * The filter gradient sums images in CONV_FILTER_GROUPS fixed groups and adds the groups in
 * order, so no sum depends on the thread count. */
#define CONV_MAX_THREADS 8
#define CONV_FILTER_GROUPS 8

/* A thread's panel: one image's im2col, or the forward's nonzero lists when larger. */
static size_t conv_panel_floats(const Conv2dShape *s) {
    const size_t col = (size_t)s->oh * s->ow * s->kh * s->kw * s->c;
    const size_t lists = conv2d_sparse_image_floats(s);
    return col > lists ? col : lists;
}

/* The weights packed once per call, for forward (w) or backward-data (w^T). */
static size_t conv_wpack_floats(const Conv2dShape *s) {
    const int KKC = s->kh * s->kw * s->c;
    size_t fwd = sgemm_packed_b_floats(KKC, s->k), data = sgemm_packed_b_floats(s->k, KKC);
    return fwd > data ? fwd : data;
}

/* Images per filter-gradient group and the number of groups. */
static int conv_filter_groups(const Conv2dShape *s, int *per_group) {
    int n = s->n > 0 ? s->n : 1;
    *per_group = (n + CONV_FILTER_GROUPS - 1) / CONV_FILTER_GROUPS;
    return (n + *per_group - 1) / *per_group;
}

/* Independent of s->n: callers size the workspace for their largest batch and then pass
 * smaller ones, which may have more groups (a batch of 9 has 5 groups of 2, one of 8 has 8). */
size_t conv2d_workspace_floats(const Conv2dShape *s) {
    return CONV_MAX_THREADS * conv_panel_floats(s) + conv_wpack_floats(s) +
           (size_t)CONV_FILTER_GROUPS * ((size_t)s->kh * s->kw * s->c * s->k + s->k);
}

/* Threads for a conv call: at most one per image and per workspace panel; one for tiny work. */
static int conv_threads(const Conv2dShape *s) {
    double macs = (double)s->n * s->oh * s->ow * s->kh * s->kw * s->c * s->k;
    const int t = kernels_threads_for(macs, s->n);
    return t > CONV_MAX_THREADS ? CONV_MAX_THREADS : t;
}

/* A 1x1, stride-1, unpadded conv is a plain GEMM on x itself: no im2col. */
static int conv_is_pointwise(const Conv2dShape *s) {
    return s->kh == 1 && s->kw == 1 && s->stride_h == 1 && s->stride_w == 1 && s->pad_top == 0 &&
           s->pad_left == 0 && s->oh == s->h && s->ow == s->w;
}

/* Whether the conv takes the direct loops (few input channels, e.g. conv1) over im2col. */
static int conv_takes_direct(const Conv2dShape *s) {
    return !conv_is_pointwise(s) && s->c <= CONV_DIRECT_MAX_C;
}

/* col = im2col of image xi [H,W,C]. Along kw the input columns are adjacent, so each kernel
 * row is one contiguous copy of (valid kw) * C floats plus zeros for the padding. */
static void im2col_image(const Conv2dShape *s, const float *xi, float *col) {
    const int C = s->c, KWC = s->kw * C;
    for (int oh = 0; oh < s->oh; oh++)
        for (int ow = 0; ow < s->ow; ow++) {
            int kw0, kw1;
            const int iw0 = conv_window_taps(ow, s->stride_w, s->pad_left, s->kw, s->w, &kw0, &kw1);
            for (int kh = 0; kh < s->kh; kh++, col += KWC) {
                const int ih = oh * s->stride_h - s->pad_top + kh;
                if (ih < 0 || ih >= s->h) {
                    memset(col, 0, (size_t)KWC * sizeof *col);
                    continue;
                }
                const float *src = xi + ((size_t)ih * s->w + iw0 + kw0) * C;
                memset(col, 0, (size_t)kw0 * C * sizeof *col);
                memcpy(col + kw0 * C, src, (size_t)(kw1 - kw0) * C * sizeof *col);
                memset(col + kw1 * C, 0, (size_t)(s->kw - kw1) * C * sizeof *col);
            }
        }
}

/* dxi [H,W,C] = col2im(col): every col element added back to the input element it was copied
 * from, in row order. */
static void col2im_image(const Conv2dShape *s, const float *col, float *dxi) {
    const int C = s->c, KWC = s->kw * C;
    memset(dxi, 0, (size_t)s->h * s->w * C * sizeof *dxi);
    for (int oh = 0; oh < s->oh; oh++)
        for (int ow = 0; ow < s->ow; ow++) {
            int kw0, kw1;
            const int iw0 = conv_window_taps(ow, s->stride_w, s->pad_left, s->kw, s->w, &kw0, &kw1);
            for (int kh = 0; kh < s->kh; kh++, col += KWC) {
                const int ih = oh * s->stride_h - s->pad_top + kh;
                if (ih < 0 || ih >= s->h) continue;
                float *d = dxi + ((size_t)ih * s->w + iw0 + kw0) * C;
                const float *sv = col + kw0 * C;
                const int len = (kw1 - kw0) * C;
                for (int q = 0; q < len; q++) d[q] += sv[q];
            }
        }
}

/* One image's conv output yi [OH*OW, K] as conv2d_forward makes it: the direct loops, the
 * image's nonzeros, or im2col into the thread's panel and a GEMM with w packed (wpack) by
 * sgemm_pack_b, on thread t of sgemm_serial_begin's. */
static void forward_image(const Conv2dShape *s, const float *xi, const float *w, const float *b,
                          const float *wpack, float *panel, int t, float *yi) {
    const int KKC = s->kh * s->kw * s->c, K = s->k, rows = s->oh * s->ow;
    if (conv_takes_direct(s)) {
        conv2d_direct_forward_image(s, xi, w, b, yi);
        return;
    }
    const float *col = xi;
    if (!conv_is_pointwise(s)) {
        /* An image with few enough nonzeros (behind a ReLU and a pool) takes only those.
         * Not for the direct loops' few channels: with one, a run holds at most KW
         * nonzeros, and the runs cost more than the direct multiplies (measured: conv1
         * at 19% nonzero, MNIST's share, 2.84 ms against 2.50). */
        if (conv2d_sparse_forward_image(s, xi, w, b, yi, panel)) return;
        im2col_image(s, xi, panel);
        col = panel;
    }
    sgemm_serial_packed_b(t, 0, rows, K, KKC, 1.0f, col, KKC, wpack, 0.0f, yi, K);
    if (b)
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < K; k++) yi[(size_t)r * K + k] += b[k];
}

void conv2d_forward(const Conv2dShape *s, const float *x, const float *w, const float *b,
                    float *y, float *ws) {
    const int KKC = s->kh * s->kw * s->c, K = s->k, rows = s->oh * s->ow;
    const size_t in_img = (size_t)s->h * s->w * s->c, panel = conv_panel_floats(s);
    const int threads = conv_threads(s);
    const int direct = conv_takes_direct(s);
    float *wpack = ws + CONV_MAX_THREADS * panel;
    if (sgemm_serial_begin(threads) != 0) { /* out of memory for GEMM buffers */
        conv2d_forward_reference(s, x, w, b, y);
        return;
    }
    if (!direct) sgemm_pack_b(0, KKC, K, w, K, wpack);
    KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (int n = 0; n < s->n; n++) {
        const int t = kernels_thread_id();
        forward_image(s, x + n * in_img, w, b, wpack, ws + t * panel, t, y + (size_t)n * rows * K);
    }
    sgemm_serial_end();
}

/* ---- conv + ReLU + max pool as one call (kernels.h) --------------------------------------
 * The conv output is never written to memory and read back twice (at batch 100 10 MB for
 * MNIST's conv1, 5 MB for conv2: docs/kernels-cpu.md, steps 47 and 72). Where the conv takes
 * the direct loops, each pooled row's conv rows go into a small buffer (conv1: 2 rows x 28 x 32
 * floats, 7 KB, in L1); otherwise (conv2: its nonzeros, or im2col and a GEMM) the image's whole
 * output (14 x 14 x 64 floats, 49 KB, in L2). Then the ReLU and the pool's rows from there. The
 * same calls on the same values as conv2d_forward, relu_forward and maxpool2d_forward, so the
 * same bits. */
#define POOL_ROWS_FLOATS 16384 /* the buffer: at most 64 KB, on the stack */

/* The conv output rows the buffer holds at once: a pooled row's (direct), or the image's. */
static size_t fused_rows_floats(const Conv2dShape *cs, const Pool2dShape *ps) {
    return (size_t)(conv_takes_direct(cs) ? ps->kh : cs->oh) * cs->ow * cs->k;
}

int conv2d_relu_maxpool_fused_fits(const Conv2dShape *cs, const Pool2dShape *ps) {
    return ps->n == cs->n && ps->h == cs->oh && ps->w == cs->ow && ps->c == cs->k &&
           fused_rows_floats(cs, ps) <= POOL_ROWS_FLOATS;
}

int conv2d_relu_maxpool_direct_fits(const Conv2dShape *cs, const Pool2dShape *ps) {
    return conv_takes_direct(cs) && conv2d_relu_maxpool_fused_fits(cs, ps);
}

void conv2d_relu_maxpool_forward_fused(const Conv2dShape *cs, const Pool2dShape *ps,
                                       const float *x, const float *w, const float *b, float *y,
                                       int32_t *argmax, float *ws) {
    const int KKC = cs->kh * cs->kw * cs->c, K = cs->k;
    const size_t in_img = (size_t)cs->h * cs->w * cs->c, row = (size_t)cs->ow * K;
    const size_t panel = conv_panel_floats(cs);
    const int threads = conv_threads(cs);
    if (conv2d_relu_maxpool_direct_fits(cs, ps)) {
        KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
        for (int n = 0; n < cs->n; n++) {
            _Alignas(64) float buf[POOL_ROWS_FLOATS];
            for (int ph = 0; ph < ps->oh; ph++) { /* the conv rows [r0, r1) of the row's windows */
                const int h0 = ph * ps->stride_h - ps->pad_top;
                const int r0 = h0 < 0 ? 0 : h0, r1 = h0 + ps->kh > ps->h ? ps->h : h0 + ps->kh;
                conv2d_direct_forward_rows(cs, x + n * in_img, w, b, r0, r1, buf);
                relu_serial((size_t)(r1 - r0) * row, buf, buf);
                maxpool2d_forward_row(ps, buf, r0, n, ph, y, argmax);
            }
        }
        return;
    }
    float *wpack = ws + CONV_MAX_THREADS * panel;
    /* out of memory for the GEMM's buffers: the reference conv, an image at a time (as
     * conv2d_forward then) */
    const int gemm = sgemm_serial_begin(threads) == 0;
    if (gemm) sgemm_pack_b(0, KKC, K, w, K, wpack);
    KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (gemm && threads > 1))
    for (int n = 0; n < cs->n; n++) {
        _Alignas(64) float buf[POOL_ROWS_FLOATS];
        if (gemm) {
            const int t = kernels_thread_id();
            forward_image(cs, x + n * in_img, w, b, wpack, ws + t * panel, t, buf);
        } else {
            Conv2dShape one = *cs;
            one.n = 1;
            conv2d_forward_reference(&one, x + n * in_img, w, b, buf);
        }
        relu_serial((size_t)cs->oh * row, buf, buf);
        for (int ph = 0; ph < ps->oh; ph++)
            maxpool2d_forward_row(ps, buf, 0, n, ph, y, argmax); /* buf: the image from row 0 */
    }
    if (gemm) sgemm_serial_end();
}

void conv2d_backward_data(const Conv2dShape *s, const float *dy, const float *w, float *dx,
                          float *ws) {
    const int KKC = s->kh * s->kw * s->c, K = s->k, rows = s->oh * s->ow;
    const size_t in_img = (size_t)s->h * s->w * s->c, panel = conv_panel_floats(s);
    const int pointwise = conv_is_pointwise(s), threads = conv_threads(s);
    float *wpack = ws + CONV_MAX_THREADS * panel;
    if (sgemm_serial_begin(threads) != 0) {
        conv2d_backward_data_reference(s, dy, w, dx);
        return;
    }
    sgemm_pack_b(1, K, KKC, w, K, wpack); /* op(B) = w^T [K, KKC] */
    KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (int n = 0; n < s->n; n++) {
        const int t = kernels_thread_id();
        const float *dyi = dy + (size_t)n * rows * K;
        if (pointwise) { /* dx_img = dy_img * w^T directly */
            sgemm_serial_packed_b(t, 0, rows, KKC, K, 1.0f, dyi, K, wpack, 0.0f, dx + n * in_img,
                                  KKC);
            continue;
        }
        sgemm_serial_packed_b(t, 0, rows, KKC, K, 1.0f, dyi, K, wpack, 0.0f, ws + t * panel, KKC);
        col2im_image(s, ws + t * panel, dx + n * in_img);
    }
    sgemm_serial_end();
}

/* The conv output's gradient as maxpool2d_relu_backward_from_y makes it from a pool over it. */
typedef struct {
    const Pool2dShape *ps;
    const float *dy, *y;   /* the pool's output gradient and output [N,PH,PW,K] */
    const int32_t *argmax; /* into the conv output [N,OH,OW,K] */
} PoolGrad;

/* One image's direct filter gradient added to a group's pdw, pdb, per block of
 * CONV_DIRECT_FILTER_ROWS output rows: dy's rows read in place (dyi), or made from the pool's
 * winners (pg) into buf, a block at a time, where the conv output's gradient is not stored.
 * Either way the blocks, values and order of one whole-image call: the same bits. */
static void filter_image_direct(const Conv2dShape *s, const float *xi, const float *dyi,
                                const PoolGrad *pg, int n, float *buf, float *pdw, float *pdb) {
    const int K = s->k;
    for (int r0 = 0; r0 < s->oh; r0 += CONV_DIRECT_FILTER_ROWS) {
        const int r1 = r0 + CONV_DIRECT_FILTER_ROWS < s->oh ? r0 + CONV_DIRECT_FILTER_ROWS : s->oh;
        const float *dyr = buf;
        if (pg) maxpool2d_backward_rows(pg->ps, pg->dy, pg->argmax, pg->y, n, r0, r1, buf);
        else dyr = dyi + (size_t)r0 * s->ow * K;
        conv2d_direct_filter_rows(s, xi, dyr, r0, r1, pdw, pdb);
    }
}

/* conv2d_backward_filter, with dy from pg where dy is NULL (the direct loops only). */
static void backward_filter(const Conv2dShape *s, const float *x, const float *dy,
                            const PoolGrad *pg, float *dw, float *db, float *ws) {
    const int KKC = s->kh * s->kw * s->c, K = s->k, rows = s->oh * s->ow;
    const size_t in_img = (size_t)s->h * s->w * s->c, panel = conv_panel_floats(s);
    const size_t nw = (size_t)KKC * K, part_len = nw + K; /* a group's partial dw, then db */
    const int pointwise = conv_is_pointwise(s), threads = conv_threads(s);
    const int direct = conv_takes_direct(s);
    int per_group;
    const int groups = conv_filter_groups(s, &per_group);
    float *parts = ws + CONV_MAX_THREADS * panel + conv_wpack_floats(s);
    if (s->n <= 0) {
        memset(dw, 0, nw * sizeof *dw);
        if (db) memset(db, 0, (size_t)K * sizeof *db);
        return;
    }
    if (!direct && sgemm_serial_begin(threads) != 0) { /* the direct loops need no GEMM buffers */
        conv2d_backward_filter_reference(s, x, dy, dw, db);
        return;
    }
    KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (int g = 0; g < groups; g++) {
        const int t = kernels_thread_id();
        float *pdw = parts + g * part_len, *pdb = pdw + nw;
        const int n0 = g * per_group, n1 = n0 + per_group < s->n ? n0 + per_group : s->n;
        for (int k = 0; k < K; k++) pdb[k] = 0.0f;
        if (direct) memset(pdw, 0, nw * sizeof *pdw);
        for (int n = n0; n < n1; n++) {
            const float *col = x + n * in_img, *dyi = pg ? NULL : dy + (size_t)n * rows * K;
            if (direct) {
                filter_image_direct(s, col, dyi, pg, n, ws + t * panel, pdw, pdb);
                continue;
            }
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < K; k++) pdb[k] += dyi[(size_t)r * K + k];
            if (!pointwise) {
                im2col_image(s, col, ws + t * panel);
                col = ws + t * panel;
            }
            /* pdw holds dw^T [K, KKC]: col is then the B operand, whose pack is a straight
             * copy of 16-float rows (as A it would be packed in 6-float pieces). */
            sgemm_serial(t, 1, 0, K, KKC, rows, 1.0f, dyi, K, col, KKC, n == n0 ? 0.0f : 1.0f,
                         pdw, KKC);
        }
    }
    if (!direct) sgemm_serial_end();
    /* The groups' partial sums, added in group order (on this thread: at most 8 x KKC*K
     * adds, less than a parallel region costs on a busy machine). The GEMM path's partial
     * sums are dw^T [K, KKC], the direct path's dw [KKC, K]. */
    for (size_t e = 0; e < nw; e++) {
        const size_t src = direct ? e : (e % K) * KKC + e / K;
        float acc = parts[src];
        for (int g = 1; g < groups; g++) acc += parts[g * part_len + src];
        dw[e] = acc;
    }
    if (db)
        for (int k = 0; k < K; k++) {
            float acc = parts[nw + k];
            for (int g = 1; g < groups; g++) acc += parts[g * part_len + nw + k];
            db[k] = acc;
        }
}

void conv2d_backward_filter(const Conv2dShape *s, const float *x, const float *dy, float *dw,
                            float *db, float *ws) {
    backward_filter(s, x, dy, NULL, dw, db, ws);
}

void conv2d_relu_maxpool_backward_filter_direct(const Conv2dShape *cs, const Pool2dShape *ps,
                                                const float *x, const float *y,
                                                const int32_t *argmax, const float *dy, float *dw,
                                                float *db, float *ws) {
    const PoolGrad pg = {ps, dy, y, argmax};
    backward_filter(cs, x, NULL, &pg, dw, db, ws);
}
