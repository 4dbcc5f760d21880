/* event_file.c: TensorBoard event files (see event_file.h). */
#include "io/event_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "io/dirs.h"
#include "io/fs.h"
#include "io/tfrecord.h"

/* Event (event.proto) / Summary (summary.proto) / SessionLog field numbers. */
enum { EV_WALL_TIME = 1, EV_STEP = 2, EV_FILE_VERSION = 3, EV_GRAPH_DEF = 4, EV_SUMMARY = 5,
       EV_SESSION_LOG = 7, EV_META_GRAPH_DEF = 9 };
enum { MG_GRAPH_DEF = 2 };
enum { SUMMARY_VALUE = 1, SV_TAG = 1, SV_SIMPLE_VALUE = 2, SV_TENSOR = 8 };
enum { TP_DTYPE = 1, TP_TENSOR_SHAPE = 2, TP_STRING_VAL = 8, DT_STRING = 7 }; /* TensorProto */
enum { SL_STATUS = 1, SL_CHECKPOINT_PATH = 2 };

/* Each record goes to every file: the event file in dir and, when there is one, its mirror. */
struct EventWriter {
    TfrWriter *w[2];
    char path[2][4200];
    int nfiles;
    PbBuf buf;
};

static double wall_time_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

void event_encode_file_version(PbBuf *out, double wall_time) {
    pb_put_double(out, EV_WALL_TIME, wall_time);
    pb_put_string(out, EV_FILE_VERSION, "brain.Event:2");
}

void event_encode_scalars(PbBuf *out, double wall_time, int64_t step, int n,
                          const char *const *tags, const float *values) {
    PbBuf summary, value;
    pb_buf_init(&summary);
    pb_buf_init(&value);
    for (int i = 0; i < n; i++) {
        pb_buf_reset(&value);
        pb_put_string(&value, SV_TAG, tags[i]);
        pb_put_float(&value, SV_SIMPLE_VALUE, values[i]);
        pb_put_message(&summary, SUMMARY_VALUE, &value);
    }
    pb_put_double(out, EV_WALL_TIME, wall_time);
    if (step != 0) pb_put_int64(out, EV_STEP, step);
    pb_put_message(out, EV_SUMMARY, &summary);
    pb_buf_free(&summary);
    pb_buf_free(&value);
}

void event_encode_string(PbBuf *out, double wall_time, int64_t step, const char *tag,
                         const char *value) {
    PbBuf summary, val, tensor, shape;
    pb_buf_init(&summary);
    pb_buf_init(&val);
    pb_buf_init(&tensor);
    pb_buf_init(&shape);                                 /* a scalar: no dims */
    pb_put_uint64(&tensor, TP_DTYPE, DT_STRING);
    pb_put_message(&tensor, TP_TENSOR_SHAPE, &shape);
    pb_put_string(&tensor, TP_STRING_VAL, value);
    pb_put_string(&val, SV_TAG, tag);
    pb_put_message(&val, SV_TENSOR, &tensor);
    pb_put_message(&summary, SUMMARY_VALUE, &val);
    pb_put_double(out, EV_WALL_TIME, wall_time);
    if (step != 0) pb_put_int64(out, EV_STEP, step);
    pb_put_message(out, EV_SUMMARY, &summary);
    pb_buf_free(&summary);
    pb_buf_free(&val);
    pb_buf_free(&tensor);
    pb_buf_free(&shape);
}

static int write_event(EventWriter *w, char *err, size_t errlen) {
    if (w->buf.oom) {
        snprintf(err, errlen, "%s: out of memory", w->path[0]);
        return -1;
    }
    for (int i = 0; i < w->nfiles; i++)
        if (tfr_writer_write(w->w[i], w->buf.data, w->buf.len) != 0) {
            snprintf(err, errlen, "%s", tfr_writer_error(w->w[i]));
            return -1;
        }
    return 0;
}

/* Makes dir and opens w's next file in it, named for `now`. 0 ok, -1 with err. */
static int open_file(EventWriter *w, const char *dir, double now, char *err, size_t errlen) {
    if (dirs_make(dir, err, errlen)) return -1;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    char *path = w->path[w->nfiles];
    /* events_writer.cc: events.out.tfevents.%010lld.<hostname> */
    snprintf(path, sizeof w->path[0], "%s/events.out.tfevents.%010lld.%s", dir, (long long)now,
             host);
    /* a second writer in the same second (e.g. a quick rerun) must not truncate the first */
    size_t base = strlen(path);
    for (int k = 1; access(path, F_OK) == 0 && k < 1000; k++)
        snprintf(path + base, sizeof w->path[0] - base, ".%d", k);
    if (!(w->w[w->nfiles] = tfr_writer_open(path, TFR_NONE, TFR_WRITE_DIRECT, err, errlen)))
        return -1;
    w->nfiles++;
    return 0;
}

EventWriter *event_writer_open(const char *dir, char *err, size_t errlen) {
    return event_writer_open_mirrored(dir, NULL, err, errlen);
}

EventWriter *event_writer_open_mirrored(const char *dir, const char *mirror_dir, char *err,
                                        size_t errlen) {
    EventWriter *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "%s: out of memory", dir);
        return NULL;
    }
    pb_buf_init(&w->buf);
    const double now = wall_time_now();
    if (open_file(w, dir, now, err, errlen) ||
        (mirror_dir && open_file(w, mirror_dir, now, err, errlen))) {
        /* the file already made (when the mirror failed) goes too: no empty event file stays */
        char made[4200] = "", ignore[256];
        if (w->nfiles > 0) snprintf(made, sizeof made, "%s", w->path[0]);
        event_writer_close(w, ignore, sizeof ignore);
        if (made[0]) fs_delete(made, ignore, sizeof ignore);
        return NULL;
    }
    event_encode_file_version(&w->buf, now);
    if (write_event(w, err, errlen) || event_writer_flush(w, err, errlen)) {
        char ignore[256];
        event_writer_close(w, ignore, sizeof ignore);
        return NULL;
    }
    return w;
}

const char *event_writer_path(const EventWriter *w) { return w->path[0]; }

int event_writer_add_scalars(EventWriter *w, int64_t step, int n, const char *const *tags,
                             const float *values, char *err, size_t errlen) {
    pb_buf_reset(&w->buf);
    event_encode_scalars(&w->buf, wall_time_now(), step, n, tags, values);
    return write_event(w, err, errlen);
}

int event_writer_add_scalar(EventWriter *w, int64_t step, const char *tag, float value, char *err,
                            size_t errlen) {
    return event_writer_add_scalars(w, step, 1, &tag, &value, err, errlen);
}

int event_writer_add_string(EventWriter *w, int64_t step, const char *tag, const char *value,
                            char *err, size_t errlen) {
    pb_buf_reset(&w->buf);
    event_encode_string(&w->buf, wall_time_now(), step, tag, value);
    return write_event(w, err, errlen);
}

int event_writer_add_session_log(EventWriter *w, int64_t step, SessionLogStatus status,
                                 const char *checkpoint_path, char *err, size_t errlen) {
    PbBuf log;
    pb_buf_init(&log);
    pb_put_uint64(&log, SL_STATUS, (uint64_t)status);
    if (checkpoint_path) pb_put_string(&log, SL_CHECKPOINT_PATH, checkpoint_path);
    pb_buf_reset(&w->buf);
    pb_put_double(&w->buf, EV_WALL_TIME, wall_time_now());
    if (step != 0) pb_put_int64(&w->buf, EV_STEP, step);
    pb_put_message(&w->buf, EV_SESSION_LOG, &log);
    pb_buf_free(&log);
    return write_event(w, err, errlen);
}

int event_writer_add_meta_graph(EventWriter *w, const void *meta_graph, size_t n, char *err,
                                size_t errlen) {
    PbReader r;
    PbField f;
    const uint8_t *graph = NULL;
    size_t graph_len = 0;
    int k;
    pb_reader_init(&r, meta_graph, n);
    while ((k = pb_next(&r, &f)) == 1)
        if (f.field == MG_GRAPH_DEF && f.wire_type == PB_LEN) graph = f.data, graph_len = f.len;
    if (k < 0 || !graph) {
        snprintf(err, errlen, "%s: the meta graph to log is malformed or has no GraphDef",
                 w->path[0]);
        return -1;
    }
    double now = wall_time_now();
    pb_buf_reset(&w->buf);
    pb_put_double(&w->buf, EV_WALL_TIME, now);
    pb_put_bytes(&w->buf, EV_GRAPH_DEF, graph, graph_len);
    if (write_event(w, err, errlen)) return -1;
    pb_buf_reset(&w->buf);
    pb_put_double(&w->buf, EV_WALL_TIME, now);
    pb_put_bytes(&w->buf, EV_META_GRAPH_DEF, meta_graph, n);
    return write_event(w, err, errlen);
}

int event_writer_flush(EventWriter *w, char *err, size_t errlen) {
    for (int i = 0; i < w->nfiles; i++)
        if (tfr_writer_flush(w->w[i]) != 0) {
            snprintf(err, errlen, "%s", tfr_writer_error(w->w[i]));
            return -1;
        }
    return 0;
}

int event_writer_close(EventWriter *w, char *err, size_t errlen) {
    if (!w) return 0;
    int rc = 0;
    for (int i = 0; i < w->nfiles; i++) {   /* every file closed; the first error kept */
        char later[256];
        if (tfr_writer_close(w->w[i], rc ? later : err, rc ? sizeof later : errlen) != 0) rc = -1;
    }
    pb_buf_free(&w->buf);
    free(w);
    return rc;
}
