/* export_writer.h: the job's SavedModel exports written on a thread beside an evaluation.
 *
 * The Estimator evaluates and then exports (evaluate_and_export: after checkpoints and at the
 * end). The weights do not change in between, so the snapshot (the parameters and global_step:
 * ~13 MB for the original model) is taken as the evaluation starts, and the export directories
 * (<base>/<unix seconds>/; for SageMaker, <sm_model_dir>/<unix seconds>/; for Vertex AI,
 * <aip_model_dir> itself: io/savedmodel.h, each written under a temporary name and renamed) are
 * written while the evaluation runs. Each export then gets assets.extra/signature.json and
 * assets.extra/example_instances.json (TF's place for files beside a model that the graph does
 * not load): the request contract, and lines ready for `gcloud ai-platform local predict
 * --json-instances` or our `predict`. The caller waits (export_writer_wait) before it reports the
 * export, and on every path out. A remote base (gs://, s3://) is written in the caller's thread,
 * as checkpoints are (cli/checkpoint_writer.h). */
#ifndef CLI_EXPORT_WRITER_H
#define CLI_EXPORT_WRITER_H

#include <stddef.h>

#include "cli/background_task.h"
#include "cli/model_state.h"
#include "io/savedmodel.h"

typedef struct {
    ModelSnapshot snap;      /* owned; the thread reads it */
    const SmModel *graph;    /* the caller's, kept alive until the wait */
    char dir[3][4096];       /* the export bases: <model_dir>/export/<exporter>, SM_MODEL_DIR,
                                AIP_MODEL_DIR (the last written in place, not versioned) */
    int in_place[3];         /* dir[i] is the export itself, replaced (AIP_MODEL_DIR) */
    int ndirs, keep;
    char path[3][4096];      /* the export directories written */
    const char *example_instances; /* the caller's: JSON lines of a few instances, or NULL; with
                                      the signature (JSON) they go into each export's
                                      assets.extra/ (example_instances.json, signature.json) */
    char signature[2048];
    BackgroundTask task;     /* the files' thread; pending: started and not waited for */
    double write_seconds;    /* wall time of the files (in whichever thread) */
} ExportWriter;

void export_writer_init(ExportWriter *x);

/* Snapshot of m now, then the exports under base (keep: the newest versions kept there) and,
 * unless NULL, sm_model_dir (only the newest kept) and at aip_model_dir (replacing the
 * SavedModel there), on a thread when `background` (and no dir is remote).
 * -1 (message in err) when one is still pending or the snapshot cannot be taken. */
int export_writer_start(ExportWriter *x, const Model *m, const SmModel *graph, const char *base,
                        const char *sm_model_dir, const char *aip_model_dir, int keep,
                        int background, char *err, size_t errlen);

/* Waits for the export in flight, if any: 1 when one had been started and is now complete (its
 * directories in x->path[0 .. ndirs-1]), 0 when none was pending, -1 when it failed (the message,
 * naming the file, in err). */
int export_writer_wait(ExportWriter *x, char *err, size_t errlen);

/* Waits (ignoring the outcome) and frees the snapshot. */
void export_writer_free(ExportWriter *x);

#endif
