/* cpu_dispatch.c: the widest vector clones this CPU runs, found once (cpu_dispatch.h). */
#include "kernels/cpu_dispatch.h"
#include "kernels/kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if KERNELS_HAVE_AVX2_CLONES
static atomic_int g_isa = -1; /* -1: not found yet (any thread may find it: the same answer) */

static int isa_detect(void) {
    __builtin_cpu_init();
    int isa = KERNELS_ISA_BASE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        isa = KERNELS_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f")) isa = KERNELS_ISA_AVX512;
    }
    const char *cap = getenv("CNN_CPU_ISA");
    if (cap && !strcmp(cap, "base")) isa = KERNELS_ISA_BASE;
    if (cap && !strcmp(cap, "avx2") && isa > KERNELS_ISA_AVX2) isa = KERNELS_ISA_AVX2;
    return isa;
}

int kernels_cpu_isa(void) {
    int isa = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (isa < 0) {
        isa = isa_detect();
        atomic_store_explicit(&g_isa, isa, memory_order_relaxed);
    }
    return isa;
}

void kernels_cpu_isa_refresh(void) { atomic_store_explicit(&g_isa, -1, memory_order_relaxed); }
#else
void kernels_cpu_isa_refresh(void) {}
#endif
