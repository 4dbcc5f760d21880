/* tape.h: the reverse-mode autograd tape.
 *
 * The network is static, so the tape is built once when the model is created: each op call
 * (core/ops.h) records an entry (op, inputs, output, saved tensors, shapes) and reserves the
 * memory of its output in the arena. tape_commit() plans the backward pass and allocates
 * everything in one go. Each step then replays the records: tape_forward() in order,
 * tape_backward() in reverse. No allocation happens after commit.
 *
 * Gradients: every op's backward writes the gradient of each input that requires one. When a
 * tensor has several consumers, the first one in the reverse sweep writes its gradient buffer
 * and the others write a scratch buffer that is then added in (planned at commit).
 * The reverse sweep starts at the last differentiable op: a loss op (softmax_xent) seeds
 * dL/dloss = 1 itself; otherwise the caller fills the last output's grad before tape_backward().
 * Fusion: conv2d and dense may carry their layer's ReLU (op->relu). Its backward masks the
 * output gradient (dy = 0 where y <= 0) before the layer's own backward, unless the only consumer
 * of y can apply that mask inside its own backward on this backend (max-pool, dropout, dropout
 * fused with the next dense layer): then
 * the consumer does it and no separate pass happens. Likewise the loss op computes its gradient
 * in the forward pass of a training step when the backend has a fused softmax_xent. A conv with
 * its ReLU feeding only a max pool may take its filter gradient from the pool's winners
 * (op->pool_after), where the backend says it is faster.
 * Ops recorded while gradients are disabled (tape_set_grad_enabled) are forward-only heads
 * (predictions, accuracy) and take no part in the backward pass.
 */
#ifndef CORE_TAPE_H
#define CORE_TAPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/backend.h"
#include "core/tensor.h"

#define TAPE_MAX_TENSORS 256
#define TAPE_MAX_OPS 128
#define TAPE_MAX_INPUTS 3

typedef struct Tape Tape;
typedef struct TapeOp TapeOp;

typedef struct {
    const char *name;
    void (*forward)(Tape *t, TapeOp *op);
    /* Writes the gradient of in[i] to op->dx[i] for each i with dx[i] != NULL. NULL: the op
     * has no gradient (argmax/accuracy). */
    void (*backward)(Tape *t, TapeOp *op);
    /* Optional: 1 when, on this backend, the op can apply the backward of a ReLU that produced
     * its input in[0] (zero its dx where in[0] <= 0) inside its own backward. */
    int (*can_mask_input_relu)(const Backend *be);
} OpDef;

struct TapeOp {
    const OpDef *def;
    int n_in;
    Tensor *in[TAPE_MAX_INPUTS];
    Tensor *out;
    Tensor *saved[2];            /* what backward needs beyond in/out (argmax, mask, probs) */
    int differentiable;          /* recorded with gradients enabled and an input needing one */
    float *dx[TAPE_MAX_INPUTS];  /* set at commit: where backward writes d(in[i]), or NULL */
    int accumulate[TAPE_MAX_INPUTS]; /* dx[i] is the scratch buffer: add it to in[i]'s grad */
    /* ReLU fusion (planned at commit, see tape_commit): */
    int relu;                    /* conv2d/dense: the output is max(., 0), the layer's ReLU fused */
    int relu_grad_masked;        /* relu op: the consumer of out applies the ReLU mask itself */
    int mask_input_relu;         /* consumer: apply the ReLU mask of in[0] in this backward */
    int loss_grad_ready;         /* softmax_xent: the last forward also wrote dx[0] (fused) */
    /* conv2d with its ReLU whose only consumer is this max-pool op, on a backend that takes the
     * filter gradient from the pool's winners (backend.h, conv2d_filter_grad_from_pool) */
    TapeOp *pool_after;
    /* conv2d with pool_after (or conv2d_relu_maxpool): its data gradient from the pool's winners
     * too (backend.h, conv2d_data_grad_from_pool), planned at commit (recorded for the fused op) */
    int data_from_pool;
    /* dense whose input is a max pool over a ReLU's output: its data gradient only where the
     * input is > 0 (backend.h, dense_backward_data_alive), planned at commit */
    int dx_alive;
    /* dense with such an input (mostly zeros once a model has trained a little): its forward and
     * filter gradient over the input's nonzeros (backend.h, dense_sparse_input_fits), planned at
     * commit */
    int sparse_input;
    /* max pool: its backward is not run, as nothing reads its input's gradient (its conv, with
     * pool_after set, is a first layer, whose input takes no gradient, or takes its data
     * gradient from the pool's winners: planned at commit) */
    int skip_backward;
    /* Parameters whose gradients are final once this op's backward has run (it is their last
     * gradient writer in the reverse sweep), as ranges of the parameter buffer in floats,
     * adjacent parameters merged (planned at commit): tape_backward reports them, so that the
     * optimizer may update them before the rest of the backward pass has run. */
    size_t ready_first[TAPE_MAX_INPUTS], ready_count[TAPE_MAX_INPUTS];
    int n_ready;
    union {
        Conv2dShape conv;
        Pool2dShape pool;
        struct { Conv2dShape conv; Pool2dShape pool; } conv_pool;
        struct { int in, out; } dense;
        struct { float rate; int index; } dropout;
        struct { float rate; int index; int in, out; } dropout_dense;
        struct { int classes; } softmax;
    } p;
};

/* Adam inside the backward (backend.h, dense_backward_adam): set by the trainer for a training
 * step's backward (NULL otherwise). An op that can update a parameter as it computes its
 * gradient does so, with m and v at the parameter's offset in these slot buffers, and records
 * the parameter's range in the tape's updated_* (then the optimizer pass leaves it out, and its
 * gradient buffer may be stale). */
typedef struct {
    float *m, *v;
    float lr, beta1, beta2, eps;
} TapeAdam;

struct Tape {
    Backend *be;
    Arena arena;
    Tensor tensors[TAPE_MAX_TENSORS];
    int n_tensors;
    TapeOp ops[TAPE_MAX_OPS];
    int n_ops;
    int batch;              /* the batch every batched tensor is sized for */
    int n;                  /* the batch of the current forward/backward, 1..batch */
    int training;           /* dropout on (1) or identity (0) */
    int grad_enabled;
    uint64_t seed;          /* dropout masks */
    int n_dropout;          /* dropout layers recorded so far (each gets its own stream) */
    int64_t *step;          /* backend memory: optimizer steps taken (see backend.h) */
    float *ws;              /* conv workspace, ws_floats floats */
    size_t ws_floats;
    Tensor *step_tensor;    /* int64 [1] holding *step */
    float *scratch[TAPE_MAX_INPUTS]; /* gradient accumulation scratch, one per input slot */
    size_t scratch_floats;
    int committed;
    const TapeAdam *adam;
    /* the parameter ranges (floats) the last tape_backward updated itself, ascending */
    size_t updated_first[TAPE_MAX_OPS], updated_count[TAPE_MAX_OPS];
    int n_updated;
};

void tape_init(Tape *t, Backend *be, int batch, uint64_t seed);
/* Releases the arena. */
void tape_free(Tape *t);

/* A new tensor whose memory is reserved in the arena (allocated at commit). batched: shape[0] is
 * the tape's batch (pass it in shape). NULL when the tape is full. */
Tensor *tape_tensor(Tape *t, DType dtype, int rank, const int *shape, int batched);
/* A trainable parameter: packed into the parameter region, its gradient into the gradient
 * region at the same offset. */
Tensor *tape_param(Tape *t, int rank, const int *shape);
/* A view of x with another shape (same count and memory). */
Tensor *tape_view(Tape *t, Tensor *x, int rank, const int *shape);
/* Records an op; out must have been made with tape_tensor. Marks out->requires_grad. NULL when the
 * tape is full. */
TapeOp *tape_record(Tape *t, const OpDef *def, Tensor *out, int n_in, Tensor **in);
void tape_set_grad_enabled(Tape *t, int enabled);
/* Reserves conv workspace of at least `floats` floats. */
void tape_need_workspace(Tape *t, size_t floats);

/* Plans the backward pass and allocates all memory. 0 ok, -1 out of memory (message in err). */
int tape_commit(Tape *t, char *err, size_t errlen);

/* Runs ops [first, last) forward at batch t->n. */
void tape_forward(Tape *t, int first, int last);
/* Called by tape_backward with each parameter range whose gradients have just become final
 * (TapeOp.ready_*): nothing issued later in the sweep reads those parameters or gradients. */
typedef void (*TapeParamsReady)(void *arg, Tape *t, size_t first, size_t count);
/* Runs the backward of every differentiable op, last to first, at batch t->n; calls ready (when
 * not NULL) after each op for the parameters it completed. */
void tape_backward(Tape *t, TapeParamsReady ready, void *arg);

/* Records that the running backward updated parameter floats [first, first + count) itself
 * (TapeAdam). */
void tape_mark_updated(Tape *t, size_t first, size_t count);

/* Offset (in floats) of a parameter in the parameter buffer, and the buffers themselves. */
size_t tape_param_offset(const Tape *t, const Tensor *param);
size_t tape_param_floats(const Tape *t);
float *tape_params(const Tape *t);
float *tape_grads(const Tape *t);

#endif /* CORE_TAPE_H */
