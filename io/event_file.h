/* event_file.h: TensorBoard event files, as Estimator's summary writers leave them.
 *
 * <dir>/events.out.tfevents.<10-digit unix seconds>.<hostname>: TFRecord framing (io/tfrecord.h)
 * around serialized tensorflow.Event protos. The first record is Event{wall_time,
 * file_version: "brain.Event:2"}, flushed at once; scalars are Event{wall_time, step,
 * summary{value{tag, simple_value}}} (user-expectations.md §3.5).
 * Estimator tags: training dir `loss`, `global_step/sec`; eval dir (<model_dir>/eval) `accuracy`,
 * `loss`, all at the global step.
 *
 * Event files grow while training (TensorBoard reads them live), so they are appended to, not
 * written under a temporary name; every record is complete once event_writer_flush returns.
 */
#ifndef IO_EVENT_FILE_H
#define IO_EVENT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "io/pb_wire.h"

typedef struct EventWriter EventWriter;

/* SessionLog.status values (event.proto). */
typedef enum {
    SESSION_LOG_START = 1,
    SESSION_LOG_STOP = 2,
    SESSION_LOG_CHECKPOINT = 3,
} SessionLogStatus;

/* Creates dir (and its parents) if missing, opens a new event file in it and writes the
 * file_version record. NULL on error (message names the path). */
EventWriter *event_writer_open(const char *dir, char *err, size_t errlen);
/* The same, and a second file of the same name and records in mirror_dir (unless NULL): Vertex
 * AI's TensorBoard reads AIP_TENSORBOARD_LOG_DIR while the Estimator's layout keeps the job
 * dir's. */
EventWriter *event_writer_open_mirrored(const char *dir, const char *mirror_dir, char *err,
                                        size_t errlen);
/* The (first) file's full path. */
const char *event_writer_path(const EventWriter *w);

/* One Event at `step` holding n scalar summary values (Estimator writes eval metrics this way).
 * 0 ok, -1 error. */
int event_writer_add_scalars(EventWriter *w, int64_t step, int n, const char *const *tags,
                             const float *values, char *err, size_t errlen);
int event_writer_add_scalar(EventWriter *w, int64_t step, const char *tag, float value, char *err,
                            size_t errlen);
/* One Event at `step` holding a string tensor summary value (TensorProto{DT_STRING, scalar,
 * string_val}): the Estimator writes the evaluated checkpoint's path so, tag `checkpoint_path`. */
int event_writer_add_string(EventWriter *w, int64_t step, const char *tag, const char *value,
                            char *err, size_t errlen);
/* Event{step, session_log{status, checkpoint_path (may be NULL)}}: START when training starts,
 * CHECKPOINT at each save (with the checkpoint prefix), as Estimator's hooks do. */
int event_writer_add_session_log(EventWriter *w, int64_t step, SessionLogStatus status,
                                 const char *checkpoint_path, char *err, size_t errlen);

/* The graph, as Estimator's summary writer adds it at session creation: one Event with
 * graph_def (the GraphDef inside meta_graph) and one with meta_graph_def (the whole
 * MetaGraphDef, e.g. from savedmodel_encode_meta_graph). TensorBoard's Graphs tab shows it.
 * 0 ok, -1 error (also when meta_graph has no GraphDef). */
int event_writer_add_meta_graph(EventWriter *w, const void *meta_graph, size_t n, char *err,
                                size_t errlen);

/* Pushes buffered records to the file (TensorBoard sees them). 0 ok, -1 error. */
int event_writer_flush(EventWriter *w, char *err, size_t errlen);
/* Flushes and closes; w is freed either way. 0 ok, -1 error. */
int event_writer_close(EventWriter *w, char *err, size_t errlen);

/* The serialized Event payloads (no framing), appended to out; exposed for tests against the
 * vectors of user-expectations.md §3.5. */
void event_encode_file_version(PbBuf *out, double wall_time);
void event_encode_scalars(PbBuf *out, double wall_time, int64_t step, int n,
                          const char *const *tags, const float *values);
void event_encode_string(PbBuf *out, double wall_time, int64_t step, const char *tag,
                         const char *value);

#endif
