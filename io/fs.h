/* fs.h: the file-system layer the readers and writers go through, for local paths,
 * gs://bucket/object (Cloud Storage, io/fs_gcs.c) and s3://bucket/key (S3 and S3-compatible
 * stores, io/fs_s3.c). docs/cloud-storage.md has credentials, variables and limits.
 *
 * Local paths go straight to the C library, so local behaviour is exactly that of stat/open/
 * rename/unlink. On an object store:
 *  - a "directory" is a prefix: gs://b/d is a directory when some object is named d/...; the
 *    bucket root is one; creating directories is a no-op (io/dirs.c);
 *  - reads stream in ranged GETs of CNN_FS_READ_BYTES (default 8 MiB), each retried on 429/5xx
 *    and dropped connections (io/http.h);
 *  - writes go to a local temporary file and are uploaded when the file is committed
 *    (io/atomic_file.h): one request up to CNN_FS_PART_BYTES (default 8 MiB), above it an S3
 *    multipart upload or a GCS resumable upload. An object appears under its name only when its
 *    upload completes (single PUT, CompleteMultipartUpload, the last resumable chunk), so a
 *    failed or interrupted upload never leaves a partial object under the final name;
 *  - rename is copy-then-delete (not atomic: writers that need a tree to appear whole publish
 *    its marker file last, see fs_rename).
 */
#ifndef IO_FS_H
#define IO_FS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

/* 1 for gs:// and s3:// paths (which this layer serves), 0 for local paths. */
int fs_is_remote(const char *path);

/* stat(2) for any path. Remote: an object is a regular file (st_size its size, st_mtime 0), a
 * prefix with objects under "<path>/" or a bucket root a directory. 0 ok; -1 with errno (ENOENT
 * when missing) and err naming the path (for remote failures: the store's reason). */
int fs_stat(const char *path, struct stat *st, char *err, size_t errlen);

/* "dir/name", malloc'd (no second '/' when dir ends with one); NULL when out of memory. */
char *fs_join(const char *dir, const char *name);

/* A name beside path, in its parent: "<parent>/<prefix><name><suffix>" ("<prefix><name><suffix>"
 * without a parent), path's trailing '/'s dropped; e.g. ("out/model", ".", ".tmp-7") ->
 * "out/.model.tmp-7". Written to out as snprintf does (the full length returned). */
int fs_beside(const char *path, const char *prefix, const char *suffix, char *out, size_t cap);

/* ---- reading ------------------------------------------------------------------------------- */
typedef struct FsReader FsReader;

/* NULL with errno (ENOENT, EISDIR, EACCES, EIO) and err (the reason only: callers prefix the
 * path). */
FsReader *fs_reader_open(const char *path, char *err, size_t errlen);
/* read(2) semantics: bytes read (> 0), 0 at end of file, -1 on error (fs_reader_error). */
ssize_t fs_reader_read(FsReader *r, void *buf, size_t n);
/* The size of a regular file or object, -1 when unknown (a pipe). */
int64_t fs_reader_size(const FsReader *r);
const char *fs_reader_error(const FsReader *r);
void fs_reader_close(FsReader *r);

/* fopen(path, "rb") for any path: a remote object is downloaded into an anonymous temporary file
 * (so fseeko/fstat work on the result). NULL with errno set, and err as fs_reader_open's. */
FILE *fs_fopen_read(const char *path, char *err, size_t errlen);

/* ---- writing and changing ------------------------------------------------------------------ */

/* Remote only: uploads the whole content of src (read from its start) as the object `path`.
 * 0 ok; -1 with err naming the path (nothing is published under path on failure). */
int fs_upload(FILE *src, const char *path, char *err, size_t errlen);

/* unlink(2); remote: deletes the object. A missing file is not an error. 0 ok, -1 with err. */
int fs_delete(const char *path, char *err, size_t errlen);

/* Remote only: deletes the object `path` and every object under "<path>/". 0 ok, -1 with err. */
int fs_delete_tree(const char *path, char *err, size_t errlen);

/* rename(2) for a file or directory. Remote (both paths on the same store): server-side copy of
 * the object, or of every object under "<from>/" to "<to>/" with the files of the tree's top level
 * copied last (a SavedModel's saved_model.pb appears after its variables), then the sources are
 * deleted; when a copy fails the copies made so far are deleted again. 0 ok; -1 with errno and err. */
int fs_rename(const char *from, const char *to, char *err, size_t errlen);

/* ---- listing ------------------------------------------------------------------------------- */
typedef struct {
    char *name;       /* base name (directory entries) or full path (fs_glob) */
    int is_dir;
    int64_t size;
} FsEntry;

/* The entries directly inside dir (remote: objects "<dir>/name" and prefixes "<dir>/name/"),
 * sorted bytewise, without . and ..; local entries report is_dir/size from stat(2) (a broken
 * symlink is a file of size -1). Returns the count, -1 with err (errno ENOENT when dir is
 * missing). Free with fs_entries_free. */
int fs_list(const char *dir, FsEntry **entries, char *err, size_t errlen);
void fs_entries_free(FsEntry *entries, int n);

/* Remote only: the objects (full paths, sorted) whose names match a glob(7) pattern where '*',
 * '?' and [...] do not match '/' (fnmatch FNM_PATHNAME). Returns the count (0: none match), -1
 * with err. */
int fs_glob(const char *pattern, FsEntry **entries, char *err, size_t errlen);

#endif
