/* fs_s3.c: s3://bucket/key on S3 or an S3-compatible store (REST API, SigV4-signed).
 *
 * Endpoint: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else S3_ENDPOINT (TF's name; https
 * unless S3_USE_HTTPS=0), with path-style addressing (http://host:port/bucket/key); without one,
 * https://bucket.s3.REGION.amazonaws.com/key (path-style when the bucket name has a dot).
 * Region: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1. Credentials: io/aws_credentials.h.
 * Uploads up to fs_part_bytes() are one PUT, larger ones a multipart upload (aborted on failure,
 * so no object appears). Listing: ListObjectsV2, all pages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "io/aws_credentials.h"
#include "io/fs_backend.h"
#include "io/http.h"
#include "io/sigv4.h"

/* ---- configuration (read once) -------------------------------------------------------------- */

static struct {
    int ready;
    char scheme[8];          /* "http" / "https" */
    char host[512];          /* host[:port] of a custom endpoint; "" for AWS */
    char region[64];
} g_s3;

static void s3_config(void) {
    if (g_s3.ready) return;
    g_s3.ready = 1;
    const char *r = getenv("AWS_REGION");
    if (!r || !*r) r = getenv("AWS_DEFAULT_REGION");
    snprintf(g_s3.region, sizeof g_s3.region, "%s", r && *r ? r : "us-east-1");
    const char *ep = getenv("AWS_ENDPOINT_URL_S3");
    if (!ep || !*ep) ep = getenv("AWS_ENDPOINT_URL");
    int tf_style = 0;
    if (!ep || !*ep) {
        ep = getenv("S3_ENDPOINT");
        tf_style = 1;
    }
    snprintf(g_s3.scheme, sizeof g_s3.scheme, "https");
    if (!ep || !*ep) return;
    const char *sep = strstr(ep, "://");
    if (sep) {
        snprintf(g_s3.scheme, sizeof g_s3.scheme, "%.*s", (int)(sep - ep), ep);
        ep = sep + 3;
    } else if (tf_style) {
        const char *https = getenv("S3_USE_HTTPS");
        if (https && (!strcmp(https, "0") || !strcasecmp(https, "false")))
            snprintf(g_s3.scheme, sizeof g_s3.scheme, "http");
    }
    snprintf(g_s3.host, sizeof g_s3.host, "%.*s", (int)strcspn(ep, "/"), ep);
}

/* ---- one signed request ----------------------------------------------------------------------- */

typedef struct {
    char host[600];
    char uri[4200];          /* percent-encoded path */
    const char *query;       /* canonical query ("" for none) */
    const char *copy_source; /* x-amz-copy-source or NULL */
    char payload_hash[65];
    AwsCredentials creds;
} S3Call;

static int s3_authorize(void *ctx, const HttpRequest *req, HttpHeaders *auth, char *err,
                        size_t errlen) {
    S3Call *c = ctx;
    if (aws_credentials_get(&c->creds, err, errlen) != 0) return -1;
    if (!c->creds.access_key[0]) return 0;   /* anonymous: public buckets */
    char date[20];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    const char *names[5] = {"host", "x-amz-content-sha256", "x-amz-date"};
    const char *values[5] = {c->host, c->payload_hash, date};
    int n = 3;
    if (c->creds.session_token[0]) {
        names[n] = "x-amz-security-token";
        values[n++] = c->creds.session_token;
    }
    if (c->copy_source) {
        names[n] = "x-amz-copy-source";
        values[n++] = c->copy_source;
    }
    SigV4Key key = {c->creds.access_key, c->creds.secret_key, g_s3.region, "s3"};
    char authz[1024];
    if (sigv4_authorization(&key, req->method, c->uri, c->query, names, values, n,
                            c->payload_hash, date, authz, sizeof authz) != 0) {
        snprintf(err, errlen, "%s: SigV4 signing failed", req->what);
        return -1;
    }
    int bad = http_headers_addf(auth, "x-amz-date: %s", date) ||
              http_headers_addf(auth, "x-amz-content-sha256: %s", c->payload_hash) ||
              http_headers_addf(auth, "Authorization: %s", authz);
    if (!bad && c->creds.session_token[0])
        bad = http_headers_addf(auth, "x-amz-security-token: %s", c->creds.session_token);
    if (bad) snprintf(err, errlen, "%s: out of memory", req->what);
    return bad ? -1 : 0;
}

/* Performs METHOD on bucket/key (key "" : the bucket) with a canonical query. 0: a response
 * (resp), -1: transport failure (err). */
static int s3_request(const char *method, const char *bucket, const char *key, const char *query,
                      const void *body, size_t n, const char *copy_source, const char *range,
                      const char *what, HttpResponse *resp, char *err, size_t errlen) {
    s3_config();
    S3Call c = {.query = query, .copy_source = copy_source};
    char ekey[3200];
    http_url_encode(key, 1, ekey, sizeof ekey);
    int path_style = g_s3.host[0] || strchr(bucket, '.');
    if (g_s3.host[0]) snprintf(c.host, sizeof c.host, "%s", g_s3.host);
    else if (path_style) snprintf(c.host, sizeof c.host, "s3.%s.amazonaws.com", g_s3.region);
    else snprintf(c.host, sizeof c.host, "%s.s3.%s.amazonaws.com", bucket, g_s3.region);
    /* the bucket itself (key ""): "/bucket" path-style, "/" virtual-hosted */
    if (path_style) snprintf(c.uri, sizeof c.uri, "/%s%s%s", bucket, key[0] ? "/" : "", ekey);
    else snprintf(c.uri, sizeof c.uri, "/%s", ekey);
    sha256_hex(body ? body : "", body ? n : 0, c.payload_hash);
    char url[5000];
    snprintf(url, sizeof url, "%s://%s%s%s%s", g_s3.scheme, c.host, c.uri, query[0] ? "?" : "",
             query);
    HttpRequest req = {.what = what, .method = method, .url = url, .body = body, .body_len = n,
                       .authorize = s3_authorize, .auth_ctx = &c, .max_retries = -1};
    int rc = 0;
    if (range && http_headers_addf(&req.headers, "Range: %s", range)) rc = -1;
    if (copy_source && http_headers_addf(&req.headers, "x-amz-copy-source: %s", copy_source))
        rc = -1;
    if (rc) snprintf(err, errlen, "%s: out of memory", what);
    else rc = http_perform(&req, resp, err, errlen);
    /* temporary credentials that expired early: look them up again, once */
    if (rc == 0 && (resp->status == 400 || resp->status == 403) &&
        strstr(resp->body, "<Code>ExpiredToken</Code>")) {
        aws_credentials_invalidate();
        http_response_free(resp);
        rc = http_perform(&req, resp, err, errlen);
    }
    http_headers_free(&req.headers);
    return rc;
}

/* ---- XML answers ------------------------------------------------------------------------------ */

/* The text of the first <tag>...</tag> in [p, end), entities decoded, into out. Returns the
 * position after the closing tag, NULL when absent. */
static const char *xml_text(const char *p, const char *end, const char *tag, char *out,
                            size_t cap) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = strstr(p, open);
    if (!a || a >= end) return NULL;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b || b > end) return NULL;
    size_t n = 0;
    for (const char *s = a; s < b && n + 1 < cap;) {
        static const struct { const char *ent; char c; } ents[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        int done = 0;
        if (*s == '&') {
            for (size_t i = 0; i < 5 && !done; i++) {
                size_t k = strlen(ents[i].ent);
                if (strncmp(s, ents[i].ent, k) == 0) {
                    out[n++] = ents[i].c;
                    s += k;
                    done = 1;
                }
            }
            if (!done && s[1] == '#') {   /* &#NN; (ASCII only in keys we write) */
                char *e;
                long v = s[2] == 'x' ? strtol(s + 3, &e, 16) : strtol(s + 2, &e, 10);
                if (*e == ';' && v > 0 && v < 128) {
                    out[n++] = (char)v;
                    s = e + 1;
                    done = 1;
                }
            }
        }
        if (!done) out[n++] = *s++;
    }
    out[n] = 0;
    return b + strlen(close);
}

/* An error message for a non-2xx answer, naming the object and the bucket. */
static int s3_fail(const HttpResponse *resp, const char *what, const char *bucket,
                   const char *doing, int *errno_out, char *err, size_t errlen) {
    char code[128] = "", msg[512] = "";
    const char *end = resp->body ? resp->body + resp->body_len : NULL;
    if (resp->body) {
        xml_text(resp->body, end, "Code", code, sizeof code);
        xml_text(resp->body, end, "Message", msg, sizeof msg);
    }
    int eno = EIO;
    if (resp->status == 403 || resp->status == 401) {
        AwsCredentials creds;
        char why[256];
        memset(&creds, 0, sizeof creds);
        const char *source = aws_credentials_get(&creds, why, sizeof why) == 0
                                 ? creds.source : "none";
        /* the key id shortened (first and last 4 characters, as consoles show it) */
        const char *id = creds.access_key;
        size_t idn = strlen(id);
        snprintf(err, errlen, "%s: %s: access to bucket '%s' denied (HTTP %ld%s%s%s%s); "
                 "credentials: %s%s%.4s%s%s", what, doing, bucket, resp->status,
                 code[0] ? " " : "", code, msg[0] ? ": " : "", msg, source,
                 idn ? ", key id " : "", id, idn ? "..." : "", idn > 8 ? id + idn - 4 : "");
        eno = EACCES;
    } else if (!strcmp(code, "NoSuchBucket")) {
        snprintf(err, errlen, "%s: %s: bucket '%s' does not exist (NoSuchBucket)", what, doing,
                 bucket);
        eno = ENOENT;
    } else {
        snprintf(err, errlen, "%s: %s: S3 answered HTTP %ld%s%s%s%s", what, doing, resp->status,
                 code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
    }
    if (errno_out) *errno_out = eno;
    return -1;
}

static void what_of(char *out, size_t cap, const char *bucket, const char *key) {
    snprintf(out, cap, "s3://%s/%s", bucket, key);
}

/* ---- the back end ------------------------------------------------------------------------------ */

static int s3_head(const char *bucket, const char *key, int64_t *size, int *errno_out, char *err,
                   size_t errlen) {
    char what[3000];
    what_of(what, sizeof what, bucket, key);
    HttpResponse resp;
    if (s3_request("HEAD", bucket, key, "", NULL, 0, NULL, NULL, what, &resp, err, errlen)) {
        *errno_out = EIO;
        return -1;
    }
    int rc;
    if (resp.status == 200) {
        *size = strtoll(resp.content_length, NULL, 10);
        rc = 1;
    } else if (resp.status == 404) {
        rc = 0;
    } else {
        rc = s3_fail(&resp, what, bucket, "HEAD", errno_out, err, errlen);
    }
    http_response_free(&resp);
    return rc;
}

static int s3_read(const char *bucket, const char *key, int64_t off, size_t len, char *buf,
                   size_t *got, char *err, size_t errlen) {
    char what[3000], range[64];
    what_of(what, sizeof what, bucket, key);
    snprintf(range, sizeof range, "bytes=%lld-%lld", (long long)off, (long long)off + (long long)len - 1);
    HttpResponse resp;
    if (s3_request("GET", bucket, key, "", NULL, 0, NULL, range, what, &resp, err, errlen))
        return -1;
    int rc = http_range_answer(&resp, off, len, buf, got)
                 ? 0 : s3_fail(&resp, what, bucket, "GET", NULL, err, errlen);
    http_response_free(&resp);
    return rc;
}

static int s3_list(const char *bucket, const char *prefix, int delimited, FsListFn fn, void *ctx,
                   int *errno_out, char *err, size_t errlen) {
    char what[3000], eprefix[3200], token[1024] = "", etoken[3200], query[7000];
    snprintf(what, sizeof what, "s3://%s/%s (listing)", bucket, prefix);
    http_url_encode(prefix, 0, eprefix, sizeof eprefix);
    for (;;) {
        http_url_encode(token, 0, etoken, sizeof etoken);
        /* the canonical query: names in byte order */
        char page[32] = "";
        if (fs_list_page()) snprintf(page, sizeof page, "max-keys=%d&", fs_list_page());
        snprintf(query, sizeof query, "%s%s%s%slist-type=2&%sprefix=%s",
                 token[0] ? "continuation-token=" : "", token[0] ? etoken : "",
                 token[0] ? "&" : "", delimited ? "delimiter=%2F&" : "", page, eprefix);
        HttpResponse resp;
        if (s3_request("GET", bucket, "", query, NULL, 0, NULL, NULL, what, &resp, err, errlen)) {
            *errno_out = EIO;
            return -1;
        }
        if (resp.status != 200) {
            int rc = s3_fail(&resp, what, bucket, "ListObjectsV2", errno_out, err, errlen);
            http_response_free(&resp);
            return rc;
        }
        const char *p = resp.body, *end = resp.body + resp.body_len;
        int stop = 0;
        char name[2048], size[32];
        /* objects, then common prefixes (each list is in name order) */
        const char *c;
        while (!stop && (c = strstr(p, "<Contents>")) != NULL) {
            const char *ce = strstr(c, "</Contents>");
            if (!ce) break;
            if (xml_text(c, ce, "Key", name, sizeof name) && xml_text(c, ce, "Size", size, sizeof size))
                stop = fn(ctx, name, 0, strtoll(size, NULL, 10));
            p = ce + 11;
        }
        p = resp.body;
        while (!stop && (c = strstr(p, "<CommonPrefixes>")) != NULL) {
            const char *ce = strstr(c, "</CommonPrefixes>");
            if (!ce) break;
            if (xml_text(c, ce, "Prefix", name, sizeof name)) stop = fn(ctx, name, 1, 0);
            p = ce + 17;
        }
        char truncated[16] = "";
        xml_text(resp.body, end, "IsTruncated", truncated, sizeof truncated);
        int more = !strcmp(truncated, "true") &&
                   xml_text(resp.body, end, "NextContinuationToken", token, sizeof token);
        http_response_free(&resp);
        int go_on = fs_list_page_end(stop, more, what, errno_out, err, errlen);
        if (go_on <= 0) return go_on;
    }
}

static int s3_put(const char *bucket, const char *key, const char *what, const char *data,
                  size_t n, char *err, size_t errlen) {
    HttpResponse resp;
    if (s3_request("PUT", bucket, key, "", data, n, NULL, NULL, what, &resp, err, errlen)) return -1;
    int rc = resp.status == 200 ? 0 : s3_fail(&resp, what, bucket, "PUT", NULL, err, errlen);
    http_response_free(&resp);
    return rc;
}

static int s3_multipart(const char *bucket, const char *key, const char *what, FILE *src,
                        int64_t size, char *buf, size_t part, char *err, size_t errlen) {
    HttpResponse resp;
    if (s3_request("POST", bucket, key, "uploads=", NULL, 0, NULL, NULL, what, &resp, err, errlen))
        return -1;
    char upload_id[1024] = "";
    if (resp.status != 200 || !xml_text(resp.body, resp.body + resp.body_len, "UploadId",
                                        upload_id, sizeof upload_id)) {
        int rc = s3_fail(&resp, what, bucket, "CreateMultipartUpload", NULL, err, errlen);
        http_response_free(&resp);
        return rc;
    }
    http_response_free(&resp);
    char eid[3200], query[3400];
    http_url_encode(upload_id, 0, eid, sizeof eid);
    int nparts = (int)((size + (int64_t)part - 1) / (int64_t)part);
    size_t xml_cap = 128 + (size_t)nparts * 400;
    char *xml = malloc(xml_cap);
    size_t xp = 0;
    int rc = xml ? 0 : -1;
    if (xml) xp = (size_t)snprintf(xml, xml_cap, "<CompleteMultipartUpload>");
    else snprintf(err, errlen, "%s: out of memory", what);
    for (int i = 0; rc == 0 && i < nparts; i++) {
        size_t n = (size_t)((size - (int64_t)i * (int64_t)part) < (int64_t)part
                                ? size - (int64_t)i * (int64_t)part : (int64_t)part);
        rc = fs_read_part(src, buf, n, what, err, errlen);
        snprintf(query, sizeof query, "partNumber=%d&uploadId=%s", i + 1, eid);
        if (rc == 0)
            rc = s3_request("PUT", bucket, key, query, buf, n, NULL, NULL, what, &resp, err, errlen);
        if (rc == 0) {
            if (resp.status != 200 || !resp.etag[0]) {
                char doing[64];
                snprintf(doing, sizeof doing, "UploadPart %d of %d", i + 1, nparts);
                rc = s3_fail(&resp, what, bucket, doing, NULL, err, errlen);
            } else {
                xp += (size_t)snprintf(xml + xp, xml_cap - xp,
                                       "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
                                       i + 1, resp.etag);
            }
            http_response_free(&resp);
        }
    }
    snprintf(query, sizeof query, "uploadId=%s", eid);
    if (rc == 0) {
        xp += (size_t)snprintf(xml + xp, xml_cap - xp, "</CompleteMultipartUpload>");
        rc = s3_request("POST", bucket, key, query, xml, xp, NULL, NULL, what, &resp, err, errlen);
        /* CompleteMultipartUpload can fail with 200 and an <Error> body */
        if (rc == 0 && (resp.status != 200 || strstr(resp.body, "<Error>")))
            rc = s3_fail(&resp, what, bucket, "CompleteMultipartUpload", NULL, err, errlen);
        if (rc == 0 || resp.body) http_response_free(&resp);
    }
    free(xml);
    if (rc != 0) {   /* abort, so that the parts do not linger (and nothing is published) */
        char ignore[256];
        if (s3_request("DELETE", bucket, key, query, NULL, 0, NULL, NULL, what, &resp, ignore,
                       sizeof ignore) == 0)
            http_response_free(&resp);
    }
    return rc;
}

static int s3_copy(const char *src_bucket, const char *src_key, const char *dst_bucket,
                   const char *dst_key, char *err, size_t errlen) {
    char what[3000], ekey[3200], source[3600];
    what_of(what, sizeof what, dst_bucket, dst_key);
    http_url_encode(src_key, 1, ekey, sizeof ekey);
    snprintf(source, sizeof source, "/%s/%s", src_bucket, ekey);
    HttpResponse resp;
    if (s3_request("PUT", dst_bucket, dst_key, "", NULL, 0, source, NULL, what, &resp, err, errlen))
        return -1;
    int rc = 0;
    if (resp.status != 200 || strstr(resp.body, "<Error>")) {
        char doing[3700];
        snprintf(doing, sizeof doing, "CopyObject from s3:/%s", source);
        rc = s3_fail(&resp, what, dst_bucket, doing, NULL, err, errlen);
    }
    http_response_free(&resp);
    return rc;
}

static int s3_remove(const char *bucket, const char *key, char *err, size_t errlen) {
    char what[3000];
    what_of(what, sizeof what, bucket, key);
    HttpResponse resp;
    if (s3_request("DELETE", bucket, key, "", NULL, 0, NULL, NULL, what, &resp, err, errlen))
        return -1;
    int rc = resp.status == 204 || resp.status == 200 || resp.status == 404
                 ? 0 : s3_fail(&resp, what, bucket, "DELETE", NULL, err, errlen);
    http_response_free(&resp);
    return rc;
}

const FsBackend fs_s3_backend = {"s3", s3_head, s3_read, s3_list, s3_put, s3_multipart, s3_copy,
                                 s3_remove};
