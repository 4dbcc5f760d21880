/* test_pb_wire.c: protobuf wire encoder/decoder, byte-exact vectors and malformed input. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/pb_wire.h"
#include "support/check_run.h"

static void assert_bytes(const PbBuf *b, const uint8_t *want, size_t n) {
    ck_assert_int_eq(b->oom, 0);
    ck_assert_uint_eq(b->len, n);
    ck_assert_mem_eq(b->data, want, n);
}

START_TEST(test_varint_encoding) {
    PbBuf b;
    pb_buf_init(&b);
    const struct { uint64_t v; uint8_t bytes[10]; size_t n; } cases[] = {
        {0, {0x00}, 1},
        {1, {0x01}, 1},
        {127, {0x7f}, 1},
        {128, {0x80, 0x01}, 2},
        {300, {0xac, 0x02}, 2},
        {UINT32_MAX, {0xff, 0xff, 0xff, 0xff, 0x0f}, 5},
        {(uint64_t)-1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
        {(uint64_t)INT64_MIN, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pb_buf_reset(&b);
        pb_put_varint_raw(&b, cases[i].v);
        assert_bytes(&b, cases[i].bytes, cases[i].n);
        ck_assert_uint_eq(pb_varint_size(cases[i].v), cases[i].n);
        PbReader r;
        uint64_t v;
        pb_reader_init(&r, b.data, b.len);
        ck_assert_int_eq(pb_read_varint(&r, &v), 0);
        ck_assert_uint_eq(v, cases[i].v);
        ck_assert_ptr_eq(r.p, r.end);
    }
    pb_buf_free(&b);
}
END_TEST

/* TensorShapeProto [-1,28,28,1] from tf-formats.md section 12 (nested messages, -1 in 10 bytes). */
START_TEST(test_shape_vector) {
    PbBuf shape, dim, out;
    pb_buf_init(&shape);
    pb_buf_init(&dim);
    pb_buf_init(&out);
    const int64_t dims[] = {-1, 28, 28, 1};
    for (int i = 0; i < 4; i++) {
        pb_buf_reset(&dim);
        pb_put_int64(&dim, 1, dims[i]);
        pb_put_message(&shape, 2, &dim);
    }
    pb_put_message(&out, 2, &shape);
    const uint8_t want[] = {0x12, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                            0x12, 0x02, 0x08, 0x1c, 0x12, 0x02, 0x08, 0x1c, 0x12, 0x02, 0x08, 0x01};
    /* out wraps the shape once more: field 2, length 25, then the vector's inner bytes. */
    ck_assert_uint_eq(out.len, 2 + sizeof want);
    ck_assert_uint_eq(out.data[0], 0x12);
    ck_assert_uint_eq(out.data[1], sizeof want);
    ck_assert_mem_eq(out.data + 2, want, sizeof want);
    /* Decode it back. */
    PbReader r;
    PbField f;
    pb_reader_init(&r, want, sizeof want);
    int i = 0;
    while (pb_next(&r, &f) == 1) {
        ck_assert_uint_eq(f.field, 2);
        ck_assert_int_eq(f.wire_type, PB_LEN);
        PbReader d;
        PbField g;
        pb_reader_init(&d, f.data, f.len);
        ck_assert_int_eq(pb_next(&d, &g), 1);
        ck_assert_int_eq((int64_t)g.varint, dims[i]);
        ck_assert_int_eq(pb_next(&d, &g), 0);
        i++;
    }
    ck_assert_ptr_null(r.error);
    ck_assert_int_eq(i, 4);
    pb_buf_free(&shape);
    pb_buf_free(&dim);
    pb_buf_free(&out);
}
END_TEST

START_TEST(test_fixed_and_packed) {
    PbBuf b;
    pb_buf_init(&b);
    pb_put_fixed32(&b, 1, 0x01020304u);
    pb_put_fixed64(&b, 2, 0x0102030405060708ull);
    pb_put_float(&b, 3, 1.0f);
    pb_put_double(&b, 4, -2.5);
    const float fv[] = {0.0f, 1.0f};
    pb_put_packed_float(&b, 5, fv, 2);
    const int64_t iv[] = {1, 300, -1};
    pb_put_packed_int64(&b, 6, iv, 3);
    pb_put_sint64(&b, 7, -2);
    pb_put_string(&b, 8, "abc");
    pb_put_bytes(&b, 9, "", 0);
    const uint8_t want[] = {
        0x0d, 0x04, 0x03, 0x02, 0x01,                                      /* fixed32 */
        0x11, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,              /* fixed64 */
        0x1d, 0x00, 0x00, 0x80, 0x3f,                                      /* float 1.0 */
        0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0,              /* double -2.5 */
        0x2a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3f,        /* packed floats */
        0x32, 0x0d, 0x01, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        0x38, 0x03,                                                        /* zigzag -2 */
        0x42, 0x03, 'a', 'b', 'c', 0x4a, 0x00};
    assert_bytes(&b, want, sizeof want);

    PbReader r;
    PbField f;
    pb_reader_init(&r, b.data, b.len);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_int_eq(f.wire_type, PB_FIXED32);
    ck_assert_uint_eq(f.fixed, 0x01020304u);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_uint_eq(f.fixed, 0x0102030405060708ull);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_float_eq(pb_bits_to_float(f.fixed), 1.0f);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_double_eq(pb_bits_to_double(f.fixed), -2.5);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_uint_eq(f.field, 5);
    ck_assert_uint_eq(f.len, 8);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_uint_eq(f.field, 6);
    PbReader packed;
    pb_reader_init(&packed, f.data, f.len);
    uint64_t v;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(pb_read_varint(&packed, &v), 0);
        ck_assert_int_eq((int64_t)v, iv[i]);
    }
    ck_assert_ptr_eq(packed.p, packed.end);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_uint_eq(f.varint, 3);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_uint_eq(f.len, 3);
    ck_assert_mem_eq(f.data, "abc", 3);
    ck_assert_int_eq(pb_next(&r, &f), 1);
    ck_assert_uint_eq(f.field, 9);
    ck_assert_uint_eq(f.len, 0);
    ck_assert_int_eq(pb_next(&r, &f), 0);
    ck_assert_ptr_null(r.error);

    uint32_t u32;
    uint64_t u64;
    const uint8_t le[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pb_reader_init(&r, le, 8);
    ck_assert_int_eq(pb_read_fixed32(&r, &u32), 0);
    ck_assert_uint_eq(u32, 0x04030201u);
    ck_assert_int_eq(pb_read_fixed32(&r, &u32), 0);
    ck_assert_int_eq(pb_read_fixed32(&r, &u32), -1);
    pb_reader_init(&r, le, 8);
    ck_assert_int_eq(pb_read_fixed64(&r, &u64), 0);
    ck_assert_uint_eq(u64, 0x0807060504030201ull);
    pb_buf_free(&b);
}
END_TEST

/* Every proper prefix of a valid message that cuts a field in half is rejected; prefixes that end
 * on a field boundary parse cleanly. Decoding runs on an exact-size heap copy so ASan catches any
 * read past the end. */
START_TEST(test_truncation_every_byte) {
    PbBuf b;
    pb_buf_init(&b);
    pb_put_int64(&b, 1, -1);
    pb_put_fixed64(&b, 2, 7);
    pb_put_fixed32(&b, 3, 9);
    pb_put_string(&b, 4, "hello");
    pb_put_uint64(&b, 100000, 1);   /* multi-byte tag */
    size_t boundaries[] = {0, 11, 20, 25, 32, b.len};
    for (size_t n = 0; n <= b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        PbReader r;
        PbField f;
        pb_reader_init(&r, copy, n);
        int rc;
        int fields = 0;
        while ((rc = pb_next(&r, &f)) == 1) fields++;
        int on_boundary = 0;
        for (size_t k = 0; k < sizeof boundaries / sizeof boundaries[0]; k++)
            if (boundaries[k] == n) on_boundary = 1;
        if (on_boundary) {
            ck_assert_msg(rc == 0, "prefix %zu: %s", n, r.error ? r.error : "");
        } else {
            ck_assert_msg(rc == -1, "prefix %zu accepted", n);
            ck_assert_ptr_nonnull(r.error);
            ck_assert_int_eq(pb_next(&r, &f), -1);   /* sticky */
        }
        free(copy);
    }
    pb_buf_free(&b);
}
END_TEST

START_TEST(test_malformed) {
    PbReader r;
    PbField f;
    uint64_t v;
    /* 11-byte varint */
    const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    pb_reader_init(&r, long_varint, sizeof long_varint);
    ck_assert_int_eq(pb_next(&r, &f), -1);
    /* 10th byte with bits beyond 64 */
    const uint8_t overflow[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    pb_reader_init(&r, overflow, sizeof overflow);
    ck_assert_int_eq(pb_read_varint(&r, &v), -1);
    /* groups (wire 3/4) and wire types 6/7 */
    for (uint8_t wt = 3; wt <= 7; wt++) {
        if (wt == 5) continue;
        uint8_t msg[] = {(uint8_t)(0x08 | wt), 0, 0, 0, 0, 0, 0, 0, 0};
        pb_reader_init(&r, msg, sizeof msg);
        ck_assert_int_eq(pb_next(&r, &f), -1);
        ck_assert_ptr_nonnull(r.error);
    }
    /* field number 0 */
    const uint8_t field0[] = {0x00, 0x01};
    pb_reader_init(&r, field0, sizeof field0);
    ck_assert_int_eq(pb_next(&r, &f), -1);
    /* length past the end, and an absurd length that would wrap a pointer */
    const uint8_t past[] = {0x0a, 0x05, 'a', 'b'};
    pb_reader_init(&r, past, sizeof past);
    ck_assert_int_eq(pb_next(&r, &f), -1);
    const uint8_t huge[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'x'};
    pb_reader_init(&r, huge, sizeof huge);
    ck_assert_int_eq(pb_next(&r, &f), -1);
    /* tag over 32 bits */
    const uint8_t bigtag[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00};
    pb_reader_init(&r, bigtag, sizeof bigtag);
    ck_assert_int_eq(pb_next(&r, &f), -1);
}
END_TEST

START_TEST(test_buffer_growth) {
    PbBuf b;
    pb_buf_init(&b);
    for (uint32_t i = 0; i < 100000; i++) pb_put_uint64(&b, 1, i);
    ck_assert_int_eq(b.oom, 0);
    PbReader r;
    PbField f;
    pb_reader_init(&r, b.data, b.len);
    uint32_t i = 0;
    while (pb_next(&r, &f) == 1) ck_assert_uint_eq(f.varint, i++);
    ck_assert_uint_eq(i, 100000);
    pb_buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    pb_buf_free(&b);
    ck_assert_ptr_null(b.data);
}
END_TEST

static Suite *pb_suite(void) {
    Suite *s = suite_create("pb_wire");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_varint_encoding);
    tcase_add_test(tc, test_shape_vector);
    tcase_add_test(tc, test_fixed_and_packed);
    tcase_add_test(tc, test_truncation_every_byte);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_buffer_growth);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(pb_suite());
}
