/* dense.c: fully connected layer on row-major x[N,in], kernel w[in,out], y[N,out], via sgemm, or
 * over x's nonzeros where x is mostly zeros. */
#include "kernels/kernels.h"
#include "kernels/adam.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/dense_narrow.h"
#include "kernels/parallel.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- x mostly zeros: dense1's input is pool2's output, ~95% zeros on MNIST after the first ~20
 * steps (bench_relu_sparsity). Then the forward and the filter gradient go over x's nonzeros by
 * input (column) instead of the GEMM: each w row (forward) or dw row (filter gradient) is read or
 * written once, and the work is nnz x out multiply-adds instead of n x in x out.
 * Each sum still has a fixed order (the inputs i, then the rows r, ascending) that depends only
 * on x: threads split the outputs (forward) or the inputs (filter gradient), never a sum. */
#define SPARSE_MAX_SHARE 8 /* at most 1/8 of x nonzero: the GEMM runs ~3x the FLOP rate of
                              these vector loops */
/* forward: output columns per task, 512 on one thread (each w row read 2 KB at a time; 128
 * read 512 B at a 4 KB stride), 256 on more (two threads ran 0.53 against 0.69 ms with 512,
 * one thread 1.1 against 1.0: docs/kernels-cpu.md, steps 43 and 52) */
static int sparse_block(int threads) { return threads > 1 ? 256 : 512; }

/* x's nonzeros by column (CSC): for input i, entries start[i] .. start[i+1] - 1 of rows and
 * vals, rows ascending. */
typedef struct {
    int *start, *rows;
    float *vals;
} Columns;

static void columns_free(Columns *c) {
    free(c->start);
    free(c->rows);
    free(c->vals);
}

/* Whether x may go over its nonzeros at all: smaller inputs take the GEMM. */
static int sparse_worth(int n, int in) { return n >= 2 && (size_t)n * in >= 4096; }
/* The most nonzeros for which they do: 1/SPARSE_MAX_SHARE of x (checked by columns_build);
 * COLUMNS_ANY for the *_sparse_input entries, which take any x. */
static size_t sparse_limit(int n, int in) { return (size_t)n * in / SPARSE_MAX_SHARE; }
#define COLUMNS_ANY SIZE_MAX

/* count[i] += the nonzeros of column i, for i in [i0, i1) */
typedef void (*CountColumnsFn)(int n, int in, const float *x, int i0, int i1, int *count);

static void count_columns_base(int n, int in, const float *x, int i0, int i1, int *count) {
    for (int r = 0; r < n; r++)
        for (int i = i0; i < i1; i++) count[i] += x[(size_t)r * in + i] != 0.0f;
}

/* The entries of columns [i0, i1), each column's rows ascending, from fill[i] on. */
typedef void (*FillColumnsFn)(int n, int in, const float *x, int i0, int i1, int *fill,
                              int *rows, float *vals);

static void fill_columns_base(int n, int in, const float *x, int i0, int i1, int *fill,
                              int *rows, float *vals) {
    for (int r = 0; r < n; r++)
        for (int i = i0; i < i1; i++) {
            const float v = x[(size_t)r * in + i];
            if (v != 0.0f) {
                rows[fill[i]] = r;
                vals[fill[i]++] = v;
            }
        }
}

#if KERNELS_HAVE_AVX2_CLONES
#include <immintrin.h>
/* The vector clones of the two loops above: a row's columns compared WIDTH at a time (a bit per
 * column whose x != 0, unordered: a NaN is != 0, as in the base loops), the rest as the base
 * loops. Fill walks only the set bits: the base loop's branch per element mispredicted at each
 * of the ~5% nonzeros (step 48). Count adds the bits to counters kept in L1 (the baseline build
 * compares 4 lanes at a time). The same entries and counts. */
typedef unsigned (*NonzeroBitsFn)(const float *x);

__attribute__((target("avx512f"))) static inline unsigned nonzero_bits_avx512(const float *x) {
    return _mm512_cmp_ps_mask(_mm512_loadu_ps(x), _mm512_setzero_ps(), _CMP_NEQ_UQ);
}
__attribute__((target("avx2"))) static inline unsigned nonzero_bits_avx2(const float *x) {
    return (unsigned)_mm256_movemask_ps(
        _mm256_cmp_ps(_mm256_loadu_ps(x), _mm256_setzero_ps(), _CMP_NEQ_UQ));
}

static inline __attribute__((always_inline)) void
fill_columns_body(int n, int in, const float *x, int i0, int i1, int *fill, int *rows,
                  float *vals, int width, NonzeroBitsFn bits) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * in;
        int i = i0;
        for (; i + width <= i1; i += width)
            for (unsigned m = bits(xr + i); m; m &= m - 1) {
                const int col = i + __builtin_ctz(m);
                rows[fill[col]] = r;
                vals[fill[col]++] = xr[col];
            }
        for (; i < i1; i++)
            if (xr[i] != 0.0f) {
                rows[fill[i]] = r;
                vals[fill[i]++] = xr[i];
            }
    }
}
__attribute__((target("avx512f"))) static void fill_columns_avx512(int n, int in, const float *x,
                                                                  int i0, int i1, int *fill,
                                                                  int *rows, float *vals) {
    fill_columns_body(n, in, x, i0, i1, fill, rows, vals, 16, nonzero_bits_avx512);
}
__attribute__((target("avx2"))) static void fill_columns_avx2(int n, int in, const float *x,
                                                             int i0, int i1, int *fill,
                                                             int *rows, float *vals) {
    fill_columns_body(n, in, x, i0, i1, fill, rows, vals, 8, nonzero_bits_avx2);
}
static FillColumnsFn fill_columns_fn(void) {
    const int isa = kernels_cpu_isa();
    return isa >= KERNELS_ISA_AVX512 ? fill_columns_avx512
           : isa >= KERNELS_ISA_AVX2 ? fill_columns_avx2
                                     : fill_columns_base;
}

__attribute__((target("avx512f"))) static void count_columns_avx512(int n, int in, const float *x,
                                                                   int i0, int i1, int *count) {
    const __m512 zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1);
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * in;
        int i = i0;
        for (; i + 16 <= i1; i += 16) {
            const __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(xr + i), zero, _CMP_NEQ_UQ);
            const __m512i c = _mm512_loadu_si512(count + i);
            _mm512_storeu_si512(count + i, _mm512_mask_add_epi32(c, m, c, one));
        }
        for (; i < i1; i++) count[i] += xr[i] != 0.0f;
    }
}
/* a compare's lanes are all ones (-1) where x != 0: count - (-1) */
__attribute__((target("avx2"))) static void count_columns_avx2(int n, int in, const float *x,
                                                              int i0, int i1, int *count) {
    const __m256 zero = _mm256_setzero_ps();
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * in;
        int i = i0;
        for (; i + 8 <= i1; i += 8) {
            const __m256i m = _mm256_castps_si256(
                _mm256_cmp_ps(_mm256_loadu_ps(xr + i), zero, _CMP_NEQ_UQ));
            __m256i *c = (__m256i *)(void *)(count + i);
            _mm256_storeu_si256(c, _mm256_sub_epi32(_mm256_loadu_si256(c), m));
        }
        for (; i < i1; i++) count[i] += xr[i] != 0.0f;
    }
}
static CountColumnsFn count_columns_fn(void) {
    const int isa = kernels_cpu_isa();
    return isa >= KERNELS_ISA_AVX512 ? count_columns_avx512
           : isa >= KERNELS_ISA_AVX2 ? count_columns_avx2
                                     : count_columns_base;
}
#else
static FillColumnsFn fill_columns_fn(void) { return fill_columns_base; }
static CountColumnsFn count_columns_fn(void) { return count_columns_base; }
#endif

/* Fills c with x's nonzeros by column: 0; 1 when there are more than limit (nothing kept: the
 * caller takes the GEMM); -1 when out of memory. Each thread takes one range of columns (a
 * multiple of 16 wide; a range's counts and entries are its own, each column's rows in order),
 * so the lists do not depend on the thread count. The count is the one pass over x that
 * decides: a separate check read x again on the calling thread (~0.1 ms for dense1, twice a
 * step: step 61). One range a thread, not blocks of 128 columns: a block read 512 bytes of each
 * of x's rows, 12.5 KB apart, which the prefetchers did not follow (step 74). */
static int columns_build(int n, int in, const float *x, size_t limit, Columns *c, int threads) {
    c->start = calloc((size_t)in + 1, sizeof *c->start);
    int *fill = malloc(((size_t)in + 1) * sizeof *fill);
    if (!c->start || !fill) {
        free(c->start);
        free(fill);
        return -1;
    }
    const int width = ((in + threads - 1) / threads + 15) / 16 * 16;
    const int blocks = (in + width - 1) / width;
    const CountColumnsFn count_columns = count_columns_fn();
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int k = 0; k < blocks; k++) {
        const int i0 = k * width, i1 = i0 + width < in ? i0 + width : in;
        count_columns(n, in, x, i0, i1, c->start + 1);
    }
    for (int i = 0; i < in; i++) c->start[i + 1] += c->start[i];
    if ((size_t)c->start[in] > limit) {
        free(c->start);
        free(fill);
        return 1;
    }
    const size_t nnz = (size_t)c->start[in];
    c->rows = malloc((nnz ? nnz : 1) * sizeof *c->rows);
    c->vals = malloc((nnz ? nnz : 1) * sizeof *c->vals);
    if (!c->rows || !c->vals) {
        columns_free(c);
        free(fill);
        return -1;
    }
    memcpy(fill, c->start, (size_t)in * sizeof *fill);
    const FillColumnsFn fill_columns = fill_columns_fn();
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int k = 0; k < blocks; k++) {
        const int i0 = k * width, i1 = i0 + width < in ? i0 + width : in;
        fill_columns(n, in, x, i0, i1, fill, c->rows, c->vals);
    }
    free(fill);
    return 0;
}

/* y[:, j0:j1] = sum over i, then r, of x[r,i] * w[i, j0:j1] (from 0). */
static inline void sparse_forward_body(const Columns *c, int n, int in, int out, const float *w,
                                       int j0, int j1, float *y) {
    for (int r = 0; r < n; r++) memset(y + (size_t)r * out + j0, 0, (size_t)(j1 - j0) * sizeof *y);
    for (int i = 0; i < in; i++) {
        const float *wr = w + (size_t)i * out;
        for (int e = c->start[i]; e < c->start[i + 1]; e++) {
            const float v = c->vals[e];
            float *yr = y + (size_t)c->rows[e] * out;
            for (int j = j0; j < j1; j++) yr[j] = fmaf(v, wr[j], yr[j]);
        }
    }
}

/* d[0:out] = sum over r of x[r,i] * dy[r, :] (from 0): dw's row i. */
static inline void sparse_filter_row_body(const Columns *c, int out, const float *dy, int i,
                                          float *d) {
    memset(d, 0, (size_t)out * sizeof *d);
    for (int e = c->start[i]; e < c->start[i + 1]; e++) {
        const float v = c->vals[e], *g = dy + (size_t)c->rows[e] * out;
        for (int j = 0; j < out; j++) d[j] = fmaf(v, g[j], d[j]);
    }
}

typedef void (*SparseForwardFn)(const Columns *, int, int, int, const float *, int, int, float *);
typedef void (*SparseFilterRowFn)(const Columns *, int, const float *, int, float *);

static void sparse_forward_base(const Columns *c, int n, int in, int out, const float *w, int j0,
                                int j1, float *y) {
    sparse_forward_body(c, n, in, out, w, j0, j1, y);
}
static void sparse_filter_row_base(const Columns *c, int out, const float *dy, int i, float *d) {
    sparse_filter_row_body(c, out, dy, i, d);
}

#if KERNELS_HAVE_AVX2_CLONES
/* The same fmaf's, as vector FMAs: the same bits as the base versions. */
__attribute__((target("avx2,fma"))) static void sparse_forward_avx2(const Columns *c, int n,
                                                                    int in, int out,
                                                                    const float *w, int j0,
                                                                    int j1, float *y) {
    sparse_forward_body(c, n, in, out, w, j0, j1, y);
}
__attribute__((target("avx2,fma"))) static void sparse_filter_row_avx2(const Columns *c, int out,
                                                                       const float *dy, int i,
                                                                       float *d) {
    sparse_filter_row_body(c, out, dy, i, d);
}
__attribute__((target("avx512f"))) static void sparse_forward_avx512(const Columns *c, int n,
                                                                    int in, int out,
                                                                    const float *w, int j0,
                                                                    int j1, float *y) {
    sparse_forward_body(c, n, in, out, w, j0, j1, y);
}
__attribute__((target("avx512f"))) static void sparse_filter_row_avx512(const Columns *c,
                                                                       int out, const float *dy,
                                                                       int i, float *d) {
    sparse_filter_row_body(c, out, dy, i, d);
}
/* The forward where y's 64-column block fits L1 (n <= PACKED_MAX_ROWS, out % 64 == 0; step
 * 60): y[:, j0:j0+64] is summed in buf [n][64], packed (y's rows are 4 KB apart, so its blocks
 * alias in L1's sets; summed in place they went through L2), with w[i, block] in 4 registers for
 * all of column i's nonzeros, then copied out. The touched columns' w segments, 4 KB apart, are
 * prefetched PACKED_PREFETCH columns ahead: each is on a new page, where the hardware
 * prefetcher stops. The same fmaf's in the same order (i, then r): the same bits. */
#define PACKED_COLS 64
#define PACKED_MAX_ROWS 128 /* the buffer at most 32 KB of L1's 48 */
#define PACKED_PREFETCH 6
__attribute__((target("avx512f"))) static void
sparse_forward_packed_avx512(const Columns *c, const int *touched, int ntouched, int n, int out,
                             const float *w, int j0, float *restrict buf, float *y) {
    memset(buf, 0, (size_t)n * PACKED_COLS * sizeof *buf);
    for (int t = 0; t < ntouched; t++) {
        if (t + PACKED_PREFETCH < ntouched) {
            const char *p = (const char *)(w + (size_t)touched[t + PACKED_PREFETCH] * out + j0);
            for (int q = 0; q < PACKED_COLS * 4; q += 64) _mm_prefetch(p + q, _MM_HINT_T0);
        }
        const int i = touched[t];
        const float *wr = w + (size_t)i * out + j0;
        const __m512 w0 = _mm512_loadu_ps(wr), w1 = _mm512_loadu_ps(wr + 16),
                     w2 = _mm512_loadu_ps(wr + 32), w3 = _mm512_loadu_ps(wr + 48);
        for (int e = c->start[i]; e < c->start[i + 1]; e++) {
            const __m512 v = _mm512_set1_ps(c->vals[e]);
            float *b = buf + (size_t)c->rows[e] * PACKED_COLS;
            _mm512_store_ps(b, _mm512_fmadd_ps(v, w0, _mm512_load_ps(b)));
            _mm512_store_ps(b + 16, _mm512_fmadd_ps(v, w1, _mm512_load_ps(b + 16)));
            _mm512_store_ps(b + 32, _mm512_fmadd_ps(v, w2, _mm512_load_ps(b + 32)));
            _mm512_store_ps(b + 48, _mm512_fmadd_ps(v, w3, _mm512_load_ps(b + 48)));
        }
    }
    for (int r = 0; r < n; r++)
        memcpy(y + (size_t)r * out + j0, buf + (size_t)r * PACKED_COLS,
               PACKED_COLS * sizeof *buf);
}
static int sparse_forward_packed_fits(int n, int out) {
    return kernels_cpu_isa() >= KERNELS_ISA_AVX512 && n <= PACKED_MAX_ROWS &&
           out % PACKED_COLS == 0;
}

static SparseForwardFn sparse_forward_fn(void) {
    return KERNELS_PICK_CLONE(sparse_forward_base, sparse_forward_avx2, sparse_forward_avx512);
}
static SparseFilterRowFn sparse_filter_row_fn(void) {
    return KERNELS_PICK_CLONE(sparse_filter_row_base, sparse_filter_row_avx2,
                              sparse_filter_row_avx512);
}
#else
static SparseForwardFn sparse_forward_fn(void) { return sparse_forward_base; }
static SparseFilterRowFn sparse_filter_row_fn(void) { return sparse_filter_row_base; }
#endif

/* The columns with a nonzero, ascending, into touched; returns their count. */
static int touched_columns(const Columns *c, int in, int *touched) {
    int count = 0;
    for (int i = 0; i < in; i++) {
        touched[count] = i;
        count += c->start[i + 1] > c->start[i];
    }
    return count;
}

/* The packed forward's tasks, each 64 output columns; 0 where it does not fit (n, out or the
 * CPU) or memory runs out, so the blocks below take it. */
static int sparse_forward_packed(const Columns *c, int n, int in, int out, const float *w,
                                 float *y) {
#if KERNELS_HAVE_AVX2_CLONES
    if (!sparse_forward_packed_fits(n, out)) return 0;
    const int tasks = out / PACKED_COLS;
    const int threads = kernels_threads_for((double)n * in * out, tasks);
    int *touched = malloc((size_t)in * sizeof *touched);
    float *bufs = aligned_alloc(64, (size_t)threads * n * PACKED_COLS * sizeof *bufs);
    if (!touched || !bufs) {
        free(touched);
        free(bufs);
        return 0;
    }
    const int ntouched = touched_columns(c, in, touched);
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int t = 0; t < tasks; t++)
        sparse_forward_packed_avx512(c, touched, ntouched, n, out, w, t * PACKED_COLS,
                                     bufs + (size_t)kernels_thread_id() * n * PACKED_COLS, y);
    free(touched);
    free(bufs);
    return 1;
#else
    (void)c, (void)n, (void)in, (void)out, (void)w, (void)y;
    return 0;
#endif
}

/* y[r, :] += b (b may be NULL). */
static void add_bias(int n, int out, const float *b, float *y) {
    if (!b) return;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < out; j++) y[(size_t)r * out + j] += b[j];
}

/* db[j] = sum over r of dy[r,j], r ascending (db may be NULL). */
static void bias_grad(int n, int out, const float *dy, float *db) {
    if (!db) return;
    for (int j = 0; j < out; j++) db[j] = 0.0f;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < out; j++) db[j] += dy[(size_t)r * out + j];
}

/* The forward over x's nonzeros where they are at most limit: 0, or columns_build's 1 or -1
 * (nothing written). */
static int sparse_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                          float *y, size_t limit) {
    /* the threads for the tasks the multi-thread blocks make */
    const int threads = kernels_threads_for((double)n * in * out,
                                            (out + sparse_block(2) - 1) / sparse_block(2));
    const int block = sparse_block(threads), tasks = (out + block - 1) / block;
    Columns c;
    const int built = columns_build(n, in, x, limit, &c, threads);
    if (built != 0) return built;
    const SparseForwardFn f = sparse_forward_fn();
    if (!sparse_forward_packed(&c, n, in, out, w, y)) {
        KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
        for (int t = 0; t < tasks; t++) {
            const int j0 = t * block, j1 = j0 + block < out ? j0 + block : out;
            f(&c, n, in, out, w, j0, j1, y);
        }
    }
    columns_free(&c);
    add_bias(n, out, b, y);
    return 0;
}

/* dw and db over x's nonzeros where they are at most limit: as sparse_forward. */
static int sparse_filter(int n, int in, int out, const float *x, const float *dy, float *dw,
                         float *db, size_t limit) {
    const int tasks = (in + 63) / 64;
    const int threads = kernels_threads_for((double)n * in * out, tasks);
    Columns c;
    const int built = columns_build(n, in, x, limit, &c, threads);
    if (built != 0) return built;
    const SparseFilterRowFn f = sparse_filter_row_fn();
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int t = 0; t < tasks; t++)
        for (int i = t * 64; i < t * 64 + 64 && i < in; i++)
            f(&c, out, dy, i, dw + (size_t)i * out);
    columns_free(&c);
    bias_grad(n, out, dy, db);
    return 0;
}

int dense_forward_sparse_input(int n, int in, int out, const float *x, const float *w,
                               const float *b, float *y) {
    return sparse_forward(n, in, out, x, w, b, y, COLUMNS_ANY) == 0 ? 0 : -1;
}

int dense_backward_filter_sparse_input(int n, int in, int out, const float *x, const float *dy,
                                       float *dw, float *db) {
    return sparse_filter(n, in, out, x, dy, dw, db, COLUMNS_ANY) == 0 ? 0 : -1;
}

void dense_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                   float *y) {
    if (sparse_worth(n, in) &&
        sparse_forward(n, in, out, x, w, b, y, sparse_limit(n, in)) == 0)
        return;
#if KERNELS_HAVE_AVX2_CLONES
    if (dense_narrow_fits(out))
        dense_narrow_forward(n, in, out, x, w, y);
    else
#endif
        sgemm(0, 0, n, out, in, 1.0f, x, in, w, out, 0.0f, y, out);
    add_bias(n, out, b, y);
}

/* dense_backward, its dw over x's nonzeros only when `sparse` allows. */
static void backward(int n, int in, int out, const float *x, const float *w, const float *dy,
                     float *dx, float *dw, float *db, int sparse) {
    /* the logits layer (out <= 16) by dense_narrow.c's loops: sgemm's bits without its edge
     * tiles */
#if KERNELS_HAVE_AVX2_CLONES
    const int narrow = dense_narrow_fits(out);
#else
    const int narrow = 0;
#endif
    if (dx && !(narrow && dense_narrow_backward_data(n, in, out, dy, w, dx) == 0))
        sgemm(0, 1, n, in, out, 1.0f, dy, out, w, out, 0.0f, dx, in); /* dy * w^T */
    if (!dw) return;
    if (sparse && sparse_worth(n, in) &&
        sparse_filter(n, in, out, x, dy, dw, db, sparse_limit(n, in)) == 0)
        return;
#if KERNELS_HAVE_AVX2_CLONES
    if (narrow)
        dense_narrow_backward_filter(n, in, out, x, dy, dw);
    else
#endif
        sgemm(1, 0, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw, out); /* x^T * dy */
    bias_grad(n, out, dy, db);
}

void dense_backward(int n, int in, int out, const float *x, const float *w, const float *dy,
                    float *dx, float *dw, float *db) {
    backward(n, in, out, x, w, dy, dx, dw, db, 1);
}

/* ---- the data gradient where the input is alive (kernels.h) --------------------------------
 * Per alive entry, a dot product of dy's row and w's row in the CUDA twin's order: 32 lanes,
 * lane l over the columns 32s + l, then a butterfly. Threads take whole rows. */
#define ALIVE_LANES 32

int dense_backward_data_alive_fits(int out) {
    return out > 0 && out % ALIVE_LANES == 0 && out <= ALIVE_LANES * ALIVE_LANES;
}

static float alive_dot_base(const float *g, const float *wr, int out) {
    float lane[ALIVE_LANES] = {0};
    for (int j0 = 0; j0 < out; j0 += ALIVE_LANES)
        for (int l = 0; l < ALIVE_LANES; l++) lane[l] = fmaf(g[j0 + l], wr[j0 + l], lane[l]);
    for (int s = ALIVE_LANES / 2; s > 0; s >>= 1) {
        float next[ALIVE_LANES];
        for (int l = 0; l < ALIVE_LANES; l++) next[l] = lane[l] + lane[l ^ s];
        memcpy(lane, next, sizeof lane);
    }
    return lane[0];
}

typedef float (*AliveDotFn)(const float *g, const float *wr, int out);

#if KERNELS_HAVE_AVX2_CLONES
/* The same operations as alive_dot_base: lanes 0-7, 8-15, 16-23, 24-31 in a0..a3; the butterfly
 * adds the same pairs (a + b = b + a: lane l and l ^ s hold the same sum after each step). */
__attribute__((target("avx2,fma"))) static inline float butterfly_avx2(__m256 a0, __m256 a1,
                                                                       __m256 a2, __m256 a3) {
    const __m256 s16 = _mm256_add_ps(a0, a2);                      /* lanes 0-7: l, l ^ 16 */
    const __m256 s8 = _mm256_add_ps(s16, _mm256_add_ps(a1, a3));   /* l ^ 8: lanes 8-15 */
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

__attribute__((target("avx2,fma"))) static float alive_dot_avx2(const float *g, const float *wr,
                                                                int out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int j0 = 0; j0 < out; j0 += ALIVE_LANES) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0), _mm256_loadu_ps(wr + j0), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0 + 8), _mm256_loadu_ps(wr + j0 + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0 + 16), _mm256_loadu_ps(wr + j0 + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(g + j0 + 24), _mm256_loadu_ps(wr + j0 + 24), a3);
    }
    return butterfly_avx2(a0, a1, a2, a3);
}
static AliveDotFn alive_dot_fn(void) {
    return kernels_have_avx2_fma() ? alive_dot_avx2 : alive_dot_base;
}
#endif

/* Four dots with one w row: res[k] = alive_dot(g[k], wr). The fused backward's dots of a row
 * read it from L1, where one dot waits on its FMAs' latency (4 chains of 32): four at once keep
 * 8 chains busy (step 45). */
typedef void (*AliveDot4Fn)(const float *const g[4], const float *wr, int out, float res[4]);

static void alive_dot4_base(const float *const g[4], const float *wr, int out, float res[4]) {
    for (int k = 0; k < 4; k++) res[k] = alive_dot_base(g[k], wr, out);
}

#if KERNELS_HAVE_AVX2_CLONES
/* lanes 0-15 in lo, 16-31 in hi: the butterfly adds the pairs of alive_dot_avx2 */
__attribute__((target("avx512f"))) static inline float butterfly_avx512(__m512 lo, __m512 hi) {
    const __m512 s16 = _mm512_add_ps(lo, hi);
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(s16),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                        _mm512_castps_pd(s16), 1)));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

__attribute__((target("avx512f"))) static void alive_dot4_avx512(const float *const g[4],
                                                                 const float *wr, int out,
                                                                 float res[4]) {
    __m512 lo[4], hi[4];
    for (int k = 0; k < 4; k++) lo[k] = hi[k] = _mm512_setzero_ps();
    for (int j0 = 0; j0 < out; j0 += ALIVE_LANES) {
        const __m512 w0 = _mm512_loadu_ps(wr + j0), w1 = _mm512_loadu_ps(wr + j0 + 16);
        for (int k = 0; k < 4; k++) {
            lo[k] = _mm512_fmadd_ps(_mm512_loadu_ps(g[k] + j0), w0, lo[k]);
            hi[k] = _mm512_fmadd_ps(_mm512_loadu_ps(g[k] + j0 + 16), w1, hi[k]);
        }
    }
    for (int k = 0; k < 4; k++) res[k] = butterfly_avx512(lo[k], hi[k]);
}

/* Two dots at a time: 8 accumulators and w's 4 vectors fit AVX2's 16 registers (four at once
 * would spill). Until session 24 an AVX2-only CPU took alive_dot4_base here: a libm call per
 * fmaf, a third of the training step on a Zen 3 (docs/kernels-cpu.md, step 80). */
__attribute__((target("avx2,fma"))) static void alive_dot4_avx2(const float *const g[4],
                                                                const float *wr, int out,
                                                                float res[4]) {
    for (int k = 0; k < 4; k += 2) {
        const float *g0 = g[k], *g1 = g[k + 1];
        __m256 a[2][4];
        for (int q = 0; q < 4; q++) a[0][q] = a[1][q] = _mm256_setzero_ps();
        for (int j0 = 0; j0 < out; j0 += ALIVE_LANES)
            for (int q = 0; q < 4; q++) {
                const __m256 wq = _mm256_loadu_ps(wr + j0 + 8 * q);
                a[0][q] = _mm256_fmadd_ps(_mm256_loadu_ps(g0 + j0 + 8 * q), wq, a[0][q]);
                a[1][q] = _mm256_fmadd_ps(_mm256_loadu_ps(g1 + j0 + 8 * q), wq, a[1][q]);
            }
        res[k] = butterfly_avx2(a[0][0], a[0][1], a[0][2], a[0][3]);
        res[k + 1] = butterfly_avx2(a[1][0], a[1][1], a[1][2], a[1][3]);
    }
}

static AliveDot4Fn alive_dot4_fn(void) {
    const int isa = kernels_cpu_isa();
    return isa >= KERNELS_ISA_AVX512 ? alive_dot4_avx512
           : isa >= KERNELS_ISA_AVX2 ? alive_dot4_avx2
                                     : alive_dot4_base;
}
#else
static AliveDotFn alive_dot_fn(void) { return alive_dot_base; }
static AliveDot4Fn alive_dot4_fn(void) { return alive_dot4_base; }
#endif

void dense_backward_data_alive(int n, int in, int out, const float *x, const float *w,
                               const float *dy, float *dx) {
    const AliveDotFn dot = alive_dot_fn();
    /* the dense dx's work decides the threads, as for the GEMM it replaces */
    const int threads = kernels_threads_for((double)n * in * out, n);
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * in, *g = dy + (size_t)r * out;
        float *o = dx + (size_t)r * in;
        for (int i = 0; i < in; i++)
            o[i] = xr[i] > 0.0f ? dot(g, w + (size_t)i * out, out) : 0.0f;
    }
}

/* ---- the filter gradient and Adam in one pass (kernels.h) ----------------------------------
 * Where x is mostly zeros, by blocks of w's rows: each row's gradient into the thread's block
 * buffer (the sums of dense_backward_filter_sparse_input) and the alive entries' dx with the
 * row's old values (the dots of dense_backward_data_alive), then Adam over the block
 * (adam_update's operations). dw never goes to memory, and w, m and v are each read and written
 * once: the three passes wrote dw (after zeroing it) and read it back, and read each of w's rows
 * once per alive entry (~5 times over for MNIST's dense1, whose 12.8 MB w does not stay in
 * cache). Adam by blocks of 64 rows (256 KB of each array), not row by row: 4 KB streams left
 * the hardware prefetcher behind (docs/kernels-cpu.md, step 44). Threads take whole blocks;
 * each row's work is the same on any thread. */
#define ADAM_TASK_ROWS 64

void dense_backward_adam(int n, int in, int out, const float *x, float *w, const float *dy,
                         float *dx, float *dw, float *db, float *m, float *v, float lr,
                         float beta1, float beta2, float eps, int64_t t) {
    const int tasks = (in + ADAM_TASK_ROWS - 1) / ADAM_TASK_ROWS;
    const int threads = kernels_threads_for((double)n * in * out, tasks);
    /* each thread's block of gradient rows, 64-byte aligned as the vector loops' loads like */
    const size_t stride = ((size_t)ADAM_TASK_ROWS * out + 15) / 16 * 16;
    Columns c;
    float *rows = NULL;
    int sparse = sparse_worth(n, in); /* where x turns out not mostly zeros: the GEMM */
    if (sparse) {
        rows = aligned_alloc(64, (size_t)threads * stride * sizeof *rows);
        const int built = rows ? columns_build(n, in, x, sparse_limit(n, in), &c, threads) : -1;
        sparse = built != 1;
        if (built != 0) {
            free(rows);
            rows = NULL;
        }
    }
    if (!rows) { /* x not mostly zeros (or out of memory): the three passes */
        backward(n, in, out, x, w, dy, NULL, dw, db, sparse);
        if (dx) dense_backward_data_alive(n, in, out, x, w, dy, dx);
        adam_update((size_t)in * out, w, dw, m, v, lr, beta1, beta2, eps, t);
        return;
    }
    const AdamRate rate = adam_rate(lr, beta1, beta2, eps, t);
    const SparseFilterRowFn filter_row = sparse_filter_row_fn();
    const AliveDotFn dot = alive_dot_fn();
    const AliveDot4Fn dot4 = alive_dot4_fn();
    if (dx) memset(dx, 0, (size_t)n * in * sizeof *dx);
    KERNELS_OMP(omp parallel for schedule(static) num_threads(threads) if (threads > 1))
    for (int k = 0; k < tasks; k++) {
        const int i0 = k * ADAM_TASK_ROWS, i1 = i0 + ADAM_TASK_ROWS < in ? i0 + ADAM_TASK_ROWS : in;
        float *g = rows + (size_t)kernels_thread_id() * stride; /* the block's dw, [i1-i0, out] */
        for (int i = i0; i < i1; i++) {
            const float *wr = w + (size_t)i * out;
            filter_row(&c, out, dy, i, g + (size_t)(i - i0) * out);
            if (dx) { /* the alive entries of column i, four at a time, then one by one */
                int rows4[4], pending = 0;
                for (int e = c.start[i]; e < c.start[i + 1]; e++) {
                    if (!(c.vals[e] > 0.0f)) continue;
                    rows4[pending++] = c.rows[e];
                    if (pending < 4) continue;
                    const float *g4[4];
                    float res[4];
                    for (int q = 0; q < 4; q++) g4[q] = dy + (size_t)rows4[q] * out;
                    dot4(g4, wr, out, res);
                    for (int q = 0; q < 4; q++) dx[(size_t)rows4[q] * in + i] = res[q];
                    pending = 0;
                }
                for (int q = 0; q < pending; q++)
                    dx[(size_t)rows4[q] * in + i] = dot(dy + (size_t)rows4[q] * out, wr, out);
            }
        }
        const size_t at = (size_t)i0 * out;
        adam_range(&rate, 0, (size_t)(i1 - i0) * out, w + at, g, m + at, v + at);
    }
    columns_free(&c);
    free(rows);
    bias_grad(n, out, dy, db);
}
