/* cuda_emu.cc: the emulator's runtime (see cuda_emu.h): the block scheduler (one fiber per
 * CUDA thread, ucontext) and the few CUDA runtime calls the kernels and their tests make, with
 * host memory as device memory. */
#include "cuda_emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include <vector>

namespace emu {

uint3 thread_idx, block_idx;
dim3 block_dim, grid_dim;

namespace {

enum State { READY, AT_BARRIER, DONE };

struct Fiber {
    ucontext_t ctx;
    State state;
};

/* 256 KiB per fiber: the kernels' frames are small, but unoptimised and sanitizer builds
 * multiply them. Stacks are allocated once for the largest block seen and reused. */
constexpr size_t STACK_BYTES = 256 * 1024;

ucontext_t scheduler;
std::vector<Fiber> fibers;
/* The fiber stacks, freed at exit (so that the leak checker sees nothing). */
struct Stacks {
    std::vector<char *> list;
    ~Stacks() {
        for (char *s : list) free(s);
    }
};
Stacks stacks_owned;
int current = -1;
const std::function<void()> *body_now = nullptr;
cudaError_t last_error = cudaSuccess;
uint64_t order_state = 0;

/* The shuffle of each phase's thread order: CNN_EMU_SEED, else fresh each run (printed once,
 * so a run whose result depends on the order can be reproduced). */
uint64_t next_random() {
    if (order_state == 0) {
        const char *s = getenv("CNN_EMU_SEED");
        uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 24);
        fprintf(stderr, "cuda emulator: thread order CNN_EMU_SEED=%llu\n", (unsigned long long)seed);
        order_state = seed ? seed : 0x9E3779B97F4A7C15ull;
    }
    order_state ^= order_state >> 12;
    order_state ^= order_state << 25;
    order_state ^= order_state >> 27;
    return order_state * 2685821657736338717ull;
}

void fiber_main() {
    (*body_now)();
    fibers[current].state = DONE; /* then uc_link resumes the scheduler */
}

void set_thread(int t) {
    current = t;
    thread_idx.x = (unsigned)t % block_dim.x;
    thread_idx.y = (unsigned)t / block_dim.x % block_dim.y;
    thread_idx.z = (unsigned)t / (block_dim.x * block_dim.y);
}

void run_block(int threads) {
    for (int t = 0; t < threads; t++) {
        Fiber &f = fibers[t];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks_owned.list[t];
        f.ctx.uc_stack.ss_size = STACK_BYTES;
        f.ctx.uc_link = &scheduler;
        makecontext(&f.ctx, fiber_main, 0);
        f.state = READY;
    }
    std::vector<int> order;
    for (int live = threads; live > 0;) {
        order.clear();
        for (int t = 0; t < threads; t++)
            if (fibers[t].state == READY) order.push_back(t);
        for (size_t i = order.size(); i > 1; i--) {
            size_t j = (size_t)(next_random() % i);
            int tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
        /* Each READY thread runs until its next barrier or its end. */
        for (int t : order) {
            set_thread(t);
            swapcontext(&scheduler, &fibers[t].ctx);
            if (fibers[t].state == DONE) live--;
        }
        for (int t = 0; t < threads; t++)
            if (fibers[t].state == AT_BARRIER) fibers[t].state = READY;
    }
    current = -1;
}

} /* namespace */

void syncthreads() {
    if (current < 0) {
        fprintf(stderr, "cuda emulator: __syncthreads() outside a kernel\n");
        abort();
    }
    Fiber &f = fibers[current];
    f.state = AT_BARRIER;
    swapcontext(&f.ctx, &scheduler);
}

cudaError_t run_grid(dim3 grid, dim3 block, const std::function<void()> &body) {
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
        grid.x > 0x7FFFFFFFu || threads == 0 || threads > 1024 || block.z > 64) {
        last_error = cudaErrorInvalidConfiguration;
        return last_error;
    }
    if (current >= 0) {
        fprintf(stderr, "cuda emulator: a launch from inside a kernel\n");
        abort();
    }
    if (fibers.size() < threads) fibers.resize(threads);
    while (stacks_owned.list.size() < threads) {
        char *s = (char *)malloc(STACK_BYTES);
        if (!s) {
            last_error = cudaErrorMemoryAllocation;
            return last_error;
        }
        stacks_owned.list.push_back(s);
    }
    body_now = &body;
    grid_dim = grid;
    block_dim = block;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                block_idx.x = x;
                block_idx.y = y;
                block_idx.z = z;
                run_block((int)threads);
            }
    body_now = nullptr;
    return cudaSuccess;
}

} /* namespace emu */

/* ---- the CUDA runtime calls used by kernels/ and tests/gpu/test_kernels.c ------------------ */

/* The emulated device: an H100/H200's multiprocessor count, so that the kernels choose the
 * same tiles and split-K factors as on the GPUs they are tuned for. */
static const int EMU_SMS = 132;

cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu::last_error;
    emu::last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error (emulated)";
    case cudaErrorInvalidValue: return "invalid argument (emulated)";
    case cudaErrorMemoryAllocation: return "out of memory (emulated)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
    case cudaErrorNotSupported: return "operation not supported (emulated)";
    default: return "CUDA error (emulated)";
    }
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device) {
    if (device != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulator (tests/emu)");
    p->multiProcessorCount = EMU_SMS;
    p->major = 9;
    p->minor = 0;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->sharedMemPerBlock = 48 * 1024;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    if (device != 0) return cudaErrorInvalidDevice;
    if (attr != cudaDevAttrMultiProcessorCount) return cudaErrorNotSupported;
    *value = EMU_SMS;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    /* exact size (no rounding up), so AddressSanitizer flags the first byte past the end */
    if (posix_memalign(p, 256, bytes ? bytes : 1) != 0) {
        *p = NULL;
        return cudaErrorMemoryAllocation;
    }
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    memset(p, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind) {
    if (bytes) memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
