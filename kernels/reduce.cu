/* reduce.cu: the small elementwise/reduction entries core needs beyond kernels.h (gradient
 * accumulation, the mean op, an evaluation's totals), on the GPU. */
#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

constexpr int MEAN_THREADS = 512;

__global__ void add_inplace_kernel(size_t n, const float *x, float *y) {
    pdl_wait_and_release();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

/* One block: per-thread double sums over a fixed stride, then a tree: deterministic. */
__global__ void __launch_bounds__(MEAN_THREADS) mean_kernel(size_t n, const float *x, float *y) {
    pdl_wait_and_release();
    __shared__ double part[MEAN_THREADS];
    double s = 0.0;
    for (size_t i = threadIdx.x; i < n; i += MEAN_THREADS) s += (double)x[i];
    const double sum = block_tree_sum<MEAN_THREADS>(part, s);
    if (threadIdx.x == 0) y[0] = n ? (float)(sum / (double)n) : 0.0f;
}

__global__ void eval_accumulate_kernel(const float *loss, const int32_t *correct,
                                       double *loss_sum, int64_t *correct_sum) {
    pdl_wait_and_release();
    loss_sum[0] += (double)loss[0];
    correct_sum[0] += correct[0];
}

__global__ void mean_bwd_kernel(size_t n, const float *dy, float *dx) {
    pdl_wait_and_release();
    const float v = dy[0] / (float)n;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = v;
}

} /* namespace */

extern "C" cudaError_t eval_accumulate_cuda(const float *loss, const int32_t *correct,
                                            double *loss_sum, int64_t *correct_sum,
                                            cudaStream_t stream) {
    CNN_KERNEL(1, 1, stream, eval_accumulate_kernel)(loss, correct, loss_sum, correct_sum);
    return launch_status();
}

extern "C" cudaError_t add_inplace_cuda(size_t n, const float *x, float *y, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, add_inplace_kernel)(n, x, y);
    return launch_status();
}

extern "C" cudaError_t mean_forward_cuda(size_t n, const float *x, float *y, cudaStream_t stream) {
    CNN_KERNEL(1, MEAN_THREADS, stream, mean_kernel)(n, x, y);
    return launch_status();
}

extern "C" cudaError_t mean_backward_cuda(size_t n, const float *dy, float *dx,
                                          cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, mean_bwd_kernel)(n, dy, dx);
    return launch_status();
}
