/* relu.c: ReLU forward and its gradient (TF's ReluGrad: the gradient passes where y > 0).
 * Elementwise: threads split the range (no sums, so no effect on the bits). */
#include "kernels/kernels.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/parallel.h"
#include "kernels/relu_serial.h"

/* relu_forward's blocks: whole vectors, so each thread's loop runs at full width. */
#define RELU_BLOCK 4096

void relu_forward(size_t n, const float *x, float *y) {
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t b = 0; b < n; b += RELU_BLOCK)
        relu_serial(n - b < RELU_BLOCK ? n - b : RELU_BLOCK, x + b, y + b);
}

void relu_backward(size_t n, const float *y, const float *dy, float *dx) {
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t i = 0; i < n; i++) {
        float d = dy[i]; /* loaded unconditionally, so the loop vectorises */
        dx[i] = y[i] > 0.0f ? d : 0.0f;
    }
}

/* relu_serial: the baseline's loop is 4 floats wide (SSE), and it took 1.4% of the MNIST step
 * inside the fused conv layers (docs/kernels-cpu.md step 77); AVX-512's max(x, 0) returns its
 * second operand, +0, for a NaN or a -0 x, as x > 0 ? x : 0 does. */
static void relu_serial_base(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>
__attribute__((target("avx512f"))) static void relu_serial_avx512(size_t n, const float *x,
                                                                 float *y) {
    const __m512 zero = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_max_ps(_mm512_loadu_ps(x + i), zero));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_max_ps(_mm512_maskz_loadu_ps(m, x + i), zero));
    }
}
#endif

void relu_serial(size_t n, const float *x, float *y) {
#if KERNELS_HAVE_AVX2_CLONES
    if (kernels_cpu_isa() >= KERNELS_ISA_AVX512) {
        relu_serial_avx512(n, x, y);
        return;
    }
#endif
    relu_serial_base(n, x, y);
}
