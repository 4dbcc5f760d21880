/* optimizers.cu: Adam, SGD and momentum as one pass over one contiguous parameter buffer on the
 * GPU, in the arithmetic order of kernels/optimizers.c. Adam's t comes from the device step
 * counter, so a captured step replays with the right bias correction. */
#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

__global__ void adam_kernel(size_t n, float *w, const float *g, float *m, float *v, float lr,
                            float beta1, float beta2, float eps, const int64_t *d_step) {
    const float t = (float)(*d_step + 1);
    /* As the CPU twin: the bias-corrected rate in float32 from beta^t. */
    const float b1p = powf(beta1, t), b2p = powf(beta2, t);
    const float lr_t = lr * sqrtf(1.0f - b2p) / (1.0f - b1p);
    const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i], mo = m[i], vo = v[i];
        float mi = mo + (gi - mo) * one_m_b1;
        float vi = vo + (gi * gi - vo) * one_m_b2;
        m[i] = mi;
        v[i] = vi;
        w[i] -= (mi * lr_t) / (sqrtf(vi) + eps);
    }
}

__global__ void sgd_kernel(size_t n, float *w, const float *g, float lr) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        w[i] -= lr * g[i];
}

__global__ void momentum_kernel(size_t n, float *w, const float *g, float *vel, float lr,
                                float momentum, int nesterov) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float a = vel[i] * momentum - g[i] * lr;
        vel[i] = a;
        w[i] += nesterov ? a * momentum - g[i] * lr : a;
    }
}

__global__ void step_advance_kernel(int64_t *d_step) { *d_step += 1; }

} /* namespace */

extern "C" cudaError_t adam_update_cuda(size_t n, float *w, const float *g, float *m, float *v,
                                        float lr, float beta1, float beta2, float eps,
                                        const int64_t *d_step, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (!d_step) return cudaErrorInvalidValue;
    /* Grid-stride with a few elements per thread: the powf setup is paid per thread. */
    unsigned blocks = grid_for((n + 3) / 4, 256);
    adam_kernel<<<blocks, 256, 0, stream>>>(n, w, g, m, v, lr, beta1, beta2, eps, d_step);
    return launch_status();
}

extern "C" cudaError_t sgd_update_cuda(size_t n, float *w, const float *g, float lr,
                                       cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    sgd_kernel<<<grid_for(n, 256), 256, 0, stream>>>(n, w, g, lr);
    return launch_status();
}

extern "C" cudaError_t momentum_update_cuda(size_t n, float *w, const float *g, float *vel,
                                            float lr, float momentum, int nesterov,
                                            cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    momentum_kernel<<<grid_for(n, 256), 256, 0, stream>>>(n, w, g, vel, lr, momentum, nesterov);
    return launch_status();
}

extern "C" cudaError_t step_advance_cuda(int64_t *d_step, cudaStream_t stream) {
    step_advance_kernel<<<1, 1, 0, stream>>>(d_step);
    return launch_status();
}
