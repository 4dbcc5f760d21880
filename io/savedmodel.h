/* savedmodel.h: TensorFlow SavedModel export of a sequential CNN, and a reader for `predict`.
 *
 * What is written (tf-formats.md §4.5, variant (b), with the original Estimator export's names):
 *   <export_dir>/saved_model.pb                     SavedModel{schema 1, one MetaGraphDef}
 *   <export_dir>/variables/variables.index          tensor bundle of the weights
 *   <export_dir>/variables/variables.data-00000-of-00001
 * MetaGraphDef: tags {"serve"}; tensorflow_version "1.12.0"; GraphDef producer 27 with only TF 1.12
 * ops and attrs; one resource variable (VarHandleOp "<layer>/kernel", "<layer>/bias", optional
 * "global_step") per tensor, restored by a SaverDef V2 (save/Const:0, save/control_dependency:0,
 * save/restore_all); collections `variables` / `trainable_variables` for the Python loaders;
 * signature "serving_default" = tensorflow/serving/predict with
 *   input  <input_key>  -> "Placeholder:0"  float [-1,H,W,C]   (raw 0..255 pixels for MNIST)
 *   output <last layer's name> -> "<last layer>/Softmax:0" float [-1,units].
 * For the original CNN that is exactly the fixture's signature: image_input -> dense_1 [-1,10].
 *
 * Graph per layer (NHWC activations, HWIO conv kernels, [in,out] dense kernels):
 *   conv2d:   <n>/Conv2D(x, <n>/kernel/Read/ReadVariableOp) -> <n>/BiasAdd -> <n>/Relu
 *   max_pool: <n>/MaxPool            flatten: <n>/Reshape(x, <n>/Reshape/shape = [-1, h*w*c])
 *   dropout:  <n>/Identity (inference)
 *   dense:    <n>/MatMul -> <n>/BiasAdd -> <n>/Relu | <n>/Softmax
 */
#ifndef IO_SAVEDMODEL_H
#define IO_SAVEDMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "io/pb_wire.h"
#include "io/tf_tensor.h"

typedef enum {
    SM_LAYER_CONV2D = 0,
    SM_LAYER_MAX_POOL = 1,
    SM_LAYER_FLATTEN = 2,
    SM_LAYER_DENSE = 3,
    SM_LAYER_DROPOUT = 4,
} SmLayerKind;

typedef enum { SM_ACT_NONE = 0, SM_ACT_RELU = 1, SM_ACT_SOFTMAX = 2 } SmActivation;

#define SM_NAME_MAX 64

/* One layer, as plain data (no dependency on core/). */
typedef struct {
    SmLayerKind kind;
    char name[SM_NAME_MAX];   /* TF scope, Keras style: "conv2d", "max_pooling2d", "flatten",
                                 "dropout", "dense_1"; variables are "<name>/kernel", "<name>/bias" */
    int units;                /* conv2d: filters; dense: units */
    int kernel_h, kernel_w;   /* conv2d kernel, max_pool window */
    int stride;               /* conv2d / max_pool stride (same in h and w) */
    int same_padding;         /* conv2d / max_pool: 1 SAME, 0 VALID */
    SmActivation activation;  /* conv2d / dense; the last layer must be softmax */
    float rate;               /* dropout rate (informational: identity at inference) */
} SmLayer;

typedef struct {
    const char *input_key;    /* signature input name: "image_input" */
    int height, width, channels;       /* per-example input shape: 28, 28, 1 */
    const SmLayer *layers;
    int num_layers;
} SmModel;

/* Fills out with the original MNIST CNN of the Estimator job (input "image_input" 28x28x1;
 * conv2d, max_pooling2d, conv2d_1, max_pooling2d_1, flatten, dense, dropout, dense_1).
 * layers must hold 8 entries. */
void sm_model_original_cnn(SmModel *out, SmLayer layers[8]);

/* Shape of each layer's output (batch dim left out), checking the model: 0 ok, -1 error.
 * out_shape[i] = {h, w, c} for 4-D outputs, {units, 0, 0} after flatten/dense; may be NULL. */
int sm_model_check(const SmModel *m, int (*out_shape)[3], char *err, size_t errlen);

/* The saved_model.pb bytes for model m whose variables are vars (each "<layer>/kernel" and
 * "<layer>/bias" of the conv2d and dense layers with the shapes the layers imply, plus optionally
 * "global_step" int64 scalar; nothing else). Appended to out. 0 ok, -1 error. */
int savedmodel_encode(const SmModel *m, const TfTensor *vars, int nvars, PbBuf *out, char *err,
                      size_t errlen);

/* Just the MetaGraphDef (the one meta graph of saved_model.pb), appended to out: what
 * model.ckpt-N.meta holds (checkpoint_write_meta) and what TensorBoard's graph tab shows
 * (event_writer_add_meta_graph). 0 ok, -1 error. */
int savedmodel_encode_meta_graph(const SmModel *m, const TfTensor *vars, int nvars, PbBuf *out,
                                 char *err, size_t errlen);

/* The serving signature as JSON (signature name, method, each input and output with its dtype,
 * shape and graph tensor, and how an instance looks) into buf: what the export's
 * assets.extra/signature.json holds for people writing requests. Returns its length, -1 with err
 * (a bad model, or cap too small). */
int savedmodel_signature_json(const SmModel *m, char *buf, size_t cap, char *err, size_t errlen);

/* Writes a complete SavedModel at export_dir, which must not exist: everything is written into
 * "<parent>/temp-<basename>" (removed first if a crash left one) and renamed at the end.
 * 0 ok, -1 error. */
int savedmodel_write(const char *export_dir, const SmModel *m, const TfTensor *vars, int nvars,
                     char *err, size_t errlen);

/* Writes a SavedModel at export_dir itself, as Vertex AI's AIP_MODEL_DIR wants it
 * (saved_model.pb at its top). export_dir may be missing, empty, or hold an earlier SavedModel
 * (savedmodel_dir_replaceable). The new tree is written beside it under a name of this process's
 * own (".<name>.tmp-<pid>"); then the earlier directory is moved aside (".<name>.old-<pid>"),
 * the new one renamed into place, and the earlier one deleted. When the last rename fails the
 * earlier directory is moved back, so a failure leaves export_dir as it was. Nothing else beside
 * export_dir is touched. 0 ok, -1 error. */
int savedmodel_write_over(const char *export_dir, const SmModel *m, const TfTensor *vars,
                          int nvars, char *err, size_t errlen);

/* 0 when export_dir is missing, an empty directory, or holds nothing but a SavedModel's entries
 * (saved_model.pb, variables/, assets/, fingerprint.pb, ...), and is not a mount point (which
 * cannot be moved aside), so that savedmodel_write_over may replace it; -1 with err naming the
 * first other entry, the mount point, or why export_dir cannot be listed. */
int savedmodel_dir_replaceable(const char *export_dir, char *err, size_t errlen);

/* Estimator LatestExporter style: writes <export_base>/<unix seconds>/ (export_base created if
 * missing; a taken timestamp is retried after 1 s, up to 10 times), then deletes the oldest
 * version directories (names of exactly 10 digits) beyond keep (keep <= 0: keep all). The export
 * path goes to path_out. 0 ok, -1 error. */
int savedmodel_export_timestamped(const char *export_base, const SmModel *m, const TfTensor *vars,
                                  int nvars, int keep, char *path_out, size_t path_cap, char *err,
                                  size_t errlen);

/* ---- reader ------------------------------------------------------------------------------ */

typedef struct {
    char name[128];           /* graph node name, e.g. "conv2d/kernel" (= checkpoint key) */
    TfDataType dtype;
    int rank;
    int64_t shape[TF_MAX_RANK];
} SmVariable;

typedef struct {
    /* signature "serving_default" */
    char method[64];                        /* "tensorflow/serving/predict" */
    char input_key[SM_NAME_MAX], input_tensor[128];
    TfDataType input_dtype;
    int input_rank;
    int64_t input_shape[TF_MAX_RANK];       /* -1 = any size */
    char output_key[SM_NAME_MAX], output_tensor[128];
    TfDataType output_dtype;
    int output_rank;
    int64_t output_shape[TF_MAX_RANK];
    /* the network, recovered from the graph (the path from the input to the output) */
    SmModel model;                          /* model.layers points at layers */
    SmLayer *layers;
    SmVariable *variables;                  /* every VarHandleOp / VariableV2 node */
    int num_variables;
} SmInfo;

/* Reads <export_dir>/saved_model.pb: the "serve" meta graph, its serving_default signature, its
 * variables, and the layer list of the graph between input and output (Conv2D, BiasAdd, Relu,
 * MaxPool, Reshape/flatten, Identity/dropout, MatMul, Softmax; the weights resolved through
 * ReadVariableOp/Identity to their variables). Graphs we write and the Estimator's own exports
 * both read. 0 ok, -1 error naming what is missing or unsupported. Free with savedmodel_info_free. */
int savedmodel_read(const char *export_dir, SmInfo *info, char *err, size_t errlen);
/* The same, from saved_model.pb bytes in memory (what names the source in messages). */
int savedmodel_parse(const void *data, size_t n, const char *what, SmInfo *info, char *err,
                     size_t errlen);
void savedmodel_info_free(SmInfo *info);

#endif
