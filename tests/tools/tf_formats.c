/* tf_formats.c (tool_tf_formats): drives io/'s TF-format writers and readers for
 * tests/tf/test_tf_formats.py, which checks the results with TensorFlow itself.
 *
 *   tool_tf_formats checkpoint MANIFEST DIR STEP KEEP    checkpoint_save of the manifest's tensors,
 *                                                        and model.ckpt-STEP.meta of the original CNN
 *   tool_tf_formats graph-events MANIFEST DIR            an event file with the CNN's graph
 *   tool_tf_formats savedmodel MANIFEST EXPORT_DIR       the original CNN exported with them
 *   tool_tf_formats events DIR STEP:TAG=V[,TAG=V]...     an event file; prints its path
 *   tool_tf_formats latest DIR                           prints "STEP PREFIX" or "none"
 *   tool_tf_formats dump PREFIX OUTDIR                   a bundle's tensors -> OUTDIR/manifest.txt
 *
 * MANIFEST: one tensor per line, "NAME DTYPE RANK D0 .. Dn-1 FILE" with DTYPE float|int64 and
 * FILE holding the raw little-endian elements (a path relative to the manifest's directory).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/event_file.h"
#include "io/savedmodel.h"
#include "io/tensor_bundle.h"
#include "support/test_files.h"

static int die(const char *msg) {
    fprintf(stderr, "tool_tf_formats: %s\n", msg);
    return 1;
}

typedef struct {
    TfTensor t[256];
    char names[256][128];
    int n;
} Manifest;

static int read_manifest(const char *path, Manifest *m) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    char dtype[16], file[1024];
    m->n = 0;
    while (m->n < 256 && fscanf(f, "%127s %15s %d", m->names[m->n], dtype, &m->t[m->n].rank) == 3) {
        TfTensor *t = &m->t[m->n];
        t->name = m->names[m->n];
        t->dtype = !strcmp(dtype, "int64") ? TF_DT_INT64 : TF_DT_FLOAT;
        for (int d = 0; d < t->rank; d++)
            if (fscanf(f, "%lld", (long long *)&t->shape[d]) != 1) goto bad;
        if (fscanf(f, "%1023s", file) != 1) goto bad;
        char full[5200];
        snprintf(full, sizeof full, "%s/%s", dir, file);
        size_t n;
        t->data = test_read_file(full, &n);
        if (!t->data) goto bad;
        t->nbytes = n;
        m->n++;
    }
    fclose(f);
    return 0;
bad:
    fclose(f);
    return -1;
}

/* The original CNN's MetaGraphDef over the manifest's weights and global_step (other tensors,
 * e.g. optimizer slots, are not graph variables). */
static int cnn_meta_graph(const Manifest *m, PbBuf *out, char *err, size_t errlen) {
    SmModel model;
    SmLayer layers[8];
    sm_model_original_cnn(&model, layers);
    TfTensor vars[16];
    int n = 0;
    for (int i = 0; i < m->n && n < 16; i++) {
        const char *name = m->t[i].name, *slash = strrchr(name, '/');
        if (!strcmp(name, "global_step") ||
            (slash && (!strcmp(slash, "/kernel") || !strcmp(slash, "/bias"))))
            vars[n++] = m->t[i];
    }
    return savedmodel_encode_meta_graph(&model, vars, n, out, err, errlen);
}

static int cmd_events(int argc, char **argv) {
    char err[512];
    EventWriter *w = event_writer_open(argv[0], err, sizeof err);
    if (!w) return die(err);
    for (int i = 1; i < argc; i++) {
        char buf[1024], *save = NULL;
        snprintf(buf, sizeof buf, "%s", argv[i]);
        char *colon = strchr(buf, ':');
        if (!colon) return die("events: expected STEP:TAG=V,...");
        *colon = 0;
        long long step = atoll(buf);
        const char *tags[16];
        float vals[16];
        int n = 0;
        for (char *kv = strtok_r(colon + 1, ",", &save); kv && n < 16; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq) return die("events: expected TAG=V");
            *eq = 0;
            tags[n] = kv;
            vals[n++] = strtof(eq + 1, NULL);
        }
        if (event_writer_add_scalars(w, step, n, tags, vals, err, sizeof err)) return die(err);
    }
    if (event_writer_add_session_log(w, 0, SESSION_LOG_START, NULL, err, sizeof err)) return die(err);
    printf("%s\n", event_writer_path(w));
    return event_writer_close(w, err, sizeof err) ? die(err) : 0;
}

static int cmd_dump(const char *prefix, const char *outdir) {
    char err[512], path[4200];
    BundleReader *r = bundle_open(prefix, err, sizeof err);
    if (!r) return die(err);
    snprintf(path, sizeof path, "%s/manifest.txt", outdir);
    FILE *mf = fopen(path, "w");
    if (!mf) return die("cannot write manifest");
    for (int i = 0; i < bundle_num_entries(r); i++) {
        const BundleEntry *e = bundle_entry_at(r, i);
        if (e->dtype == TF_DT_STRING) continue;     /* e.g. TF2's object graph: not ours */
        void *buf = malloc(e->size + 1);
        if (bundle_read(r, e, buf, e->size, err, sizeof err)) return die(err);
        snprintf(path, sizeof path, "%s/t%d.bin", outdir, i);
        if (test_write_file(path, buf, e->size)) return die("cannot write tensor");
        free(buf);
        fprintf(mf, "%s %s %d", e->name, tf_dtype_name(e->dtype), e->rank);
        for (int d = 0; d < e->rank; d++) fprintf(mf, " %lld", (long long)e->shape[d]);
        fprintf(mf, " t%d.bin\n", i);
    }
    fclose(mf);
    bundle_close(r);
    return 0;
}

int main(int argc, char **argv) {
    char err[512];
    if (argc < 3) return die("usage: see tests/tools/tf_formats.c");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "events")) return cmd_events(argc - 2, argv + 2);
    if (!strcmp(cmd, "dump") && argc == 4) return cmd_dump(argv[2], argv[3]);
    if (!strcmp(cmd, "latest")) {
        char prefix[4200];
        int64_t step;
        char warning[2048];
        int rc = checkpoint_latest(argv[2], prefix, sizeof prefix, &step, warning, sizeof warning,
                                   err, sizeof err);
        if (warning[0]) fprintf(stderr, "warning: %s\n", warning);
        if (rc < 0) return die(err);
        if (rc == 0) printf("none\n");
        else printf("%lld %s\n", (long long)step, prefix);
        return 0;
    }
    static Manifest m;
    if (read_manifest(argv[2], &m)) return die("cannot read the manifest");
    if (!strcmp(cmd, "checkpoint") && argc == 6) {
        char prefix[4200];
        if (checkpoint_save(argv[3], atoll(argv[4]), m.t, m.n, atoi(argv[5]), prefix, sizeof prefix,
                            err, sizeof err))
            return die(err);
        PbBuf meta;
        pb_buf_init(&meta);
        if (cnn_meta_graph(&m, &meta, err, sizeof err) ||
            checkpoint_write_meta(prefix, meta.data, meta.len, err, sizeof err))
            return die(err);
        pb_buf_free(&meta);
        printf("%s\n", prefix);
        return 0;
    }
    if (!strcmp(cmd, "graph-events") && argc == 4) {
        /* argv[2] is the manifest here, argv[3] the directory */
        PbBuf meta;
        pb_buf_init(&meta);
        EventWriter *w = event_writer_open(argv[3], err, sizeof err);
        if (!w || cnn_meta_graph(&m, &meta, err, sizeof err) ||
            event_writer_add_meta_graph(w, meta.data, meta.len, err, sizeof err))
            return die(err);
        printf("%s\n", event_writer_path(w));
        pb_buf_free(&meta);
        return event_writer_close(w, err, sizeof err) ? die(err) : 0;
    }
    if (!strcmp(cmd, "savedmodel") && argc == 4) {
        SmModel model;
        SmLayer layers[8];
        sm_model_original_cnn(&model, layers);
        if (savedmodel_write(argv[3], &model, m.t, m.n, err, sizeof err)) return die(err);
        return 0;
    }
    return die("unknown command or wrong arguments");
}
