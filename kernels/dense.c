/* dense.c: fully connected layer on row-major x[N,in], kernel w[in,out], y[N,out], via sgemm. */
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <math.h>
#include <string.h>

void dense_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                   float *y) {
    sgemm(0, 0, n, out, in, 1.0f, x, in, w, out, 0.0f, y, out);
    if (b)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] += b[j];
}

void dense_backward(int n, int in, int out, const float *x, const float *w, const float *dy,
                    float *dx, float *dw, float *db) {
    if (dx) sgemm(0, 1, n, in, out, 1.0f, dy, out, w, out, 0.0f, dx, in); /* dy * w^T */
    sgemm(1, 0, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw, out);          /* x^T * dy */
    if (db) {
        for (int j = 0; j < out; j++) db[j] = 0.0f;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) db[j] += dy[(size_t)i * out + j];
    }
}

/* ---- the data gradient where the input is alive (kernels.h) --------------------------------
 * Per alive entry, a dot product of dy's row and w's row in the CUDA twin's order: 32 lanes,
 * lane l over the columns 32s + l, then a butterfly. Threads take whole rows. */
#define ALIVE_LANES 32

int dense_backward_data_alive_fits(int out) {
    return out > 0 && out % ALIVE_LANES == 0 && out <= ALIVE_LANES * ALIVE_LANES;
}

static float alive_dot_base(const float *g, const float *wr, int out) {
    float lane[ALIVE_LANES] = {0};
    for (int j0 = 0; j0 < out; j0 += ALIVE_LANES)
        for (int l = 0; l < ALIVE_LANES; l++) lane[l] = fmaf(g[j0 + l], wr[j0 + l], lane[l]);
    for (int s = ALIVE_LANES / 2; s > 0; s >>= 1) {
        float next[ALIVE_LANES];
        for (int l = 0; l < ALIVE_LANES; l++) next[l] = lane[l] + lane[l ^ s];
        memcpy(lane, next, sizeof lane);
    }
    return lane[0];
}

typedef float (*AliveDotFn)(const float *g, const float *wr, int out);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* The same operations as alive_dot_base: lanes 0-7, 8-15, 16-23, 24-31 in a0..a3; the butterfly
 * adds the same pairs (a + b = b + a: lane l and l ^ s hold the same sum after each step). */
__attribute__((target("avx2,fma"))) static float alive_dot_avx2(const float *g, const float *wr,
                                                                int out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int j0 = 0; j0 < out; j0 += ALIVE_LANES) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0), _mm256_loadu_ps(wr + j0), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0 + 8), _mm256_loadu_ps(wr + j0 + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0 + 16), _mm256_loadu_ps(wr + j0 + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0 + 24), _mm256_loadu_ps(wr + j0 + 24), a3);
    }
    const __m256 s16 = _mm256_add_ps(a0, a2);                      /* lanes 0-7: l, l ^ 16 */
    const __m256 s8 = _mm256_add_ps(s16, _mm256_add_ps(a1, a3));   /* l ^ 8: lanes 8-15 */
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}
static AliveDotFn alive_dot_fn(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? alive_dot_avx2
                                                                           : alive_dot_base;
}
#else
static AliveDotFn alive_dot_fn(void) { return alive_dot_base; }
#endif

void dense_backward_data_alive(int n, int in, int out, const float *x, const float *w,
                               const float *dy, float *dx) {
    const AliveDotFn dot = alive_dot_fn();
    /* the dense dx's work decides the threads, as for the GEMM it replaces */
    const double macs = (double)n * in * out;
    const int threads = macs >= KERNELS_PARALLEL_MIN_MACS && n > 1 ? kernels_get_threads() : 1;
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * in, *g = dy + (size_t)r * out;
        float *o = dx + (size_t)r * in;
        for (int i = 0; i < in; i++)
            o[i] = xr[i] > 0.0f ? dot(g, w + (size_t)i * out, out) : 0.0f;
    }
}
