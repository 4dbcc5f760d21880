/* parity.c (tool_parity): our side of the Keras parity test (tests/tf/test_keras_parity.py).
 *
 *   tool_parity DIR N STEPS SEED [SPEC]
 *
 * Reads from DIR (raw little-endian arrays):
 *   images.f32 [N,28,28,1] raw pixels, labels.i32 [N],
 *   param_<name>.f32 for every trainable parameter, <name> with '/' as "__"
 *     (param_conv2d__kernel.f32, HWIO; dense [in,out]).
 * Builds the model (SPEC, default the original CNN) at batch N with dropout seed SEED, loads the
 * parameters, and writes to DIR:
 *   logits.f32 [N,10], loss.f32 [1], grad_<name>.f32: forward/backward at step 0 (dropout mask
 *     of step 0, no update);
 *   losses.f32 [STEPS] and final_<name>.f32: after STEPS Adam steps on the same batch (step s
 *     uses the dropout mask of step s).
 * Exit 0 ok, 1 with a message on error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"

static void die(const char *what, const char *detail) {
    fprintf(stderr, "tool_parity: %s: %s\n", what, detail);
    exit(1);
}

static void path_for(char *out, size_t cap, const char *dir, const char *prefix, const char *name) {
    char clean[128];
    size_t j = 0;
    for (size_t i = 0; name[i] && j + 2 < sizeof clean; i++) {
        if (name[i] == '/') {
            clean[j++] = '_';
            clean[j++] = '_';
        } else {
            clean[j++] = name[i];
        }
    }
    clean[j] = 0;
    snprintf(out, cap, "%s/%s%s.f32", dir, prefix, clean);
}

static void read_exact(const char *path, void *buf, size_t bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path, "cannot open");
    if (fread(buf, 1, bytes, f) != bytes || fgetc(f) != EOF) die(path, "wrong size");
    fclose(f);
}

static void write_all(const char *path, const void *buf, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, bytes, f) != bytes || fclose(f) != 0) die(path, "cannot write");
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) die("usage", "tool_parity DIR N STEPS SEED [SPEC]");
    const char *dir = argv[1];
    int n = atoi(argv[2]), steps = atoi(argv[3]);
    if (n < 1 || steps < 0) die("usage", "N >= 1, STEPS >= 0");
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.batch = n;
    cfg.seed = strtoull(argv[4], NULL, 10);
    cfg.spec = argc > 5 ? argv[5] : NULL;
    char err[512] = "", path[512];
    Model *m = model_create(&cfg, err, sizeof err);
    if (!m) die("model_create", err);

    float *images = malloc((size_t)n * 784 * sizeof(float));
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    snprintf(path, sizeof path, "%s/images.f32", dir);
    read_exact(path, images, (size_t)n * 784 * sizeof(float));
    snprintf(path, sizeof path, "%s/labels.i32", dir);
    read_exact(path, labels, (size_t)n * sizeof(int32_t));

    int np = model_param_count(m);
    for (int p = 0; p < np; p++) {
        const StateInfo *si = model_state_info(m, p);
        float *v = malloc(si->count * sizeof(float));
        path_for(path, sizeof path, dir, "param_", si->name);
        read_exact(path, v, si->count * sizeof(float));
        if (model_state_set(m, p, v) != 0) die(si->name, "state set failed");
        free(v);
    }

    float loss, *logits = malloc((size_t)n * 10 * sizeof(float));
    if (model_compute_gradients(m, images, labels, n, &loss, logits, err, sizeof err) != 0)
        die("forward/backward", err);
    snprintf(path, sizeof path, "%s/logits.f32", dir);
    write_all(path, logits, (size_t)n * 10 * sizeof(float));
    snprintf(path, sizeof path, "%s/loss.f32", dir);
    write_all(path, &loss, sizeof loss);
    for (int p = 0; p < np; p++) {
        const StateInfo *si = model_state_info(m, p);
        float *g = malloc(si->count * sizeof(float));
        if (model_gradient_get(m, p, g) != 0) die(si->name, "gradient get failed");
        path_for(path, sizeof path, dir, "grad_", si->name);
        write_all(path, g, si->count * sizeof(float));
        free(g);
    }

    float *losses = malloc(((size_t)steps + 1) * sizeof(float));
    for (int s = 0; s < steps; s++)
        if (model_train_step(m, images, labels, n, &losses[s], err, sizeof err) != 0)
            die("train step", err);
    snprintf(path, sizeof path, "%s/losses.f32", dir);
    write_all(path, losses, (size_t)steps * sizeof(float));
    for (int p = 0; p < np; p++) {
        const StateInfo *si = model_state_info(m, p);
        float *v = malloc(si->count * sizeof(float));
        if (model_state_get(m, p, v) != 0) die(si->name, "state get failed");
        path_for(path, sizeof path, dir, "final_", si->name);
        write_all(path, v, si->count * sizeof(float));
        free(v);
    }
    free(losses);
    free(logits);
    free(images);
    free(labels);
    model_free(m);
    return 0;
}
