/* relu.cu: ReLU forward and its gradient on the GPU (kernels/relu.c's twins). */
#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

__global__ void relu_fwd_kernel(size_t n, const float *x, float *y) {
    pdl_wait_and_release();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

__global__ void relu_bwd_kernel(size_t n, const float *y, const float *dy, float *dx) {
    pdl_wait_and_release();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

} /* namespace */

extern "C" cudaError_t relu_forward_cuda(size_t n, const float *x, float *y, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, relu_fwd_kernel)(n, x, y);
    return launch_status();
}

extern "C" cudaError_t relu_backward_cuda(size_t n, const float *y, const float *dy, float *dx,
                                          cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, relu_bwd_kernel)(n, y, dy, dx);
    return launch_status();
}
