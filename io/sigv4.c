/* sigv4.c: AWS Signature Version 4 with OpenSSL (see sigv4.h). */
#include "io/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void to_hex(const unsigned char *p, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = 0;
}

void sha256_hex(const void *data, size_t n, char out[65]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, n, md);
    to_hex(md, sizeof md, out);
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[32]) {
    unsigned int len = 32;
    return HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len)
               ? 0
               : -1;
}

/* Appends s to out at *pos; -1 when it does not fit. */
static int put(char *out, size_t cap, size_t *pos, const char *s) {
    size_t n = strlen(s);
    if (*pos + n + 1 > cap) return -1;
    memcpy(out + *pos, s, n + 1);
    *pos += n;
    return 0;
}

int sigv4_authorization(const SigV4Key *key, const char *method, const char *uri, const char *query,
                        const char *const *names, const char *const *values, int n,
                        const char *payload_sha256_hex, const char *amz_date, char *out,
                        size_t cap) {
    /* headers sorted by name (a handful: insertion sort on an index) */
    int order[32];
    if (n > 32) return -1;
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && strcmp(names[order[j - 1]], names[i]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    char signed_names[1024] = "";
    size_t sp = 0;
    for (int i = 0; i < n; i++)
        if ((i && put(signed_names, sizeof signed_names, &sp, ";")) ||
            put(signed_names, sizeof signed_names, &sp, names[order[i]]))
            return -1;

    size_t creq_cap = strlen(method) + strlen(uri) + strlen(query) + sizeof signed_names + 256;
    for (int i = 0; i < n; i++) creq_cap += strlen(names[i]) + strlen(values[i]) + 2;
    char *creq = malloc(creq_cap);
    if (!creq) return -1;
    size_t cp = 0;
    int bad = put(creq, creq_cap, &cp, method) || put(creq, creq_cap, &cp, "\n") ||
              put(creq, creq_cap, &cp, uri) || put(creq, creq_cap, &cp, "\n") ||
              put(creq, creq_cap, &cp, query) || put(creq, creq_cap, &cp, "\n");
    for (int i = 0; i < n && !bad; i++)
        bad = put(creq, creq_cap, &cp, names[order[i]]) || put(creq, creq_cap, &cp, ":") ||
              put(creq, creq_cap, &cp, values[order[i]]) || put(creq, creq_cap, &cp, "\n");
    bad = bad || put(creq, creq_cap, &cp, "\n") || put(creq, creq_cap, &cp, signed_names) ||
          put(creq, creq_cap, &cp, "\n") || put(creq, creq_cap, &cp, payload_sha256_hex);
    char creq_hash[65];
    if (!bad) sha256_hex(creq, cp, creq_hash);
    free(creq);
    if (bad) return -1;

    char date[9];
    snprintf(date, sizeof date, "%.8s", amz_date);
    char scope[256], to_sign[512];
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date, key->region, key->service);
    snprintf(to_sign, sizeof to_sign, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, creq_hash);

    char k0[256];
    if ((size_t)snprintf(k0, sizeof k0, "AWS4%s", key->secret_key) >= sizeof k0) return -1;
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    if (hmac(k0, strlen(k0), date, k1) || hmac(k1, 32, key->region, k2) ||
        hmac(k2, 32, key->service, k3) || hmac(k3, 32, "aws4_request", k4) ||
        hmac(k4, 32, to_sign, sig))
        return -1;
    char sig_hex[65];
    to_hex(sig, 32, sig_hex);
    int len = snprintf(out, cap, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                       key->access_key, scope, signed_names, sig_hex);
    return len < 0 || (size_t)len >= cap ? -1 : 0;
}
