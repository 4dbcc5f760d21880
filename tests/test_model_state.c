/* test_model_state.c: a Model's state <-> checkpoints (cli/model_state.h), in particular TF1
 * AdamOptimizer's beta1_power / beta2_power beside the slots, checkpoints written on a
 * background thread (cli/checkpoint_writer.h), and exports written beside the evaluation
 * (cli/export_writer.h). (TF1's Saver.restore of a
 * trainer's checkpoint is tests/tf/test_trainer_e2e.py.) */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/checkpoint_writer.h"
#include "cli/export_writer.h"
#include "cli/model_graph.h"
#include "cli/model_state.h"
#include "io/checkpoint.h"
#include "io/tensor_bundle.h"
#include "support/check_run.h"
#include "support/test_files.h"

#define SPEC "conv:4:3,relu,maxpool:2,flatten,dense:10"
#define BATCH 4

static Model *small_model(OptimizerKind opt, ModelConfig *cfg) {
    model_config_default(cfg);
    cfg->spec = SPEC;
    cfg->batch = BATCH;
    cfg->optimizer = opt;
    cfg->threads = 1;
    char err[512];
    Model *m = model_create(cfg, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    return m;
}

/* `steps` training steps on fixed pseudo-random images, so the slots are not zero. */
static void train(Model *m, int steps) {
    static float images[BATCH * 28 * 28];
    int32_t labels[BATCH] = {1, 7, 3, 0};
    for (int i = 0; i < BATCH * 28 * 28; i++) images[i] = (float)((i * 37) % 256);
    char err[512];
    for (int s = 0; s < steps; s++)
        ck_assert_msg(model_train_step(m, images, labels, BATCH, NULL, err, sizeof err) == 0,
                      "%s", err);
}

static float read_scalar(BundleReader *r, const char *name) {
    float v = -1.0f;
    char err[512];
    ck_assert_msg(bundle_read_tensor(r, name, TF_DT_FLOAT, &v, sizeof v, err, sizeof err) == 0,
                  "%s", err);
    return v;
}

/* every state tensor of a and b equal, and the step */
static void assert_same_state(const Model *a, const Model *b) {
    ck_assert_int_eq(model_step(a), model_step(b));
    ck_assert_int_eq(model_state_count(a), model_state_count(b));
    for (int i = 0; i < model_state_count(a); i++) {
        size_t n = model_state_info(a, i)->count;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        ck_assert(model_state_get(a, i, x) == 0 && model_state_get(b, i, y) == 0);
        ck_assert_msg(memcmp(x, y, n * sizeof *x) == 0, "%s differs",
                      model_state_info(a, i)->name);
        free(x);
        free(y);
    }
}

/* Saves m's checkpoint in dir through the writer, in this thread; its prefix into prefix. */
static void save_now(const Model *m, const ModelConfig *cfg, const char *dir, char *prefix,
                     size_t cap) {
    CheckpointWriter w;
    char err[512];
    checkpoint_writer_init(&w);
    ck_assert_msg(checkpoint_writer_start(&w, m, cfg, dir, 0, NULL, 0, 0, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_msg(checkpoint_writer_wait(&w, err, sizeof err) == 1, "%s", err);
    ck_assert_uint_lt(strlen(w.prefix), cap);
    memcpy(prefix, w.prefix, strlen(w.prefix) + 1);
    checkpoint_writer_free(&w);
}

START_TEST(test_adam_checkpoint_has_tf1_powers_and_restores) {
    ModelConfig cfg;
    Model *m = small_model(OPT_ADAM, &cfg);
    train(m, 3);
    char dir[256], prefix[512], err[512];
    test_make_tmpdir(dir, sizeof dir, "model_state");
    save_now(m, &cfg, dir, prefix, sizeof prefix);
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    /* after 3 steps TF1's accumulators hold beta^4, the powers of the 4th step */
    const BundleEntry *e = bundle_find(r, "beta1_power");
    ck_assert(e != NULL && e->rank == 0 && e->dtype == TF_DT_FLOAT);
    ck_assert_float_eq_tol(read_scalar(r, "beta1_power"), 0.9f * 0.9f * 0.9f * 0.9f, 1e-7);
    ck_assert_float_eq_tol(read_scalar(r, "beta2_power"), powf(0.999f, 4.0f), 1e-7);
    ck_assert(bundle_find(r, "conv2d/kernel/Adam") && bundle_find(r, "conv2d/kernel/Adam_1"));
    /* parameters + 2 slots each + global_step + the 2 powers */
    ck_assert_int_eq(bundle_num_entries(r), model_state_count(m) + 3);
    bundle_close(r);

    ModelConfig cfg2;
    Model *back = small_model(OPT_ADAM, &cfg2);
    ck_assert_msg(model_checkpoint_restore(back, &cfg2, prefix, err, sizeof err) == 0, "%s", err);
    assert_same_state(m, back);
    model_free(back);
    model_free(m);
    test_remove_tree(dir);
}
END_TEST

/* A checkpoint of another --model: the refusal names both shapes (TF's "Assign requires shapes
 * of both tensors to match. lhs shape= [..] rhs shape= [..]"). */
START_TEST(test_shape_mismatch_names_both_shapes) {
    BundleEntry e;
    memset(&e, 0, sizeof e);
    e.rank = 4;
    const int64_t stored[4] = {5, 5, 1, 4};
    memcpy(e.shape, stored, sizeof stored);
    StateInfo si = {"conv2d/kernel", STATE_PARAM, 4, {5, 5, 1, 8}, 200};
    char why[128];
    ck_assert_int_eq(model_state_shape_differs(&e, &si, why, sizeof why), 1);
    ck_assert_str_eq(why, "[5,5,1,4] there, [5,5,1,8] in this model");
    si.shape[3] = 4;
    ck_assert_int_eq(model_state_shape_differs(&e, &si, why, sizeof why), 0);
    si.rank = 2;   /* another rank */
    ck_assert_int_eq(model_state_shape_differs(&e, &si, why, sizeof why), 1);
    ck_assert_str_eq(why, "[5,5,1,4] there, [5,5] in this model");
}
END_TEST

/* Writes the Adam snapshot of m at its step, with beta1_power replaced by `power` (or both
 * powers left out when drop_powers), as <dir>/model.ckpt-<step>. */
static void save_with_powers(const Model *m, const ModelConfig *cfg, const char *dir,
                             float power, int drop_powers, char *prefix, size_t cap) {
    ModelSnapshot s;
    char err[512];
    ck_assert_msg(model_snapshot_take(m, cfg, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(s.tensors[s.n - 2].name, "beta1_power");
    s.beta_power[0] = power;
    if (drop_powers) s.n -= 2;
    ck_assert_msg(checkpoint_save(dir, s.global_step, s.tensors, s.n, 0, prefix, cap, err,
                                  sizeof err) == 0, "%s", err);
    model_snapshot_free(&s);
}

/* A restore test's models: m trained `steps` Adam steps, fresh and untouched of the same shape
 * (untouched for restores that must fail), and a temporary dir for the checkpoints. */
typedef struct {
    ModelConfig cfg, fresh_cfg;
    Model *m, *fresh, *untouched;
    char dir[256];
} Restore;

static void restore_setup(Restore *r, int steps) {
    r->m = small_model(OPT_ADAM, &r->cfg);
    train(r->m, steps);
    test_make_tmpdir(r->dir, sizeof r->dir, "model_state");
    r->fresh = small_model(OPT_ADAM, &r->fresh_cfg);
    r->untouched = small_model(OPT_ADAM, &r->fresh_cfg);
}

static void restore_teardown(Restore *r) {
    model_free(r->untouched);
    model_free(r->fresh);
    model_free(r->m);
    test_remove_tree(r->dir);
}

START_TEST(test_restore_checks_the_powers_against_global_step) {
    Restore r;
    restore_setup(&r, 5);
    Model *m = r.m, *fresh = r.fresh, *untouched = r.untouched;
    ModelConfig cfg = r.cfg, fresh_cfg = r.fresh_cfg;
    const char *dir = r.dir;
    char prefix[512], err[512];

    /* TF's product of float multiplications drifts from powf: a relative 1e-5 still matches */
    save_with_powers(m, &cfg, dir, powf(0.9f, 6.0f) * (1.0f + 1e-5f), 0, prefix, sizeof prefix);
    ck_assert_msg(model_checkpoint_restore(fresh, &fresh_cfg, prefix, err, sizeof err) == 0,
                  "%s", err);
    assert_same_state(m, fresh);

    /* the powers of another step count: an error naming the tensor, the model untouched */
    save_with_powers(m, &cfg, dir, powf(0.9f, 7.0f), 0, prefix, sizeof prefix);
    ck_assert_int_eq(model_checkpoint_restore(untouched, &fresh_cfg, prefix, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "beta1_power") && strstr(err, "global_step 5"), "%s", err);
    ck_assert_int_eq(model_step(untouched), 0);
    save_with_powers(m, &cfg, dir, NAN, 0, prefix, sizeof prefix);
    ck_assert_int_eq(model_checkpoint_restore(untouched, &fresh_cfg, prefix, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "beta1_power") != NULL, "%s", err);
    ck_assert_int_eq(model_step(untouched), 0);

    /* no powers at all (a TF2 / Keras checkpoint): restored from global_step alone */
    save_with_powers(m, &cfg, dir, 0.0f, 1, prefix, sizeof prefix);
    ck_assert_msg(model_checkpoint_restore(untouched, &fresh_cfg, prefix, err, sizeof err) == 0,
                  "%s", err);
    assert_same_state(m, untouched);
    restore_teardown(&r);
}
END_TEST

/* A checkpoint as the original Keras job writes it (tf-formats.md §7/§11): m's parameters,
 * Adam's slots under Keras's creation-order names (m of parameter p "training/Variable_<p>", v
 * "training/Variable_<P+p>", amsgrad's unused vhat "_<2P+p>" of shape [1]), the optimizer's own
 * scalars, global_step, no beta powers. iterations and decay as given. */
static void save_keras(const Model *m, const ModelConfig *cfg, const char *dir,
                       int64_t iterations, float decay, char *prefix, size_t cap) {
    ModelSnapshot s;
    char err[512];
    ck_assert_msg(model_snapshot_take(m, cfg, &s, err, sizeof err) == 0, "%s", err);
    int params = 0;
    while (model_state_info(m, params)->kind != STATE_OPT_SLOT) params++;
    TfTensor t[64];
    char names[64][64];
    static const float zero = 0.0f, lr = 0.001f, beta1 = 0.9f, beta2 = 0.999f;
    int n = 0;
    for (int i = 0; i < model_state_count(m); i++) {
        t[n] = s.tensors[i];
        if (i >= params) { /* slot (i - params) % 2 of parameter (i - params) / 2 */
            const int k = i - params, index = (k % 2) * params + k / 2;
            if (index)
                snprintf(names[n], sizeof names[n], "training/Variable_%d", index);
            else
                snprintf(names[n], sizeof names[n], "training/Variable");
            t[n].name = names[n];
        }
        n++;
    }
    for (int p = 0; p < params; p++) {
        snprintf(names[n], sizeof names[n], "training/Variable_%d", 2 * params + p);
        t[n] = (TfTensor){.name = names[n], .dtype = TF_DT_FLOAT, .rank = 1, .shape = {1},
                          .data = &zero, .nbytes = sizeof zero};
        n++;
    }
    t[n++] = (TfTensor){.name = "Adam/iterations", .dtype = TF_DT_INT64, .data = &iterations,
                        .nbytes = sizeof iterations};
    t[n++] = (TfTensor){.name = "Adam/lr", .dtype = TF_DT_FLOAT, .data = &lr, .nbytes = 4};
    t[n++] = (TfTensor){.name = "Adam/beta_1", .dtype = TF_DT_FLOAT, .data = &beta1, .nbytes = 4};
    t[n++] = (TfTensor){.name = "Adam/beta_2", .dtype = TF_DT_FLOAT, .data = &beta2, .nbytes = 4};
    t[n++] = (TfTensor){.name = "Adam/decay", .dtype = TF_DT_FLOAT, .data = &decay, .nbytes = 4};
    t[n++] = s.tensors[model_state_count(m)]; /* global_step */
    ck_assert_str_eq(t[n - 1].name, "global_step");
    ck_assert_msg(checkpoint_save(dir, s.global_step, t, n, 0, prefix, cap, err, sizeof err) == 0,
                  "%s", err);
    model_snapshot_free(&s);
}

/* A job dir the original Keras job wrote resumes: the same state from Keras's slot names; a
 * Keras Adam whose step count is not global_step, or with decay, is an error naming it. */
START_TEST(test_keras_checkpoint_resumes) {
    Restore r;
    restore_setup(&r, 3);
    Model *m = r.m, *fresh = r.fresh, *untouched = r.untouched;
    char prefix[512], err[512];
    save_keras(m, &r.cfg, r.dir, 3, 0.0f, prefix, sizeof prefix);
    ck_assert_msg(model_checkpoint_restore(fresh, &r.fresh_cfg, prefix, err, sizeof err) == 0,
                  "%s", err);
    assert_same_state(m, fresh);
    /* and trains on as the original does */
    train(m, 1);
    train(fresh, 1);
    assert_same_state(m, fresh);

    save_keras(m, &r.cfg, r.dir, 5, 0.0f, prefix, sizeof prefix);
    ck_assert_int_eq(model_checkpoint_restore(untouched, &r.fresh_cfg, prefix, err, sizeof err),
                     -1);
    ck_assert_msg(strstr(err, "Adam/iterations = 5") && strstr(err, "global_step = 4"), "%s", err);
    save_keras(m, &r.cfg, r.dir, 4, 0.01f, prefix, sizeof prefix);
    ck_assert_int_eq(model_checkpoint_restore(untouched, &r.fresh_cfg, prefix, err, sizeof err),
                     -1);
    ck_assert_msg(strstr(err, "Adam/decay") != NULL, "%s", err);
    ck_assert_int_eq(model_step(untouched), 0);
    restore_teardown(&r);
}
END_TEST

/* The original job's own checkpoint (the fixture's index, TF 1.12): every state tensor of the
 * original model with Adam is there under our mapping of Keras's names, with its shape (a
 * mapping that took the slots parameter-major fails on the shapes). */
START_TEST(test_original_job_checkpoint_names) {
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.threads = 1;
    char err[512];
    Model *m = model_create(&cfg, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    const char *prefix = SHARED_DIR "/fixtures/tf112-estimator-export/model.ckpt-10";
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_msg(model_checkpoint_check_names(m, r, prefix, err, sizeof err) == 0, "%s", err);
    bundle_close(r);
    model_free(m);
}
END_TEST

START_TEST(test_powers_underflow_and_other_optimizers) {
    /* beta1^(t+1) reaches 0 in float (TF's product too): any tiny stored value matches */
    ck_assert_float_eq(adam_beta_power(0.9f, 2000), 0.0f);
    ck_assert_float_eq(adam_beta_power(0.9f, 0), 0.9f);

    ModelConfig cfg;
    Model *m = small_model(OPT_MOMENTUM, &cfg);
    train(m, 2);
    char dir[256], prefix[512], err[512];
    test_make_tmpdir(dir, sizeof dir, "model_state");
    save_now(m, &cfg, dir, prefix, sizeof prefix);
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert(bundle_find(r, "beta1_power") == NULL && bundle_find(r, "beta2_power") == NULL);
    ck_assert(bundle_find(r, "dense/kernel/Momentum") != NULL);
    bundle_close(r);
    /* an export snapshot: parameters and global_step only */
    ModelSnapshot s;
    ck_assert_msg(model_snapshot_take(m, NULL, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.n, model_param_count(m) + 1);
    ck_assert_str_eq(s.tensors[s.n - 1].name, "global_step");
    model_snapshot_free(&s);
    model_free(m);
    test_remove_tree(dir);
}
END_TEST

/* A save started at step 2 holds step 2's state, although the model trains on while its files
 * are written; its .meta is there; background and inline saves write the same files. */
START_TEST(test_writer_saves_the_snapshot_while_training_goes_on) {
    ModelConfig cfg;
    Model *m = small_model(OPT_ADAM, &cfg);
    ModelConfig cfg_ref;
    Model *at2 = small_model(OPT_ADAM, &cfg_ref);  /* the same seed: the same state as m */
    train(m, 2);
    train(at2, 2);
    char dir[256], err[512];
    test_make_tmpdir(dir, sizeof dir, "ckpt_writer");
    const char meta[] = "\x0a\x00";
    CheckpointWriter w;
    checkpoint_writer_init(&w);
    ck_assert_int_eq(checkpoint_writer_wait(&w, err, sizeof err), 0);   /* nothing pending */
    const float *first_copy = NULL;
    for (int background = 1; background >= 0; background--) {
        ck_assert_msg(checkpoint_writer_start(&w, m, &cfg, dir, 0, meta, 2, background, err,
                                              sizeof err) == 0, "%s", err);
        /* the second save refills the first one's host copies */
        if (first_copy) ck_assert_ptr_eq(w.snap.buffers[0], first_copy);
        first_copy = w.snap.buffers[0];
        char expect[512];
        snprintf(expect, sizeof expect, "%s/model.ckpt-%lld", dir, (long long)model_step(at2));
        ck_assert_str_eq(w.prefix, expect);
        /* a second save before the first is waited for is refused */
        ck_assert_int_eq(checkpoint_writer_start(&w, m, &cfg, dir, 0, meta, 2, background, err,
                                                 sizeof err), -1);
        ck_assert_msg(strstr(err, "still pending") != NULL, "%s", err);
        train(m, 1);                                  /* the model moves on meanwhile */
        ck_assert_int_eq(checkpoint_writer_wait(&w, err, sizeof err), 1);
        ck_assert_int_eq(checkpoint_writer_wait(&w, err, sizeof err), 0);
        ck_assert(w.write_seconds > 0.0);

        ModelConfig cfg2;
        Model *back = small_model(OPT_ADAM, &cfg2);
        ck_assert_msg(model_checkpoint_restore(back, &cfg2, expect, err, sizeof err) == 0, "%s",
                      err);
        assert_same_state(at2, back);
        model_free(back);
        char path[600];
        snprintf(path, sizeof path, "%s.meta", expect);
        size_t n = 0;
        uint8_t *bytes = test_read_file(path, &n);
        ck_assert(bytes != NULL && n == 2 && memcmp(bytes, meta, 2) == 0);
        free(bytes);
        train(at2, 1);                                /* at2 follows m to the next save */
    }
    checkpoint_writer_free(&w);
    model_free(at2);
    model_free(m);
    test_remove_tree(dir);
}
END_TEST

/* A save whose files cannot be written fails at the wait, with the path in the message; the
 * writer is usable again afterwards. */
START_TEST(test_writer_reports_a_failed_save_at_the_wait) {
    ModelConfig cfg;
    Model *m = small_model(OPT_SGD, &cfg);
    char dir[256], bad[512], err[512];
    test_make_tmpdir(dir, sizeof dir, "ckpt_writer");
    snprintf(bad, sizeof bad, "%s/a_file", dir);
    ck_assert_int_eq(test_write_file(bad, "x", 1), 0);
    snprintf(bad, sizeof bad, "%s/a_file/model_dir", dir);   /* under a regular file */
    CheckpointWriter w;
    checkpoint_writer_init(&w);
    for (int background = 1; background >= 0; background--) {
        ck_assert_msg(checkpoint_writer_start(&w, m, &cfg, bad, 0, NULL, 0, background, err,
                                              sizeof err) == 0, "%s", err);
        ck_assert_int_eq(checkpoint_writer_wait(&w, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "a_file") != NULL, "%s", err);
    }
    ck_assert_msg(checkpoint_writer_start(&w, m, &cfg, dir, 0, NULL, 0, 1, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(checkpoint_writer_wait(&w, err, sizeof err), 1);
    char found[600];
    int64_t step = -1;
    char warning[256];
    ck_assert_int_eq(checkpoint_latest(dir, found, sizeof found, &step, warning, sizeof warning,
                                       err, sizeof err), 1);
    ck_assert_str_eq(warning, "");
    ck_assert_str_eq(found, w.prefix);
    checkpoint_writer_free(&w);
    model_free(m);
    test_remove_tree(dir);
}
END_TEST

/* An export started at step 2 holds step 2's weights although the model trains on while its
 * files are written, under the base and a second (SageMaker) dir, and in a third (Vertex AI) dir
 * itself, which the second round replaces; a second start while one is
 * pending is refused; a dir that cannot be written fails at the wait naming it, and the writer
 * works again afterwards; inline (background 0) the same. */
START_TEST(test_export_writer) {
    ModelConfig cfg, cfg_ref;
    Model *m = small_model(OPT_ADAM, &cfg), *at2 = small_model(OPT_ADAM, &cfg_ref);
    train(m, 2);
    train(at2, 2);
    SmModel graph;
    SmLayer layers[MODEL_SPEC_MAX_LAYERS];
    char dir[256], base[512], sm[512], aip[512], bad[512], err[512];
    ck_assert_msg(model_graph_from_spec(SPEC, &graph, layers, err, sizeof err) == 0, "%s", err);
    test_make_tmpdir(dir, sizeof dir, "export_writer");
    snprintf(base, sizeof base, "%s/export/exporter", dir);
    snprintf(sm, sizeof sm, "%s/sm", dir);
    snprintf(aip, sizeof aip, "%s/aip/model", dir);
    snprintf(bad, sizeof bad, "%s/a_file", dir);
    ck_assert_int_eq(test_write_file(bad, "x", 1), 0);
    snprintf(bad, sizeof bad, "%s/a_file/export", dir);   /* under a regular file */
    ExportWriter x;
    export_writer_init(&x);
    x.example_instances = "[[[1]]]\n";
    ck_assert_int_eq(export_writer_wait(&x, err, sizeof err), 0);   /* nothing pending */
    for (int background = 1; background >= 0; background--) {
        ck_assert_msg(export_writer_start(&x, m, &graph, base, sm, aip, 0, background, err,
                                          sizeof err) == 0, "%s", err);
        ck_assert_int_eq(export_writer_start(&x, m, &graph, base, sm, aip, 0, background, err,
                                             sizeof err), -1);
        ck_assert_msg(strstr(err, "still pending") != NULL, "%s", err);
        train(m, 1);                                  /* the model moves on meanwhile */
        ck_assert_msg(export_writer_wait(&x, err, sizeof err) == 1, "%s", err);
        ck_assert_int_eq(export_writer_wait(&x, err, sizeof err), 0);
        ck_assert_int_eq(x.ndirs, 3);
        ck_assert(strncmp(x.path[0], base, strlen(base)) == 0);
        ck_assert(strncmp(x.path[1], sm, strlen(sm)) == 0);
        ck_assert_str_eq(x.path[2], aip);
        for (int d = 0; d < 3; d++) {
            char extra[4300];                         /* the request contract beside it */
            snprintf(extra, sizeof extra, "%s/assets.extra/signature.json", x.path[d]);
            size_t n;
            uint8_t *sig = test_read_file(extra, &n);
            ck_assert_ptr_nonnull(sig);
            char text[2048];                          /* NUL-terminated */
            snprintf(text, sizeof text, "%.*s", (int)n, (const char *)sig);
            free(sig);
            ck_assert_msg(strstr(text, "\"image_input\": {\"dtype\": \"DT_FLOAT\"") != NULL, "%s",
                          text);
            snprintf(extra, sizeof extra, "%s/assets.extra/example_instances.json", x.path[d]);
            char *inst = (char *)test_read_file(extra, &n);
            ck_assert_ptr_nonnull(inst);
            ck_assert_uint_eq(n, 8);
            ck_assert_mem_eq(inst, "[[[1]]]\n", 8);
            free(inst);
            SmInfo info;
            ck_assert_msg(savedmodel_read(x.path[d], &info, err, sizeof err) == 0, "%s", err);
            savedmodel_info_free(&info);
            /* the weights of step 2: the export's variables against at2's parameters */
            char prefix[4200];
            snprintf(prefix, sizeof prefix, "%s/variables/variables", x.path[d]);
            BundleReader *r = bundle_open(prefix, err, sizeof err);
            ck_assert_msg(r != NULL, "%s", err);
            for (int i = 0; i < model_param_count(at2); i++) {
                const StateInfo *si = model_state_info(at2, i);
                float *want = malloc(si->count * 4), *got = malloc(si->count * 4);
                ck_assert_int_eq(model_state_get(at2, i, want), 0);
                ck_assert_msg(bundle_read_tensor(r, si->name, TF_DT_FLOAT, got, si->count * 4,
                                                 err, sizeof err) == 0, "%s", err);
                ck_assert_msg(memcmp(want, got, si->count * 4) == 0, "%s differs", si->name);
                free(want);
                free(got);
            }
            bundle_close(r);
        }
        ck_assert(x.write_seconds > 0.0);
        train(at2, 1);                                /* at2 follows m to the next export */
        ck_assert_msg(export_writer_start(&x, m, &graph, bad, NULL, NULL, 0, background, err,
                                          sizeof err) == 0, "%s", err);
        ck_assert_int_eq(export_writer_wait(&x, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "a_file") != NULL, "%s", err);
    }
    ck_assert_int_eq(test_count_dir_entries(base), 2);   /* keep 0: all */
    ck_assert_int_eq(test_count_dir_entries(sm), 1);     /* SageMaker's: the newest only */
    export_writer_free(&x);
    model_free(at2);
    model_free(m);
    test_remove_tree(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("model_state");
    TCase *tc = tcase_create("checkpoints");
    tcase_add_test(tc, test_adam_checkpoint_has_tf1_powers_and_restores);
    tcase_add_test(tc, test_shape_mismatch_names_both_shapes);
    tcase_add_test(tc, test_restore_checks_the_powers_against_global_step);
    tcase_add_test(tc, test_keras_checkpoint_resumes);
    tcase_add_test(tc, test_original_job_checkpoint_names);
    tcase_add_test(tc, test_powers_underflow_and_other_optimizers);
    tcase_add_test(tc, test_writer_saves_the_snapshot_while_training_goes_on);
    tcase_add_test(tc, test_writer_reports_a_failed_save_at_the_wait);
    tcase_add_test(tc, test_export_writer);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
