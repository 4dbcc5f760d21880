/* checkpoint_writer.c: see checkpoint_writer.h. */
#include "cli/checkpoint_writer.h"

#include <stdio.h>
#include <string.h>

#include "cli/wall_clock.h"
#include "io/checkpoint.h"
#include "io/fs.h"

void checkpoint_writer_init(CheckpointWriter *w) { memset(w, 0, sizeof *w); }

/* The files of one save: the checkpoint, then its .meta (optional to readers: written after). */
static void write_files(CheckpointWriter *w) {
    const double t0 = wall_seconds();
    BackgroundTask *t = &w->task;
    t->rc = checkpoint_save(w->dir, w->step, w->snap.tensors, w->snap.n, w->keep_max, NULL, 0,
                            t->err, sizeof t->err);
    if (t->rc == 0 && w->meta_len > 0)
        t->rc = checkpoint_write_meta(w->prefix, w->meta, w->meta_len, t->err, sizeof t->err);
    w->write_seconds = wall_seconds() - t0;
}

static void *writer_thread(void *arg) {
    write_files(arg);
    return NULL;
}

int checkpoint_writer_wait(CheckpointWriter *w, char *err, size_t errlen) {
    return background_task_wait(&w->task, err, errlen);
}

int checkpoint_writer_start(CheckpointWriter *w, const Model *m, const ModelConfig *cfg,
                            const char *dir, int keep_max, const void *meta, size_t meta_len,
                            int background, char *err, size_t errlen) {
    if (w->task.pending) {
        snprintf(err, errlen, "checkpoint: the save of %s is still pending", w->prefix);
        return -1;
    }
    /* the first save allocates the host copies; later ones read into them again (no
     * allocation, no first-touch page faults: ~40 MB for the original model) */
    if (w->snap.tensors ? model_snapshot_refresh(m, cfg, &w->snap, err, errlen) != 0
                        : model_snapshot_take(m, cfg, &w->snap, err, errlen) != 0) {
        model_snapshot_free(&w->snap);
        return -1;
    }
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->keep_max = keep_max;
    w->meta = meta;
    w->meta_len = meta_len;
    w->step = w->snap.global_step;
    checkpoint_prefix(w->prefix, sizeof w->prefix, dir, w->step);
    background_task_start(&w->task, writer_thread, w, background && !fs_is_remote(dir));
    return 0;
}

void checkpoint_writer_free(CheckpointWriter *w) {
    char ignore[sizeof w->task.err];
    checkpoint_writer_wait(w, ignore, sizeof ignore);
    model_snapshot_free(&w->snap);
}
