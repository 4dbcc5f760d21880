/* gradcheck.c: see gradcheck.h. */
#include "support/gradcheck.h"

#include "kernels/kernels.h"
#include "kernels/philox.h"

#include <math.h>
#include <stdlib.h>

GradcheckResult gradcheck(GradcheckLossFn loss, void *ctx, float *x, size_t n, const float *ana,
                          float eps, double floor, size_t max_checks) {
    GradcheckResult r = {0.0, 0, 0.0, 0.0, 0};
    size_t step = (max_checks == 0 || n <= max_checks) ? 1 : (n + max_checks - 1) / max_checks;
    for (size_t i = 0; i < n; i += step) {
        float saved = x[i];
        x[i] = saved + eps;
        double lp = loss(ctx);
        x[i] = saved - eps;
        double lm = loss(ctx);
        x[i] = saved;
        /* Divide by the step actually taken (x +- eps rounds in float). */
        double h = (double)(saved + eps) - (double)(saved - eps);
        double num = (lp - lm) / h;
        double a = ana[i];
        double scale = fmax(fmax(fabs(num), fabs(a)), floor);
        double err = fabs(num - a) / scale;
        if (!(err <= r.max_err)) { /* NaN wins too */
            r.max_err = err;
            r.worst = i;
            r.worst_num = num;
            r.worst_ana = a;
        }
        r.checked++;
    }
    return r;
}

double gradcheck_dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

void test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * philox_uniform(seed, stream, i);
}

void test_poison(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

double test_max_scaled_diff(const float *a, const float *b, size_t n, double atol, double rtol,
                            size_t *worst) {
    double mx = 0.0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(d <= mx)) {
            mx = isnan(d) ? INFINITY : d;
            w = i;
        }
    }
    if (worst) *worst = w;
    return mx;
}

int test_quick(void) {
    const char *q = getenv("CNN_TEST_QUICK");
    return q && *q && *q != '0';
}

void test_clone_run(int r) {
    kernels_set_threads(r == 1 ? 2 : 1); /* 2 even on a busy or 1-core machine */
    if (r == 0) unsetenv("CNN_CPU_ISA");
    else setenv("CNN_CPU_ISA", r == 1 ? "avx2" : "base", 1);
    kernels_cpu_isa_refresh();
}

const char *test_clone_name(int r) {
    return r == 0 ? "1 thread, widest clones" : r == 1 ? "2 threads, AVX2" : "1 thread, plain C";
}

void test_clone_reset(void) {
    kernels_set_threads(0);
    unsetenv("CNN_CPU_ISA");
    kernels_cpu_isa_refresh();
}
