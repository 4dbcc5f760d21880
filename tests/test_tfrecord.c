/* test_tfrecord.c: TFRecord framing, compression, corruption and truncation, path expansion. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "io/crc32c.h"
#include "io/path_list.h"
#include "io/tfrecord.h"
#include "support/check_run.h"
#include "support/test_files.h"

/* One scratch directory per test. */
static char tmpdir[256];
static const char *test_tmpdir_create(const char *tag) {
    test_make_tmpdir(tmpdir, sizeof tmpdir, tag);
    return tmpdir;
}
static void test_tmpdir_remove(void) { test_remove_tree(tmpdir); }
static char *test_tmpdir_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

/* The 41-byte Example of tf-formats.md 9.2 and its framed record from 9.1. */
static const uint8_t example41[41] = {
    0x0a, 0x27, 0x0a, 0x15, 0x0a, 0x05, 'i', 'm', 'a', 'g', 'e', 0x12, 0x0c, 0x12, 0x0a, 0x0a,
    0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3f, 0x0a, 0x0e, 0x0a, 0x05, 'l', 'a', 'b',
    'e', 'l', 0x12, 0x05, 0x1a, 0x03, 0x0a, 0x01, 0x07};

static int quick(void) { return getenv("CNN_TEST_QUICK") != NULL; }

/* Record i: length varies (0, small, ~window-sized), content derived from i. */
static size_t record_len(int i) { return i % 97 == 5 ? 3000 + (size_t)(i * 7) % 900 : (size_t)(i * 13) % 200; }
static void record_fill(uint8_t *p, size_t n, int i) {
    for (size_t k = 0; k < n; k++) p[k] = (uint8_t)(i * 31 + k * 7);
}

static void write_records(const char *path, TfrCompression c, int count) {
    char err[512];
    TfrWriter *w = tfr_writer_open(path, c, TFR_WRITE_ATOMIC, err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    uint8_t buf[4000];
    for (int i = 0; i < count; i++) {
        size_t n = record_len(i);
        record_fill(buf, n, i);
        ck_assert_int_eq(tfr_writer_write(w, buf, n), 0);
    }
    ck_assert_uint_eq(tfr_writer_records(w), (uint64_t)count);
    ck_assert_msg(tfr_writer_close(w, err, sizeof err) == 0, "%s", err);
}

static void read_records(const char *path, TfrCompression c, int count, TfrCompression expect) {
    char err[512];
    TfrReader *r = tfr_reader_open(path, c, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(tfr_reader_compression(r), expect);
    uint8_t buf[4000];
    const uint8_t *d;
    size_t n;
    for (int i = 0; i < count; i++) {
        int rc = tfr_reader_next(r, &d, &n);
        ck_assert_msg(rc == 1, "record %d: %s", i, tfr_reader_error(r));
        ck_assert_uint_eq(n, record_len(i));
        record_fill(buf, n, i);
        ck_assert_mem_eq(d, buf, n);
        ck_assert_uint_eq(tfr_reader_index(r), (uint64_t)i);
    }
    ck_assert_int_eq(tfr_reader_next(r, &d, &n), 0);
    ck_assert_int_eq(tfr_reader_next(r, &d, &n), 0);
    tfr_reader_close(r);
}

START_TEST(test_golden_record) {
    test_tmpdir_create("tfr");
    char path[512], err[512];
    test_tmpdir_path(path, sizeof path, "golden.tfrecord");
    TfrWriter *w = tfr_writer_open(path, TFR_NONE, TFR_WRITE_ATOMIC, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(tfr_writer_write(w, example41, sizeof example41), 0);
    ck_assert_int_eq(tfr_writer_close(w, err, sizeof err), 0);
    size_t len;
    uint8_t *bytes = test_read_file(path, &len);
    ck_assert_uint_eq(len, 12 + 41 + 4);
    const uint8_t head[12] = {0x29, 0, 0, 0, 0, 0, 0, 0, 0x37, 0xff, 0x5f, 0x00};
    const uint8_t tail[4] = {0x85, 0xdd, 0x1a, 0x28};
    ck_assert_mem_eq(bytes, head, 12);
    ck_assert_mem_eq(bytes + 12, example41, 41);
    ck_assert_mem_eq(bytes + 53, tail, 4);
    free(bytes);
    test_tmpdir_remove();
}
END_TEST

START_TEST(test_roundtrip_each_compression) {
    test_tmpdir_create("tfr");
    char path[512];
    const TfrCompression cs[] = {TFR_NONE, TFR_GZIP, TFR_ZLIB};
    int count = quick() ? 300 : 3000;
    for (int k = 0; k < 3; k++) {
        test_tmpdir_path(path, sizeof path, tfr_compression_name(cs[k]));
        write_records(path, cs[k], count);
        read_records(path, TFR_AUTO, count, cs[k]);   /* detected */
        read_records(path, cs[k], count, cs[k]);      /* forced */
        size_t len;
        uint8_t *b = test_read_file(path, &len);
        if (cs[k] == TFR_GZIP) ck_assert(b[0] == 0x1f && b[1] == 0x8b);
        if (cs[k] == TFR_ZLIB) ck_assert(b[0] == 0x78);
        free(b);
    }
    /* An empty file holds zero records; so do empty compressed streams. */
    for (int k = 0; k < 3; k++) {
        test_tmpdir_path(path, sizeof path, "empty");
        write_records(path, cs[k], 0);
        read_records(path, TFR_AUTO, 0, cs[k]);
    }
    test_tmpdir_remove();
}
END_TEST

/* A plain file whose first record is 376 bytes starts 78 01: a valid zlib header. Detection must
 * still see an uncompressed file (its header CRC is valid). */
START_TEST(test_detect_plain_that_looks_like_zlib) {
    test_tmpdir_create("tfr");
    char path[512], err[512];
    test_tmpdir_path(path, sizeof path, "x");
    TfrWriter *w = tfr_writer_open(path, TFR_NONE, TFR_WRITE_ATOMIC, err, sizeof err);
    uint8_t buf[376];
    memset(buf, 0xab, sizeof buf);
    ck_assert_int_eq(tfr_writer_write(w, buf, sizeof buf), 0);
    ck_assert_int_eq(tfr_writer_close(w, err, sizeof err), 0);
    TfrReader *r = tfr_reader_open(path, TFR_AUTO, err, sizeof err);
    ck_assert_int_eq(tfr_reader_compression(r), TFR_NONE);
    const uint8_t *d;
    size_t n;
    ck_assert_int_eq(tfr_reader_next(r, &d, &n), 1);
    ck_assert_uint_eq(n, 376);
    tfr_reader_close(r);
    test_tmpdir_remove();
}
END_TEST

/* A record bigger than the 1 MiB window makes it grow; each compression. */
START_TEST(test_large_record) {
    test_tmpdir_create("tfr");
    char path[512], err[512];
    size_t big = (3u << 20) + 5;
    uint8_t *buf = malloc(big);
    for (size_t i = 0; i < big; i++) buf[i] = (uint8_t)(i * 2654435761u >> 13);
    const TfrCompression cs[] = {TFR_NONE, TFR_GZIP, TFR_ZLIB};
    for (int k = 0; k < 3; k++) {
        test_tmpdir_path(path, sizeof path, "big");
        TfrWriter *w = tfr_writer_open(path, cs[k], TFR_WRITE_ATOMIC, err, sizeof err);
        ck_assert_int_eq(tfr_writer_write(w, "a", 1), 0);
        ck_assert_int_eq(tfr_writer_write(w, buf, big), 0);
        ck_assert_int_eq(tfr_writer_write(w, "b", 1), 0);
        ck_assert_int_eq(tfr_writer_close(w, err, sizeof err), 0);
        TfrReader *r = tfr_reader_open(path, TFR_AUTO, err, sizeof err);
        const uint8_t *d;
        size_t n;
        ck_assert_int_eq(tfr_reader_next(r, &d, &n), 1);
        ck_assert_int_eq(tfr_reader_next(r, &d, &n), 1);
        ck_assert_uint_eq(n, big);
        ck_assert_mem_eq(d, buf, big);
        ck_assert_int_eq(tfr_reader_next(r, &d, &n), 1);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(tfr_reader_next(r, &d, &n), 0);
        tfr_reader_close(r);
    }
    free(buf);
    test_tmpdir_remove();
}
END_TEST

/* Reads a whole file; returns 0 clean, -1 error (message copied to err). */
static int read_all(const char *path, TfrCompression c, int *records, char *err, size_t errlen) {
    TfrReader *r = tfr_reader_open(path, c, err, errlen);
    if (!r) return -1;
    const uint8_t *d;
    size_t n;
    int rc;
    *records = 0;
    while ((rc = tfr_reader_next(r, &d, &n)) == 1) (*records)++;
    if (rc < 0) snprintf(err, errlen, "%s", tfr_reader_error(r));
    tfr_reader_close(r);
    return rc;
}

/* Flipping any single byte of a plain file is caught, with the record index and offset named. */
START_TEST(test_every_flipped_byte_is_caught) {
    test_tmpdir_create("tfr");
    char path[512], bad[512], err[512];
    test_tmpdir_path(path, sizeof path, "ok");
    test_tmpdir_path(bad, sizeof bad, "bad");
    write_records(path, TFR_NONE, 4);   /* lengths 0, 13, 26, 39 */
    size_t len;
    uint8_t *orig = test_read_file(path, &len);
    size_t starts[5] = {0};
    for (int i = 0; i < 4; i++) starts[i + 1] = starts[i] + 16 + record_len(i);
    ck_assert_uint_eq(starts[4], len);
    for (size_t pos = 0; pos < len; pos++) {
        orig[pos] ^= 0x20;
        test_write_file(bad, orig, len);
        orig[pos] ^= 0x20;
        int records;
        int rc = read_all(bad, TFR_NONE, &records, err, sizeof err);
        ck_assert_msg(rc == -1, "flip at %zu not detected", pos);
        int rec = 0;
        while (starts[rec + 1] <= pos) rec++;
        char want[128];
        snprintf(want, sizeof want, "record %d at offset %zu", rec, starts[rec]);
        ck_assert_msg(strstr(err, want) && strstr(err, bad), "flip at %zu: '%s' lacks '%s'", pos, err,
                      want);
        ck_assert_int_eq(records, rec);
    }
    free(orig);
    test_tmpdir_remove();
}
END_TEST

/* Flipping any byte of a gzip or zlib file: every record before the damage comes back, and the
 * error names the first record the reader could not return, at its start. (The window is
 * inflated ahead of the records: the error named the record being read when inflate failed, up
 * to a window before the damage, and offsets past the stream's end.) */
START_TEST(test_flipped_compressed_byte_names_the_record) {
    test_tmpdir_create("tfr");
    char path[512], bad[512], err[512];
    test_tmpdir_path(path, sizeof path, "ok");
    test_tmpdir_path(bad, sizeof bad, "bad");
    enum { N = 40 };
    size_t starts[N + 1] = {0};
    for (int i = 0; i < N; i++) starts[i + 1] = starts[i] + 16 + record_len(i);
    const TfrCompression cs[] = {TFR_GZIP, TFR_ZLIB};
    for (int k = 0; k < 2; k++) {
        write_records(path, cs[k], N);
        size_t len;
        uint8_t *orig = test_read_file(path, &len);
        int failed = 0, stream_errors = 0;
        for (size_t pos = 0; pos < len; pos++) {
            orig[pos] ^= 0x10;
            test_write_file(bad, orig, len);
            orig[pos] ^= 0x10;
            TfrReader *r = tfr_reader_open(bad, cs[k], err, sizeof err);
            if (!r) continue;   /* a header the inflater refuses: named on open */
            tfr_reader_close(r);
            int records = 0;
            if (read_all(bad, cs[k], &records, err, sizeof err) == 0) {
                /* e.g. the gzip header's time stamp: harmless */
                ck_assert_msg(records == N, "flip at %zu: %d records, no error", pos, records);
                continue;
            }
            char want[128];
            snprintf(want, sizeof want, "record %d at offset %zu (uncompressed)", records,
                     records <= N ? starts[records] : 0);
            ck_assert_msg(records <= N && strstr(err, want) && strstr(err, bad),
                          "flip at %zu: '%s' lacks '%s'", pos, err, want);
            failed++;
            stream_errors += strstr(err, "stream") != NULL;
        }
        ck_assert_int_gt(failed, (int)len / 2);
        ck_assert_int_gt(stream_errors, 0);
        free(orig);
    }
    test_tmpdir_remove();
}
END_TEST

/* Cutting a file anywhere but at a record boundary is an error naming the cut record; at a
 * boundary it is a shorter clean file. Each compression (compressed: cut the stream). */
START_TEST(test_truncation_everywhere) {
    test_tmpdir_create("tfr");
    char path[512], bad[512], err[512];
    test_tmpdir_path(path, sizeof path, "ok");
    test_tmpdir_path(bad, sizeof bad, "cut");
    write_records(path, TFR_NONE, 4);
    size_t len;
    uint8_t *orig = test_read_file(path, &len);
    size_t starts[5] = {0};
    for (int i = 0; i < 4; i++) starts[i + 1] = starts[i] + 16 + record_len(i);
    for (size_t cut = 0; cut < len; cut++) {
        test_write_file(bad, orig, cut);
        int records, rc = read_all(bad, TFR_NONE, &records, err, sizeof err);
        int rec = 0;
        while (starts[rec + 1] <= cut) rec++;
        if (starts[rec] == cut) {
            ck_assert_msg(rc == 0, "cut at %zu: %s", cut, err);
            ck_assert_int_eq(records, rec);
        } else {
            ck_assert_msg(rc == -1, "cut at %zu not detected", cut);
            ck_assert_ptr_nonnull(strstr(err, "truncated"));
            char want[64];
            snprintf(want, sizeof want, "record %d at offset %zu", rec, starts[rec]);
            ck_assert_msg(strstr(err, want) != NULL, "%s", err);
        }
    }
    free(orig);
    const TfrCompression cs[] = {TFR_GZIP, TFR_ZLIB};
    for (int k = 0; k < 2; k++) {
        write_records(path, cs[k], 50);
        uint8_t *z = test_read_file(path, &len);
        for (size_t cut = 2; cut < len; cut += (cut < 64 ? 1 : 7)) {
            test_write_file(bad, z, cut);
            int records;
            ck_assert_msg(read_all(bad, cs[k], &records, err, sizeof err) == -1, "cut at %zu", cut);
            ck_assert_ptr_nonnull(strstr(err, bad));
        }
        free(z);
    }
    test_tmpdir_remove();
}
END_TEST

/* A length field of 2^40 (with a valid length CRC) fails at once without allocating; one of
 * 2^30 that runs past the end is a truncation. Plain and inside a gzip stream. */
START_TEST(test_absurd_length) {
    test_tmpdir_create("tfr");
    char path[512], err[512];
    test_tmpdir_path(path, sizeof path, "absurd");
    const uint64_t lens[] = {(uint64_t)1 << 40, (uint64_t)1 << 30};
    for (int gz = 0; gz < 2; gz++) {
        for (int j = 0; j < 2; j++) {
            uint8_t rec[12 + 100];
            memset(rec, 0, sizeof rec);
            for (int i = 0; i < 8; i++) rec[i] = (uint8_t)(lens[j] >> (8 * i));
            uint32_t masked = crc32c_mask(crc32c(rec, 8));
            for (int i = 0; i < 4; i++) rec[8 + i] = (uint8_t)(masked >> (8 * i));
            if (!gz) {
                test_write_file(path, rec, sizeof rec);
            } else {
                gzFile g = gzopen(path, "wb");
                ck_assert_int_eq(gzwrite(g, rec, sizeof rec), (int)sizeof rec);
                ck_assert_int_eq(gzclose(g), Z_OK);
            }
            int records;
            ck_assert_int_eq(read_all(path, TFR_AUTO, &records, err, sizeof err), -1);
            ck_assert_msg(strstr(err, j == 0 ? "absurd length" : "truncated"), "%s", err);
            ck_assert_ptr_nonnull(strstr(err, "record 0 at offset 0"));
        }
    }
    test_tmpdir_remove();
}
END_TEST

START_TEST(test_direct_and_append_modes) {
    test_tmpdir_create("tfr");
    char path[512], err[512];
    test_tmpdir_path(path, sizeof path, "events");
    TfrWriter *w = tfr_writer_open(path, TFR_NONE, TFR_WRITE_DIRECT, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(tfr_writer_write(w, "one", 3), 0);
    ck_assert_int_eq(tfr_writer_flush(w), 0);
    /* visible to a reader while still open */
    ck_assert_int_eq(tfr_count_records(path, TFR_AUTO, err, sizeof err), 1);
    ck_assert_int_eq(tfr_writer_sync(w), 0);
    ck_assert_int_eq(tfr_writer_close(w, err, sizeof err), 0);
    w = tfr_writer_open(path, TFR_NONE, TFR_WRITE_APPEND, err, sizeof err);
    ck_assert_int_eq(tfr_writer_write(w, "two", 3), 0);
    ck_assert_int_eq(tfr_writer_close(w, err, sizeof err), 0);
    ck_assert_int_eq(tfr_count_records(path, TFR_AUTO, err, sizeof err), 2);
    ck_assert_ptr_null(tfr_writer_open(path, TFR_GZIP, TFR_WRITE_APPEND, err, sizeof err));
    /* a flushed gzip stream is readable up to the flush point only as a truncated stream, but
     * the records before the flush come back */
    w = tfr_writer_open(path, TFR_GZIP, TFR_WRITE_DIRECT, err, sizeof err);
    ck_assert_int_eq(tfr_writer_write(w, "abc", 3), 0);
    ck_assert_int_eq(tfr_writer_flush(w), 0);
    TfrReader *r = tfr_reader_open(path, TFR_AUTO, err, sizeof err);
    const uint8_t *d;
    size_t n;
    ck_assert_int_eq(tfr_reader_next(r, &d, &n), 1);
    ck_assert_mem_eq(d, "abc", 3);
    ck_assert_int_eq(tfr_reader_next(r, &d, &n), -1);
    tfr_reader_close(r);
    tfr_writer_abort(w);
    /* errors on open name the file */
    ck_assert_ptr_null(tfr_reader_open("/nonexistent/x.tfrecord", TFR_AUTO, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/x.tfrecord"));
    ck_assert_ptr_null(tfr_writer_open("/nonexistent/x", TFR_NONE, TFR_WRITE_ATOMIC, err, sizeof err));
    TfrCompression c;
    ck_assert_int_eq(tfr_compression_parse("GZIP", &c), 0);
    ck_assert_int_eq(c, TFR_GZIP);
    ck_assert_int_eq(tfr_compression_parse("lz4", &c), -1);
    test_tmpdir_remove();
}
END_TEST

START_TEST(test_path_list) {
    const char *dir = test_tmpdir_create("paths");
    char p[512], err[512];
    const char *names[] = {"b.tfrecord", "a.tfrecord", "c.txt", ".hidden", "_SUCCESS"};
    for (int i = 0; i < 5; i++) test_write_file(test_tmpdir_path(p, sizeof p, names[i]), "x", 1);
    mkdir(test_tmpdir_path(p, sizeof p, "subdir"), 0777);
    PathList pl = {0};
    /* a directory: regular files not hidden (Hadoop's . and _ names), sorted */
    ck_assert_int_eq(path_list_expand(&pl, &dir, 1, err, sizeof err), 0);
    ck_assert_int_eq(pl.n, 3);
    ck_assert_ptr_nonnull(strstr(pl.paths[0], "/a.tfrecord"));
    ck_assert_ptr_nonnull(strstr(pl.paths[1], "/b.tfrecord"));
    ck_assert_ptr_nonnull(strstr(pl.paths[2], "/c.txt"));
    path_list_free(&pl);
    /* a glob plus a file */
    char pattern[512], file[512];
    test_tmpdir_path(pattern, sizeof pattern, "*.tfrecord");
    test_tmpdir_path(file, sizeof file, "c.txt");
    const char *inputs[] = {pattern, file};
    ck_assert_int_eq(path_list_expand(&pl, inputs, 2, err, sizeof err), 0);
    ck_assert_int_eq(pl.n, 3);
    ck_assert_ptr_nonnull(strstr(pl.paths[0], "/a.tfrecord"));
    ck_assert_str_eq(pl.paths[2], file);
    path_list_free(&pl);
    /* nothing matches / missing / remote: errors naming the input */
    test_tmpdir_path(pattern, sizeof pattern, "*.nothing");
    const char *bad[] = {pattern, "/nonexistent/file", "http://bucket/x"};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(path_list_expand(&pl, &bad[i], 1, err, sizeof err), -1);
        ck_assert_msg(strstr(err, bad[i]) != NULL, "%s", err);
    }
    path_list_free(&pl);
    const char *empty_dir = test_tmpdir_path(p, sizeof p, "subdir");
    ck_assert_int_eq(path_list_expand(&pl, &empty_dir, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no data files"));
    ck_assert_ptr_null(strstr(err, "subdirectories"));
    path_list_free(&pl);
    /* data only in a subdirectory (and a _temporary one): the message says it is not searched */
    char nested[512], part[600], tmp[600];
    snprintf(nested, sizeof nested, "%s/nested", dir);
    snprintf(part, sizeof part, "%s/nested/day1", dir);
    mkdir(nested, 0777);
    mkdir(part, 0777);
    snprintf(tmp, sizeof tmp, "%s/nested/_temporary", dir);
    mkdir(tmp, 0777);
    snprintf(part, sizeof part, "%s/nested/day1/part-00000", dir);
    test_write_file(part, "x", 1);
    const char *nested_in = nested;
    ck_assert_int_eq(path_list_expand(&pl, &nested_in, 1, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "subdirectories are not searched") && strstr(err, nested), "%s", err);
    path_list_free(&pl);
    test_tmpdir_remove();
}
END_TEST

static Suite *tfrecord_suite(void) {
    Suite *s = suite_create("tfrecord");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_golden_record);
    tcase_add_test(tc, test_roundtrip_each_compression);
    tcase_add_test(tc, test_detect_plain_that_looks_like_zlib);
    tcase_add_test(tc, test_large_record);
    tcase_add_test(tc, test_every_flipped_byte_is_caught);
    tcase_add_test(tc, test_flipped_compressed_byte_names_the_record);
    tcase_add_test(tc, test_truncation_everywhere);
    tcase_add_test(tc, test_absurd_length);
    tcase_add_test(tc, test_direct_and_append_modes);
    tcase_add_test(tc, test_path_list);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(tfrecord_suite());
}
