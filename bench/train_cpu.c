/* bench_train_cpu: training throughput of the original CNN on the CPU, through the model API:
 * the shipped MNIST (TFRecords) resident, shuffled, batch 100, Adam, dropout on.
 * Peer: bench/peers/keras_mnist_cpu.py (the same Keras model in tensorflow-cpu), run beside it by
 * bench/train_cpu_vs_keras.sh on the same machine.
 * Timing: wall clock and process CPU time around model_train_steps(steps), after the warm-up
 * steps; the best of 3 runs (a shared machine only ever makes a run slower). The warm-up is 100
 * steps by default because the step's work depends on how many of pool2's winners the ReLU
 * passes (the backward from the pools' winners, docs/kernels-cpu.md): ~70% at the first step
 * on MNIST, 25% after 5 steps, ~5% from step 20 on (bench_relu_sparsity), as in all but the
 * first ~20 of the original job's 12,000 steps.
 * Usage: bench_train_cpu TRAIN_TFRECORDS [steps=50] [threads=0 (all cores)] [warmup=100] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/model.h"
#include "io/mnist_records.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_train_cpu TRAIN_TFRECORDS [steps] [threads] [warmup]\n");
        return 2;
    }
    int steps = argc > 2 ? atoi(argv[2]) : 50;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    int warmup = argc > 4 ? atoi(argv[4]) : 100;
    char err[512];
    MnistSet set;
    const char *inputs[1] = {argv[1]};
    if (mnist_load_tfrecords(inputs, 1, -1, &set, err, sizeof err)) {
        fprintf(stderr, "bench_train_cpu: %s\n", err);
        return 1;
    }
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.device = DEVICE_CPU;
    cfg.threads = threads;
    Model *m = model_create(&cfg, err, sizeof err);
    float loss = 0;
    if (!m || model_set_train_data(m, set.images, set.labels, (int)set.n, 1, 1, err, sizeof err) ||
        (warmup > 0 && model_train_steps(m, warmup, &loss, err, sizeof err))) {
        fprintf(stderr, "bench_train_cpu: %s\n", err);
        return 1;
    }
    double best_wall = 1e30, best_cpu = 1e30;
    for (int r = 0; r < 3; r++) {
        double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (model_train_steps(m, steps, &loss, err, sizeof err)) {
            fprintf(stderr, "bench_train_cpu: %s\n", err);
            return 1;
        }
        double wall = clock_s(CLOCK_MONOTONIC) - w0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (wall < best_wall) best_wall = wall;
        if (cpu < best_cpu) best_cpu = cpu;
    }
    double ms = 1e3 * best_wall / steps;
    printf("RESULT engine=ours-cpu batch=%d steps=%d ms_per_step=%.2f images_per_s=%.0f "
           "cpu_s_per_step=%.3f last_loss=%.4f warmup=%d\n",
           cfg.batch, steps, ms, cfg.batch * 1e3 / ms, best_cpu / steps, loss, warmup);
    model_free(m);
    mnist_set_free(&set);
    return 0;
}
