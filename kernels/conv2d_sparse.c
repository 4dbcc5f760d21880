/* conv2d_sparse.c: see conv2d_sparse.h.
 *
 *   xi [H,W,C] (NHWC, one image)    w [KH,KW,C,K] (HWIO)    yi [OH,OW,K]
 *
 * First xi's nonzeros are listed per input pixel, in channel order, as (offset, value) pairs.
 * Then, per tap row kh and output row whose window has that row inside the image, each output
 * pixel of the row takes one run of nonzeros: along a tap row the window's input pixels are
 * adjacent, so their nonzeros are adjacent in the list, and the nonzero at input column iw,
 * channel c meets the filter row
 * w[kh, iw - iw0, c, :] (iw0: the window's first column), at (kh*KW - iw0)*C*K + (iw*C + c)*K.
 * The pixel's K values are loaded into vector registers (set to 0 for the first tap row), take
 * one FMA per nonzero and vector, and are stored back.
 *
 * Why this order (measured, docs/kernels-cpu.md steps 25 and 30): the accumulators stay in
 * registers over a whole tap row (5 taps), and a tap row's filter slice (conv2: 5 x 32 x 64
 * floats, 40 KiB) stays in L1 while all the image's pixels take it, coming from L2 once per
 * image (per output row it came 14 times: +6-10%). Per tap instead, the runs are 5 times as many
 * and as short, and their loads, stores and loop exits cost more than the FMAs (+45% at 25%
 * nonzero); per pixel over all 25 taps, the whole filter streams from L2 (+20%). Each value's
 * terms keep their order (the tap rows in order, then the nonzeros), whatever the loops.
 *
 * With AVX-512, conv2's shape (KW = 5, stride 1, K = 64) takes the scatter loops below instead:
 * the same runs, walked per input column into 20 accumulators (step 32). With AVX2, where
 * stride_w = 1 and K % 32 == 0, forward_pairs_avx2: 32 channels and two pixels a pass (step 81). */
#include "kernels/conv2d_sparse.h"
#include "kernels/conv_window.h"
#include "kernels/cpu_dispatch.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    int32_t off; /* (iw*C + c) * K: input column iw, channel c */
    float v;     /* x, not zero */
} Nonzero;

/* Scratch layout: start[H*W + 1] (int32), then H*W*C Nonzero slots. */
size_t conv2d_sparse_image_floats(const Conv2dShape *s) {
    const size_t pixels = (size_t)s->h * s->w;
    return pixels + 1 + 2 * pixels * (size_t)s->c;
}

/* One pixel's C channels xp into the slots from n: each nonzero (x != 0: -0 is zero, NaN is not)
 * as (off + c*K, x), in channel order; returns the next free slot. */
typedef size_t (*ListPixelFn)(const float *xp, int C, int K, int32_t off, Nonzero *nz, size_t n);

static size_t list_pixel_base(const float *xp, int C, int K, int32_t off, Nonzero *nz, size_t n) {
    /* No branch on each value (zero or not at random: a branch mispredicts often); each is
     * written to the next slot, which advances past nonzeros only (measured: 4x faster). */
    for (int c = 0; c < C; c++) {
        nz[n].off = off + c * K;
        nz[n].v = xp[c];
        n += xp[c] != 0.0f;
    }
    return n;
}

/* xi's nonzeros per input pixel q: nz[start[q] .. start[q+1]). Returns 0, or -1 when there are
 * more than limit (a dense image stops early). */
static inline __attribute__((always_inline)) int
list_nonzeros_body(const Conv2dShape *s, const float *xi, size_t limit, int32_t *start,
                   Nonzero *nz, ListPixelFn pixel) {
    const int C = s->c, K = s->k, pixels = s->h * s->w;
    size_t n = 0;
    for (int q = 0; q < pixels; q++) {
        if (n > limit) return -1;
        start[q] = (int32_t)n;
        n = pixel(xi + (size_t)q * C, C, K, (q % s->w) * C * K, nz, n);
    }
    if (n > limit) return -1;
    start[pixels] = (int32_t)n;
    return 0;
}

static int list_nonzeros(const Conv2dShape *s, const float *xi, size_t limit, int32_t *start,
                         Nonzero *nz) {
    return list_nonzeros_body(s, xi, limit, start, nz, list_pixel_base);
}

/* One run: y[0:kb] = (first ? 0 : y[0:kb]), then y = fmaf(v, w[base + off + 0:kb], y) for each
 * nonzero (off, v) of [e, end), in order. */
typedef void (*RunFn)(const Nonzero *e, const Nonzero *end, const float *w, ptrdiff_t base,
                      int first, float *y, int kb);

static void run_base(const Nonzero *e, const Nonzero *end, const float *w, ptrdiff_t base,
                     int first, float *y, int kb) {
    if (first) memset(y, 0, (size_t)kb * sizeof *y);
    for (; e < end; e++) {
        const float v = e->v, *wr = w + (base + e->off);
        for (int k = 0; k < kb; k++) y[k] = fmaf(v, wr[k], y[k]);
    }
}

/* yi[p, :] += b for each output pixel p (b may be NULL), in each clone's vectors. */
static inline __attribute__((always_inline)) void add_bias(const Conv2dShape *s, const float *b,
                                                           float *yi) {
    if (!b) return;
    for (size_t i = 0; i < (size_t)s->oh * s->ow; i++)
        for (int k = 0; k < s->k; k++) yi[i * s->k + k] += b[k];
}

/* Output row oh's window: its tap rows [kh0, kh1) inside the image, and the input row of tap
 * row 0 (ih0, may be < 0). The row loops of every clone start from it. */
typedef struct {
    int ih0, kh0, kh1;
} RowTaps;
static inline RowTaps row_taps(const Conv2dShape *s, int oh) {
    RowTaps t;
    t.ih0 = conv_window_taps(oh, s->stride_h, s->pad_top, s->kh, s->h, &t.kh0, &t.kh1);
    return t;
}

/* The loops of one image, for each clone's run. */
static inline __attribute__((always_inline)) void
forward_body(const Conv2dShape *s, const int32_t *start, const Nonzero *nz, const float *w,
             const float *b, float *yi, RunFn run) {
    const int C = s->c, K = s->k, OW = s->ow;
    for (int kh = 0; kh < s->kh; kh++)
        for (int oh = 0; oh < s->oh; oh++) {
            const RowTaps t = row_taps(s, oh);
            const int ih0 = t.ih0, kh0 = t.kh0, kh1 = t.kh1;
            float *yr = yi + (size_t)oh * OW * K;
            if (kh == 0 && kh0 == kh1) /* no tap row inside */
                memset(yr, 0, (size_t)OW * K * sizeof *yr);
            if (kh < kh0 || kh >= kh1) continue;
            const int32_t *row = start + (size_t)(ih0 + kh) * s->w;
            for (int ow = 0; ow < OW; ow++) {
                int kw0, kw1;
                const int iw0 =
                    conv_window_taps(ow, s->stride_w, s->pad_left, s->kw, s->w, &kw0, &kw1);
                const ptrdiff_t base = ((ptrdiff_t)kh * s->kw - iw0) * C * K;
                run(nz + row[iw0 + kw0], nz + row[iw0 + kw1], w, base, kh == kh0,
                    yr + (size_t)ow * K, K);
            }
        }
    add_bias(s, b, yi);
}

static void forward_base(const Conv2dShape *s, const int32_t *start, const Nonzero *nz,
                         const float *w, const float *b, float *yi) {
    forward_body(s, start, nz, w, b, yi, run_base);
}

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>

/* A run over V vectors of `lanes` floats, its accumulators in registers (V is a constant at
 * each use, so the loops unroll): written once for both vector widths. */
#define DEFINE_RUN_VECTORS(name, isa, vec, lanes, zero, load, store, fmadd, bcast)             \
    static inline __attribute__((always_inline, target(isa))) void name(                      \
        const Nonzero *e, const Nonzero *end, const float *w, ptrdiff_t base, int first,      \
        float *y, const int V) {                                                               \
        vec acc[8];                                                                            \
        for (int j = 0; j < V; j++) acc[j] = first ? zero() : load(y + lanes * j);            \
        for (; e < end; e++) {                                                                 \
            const vec v = bcast(e->v);                                                         \
            const float *wr = w + (base + e->off);                                             \
            for (int j = 0; j < V; j++) acc[j] = fmadd(v, load(wr + lanes * j), acc[j]);       \
        }                                                                                      \
        for (int j = 0; j < V; j++) store(y + lanes * j, acc[j]);                              \
    }

DEFINE_RUN_VECTORS(run_vectors_avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps,
                   _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_set1_ps)
DEFINE_RUN_VECTORS(run_vectors_avx512, "avx512f", __m512, 16, _mm512_setzero_ps,
                   _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_set1_ps)

/* 64 channels at a time (8 of AVX2's 16 registers, 4 of AVX-512's 32), then one vector at a
 * time, then the last kb % lanes as run_base: each value's terms in the same order. */
static inline __attribute__((always_inline, target("avx2,fma"))) void
run_avx2(const Nonzero *e, const Nonzero *end, const float *w, ptrdiff_t base, int first, float *y,
         int kb) {
    int k = 0;
    for (; k + 64 <= kb; k += 64) run_vectors_avx2(e, end, w, base + k, first, y + k, 8);
    for (; k + 8 <= kb; k += 8) run_vectors_avx2(e, end, w, base + k, first, y + k, 1);
    if (k < kb) run_base(e, end, w, base + k, first, y + k, kb - k);
}
static inline __attribute__((always_inline, target("avx512f"))) void
run_avx512(const Nonzero *e, const Nonzero *end, const float *w, ptrdiff_t base, int first,
           float *y, int kb) {
    int k = 0;
    for (; k + 64 <= kb; k += 64) run_vectors_avx512(e, end, w, base + k, first, y + k, 4);
    for (; k + 16 <= kb; k += 16) run_vectors_avx512(e, end, w, base + k, first, y + k, 1);
    if (k < kb) run_base(e, end, w, base + k, first, y + k, kb - k);
}

/* The AVX-512 loops where the rows have KW = 5 taps at stride 1 and K is a multiple of 64 (conv2):
 * each nonzero is scattered to the 5 output pixels its tap row meets, into 5 x 4 independent
 * accumulators. The loops above give each output pixel 4 accumulators, each taking one FMA per
 * nonzero in a chain, so the FMA's 4-cycle latency bounds them at one nonzero-tap per 4 cycles
 * (measured alone: 0.96 ns per nonzero-tap; 20 chains: 0.63 ns, 2 FMAs a cycle less the loads).
 * Input column iw meets output column ow = iw + pad_left - kw, kw = 0..4. Each output value
 * still takes its terms in order: tap rows in order (kh outer), then iw (so kw) ascending, then
 * the nonzero channels in order. The accumulators move between y and registers once per output
 * pixel and tap row; through a row buffer with memcpy/memset per row instead, the calls cost
 * more than the registers saved (docs/kernels-cpu.md step 32). */
#define SCATTER_KW 5
static int scatter_fits(const Conv2dShape *s) {
    return s->kw == SCATTER_KW && s->stride_w == 1 && s->k % 64 == 0;
}

/* One input column: the 5 output pixels it meets are the register sets s0..s4 (s0 takes tap
 * kw = 4, s4 tap kw = 0); wb: w[kh, 0, 0, kb] less iw*C*K, as each nonzero's offset holds
 * (iw*C + c)*K. */
static inline __attribute__((always_inline, target("avx512f"))) void
scatter_pixel(const Nonzero *e, const Nonzero *end, const float *wb, ptrdiff_t CK, __m512 *s0,
              __m512 *s1, __m512 *s2, __m512 *s3, __m512 *s4) {
    const float *w4 = wb + 4 * CK, *w3 = wb + 3 * CK, *w2 = wb + 2 * CK, *w1 = wb + CK;
    for (; e < end; e++) {
        const __m512 v = _mm512_set1_ps(e->v);
        const ptrdiff_t off = e->off;
        for (int j = 0; j < 4; j++) {
            s0[j] = _mm512_fmadd_ps(v, _mm512_loadu_ps(w4 + off + 16 * j), s0[j]);
            s1[j] = _mm512_fmadd_ps(v, _mm512_loadu_ps(w3 + off + 16 * j), s1[j]);
            s2[j] = _mm512_fmadd_ps(v, _mm512_loadu_ps(w2 + off + 16 * j), s2[j]);
            s3[j] = _mm512_fmadd_ps(v, _mm512_loadu_ps(w1 + off + 16 * j), s3[j]);
            s4[j] = _mm512_fmadd_ps(v, _mm512_loadu_ps(wb + off + 16 * j), s4[j]);
        }
    }
}

/* The row's output pixels as the sets see them: slot q (= iw + t for set t of column iw) is
 * output column q + pad_left - (KW-1); slots outside [0, OW) are discarded, and a first tap row
 * starts every slot at 0. */
typedef struct {
    float *y;      /* y[oh, 0, kb] */
    ptrdiff_t K;   /* y's pixel stride */
    int ow0, OW;   /* slot q is output column q - ow0 */
    int first;
} ScatterRow;

static inline __attribute__((always_inline, target("avx512f"))) void
scatter_load(const ScatterRow *r, int q, __m512 *S) {
    const int ow = q - r->ow0;
    if (r->first || ow < 0 || ow >= r->OW) {
        for (int j = 0; j < 4; j++) S[j] = _mm512_setzero_ps();
        return;
    }
    for (int j = 0; j < 4; j++) S[j] = _mm512_loadu_ps(r->y + ow * r->K + 16 * j);
}
static inline __attribute__((always_inline, target("avx512f"))) void
scatter_store(const ScatterRow *r, int q, const __m512 *S) {
    const int ow = q - r->ow0;
    if (ow < 0 || ow >= r->OW) return;
    for (int j = 0; j < 4; j++) _mm512_storeu_ps(r->y + ow * r->K + 16 * j, S[j]);
}

/* Column iw with sets (S0..S4); then S0's slot is complete and stored, and S0 takes slot iw + 5,
 * unless iw was the last column (then S1..S4 are stored, those inside the row). So the names
 * rotate: scatter_row's loop is unrolled 5 times to rotate them without moves. */
#define SCATTER_STEP(S0, S1, S2, S3, S4)                                                       \
    do {                                                                                       \
        scatter_pixel(nz + in[iw], nz + in[iw + 1], w - iw * CK, CK, S0, S1, S2, S3, S4);     \
        scatter_store(r, iw, S0);                                                              \
        if (++iw == W) {                                                                       \
            scatter_store(r, iw, S1); scatter_store(r, iw + 1, S2);                            \
            scatter_store(r, iw + 2, S3); scatter_store(r, iw + 3, S4);                        \
            return;                                                                            \
        }                                                                                      \
        scatter_load(r, iw + 4, S0);                                                           \
    } while (0)

/* One input row's nonzeros (in[0..W] into nz) into one output row; w: w[kh, 0, 0, kb]. */
__attribute__((target("avx512f"))) static void scatter_row(const Nonzero *nz, const int32_t *in,
                                                           int W, const float *w, ptrdiff_t CK,
                                                           const ScatterRow *r) {
    __m512 A[4], B[4], C[4], D[4], E[4];
    scatter_load(r, 0, A); scatter_load(r, 1, B); scatter_load(r, 2, C);
    scatter_load(r, 3, D); scatter_load(r, 4, E);
    for (int iw = 0;;) {
        SCATTER_STEP(A, B, C, D, E);
        SCATTER_STEP(B, C, D, E, A);
        SCATTER_STEP(C, D, E, A, B);
        SCATTER_STEP(D, E, A, B, C);
        SCATTER_STEP(E, A, B, C, D);
    }
}

__attribute__((target("avx512f"))) static void
forward_scatter_avx512(const Conv2dShape *s, const int32_t *start, const Nonzero *nz,
                       const float *w, const float *b, float *yi) {
    const int C = s->c, K = s->k, OW = s->ow, W = s->w;
    const ptrdiff_t CK = (ptrdiff_t)C * K;
    for (int kb = 0; kb < K; kb += 64)
        for (int kh = 0; kh < s->kh; kh++)
            for (int oh = 0; oh < s->oh; oh++) {
                const RowTaps t = row_taps(s, oh);
                const int ih0 = t.ih0, kh0 = t.kh0, kh1 = t.kh1;
                float *yr = yi + (size_t)oh * OW * K + kb;
                const int inside = kh >= kh0 && kh < kh1;
                const int32_t *in = inside ? start + (size_t)(ih0 + kh) * W : start;
                /* outside, or an input row of zeros: nothing to add, but the row's first pass
                 * (kh0, or 0 where no tap row is inside) sets it to 0 */
                if (!inside || in[0] == in[W]) {
                    if (kh == (kh0 < kh1 ? kh0 : 0))
                        for (int ow = 0; ow < OW; ow++) memset(yr + (size_t)ow * K, 0, 64 * 4);
                    continue;
                }
                const ScatterRow r = {yr, K, SCATTER_KW - 1 - s->pad_left, OW, kh == kh0};
                /* w[kh, kw, c, kb:] = w + (kh*KW + kw)*C*K + c*K + kb, and off - iw*C*K = c*K */
                scatter_row(nz, in, W, w + (ptrdiff_t)kh * SCATTER_KW * CK + kb, CK, &r);
            }
    add_bias(s, b, yi);
}

/* AVX2 where stride_w = 1 and K % 32 == 0 (conv2): 32 channels at a time (the loop outermost),
 * two adjacent output pixels of a row in one pass over their nonzeros, 4 + 4 accumulators. Why:
 * AVX2 has 16 registers, so forward_avx2's runs hold one pixel's 64 channels (8 chains), and a
 * tap row's filter slice for them (conv2: 5 x 32 x 64 floats, 40 KiB) overflows a Zen 3's 32
 * KiB L1: its FMAs' w loads came from L2 at about one vector a cycle. For 32 channels the
 * slice is 20 KiB, and two pixels keep 8 chains going; the pixels share all but one column
 * (ow's first, ow+1's last), so each shared nonzero's broadcast serves both. Each output value
 * takes its terms in the runs' order: tap rows, then columns, then channels (the same bits). */
#define PAIR_BLOCK 32
static inline __attribute__((always_inline, target("avx2,fma"))) void
run_pair_avx2(const Nonzero *head, const Nonzero *shared, const Nonzero *tail,
              const Nonzero *end, const float *w0, const float *w1, int first, float *y0,
              float *y1) {
    __m256 a[4], b[4];
    for (int j = 0; j < 4; j++) {
        a[j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y0 + 8 * j);
        b[j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y1 + 8 * j);
    }
    const Nonzero *e = head;
    for (; e < shared; e++) { /* ow's first column */
        const __m256 v = _mm256_set1_ps(e->v);
        for (int j = 0; j < 4; j++)
            a[j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(w0 + e->off + 8 * j), a[j]);
    }
    for (; e < tail; e++) { /* the columns both windows hold */
        const __m256 v = _mm256_set1_ps(e->v);
        for (int j = 0; j < 4; j++) {
            a[j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(w0 + e->off + 8 * j), a[j]);
            b[j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(w1 + e->off + 8 * j), b[j]);
        }
    }
    for (; e < end; e++) { /* ow+1's last column */
        const __m256 v = _mm256_set1_ps(e->v);
        for (int j = 0; j < 4; j++)
            b[j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(w1 + e->off + 8 * j), b[j]);
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(y0 + 8 * j, a[j]);
        _mm256_storeu_ps(y1 + 8 * j, b[j]);
    }
}

static int pairs_fit(const Conv2dShape *s) { return s->stride_w == 1 && s->k % PAIR_BLOCK == 0; }

__attribute__((target("avx2,fma"))) static void forward_pairs_avx2(const Conv2dShape *s,
                                                                   const int32_t *start,
                                                                   const Nonzero *nz,
                                                                   const float *w, const float *b,
                                                                   float *yi) {
    const int C = s->c, K = s->k, OW = s->ow, KW = s->kw;
    const ptrdiff_t CK = (ptrdiff_t)C * K;
    for (int kb = 0; kb < K; kb += PAIR_BLOCK)
        for (int kh = 0; kh < s->kh; kh++)
            for (int oh = 0; oh < s->oh; oh++) {
                const RowTaps t = row_taps(s, oh);
                const int ih0 = t.ih0, kh0 = t.kh0, kh1 = t.kh1;
                float *yr = yi + (size_t)oh * OW * K + kb;
                if (kh == 0 && kh0 == kh1) /* no tap row inside */
                    for (int ow = 0; ow < OW; ow++)
                        memset(yr + (size_t)ow * K, 0, PAIR_BLOCK * sizeof *yr);
                if (kh < kh0 || kh >= kh1) continue;
                const int32_t *row = start + (size_t)(ih0 + kh) * s->w;
                for (int ow = 0; ow < OW;) {
                    int kw0, kw1;
                    const int iw0 = conv_window_taps(ow, 1, s->pad_left, KW, s->w, &kw0, &kw1);
                    const ptrdiff_t base = ((ptrdiff_t)kh * KW - iw0) * CK + kb;
                    float *y0 = yr + (size_t)ow * K;
                    /* both windows whole: ow's from column iw0 >= 0, ow+1's to iw0 + KW < W */
                    if (ow + 1 < OW && kw0 == 0 && kw1 == KW && iw0 + KW < s->w) {
                        /* ow+1's window: iw0+1 .. iw0+KW, its tap kw at w row kw = ow's kw+1 */
                        run_pair_avx2(nz + row[iw0], nz + row[iw0 + 1], nz + row[iw0 + KW],
                                      nz + row[iw0 + KW + 1], w + base, w + base - CK,
                                      kh == kh0, y0, y0 + K);
                        ow += 2;
                    } else {
                        run_vectors_avx2(nz + row[iw0 + kw0], nz + row[iw0 + kw1], w, base,
                                         kh == kh0, y0, PAIR_BLOCK / 8);
                        ow += 1;
                    }
                }
            }
    add_bias(s, b, yi);
}

__attribute__((target("avx2,fma"))) static void forward_avx2(const Conv2dShape *s,
                                                             const int32_t *start,
                                                             const Nonzero *nz, const float *w,
                                                             const float *b, float *yi) {
    forward_body(s, start, nz, w, b, yi, run_avx2);
}
__attribute__((target("avx512f"))) static void forward_avx512(const Conv2dShape *s,
                                                              const int32_t *start,
                                                              const Nonzero *nz, const float *w,
                                                              const float *b, float *yi) {
    forward_body(s, start, nz, w, b, yi, run_avx512);
}
#endif

#if KERNELS_HAVE_AVX2_CLONES
/* list_pixel_base where C % 8 == 0: 8 channels at a time as (off, v) pairs in 64-bit lanes, the
 * nonzero ones (compared unordered-or-not-equal: the same set) compressed in a register and
 * stored to the next slots. The same lists; the scalar loop took 2.5% of the MNIST step
 * (docs/kernels-cpu.md, step 57). */
static inline __attribute__((always_inline, target("avx512f"))) size_t
list_pixel_avx512(const float *xp, int C, int K, int32_t off, Nonzero *nz, size_t n) {
    const __m256i lane_off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                _mm256_set1_epi32(K)); /* c * K */
    for (int c = 0; c < C; c += 8) {
        const __m256 v = _mm256_loadu_ps(xp + c);
        const __mmask8 keep =
            (__mmask8)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        const __m256i o = _mm256_add_epi32(lane_off, _mm256_set1_epi32(off + c * K));
        /* Nonzero {off, v}: off in the low 32 bits of each pair */
        const __m512i pair = _mm512_or_si512(
            _mm512_cvtepu32_epi64(o),
            _mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm256_castps_si256(v)), 32));
        /* all 8 slots written (the compressed pairs, then zeros the next slots take over):
         * within the list's pixels * C slots, as C % 8 == 0 and n <= q * C + c */
        _mm512_storeu_si512(nz + n, _mm512_maskz_compress_epi64(keep, pair));
        n += (size_t)__builtin_popcount(keep);
    }
    return n;
}
__attribute__((target("avx512f"))) static int list_nonzeros_avx512(const Conv2dShape *s,
                                                                   const float *xi, size_t limit,
                                                                   int32_t *start, Nonzero *nz) {
    return list_nonzeros_body(s, xi, limit, start, nz, list_pixel_avx512);
}
#endif

int conv2d_sparse_forward_image(const Conv2dShape *s, const float *xi, const float *w,
                                const float *b, float *yi, float *scratch) {
    const size_t pixels = (size_t)s->h * s->w;
    int32_t *start = (int32_t *)(void *)scratch;
    Nonzero *nz = (Nonzero *)(void *)(scratch + pixels + 1);
    const size_t limit = (size_t)(CONV_SPARSE_MAX_DENSITY * (double)(pixels * s->c));
#if KERNELS_HAVE_AVX2_CLONES
    const int isa = kernels_cpu_isa();
    const int listed = isa >= KERNELS_ISA_AVX512 && s->c % 8 == 0
                           ? list_nonzeros_avx512(s, xi, limit, start, nz)
                           : list_nonzeros(s, xi, limit, start, nz);
    if (listed != 0) return 0;
    if (isa >= KERNELS_ISA_AVX512 && scatter_fits(s))
        forward_scatter_avx512(s, start, nz, w, b, yi);
    else if (isa >= KERNELS_ISA_AVX512) forward_avx512(s, start, nz, w, b, yi);
    else if (isa >= KERNELS_ISA_AVX2 && pairs_fit(s))
        forward_pairs_avx2(s, start, nz, w, b, yi);
    else if (isa >= KERNELS_ISA_AVX2) forward_avx2(s, start, nz, w, b, yi);
    else forward_base(s, start, nz, w, b, yi);
#else
    if (list_nonzeros(s, xi, limit, start, nz) != 0) return 0;
    forward_base(s, start, nz, w, b, yi);
#endif
    return 1;
}
