/* test_files.h: file helpers for tests: scratch directories, whole-file reads, byte patches. */
#ifndef TESTS_SUPPORT_TEST_FILES_H
#define TESTS_SUPPORT_TEST_FILES_H

#include <stddef.h>
#include <stdint.h>

/* Creates a fresh directory /tmp/<tag>_XXXXXX and writes its path to out. Aborts on failure. */
void test_make_tmpdir(char *out, size_t cap, const char *tag);
/* Removes path and everything under it (like rm -rf). 0 ok. */
int test_remove_tree(const char *path);
/* Reads a whole file (malloc'd, caller frees) and its size; NULL if it cannot be read. */
uint8_t *test_read_file(const char *path, size_t *n);
/* Writes n bytes to path (not atomically: tests build broken files with it). 0 ok. */
int test_write_file(const char *path, const void *data, size_t n);
/* 1 when path exists. */
int test_path_exists(const char *path);
/* Number of entries in a directory besides . and .., -1 if it cannot be opened. */
int test_count_dir_entries(const char *dir);

#endif
