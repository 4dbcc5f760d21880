/* bench/tfrecord_parse.c: read + verify + parse throughput of an MNIST TFRecord file, one core,
 * and CRC32C speed of both paths. Not a test; bench/tfrecord_vs_tfdata.sh runs it beside tf.data.
 *   bench_tfrecord_parse [FILE] [--reps N]      (FILE default data/mnist/mnist_train.tfrecords)
 * Prints machine-readable lines "key value" (see the script) after a human summary.
 * Stages timed (best of N, default 10, after one warm-up; file in the page cache; CPU time of the
 * process, wall time beside it):
 *   frame  : tfr_reader over every record, both CRCs checked, nothing parsed
 *   load   : mnist_load_tfrecords: frame + Example parse + checks + copy into [n,28,28,1] uint8
 *            and int32 labels (what the trainer calls)
 *   crc    : crc32c, portable (slicing-by-8) and hardware (SSE4.2, 3 streams), over a cached
 *            256 KiB buffer and a 64 MiB one (memory-bound). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "io/crc32c.h"
#include "io/mnist_records.h"
#include "io/tfrecord.h"

/* CPU time of this process: on a shared machine, wall time includes other people's slices;
 * CPU seconds are what one core spends on the work. Both are reported. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
#define now_s cpu_s

static int64_t frame_only(const char *path) {
    char err[512];
    int64_t count = tfr_count_records(path, TFR_AUTO, err, sizeof err);
    if (count < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return count;
}

int main(int argc, char **argv) {
    const char *path = "data/mnist/mnist_train.tfrecords";
    int reps = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "usage: bench_tfrecord_parse [FILE] [--reps N]\n");
            return 2;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "bench_tfrecord_parse: %s: not found (run data/prepare.sh)\n", path);
        return 1;
    }
    double mb = (double)st.st_size / 1e6;

    /* frame only */
    int64_t records = frame_only(path);
    double best_frame = 1e30, best_frame_wall = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s(), w0 = wall_s();
        frame_only(path);
        double t = now_s() - t0, w = wall_s() - w0;
        if (t < best_frame) best_frame = t;
        if (w < best_frame_wall) best_frame_wall = w;
    }

    /* full load */
    char err[512];
    double best_load = 1e30, best_load_wall = 1e30;
    for (int r = 0; r <= reps; r++) {
        MnistSet set;
        double t0 = now_s(), w0 = wall_s();
        if (mnist_load_tfrecords(&path, 1, TFR_AUTO, &set, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        double t = now_s() - t0, w = wall_s() - w0;
        if (r > 0 && t < best_load) best_load = t;
        if (r > 0 && w < best_load_wall) best_load_wall = w;
        if (set.n != records) {
            fprintf(stderr, "bench: loaded %lld of %lld records\n", (long long)set.n, (long long)records);
            return 1;
        }
        mnist_set_free(&set);
    }

    /* CRC32C: a 256 KiB buffer (cache-resident, as a record just read is) hashed 256 times,
     * and a 64 MiB buffer (from memory). */
    double gbs[2][2] = {{0, 0}, {0, 0}};   /* [cached, memory][portable, hw] */
    const size_t sizes[2] = {(size_t)256 << 10, (size_t)64 << 20};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        int passes = s == 0 ? 256 : 4;
        uint8_t *buf = malloc(n);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 2654435761u >> 11);
        for (int path = 0; path < 2; path++) {
            if (path == 1 && !crc32c_hw_available()) continue;
            if (path == 0 && s == 0) passes = 32;   /* the portable path is slow */
            double best = 1e30;
            uint32_t c = 0;
            for (int r = 0; r <= reps; r++) {
                double t0 = now_s();
                for (int k = 0; k < passes; k++)
                    c = path ? crc32c_extend_hw(c, buf, n) : crc32c_extend_portable(c, buf, n);
                double t = now_s() - t0;
                if (r > 0 && t < best) best = t;
            }
            if (c == 0x12345678u) printf(" ");   /* keep c alive */
            gbs[s][path] = (double)n * passes / best / 1e9;
            passes = s == 0 ? 256 : 4;
        }
        if (crc32c_hw_available() && crc32c_extend_hw(0, buf, n) != crc32c_extend_portable(0, buf, n)) {
            fprintf(stderr, "bench: CRC paths disagree\n");
            return 1;
        }
        free(buf);
    }

    printf("file %s: %lld records, %.1f MB\n", path, (long long)records, mb);
    printf("frame+crc   : %8.1f ms CPU (%6.1f ms wall)  %10.0f records/s  %8.0f MB/s\n",
           best_frame * 1e3, best_frame_wall * 1e3, (double)records / best_frame, mb / best_frame);
    printf("load (parse): %8.1f ms CPU (%6.1f ms wall)  %10.0f records/s  %8.0f MB/s\n",
           best_load * 1e3, best_load_wall * 1e3, (double)records / best_load, mb / best_load);
    printf("crc32c portable: %6.2f GB/s in cache, %6.2f GB/s from memory (64 MiB)\n", gbs[0][0],
           gbs[1][0]);
    if (crc32c_hw_available())
        printf("crc32c hardware: %6.2f GB/s in cache, %6.2f GB/s from memory (64 MiB)\n", gbs[0][1],
               gbs[1][1]);
    else printf("crc32c hardware: not available on this CPU\n");
    /* machine-readable */
    printf("RESULT records %lld\nRESULT mb %.3f\nRESULT frame_s %.6f\nRESULT load_s %.6f\n",
           (long long)records, mb, best_frame, best_load);
    printf("RESULT frame_wall_s %.6f\nRESULT load_wall_s %.6f\n", best_frame_wall, best_load_wall);
    printf("RESULT crc_portable_gbs %.3f\nRESULT crc_hw_gbs %.3f\n", gbs[0][0], gbs[0][1]);
    printf("RESULT crc_portable_mem_gbs %.3f\nRESULT crc_hw_mem_gbs %.3f\n", gbs[1][0], gbs[1][1]);
    return 0;
}
