/* crc32c.c: CRC-32C, a portable slicing-by-8 path and an SSE4.2 path, picked at run time.
 *
 * Both paths keep the CRC "register" in raw form internally: the public value is the register
 * XORed with 0xFFFFFFFF before and after (standard CRC-32C conditioning), so crc32c_extend can be
 * chained across buffers.
 *
 * The hardware path runs three independent crc32 streams over three adjacent blocks (the
 * instruction has a latency of 3 cycles and a throughput of 1 per cycle, so one stream leaves two
 * thirds of the unit idle) and merges them with a "shift by N zero bytes" operator: for the raw
 * register, crc(A || B) = shift_|B|(crc(A)) ^ crc_from_zero(B), because the CRC is linear over
 * GF(2). The shift operator is a 32x32 bit matrix, applied through four 256-entry tables.
 */
#include "io/crc32c.h"

#include <string.h>

#define CRC32C_POLY 0x82F63B78u   /* reflected Castagnoli polynomial */

/* slicing[k][b]: the register after feeding byte b followed by k zero bytes. slicing[0] is the
 * classic byte-at-a-time table. */
static uint32_t slicing[8][256];

/* Three-stream block sizes of the hardware path (bytes per stream) and their shift tables. */
enum { HW_LONG = 8192, HW_SHORT = 256 };
static uint32_t shift_long[4][256], shift_short[4][256];

static int hw_usable;

static inline uint64_t load_le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Raw register fed n zero bytes, one at a time (used only to build the tables). */
static uint32_t feed_zeros(uint32_t reg, size_t n) {
    while (n--) reg = (reg >> 8) ^ slicing[0][reg & 0xff];
    return reg;
}

/* Tables for the operator "feed n zero bytes": by linearity, its value on any 32-bit register is
 * the XOR of its values on the set bits. */
static void build_shift_tables(uint32_t table[4][256], size_t n) {
    uint32_t basis[32];
    for (int bit = 0; bit < 32; bit++) basis[bit] = feed_zeros(1u << bit, n);
    for (int k = 0; k < 4; k++) {
        for (int b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++)
                if (b & (1 << j)) v ^= basis[8 * k + j];
            table[k][b] = v;
        }
    }
}

static inline uint32_t shift_apply(const uint32_t table[4][256], uint32_t reg) {
    return table[0][reg & 0xff] ^ table[1][(reg >> 8) & 0xff] ^ table[2][(reg >> 16) & 0xff] ^
           table[3][reg >> 24];
}

/* Built once before main (no locking needed afterwards: the tables are read-only from then on). */
__attribute__((constructor)) static void crc32c_init(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t r = b;
        for (int i = 0; i < 8; i++) r = (r >> 1) ^ (CRC32C_POLY & (0u - (r & 1)));
        slicing[0][b] = r;
    }
    for (int k = 1; k < 8; k++)
        for (int b = 0; b < 256; b++)
            slicing[k][b] = (slicing[k - 1][b] >> 8) ^ slicing[0][slicing[k - 1][b] & 0xff];
    build_shift_tables(shift_long, HW_LONG);
    build_shift_tables(shift_short, HW_SHORT);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    hw_usable = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t crc32c_extend_portable(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    uint32_t reg = ~crc;
    while (n >= 8) {
        uint64_t w = load_le64(p) ^ reg;
        uint32_t lo = (uint32_t)w, hi = (uint32_t)(w >> 32);
        reg = slicing[7][lo & 0xff] ^ slicing[6][(lo >> 8) & 0xff] ^ slicing[5][(lo >> 16) & 0xff] ^
              slicing[4][lo >> 24] ^ slicing[3][hi & 0xff] ^ slicing[2][(hi >> 8) & 0xff] ^
              slicing[1][(hi >> 16) & 0xff] ^ slicing[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) reg = (reg >> 8) ^ slicing[0][(reg ^ *p++) & 0xff];
    return ~reg;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

int crc32c_hw_available(void) { return hw_usable; }

/* Three streams over 3*len bytes at p, merged into reg. len is a multiple of 8. */
__attribute__((target("sse4.2"))) static inline uint64_t
hw_three_streams(uint64_t reg, const uint8_t *p, size_t len, const uint32_t shift[4][256]) {
    uint64_t c0 = reg, c1 = 0, c2 = 0;
    const uint8_t *end = p + len;
    for (; p < end; p += 8) {
        c0 = _mm_crc32_u64(c0, load_le64(p));
        c1 = _mm_crc32_u64(c1, load_le64(p + len));
        c2 = _mm_crc32_u64(c2, load_le64(p + 2 * len));
    }
    uint32_t r = shift_apply(shift, (uint32_t)c0) ^ (uint32_t)c1;
    return shift_apply(shift, r) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_extend_hw(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t reg = ~crc;
    /* Byte steps up to 8-byte alignment, so the wide loads below do not straddle lines. */
    while (n && ((uintptr_t)p & 7)) {
        reg = _mm_crc32_u8((uint32_t)reg, *p++);
        n--;
    }
    while (n >= 3 * HW_LONG) {
        reg = hw_three_streams(reg, p, HW_LONG, shift_long);
        p += 3 * HW_LONG;
        n -= 3 * HW_LONG;
    }
    while (n >= 3 * HW_SHORT) {
        reg = hw_three_streams(reg, p, HW_SHORT, shift_short);
        p += 3 * HW_SHORT;
        n -= 3 * HW_SHORT;
    }
    for (; n >= 8; p += 8, n -= 8) reg = _mm_crc32_u64(reg, load_le64(p));
    while (n--) reg = _mm_crc32_u8((uint32_t)reg, *p++);
    return ~(uint32_t)reg;
}

#else  /* no x86-64: the portable path stands in so the API stays callable */

int crc32c_hw_available(void) { return 0; }
uint32_t crc32c_extend_hw(uint32_t crc, const void *data, size_t n) {
    return crc32c_extend_portable(crc, data, n);
}

#endif

uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n) {
    return hw_usable ? crc32c_extend_hw(crc, data, n) : crc32c_extend_portable(crc, data, n);
}
