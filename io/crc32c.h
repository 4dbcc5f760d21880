/* crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) and TensorFlow's masking.
 * A hardware path (SSE4.2 crc32, three interleaved streams) is chosen at run time where the CPU
 * has it; the portable table-driven path is the reference. */
#ifndef IO_CRC32C_H
#define IO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over data: crc32c("123456789") == 0xE3069283. */
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t n);
static inline uint32_t crc32c(const void *data, size_t n) { return crc32c_extend(0, data, n); }

/* The two implementations, exposed for tests and benchmarks. crc32c_hw_available() says whether
 * crc32c_extend_hw may be called on this CPU. */
uint32_t crc32c_extend_portable(uint32_t crc, const void *data, size_t n);
uint32_t crc32c_extend_hw(uint32_t crc, const void *data, size_t n);
int crc32c_hw_available(void);

/* TF's mask: rotate right 15, add 0xa282ead8. Every CRC TF stores is masked. */
static inline uint32_t crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
static inline uint32_t crc32c_unmask(uint32_t masked) {
    uint32_t r = masked - 0xa282ead8u;
    return (r >> 17) | (r << 15);
}

#endif
