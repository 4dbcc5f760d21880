/* tensor.h: a tensor of core/: shape, element type and where its data and gradient live.
 *
 * Layouts (TensorFlow's, as kernels/kernels.h): activations NHWC [N,H,W,C]; conv kernels HWIO
 * [KH,KW,C,K]; dense activations [N,features], dense kernels [in,out]; all row-major. A flatten of
 * NHWC is [N, H*W*C] in [h][w][c] order, the same memory (as TF's Flatten).
 *
 * Data and gradient are backend memory (core/backend.h), carved from the model's arena at
 * creation; a tensor never owns memory. A batched tensor has the batch in shape[0] and may be
 * used with any batch n <= shape[0] (the first n rows).
 */
#ifndef CORE_TENSOR_H
#define CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DT_F32 = 0, DT_I32 = 1, DT_U8 = 2, DT_I64 = 3 } DType;

typedef struct Tensor Tensor;
struct Tensor {
    DType dtype;
    int rank;              /* 0..4; rank 0 is a scalar (count 1) */
    int shape[4];
    int batched;           /* shape[0] is the batch dimension */
    size_t count;          /* elements at the full shape */
    void *data;            /* backend memory (set when the arena is committed) */
    int requires_grad;     /* a gradient flows into this tensor */
    float *grad;           /* backend memory, count floats; NULL when !requires_grad */
    Tensor *alias_of;      /* a view (reshape): data and grad are those of alias_of */
    /* arena placement, used by the tape when it commits */
    int region, grad_region;
    size_t offset, grad_offset;
    int grad_written;      /* tape planning: an op earlier in the reverse sweep wrote grad */
};

size_t dtype_size(DType t);
/* Elements when the batch is n (n is ignored for unbatched tensors). */
size_t tensor_count_at(const Tensor *t, int n);
/* The tensor that owns the memory of t (t itself unless t is a view). */
Tensor *tensor_root(Tensor *t);
static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }
static inline int32_t *tensor_i32(const Tensor *t) { return (int32_t *)t->data; }

#endif /* CORE_TENSOR_H */
