/* conv_pool_cpu.h: the CPU backend with the conv + ReLU + max pool entries of backend.h
 * (conv2d_relu_maxpool_*, conv2d_filter_grad_from_pool) filled in from the kernels/ CPU twins
 * (where the CPU backend has the entry itself, its own: they need CNN_CPU_FROM_POOL unset), or
 * without them. The product's CPU backend has the gradients from the pools' winners for
 * convs of 8 or more input channels and the dense dx where alive (its fast path since session
 * 12), but not the fused forward (its im2col GEMM is faster); tests use this to run on the CPU
 * what core does on the CUDA backend (the fused first layer, every conv's gradients from the
 * pool's winners) and, without them, the plain layers those are checked against. */
#ifndef TESTS_SUPPORT_CONV_POOL_CPU_H
#define TESTS_SUPPORT_CONV_POOL_CPU_H

#include "core/backend.h"

/* Clears the CPU backend's pool-related entries: the gradients from the pools' winners, the dense
 * dx where alive and the fused conv + ReLU + pool of the first layer (ten entries): the plain
 * layers; returns be. */
Backend *test_without_pool_entries(Backend *be);
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
 * (dense_backward_data_alive, for out a multiple of 32 up to 1024: the CUDA backend's
 * CNN_CUDA_DENSE_DX_ALIVE=1); returns be. */
Backend *test_add_dense_dx_alive_entry(Backend *be);
/* A dense layer's forward and filter gradient over its input's nonzeros where that input is a
 * pooled ReLU output (dense_forward_sparse_input, dense_backward_filter_sparse_input: the CUDA
 * backend's CNN_CUDA_DENSE_SPARSE=1); returns be. */
Backend *test_add_dense_sparse_input_entries(Backend *be);

#endif
