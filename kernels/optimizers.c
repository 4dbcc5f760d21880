/* optimizers.c: one fused pass per parameter buffer for Adam, SGD and momentum, in the
 * arithmetic order of TF's training ops (ApplyAdam, ApplyGradientDescent, KerasMomentum) so
 * that results track TF to the last bits where possible. Elementwise: threads split the range
 * and SIMD lanes do exactly the scalar operations, so the bits never depend on either. */
#include "kernels/kernels.h"
#include "kernels/adam.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/parallel.h"

#include <math.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Adam's vector loop over [i, i1) in whole vectors of `lanes` floats, returning the first
 * element not done: the scalar loop's operations lane by lane (sqrtf() may set errno, which
 * keeps the compiler from vectorising it; the vector square root is the same correctly rounded
 * one). Written once for SSE2 (4 lanes, the release build's baseline), AVX-512 (16 lanes:
 * SSE2's square roots and divisions kept the pass near its compute limit as well as memory's,
 * docs/kernels-cpu.md step 33) and AVX2 (8 lanes, step 83). */
#define DEFINE_ADAM_VECTORS(name, attr, vec, lanes, set1, load, store, add, sub, mul, div, sqrt) \
    attr static size_t name(size_t i, size_t i1, float *w, const float *g, float *m, float *v, \
                            float lr_t, float one_m_b1, float one_m_b2, float eps) {          \
        const vec c1 = set1(one_m_b1), c2 = set1(one_m_b2), lr = set1(lr_t), ep = set1(eps); \
        for (; i + lanes <= i1; i += lanes) {                                                 \
            vec gi = load(g + i), mi = load(m + i), vi = load(v + i);                         \
            mi = add(mi, mul(sub(gi, mi), c1));                                               \
            vi = add(vi, mul(sub(mul(gi, gi), vi), c2));                                      \
            store(m + i, mi);                                                                 \
            store(v + i, vi);                                                                 \
            vec upd = div(mul(mi, lr), add(sqrt(vi), ep));                                    \
            store(w + i, sub(load(w + i), upd));                                              \
        }                                                                                     \
        return i;                                                                             \
    }
#if defined(__SSE2__)
DEFINE_ADAM_VECTORS(adam_sse2, , __m128, 4, _mm_set1_ps, _mm_loadu_ps, _mm_storeu_ps, _mm_add_ps,
                    _mm_sub_ps, _mm_mul_ps, _mm_div_ps, _mm_sqrt_ps)
#endif
#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>
DEFINE_ADAM_VECTORS(adam_avx512, __attribute__((target("avx512f"))), __m512, 16, _mm512_set1_ps,
                    _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, _mm512_sub_ps,
                    _mm512_mul_ps, _mm512_div_ps, _mm512_sqrt_ps)
/* "avx2" without "fma": nothing to contract a product and a sum into (and -std=c11 would not) */
DEFINE_ADAM_VECTORS(adam_avx2, __attribute__((target("avx2"))), __m256, 8, _mm256_set1_ps,
                    _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_sub_ps,
                    _mm256_mul_ps, _mm256_div_ps, _mm256_sqrt_ps)
#endif

/* Adam on elements [i0, i1): m += (g - m)(1-b1); v += (g^2 - v)(1-b2);
 * w -= (m * lr_t) / (sqrt(v) + eps)  (ApplyAdam's form of the header's formula). */
void adam_range(const AdamRate *r, size_t i0, size_t i1, float *w, const float *g, float *m,
                float *v) {
    const float lr_t = r->lr_t, one_m_b1 = r->one_m_b1, one_m_b2 = r->one_m_b2, eps = r->eps;
    size_t i = i0;
#if KERNELS_HAVE_AVX2_CLONES
    const int isa = kernels_cpu_isa();
    if (isa >= KERNELS_ISA_AVX512)
        i = adam_avx512(i, i1, w, g, m, v, lr_t, one_m_b1, one_m_b2, eps);
    else if (isa >= KERNELS_ISA_AVX2)
        i = adam_avx2(i, i1, w, g, m, v, lr_t, one_m_b1, one_m_b2, eps);
#endif
#if defined(__SSE2__)
    i = adam_sse2(i, i1, w, g, m, v, lr_t, one_m_b1, one_m_b2, eps);
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

AdamRate adam_rate(float lr, float beta1, float beta2, float eps, int64_t t) {
    /* Keras computes the bias-corrected rate in float32 from beta^t (beta_power). */
    const float b1p = powf(beta1, (float)t), b2p = powf(beta2, (float)t);
    AdamRate r = {lr * sqrtf(1.0f - b2p) / (1.0f - b1p), 1.0f - beta1, 1.0f - beta2, eps};
    return r;
}

void adam_update(size_t n, float *w, const float *g, float *m, float *v, float lr, float beta1,
                 float beta2, float eps, int64_t t) {
    const AdamRate r = adam_rate(lr, beta1, beta2, eps, t);
    /* Blocks of 4096 elements shared out to the threads. */
    const size_t blk = 4096, nblk = (n + blk - 1) / blk;
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS))
    for (size_t bi = 0; bi < nblk; bi++) {
        size_t i0 = bi * blk, i1 = i0 + blk < n ? i0 + blk : n;
        adam_range(&r, i0, i1, w, g, m, v);
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
