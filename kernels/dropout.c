/* dropout.c: inverted dropout with a counter-based mask (kernels/philox.h).
 * Element i is kept when philox_uniform(seed, stream, i) >= rate, so the mask depends only on
 * (seed, stream, i): the same on any thread count and on the GPU. */
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/philox.h"

#include <string.h>

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

/* dx[i0:i1] = mask ? dy * scale : +0. The select as a bit mask, and mask restrict (bytes may
 * alias anything: without it a store to dx could change the mask): so the compiler vectorises
 * it. As a branch it stayed scalar, and the random mask mispredicted it (~3 ns an element). dx
 * may alias dy (kernels.h), never the mask. */
static void backward_range(size_t i0, size_t i1, float scale, const uint8_t *restrict mask,
                           const float *dy, float *dx) {
    for (size_t i = i0; i < i1; i++) {
        const float d = dy[i] * scale;
        uint32_t bits;
        memcpy(&bits, &d, sizeof bits);
        bits &= 0u - (uint32_t)(mask[i] != 0);
        memcpy(&dx[i], &bits, sizeof bits);
    }
}

void dropout_backward(size_t n, float rate, const uint8_t *mask, const float *dy, float *dx) {
    const float scale = dropout_scale(rate);
    const size_t block = (size_t)1 << 16, blocks = (n + block - 1) / block;
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t k = 0; k < blocks; k++)
        backward_range(k * block, (k + 1) * block < n ? (k + 1) * block : n, scale, mask, dy, dx);
}
