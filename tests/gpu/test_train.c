/* test_train.c: whole training on the GPU against the CPU.
 *   - 200 steps (batch 100, Adam, dropout on, shuffled resident data) from the same seed on the
 *     CPU, on our CUDA kernels and on cuDNN/cuBLAS: every step's loss agrees with the CPU's to
 *     1e-3 relative (the GEMMs sum in different orders, and 200 Adam steps carry the rounding
 *     forward; identical dropout masks and batches keep the runs on the same path).
 *   - two CUDA runs from the same seed give bit-identical losses, and running the 200 steps as
 *     one call (the captured CUDA graph replayed 200 times) ends at the same bits as 200 single
 *     steps.
 * Data: 3000 synthetic 28x28 images, a noisy class template each (so the loss falls), a quarter
 * of them relabelled at random (so it does not fall to ~0, where relative differences mean
 * nothing).
 * Exit 77 without a GPU. CNN_TEST_QUICK=1: 40 steps. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "gpu_check.h"
#include "kernels/philox.h"

#define N_DATA 3000
#define PIXELS 784

static uint8_t pixels[N_DATA * PIXELS];
static int32_t labels[N_DATA];

static void make_data(void) {
    static float templ[10][PIXELS];
    for (int c = 0; c < 10; c++)
        for (int p = 0; p < PIXELS; p++) templ[c][p] = philox_uniform(99, (uint64_t)c, (uint64_t)p) > 0.7f ? 220.0f : 0.0f;
    for (int i = 0; i < N_DATA; i++) {
        int c = (int)(philox_u32(99, 100, (uint64_t)i) % 10u);
        uint32_t r = philox_u32(99, 101, (uint64_t)i);
        labels[i] = (r & 3u) == 0 ? (int32_t)((r >> 8) % 10u) : c;
        for (int p = 0; p < PIXELS; p++) {
            float v = templ[c][p] + 60.0f * philox_uniform(99, 200 + (uint64_t)i, (uint64_t)p);
            pixels[(size_t)i * PIXELS + p] = (uint8_t)(v > 255.0f ? 255.0f : v);
        }
    }
}

static Model *make_model(Device d) {
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.device = d;
    cfg.seed = 1234;
    cfg.batch = 100;
    char err[512];
    Model *m = model_create(&cfg, err, sizeof err);
    if (!m) {
        printf("FAIL model_create(%s): %s\n", device_name(d), err);
        exit(1);
    }
    if (model_set_train_data(m, pixels, labels, N_DATA, 1, 77, err, sizeof err) != 0) {
        printf("FAIL model_set_train_data(%s): %s\n", device_name(d), err);
        exit(1);
    }
    return m;
}

/* Losses of `steps` single steps (one model_train_steps call each). */
static void train_losses(Device d, int steps, float *loss) {
    Model *m = make_model(d);
    char err[512];
    for (int s = 0; s < steps; s++)
        if (model_train_steps(m, 1, &loss[s], err, sizeof err) != 0) {
            printf("FAIL %s step %d: %s\n", device_name(d), s, err);
            exit(1);
        }
    model_free(m);
}

/* The last loss of `steps` steps run as one call. */
static float train_chunk(Device d, int steps) {
    Model *m = make_model(d);
    char err[512];
    float last = NAN;
    if (model_train_steps(m, steps, &last, err, sizeof err) != 0) {
        printf("FAIL %s %d steps in one call: %s\n", device_name(d), steps, err);
        exit(1);
    }
    model_free(m);
    return last;
}

static void compare(const char *what, const float *gpu, const float *cpu, int steps, double tol) {
    double worst = 0;
    int at = 0, nan = 0;
    for (int s = 0; s < steps; s++) {
        if (!isfinite(gpu[s]) || !isfinite(cpu[s])) { nan = 1; at = s; break; }
        double r = fabs((double)gpu[s] - cpu[s]) / fabs((double)cpu[s]);
        if (r > worst) { worst = r; at = s; }
    }
    int ok = !nan && worst <= tol;
    check_count++;
    if (!ok) check_failures++;
    printf("%s %-40s %d steps: max rel diff %.2e at step %d (gpu %.7g cpu %.7g), tol %.0e%s\n",
           ok ? "PASS" : "FAIL", what, steps, worst, at, (double)gpu[at], (double)cpu[at], tol,
           nan ? " NON-FINITE" : "");
}

int main(void) {
    gpu_require("test_train");
    int quick = getenv("CNN_TEST_QUICK") && strcmp(getenv("CNN_TEST_QUICK"), "0") != 0;
    const int steps = quick ? 40 : 200;
    make_data();
    float *cpu = calloc(steps, sizeof *cpu), *cuda = calloc(steps, sizeof *cuda);
    float *cuda2 = calloc(steps, sizeof *cuda2), *cudnn = calloc(steps, sizeof *cudnn);
    if (!cpu || !cuda || !cuda2 || !cudnn) return 1;

    train_losses(DEVICE_CPU, steps, cpu);
    train_losses(DEVICE_CUDA, steps, cuda);
    train_losses(DEVICE_CUDA, steps, cuda2);
    train_losses(DEVICE_CUDNN, steps, cudnn);
    float chunk = train_chunk(DEVICE_CUDA, steps);
    for (int s = 0; s < steps; s += steps / 10)
        printf("     step %3d loss cpu %.6f cuda %.6f cudnn %.6f\n", s, cpu[s], cuda[s], cudnn[s]);
    printf("     step %3d loss cpu %.6f cuda %.6f cudnn %.6f\n", steps - 1, cpu[steps - 1],
           cuda[steps - 1], cudnn[steps - 1]);

    compare("cuda vs cpu, every step", cuda, cpu, steps, 1e-3);
    compare("cudnn vs cpu, every step", cudnn, cpu, steps, 1e-3);
    check_equal_bytes("cuda run 1 == run 2 (losses, bitwise)", cuda2, cuda, steps * sizeof(float));
    check_equal_bytes("cuda 1-step calls == one graph-replayed call", &chunk, &cuda[steps - 1],
                      sizeof chunk);
    check_count++;
    if (!(cuda[steps - 1] < 0.9f * cuda[0])) {
        check_failures++;
        printf("FAIL cuda loss falls (%.4f -> %.4f)\n", cuda[0], cuda[steps - 1]);
    } else {
        printf("PASS cuda loss falls (%.4f -> %.4f)\n", cuda[0], cuda[steps - 1]);
    }
    free(cpu); free(cuda); free(cuda2); free(cudnn);
    return check_summary("test_train");
}
