/* bench/kernels_cpu.c: times the CPU kernels at the MNIST model's shapes (batch 100 unless
 * given) and adds up one training step's FLOP budget.
 *   bench_kernels_cpu [--threads N] [--batch N] [--reps N] [--reference]
 * --reference also times the plain reference kernels (slow) for comparison (and the parameters'
 * initialisation by its per-element definition). Not a test. */
#include "kernels/kernels.h"
#include "kernels/philox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
/* CPU time of the whole process (all threads): on a shared machine, with 1 thread, the work
 * done without the time spent preempted. */
static double cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

/* 64-byte aligned, as the model's arena places every tensor (core/arena.h): a 64-byte vector
 * load that crosses two cache lines costs two, and with malloc's 16-byte alignment most do
 * (measured: conv2's forward at 25% nonzero took 5.65 ms from malloc's buffers, 3.82 aligned). */
static float *rand_buf(size_t n, unsigned seed) {
    float *p = aligned_alloc(64, (n * sizeof *p + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "bench: out of memory (%zu floats)\n", n); exit(1); }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

/* The parameters' initialisation by its definition (model.c before session 7): one Philox call
 * per element, each using one of its four words; the reference for uniform_fill_symmetric. */
static void init_per_element(size_t n, float limit, float *x) {
    for (size_t i = 0; i < n; i++) x[i] = (2.0f * philox_uniform(1, 2, i) - 1.0f) * limit;
}

/* A copy of x (n floats) with each value kept with probability `density`, else 0: the input of
 * a conv behind a ReLU and a pool (conv2d_forward takes an image's nonzeros where it is at most
 * 60% nonzero). */
static float *with_zeros(const float *x, size_t n, double density, unsigned seed) {
    float *p = rand_buf(n, seed);
    for (size_t i = 0; i < n; i++) p[i] = p[i] + 0.5f < density ? x[i] : 0.0f;
    return p;
}

typedef struct { const char *name; double flop, best, total, cpu; int in_step; } Row;
static Row rows[40];
static int nrows;
static int reps = 5;

/* Runs the call reps times (after one warm-up), records the best wall time, the mean, and the
 * least CPU time. */
#define TIME(label, flops, in_step_, call)                                                   \
    do {                                                                                     \
        call;                                                                                \
        double best = 1e30, sum = 0, cpu = 1e30;                                             \
        for (int r_ = 0; r_ < reps; r_++) {                                                  \
            double c0 = cpu_s(), t0 = now_s();                                               \
            call;                                                                            \
            double dt = now_s() - t0, dc = cpu_s() - c0;                                     \
            best = dt < best ? dt : best;                                                    \
            cpu = dc < cpu ? dc : cpu;                                                       \
            sum += dt;                                                                       \
        }                                                                                    \
        rows[nrows++] = (Row){label, flops, best, sum / reps, cpu, in_step_};                \
        printf("%-30s %8.2f ms (mean %8.2f, cpu %8.2f) %6.1f GFLOP/s\n", label, best * 1e3,  \
               sum / reps * 1e3, cpu * 1e3, (flops) / best * 1e-9);                          \
        fflush(stdout);                                                                      \
    } while (0)

int main(int argc, char **argv) {
    int threads = 0, batch = 100, reference = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reference")) reference = 1;
        else { fprintf(stderr, "usage: %s [--threads N] [--batch N] [--reps N] [--reference]\n", argv[0]); return 2; }
    }
    if (batch <= 0 || reps <= 0) { fprintf(stderr, "bench: --batch and --reps must be > 0\n"); return 2; }
    kernels_set_threads(threads);
    printf("CPU kernels, batch %d, %d thread(s), best of %d\n", batch, kernels_get_threads(), reps);
    const int N = batch;

    Conv2dShape c1, c2;
    conv2d_shape_init(&c1, N, 28, 28, 1, 5, 5, 32, 1, 1, 1);
    conv2d_shape_init(&c2, N, 14, 14, 32, 5, 5, 64, 1, 1, 1);
    size_t nws = conv2d_workspace_floats(&c1);
    if (conv2d_workspace_floats(&c2) > nws) nws = conv2d_workspace_floats(&c2);
    float *ws = rand_buf(nws, 1);
    float *x1 = rand_buf((size_t)N * 784, 2), *w1 = rand_buf(25 * 32, 3), *b1 = rand_buf(32, 4);
    float *y1 = rand_buf((size_t)N * 784 * 32, 5), *dx1 = rand_buf((size_t)N * 784, 6);
    float *dw1 = rand_buf(25 * 32, 7), *db1 = rand_buf(32, 8);
    float *x2 = rand_buf((size_t)N * 196 * 32, 9), *w2 = rand_buf(800 * 64, 10), *b2 = rand_buf(64, 11);
    float *y2 = rand_buf((size_t)N * 196 * 64, 12), *dx2 = rand_buf((size_t)N * 196 * 32, 13);
    float *dw2 = rand_buf(800 * 64, 14), *db2 = rand_buf(64, 15);
    float *xd = rand_buf((size_t)N * 3136, 16), *wd = rand_buf(3136 * 1024, 17), *bd = rand_buf(1024, 18);
    float *yd = rand_buf((size_t)N * 1024, 19), *dxd = rand_buf((size_t)N * 3136, 20);
    float *dwd = rand_buf(3136 * 1024, 21), *dbd = rand_buf(1024, 22);
    float *we = rand_buf(1024 * 10, 23), *be = rand_buf(10, 24), *ye = rand_buf((size_t)N * 10, 25);
    float *dxe = rand_buf((size_t)N * 1024, 26), *dwe = rand_buf(1024 * 10, 27), *dbe = rand_buf(10, 28);
    Pool2dShape p1, p2;
    pool2d_shape_init(&p1, N, 28, 28, 32, 2, 2, 2, 2, 1);
    pool2d_shape_init(&p2, N, 14, 14, 64, 2, 2, 2, 2, 1);
    int32_t *am1 = malloc((size_t)N * 196 * 32 * 4), *am2 = malloc((size_t)N * 49 * 64 * 4);
    float *py1 = rand_buf((size_t)N * 196 * 32, 29), *py2 = rand_buf((size_t)N * 49 * 64, 30);
    uint8_t *mask = malloc((size_t)N * 1024);
    float *m = rand_buf(3136 * 1024, 31), *v = rand_buf(3136 * 1024, 32);
    for (size_t i = 0; i < (size_t)3136 * 1024; i++) v[i] = v[i] * v[i];
    int32_t *labels = malloc(N * sizeof *labels);
    for (int i = 0; i < N; i++) labels[i] = i % 10;
    float loss;

    const double f1 = 2.0 * N * 784 * 32 * 25, f2 = 2.0 * N * 196 * 64 * 800;
    const double fd = 2.0 * N * 3136 * 1024, fe = 2.0 * N * 1024 * 10;
    TIME("conv1 forward 28x28x1->32", f1, 1, conv2d_forward(&c1, x1, w1, b1, y1, ws));
    TIME("conv1 backward_filter", f1, 1, conv2d_backward_filter(&c1, x1, y1, dw1, db1, ws));
    TIME("conv1 backward_data (unused)", f1, 0, conv2d_backward_data(&c1, y1, w1, dx1, ws));
    TIME("conv2 forward 14x14x32->64", f2, 1, conv2d_forward(&c2, x2, w2, b2, y2, ws));
    /* The conv over its input's nonzeros (GFLOP/s: the dense conv's FLOPs over the time). */
    float *x2_55 = with_zeros(x2, (size_t)N * 196 * 32, 0.55, 37);
    float *x2_40 = with_zeros(x2, (size_t)N * 196 * 32, 0.40, 33);
    float *x2_25 = with_zeros(x2, (size_t)N * 196 * 32, 0.25, 34);
    float *x2_10 = with_zeros(x2, (size_t)N * 196 * 32, 0.10, 35);
    float *x1_19 = with_zeros(x1, (size_t)N * 784, 0.19, 36);
    TIME("conv2 forward, x 55% nonzero", f2, 0, conv2d_forward(&c2, x2_55, w2, b2, y2, ws));
    TIME("conv2 forward, x 40% nonzero", f2, 0, conv2d_forward(&c2, x2_40, w2, b2, y2, ws));
    TIME("conv2 forward, x 25% nonzero", f2, 0, conv2d_forward(&c2, x2_25, w2, b2, y2, ws));
    TIME("conv2 forward, x 10% nonzero", f2, 0, conv2d_forward(&c2, x2_10, w2, b2, y2, ws));
    TIME("conv1 forward, x 19% nonzero", f1, 0, conv2d_forward(&c1, x1_19, w1, b1, y1, ws));
    TIME("conv2 backward_data", f2, 1, conv2d_backward_data(&c2, y2, w2, dx2, ws));
    TIME("conv2 backward_filter", f2, 1, conv2d_backward_filter(&c2, x2, y2, dw2, db2, ws));
    TIME("dense 3136->1024 forward", fd, 1, dense_forward(N, 3136, 1024, xd, wd, bd, yd));
    TIME("dense 3136->1024 backward", 2 * fd, 1, dense_backward(N, 3136, 1024, xd, wd, yd, dxd, dwd, dbd));
    TIME("dense 1024->10 forward", fe, 1, dense_forward(N, 1024, 10, yd, we, be, ye));
    TIME("dense 1024->10 backward", 2 * fe, 1, dense_backward(N, 1024, 10, yd, we, ye, dxe, dwe, dbe));
    TIME("relu fwd+bwd conv1 out", 0, 1, (relu_forward((size_t)N * 784 * 32, y1, y1), relu_backward((size_t)N * 784 * 32, y1, y1, y1)));
    TIME("maxpool1 fwd+bwd", 0, 1, (maxpool2d_forward(&p1, y1, py1, am1), maxpool2d_backward(&p1, py1, am1, y1)));
    TIME("maxpool2 fwd+bwd", 0, 1, (maxpool2d_forward(&p2, y2, py2, am2), maxpool2d_backward(&p2, py2, am2, y2)));
    TIME("dropout fwd+bwd 1024", 0, 1, (dropout_forward((size_t)N * 1024, 0.4f, 1, 2, yd, yd, mask), dropout_backward((size_t)N * 1024, 0.4f, mask, yd, yd)));
    TIME("softmax_xent fwd+bwd", 0, 1, (softmax_xent_forward(N, 10, ye, labels, ye, &loss), softmax_xent_backward(N, 10, ye, labels, 1.0f, ye)));
    TIME("adam dense1 kernel (3.2M)", 0, 1, adam_update((size_t)3136 * 1024, wd, dwd, m, v, 1e-3f, 0.9f, 0.999f, 1e-7f, 10));
    /* not in the step: model creation's initialisation of all 3,274,634 parameters */
    const size_t n_params = 3274634;
    float *init = rand_buf(n_params, 21);
    TIME("init: uniform fill, all params", 0, 0, uniform_fill_symmetric(n_params, 0.04f, 1, 2, init));
    if (reference) {
        int saved = reps;
        reps = 1;
        TIME("REF conv2 forward", f2, 0, conv2d_forward_reference(&c2, x2, w2, b2, y2));
        TIME("REF conv2 backward_data", f2, 0, conv2d_backward_data_reference(&c2, y2, w2, dx2));
        TIME("REF conv2 backward_filter", f2, 0, conv2d_backward_filter_reference(&c2, x2, y2, dw2, db2));
        TIME("REF sgemm dense fwd", fd, 0, sgemm_reference(0, 0, N, 1024, 3136, 1, xd, 3136, wd, 1024, 0, yd, 1024));
        TIME("REF init: per element", 0, 0, init_per_element(n_params, 0.04f, init));
        reps = saved;
    }
    double step_flop = 0, step_s = 0, step_cpu = 0;
    for (int i = 0; i < nrows; i++)
        if (rows[i].in_step) {
            step_flop += rows[i].flop;
            step_s += rows[i].best;
            step_cpu += rows[i].cpu;
        }
    printf("training step (the in-step kernels above; the small Adam updates left out):\n"
           "  %.2f GFLOP, %.1f ms (cpu %.1f ms), %.1f GFLOP/s, %.0f images/s\n",
           step_flop * 1e-9, step_s * 1e3, step_cpu * 1e3, step_flop / step_s * 1e-9, N / step_s);
    return 0;
}
