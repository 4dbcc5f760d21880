/* model_state.h: a Model's named state <-> TensorFlow files (checkpoints, SavedModel exports).
 *
 * The bridge between core/model.h (named host float buffers in TF layout) and the io/ writers
 * (TfTensor lists). Checkpoint keys are the StateInfo names (the original job's variable names,
 * e.g. "conv2d/kernel", and the optimizer slots under the names core documents) plus
 * "global_step" (int64 scalar), so TF's Estimator and tf.train.load_checkpoint read them. With
 * Adam, also TF1 AdamOptimizer's non-slot accumulators "beta1_power" and "beta2_power" (float
 * scalars), so a tf.compat.v1.train.AdamOptimizer graph's Saver restores our checkpoints.
 */
#ifndef CLI_MODEL_STATE_H
#define CLI_MODEL_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "io/tensor_bundle.h"
#include "io/tf_tensor.h"

/* TF1 AdamOptimizer's beta1_power / beta2_power after `step` steps: the powers its next step
 * uses, beta^(step+1) (the variables start at beta and are multiplied by beta after each step;
 * our Adam takes t = step+1 likewise, kernels/optimizers.c). */
float adam_beta_power(float beta, int64_t step);

/* Host copies of a model's state as TfTensors: the parameters, optionally the optimizer state,
 * then "global_step". */
typedef struct {
    TfTensor *tensors;
    int n;
    float **buffers;        /* one per state tensor */
    int nbuffers;
    int64_t global_step;    /* the "global_step" tensor's data */
    float beta_power[2];    /* the "beta1_power", "beta2_power" tensors' data (Adam only) */
} ModelSnapshot;

/* optimizer NULL: the parameters and global_step (an export). Otherwise the model's config
 * (optimizer kind and betas): also the optimizer slots and, with Adam, beta1_power and
 * beta2_power (a checkpoint). 0 ok, -1 error (message in err); free with model_snapshot_free
 * either way. */
int model_snapshot_take(const Model *m, const ModelConfig *optimizer, ModelSnapshot *s, char *err,
                        size_t errlen);
/* Reads m's state again into a snapshot taken from m with the same optimizer argument (no
 * allocation: a checkpoint writer keeps one snapshot for every save). 0 ok, -1 error. */
int model_snapshot_refresh(const Model *m, const ModelConfig *optimizer, ModelSnapshot *s,
                           char *err, size_t errlen);
void model_snapshot_free(ModelSnapshot *s);

/* Restores every state tensor and the step from the checkpoint with this prefix, checking names,
 * dtypes and shapes (a checkpoint of another model is an error naming the tensor). With Adam,
 * beta1_power / beta2_power are optional (TF2 checkpoints have none) and, when present, must
 * agree with global_step: our Adam derives its t from the step, so a checkpoint whose powers
 * count other steps (another beta, or a global_step not advanced by the optimizer) would resume
 * with another bias correction; that is an error naming the tensor. Nothing is changed in m
 * unless everything was read. The original Keras job's checkpoints resume too: their optimizer
 * slots go by Keras's names ("training/Variable_N", by creation order), and a Keras Adam's
 * iterations, betas and decay must agree with global_step and this Adam. 0 ok, -1 error. */
int model_checkpoint_restore(Model *m, const ModelConfig *cfg, const char *prefix, char *err,
                             size_t errlen);
/* Whether a stored tensor's shape (e) differs from the model's (si); when it does, why gets
 * both, as "[5,5,1,4] there, [5,5,1,8] in this model". */
int model_state_shape_differs(const BundleEntry *e, const StateInfo *si, char *why, size_t cap);
/* The index part of the restore: r (of prefix) has every state tensor of m, under its name or
 * its Keras slot name, with m's shape. 0 ok, -1 with err naming the tensor and both shapes. */
int model_checkpoint_check_names(const Model *m, const BundleReader *r, const char *prefix,
                                 char *err, size_t errlen);

#endif /* CLI_MODEL_STATE_H */
