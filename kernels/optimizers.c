/* optimizers.c: one fused pass per parameter buffer for Adam, SGD and momentum, in the
 * arithmetic order of TF's training ops (ApplyAdam, ApplyGradientDescent, KerasMomentum) so
 * that results track TF to the last bits where possible. Elementwise: threads split the range
 * and SIMD lanes do exactly the scalar operations, so the bits never depend on either. */
#include "kernels/kernels.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/parallel.h"

#include <math.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Adam on elements [i0, i1): m += (g - m)(1-b1); v += (g^2 - v)(1-b2);
 * w -= (m * lr_t) / (sqrt(v) + eps)  (ApplyAdam's form of the header's formula). */
#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>
/* The same operations, 16 lanes at a time: the SSE2 loop's square roots and divisions (4 lanes)
 * kept Adam's pass near its compute limit as well as memory's (docs/kernels-cpu.md step 33).
 * Returns the first element not done. */
__attribute__((target("avx512f"))) static size_t
adam_avx512(size_t i, size_t i1, float *w, const float *g, float *m, float *v, float lr_t,
            float one_m_b1, float one_m_b2, float eps) {
    const __m512 c1 = _mm512_set1_ps(one_m_b1), c2 = _mm512_set1_ps(one_m_b2);
    const __m512 lr = _mm512_set1_ps(lr_t), ep = _mm512_set1_ps(eps);
    for (; i + 16 <= i1; i += 16) {
        __m512 gi = _mm512_loadu_ps(g + i), mi = _mm512_loadu_ps(m + i);
        __m512 vi = _mm512_loadu_ps(v + i);
        mi = _mm512_add_ps(mi, _mm512_mul_ps(_mm512_sub_ps(gi, mi), c1));
        vi = _mm512_add_ps(vi, _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(gi, gi), vi), c2));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        __m512 upd = _mm512_div_ps(_mm512_mul_ps(mi, lr), _mm512_add_ps(_mm512_sqrt_ps(vi), ep));
        _mm512_storeu_ps(w + i, _mm512_sub_ps(_mm512_loadu_ps(w + i), upd));
    }
    return i;
}
#endif

static void adam_range(size_t i0, size_t i1, float *w, const float *g, float *m, float *v,
                       float lr_t, float one_m_b1, float one_m_b2, float eps) {
    size_t i = i0;
#if KERNELS_HAVE_AVX2_CLONES
    if (kernels_cpu_isa() >= KERNELS_ISA_AVX512)
        i = adam_avx512(i, i1, w, g, m, v, lr_t, one_m_b1, one_m_b2, eps);
#endif
#if defined(__SSE2__)
    /* sqrtf() may set errno, which keeps the compiler from vectorising it; _mm_sqrt_ps is the
     * same correctly rounded square root, 4 lanes at a time. */
    const __m128 c1 = _mm_set1_ps(one_m_b1), c2 = _mm_set1_ps(one_m_b2);
    const __m128 lr = _mm_set1_ps(lr_t), ep = _mm_set1_ps(eps);
    for (; i + 4 <= i1; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i), mi = _mm_loadu_ps(m + i), vi = _mm_loadu_ps(v + i);
        mi = _mm_add_ps(mi, _mm_mul_ps(_mm_sub_ps(gi, mi), c1));
        vi = _mm_add_ps(vi, _mm_mul_ps(_mm_sub_ps(_mm_mul_ps(gi, gi), vi), c2));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 upd = _mm_div_ps(_mm_mul_ps(mi, lr), _mm_add_ps(_mm_sqrt_ps(vi), ep));
        _mm_storeu_ps(w + i, _mm_sub_ps(_mm_loadu_ps(w + i), upd));
    }
#endif
    for (; i < i1; i++) {
        float gi = g[i];
        float mi = m[i] + (gi - m[i]) * one_m_b1;
        float vi = v[i] + (gi * gi - v[i]) * one_m_b2;
        m[i] = mi;
        v[i] = vi;
        w[i] -= (mi * lr_t) / (sqrtf(vi) + eps);
    }
}

void adam_update(size_t n, float *w, const float *g, float *m, float *v, float lr, float beta1,
                 float beta2, float eps, int64_t t) {
    /* Keras computes the bias-corrected rate in float32 from beta^t (beta_power). */
    const float b1p = powf(beta1, (float)t), b2p = powf(beta2, (float)t);
    const float lr_t = lr * sqrtf(1.0f - b2p) / (1.0f - b1p);
    const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
    /* Blocks of 4096 elements shared out to the threads. */
    const size_t blk = 4096, nblk = (n + blk - 1) / blk;
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t bi = 0; bi < nblk; bi++) {
        size_t i0 = bi * blk, i1 = i0 + blk < n ? i0 + blk : n;
        adam_range(i0, i1, w, g, m, v, lr_t, one_m_b1, one_m_b2, eps);
    }
}

void sgd_update(size_t n, float *w, const float *g, float lr) {
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t i = 0; i < n; i++) w[i] -= lr * g[i];
}

void momentum_update(size_t n, float *w, const float *g, float *vel, float lr, float momentum,
                     int nesterov) {
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t i = 0; i < n; i++) {
        float a = vel[i] * momentum - g[i] * lr;
        vel[i] = a;
        w[i] += nesterov ? a * momentum - g[i] * lr : a;
    }
}
