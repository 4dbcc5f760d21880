/* dropout_dense_cpu.h: the CPU backend with the dropout + dense entries of backend.h
 * (dropout_dense_*) filled in from the kernels/ CPU twin. The product's CPU backend leaves them
 * out (its sgemm is its fast path, and its results stay those of the unfused layers); tests
 * use this to run on the CPU what core does with them on the CUDA backend. */
#ifndef TESTS_SUPPORT_DROPOUT_DENSE_CPU_H
#define TESTS_SUPPORT_DROPOUT_DENSE_CPU_H

#include "core/backend.h"

/* Sets the three entries of a CPU backend (every size fits); returns be. */
Backend *test_add_dropout_dense_entries(Backend *be);

#endif
