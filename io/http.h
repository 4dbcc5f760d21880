/* http.h: one HTTP request over libcurl, retried with backoff, for the object-store back ends
 * (io/fs_gcs.c, io/fs_s3.c) and their credential sources.
 *
 * A request is retried when the connection fails or drops (any transport error except a bad URL
 * or a TLS verification failure) and on HTTP 408, 429, 500, 502, 503, 504, with exponential
 * backoff and jitter: delay_k = base * 2^k (capped at 16 s), base CNN_FS_RETRY_BASE_MS (default
 * 200 ms), at most CNN_FS_RETRIES retries (default 7). Each retry prints one line on stderr
 * naming `what` (never a header: tokens and signatures stay out of logs). Bodies are buffered in
 * memory whole, so a retried attempt starts clean (callers keep bodies bounded: ranged reads,
 * upload parts). `authorize` runs before every attempt, so each one is freshly signed.
 *
 * Not thread-safe: one connection cache for the process, used from one thread at a time.
 */
#ifndef IO_HTTP_H
#define IO_HTTP_H

#include <stddef.h>
#include <stdint.h>

enum { HTTP_MAX_HEADERS = 24 };

typedef struct {
    const char *v[HTTP_MAX_HEADERS];   /* "Name: value" */
    char *owned[HTTP_MAX_HEADERS];     /* those added by http_headers_addf (freed by _free) */
    int n;
} HttpHeaders;

/* Appends a formatted header line. 0 ok, -1 when full or out of memory. */
int http_headers_addf(HttpHeaders *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void http_headers_free(HttpHeaders *h);

typedef struct HttpRequest HttpRequest;
struct HttpRequest {
    const char *what;          /* what errors and retry lines name, e.g. "s3://bucket/key" */
    const char *method;        /* GET HEAD PUT POST DELETE */
    const char *url;
    HttpHeaders headers;       /* sent on every attempt */
    const void *body;          /* request body (NULL: none) */
    size_t body_len;
    /* Called before each attempt: adds authorization headers to `auth` (emptied first).
     * 0 ok, -1 with err set (the request fails without retrying). */
    int (*authorize)(void *ctx, const HttpRequest *req, HttpHeaders *auth, char *err,
                     size_t errlen);
    void *auth_ctx;
    long connect_timeout_s;    /* 0: 10 s */
    int max_retries;           /* -1: the default (CNN_FS_RETRIES); 0: one attempt */
    int fresh_connection;      /* 1: a new connection (libcurl re-sends a request silently when a
                                  reused connection dies before any answer; a protocol that must
                                  see every failure, like a resumable upload's chunks, asks for 1) */
};

typedef struct {
    long status;               /* HTTP status of the last attempt */
    char *body;                /* malloc'd, NUL-terminated (free with http_response_free) */
    size_t body_len;
    char location[2048];       /* response headers the back ends need ("" when absent) */
    char etag[256];
    char range[128];
    char content_range[128];
    char content_length[32];
    int attempts;
} HttpResponse;

/* Performs req (with retries). 0: a response arrived (any status: the caller judges it);
 * -1: no usable response (transport failure after the retries, or authorize failed), err set. */
int http_perform(const HttpRequest *req, HttpResponse *resp, char *err, size_t errlen);
void http_response_free(HttpResponse *resp);

/* Warnings of the cloud-storage requests (a retry): by default "WARNING: <message>" on stderr; a
 * program with its own log (the trainer's TF-style lines) sets its function. Not thread-safe:
 * set it before any request. */
typedef void (*HttpWarnFn)(const char *message);
void http_set_warn(HttpWarnFn fn);
void http_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Percent-encodes s into out (cap bytes; "" when it does not fit): every byte except
 * A-Z a-z 0-9 - . _ ~ and, when keep_slash, '/'. Returns out. */
char *http_url_encode(const char *s, int keep_slash, char *out, size_t cap);

/* The answer to a GET of bytes [off, off + len) with "Range: bytes=off-(off+len-1)": 206 (the
 * range), 200 (the server ignored the range and sent the whole object) or 416 (off is at or past
 * the end). For those: the bytes into buf, *got of them (< len only at the end), and 1; for any
 * other status 0 (the caller reports it). */
int http_range_answer(const HttpResponse *resp, int64_t off, size_t len, char *buf, size_t *got);

/* The first 200 characters of a response body with control characters flattened, for errors. */
const char *http_body_excerpt(const HttpResponse *resp, char *out, size_t cap);

#endif
