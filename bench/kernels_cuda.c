/* bench_kernels_cuda: each of our CUDA kernels against cuDNN/cuBLAS at the MNIST model's shapes
 * (batch 100 and 1000): median time per call, TFLOP/s or GB/s, and our speed as a percentage of
 * the library's (100% = as fast; > 100% = faster).
 *
 * Timing: CUDA events around 20 back-to-back calls, 9 trials (--sweep: 10 calls, 5 trials),
 * the median trial / calls; three warm-up calls first (module load, cuDNN algorithm timing stays out). Inputs are random (never
 * zeros). Our kernels are launched without programmatic dependent launch (CNN_CUDA_PDL=0 unless
 * set): back-to-back calls of one kernel would otherwise overlap their launches, which the
 * libraries' kernels do not; the step benchmark measures what PDL gains. Activations of these shapes fit in L2 (50-60 MB on H100/H200); both sides get that.
 * The library side is the whole op in our layout: the cuDNN conv includes the HWIO<->KRSC
 * filter transposes and the bias add; dense through cuBLAS includes the bias as a rank-1 update.
 * Usage: bench_kernels_cuda [--sweep] [batch ...]   (default: 100 1000). Prints a markdown table.
 * --sweep: instead, every GEMM-shaped op (convolutions, dense) under every tile and split-K
 * count our GEMM offers (CNN_GEMM_TILE x CNN_GEMM_SPLITS, kernels/gemm_cuda.cuh) next to the
 * default choice: one SWEEP line per configuration and the best per op, the data for the tile
 * rules. */
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "kernels/kernels_cudnn.h"
#include "kernels/philox.h"

#define CK(call)                                                                              \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                     \
                    cudaGetErrorString(e_));                                                  \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
#define CKDNN(call)                                                                           \
    do {                                                                                      \
        cudnnStatus_t s_ = (call);                                                            \
        if (s_ != CUDNN_STATUS_SUCCESS) {                                                     \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                     \
                    cudnnGetErrorString(s_));                                                 \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
#define CKBLAS(call)                                                                          \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                    \
            fprintf(stderr, "%s:%d: %s: cuBLAS %d\n", __FILE__, __LINE__, #call, (int)s_);    \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static cudaStream_t stream;
static cudnnHandle_t dnn;
static cublasHandle_t blas;

/* The kernels run on `stream`, a non-blocking stream: it does not wait for the legacy stream's
 * cudaMemcpy/cudaMemset (a memset of device memory, or the DMA of a pageable upload, may still
 * run when cudaMemcpy/cudaMemset returns). So every host-side transfer is followed by this. */
static void settle(void) { CK(cudaDeviceSynchronize()); }

/* Device buffer of n random floats in [lo, hi) (philox, fixed seed: reproducible). */
static float *dev_random(size_t n, float lo, float hi, uint64_t stream_id) {
    float *h = malloc(n * sizeof *h), *d = NULL;
    if (!h) exit(1);
    for (size_t i = 0; i < n; i++) h[i] = lo + (hi - lo) * philox_uniform(12345, stream_id, i);
    CK(cudaMalloc((void **)&d, n * sizeof *d));
    CK(cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice));
    settle();
    free(h);
    return d;
}
static void *dev_alloc(size_t bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 1));
    CK(cudaMemset(d, 0, bytes ? bytes : 1));
    settle();
    return d;
}

/* One benchmarked op: run(arg, lib) enqueues one call of ours (lib = 0) or the library's. */
typedef void (*RunFn)(void *arg, int lib);

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* --sweep: every tile x split count for each GEMM-shaped op instead of the library table
 * (fewer calls per timing: ~300 timings). */
static int sweep_mode = 0;

/* Median microseconds per call. */
static double time_us(RunFn run, void *arg, int lib) {
    enum { MAX_TRIALS = 9 };
    const int CALLS = sweep_mode ? 10 : 20, TRIALS = sweep_mode ? 5 : MAX_TRIALS;
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) run(arg, lib);
    CK(cudaStreamSynchronize(stream));
    float t[MAX_TRIALS];
    for (int r = 0; r < TRIALS; r++) {
        CK(cudaEventRecord(a, stream));
        for (int i = 0; i < CALLS; i++) run(arg, lib);
        CK(cudaEventRecord(b, stream));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&t[r], a, b));
    }
    CK(cudaGetLastError());
    qsort(t, TRIALS, sizeof t[0], cmp_float);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return 1000.0 * t[TRIALS / 2] / CALLS;
}

static const char *const SWEEP_TILES[] = {"64x64",  "128x64", "128x32", "64x32",
                                           "256x32", "128x128", "256x64"};
static const char *const SWEEP_SPLITS[] = {"1", "2", "3", "4", "6", "8"};
enum { SWEEP_MAX_SPLITS = 8 };

static void sweep(const char *op, int batch, RunFn run, void *arg, double flops) {
    unsetenv("CNN_GEMM_TILE");
    unsetenv("CNN_GEMM_SPLITS");
    double def = time_us(run, arg, 0), best = def;
    char best_cfg[32] = "default";
    for (size_t t = 0; t < sizeof SWEEP_TILES / sizeof SWEEP_TILES[0]; t++)
        for (size_t k = 0; k < sizeof SWEEP_SPLITS / sizeof SWEEP_SPLITS[0]; k++) {
            setenv("CNN_GEMM_TILE", SWEEP_TILES[t], 1);
            setenv("CNN_GEMM_SPLITS", SWEEP_SPLITS[k], 1);
            double us = time_us(run, arg, 0);
            printf("SWEEP %s | batch %d | tile %s | splits %s | %.1f us | %.2f TF/s\n", op, batch,
                   SWEEP_TILES[t], SWEEP_SPLITS[k], us, flops / (us * 1e-6) / 1e12);
            if (us < best) {
                best = us;
                snprintf(best_cfg, sizeof best_cfg, "%s s%s", SWEEP_TILES[t], SWEEP_SPLITS[k]);
            }
        }
    unsetenv("CNN_GEMM_TILE");
    unsetenv("CNN_GEMM_SPLITS");
    printf("| %-26s | %5d | %9.1f | %-14s | %9.1f | %5.0f%% |\n", op, batch, def, best_cfg, best,
           100.0 * def / best);
    fflush(stdout);
}

/* One table row. work: FLOPs (is_flops) or bytes moved. lib_name NULL: no library version.
 * In --sweep mode, GEMM-shaped ops (is_flops) go to sweep() and the rest are skipped. */
static void report(const char *op, int batch, RunFn run, void *arg, double work, int is_flops,
                   const char *lib_name) {
    if (sweep_mode) {
        if (is_flops) sweep(op, batch, run, arg, work);
        return;
    }
    double ours = time_us(run, arg, 0);
    double rate = work / (ours * 1e-6) / (is_flops ? 1e12 : 1e9);
    if (lib_name) {
        double lib = time_us(run, arg, 1);
        double lrate = work / (lib * 1e-6) / (is_flops ? 1e12 : 1e9);
        printf("| %-26s | %5d | %9.1f | %9.1f | %7.2f %-6s | %7.2f %-6s | %5.0f%% | %s |\n", op,
               batch, ours, lib, rate, is_flops ? "TF/s" : "GB/s", lrate,
               is_flops ? "TF/s" : "GB/s", 100.0 * lib / ours, lib_name);
    } else {
        printf("| %-26s | %5d | %9.1f | %9s | %7.2f %-6s | %14s | %6s | %s |\n", op, batch, ours,
               "-", rate, is_flops ? "TF/s" : "GB/s", "-", "-", "(no library op)");
    }
    fflush(stdout);
}

/* ---- conv ----------------------------------------------------------------------------------- */
typedef struct {
    Conv2dShape s;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db, *ws, *wtmp;
    size_t ws_floats, lib_ws_bytes;
    void *lib_ws;
    Conv2dCudnn *plan;
    int pass; /* 0 fwd, 1 bwd data, 2 bwd filter, 3 bwd filter and 4 bwd data from the 2x2
                 pool's winners */
    Pool2dShape ps;
    float *py, *pdy, *pws;
    int32_t *pam;
    size_t pws_floats;
} ConvBench;

static void run_conv(void *arg, int lib) {
    ConvBench *c = arg;
    if (!lib) {
        if (c->pass == 0)
            CK(conv2d_forward_cuda(&c->s, c->x, c->w, c->b, c->y, 1, c->ws, c->ws_floats, stream));
        else if (c->pass == 1)
            CK(conv2d_backward_data_cuda(&c->s, c->dy, c->w, c->dx, c->ws, c->ws_floats, stream));
        else if (c->pass == 2)
            CK(conv2d_backward_filter_cuda(&c->s, c->x, c->dy, c->dw, c->db, c->ws, c->ws_floats,
                                           stream));
        else if (c->pass == 3)
            CK(conv2d_relu_maxpool_backward_filter_cuda(&c->s, &c->ps, c->x, c->py, c->pam,
                                                        c->pdy, c->dw, c->db, c->pws,
                                                        c->pws_floats, stream));
        else
            CK(conv2d_relu_maxpool_backward_data_cuda(&c->s, &c->ps, c->w, c->py, c->pam, c->pdy,
                                                      c->dx, c->pws, c->pws_floats, stream));
    } else {
        if (c->pass == 0) {
            CKDNN(conv2d_forward_cudnn(dnn, c->plan, c->x, c->w, c->b, c->y, c->wtmp, c->lib_ws,
                                       c->lib_ws_bytes));
            CKDNN(relu_forward_cudnn(dnn, (size_t)c->s.n * c->s.oh * c->s.ow * c->s.k, c->y, c->y));
        } else if (c->pass == 1 || c->pass == 4)
            CKDNN(conv2d_backward_data_cudnn(dnn, c->plan, c->dy, c->w, c->dx, c->wtmp, c->lib_ws,
                                             c->lib_ws_bytes));
        else
            CKDNN(conv2d_backward_filter_cudnn(dnn, c->plan, c->x, c->dy, c->dw, c->db, c->wtmp,
                                               c->lib_ws, c->lib_ws_bytes));
    }
}

static void bench_conv(const char *name, int n, int h, int w, int ch, int k, int with_data) {
    ConvBench c;
    memset(&c, 0, sizeof c);
    conv2d_shape_init(&c.s, n, h, w, ch, 5, 5, k, 1, 1, 1);
    size_t nx = (size_t)n * h * w * ch, ny = (size_t)n * c.s.oh * c.s.ow * k, nw = (size_t)25 * ch * k;
    c.x = dev_random(nx, 0, 1, 1);
    c.w = dev_random(nw, -0.1f, 0.1f, 2);
    c.b = dev_random((size_t)k, -0.1f, 0.1f, 3);
    c.dy = dev_random(ny, -1, 1, 4);
    c.y = dev_alloc(ny * 4);
    c.dx = dev_alloc(nx * 4);
    c.dw = dev_alloc(nw * 4);
    c.db = dev_alloc((size_t)k * 4);
    c.wtmp = dev_alloc(nw * 4);
    c.ws_floats = conv2d_workspace_floats_cuda(&c.s);
    if (sweep_mode) { /* room for the largest forced split of any of the three GEMMs */
        size_t mn = ny > nx ? ny : nx, wk = (nw + (size_t)k) > mn ? nw + (size_t)k : mn;
        c.ws_floats = SWEEP_MAX_SPLITS * wk;
    }
    c.ws = dev_alloc(c.ws_floats * 4);
    char err[256];
    c.plan = sweep_mode ? NULL : conv2d_cudnn_create(dnn, &c.s, 1, (size_t)256 << 20, err, sizeof err);
    if (!c.plan && !sweep_mode) {
        fprintf(stderr, "cudnn plan: %s\n", err);
        exit(1);
    }
    c.lib_ws_bytes = c.plan ? conv2d_cudnn_workspace_bytes(c.plan) : 0;
    c.lib_ws = dev_alloc(c.lib_ws_bytes);
    double flops = 2.0 * n * c.s.oh * c.s.ow * k * 25.0 * ch;
    char op[64];
    c.pass = 0;
    snprintf(op, sizeof op, "%s fwd+bias+relu", name);
    report(op, n, run_conv, &c, flops, 1, "cuDNN");
    if (with_data) {
        c.pass = 1;
        snprintf(op, sizeof op, "%s bwd data", name);
        report(op, n, run_conv, &c, flops, 1, "cuDNN");
    }
    c.pass = 2;
    snprintf(op, sizeof op, "%s bwd filter+bias", name);
    report(op, n, run_conv, &c, flops, 1, "cuDNN");
    if (ch % 32 == 0 && !sweep_mode) {
        /* The same gradient from the 2x2 pool's winners (CNN_CUDA_FUSED=3), timed against the
         * library's whole filter gradient; work counted as the GEMM's, as in the row above. */
        pool2d_shape_init(&c.ps, n, c.s.oh, c.s.ow, k, 2, 2, 2, 2, 1);
        size_t np = (size_t)n * c.ps.oh * c.ps.ow * k;
        c.py = dev_alloc(np * 4);
        c.pam = dev_alloc(np * 4);
        c.pdy = dev_random(np, -1, 1, 16);
        c.pws_floats = conv2d_relu_maxpool_workspace_floats_cuda(&c.s, &c.ps);
        c.pws = dev_alloc(c.pws_floats * 4);
        /* Both versions (CNN_FROM_POOL_V), on these inputs (almost every winner alive) and
         * with the biases shifted down by 2.1 so that few are, as in a trained model (MNIST
         * after one epoch: ~5% of conv2's; docs/gpu.md item 36): the kernels skip the dead
         * ones, version 1 a position only when all 32 channels of its warp are dead. */
        char *keep = getenv("CNN_FROM_POOL_V") ? strdup(getenv("CNN_FROM_POOL_V")) : NULL;
        float *sparse_b = dev_random((size_t)k, -2.2f, -2.0f, 3);
        float *alive_y = malloc(np * sizeof *alive_y);
        if (!alive_y) exit(1);
        c.pass = 3;
        for (int sparse = 0; sparse < 2; sparse++) {
            CK(conv2d_forward_cuda(&c.s, c.x, c.w, sparse ? sparse_b : c.b, c.y, 1, c.ws,
                                   c.ws_floats, stream));
            CK(maxpool2d_forward_cuda(&c.ps, c.y, c.py, c.pam, stream));
            settle(); /* the copy below is on the legacy stream: it would not wait for these */
            CK(cudaMemcpy(alive_y, c.py, np * 4, cudaMemcpyDeviceToHost));
            size_t alive = 0;
            for (size_t i = 0; i < np; i++) alive += alive_y[i] > 0.0f;
            for (int v = 1; v <= 2; v++) {
                setenv("CNN_FROM_POOL_V", v == 2 ? "2" : "1", 1);
                snprintf(op, sizeof op, "%s bwd filter from pool%s%s", name, v == 2 ? " v2" : "",
                         sparse ? ", few alive" : "");
                printf("|   (%s: %.1f%% of the winners alive) |\n", op,
                       100.0 * (double)alive / (double)np);
                report(op, n, run_conv, &c, flops, 1, "cuDNN");
            }
            /* The data gradient from the same winners (CNN_CUDA_DATA_FROM_POOL=1, item 38),
             * which replaces the pool's backward and the "bwd data" GEMM: timed against the
             * library's data gradient alone, work counted as that GEMM's */
            if (with_data && conv2d_relu_maxpool_backward_data_ok_cuda(&c.s, &c.ps)) {
                c.pass = 4;
                snprintf(op, sizeof op, "%s bwd data from pool%s", name,
                         sparse ? ", few alive" : "");
                report(op, n, run_conv, &c, flops, 1, "cuDNN");
                c.pass = 3;
            }
        }
        if (keep) setenv("CNN_FROM_POOL_V", keep, 1);
        else unsetenv("CNN_FROM_POOL_V");
        free(keep);
        free(alive_y);
        CK(cudaFree(sparse_b));
        void *pb[] = {c.py, c.pam, c.pdy, c.pws};
        for (size_t i = 0; i < sizeof pb / sizeof pb[0]; i++) CK(cudaFree(pb[i]));
    }
    if (c.plan) {
        printf("|   (cuDNN algorithms %s: %s) |\n", name, conv2d_cudnn_algos(c.plan));
        conv2d_cudnn_destroy(c.plan);
    }
    void *bufs[] = {c.x, c.w, c.b, c.dy, c.y, c.dx, c.dw, c.db, c.wtmp, c.ws, c.lib_ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) CK(cudaFree(bufs[i]));
}

/* ---- dense ---------------------------------------------------------------------------------- */
typedef struct {
    int n, in, out, relu, pass; /* pass 0 fwd, 1 bwd, 2 bwd dx only, 3 bwd dw + db only, 4 dx
                                   only where x > 0 */
    float *x, *w, *b, *y, *dy, *dx, *dw, *db, *ws, *ones;
    size_t ws_floats;
    /* The dropout before the layer (rate 0.4; x is a ReLU's output): 1 fused into the layer's
     * kernels (dropout_dense_*_cuda), 2 our dropout kernels and the layer's in sequence. */
    int dropout;
    uint8_t *mask;
    float *xd, *g; /* unfused: the dropout's output, the gradient at it */
    int64_t *step;
} DenseBench;

static void run_dense_dropout(const DenseBench *d) {
    const size_t nx = (size_t)d->n * d->in;
    if (d->dropout == 1 && d->pass == 0)
        CK(dropout_dense_forward_cuda(d->n, d->in, d->out, 0.4f, 7, PHILOX_STREAM_DROPOUT, 16,
                                      d->step, d->x, d->w, d->b, d->y, d->mask, d->relu, stream));
    if (d->dropout == 1 && d->pass == 1)
        CK(dropout_dense_backward_cuda(d->n, d->in, d->out, 0.4f, d->mask, 1, d->x, d->w, d->dy,
                                       d->dx, d->dw, d->db, stream));
    if (d->dropout == 2 && d->pass == 0) {
        CK(dropout_forward_cuda(nx, 0.4f, 7, PHILOX_STREAM_DROPOUT, 16, d->step, d->x, d->xd,
                                d->mask, stream));
        CK(dense_forward_cuda(d->n, d->in, d->out, d->xd, d->w, d->b, d->y, d->relu, d->ws,
                              d->ws_floats, stream));
    }
    if (d->dropout == 2 && d->pass == 1) {
        CK(dense_backward_cuda(d->n, d->in, d->out, d->xd, d->w, d->dy, d->g, d->dw, d->db, d->ws,
                               d->ws_floats, stream));
        CK(dropout_backward_cuda(nx, 0.4f, d->mask, d->x, d->g, d->dx, stream));
    }
}

static void run_dense(void *arg, int lib) {
    DenseBench *d = arg;
    if (d->dropout) {
        run_dense_dropout(d);
    } else if (!lib) {
        if (d->pass == 0)
            CK(dense_forward_cuda(d->n, d->in, d->out, d->x, d->w, d->b, d->y, d->relu, d->ws,
                                  d->ws_floats, stream));
        else if (d->pass == 4)
            CK(dense_backward_data_alive_cuda(d->n, d->in, d->out, d->x, d->w, d->dy, d->dx,
                                              stream));
        else if (d->pass == 5)
            CK(dense_forward_sparse_input_cuda(d->n, d->in, d->out, d->x, d->w, d->b, d->y,
                                               d->relu, stream));
        else if (d->pass == 6)
            CK(dense_backward_filter_sparse_input_cuda(d->n, d->in, d->out, d->x, d->dy, d->dw,
                                                       d->db, stream));
        else
            CK(dense_backward_cuda(d->n, d->in, d->out, d->x, d->w, d->dy,
                                   d->pass == 3 ? NULL : d->dx, d->pass == 2 ? NULL : d->dw,
                                   d->pass == 2 ? NULL : d->db, d->ws, d->ws_floats, stream));
    } else { /* the library's pass of the same work (5: the forward; 6: dw and db) */
        if (d->pass == 0 || d->pass == 5) {
            CKBLAS(dense_forward_cublas(blas, d->n, d->in, d->out, d->x, d->w, d->b, d->y, d->ones));
            if (d->relu) CKDNN(relu_forward_cudnn(dnn, (size_t)d->n * d->out, d->y, d->y));
        } else {
            const int dx_only = d->pass == 2 || d->pass == 4;
            const int dw_only = d->pass == 3 || d->pass == 6;
            CKBLAS(dense_backward_cublas(blas, d->n, d->in, d->out, d->x, d->w, d->dy,
                                         dw_only ? NULL : d->dx, dx_only ? NULL : d->dw,
                                         dx_only ? NULL : d->db, d->ones));
        }
    }
}

static void bench_dense(const char *name, int n, int in, int out, int relu) {
    /* The sweep times GEMM tiles: narrow layers take their own kernels (kernels/dense.cu). */
    if (sweep_mode && out <= 16) return;
    DenseBench d;
    memset(&d, 0, sizeof d);
    d.n = n;
    d.in = in;
    d.out = out;
    d.relu = relu;
    d.x = dev_random((size_t)n * in, 0, 1, 5);
    d.w = dev_random((size_t)in * out, -0.05f, 0.05f, 6);
    d.b = dev_random((size_t)out, -0.1f, 0.1f, 7);
    d.dy = dev_random((size_t)n * out, -1, 1, 8);
    d.y = dev_alloc((size_t)n * out * 4);
    d.dx = dev_alloc((size_t)n * in * 4);
    d.dw = dev_alloc((size_t)in * out * 4);
    d.db = dev_alloc((size_t)out * 4);
    d.ones = dev_random((size_t)n, 1, 1, 9);
    d.ws_floats = dense_workspace_floats_cuda(n, in, out);
    if (sweep_mode) { /* room for the largest forced split of the three GEMMs */
        size_t a = (size_t)n * out, b = (size_t)n * in, c = ((size_t)in + 1) * out;
        size_t mn = a > b ? a : b;
        d.ws_floats = SWEEP_MAX_SPLITS * (mn > c ? mn : c);
    }
    d.ws = dev_alloc(d.ws_floats * 4);
    double flops = 2.0 * n * in * out;
    char op[64];
    snprintf(op, sizeof op, "%s fwd+bias%s", name, relu ? "+relu" : "");
    report(op, n, run_dense, &d, flops, 1, "cuBLAS");
    d.pass = 1;
    snprintf(op, sizeof op, "%s bwd (dx, dw, db)", name);
    report(op, n, run_dense, &d, 2 * flops, 1, "cuBLAS");
    if (!dropout_dense_fits_cuda(n, in, out)) {
        /* its two GEMMs one at a time (each with its own tile rule; the sweep then times every
         * tile for each): which one holds the backward under the library's time */
        d.pass = 2;
        snprintf(op, sizeof op, "%s bwd dx", name);
        report(op, n, run_dense, &d, flops, 1, "cuBLAS");
        d.pass = 3;
        snprintf(op, sizeof op, "%s bwd dw+db", name);
        report(op, n, run_dense, &d, flops, 1, "cuBLAS");
    }
    /* dx only where x > 0 (CNN_CUDA_DENSE_DX_ALIVE=1, item 39), against cuBLAS's whole dx, and
     * the forward and dw + db over x's nonzeros (CNN_CUDA_DENSE_SPARSE=1, item 40), against
     * cuBLAS's, work counted as those GEMMs': on these inputs (every x > 0), and with 95% of x
     * zero, as dense1's input (pool2's output) on MNIST after one epoch */
    const int alive_rows = !sweep_mode && dense_backward_data_alive_ok_cuda(n, in, out);
    const int sparse_rows = !sweep_mode && out > 16 && dense_sparse_input_ok_cuda(n, in, out);
    if (sparse_rows) {
        d.pass = 5;
        snprintf(op, sizeof op, "%s fwd over nonzeros", name);
        report(op, n, run_dense, &d, flops, 1, "cuBLAS");
        d.pass = 6;
        snprintf(op, sizeof op, "%s bwd dw+db over nonzeros", name);
        report(op, n, run_dense, &d, flops, 1, "cuBLAS");
    }
    if (alive_rows) {
        d.pass = 4;
        snprintf(op, sizeof op, "%s bwd dx where alive", name);
        report(op, n, run_dense, &d, flops, 1, "cuBLAS");
    }
    if (alive_rows || sparse_rows) {
        float *h = malloc((size_t)n * in * sizeof *h);
        if (!h) exit(1);
        uint64_t state = 42;
        size_t alive = 0;
        for (size_t i = 0; i < (size_t)n * in; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            h[i] = (state >> 33) % 100 < 5 ? 0.5f : 0.0f;
            alive += h[i] > 0.0f;
        }
        CK(cudaMemcpy(d.x, h, (size_t)n * in * sizeof *h, cudaMemcpyHostToDevice));
        settle();
        free(h);
        printf("|   (%s, few: %.1f%% of x alive) |\n", name,
               100.0 * (double)alive / ((double)n * in));
        if (alive_rows) {
            d.pass = 4;
            snprintf(op, sizeof op, "%s bwd dx where alive, few", name);
            report(op, n, run_dense, &d, flops, 1, "cuBLAS");
        }
        if (sparse_rows) {
            d.pass = 5;
            snprintf(op, sizeof op, "%s fwd over nonzeros, few", name);
            report(op, n, run_dense, &d, flops, 1, "cuBLAS");
            d.pass = 6;
            snprintf(op, sizeof op, "%s bwd dw+db over nonzeros, few", name);
            report(op, n, run_dense, &d, flops, 1, "cuBLAS");
        }
    }
    if (!sweep_mode && dropout_dense_fits_cuda(n, in, out)) {
        /* The logits layer with the dropout before it: fused (CNN_CUDA_FUSED=5) against our
         * dropout and dense kernels in sequence (=4). Not under CNN_DENSE_V=1 (bench_gemm1):
         * the fused kernels are the narrow path's. */
        d.mask = dev_alloc((size_t)n * in);
        d.xd = dev_alloc((size_t)n * in * 4);
        d.g = dev_alloc((size_t)n * in * 4);
        d.step = dev_alloc(8);
        CK(cudaMemset(d.step, 0, 8));
        settle();
        const char *label[2] = {"fused", "ours unfused"};
        for (int pass = 0; pass < 2; pass++)
            for (int v = 1; v <= 2; v++) {
                d.pass = pass;
                d.dropout = v;
                snprintf(op, sizeof op, "dropout+%s %s %s", name, pass ? "bwd" : "fwd", label[v - 1]);
                report(op, n, run_dense, &d, pass ? 2 * flops : flops, 1, NULL);
            }
        void *drop_bufs[] = {d.mask, d.xd, d.g, d.step};
        for (size_t i = 0; i < sizeof drop_bufs / sizeof drop_bufs[0]; i++)
            CK(cudaFree(drop_bufs[i]));
    }
    void *bufs[] = {d.x, d.w, d.b, d.dy, d.y, d.dx, d.dw, d.db, d.ones, d.ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) CK(cudaFree(bufs[i]));
}

/* ---- pooling -------------------------------------------------------------------------------- */
typedef struct {
    Pool2dShape s;
    float *x, *y, *dy, *dx;
    int32_t *argmax;
    int pass;
    cudnnPoolingDescriptor_t pd;
    cudnnTensorDescriptor_t xd, yd;
} PoolBench;

static void run_pool(void *arg, int lib) {
    PoolBench *p = arg;
    const float one = 1.0f, zero = 0.0f;
    if (!lib) {
        if (p->pass == 0)
            CK(maxpool2d_forward_cuda(&p->s, p->x, p->y, p->argmax, stream));
        else
            CK(maxpool2d_backward_cuda(&p->s, p->dy, p->argmax, NULL, p->dx, stream));
    } else {
        if (p->pass == 0)
            CKDNN(cudnnPoolingForward(dnn, p->pd, &one, p->xd, p->x, &zero, p->yd, p->y));
        else
            CKDNN(cudnnPoolingBackward(dnn, p->pd, &one, p->yd, p->y, p->yd, p->dy, p->xd, p->x,
                                       &zero, p->xd, p->dx));
    }
}

static void bench_pool(const char *name, int n, int h, int w, int c) {
    PoolBench p;
    memset(&p, 0, sizeof p);
    pool2d_shape_init(&p.s, n, h, w, c, 2, 2, 2, 2, 1);
    size_t nx = (size_t)n * h * w * c, ny = (size_t)n * p.s.oh * p.s.ow * c;
    p.x = dev_random(nx, -1, 1, 10);
    p.dy = dev_random(ny, -1, 1, 11);
    p.y = dev_alloc(ny * 4);
    p.dx = dev_alloc(nx * 4);
    p.argmax = dev_alloc(ny * 4);
    CKDNN(cudnnCreatePoolingDescriptor(&p.pd));
    CKDNN(cudnnSetPooling2dDescriptor(p.pd, CUDNN_POOLING_MAX_DETERMINISTIC, CUDNN_NOT_PROPAGATE_NAN,
                                      2, 2, 0, 0, 2, 2));
    CKDNN(cudnnCreateTensorDescriptor(&p.xd));
    CKDNN(cudnnCreateTensorDescriptor(&p.yd));
    CKDNN(cudnnSetTensor4dDescriptor(p.xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, n, c, h, w));
    CKDNN(cudnnSetTensor4dDescriptor(p.yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, n, c, p.s.oh, p.s.ow));
    char op[64];
    snprintf(op, sizeof op, "%s fwd (+argmax)", name);
    report(op, n, run_pool, &p, (double)nx * 4 + ny * 8, 0, "cuDNN");
    p.pass = 1;
    CK(maxpool2d_forward_cuda(&p.s, p.x, p.y, p.argmax, stream));
    snprintf(op, sizeof op, "%s bwd", name);
    report(op, n, run_pool, &p, (double)nx * 4 + ny * 8, 0, "cuDNN");
    cudnnDestroyPoolingDescriptor(p.pd);
    cudnnDestroyTensorDescriptor(p.xd);
    cudnnDestroyTensorDescriptor(p.yd);
    void *bufs[] = {p.x, p.y, p.dy, p.dx, p.argmax};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) CK(cudaFree(bufs[i]));
}

/* ---- conv + ReLU + pool, fused (kernels/conv2d_pool.cu) ------------------------------------ */
/* The fused layers against the library doing the same work (cuDNN conv + bias, ReLU, pooling;
 * backward: pooling backward, ReLU backward, filter gradient) and against our own unfused
 * kernels: conv1 forward and filter gradient (the step with CNN_CUDA_FUSED=1 unfused them),
 * conv2 forward (its GEMM with the pool in the store; CNN_CUDA_FUSED=3 unfused it; its filter
 * gradient from the pool is the "conv2 ... bwd filter from pool" row). */
typedef struct {
    Conv2dShape cs;
    Pool2dShape ps;
    float *x, *w, *b, *conv, *dconv, *y, *dy, *dw, *db, *ws, *wtmp;
    int32_t *argmax;
    size_t ws_floats, lib_ws_bytes;
    void *lib_ws;
    Conv2dCudnn *plan;
    cudnnPoolingDescriptor_t pd;
    cudnnTensorDescriptor_t cd, yd;
    int pass, unfused; /* pass 0 fwd, 1 bwd; unfused: our conv and pool kernels in sequence */
} ConvPoolBench;

static void run_conv_pool(void *arg, int lib) {
    ConvPoolBench *c = arg;
    const float one = 1.0f, zero = 0.0f;
    const size_t nconv = (size_t)c->cs.n * c->cs.oh * c->cs.ow * c->cs.k;
    if (!lib && !c->unfused) {
        if (c->pass == 0)
            CK(conv2d_relu_maxpool_forward_cuda(&c->cs, &c->ps, c->x, c->w, c->b, c->y, c->argmax,
                                                stream));
        else
            CK(conv2d_relu_maxpool_backward_filter_cuda(&c->cs, &c->ps, c->x, c->y, c->argmax,
                                                        c->dy, c->dw, c->db, c->ws, c->ws_floats,
                                                        stream));
    } else if (!lib) {
        if (c->pass == 0) {
            CK(conv2d_forward_cuda(&c->cs, c->x, c->w, c->b, c->conv, 1, c->ws, c->ws_floats,
                                   stream));
            CK(maxpool2d_forward_cuda(&c->ps, c->conv, c->y, c->argmax, stream));
        } else {
            CK(maxpool2d_backward_cuda(&c->ps, c->dy, c->argmax, c->conv, c->dconv, stream));
            CK(conv2d_backward_filter_cuda(&c->cs, c->x, c->dconv, c->dw, c->db, c->ws,
                                           c->ws_floats, stream));
        }
    } else if (c->pass == 0) {
        CKDNN(conv2d_forward_cudnn(dnn, c->plan, c->x, c->w, c->b, c->conv, c->wtmp, c->lib_ws,
                                   c->lib_ws_bytes));
        CKDNN(relu_forward_cudnn(dnn, nconv, c->conv, c->conv));
        CKDNN(cudnnPoolingForward(dnn, c->pd, &one, c->cd, c->conv, &zero, c->yd, c->y));
    } else {
        CKDNN(cudnnPoolingBackward(dnn, c->pd, &one, c->yd, c->y, c->yd, c->dy, c->cd, c->conv,
                                   &zero, c->cd, c->dconv));
        CKDNN(relu_backward_cudnn(dnn, nconv, c->conv, c->dconv, c->dconv));
        CKDNN(conv2d_backward_filter_cudnn(dnn, c->plan, c->x, c->dconv, c->dw, c->db, c->wtmp,
                                           c->lib_ws, c->lib_ws_bytes));
    }
}

/* layer 1: conv1 (28x28x1 -> 32), layer 2: conv2 (14x14x32 -> 64), 5x5 SAME, pool 2/2. */
static void bench_conv_pool(int n, int layer) {
    if (sweep_mode) return; /* no GEMM tiles to sweep */
    ConvPoolBench c;
    memset(&c, 0, sizeof c);
    const int hw = layer == 1 ? 28 : 14, ci = layer == 1 ? 1 : 32, co = layer == 1 ? 32 : 64;
    conv2d_shape_init(&c.cs, n, hw, hw, ci, 5, 5, co, 1, 1, 1);
    pool2d_shape_init(&c.ps, n, hw, hw, co, 2, 2, 2, 2, 1);
    const size_t nx = (size_t)n * hw * hw * ci, nconv = (size_t)n * hw * hw * co;
    const size_t ny = nconv / 4, nw = (size_t)25 * ci * co;
    /* raw pixels for conv1, as the model takes them; pool1's output range for conv2 */
    c.x = dev_random(nx, 0, layer == 1 ? 255 : 2, 12);
    c.w = dev_random(nw, -0.1f, 0.1f, 13);
    c.b = dev_random((size_t)co, -0.1f, 0.1f, 14);
    c.dy = dev_random(ny, -1, 1, 15);
    c.conv = dev_alloc(nconv * 4);
    c.dconv = dev_alloc(nconv * 4);
    c.y = dev_alloc(ny * 4);
    c.argmax = dev_alloc(ny * 4);
    c.dw = dev_alloc(nw * 4);
    c.db = dev_alloc((size_t)co * 4);
    c.wtmp = dev_alloc(nw * 4);
    c.ws_floats = conv2d_relu_maxpool_workspace_floats_cuda(&c.cs, &c.ps);
    if (conv2d_workspace_floats_cuda(&c.cs) > c.ws_floats)
        c.ws_floats = conv2d_workspace_floats_cuda(&c.cs);
    c.ws = dev_alloc(c.ws_floats * 4);
    char err[256];
    c.plan = conv2d_cudnn_create(dnn, &c.cs, 1, (size_t)256 << 20, err, sizeof err);
    if (!c.plan) {
        fprintf(stderr, "cudnn plan: %s\n", err);
        exit(1);
    }
    c.lib_ws_bytes = conv2d_cudnn_workspace_bytes(c.plan);
    c.lib_ws = dev_alloc(c.lib_ws_bytes);
    CKDNN(cudnnCreatePoolingDescriptor(&c.pd));
    CKDNN(cudnnSetPooling2dDescriptor(c.pd, CUDNN_POOLING_MAX_DETERMINISTIC, CUDNN_NOT_PROPAGATE_NAN,
                                      2, 2, 0, 0, 2, 2));
    CKDNN(cudnnCreateTensorDescriptor(&c.cd));
    CKDNN(cudnnCreateTensorDescriptor(&c.yd));
    CKDNN(cudnnSetTensor4dDescriptor(c.cd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, n, co, hw, hw));
    CKDNN(cudnnSetTensor4dDescriptor(c.yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, n, co, hw / 2,
                                     hw / 2));
    const double flops = 2.0 * nconv * 25.0 * ci; /* the conv's, as in the unfused rows */
    char name[64];
    /* The forward first: the backward rows read its y and argmax. */
    snprintf(name, sizeof name, "conv%d+relu+pool%d fwd fused", layer, layer);
    report(name, n, run_conv_pool, &c, flops, 1, "cuDNN x3");
    c.unfused = 1;
    snprintf(name, sizeof name, "conv%d+relu+pool%d fwd ours unfused", layer, layer);
    report(name, n, run_conv_pool, &c, flops, 1, NULL);
    if (layer == 1) {
        c.unfused = 0;
        c.pass = 1;
        CK(conv2d_relu_maxpool_forward_cuda(&c.cs, &c.ps, c.x, c.w, c.b, c.y, c.argmax, stream));
        report("conv1+pool1 bwd filter fused", n, run_conv_pool, &c, flops, 1, "cuDNN x3");
        c.unfused = 1;
        CK(conv2d_forward_cuda(&c.cs, c.x, c.w, c.b, c.conv, 1, c.ws, c.ws_floats, stream));
        report("conv1+pool1 bwd ours unfused", n, run_conv_pool, &c, flops, 1, NULL);
    }
    printf("|   (cuDNN algorithms conv%d: %s) |\n", layer, conv2d_cudnn_algos(c.plan));
    conv2d_cudnn_destroy(c.plan);
    cudnnDestroyPoolingDescriptor(c.pd);
    cudnnDestroyTensorDescriptor(c.cd);
    cudnnDestroyTensorDescriptor(c.yd);
    void *bufs[] = {c.x, c.w, c.b, c.conv, c.dconv, c.y, c.argmax, c.dy, c.dw, c.db, c.wtmp,
                    c.ws, c.lib_ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) CK(cudaFree(bufs[i]));
}

/* ---- elementwise and the rest --------------------------------------------------------------- */
typedef struct {
    size_t n;
    int batch, pass;
    float *a, *b, *c, *d;
    uint8_t *mask, *pixels;
    int32_t *labels, *ring, *ylab;
    int64_t *step;
    float *loss;
} EwBench;

static void run_relu(void *arg, int lib) {
    EwBench *e = arg;
    if (lib)
        CKDNN(relu_forward_cudnn(dnn, e->n, e->a, e->b));
    else
        CK(relu_forward_cuda(e->n, e->a, e->b, stream));
}
static void run_dropout(void *arg, int lib) {
    EwBench *e = arg;
    (void)lib;
    if (e->pass == 0)
        CK(dropout_forward_cuda(e->n, 0.4f, 7, PHILOX_STREAM_DROPOUT, 16, e->step, e->a, e->b,
                                e->mask, stream));
    else
        CK(dropout_backward_cuda(e->n, 0.4f, e->mask, e->a, e->c, e->d, stream));
}
static void run_xent(void *arg, int lib) {
    EwBench *e = arg;
    const float one = 1.0f, zero = 0.0f;
    if (lib) { /* cuDNN has softmax only (no sparse cross-entropy): softmax alone */
        cudnnTensorDescriptor_t d;
        CKDNN(cudnnCreateTensorDescriptor(&d));
        CKDNN(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, e->batch, 10, 1, 1));
        CKDNN(cudnnSoftmaxForward(dnn, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &one, d,
                                  e->a, &zero, d, e->b));
        CKDNN(cudnnDestroyTensorDescriptor(d));
    } else {
        CK(softmax_xent_fused_cuda(e->batch, 10, e->a, e->labels, e->b, e->loss, e->c, stream));
    }
}
static void run_adam(void *arg, int lib) {
    EwBench *e = arg;
    (void)lib;
    CK(adam_update_cuda(e->n, e->a, e->b, e->c, e->d, 1e-3f, 0.9f, 0.999f, 1e-7f, e->step, stream));
}
static void run_gather(void *arg, int lib) {
    EwBench *e = arg;
    (void)lib;
    CK(gather_batch_cuda(e->batch, 784, 60000, e->pixels, e->labels, e->ring, 2, e->step, e->a,
                         e->ylab, stream));
}

static void bench_rest(int batch) {
    EwBench e;
    memset(&e, 0, sizeof e);
    e.batch = batch;
    e.step = dev_alloc(8);
    /* ReLU at conv1's output size */
    e.n = (size_t)batch * 28 * 28 * 32;
    e.a = dev_random(e.n, -1, 1, 12);
    e.b = dev_alloc(e.n * 4);
    report("relu fwd (conv1 out)", batch, run_relu, &e, (double)e.n * 8, 0, "cuDNN");
    CK(cudaFree(e.a));
    CK(cudaFree(e.b));
    /* dropout on dense1's output */
    e.n = (size_t)batch * 1024;
    e.a = dev_random(e.n, 0, 1, 13);
    e.b = dev_alloc(e.n * 4);
    e.c = dev_random(e.n, -1, 1, 14);
    e.d = dev_alloc(e.n * 4);
    e.mask = dev_alloc(e.n);
    e.pass = 0;
    report("dropout fwd", batch, run_dropout, &e, (double)e.n * 9, 0, NULL);
    e.pass = 1;
    report("dropout+relu bwd", batch, run_dropout, &e, (double)e.n * 13, 0, NULL);
    CK(cudaFree(e.a)); CK(cudaFree(e.b)); CK(cudaFree(e.c)); CK(cudaFree(e.d)); CK(cudaFree(e.mask));
    /* softmax + cross-entropy fused (fwd + bwd) */
    e.a = dev_random((size_t)batch * 10, -5, 5, 15);
    e.b = dev_alloc((size_t)batch * 40);
    e.c = dev_alloc((size_t)batch * 40);
    e.loss = dev_alloc(4);
    e.labels = dev_alloc((size_t)batch * 4);
    report("softmax+xent fwd+bwd", batch, run_xent, &e, (double)batch * 10 * 12, 0,
           "cuDNN softmax only");
    /* version 2 (CNN_XENT_V=2: one block, GPU run 5's default) beside the default version 3
     * above (blocks of rows, the default since run 5); not in runs with another version set
     * (run.sh's bench_gemm1: CNN_XENT_V=1) */
    const char *xv = getenv("CNN_XENT_V");
    if (!xv || !*xv || strcmp(xv, "3") == 0) {
        setenv("CNN_XENT_V", "2", 1);
        report("softmax+xent fwd+bwd v2", batch, run_xent, &e, (double)batch * 10 * 12, 0,
               "cuDNN softmax only");
        unsetenv("CNN_XENT_V"); /* version 3: unset or "3", the same */
    }
    CK(cudaFree(e.a)); CK(cudaFree(e.b)); CK(cudaFree(e.c)); CK(cudaFree(e.loss));
    CK(cudaFree(e.labels));
    /* batch gather from a resident MNIST-sized data set */
    e.pixels = dev_alloc((size_t)60000 * 784);
    e.labels = dev_alloc((size_t)60000 * 4);
    int32_t *ring = malloc((size_t)2 * 60000 * 4);
    for (int i = 0; i < 2 * 60000; i++) ring[i] = (int32_t)(((uint64_t)i * 7919u) % 60000u);
    CK(cudaMalloc((void **)&e.ring, (size_t)2 * 60000 * 4));
    CK(cudaMemcpy(e.ring, ring, (size_t)2 * 60000 * 4, cudaMemcpyHostToDevice));
    settle();
    free(ring);
    e.a = dev_alloc((size_t)batch * 784 * 4);
    e.ylab = dev_alloc((size_t)batch * 4);
    report("gather batch (u8->f32)", batch, run_gather, &e, (double)batch * 784 * 5, 0, NULL);
    CK(cudaFree(e.pixels)); CK(cudaFree(e.labels)); CK(cudaFree(e.ring)); CK(cudaFree(e.a));
    CK(cudaFree(e.ylab));
    CK(cudaFree(e.step));
}

static void bench_adam(void) {
    EwBench e;
    memset(&e, 0, sizeof e);
    e.n = 3274634; /* the model's parameters */
    e.step = dev_alloc(8);
    e.a = dev_random(e.n, -1, 1, 16);
    e.b = dev_random(e.n, -1, 1, 17);
    e.c = dev_random(e.n, -0.1f, 0.1f, 18);
    e.d = dev_random(e.n, 0, 0.01f, 19);
    report("adam (3.27M params)", 0, run_adam, &e, (double)e.n * 28, 0, NULL);
    CK(cudaFree(e.a)); CK(cudaFree(e.b)); CK(cudaFree(e.c)); CK(cudaFree(e.d)); CK(cudaFree(e.step));
}

int main(int argc, char **argv) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("bench_kernels_cuda: no GPU, skipped\n");
        return 77;
    }
    setenv("CNN_CUDA_PDL", "0", 0); /* see the top: the same launch gaps as the libraries */
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    char why[1024];
    if (cudnn_libs_load(why, sizeof why) != 0) {
        fprintf(stderr, "bench_kernels_cuda: %s\n", why);
        return 1;
    }
    CKDNN(cudnnCreate(&dnn));
    CKDNN(cudnnSetStream(dnn, stream));
    CKBLAS(cublasCreate(&blas));
    CKBLAS(cublasSetStream(blas, stream));
    CKBLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
    /* CNN_GEMM_V picks our GEMM's kernel and tile rules (kernels/gemm_cuda.cuh; run.sh runs
     * several); version 5 is float32-class on the tensor cores (3xTF32), never plain TF32 */
    const char *gv = getenv("CNN_GEMM_V"), *pv = getenv("CNN_POOL_V");
    const char *av = getenv("CNN_ADAM_V"), *xv = getenv("CNN_XENT_V");
    printf("bench_kernels_cuda: %s, %d SMs, cuDNN %zu, FP32 (no TF32), our GEMM version %d%s, "
           "max-pool version %s, Adam version %s, cross-entropy version %s\n\n", prop.name,
           prop.multiProcessorCount, cudnnGetVersion(), gemm_version_cuda(),
           gv && *gv ? "" : " (default)", pv && *pv ? pv : "4 (default)",
           av && *av ? av : "2 (default)", xv && *xv ? xv : "3 (default)");
    int batches[8] = {100, 1000}, nb = 2, first = 1;
    if (argc > 1 && strcmp(argv[1], "--sweep") == 0) {
        sweep_mode = 1;
        first = 2;
    }
    if (argc > first) {
        nb = 0;
        for (int i = first; i < argc && nb < 8; i++) batches[nb++] = atoi(argv[i]);
    }
    if (sweep_mode) {
        printf("| op | batch | default us | best tile, splits | best us | default vs best |\n");
        printf("|---|---|---|---|---|---|\n");
    } else {
        printf("| op | batch | ours us | lib us | ours | lib | ours vs lib | library |\n");
        printf("|---|---|---|---|---|---|---|---|\n");
    }
    for (int i = 0; i < nb; i++) {
        int n = batches[i];
        bench_conv("conv1 28x28x1->32", n, 28, 28, 1, 32, 0);
        bench_conv("conv2 14x14x32->64", n, 14, 14, 32, 64, 1);
        bench_pool("pool1 28x28x32", n, 28, 28, 32);
        bench_pool("pool2 14x14x64", n, 14, 14, 64);
        bench_conv_pool(n, 1);
        bench_conv_pool(n, 2);
        bench_dense("dense1 3136->1024", n, 3136, 1024, 1);
        bench_dense("dense2 1024->10", n, 1024, 10, 0);
        if (!sweep_mode) bench_rest(n);
    }
    if (!sweep_mode) bench_adam();
    printf("\n(ours vs lib = library time / our time: 100%% = as fast as the library)\n");
    cublasDestroy(blas);
    cudnnDestroy(dnn);
    CK(cudaStreamDestroy(stream));
    return 0;
}
