/* test_hypertune.c: the cloudml-hypertune metric file (cli/hypertune.h). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/hypertune.h"
#include "support/check_run.h"
#include "support/test_files.h"

/* The line cloudml-hypertune's README shows, byte for byte (json.dumps, sort_keys=True). */
START_TEST(test_entry_matches_library) {
    char *line = hypertune_entry("my_metric_tag", 0.987, 1000, 1525851440.123456, "0");
    ck_assert_str_eq(line, "{\"global_step\": \"1000\", \"my_metric_tag\": \"0.987\", "
                           "\"timestamp\": 1525851440.123456, \"trial\": \"0\"}");
    free(line);
    /* the default tag sorts after "timestamp" and before "trial"; non-ASCII is \u-escaped */
    line = hypertune_entry(NULL, 1.0, 0, 1.5, "12");
    ck_assert_str_eq(line, "{\"global_step\": \"0\", \"timestamp\": 1.5, "
                           "\"training/hptuning/metric\": \"1.0\", \"trial\": \"12\"}");
    free(line);
    line = hypertune_entry("acc\"\xc3\xa9", 0.5, 3, 2.0, "1");
    ck_assert_str_eq(line, "{\"acc\\\"\\u00e9\": \"0.5\", \"global_step\": \"3\", "
                           "\"timestamp\": 2.0, \"trial\": \"1\"}");
    free(line);
}
END_TEST

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

START_TEST(test_report_rewrites_newest_100) {
    char dir[256], path[512];
    test_make_tmpdir(dir, sizeof dir, "hypertune");
    snprintf(path, sizeof path, "%s/sub/dir/output.metrics", dir);   /* parents created */
    Hypertune h;
    hypertune_init(&h, path, "4");
    char err[256];
    for (int i = 1; i <= 105; i++)
        ck_assert_msg(hypertune_report(&h, "accuracy", 0.5, i, err, sizeof err) == 0, "%s", err);
    char *text = slurp(path);
    ck_assert_ptr_nonnull(text);
    int lines = 0;
    for (char *p = text; *p; p++) lines += *p == '\n';
    ck_assert_int_eq(lines, 100);
    ck_assert_ptr_nonnull(strstr(text, "{\"accuracy\": \"0.5\", \"global_step\": \"6\", "));
    ck_assert_ptr_null(strstr(text, "\"global_step\": \"5\""));
    ck_assert_ptr_nonnull(strstr(text, "\"global_step\": \"105\""));
    ck_assert_ptr_nonnull(strstr(text, "\"trial\": \"4\"}\n"));
    hypertune_free(&h);

    /* an unwritable place is an error naming the file */
    hypertune_init(&h, "/proc/no/such/output.metrics", NULL);
    ck_assert_int_eq(hypertune_report(&h, "accuracy", 0.5, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/proc/no/such/output.metrics"));
    hypertune_free(&h);
}
END_TEST

START_TEST(test_env_path) {
    setenv("CLOUD_ML_HP_METRIC_FILE", "/tmp/x/metrics.txt", 1);
    Hypertune h;
    hypertune_init(&h, NULL, NULL);
    ck_assert_str_eq(h.path, "/tmp/x/metrics.txt");
    ck_assert_str_eq(h.trial, "0");
    hypertune_free(&h);
    unsetenv("CLOUD_ML_HP_METRIC_FILE");
    hypertune_init(&h, NULL, NULL);
    ck_assert_str_eq(h.path, HYPERTUNE_DEFAULT_PATH);
    hypertune_free(&h);
}
END_TEST

static Suite *hypertune_suite(void) {
    Suite *s = suite_create("hypertune");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_entry_matches_library);
    tcase_add_test(tc, test_report_rewrites_newest_100);
    tcase_add_test(tc, test_env_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(hypertune_suite());
}
