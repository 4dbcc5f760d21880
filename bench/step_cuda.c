/* bench_step_cuda: the whole training step (gather, forward, loss, backward, Adam) through the
 * model API on the GPU, eager and as a replayed CUDA graph, at batch 100 and 1000. Engines, each
 * the one above it less one change (switches in docs/gpu.md):
 *   ours-cuda         the defaults (since GPU run 5: the conv + pool forwards split, conv2's
 *                     data gradient from pool2's winners, cross-entropy version 3)
 *   ours-cuda-run5    GPU run 5's defaults: the fused conv + ReLU + pool forward, conv2's data
 *                     gradient through pool2's backward and the GEMM, cross-entropy version 2
 *                     (CNN_CUDA_CONV_POOL_FWD=1 CNN_CUDA_DATA_FROM_POOL=0 CNN_XENT_V=2: items
 *                     35, 38 and 31, which run 5 timed faster and made the defaults)
 *   ours-cuda-gemm4   GEMM version 4: the FMA loop, not the tensor cores (CNN_GEMM_V=4)
 *   ours-cuda-dense2  the narrow logits-layer kernels at every batch (CNN_DENSE_V=2)
 *   ours-cuda-graph1  one training step per replayed graph (CNN_CUDA_GRAPH_STEPS=1): GPU run
 *                     4's "ours-cuda-streams1"
 *   ours-cuda-streams0  the parameter gradients on the main stream too (CNN_CUDA_STREAMS=0)
 *   ours-cuda-pdl0    launched without programmatic dependent launch (CNN_CUDA_PDL=0)
 *   ours-cuda-dense1  the logits layer through the GEMM (CNN_DENSE_V=1)
 *   ours-cuda-fused2  conv2's filter gradient from its GEMM, not pool2's winners (CNN_CUDA_FUSED=2)
 *   ours-cuda-fused1  no fused first layer either (CNN_CUDA_FUSED=1)
 *   ours-cuda-gemm3   GEMM version 3: no vector loads (session 3's step before them)
 *   ours-cuda-run3    the step of GPU runs 2 and 3 (max-pool 2, Adam and cross-entropy 1)
 *   ours-cuda-run1    the step of the first GPU run (unfused, GEMM 1, max-pool 1)
 * (the chain below ours-cuda-run5 keeps run 5's conv + pool switches: they act from fusion
 * level 3 only); and off that chain, run 5's three flips one at a time, each the defaults with
 * its old setting (tests/gpu/report.py's FLIPPED):
 *   ours-cuda-xent2   cross-entropy version 2, one block (CNN_XENT_V=2)
 *   ours-cuda-convpool1  the first layer's conv + ReLU + pool forward as one kernel
 *                     (CNN_CUDA_CONV_POOL_FWD=1; its filter gradient from pool1's winners either
 *                     way)
 *   ours-cuda-dfp0    conv2's data gradient through pool2's backward and the GEMM
 *                     (CNN_CUDA_DATA_FROM_POOL=0)
 * and the defaults with one switch that GPU runs 4 and 5 timed slower (each a candidate again
 * on the new defaults; tests/gpu/report.py's CANDIDATES):
 *   ours-cuda-fused4  conv2 + ReLU + pool2 as one op (CNN_CUDA_FUSED=4; with the fused forward)
 *   ours-cuda-fused5  that and the dropout with the logits layer as one op (CNN_CUDA_FUSED=5)
 *   ours-cuda-streams2  per-layer optimizer updates on the gradient stream (CNN_CUDA_STREAMS=2)
 *   ours-cuda-nopdl   without programmatic dependent launch (CNN_CUDA_PDL=0)
 *   ours-cuda-l2      conv2's filter gradient from its GEMM, not pool2's winners
 *                     (CNN_CUDA_FUSED=2), on run 5's defaults (level 2 has neither of items 35
 *                     and 38): on the random images conv2's ReLUs
 *                     are all dead after the warm-up (docs/gpu.md item 36), so this one is
 *                     judged on MNIST
 *   ours-cuda-frompool2  conv2's filter gradient from pool2's winners by version 2, a warp
 *                     per output channel that skips each dead winner (CNN_FROM_POOL_V=2)
 *   ours-cuda-sparse  dense1's data gradient only where pool2's output is > 0
 *                     (CNN_CUDA_DENSE_DX_ALIVE=1; on item 38, now among the defaults)
 *   ours-cuda-nz      that and dense1's forward and filter gradient over pool2's nonzeros
 *                     (CNN_CUDA_DENSE_SPARSE=1)
 *   ours-cuda-gemm6   GEMM version 6: version 5's mma sums added into the accumulators once
 *                     per 16-deep slice, not per 8-deep k-step, where the tile allows
 *                     (CNN_GEMM_V=6, item 43)
 *   ours-cudnn        cuDNN/cuBLAS for the convolutions and dense layers
 * Compare with bench/peers/pytorch_mnist.py (same
 * model, Adam, FP32) run on the same GPU in the same session (tests/gpu/run.sh does both).
 *
 * Data: 60,000 random 28x28 uint8 images with random labels, resident on the device, shuffled.
 * Timing: host clock around model_train_steps(steps), which ends by downloading the loss (so
 * the clock covers all the device work); 20 warm-up steps first (graph capture, cuDNN
 * algorithm search); the median of 5 runs. Every engine as CUDA graphs; eager steps too for
 * the defaults, ours-cuda-run1 and ours-cudnn. With --data DIR (MNIST's train-*-ubyte.gz
 * files), the engines whose kernels skip the winners a ReLU stopped (the defaults, run5,
 * convpool1, l2, frompool2, dfp0, sparse, nz) again on MNIST after one epoch of warm-up: rows
 * ENGINE-mnist. And
 * ours-cuda-long: the defaults over 12,000 steps of batch 100 in one timing (the job's length).
 * ours-cuda-mnist and ours-cuda-long each hold one factor of the original job's, whose step GPU
 * run 4 timed ~40 us over this bench's; ours-cuda-mnist-long (with --data) holds both.
 * Usage: bench_step_cuda [--data MNIST_DIR] [batch ...]   (default 100 1000).
 *        bench_step_cuda [--data MNIST_DIR] --profile ENGINE [batch]: one eager step of that
 *        engine (default batch 100) inside cudaProfilerStart/Stop, for
 *        `ncu --profile-from-start off` (tests/gpu/run.sh --full: the per-kernel table).
 * Exit 77 without a GPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_profiler_api.h>

#include "bench/bench_data.h"
#include "core/model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One engine: its label and the switches (the environment) that make it. */
typedef struct {
    const char *label;
    Device device;
    const char *fused; /* CNN_CUDA_FUSED, read when the backend is created */
    const char *gemm;  /* CNN_GEMM_V, read at each GEMM launch (captured into the graph) */
    const char *pool;  /* CNN_POOL_V, likewise for max-pool */
    const char *adam;  /* CNN_ADAM_V, likewise for Adam */
    const char *xent;  /* CNN_XENT_V, likewise for softmax + cross-entropy */
    const char *dense; /* CNN_DENSE_V, likewise for the narrow dense layer */
    const char *pdl;   /* CNN_CUDA_PDL, read at each launch */
    const char *streams; /* CNN_CUDA_STREAMS, read when the backend is created */
    const char *graph_steps; /* CNN_CUDA_GRAPH_STEPS, likewise */
    const char *conv_pool_fwd; /* CNN_CUDA_CONV_POOL_FWD, likewise (NULL: unset) */
    const char *from_pool; /* CNN_FROM_POOL_V, read at each launch (NULL: unset) */
    const char *data_from_pool; /* CNN_CUDA_DATA_FROM_POOL, read when the backend is created */
    const char *dx_alive; /* CNN_CUDA_DENSE_DX_ALIVE, likewise */
    int mnist;         /* also timed on MNIST's images (--data): a row ENGINE-mnist */
    const char *dense_sparse; /* CNN_CUDA_DENSE_SPARSE, read when the backend is created */
} Engine;

/* name = value, or unset where value is NULL (the switches an engine leaves at their default) */
static void set_or_unset(const char *name, const char *value) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
}

/* Warm-up steps before the MNIST rows and the profile: one epoch at batch 100, by which the
 * ReLUs' sparsity is near a trained model's (CPU, seed 1: conv2's pool winners alive 4.7% after
 * 20 steps, 5.3% after 600; docs/gpu.md item 36). */
#define MNIST_WARMUP 600

/* Sets the engine's switches (the environment the backend and kernels read) and makes its
 * model on `data`, `warmup` steps done (graph capture, cuDNN's algorithm search; on MNIST, the
 * ReLUs' sparsity of a trained model). NULL on error (message printed). */
static Model *engine_model(const Engine *e, int graphs, int batch, const BenchData *data,
                           int warmup) {
    const Device d = e->device;
    setenv("CNN_CUDA_GRAPHS", graphs ? "1" : "0", 1);
    setenv("CNN_CUDA_FUSED", e->fused, 1);
    setenv("CNN_GEMM_V", e->gemm, 1);
    setenv("CNN_POOL_V", e->pool, 1);
    setenv("CNN_ADAM_V", e->adam, 1);
    setenv("CNN_XENT_V", e->xent, 1);
    setenv("CNN_DENSE_V", e->dense, 1);
    setenv("CNN_CUDA_PDL", e->pdl, 1);
    setenv("CNN_CUDA_STREAMS", e->streams, 1);
    setenv("CNN_CUDA_GRAPH_STEPS", e->graph_steps, 1);
    set_or_unset("CNN_CUDA_CONV_POOL_FWD", e->conv_pool_fwd);
    set_or_unset("CNN_FROM_POOL_V", e->from_pool);
    set_or_unset("CNN_CUDA_DENSE_DX_ALIVE", e->dx_alive);
    set_or_unset("CNN_CUDA_DATA_FROM_POOL", e->data_from_pool);
    set_or_unset("CNN_CUDA_DENSE_SPARSE", e->dense_sparse);
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.device = d;
    cfg.batch = batch;
    cfg.seed = 1;
    char err[512];
    Model *m = model_create(&cfg, err, sizeof err);
    if (!m) {
        printf("bench_step_cuda: %s: %s\n", device_name(d), err);
        return NULL;
    }
    float loss = 0;
    if (model_set_train_data(m, data->pixels, data->labels, data->n, 1, 5, err, sizeof err) ||
        model_train_steps(m, warmup, &loss, err, sizeof err)) {
        printf("bench_step_cuda: %s: %s\n", device_name(d), err);
        model_free(m);
        return NULL;
    }
    return m;
}

/* ms per step: the median of `runs` timings of `steps` steps each (one model_train_steps call
 * per timing), or a negative value on error (message printed). */
static double bench(const Engine *e, int graphs, int batch, int steps, int runs,
                    const BenchData *data, int warmup) {
    Model *m = engine_model(e, graphs, batch, data, warmup);
    if (!m) return -1;
    char err[512];
    float loss = 0;
    double t[5];
    if (runs > 5) runs = 5;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        if (model_train_steps(m, steps, &loss, err, sizeof err)) {
            printf("bench_step_cuda: %s: %s\n", device_name(e->device), err);
            model_free(m);
            return -1;
        }
        t[r] = 1000.0 * (now_s() - t0) / steps;
    }
    model_free(m);
    qsort(t, (size_t)runs, sizeof t[0], cmp_double);
    return t[runs / 2];
}

/* label, device, fused, gemm, pool, adam, xent, dense, pdl, streams, graph_steps,
 * conv_pool_fwd, from_pool, data_from_pool, dx_alive, mnist, dense_sparse */
static const Engine ENGINES[] = {
    {"ours-cuda", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "1", "1", "10",
     NULL, NULL, NULL, NULL, 1, NULL},
    /* GPU run 5's defaults: items 31, 35 and 38 back to their old settings */
    {"ours-cuda-run5", DEVICE_CUDA, "3", "5", "4", "2", "2", "3", "1", "1", "10",
     "1", NULL, "0", NULL, 1, NULL},
    {"ours-cuda-gemm4", DEVICE_CUDA, "3", "4", "4", "2", "2", "3", "1", "1", "10",
     "1", NULL, "0", NULL, 0, NULL},
    {"ours-cuda-dense2", DEVICE_CUDA, "3", "4", "4", "2", "2", "2", "1", "1", "10",
     "1", NULL, "0", NULL, 0, NULL},
    {"ours-cuda-graph1", DEVICE_CUDA, "3", "4", "4", "2", "2", "2", "1", "1", "1",
     "1", NULL, "0", NULL, 0, NULL},
    {"ours-cuda-streams0", DEVICE_CUDA, "3", "4", "4", "2", "2", "2", "1", "0", "1",
     "1", NULL, "0", NULL, 0, NULL},
    {"ours-cuda-pdl0", DEVICE_CUDA, "3", "4", "4", "2", "2", "2", "0", "0", "1",
     "1", NULL, "0", NULL, 0, NULL},
    {"ours-cuda-dense1", DEVICE_CUDA, "3", "4", "4", "2", "2", "1", "0", "0", "1",
     "1", NULL, "0", NULL, 0, NULL},
    {"ours-cuda-fused2", DEVICE_CUDA, "2", "4", "4", "2", "2", "1", "0", "0", "1",
     NULL, NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-fused1", DEVICE_CUDA, "1", "4", "4", "2", "2", "1", "0", "0", "1",
     NULL, NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-gemm3", DEVICE_CUDA, "1", "3", "4", "2", "2", "1", "0", "0", "1",
     NULL, NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-run3", DEVICE_CUDA, "1", "3", "2", "1", "1", "1", "0", "0", "1",
     NULL, NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-run1", DEVICE_CUDA, "0", "1", "1", "1", "1", "1", "0", "0", "1",
     NULL, NULL, NULL, NULL, 0, NULL},
    /* off the chain: run 5's flips one at a time, the defaults with the old setting */
    {"ours-cuda-xent2", DEVICE_CUDA, "3", "5", "4", "2", "2", "3", "1", "1", "10",
     NULL, NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-convpool1", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "1", "1", "10",
     "1", NULL, NULL, NULL, 1, NULL},
    {"ours-cuda-dfp0", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "1", "1", "10",
     NULL, NULL, "0", NULL, 1, NULL},
    /* off the chain: the defaults with one switch runs 4 and 5 timed slower; levels 4 and 5
     * with the fused conv + pool forward (their default: their op is conv2's). report.py
     * judges every candidate against the defaults, the engine a flip would replace */
    {"ours-cuda-fused4", DEVICE_CUDA, "4", "5", "4", "2", "3", "3", "1", "1", "10",
     "1", NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-fused5", DEVICE_CUDA, "5", "5", "4", "2", "3", "3", "1", "1", "10",
     "1", NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-streams2", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "1", "2", "10",
     NULL, NULL, NULL, NULL, 0, NULL},
    {"ours-cuda-nopdl", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "0", "1", "10",
     NULL, NULL, NULL, NULL, 0, NULL},
    /* off the chain: conv2's filter gradient from its GEMM (fusion level 2, where neither the
     * split forwards nor the data gradient from the winners act), judged against the defaults
     * on MNIST (its -mnist row): on the random images conv2's ReLUs are dead and the winners'
     * kernel has nothing to do (item 36) */
    {"ours-cuda-l2", DEVICE_CUDA, "2", "5", "4", "2", "2", "3", "1", "1", "10",
     NULL, NULL, NULL, NULL, 1, NULL},
    /* off the chain: conv2's filter gradient from the winners by version 2, a warp per output
     * channel that skips each dead winner (CNN_FROM_POOL_V=2, item 37; judged on MNIST too) */
    {"ours-cuda-frompool2", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "1", "1", "10",
     NULL, "2", NULL, NULL, 1, NULL},
    /* off the chain: dense1's data gradient only where pool2's output is > 0
     * (CNN_CUDA_DENSE_DX_ALIVE=1, item 39; on item 38, conv2's data gradient from pool2's
     * winners, among the defaults since run 5; report.py compares it with ours-cuda) */
    {"ours-cuda-sparse", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "1", "1", "10",
     NULL, NULL, NULL, "1", 1, NULL},
    /* off the chain: that and dense1's forward and filter gradient over pool2's nonzeros
     * (CNN_CUDA_DENSE_SPARSE=1, item 40; report.py compares it with ours-cuda-sparse) */
    {"ours-cuda-nz", DEVICE_CUDA, "3", "5", "4", "2", "3", "3", "1", "1", "10",
     NULL, NULL, NULL, "1", 1, "1"},
    /* off the chain: GEMM version 6 (item 43), the defaults otherwise */
    {"ours-cuda-gemm6", DEVICE_CUDA, "3", "6", "4", "2", "3", "3", "1", "1", "10",
     NULL, NULL, NULL, NULL, 0, NULL},
    {"ours-cudnn", DEVICE_CUDNN, "1", "4", "4", "2", "2", "2", "1", "0", "10",
     NULL, NULL, NULL, NULL, 0, NULL}};
#define N_ENGINES ((int)(sizeof ENGINES / sizeof ENGINES[0]))

/* One eager training step of engine e between cudaProfilerStart and Stop, for
 * `ncu --profile-from-start off`: each kernel's time inside the real step (its inputs, its
 * place in the step's order, the cache as the kernels before it left it). ncu runs kernels one
 * at a time, so the two streams' overlap is not in these times; the graph timings have it. */
static int profile(const Engine *e, int batch, const BenchData *data) {
    Model *m = engine_model(e, 0, batch, data, MNIST_WARMUP);
    if (!m) return 1;
    char err[512];
    float loss = 0;
    printf("PROFILE %s eager batch=%d\n", e->label, batch);
    fflush(stdout);
    cudaProfilerStart();
    int rc = model_train_steps(m, 1, &loss, err, sizeof err);
    cudaProfilerStop();
    if (rc) printf("bench_step_cuda: %s: %s\n", device_name(e->device), err);
    model_free(m);
    return rc ? 1 : 0;
}

static void print_result(const char *label, int graphs, int batch, double ms) {
    printf("| %s | %s | %d | %.3f | %.0f |\n", label, graphs ? "cuda-graph" : "eager", batch, ms,
           batch / ms * 1000.0);
    printf("RESULT %s %s batch=%d ms_per_step=%.4f\n", label, graphs ? "cuda-graph" : "eager",
           batch, ms);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *data_dir = NULL, *profile_label = NULL;
    int batches[8] = {100, 1000}, nb = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            data_dir = argv[++i];
        } else if (strcmp(argv[i], "--profile") == 0 && i + 1 < argc) {
            profile_label = argv[++i];
        } else if (atoi(argv[i]) > 0 && nb < 8) {
            batches[nb++] = atoi(argv[i]);
        } else {
            printf("usage: bench_step_cuda [--data MNIST_DIR] [--profile ENGINE] [batch ...]\n");
            return 2;
        }
    }
    if (nb == 0) nb = profile_label ? 1 : 2;
    const Engine *profiled = NULL;
    for (int i = 0; profile_label && i < N_ENGINES; i++)
        if (strcmp(ENGINES[i].label, profile_label) == 0) profiled = &ENGINES[i];
    if (profile_label && !profiled) {
        printf("bench_step_cuda: --profile: no engine '%s'\n", profile_label);
        return 2;
    }
    /* The data first: a bad --data fails here too, without a GPU. */
    BenchData random = {0}, mnist = {0};
    if (bench_random_data(&random) != 0 ||
        (data_dir && bench_mnist_data(data_dir, &mnist) != 0))
        return 1;
    if (data_dir) printf("bench_step_cuda: %d MNIST images from %s\n", mnist.n, data_dir);
    if (!device_cuda_available()) {
        printf("bench_step_cuda: no GPU, skipped\n");
        return 77;
    }
    if (profiled) {
        int rc = profile(profiled, batches[0], data_dir ? &mnist : &random);
        bench_data_free(&random);
        bench_data_free(&mnist);
        return rc;
    }
    /* The first graph capture prints the launches per step (backend_cuda.c). */
    setenv("CNN_CUDA_VERBOSE", "1", 1);
    printf("| engine | mode | batch | ms/step | images/s |\n|---|---|---|---|---|\n");
    int failed = 0;
    for (int i = 0; i < nb; i++) {
        int b = batches[i], steps = b <= 100 ? 200 : 50;
        for (int e = 0; e < N_ENGINES; e++)
            for (int g = 0; g < 2; g++) {
                /* Eager steps only for the defaults, the first GPU run's step and the cuDNN
                 * backend (the chain's decisions are graph timings; tests/gpu/run.sh has 5
                 * minutes for everything). */
                if (!g && e != 0 && strcmp(ENGINES[e].label, "ours-cuda-run1") != 0 &&
                    ENGINES[e].device != DEVICE_CUDNN)
                    continue;
                double ms = bench(&ENGINES[e], g, b, steps, 5, &random, 20);
                if (ms < 0) failed = 1;
                else print_result(ENGINES[e].label, g, b, ms);
            }
        /* On MNIST (--data), after MNIST_WARMUP steps: the engines whose kernels skip work
         * where the ReLU passed nothing (the filter gradients from the pools' winners), each
         * row ENGINE-mnist. On the random images conv2's ReLUs are all dead after the 20
         * warm-up steps (docs/gpu.md item 36), so the rows above time those kernels with
         * nothing to do. ours-cuda-mnist is also the job's data beside its step time. */
        for (int k = 0; data_dir && k < N_ENGINES; k++) {
            if (!ENGINES[k].mnist) continue;
            double ms = bench(&ENGINES[k], 1, b, steps, 5, &mnist, MNIST_WARMUP);
            char label[64];
            snprintf(label, sizeof label, "%s-mnist", ENGINES[k].label);
            if (ms < 0) failed = 1;
            else print_result(label, 1, b, ms);
        }
        /* The job's 12,000 steps in one timing, not the median of five 200-step ones (the
         * other factor of the job's extra ~40 us per step in GPU run 4); and both factors
         * together (MNIST, 12,000 steps): the job's training less its host side (the loss
         * read and the log lines every 100 steps, events, checkpoints). */
        if (b == 100) {
            double ms = bench(&ENGINES[0], 1, b, 12000, 1, &random, 20);
            if (ms < 0) failed = 1;
            else print_result("ours-cuda-long", 1, b, ms);
            ms = data_dir ? bench(&ENGINES[0], 1, b, 12000, 1, &mnist, 20) : 0;
            if (ms < 0) failed = 1;
            else if (data_dir) print_result("ours-cuda-mnist-long", 1, b, ms);
        }
    }
    bench_data_free(&random);
    bench_data_free(&mnist);
    return failed;
}
