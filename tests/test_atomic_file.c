/* test_atomic_file.c: temp-then-rename writes: nothing under the final name until commit. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "support/check_run.h"
#include "support/test_files.h"

static char dir[64];

static void remove_dir(const char *leftover) {
    char p[128];
    if (leftover) {
        snprintf(p, sizeof p, "%s/%s", dir, leftover);
        unlink(p);
    }
    ck_assert_int_eq(rmdir(dir), 0);
}

START_TEST(test_commit) {
    test_make_tmpdir(dir, sizeof dir, "test_atomic");
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    AtomicFile *af = atomic_file_open(path, err, sizeof err);
    ck_assert_msg(af != NULL, "%s", err);
    fputs("hello", atomic_file_stream(af));
    ck_assert_int_eq(access(path, F_OK), -1);   /* not visible yet */
    ck_assert_int_eq(access(atomic_file_temp_path(af), F_OK), 0);
    /* hidden, beside the final name: ".out.bin.tmp-<pid>-<n>" */
    char hidden[160];
    snprintf(hidden, sizeof hidden, "%s/.out.bin.tmp-", dir);
    ck_assert_msg(strncmp(atomic_file_temp_path(af), hidden, strlen(hidden)) == 0, "%s",
                  atomic_file_temp_path(af));
    ck_assert_str_eq(atomic_file_path(af), path);
    ck_assert_int_eq(atomic_file_commit(af, err, sizeof err), 0);
    FILE *f = fopen(path, "rb");
    char buf[16] = {0};
    ck_assert_uint_eq(fread(buf, 1, sizeof buf, f), 5);
    fclose(f);
    ck_assert_str_eq(buf, "hello");
    ck_assert_int_eq(test_count_dir_entries(dir), 1);
    /* Overwrite through write_all replaces the content atomically. */
    ck_assert_int_eq(atomic_file_write_all(path, "xy", 2, err, sizeof err), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 2);
    ck_assert_int_eq(test_count_dir_entries(dir), 1);
    remove_dir("out.bin");
}
END_TEST

START_TEST(test_abort_keeps_old_file) {
    test_make_tmpdir(dir, sizeof dir, "test_atomic");
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/keep.txt", dir);
    ck_assert_int_eq(atomic_file_write_all(path, "old", 3, err, sizeof err), 0);
    AtomicFile *af = atomic_file_open(path, err, sizeof err);
    ck_assert_ptr_nonnull(af);
    fputs("new content", atomic_file_stream(af));
    atomic_file_abort(af);
    ck_assert_int_eq(test_count_dir_entries(dir), 1);
    FILE *f = fopen(path, "rb");
    char buf[16] = {0};
    ck_assert_uint_eq(fread(buf, 1, sizeof buf, f), 3);
    fclose(f);
    ck_assert_str_eq(buf, "old");
    remove_dir("keep.txt");
}
END_TEST

START_TEST(test_errors_name_path) {
    char err[256];
    AtomicFile *af = atomic_file_open("/nonexistent-dir-xyz/file", err, sizeof err);
    ck_assert_ptr_null(af);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir-xyz/file"));
    /* Commit onto a path that is a directory fails (rename), the temp file is removed. */
    test_make_tmpdir(dir, sizeof dir, "test_atomic");
    char path[128];
    snprintf(path, sizeof path, "%s/sub", dir);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    char inner[160];
    snprintf(inner, sizeof inner, "%s/x", path);
    ck_assert_int_eq(atomic_file_write_all(inner, "1", 1, err, sizeof err), 0);
    ck_assert_int_eq(atomic_file_write_all(path, "data", 4, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "rename"));
    ck_assert_int_eq(test_count_dir_entries(dir), 1);
    unlink(inner);
    rmdir(path);
    remove_dir(NULL);
    ck_assert_int_eq(fsync_dir("/tmp"), 0);
    ck_assert_int_eq(fsync_parent_dir("relative-name"), 0);
}
END_TEST

static Suite *atomic_suite(void) {
    Suite *s = suite_create("atomic_file");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_commit);
    tcase_add_test(tc, test_abort_keeps_old_file);
    tcase_add_test(tc, test_errors_name_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(atomic_suite());
}
