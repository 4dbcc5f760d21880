/* cuda_emu.h: a CPU emulator for the CUDA C of kernels/, so that the GPU kernel tests run on
 * machines without a GPU (most of this project's machines, and CI).
 *
 * The .cu files of kernels/ are compiled as host C++ with this header force-included (-include) and
 * CNN_CUDA_EMU defined. The CUDA runtime headers supply the types (float4, dim3, cudaError_t);
 * this header turns the CUDA keywords into C++ (__shared__ becomes `static`: one copy shared by
 * the threads of the block running now), and CNN_KERNEL launches (cuda_common.cuh) call
 * emu::Launch, which runs the grid block by block; each block's threads are fibers on one OS
 * thread that switch only at __syncthreads(), in a shuffled order each phase (CNN_EMU_SEED), so
 * a result that depends on the order of threads between two barriers (a race) changes from run
 * to run. Device memory is host memory (cudaMalloc in cuda_emu.cc), so AddressSanitizer sees the
 * kernels' out-of-bounds reads and writes.
 *
 * Every kernel must call pdl_wait_and_release() before its first barrier and before it ends
 * (the emulator aborts otherwise; see grid_dependency_wait below).
 *
 * Every stream, the legacy default stream (0) included, queues its launches, copies, memsets
 * and event records/waits until a synchronising call, which runs queued work in a shuffled order
 * (CNN_EMU_SEED) that respects each stream's order, its event waits and CUDA's legacy-stream
 * rules (stream 0 orders with blocking streams, not with those made cudaStreamNonBlocking); a
 * stream synchronisation or a copy to host runs only what it waits for, so other streams lag
 * as far as a GPU lets them (cuda_emu.cc, "streams and events"): a result that needs a
 * dependency between streams which the code does not state changes from run to run, or is
 * stale, as a race between blocks of one kernel is. Stream capture records that work (the
 * origin stream's and its forks') into a graph instead, and a graph launch queues it again
 * (cuda_emu.cc, "graphs"): an unjoined fork or a synchronising call fails the capture.
 *
 * Warps exist only for the warp-wide collectives: the tensor-core product (mma_m16n8k8_tf32
 * below) and the shuffles and votes (__shfl_sync, __ballot_sync: warp_exchange), each over all
 * 32 lanes. What it does not model: partial-warp masks, warp-synchronous execution, timing, the memory model between blocks (blocks run one
 * after another), overlap of two
 * kernels (each runs to completion before the next queued operation), programmatic launch
 * (every kernel waits for the previous one to finish), the node and edge queries of a graph.
 * Races between threads of a block that are not separated by a barrier show up only as
 * order-dependent results; compute-sanitizer's racecheck on a GPU remains the check for them. */
#ifndef TESTS_EMU_CUDA_EMU_H
#define TESTS_EMU_CUDA_EMU_H

#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <utility>

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace emu {

/* The running thread's coordinates (one OS thread runs every fiber, so plain globals). */
extern uint3 thread_idx, block_idx;
extern dim3 block_dim, grid_dim;

/* Ends this fiber's phase: returns when every thread of the block has reached a barrier (or
 * returned). */
void syncthreads();

/* pdl_wait_and_release() (kernels/cuda_common.cuh): on the GPU it waits for the previous
 * kernel; here the previous launch has long finished, so it only records that the running
 * thread called it: a thread that reaches a barrier or its end without it aborts the test,
 * since with programmatic dependent launch such a kernel could read its inputs before they are
 * written. */
void grid_dependency_wait();

/* The tensor cores' TF32 product (kernels/mma_tf32.cuh): c += A B for one 16x8x8 tile whose
 * fragments the warp's 32 lanes hold (the layout of the PTX ISA, as in mma_tf32.cuh). A
 * collective of the warp (threads 32w .. 32w+31 of the block): each lane waits until all 32
 * have arrived, and the last computes every lane's result, in float32 in k order. It aborts
 * when an operand is not a TF32 value (low 13 bits not zero: a missing tf32_split) and when
 * some lanes of a warp wait at it while the others are at a barrier or have ended (on a GPU: a
 * hang or undefined results). */
void mma_m16n8k8_tf32(float c[4], const uint32_t a[4], const uint32_t b[2]);

/* The warp's shuffles and votes (__shfl_sync, __ballot_sync below): a collective of the 32
 * lanes, as the mma. Each lane gives a 32-bit value and, for a shuffle, the lane to read;
 * vote: the result is the mask of lanes whose value is non-zero. Aborts on a mask other than
 * the whole warp (the kernels use none) and when some lanes never arrive. */
uint32_t warp_exchange(unsigned mask, uint32_t value, int src, bool vote);

/* Runs body() as every thread of every block of the grid; returns the launch's status (bad
 * configurations as the CUDA runtime reports them). */
cudaError_t run_grid(dim3 grid, dim3 block, const std::function<void()> &body);

/* Whether a launch configuration is one the CUDA runtime accepts (else the launch fails at once
 * with cudaErrorInvalidConfiguration, as on a GPU). */
bool launch_config_ok(dim3 grid, dim3 block);

/* How many warp-wide mma instructions have run so far (tests: GEMM version 5 did use them). */
extern "C" size_t cuda_emu_mma_count(void);

/* How many graphs were instantiated and launched so far (tests: graphs did run). */
extern "C" void cuda_emu_graph_counts(size_t *instantiated, size_t *launched);

/* Puts op at the end of the stream's queue (see "streams and events" in cuda_emu.cc): its work
 * waits for a synchronising call, on the default stream (0) too. */
void enqueue(cudaStream_t stream, std::function<void()> op);

/* CNN_KERNEL(grid, block, stream, kernel)(args...): kernel is called as a generic lambda so
 * that template kernels deduce their parameters from the arguments, as with <<<>>>. */
template <class Kernel>
struct Launch {
    dim3 grid, block;
    cudaStream_t stream;
    Kernel kernel;
    Launch(dim3 g, dim3 b, cudaStream_t s, Kernel k) : grid(g), block(b), stream(s), kernel(k) {}
    template <class Kernel2, class... Args>
    static void run(dim3 grid, dim3 block, const Kernel2 &kernel, const std::tuple<Args...> &saved) {
        run_grid(grid, block, [&]() {
            /* each thread gets its own copies of the parameters, as on the GPU */
            std::tuple<Args...> mine = saved;
            std::apply(kernel, mine);
        });
    }
    template <class... Args>
    void operator()(Args... args) const {
        if (!launch_config_ok(grid, block)) return;
        std::tuple<Args...> saved(args...);
        const dim3 g = grid, b = block;
        const Kernel k = kernel;
        enqueue(stream, [g, b, k, saved]() { run(g, b, k, saved); });
    }
};

} /* namespace emu */

#define threadIdx (::emu::thread_idx)
#define blockIdx (::emu::block_idx)
#define blockDim (::emu::block_dim)
#define gridDim (::emu::grid_dim)

static inline void __syncthreads(void) { ::emu::syncthreads(); }

/* Device-side helpers the kernels use. One OS thread runs every fiber, so an atomic is a plain
 * read-modify-write. */
static inline int atomicAdd(int *p, int v) {
    int old = *p;
    *p = old + v;
    return old;
}
static inline unsigned atomicAdd(unsigned *p, unsigned v) {
    unsigned old = *p;
    *p = old + v;
    return old;
}
static inline float atomicAdd(float *p, float v) {
    float old = *p;
    *p = old + v;
    return old;
}
/* A fence making this thread's writes visible to the whole device before its later ones: the
 * blocks run one after another here, so every write is already visible. */
static inline void __threadfence(void) {}
/* A load through the read-only data cache: a plain load here. */
static inline float __ldg(const float *p) { return *p; }
static inline float4 __ldg(const float4 *p) { return *p; }
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return ::emu::warp_exchange(mask, pred != 0, 0, true);
}
static inline int __shfl_sync(unsigned mask, int v, int src) {
    return (int)::emu::warp_exchange(mask, (uint32_t)v, src, false);
}
static inline float __shfl_sync(unsigned mask, float v, int src) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u = ::emu::warp_exchange(mask, u, src, false);
    memcpy(&v, &u, sizeof v);
    return v;
}
static inline int __ffs(unsigned v) { return __builtin_ffs((int)v); }
static inline int __popc(unsigned v) { return __builtin_popcount(v); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline size_t min(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t max(size_t a, size_t b) { return a > b ? a : b; }

#endif /* TESTS_EMU_CUDA_EMU_H */
