/* dirs.c: see dirs.h. */
#define _XOPEN_SOURCE 700
#include "io/dirs.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fs.h"

int dirs_make(const char *path, char *err, size_t errlen) {
    if (fs_is_remote(path)) return 0;   /* object stores have no directories to make */
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        snprintf(err, errlen, "cannot create directory '%s': bad path", path);
        return -1;
    }
    memcpy(buf, path, n + 1);
    /* make each prefix ending before a '/', then the whole path */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory '%s': %s", buf, strerror(errno));
            return -1;
        }
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot create directory '%s': a file of that name exists", path);
        return -1;
    }
    return 0;
}

static const char *remove_failed;   /* nftw has no context argument: set only by remove_one */
static int remove_errno;

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        remove_errno = errno;
        remove_failed = path;
        return 1;
    }
    return 0;
}

int dirs_remove_tree(const char *path, char *err, size_t errlen) {
    if (fs_is_remote(path)) return fs_delete_tree(path, err, errlen);
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    remove_failed = NULL;
    int rc = nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    if (rc != 0) {
        snprintf(err, errlen, "cannot remove '%s': %s", remove_failed ? remove_failed : path,
                 strerror(remove_failed ? remove_errno : errno));
        return -1;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The same over io/fs.h (which sorts). */
static int list_remote(const char *dir, int (*keep)(const char *name, void *ctx), void *ctx,
                       char ***names, char *err, size_t errlen) {
    FsEntry *e;
    int n = fs_list(dir, &e, err, errlen);
    if (n < 0) return -1;
    char **v = malloc((size_t)(n ? n : 1) * sizeof *v);
    int k = 0;
    for (int i = 0; v && i < n; i++) {
        if (keep && !keep(e[i].name, ctx)) continue;
        v[k++] = e[i].name;
        e[i].name = NULL;
    }
    fs_entries_free(e, n);
    if (!v) {
        snprintf(err, errlen, "listing '%s': out of memory", dir);
        return -1;
    }
    *names = v;
    return k;
}

int dirs_list(const char *dir, int (*keep)(const char *name, void *ctx), void *ctx, char ***names,
              char *err, size_t errlen) {
    *names = NULL;
    if (fs_is_remote(dir)) return list_remote(dir, keep, ctx, names, err, errlen);
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read directory '%s': %s", dir, strerror(errno));
        return -1;
    }
    int n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (keep && !keep(e->d_name, ctx)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(v, (size_t)cap * sizeof *p);
            if (!p) goto oom;
            v = p;
        }
        if (!(v[n] = strdup(e->d_name))) goto oom;
        n++;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_names);
    *names = v;
    return n;
oom:
    closedir(d);
    dirs_names_free(v, n);
    snprintf(err, errlen, "listing '%s': out of memory", dir);
    return -1;
}

void dirs_names_free(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}
