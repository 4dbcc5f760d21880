/* aws_credentials.h: where S3 requests get their credentials, in the AWS SDKs' order:
 *  1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *  2. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials),
 *     profile AWS_PROFILE (default "default");
 *  3. the container endpoint (ECS, SageMaker): AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on
 *     169.254.170.2, or AWS_CONTAINER_CREDENTIALS_FULL_URI (with AWS_CONTAINER_AUTHORIZATION_TOKEN);
 *  4. the EC2 instance metadata service (IMDSv2; AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the
 *     address, AWS_EC2_METADATA_DISABLED=true skips it; probed once with a 1 s timeout);
 *  5. none: requests go unsigned (public buckets).
 * Temporary credentials (3, 4) are fetched again 5 minutes before they expire.
 */
#ifndef IO_AWS_CREDENTIALS_H
#define IO_AWS_CREDENTIALS_H

#include <stddef.h>
#include <time.h>

typedef struct {
    char access_key[128];       /* "" when anonymous */
    char secret_key[128];
    char session_token[4096];
    char source[256];           /* where they came from, for error messages (never the secret) */
    time_t expires;             /* 0: does not expire */
} AwsCredentials;

/* The current credentials (cached). 0 ok (possibly anonymous), -1 with err when a configured
 * source is broken (e.g. the container endpoint answers with an error). */
int aws_credentials_get(AwsCredentials *out, char *err, size_t errlen);

/* Forgets the cached credentials (after ExpiredToken); the next call looks them up again. */
void aws_credentials_invalidate(void);

#endif
