/* train_config.h: the trainer's run configuration, from its flags and the platform environment.
 *
 * Sources, strongest first: command-line flags (task.py's names; `-`/`_` alike, `--k v`/`--k=v`,
 * see cli/args.h), then the environment that AI Platform and SageMaker set (SM_CHANNEL_*,
 * SM_MODEL_DIR, SM_LOG_LEVEL, SM_HOSTS/SM_CURRENT_HOST, TF_CONFIG, CLOUD_ML_HP_METRIC_FILE,
 * CLOUD_ML_TRIAL_ID) and Vertex AI (AIP_MODEL_DIR, AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR),
 * then the Estimator's defaults. docs/cli-trainer.md lists every flag.
 *
 * Parsing checks every value (number syntax and range, enum names, required inputs) and touches
 * no file (it only looks whether SageMaker's checkpoint directory is there): a bad
 * configuration is reported before any work starts (the trainer exits 2).
 * Unknown flags and ignored settings become warnings (the platforms pass extra flags).
 */
#ifndef CLI_TRAIN_CONFIG_H
#define CLI_TRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/tf_log.h"
#include "core/model.h"

typedef struct {
    /* ---- data: paths as given (files, directories, globs); io/path_list expands them ---- */
    const char **train_paths;
    int num_train;
    const char **test_paths;
    int num_test;
    int shuffle;                    /* reshuffle the training set every epoch (default 1) */

    /* ---- model and optimisation ---- */
    const char *model_spec;         /* --model: NULL = the original CNN */
    int64_t steps;                  /* absolute max global step (TrainSpec.max_steps) */
    int batch_size;                 /* 100 */
    double learning_rate;           /* 0.001 */
    OptimizerKind optimizer;        /* adam */
    double momentum;                /* 0.9, momentum optimizer only */
    uint64_t seed;                  /* 0: init, dropout and shuffle order */
    const char *device;             /* "cpu", "cuda", "cudnn", "auto" (default auto) */
    int threads;                    /* CPU threads, 0 = all cores */

    /* ---- logging and evaluation ---- */
    TfLogLevel verbosity;           /* INFO */
    int64_t log_step_count_steps;   /* 100: the loss line and global_step/sec */
    int64_t save_summary_steps;     /* 100: training `loss` into the events file */
    int64_t eval_every_steps;       /* 0: evaluate at the end only; N: also every N steps */
    int64_t eval_steps;             /* 0: each evaluation covers the whole test set; N: its first
                                       N * eval_batch_size examples (EvalSpec.steps) */
    int eval_batch_size;            /* the batch of eval_steps: batch_size */
    int64_t throttle_secs;          /* 600: after a checkpoint, evaluate (and export) when this
                                       long has passed since the last such evaluation began
                                       (EvalSpec.throttle_secs; the first one always) */

    /* ---- checkpoints ---- */
    int64_t save_checkpoints_steps; /* 0 = by time */
    double save_checkpoints_secs;   /* 600 when neither is given; 0 = only at start and end */
    int keep_checkpoint_max;        /* 5; 0 keeps all */

    /* ---- outputs ---- */
    char *model_dir;                /* job dir (+ "/<trial>" in AI Platform's tuning trials,
                                       + "/<job name>/model" in SageMaker's); without a flag,
                                       $AIP_CHECKPOINT_DIR, else SageMaker's
                                       <opt_ml>/checkpoints when it is a writable directory,
                                       else NULL: the trainer makes a fresh /tmp directory, as
                                       the Estimator does. No trailing '/' */
    int model_dir_is_sm_checkpoints; /* model_dir is SageMaker's checkpoint directory */
    const char *exporter_name;      /* "exporter": <model_dir>/export/<name>/<ts>/ */
    int exports_to_keep;            /* 5; 0 keeps all */
    const char *sm_model_dir;       /* $SM_MODEL_DIR (or --sm-model-dir), NULL when unset */
    char *aip_model_dir;            /* $AIP_MODEL_DIR (or --aip-model-dir): the export also
                                       goes into it, replacing the SavedModel there; NULL */
    char *tensorboard_log_dir;      /* $AIP_TENSORBOARD_LOG_DIR (or --tensorboard-log-dir): the
                                       event files also go there; NULL, also when it is the
                                       job dir */
    int export_enabled;             /* 0 on a SageMaker host other than SM_HOSTS[0] */

    /* ---- hyperparameter tuning ---- */
    int hypertune;                  /* write the metric file (CLOUD_ML_HP_METRIC_FILE or trial) */
    const char *hypertune_path;     /* NULL: $CLOUD_ML_HP_METRIC_FILE or the library default */
    const char *hypertune_tag;      /* "accuracy" */
    char *trial;                    /* TF_CONFIG task.trial / CLOUD_ML_TRIAL_ID, NULL outside */

    /* ---- role (TF_CONFIG task) ---- */
    char task_type[32];             /* "chief" (also when TF_CONFIG is absent), "worker", ... */
    int task_index;
    int is_chief;                   /* only the chief trains; others exit 0 with a warning */

    int show_help;                  /* --help given: print usage, do nothing else */

    /* Warnings gathered while parsing (unknown flags, ignored settings), for the log. */
    char **warnings;
    int num_warnings;

    void *priv_;                    /* the parsed flags the const char * fields point into */
} TrainConfig;

/* Parses argv[0..argc) (without the program name) and the environment. 0 ok; -1 with a message
 * naming the flag or variable in err (the trainer prints it and exits 2). cfg must be freed with
 * train_config_free either way. Strings point into argv, the environment or cfg. */
int train_config_parse(TrainConfig *cfg, int argc, char **argv, char *err, size_t errlen);
void train_config_free(TrainConfig *cfg);

/* Usage text: every flag with its default. */
void train_config_print_help(FILE *out);

/* The resolved configuration as one line (logged as Estimator's "Using config: {...}"). */
void train_config_describe(const TrainConfig *cfg, char *buf, size_t len);

/* The root of SageMaker's container files: $CNN_OPT_ML, else /opt/ml (its output/failure file,
 * its checkpoints directory). The variable is for tests and local runs. */
const char *train_config_opt_ml(void);

#endif /* CLI_TRAIN_CONFIG_H */
