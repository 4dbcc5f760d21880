/* fs_backend.h: what an object store provides to io/fs.c (the protocol logic of one store:
 * io/fs_gcs.c, io/fs_s3.c). Buckets and keys are given raw (not encoded); `what` is the
 * "scheme://bucket/key" that errors name. Every error message names the bucket and the object
 * and says what the store answered; access errors say which credentials were used. */
#ifndef IO_FS_BACKEND_H
#define IO_FS_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Called for each listed object (is_prefix 0, size set) or delimited prefix (is_prefix 1, name
 * ends with '/'). Names are full keys. Return 0 to go on, 1 to stop (enough seen), -1 to stop with
 * an error (out of memory). */
typedef int (*FsListFn)(void *ctx, const char *name, int is_prefix, int64_t size);

typedef struct {
    const char *scheme;   /* "gs", "s3" */
    /* 1 found (*size set), 0 missing, -1 error (err set, *errno_out EACCES/EIO/ENOENT for a
     * missing bucket). */
    int (*head)(const char *bucket, const char *key, int64_t *size, int *errno_out, char *err,
                size_t errlen);
    /* Bytes [off, off + len) into buf; *got < len only at the end of the object. 0 ok, -1 error. */
    int (*read)(const char *bucket, const char *key, int64_t off, size_t len, char *buf,
                size_t *got, char *err, size_t errlen);
    /* Every object whose name starts with prefix (delimited: and the "directories" below it, as
     * prefixes ending with '/'), in name order, all pages. 0 ok, -1 error (*errno_out as head). */
    int (*list)(const char *bucket, const char *prefix, int delimited, FsListFn fn, void *ctx,
                int *errno_out, char *err, size_t errlen);
    /* Uploads (io/fs.c's fs_upload reads the local copy and picks one of these by size):
     * put: data[0..n) as the object key, in one request;
     * put_parts: the content of src (size bytes, more than `part`; src is at its start) in
     * requests of `part` bytes through buf (part bytes): an S3 multipart upload, a GCS
     * resumable upload. Nothing is published under key on failure.
     * 0 ok, -1 error. */
    int (*put)(const char *bucket, const char *key, const char *what, const char *data, size_t n,
               char *err, size_t errlen);
    int (*put_parts)(const char *bucket, const char *key, const char *what, FILE *src,
                     int64_t size, char *buf, size_t part, char *err, size_t errlen);
    /* Server-side copy (same store, any buckets). 0 ok, -1 error. */
    int (*copy)(const char *src_bucket, const char *src_key, const char *dst_bucket,
                const char *dst_key, char *err, size_t errlen);
    /* Deletes one object; missing is fine. 0 ok, -1 error. */
    int (*remove)(const char *bucket, const char *key, char *err, size_t errlen);
} FsBackend;

extern const FsBackend fs_gcs_backend;
extern const FsBackend fs_s3_backend;

/* Tunables shared by the back ends (environment, read once). */
size_t fs_part_bytes(void);   /* CNN_FS_PART_BYTES, default 8 MiB, at least 5 MiB */
int fs_list_page(void);       /* CNN_FS_LIST_PAGE: names per listing page, 0 = the store's (1000) */

/* Helpers the back ends share (io/fs.c). */

/* Reads n bytes of src at its current position into buf. 0 ok, -1 with err naming `what`. */
int fs_read_part(FILE *src, char *buf, size_t n, const char *what, char *err, size_t errlen);

/* The end of one listing page: `stop` is the last FsListFn answer (0 go on, 1 stop, -1 out of
 * memory), `more` whether the store has another page. 1: fetch the next page; 0: the listing is
 * done; -1: out of memory (err names `what`, *errno_out ENOMEM). */
int fs_list_page_end(int stop, int more, const char *what, int *errno_out, char *err,
                     size_t errlen);

#endif
