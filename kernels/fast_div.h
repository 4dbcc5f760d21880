/* fast_div.h: unsigned 32-bit division by a divisor fixed at run time, as a multiply and a
 * shift (private to kernels/). For d >= 2, m = floor((2^64 - 1) / d) + 1 makes
 * floor(m * n / 2^64) = floor(n / d) for every 32-bit n (Lemire, Kaser and Kurz, "Faster
 * remainder by direct computation", 2019, for 32-bit numerators and divisors); d = 1 is kept
 * apart, where m would overflow. A hardware division takes ~10 cycles and runs few at a time;
 * the winners' loops divide several times per winner. tests/test_kernels_conv2d_pool.c checks
 * it against '/' and '%'. */
#ifndef KERNELS_FAST_DIV_H
#define KERNELS_FAST_DIV_H

#include <stdint.h>

typedef struct {
    uint64_t m; /* 0 for d = 1 */
    uint32_t d;
} FastDiv;

static inline FastDiv fast_div_init(uint32_t d) {
    return (FastDiv){d > 1 ? UINT64_MAX / d + 1 : 0, d};
}

/* n / d */
static inline uint32_t fast_div(FastDiv f, uint32_t n) {
    __extension__ typedef unsigned __int128 u128;
    return f.m ? (uint32_t)(((u128)f.m * n) >> 64) : n;
}

/* n % d */
static inline uint32_t fast_mod(FastDiv f, uint32_t n) { return n - fast_div(f, n) * f.d; }

#endif
