/* sgemm_microkernel.h: the register-tile kernels of the packed SGEMM (kernels/sgemm.c) and its
 * single-threaded entry, private to kernels/.
 *
 * A micro-kernel computes one SGEMM_MR x SGEMM_NR tile of C:
 *   a: element (r, p) of the tile's rows of op(A) at a[r*rs_a + p*cs_a] (a packed panel has
 *      rs_a = 1, cs_a = MR; a row-major A read in place has rs_a = lda, cs_a = 1)
 *   b: packed, kc steps of SGEMM_NR floats (row p of the tile's columns of op(B)); any alignment
 *   C[r, j] = alpha * sum_p a(r, p) * b[p*NR + j] + beta * C[r, j]   (beta 0: C not read)
 * Sums run over p in order, so a tile's result depends only on its inputs (no threading or
 * blocking effects beyond the fixed KC split). */
#ifndef KERNELS_SGEMM_MICROKERNEL_H
#define KERNELS_SGEMM_MICROKERNEL_H

#define SGEMM_MR 6
#define SGEMM_NR 16

#include <stddef.h>

typedef void (*SgemmMicroKernel)(int kc, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                                 const float *b, float *c, int ldc, float alpha, float beta);

/* AVX2+FMA version (kernels/sgemm_avx2.c); NULL when the CPU or the compiler lacks them. */
SgemmMicroKernel sgemm_micro_avx2(void);

/* Two tiles at once: rows 0-5 of C from a0's rows, rows 6-11 from a1's (each as a above, the
 * same rs_a and cs_a), over the same B panel; the same bits as two calls of the AVX2 kernel.
 * The AVX-512 version (kernels/sgemm_avx512.c), or NULL where it may not run (CPU, compiler,
 * CNN_CPU_ISA). */
typedef void (*SgemmMicroKernel12)(int kc, const float *a0, const float *a1, ptrdiff_t rs_a,
                                   ptrdiff_t cs_a, const float *b, float *c, int ldc,
                                   float alpha, float beta);
SgemmMicroKernel12 sgemm_micro12_avx512(void);

/* The depth of sgemm's KC slices for a sum of k terms: equal slices of at most SGEMM_KC (k = 800
 * -> 4 x 200, not 3 x 256 + 32). Each value is a chain from 0 per slice, the slices added in
 * order (dense_narrow.c sums that way too). */
int sgemm_kc_step(int k);

/* Tests: 1 selects the portable micro-kernel even where AVX2 is present, 0 the best one. */
void sgemm_use_portable(int on);

/* Single-threaded GEMMs for kernels that run their own parallel region (conv2d): between
 * sgemm_serial_begin(threads) (which takes the sgemm lock and makes sure `threads` sets of
 * packing buffers exist; -1 when out of memory, lock not held) and sgemm_serial_end(), thread
 * t < threads may call sgemm_serial(t, ...), with sgemm's arguments and results. */
int sgemm_serial_begin(int threads);
void sgemm_serial(int thread, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void sgemm_serial_end(void);

/* op(B)[k,n] packed once for many GEMMs (conv weights, shared by all images of a call): NR-column
 * panels over the whole k, zero-padded, sgemm_packed_b_floats(k, n) floats. */
size_t sgemm_packed_b_floats(int k, int n);
void sgemm_pack_b(int trans_b, int k, int n, const float *b, int ldb, float *bp);
/* sgemm_serial with B given packed by sgemm_pack_b. */
void sgemm_serial_packed_b(int thread, int trans_a, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *bp, float beta, float *c,
                           int ldc);

#endif
