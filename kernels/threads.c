/* threads.c: how many threads the CPU kernels use.
 * With OpenMP this sets the team size of every parallel region in kernels/; without it the
 * kernels run single-threaded and the setting is only remembered. */
#include "kernels/kernels.h"

#include <stdlib.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static int g_threads = 0; /* n > 0: exactly n; 0: automatic */

/* cores - others, from the 1-minute load average and the count in use; in [1, cores]. */
int kernels_auto_threads(int cores, double load, int in_use) {
    const double others = load - in_use;
    int t = cores - (others > 0 ? (int)(others + 0.5) : 0);
    return t < 1 ? 1 : t > cores ? cores : t;
}

#ifdef _OPENMP
/* Automatic: all cores less those other processes keep busy, re-read at most once a second.
 * A region waits for its slowest thread, so on a busy machine a thread that must share a core
 * costs a scheduler time slice per region (measured: 2 threads 2x slower than 1 at load 8).
 * The 1-minute load average counts this process's own running threads too, about the count in
 * use: others = load - that count. (OpenMP's dynamic adjustment, used before session 12, takes
 * cores minus the whole 15-minute load: a job's own threads then took cores from it, and a
 * 2-core box ran the original job on one thread after ~10 minutes, or from the start after
 * other work.) The count in use is what kernels_get_threads returns and what the regions
 * without a num_threads clause get (omp_set_num_threads). */
static int g_auto = 0;              /* the count in use; 0: not read yet */
static double g_auto_read = -1e300; /* when (CLOCK_MONOTONIC seconds) */

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int auto_threads(void) {
    const double now = monotonic_s();
    if (g_auto == 0 || now - g_auto_read >= 1.0) {
        g_auto_read = now;
        const int cores = omp_get_num_procs();
        double load[1];
        const int t = getloadavg(load, 1) == 1 ? kernels_auto_threads(cores, load[0], g_auto)
                                               : cores;
        if (t != g_auto) omp_set_num_threads(t);
        g_auto = t;
    }
    return g_auto;
}
#endif

void kernels_set_threads(int n) {
#ifdef _OPENMP
    omp_set_dynamic(0);
    if (n > 0) omp_set_num_threads(n);
    g_auto = 0; /* automatic: read at the next kernels_get_threads */
#endif
    g_threads = n > 0 ? n : 0;
}

int kernels_get_threads(void) {
#ifdef _OPENMP
    return g_threads > 0 ? g_threads : auto_threads();
#else
    return g_threads > 0 ? g_threads : 1;
#endif
}
