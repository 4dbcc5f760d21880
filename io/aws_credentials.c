/* aws_credentials.c: the S3 credential chain (see aws_credentials.h). */
#define _GNU_SOURCE   /* timegm */
#include "io/aws_credentials.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/http.h"

static AwsCredentials g_creds;
static int g_have;

static int from_env(AwsCredentials *c) {
    const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    if (!id || !*id || !secret || !*secret) return 0;
    const char *token = getenv("AWS_SESSION_TOKEN");
    snprintf(c->access_key, sizeof c->access_key, "%s", id);
    snprintf(c->secret_key, sizeof c->secret_key, "%s", secret);
    snprintf(c->session_token, sizeof c->session_token, "%s", token ? token : "");
    snprintf(c->source, sizeof c->source, "environment (AWS_ACCESS_KEY_ID)");
    return 1;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

static int from_shared_file(AwsCredentials *c) {
    char path[1024];
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
    const char *home = getenv("HOME");
    if (file && *file) snprintf(path, sizeof path, "%s", file);
    else if (home) snprintf(path, sizeof path, "%s/.aws/credentials", home);
    else return 0;
    const char *profile = getenv("AWS_PROFILE");
    if (!profile || !*profile) profile = "default";
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[4608];
    int in_profile = 0;
    while (fgets(line, sizeof line, f)) {
        char *s = trim(line);
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e) *e = 0;
            in_profile = !strcmp(trim(s + 1), profile);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in_profile || !eq || *s == '#' || *s == ';') continue;
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        if (!strcmp(k, "aws_access_key_id")) snprintf(c->access_key, sizeof c->access_key, "%s", v);
        else if (!strcmp(k, "aws_secret_access_key"))
            snprintf(c->secret_key, sizeof c->secret_key, "%s", v);
        else if (!strcmp(k, "aws_session_token"))
            snprintf(c->session_token, sizeof c->session_token, "%s", v);
    }
    fclose(f);
    if (!c->access_key[0] || !c->secret_key[0]) {
        memset(c, 0, sizeof *c);
        return 0;
    }
    size_t n = strlen(path) < 90 ? strlen(path) : 90;   /* fits in source with the profile */
    snprintf(c->source, sizeof c->source, "%.*s [%.60s]", (int)n, path, profile);
    return 1;
}

/* "2026-11-26T05:00:00Z" -> time_t (0 when unparsable). */
static time_t parse_time(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

/* The JSON the container and instance endpoints answer with. 1 ok, -1 malformed. */
static int parse_json_creds(const char *body, AwsCredentials *c, const char *source, char *err,
                            size_t errlen) {
    cJSON *j = cJSON_Parse(body);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "AccessKeyId");
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(j, "SecretAccessKey");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(j, "Token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "Expiration");
    int ok = cJSON_IsString(id) && cJSON_IsString(secret);
    if (ok) {
        snprintf(c->access_key, sizeof c->access_key, "%s", id->valuestring);
        snprintf(c->secret_key, sizeof c->secret_key, "%s", secret->valuestring);
        snprintf(c->session_token, sizeof c->session_token, "%s",
                 cJSON_IsString(token) ? token->valuestring : "");
        c->expires = cJSON_IsString(exp) ? parse_time(exp->valuestring) : 0;
        snprintf(c->source, sizeof c->source, "%s", source);
    } else {
        snprintf(err, errlen, "S3 credentials from %s: the answer has no AccessKeyId/"
                 "SecretAccessKey", source);
    }
    cJSON_Delete(j);
    return ok ? 1 : -1;
}

/* GET url (with an optional header) -> body. 0 ok, -1 with err. */
static int fetch(const char *method, const char *url, const char *header, int retries,
                 HttpResponse *resp, const char *what, char *err, size_t errlen) {
    HttpRequest req = {.what = what, .method = method, .url = url, .connect_timeout_s = 1,
                       .max_retries = retries};
    if (header && http_headers_addf(&req.headers, "%s", header)) {
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    int rc = http_perform(&req, resp, err, errlen);
    http_headers_free(&req.headers);
    if (rc == 0 && resp->status != 200) {
        char excerpt[256];
        snprintf(err, errlen, "%s: HTTP %ld %s", what, resp->status,
                 http_body_excerpt(resp, excerpt, sizeof excerpt));
        http_response_free(resp);
        return -1;
    }
    return rc;
}

static int from_container(AwsCredentials *c, char *err, size_t errlen) {
    const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    char url[2048], header[2048] = "";
    if (rel && *rel) snprintf(url, sizeof url, "http://169.254.170.2%s", rel);
    else if (full && *full) snprintf(url, sizeof url, "%s", full);
    else return 0;
    const char *token = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    if (token && *token) snprintf(header, sizeof header, "Authorization: %s", token);
    HttpResponse resp;
    char source[2100];
    snprintf(source, sizeof source, "the container credentials endpoint %s", url);
    if (fetch("GET", url, header[0] ? header : NULL, 3, &resp, source, err, errlen)) return -1;
    int rc = parse_json_creds(resp.body, c, "the container credentials endpoint", err, errlen);
    http_response_free(&resp);
    return rc;
}

static int from_instance(AwsCredentials *c, char *err, size_t errlen) {
    const char *off = getenv("AWS_EC2_METADATA_DISABLED");
    if (off && !strcasecmp(off, "true")) return 0;
    const char *base = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!base || !*base) base = "http://169.254.169.254";
    char url[1024], header[600], role[256];
    HttpResponse resp;
    char ignore[512];
    snprintf(url, sizeof url, "%s/latest/api/token", base);
    HttpRequest req = {.what = "EC2 instance metadata", .method = "PUT", .url = url,
                       .connect_timeout_s = 1, .max_retries = 0};
    if (http_headers_addf(&req.headers, "X-aws-ec2-metadata-token-ttl-seconds: 21600")) return 0;
    int rc = http_perform(&req, &resp, ignore, sizeof ignore);
    http_headers_free(&req.headers);
    if (rc != 0) return 0;   /* not on EC2 */
    if (resp.status != 200 || resp.body_len >= 500) {
        http_response_free(&resp);
        return 0;
    }
    snprintf(header, sizeof header, "X-aws-ec2-metadata-token: %s", resp.body);
    http_response_free(&resp);
    snprintf(url, sizeof url, "%s/latest/meta-data/iam/security-credentials/", base);
    if (fetch("GET", url, header, 2, &resp, "EC2 instance metadata (role)", err, errlen)) return 0;
    snprintf(role, sizeof role, "%.*s", (int)strcspn(resp.body, "\r\n"), resp.body);
    http_response_free(&resp);
    if (!role[0]) return 0;   /* no role attached */
    snprintf(url, sizeof url, "%s/latest/meta-data/iam/security-credentials/%s", base, role);
    if (fetch("GET", url, header, 2, &resp, "EC2 instance metadata (credentials)", err, errlen))
        return -1;
    rc = parse_json_creds(resp.body, c, "the EC2 instance role", err, errlen);
    http_response_free(&resp);
    return rc;
}

int aws_credentials_get(AwsCredentials *out, char *err, size_t errlen) {
    if (g_have && (g_creds.expires == 0 || time(NULL) < g_creds.expires - 300)) {
        *out = g_creds;
        return 0;
    }
    AwsCredentials c;
    memset(&c, 0, sizeof c);
    int rc = from_env(&c);
    if (!rc) rc = from_shared_file(&c);
    if (!rc) rc = from_container(&c, err, errlen);
    if (!rc) rc = from_instance(&c, err, errlen);
    if (rc < 0) return -1;
    if (!rc) snprintf(c.source, sizeof c.source, "none found (anonymous requests)");
    g_creds = c;
    g_have = 1;
    *out = c;
    return 0;
}

void aws_credentials_invalidate(void) { g_have = 0; }
