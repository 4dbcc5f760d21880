/* bench_relu_sparsity: how much work the filter gradients from the pools' winners have in a
 * training run (kernels/conv2d_pool.cu skips a pooled position whose winner the ReLU zeroed, but
 * one warp serves 32 channels, so it skips only when all 32 are zero). On the CPU: the original
 * model (seed 1, batch 100 or --batch, Adam 0.001, as bench_step_cuda) trained on random images
 * and on MNIST; after each listed step count, the conv layers' forward on the first 1,000
 * training images gives, for pool1 and pool2:
 *   alive   the fraction of pooled outputs > 0 (the ReLU passed the winner)
 *   warps   the fraction of (pooled position, 32-channel group) with one or more alive: the
 *           share of the kernel's warp iterations that do their multiply-adds
 * and for conv2's data gradient from pool2's winners (item 38), the terms per input pixel: the
 * alive winners whose 5x5 filter window covers the pixel, which is the number of
 * multiply-adds each of its 32 input channels takes there (conv2d_relu_maxpool_backward_data;
 * the GEMM over the conv output's gradient takes 25 x 64 = 1,600).
 * Usage: bench_relu_sparsity [--data MNIST_DIR] [--batch N] [steps ...]   (default batch 100,
 *        steps 0 20 600)
 * A measurement for docs/gpu.md (item 36), not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_data.h"
#include "core/model.h"
#include "kernels/kernels.h"

#define SAMPLE 1000

typedef struct {
    double alive, warps;
} Sparsity;

/* y [n, oh, ow, k] NHWC */
static Sparsity sparsity(const float *y, int positions, int k) {
    size_t alive = 0, warps = 0, groups = 0;
    for (int p = 0; p < positions; p++)
        for (int g = 0; g < k; g += 32) {
            int any = 0;
            for (int c = g; c < k && c < g + 32; c++)
                if (y[(size_t)p * k + c] > 0.0f) {
                    alive++;
                    any = 1;
                }
            warps += any;
            groups++;
        }
    return (Sparsity){(double)alive / ((double)positions * k), (double)warps / (double)groups};
}

/* The terms per input pixel of the data gradient from the pool's winners: each alive winner
 * (y > 0) adds to the pixels its 5x5 SAME window covers. y, argmax [n, h/2, w/2, k] of a conv
 * over [n, h, w, *] (argmax into the conv output [n, h, w, k]). */
static double terms_per_pixel(const float *y, const int32_t *argmax, int n, int h, int w, int k) {
    const size_t outputs = (size_t)n * (h / 2) * (w / 2) * k;
    double terms = 0;
    for (size_t o = 0; o < outputs; o++) {
        if (!(y[o] > 0.0f)) continue;
        const size_t pos = (size_t)argmax[o] / (size_t)k;
        const int ow = (int)(pos % (size_t)w), oh = (int)(pos / (size_t)w % (size_t)h);
        const int rows = (oh + 2 < h - 1 ? oh + 2 : h - 1) - (oh - 2 > 0 ? oh - 2 : 0) + 1;
        const int cols = (ow + 2 < w - 1 ? ow + 2 : w - 1) - (ow - 2 > 0 ? ow - 2 : 0) + 1;
        terms += rows * cols;
    }
    return terms / ((double)n * h * w);
}

/* A conv (5x5 SAME, stride 1) + ReLU + max pool 2/2 on x [n,h,w,c]; returns the pooled output
 * [n,h/2,w/2,k] (malloc'd) and, with terms != NULL, the data gradient's terms per pixel. */
static float *conv_relu_pool(const float *x, int n, int h, int w, int c, const float *kernel,
                             const float *bias, int k, double *terms) {
    Conv2dShape cs;
    Pool2dShape ps;
    conv2d_shape_init(&cs, n, h, w, c, 5, 5, k, 1, 1, 1);
    pool2d_shape_init(&ps, n, cs.oh, cs.ow, k, 2, 2, 2, 2, 0);
    size_t ny = (size_t)n * cs.oh * cs.ow * k, np = (size_t)n * ps.oh * ps.ow * k;
    float *y = malloc(ny * sizeof *y), *ws = malloc(conv2d_workspace_floats(&cs) * sizeof *ws);
    float *p = malloc(np * sizeof *p);
    int32_t *argmax = malloc(np * sizeof *argmax);
    if (!y || !ws || !p || !argmax) {
        fprintf(stderr, "bench_relu_sparsity: out of memory\n");
        exit(1);
    }
    conv2d_forward(&cs, x, kernel, bias, y, ws);
    relu_forward(ny, y, y);
    maxpool2d_forward(&ps, y, p, argmax);
    if (terms) *terms = terms_per_pixel(p, argmax, n, h, w, k);
    free(y);
    free(ws);
    free(argmax);
    return p;
}

/* The model's state tensor called `name`, copied to the host (malloc'd). */
static float *state(const Model *m, const char *name) {
    for (int i = 0; i < model_state_count(m); i++) {
        const StateInfo *s = model_state_info(m, i);
        if (strcmp(s->name, name) != 0) continue;
        float *h = malloc(s->count * sizeof *h);
        if (h && model_state_get(m, i, h) == 0) return h;
        free(h);
    }
    fprintf(stderr, "bench_relu_sparsity: no state '%s'\n", name);
    exit(1);
}

static void report(const char *data_name, const BenchData *d, int batch, int64_t step,
                   const Model *m) {
    float *x = malloc((size_t)SAMPLE * BENCH_PIXELS * sizeof *x);
    if (!x) exit(1);
    for (size_t i = 0; i < (size_t)SAMPLE * BENCH_PIXELS; i++) x[i] = d->pixels[i];
    float *w1 = state(m, "conv2d/kernel"), *b1 = state(m, "conv2d/bias");
    float *w2 = state(m, "conv2d_1/kernel"), *b2 = state(m, "conv2d_1/bias");
    double terms;
    float *p1 = conv_relu_pool(x, SAMPLE, 28, 28, 1, w1, b1, 32, NULL);
    float *p2 = conv_relu_pool(p1, SAMPLE, 14, 14, 32, w2, b2, 64, &terms);
    Sparsity s1 = sparsity(p1, SAMPLE * 14 * 14, 32), s2 = sparsity(p2, SAMPLE * 7 * 7, 64);
    printf("| %s | %d | %lld | %.3f | %.3f | %.3f | %.3f | %.1f |\n", data_name, batch,
           (long long)step, s1.alive, s1.warps, s2.alive, s2.warps, terms);
    fflush(stdout);
    free(x);
    free(w1);
    free(b1);
    free(w2);
    free(b2);
    free(p1);
    free(p2);
}

static int run(const char *data_name, const BenchData *d, int batch, const int *steps,
               int n_steps) {
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.seed = 1;
    cfg.batch = batch;
    char err[512];
    Model *m = model_create(&cfg, err, sizeof err);
    if (!m || model_set_train_data(m, d->pixels, d->labels, d->n, 1, 5, err, sizeof err) != 0) {
        fprintf(stderr, "bench_relu_sparsity: %s\n", err);
        model_free(m);
        return -1;
    }
    for (int i = 0; i < n_steps; i++) {
        int todo = steps[i] - (int)model_step(m);
        if (todo > 0 && model_train_steps(m, todo, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "bench_relu_sparsity: %s\n", err);
            model_free(m);
            return -1;
        }
        report(data_name, d, batch, model_step(m), m);
    }
    model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *data_dir = NULL;
    int steps[16] = {0, 20, 600}, n_steps = 0, batch = 100;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            data_dir = argv[++i];
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0) {
            batch = atoi(argv[++i]);
        } else if (atoi(argv[i]) >= 0 && argv[i][0] >= '0' && argv[i][0] <= '9' && n_steps < 16) {
            steps[n_steps++] = atoi(argv[i]);
        } else {
            fprintf(stderr, "usage: bench_relu_sparsity [--data MNIST_DIR] [--batch N] "
                            "[steps ...]\n");
            return 2;
        }
    }
    if (n_steps == 0) n_steps = 3;
    BenchData random = {0}, mnist = {0};
    if (bench_random_data(&random) != 0 || (data_dir && bench_mnist_data(data_dir, &mnist) != 0))
        return 1;
    printf("| data | batch | steps | pool1 alive | pool1 warps | pool2 alive | pool2 warps | "
           "conv2 dx terms/pixel |\n|---|---|---|---|---|---|---|---|\n");
    int rc = run("random", &random, batch, steps, n_steps);
    if (rc == 0 && data_dir) rc = run("MNIST", &mnist, batch, steps, n_steps);
    bench_data_free(&random);
    bench_data_free(&mnist);
    return rc ? 1 : 0;
}
