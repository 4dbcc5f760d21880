/* parallel.h: OpenMP pragmas that vanish in builds without OpenMP (private to kernels/).
 * Usage: KERNELS_OMP(omp parallel for schedule(static)). Every parallel loop in kernels/ splits
 * work so that no float sum depends on the thread count. */
#ifndef KERNELS_PARALLEL_H
#define KERNELS_PARALLEL_H

#ifdef _OPENMP
#define KERNELS_OMP(directive) _Pragma(#directive)
#else
#define KERNELS_OMP(directive)
#endif

/* The calling thread's number inside a parallel region (0 outside one, or without OpenMP). */
#ifdef _OPENMP
#include <omp.h>
static inline int kernels_thread_id(void) { return omp_get_thread_num(); }
#else
static inline int kernels_thread_id(void) { return 0; }
#endif

#endif
