/* test_files.c: see test_files.h. */
#include "support/test_files.h"

#include "io/dirs.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void test_make_tmpdir(char *out, size_t cap, const char *tag) {
    snprintf(out, cap, "/tmp/%s_XXXXXX", tag);
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        abort();
    }
}

int test_remove_tree(const char *path) {
    char err[512];
    return dirs_remove_tree(path, err, sizeof err);
}

uint8_t *test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (buf && fread(buf, 1, size, f) != size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *n = size;
    return buf;
}

int test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int test_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int test_count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}
