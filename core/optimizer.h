/* optimizer.h: Adam, SGD and momentum over the model's one flat parameter buffer.
 *
 * All parameters are contiguous (core/arena.h) and so are their gradients; each slot (Adam's m
 * and v, momentum's velocity) is one more flat buffer with the same offsets. An update is a
 * single backend call over every parameter. Adam reads its t from the step counter in backend
 * memory (t = step + 1), so a captured step replays correctly.
 *
 * Slot names (for checkpoints) follow TF1's tf.train optimizers, the naming an Estimator's
 * checkpoint of a tf.train optimizer has: "<var>/Adam" (m), "<var>/Adam_1" (v),
 * "<var>/Momentum" (velocity). Plain SGD has no slots.
 */
#ifndef CORE_OPTIMIZER_H
#define CORE_OPTIMIZER_H

#include "core/model.h"
#include "core/tape.h"

#define OPTIMIZER_MAX_SLOTS 2

typedef struct {
    OptimizerKind kind;
    float lr, beta1, beta2, eps, momentum;
    int n_slots;
    const char *slot_suffix[OPTIMIZER_MAX_SLOTS];
    Tensor *slot[OPTIMIZER_MAX_SLOTS]; /* flat [param floats], zero at creation */
} Optimizer;

/* Reserves the slot buffers in the tape's arena (call after every parameter is made, before
 * tape_commit). 0 ok, -1 when the tape is full. */
int optimizer_init(Optimizer *o, Tape *t, const ModelConfig *cfg);
/* params -= update(grads): one fused pass over the parameters the last tape_backward did not
 * update itself (tape.h, TapeAdam); reads the step counter (not incremented here). */
void optimizer_apply(const Optimizer *o, Tape *t);
/* Fills *adam for a training step's backward (tape.h, TapeAdam) where layers may update their
 * parameters there: Adam, on a backend with dense_backward_adam and one update pass. 1 when
 * filled, else 0. */
int optimizer_tape_adam(const Optimizer *o, const Tape *t, TapeAdam *adam);
/* The same update on floats [first, first + count) of the parameter buffer only (and the same
 * range of the gradients and slots): a layer's parameters as soon as their gradients are final
 * (tape_backward's ready callback), where the backend asks for it (optimizer_per_layer). */
void optimizer_apply_range(const Optimizer *o, Tape *t, size_t first, size_t count);

#endif /* CORE_OPTIMIZER_H */
