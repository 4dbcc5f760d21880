/* fs_gcs.c: gs://bucket/object on Cloud Storage (JSON API), or on an emulator at
 * STORAGE_EMULATOR_HOST ("http://host:port" or "host:port").
 *
 *   metadata  GET    /storage/v1/b/B/o/O                      (O percent-encoded, '/' too)
 *   read      GET    /storage/v1/b/B/o/O?alt=media            Range: bytes=a-b
 *   list      GET    /storage/v1/b/B/o?prefix=P[&delimiter=/][&pageToken=T]
 *   upload    POST   /upload/storage/v1/b/B/o?uploadType=media&name=O       (<= part size)
 *             POST   /upload/storage/v1/b/B/o?uploadType=resumable&name=O   -> Location, then
 *             PUT    Location, Content-Range: bytes a-b/total per chunk (308 until the last);
 *                    after a failed chunk, PUT "bytes * /total" asks how much arrived
 *   copy      POST   /storage/v1/b/B/o/O/rewriteTo/b/B2/o/O2  (until done)
 *   delete    DELETE /storage/v1/b/B/o/O
 * Credentials: io/gcs_auth.h.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/fs_backend.h"
#include "io/gcs_auth.h"
#include "io/http.h"

static const char *gcs_base(void) {
    static char base[512];
    if (!base[0]) {
        const char *emu = getenv("STORAGE_EMULATOR_HOST");
        if (emu && *emu) {
            snprintf(base, sizeof base, "%s%s", strstr(emu, "://") ? "" : "http://", emu);
            size_t n = strlen(base);
            while (n > 0 && base[n - 1] == '/') base[--n] = 0;
        } else {
            snprintf(base, sizeof base, "https://storage.googleapis.com");
        }
    }
    return base;
}

static int gcs_authorize(void *ctx, const HttpRequest *req, HttpHeaders *auth, char *err,
                         size_t errlen) {
    (void)ctx;
    static char token[4096];
    char why[1024];
    if (gcs_auth_token(token, sizeof token, NULL, 0, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: no access token: %s", req->what, why);
        return -1;
    }
    if (token[0] && http_headers_addf(auth, "Authorization: Bearer %s", token)) {
        snprintf(err, errlen, "%s: out of memory", req->what);
        return -1;
    }
    return 0;
}

/* One request; header may be NULL. 0: a response, -1: transport failure. */
static int gcs_request(const char *method, const char *url, const void *body, size_t n,
                       const char *header, const char *header2, int max_retries, const char *what,
                       HttpResponse *resp, char *err, size_t errlen) {
    /* max_retries 0: the caller handles every failure itself (on a fresh connection) */
    HttpRequest req = {.what = what, .method = method, .url = url, .body = body, .body_len = n,
                       .authorize = gcs_authorize, .max_retries = max_retries,
                       .fresh_connection = max_retries == 0};
    if ((header && http_headers_addf(&req.headers, "%s", header)) ||
        (header2 && http_headers_addf(&req.headers, "%s", header2))) {
        http_headers_free(&req.headers);
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    int rc = http_perform(&req, resp, err, errlen);
    if (rc == 0 && resp->status == 401) {   /* a token revoked or expired early: a new one, once */
        char token[8], ignore[256];
        if (gcs_auth_token(token, sizeof token, NULL, 0, ignore, sizeof ignore) == 0 && token[0]) {
            gcs_auth_invalidate();
            http_response_free(resp);
            rc = http_perform(&req, resp, err, errlen);
        }
    }
    http_headers_free(&req.headers);
    return rc;
}

/* An error message for an unexpected answer, naming the object and the bucket. */
static int gcs_fail(const HttpResponse *resp, const char *what, const char *bucket,
                    const char *doing, int *errno_out, char *err, size_t errlen) {
    char msg[512] = "";
    cJSON *j = resp->body ? cJSON_Parse(resp->body) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (cJSON_IsString(m)) snprintf(msg, sizeof msg, "%s", m->valuestring);
    else http_body_excerpt(resp, msg, sizeof msg);
    cJSON_Delete(j);
    int eno = EIO;
    if (resp->status == 401 || resp->status == 403) {
        char token[8], source[1200] = "?", ignore[256];
        gcs_auth_token(token, sizeof token, source, sizeof source, ignore, sizeof ignore);
        snprintf(err, errlen, "%s: %s: access to bucket '%s' denied (HTTP %ld%s%s); "
                 "credentials: %s", what, doing, bucket, resp->status, msg[0] ? ": " : "", msg,
                 source);
        eno = EACCES;
    } else {
        snprintf(err, errlen, "%s: %s: Cloud Storage answered HTTP %ld%s%s", what, doing,
                 resp->status, msg[0] ? ": " : "", msg);
    }
    if (errno_out) *errno_out = eno;
    return -1;
}

static void object_url(char *out, size_t cap, const char *bucket, const char *key,
                       const char *suffix) {
    char ebucket[600], ekey[3200];
    snprintf(out, cap, "%s/storage/v1/b/%s/o/%s%s", gcs_base(),
             http_url_encode(bucket, 0, ebucket, sizeof ebucket),
             http_url_encode(key, 0, ekey, sizeof ekey), suffix);
}

static int gcs_head(const char *bucket, const char *key, int64_t *size, int *errno_out, char *err,
                    size_t errlen) {
    char what[3000], url[8192];
    snprintf(what, sizeof what, "gs://%s/%s", bucket, key);
    object_url(url, sizeof url, bucket, key, "");
    HttpResponse resp;
    if (gcs_request("GET", url, NULL, 0, NULL, NULL, -1, what, &resp, err, errlen)) {
        *errno_out = EIO;
        return -1;
    }
    int rc;
    if (resp.status == 200) {
        cJSON *j = cJSON_Parse(resp.body);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "size");   /* a decimal string */
        rc = cJSON_IsString(s) ? 1 : cJSON_IsNumber(s) ? 1 : -1;
        if (rc == 1) *size = cJSON_IsString(s) ? strtoll(s->valuestring, NULL, 10)
                                                : (int64_t)s->valuedouble;
        else snprintf(err, errlen, "%s: object metadata without a size", what);
        cJSON_Delete(j);
    } else if (resp.status == 404) {
        rc = 0;
    } else {
        rc = gcs_fail(&resp, what, bucket, "metadata", errno_out, err, errlen);
    }
    http_response_free(&resp);
    return rc;
}

static int gcs_read(const char *bucket, const char *key, int64_t off, size_t len, char *buf,
                    size_t *got, char *err, size_t errlen) {
    char what[3000], url[8192], range[80];
    snprintf(what, sizeof what, "gs://%s/%s", bucket, key);
    object_url(url, sizeof url, bucket, key, "?alt=media");
    snprintf(range, sizeof range, "Range: bytes=%lld-%lld", (long long)off,
             (long long)off + (long long)len - 1);
    HttpResponse resp;
    if (gcs_request("GET", url, NULL, 0, range, NULL, -1, what, &resp, err, errlen)) return -1;
    int rc = http_range_answer(&resp, off, len, buf, got)
                 ? 0 : gcs_fail(&resp, what, bucket, "download", NULL, err, errlen);
    http_response_free(&resp);
    return rc;
}

static int gcs_list(const char *bucket, const char *prefix, int delimited, FsListFn fn, void *ctx,
                    int *errno_out, char *err, size_t errlen) {
    char what[3000], ebucket[600], eprefix[3200], token[2048] = "", etoken[6200], url[10000];
    snprintf(what, sizeof what, "gs://%s/%s (listing)", bucket, prefix);
    http_url_encode(bucket, 0, ebucket, sizeof ebucket);
    http_url_encode(prefix, 0, eprefix, sizeof eprefix);
    for (;;) {
        char page[32] = "";
        if (fs_list_page()) snprintf(page, sizeof page, "&maxResults=%d", fs_list_page());
        snprintf(url, sizeof url, "%s/storage/v1/b/%s/o?prefix=%s%s%s%s%s", gcs_base(), ebucket,
                 eprefix, delimited ? "&delimiter=%2F" : "", page, token[0] ? "&pageToken=" : "",
                 token[0] ? http_url_encode(token, 0, etoken, sizeof etoken) : "");
        HttpResponse resp;
        if (gcs_request("GET", url, NULL, 0, NULL, NULL, -1, what, &resp, err, errlen)) {
            *errno_out = EIO;
            return -1;
        }
        if (resp.status != 200) {
            int rc;
            if (resp.status == 404) {
                snprintf(err, errlen, "%s: bucket '%s' does not exist", what, bucket);
                *errno_out = ENOENT;
                rc = -1;
            } else {
                rc = gcs_fail(&resp, what, bucket, "list", errno_out, err, errlen);
            }
            http_response_free(&resp);
            return rc;
        }
        cJSON *j = cJSON_Parse(resp.body);
        http_response_free(&resp);
        if (!j) {
            snprintf(err, errlen, "%s: the listing is not JSON", what);
            *errno_out = EIO;
            return -1;
        }
        int stop = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(j, "items")) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
            const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "size");
            if (!cJSON_IsString(name)) continue;
            int64_t sz = cJSON_IsString(size) ? strtoll(size->valuestring, NULL, 10) : 0;
            if ((stop = fn(ctx, name->valuestring, 0, sz)) != 0) break;
        }
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(j, "prefixes")) {
            if (stop) break;
            if (cJSON_IsString(item)) stop = fn(ctx, item->valuestring, 1, 0);
        }
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "nextPageToken");
        int more = cJSON_IsString(next) && next->valuestring[0] &&
                   strlen(next->valuestring) < sizeof token;
        if (more) snprintf(token, sizeof token, "%s", next->valuestring);
        cJSON_Delete(j);
        int go_on = fs_list_page_end(stop, more, what, errno_out, err, errlen);
        if (go_on <= 0) return go_on;
    }
}

/* The resumable protocol: chunks of `part` bytes; after a failed chunk, ask the session how much
 * arrived and go on from there (with backoff), so a dropped connection never duplicates or
 * loses bytes. The object exists only after the last chunk. */
static int gcs_resumable(const char *bucket, const char *key, const char *what, FILE *src,
                         int64_t size, char *buf, size_t part, char *err, size_t errlen) {
    char url[8192], ebucket[600], ekey[3200], header[128];
    snprintf(url, sizeof url, "%s/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s",
             gcs_base(), http_url_encode(bucket, 0, ebucket, sizeof ebucket),
             http_url_encode(key, 0, ekey, sizeof ekey));
    snprintf(header, sizeof header, "X-Upload-Content-Length: %lld", (long long)size);
    HttpResponse resp;
    if (gcs_request("POST", url, NULL, 0, header, NULL, -1, what, &resp, err, errlen)) return -1;
    if (resp.status != 200 || !resp.location[0]) {
        int rc = gcs_fail(&resp, what, bucket, "starting a resumable upload", NULL, err, errlen);
        http_response_free(&resp);
        return rc;
    }
    char session[2048];
    snprintf(session, sizeof session, "%s", resp.location);
    http_response_free(&resp);
    int64_t off = 0;
    int failures = 0;
    const char *s = getenv("CNN_FS_RETRIES");
    int max_failures = s && *s ? atoi(s) : 7;
    for (;;) {
        size_t n = (size_t)(size - off < (int64_t)part ? size - off : (int64_t)part);
        char range[128];
        if (fseeko(src, (off_t)off, SEEK_SET) != 0 ||
            fs_read_part(src, buf, n, what, err, errlen))
            return -1;
        snprintf(range, sizeof range, "Content-Range: bytes %lld-%lld/%lld", (long long)off,
                 (long long)(off + (int64_t)n) - 1, (long long)size);
        int rc = gcs_request("PUT", session, buf, n, range, NULL, 0, what, &resp, err, errlen);
        if (rc == 0 && (resp.status == 200 || resp.status == 201)) {
            http_response_free(&resp);
            return 0;
        }
        if (rc == 0 && resp.status == 308 && off + (int64_t)n < size) {
            /* Range: bytes=0-N says what the session holds */
            const char *dash = strchr(resp.range, '-');
            off = dash ? strtoll(dash + 1, NULL, 10) + 1 : 0;
            http_response_free(&resp);
            failures = 0;
            continue;
        }
        /* 400 too: a chunk the session already holds (re-sent after a lost answer) */
        if (rc == 0 && resp.status != 308 && resp.status < 500 && resp.status != 429 &&
            resp.status != 408 && resp.status != 400) {
            rc = gcs_fail(&resp, what, bucket, "resumable upload", NULL, err, errlen);
            http_response_free(&resp);
            return rc;
        }
        if (rc == 0) http_response_free(&resp);
        if (++failures > max_failures) {
            if (rc == 0) snprintf(err, errlen, "%s: resumable upload: chunk at %lld failed %d "
                                  "times", what, (long long)off, failures);
            return -1;
        }
        /* ask how much arrived, after a backoff */
        struct timespec ts = {0, (long)(200000000L << (failures < 4 ? failures : 4))};
        nanosleep(&ts, NULL);
        http_warn("%s: resumable upload chunk at %lld failed: querying the session (retry %d "
                  "of %d)", what, (long long)off, failures, max_failures);
        snprintf(range, sizeof range, "Content-Range: bytes */%lld", (long long)size);
        if (gcs_request("PUT", session, "", 0, range, NULL, -1, what, &resp, err, errlen))
            return -1;
        if (resp.status == 200 || resp.status == 201) {
            http_response_free(&resp);
            return 0;
        }
        if (resp.status != 308) {
            rc = gcs_fail(&resp, what, bucket, "resumable upload status", NULL, err, errlen);
            http_response_free(&resp);
            return rc;
        }
        /* GCS keeps an unfinished upload in whole 256 KiB blocks; rounding down also copes with
         * emulators that answer "bytes=0-0" when they hold nothing */
        const char *dash = strchr(resp.range, '-');
        off = resp.range[0] && dash ? strtoll(dash + 1, NULL, 10) + 1 : 0;
        off -= off % (256 << 10);
        http_response_free(&resp);
    }
}

static int gcs_put(const char *bucket, const char *key, const char *what, const char *data,
                   size_t n, char *err, size_t errlen) {
    char url[8192], ebucket[600], ekey[3200];
    snprintf(url, sizeof url, "%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s",
             gcs_base(), http_url_encode(bucket, 0, ebucket, sizeof ebucket),
             http_url_encode(key, 0, ekey, sizeof ekey));
    HttpResponse resp;
    if (gcs_request("POST", url, data, n, NULL, NULL, -1, what, &resp, err, errlen)) return -1;
    int rc = resp.status == 200 ? 0 : gcs_fail(&resp, what, bucket, "upload", NULL, err, errlen);
    http_response_free(&resp);
    return rc;
}

static int gcs_copy(const char *src_bucket, const char *src_key, const char *dst_bucket,
                    const char *dst_key, char *err, size_t errlen) {
    char what[3000], url[16384], suffix[4200], edb[600], edk[3200];
    snprintf(what, sizeof what, "gs://%s/%s", dst_bucket, dst_key);
    snprintf(suffix, sizeof suffix, "/rewriteTo/b/%s/o/%s",
             http_url_encode(dst_bucket, 0, edb, sizeof edb),
             http_url_encode(dst_key, 0, edk, sizeof edk));
    char token[2048] = "", etoken[6200];
    for (;;) {
        object_url(url, 8192, src_bucket, src_key, suffix);
        if (token[0]) {
            size_t n = strlen(url);
            snprintf(url + n, sizeof url - n, "?rewriteToken=%s",
                     http_url_encode(token, 0, etoken, sizeof etoken));
        }
        HttpResponse resp;
        if (gcs_request("POST", url, NULL, 0, NULL, NULL, -1, what, &resp, err, errlen)) return -1;
        if (resp.status != 200) {
            char doing[3100];
            snprintf(doing, sizeof doing, "copy from gs://%s/%s", src_bucket, src_key);
            int rc = gcs_fail(&resp, what, dst_bucket, doing, NULL, err, errlen);
            http_response_free(&resp);
            return rc;
        }
        cJSON *j = cJSON_Parse(resp.body);
        http_response_free(&resp);
        const cJSON *done = cJSON_GetObjectItemCaseSensitive(j, "done");
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "rewriteToken");
        int finished = !j || !cJSON_IsBool(done) || cJSON_IsTrue(done);
        if (!finished && cJSON_IsString(tok) && strlen(tok->valuestring) < sizeof token)
            snprintf(token, sizeof token, "%s", tok->valuestring);
        else finished = 1;
        cJSON_Delete(j);
        if (finished) return 0;
    }
}

static int gcs_remove(const char *bucket, const char *key, char *err, size_t errlen) {
    char what[3000], url[8192];
    snprintf(what, sizeof what, "gs://%s/%s", bucket, key);
    object_url(url, sizeof url, bucket, key, "");
    HttpResponse resp;
    if (gcs_request("DELETE", url, NULL, 0, NULL, NULL, -1, what, &resp, err, errlen)) return -1;
    int rc = resp.status == 204 || resp.status == 200 || resp.status == 404
                 ? 0 : gcs_fail(&resp, what, bucket, "delete", NULL, err, errlen);
    http_response_free(&resp);
    return rc;
}

const FsBackend fs_gcs_backend = {"gs", gcs_head, gcs_read, gcs_list, gcs_put, gcs_resumable,
                                  gcs_copy, gcs_remove};
