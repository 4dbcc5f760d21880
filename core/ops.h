/* ops.h: the differentiable ops. Each call records one tape entry (core/tape.h) and returns its
 * output tensor (NULL when the tape is full or the shapes do not fit). Forward and backward of
 * each op live in core/op_<name>.c and run through the backend.
 *
 * Shapes: x NHWC [N,H,W,C]; conv kernel HWIO [KH,KW,C,K]; dense x [N,in], kernel [in,out];
 * biases [K] / [out]; labels int32 [N]; losses and counts are unbatched [1].
 */
#ifndef CORE_OPS_H
#define CORE_OPS_H

#include "core/tape.h"

/* y[N,OH,OW,K] = conv(x, w) + b (b may be NULL); same: TF "SAME" padding, else "VALID".
 * relu != 0: y = max(that, 0), the layer's ReLU fused (tape.h: how its backward is folded). */
Tensor *op_conv2d(Tape *t, Tensor *x, Tensor *w, Tensor *b, int stride, int same, int relu);
/* A first layer: conv2d (relu = 1) and then op_maxpool2d, as one op on a backend with the
 * conv2d_relu_maxpool entries (backend.h): the conv output is never stored. x must take no
 * gradient (the model's input). NULL when the backend lacks the entries, x requires a gradient,
 * or the shapes do not fit: the caller then records the two ops. */
Tensor *op_conv2d_relu_maxpool(Tape *t, Tensor *x, Tensor *w, Tensor *b, int stride, int same,
                               int pool, int pool_stride, int pool_same);
/* Max pooling with a kh x kw window (TF's MaxPool; argmax saved for backward). */
Tensor *op_maxpool2d(Tape *t, Tensor *x, int kh, int kw, int stride, int same);
/* y[N,out] = x[N,in] * w[in,out] + b[out] (b may be NULL); relu != 0: max(that, 0). */
Tensor *op_dense(Tape *t, Tensor *x, Tensor *w, Tensor *b, int relu);
Tensor *op_relu(Tape *t, Tensor *x);
/* Inverted dropout with drop probability rate while t->training, identity otherwise. The k-th
 * dropout op of the tape (k = 0, 1, ...) uses the Philox stream
 * PHILOX_STREAM_DROPOUT + step*16 + k, step read from the tape's step counter. */
Tensor *op_dropout(Tape *t, Tensor *x, float rate);
/* op_dropout(x, rate) and then op_dense on its output (w, b, relu as there), as one op on a
 * backend with the dropout_dense entries (backend.h): the dropout's output is never stored. The
 * same Philox stream as op_dropout (it counts as the tape's next dropout). NULL when the
 * backend lacks the entries or refuses the sizes (op_dropout_dense_fits), or the shapes do not
 * fit: the caller then records the two ops. */
int op_dropout_dense_fits(Tape *t, const Tensor *x, int out);
Tensor *op_dropout_dense(Tape *t, Tensor *x, float rate, Tensor *w, Tensor *b, int relu);
/* [N,H,W,C] -> [N,H*W*C] in [h][w][c] order (TF's Flatten): a view, no copy. */
Tensor *op_flatten(Tape *t, Tensor *x);
/* probs[N,C] = softmax(x) over the last dimension. */
Tensor *op_softmax(Tape *t, Tensor *x);
/* Mean over the batch of the sparse softmax cross-entropy of logits[N,C] against labels[N]
 * (fused, numerically stable): a loss scalar [1]. The end of a backward pass (dL/dloss = 1). */
Tensor *op_softmax_xent(Tape *t, Tensor *logits, Tensor *labels);
/* y[1] = mean of all elements of x (at the current batch). */
Tensor *op_mean(Tape *t, Tensor *x);
/* count[1] (int32) = rows of logits whose first argmax equals the label. No gradient. */
Tensor *op_accuracy(Tape *t, Tensor *logits, Tensor *labels);

#endif /* CORE_OPS_H */
