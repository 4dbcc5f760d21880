/* fuzz_checkpoint_state: the `checkpoint` state file of a job directory (io/checkpoint.c:
 * checkpoint_state_read, and checkpoint_latest, which the trainer's resume runs on it) on
 * arbitrary text. TF and other tools write this file; the trainer trusts nothing in it.
 *
 * The input becomes <scratch dir>/checkpoint (one directory per process, under $TMPDIR).
 */
#include "fuzz_util.h"

#include <sys/stat.h>

#include "io/checkpoint.h"

static char dir[256];

static void cleanup(void) {
    char path[300];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/fuzz_ckpt_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
        atexit(cleanup);
    }
    char path[300], err[512], prefix[4200];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) { perror(path); abort(); }
    char **paths;
    int n = checkpoint_state_read(dir, &paths, err, sizeof err);
    if (n < 0) {
        fuzz_check_error(err, sizeof err);
    } else {
        for (int i = 0; i < n; i++)
            if (!paths[i]) abort();
        checkpoint_paths_free(paths, n);
    }
    int64_t step = -1;
    char warning[2048];
    int rc = checkpoint_latest(dir, prefix, sizeof prefix, &step, warning, sizeof warning, err,
                               sizeof err);
    if (rc < 0) fuzz_check_error(err, sizeof err);
    else if (rc == 1) abort();            /* the scratch dir holds no checkpoint at all */
    return 0;
}
