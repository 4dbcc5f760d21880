/* checkpoint.c: Estimator-style checkpoint directories (see checkpoint.h). */
#include "io/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/dirs.h"
#include "io/fs.h"
#include "io/pb_wire.h"
#include "io/tensor_bundle.h"

#define STATE_FILE "checkpoint"
#define CKPT_BASENAME "model.ckpt"

void checkpoint_paths_free(char **paths, int n) { dirs_names_free(paths, n); }

static char *join_path(const char *dir, const char *name) {
    if (name[0] == '/') return strdup(name);
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Parses a text-format string literal at s (after the opening quote) into out; returns the
 * position after the closing quote or NULL. Handles the escapes TF's text printer emits. */
static const char *parse_quoted(const char *s, char *out, size_t cap) {
    size_t n = 0;
    while (*s && *s != '"') {
        char c = *s++;
        if (c == '\\') {
            c = *s++;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c >= '0' && c <= '7') {                  /* octal \NNN */
                int v = c - '0';
                for (int k = 0; k < 2 && *s >= '0' && *s <= '7'; k++) v = v * 8 + (*s++ - '0');
                c = (char)v;
            } else if (c == 0) {
                return NULL;
            }
        }
        if (n + 1 >= cap) return NULL;
        out[n++] = c;
    }
    if (*s != '"') return NULL;
    out[n] = 0;
    return s + 1;
}

/* Parses <dir>/checkpoint: every listed prefix (joined to dir) in *paths, and
 * model_checkpoint_path (joined) in model_path ("" when absent). See checkpoint_state_read. */
static int read_state(const char *dir, char ***paths, char *model_path_out, size_t model_cap,
                      char *err, size_t errlen) {
    *paths = NULL;
    if (model_cap) model_path_out[0] = 0;
    char *file = join_path(dir, STATE_FILE);
    if (!file) return snprintf(err, errlen, "out of memory"), -1;
    char why[1024];
    FILE *f = fs_fopen_read(file, why, sizeof why);
    if (!f) {
        int missing = errno == ENOENT;
        if (!missing) snprintf(err, errlen, "%s: %s", file, why);
        free(file);
        return missing ? 0 : -1;
    }
    char line[4608], value[4096], model_path[4096] = "";
    char **v = NULL;
    int n = 0, cap = 0, lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\n' || *s == 0 || *s == '#') continue;
        char *colon = strchr(s, ':');
        const char *q = colon ? colon + 1 : NULL;
        while (q && (*q == ' ' || *q == '\t')) q++;
        if (!q || *q != '"') {
            /* other fields (timestamps) are numbers: skip them, but only known ones */
            if (strncmp(s, "all_model_checkpoint_timestamps", 31) == 0 ||
                strncmp(s, "last_preserved_timestamp", 24) == 0)
                continue;
            rc = -1;
            break;
        }
        if (!parse_quoted(q + 1, value, sizeof value)) {
            rc = -1;
            break;
        }
        size_t keylen = (size_t)(colon - s);
        while (keylen && (s[keylen - 1] == ' ' || s[keylen - 1] == '\t')) keylen--;
        if (keylen == 21 && strncmp(s, "model_checkpoint_path", 21) == 0) {
            snprintf(model_path, sizeof model_path, "%s", value);
        } else if (keylen == 26 && strncmp(s, "all_model_checkpoint_paths", 26) == 0) {
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                char **p = realloc(v, (size_t)cap * sizeof *p);
                if (!p) { rc = -2; break; }
                v = p;
            }
            if (!(v[n] = join_path(dir, value))) { rc = -2; break; }
            n++;
        }
    }
    fclose(f);
    if (rc == -1) snprintf(err, errlen, "%s:%d: malformed line (expected name: \"path\")", file,
                           lineno);
    else if (rc == -2) snprintf(err, errlen, "%s: out of memory", file);
    /* TF lists the newest in model_checkpoint_path; older writers may omit the list. */
    if (rc == 0 && model_path[0]) {
        char *mp = join_path(dir, model_path);
        if (mp && model_cap) snprintf(model_path_out, model_cap, "%s", mp);
        int listed = 0;
        for (int i = 0; mp && i < n; i++) listed |= strcmp(v[i], mp) == 0;
        if (mp && !listed) {
            char **p = realloc(v, (size_t)(n + 1) * sizeof *p);
            if (p) {
                v = p;
                v[n++] = mp;
                mp = NULL;
            } else {
                rc = -2;
            }
        }
        free(mp);
    }
    free(file);
    if (rc) {
        dirs_names_free(v, n);
        return -1;
    }
    *paths = v;
    return n;
}

int checkpoint_state_read(const char *dir, char ***paths, char *err, size_t errlen) {
    return read_state(dir, paths, NULL, 0, err, errlen);
}

/* The step N of ".../model.ckpt-N" (-1 when the name has no numeric suffix). */
static int64_t step_of(const char *prefix) {
    const char *dash = strrchr(prefix, '-');
    if (!dash || !dash[1]) return -1;
    int64_t s = 0;
    for (const char *p = dash + 1; *p; p++) {
        if (*p < '0' || *p > '9' || s > (INT64_MAX - 9) / 10) return -1;
        s = s * 10 + (*p - '0');
    }
    return s;
}

static int file_exists(const char *path) {
    struct stat st;
    char ignore[512];
    return fs_stat(path, &st, ignore, sizeof ignore) == 0;
}

static int index_exists(const char *prefix) {
    char path[4200];
    snprintf(path, sizeof path, "%s.index", prefix);
    return file_exists(path);
}

/* Deletes a checkpoint's files: the index first, so it stops counting as complete. */
static void remove_checkpoint(const char *prefix) {
    char path[4200], ignore[512];
    snprintf(path, sizeof path, "%s.index", prefix);
    fs_delete(path, ignore, sizeof ignore);
    bundle_data_filename(path, sizeof path, prefix, 0, 1);
    fs_delete(path, ignore, sizeof ignore);
    snprintf(path, sizeof path, "%s.meta", prefix);
    fs_delete(path, ignore, sizeof ignore);
}

/* Text-format CheckpointState with paths relative to dir (basenames). */
static int write_state(const char *dir, char **paths, int n, char *err, size_t errlen) {
    PbBuf text;
    pb_buf_init(&text);
    char line[4608];
    for (int i = -1; i < n; i++) {
        const char *p = paths[i < 0 ? n - 1 : i];
        const char *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        snprintf(line, sizeof line, "%s: \"%s\"\n",
                 i < 0 ? "model_checkpoint_path" : "all_model_checkpoint_paths", base);
        pb_put_raw(&text, line, strlen(line));
    }
    char *file = join_path(dir, STATE_FILE);
    int rc = (!file || text.oom) ? (snprintf(err, errlen, "out of memory"), -1)
                                 : atomic_file_write_all(file, text.data, text.len, err, errlen);
    free(file);
    pb_buf_free(&text);
    return rc;
}

/* A temporary file (".<name>.tmp-<pid>-<n>", io/atomic_file.h; "<name>.tmp-<pid>-<n>" before
 * 2026-11-28) of a checkpoint or state file that another process was writing when it died
 * (SIGKILL, preemption): never renamed, never read. */
static int is_stale_temp(const char *name, void *ctx) {
    if (name[0] == '.') name++;
    const char *t = strstr(name, ".tmp-");
    if (!t || (strncmp(name, CKPT_BASENAME "-", strlen(CKPT_BASENAME) + 1) != 0 &&
               strncmp(name, STATE_FILE ".tmp-", strlen(STATE_FILE) + 5) != 0))
        return 0;
    char *end;
    long pid = strtol(t + 5, &end, 10);
    return end != t + 5 && *end == '-' && pid != *(const long *)ctx;
}

/* Removes those, so that a job dir on a preemptible machine does not fill up with them. */
static void remove_stale_temps(const char *dir) {
    long me = (long)getpid();
    char **names, ignore[256];
    int n = dirs_list(dir, is_stale_temp, &me, &names, ignore, sizeof ignore);
    for (int i = 0; i < n; i++) {
        char *path = join_path(dir, names[i]);
        if (path) fs_delete(path, ignore, sizeof ignore);
        free(path);
    }
    dirs_names_free(names, n < 0 ? 0 : n); /* a remote listing allocates even when empty */
}

void checkpoint_prefix(char *out, size_t cap, const char *dir, int64_t step) {
    snprintf(out, cap, "%s/%s-%lld", dir, CKPT_BASENAME, (long long)step);
}

int checkpoint_save(const char *dir, int64_t step, const TfTensor *tensors, int n, int keep_max,
                    char *prefix_out, size_t prefix_cap, char *err, size_t errlen) {
    if (step < 0) return snprintf(err, errlen, "checkpoint: negative step %lld", (long long)step), -1;
    if (dirs_make(dir, err, errlen)) return -1;
    char prefix[4200];
    checkpoint_prefix(prefix, sizeof prefix, dir, step);
    if (bundle_write(prefix, tensors, n, err, errlen)) return -1;

    /* The list: previous checkpoints that still exist (not this step), then this one. */
    char **old;
    int nold = checkpoint_state_read(dir, &old, err, errlen);
    if (nold < 0) nold = 0;              /* a broken state file is replaced by a good one */
    char **list = malloc((size_t)(nold + 1) * sizeof *list);
    if (!list) {
        checkpoint_paths_free(old, nold);
        return snprintf(err, errlen, "checkpoint: out of memory"), -1;
    }
    int n_list = 0;
    for (int i = 0; i < nold; i++) {
        if (strcmp(old[i], prefix) != 0 && index_exists(old[i])) list[n_list++] = old[i];
        else free(old[i]);
    }
    free(old);
    list[n_list++] = strdup(prefix);
    int drop = (keep_max > 0 && n_list > keep_max) ? n_list - keep_max : 0;
    int rc = list[n_list - 1] ? write_state(dir, list + drop, n_list - drop, err, errlen)
                              : (snprintf(err, errlen, "checkpoint: out of memory"), -1);
    /* Only after the state file names the new set are the old files deleted. */
    if (rc == 0) {
        for (int i = 0; i < drop; i++) remove_checkpoint(list[i]);
        remove_stale_temps(dir);
    }
    checkpoint_paths_free(list, n_list);
    if (rc == 0 && prefix_out) snprintf(prefix_out, prefix_cap, "%s", prefix);
    return rc;
}

int checkpoint_write_meta(const char *prefix, const void *meta_graph, size_t n, char *err,
                          size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s.meta", prefix);
    return atomic_file_write_all(path, meta_graph, n, err, errlen);
}

/* The step of a name is_index_name accepted ("model.ckpt-<step>.index"). */
static int64_t index_step(const char *name) {
    return strtoll(name + strlen(CKPT_BASENAME) + 1, NULL, 10);
}

static int is_index_name(const char *name, void *ctx) {
    (void)ctx;
    size_t n = strlen(name), b = strlen(CKPT_BASENAME);
    if (n <= b + 7 || strncmp(name, CKPT_BASENAME "-", b + 1) != 0) return 0;
    if (strcmp(name + n - 6, ".index") != 0) return 0;
    for (size_t i = b + 1; i < n - 6; i++)
        if (name[i] < '0' || name[i] > '9') return 0;
    return 1;
}

/* Whether the checkpoint at prefix is whole: its index parses and its data files are long
 * enough for every entry. why gets the reason when it is not. */
static int complete(const char *prefix, char *why, size_t whylen) {
    BundleReader *r = bundle_open(prefix, why, whylen);
    if (!r) return 0;
    int ok = bundle_check_data_files(r, why, whylen) == 0;
    bundle_close(r);
    return ok;
}

/* What dir holds besides the checkpoint `skip_step` names: the newest complete checkpoint (its
 * prefix in best, "" for none), whether any checkpoint index is there (complete or not: a data
 * file without one is what a save killed before its index leaves, never a checkpoint), and the
 * newest index newer than best that is incomplete (in newer, with why in newer_why; "" for
 * none). -1 (err set) when dir cannot be listed. */
static int scan_checkpoints(const char *dir, int64_t skip_step, char *best, size_t best_cap,
                            int *any_index, char *newer, size_t newer_cap, char *newer_why,
                            size_t why_cap, char *err, size_t errlen) {
    char **names;
    best[0] = newer[0] = 0;
    *any_index = 0;
    int n = dirs_list(dir, NULL, NULL, &names, err, errlen);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) *any_index |= is_index_name(names[i], NULL);
    /* newest first: the highest step not yet tried, until one is complete */
    for (;;) {
        int at = -1;
        int64_t top = -1;
        for (int i = 0; i < n; i++)
            if (names[i] && is_index_name(names[i], NULL) && index_step(names[i]) > top)
                top = index_step(names[i]), at = i;
        if (at < 0) break;
        char prefix[4200], why[512];
        snprintf(prefix, sizeof prefix, "%s/%.*s", dir, (int)(strlen(names[at]) - 6), names[at]);
        free(names[at]);
        names[at] = NULL;
        if (top == skip_step) continue;
        if (complete(prefix, why, sizeof why)) {
            snprintf(best, best_cap, "%s", prefix);
            break;
        }
        if (!newer[0]) {
            snprintf(newer, newer_cap, "%s", prefix);
            snprintf(newer_why, why_cap, "%s", why);
        }
    }
    dirs_names_free(names, n);
    return 0;
}

int checkpoint_latest(const char *dir, char *prefix_out, size_t prefix_cap, int64_t *step,
                      char *warning, size_t warnlen, char *err, size_t errlen) {
    struct stat st;
    char why[1024];
    warning[0] = 0;
    if (fs_stat(dir, &st, why, sizeof why) != 0) {
        /* a bucket that cannot be read must not look like a fresh job dir */
        if (errno == ENOENT || !fs_is_remote(dir)) return 0;
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    /* TF's latest_checkpoint: what the state file names, as a user may have edited it */
    char **listed, named[4200], state_err[1024];
    int nl = read_state(dir, &listed, named, sizeof named, state_err, sizeof state_err);
    if (nl < 0) {
        snprintf(warning, warnlen, "%s: the checkpoint files are used instead", state_err);
        named[0] = 0;
    } else {
        checkpoint_paths_free(listed, nl);
        if (named[0] && complete(named, why, sizeof why)) {
            snprintf(prefix_out, prefix_cap, "%s", named);
            if (step) *step = step_of(named);
            return 1;
        }
    }
    /* the named one is unusable, or none is named: the newest complete one there */
    char best[4200], newer[4200], newer_why[512];
    int any_index;
    if (scan_checkpoints(dir, named[0] ? step_of(named) : -1, best, sizeof best, &any_index,
                         newer, sizeof newer, newer_why, sizeof newer_why, err, errlen) != 0)
        return -1;
    if (named[0] && !best[0] && !any_index) {   /* nothing left to protect: TF starts afresh */
        snprintf(warning, warnlen, "%s, named by the checkpoint file, is gone (%s) and no "
                 "checkpoint is left: training starts afresh", named, why);
        return 0;
    }
    if (!best[0] && !any_index) return 0;   /* a fresh job dir */
    if (!best[0]) {   /* never afresh over checkpoint files: TF fails on a cut one too */
        snprintf(err, errlen, "%s: no complete checkpoint to resume from: %s is missing or "
                 "incomplete (%s); to start afresh, use another --job-dir",
                 dir, named[0] ? named : newer, named[0] ? why : newer_why);
        return -1;
    }
    const char *passed = named[0] ? named : newer;   /* "" when nothing was passed over */
    if (passed[0]) {   /* after the state file's warning, if it had one */
        size_t used = strlen(warning);
        snprintf(warning + used, warnlen - used, "%s%s%s is missing or incomplete (%s): resuming "
                 "from %s, the newest complete checkpoint there", used ? "; " : "", passed,
                 named[0] ? ", named by the checkpoint file," : "", named[0] ? why : newer_why,
                 best);
    }
    snprintf(prefix_out, prefix_cap, "%s", best);
    if (step) *step = step_of(best);
    return 1;
}
