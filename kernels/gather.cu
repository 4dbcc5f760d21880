/* gather.cu: batches drawn on the device from the resident uint8 data set (model.h's order:
 * stream position j = step*batch + k, epoch j / n, permutation ring slot epoch % slots). */
#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

/* One thread per (example of the batch, pixel). Pixels become floats 0..255 unchanged. */
__global__ void gather_kernel(int batch, int example_size, int n_examples, const uint8_t *pixels,
                              const int32_t *labels, const int32_t *perms, int perm_slots,
                              const int64_t *d_step, float *x, int32_t *y) {
    pdl_wait_and_release();
    const int64_t step = d_step ? *d_step : 0;
    size_t total = (size_t)batch * example_size;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        int k = (int)(e / example_size), p = (int)(e % example_size);
        int64_t j = step * batch + k;
        int64_t epoch = j / n_examples;
        int pos = (int)(j % n_examples);
        int idx = perms ? perms[(size_t)(epoch % perm_slots) * n_examples + pos] : pos;
        x[e] = (float)pixels[(size_t)idx * example_size + p];
        if (p == 0) y[k] = labels[idx];
    }
}

__global__ void u8_to_float_kernel(size_t n, const uint8_t *u8, float *x) {
    pdl_wait_and_release();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = (float)u8[i];
}

} /* namespace */

extern "C" cudaError_t gather_batch_cuda(int batch, int example_size, int n_examples,
                                         const uint8_t *pixels, const int32_t *labels,
                                         const int32_t *perms, int perm_slots,
                                         const int64_t *d_step, float *x, int32_t *y,
                                         cudaStream_t stream) {
    if (batch < 0 || example_size <= 0 || n_examples <= 0 || (perms && perm_slots <= 0))
        return cudaErrorInvalidValue;
    size_t total = (size_t)batch * example_size;
    if (total == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(total, 256), 256, stream, gather_kernel)(
        batch, example_size, n_examples, pixels, labels, perms, perm_slots, d_step, x, y);
    return launch_status();
}

extern "C" cudaError_t u8_to_float_cuda(size_t n, const uint8_t *u8, float *x,
                                        cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, u8_to_float_kernel)(n, u8, x);
    return launch_status();
}
