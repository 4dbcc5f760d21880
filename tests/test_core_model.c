/* test_core_model.c: the model of core/model.h on the CPU: state names and Keras init, the whole
 * model's gradients against finite differences, optimizer wiring, determinism, the resident data
 * order, prediction/evaluation, and errors for bad specs and inputs. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/model_backend.h"
#include "kernels/philox.h"
#include "support/check_run.h"
#include "support/conv_pool_cpu.h"
#include "support/dropout_dense_cpu.h"
#include "support/gradcheck.h"

#define IMG 784

/* All layer kinds, both paddings, a stride, small enough for finite differences. */
static const char *SMALL_SPEC =
    "conv:3:5:same,relu,maxpool:2,conv:4:3:valid:2,relu,maxpool:2:1:same,flatten,dense:12,relu,"
    "dropout:0.3,dense:10";

/* The original model's configuration (the MNIST CNN, Adam) at this batch and seed, 1 thread. */
static ModelConfig mnist_config(int batch, uint64_t seed) {
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.batch = batch;
    cfg.seed = seed;
    cfg.threads = 1;
    return cfg;
}

static Model *make(const char *spec, int batch, uint64_t seed, OptimizerKind opt) {
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.spec = spec;
    cfg.batch = batch;
    cfg.seed = seed;
    cfg.optimizer = opt;
    cfg.threads = 1;
    char err[256] = "";
    Model *m = model_create(&cfg, err, sizeof err);
    ck_assert_msg(m != NULL, "model_create: %s", err);
    return m;
}

/* Digit-like data: class k lights a 6x6 block at a class-dependent place, plus noise; raw
 * 0..255 pixels as the model takes them. */
static void synth_data(int n, uint64_t seed, uint8_t *pix, float *fpix, int32_t *labels) {
    for (int i = 0; i < n; i++) {
        int k = (int)(philox_u32(seed, 77, (uint64_t)i) % 10);
        labels[i] = k;
        int r0 = 3 + (k / 5) * 12, c0 = 2 + (k % 5) * 5;
        for (int p = 0; p < IMG; p++) {
            int r = p / 28, c = p % 28;
            int on = r >= r0 && r < r0 + 6 && c >= c0 && c < c0 + 4;
            float noise = philox_uniform(seed, 78, (uint64_t)i * IMG + (uint64_t)p);
            int v = on ? 160 + (int)(95 * noise) : (noise < 0.1f ? (int)(600 * noise) : 0);
            if (pix) pix[(size_t)i * IMG + p] = (uint8_t)v;
            if (fpix) fpix[(size_t)i * IMG + p] = (float)v;
        }
    }
}

START_TEST(test_default_state_and_init) {
    Model *m = make(NULL, 4, 42, OPT_ADAM);
    static const char *names[] = {"conv2d/kernel", "conv2d/bias", "conv2d_1/kernel",
                                  "conv2d_1/bias", "dense/kernel", "dense/bias",
                                  "dense_1/kernel", "dense_1/bias"};
    static const int64_t shapes[8][4] = {{5, 5, 1, 32}, {32}, {5, 5, 32, 64}, {64},
                                         {3136, 1024}, {1024}, {1024, 10}, {10}};
    ck_assert_int_eq(model_param_count(m), 8);
    ck_assert_int_eq(model_state_count(m), 24);
    for (int i = 0; i < 8; i++) {
        const StateInfo *si = model_state_info(m, i);
        ck_assert_str_eq(si->name, names[i]);
        ck_assert_int_eq(si->kind, STATE_PARAM);
        ck_assert_int_eq(si->rank, (i % 2) ? 1 : (i < 4 ? 4 : 2));
        size_t count = 1;
        for (int d = 0; d < si->rank; d++) {
            ck_assert_int_eq(si->shape[d], shapes[i][d]);
            count *= (size_t)si->shape[d];
        }
        ck_assert_uint_eq(si->count, count);
        /* Two slots per parameter, TF1 Adam names. */
        char want[80];
        snprintf(want, sizeof want, "%s/Adam", names[i]);
        ck_assert_str_eq(model_state_info(m, 8 + 2 * i)->name, want);
        snprintf(want, sizeof want, "%s/Adam_1", names[i]);
        ck_assert_str_eq(model_state_info(m, 9 + 2 * i)->name, want);
        ck_assert_int_eq(model_state_info(m, 9 + 2 * i)->kind, STATE_OPT_SLOT);
        ck_assert_uint_eq(model_state_info(m, 9 + 2 * i)->count, count);

        float *v = malloc(count * sizeof(float));
        ck_assert_int_eq(model_state_get(m, i, v), 0);
        double fan_in = 1, fan_out = 1;
        if (si->rank == 4) {
            fan_in = (double)shapes[i][0] * shapes[i][1] * shapes[i][2];
            fan_out = (double)shapes[i][0] * shapes[i][1] * shapes[i][3];
        } else if (si->rank == 2) {
            fan_in = (double)shapes[i][0];
            fan_out = (double)shapes[i][1];
        }
        double limit = sqrt(6.0 / (fan_in + fan_out)), mx = 0, sum = 0, sum2 = 0;
        for (size_t j = 0; j < count; j++) {
            mx = fmax(mx, fabs(v[j]));
            sum += v[j];
            sum2 += (double)v[j] * v[j];
        }
        if (si->rank == 1) {
            ck_assert(mx == 0.0); /* zero biases */
        } else {
            /* Glorot uniform: within the limit, near it at the extremes, variance limit^2/3. */
            ck_assert_double_le(mx, limit);
            ck_assert_double_ge(mx, 0.9 * limit);
            double var = sum2 / count;
            ck_assert_double_eq_tol(var, limit * limit / 3.0, 0.2 * limit * limit / 3.0);
            /* The documented stream: element j of parameter i from philox(seed, INIT + i, j),
             * every element (one assertion per tensor). */
            size_t off = 0;
            for (size_t j = 0; j < count; j++) {
                float want =
                    (2.0f * philox_uniform(42, PHILOX_STREAM_INIT + (uint64_t)i, j) - 1.0f) *
                    (float)limit;
                off += memcmp(&v[j], &want, sizeof want) != 0;
            }
            ck_assert_uint_eq(off, 0);
        }
        /* Slots start at zero; a set/get round trip is exact. */
        float *s = malloc(count * sizeof(float));
        ck_assert_int_eq(model_state_get(m, 8 + 2 * i, s), 0);
        /* (one assertion per tensor: Check's per-assertion bookkeeping is slow over millions) */
        size_t nonzero = 0;
        for (size_t j = 0; j < count; j++) nonzero += s[j] != 0.0f;
        ck_assert_uint_eq(nonzero, 0);
        for (size_t j = 0; j < count; j++) v[j] = (float)j * 0.5f;
        ck_assert_int_eq(model_state_set(m, 9 + 2 * i, v), 0);
        ck_assert_int_eq(model_state_get(m, 9 + 2 * i, s), 0);
        ck_assert_int_eq(memcmp(s, v, count * sizeof(float)), 0);
        free(s);
        free(v);
    }
    ck_assert_ptr_null(model_state_info(m, 24));
    ck_assert_int_eq(model_step(m), 0);
    model_set_step(m, 1234);
    ck_assert_int_eq(model_step(m), 1234);
    model_free(m);
}
END_TEST

/* ---- whole-model finite differences ---- */
typedef struct {
    Model *m;
    int param, n;
    float *images, *logits, *value;
    int32_t *labels;
} FdCtx;

/* The mean cross-entropy in double from the model's logits (dropout on with the mask of the
 * current step, which model_compute_gradients does not advance). */
static double model_loss(void *ctx) {
    FdCtx *c = ctx;
    char err[256];
    ck_assert_int_eq(model_state_set(c->m, c->param, c->value), 0);
    ck_assert_int_eq(model_compute_gradients(c->m, c->images, c->labels, c->n, NULL, c->logits,
                                             err, sizeof err), 0);
    double L = 0;
    for (int i = 0; i < c->n; i++) {
        const float *z = c->logits + i * 10;
        double mx = z[0], s = 0;
        for (int j = 1; j < 10; j++) mx = fmax(mx, z[j]);
        for (int j = 0; j < 10; j++) s += exp(z[j] - mx);
        L += log(s) + mx - z[c->labels[i]];
    }
    return L / c->n;
}

START_TEST(test_model_gradients_fd) {
    int n = 3;
    Model *m = make(SMALL_SPEC, 4, 5, OPT_ADAM);
    model_set_step(m, 2); /* some dropout mask */
    FdCtx c = {m, 0, n, malloc(n * IMG * sizeof(float)), malloc(n * 10 * sizeof(float)), NULL,
               malloc(n * sizeof(int32_t))};
    /* Dense random pixels in 0..1: well conditioned, and no exact ties in max-pool windows or
     * pre-activations sitting exactly on a ReLU kink (as a constant background would give). */
    test_fill_uniform(c.images, (size_t)n * IMG, 0.0f, 1.0f, 3, 1);
    for (int i = 0; i < n; i++) c.labels[i] = (i * 7 + 3) % 10;
    for (int p = 0; p < model_param_count(m); p++) {
        const StateInfo *si = model_state_info(m, p);
        c.param = p;
        c.value = malloc(si->count * sizeof(float));
        float *g = malloc(si->count * sizeof(float));
        ck_assert_int_eq(model_state_get(m, p, c.value), 0);
        if (si->rank == 1) /* non-zero biases, so every path is exercised */
            for (size_t j = 0; j < si->count; j++) c.value[j] = 0.05f * (float)(j % 5) - 0.12f;
        model_loss(&c);
        ck_assert_int_eq(model_gradient_get(m, p, g), 0);
        double gmax = 0;
        for (size_t j = 0; j < si->count; j++) gmax = fmax(gmax, fabs(g[j]));
        ck_assert_double_gt(gmax, 0.0);
        /* h = 1e-4: a step moves thousands of pre-activations, and the few that cross a ReLU
         * kink or swap a max-pool winner bias the difference by O(h); at 1e-3 that reached
         * 14% on conv2d/bias, at 1e-4 the worst is about 1% (the double loss keeps rounding
         * noise below that). */
        GradcheckResult r = gradcheck(model_loss, &c, c.value, si->count, g, 1e-4f,
                                      0.05 * gmax + 1e-6, test_quick() ? 10 : 40);
        ck_assert_msg(r.max_err < 3e-2, "%s[%zu]: tape %.7g, finite difference %.7g (rel %.2g)",
                      si->name, r.worst, r.worst_ana, r.worst_num, r.max_err);
        free(g);
        free(c.value);
    }
    ck_assert_int_eq(model_step(m), 2); /* computing gradients does not step */
    free(c.images);
    free(c.logits);
    free(c.labels);
    model_free(m);
}
END_TEST

/* maxpool2d_relu_backward_from_y of the CPU twins, counted: the fused middle layer ran. */
static int from_y_calls;
static void (*from_y_entry)(Backend *, const Pool2dShape *, const float *, const int32_t *,
                            const float *, float *);
static void counted_from_y(Backend *be, const Pool2dShape *s, const float *dy,
                           const int32_t *argmax, const float *y, float *dx) {
    from_y_calls++;
    from_y_entry(be, s, dy, argmax, y, dx);
}

/* dropout_dense_backward of the CPU twin, counted: the fused dropout + logits layer ran. */
static int dropout_dense_calls;
static void (*dropout_dense_entry)(Backend *, int, int, int, float, const uint8_t *, int,
                                   const float *, const float *, const float *, float *, float *,
                                   float *);
static void counted_dropout_dense(Backend *be, int n, int in, int out, float rate,
                                  const uint8_t *mask, int relu_x, const float *x, const float *w,
                                  const float *dy, float *dx, float *dw, float *db) {
    dropout_dense_calls++;
    dropout_dense_entry(be, n, in, out, rate, mask, relu_x, x, w, dy, dx, dw, db);
}

/* The default model (the original job's) with its first layer fused and conv2's filter gradient
 * from pool2 (_i = 0, as the CUDA backend's CNN_CUDA_FUSED=3), or with conv2 + ReLU + pool2 one
 * op as well (_i = 1, CNN_CUDA_FUSED=4), or with the dropout and the logits layer one op too
 * (_i = 2, CNN_CUDA_FUSED=5), or the product's CPU backend with its gradients from the pools'
 * winners (_i = 3; _i = 4 with dense1 over pool2's nonzeros too), against the unfused model on the same CPU kernels: the
 * same state (names, shapes, initial values: checkpoints do not change), the same loss, logits
 * and gradients of every parameter on a batch below the model's, and five training steps to
 * 1e-4. The fused ops sum the conv in tap order and the filter gradients in another order
 * (1e-5). */
START_TEST(test_fused_first_layer_same_model) {
    ModelConfig cfg = mnist_config(8, 21);
    char err[256] = "";
    /* both without the CPU backend's own gradients from the pools' winners: the reference is
     * the plain layers, and the fused ops below take the CUDA backend's paths */
    Model *ref = model_create_on(&cfg, test_without_pool_entries(backend_cpu_create()), err,
                                 sizeof err);
    ck_assert_msg(ref != NULL, "%s", err);
    /* _i = 3: the product's CPU backend, whose conv2 takes both gradients from pool2's winners
     * and dense1 its dx where pool2's output is > 0; _i = 4: that, with dense1's forward and
     * filter gradient over pool2's nonzeros as the CUDA backend's CNN_CUDA_DENSE_SPARSE=1 plans
     * them (the CPU backend's own dense layer takes that path only where x is mostly zeros) */
    Backend *be = _i == 3   ? backend_cpu_create()
                  : _i == 4 ? test_add_dense_sparse_input_entries(backend_cpu_create())
                            : test_add_conv_pool_entries(
                                  test_without_pool_entries(backend_cpu_create()));
    if (_i == 1 || _i == 2) {
        from_y_entry = test_add_conv_pool_middle_entry(be)->maxpool2d_relu_backward_from_y;
        be->maxpool2d_relu_backward_from_y = counted_from_y;
    }
    if (_i == 2) {
        dropout_dense_entry = test_add_dropout_dense_entries(be)->dropout_dense_backward;
        be->dropout_dense_backward = counted_dropout_dense;
    }
    from_y_calls = dropout_dense_calls = 0;
    Model *fused = model_create_on(&cfg, be, err, sizeof err);
    ck_assert_msg(fused != NULL, "%s", err);
    ck_assert_int_eq(model_state_count(fused), model_state_count(ref));
    for (int i = 0; i < model_state_count(ref); i++) {
        const StateInfo *a = model_state_info(ref, i), *b = model_state_info(fused, i);
        ck_assert_str_eq(a->name, b->name);
        ck_assert_uint_eq(a->count, b->count);
        float *va = malloc(a->count * 4), *vb = malloc(a->count * 4);
        ck_assert_int_eq(model_state_get(ref, i, va), 0);
        ck_assert_int_eq(model_state_get(fused, i, vb), 0);
        ck_assert_int_eq(memcmp(va, vb, a->count * 4), 0);
        free(va);
        free(vb);
    }
    const int n = 6;
    float *img = malloc((size_t)cfg.batch * IMG * 4), *la = malloc(n * 40), *lb = malloc(n * 40);
    int32_t *lab = malloc((size_t)cfg.batch * 4);
    synth_data(cfg.batch, 9, NULL, img, lab);
    float loss_a, loss_b;
    ck_assert_int_eq(model_compute_gradients(ref, img, lab, n, &loss_a, la, err, sizeof err), 0);
    ck_assert_int_eq(model_compute_gradients(fused, img, lab, n, &loss_b, lb, err, sizeof err), 0);
    ck_assert_int_eq(from_y_calls, _i == 1 || _i == 2); /* conv2's op, once per backward */
    ck_assert_int_eq(dropout_dense_calls, _i == 2); /* the logits layer's */
    ck_assert(test_max_scaled_diff(&loss_b, &loss_a, 1, 1e-7, 1e-6, NULL) <= 1);
    double lmax = 0;
    for (int i = 0; i < n * 10; i++) lmax = fmax(lmax, fabs(la[i]));
    size_t worst = 0;
    double d = test_max_scaled_diff(lb, la, (size_t)n * 10, 1e-5 * lmax, 1e-5, &worst);
    ck_assert_msg(d <= 1, "logit %zu: %.9g unfused, %.9g fused (max |logit| %.3g)", worst,
                  la[worst], lb[worst], lmax);
    for (int p = 0; p < model_param_count(ref); p++) {
        const StateInfo *si = model_state_info(ref, p);
        float *ga = malloc(si->count * 4), *gb = malloc(si->count * 4);
        ck_assert_int_eq(model_gradient_get(ref, p, ga), 0);
        ck_assert_int_eq(model_gradient_get(fused, p, gb), 0);
        double gmax = 0;
        for (size_t j = 0; j < si->count; j++) gmax = fmax(gmax, fabs(ga[j]));
        ck_assert_msg(test_max_scaled_diff(gb, ga, si->count, 1e-5 * gmax, 1e-5, NULL) <= 1,
                      "gradient of %s differs", si->name);
        free(ga);
        free(gb);
    }
    for (int step = 0; step < 5; step++) {
        synth_data(cfg.batch, 100 + (uint64_t)step, NULL, img, lab);
        ck_assert_int_eq(model_train_step(ref, img, lab, cfg.batch, &loss_a, err, sizeof err), 0);
        ck_assert_int_eq(model_train_step(fused, img, lab, cfg.batch, &loss_b, err, sizeof err), 0);
        ck_assert_msg(fabsf(loss_a - loss_b) <= 1e-4f * fabsf(loss_a),
                      "step %d: loss %.8g unfused, %.8g fused", step, loss_a, loss_b);
    }
    free(img); free(la); free(lb); free(lab);
    model_free(ref);
    model_free(fused);
}
END_TEST

/* ---- one optimizer step against the formula, over the flat parameter buffer ---- */
START_TEST(test_optimizer_step) {
    static const OptimizerKind kinds[] = {OPT_SGD, OPT_MOMENTUM, OPT_ADAM};
    int n = 4;
    float *x = malloc(n * IMG * sizeof(float));
    int32_t labels[4];
    synth_data(n, 9, NULL, x, labels);
    for (int k = 0; k < 3; k++) {
        Model *m = make(SMALL_SPEC, n, 11, kinds[k]);
        int np = model_param_count(m);
        ck_assert_int_eq(model_state_count(m), np * (kinds[k] == OPT_ADAM ? 3 : kinds[k] == OPT_SGD ? 1 : 2));
        if (kinds[k] == OPT_MOMENTUM)
            ck_assert_str_eq(model_state_info(m, np)->name, "conv2d/kernel/Momentum");
        float *before[32], *grad[32];
        char err[256];
        for (int p = 0; p < np; p++) {
            size_t cnt = model_state_info(m, p)->count;
            before[p] = malloc(cnt * sizeof(float));
            grad[p] = malloc(cnt * sizeof(float));
            model_state_get(m, p, before[p]);
        }
        float loss;
        /* the step's gradients (the same mask: the step is not advanced), read before the step:
         * a dense kernel updated inside its backward leaves its buffer stale (model.h) */
        ck_assert_int_eq(model_compute_gradients(m, x, labels, n, NULL, NULL, err, sizeof err), 0);
        for (int p = 0; p < np; p++) ck_assert_int_eq(model_gradient_get(m, p, grad[p]), 0);
        ck_assert_int_eq(model_train_step(m, x, labels, n, &loss, err, sizeof err), 0);
        ck_assert(isfinite(loss));
        ck_assert_int_eq(model_step(m), 1);
        for (int p = 0; p < np; p++) {
            size_t cnt = model_state_info(m, p)->count;
            float *after = malloc(cnt * sizeof(float));
            model_state_get(m, p, after);
            for (size_t j = 0; j < cnt; j++) {
                double g = grad[p][j], want;
                if (kinds[k] == OPT_SGD || kinds[k] == OPT_MOMENTUM) {
                    want = before[p][j] - 0.001 * g; /* momentum: vel = -lr*g at step 1 */
                } else {
                    double mh = 0.1 * g, vh = 0.001 * g * g;
                    double lr_t = 0.001 * sqrt(1 - 0.999) / (1 - 0.9);
                    want = before[p][j] - lr_t * mh / (sqrt(vh) + 1e-7);
                }
                ck_assert_msg(fabs(after[j] - want) <= 1e-6 * fabs(want) + 1e-8,
                              "optimizer %d %s[%zu]: %.9g want %.9g", k,
                              model_state_info(m, p)->name, j, (double)after[j], want);
            }
            free(after);
            free(before[p]);
            free(grad[p]);
        }
        model_free(m);
    }
    free(x);
}
END_TEST

/* ---- per-layer optimizer updates (backend.h, optimizer_per_layer): the same bits ---- */
/* A backend that asks for each layer's update as soon as its gradients are final (the CUDA
 * backend's gradient stream) gets exactly the one-pass update: the same losses and every state
 * tensor (weights, Adam's m and v) bit for bit, for each optimizer, on SMALL_SPEC (every layer
 * kind; kernels and biases merge into one range per layer). A parameter left out of the
 * ranges, or updated before its last gradient writer, would differ. */
START_TEST(test_optimizer_per_layer_same_bits) {
    static const OptimizerKind kinds[] = {OPT_SGD, OPT_MOMENTUM, OPT_ADAM};
    const int n = 4;
    float *x = malloc(n * IMG * sizeof(float));
    int32_t labels[4];
    char err[256] = "";
    for (int k = 0; k < 3; k++) {
        ModelConfig cfg;
        model_config_default(&cfg);
        cfg.spec = SMALL_SPEC;
        cfg.batch = n;
        cfg.seed = 17;
        cfg.optimizer = kinds[k];
        cfg.threads = 1;
        Model *one = model_create(&cfg, err, sizeof err);
        ck_assert_msg(one != NULL, "%s", err);
        Backend *be = backend_cpu_create();
        ck_assert_ptr_nonnull(be);
        be->optimizer_per_layer = 1;
        Model *per = model_create_on(&cfg, be, err, sizeof err);
        ck_assert_msg(per != NULL, "%s", err);
        for (int step = 0; step < 3; step++) {
            synth_data(n, 40 + (uint64_t)step, NULL, x, labels);
            float la, lb;
            ck_assert_int_eq(model_train_step(one, x, labels, n, &la, err, sizeof err), 0);
            ck_assert_int_eq(model_train_step(per, x, labels, n, &lb, err, sizeof err), 0);
            ck_assert_msg(memcmp(&la, &lb, sizeof la) == 0, "optimizer %d step %d: loss %.9g vs %.9g",
                          k, step, (double)la, (double)lb);
        }
        ck_assert_int_eq(model_state_count(per), model_state_count(one));
        for (int i = 0; i < model_state_count(one); i++) {
            const StateInfo *si = model_state_info(one, i);
            float *va = malloc(si->count * 4), *vb = malloc(si->count * 4);
            ck_assert_int_eq(model_state_get(one, i, va), 0);
            ck_assert_int_eq(model_state_get(per, i, vb), 0);
            ck_assert_msg(memcmp(va, vb, si->count * 4) == 0, "optimizer %d: %s differs", k,
                          si->name);
            free(va);
            free(vb);
        }
        model_free(one);
        model_free(per);
    }
    free(x);
}
END_TEST

/* ---- the CPU backend's own fused paths: the same bits as without them ---- */
/* Against a CPU backend without the path, over 3 training steps of the MNIST model: the same
 * losses and every state tensor bit for bit. _i = 0: dense1's Adam inside its backward
 * (dense_backward_adam; the optimizer pass leaves the kernel out). conv2's biases are set so
 * that 58 of its 64 channels are off: pool2's output is then at most 6/64 nonzero, under the
 * kernel's 1/8, so the path runs over the nonzeros and leaves dense1's gradient buffer
 * unwritten; that it differs from the reference's shows which path ran. _i = 1: conv + ReLU +
 * pool as one op for both conv layers (conv2d_relu_maxpool_forward_fused: conv1's direct loops'
 * rows, conv2's whole images; conv1's filter gradient over the conv output's gradient made from
 * pool1's y a block at a time, conv2's gradients from pool2's winners as without the op); a
 * counted entry shows it ran. */
static void (*conv_pool_entry)(Backend *, const Conv2dShape *, const Pool2dShape *,
                               const float *, const float *, const float *, float *, int32_t *,
                               float *);
static int conv_pool_calls;
static void counted_conv_pool(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                              const float *x, const float *w, const float *b, float *y,
                              int32_t *argmax, float *ws) {
    conv_pool_calls++;
    conv_pool_entry(be, cs, ps, x, w, b, y, argmax, ws);
}

START_TEST(test_cpu_paths_same_bits) {
    ModelConfig cfg = mnist_config(4, 23);
    char err[256] = "";
    Backend *plain = backend_cpu_create(), *be = backend_cpu_create();
    ck_assert(plain && be);
    if (_i == 0) {
        ck_assert_ptr_nonnull(plain->dense_backward_adam);
        plain->dense_backward_adam = NULL;
    } else {
        ck_assert_ptr_nonnull(plain->conv2d_relu_maxpool_forward);
        plain->conv2d_relu_maxpool_forward = NULL;
        conv_pool_entry = be->conv2d_relu_maxpool_forward;
        be->conv2d_relu_maxpool_forward = counted_conv_pool;
        conv_pool_calls = 0;
    }
    Model *ref = model_create_on(&cfg, plain, err, sizeof err);
    ck_assert_msg(ref != NULL, "%s", err);
    Model *fused = model_create_on(&cfg, be, err, sizeof err);
    ck_assert_msg(fused != NULL, "%s", err);
    int conv2_bias = -1, dense1_kernel = -1;
    for (int i = 0; i < model_param_count(ref); i++) {
        if (strcmp(model_state_info(ref, i)->name, "conv2d_1/bias") == 0) conv2_bias = i;
        if (strcmp(model_state_info(ref, i)->name, "dense/kernel") == 0) dense1_kernel = i;
    }
    ck_assert(conv2_bias >= 0 && dense1_kernel >= 0);
    if (_i == 0) {
        float bias[64];
        ck_assert_uint_eq(model_state_info(ref, conv2_bias)->count, 64);
        for (int k = 0; k < 64; k++) bias[k] = k % 11 == 0 ? 0.0f : -1e4f;
        ck_assert_int_eq(model_state_set(ref, conv2_bias, bias), 0);
        ck_assert_int_eq(model_state_set(fused, conv2_bias, bias), 0);
    }
    float *img = malloc((size_t)cfg.batch * IMG * 4);
    int32_t labels[4];
    for (int step = 0; step < 3; step++) {
        synth_data(cfg.batch, 60 + (uint64_t)step, NULL, img, labels);
        float la, lb;
        ck_assert_int_eq(model_train_step(ref, img, labels, cfg.batch, &la, err, sizeof err), 0);
        ck_assert_int_eq(model_train_step(fused, img, labels, cfg.batch, &lb, err, sizeof err), 0);
        ck_assert_msg(memcmp(&la, &lb, sizeof la) == 0, "step %d: loss %.9g vs %.9g", step,
                      (double)la, (double)lb);
    }
    for (int i = 0; i < model_state_count(ref); i++) {
        const StateInfo *si = model_state_info(ref, i);
        float *va = malloc(si->count * 4), *vb = malloc(si->count * 4);
        ck_assert_int_eq(model_state_get(ref, i, va), 0);
        ck_assert_int_eq(model_state_get(fused, i, vb), 0);
        ck_assert_msg(memcmp(va, vb, si->count * 4) == 0, "%s differs", si->name);
        if (i == dense1_kernel) { /* the kernel moved: Adam ran on it */
            float *before = malloc(si->count * 4);
            Model *fresh = model_create(&cfg, err, sizeof err);
            ck_assert_msg(fresh != NULL, "%s", err);
            ck_assert_int_eq(model_state_get(fresh, i, before), 0);
            ck_assert(memcmp(before, vb, si->count * 4) != 0);
            model_free(fresh);
            free(before);
        }
        free(va);
        free(vb);
    }
    if (_i == 0) {
        const size_t count = model_state_info(ref, dense1_kernel)->count;
        float *ga = malloc(count * 4), *gb = malloc(count * 4);
        ck_assert_int_eq(model_gradient_get(ref, dense1_kernel, ga), 0);
        ck_assert_int_eq(model_gradient_get(fused, dense1_kernel, gb), 0);
        ck_assert_msg(memcmp(ga, gb, count * 4) != 0,
                      "dense1's gradient was written: not the fused path");
        free(ga);
        free(gb);
    } else {
        ck_assert_int_eq(conv_pool_calls, 6); /* conv1 and conv2, once per training forward */
    }
    free(img);
    model_free(ref);
    model_free(fused);
}
END_TEST

/* ---- determinism: same seed, bit-identical losses (default model) ---- */
START_TEST(test_determinism) {
    int n = test_quick() ? 2 : 8, steps = 3;
    float *x = malloc(n * IMG * sizeof(float));
    int32_t *labels = malloc(n * sizeof(int32_t));
    synth_data(n, 21, NULL, x, labels);
    float losses[3][3];
    uint64_t seeds[3] = {7, 7, 8};
    char err[256];
    for (int r = 0; r < 3; r++) {
        Model *m = make(NULL, n, seeds[r], OPT_ADAM);
        for (int s = 0; s < steps; s++)
            ck_assert_int_eq(model_train_step(m, x, labels, n, &losses[r][s], err, sizeof err), 0);
        model_free(m);
    }
    for (int s = 0; s < steps; s++) {
        ck_assert_int_eq(memcmp(&losses[0][s], &losses[1][s], sizeof(float)), 0);
        ck_assert(isfinite(losses[0][s]));
    }
    ck_assert(memcmp(losses[0], losses[2], sizeof losses[0]) != 0);
    free(x);
    free(labels);
}
END_TEST

/* ---- the resident data order (model.h): epochs of Fisher-Yates permutations ---- */
static void reference_permutation(int n, uint64_t seed, int64_t epoch, int32_t *perm) {
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        uint64_t r = philox_u32(seed, (uint64_t)PHILOX_STREAM_SHUFFLE + (uint64_t)epoch,
                                (uint64_t)(n - 1 - i));
        int j = (int)((r * (uint64_t)(i + 1)) >> 32);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

START_TEST(test_resident_data_order) {
    int n_data = 37, batch = 10, steps = 9; /* 90 examples: crosses two epoch boundaries */
    uint8_t *pix = malloc(n_data * IMG);
    float *fpix = malloc(n_data * IMG * sizeof(float));
    int32_t *labels = malloc(n_data * sizeof(int32_t));
    synth_data(n_data, 5, pix, fpix, labels);
    for (int shuffle = 0; shuffle < 2; shuffle++) {
        Model *a = make(SMALL_SPEC, batch, 3, OPT_ADAM);
        Model *b = make(SMALL_SPEC, batch, 3, OPT_ADAM);
        char err[256];
        ck_assert_int_eq(model_set_train_data(a, pix, labels, n_data, shuffle, 99, err, sizeof err), 0);
        int32_t perm[3][37];
        for (int e = 0; e < 3; e++) reference_permutation(n_data, 99, e, perm[e]);
        if (shuffle) ck_assert(memcmp(perm[0], perm[1], sizeof perm[0]) != 0);
        float xb[10 * IMG];
        int32_t yb[10];
        for (int s = 0; s < steps; s++) {
            float la, lb;
            /* a: one resident step; b: the same batch assembled by hand from the documented order */
            ck_assert_int_eq(model_train_steps(a, 1, &la, err, sizeof err), 0);
            for (int i = 0; i < batch; i++) {
                int p = s * batch + i, e = p / n_data, j = p % n_data;
                int ex = shuffle ? perm[e][j] : j;
                memcpy(xb + i * IMG, fpix + (size_t)ex * IMG, IMG * sizeof(float));
                yb[i] = labels[ex];
            }
            ck_assert_int_eq(model_train_step(b, xb, yb, batch, &lb, err, sizeof err), 0);
            ck_assert_msg(memcmp(&la, &lb, sizeof la) == 0, "step %d: %.9g vs %.9g", s, (double)la,
                          (double)lb);
        }
        /* Several steps at once give the same state as one at a time. */
        Model *c = make(SMALL_SPEC, batch, 3, OPT_ADAM);
        ck_assert_int_eq(model_set_train_data(c, pix, labels, n_data, shuffle, 99, err, sizeof err), 0);
        float lc, la;
        ck_assert_int_eq(model_train_steps(c, steps, &lc, err, sizeof err), 0);
        ck_assert_int_eq(model_step(c), steps);
        ck_assert_int_eq(model_train_steps(a, 1, &la, err, sizeof err), 0);
        ck_assert_int_eq(model_train_steps(c, 1, &lc, err, sizeof err), 0);
        ck_assert_int_eq(memcmp(&la, &lc, sizeof la), 0);
        model_free(a);
        model_free(b);
        model_free(c);
    }
    free(pix);
    free(fpix);
    free(labels);
}
END_TEST

/* ---- training learns; predict and evaluate agree ---- */
START_TEST(test_learns_predict_evaluate) {
    int n_train = 400, n_test = 150, batch = 20;
    uint8_t *pix = malloc((size_t)n_train * IMG), *tpix = malloc((size_t)n_test * IMG);
    float *tf = malloc((size_t)n_test * IMG * sizeof(float));
    int32_t *labels = malloc(n_train * sizeof(int32_t)), *tl = malloc(n_test * sizeof(int32_t));
    synth_data(n_train, 1, pix, NULL, labels);
    synth_data(n_test, 2, tpix, tf, tl);
    Model *m = make("conv:8:5:same,relu,maxpool:2,flatten,dense:32,relu,dropout:0.4,dense:10",
                    batch, 1, OPT_ADAM);
    char err[256];
    double loss0, acc0, loss1, acc1;
    ck_assert_int_eq(model_evaluate(m, tpix, tl, n_test, &loss0, &acc0, err, sizeof err), 0);
    ck_assert_int_eq(model_set_train_data(m, pix, labels, n_train, 1, 4, err, sizeof err), 0);
    float last;
    ck_assert_int_eq(model_train_steps(m, test_quick() ? 40 : 80, &last, err, sizeof err), 0);
    ck_assert_int_eq(model_evaluate(m, tpix, tl, n_test, &loss1, &acc1, err, sizeof err), 0);
    ck_assert_msg(acc1 >= 0.9 && loss1 < 0.5 * loss0, "loss %g -> %g, accuracy %g -> %g", loss0,
                  loss1, acc0, acc1);
    /* A smaller set, then the whole one again (the device copy of the set grows only): the
     * same totals as before. */
    double loss_s, acc_s, loss2, acc2;
    ck_assert_int_eq(model_evaluate(m, tpix, tl, 37, &loss_s, &acc_s, err, sizeof err), 0);
    ck_assert_int_eq(model_evaluate(m, tpix, tl, n_test, &loss2, &acc2, err, sizeof err), 0);
    ck_assert(loss2 == loss1 && acc2 == acc1);
    Model *fresh = make("conv:8:5:same,relu,maxpool:2,flatten,dense:32,relu,dropout:0.4,dense:10",
                        batch, 1, OPT_ADAM);
    ck_assert_int_eq(model_evaluate(fresh, tpix, tl, 37, &loss_s, &acc_s, err, sizeof err), 0);
    ck_assert_int_eq(model_evaluate(fresh, tpix, tl, n_test, &loss2, &acc2, err, sizeof err), 0);
    ck_assert(loss2 == loss0 && acc2 == acc0);
    model_free(fresh);
    /* predict (chunks of 20 over 150) agrees with evaluate's accuracy and loss. */
    float *probs = malloc((size_t)n_test * 10 * sizeof(float));
    ck_assert_int_eq(model_predict(m, tf, n_test, probs, err, sizeof err), 0);
    int correct = 0;
    double chunk_sum = 0, chunk_loss = 0;
    int chunks = 0;
    for (int i = 0; i < n_test; i++) {
        double s = 0;
        int am = 0;
        for (int j = 0; j < 10; j++) {
            s += probs[i * 10 + j];
            if (probs[i * 10 + j] > probs[i * 10 + am]) am = j;
        }
        ck_assert_double_eq_tol(s, 1.0, 1e-5);
        correct += am == tl[i];
        chunk_sum += -log(probs[i * 10 + tl[i]]);
        if (i % batch == batch - 1 || i == n_test - 1) {
            chunk_loss += chunk_sum / (i % batch + 1);
            chunk_sum = 0;
            chunks++;
        }
    }
    ck_assert_double_eq_tol((double)correct / n_test, acc1, 1e-12);
    ck_assert_double_eq_tol(chunk_loss / chunks, loss1, 1e-4 * loss1 + 1e-6);
    free(probs);
    free(pix);
    free(tpix);
    free(tf);
    free(labels);
    free(tl);
    model_free(m);
}
END_TEST

START_TEST(test_errors) {
    static const struct { const char *spec, *want; } bad[] = {
        {"conv:32", "layer 1"},
        {"conv:8:5:same,relu,dense:10", "flatten"},
        {"conv:8:5:same,flatten,dense:7", "[N,10]"},
        {"conv:8:5:same,flatten,conv:2:3,dense:10", "layer 3"},
        {"foo", "bad layer 1 'foo'"},
        {"conv:8:40:valid,flatten,dense:10", "too small"},
        {"flatten,dropout:1.5,dense:10", "layer 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ModelConfig cfg;
        model_config_default(&cfg);
        cfg.spec = bad[i].spec;
        cfg.batch = 2;
        char err[256] = "";
        ck_assert_ptr_null(model_create(&cfg, err, sizeof err));
        ck_assert_msg(strstr(err, bad[i].want) != NULL, "spec '%s': error '%s' lacks '%s'",
                      bad[i].spec, err, bad[i].want);
    }
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.batch = 0;
    char err[256] = "";
    ck_assert_ptr_null(model_create(&cfg, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "batch"));
#ifndef WITH_CUDA
    model_config_default(&cfg);
    cfg.device = DEVICE_CUDA;
    ck_assert_ptr_null(model_create(&cfg, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "CUDA"));
    ck_assert_int_eq(device_cuda_available(), 0);
#endif
    Device d;
    ck_assert_int_eq(device_parse("cudnn", &d), 0);
    ck_assert_int_eq(d, DEVICE_CUDNN);
    ck_assert_str_eq(device_name(d), "cudnn");
    ck_assert_int_eq(device_parse("auto", &d), 0);
    ck_assert_int_eq(d, device_cuda_available() ? DEVICE_CUDA : DEVICE_CPU);
    ck_assert_int_eq(device_parse("tpu", &d), -1);

    Model *m = make("flatten,dense:10", 2, 0, OPT_SGD);
    float x[3 * IMG] = {0};
    int32_t labels[3] = {1, 10, 2};
    ck_assert_int_eq(model_train_step(m, x, labels, 2, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "label 10 of example 1"));
    ck_assert_int_eq(model_train_step(m, x, labels, 3, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "batch of 3"));
    ck_assert_int_eq(model_train_steps(m, 1, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no training data"));
    ck_assert_int_eq(model_step(m), 0);
    model_free(m);
}
END_TEST

/* Which conv + ReLU + pool layers the CPU backend records as one op: where the fused forward's
 * buffer holds them and the filter gradient is the one the two ops would take (the direct
 * loops', or the winners' from 8 input channels); a conv of 5 to 7 channels keeps the two ops. */
START_TEST(test_cpu_conv_pool_fits) {
    static const struct { int h, c, k, want; } CASES[] = {
        {28, 1, 32, 1},  /* conv1: the direct loops */
        {14, 32, 64, 1}, /* conv2: the winners */
        {14, 6, 16, 0},  /* neither: the two ops */
        {14, 8, 16, 1},
        {28, 32, 64, 0}, /* an image's output over the 64 KB buffer */
    };
    Backend *be = backend_cpu_create();
    ck_assert_ptr_nonnull(be->conv2d_relu_maxpool_fits);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        Conv2dShape cs;
        Pool2dShape ps;
        conv2d_shape_init(&cs, 4, CASES[i].h, CASES[i].h, CASES[i].c, 5, 5, CASES[i].k, 1, 1, 1);
        pool2d_shape_init(&ps, 4, cs.oh, cs.ow, CASES[i].k, 2, 2, 2, 2, 0);
        ck_assert_msg(be->conv2d_relu_maxpool_fits(be, &cs, &ps) == CASES[i].want,
                      "%dx%dx%d -> %d: want %d", CASES[i].h, CASES[i].h, CASES[i].c, CASES[i].k,
                      CASES[i].want);
    }
    be->destroy(be);
}
END_TEST

int main(void) {
    /* One test case per test, so CK_RUN_CASE=<name> runs one. */
    const struct { const char *name; const TTest *test; int loops; } tests[] = {
        {"init", test_default_state_and_init, 1},
        {"gradients", test_model_gradients_fd, 1},
        {"fused_first_layer", test_fused_first_layer_same_model, 5},
        {"optimizer", test_optimizer_step, 1},
        {"optimizer_per_layer", test_optimizer_per_layer_same_bits, 1},
        {"cpu_paths", test_cpu_paths_same_bits, 2},
        {"cpu_conv_pool_fits", test_cpu_conv_pool_fits, 1},
        {"determinism", test_determinism, 1},
        {"data_order", test_resident_data_order, 1},
        {"learns", test_learns_predict_evaluate, 1},
        {"errors", test_errors, 1},
    };
    Suite *s = suite_create("core_model");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tcase_create(tests[i].name);
        tcase_set_timeout(tc, 600);
        tcase_add_loop_test(tc, tests[i].test, 0, tests[i].loops);
        suite_add_tcase(s, tc);
    }
    return test_run_suite(s);
}
