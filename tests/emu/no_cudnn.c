/* no_cudnn.c: the emulated programs (emu_trainer, emu_predict) run this project's kernels on
 * the CUDA emulator; cuDNN and cuBLAS are libraries of compiled GPU code that it cannot run. So
 * there, --device cudnn fails as it does on a machine whose cuDNN cannot be loaded: an error
 * that says why. */
#include <stdio.h>

#include "core/backend.h"

Backend *backend_cudnn_create(char *err, size_t errlen) {
    snprintf(err, errlen, "device cudnn: the CUDA emulator runs this project's kernels only, "
                          "not cuDNN's or cuBLAS's");
    return NULL;
}
