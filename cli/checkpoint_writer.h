/* checkpoint_writer.h: checkpoints written on a background thread while training goes on.
 *
 * A save has two parts. The snapshot (host copies of the parameters, the optimizer slots and the
 * step: cli/model_state.h) must be taken at the step being saved, and is cheap: a device-to-host
 * copy of ~40 MB for the original model. The files (io/checkpoint.h: data and index, the
 * `checkpoint` state file, keep-max deletions, then the .meta beside them) are the slow part:
 * ~0.1 s of writes and fsyncs each, twice in the original job (model.ckpt-0 and the last step),
 * which the job's wall time otherwise waits for. Here the caller takes the snapshot and goes on;
 * a thread writes the files.
 *
 * At most one save is in flight: the caller waits for the previous one before it starts the next
 * (starting with one pending is an error), so the saves reach the disk in step order and keep-max
 * sees them in that order. The caller waits
 * (checkpoint_writer_wait) before it reports a save as done and before it exits, on every path,
 * so no run ends with a save half-written; what the files guarantee if the process is killed
 * during one is io/checkpoint.h's (the previous checkpoint stays complete and findable).
 *
 * A model dir on gs:// or s3:// is written in the caller's thread: the remote file systems share
 * one connection and one credential cache (io/http.c, io/gcs_auth.c) that are not for two threads.
 */
#ifndef CLI_CHECKPOINT_WRITER_H
#define CLI_CHECKPOINT_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "cli/background_task.h"
#include "cli/model_state.h"

typedef struct {
    /* the save in flight, or the last one */
    ModelSnapshot snap;     /* owned, kept for the next save; the thread reads it (tensors
                             * point into it) */
    char dir[4096];
    int keep_max;
    const void *meta;       /* the MetaGraphDef for <prefix>.meta: the caller's, kept alive */
    size_t meta_len;
    char prefix[4200];      /* <dir>/model.ckpt-<step> */
    int64_t step;
    BackgroundTask task;    /* the files' thread; pending: a save started and not waited for */
    double write_seconds;   /* wall time of the files of the last save (in whichever thread) */
} CheckpointWriter;

void checkpoint_writer_init(CheckpointWriter *w);

/* Waits for the save in flight, if any. Returns 1 when one had been started and has now
 * completed (its step and prefix stay in w), 0 when none was pending, -1 when it failed (the
 * message, naming the file, in err). */
int checkpoint_writer_wait(CheckpointWriter *w, char *err, size_t errlen);

/* Saves <dir>/model.ckpt-<step of m> keeping keep_max, then <prefix>.meta (meta_len bytes; none
 * when 0): the snapshot now, the files on a thread (in this one when `background` is 0 or dir is
 * remote). cfg is what m was created with (the Adam powers). -1 (message in err) when a save is
 * still pending or the snapshot cannot be taken; otherwise 0, with the prefix in w->prefix, and
 * the outcome of the files from the next checkpoint_writer_wait. Every save of one writer must be
 * of the same model with the same cfg: the snapshot's host copies are kept and refilled. */
int checkpoint_writer_start(CheckpointWriter *w, const Model *m, const ModelConfig *cfg,
                            const char *dir, int keep_max, const void *meta, size_t meta_len,
                            int background, char *err, size_t errlen);

/* Waits for a save in flight (its outcome is dropped: wait first to see it), then frees the
 * snapshot. */
void checkpoint_writer_free(CheckpointWriter *w);

#endif /* CLI_CHECKPOINT_WRITER_H */
