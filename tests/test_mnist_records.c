/* test_mnist_records.c: IDX -> TFRecords of Examples -> decoded set, byte-identical; every bad
 * record is caught with its file, index and offset. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/idx.h"
#include "io/mnist_records.h"
#include "support/check_run.h"
#include "support/test_files.h"

static char tmpdir[256];

static char *tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

static void shipped(char *ip, char *lp, size_t n, int train) {
    snprintf(ip, n, "%s/data/mnist/%s-images-idx3-ubyte.gz", SOURCE_DIR, train ? "train" : "t10k");
    snprintf(lp, n, "%s/data/mnist/%s-labels-idx1-ubyte.gz", SOURCE_DIR, train ? "train" : "t10k");
}

/* from-idx on the shipped test set (and the training set outside the quick run), each
 * compression: the loader gives back exactly the IDX pixels and labels. */
START_TEST(test_roundtrip_shipped) {
    test_make_tmpdir(tmpdir, sizeof tmpdir, "mnistrec");
    const TfrCompression cs[] = {TFR_NONE, TFR_GZIP, TFR_ZLIB};
    int sets = getenv("CNN_TEST_QUICK") ? 1 : 2;
    for (int train = 0; train < sets; train++) {
        char ip[512], lp[512], out[512], err[512];
        shipped(ip, lp, sizeof ip, train);
        IdxArray im, lb;
        ck_assert_msg(idx_read_mnist(ip, lp, &im, &lb, err, sizeof err) == 0, "%s", err);
        for (int k = 0; k < (train ? 1 : 3); k++) {
            tmp_path(out, sizeof out, "mnist.tfrecords");
            int64_t count = 0;
            ck_assert_msg(mnist_idx_to_tfrecord(ip, lp, out, cs[k], &count, err, sizeof err) == 0, "%s",
                          err);
            ck_assert_int_eq(count, im.dims[0]);
            MnistSet set;
            const char *in = out;
            ck_assert_msg(mnist_load_tfrecords(&in, 1, TFR_AUTO, &set, err, sizeof err) == 0, "%s", err);
            ck_assert_int_eq(set.n, im.dims[0]);
            ck_assert_int_eq(memcmp(set.images, im.data, im.size), 0);
            for (int64_t i = 0; i < set.n; i++) ck_assert_int_eq(set.labels[i], lb.data[i]);
            mnist_set_free(&set);
        }
        idx_free(&im);
        idx_free(&lb);
    }
    test_remove_tree(tmpdir);
}
END_TEST

/* Writes records built by a callback into a plain TFRecord file. */
static void write_file(const char *path, int n, void (*make)(ExampleBuilder *, int, PbBuf *)) {
    char err[512];
    TfrWriter *w = tfr_writer_open(path, TFR_NONE, TFR_WRITE_ATOMIC, err, sizeof err);
    ExampleBuilder b;
    PbBuf rec;
    example_builder_init(&b);
    pb_buf_init(&rec);
    for (int i = 0; i < n; i++) {
        pb_buf_reset(&rec);
        make(&b, i, &rec);
        ck_assert_int_eq(tfr_writer_write(w, rec.data, rec.len), 0);
    }
    example_builder_free(&b);
    pb_buf_free(&rec);
    ck_assert_int_eq(tfr_writer_close(w, err, sizeof err), 0);
}

static void good(ExampleBuilder *b, int i, PbBuf *out) {
    uint8_t px[784];
    memset(px, i, sizeof px);
    mnist_encode_example(b, px, i % 10, out);
}

static int bad_record;   /* which record the next maker spoils */
static int bad_kind;

static void spoiled(ExampleBuilder *b, int i, PbBuf *out) {
    if (i != bad_record) {
        good(b, i, out);
        return;
    }
    uint8_t px[785] = {0};
    const int64_t one = 1, twenty8 = 28, label = bad_kind == 1 ? 10 : 3, wide = 27;
    example_builder_reset(b);
    if (bad_kind != 0) example_add_bytes1(b, "image_raw", px, bad_kind == 2 ? 785 : 784);
    example_add_int64s(b, "label", &label, 1);
    example_add_int64s(b, "height", &twenty8, 1);
    example_add_int64s(b, "width", bad_kind == 3 ? &wide : &twenty8, 1);
    example_add_int64s(b, "depth", &one, 1);
    if (bad_kind == 4) example_add_floats(b, "label", (const float[]){3.0f}, 1);
    example_serialize(b, out);
}

START_TEST(test_bad_records_named) {
    test_make_tmpdir(tmpdir, sizeof tmpdir, "mnistrec");
    static const char *const want[] = {"feature 'image_raw' is missing", "feature 'label' is 10",
                                       "'image_raw' has 785 bytes", "feature 'width' is 27",
                                       "feature 'label' is a float_list"};
    char path[512], err[512];
    tmp_path(path, sizeof path, "bad.tfrecords");
    for (bad_kind = 0; bad_kind < 5; bad_kind++) {
        bad_record = 3 + bad_kind;
        write_file(path, 10, spoiled);
        MnistSet set;
        const char *in = path;
        ck_assert_int_eq(mnist_load_tfrecords(&in, 1, TFR_AUTO, &set, err, sizeof err), -1);
        char where[600];
        /* the records before the bad one are all good ones of the same size */
        ExampleBuilder b;
        PbBuf rec;
        example_builder_init(&b);
        pb_buf_init(&rec);
        good(&b, 0, &rec);
        snprintf(where, sizeof where, "%s: record %d at offset %zu: ", path, bad_record,
                 (size_t)bad_record * (12 + rec.len + 4));
        example_builder_free(&b);
        pb_buf_free(&rec);
        ck_assert_msg(strstr(err, where) != NULL, "'%s' lacks '%s'", err, where);
        ck_assert_msg(strstr(err, want[bad_kind]) != NULL, "'%s' lacks '%s'", err, want[bad_kind]);
        ck_assert_ptr_null(set.images);
    }
    /* not an Example at all */
    TfrWriter *w = tfr_writer_open(path, TFR_NONE, TFR_WRITE_ATOMIC, err, sizeof err);
    tfr_writer_write(w, "\xff\xff", 2);
    tfr_writer_close(w, err, sizeof err);
    MnistSet set;
    const char *in = path;
    ck_assert_int_eq(mnist_load_tfrecords(&in, 1, TFR_AUTO, &set, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "record 0 at offset 0: malformed Example"));
    /* empty input */
    write_file(path, 0, good);
    ck_assert_int_eq(mnist_load_tfrecords(&in, 1, TFR_AUTO, &set, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no records"));
    test_remove_tree(tmpdir);
}
END_TEST

/* A directory (SageMaker channel) of shards loads in name order. */
START_TEST(test_directory_of_shards) {
    test_make_tmpdir(tmpdir, sizeof tmpdir, "mnistrec");
    char p[512], err[512];
    write_file(tmp_path(p, sizeof p, "part-1"), 7, good);
    write_file(tmp_path(p, sizeof p, "part-0"), 5, good);
    MnistSet set;
    const char *in = tmpdir;
    ck_assert_msg(mnist_load_tfrecords(&in, 1, TFR_AUTO, &set, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(set.n, 12);
    ck_assert_int_eq(set.labels[4], 4);   /* part-0 record 4 */
    ck_assert_int_eq(set.labels[5], 0);   /* part-1 record 0 */
    ck_assert_int_eq(set.images[6 * 784], 1);
    mnist_set_free(&set);
    test_remove_tree(tmpdir);
}
END_TEST

static Suite *mnist_suite(void) {
    Suite *s = suite_create("mnist_records");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_roundtrip_shipped);
    tcase_add_test(tc, test_bad_records_named);
    tcase_add_test(tc, test_directory_of_shards);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(mnist_suite());
}
