/* predict.c: `predict`, TF Serving's REST predict for an export written by the engine, offline.
 *
 *   predict --model-dir EXPORT_DIR (--json-instances FILE | --json-request FILE)
 *           [--device cpu|cuda|cudnn|auto] [--batch-size N]
 *
 * 1. Reads EXPORT_DIR/saved_model.pb (signature serving_default, the layer list) and
 *    EXPORT_DIR/variables/variables.* with io/'s readers.
 * 2. Builds the engine model of that layer list (core/model.h) and restores the weights.
 * 3. Reads the instances:
 *      --json-instances: newline-delimited JSON, one instance a line (gcloud local predict):
 *                        the input's value ([28][28][1] nested lists) or {"image_input": value};
 *      --json-request:   a REST body {"instances": [...]} (row form) or {"inputs": ...}
 *                        (columnar form), with an optional "signature_name".
 *    FILE "-" is standard input.
 * 4. Prints what TF Serving answers: {"predictions": [[10 floats], ...]} (row form) or
 *    {"outputs": [[...], ...]} (columnar form); the signature has one output (dense_1).
 * Malformed JSON or a wrong shape is an error naming the line / instance and what is wrong
 * (exit 1); bad flags exit 2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/model_graph.h"
#include "cli/model_state.h"
#include "cli/predict_input.h"
#include "cli/stdout_close.h"
#include "core/model.h"
#include "io/fs.h"
#include "io/mnist_records.h"
#include "io/savedmodel.h"
#include "io/tensor_bundle.h"

static const ArgSpec SPECS[] = {
    {"model-dir", NULL, ARG_VALUE, "DIR", "SavedModel export directory (with saved_model.pb)"},
    {"json-instances", NULL, ARG_VALUE, "FILE", "newline-delimited JSON instances ('-': stdin)"},
    {"json-request", NULL, ARG_VALUE, "FILE", "a TF Serving REST predict body ('-': stdin)"},
    {"device", NULL, ARG_VALUE, "cpu|cuda|cudnn|auto", "where to compute (default cpu)"},
    {"batch-size", NULL, ARG_VALUE, "N", "examples per forward pass (default 100)"},
    {"signature-name", NULL, ARG_VALUE, "NAME",
     "the signature to run, as gcloud's flag (the exports have only serving_default)"},
    {"help", "h", ARG_BOOL, NULL, "show this help"},
};
enum { NSPECS = sizeof SPECS / sizeof SPECS[0] };

static void usage(FILE *out) {
    fprintf(out, "usage: predict --model-dir EXPORT_DIR (--json-instances FILE | --json-request "
                 "FILE) [options]\n");
    args_print_help(out, SPECS, NSPECS);
}

/* ---- input ------------------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *n, char *err, size_t errlen) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *p = realloc(buf, 2 * cap + 1);
        if (!p) { free(buf); buf = NULL; break; }
        buf = p;
        cap *= 2;
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errlen, "%s: read failed", path);
        return NULL;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

/* --json-instances / --json-request: the file's text, parsed by cli/predict_input.c. */
static int read_instances(const char *file, int request, InstanceBatch *b, int *columnar,
                          char *err, size_t errlen) {
    size_t n;
    char *text = read_all(file, &n, err, errlen);
    if (!text) return -1;
    int rc = request ? instances_parse_request(text, n, file, b, columnar, err, errlen)
                     : instances_parse_lines(text, n, file, b, err, errlen);
    free(text);
    return rc;
}

/* ---- the model ----------------------------------------------------------------------------- */

/* Engine model of the export, weights restored from variables/variables. The k-th weight
 * tensor of the engine (layer order, kernel then bias) is the k-th conv/dense layer's. */
static Model *load_model(const char *dir, const SmInfo *info, Device device, int batch, char *err,
                         size_t errlen) {
    char spec[2048], why[512];
    /* The engine's models take MNIST images [N,28,28,1] (core/model.h), whatever the export
     * declares: the instances were read with the export's shape, so the two must agree. */
    if (info->model.height != MNIST_ROWS || info->model.width != MNIST_COLS ||
        info->model.channels != MNIST_DEPTH) {
        snprintf(err, errlen, "%.300s: the exported network takes %dx%dx%d inputs; the engine "
                 "runs only %dx%dx%d (MNIST) models", dir, info->model.height, info->model.width,
                 info->model.channels, MNIST_ROWS, MNIST_COLS, MNIST_DEPTH);
        return NULL;
    }
    if (model_graph_to_spec(&info->model, spec, sizeof spec, why, sizeof why)) {
        snprintf(err, errlen, "%.300s: the exported network cannot run on the engine: %.300s", dir,
                 why);
        return NULL;
    }
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.spec = spec;
    cfg.batch = batch;
    cfg.device = device;
    Model *m = model_create(&cfg, why, sizeof why);
    if (!m) {
        snprintf(err, errlen, "%.300s: cannot build the model (%.300s): %.300s", dir, spec, why);
        return NULL;
    }
    char prefix[4200];
    char *joined = fs_join(dir, "variables/variables");   /* "DIR/" as Vertex AI passes it */
    const int joined_ok = joined != NULL;
    snprintf(prefix, sizeof prefix, "%s", joined_ok ? joined : "");
    free(joined);
    BundleReader *r = joined_ok ? bundle_open(prefix, err, errlen) : NULL;
    if (!joined_ok) snprintf(err, errlen, "out of memory");
    if (!r) {
        model_free(m);
        return NULL;
    }
    int k = 0, rc = 0;
    const int np = model_param_count(m);
    for (int i = 0; rc == 0 && i < info->model.num_layers; i++) {
        const SmLayer *l = &info->model.layers[i];
        if (l->kind != SM_LAYER_CONV2D && l->kind != SM_LAYER_DENSE) continue;
        for (int part = 0; rc == 0 && part < 2; part++, k++) {
            char name[SM_NAME_MAX + 16];
            snprintf(name, sizeof name, "%s/%s", l->name, part ? "bias" : "kernel");
            if (k >= np) {
                rc = -1;
                snprintf(err, errlen, "%s: the export has more weights than the model (%s)", dir,
                         name);
                break;
            }
            const StateInfo *si = model_state_info(m, k);
            const BundleEntry *e = bundle_find(r, name);
            char why[400];
            if (!e || model_state_shape_differs(e, si, why, sizeof why)) {
                rc = -1;
                if (!e) snprintf(err, errlen, "%.300s: no variable '%s'", prefix, name);
                else snprintf(err, errlen, "%.300s: variable '%s' has another shape than the "
                              "model's '%.100s': %s", prefix, name, si->name, why);
                break;
            }
            float *buf = malloc(si->count * sizeof *buf);
            rc = !buf ? -1
                      : bundle_read_tensor(r, name, TF_DT_FLOAT, buf, si->count * sizeof *buf,
                                           err, errlen);
            if (rc == 0 && model_state_set(m, k, buf) != 0) {
                rc = -1;
                snprintf(err, errlen, "cannot set '%s'", si->name);
            }
            free(buf);
        }
    }
    if (rc == 0 && k != np) {
        rc = -1;
        snprintf(err, errlen, "%s: the export has %d weight tensors, the model %d", dir, k, np);
    }
    bundle_close(r);
    if (rc) {
        model_free(m);
        return NULL;
    }
    return m;
}

/* ---- output ------------------------------------------------------------------------------- */

/* The shortest decimal that reads back as the same float; NaN and infinities as TF Serving's
 * JSON writer spells them. */
static void print_float(float v) {
    if (v != v || v - v != 0) {
        fputs(v != v ? "NaN" : v > 0 ? "Infinity" : "-Infinity", stdout);
        return;
    }
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    fputs(buf, stdout);
}

static void print_result(const char *key, const float *probs, int n, int classes) {
    printf("{\"%s\": [", key);
    for (int i = 0; i < n; i++) {
        printf(i ? ", [" : "[");
        for (int j = 0; j < classes; j++) {
            if (j) fputs(", ", stdout);
            print_float(probs[(size_t)i * classes + j]);
        }
        putchar(']');
    }
    printf("]}\n");
}

int main(int argc, char **argv) {
    char err[1024];
    ArgParse ap;
    if (args_parse(&ap, SPECS, NSPECS, argc - 1, argv + 1, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "predict: %s\n", err);
        usage(stderr);
        args_free(&ap);
        return 2;
    }
    if (args_has(&ap, "help")) {
        usage(stdout);
        args_free(&ap);
        return 0;
    }
    const char *dir = args_get(&ap, "model-dir", NULL);
    const char *instances = args_get(&ap, "json-instances", NULL);
    const char *request = args_get(&ap, "json-request", NULL);
    int batch = 100, usage_error = 0;
    Device device = DEVICE_CPU;
    if (ap.nunknown || ap.npositionals) {
        if (ap.nunknown)
            snprintf(err, sizeof err, "unknown flag %.*s", ap.unknown[0].flag_len, ap.unknown[0].flag);
        else
            snprintf(err, sizeof err, "unexpected argument '%s'", ap.positionals[0]);
        usage_error = 1;
    } else if (!dir) {
        snprintf(err, sizeof err, "--model-dir is required");
        usage_error = 1;
    } else if (!instances == !request) {
        snprintf(err, sizeof err, "give exactly one of --json-instances and --json-request");
        usage_error = 1;
    } else if (args_get_int(&ap, "batch-size", 100, &batch, err, sizeof err) != 0 || batch < 1) {
        if (batch < 1) snprintf(err, sizeof err, "--batch-size: must be at least 1");
        usage_error = 1;
    } else if (strcmp(args_get(&ap, "signature-name", PREDICT_SIGNATURE_KEY),
                      PREDICT_SIGNATURE_KEY) != 0) {
        snprintf(err, sizeof err, "--signature-name: '%s' is not in the export (it has only "
                 "\"%s\")", args_get(&ap, "signature-name", ""), PREDICT_SIGNATURE_KEY);
        usage_error = 1;
    } else if (device_parse(args_get(&ap, "device", "cpu"), &device) != 0) {
        snprintf(err, sizeof err, "--device: '%s' is not cpu, cuda, cudnn or auto",
                 args_get(&ap, "device", "cpu"));
        usage_error = 1;
    }
    if (usage_error) {
        fprintf(stderr, "predict: %s\n", err);
        usage(stderr);
        args_free(&ap);
        return 2;
    }

    /* 1. the export's signature and network */
    SmInfo info;
    if (savedmodel_read(dir, &info, err, sizeof err) != 0) {
        fprintf(stderr, "predict: %s\n", err);
        args_free(&ap);
        return 1;
    }
    int status = 1;
    Model *m = NULL;
    InstanceBatch b = {NULL, 0, 0, (int)info.input_shape[1], (int)info.input_shape[2],
               (int)info.input_shape[3], info.input_key};
    int columnar = 0;
    if (info.input_dtype != TF_DT_FLOAT || info.output_dtype != TF_DT_FLOAT) {
        fprintf(stderr, "predict: %s: signature %s: only float inputs and outputs are supported\n",
                dir, PREDICT_SIGNATURE_KEY);
        goto done;
    }
    /* 2. the instances */
    if (read_instances(instances ? instances : request, !instances, &b, &columnar, err,
                       sizeof err) != 0) {
        fprintf(stderr, "predict: %s\n", err);
        goto done;
    }
    if (b.n == 0) { /* gcloud's ReadInstances: an empty upload is no request */
        fprintf(stderr, "predict: %s: No valid instance was found in input file.\n",
                instances ? instances : request);
        goto done;
    }
    /* 3. the model and the forward pass */
    int classes = info.model.layers[info.model.num_layers - 1].units;
    float *probs = malloc((size_t)b.n * classes * sizeof *probs);
    m = load_model(dir, &info, device, b.n < batch ? b.n : batch, err, sizeof err);
    if (!m || !probs || model_predict(m, b.data, b.n, probs, err, sizeof err) != 0) {
        fprintf(stderr, "predict: %s\n", probs ? err : "out of memory");
        free(probs);
        goto done;
    }
    /* 4. TF Serving's answer */
    print_result(columnar ? "outputs" : "predictions", probs, b.n, classes);
    free(probs);
    status = stdout_close("predict") == 0 ? 0 : 1;
done:
    if (m) model_free(m);
    free(b.data);
    savedmodel_info_free(&info);
    args_free(&ap);
    return status;
}
