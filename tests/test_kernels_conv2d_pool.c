/* test_kernels_conv2d_pool.c: the fused conv + bias + ReLU + max pool (kernels/conv2d_pool.c)
 * against what it replaces, the reference kernels in sequence: conv2d_forward_reference,
 * relu_forward, maxpool2d_forward; and backward maxpool2d_backward, relu_backward,
 * conv2d_backward_filter_reference and conv2d_backward_data_reference. Plus its filter gradient
 * against finite differences of sum(r * y), the data gradient's bits against the pooled-order
 * sum kernels.h defines (the CUDA twin's), and both gradients' bits on 1 and 2 threads (the CPU
 * engine runs them). Odd sizes, strides, SAME and VALID, overlapping and padded pool windows,
 * tap counts over and under 32 (the CUDA twin's register groups), and conv2's channels. And the
 * CPU engine's fused forward and the direct loops' filter gradient, bit for bit against the
 * calls they replace. */
#include "kernels/kernels.h"
#include "kernels/fast_div.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int n, h, w, c, ks, k, stride, same, pool, pstride, psame; } Case;

static const Case CASES[] = {
    {3, 28, 28, 1, 5, 8, 1, 1, 2, 2, 1}, /* MNIST's conv1, fewer channels */
    {2, 9, 7, 2, 3, 5, 1, 1, 3, 2, 1},   /* overlapping pool windows */
    {2, 11, 10, 3, 4, 5, 2, 0, 2, 2, 0}, /* strided VALID conv */
    {1, 8, 9, 3, 5, 3, 1, 1, 2, 2, 1},   /* 75 taps */
    {1, 5, 5, 1, 3, 4, 1, 1, 2, 2, 1},   /* padded pool windows */
    {2, 7, 6, 2, 3, 3, 1, 0, 3, 1, 0},   /* pool stride 1 */
    {3, 14, 13, 32, 5, 64, 1, 1, 2, 2, 1}, /* conv2's channels (enough work for 2 threads) */
    {2, 9, 11, 8, 3, 16, 1, 0, 2, 3, 0}, /* VALID, pool windows with gaps */
    {2, 9, 11, 32, 5, 7, 1, 1, 2, 2, 0}, /* conv2's taps and channels: odd sizes and K, VALID pool */
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))
/* The cases before conv2's: the forward's tolerance is for small tap counts (conv2's 800 taps,
 * the gapped pool and conv2's taps on odd sizes are for the backward from the winners). */
#define NSMALL 6

typedef struct {
    Conv2dShape cs;
    Pool2dShape ps;
    size_t nx, nw, nconv, ny;
    float *x, *w, *b, *dy;
} Setup;

/* Inputs like a first layer's: a third of the pixels exactly 0 (background: MNIST's zero
 * background instead, test_zero_background), biases of both signs. */
static void setup_inputs(Setup *s, const Case *t, uint64_t seed, int background) {
    conv2d_shape_init(&s->cs, t->n, t->h, t->w, t->c, t->ks, t->ks, t->k, t->stride, t->stride,
                      t->same);
    pool2d_shape_init(&s->ps, t->n, s->cs.oh, s->cs.ow, t->k, t->pool, t->pool, t->pstride,
                      t->pstride, t->psame);
    s->nx = (size_t)t->n * t->h * t->w * t->c;
    s->nw = (size_t)t->ks * t->ks * t->c * t->k;
    s->nconv = (size_t)t->n * s->cs.oh * s->cs.ow * t->k;
    s->ny = (size_t)t->n * s->ps.oh * s->ps.ow * t->k;
    s->x = malloc(s->nx * 4);
    s->w = malloc(s->nw * 4);
    s->b = malloc((size_t)t->k * 4);
    s->dy = malloc(s->ny * 4);
    test_fill_uniform(s->x, s->nx, -1, 1, seed, 1);
    if (background)
        test_zero_background(s->x, t->n, t->h, t->w, t->c, seed, 5);
    else
        for (size_t i = 0; i < s->nx; i += 3) s->x[i] = 0.0f;
    test_fill_uniform(s->w, s->nw, -0.3f, 0.3f, seed, 2);
    test_fill_uniform(s->b, (size_t)t->k, -0.2f, 0.2f, seed, 3);
    test_fill_uniform(s->dy, s->ny, -1, 1, seed, 4);
}

static void setup(Setup *s, const Case *t, uint64_t seed) { setup_inputs(s, t, seed, 0); }

static void teardown(Setup *s) {
    free(s->x); free(s->w); free(s->b); free(s->dy);
}

START_TEST(test_forward_and_backward_vs_sequence) {
    Setup s;
    setup(&s, &CASES[_i], 11 + (uint64_t)_i);
    float *conv = malloc(s.nconv * 4), *y_ref = malloc(s.ny * 4), *y = malloc(s.ny * 4);
    int32_t *am_ref = malloc(s.ny * 4), *am = malloc(s.ny * 4);
    conv2d_forward_reference(&s.cs, s.x, s.w, s.b, conv);
    relu_forward(s.nconv, conv, conv);
    maxpool2d_forward(&s.ps, conv, y_ref, am_ref);
    test_poison(y, s.ny);
    memset(am, 0xFF, s.ny * 4);
    conv2d_relu_maxpool_forward(&s.cs, &s.ps, s.x, s.w, s.b, y, am);
    ck_assert(test_max_scaled_diff(y, y_ref, s.ny, 1e-6, 1e-5, NULL) <= 1);
    /* The winners agree, except where two window values are within rounding of each other
     * (the references sum the taps in another order): then both values must match. */
    for (size_t i = 0; i < s.ny; i++) {
        ck_assert_int_ge(am[i], 0);
        ck_assert_int_lt(am[i], (int32_t)s.nconv);
        if (am[i] != am_ref[i])
            ck_assert_msg(fabsf(conv[am[i]] - conv[am_ref[i]]) <= 1e-5f * (fabsf(y_ref[i]) + 1e-6f),
                          "output %zu: winner %d (%g) vs %d (%g)", i, am[i], conv[am[i]],
                          am_ref[i], conv[am_ref[i]]);
    }
    /* Backward through the fused op's own argmax, so both route dy the same way. */
    float *dconv = malloc(s.nconv * 4), *dw_ref = malloc(s.nw * 4), *db_ref = malloc(s.cs.k * 4);
    float *dw = malloc(s.nw * 4), *db = malloc(s.cs.k * 4);
    maxpool2d_backward(&s.ps, s.dy, am, dconv);
    relu_backward(s.nconv, conv, dconv, dconv);
    conv2d_backward_filter_reference(&s.cs, s.x, dconv, dw_ref, db_ref);
    test_poison(dw, s.nw);
    test_poison(db, (size_t)s.cs.k);
    float *ws = malloc(conv2d_relu_maxpool_backward_filter_workspace_floats(&s.cs) * 4);
    conv2d_relu_maxpool_backward_filter(&s.cs, &s.ps, s.x, y, am, s.dy, dw, db, ws);
    ck_assert(test_max_scaled_diff(dw, dw_ref, s.nw, 1e-5, 1e-5, NULL) <= 1);
    ck_assert(test_max_scaled_diff(db, db_ref, (size_t)s.cs.k, 1e-5, 1e-5, NULL) <= 1);
    /* db may be NULL: dw unchanged. */
    float *dw2 = malloc(s.nw * 4);
    conv2d_relu_maxpool_backward_filter(&s.cs, &s.ps, s.x, y, am, s.dy, dw2, NULL, ws);
    ck_assert_int_eq(memcmp(dw, dw2, s.nw * 4), 0);
    free(conv); free(y_ref); free(y); free(am_ref); free(am); free(dconv); free(dw_ref);
    free(db_ref); free(dw); free(db); free(dw2); free(ws);
    teardown(&s);
}
END_TEST

/* Every window ties: a blank image makes each conv value exactly b[k] (every product is 0), so
 * after the ReLU each pooled window holds equal values (b[k] or 0) and the first must win, as
 * maxpool2d_forward picks it. */
START_TEST(test_ties_first_wins) {
    Setup s;
    setup(&s, &CASES[_i], 7 + (uint64_t)_i);
    memset(s.x, 0, s.nx * 4);
    float *conv = malloc(s.nconv * 4), *y_ref = malloc(s.ny * 4), *y = malloc(s.ny * 4);
    int32_t *am_ref = malloc(s.ny * 4), *am = malloc(s.ny * 4);
    conv2d_forward_reference(&s.cs, s.x, s.w, s.b, conv);
    relu_forward(s.nconv, conv, conv);
    maxpool2d_forward(&s.ps, conv, y_ref, am_ref);
    conv2d_relu_maxpool_forward(&s.cs, &s.ps, s.x, s.w, s.b, y, am);
    ck_assert_int_eq(memcmp(y, y_ref, s.ny * 4), 0);
    ck_assert_int_eq(memcmp(am, am_ref, s.ny * 4), 0);
    free(conv); free(y_ref); free(y); free(am_ref); free(am);
    teardown(&s);
}
END_TEST

/* d/dw and d/db of L = sum(dy * y) by central differences at up to 100 elements of each. A
 * step that changes a winner or a ReLU mask anywhere makes L non-smooth there: such elements
 * are skipped (the argmax and the signs of y are compared at +-h), and at least half must
 * remain. */
static void fd_check(Setup *s, float *param, size_t n, const float *ana, const char *what) {
    const float h = 1e-3f;
    float *y = malloc(s->ny * 4), *yp = malloc(s->ny * 4);
    int32_t *am = malloc(s->ny * 4), *amp = malloc(s->ny * 4);
    conv2d_relu_maxpool_forward(&s->cs, &s->ps, s->x, s->w, s->b, y, am);
    size_t step = n > 100 ? n / 100 : 1, tried = 0, checked = 0;
    double amax = 0;
    for (size_t i = 0; i < n; i++) amax = fmax(amax, fabs(ana[i]));
    for (size_t j = 0; j < n; j += step, tried++) {
        const float keep = param[j];
        double l[2];
        int smooth = 1;
        for (int side = 0; side < 2; side++) {
            param[j] = keep + (side ? -h : h);
            conv2d_relu_maxpool_forward(&s->cs, &s->ps, s->x, s->w, s->b, yp, amp);
            l[side] = gradcheck_dot(s->dy, yp, s->ny);
            for (size_t i = 0; i < s->ny && smooth; i++)
                smooth = amp[i] == am[i] && (yp[i] > 0) == (y[i] > 0);
        }
        param[j] = keep;
        if (!smooth) continue;
        checked++;
        const double num = (l[0] - l[1]) / (2.0 * (double)h);
        ck_assert_msg(fabs(num - ana[j]) <= 2e-3 * amax + 1e-2 * fabs(num),
                      "%s[%zu]: analytic %g, finite difference %g", what, j, ana[j], num);
    }
    ck_assert_msg(2 * checked >= tried, "%s: only %zu of %zu elements smooth", what, checked, tried);
    free(y); free(yp); free(am); free(amp);
}

START_TEST(test_backward_gradcheck) {
    Setup s;
    setup(&s, &CASES[_i], 101 + (uint64_t)_i);
    float *y = malloc(s.ny * 4), *dw = malloc(s.nw * 4), *db = malloc(s.cs.k * 4);
    int32_t *am = malloc(s.ny * 4);
    float *ws = malloc(conv2d_relu_maxpool_backward_filter_workspace_floats(&s.cs) * 4);
    conv2d_relu_maxpool_forward(&s.cs, &s.ps, s.x, s.w, s.b, y, am);
    conv2d_relu_maxpool_backward_filter(&s.cs, &s.ps, s.x, y, am, s.dy, dw, db, ws);
    fd_check(&s, s.w, s.nw, dw, "dw");
    fd_check(&s, s.b, (size_t)s.cs.k, db, "db");
    free(y); free(dw); free(db); free(am); free(ws);
    teardown(&s);
}
END_TEST

/* kernels.h's definition of the data gradient's sum, written as a gather: for each pixel, the
 * pooled outputs in memory order whose winner passed the ReLU and lies in the pixel's reach,
 * fmaf in that order. The kernel scatters each winner instead; the bits must be these. */
static void data_in_pooled_order(const Conv2dShape *cs, const Pool2dShape *ps, const float *w,
                                 const float *y, const int32_t *am, const float *dy, float *dx) {
    const int K = cs->k, C = cs->c;
    for (int n = 0; n < cs->n; n++)
        for (int ih = 0; ih < cs->h; ih++)
            for (int iw = 0; iw < cs->w; iw++) {
                float *out = dx + (((size_t)n * cs->h + ih) * cs->w + iw) * C;
                for (int c = 0; c < C; c++) out[c] = 0.0f;
                for (int ph = 0; ph < ps->oh; ph++)
                    for (int pw = 0; pw < ps->ow; pw++)
                        for (int k = 0; k < K; k++) {
                            const size_t o = (((size_t)n * ps->oh + ph) * ps->ow + pw) * K + k;
                            if (!(y[o] > 0.0f)) continue;
                            const size_t pos = (size_t)am[o] / (size_t)K;
                            const int ow = (int)(pos % (size_t)cs->ow);
                            const int oh = (int)(pos / (size_t)cs->ow % (size_t)cs->oh);
                            const int kh = ih + cs->pad_top - oh, kw = iw + cs->pad_left - ow;
                            if (kh < 0 || kh >= cs->kh || kw < 0 || kw >= cs->kw) continue;
                            for (int c = 0; c < C; c++)
                                out[c] = fmaf(dy[o], w[((size_t)(kh * cs->kw + kw) * C + c) * K + k],
                                              out[c]);
                        }
            }
}

/* The data gradient from the winners, where kernels.h allows it (stride-1 conv, pool windows
 * that do not overlap): the values of the pool's and ReLU's backward then
 * conv2d_backward_data_reference (1e-5), the pooled-order sum's bits, and the same bits on 1
 * and 2 threads and in each vector clone. With dy's winners thinned to ~5% alive too (MNIST's
 * pool2 after the first steps). Also the filter gradient's bits in each of those runs. */
START_TEST(test_backward_data_and_threads) {
    const Case *t = &CASES[_i];
    Setup s;
    setup(&s, t, 303 + (uint64_t)_i);
    const int data_ok = t->stride == 1 && t->pstride >= t->pool;
    float *conv = malloc(s.nconv * 4), *y = malloc(s.ny * 4), *dconv = malloc(s.nconv * 4);
    int32_t *am = malloc(s.ny * 4);
    const size_t nw = s.nw;
    float *dx_ref = malloc(s.nx * 4), *dx = malloc(s.nx * 4), *dx2 = malloc(s.nx * 4);
    float *dw1 = malloc(nw * 4), *dw2 = malloc(nw * 4), *db1 = malloc(s.cs.k * 4),
          *db2 = malloc(s.cs.k * 4);
    size_t wsf = conv2d_relu_maxpool_backward_filter_workspace_floats(&s.cs);
    if (conv2d_relu_maxpool_backward_data_workspace_floats(&s.cs) > wsf)
        wsf = conv2d_relu_maxpool_backward_data_workspace_floats(&s.cs);
    float *ws = malloc(wsf * 4);
    conv2d_relu_maxpool_forward(&s.cs, &s.ps, s.x, s.w, s.b, y, am);
    conv2d_forward_reference(&s.cs, s.x, s.w, s.b, conv);
    relu_forward(s.nconv, conv, conv);
    for (int thin = 0; thin < 2; thin++) {
        if (thin) /* ~5% of the winners alive: the rest as if the ReLU had stopped them */
            for (size_t i = 0; i < s.ny; i++)
                if ((i * 2654435761u >> 7) % 20 != 0) y[i] = 0.0f;
        for (int run = 0; run < TEST_CLONE_RUNS; run++) {
            test_clone_run(run); /* runs 1 and 2 into the second buffers, against run 0's */
            test_poison(run == 0 ? dw1 : dw2, nw);
            conv2d_relu_maxpool_backward_filter(&s.cs, &s.ps, s.x, y, am, s.dy,
                                                run == 0 ? dw1 : dw2, run == 0 ? db1 : db2, ws);
            if (data_ok) {
                test_poison(run == 0 ? dx : dx2, s.nx);
                conv2d_relu_maxpool_backward_data(&s.cs, &s.ps, s.w, y, am, s.dy,
                                                  run == 0 ? dx : dx2, ws);
            }
            if (run == 0) continue;
            ck_assert_msg(memcmp(dw1, dw2, nw * 4) == 0 &&
                              memcmp(db1, db2, (size_t)s.cs.k * 4) == 0,
                          "filter gradient: %s differs", test_clone_name(run));
            ck_assert_msg(!data_ok || memcmp(dx, dx2, s.nx * 4) == 0,
                          "data gradient: %s differs", test_clone_name(run));
        }
        test_clone_reset();
        if (!data_ok) continue;
        data_in_pooled_order(&s.cs, &s.ps, s.w, y, am, s.dy, dx_ref);
        ck_assert_int_eq(memcmp(dx, dx_ref, s.nx * 4), 0);
        /* the values: the conv output's gradient (the pool's, then the ReLU's, masked by the
         * pooled y: a thinned winner takes none), then the plain data gradient */
        memset(dconv, 0, s.nconv * 4);
        for (size_t i = 0; i < s.ny; i++)
            if (y[i] > 0.0f) dconv[am[i]] += s.dy[i];
        conv2d_backward_data_reference(&s.cs, dconv, s.w, dx_ref);
        ck_assert(test_max_scaled_diff(dx, dx_ref, s.nx, 1e-5, 1e-5, NULL) <= 1);
    }
    free(conv); free(y); free(dconv); free(am); free(dx_ref); free(dx); free(dx2); free(dw1);
    free(dw2); free(db1); free(db2); free(ws);
    teardown(&s);
}
END_TEST

/* The AVX-512 clones' lists of alive winners (kernels/conv2d_pool.c): the filter gradient k by
 * k (where KW = 5 and C = 32) and the data gradient over the list, against the narrower clones'
 * scans of every output, bit for bit, on 1 and 2 threads. Groups of 3 images with half their
 * winners alive (over 2,048 a group: the filter's list summed in several parts), an odd channel
 * count with overlapping pool windows (the list's last outputs one by one), and 160 channels
 * (over 2,048 alive in one image: the data gradient's list in several parts). */
static const Case LIST_CASES[] = {
    {20, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1}, /* conv2, 3 images a group */
    {5, 9, 11, 32, 5, 7, 1, 1, 3, 2, 0},    /* 7 channels, pool 3 stride 2 */
    {2, 14, 14, 32, 5, 160, 1, 1, 2, 2, 1}, /* 7,840 outputs an image */
};
static const size_t LIST_ALIVE_MIN[] = {7 * 2048, 0, 2 * 2048}; /* per group, per image */

START_TEST(test_alive_lists_same_bits) {
    const Case *t = &LIST_CASES[_i];
    Setup s;
    setup(&s, t, 90 + (uint64_t)_i);
    const int data_ok = t->stride == 1 && t->pstride >= t->pool;
    float *y = malloc(s.ny * 4), *dw[2], *db[2], *dx[2];
    int32_t *am = malloc(s.ny * 4);
    size_t wsf = conv2d_relu_maxpool_backward_filter_workspace_floats(&s.cs);
    if (conv2d_relu_maxpool_backward_data_workspace_floats(&s.cs) > wsf)
        wsf = conv2d_relu_maxpool_backward_data_workspace_floats(&s.cs);
    float *ws = malloc(wsf * 4);
    conv2d_relu_maxpool_forward(&s.cs, &s.ps, s.x, s.w, s.b, y, am);
    size_t alive = 0;
    for (size_t i = 0; i < s.ny; i++) alive += y[i] > 0.0f;
    ck_assert_msg(alive > LIST_ALIVE_MIN[_i], "too few winners alive: %zu", alive);
    for (int r = 0; r < 2; r++) {
        dw[r] = malloc(s.nw * 4);
        db[r] = malloc((size_t)s.cs.k * 4);
        dx[r] = malloc(s.nx * 4);
    }
    for (int threads = 1; threads <= 2; threads++) {
        for (int run = 0; run < TEST_CLONE_RUNS; run++) {
            test_clone_run(run); /* run 0: the widest clones (the lists on AVX-512) */
            kernels_set_threads(threads); /* on this many threads */
            const int r = run > 0;
            test_poison(dw[r], s.nw);
            test_poison(db[r], (size_t)s.cs.k);
            test_poison(dx[r], s.nx);
            conv2d_relu_maxpool_backward_filter(&s.cs, &s.ps, s.x, y, am, s.dy, dw[r], db[r], ws);
            if (data_ok)
                conv2d_relu_maxpool_backward_data(&s.cs, &s.ps, s.w, y, am, s.dy, dx[r], ws);
            if (run == 0 && threads == 1) continue;
            ck_assert_msg(memcmp(dw[0], dw[1], s.nw * 4) == 0 &&
                              memcmp(db[0], db[1], (size_t)s.cs.k * 4) == 0,
                          "filter gradient: %s, %d threads differs", test_clone_name(run),
                          threads);
            ck_assert_msg(!data_ok || memcmp(dx[0], dx[1], s.nx * 4) == 0,
                          "data gradient: %s, %d threads differs", test_clone_name(run),
                          threads);
        }
        test_clone_reset();
    }
    for (int r = 0; r < 2; r++) { free(dw[r]); free(db[r]); free(dx[r]); }
    free(y); free(am); free(ws);
    teardown(&s);
}
END_TEST

/* conv2d_relu_maxpool_forward_fused (the CPU engine's conv layers) against the three calls it
 * stands for, conv2d_forward, relu_forward and maxpool2d_forward: y and argmax bit for bit, on
 * each clone run: every case (the direct loops' rows where there are few channels, else whole
 * images), MNIST's conv1 itself (32 channels: full register blocks; also on MNIST's zero
 * background, which the AVX-512 loops skip and the plain ones do not) and conv2 (its images
 * thinned to 30% nonzero but every third: its nonzeros' loops and the GEMM in one call). */
static const Case DIRECT_MNIST = {5, 28, 28, 1, 5, 32, 1, 1, 2, 2, 0};
static const Case DIRECT_MNIST_BACKGROUND = {7, 28, 28, 1, 5, 32, 1, 1, 2, 2, 0};
static const Case CONV2_MNIST = {5, 14, 14, 32, 5, 64, 1, 1, 2, 2, 0};

static void check_fused(const Case *t, uint64_t seed, int thin, int background) {
    Setup s;
    setup_inputs(&s, t, seed, background);
    ck_assert(conv2d_relu_maxpool_fused_fits(&s.cs, &s.ps));
    const size_t in_img = s.nx / (size_t)t->n;
    if (thin) /* 30% nonzero (the nonzeros' loops), every third image 2/3 (the GEMM) */
        for (int n = 0; n < t->n; n++)
            for (size_t i = 0; i < in_img && n % 3 != 2; i++)
                if (i % 10 >= 3) s.x[(size_t)n * in_img + i] = 0.0f;
    float *conv = malloc(s.nconv * 4), *y_ref = malloc(s.ny * 4), *y = malloc(s.ny * 4);
    int32_t *am_ref = malloc(s.ny * 4), *am = malloc(s.ny * 4);
    float *ws = malloc((conv2d_workspace_floats(&s.cs) + 1) * 4);
    conv2d_forward(&s.cs, s.x, s.w, s.b, conv, ws);
    relu_forward(s.nconv, conv, conv);
    maxpool2d_forward(&s.ps, conv, y_ref, am_ref);
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        test_poison(y, s.ny);
        memset(am, 0xFF, s.ny * 4);
        test_poison(ws, conv2d_workspace_floats(&s.cs));
        conv2d_relu_maxpool_forward_fused(&s.cs, &s.ps, s.x, s.w, s.b, y, am, ws);
        ck_assert_msg(memcmp(y, y_ref, s.ny * 4) == 0, "y: %s differs", test_clone_name(run));
        ck_assert_msg(memcmp(am, am_ref, s.ny * 4) == 0, "argmax: %s differs",
                      test_clone_name(run));
    }
    test_clone_reset();
    free(conv); free(y_ref); free(y); free(am_ref); free(am); free(ws);
    teardown(&s);
}

/* Its backward's filter gradient, conv2d_relu_maxpool_backward_filter_direct, against the two
 * calls it stands for, maxpool2d_relu_backward_from_y into the conv output's gradient and
 * conv2d_backward_filter: dw and db bit for bit, every clone run, 1 and 2 threads; dy with -0s,
 * y with zeros (the ReLU's stopped winners, and a thinned third). */
static void check_direct_filter(const Case *t, uint64_t seed, int background) {
    Setup s;
    setup_inputs(&s, t, seed, background);
    float *y = malloc(s.ny * 4), *dconv = malloc(s.nconv * 4);
    int32_t *am = malloc(s.ny * 4);
    float *dw_ref = malloc(s.nw * 4), *db_ref = malloc(s.cs.k * 4);
    float *dw = malloc(s.nw * 4), *db = malloc(s.cs.k * 4);
    float *ws = malloc(conv2d_workspace_floats(&s.cs) * 4);
    conv2d_relu_maxpool_forward_fused(&s.cs, &s.ps, s.x, s.w, s.b, y, am, ws);
    for (size_t i = 0; i < s.ny; i += 3) y[i] = 0.0f;
    for (size_t i = 1; i < s.ny; i += 7) s.dy[i] = -0.0f;
    maxpool2d_relu_backward_from_y(&s.ps, s.dy, am, y, dconv);
    conv2d_backward_filter(&s.cs, s.x, dconv, dw_ref, db_ref, ws);
    for (int threads = 1; threads <= 2; threads++) {
        for (int run = 0; run < TEST_CLONE_RUNS; run++) {
            test_clone_run(run);
            kernels_set_threads(threads); /* the run's clones on this many threads */
            test_poison(dw, s.nw);
            test_poison(db, (size_t)s.cs.k);
            test_poison(ws, conv2d_workspace_floats(&s.cs));
            conv2d_relu_maxpool_backward_filter_direct(&s.cs, &s.ps, s.x, y, am, s.dy, dw, db,
                                                       ws);
            ck_assert_msg(memcmp(dw, dw_ref, s.nw * 4) == 0 &&
                              memcmp(db, db_ref, (size_t)s.cs.k * 4) == 0,
                          "filter gradient: %s, %d threads differs", test_clone_name(run),
                          threads);
        }
        test_clone_reset();
    }
    free(y); free(dconv); free(am); free(dw_ref); free(db_ref); free(dw); free(db); free(ws);
    teardown(&s);
}

START_TEST(test_forward_direct_vs_calls) {
    if (_i == NCASES) {
        check_fused(&DIRECT_MNIST, 70, 0, 0);
        check_direct_filter(&DIRECT_MNIST, 71, 0);
        check_fused(&DIRECT_MNIST_BACKGROUND, 73, 0, 1);
        check_direct_filter(&DIRECT_MNIST_BACKGROUND, 74, 1);
        check_fused(&CONV2_MNIST, 72, 1, 0);
        /* an image's output over the 64 KB buffer: not fused (core keeps the two ops) */
        Conv2dShape cs;
        Pool2dShape ps;
        conv2d_shape_init(&cs, 2, 28, 28, 32, 5, 5, 64, 1, 1, 1);
        pool2d_shape_init(&ps, 2, 28, 28, 64, 2, 2, 2, 2, 0);
        ck_assert(!conv2d_relu_maxpool_fused_fits(&cs, &ps));
        return;
    }
    Setup s;
    setup(&s, &CASES[_i], 70 + (uint64_t)_i);
    const int direct = conv2d_relu_maxpool_direct_fits(&s.cs, &s.ps);
    teardown(&s);
    ck_assert_int_eq(direct, CASES[_i].c <= 4);
    check_fused(&CASES[_i], 70 + (uint64_t)_i, CASES[_i].c > 4, 0);
    if (direct) check_direct_filter(&CASES[_i], 80 + (uint64_t)_i, 0);
}
END_TEST

/* kernels/fast_div.h against '/' and '%': divisors 1 and 2 to 2^32 - 1 (the winners' loops
 * divide by channel counts, widths and image sizes), numerators at the quotients' steps, the
 * ends of the range and a spread of others. */
START_TEST(test_fast_div) {
    static const uint32_t D[] = {1, 2, 3, 5, 7, 13, 14, 64, 160, 3136, 12544, 65537,
                                 1000003, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof D / sizeof D[0]; i++) {
        const uint32_t d = D[i];
        const FastDiv f = fast_div_init(d);
        uint32_t n[12] = {0, 1, d - 1, d, d + 1, 2 * d - 1, 0x7FFFFFFFu, 0x80000000u,
                          0xFFFFFFFEu, 0xFFFFFFFFu, 0xFFFFFFFFu - d, (0xFFFFFFFFu / d) * d};
        for (int j = 0; j < 12; j++)
            ck_assert_msg(fast_div(f, n[j]) == n[j] / d && fast_mod(f, n[j]) == n[j] % d,
                          "%u / %u", n[j], d);
        for (uint64_t k = 0; k < 100000; k++) {
            const uint32_t v = (uint32_t)(k * 2654435761u) ^ (uint32_t)(k << 7);
            ck_assert_msg(fast_div(f, v) == v / d, "%u / %u", v, d);
        }
    }
}
END_TEST

int main(void) {
    Suite *su = suite_create("kernels_conv2d_pool");
    TCase *tc = tcase_create("conv2d_pool");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_forward_and_backward_vs_sequence, 0, NSMALL);
    tcase_add_loop_test(tc, test_ties_first_wins, 0, NSMALL);
    /* Not case 0: with 4,704 outputs nearly every step of h flips some winner somewhere. */
    tcase_add_loop_test(tc, test_backward_gradcheck, 1, NSMALL);
    tcase_add_loop_test(tc, test_backward_data_and_threads, 0, NCASES);
    tcase_add_loop_test(tc, test_forward_direct_vs_calls, 0, NCASES + 1);
    tcase_add_loop_test(tc, test_alive_lists_same_bits, 0, 3);
    tcase_add_test(tc, test_fast_div);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
