/* savedmodel_read.c: reads a saved_model.pb: the "serve" MetaGraphDef, its serving_default
 * signature, its variables, and the sequential CNN between the signature's input and output
 * (see savedmodel.h). Field numbers as in tf-formats.md §3. */
#include "io/savedmodel.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fail.h"
#include "io/fs.h"

enum { SM_META_GRAPHS = 2 };
enum { MG_META_INFO = 1, MG_GRAPH_DEF = 2, MG_SIGNATURE_DEF = 5 };
enum { MI_TAGS = 4 };
enum { GD_NODE = 1 };
enum { ND_NAME = 1, ND_OP = 2, ND_INPUT = 3, ND_ATTR = 5 };
enum { MAP_KEY = 1, MAP_VALUE = 2 };
enum { AV_LIST = 1, AV_S = 2, AV_I = 3, AV_B = 5, AV_TYPE = 6, AV_SHAPE = 7 };
enum { LV_I = 3 };
enum { TS_DIM = 2, TS_UNKNOWN_RANK = 3, DIM_SIZE = 1 };
enum { SD_INPUTS = 1, SD_OUTPUTS = 2, SD_METHOD = 3 };
enum { TI_NAME = 1, TI_DTYPE = 2, TI_SHAPE = 3 };

#define SIGNATURE_KEY "serving_default"
#define MAX_CHAIN 4096

typedef struct {
    const uint8_t *p;
    size_t n;
} Bytes;

/* An absent field is {NULL, 0}: memcmp/memcpy must not see its NULL, even for 0 bytes. */
static int bytes_same(Bytes a, Bytes b) {
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static int bytes_eq(Bytes b, const char *s) {
    return bytes_same(b, (Bytes){(const uint8_t *)s, strlen(s)});
}

static void bytes_copy(char *dst, size_t cap, Bytes b) {
    size_t n = b.n < cap - 1 ? b.n : cap - 1;
    if (n) memcpy(dst, b.p, n);
    dst[n] = 0;
}

typedef struct {
    Bytes name, op;
    Bytes *inputs;
    int n_inputs;
    Bytes *attr_key, *attr_val;
    int n_attrs;
} GNode;

typedef struct {
    const char *what;
    GNode *nodes;
    int n;
    char *err;
    size_t errlen;
} Graph;

/* ---- generic decoding ------------------------------------------------------------------------- */

/* Appends b to a growable array of Bytes. */
static int push_bytes(Bytes **v, int *n, Bytes b) {
    if ((*n & (*n - 1)) == 0) {                               /* grow at powers of two */
        Bytes *p = realloc(*v, (size_t)(*n ? 2 * *n : 1) * sizeof *p);
        if (!p) return -1;
        *v = p;
    }
    (*v)[(*n)++] = b;
    return 0;
}

static int parse_node(Graph *g, GNode *nd, Bytes b) {
    PbReader r;
    PbField f;
    int k;
    memset(nd, 0, sizeof *nd);
    pb_reader_init(&r, b.p, b.n);
    while ((k = pb_next(&r, &f)) == 1) {
        if (f.wire_type != PB_LEN) continue;
        Bytes v = {f.data, f.len};
        if (f.field == ND_NAME) nd->name = v;
        else if (f.field == ND_OP) nd->op = v;
        else if (f.field == ND_INPUT) {
            if (push_bytes(&nd->inputs, &nd->n_inputs, v)) return io_fail(g->err, g->errlen, "oom");
        } else if (f.field == ND_ATTR) {
            PbReader e;
            PbField x;
            Bytes key = {NULL, 0}, val = {NULL, 0};
            pb_reader_init(&e, f.data, f.len);
            while ((k = pb_next(&e, &x)) == 1) {
                if (x.wire_type != PB_LEN) continue;
                if (x.field == MAP_KEY) key = (Bytes){x.data, x.len};
                else if (x.field == MAP_VALUE) val = (Bytes){x.data, x.len};
            }
            if (k < 0) return io_fail(g->err, g->errlen, "%s: malformed node attribute: %s", g->what,
                                      e.error);
            int na = nd->n_attrs;
            if (push_bytes(&nd->attr_key, &na, key) || push_bytes(&nd->attr_val, &nd->n_attrs, val))
                return io_fail(g->err, g->errlen, "oom");
        }
    }
    if (k < 0) return io_fail(g->err, g->errlen, "%s: malformed NodeDef: %s", g->what, r.error);
    return 0;
}

static void free_nodes(Graph *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->nodes[i].inputs);
        free(g->nodes[i].attr_key);
        free(g->nodes[i].attr_val);
    }
    free(g->nodes);
}

/* Node name of a tensor or input reference: "^x" / "x:1" -> "x". */
static Bytes node_of(Bytes t) {
    if (t.n && t.p[0] == '^') t.p++, t.n--;
    for (size_t i = t.n; i > 0; i--) {
        if (t.p[i - 1] == ':') { t.n = i - 1; break; }
        if (t.p[i - 1] < '0' || t.p[i - 1] > '9') break;
    }
    return t;
}

static const GNode *find_node(const Graph *g, Bytes name) {
    for (int i = 0; i < g->n; i++)
        if (bytes_same(g->nodes[i].name, name))
            return &g->nodes[i];
    return NULL;
}

static int find_attr(const GNode *n, const char *key, Bytes *val) {
    for (int i = 0; i < n->n_attrs; i++)
        if (bytes_eq(n->attr_key[i], key)) {
            *val = n->attr_val[i];
            return 1;
        }
    return 0;
}

/* The field `field` of an AttrValue (or any message) as varint / bytes. */
static int msg_varint(Bytes m, uint32_t field, uint64_t *out) {
    PbReader r;
    PbField f;
    pb_reader_init(&r, m.p, m.n);
    int found = 0;
    while (pb_next(&r, &f) == 1)
        if (f.field == field && f.wire_type == PB_VARINT) *out = f.varint, found = 1;
    return found;
}

static int msg_bytes(Bytes m, uint32_t field, Bytes *out) {
    PbReader r;
    PbField f;
    pb_reader_init(&r, m.p, m.n);
    int found = 0;
    while (pb_next(&r, &f) == 1)
        if (f.field == field && f.wire_type == PB_LEN) *out = (Bytes){f.data, f.len}, found = 1;
    return found;
}

/* TensorShapeProto -> rank/dims; -1 on unknown rank or more than TF_MAX_RANK dims. */
static int parse_shape(Bytes s, int *rank, int64_t *dims) {
    PbReader r;
    PbField f;
    pb_reader_init(&r, s.p, s.n);
    *rank = 0;
    int k;
    while ((k = pb_next(&r, &f)) == 1) {
        if (f.field == TS_UNKNOWN_RANK && f.wire_type == PB_VARINT && f.varint) return -1;
        if (f.field != TS_DIM || f.wire_type != PB_LEN) continue;
        if (*rank == TF_MAX_RANK) return -1;
        uint64_t size = 0;
        msg_varint((Bytes){f.data, f.len}, DIM_SIZE, &size);
        dims[(*rank)++] = (int64_t)size;
    }
    return k < 0 ? -1 : 0;
}

/* list(int) attr, packed or not. Returns the count or -1. */
static int attr_ints(const GNode *n, const char *key, int64_t *out, int cap) {
    Bytes v, list;
    if (!find_attr(n, key, &v) || !msg_bytes(v, AV_LIST, &list)) return -1;
    PbReader r;
    PbField f;
    pb_reader_init(&r, list.p, list.n);
    int count = 0;
    while (pb_next(&r, &f) == 1) {
        if (f.field != LV_I) continue;
        if (f.wire_type == PB_VARINT) {
            if (count < cap) out[count] = (int64_t)f.varint;
            count++;
        } else if (f.wire_type == PB_LEN) {
            PbReader p;
            uint64_t x;
            pb_reader_init(&p, f.data, f.len);
            while (p.p < p.end) {
                if (pb_read_varint(&p, &x)) return -1;
                if (count < cap) out[count] = (int64_t)x;
                count++;
            }
        }
    }
    return count;
}

static int attr_string(const GNode *n, const char *key, char *out, size_t cap) {
    Bytes v = {0}, s = {0};
    if (!find_attr(n, key, &v) || !msg_bytes(v, AV_S, &s)) return 0;
    bytes_copy(out, cap, s);
    return 1;
}

/* ---- the layer list ------------------------------------------------------------------------------ */

static const char *node_str(const GNode *n, char *buf, size_t cap) {
    bytes_copy(buf, cap, n->name);
    return buf;
}

/* Follows a weight input through ReadVariableOp / Identity to its variable node. */
static const GNode *weight_variable(const Graph *g, const GNode *user, int input) {
    if (input >= user->n_inputs) return NULL;
    const GNode *n = find_node(g, node_of(user->inputs[input]));
    for (int hops = 0; n && hops < 16; hops++) {
        if (bytes_eq(n->op, "VarHandleOp") || bytes_eq(n->op, "VariableV2") ||
            bytes_eq(n->op, "Variable") || bytes_eq(n->op, "Const"))
            return n;
        if (!(bytes_eq(n->op, "ReadVariableOp") || bytes_eq(n->op, "Identity")) || n->n_inputs < 1)
            return NULL;
        n = find_node(g, node_of(n->inputs[0]));
    }
    return NULL;
}

static int variable_shape(const GNode *v, int *rank, int64_t *dims) {
    Bytes a, s;
    return find_attr(v, "shape", &a) && msg_bytes(a, AV_SHAPE, &s) && parse_shape(s, rank, dims) == 0;
}

/* Layer name: the variable's scope ("conv2d/kernel" -> "conv2d") for weights, else the node's
 * scope ("max_pooling2d/MaxPool" -> "max_pooling2d"). */
static void scope_of(Bytes name, char *out, size_t cap) {
    size_t n = name.n;
    while (n > 0 && name.p[n - 1] != '/') n--;
    if (n > 0) n--;                     /* drop the '/' */
    else n = name.n;                    /* no scope: the whole name */
    bytes_copy(out, cap, (Bytes){name.p, n});
}

static int nhwc_only(const Graph *g, const GNode *n) {
    char fmt[16], buf[200];
    if (attr_string(n, "data_format", fmt, sizeof fmt) && strcmp(fmt, "NHWC") != 0)
        return io_fail(g->err, g->errlen, "%s: node '%s' uses data_format %s (only NHWC is supported)",
                       g->what, node_str(n, buf, sizeof buf), fmt);
    return 0;
}

/* Reads a window attr [1,a,b,1] into *a, *b. */
static int window_attr(const Graph *g, const GNode *n, const char *key, int *a, int *b) {
    int64_t v[8];
    char buf[200];
    if (attr_ints(n, key, v, 8) != 4 || v[0] != 1 || v[3] != 1 || v[1] < 1 || v[2] < 1)
        return io_fail(g->err, g->errlen, "%s: node '%s': unsupported %s", g->what,
                       node_str(n, buf, sizeof buf), key);
    *a = (int)v[1];
    *b = (int)v[2];
    return 0;
}

static int padding_attr(const Graph *g, const GNode *n, int *same) {
    char pad[16], buf[200];
    if (!attr_string(n, "padding", pad, sizeof pad) || (strcmp(pad, "SAME") && strcmp(pad, "VALID")))
        return io_fail(g->err, g->errlen, "%s: node '%s': unsupported padding", g->what,
                       node_str(n, buf, sizeof buf));
    *same = strcmp(pad, "SAME") == 0;
    return 0;
}

static int weight_layer(const Graph *g, const GNode *n, SmLayer *l, int want_rank) {
    char buf[200];
    const GNode *v = weight_variable(g, n, 1);
    if (!v)
        return io_fail(g->err, g->errlen, "%s: node '%s': its weights do not come from a variable",
                       g->what, node_str(n, buf, sizeof buf));
    if (bytes_eq(v->op, "Const"))
        return io_fail(g->err, g->errlen, "%s: node '%s': weights are constants (a frozen graph), "
                       "not variables: not supported", g->what, node_str(n, buf, sizeof buf));
    int rank;
    int64_t dims[TF_MAX_RANK];
    if (!variable_shape(v, &rank, dims) || rank != want_rank)
        return io_fail(g->err, g->errlen, "%s: variable '%s' has no rank-%d shape", g->what,
                       node_str(v, buf, sizeof buf), want_rank);
    scope_of(v->name, l->name, sizeof l->name);
    if (rank == 4) {
        l->kernel_h = (int)dims[0];
        l->kernel_w = (int)dims[1];
        l->units = (int)dims[3];
    } else {
        l->units = (int)dims[1];
    }
    return 0;
}

/* Turns the op chain (input first) into layers. */
static int build_layers(const Graph *g, const GNode **chain, int n, SmInfo *info) {
    SmLayer *layers = calloc((size_t)n + 1, sizeof *layers);
    if (!layers) return io_fail(g->err, g->errlen, "out of memory");
    int nl = 0, open_weights = -1, has_bias = 0;   /* open_weights: conv/dense awaiting bias */
    char buf[200];
    for (int i = 1; i < n; i++) {                  /* chain[0] is the input placeholder */
        const GNode *nd = chain[i];
        SmLayer *l = &layers[nl];
        memset(l, 0, sizeof *l);
        if (bytes_eq(nd->op, "Conv2D")) {
            int64_t dil[8];
            int sh = 0, sw = 0, c = attr_ints(nd, "dilations", dil, 8);
            l->kind = SM_LAYER_CONV2D;
            if (nhwc_only(g, nd) || weight_layer(g, nd, l, 4) || window_attr(g, nd, "strides", &sh, &sw) ||
                padding_attr(g, nd, &l->same_padding))
                goto fail;
            if (sh != sw || (c >= 0 && (c != 4 || dil[1] != 1 || dil[2] != 1))) {
                io_fail(g->err, g->errlen, "%s: node '%s': unequal strides or dilations", g->what,
                        node_str(nd, buf, sizeof buf));
                goto fail;
            }
            l->stride = sh;
        } else if (bytes_eq(nd->op, "MatMul")) {
            Bytes v;
            uint64_t t = 0;
            if ((find_attr(nd, "transpose_a", &v) && msg_varint(v, AV_B, &t) && t) ||
                (find_attr(nd, "transpose_b", &v) && msg_varint(v, AV_B, &t) && t)) {
                io_fail(g->err, g->errlen, "%s: node '%s': transposed MatMul not supported", g->what,
                        node_str(nd, buf, sizeof buf));
                goto fail;
            }
            l->kind = SM_LAYER_DENSE;
            if (weight_layer(g, nd, l, 2)) goto fail;
        } else if (bytes_eq(nd->op, "MaxPool")) {
            int sh, sw;
            l->kind = SM_LAYER_MAX_POOL;
            scope_of(nd->name, l->name, sizeof l->name);
            if (nhwc_only(g, nd) || window_attr(g, nd, "ksize", &l->kernel_h, &l->kernel_w) ||
                window_attr(g, nd, "strides", &sh, &sw) || padding_attr(g, nd, &l->same_padding))
                goto fail;
            if (sh != sw) {
                io_fail(g->err, g->errlen, "%s: node '%s': unequal strides", g->what,
                        node_str(nd, buf, sizeof buf));
                goto fail;
            }
            l->stride = sh;
        } else if (bytes_eq(nd->op, "Reshape")) {
            l->kind = SM_LAYER_FLATTEN;
            scope_of(nd->name, l->name, sizeof l->name);
        } else if (bytes_eq(nd->op, "Identity")) {
            char scope[SM_NAME_MAX];
            scope_of(nd->name, scope, sizeof scope);
            if (strncmp(scope, "dropout", 7) != 0) continue;   /* a plain no-op */
            l->kind = SM_LAYER_DROPOUT;
            snprintf(l->name, sizeof l->name, "%s", scope);
        } else if (bytes_eq(nd->op, "BiasAdd") || bytes_eq(nd->op, "Relu") ||
                   bytes_eq(nd->op, "Softmax")) {
            if (open_weights < 0 || open_weights != nl - 1 ||
                (bytes_eq(nd->op, "BiasAdd") ? has_bias : !has_bias) ||
                layers[open_weights].activation != SM_ACT_NONE) {
                io_fail(g->err, g->errlen, "%s: node '%s' (%.*s) does not follow a Conv2D/MatMul + "
                        "BiasAdd: not a supported layer", g->what, node_str(nd, buf, sizeof buf),
                        (int)nd->op.n, (const char *)nd->op.p);
                goto fail;
            }
            SmLayer *w = &layers[open_weights];
            if (bytes_eq(nd->op, "BiasAdd")) {
                const GNode *v = weight_variable(g, nd, 1);
                int rank;
                int64_t dims[TF_MAX_RANK];
                if (nhwc_only(g, nd)) goto fail;
                if (!v || bytes_eq(v->op, "Const") || !variable_shape(v, &rank, dims) || rank != 1 ||
                    dims[0] != w->units) {
                    io_fail(g->err, g->errlen, "%s: node '%s': its bias is not a [%d] variable",
                            g->what, node_str(nd, buf, sizeof buf), w->units);
                    goto fail;
                }
                has_bias = 1;
            } else {
                w->activation = bytes_eq(nd->op, "Relu") ? SM_ACT_RELU : SM_ACT_SOFTMAX;
            }
            continue;
        } else {
            io_fail(g->err, g->errlen, "%s: op %.*s (node '%s') on the path from input to output is "
                    "not supported", g->what, (int)nd->op.n, (const char *)nd->op.p,
                    node_str(nd, buf, sizeof buf));
            goto fail;
        }
        /* a new layer: the previous conv/dense must have had its bias */
        if (open_weights >= 0 && !has_bias) {
            io_fail(g->err, g->errlen, "%s: layer '%s' has no BiasAdd", g->what,
                    layers[open_weights].name);
            goto fail;
        }
        open_weights = (l->kind == SM_LAYER_CONV2D || l->kind == SM_LAYER_DENSE) ? nl : -1;
        has_bias = 0;
        nl++;
    }
    if (open_weights >= 0 && !has_bias) {
        io_fail(g->err, g->errlen, "%s: layer '%s' has no BiasAdd", g->what, layers[open_weights].name);
        goto fail;
    }
    info->layers = layers;
    info->model.layers = layers;
    info->model.num_layers = nl;
    return 0;
fail:
    free(layers);
    return -1;
}

/* ---- signature --------------------------------------------------------------------------------- */

static int tensor_info(const Graph *g, Bytes entry, const char *which, char *key, size_t keycap,
                       char *tensor, size_t tcap, TfDataType *dtype, int *rank, int64_t *dims) {
    Bytes k = {0, 0}, v = {0, 0}, name = {0, 0}, shape = {0, 0};
    uint64_t dt = 0;
    msg_bytes(entry, MAP_KEY, &k);
    if (!msg_bytes(entry, MAP_VALUE, &v) || !msg_bytes(v, TI_NAME, &name))
        return io_fail(g->err, g->errlen, "%s: signature %s has an %s without a tensor name", g->what,
                       SIGNATURE_KEY, which);
    msg_varint(v, TI_DTYPE, &dt);
    bytes_copy(key, keycap, k);
    bytes_copy(tensor, tcap, name);
    *dtype = (TfDataType)dt;
    *rank = 0;
    if (msg_bytes(v, TI_SHAPE, &shape) && parse_shape(shape, rank, dims) != 0) *rank = -1;
    return 0;
}

static int parse_signature(const Graph *g, Bytes sig, SmInfo *info) {
    PbReader r;
    PbField f;
    pb_reader_init(&r, sig.p, sig.n);
    int n_in = 0, n_out = 0;
    while (pb_next(&r, &f) == 1) {
        if (f.wire_type != PB_LEN) continue;
        Bytes b = {f.data, f.len};
        if (f.field == SD_INPUTS) {
            if (n_in++ == 0 &&
                tensor_info(g, b, "input", info->input_key, sizeof info->input_key,
                            info->input_tensor, sizeof info->input_tensor, &info->input_dtype,
                            &info->input_rank, info->input_shape))
                return -1;
        } else if (f.field == SD_OUTPUTS) {
            if (n_out++ == 0 &&
                tensor_info(g, b, "output", info->output_key, sizeof info->output_key,
                            info->output_tensor, sizeof info->output_tensor, &info->output_dtype,
                            &info->output_rank, info->output_shape))
                return -1;
        } else if (f.field == SD_METHOD) {
            bytes_copy(info->method, sizeof info->method, b);
        }
    }
    if (n_in != 1 || n_out != 1)
        return io_fail(g->err, g->errlen, "%s: signature %s has %d inputs and %d outputs; exactly one "
                       "of each is supported", g->what, SIGNATURE_KEY, n_in, n_out);
    return 0;
}

/* ---- top level ----------------------------------------------------------------------------------- */

static int is_serve_graph(Bytes mg) {
    Bytes info;
    if (!msg_bytes(mg, MG_META_INFO, &info)) return 0;
    PbReader r;
    PbField f;
    pb_reader_init(&r, info.p, info.n);
    int serve = 0, other = 0;
    while (pb_next(&r, &f) == 1)
        if (f.field == MI_TAGS && f.wire_type == PB_LEN) {
            if (bytes_eq((Bytes){f.data, f.len}, "serve")) serve = 1;
            else other = 1;
        }
    return serve && !other;                 /* the tag set must equal {"serve"} */
}

int savedmodel_parse(const void *data, size_t n, const char *what, SmInfo *info, char *err,
                     size_t errlen) {
    memset(info, 0, sizeof *info);
    Graph g = {what, NULL, 0, err, errlen};
    PbReader r;
    PbField f;
    Bytes mg = {NULL, 0};
    int k;
    pb_reader_init(&r, data, n);
    while ((k = pb_next(&r, &f)) == 1)
        if (f.field == SM_META_GRAPHS && f.wire_type == PB_LEN && !mg.p &&
            is_serve_graph((Bytes){f.data, f.len}))
            mg = (Bytes){f.data, f.len};
    if (k < 0) return io_fail(err, errlen, "%s: not a SavedModel (malformed protobuf: %s)", what, r.error);
    if (!mg.p) return io_fail(err, errlen, "%s: no MetaGraphDef with tags {\"serve\"}", what);

    /* nodes and the signature */
    Bytes graph = {NULL, 0}, sig = {NULL, 0};
    pb_reader_init(&r, mg.p, mg.n);
    while ((k = pb_next(&r, &f)) == 1) {
        if (f.wire_type != PB_LEN) continue;
        if (f.field == MG_GRAPH_DEF) graph = (Bytes){f.data, f.len};
        if (f.field == MG_SIGNATURE_DEF) {
            Bytes key = {0};
            Bytes e = {f.data, f.len};
            if (msg_bytes(e, MAP_KEY, &key) && bytes_eq(key, SIGNATURE_KEY)) msg_bytes(e, MAP_VALUE, &sig);
        }
    }
    if (k < 0) return io_fail(err, errlen, "%s: malformed MetaGraphDef: %s", what, r.error);
    if (!graph.p) return io_fail(err, errlen, "%s: the meta graph has no GraphDef", what);
    if (!sig.p) return io_fail(err, errlen, "%s: no signature '%s'", what, SIGNATURE_KEY);
    int cap = 0, rc = 0;
    pb_reader_init(&r, graph.p, graph.n);
    while (rc == 0 && (k = pb_next(&r, &f)) == 1) {
        if (f.field != GD_NODE || f.wire_type != PB_LEN) continue;
        if (g.n == cap) {
            cap = cap ? 2 * cap : 64;
            GNode *p = realloc(g.nodes, (size_t)cap * sizeof *p);
            if (!p) { rc = io_fail(err, errlen, "%s: out of memory", what); break; }
            g.nodes = p;
        }
        rc = parse_node(&g, &g.nodes[g.n], (Bytes){f.data, f.len});
        g.n++;
    }
    if (rc == 0 && k < 0) rc = io_fail(err, errlen, "%s: malformed GraphDef: %s", what, r.error);
    if (rc == 0) rc = parse_signature(&g, sig, info);

    /* variables */
    for (int i = 0; rc == 0 && i < g.n; i++) {
        const GNode *nd = &g.nodes[i];
        if (!bytes_eq(nd->op, "VarHandleOp") && !bytes_eq(nd->op, "VariableV2")) continue;
        SmVariable *p = realloc(info->variables, (size_t)(info->num_variables + 1) * sizeof *p);
        if (!p) { rc = io_fail(err, errlen, "%s: out of memory", what); break; }
        info->variables = p;
        SmVariable *v = &p[info->num_variables++];
        memset(v, 0, sizeof *v);
        bytes_copy(v->name, sizeof v->name, nd->name);
        Bytes a;
        uint64_t dt = 0;
        if (find_attr(nd, "dtype", &a)) msg_varint(a, AV_TYPE, &dt);
        v->dtype = (TfDataType)dt;
        if (!variable_shape(nd, &v->rank, v->shape))
            rc = io_fail(err, errlen, "%s: variable '%s' has no known shape", what, v->name);
    }

    /* the chain from the output back to the input, following data input 0 */
    const GNode *chain[MAX_CHAIN];
    int len = 0;
    if (rc == 0) {
        Bytes out_node = node_of((Bytes){(const uint8_t *)info->output_tensor,
                                         strlen(info->output_tensor)});
        Bytes in_node = node_of((Bytes){(const uint8_t *)info->input_tensor,
                                        strlen(info->input_tensor)});
        const GNode *nd = find_node(&g, out_node);
        while (rc == 0) {
            if (!nd) { rc = io_fail(err, errlen, "%s: the signature output does not lead back to its "
                                    "input '%s'", what, info->input_tensor); break; }
            if (len == MAX_CHAIN) { rc = io_fail(err, errlen, "%s: graph path too long", what); break; }
            chain[len++] = nd;
            if (bytes_same(nd->name, in_node)) break;
            nd = nd->n_inputs ? find_node(&g, node_of(nd->inputs[0])) : NULL;
        }
        for (int i = 0; i < len / 2; i++) {                   /* input first */
            const GNode *t = chain[i];
            chain[i] = chain[len - 1 - i];
            chain[len - 1 - i] = t;
        }
    }
    if (rc == 0 && (info->input_rank != 4 || info->input_shape[1] < 1 || info->input_shape[2] < 1 ||
                    info->input_shape[3] < 1 || info->input_shape[1] > INT_MAX ||
                    info->input_shape[2] > INT_MAX || info->input_shape[3] > INT_MAX))
        rc = io_fail(err, errlen, "%s: input '%s' is not an [N,H,W,C] image tensor", what,
                     info->input_key);
    if (rc == 0) rc = build_layers(&g, chain, len, info);
    if (rc == 0) {
        info->model.input_key = info->input_key;
        info->model.height = (int)info->input_shape[1];
        info->model.width = (int)info->input_shape[2];
        info->model.channels = (int)info->input_shape[3];
        char why[400];
        if (sm_model_check(&info->model, NULL, why, sizeof why))
            rc = io_fail(err, errlen, "%s: unsupported network: %s", what, why);
    }
    free_nodes(&g);
    if (rc) savedmodel_info_free(info);
    return rc;
}

int savedmodel_read(const char *export_dir, SmInfo *info, char *err, size_t errlen) {
    char path[4200];
    /* fs_join: a trailing '/' (as Vertex AI's variables have) is not doubled, which on a bucket
     * would name another object */
    char *joined = fs_join(export_dir, "saved_model.pb");
    const int joined_ok = joined != NULL;
    snprintf(path, sizeof path, "%s", joined_ok ? joined : export_dir);
    free(joined);
    memset(info, 0, sizeof *info);
    if (!joined_ok) return io_fail(err, errlen, "%s: out of memory", export_dir);
    char why[1024];
    FILE *f = fs_fopen_read(path, why, sizeof why);
    if (!f) return io_fail(err, errlen, "%s: %s", path, why);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0 || st.st_size > ((off_t)1 << 31)) {
        fclose(f);
        return io_fail(err, errlen, "%s: empty, unreadable or over 2 GiB", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n);
    if (!buf || fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return io_fail(err, errlen, "%s: read failed", path);
    }
    fclose(f);
    int rc = savedmodel_parse(buf, n, path, info, err, errlen);
    free(buf);
    return rc;
}

void savedmodel_info_free(SmInfo *info) {
    free(info->layers);
    free(info->variables);
    memset(info, 0, sizeof *info);
}
