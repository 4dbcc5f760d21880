/* model_spec.c: parsing the --model layer list. */
#include "core/model_spec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 6

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_padding(const char *s, int *same) {
    if (strcmp(s, "same") == 0) *same = 1;
    else if (strcmp(s, "valid") == 0) *same = 0;
    else return -1;
    return 0;
}

static int parse_layer(char **f, int nf, LayerSpec *l) {
    memset(l, 0, sizeof *l);
    l->stride = 1;
    if (strcmp(f[0], "conv") == 0 && nf >= 3 && nf <= 5) {
        l->kind = LAYER_CONV;
        l->same = 1;
        return (parse_int(f[1], 1, 1 << 16, &l->units) || parse_int(f[2], 1, 64, &l->size) ||
                (nf > 3 && parse_padding(f[3], &l->same)) ||
                (nf > 4 && parse_int(f[4], 1, 64, &l->stride))) ? -1 : 0;
    }
    if (strcmp(f[0], "maxpool") == 0 && nf >= 2 && nf <= 4) {
        l->kind = LAYER_MAXPOOL;
        if (parse_int(f[1], 1, 64, &l->size)) return -1;
        l->stride = l->size;
        return ((nf > 2 && parse_int(f[2], 1, 64, &l->stride)) ||
                (nf > 3 && parse_padding(f[3], &l->same))) ? -1 : 0;
    }
    if (strcmp(f[0], "dense") == 0 && nf == 2) {
        l->kind = LAYER_DENSE;
        return parse_int(f[1], 1, 1 << 20, &l->units);
    }
    if (strcmp(f[0], "relu") == 0 && nf == 1) {
        l->kind = LAYER_RELU;
        return 0;
    }
    if (strcmp(f[0], "flatten") == 0 && nf == 1) {
        l->kind = LAYER_FLATTEN;
        return 0;
    }
    if (strcmp(f[0], "dropout") == 0 && nf == 2) {
        l->kind = LAYER_DROPOUT;
        char *end;
        errno = 0;
        double r = strtod(f[1], &end);
        if (errno || end == f[1] || *end || !(r >= 0.0 && r < 1.0)) return -1;
        l->rate = (float)r;
        return 0;
    }
    return -1;
}

int model_spec_parse(const char *spec, ModelSpec *out, char *err, size_t errlen) {
    if (!spec || !*spec) spec = MODEL_SPEC_DEFAULT;
    char buf[2048];
    size_t len = 0;
    for (const char *p = spec; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n') continue;
        if (len + 1 >= sizeof buf) {
            snprintf(err, errlen, "model spec too long (over %zu characters)", sizeof buf - 1);
            return -1;
        }
        buf[len++] = *p;
    }
    buf[len] = 0;
    out->n = 0;
    char *save = NULL;
    int index = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save), index++) {
        char layer_text[256];
        snprintf(layer_text, sizeof layer_text, "%s", tok);
        if (out->n >= MODEL_SPEC_MAX_LAYERS) {
            snprintf(err, errlen, "model spec: more than %d layers", MODEL_SPEC_MAX_LAYERS);
            return -1;
        }
        char *f[MAX_FIELDS];
        int nf = 0;
        char *s2 = NULL;
        for (char *x = strtok_r(tok, ":", &s2); x; x = strtok_r(NULL, ":", &s2)) {
            if (nf == MAX_FIELDS) {
                nf = MAX_FIELDS + 1;
                break;
            }
            f[nf++] = x;
        }
        if (nf == 0 || nf > MAX_FIELDS || parse_layer(f, nf, &out->layers[out->n]) != 0) {
            snprintf(err, errlen,
                     "model spec: bad layer %d '%s' (expected conv:F:K[:same|valid[:S]], "
                     "maxpool:K[:S[:same|valid]], dense:U, relu, flatten or dropout:RATE)",
                     index + 1, layer_text);
            return -1;
        }
        out->n++;
    }
    if (out->n == 0) {
        snprintf(err, errlen, "model spec '%s' has no layers", spec);
        return -1;
    }
    return 0;
}
