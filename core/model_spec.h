/* model_spec.h: the layer list of a sequential CNN, parsed from a spec string.
 *
 * Grammar: layers separated by commas, fields by colons (spaces ignored):
 *   conv:FILTERS:KERNEL[:same|valid[:STRIDE]]   Conv2D, KERNEL x KERNEL, bias (default same, 1)
 *   maxpool:SIZE[:STRIDE[:same|valid]]          MaxPool2D (default stride = size, valid)
 *   dense:UNITS                                 Dense with bias (needs a rank-2 input)
 *   relu | flatten | dropout:RATE (0 <= RATE < 1)
 * The input is [N,28,28,1] raw 0..255 pixels and the last layer must give [N,10] logits
 * (the softmax is applied by the loss and by predictions).
 * The default is the original job's Keras model, exactly (MODEL_SPEC_DEFAULT).
 */
#ifndef CORE_MODEL_SPEC_H
#define CORE_MODEL_SPEC_H

#include <stddef.h>

#define MODEL_SPEC_DEFAULT \
    "conv:32:5:same,relu,maxpool:2,conv:64:5:same,relu,maxpool:2,flatten,dense:1024,relu," \
    "dropout:0.4,dense:10"
#define MODEL_SPEC_MAX_LAYERS 64

typedef enum {
    LAYER_CONV = 0,
    LAYER_MAXPOOL,
    LAYER_DENSE,
    LAYER_RELU,
    LAYER_FLATTEN,
    LAYER_DROPOUT
} LayerKind;

typedef struct {
    LayerKind kind;
    int units;      /* conv filters, dense units */
    int size;       /* conv kernel / pool window */
    int stride;
    int same;       /* padding: 1 SAME, 0 VALID */
    float rate;     /* dropout */
} LayerSpec;

typedef struct {
    int n;
    LayerSpec layers[MODEL_SPEC_MAX_LAYERS];
} ModelSpec;

/* NULL or "" gives the default. 0 ok, -1 with a message naming the bad layer in err. Only the
 * syntax and values are checked here; shapes are checked when the model is built. */
int model_spec_parse(const char *spec, ModelSpec *out, char *err, size_t errlen);

#endif /* CORE_MODEL_SPEC_H */
