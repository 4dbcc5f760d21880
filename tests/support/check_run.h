/* check_run.h: the end of every unit test's main(): run its Check suite and turn the outcome into
 * the exit status ctest reads. Header-only: test_support is built without Check too (the GPU
 * machines lack it), and only the unit tests include this. */
#ifndef TESTS_SUPPORT_CHECK_RUN_H
#define TESTS_SUPPORT_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

/* Runs every test of su (CK_NORMAL output) and frees it; EXIT_SUCCESS when none failed. */
static inline int test_run_suite(Suite *su) {
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
