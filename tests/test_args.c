/* test_args.c: the shared flag parser. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "support/check_run.h"

static const ArgSpec specs[] = {
    {"train-file", "train,train-files", ARG_LIST, "PATH...", "training data"},
    {"steps", NULL, ARG_VALUE, "N", "steps"},
    {"learning-rate", NULL, ARG_VALUE, "LR", "learning rate"},
    {"verbosity", NULL, ARG_VALUE, "LEVEL", "log level"},
    {"verbose", "v", ARG_BOOL, NULL, "chatty"},
    {"help", "h", ARG_BOOL, NULL, "help"},
    {"log-dir", NULL, ARG_VALUE, "DIR", "not the script's: no abbreviation"},
};
enum { NSPECS = sizeof specs / sizeof specs[0] };
/* the replaced script's flags, whose prefixes argparse took (not verbose's alias v, help) */
static const char ABBREV[] = "train-file,train,steps,learning-rate,verbosity,verbose";

START_TEST(test_forms_and_spellings) {
    char *argv[] = {"--train_file", "a.tfr", "b.tfr", "--steps=100", "--learning_rate", "0.5",
                    "pos1", "-v", "--", "--steps"};
    ArgParse ap;
    char err[256];
    int rc = args_parse(&ap, specs, NSPECS, 10, argv, NULL, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    const ArgValue *tf = args_value(&ap, "train");
    ck_assert_int_eq(tf->nvalues, 2);
    ck_assert_str_eq(tf->values[0], "a.tfr");
    ck_assert_str_eq(tf->values[1], "b.tfr");
    int steps;
    ck_assert_int_eq(args_get_int(&ap, "steps", 7, &steps, err, sizeof err), 0);
    ck_assert_int_eq(steps, 100);
    double lr;
    ck_assert_int_eq(args_get_double(&ap, "learning_rate", 0, &lr, err, sizeof err), 0);
    ck_assert_double_eq(lr, 0.5);
    int verbose, help;
    ck_assert_int_eq(args_get_bool(&ap, "verbose", 0, &verbose, err, sizeof err), 0);
    ck_assert_int_eq(verbose, 1);
    ck_assert_int_eq(args_get_bool(&ap, "help", 0, &help, err, sizeof err), 0);
    ck_assert_int_eq(help, 0);
    ck_assert_int_eq(ap.npositionals, 2);
    ck_assert_str_eq(ap.positionals[0], "pos1");
    ck_assert_str_eq(ap.positionals[1], "--steps");   /* after "--" */
    ck_assert_int_eq(ap.nunknown, 0);
    /* absent flag: default */
    ck_assert_int_eq(args_get_int(&ap, "verbosity", 3, &steps, err, sizeof err), 0);
    ck_assert_int_eq(steps, 3);
    ck_assert_str_eq(args_get(&ap, "verbosity", "INFO"), "INFO");
    args_free(&ap);
}
END_TEST

START_TEST(test_unknown_flags_collected) {
    char *argv[] = {"--job-dir", "gs://b/j", "--model_dir=s3://x/m", "--flag-only", "--steps", "5",
                    "--lonely"};
    ArgParse ap;
    char err[256];
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 7, argv, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ap.nunknown, 4);
    ck_assert_str_eq(ap.unknown[0].flag, "--job-dir");
    ck_assert_str_eq(ap.unknown[0].value, "gs://b/j");
    ck_assert_int_eq(ap.unknown[1].flag_len, 11);
    ck_assert_int_eq(strncmp(ap.unknown[1].flag, "--model_dir", 11), 0);
    ck_assert_str_eq(ap.unknown[1].value, "s3://x/m");
    ck_assert_ptr_null(ap.unknown[2].value);   /* next token is a flag */
    ck_assert_ptr_null(ap.unknown[3].value);   /* at the end */
    ck_assert_str_eq(args_get(&ap, "steps", NULL), "5");
    args_free(&ap);
}
END_TEST

START_TEST(test_errors_name_the_flag) {
    char err[256];
    ArgParse ap;
    char *argv1[] = {"--steps", "abc", "--learning-rate", "x1"};
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 4, argv1, NULL, err, sizeof err), 0);
    int steps;
    ck_assert_int_eq(args_get_int(&ap, "steps", 0, &steps, err, sizeof err), -1);
    ck_assert_str_eq(err, "--steps: 'abc' is not an integer");
    double lr;
    ck_assert_int_eq(args_get_double(&ap, "learning-rate", 0, &lr, err, sizeof err), -1);
    ck_assert_str_eq(err, "--learning-rate: 'x1' is not a number");
    args_free(&ap);

    char *argv2[] = {"--steps"};
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 1, argv2, NULL, err, sizeof err), -1);
    ck_assert_str_eq(err, "--steps: missing value");
    args_free(&ap);
    char *argv3[] = {"--steps", "--verbose"};
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 2, argv3, NULL, err, sizeof err), -1);
    args_free(&ap);

    int x;
    ck_assert_int_eq(args_parse_int("--n", "99999999999", &x, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "out of range"));
    ck_assert_int_eq(args_parse_int("--n", "12x", &x, err, sizeof err), -1);
    ck_assert_int_eq(args_parse_int("--n", "", &x, err, sizeof err), -1);
    ck_assert_int_eq(args_parse_int("--n", "-12", &x, err, sizeof err), 0);
    ck_assert_int_eq(x, -12);
    int64_t big;
    ck_assert_int_eq(args_parse_int64("--n", "99999999999", &big, err, sizeof err), 0);
    ck_assert_int_eq(big, 99999999999LL);
    double d;
    ck_assert_int_eq(args_parse_double("--lr", "nan", &d, err, sizeof err), -1);
    ck_assert_int_eq(args_parse_double("--lr", "1e-3", &d, err, sizeof err), 0);
    ck_assert_double_eq(d, 1e-3);
}
END_TEST

START_TEST(test_enum_and_bool) {
    static const char *const levels[] = {"DEBUG", "INFO", "WARN", "ERROR", "FATAL", NULL};
    char *argv[] = {"--verbosity", "warn", "--verbose=false"};
    ArgParse ap;
    char err[256];
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 3, argv, NULL, err, sizeof err), 0);
    int lvl, v;
    ck_assert_int_eq(args_get_enum(&ap, "verbosity", levels, 1, &lvl, err, sizeof err), 0);
    ck_assert_int_eq(lvl, 2);
    ck_assert_int_eq(args_get_bool(&ap, "verbose", 1, &v, err, sizeof err), 0);
    ck_assert_int_eq(v, 0);
    args_free(&ap);
    ck_assert_int_eq(args_parse_enum("--verbosity", "LOUD", levels, &lvl, err, sizeof err), -1);
    ck_assert_str_eq(err, "--verbosity: 'LOUD' is not one of DEBUG, INFO, WARN, ERROR, FATAL");
    ck_assert_int_eq(args_parse_bool("--x", "maybe", &v, err, sizeof err), -1);
}
END_TEST

START_TEST(test_repeated_and_negative_values) {
    char *argv[] = {"--train", "a", "--train=b", "--train-files", "c", "d", "--steps", "1",
                    "--steps", "-2", "-"};
    ArgParse ap;
    char err[256];
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 11, argv, NULL, err, sizeof err), 0);
    const ArgValue *tf = args_value(&ap, "train-file");
    ck_assert_int_eq(tf->nvalues, 4);
    ck_assert_str_eq(tf->values[3], "d");
    int steps;
    ck_assert_int_eq(args_get_int(&ap, "steps", 0, &steps, err, sizeof err), 0);
    ck_assert_int_eq(steps, -2);   /* last wins; a negative number is a value */
    ck_assert_int_eq(ap.npositionals, 1);
    ck_assert_str_eq(ap.positionals[0], "-");
    ck_assert_int_eq(args_find(specs, NSPECS, "--train_files"), 0);
    ck_assert_int_eq(args_find(specs, NSPECS, "nope"), -1);
    args_free(&ap);
}
END_TEST

/* ABBREV: argparse's prefixes (task.py's `--batch 50`); an exact spelling wins, a prefix
 * of several flags is an error naming them, a prefix of one flag's spellings is that flag. */
START_TEST(test_abbreviations) {
    char *argv[] = {"--learn", "0.5", "--st=7", "--train_f", "a", "--verbosity", "INFO",
                    "--tra", "b", "--lonely", "1", "--log", "x"};
    ArgParse ap;
    char err[256];
    ck_assert_msg(args_parse(&ap, specs, NSPECS, 13, argv, ABBREV, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_str_eq(args_get(&ap, "learning-rate", NULL), "0.5");
    ck_assert_str_eq(args_get(&ap, "steps", NULL), "7");
    const ArgValue *tf = args_value(&ap, "train-file");   /* "--tra": train, train-file(s) */
    ck_assert_int_eq(tf->nvalues, 2);
    ck_assert_str_eq(tf->values[1], "b");
    ck_assert_str_eq(args_get(&ap, "verbosity", NULL), "INFO");   /* exact, though verbose too */
    /* a flag not in the list (not the script's) is not taken by a prefix */
    ck_assert_int_eq(ap.nunknown, 2);
    ck_assert_str_eq(ap.unknown[0].flag, "--lonely");
    ck_assert_str_eq(ap.unknown[1].flag, "--log");
    ck_assert_ptr_null(args_get(&ap, "log-dir", NULL));
    args_free(&ap);

    char *ambiguous[] = {"--steps", "3", "--verb", "x"};
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 4, ambiguous, ABBREV, err, sizeof err),
                     -1);
    ck_assert_str_eq(err, "ambiguous option: --verb could match --verbosity, --verbose");
    args_free(&ap);
    /* without a list a prefix is an unknown flag; a single dash never abbreviates */
    char *plain[] = {"--learn", "0.5", "-ste", "1"};
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 4, plain, NULL, err, sizeof err), 0);
    ck_assert_int_eq(ap.nunknown, 2);
    ck_assert_ptr_null(args_get(&ap, "learning-rate", NULL));
    args_free(&ap);
    ck_assert_int_eq(args_parse(&ap, specs, NSPECS, 4, plain, ABBREV, err, sizeof err), 0);
    ck_assert_int_eq(ap.nunknown, 1);
    ck_assert_str_eq(ap.unknown[0].flag, "-ste");
    args_free(&ap);
}
END_TEST

START_TEST(test_help_lists_every_flag) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    args_print_help(f, specs, NSPECS);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "--train-file, --train, --train-files PATH..."));
    ck_assert_ptr_nonnull(strstr(buf, "--help, -h"));
    ck_assert_ptr_nonnull(strstr(buf, "learning rate"));
    free(buf);
}
END_TEST

static Suite *args_suite(void) {
    Suite *s = suite_create("args");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_forms_and_spellings);
    tcase_add_test(tc, test_unknown_flags_collected);
    tcase_add_test(tc, test_errors_name_the_flag);
    tcase_add_test(tc, test_enum_and_bool);
    tcase_add_test(tc, test_repeated_and_negative_values);
    tcase_add_test(tc, test_abbreviations);
    tcase_add_test(tc, test_help_lists_every_flag);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(args_suite());
}
