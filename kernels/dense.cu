/* dense.cu: fully connected layers on the GPU. x [N,in], kernel w [in,out], y [N,out], all
 * row-major (kernels.h). Bias and ReLU ride in the GEMM's store; the bias gradient rides in the
 * weight-gradient GEMM as an extra row of ones. */
#include "kernels/gemm_cuda.cuh"
#include "kernels/kernels_cuda.h"

namespace {

/* A(m,k) = x^T with a row of ones appended (m == in): the GEMM x^T*dy then also gives
 * sum_k dy[k,n], the bias gradient. */
struct XtOnes {
    const float *x;
    int in;
    typedef int Row;
    typedef size_t K;
    __host__ __device__ __forceinline__ Row row(int m) const { return m; }
    __host__ __device__ __forceinline__ K kctx(int k) const { return (size_t)k * in; }
    __device__ __forceinline__ float at(Row m, K k) const { return m < in ? x[k + m] : 1.0f; }
    /* 4 consecutive inputs m (m fastest, in % 4 == 0). The row of ones (m == in, a multiple of
     * 4) is the last row and starts its group: (1, 0, 0, 0). */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool k_fast, int) const {
        return !k_fast && in % 4 == 0 && ((uintptr_t)x & 15) == 0;
    }
    __device__ __forceinline__ float4 at4(Row m, K k) const {
        if (m >= in) return make_float4(1.0f, 0.0f, 0.0f, 0.0f);
        return *reinterpret_cast<const float4 *>(x + k + m);
    }
};

} /* namespace */

extern "C" size_t dense_workspace_floats_cuda(int n, int in, int out) {
    size_t f = gemm::splitk_floats(n, out, in);          /* forward */
    size_t d = gemm::splitk_floats(n, in, out);          /* dx */
    size_t w = gemm::splitk_floats(in + 1, out, n);      /* dw, db */
    size_t mx = f > d ? f : d;
    return mx > w ? mx : w;
}

extern "C" cudaError_t dense_forward_cuda(int n, int in, int out, const float *x, const float *w,
                                          const float *b, float *y, int relu, float *ws,
                                          size_t ws_floats, cudaStream_t stream) {
    if (n < 0 || in < 0 || out < 0) return cudaErrorInvalidValue;
    return gemm::launch<true, true>(n, out, in, gemm::MatA<false>{x, in}, gemm::MatB<false>{w, out},
                                    gemm::StoreBiasRelu{y, b, out, relu}, ws, ws_floats, stream);
}

extern "C" cudaError_t dense_backward_cuda(int n, int in, int out, const float *x, const float *w,
                                           const float *dy, float *dx, float *dw, float *db,
                                           float *ws, size_t ws_floats, cudaStream_t stream) {
    if (n < 0 || in < 0 || out < 0) return cudaErrorInvalidValue;
    cudaError_t e = cudaSuccess;
    if (dx) {
        /* dx[n,in] = dy[n,out] * w^T: B(k=o, n=i) = w[i*out + o], contiguous along k. */
        e = gemm::launch<true, false>(n, in, out, gemm::MatA<false>{dy, out},
                                      gemm::MatB<true>{w, out}, gemm::StorePlain{dx, in}, ws, ws_floats,
                                      stream);
        if (e != cudaSuccess) return e;
    }
    /* dw[in,out] = x^T * dy (+ db as row `in`): A = x^T, contiguous along m. */
    return gemm::launch<false, true>(db ? in + 1 : in, out, n, XtOnes{x, in},
                                     gemm::MatB<false>{dy, out}, gemm::StoreWeightBias{dw, db, in, out}, ws,
                                     ws_floats, stream);
}
