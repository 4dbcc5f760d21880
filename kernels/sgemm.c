/* sgemm.c: row-major single-precision GEMM, C[M,N] = alpha * op(A) * op(B) + beta * C.
 * beta == 0 overwrites C without reading it (C may hold garbage or NaN).
 *
 * sgemm_reference is the plain triple loop. sgemm is a packed, cache-blocked GEMM in the
 * BLIS/GotoBLAS style:
 *   for each NC-wide column block of C (jc)
 *     for each KC-deep slice of the sum (pc)        <- B slice packed once [KC x NC]
 *       for each MC-high row block of C (ic)        <- A block packed [MC x KC]
 *         every MR x NR tile: micro-kernel over kc (sgemm_microkernel.h)
 * Packing turns every transpose case into the same contiguous panels. Threads (OpenMP) split
 * the packing and the tiles; each C element is summed by one thread in a fixed order (tiles
 * over p in order, KC slices in order), so results are bit-identical for any thread count. */
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/sgemm_microkernel.h"

#include <pthread.h>
#include <stdlib.h>

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

/* The portable micro-kernel: plain loops over a local tile the compiler vectorises. */
static void micro_6x16_c(int kc, const float *a, const float *b, float *c, int ldc, float alpha,
                         float beta) {
    float acc[SGEMM_MR][SGEMM_NR] = {{0}};
    for (int p = 0; p < kc; p++, a += SGEMM_MR, b += SGEMM_NR)
        for (int r = 0; r < SGEMM_MR; r++)
            for (int j = 0; j < SGEMM_NR; j++) acc[r][j] += a[r] * b[j];
    for (int r = 0; r < SGEMM_MR; r++)
        for (int j = 0; j < SGEMM_NR; j++) {
            float *cj = &c[(size_t)r * ldc + j];
            *cj = alpha * acc[r][j] + (beta == 0.0f ? 0.0f : beta * *cj);
        }
}

/* One process-wide set of packing buffers (fixed size), so no allocation per call; the lock
 * makes concurrent callers take turns. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static float *g_pack_a, *g_pack_b;
static SgemmMicroKernel g_micro;

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
        /* NR row streams in (rows of the stored B), contiguous NR-float rows out. */
        const float *src[SGEMM_NR];
        for (int q = 0; q < cols; q++) src[q] = b + (size_t)(j + q) * ldb + p0;
        for (int p = 0; p < kc; p++)
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

static int sgemm_init(void) {
    if (g_pack_a) return 0;
    g_pack_a = aligned_alloc(64, sizeof(float) * SGEMM_MC * SGEMM_KC);
    g_pack_b = aligned_alloc(64, sizeof(float) * SGEMM_KC * SGEMM_NC);
    if (!g_pack_a || !g_pack_b) {
        free(g_pack_a);
        free(g_pack_b);
        g_pack_a = g_pack_b = NULL;
        return -1;
    }
    g_micro = sgemm_micro_avx2();
    if (!g_micro) g_micro = micro_6x16_c;
    return 0;
}

void sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
           const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    pthread_mutex_lock(&g_lock);
    if (sgemm_init() != 0) { /* out of memory for 1.8 MiB of buffers: still give the answer */
        pthread_mutex_unlock(&g_lock);
        sgemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const SgemmMicroKernel micro = g_micro;
    float *const pack_a = g_pack_a, *const pack_b = g_pack_b;
    /* KC slices of equal depth (k = 800 -> 4 x 200, not 3 x 256 + 32). */
    const int n_pc = (k + SGEMM_KC - 1) / SGEMM_KC;
    const int kc_step = (k + n_pc - 1) / n_pc;
    /* Threads only pay off above ~a million multiply-adds. */
    const int parallel = (double)m * n * k >= 1e6;
    (void)parallel;

    KERNELS_OMP(omp parallel if (parallel))
    for (int jc = 0; jc < n; jc += SGEMM_NC) {
        const int nc = n - jc < SGEMM_NC ? n - jc : SGEMM_NC;
        const int n_jr = (nc + SGEMM_NR - 1) / SGEMM_NR;
        for (int p0 = 0; p0 < k; p0 += kc_step) {
            const int kc = k - p0 < kc_step ? k - p0 : kc_step;
            const float beta_pc = p0 == 0 ? beta : 1.0f;
            for (int ic = 0; ic < m; ic += SGEMM_MC) {
                const int mc = m - ic < SGEMM_MC ? m - ic : SGEMM_MC;
                const int n_ir = (mc + SGEMM_MR - 1) / SGEMM_MR;
                /* Pack this A block, and the B slice on the first row block. */
                const int n_pack = n_ir + (ic == 0 ? n_jr : 0);
                KERNELS_OMP(omp for schedule(static))
                for (int t = 0; t < n_pack; t++) {
                    if (t < n_ir) {
                        int rows = mc - t * SGEMM_MR < SGEMM_MR ? mc - t * SGEMM_MR : SGEMM_MR;
                        pack_a_panel(trans_a, a, lda, ic + t * SGEMM_MR, rows, p0, kc,
                                     pack_a + (size_t)t * SGEMM_MR * kc);
                    } else {
                        int q = t - n_ir;
                        int cols = nc - q * SGEMM_NR < SGEMM_NR ? nc - q * SGEMM_NR : SGEMM_NR;
                        pack_b_panel(trans_b, b, ldb, jc + q * SGEMM_NR, cols, p0, kc,
                                     pack_b + (size_t)q * SGEMM_NR * kc);
                    }
                }
                /* Tiles, B panel outer (it stays in L1 while the A block streams from L2). */
                KERNELS_OMP(omp for schedule(static))
                for (int t = 0; t < n_ir * n_jr; t++) {
                    const int jr = t / n_ir, ir = t % n_ir;
                    const int i = ic + ir * SGEMM_MR, j = jc + jr * SGEMM_NR;
                    const int rows = m - i < SGEMM_MR ? m - i : SGEMM_MR;
                    const int cols = n - j < SGEMM_NR ? n - j : SGEMM_NR;
                    const float *ap = pack_a + (size_t)ir * SGEMM_MR * kc;
                    const float *bp = pack_b + (size_t)jr * SGEMM_NR * kc;
                    float *ct = c + (size_t)i * ldc + j;
                    if (rows == SGEMM_MR && cols == SGEMM_NR) {
                        micro(kc, ap, bp, ct, ldc, alpha, beta_pc);
                    } else { /* edge tile: full tile into a buffer, then the part that exists */
                        float tile[SGEMM_MR * SGEMM_NR];
                        micro(kc, ap, bp, tile, SGEMM_NR, 1.0f, 0.0f);
                        for (int r = 0; r < rows; r++)
                            for (int q = 0; q < cols; q++) {
                                float *cq = &ct[(size_t)r * ldc + q];
                                float v = alpha * tile[r * SGEMM_NR + q];
                                *cq = beta_pc == 0.0f ? v : v + beta_pc * *cq;
                            }
                    }
                }
            }
        }
    }
    pthread_mutex_unlock(&g_lock);
}
