/* optimizer.c: one fused update over all parameters, or over a layer's (optimizer.h). */
#include "core/optimizer.h"

#include <string.h>

int optimizer_init(Optimizer *o, Tape *t, const ModelConfig *cfg) {
    memset(o, 0, sizeof *o);
    o->kind = cfg->optimizer;
    o->lr = cfg->learning_rate;
    o->beta1 = cfg->beta1;
    o->beta2 = cfg->beta2;
    o->eps = cfg->epsilon;
    o->momentum = cfg->momentum;
    switch (o->kind) {
    case OPT_ADAM:
        o->n_slots = 2;
        o->slot_suffix[0] = "Adam";
        o->slot_suffix[1] = "Adam_1";
        break;
    case OPT_MOMENTUM:
        o->n_slots = 1;
        o->slot_suffix[0] = "Momentum";
        break;
    case OPT_SGD:
        o->n_slots = 0;
        break;
    }
    int floats = (int)tape_param_floats(t);
    for (int i = 0; i < o->n_slots; i++) {
        o->slot[i] = tape_tensor(t, DT_F32, 1, &floats, 0);
        if (!o->slot[i]) return -1;
    }
    return 0;
}

void optimizer_apply_range(const Optimizer *o, Tape *t, size_t first, size_t n) {
    Backend *be = t->be;
    float *w = tape_params(t) + first;
    const float *g = tape_grads(t) + first;
    switch (o->kind) {
    case OPT_ADAM:
        be->adam_update(be, n, w, g, tensor_f32(o->slot[0]) + first,
                        tensor_f32(o->slot[1]) + first, o->lr, o->beta1, o->beta2, o->eps,
                        t->step);
        break;
    case OPT_MOMENTUM:
        be->momentum_update(be, n, w, g, tensor_f32(o->slot[0]) + first, o->lr, o->momentum, 0);
        break;
    case OPT_SGD:
        be->sgd_update(be, n, w, g, o->lr);
        break;
    }
}

void optimizer_apply(const Optimizer *o, Tape *t) {
    size_t at = 0; /* the ranges the backward updated itself (tape.h, TapeAdam) left out */
    for (int k = 0; k < t->n_updated; k++) {
        if (t->updated_first[k] > at) optimizer_apply_range(o, t, at, t->updated_first[k] - at);
        at = t->updated_first[k] + t->updated_count[k];
    }
    const size_t total = tape_param_floats(t);
    if (total > at) optimizer_apply_range(o, t, at, total - at);
}

int optimizer_tape_adam(const Optimizer *o, const Tape *t, TapeAdam *adam) {
    if (o->kind != OPT_ADAM || !t->be->dense_backward_adam || t->be->optimizer_per_layer)
        return 0;
    adam->m = tensor_f32(o->slot[0]);
    adam->v = tensor_f32(o->slot[1]);
    adam->lr = o->lr;
    adam->beta1 = o->beta1;
    adam->beta2 = o->beta2;
    adam->eps = o->eps;
    return 1;
}
