/* cuda_common.cuh: what every .cu file of kernels/ shares (launch geometry, launch status). */
#ifndef KERNELS_CUDA_COMMON_CUH
#define KERNELS_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* Blocks for a grid-stride loop over n items: enough to fill the GPU a few times, never more
 * than the items need. */
static inline unsigned grid_for(size_t n, int threads) {
    size_t blocks = (n + (size_t)threads - 1) / (size_t)threads;
    if (blocks > 65535u * 8u) blocks = 65535u * 8u;
    return blocks == 0 ? 1u : (unsigned)blocks;
}

/* The launch status of the kernel just enqueued (configuration errors show up here; faults
 * inside the kernel at the next synchronising call). */
static inline cudaError_t launch_status(void) { return cudaGetLastError(); }

/* Number of multiprocessors of the current device (cached; 132 on an H100 SXM/H200). */
static inline int device_sm_count(void) {
    static int cached = 0;
    if (cached == 0) {
        int dev = 0, sms = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            sms <= 0) {
            cudaGetLastError(); /* clear: fall back to a fixed count */
            sms = 132;
        }
        cached = sms;
    }
    return cached;
}

#endif /* KERNELS_CUDA_COMMON_CUH */
