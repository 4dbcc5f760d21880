/* optimizers.cu: Adam, SGD and momentum as one pass over one contiguous parameter buffer on the
 * GPU, in the arithmetic order of kernels/optimizers.c. Adam's t comes from the device step
 * counter, so a captured step replays with the right bias correction. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

/* Adam's arithmetic on one element, in the CPU twin's order. */
__device__ __forceinline__ void adam_element(float &w, float g, float &m, float &v, float lr_t,
                                             float one_m_b1, float one_m_b2, float eps) {
    float mi = m + (g - m) * one_m_b1;
    float vi = v + (g * g - v) * one_m_b2;
    m = mi;
    v = vi;
    w -= (mi * lr_t) / (sqrtf(vi) + eps);
}

/* The bias-corrected rate in float32 from beta^t, as the CPU twin. */
__device__ __forceinline__ float adam_rate(float lr, float beta1, float beta2,
                                           const int64_t *d_step) {
    const float t = (float)(*d_step + 1);
    const float b1p = powf(beta1, t), b2p = powf(beta2, t);
    return lr * sqrtf(1.0f - b2p) / (1.0f - b1p);
}

/* Version 1 (the first GPU runs): one float per thread and iteration. */
__global__ void adam_kernel(size_t n, float *w, const float *g, float *m, float *v, float lr,
                            float beta1, float beta2, float eps, const int64_t *d_step) {
    pdl_wait_and_release();
    const float lr_t = adam_rate(lr, beta1, beta2, d_step);
    const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        adam_element(w[i], g[i], m[i], v[i], lr_t, one_m_b1, one_m_b2, eps);
}

/* Version 2 (the default): four floats per thread and iteration as 16-byte loads and stores
 * (the four buffers 16-byte aligned; the launch checks), the last n % 4 by the first threads.
 * A quarter of the load/store instructions and four times the bytes in flight per thread for
 * the same 28 bytes per parameter; the same arithmetic, so the same bits as version 1. */
__global__ void adam4_kernel(size_t n, float *w, const float *g, float *m, float *v, float lr,
                             float beta1, float beta2, float eps, const int64_t *d_step) {
    pdl_wait_and_release();
    const float lr_t = adam_rate(lr, beta1, beta2, d_step);
    const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
    const size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t i = first; i < n4; i += stride) {
        float4 wi = reinterpret_cast<float4 *>(w)[i], mi = reinterpret_cast<float4 *>(m)[i];
        float4 vi = reinterpret_cast<float4 *>(v)[i];
        const float4 gi = reinterpret_cast<const float4 *>(g)[i];
        adam_element(wi.x, gi.x, mi.x, vi.x, lr_t, one_m_b1, one_m_b2, eps);
        adam_element(wi.y, gi.y, mi.y, vi.y, lr_t, one_m_b1, one_m_b2, eps);
        adam_element(wi.z, gi.z, mi.z, vi.z, lr_t, one_m_b1, one_m_b2, eps);
        adam_element(wi.w, gi.w, mi.w, vi.w, lr_t, one_m_b1, one_m_b2, eps);
        reinterpret_cast<float4 *>(w)[i] = wi;
        reinterpret_cast<float4 *>(m)[i] = mi;
        reinterpret_cast<float4 *>(v)[i] = vi;
    }
    const size_t tail = n4 * 4 + first;
    if (tail < n) adam_element(w[tail], g[tail], m[tail], v[tail], lr_t, one_m_b1, one_m_b2, eps);
}

__global__ void sgd_kernel(size_t n, float *w, const float *g, float lr) {
    pdl_wait_and_release();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        w[i] -= lr * g[i];
}

__global__ void momentum_kernel(size_t n, float *w, const float *g, float *vel, float lr,
                                float momentum, int nesterov) {
    pdl_wait_and_release();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float a = vel[i] * momentum - g[i] * lr;
        vel[i] = a;
        w[i] += nesterov ? a * momentum - g[i] * lr : a;
    }
}

__global__ void step_advance_kernel(int64_t *d_step) {
    pdl_wait_and_release();
    *d_step += 1;
}

} /* namespace */

extern "C" cudaError_t adam_update_cuda(size_t n, float *w, const float *g, float *m, float *v,
                                        float lr, float beta1, float beta2, float eps,
                                        const int64_t *d_step, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (!d_step) return cudaErrorInvalidValue;
    /* CNN_ADAM_V=1: version 1; else version 2 where the buffers are 16-byte aligned. Both
     * grid-stride with about four elements per thread: the powf setup is paid per thread. */
    const char *ver = getenv("CNN_ADAM_V");
    const bool aligned = aligned16(w) && aligned16(g) && aligned16(m) && aligned16(v);
    if (aligned && !(ver && strcmp(ver, "1") == 0)) {
        CNN_KERNEL(grid_for((n + 15) / 16, 256), 256, stream, adam4_kernel)(
            n, w, g, m, v, lr, beta1, beta2, eps, d_step);
    } else {
        CNN_KERNEL(grid_for((n + 3) / 4, 256), 256, stream, adam_kernel)(
            n, w, g, m, v, lr, beta1, beta2, eps, d_step);
    }
    return launch_status();
}

extern "C" cudaError_t sgd_update_cuda(size_t n, float *w, const float *g, float lr,
                                       cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, sgd_kernel)(n, w, g, lr);
    return launch_status();
}

extern "C" cudaError_t momentum_update_cuda(size_t n, float *w, const float *g, float *vel,
                                            float lr, float momentum, int nesterov,
                                            cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    CNN_KERNEL(grid_for(n, 256), 256, stream, momentum_kernel)(
        n, w, g, vel, lr, momentum, nesterov);
    return launch_status();
}

extern "C" cudaError_t step_advance_cuda(int64_t *d_step, cudaStream_t stream) {
    CNN_KERNEL(1, 1, stream, step_advance_kernel)(d_step);
    return launch_status();
}
