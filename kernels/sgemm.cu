/* sgemm.cu: row-major SGEMM on the GPU (kernels.h's sgemm), through the shared tiled GEMM. */
#include "kernels/gemm_cuda.cuh"
#include "kernels/kernels_cuda.h"

namespace {

/* C = alpha*acc + beta*C; beta == 0 never reads C (it may hold garbage, as in BLAS). */
struct StoreScaled {
    float *c;
    int ldc;
    float alpha, beta;
    __device__ __forceinline__ void operator()(int m, int n, float acc) const {
        float *p = c + (size_t)m * ldc + n;
        *p = beta == 0.0f ? alpha * acc : alpha * acc + beta * *p;
    }
};

template <bool TA, bool TB>
cudaError_t sgemm_launch(int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc, float *ws,
                         size_t ws_floats, cudaStream_t stream) {
    /* Coalescing: A contiguous along k unless transposed; B contiguous along n unless. */
    return gemm::launch<!TA, !TB>(m, n, k, gemm::MatA<TA>{a, lda}, gemm::MatB<TB>{b, ldb},
                                  StoreScaled{c, ldc, alpha, beta}, ws, ws_floats, stream);
}

} /* namespace */

extern "C" int gemm_version_cuda(void) { return gemm::gemm_version(); }

extern "C" size_t sgemm_workspace_floats_cuda(int m, int n, int k) {
    return gemm::splitk_floats(m, n, k);
}

extern "C" cudaError_t sgemm_cuda(int trans_a, int trans_b, int m, int n, int k, float alpha,
                                  const float *a, int lda, const float *b, int ldb, float beta,
                                  float *c, int ldc, float *ws, size_t ws_floats,
                                  cudaStream_t stream) {
    if (m < 0 || n < 0 || k < 0 || ldc < n || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n))
        return cudaErrorInvalidValue;
    if (trans_a)
        return trans_b ? sgemm_launch<true, true>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                                  ws, ws_floats, stream)
                       : sgemm_launch<true, false>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                                   ws, ws_floats, stream);
    return trans_b ? sgemm_launch<false, true>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws,
                                               ws_floats, stream)
                   : sgemm_launch<false, false>(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws,
                                                ws_floats, stream);
}
