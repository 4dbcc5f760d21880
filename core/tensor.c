/* tensor.c: element sizes and counts. */
#include "core/tensor.h"

size_t dtype_size(DType t) {
    switch (t) {
    case DT_F32: return 4;
    case DT_I32: return 4;
    case DT_U8: return 1;
    case DT_I64: return 8;
    }
    return 0;
}

size_t tensor_count_at(const Tensor *t, int n) {
    if (!t->batched || t->shape[0] == 0) return t->count;
    return t->count / (size_t)t->shape[0] * (size_t)n;
}

Tensor *tensor_root(Tensor *t) {
    while (t->alias_of) t = t->alias_of;
    return t;
}
