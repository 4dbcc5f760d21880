/* model_graph.h: a model spec (core/model_spec.h) <-> the layer list of a SavedModel
 * (io/savedmodel.h), so any sequential CNN the engine trains can be exported, and an export can
 * be rebuilt as an engine model (predict).
 *
 * Export naming follows Keras/the original job: conv2d, conv2d_1, ...; max_pooling2d, ...;
 * flatten; dense, dense_1, ...; dropout, ... (the same scopes core gives the variables). A relu
 * layer becomes the activation of the conv/dense before it; the last layer (dense) gets softmax.
 */
#ifndef CLI_MODEL_GRAPH_H
#define CLI_MODEL_GRAPH_H

#include <stddef.h>

#include "core/model_spec.h"
#include "io/savedmodel.h"

/* The export graph of spec (NULL/"" = the original CNN, exactly sm_model_original_cnn's layers).
 * layers must hold MODEL_SPEC_MAX_LAYERS entries. 0 ok, -1 when the spec cannot be expressed
 * (e.g. relu after a pooling layer), err naming the layer. */
int model_graph_from_spec(const char *spec, SmModel *out, SmLayer *layers, char *err,
                          size_t errlen);

/* The engine spec string of an exported layer list (its last layer must be dense + softmax;
 * the softmax is the engine's prediction output). 0 ok, -1 with err. */
int model_graph_to_spec(const SmModel *m, char *spec, size_t cap, char *err, size_t errlen);

#endif
