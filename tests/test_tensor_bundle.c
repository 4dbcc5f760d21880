/* test_tensor_bundle.c: the tensor-bundle (TF V2 checkpoint) writer and reader.
 * TF's own files in ${SHARED_DIR}/fixtures are the oracle: we read them, and our writer re-creates
 * them byte for byte from the same entries. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/crc32c.h"
#include "io/tensor_bundle.h"
#include "support/check_run.h"
#include "support/test_files.h"

#define FIXTURE SHARED_DIR "/fixtures/tf112-estimator-export"
#define EXPORT_VARS FIXTURE "/export/exporter/1562621605/variables/variables"

/* tf-formats.md §11: the fixture's variables.index, entry by entry (key order). */
static const struct {
    const char *name;
    int dtype, rank;
    int64_t shape[4];
    uint64_t offset, size;
    uint32_t crc;
} FIXTURE_VARS[] = {
    {"conv2d/bias", TF_DT_FLOAT, 1, {32}, 0, 128, 0xaeb04175},
    {"conv2d/kernel", TF_DT_FLOAT, 4, {5, 5, 1, 32}, 128, 3200, 0xdf4ebe3d},
    {"conv2d_1/bias", TF_DT_FLOAT, 1, {64}, 3328, 256, 0xbb888746},
    {"conv2d_1/kernel", TF_DT_FLOAT, 4, {5, 5, 32, 64}, 3584, 204800, 0xea13fe28},
    {"dense/bias", TF_DT_FLOAT, 1, {1024}, 208384, 4096, 0x2a5a8463},
    {"dense/kernel", TF_DT_FLOAT, 2, {3136, 1024}, 212480, 12845056, 0xa746fc91},
    {"dense_1/bias", TF_DT_FLOAT, 1, {10}, 13057536, 40, 0x4662ecf0},
    {"dense_1/kernel", TF_DT_FLOAT, 2, {1024, 10}, 13057576, 40960, 0x17631626},
    {"global_step", TF_DT_INT64, 0, {0}, 13098536, 8, 0x3abfa3ae},
};
enum { N_FIXTURE_VARS = sizeof FIXTURE_VARS / sizeof FIXTURE_VARS[0] };

START_TEST(test_read_fixture_export_index) {
    char err[512];
    BundleReader *r = bundle_open(EXPORT_VARS, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(bundle_num_shards(r), 1);
    ck_assert_int_eq(bundle_num_entries(r), N_FIXTURE_VARS);
    for (int i = 0; i < N_FIXTURE_VARS; i++) {
        const BundleEntry *e = bundle_entry_at(r, i);
        ck_assert_str_eq(e->name, FIXTURE_VARS[i].name);
        ck_assert_int_eq(e->dtype, FIXTURE_VARS[i].dtype);
        ck_assert_int_eq(e->rank, FIXTURE_VARS[i].rank);
        for (int d = 0; d < e->rank; d++) ck_assert_int_eq(e->shape[d], FIXTURE_VARS[i].shape[d]);
        ck_assert_uint_eq(e->offset, FIXTURE_VARS[i].offset);
        ck_assert_uint_eq(e->size, FIXTURE_VARS[i].size);
        ck_assert_uint_eq(e->masked_crc, FIXTURE_VARS[i].crc);
        ck_assert_ptr_eq(bundle_find(r, e->name), e);
    }
    ck_assert_ptr_null(bundle_find(r, "conv2d"));
    ck_assert_ptr_null(bundle_find(r, "zzz"));
    /* The fixture has no data file: reading one is a clear error naming it. */
    float bias[10];
    ck_assert_int_eq(bundle_read(r, bundle_find(r, "dense_1/bias"), bias, sizeof bias, err,
                                 sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "variables.data-00000-of-00001"));
    ck_assert_int_eq(bundle_check_data_files(r, err, sizeof err), -1);
    bundle_close(r);
}
END_TEST

/* The same entries give TF's exact bytes (410 bytes, one data block, index key "h"). */
START_TEST(test_encode_reproduces_fixture_export_index) {
    BundleEntry e[N_FIXTURE_VARS];
    memset(e, 0, sizeof e);
    for (int i = 0; i < N_FIXTURE_VARS; i++) {
        int j = N_FIXTURE_VARS - 1 - i;                  /* given out of order on purpose */
        e[j].name = (char *)FIXTURE_VARS[i].name;
        e[j].dtype = FIXTURE_VARS[i].dtype;
        e[j].rank = FIXTURE_VARS[i].rank;
        memcpy(e[j].shape, FIXTURE_VARS[i].shape, sizeof FIXTURE_VARS[i].shape);
        e[j].offset = FIXTURE_VARS[i].offset;
        e[j].size = FIXTURE_VARS[i].size;
        e[j].masked_crc = FIXTURE_VARS[i].crc;
    }
    char err[256];
    PbBuf out;
    pb_buf_init(&out);
    ck_assert_int_eq(bundle_index_encode(e, N_FIXTURE_VARS, &out, err, sizeof err), 0);
    size_t n;
    uint8_t *want = test_read_file(EXPORT_VARS ".index", &n);
    ck_assert_ptr_nonnull(want);
    ck_assert_uint_eq(out.len, 410);
    ck_assert_uint_eq(out.len, n);
    ck_assert_mem_eq(out.data, want, n);
    free(want);
    pb_buf_free(&out);
}
END_TEST

/* TF's checkpoint indexes (header + 38 tensors, three restarts in the data block): read them,
 * re-encode what was read, get the same bytes. */
static void check_reencode(const char *prefix, int want_entries) {
    char err[512], path[512];
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(bundle_num_entries(r), want_entries);
    BundleEntry *e = calloc((size_t)want_entries, sizeof *e);
    for (int i = 0; i < want_entries; i++) e[i] = *bundle_entry_at(r, i);
    PbBuf out;
    pb_buf_init(&out);
    ck_assert_int_eq(bundle_index_encode(e, want_entries, &out, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s.index", prefix);
    size_t n;
    uint8_t *want = test_read_file(path, &n);
    ck_assert_uint_eq(out.len, n);
    ck_assert_mem_eq(out.data, want, n);
    free(want);
    pb_buf_free(&out);
    free(e);
    bundle_close(r);
}

START_TEST(test_fixture_checkpoint_indexes) {
    check_reencode(FIXTURE "/model.ckpt-10", 38);
    check_reencode(FIXTURE "/model.ckpt-0", 38);
    check_reencode(FIXTURE "/keras/keras_model.ckpt", 38);
    /* A few entries of model.ckpt-10 (§11): Adam/iterations int64 scalar, a Keras-v1 Adam slot. */
    char err[512];
    BundleReader *r = bundle_open(FIXTURE "/model.ckpt-10", err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    const BundleEntry *it = bundle_find(r, "Adam/iterations");
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->dtype, TF_DT_INT64);
    ck_assert_int_eq(it->rank, 0);
    const BundleEntry *b1 = bundle_find(r, "Adam/beta_1");
    ck_assert_uint_eq(b1->masked_crc, 0xdfc7ebfd);       /* float 0.9 */
    const BundleEntry *gs = bundle_find(r, "global_step");
    ck_assert_uint_eq(gs->masked_crc, 0x3abfa3ae);       /* int64 10 */
    const BundleEntry *slot = bundle_find(r, "training/Variable_23");
    ck_assert_ptr_nonnull(slot);
    ck_assert_int_eq(slot->rank, 1);
    ck_assert_int_eq(slot->shape[0], 1);
    bundle_close(r);
}
END_TEST

/* tf-formats.md §6.6: the masked CRCs TF stores for small tensors. */
START_TEST(test_entry_crc_vectors) {
    char dir[256], prefix[300], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_bundle_crc");
    snprintf(prefix, sizeof prefix, "%s/v", dir);
    float f0 = 0.0f, f9 = 0.9f, f999 = 0.999f, f1 = 0.1f, zeros[32] = {0};
    int64_t i0 = 0, i10 = 10;
    TfTensor t[] = {
        {"a", TF_DT_FLOAT, 0, {0}, &f0, 4},     {"b", TF_DT_FLOAT, 0, {0}, &f9, 4},
        {"c", TF_DT_FLOAT, 0, {0}, &f999, 4},   {"d", TF_DT_FLOAT, 0, {0}, &f1, 4},
        {"e", TF_DT_INT64, 0, {0}, &i0, 8},     {"f", TF_DT_INT64, 0, {0}, &i10, 8},
        {"g", TF_DT_FLOAT, 1, {32}, zeros, 128},
    };
    const uint32_t want[] = {0x3a117ba6, 0xdfc7ebfd, 0xd9faedbb, 0x489b90f5,
                             0x07980329, 0x3abfa3ae, 0x6c38fb26};
    ck_assert_int_eq(bundle_write(prefix, t, 7, err, sizeof err), 0);
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    for (int i = 0; i < 7; i++) ck_assert_uint_eq(bundle_entry_at(r, i)->masked_crc, want[i]);
    bundle_close(r);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

/* Random tensors of several dtypes and ranks (a scalar, an empty one) written and read back. */
START_TEST(test_round_trip) {
    char dir[256], prefix[300], path[400], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_bundle_rt");
    snprintf(prefix, sizeof prefix, "%s/model.ckpt-7", dir);
    enum { NT = 6 };
    TfTensor t[NT] = {
        {"dense_1/kernel", TF_DT_FLOAT, 2, {33, 10}, NULL, 33 * 10 * 4},
        {"conv2d/kernel", TF_DT_FLOAT, 4, {5, 5, 1, 3}, NULL, 75 * 4},
        {"global_step", TF_DT_INT64, 0, {0}, NULL, 8},
        {"Adam/lr", TF_DT_DOUBLE, 1, {3}, NULL, 24},
        {"empty", TF_DT_FLOAT, 2, {0, 7}, NULL, 0},
        {"counts", TF_DT_INT32, 3, {2, 3, 4}, NULL, 96},
    };
    uint32_t seed = 12345;
    for (int i = 0; i < NT; i++) {
        uint8_t *p = malloc(t[i].nbytes + 1);
        for (size_t k = 0; k < t[i].nbytes; k++) p[k] = (uint8_t)(lcg(&seed) >> 24);
        t[i].data = p;
    }
    ck_assert_msg(bundle_write(prefix, t, NT, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(test_count_dir_entries(dir), 2);   /* no temporaries left behind */
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(bundle_check_data_files(r, err, sizeof err), 0);
    ck_assert_int_eq(bundle_num_entries(r), NT);
    for (int i = 1; i < NT; i++)
        ck_assert_int_lt(strcmp(bundle_entry_at(r, i - 1)->name, bundle_entry_at(r, i)->name), 0);
    uint64_t end = 0;
    for (int i = 0; i < NT; i++) {
        const BundleEntry *e = bundle_find(r, t[i].name);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(e->dtype, t[i].dtype);
        ck_assert_int_eq(e->rank, t[i].rank);
        for (int d = 0; d < e->rank; d++) ck_assert_int_eq(e->shape[d], t[i].shape[d]);
        ck_assert_uint_eq(e->size, t[i].nbytes);
        uint8_t *back = malloc(t[i].nbytes + 1);
        memset(back, 0xAB, t[i].nbytes + 1);
        ck_assert_msg(bundle_read(r, e, back, t[i].nbytes, err, sizeof err) == 0, "%s", err);
        ck_assert_mem_eq(back, t[i].data, t[i].nbytes);
        free(back);
        if (e->offset + e->size > end) end = e->offset + e->size;
    }
    /* the data file holds the tensors contiguously in key order */
    bundle_data_filename(path, sizeof path, prefix, 0, 1);
    size_t n;
    uint8_t *data = test_read_file(path, &n);
    ck_assert_uint_eq(n, end);
    uint64_t off = 0;
    for (int i = 0; i < NT; i++) {
        const BundleEntry *e = bundle_entry_at(r, i);
        ck_assert_uint_eq(e->offset, off);
        off += e->size;
    }
    free(data);
    bundle_close(r);
    for (int i = 0; i < NT; i++) free((void *)t[i].data);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

/* Enough keys for several 256 KiB data blocks: index entries use shortest separators and the
 * reader walks every block. */
START_TEST(test_many_blocks) {
    char dir[256], prefix[300], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_bundle_blocks");
    snprintf(prefix, sizeof prefix, "%s/big", dir);
    enum { NT = 12000 };
    TfTensor *t = calloc(NT, sizeof *t);
    char (*names)[64] = calloc(NT, 64);
    float *vals = calloc(NT, sizeof *vals);
    for (int i = 0; i < NT; i++) {
        snprintf(names[i], 64, "layer_%05d/some_long_variable_name/kernel", i);
        vals[i] = (float)i;
        t[i] = (TfTensor){names[i], TF_DT_FLOAT, 1, {1}, &vals[i], 4};
    }
    ck_assert_msg(bundle_write(prefix, t, NT, err, sizeof err) == 0, "%s", err);
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(bundle_num_entries(r), NT);
    for (int i = 0; i < NT; i += 997) {
        float v;
        const BundleEntry *e = bundle_find(r, names[i]);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(bundle_read(r, e, &v, sizeof v, err, sizeof err), 0);
        ck_assert_float_eq(v, (float)i);
    }
    bundle_close(r);
    /* re-encoding what was read is stable */
    size_t n;
    char path[400];
    snprintf(path, sizeof path, "%s.index", prefix);
    uint8_t *idx = test_read_file(path, &n);
    ck_assert_uint_gt(n, 2 * 262144);
    free(idx);
    free(t);
    free(names);
    free(vals);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

/* Every flipped byte of the fixture index (except the footer's zero padding, which TF does not
 * read either) and every truncation is reported, never accepted or crashed on. */
START_TEST(test_corrupt_index_detected) {
    size_t n;
    uint8_t *orig = test_read_file(EXPORT_VARS ".index", &n);
    ck_assert_ptr_nonnull(orig);
    uint8_t *b = malloc(n);
    char err[512];
    const size_t handles_end = n - 48 + 6;      /* footer: 6 bytes of handles, then padding */
    for (size_t i = 0; i < n; i++) {
        if (i >= handles_end && i < n - 8) continue;
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(b, orig, n);
            b[i] ^= (uint8_t)(1u << bit);
            BundleReader *r = bundle_parse_index(b, n, "corrupt.index", err, sizeof err);
            ck_assert_msg(r == NULL, "flipping bit %d of byte %zu went unnoticed", bit, i);
            ck_assert_ptr_nonnull(strstr(err, "corrupt.index"));
        }
    }
    for (size_t len = 0; len < n; len++) {
        BundleReader *r = bundle_parse_index(orig, len, "short.index", err, sizeof err);
        ck_assert_msg(r == NULL, "a %zu-byte prefix was accepted", len);
    }
    free(b);
    free(orig);
}
END_TEST

START_TEST(test_corrupt_data_detected) {
    char dir[256], prefix[300], path[400], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_bundle_corrupt");
    snprintf(prefix, sizeof prefix, "%s/v", dir);
    float w[100];
    for (int i = 0; i < 100; i++) w[i] = (float)i * 0.5f;
    TfTensor t = {"w", TF_DT_FLOAT, 2, {10, 10}, w, sizeof w};
    ck_assert_int_eq(bundle_write(prefix, &t, 1, err, sizeof err), 0);
    bundle_data_filename(path, sizeof path, prefix, 0, 1);
    size_t n;
    uint8_t *data = test_read_file(path, &n);
    data[37] ^= 0x10;
    ck_assert_int_eq(test_write_file(path, data, n), 0);
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    float back[100];
    ck_assert_int_eq(bundle_read(r, bundle_find(r, "w"), back, sizeof back, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "checksum mismatch"));
    ck_assert_ptr_nonnull(strstr(err, "'w'"));
    bundle_close(r);
    ck_assert_int_eq(test_write_file(path, data, n - 1), 0);       /* truncated data file */
    r = bundle_open(prefix, err, sizeof err);
    ck_assert_int_eq(bundle_check_data_files(r, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "truncated"));
    ck_assert_int_eq(bundle_read(r, bundle_find(r, "w"), back, sizeof back, err, sizeof err), -1);
    bundle_close(r);
    free(data);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

START_TEST(test_writer_rejects_bad_input) {
    char err[512];
    float x[4] = {0};
    TfTensor dup[2] = {{"a", TF_DT_FLOAT, 1, {4}, x, 16}, {"a", TF_DT_FLOAT, 1, {4}, x, 16}};
    ck_assert_int_eq(bundle_write("/tmp/never_written_bundle", dup, 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'a' appears twice"));
    TfTensor badsize = {"b", TF_DT_FLOAT, 1, {5}, x, 16};
    ck_assert_int_eq(bundle_write("/tmp/never_written_bundle", &badsize, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "shape needs 20"));
    TfTensor str = {"s", TF_DT_STRING, 0, {0}, x, 4};
    ck_assert_int_eq(bundle_write("/tmp/never_written_bundle", &str, 1, err, sizeof err), -1);
    ck_assert(!test_path_exists("/tmp/never_written_bundle.index"));
    ck_assert_int_eq(bundle_write("/nonexistent_dir/x", &badsize, 0, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent_dir/x"));
}
END_TEST

static Suite *bundle_suite(void) {
    Suite *s = suite_create("tensor_bundle");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_read_fixture_export_index);
    tcase_add_test(tc, test_encode_reproduces_fixture_export_index);
    tcase_add_test(tc, test_fixture_checkpoint_indexes);
    tcase_add_test(tc, test_entry_crc_vectors);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_many_blocks);
    tcase_add_test(tc, test_corrupt_index_detected);
    tcase_add_test(tc, test_corrupt_data_detected);
    tcase_add_test(tc, test_writer_rejects_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(bundle_suite());
}
