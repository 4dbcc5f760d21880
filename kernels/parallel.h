/* parallel.h: OpenMP pragmas that vanish in builds without OpenMP (private to kernels/).
 * Usage: KERNELS_OMP(omp parallel for schedule(static)). Every parallel loop in kernels/ splits
 * work so that no float sum depends on the thread count. */
#ifndef KERNELS_PARALLEL_H
#define KERNELS_PARALLEL_H

#include "kernels/kernels.h"

#ifdef _OPENMP
#define KERNELS_OMP(directive) _Pragma(#directive)
#else
#define KERNELS_OMP(directive)
#endif

/* Work below these sizes runs on the calling thread. A parallel region costs 5-20 us on an idle
 * machine, but up to a scheduler time slice (measured: ~14 ms) when another process holds the
 * other core, because the region ends only when every thread has run; a memory-bound pass over
 * a few MB takes a few hundred microseconds. So only large passes and large GEMMs fork. */
#define KERNELS_PARALLEL_MIN_ELEMENTS ((size_t)1 << 20) /* elementwise passes: 1M floats */
#define KERNELS_PARALLEL_MIN_MACS 1e7                   /* GEMMs and convolutions */

/* Threads for a region of `macs` multiply-adds (or the work they stand for) split into `tasks`
 * pieces: kernels_get_threads() from KERNELS_PARALLEL_MIN_MACS on, else 1; never more than the
 * tasks; at least 1. */
static inline int kernels_threads_for(double macs, long long tasks) {
    int t = macs >= KERNELS_PARALLEL_MIN_MACS ? kernels_get_threads() : 1;
    if (t > tasks) t = (int)tasks;
    return t > 0 ? t : 1;
}

/* The calling thread's number inside a parallel region (0 outside one, or without OpenMP). */
#ifdef _OPENMP
#include <omp.h>
static inline int kernels_thread_id(void) { return omp_get_thread_num(); }
#else
static inline int kernels_thread_id(void) { return 0; }
#endif

#endif
