/* gcs_auth.h: OAuth2 access tokens for Cloud Storage requests, from the first source that applies:
 *  1. GOOGLE_APPLICATION_CREDENTIALS: a service-account key file (an RS256-signed JWT, signed
 *     with OpenSSL, exchanged at its token_uri) or an authorized-user file (its refresh token);
 *  2. with STORAGE_EMULATOR_HOST set (and neither GOOGLE_APPLICATION_CREDENTIALS nor
 *     GCE_METADATA_HOST): none, as Google's client libraries do for emulators;
 *  3. gcloud's application-default file (~/.config/gcloud/application_default_credentials.json);
 *  4. the metadata server (GCE, AI Platform, Vertex AI): GCE_METADATA_HOST (host:port), else
 *     GCE_METADATA_ROOT, else metadata.google.internal; probed once with a 1 s timeout;
 *  5. none: requests go without Authorization (public buckets).
 * Tokens are cached and fetched again 5 minutes before they expire. Tokens and keys are never
 * printed.
 */
#ifndef IO_GCS_AUTH_H
#define IO_GCS_AUTH_H

#include <stddef.h>

/* The current token into token ("" when anonymous) and, when source is not NULL, where it comes
 * from (for error messages). 0 ok, -1 with err when a configured source fails. */
int gcs_auth_token(char *token, size_t cap, char *source, size_t source_cap, char *err,
                   size_t errlen);

/* Forgets the cached token (after a 401: revoked or expired early); the next call fetches one. */
void gcs_auth_invalidate(void);

#endif
