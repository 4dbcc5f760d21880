/* dirs.h: directory helpers the writers share (mkdir -p, rm -r, listing with a filter).
 * gs:// and s3:// directories are prefixes (io/fs.h): making one is a no-op, removing one deletes
 * every object under it, listing gives the objects and prefixes directly inside it. */
#ifndef IO_DIRS_H
#define IO_DIRS_H

#include <stddef.h>

/* Creates path and any missing parents (mode 0777 & ~umask); an existing directory is fine.
 * 0 ok, -1 with err naming the path that could not be made. */
int dirs_make(const char *path, char *err, size_t errlen);

/* Removes path and everything under it (symlinks are removed, not followed); a missing path is
 * fine. 0 ok, -1 with err naming what could not be removed. */
int dirs_remove_tree(const char *path, char *err, size_t errlen);

/* Names of dir's entries (not . and ..) that keep(name, ctx) accepts, sorted bytewise; *names is
 * malloc'd (free with dirs_names_free). Returns the count, -1 with err when dir cannot be read. */
int dirs_list(const char *dir, int (*keep)(const char *name, void *ctx), void *ctx, char ***names,
              char *err, size_t errlen);
void dirs_names_free(char **names, int n);

#endif
