/* sgemm.c: row-major single-precision GEMM, C[M,N] = alpha * op(A) * op(B) + beta * C.
 * beta == 0 overwrites C without reading it (C may hold garbage or NaN). */
#include "kernels/kernels.h"

/* Element (i,p) of op(A) and (p,j) of op(B). */
#define A_AT(i, p) (trans_a ? a[(size_t)(p) * lda + (i)] : a[(size_t)(i) * lda + (p)])
#define B_AT(p, j) (trans_b ? b[(size_t)(j) * ldb + (p)] : b[(size_t)(p) * ldb + (j)])

void sgemm_reference(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                     int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0.0; /* the reference sums in double: the fast path is held to it */
            for (int p = 0; p < k; p++) acc += (double)A_AT(i, p) * (double)B_AT(p, j);
            float *cij = &c[(size_t)i * ldc + j];
            *cij = alpha * (float)acc + (beta == 0.0f ? 0.0f : beta * *cij);
        }
}

void sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
           const float *b, int ldb, float beta, float *c, int ldc) {
    sgemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
