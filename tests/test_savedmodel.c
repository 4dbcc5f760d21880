/* test_savedmodel.c: SavedModel export (graph, signature, variables, directories) and the reader,
 * which must read our exports and the real Estimator export of the fixture alike.
 * Whether TensorFlow loads and runs our exports is tests/tf/test_tf_formats.py's job. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/dirs.h"
#include "io/savedmodel.h"
#include "io/tensor_bundle.h"
#include "support/check_run.h"
#include "support/test_files.h"

#define FIXTURE_EXPORT SHARED_DIR "/fixtures/tf112-estimator-export/export/exporter/1562621605"

/* Variables of the original CNN with deterministic values. */
typedef struct {
    TfTensor t[9];
    float *buf[8];
    int64_t step;
} Vars;

static void make_vars(Vars *v, int64_t step) {
    static const struct { const char *name; int rank; int64_t shape[4]; } spec[8] = {
        {"conv2d/kernel", 4, {5, 5, 1, 32}},     {"conv2d/bias", 1, {32}},
        {"conv2d_1/kernel", 4, {5, 5, 32, 64}},  {"conv2d_1/bias", 1, {64}},
        {"dense/kernel", 2, {3136, 1024}},       {"dense/bias", 1, {1024}},
        {"dense_1/kernel", 2, {1024, 10}},       {"dense_1/bias", 1, {10}},
    };
    for (int i = 0; i < 8; i++) {
        int64_t n = tf_shape_elements(spec[i].rank, spec[i].shape);
        ck_assert(n > 0);
        v->buf[i] = malloc((size_t)n * 4);
        for (int64_t k = 0; k < n; k++) v->buf[i][k] = (float)((k * 7 + i) % 13) * 0.01f - 0.06f;
        v->t[i] = (TfTensor){spec[i].name, TF_DT_FLOAT, spec[i].rank, {0}, v->buf[i], (size_t)n * 4};
        memcpy(v->t[i].shape, spec[i].shape, sizeof spec[i].shape);
    }
    v->step = step;
    v->t[8] = (TfTensor){"global_step", TF_DT_INT64, 0, {0}, &v->step, 8};
}

static void free_vars(Vars *v) {
    for (int i = 0; i < 8; i++) free(v->buf[i]);
}

static int find_bytes(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m) {
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(hay + i, needle, m)) return 1;
    return 0;
}

static void check_original_layers(const SmInfo *info) {
    SmModel want;
    SmLayer wl[8];
    sm_model_original_cnn(&want, wl);
    ck_assert_int_eq(info->model.num_layers, 8);
    ck_assert_int_eq(info->model.height, 28);
    ck_assert_int_eq(info->model.width, 28);
    ck_assert_int_eq(info->model.channels, 1);
    for (int i = 0; i < 8; i++) {
        const SmLayer *a = &info->model.layers[i], *b = &wl[i];
        ck_assert_int_eq(a->kind, b->kind);
        ck_assert_str_eq(a->name, b->name);
        if (a->kind == SM_LAYER_CONV2D || a->kind == SM_LAYER_DENSE) {
            ck_assert_int_eq(a->units, b->units);
            ck_assert_int_eq(a->activation, b->activation);
        }
        if (a->kind == SM_LAYER_CONV2D || a->kind == SM_LAYER_MAX_POOL) {
            ck_assert_int_eq(a->kernel_h, b->kernel_h);
            ck_assert_int_eq(a->kernel_w, b->kernel_w);
            ck_assert_int_eq(a->stride, b->stride);
            ck_assert_int_eq(a->same_padding, b->same_padding);
        }
    }
}

static void check_signature(const SmInfo *info, const char *output_tensor) {
    ck_assert_str_eq(info->method, "tensorflow/serving/predict");
    ck_assert_str_eq(info->input_key, "image_input");
    ck_assert_str_eq(info->input_tensor, "Placeholder:0");
    ck_assert_int_eq(info->input_dtype, TF_DT_FLOAT);
    ck_assert_int_eq(info->input_rank, 4);
    const int64_t in_shape[4] = {-1, 28, 28, 1};
    ck_assert_mem_eq(info->input_shape, in_shape, sizeof in_shape);
    ck_assert_str_eq(info->output_key, "dense_1");
    ck_assert_str_eq(info->output_tensor, output_tensor);
    ck_assert_int_eq(info->output_dtype, TF_DT_FLOAT);
    ck_assert_int_eq(info->output_rank, 2);
    ck_assert_int_eq(info->output_shape[0], -1);
    ck_assert_int_eq(info->output_shape[1], 10);
}

static const SmVariable *find_variable(const SmInfo *info, const char *name) {
    for (int i = 0; i < info->num_variables; i++)
        if (!strcmp(info->variables[i].name, name)) return &info->variables[i];
    return NULL;
}

START_TEST(test_read_fixture_export) {
    SmInfo info;
    char err[512];
    ck_assert_msg(savedmodel_read(FIXTURE_EXPORT, &info, err, sizeof err) == 0, "%s", err);
    check_signature(&info, "dense_1/Softmax:0");
    check_original_layers(&info);
    ck_assert_int_eq(info.num_variables, 9);
    const SmVariable *k = find_variable(&info, "dense/kernel");
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->rank, 2);
    ck_assert_int_eq(k->shape[0], 3136);
    ck_assert_int_eq(k->shape[1], 1024);
    const SmVariable *gs = find_variable(&info, "global_step");
    ck_assert_int_eq(gs->dtype, TF_DT_INT64);
    ck_assert_int_eq(gs->rank, 0);
    savedmodel_info_free(&info);
}
END_TEST

START_TEST(test_encode_and_read_back) {
    Vars v;
    make_vars(&v, 1234);
    SmModel m;
    SmLayer layers[8];
    sm_model_original_cnn(&m, layers);
    PbBuf pb;
    pb_buf_init(&pb);
    char err[512];
    ck_assert_msg(savedmodel_encode(&m, v.t, 9, &pb, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_lt(pb.len, 16384);                    /* weights live in variables/ */
    /* tf-formats §12 vectors: the Placeholder node's op and attrs, a MaxPool ksize value */
    const uint8_t placeholder[] = {
        0x12, 0x0b, 'P', 'l', 'a', 'c', 'e', 'h', 'o', 'l', 'd', 'e', 'r', 0x2a, 0x0b, 0x0a, 0x05,
        'd', 't', 'y', 'p', 'e', 0x12, 0x02, 0x30, 0x01, 0x2a, 0x24, 0x0a, 0x05, 's', 'h', 'a',
        'p', 'e', 0x12, 0x1b, 0x3a, 0x19, 0x12, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0x01, 0x12, 0x02, 0x08, 0x1c, 0x12, 0x02, 0x08, 0x1c, 0x12, 0x02, 0x08,
        0x01};
    ck_assert(find_bytes(pb.data, pb.len, placeholder, sizeof placeholder));
    const uint8_t ksize[] = {0x0a, 0x05, 'k', 's', 'i', 'z', 'e', 0x12, 0x08,
                             0x0a, 0x06, 0x1a, 0x04, 0x01, 0x02, 0x02, 0x01};
    ck_assert(find_bytes(pb.data, pb.len, ksize, sizeof ksize));
    /* attrs added after TF 1.12 are never written */
    ck_assert(!find_bytes(pb.data, pb.len, (const uint8_t *)"explicit_paddings", 17));
    ck_assert(!find_bytes(pb.data, pb.len, (const uint8_t *)"allowed_devices", 15));
    ck_assert(!find_bytes(pb.data, pb.len, (const uint8_t *)"validate_shape", 14));
    SmInfo info;
    ck_assert_msg(savedmodel_parse(pb.data, pb.len, "ours", &info, err, sizeof err) == 0, "%s", err);
    check_signature(&info, "dense_1/Softmax:0");
    check_original_layers(&info);
    ck_assert_int_eq(info.num_variables, 9);
    for (int i = 0; i < 9; i++) {
        const SmVariable *sv = find_variable(&info, v.t[i].name);
        ck_assert_ptr_nonnull(sv);
        ck_assert_int_eq(sv->dtype, v.t[i].dtype);
        ck_assert_int_eq(sv->rank, v.t[i].rank);
        for (int d = 0; d < sv->rank; d++) ck_assert_int_eq(sv->shape[d], v.t[i].shape[d]);
    }
    savedmodel_info_free(&info);
    pb_buf_free(&pb);
    free_vars(&v);
}
END_TEST

/* Another sequential CNN (VALID conv, stride 2, no dropout, a 3-channel 32x32 input). */
START_TEST(test_other_model_round_trip) {
    SmLayer l[5];
    memset(l, 0, sizeof l);
    l[0] = (SmLayer){SM_LAYER_CONV2D, "c", 8, 3, 3, 2, 0, SM_ACT_RELU, 0};
    l[1] = (SmLayer){SM_LAYER_MAX_POOL, "p", 0, 3, 3, 2, 1, SM_ACT_NONE, 0};
    l[2] = (SmLayer){SM_LAYER_FLATTEN, "f", 0, 0, 0, 0, 0, SM_ACT_NONE, 0};
    l[3] = (SmLayer){SM_LAYER_DENSE, "d", 16, 0, 0, 0, 0, SM_ACT_NONE, 0};
    l[4] = (SmLayer){SM_LAYER_DENSE, "out", 4, 0, 0, 0, 0, SM_ACT_SOFTMAX, 0};
    SmModel m = {"pixels", 32, 32, 3, l, 5};
    int shapes[5][3];
    char err[512];
    ck_assert_msg(sm_model_check(&m, shapes, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(shapes[0][0], 15);                  /* VALID 3x3/2 on 32: 15 */
    ck_assert_int_eq(shapes[1][0], 8);                   /* SAME /2 on 15: 8 */
    ck_assert_int_eq(shapes[2][0], 8 * 8 * 8);
    static float ck[3 * 3 * 3 * 8], cb[8], dk[512 * 16], db[16], ok[16 * 4], ob[4];
    TfTensor t[8] = {
        {"c/kernel", TF_DT_FLOAT, 4, {3, 3, 3, 8}, ck, sizeof ck}, {"c/bias", TF_DT_FLOAT, 1, {8}, cb, sizeof cb},
        {"d/kernel", TF_DT_FLOAT, 2, {512, 16}, dk, sizeof dk},    {"d/bias", TF_DT_FLOAT, 1, {16}, db, sizeof db},
        {"out/kernel", TF_DT_FLOAT, 2, {16, 4}, ok, sizeof ok},    {"out/bias", TF_DT_FLOAT, 1, {4}, ob, sizeof ob},
    };
    PbBuf pb;
    pb_buf_init(&pb);
    ck_assert_msg(savedmodel_encode(&m, t, 6, &pb, err, sizeof err) == 0, "%s", err);
    SmInfo info;
    ck_assert_msg(savedmodel_parse(pb.data, pb.len, "other", &info, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(info.input_key, "pixels");
    ck_assert_str_eq(info.output_key, "out");
    ck_assert_int_eq(info.model.num_layers, 5);
    ck_assert_int_eq(info.model.channels, 3);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(info.model.layers[i].kind, l[i].kind);
        ck_assert_str_eq(info.model.layers[i].name, l[i].name);
        ck_assert_int_eq(info.model.layers[i].activation, l[i].activation);
    }
    ck_assert_int_eq(info.model.layers[0].same_padding, 0);
    ck_assert_int_eq(info.model.layers[0].stride, 2);
    ck_assert_int_eq(info.model.layers[1].same_padding, 1);
    ck_assert_int_eq(info.model.layers[1].kernel_h, 3);
    savedmodel_info_free(&info);
    pb_buf_free(&pb);

    /* wrong variables are reported by name, nothing is encoded */
    t[2].shape[0] = 511;
    ck_assert_int_eq(savedmodel_encode(&m, t, 6, &pb, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'d/kernel' has shape [511,16], the layer needs [512,16]"));
    t[2].shape[0] = 512;
    ck_assert_int_eq(savedmodel_encode(&m, t, 5, &pb, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'out/bias' is missing"));
    t[6] = (TfTensor){"extra/kernel", TF_DT_FLOAT, 1, {4}, ob, sizeof ob};
    ck_assert_int_eq(savedmodel_encode(&m, t, 7, &pb, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'extra/kernel' belongs to no layer"));
    l[3].activation = SM_ACT_SOFTMAX;
    ck_assert_int_eq(savedmodel_encode(&m, t, 6, &pb, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "softmax only on the last layer"));
    ck_assert_uint_eq(pb.len, 0);
    pb_buf_free(&pb);
}
END_TEST

START_TEST(test_write_directory) {
    char dir[256], exp[300], path[400], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_sm_write");
    Vars v;
    make_vars(&v, 77);
    SmModel m;
    SmLayer layers[8];
    sm_model_original_cnn(&m, layers);
    snprintf(exp, sizeof exp, "%s/1", dir);
    ck_assert_msg(savedmodel_write(exp, &m, v.t, 9, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(test_count_dir_entries(dir), 1);           /* no temp-1 left */
    ck_assert_int_eq(test_count_dir_entries(exp), 2);           /* saved_model.pb, variables */
    snprintf(path, sizeof path, "%s/variables", exp);
    ck_assert_int_eq(test_count_dir_entries(path), 2);
    SmInfo info;
    ck_assert_msg(savedmodel_read(exp, &info, err, sizeof err) == 0, "%s", err);
    savedmodel_info_free(&info);
    snprintf(path, sizeof path, "%s/variables/variables", exp);
    BundleReader *r = bundle_open(path, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(bundle_num_entries(r), 9);
    float *back = malloc(v.t[4].nbytes);
    ck_assert_int_eq(bundle_read_tensor(r, "dense/kernel", TF_DT_FLOAT, back, v.t[4].nbytes, err,
                                        sizeof err), 0);
    ck_assert_mem_eq(back, v.t[4].data, v.t[4].nbytes);
    free(back);
    bundle_close(r);
    /* an existing export is not overwritten */
    ck_assert_int_eq(savedmodel_write(exp, &m, v.t, 9, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "already exists"));
    /* a failing export (bad variables) leaves nothing behind */
    snprintf(exp, sizeof exp, "%s/2", dir);
    ck_assert_int_eq(savedmodel_write(exp, &m, v.t, 8 - 1, err, sizeof err), -1);
    ck_assert_int_eq(test_count_dir_entries(dir), 1);
    /* a trailing slash names the same directory */
    snprintf(exp, sizeof exp, "%s/3/", dir);
    ck_assert_msg(savedmodel_write(exp, &m, v.t, 9, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/3/saved_model.pb", dir);
    ck_assert(test_path_exists(path));
    ck_assert_int_eq(test_count_dir_entries(dir), 2);
    free_vars(&v);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

/* The global_step an export at dir holds. */
static int64_t export_step(const char *dir) {
    char prefix[600], err[512];
    snprintf(prefix, sizeof prefix, "%s/variables/variables", dir);
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    int64_t step = -1;
    ck_assert_msg(bundle_read_tensor(r, "global_step", TF_DT_INT64, &step, 8, err, sizeof err) == 0,
                  "%s", err);
    bundle_close(r);
    return step;
}

/* Vertex AI's layout: the SavedModel at the dir itself, written where nothing is, into an empty
 * directory, and over an earlier SavedModel; a dir holding anything else is refused untouched. */
START_TEST(test_write_over) {
    char dir[256], exp[300], path[400], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_sm_over");
    SmModel m;
    SmLayer layers[8];
    sm_model_original_cnn(&m, layers);
    Vars v;
    make_vars(&v, 5);
    snprintf(exp, sizeof exp, "%s/out/model/", dir);       /* AIP_MODEL_DIR ends with '/' */
    ck_assert_msg(savedmodel_write_over(exp, &m, v.t, 9, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(export_step(exp), 5);
    snprintf(path, sizeof path, "%s/out", dir);
    ck_assert_int_eq(test_count_dir_entries(path), 1);    /* no temp-model left */
    /* a rerun replaces it: nothing of the old tree stays, and a user's temp-model beside it
     * (the name the versioned exports use for their own temporary tree) is left alone */
    snprintf(path, sizeof path, "%s/variables/stale", exp);
    ck_assert_int_eq(test_write_file(path, "x", 1), 0);
    char theirs[400];
    snprintf(theirs, sizeof theirs, "%s/out/temp-model", dir);
    ck_assert_int_eq(dirs_make(theirs, err, sizeof err), 0);
    snprintf(theirs, sizeof theirs, "%s/out/temp-model/notes.txt", dir);
    ck_assert_int_eq(test_write_file(theirs, "mine", 4), 0);
    v.step = 9;
    ck_assert_int_eq(savedmodel_dir_replaceable(exp, err, sizeof err), 0);
    ck_assert_msg(savedmodel_write_over(exp, &m, v.t, 9, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(export_step(exp), 9);
    ck_assert(!test_path_exists(path));
    snprintf(path, sizeof path, "%s/variables", exp);
    ck_assert_int_eq(test_count_dir_entries(path), 2);
    ck_assert(test_path_exists(theirs));
    snprintf(path, sizeof path, "%s/out", dir);
    ck_assert_int_eq(test_count_dir_entries(path), 2);    /* model, temp-model: nothing of ours */
    /* an empty directory is written into */
    snprintf(exp, sizeof exp, "%s/empty", dir);
    ck_assert_int_eq(dirs_make(exp, err, sizeof err), 0);
    ck_assert_msg(savedmodel_write_over(exp, &m, v.t, 9, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(export_step(exp), 9);
    /* anything else: refused, named, left as it was */
    snprintf(exp, sizeof exp, "%s/other", dir);
    snprintf(path, sizeof path, "%s/notes.txt", exp);
    ck_assert_int_eq(dirs_make(exp, err, sizeof err), 0);
    ck_assert_int_eq(test_write_file(path, "x", 1), 0);
    ck_assert_int_eq(savedmodel_dir_replaceable(exp, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "notes.txt") && strstr(err, exp), "%s", err);
    ck_assert_int_eq(savedmodel_write_over(exp, &m, v.t, 9, err, sizeof err), -1);
    ck_assert_int_eq(test_count_dir_entries(exp), 1);
    ck_assert_int_eq(test_count_dir_entries(dir), 3);     /* out, empty, other: no temp-other */
    free_vars(&v);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

START_TEST(test_timestamped_exports_keep) {
    char dir[256], base[300], path[600], out[400], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_sm_keep");
    snprintf(base, sizeof base, "%s/export/exporter", dir);
    /* older versions, a leftover temp dir and a non-version name */
    const char *old[] = {"1000000001", "1000000002", "1000000003", "1000000004", "1000000005",
                         "temp-1000000006", "notes", "123"};
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof path, "%s/%s", base, old[i]);
        ck_assert_int_eq(dirs_make(path, err, sizeof err), 0);
    }
    Vars v;
    make_vars(&v, 5);
    SmModel m;
    SmLayer layers[8];
    sm_model_original_cnn(&m, layers);
    ck_assert_msg(savedmodel_export_timestamped(base, &m, v.t, 9, 5, out, sizeof out, err,
                                                sizeof err) == 0, "%s", err);
    const char *ts = strrchr(out, '/') + 1;
    ck_assert_uint_eq(strlen(ts), 10);
    snprintf(path, sizeof path, "%s/saved_model.pb", out);
    ck_assert(test_path_exists(path));
    snprintf(path, sizeof path, "%s/1000000001", base);
    ck_assert(!test_path_exists(path));                      /* the oldest went */
    snprintf(path, sizeof path, "%s/1000000002", base);
    ck_assert(test_path_exists(path));
    for (int i = 5; i < 8; i++) {                            /* non-versions untouched */
        snprintf(path, sizeof path, "%s/%s", base, old[i]);
        ck_assert(test_path_exists(path));
    }
    free_vars(&v);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

START_TEST(test_reader_errors) {
    SmInfo info;
    char err[512];
    const uint8_t junk[] = {0x12, 0x80};                       /* length past the end */
    ck_assert_int_eq(savedmodel_parse(junk, sizeof junk, "junk.pb", &info, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "junk.pb"));
    const uint8_t empty[] = {0x08, 0x01};                      /* schema version only */
    ck_assert_int_eq(savedmodel_parse(empty, sizeof empty, "e.pb", &info, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no MetaGraphDef with tags"));
    ck_assert_int_eq(savedmodel_read("/nonexistent/export", &info, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/export/saved_model.pb"));
    /* every truncation of a real export is an error, never a crash */
    Vars v;
    make_vars(&v, 1);
    SmModel m;
    SmLayer layers[8];
    sm_model_original_cnn(&m, layers);
    PbBuf pb;
    pb_buf_init(&pb);
    ck_assert_int_eq(savedmodel_encode(&m, v.t, 9, &pb, err, sizeof err), 0);
    for (size_t n = 0; n < pb.len; n += 7)
        ck_assert_int_eq(savedmodel_parse(pb.data, n, "cut.pb", &info, err, sizeof err), -1);
    pb_buf_free(&pb);
    free_vars(&v);
}
END_TEST

static Suite *savedmodel_suite(void) {
    Suite *s = suite_create("savedmodel");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_read_fixture_export);
    tcase_add_test(tc, test_encode_and_read_back);
    tcase_add_test(tc, test_other_model_round_trip);
    tcase_add_test(tc, test_write_directory);
    tcase_add_test(tc, test_write_over);
    tcase_add_test(tc, test_timestamped_exports_keep);
    tcase_add_test(tc, test_reader_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(savedmodel_suite());
}
