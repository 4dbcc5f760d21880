/* hypertune.h: the hyperparameter-tuning metric file, written as Google's `cloudml-hypertune`
 * library writes it (user-expectations §1.3), so AI Platform's tuning service reads our trials.
 *
 * Each report appends one entry to an in-memory list of the newest 100 and rewrites the whole
 * file (atomically here: temporary name, then rename), one JSON object per line with sorted keys:
 *   {"accuracy": "0.9712", "global_step": "1000", "timestamp": 1525851440.123456, "trial": "0"}
 * The metric value and the step are strings; the timestamp is a number (unix seconds).
 */
#ifndef CLI_HYPERTUNE_H
#define CLI_HYPERTUNE_H

#include <stddef.h>
#include <stdint.h>

#define HYPERTUNE_MAX_ENTRIES 100
#define HYPERTUNE_DEFAULT_PATH "/tmp/hypertune/output.metrics"
#define HYPERTUNE_DEFAULT_TAG "training/hptuning/metric"

typedef struct {
    char *path;                               /* the metrics file */
    char *trial;                              /* CLOUD_ML_TRIAL_ID, else "0" */
    char *entries[HYPERTUNE_MAX_ENTRIES];     /* oldest first, each one JSON line */
    int count;
} Hypertune;

/* path NULL: $CLOUD_ML_HP_METRIC_FILE, else HYPERTUNE_DEFAULT_PATH. trial NULL: "0". */
void hypertune_init(Hypertune *h, const char *path, const char *trial);
void hypertune_free(Hypertune *h);

/* One JSON line for (tag, value, step, timestamp) with sorted keys, no newline; malloc'ed.
 * An empty or NULL tag becomes HYPERTUNE_DEFAULT_TAG. */
char *hypertune_entry(const char *tag, double value, int64_t global_step, double timestamp,
                      const char *trial);

/* Adds an entry stamped now and rewrites the file (creating its parent directories).
 * 0 ok, -1 error with a message naming the file in err. */
int hypertune_report(Hypertune *h, const char *tag, double value, int64_t global_step,
                     char *err, size_t errlen);

#endif /* CLI_HYPERTUNE_H */
