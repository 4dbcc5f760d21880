/* atomic_file.h: write a file under a temporary name, then rename it into place.
 *
 * Every program that writes an output (TFRecords, checkpoints, exports, event files that are
 * written whole) goes through this, so a crash or an error never leaves a half-written file under
 * the final name:
 *
 *     char err[256];
 *     AtomicFile *af = atomic_file_open("out/model.ckpt.index", err, sizeof err);
 *     if (!af) { fprintf(stderr, "%s\n", err); return 1; }
 *     fwrite(data, 1, n, atomic_file_stream(af));
 *     if (atomic_file_commit(af, err, sizeof err) != 0) { ...report err... }   // af is freed
 *
 * The temporary file is `<dir>/.<name>.tmp-<pid>-<n>`: in the same directory (rename is atomic
 * only within one file system), and hidden, so that one left by a killed writer is not taken for
 * data by a directory's expansion. commit = fflush + fsync + close + rename + fsync of the directory.
 * commit and abort both free the AtomicFile; after a failed commit the temporary is removed.
 *
 * gs:// and s3:// paths (io/fs.h): the temporary file is $TMPDIR/cnn-upload-XXXXXX (default
 * /tmp) and commit uploads it as the object `path`. An object appears only when its upload
 * completes, so the rule holds there too: nothing half-written under the final name.
 */
#ifndef IO_ATOMIC_FILE_H
#define IO_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct AtomicFile AtomicFile;

/* NULL on failure with err set (names the path and the system error). */
AtomicFile *atomic_file_open(const char *path, char *err, size_t errlen);
FILE *atomic_file_stream(AtomicFile *af);
const char *atomic_file_path(const AtomicFile *af);       /* the final path */
const char *atomic_file_temp_path(const AtomicFile *af);  /* where the bytes go until commit */
/* 0 on success. On failure (including an earlier write error on the stream) -1 with err set;
 * the final path is left untouched. */
int atomic_file_commit(AtomicFile *af, char *err, size_t errlen);
void atomic_file_abort(AtomicFile *af);

/* Makes what has been written so far visible under the final name without finishing, for files
 * that readers follow while they grow (event files): remote paths upload the whole content again
 * (replacing the object, as TF's cloud file systems do on flush); local paths only fflush (the
 * caller writes such files in place, see TFR_WRITE_DIRECT). 0 ok, -1 with err set. */
int atomic_file_publish(AtomicFile *af, char *err, size_t errlen);

/* Writes n bytes as the whole content of path, atomically. 0 ok, -1 with err set. */
int atomic_file_write_all(const char *path, const void *data, size_t n, char *err, size_t errlen);

/* fsync a directory (makes a rename/create inside it durable). 0 ok, -1 with errno set. */
int fsync_dir(const char *dir);
/* fsync the directory that holds path ("." for a bare name). 0 ok, -1 with errno set. */
int fsync_parent_dir(const char *path);

#endif
