/* model.c: the sequential CNN of model.h, built on the tape.
 *
 * Reading order: model_create (spec -> tape of ops -> commit -> Keras init), the training step
 * (forward, backward, one fused optimizer pass, step += 1), training from a resident data set,
 * prediction and evaluation, then named state for checkpoints.
 */
#include "core/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/model_backend.h"
#include "core/model_spec.h"
#include "core/ops.h"
#include "core/optimizer.h"
#include "core/tape.h"
#include "kernels/philox.h"

#define IMAGE_H 28
#define IMAGE_W 28
#define IMAGE_C 1
#define IMAGE_SIZE (IMAGE_H * IMAGE_W * IMAGE_C)
#define CLASSES 10
#define MAX_PARAMS (2 * MODEL_SPEC_MAX_LAYERS)
#define MAX_STATE (MAX_PARAMS * (1 + OPTIMIZER_MAX_SLOTS))
#define NAME_LEN 64

struct Model {
    ModelConfig cfg;
    ModelSpec spec;
    Backend *be;
    Tape tape;
    Optimizer opt;
    Tensor *x, *labels;           /* inputs [B,28,28,1] float, [B] int32 */
    Tensor *logits, *loss, *probs, *correct;
    int net_end;                  /* ops [0, net_end) compute the logits */
    int loss_end;                 /* ops [0, loss_end) compute the loss */
    int probs_op, correct_op;     /* forward-only heads */
    int n_params;
    Tensor *params[MAX_PARAMS];
    int n_state;
    StateInfo state[MAX_STATE];
    char names[MAX_STATE][NAME_LEN];
    Tensor *state_tensor[MAX_STATE];
    size_t state_offset[MAX_STATE]; /* floats into state_tensor */
    int64_t step;                 /* host mirror of *tape.step */
    /* resident training data (model_set_train_data) */
    uint8_t *data_pixels;
    int32_t *data_labels;
    int32_t *ring;                /* [ring_epochs, n_data] permutations, backend memory */
    int32_t *perm;                /* host [n_data]: the permutation of epoch perm_epoch */
    int64_t perm_epoch;           /* -1: none */
    int64_t *ring_epoch;          /* host: which epoch each ring row holds (-1: none) */
    int n_data, ring_epochs, shuffle;
    uint64_t shuffle_seed;
    /* evaluation (model_evaluate): the set's pixels and labels, backend memory, grown as needed;
     * its totals, backend memory */
    uint8_t *eval_pixels;
    int32_t *eval_labels;
    int eval_capacity;
    struct EvalTotals *eval_totals;
};

/* An evaluation's totals, accumulated on the backend (eval_accumulate) and downloaded once. */
typedef struct EvalTotals {
    double loss_sum;        /* the chunks' mean losses, added in chunk order */
    int64_t correct;        /* rows whose first argmax is the label */
} EvalTotals;

void model_config_default(ModelConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->spec = NULL;
    cfg->batch = 100;
    cfg->device = DEVICE_CPU;
    cfg->seed = 0;
    cfg->optimizer = OPT_ADAM;
    cfg->learning_rate = 0.001f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->epsilon = 1e-7f;
    cfg->momentum = 0.9f;
    cfg->threads = 0;
}

/* ---- building ------------------------------------------------------------------------------ */

static Backend *backend_for(Device d, char *err, size_t errlen) {
    Backend *be = NULL;
    switch (d) {
    case DEVICE_CPU:
        be = backend_cpu_create();
        if (!be) snprintf(err, errlen, "out of memory creating the CPU backend");
        return be;
    case DEVICE_CUDA:
    case DEVICE_CUDNN:
#ifdef WITH_CUDA
        return d == DEVICE_CUDA ? backend_cuda_create(err, errlen)
                                : backend_cudnn_create(err, errlen);
#else
        snprintf(err, errlen, "device %s: this build has no CUDA support", device_name(d));
        return NULL;
#endif
    }
    snprintf(err, errlen, "unknown device %d", (int)d);
    return NULL;
}

static Tensor *add_param(Model *m, const char *layer, const char *what, int rank,
                         const int *shape) {
    Tensor *p = tape_param(&m->tape, rank, shape);
    if (!p || m->n_params >= MAX_PARAMS) return NULL;
    StateInfo *si = &m->state[m->n_state];
    snprintf(m->names[m->n_state], NAME_LEN, "%s/%s", layer, what);
    si->name = m->names[m->n_state];
    si->kind = STATE_PARAM;
    si->rank = rank;
    si->count = p->count;
    for (int i = 0; i < rank; i++) si->shape[i] = shape[i];
    m->state_tensor[m->n_state] = p;
    m->state_offset[m->n_state] = 0;
    m->n_state++;
    m->params[m->n_params++] = p;
    return p;
}

static const char *layer_kind_name(LayerKind k) {
    static const char *names[] = {"conv", "maxpool", "dense", "relu", "flatten", "dropout"};
    return names[k];
}

/* Records the layer list on the tape; the output of each layer feeds the next. Keras names:
 * the first Conv2D is conv2d, then conv2d_1, ...; likewise dense, dense_1, ... */
static int build_network(Model *m, char *err, size_t errlen) {
    Tape *t = &m->tape;
    int B = m->cfg.batch;
    int xs[4] = {B, IMAGE_H, IMAGE_W, IMAGE_C};
    m->x = tape_tensor(t, DT_F32, 4, xs, 1);
    m->labels = tape_tensor(t, DT_I32, 1, &B, 1);
    Tensor *h = m->x;
    int n_conv = 0, n_dense = 0;
    /* A dropout right before a dense layer, left to that layer's op (op_dropout_dense). */
    const LayerSpec *dropout_before = NULL;
    for (int li = 0; li < m->spec.n && h; li++) {
        const LayerSpec *l = &m->spec.layers[li];
        /* A ReLU right after conv/dense is fused into it (one op, no separate pass). */
        int fuse_relu = (l->kind == LAYER_CONV || l->kind == LAYER_DENSE) && li + 1 < m->spec.n &&
                        m->spec.layers[li + 1].kind == LAYER_RELU;
        char name[32];
        Tensor *next = NULL;
        switch (l->kind) {
        case LAYER_CONV: {
            if (h->rank != 4) break;
            if (n_conv == 0) snprintf(name, sizeof name, "conv2d");
            else snprintf(name, sizeof name, "conv2d_%d", n_conv);
            n_conv++;
            int ws[4] = {l->size, l->size, h->shape[3], l->units};
            Tensor *w = add_param(m, name, "kernel", 4, ws);
            Tensor *b = add_param(m, name, "bias", 1, &l->units);
            /* conv, relu, maxpool on the model's input (the first layer): one op where the
             * backend has the fused entries (the conv output is never stored). */
            const LayerSpec *pool = fuse_relu && li + 2 < m->spec.n &&
                                            m->spec.layers[li + 2].kind == LAYER_MAXPOOL
                                        ? &m->spec.layers[li + 2]
                                        : NULL;
            if (pool &&
                (next = op_conv2d_relu_maxpool(t, h, w, b, l->stride, l->same, pool->size,
                                               pool->stride, pool->same)) != NULL) {
                li++; /* the max pool (the ReLU is skipped below) */
                break;
            }
            next = op_conv2d(t, h, w, b, l->stride, l->same, fuse_relu);
            break;
        }
        case LAYER_MAXPOOL:
            if (h->rank == 4) next = op_maxpool2d(t, h, l->size, l->size, l->stride, l->same);
            break;
        case LAYER_DENSE: {
            if (h->rank != 2) break;
            if (n_dense == 0) snprintf(name, sizeof name, "dense");
            else snprintf(name, sizeof name, "dense_%d", n_dense);
            n_dense++;
            int ws[2] = {h->shape[1], l->units};
            Tensor *w = add_param(m, name, "kernel", 2, ws);
            Tensor *b = add_param(m, name, "bias", 1, &l->units);
            next = dropout_before ? op_dropout_dense(t, h, dropout_before->rate, w, b, fuse_relu)
                                  : op_dense(t, h, w, b, fuse_relu);
            dropout_before = NULL;
            break;
        }
        case LAYER_RELU: next = op_relu(t, h); break;
        case LAYER_FLATTEN: next = op_flatten(t, h); break;
        case LAYER_DROPOUT:
            if (li + 1 < m->spec.n && m->spec.layers[li + 1].kind == LAYER_DENSE &&
                op_dropout_dense_fits(t, h, m->spec.layers[li + 1].units)) {
                dropout_before = l; /* the dense layer's op does it */
                next = h;
            } else {
                next = op_dropout(t, h, l->rate);
            }
            break;
        }
        if (!next) {
            const char *why = (l->kind == LAYER_DENSE && h->rank != 2)
                ? "a dense layer needs a flat input (add flatten before it)"
                : (l->kind == LAYER_CONV || l->kind == LAYER_MAXPOOL) && h->rank != 4
                ? "needs an image input [N,H,W,C] (it comes after flatten)"
                : l->kind == LAYER_DROPOUT && t->n_dropout >= 16
                ? "at most 16 dropout layers"
                : "the input is too small for it, or the model is too large";
            snprintf(err, errlen, "model spec: layer %d (%s): %s", li + 1,
                     layer_kind_name(l->kind), why);
            return -1;
        }
        h = next;
        if (fuse_relu) li++;
    }
    if (h->rank != 2 || h->shape[1] != CLASSES) {
        snprintf(err, errlen, "model spec: the last layer must give [N,%d] logits (dense:%d)",
                 CLASSES, CLASSES);
        return -1;
    }
    m->logits = h;
    m->net_end = t->n_ops;
    m->loss = op_softmax_xent(t, m->logits, m->labels);
    m->loss_end = t->n_ops;
    tape_set_grad_enabled(t, 0);
    m->probs_op = t->n_ops;
    m->probs = op_softmax(t, m->logits);
    m->correct_op = t->n_ops;
    m->correct = op_accuracy(t, m->logits, m->labels);
    tape_set_grad_enabled(t, 1);
    if (!m->loss || !m->probs || !m->correct) {
        snprintf(err, errlen, "model too large for the tape");
        return -1;
    }
    return 0;
}

/* Optimizer slot state entries: per parameter, in parameter order, "<var>/<suffix>". */
static void add_slot_state(Model *m) {
    int n_params_state = m->n_state;
    for (int p = 0; p < n_params_state; p++) {
        for (int s = 0; s < m->opt.n_slots; s++) {
            StateInfo *si = &m->state[m->n_state];
            *si = m->state[p];
            snprintf(m->names[m->n_state], NAME_LEN, "%s/%s", m->state[p].name,
                     m->opt.slot_suffix[s]);
            si->name = m->names[m->n_state];
            si->kind = STATE_OPT_SLOT;
            m->state_tensor[m->n_state] = m->opt.slot[s];
            m->state_offset[m->n_state] = tape_param_offset(&m->tape, m->state_tensor[p]);
            m->n_state++;
        }
    }
}

/* Keras init: glorot_uniform kernels, limit sqrt(6 / (fan_in + fan_out)) with
 * fan_in = receptive field * in channels, fan_out = receptive field * out channels (conv) or
 * in / out (dense); zero biases. Parameter p (0-based over all parameters, biases included)
 * draws element i as philox_uniform(seed, PHILOX_STREAM_INIT + p, i) mapped to [-limit, limit). */
static int init_params(Model *m) {
    size_t max_count = 0;
    for (int p = 0; p < m->n_params; p++)
        if (m->params[p]->count > max_count) max_count = m->params[p]->count;
    float *host = malloc(max_count * sizeof(float));
    if (!host) return -1;
    for (int p = 0; p < m->n_params; p++) {
        Tensor *w = m->params[p];
        if (w->rank == 1) {
            memset(host, 0, w->count * sizeof(float));
        } else {
            double receptive = 1.0;
            for (int d = 0; d < w->rank - 2; d++) receptive *= w->shape[d];
            double fan_in = receptive * w->shape[w->rank - 2];
            double fan_out = receptive * w->shape[w->rank - 1];
            float limit = (float)sqrt(6.0 / (fan_in + fan_out));
            uniform_fill_symmetric(w->count, limit, m->cfg.seed,
                                   (uint64_t)PHILOX_STREAM_INIT + (uint64_t)p, host);
        }
        m->be->upload(m->be, w->data, host, w->count * sizeof(float));
    }
    free(host);
    return 0;
}

static int check_config(const ModelConfig *cfg, ModelSpec *spec, char *err, size_t errlen) {
    if (cfg->batch < 1) {
        snprintf(err, errlen, "batch size must be at least 1 (got %d)", cfg->batch);
        return -1;
    }
    if (!(cfg->learning_rate > 0.0f) || !isfinite(cfg->learning_rate)) {
        snprintf(err, errlen, "learning rate must be a positive number (got %g)",
                 (double)cfg->learning_rate);
        return -1;
    }
    return model_spec_parse(cfg->spec, spec, err, errlen);
}

Model *model_create(const ModelConfig *cfg, char *err, size_t errlen) {
    ModelSpec spec;
    if (check_config(cfg, &spec, err, errlen) != 0) return NULL; /* before any device work */
    Backend *be = backend_for(cfg->device, err, errlen);
    return be ? model_create_on(cfg, be, err, errlen) : NULL;
}

Model *model_create_on(const ModelConfig *cfg, Backend *be, char *err, size_t errlen) {
    Model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        be->destroy(be);
        return NULL;
    }
    m->be = be;
    m->cfg = *cfg;
    m->cfg.spec = NULL; /* not kept: the parsed form is */
    if (check_config(cfg, &m->spec, err, errlen) != 0) {
        model_free(m);
        return NULL;
    }
    if (be->set_threads) be->set_threads(be, cfg->threads);
    tape_init(&m->tape, be, cfg->batch, cfg->seed);
    if (build_network(m, err, errlen) != 0) {
        model_free(m);
        return NULL;
    }
    if (optimizer_init(&m->opt, &m->tape, cfg) != 0) {
        snprintf(err, errlen, "model too large for the tape");
        model_free(m);
        return NULL;
    }
    if (tape_commit(&m->tape, err, errlen) != 0) {
        model_free(m);
        return NULL;
    }
    add_slot_state(m);
    if (init_params(m) != 0) {
        snprintf(err, errlen, "out of memory initialising the parameters");
        model_free(m);
        return NULL;
    }
    model_set_step(m, 0);
    return m;
}

static void release_train_data(Model *m) {
    Backend *be = m->be;
    if (be->invalidate_graphs) be->invalidate_graphs(be);
    if (m->data_pixels) be->free(be, m->data_pixels);
    if (m->data_labels) be->free(be, m->data_labels);
    if (m->ring) be->free(be, m->ring);
    free(m->perm);
    free(m->ring_epoch);
    m->data_pixels = NULL;
    m->data_labels = NULL;
    m->ring = NULL;
    m->perm = NULL;
    m->ring_epoch = NULL;
    m->n_data = 0;
}

static void release_eval_data(Model *m) {
    Backend *be = m->be;
    if (m->eval_pixels) be->free(be, m->eval_pixels);
    if (m->eval_labels) be->free(be, m->eval_labels);
    m->eval_pixels = NULL;
    m->eval_labels = NULL;
    m->eval_capacity = 0;
}

void model_free(Model *m) {
    if (!m) return;
    if (m->be) {
        release_train_data(m);
        release_eval_data(m);
        if (m->eval_totals) m->be->free(m->be, m->eval_totals);
        tape_free(&m->tape);
        m->be->destroy(m->be);
    }
    free(m);
}

/* ---- the training step --------------------------------------------------------------------- */

static int check_labels(const int32_t *labels, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= CLASSES) {
            snprintf(err, errlen, "label %d of example %d is outside 0..%d", (int)labels[i], i,
                     CLASSES - 1);
            return -1;
        }
    return 0;
}

static int check_batch(const Model *m, int n, char *err, size_t errlen) {
    if (n < 1 || n > m->cfg.batch) {
        snprintf(err, errlen, "batch of %d examples: must be 1..%d", n, m->cfg.batch);
        return -1;
    }
    return 0;
}

/* forward, loss, backward, one optimizer pass, step += 1: all issued to the backend, with the
 * step-dependent values (dropout stream, Adam's t) read from its step counter. */
static void update_ready_params(void *opt, Tape *t, size_t first, size_t count) {
    optimizer_apply_range(opt, t, first, count);
}

static void train_body(Model *m) {
    Tape *t = &m->tape;
    t->training = 1;
    tape_forward(t, 0, m->loss_end);
    if (m->be->optimizer_per_layer) { /* each layer's update as soon as its gradients are final */
        tape_backward(t, update_ready_params, &m->opt);
    } else {
        TapeAdam adam;
        t->adam = optimizer_tape_adam(&m->opt, t, &adam) ? &adam : NULL;
        tape_backward(t, NULL, NULL);
        optimizer_apply(&m->opt, t);
        t->adam = NULL;
    }
    m->be->step_increment(m->be, t->step);
}

static int device_error(const Model *m, char *err, size_t errlen) {
    snprintf(err, errlen, "%s device error: %s", m->be->name, m->be->last_error(m->be));
    return -1;
}

/* Waits for the issued work; downloads the loss of the last step when loss != NULL. */
static int finish(Model *m, float *loss, char *err, size_t errlen) {
    Backend *be = m->be;
    int rc = loss ? be->download(be, loss, m->loss->data, sizeof(float)) : be->sync(be);
    return rc != 0 ? device_error(m, err, errlen) : 0;
}

int model_train_step(Model *m, const float *images, const int32_t *labels, int n, float *loss,
                     char *err, size_t errlen) {
    if (check_batch(m, n, err, errlen) || check_labels(labels, n, err, errlen)) return -1;
    Backend *be = m->be;
    m->tape.n = n;
    be->upload(be, m->x->data, images, (size_t)n * IMAGE_SIZE * sizeof(float));
    be->upload(be, m->labels->data, labels, (size_t)n * sizeof(int32_t));
    train_body(m);
    m->step++;
    /* Without a loss to return nothing waits for the step (a device error shows at the next
     * transfer or sync). */
    return loss ? finish(m, loss, err, errlen) : 0;
}

int model_compute_gradients(Model *m, const float *images, const int32_t *labels, int n,
                            float *loss, float *logits, char *err, size_t errlen) {
    if (check_batch(m, n, err, errlen) || check_labels(labels, n, err, errlen)) return -1;
    Backend *be = m->be;
    Tape *t = &m->tape;
    t->n = n;
    t->training = 1;
    be->upload(be, m->x->data, images, (size_t)n * IMAGE_SIZE * sizeof(float));
    be->upload(be, m->labels->data, labels, (size_t)n * sizeof(int32_t));
    tape_forward(t, 0, m->loss_end);
    tape_backward(t, NULL, NULL);
    if (logits && be->download(be, logits, m->logits->data, (size_t)n * CLASSES * sizeof(float)))
        return device_error(m, err, errlen);
    return finish(m, loss, err, errlen);
}

int model_param_count(const Model *m) { return m->n_params; }

int model_gradient_get(const Model *m, int i, float *host) {
    if (i < 0 || i >= m->n_params) return -1;
    const Tensor *p = m->params[i];
    return m->be->download(m->be, host, p->grad, p->count * sizeof(float)) ? -1 : 0;
}

/* ---- training from a resident data set ----------------------------------------------------- */

/* Epoch e's order: Fisher-Yates from the identity, i = n-1 down to 1, draw k = n-1-i:
 * j = (philox_u32(seed, PHILOX_STREAM_SHUFFLE + e, k) * (i+1)) >> 32, swap(perm[i], perm[j]).
 * Without shuffle: the file order. Draws k = 4b .. 4b+3 are one Philox call. */
static void epoch_permutation(const Model *m, int64_t epoch, int32_t *perm) {
    int n = m->n_data;
    for (int i = 0; i < n; i++) perm[i] = i;
    if (!m->shuffle) return;
    uint64_t stream = (uint64_t)PHILOX_STREAM_SHUFFLE + (uint64_t)epoch;
    Philox4x32 words = {{0, 0, 0, 0}};
    for (int i = n - 1; i > 0; i--) {
        const uint64_t k = (uint64_t)(n - 1 - i);
        if (k % 4 == 0) words = philox_block(m->shuffle_seed, stream, k / 4);
        uint64_t r = words.v[k % 4];
        int j = (int)((r * (uint64_t)(i + 1)) >> 32);
        int32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

int model_set_train_data(Model *m, const uint8_t *pixels, const int32_t *labels, int n,
                         int shuffle, uint64_t shuffle_seed, char *err, size_t errlen) {
    if (n < 1) {
        snprintf(err, errlen, "training data set is empty");
        return -1;
    }
    if (check_labels(labels, n, err, errlen)) return -1;
    release_train_data(m);
    Backend *be = m->be;
    /* A window of steps spans at most ring_epochs epochs (see train_chunk). */
    m->ring_epochs = 2 + m->cfg.batch / n;
    m->n_data = n;
    m->shuffle = shuffle;
    m->shuffle_seed = shuffle_seed;
    m->data_pixels = be->alloc(be, (size_t)n * IMAGE_SIZE);
    m->data_labels = be->alloc(be, (size_t)n * sizeof(int32_t));
    m->ring = be->alloc(be, (size_t)m->ring_epochs * (size_t)n * sizeof(int32_t));
    m->perm = malloc((size_t)n * sizeof(int32_t));
    m->ring_epoch = malloc((size_t)m->ring_epochs * sizeof(int64_t));
    if (!m->data_pixels || !m->data_labels || !m->ring || !m->perm || !m->ring_epoch) {
        release_train_data(m);
        snprintf(err, errlen, "out of %s memory for %d training examples", be->name, n);
        return -1;
    }
    for (int r = 0; r < m->ring_epochs; r++) m->ring_epoch[r] = -1;
    m->perm_epoch = -1;
    be->upload(be, m->data_pixels, pixels, (size_t)n * IMAGE_SIZE);
    be->upload(be, m->data_labels, labels, (size_t)n * sizeof(int32_t));
    return finish(m, NULL, err, errlen);
}

static void resident_step(void *arg) {
    Model *m = arg;
    Tape *t = &m->tape;
    t->n = m->cfg.batch;
    m->be->gather_batch(m->be, m->cfg.batch, IMAGE_SIZE, m->n_data, m->data_pixels,
                        m->data_labels, m->ring, m->ring_epochs, t->step,
                        tensor_f32(m->x), tensor_i32(m->labels));
    train_body(m);
}

/* Draws epoch e's permutation into m->perm unless it is there or in the ring already. */
static void draw_permutation(Model *m, int64_t e) {
    if (m->perm_epoch == e || m->ring_epoch[e % m->ring_epochs] == e) return;
    epoch_permutation(m, e, m->perm);
    m->perm_epoch = e;
}

/* Makes sure the ring holds the permutations of epochs [e0, e1]. */
static void load_epochs(Model *m, int64_t e0, int64_t e1) {
    for (int64_t e = e0; e <= e1; e++) {
        int row = (int)(e % m->ring_epochs);
        if (m->ring_epoch[row] == e) continue;
        draw_permutation(m, e);
        m->be->upload(m->be, m->ring + (size_t)row * (size_t)m->n_data, m->perm,
                      (size_t)m->n_data * sizeof(int32_t));
        m->ring_epoch[row] = e;
    }
}

int model_train_steps(Model *m, int steps, float *last_loss, char *err, size_t errlen) {
    if (!m->n_data) {
        snprintf(err, errlen, "model_train_steps: no training data (model_set_train_data)");
        return -1;
    }
    Backend *be = m->be;
    int64_t B = m->cfg.batch, n = m->n_data;
    while (steps > 0) {
        /* The largest window of steps whose examples lie in ring_epochs consecutive epochs. */
        int64_t s = m->step;
        int64_t e0 = s * B / n;
        int64_t k = ((e0 + m->ring_epochs) * n) / B - s;
        if (k > steps) k = steps;
        if (k < 1) k = 1;
        int64_t e1 = ((s + k) * B - 1) / n;
        load_epochs(m, e0, e1);
        if (be->run_steps) {
            if (be->run_steps(be, 0, resident_step, m, (int)k) != 0)
                return device_error(m, err, errlen);
        } else {
            for (int64_t i = 0; i < k; i++) resident_step(m);
        }
        m->step += k;
        steps -= (int)k;
        /* The next epoch's order, drawn while the device runs these steps (run_steps returns
         * once they are queued), not in front of the launches that need it. */
        draw_permutation(m, e1 + 1);
    }
    return finish(m, last_loss, err, errlen);
}

/* ---- prediction and evaluation ------------------------------------------------------------- */

int model_predict(Model *m, const float *images, int n, float *probs, char *err, size_t errlen) {
    Backend *be = m->be;
    Tape *t = &m->tape;
    t->training = 0;
    for (int at = 0; at < n; at += m->cfg.batch) {
        int k = n - at < m->cfg.batch ? n - at : m->cfg.batch;
        t->n = k;
        be->upload(be, m->x->data, images + (size_t)at * IMAGE_SIZE,
                   (size_t)k * IMAGE_SIZE * sizeof(float));
        tape_forward(t, 0, m->net_end);
        tape_forward(t, m->probs_op, m->probs_op + 1);
        if (be->download(be, probs + (size_t)at * CLASSES, m->probs->data,
                         (size_t)k * CLASSES * sizeof(float))) {
            t->training = 1;
            return device_error(m, err, errlen);
        }
    }
    t->training = 1;
    return 0;
}

/* loss: the mean over chunks of each chunk's mean loss, as the Estimator's loss metric (a
 * tf.metrics.mean of the per-batch loss); with 10,000 examples in chunks of 100 that is the mean
 * over all examples. accuracy: correct / n over all examples. */
int model_evaluate(Model *m, const uint8_t *pixels, const int32_t *labels, int n, double *loss,
                   double *accuracy, char *err, size_t errlen) {
    if (n < 1) {
        snprintf(err, errlen, "evaluation data set is empty");
        return -1;
    }
    if (check_labels(labels, n, err, errlen)) return -1;
    Backend *be = m->be;
    Tape *t = &m->tape;
    /* The whole set uploaded once and the totals kept on the device: the chunks' launches go
     * out back to back, and the evaluation ends with one download (on a GPU, 100 round trips
     * fewer for MNIST's test set). */
    if (n > m->eval_capacity) {
        release_eval_data(m);
        m->eval_pixels = be->alloc(be, (size_t)n * IMAGE_SIZE);
        m->eval_labels = be->alloc(be, (size_t)n * sizeof(int32_t));
        if (!m->eval_totals) m->eval_totals = be->alloc(be, sizeof(EvalTotals));
        if (!m->eval_pixels || !m->eval_labels || !m->eval_totals) {
            release_eval_data(m);
            snprintf(err, errlen, "out of %s memory for %d evaluation examples", be->name, n);
            return -1;
        }
        m->eval_capacity = n;
    }
    be->upload(be, m->eval_pixels, pixels, (size_t)n * IMAGE_SIZE);
    be->upload(be, m->eval_labels, labels, (size_t)n * sizeof(int32_t));
    be->zero(be, m->eval_totals, sizeof(EvalTotals));
    t->training = 0;
    int chunks = 0;
    for (int at = 0; at < n; at += m->cfg.batch, chunks++) {
        int k = n - at < m->cfg.batch ? n - at : m->cfg.batch;
        t->n = k;
        be->u8_to_float(be, (size_t)k * IMAGE_SIZE, m->eval_pixels + (size_t)at * IMAGE_SIZE,
                        tensor_f32(m->x));
        be->copy(be, m->labels->data, m->eval_labels + at, (size_t)k * sizeof(int32_t));
        tape_forward(t, 0, m->loss_end);
        tape_forward(t, m->correct_op, m->correct_op + 1);
        be->eval_accumulate(be, tensor_f32(m->loss), tensor_i32(m->correct),
                            &m->eval_totals->loss_sum, &m->eval_totals->correct);
    }
    t->training = 1;
    EvalTotals totals;
    if (be->download(be, &totals, m->eval_totals, sizeof totals))
        return device_error(m, err, errlen);
    *loss = totals.loss_sum / chunks;
    *accuracy = (double)totals.correct / (double)n;
    return 0;
}

/* ---- named state --------------------------------------------------------------------------- */

int model_state_count(const Model *m) { return m->n_state; }

const StateInfo *model_state_info(const Model *m, int i) {
    return (i >= 0 && i < m->n_state) ? &m->state[i] : NULL;
}

static float *state_ptr(const Model *m, int i) {
    return tensor_f32(m->state_tensor[i]) + m->state_offset[i];
}

int model_state_get(const Model *m, int i, float *host) {
    if (i < 0 || i >= m->n_state) return -1;
    return m->be->download(m->be, host, state_ptr(m, i), m->state[i].count * sizeof(float)) ? -1
                                                                                            : 0;
}

int model_state_set(Model *m, int i, const float *host) {
    if (i < 0 || i >= m->n_state) return -1;
    m->be->upload(m->be, state_ptr(m, i), host, m->state[i].count * sizeof(float));
    return m->be->sync(m->be) ? -1 : 0;
}

int64_t model_step(const Model *m) { return m->step; }

void model_set_step(Model *m, int64_t step) {
    m->step = step;
    m->be->upload(m->be, m->tape.step, &step, sizeof step);
}
