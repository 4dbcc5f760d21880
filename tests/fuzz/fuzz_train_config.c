/* fuzz_train_config: the trainer's configuration (cli/train_config.c + cli/args.c): its flags
 * and the JSON and lists that AI Platform and SageMaker put in its environment, on arbitrary
 * input.
 *
 * The input is split at NUL bytes: TF_CONFIG, SM_HOSTS, SM_CURRENT_HOST (each unset when empty),
 * then the command-line arguments (at most 64). An accepted configuration must describe itself.
 */
#include "fuzz_util.h"

#include "cli/train_config.h"

static void set_or_unset(const char *name, const char *value) {
    if (value && *value) setenv(name, value, 1);
    else unsetenv(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = 0;
    char *parts[67];
    int n = 0;
    for (char *p = text; n < 67 && p <= text + size; p += strlen(p) + 1) parts[n++] = p;
    set_or_unset("TF_CONFIG", n > 0 ? parts[0] : NULL);
    set_or_unset("SM_HOSTS", n > 1 ? parts[1] : NULL);
    set_or_unset("SM_CURRENT_HOST", n > 2 ? parts[2] : NULL);
    int argc = n > 3 ? n - 3 : 0;
    TrainConfig cfg;
    char err[1024];
    if (train_config_parse(&cfg, argc, parts + 3, err, sizeof err) != 0) {
        fuzz_check_error(err, sizeof err);
    } else {
        char described[2048];
        train_config_describe(&cfg, described, sizeof described);
        if (!memchr(described, 0, sizeof described)) abort();
    }
    train_config_free(&cfg);
    free(text);
    return 0;
}
