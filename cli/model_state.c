/* model_state.c: a Model's state <-> checkpoints (see model_state.h). */
#include "cli/model_state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/tensor_bundle.h"

void model_snapshot_free(ModelSnapshot *s) {
    for (int i = 0; i < s->nbuffers; i++) free(s->buffers[i]);
    free(s->buffers);
    free(s->tensors);
    memset(s, 0, sizeof *s);
}

static const char *const BETA_POWER_NAME[2] = {"beta1_power", "beta2_power"};

float adam_beta_power(float beta, int64_t step) {
    return powf(beta, (float)step + 1.0f);   /* in float, as the Adam kernel's beta^t */
}

static void add_scalar(ModelSnapshot *s, const char *name, TfDataType dtype, void *data,
                       size_t nbytes) {
    TfTensor *t = &s->tensors[s->n++];
    t->name = name;
    t->dtype = dtype;
    t->rank = 0;
    t->data = data;
    t->nbytes = nbytes;
}

int model_snapshot_take(const Model *m, const ModelConfig *optimizer, ModelSnapshot *s,
                        char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    int count = model_state_count(m);
    /* state tensors, global_step, beta1_power, beta2_power */
    s->tensors = calloc((size_t)count + 3, sizeof *s->tensors);
    s->buffers = calloc((size_t)count + 1, sizeof *s->buffers);
    if (!s->tensors || !s->buffers) goto oom;
    for (int i = 0; i < count; i++) {
        const StateInfo *info = model_state_info(m, i);
        if (info->kind == STATE_OPT_SLOT && !optimizer) continue;
        float *buf = malloc(info->count * sizeof(float) + 1);
        if (!buf) goto oom;
        s->buffers[s->nbuffers++] = buf;
        TfTensor *t = &s->tensors[s->n++];
        t->name = info->name;
        t->dtype = TF_DT_FLOAT;
        t->rank = info->rank;
        for (int d = 0; d < info->rank; d++) t->shape[d] = info->shape[d];
        t->data = buf;
        t->nbytes = info->count * sizeof(float);
    }
    add_scalar(s, "global_step", TF_DT_INT64, &s->global_step, sizeof s->global_step);
    if (optimizer && optimizer->optimizer == OPT_ADAM)
        for (int k = 0; k < 2; k++)
            add_scalar(s, BETA_POWER_NAME[k], TF_DT_FLOAT, &s->beta_power[k], sizeof(float));
    return model_snapshot_refresh(m, optimizer, s, err, errlen);
oom:
    snprintf(err, errlen, "out of memory copying the model state");
    return -1;
}

int model_snapshot_refresh(const Model *m, const ModelConfig *optimizer, ModelSnapshot *s,
                           char *err, size_t errlen) {
    for (int i = 0, b = 0; i < model_state_count(m); i++) {
        const StateInfo *info = model_state_info(m, i);
        if (info->kind == STATE_OPT_SLOT && !optimizer) continue;
        if (model_state_get(m, i, s->buffers[b++]) != 0) {
            snprintf(err, errlen, "cannot read model state '%s'", info->name);
            return -1;
        }
    }
    s->global_step = model_step(m);
    if (optimizer && optimizer->optimizer == OPT_ADAM) {
        s->beta_power[0] = adam_beta_power(optimizer->beta1, s->global_step);
        s->beta_power[1] = adam_beta_power(optimizer->beta2, s->global_step);
    }
    return 0;
}

/* The number of steps a stored beta power stands for, log(power)/log(beta), against step+1 (see
 * model_state.h). Float products drift by far less than half a step's factor; a power that
 * underflowed (TF's repeated product reaches 0 or a denormal) matches any expected power that is
 * as small, where 1-power is 1 in float anyway. 0 consistent, -1 not (message in err). */
static int check_beta_power(BundleReader *r, const char *prefix, int k, float beta, int64_t step,
                            char *err, size_t errlen) {
    const char *name = BETA_POWER_NAME[k];
    const BundleEntry *e = bundle_find(r, name);
    if (!e) return 0;                          /* TF2 / Keras checkpoints have none */
    float found;
    if (e->rank != 0) {
        snprintf(err, errlen, "%s: tensor '%s' is not a scalar", prefix, name);
        return -1;
    }
    if (bundle_read_tensor(r, name, TF_DT_FLOAT, &found, sizeof found, err, errlen) != 0)
        return -1;
    if (!(beta > 0.0f && beta < 1.0f)) return 0;   /* a constant power says nothing of t */
    const double tiny = 1e-30, expected = adam_beta_power(beta, step);
    int ok;
    if (!(found >= 0.0f && found <= 1.0f))
        ok = 0;
    else if (found <= tiny || expected <= tiny)
        ok = found <= tiny && expected <= tiny;
    else
        ok = fabs(log(found) / log(beta) - ((double)step + 1.0)) < 0.5;
    if (!ok) {
        snprintf(err, errlen, "%s: %s = %.9g is not beta^(global_step+1) = %.9g^%.0f = %.9g: the "
                 "optimizer state does not belong to global_step %lld (another beta, or a "
                 "step counter not advanced by the optimizer)", prefix, name, (double)found,
                 (double)beta, (double)step + 1.0, expected, (long long)step);
        return -1;
    }
    return 0;
}

/* The Keras (v1) optimizers of the original job (model_to_estimator, tf-formats.md §7/§11) name
 * their slots by creation order: slot s of parameter p is "training/Variable_<s*P + p>" (P
 * parameters; the first is "training/Variable"). Adam makes m, then v, then amsgrad's vhat
 * ([1] each, unused), and keeps its own step count and settings beside them (<opt>/iterations,
 * beta_1, beta_2, decay). A job dir the original job wrote resumes from these names. */
#define KERAS_SLOTS "training/Variable"

/* The checkpoint's name of state i into name[cap]: its own (TF1 slots, as we write them), or
 * in a Keras checkpoint (one without the first slot's TF1 name but with KERAS_SLOTS) the
 * Keras slot name. */
static void checkpoint_name(const Model *m, const BundleReader *r, int i, char *name, size_t cap) {
    const StateInfo *info = model_state_info(m, i);
    snprintf(name, cap, "%s", info->name);
    if (info->kind != STATE_OPT_SLOT || bundle_find(r, name) || !bundle_find(r, KERAS_SLOTS))
        return;
    int params = 0;
    while (params < model_state_count(m) && model_state_info(m, params)->kind != STATE_OPT_SLOT)
        params++;
    const int slots = (model_state_count(m) - params) / params, k = i - params;
    const int index = (k % slots) * params + k / slots;
    if (index == 0)
        snprintf(name, cap, KERAS_SLOTS);
    else
        snprintf(name, cap, KERAS_SLOTS "_%d", index);
}

static void shape_text(const int64_t *shape, int rank, char *out, size_t cap) {
    size_t used = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < rank && used < cap; d++)
        used += (size_t)snprintf(out + used, cap - used, "%s%lld", d ? "," : "",
                                 (long long)shape[d]);
    if (used < cap) snprintf(out + used, cap - used, "]");
}

int model_state_shape_differs(const BundleEntry *e, const StateInfo *si, char *why, size_t cap) {
    int same = e->rank == si->rank;
    for (int d = 0; same && d < si->rank; d++) same = e->shape[d] == si->shape[d];
    if (same) return 0;
    char stored[160], ours[160];
    shape_text(e->shape, e->rank, stored, sizeof stored);
    shape_text(si->shape, si->rank, ours, sizeof ours);
    snprintf(why, cap, "%s there, %s in this model", stored, ours);
    return 1;
}

int model_checkpoint_check_names(const Model *m, const BundleReader *r, const char *prefix,
                                 char *err, size_t errlen) {
    for (int i = 0; i < model_state_count(m); i++) {
        const StateInfo *info = model_state_info(m, i);
        char name[256];
        checkpoint_name(m, r, i, name, sizeof name);
        const BundleEntry *e = bundle_find(r, name);
        if (!e) {
            snprintf(err, errlen, "%s: checkpoint has no tensor '%s' (a checkpoint of another "
                     "model or optimizer?)", prefix, name);
            return -1;
        }
        char why[400];
        if (model_state_shape_differs(e, info, why, sizeof why)) {
            snprintf(err, errlen, "%s: tensor '%s' has another shape than this model's %s: %s "
                     "(a checkpoint of another --model?)", prefix, name, info->name, why);
            return -1;
        }
    }
    return 0;
}

/* A Keras Adam's own state beside its slots: its step count must be global_step (our Adam's t
 * comes from it), its betas ours, and no learning-rate decay (ours has none). 0 ok, or no Keras
 * Adam state; -1 with err naming the tensor. */
static int check_keras_adam(BundleReader *r, const char *prefix, const ModelConfig *cfg,
                            int64_t step, char *err, size_t errlen) {
    if (!bundle_find(r, "Adam/iterations")) return 0;
    int64_t iterations;
    if (bundle_read_tensor(r, "Adam/iterations", TF_DT_INT64, &iterations, sizeof iterations,
                           err, errlen) != 0)
        return -1;
    if (iterations != step) {
        snprintf(err, errlen, "%s: Adam/iterations = %lld is not global_step = %lld: the "
                 "optimizer state does not belong to global_step", prefix,
                 (long long)iterations, (long long)step);
        return -1;
    }
    static const char *const names[3] = {"Adam/beta_1", "Adam/beta_2", "Adam/decay"};
    const float want[3] = {cfg->beta1, cfg->beta2, 0.0f};
    for (int k = 0; k < 3; k++) {
        float v;
        if (!bundle_find(r, names[k])) continue;
        if (bundle_read_tensor(r, names[k], TF_DT_FLOAT, &v, sizeof v, err, errlen) != 0)
            return -1;
        if (v != want[k]) {
            snprintf(err, errlen, "%s: %s = %.9g, not %.9g as this trainer's Adam%s", prefix,
                     names[k], (double)v, (double)want[k],
                     k == 2 ? " (no learning-rate decay)" : "");
            return -1;
        }
    }
    return 0;
}

int model_checkpoint_restore(Model *m, const ModelConfig *cfg, const char *prefix, char *err,
                             size_t errlen) {
    BundleReader *r = bundle_open(prefix, err, errlen);
    if (!r) return -1;
    int count = model_state_count(m), rc = model_checkpoint_check_names(m, r, prefix, err, errlen);
    float **bufs = calloc((size_t)count + 1, sizeof *bufs);
    int64_t step = 0;
    if (rc == 0 && !bufs) {
        snprintf(err, errlen, "out of memory restoring %s", prefix);
        rc = -1;
    }
    /* read everything first, so that a bad checkpoint leaves the model untouched */
    for (int i = 0; rc == 0 && i < count; i++) {
        const StateInfo *info = model_state_info(m, i);
        char name[256], why[512];
        checkpoint_name(m, r, i, name, sizeof name);
        bufs[i] = malloc(info->count * sizeof(float) + 1);
        if (!bufs[i] || bundle_read_tensor(r, name, TF_DT_FLOAT, bufs[i],
                                           info->count * sizeof(float), why, sizeof why) != 0) {
            snprintf(err, errlen, "%s", bufs[i] ? why : "out of memory");
            rc = -1;
        }
    }
    if (rc == 0 && bundle_read_tensor(r, "global_step", TF_DT_INT64, &step, sizeof step, err,
                                      errlen) != 0)
        rc = -1;
    if (rc == 0 && step < 0) {
        snprintf(err, errlen, "%s: global_step %lld is negative", prefix, (long long)step);
        rc = -1;
    }
    for (int k = 0; rc == 0 && cfg->optimizer == OPT_ADAM && k < 2; k++)
        rc = check_beta_power(r, prefix, k, k == 0 ? cfg->beta1 : cfg->beta2, step, err, errlen);
    if (rc == 0 && cfg->optimizer == OPT_ADAM)
        rc = check_keras_adam(r, prefix, cfg, step, err, errlen);
    for (int i = 0; rc == 0 && i < count; i++)
        if (model_state_set(m, i, bufs[i]) != 0) {
            snprintf(err, errlen, "cannot set model state '%s'", model_state_info(m, i)->name);
            rc = -1;
        }
    if (rc == 0) model_set_step(m, step);
    for (int i = 0; bufs && i < count; i++) free(bufs[i]);
    free(bufs);
    bundle_close(r);
    return rc;
}
