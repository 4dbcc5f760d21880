/* sgemm.c: row-major single-precision GEMM, C[M,N] = alpha * op(A) * op(B) + beta * C.
 * beta == 0 overwrites C without reading it (C may hold garbage or NaN).
 *
 * sgemm_reference is the plain triple loop. sgemm is a packed, cache-blocked GEMM in the
 * BLIS/GotoBLAS style. C is cut into blocks that threads (OpenMP) take one at a time; a thread
 * computes its block over all of k with its own packing buffers:
 *   for each KC-deep slice of the sum (pc)
 *     for each NC-wide column range (jc)            <- B slice packed [KC x NC] in NR panels
 *       for each MC-high row range (ic)             <- a transposed A packed [MC x KC] in MR
 *         every MR x NR tile: micro-kernel over kc     panels; a row-major A read in place
 * Packing turns the transpose cases into contiguous panels; B can also come packed once for
 * many GEMMs (sgemm_pack_b: the conv weights). Each C element is summed
 * by one thread in a fixed order (p in order within a slice, slices in order), so results are
 * bit-identical for any thread count and any block split. */
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/sgemm_microkernel.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

/* ---- reference ------------------------------------------------------------------------------ */

/* Element (i,p) of op(A) and (p,j) of op(B). */
#define A_AT(i, p) (trans_a ? a[(size_t)(p) * lda + (i)] : a[(size_t)(i) * lda + (p)])
#define B_AT(p, j) (trans_b ? b[(size_t)(j) * ldb + (p)] : b[(size_t)(p) * ldb + (j)])

void sgemm_reference(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                     int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0.0; /* the reference sums in double: the fast path is held to it */
            for (int p = 0; p < k; p++) acc += (double)A_AT(i, p) * (double)B_AT(p, j);
            float *cij = &c[(size_t)i * ldc + j];
            *cij = alpha * (float)acc + (beta == 0.0f ? 0.0f : beta * *cij);
        }
}

/* ---- packed, blocked SGEMM ----------------------------------------------------------------- */

/* Block sizes: an A block (MC x KC, 768 KiB) stays in the 1 MiB L2 while the tiles stream
 * over it, a B panel (KC x NR, 16 KiB) stays in L1. */
#define SGEMM_KC 256
#define SGEMM_MC (SGEMM_MR * 128)
#define SGEMM_NC (SGEMM_NR * 64)

/* The portable micro-kernel: plain loops over a local tile, the same operations as the vector
 * kernels (an fmaf per term, then alpha, then beta's product added), so every CPU gives the same
 * bits. Where the CPU has FMA instructions (aarch64; x86 with the AVX2 kernel instead) fmaf is
 * one; an x86 without them computes it in software, slowly. */
static void micro_6x16_c(int kc, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                         float *c, int ldc, float alpha, float beta) {
    float acc[SGEMM_MR][SGEMM_NR] = {{0}};
    for (int p = 0; p < kc; p++, b += SGEMM_NR)
        for (int r = 0; r < SGEMM_MR; r++) {
            const float ar = a[r * rs_a + p * cs_a];
            for (int j = 0; j < SGEMM_NR; j++) acc[r][j] = fmaf(ar, b[j], acc[r][j]);
        }
    for (int r = 0; r < SGEMM_MR; r++)
        for (int j = 0; j < SGEMM_NR; j++) {
            float *cj = &c[(size_t)r * ldc + j];
            const float v = acc[r][j] * alpha;
            *cj = beta == 0.0f ? v : v + beta * *cj;
        }
}

/* Packs rows [i, i+rows) x cols [p0, p0+kc) of op(A) as one MR panel, zero-padding rows. */
static void pack_a_panel(int trans_a, const float *a, int lda, int i, int rows, int p0, int kc,
                         float *dst) {
    if (!trans_a && rows == SGEMM_MR) { /* six row streams in, one contiguous stream out */
        const float *s0 = a + (size_t)i * lda + p0, *s1 = s0 + lda, *s2 = s1 + lda;
        const float *s3 = s2 + lda, *s4 = s3 + lda, *s5 = s4 + lda;
        for (int p = 0; p < kc; p++, dst += SGEMM_MR) {
            dst[0] = s0[p]; dst[1] = s1[p]; dst[2] = s2[p];
            dst[3] = s3[p]; dst[4] = s4[p]; dst[5] = s5[p];
        }
        return;
    }
    if (!trans_a) {
        for (int r = 0; r < rows; r++) {
            const float *src = a + (size_t)(i + r) * lda + p0;
            for (int p = 0; p < kc; p++) dst[p * SGEMM_MR + r] = src[p];
        }
    } else {
        for (int p = 0; p < kc; p++) {
            const float *src = a + (size_t)(p0 + p) * lda + i;
            for (int r = 0; r < rows; r++) dst[p * SGEMM_MR + r] = src[r];
        }
    }
    for (int r = rows; r < SGEMM_MR; r++)
        for (int p = 0; p < kc; p++) dst[p * SGEMM_MR + r] = 0.0f;
}

/* Packs rows [p0, p0+kc) x cols [j, j+cols) of op(B) as one NR panel, zero-padding columns. */
static void pack_b_panel(int trans_b, const float *b, int ldb, int j, int cols, int p0, int kc,
                         float *dst) {
    if (!trans_b) {
        for (int p = 0; p < kc; p++) {
            const float *src = b + (size_t)(p0 + p) * ldb + j;
            float *d = dst + p * SGEMM_NR;
            for (int q = 0; q < cols; q++) d[q] = src[q];
            for (int q = cols; q < SGEMM_NR; q++) d[q] = 0.0f;
        }
    } else {
        /* NR row streams in (rows of the stored B), contiguous NR-float rows out: a
         * transpose, in 4x4 blocks where SSE is there. */
        const float *src[SGEMM_NR];
        for (int q = 0; q < cols; q++) src[q] = b + (size_t)(j + q) * ldb + p0;
        int p = 0;
#if defined(__SSE__)
        if (cols == SGEMM_NR)
            for (; p + 4 <= kc; p += 4)
                for (int q = 0; q < SGEMM_NR; q += 4) {
                    __m128 r0 = _mm_loadu_ps(src[q] + p), r1 = _mm_loadu_ps(src[q + 1] + p);
                    __m128 r2 = _mm_loadu_ps(src[q + 2] + p), r3 = _mm_loadu_ps(src[q + 3] + p);
                    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                    _mm_storeu_ps(dst + (p + 0) * SGEMM_NR + q, r0);
                    _mm_storeu_ps(dst + (p + 1) * SGEMM_NR + q, r1);
                    _mm_storeu_ps(dst + (p + 2) * SGEMM_NR + q, r2);
                    _mm_storeu_ps(dst + (p + 3) * SGEMM_NR + q, r3);
                }
#endif
        for (; p < kc; p++)
            for (int q = 0; q < cols; q++) dst[p * SGEMM_NR + q] = src[q][p];
        for (int p = 0; p < kc; p++)
            for (int q = cols; q < SGEMM_NR; q++) dst[p * SGEMM_NR + q] = 0.0f;
    }
}

/* C = beta * C (beta 0: zeros), for the cases with nothing to multiply. */
static void scale_c(int m, int n, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float *cij = &c[(size_t)i * ldc + j];
            *cij = beta == 0.0f ? 0.0f : beta * *cij;
        }
}

/* Per-thread packing buffers, kept between calls (no allocation per call once grown); the lock
 * makes concurrent callers take turns. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static float **g_pack;  /* g_pack[t]: thread t's A block (MC x KC) then B slice (KC x NC) */
static int g_npack;
static SgemmMicroKernel g_micro;
static SgemmMicroKernel12 g_micro12; /* NULL where only g_micro runs */

#define PACK_FLOATS ((size_t)SGEMM_MC * SGEMM_KC + (size_t)SGEMM_KC * SGEMM_NC)

static int g_portable;

void sgemm_use_portable(int on) {
    pthread_mutex_lock(&g_lock);
    g_portable = on;
    pthread_mutex_unlock(&g_lock);
}

static int sgemm_init(int threads) {
    /* Picked at each call, so that CNN_CPU_ISA and sgemm_use_portable apply at once. */
    g_micro = g_portable ? NULL : sgemm_micro_avx2();
    g_micro12 = g_micro ? sgemm_micro12_avx512() : NULL;
    if (!g_micro) g_micro = micro_6x16_c;
    if (threads <= g_npack) return 0;
    float **np = realloc(g_pack, (size_t)threads * sizeof *np);
    if (!np) return -1;
    g_pack = np;
    for (; g_npack < threads; g_npack++) {
        g_pack[g_npack] = aligned_alloc(64, sizeof(float) * PACK_FLOATS);
        if (!g_pack[g_npack]) return -1;
    }
    return 0;
}

typedef struct {
    int trans_a, trans_b, m, n, k, lda, ldb, ldc, kc_step;
    float alpha, beta;
    const float *a, *b;
    float *c;
    SgemmMicroKernel micro;
    SgemmMicroKernel12 micro12; /* two full row tiles at once, or NULL */
    const float *b_packed; /* B already packed by sgemm_pack_b, or NULL */
} GemmArgs;

/* C[i0:i1, j0:j1] (all of k) by one thread with its own buffers: KC slices in order, each
 * packs its B slice (per NC columns) and A blocks (per MC rows), then runs the tiles with the
 * B panel outer (it stays in L1 while the A block streams from L2). */
static void gemm_block(const GemmArgs *g, int i0, int i1, int j0, int j1, float *buf) {
    float *pack_a = buf, *pack_b = buf + (size_t)SGEMM_MC * SGEMM_KC;
    for (int p0 = 0; p0 < g->k; p0 += g->kc_step) {
        const int kc = g->k - p0 < g->kc_step ? g->k - p0 : g->kc_step;
        const float beta_pc = p0 == 0 ? g->beta : 1.0f;
        for (int jc = j0; jc < j1; jc += SGEMM_NC) {
            const int nc = j1 - jc < SGEMM_NC ? j1 - jc : SGEMM_NC;
            const int n_jr = (nc + SGEMM_NR - 1) / SGEMM_NR;
            if (!g->b_packed && !g->trans_b && nc % SGEMM_NR == 0 && g->ldb >= 1024) {
                /* Rows of B a page or more apart (the dense weights): pack row by row, each
                 * row read once, sequentially; a panel at a time would touch a new page every
                 * 64 bytes, which the prefetchers do not follow (dense forward -15%). Closer
                 * rows (an im2col panel in L2) pack faster a panel at a time. */
                for (int p = 0; p < kc; p++) {
                    const float *src = g->b + (size_t)(p0 + p) * g->ldb + jc;
                    for (int q = 0; q < n_jr; q++)
                        for (int e = 0; e < SGEMM_NR; e++)
                            pack_b[((size_t)q * kc + p) * SGEMM_NR + e] = src[q * SGEMM_NR + e];
                }
            } else {
                for (int q = 0; q < n_jr && !g->b_packed; q++) {
                    int cols = nc - q * SGEMM_NR < SGEMM_NR ? nc - q * SGEMM_NR : SGEMM_NR;
                    pack_b_panel(g->trans_b, g->b, g->ldb, jc + q * SGEMM_NR, cols, p0, kc,
                                 pack_b + (size_t)q * SGEMM_NR * kc);
                }
            }
            for (int ic = i0; ic < i1; ic += SGEMM_MC) {
                const int mc = i1 - ic < SGEMM_MC ? i1 - ic : SGEMM_MC;
                const int n_ir = (mc + SGEMM_MR - 1) / SGEMM_MR;
                /* A row-major A is read in place (6 row streams); a transposed one is packed
                 * (the pack reads 6 contiguous floats per step). A last partial row panel is
                 * always packed, with zero rows. */
                for (int t = 0; t < n_ir; t++) {
                    int rows = mc - t * SGEMM_MR < SGEMM_MR ? mc - t * SGEMM_MR : SGEMM_MR;
                    if (g->trans_a || rows < SGEMM_MR)
                        pack_a_panel(g->trans_a, g->a, g->lda, ic + t * SGEMM_MR, rows, p0, kc,
                                     pack_a + (size_t)t * SGEMM_MR * kc);
                }
                for (int jr = 0; jr < n_jr; jr++)
                    for (int ir = 0; ir < n_ir; ir++) {
                        const int i = ic + ir * SGEMM_MR, j = jc + jr * SGEMM_NR;
                        const int rows = i1 - i < SGEMM_MR ? i1 - i : SGEMM_MR;
                        const int cols = j1 - j < SGEMM_NR ? j1 - j : SGEMM_NR;
                        const float *ap = pack_a + (size_t)ir * SGEMM_MR * kc;
                        ptrdiff_t rs = 1, cs = SGEMM_MR, next = (ptrdiff_t)SGEMM_MR * kc;
                        if (!g->trans_a && rows == SGEMM_MR) {
                            ap = g->a + (size_t)i * g->lda + p0;
                            rs = g->lda;
                            cs = 1;
                            next = (ptrdiff_t)SGEMM_MR * g->lda;
                        }
                        const float *bp =
                            g->b_packed
                                ? g->b_packed + ((size_t)(jc / SGEMM_NR + jr) * g->k + p0) * SGEMM_NR
                                : pack_b + (size_t)jr * SGEMM_NR * kc;
                        float *ct = g->c + (size_t)i * g->ldc + j;
                        if (g->micro12 && cols == SGEMM_NR && i + 2 * SGEMM_MR <= i1 &&
                            ir + 1 < n_ir) { /* two full row tiles (both read the same way) */
                            g->micro12(kc, ap, ap + next, rs, cs, bp, ct, g->ldc, g->alpha,
                                       beta_pc);
                            ir++;
                        } else if (rows == SGEMM_MR && cols == SGEMM_NR) {
                            g->micro(kc, ap, rs, cs, bp, ct, g->ldc, g->alpha, beta_pc);
                        } else { /* edge: the full tile into a buffer, then the part that exists */
                            float tile[SGEMM_MR * SGEMM_NR];
                            g->micro(kc, ap, rs, cs, bp, tile, SGEMM_NR, 1.0f, 0.0f);
                            for (int r = 0; r < rows; r++)
                                for (int qq = 0; qq < cols; qq++) {
                                    float *cq = &ct[(size_t)r * g->ldc + qq];
                                    float v = g->alpha * tile[r * SGEMM_NR + qq];
                                    *cq = beta_pc == 0.0f ? v : v + beta_pc * *cq;
                                }
                        }
                    }
            }
        }
    }
}

int sgemm_kc_step(int k) {
    const int n_pc = (k + SGEMM_KC - 1) / SGEMM_KC;
    return n_pc > 0 ? (k + n_pc - 1) / n_pc : 1;
}

static GemmArgs gemm_args(int trans_a, int trans_b, int m, int n, int k, float alpha,
                          const float *a, int lda, const float *b, int ldb, float beta, float *c,
                          int ldc) {
    GemmArgs g = {trans_a, trans_b, m, n, k, lda, ldb, ldc, 0, alpha, beta, a, b, c,
                  g_micro, g_micro12, NULL};
    g.kc_step = sgemm_kc_step(k);
    return g;
}

void sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
           const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    const int threads = kernels_threads_for((double)m * n * k, (long long)m * n);
    pthread_mutex_lock(&g_lock);
    if (sgemm_init(threads) != 0) { /* out of memory for the buffers: still give the answer */
        pthread_mutex_unlock(&g_lock);
        sgemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const GemmArgs g = gemm_args(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    /* C is cut into blocks that threads take one at a time (dynamic: a thread slowed by another
     * process just takes fewer; one barrier per call). Halve the larger side until there are
     * about 4 blocks per thread. Each block re-packs its share of A and B, so blocks stay at
     * least 48 x 64. Which thread computes an element never changes its bits. */
    int bm = SGEMM_MC, bn = SGEMM_NC;
    for (;;) {
        int em = m < bm ? m : bm, en = n < bn ? n : bn;
        int blocks = ((m + bm - 1) / bm) * ((n + bn - 1) / bn);
        if (threads == 1 || blocks >= 4 * threads) break;
        if (em >= en && em > 48) bm = ((em / 2 + SGEMM_MR - 1) / SGEMM_MR) * SGEMM_MR;
        else if (en > 64) bn = ((en / 2 + SGEMM_NR - 1) / SGEMM_NR) * SGEMM_NR;
        else if (em > 48) bm = ((em / 2 + SGEMM_MR - 1) / SGEMM_MR) * SGEMM_MR;
        else break;
    }
    const int nbm = (m + bm - 1) / bm, nbn = (n + bn - 1) / bn;
    float **pack = g_pack;
    KERNELS_OMP(omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (int t = 0; t < nbm * nbn; t++) {
        const int i0 = (t % nbm) * bm, j0 = (t / nbm) * bn;
        const int i1 = i0 + bm < m ? i0 + bm : m, j1 = j0 + bn < n ? j0 + bn : n;
        gemm_block(&g, i0, i1, j0, j1, pack[kernels_thread_id()]);
    }
    pthread_mutex_unlock(&g_lock);
}

/* ---- single-threaded GEMMs inside a caller's parallel region (sgemm_microkernel.h) ---------- */

int sgemm_serial_begin(int threads) {
    pthread_mutex_lock(&g_lock);
    if (sgemm_init(threads) != 0) {
        pthread_mutex_unlock(&g_lock);
        return -1;
    }
    return 0;
}

void sgemm_serial_end(void) { pthread_mutex_unlock(&g_lock); }

void sgemm_serial(int thread, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    const GemmArgs g = gemm_args(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    gemm_block(&g, 0, m, 0, n, g_pack[thread]);
}

size_t sgemm_packed_b_floats(int k, int n) {
    return (size_t)((n + SGEMM_NR - 1) / SGEMM_NR) * SGEMM_NR * (k > 0 ? k : 0);
}

void sgemm_pack_b(int trans_b, int k, int n, const float *b, int ldb, float *bp) {
    for (int q = 0; q * SGEMM_NR < n; q++) {
        int cols = n - q * SGEMM_NR < SGEMM_NR ? n - q * SGEMM_NR : SGEMM_NR;
        pack_b_panel(trans_b, b, ldb, q * SGEMM_NR, cols, 0, k, bp + (size_t)q * SGEMM_NR * k);
    }
}

void sgemm_serial_packed_b(int thread, int trans_a, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *bp, float beta, float *c,
                           int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    GemmArgs g = gemm_args(trans_a, 0, m, n, k, alpha, a, lda, NULL, 0, beta, c, ldc);
    g.b_packed = bp;
    gemm_block(&g, 0, m, 0, n, g_pack[thread]);
}
