/* test_kernels_elementwise.c: ReLU and inverted dropout (mask statistics, determinism: the
 * mask depends only on (seed, stream, i)), forward values and gradients; the parameters'
 * uniform initialisation. */
#include "kernels/kernels.h"
#include "kernels/philox.h"
#include "kernels/relu_serial.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

START_TEST(test_relu) {
    enum { N = 1001 };
    float x[N], y[N], dy[N], dx[N];
    test_fill_uniform(x, N, -1, 1, 1, 1);
    x[0] = 0.0f; x[1] = -0.0f;
    test_fill_uniform(dy, N, -1, 1, 1, 2);
    test_poison(y, N); test_poison(dx, N);
    relu_forward(N, x, y);
    relu_backward(N, y, dy, dx);
    for (int i = 0; i < N; i++) {
        ck_assert(y[i] == (x[i] > 0 ? x[i] : 0.0f));
        ck_assert(dx[i] == (x[i] > 0 ? dy[i] : 0.0f)); /* TF: no gradient at 0 */
    }
    /* in place */
    float z[N], dz[N];
    memcpy(z, x, sizeof z);
    memcpy(dz, dy, sizeof dz);
    relu_forward(N, z, z);
    relu_backward(N, z, dz, dz);
    ck_assert(memcmp(z, y, sizeof z) == 0 && memcmp(dz, dx, sizeof dz) == 0);
}
END_TEST

/* relu_serial (relu_forward's blocks, the fused conv layers' ReLU) and relu_forward give the
 * plain expression's bits on each clone run, in place and not: NaN, -0 and 0 give +0; lengths of
 * whole vectors, a part vector, and under one vector (relu_forward: several blocks too). */
START_TEST(test_relu_serial_same_bits) {
    enum { N = 9001 };
    static float x[N], want[N], y[N];
    test_fill_uniform(x, N, -1, 1, 3, 1);
    x[0] = 0.0f; x[1] = -0.0f; x[2] = NAN; x[3] = -NAN; x[17] = INFINITY; x[18] = -INFINITY;
    x[999] = NAN; x[1000] = -0.5f; x[6] = -0.25f; x[991] = -0.75f; /* each length's last */
    x[N - 1] = -0.5f;
    for (int i = 0; i < N; i++) want[i] = x[i] > 0.0f ? x[i] : 0.0f;
    for (int run = 0; run < TEST_CLONE_RUNS; run++) {
        test_clone_run(run);
        static const size_t lengths[] = {N, 1001, 992, 7, 0};
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++)
            for (int form = 0; form < 3; form++) { /* in place, into y, relu_forward */
                memcpy(y, x, sizeof y);
                if (form == 0) relu_serial(lengths[l], y, y);
                else if (form == 1) relu_serial(lengths[l], x, y);
                else relu_forward(lengths[l], x, y);
                ck_assert_msg(memcmp(y, want, lengths[l] * sizeof *y) == 0 &&
                                  memcmp(y + lengths[l], x + lengths[l],
                                         (N - lengths[l]) * sizeof *y) == 0,
                              "%s, %zu floats, form %d", test_clone_name(run), lengths[l], form);
            }
    }
    test_clone_reset();
}
END_TEST

typedef struct { size_t n; float *x, *y, *r; } ReluLoss;
static double relu_loss(void *p) {
    ReluLoss *c = p;
    relu_forward(c->n, c->x, c->y);
    return gradcheck_dot(c->y, c->r, c->n);
}

START_TEST(test_relu_gradcheck) {
    enum { N = 257 };
    float x[N], y[N], r[N], dx[N];
    test_fill_uniform(x, N, -1, 1, 2, 1);
    for (int i = 0; i < N; i++) x[i] += x[i] > 0 ? 0.05f : -0.05f; /* away from the kink */
    test_fill_uniform(r, N, -1, 1, 2, 2);
    ReluLoss c = {N, x, y, r};
    relu_forward(N, x, y);
    relu_backward(N, y, r, dx);
    GradcheckResult g = gradcheck(relu_loss, &c, x, N, dx, 0.01f, 1.0, 0);
    ck_assert_msg(g.max_err < 1e-4, "dx[%zu]: numeric %g analytic %g", g.worst, g.worst_num, g.worst_ana);
}
END_TEST

START_TEST(test_dropout_mask) {
    const size_t n = test_quick() ? 20000 : 200003;
    const float rate = 0.4f, scale = 1.0f / (1.0f - rate);
    float *x = malloc(n * 4), *y = malloc(n * 4);
    uint8_t *mask = malloc(n), *mask2 = malloc(n);
    test_fill_uniform(x, n, -1, 1, 3, 1);
    test_poison(y, n);
    memset(mask, 0xAA, n);
    dropout_forward(n, rate, 1234, PHILOX_STREAM_DROPOUT + 16 * 7, x, y, mask);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(mask[i] == (philox_uniform(1234, PHILOX_STREAM_DROPOUT + 16 * 7, i) >= rate),
                      "mask[%zu] is not philox_uniform(seed, stream, i) >= rate", i);
        ck_assert_msg(y[i] == (mask[i] ? x[i] * scale : 0.0f), "y[%zu]", i);
        kept += mask[i];
    }
    /* Binomial(n, 0.6): within 5 standard deviations. */
    double mean = 0.6 * n, sd = sqrt(n * 0.6 * 0.4);
    ck_assert_msg(fabs((double)kept - mean) < 5 * sd, "kept %zu of %zu", kept, n);
    /* Neighbouring elements are not correlated: P(both kept) ~ 0.36. */
    size_t both = 0;
    for (size_t i = 0; i + 1 < n; i += 2) both += mask[i] && mask[i + 1];
    double pairs = (double)(n / 2), pm = 0.36 * pairs, ps = sqrt(pairs * 0.36 * 0.64);
    ck_assert_msg(fabs((double)both - pm) < 5 * ps, "pairs kept %zu of %g", both, pairs);
    /* Depends only on (seed, stream, i): a shorter call gives the same prefix; another stream
     * or seed gives another mask. */
    dropout_forward(37, rate, 1234, PHILOX_STREAM_DROPOUT + 16 * 7, x, y, mask2);
    ck_assert(memcmp(mask, mask2, 37) == 0);
    dropout_forward(n, rate, 1234, PHILOX_STREAM_DROPOUT + 16 * 8, x, y, mask2);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += mask[i] == mask2[i];
    ck_assert_msg(same < n * 0.6, "stream does not change the mask (%zu of %zu equal)", same, n);
    dropout_forward(n, rate, 1235, PHILOX_STREAM_DROPOUT + 16 * 7, x, y, mask2);
    same = 0;
    for (size_t i = 0; i < n; i++) same += mask[i] == mask2[i];
    ck_assert_msg(same < n * 0.6, "seed does not change the mask (%zu of %zu equal)", same, n);
    /* rate 0: identity */
    dropout_forward(n, 0.0f, 1, 2, x, y, mask2);
    ck_assert(memcmp(x, y, n * 4) == 0);
    for (size_t i = 0; i < n; i++) ck_assert(mask2[i] == 1);
    free(x); free(y); free(mask); free(mask2);
}
END_TEST

typedef struct { size_t n; float rate; float *x, *y, *r; uint8_t *mask; } DropLoss;
static double drop_loss(void *p) {
    DropLoss *c = p;
    dropout_forward(c->n, c->rate, 99, 5, c->x, c->y, c->mask);
    return gradcheck_dot(c->y, c->r, c->n);
}

START_TEST(test_dropout_backward) {
    enum { N = 301 };
    float x[N], y[N], r[N], dx[N], d2[N];
    uint8_t mask[N];
    test_fill_uniform(x, N, -1, 1, 4, 1);
    test_fill_uniform(r, N, -1, 1, 4, 2);
    DropLoss c = {N, 0.4f, x, y, r, mask};
    dropout_forward(N, 0.4f, 99, 5, x, y, mask);
    test_poison(dx, N);
    dropout_backward(N, 0.4f, mask, r, dx);
    GradcheckResult g = gradcheck(drop_loss, &c, x, N, dx, 0.25f, 1.0, 0);
    ck_assert_msg(g.max_err < 1e-5, "dx[%zu]: numeric %g analytic %g", g.worst, g.worst_num, g.worst_ana);
    memcpy(d2, r, sizeof d2);
    dropout_backward(N, 0.4f, mask, d2, d2); /* in place */
    ck_assert(memcmp(d2, dx, sizeof d2) == 0);
}
END_TEST

/* Above the size where the elementwise kernels fork: neither threads nor vector clones may change
 * a bit (test_clone_run: 1 thread with the widest clones, 2 threads with AVX2, the plain C). */
START_TEST(test_large_threads_bitwise) {
    const size_t n = ((size_t)1 << 22) + 5;
    enum { R = TEST_CLONE_RUNS };
    float *x = malloc(n * 4), *g = malloc(n * 4), *out[R], *m[R], *v[R];
    uint8_t *mask[R];
    for (int r = 0; r < R; r++) {
        out[r] = malloc(n * 4); m[r] = malloc(n * 4); v[r] = malloc(n * 4); mask[r] = malloc(n);
    }
    test_fill_uniform(x, n, -1, 1, 9, 1);
    test_fill_uniform(g, n, -1, 1, 9, 2);
    for (int r = 0; r < R; r++) {
        test_clone_run(r);
        relu_forward(n, x, out[r]);
        relu_backward(n, out[r], g, out[r]);
        dropout_forward(n, 0.4f, 7, 3, out[r], out[r], mask[r]);
        dropout_backward(n, 0.4f, mask[r], out[r], out[r]);
        memcpy(m[r], x, n * 4); memcpy(v[r], g, n * 4);
        for (size_t i = 0; i < n; i++) v[r][i] *= v[r][i];
        adam_update(n, out[r], g, m[r], v[r], 1e-3f, 0.9f, 0.999f, 1e-7f, 3);
        sgd_update(n, out[r], g, 0.1f);
        momentum_update(n, out[r], g, m[r], 0.1f, 0.9f, 1);
    }
    test_clone_reset();
    for (int r = 1; r < R; r++) {
        ck_assert_msg(memcmp(mask[0], mask[r], n) == 0, "mask: %s", test_clone_name(r));
        ck_assert_msg(memcmp(out[0], out[r], n * 4) == 0, "out: %s", test_clone_name(r));
        ck_assert_msg(memcmp(m[0], m[r], n * 4) == 0 && memcmp(v[0], v[r], n * 4) == 0,
                      "m, v: %s", test_clone_name(r));
    }
    for (size_t i = 0; i < n; i += 4099)
        ck_assert_msg(mask[1][i] == (philox_uniform(7, 3, i) >= 0.4f), "mask[%zu]", i);
    free(x); free(g);
    for (int r = 0; r < R; r++) { free(out[r]); free(m[r]); free(v[r]); free(mask[r]); }
}
END_TEST

/* The automatic thread count (kernels_set_threads(0)): cores less the cores other processes
 * keep busy. Others come from the 1-minute load average less this process's own threads (the
 * count in use) at the first read, then from /proc/stat over each interval: the busy time of
 * this process's CPUs less this process's own CPU time. */
START_TEST(test_auto_threads_rule) {
    static const struct { int cores; double load; int in_use, want; } CASES[] = {
        {2, 0.0, 0, 2},  /* idle, not read yet */
        {2, 2.1, 2, 2},  /* only this job's own two threads: keep both */
        {2, 1.4, 1, 2},  /* one thread in use, 0.4 of others: take the second core back */
        {2, 3.0, 2, 1},  /* another process keeps a core busy */
        {2, 8.0, 1, 1},  /* a shared, oversubscribed box: one thread */
        {8, 3.2, 0, 5},
        {8, 9.0, 4, 3},
        {8, 4.4, 4, 8},
        {1, 5.0, 1, 1},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const int got = kernels_auto_threads(
            CASES[i].cores, kernels_others_from_load(CASES[i].load, CASES[i].in_use));
        ck_assert_msg(got == CASES[i].want, "cores %d load %.1f in use %d: %d threads, want %d",
                      CASES[i].cores, CASES[i].load, CASES[i].in_use, got, CASES[i].want);
    }
    /* over an interval of 1.5 s: both cores busy throughout (3 core-seconds), 1.9 of them this
     * process's: others 0.73 of a core (a job beside it) -> one thread. Over 1 s with 2 busy
     * core-seconds, 1.95 of them this process's -> both. No time passed -> no others. */
    const CpuSample a = {100.0, 40.0, 7.0};
    const CpuSample b = {103.0, 41.9, 8.5};
    ck_assert_double_eq_tol(kernels_others_busy(a, b), 0.7333333, 1e-6);
    ck_assert_int_eq(kernels_auto_threads(2, kernels_others_busy(a, b)), 1);
    const CpuSample alone = {102.0, 41.95, 8.0};
    ck_assert_double_eq_tol(kernels_others_busy(a, alone), 0.05, 1e-9);
    ck_assert_int_eq(kernels_auto_threads(2, kernels_others_busy(a, alone)), 2);
    ck_assert_double_eq(kernels_others_busy(a, a), 0.0);
    /* explicit: exact; automatic: at least one thread, also at the second read a second on */
    kernels_set_threads(3);
    ck_assert_int_eq(kernels_get_threads(), 3);
    kernels_set_threads(0);
    ck_assert_int_ge(kernels_get_threads(), 1);
    const struct timespec second = {1, 50000000};
    nanosleep(&second, NULL);
    ck_assert_int_ge(kernels_get_threads(), 1);
}
END_TEST

/* /proc/stat's lines (Linux's format: a CPU's ticks of user nice system idle iowait irq softirq
 * steal guest guest_nice): busy = user + nice + system + irq + softirq; the total line, other
 * lines and short lines are not a CPU's. */
START_TEST(test_stat_cpu_line) {
    int cpu = -1;
    double busy = -1;
    ck_assert(kernels_stat_cpu_line("cpu0 2255 34 2290 22625563 6290 127 456 9 11 13\n", &cpu,
                                    &busy));
    ck_assert_int_eq(cpu, 0);
    ck_assert_double_eq(busy, 2255 + 34 + 2290 + 127 + 456);
    ck_assert(kernels_stat_cpu_line("cpu17 1 2 3 4 5 6 7\n", &cpu, &busy)); /* 2.6.0's 7 fields */
    ck_assert_int_eq(cpu, 17);
    ck_assert_double_eq(busy, 1 + 2 + 3 + 6 + 7);
    ck_assert(!kernels_stat_cpu_line("cpu  4705 356 584 3699 23 23 0 0 0 0\n", &cpu, &busy));
    ck_assert(!kernels_stat_cpu_line("cpu3 1 2 3 4 5 6\n", &cpu, &busy));
    ck_assert(!kernels_stat_cpu_line("intr 1462898 0 0\n", &cpu, &busy));
    ck_assert(!kernels_stat_cpu_line("ctxt 115315\n", &cpu, &busy));
    ck_assert_int_eq(cpu, 17); /* untouched by the lines that are not a CPU's */
}
END_TEST

/* uniform_fill_symmetric: element i is (2 * philox_uniform(seed, stream, i) - 1) * limit, the
 * per-element definition, at sizes off the groups of 4 and at a size that takes threads (1 and
 * 2: the same bits); the values cover [-limit, limit). */
START_TEST(test_uniform_fill) {
    const size_t sizes[] = {1, 3, 4, 7, 801, ((size_t)1 << 17) + 3};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        float *x = malloc(n * 4), *y = malloc(n * 4);
        kernels_set_threads(1);
        uniform_fill_symmetric(n, 0.04f, 21, 1 + s, x);
        kernels_set_threads(2);
        uniform_fill_symmetric(n, 0.04f, 21, 1 + s, y);
        ck_assert(memcmp(x, y, n * 4) == 0);
        float lo = 1, hi = -1;
        for (size_t i = 0; i < n; i++) {
            const float want = (2.0f * philox_uniform(21, 1 + s, i) - 1.0f) * 0.04f;
            ck_assert_msg(memcmp(&x[i], &want, 4) == 0, "n %zu element %zu: %.9g, want %.9g", n,
                          i, (double)x[i], (double)want);
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
        ck_assert(lo >= -0.04f && hi < 0.04f);
        if (n > 1000) ck_assert(lo < -0.039f && hi > 0.039f);
        free(x);
        free(y);
    }
}
END_TEST

int main(void) {
    Suite *su = suite_create("kernels_elementwise");
    TCase *tc = tcase_create("elementwise");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_relu);
    tcase_add_test(tc, test_relu_serial_same_bits);
    tcase_add_test(tc, test_relu_gradcheck);
    tcase_add_test(tc, test_dropout_mask);
    tcase_add_test(tc, test_dropout_backward);
    tcase_add_test(tc, test_large_threads_bitwise);
    tcase_add_test(tc, test_uniform_fill);
    tcase_add_test(tc, test_auto_threads_rule);
    tcase_add_test(tc, test_stat_cpu_line);
    suite_add_tcase(su, tc);
    return test_run_suite(su);
}
