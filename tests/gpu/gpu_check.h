/* gpu_check.h: what the GPU test programs share (plain C, no Check: the GPU machines lack it).
 * Header-only so that every GPU test stays one program. Exit codes: 0 all passed, 1 a
 * failure, 77 no GPU (ctest's skip). */
#ifndef TESTS_GPU_CHECK_H
#define TESTS_GPU_CHECK_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every CUDA call is checked; a failing call ends the program naming the call and the line. */
#define CK(call)                                                                              \
    do {                                                                                      \
        cudaError_t ck_e_ = (call);                                                           \
        if (ck_e_ != cudaSuccess) {                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                \
                    cudaGetErrorString(ck_e_));                                               \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* Exits 77 with a clear message when there is no usable GPU. */
static inline void gpu_require(const char *prog) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        printf("%s: no GPU, skipped (%s)\n", prog,
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        exit(77);
    }
    struct cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    printf("%s: %s, %d SMs, sm_%d%d\n", prog, p.name, p.multiProcessorCount, p.major, p.minor);
}

/* An environment variable's value, to be put back by env_restore (NULL: it was unset): the
 * tests switch versions (CNN_GEMM_V, ...) in-process and leave the caller's choice as found. */
static inline char *env_keep(const char *name) {
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}
/* name = value, or unset where value is NULL */
static inline void env_set_or_unset(const char *name, const char *value) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
}
static inline void env_restore(const char *name, char *kept) {
    env_set_or_unset(name, kept);
    free(kept);
}

/* ---- host random numbers (xorshift64*): fresh each run unless CNN_TEST_SEED is set ---------- */
static uint64_t rng_state = 1;
static inline uint64_t rng_seed_init(void) {
    const char *s = getenv("CNN_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    rng_state = seed ? seed : 1;
    return seed;
}
static inline uint64_t rng_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
/* Uniform in [lo, hi). */
static inline float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rng_u64() >> 40) * (1.0 / 16777216.0));
}
static inline float *host_random(size_t n, float lo, float hi) {
    float *p = (float *)malloc((n ? n : 1) * sizeof *p);
    if (!p) { fprintf(stderr, "FAIL out of host memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) p[i] = rng_uniform(lo, hi);
    return p;
}
static inline void *host_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) { fprintf(stderr, "FAIL out of host memory\n"); exit(1); }
    return p;
}

/* ---- device buffers ----------------------------------------------------------------------- */
/* Device buffer filled with 0xFF bytes: NaN floats, -1 ints, 255 bytes, so an element a kernel
 * fails to write shows up. */
static inline void *dev_poisoned(size_t bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 1));
    CK(cudaMemset(d, 0xFF, bytes ? bytes : 1));
    return d;
}
static inline void *dev_upload(const void *host, size_t bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 1));
    if (bytes) CK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    return d;
}
static inline void *dev_download(const void *dev, size_t bytes) {
    void *h = host_alloc(bytes);
    CK(cudaDeviceSynchronize());
    if (bytes) CK(cudaMemcpy(h, dev, bytes, cudaMemcpyDeviceToHost));
    return h;
}

/* ---- comparisons: one PASS/FAIL line each --------------------------------------------------- */
static int check_failures = 0, check_count = 0;

/* rel = max|gpu - cpu| / max(max|cpu|, scale) (the error relative to the tensor's scale, so
 * sums that cancel to near zero do not blow up; scale: the terms' own, where every element of a
 * small tensor may cancel, e.g. the largest sum of |x||w| of a dense layer's outputs, else 0);
 * NaN anywhere in gpu (an unwritten element) fails. */
static inline void check_close_scaled(const char *what, const float *gpu, const float *cpu,
                                      size_t n, double tol, double scale) {
    double maxdiff = 0, maxref = scale, d2 = 0, r2 = 0;
    size_t nan_at = (size_t)-1, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(gpu[i]) && !isnan(cpu[i])) {
            if (nan_at == (size_t)-1) nan_at = i;
            continue;
        }
        double d = fabs((double)gpu[i] - (double)cpu[i]);
        if (d > maxdiff) { maxdiff = d; worst = i; }
        double r = fabs((double)cpu[i]);
        if (r > maxref) maxref = r;
        d2 += d * d;
        r2 += r * r;
    }
    double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
    double l2 = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    int ok = nan_at == (size_t)-1 && rel <= tol;
    check_count++;
    if (!ok) check_failures++;
    if (nan_at != (size_t)-1)
        printf("FAIL %-44s n=%-9zu NaN/unwritten at %zu (cpu %g)\n", what, n, nan_at,
               (double)cpu[nan_at]);
    else
        printf("%s %-44s n=%-9zu max_rel %.2e  l2_rel %.2e  (tol %.0e%s%zu: gpu %.9g cpu %.9g)\n",
               ok ? "PASS" : "FAIL", what, n, rel, l2, tol, ", worst @", worst,
               n ? (double)gpu[worst] : 0.0, n ? (double)cpu[worst] : 0.0);
}

static inline void check_close(const char *what, const float *gpu, const float *cpu, size_t n,
                               double tol) {
    check_close_scaled(what, gpu, cpu, n, tol, 0.0);
}

/* Bitwise equality (same operations in the same order on both sides). */
static inline void check_equal_bytes(const char *what, const void *gpu, const void *cpu,
                                     size_t bytes) {
    const unsigned char *g = (const unsigned char *)gpu, *c = (const unsigned char *)cpu;
    size_t diff = 0, first = (size_t)-1;
    for (size_t i = 0; i < bytes; i++)
        if (g[i] != c[i]) {
            if (first == (size_t)-1) first = i;
            diff++;
        }
    check_count++;
    if (diff) check_failures++;
    if (diff)
        printf("FAIL %-44s %zu bytes: %zu differ, first at byte %zu\n", what, bytes, diff, first);
    else
        printf("PASS %-44s %zu bytes identical\n", what, bytes);
}

static inline int check_summary(const char *prog) {
    printf("SUMMARY %s: %d checks, %d failed -> %s\n", prog, check_count, check_failures,
           check_failures ? "FAIL" : "PASS");
    return check_failures ? 1 : 0;
}

#endif /* TESTS_GPU_CHECK_H */
