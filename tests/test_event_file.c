/* test_event_file.c: TensorBoard event files: payload and framing test vectors
 * (user-expectations.md §3.5), and the structure of a written file read back record by record. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/event_file.h"
#include "io/tfrecord.h"
#include "support/check_run.h"
#include "support/test_files.h"

static void hex_to_bytes(const char *hex, uint8_t *out, size_t *n) {
    *n = 0;
    for (const char *p = hex; p[0] && p[1]; p += 2) {
        unsigned v;
        sscanf(p, "%2x", &v);
        out[(*n)++] = (uint8_t)v;
    }
}

START_TEST(test_payload_vectors) {
    uint8_t want[128], hdr[12];
    size_t n;
    PbBuf b;
    pb_buf_init(&b);
    event_encode_file_version(&b, 1500000000.0);
    hex_to_bytes("09000000c00b5ad6411a0d627261696e2e4576656e743a32", want, &n);
    ck_assert_uint_eq(b.len, n);
    ck_assert_mem_eq(b.data, want, n);
    uint32_t crc = tfr_frame_header(hdr, b.data, b.len);
    hex_to_bytes("1800000000000000a37f4b22", want, &n);
    ck_assert_mem_eq(hdr, want, 12);
    ck_assert_uint_eq(crc, 0x64a4a94cu);                  /* stored as 4c a9 a4 64 */

    pb_buf_reset(&b);
    const char *tag = "loss";
    float v = 0.5f;
    event_encode_scalars(&b, 1500000001.0, 100, 1, &tag, &v);
    hex_to_bytes("09000040c00b5ad64110642a0d0a0b0a046c6f7373150000003f", want, &n);
    ck_assert_uint_eq(b.len, n);
    ck_assert_mem_eq(b.data, want, n);
    crc = tfr_frame_header(hdr, b.data, b.len);
    hex_to_bytes("1a00000000000000129bd82d", want, &n);
    ck_assert_mem_eq(hdr, want, 12);
    ck_assert_uint_eq(crc, 0x7ed77687u);                  /* 87 76 d7 7e */
    pb_buf_free(&b);
}
END_TEST

/* Decoded fields of one Event record. */
typedef struct {
    double wall_time;
    int64_t step;
    char file_version[32];
    int n_values;
    char tags[4][32];
    float values[4];
    int session_status;
    char checkpoint_path[128];
} Event;

static void decode_event(const uint8_t *p, size_t n, Event *e) {
    memset(e, 0, sizeof *e);
    PbReader r;
    PbField f;
    pb_reader_init(&r, p, n);
    int k;
    while ((k = pb_next(&r, &f)) == 1) {
        if (f.field == 1) e->wall_time = pb_bits_to_double(f.fixed);
        else if (f.field == 2) e->step = (int64_t)f.varint;
        else if (f.field == 3) snprintf(e->file_version, sizeof e->file_version, "%.*s",
                                        (int)f.len, (const char *)f.data);
        else if (f.field == 5) {                                   /* Summary */
            PbReader s;
            PbField v;
            pb_reader_init(&s, f.data, f.len);
            while (pb_next(&s, &v) == 1) {
                ck_assert_int_eq(v.field, 1);
                PbReader x;
                PbField y;
                pb_reader_init(&x, v.data, v.len);
                while (pb_next(&x, &y) == 1) {
                    if (y.field == 1) snprintf(e->tags[e->n_values], 32, "%.*s", (int)y.len,
                                               (const char *)y.data);
                    if (y.field == 2) e->values[e->n_values] = pb_bits_to_float(y.fixed);
                }
                e->n_values++;
            }
        } else if (f.field == 7) {                                 /* SessionLog */
            PbReader s;
            PbField v;
            pb_reader_init(&s, f.data, f.len);
            while (pb_next(&s, &v) == 1) {
                if (v.field == 1) e->session_status = (int)v.varint;
                if (v.field == 2) snprintf(e->checkpoint_path, sizeof e->checkpoint_path, "%.*s",
                                           (int)v.len, (const char *)v.data);
            }
        }
    }
    ck_assert_int_eq(k, 0);
}

START_TEST(test_written_file_structure) {
    char dir[256], sub[300], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_events");
    snprintf(sub, sizeof sub, "%s/eval", dir);                   /* created by the writer */
    EventWriter *w = event_writer_open(sub, err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    ck_assert_ptr_nonnull(strstr(event_writer_path(w), "/eval/events.out.tfevents."));
    /* the first record is on disk at once */
    size_t n;
    uint8_t *early = test_read_file(event_writer_path(w), &n);
    ck_assert_uint_gt(n, 16);
    free(early);
    ck_assert_int_eq(event_writer_add_session_log(w, 0, SESSION_LOG_START, NULL, err, sizeof err), 0);
    ck_assert_int_eq(event_writer_add_scalar(w, 100, "loss", 2.25f, err, sizeof err), 0);
    const char *tags[2] = {"accuracy", "loss"};
    const float vals[2] = {0.9875f, 0.0425f};
    ck_assert_int_eq(event_writer_add_scalars(w, 200, 2, tags, vals, err, sizeof err), 0);
    ck_assert_int_eq(event_writer_add_session_log(w, 200, SESSION_LOG_CHECKPOINT,
                                                  "/job/model.ckpt-200", err, sizeof err), 0);
    char path[4300];
    snprintf(path, sizeof path, "%s", event_writer_path(w));
    /* a second writer in the same directory and second gets its own file */
    EventWriter *w2 = event_writer_open(sub, err, sizeof err);
    ck_assert_ptr_nonnull(w2);
    ck_assert_str_ne(event_writer_path(w2), path);
    ck_assert_int_eq(event_writer_close(w2, err, sizeof err), 0);
    ck_assert_int_eq(event_writer_close(w, err, sizeof err), 0);

    TfrReader *r = tfr_reader_open(path, TFR_NONE, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    const uint8_t *data;
    size_t len;
    Event e[5];
    int count = 0;
    while (count < 5 && tfr_reader_next(r, &data, &len) == 1) decode_event(data, len, &e[count++]);
    ck_assert_int_eq(tfr_reader_next(r, &data, &len), 0);
    tfr_reader_close(r);
    ck_assert_int_eq(count, 5);
    ck_assert_str_eq(e[0].file_version, "brain.Event:2");
    ck_assert(e[0].wall_time > 1.5e9);
    ck_assert_int_eq(e[1].session_status, SESSION_LOG_START);
    ck_assert_int_eq(e[2].step, 100);
    ck_assert_int_eq(e[2].n_values, 1);
    ck_assert_str_eq(e[2].tags[0], "loss");
    ck_assert_float_eq(e[2].values[0], 2.25f);
    ck_assert_int_eq(e[3].step, 200);
    ck_assert_int_eq(e[3].n_values, 2);
    ck_assert_str_eq(e[3].tags[1], "loss");
    ck_assert_float_eq(e[3].values[0], 0.9875f);
    ck_assert_int_eq(e[4].session_status, SESSION_LOG_CHECKPOINT);
    ck_assert_str_eq(e[4].checkpoint_path, "/job/model.ckpt-200");
    for (int i = 1; i < 5; i++) ck_assert(e[i].wall_time >= e[i - 1].wall_time);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

START_TEST(test_meta_graph_events) {
    char dir[256], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_events_graph");
    EventWriter *w = event_writer_open(dir, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    /* MetaGraphDef{meta_info_def: {}, graph_def: {node {name: "x"}}} */
    const uint8_t meta[] = {0x0a, 0x00, 0x12, 0x05, 0x0a, 0x03, 0x0a, 0x01, 'x'};
    ck_assert_int_eq(event_writer_add_meta_graph(w, meta, sizeof meta, err, sizeof err), 0);
    ck_assert_int_eq(event_writer_add_meta_graph(w, meta, 2, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "has no GraphDef"));
    char path[4300];
    snprintf(path, sizeof path, "%s", event_writer_path(w));
    ck_assert_int_eq(event_writer_close(w, err, sizeof err), 0);
    TfrReader *r = tfr_reader_open(path, TFR_NONE, err, sizeof err);
    const uint8_t *data;
    size_t len;
    ck_assert_int_eq(tfr_reader_next(r, &data, &len), 1);     /* file_version */
    for (int rec = 0; rec < 2; rec++) {
        ck_assert_int_eq(tfr_reader_next(r, &data, &len), 1);
        PbReader pr;
        PbField f;
        int found = 0;
        pb_reader_init(&pr, data, len);
        while (pb_next(&pr, &f) == 1) {
            if (rec == 0 && f.field == 4) {                    /* graph_def: the GraphDef */
                ck_assert_uint_eq(f.len, 5);
                ck_assert_mem_eq(f.data, meta + 4, 5);
                found = 1;
            }
            if (rec == 1 && f.field == 9) {                    /* meta_graph_def: all of it */
                ck_assert_uint_eq(f.len, sizeof meta);
                ck_assert_mem_eq(f.data, meta, sizeof meta);
                found = 1;
            }
        }
        ck_assert(found);
    }
    ck_assert_int_eq(tfr_reader_next(r, &data, &len), 0);
    tfr_reader_close(r);
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

/* A mirrored writer leaves two files of the same name and the same bytes; a mirror dir that
 * cannot be made fails the open, naming it. */
START_TEST(test_mirrored_files_equal) {
    char dir[256], job[300], logs[300], err[512];
    test_make_tmpdir(dir, sizeof dir, "test_events_mirror");
    snprintf(job, sizeof job, "%s/job/eval", dir);
    snprintf(logs, sizeof logs, "%s/logs/eval", dir);
    EventWriter *w = event_writer_open_mirrored(job, logs, err, sizeof err);
    ck_assert_msg(w != NULL, "%s", err);
    ck_assert_int_eq(event_writer_add_session_log(w, 0, SESSION_LOG_START, NULL, err, sizeof err), 0);
    ck_assert_int_eq(event_writer_add_scalar(w, 100, "loss", 2.25f, err, sizeof err), 0);
    ck_assert_int_eq(event_writer_flush(w, err, sizeof err), 0);
    char path[4300], mirror[4300];
    snprintf(path, sizeof path, "%s", event_writer_path(w));
    snprintf(mirror, sizeof mirror, "%s%s", logs, strrchr(path, '/'));
    ck_assert_int_eq(event_writer_add_scalar(w, 200, "loss", 1.5f, err, sizeof err), 0);
    ck_assert_int_eq(event_writer_close(w, err, sizeof err), 0);
    size_t n, m;
    uint8_t *a = test_read_file(path, &n), *b = test_read_file(mirror, &m);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_gt(n, 40);
    ck_assert_uint_eq(n, m);
    ck_assert_mem_eq(a, b, n);
    free(a);
    free(b);
    ck_assert_int_eq(test_count_dir_entries(logs), 1);
    char bad[400];
    snprintf(bad, sizeof bad, "%s/job/eval/%s/x", dir, strrchr(path, '/') + 1); /* under a file */
    ck_assert_ptr_null(event_writer_open_mirrored(job, bad, err, sizeof err));
    ck_assert_msg(strstr(err, "events.out.tfevents") != NULL, "%s", err);
    ck_assert_int_eq(test_count_dir_entries(job), 1);   /* the failed open left no file */
    ck_assert_int_eq(test_remove_tree(dir), 0);
}
END_TEST

START_TEST(test_open_error_names_path) {
    char err[512];
    ck_assert_ptr_null(event_writer_open("/proc/no_such_dir/x", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "/proc/no_such_dir"));
}
END_TEST

static Suite *event_suite(void) {
    Suite *s = suite_create("event_file");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_payload_vectors);
    tcase_add_test(tc, test_written_file_structure);
    tcase_add_test(tc, test_meta_graph_events);
    tcase_add_test(tc, test_mirrored_files_equal);
    tcase_add_test(tc, test_open_error_names_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return test_run_suite(event_suite());
}
