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

void test_zero_background(float *x, int n, int h, int w, int c, uint64_t seed, uint64_t stream) {
    const size_t img = (size_t)h * w * c;
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * img;
        /* the rows [r0, r1) have a run of nonzeros, the others none */
        const int r0 = (int)(philox_uniform(seed, stream, 2 * (uint64_t)i) * h / 3);
        const int r1 = h - (int)(philox_uniform(seed, stream, 2 * (uint64_t)i + 1) * h / 3);
        for (int y = 0; y < h; y++) {
            /* row y's run [a, e): its ends move by a column from row to row and image to image,
             * so that each column is some row's first and some row's last nonzero */
            const int a = (3 * i + y) % w, e = a + 1 + (5 * i + 2 * y) % (w - a);
            for (int xx = 0; xx < w; xx++)
                for (int ch = 0; ch < c; ch++) {
                    const size_t el = ((size_t)y * w + xx) * c + ch;
                    const double v = philox_uniform(seed, stream + 1, (uint64_t)i * img + el);
                    const int corner = (y == 0 || y == h - 1) && (xx == 0 || xx == w - 1);
                    if (i % 7 == 5 && corner) continue;
                    if (i % 7 == 3 || y < r0 || y >= r1 || xx < a || xx >= e) xi[el] = 0.0f;
                    else if (xx == a || xx == e - 1) continue; /* the run's ends stay nonzero */
                    else if (v < 0.25) xi[el] = 0.0f;
                    else if (v < 0.33) xi[el] = -0.0f;
                }
        }
    }
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
