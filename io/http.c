/* http.c: HTTP requests with retry over libcurl (see http.h). */
#include "io/http.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void warn_stderr(const char *message) { fprintf(stderr, "WARNING: %s\n", message); }
static HttpWarnFn g_warn = warn_stderr;

void http_set_warn(HttpWarnFn fn) { g_warn = fn ? fn : warn_stderr; }

void http_warn(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_warn(msg);
}

int http_headers_addf(HttpHeaders *h, const char *fmt, ...) {
    if (h->n >= HTTP_MAX_HEADERS) return -1;
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(line = malloc((size_t)n + 1))) return -1;
    va_start(ap, fmt);
    vsnprintf(line, (size_t)n + 1, fmt, ap);
    va_end(ap);
    h->owned[h->n] = line;
    h->v[h->n++] = line;
    return 0;
}

void http_headers_free(HttpHeaders *h) {
    for (int i = 0; i < h->n; i++) free(h->owned[i]);
    memset(h, 0, sizeof *h);
}

void http_response_free(HttpResponse *resp) {
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

char *http_url_encode(const char *s, int keep_slash, char *out, size_t cap) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
                    *p == '~' || (keep_slash && *p == '/');
        if (n + (plain ? 1 : 3) >= cap) {
            if (cap) out[0] = 0;
            return out;
        }
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    if (cap) out[n] = 0;
    return out;
}

int http_range_answer(const HttpResponse *resp, int64_t off, size_t len, char *buf, size_t *got) {
    if (resp->status == 416) {
        *got = 0;
        return 1;
    }
    if (resp->status != 206 && resp->status != 200) return 0;
    size_t skip = resp->status == 200 ? (size_t)off : 0;
    size_t have = resp->body_len > skip ? resp->body_len - skip : 0;
    *got = have < len ? have : len;
    memcpy(buf, resp->body + skip, *got);
    return 1;
}

const char *http_body_excerpt(const HttpResponse *resp, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; resp->body && i < resp->body_len && n + 1 < cap && i < 200; i++) {
        char c = resp->body[i];
        out[n++] = (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    if (cap) out[n] = 0;
    return out;
}

/* ---- one connection cache for the process --------------------------------------------------- */

static CURL *g_curl;

static CURL *curl_handle(void) {
    if (!g_curl) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        g_curl = curl_easy_init();
    }
    return g_curl;
}

static int env_int(const char *name, int def, int min, int max) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < min || v > max) return def;
    return (int)v;
}

typedef struct {
    HttpResponse *resp;
    size_t cap;
    int oom;
} Sink;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ctx) {
    Sink *s = ctx;
    HttpResponse *r = s->resp;
    size_t n = size * nmemb;
    if (r->body_len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b) {
            s->oom = 1;
            return 0;   /* aborts the transfer */
        }
        r->body = b;
        s->cap = cap;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return n;
}

/* Copies the value of header line `line` into out when its name is `name`. */
static void take_header(const char *line, size_t n, const char *name, char *out, size_t cap) {
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return;
    const char *v = line + k + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, len);
    out[len] = 0;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ctx) {
    HttpResponse *r = ctx;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {   /* a new response (after 100 Continue) */
        r->location[0] = r->etag[0] = r->range[0] = r->content_range[0] = 0;
        r->content_length[0] = 0;
        return n;
    }
    take_header(p, n, "Location", r->location, sizeof r->location);
    take_header(p, n, "ETag", r->etag, sizeof r->etag);
    take_header(p, n, "Range", r->range, sizeof r->range);
    take_header(p, n, "Content-Range", r->content_range, sizeof r->content_range);
    take_header(p, n, "Content-Length", r->content_length, sizeof r->content_length);
    return n;
}

static int retryable_status(long s) {
    return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

static int retryable_curl(CURLcode c) {
    return c != CURLE_URL_MALFORMAT && c != CURLE_UNSUPPORTED_PROTOCOL &&
           c != CURLE_PEER_FAILED_VERIFICATION && c != CURLE_SSL_CACERT_BADFILE &&
           c != CURLE_OUT_OF_MEMORY && c != CURLE_ABORTED_BY_CALLBACK &&
           c != CURLE_WRITE_ERROR;
}

static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* One attempt. Returns the CURLcode; resp->status and body are filled. */
static CURLcode attempt(const HttpRequest *req, const HttpHeaders *auth, HttpResponse *resp,
                        Sink *sink, char *curl_err) {
    CURL *c = curl_handle();
    curl_easy_reset(c);
    struct curl_slist *list = NULL;
    int is_head = strcmp(req->method, "HEAD") == 0;
    for (int i = 0; i < req->headers.n; i++) list = curl_slist_append(list, req->headers.v[i]);
    for (int i = 0; i < auth->n; i++) list = curl_slist_append(list, auth->v[i]);
    list = curl_slist_append(list, "Expect:");          /* no 100-continue round trip */
    int typed = 0;
    for (int i = 0; i < req->headers.n; i++)
        if (strncasecmp(req->headers.v[i], "Content-Type:", 13) == 0) typed = 1;
    if (req->body && !typed) list = curl_slist_append(list, "Content-Type: application/octet-stream");
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, req->connect_timeout_s ? req->connect_timeout_s : 10L);
    /* a stalled connection (no byte for 60 s) counts as dropped */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (req->fresh_connection) curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    if (is_head) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (req->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
        if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");     /* Content-Length: 0 */
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        }
    }
    curl_err[0] = 0;
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_slist_free_all(list);
    return rc;
}

int http_perform(const HttpRequest *req, HttpResponse *resp, char *err, size_t errlen) {
    memset(resp, 0, sizeof *resp);
    if (!curl_handle()) {
        snprintf(err, errlen, "%s: cannot initialise libcurl", req->what);
        return -1;
    }
    int max_retries = req->max_retries >= 0 ? req->max_retries : env_int("CNN_FS_RETRIES", 7, 0, 100);
    double base_ms = env_int("CNN_FS_RETRY_BASE_MS", 200, 1, 60000);
    for (int k = 0;; k++) {
        HttpHeaders auth = {0};
        if (req->authorize && req->authorize(req->auth_ctx, req, &auth, err, errlen) != 0) {
            http_headers_free(&auth);
            return -1;
        }
        http_response_free(resp);
        memset(resp, 0, sizeof *resp);
        resp->attempts = k + 1;
        Sink sink = {.resp = resp};
        char curl_err[CURL_ERROR_SIZE];
        CURLcode rc = attempt(req, &auth, resp, &sink, curl_err);
        http_headers_free(&auth);
        if (sink.oom) {
            snprintf(err, errlen, "%s: out of memory for the response", req->what);
            http_response_free(resp);
            return -1;
        }
        char why[CURL_ERROR_SIZE + 64];
        if (rc != CURLE_OK) {
            snprintf(why, sizeof why, "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
            if (!retryable_curl(rc) || k >= max_retries) {
                snprintf(err, errlen, "%s: %s %s failed%s: %s", req->what, req->method,
                         req->url, k ? " after retries" : "", why);
                http_response_free(resp);
                return -1;
            }
        } else if (retryable_status(resp->status) && k < max_retries) {
            char excerpt[256];
            snprintf(why, sizeof why, "HTTP %ld %s", resp->status,
                     http_body_excerpt(resp, excerpt, 96));
        } else {
            if (!resp->body) {   /* callers may treat the body as a string */
                resp->body = calloc(1, 1);
                if (!resp->body) {
                    snprintf(err, errlen, "%s: out of memory", req->what);
                    return -1;
                }
            }
            return 0;
        }
        double delay = base_ms * (double)(1u << (k < 7 ? k : 7));
        if (delay > 16000) delay = 16000;
        delay *= 0.5 + 0.5 * ((double)rand() / RAND_MAX);   /* jitter */
        http_warn("%s: %s %s: retrying in %.2f s (retry %d of %d)", req->what, req->method, why,
                  delay / 1000, k + 1, max_retries);
        sleep_ms(delay);
    }
}
