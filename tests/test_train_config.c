/* test_train_config.c: the trainer's flags and platform environment (cli/train_config.h). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/train_config.h"
#include "support/check_run.h"

/* Every variable train_config reads, cleared before each test so the host's own does not leak. */
static const char *const kEnv[] = {
    "SM_CHANNEL_TRAIN", "SM_CHANNEL_TRAINING", "SM_CHANNEL_TEST", "SM_CHANNEL_EVAL",
    "SM_CHANNEL_TESTING", "SM_MODEL_DIR", "SM_LOG_LEVEL", "SM_HOSTS", "SM_CURRENT_HOST",
    "SM_NUM_GPUS", "TF_CONFIG", "CLOUD_ML_HP_METRIC_FILE", "CLOUD_ML_TRIAL_ID",
    "TRAINING_JOB_NAME", "CNN_OPT_ML", "AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR",
    "AIP_TENSORBOARD_LOG_DIR",
};

/* ... and SageMaker's /opt/ml moved where no checkpoints directory is. */
static void clear_env(void) {
    for (size_t i = 0; i < sizeof kEnv / sizeof kEnv[0]; i++) unsetenv(kEnv[i]);
    setenv("CNN_OPT_ML", "/nonexistent/opt/ml", 1);
}

/* Parses a NULL-terminated argv; returns parse's status, err filled. */
static int parse(TrainConfig *cfg, char *err, size_t errlen, char **argv) {
    int argc = 0;
    while (argv[argc]) argc++;
    return train_config_parse(cfg, argc, argv, err, errlen);
}

static int has_warning(const TrainConfig *cfg, const char *needle) {
    for (int i = 0; i < cfg->num_warnings; i++)
        if (strstr(cfg->warnings[i], needle)) return 1;
    return 0;
}

START_TEST(test_defaults) {
    clear_env();
    char *argv[] = {"--train", "tr.tfrecords", "--test", "te.tfrecords", NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_int_eq(cfg.num_train, 1);
    ck_assert_str_eq(cfg.train_paths[0], "tr.tfrecords");
    ck_assert_str_eq(cfg.test_paths[0], "te.tfrecords");
    ck_assert_int_eq(cfg.steps, 12000);
    ck_assert_int_eq(cfg.batch_size, 100);
    ck_assert_double_eq(cfg.learning_rate, 0.001);
    ck_assert_int_eq(cfg.optimizer, OPT_ADAM);
    ck_assert_int_eq(cfg.verbosity, TF_LOG_INFO);
    ck_assert_int_eq(cfg.log_step_count_steps, 100);
    ck_assert_int_eq(cfg.save_summary_steps, 100);
    ck_assert_int_eq(cfg.eval_steps, 0);
    ck_assert_int_eq(cfg.eval_every_steps, 0);
    ck_assert_int_eq(cfg.eval_batch_size, 100); /* --batch-size */
    ck_assert_int_eq(cfg.throttle_secs, 600);   /* EvalSpec's */
    ck_assert_int_eq(cfg.save_checkpoints_steps, 0);
    ck_assert_double_eq(cfg.save_checkpoints_secs, 600);
    ck_assert_int_eq(cfg.keep_checkpoint_max, 5);
    ck_assert_int_eq(cfg.exports_to_keep, 5);
    ck_assert_str_eq(cfg.exporter_name, "exporter");
    ck_assert_str_eq(cfg.device, "auto");
    ck_assert_int_eq(cfg.shuffle, 1);
    ck_assert_ptr_null(cfg.model_dir);
    ck_assert_ptr_null(cfg.sm_model_dir);
    ck_assert_ptr_null(cfg.model_spec);
    ck_assert_int_eq(cfg.is_chief, 1);
    ck_assert_str_eq(cfg.task_type, "chief");
    ck_assert_int_eq(cfg.export_enabled, 1);
    ck_assert_int_eq(cfg.hypertune, 0);
    ck_assert_int_eq(cfg.num_warnings, 0);
    train_config_free(&cfg);
}
END_TEST

START_TEST(test_flag_forms) {
    clear_env();
    /* task.py spellings: underscores, '=' forms, nargs='+' lists, aliases, the job dir at the end
     * as `gcloud ai-platform local train` appends it */
    char *argv[] = {"--train_file", "a.tfr", "b.tfr", "--eval-file=c.tfr", "--steps=500",
                    "--batch_size", "64", "--learning-rate=0.01", "--verbosity", "warn",
                    "--seed", "7", "--device=cpu", "--eval_steps", "200",
                    "--eval-every-steps=250", "--eval_batch_size", "40",
                    "--log-step-count-steps=10", "--save_checkpoints_steps", "50",
                    "--keep-checkpoint-max=2", "--exports_to_keep", "3", "--threads=2",
                    "--optimizer", "Momentum", "--momentum=0.5", "--shuffle", "False",
                    "--model", "conv:8", "--job-dir", "/tmp/job", NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_int_eq(cfg.num_train, 2);
    ck_assert_str_eq(cfg.train_paths[1], "b.tfr");
    ck_assert_int_eq(cfg.num_test, 1);
    ck_assert_str_eq(cfg.test_paths[0], "c.tfr");
    ck_assert_int_eq(cfg.steps, 500);
    ck_assert_int_eq(cfg.batch_size, 64);
    ck_assert_double_eq(cfg.learning_rate, 0.01);
    ck_assert_int_eq(cfg.verbosity, TF_LOG_WARN);
    ck_assert_int_eq(cfg.seed, 7);
    ck_assert_str_eq(cfg.device, "cpu");
    ck_assert_int_eq(cfg.eval_steps, 200);
    ck_assert_int_eq(cfg.eval_every_steps, 250);
    ck_assert_int_eq(cfg.eval_batch_size, 40);
    ck_assert_int_eq(cfg.log_step_count_steps, 10);
    ck_assert_int_eq(cfg.save_checkpoints_steps, 50);
    ck_assert_double_eq(cfg.save_checkpoints_secs, 0);   /* steps given: no time cadence */
    ck_assert_int_eq(cfg.keep_checkpoint_max, 2);
    ck_assert_int_eq(cfg.exports_to_keep, 3);
    ck_assert_int_eq(cfg.threads, 2);
    ck_assert_int_eq(cfg.optimizer, OPT_MOMENTUM);
    ck_assert_double_eq(cfg.momentum, 0.5);
    ck_assert_int_eq(cfg.shuffle, 0);
    ck_assert_str_eq(cfg.model_spec, "conv:8");
    ck_assert_str_eq(cfg.model_dir, "/tmp/job");
    ck_assert_int_eq(cfg.num_warnings, 0);
    train_config_free(&cfg);
}
END_TEST

START_TEST(test_model_dir_wins_over_job_dir) {
    clear_env();
    char *argv[] = {"--model_dir=/tmp/m", "--train", "a", "--test", "b", "--job-dir", "/tmp/j",
                    NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "/tmp/m");
    train_config_free(&cfg);
}
END_TEST

START_TEST(test_unknown_flags_warn) {
    clear_env();
    /* SageMaker passes every hyperparameter; a value-less unknown flag takes no value when the
     * next token is a flag */
    char *argv[] = {"--train", "a", "--test", "b", "--hosts", "algo-1", "--enable-foo",
                    "--current_host=algo-1", "stray", NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert(has_warning(&cfg, "--hosts algo-1"));
    ck_assert(has_warning(&cfg, "--enable-foo"));
    ck_assert(has_warning(&cfg, "--current_host"));
    ck_assert(has_warning(&cfg, "'stray'"));
    ck_assert_int_eq(cfg.num_warnings, 4);
    train_config_free(&cfg);
}
END_TEST

/* task.py's argparse takes unambiguous prefixes: so does the trainer (a prefix that was warned
 * about and ignored trained with the default batch size and learning rate); an ambiguous one is
 * a configuration error naming the flags it could be. */
START_TEST(test_abbreviated_flags) {
    clear_env();
    char *argv[] = {"--train", "a", "--test", "b", "--batch", "50", "--learning=0.5",
                    "--job", "/tmp/jx", NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_int_eq(cfg.batch_size, 50);
    ck_assert_double_eq(cfg.learning_rate, 0.5);
    ck_assert_str_eq(cfg.model_dir, "/tmp/jx");
    ck_assert_int_eq(cfg.num_warnings, 0);
    train_config_free(&cfg);
    char *ambiguous[] = {"--train", "a", "--test", "b", "--t", "3", NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, ambiguous), -1);
    ck_assert_msg(strstr(err, "ambiguous option: --t could match --train, --test") != NULL, "%s",
                  err);
    train_config_free(&cfg);
    /* the trainer's own flags take no prefix: a tuning job's --tensorboard True or --eval 3
     * stays an unknown flag, warned about, as under task.py */
    char *extra[] = {"--train", "a", "--test", "b", "--tensorboard", "True", "--eval", "3",
                     "--sm", "x", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, extra) == 0, "%s", err);
    ck_assert_int_eq(cfg.num_warnings, 3);
    ck_assert_ptr_null(cfg.tensorboard_log_dir);
    ck_assert_ptr_null(cfg.sm_model_dir);
    train_config_free(&cfg);
}
END_TEST

/* Each malformed value fails naming its flag. */
START_TEST(test_errors_name_the_flag) {
    static const struct { const char *flag, *value, *needle; } cases[] = {
        {"--steps", "abc", "--steps"},
        {"--steps", "-5", "--steps"},
        {"--steps", "0", "--steps"},   /* TrainSpec: max_steps > 0 */
        {"--batch-size", "-1", "--batch-size"},
        {"--batch_size", "0", "--batch-size"},
        {"--learning-rate", "x", "--learning-rate"},
        {"--learning-rate", "-0.1", "--learning-rate"},
        {"--learning-rate", "nan", "--learning-rate"},
        {"--verbosity", "LOUD", "--verbosity"},
        {"--device", "tpu", "--device"},
        {"--optimizer", "rmsprop", "--optimizer"},
        {"--log-step-count-steps", "0", "--log-step-count-steps"},
        {"--eval-steps", "-1", "--eval-steps"},
        {"--eval-every-steps", "-1", "--eval-every-steps"},
        {"--eval-batch-size", "0", "--eval-batch-size"},
        {"--throttle-secs", "-1", "--throttle-secs"},
        {"--keep-checkpoint-max", "many", "--keep-checkpoint-max"},
        {"--save-checkpoints-secs", "-3", "--save-checkpoints-secs"},
        {"--threads", "1.5", "--threads"},
        {"--threads", "100000", "--threads"},   /* libgomp crashed making them */
        {"--seed", "-2", "--seed"},
        {"--shuffle", "maybe", "--shuffle"},
        {"--job-dir", "hdfs://bucket/job", "--job-dir"},
        {"--exporter-name", "a/b", "--exporter-name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clear_env();
        char *argv[] = {"--train", "a", "--test", "b", (char *)cases[i].flag,
                        (char *)cases[i].value, NULL};
        TrainConfig cfg;
        char err[512] = "";
        ck_assert_msg(parse(&cfg, err, sizeof err, argv) == -1, "%s %s accepted", cases[i].flag,
                      cases[i].value);
        ck_assert_msg(strstr(err, cases[i].needle), "%s %s: message '%s' does not name it",
                      cases[i].flag, cases[i].value, err);
        train_config_free(&cfg);
    }
    /* a flag with no value at the end */
    clear_env();
    char *argv[] = {"--train", "a", "--test", "b", "--steps", NULL};
    TrainConfig cfg;
    char err[512] = "";
    ck_assert_int_eq(parse(&cfg, err, sizeof err, argv), -1);
    ck_assert_ptr_nonnull(strstr(err, "--steps"));
    train_config_free(&cfg);
}
END_TEST

START_TEST(test_missing_data_and_exclusive_cadence) {
    clear_env();
    TrainConfig cfg;
    char err[512];
    char *no_train[] = {"--test", "b", NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, no_train), -1);
    ck_assert_ptr_nonnull(strstr(err, "--train"));
    train_config_free(&cfg);
    char *no_test[] = {"--train", "a", NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, no_test), -1);
    ck_assert_ptr_nonnull(strstr(err, "--test"));
    train_config_free(&cfg);
    char *both[] = {"--train", "a", "--test", "b", "--save-checkpoints-steps", "10",
                    "--save-checkpoints-secs", "60", NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, both), -1);
    ck_assert_ptr_nonnull(strstr(err, "mutually exclusive"));
    train_config_free(&cfg);
}
END_TEST

START_TEST(test_sagemaker_env) {
    clear_env();
    setenv("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training", 1);
    setenv("SM_CHANNEL_EVAL", "/opt/ml/input/data/eval", 1);
    setenv("SM_MODEL_DIR", "/tmp/sm_model", 1);
    setenv("SM_LOG_LEVEL", "40", 1);
    setenv("SM_NUM_GPUS", "0", 1);
    setenv("SM_HOSTS", "[\"algo-1\",\"algo-2\"]", 1);
    setenv("SM_CURRENT_HOST", "algo-2", 1);
    /* SageMaker's default --model_dir is an S3 URI: checkpoints go there, the export also to
     * SM_MODEL_DIR */
    char *argv[] = {"--model_dir", "s3://bucket/job/model", "--batch-size", "50", NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_str_eq(cfg.train_paths[0], "/opt/ml/input/data/training");
    ck_assert_str_eq(cfg.test_paths[0], "/opt/ml/input/data/eval");
    ck_assert_str_eq(cfg.sm_model_dir, "/tmp/sm_model");
    ck_assert_int_eq(cfg.verbosity, TF_LOG_ERROR);
    ck_assert_str_eq(cfg.device, "cpu");
    ck_assert_int_eq(cfg.export_enabled, 0);
    ck_assert_str_eq(cfg.model_dir, "s3://bucket/job/model");
    ck_assert(has_warning(&cfg, "algo-2"));
    train_config_free(&cfg);

    /* SM_CHANNEL_TRAIN wins over SM_CHANNEL_TRAINING, SM_CHANNEL_TEST over SM_CHANNEL_EVAL, and
     * flags over both; --verbosity over SM_LOG_LEVEL */
    setenv("SM_CHANNEL_TRAIN", "/data/train", 1);
    setenv("SM_CHANNEL_TEST", "/data/test", 1);
    char *argv2[] = {"--test", "mine.tfr", "--verbosity", "DEBUG", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, argv2) == 0, "%s", err);
    ck_assert_str_eq(cfg.train_paths[0], "/data/train");
    ck_assert_str_eq(cfg.test_paths[0], "mine.tfr");
    ck_assert_int_eq(cfg.verbosity, TF_LOG_DEBUG);
    train_config_free(&cfg);
    clear_env();
}
END_TEST

/* SageMaker's tuning trials: --model_dir gains /<TRAINING_JOB_NAME>/model, as its TensorFlow
 * container does (not twice, not under /opt/ml); the flag is known, not warned about. */
START_TEST(test_sagemaker_tuning_dir) {
    clear_env();
    setenv("TRAINING_JOB_NAME", "tune-001", 1);
    static const char *const cases[][2] = {
        {"s3://bucket/job/model", "s3://bucket/job/model/tune-001/model"},
        {"s3://bucket/job/model/tune-001/model", "s3://bucket/job/model/tune-001/model"},
        {"/opt/ml/model", "/opt/ml/model"},
        {"/tmp/run", "/tmp/run/tune-001/model"},
    };
    TrainConfig cfg;
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {"--train", "a", "--test", "b", "--_tuning_objective_metric", "accuracy",
                        "--model_dir", (char *)cases[i][0], NULL};
        ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
        ck_assert_str_eq(cfg.model_dir, cases[i][1]);
        ck_assert_int_eq(cfg.num_warnings, 0);
        train_config_free(&cfg);
    }
    /* not a tuning trial: the dir as given */
    char *plain[] = {"--train", "a", "--test", "b", "--model_dir", "s3://bucket/job/model", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, plain) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "s3://bucket/job/model");
    train_config_free(&cfg);
    /* no job name: the dir as given, with a warning; a name with a slash: an error */
    char *tuned[] = {"--train", "a", "--test", "b", "--_tuning_objective_metric", "loss",
                     "--model_dir", "s3://bucket/job/model", NULL};
    unsetenv("TRAINING_JOB_NAME");
    ck_assert_msg(parse(&cfg, err, sizeof err, tuned) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "s3://bucket/job/model");
    ck_assert(has_warning(&cfg, "TRAINING_JOB_NAME"));
    train_config_free(&cfg);
    setenv("TRAINING_JOB_NAME", "../x", 1);
    ck_assert_int_ne(parse(&cfg, err, sizeof err, tuned), 0);
    ck_assert_msg(strstr(err, "TRAINING_JOB_NAME") != NULL, "%s", err);
    train_config_free(&cfg);
    clear_env();
}
END_TEST

/* Without --model_dir/--job-dir, SageMaker's checkpoint directory (<opt_ml>/checkpoints) is the
 * job dir when it is a writable directory, so a spot job resumes; a flag wins over it. */
START_TEST(test_sagemaker_checkpoints_dir) {
    clear_env();
    char root[] = "/tmp/test_opt_ml_XXXXXX", ckpt[64];
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints", root);
    setenv("CNN_OPT_ML", root, 1);
    char *argv[] = {"--train", "a", "--test", "b", NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_ptr_null(cfg.model_dir); /* no checkpoints directory: the trainer's /tmp one */
    train_config_free(&cfg);
    ck_assert_int_eq(mkdir(ckpt, 0700), 0);
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, ckpt);
    ck_assert_int_eq(cfg.model_dir_is_sm_checkpoints, 1);
    train_config_free(&cfg);
    char *flagged[] = {"--train", "a", "--test", "b", "--job-dir", "/tmp/mine", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, flagged) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "/tmp/mine");
    ck_assert_int_eq(cfg.model_dir_is_sm_checkpoints, 0);
    train_config_free(&cfg);
    if (geteuid() != 0) { /* root may write anywhere */
        ck_assert_int_eq(chmod(ckpt, 0500), 0);
        ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
        ck_assert_ptr_null(cfg.model_dir);
        train_config_free(&cfg);
    }
    rmdir(ckpt);
    rmdir(root);
    clear_env();
}
END_TEST

START_TEST(test_tf_config_roles_and_trials) {
    clear_env();
    TrainConfig cfg;
    char err[512];
    char *argv[] = {"--train", "a", "--test", "b", "--job-dir", "/tmp/hp", NULL};

    setenv("TF_CONFIG", "{\"cluster\":{},\"task\":{},\"job\":{\"x\":1},\"environment\":\"cloud\"}",
           1);
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_int_eq(cfg.is_chief, 1);
    ck_assert_str_eq(cfg.model_dir, "/tmp/hp");
    ck_assert_int_eq(cfg.hypertune, 0);
    train_config_free(&cfg);

    setenv("TF_CONFIG", "{\"task\":{\"type\":\"master\",\"index\":0,\"trial\":\"3\"}}", 1);
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_int_eq(cfg.is_chief, 1);
    ck_assert_str_eq(cfg.trial, "3");
    ck_assert_str_eq(cfg.model_dir, "/tmp/hp/3");   /* trials do not clobber each other */
    ck_assert_int_eq(cfg.hypertune, 1);
    train_config_free(&cfg);

    char *no_append[] = {"--train", "a", "--test", "b", "--job-dir", "/tmp/hp",
                         "--append-trial-dir=false", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, no_append) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "/tmp/hp");
    train_config_free(&cfg);

    setenv("TF_CONFIG", "{\"task\":{\"type\":\"worker\",\"index\":1}}", 1);
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_int_eq(cfg.is_chief, 0);
    ck_assert_str_eq(cfg.task_type, "worker");
    ck_assert_int_eq(cfg.task_index, 1);
    train_config_free(&cfg);

    /* no cluster (absent or empty): the Estimator runs worker 0 locally, so it trains; with a
     * cluster, a worker does not; an unknown type is an error naming it */
    static const struct { const char *json; int chief; } roles[] = {
        {"{\"cluster\":{},\"task\":{\"type\":\"worker\",\"index\":0}}", 1},
        {"{\"task\":{\"type\":\"worker\"}}", 1},
        {"{\"cluster\":null,\"task\":{\"type\":\"worker\",\"index\":0}}", 1},
        {"{\"cluster\":{},\"task\":{\"type\":\"worker\",\"index\":2}}", 0},
        {"{\"cluster\":{\"worker\":[\"w:1\"]},\"task\":{\"type\":\"worker\",\"index\":0}}", 0},
        {"{\"cluster\":{},\"task\":{\"type\":\"evaluator\",\"index\":0}}", 0},
        {"{\"cluster\":{},\"task\":{\"type\":\"ps\",\"index\":0}}", 0},
        {"{\"cluster\":{\"chief\":[\"c:1\"]},\"task\":{\"type\":\"chief\",\"index\":0}}", 1},
        /* Vertex AI's worker-pool names: pool 0 is the primary replica */
        {"{\"cluster\":{\"workerpool0\":[\"p:1\"]},\"task\":{\"type\":\"workerpool0\",\"index\":0}}", 1},
        {"{\"cluster\":{\"workerpool0\":[\"p:1\"],\"workerpool1\":[\"w:1\"]},\"task\":{\"type\":\"workerpool1\",\"index\":0}}", 0},
        {"{\"cluster\":{},\"task\":{\"type\":\"workerpool3\",\"index\":0}}", 0},
    };
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        setenv("TF_CONFIG", roles[i].json, 1);
        ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
        ck_assert_msg(cfg.is_chief == roles[i].chief, "%s", roles[i].json);
        train_config_free(&cfg);
    }
    setenv("TF_CONFIG", "{\"task\":{\"type\":\"foo\",\"index\":0}}", 1);
    ck_assert_int_eq(parse(&cfg, err, sizeof err, argv), -1);
    ck_assert_msg(strstr(err, "TF_CONFIG") && strstr(err, "'foo'"), "%s", err);
    train_config_free(&cfg);

    setenv("TF_CONFIG", "{not json", 1);
    ck_assert_int_eq(parse(&cfg, err, sizeof err, argv), -1);
    ck_assert_ptr_nonnull(strstr(err, "TF_CONFIG"));
    train_config_free(&cfg);

    clear_env();
    setenv("CLOUD_ML_HP_METRIC_FILE", "/tmp/hp/metrics", 1);
    setenv("CLOUD_ML_TRIAL_ID", "5", 1);
    ck_assert_msg(parse(&cfg, err, sizeof err, argv) == 0, "%s", err);
    ck_assert_int_eq(cfg.hypertune, 1);
    ck_assert_str_eq(cfg.hypertune_path, "/tmp/hp/metrics");
    ck_assert_str_eq(cfg.hypertune_tag, "accuracy");
    ck_assert_str_eq(cfg.trial, "5");
    ck_assert_str_eq(cfg.model_dir, "/tmp/hp");     /* only TF_CONFIG's trial names a dir */
    train_config_free(&cfg);
    clear_env();
}
END_TEST

/* Vertex AI's variables (baseOutputDirectory, with a tuning trial's id in them already): the job
 * dir, the in-place export and the events' mirror; flags win; trailing '/'s go; an empty flag
 * turns a variable off; a root, a foreign scheme, or an output inside AIP_MODEL_DIR (which the
 * export replaces) is an error naming the variable. */
START_TEST(test_vertex_dirs) {
    clear_env();
    setenv("AIP_MODEL_DIR", "gs://b/out/7/model/", 1);
    setenv("AIP_CHECKPOINT_DIR", "gs://b/out/7/checkpoints/", 1);
    setenv("AIP_TENSORBOARD_LOG_DIR", "gs://b/out/7/logs/", 1);
    setenv("CLOUD_ML_TRIAL_ID", "7", 1);
    TrainConfig cfg;
    char err[512];
    char *plain[] = {"--train", "a", "--test", "b", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, plain) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "gs://b/out/7/checkpoints");   /* no second /7 */
    ck_assert_str_eq(cfg.aip_model_dir, "gs://b/out/7/model");
    ck_assert_str_eq(cfg.tensorboard_log_dir, "gs://b/out/7/logs");
    ck_assert_int_eq(cfg.hypertune, 1);                            /* a trial: report */
    ck_assert_ptr_null(cfg.hypertune_path);                        /* the library's default */
    ck_assert_str_eq(cfg.trial, "7");
    train_config_free(&cfg);
    setenv("TF_CONFIG", "{\"task\": {\"type\": \"chief\", \"index\": 0, \"trial\": \"7\"}}", 1);
    ck_assert_msg(parse(&cfg, err, sizeof err, plain) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "gs://b/out/7/checkpoints");
    train_config_free(&cfg);
    /* a flag's job dir wins, and gets the trial; the same dir as the logs: no mirror */
    char *flags[] = {"--train", "a", "--test", "b", "--job-dir", "gs://b/job/",
                     "--tensorboard-log-dir", "gs://b/job/7", "--aip-model-dir=", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, flags) == 0, "%s", err);
    ck_assert_str_eq(cfg.model_dir, "gs://b/job/7");
    ck_assert_ptr_null(cfg.tensorboard_log_dir);
    ck_assert_ptr_null(cfg.aip_model_dir);
    train_config_free(&cfg);
    unsetenv("TF_CONFIG");
    static const char *const bad[][3] = {
        {"AIP_MODEL_DIR", "gs://b/", "root of the bucket"},
        {"AIP_MODEL_DIR", "gs://b", "root of the bucket"},
        {"AIP_MODEL_DIR", "/", "root of the file system"},
        {"AIP_MODEL_DIR", "http://b/out/model", "only local paths"},
        {"AIP_CHECKPOINT_DIR", "ftp://b/out", "only local paths"},
        {"AIP_MODEL_DIR", "gs://b/out/7", "the job dir (gs://b/out/7/checkpoints) lies inside"},
        {"AIP_MODEL_DIR", "gs://b/out/7/logs", "AIP_TENSORBOARD_LOG_DIR (gs://b/out/7/logs)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("AIP_MODEL_DIR", "gs://b/out/7/model/", 1);
        setenv("AIP_CHECKPOINT_DIR", "gs://b/out/7/checkpoints/", 1);
        setenv(bad[i][0], bad[i][1], 1);
        ck_assert_int_eq(parse(&cfg, err, sizeof err, plain), -1);
        ck_assert_msg(strstr(err, bad[i][0]) && strstr(err, bad[i][2]), "%s: %s", bad[i][1], err);
        train_config_free(&cfg);
    }
    /* local paths compare as absolute, normalised paths: another spelling of the job dir is the
     * job dir (no mirror); the model dir may lie in the job dir, but not in its eval/ or
     * export/, nor hold the job dir under a relative name */
    clear_env();
    char cwd[2048], abs_m2[2200];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(abs_m2, sizeof abs_m2, "%s/m2", cwd);
    static const char *const local_cases[][4] = {
        /* job dir, log dir, model dir, error ("" = none) */
        {"j5", "./j5/", "", ""},
        {"j5", "", "j5/model", ""},
        {"j5", "", "./j5/../j5/eval", "the job dir's eval/"},
        {"j5", "", "j5/export/exporter", "the job dir's export/"},
        {"j5", "j5/logs", "j5/logs/model", "--tensorboard-log-dir"},
        {"m2/job", "", NULL, "the job dir (m2/job) lies inside it"},
    };
    for (size_t i = 0; i < sizeof local_cases / sizeof local_cases[0]; i++) {
        const char *const *c = local_cases[i];
        char *argv_local[] = {"--train", "a", "--test", "b", "--job-dir", (char *)c[0],
                              "--tensorboard-log-dir", (char *)c[1], "--aip-model-dir",
                              (char *)(c[2] ? c[2] : abs_m2), NULL};
        const int rc = parse(&cfg, err, sizeof err, argv_local);
        if (c[3][0]) {
            ck_assert_int_eq(rc, -1);
            ck_assert_msg(strstr(err, c[3]) != NULL, "case %zu: %s", i, err);
        } else {
            ck_assert_msg(rc == 0, "case %zu: %s", i, err);
            if (i == 0) ck_assert_ptr_null(cfg.tensorboard_log_dir);
        }
        train_config_free(&cfg);
    }

    /* not the same prefix: gs://b/out/7/model2 is not inside gs://b/out/7/model */
    setenv("AIP_MODEL_DIR", "gs://b/out/7/model", 1);
    setenv("AIP_CHECKPOINT_DIR", "gs://b/out/7/model2", 1);
    ck_assert_msg(parse(&cfg, err, sizeof err, plain) == 0, "%s", err);
    train_config_free(&cfg);
    clear_env();
}
END_TEST

START_TEST(test_help_and_describe) {
    clear_env();
    char *argv[] = {"--help", NULL};
    TrainConfig cfg;
    char err[512];
    ck_assert_int_eq(parse(&cfg, err, sizeof err, argv), 0);
    ck_assert_int_eq(cfg.show_help, 1);
    train_config_free(&cfg);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    train_config_print_help(f);
    fclose(f);
    static const char *const flags[] = {"--train", "--test", "--steps", "--batch-size",
        "--learning-rate", "--verbosity", "--job-dir", "--model-dir", "--seed", "--device",
        "--eval-steps", "--eval-every-steps", "--eval-batch-size", "--log-step-count-steps",
        "--threads", "--save-checkpoints-steps",
        "--save-checkpoints-secs", "--keep-checkpoint-max", "--exports-to-keep", "--model"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        ck_assert_msg(strstr(buf, flags[i]), "help lacks %s", flags[i]);
    free(buf);

    char *argv2[] = {"--train", "a", "--test", "b", "--job-dir", "/tmp/d", NULL};
    ck_assert_int_eq(parse(&cfg, err, sizeof err, argv2), 0);
    char line[2048];
    train_config_describe(&cfg, line, sizeof line);
    ck_assert_ptr_nonnull(strstr(line, "'model_dir': '/tmp/d'"));
    ck_assert_ptr_nonnull(strstr(line, "'learning_rate': 0.001"));
    train_config_free(&cfg);
}
END_TEST

static Suite *train_config_suite(void) {
    Suite *s = suite_create("train_config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_flag_forms);
    tcase_add_test(tc, test_model_dir_wins_over_job_dir);
    tcase_add_test(tc, test_unknown_flags_warn);
    tcase_add_test(tc, test_abbreviated_flags);
    tcase_add_test(tc, test_errors_name_the_flag);
    tcase_add_test(tc, test_missing_data_and_exclusive_cadence);
    tcase_add_test(tc, test_sagemaker_env);
    tcase_add_test(tc, test_sagemaker_tuning_dir);
    tcase_add_test(tc, test_sagemaker_checkpoints_dir);
    tcase_add_test(tc, test_tf_config_roles_and_trials);
    tcase_add_test(tc, test_vertex_dirs);
    tcase_add_test(tc, test_help_and_describe);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(train_config_suite());
}
