/* model_state.c: a Model's state <-> checkpoints (see model_state.h). */
#include "cli/model_state.h"

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

int model_snapshot_take(const Model *m, int with_slots, ModelSnapshot *s, char *err,
                        size_t errlen) {
    memset(s, 0, sizeof *s);
    int count = model_state_count(m);
    s->tensors = calloc((size_t)count + 1, sizeof *s->tensors);
    s->buffers = calloc((size_t)count + 1, sizeof *s->buffers);
    if (!s->tensors || !s->buffers) goto oom;
    for (int i = 0; i < count; i++) {
        const StateInfo *info = model_state_info(m, i);
        if (info->kind == STATE_OPT_SLOT && !with_slots) continue;
        float *buf = malloc(info->count * sizeof(float) + 1);
        if (!buf) goto oom;
        s->buffers[s->nbuffers++] = buf;
        if (model_state_get(m, i, buf) != 0) {
            snprintf(err, errlen, "cannot read model state '%s'", info->name);
            return -1;
        }
        TfTensor *t = &s->tensors[s->n++];
        t->name = info->name;
        t->dtype = TF_DT_FLOAT;
        t->rank = info->rank;
        for (int d = 0; d < info->rank; d++) t->shape[d] = info->shape[d];
        t->data = buf;
        t->nbytes = info->count * sizeof(float);
    }
    s->global_step = model_step(m);
    TfTensor *gs = &s->tensors[s->n++];
    gs->name = "global_step";
    gs->dtype = TF_DT_INT64;
    gs->rank = 0;
    gs->data = &s->global_step;
    gs->nbytes = sizeof s->global_step;
    return 0;
oom:
    snprintf(err, errlen, "out of memory copying the model state");
    return -1;
}

int model_checkpoint_save(const Model *m, const char *dir, int keep_max, char *prefix_out,
                          size_t prefix_cap, char *err, size_t errlen) {
    ModelSnapshot s;
    int rc = model_snapshot_take(m, 1, &s, err, errlen);
    if (rc == 0)
        rc = checkpoint_save(dir, s.global_step, s.tensors, s.n, keep_max, prefix_out, prefix_cap,
                             err, errlen);
    model_snapshot_free(&s);
    return rc;
}

int model_checkpoint_restore(Model *m, const char *prefix, char *err, size_t errlen) {
    BundleReader *r = bundle_open(prefix, err, errlen);
    if (!r) return -1;
    int count = model_state_count(m), rc = 0;
    float **bufs = calloc((size_t)count + 1, sizeof *bufs);
    int64_t step = 0;
    if (!bufs) {
        snprintf(err, errlen, "out of memory restoring %s", prefix);
        rc = -1;
    }
    /* read everything first, so that a bad checkpoint leaves the model untouched */
    for (int i = 0; rc == 0 && i < count; i++) {
        const StateInfo *info = model_state_info(m, i);
        const BundleEntry *e = bundle_find(r, info->name);
        char why[512];
        if (!e) {
            snprintf(err, errlen, "%s: checkpoint has no tensor '%s' (a checkpoint of another "
                     "model or optimizer?)", prefix, info->name);
            rc = -1;
            break;
        }
        int same_shape = e->rank == info->rank;
        for (int d = 0; same_shape && d < info->rank; d++)
            same_shape = e->shape[d] == info->shape[d];
        if (!same_shape) {
            snprintf(err, errlen, "%s: tensor '%s' has another shape than this model's",
                     prefix, info->name);
            rc = -1;
            break;
        }
        bufs[i] = malloc(info->count * sizeof(float) + 1);
        if (!bufs[i] || bundle_read_tensor(r, info->name, TF_DT_FLOAT, bufs[i],
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
