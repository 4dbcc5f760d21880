/* cpu_dispatch.h: which vector clone a CPU kernel runs (private to kernels/). The clones are
 * compiled with __attribute__((target(...))) and chosen at run time, so the binary runs on any
 * x86-64; each does the same float operations as its plain twin (fmaf / fma, one value's terms
 * in one order), so all clones give the same bits.
 *
 * CNN_CPU_ISA=base or avx2 caps the clones a run takes (read at each call: a test compares the
 * clones in one process; a benchmark measures what a CPU without AVX-512 would run). A developer
 * switch: any other value, or none, takes the widest clones the CPU has (every clone gives the
 * same bits, so no value can change a result). */
#ifndef KERNELS_CPU_DISPATCH_H
#define KERNELS_CPU_DISPATCH_H

#include <stdlib.h>
#include <string.h>

enum { KERNELS_ISA_BASE = 0, KERNELS_ISA_AVX2 = 1, KERNELS_ISA_AVX512 = 2 };

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KERNELS_HAVE_AVX2_CLONES 1
/* The widest clones this CPU runs (AVX2 means AVX2 + FMA; AVX-512 means AVX-512F), capped by
 * CNN_CPU_ISA. */
static inline int kernels_cpu_isa(void) {
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
#else
#define KERNELS_HAVE_AVX2_CLONES 0
static inline int kernels_cpu_isa(void) { return KERNELS_ISA_BASE; }
#endif

/* The clone to run of three: plain, AVX2+FMA, AVX-512F. */
#define KERNELS_PICK_CLONE(base, avx2, avx512)                                                 \
    (kernels_cpu_isa() >= KERNELS_ISA_AVX512 ? (avx512)                                        \
     : kernels_cpu_isa() >= KERNELS_ISA_AVX2 ? (avx2)                                          \
                                             : (base))

/* Non-zero when the AVX2+FMA clones may run. */
static inline int kernels_have_avx2_fma(void) { return kernels_cpu_isa() >= KERNELS_ISA_AVX2; }

#endif
