/* backend.h: the device interface every core/ op runs through.
 *
 * A Backend is a table of function pointers plus a private context. core/ never calls a kernel
 * or touches device memory except through it, so the same tape runs on the CPU
 * (core/backend_cpu.c, the kernels/ C files), on our CUDA kernels (core/backend_cuda.c) and on
 * cuDNN/cuBLAS (core/backend_cudnn.c).
 *
 * Memory: every pointer passed to a kernel entry is backend memory (from be->alloc); on the CPU
 * that is host memory, on CUDA device memory. Only upload/download cross the boundary.
 * Layouts are those of kernels/kernels.h: activations NHWC, conv kernels HWIO, dense [in,out],
 * all row-major. Entries that mirror kernels.h take the same arguments with `be` first and have
 * the same semantics (outputs overwritten, never accumulated into, unless stated).
 *
 * Ordering: entries behave as if issued in order on one queue. Kernel entries may run
 * asynchronously; download() and sync() wait for everything issued before them. One exception,
 * which core's tape allows for: the entries that write only parameter gradients
 * (conv2d_backward_filter, conv2d_relu_maxpool_backward_filter, and dense_backward's and
 * dropout_dense_backward's dw and db) may run beside the entries issued after them (the CUDA
 * backend puts them on a second stream); they still see everything issued before them, and the
 * backend waits for them before any entry that reads a gradient buffer (add_inplace, the
 * optimizers), any transfer (upload, download, copy, zero) and sync. It relies on what the tape
 * guarantees: every tensor and gradient has its own memory, so no entry in between overwrites
 * their inputs. With optimizer_per_layer the update entries may run there too: an update of a
 * layer is issued after every entry that reads that layer's parameters (the layer's own
 * backward), and step_increment() waits for them (the updates read the step).
 *
 * CUDA graph capture: a training step must enqueue exactly the same work every step, so values
 * that change from step to step are never by-value arguments. They live in backend memory and
 * the kernels read them there:
 *   - `step`: an int64 in backend memory, the number of optimizer steps taken so far (0 before
 *     the first step; = model_step()). During step s it holds s; the last entry of a step is
 *     step_increment(). Dropout, Adam and the batch gather read it.
 *   - the batch's example indices come from a resident permutation ring read with `step`.
 * By-value arguments (sizes, learning rate, betas, seed, rates) are constant for a given model.
 *
 * Errors: entries return nothing; a backend that hits a device error records it and returns it
 * from the next sync()/download() (non-zero), with a message from last_error().
 */
#ifndef CORE_BACKEND_H
#define CORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct Backend Backend;

struct Backend {
    const char *name;   /* "cpu", "cuda", "cudnn" */
    void *ctx;          /* the backend's private state (streams, handles, graphs) */

    /* ---- lifetime and memory ------------------------------------------------------------- */
    /* Frees the backend itself (ctx and the struct). Memory from alloc must be freed first. */
    void (*destroy)(Backend *be);
    /* `bytes` of backend memory, aligned to at least 256 bytes, contents undefined. NULL when out
     * of memory. Never called inside a training step (core allocates everything at model
     * creation). */
    void *(*alloc)(Backend *be, size_t bytes);
    void (*free)(Backend *be, void *p);
    /* host -> backend (dst backend memory). May return before the copy is done only if `src` may
     * be reused at once (CPU: memcpy; CUDA: a synchronous or staged copy). */
    void (*upload)(Backend *be, void *dst, const void *src, size_t bytes);
    /* backend -> host: waits for all work issued before it. 0 ok, non-zero on a device error. */
    int (*download)(Backend *be, void *dst, const void *src, size_t bytes);
    /* backend -> backend copy of `bytes` (no overlap). */
    void (*copy)(Backend *be, void *dst, const void *src, size_t bytes);
    /* Sets `bytes` bytes at p to zero. */
    void (*zero)(Backend *be, void *p, size_t bytes);
    /* Waits for all issued work. 0 ok, non-zero on a device error (message in last_error). */
    int (*sync)(Backend *be);
    /* The last device error as text ("" when none). */
    const char *(*last_error)(Backend *be);

    /* ---- kernels of kernels/kernels.h (same arguments and semantics, `be` first) ----------- */
    /* Workspace (floats) this backend's conv entries need for shape s; core allocates the max
     * over all conv layers once and passes it as `ws`. May be 0. */
    size_t (*conv2d_workspace_floats)(Backend *be, const Conv2dShape *s);
    void (*conv2d_forward)(Backend *be, const Conv2dShape *s, const float *x, const float *w,
                           const float *b, float *y, float *ws);
    void (*conv2d_backward_data)(Backend *be, const Conv2dShape *s, const float *dy,
                                 const float *w, float *dx, float *ws);
    /* db may be NULL. */
    void (*conv2d_backward_filter)(Backend *be, const Conv2dShape *s, const float *x,
                                   const float *dy, float *dw, float *db, float *ws);

    void (*maxpool2d_forward)(Backend *be, const Pool2dShape *s, const float *x, float *y,
                              int32_t *argmax);
    void (*maxpool2d_backward)(Backend *be, const Pool2dShape *s, const float *dy,
                               const int32_t *argmax, float *dx);

    /* b may be NULL. */
    void (*dense_forward)(Backend *be, int n, int in, int out, const float *x, const float *w,
                          const float *b, float *y);
    /* dx may be NULL (not needed); dw and db are written unless dw is NULL (dx only: only on a
     * backend with dense_backward_filter_sparse_input, which then makes them). */
    void (*dense_backward)(Backend *be, int n, int in, int out, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db);

    /* y may alias x; dx may alias dy. */
    void (*relu_forward)(Backend *be, size_t n, const float *x, float *y);
    void (*relu_backward)(Backend *be, size_t n, const float *y, const float *dy, float *dx);

    /* Inverted dropout, as dropout_forward in kernels.h with
     *   stream = stream_base + (uint64_t)(*step) * 16
     * read on the device (core passes stream_base = PHILOX_STREAM_DROPOUT + dropout layer index,
     * so the mask of step s is philox(seed, PHILOX_STREAM_DROPOUT + s*16 + layer, i)).
     * mask[i] = 1 if element i is kept, else 0. */
    void (*dropout_forward)(Backend *be, size_t n, float rate, uint64_t seed,
                            uint64_t stream_base, const int64_t *step, const float *x, float *y,
                            uint8_t *mask);
    void (*dropout_backward)(Backend *be, size_t n, float rate, const uint8_t *mask,
                             const float *dy, float *dx);

    void (*softmax_forward)(Backend *be, int n, int c, const float *logits, float *probs);
    /* dx = y * (dy - sum_c(dy * y)) per row: the gradient through softmax (y = probs). Used by
     * the standalone softmax op only (training uses the fused softmax_xent). */
    void (*softmax_backward)(Backend *be, int n, int c, const float *y, const float *dy,
                             float *dx);
    /* *loss (backend memory, one float) = mean over the n rows of the cross-entropy. */
    void (*softmax_xent_forward)(Backend *be, int n, int c, const float *logits,
                                 const int32_t *labels, float *probs, float *loss);
    /* dloss is a constant (core passes 1: the loss is the end of the tape). */
    void (*softmax_xent_backward)(Backend *be, int n, int c, const float *probs,
                                  const int32_t *labels, float dloss, float *dlogits);
    /* *correct (backend memory, one int32) = number of rows whose first argmax equals the label. */
    void (*argmax_correct)(Backend *be, int n, int c, const float *logits, const int32_t *labels,
                           int32_t *correct);

    /* Optimizers, one pass over a whole parameter buffer (all parameters are contiguous).
     * Adam's t is read on the device: t = *step + 1 (the 1-based number of this update). */
    void (*adam_update)(Backend *be, size_t n, float *w, const float *g, float *m, float *v,
                        float lr, float beta1, float beta2, float eps, const int64_t *step);
    void (*sgd_update)(Backend *be, size_t n, float *w, const float *g, float lr);
    void (*momentum_update)(Backend *be, size_t n, float *w, const float *g, float *vel,
                            float lr, float momentum, int nesterov);

    /* ---- small entries core needs beyond kernels.h ----------------------------------------- */
    /* y[i] += x[i]: gradient accumulation where a tensor has several consumers. */
    void (*add_inplace)(Backend *be, size_t n, const float *x, float *y);
    /* y[0] = (1/n) * sum_i x[i] (sum in any order; CPU sums in double). */
    void (*mean_forward)(Backend *be, size_t n, const float *x, float *y);
    /* dx[i] = dy[0] / n (dy in backend memory). */
    void (*mean_backward)(Backend *be, size_t n, const float *dy, float *dx);
    /* dst[i] = (float)src[i]: uint8 pixels to the float 0..255 the model takes. */
    void (*u8_to_float)(Backend *be, size_t n, const uint8_t *src, float *dst);
    /* loss_sum[0] += (double)loss[0]; correct_sum[0] += correct[0] (all backend memory): an
     * evaluation's totals kept on the device, so that it ends with one download. */
    void (*eval_accumulate)(Backend *be, const float *loss, const int32_t *correct,
                            double *loss_sum, int64_t *correct_sum);
    /* *step += 1 (backend memory). The last entry of every training step. */
    void (*step_increment)(Backend *be, int64_t *step);

    /* Batch gather from a resident data set, for training without a host round trip.
     *   pixels [n_examples, example_size] uint8, labels [n_examples] int32 (resident);
     *   ring [ring_epochs, n_examples] int32: the permutations of epochs e with e % ring_epochs
     *   in row e % ring_epochs (core uploads them before the steps that need them).
     * Stream position of batch row i: p = (*step) * batch + i; epoch e = p / n_examples,
     * j = p % n_examples, example = ring[(e % ring_epochs) * n_examples + j].
     *   x[i*example_size + k] = (float)pixels[example*example_size + k]; y[i] = labels[example]. */
    void (*gather_batch)(Backend *be, int batch, int example_size, int n_examples,
                         const uint8_t *pixels, const int32_t *labels, const int32_t *ring,
                         int ring_epochs, const int64_t *step, float *x, int32_t *y);

    /* ---- optional fused entries (NULL: core issues the unfused sequence instead) ------------ */
    /* Each must give what its sequence gives. ReLU masks use the ReLU's output y (pass where
     * y > 0), as relu_backward. */
    /* y = max(conv(x, w) + b, 0): conv2d_forward then relu_forward. */
    void (*conv2d_relu_forward)(Backend *be, const Conv2dShape *s, const float *x, const float *w,
                                const float *b, float *y, float *ws);
    /* y = max(x*w + b, 0): dense_forward then relu_forward. */
    void (*dense_relu_forward)(Backend *be, int n, int in, int out, const float *x,
                               const float *w, const float *b, float *y);
    /* maxpool2d_backward, then the backward of the ReLU whose output is the pool's input relu_x:
     * dx[i] = 0 where relu_x[i] <= 0. */
    void (*maxpool2d_relu_backward)(Backend *be, const Pool2dShape *s, const float *dy,
                                    const int32_t *argmax, const float *relu_x, float *dx);
    /* dropout_backward, then dx[i] = 0 where relu_y[i] <= 0 (relu_y: the dropout's input, the
     * output of a ReLU). */
    void (*dropout_relu_backward)(Backend *be, size_t n, float rate, const uint8_t *mask,
                                  const float *relu_y, const float *dy, float *dx);
    /* softmax_xent_forward and softmax_xent_backward (dloss = 1) in one pass: probs, *loss and
     * dlogits. Core calls it in the forward pass of a training step; the loss op's backward
     * then has nothing left to do. */
    void (*softmax_xent_fused)(Backend *be, int n, int c, const float *logits,
                               const int32_t *labels, float *probs, float *loss, float *dlogits);

    /* A conv (with its ReLU) and the max pool after it, as one op (kernels.h's
     * conv2d_relu_maxpool_*): the conv output is never stored. core records it where the conv's
     * input x takes no gradient (a first layer), and elsewhere only with the entry after these;
     * cs->k = ps->c, ps's input is the conv's output. The op needs both entries; a backend may
     * offer the backward alone, for conv2d_filter_grad_from_pool below (core then records the
     * conv and the pool as two ops). Forward: y and argmax as maxpool2d_forward over
     * max(conv + b, 0).
     * Backward: dw and db (db may be NULL) from the pooled gradient dy; ws (both) as the conv
     * entries'. */
    void (*conv2d_relu_maxpool_forward)(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                                        const float *x, const float *w, const float *b, float *y,
                                        int32_t *argmax, float *ws);
    void (*conv2d_relu_maxpool_backward_filter)(Backend *be, const Conv2dShape *cs,
                                                const Pool2dShape *ps, const float *x,
                                                const float *y, const int32_t *argmax,
                                                const float *dy, float *dw, float *db, float *ws);
    /* Optional, with the two entries above: whether the backend runs the op for these shapes
     * (NULL: for any); core records it only where this says yes (the CPU's: kernels.h's
     * conv2d_relu_maxpool_fused_fits, for the direct loops' convs and those of 8 or more input
     * channels, whose filter gradient the two ops take from the winners too). */
    int (*conv2d_relu_maxpool_fits)(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps);
    /* Optional, with the two entries above: maxpool2d_backward, then the backward of the ReLU
     * before the pool with its mask read from the pool's output y (kernels.h's
     * maxpool2d_relu_backward_from_y: the values of maxpool2d_relu_backward without the pool's
     * input). With it, core records the conv + ReLU + pool op also where x takes a gradient (a
     * middle layer): the conv output's gradient comes from this entry, then
     * conv2d_backward_data. */
    void (*maxpool2d_relu_backward_from_y)(Backend *be, const Pool2dShape *s, const float *dy,
                                           const int32_t *argmax, const float *y, float *dx);
    /* Optional, with conv2d_relu_maxpool_backward_filter: non-zero when the backend takes the
     * filter gradient of a conv (with its ReLU) whose only consumer is a max pool from that
     * entry, i.e. from the pool's winners (y, argmax and dy of the pool), instead of conv2d_backward_filter over the
     * conv's whole output gradient, three quarters zeros under a 2x2 pool. The conv's data
     * gradient still goes through conv2d_backward_data. */
    int (*conv2d_filter_grad_from_pool)(Backend *be, const Conv2dShape *s);
    /* Optional, with conv2d_filter_grad_from_pool: non-zero when the backend also takes such a
     * conv's data gradient from the pool's winners (the entry below) for these shapes. Then core
     * makes dx with it instead of the pool's backward and conv2d_backward_data, and skips the
     * pool's backward (kernels.h's conv2d_relu_maxpool_backward_data: the same values, in
     * another order, as conv2d_backward_data of maxpool2d_relu_backward_from_y's gradient; ws
     * as the conv entries'). */
    int (*conv2d_data_grad_from_pool)(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps);
    void (*conv2d_relu_maxpool_backward_data)(Backend *be, const Conv2dShape *cs,
                                              const Pool2dShape *ps, const float *w,
                                              const float *y, const int32_t *argmax,
                                              const float *dy, float *dx, float *ws);

    /* Optional, both or neither: a dense layer's data gradient only where its input x is > 0,
     * zero elsewhere (kernels.h's dense_backward_data_alive: the values of dense_backward's dx
     * there, summed in another order), for a layer whose input is a max pool over a ReLU's
     * output (a pooled 0 is a winner the ReLU stopped: the pool's and ReLU's backward drop its
     * gradient). Core plans it where dense_data_alive_fits says yes for the layer's sizes (n:
     * the largest batch) and then calls dense_backward with dx NULL, then this entry. */
    int (*dense_data_alive_fits)(Backend *be, int n, int in, int out);
    void (*dense_backward_data_alive)(Backend *be, int n, int in, int out, const float *x,
                                      const float *w, const float *dy, float *dx);
    /* Optional, all three or none: a dense layer's forward and filter gradient over its input's
     * nonzeros (kernels.h's dense_forward_sparse_input and dense_backward_filter_sparse_input:
     * the GEMM's values, summed in another order), for a layer whose input is a max pool over a
     * ReLU's output (mostly zeros once a model has trained a little). Core plans them where
     * dense_sparse_input_fits says yes for the layer's sizes (n: the largest batch). The
     * forward applies the layer's ReLU when relu != 0; the filter gradient writes dw and db (db
     * may be NULL), and core then makes dx with dense_backward, dw and db NULL, or with
     * dense_backward_data_alive. (The CPU backend has none: its dense_forward and
     * dense_backward take this path themselves where x is mostly zeros.) */
    int (*dense_sparse_input_fits)(Backend *be, int n, int in, int out);
    void (*dense_forward_sparse_input)(Backend *be, int n, int in, int out, const float *x,
                                       const float *w, const float *b, float *y, int relu);
    void (*dense_backward_filter_sparse_input)(Backend *be, int n, int in, int out,
                                               const float *x, const float *dy, float *dw,
                                               float *db);

    /* A dropout and the dense layer after it, as one op (kernels.h's dropout_dense_*): the
     * dropout's output is never stored. core records it where dropout_dense_fits says yes for
     * the layer's sizes (n: the largest batch); all three entries or none. Forward: y (and, with
     * relu, its ReLU) as dropout_forward (mask and stream as there; mask NULL and step NULL:
     * inference, x as is) then dense_forward. Backward: dw and db (db may be NULL) on the
     * dropout's output, and dx (may be NULL) through the dropout's backward and, with relu_x, the
     * backward of the ReLU whose output x is. The dw and db half may run beside later entries
     * as dense_backward's (see "Ordering"). */
    int (*dropout_dense_fits)(Backend *be, int n, int in, int out);
    void (*dropout_dense_forward)(Backend *be, int n, int in, int out, float rate, uint64_t seed,
                                  uint64_t stream_base, const int64_t *step, const float *x,
                                  const float *w, const float *b, float *y, uint8_t *mask,
                                  int relu);
    void (*dropout_dense_backward)(Backend *be, int n, int in, int out, float rate,
                                   const uint8_t *mask, int relu_x, const float *x,
                                   const float *w, const float *dy, float *dx, float *dw,
                                   float *db);

    /* Optional: a dense layer's backward with its kernel's Adam update in the same call
     * (kernels.h's dense_backward_adam): dw and db (db may be NULL), dx where x is alive (as
     * dense_backward_data_alive; dx may be NULL), then adam_update on w (t = *step + 1, as the
     * adam_update entry). dw is the kernel's gradient buffer, which it may leave unwritten.
     * Core calls it in a training step under Adam, without optimizer_per_layer, for a dense layer
     * whose data gradient is planned where alive (or not needed) and whose kernel takes no other
     * gradient, and then leaves the kernel out of the optimizer pass (tape.h, TapeAdam). */
    void (*dense_backward_adam)(Backend *be, int n, int in, int out, const float *x, float *w,
                                const float *dy, float *dx, float *dw, float *db, float *m,
                                float *v, float lr, float beta1, float beta2, float eps,
                                const int64_t *step);

    /* ---- optional: run many steps as one captured graph ------------------------------------ */
    /* Runs step_fn(arg) `steps` times. step_fn only issues backend entries, and for a given
     * `key` it issues exactly the same entries with the same arguments every time (values that
     * change live in backend memory, see above), so a backend may capture one call (e.g. in a
     * CUDA graph, cached under `key`) and replay it. core calls invalidate_graphs() whenever a
     * captured pointer or constant may have changed (data set replaced, model freed).
     * NULL: not supported, core calls step_fn itself (eager). Returns 0 ok, non-zero on error. */
    int (*run_steps)(Backend *be, int key, void (*step_fn)(void *arg), void *arg, int steps);
    /* Drops every captured graph. NULL when run_steps is NULL. */
    void (*invalidate_graphs)(Backend *be);

    /* CPU threads for the CPU kernels (<= 0: all cores). NULL: not applicable. */
    void (*set_threads)(Backend *be, int threads);

    /* Non-zero: in a training step core applies the optimizer to each layer's parameters as
     * soon as their gradients are final (one update entry per layer, during the backward
     * sweep), instead of once over all parameters after it. The same arithmetic per parameter;
     * a backend that runs parameter gradients beside the rest of the backward (see "Ordering")
     * can run the updates there too. 0 (the CPU and cuDNN backends): one update. */
    int optimizer_per_layer;
};

/* The CPU backend (the kernels/ C files). NULL only when out of memory. */
Backend *backend_cpu_create(void);

#ifdef WITH_CUDA
/* Defined in core/backend_cuda.c (our kernels) and core/backend_cudnn.c (cuDNN/cuBLAS).
 * NULL with a message in err when no usable GPU is present or initialisation fails. */
Backend *backend_cuda_create(char *err, size_t errlen);
Backend *backend_cudnn_create(char *err, size_t errlen);
/* 1 when a CUDA device is present and usable. */
int backend_cuda_available(void);
#endif

#ifdef __cplusplus
}
#endif
#endif /* CORE_BACKEND_H */
