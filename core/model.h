/* model.h: the public face of core/ that the programs in cli/ use.
 *
 * A Model is a sequential CNN (a layer list; the original MNIST CNN by default) with its
 * parameters, gradients and optimizer state, on one device. Its forward/backward come from the
 * autograd tape in core/ (tape.h); this header only exposes what a trainer, a checkpoint writer,
 * an exporter and a predictor need.
 *
 * Data layout at this boundary: images float [N,28,28,1] NHWC holding raw 0..255 pixel values
 * (what the original model fed, and what its export takes); labels int32 [N] in 0..9.
 * Parameters are exchanged as host float buffers in TF layout (conv HWIO, dense [in,out]).
 *
 * Threads: one model at a time per process computes on a GPU. The CUDA backend's default loss
 * (softmax + cross-entropy version 3) hands its per-block partials over through one static
 * buffer per device, so two CUDA models computing losses at the same time would mix them
 * (kernels/kernels_cuda.h); the programs build one model each.
 */
#ifndef CORE_MODEL_H
#define CORE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1, DEVICE_CUDNN = 2 } Device;

/* "cpu", "cuda", "cudnn"; "auto" gives cuda when a GPU is present, else cpu. 0 ok, -1 unknown. */
int device_parse(const char *name, Device *out);
const char *device_name(Device d);
/* 1 when this build has CUDA and a GPU is present. */
int device_cuda_available(void);

typedef enum { OPT_ADAM = 0, OPT_SGD = 1, OPT_MOMENTUM = 2 } OptimizerKind;

typedef struct {
    const char *spec;      /* layer list (see model_spec.h); NULL or "" = the original CNN */
    int batch;             /* the largest batch a step or a forward pass will be given */
    Device device;
    uint64_t seed;         /* initialisation and dropout */
    OptimizerKind optimizer;
    float learning_rate;   /* default 0.001 */
    float beta1, beta2, epsilon; /* Adam: 0.9, 0.999, 1e-7 (Keras) */
    float momentum;        /* momentum optimizer */
    int threads;           /* CPU threads, <= 0: all cores */
} ModelConfig;

/* Defaults: original CNN, batch 100, CPU, seed 0, Adam(0.001, 0.9, 0.999, 1e-7). */
void model_config_default(ModelConfig *cfg);

typedef struct Model Model;

/* Builds the model and initialises it (Glorot-uniform kernels, zero biases, from cfg->seed).
 * NULL on error with a message in err. */
Model *model_create(const ModelConfig *cfg, char *err, size_t errlen);
void model_free(Model *m);

/* ---- named state, for checkpoints and exports ---------------------------------------------- */
typedef enum { STATE_PARAM = 0, STATE_OPT_SLOT = 1 } StateKind;

typedef struct {
    const char *name;      /* TF variable name: "conv2d/kernel", "dense_1/bias", ... */
    StateKind kind;
    int rank;
    int64_t shape[4];
    size_t count;          /* number of floats */
} StateInfo;

/* Trainable parameters first (in layer order), then optimizer slots. */
int model_state_count(const Model *m);
const StateInfo *model_state_info(const Model *m, int i);
/* Copy a state tensor to/from host memory (count floats). 0 ok, -1 error. */
int model_state_get(const Model *m, int i, float *host);
int model_state_set(Model *m, int i, const float *host);
/* Number of optimizer steps taken (Adam's t); restored from checkpoints with global_step. */
int64_t model_step(const Model *m);
void model_set_step(Model *m, int64_t step);

/* ---- compute ------------------------------------------------------------------------------- */
/* One training step on a batch of n <= cfg.batch examples (dropout on, mask stream from the
 * step counter): forward, loss, backward, optimizer update, step += 1. images/labels are host
 * buffers. The loss of this step is written to *loss when loss != NULL (on the GPU this waits
 * for the step: pass NULL on steps that do not log). 0 ok, -1 error (message in err). */
int model_train_step(Model *m, const float *images, const int32_t *labels, int n, float *loss,
                     char *err, size_t errlen);

/* ---- training from a resident data set ---------------------------------------------------- *
 * The data set is handed over once (uploaded once to the GPU) and batches are drawn where the
 * model computes: no host round trip inside a step.
 * Order: the infinite stream of examples is epoch 0's permutation, then epoch 1's, ...; epoch e's
 * permutation is a Fisher-Yates shuffle driven by philox(shuffle_seed, PHILOX_STREAM_SHUFFLE + e)
 * (shuffle_seed 0 and shuffle off: the file order). Step s (0-based, = model_step()) takes
 * stream examples [s*B, s*B+B): batches cross epoch boundaries like shuffle->repeat->batch.
 * So the order depends only on (seed, step), and a resumed run sees the same batches. */
int model_set_train_data(Model *m, const uint8_t *pixels /* [n,28,28,1] */, const int32_t *labels,
                         int n, int shuffle, uint64_t shuffle_seed, char *err, size_t errlen);
/* Runs `steps` training steps at the configured batch size. *last_loss (when not NULL) gets the
 * loss of the last step: the only device-to-host copy. */
int model_train_steps(Model *m, int steps, float *last_loss, char *err, size_t errlen);

/* Inference (dropout off): probs [n,10] softmax probabilities; n may exceed cfg.batch (done in
 * chunks). */
int model_predict(Model *m, const float *images, int n, float *probs, char *err, size_t errlen);

/* Evaluation over a whole set in chunks: mean loss and accuracy, as the Estimator's eval. */
int model_evaluate(Model *m, const uint8_t *pixels /* [n,28,28,1] */, const int32_t *labels, int n,
                   double *loss, double *accuracy, char *err, size_t errlen);

/* ---- introspection, for tests and tools (e.g. the Keras parity test) --------------------- */
/* Forward and backward on a batch (dropout on, mask of the current step), without the optimizer
 * update and without advancing the step. *loss and logits [n,10] are written when not NULL;
 * the gradients become readable with model_gradient_get. 0 ok, -1 error. */
int model_compute_gradients(Model *m, const float *images, const int32_t *labels, int n,
                            float *loss, float *logits, char *err, size_t errlen);
/* Number of trainable parameters (the first model_param_count() state entries). */
int model_param_count(const Model *m);
/* The gradient of parameter i from the last model_compute_gradients or training step (count
 * floats, as model_state_info(m, i)); after a training step, not for a dense kernel whose Adam
 * update the backend made inside the layer's backward (docs/core.md: its buffer is stale).
 * 0 ok, -1 error. */
int model_gradient_get(const Model *m, int i, float *host);

#ifdef __cplusplus
}
#endif
#endif /* CORE_MODEL_H */
