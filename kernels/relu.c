/* relu.c: ReLU forward and its gradient (TF's ReluGrad: the gradient passes where y > 0).
 * Elementwise: threads split the range (no sums, so no effect on the bits). */
#include "kernels/kernels.h"
#include "kernels/parallel.h"

void relu_forward(size_t n, const float *x, float *y) {
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_backward(size_t n, const float *y, const float *dy, float *dx) {
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t i = 0; i < n; i++) {
        float d = dy[i]; /* loaded unconditionally, so the loop vectorises */
        dx[i] = y[i] > 0.0f ? d : 0.0f;
    }
}
