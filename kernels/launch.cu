/* launch.cu: the process-wide switch of programmatic dependent launch (kernels/cuda_common.cuh,
 * CNN_KERNEL): on unless CNN_CUDA_PDL=0, or once cuda_pdl_disable() has been called. */
#include <stdlib.h>

#include "kernels/kernels_cuda.h"

static int pdl_disabled = 0;

extern "C" void cuda_pdl_disable(void) { pdl_disabled = 1; }

extern "C" int cuda_pdl_enabled(void) {
    if (pdl_disabled) return 0;
    const char *v = getenv("CNN_CUDA_PDL"); /* read at each launch: tests switch it */
    return !(v && v[0] == '0' && v[1] == 0);
}
