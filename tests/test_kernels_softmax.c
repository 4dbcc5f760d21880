/* test_kernels_softmax.c: softmax, the fused sparse softmax cross-entropy (against double
 * precision, stable for huge logits), its gradient (finite differences) and argmax_correct. */
#include "kernels/kernels.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Mean cross-entropy in double, from the definition. */
static double xent_double(int n, int c, const float *logits, const int32_t *labels, double *probs) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *row = logits + i * c;
        double mx = row[0], s = 0;
        for (int j = 1; j < c; j++) mx = fmax(mx, row[j]);
        for (int j = 0; j < c; j++) s += exp((double)row[j] - mx);
        for (int j = 0; j < c; j++) probs[i * c + j] = exp((double)row[j] - mx) / s;
        total += mx + log(s) - row[labels[i]];
    }
    return total / n;
}

START_TEST(test_values) {
    enum { N = 7, C = 10 };
    float logits[N * C], probs[N * C], loss = NAN, p2[N * C];
    double pd[N * C];
    int32_t labels[N] = {0, 9, 3, 3, 5, 1, 8};
    test_fill_uniform(logits, N * C, -5, 5, 1, 1);
    test_poison(probs, N * C);
    softmax_xent_forward(N, C, logits, labels, probs, &loss);
    double want = xent_double(N, C, logits, labels, pd);
    ck_assert_msg(fabs(loss - want) < 1e-5 * (1 + fabs(want)), "loss %g want %g", loss, want);
    for (int i = 0; i < N * C; i++) ck_assert_msg(fabs(probs[i] - pd[i]) < 1e-6, "probs[%d]", i);
    test_poison(p2, N * C);
    softmax_forward(N, C, logits, p2);
    ck_assert(memcmp(p2, probs, sizeof p2) == 0);
}
END_TEST

START_TEST(test_huge_logits) {
    /* Rows that overflow a naive exp(): finite loss and probabilities that sum to 1. */
    enum { N = 4, C = 3 };
    float logits[N * C] = {1000, -1000, 999, 3e38f, -3e38f, 0, -1e30f, -1e30f, -1e30f, 88.8f, 89, 0};
    int32_t labels[N] = {2, 0, 1, 2};
    float probs[N * C], loss;
    softmax_xent_forward(N, C, logits, labels, probs, &loss);
    ck_assert_msg(isfinite(loss), "loss %g", loss);
    /* row 0: lse = 1000 + log(1 + e^-1), loss_0 = lse - 999; row 1: 0; row 2: log 3;
     * row 3: 89 + log(1 + e^-0.2 + e^-89) - 0 */
    double want = ((1000 + log1p(exp(-1.0)) - 999) + 0 + log(3.0) +
                   (89 + log(1 + exp(-0.2) + exp(-89.0)))) / 4;
    ck_assert_msg(fabs(loss - want) < 1e-4 * want, "loss %.7g want %.7g", loss, want);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < C; j++) {
            ck_assert(isfinite(probs[i * C + j]) && probs[i * C + j] >= 0);
            s += probs[i * C + j];
        }
        ck_assert_msg(fabs(s - 1) < 1e-6, "row %d sums to %g", i, s);
    }
}
END_TEST

typedef struct { int n, c; float *logits, *probs; int32_t *labels; } XentLoss;
static double xent_loss(void *p) {
    XentLoss *x = p;
    float loss;
    softmax_xent_forward(x->n, x->c, x->logits, x->labels, x->probs, &loss);
    return loss;
}

START_TEST(test_gradient) {
    enum { N = 5, C = 7 };
    float logits[N * C], probs[N * C], d[N * C], d3[N * C], loss;
    int32_t labels[N] = {0, 6, 2, 2, 4};
    test_fill_uniform(logits, N * C, -3, 3, 2, 1);
    softmax_xent_forward(N, C, logits, labels, probs, &loss);
    test_poison(d, N * C);
    softmax_xent_backward(N, C, probs, labels, 1.0f, d);
    XentLoss x = {N, C, logits, probs, labels};
    GradcheckResult g = gradcheck(xent_loss, &x, logits, N * C, d, 1e-2f, 1e-2, 0);
    ck_assert_msg(g.max_err < 5e-3, "dlogits[%zu]: numeric %g analytic %g", g.worst, g.worst_num,
                  g.worst_ana);
    /* rows of the gradient sum to zero; dloss scales it */
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < C; j++) s += d[i * C + j];
        ck_assert(fabs(s) < 1e-6);
    }
    softmax_xent_forward(N, C, logits, labels, probs, &loss);
    softmax_xent_backward(N, C, probs, labels, 3.0f, d3);
    for (int i = 0; i < N * C; i++) ck_assert(fabsf(d3[i] - 3 * d[i]) <= 1e-6f);
}
END_TEST

START_TEST(test_argmax_correct) {
    float logits[4 * 3] = {1, 5, 5, /* tie: first max (1) */ 2, 2, 2, /* tie: 0 */
                           -1, -3, -0.5f, 0, 1, 0};
    int32_t labels[4] = {1, 0, 2, 0};
    ck_assert_int_eq(argmax_correct(4, 3, logits, labels), 3);
    int32_t labels2[4] = {2, 1, 2, 1};
    ck_assert_int_eq(argmax_correct(4, 3, logits, labels2), 2);
}
END_TEST

int main(void) {
    Suite *su = suite_create("kernels_softmax");
    TCase *tc = tcase_create("softmax");
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_huge_logits);
    tcase_add_test(tc, test_gradient);
    tcase_add_test(tc, test_argmax_correct);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
