/* gradcheck.h: finite-difference gradient checks and random test data, shared by the kernel
 * and core tests.
 *
 * The loss a check differentiates is any scalar function of a float buffer, evaluated by a
 * callback; sum it in double (gradcheck_dot) so the differences are not lost in rounding. */
#ifndef TESTS_SUPPORT_GRADCHECK_H
#define TESTS_SUPPORT_GRADCHECK_H

#include <stddef.h>
#include <stdint.h>

/* Scalar loss of the current contents of the checked buffer(s). */
typedef double (*GradcheckLossFn)(void *ctx);

typedef struct {
    double max_err;     /* max over checked elements of |num - ana| / max(|num|, |ana|, floor) */
    size_t worst;       /* index of that element */
    double worst_num, worst_ana;
    size_t checked;
} GradcheckResult;

/* Central differences (L(x+eps) - L(x-eps)) / 2eps for elements of x, compared with the
 * analytic gradient `ana`. Checks every element when n <= max_checks, else max_checks of
 * them spread evenly. x is restored afterwards. */
GradcheckResult gradcheck(GradcheckLossFn loss, void *ctx, float *x, size_t n, const float *ana,
                          float eps, double floor, size_t max_checks);

/* sum_i a[i] * b[i] in double. */
double gradcheck_dot(const float *a, const float *b, size_t n);

/* Uniform floats in [lo, hi) from Philox (seed, stream = a per-buffer tag). */
void test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed, uint64_t stream);
/* Zeroes images x[n][h][w][c] (nonzero on entry) like MNIST's, mostly background: per image,
 * the rows outside a random band are 0, and each row inside keeps one run of nonzeros whose
 * ends shift a column from row to row and image to image (a third of the run's inner values
 * 0 or -0); every seventh image from the fourth is all 0, and from the sixth keeps a nonzero
 * in each corner (Philox: seed, stream). */
void test_zero_background(float *x, int n, int h, int w, int c, uint64_t seed, uint64_t stream);
/* Fills with NaN, so elements a kernel fails to write show up. */
void test_poison(float *x, size_t n);
/* Max over i of |a - b| / (atol + rtol * |b|); > 1 means out of tolerance. NaN counts as huge. */
double test_max_scaled_diff(const float *a, const float *b, size_t n, double atol, double rtol,
                            size_t *worst);
/* 1 when the CNN_TEST_QUICK environment variable is set (sanitizer runs: smaller sizes). */
int test_quick(void);

/* The CPU kernels' runs a bit-for-bit test compares: run r (0 <= r < TEST_CLONE_RUNS) sets the
 * thread count and caps the vector clones (CNN_CPU_ISA): 0: 1 thread, the widest clones this CPU
 * has; 1: 2 threads, AVX2 at most; 2: 1 thread, the plain C. Every run must give the same bits.
 * test_clone_name(r) says which, for messages; test_clone_reset() goes back to the defaults. */
#define TEST_CLONE_RUNS 3
void test_clone_run(int r);
const char *test_clone_name(int r);
void test_clone_reset(void);

#endif
