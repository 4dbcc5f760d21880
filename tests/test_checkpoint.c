/* test_checkpoint.c: Estimator-style checkpoint directories: names, the `checkpoint` state file,
 * keep-max deletion, latest lookup that skips incomplete checkpoints, read back by name. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/tensor_bundle.h"
#include "support/check_run.h"
#include "support/test_files.h"

#define FIXTURE SHARED_DIR "/fixtures/tf112-estimator-export"

/* A tiny model state whose values depend on step. */
typedef struct {
    float kernel[2 * 3];
    float bias[3];
    int64_t global_step;
    TfTensor t[3];
} State;

static void make_state(State *s, int64_t step) {
    for (int i = 0; i < 6; i++) s->kernel[i] = (float)step + 0.25f * (float)i;
    for (int i = 0; i < 3; i++) s->bias[i] = -(float)step - (float)i;
    s->global_step = step;
    s->t[0] = (TfTensor){"dense/kernel", TF_DT_FLOAT, 2, {2, 3}, s->kernel, sizeof s->kernel};
    s->t[1] = (TfTensor){"dense/bias", TF_DT_FLOAT, 1, {3}, s->bias, sizeof s->bias};
    s->t[2] = (TfTensor){"global_step", TF_DT_INT64, 0, {0}, &s->global_step, 8};
}

static void save(const char *dir, int64_t step, int keep) {
    State s;
    make_state(&s, step);
    char err[512], prefix[512], want[512];
    ck_assert_msg(checkpoint_save(dir, step, s.t, 3, keep, prefix, sizeof prefix, err, sizeof err)
                  == 0, "%s", err);
    snprintf(want, sizeof want, "%s/model.ckpt-%lld", dir, (long long)step);
    ck_assert_str_eq(prefix, want);
}

static int has_checkpoint_files(const char *dir, int64_t step) {
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/model.ckpt-%lld.index", dir, (long long)step);
    snprintf(q, sizeof q, "%s/model.ckpt-%lld.data-00000-of-00001", dir, (long long)step);
    int a = test_path_exists(p), b = test_path_exists(q);
    ck_assert_int_eq(a, b);                        /* never one without the other */
    return a;
}

/* The step checkpoint_latest picks (-1: a fresh start); its warning must hold every needle
 * (none given: there must be no warning). */
static int64_t latest_warned(const char *dir, const char *const *needles, int n) {
    char prefix[512], err[512], warning[2048];
    int64_t step = -7;
    int rc = checkpoint_latest(dir, prefix, sizeof prefix, &step, warning, sizeof warning, err,
                               sizeof err);
    ck_assert_msg(rc >= 0, "%s", err);
    ck_assert_msg(n > 0 || warning[0] == 0, "unexpected warning: %s", warning);
    for (int i = 0; i < n; i++)
        ck_assert_msg(strstr(warning, needles[i]) != NULL, "'%s' lacks '%s'", warning, needles[i]);
    return rc == 1 ? step : -1;
}

static int64_t latest(const char *dir) { return latest_warned(dir, NULL, 0); }

/* checkpoint_latest's refusal: its error, which must hold every needle. */
static void latest_refused(const char *dir, const char *const *needles, int n) {
    char prefix[512], err[1024], warning[1024];
    int64_t step;
    ck_assert_int_eq(checkpoint_latest(dir, prefix, sizeof prefix, &step, warning, sizeof warning,
                                       err, sizeof err), -1);
    for (int i = 0; i < n; i++)
        ck_assert_msg(strstr(err, needles[i]) != NULL, "'%s' lacks '%s'", err, needles[i]);
}

START_TEST(test_save_keep_max_and_state_file) {
    char dir[256], sub[300];
    test_make_tmpdir(dir, sizeof dir, "test_ckpt_keep");
    snprintf(sub, sizeof sub, "%s/job/dir", dir);          /* created on demand */
    ck_assert_int_eq(latest(sub), -1);
    for (int step = 0; step <= 60; step += 10) save(sub, step, 5);
    for (int step = 0; step <= 60; step += 10)
        ck_assert_int_eq(has_checkpoint_files(sub, step), step >= 20);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint", sub);
    size_t n;
    char *text = (char *)test_read_file(path, &n);
    const char *want = "model_checkpoint_path: \"model.ckpt-60\"\n"
                       "all_model_checkpoint_paths: \"model.ckpt-20\"\n"
                       "all_model_checkpoint_paths: \"model.ckpt-30\"\n"
                       "all_model_checkpoint_paths: \"model.ckpt-40\"\n"
                       "all_model_checkpoint_paths: \"model.ckpt-50\"\n"
                       "all_model_checkpoint_paths: \"model.ckpt-60\"\n";
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_mem_eq(text, want, n);
    free(text);
    /* 2 files per checkpoint (index, data) * 5 + the state file: no temporaries */
    ck_assert_int_eq(test_count_dir_entries(sub), 11);
    ck_assert_int_eq(latest(sub), 60);

    /* a .meta beside a checkpoint goes with it when keep-max deletes it */
    char err0[256], meta[512];
    snprintf(meta, sizeof meta, "%s/model.ckpt-20", sub);
    ck_assert_int_eq(checkpoint_write_meta(meta, "\x0a\x00", 2, err0, sizeof err0), 0);
    snprintf(meta, sizeof meta, "%s/model.ckpt-20.meta", sub);
    size_t mn;
    uint8_t *mb = test_read_file(meta, &mn);
    ck_assert_uint_eq(mn, 2);
    free(mb);
    save(sub, 65, 5);
    ck_assert(!test_path_exists(meta));
    ck_assert_int_eq(has_checkpoint_files(sub, 20), 0);

    /* Saving an existing step again replaces it and keeps the list in order. */
    save(sub, 40, 5);
    char **paths, err[512];
    int np = checkpoint_state_read(sub, &paths, err, sizeof err);
    ck_assert_int_eq(np, 5);
    ck_assert_ptr_nonnull(strstr(paths[4], "model.ckpt-40"));
    ck_assert_ptr_nonnull(strstr(paths[0], "model.ckpt-30"));
    checkpoint_paths_free(paths, np);
    ck_assert_int_eq(latest(sub), 40);   /* what the state file names: the newest save, as TF */

    /* keep_max 0 keeps everything */
    for (int step = 70; step <= 90; step += 10) save(sub, step, 0);
    ck_assert_int_eq(has_checkpoint_files(sub, 30), 1);
    ck_assert_int_eq(has_checkpoint_files(sub, 50), 1);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

START_TEST(test_read_back_by_name) {
    char dir[256], prefix[512], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_ckpt_read");
    save(dir, 5, 5);
    save(dir, 17, 5);
    int64_t step;
    char warning[256];
    ck_assert_int_eq(checkpoint_latest(dir, prefix, sizeof prefix, &step, warning, sizeof warning,
                                       err, sizeof err), 1);
    ck_assert_int_eq(step, 17);
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    State want;
    make_state(&want, 17);
    float kernel[6], bias[3];
    int64_t gs;
    ck_assert_int_eq(bundle_read_tensor(r, "dense/kernel", TF_DT_FLOAT, kernel, sizeof kernel, err,
                                        sizeof err), 0);
    ck_assert_mem_eq(kernel, want.kernel, sizeof kernel);
    ck_assert_int_eq(bundle_read_tensor(r, "dense/bias", TF_DT_FLOAT, bias, sizeof bias, err,
                                        sizeof err), 0);
    ck_assert_mem_eq(bias, want.bias, sizeof bias);
    ck_assert_int_eq(bundle_read_tensor(r, "global_step", TF_DT_INT64, &gs, 8, err, sizeof err), 0);
    ck_assert_int_eq(gs, 17);
    /* wrong expectations are errors naming the tensor */
    ck_assert_int_eq(bundle_read_tensor(r, "global_step", TF_DT_FLOAT, &gs, 8, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'global_step' is int64, expected float"));
    ck_assert_int_eq(bundle_read_tensor(r, "dense/bias", TF_DT_FLOAT, bias, 8, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'dense/bias' has 12 bytes, expected 8"));
    ck_assert_int_eq(bundle_read_tensor(r, "nope", TF_DT_FLOAT, bias, 8, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no tensor 'nope'"));
    bundle_close(r);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

/* What a crash at each point of a save leaves behind: the state file still names a complete
 * checkpoint, which wins (the state file is written last). A checkpoint it names that has lost
 * its files, as after a partial copy, gives way to the newest complete one with a warning
 * naming it; with no complete one left but checkpoint files there, an error (never a fresh start
 * over them); with no checkpoint file left, a fresh start with a warning (as TF). */
START_TEST(test_latest_skips_incomplete) {
    char dir[256], path[512], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_ckpt_crash");
    save(dir, 10, 5);
    save(dir, 20, 5);

    /* crash while writing the data file: only a temporary exists */
    snprintf(path, sizeof path, "%s/.model.ckpt-30.data-00000-of-00001.tmp-123-0", dir);
    ck_assert_int_eq(test_write_file(path, "xx", 2), 0);
    ck_assert_int_eq(latest(dir), 20);
    snprintf(path, sizeof path, "%s/model.ckpt-30.data-00000-of-00001.tmp-123-1", dir);
    ck_assert_int_eq(test_write_file(path, "xx", 2), 0);   /* an earlier version's name */
    ck_assert_int_eq(latest(dir), 20);
    /* crash after the data rename, before the index: data without index */
    snprintf(path, sizeof path, "%s/model.ckpt-30.data-00000-of-00001", dir);
    ck_assert_int_eq(test_write_file(path, "xx", 2), 0);
    ck_assert_int_eq(latest(dir), 20);
    /* an index whose data file is short (e.g. a copy cut off) does not count */
    State s;
    make_state(&s, 40);
    snprintf(path, sizeof path, "%s/model.ckpt-40", dir);
    ck_assert_int_eq(bundle_write(path, s.t, 3, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/model.ckpt-40.data-00000-of-00001", dir);
    ck_assert_int_eq(truncate(path, 10), 0);
    ck_assert_int_eq(latest(dir), 20);
    /* a corrupt index does not count either */
    snprintf(path, sizeof path, "%s/model.ckpt-40.index", dir);
    size_t n;
    uint8_t *idx = test_read_file(path, &n);
    idx[3] ^= 1;
    ck_assert_int_eq(test_write_file(path, idx, n), 0);
    free(idx);
    ck_assert_int_eq(latest(dir), 20);
    /* crash after both renames, before the state file: the state file's checkpoint, as TF */
    make_state(&s, 50);
    snprintf(path, sizeof path, "%s/model.ckpt-50", dir);
    ck_assert_int_eq(bundle_write(path, s.t, 3, err, sizeof err), 0);
    ck_assert_int_eq(latest(dir), 20);
    /* a failed save (bad tensor) changes nothing */
    TfTensor bad = {"x", TF_DT_FLOAT, 1, {3}, s.bias, 4};
    ck_assert_int_eq(checkpoint_save(dir, 60, &bad, 1, 5, NULL, 0, err, sizeof err), -1);
    ck_assert_int_eq(latest(dir), 20);
    ck_assert_int_eq(has_checkpoint_files(dir, 60), 0);
    /* the named one's data file cut short (a partial copy): the newest complete one, warned */
    snprintf(path, sizeof path, "%s/model.ckpt-20.data-00000-of-00001", dir);
    ck_assert_int_eq(truncate(path, 10), 0);
    const char *cut[] = {"model.ckpt-20, named by the checkpoint file, is missing or incomplete",
                         "resuming from", "model.ckpt-50, the newest complete checkpoint there"};
    ck_assert_int_eq(latest_warned(dir, cut, 3), 50);
    /* a user rolls back by naming an older one */
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    const char *back = "model_checkpoint_path: \"model.ckpt-10\"\n";
    ck_assert_int_eq(test_write_file(path, back, strlen(back)), 0);
    ck_assert_int_eq(latest(dir), 10);
    /* without a state file: the highest-step complete one; a newer incomplete one is warned of */
    unlink(path);
    ck_assert_int_eq(latest(dir), 50);
    snprintf(path, sizeof path, "%s/model.ckpt-50.data-00000-of-00001", dir);
    unlink(path);
    const char *newer[] = {"model.ckpt-50 is missing or incomplete", "resuming from",
                           "model.ckpt-10, the newest complete checkpoint there"};
    ck_assert_int_eq(latest_warned(dir, newer, 3), 10);
    /* checkpoint files but none complete: refused, never a fresh start over them */
    snprintf(path, sizeof path, "%s/model.ckpt-10.data-00000-of-00001", dir);
    unlink(path);
    const char *none[] = {"no complete checkpoint to resume from", "model.ckpt-50",
                          "to start afresh, use another --job-dir"};
    latest_refused(dir, none, 3);
    /* a state file naming a checkpoint of which no file is left: a fresh start, warned (TF's
     * latest_checkpoint finds nothing there either) */
    char empty[256];
    test_make_tmpdir(empty, sizeof empty, "test_ckpt_gone");
    snprintf(path, sizeof path, "%s/checkpoint", empty);
    const char *stale = "model_checkpoint_path: \"model.ckpt-7\"\n";
    ck_assert_int_eq(test_write_file(path, stale, strlen(stale)), 0);
    const char *gone[] = {"model.ckpt-7, named by the checkpoint file, is gone",
                          "training starts afresh"};
    ck_assert_int_eq(latest_warned(empty, gone, 2), -1);
    /* a job killed in its first save, before the index: a data file alone is no checkpoint */
    unlink(path);
    snprintf(path, sizeof path, "%s/model.ckpt-0.data-00000-of-00001", empty);
    ck_assert_int_eq(test_write_file(path, "xx", 2), 0);
    ck_assert_int_eq(latest(empty), -1);
    ck_assert_int_eq(test_remove_tree(empty), 0);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

/* TF's own state files: the fixture's, and TF >= 1.12's with timestamps and absolute paths. */
START_TEST(test_state_file_formats) {
    char **paths, err[512];
    int n = checkpoint_state_read(FIXTURE, &paths, err, sizeof err);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(paths[0], FIXTURE "/model.ckpt-0");
    ck_assert_str_eq(paths[1], FIXTURE "/model.ckpt-10");
    checkpoint_paths_free(paths, n);
    /* the fixture has indexes but no data files: refused (a job that trained afresh there
     * overwrote TF's model.ckpt-0.index) */
    const char *none[] = {"no complete checkpoint to resume from", "model.ckpt-10",
                          "to start afresh, use another --job-dir"};
    latest_refused(FIXTURE, none, 3);

    char dir[256], path[512];
    test_make_tmpdir(dir, sizeof dir, "test_ckpt_state");
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    const char *tf2 = "model_checkpoint_path: \"/abs/where/model.ckpt-300\"\n"
                      "all_model_checkpoint_paths: \"/abs/where/model.ckpt-200\"\n"
                      "all_model_checkpoint_timestamps: 1562621605.123\n"
                      "last_preserved_timestamp: 1562621600.5\n";
    ck_assert_int_eq(test_write_file(path, tf2, strlen(tf2)), 0);
    n = checkpoint_state_read(dir, &paths, err, sizeof err);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(paths[0], "/abs/where/model.ckpt-200");
    ck_assert_str_eq(paths[1], "/abs/where/model.ckpt-300");
    checkpoint_paths_free(paths, n);
    const char *bad = "model_checkpoint_path: model.ckpt-3\n";
    ck_assert_int_eq(test_write_file(path, bad, strlen(bad)), 0);
    ck_assert_int_eq(checkpoint_state_read(dir, &paths, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "checkpoint:1: malformed"));
    /* a resume warns of it and goes by the checkpoint files (here none: a fresh start) */
    const char *malformed[] = {"checkpoint:1: malformed", "the checkpoint files are used instead"};
    ck_assert_int_eq(latest_warned(dir, malformed, 2), -1);
    /* a damaged state file does not stop a save: it is rewritten */
    save(dir, 3, 5);
    ck_assert_int_eq(checkpoint_state_read(dir, &paths, err, sizeof err), 1);
    checkpoint_paths_free(paths, 1);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

static Suite *checkpoint_suite(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_save_keep_max_and_state_file);
    tcase_add_test(tc, test_read_back_by_name);
    tcase_add_test(tc, test_latest_skips_incomplete);
    tcase_add_test(tc, test_state_file_formats);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(checkpoint_suite());
}
