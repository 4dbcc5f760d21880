/* sigv4.h: AWS Signature Version 4 (header form), as S3 checks it.
 *
 *   canonical request = METHOD \n URI \n QUERY \n (name:value\n per signed header) \n
 *                       signed;header;names \n payload-sha256-hex
 *   string to sign    = "AWS4-HMAC-SHA256" \n amz_date \n date/region/service/aws4_request \n
 *                       sha256-hex(canonical request)
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service), "aws4_request")
 * The caller gives the URI path already percent-encoded (S3: each key byte except unreserved and
 * '/'), the query already canonical (sorted by name, both sides encoded, "name=" when empty) and
 * every header to sign with lower-case names (S3: host, and every x-amz-* header sent).
 */
#ifndef IO_SIGV4_H
#define IO_SIGV4_H

#include <stddef.h>

typedef struct {
    const char *access_key, *secret_key;
    const char *region, *service;         /* "us-east-1", "s3" */
} SigV4Key;

/* Writes the Authorization header value ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
 * Signature=...") to out. names[i]/values[i]: the headers to sign, any order (names lower case,
 * values trimmed). amz_date: "YYYYMMDDTHHMMSSZ". 0 ok, -1 when out is too small or OpenSSL fails. */
int sigv4_authorization(const SigV4Key *key, const char *method, const char *uri, const char *query,
                        const char *const *names, const char *const *values, int n,
                        const char *payload_sha256_hex, const char *amz_date, char *out,
                        size_t cap);

/* Lower-case hex SHA-256 of data into out[65]. */
void sha256_hex(const void *data, size_t n, char out[65]);

#endif
