/* test_model_graph.c: engine model spec <-> SavedModel layer list, and that the export's variable
 * names are the engine's state names. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/model_graph.h"
#include "core/model.h"
#include "support/check_run.h"

START_TEST(test_default_spec_is_the_original_cnn) {
    SmModel got, want;
    SmLayer gl[MODEL_SPEC_MAX_LAYERS], wl[8];
    char err[512];
    ck_assert_msg(model_graph_from_spec(NULL, &got, gl, err, sizeof err) == 0, "%s", err);
    sm_model_original_cnn(&want, wl);
    ck_assert_str_eq(got.input_key, want.input_key);
    ck_assert_int_eq(got.num_layers, 8);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(gl[i].kind, wl[i].kind);
        ck_assert_str_eq(gl[i].name, wl[i].name);
        ck_assert_int_eq(gl[i].units, wl[i].units);
        ck_assert_int_eq(gl[i].kernel_h, wl[i].kernel_h);
        ck_assert_int_eq(gl[i].stride, wl[i].stride);
        ck_assert_int_eq(gl[i].same_padding, wl[i].same_padding);
        ck_assert_int_eq(gl[i].activation, wl[i].activation);
    }
    ck_assert_float_eq(gl[6].rate, 0.4f);
}
END_TEST

/* spec -> layers -> spec -> layers gives the same layers, and the engine parses the spec. */
START_TEST(test_round_trip_specs) {
    const char *specs[] = {
        NULL,
        "conv:8:3:valid:2,relu,maxpool:3:2:same,conv:4:3,flatten,dense:16,dropout:0.25,dense:10",
        "flatten,dense:10",
        "conv:6:5,maxpool:2,relu,flatten,dense:10",   /* relu after a pool: not exportable */
    };
    for (int s = 0; s < 4; s++) {
        SmModel a, b;
        SmLayer la[MODEL_SPEC_MAX_LAYERS], lb[MODEL_SPEC_MAX_LAYERS];
        char err[512], text[1024];
        int rc = model_graph_from_spec(specs[s], &a, la, err, sizeof err);
        if (s == 3) {
            ck_assert_int_eq(rc, -1);
            ck_assert_ptr_nonnull(strstr(err, "relu (layer 3"));
            continue;
        }
        ck_assert_msg(rc == 0, "%s", err);
        ck_assert_msg(model_graph_to_spec(&a, text, sizeof text, err, sizeof err) == 0, "%s", err);
        ModelSpec parsed;
        ck_assert_msg(model_spec_parse(text, &parsed, err, sizeof err) == 0, "%s: %s", text, err);
        ck_assert_msg(model_graph_from_spec(text, &b, lb, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(a.num_layers, b.num_layers);
        for (int i = 0; i < a.num_layers; i++) {
            ck_assert_int_eq(la[i].kind, lb[i].kind);
            ck_assert_str_eq(la[i].name, lb[i].name);
            ck_assert_int_eq(la[i].units, lb[i].units);
            ck_assert_int_eq(la[i].kernel_h, lb[i].kernel_h);
            ck_assert_int_eq(la[i].stride, lb[i].stride);
            ck_assert_int_eq(la[i].same_padding, lb[i].same_padding);
            ck_assert_int_eq(la[i].activation, lb[i].activation);
        }
    }
    char spec[256], err[256];
    SmModel m;
    SmLayer l[MODEL_SPEC_MAX_LAYERS];
    ck_assert_int_eq(model_graph_from_spec(NULL, &m, l, err, sizeof err), 0);
    ck_assert_int_eq(model_graph_to_spec(&m, spec, sizeof spec, err, sizeof err), 0);
    ck_assert_str_eq(spec, "conv:32:5:same:1,relu,maxpool:2:2:valid,conv:64:5:same:1,relu,"
                           "maxpool:2:2:valid,flatten,dense:1024,relu,dropout:0.4,dense:10");
    ck_assert_int_eq(model_graph_to_spec(&m, spec, 20, err, sizeof err), -1);
}
END_TEST

/* The export names its variables "<layer>/kernel|bias": the engine's parameter names. */
START_TEST(test_export_names_are_engine_state_names) {
    const char *spec = "conv:4:3,relu,maxpool:2,conv:6:3,relu,flatten,dense:12,relu,dense:10";
    SmModel sm;
    SmLayer l[MODEL_SPEC_MAX_LAYERS];
    char err[512];
    ck_assert_int_eq(model_graph_from_spec(spec, &sm, l, err, sizeof err), 0);
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.spec = spec;
    cfg.batch = 2;
    Model *m = model_create(&cfg, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    int k = 0;
    for (int i = 0; i < sm.num_layers; i++) {
        if (l[i].kind != SM_LAYER_CONV2D && l[i].kind != SM_LAYER_DENSE) continue;
        for (int part = 0; part < 2; part++, k++) {
            char name[96];
            snprintf(name, sizeof name, "%s/%s", l[i].name, part ? "bias" : "kernel");
            ck_assert_str_eq(model_state_info(m, k)->name, name);
        }
    }
    ck_assert_int_eq(k, model_param_count(m));
    model_free(m);
}
END_TEST

static Suite *model_graph_suite(void) {
    Suite *s = suite_create("model_graph");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_default_spec_is_the_original_cnn);
    tcase_add_test(tc, test_round_trip_specs);
    tcase_add_test(tc, test_export_names_are_engine_state_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(model_graph_suite());
}
