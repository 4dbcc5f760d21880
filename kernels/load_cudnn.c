/* load_cudnn.c: see load_cudnn.h. */
#define CUDNN_LIBS_TABLE_ITSELF 1
#include "kernels/load_cudnn.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

CudnnLibs cudnn_libs;

#define STR_(x) #x
#define STR(x) STR_(x)

/* Where each library is looked for: its soname through the loader's search path first, then the
 * file CMake linked against when the libraries were linked (CUDNN_LIBS_CUBLAS_PATH,
 * CUDNN_LIBS_CUDNN_PATH: e.g. /usr/local/cuda/lib64, not always in the loader's path). */
static const char *const SONAMES[2] = {"libcublas.so." STR(CUBLAS_VER_MAJOR),
                                        "libcudnn.so." STR(CUDNN_MAJOR)};
#ifndef CUDNN_LIBS_CUBLAS_PATH
#define CUDNN_LIBS_CUBLAS_PATH ""
#endif
#ifndef CUDNN_LIBS_CUDNN_PATH
#define CUDNN_LIBS_CUDNN_PATH ""
#endif
static const char *const CONFIGURED[2] = {CUDNN_LIBS_CUBLAS_PATH, CUDNN_LIBS_CUDNN_PATH};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc = -1;
static char load_err[1024];

static void *open_library(int lib) {
    void *h = dlopen(SONAMES[lib], RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    const char *first = dlerror();
    snprintf(load_err, sizeof load_err, "cannot load %s: %s", SONAMES[lib],
             first ? first : "not found");
    if (!CONFIGURED[lib][0]) return NULL;
    if ((h = dlopen(CONFIGURED[lib], RTLD_NOW | RTLD_LOCAL))) return h;
    const char *second = dlerror();
    size_t n = strlen(load_err);
    snprintf(load_err + n, sizeof load_err - n, "; nor %s: %s", CONFIGURED[lib],
             second ? second : "not found");
    return NULL;
}

static void load_once(void) {
    void *handle[2];
    for (int lib = 0; lib < 2; lib++)
        if (!(handle[lib] = open_library(lib))) return;
    /* dlsym's void * into a function pointer: through memcpy, as ISO C has no such cast */
#define CUDNN_LIBS_RESOLVE(lib, name)                                                              \
    {                                                                                             \
        void *p = dlsym(handle[lib], #name);                                                      \
        if (!p) {                                                                                 \
            snprintf(load_err, sizeof load_err, "%s has no function %s", SONAMES[lib], #name);  \
            return;                                                                               \
        }                                                                                         \
        memcpy(&cudnn_libs.name, &p, sizeof p);                                                    \
    }
    CUDNN_LIBS_FUNCTIONS(CUDNN_LIBS_RESOLVE)
#undef CUDNN_LIBS_RESOLVE
    load_rc = 0;
}

int cudnn_libs_load(char *err, size_t errlen) {
    pthread_once(&once, load_once);
    if (load_rc != 0) snprintf(err, errlen, "%s", load_err);
    return load_rc;
}
