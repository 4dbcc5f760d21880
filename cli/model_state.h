/* model_state.h: a Model's named state <-> TensorFlow files (checkpoints, SavedModel exports).
 *
 * The bridge between core/model.h (named host float buffers in TF layout) and the io/ writers
 * (TfTensor lists). Checkpoint keys are the StateInfo names (the original job's variable names,
 * e.g. "conv2d/kernel", and the optimizer slots under the names core documents) plus
 * "global_step" (int64 scalar), so TF's Estimator and tf.train.load_checkpoint read them.
 */
#ifndef CLI_MODEL_STATE_H
#define CLI_MODEL_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "io/tf_tensor.h"

/* Host copies of a model's state as TfTensors: the parameters, optionally the optimizer slots,
 * then "global_step". */
typedef struct {
    TfTensor *tensors;
    int n;
    float **buffers;        /* one per state tensor */
    int nbuffers;
    int64_t global_step;    /* the "global_step" tensor's data */
} ModelSnapshot;

/* 0 ok, -1 error (message in err); free with model_snapshot_free either way. */
int model_snapshot_take(const Model *m, int with_slots, ModelSnapshot *s, char *err, size_t errlen);
void model_snapshot_free(ModelSnapshot *s);

/* Saves <dir>/model.ckpt-<step> (step = model_step) keeping keep_max (io/checkpoint.h). The
 * prefix written goes to prefix_out. 0 ok, -1 error. */
int model_checkpoint_save(const Model *m, const char *dir, int keep_max, char *prefix_out,
                          size_t prefix_cap, char *err, size_t errlen);

/* Restores every state tensor and the step from the checkpoint with this prefix, checking names,
 * dtypes and shapes (a checkpoint of another model is an error naming the tensor). Nothing is
 * changed in m unless everything was read. 0 ok, -1 error. */
int model_checkpoint_restore(Model *m, const char *prefix, char *err, size_t errlen);

#endif /* CLI_MODEL_STATE_H */
