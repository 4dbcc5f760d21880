/* threads.c: how many threads the CPU kernels use.
 * With OpenMP this sets the team size of every parallel region in kernels/; without it the
 * kernels run single-threaded and the setting is only remembered. */
#include "kernels/kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int g_threads = 0; /* 0: not set yet (all cores) */

void kernels_set_threads(int n) {
#ifdef _OPENMP
    /* Automatic: all cores, but with OpenMP's dynamic adjustment, which gives a parallel
     * region fewer threads while the load average says other processes hold cores. A region
     * waits for its slowest thread, so on a busy machine a thread that must share a core costs
     * a scheduler time slice per region (measured: 2 threads 2x slower than 1 at load 8). */
    omp_set_dynamic(n <= 0);
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    g_threads = n;
}

int kernels_get_threads(void) {
#ifdef _OPENMP
    return g_threads > 0 ? g_threads : omp_get_max_threads();
#else
    return g_threads > 0 ? g_threads : 1;
#endif
}
