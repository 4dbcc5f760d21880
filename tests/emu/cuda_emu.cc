/* cuda_emu.cc: the emulator's runtime (see cuda_emu.h): the block scheduler (one fiber per
 * CUDA thread) and the few CUDA runtime calls the kernels and their tests make, with
 * host memory as device memory. */
#include "cuda_emu.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

/* Fiber switching: a 20-instruction switch of the callee-saved registers and the stack
 * pointer on x86-64 (ucontext's swapcontext makes a system call per switch, to save the signal
 * mask, which made it a third of an emulated test's time); ucontext elsewhere. Under
 * AddressSanitizer the fast switch tells ASan of each stack change (its fiber API), as its
 * swapcontext interceptor would; that interceptor also cleared the shadow of the whole target
 * stack at every switch, 60% of a sanitizer run's time with the system call (perf, GEMM
 * version 5: an mma is a switch per lane). */
#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__x86_64__)
#define EMU_FAST_SWITCH 1
/* emu_switch(from, to): saves rbp, rbx, r12-r15, MXCSR and the x87 control word on the current
 * stack, stores the stack pointer in *from, loads `to` and restores the same from there. */
extern "C" void emu_switch(void **from, void *to);
__asm__(".text\n"
        ".globl emu_switch\n"
        ".type emu_switch,@function\n"
        "emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_switch, .-emu_switch\n");
#else
#include <ucontext.h>
#endif

namespace emu {

uint3 thread_idx, block_idx;
dim3 block_dim, grid_dim;

/* Runs every stream's queued work (see "streams and events" below). */
void drain();
/* Runs what the stream has queued (and what that waits for): cudaStreamSynchronize. */
void drain_stream(cudaStream_t stream);

namespace {

/* AT_WARP: waiting in a warp collective (mma_m16n8k8_tf32) for the rest of its warp. */
enum State { READY, AT_BARRIER, AT_WARP, DONE };

struct Fiber {
#ifdef EMU_FAST_SWITCH
    void *sp;
#else
    ucontext_t ctx;
#endif
    State state;
    bool waited; /* called grid_dependency_wait() */
};

/* 64 KiB per fiber: the kernels' frames are a few KiB, sanitizer redzones included. (Under
 * AddressSanitizer a stack's shadow is cleared each time a block's thread starts on it, so its
 * size is paid once per thread.) Stacks are allocated once for the largest block seen and
 * reused. */
constexpr size_t STACK_BYTES = 64 * 1024;

/* The fiber stacks, freed at exit (so that the leak checker sees nothing). */
struct Stacks {
    std::vector<char *> list;
    ~Stacks() {
        for (char *s : list) free(s);
    }
};
Stacks stacks_owned;
#ifdef EMU_FAST_SWITCH
void *scheduler_sp;
#else
ucontext_t scheduler;
#endif
std::vector<Fiber> fibers;
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

#if defined(EMU_FAST_SWITCH) && defined(EMU_ASAN)
/* The scheduler's stack, as ASan's fiber API needs it to switch back there: learnt when a
 * fiber starts (__sanitizer_finish_switch_fiber reports the stack it came from). */
const void *scheduler_stack_bottom;
size_t scheduler_stack_size;
#endif

/* Switches from the running fiber back to the scheduler; a DONE fiber is never resumed (ASan
 * frees its fake stack: a null save slot). */
void to_scheduler() {
#ifdef EMU_FAST_SWITCH
#ifdef EMU_ASAN
    void *fake_stack = nullptr;
    __sanitizer_start_switch_fiber(fibers[current].state == DONE ? nullptr : &fake_stack,
                                   scheduler_stack_bottom, scheduler_stack_size);
    emu_switch(&fibers[current].sp, scheduler_sp);
    __sanitizer_finish_switch_fiber(fake_stack, &scheduler_stack_bottom, &scheduler_stack_size);
#else
    emu_switch(&fibers[current].sp, scheduler_sp);
#endif
#else
    swapcontext(&fibers[current].ctx, &scheduler);
#endif
}

/* Switches from the scheduler into fiber t. */
void from_scheduler(int t) {
#ifdef EMU_FAST_SWITCH
#ifdef EMU_ASAN
    void *fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, stacks_owned.list[t], STACK_BYTES);
    emu_switch(&scheduler_sp, fibers[t].sp);
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
    emu_switch(&scheduler_sp, fibers[t].sp);
#endif
#else
    swapcontext(&scheduler, &fibers[t].ctx);
#endif
}

/* Aborts unless the running thread has called pdl_wait_and_release(); `where` says at what. */
void require_waited(const char *where) {
    if (fibers[current].waited) return;
    fprintf(stderr, "cuda emulator: thread %u of block %u reached %s without calling "
            "pdl_wait_and_release() first (kernels/cuda_common.cuh: every kernel's first "
            "statement)\n", thread_idx.x, block_idx.x, where);
    abort();
}

void fiber_main() {
#if defined(EMU_FAST_SWITCH) && defined(EMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &scheduler_stack_bottom, &scheduler_stack_size);
#endif
    (*body_now)();
    require_waited("its end");
    fibers[current].state = DONE;
#ifdef EMU_FAST_SWITCH
    to_scheduler(); /* never resumed */
    abort();
#endif
    /* ucontext: returning resumes uc_link, the scheduler */
}

/* Makes fiber t start at fiber_main on its own stack. */
void init_fiber(int t) {
    Fiber &f = fibers[t];
    char *stack = stacks_owned.list[t];
#ifdef EMU_FAST_SWITCH
    /* The frame emu_switch pops: MXCSR and x87 control word (their defaults), six zeroed
     * registers, and fiber_main as the return address; then a null return address for
     * fiber_main itself, which never returns. fiber_main starts with rsp % 16 == 8, as after a
     * call. */
#ifdef EMU_ASAN
    /* The stack's last user never returned from its last frames (fiber_main, to_scheduler):
     * their redzones are still poisoned where the frame below is written. */
    ASAN_UNPOISON_MEMORY_REGION(stack, STACK_BYTES);
#endif
    uintptr_t top = ((uintptr_t)(stack + STACK_BYTES)) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 72);
    sp[0] = 0x1F80u | ((uint64_t)0x037Fu << 32); /* MXCSR, then FPU control word */
    for (int i = 1; i <= 6; i++) sp[i] = 0;
    sp[7] = (uint64_t)(uintptr_t)&fiber_main;
    sp[8] = 0;
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = STACK_BYTES;
    f.ctx.uc_link = &scheduler;
    makecontext(&f.ctx, fiber_main, 0);
#endif
    f.state = READY;
    f.waited = false;
}

void set_thread(int t) {
    current = t;
    thread_idx.x = (unsigned)t % block_dim.x;
    thread_idx.y = (unsigned)t / block_dim.x % block_dim.y;
    thread_idx.z = (unsigned)t / (block_dim.x * block_dim.y);
}

/* A warp collective's inputs, one per thread of the block (see mma_m16n8k8_tf32), and how
 * many lanes of each warp have arrived. */
struct MmaLane {
    uint32_t a[4], b[2];
    float *c;
};
MmaLane mma_lanes[1024];
/* A shuffle's or vote's value and source lane, per thread, and each thread's result. */
struct ExchangeLane {
    uint32_t value;
    int src;
    uint32_t result;
};
ExchangeLane exchange_lanes[1024];
int mma_arrived[32]; /* lanes arrived at the warp's collective (an mma, a shuffle or a vote) */
size_t mma_count = 0;
int block_threads = 0;

void run_block(int threads) {
    for (int t = 0; t < threads; t++) init_fiber(t);
    block_threads = threads;
    memset(mma_arrived, 0, sizeof mma_arrived);
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
            from_scheduler(t);
            if (fibers[t].state == DONE) live--;
        }
        /* Threads released from a warp collective run on before the barrier opens; lanes
         * still waiting in one when nothing else can run would hang a GPU. */
        bool ready = false;
        int waiting = -1;
        for (int t = 0; t < threads; t++) {
            if (fibers[t].state == READY) ready = true;
            if (fibers[t].state == AT_WARP) waiting = t;
        }
        if (ready) continue;
        if (waiting >= 0) {
            fprintf(stderr, "cuda emulator: block %u: %d lanes of warp %d wait in a warp-wide "
                    "mma, shuffle or vote that the other lanes never reach (they are at a "
                    "barrier or ended)\n",
                    block_idx.x, mma_arrived[waiting / 32], waiting / 32);
            abort();
        }
        for (int t = 0; t < threads; t++)
            if (fibers[t].state == AT_BARRIER) fibers[t].state = READY;
    }
    current = -1;
}

float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The tensor cores' rounding as the mma models it: the products of two TF32 values are exact
 * (11 x 11 significant bits) and are summed with C, then the sum is cut toward zero to float32.
 * Fasi et al., "Numerical behavior of NVIDIA tensor cores" (PeerJ Comput. Sci. 7:e330, 2021)
 * found round-toward-zero in the tensor cores' additions (V100, T4, A100); the model sums in
 * double, one cut at the end, which is close to, not exactly, the hardware's alignment. What
 * it keeps is the hardware's bias: every mma pulls its accumulator toward zero by up to an ulp,
 * so a long chain of mmas into one accumulator drifts (GPU run 5: conv2's forward 7e-5 off the
 * CPU over 300 mmas, gemm_cuda.cuh), where round-to-nearest fmaf would hide that. */
/* Beyond FLT_MAX the cut gives FLT_MAX (IEEE's round toward zero; what the hardware gives there
 * is not known: a float32 FMA chain would give inf). */
float round_toward_zero(double v) {
    if (fabs(v) > (double)FLT_MAX && !isinf(v)) return v > 0 ? FLT_MAX : -FLT_MAX;
    float f = (float)v;
    if (fabs((double)f) > fabs(v)) f = nextafterf(f, 0.0f);
    return f;
}

/* An mma operand as a float; aborts unless it is a TF32 value (low 13 bits zero). */
float tf32_operand(uint32_t u, const char *which, int lane) {
    if (u & 0x1FFFu) {
        fprintf(stderr, "cuda emulator: block %u: lane %d's mma operand %s (0x%08x) is not a TF32 "
                "value (split it with tf32_split first)\n", block_idx.x, lane,
                which, u);
        abort();
    }
    return bits_float(u);
}

} /* namespace */

void syncthreads() {
    if (current < 0) {
        fprintf(stderr, "cuda emulator: __syncthreads() outside a kernel\n");
        abort();
    }
    require_waited("__syncthreads()");
    fibers[current].state = AT_BARRIER;
    to_scheduler();
}

void mma_m16n8k8_tf32(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    if (current < 0) {
        fprintf(stderr, "cuda emulator: mma outside a kernel\n");
        abort();
    }
    if (block_threads % 32 != 0) {
        fprintf(stderr, "cuda emulator: mma in a block of %d threads (not whole warps)\n",
                block_threads);
        abort();
    }
    const int warp = current / 32;
    MmaLane &me = mma_lanes[current];
    memcpy(me.a, a, sizeof me.a);
    memcpy(me.b, b, sizeof me.b);
    me.c = c;
    if (++mma_arrived[warp] < 32) {
        fibers[current].state = AT_WARP;
        to_scheduler();
        return;
    }
    /* The last lane: gather A[16][8] and B[8][8] from the fragments, then each lane's D. */
    mma_arrived[warp] = 0;
    mma_count++;
    float A[16][8], B[8][8];
    for (int lane = 0; lane < 32; lane++) {
        const MmaLane &l = mma_lanes[warp * 32 + lane];
        const int g = lane / 4, t = lane % 4;
        A[g][t] = tf32_operand(l.a[0], "a0", lane);
        A[g + 8][t] = tf32_operand(l.a[1], "a1", lane);
        A[g][t + 4] = tf32_operand(l.a[2], "a2", lane);
        A[g + 8][t + 4] = tf32_operand(l.a[3], "a3", lane);
        B[t][g] = tf32_operand(l.b[0], "b0", lane);
        B[t + 4][g] = tf32_operand(l.b[1], "b1", lane);
    }
    for (int lane = 0; lane < 32; lane++) {
        float *d = mma_lanes[warp * 32 + lane].c;
        const int g = lane / 4, t = lane % 4;
        for (int i = 0; i < 4; i++) {
            const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
            double sum = d[i];
            for (int k = 0; k < 8; k++) sum += (double)A[row][k] * (double)B[k][col];
            d[i] = round_toward_zero(sum);
        }
        if (warp * 32 + lane != current) fibers[warp * 32 + lane].state = READY;
    }
}

uint32_t warp_exchange(unsigned mask, uint32_t value, int src, bool vote) {
    if (current < 0 || block_threads % 32 != 0 || mask != 0xFFFFFFFFu) {
        fprintf(stderr, "cuda emulator: a shuffle or vote outside a kernel, in a block that is "
                "not whole warps, or with a mask of less than the whole warp (0x%08x)\n", mask);
        abort();
    }
    const int warp = current / 32;
    ExchangeLane &me = exchange_lanes[current];
    me.value = value;
    me.src = src & 31;
    if (++mma_arrived[warp] < 32) {
        fibers[current].state = AT_WARP;
        to_scheduler();
        return me.result;
    }
    /* The last lane: every lane's result, before any lane runs on (a lane that reaches the
     * next collective first only deposits its value there). */
    mma_arrived[warp] = 0;
    uint32_t bits = 0;
    for (int lane = 0; lane < 32; lane++)
        if (exchange_lanes[warp * 32 + lane].value) bits |= 1u << lane;
    for (int lane = 0; lane < 32; lane++) {
        ExchangeLane &l = exchange_lanes[warp * 32 + lane];
        l.result = vote ? bits : exchange_lanes[warp * 32 + l.src].value;
        if (warp * 32 + lane != current) fibers[warp * 32 + lane].state = READY;
    }
    return me.result;
}

void grid_dependency_wait() {
    if (current < 0) {
        fprintf(stderr, "cuda emulator: pdl_wait_and_release() outside a kernel\n");
        abort();
    }
    fibers[current].waited = true;
}

bool launch_config_ok(dim3 grid, dim3 block) {
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
        grid.x > 0x7FFFFFFFu || threads == 0 || threads > 1024 || block.z > 64) {
        last_error = cudaErrorInvalidConfiguration;
        return false;
    }
    return true;
}

cudaError_t run_grid(dim3 grid, dim3 block, const std::function<void()> &body) {
    if (!launch_config_ok(grid, block)) return last_error;
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
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

/* The errors the emulator reports: name and text (cudaGetErrorName / cudaGetErrorString). */
static const struct {
    cudaError_t e;
    const char *name, *text;
} EMU_ERRORS[] = {
    {cudaSuccess, "cudaSuccess", "no error (emulated)"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument (emulated)"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory (emulated)"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument (emulated)"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported (emulated)"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "stream capture unsupported (emulated)"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "a synchronising call during the capture invalidated it (emulated)"},
    {cudaErrorStreamCaptureUnjoined, "cudaErrorStreamCaptureUnjoined",
     "a forked stream was not joined back into the capture (emulated)"},
    {cudaErrorStreamCaptureIsolation, "cudaErrorStreamCaptureIsolation",
     "a captured stream waited on work outside the capture (emulated)"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "no such capture (emulated)"},
};

const char *cudaGetErrorString(cudaError_t e) {
    for (const auto &k : EMU_ERRORS)
        if (k.e == e) return k.text;
    return "CUDA error (emulated)";
}

const char *cudaGetErrorName(cudaError_t e) {
    for (const auto &k : EMU_ERRORS)
        if (k.e == e) return k.name;
    return "cudaError (emulated)";
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
    emu::drain();
    free(p);
    return cudaSuccess;
}

/* The legacy default stream's memset: asynchronous for device memory, so it runs in that
 * stream's order, maybe after this returns (a stream made non-blocking does not wait for it). */
cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    if (bytes) emu::enqueue(0, [p, value, bytes]() { memset(p, value, bytes); });
    return cudaSuccess;
}

/* The legacy default stream's copy, with the runtime's host synchronisation: from host memory
 * the source is staged at once (the caller may reuse it when this returns) and the copy into
 * device memory runs in the stream's order, maybe later; to host memory it returns once the copy
 * (and the stream's earlier work) is done; device to device it does not wait. */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    if (!bytes) return cudaSuccess;
    if (kind == cudaMemcpyHostToDevice) {
        auto staged = std::make_shared<std::vector<uint8_t>>((const uint8_t *)src,
                                                             (const uint8_t *)src + bytes);
        emu::enqueue(0, [dst, staged]() { memmove(dst, staged->data(), staged->size()); });
        return cudaSuccess;
    }
    emu::enqueue(0, [dst, src, bytes]() { memmove(dst, src, bytes); });
    if (kind != cudaMemcpyDeviceToDevice) emu::drain_stream(0);
    return cudaSuccess;
}


/* ---- streams and events ------------------------------------------------------------------ *
 * Every stream queues what is issued to it (launches, copies, memsets, event records and
 * waits), the legacy default stream (0) too. A synchronising call runs queued operations, one at
 * a time, until what it waits for is done: cudaDeviceSynchronize, cudaFree and the destroys
 * everything; cudaStreamSynchronize(s) and a copy to host memory (the legacy stream's) only that
 * stream's work and, when it waits on an event, what it needs, so that other streams lag as far
 * as a GPU lets them. Each step runs the awaited stream's next operation when it may run, else
 * one from a stream picked at random (CNN_EMU_SEED) among those whose next operation may run
 * (not a wait on an event whose record has not run yet). Each stream keeps its order; between
 * streams the event waits order the work, and CUDA's legacy default stream semantics: work on
 * stream 0 waits for the work issued before it on every blocking stream (made without
 * cudaStreamNonBlocking), and work on a blocking stream for the work issued before it on stream
 * 0; a non-blocking stream does not order with stream 0 at all. So reading a non-blocking
 * stream's result through cudaMemcpy without synchronising that stream, or a stream 0 memset or
 * upload that a non-blocking stream's kernel does not wait for, gives stale data. A cycle of
 * waits would never finish on a GPU: here it aborts. */
namespace emu {
namespace {

struct EmuEvent {
    uint64_t recorded = 0;  /* records issued so far */
    uint64_t completed = 0; /* the latest record that has run */
};

struct QueuedOp {
    std::function<void()> run; /* a launch or a copy, or empty */
    EmuEvent *record = nullptr;  /* set completed = ticket */
    EmuEvent *wait = nullptr;    /* runnable once completed >= ticket */
    uint64_t ticket = 0;
};

struct EmuStream {
    std::vector<QueuedOp> ops; /* pending, in issue order */
    size_t head = 0;
    bool blocking = false;     /* ordered with the legacy stream (made without NonBlocking) */
};

EmuStream legacy;                         /* stream 0 */
std::vector<EmuStream *> streams{&legacy};
std::deque<EmuEvent> implicit_events;     /* the legacy stream's orderings (push) */

EmuStream *stream_of(cudaStream_t stream) {
    return stream == 0 || stream == cudaStreamLegacy ? &legacy
                                                      : reinterpret_cast<EmuStream *>(stream);
}

bool pending(const EmuStream *st) { return st->head < st->ops.size(); }

bool runnable(const EmuStream *st) {
    if (st->head >= st->ops.size()) return false;
    const QueuedOp &op = st->ops[st->head];
    return !op.wait || op.wait->completed >= op.ticket;
}

/* Runs a launch or copy, or completes an event record (a wait has nothing to do once runnable). */
void perform(const QueuedOp &op) {
    if (op.run) op.run();
    if (op.record && op.ticket > op.record->completed) op.record->completed = op.ticket;
}

} /* namespace */

/* ---- graph capture (see "graphs" below) ---- */
struct CapturedOp {
    EmuStream *stream;  /* where it was issued: the origin stream or one forked from it */
    QueuedOp op;        /* its event tickets are issued again at every replay */
};

struct EmuGraph {
    std::vector<CapturedOp> ops;  /* in issue order */
    EmuStream *origin = nullptr;
};

namespace {

/* The capture in progress (one at a time, as the backends use it), else null. */
EmuGraph *capturing = nullptr;
std::vector<EmuStream *> captured_streams; /* the origin, then the streams forked from it */
/* events recorded by captured streams, with their record count before the capture (the
 * capture's records never run: the count goes back at its end, so that later waits outside it
 * wait for records that do run) */
std::vector<std::pair<EmuEvent *, uint64_t>> captured_events;
bool capture_invalidated = false;          /* a synchronising call happened during it */

bool in_capture(const EmuStream *st) {
    for (EmuStream *c : captured_streams)
        if (c == st) return true;
    return false;
}

/* `waiter` waits for what `before` has queued so far (an implicit event). */
void order_after(EmuStream *waiter, EmuStream *before) {
    EmuEvent *e = &implicit_events.emplace_back();
    QueuedOp rec, wait;
    rec.record = wait.wait = e;
    rec.ticket = wait.ticket = ++e->recorded;
    before->ops.push_back(rec);
    waiter->ops.push_back(wait);
}

void push(cudaStream_t stream, QueuedOp op) {
    EmuStream *st = stream_of(stream);
    if (capturing && in_capture(st)) {
        capturing->ops.push_back(CapturedOp{st, std::move(op)});
        return;
    }
    if (st == &legacy) {
        for (EmuStream *b : streams)
            if (b != &legacy && b->blocking && pending(b)) order_after(&legacy, b);
    } else if (st->blocking && pending(&legacy)) {
        order_after(st, &legacy);
    }
    st->ops.push_back(std::move(op));
}

/* Runs queued operations until done() (see "streams and events" above); `awaited`, when not
 * null, is the stream whose next operation goes first whenever it may run. */
template <class Done>
void run_until(EmuStream *awaited, Done done) {
    if (capturing) capture_invalidated = true; /* a GPU cannot synchronise inside a capture */
    std::vector<EmuStream *> ready;
    while (!done()) {
        ready.clear();
        bool any = false;
        for (EmuStream *st : streams) {
            any |= pending(st);
            if (runnable(st)) ready.push_back(st);
        }
        if (!any) break;
        if (ready.empty()) {
            fprintf(stderr, "cuda emulator: streams wait on each other's events in a cycle\n");
            abort();
        }
        EmuStream *st = awaited && runnable(awaited)
                            ? awaited
                            : ready[(size_t)(next_random() % ready.size())];
        QueuedOp op = st->ops[st->head++];
        perform(op);
        if (st->head == st->ops.size()) {
            st->ops.clear();
            st->head = 0;
        }
    }
    if (!pending(&legacy) && implicit_events.size() > 4096) {
        bool idle = true;
        for (EmuStream *st : streams) idle &= !pending(st);
        if (idle) implicit_events.clear(); /* no queued operation refers to one */
    }
}

} /* namespace */

void drain() {
    run_until(nullptr, []() { return false; });
}

void drain_stream(cudaStream_t stream) {
    EmuStream *st = stream_of(stream);
    run_until(st, [st]() { return !pending(st); });
}

void enqueue(cudaStream_t stream, std::function<void()> op) {
    QueuedOp q;
    q.run = std::move(op);
    push(stream, std::move(q));
}

} /* namespace emu */

cudaError_t cudaDeviceSynchronize(void) {
    emu::drain();
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    emu::EmuStream *st = new emu::EmuStream();
    st->blocking = !(flags & cudaStreamNonBlocking);
    emu::streams.push_back(st);
    *stream = reinterpret_cast<cudaStream_t>(st);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    emu::drain();
    if (emu::stream_of(stream) == &emu::legacy) return cudaErrorInvalidResourceHandle;
    for (size_t i = 0; i < emu::streams.size(); i++)
        if (reinterpret_cast<cudaStream_t>(emu::streams[i]) == stream) {
            delete emu::streams[i];
            emu::streams.erase(emu::streams.begin() + (long)i);
            break;
        }
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    emu::drain_stream(stream);
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int) {
    *event = reinterpret_cast<cudaEvent_t>(new emu::EmuEvent());
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    emu::drain();
    delete reinterpret_cast<emu::EmuEvent *>(event);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    emu::EmuEvent *ev = reinterpret_cast<emu::EmuEvent *>(event);
    emu::EmuStream *st = emu::stream_of(stream);
    emu::QueuedOp q;
    q.record = ev;
    q.ticket = ++ev->recorded;
    if (emu::capturing && emu::in_capture(st)) {
        bool seen = false;
        for (const auto &c : emu::captured_events) seen |= c.first == ev;
        if (!seen) emu::captured_events.push_back({ev, q.ticket - 1});
    }
    emu::push(stream, std::move(q));
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
    emu::EmuEvent *ev = reinterpret_cast<emu::EmuEvent *>(event);
    emu::EmuStream *st = emu::stream_of(stream);
    if (emu::capturing) {
        bool captured_event = false;
        for (const auto &c : emu::captured_events) captured_event |= c.first == ev;
        /* waiting on an event recorded in the capture forks `stream` into it */
        if (captured_event && st != &emu::legacy && !emu::in_capture(st))
            emu::captured_streams.push_back(st);
        /* a captured stream may not wait on work outside the capture */
        if (emu::in_capture(st) && !captured_event) return cudaErrorStreamCaptureIsolation;
    }
    if (ev->recorded == 0) return cudaSuccess; /* never recorded: nothing to wait for */
    emu::QueuedOp q;
    q.wait = ev;
    q.ticket = ev->recorded; /* the latest record at the time of this call */
    emu::push(stream, std::move(q));
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind,
                            cudaStream_t stream) {
    if (bytes) emu::enqueue(stream, [dst, src, bytes]() { memmove(dst, src, bytes); });
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream) {
    if (bytes) emu::enqueue(stream, [p, value, bytes]() { memset(p, value, bytes); });
    return cudaSuccess;
}

/* ---- graphs ------------------------------------------------------------------------------ *
 * Stream capture records what is issued to the origin stream, and to every stream that waits
 * on an event recorded in the capture (a fork), instead of queueing it; nothing runs. The capture
 * fails as on a GPU when a synchronising call happens during it (cudaErrorStreamCaptureInvalidated)
 * or when a forked stream's last work is not waited for by the origin (Unjoined). A launch of
 * the graph queues the recorded operations again, each on its stream (the origin's on the
 * launch's stream), with fresh event tickets, so a replay keeps the captured dependencies and
 * is interleaved with other streams like any queued work. CNN_EMU_CAPTURE=0 refuses every
 * capture (cudaErrorStreamCaptureUnsupported), as a driver might refuse one. */
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode) {
    const char *v = getenv("CNN_EMU_CAPTURE");
    if (v && strcmp(v, "0") == 0) return cudaErrorStreamCaptureUnsupported;
    emu::EmuStream *st = emu::stream_of(stream);
    if (st == &emu::legacy || emu::capturing) return cudaErrorIllegalState;
    emu::capturing = new emu::EmuGraph();
    emu::capturing->origin = st;
    emu::captured_streams.assign(1, st);
    emu::captured_events.clear();
    emu::capture_invalidated = false;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
    *graph = NULL;
    emu::EmuStream *st = emu::stream_of(stream);
    if (!emu::capturing || emu::capturing->origin != st) return cudaErrorIllegalState;
    emu::EmuGraph *g = emu::capturing;
    emu::capturing = nullptr;
    cudaError_t e = emu::capture_invalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
    /* every forked stream joined: its last captured operation is an event record that the
     * origin waits for later in the capture */
    for (size_t s = 1; s < emu::captured_streams.size() && e == cudaSuccess; s++) {
        long last = -1;
        for (size_t i = 0; i < g->ops.size(); i++)
            if (g->ops[i].stream == emu::captured_streams[s]) last = (long)i;
        if (last < 0) continue;
        const emu::QueuedOp &rec = g->ops[(size_t)last].op;
        bool joined = false;
        for (size_t i = (size_t)last + 1; i < g->ops.size() && rec.record; i++)
            joined |= g->ops[i].stream == st && g->ops[i].op.wait == rec.record &&
                      g->ops[i].op.ticket >= rec.ticket;
        if (!joined) e = cudaErrorStreamCaptureUnjoined;
    }
    for (const auto &c : emu::captured_events) c.first->recorded = c.second;
    emu::captured_streams.clear();
    emu::captured_events.clear();
    if (e != cudaSuccess) {
        delete g;
        return e;
    }
    *graph = reinterpret_cast<cudaGraph_t>(g);
    return cudaSuccess;
}

static size_t graphs_instantiated, graphs_launched;

extern "C" size_t cuda_emu_mma_count(void) { return emu::mma_count; }

extern "C" void cuda_emu_graph_counts(size_t *instantiated, size_t *launched) {
    *instantiated = graphs_instantiated;
    *launched = graphs_launched;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    graphs_instantiated++;
    *exec = reinterpret_cast<cudaGraphExec_t>(
        new emu::EmuGraph(*reinterpret_cast<emu::EmuGraph *>(graph)));
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    const emu::EmuGraph *g = reinterpret_cast<const emu::EmuGraph *>(exec);
    if (!g || emu::capturing) return cudaErrorInvalidValue;
    graphs_launched++;
    for (const emu::CapturedOp &c : g->ops) {
        emu::QueuedOp q = c.op;
        if (q.record) q.ticket = ++q.record->recorded;
        if (q.wait) q.ticket = q.wait->recorded;
        cudaStream_t to = c.stream == g->origin ? stream : reinterpret_cast<cudaStream_t>(c.stream);
        emu::push(to, std::move(q));
    }
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    delete reinterpret_cast<emu::EmuGraph *>(graph);
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete reinterpret_cast<emu::EmuGraph *>(exec);
    return cudaSuccess;
}

/* The node and edge queries (the backend's CNN_CUDA_VERBOSE description) are not emulated. */
cudaError_t cudaGraphGetNodes(cudaGraph_t, cudaGraphNode_t *, size_t *count) {
    *count = 0;
    return cudaErrorNotSupported;
}
cudaError_t cudaGraphNodeGetType(cudaGraphNode_t, enum cudaGraphNodeType *) {
    return cudaErrorNotSupported;
}
cudaError_t cudaGraphGetEdges(cudaGraph_t, cudaGraphNode_t *, cudaGraphNode_t *,
                              cudaGraphEdgeData *, size_t *count) {
    *count = 0;
    return cudaErrorNotSupported;
}
