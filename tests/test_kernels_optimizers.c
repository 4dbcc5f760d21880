/* test_kernels_optimizers.c: Adam (Keras semantics), SGD and momentum against steps computed
 * by hand in double precision. */
#include "kernels/kernels.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 103 };

START_TEST(test_adam) {
    float w[N], g[N], m[N], v[N];
    double wd[N], md[N], vd[N];
    /* The float32 hyper-parameters, as TF holds them. */
    const double lr = 0.001f, b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
    test_fill_uniform(w, N, -1, 1, 1, 1);
    for (int i = 0; i < N; i++) { m[i] = v[i] = 0; wd[i] = w[i]; md[i] = vd[i] = 0; }
    for (int t = 1; t <= 5; t++) {
        test_fill_uniform(g, N, -2, 2, 1, 10 + t);
        g[0] = 0.0f; /* a zero gradient still moves w through m */
        adam_update(N, w, g, m, v, 0.001f, 0.9f, 0.999f, 1e-7f, t);
        double lr_t = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
        for (int i = 0; i < N; i++) {
            md[i] = b1 * md[i] + (1 - b1) * g[i];
            vd[i] = b2 * vd[i] + (1 - b2) * (double)g[i] * g[i];
            wd[i] -= lr_t * md[i] / (sqrt(vd[i]) + eps);
            ck_assert_msg(fabs(m[i] - md[i]) <= 1e-6 * fabs(md[i]) + 1e-7, "t %d m[%d] = %.9g want %.9g", t, i, m[i], md[i]);
            ck_assert_msg(fabs(v[i] - vd[i]) <= 1e-6 * fabs(vd[i]) + 1e-9, "t %d v[%d]", t, i);
            /* w moves by ~lr per step: check the distance travelled to 1e-4 of lr. */
            ck_assert_msg(fabs(w[i] - wd[i]) <= 1e-4 * lr + 1e-7, "t %d w[%d] = %.9g want %.9g", t, i,
                          w[i], wd[i]);
        }
    }
    /* The first step moves every weight with a non-zero gradient by ~lr (Adam's signature). */
    float w1 = 0.5f, g1 = 3.0f, m1 = 0, v1 = 0;
    adam_update(1, &w1, &g1, &m1, &v1, 0.001f, 0.9f, 0.999f, 1e-7f, 1);
    ck_assert_msg(fabs(w1 - (0.5 - 0.001)) < 1e-7, "w1 = %.9g", w1);
}
END_TEST

/* Each clone (AVX-512, AVX2, SSE2) gives the same bits: n = 103 takes whole vectors of each
 * width and a tail; and so does the scalar loop (one element a call: the whole call is tail). */
START_TEST(test_adam_same_bits) {
    float w0[N], g[N], m0[N], v0[N], got[3][N], want[3][N];
    test_fill_uniform(w0, N, -1, 1, 4, 1);
    test_fill_uniform(g, N, -2, 2, 4, 2);
    test_fill_uniform(m0, N, -0.1f, 0.1f, 4, 3);
    test_fill_uniform(v0, N, 0, 0.01f, 4, 4);
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        float(*out)[N] = run == 0 ? want : got;
        memcpy(out[0], w0, sizeof w0);
        memcpy(out[1], m0, sizeof m0);
        memcpy(out[2], v0, sizeof v0);
        adam_update(N, out[0], g, out[1], out[2], 0.001f, 0.9f, 0.999f, 1e-7f, 7);
        ck_assert_msg(run == 0 || memcmp(got, want, sizeof got) == 0, "%s differs",
                      test_clone_name(run));
    }
    test_clone_reset();
    ck_assert(memcmp(want[0], w0, sizeof w0) != 0);
    for (int i = 0; i < N; i++) {
        float w = w0[i], m = m0[i], v = v0[i];
        adam_update(1, &w, &g[i], &m, &v, 0.001f, 0.9f, 0.999f, 1e-7f, 7);
        ck_assert_msg(memcmp(&w, &want[0][i], 4) == 0 && memcmp(&m, &want[1][i], 4) == 0 &&
                          memcmp(&v, &want[2][i], 4) == 0,
                      "element %d: the scalar loop differs", i);
    }
}
END_TEST

START_TEST(test_sgd) {
    float w[N], g[N];
    test_fill_uniform(w, N, -1, 1, 2, 1);
    test_fill_uniform(g, N, -1, 1, 2, 2);
    double wd[N];
    for (int i = 0; i < N; i++) wd[i] = (double)w[i] - 0.1 * g[i];
    sgd_update(N, w, g, 0.1f);
    for (int i = 0; i < N; i++) ck_assert(fabs(w[i] - wd[i]) < 1e-7);
}
END_TEST

START_TEST(test_momentum) {
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        float w[N], g[N], vel[N];
        double wd[N], vd[N];
        test_fill_uniform(w, N, -1, 1, 3, 1);
        for (int i = 0; i < N; i++) { vel[i] = 0; vd[i] = 0; wd[i] = w[i]; }
        for (int t = 0; t < 4; t++) {
            test_fill_uniform(g, N, -1, 1, 3, 10 + t);
            momentum_update(N, w, g, vel, 0.05f, 0.9f, nesterov);
            for (int i = 0; i < N; i++) {
                vd[i] = 0.9 * vd[i] - 0.05 * g[i];
                wd[i] += nesterov ? 0.9 * vd[i] - 0.05 * g[i] : vd[i];
                ck_assert_msg(fabs(vel[i] - vd[i]) < 1e-6, "nesterov %d t %d vel[%d]", nesterov, t, i);
                ck_assert_msg(fabs(w[i] - wd[i]) < 1e-6, "nesterov %d t %d w[%d]", nesterov, t, i);
            }
        }
    }
}
END_TEST

int main(void) {
    Suite *su = suite_create("kernels_optimizers");
    TCase *tc = tcase_create("optimizers");
    tcase_add_test(tc, test_adam);
    tcase_add_test(tc, test_adam_same_bits);
    tcase_add_test(tc, test_sgd);
    tcase_add_test(tc, test_momentum);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
