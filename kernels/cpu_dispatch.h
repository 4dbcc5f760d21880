/* cpu_dispatch.h: which vector clone a CPU kernel runs (private to kernels/). The clones are
 * compiled with __attribute__((target(...))) and chosen at run time, so the binary runs on any
 * x86-64; each does the same float operations as its plain twin (fmaf / fma, one value's terms
 * in one order), so all clones give the same bits.
 *
 * CNN_CPU_ISA=base or avx2 caps the clones a run takes (read at the first call, and again after
 * kernels_cpu_isa_refresh(), kernels.h: a test compares the clones in one process; a benchmark
 * measures what a CPU without AVX-512 would run). A developer switch: any other value, or none,
 * takes the widest clones the CPU has (every clone gives the same bits, so no value can change a
 * result). */
#ifndef KERNELS_CPU_DISPATCH_H
#define KERNELS_CPU_DISPATCH_H

enum { KERNELS_ISA_BASE = 0, KERNELS_ISA_AVX2 = 1, KERNELS_ISA_AVX512 = 2 };

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KERNELS_HAVE_AVX2_CLONES 1
/* The widest clones this CPU runs (AVX2 means AVX2 + FMA; AVX-512 means AVX-512F), capped by
 * CNN_CPU_ISA (kernels/cpu_dispatch.c). Asked per call, per image or per row by the kernels:
 * the answer is kept, where reading the environment each time took 0.35% of the MNIST step. */
int kernels_cpu_isa(void);
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
