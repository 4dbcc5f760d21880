/* path_list.c: files, directories and globs to a list of files (see path_list.h). */
#include "io/path_list.h"

#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fs.h"

static int add(PathList *pl, const char *path) {
    char *copy = strdup(path);
    char **p = copy ? realloc(pl->paths, (size_t)(pl->n + 1) * sizeof *p) : NULL;
    if (!p) {
        free(copy);
        return -1;
    }
    pl->paths = p;
    pl->paths[pl->n++] = copy;
    return 0;
}

static int is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Hadoop's hidden names, which Spark, Beam and EMR leave beside their data in an output prefix
 * that becomes a channel: _SUCCESS, _temporary/, .part-00000.crc. */
static int is_hidden(const char *name) { return name[0] == '.' || name[0] == '_'; }

/* A directory that yields no file: the message says where the data may be instead. */
static void no_data_files(const char *dir, int subdirs, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: directory contains no data files%s", dir,
             subdirs ? " (its subdirectories are not searched: name them, or a glob, as inputs)"
                     : "");
}

static int expand_dir(PathList *out, const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot read directory: %s", dir, strerror(errno));
        return -1;
    }
    PathList found = {0};
    int rc = 0, subdirs = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (is_hidden(e->d_name)) continue;
        char *full = fs_join(dir, e->d_name);
        if (!full) {
            rc = -1;
            break;
        }
        struct stat st;
        subdirs |= stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        if (is_regular(full) && add(&found, full)) rc = -1;
        free(full);
        if (rc) break;
    }
    closedir(d);
    if (rc) {
        snprintf(err, errlen, "%s: out of memory", dir);
    } else if (found.n == 0) {
        no_data_files(dir, subdirs, err, errlen);
        rc = -1;
    } else {
        qsort(found.paths, (size_t)found.n, sizeof *found.paths, cmp_str);
        for (int i = 0; i < found.n && !rc; i++)
            if (add(out, found.paths[i])) {
                snprintf(err, errlen, "%s: out of memory", dir);
                rc = -1;
            }
    }
    path_list_free(&found);
    return rc;
}

static int expand_glob(PathList *out, const char *pattern, char *err, size_t errlen) {
    glob_t g;
    int grc = glob(pattern, 0, NULL, &g);
    if (grc == GLOB_NOMATCH) {
        snprintf(err, errlen, "%s: no files match this pattern", pattern);
        return -1;
    }
    if (grc != 0) {
        snprintf(err, errlen, "%s: cannot expand pattern (%s)", pattern,
                 grc == GLOB_NOSPACE ? "out of memory" : "read error");
        return -1;
    }
    int added = 0, rc = 0;
    for (size_t i = 0; i < g.gl_pathc && !rc; i++) {   /* glob sorts its matches */
        if (!is_regular(g.gl_pathv[i])) continue;
        if (add(out, g.gl_pathv[i])) {
            snprintf(err, errlen, "%s: out of memory", pattern);
            rc = -1;
        }
        added++;
    }
    globfree(&g);
    if (!rc && added == 0) {
        snprintf(err, errlen, "%s: the pattern matches no regular files", pattern);
        rc = -1;
    }
    return rc;
}

/* gs:// and s3:// inputs, with the same rules over io/fs.h: a pattern lists the objects
 * matching it, an object is itself, a prefix ("directory") gives its objects. */
static int expand_remote(PathList *out, const char *in, char *err, size_t errlen) {
    FsEntry *e = NULL;
    int n;
    if (strpbrk(in, "*?[")) {
        n = fs_glob(in, &e, err, errlen);
        if (n == 0) snprintf(err, errlen, "%s: no objects match this pattern", in);
        for (int i = 0; i < n; i++)
            if (add(out, e[i].name)) {
                snprintf(err, errlen, "%s: out of memory", in);
                n = -1;
            }
        fs_entries_free(e, n > 0 ? n : 0);
        return n > 0 ? 0 : -1;
    }
    struct stat st;
    if (fs_stat(in, &st, err, errlen) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        if (add(out, in)) return snprintf(err, errlen, "%s: out of memory", in), -1;
        return 0;
    }
    n = fs_list(in, &e, err, errlen);
    if (n < 0) return -1;
    int added = 0, rc = 0, subdirs = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (is_hidden(e[i].name)) continue;
        subdirs |= e[i].is_dir;
        if (e[i].is_dir) continue;
        char *full = fs_join(in, e[i].name);
        if (!full || add(out, full)) {
            snprintf(err, errlen, "%s: out of memory", in);
            rc = -1;
        }
        free(full);
        added++;
    }
    fs_entries_free(e, n);
    if (rc == 0 && added == 0) {
        no_data_files(in, subdirs, err, errlen);
        rc = -1;
    }
    return rc;
}

int path_list_expand(PathList *out, const char *const *inputs, int ninputs, char *err, size_t errlen) {
    for (int i = 0; i < ninputs; i++) {
        const char *in = inputs[i];
        struct stat st;
        if (fs_is_remote(in)) {
            if (expand_remote(out, in, err, errlen)) return -1;
            continue;
        }
        if (strstr(in, "://")) {
            snprintf(err, errlen, "%s: only gs:// and s3:// URLs are supported", in);
            return -1;
        }
        if (stat(in, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                if (expand_dir(out, in, err, errlen)) return -1;
            } else if (add(out, in)) {
                snprintf(err, errlen, "%s: out of memory", in);
                return -1;
            }
        } else if (strpbrk(in, "*?[")) {
            if (expand_glob(out, in, err, errlen)) return -1;
        } else {
            snprintf(err, errlen, "%s: %s", in, strerror(errno));
            return -1;
        }
    }
    return 0;
}

void path_list_free(PathList *pl) {
    for (int i = 0; i < pl->n; i++) free(pl->paths[i]);
    free(pl->paths);
    pl->paths = NULL;
    pl->n = 0;
}
