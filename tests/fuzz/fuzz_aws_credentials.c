/* fuzz_aws_credentials: the shared credentials file (~/.aws/credentials, an INI file other tools
 * write) as io/aws_credentials.c reads it for s3:// paths, on arbitrary text.
 *
 * The first line of the input (up to 60 bytes) is the profile (AWS_PROFILE), the rest the file.
 * The container and instance-metadata sources are switched off, so nothing goes to the network.
 * Credentials found must be NUL-terminated strings, both key id and secret non-empty.
 */
#include "fuzz_util.h"

#include "io/aws_credentials.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int env_done;
    if (!env_done) {
        unsetenv("AWS_ACCESS_KEY_ID");
        unsetenv("AWS_SECRET_ACCESS_KEY");
        unsetenv("AWS_SESSION_TOKEN");
        unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
        unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
        env_done = 1;
    }
    const uint8_t *nl = memchr(data, '\n', size < 61 ? size : 61);
    char profile[64] = "";
    if (nl) {
        memcpy(profile, data, (size_t)(nl - data));
        profile[nl - data] = 0;
        size -= (size_t)(nl - data) + 1;
        data = nl + 1;
    }
    setenv("AWS_PROFILE", profile, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", fuzz_file(0, data, size), 1);
    aws_credentials_invalidate();
    AwsCredentials c;
    char err[512];
    if (aws_credentials_get(&c, err, sizeof err) != 0) {
        fuzz_check_error(err, sizeof err);
        return 0;
    }
    if (!memchr(c.access_key, 0, sizeof c.access_key) || !memchr(c.secret_key, 0, sizeof c.secret_key) ||
        !memchr(c.session_token, 0, sizeof c.session_token) || !memchr(c.source, 0, sizeof c.source))
        abort();
    if (!c.access_key[0] != !c.secret_key[0]) abort();     /* both or neither (anonymous) */
    return 0;
}
