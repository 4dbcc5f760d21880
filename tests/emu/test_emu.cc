/* test_emu.cc: the emulator's own claims (cuda_emu.h), checked on tiny kernels:
 *   - every thread of every block runs once, with its own threadIdx/blockIdx;
 *   - __syncthreads() orders shared-memory writes before reads (a correct reduction is exact);
 *   - a read of shared memory that another thread writes without a barrier between them (a
 *     race) gives results that depend on the seeded thread order: some seeds differ;
 *   - bad launch configurations fail as on a GPU (cudaErrorInvalidConfiguration, no run);
 *   - a kernel that reaches a barrier or its end without pdl_wait_and_release() aborts (with
 *     programmatic dependent launch it could read its inputs before they are written);
 *   - two streams: work ordered by an event wait always sees the other stream's result; without
 *     the wait, the shuffled interleaving gives both orders over 20 runs;
 *   - the legacy default stream (0): a memset there is not waited for by a non-blocking stream's
 *     kernel, but is by a blocking stream's; a copy to host there does not wait for a
 *     non-blocking stream's kernel, and sees its result once that stream is synchronised;
 *   - graph capture: nothing runs while capturing; each launch of the graph runs the captured
 *     work again, a forked stream's work included and still ordered by its events; a fork not
 *     joined, a synchronising call inside the capture, or a wait on work outside it fails as on
 *     a GPU; CNN_EMU_CAPTURE=0 refuses captures;
 *   - the tensor cores' mma (kernels/mma_tf32.cuh): two warps of a block each compute their own
 *     16x8x8 product from fragments laid out as the PTX ISA says, exactly (small integers), in
 *     20 shuffled thread orders; its sum cut toward zero to float32, as the tensor cores round
 *     (cuda_emu.cc); tf32_split gives two TF32 parts within 2^-21 of the float; an
 *     operand that is not TF32, and a warp whose lanes do not all reach the mma, abort;
 *   - the warp's shuffles and votes: __ballot_sync gives each lane the mask of the lanes whose
 *     predicate holds, __shfl_sync each lane the value of the lane it names (ints and floats),
 *     two collectives in a row each with their own values, in 20 shuffled thread orders; a
 *     warp whose lanes do not all reach one, and a mask of less than the warp, abort.
 * Exit 0 when all hold. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/cuda_common.cuh"
#include "kernels/mma_tf32.cuh"

namespace {

int failures = 0;

void check(bool ok, const char *what) {
    printf("%s %s\n", ok ? "PASS" : "FAIL", what);
    if (!ok) failures++;
}

__global__ void coords_kernel(int *out) {
    pdl_wait_and_release();
    int t = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    out[t] += 1000 * (int)blockIdx.x + (int)threadIdx.x + 1;
}

/* Block sum through shared memory with barriers: exact for integers. */
__global__ void reduce_kernel(const int *in, int *out) {
    pdl_wait_and_release();
    __shared__ int part[128];
    part[threadIdx.x] = in[blockIdx.x * 128 + threadIdx.x];
    __syncthreads();
    for (int s = 64; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

/* Racy: each thread writes its slot, then reads its neighbour's with no barrier between. */
__global__ void racy_kernel(int *out) {
    pdl_wait_and_release();
    __shared__ int slot[64];
    slot[threadIdx.x] = 0;
    __syncthreads();
    slot[threadIdx.x] = (int)threadIdx.x + 1;
    out[threadIdx.x] = slot[(threadIdx.x + 1) % 64];
}

__global__ void fill_kernel(int *p, int v) {
    pdl_wait_and_release();
    p[threadIdx.x] = v;
}

__global__ void copy_kernel(const int *src, int *dst) {
    pdl_wait_and_release();
    dst[threadIdx.x] = src[threadIdx.x];
}

/* Stream a fills buf with 7, stream b copies buf to out (after a's event when `ordered`); over 20
 * runs: *always_seen = every copy saw the 7s, *sometimes_seen = at least one did. */
void two_streams(int *buf, int *out, bool ordered, bool *always_seen, bool *sometimes_seen) {
    cudaStream_t a, b;
    cudaEvent_t done;
    cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
    cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
    *always_seen = true;
    *sometimes_seen = false;
    for (int rep = 0; rep < 20; rep++) {
        cudaMemsetAsync(buf, 0, 32 * sizeof(int), a);   /* a non-blocking stream: not 0's */
        CNN_KERNEL(dim3(1), dim3(32), a, fill_kernel)(buf, 7);
        cudaEventRecord(done, a);
        if (ordered) cudaStreamWaitEvent(b, done, 0);
        CNN_KERNEL(dim3(1), dim3(32), b, copy_kernel)(buf, out);
        cudaDeviceSynchronize();
        bool seen = true;
        for (int t = 0; t < 32; t++) seen = seen && out[t] == 7;
        *always_seen = *always_seen && seen;
        *sometimes_seen = *sometimes_seen || seen;
    }
    cudaEventDestroy(done);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
}

/* CUDA's legacy default stream semantics (cuda_emu.cc, "streams and events"); 0 when they hold,
 * else the number of the first check that failed. */
int legacy_stream_order(int *buf, int *out) {
    int host[32];
    for (int blocking = 0; blocking < 2; blocking++) {
        cudaStream_t b;
        cudaStreamCreateWithFlags(&b, blocking ? cudaStreamDefault : cudaStreamNonBlocking);
        CNN_KERNEL(dim3(1), dim3(32), 0, fill_kernel)(buf, 7);
        cudaDeviceSynchronize();
        cudaMemset(buf, 0, 32 * sizeof(int));            /* stream 0, asynchronous */
        CNN_KERNEL(dim3(1), dim3(32), b, copy_kernel)(buf, out);
        cudaStreamSynchronize(b);
        cudaMemcpy(host, out, sizeof host, cudaMemcpyDeviceToHost);
        /* a non-blocking stream ran before the memset (the emulator lets it lag no further);
         * a blocking one after it */
        if (host[31] != (blocking ? 0 : 7)) return 1 + blocking;
        cudaStreamDestroy(b);
    }
    cudaStream_t a;
    cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
    for (int rep = 0; rep < 20; rep++) {   /* (not once by chance of the shuffled order) */
        cudaMemsetAsync(buf, 0, 32 * sizeof(int), a);
        cudaStreamSynchronize(a);
        CNN_KERNEL(dim3(1), dim3(32), a, fill_kernel)(buf, 9);
        cudaMemcpy(host, buf, sizeof host, cudaMemcpyDeviceToHost);
        if (host[0] != 0) return 3;                      /* the copy did not wait for a */
        cudaStreamSynchronize(a);
        cudaMemcpy(host, buf, sizeof host, cudaMemcpyDeviceToHost);
        if (host[0] != 9) return 4;
    }
    cudaStreamDestroy(a);
    return 0;
}

__global__ void add_kernel(int *p, int v) {
    pdl_wait_and_release();
    p[threadIdx.x] += v;
}

/* Captures on stream a: x += 1; a fork to b (an event), where y = x, y += 10; with `join`, the
 * join back (an event) and x = y on a. Returns EndCapture's status, the graph in *g. */
cudaError_t capture_fork(cudaStream_t a, cudaStream_t b, cudaEvent_t fork, cudaEvent_t join_ev,
                         int *x, int *y, int join, cudaGraph_t *g) {
    cudaError_t e = cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return e;
    CNN_KERNEL(dim3(1), dim3(32), a, add_kernel)(x, 1);
    cudaEventRecord(fork, a);
    cudaStreamWaitEvent(b, fork, 0);
    CNN_KERNEL(dim3(1), dim3(32), b, copy_kernel)(x, y);
    CNN_KERNEL(dim3(1), dim3(32), b, add_kernel)(y, 10);
    if (join) {
        cudaEventRecord(join_ev, b);
        cudaStreamWaitEvent(a, join_ev, 0);
        CNN_KERNEL(dim3(1), dim3(32), a, copy_kernel)(y, x);
    }
    return cudaStreamEndCapture(a, g);
}

/* The graph claims (see the header). */
void graph_capture(int *buf) {
    int *x = buf, *y = buf + 32;
    cudaStream_t a, b;
    cudaEvent_t fork, join_ev, outside;
    cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
    cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&join_ev, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&outside, cudaEventDisableTiming);
    memset(buf, 0, 64 * sizeof(int));
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    bool ok = capture_fork(a, b, fork, join_ev, x, y, 1, &g) == cudaSuccess && g;
    cudaDeviceSynchronize();
    check(ok && x[0] == 0 && y[0] == 0, "a capture runs nothing");
    ok = ok && cudaGraphInstantiate(&exec, g, 0) == cudaSuccess;
    /* x = (x + 1) + 10 per launch, whichever order the streams interleave in: 20 launches */
    bool exact = ok;
    for (int rep = 1; rep <= 20 && ok; rep++) {
        exact = exact && cudaGraphLaunch(exec, a) == cudaSuccess;
        cudaStreamSynchronize(a);
        for (int t = 0; t < 32; t++) exact = exact && x[t] == 11 * rep && y[t] == 11 * rep;
    }
    check(exact, "each launch runs the captured work again, the fork ordered by its events");
    /* a stream that waits on an event recorded before the capture is not part of it */
    cudaEventRecord(outside, b);
    cudaDeviceSynchronize();
    ok = cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal) == cudaSuccess &&
         cudaStreamWaitEvent(a, outside, 0) == cudaErrorStreamCaptureIsolation;
    cudaGraph_t g2 = NULL;
    ok = ok && cudaStreamEndCapture(a, &g2) == cudaSuccess;
    cudaGraphDestroy(g2);
    check(ok, "a captured stream waiting on work outside the capture is refused");
    g2 = NULL;
    check(capture_fork(a, b, fork, join_ev, x, y, 0, &g2) == cudaErrorStreamCaptureUnjoined &&
              !g2, "a fork not joined back fails the capture");
    ok = cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    CNN_KERNEL(dim3(1), dim3(32), a, add_kernel)(x, 1);
    cudaStreamSynchronize(a);
    check(ok && cudaStreamEndCapture(a, &g2) == cudaErrorStreamCaptureInvalidated,
          "a synchronising call inside the capture invalidates it");
    setenv("CNN_EMU_CAPTURE", "0", 1);
    check(cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal) ==
              cudaErrorStreamCaptureUnsupported, "CNN_EMU_CAPTURE=0 refuses captures");
    unsetenv("CNN_EMU_CAPTURE");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
    cudaEventDestroy(fork);
    cudaEventDestroy(join_ev);
    cudaEventDestroy(outside);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
}

/* Forgets the programmatic-launch wait: before a barrier if `barrier`, else at its end. */
__global__ void no_wait_kernel(int *out, int barrier) {
    if (barrier) __syncthreads();
    out[threadIdx.x] = 1;
}

/* Runs launch() in a child process; true if the child died of SIGABRT (the emulator's
 * message, which the caller expects, goes to /dev/null). */
template <class Launch>
bool child_aborts(Launch launch) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        launch();
        _exit(0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

bool no_wait_aborts(int *buf, int barrier) {
    return child_aborts([&] {
        CNN_KERNEL(dim3(1), dim3(32), 0, no_wait_kernel)(buf, barrier);
        cudaDeviceSynchronize();
    });
}

/* Warp w of the block computes D = A_w B_w + C_w with A_w[r][k] = (r + 2k + w) % 7 - 3,
 * B_w[k][n] = (3k + n + w) % 5 - 2, C_w[r][n] = r - n + w, each lane passing its fragments
 * (mma_tf32.cuh's layout) and storing its c0..c3 at d[w][row][col]. With `skip`, lane 5 of
 * warp 0 goes to the barrier instead; with `raw`, one operand is not TF32. */
__global__ void mma_kernel(float *d, int skip, int raw) {
    pdl_wait_and_release();
    const int w = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32, g = lane / 4, t = lane % 4;
    /* small integers are TF32 values */
    auto A = [&](int r, int k) { return bit_cast32<uint32_t>((float)((r + 2 * k + w) % 7 - 3)); };
    auto B = [&](int k, int n) { return bit_cast32<uint32_t>((float)((3 * k + n + w) % 5 - 2)); };
    const uint32_t a[4] = {A(g, t), A(g + 8, t), A(g, t + 4), A(g + 8, t + 4)};
    uint32_t b[2] = {B(t, g), B(t + 4, g)};
    if (raw && lane == 7) b[1] = bit_cast32<uint32_t>(1.0f) | 1u;
    float c[4];
    for (int i = 0; i < 4; i++) c[i] = (float)(g + 8 * (i / 2) - (2 * t + i % 2) + w);
    if (!(skip && w == 0 && lane == 5)) mma_m16n8k8_tf32(c, a, b);
    __syncthreads();
    for (int i = 0; i < 4; i++) d[w * 128 + (g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = c[i];
}

/* One warp: D = A B + C with C = `c0` everywhere and one nonzero product, A[0][0] B[0][0] =
 * `a` `b` (TF32 values), in D[0][0]; d[0..127] = D. */
__global__ void mma_round_kernel(float *d, float a, float b, float c0) {
    pdl_wait_and_release();
    const int lane = (int)threadIdx.x, g = lane / 4, t = lane % 4;
    const uint32_t av[4] = {bit_cast32<uint32_t>(lane == 0 ? a : 0.0f), 0, 0, 0};
    const uint32_t bv[2] = {bit_cast32<uint32_t>(lane == 0 ? b : 0.0f), 0};
    float c[4] = {c0, c0, c0, c0};
    mma_m16n8k8_tf32(c, av, bv);
    for (int i = 0; i < 4; i++) d[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = c[i];
}

/* D[0][0] of mma_round_kernel, the other 127 outputs checked to stay c0. */
float mma_round(float *d, float a, float b, float c0 = 1.0f) {
    memset(d, 0xFF, 128 * sizeof(float));
    CNN_KERNEL(dim3(1), dim3(32), 0, mma_round_kernel)(d, a, b, c0);
    cudaDeviceSynchronize();
    for (int i = 1; i < 128; i++)
        if (d[i] != c0) return NAN;
    return d[0];
}

bool mma_aborts(float *d, int skip, int raw) {
    return child_aborts([&] {
        CNN_KERNEL(dim3(1), dim3(64), 0, mma_kernel)(d, skip, raw);
        cudaDeviceSynchronize();
    });
}

/* Each lane of the two warps: a vote on (lane * 7 + w) % 3 == 0, then a shuffle of an int
 * from lane (lane * 5 + 3) % 32 and of a float from lane 31 - lane; out[t] = vote, int, float
 * bits. `mode` 1: lane 9 of warp 1 skips the vote (goes to the barrier); 2: a mask of 16 lanes. */
__global__ void warp_kernel(uint32_t *out, int mode) {
    pdl_wait_and_release();
    const int t = (int)threadIdx.x, w = t / 32, lane = t % 32;
    uint32_t vote = 0;
    if (!(mode == 1 && w == 1 && lane == 9))
        vote = __ballot_sync(mode == 2 ? 0xFFFFu : 0xFFFFFFFFu, (lane * 7 + w) % 3 == 0);
    const int v = __shfl_sync(0xFFFFFFFFu, 1000 * w + lane, (lane * 5 + 3) % 32);
    const float f = __shfl_sync(0xFFFFFFFFu, 0.5f * (float)lane + (float)w, 31 - lane);
    __syncthreads();
    out[3 * t] = vote;
    out[3 * t + 1] = (uint32_t)v;
    out[3 * t + 2] = bit_cast32<uint32_t>(f);
}

bool warp_aborts(uint32_t *out, int mode) {
    return child_aborts([&] {
        CNN_KERNEL(dim3(1), dim3(64), 0, warp_kernel)(out, mode);
        cudaDeviceSynchronize();
    });
}

void warp_checks(uint32_t *out) {
    bool exact = true;
    for (int rep = 0; rep < 20; rep++) {
        memset(out, 0xFF, 64 * 3 * sizeof(uint32_t));
        CNN_KERNEL(dim3(2), dim3(64), 0, warp_kernel)(out, 0);
        cudaDeviceSynchronize();
        for (int t = 0; t < 64; t++) {
            const int w = t / 32, lane = t % 32;
            uint32_t want = 0;
            for (int l = 0; l < 32; l++)
                if ((l * 7 + w) % 3 == 0) want |= 1u << l;
            const float f = 0.5f * (float)(31 - lane) + (float)w;
            exact = exact && out[3 * t] == want &&
                    out[3 * t + 1] == (uint32_t)(1000 * w + (lane * 5 + 3) % 32) &&
                    out[3 * t + 2] == bit_cast32<uint32_t>(f);
        }
    }
    check(exact, "warp votes and shuffles (int, float): every lane's result, 20 thread orders");
    check(warp_aborts(out, 1), "a warp whose lanes do not all reach a vote aborts");
    check(warp_aborts(out, 2), "a vote with a mask of less than the warp aborts");
}

void mma_checks(float *d) {
    bool exact = true;
    for (int rep = 0; rep < 20; rep++) {
        memset(d, 0xFF, 256 * sizeof(float));
        CNN_KERNEL(dim3(3), dim3(64), 0, mma_kernel)(d, 0, 0);
        cudaDeviceSynchronize();
        for (int w = 0; w < 2; w++)
            for (int r = 0; r < 16; r++)
                for (int n = 0; n < 8; n++) {
                    int want = r - n + w;
                    for (int k = 0; k < 8; k++)
                        want += ((r + 2 * k + w) % 7 - 3) * ((3 * k + n + w) % 5 - 2);
                    exact = exact && d[w * 128 + r * 8 + n] == (float)want;
                }
    }
    check(exact, "mma: two warps' 16x8x8 products from PTX-layout fragments, 20 thread orders");
    /* tf32_split over floats of every exponent the model sees, and the exact cases */
    bool split_ok = true;
    uint64_t st = 88172645463325252ull;
    for (int i = 0; i < 100000 && split_ok; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        const float x = bit_cast32<float>((uint32_t)(st & 0x807FFFFFu) | (uint32_t)(64 + st % 128) << 23);
        uint32_t hi, lo;
        tf32_split(x, &hi, &lo);
        const double err = fabs((double)x - (double)bit_cast32<float>(hi) - (double)bit_cast32<float>(lo));
        split_ok = (hi & 0x1FFFu) == 0 && (lo & 0x1FFFu) == 0 && err <= 0x1p-21 * fabs(x);
    }
    uint32_t hi, lo;
    tf32_split(1.0f, &hi, &lo);
    split_ok = split_ok && hi == 0x3F800000u && lo == 0;
    tf32_split(NAN, &hi, &lo);
    split_ok = split_ok && isnan(bit_cast32<float>(hi));
    check(split_ok, "tf32_split: two TF32 parts within 2^-21 of the float (1e5 floats); NaN kept");
    /* The sum cut toward zero, as the tensor cores' additions (cuda_emu.cc): 1 - 2^-26 gives
     * the float below 1 (nearest: 1), 1 + 0.75 ulp gives 1 (nearest: 1 + 2^-23), and -1 - 0.75 ulp
     * gives -1 (nearest and downward: -1 - 2^-23) */
    check(mma_round(d, 0x1p-13f, -0x1p-13f) == nextafterf(1.0f, 0.0f) &&
              mma_round(d, 0x3p-13f, 0x1p-12f) == 1.0f && mma_round(d, 0x1p-1f, 0x1p-1f) == 1.25f &&
              mma_round(d, 0x3p-13f, -0x1p-12f, -1.0f) == -1.0f,
          "mma: the sum cut toward zero to float32 (1 - 2^-26 -> the float below 1, 1 + 0.75 ulp "
          "-> 1, -1 - 0.75 ulp -> -1)");
    check(mma_aborts(d, 0, 1), "an mma operand that is not TF32 aborts");
    check(mma_aborts(d, 1, 0), "a warp whose lanes do not all reach the mma aborts");
}

} /* namespace */

int main() {
    int *buf = NULL;
    if (cudaMalloc((void **)&buf, 4096 * sizeof(int)) != cudaSuccess) return 1;

    memset(buf, 0, 4096 * sizeof(int));
    CNN_KERNEL(dim3(7), dim3(96), 0, coords_kernel)(buf);
    cudaDeviceSynchronize();
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < 7; b++)
        for (int t = 0; t < 96; t++) ok = ok && buf[b * 96 + t] == 1000 * b + t + 1;
    check(ok, "every thread of 7 blocks x 96 runs once with its coordinates");

    int in[512], sums[4];
    for (int i = 0; i < 512; i++) in[i] = i * 7 - 300;
    int *din = buf, *dout = buf + 1024;
    memcpy(din, in, sizeof in);
    bool exact = true;
    for (int rep = 0; rep < 20; rep++) {
        CNN_KERNEL(dim3(4), dim3(128), 0, reduce_kernel)(din, dout);
        cudaDeviceSynchronize();
        memcpy(sums, dout, sizeof sums);
        for (int b = 0; b < 4; b++) {
            int want = 0;
            for (int i = 0; i < 128; i++) want += in[b * 128 + i];
            exact = exact && sums[b] == want;
        }
    }
    check(exact, "barrier-ordered shared-memory reduction exact in 20 shuffled runs");

    /* The racy kernel under 20 thread orders: thread t reads its neighbour's new value if the
     * neighbour ran first in this phase, else 0; with a shuffled order both happen. */
    int first[64], now[64];
    bool differs = false, stale = false, fresh = false;
    for (int rep = 0; rep < 20; rep++) {
        CNN_KERNEL(dim3(1), dim3(64), 0, racy_kernel)(buf);
        cudaDeviceSynchronize();
        memcpy(rep ? now : first, buf, sizeof first);
        for (int t = 0; t < 64; t++) {
            if (buf[t] == 0) stale = true;
            if (buf[t] == (t + 1) % 64 + 1) fresh = true;
            if (rep && now[t] != first[t]) differs = true;
        }
    }
    check(differs && stale && fresh, "a shared-memory race gives order-dependent results");

    CNN_KERNEL(dim3(1, 70000), dim3(32), 0, coords_kernel)(buf);
    cudaDeviceSynchronize();
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y > 65535 is refused");
    CNN_KERNEL(dim3(1), dim3(2048), 0, coords_kernel)(buf);
    cudaDeviceSynchronize();
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block refused");
    CNN_KERNEL(dim3(0), dim3(32), 0, coords_kernel)(buf);
    cudaDeviceSynchronize();
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "an empty grid is refused");

    bool always = false, sometimes = false;
    two_streams(buf, buf + 64, true, &always, &sometimes);
    check(always, "an event wait orders work between streams (20 shuffled runs)");
    two_streams(buf, buf + 64, false, &always, &sometimes);
    check(sometimes && !always, "without the event wait, two streams' order varies");
    int legacy = legacy_stream_order(buf, buf + 64);
    if (legacy) printf("(legacy stream check %d failed)\n", legacy);
    check(legacy == 0, "stream 0 orders with blocking streams only; its copies and memsets run "
                       "in its order");

    graph_capture(buf);

    check(no_wait_aborts(buf, 0), "a kernel ending without pdl_wait_and_release() aborts");
    check(no_wait_aborts(buf, 1), "a barrier before pdl_wait_and_release() aborts");

    mma_checks(reinterpret_cast<float *>(buf));
    warp_checks(reinterpret_cast<uint32_t *>(buf));

    cudaFree(buf);
    printf("SUMMARY test_emu: %d failed -> %s\n", failures, failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
