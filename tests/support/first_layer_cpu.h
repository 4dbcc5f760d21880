/* first_layer_cpu.h: the CPU backend with the fused first-layer entries (backend.h's
 * conv2d_relu_maxpool_*) filled in from the kernels/ CPU twins. The product's CPU backend leaves
 * them out (its im2col GEMM is its fast path); tests use this to run core's fused op (the one
 * the CUDA backend takes) on the CPU. */
#ifndef TESTS_SUPPORT_FIRST_LAYER_CPU_H
#define TESTS_SUPPORT_FIRST_LAYER_CPU_H

#include "core/backend.h"

/* Sets the two entries of a CPU backend; returns be. */
Backend *test_add_first_layer_entries(Backend *be);

#endif
