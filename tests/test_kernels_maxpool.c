/* test_kernels_maxpool.c: max pooling shapes, values and argmax (first max wins on ties,
 * padding never wins), and the backward pass against finite differences and, bit for bit,
 * against its definition. */
#include "kernels/kernels.h"
#include "kernels/maxpool_row.h"
#include "kernels/philox.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int n, h, w, c, kh, kw, sh, sw, same; } PoolCase;
static const PoolCase CASES[] = {
    {2, 28, 28, 3, 2, 2, 2, 2, 1}, {2, 7, 7, 2, 2, 2, 2, 2, 1}, {1, 5, 6, 3, 3, 3, 2, 2, 1},
    {2, 7, 5, 1, 3, 2, 2, 1, 0},   {1, 9, 9, 4, 3, 3, 1, 1, 1}, {3, 4, 4, 5, 1, 1, 1, 1, 0},
    /* channels in whole vectors (pool2's 64), and 2 x 16 + 5 */
    {2, 14, 14, 64, 2, 2, 2, 2, 1}, {1, 9, 7, 37, 3, 3, 2, 2, 1},
    /* 2x2 windows of 32 channels with a padded last row and column (AVX-512: whole windows in
     * registers, the padded ones by the plain loops), NaNs among the values */
    {2, 7, 9, 32, 2, 2, 2, 2, 1},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static void case_shape(const PoolCase *t, Pool2dShape *s) {
    pool2d_shape_init(s, t->n, t->h, t->w, t->c, t->kh, t->kw, t->sh, t->sw, t->same);
}
static size_t in_len(const Pool2dShape *s) { return (size_t)s->n * s->h * s->w * s->c; }
static size_t out_len(const Pool2dShape *s) { return (size_t)s->n * s->oh * s->ow * s->c; }

/* Distinct values 0.01 apart in a shuffled order, centred on 0: no ties anywhere. */
static void fill_distinct(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = ((float)i - (float)n / 2) * 0.01f;
    for (size_t i = n; i > 1; i--) {
        size_t j = philox_u32(seed, 7, i) % i;
        float t = x[i - 1]; x[i - 1] = x[j]; x[j] = t;
    }
}

static void poison_i32(int32_t *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = -12345;
}

START_TEST(test_shapes) {
    Pool2dShape s;
    pool2d_shape_init(&s, 100, 28, 28, 32, 2, 2, 2, 2, 1);
    ck_assert_int_eq(s.oh, 14); ck_assert_int_eq(s.ow, 14); ck_assert_int_eq(s.pad_top, 0);
    pool2d_shape_init(&s, 1, 7, 7, 1, 2, 2, 2, 2, 1); /* one padding row/col at the end */
    ck_assert_int_eq(s.oh, 4); ck_assert_int_eq(s.pad_top, 0); ck_assert_int_eq(s.pad_left, 0);
    pool2d_shape_init(&s, 1, 5, 6, 1, 3, 3, 2, 2, 1);
    ck_assert_int_eq(s.oh, 3); ck_assert_int_eq(s.pad_top, 1);
    ck_assert_int_eq(s.ow, 3); ck_assert_int_eq(s.pad_left, 0);
    pool2d_shape_init(&s, 1, 7, 5, 1, 3, 2, 2, 1, 0);
    ck_assert_int_eq(s.oh, 3); ck_assert_int_eq(s.ow, 4);
}
END_TEST

/* Against a naive search over a -inf padded window (values and argmax, first max wins), in each
 * clone run (the vector clones compare and select, exactly). */
START_TEST(test_forward_naive) {
    Pool2dShape s;
    case_shape(&CASES[_i], &s);
    float *x = malloc(in_len(&s) * 4), *y = malloc(out_len(&s) * 4);
    int32_t *am = malloc(out_len(&s) * 4);
    /* Coarse values: plenty of ties, and negative values next to padding. */
    test_fill_uniform(x, in_len(&s), -4, 1, 3, _i);
    for (size_t i = 0; i < in_len(&s); i++) x[i] = floorf(x[i]);
    if (CASES[_i].c == 32) /* the first max wins: a NaN first stays, a NaN after never takes */
        for (size_t i = 0; i < in_len(&s); i += 13) x[i] = NAN;
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        test_poison(y, out_len(&s)); poison_i32(am, out_len(&s));
        maxpool2d_forward(&s, x, y, am);
        for (int n = 0; n < s.n; n++)
            for (int oh = 0; oh < s.oh; oh++)
                for (int ow = 0; ow < s.ow; ow++)
                    for (int c = 0; c < s.c; c++) {
                        float best = -INFINITY;
                        long bi = -1;
                        for (int a = 0; a < s.kh; a++)
                            for (int b = 0; b < s.kw; b++) {
                                int ih = oh * s.stride_h - s.pad_top + a;
                                int iw = ow * s.stride_w - s.pad_left + b;
                                if (ih < 0 || iw < 0 || ih >= s.h || iw >= s.w) continue;
                                long i = (((long)n * s.h + ih) * s.w + iw) * s.c + c;
                                if (bi < 0 || x[i] > best) { best = x[i]; bi = i; }
                            }
                        size_t o = (((size_t)n * s.oh + oh) * s.ow + ow) * s.c + c;
                        ck_assert_msg((y[o] == best || (isnan(y[o]) && isnan(best))) &&
                                          am[o] == bi,
                                      "case %d (%s) out %zu: y %g argmax %d, want %g %ld", _i,
                                      test_clone_name(run), o, y[o], am[o], best, bi);
                    }
    }
    test_clone_reset();
    free(x); free(y); free(am);
}
END_TEST

START_TEST(test_ties_and_padding) {
    /* 2x2 input, one channel, 2x2/2 window: all equal -> the first (row-major) wins. */
    Pool2dShape s;
    pool2d_shape_init(&s, 1, 2, 2, 1, 2, 2, 2, 2, 0);
    float x[4] = {5, 5, 5, 5}, y = NAN;
    int32_t am = -1;
    maxpool2d_forward(&s, x, &y, &am);
    ck_assert(y == 5 && am == 0);
    float x2[4] = {1, 3, 3, 2};
    maxpool2d_forward(&s, x2, &y, &am);
    ck_assert(y == 3 && am == 1);
    /* 3x3 input SAME 2x2/2: the last window holds one real element (negative) and padding. */
    pool2d_shape_init(&s, 1, 3, 3, 1, 2, 2, 2, 2, 1);
    float x3[9] = {-1, -2, -3, -4, -5, -6, -7, -8, -9}, y3[4];
    int32_t am3[4];
    maxpool2d_forward(&s, x3, y3, am3);
    ck_assert(y3[0] == -1 && am3[0] == 0);
    ck_assert(y3[1] == -3 && am3[1] == 2);
    ck_assert(y3[2] == -7 && am3[2] == 6);
    ck_assert(y3[3] == -9 && am3[3] == 8);
    /* Backward: dx zero except at the argmaxes. */
    float dy[4] = {1, 2, 3, 4}, dx[9];
    test_poison(dx, 9);
    maxpool2d_backward(&s, dy, am3, dx);
    float want[9] = {1, 0, 2, 0, 0, 0, 3, 0, 4};
    for (int i = 0; i < 9; i++) ck_assert_msg(dx[i] == want[i], "dx[%d] = %g", i, dx[i]);
}
END_TEST

typedef struct { Pool2dShape s; float *x, *y, *r; int32_t *am; } PoolLoss;

static double pool_loss(void *p) {
    PoolLoss *c = p;
    maxpool2d_forward(&c->s, c->x, c->y, c->am);
    return gradcheck_dot(c->y, c->r, out_len(&c->s));
}

START_TEST(test_backward_gradcheck) {
    PoolLoss c;
    case_shape(&CASES[_i], &c.s);
    size_t nx = in_len(&c.s), ny = out_len(&c.s);
    c.x = malloc(nx * 4); c.y = malloc(ny * 4); c.r = malloc(ny * 4); c.am = malloc(ny * 4);
    float *dx = malloc(nx * 4);
    fill_distinct(c.x, nx, 40 + _i);
    test_fill_uniform(c.r, ny, -1, 1, 4, _i);
    maxpool2d_forward(&c.s, c.x, c.y, c.am);
    test_poison(dx, nx);
    maxpool2d_backward(&c.s, c.r, c.am, dx);
    /* Steps well below the 0.01 spacing keep every window's winner. */
    GradcheckResult g = gradcheck(pool_loss, &c, c.x, nx, dx, 2e-3f, 1.0, test_quick() ? 500 : 0);
    ck_assert_msg(g.max_err < 1e-3, "case %d dx[%zu]: numeric %g analytic %g", _i, g.worst,
                  g.worst_num, g.worst_ana);
    free(c.x); free(c.y); free(c.r); free(c.am); free(dx);
}
END_TEST

/* Above the size where maxpool forks (overlapping 3x3/2 windows): threads change no bit. */
/* The ReLU's mask from the pool's output: on a ReLU's output x (half the values 0, so windows
 * of zeros tie and route 0-valued winners), the same bits as pool backward then the ReLU's
 * backward masked by x, overlapping windows included; dx poisoned first. */
/* A pool over a ReLU's output: x (distinct values, the negative half set to 0), its forward
 * (y, am) and a gradient dy (distinct values), all allocated here. */
typedef struct {
    Pool2dShape s;
    size_t ni, no;
    float *x, *y, *dy;
    int32_t *am;
} ReluPool;

static void relu_pool(ReluPool *p, const PoolCase *t, uint64_t seed) {
    case_shape(t, &p->s);
    p->ni = in_len(&p->s);
    p->no = out_len(&p->s);
    p->x = malloc(p->ni * 4);
    p->y = malloc(p->no * 4);
    p->dy = malloc(p->no * 4);
    p->am = malloc(p->no * 4);
    fill_distinct(p->x, p->ni, seed);
    for (size_t i = 0; i < p->ni; i++) p->x[i] = p->x[i] > 0.0f ? p->x[i] : 0.0f;
    fill_distinct(p->dy, p->no, seed + 10);
    maxpool2d_forward(&p->s, p->x, p->y, p->am);
}

static void relu_pool_free(ReluPool *p) {
    free(p->x); free(p->y); free(p->dy); free(p->am);
}

START_TEST(test_relu_backward_from_y) {
    ReluPool p;
    relu_pool(&p, &CASES[_i], 40 + (uint64_t)_i);
    const Pool2dShape s = p.s;
    const size_t ni = p.ni, no = p.no;
    const float *x = p.x, *y = p.y, *dy = p.dy;
    const int32_t *am = p.am;
    float *ref = malloc(ni * 4), *got = malloc(ni * 4);
    maxpool2d_backward(&s, dy, am, ref);
    for (size_t i = 0; i < ni; i++) ref[i] = x[i] > 0.0f ? ref[i] : 0.0f;
    for (size_t i = 0; i < ni; i++) got[i] = NAN;
    maxpool2d_relu_backward_from_y(&s, dy, am, y, got);
    ck_assert_int_eq(memcmp(got, ref, ni * 4), 0);
    size_t masked = 0;
    for (size_t i = 0; i < no; i++) masked += !(y[i] > 0.0f);
    if (_i == 0) ck_assert_msg(masked > 0, "no window masked: the test would not see the mask");
    free(ref); free(got);
    relu_pool_free(&p);
}
END_TEST

/* Both backwards against their definition written plainly, bit for bit on every clone run: dx
 * zeroed, then each window's dy (with y: only where y > 0) added at its argmax; and so their
 * row blocks. dy holds -0s (0 + -0 = +0: a form that writes g where it should add it fails
 * here) and y zeros. */
START_TEST(test_backward_by_definition) {
    ReluPool p;
    relu_pool(&p, &CASES[_i], 60 + (uint64_t)_i);
    const Pool2dShape s = p.s;
    const size_t ni = p.ni, no = p.no;
    const float *y = p.y, *dy = p.dy;
    const int32_t *am = p.am;
    for (size_t i = 0; i < no; i += 5) p.dy[i] = -0.0f;
    float *want = malloc(ni * 4), *got = malloc(ni * 4);
    for (int masked = 0; masked < 2; masked++) {
        memset(want, 0, ni * 4);
        for (size_t i = 0; i < no; i++)
            if (!masked || y[i] > 0.0f) want[am[i]] += dy[i];
        for (int run = 0; run < TEST_CLONE_RUNS; run++) {
            test_clone_run(run);
            test_poison(got, ni);
            if (masked) maxpool2d_relu_backward_from_y(&s, dy, am, y, got);
            else maxpool2d_backward(&s, dy, am, got);
            ck_assert_msg(memcmp(got, want, ni * 4) == 0, "%s, %s differs",
                          masked ? "from y" : "plain", test_clone_name(run));
            /* and by row blocks (maxpool_row.h): whole windows or cut ones, in an image's
             * middle or at its ends; each block's rows as the whole's */
            for (int rows = 1; rows <= 8; rows += rows < 3 ? 1 : 5) /* 1, 2, 3, 8 */
                for (int n = 0; n < s.n; n++)
                    for (int r0 = 0; r0 < s.h; r0 += rows) {
                        const int r1 = r0 + rows < s.h ? r0 + rows : s.h;
                        const size_t at = ((size_t)n * s.h + r0) * s.w * s.c;
                        const size_t len = (size_t)(r1 - r0) * s.w * s.c;
                        test_poison(got, len);
                        maxpool2d_backward_rows(&s, dy, am, masked ? y : NULL, n, r0, r1, got);
                        ck_assert_msg(memcmp(got, want + at, len * 4) == 0,
                                      "%s, rows [%d, %d) of image %d, %s differ",
                                      masked ? "from y" : "plain", r0, r1, n,
                                      test_clone_name(run));
                    }
        }
        test_clone_reset();
    }
    free(want); free(got);
    relu_pool_free(&p);
}
END_TEST

START_TEST(test_large_threads_bitwise) {
    Pool2dShape s;
    pool2d_shape_init(&s, 2, 301, 299, 24, 3, 3, 2, 2, 1);
    size_t nx = in_len(&s), ny = out_len(&s);
    float *x = malloc(nx * 4), *dy = malloc(ny * 4), *y[2], *dx[2];
    int32_t *am[2];
    test_fill_uniform(x, nx, -1, 1, 5, 1);
    test_fill_uniform(dy, ny, -1, 1, 5, 2);
    for (int r = 0; r < 2; r++) {
        y[r] = malloc(ny * 4); dx[r] = malloc(nx * 4); am[r] = malloc(ny * 4);
        kernels_set_threads(r ? 2 : 1); /* 2 even on a busy or 1-core machine */
        maxpool2d_forward(&s, x, y[r], am[r]);
        maxpool2d_backward(&s, dy, am[r], dx[r]);
    }
    kernels_set_threads(2);
    ck_assert(memcmp(y[0], y[1], ny * 4) == 0 && memcmp(am[0], am[1], ny * 4) == 0);
    ck_assert(memcmp(dx[0], dx[1], nx * 4) == 0);
    free(x); free(dy);
    for (int r = 0; r < 2; r++) { free(y[r]); free(dx[r]); free(am[r]); }
}
END_TEST

int main(void) {
    Suite *su = suite_create("kernels_maxpool");
    TCase *tc = tcase_create("maxpool");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_shapes);
    tcase_add_loop_test(tc, test_forward_naive, 0, NCASES);
    tcase_add_test(tc, test_ties_and_padding);
    tcase_add_loop_test(tc, test_backward_gradcheck, 0, NCASES);
    tcase_add_loop_test(tc, test_relu_backward_from_y, 0, NCASES);
    tcase_add_test(tc, test_large_threads_bitwise);
    tcase_add_loop_test(tc, test_backward_by_definition, 0, NCASES);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
