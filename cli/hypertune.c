/* hypertune.c: the cloudml-hypertune metric file (see hypertune.h). */
#include "cli/hypertune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cli/tf_log.h"
#include "io/atomic_file.h"
#include "io/dirs.h"

static char *dup_or(const char *s, const char *fallback) {
    return strdup(s && *s ? s : fallback);
}

void hypertune_init(Hypertune *h, const char *path, const char *trial) {
    memset(h, 0, sizeof *h);
    h->path = dup_or(path ? path : getenv("CLOUD_ML_HP_METRIC_FILE"), HYPERTUNE_DEFAULT_PATH);
    h->trial = dup_or(trial, "0");
}

void hypertune_free(Hypertune *h) {
    for (int i = 0; i < h->count; i++) free(h->entries[i]);
    free(h->path);
    free(h->trial);
    memset(h, 0, sizeof *h);
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii): \" \\ \n \r \t \b \f, other
 * control characters and every non-ASCII code point as \uXXXX (UTF-16 surrogate pairs above
 * U+FFFF; a byte that is not valid UTF-8 as U+FFFD). out must hold 12 * strlen(s) + 3 bytes. */
static void json_string(char *out, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    char *o = out;
    *o++ = '"';
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; p++; continue; }
        if (c >= 0x20 && c < 0x7f) { *o++ = (char)c; p++; continue; }
        const char *short_esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                              : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (short_esc) { memcpy(o, short_esc, 2); o += 2; p++; continue; }
        uint32_t cp = 0xFFFD;
        int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
              : (c & 0xF8) == 0xF0 ? 4 : 0;
        int ok = n > 0;
        if (n == 1) cp = c;
        else if (n > 1) {
            cp = c & (0x7F >> n);
            for (int k = 1; k < n && ok; k++) {
                if ((p[k] & 0xC0) != 0x80) ok = 0;
                else cp = (cp << 6) | (p[k] & 0x3F);
            }
        }
        if (!ok) { cp = 0xFFFD; n = 1; }
        p += n;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            o += sprintf(o, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
        } else {
            o += sprintf(o, "\\u%04x", cp);
        }
    }
    *o++ = '"';
    *o = '\0';
}

typedef struct { const char *key; char value[400]; } JsonField;

static int field_cmp(const void *a, const void *b) {
    return strcmp(((const JsonField *)a)->key, ((const JsonField *)b)->key);
}

char *hypertune_entry(const char *tag, double value, int64_t global_step, double timestamp,
                      const char *trial) {
    if (!tag || !*tag) tag = HYPERTUNE_DEFAULT_TAG;
    if (!trial) trial = "0";
    JsonField f[4] = {{"global_step", ""}, {"timestamp", ""}, {"trial", ""}, {tag, ""}};
    char num[64];
    snprintf(f[0].value, sizeof f[0].value, "\"%lld\"", (long long)global_step);
    snprintf(f[1].value, sizeof f[1].value, "%s", tf_fmt_double(num, sizeof num, timestamp));
    if (strlen(trial) > 30) trial = "0";   /* trial ids are small integers; bounds f[2] */
    json_string(f[2].value, trial);
    snprintf(f[3].value, sizeof f[3].value, "\"%s\"", tf_fmt_double(num, sizeof num, value));
    qsort(f, 4, sizeof f[0], field_cmp);

    size_t cap = 12 * strlen(tag) + 3 + 4 * sizeof f[0].value + 64;
    char *line = malloc(cap), *keybuf = malloc(12 * strlen(tag) + 3);
    if (!line || !keybuf) { free(line); free(keybuf); return NULL; }
    size_t len = 0;
    line[len++] = '{';
    for (int i = 0; i < 4; i++) {
        json_string(keybuf, f[i].key);
        len += (size_t)snprintf(line + len, cap - len, "%s%s: %s", i ? ", " : "", keybuf,
                                f[i].value);
    }
    snprintf(line + len, cap - len, "}");
    free(keybuf);
    return line;
}

int hypertune_report(Hypertune *h, const char *tag, double value, int64_t global_step,
                     char *err, size_t errlen) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char *line = hypertune_entry(tag, value, global_step, tv.tv_sec + tv.tv_usec / 1e6, h->trial);
    if (!line) { snprintf(err, errlen, "%s: out of memory", h->path); return -1; }
    if (h->count == HYPERTUNE_MAX_ENTRIES) {          /* a deque of the newest 100 */
        free(h->entries[0]);
        memmove(h->entries, h->entries + 1, sizeof h->entries[0] * (HYPERTUNE_MAX_ENTRIES - 1));
        h->count--;
    }
    h->entries[h->count++] = line;

    size_t total = 0;
    for (int i = 0; i < h->count; i++) total += strlen(h->entries[i]) + 1;
    char *text = malloc(total + 1), *o = text;
    if (!text) { snprintf(err, errlen, "%s: out of memory", h->path); return -1; }
    for (int i = 0; i < h->count; i++) {
        size_t n = strlen(h->entries[i]);
        memcpy(o, h->entries[i], n);
        o += n;
        *o++ = '\n';
    }
    /* The parent directory is created as cloudml-hypertune does (os.makedirs). */
    char *parent = strdup(h->path);
    char *slash = parent ? strrchr(parent, '/') : NULL;
    int rc = 0;
    if (slash && slash != parent) {
        *slash = '\0';
        rc = dirs_make(parent, err, errlen);   /* err copied into the message below */
    }
    free(parent);
    char why[512] = "";
    if (rc == 0) rc = atomic_file_write_all(h->path, text, total, why, sizeof why);
    else snprintf(why, sizeof why, "%s", err);
    free(text);
    if (rc != 0) snprintf(err, errlen, "hyperparameter metric file %s: %s", h->path, why);
    return rc;
}
