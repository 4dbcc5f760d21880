/* predict_input.c: the instances of a `predict` call from JSON text (see predict_input.h). */
#include "cli/predict_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static float *batch_slot(InstanceBatch *b) {
    size_t per = (size_t)b->h * b->w * b->c;
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        float *p = realloc(b->data, (size_t)cap * per * sizeof *p);
        if (!p) return NULL;
        b->data = p;
        b->cap = cap;
    }
    return b->data + (size_t)b->n++ * per;
}

/* Copies a [dims[0]][dims[1]]... nested list of numbers into dst; *why says what is wrong. */
static int copy_nested(const cJSON *v, const int *dims, int rank, int depth, char *path,
                       size_t pathlen, float **dst, char *why, size_t whylen) {
    if (depth == rank) {
        if (!cJSON_IsNumber(v)) {
            snprintf(why, whylen, "element %s is not a number", path[0] ? path : "[]");
            return -1;
        }
        *(*dst)++ = (float)v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v)) {
        snprintf(why, whylen, "%s%s should be a list of %d (the input is [%d,%d,%d])",
                 depth ? "element " : "the value", path, dims[depth], dims[0], dims[1], dims[2]);
        return -1;
    }
    int n = cJSON_GetArraySize(v);
    if (n != dims[depth]) {
        snprintf(why, whylen, "%s%s has %d entries, expected %d (the input is [%d,%d,%d])",
                 depth ? "element " : "the value", depth ? path : "", n, dims[depth], dims[0],
                 dims[1], dims[2]);
        return -1;
    }
    size_t len = strlen(path);
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        snprintf(path + len, pathlen - len, "[%d]", i);
        if (copy_nested(e, dims, rank, depth + 1, path, pathlen, dst, why, whylen)) return -1;
    }
    path[len] = 0;
    return 0;
}

/* One instance: the input's value, or an object {"<input_key>": value}. */
static int add_instance(InstanceBatch *b, const cJSON *v, char *why, size_t whylen) {
    if (cJSON_IsObject(v)) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(v, b->input_key);
        int keys = cJSON_GetArraySize(v);
        if (!x || keys != 1) {
            const char *other = v->child && !x ? v->child->string : NULL;
            snprintf(why, whylen, "the object must have exactly the key \"%s\"%s%s%s", b->input_key,
                     other ? " (found \"" : "", other ? other : "", other ? "\")" : "");
            return -1;
        }
        v = x;
    }
    float *dst = batch_slot(b);
    if (!dst) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    const int dims[3] = {b->h, b->w, b->c};
    char path[64] = "";
    if (copy_nested(v, dims, 3, 0, path, sizeof path, &dst, why, whylen)) {
        b->n--;
        return -1;
    }
    return 0;
}

static int error_at(char *err, size_t errlen, const char *file, const char *where, const char *why) {
    snprintf(err, errlen, "%s: %s: %s", file, where, why);
    return -1;
}

int instances_parse_lines(const char *text, size_t n, const char *file, InstanceBatch *b,
                          char *err, size_t errlen) {
    int rc = 0, lineno = 0;
    const char *line = text;
    char why[512], where[64];
    while (rc == 0 && line < text + n) {
        const char *end = memchr(line, '\n', (size_t)(text + n - line));
        size_t len = end ? (size_t)(end - line) : (size_t)(text + n - line);
        lineno++;
        snprintf(where, sizeof where, "line %d", lineno);
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k < len) {
            const char *stop = NULL;
            cJSON *v = cJSON_ParseWithLengthOpts(line, len, &stop, 0);
            size_t at = stop ? (size_t)(stop - line) : 0;
            while (v && at < len && (line[at] == ' ' || line[at] == '\t' || line[at] == '\r')) at++;
            if (!v || at != len) {
                snprintf(why, sizeof why, "malformed JSON at column %zu", at + 1);
                rc = error_at(err, errlen, file, where, why);
            } else if (add_instance(b, v, why, sizeof why)) {
                rc = error_at(err, errlen, file, where, why);
            }
            cJSON_Delete(v);
        }
        line += len + 1;
    }
    return rc;
}

int instances_parse_request(const char *text, size_t n, const char *file, InstanceBatch *b,
                            int *columnar, char *err, size_t errlen) {
    const char *stop = NULL, *end = text + n;
    cJSON *body = cJSON_ParseWithLengthOpts(text, n, &stop, 0);
    char why[512], where[64];
    int rc = 0;
    if (body && stop) {
        while (stop < end && (*stop == ' ' || *stop == '\n' || *stop == '\r' || *stop == '\t'))
            stop++;
        if (stop < end) { cJSON_Delete(body); body = NULL; }
    }
    if (!body) {
        int line = 1, col = 1;
        for (const char *p = text; stop && p < stop && p < end; p++) {
            if (*p == '\n') line++, col = 1;
            else col++;
        }
        snprintf(why, sizeof why, "malformed JSON at line %d column %d", line, col);
        return error_at(err, errlen, file, "request", why);
    }
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(body, "signature_name");
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(body, "instances");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(body, "inputs");
    *columnar = inputs != NULL;
    if (!cJSON_IsObject(body)) {
        rc = error_at(err, errlen, file, "request", "the body must be a JSON object");
    } else if (sig && (!cJSON_IsString(sig) || strcmp(sig->valuestring, PREDICT_SIGNATURE_KEY) != 0)) {
        snprintf(why, sizeof why, "unknown signature_name (the export has only \"%s\")",
                 PREDICT_SIGNATURE_KEY);
        rc = error_at(err, errlen, file, "request", why);
    } else if (!!inst == !!inputs) {
        rc = error_at(err, errlen, file, "request",
                      "exactly one of \"instances\" (row form) or \"inputs\" (columnar form) "
                      "is required");
    } else if (inst) {
        if (!cJSON_IsArray(inst)) {
            rc = error_at(err, errlen, file, "request", "\"instances\" must be a list");
        } else {
            int i = 0;
            for (const cJSON *e = inst->child; rc == 0 && e; e = e->next, i++) {
                snprintf(where, sizeof where, "instance %d", i);
                if (add_instance(b, e, why, sizeof why)) rc = error_at(err, errlen, file, where, why);
            }
        }
    } else {
        /* columnar: the whole batch, bare or under the input's name */
        const cJSON *v = inputs;
        if (cJSON_IsObject(v)) {
            v = cJSON_GetObjectItemCaseSensitive(inputs, b->input_key);
            if (!v || cJSON_GetArraySize(inputs) != 1) {
                snprintf(why, sizeof why, "\"inputs\" must have exactly the key \"%s\"",
                         b->input_key);
                rc = error_at(err, errlen, file, "request", why);
            }
        }
        if (rc == 0 && !cJSON_IsArray(v)) {
            rc = error_at(err, errlen, file, "request", "\"inputs\" must be a list of examples");
        }
        int i = 0;
        for (const cJSON *e = rc == 0 ? v->child : NULL; rc == 0 && e; e = e->next, i++) {
            snprintf(where, sizeof where, "inputs[%d]", i);
            if (cJSON_IsObject(e)) {
                rc = error_at(err, errlen, file, where, "expected a nested list, not an object");
            } else if (add_instance(b, e, why, sizeof why)) {
                rc = error_at(err, errlen, file, where, why);
            }
        }
    }
    cJSON_Delete(body);
    return rc;
}
