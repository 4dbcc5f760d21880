/* test_crc32c.c: CRC-32C vectors, TF masking, and the hardware path against the portable one. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/crc32c.h"
#include "support/check_run.h"

/* Fills n bytes with a xorshift stream (reproducible, no libc rand state). */
static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (uint8_t)(s >> 24);
    }
}

/* Bit-at-a-time definition, independent of both implementations under test. */
static uint32_t crc32c_bitwise(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    return ~crc;
}

typedef uint32_t (*CrcFn)(uint32_t, const void *, size_t);

static void check_standard_vectors(CrcFn fn) {
    ck_assert_uint_eq(fn(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(fn(0, "", 0), 0u);
    uint8_t buf[48];
    memset(buf, 0, 32);
    ck_assert_uint_eq(fn(0, buf, 32), 0x8A9136AAu);   /* RFC 3720 B.4 */
    memset(buf, 0xff, 32);
    ck_assert_uint_eq(fn(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)i;
    ck_assert_uint_eq(fn(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)(31 - i);
    ck_assert_uint_eq(fn(0, buf, 32), 0x113FDB5Cu);
    static const uint8_t iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
        0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    ck_assert_uint_eq(fn(0, iscsi_read, 48), 0xD9963A56u);
    /* Extending over pieces equals one pass. */
    ck_assert_uint_eq(fn(fn(0, "1234", 4), "56789", 5), 0xE3069283u);
}

START_TEST(test_vectors_portable) { check_standard_vectors(crc32c_extend_portable); }
END_TEST

START_TEST(test_vectors_dispatch) { check_standard_vectors(crc32c_extend); }
END_TEST

START_TEST(test_vectors_hw) {
    if (!crc32c_hw_available()) return;   /* the portable test covers this CPU */
    check_standard_vectors(crc32c_extend_hw);
}
END_TEST

/* TF's stored (masked) values, from tensor bundles and the TFRecord framing vector. */
START_TEST(test_mask_vectors) {
    uint8_t zero[128] = {0};
    ck_assert_uint_eq(crc32c_mask(crc32c(zero, 4)), 0x3a117ba6u);
    float f = 0.9f;
    ck_assert_uint_eq(crc32c_mask(crc32c(&f, 4)), 0xdfc7ebfdu);
    f = 0.1f;
    ck_assert_uint_eq(crc32c_mask(crc32c(&f, 4)), 0x489b90f5u);
    int64_t i = 10;
    ck_assert_uint_eq(crc32c_mask(crc32c(&i, 8)), 0x3abfa3aeu);
    ck_assert_uint_eq(crc32c_mask(crc32c(zero, 8)), 0x07980329u);
    ck_assert_uint_eq(crc32c_mask(crc32c(zero, 128)), 0x6c38fb26u);
    const uint8_t len41[8] = {0x29, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_uint_eq(crc32c_mask(crc32c(len41, 8)), 0x005fff37u);
    for (uint32_t v = 0; v < 100000; v += 7) {
        uint32_t x = v * 2654435761u;
        ck_assert_uint_eq(crc32c_unmask(crc32c_mask(x)), x);
        ck_assert_uint_ne(crc32c_mask(x), x);
    }
}
END_TEST

/* Every length 0..4096 at every misalignment 0..7, hardware and portable against the bitwise
 * definition, also when started from a non-zero crc. */
START_TEST(test_paths_agree_every_length) {
    const size_t max_len = 4096;
    uint8_t *buf = malloc(max_len + 16);
    ck_assert_ptr_nonnull(buf);
    fill_random(buf, max_len + 16, 42);
    int hw = crc32c_hw_available();
    for (size_t off = 0; off < 8; off++) {
        const uint8_t *p = buf + off;
        uint32_t reg = 0xFFFFFFFFu;   /* bitwise register of the prefix p[0..n) */
        for (size_t n = 0; n <= max_len; n++) {
            if (n > 0) {
                reg ^= p[n - 1];
                for (int k = 0; k < 8; k++) reg = (reg >> 1) ^ (0x82F63B78u & (0u - (reg & 1)));
            }
            uint32_t ref = ~reg;
            if (n % 509 == 0) ck_assert_uint_eq(crc32c_bitwise(p, n), ref);
            ck_assert_uint_eq(crc32c_extend_portable(0, p, n), ref);
            if (hw) ck_assert_uint_eq(crc32c_extend_hw(0, p, n), ref);
            uint32_t seed = (uint32_t)(n * 0x01000193u + off);
            if (hw) ck_assert_uint_eq(crc32c_extend_hw(seed, p, n), crc32c_extend_portable(seed, p, n));
        }
    }
    free(buf);
}
END_TEST

/* Lengths that exercise the long three-stream blocks (3 x 8192) and their merge. */
START_TEST(test_paths_agree_long) {
    const size_t max_len = 200000;
    uint8_t *buf = malloc(max_len + 8);
    ck_assert_ptr_nonnull(buf);
    fill_random(buf, max_len + 8, 7);
    const size_t lens[] = {24575, 24576, 24577, 49152 + 768 + 13, 100000, 199999};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (size_t off = 0; off < 8; off += 3) {
            uint32_t ref = crc32c_bitwise(buf + off, lens[i]);
            ck_assert_uint_eq(crc32c_extend_portable(0, buf + off, lens[i]), ref);
            ck_assert_uint_eq(crc32c(buf + off, lens[i]), ref);
            if (crc32c_hw_available()) ck_assert_uint_eq(crc32c_extend_hw(0, buf + off, lens[i]), ref);
        }
    }
    free(buf);
}
END_TEST

static Suite *crc32c_suite(void) {
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_vectors_portable);
    tcase_add_test(tc, test_vectors_dispatch);
    tcase_add_test(tc, test_vectors_hw);
    tcase_add_test(tc, test_mask_vectors);
    tcase_add_test(tc, test_paths_agree_every_length);
    tcase_add_test(tc, test_paths_agree_long);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(crc32c_suite());
}
