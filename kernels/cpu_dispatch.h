/* cpu_dispatch.h: which vector clone a CPU kernel runs (private to kernels/). The clones are
 * compiled with __attribute__((target("avx2,fma"))) and chosen at run time, so the binary runs
 * on any x86-64; each does the same float operations as its plain twin (fmaf / fma), so the two
 * give the same bits. */
#ifndef KERNELS_CPU_DISPATCH_H
#define KERNELS_CPU_DISPATCH_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KERNELS_HAVE_AVX2_CLONES 1
/* Non-zero when this CPU runs AVX2 and FMA instructions. */
static inline int kernels_have_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define KERNELS_HAVE_AVX2_CLONES 0
static inline int kernels_have_avx2_fma(void) { return 0; }
#endif

#endif
