/* atomic_file.c: temp-file-then-rename writer (see atomic_file.h). */
#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fs.h"

struct AtomicFile {
    char *path, *tmp;
    FILE *f;
    int remote;    /* gs:// or s3://: tmp is a local file, uploaded as path on commit */
};

static atomic_uint temp_counter;

AtomicFile *atomic_file_open(const char *path, char *err, size_t errlen) {
    AtomicFile *af = calloc(1, sizeof *af);
    size_t tmp_cap = strlen(path) + 64;
    if (af) {
        af->path = strdup(path);
        af->tmp = malloc(tmp_cap);
    }
    if (!af || !af->path || !af->tmp) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    af->remote = fs_is_remote(path);
    int fd;
    if (af->remote) {   /* the bytes wait in a local temporary file until the upload */
        const char *dir = getenv("TMPDIR");
        free(af->tmp);
        size_t n = strlen(dir && *dir ? dir : "/tmp") + 32;
        if (!(af->tmp = malloc(n))) {
            snprintf(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        snprintf(af->tmp, n, "%s/cnn-upload-XXXXXX", dir && *dir ? dir : "/tmp");
        fd = mkstemp(af->tmp);
    } else {
        /* <dir>/.<name>.tmp-<pid>-<n>: a hidden name, which directory and glob expansion
         * (ours: io/path_list.c; Hadoop's and TF's readers alike) pass over, so that what a
         * killed writer leaves among data files is not read as data */
        char suffix[48];
        snprintf(suffix, sizeof suffix, ".tmp-%ld-%u", (long)getpid(),
                 atomic_fetch_add(&temp_counter, 1u));
        fs_beside(path, ".", suffix, af->tmp, tmp_cap);
        fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create %s: %s", path, af->tmp, strerror(errno));
        goto fail;
    }
    af->f = fdopen(fd, af->remote ? "w+b" : "wb");
    if (!af->f) {
        snprintf(err, errlen, "%s: fdopen: %s", af->tmp, strerror(errno));
        close(fd);
        unlink(af->tmp);
        goto fail;
    }
    return af;
fail:
    if (af) {
        free(af->path);
        free(af->tmp);
        free(af);
    }
    return NULL;
}

FILE *atomic_file_stream(AtomicFile *af) { return af->f; }
const char *atomic_file_path(const AtomicFile *af) { return af->path; }
const char *atomic_file_temp_path(const AtomicFile *af) { return af->tmp; }

static void destroy(AtomicFile *af) {
    free(af->path);
    free(af->tmp);
    free(af);
}

/* Remote: uploads the local temporary file as the object (an object appears only whole). */
static int upload(AtomicFile *af, char *err, size_t errlen) {
    if (ferror(af->f) || fflush(af->f) != 0) {
        snprintf(err, errlen, "%s: write of %s failed: %s", af->path, af->tmp,
                 strerror(ferror(af->f) ? EIO : errno));
        return -1;
    }
    int rc = fs_upload(af->f, af->path, err, errlen);
    if (fseeko(af->f, 0, SEEK_END) != 0 && rc == 0) {   /* later writes append */
        snprintf(err, errlen, "%s: seek in %s failed: %s", af->path, af->tmp, strerror(errno));
        rc = -1;
    }
    return rc;
}

int atomic_file_publish(AtomicFile *af, char *err, size_t errlen) {
    if (af->remote) return upload(af, err, errlen);
    if (fflush(af->f) != 0) {
        snprintf(err, errlen, "%s: write failed: %s", af->tmp, strerror(errno));
        return -1;
    }
    return 0;
}

int atomic_file_commit(AtomicFile *af, char *err, size_t errlen) {
    if (af->remote) {
        int rc = upload(af, err, errlen);
        fclose(af->f);
        unlink(af->tmp);
        destroy(af);
        return rc;
    }
    const char *step = NULL;
    int saved = 0;
    if (ferror(af->f)) {
        step = "write";
        saved = EIO;
    } else if (fflush(af->f) != 0) {
        step = "write";
        saved = errno;
    } else if (fsync(fileno(af->f)) != 0) {
        step = "fsync";
        saved = errno;
    }
    if (fclose(af->f) != 0 && !step) {
        step = "close";
        saved = errno;
    }
    af->f = NULL;
    if (!step && rename(af->tmp, af->path) != 0) {
        step = "rename";
        saved = errno;
    }
    if (step) {
        snprintf(err, errlen, "%s: %s of %s failed: %s", af->path, step, af->tmp, strerror(saved));
        unlink(af->tmp);
        destroy(af);
        return -1;
    }
    /* Some file systems cannot fsync a directory (EINVAL); the rename itself has happened. */
    if (fsync_parent_dir(af->path) != 0 && errno != EINVAL) {
        snprintf(err, errlen, "%s: fsync of its directory failed: %s", af->path, strerror(errno));
        destroy(af);
        return -1;
    }
    destroy(af);
    return 0;
}

void atomic_file_abort(AtomicFile *af) {
    if (!af) return;
    if (af->f) fclose(af->f);
    unlink(af->tmp);
    destroy(af);
}

int atomic_file_write_all(const char *path, const void *data, size_t n, char *err, size_t errlen) {
    AtomicFile *af = atomic_file_open(path, err, errlen);
    if (!af) return -1;
    if (n && fwrite(data, 1, n, af->f) != n) {
        snprintf(err, errlen, "%s: write failed: %s", af->tmp, strerror(errno));
        atomic_file_abort(af);
        return -1;
    }
    return atomic_file_commit(af, err, errlen);
}

int fsync_dir(const char *dir) {
    if (fs_is_remote(dir)) return 0;   /* objects are durable once their upload completes */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int fsync_parent_dir(const char *path) {
    if (fs_is_remote(path)) return 0;
    const char *slash = strrchr(path, '/');
    if (!slash) return fsync_dir(".");
    if (slash == path) return fsync_dir("/");
    size_t n = (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    int rc = fsync_dir(dir);
    int saved = errno;
    free(dir);
    errno = saved;
    return rc;
}
