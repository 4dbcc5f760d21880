/* model_graph.c: model spec <-> SavedModel layer list (see model_graph.h). */
#include "cli/model_graph.h"

#include <stdio.h>
#include <string.h>

/* Keras-style unique name: base, base_1, base_2, ... counted per kind. */
static void keras_name(char *out, size_t cap, const char *base, int *counter) {
    if (*counter == 0) snprintf(out, cap, "%s", base);
    else snprintf(out, cap, "%s_%d", base, *counter);
    (*counter)++;
}

int model_graph_from_spec(const char *spec, SmModel *out, SmLayer *layers, char *err,
                          size_t errlen) {
    ModelSpec ms;
    if (model_spec_parse(spec, &ms, err, errlen) != 0) return -1;
    int n = 0, n_conv = 0, n_pool = 0, n_flat = 0, n_dense = 0, n_drop = 0;
    for (int i = 0; i < ms.n; i++) {
        const LayerSpec *s = &ms.layers[i];
        SmLayer *l = &layers[n];
        memset(l, 0, sizeof *l);
        switch (s->kind) {
        case LAYER_CONV:
            l->kind = SM_LAYER_CONV2D;
            keras_name(l->name, sizeof l->name, "conv2d", &n_conv);
            l->units = s->units;
            l->kernel_h = l->kernel_w = s->size;
            l->stride = s->stride;
            l->same_padding = s->same;
            break;
        case LAYER_MAXPOOL:
            l->kind = SM_LAYER_MAX_POOL;
            keras_name(l->name, sizeof l->name, "max_pooling2d", &n_pool);
            l->kernel_h = l->kernel_w = s->size;
            l->stride = s->stride;
            l->same_padding = s->same;
            break;
        case LAYER_FLATTEN:
            l->kind = SM_LAYER_FLATTEN;
            keras_name(l->name, sizeof l->name, "flatten", &n_flat);
            break;
        case LAYER_DENSE:
            l->kind = SM_LAYER_DENSE;
            keras_name(l->name, sizeof l->name, "dense", &n_dense);
            l->units = s->units;
            break;
        case LAYER_DROPOUT:
            l->kind = SM_LAYER_DROPOUT;
            keras_name(l->name, sizeof l->name, "dropout", &n_drop);
            l->rate = s->rate;
            break;
        case LAYER_RELU: {
            SmLayer *prev = n > 0 ? &layers[n - 1] : NULL;
            if (!prev || (prev->kind != SM_LAYER_CONV2D && prev->kind != SM_LAYER_DENSE) ||
                prev->activation != SM_ACT_NONE) {
                snprintf(err, errlen, "export: relu (layer %d of the model spec) must follow a "
                         "conv or dense layer", i + 1);
                return -1;
            }
            prev->activation = SM_ACT_RELU;
            continue;
        }
        }
        n++;
    }
    if (n == 0 || layers[n - 1].kind != SM_LAYER_DENSE || layers[n - 1].activation != SM_ACT_NONE) {
        snprintf(err, errlen, "export: the model must end with a dense layer giving the logits");
        return -1;
    }
    layers[n - 1].activation = SM_ACT_SOFTMAX;
    out->input_key = "image_input";
    out->height = 28;
    out->width = 28;
    out->channels = 1;
    out->layers = layers;
    out->num_layers = n;
    return sm_model_check(out, NULL, err, errlen);
}

static int append(char *spec, size_t cap, size_t *len, const char *text) {
    int w = snprintf(spec + *len, cap - *len, "%s%s", *len ? "," : "", text);
    if (w < 0 || (size_t)w >= cap - *len) return -1;
    *len += (size_t)w;
    return 0;
}

int model_graph_to_spec(const SmModel *m, char *spec, size_t cap, char *err, size_t errlen) {
    size_t len = 0;
    spec[0] = 0;
    for (int i = 0; i < m->num_layers; i++) {
        const SmLayer *l = &m->layers[i];
        char t[128];
        if ((l->kind == SM_LAYER_CONV2D || l->kind == SM_LAYER_MAX_POOL) &&
            l->kernel_h != l->kernel_w) {
            snprintf(err, errlen, "layer '%s': a %dx%d window is not supported by the engine",
                     l->name, l->kernel_h, l->kernel_w);
            return -1;
        }
        switch (l->kind) {
        case SM_LAYER_CONV2D:
            snprintf(t, sizeof t, "conv:%d:%d:%s:%d", l->units, l->kernel_h,
                     l->same_padding ? "same" : "valid", l->stride);
            break;
        case SM_LAYER_MAX_POOL:
            snprintf(t, sizeof t, "maxpool:%d:%d:%s", l->kernel_h, l->stride,
                     l->same_padding ? "same" : "valid");
            break;
        case SM_LAYER_FLATTEN: snprintf(t, sizeof t, "flatten"); break;
        case SM_LAYER_DENSE: snprintf(t, sizeof t, "dense:%d", l->units); break;
        case SM_LAYER_DROPOUT:
            snprintf(t, sizeof t, "dropout:%g", l->rate >= 0 && l->rate < 1 ? l->rate : 0.0);
            break;
        default:
            snprintf(err, errlen, "layer %d: unknown kind", i);
            return -1;
        }
        if (append(spec, cap, &len, t) ||
            (l->activation == SM_ACT_RELU && append(spec, cap, &len, "relu"))) {
            snprintf(err, errlen, "model spec longer than %zu characters", cap);
            return -1;
        }
        if (l->activation == SM_ACT_SOFTMAX && i != m->num_layers - 1) {
            snprintf(err, errlen, "layer '%s': softmax before the last layer", l->name);
            return -1;
        }
    }
    const SmLayer *last = m->num_layers ? &m->layers[m->num_layers - 1] : NULL;
    if (!last || last->kind != SM_LAYER_DENSE || last->activation != SM_ACT_SOFTMAX) {
        snprintf(err, errlen, "the exported model does not end in dense + softmax");
        return -1;
    }
    return 0;
}
