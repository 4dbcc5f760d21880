/* test_kernels_conv2d.c: conv2d shapes (TF's SAME split), the reference against an independent
 * zero-padded formulation, its backward passes against finite differences, and the fast
 * kernels (im2col + SGEMM, or the loops over an image's nonzeros) against the reference: odd
 * sizes, strides, SAME and VALID. */
#include "kernels/kernels.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int n, h, w, c, kh, kw, k, sh, sw, same; } ConvCase;

static const ConvCase CASES[] = {
    {2, 5, 5, 3, 3, 3, 4, 1, 1, 1},  {2, 5, 5, 3, 3, 3, 4, 2, 2, 1}, {1, 7, 6, 2, 3, 2, 5, 2, 1, 0},
    {3, 6, 6, 1, 5, 5, 3, 1, 1, 1},  {2, 9, 7, 3, 4, 4, 2, 2, 2, 1}, {1, 4, 4, 2, 3, 3, 3, 2, 2, 1},
    {2, 8, 8, 3, 1, 1, 5, 1, 1, 0},  {1, 3, 3, 2, 5, 5, 2, 1, 1, 1}, {2, 11, 9, 5, 3, 5, 7, 3, 2, 0},
    {1, 10, 10, 17, 3, 3, 19, 1, 1, 1}, {2, 9, 8, 2, 3, 3, 37, 2, 1, 1}, {1, 6, 7, 4, 2, 3, 64, 1, 2, 0},
    /* one channel, 5x5 at stride 1 (conv1's; AVX-512: 8 pixels at a time, the filter gradient
     * a tap row at a time): a pixel left over and a part block of channels, VALID, an odd row */
    {1, 13, 21, 1, 5, 5, 33, 1, 1, 1}, {2, 9, 14, 1, 5, 5, 32, 1, 1, 0},
    {2, 7, 11, 1, 5, 5, 64, 1, 1, 1},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static void case_shape(const ConvCase *t, Conv2dShape *s) {
    conv2d_shape_init(s, t->n, t->h, t->w, t->c, t->kh, t->kw, t->k, t->sh, t->sw, t->same);
}
static size_t x_len(const Conv2dShape *s) { return (size_t)s->n * s->h * s->w * s->c; }
static size_t y_len(const Conv2dShape *s) { return (size_t)s->n * s->oh * s->ow * s->k; }
static size_t w_len(const Conv2dShape *s) { return (size_t)s->kh * s->kw * s->c * s->k; }

START_TEST(test_shape_same_split) {
    /* {in, k, stride, same, out, pad_before}, worked out by TF's rule by hand. */
    static const int t[][6] = {
        {28, 5, 1, 1, 28, 2}, {14, 5, 1, 1, 14, 2}, {28, 2, 2, 1, 14, 0}, {5, 3, 2, 1, 3, 1},
        {4, 3, 2, 1, 2, 0},   {6, 2, 2, 1, 3, 0},   {7, 4, 2, 1, 4, 1},   {3, 5, 1, 1, 3, 2},
        {7, 3, 2, 0, 3, 0},   {6, 3, 2, 0, 2, 0},   {5, 5, 1, 0, 1, 0},   {9, 1, 3, 1, 3, 0},
        {10, 4, 3, 1, 4, 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int out = -1, pad = -1;
        conv_output_dim(t[i][0], t[i][1], t[i][2], t[i][3], &out, &pad);
        ck_assert_msg(out == t[i][4] && pad == t[i][5], "case %zu: out %d pad %d, want %d %d", i,
                      out, pad, t[i][4], t[i][5]);
    }
    Conv2dShape s;
    conv2d_shape_init(&s, 100, 28, 28, 1, 5, 5, 32, 1, 1, 1);
    ck_assert_int_eq(s.oh, 28); ck_assert_int_eq(s.ow, 28);
    ck_assert_int_eq(s.pad_top, 2); ck_assert_int_eq(s.pad_left, 2);
}
END_TEST

/* The reference forward against a different formulation: copy x into an explicitly
 * zero-padded buffer (padding from TF's formula, recomputed here), then a VALID conv in double. */
START_TEST(test_forward_reference_vs_padded) {
    const ConvCase *t = &CASES[_i];
    Conv2dShape s;
    case_shape(t, &s);
    int ph = 0, pw = 0, oh = (t->h - t->kh) / t->sh + 1, ow = (t->w - t->kw) / t->sw + 1;
    if (t->same) {
        oh = (t->h + t->sh - 1) / t->sh;
        ow = (t->w + t->sw - 1) / t->sw;
        ph = (oh - 1) * t->sh + t->kh - t->h; ph = ph < 0 ? 0 : ph;
        pw = (ow - 1) * t->sw + t->kw - t->w; pw = pw < 0 ? 0 : pw;
    }
    ck_assert_int_eq(s.oh, oh); ck_assert_int_eq(s.ow, ow);
    int HP = t->h + ph, WP = t->w + pw, top = ph / 2, left = pw / 2;
    float *x = malloc(x_len(&s) * 4), *w = malloc(w_len(&s) * 4), *b = malloc(s.k * 4);
    float *y = malloc(y_len(&s) * 4), *want = malloc(y_len(&s) * 4);
    double *xp = calloc((size_t)t->n * HP * WP * t->c, sizeof *xp);
    test_fill_uniform(x, x_len(&s), -1, 1, 1, 1);
    test_fill_uniform(w, w_len(&s), -1, 1, 1, 2);
    test_fill_uniform(b, s.k, -1, 1, 1, 3);
    for (int n = 0; n < t->n; n++)
        for (int h = 0; h < t->h; h++)
            for (int ww = 0; ww < t->w; ww++)
                for (int c = 0; c < t->c; c++)
                    xp[(((size_t)n * HP + h + top) * WP + ww + left) * t->c + c] =
                        x[(((size_t)n * t->h + h) * t->w + ww) * t->c + c];
    for (int n = 0; n < t->n; n++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int k = 0; k < t->k; k++) {
                    double acc = b[k];
                    for (int a = 0; a < t->kh; a++)
                        for (int bb = 0; bb < t->kw; bb++)
                            for (int c = 0; c < t->c; c++)
                                acc += xp[(((size_t)n * HP + i * t->sh + a) * WP + j * t->sw + bb) *
                                              t->c + c] *
                                       w[(((size_t)a * t->kw + bb) * t->c + c) * t->k + k];
                    want[(((size_t)n * oh + i) * ow + j) * t->k + k] = (float)acc;
                }
    test_poison(y, y_len(&s));
    conv2d_forward_reference(&s, x, w, b, y);
    size_t worst;
    double d = test_max_scaled_diff(y, want, y_len(&s), 1e-5, 1e-5, &worst);
    ck_assert_msg(d <= 1, "case %d: y[%zu] = %g, want %g", _i, worst, y[worst], want[worst]);
    free(x); free(w); free(b); free(y); free(want); free(xp);
}
END_TEST

/* ---- finite differences: L = sum(r * conv(x, w) + b) in double ----------------------------- */
typedef struct {
    Conv2dShape s;
    float *x, *w, *b, *y, *r;
} ConvLoss;

static double conv_loss(void *p) {
    ConvLoss *c = p;
    conv2d_forward_reference(&c->s, c->x, c->w, c->b, c->y);
    return gradcheck_dot(c->y, c->r, y_len(&c->s));
}

START_TEST(test_backward_reference_gradcheck) {
    ConvLoss c;
    case_shape(&CASES[_i], &c.s);
    const Conv2dShape *s = &c.s;
    c.x = malloc(x_len(s) * 4); c.w = malloc(w_len(s) * 4); c.b = malloc(s->k * 4);
    c.y = malloc(y_len(s) * 4); c.r = malloc(y_len(s) * 4);
    float *dx = malloc(x_len(s) * 4), *dw = malloc(w_len(s) * 4), *db = malloc(s->k * 4);
    test_fill_uniform(c.x, x_len(s), -1, 1, 2, 1);
    test_fill_uniform(c.w, w_len(s), -1, 1, 2, 2);
    test_fill_uniform(c.b, s->k, -1, 1, 2, 3);
    test_fill_uniform(c.r, y_len(s), -1, 1, 2, 4);
    test_poison(dx, x_len(s)); test_poison(dw, w_len(s)); test_poison(db, s->k);
    conv2d_backward_data_reference(s, c.r, c.w, dx);
    conv2d_backward_filter_reference(s, c.x, c.r, dw, db);
    /* The loss is linear in each input, so a large step has no truncation error. */
    GradcheckResult g = gradcheck(conv_loss, &c, c.x, x_len(s), dx, 0.25f, 1.0, test_quick() ? 200 : 0);
    ck_assert_msg(g.max_err < 1e-3, "case %d dx[%zu]: numeric %g analytic %g", _i, g.worst,
                  g.worst_num, g.worst_ana);
    g = gradcheck(conv_loss, &c, c.w, w_len(s), dw, 0.25f, 1.0, test_quick() ? 200 : 0);
    ck_assert_msg(g.max_err < 1e-3, "case %d dw[%zu]: numeric %g analytic %g", _i, g.worst,
                  g.worst_num, g.worst_ana);
    g = gradcheck(conv_loss, &c, c.b, s->k, db, 0.25f, 1.0, 0);
    ck_assert_msg(g.max_err < 1e-3, "case %d db[%zu]: numeric %g analytic %g", _i, g.worst,
                  g.worst_num, g.worst_ana);
    free(c.x); free(c.w); free(c.b); free(c.y); free(c.r); free(dx); free(dw); free(db);
}
END_TEST

/* ---- the fast kernels against the reference ------------------------------------------------ */
static void check_fast_vs_reference(const Conv2dShape *s, uint64_t seed, int background,
                                    const char *what) {
    size_t nx = x_len(s), ny = y_len(s), nw = w_len(s), nws = conv2d_workspace_floats(s);
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(s->k * 4), *dy = malloc(ny * 4);
    float *ws = malloc((nws ? nws : 1) * 4);
    float *y = malloc(ny * 4), *y_ref = malloc(ny * 4), *y2 = malloc(ny * 4);
    float *dx = malloc(nx * 4), *dx_ref = malloc(nx * 4), *dx2 = malloc(nx * 4);
    float *dw = malloc(nw * 4), *dw_ref = malloc(nw * 4), *dw2 = malloc(nw * 4);
    float *db = malloc(s->k * 4), *db_ref = malloc(s->k * 4), *db2 = malloc(s->k * 4);
    test_fill_uniform(x, nx, -1, 1, seed, 1);
    if (background) test_zero_background(x, s->n, s->h, s->w, s->c, seed, 5);
    test_fill_uniform(w, nw, -1, 1, seed, 2);
    test_fill_uniform(b, s->k, -1, 1, seed, 3);
    test_fill_uniform(dy, ny, -1, 1, seed, 4);
    conv2d_forward_reference(s, x, w, b, y_ref);
    conv2d_backward_data_reference(s, dy, w, dx_ref);
    conv2d_backward_filter_reference(s, x, dy, dw_ref, db_ref);
    /* Runs with 1 and 2 threads and each vector clone: the same bits (run 0 into y, dx, dw, db;
     * the others into the second buffers, compared after each). */
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        float *yo = run ? y2 : y, *dxo = run ? dx2 : dx, *dwo = run ? dw2 : dw, *dbo = run ? db2 : db;
        test_poison(yo, ny); test_poison(dxo, nx); test_poison(dwo, nw); test_poison(dbo, s->k);
        test_poison(ws, nws);
        conv2d_forward(s, x, w, b, yo, ws);
        test_poison(ws, nws);
        conv2d_backward_data(s, dy, w, dxo, ws);
        test_poison(ws, nws);
        conv2d_backward_filter(s, x, dy, dwo, dbo, ws);
        if (run == 0) continue;
        ck_assert_msg(memcmp(y, y2, ny * 4) == 0, "%s: forward: %s differs", what,
                      test_clone_name(run));
        ck_assert_msg(memcmp(dx, dx2, nx * 4) == 0, "%s: backward_data: %s differs", what,
                      test_clone_name(run));
        ck_assert_msg(memcmp(dw, dw2, nw * 4) == 0 && memcmp(db, db2, s->k * 4) == 0,
                      "%s: backward_filter: %s differs", what, test_clone_name(run));
    }
    test_clone_reset();
    /* Sums of up to KH*KW*C (forward, data) or N*OH*OW (filter) products of O(1) values. */
    double tol_fd = 1e-6 * s->kh * s->kw * (s->c > s->k ? s->c : s->k) + 1e-5;
    double tol_f = 1e-6 * s->n * s->oh * s->ow + 1e-5;
    size_t worst;
    double d = test_max_scaled_diff(y, y_ref, ny, tol_fd, 1e-4, &worst);
    ck_assert_msg(d <= 1, "%s: y[%zu] = %g, reference %g", what, worst, y[worst], y_ref[worst]);
    d = test_max_scaled_diff(dx, dx_ref, nx, tol_fd, 1e-4, &worst);
    ck_assert_msg(d <= 1, "%s: dx[%zu] = %g, reference %g", what, worst, dx[worst], dx_ref[worst]);
    d = test_max_scaled_diff(dw, dw_ref, nw, tol_f, 1e-4, &worst);
    ck_assert_msg(d <= 1, "%s: dw[%zu] = %g, reference %g", what, worst, dw[worst], dw_ref[worst]);
    d = test_max_scaled_diff(db, db_ref, s->k, tol_f, 1e-4, &worst);
    ck_assert_msg(d <= 1, "%s: db[%zu] = %g, reference %g", what, worst, db[worst], db_ref[worst]);
    /* No bias: y must equal y_ref - b within the same tolerance. */
    test_poison(y, ny);
    conv2d_forward(s, x, w, NULL, y, ws);
    for (size_t i = 0; i < ny; i++) y_ref[i] -= b[i % s->k];
    d = test_max_scaled_diff(y, y_ref, ny, tol_fd + 1e-5, 1e-4, &worst);
    ck_assert_msg(d <= 1, "%s (no bias): y[%zu] = %g, want %g", what, worst, y[worst], y_ref[worst]);
    free(x); free(w); free(b); free(dy); free(ws); free(y); free(y_ref); free(y2);
    free(dx); free(dx_ref); free(dx2); free(dw); free(dw_ref); free(dw2); free(db); free(db_ref);
    free(db2);
}

START_TEST(test_fast_vs_reference_cases) {
    Conv2dShape s;
    case_shape(&CASES[_i], &s);
    char what[32];
    snprintf(what, sizeof what, "case %d", _i);
    check_fast_vs_reference(&s, 10 + _i, 0, what);
}
END_TEST

START_TEST(test_fast_vs_reference_model_shapes) {
    /* The MNIST model's two convolutions; batches that are not a multiple of the im2col chunk. */
    int n = test_quick() ? 1 : 7;
    Conv2dShape s;
    conv2d_shape_init(&s, n, 28, 28, 1, 5, 5, 32, 1, 1, 1);
    check_fast_vs_reference(&s, 100, 0, "conv1");
    conv2d_shape_init(&s, test_quick() ? 1 : 23, 14, 14, 32, 5, 5, 64, 1, 1, 1);
    check_fast_vs_reference(&s, 101, 0, "conv2");
}
END_TEST

/* One-channel images with MNIST's zero background (a box of nonzeros, 0s and -0s in it; blank
 * images; a nonzero in each corner): the AVX-512 loops skip what lies outside each row's
 * nonzeros, and must give the bits of the plain loops, which multiply every input (the clone
 * runs compare them), and the reference's values. conv1's shape at odd batches, the one-channel
 * cases above, stride 2 and a row too wide for the skipping loops' copy (both the plain loops
 * on AVX-512 too). */
START_TEST(test_one_channel_zero_background) {
    static const ConvCase C1[] = {
        {9, 28, 28, 1, 5, 5, 32, 1, 1, 1}, {8, 28, 28, 1, 5, 5, 64, 1, 1, 0},
        {7, 13, 21, 1, 5, 5, 33, 1, 1, 1}, {8, 9, 14, 1, 5, 5, 32, 1, 1, 0},
        {7, 7, 11, 1, 5, 5, 64, 1, 1, 1}, {7, 11, 12, 1, 5, 5, 32, 2, 1, 1},
        {7, 6, 120, 1, 5, 5, 32, 1, 1, 1},
    };
    Conv2dShape s;
    case_shape(&C1[_i], &s);
    char what[48];
    snprintf(what, sizeof what, "one channel, zero background %d", _i);
    check_fast_vs_reference(&s, 300 + _i, 1, what);
}
END_TEST

/* ---- the forward over an image's nonzeros (kernels/conv2d_sparse.c) ------------------------
 * An image at most 60% nonzero (C > 4) takes the loops over its nonzeros, whose sum kernels.h
 * defines: acc = 0, fmaf over the taps inside in (kh, kw) order and, within a tap, the channels
 * whose x is not 0 in order, then acc + b. Each clone (AVX-512, AVX2, plain) and thread count
 * must give these bits; denser images take the GEMM (values checked only). */
static void forward_in_sparse_order(const Conv2dShape *s, const float *x, const float *w,
                                    const float *b, float *y) {
    const int C = s->c, K = s->k;
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->oh; oh++)
            for (int ow = 0; ow < s->ow; ow++)
                for (int k = 0; k < K; k++) {
                    float acc = 0.0f;
                    for (int kh = 0; kh < s->kh; kh++) {
                        const int ih = oh * s->stride_h - s->pad_top + kh;
                        if (ih < 0 || ih >= s->h) continue;
                        for (int kw = 0; kw < s->kw; kw++) {
                            const int iw = ow * s->stride_w - s->pad_left + kw;
                            if (iw < 0 || iw >= s->w) continue;
                            const float *xp = x + (((size_t)n * s->h + ih) * s->w + iw) * C;
                            const float *wp = w + ((size_t)(kh * s->kw + kw) * C) * K + k;
                            for (int c = 0; c < C; c++)
                                if (xp[c] != 0.0f) acc = fmaf(xp[c], wp[(size_t)c * K], acc);
                        }
                    }
                    y[(((size_t)n * s->oh + oh) * s->ow + ow) * K + k] = b ? acc + b[k] : acc;
                }
}

/* x with each value kept with probability density[n] in image n, else 0. */
static void zero_at_random(const Conv2dShape *s, float *x, const double *density, uint64_t seed) {
    const size_t per_image = (size_t)s->h * s->w * s->c;
    float *u = malloc(per_image * s->n * 4);
    test_fill_uniform(u, per_image * s->n, 0, 1, seed, 9);
    for (size_t i = 0; i < per_image * s->n; i++)
        if (u[i] >= density[i / per_image]) x[i] = 0.0f;
    free(u);
}

static void check_sparse_forward(const Conv2dShape *s, const double *density, uint64_t seed,
                                 const char *what) {
    const size_t nx = x_len(s), ny = y_len(s), nw = w_len(s), nws = conv2d_workspace_floats(s);
    const size_t per_image = ny / s->n;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(s->k * 4), *ws = malloc(nws * 4);
    float *y = malloc(ny * 4), *y_ref = malloc(ny * 4), *y_order = malloc(ny * 4);
    test_fill_uniform(x, nx, -1, 1, seed, 1);
    test_fill_uniform(w, nw, -1, 1, seed, 2);
    test_fill_uniform(b, s->k, -1, 1, seed, 3);
    zero_at_random(s, x, density, seed);
    conv2d_forward_reference(s, x, w, b, y_ref);
    forward_in_sparse_order(s, x, w, b, y_order);
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        test_poison(y, ny);
        test_poison(ws, nws);
        conv2d_forward(s, x, w, b, y, ws);
        const double tol = 1e-6 * s->kh * s->kw * s->c + 1e-5;
        size_t worst;
        double d = test_max_scaled_diff(y, y_ref, ny, tol, 1e-4, &worst);
        ck_assert_msg(d <= 1, "%s (%s): y[%zu] = %g, reference %g", what, test_clone_name(run),
                      worst, y[worst], y_ref[worst]);
        for (int n = 0; n < s->n; n++) {
            if (density[n] > 0.5) continue; /* the GEMM: its own order */
            const size_t o = (size_t)n * per_image;
            for (size_t i = o; i < o + per_image; i++)
                ck_assert_msg(memcmp(&y[i], &y_order[i], 4) == 0,
                              "%s (%s): image %d at %zu: %a, want %a (the sum in the nonzeros' "
                              "order)",
                              what, test_clone_name(run), n, i - o, y[i], y_order[i]);
        }
    }
    test_clone_reset();
    free(x); free(w); free(b); free(ws); free(y); free(y_ref); free(y_order);
}

START_TEST(test_sparse_forward_shapes) {
    /* n, h, w, c, kh, kw, k, stride h, w, SAME: K = 75 takes a 64-block, a vector block and a
     * 3-wide tail; K = 19, 37 no 64-block; strides, VALID, windows hanging off both edges. The
     * first case is conv2's (the scatter loops). */
    static const ConvCase sparse_cases[] = {
        {4, 14, 14, 32, 5, 5, 64, 1, 1, 1}, {2, 9, 8, 9, 5, 5, 75, 1, 1, 1},
        {2, 11, 9, 5, 3, 5, 7, 3, 2, 0},   {1, 10, 10, 17, 3, 3, 19, 1, 1, 1},
        {2, 7, 9, 12, 4, 3, 37, 2, 2, 1},  {2, 3, 3, 8, 5, 5, 16, 1, 1, 1},
        /* the AVX-512 scatter loops (KW = 5, stride_w 1, K a multiple of 64): two 64-blocks
         * with stride_h 2; a row narrower than the window; VALID */
        {4, 9, 7, 6, 5, 5, 128, 2, 1, 1},  {4, 6, 3, 5, 4, 5, 64, 1, 1, 1},
        {4, 8, 11, 7, 5, 5, 64, 1, 1, 0},
        /* AVX2's pairs of pixels (stride_w 1, K a multiple of 32; the cases above with K = 64
         * and 128 too): three 32-blocks, a window of 4 columns, stride_h 2 */
        {3, 7, 10, 11, 3, 4, 96, 2, 1, 1},
    };
    /* Per image: at most 60% nonzero takes the lists (10%, 45%, none at all); 90% the GEMM. */
    static const double density[] = {0.1, 0.9, 0.45, 0.0};
    for (int i = 0; i < (int)(sizeof sparse_cases / sizeof sparse_cases[0]); i++) {
        Conv2dShape s;
        case_shape(&sparse_cases[i], &s);
        char what[48];
        snprintf(what, sizeof what, "sparse case %d", i);
        check_sparse_forward(&s, density, 200 + i, what);
    }
}
END_TEST

/* A NaN in an image the lists take is a nonzero (x != 0): it reaches every output whose window
 * holds it, on every clone (the AVX-512 list compares unordered-or-not-equal); the rest keep the
 * nonzeros' order's bits. conv2's shape. */
START_TEST(test_sparse_forward_nan) {
    Conv2dShape s;
    conv2d_shape_init(&s, 2, 14, 14, 32, 5, 5, 64, 1, 1, 1);
    const size_t nx = x_len(&s), ny = y_len(&s), nw = w_len(&s), nws = conv2d_workspace_floats(&s);
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *ws = malloc(nws * 4);
    float *y = malloc(ny * 4), *y_order = malloc(ny * 4);
    test_fill_uniform(x, nx, -1, 1, 31, 1);
    test_fill_uniform(w, nw, -1, 1, 31, 2);
    static const double density[] = {0.1, 0.1};
    zero_at_random(&s, x, density, 31);
    x[((size_t)1 * 14 * 14 + 6 * 14 + 9) * 32 + 13] = NAN; /* image 1, pixel (6, 9), channel 13 */
    forward_in_sparse_order(&s, x, w, NULL, y_order);
    size_t nans = 0;
    for (size_t i = 0; i < ny; i++) nans += isnan(y_order[i]) != 0;
    ck_assert_uint_eq(nans, 25 * 64); /* 5 x 5 output pixels, every channel */
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        test_poison(y, ny);
        conv2d_forward(&s, x, w, NULL, y, ws);
        for (size_t i = 0; i < ny; i++)
            ck_assert_msg(isnan(y_order[i]) ? isnan(y[i]) != 0 : memcmp(&y[i], &y_order[i], 4) == 0,
                          "%s: y[%zu] = %g, want %g", test_clone_name(run), i, y[i], y_order[i]);
    }
    test_clone_reset();
    free(x); free(w); free(ws); free(y); free(y_order);
}
END_TEST

/* The workspace sized for one batch serves every smaller batch (core sizes it once). */
START_TEST(test_workspace_serves_smaller_batches) {
    for (int batch = 1; batch <= 20; batch++) {
        Conv2dShape big, s;
        conv2d_shape_init(&big, batch, 6, 5, 3, 3, 3, 4, 1, 1, 1);
        size_t nws = conv2d_workspace_floats(&big);
        for (int n = 1; n <= batch; n++) {
            conv2d_shape_init(&s, n, 6, 5, 3, 3, 3, 4, 1, 1, 1);
            ck_assert_msg(conv2d_workspace_floats(&s) <= nws, "batch %d, n %d", batch, n);
        }
    }
    /* and the kernels stay inside it: run n = 8 in the workspace of a batch of 9 (ASan) */
    Conv2dShape s9, s8;
    conv2d_shape_init(&s9, 9, 7, 7, 6, 3, 3, 5, 1, 1, 1);
    conv2d_shape_init(&s8, 8, 7, 7, 6, 3, 3, 5, 1, 1, 1);
    size_t nws = conv2d_workspace_floats(&s9);
    float *ws = malloc(nws * 4), *x = malloc(x_len(&s8) * 4), *dy = malloc(y_len(&s8) * 4);
    float *dw = malloc(w_len(&s8) * 4), *dw_ref = malloc(w_len(&s8) * 4), db[5], db_ref[5];
    test_fill_uniform(x, x_len(&s8), -1, 1, 8, 1);
    test_fill_uniform(dy, y_len(&s8), -1, 1, 8, 2);
    conv2d_backward_filter(&s8, x, dy, dw, db, ws);
    conv2d_backward_filter_reference(&s8, x, dy, dw_ref, db_ref);
    ck_assert(test_max_scaled_diff(dw, dw_ref, w_len(&s8), 1e-4, 1e-4, NULL) <= 1);
    ck_assert(test_max_scaled_diff(db, db_ref, 5, 1e-4, 1e-4, NULL) <= 1);
    free(ws); free(x); free(dy); free(dw); free(dw_ref);
}
END_TEST

int main(void) {
    Suite *su = suite_create("kernels_conv2d");
    TCase *tc = tcase_create("conv2d");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_shape_same_split);
    tcase_add_loop_test(tc, test_forward_reference_vs_padded, 0, NCASES);
    tcase_add_loop_test(tc, test_backward_reference_gradcheck, 0, NCASES);
    tcase_add_loop_test(tc, test_fast_vs_reference_cases, 0, NCASES);
    tcase_add_test(tc, test_fast_vs_reference_model_shapes);
    tcase_add_loop_test(tc, test_one_channel_zero_background, 0, 7);
    tcase_add_test(tc, test_workspace_serves_smaller_batches);
    tcase_add_test(tc, test_sparse_forward_shapes);
    tcase_add_test(tc, test_sparse_forward_nan);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
