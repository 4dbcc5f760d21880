/* cuda_common.cuh: what every .cu file of kernels/ shares (launch geometry, launch status). */
#ifndef KERNELS_CUDA_COMMON_CUH
#define KERNELS_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* Every launch is written CNN_KERNEL(grid, block, stream, kernel)(args...): the <<<>>> launch
 * under nvcc; under the CPU emulator (tests/emu, which compiles these files as host C++ with
 * CNN_CUDA_EMU) a call that runs each block's threads as fibers, so the kernels' tests also run
 * on machines without a GPU. */
#ifdef CNN_CUDA_EMU
#define CNN_KERNEL(grid, block, stream, ...)                                                  \
    ::emu::Launch((grid), (block), (stream), [](auto &&...emu_args_) { __VA_ARGS__(emu_args_...); })
#else
#define CNN_KERNEL(grid, block, stream, ...) __VA_ARGS__<<<(grid), (block), 0, (stream)>>>
#endif

/* Blocks for a grid-stride loop over n items: enough to fill the GPU a few times, never more
 * than the items need. */
static inline unsigned grid_for(size_t n, int threads) {
    size_t blocks = (n + (size_t)threads - 1) / (size_t)threads;
    if (blocks > 65535u * 8u) blocks = 65535u * 8u;
    return blocks == 0 ? 1u : (unsigned)blocks;
}

/* The launch status of the kernel just enqueued (configuration errors show up here; faults
 * inside the kernel at the next synchronising call). */
static inline cudaError_t launch_status(void) { return cudaGetLastError(); }

/* Number of multiprocessors of the current device (cached; 132 on an H100 SXM/H200). */
static inline int device_sm_count(void) {
    static int cached = 0;
    if (cached == 0) {
        int dev = 0, sms = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            sms <= 0) {
            cudaGetLastError(); /* clear: fall back to a fixed count */
            sms = 132;
        }
        cached = sms;
    }
    return cached;
}

/* The sum of every thread's v over one block of THREADS threads (a power of two), in a fixed
 * tree order: deterministic. part is the block's __shared__ double[THREADS]; the result is
 * valid in every thread after the call (which holds barriers: call it from all threads). */
template <int THREADS>
__device__ __forceinline__ double block_tree_sum(double *part, double v) {
    static_assert((THREADS & (THREADS - 1)) == 0, "a power of two");
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    return part[0];
}

/* Division by a run-time constant without the ~20-instruction integer divide: for 0 <= x < 2^31
 * and 1 <= d < 2^31, x / d = (x * mul) >> shift with l = ceil(log2 d), shift = 31 + l,
 * mul = ceil(2^shift / d) (< 2^32). Exact: mul*d - 2^shift = e < d <= 2^l, so x*e < 2^shift
 * (Granlund & Montgomery). Set up on the host, used in the kernels' index arithmetic. */
struct FastDiv {
    uint32_t d, mul, shift;
    FastDiv() = default;
    __host__ explicit FastDiv(int divisor) {
        d = (uint32_t)(divisor > 0 ? divisor : 1);
        uint32_t l = 0;
        while ((1ull << l) < d) l++;
        shift = 31 + l;
        mul = (uint32_t)(((1ull << shift) + d - 1) / d);
    }
    __host__ __device__ __forceinline__ int div(int x) const {
        return (int)(((uint64_t)(uint32_t)x * mul) >> shift);
    }
    /* x = q*d + r */
    __host__ __device__ __forceinline__ int divmod(int x, int *r) const {
        int q = div(x);
        *r = x - q * (int)d;
        return q;
    }
};

#endif /* KERNELS_CUDA_COMMON_CUH */
