/* test_example.c: tf.train.Example build and parse. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/example.h"
#include "support/check_run.h"

/* tf-formats.md 9.2: image [0.0, 1.0] (float) + label 7 (int64), as TF serialises it. */
static const uint8_t example41[41] = {
    0x0a, 0x27, 0x0a, 0x15, 0x0a, 0x05, 'i', 'm', 'a', 'g', 'e', 0x12, 0x0c, 0x12, 0x0a, 0x0a,
    0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3f, 0x0a, 0x0e, 0x0a, 0x05, 'l', 'a', 'b',
    'e', 'l', 0x12, 0x05, 0x1a, 0x03, 0x0a, 0x01, 0x07};

START_TEST(test_build_matches_tf_bytes) {
    ExampleBuilder b;
    PbBuf out;
    example_builder_init(&b);
    pb_buf_init(&out);
    const float img[2] = {0.0f, 1.0f};
    const int64_t label = 7;
    example_add_floats(&b, "image", img, 2);
    example_add_int64s(&b, "label", &label, 1);
    ck_assert_int_eq(example_serialize(&b, &out), 0);
    ck_assert_uint_eq(out.len, sizeof example41);
    ck_assert_mem_eq(out.data, example41, sizeof example41);
    /* reset + rebuild gives the same bytes */
    example_builder_reset(&b);
    pb_buf_reset(&out);
    example_add_floats(&b, "image", img, 2);
    example_add_int64s(&b, "label", &label, 1);
    example_serialize(&b, &out);
    ck_assert_mem_eq(out.data, example41, sizeof example41);
    example_builder_free(&b);
    pb_buf_free(&out);
}
END_TEST

START_TEST(test_parse_and_typed_lookups) {
    ExampleView v;
    char err[256];
    example_view_init(&v);
    ck_assert_int_eq(example_parse(&v, example41, sizeof example41, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 2);
    float img[2];
    int64_t label;
    ck_assert_int_eq(example_get_floats(&v, "image", img, 2, err, sizeof err), 0);
    ck_assert_float_eq(img[0], 0.0f);
    ck_assert_float_eq(img[1], 1.0f);
    ck_assert_int_eq(example_get_int64s(&v, "label", &label, 1, err, sizeof err), 0);
    ck_assert_int_eq(label, 7);

    ck_assert_int_eq(example_get_int64s(&v, "height", &label, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "feature 'height' is missing");
    ck_assert_int_eq(example_get_int64s(&v, "image", &label, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "feature 'image' is a float_list, expected an int64_list");
    ck_assert_int_eq(example_get_floats(&v, "image", img, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "feature 'image' has 2 values, expected 1");
    const uint8_t *p;
    size_t n;
    ck_assert_int_eq(example_get_bytes(&v, "label", &p, &n, err, sizeof err), -1);
    ck_assert_str_eq(err, "feature 'label' is an int64_list, expected a bytes_list");
    example_view_free(&v);
}
END_TEST

START_TEST(test_bytes_and_negative_and_empty) {
    ExampleBuilder b;
    PbBuf out;
    example_builder_init(&b);
    pb_buf_init(&out);
    const int64_t vals[] = {-1, INT64_MIN, INT64_MAX, 0};
    example_add_int64s(&b, "ints", vals, 4);
    const char *strs[] = {"", "abc", "\x00\xff"};
    const size_t lens[] = {0, 3, 2};
    example_add_bytes(&b, "strs", (const void *const *)strs, lens, 3);
    example_add_floats(&b, "nofloats", NULL, 0);
    example_add_bytes1(&b, "raw", "\x01\x02\x03", 3);
    ck_assert_int_eq(example_serialize(&b, &out), 0);
    ExampleView v;
    char err[256];
    example_view_init(&v);
    ck_assert_msg(example_parse(&v, out.data, out.len, err, sizeof err) == 0, "%s", err);
    int64_t got[4];
    ck_assert_int_eq(example_get_int64s(&v, "ints", got, 4, err, sizeof err), 0);
    ck_assert_mem_eq(got, vals, sizeof vals);
    const ExFeature *f = example_find(&v, "strs");
    ck_assert_uint_eq(f->count, 3);
    ExBytesIter it = {0};
    const uint8_t *p;
    size_t n;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ex_feature_bytes_next(f, &it, &p, &n), 1);
        ck_assert_uint_eq(n, lens[i]);
        ck_assert_mem_eq(p, strs[i], n);
    }
    ck_assert_int_eq(ex_feature_bytes_next(f, &it, &p, &n), 0);
    f = example_find(&v, "nofloats");
    ck_assert_int_eq(f->kind, EX_KIND_FLOAT);
    ck_assert_uint_eq(f->count, 0);
    ck_assert_int_eq(example_get_bytes(&v, "raw", &p, &n, err, sizeof err), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(p, "\x01\x02\x03", 3);
    example_view_free(&v);
    example_builder_free(&b);
    pb_buf_free(&out);
}
END_TEST

/* Unpacked lists, several packed chunks, duplicate keys, unknown fields, map entries value-first:
 * built by hand with the wire encoder, as another protobuf writer might produce them. */
START_TEST(test_accepts_protobuf_variants) {
    PbBuf list, feat, entry, features, ex;
    pb_buf_init(&list);
    pb_buf_init(&feat);
    pb_buf_init(&entry);
    pb_buf_init(&features);
    pb_buf_init(&ex);
    /* "i": Int64List with unpacked 5, packed [6, -7], unpacked 8, an unknown field 9 */
    pb_put_int64(&list, 1, 5);
    const int64_t chunk[] = {6, -7};
    pb_put_packed_int64(&list, 1, chunk, 2);
    pb_put_int64(&list, 1, 8);
    pb_put_string(&list, 9, "ignored");
    pb_put_message(&feat, 3, &list);
    pb_put_message(&entry, 2, &feat);   /* value before key */
    pb_put_string(&entry, 1, "i");
    pb_put_message(&features, 1, &entry);
    /* "f": FloatList with unpacked 1.5, packed [2.5], unpacked -3 */
    pb_buf_reset(&list);
    pb_buf_reset(&feat);
    pb_buf_reset(&entry);
    pb_put_float(&list, 1, 1.5f);
    const float fl[] = {2.5f};
    pb_put_packed_float(&list, 1, fl, 1);
    pb_put_float(&list, 1, -3.0f);
    pb_put_message(&feat, 2, &list);
    pb_put_string(&entry, 1, "f");
    pb_put_message(&entry, 2, &feat);
    pb_put_message(&features, 1, &entry);
    /* "f" again as an int64 [1]: the last one wins */
    pb_buf_reset(&list);
    pb_buf_reset(&feat);
    pb_buf_reset(&entry);
    pb_put_int64(&list, 1, 1);
    pb_put_message(&feat, 3, &list);
    pb_put_string(&entry, 1, "dup");
    pb_put_message(&entry, 2, &feat);
    pb_put_message(&features, 1, &entry);
    pb_put_message(&ex, 1, &features);
    pb_put_uint64(&ex, 7, 42);   /* unknown field of Example */
    /* a second `features` field merges */
    pb_buf_reset(&features);
    pb_buf_reset(&list);
    pb_buf_reset(&feat);
    pb_buf_reset(&entry);
    pb_put_int64(&list, 1, 2);
    pb_put_message(&feat, 3, &list);
    pb_put_string(&entry, 1, "dup");
    pb_put_message(&entry, 2, &feat);
    pb_put_message(&features, 1, &entry);
    pb_put_message(&ex, 1, &features);

    ExampleView v;
    char err[256];
    example_view_init(&v);
    ck_assert_msg(example_parse(&v, ex.data, ex.len, err, sizeof err) == 0, "%s", err);
    int64_t iv[4];
    ck_assert_int_eq(example_get_int64s(&v, "i", iv, 4, err, sizeof err), 0);
    ck_assert_int_eq(iv[0], 5);
    ck_assert_int_eq(iv[1], 6);
    ck_assert_int_eq(iv[2], -7);
    ck_assert_int_eq(iv[3], 8);
    float fv[3];
    ck_assert_int_eq(example_get_floats(&v, "f", fv, 3, err, sizeof err), 0);
    ck_assert_float_eq(fv[0], 1.5f);
    ck_assert_float_eq(fv[1], 2.5f);
    ck_assert_float_eq(fv[2], -3.0f);
    int64_t d;
    ck_assert_int_eq(example_get_int64s(&v, "dup", &d, 1, err, sizeof err), 0);
    ck_assert_int_eq(d, 2);
    example_view_free(&v);
    pb_buf_free(&list);
    pb_buf_free(&feat);
    pb_buf_free(&entry);
    pb_buf_free(&features);
    pb_buf_free(&ex);
}
END_TEST

/* Every truncation of a valid Example is rejected (exact-size heap copies for ASan); byte flips
 * never crash. */
START_TEST(test_malformed_rejected) {
    ExampleView v;
    char err[256];
    example_view_init(&v);
    for (size_t n = 1; n < sizeof example41; n++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, example41, n);
        ck_assert_msg(example_parse(&v, copy, n, err, sizeof err) == -1, "prefix %zu accepted", n);
        ck_assert_ptr_nonnull(strstr(err, "malformed Example"));
        free(copy);
    }
    for (size_t pos = 0; pos < sizeof example41; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(sizeof example41);
            memcpy(copy, example41, sizeof example41);
            copy[pos] ^= (uint8_t)(1 << bit);
            if (example_parse(&v, copy, sizeof example41, err, sizeof err) == 0) {
                /* accepted variants must still be self-consistent */
                for (size_t i = 0; i < v.n; i++) {
                    if (v.features[i].kind == EX_KIND_INT64) {
                        int64_t *vals = malloc((v.features[i].count + 1) * sizeof *vals);
                        ex_feature_int64s(&v.features[i], vals);
                        free(vals);
                    } else if (v.features[i].kind == EX_KIND_FLOAT) {
                        float *vals = malloc((v.features[i].count + 1) * sizeof *vals);
                        ex_feature_floats(&v.features[i], vals);
                        free(vals);
                    }
                }
            }
            free(copy);
        }
    }
    /* packed float payload of 1 byte; wrong wire type for a list */
    const uint8_t bad_float[] = {0x0a, 0x0c, 0x0a, 0x0a, 0x0a, 0x01, 'x', 0x12, 0x05,
                                 0x12, 0x03, 0x0a, 0x01, 0x00};
    ck_assert_int_eq(example_parse(&v, bad_float, sizeof bad_float, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'x'"));
    ck_assert_ptr_nonnull(strstr(err, "multiple of 4"));
    const uint8_t bad_wire[] = {0x0a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 'y', 0x12, 0x03, 0x18, 0x01, 0x00};
    ck_assert_int_eq(example_parse(&v, bad_wire, sizeof bad_wire, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'y'"));
    /* empty input = empty Example */
    ck_assert_int_eq(example_parse(&v, "", 0, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 0);
    example_view_free(&v);
}
END_TEST

static Suite *example_suite(void) {
    Suite *s = suite_create("example");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_build_matches_tf_bytes);
    tcase_add_test(tc, test_parse_and_typed_lookups);
    tcase_add_test(tc, test_bytes_and_negative_and_empty);
    tcase_add_test(tc, test_accepts_protobuf_variants);
    tcase_add_test(tc, test_malformed_rejected);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(example_suite());
}
