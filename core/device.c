/* device.c: device names and detection. */
#include "core/model.h"

#include <string.h>

#include "core/backend.h"

int device_cuda_available(void) {
#ifdef WITH_CUDA
    return backend_cuda_available();
#else
    return 0;
#endif
}

int device_parse(const char *name, Device *out) {
    if (!name) return -1;
    if (strcmp(name, "cpu") == 0) *out = DEVICE_CPU;
    else if (strcmp(name, "cuda") == 0) *out = DEVICE_CUDA;
    else if (strcmp(name, "cudnn") == 0) *out = DEVICE_CUDNN;
    else if (strcmp(name, "auto") == 0) *out = device_cuda_available() ? DEVICE_CUDA : DEVICE_CPU;
    else return -1;
    return 0;
}

const char *device_name(Device d) {
    switch (d) {
    case DEVICE_CPU: return "cpu";
    case DEVICE_CUDA: return "cuda";
    case DEVICE_CUDNN: return "cudnn";
    }
    return "unknown";
}
