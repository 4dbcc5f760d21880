/* tfrecord.c: TFRecord writer and streaming reader (see tfrecord.h). */
#include "io/tfrecord.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/atomic_file.h"
#include "io/crc32c.h"
#include "io/fs.h"

int tfr_compression_parse(const char *s, TfrCompression *out) {
    if (!*s || !strcasecmp(s, "none")) *out = TFR_NONE;
    else if (!strcasecmp(s, "gzip")) *out = TFR_GZIP;
    else if (!strcasecmp(s, "zlib")) *out = TFR_ZLIB;
    else if (!strcasecmp(s, "auto")) *out = TFR_AUTO;
    else return -1;
    return 0;
}

const char *tfr_compression_name(TfrCompression c) {
    switch (c) {
    case TFR_NONE: return "none";
    case TFR_GZIP: return "gzip";
    case TFR_ZLIB: return "zlib";
    default: return "auto";
    }
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_le64(const uint8_t *p) {
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

uint32_t tfr_frame_header(uint8_t out[12], const void *data, size_t n) {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)n >> (8 * i));
    put_le32(out + 8, crc32c_mask(crc32c(out, 8)));
    return crc32c_mask(crc32c(data, n));
}

/* windowBits for deflateInit2/inflateInit2: 15 = zlib wrapper, 15 + 16 = gzip wrapper. */
static int window_bits(TfrCompression c) { return c == TFR_GZIP ? 15 + 16 : 15; }

/* ---- writer ------------------------------------------------------------------------------ */

enum { ZCHUNK = 256 * 1024 };

struct TfrWriter {
    char *path;
    int mode;
    TfrCompression c;
    AtomicFile *af;        /* ATOMIC mode */
    FILE *f;               /* the stream written (af's, or our own) */
    z_stream z;
    int z_live;
    uint8_t *zout;
    uint64_t records;
    int failed;
    char error[512];
};

static int wfail(TfrWriter *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(w->error, sizeof w->error, "%s: ", w->path);
    vsnprintf(w->error + n, sizeof w->error - (size_t)n, fmt, ap);
    va_end(ap);
    w->failed = 1;
    return -1;
}

TfrWriter *tfr_writer_open(const char *path, TfrCompression c, int mode, char *err, size_t errlen) {
    if (c != TFR_NONE && c != TFR_GZIP && c != TFR_ZLIB) {
        snprintf(err, errlen, "%s: writer needs compression none, gzip or zlib", path);
        return NULL;
    }
    if (mode == TFR_WRITE_APPEND && c != TFR_NONE) {
        snprintf(err, errlen, "%s: appending is only supported without compression", path);
        return NULL;
    }
    if (mode == TFR_WRITE_APPEND && fs_is_remote(path)) {
        snprintf(err, errlen, "%s: objects in a bucket cannot be appended to", path);
        return NULL;
    }
    TfrWriter *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    w->mode = mode;
    w->c = c;
    /* remote DIRECT files (event files) are uploaded whole at each flush: io/atomic_file.h */
    if (mode == TFR_WRITE_ATOMIC || fs_is_remote(path)) {
        w->af = atomic_file_open(path, err, errlen);
        if (w->af) w->f = atomic_file_stream(w->af);
    } else {
        w->f = fopen(path, mode == TFR_WRITE_APPEND ? "ab" : "wb");
        if (!w->f) snprintf(err, errlen, "%s: cannot open for writing: %s", path, strerror(errno));
    }
    if (!w->f) {
        free(w->path);
        free(w);
        return NULL;
    }
    if (c != TFR_NONE) {
        w->zout = malloc(ZCHUNK);
        if (!w->zout || deflateInit2(&w->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits(c), 8,
                                     Z_DEFAULT_STRATEGY) != Z_OK) {
            snprintf(err, errlen, "%s: cannot initialise zlib", path);
            tfr_writer_abort(w);
            return NULL;
        }
        w->z_live = 1;
    }
    return w;
}

/* Runs deflate over [p, p+n) with the given flush mode, writing all output to the file. */
static int deflate_out(TfrWriter *w, const void *p, size_t n, int flush) {
    w->z.next_in = (Bytef *)(uintptr_t)p;
    w->z.avail_in = (uInt)n;
    for (;;) {
        w->z.next_out = w->zout;
        w->z.avail_out = ZCHUNK;
        int rc = deflate(&w->z, flush);
        if (rc == Z_STREAM_ERROR) return wfail(w, "zlib deflate failed");
        size_t have = ZCHUNK - w->z.avail_out;
        if (have && fwrite(w->zout, 1, have, w->f) != have)
            return wfail(w, "write failed: %s", strerror(errno));
        if (flush == Z_FINISH ? rc == Z_STREAM_END : (w->z.avail_in == 0 && w->z.avail_out != 0))
            return 0;
    }
}

static int write_bytes(TfrWriter *w, const void *p, size_t n) {
    if (w->c != TFR_NONE) {
        /* avail_in is 32-bit: feed huge buffers in pieces */
        const uint8_t *b = p;
        while (n > 0) {
            size_t piece = n > (1u << 30) ? (1u << 30) : n;
            if (deflate_out(w, b, piece, Z_NO_FLUSH)) return -1;
            b += piece;
            n -= piece;
        }
        return 0;
    }
    if (n && fwrite(p, 1, n, w->f) != n) return wfail(w, "write failed: %s", strerror(errno));
    return 0;
}

int tfr_writer_write(TfrWriter *w, const void *data, size_t n) {
    if (w->failed) return -1;
    if ((uint64_t)n >= TFR_MAX_RECORD_LEN) return wfail(w, "record of %zu bytes is too large", n);
    uint8_t header[12], trailer[4];
    put_le32(trailer, tfr_frame_header(header, data, n));
    if (write_bytes(w, header, 12) || write_bytes(w, data, n) || write_bytes(w, trailer, 4)) return -1;
    w->records++;
    return 0;
}

int tfr_writer_flush(TfrWriter *w) {
    if (w->failed) return -1;
    if (w->c != TFR_NONE && deflate_out(w, NULL, 0, Z_SYNC_FLUSH)) return -1;
    if (fflush(w->f) != 0) return wfail(w, "write failed: %s", strerror(errno));
    if (w->af && w->mode == TFR_WRITE_DIRECT &&   /* a remote file readers follow */
        atomic_file_publish(w->af, w->error, sizeof w->error) != 0) {
        w->failed = 1;   /* the message names the file already */
        return -1;
    }
    return 0;
}

int tfr_writer_sync(TfrWriter *w) {
    if (tfr_writer_flush(w)) return -1;
    if (fsync(fileno(w->f)) != 0) return wfail(w, "fsync failed: %s", strerror(errno));
    return 0;
}

const char *tfr_writer_error(const TfrWriter *w) { return w->error; }
uint64_t tfr_writer_records(const TfrWriter *w) { return w->records; }

static void writer_free(TfrWriter *w) {
    if (w->z_live) deflateEnd(&w->z);
    free(w->zout);
    free(w->path);
    free(w);
}

int tfr_writer_close(TfrWriter *w, char *err, size_t errlen) {
    if (!w->failed && w->c != TFR_NONE) deflate_out(w, NULL, 0, Z_FINISH);
    if (w->failed) {
        snprintf(err, errlen, "%s", w->error);
        tfr_writer_abort(w);
        return -1;
    }
    int rc = 0;
    if (w->af) {
        rc = atomic_file_commit(w->af, err, errlen);
    } else {
        if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
            snprintf(err, errlen, "%s: write failed: %s", w->path, strerror(errno));
            rc = -1;
        }
        if (fclose(w->f) != 0 && rc == 0) {
            snprintf(err, errlen, "%s: close failed: %s", w->path, strerror(errno));
            rc = -1;
        }
    }
    writer_free(w);
    return rc;
}

void tfr_writer_abort(TfrWriter *w) {
    if (!w) return;
    if (w->af) atomic_file_abort(w->af);
    else if (w->f) fclose(w->f);
    writer_free(w);
}

/* ---- reader ------------------------------------------------------------------------------ */

enum { WINDOW = 1 << 20, RAW_CHUNK = 256 * 1024 };

struct TfrReader {
    char *path;
    FsReader *in;          /* local file or object (io/fs.h) */
    TfrCompression c;
    int64_t file_size;     /* -1 when not a regular file */
    /* compressed input (GZIP/ZLIB) */
    z_stream z;
    int z_live, z_end;     /* inflater set up; stream finished */
    uint8_t *raw;
    size_t raw_len;        /* bytes at raw[0..) not yet given to inflate (initial peek) */
    int raw_eof;
    /* decompressed window: bytes [pos, end) are unread; buf[0] is stream offset `base` */
    uint8_t *buf;
    size_t cap, pos, end;
    uint64_t base;
    int eof;
    uint64_t next_index, index, offset;
    char error[512];
    char stream_error[256];   /* why a compressed stream stopped early (see stream_fail) */
};

static int rfail(TfrReader *r, uint64_t offset, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(r->error, sizeof r->error, "%s: record %llu at offset %llu%s: ", r->path,
                     (unsigned long long)r->next_index, (unsigned long long)offset,
                     r->c == TFR_NONE ? "" : " (uncompressed)");
    vsnprintf(r->error + n, sizeof r->error - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* A compressed stream that is corrupt or ends early. The window is filled ahead of the records,
 * so the record being read when inflate fails is not the one that holds the damage: the bytes
 * inflated before it are still records, and tfr_reader_next reports this when a record needs
 * bytes past it, naming that record. Ends the input (returns 0, as fill's success). */
static int stream_fail(TfrReader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->stream_error, sizeof r->stream_error, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof r->stream_error)
        snprintf(r->stream_error + n, sizeof r->stream_error - (size_t)n,
                 " (after uncompressed byte %llu)", (unsigned long long)(r->base + r->end));
    r->eof = 1;
    return 0;
}

static ssize_t read_full(FsReader *in, uint8_t *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = fs_reader_read(in, p + got, n - got);
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* A 2-byte zlib header: deflate method, window <= 32K, check bits. */
static int is_zlib_header(const uint8_t *p) {
    return (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 && ((p[0] << 8) | p[1]) % 31 == 0;
}

TfrReader *tfr_reader_open(const char *path, TfrCompression c, char *err, size_t errlen) {
    TfrReader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path)) || !(r->raw = malloc(RAW_CHUNK)) ||
        !(r->buf = malloc(WINDOW))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    r->cap = WINDOW;
    char why[1024];
    r->in = fs_reader_open(path, why, sizeof why);
    if (!r->in) {
        if (errno == EISDIR) snprintf(err, errlen, "%s: is a directory", path);
        else snprintf(err, errlen, "%s: cannot open: %s", path, why);
        goto fail;
    }
    r->file_size = fs_reader_size(r->in);
    /* Peek at the start to detect the format. */
    ssize_t got = read_full(r->in, r->raw, RAW_CHUNK);
    if (got < 0) {
        snprintf(err, errlen, "%s: read failed: %s", path, fs_reader_error(r->in));
        goto fail;
    }
    r->raw_len = (size_t)got;
    r->raw_eof = (size_t)got < RAW_CHUNK;
    if (c == TFR_AUTO) {
        const uint8_t *p = r->raw;
        if (got >= 12 && crc32c_mask(crc32c(p, 8)) == get_le32(p + 8)) c = TFR_NONE;
        else if (got >= 2 && p[0] == 0x1f && p[1] == 0x8b) c = TFR_GZIP;
        else if (got >= 2 && is_zlib_header(p)) c = TFR_ZLIB;
        else c = TFR_NONE;
    }
    r->c = c;
    if (c == TFR_NONE) {
        memcpy(r->buf, r->raw, r->raw_len);   /* RAW_CHUNK <= WINDOW */
        r->end = r->raw_len;
        r->raw_len = 0;
        r->eof = r->raw_eof;
    } else {
        if (inflateInit2(&r->z, window_bits(c)) != Z_OK) {
            snprintf(err, errlen, "%s: cannot initialise zlib", path);
            goto fail;
        }
        r->z_live = 1;
        r->z.next_in = r->raw;
        r->z.avail_in = (uInt)r->raw_len;
    }
    return r;
fail:
    tfr_reader_close(r);
    return NULL;
}

/* Reads the next chunk of compressed input into raw and hands it to zlib. The count read (0 at
 * the end of the file), -1 on a read error (r->error set). */
static ssize_t refill_raw(TfrReader *r) {
    ssize_t k = read_full(r->in, r->raw, RAW_CHUNK);
    if (k < 0) return rfail(r, r->base + r->end, "read failed: %s", fs_reader_error(r->in));
    r->raw_eof = k < RAW_CHUNK;
    r->z.next_in = r->raw;
    r->z.avail_in = (uInt)k;
    return k;
}

/* Appends decompressed or raw bytes at buf[end..cap). Sets eof at end of input. -1 on a read or
 * stream error (r->error set). */
static int fill(TfrReader *r) {
    if (r->c == TFR_NONE) {
        ssize_t k = fs_reader_read(r->in, r->buf + r->end, r->cap - r->end);
        if (k < 0) return rfail(r, r->base + r->pos, "read failed: %s", fs_reader_error(r->in));
        if (k == 0) r->eof = 1;
        r->end += (size_t)k;
        return 0;
    }
    while (r->end < r->cap && !r->eof) {
        if (r->z_end) {
            /* gzip allows several members back to back: continue with the next one, if any */
            if (r->z.avail_in == 0 && !r->raw_eof && refill_raw(r) < 0) return -1;
            if (r->z.avail_in == 0 || r->c != TFR_GZIP) {
                if (r->z.avail_in != 0)
                    return stream_fail(r, "trailing garbage after the zlib stream");
                r->eof = 1;
                break;
            }
            inflateReset(&r->z);
            r->z_end = 0;
        }
        if (r->z.avail_in == 0) {
            ssize_t k = r->raw_eof ? 0 : refill_raw(r);
            if (k < 0) return -1;
            if (k == 0)
                return stream_fail(r, "%s stream ends early (file truncated?)",
                                   tfr_compression_name(r->c));
        }
        r->z.next_out = r->buf + r->end;
        r->z.avail_out = (uInt)(r->cap - r->end);
        int rc = inflate(&r->z, Z_NO_FLUSH);
        r->end = (size_t)(r->z.next_out - r->buf);
        if (rc == Z_STREAM_END) {
            r->z_end = 1;
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return stream_fail(r, "%s stream is corrupt: %s", tfr_compression_name(r->c),
                               r->z.msg ? r->z.msg : "inflate failed");
        }
        if (r->end > 0 && rc == Z_OK) break;   /* got some bytes: let the caller look */
    }
    return 0;
}

/* Makes at least n unread bytes available, or as many as the input has (check r->end - r->pos).
 * The window grows only when it is full of real data, so memory follows real record sizes. */
static int ensure(TfrReader *r, size_t n) {
    while (r->end - r->pos < n && !r->eof) {
        if (r->end == r->cap) {
            if (r->pos > 0) {   /* slide unread bytes to the front */
                memmove(r->buf, r->buf + r->pos, r->end - r->pos);
                r->base += r->pos;
                r->end -= r->pos;
                r->pos = 0;
            } else {
                size_t cap = r->cap * 2;
                uint8_t *nb = realloc(r->buf, cap);
                if (!nb) return rfail(r, r->base, "out of memory for a record of %zu bytes", n);
                r->buf = nb;
                r->cap = cap;
            }
        }
        if (fill(r)) return -1;
    }
    return 0;
}

int tfr_reader_next(TfrReader *r, const uint8_t **data, size_t *len) {
    if (r->error[0]) return -1;
    if (ensure(r, 12)) return -1;
    uint64_t off = r->base + r->pos;
    size_t avail = r->end - r->pos;
    if (avail < 12 && r->stream_error[0]) return rfail(r, off, "%s", r->stream_error);
    if (avail == 0) return 0;
    if (avail < 12)
        return rfail(r, off, "truncated record: only %zu of the 12 header bytes before end of file",
                     avail);
    const uint8_t *h = r->buf + r->pos;
    uint64_t n = get_le64(h);
    uint32_t stored = get_le32(h + 8), computed = crc32c_mask(crc32c(h, 8));
    if (stored != computed)
        return rfail(r, off, "corrupted record: length CRC mismatch (stored 0x%08x, computed 0x%08x)",
                     stored, computed);
    if (n >= TFR_MAX_RECORD_LEN)
        return rfail(r, off, "corrupted record: absurd length %llu", (unsigned long long)n);
    if (r->c == TFR_NONE && r->file_size >= 0 && off + 12 + n + 4 > (uint64_t)r->file_size)
        return rfail(r, off, "truncated record: length %llu but only %lld bytes follow the header",
                     (unsigned long long)n, (long long)((uint64_t)r->file_size - off - 12));
    size_t total = 12 + (size_t)n + 4;
    if (ensure(r, total)) return -1;
    if (r->end - r->pos < total && r->stream_error[0]) return rfail(r, off, "%s", r->stream_error);
    if (r->end - r->pos < total)
        return rfail(r, off, "truncated record: length %llu but only %zu bytes follow the header",
                     (unsigned long long)n, r->end - r->pos - 12);
    const uint8_t *d = r->buf + r->pos + 12;
    stored = get_le32(d + n);
    computed = crc32c_mask(crc32c(d, (size_t)n));
    if (stored != computed)
        return rfail(r, off, "corrupted record: data CRC mismatch (stored 0x%08x, computed 0x%08x)",
                     stored, computed);
    r->pos += total;
    r->index = r->next_index++;
    r->offset = off;
    *data = d;
    *len = (size_t)n;
    return 1;
}

const char *tfr_reader_error(const TfrReader *r) { return r->error; }
TfrCompression tfr_reader_compression(const TfrReader *r) { return r->c; }
uint64_t tfr_reader_index(const TfrReader *r) { return r->index; }
uint64_t tfr_reader_offset(const TfrReader *r) { return r->offset; }
const char *tfr_reader_path(const TfrReader *r) { return r->path; }

void tfr_reader_close(TfrReader *r) {
    if (!r) return;
    if (r->z_live) inflateEnd(&r->z);
    fs_reader_close(r->in);
    free(r->raw);
    free(r->buf);
    free(r->path);
    free(r);
}

int64_t tfr_count_records(const char *path, TfrCompression c, char *err, size_t errlen) {
    TfrReader *r = tfr_reader_open(path, c, err, errlen);
    if (!r) return -1;
    const uint8_t *d;
    size_t n;
    int64_t count = 0;
    int rc;
    while ((rc = tfr_reader_next(r, &d, &n)) == 1) count++;
    if (rc < 0) {
        snprintf(err, errlen, "%s", tfr_reader_error(r));
        count = -1;
    }
    tfr_reader_close(r);
    return count;
}
