/* test_fs.c: the file-system layer's local side and the pieces of the remote side that need no
 * server: SigV4 against AWS's published example, URL encoding, path rules. The object stores
 * themselves are tested against emulators in tests/cloud/. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fs.h"
#include "io/http.h"
#include "io/sigv4.h"
#include "support/check_run.h"
#include "support/test_files.h"

/* The example of AWS's "Signature Version 4 signing process" guide: IAM ListUsers signed with
 * AKIDEXAMPLE at 20150830T123600Z in us-east-1. */
START_TEST(test_sigv4_aws_example) {
    SigV4Key key = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "iam"};
    const char *names[] = {"x-amz-date", "host", "content-type"};   /* any order */
    const char *values[] = {"20150830T123600Z", "iam.amazonaws.com",
                            "application/x-www-form-urlencoded; charset=utf-8"};
    char empty_hash[65], out[512];
    sha256_hex("", 0, empty_hash);
    ck_assert_str_eq(empty_hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ck_assert_int_eq(sigv4_authorization(&key, "GET", "/", "Action=ListUsers&Version=2010-05-08",
                                         names, values, 3, empty_hash, "20150830T123600Z", out,
                                         sizeof out), 0);
    ck_assert_str_eq(out, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/"
                          "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
                          "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    /* a buffer too small fails instead of truncating */
    ck_assert_int_eq(sigv4_authorization(&key, "GET", "/", "", names, values, 3, empty_hash,
                                         "20150830T123600Z", out, 40), -1);
}
END_TEST

START_TEST(test_url_encode) {
    char out[64];
    ck_assert_str_eq(http_url_encode("a b/c~d_e.f-g+h", 0, out, sizeof out),
                     "a%20b%2Fc~d_e.f-g%2Bh");
    ck_assert_str_eq(http_url_encode("dir/model.ckpt-1.index", 1, out, sizeof out),
                     "dir/model.ckpt-1.index");
    ck_assert_str_eq(http_url_encode("\xc3\xa9", 0, out, sizeof out), "%C3%A9");
    ck_assert_str_eq(http_url_encode("abcdefgh", 0, out, 5), "");   /* does not fit */
}
END_TEST

START_TEST(test_remote_paths) {
    ck_assert(fs_is_remote("gs://b/o"));
    ck_assert(fs_is_remote("s3://b/k"));
    ck_assert(!fs_is_remote("/tmp/x"));
    ck_assert(!fs_is_remote("http://b/x"));
    ck_assert(!fs_is_remote("gs:/b"));
    /* no bucket: an error naming the path, before any request */
    struct stat st;
    char err[512];
    ck_assert_int_eq(fs_stat("gs:///object", &st, err, sizeof err), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "gs:///object"));
    ck_assert_int_eq(fs_rename("gs://a/x", "s3://a/x", err, sizeof err), -1);
    ck_assert_int_eq(errno, EXDEV);
    ck_assert_int_eq(fs_rename("/tmp/x", "s3://a/x", err, sizeof err), -1);
}
END_TEST

/* fs_beside: a sibling name (atomic files' hidden temporaries, the in-place export's). */
START_TEST(test_beside) {
    char out[64];
    ck_assert_int_eq(fs_beside("out/model", ".", ".tmp-7", out, sizeof out), 16);
    ck_assert_str_eq(out, "out/.model.tmp-7");
    fs_beside("a/b/model//", "temp-", "", out, sizeof out);
    ck_assert_str_eq(out, "a/b/temp-model");
    fs_beside("model", ".", ".old-3", out, sizeof out);
    ck_assert_str_eq(out, ".model.old-3");
    fs_beside("/m", "", "/..", out, sizeof out);
    ck_assert_str_eq(out, "/m/..");
    fs_beside("gs://b/j/x.ckpt", ".", ".t", out, sizeof out);
    ck_assert_str_eq(out, "gs://b/j/.x.ckpt.t");
}
END_TEST

START_TEST(test_local_side) {
    char dir[256], p[512], q[512], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_fs");
    snprintf(p, sizeof p, "%s/b.bin", dir);
    ck_assert_int_eq(test_write_file(p, "hello", 5), 0);
    snprintf(q, sizeof q, "%s/sub", dir);
    ck_assert_int_eq(mkdir(q, 0777), 0);
    /* stat */
    struct stat st;
    ck_assert_int_eq(fs_stat(p, &st, err, sizeof err), 0);
    ck_assert_int_eq((int)st.st_size, 5);
    snprintf(q, sizeof q, "%s/missing", dir);
    ck_assert_int_eq(fs_stat(q, &st, err, sizeof err), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_ptr_nonnull(strstr(err, q));
    /* list: sorted, kinds and sizes */
    FsEntry *e;
    int n = fs_list(dir, &e, err, sizeof err);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(e[0].name, "b.bin");
    ck_assert_int_eq(e[0].is_dir, 0);
    ck_assert_int_eq((int)e[0].size, 5);
    ck_assert_str_eq(e[1].name, "sub");
    ck_assert_int_eq(e[1].is_dir, 1);
    fs_entries_free(e, n);
    ck_assert_int_eq(fs_list(q, &e, err, sizeof err), -1);
    ck_assert_int_eq(errno, ENOENT);
    /* read: whole, in pieces, size known */
    FsReader *r = fs_reader_open(p, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq((int)fs_reader_size(r), 5);
    char buf[8];
    ck_assert_int_eq((int)fs_reader_read(r, buf, 3), 3);
    ck_assert_int_eq((int)fs_reader_read(r, buf + 3, 8), 2);
    ck_assert_int_eq((int)fs_reader_read(r, buf, 8), 0);
    ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
    fs_reader_close(r);
    ck_assert_ptr_null(fs_reader_open(dir, err, sizeof err));
    ck_assert_int_eq(errno, EISDIR);
    ck_assert_ptr_null(fs_reader_open(q, err, sizeof err));
    ck_assert_int_eq(errno, ENOENT);
    /* rename, delete (a missing file is fine) */
    snprintf(q, sizeof q, "%s/c.bin", dir);
    ck_assert_int_eq(fs_rename(p, q, err, sizeof err), 0);
    ck_assert(!test_path_exists(p));
    FILE *f = fs_fopen_read(q, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq((int)fread(buf, 1, 8, f), 5);
    fclose(f);
    ck_assert_int_eq(fs_delete(q, err, sizeof err), 0);
    ck_assert_int_eq(fs_delete(q, err, sizeof err), 0);
    ck_assert(!test_path_exists(q));
    ck_assert_int_eq(fs_rename(p, q, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, p));
    test_remove_tree(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("fs");
    TCase *tc = tcase_create("fs");
    tcase_add_test(tc, test_sigv4_aws_example);
    tcase_add_test(tc, test_url_encode);
    tcase_add_test(tc, test_remote_paths);
    tcase_add_test(tc, test_beside);
    tcase_add_test(tc, test_local_side);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
