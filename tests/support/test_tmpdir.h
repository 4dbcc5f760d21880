/* test_tmpdir.h: a fresh temporary directory per test, removed recursively afterwards. */
#ifndef TESTS_SUPPORT_TEST_TMPDIR_H
#define TESTS_SUPPORT_TEST_TMPDIR_H

#include <stddef.h>

/* Creates /tmp/<prefix>-XXXXXX; returns its path (static storage, one at a time) or aborts. */
const char *test_tmpdir_create(const char *prefix);
/* Removes the directory made by test_tmpdir_create and everything in it. */
void test_tmpdir_remove(void);
/* snprintf(buf, n, "<tmpdir>/<name>"), returns buf. */
char *test_tmpdir_path(char *buf, size_t n, const char *name);
/* Reads a whole file into malloc'd memory (*len set); NULL on failure. */
unsigned char *test_read_file(const char *path, size_t *len);
/* Writes a whole file; 0 ok. */
int test_write_file(const char *path, const void *data, size_t len);

#endif
