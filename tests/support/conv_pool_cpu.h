/* conv_pool_cpu.h: the CPU backend with the conv + ReLU + max pool entries of backend.h
 * (conv2d_relu_maxpool_*, conv2d_filter_grad_from_pool) filled in from the kernels/ CPU twins.
 * The product's CPU backend leaves them out (its im2col GEMM is its fast path); tests use this
 * to run on the CPU what core does with them on the CUDA backend: the fused first layer, and
 * filter and data gradients from a max pool's winners. */
#ifndef TESTS_SUPPORT_CONV_POOL_CPU_H
#define TESTS_SUPPORT_CONV_POOL_CPU_H

#include "core/backend.h"

/* Sets the three entries of a CPU backend (filter gradients from the pool for every conv);
 * returns be. */
Backend *test_add_conv_pool_entries(Backend *be);
/* With those: maxpool2d_relu_backward_from_y, so that core fuses middle layers' conv + ReLU +
 * pool too (the CUDA backend's CNN_CUDA_FUSED=4); returns be. */
Backend *test_add_conv_pool_middle_entry(Backend *be);
/* With the three: data gradients from the pool's winners (conv2d_data_grad_from_pool, for
 * stride-1 convs under pools whose windows do not overlap, and its entry: the CUDA backend's
 * CNN_CUDA_DATA_FROM_POOL=1); returns be. */
Backend *test_add_conv_pool_data_entry(Backend *be);
/* A dense layer's data gradient where its input (a pooled ReLU output) is > 0
 * (dense_backward_data_alive, for out a multiple of 128 up to 1024: the CUDA backend's
 * CNN_CUDA_DENSE_DX_ALIVE=1); returns be. */
Backend *test_add_dense_dx_alive_entry(Backend *be);

#endif
