/* fuzz_util.h: helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * Readers that take a path (TFRecord, IDX, ...) get the input through an in-memory file: one
 * memfd per process, rewritten for every input and opened again through /proc/self/fd/N, so no
 * fuzzing run litters the disk and every open sees exactly the input's bytes.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#define _GNU_SOURCE 1
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Replaces the content of the in-memory file `slot` (0..3) with data[0..n) and returns its path.
 * Aborts (a fuzzer finding, not an input problem) when the file cannot be written. */
static inline const char *fuzz_file(int slot, const void *data, size_t n) {
    static int fds[4] = {-1, -1, -1, -1};
    static char paths[4][64];
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (fds[slot] < 0) { perror("memfd_create"); abort(); }
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) != 0) { perror("ftruncate"); abort(); }
    const uint8_t *p = data;
    size_t done = 0;
    while (done < n) {
        ssize_t k = pwrite(fds[slot], p + done, n - done, (off_t)done);
        if (k <= 0) { perror("pwrite"); abort(); }
        done += (size_t)k;
    }
    return paths[slot];
}

/* An error message must be a non-empty, NUL-terminated string within its buffer: the callers
 * print it. Aborts otherwise (the fuzzer records the input). */
static inline void fuzz_check_error(const char *err, size_t cap) {
    if (memchr(err, 0, cap) == NULL || err[0] == 0) {
        fprintf(stderr, "fuzz: a failure without an error message\n");
        abort();
    }
}

#endif
