/* export_writer.c: see export_writer.h. */
#include "cli/export_writer.h"

#include <stdio.h>
#include <string.h>

#include "cli/wall_clock.h"
#include "io/atomic_file.h"
#include "io/dirs.h"
#include "io/fs.h"

void export_writer_init(ExportWriter *x) { memset(x, 0, sizeof *x); }

/* <export>/assets.extra/: signature.json, and example_instances.json when there are some. */
static int write_assets_extra(const ExportWriter *x, const char *export_dir, char *err,
                              size_t errlen) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/assets.extra", export_dir);
    snprintf(path, sizeof path, "%s/signature.json", dir);
    if (dirs_make(dir, err, errlen) != 0 ||
        atomic_file_write_all(path, x->signature, strlen(x->signature), err, errlen) != 0)
        return -1;
    if (!x->example_instances) return 0;
    snprintf(path, sizeof path, "%s/example_instances.json", dir);
    return atomic_file_write_all(path, x->example_instances, strlen(x->example_instances), err,
                                 errlen);
}

static void *write_exports(void *arg) {
    ExportWriter *x = arg;
    BackgroundTask *t = &x->task;
    const double t0 = wall_seconds();
    for (int i = 0; i < x->ndirs && t->rc == 0; i++) {
        if (x->in_place[i]) {
            t->rc = savedmodel_write_over(x->dir[i], x->graph, x->snap.tensors, x->snap.n, t->err,
                                          sizeof t->err);
            _Static_assert(sizeof x->path[i] == sizeof x->dir[i], "dir and path alike");
            memcpy(x->path[i], x->dir[i], sizeof x->path[i]); /* snprintf: -Wrestrict at -O1 */
        } else {
            /* dir 0 is the job's export base; a versioned one after it is SageMaker's, whose
             * TF Serving serves the newest version: older ones would only grow model.tar.gz
             * (one per exporting evaluation) */
            const int keep = i == 0 ? x->keep : 1;
            t->rc = savedmodel_export_timestamped(x->dir[i], x->graph, x->snap.tensors, x->snap.n,
                                                  keep, x->path[i], sizeof x->path[i], t->err,
                                                  sizeof t->err);
        }
        if (t->rc == 0) t->rc = write_assets_extra(x, x->path[i], t->err, sizeof t->err);
    }
    x->write_seconds = wall_seconds() - t0;
    return NULL;
}

int export_writer_start(ExportWriter *x, const Model *m, const SmModel *graph, const char *base,
                        const char *sm_model_dir, const char *aip_model_dir, int keep,
                        int background, char *err, size_t errlen) {
    if (x->task.pending) {
        snprintf(err, errlen, "export: the export to %s is still pending", x->dir[0]);
        return -1;
    }
    model_snapshot_free(&x->snap);
    if (model_snapshot_take(m, NULL, &x->snap, err, errlen) != 0) {
        model_snapshot_free(&x->snap);
        return -1;
    }
    if (savedmodel_signature_json(graph, x->signature, sizeof x->signature, err, errlen) < 0)
        return -1;
    x->graph = graph;
    x->keep = keep;
    x->ndirs = 0;
    memset(x->in_place, 0, sizeof x->in_place);
    snprintf(x->dir[x->ndirs++], sizeof x->dir[0], "%s", base);
    if (sm_model_dir) snprintf(x->dir[x->ndirs++], sizeof x->dir[0], "%s", sm_model_dir);
    if (aip_model_dir) {
        x->in_place[x->ndirs] = 1;
        snprintf(x->dir[x->ndirs++], sizeof x->dir[0], "%s", aip_model_dir);
    }
    int remote = 0;
    for (int i = 0; i < x->ndirs; i++) remote |= fs_is_remote(x->dir[i]);
    background_task_start(&x->task, write_exports, x, background && !remote);
    return 0;
}

int export_writer_wait(ExportWriter *x, char *err, size_t errlen) {
    return background_task_wait(&x->task, err, errlen);
}

void export_writer_free(ExportWriter *x) {
    char ignore[sizeof x->task.err];
    export_writer_wait(x, ignore, sizeof ignore);
    model_snapshot_free(&x->snap);
}
