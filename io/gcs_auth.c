/* gcs_auth.c: OAuth2 tokens for Cloud Storage (see gcs_auth.h). */
#include "io/gcs_auth.h"

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "io/http.h"

#define GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"
#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"

enum { SRC_UNKNOWN, SRC_NONE, SRC_FILE, SRC_METADATA };

static struct {
    int kind;
    char file[1024];          /* SRC_FILE: the credentials file */
    char metadata_url[1024];  /* SRC_METADATA: the token URL */
    char source[1200];
    char token[4096];
    time_t expires;
} g_auth;

/* ---- base64url and the JWT ------------------------------------------------------------------ */

static size_t b64url(const unsigned char *p, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        if (i + 1 < n) out[o++] = t[v >> 6 & 63];
        if (i + 2 < n) out[o++] = t[v & 63];
    }
    out[o] = 0;
    return o;
}

/* header.claims.signature, RS256 with the PEM private key. 0 ok, -1 with err. */
static int make_jwt(const char *email, const char *pem, const char *aud, char *out, size_t cap,
                    char *err, size_t errlen) {
    char claims[2048];
    long now = (long)time(NULL);
    snprintf(claims, sizeof claims,
             "{\"iss\":\"%s\",\"scope\":\"" GCS_SCOPE "\",\"aud\":\"%s\",\"iat\":%ld,\"exp\":%ld}",
             email, aud, now, now + 3600);
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    size_t need = (sizeof header + strlen(claims)) * 4 / 3 + 8 + 700;
    if (need > cap) {
        snprintf(err, errlen, "service-account JWT: too long");
        return -1;
    }
    size_t n = b64url((const unsigned char *)header, strlen(header), out);
    out[n++] = '.';
    n += b64url((const unsigned char *)claims, strlen(claims), out + n);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!key) {
        snprintf(err, errlen, "the service-account key file's private_key is not a PEM key");
        return -1;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof sig;
    int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSignUpdate(md, out, n) == 1 && EVP_DigestSignFinal(md, NULL, &siglen) == 1 &&
             siglen <= sizeof sig && EVP_DigestSignFinal(md, sig, &siglen) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    if (!ok) {
        snprintf(err, errlen, "signing the service-account JWT failed (OpenSSL)");
        return -1;
    }
    out[n++] = '.';
    b64url(sig, siglen, out + n);
    return 0;
}

/* ---- token requests ---------------------------------------------------------------------------- */

/* Reads access_token / expires_in from a token answer. 0 ok, -1 with err. */
static int take_token(const HttpResponse *resp, const char *what, char *err, size_t errlen) {
    if (resp->status != 200) {
        char excerpt[256];
        snprintf(err, errlen, "%s: HTTP %ld %s", what, resp->status,
                 http_body_excerpt(resp, excerpt, sizeof excerpt));
        return -1;
    }
    cJSON *j = cJSON_Parse(resp->body);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    int ok = cJSON_IsString(tok) && strlen(tok->valuestring) < sizeof g_auth.token;
    if (ok) {
        snprintf(g_auth.token, sizeof g_auth.token, "%s", tok->valuestring);
        g_auth.expires = time(NULL) + (cJSON_IsNumber(exp) ? (time_t)exp->valuedouble : 3600);
    } else {
        snprintf(err, errlen, "%s: the answer has no access_token", what);
    }
    cJSON_Delete(j);
    return ok ? 0 : -1;
}

static int post_form(const char *url, const char *form, const char *what, char *err, size_t errlen) {
    HttpRequest req = {.what = what, .method = "POST", .url = url, .body = form,
                       .body_len = strlen(form), .max_retries = -1};
    if (http_headers_addf(&req.headers, "Content-Type: application/x-www-form-urlencoded")) {
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    HttpResponse resp;
    int rc = http_perform(&req, &resp, err, errlen);
    http_headers_free(&req.headers);
    if (rc == 0) {
        rc = take_token(&resp, what, err, errlen);
        http_response_free(&resp);
    }
    return rc;
}

static int token_from_file(char *err, size_t errlen) {
    FILE *f = fopen(g_auth.file, "rb");
    char *text = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1 << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)) &&
        fread(text, 1, (size_t)n, f) == (size_t)n)
        text[n] = 0;
    else {
        free(text);
        text = NULL;
    }
    if (f) fclose(f);
    if (!text) {
        snprintf(err, errlen, "Cloud Storage credentials %s: cannot read the file", g_auth.file);
        return -1;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *uri = cJSON_GetObjectItemCaseSensitive(j, "token_uri");
    const char *token_uri = cJSON_IsString(uri) ? uri->valuestring : DEFAULT_TOKEN_URI;
    char what[1400];
    snprintf(what, sizeof what, "Cloud Storage credentials %s: token request to %s", g_auth.file,
             token_uri);
    int rc = -1;
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "service_account")) {
        const cJSON *email = cJSON_GetObjectItemCaseSensitive(j, "client_email");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(j, "private_key");
        static char jwt[8192], form[9000];
        if (!cJSON_IsString(email) || !cJSON_IsString(key)) {
            snprintf(err, errlen, "Cloud Storage credentials %s: no client_email/private_key",
                     g_auth.file);
        } else if (make_jwt(email->valuestring, key->valuestring, token_uri, jwt, sizeof jwt, err,
                            errlen) == 0) {
            snprintf(form, sizeof form, "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type"
                     "%%3Ajwt-bearer&assertion=%s", jwt);
            rc = post_form(token_uri, form, what, err, errlen);
        }
    } else if (cJSON_IsString(type) && !strcmp(type->valuestring, "authorized_user")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "client_id");
        const cJSON *secret = cJSON_GetObjectItemCaseSensitive(j, "client_secret");
        const cJSON *refresh = cJSON_GetObjectItemCaseSensitive(j, "refresh_token");
        if (!cJSON_IsString(id) || !cJSON_IsString(secret) || !cJSON_IsString(refresh)) {
            snprintf(err, errlen, "Cloud Storage credentials %s: no client_id/client_secret/"
                     "refresh_token", g_auth.file);
        } else {
            char eid[1024], esecret[1024], erefresh[2048], form[4200];
            snprintf(form, sizeof form, "grant_type=refresh_token&client_id=%s&client_secret=%s"
                     "&refresh_token=%s", http_url_encode(id->valuestring, 0, eid, sizeof eid),
                     http_url_encode(secret->valuestring, 0, esecret, sizeof esecret),
                     http_url_encode(refresh->valuestring, 0, erefresh, sizeof erefresh));
            rc = post_form(token_uri, form, what, err, errlen);
        }
    } else {
        snprintf(err, errlen, "Cloud Storage credentials %s: type must be service_account or "
                 "authorized_user", g_auth.file);
    }
    cJSON_Delete(j);
    return rc;
}

static int token_from_metadata(int probing, char *err, size_t errlen) {
    HttpRequest req = {.what = "the GCE metadata server", .method = "GET",
                       .url = g_auth.metadata_url, .connect_timeout_s = probing ? 1 : 0,
                       .max_retries = probing ? 0 : -1};
    if (http_headers_addf(&req.headers, "Metadata-Flavor: Google")) return -1;
    HttpResponse resp;
    int rc = http_perform(&req, &resp, err, errlen);
    http_headers_free(&req.headers);
    if (rc == 0) {
        rc = take_token(&resp, "token from the GCE metadata server", err, errlen);
        http_response_free(&resp);
    }
    return rc;
}

/* ---- choosing the source (once) ---------------------------------------------------------------- */

static void choose_source(void) {
    const char *file = getenv("GOOGLE_APPLICATION_CREDENTIALS");
    const char *emulator = getenv("STORAGE_EMULATOR_HOST");
    const char *md_host = getenv("GCE_METADATA_HOST");
    const char *md_root = getenv("GCE_METADATA_ROOT");
    const char *home = getenv("HOME");
    struct stat st;
    char adc[1024] = "";
    if (home) snprintf(adc, sizeof adc, "%s/.config/gcloud/application_default_credentials.json", home);
    if (file && *file) {
        g_auth.kind = SRC_FILE;
        snprintf(g_auth.file, sizeof g_auth.file, "%s", file);
    } else if (emulator && *emulator && !(md_host && *md_host)) {
        g_auth.kind = SRC_NONE;
        snprintf(g_auth.source, sizeof g_auth.source, "none (STORAGE_EMULATOR_HOST is set)");
        return;
    } else if (adc[0] && stat(adc, &st) == 0) {
        g_auth.kind = SRC_FILE;
        snprintf(g_auth.file, sizeof g_auth.file, "%s", adc);
    } else {
        const char *host = md_host && *md_host ? md_host : md_root && *md_root ? md_root
                                                                           : "metadata.google.internal";
        snprintf(g_auth.metadata_url, sizeof g_auth.metadata_url,
                 "http://%s/computeMetadata/v1/instance/service-accounts/default/token", host);
        snprintf(g_auth.source, sizeof g_auth.source, "the metadata server %s", host);
        g_auth.kind = SRC_METADATA;
        /* off GCP there is no metadata server: probe once, fall back on anonymous */
        char ignore[512];
        if (!(md_host && *md_host) && token_from_metadata(1, ignore, sizeof ignore) != 0) {
            g_auth.kind = SRC_NONE;
            snprintf(g_auth.source, sizeof g_auth.source, "none found (anonymous requests)");
        }
        return;
    }
    snprintf(g_auth.source, sizeof g_auth.source, "%s", g_auth.file);
}

int gcs_auth_token(char *token, size_t cap, char *source, size_t source_cap, char *err,
                   size_t errlen) {
    if (g_auth.kind == SRC_UNKNOWN) choose_source();
    if (source) snprintf(source, source_cap, "%s", g_auth.source);
    token[0] = 0;
    if (g_auth.kind == SRC_NONE) return 0;
    if (!g_auth.token[0] || time(NULL) >= g_auth.expires - 300) {
        int rc = g_auth.kind == SRC_FILE ? token_from_file(err, errlen)
                                         : token_from_metadata(0, err, errlen);
        if (rc != 0) return -1;
    }
    snprintf(token, cap, "%s", g_auth.token);
    return 0;
}

void gcs_auth_invalidate(void) { g_auth.token[0] = 0; }
