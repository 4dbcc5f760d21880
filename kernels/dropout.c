/* dropout.c: inverted dropout with a counter-based mask (kernels/philox.h).
 * Element i is kept when philox_uniform(seed, stream, i) >= rate, so the mask depends only on
 * (seed, stream, i): the same on any thread count and on the GPU. */
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/philox.h"

void dropout_forward(size_t n, float rate, uint64_t seed, uint64_t stream, const float *x,
                     float *y, uint8_t *mask) {
    const float scale = dropout_scale(rate);
    /* One Philox call gives the 4 words of elements 4b..4b+3 (philox_u32's counter layout). */
    const size_t blocks = (n + 3) / 4;
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS / 16)) /* Philox: ~16x a plain pass */
    for (size_t b = 0; b < blocks; b++) {
        Philox4x32 r = philox_block(seed, stream, b);
        for (size_t j = 0; j < 4 && b * 4 + j < n; j++) {
            size_t i = b * 4 + j;
            uint8_t keep = philox_word_uniform(r.v[j]) >= rate;
            mask[i] = keep;
            y[i] = keep ? x[i] * scale : 0.0f;
        }
    }
}

void dropout_backward(size_t n, float rate, const uint8_t *mask, const float *dy, float *dx) {
    const float scale = dropout_scale(rate);
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t i = 0; i < n; i++) {
        float d = dy[i] * scale;
        dx[i] = mask[i] ? d : 0.0f;
    }
}
