/* dropout.c: inverted dropout with a counter-based mask (kernels/philox.h).
 * Element i is kept when philox_uniform(seed, stream, i) >= rate, so the mask depends only on
 * (seed, stream, i): the same on any thread count and on the GPU. */
#include "kernels/kernels.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/parallel.h"
#include "kernels/philox.h"

#include <string.h>

/* Elements of Philox blocks [b0, b1) (block b: elements 4b..4b+3, philox_u32's layout). */
static void forward_blocks_base(size_t b0, size_t b1, size_t n, float rate, float scale,
                                uint64_t seed, uint64_t stream, const float *x, float *y,
                                uint8_t *mask) {
    for (size_t b = b0; b < b1; b++) {
        Philox4x32 r = philox_block(seed, stream, b);
        for (size_t j = 0; j < 4 && b * 4 + j < n; j++) {
            size_t i = b * 4 + j;
            uint8_t keep = philox_word_uniform(r.v[j]) >= rate;
            mask[i] = keep;
            y[i] = keep ? x[i] * scale : 0.0f;
        }
    }
}

typedef void (*ForwardBlocksFn)(size_t, size_t, size_t, float, float, uint64_t, uint64_t,
                                const float *, float *, uint8_t *);

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>

/* lo, hi = the 64-bit products m * a, lane by lane (16 x 32 bits): mul_epu32 multiplies the even
 * lanes, so the odd ones are shifted down for a second product. */
__attribute__((target("avx512f"))) static inline void mulhilo16(__m512i a, __m512i m, __m512i *lo,
                                                               __m512i *hi) {
    const __m512i even = _mm512_mul_epu32(a, m);
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

/* c[0..3] = the words of Philox blocks b + lane, one block per lane: philox_block's counter and
 * philox4x32_10's rounds, lane by lane, in the clone's vectors (mulhilo: the lanes' 64-bit
 * products' low and high words). Written once for both widths. */
#define PHILOX_LANES(vec, set1, add, xor, mulhilo, lane, b, stream, seed, c)                  \
    do {                                                                                     \
        const uint64_t b_ = (b), s_ = (stream), key_ = (seed);                               \
        vec *c_ = (c);                                                                       \
        const vec m0_ = set1((int)PHILOX_M0), m1_ = set1((int)PHILOX_M1);                     \
        c_[0] = add(set1((int)(uint32_t)b_), lane);                                          \
        c_[1] = set1((int)(uint32_t)(b_ >> 32));                                             \
        c_[2] = set1((int)(uint32_t)s_);                                                     \
        c_[3] = set1((int)(uint32_t)(s_ >> 32));                                             \
        uint32_t k0_ = (uint32_t)key_, k1_ = (uint32_t)(key_ >> 32);                         \
        for (int r_ = 0; r_ < 10; r_++) {                                                    \
            vec lo0_, hi0_, lo1_, hi1_;                                                      \
            mulhilo(c_[0], m0_, &lo0_, &hi0_);                                               \
            mulhilo(c_[2], m1_, &lo1_, &hi1_);                                               \
            c_[0] = xor(xor(hi1_, c_[1]), set1((int)k0_));                                   \
            c_[1] = lo1_;                                                                    \
            c_[2] = xor(xor(hi0_, c_[3]), set1((int)k1_));                                   \
            c_[3] = lo0_;                                                                    \
            k0_ += PHILOX_W0;                                                                \
            k1_ += PHILOX_W1;                                                                \
        }                                                                                    \
    } while (0)

/* 16 Philox blocks at once, one per lane (philox4x32_10's rounds, vectorised), then transposed
 * to element order: 64 elements per pass. The decisions and products are the scalar ones (the
 * word's top 24 bits as an exact float, the same multiply), so the same bits. */
__attribute__((target("avx512f"))) static void
forward_blocks_avx512(size_t b0, size_t b1, size_t n, float rate, float scale, uint64_t seed,
                      uint64_t stream, const float *x, float *y, uint8_t *mask) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i ab_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ab_hi = _mm512_add_epi32(ab_lo, _mm512_set1_epi32(8));
    const __m512i q_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i q_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    const __m512 vrate = _mm512_set1_ps(rate), vscale = _mm512_set1_ps(scale);
    const __m512 unit = _mm512_set1_ps(1.0f / 16777216.0f);
    size_t b = b0;
    /* whole passes only, inside n, with one high word of the block index in all 16 lanes */
    for (; b + 16 <= b1 && (b + 16) * 4 <= n && (b >> 32) == ((b + 15) >> 32); b += 16) {
        __m512i c[4];
        PHILOX_LANES(__m512i, _mm512_set1_epi32, _mm512_add_epi32, _mm512_xor_si512, mulhilo16,
                     lane, b, stream, seed, c);
        /* [word j of lane l] -> element 4l + j: interleave the words in pairs, then the pairs */
        const __m512i w01_lo = _mm512_permutex2var_epi32(c[0], ab_lo, c[1]);
        const __m512i w01_hi = _mm512_permutex2var_epi32(c[0], ab_hi, c[1]);
        const __m512i w23_lo = _mm512_permutex2var_epi32(c[2], ab_lo, c[3]);
        const __m512i w23_hi = _mm512_permutex2var_epi32(c[2], ab_hi, c[3]);
        const __m512i words[4] = {
            _mm512_permutex2var_epi64(w01_lo, q_lo, w23_lo),
            _mm512_permutex2var_epi64(w01_lo, q_hi, w23_lo),
            _mm512_permutex2var_epi64(w01_hi, q_lo, w23_hi),
            _mm512_permutex2var_epi64(w01_hi, q_hi, w23_hi),
        };
        for (int q = 0; q < 4; q++) {
            const size_t i = b * 4 + (size_t)q * 16;
            const __m512 u =
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(words[q], 8)), unit);
            const __mmask16 keep = _mm512_cmp_ps_mask(u, vrate, _CMP_GE_OQ);
            _mm_storeu_si128((__m128i *)(void *)(mask + i),
                             _mm512_cvtepi32_epi8(_mm512_maskz_set1_epi32(keep, 1)));
            _mm512_storeu_ps(y + i, _mm512_maskz_mul_ps(keep, _mm512_loadu_ps(x + i), vscale));
        }
    }
    forward_blocks_base(b, b1, n, rate, scale, seed, stream, x, y, mask);
}
/* mulhilo16 at AVX2's width: 8 lanes */
__attribute__((target("avx2"))) static inline void mulhilo8(__m256i a, __m256i m, __m256i *lo,
                                                           __m256i *hi) {
    const __m256i even = _mm256_mul_epu32(a, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* forward_blocks_avx512 at AVX2's width: 8 blocks a pass (32 elements), the same rounds,
 * decisions and products (step 83). The mask's 8 bytes of each vector from its compare's bits,
 * a byte store each: no byte-spreading instruction in AVX2 that is fast on every AVX2 CPU (pdep
 * is microcoded on Zen 2). */
__attribute__((target("avx2"))) static void
forward_blocks_avx2(size_t b0, size_t b1, size_t n, float rate, float scale, uint64_t seed,
                    uint64_t stream, const float *x, float *y, uint8_t *mask) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 vrate = _mm256_set1_ps(rate), vscale = _mm256_set1_ps(scale);
    const __m256 unit = _mm256_set1_ps(1.0f / 16777216.0f);
    size_t b = b0;
    /* whole passes only, inside n, with one high word of the block index in all 8 lanes */
    for (; b + 8 <= b1 && (b + 8) * 4 <= n && (b >> 32) == ((b + 7) >> 32); b += 8) {
        __m256i c[4];
        PHILOX_LANES(__m256i, _mm256_set1_epi32, _mm256_add_epi32, _mm256_xor_si256, mulhilo8,
                     lane, b, stream, seed, c);
        /* [word j of lane l] -> element 4l + j: the words of each lane together (per 128-bit
         * half: lanes l and l + 4), then the halves in lane order */
        const __m256i t0 = _mm256_unpacklo_epi32(c[0], c[1]);
        const __m256i t1 = _mm256_unpackhi_epi32(c[0], c[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(c[2], c[3]);
        const __m256i t3 = _mm256_unpackhi_epi32(c[2], c[3]);
        const __m256i l04 = _mm256_unpacklo_epi64(t0, t2), l15 = _mm256_unpackhi_epi64(t0, t2);
        const __m256i l26 = _mm256_unpacklo_epi64(t1, t3), l37 = _mm256_unpackhi_epi64(t1, t3);
        const __m256i words[4] = {
            _mm256_permute2x128_si256(l04, l15, 0x20), /* lanes 0, 1 */
            _mm256_permute2x128_si256(l26, l37, 0x20), /* lanes 2, 3 */
            _mm256_permute2x128_si256(l04, l15, 0x31), /* lanes 4, 5 */
            _mm256_permute2x128_si256(l26, l37, 0x31), /* lanes 6, 7 */
        };
        for (int q = 0; q < 4; q++) {
            const size_t i = b * 4 + (size_t)q * 8;
            const __m256 u =
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(words[q], 8)), unit);
            const __m256 keep = _mm256_cmp_ps(u, vrate, _CMP_GE_OQ);
            const unsigned bits = (unsigned)_mm256_movemask_ps(keep);
            for (int k = 0; k < 8; k++) mask[i + k] = (uint8_t)(bits >> k & 1u);
            const __m256 kept = _mm256_mul_ps(_mm256_loadu_ps(x + i), vscale);
            _mm256_storeu_ps(y + i, _mm256_and_ps(kept, keep)); /* dropped: +0 */
        }
    }
    forward_blocks_base(b, b1, n, rate, scale, seed, stream, x, y, mask);
}

static ForwardBlocksFn forward_blocks_fn(void) {
    const int isa = kernels_cpu_isa();
    return isa >= KERNELS_ISA_AVX512 ? forward_blocks_avx512
           : isa >= KERNELS_ISA_AVX2 ? forward_blocks_avx2
                                     : forward_blocks_base;
}
#else
static ForwardBlocksFn forward_blocks_fn(void) { return forward_blocks_base; }
#endif

void dropout_forward(size_t n, float rate, uint64_t seed, uint64_t stream, const float *x,
                     float *y, uint8_t *mask) {
    const float scale = dropout_scale(rate);
    const ForwardBlocksFn f = forward_blocks_fn();
    /* Threads take groups of 1024 Philox blocks (4096 elements). */
    const size_t blocks = (n + 3) / 4, group = 1024, groups = (blocks + group - 1) / group;
    /* Philox: ~16x a plain pass */
    KERNELS_OMP(omp parallel for schedule(static) if (n >= KERNELS_PARALLEL_MIN_ELEMENTS / 16))
    for (size_t g = 0; g < groups; g++)
        f(g * group, (g + 1) * group < blocks ? (g + 1) * group : blocks, n, rate, scale, seed,
          stream, x, y, mask);
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
