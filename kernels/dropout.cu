/* dropout.cu: inverted dropout on the GPU with the CPU's philox stream (kernels/dropout.c), so
 * the same (seed, stream) gives the same mask on both. The stream is read from the device step
 * counter, so a replayed CUDA graph draws a new mask every step. */
#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"
#include "kernels/philox.h"

namespace {

/* One thread per group of 4 elements: one Philox call gives their 4 words. */
__global__ void dropout_fwd_kernel(size_t n, float rate, float scale, uint64_t seed,
                                   uint64_t stream_base, uint64_t stream_per_step,
                                   const int64_t *d_step, const float *x, float *y,
                                   uint8_t *mask) {
    pdl_wait_and_release();
    uint64_t stream = stream_base + (d_step ? stream_per_step * (uint64_t)*d_step : 0);
    size_t groups = (n + 3) / 4;
    for (size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x; b < groups;
         b += (size_t)gridDim.x * blockDim.x) {
        Philox4x32 r = philox_block(seed, stream, b);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            size_t i = b * 4 + j;
            if (i >= n) break;
            uint8_t keep = philox_word_uniform(r.v[j]) >= rate;
            mask[i] = keep;
            y[i] = keep ? x[i] * scale : 0.0f;
        }
    }
}

__global__ void dropout_bwd_kernel(size_t n, float scale, const uint8_t *mask,
                                   const float *relu_y, const float *dy, float *dx) {
    pdl_wait_and_release();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        bool pass = mask[i] && (!relu_y || relu_y[i] > 0.0f);
        dx[i] = pass ? dy[i] * scale : 0.0f;
    }
}

} /* namespace */

extern "C" cudaError_t dropout_forward_cuda(size_t n, float rate, uint64_t seed,
                                            uint64_t stream_base, uint64_t stream_per_step,
                                            const int64_t *d_step, const float *x, float *y,
                                            uint8_t *mask, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for((n + 3) / 4, 256), 256, stream, dropout_fwd_kernel)(
        n, rate, dropout_scale(rate), seed, stream_base, stream_per_step, d_step, x, y, mask);
    return launch_status();
}

extern "C" cudaError_t dropout_backward_cuda(size_t n, float rate, const uint8_t *mask,
                                             const float *relu_y, const float *dy, float *dx,
                                             cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, dropout_bwd_kernel)(
        n, dropout_scale(rate), mask, relu_y, dy, dx);
    return launch_status();
}
