/* sgemm_avx2.c: the AVX2+FMA 6x16 SGEMM micro-kernel (see sgemm_microkernel.h).
 * Compiled for the baseline ISA with per-function target attributes; sgemm_micro_avx2()
 * returns it only when the running CPU has AVX2 and FMA. */
#include "kernels/cpu_dispatch.h"
#include "kernels/sgemm_microkernel.h"

#include <stddef.h>

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>

/* 12 accumulators (6 rows x 2 vectors of 8) + 2 B vectors + 1 broadcast A: 15 of 16 ymm. */
__attribute__((target("avx2,fma"))) static void micro_6x16_avx2(int kc, const float *a,
                                                                 ptrdiff_t rs_a, ptrdiff_t cs_a,
                                                                 const float *b, float *c,
                                                                 int ldc, float alpha,
                                                                 float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    const float *a0 = a, *a1 = a + rs_a, *a2 = a + 2 * rs_a, *a3 = a + 3 * rs_a;
    const float *a4 = a + 4 * rs_a, *a5 = a + 5 * rs_a;
    for (int p = 0; p < kc; p++) {
        const ptrdiff_t o = p * cs_a;
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 ar;
        ar = _mm256_broadcast_ss(a0 + o); c00 = _mm256_fmadd_ps(ar, b0, c00); c01 = _mm256_fmadd_ps(ar, b1, c01);
        ar = _mm256_broadcast_ss(a1 + o); c10 = _mm256_fmadd_ps(ar, b0, c10); c11 = _mm256_fmadd_ps(ar, b1, c11);
        ar = _mm256_broadcast_ss(a2 + o); c20 = _mm256_fmadd_ps(ar, b0, c20); c21 = _mm256_fmadd_ps(ar, b1, c21);
        ar = _mm256_broadcast_ss(a3 + o); c30 = _mm256_fmadd_ps(ar, b0, c30); c31 = _mm256_fmadd_ps(ar, b1, c31);
        ar = _mm256_broadcast_ss(a4 + o); c40 = _mm256_fmadd_ps(ar, b0, c40); c41 = _mm256_fmadd_ps(ar, b1, c41);
        ar = _mm256_broadcast_ss(a5 + o); c50 = _mm256_fmadd_ps(ar, b0, c50); c51 = _mm256_fmadd_ps(ar, b1, c51);
        b += SGEMM_NR;
    }
    __m256 acc[SGEMM_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                               {c30, c31}, {c40, c41}, {c50, c51}};
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int r = 0; r < SGEMM_MR; r++) {
        float *cr = c + (size_t)r * ldc;
        for (int h = 0; h < 2; h++) {
            __m256 v = _mm256_mul_ps(acc[r][h], va);
            if (beta != 0.0f) v = _mm256_add_ps(v, _mm256_mul_ps(vb, _mm256_loadu_ps(cr + 8 * h)));
            _mm256_storeu_ps(cr + 8 * h, v);
        }
    }
}

SgemmMicroKernel sgemm_micro_avx2(void) { return kernels_have_avx2_fma() ? micro_6x16_avx2 : NULL; }

#else
SgemmMicroKernel sgemm_micro_avx2(void) { return NULL; }
#endif
