/* test_tf_log.c: TensorFlow-format log lines and number formatting (cli/tf_log.h). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/tf_log.h"
#include "support/check_run.h"

/* Captures what tf_log writes while fn runs. Returns malloc'd text. */
static char *capture(void (*fn)(void)) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tf_log_set_stream(f);
    fn();
    tf_log_set_stream(NULL);
    fclose(f);
    return buf;
}

static void estimator_lines(void) {
    tf_log_set_level(TF_LOG_INFO);
    char loss[32];
    tf_info("loss = %s, step = %d (%.3f sec)", tf_fmt_float(loss, sizeof loss, 0.29f), 101, 0.315);
    tf_info("global_step/sec: %g", 317.5);
    tf_log(TF_LOG_DEBUG, "hidden");
    tf_warn("careful");
    tf_error("Model diverged with loss = NaN.");
    tf_log_progress("step 5/10");          /* not a terminal: nothing */
}

START_TEST(test_prefix_and_levels) {
    char *out = capture(estimator_lines);
    ck_assert_str_eq(out,
                     "INFO:tensorflow:loss = 0.29, step = 101 (0.315 sec)\n"
                     "INFO:tensorflow:global_step/sec: 317.5\n"
                     "WARNING:tensorflow:careful\n"
                     "ERROR:tensorflow:Model diverged with loss = NaN.\n");
    free(out);
}
END_TEST

static void warn_only(void) {
    tf_log_set_level(TF_LOG_WARN);
    tf_info("hidden");
    tf_warn("shown");
    tf_log_set_level(TF_LOG_INFO);
}

START_TEST(test_verbosity_filters) {
    char *out = capture(warn_only);
    ck_assert_str_eq(out, "WARNING:tensorflow:shown\n");
    free(out);
    TfLogLevel l;
    ck_assert_int_eq(tf_log_parse_level("debug", &l), 0);
    ck_assert_int_eq(l, TF_LOG_DEBUG);
    ck_assert_int_eq(tf_log_parse_level("WARN", &l), 0);
    ck_assert_int_eq(l, TF_LOG_WARN);
    ck_assert_int_eq(tf_log_parse_level("Warning", &l), 0);
    ck_assert_int_eq(l, TF_LOG_WARN);
    ck_assert_int_eq(tf_log_parse_level("fatal", &l), 0);
    ck_assert_int_eq(l, TF_LOG_FATAL);
    ck_assert_int_eq(tf_log_parse_level("40", &l), 0);
    ck_assert_int_eq(l, TF_LOG_ERROR);
    ck_assert_int_eq(tf_log_parse_level("loud", &l), -1);
    ck_assert_int_eq(tf_log_parse_level("", &l), -1);
}
END_TEST

/* Shortest round-trip text, with Python's repr conventions. */
START_TEST(test_float_format) {
    char b[32];
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, 2.3025851f), "2.3025851");
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, 0.9712f), "0.9712");
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, 1.0f), "1.0");
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, 0.1f), "0.1");
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, 121.802f), "121.802");
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, 1e-5f), "1e-05");
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, 0.0f), "0.0");
    ck_assert_str_eq(tf_fmt_float(b, sizeof b, NAN), "nan");
    ck_assert_str_eq(tf_fmt_double(b, sizeof b, 0.987), "0.987");
    ck_assert_str_eq(tf_fmt_double(b, sizeof b, 1525851440.123456), "1525851440.123456");
    ck_assert_str_eq(tf_fmt_double(b, sizeof b, 15000000.0), "15000000.0");
    ck_assert_str_eq(tf_fmt_double(b, sizeof b, 1e16), "1e+16");
    ck_assert_str_eq(tf_fmt_double(b, sizeof b, 0.0001), "0.0001");
    /* every float32 reads back exactly */
    for (int i = 1; i < 2000; i++) {
        float v = (float)i / 7.3f + 1e-3f * (float)i;
        tf_fmt_float(b, sizeof b, v);
        ck_assert_msg(strtof(b, NULL) == v, "%s", b);
    }
}
END_TEST

static Suite *tf_log_suite(void) {
    Suite *s = suite_create("tf_log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_prefix_and_levels);
    tcase_add_test(tc, test_verbosity_filters);
    tcase_add_test(tc, test_float_format);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(tf_log_suite());
}
