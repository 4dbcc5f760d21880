/* cuda_common.cuh: what every .cu file of kernels/ shares (launch geometry, launch status). */
#ifndef KERNELS_CUDA_COMMON_CUH
#define KERNELS_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include <utility>

#include "kernels/kernels_cuda.h"

/* Every launch is written CNN_KERNEL(grid, block, stream, kernel)(args...), and every kernel's
 * first statement is pdl_wait_and_release() (below).
 *
 * Under nvcc the launch is cudaLaunchKernelEx with programmatic dependent launch (Hopper's PDL):
 * the attribute lets the GPU launch the kernel (schedule its blocks, read its parameters) while
 * the kernel before it in the stream still runs. Without it, a kernel's blocks are scheduled
 * only once the previous kernel has completed and flushed its writes: a gap between each two of
 * the training step's ~23 kernels, inside a CUDA graph too (docs/gpu.md item 16: not yet
 * measured here).
 * pdl_wait_and_release() waits (griddepcontrol.wait) until the previous kernel has completed
 * with its writes visible, so nothing a kernel reads or writes in memory moves earlier than
 * without PDL: the order and the results are the same bits (test_train checks); only the launch
 * latency is hidden. It then lets the next kernel launch (griddepcontrol.launch_dependents)
 * which waits in turn, so at most the next kernel's blocks are waiting at any time.
 * CNN_CUDA_PDL=0 (read at each launch; bench_step and test_train compare both, bench_kernels
 * times without) or cuda_pdl_disable() (the CUDA backend, when a graph capture with PDL fails)
 * launches with <<<>>> instead, as runs 1-3 did.
 *
 * Under the CPU emulator (tests/emu, which compiles these files as host C++ with CNN_CUDA_EMU)
 * the launch runs each block's threads as fibers, so the kernels' tests also run on machines
 * without a GPU; the emulator aborts if a thread reaches a barrier or its end without having
 * called pdl_wait_and_release(). */
#ifdef CNN_CUDA_EMU
#define CNN_KERNEL(grid, block, stream, ...)                                                  \
    ::emu::Launch((grid), (block), (stream), [](auto &&...emu_args_) { __VA_ARGS__(emu_args_...); })

static inline void pdl_wait_and_release(void) { ::emu::grid_dependency_wait(); }
#else
template <class... Params>
struct PdlLaunch {
    dim3 grid, block;
    cudaStream_t stream;
    void (*kernel)(Params...);
    /* A failed launch is reported by launch_status() (cudaGetLastError), as with <<<>>>. */
    template <class... Args>
    void operator()(Args &&...args) const {
        if (!cuda_pdl_enabled()) {
            kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
            return;
        }
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = 0;
        cfg.stream = stream;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
    }
};

template <class... Params>
static inline PdlLaunch<Params...> pdl_launch(dim3 grid, dim3 block, cudaStream_t stream,
                                              void (*kernel)(Params...)) {
    return PdlLaunch<Params...>{grid, block, stream, kernel};
}

#define CNN_KERNEL(grid, block, stream, ...) ::pdl_launch((grid), (block), (stream), __VA_ARGS__)

/* The first statement of every kernel (see above). Without the launch attribute (CNN_CUDA_PDL=0,
 * or a launch by another library) both instructions return at once. */
__device__ __forceinline__ void pdl_wait_and_release(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
#endif

/* Blocks for a grid-stride loop over n items: enough to fill the GPU a few times, never more
 * than the items need. */
static inline unsigned grid_for(size_t n, int threads) {
    size_t blocks = (n + (size_t)threads - 1) / (size_t)threads;
    if (blocks > 65535u * 8u) blocks = 65535u * 8u;
    return blocks == 0 ? 1u : (unsigned)blocks;
}

/* Whether p may be read or written as float4 / int4 vectors (16-byte aligned). */
static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

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
