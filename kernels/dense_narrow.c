/* dense_narrow.c: the dense layer's GEMMs for at most 16 outputs (dense_narrow.h). Only with
 * the AVX-512 clones: elsewhere dense.c takes sgemm, which gives the same bits. */
#include "kernels/dense_narrow.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/sgemm_microkernel.h"

#include <stdlib.h>

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>

int dense_narrow_fits(int out) {
    return out >= 1 && out <= 16 && kernels_cpu_isa() >= KERNELS_ISA_AVX512;
}

#define NARROW_ROWS 12 /* rows summed at once: 12 independent FMA chains cover its latency
                          (4 cycles x 2 FMAs a cycle) with room, 24 of the 32 registers */

/* dst[row, 0:out] for G rows from row0: the sum over t < T of a[row*a_row + t*a_t] *
 * bt[t*out + 0:out], as sgemm sums it: a fmaf chain from 0 over each slice of kc terms, each
 * slice's chain added to the ones before (sum = chain + sum). */
static inline __attribute__((always_inline, target("avx512f"))) void
sliced_rows(const int G, int row0, int T, int kc, const float *a, ptrdiff_t a_row, ptrdiff_t a_t,
            const float *bt, int out, __mmask16 lanes, float *dst) {
    __m512 sum[NARROW_ROWS], acc[NARROW_ROWS];
    for (int g = 0; g < G; g++) sum[g] = _mm512_setzero_ps();
    for (int t0 = 0; t0 < T; t0 += kc) {
        const int t1 = T - t0 < kc ? T : t0 + kc;
        for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_ps();
        for (int t = t0; t < t1; t++) {
            const __m512 b = _mm512_maskz_loadu_ps(lanes, bt + (size_t)t * out);
            const float *at = a + (ptrdiff_t)row0 * a_row + (ptrdiff_t)t * a_t;
            for (int g = 0; g < G; g++)
                acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(at[g * a_row]), b, acc[g]);
        }
        for (int g = 0; g < G; g++) sum[g] = t0 == 0 ? acc[g] : _mm512_add_ps(acc[g], sum[g]);
    }
    for (int g = 0; g < G; g++)
        _mm512_mask_storeu_ps(dst + (size_t)(row0 + g) * out, lanes, sum[g]);
}

__attribute__((target("avx512f"))) static void
sliced(int rows, int T, const float *a, ptrdiff_t a_row, ptrdiff_t a_t, const float *bt, int out,
       float *dst) {
    const __mmask16 lanes = (__mmask16)((1u << out) - 1);
    const int kc = sgemm_kc_step(T);
    int r = 0;
    for (; r + NARROW_ROWS <= rows; r += NARROW_ROWS)
        sliced_rows(NARROW_ROWS, r, T, kc, a, a_row, a_t, bt, out, lanes, dst);
    for (; r + 4 <= rows; r += 4) sliced_rows(4, r, T, kc, a, a_row, a_t, bt, out, lanes, dst);
    for (; r < rows; r++) sliced_rows(1, r, T, kc, a, a_row, a_t, bt, out, lanes, dst);
}

void dense_narrow_forward(int n, int in, int out, const float *x, const float *w, float *y) {
    sliced(n, in, x, in, 1, w, out, y); /* y[r, :] over i: x[r, i] * w[i, :] */
}

void dense_narrow_backward_filter(int n, int in, int out, const float *x, const float *dy,
                                  float *dw) {
    sliced(in, n, x, 1, in, dy, out, dw); /* dw[i, :] over r: x[r, i] * dy[r, :] */
}

#define NARROW_BLOCKS 8 /* 16-input blocks of a dx row summed at once: 8 chains of out terms */

/* dx[r, i0 .. i0 + 16B) from wt ([out, in]: w transposed); the last block's lanes `tail`. */
static inline __attribute__((always_inline, target("avx512f"))) void
data_blocks(const int B, int out, int in, const float *dyr, const float *wt, int i0,
            __mmask16 tail, float *dxr) {
    __m512 acc[NARROW_BLOCKS];
    for (int q = 0; q < B; q++) acc[q] = _mm512_setzero_ps();
    for (int p = 0; p < out; p++) {
        const __m512 g = _mm512_set1_ps(dyr[p]);
        const float *wp = wt + (size_t)p * in + i0;
        for (int q = 0; q < B; q++) {
            const __mmask16 m = q == B - 1 ? tail : (__mmask16)0xffff;
            acc[q] = _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, wp + 16 * q), acc[q]);
        }
    }
    for (int q = 0; q < B; q++)
        _mm512_mask_storeu_ps(dxr + i0 + 16 * q, q == B - 1 ? tail : (__mmask16)0xffff, acc[q]);
}

__attribute__((target("avx512f"))) static void data_rows(int n, int in, int out, const float *dy,
                                                         const float *wt, float *dx) {
    const int full = in / 16;
    const __mmask16 rest = (__mmask16)((1u << (in % 16)) - 1);
    for (int r = 0; r < n; r++) {
        const float *dyr = dy + (size_t)r * out;
        float *dxr = dx + (size_t)r * in;
        int q = 0;
        for (; q + NARROW_BLOCKS <= full; q += NARROW_BLOCKS)
            data_blocks(NARROW_BLOCKS, out, in, dyr, wt, 16 * q, 0xffff, dxr);
        for (; q < full; q++) data_blocks(1, out, in, dyr, wt, 16 * q, 0xffff, dxr);
        if (rest) data_blocks(1, out, in, dyr, wt, 16 * q, rest, dxr);
    }
}

int dense_narrow_backward_data(int n, int in, int out, const float *dy, const float *w,
                               float *dx) {
    /* dx[r, i] = sum over p < out of dy[r, p] * w[i, p]: one KC slice (out <= 16), so one chain;
     * w transposed once so that 16 inputs' terms are a vector */
    float *wt = malloc((size_t)in * out * sizeof *wt);
    if (!wt) return -1;
    for (int i = 0; i < in; i++)
        for (int p = 0; p < out; p++) wt[(size_t)p * in + i] = w[(size_t)i * out + p];
    data_rows(n, in, out, dy, wt, dx);
    free(wt);
    return 0;
}
#endif
