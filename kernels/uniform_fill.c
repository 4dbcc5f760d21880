/* uniform_fill.c: the parameters' random initialisation (kernels.h). */
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/philox.h"

void uniform_fill_symmetric(size_t n, float limit, uint64_t seed, uint64_t stream, float *x) {
    const size_t blocks = (n + 3) / 4;
    /* Philox: ~16x a plain pass per element (kernels/dropout.c) */
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS / 16))
    for (size_t b = 0; b < blocks; b++) {
        const Philox4x32 r = philox_block(seed, stream, b);
        for (size_t j = 0; j < 4 && b * 4 + j < n; j++)
            x[b * 4 + j] = (2.0f * philox_word_uniform(r.v[j]) - 1.0f) * limit;
    }
}
