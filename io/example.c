/* example.c: tf.train.Example parse and build (see example.h). */
#include "io/example.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ex_kind_name(ExKind k) {
    switch (k) {
    case EX_KIND_BYTES: return "bytes_list";
    case EX_KIND_FLOAT: return "float_list";
    case EX_KIND_INT64: return "int64_list";
    default: return "no list";
    }
}

void example_view_init(ExampleView *v) { memset(v, 0, sizeof *v); }

void example_view_free(ExampleView *v) {
    free(v->features);
    example_view_init(v);
}

static const char *const list_names[] = {"", "BytesList", "FloatList", "Int64List"};

/* Validates one list message of the given kind and counts its values. NULL ok, else the error. */
static const char *count_list(ExKind kind, const uint8_t *p, size_t n, size_t *count) {
    PbReader r;
    PbField f;
    int rc;
    size_t c = 0;
    pb_reader_init(&r, p, n);
    while ((rc = pb_next(&r, &f)) == 1) {
        if (f.field != 1) continue;   /* unknown field: skipped */
        switch (kind) {
        case EX_KIND_BYTES:
            if (f.wire_type != PB_LEN) return "BytesList.value has the wrong wire type";
            c++;
            break;
        case EX_KIND_FLOAT:
            if (f.wire_type == PB_FIXED32) {
                c++;
            } else if (f.wire_type == PB_LEN) {
                if (f.len % 4) return "packed FloatList.value length is not a multiple of 4";
                c += f.len / 4;
            } else {
                return "FloatList.value has the wrong wire type";
            }
            break;
        case EX_KIND_INT64:
            if (f.wire_type == PB_VARINT) {
                c++;
            } else if (f.wire_type == PB_LEN) {
                PbReader pr;
                uint64_t x;
                pb_reader_init(&pr, f.data, f.len);
                while (pr.p < pr.end) {
                    if (pb_read_varint(&pr, &x) < 0) return "packed Int64List.value is malformed";
                    c++;
                }
            } else {
                return "Int64List.value has the wrong wire type";
            }
            break;
        default:
            break;
        }
    }
    if (rc < 0) return r.error;
    *count = c;
    return NULL;
}

static int push_feature(ExampleView *v, const ExFeature *f) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        ExFeature *nf = realloc(v->features, cap * sizeof *nf);
        if (!nf) return -1;
        v->features = nf;
        v->cap = cap;
    }
    v->features[v->n++] = *f;
    return 0;
}

/* Parses one map entry {1: key, 2: Feature}. */
static int parse_entry(ExampleView *v, const uint8_t *p, size_t n, char *err, size_t errlen) {
    ExFeature feat = {.name = (const uint8_t *)"", .name_len = 0, .kind = EX_KIND_NONE};
    PbReader r;
    PbField f;
    int rc;
    pb_reader_init(&r, p, n);
    const uint8_t *value = NULL;
    size_t value_len = 0;
    while ((rc = pb_next(&r, &f)) == 1) {
        if (f.field == 1 || f.field == 2) {
            if (f.wire_type != PB_LEN) {
                snprintf(err, errlen, "malformed Example: feature map entry field %u has the wrong wire type",
                         f.field);
                return -1;
            }
            if (f.field == 1) {
                feat.name = f.data;
                feat.name_len = f.len;
            } else {
                value = f.data;
                value_len = f.len;
            }
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "malformed Example: feature map entry: %s", r.error);
        return -1;
    }
    /* The Feature: its oneof; the last list field set wins. */
    pb_reader_init(&r, value ? value : (const uint8_t *)"", value_len);
    while ((rc = pb_next(&r, &f)) == 1) {
        if (f.field < 1 || f.field > 3) continue;
        if (f.wire_type != PB_LEN) {
            snprintf(err, errlen, "malformed Example: feature '%.*s': list field has the wrong wire type",
                     (int)feat.name_len, (const char *)feat.name);
            return -1;
        }
        feat.kind = (ExKind)f.field;
        feat.list = f.data;
        feat.list_len = f.len;
    }
    if (rc < 0) {
        snprintf(err, errlen, "malformed Example: feature '%.*s': %s", (int)feat.name_len,
                 (const char *)feat.name, r.error);
        return -1;
    }
    feat.count = 0;
    if (feat.kind != EX_KIND_NONE) {
        const char *why = count_list(feat.kind, feat.list, feat.list_len, &feat.count);
        if (why) {
            snprintf(err, errlen, "malformed Example: feature '%.*s' (%s): %s", (int)feat.name_len,
                     (const char *)feat.name, list_names[feat.kind], why);
            return -1;
        }
    }
    if (push_feature(v, &feat)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int example_parse(ExampleView *v, const void *data, size_t n, char *err, size_t errlen) {
    v->n = 0;
    PbReader ex, fs;
    PbField f, g;
    int rc, rc2;
    pb_reader_init(&ex, data, n);
    while ((rc = pb_next(&ex, &f)) == 1) {
        if (f.field != 1) continue;
        if (f.wire_type != PB_LEN) {
            snprintf(err, errlen, "malformed Example: field 'features' has the wrong wire type");
            return -1;
        }
        pb_reader_init(&fs, f.data, f.len);
        while ((rc2 = pb_next(&fs, &g)) == 1) {
            if (g.field != 1) continue;
            if (g.wire_type != PB_LEN) {
                snprintf(err, errlen, "malformed Example: Features.feature has the wrong wire type");
                return -1;
            }
            if (parse_entry(v, g.data, g.len, err, errlen)) return -1;
        }
        if (rc2 < 0) {
            snprintf(err, errlen, "malformed Example: Features: %s", fs.error);
            return -1;
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "malformed Example: %s", ex.error);
        return -1;
    }
    return 0;
}

const ExFeature *example_find(const ExampleView *v, const char *name) {
    size_t len = strlen(name);
    for (size_t i = v->n; i-- > 0;) {
        const ExFeature *f = &v->features[i];
        if (f->name_len == len && memcmp(f->name, name, len) == 0) return f;
    }
    return NULL;
}

/* ---- values (the feature was validated by example_parse) ---------------------------------- */

void ex_feature_int64s(const ExFeature *f, int64_t *out) {
    PbReader r;
    PbField g;
    size_t k = 0;
    pb_reader_init(&r, f->list, f->list_len);
    while (pb_next(&r, &g) == 1) {
        if (g.field != 1) continue;
        if (g.wire_type == PB_VARINT) {
            out[k++] = (int64_t)g.varint;
        } else {
            PbReader pr;
            uint64_t x;
            pb_reader_init(&pr, g.data, g.len);
            while (pr.p < pr.end && pb_read_varint(&pr, &x) == 0) out[k++] = (int64_t)x;
        }
    }
}

void ex_feature_floats(const ExFeature *f, float *out) {
    PbReader r;
    PbField g;
    size_t k = 0;
    pb_reader_init(&r, f->list, f->list_len);
    while (pb_next(&r, &g) == 1) {
        if (g.field != 1) continue;
        if (g.wire_type == PB_FIXED32) {
            out[k++] = pb_bits_to_float(g.fixed);
        } else {
            for (size_t i = 0; i + 4 <= g.len; i += 4) {
                const uint8_t *b = g.data + i;
                uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                             (uint32_t)b[3] << 24;
                out[k++] = pb_bits_to_float(u);
            }
        }
    }
}

int ex_feature_bytes_next(const ExFeature *f, ExBytesIter *it, const uint8_t **p, size_t *n) {
    if (!it->started) {
        pb_reader_init(&it->r, f->list, f->list_len);
        it->started = 1;
    }
    PbField g;
    while (pb_next(&it->r, &g) == 1) {
        if (g.field != 1) continue;
        *p = g.data;
        *n = g.len;
        return 1;
    }
    return 0;
}

static const char *article(ExKind k) {
    return k == EX_KIND_NONE ? "" : k == EX_KIND_INT64 ? "an " : "a ";
}

/* The feature if present with the wanted kind and count, else NULL with err set. */
static const ExFeature *typed(const ExampleView *v, const char *name, ExKind kind, size_t count,
                              char *err, size_t errlen) {
    const ExFeature *f = example_find(v, name);
    if (!f) {
        snprintf(err, errlen, "feature '%s' is missing", name);
        return NULL;
    }
    if (f->kind != kind) {
        snprintf(err, errlen, "feature '%s' is %s%s, expected %s%s", name, article(f->kind),
                 ex_kind_name(f->kind), article(kind), ex_kind_name(kind));
        return NULL;
    }
    if (f->count != count) {
        snprintf(err, errlen, "feature '%s' has %zu value%s, expected %zu", name, f->count,
                 f->count == 1 ? "" : "s", count);
        return NULL;
    }
    return f;
}

int example_get_int64s(const ExampleView *v, const char *name, int64_t *out, size_t count, char *err,
                       size_t errlen) {
    const ExFeature *f = typed(v, name, EX_KIND_INT64, count, err, errlen);
    if (!f) return -1;
    ex_feature_int64s(f, out);
    return 0;
}

int example_get_floats(const ExampleView *v, const char *name, float *out, size_t count, char *err,
                       size_t errlen) {
    const ExFeature *f = typed(v, name, EX_KIND_FLOAT, count, err, errlen);
    if (!f) return -1;
    ex_feature_floats(f, out);
    return 0;
}

int example_get_bytes(const ExampleView *v, const char *name, const uint8_t **p, size_t *n, char *err,
                      size_t errlen) {
    const ExFeature *f = typed(v, name, EX_KIND_BYTES, 1, err, errlen);
    if (!f) return -1;
    ExBytesIter it = {0};
    ex_feature_bytes_next(f, &it, p, n);
    return 0;
}

/* ---- builder ----------------------------------------------------------------------------- */

void example_builder_init(ExampleBuilder *b) {
    pb_buf_init(&b->features);
    pb_buf_init(&b->entry);
    pb_buf_init(&b->feature);
    pb_buf_init(&b->list);
}

void example_builder_free(ExampleBuilder *b) {
    pb_buf_free(&b->features);
    pb_buf_free(&b->entry);
    pb_buf_free(&b->feature);
    pb_buf_free(&b->list);
}

void example_builder_reset(ExampleBuilder *b) { pb_buf_reset(&b->features); }

/* Wraps b->list (already filled) as Feature{kind: list} under name into the Features map. */
static void add_entry(ExampleBuilder *b, const char *name, ExKind kind) {
    pb_buf_reset(&b->feature);
    pb_put_message(&b->feature, (uint32_t)kind, &b->list);
    pb_buf_reset(&b->entry);
    pb_put_string(&b->entry, 1, name);
    pb_put_message(&b->entry, 2, &b->feature);
    pb_put_message(&b->features, 1, &b->entry);
}

void example_add_int64s(ExampleBuilder *b, const char *name, const int64_t *v, size_t n) {
    pb_buf_reset(&b->list);
    if (n) pb_put_packed_int64(&b->list, 1, v, n);
    add_entry(b, name, EX_KIND_INT64);
}

void example_add_floats(ExampleBuilder *b, const char *name, const float *v, size_t n) {
    pb_buf_reset(&b->list);
    if (n) pb_put_packed_float(&b->list, 1, v, n);
    add_entry(b, name, EX_KIND_FLOAT);
}

void example_add_bytes(ExampleBuilder *b, const char *name, const void *const *vals,
                       const size_t *lens, size_t n) {
    pb_buf_reset(&b->list);
    for (size_t i = 0; i < n; i++) pb_put_bytes(&b->list, 1, vals[i], lens[i]);
    add_entry(b, name, EX_KIND_BYTES);
}

void example_add_bytes1(ExampleBuilder *b, const char *name, const void *p, size_t len) {
    example_add_bytes(b, name, &p, &len, 1);
}

int example_serialize(const ExampleBuilder *b, PbBuf *out) {
    if (b->entry.oom || b->feature.oom || b->list.oom) out->oom = 1;
    pb_put_message(out, 1, &b->features);
    return out->oom ? -1 : 0;
}
