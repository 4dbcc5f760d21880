/* philox.h: Philox 4x32-10, the counter-based RNG of this engine (Salmon et al., SC'11).
 *
 * One function of (key, counter) gives 4 independent 32-bit words, so the same seed gives the
 * same numbers on the CPU and the GPU, in any order and on any number of threads. Used for
 * weight initialisation, dropout masks and the shuffle order.
 *
 * Counter layout for element i of stream s: ctr = {i/4 low, i/4 high, s low, s high},
 * key = {seed low, seed high}; element i takes word i%4.
 * Header-only so that CUDA kernels inline it too.
 */
#ifndef PHILOX_H
#define PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define PHILOX_FN static __host__ __device__ __forceinline__
#else
#define PHILOX_FN static inline
#endif

typedef struct { uint32_t v[4]; } Philox4x32;

PHILOX_FN uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* Philox 4x32's round multipliers and key increments (also for vectorised copies of the
 * rounds, kernels/dropout.c). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* The 10-round Philox 4x32 bijection. */
PHILOX_FN Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t k0, uint32_t k1) {
    const uint32_t M0 = PHILOX_M0, M1 = PHILOX_M1;
    const uint32_t W0 = PHILOX_W0, W1 = PHILOX_W1;
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(M0, ctr.v[0], &hi0);
        uint32_t lo1 = philox_mulhilo(M1, ctr.v[2], &hi1);
        Philox4x32 out;
        out.v[0] = hi1 ^ ctr.v[1] ^ k0;
        out.v[1] = lo1;
        out.v[2] = hi0 ^ ctr.v[3] ^ k1;
        out.v[3] = lo0;
        ctr = out;
        k0 += W0;
        k1 += W1;
    }
    return ctr;
}

/* The 4 words of elements 4*block .. 4*block+3 of stream `stream` under `seed`. */
PHILOX_FN Philox4x32 philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
    Philox4x32 c;
    c.v[0] = (uint32_t)block;
    c.v[1] = (uint32_t)(block >> 32);
    c.v[2] = (uint32_t)stream;
    c.v[3] = (uint32_t)(stream >> 32);
    return philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* 32 random bits for element i of stream `stream` under `seed`. */
PHILOX_FN uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t i) {
    return philox_block(seed, stream, i >> 2).v[i & 3];
}

/* Uniform float in [0,1) with 24 random bits (exactly representable, identical everywhere). */
PHILOX_FN float philox_word_uniform(uint32_t word) {
    return (float)(word >> 8) * (1.0f / 16777216.0f);
}
PHILOX_FN float philox_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    return philox_word_uniform(philox_u32(seed, stream, i));
}

/* Streams used by the engine, so that no two uses share random numbers. */
enum {
    PHILOX_STREAM_INIT = 1,          /* + parameter index: weight initialisation */
    PHILOX_STREAM_SHUFFLE = 1 << 20, /* + epoch: shuffle order */
    PHILOX_STREAM_DROPOUT = 1 << 30  /* + global step * 16 + layer index: dropout masks */
};

#endif /* PHILOX_H */
