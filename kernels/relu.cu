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

/* 16-byte vectors where every pointer is 16-byte aligned: one load and one store instruction per
 * 4 elements (run 2 timed the scalar kernel at 74% of cuDNN's ReLU on conv1's output at batch
 * 100, 8.3 vs 6.1 us), the n % 4 tail element by element. The same comparisons: the same bits.
 * In place (y == x, dx == dy) as the scalar kernels. */
__device__ __forceinline__ float relu1(float v) { return v > 0.0f ? v : 0.0f; }

__global__ void relu_fwd4_kernel(size_t n, const float *x, float *y) {
    pdl_wait_and_release();
    const size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t i = first; i < n4; i += stride) {
        float4 v = reinterpret_cast<const float4 *>(x)[i];
        v = make_float4(relu1(v.x), relu1(v.y), relu1(v.z), relu1(v.w));
        reinterpret_cast<float4 *>(y)[i] = v;
    }
    for (size_t i = n4 * 4 + first; i < n; i += stride) y[i] = relu1(x[i]);
}

__global__ void relu_bwd4_kernel(size_t n, const float *y, const float *dy, float *dx) {
    pdl_wait_and_release();
    const size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t i = first; i < n4; i += stride) {
        const float4 v = reinterpret_cast<const float4 *>(y)[i];
        const float4 g = reinterpret_cast<const float4 *>(dy)[i];
        reinterpret_cast<float4 *>(dx)[i] =
            make_float4(v.x > 0.0f ? g.x : 0.0f, v.y > 0.0f ? g.y : 0.0f,
                        v.z > 0.0f ? g.z : 0.0f, v.w > 0.0f ? g.w : 0.0f);
    }
    for (size_t i = n4 * 4 + first; i < n; i += stride) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

} /* namespace */

extern "C" cudaError_t relu_forward_cuda(size_t n, const float *x, float *y, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (aligned16(x) && aligned16(y))
        CNN_KERNEL(grid_for((n + 3) / 4, 256), 256, stream, relu_fwd4_kernel)(n, x, y);
    else
        CNN_KERNEL(grid_for(n, 256), 256, stream, relu_fwd_kernel)(n, x, y);
    return launch_status();
}

extern "C" cudaError_t relu_backward_cuda(size_t n, const float *y, const float *dy, float *dx,
                                          cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (aligned16(y) && aligned16(dy) && aligned16(dx))
        CNN_KERNEL(grid_for((n + 3) / 4, 256), 256, stream, relu_bwd4_kernel)(n, y, dy, dx);
    else
        CNN_KERNEL(grid_for(n, 256), 256, stream, relu_bwd_kernel)(n, y, dy, dx);
    return launch_status();
}
