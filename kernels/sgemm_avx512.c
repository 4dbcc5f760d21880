/* sgemm_avx512.c: the AVX-512 12x16 SGEMM micro-kernel (see sgemm_microkernel.h): two 6-row tiles
 * of C over one B panel at once. Compiled for the baseline ISA with a per-function target
 * attribute; sgemm_micro12_avx512() returns it only where the running CPU has AVX-512F (and
 * CNN_CPU_ISA does not cap it).
 *
 * Why 12 x 16: with one 16-float vector per row, a 6x16 tile has 6 accumulators, each taking one
 * FMA per step of p: 6 FMAs per 4-cycle FMA latency, 75% of a core that issues two a cycle
 * (Zen 5). Two tiles give 12 independent accumulators over the same B vector, enough to keep
 * both FMA pipes busy; the B panel (16 KiB at KC = 256) stays in L1 as before. Each C value is
 * the same FMA chain over p as in the AVX2 6x16 kernel: the same bits. */
#include "kernels/cpu_dispatch.h"
#include "kernels/sgemm_microkernel.h"

#include <stddef.h>

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>

/* 12 accumulators + 1 B vector + 1 broadcast A: 14 of 32 zmm. */
__attribute__((target("avx512f"))) static void micro_12x16_avx512(int kc, const float *a0,
                                                                  const float *a1,
                                                                  ptrdiff_t rs_a, ptrdiff_t cs_a,
                                                                  const float *b, float *c,
                                                                  int ldc, float alpha,
                                                                  float beta) {
    __m512 acc[2 * SGEMM_MR];
    for (int r = 0; r < 2 * SGEMM_MR; r++) acc[r] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        const ptrdiff_t o = p * cs_a;
        const __m512 bv = _mm512_loadu_ps(b + (size_t)p * SGEMM_NR);
        for (int r = 0; r < SGEMM_MR; r++) {
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a0[r * rs_a + o]), bv, acc[r]);
            acc[SGEMM_MR + r] =
                _mm512_fmadd_ps(_mm512_set1_ps(a1[r * rs_a + o]), bv, acc[SGEMM_MR + r]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < 2 * SGEMM_MR; r++) {
        float *cr = c + (size_t)r * ldc;
        __m512 v = _mm512_mul_ps(acc[r], va);
        if (beta != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_loadu_ps(cr)));
        _mm512_storeu_ps(cr, v);
    }
}

SgemmMicroKernel12 sgemm_micro12_avx512(void) {
    return kernels_cpu_isa() >= KERNELS_ISA_AVX512 ? micro_12x16_avx512 : NULL;
}

#else
SgemmMicroKernel12 sgemm_micro12_avx512(void) { return NULL; }
#endif
