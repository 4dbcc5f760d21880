/* test_idx.c: IDX reader on synthetic files (every kind of damage) and on the shipped MNIST. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/idx.h"
#include "support/check_run.h"
#include "support/test_files.h"

static char tmpdir[256];

static char *tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

/* An IDX image file of count 2x3 images (pixel values i*6 + k), header optionally altered. */
static size_t make_images(uint8_t *buf, uint32_t count) {
    const uint8_t head[] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)count, 0, 0, 0, 2, 0, 0, 0, 3};
    memcpy(buf, head, sizeof head);
    for (uint32_t i = 0; i < count * 6; i++) buf[16 + i] = (uint8_t)i;
    return 16 + count * 6;
}

static size_t make_labels(uint8_t *buf, uint32_t count) {
    const uint8_t head[] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)count};
    memcpy(buf, head, sizeof head);
    for (uint32_t i = 0; i < count; i++) buf[8 + i] = (uint8_t)(i % 10);
    return 8 + count;
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb9");
    ck_assert_int_eq(gzwrite(g, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
}

START_TEST(test_synthetic_valid_raw_and_gz) {
    test_make_tmpdir(tmpdir, sizeof tmpdir, "idx");
    uint8_t img[16 + 5 * 6], lab[8 + 5];
    size_t ni = make_images(img, 5), nl = make_labels(lab, 5);
    char ip[512], lp[512], gp[512];
    test_write_file(tmp_path(ip, sizeof ip, "img"), img, ni);
    test_write_file(tmp_path(lp, sizeof lp, "lab"), lab, nl);
    write_gz(tmp_path(gp, sizeof gp, "img.gz"), img, ni);
    IdxArray a, b;
    char err[512];
    for (int gz = 0; gz < 2; gz++) {
        ck_assert_msg(idx_read(gz ? gp : ip, &a, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(a.ndims, 3);
        ck_assert_uint_eq(a.dims[0], 5);
        ck_assert_uint_eq(a.dims[1], 2);
        ck_assert_uint_eq(a.dims[2], 3);
        ck_assert_uint_eq(a.size, 30);
        ck_assert_mem_eq(a.data, img + 16, 30);
        idx_free(&a);
    }
    ck_assert_msg(idx_read_mnist(gp, lp, &a, &b, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(b.size, 5);
    ck_assert_uint_eq(b.data[4], 4);
    idx_free(&a);
    idx_free(&b);
    test_remove_tree(tmpdir);
}
END_TEST

START_TEST(test_damaged_files_rejected) {
    test_make_tmpdir(tmpdir, sizeof tmpdir, "idx");
    uint8_t img[16 + 5 * 6 + 1], lab[8 + 5];
    size_t ni = make_images(img, 5), nl = make_labels(lab, 5);
    char p[512], lp[512], err[512];
    IdxArray a, b;
    tmp_path(p, sizeof p, "bad");
    tmp_path(lp, sizeof lp, "lab");
    /* every truncation */
    for (size_t cut = 0; cut < ni; cut++) {
        test_write_file(p, img, cut);
        ck_assert_msg(idx_read(p, &a, err, sizeof err) == -1, "cut %zu accepted", cut);
        ck_assert_ptr_nonnull(strstr(err, p));
    }
    /* trailing byte */
    img[ni] = 0;
    test_write_file(p, img, ni + 1);
    ck_assert_int_eq(idx_read(p, &a, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "trailing"));
    /* bad magic, unsupported type */
    img[0] = 1;
    test_write_file(p, img, ni);
    ck_assert_int_eq(idx_read(p, &a, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not an IDX file"));
    img[0] = 0;
    img[2] = 0x0d;   /* float */
    test_write_file(p, img, ni);
    ck_assert_int_eq(idx_read(p, &a, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not supported"));
    img[2] = 8;
    /* counts differ */
    test_write_file(p, img, ni);
    nl = make_labels(lab, 4);
    test_write_file(lp, lab, nl);
    ck_assert_int_eq(idx_read_mnist(p, lp, &a, &b, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "5 images but"));
    /* label out of range */
    nl = make_labels(lab, 5);
    lab[8 + 3] = 10;
    test_write_file(lp, lab, nl);
    ck_assert_int_eq(idx_read_mnist(p, lp, &a, &b, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "label 3 is 10"));
    /* labels file given as images */
    ck_assert_int_eq(idx_read_mnist(lp, lp, &a, &b, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not an MNIST image file"));
    /* missing file */
    ck_assert_int_eq(idx_read("/nonexistent/idx", &a, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/idx"));
    test_remove_tree(tmpdir);
}
END_TEST

/* The shipped data: sizes, first labels and per-digit counts from mnist-data.md. */
START_TEST(test_shipped_mnist) {
    static const struct {
        const char *images, *labels;
        uint32_t n;
        uint8_t first[10];
        int counts[10];
    } sets[] = {
        {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000, {5, 0, 4, 1, 9, 2, 1, 3, 1, 4},
         {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}},
        {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000, {7, 2, 1, 0, 4, 1, 4, 9, 5, 9},
         {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}},
    };
    for (int s = 0; s < 2; s++) {
        char ip[512], lp[512], err[512];
        snprintf(ip, sizeof ip, "%s/data/mnist/%s", SOURCE_DIR, sets[s].images);
        snprintf(lp, sizeof lp, "%s/data/mnist/%s", SOURCE_DIR, sets[s].labels);
        IdxArray im, lb;
        ck_assert_msg(idx_read_mnist(ip, lp, &im, &lb, err, sizeof err) == 0, "%s", err);
        ck_assert_uint_eq(im.dims[0], sets[s].n);
        ck_assert_uint_eq(im.dims[1], 28);
        ck_assert_uint_eq(im.dims[2], 28);
        ck_assert_mem_eq(lb.data, sets[s].first, 10);
        int counts[10] = {0};
        for (size_t i = 0; i < lb.size; i++) counts[lb.data[i]]++;
        for (int d = 0; d < 10; d++) ck_assert_int_eq(counts[d], sets[s].counts[d]);
        idx_free(&im);
        idx_free(&lb);
    }
}
END_TEST

static Suite *idx_suite(void) {
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_synthetic_valid_raw_and_gz);
    tcase_add_test(tc, test_damaged_files_rejected);
    tcase_add_test(tc, test_shipped_mnist);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(idx_suite());
}
