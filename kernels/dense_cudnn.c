/* dense_cudnn.c: SGEMM and dense layers through cuBLAS (FP32, CUBLAS_DEFAULT_MATH: no TF32).
 * cuBLAS is column-major; a row-major matrix is the column-major view of its transpose, so the
 * row-major C = op(A)*op(B) is computed as the column-major C^T = op(B)^T * op(A)^T: the same
 * call with the operands swapped. */
#include "kernels/kernels_cudnn.h"

cublasStatus_t sgemm_cublas(cublasHandle_t h, int trans_a, int trans_b, int m, int n, int k,
                            float alpha, const float *a, int lda, const float *b, int ldb,
                            float beta, float *c, int ldc) {
    return cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                       n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc);
}

cublasStatus_t dense_forward_cublas(cublasHandle_t h, int n, int in, int out, const float *x,
                                    const float *w, const float *b, float *y, const float *ones) {
    const float one = 1.0f;
    cublasStatus_t st = sgemm_cublas(h, 0, 0, n, out, in, 1.0f, x, in, w, out, 0.0f, y, out);
    if (st != CUBLAS_STATUS_SUCCESS || !b) return st;
    /* y^T[out,n] += b * ones^T (column-major view of row-major y). */
    return cublasSger(h, out, n, &one, b, 1, ones, 1, y, out);
}

cublasStatus_t dense_backward_cublas(cublasHandle_t h, int n, int in, int out, const float *x,
                                     const float *w, const float *dy, float *dx, float *dw,
                                     float *db, const float *ones) {
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st;
    if (dx) { /* dx[n,in] = dy[n,out] * w^T */
        st = sgemm_cublas(h, 0, 1, n, in, out, 1.0f, dy, out, w, out, 0.0f, dx, in);
        if (st != CUBLAS_STATUS_SUCCESS) return st;
    }
    if (!dw) return CUBLAS_STATUS_SUCCESS;
    /* dw[in,out] = x^T * dy */
    st = sgemm_cublas(h, 1, 0, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw, out);
    if (st != CUBLAS_STATUS_SUCCESS || !db) return st;
    /* db[out] = dy^T * ones: column-major dy^T is [out,n] with ld out */
    return cublasSgemv(h, CUBLAS_OP_N, out, n, &one, dy, out, ones, 1, &zero, db, 1);
}
