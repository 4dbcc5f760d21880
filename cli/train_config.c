/* train_config.c: flags + environment -> TrainConfig (see train_config.h). */
#include "cli/train_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/args.h"
#include "io/fs.h"

/* Every flag of task.py, the Estimator's RunConfig and the platforms' conventions. Names are
 * canonical with dashes; `_` spellings match too (args.h). Values that SageMaker renders as
 * `--flag True` are ARG_VALUE, not ARG_BOOL, so the value is not mistaken for a positional. */
static const ArgSpec kSpecs[] = {
    {"train", "train-file,train-files,train-data", ARG_LIST, "PATH...",
     "training TFRecords: files, directories or globs, local, gs:// or s3:// (default "
     "$SM_CHANNEL_TRAIN, $SM_CHANNEL_TRAINING)"},
    {"test", "test-file,test-files,eval-file,eval-files,eval-data", ARG_LIST, "PATH...",
     "evaluation TFRecords (default $SM_CHANNEL_TEST, $SM_CHANNEL_EVAL, $SM_CHANNEL_TESTING)"},
    {"steps", "train-steps,max-steps", ARG_VALUE, "N",
     "train until global step N, absolute like TrainSpec.max_steps (default 12000)"},
    {"batch-size", "train-batch-size", ARG_VALUE, "N", "examples per step (default 100)"},
    {"learning-rate", "lr", ARG_VALUE, "X", "optimizer learning rate (default 0.001)"},
    {"optimizer", NULL, ARG_VALUE, "adam|sgd|momentum", "optimizer (default adam)"},
    {"momentum", NULL, ARG_VALUE, "X", "momentum of --optimizer momentum (default 0.9)"},
    {"seed", "random-seed,tf-random-seed", ARG_VALUE, "N",
     "seed of initialisation, dropout and shuffle order (default 0)"},
    {"shuffle", NULL, ARG_VALUE, "true|false",
     "reshuffle the training set each epoch (default true)"},
    {"model", "model-spec", ARG_VALUE, "SPEC", "layer list of another sequential CNN (default: "
     "the original MNIST CNN)"},
    {"device", NULL, ARG_VALUE, "cpu|cuda|cudnn|auto",
     "where to train (default auto: a GPU when present, unless $SM_NUM_GPUS is 0)"},
    {"threads", NULL, ARG_VALUE, "N", "CPU threads (default 0: the cores others leave free)"},
    {"verbosity", "log-level", ARG_VALUE, "LEVEL",
     "DEBUG, INFO, WARN, ERROR or FATAL (default INFO, or $SM_LOG_LEVEL)"},
    {"log-step-count-steps", NULL, ARG_VALUE, "N",
     "steps between loss lines and global_step/sec (default 100)"},
    {"save-summary-steps", NULL, ARG_VALUE, "N",
     "steps between training loss summaries in the events file (default 100, 0 = none)"},
    {"eval-every-steps", NULL, ARG_VALUE, "N",
     "also evaluate (without an export) every N steps (default 0: after checkpoints, see "
     "--throttle-secs, and at the end)"},
    {"eval-steps", NULL, ARG_VALUE, "N",
     "evaluate the first N batches of --eval-batch-size examples, as EvalSpec.steps (default 0: "
     "the whole test set)"},
    {"eval-batch-size", NULL, ARG_VALUE, "N", "the batch of --eval-steps (default --batch-size)"},
    {"throttle-secs", NULL, ARG_VALUE, "S",
     "after a checkpoint, evaluate and export only when S seconds have passed since the last "
     "such evaluation, as EvalSpec.throttle_secs (default 600)"},
    {"save-checkpoints-steps", NULL, ARG_VALUE, "N", "checkpoint every N steps"},
    {"save-checkpoints-secs", NULL, ARG_VALUE, "S",
     "checkpoint every S seconds (default 600 when neither is given)"},
    {"keep-checkpoint-max", NULL, ARG_VALUE, "N", "checkpoints kept (default 5, 0 = all)"},
    {"job-dir", NULL, ARG_VALUE, "DIR",
     "output directory: checkpoints, events, export (default $AIP_CHECKPOINT_DIR)"},
    {"model-dir", NULL, ARG_VALUE, "DIR", "the same as --job-dir (wins when both are given)"},
    {"sm-model-dir", NULL, ARG_VALUE, "DIR",
     "also export to DIR/<version>/, the newest only (default $SM_MODEL_DIR)"},
    {"aip-model-dir", NULL, ARG_VALUE, "DIR",
     "also export into DIR itself, replacing the SavedModel there: Vertex AI's layout (default "
     "$AIP_MODEL_DIR)"},
    {"tensorboard-log-dir", NULL, ARG_VALUE, "DIR",
     "also write the event files into DIR and DIR/eval (default $AIP_TENSORBOARD_LOG_DIR)"},
    {"exporter-name", NULL, ARG_VALUE, "NAME",
     "exports go to <job-dir>/export/NAME/<unix secs>/ (default exporter)"},
    {"exports-to-keep", NULL, ARG_VALUE, "N",
     "exports kept under <job-dir>/export/NAME/ (default 5, 0 = all)"},
    {"hypertune-tag", "metric-tag,hyperparameter-metric-tag", ARG_VALUE, "TAG",
     "metric reported for hyperparameter tuning (default accuracy)"},
    {"append-trial-dir", NULL, ARG_VALUE, "true|false",
     "in a tuning trial, write into <job-dir>/<trial id> (default true)"},
    {"_tuning_objective_metric", NULL, ARG_VALUE, "METRIC",
     "set by SageMaker in a tuning job's trials: a --model-dir outside /opt/ml becomes "
     "<model-dir>/$TRAINING_JOB_NAME/model"},
    {"help", "h", ARG_BOOL, NULL, "show this help and exit"},
};
enum { kNumSpecs = (int)(sizeof kSpecs / sizeof kSpecs[0]) };
/* The original task.py's flags (user-expectations), whose argparse took their prefixes
 * (`--batch 50`). The trainer's own flags take none, so that a platform's or a tuning job's
 * extra flag (`--tensorboard True`) stays an unknown flag, warned about, as under task.py. */
static const char kTaskPyFlags[] = "train,train-file,test,test-file,steps,batch-size,"
                                   "learning-rate,verbosity,job-dir,model-dir";
enum { MAX_THREADS = 1024 };   /* --threads: more than any machine this runs on has cores */

typedef struct {
    ArgParse ap;
    char *strings[8];       /* strings owned by the config (freed with it) */
    int nstrings;
} ConfigPriv;

static char *keep_string(TrainConfig *cfg, char *s) {
    ConfigPriv *p = cfg->priv_;
    if (s && p->nstrings < (int)(sizeof p->strings / sizeof p->strings[0]))
        p->strings[p->nstrings++] = s;
    return s;
}

static void warn(TrainConfig *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(TrainConfig *cfg, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(cfg->warnings, sizeof(char *) * (size_t)(cfg->num_warnings + 1));
    if (!w) return;
    cfg->warnings = w;
    if ((w[cfg->num_warnings] = strdup(buf))) cfg->num_warnings++;
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* A list flag, or else the first set environment variable of names (a SageMaker channel). */
static void paths_from(const ArgParse *ap, const char *flag, const char *const *env_names,
                       const char ***paths, int *n) {
    const ArgValue *v = args_value(ap, flag);
    if (v && v->nvalues > 0) {
        *paths = v->values;
        *n = v->nvalues;
        return;
    }
    for (int i = 0; env_names[i]; i++) {
        const char *e = env_nonempty(env_names[i]);
        if (e) {
            static const char *one[2][1];   /* [0] train, [1] test: points into environ */
            int slot = strcmp(flag, "train") == 0 ? 0 : 1;
            one[slot][0] = e;
            *paths = one[slot];
            *n = 1;
            return;
        }
    }
    *paths = NULL;
    *n = 0;
}

/* Range checks share one message form: "--steps: -5 must be >= 0". */
static int check_min64(const char *flag, int64_t v, int64_t min, char *err, size_t errlen) {
    if (v >= min) return 0;
    snprintf(err, errlen, "--%s: %lld must be >= %lld", flag, (long long)v, (long long)min);
    return -1;
}

/* TF_CONFIG (AI Platform, user-expectations §1.2): the task's role and the tuning trial. The
 * chief trains: type chief or master, or, with no cluster (absent or empty), no type or
 * worker 0, as the Estimator runs such a task locally; other known types do nothing (exit 0),
 * an unknown type is an error. */
static int parse_tf_config(TrainConfig *cfg, char *err, size_t errlen) {
    snprintf(cfg->task_type, sizeof cfg->task_type, "chief");
    cfg->is_chief = 1;
    const char *text = env_nonempty("TF_CONFIG");
    if (!text) return 0;
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(err, errlen, "TF_CONFIG: not a JSON object");
        return -1;
    }
    const cJSON *cluster = cJSON_GetObjectItemCaseSensitive(root, "cluster");
    const int no_cluster = !cluster || cJSON_IsNull(cluster) ||
                           (cJSON_IsObject(cluster) && !cluster->child);
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
    if (cJSON_IsObject(task)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(task, "type");
        const cJSON *index = cJSON_GetObjectItemCaseSensitive(task, "index");
        const cJSON *trial = cJSON_GetObjectItemCaseSensitive(task, "trial");
        if (cJSON_IsString(type) && type->valuestring[0])
            snprintf(cfg->task_type, sizeof cfg->task_type, "%s", type->valuestring);
        if (cJSON_IsNumber(index)) cfg->task_index = index->valueint;
        if (cJSON_IsString(trial) && trial->valuestring[0]) {
            cfg->trial = keep_string(cfg, strdup(trial->valuestring));
        } else if (cJSON_IsNumber(trial)) {
            char buf[32];
            snprintf(buf, sizeof buf, "%d", trial->valueint);
            cfg->trial = keep_string(cfg, strdup(buf));
        }
    }
    cJSON_Delete(root);
    if (cfg->trial && (strchr(cfg->trial, '/') || strcmp(cfg->trial, "..") == 0)) {
        snprintf(err, errlen, "TF_CONFIG: task.trial '%s' is not a trial id", cfg->trial);
        return -1;
    }
    /* TensorFlow's names; Vertex AI's worker pools (its CLUSTER_SPEC's workerpool0..3: the
     * primary replica, workers, parameter servers, evaluators) are read as the same roles */
    static const char *const known[] = {"chief", "master", "worker", "ps", "evaluator"};
    static const char *const pools[] = {"workerpool0", "workerpool1", "workerpool2",
                                        "workerpool3"};
    const char *role = NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(cfg->task_type, known[i]) == 0) role = known[i];
    for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++)
        if (strcmp(cfg->task_type, pools[i]) == 0) role = known[i == 0 ? 0 : i + 1];
    if (!role) {
        snprintf(err, errlen, "TF_CONFIG: task.type '%s' is none of chief, master, worker, ps, "
                 "evaluator (or Vertex AI's workerpool0..3)", cfg->task_type);
        return -1;
    }
    cfg->is_chief = strcmp(role, "chief") == 0 || strcmp(role, "master") == 0 ||
                    (no_cluster && strcmp(role, "worker") == 0 && cfg->task_index == 0);
    return 0;
}

/* SageMaker: only the first host exports (SM_HOSTS = ["algo-1", ...], SM_CURRENT_HOST). */
static void parse_sm_hosts(TrainConfig *cfg) {
    cfg->export_enabled = 1;
    const char *hosts = env_nonempty("SM_HOSTS"), *current = env_nonempty("SM_CURRENT_HOST");
    if (!hosts || !current) return;
    cJSON *list = cJSON_Parse(hosts);
    const cJSON *first = cJSON_IsArray(list) ? cJSON_GetArrayItem(list, 0) : NULL;
    if (cJSON_IsString(first) && strcmp(first->valuestring, current) != 0) {
        cfg->export_enabled = 0;
        warn(cfg, "SM_CURRENT_HOST %s is not SM_HOSTS[0] (%s): this host will not export",
             current, first->valuestring);
    }
    cJSON_Delete(list);
}

static int is_remote(const char *path) { return strstr(path, "://") != NULL; }

const char *train_config_opt_ml(void) {
    const char *root = env_nonempty("CNN_OPT_ML");
    return root ? root : "/opt/ml";
}

/* Whether path is a directory this process may write into. */
static int writable_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && access(path, W_OK | X_OK) == 0;
}

/* dir + "/" + a + (b ? "/" + b : ""), malloc'd; NULL out of memory. */
static char *path_join(const char *dir, const char *a, const char *b) {
    const size_t n = strlen(dir) + strlen(a) + (b ? strlen(b) + 1 : 0) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s%s%s", dir, a, b ? "/" : "", b ? b : "");
    return p;
}

/* SageMaker's tuning trials each get <dir>/<training job name>/model, as its TensorFlow
 * container does before starting the script (so a dir that already ends so is left as it is,
 * as is one under /opt/ml, SageMaker's checkpoint directory included). Returns the new dir
 * (malloc'd), dir itself when it stays, or NULL with err set. */
static char *sm_tuning_dir(TrainConfig *cfg, char *dir, char *err, size_t errlen) {
    const ArgParse *ap = &((ConfigPriv *)cfg->priv_)->ap;
    if (!args_has(ap, "_tuning_objective_metric") || strncmp(dir, "/opt/ml", 7) == 0 ||
        cfg->model_dir_is_sm_checkpoints)
        return dir;
    const char *job = env_nonempty("TRAINING_JOB_NAME");
    if (!job) {
        warn(cfg, "--_tuning_objective_metric without TRAINING_JOB_NAME: this tuning trial "
                  "writes into %s itself", dir);
        return dir;
    }
    if (strchr(job, '/') || strcmp(job, "..") == 0 || strcmp(job, ".") == 0) {
        snprintf(err, errlen, "TRAINING_JOB_NAME '%s' is not a job name", job);
        return NULL;
    }
    char *tail = path_join("", job, "model"); /* "/<job>/model" */
    if (!tail) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const size_t nd = strlen(dir), nt = strlen(tail);
    const int already = nd >= nt && strcmp(dir + nd - nt, tail) == 0;
    free(tail);
    if (already) return dir;
    char *with_job = path_join(dir, job, "model");
    if (!with_job) snprintf(err, errlen, "out of memory");
    return with_job;
}

/* A directory a flag or variable names: empty, a URL scheme io/fs.h does not serve, or (with
 * not_root) a file-system or bucket root is an error naming `what`. Trailing '/'s go (Vertex
 * AI's variables end with one). The result is malloc'd (kept by cfg); NULL with err set. */
static char *checked_dir(TrainConfig *cfg, const char *what, const char *dir, int not_root,
                         char *err, size_t errlen) {
    if (!*dir) {
        snprintf(err, errlen, "%s: empty path", what);
        return NULL;
    }
    if (is_remote(dir) && !fs_is_remote(dir)) {
        snprintf(err, errlen, "%s %s: only local paths, gs:// and s3:// are supported", what, dir);
        return NULL;
    }
    char *d = keep_string(cfg, strdup(dir));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const size_t keep = is_remote(d) ? (size_t)(strstr(d, "://") - d) + 3 : 1; /* "gs://", "/" */
    for (size_t n = strlen(d); n > keep && d[n - 1] == '/'; n--) d[n - 1] = 0;
    /* what lies below the root: after "scheme://bucket/", or after the leading '/'s */
    const char *below = is_remote(d) ? strchr(strstr(d, "://") + 3, '/') : d;
    if (below) below += strspn(below, "/");
    if (not_root && (!below || !*below)) {
        snprintf(err, errlen, "%s %s: a directory below the root of the %s is needed", what, dir,
                 is_remote(d) ? "bucket" : "file system");
        return NULL;
    }
    return d;
}

/* The job dir: --model-dir, else --job-dir, else Vertex AI's AIP_CHECKPOINT_DIR (already one
 * per tuning trial), else SageMaker's checkpoint directory (<opt_ml>/checkpoints,
 * CheckpointConfig.LocalPath's default) when it is a writable directory: SageMaker copies it to
 * checkpoint_s3_uri and back when a spot job restarts, so the job resumes. gs:// and s3:// are
 * written directly (io/fs.h); other URL schemes are refused. */
static int resolve_model_dir(TrainConfig *cfg, char *err, size_t errlen) {
    const ArgParse *ap = &((ConfigPriv *)cfg->priv_)->ap;
    const char *flag = args_has(ap, "model-dir") ? "--model-dir" : "--job-dir";
    const char *dir = args_get(ap, flag + 2, NULL);
    int per_trial = 0;
    char checkpoints[4096];
    if (!dir && (dir = env_nonempty("AIP_CHECKPOINT_DIR"))) {
        flag = "AIP_CHECKPOINT_DIR";
        per_trial = 1;
    }
    if (!dir) {
        snprintf(checkpoints, sizeof checkpoints, "%s/checkpoints", train_config_opt_ml());
        if (!writable_dir(checkpoints)) return 0;
        dir = checkpoints;
        cfg->model_dir_is_sm_checkpoints = 1;
    }
    char *checked = checked_dir(cfg, flag, dir, 0, err, errlen);
    if (!checked) return -1;
    if (per_trial) {
        cfg->model_dir = checked;
        return 0;
    }
    char *resolved = strdup(checked);
    if (!resolved) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *tuned = sm_tuning_dir(cfg, resolved, err, errlen);
    if (tuned != resolved) {
        free(resolved);
        if (!tuned) return -1;
        resolved = tuned;
    }
    /* Tuning trials must not clobber each other: <dir>/<trial> (Google's samples do this). */
    int append = 1;
    if (args_has(ap, "append-trial-dir") &&
        args_parse_bool("--append-trial-dir", args_get(ap, "append-trial-dir", NULL), &append, err,
                        errlen) != 0) {
        free(resolved);
        return -1;
    }
    if (cfg->trial && append) {
        size_t n = strlen(resolved) + strlen(cfg->trial) + 2;
        char *with_trial = malloc(n);
        if (!with_trial) {
            free(resolved);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        snprintf(with_trial, n, "%s/%s", resolved, cfg->trial);
        free(resolved);
        resolved = with_trial;
    }
    cfg->model_dir = keep_string(cfg, resolved);
    return 0;
}

/* What the directory checks compare: a local path made absolute (the working directory before
 * a relative one) with "//", "/." and "/x/.." collapsed (symlinks are not followed); a bucket
 * path as it is. */
static void path_key(const char *path, char *out, size_t cap) {
    if (is_remote(path)) {
        snprintf(out, cap, "%s", path);
        return;
    }
    char joined[8192], cwd[4096];
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd))
        snprintf(joined, sizeof joined, "%s", path);
    else
        snprintf(joined, sizeof joined, "%s/%s", cwd, path);
    size_t n = 0;
    out[0] = 0;
    char *save = NULL;
    for (char *part = strtok_r(joined, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, ".") == 0) continue;
        if (strcmp(part, "..") == 0) {
            while (n > 0 && out[n - 1] != '/') n--;
            if (n > 0) n--;          /* the '/' before the dropped component */
            out[n] = 0;
            continue;
        }
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "/%s", part);
        if (n >= cap) n = cap - 1;
    }
    if (n == 0) snprintf(out, cap, "/");
}

/* 1 when path is dir or lies under it (both path_key'd). */
static int path_within(const char *path, const char *dir) {
    char p[4096], d[4096];
    path_key(path, p, sizeof p);
    path_key(dir, d, sizeof d);
    const size_t n = strlen(d);
    return strncmp(p, d, n) == 0 && (p[n] == 0 || p[n] == '/' || (n == 1 && d[0] == '/'));
}

/* Vertex AI (user-expectations §1.2): the SavedModel also into AIP_MODEL_DIR itself (its Model
 * Registry imports saved_model.pb from there), the event files also into
 * AIP_TENSORBOARD_LOG_DIR (what its TensorBoard uploads). An empty flag turns either off. The
 * export replaces AIP_MODEL_DIR whole, so no other output may lie inside it, nor it inside one
 * of theirs: the job dir's eval/ and export/, the log dir, --sm-model-dir. */
static int vertex_dirs(TrainConfig *cfg, char *err, size_t errlen) {
    const ArgParse *ap = &((ConfigPriv *)cfg->priv_)->ap;
    const char *model = args_get(ap, "aip-model-dir", env_nonempty("AIP_MODEL_DIR"));
    const char *model_what = args_has(ap, "aip-model-dir") ? "--aip-model-dir" : "AIP_MODEL_DIR";
    const char *logs = args_get(ap, "tensorboard-log-dir", env_nonempty("AIP_TENSORBOARD_LOG_DIR"));
    const char *logs_what =
        args_has(ap, "tensorboard-log-dir") ? "--tensorboard-log-dir" : "AIP_TENSORBOARD_LOG_DIR";
    if (model && *model && !(cfg->aip_model_dir = checked_dir(cfg, model_what, model, 1, err,
                                                              errlen)))
        return -1;
    if (logs && *logs &&
        !(cfg->tensorboard_log_dir = checked_dir(cfg, logs_what, logs, 0, err, errlen)))
        return -1;
    if (cfg->tensorboard_log_dir && cfg->model_dir &&
        path_within(cfg->tensorboard_log_dir, cfg->model_dir) &&
        path_within(cfg->model_dir, cfg->tensorboard_log_dir))
        cfg->tensorboard_log_dir = NULL;   /* the job dir itself: the events are there already */
    const char *aip = cfg->aip_model_dir;
    if (!aip) return 0;
    char eval[4200] = "", exported[4200] = "";
    if (cfg->model_dir) {
        snprintf(eval, sizeof eval, "%s/eval", cfg->model_dir);
        snprintf(exported, sizeof exported, "%s/export", cfg->model_dir);
    }
    const struct { const char *dir, *what; int both_ways; } other[] = {
        {cfg->model_dir, "the job dir", 0},  /* AIP_MODEL_DIR may lie in the job dir, apart */
        {eval[0] ? eval : NULL, "the job dir's eval/", 1},
        {exported[0] ? exported : NULL, "the job dir's export/", 1},
        {cfg->tensorboard_log_dir, logs_what, 1},
        {cfg->sm_model_dir, "--sm-model-dir", 1},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        const char *o = other[i].dir;
        if (!o || (!path_within(o, aip) && !(other[i].both_ways && path_within(aip, o))))
            continue;
        snprintf(err, errlen, "%s %s: %s (%s) %s, and the export replaces the whole directory",
                 model_what, aip, other[i].what, o,
                 path_within(o, aip) ? "lies inside it" : "holds it");
        return -1;
    }
    return 0;
}

int train_config_parse(TrainConfig *cfg, int argc, char **argv, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    ConfigPriv *priv = calloc(1, sizeof *priv);
    if (!priv) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cfg->priv_ = priv;
    ArgParse *ap = &priv->ap;
    if (args_parse(ap, kSpecs, kNumSpecs, argc, argv, kTaskPyFlags, err, errlen) != 0) return -1;
    if (args_has(ap, "help")) {
        cfg->show_help = 1;
        return 0;
    }
    for (int i = 0; i < ap->nunknown; i++) {
        const ArgUnknown *u = &ap->unknown[i];
        warn(cfg, "ignoring unknown flag %.*s%s%s", u->flag_len, u->flag,
             u->value ? " " : "", u->value ? u->value : "");
    }
    for (int i = 0; i < ap->npositionals; i++)
        warn(cfg, "ignoring argument '%s' (not a flag)", ap->positionals[i]);

    /* verbosity first: --verbosity, else SageMaker's SM_LOG_LEVEL (10..50) */
    cfg->verbosity = TF_LOG_INFO;
    const char *verbosity = args_get(ap, "verbosity", NULL);
    if (verbosity && tf_log_parse_level(verbosity, &cfg->verbosity) != 0) {
        snprintf(err, errlen, "--verbosity: '%s' is not one of DEBUG, INFO, WARN, ERROR, FATAL",
                 verbosity);
        return -1;
    }
    const char *sm_level = env_nonempty("SM_LOG_LEVEL");
    if (!verbosity && sm_level && tf_log_parse_level(sm_level, &cfg->verbosity) != 0)
        warn(cfg, "SM_LOG_LEVEL '%s' is not a log level; using INFO", sm_level);

    /* data */
    static const char *const train_env[] = {"SM_CHANNEL_TRAIN", "SM_CHANNEL_TRAINING", NULL};
    static const char *const test_env[] = {"SM_CHANNEL_TEST", "SM_CHANNEL_EVAL",
                                           "SM_CHANNEL_TESTING", NULL};
    paths_from(ap, "train", train_env, &cfg->train_paths, &cfg->num_train);
    paths_from(ap, "test", test_env, &cfg->test_paths, &cfg->num_test);
    if (cfg->num_train == 0) {
        snprintf(err, errlen, "--train: no training data given (flag --train/--train-file, or "
                 "SM_CHANNEL_TRAIN)");
        return -1;
    }
    if (cfg->num_test == 0) {
        snprintf(err, errlen, "--test: no evaluation data given (flag --test/--test-file/"
                 "--eval-file, or SM_CHANNEL_TEST/SM_CHANNEL_EVAL)");
        return -1;
    }
    if (args_parse_bool("--shuffle", args_get(ap, "shuffle", "true"), &cfg->shuffle, err,
                        errlen) != 0)
        return -1;

    /* model and optimisation */
    cfg->model_spec = args_get(ap, "model", NULL);
    if (cfg->model_spec && !*cfg->model_spec) cfg->model_spec = NULL;
    int64_t seed = 0;
    static const char *const optimizers[] = {"adam", "sgd", "momentum", NULL};
    static const char *const devices[] = {"cpu", "cuda", "cudnn", "auto", NULL};
    int optimizer = 0, device = 3;
    if (args_get_int64(ap, "steps", 12000, &cfg->steps, err, errlen) ||
        check_min64("steps", cfg->steps, 1, err, errlen) ||
        args_get_int(ap, "batch-size", 100, &cfg->batch_size, err, errlen) ||
        check_min64("batch-size", cfg->batch_size, 1, err, errlen) ||
        args_get_double(ap, "learning-rate", 0.001, &cfg->learning_rate, err, errlen) ||
        args_get_enum(ap, "optimizer", optimizers, 0, &optimizer, err, errlen) ||
        args_get_double(ap, "momentum", 0.9, &cfg->momentum, err, errlen) ||
        args_get_int64(ap, "seed", 0, &seed, err, errlen) ||
        check_min64("seed", seed, 0, err, errlen) ||
        args_get_enum(ap, "device", devices, 3, &device, err, errlen) ||
        args_get_int(ap, "threads", 0, &cfg->threads, err, errlen) ||
        check_min64("threads", cfg->threads, 0, err, errlen))
        return -1;
    /* OpenMP makes them all at once: tens of thousands crash libgomp or exhaust the process
     * limit after the data is loaded, where this fails before any work */
    if (cfg->threads > MAX_THREADS) {
        snprintf(err, errlen, "--threads: %d must be <= %d", cfg->threads, MAX_THREADS);
        return -1;
    }
    if (!(cfg->learning_rate > 0) || !isfinite(cfg->learning_rate)) {
        snprintf(err, errlen, "--learning-rate: %s must be a positive number",
                 args_get(ap, "learning-rate", ""));
        return -1;
    }
    if (!(cfg->momentum >= 0) || !(cfg->momentum < 1)) {
        snprintf(err, errlen, "--momentum: %s must be in [0, 1)", args_get(ap, "momentum", ""));
        return -1;
    }
    cfg->optimizer = (OptimizerKind)optimizer;
    cfg->seed = (uint64_t)seed;
    cfg->device = devices[device];
    const char *sm_gpus = env_nonempty("SM_NUM_GPUS");
    if (device == 3 && sm_gpus && strcmp(sm_gpus, "0") == 0) cfg->device = "cpu";

    /* logging, evaluation, checkpoints */
    int64_t keep = 5, exports = 5;
    if (args_get_int64(ap, "log-step-count-steps", 100, &cfg->log_step_count_steps, err, errlen) ||
        check_min64("log-step-count-steps", cfg->log_step_count_steps, 1, err, errlen) ||
        args_get_int64(ap, "save-summary-steps", 100, &cfg->save_summary_steps, err, errlen) ||
        check_min64("save-summary-steps", cfg->save_summary_steps, 0, err, errlen) ||
        args_get_int64(ap, "eval-every-steps", 0, &cfg->eval_every_steps, err, errlen) ||
        check_min64("eval-every-steps", cfg->eval_every_steps, 0, err, errlen) ||
        args_get_int64(ap, "eval-steps", 0, &cfg->eval_steps, err, errlen) ||
        check_min64("eval-steps", cfg->eval_steps, 0, err, errlen) ||
        args_get_int(ap, "eval-batch-size", cfg->batch_size, &cfg->eval_batch_size, err,
                     errlen) ||
        check_min64("eval-batch-size", cfg->eval_batch_size, 1, err, errlen) ||
        args_get_int64(ap, "throttle-secs", 600, &cfg->throttle_secs, err, errlen) ||
        check_min64("throttle-secs", cfg->throttle_secs, 0, err, errlen) ||
        args_get_int64(ap, "save-checkpoints-steps", 0, &cfg->save_checkpoints_steps, err,
                       errlen) ||
        check_min64("save-checkpoints-steps", cfg->save_checkpoints_steps, 0, err, errlen) ||
        args_get_double(ap, "save-checkpoints-secs", 600, &cfg->save_checkpoints_secs, err,
                        errlen) ||
        args_get_int64(ap, "keep-checkpoint-max", 5, &keep, err, errlen) ||
        check_min64("keep-checkpoint-max", keep, 0, err, errlen) ||
        args_get_int64(ap, "exports-to-keep", 5, &exports, err, errlen) ||
        check_min64("exports-to-keep", exports, 0, err, errlen))
        return -1;
    if (!(cfg->save_checkpoints_secs >= 0) || !isfinite(cfg->save_checkpoints_secs)) {
        snprintf(err, errlen, "--save-checkpoints-secs: %s must be >= 0",
                 args_get(ap, "save-checkpoints-secs", ""));
        return -1;
    }
    /* RunConfig: the two are mutually exclusive; steps alone turns the time default off. */
    if (args_has(ap, "save-checkpoints-steps") && args_has(ap, "save-checkpoints-secs") &&
        cfg->save_checkpoints_steps > 0 && cfg->save_checkpoints_secs > 0) {
        snprintf(err, errlen, "--save-checkpoints-steps and --save-checkpoints-secs are mutually "
                 "exclusive (as in RunConfig)");
        return -1;
    }
    if (cfg->save_checkpoints_steps > 0) cfg->save_checkpoints_secs = 0;
    cfg->keep_checkpoint_max = keep > 1000000 ? 1000000 : (int)keep;
    cfg->exports_to_keep = exports > 1000000 ? 1000000 : (int)exports;

    /* outputs and platform roles */
    cfg->exporter_name = args_get(ap, "exporter-name", "exporter");
    if (!*cfg->exporter_name || strchr(cfg->exporter_name, '/')) {
        snprintf(err, errlen, "--exporter-name: '%s' must be a non-empty name without '/'",
                 cfg->exporter_name);
        return -1;
    }
    cfg->sm_model_dir = args_get(ap, "sm-model-dir", env_nonempty("SM_MODEL_DIR"));
    if (cfg->sm_model_dir && !*cfg->sm_model_dir) cfg->sm_model_dir = NULL;
    if (cfg->sm_model_dir && is_remote(cfg->sm_model_dir)) {
        snprintf(err, errlen, "--sm-model-dir %s: must be a local directory", cfg->sm_model_dir);
        return -1;
    }
    parse_sm_hosts(cfg);
    if (parse_tf_config(cfg, err, errlen) != 0) return -1;
    const char *trial_id = env_nonempty("CLOUD_ML_TRIAL_ID");
    if (resolve_model_dir(cfg, err, errlen) != 0 || vertex_dirs(cfg, err, errlen) != 0) return -1;

    /* hyperparameter tuning: the metric file when the service asks for one, or in a trial */
    cfg->hypertune_tag = args_get(ap, "hypertune-tag", "accuracy");
    cfg->hypertune_path = env_nonempty("CLOUD_ML_HP_METRIC_FILE");
    /* a trial id says a tuning job runs (Vertex AI sets CLOUD_ML_TRIAL_ID, not TF_CONFIG's) */
    cfg->hypertune = cfg->hypertune_path != NULL || cfg->trial != NULL || trial_id != NULL;
    if (trial_id && !cfg->trial) cfg->trial = keep_string(cfg, strdup(trial_id));
    return 0;
}

void train_config_free(TrainConfig *cfg) {
    ConfigPriv *p = cfg->priv_;
    if (p) {
        args_free(&p->ap);
        for (int i = 0; i < p->nstrings; i++) free(p->strings[i]);
        free(p);
    }
    for (int i = 0; i < cfg->num_warnings; i++) free(cfg->warnings[i]);
    free(cfg->warnings);
    memset(cfg, 0, sizeof *cfg);
}

void train_config_print_help(FILE *out) {
    fprintf(out,
            "usage: trainer --train PATH... --test PATH... [--steps N] [--job-dir DIR] [flags]\n"
            "\nTrains the MNIST CNN of the original Estimator job (task.py) and leaves in the job\n"
            "dir what it left: checkpoints, TensorBoard events, a SavedModel export. Flags accept\n"
            "'-' or '_' in names, '--k v' or '--k=v', and unambiguous prefixes (argparse's\n"
            "'--batch 50'); unknown flags are warned about and ignored. See docs/cli-trainer.md.\n"
            "\nflags:\n");
    args_print_help(out, kSpecs, kNumSpecs);
}

void train_config_describe(const TrainConfig *cfg, char *buf, size_t len) {
    char lr[32];
    snprintf(buf, len,
             "{'model_dir': '%s', 'steps': %lld, 'batch_size': %d, 'learning_rate': %s, "
             "'optimizer': '%s', 'seed': %llu, 'device': '%s', 'threads': %d, "
             "'save_checkpoints_steps': %lld, 'save_checkpoints_secs': %g, "
             "'keep_checkpoint_max': %d, 'log_step_count_steps': %lld, "
             "'save_summary_steps': %lld, 'eval_every_steps': %lld, 'eval_steps': %lld, "
             "'eval_batch_size': %d, 'throttle_secs': %lld, 'exports_to_keep': %d, "
             "'task_type': '%s', 'task_id': %d, 'trial': '%s'}",
             cfg->model_dir ? cfg->model_dir : "", (long long)cfg->steps, cfg->batch_size,
             tf_fmt_double(lr, sizeof lr, cfg->learning_rate),
             cfg->optimizer == OPT_ADAM ? "adam" : cfg->optimizer == OPT_SGD ? "sgd" : "momentum",
             (unsigned long long)cfg->seed, cfg->device, cfg->threads,
             (long long)cfg->save_checkpoints_steps, cfg->save_checkpoints_secs,
             cfg->keep_checkpoint_max, (long long)cfg->log_step_count_steps,
             (long long)cfg->save_summary_steps, (long long)cfg->eval_every_steps,
             (long long)cfg->eval_steps, cfg->eval_batch_size, (long long)cfg->throttle_secs,
             cfg->exports_to_keep,
             cfg->task_type, cfg->task_index, cfg->trial ? cfg->trial : "");
}
