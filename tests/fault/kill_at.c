/* kill_at.so: an LD_PRELOAD fault injector for tests/fault/test_trainer_faults.py.
 *
 * It counts the calls that make a write durable or visible (fsync, fdatasync, rename, renameat,
 * mkdir, rmdir, unlink: the commit points of atomic files, checkpoints and exports) and
 *   FAULT_KILL_AT=N      kills the process with SIGKILL on entry to the Nth such call, i.e. with
 *                        that write's bytes in place but not yet committed;
 *   FAULT_SIGNAL=SIG     raises signal SIG (a number, e.g. 15) there instead of SIGKILL;
 *   FAULT_COUNT_FILE=F   appends the number of calls made to F at exit (to size the kill range);
 *   FAULT_FAIL_RENAME=S  makes every rename whose source's last path component begins with S
 *                        fail with EIO (a rename that fails half way through a replacement).
 * Built by the tests with `cc -shared -fPIC kill_at.c -ldl`; not part of the engine.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long calls, kill_at = -1;
static int kill_signal = SIGKILL;

__attribute__((constructor)) static void kill_at_init(void) {
    const char *s = getenv("FAULT_KILL_AT");
    if (s && *s) kill_at = atol(s);
    s = getenv("FAULT_SIGNAL");
    if (s && *s) kill_signal = atoi(s);
}

__attribute__((destructor)) static void kill_at_report(void) {
    const char *path = getenv("FAULT_COUNT_FILE");
    FILE *f = path && *path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "%ld\n", __atomic_load_n(&calls, __ATOMIC_SEQ_CST));
        fclose(f);
    }
}

/* atomic: the trainer writes checkpoints on a thread of their own beside the main one */
static void point(void) {
    /* to the process, as kill(1) sends it (the trainer's helper threads block the stop
     * signals: one raised on such a thread would never be delivered) */
    if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) == kill_at) kill(getpid(), kill_signal);
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

int fsync(int fd) { point(); return NEXT(fsync)(fd); }
int fdatasync(int fd) { point(); return NEXT(fdatasync)(fd); }
static int rename_fails(const char *from) {
    const char *s = getenv("FAULT_FAIL_RENAME");
    const char *base = strrchr(from, '/');
    base = base ? base + 1 : from;
    if (!s || !*s || strncmp(base, s, strlen(s)) != 0) return 0;
    errno = EIO;
    return 1;
}

int rename(const char *a, const char *b) {
    point();
    return rename_fails(a) ? -1 : NEXT(rename)(a, b);
}
int renameat(int da, const char *a, int db, const char *b) {
    point();
    return rename_fails(a) ? -1 : NEXT(renameat)(da, a, db, b);
}
int mkdir(const char *p, mode_t m) { point(); return NEXT(mkdir)(p, m); }
int rmdir(const char *p) { point(); return NEXT(rmdir)(p); }
int unlink(const char *p) { point(); return NEXT(unlink)(p); }
