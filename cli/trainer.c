/* trainer: the original task.py (a TF Estimator train_and_evaluate MNIST job) as a native program.
 *
 *   trainer --train mnist_train.tfrecords --test mnist_test.tfrecords --steps 500 --job-dir JOB
 *
 * Reads top to bottom: configuration -> data (each set decoded into memory once) -> model ->
 * resume from the newest checkpoint -> training loop (loss lines, summaries, checkpoints and
 * evaluations on their cadences) -> final checkpoint -> evaluation on the whole test set ->
 * SavedModel export -> hyperparameter-tuning metric. What it prints and leaves in JOB is what the
 * Estimator printed and left there (docs/cli-trainer.md lists the differences).
 *
 * Exit status: 0 done; 2 bad flags, environment or input data (before any work); 1 a failure
 * while running (I/O, device, NaN loss); 128+signal after SIGTERM/SIGINT (checkpoint saved).
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/background_task.h"
#include "cli/checkpoint_writer.h"
#include "cli/export_writer.h"
#include "cli/hypertune.h"
#include "cli/model_graph.h"
#include "cli/model_state.h"
#include "cli/tf_log.h"
#include "cli/wall_clock.h"
#include "cli/train_config.h"
#include "core/model.h"
#include "io/checkpoint.h"
#include "io/dirs.h"
#include "io/event_file.h"
#include "io/fs.h"
#include "io/http.h"
#include "io/mnist_records.h"
#include "io/savedmodel.h"

enum { EXIT_OK = 0, EXIT_RUN_FAILED = 1, EXIT_BAD_INPUT = 2 };

/* ---- failure reporting --------------------------------------------------------------------- */

/* Logs the reason at ERROR and, on SageMaker (/opt/ml/output exists; train_config_opt_ml), writes
 * it to /opt/ml/output/failure, where the service shows it as the job's failure reason. */
static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int status, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tf_log_progress_clear();
    tf_error("%s", msg);
    if (!tf_log_enabled(TF_LOG_ERROR)) fprintf(stderr, "trainer: %s\n", msg);
    struct stat st;
    char output[4096], failure[4200];
    snprintf(output, sizeof output, "%s/output", train_config_opt_ml());
    snprintf(failure, sizeof failure, "%s/failure", output);
    if (stat(output, &st) == 0 && S_ISDIR(st.st_mode)) {
        FILE *f = fopen(failure, "w");
        if (f) {
            fprintf(f, "%s\n", msg);
            fclose(f);
        }
    }
    return status;
}

/* A local job dir checked before any work: it, or where it will be made (its nearest existing
 * ancestor), must be a directory this process may write into. An unwritable one failed at the
 * first checkpoint, after the data's decoding and the model's creation; nothing is made here,
 * so a job that fails on its data leaves no job dir. A bucket's prefix is not checked. 0 ok,
 * -1 with err naming the dir. */
static int check_job_dir(const char *dir, char *err, size_t errlen) {
    if (fs_is_remote(dir)) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    struct stat st;
    const char *why = NULL;
    while (!why && stat(path, &st) != 0) { /* up to the nearest existing ancestor */
        char *slash = strrchr(path, '/');
        if (errno != ENOENT || strcmp(path, ".") == 0 || strcmp(path, "/") == 0)
            why = strerror(errno);
        else if (!slash)
            snprintf(path, sizeof path, "."); /* a relative path: the working directory */
        else
            slash[slash == path] = '\0';  /* "/a" -> "/", "a/b" -> "a" */
    }
    if (!why && !S_ISDIR(st.st_mode)) why = "not a directory";
    if (!why && access(path, W_OK | X_OK) != 0) why = strerror(errno);
    if (!why) return 0;
    if (strcmp(path, dir) == 0)
        snprintf(err, errlen, "%.1024s: cannot write into the job dir: %s", dir, why);
    else
        snprintf(err, errlen, "%.1024s: cannot make the job dir in %.1024s: %s", dir, path, why);
    return -1;
}

/* Cloud storage's retry warnings as TF-style log lines (io/http.h). */
static void warn_as_tf(const char *message) { tf_warn("%s", message); }

/* ---- signals: SIGTERM (spot/preemption, `docker stop`) and SIGINT stop at the next chunk ---- */

static volatile sig_atomic_t g_stop_signal;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;   /* a second signal kills at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* ---- data ---------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *pixels;     /* [n,28,28,1] */
    int32_t *labels;     /* [n] */
    int n;
} Dataset;

/* Decodes every record of one flag's inputs (files, directories, globs: io/path_list.h).
 * Errors name the flag, and the file, record and offset where one is bad. */
static int load_dataset(const char *flag, const char *const *paths, int npaths, Dataset *ds,
                        char *err, size_t errlen) {
    memset(ds, 0, sizeof *ds);
    char why[2048];
    MnistSet set = {0};
    if (mnist_load_tfrecords(paths, npaths, TFR_AUTO, &set, why, sizeof why) != 0) {
        snprintf(err, errlen, "--%s: %s", flag, why);
        mnist_set_free(&set);
        return -1;
    }
    if (set.n > INT32_MAX) {
        snprintf(err, errlen, "--%s: %lld examples is more than this trainer holds", flag,
                 (long long)set.n);
        mnist_set_free(&set);
        return -1;
    }
    ds->pixels = set.images;
    ds->labels = set.labels;
    ds->n = (int)set.n;
    return 0;
}

static void dataset_free(Dataset *ds) {
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* The first (up to) 3 examples of d as JSON lines, one [28][28][1] list of pixel values each:
 * the export's assets.extra/example_instances.json, ready for `--json-instances`. malloc'd; NULL
 * when d is empty or out of memory. */
static char *example_instances(const Dataset *d) {
    enum { kPixels = 28 * 28, kLine = kPixels * 6 + 128 }; /* "[255]," a pixel, brackets, "\n" */
    const int n = d->n < 3 ? d->n : 3;
    char *out = n > 0 ? malloc((size_t)n * kLine) : NULL, *p = out;
    for (int i = 0; out && i < n; i++) {
        const uint8_t *px = d->pixels + (size_t)i * kPixels;
        *p++ = '[';
        for (int r = 0; r < 28; r++) {
            *p++ = '[';
            for (int c = 0; c < 28; c++)
                p += sprintf(p, "[%d]%s", px[r * 28 + c], c < 27 ? "," : "");
            p += sprintf(p, "]%s", r < 27 ? "," : "");
        }
        p += sprintf(p, "]\n");
    }
    return out;
}

/* Both sets, decoded on a thread while the main thread creates the model: on a GPU the model's
 * creation is mostly the device's start-up, which needs no data, so the two overlap. */
typedef struct {
    const TrainConfig *cfg;
    Dataset train, test;
    double seconds;         /* wall time of the decoding */
    BackgroundTask task;    /* its outcome: rc, err */
} DataLoad;

static void *load_both(void *arg) {
    DataLoad *d = arg;
    const double t0 = wall_seconds();
    BackgroundTask *t = &d->task;
    t->rc = load_dataset("train", d->cfg->train_paths, d->cfg->num_train, &d->train, t->err,
                         sizeof t->err);
    if (t->rc == 0)
        t->rc = load_dataset("test", d->cfg->test_paths, d->cfg->num_test, &d->test, t->err,
                             sizeof t->err);
    d->seconds = wall_seconds() - t0;
    return NULL;
}

static void data_load_start(DataLoad *d, const TrainConfig *cfg) {
    memset(d, 0, sizeof *d);
    d->cfg = cfg;
    background_task_start(&d->task, load_both, d, 1);
}

/* 0 when both sets are in memory, -1 otherwise (message in err; nothing left to free). */
static int data_load_wait(DataLoad *d, char *err, size_t errlen) {
    if (background_task_wait(&d->task, err, errlen) >= 0) return 0;
    dataset_free(&d->train);
    dataset_free(&d->test);
    return -1;
}

/* ---- the job's outputs --------------------------------------------------------------------- */

typedef struct {
    const TrainConfig *cfg;
    const ModelConfig *model_cfg;  /* what model was created with (the optimizer's betas) */
    Model *model;
    SmModel graph;                 /* the serving graph of the model (exports, .meta, events) */
    SmLayer graph_layers[MODEL_SPEC_MAX_LAYERS];
    PbBuf meta_graph;              /* its MetaGraphDef: model.ckpt-N.meta, the events' graph */
    EventWriter *train_events;     /* <model_dir>/events.out.tfevents.* */
    EventWriter *eval_events;      /* <model_dir>/eval/events.out.tfevents.* */
    Hypertune hypertune;
    int64_t last_saved_step;       /* -1: none in this run */
    CheckpointWriter ckpt;         /* the save in flight (its files on a thread) */
    ExportWriter export;           /* the exports, written beside the evaluations that export */
    char last_checkpoint[4200];
    double last_save_time;
    int64_t ckpt_eval_step;        /* the step of the last evaluation after a checkpoint, -1 */
    double ckpt_eval_time;         /* and when it started */
    double data_seconds;           /* wall time of the phases (--verbosity DEBUG): decoding, */
    double model_seconds;          /* model creation beside it, */
    double checkpoint_seconds;     /* the job waiting for saves, */
    double checkpoint_write_seconds; /* their files, mostly written beside the job, */
    double eval_seconds;           /* evaluations */
    double loop_eval_seconds;      /* of which inside the training loop */
    double export_write_seconds;   /* the exports' files, written beside the evaluation */
} Job;

/* Waits for the save in flight (cli/checkpoint_writer.h) and, once its files are complete,
 * records it in the training events as the Estimator's saver hook does after a save. */
static int finish_checkpoint(Job *job, char *err, size_t errlen) {
    const double t0 = wall_seconds();
    int done = checkpoint_writer_wait(&job->ckpt, err, errlen);
    job->checkpoint_seconds += wall_seconds() - t0;
    if (done <= 0) return done;
    job->checkpoint_write_seconds += job->ckpt.write_seconds;
    if (job->train_events &&
        (event_writer_add_session_log(job->train_events, job->ckpt.step, SESSION_LOG_CHECKPOINT,
                                      job->ckpt.prefix, err, errlen) != 0 ||
         event_writer_flush(job->train_events, err, errlen) != 0))
        return -1;
    return 0;
}

/* Saves the current step: the previous save finished first, then this one's snapshot, its files
 * written while the job goes on. */
static int save_checkpoint(Job *job, char *err, size_t errlen) {
    if (finish_checkpoint(job, err, errlen) != 0) return -1;
    const double t0 = wall_seconds();
    int64_t step = model_step(job->model);
    tf_info("Saving checkpoints for %lld into %s/model.ckpt.", (long long)step,
            job->cfg->model_dir);
    if (checkpoint_writer_start(&job->ckpt, job->model, job->model_cfg, job->cfg->model_dir,
                                job->cfg->keep_checkpoint_max, job->meta_graph.data,
                                job->meta_graph.len, 1, err, errlen) != 0)
        return -1;
    snprintf(job->last_checkpoint, sizeof job->last_checkpoint, "%s", job->ckpt.prefix);
    job->last_saved_step = step;
    job->last_save_time = wall_seconds();
    job->checkpoint_seconds += job->last_save_time - t0;
    return 0;
}

static void log_local_time(const char *what) {
    char stamp[64];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    tf_info("%s %s", what, stamp);
}

/* "Saving dict for global step N: k = v, ..." with the keys sorted, as the Estimator prints its
 * metrics dict: accuracy, global_step, loss and the tuning tag (when not NULL) with its value. */
static void log_eval_dict(int64_t step, double accuracy, double loss, const char *tag,
                          double metric) {
    char values[4][32];
    const char *keys[4] = {"accuracy", "global_step", "loss", tag};
    tf_fmt_float(values[0], sizeof values[0], (float)accuracy);
    snprintf(values[1], sizeof values[1], "%lld", (long long)step);
    tf_fmt_float(values[2], sizeof values[2], (float)loss);
    if (tag) tf_fmt_float(values[3], sizeof values[3], (float)metric);
    int order[4] = {0, 1, 2, 3}, n = tag ? 4 : 3;
    for (int i = n - 1; i > 0 && strcmp(keys[order[i - 1]], keys[order[i]]) > 0; i--) {
        const int t = order[i]; /* the tag moves to its place among the sorted three */
        order[i] = order[i - 1];
        order[i - 1] = t;
    }
    char line[512];
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof line; i++)
        used += (size_t)snprintf(line + used, sizeof line - used, "%s%s = %s", i ? ", " : "",
                                 keys[order[i]], values[order[i]]);
    tf_info("Saving dict for global step %lld: %s", (long long)step, line);
}

/* Evaluation on the whole test set, as Estimator.evaluate with steps=None, or with --eval-steps N
 * on its first N batches of --eval-batch-size examples: the log lines, the eval/ summaries and
 * the hypertune metric. */
static int run_evaluation(Job *job, const Dataset *test, double *accuracy_out, char *err,
                          size_t errlen) {
    const TrainConfig *cfg = job->cfg;
    int64_t step = model_step(job->model);
    log_local_time("Starting evaluation at");
    double t0 = wall_seconds(), loss, accuracy;
    int n = test->n;
    const int batches = (n + cfg->eval_batch_size - 1) / cfg->eval_batch_size;
    if (cfg->eval_steps > 0 && cfg->eval_steps < batches)
        n = (int)cfg->eval_steps * cfg->eval_batch_size; /* < n */
    if (model_evaluate(job->model, test->pixels, test->labels, n, &loss, &accuracy, err,
                       errlen) != 0)
        return -1;
    if (cfg->eval_steps > 0) { /* _StopAfterNEvalsHook's progress lines (steps=None: none) */
        const int64_t steps = cfg->eval_steps, done = (n + cfg->eval_batch_size - 1) /
                                                     cfg->eval_batch_size;
        const int64_t every = steps < 20 ? 1 : steps / 10;
        for (int64_t k = 1; k <= done; k++)
            if (k % every == 0 || k == steps)
                tf_info("Evaluation [%lld/%lld]", (long long)k, (long long)steps);
    }
    tf_info("Inference Time : %.5fs", wall_seconds() - t0);
    log_local_time("Finished evaluation at");
    /* The tuning service reads the metric's tag from the eval summaries too (§1.3): a tag other
     * than accuracy/loss gets its own scalar, and a place in the dict's line. */
    const char *tag = cfg->hypertune_tag;
    double metric = strstr(tag, "loss") ? loss : accuracy;
    int extra = strcmp(tag, "accuracy") != 0 && strcmp(tag, "loss") != 0;
    log_eval_dict(step, accuracy, loss, extra ? tag : NULL, metric);
    if (!job->eval_events) {
        char dir[4096], mirror[4096];
        snprintf(dir, sizeof dir, "%s/eval", cfg->model_dir);
        if (cfg->tensorboard_log_dir)
            snprintf(mirror, sizeof mirror, "%s/eval", cfg->tensorboard_log_dir);
        if (!(job->eval_events = event_writer_open_mirrored(
                  dir, cfg->tensorboard_log_dir ? mirror : NULL, err, errlen)))
            return -1;
    }
    const char *tags[3] = {"accuracy", "loss", tag};
    float values[3] = {(float)accuracy, (float)loss, (float)metric};
    if (event_writer_add_scalars(job->eval_events, step, 2 + extra, tags, values, err,
                                 errlen) != 0)
        return -1;
    /* the Estimator evaluates a checkpoint and names it; an --eval-every-steps evaluation
     * between checkpoints has none to name */
    if (job->last_checkpoint[0] && job->last_saved_step == step) {
        tf_info("Saving 'checkpoint_path' summary for global step %lld: %s", (long long)step,
                job->last_checkpoint);
        if (event_writer_add_string(job->eval_events, step, "checkpoint_path",
                                    job->last_checkpoint, err, errlen) != 0)
            return -1;
    }
    if (event_writer_flush(job->eval_events, err, errlen) != 0) return -1;
    if (cfg->hypertune && hypertune_report(&job->hypertune, tag, metric, step, err, errlen) != 0)
        return -1;
    if (accuracy_out) *accuracy_out = accuracy;
    return 0;
}

static int evaluate(Job *job, const Dataset *test, double *accuracy_out, char *err,
                    size_t errlen) {
    const double t0 = wall_seconds();
    int rc = run_evaluation(job, test, accuracy_out, err, errlen);
    job->eval_seconds += wall_seconds() - t0;
    return rc;
}

/* The model as a TF graph: its serving layer list (cli/model_graph.h) and the MetaGraphDef that
 * goes beside each checkpoint (model.ckpt-N.meta) and into the training events (TensorBoard's
 * Graphs tab), as the Estimator's Saver and summary writer leave them. */
static int describe_graph(Job *job, char *err, size_t errlen) {
    char why[1024];
    if (model_graph_from_spec(job->cfg->model_spec, &job->graph, job->graph_layers, why,
                              sizeof why) != 0) {
        snprintf(err, errlen, "--model: %s", why);
        return -1;
    }
    ModelSnapshot snap;
    int rc = model_snapshot_take(job->model, NULL, &snap, err, errlen);
    if (rc == 0)
        rc = savedmodel_encode_meta_graph(&job->graph, snap.tensors, snap.n, &job->meta_graph, err,
                                          errlen);
    model_snapshot_free(&snap);
    return rc;
}

/* SavedModel exports: <model_dir>/export/<exporter>/<unix secs>/ (newest exports_to_keep kept),
 * $SM_MODEL_DIR/<unix secs>/ for SageMaker's serving container, and $AIP_MODEL_DIR itself for
 * Vertex AI's Model Registry. The snapshot now (the weights the evaluation sees), the files
 * beside the evaluation (cli/export_writer.h); export_finish waits for them and says so in the
 * Estimator's words. */
static int export_start(Job *job, char *err, size_t errlen) {
    const TrainConfig *cfg = job->cfg;
    if (!cfg->export_enabled) return 0;
    char base[4096];
    snprintf(base, sizeof base, "%s/export/%s", cfg->model_dir, cfg->exporter_name);
    return export_writer_start(&job->export, job->model, &job->graph, base, cfg->sm_model_dir,
                               cfg->aip_model_dir, cfg->exports_to_keep, 1, err, errlen);
}

static int export_finish(Job *job, char *err, size_t errlen) {
    int done = export_writer_wait(&job->export, err, errlen);
    if (done <= 0) return done;
    job->export_write_seconds += job->export.write_seconds;
    tf_info("Signatures INCLUDED in export for Classify: None");
    tf_info("Signatures INCLUDED in export for Regress: None");
    tf_info("Signatures INCLUDED in export for Predict: ['serving_default']");
    tf_info("Signatures INCLUDED in export for Train: None");
    tf_info("Signatures INCLUDED in export for Eval: None");
    for (int i = 0; i < job->export.ndirs; i++)
        tf_info("SavedModel written to: %s/saved_model.pb", job->export.path[i]);
    return 0;
}

/* An evaluation with the exports written beside it, as the Estimator's evaluate_and_export.
 * evaluated (unless NULL) gets the time the evaluation ended, before the wait for the export's
 * files (--verbosity DEBUG's phase times). */
static int evaluate_and_export(Job *job, const Dataset *test, double *evaluated, char *err,
                               size_t errlen) {
    if (export_start(job, err, errlen) != 0 || evaluate(job, test, NULL, err, errlen) != 0)
        return -1;
    if (evaluated) *evaluated = wall_seconds();
    return export_finish(job, err, errlen);
}

/* train_and_evaluate evaluates after each checkpoint but the run's first
 * (_NewCheckpointListenerForEvaluate): the first time, then once --throttle-secs have passed
 * since the last such evaluation began (SecondOrStepTimer); else it says it skips. */
static int checkpoint_eval_due(Job *job, int64_t step) {
    if (job->ckpt_eval_step >= 0 &&
        (step == job->ckpt_eval_step ||
         wall_seconds() < job->ckpt_eval_time + (double)job->cfg->throttle_secs)) {
        tf_info("Skip the current checkpoint eval due to throttle secs (%lld secs).",
                (long long)job->cfg->throttle_secs);
        return 0;
    }
    return 1;
}

static int evaluate_after_checkpoint(Job *job, const Dataset *test, char *err, size_t errlen) {
    const int64_t step = model_step(job->model);
    if (!checkpoint_eval_due(job, step)) return 0;
    job->ckpt_eval_step = step;
    job->ckpt_eval_time = wall_seconds();
    return evaluate_and_export(job, test, NULL, err, errlen);
}

/* ---- training ------------------------------------------------------------------------------ */

/* The next global step after `step` at which something is due: a loss line (every
 * log_step_count_steps from the first step of this run, as LoggingTensorHook counts), a loss
 * summary, a step-cadence checkpoint or evaluation, or the end. */
static int64_t next_stop(const TrainConfig *cfg, int64_t step, int64_t first) {
    int64_t stop = cfg->steps;
    int64_t every[4] = {cfg->log_step_count_steps, cfg->save_summary_steps,
                        cfg->save_checkpoints_steps, cfg->eval_every_steps};
    for (int i = 0; i < 4; i++) {
        if (every[i] <= 0) continue;
        /* loss lines and summaries at first, first + N, ...; checkpoints/evals at multiples */
        int64_t origin = i < 2 ? first : 0;
        int64_t k = step < origin ? 0 : (step - origin) / every[i] + 1;
        int64_t due = origin + k * every[i];
        if (due > step && due < stop) stop = due;
    }
    /* on a terminal, come back often enough for a live progress line */
    if (isatty(STDERR_FILENO) && stop - step > 10) stop = step + 10;
    if (stop - step > (1 << 30)) stop = step + (1 << 30);   /* model_train_steps takes an int */
    return stop;
}

static int train(Job *job, const Dataset *test, char *err, size_t errlen) {
    const TrainConfig *cfg = job->cfg;
    Model *model = job->model;
    int64_t step = model_step(model), start = step, first = step + 1;
    double t_last_log = wall_seconds(), t_start = t_last_log;
    int64_t step_last_log = step;
    int logged_once = 0;
    float loss = NAN;
    char text[32];
    /* the steps of about a second at the last chunk's speed (0: not known yet), so that a stop
     * signal waits about that long however far apart the log lines are (a platform's grace
     * before SIGKILL: 10 s for docker stop) */
    int64_t second = 0;

    while (step < cfg->steps) {
        int64_t stop = next_stop(cfg, step, first);
        if (second > 0 && stop - step > second) stop = step + second;
        const double t_chunk = wall_seconds();
        const int64_t before = step;
        if (model_train_steps(model, (int)(stop - step), &loss, err, errlen) != 0) return -1;
        step = model_step(model);
        const double took = wall_seconds() - t_chunk;
        second = took > 0 ? (int64_t)((double)(step - before) / took) : 0;
        if (second < 1 && took > 0) second = 1;
        if (isnan(loss)) {
            tf_error("Model diverged with loss = NaN.");
            snprintf(err, errlen, "NanLossDuringTrainingError: NaN loss during training "
                     "(global step %lld)", (long long)step);
            return -1;
        }
        double now = wall_seconds();
        int64_t ran = step - first;
        if (ran % cfg->log_step_count_steps == 0) {
            if (logged_once) {
                /* StepCounterHook, then LoggingTensorHook, in that order as the Estimator */
                double rate = (double)(step - step_last_log) / (now - t_last_log);
                tf_info("global_step/sec: %g", rate);
                if (event_writer_add_scalar(job->train_events, step, "global_step/sec",
                                            (float)rate, err, errlen) != 0)
                    return -1;
                tf_info("loss = %s, step = %lld (%.3f sec)", tf_fmt_float(text, sizeof text, loss),
                        (long long)step, now - t_last_log);
            } else {
                tf_info("loss = %s, step = %lld", tf_fmt_float(text, sizeof text, loss),
                        (long long)step);
            }
            logged_once = 1;
            t_last_log = now;
            step_last_log = step;
        }
        if (cfg->save_summary_steps > 0 && ran % cfg->save_summary_steps == 0 &&
            (event_writer_add_scalar(job->train_events, step, "loss", loss, err, errlen) != 0 ||
             event_writer_flush(job->train_events, err, errlen) != 0))
            return -1;
        tf_log_progress("step %lld/%lld  loss %s  %.1f steps/s", (long long)step,
                        (long long)cfg->steps, tf_fmt_float(text, sizeof text, loss),
                        (double)(step - start) / (now - t_start));

        if (g_stop_signal && step < cfg->steps) {   /* (at the end: main's final steps) */
            tf_warn("Received %s at global step %lld: saving a checkpoint and stopping (rerun "
                    "with the same --job-dir to resume).",
                    g_stop_signal == SIGTERM ? "SIGTERM" : "SIGINT", (long long)step);
            if (save_checkpoint(job, err, errlen) != 0 || finish_checkpoint(job, err, errlen) != 0)
                return -1;
            return 0;
        }
        int due_steps = cfg->save_checkpoints_steps > 0 && step % cfg->save_checkpoints_steps == 0;
        int due_secs = cfg->save_checkpoints_secs > 0 &&
                       now - job->last_save_time >= cfg->save_checkpoints_secs;
        if ((due_steps || due_secs) && step < cfg->steps &&
            (save_checkpoint(job, err, errlen) != 0 ||
             evaluate_after_checkpoint(job, test, err, errlen) != 0))
            return -1;
        if (cfg->eval_every_steps > 0 && step % cfg->eval_every_steps == 0 && step < cfg->steps &&
            job->ckpt_eval_step != step && evaluate(job, test, NULL, err, errlen) != 0)
            return -1;
    }
    tf_log_progress_clear();
    /* the last save: its evaluation is the job's final one (main); when it is throttled the
     * Estimator says so, then evaluates anyway (the listener's end()) */
    if (job->last_saved_step != step) {
        if (save_checkpoint(job, err, errlen) != 0) return -1;
        checkpoint_eval_due(job, step);   /* says so when throttled */
    }
    tf_info("Loss for final step: %s.", tf_fmt_float(text, sizeof text, loss));
    return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

/* --verbosity DEBUG: where the job's wall time went (the GPU job's goal is a total under 5 s,
 * so the fixed costs around the training loop count). t: the phase boundaries (start, data and
 * model ready, resumed, training done, evaluated (the export's files written beside it),
 * exported, last checkpoint written). */
static void log_phase_times(const Job *job, const double t[7]) {
    const double in_train = job->checkpoint_seconds - (t[6] - t[5]) +
                            job->loop_eval_seconds; /* checkpoints and evaluations in the loop */
    tf_debug("Wall time by phase: data and model %.3f s (decoding %.3f s beside the model's "
             "creation %.3f s), resume %.3f s, training %.3f s (of which checkpoints and "
             "evaluations %.3f s), evaluation %.3f s, export %.3f s more, last checkpoint's files "
             "%.3f s more; total %.3f s (checkpoint files written beside the job: %.3f s; export "
             "files beside the evaluation: %.3f s)",
             t[1] - t[0], job->data_seconds, job->model_seconds, t[2] - t[1], t[3] - t[2],
             in_train, t[4] - t[3], t[5] - t[4], t[6] - t[5], t[6] - t[0],
             job->checkpoint_write_seconds, job->export_write_seconds);
}

int main(int argc, char **argv) {
    char err[4096];
    TrainConfig cfg;
    double t_phase[7] = {wall_seconds(), 0, 0, 0, 0, 0, 0};

    /* 1. configuration: every flag and variable checked before any work */
    if (train_config_parse(&cfg, argc - 1, argv + 1, err, sizeof err) != 0) {
        train_config_free(&cfg);
        return fail(EXIT_BAD_INPUT, "%s (see trainer --help)", err);
    }
    if (cfg.show_help) {
        train_config_print_help(stdout);
        train_config_free(&cfg);
        return EXIT_OK;
    }
    tf_log_set_level(cfg.verbosity);
    http_set_warn(warn_as_tf);
    for (int i = 0; i < cfg.num_warnings; i++) tf_warn("%s", cfg.warnings[i]);
    if (!cfg.is_chief) {
        tf_warn("TF_CONFIG task type '%s' (index %d): this trainer runs on one machine and only "
                "the chief trains; nothing to do here.", cfg.task_type, cfg.task_index);
        train_config_free(&cfg);
        return EXIT_OK;
    }
    Device device;
    if (device_parse(cfg.device, &device) != 0) {
        int status = fail(EXIT_BAD_INPUT, "--device: '%s' is not available in this build",
                          cfg.device);
        train_config_free(&cfg);
        return status;
    }

    /* 2. data and model side by side: both sets decoded into memory once, on a thread, while
     * this one creates the model */
    char temp_dir[] = "/tmp/tmpXXXXXX";
    if (cfg.model_dir_is_sm_checkpoints)
        tf_info("Using SageMaker's checkpoint directory as model directory: %s", cfg.model_dir);
    if (!cfg.model_dir) {
        if (!mkdtemp(temp_dir)) {
            train_config_free(&cfg);
            return fail(EXIT_RUN_FAILED, "cannot create a temporary model directory: %s",
                        strerror(errno));
        }
        cfg.model_dir = temp_dir;
        tf_warn("Using temporary folder as model directory: %s", temp_dir);
    }
    if (check_job_dir(cfg.model_dir, err, sizeof err) != 0 ||
        (cfg.aip_model_dir && cfg.export_enabled &&
         savedmodel_dir_replaceable(cfg.aip_model_dir, err, sizeof err) != 0)) {
        int status = fail(EXIT_RUN_FAILED, "%s", err);
        if (cfg.model_dir == temp_dir) cfg.model_dir = NULL;
        train_config_free(&cfg);
        return status;
    }
    /* as the Estimator's constructor, before any input is read: a data error shows it too */
    char described[2048];
    train_config_describe(&cfg, described, sizeof described);
    tf_info("Using config: %s", described);
    DataLoad data;
    data_load_start(&data, &cfg);
    const Dataset *train_set = &data.train, *test_set = &data.test;
    ModelConfig mc;
    model_config_default(&mc);
    mc.spec = cfg.model_spec;
    mc.batch = cfg.batch_size;
    mc.device = device;
    mc.seed = cfg.seed;
    mc.optimizer = cfg.optimizer;
    mc.learning_rate = (float)cfg.learning_rate;
    mc.momentum = (float)cfg.momentum;
    mc.threads = cfg.threads;
    Job job = {.cfg = &cfg, .model_cfg = &mc, .last_saved_step = -1, .ckpt_eval_step = -1};
    pb_buf_init(&job.meta_graph);
    char *instances = NULL;        /* the exports' example instances */
    int status = EXIT_OK;
    char model_err[sizeof err];
    const double t_model = wall_seconds();
    job.model = model_create(&mc, model_err, sizeof model_err);
    job.model_seconds = wall_seconds() - t_model;
    /* a bad data set is reported first, as when the two ran one after the other */
    if (data_load_wait(&data, err, sizeof err) != 0) {
        status = fail(EXIT_BAD_INPUT, "%s", err);
        goto done;
    }
    job.data_seconds = data.seconds;
    if (!job.model) {
        status = fail(EXIT_BAD_INPUT, "%s", model_err);
        goto done;
    }
    t_phase[1] = wall_seconds();
    job.last_save_time = t_phase[1];
    tf_info("Loaded %d training and %d evaluation examples.", train_set->n, test_set->n);

    /* 3. the model's graph, for checkpoints, events and exports */
    if (describe_graph(&job, err, sizeof err) != 0) {
        status = fail(EXIT_BAD_INPUT, "%s", err);
        goto done;
    }
    if (cfg.hypertune) hypertune_init(&job.hypertune, cfg.hypertune_path, cfg.trial);
    if (job.graph.height == 28 && job.graph.width == 28 && job.graph.channels == 1)
        job.export.example_instances = instances = example_instances(test_set);

    /* train_and_evaluate's first words, before the Estimator's train() restores */
    tf_info("Running training and evaluation locally (non-distributed).");
    char ckpt_steps[32], ckpt_secs[32];
    snprintf(ckpt_steps, sizeof ckpt_steps, "%lld", (long long)cfg.save_checkpoints_steps);
    snprintf(ckpt_secs, sizeof ckpt_secs, "%g", cfg.save_checkpoints_secs);
    tf_info("Start train and evaluate loop. The evaluate will happen after every checkpoint. "
            "Checkpoint frequency is determined based on RunConfig arguments: "
            "save_checkpoints_steps %s or save_checkpoints_secs %s.",
            cfg.save_checkpoints_steps > 0 ? ckpt_steps : "None",
            cfg.save_checkpoints_steps > 0 ? "None" : ckpt_secs);

    /* 4. resume from the newest complete checkpoint in the job dir */
    int64_t saved_step = 0;
    char passed_over[2048];
    int found = checkpoint_latest(cfg.model_dir, job.last_checkpoint, sizeof job.last_checkpoint,
                                  &saved_step, passed_over, sizeof passed_over, err, sizeof err);
    if (passed_over[0]) tf_warn("%s", passed_over);
    if (found < 0) {
        status = fail(EXIT_RUN_FAILED, "%s", err);
        goto done;
    }
    if (found) {
        tf_info("Restoring parameters from %s", job.last_checkpoint);
        if (model_checkpoint_restore(job.model, &mc, job.last_checkpoint, err, sizeof err) != 0) {
            status = fail(EXIT_RUN_FAILED, "%s", err);
            goto done;
        }
        job.last_saved_step = model_step(job.model);
    }

    /* 5. training, unless the job dir already holds --steps */
    t_phase[2] = wall_seconds();
    if (model_step(job.model) >= cfg.steps) {
        tf_info("Skipping training since max_steps has already saved.");
    } else {
        install_stop_handlers();
        if (model_set_train_data(job.model, train_set->pixels, train_set->labels, train_set->n,
                                 cfg.shuffle, cfg.seed, err, sizeof err) != 0 ||
            !(job.train_events = event_writer_open_mirrored(cfg.model_dir, cfg.tensorboard_log_dir,
                                                            err, sizeof err)) ||
            event_writer_add_session_log(job.train_events, model_step(job.model),
                                         SESSION_LOG_START, NULL, err, sizeof err) != 0 ||
            event_writer_add_meta_graph(job.train_events, job.meta_graph.data,
                                        job.meta_graph.len, err, sizeof err) != 0) {
            status = fail(EXIT_RUN_FAILED, "%s", err);
            goto done;
        }
        /* CheckpointSaverHook saves at the start of a fresh run (model.ckpt-0) */
        if (job.last_saved_step < 0 && save_checkpoint(&job, err, sizeof err) != 0) {
            status = fail(EXIT_RUN_FAILED, "%s", err);
            goto done;
        }
        int rc = train(&job, test_set, err, sizeof err);
        if (rc != 0) {
            status = fail(EXIT_RUN_FAILED, "%s", err);
            goto done;
        }
        if (g_stop_signal && model_step(job.model) < cfg.steps) {
            status = 128 + g_stop_signal;
            goto done;
        }
    }

    /* 6. evaluation on the whole test set with the export's files written beside it, tuning
     * metric. A stop signal now lets them finish (the export is what a job is for), then exits
     * with its status. */
    install_stop_handlers();
    t_phase[3] = wall_seconds();
    job.loop_eval_seconds = job.eval_seconds;
    t_phase[4] = t_phase[3];
    if (evaluate_and_export(&job, test_set, &t_phase[4], err, sizeof err) != 0) {
        status = fail(EXIT_RUN_FAILED, "%s", err);
        goto done;
    }
    t_phase[5] = wall_seconds();
    if (finish_checkpoint(&job, err, sizeof err) != 0) {
        status = fail(EXIT_RUN_FAILED, "%s", err);
        goto done;
    }
    t_phase[6] = wall_seconds();
    log_phase_times(&job, t_phase);

done:
    /* every path out waits for a save in flight (reported unless another failure was) */
    if (finish_checkpoint(&job, err, sizeof err) != 0) {
        if (status == EXIT_OK) status = fail(EXIT_RUN_FAILED, "%s", err);
        else tf_error("%s", err);
    }
    if (job.train_events && event_writer_close(job.train_events, err, sizeof err) != 0 &&
        status == EXIT_OK)
        status = fail(EXIT_RUN_FAILED, "%s", err);
    if (job.eval_events && event_writer_close(job.eval_events, err, sizeof err) != 0 &&
        status == EXIT_OK)
        status = fail(EXIT_RUN_FAILED, "%s", err);
    export_writer_free(&job.export);
    free(instances);
    checkpoint_writer_free(&job.ckpt);
    if (cfg.hypertune) hypertune_free(&job.hypertune);
    pb_buf_free(&job.meta_graph);
    model_free(job.model);
    dataset_free(&data.train);
    dataset_free(&data.test);
    if (cfg.model_dir == temp_dir) cfg.model_dir = NULL;
    train_config_free(&cfg);
    /* a stop signal after training (the final evaluation, export, or files' closing) */
    if (status == EXIT_OK && g_stop_signal) {
        tf_warn("Received %s after training: the final evaluation and export finished; stopping.",
                g_stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
        status = 128 + g_stop_signal;
    }
    return status;
}
