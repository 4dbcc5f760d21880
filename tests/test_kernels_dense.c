/* test_kernels_dense.c: sgemm_reference on a hand-computed case, the fast sgemm against it
 * (all transpose combinations, odd sizes, leading dimensions, alpha/beta, bit-identical
 * reruns), the dense layer's forward and backward (finite differences; with x mostly zeros
 * too, the path over x's nonzeros), and its data gradient
 * where the input is alive (dense_backward_data_alive: the masked GEMM's values, the lane order
 * of kernels.h bit for bit, 1 and 2 threads), and the backward with Adam in one pass
 * (dense_backward_adam: the three calls' bits). */
#include "kernels/kernels.h"
#include "kernels/sgemm_microkernel.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_sgemm_reference_by_hand) {
    /* A = [1 2 3; 4 5 6] (2x3), B = [1 0; -1 2; 0.5 1] (3x2): A*B = [0.5 7; 2 16]. */
    const float a[6] = {1, 2, 3, 4, 5, 6}, at[6] = {1, 4, 2, 5, 3, 6};
    const float b[6] = {1, 0, -1, 2, 0.5f, 1}, bt[6] = {1, -1, 0.5f, 0, 2, 1};
    const float want[4] = {0.5f, 7, 2, 16};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float c[4] = {NAN, NAN, NAN, NAN};
            sgemm_reference(ta, tb, 2, 2, 3, 1.0f, ta ? at : a, ta ? 2 : 3, tb ? bt : b, tb ? 3 : 2,
                            0.0f, c, 2);
            for (int i = 0; i < 4; i++) ck_assert_msg(c[i] == want[i], "ta %d tb %d c[%d] = %g", ta, tb, i, c[i]);
            /* alpha and beta: C = 2*A*B + 0.5*C */
            float c2[4] = {2, 4, 6, 8};
            sgemm_reference(ta, tb, 2, 2, 3, 2.0f, ta ? at : a, ta ? 2 : 3, tb ? bt : b, tb ? 3 : 2,
                            0.5f, c2, 2);
            for (int i = 0; i < 4; i++) ck_assert(c2[i] == 2 * want[i] + 0.5f * (float)(2 * (i + 1)));
        }
}
END_TEST

/* {m, n, k}: odd sizes, sizes around micro-kernel and block edges (m = 11, 23, 47: one row short
 * of two 6-row tiles), and the model's GEMMs. */
static const int SIZES[][3] = {
    {1, 1, 1},     {3, 5, 7},      {17, 13, 29},   {6, 16, 1},    {7, 17, 33},  {64, 64, 64},
    {65, 31, 257}, {100, 10, 1024}, {37, 300, 70}, {250, 9, 513}, {5, 1000, 3}, {300, 129, 17},
    {11, 19, 45},  {23, 40, 9},     {47, 21, 130},
};
#define NSIZES ((int)(sizeof SIZES / sizeof SIZES[0]))

static void check_sgemm(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad,
                        uint64_t seed) {
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = malloc(na * 4), *b = malloc(nb * 4), *c0 = malloc(nc * 4);
    float *c = malloc(nc * 4), *c2 = malloc(nc * 4), *cref = malloc(nc * 4);
    test_fill_uniform(a, na, -1, 1, seed, 1);
    test_fill_uniform(b, nb, -1, 1, seed, 2);
    if (beta == 0.0f) test_poison(c0, nc); /* beta 0 must not read C */
    else test_fill_uniform(c0, nc, -1, 1, seed, 3);
    /* Padding columns of C must come back untouched: mark them. */
    memcpy(cref, c0, nc * 4);
    memcpy(c, c0, nc * 4);
    memcpy(c2, c0, nc * 4);
    /* Large products: the (slow) reference on every row_step-th row only. */
    const int row_step = (double)m * n * k > 2e7 ? m / 16 + 1 : 1;
    for (int i = 0; i < m; i += row_step)
        sgemm_reference(ta, tb, 1, n, k, alpha, ta ? a + i : a + (size_t)i * lda, lda, b, ldb,
                        beta, cref + (size_t)i * ldc, ldc);
    /* Bit-identical for any thread count and micro-kernel (AVX-512 12x16, AVX2 6x16, plain C):
     * run 0 into c; runs 1 and 2 into c2, each compared with c below and in the loop (the plain
     * C's software fmaf only on the smaller products: it is slow). */
    test_clone_run(0);
    sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    const int runs = (double)m * n * k > 2e7 ? 2 : TEST_CLONE_RUNS;
    for (int run = 1; run < runs; run++) {
        test_clone_run(run);
        memcpy(c2, c0, nc * 4);
        sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
        ck_assert_msg(memcmp(c, c2, nc * 4) == 0, "sgemm: %s differs (m %d n %d k %d)",
                      test_clone_name(run), m, n, k);
    }
    test_clone_reset();
    for (int i = 0; i < m; i += row_step) {
        for (int j = 0; j < n; j++) {
            size_t o = (size_t)i * ldc + j;
            double tol = 2e-6 * k * fabs(alpha) + 1e-6 + 1e-5 * fabs(cref[o]);
            ck_assert_msg(fabs((double)c[o] - cref[o]) <= tol,
                          "ta %d tb %d m %d n %d k %d: c[%d,%d] = %.9g, reference %.9g", ta, tb, m,
                          n, k, i, j, c[o], cref[o]);
        }
        for (int j = n; j < ldc; j++) {
            size_t o = (size_t)i * ldc + j;
            ck_assert_msg(memcmp(&c[o], &c0[o], 4) == 0, "padding c[%d,%d] was written", i, j);
        }
    }
    free(a); free(b); free(c0); free(c); free(c2); free(cref);
}

START_TEST(test_sgemm_vs_reference) {
    const int *sz = SIZES[_i];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_sgemm(ta, tb, sz[0], sz[1], sz[2], 1.0f, 0.0f, 0, 50 + _i);
            check_sgemm(ta, tb, sz[0], sz[1], sz[2], 0.5f, 1.0f, 3, 60 + _i);
            check_sgemm(ta, tb, sz[0], sz[1], sz[2], -1.5f, 0.25f, 1, 70 + _i);
        }
}
END_TEST

/* The portable micro-kernel (what runs without AVX2) against the reference too, on all paths
 * (sgemm_use_portable; check_sgemm's clone runs take it only on the smaller products). */
START_TEST(test_sgemm_portable) {
    sgemm_use_portable(1);
    const int *sz = SIZES[_i];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            check_sgemm(ta, tb, sz[0], sz[1], sz[2], 0.5f, 1.0f, 3, 80 + _i);
    sgemm_use_portable(0);
}
END_TEST

START_TEST(test_sgemm_large) {
    /* B rows >= 4 KiB apart: packed row by row (whole and partial column ranges). */
    check_sgemm(0, 0, 13, 1030, 40, 1.0f, 0.0f, 0, 89);
    check_sgemm(0, 0, 7, 2048, 300, 0.5f, 1.0f, 16, 88);
    /* Several cache blocks in every dimension (the model's dense 3136->1024 GEMMs, shrunk). */
    if (test_quick()) {
        check_sgemm(0, 0, 70, 300, 600, 1.0f, 0.0f, 0, 90);
        return;
    }
    check_sgemm(0, 0, 100, 1024, 3136, 1.0f, 0.0f, 0, 91);
    check_sgemm(0, 1, 100, 3136, 1024, 1.0f, 0.0f, 0, 92);
    check_sgemm(1, 0, 3136, 1024, 100, 1.0f, 0.0f, 0, 93);
    check_sgemm(1, 0, 800, 64, 4116, 1.0f, 1.0f, 0, 94);
}
END_TEST

START_TEST(test_sgemm_degenerate) {
    /* k = 0: C = beta*C (and with beta 0, zeros); m or n = 0: nothing touched. */
    float c[6] = {1, 2, 3, 4, 5, 6}, a[1] = {7}, b[1] = {8};
    sgemm(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 2.0f, c, 3);
    for (int i = 0; i < 6; i++) ck_assert(c[i] == 2.0f * (float)(i + 1));
    test_poison(c, 6);
    sgemm(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 0.0f, c, 3);
    for (int i = 0; i < 6; i++) ck_assert(c[i] == 0.0f);
    sgemm(0, 0, 0, 3, 4, 1.0f, a, 4, b, 3, 0.0f, c, 3);
    sgemm(0, 0, 2, 0, 4, 1.0f, a, 4, b, 1, 0.0f, c, 1);
}
END_TEST

/* ---- dense ---------------------------------------------------------------------------------- */
static const int DENSE[][3] = {{1, 1, 1}, {3, 7, 5}, {4, 33, 10}, {9, 64, 17}, {5, 100, 3}};
#define NDENSE ((int)(sizeof DENSE / sizeof DENSE[0]))

typedef struct { int n, in, out; float *x, *w, *b, *y, *r; } DenseLoss;

static double dense_loss(void *p) {
    DenseLoss *d = p;
    dense_forward(d->n, d->in, d->out, d->x, d->w, d->b, d->y);
    return gradcheck_dot(d->y, d->r, (size_t)d->n * d->out);
}

START_TEST(test_dense_forward_backward) {
    DenseLoss d = {DENSE[_i][0], DENSE[_i][1], DENSE[_i][2], 0, 0, 0, 0, 0};
    size_t nx = (size_t)d.n * d.in, nw = (size_t)d.in * d.out, ny = (size_t)d.n * d.out;
    d.x = malloc(nx * 4); d.w = malloc(nw * 4); d.b = malloc(d.out * 4);
    d.y = malloc(ny * 4); d.r = malloc(ny * 4);
    float *dx = malloc(nx * 4), *dw = malloc(nw * 4), *db = malloc(d.out * 4);
    test_fill_uniform(d.x, nx, -1, 1, 5, 1);
    test_fill_uniform(d.w, nw, -1, 1, 5, 2);
    test_fill_uniform(d.b, d.out, -1, 1, 5, 3);
    test_fill_uniform(d.r, ny, -1, 1, 5, 4);
    /* forward against a double loop */
    test_poison(d.y, ny);
    dense_forward(d.n, d.in, d.out, d.x, d.w, d.b, d.y);
    for (int i = 0; i < d.n; i++)
        for (int j = 0; j < d.out; j++) {
            double acc = d.b[j];
            for (int p = 0; p < d.in; p++) acc += (double)d.x[i * d.in + p] * d.w[p * d.out + j];
            ck_assert_msg(fabs(acc - d.y[i * d.out + j]) <= 1e-5 * (1 + d.in), "y[%d,%d]", i, j);
        }
    test_poison(dx, nx); test_poison(dw, nw); test_poison(db, d.out);
    dense_backward(d.n, d.in, d.out, d.x, d.w, d.r, dx, dw, db);
    GradcheckResult g = gradcheck(dense_loss, &d, d.x, nx, dx, 0.25f, 1.0, 0);
    ck_assert_msg(g.max_err < 1e-3, "dx[%zu]: numeric %g analytic %g", g.worst, g.worst_num, g.worst_ana);
    g = gradcheck(dense_loss, &d, d.w, nw, dw, 0.25f, 1.0, 0);
    ck_assert_msg(g.max_err < 1e-3, "dw[%zu]: numeric %g analytic %g", g.worst, g.worst_num, g.worst_ana);
    g = gradcheck(dense_loss, &d, d.b, d.out, db, 0.25f, 1.0, 0);
    ck_assert_msg(g.max_err < 1e-3, "db[%zu]: numeric %g analytic %g", g.worst, g.worst_num, g.worst_ana);
    /* dx NULL: dw and db still written, the same values */
    float *dw2 = malloc(nw * 4), *db2 = malloc(d.out * 4);
    test_poison(dw2, nw); test_poison(db2, d.out);
    dense_backward(d.n, d.in, d.out, d.x, d.w, d.r, NULL, dw2, db2);
    ck_assert(memcmp(dw, dw2, nw * 4) == 0 && memcmp(db, db2, d.out * 4) == 0);
    /* no bias */
    test_poison(d.y, ny);
    dense_forward(d.n, d.in, d.out, d.x, d.w, NULL, d.y);
    for (int i = 0; i < d.n; i++)
        for (int j = 0; j < d.out; j++) {
            double acc = 0;
            for (int p = 0; p < d.in; p++) acc += (double)d.x[i * d.in + p] * d.w[p * d.out + j];
            ck_assert_msg(fabs(acc - d.y[i * d.out + j]) <= 1e-5 * (1 + d.in), "no bias y[%d,%d]", i, j);
        }
    free(d.x); free(d.w); free(d.b); free(d.y); free(d.r); free(dx); free(dw); free(db);
    free(dw2); free(db2);
}
END_TEST

/* The logits layer's loops (out <= 16: kernels/dense_narrow.c, AVX-512) give sgemm's bits: the
 * forward, dx, dw and db of the widest clones against the AVX2 and plain runs (sgemm there),
 * at sizes that take each part: rows in groups of 12, 4 and 1, several KC slices of the sum (in
 * or n over 256), inputs in 8 blocks of 16, single blocks and a part block. */
static const int NARROW[][3] = {
    {100, 1024, 10}, /* the model's logits layer at batch 100 */
    {1000, 1024, 10}, /* batch 1000: dw's sum over 4 slices of 250 rows */
    {17, 600, 16},   /* 12 + 4 + 1 rows; 3 slices of 200; 37 blocks and a part of 8 */
    {300, 37, 1},    /* dw: 2 slices of 150, 3 x 12 + 1 rows of one output */
    {5, 257, 7},     /* 2 slices of 129 */
};
#define NNARROW ((int)(sizeof NARROW / sizeof NARROW[0]))

START_TEST(test_dense_narrow) {
    const int n = NARROW[_i][0], in = NARROW[_i][1], out = NARROW[_i][2];
    const size_t nx = (size_t)n * in, nw = (size_t)in * out, ny = (size_t)n * out;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(out * 4), *dy = malloc(ny * 4);
    float *y[TEST_CLONE_RUNS], *dx[TEST_CLONE_RUNS], *dw[TEST_CLONE_RUNS], *db[TEST_CLONE_RUNS];
    test_fill_uniform(x, nx, -1, 1, 70 + (uint64_t)_i, 1);
    test_fill_uniform(w, nw, -1, 1, 70 + (uint64_t)_i, 2);
    test_fill_uniform(b, out, -1, 1, 70 + (uint64_t)_i, 3);
    test_fill_uniform(dy, ny, -1, 1, 70 + (uint64_t)_i, 4);
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        y[run] = malloc(ny * 4); dx[run] = malloc(nx * 4);
        dw[run] = malloc(nw * 4); db[run] = malloc(out * 4);
        test_poison(y[run], ny); test_poison(dx[run], nx);
        test_poison(dw[run], nw); test_poison(db[run], out);
        dense_forward(n, in, out, x, w, b, y[run]);
        dense_backward(n, in, out, x, w, dy, dx[run], dw[run], db[run]);
        if (run == 0) { /* near the double sums */
            for (int r = 0; r < n; r += 7)
                for (int j = 0; j < out; j++) {
                    double acc = b[j];
                    for (int i = 0; i < in; i++) acc += (double)x[(size_t)r * in + i] * w[(size_t)i * out + j];
                    ck_assert_msg(fabs(acc - y[0][(size_t)r * out + j]) <= 1e-5 * (1 + in), "y[%d,%d]", r, j);
                }
            for (int i = 0; i < in; i += 5)
                for (int j = 0; j < out; j++) {
                    double acc = 0;
                    for (int r = 0; r < n; r++) acc += (double)x[(size_t)r * in + i] * dy[(size_t)r * out + j];
                    ck_assert_msg(fabs(acc - dw[0][(size_t)i * out + j]) <= 1e-5 * (1 + n), "dw[%d,%d]", i, j);
                }
            for (int r = 0; r < n; r += 7)
                for (int i = 0; i < in; i++) {
                    double acc = 0;
                    for (int j = 0; j < out; j++) acc += (double)dy[(size_t)r * out + j] * w[(size_t)i * out + j];
                    ck_assert_msg(fabs(acc - dx[0][(size_t)r * in + i]) <= 1e-5 * (1 + out), "dx[%d,%d]", r, i);
                }
            continue;
        }
        ck_assert_msg(memcmp(y[0], y[run], ny * 4) == 0, "y: %s differs", test_clone_name(run));
        ck_assert_msg(memcmp(dx[0], dx[run], nx * 4) == 0, "dx: %s differs", test_clone_name(run));
        ck_assert_msg(memcmp(dw[0], dw[run], nw * 4) == 0, "dw: %s differs", test_clone_name(run));
        ck_assert_msg(memcmp(db[0], db[run], out * 4) == 0, "db: %s differs", test_clone_name(run));
    }
    test_clone_reset();
    for (int run = 0; run < TEST_CLONE_RUNS; run++) { free(y[run]); free(dx[run]); free(dw[run]); free(db[run]); }
    free(x); free(w); free(b); free(dy);
}
END_TEST

/* x mostly zeros (dense1's input, pool2's output: ~5% nonzero on MNIST): the forward and the
 * filter gradient over x's nonzeros (kernels/dense.c, at most 1/8 nonzero), and just over that
 * share, the GEMM: against double loops, the same bits on 1 and 2 threads, and the filter
 * gradient by finite differences. Negative entries too (the path is for any x). */
static const struct { int n, in, out, permille; } SPARSE[] = {
    {50, 784, 256, 50},   /* the share on MNIST */
    {9, 600, 70, 120},    /* just under 1/8; out not a multiple of the vector width */
    {8, 600, 64, 130},    /* just over: the GEMM */
    {100, 41, 1030, 0},   /* all zeros; out over two blocks of columns and a part */
    {128, 200, 192, 90},  /* AVX-512: the packed 64-column blocks at their most rows */
    {129, 150, 128, 60},  /* one row over: the blocks of 512 (256) columns */
};
#define NSPARSE ((int)(sizeof SPARSE / sizeof SPARSE[0]))

START_TEST(test_dense_sparse_input) {
    const int n = SPARSE[_i].n, in = SPARSE[_i].in, out = SPARSE[_i].out;
    DenseLoss d = {n, in, out, 0, 0, 0, 0, 0};
    const size_t nx = (size_t)n * in, nw = (size_t)in * out, ny = (size_t)n * out;
    d.x = malloc(nx * 4); d.w = malloc(nw * 4); d.b = malloc(out * 4);
    d.y = malloc(ny * 4); d.r = malloc(ny * 4);
    float *y2 = malloc(ny * 4), *dw = malloc(nw * 4), *dw2 = malloc(nw * 4), *db = malloc(out * 4);
    test_fill_uniform(d.x, nx, -1, 1, 60 + (uint64_t)_i, 1);
    test_fill_uniform(d.w, nw, -1, 1, 60 + (uint64_t)_i, 2);
    test_fill_uniform(d.b, out, -1, 1, 60 + (uint64_t)_i, 3);
    test_fill_uniform(d.r, ny, -1, 1, 60 + (uint64_t)_i, 4);
    /* exactly the share: the first permille of each thousand positions kept, in a scrambled
     * order */
    for (size_t e = 0; e < nx; e++)
        if ((e * 2654435761u) % 1000 >= (size_t)SPARSE[_i].permille) d.x[e] = 0.0f;
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run); /* runs 1 and 2 into the second buffers, against run 0's */
        test_poison(run == 0 ? d.y : y2, ny);
        dense_forward(n, in, out, d.x, d.w, d.b, run == 0 ? d.y : y2);
        test_poison(run == 0 ? dw : dw2, nw);
        dense_backward(n, in, out, d.x, d.w, d.r, NULL, run == 0 ? dw : dw2, db);
        if (run == 0) continue;
        ck_assert_msg(memcmp(d.y, y2, ny * 4) == 0, "y: %s differs", test_clone_name(run));
        ck_assert_msg(memcmp(dw, dw2, nw * 4) == 0, "dw: %s differs", test_clone_name(run));
    }
    test_clone_reset();
    for (int r = 0; r < n; r++)
        for (int j = 0; j < out; j++) {
            double acc = d.b[j];
            for (int p = 0; p < in; p++) acc += (double)d.x[r * in + p] * d.w[(size_t)p * out + j];
            ck_assert_msg(fabs(acc - d.y[(size_t)r * out + j]) <= 1e-6 * (1 + in), "y[%d,%d]", r, j);
        }
    for (int p = 0; p < in; p++)
        for (int j = 0; j < out; j++) {
            double acc = 0;
            for (int r = 0; r < n; r++) acc += (double)d.x[r * in + p] * d.r[(size_t)r * out + j];
            ck_assert_msg(fabs(acc - dw[(size_t)p * out + j]) <= 1e-6 * (1 + n), "dw[%d,%d]", p, j);
        }
    GradcheckResult g = gradcheck(dense_loss, &d, d.w, nw, dw, 0.25f, 1.0, 300);
    ck_assert_msg(g.max_err < 1e-3, "dw[%zu]: numeric %g analytic %g", g.worst, g.worst_num,
                  g.worst_ana);
    free(d.x); free(d.w); free(d.b); free(d.y); free(d.r); free(y2); free(dw); free(dw2);
    free(db);
}
END_TEST

/* kernels.h's order for dense_backward_data_alive, written plainly: 32 lane sums over the
 * columns 32s + l, then the butterfly. The kernel (AVX2 or not) must give these bits. */
static float alive_dot_by_definition(const float *g, const float *wr, int out) {
    float lane[32];
    for (int l = 0; l < 32; l++) {
        lane[l] = 0.0f;
        for (int j = l; j < out; j += 32) lane[l] = fmaf(g[j], wr[j], lane[l]);
    }
    for (int s = 16; s > 0; s >>= 1) {
        float next[32];
        for (int l = 0; l < 32; l++) next[l] = lane[l] + lane[l ^ s];
        memcpy(lane, next, sizeof lane);
    }
    return lane[0];
}

static const struct { int n, in, out, alive_pct; } ALIVE[] = {
    {100, 3136, 1024, 5},  /* dense1 on MNIST after the first steps (enough work for 2 threads) */
    {7, 300, 1024, 50},
    {5, 77, 96, 100},      /* every entry alive; 3 x 32 columns */
    {3, 33, 32, 30},
    {2, 40, 64, 0},
};
#define NALIVE ((int)(sizeof ALIVE / sizeof ALIVE[0]))

START_TEST(test_dense_backward_data_alive) {
    const int n = ALIVE[_i].n, in = ALIVE[_i].in, out = ALIVE[_i].out;
    const size_t nx = (size_t)n * in, nw = (size_t)in * out;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc((size_t)n * out * 4);
    float *dx1 = malloc(nx * 4), *dx2 = malloc(nx * 4), *ref = malloc(nx * 4), *dw = malloc(nw * 4);
    test_fill_uniform(x, nx, 0.001f, 1.0f, 40 + (uint64_t)_i, 1);
    test_fill_uniform(w, nw, -0.1f, 0.1f, 40 + (uint64_t)_i, 2);
    test_fill_uniform(dy, (size_t)n * out, -1, 1, 40 + (uint64_t)_i, 3);
    for (size_t e = 0; e < nx; e++)
        if ((e * 2654435761u >> 9) % 100 >= (size_t)ALIVE[_i].alive_pct) x[e] = 0.0f;
        else if (e % 7 == 3) x[e] = -x[e]; /* x < 0: not alive either */
    ck_assert(dense_backward_data_alive_fits(out));
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run); /* runs 1 and 2 into dx2, against run 0's dx1 */
        test_poison(run == 0 ? dx1 : dx2, nx);
        dense_backward_data_alive(n, in, out, x, w, dy, run == 0 ? dx1 : dx2);
        ck_assert_msg(run == 0 || memcmp(dx1, dx2, nx * 4) == 0, "dx: %s differs",
                      test_clone_name(run));
    }
    test_clone_reset();
    for (int r = 0; r < n; r++)
        for (int i = 0; i < in; i++) {
            const size_t e = (size_t)r * in + i;
            const float want = x[e] > 0.0f ? alive_dot_by_definition(dy + (size_t)r * out,
                                                                     w + (size_t)i * out, out)
                                           : 0.0f;
            ck_assert_msg(memcmp(&dx1[e], &want, 4) == 0, "dx[%d,%d] = %.9g, by definition %.9g",
                          r, i, dx1[e], want);
        }
    dense_backward(n, in, out, x, w, dy, ref, dw, NULL);
    for (size_t e = 0; e < nx; e++)
        if (!(x[e] > 0.0f)) ref[e] = 0.0f;
    /* 1e-5 of the largest value: a sum of 1,024 terms that cancels to near 0 keeps the terms'
     * rounding (measured: 1.6e-6 at 0.0485, where the values reach ~3) */
    double big = 1e-6;
    for (size_t e = 0; e < nx; e++) big = fmax(big, fabs(ref[e]));
    size_t worst;
    const double d = test_max_scaled_diff(dx1, ref, nx, 1e-5 * big, 1e-5, &worst);
    ck_assert_msg(d <= 1, "dx[%zu] = %.9g, the masked GEMM's %.9g", worst, dx1[worst], ref[worst]);
    free(x); free(w); free(dy); free(dx1); free(dx2); free(ref); free(dw);
}
END_TEST

/* dense_backward_adam against the three calls it stands for (dense_backward's dw and db,
 * dense_backward_data_alive's dx, adam_update on w, m, v), bit for bit: over x's nonzeros (at most
 * 1/8 nonzero, negative entries too), and just over that share (the three calls themselves);
 * with and without dx; each clone and 1 and 2 threads. */
static const struct { int n, in, out, permille, with_dx; } ADAM[] = {
    {100, 3136, 1024, 50, 1}, /* dense1 on MNIST after the first steps */
    {9, 600, 64, 120, 1},     /* just under 1/8 */
    {64, 300, 96, 110, 1},    /* ~7 nonzeros a column: alive dots by fours and left over */
    {8, 600, 64, 130, 1},     /* just over: the three calls */
    {50, 784, 70, 50, 0},     /* no dx (a first layer); out not a multiple of the vector width */
    {100, 41, 1030, 0, 0},    /* all zeros */
};
#define NADAM ((int)(sizeof ADAM / sizeof ADAM[0]))

START_TEST(test_dense_backward_adam) {
    const int n = ADAM[_i].n, in = ADAM[_i].in, out = ADAM[_i].out;
    const size_t nx = (size_t)n * in, nw = (size_t)in * out, ny = (size_t)n * out;
    float *x = malloc(nx * 4), *dy = malloc(ny * 4), *w0 = malloc(nw * 4), *m0 = malloc(nw * 4);
    float *v0 = malloc(nw * 4), *dw = malloc(nw * 4), *scratch = malloc(nw * 4);
    float *want[3], *got[3]; /* w, m, v after the update */
    for (int k = 0; k < 3; k++) {
        want[k] = malloc(nw * 4);
        got[k] = malloc(nw * 4);
    }
    float *dx_want = malloc(nx * 4), *dx_got = malloc(nx * 4);
    float *db_want = malloc(out * 4), *db_got = malloc(out * 4);
    test_fill_uniform(x, nx, -1, 1, 90 + (uint64_t)_i, 1);
    test_fill_uniform(dy, ny, -1, 1, 90 + (uint64_t)_i, 2);
    test_fill_uniform(w0, nw, -0.1f, 0.1f, 90 + (uint64_t)_i, 3);
    test_fill_uniform(m0, nw, -0.01f, 0.01f, 90 + (uint64_t)_i, 4);
    test_fill_uniform(v0, nw, 0, 1e-4f, 90 + (uint64_t)_i, 5);
    for (size_t e = 0; e < nx; e++)
        if ((e * 2654435761u) % 1000 >= (size_t)ADAM[_i].permille) x[e] = 0.0f;
    const int with_dx = ADAM[_i].with_dx;
    memcpy(want[0], w0, nw * 4);
    memcpy(want[1], m0, nw * 4);
    memcpy(want[2], v0, nw * 4);
    test_poison(dw, nw);
    dense_backward(n, in, out, x, want[0], dy, NULL, dw, db_want);
    if (with_dx) dense_backward_data_alive(n, in, out, x, want[0], dy, dx_want);
    adam_update(nw, want[0], dw, want[1], want[2], 0.001f, 0.9f, 0.999f, 1e-7f, 3);
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        memcpy(got[0], w0, nw * 4);
        memcpy(got[1], m0, nw * 4);
        memcpy(got[2], v0, nw * 4);
        test_poison(dx_got, nx);
        test_poison(db_got, out);
        test_poison(scratch, nw);
        dense_backward_adam(n, in, out, x, got[0], dy, with_dx ? dx_got : NULL, scratch, db_got,
                            got[1], got[2], 0.001f, 0.9f, 0.999f, 1e-7f, 3);
        static const char *names[3] = {"w", "m", "v"};
        for (int k = 0; k < 3; k++)
            ck_assert_msg(memcmp(want[k], got[k], nw * 4) == 0, "%s: %s differs", names[k],
                          test_clone_name(run));
        ck_assert_msg(!with_dx || memcmp(dx_want, dx_got, nx * 4) == 0, "dx: %s differs",
                      test_clone_name(run));
        ck_assert_msg(memcmp(db_want, db_got, out * 4) == 0, "db: %s differs",
                      test_clone_name(run));
    }
    test_clone_reset();
    /* the update moved w (a test of nothing otherwise) */
    ck_assert(memcmp(want[0], w0, nw * 4) != 0);
    for (int k = 0; k < 3; k++) {
        free(want[k]);
        free(got[k]);
    }
    free(x); free(dy); free(w0); free(m0); free(v0); free(dw); free(scratch);
    free(dx_want); free(dx_got); free(db_want); free(db_got);
}
END_TEST

START_TEST(test_dense_backward_data_alive_fits) {
    const int yes[] = {32, 96, 128, 1024}, no[] = {0, -32, 10, 100, 1056, 2048};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        ck_assert(dense_backward_data_alive_fits(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        ck_assert_msg(!dense_backward_data_alive_fits(no[i]), "out = %d", no[i]);
}
END_TEST

int main(void) {
    Suite *su = suite_create("kernels_dense");
    TCase *tc = tcase_create("dense");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_sgemm_reference_by_hand);
    tcase_add_loop_test(tc, test_sgemm_vs_reference, 0, NSIZES);
    tcase_add_loop_test(tc, test_sgemm_portable, 0, NSIZES);
    tcase_add_test(tc, test_sgemm_large);
    tcase_add_test(tc, test_sgemm_degenerate);
    tcase_add_loop_test(tc, test_dense_forward_backward, 0, NDENSE);
    tcase_add_loop_test(tc, test_dense_narrow, 0, NNARROW);
    tcase_add_loop_test(tc, test_dense_sparse_input, 0, NSPARSE);
    tcase_add_loop_test(tc, test_dense_backward_data_alive, 0, NALIVE);
    tcase_add_test(tc, test_dense_backward_data_alive_fits);
    tcase_add_loop_test(tc, test_dense_backward_adam, 0, NADAM);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
