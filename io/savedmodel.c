/* savedmodel.c: SavedModel writer (tf-formats.md §3-§5, variant (b)) and reader (see savedmodel.h).
 *
 * Every proto is written with io/pb_wire.h; field numbers are named below. Attributes are written
 * only when required or when their value differs from the TF 1.12 OpDef default, as TF's own
 * exporter does with strip_default_attrs, so TF 1.12 runtimes and TF 2.x accept the graph. */
#include "io/savedmodel.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/dirs.h"
#include "io/fail.h"
#include "io/fs.h"
#include "io/tensor_bundle.h"

/* ---- field numbers ---------------------------------------------------------------------------- */
enum { SM_SCHEMA_VERSION = 1, SM_META_GRAPHS = 2 };
enum { MG_META_INFO = 1, MG_GRAPH_DEF = 2, MG_SAVER_DEF = 3, MG_COLLECTION_DEF = 4,
       MG_SIGNATURE_DEF = 5 };
enum { MI_TAGS = 4, MI_TF_VERSION = 5, MI_STRIPPED_DEFAULT_ATTRS = 7 };
enum { GD_NODE = 1, GD_VERSIONS = 4, VERSIONS_PRODUCER = 1 };
enum { ND_NAME = 1, ND_OP = 2, ND_INPUT = 3, ND_ATTR = 5 };
enum { MAP_KEY = 1, MAP_VALUE = 2 };
enum { AV_LIST = 1, AV_S = 2, AV_I = 3, AV_F = 4, AV_B = 5, AV_TYPE = 6, AV_SHAPE = 7,
       AV_TENSOR = 8 };
enum { LV_S = 2, LV_I = 3, LV_TYPE = 6 };
enum { TS_DIM = 2, TS_UNKNOWN_RANK = 3, DIM_SIZE = 1 };
enum { TP_DTYPE = 1, TP_SHAPE = 2, TP_CONTENT = 4, TP_FLOAT_VAL = 5, TP_STRING_VAL = 8 };
enum { SD_INPUTS = 1, SD_OUTPUTS = 2, SD_METHOD = 3 };
enum { TI_NAME = 1, TI_DTYPE = 2, TI_SHAPE = 3 };
enum { SV_FILENAME = 1, SV_SAVE = 2, SV_RESTORE = 3, SV_MAX_TO_KEEP = 4, SV_KEEP_HOURS = 6,
       SV_VERSION = 7, SAVER_V2 = 2 };
enum { CD_BYTES_LIST = 2, LIST_VALUE = 1 };
enum { VD_NAME = 1, VD_INITIALIZER = 2, VD_SNAPSHOT = 3, VD_IS_RESOURCE = 5, VD_INITIAL_VALUE = 6,
       VD_TRAINABLE = 7 };

#define GRAPH_PRODUCER 27          /* TF_GRAPH_DEF_VERSION of TF ~1.6-1.13 (tf-formats §3) */
#define INPUT_NODE "Placeholder"   /* the original export's input tensor: Placeholder:0 */
#define METHOD_PREDICT "tensorflow/serving/predict"
#define SIGNATURE_KEY "serving_default"

/* ---- the model --------------------------------------------------------------------------------- */

static void set_layer(SmLayer *l, SmLayerKind kind, const char *name, int units, int k, int stride,
                      int same, SmActivation act, float rate) {
    memset(l, 0, sizeof *l);
    l->kind = kind;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->units = units;
    l->kernel_h = l->kernel_w = k;
    l->stride = stride;
    l->same_padding = same;
    l->activation = act;
    l->rate = rate;
}

void sm_model_original_cnn(SmModel *out, SmLayer layers[8]) {
    set_layer(&layers[0], SM_LAYER_CONV2D, "conv2d", 32, 5, 1, 1, SM_ACT_RELU, 0);
    set_layer(&layers[1], SM_LAYER_MAX_POOL, "max_pooling2d", 0, 2, 2, 0, SM_ACT_NONE, 0);
    set_layer(&layers[2], SM_LAYER_CONV2D, "conv2d_1", 64, 5, 1, 1, SM_ACT_RELU, 0);
    set_layer(&layers[3], SM_LAYER_MAX_POOL, "max_pooling2d_1", 0, 2, 2, 0, SM_ACT_NONE, 0);
    set_layer(&layers[4], SM_LAYER_FLATTEN, "flatten", 0, 0, 0, 0, SM_ACT_NONE, 0);
    set_layer(&layers[5], SM_LAYER_DENSE, "dense", 1024, 0, 0, 0, SM_ACT_RELU, 0);
    set_layer(&layers[6], SM_LAYER_DROPOUT, "dropout", 0, 0, 0, 0, SM_ACT_NONE, 0.4f);
    set_layer(&layers[7], SM_LAYER_DENSE, "dense_1", 10, 0, 0, 0, SM_ACT_SOFTMAX, 0);
    out->input_key = "image_input";
    out->height = 28;
    out->width = 28;
    out->channels = 1;
    out->layers = layers;
    out->num_layers = 8;
}

/* TF's output size: SAME ceil(in / s), VALID ceil((in - k + 1) / s) (in 64 bits: in + s - 1
 * overflows int for the sizes a damaged export can claim; the result is <= in). */
static int out_size(int in, int k, int s, int same) {
    int64_t n = same ? ((int64_t)in + s - 1) / s : ((int64_t)in - k + 1 + s - 1) / s;
    return (int)n;
}

static int valid_name(const char *s) {
    if (!s[0]) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || (p != s && (c == '_' || c == '/' || c == '-'));
        if (!ok) return 0;
    }
    return 1;
}

int sm_model_check(const SmModel *m, int (*out_shape)[3], char *err, size_t errlen) {
    if (!m->input_key || !valid_name(m->input_key))
        return io_fail(err, errlen, "export: bad signature input name '%s'",
                       m->input_key ? m->input_key : "(null)");
    if (m->height < 1 || m->width < 1 || m->channels < 1)
        return io_fail(err, errlen, "export: bad input shape %dx%dx%d", m->height, m->width,
                       m->channels);
    if (m->num_layers < 1) return io_fail(err, errlen, "export: the model has no layers");
    int h = m->height, w = m->width, c = m->channels, flat = 0;   /* flat: rank-2 activations */
    for (int i = 0; i < m->num_layers; i++) {
        const SmLayer *l = &m->layers[i];
        if (!valid_name(l->name) || !strcmp(l->name, INPUT_NODE) || !strcmp(l->name, "save") ||
            !strcmp(l->name, "global_step"))
            return io_fail(err, errlen, "export: layer %d has an unusable name '%s'", i, l->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(m->layers[j].name, l->name))
                return io_fail(err, errlen, "export: layers %d and %d are both named '%s'", j, i,
                               l->name);
        if (l->activation == SM_ACT_SOFTMAX && i != m->num_layers - 1)
            return io_fail(err, errlen, "export: layer '%s': softmax only on the last layer", l->name);
        switch (l->kind) {
        case SM_LAYER_CONV2D:
        case SM_LAYER_MAX_POOL:
            if (flat) return io_fail(err, errlen, "export: layer '%s' needs a 4-D input", l->name);
            if (l->kernel_h < 1 || l->kernel_w < 1 || l->stride < 1 ||
                (l->kind == SM_LAYER_CONV2D && l->units < 1))
                return io_fail(err, errlen, "export: layer '%s' has a bad kernel/stride/units",
                               l->name);
            if (!l->same_padding && (l->kernel_h > h || l->kernel_w > w))
                return io_fail(err, errlen, "export: layer '%s': %dx%d window on a %dx%d input",
                               l->name, l->kernel_h, l->kernel_w, h, w);
            if (l->kind == SM_LAYER_MAX_POOL && l->activation != SM_ACT_NONE)
                return io_fail(err, errlen, "export: max_pool '%s' cannot have an activation",
                               l->name);
            h = out_size(h, l->kernel_h, l->stride, l->same_padding);
            w = out_size(w, l->kernel_w, l->stride, l->same_padding);
            if (l->kind == SM_LAYER_CONV2D) c = l->units;
            break;
        case SM_LAYER_FLATTEN:
            if (flat) return io_fail(err, errlen, "export: flatten '%s' of a 2-D input", l->name);
            if ((int64_t)h * w * c > INT_MAX)
                return io_fail(err, errlen, "export: flatten '%s' of %dx%dx%d: too large", l->name,
                               h, w, c);
            h = h * w * c;
            w = c = 0;
            flat = 1;
            break;
        case SM_LAYER_DENSE:
            if (!flat) return io_fail(err, errlen, "export: dense '%s' needs a flattened input",
                                      l->name);
            if (l->units < 1) return io_fail(err, errlen, "export: dense '%s' has %d units", l->name,
                                             l->units);
            h = l->units;
            break;
        case SM_LAYER_DROPOUT:
            break;
        default:
            return io_fail(err, errlen, "export: layer %d has unknown kind %d", i, (int)l->kind);
        }
        if (out_shape) {
            out_shape[i][0] = h;
            out_shape[i][1] = w;
            out_shape[i][2] = c;
        }
    }
    const SmLayer *last = &m->layers[m->num_layers - 1];
    if (last->kind != SM_LAYER_DENSE || last->activation != SM_ACT_SOFTMAX)
        return io_fail(err, errlen, "export: the last layer ('%s') must be dense with softmax",
                       last->name);
    return 0;
}

int savedmodel_signature_json(const SmModel *m, char *buf, size_t cap, char *err,
                              size_t errlen) {
    if (sm_model_check(m, NULL, err, errlen)) return -1;
    const SmLayer *last = &m->layers[m->num_layers - 1];
    const int n = snprintf(
        buf, cap,
        "{\n"
        "  \"signature_name\": \"serving_default\",\n"
        "  \"method_name\": \"tensorflow/serving/predict\",\n"
        "  \"inputs\": {\"%s\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, %d, %d, %d], "
        "\"tensor\": \"%s:0\"}},\n"
        "  \"outputs\": {\"%s\": {\"dtype\": \"DT_FLOAT\", \"shape\": [-1, %d], "
        "\"tensor\": \"%s/Softmax:0\"}},\n"
        "  \"instance\": \"one example: a %dx%dx%d nested list of numbers (raw pixels, 0..255), "
        "or {\\\"%s\\\": that list}; the prediction: %d softmax probabilities\"\n"
        "}\n",
        m->input_key, m->height, m->width, m->channels, INPUT_NODE, last->name, last->units,
        last->name, m->height, m->width, m->channels, m->input_key, last->units);
    if (n < 0 || (size_t)n >= cap) return io_fail(err, errlen, "export: signature.json too long");
    return n;
}

/* ---- proto helpers ------------------------------------------------------------------------------ */

static void put_shape(PbBuf *out, int rank, const int64_t *dims) {
    PbBuf dim;
    pb_buf_init(&dim);
    for (int i = 0; i < rank; i++) {
        pb_buf_reset(&dim);
        if (dims[i] != 0) pb_put_int64(&dim, DIM_SIZE, dims[i]);
        pb_put_message(out, TS_DIM, &dim);
    }
    pb_buf_free(&dim);
}

/* A TensorProto header: dtype + shape (always present, empty for scalars). */
static void put_tensor_head(PbBuf *t, TfDataType dtype, int rank, const int64_t *dims) {
    PbBuf shape;
    pb_buf_init(&shape);
    put_shape(&shape, rank, dims);
    pb_put_uint64(t, TP_DTYPE, (uint64_t)dtype);
    pb_put_message(t, TP_SHAPE, &shape);
    pb_buf_free(&shape);
}

/* A node under construction: attributes are collected and written sorted by key. */
#define MAX_ATTRS 8
#define MAX_INPUTS 40
typedef struct {
    char name[160], op[40];
    char *inputs[MAX_INPUTS];
    int n_inputs;
    const char *attr_key[MAX_ATTRS];
    PbBuf attr_val[MAX_ATTRS];
    int n_attrs;
} Node;

static void node_begin(Node *n, const char *op, const char *fmt, ...) {
    memset(n, 0, sizeof *n);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->name, sizeof n->name, fmt, ap);
    va_end(ap);
    snprintf(n->op, sizeof n->op, "%s", op);
}

static void node_input(Node *n, const char *fmt, ...) {
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n->n_inputs < MAX_INPUTS) n->inputs[n->n_inputs++] = strdup(buf);
}

/* Returns the AttrValue buffer for a new attribute. */
static PbBuf *node_attr(Node *n, const char *key) {
    PbBuf *v = &n->attr_val[n->n_attrs];
    n->attr_key[n->n_attrs++] = key;
    pb_buf_init(v);
    return v;
}

static void attr_type(Node *n, const char *key, TfDataType t) {
    pb_put_uint64(node_attr(n, key), AV_TYPE, (uint64_t)t);
}

static void attr_string(Node *n, const char *key, const char *s) {
    pb_put_string(node_attr(n, key), AV_S, s);
}

static void attr_shape(Node *n, const char *key, int rank, const int64_t *dims) {
    PbBuf s;
    pb_buf_init(&s);
    put_shape(&s, rank, dims);
    pb_put_message(node_attr(n, key), AV_SHAPE, &s);
    pb_buf_free(&s);
}

static void attr_int_list(Node *n, const char *key, const int64_t *v, size_t count) {
    PbBuf l;
    pb_buf_init(&l);
    pb_put_packed_int64(&l, LV_I, v, count);
    pb_put_message(node_attr(n, key), AV_LIST, &l);
    pb_buf_free(&l);
}

static void attr_type_list(Node *n, const char *key, const TfDataType *t, int count) {
    PbBuf l, packed;
    pb_buf_init(&l);
    pb_buf_init(&packed);
    for (int i = 0; i < count; i++) pb_put_varint_raw(&packed, (uint64_t)t[i]);
    pb_put_bytes(&l, LV_TYPE, packed.data, packed.len);
    pb_put_message(node_attr(n, key), AV_LIST, &l);
    pb_buf_free(&l);
    pb_buf_free(&packed);
}

static void attr_tensor(Node *n, const char *key, const PbBuf *tensor) {
    pb_put_message(node_attr(n, key), AV_TENSOR, tensor);
}

/* Writes the NodeDef into the GraphDef and frees the node. */
static void node_end(Node *n, PbBuf *graph) {
    PbBuf nd, entry;
    pb_buf_init(&nd);
    pb_buf_init(&entry);
    pb_put_string(&nd, ND_NAME, n->name);
    pb_put_string(&nd, ND_OP, n->op);
    for (int i = 0; i < n->n_inputs; i++) pb_put_string(&nd, ND_INPUT, n->inputs[i]);
    int order[MAX_ATTRS];
    for (int i = 0; i < n->n_attrs; i++) order[i] = i;
    for (int i = 1; i < n->n_attrs; i++)                       /* insertion sort by key */
        for (int j = i; j > 0 && strcmp(n->attr_key[order[j - 1]], n->attr_key[order[j]]) > 0; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int k = 0; k < n->n_attrs; k++) {
        int i = order[k];
        pb_buf_reset(&entry);
        pb_put_string(&entry, MAP_KEY, n->attr_key[i]);
        pb_put_message(&entry, MAP_VALUE, &n->attr_val[i]);
        pb_put_message(&nd, ND_ATTR, &entry);
        pb_buf_free(&n->attr_val[i]);
    }
    for (int i = 0; i < n->n_inputs; i++) free(n->inputs[i]);
    pb_put_message(graph, GD_NODE, &nd);
    pb_buf_free(&nd);
    pb_buf_free(&entry);
}

/* Const nodes. */
static void const_strings(PbBuf *g, const char *name, const char *const *vals, int count,
                          int scalar) {
    Node n;
    PbBuf t;
    pb_buf_init(&t);
    int64_t dim = count;
    put_tensor_head(&t, TF_DT_STRING, scalar ? 0 : 1, &dim);
    for (int i = 0; i < count; i++) pb_put_string(&t, TP_STRING_VAL, vals[i]);
    node_begin(&n, "Const", "%s", name);
    attr_type(&n, "dtype", TF_DT_STRING);
    attr_tensor(&n, "value", &t);
    node_end(&n, g);
    pb_buf_free(&t);
}

static void const_int32_vector(PbBuf *g, const char *name, const int32_t *v, int count) {
    Node n;
    PbBuf t;
    pb_buf_init(&t);
    int64_t dim = count;
    put_tensor_head(&t, TF_DT_INT32, 1, &dim);
    pb_put_bytes(&t, TP_CONTENT, v, (size_t)count * 4);       /* little-endian host assumed */
    node_begin(&n, "Const", "%s", name);
    attr_type(&n, "dtype", TF_DT_INT32);
    attr_tensor(&n, "value", &t);
    node_end(&n, g);
    pb_buf_free(&t);
}

/* A zero Const of a variable's shape: one value, repeated by TF to fill the shape. */
static void const_zeros(PbBuf *g, const char *name, const TfTensor *v) {
    Node n;
    PbBuf t;
    pb_buf_init(&t);
    put_tensor_head(&t, v->dtype, v->rank, v->shape);
    if (v->dtype == TF_DT_FLOAT) {
        float z = 0;
        pb_put_packed_float(&t, TP_FLOAT_VAL, &z, 1);
    } else {                                                  /* int64: int64_val (field 10) */
        int64_t z = 0;
        pb_put_packed_int64(&t, 10, &z, 1);
    }
    node_begin(&n, "Const", "%s", name);
    attr_type(&n, "dtype", v->dtype);
    attr_tensor(&n, "value", &t);
    node_end(&n, g);
    pb_buf_free(&t);
}

static void op_t(PbBuf *g, const char *op, const char *name, const char *in0, const char *in1) {
    Node n;
    node_begin(&n, op, "%s", name);
    node_input(&n, "%s", in0);
    if (in1) node_input(&n, "%s", in1);
    attr_type(&n, "T", TF_DT_FLOAT);
    node_end(&n, g);
}

/* ---- the graph ---------------------------------------------------------------------------------- */

typedef struct {
    const TfTensor *t;
    int trainable;
} Var;

static int cmp_var(const void *a, const void *b) {
    return strcmp(((const Var *)a)->t->name, ((const Var *)b)->t->name);
}

static const TfTensor *find_var(const TfTensor *vars, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(vars[i].name, name)) return &vars[i];
    return NULL;
}

static int expect_var(const TfTensor *vars, int n, const char *layer, const char *what, int rank,
                      const int64_t *shape, char *err, size_t errlen) {
    char name[SM_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s/%s", layer, what);
    const TfTensor *v = find_var(vars, n, name);
    if (!v) return io_fail(err, errlen, "export: variable '%s' is missing", name);
    if (v->dtype != TF_DT_FLOAT) return io_fail(err, errlen, "export: variable '%s' is not float", name);
    int same = v->rank == rank;
    for (int d = 0; same && d < rank; d++) same = v->shape[d] == shape[d];
    if (!same) {
        char got[96] = "", want[96] = "";
        for (int d = 0; d < v->rank; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "",
                     (long long)v->shape[d]);
        for (int d = 0; d < rank; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "",
                     (long long)shape[d]);
        return io_fail(err, errlen, "export: variable '%s' has shape [%s], the layer needs [%s]",
                       name, got, want);
    }
    if (v->nbytes != (size_t)tf_shape_elements(rank, shape) * 4)
        return io_fail(err, errlen, "export: variable '%s' has %zu bytes", name, v->nbytes);
    return 0;
}

/* Checks vars against the model: exactly the layers' kernels and biases, plus an optional
 * int64 scalar global_step. */
static int check_vars(const SmModel *m, const TfTensor *vars, int nvars, char *err, size_t errlen) {
    int shapes[64][3];
    int (*sh)[3] = m->num_layers <= 64 ? shapes : malloc((size_t)m->num_layers * sizeof *sh);
    if (!sh) return io_fail(err, errlen, "export: out of memory");
    int rc = sm_model_check(m, sh, err, errlen), used = 0;
    int in_h = m->height, in_w = m->width, in_c = m->channels;
    for (int i = 0; rc == 0 && i < m->num_layers; i++) {
        const SmLayer *l = &m->layers[i];
        if (l->kind == SM_LAYER_CONV2D) {
            int64_t k[4] = {l->kernel_h, l->kernel_w, in_c, l->units}, b = l->units;
            rc = expect_var(vars, nvars, l->name, "kernel", 4, k, err, errlen);
            if (rc == 0) rc = expect_var(vars, nvars, l->name, "bias", 1, &b, err, errlen);
            used += 2;
        } else if (l->kind == SM_LAYER_DENSE) {
            int64_t k[2] = {in_h, l->units}, b = l->units;
            rc = expect_var(vars, nvars, l->name, "kernel", 2, k, err, errlen);
            if (rc == 0) rc = expect_var(vars, nvars, l->name, "bias", 1, &b, err, errlen);
            used += 2;
        }
        in_h = sh[i][0];
        in_w = sh[i][1];
        in_c = sh[i][2];
    }
    (void)in_w;
    if (sh != shapes) free(sh);
    if (rc) return rc;
    const TfTensor *gs = find_var(vars, nvars, "global_step");
    if (gs) {
        if (gs->dtype != TF_DT_INT64 || gs->rank != 0 || gs->nbytes != 8)
            return io_fail(err, errlen, "export: global_step must be an int64 scalar");
        used++;
    }
    for (int i = 0; i < nvars; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(vars[i].name, vars[j].name))
                return io_fail(err, errlen, "export: variable '%s' given twice", vars[i].name);
    if (used != nvars) {
        for (int i = 0; i < nvars; i++) {
            const char *s = strrchr(vars[i].name, '/');
            int known = !strcmp(vars[i].name, "global_step");
            for (int k = 0; !known && s && k < m->num_layers; k++)
                known = strlen(m->layers[k].name) == (size_t)(s - vars[i].name) &&
                        !strncmp(m->layers[k].name, vars[i].name, (size_t)(s - vars[i].name)) &&
                        (m->layers[k].kind == SM_LAYER_CONV2D || m->layers[k].kind == SM_LAYER_DENSE) &&
                        (!strcmp(s, "/kernel") || !strcmp(s, "/bias"));
            if (!known)
                return io_fail(err, errlen, "export: variable '%s' belongs to no layer", vars[i].name);
        }
    }
    return 0;
}

/* VarHandleOp + initializer + Assign + ReadVariableOp for one variable. */
static void emit_variable(PbBuf *g, const TfTensor *v) {
    Node n;
    char init[200];
    node_begin(&n, "VarHandleOp", "%s", v->name);
    attr_type(&n, "dtype", v->dtype);
    attr_shape(&n, "shape", v->rank, v->shape);
    attr_string(&n, "shared_name", v->name);
    node_end(&n, g);
    snprintf(init, sizeof init, "%s/Initializer/zeros", v->name);
    const_zeros(g, init, v);
    node_begin(&n, "AssignVariableOp", "%s/Assign", v->name);
    node_input(&n, "%s", v->name);
    node_input(&n, "%s", init);
    attr_type(&n, "dtype", v->dtype);
    node_end(&n, g);
    node_begin(&n, "ReadVariableOp", "%s/Read/ReadVariableOp", v->name);
    node_input(&n, "%s", v->name);
    attr_type(&n, "dtype", v->dtype);
    node_end(&n, g);
}

/* The layers; *out gets the output node's name. */
static void emit_layers(PbBuf *g, const SmModel *m, const int (*sh)[3], char *out, size_t cap) {
    char cur[200], name[200];
    snprintf(cur, sizeof cur, "%s", INPUT_NODE);
    for (int i = 0; i < m->num_layers; i++) {
        const SmLayer *l = &m->layers[i];
        Node n;
        switch (l->kind) {
        case SM_LAYER_CONV2D: {
            int64_t strides[4] = {1, l->stride, l->stride, 1};
            node_begin(&n, "Conv2D", "%s/Conv2D", l->name);
            node_input(&n, "%s", cur);
            node_input(&n, "%s/kernel/Read/ReadVariableOp", l->name);
            attr_type(&n, "T", TF_DT_FLOAT);
            attr_string(&n, "padding", l->same_padding ? "SAME" : "VALID");
            attr_int_list(&n, "strides", strides, 4);
            node_end(&n, g);
            snprintf(cur, sizeof cur, "%s/Conv2D", l->name);
            break;
        }
        case SM_LAYER_MAX_POOL: {
            int64_t ksize[4] = {1, l->kernel_h, l->kernel_w, 1};
            int64_t strides[4] = {1, l->stride, l->stride, 1};
            node_begin(&n, "MaxPool", "%s/MaxPool", l->name);
            node_input(&n, "%s", cur);
            attr_type(&n, "T", TF_DT_FLOAT);
            attr_int_list(&n, "ksize", ksize, 4);
            attr_string(&n, "padding", l->same_padding ? "SAME" : "VALID");
            attr_int_list(&n, "strides", strides, 4);
            node_end(&n, g);
            snprintf(cur, sizeof cur, "%s/MaxPool", l->name);
            break;
        }
        case SM_LAYER_FLATTEN: {
            /* NHWC [N,h,w,c] -> [N, h*w*c]: flat index (y*w + x)*c + ch */
            int32_t shape[2] = {-1, sh[i][0]};
            snprintf(name, sizeof name, "%s/Reshape/shape", l->name);
            const_int32_vector(g, name, shape, 2);
            node_begin(&n, "Reshape", "%s/Reshape", l->name);
            node_input(&n, "%s", cur);
            node_input(&n, "%s", name);
            attr_type(&n, "T", TF_DT_FLOAT);
            attr_type(&n, "Tshape", TF_DT_INT32);
            node_end(&n, g);
            snprintf(cur, sizeof cur, "%s/Reshape", l->name);
            break;
        }
        case SM_LAYER_DENSE: {
            char kernel[200];
            snprintf(name, sizeof name, "%s/MatMul", l->name);
            snprintf(kernel, sizeof kernel, "%s/kernel/Read/ReadVariableOp", l->name);
            op_t(g, "MatMul", name, cur, kernel);
            snprintf(cur, sizeof cur, "%s", name);
            break;
        }
        case SM_LAYER_DROPOUT:                               /* identity at inference */
            snprintf(name, sizeof name, "%s/Identity", l->name);
            op_t(g, "Identity", name, cur, NULL);
            snprintf(cur, sizeof cur, "%s", name);
            break;
        }
        if (l->kind == SM_LAYER_CONV2D || l->kind == SM_LAYER_DENSE) {
            char bias[200];
            snprintf(name, sizeof name, "%s/BiasAdd", l->name);
            snprintf(bias, sizeof bias, "%s/bias/Read/ReadVariableOp", l->name);
            op_t(g, "BiasAdd", name, cur, bias);
            snprintf(cur, sizeof cur, "%s", name);
            if (l->activation != SM_ACT_NONE) {
                const char *op = l->activation == SM_ACT_RELU ? "Relu" : "Softmax";
                snprintf(name, sizeof name, "%s/%s", l->name, op);
                op_t(g, op, name, cur, NULL);
                snprintf(cur, sizeof cur, "%s", name);
            }
        }
    }
    snprintf(out, cap, "%s", cur);
}

/* tf.train.Saver (V2, not sharded) over the sorted variables. */
static void emit_saver(PbBuf *g, const Var *vars, int n) {
    const char **names = malloc((size_t)n * sizeof *names);
    const char **empty = malloc((size_t)n * sizeof *empty);
    TfDataType *types = malloc((size_t)n * sizeof *types);
    for (int i = 0; i < n; i++) {
        names[i] = vars[i].t->name;
        empty[i] = "";
        types[i] = vars[i].t->dtype;
    }
    const char *model = "model";
    const_strings(g, "save/filename/input", &model, 1, 1);
    Node nd;
    int64_t none = 0;
    node_begin(&nd, "PlaceholderWithDefault", "save/Const");
    node_input(&nd, "save/filename/input");
    attr_type(&nd, "dtype", TF_DT_STRING);
    attr_shape(&nd, "shape", 0, &none);
    node_end(&nd, g);
    const_strings(g, "save/SaveV2/tensor_names", names, n, 0);
    const_strings(g, "save/SaveV2/shape_and_slices", empty, n, 0);
    node_begin(&nd, "SaveV2", "save/SaveV2");
    node_input(&nd, "save/Const");
    node_input(&nd, "save/SaveV2/tensor_names");
    node_input(&nd, "save/SaveV2/shape_and_slices");
    for (int i = 0; i < n; i++) node_input(&nd, "%s/Read/ReadVariableOp", names[i]);
    attr_type_list(&nd, "dtypes", types, n);
    node_end(&nd, g);
    node_begin(&nd, "Identity", "save/control_dependency");
    node_input(&nd, "save/Const");
    node_input(&nd, "^save/SaveV2");
    attr_type(&nd, "T", TF_DT_STRING);
    node_end(&nd, g);
    const_strings(g, "save/RestoreV2/tensor_names", names, n, 0);
    const_strings(g, "save/RestoreV2/shape_and_slices", empty, n, 0);
    node_begin(&nd, "RestoreV2", "save/RestoreV2");
    node_input(&nd, "save/Const");
    node_input(&nd, "save/RestoreV2/tensor_names");
    node_input(&nd, "save/RestoreV2/shape_and_slices");
    attr_type_list(&nd, "dtypes", types, n);
    node_end(&nd, g);
    for (int i = 0; i < n; i++) {
        if (i == 0) node_begin(&nd, "AssignVariableOp", "save/AssignVariableOp");
        else node_begin(&nd, "AssignVariableOp", "save/AssignVariableOp_%d", i);
        node_input(&nd, "%s", names[i]);
        if (i == 0) node_input(&nd, "save/RestoreV2");
        else node_input(&nd, "save/RestoreV2:%d", i);
        attr_type(&nd, "dtype", types[i]);
        node_end(&nd, g);
    }
    node_begin(&nd, "NoOp", "save/restore_all");
    for (int i = 0; i < n; i++) {
        if (i == 0) node_input(&nd, "^save/AssignVariableOp");
        else node_input(&nd, "^save/AssignVariableOp_%d", i);
    }
    node_end(&nd, g);
    free(names);
    free(empty);
    free(types);
}

static void put_tensor_info(PbBuf *out, const char *name, TfDataType dtype, int rank,
                            const int64_t *dims) {
    PbBuf shape;
    pb_buf_init(&shape);
    put_shape(&shape, rank, dims);
    pb_put_string(out, TI_NAME, name);
    pb_put_uint64(out, TI_DTYPE, (uint64_t)dtype);
    pb_put_message(out, TI_SHAPE, &shape);
    pb_buf_free(&shape);
}

/* map entry {key, message value} */
static void put_map_entry(PbBuf *out, uint32_t field, const char *key, const PbBuf *value) {
    PbBuf e;
    pb_buf_init(&e);
    pb_put_string(&e, MAP_KEY, key);
    pb_put_message(&e, MAP_VALUE, value);
    pb_put_message(out, field, &e);
    pb_buf_free(&e);
}

/* CollectionDef{bytes_list{VariableDef...}} for the variables in model order. */
static void put_variables_collection(PbBuf *mg, const char *key, const Var *vars, int n,
                                     int trainable_only) {
    PbBuf list, vd, cd;
    pb_buf_init(&list);
    pb_buf_init(&vd);
    pb_buf_init(&cd);
    char s[200];
    for (int i = 0; i < n; i++) {
        if (trainable_only && !vars[i].trainable) continue;
        const char *name = vars[i].t->name;
        pb_buf_reset(&vd);
        snprintf(s, sizeof s, "%s:0", name);
        pb_put_string(&vd, VD_NAME, s);
        snprintf(s, sizeof s, "%s/Assign", name);
        pb_put_string(&vd, VD_INITIALIZER, s);
        snprintf(s, sizeof s, "%s/Read/ReadVariableOp:0", name);
        pb_put_string(&vd, VD_SNAPSHOT, s);
        pb_put_uint64(&vd, VD_IS_RESOURCE, 1);
        snprintf(s, sizeof s, "%s/Initializer/zeros:0", name);
        pb_put_string(&vd, VD_INITIAL_VALUE, s);
        if (vars[i].trainable) pb_put_uint64(&vd, VD_TRAINABLE, 1);
        pb_put_bytes(&list, LIST_VALUE, vd.data, vd.len);
    }
    pb_put_message(&cd, CD_BYTES_LIST, &list);
    put_map_entry(mg, MG_COLLECTION_DEF, key, &cd);
    pb_buf_free(&list);
    pb_buf_free(&vd);
    pb_buf_free(&cd);
}

int savedmodel_encode_meta_graph(const SmModel *m, const TfTensor *vars, int nvars, PbBuf *out,
                                 char *err, size_t errlen) {
    if (check_vars(m, vars, nvars, err, errlen)) return -1;
    int (*sh)[3] = malloc((size_t)m->num_layers * sizeof *sh);
    Var *model_order = malloc((size_t)(nvars ? nvars : 1) * sizeof *model_order);
    Var *sorted = malloc((size_t)(nvars ? nvars : 1) * sizeof *sorted);
    if (!sh || !model_order || !sorted) {
        free(sh);
        free(model_order);
        free(sorted);
        return io_fail(err, errlen, "export: out of memory");
    }
    sm_model_check(m, sh, err, errlen);
    /* Variables in layer order (kernel, bias), then global_step. */
    int nv = 0;
    for (int i = 0; i < m->num_layers; i++) {
        const SmLayer *l = &m->layers[i];
        if (l->kind != SM_LAYER_CONV2D && l->kind != SM_LAYER_DENSE) continue;
        char name[SM_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s/kernel", l->name);
        model_order[nv++] = (Var){find_var(vars, nvars, name), 1};
        snprintf(name, sizeof name, "%s/bias", l->name);
        model_order[nv++] = (Var){find_var(vars, nvars, name), 1};
    }
    const TfTensor *gs = find_var(vars, nvars, "global_step");
    if (gs) model_order[nv++] = (Var){gs, 0};
    memcpy(sorted, model_order, (size_t)nv * sizeof *sorted);
    qsort(sorted, (size_t)nv, sizeof *sorted, cmp_var);

    PbBuf graph, tmp, mg, sig;
    pb_buf_init(&graph);
    pb_buf_init(&tmp);
    pb_buf_init(&mg);
    pb_buf_init(&sig);

    /* GraphDef */
    Node n;
    int64_t in_shape[4] = {-1, m->height, m->width, m->channels};
    node_begin(&n, "Placeholder", INPUT_NODE);
    attr_type(&n, "dtype", TF_DT_FLOAT);
    attr_shape(&n, "shape", 4, in_shape);
    node_end(&n, &graph);
    for (int i = 0; i < nv; i++) emit_variable(&graph, model_order[i].t);
    char output_node[200];
    emit_layers(&graph, m, (const int (*)[3])sh, output_node, sizeof output_node);
    emit_saver(&graph, sorted, nv);
    pb_put_int64(&tmp, VERSIONS_PRODUCER, GRAPH_PRODUCER);
    pb_put_message(&graph, GD_VERSIONS, &tmp);

    /* MetaInfoDef */
    pb_buf_reset(&tmp);
    pb_put_string(&tmp, MI_TAGS, "serve");
    pb_put_string(&tmp, MI_TF_VERSION, "1.12.0");
    pb_put_uint64(&tmp, MI_STRIPPED_DEFAULT_ATTRS, 1);
    pb_put_message(&mg, MG_META_INFO, &tmp);
    pb_put_message(&mg, MG_GRAPH_DEF, &graph);

    /* SaverDef */
    pb_buf_reset(&tmp);
    pb_put_string(&tmp, SV_FILENAME, "save/Const:0");
    pb_put_string(&tmp, SV_SAVE, "save/control_dependency:0");
    pb_put_string(&tmp, SV_RESTORE, "save/restore_all");
    pb_put_int64(&tmp, SV_MAX_TO_KEEP, 5);
    pb_put_float(&tmp, SV_KEEP_HOURS, 10000.0f);
    pb_put_uint64(&tmp, SV_VERSION, SAVER_V2);
    pb_put_message(&mg, MG_SAVER_DEF, &tmp);

    /* collections, sorted by key */
    put_variables_collection(&mg, "trainable_variables", model_order, nv, 1);
    put_variables_collection(&mg, "variables", model_order, nv, 0);

    /* signature_def["serving_default"] */
    const SmLayer *last = &m->layers[m->num_layers - 1];
    char tensor[220];
    pb_buf_reset(&tmp);
    snprintf(tensor, sizeof tensor, "%s:0", INPUT_NODE);
    put_tensor_info(&tmp, tensor, TF_DT_FLOAT, 4, in_shape);
    put_map_entry(&sig, SD_INPUTS, m->input_key, &tmp);
    pb_buf_reset(&tmp);
    int64_t out_shape[2] = {-1, last->units};
    snprintf(tensor, sizeof tensor, "%s:0", output_node);
    put_tensor_info(&tmp, tensor, TF_DT_FLOAT, 2, out_shape);
    put_map_entry(&sig, SD_OUTPUTS, last->name, &tmp);
    pb_put_string(&sig, SD_METHOD, METHOD_PREDICT);
    put_map_entry(&mg, MG_SIGNATURE_DEF, SIGNATURE_KEY, &sig);

    pb_put_raw(out, mg.data, mg.len);
    int oom = graph.oom || tmp.oom || mg.oom || sig.oom || out->oom;
    pb_buf_free(&graph);
    pb_buf_free(&tmp);
    pb_buf_free(&mg);
    pb_buf_free(&sig);
    free(sh);
    free(model_order);
    free(sorted);
    return oom ? io_fail(err, errlen, "export: out of memory") : 0;
}

int savedmodel_encode(const SmModel *m, const TfTensor *vars, int nvars, PbBuf *out, char *err,
                      size_t errlen) {
    PbBuf mg;
    pb_buf_init(&mg);
    int rc = savedmodel_encode_meta_graph(m, vars, nvars, &mg, err, errlen);
    if (rc == 0) {
        pb_put_int64(out, SM_SCHEMA_VERSION, 1);
        pb_put_message(out, SM_META_GRAPHS, &mg);
        if (out->oom) rc = io_fail(err, errlen, "export: out of memory");
    }
    pb_buf_free(&mg);
    return rc;
}

/* ---- directories ---------------------------------------------------------------------------------- */

/* The whole SavedModel tree at tmp (a leftover there removed first); on failure nothing of it
 * stays. */
static int write_tree(const char *tmp, const SmModel *m, const TfTensor *vars, int nvars,
                      char *err, size_t errlen) {
    PbBuf pb;
    pb_buf_init(&pb);
    if (savedmodel_encode(m, vars, nvars, &pb, err, errlen)) {
        pb_buf_free(&pb);
        return -1;
    }
    char path[4300];
    int rc = dirs_remove_tree(tmp, err, errlen);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/variables", tmp);
        rc = dirs_make(path, err, errlen);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/variables/variables", tmp);
        rc = bundle_write(path, vars, nvars, err, errlen);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/saved_model.pb", tmp);
        rc = atomic_file_write_all(path, pb.data, pb.len, err, errlen);
    }
    pb_buf_free(&pb);
    if (rc != 0) {
        char ignore[256];
        dirs_remove_tree(tmp, ignore, sizeof ignore);
    }
    return rc;
}

/* rename for a whole tree; on a bucket copy-then-delete, saved_model.pb last (io/fs.h). */
static int move_tree(const char *from, const char *to, char *err, size_t errlen) {
    char why[1024];
    if (fs_rename(from, to, why, sizeof why) != 0) return io_fail(err, errlen, "export: %s", why);
    return 0;
}

int savedmodel_write(const char *export_dir, const SmModel *m, const TfTensor *vars, int nvars,
                     char *err, size_t errlen) {
    struct stat st;
    char why[1024], tmp[4300];
    if (fs_stat(export_dir, &st, why, sizeof why) == 0)
        return io_fail(err, errlen, "export: '%s' already exists", export_dir);
    /* temp-<basename> beside the final directory, inside the export base, as the Estimator's
     * exporter does */
    fs_beside(export_dir, "temp-", "", tmp, sizeof tmp);
    if (write_tree(tmp, m, vars, nvars, err, errlen) != 0) return -1;
    if (move_tree(tmp, export_dir, err, errlen) != 0) {
        char ignore[256];
        dirs_remove_tree(tmp, ignore, sizeof ignore);
        return -1;
    }
    fsync_parent_dir(export_dir);
    return 0;
}

/* What a SavedModel directory holds (TF 1.x and 2.x writers). */
static int is_savedmodel_entry(const char *name) {
    static const char *const kNames[] = {"saved_model.pb", "saved_model.pbtxt", "variables",
                                         "assets", "assets.extra", "fingerprint.pb",
                                         "keras_metadata.pb"};
    for (size_t i = 0; i < sizeof kNames / sizeof kNames[0]; i++)
        if (strcmp(name, kNames[i]) == 0) return 1;
    return 0;
}

int savedmodel_dir_replaceable(const char *export_dir, char *err, size_t errlen) {
    FsEntry *e;
    char why[1024];
    const int n = fs_list(export_dir, &e, why, sizeof why);
    if (n < 0) {
        if (errno == ENOENT) return 0;
        return io_fail(err, errlen, "export: %s", why);
    }
    int other = -1;
    for (int i = 0; i < n && other < 0; i++)
        if (!is_savedmodel_entry(e[i].name)) other = i;
    if (other >= 0)
        io_fail(err, errlen, "export: '%s' holds '%s', which is not part of a SavedModel: it "
                "would be deleted with the SavedModel it holds", export_dir, e[other].name);
    fs_entries_free(e, n);
    if (other >= 0) return -1;
    /* the directory itself is moved aside and replaced: a mount point cannot be */
    struct stat st, up;
    char parent[4300];
    fs_beside(export_dir, "", "/..", parent, sizeof parent);
    if (!fs_is_remote(export_dir) && stat(export_dir, &st) == 0 && stat(parent, &up) == 0 &&
        st.st_dev != up.st_dev)
        return io_fail(err, errlen, "export: '%s' is a mount point, which cannot be replaced: "
                       "name a directory inside it", export_dir);
    return 0;
}

int savedmodel_write_over(const char *export_dir, const SmModel *m, const TfTensor *vars,
                          int nvars, char *err, size_t errlen) {
    if (savedmodel_dir_replaceable(export_dir, err, errlen)) return -1;
    /* Names of this process's own beside the directory (a user's temp-<name> is not ours):
     * the new tree, then the old one moved aside until the new one is in place. */
    char tmp[4300], old[4300], why[1024], tmp_suffix[32], old_suffix[32];
    snprintf(tmp_suffix, sizeof tmp_suffix, ".tmp-%ld", (long)getpid());
    snprintf(old_suffix, sizeof old_suffix, ".old-%ld", (long)getpid());
    fs_beside(export_dir, ".", tmp_suffix, tmp, sizeof tmp);
    fs_beside(export_dir, ".", old_suffix, old, sizeof old);
    if (write_tree(tmp, m, vars, nvars, err, errlen) != 0) return -1;
    struct stat st;
    const int had = fs_stat(export_dir, &st, why, sizeof why) == 0;
    char ignore[1024];
    if (had && (dirs_remove_tree(old, err, errlen) != 0 ||
                move_tree(export_dir, old, err, errlen) != 0)) {
        dirs_remove_tree(tmp, ignore, sizeof ignore);
        return -1;
    }
    if (move_tree(tmp, export_dir, err, errlen) != 0) {
        /* put the earlier model back: the directory is as it was */
        if (had) move_tree(old, export_dir, ignore, sizeof ignore);
        dirs_remove_tree(tmp, ignore, sizeof ignore);
        return -1;
    }
    fsync_parent_dir(export_dir);
    if (had) dirs_remove_tree(old, ignore, sizeof ignore);  /* a leftover: hidden, harmless */
    return 0;
}

static int is_version_dir(const char *name, void *ctx) {
    (void)ctx;
    if (strlen(name) != 10) return 0;
    for (const char *p = name; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

int savedmodel_export_timestamped(const char *export_base, const SmModel *m, const TfTensor *vars,
                                  int nvars, int keep, char *path_out, size_t path_cap, char *err,
                                  size_t errlen) {
    if (dirs_make(export_base, err, errlen)) return -1;
    char dir[4200];
    struct stat st;
    int tries = 0;
    for (;;) {
        snprintf(dir, sizeof dir, "%s/%lld", export_base, (long long)time(NULL));
        char why[1024];
        if (fs_stat(dir, &st, why, sizeof why) != 0) {
            if (errno == ENOENT || !fs_is_remote(dir)) break;
            return io_fail(err, errlen, "export: %s", why);
        }
        if (++tries == 10)
            return io_fail(err, errlen, "export: '%s' exists (tried 10 timestamps)", dir);
        sleep(1);
    }
    if (savedmodel_write(dir, m, vars, nvars, err, errlen)) return -1;
    if (path_out) snprintf(path_out, path_cap, "%s", dir);
    if (keep > 0) {                     /* garbage-collect: keep the newest `keep` versions */
        char **names;
        int n = dirs_list(export_base, is_version_dir, NULL, &names, err, errlen);
        if (n < 0) return -1;
        int rc = 0;
        for (int i = 0; rc == 0 && i < n - keep; i++) {       /* sorted: equal-length digits */
            char old[4200];
            snprintf(old, sizeof old, "%s/%s", export_base, names[i]);
            rc = dirs_remove_tree(old, err, errlen);
        }
        dirs_names_free(names, n);
        if (rc) return -1;
    }
    return 0;
}
