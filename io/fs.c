/* fs.c: local paths through the C library, gs:// and s3:// through a back end (see fs.h). */
#include "io/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fs_backend.h"

/* ---- remote paths --------------------------------------------------------------------------- */

typedef struct {
    const FsBackend *be;
    char bucket[256];
    const char *key;       /* points into the path: "" for the bucket root */
} Remote;

/* The back end of a remote path (NULL when this build has none: configured without cJSON). */
static const FsBackend *backend_of(const char *path) {
#ifdef HAVE_CLOUD_STORAGE
    if (strncmp(path, "gs://", 5) == 0) return &fs_gcs_backend;
    if (strncmp(path, "s3://", 5) == 0) return &fs_s3_backend;
#else
    (void)path;
#endif
    return NULL;
}

int fs_is_remote(const char *path) {
    return strncmp(path, "gs://", 5) == 0 || strncmp(path, "s3://", 5) == 0;
}

size_t fs_part_bytes(void) {
    const char *s = getenv("CNN_FS_PART_BYTES");
    long long v = s ? strtoll(s, NULL, 10) : 0;
    size_t min = (size_t)5 << 20, part = v > 0 ? (size_t)v : (size_t)8 << 20;
    if (part < min) part = min;                   /* S3's smallest part */
    return part / (256 << 10) * (256 << 10);      /* GCS chunks: multiples of 256 KiB */
}

int fs_list_page(void) {
    const char *s = getenv("CNN_FS_LIST_PAGE");
    long v = s ? strtol(s, NULL, 10) : 0;
    return v > 0 && v <= 1000 ? (int)v : 0;
}

char *fs_join(const char *dir, const char *name) {
    size_t dlen = strlen(dir), need = dlen + strlen(name) + 2;
    char *full = malloc(need);
    if (full) snprintf(full, need, "%s%s%s", dir, dlen && dir[dlen - 1] == '/' ? "" : "/", name);
    return full;
}

int fs_beside(const char *path, const char *prefix, const char *suffix, char *out, size_t cap) {
    size_t n = strlen(path), name = 0;
    while (n > 1 && path[n - 1] == '/') n--;
    for (size_t i = n; i > 0; i--)
        if (path[i - 1] == '/') {
            name = i;
            break;
        }
    return snprintf(out, cap, "%.*s%s%.*s%s", (int)name, path, prefix, (int)(n - name),
                    path + name, suffix);
}

int fs_read_part(FILE *src, char *buf, size_t n, const char *what, char *err, size_t errlen) {
    if (n && fread(buf, 1, n, src) != n) {
        snprintf(err, errlen, "%s: reading the local copy failed", what);
        return -1;
    }
    return 0;
}

int fs_list_page_end(int stop, int more, const char *what, int *errno_out, char *err,
                     size_t errlen) {
    if (stop < 0) {
        snprintf(err, errlen, "%s: out of memory", what);
        *errno_out = ENOMEM;
        return -1;
    }
    return stop || !more ? 0 : 1;
}

/* Splits scheme://bucket/key. -1 with err (errno EINVAL) when the bucket is missing, ENOTSUP when
 * this build has no back end for the scheme. */
static int parse_remote(const char *path, Remote *r, char *err, size_t errlen) {
    r->be = backend_of(path);
    if (!r->be) {
        snprintf(err, errlen, "%s: this build has no gs:// or s3:// support (it was configured "
                 "without libcjson-dev)", path);
        errno = ENOTSUP;
        return -1;
    }
    const char *b = path + 5, *slash = strchr(b, '/');
    size_t n = slash ? (size_t)(slash - b) : strlen(b);
    if (n == 0 || n >= sizeof r->bucket) {
        snprintf(err, errlen, "%s: not a valid %s:// path (scheme://bucket/name)", path,
                 r->be->scheme);
        errno = EINVAL;
        return -1;
    }
    memcpy(r->bucket, b, n);
    r->bucket[n] = 0;
    r->key = slash ? slash + 1 : "";
    return 0;
}

/* "<key>/" (or "" for the bucket root) into out. */
static void dir_prefix(const char *key, char *out, size_t cap) {
    size_t n = strlen(key);
    while (n > 0 && key[n - 1] == '/') n--;
    snprintf(out, cap, "%.*s%s", (int)n, key, n ? "/" : "");
}

typedef struct {
    FsEntry *v;
    int n, cap;
    const char *strip;     /* prefix removed from names (fs_list) */
    const char *pattern;   /* fs_glob: key pattern */
    const char *url_head;  /* fs_glob: "scheme://bucket/" put before matching keys */
    int any;               /* fs_stat: stop at the first entry */
} Collect;

static int collect_push(Collect *c, char *name, int is_dir, int64_t size) {
    if (!name) return -1;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 32;
        FsEntry *v = realloc(c->v, (size_t)cap * sizeof *v);
        if (!v) {
            free(name);
            return -1;
        }
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = (FsEntry){name, is_dir, size};
    return 0;
}

static int on_listed(void *ctx, const char *name, int is_prefix, int64_t size) {
    Collect *c = ctx;
    if (c->any) {
        c->n = 1;
        return 1;
    }
    if (c->pattern) {
        if (is_prefix || fnmatch(c->pattern, name, FNM_PATHNAME) != 0) return 0;
        size_t n = strlen(c->url_head) + strlen(name) + 1;
        char *full = malloc(n);
        if (full) snprintf(full, n, "%s%s", c->url_head, name);
        return collect_push(c, full, 0, size);
    }
    const char *rel = name + strlen(c->strip);
    size_t n = strlen(rel);
    if (is_prefix) n--;                       /* drop the trailing '/' */
    if (n == 0) return 0;                     /* a "directory marker" object: "<dir>/" */
    char *copy = strndup(rel, n);
    return collect_push(c, copy, is_prefix, is_prefix ? 0 : size);
}

static int cmp_entries(const void *a, const void *b) {
    return strcmp(((const FsEntry *)a)->name, ((const FsEntry *)b)->name);
}

void fs_entries_free(FsEntry *entries, int n) {
    if (!entries) return;
    for (int i = 0; i < n; i++) free(entries[i].name);
    free(entries);
}

/* ---- stat ------------------------------------------------------------------------------------ */

int fs_stat(const char *path, struct stat *st, char *err, size_t errlen) {
    if (!fs_is_remote(path)) {
        if (stat(path, st) == 0) return 0;
        int saved = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(saved));
        errno = saved;
        return -1;
    }
    Remote r;
    if (parse_remote(path, &r, err, errlen)) return -1;
    memset(st, 0, sizeof *st);
    int eno = EIO;
    if (r.key[0] && r.key[strlen(r.key) - 1] != '/') {
        int64_t size = 0;
        int found = r.be->head(r.bucket, r.key, &size, &eno, err, errlen);
        if (found < 0) {
            errno = eno;
            return -1;
        }
        if (found) {
            st->st_mode = S_IFREG | 0444;
            st->st_size = (off_t)size;
            return 0;
        }
    }
    char prefix[2048];
    dir_prefix(r.key, prefix, sizeof prefix);
    Collect c = {.any = 1, .strip = prefix};
    if (r.be->list(r.bucket, prefix, 1, on_listed, &c, &eno, err, errlen) != 0) {
        errno = eno;
        return -1;
    }
    if (c.n || !prefix[0]) {
        st->st_mode = S_IFDIR | 0555;
        return 0;
    }
    snprintf(err, errlen, "%s: %s", path, strerror(ENOENT));
    errno = ENOENT;
    return -1;
}

/* ---- listing --------------------------------------------------------------------------------- */

static int list_local(const char *dir, FsEntry **entries, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        int saved = errno;
        snprintf(err, errlen, "cannot read directory '%s': %s", dir, strerror(saved));
        errno = saved;
        return -1;
    }
    Collect c = {0};
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *full = fs_join(dir, e->d_name);
        if (!full) {
            rc = -1;
            break;
        }
        struct stat st;
        int ok = stat(full, &st) == 0;
        free(full);
        rc = collect_push(&c, strdup(e->d_name), ok && S_ISDIR(st.st_mode),
                          ok ? (int64_t)st.st_size : -1);
    }
    closedir(d);
    if (rc) {
        fs_entries_free(c.v, c.n);
        snprintf(err, errlen, "listing '%s': out of memory", dir);
        errno = ENOMEM;
        return -1;
    }
    if (c.n) qsort(c.v, (size_t)c.n, sizeof *c.v, cmp_entries);
    *entries = c.v;
    return c.n;
}

/* Lists prefix (delimited: one level, with its "directories") through c, then hands out c's
 * entries sorted. The count; -1 with errno and err. */
static int list_sorted(const Remote *r, const char *prefix, int delimited, Collect *c,
                       FsEntry **entries, char *err, size_t errlen) {
    int eno = EIO;
    if (r->be->list(r->bucket, prefix, delimited, on_listed, c, &eno, err, errlen) != 0) {
        fs_entries_free(c->v, c->n);
        errno = eno;
        return -1;
    }
    if (c->n) qsort(c->v, (size_t)c->n, sizeof *c->v, cmp_entries);
    *entries = c->v;
    return c->n;
}

int fs_list(const char *dir, FsEntry **entries, char *err, size_t errlen) {
    *entries = NULL;
    if (!fs_is_remote(dir)) return list_local(dir, entries, err, errlen);
    Remote r;
    if (parse_remote(dir, &r, err, errlen)) return -1;
    char prefix[2048];
    dir_prefix(r.key, prefix, sizeof prefix);
    Collect c = {.strip = prefix};
    return list_sorted(&r, prefix, 1, &c, entries, err, errlen);
}

int fs_glob(const char *pattern, FsEntry **entries, char *err, size_t errlen) {
    *entries = NULL;
    Remote r;
    if (!fs_is_remote(pattern)) {
        snprintf(err, errlen, "%s: fs_glob serves gs:// and s3:// patterns", pattern);
        return -1;
    }
    if (parse_remote(pattern, &r, err, errlen)) return -1;
    /* list from the literal part up to the first wildcard */
    char prefix[2048];
    size_t lit = strcspn(r.key, "*?[");
    snprintf(prefix, sizeof prefix, "%.*s", (int)lit, r.key);
    char head[300];
    snprintf(head, sizeof head, "%s://%s/", r.be->scheme, r.bucket);
    Collect c = {.pattern = r.key, .url_head = head};
    return list_sorted(&r, prefix, 0, &c, entries, err, errlen);
}

/* ---- reading --------------------------------------------------------------------------------- */

struct FsReader {
    int fd;                  /* local */
    int64_t size;
    Remote remote;           /* remote: the object and a window of it */
    char *path;
    char *buf;
    size_t buf_len, buf_pos, chunk;
    int64_t next_off;        /* object offset of the next ranged read */
    char error[1024];
};

static size_t read_chunk_bytes(void) {
    const char *s = getenv("CNN_FS_READ_BYTES");
    long v = s ? strtol(s, NULL, 10) : 0;
    return v >= 4096 ? (size_t)v : (size_t)8 << 20;
}

FsReader *fs_reader_open(const char *path, char *err, size_t errlen) {
    FsReader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    r->fd = -1;
    if (!fs_is_remote(path)) {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        int saved = errno;
        if (r->fd >= 0 && fstat(r->fd, &st) == 0 && S_ISDIR(st.st_mode)) saved = EISDIR;
        else if (r->fd >= 0) {
            r->size = fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
            return r;
        }
        snprintf(err, errlen, "%s", saved == EISDIR ? "is a directory" : strerror(saved));
        fs_reader_close(r);
        errno = saved;
        return NULL;
    }
    char why[1024];
    struct stat st;
    int bad = parse_remote(r->path, &r->remote, err, errlen);   /* err names the path */
    if (!bad && fs_stat(path, &st, why, sizeof why) != 0) {
        bad = 1;
        snprintf(err, errlen, "%s", errno == ENOENT ? strerror(errno) : why);
    }
    if (bad) {
        int saved = errno;
        fs_reader_close(r);
        errno = saved;
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "is a directory");
        fs_reader_close(r);
        errno = EISDIR;
        return NULL;
    }
    r->size = (int64_t)st.st_size;
    r->chunk = read_chunk_bytes();
    return r;
}

ssize_t fs_reader_read(FsReader *r, void *buf, size_t n) {
    if (r->fd >= 0) {
        ssize_t k;
        do k = read(r->fd, buf, n);
        while (k < 0 && errno == EINTR);
        if (k < 0) snprintf(r->error, sizeof r->error, "%s", strerror(errno));
        return k;
    }
    if (r->buf_pos == r->buf_len) {   /* window used up: fetch the next range */
        if (r->next_off >= r->size) return 0;
        size_t want = r->chunk;
        if ((int64_t)want > r->size - r->next_off) want = (size_t)(r->size - r->next_off);
        if (!r->buf && !(r->buf = malloc(r->chunk))) {
            snprintf(r->error, sizeof r->error, "out of memory");
            return -1;
        }
        size_t got = 0;
        if (r->remote.be->read(r->remote.bucket, r->remote.key, r->next_off, want, r->buf, &got,
                               r->error, sizeof r->error) != 0)
            return -1;
        if (got < want) {
            snprintf(r->error, sizeof r->error, "%s: the object is %lld bytes now, it was %lld "
                     "when opened (changed while being read?)", r->path,
                     (long long)(r->next_off + (int64_t)got), (long long)r->size);
            return -1;
        }
        r->buf_len = got;
        r->buf_pos = 0;
        r->next_off += (int64_t)got;
    }
    size_t k = r->buf_len - r->buf_pos < n ? r->buf_len - r->buf_pos : n;
    memcpy(buf, r->buf + r->buf_pos, k);
    r->buf_pos += k;
    return (ssize_t)k;
}

int64_t fs_reader_size(const FsReader *r) { return r->size; }
const char *fs_reader_error(const FsReader *r) { return r->error; }

void fs_reader_close(FsReader *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    free(r->buf);
    free(r->path);
    free(r);
}

FILE *fs_fopen_read(const char *path, char *err, size_t errlen) {
    if (!fs_is_remote(path)) {
        FILE *f = fopen(path, "rb");
        if (!f) snprintf(err, errlen, "%s", strerror(errno));
        return f;
    }
    FsReader *r = fs_reader_open(path, err, errlen);
    if (!r) return NULL;
    FILE *f = tmpfile();
    if (!f) {
        int saved = errno;
        snprintf(err, errlen, "cannot create a temporary file for the download: %s",
                 strerror(saved));
        fs_reader_close(r);
        errno = saved;
        return NULL;
    }
    char buf[65536];
    ssize_t k;
    while ((k = fs_reader_read(r, buf, sizeof buf)) > 0) {
        if (fwrite(buf, 1, (size_t)k, f) != (size_t)k) {
            snprintf(r->error, sizeof r->error, "writing the temporary copy: %s", strerror(errno));
            k = -1;
            break;
        }
    }
    if (k < 0 || fflush(f) != 0 || fseeko(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "%s", r->error[0] ? r->error : "temporary copy failed");
        fs_reader_close(r);
        fclose(f);
        errno = EIO;
        return NULL;
    }
    fs_reader_close(r);
    return f;
}

/* ---- writing and changing -------------------------------------------------------------------- */

int fs_upload(FILE *src, const char *path, char *err, size_t errlen) {
    Remote r;
    if (!fs_is_remote(path)) {
        snprintf(err, errlen, "%s: fs_upload writes gs:// and s3:// objects only", path);
        return -1;
    }
    if (parse_remote(path, &r, err, errlen)) return -1;
    if (!r.key[0] || r.key[strlen(r.key) - 1] == '/') {
        snprintf(err, errlen, "%s: an object name must not be empty or end with '/'", path);
        return -1;
    }
    if (fflush(src) != 0 || fseeko(src, 0, SEEK_END) != 0) {
        snprintf(err, errlen, "%s: cannot read the local copy: %s", path, strerror(errno));
        return -1;
    }
    off_t size = ftello(src);
    if (size < 0 || fseeko(src, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "%s: cannot read the local copy: %s", path, strerror(errno));
        return -1;
    }
    /* one request up to the part size, above it the store's multi-request upload */
    size_t part = fs_part_bytes();
    size_t first = (int64_t)size < (int64_t)part ? (size_t)size : part;
    char *buf = malloc(first ? first : 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    int rc;
    if ((int64_t)size <= (int64_t)part) {
        rc = fs_read_part(src, buf, (size_t)size, path, err, errlen);
        if (rc == 0) rc = r.be->put(r.bucket, r.key, path, buf, (size_t)size, err, errlen);
    } else {
        rc = r.be->put_parts(r.bucket, r.key, path, src, (int64_t)size, buf, part, err, errlen);
    }
    free(buf);
    return rc;
}

int fs_delete(const char *path, char *err, size_t errlen) {
    if (!fs_is_remote(path)) {
        if (unlink(path) == 0 || errno == ENOENT) return 0;
        snprintf(err, errlen, "cannot remove '%s': %s", path, strerror(errno));
        return -1;
    }
    Remote r;
    if (parse_remote(path, &r, err, errlen)) return -1;
    return r.be->remove(r.bucket, r.key, err, errlen);
}

/* Every object of a tree (the object `key` itself, and those under "<key>/"), full keys. */
static int list_tree(const Remote *r, Collect *c, char *err, size_t errlen) {
    char prefix[2048];
    dir_prefix(r->key, prefix, sizeof prefix);
    c->strip = "";
    int eno = EIO;
    if (r->be->list(r->bucket, prefix, 0, on_listed, c, &eno, err, errlen) != 0) {
        errno = eno;
        return -1;
    }
    if (r->key[0]) {
        int64_t size;
        int found = r->be->head(r->bucket, r->key, &size, &eno, err, errlen);
        if (found < 0) {
            errno = eno;
            return -1;
        }
        if (found && collect_push(c, strdup(r->key), 0, size)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

int fs_delete_tree(const char *path, char *err, size_t errlen) {
    Remote r;
    if (!fs_is_remote(path)) {
        snprintf(err, errlen, "%s: fs_delete_tree serves gs:// and s3:// paths", path);
        return -1;
    }
    if (parse_remote(path, &r, err, errlen)) return -1;
    if (!r.key[0]) {
        snprintf(err, errlen, "%s: refusing to delete a whole bucket", path);
        return -1;
    }
    Collect c = {0};
    int rc = list_tree(&r, &c, err, errlen);
    for (int i = 0; rc == 0 && i < c.n; i++) rc = r.be->remove(r.bucket, c.v[i].name, err, errlen);
    fs_entries_free(c.v, c.n);
    return rc;
}

/* Files of the tree's top level after everything deeper (then by name). */
static int cmp_deep_first(const void *a, const void *b) {
    const FsEntry *x = a, *y = b;
    if (x->is_dir != y->is_dir) return y->is_dir - x->is_dir;
    return strcmp(x->name, y->name);
}

int fs_rename(const char *from, const char *to, char *err, size_t errlen) {
    int rf = fs_is_remote(from), rt = fs_is_remote(to);
    if (!rf && !rt) {
        if (rename(from, to) == 0) return 0;
        int saved = errno;
        snprintf(err, errlen, "cannot rename '%s' to '%s': %s", from, to, strerror(saved));
        errno = saved;
        return -1;
    }
    Remote a, b;
    if (!rf || !rt || backend_of(from) != backend_of(to)) {
        snprintf(err, errlen, "cannot rename '%s' to '%s': not on the same store", from, to);
        errno = EXDEV;
        return -1;
    }
    if (parse_remote(from, &a, err, errlen) || parse_remote(to, &b, err, errlen)) return -1;
    Collect c = {0};
    if (list_tree(&a, &c, err, errlen)) {
        fs_entries_free(c.v, c.n);
        return -1;
    }
    if (c.n == 0) {
        fs_entries_free(c.v, c.n);
        snprintf(err, errlen, "cannot rename '%s': %s", from, strerror(ENOENT));
        errno = ENOENT;
        return -1;
    }
    /* destination keys: the object itself, or <to>/<rest of the name> */
    char src_prefix[2048], dst_prefix[2048];
    dir_prefix(a.key, src_prefix, sizeof src_prefix);
    dir_prefix(b.key, dst_prefix, sizeof dst_prefix);
    size_t sp = strlen(src_prefix);
    for (int i = 0; i < c.n; i++)   /* is_dir marks "deeper than the top level" for the order */
        c.v[i].is_dir = strcmp(c.v[i].name, a.key) != 0 && strchr(c.v[i].name + sp, '/') != NULL;
    qsort(c.v, (size_t)c.n, sizeof *c.v, cmp_deep_first);
    int rc = 0, copied = 0;
    char dst[4096];
    for (; rc == 0 && copied < c.n; copied++) {
        const char *name = c.v[copied].name;
        if (!strcmp(name, a.key)) snprintf(dst, sizeof dst, "%s", b.key);
        else snprintf(dst, sizeof dst, "%s%s", dst_prefix, name + sp);
        rc = a.be->copy(a.bucket, name, b.bucket, dst, err, errlen);
    }
    if (rc != 0) {   /* undo: what was copied goes again, the source stays */
        char ignore[512];
        for (int i = 0; i < copied - 1; i++) {
            const char *name = c.v[i].name;
            if (!strcmp(name, a.key)) snprintf(dst, sizeof dst, "%s", b.key);
            else snprintf(dst, sizeof dst, "%s%s", dst_prefix, name + sp);
            b.be->remove(b.bucket, dst, ignore, sizeof ignore);
        }
        errno = EIO;
    }
    for (int i = 0; rc == 0 && i < c.n; i++) rc = a.be->remove(a.bucket, c.v[i].name, err, errlen);
    fs_entries_free(c.v, c.n);
    return rc;
}
