/* tf_tensor.h: TensorFlow's DataType numbers (types.proto) and a named host tensor, the unit the
 * checkpoint, SavedModel and bundle writers of io/ exchange with their callers.
 *
 * Layout: row-major, little-endian element bytes (TF's on-disk layout). Conv kernels are HWIO
 * [kh,kw,in,out] and dense kernels [in,out] by the callers' convention, not by anything here.
 */
#ifndef IO_TF_TENSOR_H
#define IO_TF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

/* DataType enum values of tensorflow/core/framework/types.proto. */
typedef enum {
    TF_DT_INVALID = 0,
    TF_DT_FLOAT = 1,
    TF_DT_DOUBLE = 2,
    TF_DT_INT32 = 3,
    TF_DT_UINT8 = 4,
    TF_DT_INT16 = 5,
    TF_DT_INT8 = 6,
    TF_DT_STRING = 7,
    TF_DT_COMPLEX64 = 8,
    TF_DT_INT64 = 9,
    TF_DT_BOOL = 10,
    TF_DT_BFLOAT16 = 14,
    TF_DT_UINT16 = 17,
    TF_DT_COMPLEX128 = 18,
    TF_DT_HALF = 19,
    TF_DT_RESOURCE = 20,
    TF_DT_UINT32 = 22,
    TF_DT_UINT64 = 23,
} TfDataType;

#define TF_MAX_RANK 8

/* Bytes per element of a fixed-size dtype; 0 for DT_STRING, resources and unknown values. */
static inline size_t tf_dtype_size(int dtype) {
    switch (dtype) {
    case TF_DT_UINT8: case TF_DT_INT8: case TF_DT_BOOL: return 1;
    case TF_DT_INT16: case TF_DT_UINT16: case TF_DT_HALF: case TF_DT_BFLOAT16: return 2;
    case TF_DT_FLOAT: case TF_DT_INT32: case TF_DT_UINT32: return 4;
    case TF_DT_DOUBLE: case TF_DT_INT64: case TF_DT_UINT64: case TF_DT_COMPLEX64: return 8;
    case TF_DT_COMPLEX128: return 16;
    default: return 0;
    }
}

/* "float", "int64", ... as TF prints them; "dtype?" for values we do not name. */
static inline const char *tf_dtype_name(int dtype) {
    switch (dtype) {
    case TF_DT_FLOAT: return "float"; case TF_DT_DOUBLE: return "double";
    case TF_DT_INT32: return "int32"; case TF_DT_UINT8: return "uint8";
    case TF_DT_INT16: return "int16"; case TF_DT_INT8: return "int8";
    case TF_DT_STRING: return "string"; case TF_DT_COMPLEX64: return "complex64";
    case TF_DT_INT64: return "int64"; case TF_DT_BOOL: return "bool";
    case TF_DT_BFLOAT16: return "bfloat16"; case TF_DT_UINT16: return "uint16";
    case TF_DT_COMPLEX128: return "complex128"; case TF_DT_HALF: return "half";
    case TF_DT_RESOURCE: return "resource"; case TF_DT_UINT32: return "uint32";
    case TF_DT_UINT64: return "uint64";
    default: return "dtype?";
    }
}

/* A named host tensor. The writers copy nothing: data must stay valid during the call. */
typedef struct {
    const char *name;               /* checkpoint key / variable name, e.g. "conv2d/kernel" */
    TfDataType dtype;               /* a fixed-size dtype (DT_STRING is not written) */
    int rank;                       /* 0 (scalar) .. TF_MAX_RANK */
    int64_t shape[TF_MAX_RANK];
    const void *data;               /* nbytes of row-major little-endian elements */
    size_t nbytes;                  /* must equal elements * tf_dtype_size(dtype) */
} TfTensor;

/* Number of elements of a shape (1 for a scalar); -1 when a dimension is negative or the product
 * overflows int64 (a damaged file's shape: never equal to a real element count). */
static inline int64_t tf_shape_elements(int rank, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > INT64_MAX / shape[i])) return -1;
        n *= shape[i];
    }
    return n;
}

#endif
