/* load_cudnn.h: cuBLAS and cuDNN, loaded when first needed instead of at process start.
 *
 * Only `--device cudnn`, the benchmarks and the GPU tests call them, yet linking them made every
 * start of every program pay for them: the loader maps and relocates libcublas and its 540 MB
 * libcublasLt, whose constructors run before main. Measured on the 2-core build machine,
 * `trainer --help` took 0.11 s with them (0.67 s with a cold page cache) and 0.00 s without.
 * The `cuda` backend needs neither.
 *
 * Every file that calls them includes this header instead of <cudnn.h> / <cublas_v2.h>. Their
 * types and constants are the headers'; each function name used here becomes a call through
 * `cudnn_libs`, a table of pointers that cudnn_libs_load() fills with dlopen/dlsym, so the call
 * sites read as plain library calls. A function not in CUDNN_LIBS_FUNCTIONS is a link error
 * (undefined symbol), not a silent static link: add it to the list and to the names below.
 */
#ifndef KERNELS_CUDNN_LIBS_H
#define KERNELS_CUDNN_LIBS_H

#include <stddef.h>

#include <cublas_v2.h>
#include <cudnn.h>

/* The functions, by their exported names (cublas_v2.h maps cublasCreate to cublasCreate_v2 and
 * so on). X(library, name): library 0 is cuBLAS, 1 cuDNN. */
#define CUDNN_LIBS_FUNCTIONS(X)                                                                   \
    X(0, cublasCreate_v2) X(0, cublasDestroy_v2) X(0, cublasSetStream_v2)                        \
    X(0, cublasSetWorkspace_v2) X(0, cublasSetMathMode) X(0, cublasSgemm_v2)                     \
    X(0, cublasSgemv_v2) X(0, cublasSger_v2)                                                     \
    X(1, cudnnGetVersion) X(1, cudnnGetErrorString) X(1, cudnnCreate) X(1, cudnnDestroy)         \
    X(1, cudnnSetStream) X(1, cudnnCreateTensorDescriptor) X(1, cudnnDestroyTensorDescriptor)    \
    X(1, cudnnSetTensor4dDescriptor) X(1, cudnnSetTensor4dDescriptorEx)                          \
    X(1, cudnnTransformTensor) X(1, cudnnAddTensor) X(1, cudnnCreateFilterDescriptor)            \
    X(1, cudnnDestroyFilterDescriptor) X(1, cudnnSetFilter4dDescriptor)                          \
    X(1, cudnnCreateConvolutionDescriptor) X(1, cudnnDestroyConvolutionDescriptor)               \
    X(1, cudnnSetConvolution2dDescriptor) X(1, cudnnSetConvolutionMathType)                      \
    X(1, cudnnGetConvolution2dForwardOutputDim) X(1, cudnnGetConvolutionForwardAlgorithm_v7)     \
    X(1, cudnnGetConvolutionBackwardDataAlgorithm_v7)                                            \
    X(1, cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                          \
    X(1, cudnnFindConvolutionForwardAlgorithm) X(1, cudnnFindConvolutionBackwardDataAlgorithm)   \
    X(1, cudnnFindConvolutionBackwardFilterAlgorithm) X(1, cudnnConvolutionForward)              \
    X(1, cudnnConvolutionBackwardData) X(1, cudnnConvolutionBackwardFilter)                      \
    X(1, cudnnConvolutionBackwardBias) X(1, cudnnCreateActivationDescriptor)                     \
    X(1, cudnnDestroyActivationDescriptor) X(1, cudnnSetActivationDescriptor)                    \
    X(1, cudnnActivationForward) X(1, cudnnActivationBackward)                                   \
    X(1, cudnnCreatePoolingDescriptor) X(1, cudnnDestroyPoolingDescriptor)                       \
    X(1, cudnnSetPooling2dDescriptor) X(1, cudnnPoolingForward) X(1, cudnnPoolingBackward)       \
    X(1, cudnnSoftmaxForward)

typedef struct {
#define CUDNN_LIBS_POINTER(lib, name) __typeof__(&name) name;
    CUDNN_LIBS_FUNCTIONS(CUDNN_LIBS_POINTER)
#undef CUDNN_LIBS_POINTER
} CudnnLibs;

extern CudnnLibs cudnn_libs;

/* Loads both libraries and every function of the list, once per process (thread-safe). 0 ok;
 * -1 with the library or function that is missing in err (then every later call fails the
 * same way, and nothing of the table may be called). */
int cudnn_libs_load(char *err, size_t errlen);

/* The names, through the table. (load_cudnn.c itself defines CUDNN_LIBS_TABLE_ITSELF: it needs
 * the real names for dlsym.) */
#ifndef CUDNN_LIBS_TABLE_ITSELF
#define cublasCreate_v2 cudnn_libs.cublasCreate_v2
#define cublasDestroy_v2 cudnn_libs.cublasDestroy_v2
#define cublasSetStream_v2 cudnn_libs.cublasSetStream_v2
#define cublasSetWorkspace_v2 cudnn_libs.cublasSetWorkspace_v2
#define cublasSetMathMode cudnn_libs.cublasSetMathMode
#define cublasSgemm_v2 cudnn_libs.cublasSgemm_v2
#define cublasSgemv_v2 cudnn_libs.cublasSgemv_v2
#define cublasSger_v2 cudnn_libs.cublasSger_v2
#define cudnnGetVersion cudnn_libs.cudnnGetVersion
#define cudnnGetErrorString cudnn_libs.cudnnGetErrorString
#define cudnnCreate cudnn_libs.cudnnCreate
#define cudnnDestroy cudnn_libs.cudnnDestroy
#define cudnnSetStream cudnn_libs.cudnnSetStream
#define cudnnCreateTensorDescriptor cudnn_libs.cudnnCreateTensorDescriptor
#define cudnnDestroyTensorDescriptor cudnn_libs.cudnnDestroyTensorDescriptor
#define cudnnSetTensor4dDescriptor cudnn_libs.cudnnSetTensor4dDescriptor
#define cudnnSetTensor4dDescriptorEx cudnn_libs.cudnnSetTensor4dDescriptorEx
#define cudnnTransformTensor cudnn_libs.cudnnTransformTensor
#define cudnnAddTensor cudnn_libs.cudnnAddTensor
#define cudnnCreateFilterDescriptor cudnn_libs.cudnnCreateFilterDescriptor
#define cudnnDestroyFilterDescriptor cudnn_libs.cudnnDestroyFilterDescriptor
#define cudnnSetFilter4dDescriptor cudnn_libs.cudnnSetFilter4dDescriptor
#define cudnnCreateConvolutionDescriptor cudnn_libs.cudnnCreateConvolutionDescriptor
#define cudnnDestroyConvolutionDescriptor cudnn_libs.cudnnDestroyConvolutionDescriptor
#define cudnnSetConvolution2dDescriptor cudnn_libs.cudnnSetConvolution2dDescriptor
#define cudnnSetConvolutionMathType cudnn_libs.cudnnSetConvolutionMathType
#define cudnnGetConvolution2dForwardOutputDim cudnn_libs.cudnnGetConvolution2dForwardOutputDim
#define cudnnGetConvolutionForwardAlgorithm_v7 cudnn_libs.cudnnGetConvolutionForwardAlgorithm_v7
#define cudnnGetConvolutionBackwardDataAlgorithm_v7                                             \
    cudnn_libs.cudnnGetConvolutionBackwardDataAlgorithm_v7
#define cudnnGetConvolutionBackwardFilterAlgorithm_v7                                           \
    cudnn_libs.cudnnGetConvolutionBackwardFilterAlgorithm_v7
#define cudnnFindConvolutionForwardAlgorithm cudnn_libs.cudnnFindConvolutionForwardAlgorithm
#define cudnnFindConvolutionBackwardDataAlgorithm                                               \
    cudnn_libs.cudnnFindConvolutionBackwardDataAlgorithm
#define cudnnFindConvolutionBackwardFilterAlgorithm                                             \
    cudnn_libs.cudnnFindConvolutionBackwardFilterAlgorithm
#define cudnnConvolutionForward cudnn_libs.cudnnConvolutionForward
#define cudnnConvolutionBackwardData cudnn_libs.cudnnConvolutionBackwardData
#define cudnnConvolutionBackwardFilter cudnn_libs.cudnnConvolutionBackwardFilter
#define cudnnConvolutionBackwardBias cudnn_libs.cudnnConvolutionBackwardBias
#define cudnnCreateActivationDescriptor cudnn_libs.cudnnCreateActivationDescriptor
#define cudnnDestroyActivationDescriptor cudnn_libs.cudnnDestroyActivationDescriptor
#define cudnnSetActivationDescriptor cudnn_libs.cudnnSetActivationDescriptor
#define cudnnActivationForward cudnn_libs.cudnnActivationForward
#define cudnnActivationBackward cudnn_libs.cudnnActivationBackward
#define cudnnCreatePoolingDescriptor cudnn_libs.cudnnCreatePoolingDescriptor
#define cudnnDestroyPoolingDescriptor cudnn_libs.cudnnDestroyPoolingDescriptor
#define cudnnSetPooling2dDescriptor cudnn_libs.cudnnSetPooling2dDescriptor
#define cudnnPoolingForward cudnn_libs.cudnnPoolingForward
#define cudnnPoolingBackward cudnn_libs.cudnnPoolingBackward
#define cudnnSoftmaxForward cudnn_libs.cudnnSoftmaxForward
#endif

#endif /* KERNELS_CUDNN_LIBS_H */
