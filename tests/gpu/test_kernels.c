/* test_kernels.c: every CUDA kernel (kernels_cuda.h) against its CPU twin (kernels.h) on fresh
 * random inputs, odd sizes included, device outputs poisoned (NaN) before each run.
 *
 * Tolerances (rel = max|gpu-cpu| / max|cpu|):
 *   0 (bitwise)  relu, dropout, max pooling, gather, argmax: the same operations in the same order.
 *   1e-5         softmax / cross-entropy / optimizers: same order, but CUDA's expf/logf/powf may
 *                differ from glibc's by an ulp or two.
 *   1e-4         GEMM-shaped ops (sgemm, dense, conv2d): the GPU sums each output in tiles of 16
 *                and split-K slices, the CPU in its own blocking, so the rounding differs; the
 *                error grows like sqrt(K)*2^-24 relative to the scale of the terms.
 * The cuDNN/cuBLAS versions (kernels_cudnn.h) are checked against the same references, and the
 * CUDA backend's fused entries (core/backend_cuda.c, CNN_CUDA_FUSED) against the CPU backend's
 * unfused sequences.
 * Built twice: for the GPU (gpu_test_kernels), and for the CPU emulator of tests/emu
 * (emu_test_kernels, CNN_CUDA_EMU: the same kernels compiled as host C++), where the cuDNN/cuBLAS
 * checks and the CUDA backend's fused entries (streams, graphs) are left out.
 * Usage: test_kernels [--quick] [--no-lib]   (--quick or CNN_TEST_QUICK=1: small shapes, for
 * compute-sanitizer; --no-lib: our kernels only). CNN_TEST_SEED=<n> reproduces a run's inputs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"
#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "kernels/philox.h"
#ifndef CNN_CUDA_EMU
#include "core/backend.h"
#include "kernels/kernels_cudnn.h"
#endif

#define TOL_GEMM 1e-5

#ifdef CNN_CUDA_EMU
size_t cuda_emu_mma_count(void); /* tests/emu/cuda_emu.cc */
#endif
#define TOL_MATH 1e-5

/* Downloads `bytes` of a device buffer and compares them bit for bit with the host's; the
 * check is named "what tag". */
static void check_device_bytes(const char *what, const char *tag, const void *dev,
                               const void *host, size_t bytes) {
    char name[192];
    snprintf(name, sizeof name, "%s %s", what, tag);
    void *g = dev_download(dev, bytes);
    check_equal_bytes(name, g, host, bytes);
    free(g);
}

/* Downloads n floats of a device buffer and checks them against the host's to tol. */
static void check_device_close(const char *what, const char *tag, const float *dev,
                               const float *host, size_t n, double tol) {
    char name[192];
    snprintf(name, sizeof name, "%s %s", what, tag);
    float *g = dev_download(dev, n * 4);
    check_close(name, g, host, n, tol);
    free(g);
}

static int quick = 0;
static int with_lib = 1; /* --no-lib: skip the cuDNN/cuBLAS checks (sanitizer runs: our kernels) */
#ifndef CNN_CUDA_EMU
/* The library versions (kernels_cudnn.h) are checked against the same CPU references: they are
 * the --device cudnn backend and the benchmarks' yardstick. */
static cudnnHandle_t dnn;
static cublasHandle_t blas;
#define CKDNN(call)                                                                           \
    do {                                                                                      \
        cudnnStatus_t st_ = (call);                                                           \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                \
                    cudnnGetErrorString(st_));                                                \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
#define CKBLAS(call)                                                                          \
    do {                                                                                      \
        cublasStatus_t st_ = (call);                                                          \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #call,  \
                    (int)st_);                                                                \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
#endif

/* ---- sgemm ---------------------------------------------------------------------------------- */
/* Leading dimensions = the matrices' widths plus pad_a, pad_b, pad_c. */
static void test_sgemm_case_ld(int ta, int tb, int m, int n, int k, float alpha, float beta,
                               int pad_a, int pad_b, int pad_c, int use_ws) {
    int lda = (ta ? m : k) + pad_a, ldb = (tb ? k : n) + pad_b, ldc = n + pad_c;
    int pad = pad_a || pad_b || pad_c;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = host_random(na, -1, 1), *b = host_random(nb, -1, 1), *c = host_random(nc, -1, 1);
    float *c_ref = host_alloc(nc * sizeof(float));
    memcpy(c_ref, c, nc * sizeof(float));
    sgemm_reference(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c_ref, ldc);
    float *da = dev_upload(a, na * 4), *db = dev_upload(b, nb * 4);
    /* beta == 0: C must not be read, so it starts poisoned; else it starts as the host C. */
    float *dc = beta == 0.0f ? dev_poisoned(nc * 4) : dev_upload(c, nc * 4);
    if (beta == 0.0f) { /* the padding columns stay poisoned on the GPU: copy them as NaN */
        for (int i = 0; i < m; i++)
            for (int j = n; j < ldc; j++) c_ref[(size_t)i * ldc + j] = NAN;
    }
    size_t wsf = use_ws ? sgemm_workspace_floats_cuda(m, n, k) : 0;
    float *dws = wsf ? dev_poisoned(wsf * 4) : NULL;
    CK(sgemm_cuda(ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc, dws, wsf, 0));
    float *g = dev_download(dc, nc * 4);
    char what[96];
    snprintf(what, sizeof what, "sgemm %c%c %dx%dx%d b=%g%s%s", ta ? 'T' : 'N', tb ? 'T' : 'N',
             m, n, k, beta, pad ? " padded" : "", wsf ? " splitK" : "");
    /* compare only the m x n block */
    float *gc = host_alloc((size_t)m * n * 4), *rc = host_alloc((size_t)m * n * 4);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            gc[(size_t)i * n + j] = g[(size_t)i * ldc + j];
            rc[(size_t)i * n + j] = c_ref[(size_t)i * ldc + j];
        }
    check_close(what, gc, rc, (size_t)m * n, TOL_GEMM);
    free(a); free(b); free(c); free(c_ref); free(g); free(gc); free(rc);
    CK(cudaFree(da)); CK(cudaFree(db)); CK(cudaFree(dc));
    if (dws) CK(cudaFree(dws));
}

static void test_sgemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta,
                            int pad, int use_ws) {
    test_sgemm_case_ld(ta, tb, m, n, k, alpha, beta, pad, pad, pad, use_ws);
}

static void test_sgemm(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_sgemm_case(ta, tb, 67, 45, 129, 1.3f, 0.0f, 0, 0);
            test_sgemm_case(ta, tb, 33, 70, 17, 0.7f, 0.6f, 3, 1);
            test_sgemm_case(ta, tb, 5, 7, quick ? 700 : 3001, 1.0f, 0.0f, 0, 1); /* split-K */
        }
    /* many rows: the 128x64 and 128x32 tiles */
    test_sgemm_case(0, 0, 2100, 40, 33, 1.0f, 0.0f, 0, 1);
    test_sgemm_case(1, 0, 2100, 20, 70, 1.0f, 0.5f, 1, 1);
    test_sgemm_case(0, 1, 2049, 65, 17, 2.0f, 0.0f, 0, 0);
    /* version 3's tiles (CNN_GEMM_V=3): 256x32 (many rows, <= 32 columns, K >= 256), and
     * 128x64 for wide outputs with few rows, both split over K; ragged edges on all sides */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_sgemm_case(ta, tb, 2111, 29, 300, 1.0f, 0.0f, 0, 1);
            test_sgemm_case(ta, tb, 67, 515, 129, 0.9f, 0.4f, 2, 1);
        }
    /* GEMM version 4's vector loads need leading dimensions and K (N for B along n) that are
     * multiples of 4: all four layouts, and a transposed A whose last group of 4 rows is
     * partial (65 rows, lda 68: read element by element) */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_sgemm_case_ld(ta, tb, 68, 44, 132, 1.0f, 0.0f, 0, 0, 0, 1);
            test_sgemm_case_ld(ta, tb, 2052, 32, 260, 1.0f, 0.0f, 0, 0, 0, 1);
        }
    test_sgemm_case_ld(1, 0, 65, 44, 132, 1.0f, 0.0f, 3, 0, 0, 1);
    test_sgemm_case_ld(1, 1, 65, 44, 132, 1.0f, 0.0f, 3, 0, 0, 0);
    test_sgemm_case(0, 0, 1, 1, 1, 1.0f, 0.0f, 0, 0);
    test_sgemm_case(0, 0, 3, 4, 0, 1.0f, 0.5f, 0, 1); /* k = 0: C = beta*C */
    if (!quick) test_sgemm_case(0, 0, 100, 1024, 3136, 1.0f, 0.0f, 0, 1); /* dense1 forward */
}

/* ---- dense ---------------------------------------------------------------------------------- */
/* Downloads the device outputs of a dense forward/backward and checks them against the CPU's. */
/* fwd_scale: the largest sum of |x||w| over the outputs (a few outputs of a short sum may all
 * cancel: 1x7->1 without a bias once gave 1.2e-4 from terms of ~0.05, 3e-5 apart) */
static void check_dense_outputs(const char *who, int n, int in, int out, int with_dx, int with_db,
                                const float *dY, const float *dDX, const float *dDW,
                                const float *dDB, const float *y, const float *dx,
                                const float *dw, const float *db, double fwd_scale) {
    char what[96];
    float *g = dev_download(dY, (size_t)n * out * 4);
    snprintf(what, sizeof what, "%s fwd %dx%d->%d", who, n, in, out);
    check_close_scaled(what, g, y, (size_t)n * out, TOL_GEMM, fwd_scale);
    free(g);
    if (with_dx) {
        g = dev_download(dDX, (size_t)n * in * 4);
        snprintf(what, sizeof what, "%s bwd dx %dx%d->%d", who, n, in, out);
        check_close(what, g, dx, (size_t)n * in, TOL_GEMM);
        free(g);
    }
    g = dev_download(dDW, (size_t)in * out * 4);
    snprintf(what, sizeof what, "%s bwd dw %dx%d->%d%s", who, n, in, out, with_db ? "" : " (no db)");
    check_close(what, g, dw, (size_t)in * out, TOL_GEMM);
    free(g);
    if (with_db) {
        g = dev_download(dDB, (size_t)out * 4);
        snprintf(what, sizeof what, "%s bwd db %dx%d->%d", who, n, in, out);
        check_close(what, g, db, (size_t)out, TOL_GEMM);
        free(g);
    }
}

static void test_dense_case(int n, int in, int out, int with_bias, int relu, int with_dx,
                            int with_db) {
    float *x = host_random((size_t)n * in, -1, 1), *w = host_random((size_t)in * out, -0.1f, 0.1f);
    float *b = host_random((size_t)out, -0.5f, 0.5f), *dy = host_random((size_t)n * out, -1, 1);
    float *y = host_alloc((size_t)n * out * 4), *dx = host_alloc((size_t)n * in * 4);
    float *dw = host_alloc((size_t)in * out * 4), *dbias = host_alloc((size_t)out * 4);
    dense_forward(n, in, out, x, w, with_bias ? b : NULL, y);
    if (relu) relu_forward((size_t)n * out, y, y);
    dense_backward(n, in, out, x, w, dy, with_dx ? dx : NULL, dw, dbias);
    double fwd_scale = 0;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < out; j++) {
            double sum = 0;
            for (int i = 0; i < in; i++)
                sum += fabs((double)x[(size_t)r * in + i] * w[(size_t)i * out + j]);
            if (sum > fwd_scale) fwd_scale = sum;
        }

    float *dX = dev_upload(x, (size_t)n * in * 4), *dW = dev_upload(w, (size_t)in * out * 4);
    float *dB = dev_upload(b, (size_t)out * 4), *dDY = dev_upload(dy, (size_t)n * out * 4);
    float *dY = dev_poisoned((size_t)n * out * 4), *dDX = dev_poisoned((size_t)n * in * 4);
    float *dDW = dev_poisoned((size_t)in * out * 4), *dDB = dev_poisoned((size_t)out * 4);
    size_t wsf = dense_workspace_floats_cuda(n, in, out);
    float *ws = wsf ? dev_poisoned(wsf * 4) : NULL;
    CK(dense_forward_cuda(n, in, out, dX, dW, with_bias ? dB : NULL, dY, relu, ws, wsf, 0));
    CK(dense_backward_cuda(n, in, out, dX, dW, dDY, with_dx ? dDX : NULL, dDW,
                           with_db ? dDB : NULL, ws, wsf, 0));
    check_dense_outputs("dense", n, in, out, with_dx, with_db, dY, dDX, dDW, dDB, y, dx, dw,
                        dbias, fwd_scale);
    /* As the CUDA backend issues them on two streams: dw and db alone (dx NULL), then dx alone
     * (dw NULL), which must leave dw and db as they are. */
    CK(cudaMemset(dDX, 0xFF, (size_t)n * in * 4));
    CK(cudaMemset(dDW, 0xFF, (size_t)in * out * 4));
    CK(cudaMemset(dDB, 0xFF, (size_t)out * 4));
    CK(dense_backward_cuda(n, in, out, dX, dW, dDY, NULL, dDW, with_db ? dDB : NULL, ws, wsf, 0));
    if (with_dx) CK(dense_backward_cuda(n, in, out, dX, dW, dDY, dDX, NULL, NULL, ws, wsf, 0));
    check_dense_outputs("dense split dw|dx", n, in, out, with_dx, with_db, dY, dDX, dDW, dDB, y,
                        dx, dw, dbias, fwd_scale);
#ifndef CNN_CUDA_EMU
    if (with_lib) { /* cuBLAS versions, same inputs, outputs poisoned again */
        float *ones_h = host_alloc((size_t)n * 4);
        for (int i = 0; i < n; i++) ones_h[i] = 1.0f;
        float *dOnes = dev_upload(ones_h, (size_t)n * 4);
        CK(cudaMemset(dY, 0xFF, (size_t)n * out * 4));
        CK(cudaMemset(dDX, 0xFF, (size_t)n * in * 4));
        CK(cudaMemset(dDW, 0xFF, (size_t)in * out * 4));
        CK(cudaMemset(dDB, 0xFF, (size_t)out * 4));
        CKBLAS(dense_forward_cublas(blas, n, in, out, dX, dW, with_bias ? dB : NULL, dY, dOnes));
        if (relu) CKDNN(relu_forward_cudnn(dnn, (size_t)n * out, dY, dY));
        CKBLAS(dense_backward_cublas(blas, n, in, out, dX, dW, dDY, with_dx ? dDX : NULL, dDW,
                                     with_db ? dDB : NULL, dOnes));
        check_dense_outputs("cublas dense", n, in, out, with_dx, with_db, dY, dDX, dDW, dDB, y,
                            dx, dw, dbias, fwd_scale);
        free(ones_h);
        CK(cudaFree(dOnes));
    }
#endif

    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(dbias);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dY));
    CK(cudaFree(dDX)); CK(cudaFree(dDW)); CK(cudaFree(dDB));
    if (ws) CK(cudaFree(ws));
}

static void test_dense(void) {
    test_dense_case(7, 13, 5, 1, 0, 1, 1);
    test_dense_case(37, 101, 66, 0, 1, 0, 0);
    test_dense_case(3, 300, 10, 1, 1, 1, 1);
    test_dense_case(5, 64, 36, 1, 1, 1, 1); /* widths multiples of 4: version 4's vector loads */
    test_dense_case(3, 300, 516, 1, 0, 1, 1);
    /* Narrow layers (out <= 16, kernels/dense.cu; CNN_DENSE_V=1: the GEMM): the widest, one
     * output, row counts off the dw kernel's groups of 4, no bias, ReLU. */
    test_dense_case(6, 37, 16, 1, 1, 1, 1);
    test_dense_case(1, 7, 1, 0, 0, 1, 0);
    test_dense_case(quick ? 13 : 1001, 129, 10, 1, 0, 1, 1);
    if (!quick) {
        test_dense_case(100, 3136, 1024, 1, 1, 1, 1); /* the model's dense layers */
        test_dense_case(100, 1024, 10, 1, 0, 1, 1);
    } else {
        test_dense_case(9, 200, 70, 1, 1, 1, 1);
    }
}

/* The data gradient where the input is alive (dense_backward_data_alive_cuda): x a pooled ReLU
 * output with a share `alive` of its entries > 0 (the rest exactly 0), against the CPU twin
 * (bit for bit) and the CPU's dense_backward masked by x > 0 (1e-5), w and dy aligned or not;
 * shapes it refuses. */
static void test_dense_dx_alive_case(int n, int in, int out, double alive, int unaligned) {
    float *x = host_random((size_t)n * in, 0.0f, 1.0f);
    float *w = host_random((size_t)in * out, -0.1f, 0.1f);
    float *dy = host_random((size_t)n * out, -1, 1), *dw = host_alloc((size_t)in * out * 4);
    float *dx = host_alloc((size_t)n * in * 4), *dx_gemm = host_alloc((size_t)n * in * 4);
    size_t live = 0;
    for (size_t e = 0; e < (size_t)n * in; e++) {
        if ((double)(rng_u64() % 1000000) >= alive * 1e6) x[e] = 0.0f;
        else x[e] += 1e-3f; /* > 0 */
        live += x[e] > 0.0f;
    }
    dense_backward_data_alive(n, in, out, x, w, dy, dx);
    dense_backward(n, in, out, x, w, dy, dx_gemm, dw, NULL);
    for (size_t e = 0; e < (size_t)n * in; e++)
        if (!(x[e] > 0.0f)) dx_gemm[e] = 0.0f;
    char tag[96], what[160];
    snprintf(tag, sizeof tag, "%dx%d->%d, %.1f%% alive", n, in, out,
             100.0 * (double)live / ((double)n * in));
    snprintf(what, sizeof what, "dense dx where alive: twin vs the masked GEMM %s", tag);
    check_close(what, dx, dx_gemm, (size_t)n * in, TOL_GEMM);
    /* unaligned: w and dy one float into their allocations (any alignment: scalar loads) */
    const size_t off = unaligned ? 1 : 0;
    float *dX = dev_upload(x, (size_t)n * in * 4), *dDX = dev_poisoned((size_t)n * in * 4);
    float *dW = dev_poisoned(((size_t)in * out + off) * 4);
    float *dDY = dev_poisoned(((size_t)n * out + off) * 4);
    CK(cudaMemcpy(dW + off, w, (size_t)in * out * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dDY + off, dy, (size_t)n * out * 4, cudaMemcpyHostToDevice));
    CK(dense_backward_data_alive_cuda(n, in, out, dX, dW + off, dDY + off, dDX, 0));
    if (unaligned) strcat(tag, ", unaligned w and dy");
    check_device_bytes("dense dx where alive", tag, dDX, dx, (size_t)n * in * 4);
    free(x); free(w); free(dy); free(dw); free(dx); free(dx_gemm);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dDY)); CK(cudaFree(dDX));
}

static void test_dense_dx_alive(void) {
    test_dense_dx_alive_case(quick ? 2 : 5, 3136, 1024, 0.5, 0); /* dense1 */
    test_dense_dx_alive_case(quick ? 3 : 10, 3136, 1024, 0.05, 0); /* MNIST after one epoch */
    test_dense_dx_alive_case(2, 3136, 1024, 0.0, 0);
    test_dense_dx_alive_case(3, 77, 96, 0.3, 0);    /* a partial warp of inputs; 3 x 32 columns */
    test_dense_dx_alive_case(4, 300, 384, 1.0, 0);  /* every entry alive */
    test_dense_dx_alive_case(2, 33, 256, 0.5, 0);
    test_dense_dx_alive_case(3, 70, 1024, 0.5, 1);  /* scalar loads */
    /* refused: out not a multiple of 32, more than 1024 */
    float *buf = dev_poisoned((size_t)4 * 1280 * 4);
    const int refused_out[2] = {100, 1152};
    for (int i = 0; i < 2; i++) {
        check_count++;
        if (dense_backward_data_alive_cuda(1, 2, refused_out[i], buf, buf, buf, buf, 0) !=
            cudaErrorInvalidValue) {
            check_failures++;
            printf("FAIL dense dx where alive takes out = %d\n", refused_out[i]);
        }
    }
    CK(cudaFree(buf));
}

/* The forward and filter gradient over x's nonzeros (dense_forward_sparse_input_cuda,
 * dense_backward_filter_sparse_input_cuda): x with a share `nz` of its entries nonzero (either
 * sign), against the CPU twins (bit for bit) and the CPU's GEMMs (1e-5); with and without the
 * bias, the ReLU and db; sizes it refuses. */
static void test_dense_sparse_input_case(int n, int in, int out, double nz, int relu, int bias) {
    const size_t nx = (size_t)n * in, nw = (size_t)in * out, ny = (size_t)n * out;
    float *x = host_random(nx, -1, 1), *w = host_random(nw, -0.1f, 0.1f);
    float *b = host_random((size_t)out, -0.5f, 0.5f), *dy = host_random(ny, -1, 1);
    size_t live = 0;
    for (size_t e = 0; e < nx; e++) {
        if ((double)(rng_u64() % 1000000) >= nz * 1e6) x[e] = 0.0f;
        live += x[e] != 0.0f;
    }
    const float *bb = bias ? b : NULL;
    float *y = host_alloc(ny * 4), *y_gemm = host_alloc(ny * 4);
    float *dw = host_alloc(nw * 4), *dw_gemm = host_alloc(nw * 4);
    float *db = host_alloc((size_t)out * 4 + 4);
    if (dense_forward_sparse_input(n, in, out, x, w, bb, y) != 0 ||
        dense_backward_filter_sparse_input(n, in, out, x, dy, dw, bias ? db : NULL) != 0) {
        printf("FAIL dense over nonzeros: the CPU twin ran out of memory\n");
        exit(1);
    }
    if (relu) relu_forward(ny, y, y);
    sgemm(0, 0, n, out, in, 1.0f, x, in, w, out, 0.0f, y_gemm, out);
    for (size_t e = 0; e < ny; e++) {
        float v = bias ? y_gemm[e] + b[e % (size_t)out] : y_gemm[e];
        y_gemm[e] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
    sgemm(1, 0, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw_gemm, out);
    char tag[96], what[160];
    snprintf(tag, sizeof tag, "%dx%d->%d, %.1f%% nonzero%s%s", n, in, out,
             100.0 * (double)live / ((double)nx + 1e-9), relu ? ", relu" : "",
             bias ? ", bias" : "");
    snprintf(what, sizeof what, "dense fwd over nonzeros: twin vs the GEMM %s", tag);
    check_close(what, y, y_gemm, ny, TOL_GEMM);
    snprintf(what, sizeof what, "dense dw over nonzeros: twin vs the GEMM %s", tag);
    check_close(what, dw, dw_gemm, nw, TOL_GEMM);
    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(w, nw * 4), *dB = dev_upload(b, out * 4);
    float *dDY = dev_upload(dy, ny * 4), *dY = dev_poisoned(ny * 4), *dDW = dev_poisoned(nw * 4);
    float *dDB = dev_poisoned((size_t)out * 4 + 4);
    CK(dense_forward_sparse_input_cuda(n, in, out, dX, dW, bias ? dB : NULL, dY, relu, 0));
    check_device_bytes("dense fwd over nonzeros", tag, dY, y, ny * 4);
    CK(dense_backward_filter_sparse_input_cuda(n, in, out, dX, dDY, dDW, bias ? dDB : NULL, 0));
    check_device_bytes("dense dw over nonzeros", tag, dDW, dw, nw * 4);
    if (bias) check_device_bytes("dense db over nonzeros", tag, dDB, db, (size_t)out * 4);
    free(x); free(w); free(b); free(dy); free(y); free(y_gemm); free(dw); free(dw_gemm); free(db);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dY));
    CK(cudaFree(dDW)); CK(cudaFree(dDB));
}

static void test_dense_sparse_input(void) {
    test_dense_sparse_input_case(quick ? 3 : 100, 3136, 1024, 0.05, 1, 1); /* dense1 on MNIST */
    test_dense_sparse_input_case(quick ? 2 : 10, 3136, 1024, 0.5, 1, 1);
    test_dense_sparse_input_case(3, 77, 300, 0.2, 0, 1);  /* partial blocks of columns, inputs */
    test_dense_sparse_input_case(5, 40, 70, 1.0, 0, 0);   /* every entry nonzero; no bias, no db */
    test_dense_sparse_input_case(37, 33, 32, 0.1, 1, 1);  /* rows over one warp's masks */
    test_dense_sparse_input_case(2, 64, 256, 0.0, 1, 1);  /* all zeros: y = relu(b), dw = 0 */
    /* refused: more rows or inputs than the shared lists hold */
    float *buf = dev_poisoned(64);
    const int refused[2][2] = {{4097, 16}, {4, 4097}};
    for (int i = 0; i < 2; i++) {
        check_count += 2;
        if (dense_forward_sparse_input_cuda(refused[i][0], refused[i][1], 4, buf, buf, NULL, buf, 0,
                                            0) != cudaErrorInvalidValue) {
            check_failures++;
            printf("FAIL dense fwd over nonzeros takes n = %d, in = %d\n", refused[i][0],
                   refused[i][1]);
        }
        if (dense_backward_filter_sparse_input_cuda(refused[i][0], refused[i][1], 4, buf, buf, buf,
                                                    NULL, 0) != cudaErrorInvalidValue) {
            check_failures++;
            printf("FAIL dense dw over nonzeros takes n = %d, in = %d\n", refused[i][0],
                   refused[i][1]);
        }
    }
    CK(cudaFree(buf));
}

/* ---- conv2d --------------------------------------------------------------------------------- */
/* Downloads the device outputs of a conv forward/backward and checks them against the CPU's. */
static void check_conv_outputs(const char *who, const char *tag, size_t nx, size_t ny, size_t nw,
                               int k, const float *dY, const float *dDX, const float *dDW,
                               const float *dDB, const float *y, const float *dx,
                               const float *dw, const float *db) {
    char what[128];
    float *g = dev_download(dY, ny * 4);
    snprintf(what, sizeof what, "%s fwd %s", who, tag);
    check_close(what, g, y, ny, TOL_GEMM);
    free(g);
    g = dev_download(dDX, nx * 4);
    snprintf(what, sizeof what, "%s bwd data %s", who, tag);
    check_close(what, g, dx, nx, TOL_GEMM);
    free(g);
    g = dev_download(dDW, nw * 4);
    snprintf(what, sizeof what, "%s bwd filter %s", who, tag);
    check_close(what, g, dw, nw, TOL_GEMM);
    free(g);
    g = dev_download(dDB, (size_t)k * 4);
    snprintf(what, sizeof what, "%s bwd bias %s", who, tag);
    check_close(what, g, db, (size_t)k, TOL_GEMM);
    free(g);
}

static void test_conv_case(int n, int h, int w, int c, int kh, int kw, int k, int sh, int sw,
                           int same, int with_bias, int relu) {
    Conv2dShape s;
    conv2d_shape_init(&s, n, h, w, c, kh, kw, k, sh, sw, same);
    size_t nx = (size_t)n * h * w * c, nw = (size_t)kh * kw * c * k, ny = (size_t)n * s.oh * s.ow * k;
    float *x = host_random(nx, -1, 1), *wt = host_random(nw, -0.2f, 0.2f);
    float *b = host_random((size_t)k, -0.5f, 0.5f), *dy = host_random(ny, -1, 1);
    float *y = host_alloc(ny * 4), *dx = host_alloc(nx * 4), *dw = host_alloc(nw * 4);
    float *dbias = host_alloc((size_t)k * 4);
    float *ws = host_alloc(conv2d_workspace_floats(&s) * 4 + 4);
    conv2d_forward(&s, x, wt, with_bias ? b : NULL, y, ws);
    if (relu) relu_forward(ny, y, y);
    conv2d_backward_data(&s, dy, wt, dx, ws);
    conv2d_backward_filter(&s, x, dy, dw, dbias, ws);

    float *dX = dev_upload(x, nx * 4), *dWt = dev_upload(wt, nw * 4), *dB = dev_upload(b, k * 4);
    float *dDY = dev_upload(dy, ny * 4), *dY = dev_poisoned(ny * 4), *dDX = dev_poisoned(nx * 4);
    float *dDW = dev_poisoned(nw * 4), *dDB = dev_poisoned((size_t)k * 4);
    float *dDW2 = dev_poisoned(nw * 4);
    size_t wsf = conv2d_workspace_floats_cuda(&s);
    float *dws = wsf ? dev_poisoned(wsf * 4) : NULL;
    CK(conv2d_forward_cuda(&s, dX, dWt, with_bias ? dB : NULL, dY, relu, dws, wsf, 0));
    CK(conv2d_backward_data_cuda(&s, dDY, dWt, dDX, dws, wsf, 0));
    CK(conv2d_backward_filter_cuda(&s, dX, dDY, dDW, dDB, dws, wsf, 0));
    CK(conv2d_backward_filter_cuda(&s, dX, dDY, dDW2, NULL, dws, wsf, 0));

    char tag[80], what[128];
    snprintf(tag, sizeof tag, "%dx%dx%dx%d k%dx%dx%d s%d,%d %s%s%s", n, h, w, c, kh, kw, k, sh,
             sw, same ? "SAME" : "VALID", with_bias ? " b" : "", relu ? " relu" : "");
    check_conv_outputs("conv", tag, nx, ny, nw, k, dY, dDX, dDW, dDB, y, dx, dw, dbias);
    float *g = dev_download(dDW, nw * 4);
    float *g2 = dev_download(dDW2, nw * 4);
    snprintf(what, sizeof what, "conv bwd filter no-db == with-db %s", tag);
    check_equal_bytes(what, g2, g, nw * 4);
    free(g); free(g2);

    /* Determinism: the same call again gives the same bits (split-K reduced in order). */
    float *first = dev_download(dDW, nw * 4);
    CK(cudaMemset(dDW, 0xFF, nw * 4));
    CK(conv2d_backward_filter_cuda(&s, dX, dDY, dDW, dDB, dws, wsf, 0));
    g = dev_download(dDW, nw * 4);
    snprintf(what, sizeof what, "conv bwd filter deterministic %s", tag);
    check_equal_bytes(what, g, first, nw * 4);
    free(g); free(first);

#ifndef CNN_CUDA_EMU
    /* cuDNN versions (symmetric padding only), outputs poisoned again */
    char err[256];
    Conv2dCudnn *plan =
        with_lib ? conv2d_cudnn_create(dnn, &s, 0, (size_t)256 << 20, err, sizeof err) : NULL;
    if (!with_lib) {
        /* our kernels only */
    } else if (!plan) {
        printf("SKIP cudnn conv %s: %s\n", tag, err);
    } else {
        size_t wsb = conv2d_cudnn_workspace_bytes(plan);
        void *cws = dev_poisoned(wsb);
        float *wtmp = dev_poisoned(nw * 4);
        CK(cudaMemset(dY, 0xFF, ny * 4)); CK(cudaMemset(dDX, 0xFF, nx * 4));
        CK(cudaMemset(dDW, 0xFF, nw * 4)); CK(cudaMemset(dDB, 0xFF, (size_t)k * 4));
        CKDNN(conv2d_forward_cudnn(dnn, plan, dX, dWt, with_bias ? dB : NULL, dY, wtmp, cws, wsb));
        if (relu) CKDNN(relu_forward_cudnn(dnn, ny, dY, dY));
        CKDNN(conv2d_backward_data_cudnn(dnn, plan, dDY, dWt, dDX, wtmp, cws, wsb));
        CKDNN(conv2d_backward_filter_cudnn(dnn, plan, dX, dDY, dDW, dDB, wtmp, cws, wsb));
        check_conv_outputs("cudnn conv", tag, nx, ny, nw, k, dY, dDX, dDW, dDB, y, dx, dw,
                           dbias);
        printf("     cudnn algorithms: %s\n", conv2d_cudnn_algos(plan));
        conv2d_cudnn_destroy(plan);
        CK(cudaFree(cws)); CK(cudaFree(wtmp));
    }
#endif

    free(x); free(wt); free(b); free(dy); free(y); free(dx); free(dw); free(dbias); free(ws);
    CK(cudaFree(dX)); CK(cudaFree(dWt)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dY));
    CK(cudaFree(dDX)); CK(cudaFree(dDW)); CK(cudaFree(dDB)); CK(cudaFree(dDW2));
    if (dws) CK(cudaFree(dws));
}

static void test_conv(void) {
    /* (batch sizes with N*H*W >= 2048 take the 128-row tiles) */
    test_conv_case(3, 28, 28, 1, 5, 5, 32, 1, 1, 1, 1, 1);              /* conv1 */
    test_conv_case(quick ? 11 : 4, 14, 14, 32, 5, 5, 64, 1, 1, 1, 1, 1); /* conv2 */
    test_conv_case(2, 9, 7, 3, 3, 4, 5, 2, 1, 1, 0, 0);                 /* odd, strided SAME */
    test_conv_case(3, 11, 10, 9, 3, 2, 7, 2, 3, 0, 1, 0);               /* odd, strided VALID */
    if (!quick) test_conv_case(100, 14, 14, 32, 5, 5, 64, 1, 1, 1, 1, 1); /* conv2, batch 100 */
}

/* ---- GEMM version 4 vs 3 -------------------------------------------------------------------- */
/* Version 4 loads 16-byte vectors where the operands allow (kernels/gemm_cuda.cuh, VEC) and
 * changes nothing else: every conv and dense output bitwise equal to version 3's, on the same
 * inputs (the model's convs and dense layers all take the vector path). */
static float *conv_pass_output(int pass, const Conv2dShape *cs, size_t *bytes) {
    size_t nx = (size_t)cs->n * cs->h * cs->w * cs->c, nw = (size_t)cs->kh * cs->kw * cs->c * cs->k;
    size_t ny = (size_t)cs->n * cs->oh * cs->ow * cs->k;
    rng_state = 99; /* the same inputs for both versions */
    float *x = host_random(nx, -1, 1), *w = host_random(nw, -0.2f, 0.2f);
    float *b = host_random((size_t)cs->k, -0.5f, 0.5f), *dy = host_random(ny, -1, 1);
    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(w, nw * 4);
    float *dB = dev_upload(b, (size_t)cs->k * 4), *dDY = dev_upload(dy, ny * 4);
    size_t wsf = conv2d_workspace_floats_cuda(cs);
    float *ws = wsf ? dev_poisoned(wsf * 4) : NULL;
    size_t outn = pass == 0 ? ny : pass == 1 ? nx : nw + (size_t)cs->k;
    float *dOut = dev_poisoned(outn * 4);
    if (pass == 0) CK(conv2d_forward_cuda(cs, dX, dW, dB, dOut, 1, ws, wsf, 0));
    else if (pass == 1) CK(conv2d_backward_data_cuda(cs, dDY, dW, dOut, ws, wsf, 0));
    else CK(conv2d_backward_filter_cuda(cs, dX, dDY, dOut, dOut + nw, ws, wsf, 0));
    float *got = dev_download(dOut, outn * 4);
    *bytes = outn * 4;
    free(x); free(w); free(b); free(dy);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dOut));
    if (ws) CK(cudaFree(ws));
    return got;
}

static float *dense_pass_output(int pass, int n, int in, int out, size_t *bytes) {
    rng_state = 98;
    float *x = host_random((size_t)n * in, -1, 1), *w = host_random((size_t)in * out, -0.2f, 0.2f);
    float *b = host_random((size_t)out, -0.5f, 0.5f), *dy = host_random((size_t)n * out, -1, 1);
    float *dX = dev_upload(x, (size_t)n * in * 4), *dW = dev_upload(w, (size_t)in * out * 4);
    float *dB = dev_upload(b, (size_t)out * 4), *dDY = dev_upload(dy, (size_t)n * out * 4);
    size_t wsf = dense_workspace_floats_cuda(n, in, out);
    float *ws = wsf ? dev_poisoned(wsf * 4) : NULL;
    size_t ny = (size_t)n * out, ndx = (size_t)n * in, ndw = (size_t)in * out;
    size_t outn = pass == 0 ? ny : ndx + ndw + (size_t)out;
    float *dOut = dev_poisoned(outn * 4);
    if (pass == 0) CK(dense_forward_cuda(n, in, out, dX, dW, dB, dOut, 1, ws, wsf, 0));
    else CK(dense_backward_cuda(n, in, out, dX, dW, dDY, dOut, dOut + ndx, dOut + ndx + ndw, ws,
                                wsf, 0));
    float *got = dev_download(dOut, outn * 4);
    *bytes = outn * 4;
    free(x); free(w); free(b); free(dy);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dOut));
    if (ws) CK(cudaFree(ws));
    return got;
}

/* One op under versions 3 and 4: conv (cs) or dense (n, in, out); pass 0 fwd, 1 bwd data (dense:
 * the whole backward), 2 bwd filter. */
static void gemm_v3_v4_bits(const char *what, int pass, const Conv2dShape *cs, int n, int in,
                            int out) {
    float *got[2];
    size_t bytes = 0;
    for (int v = 0; v < 2; v++) {
        setenv("CNN_GEMM_V", v ? "4" : "3", 1);
        got[v] = cs ? conv_pass_output(pass, cs, &bytes) : dense_pass_output(pass, n, in, out, &bytes);
    }
    char name[96];
    snprintf(name, sizeof name, "GEMM v4 == v3: %s", what);
    check_equal_bytes(name, got[1], got[0], bytes);
    free(got[0]);
    free(got[1]);
}

static void test_gemm_v4_bits(void) {
    char *keep = env_keep("CNN_GEMM_V");
    uint64_t rng_keep = rng_state;
    Conv2dShape c2, c1, odd;
    conv2d_shape_init(&c2, quick ? 2 : 100, 14, 14, 32, 5, 5, 64, 1, 1, 1); /* conv2 */
    conv2d_shape_init(&c1, quick ? 2 : 100, 28, 28, 1, 5, 5, 32, 1, 1, 1);  /* conv1 */
    conv2d_shape_init(&odd, 3, 9, 7, 3, 3, 4, 5, 2, 1, 1);
    const char *pass_name[3] = {"fwd", "bwd data", "bwd filter"};
    for (int p = 0; p < 3; p++) {
        char what[64];
        snprintf(what, sizeof what, "conv2 %s", pass_name[p]);
        gemm_v3_v4_bits(what, p, &c2, 0, 0, 0);
        snprintf(what, sizeof what, "conv1 %s", pass_name[p]);
        gemm_v3_v4_bits(what, p, &c1, 0, 0, 0);
        snprintf(what, sizeof what, "odd conv %s", pass_name[p]);
        gemm_v3_v4_bits(what, p, &odd, 0, 0, 0);
    }
    int n1 = quick ? 3 : 100, in1 = quick ? 300 : 3136, out1 = quick ? 516 : 1024;
    gemm_v3_v4_bits("dense1 fwd", 0, NULL, n1, in1, out1);
    gemm_v3_v4_bits("dense1 bwd", 1, NULL, n1, in1, out1);
    gemm_v3_v4_bits("odd dense fwd", 0, NULL, 7, 45, 13);
    gemm_v3_v4_bits("odd dense bwd", 1, NULL, 7, 45, 13);
    rng_state = rng_keep;
    env_restore("CNN_GEMM_V", keep);
}

/* ---- max pooling ---------------------------------------------------------------------------- */
/* relu_like: inputs max(u, 0), so many windows tie at 0 (the first max must win). */
static void test_pool_case(int n, int h, int w, int c, int k, int stride, int same, int relu_like) {
    Pool2dShape s;
    pool2d_shape_init(&s, n, h, w, c, k, k, stride, stride, same);
    size_t nx = (size_t)n * h * w * c, ny = (size_t)n * s.oh * s.ow * c;
    float *x = host_random(nx, -1, 1), *dy = host_random(ny, -1, 1);
    if (relu_like)
        for (size_t i = 0; i < nx; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
    else /* coarse values: ties between non-zero values too */
        for (size_t i = 0; i < nx; i++) x[i] = (float)(int)(x[i] * 4) / 4;
    float *y = host_alloc(ny * 4), *dx = host_alloc(nx * 4), *dxr = host_alloc(nx * 4);
    float *dxy = host_alloc(nx * 4);
    int32_t *am = host_alloc(ny * 4);
    maxpool2d_forward(&s, x, y, am);
    maxpool2d_backward(&s, dy, am, dx);
    relu_backward(nx, x, dx, dxr); /* the fused variant: gradient through pool and ReLU */
    maxpool2d_relu_backward_from_y(&s, dy, am, y, dxy); /* the same, the mask from y */
    if (relu_like) /* x is a ReLU's output: masking by y gives the same bits (kernels.h) */
        check_equal_bytes("maxpool+relu bwd from y (CPU) == from x", dxy, dxr, nx * 4);

    float *dX = dev_upload(x, nx * 4), *dDY = dev_upload(dy, ny * 4), *dY = dev_poisoned(ny * 4);
    int32_t *dAM = dev_poisoned(ny * 4);
    float *dDX = dev_poisoned(nx * 4), *dDXR = dev_poisoned(nx * 4), *dDXY = dev_poisoned(nx * 4);
    CK(maxpool2d_forward_cuda(&s, dX, dY, dAM, 0));
    CK(maxpool2d_backward_cuda(&s, dDY, dAM, NULL, dDX, 0));
    CK(maxpool2d_backward_cuda(&s, dDY, dAM, dX, dDXR, 0));
    CK(maxpool2d_relu_backward_from_y_cuda(&s, dDY, dAM, dY, dDXY, 0));
    char tag[80];
    snprintf(tag, sizeof tag, "%dx%dx%dx%d k%d s%d %s%s", n, h, w, c, k, stride,
             same ? "SAME" : "VALID", relu_like ? " relu-in" : "");
    check_device_bytes("maxpool fwd y", tag, dY, y, ny * 4);
    check_device_bytes("maxpool fwd argmax", tag, dAM, am, ny * 4);
    check_device_bytes("maxpool bwd", tag, dDX, dx, nx * 4);
    check_device_bytes("maxpool+relu bwd", tag, dDXR, dxr, nx * 4);
    check_device_bytes("maxpool+relu bwd from y", tag, dDXY, dxy, nx * 4);
    free(x); free(dy); free(y); free(dx); free(dxr); free(dxy); free(am);
    CK(cudaFree(dX)); CK(cudaFree(dDY)); CK(cudaFree(dY)); CK(cudaFree(dAM)); CK(cudaFree(dDX));
    CK(cudaFree(dDXR)); CK(cudaFree(dDXY));
}

static void test_pool(void) {
    test_pool_case(quick ? 1 : 5, 28, 28, 32, 2, 2, 1, 1);  /* pool1 */
    test_pool_case(quick ? 1 : 5, 14, 14, 64, 2, 2, 1, 0);  /* pool2 */
    test_pool_case(2, 9, 7, 5, 3, 2, 1, 0);                 /* overlapping windows, SAME */
    test_pool_case(3, 7, 9, 3, 3, 2, 0, 1);                 /* overlapping, VALID */
    test_pool_case(1, 5, 5, 2, 2, 2, 1, 0);                 /* odd: padded last row/col */
    /* C % 4 == 0 (version 4's 4 channels per thread): overlapping and padded windows */
    test_pool_case(2, 9, 7, 8, 3, 2, 1, 0);
    test_pool_case(1, 5, 5, 4, 2, 2, 1, 1);
}

/* ---- conv + ReLU + max pool, fused (kernels/conv2d_pool.cu) ------------------------------- */
/* Inputs like a first layer's: a third of the pixels exactly 0 (MNIST's background), biases of
 * both signs, so windows tie (at 0 after the ReLU, and at the bias over blank patches) and the
 * first-maximum rule matters. Checks: the forward bitwise against the CPU twin and against our
 * unfused conv2d_forward_cuda (relu, without split-K) + maxpool2d_forward_cuda; the filter gradient against the
 * CPU twin and against the unfused maxpool2d_backward_cuda (relu mask) +
 * conv2d_backward_filter_cuda, both at TOL_MATH: the CPU sums in double, the GPU in float per
 * chunk of pooled positions, then chunks in order (error ~sqrt(positions)*2^-24 of the terms'
 * scale); then with scratch for one chunk only (the whole sum in one block). Shapes with C % 32
 * == 0 take the backward's pixel groups (16-byte loads, one padding test per pixel). */
/* The CPU twin of the filter gradient from the pool's winners, with its workspace. */
static void cpu_filter_from_pool(const Conv2dShape *cs, const Pool2dShape *ps, const float *x,
                                 const float *y, const int32_t *am, const float *dy, float *dw,
                                 float *db) {
    float *ws = host_alloc(conv2d_relu_maxpool_backward_filter_workspace_floats(cs) * 4);
    conv2d_relu_maxpool_backward_filter(cs, ps, x, y, am, dy, dw, db, ws);
    free(ws);
}

/* The conv's data gradient from the pool's winners (conv2d_relu_maxpool_backward_data_cuda) on
 * the fused forward's y and argmax: the CPU twin's bits, and within TOL_GEMM of the CPU's
 * conv2d_backward_data of the conv output's gradient dconv; too little scratch is refused. */
static int data_from_pool_cases = 0;
static void check_data_from_pool(const Conv2dShape *cs, const Pool2dShape *ps, const char *tag,
                                 const float *w, const float *y, const int32_t *am,
                                 const float *dy, const float *dconv, const float *dW,
                                 const float *dY, const int32_t *dAM, const float *dDY) {
    const size_t nx = (size_t)cs->n * cs->h * cs->w * cs->c;
    float *dx = host_alloc(nx * 4), *dx_gemm = host_alloc(nx * 4);
    float *cpu_ws = host_alloc((conv2d_workspace_floats(cs) + 1) * 4);
    float *twin_ws = host_alloc(conv2d_relu_maxpool_backward_data_workspace_floats(cs) * 4);
    conv2d_relu_maxpool_backward_data(cs, ps, w, y, am, dy, dx, twin_ws);
    free(twin_ws);
    conv2d_backward_data(cs, dconv, w, dx_gemm, cpu_ws);
    char what[200];
    snprintf(what, sizeof what, "conv+pool bwd data from the winners: twin vs the GEMM %s", tag);
    check_close(what, dx, dx_gemm, nx, TOL_GEMM);
    const size_t ws_floats = conv2d_relu_maxpool_backward_data_workspace_floats_cuda(cs);
    float *dWS = dev_poisoned(ws_floats * 4), *dDX = dev_poisoned(nx * 4);
    CK(conv2d_relu_maxpool_backward_data_cuda(cs, ps, dW, dY, dAM, dDY, dDX, dWS, ws_floats, 0));
    check_device_bytes("conv+pool bwd data from the winners", tag, dDX, dx, nx * 4);
    check_count++;
    if (conv2d_relu_maxpool_backward_data_cuda(cs, ps, dW, dY, dAM, dDY, dDX, dWS, ws_floats - 1,
                                               0) != cudaErrorInvalidValue) {
        check_failures++;
        printf("FAIL conv+pool bwd data with too little scratch is not refused %s\n", tag);
    }
    data_from_pool_cases++;
    free(dx);
    free(dx_gemm);
    free(cpu_ws);
    CK(cudaFree(dWS));
    CK(cudaFree(dDX));
}

/* Winners that differ from the CPU's (gam vs am) must tie with them within rounding: the two
 * cells' values (the CPU's conv + bias + ReLU) within TOL_GEMM of the largest pooled value. */
static void check_argmax_ties(const char *what, const char *tag, const Conv2dShape *cs,
                              const float *x, const float *w, const float *b, const int32_t *gam,
                              const int32_t *am, const float *y, size_t ny) {
    const size_t nconv = (size_t)cs->n * cs->oh * cs->ow * cs->k;
    float *conv = host_alloc(nconv * 4);
    conv2d_forward_reference(cs, x, w, b, conv);
    relu_forward(nconv, conv, conv);
    double scale = 1e-30, worst = 0;
    size_t differ = 0;
    int ok = 1;
    for (size_t i = 0; i < ny; i++) scale = fmax(scale, fabs((double)y[i]));
    for (size_t i = 0; i < ny; i++) {
        if (gam[i] == am[i]) continue;
        differ++;
        const int inside = gam[i] >= 0 && (size_t)gam[i] < nconv;
        const double gap = inside ? fabs((double)conv[gam[i]] - (double)conv[am[i]]) / scale : 1e30;
        worst = fmax(worst, gap);
        ok &= inside && gap <= TOL_GEMM;
    }
    check_count++;
    check_failures += !ok;
    printf("%s %s %s: %zu of %zu winners differ from the CPU's, each a tie within %.1e (tol %.0e)\n",
           ok ? "PASS" : "FAIL", what, tag, differ, ny, worst, TOL_GEMM);
    free(conv);
}

static void check_argmax_device_ties(const char *what, const char *tag, const Conv2dShape *cs,
                                     const float *x, const float *w, const float *b,
                                     const int32_t *dev_am, const int32_t *am, const float *y,
                                     size_t ny) {
    int32_t *gam = dev_download(dev_am, ny * 4);
    check_argmax_ties(what, tag, cs, x, w, b, gam, am, y, ny);
    free(gam);
}

static void test_conv_pool_shifted(int n, int h, int w, int c, int ks, int k, int stride,
                                   int same, int pk, int pstride, int psame, float bias_shift) {
    Conv2dShape cs;
    conv2d_shape_init(&cs, n, h, w, c, ks, ks, k, stride, stride, same);
    Pool2dShape ps;
    pool2d_shape_init(&ps, n, cs.oh, cs.ow, k, pk, pk, pstride, pstride, psame);
    const size_t nx = (size_t)n * h * w * c, nw = (size_t)ks * ks * c * k;
    const size_t nconv = (size_t)n * cs.oh * cs.ow * k, ny = (size_t)n * ps.oh * ps.ow * k;
    float *x = host_random(nx, -1, 1), *wt = host_random(nw, -0.3f, 0.3f);
    float *b = host_random((size_t)k, -0.2f, 0.2f), *dy = host_random(ny, -1, 1);
    for (int i = 0; i < k; i++) b[i] += bias_shift;
    for (size_t i = 0; i < nx; i++)
        if (rng_u64() % 3 == 0) x[i] = 0.0f;
    float *y = host_alloc(ny * 4), *dw = host_alloc(nw * 4), *db = host_alloc((size_t)k * 4);
    int32_t *am = host_alloc(ny * 4);
    conv2d_relu_maxpool_forward(&cs, &ps, x, wt, b, y, am);
    cpu_filter_from_pool(&cs, &ps, x, y, am, dy, dw, db);
    if (bias_shift != 0.0f) { /* the premise of a shifted case: few winners alive, or none */
        size_t alive = 0;
        for (size_t i = 0; i < ny; i++) alive += y[i] > 0.0f;
        const double frac = (double)alive / (double)ny;
        const int ok = bias_shift <= -50.0f ? alive == 0 : frac > 0.0 && frac < 0.2;
        check_count++;
        check_failures += !ok;
        printf("%s conv+pool case with shifted biases: %.1f%% of the winners alive\n",
               ok ? "PASS" : "FAIL", 100.0 * frac);
    }

    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(wt, nw * 4), *dB = dev_upload(b, k * 4);
    float *dDY = dev_upload(dy, ny * 4), *dY = dev_poisoned(ny * 4), *dY2 = dev_poisoned(ny * 4);
    int32_t *dAM = dev_poisoned(ny * 4), *dAM2 = dev_poisoned(ny * 4);
    float *dConv = dev_poisoned(nconv * 4), *dDConv = dev_poisoned(nconv * 4);
    float *dDW = dev_poisoned(nw * 4), *dDB = dev_poisoned(k * 4);
    float *dDW2 = dev_poisoned(nw * 4), *dDB2 = dev_poisoned(k * 4);
    size_t ws_floats = conv2d_relu_maxpool_workspace_floats_cuda(&cs, &ps);
    size_t gemm_ws = conv2d_workspace_floats_cuda(&cs);
    if (gemm_ws > ws_floats) ws_floats = gemm_ws;
    float *dWS = dev_poisoned(ws_floats * 4);
    CK(conv2d_relu_maxpool_forward_cuda(&cs, &ps, dX, dW, dB, dY, dAM, 0));
    /* No scratch: the GEMM sums each output over all taps in order (no split-K), as the fused
     * forward does. */
    CK(conv2d_forward_cuda(&cs, dX, dW, dB, dConv, 1, NULL, 0, 0));
    CK(maxpool2d_forward_cuda(&ps, dConv, dY2, dAM2, 0));
    char tag[128], what[200];
    const char *from_pool_v = getenv("CNN_FROM_POOL_V");
    snprintf(tag, sizeof tag, "%dx%dx%dx%d %dx%dx%d s%d %s pool %d/%d %s%s%s%s", n, h, w, c, ks,
             ks, k, stride, same ? "SAME" : "VALID", pk, pstride, psame ? "SAME" : "VALID",
             bias_shift != 0.0f ? " bias shifted" : "", from_pool_v ? " from-pool v" : "",
             from_pool_v ? from_pool_v : "");
    /* GEMM version 5 sums on the tensor cores, not in the CPU's order: y within TOL_GEMM of the
     * CPU, and the unfused forward's bits those of the fused one where that is the GEMM too
     * (more than 32 taps under a 2x2 pool of stride 2); the fused forward's own kernel sums in
     * the CPU's order, so there the unfused y is within TOL_GEMM of the CPU */
    const char *gemm_v = getenv("CNN_GEMM_V"); /* unset: the default, version 5 */
    if (!gemm_v || !(atoi(gemm_v) >= 1 && atoi(gemm_v) <= 4)) {
        check_device_close("conv+pool fwd y", tag, dY, y, ny, TOL_GEMM);
        if (ks * ks * c > 32 && conv2d_relu_pool2_gemm_ok(&cs, &ps)) {
            float *gy = dev_download(dY, ny * 4);
            check_device_bytes("conv+pool fwd y: unfused gives the same", tag, dY2, gy, ny * 4);
            free(gy);
        } else {
            check_device_close("conv+pool fwd y: unfused", tag, dY2, y, ny, TOL_GEMM);
        }
    } else {
        check_device_bytes("conv+pool fwd y", tag, dY, y, ny * 4);
        check_device_bytes("conv+pool fwd y: unfused gives the same", tag, dY2, y, ny * 4);
    }
    if (!gemm_v || !(atoi(gemm_v) >= 1 && atoi(gemm_v) <= 4)) {
        /* Version 5's sums may pick the other of two cells that tie within rounding: check
         * that, then take the GPU's y and argmax as the routing of every reference below (as
         * the CPU test does: tests/test_kernels_conv2d_pool.c). The unfused forward on the same
         * GEMM gives the same winners. */
        int32_t *gam = dev_download(dAM, ny * 4);
        check_argmax_ties("conv+pool fwd argmax", tag, &cs, x, wt, b, gam, am, y, ny);
        if (ks * ks * c > 32 && conv2d_relu_pool2_gemm_ok(&cs, &ps))
            check_device_bytes("conv+pool fwd argmax: unfused gives the same", tag, dAM2, gam,
                               ny * 4);
        else
            check_argmax_device_ties("conv+pool fwd argmax: unfused", tag, &cs, x, wt, b, dAM2, am,
                                     y, ny);
        float *gy = dev_download(dY, ny * 4);
        memcpy(am, gam, ny * 4);
        memcpy(y, gy, ny * 4);
        free(gam);
        free(gy);
        cpu_filter_from_pool(&cs, &ps, x, y, am, dy, dw, db);
    } else {
        check_device_bytes("conv+pool fwd argmax", tag, dAM, am, ny * 4);
        check_device_bytes("conv+pool fwd argmax: unfused gives the same", tag, dAM2, am, ny * 4);
    }

    CK(conv2d_relu_maxpool_backward_filter_cuda(&cs, &ps, dX, dY, dAM, dDY, dDW, dDB, dWS,
                                                ws_floats, 0));
    CK(maxpool2d_backward_cuda(&ps, dDY, dAM2, dConv, dDConv, 0));
    /* the conv output's gradient from the fused forward's y and argmax (no conv output): the
     * same bits as the unfused pool + ReLU backward, on the GPU and the CPU */
    float *dconv = host_alloc(nconv * 4), *dDConvY = dev_poisoned(nconv * 4);
    maxpool2d_relu_backward_from_y(&ps, dy, am, y, dconv);
    CK(maxpool2d_relu_backward_from_y_cuda(&ps, dDY, dAM, dY, dDConvY, 0));
    check_device_bytes("conv+pool bwd conv gradient from y", tag, dDConvY, dconv, nconv * 4);
    check_device_bytes("conv+pool bwd conv gradient: unfused gives the same", tag, dDConv, dconv,
                       nconv * 4);
    if (conv2d_relu_maxpool_backward_data_ok_cuda(&cs, &ps))
        check_data_from_pool(&cs, &ps, tag, wt, y, am, dy, dconv, dW, dY, dAM, dDY);
    free(dconv);
    CK(cudaFree(dDConvY));
    CK(conv2d_backward_filter_cuda(&cs, dX, dDConv, dDW2, dDB2, dWS, ws_floats, 0));
    float *gw = dev_download(dDW, nw * 4), *gb = dev_download(dDB, k * 4);
    float *gw2 = dev_download(dDW2, nw * 4), *gb2 = dev_download(dDB2, k * 4);
    snprintf(what, sizeof what, "conv+pool bwd dw %s", tag);
    check_close(what, gw, dw, nw, TOL_MATH);
    snprintf(what, sizeof what, "conv+pool bwd db %s", tag);
    check_close(what, gb, db, (size_t)k, TOL_MATH);
    snprintf(what, sizeof what, "conv+pool bwd dw vs unfused %s", tag);
    check_close(what, gw, gw2, nw, TOL_MATH);
    snprintf(what, sizeof what, "conv+pool bwd db vs unfused %s", tag);
    check_close(what, gb, gb2, (size_t)k, TOL_MATH);
    free(gw); free(gb); free(gw2); free(gb2);
    /* Scratch for one chunk: every pooled position in one block. */
    const size_t one_row = nw + (size_t)k;
    CK(cudaMemset(dDW, 0xFF, nw * 4));
    CK(conv2d_relu_maxpool_backward_filter_cuda(&cs, &ps, dX, dY, dAM, dDY, dDW, NULL, dWS,
                                                one_row, 0));
    gw = dev_download(dDW, nw * 4);
    snprintf(what, sizeof what, "conv+pool bwd dw, one chunk, no db %s", tag);
    check_close(what, gw, dw, nw, TOL_MATH);
    free(gw);
    check_count++;
    if (conv2d_relu_maxpool_backward_filter_cuda(&cs, &ps, dX, dY, dAM, dDY, dDW, dDB, dWS,
                                                 one_row - 1, 0) != cudaErrorInvalidValue) {
        check_failures++;
        printf("FAIL conv+pool bwd with too little scratch is not refused %s\n", tag);
    }
    free(x); free(wt); free(b); free(dy); free(y); free(dw); free(db); free(am);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dY));
    CK(cudaFree(dY2)); CK(cudaFree(dAM)); CK(cudaFree(dAM2)); CK(cudaFree(dConv));
    CK(cudaFree(dDConv)); CK(cudaFree(dDW)); CK(cudaFree(dDB)); CK(cudaFree(dDW2));
    CK(cudaFree(dDB2)); CK(cudaFree(dWS));
}

static void test_conv_pool_case(int n, int h, int w, int c, int ks, int k, int stride, int same,
                                int pk, int pstride, int psame) {
    test_conv_pool_shifted(n, h, w, c, ks, k, stride, same, pk, pstride, psame, 0.0f);
}

/* The filter gradient's version 2 (CNN_FROM_POOL_V=2: a warp per output channel, for C % 32 ==
 * 0 and windows of up to 25 pixels), on the version 1 cases it serves and on sparse ones: the
 * biases shifted down so that most winners are dead, as in a trained model (one in a warp's
 * 32 positions alive, or none), and all of them dead (dw and db exactly 0). Other shapes fall
 * back to version 1 under the switch (a 6x6 window: 36 pixels). */
static void test_conv_pool_v2(void) {
    char *keep = env_keep("CNN_FROM_POOL_V");
    setenv("CNN_FROM_POOL_V", "2", 1);
    printf("---- conv + pool filter gradient version 2 (CNN_FROM_POOL_V=2)\n");
    test_conv_pool_case(quick ? 1 : 5, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1); /* conv2 */
    test_conv_pool_shifted(quick ? 2 : 5, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1, -5.0f); /* sparse */
    test_conv_pool_shifted(2, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1, -100.0f);          /* all dead */
    test_conv_pool_case(2, 7, 6, 64, 3, 33, 2, 1, 3, 2, 1); /* two channel groups, 33 outputs */
    test_conv_pool_shifted(3, 9, 11, 64, 3, 7, 1, 0, 2, 2, 0, -4.0f); /* VALID, odd sizes */
    test_conv_pool_case(1, 8, 8, 32, 6, 5, 1, 1, 2, 2, 1);   /* 36 pixels: version 1 */
    test_conv_pool_case(2, 8, 9, 3, 5, 6, 1, 1, 2, 2, 1);    /* 3 channels: version 1 */
    test_conv_pool_case(2, 6, 7, 16, 3, 9, 1, 1, 2, 2, 1);   /* 16 channels: version 1 */
    env_restore("CNN_FROM_POOL_V", keep);
}

/* The data gradient from the pool's winners (check_data_from_pool, run by every conv + pool
 * case whose shapes it serves): conv2's shape with every winner alive, few and none; odd sizes
 * under VALID and SAME pools (rows of the conv output in no window, padded windows), pool
 * windows with gaps (stride 3), two input and output channel groups; and the shapes it must
 * refuse. */
static void test_conv_pool_data(void) {
    printf("---- conv + pool data gradient from the winners\n");
    const int before = data_from_pool_cases;
    test_conv_pool_case(quick ? 1 : 4, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1); /* conv2 */
    test_conv_pool_shifted(quick ? 2 : 5, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1, -5.0f); /* sparse */
    test_conv_pool_shifted(2, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1, -100.0f);          /* all dead */
    test_conv_pool_case(3, 9, 11, 32, 3, 32, 1, 0, 2, 2, 0);  /* VALID, odd: a row in no window */
    test_conv_pool_case(2, 7, 9, 32, 5, 32, 1, 1, 2, 2, 1);   /* SAME pool: padded windows */
    test_conv_pool_case(2, 10, 11, 32, 3, 64, 1, 1, 2, 3, 0); /* windows with gaps */
    test_conv_pool_case(2, 5, 6, 64, 5, 96, 1, 1, 2, 2, 1);   /* 2 and 3 channel groups */
    test_conv_pool_case(1, 3, 2, 32, 5, 32, 1, 1, 1, 1, 0);   /* 1x1 pool, a tiny image */
    const int served = data_from_pool_cases - before;
    check_count++;
    check_failures += served != 8;
    printf("%s the data gradient from the winners ran on %d of the 8 cases\n",
           served == 8 ? "PASS" : "FAIL", served);
    /* refused: a strided conv, overlapping windows, 16 input channels, 48 outputs, windows of
     * 9 cells */
    Conv2dShape cs;
    Pool2dShape ps;
    const int refused[5][7] = {{14, 32, 5, 64, 2, 2, 2}, {14, 32, 5, 64, 1, 3, 2},
                               {14, 16, 5, 64, 1, 2, 2}, {14, 32, 5, 48, 1, 2, 2},
                               {14, 32, 5, 64, 1, 3, 3}};
    for (int i = 0; i < 5; i++) {
        const int *r = refused[i];
        conv2d_shape_init(&cs, 2, r[0], r[0], r[1], r[2], r[2], r[3], r[4], r[4], 1);
        pool2d_shape_init(&ps, 2, cs.oh, cs.ow, r[3], r[5], r[5], r[6], r[6], 1);
        check_count++;
        if (conv2d_relu_maxpool_backward_data_ok_cuda(&cs, &ps)) {
            check_failures++;
            printf("FAIL the data gradient from the winners takes refused shape %d\n", i);
        }
    }
}

static void test_conv_pool(void) {
    test_conv_pool_case(quick ? 2 : 7, 28, 28, 1, 5, 32, 1, 1, 2, 2, 1); /* MNIST's conv1 */
    test_conv_pool_case(12, 28, 28, 1, 5, 8, 1, 1, 2, 2, 1); /* >= 64 chunks: the wide reduce */
    test_conv_pool_case(3, 9, 7, 2, 3, 37, 1, 1, 3, 2, 1);  /* two channel groups, overlap */
    test_conv_pool_case(2, 11, 10, 3, 4, 5, 2, 0, 2, 2, 0); /* strided VALID conv */
    test_conv_pool_case(2, 8, 9, 3, 5, 6, 1, 1, 2, 2, 1);   /* 75 taps: three groups */
    test_conv_pool_case(1, 5, 5, 1, 3, 4, 1, 1, 2, 2, 1);   /* padded pool windows */
    test_conv_pool_case(quick ? 1 : 5, 14, 14, 32, 5, 64, 1, 1, 2, 2, 1); /* conv2: pixel groups */
    test_conv_pool_case(2, 7, 6, 64, 3, 33, 2, 1, 3, 2, 1); /* two groups per pixel, strided */
    /* the forward's GEMM path (more than 32 taps, 2x2 pool of stride 2, no padding) */
    test_conv_pool_case(3, 11, 9, 8, 3, 24, 1, 1, 2, 2, 0);  /* odd conv output: VALID pool */
    test_conv_pool_case(2, 10, 10, 4, 3, 37, 1, 1, 2, 2, 1); /* 4 channels, 37 outputs */
    test_conv_pool_case(2, 13, 13, 8, 3, 16, 2, 0, 2, 2, 1); /* strided conv */
}

/* ---- relu, dropout -------------------------------------------------------------------------- */
/* off: the tensors start `off` floats into their allocations (1: not 16-byte aligned, the
 * element-by-element kernels; 0: the vector kernels, with n % 4 tail elements). */
static void test_relu_case(size_t n, size_t off) {
    float *x = host_random(n, -1, 1), *dy = host_random(n, -1, 1);
    float *y = host_alloc(n * 4), *dx = host_alloc(n * 4);
    relu_forward(n, x, y);
    relu_backward(n, y, dy, dx);
    float *dX = dev_poisoned((n + off) * 4), *dDY = dev_poisoned((n + off) * 4);
    float *dY = dev_poisoned((n + off) * 4), *dDX = dev_poisoned((n + off) * 4);
    CK(cudaMemcpy(dX + off, x, n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dDY + off, dy, n * 4, cudaMemcpyHostToDevice));
    CK(relu_forward_cuda(n, dX + off, dY + off, 0));
    CK(relu_backward_cuda(n, dY + off, dDY + off, dDX + off, 0));
    char tag[64];
    snprintf(tag, sizeof tag, "n=%zu%s", n, off ? ", unaligned" : "");
    check_device_bytes("relu fwd", tag, dY + off, y, n * 4);
    check_device_bytes("relu bwd", tag, dDX + off, dx, n * 4);
    /* in place (y aliases x, dx aliases dy) */
    CK(relu_forward_cuda(n, dX + off, dX + off, 0));
    check_device_bytes("relu fwd in place", tag, dX + off, y, n * 4);
    CK(relu_backward_cuda(n, dY + off, dDY + off, dDY + off, 0));
    check_device_bytes("relu bwd in place", tag, dDY + off, dx, n * 4);
    free(x); free(dy); free(y); free(dx);
    CK(cudaFree(dX)); CK(cudaFree(dDY)); CK(cudaFree(dY)); CK(cudaFree(dDX));
}

static void test_relu(void) {
    const size_t sizes[] = {quick ? 1001 : 1000003, 4, 3, 7};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (size_t off = 0; off < 2; off++) test_relu_case(sizes[i], off);
}

static void test_dropout_case(size_t n, float rate, int64_t step) {
    uint64_t seed = rng_u64();
    uint64_t base = PHILOX_STREAM_DROPOUT + 1;
    uint64_t stream = base + (uint64_t)step * 16;
    float *x = host_random(n, -1, 1), *dy = host_random(n, -1, 1);
    float *xr = host_alloc(n * 4);
    relu_forward(n, x, xr); /* dropout's input in the model is a ReLU output */
    float *y = host_alloc(n * 4), *dx = host_alloc(n * 4), *dxr = host_alloc(n * 4);
    uint8_t *mask = host_alloc(n);
    dropout_forward(n, rate, seed, stream, xr, y, mask);
    dropout_backward(n, rate, mask, dy, dx);
    relu_backward(n, xr, dx, dxr);
    float *dX = dev_upload(xr, n * 4), *dDY = dev_upload(dy, n * 4);
    int64_t *dstep = dev_upload(&step, sizeof step);
    float *dY = dev_poisoned(n * 4), *dDX = dev_poisoned(n * 4), *dDXR = dev_poisoned(n * 4);
    uint8_t *dM = dev_poisoned(n);
    CK(dropout_forward_cuda(n, rate, seed, base, 16, dstep, dX, dY, dM, 0));
    CK(dropout_backward_cuda(n, rate, dM, NULL, dDY, dDX, 0));
    CK(dropout_backward_cuda(n, rate, dM, dX, dDY, dDXR, 0));
    char what[96];
    void *g = dev_download(dM, n);
    snprintf(what, sizeof what, "dropout mask n=%zu rate=%.2f step=%lld", n, rate, (long long)step);
    check_equal_bytes(what, g, mask, n);
    free(g);
    g = dev_download(dY, n * 4);
    snprintf(what, sizeof what, "dropout fwd n=%zu rate=%.2f", n, rate);
    check_equal_bytes(what, g, y, n * 4);
    free(g);
    g = dev_download(dDX, n * 4);
    snprintf(what, sizeof what, "dropout bwd n=%zu rate=%.2f", n, rate);
    check_equal_bytes(what, g, dx, n * 4);
    free(g);
    g = dev_download(dDXR, n * 4);
    snprintf(what, sizeof what, "dropout+relu bwd n=%zu rate=%.2f", n, rate);
    check_equal_bytes(what, g, dxr, n * 4);
    free(g);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) kept += mask[i];
    printf("     dropout kept fraction %.4f (expected %.4f)\n", (double)kept / (double)n,
           1.0 - rate);
    free(x); free(dy); free(xr); free(y); free(dx); free(dxr); free(mask);
    CK(cudaFree(dX)); CK(cudaFree(dDY)); CK(cudaFree(dstep)); CK(cudaFree(dY)); CK(cudaFree(dDX));
    CK(cudaFree(dDXR)); CK(cudaFree(dM));
}

static void test_dropout(void) {
    test_dropout_case(quick ? 1027 : 102403, 0.4f, 37);
    test_dropout_case(13, 0.5f, 0);
    test_dropout_case(quick ? 4096 : 1024 * 1000, 0.4f, 11999);
}

/* ---- dropout + dense, fused --------------------------------------------------------------- */
/* dropout_dense_*_cuda (kernels/dense.cu) against the CPU twin (mask bitwise, the layer to
 * TOL_GEMM: another summation order), and bit for bit against what they replace on the GPU:
 * dropout_forward_cuda then the narrow dense_forward_cuda, dense_backward_cuda on the dropout's
 * output then dropout_backward_cuda (with relu_y = x). Inference (no mask): dense_forward_cuda. */
static void test_dropout_dense_case(int n, int in, int out, int relu, int relu_x, int with_bias,
                                    int64_t step) {
    const float rate = 0.4f;
    const uint64_t seed = rng_u64(), base = PHILOX_STREAM_DROPOUT + 2;
    const size_t nx = (size_t)n * in, ny = (size_t)n * out, nw = (size_t)in * out;
    float *x = host_random(nx, -1, 1), *w = host_random(nw, -0.1f, 0.1f);
    float *b = host_random((size_t)out, -0.5f, 0.5f), *dy = host_random(ny, -1, 1);
    if (relu_x) relu_forward(nx, x, x); /* a ReLU's output: zeros included */
    float *y = host_alloc(ny * 4), *yi = host_alloc(ny * 4), *dx = host_alloc(nx * 4);
    float *dw = host_alloc(nw * 4), *db = host_alloc((size_t)out * 4);
    uint8_t *mask = host_alloc(nx);
    const float *bias = with_bias ? b : NULL;
    dropout_dense_forward(n, in, out, rate, seed, base + (uint64_t)step * 16, x, w, bias, y, mask,
                          relu);
    dropout_dense_forward(n, in, out, rate, 0, 0, x, w, bias, yi, NULL, relu);
    dropout_dense_backward(n, in, out, rate, mask, relu_x, x, w, dy, dx, dw, with_bias ? db : NULL);

    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(w, nw * 4), *dB = dev_upload(b, out * 4);
    float *dDY = dev_upload(dy, ny * 4);
    int64_t *dstep = dev_upload(&step, sizeof step);
    float *dY = dev_poisoned(ny * 4), *dYI = dev_poisoned(ny * 4), *dDX = dev_poisoned(nx * 4);
    float *dDW = dev_poisoned(nw * 4), *dDB = dev_poisoned((size_t)out * 4);
    uint8_t *dM = dev_poisoned(nx);
    const float *dBias = with_bias ? dB : NULL;
    CK(dropout_dense_forward_cuda(n, in, out, rate, seed, base, 16, dstep, dX, dW, dBias, dY, dM,
                                  relu, 0));
    CK(dropout_dense_forward_cuda(n, in, out, rate, 0, 0, 0, NULL, dX, dW, dBias, dYI, NULL, relu,
                                  0));
    /* As the CUDA backend issues them: dw and db, then dx. */
    CK(dropout_dense_backward_cuda(n, in, out, rate, dM, relu_x, dX, dW, dDY, NULL, dDW,
                                   with_bias ? dDB : NULL, 0));
    CK(dropout_dense_backward_cuda(n, in, out, rate, dM, relu_x, dX, dW, dDY, dDX, NULL, NULL, 0));
    char what[128];
    snprintf(what, sizeof what, "dropout+dense %dx%d->%d relu %d relu_x %d bias %d", n, in, out,
             relu, relu_x, with_bias);
    check_device_bytes(what, "mask", dM, mask, nx);
    check_device_close(what, "y", dY, y, ny, TOL_GEMM);
    check_device_close(what, "y (inference)", dYI, yi, ny, TOL_GEMM);
    check_device_close(what, "dx", dDX, dx, nx, TOL_GEMM);
    check_device_close(what, "dw", dDW, dw, nw, TOL_GEMM);
    if (with_bias) check_device_close(what, "db", dDB, db, (size_t)out, TOL_GEMM);

    /* The unfused sequence on the GPU: the same bits. */
    float *dXD = dev_poisoned(nx * 4), *dY2 = dev_poisoned(ny * 4), *dG = dev_poisoned(nx * 4);
    float *dDX2 = dev_poisoned(nx * 4), *dDW2 = dev_poisoned(nw * 4);
    float *dDB2 = dev_poisoned((size_t)out * 4);
    uint8_t *dM2 = dev_poisoned(nx);
    CK(dropout_forward_cuda(nx, rate, seed, base, 16, dstep, dX, dXD, dM2, 0));
    CK(dense_forward_cuda(n, in, out, dXD, dW, dBias, dY2, relu, NULL, 0, 0));
    CK(dense_backward_cuda(n, in, out, dXD, dW, dDY, dG, dDW2, with_bias ? dDB2 : NULL, NULL, 0,
                           0));
    CK(dropout_backward_cuda(nx, rate, dM2, relu_x ? dX : NULL, dG, dDX2, 0));
    void *ref = dev_download(dY2, ny * 4);
    check_device_bytes(what, "== dropout, dense: y", dY, ref, ny * 4);
    free(ref);
    CK(dense_forward_cuda(n, in, out, dX, dW, dBias, dY2, relu, NULL, 0, 0));
    ref = dev_download(dY2, ny * 4);
    check_device_bytes(what, "== dense (inference): y", dYI, ref, ny * 4);
    free(ref);
    ref = dev_download(dDX2, nx * 4);
    check_device_bytes(what, "== dense, dropout backward: dx", dDX, ref, nx * 4);
    free(ref);
    ref = dev_download(dDW2, nw * 4);
    check_device_bytes(what, "== dense backward: dw", dDW, ref, nw * 4);
    free(ref);
    if (with_bias) {
        ref = dev_download(dDB2, (size_t)out * 4);
        check_device_bytes(what, "== dense backward: db", dDB, ref, (size_t)out * 4);
        free(ref);
    }
    free(x); free(w); free(b); free(dy); free(y); free(yi); free(dx); free(dw); free(db);
    free(mask);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dstep));
    CK(cudaFree(dY)); CK(cudaFree(dYI)); CK(cudaFree(dDX)); CK(cudaFree(dDW)); CK(cudaFree(dDB));
    CK(cudaFree(dM)); CK(cudaFree(dXD)); CK(cudaFree(dY2)); CK(cudaFree(dG)); CK(cudaFree(dDX2));
    CK(cudaFree(dDW2)); CK(cudaFree(dDB2)); CK(cudaFree(dM2));
}

static void test_dropout_dense(void) {
    /* The rows the fused kernels take: up to 192 by default, any under CNN_DENSE_V=2, none
     * under CNN_DENSE_V=1 */
    char *dense_keep = env_keep("CNN_DENSE_V");
    unsetenv("CNN_DENSE_V");
    const int rows_default = dropout_dense_fits_cuda(192, 1024, 10) &&
                             !dropout_dense_fits_cuda(193, 1024, 10);
    setenv("CNN_DENSE_V", "2", 1);
    const int rows_v2 = dropout_dense_fits_cuda(1000, 1024, 10);
    setenv("CNN_DENSE_V", "1", 1);
    const int rows_v1 = dropout_dense_fits_cuda(100, 1024, 10);
    env_restore("CNN_DENSE_V", dense_keep);
    check_count++;
    if (rows_default && rows_v2 && !rows_v1) {
        printf("PASS dropout+dense rows: <= 192 by default, any under v2, none under v1\n");
    } else {
        check_failures++;
        printf("FAIL dropout+dense rows: default %d, v2 %d, v1 %d\n", rows_default, rows_v2,
               rows_v1);
    }
    /* Sizes the fused kernels refuse: wider than the narrow path. */
    check_count++;
    if (dropout_dense_fits_cuda(100, 1024, 10) && !dropout_dense_fits_cuda(100, 1024, 17) &&
        dropout_forward_cuda(0, 0.4f, 0, 0, 0, NULL, NULL, NULL, NULL, 0) == cudaSuccess &&
        dropout_dense_forward_cuda(3, 8, 17, 0.4f, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0,
                                   0) == cudaErrorInvalidValue) {
        printf("PASS dropout+dense fits out <= 16, refuses 17\n");
    } else {
        check_failures++;
        printf("FAIL dropout+dense: the sizes it takes\n");
    }
    test_dropout_dense_case(7, 1024, 10, 0, 1, 1, 37); /* the model's, a few rows */
    test_dropout_dense_case(5, 13, 3, 1, 0, 0, 0);     /* in % 4 != 0: mask groups straddle rows */
    test_dropout_dense_case(1, 1, 1, 0, 1, 1, 5);
    test_dropout_dense_case(6, 37, 16, 1, 1, 1, 11999);
    test_dropout_dense_case(quick ? 9 : 100, 1024, 10, 0, 1, 1, 1234); /* batch 100 */
}

/* The mean cross-entropy loss: each row's log-sum-exp less its label's logit, which cancel to a
 * small loss when the model is sure: judged relative to the terms' scale (the largest |logit|
 * plus log c), as a loss of 0.014 from logits near 8 once missed TOL_MATH of itself by 1.4e-5
 * (CNN_TEST_SEED=857282699). */
static void check_loss(const char *what, const float *gpu, float cpu, const float *logits,
                       size_t nc, int c) {
    double scale = log((double)(c > 1 ? c : 1));
    double big = 0;
    for (size_t i = 0; i < nc; i++) big = fmax(big, fabs((double)logits[i]));
    check_close_scaled(what, gpu, &cpu, 1, TOL_MATH, scale + big);
}

/* ---- softmax, cross-entropy, argmax --------------------------------------------------------- */
static void test_softmax_case(int n, int c) {
    float *logits = host_random((size_t)n * c, -8, 8);
    int32_t *labels = host_alloc((size_t)n * 4);
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(rng_u64() % (uint64_t)c);
    /* a few rows with ties and large values */
    if (n > 2) {
        for (int j = 0; j < c; j++) logits[j] = 3.0f;
        logits[(size_t)c] = 80.0f;
    }
    float *probs = host_alloc((size_t)n * c * 4), *probs2 = host_alloc((size_t)n * c * 4);
    float *dl = host_alloc((size_t)n * c * 4), loss;
    softmax_forward(n, c, logits, probs2);
    softmax_xent_forward(n, c, logits, labels, probs, &loss);
    softmax_xent_backward(n, c, probs, labels, 1.0f, dl);
    int correct = argmax_correct(n, c, logits, labels);

    float *dL = dev_upload(logits, (size_t)n * c * 4);
    int32_t *dLab = dev_upload(labels, (size_t)n * 4);
    float *dP = dev_poisoned((size_t)n * c * 4), *dP2 = dev_poisoned((size_t)n * c * 4);
    float *dP3 = dev_poisoned((size_t)n * c * 4), *dDL = dev_poisoned((size_t)n * c * 4);
    float *dDL2 = dev_poisoned((size_t)n * c * 4), *dLoss = dev_poisoned(8);
    int *dCorrect = dev_poisoned(4);
    CK(softmax_forward_cuda(n, c, dL, dP2, 0));
    CK(softmax_xent_forward_cuda(n, c, dL, dLab, dP, dLoss, 0));
    CK(softmax_xent_backward_cuda(n, c, dP, dLab, 1.0f, dDL, 0));
    CK(softmax_xent_fused_cuda(n, c, dL, dLab, dP3, dLoss + 1, dDL2, 0));
    CK(argmax_correct_cuda(n, c, dL, dLab, dCorrect, 0));
    char what[96];
    float *g = dev_download(dP2, (size_t)n * c * 4);
    snprintf(what, sizeof what, "softmax fwd %dx%d", n, c);
    check_close(what, g, probs2, (size_t)n * c, TOL_MATH);
    free(g);
    g = dev_download(dP, (size_t)n * c * 4);
    snprintf(what, sizeof what, "softmax_xent fwd probs %dx%d", n, c);
    check_close(what, g, probs, (size_t)n * c, TOL_MATH);
    free(g);
    g = dev_download(dLoss, 8);
    snprintf(what, sizeof what, "softmax_xent fwd loss %dx%d", n, c);
    check_loss(what, g, loss, logits, (size_t)n * c, c);
    snprintf(what, sizeof what, "softmax_xent fused loss %dx%d", n, c);
    check_loss(what, g + 1, loss, logits, (size_t)n * c, c);
    free(g);
    g = dev_download(dDL, (size_t)n * c * 4);
    snprintf(what, sizeof what, "softmax_xent bwd %dx%d", n, c);
    check_close(what, g, dl, (size_t)n * c, TOL_MATH);
    free(g);
    g = dev_download(dDL2, (size_t)n * c * 4);
    snprintf(what, sizeof what, "softmax_xent fused dlogits %dx%d", n, c);
    check_close(what, g, dl, (size_t)n * c, TOL_MATH);
    free(g);
    g = dev_download(dP3, (size_t)n * c * 4);
    snprintf(what, sizeof what, "softmax_xent fused probs %dx%d", n, c);
    check_close(what, g, probs, (size_t)n * c, TOL_MATH);
    free(g);
    int *gc = dev_download(dCorrect, 4);
    snprintf(what, sizeof what, "argmax_correct %dx%d (%d)", n, c, correct);
    check_equal_bytes(what, gc, &correct, 4);
    free(gc);
    free(logits); free(labels); free(probs); free(probs2); free(dl);
    CK(cudaFree(dL)); CK(cudaFree(dLab)); CK(cudaFree(dP)); CK(cudaFree(dP2)); CK(cudaFree(dP3));
    CK(cudaFree(dDL)); CK(cudaFree(dDL2)); CK(cudaFree(dLoss)); CK(cudaFree(dCorrect));
}

/* Version 3's own claims (CNN_XENT_V=3: blocks of 128 rows, the loss's partials summed by the
 * block that finishes last), with version 3 selected: against the CPU twin; probs and dlogits
 * the same bits as version 2's (the same row code); two runs bitwise equal (the second also
 * shows the finishing counter was reset, or its loss stays poisoned); a bad label makes the
 * loss NaN; the forward-only entry. bad_label < 0: none. */
static void test_xent3_case(int n, int c, int bad_label) {
    const size_t nc = (size_t)n * c;
    float *logits = host_random(nc, -8, 8);
    int32_t *labels = host_alloc((size_t)n * 4);
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(rng_u64() % (uint64_t)c);
    float *probs = host_alloc(nc * 4), *dl = host_alloc(nc * 4), loss;
    softmax_xent_forward(n, c, logits, labels, probs, &loss);
    softmax_xent_backward(n, c, probs, labels, 1.0f, dl);
    if (bad_label >= 0) { /* its row's gradient without the one-hot term, the loss NaN */
        labels[bad_label] = bad_label % 2 ? c : -1;
        for (int j = 0; j < c; j++) {
            const size_t e = (size_t)bad_label * c + j;
            dl[e] = (probs[e] - 0.0f) * (1.0f / (float)n);
        }
    }
    float *dL = dev_upload(logits, nc * 4);
    int32_t *dLab = dev_upload(labels, (size_t)n * 4);
    /* [0], [1]: version 3's two runs; [2]: version 2; dP[3]: the forward-only entry */
    float *dP[4], *dD[3], *dLoss = dev_poisoned(4 * 4);
    for (int k = 0; k < 4; k++) {
        dP[k] = dev_poisoned(nc * 4);
        if (k < 3) dD[k] = dev_poisoned(nc * 4);
    }
    /* a bad label's loss is NaN, as 0xFF poison is: poison with a number (48.56) instead */
    if (bad_label >= 0) CK(cudaMemset(dLoss, 0x42, 4 * 4));
    setenv("CNN_XENT_V", "2", 1);
    CK(softmax_xent_fused_cuda(n, c, dL, dLab, dP[2], dLoss + 2, dD[2], 0));
    setenv("CNN_XENT_V", "3", 1);
    for (int k = 0; k < 2; k++) { /* two runs, the second after the first has finished */
        CK(softmax_xent_fused_cuda(n, c, dL, dLab, dP[k], dLoss + k, dD[k], 0));
        CK(cudaDeviceSynchronize());
    }
    CK(softmax_xent_forward_cuda(n, c, dL, dLab, dP[3], dLoss + 3, 0));
    char what[96];
    float *g = dev_download(dLoss, 4 * 4);
    if (bad_label >= 0) {
        snprintf(what, sizeof what, "xent v3 %dx%d label %d of row %d: loss NaN", n, c,
                 labels[bad_label], bad_label);
        check_count++;
        int ok = isnan(g[0]) && isnan(g[1]) && isnan(g[3]);
        if (!ok) check_failures++;
        printf("%s %-44s (got %g %g %g)\n", ok ? "PASS" : "FAIL", what, (double)g[0],
               (double)g[1], (double)g[3]);
    } else {
        snprintf(what, sizeof what, "xent v3 loss %dx%d", n, c);
        check_loss(what, g, loss, logits, nc, c);
        snprintf(what, sizeof what, "xent v3 forward-only loss %dx%d", n, c);
        check_loss(what, g + 3, loss, logits, nc, c);
    }
    snprintf(what, sizeof what, "xent v3 loss %dx%d, second run", n, c);
    check_equal_bytes(what, g + 1, g, 4);
    free(g);
    float *p0 = dev_download(dP[0], nc * 4), *d0 = dev_download(dD[0], nc * 4);
    snprintf(what, sizeof what, "xent v3 probs %dx%d", n, c);
    check_close(what, p0, probs, nc, TOL_MATH);
    snprintf(what, sizeof what, "xent v3 dlogits %dx%d", n, c);
    check_close(what, d0, dl, nc, TOL_MATH);
    snprintf(what, sizeof what, "xent v3 probs %dx%d, second run", n, c);
    check_device_bytes(what, "", dP[1], p0, nc * 4);
    snprintf(what, sizeof what, "xent v3 dlogits %dx%d, second run", n, c);
    check_device_bytes(what, "", dD[1], d0, nc * 4);
    snprintf(what, sizeof what, "xent v3 forward-only probs %dx%d", n, c);
    check_device_bytes(what, "", dP[3], p0, nc * 4);
    snprintf(what, sizeof what, "xent v3 probs %dx%d = version 2's", n, c);
    check_device_bytes(what, "", dP[2], p0, nc * 4);
    snprintf(what, sizeof what, "xent v3 dlogits %dx%d = version 2's", n, c);
    check_device_bytes(what, "", dD[2], d0, nc * 4);
    free(p0); free(d0);
    free(logits); free(labels); free(probs); free(dl);
    CK(cudaFree(dL)); CK(cudaFree(dLab)); CK(cudaFree(dLoss));
    for (int k = 0; k < 4; k++) {
        CK(cudaFree(dP[k]));
        if (k < 3) CK(cudaFree(dD[k]));
    }
}

/* Version 3 in a CUDA graph (as the backend's step graphs hold it): each replay finds the
 * finishing counter reset by the one before and writes the eager run's loss, bit for bit. */
static void test_xent3_graph(int n, int c) {
    float *logits = host_random((size_t)n * c, -8, 8);
    int32_t *labels = host_alloc((size_t)n * 4);
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(rng_u64() % (uint64_t)c);
    float *dL = dev_upload(logits, (size_t)n * c * 4), *dP = dev_poisoned((size_t)n * c * 4);
    float *dD = dev_poisoned((size_t)n * c * 4), *dLoss = dev_poisoned(4);
    int32_t *dLab = dev_upload(labels, (size_t)n * 4);
    setenv("CNN_XENT_V", "3", 1);
    CK(softmax_xent_fused_cuda(n, c, dL, dLab, dP, dLoss, dD, 0));
    float *eager = dev_download(dLoss, 4), *probs = host_alloc((size_t)n * c * 4), loss;
    softmax_xent_forward(n, c, logits, labels, probs, &loss);
    char what[96];
    snprintf(what, sizeof what, "xent v3 %dx%d eager loss (graph test)", n, c);
    check_loss(what, eager, loss, logits, (size_t)n * c, c); /* the replays compare with it */
    cudaStream_t s;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    CK(softmax_xent_fused_cuda(n, c, dL, dLab, dP, dLoss, dD, s));
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    for (int rep = 1; rep <= 3; rep++) {
        /* on s: a non-blocking stream does not wait for the legacy stream's memset */
        CK(cudaMemsetAsync(dLoss, 0xFF, 4, s));
        CK(cudaGraphLaunch(exec, s));
        CK(cudaStreamSynchronize(s));
        snprintf(what, sizeof what, "xent v3 %dx%d graph replay %d: loss", n, c, rep);
        check_device_bytes(what, "= eager", dLoss, eager, 4);
    }
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaStreamDestroy(s));
    free(eager); free(probs); free(logits); free(labels);
    CK(cudaFree(dL)); CK(cudaFree(dP)); CK(cudaFree(dD)); CK(cudaFree(dLoss)); CK(cudaFree(dLab));
}

/* The cross-entropy versions (CNN_XENT_V, kernels/softmax_xent.cu): 1 = rows through global
 * memory, 2 = rows in registers (17 classes fall back to version 1), 3 = blocks of rows
 * through shared memory (the default up to 16 classes since GPU run 5; 17 falls back to
 * version 1 too). */
static void test_softmax(void) {
    char *keep = env_keep("CNN_XENT_V");
    for (int v = 1; v <= 3; v++) {
        setenv("CNN_XENT_V", v == 1 ? "1" : v == 2 ? "2" : "3", 1);
        printf("---- cross-entropy version %d (CNN_XENT_V=%d)\n", v, v);
        test_softmax_case(100, 10);
        test_softmax_case(quick ? 37 : 1000, 10);
        test_softmax_case(3, 7);
        test_softmax_case(quick ? 600 : 2500, 13); /* more rows than the block's threads */
        test_softmax_case(quick ? 45 : 1100, 17);  /* more classes than version 2 holds */
    }
    printf("---- cross-entropy version 3: its own claims\n");
    const int rows[] = {1, 37, 128, 129, 1000, 1023, 2500};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        test_xent3_case(rows[i], 10, -1);
        test_xent3_case(rows[i], 13, -1);
    }
    test_xent3_case(300, 16, -1);                /* the most classes version 3 holds */
    test_xent3_case(1, 1, -1);
    test_xent3_case(0, 10, -1);                  /* no rows: loss 0 */
    test_xent3_case(512 * 128 + 77, 3, -1);      /* more chunks than blocks: blocks loop */
    test_xent3_case(100, 10, 42);                /* label -1: one block */
    test_xent3_case(1000, 10, 777);              /* label 10 = c, in block 6 of 8 */
    test_xent3_graph(1000, 10);                  /* 8 blocks: the counter's path */
    env_restore("CNN_XENT_V", keep);
}

/* ---- optimizers ----------------------------------------------------------------------------- */
/* Adam's versions (CNN_ADAM_V, kernels/optimizers.cu): 1 = a float per thread, 2 = float4
 * (the default, on 16-byte aligned buffers; a misaligned view falls back to version 1). Each on
 * aligned and misaligned buffers, an odd count (the float4 kernel's tail), against the CPU; and
 * the versions bitwise against each other (the same arithmetic). */
static void test_adam_versions(void) {
    size_t n = quick ? 1003 : 3274634 + 3;
    float *w0 = host_random(n, -1, 1), *g = host_random(n, -1, 1);
    float *m0 = host_random(n, -0.1f, 0.1f), *v0 = host_random(n, 0, 0.01f);
    float *got[2][2] = {{NULL, NULL}, {NULL, NULL}};
    char *keep = env_keep("CNN_ADAM_V");
    for (int ver = 1; ver <= 2; ver++)
        for (int off = 0; off <= 1; off++) {
            size_t cnt = n - (size_t)off;
            float *w = host_alloc(n * 4), *m = host_alloc(n * 4), *v = host_alloc(n * 4);
            memcpy(w, w0, n * 4); memcpy(m, m0, n * 4); memcpy(v, v0, n * 4);
            float *dW = dev_upload(w, n * 4), *dG = dev_upload(g, n * 4);
            float *dM = dev_upload(m, n * 4), *dV = dev_upload(v, n * 4);
            int64_t step = 2;
            int64_t *dStep = dev_upload(&step, 8);
            setenv("CNN_ADAM_V", ver == 1 ? "1" : "2", 1);
            CK(adam_update_cuda(cnt, dW + off, dG + off, dM + off, dV + off, 0.001f, 0.9f, 0.999f,
                                1e-7f, dStep, 0));
            CK(step_advance_cuda(dStep, 0));
            CK(adam_update_cuda(cnt, dW + off, dG + off, dM + off, dV + off, 0.001f, 0.9f, 0.999f,
                                1e-7f, dStep, 0));
            adam_update(cnt, w + off, g + off, m + off, v + off, 0.001f, 0.9f, 0.999f, 1e-7f, 3);
            adam_update(cnt, w + off, g + off, m + off, v + off, 0.001f, 0.9f, 0.999f, 1e-7f, 4);
            char what[96];
            float *r = dev_download(dW, n * 4);
            snprintf(what, sizeof what, "adam v%d w n=%zu %s", ver, cnt, off ? "misaligned" : "aligned");
            check_close(what, r, w, n, TOL_MATH);
            got[ver - 1][off] = r;
            r = dev_download(dM, n * 4);
            snprintf(what, sizeof what, "adam v%d m %s", ver, off ? "misaligned" : "aligned");
            check_close(what, r, m, n, TOL_MATH);
            free(r);
            r = dev_download(dV, n * 4);
            snprintf(what, sizeof what, "adam v%d v %s", ver, off ? "misaligned" : "aligned");
            check_close(what, r, v, n, TOL_MATH);
            free(r);
            free(w); free(m); free(v);
            CK(cudaFree(dW)); CK(cudaFree(dG)); CK(cudaFree(dM)); CK(cudaFree(dV));
            CK(cudaFree(dStep));
        }
    env_restore("CNN_ADAM_V", keep);
    check_equal_bytes("adam v2 == v1 (aligned)", got[1][0], got[0][0], n * 4);
    check_equal_bytes("adam v2 == v1 (misaligned)", got[1][1], got[0][1], n * 4);
    for (int i = 0; i < 2; i++) { free(got[i][0]); free(got[i][1]); }
    free(w0); free(g); free(m0); free(v0);
}

static void test_optimizers(void) {
    size_t n = quick ? 1003 : 3274634; /* the model's parameter count */
    float *w = host_random(n, -1, 1), *g = host_random(n, -1, 1);
    float *m = host_random(n, -0.1f, 0.1f), *v = host_random(n, 0, 0.01f);
    float *vel = host_random(n, -0.1f, 0.1f);
    float *w_sgd = host_alloc(n * 4), *w_mom = host_alloc(n * 4), *w_nes = host_alloc(n * 4);
    float *vel_mom = host_alloc(n * 4), *vel_nes = host_alloc(n * 4);
    memcpy(w_sgd, w, n * 4); memcpy(w_mom, w, n * 4); memcpy(w_nes, w, n * 4);
    memcpy(vel_mom, vel, n * 4); memcpy(vel_nes, vel, n * 4);

    float *dW = dev_upload(w, n * 4), *dG = dev_upload(g, n * 4), *dM = dev_upload(m, n * 4);
    float *dV = dev_upload(v, n * 4), *dWs = dev_upload(w, n * 4), *dWm = dev_upload(w, n * 4);
    float *dWn = dev_upload(w, n * 4), *dVm = dev_upload(vel, n * 4), *dVn = dev_upload(vel, n * 4);
    int64_t step = 5;
    int64_t *dStep = dev_upload(&step, 8);
    /* two Adam steps: t = 6, then t = 7 after step_advance */
    CK(adam_update_cuda(n, dW, dG, dM, dV, 0.001f, 0.9f, 0.999f, 1e-7f, dStep, 0));
    CK(step_advance_cuda(dStep, 0));
    CK(adam_update_cuda(n, dW, dG, dM, dV, 0.001f, 0.9f, 0.999f, 1e-7f, dStep, 0));
    adam_update(n, w, g, m, v, 0.001f, 0.9f, 0.999f, 1e-7f, 6);
    adam_update(n, w, g, m, v, 0.001f, 0.9f, 0.999f, 1e-7f, 7);
    CK(sgd_update_cuda(n, dWs, dG, 0.01f, 0));
    CK(momentum_update_cuda(n, dWm, dG, dVm, 0.01f, 0.9f, 0, 0));
    CK(momentum_update_cuda(n, dWn, dG, dVn, 0.01f, 0.9f, 1, 0));
    sgd_update(n, w_sgd, g, 0.01f);
    momentum_update(n, w_mom, g, vel_mom, 0.01f, 0.9f, 0);
    momentum_update(n, w_nes, g, vel_nes, 0.01f, 0.9f, 1);

    float *r = dev_download(dW, n * 4);
    check_close("adam w (t=6,7)", r, w, n, TOL_MATH);
    free(r);
    r = dev_download(dM, n * 4);
    check_close("adam m", r, m, n, TOL_MATH);
    free(r);
    r = dev_download(dV, n * 4);
    check_close("adam v", r, v, n, TOL_MATH);
    free(r);
    int64_t *gs = dev_download(dStep, 8), want = 6;
    check_equal_bytes("step_advance 5 -> 6", gs, &want, 8);
    free(gs);
    /* SGD and momentum: the same single operations on both sides (a*b - c*d may contract to an
     * FMA in either compiler, hence a tolerance rather than bitwise). */
    r = dev_download(dWs, n * 4);
    check_close("sgd w", r, w_sgd, n, TOL_MATH);
    free(r);
    r = dev_download(dWm, n * 4);
    check_close("momentum w", r, w_mom, n, TOL_MATH);
    free(r);
    r = dev_download(dVm, n * 4);
    check_close("momentum velocity", r, vel_mom, n, TOL_MATH);
    free(r);
    r = dev_download(dWn, n * 4);
    check_close("nesterov momentum w", r, w_nes, n, TOL_MATH);
    free(r);
    r = dev_download(dVn, n * 4);
    check_close("nesterov momentum velocity", r, vel_nes, n, TOL_MATH);
    free(r);

    free(w); free(g); free(m); free(v); free(vel);
    free(w_sgd); free(w_mom); free(w_nes); free(vel_mom); free(vel_nes);
    CK(cudaFree(dW)); CK(cudaFree(dG)); CK(cudaFree(dM)); CK(cudaFree(dV)); CK(cudaFree(dWs));
    CK(cudaFree(dWm)); CK(cudaFree(dWn)); CK(cudaFree(dVm)); CK(cudaFree(dVn));
    CK(cudaFree(dStep));
}

/* ---- core's small entries: softmax backward, add in place, mean ---------------------------- */
static void test_small_entries(void) {
    const int n = 37, c = 10;
    size_t nn = quick ? 1003 : 1000003;
    float *y = host_random((size_t)n * c, 0, 1), *dy = host_random((size_t)n * c, -1, 1);
    float *dx = host_alloc((size_t)n * c * 4);
    for (int i = 0; i < n; i++) { /* reference in the kernel's order */
        float dot = 0.0f;
        for (int j = 0; j < c; j++) dot += dy[i * c + j] * y[i * c + j];
        for (int j = 0; j < c; j++) dx[i * c + j] = y[i * c + j] * (dy[i * c + j] - dot);
    }
    float *dY = dev_upload(y, (size_t)n * c * 4), *dDY = dev_upload(dy, (size_t)n * c * 4);
    float *dDX = dev_poisoned((size_t)n * c * 4);
    CK(softmax_backward_cuda(n, c, dY, dDY, dDX, 0));
    float *g = dev_download(dDX, (size_t)n * c * 4);
    check_close("softmax bwd 37x10", g, dx, (size_t)n * c, TOL_MATH);
    free(g);

    float *a = host_random(nn, -1, 1), *b = host_random(nn, -1, 1), *sum = host_alloc(nn * 4);
    double total = 0;
    for (size_t i = 0; i < nn; i++) { sum[i] = b[i] + a[i]; total += a[i]; }
    float mean = (float)(total / (double)nn), dmean = 0.75f;
    float *mb = host_alloc(nn * 4);
    for (size_t i = 0; i < nn; i++) mb[i] = dmean / (float)nn;
    float *dA = dev_upload(a, nn * 4), *dB = dev_upload(b, nn * 4), *dM = dev_poisoned(4);
    float *dDM = dev_upload(&dmean, 4), *dMB = dev_poisoned(nn * 4);
    CK(add_inplace_cuda(nn, dA, dB, 0));
    CK(mean_forward_cuda(nn, dA, dM, 0));
    CK(mean_backward_cuda(nn, dDM, dMB, 0));
    g = dev_download(dB, nn * 4);
    check_equal_bytes("add_inplace", g, sum, nn * 4);
    free(g);
    g = dev_download(dM, 4);
    check_close("mean fwd", g, &mean, 1, TOL_MATH);
    free(g);
    g = dev_download(dMB, nn * 4);
    check_equal_bytes("mean bwd", g, mb, nn * 4);
    free(g);
    /* an evaluation's totals: chunk losses added in double in order, counts in int64 */
    const float chunk_loss[3] = {2.3025851f, 0.1234567f, 1e-8f};
    const int32_t chunk_correct[3] = {7, 100, 2147483647};
    double loss_total = 0, dev_total;
    int64_t count = 0, dev_count;
    float *dL = dev_upload(chunk_loss, sizeof chunk_loss);
    int32_t *dC = dev_upload(chunk_correct, sizeof chunk_correct);
    double *dT = dev_poisoned(sizeof(double) + sizeof(int64_t));
    CK(cudaMemset(dT, 0, sizeof(double) + sizeof(int64_t)));
    for (int i = 0; i < 3; i++) {
        loss_total += (double)chunk_loss[i];
        count += chunk_correct[i];
        CK(eval_accumulate_cuda(dL + i, dC + i, dT, (int64_t *)(dT + 1), 0));
    }
    CK(cudaMemcpy(&dev_total, dT, sizeof dev_total, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&dev_count, dT + 1, sizeof dev_count, cudaMemcpyDeviceToHost));
    check_equal_bytes("eval_accumulate loss (double)", &dev_total, &loss_total, sizeof loss_total);
    check_equal_bytes("eval_accumulate count (int64)", &dev_count, &count, sizeof count);
    CK(cudaFree(dL)); CK(cudaFree(dC)); CK(cudaFree(dT));
    free(y); free(dy); free(dx); free(a); free(b); free(sum); free(mb);
    CK(cudaFree(dY)); CK(cudaFree(dDY)); CK(cudaFree(dDX)); CK(cudaFree(dA)); CK(cudaFree(dB));
    CK(cudaFree(dM)); CK(cudaFree(dDM)); CK(cudaFree(dMB));
}

/* ---- batch gather from the resident data set ------------------------------------------------ */
static void test_gather(void) {
    const int n_ex = 1000, size = 784, batch = 96, slots = 2;
    const int64_t step = 10; /* positions 960..1055: crosses from epoch 0 into epoch 1 */
    uint8_t *pixels = host_alloc((size_t)n_ex * size);
    int32_t *labels = host_alloc((size_t)n_ex * 4), *ring = host_alloc((size_t)slots * n_ex * 4);
    for (size_t i = 0; i < (size_t)n_ex * size; i++) pixels[i] = (uint8_t)rng_u64();
    for (int i = 0; i < n_ex; i++) labels[i] = (int32_t)(rng_u64() % 10);
    for (int e = 0; e < slots; e++) { /* a random permutation per slot */
        int32_t *p = ring + (size_t)e * n_ex;
        for (int i = 0; i < n_ex; i++) p[i] = i;
        for (int i = n_ex - 1; i > 0; i--) {
            int j = (int)(rng_u64() % (uint64_t)(i + 1));
            int32_t t = p[i]; p[i] = p[j]; p[j] = t;
        }
    }
    float *x = host_alloc((size_t)batch * size * 4);
    int32_t *y = host_alloc((size_t)batch * 4);
    for (int k = 0; k < batch; k++) {
        int64_t j = step * batch + k, e = j / n_ex;
        int idx = ring[(size_t)(e % slots) * n_ex + j % n_ex];
        for (int p = 0; p < size; p++) x[(size_t)k * size + p] = (float)pixels[(size_t)idx * size + p];
        y[k] = labels[idx];
    }
    uint8_t *dPix = dev_upload(pixels, (size_t)n_ex * size);
    int32_t *dLab = dev_upload(labels, (size_t)n_ex * 4), *dRing = dev_upload(ring, (size_t)slots * n_ex * 4);
    int64_t *dStep = dev_upload(&step, 8);
    float *dX = dev_poisoned((size_t)batch * size * 4), *dX2 = dev_poisoned((size_t)size * 4);
    int32_t *dY = dev_poisoned((size_t)batch * 4);
    CK(gather_batch_cuda(batch, size, n_ex, dPix, dLab, dRing, slots, dStep, dX, dY, 0));
    CK(u8_to_float_cuda((size_t)size, dPix + (size_t)5 * size, dX2, 0));
    void *g = dev_download(dX, (size_t)batch * size * 4);
    check_equal_bytes("gather_batch x (epoch boundary)", g, x, (size_t)batch * size * 4);
    free(g);
    g = dev_download(dY, (size_t)batch * 4);
    check_equal_bytes("gather_batch labels", g, y, (size_t)batch * 4);
    free(g);
    float *x5 = host_alloc((size_t)size * 4);
    for (int p = 0; p < size; p++) x5[p] = (float)pixels[(size_t)5 * size + p];
    g = dev_download(dX2, (size_t)size * 4);
    check_equal_bytes("u8_to_float", g, x5, (size_t)size * 4);
    free(g);
    free(pixels); free(labels); free(ring); free(x); free(y); free(x5);
    CK(cudaFree(dPix)); CK(cudaFree(dLab)); CK(cudaFree(dRing)); CK(cudaFree(dStep));
    CK(cudaFree(dX)); CK(cudaFree(dX2)); CK(cudaFree(dY));
}

#ifndef CNN_CUDA_EMU
/* ---- the CUDA backend's fused entries vs the CPU backend's unfused sequences ---------------- */
/* What core/ runs in a step with CNN_CUDA_FUSED=1 (the default) against what it runs on the CPU
 * without fusion: same tolerances as the kernels underneath (GEMM epilogues 1e-4, softmax 1e-5,
 * ReLU masks, pooling and dropout bitwise). The backend's stream is non-blocking: inputs are
 * made on the default stream and synchronised before the entries run. */
static Backend *cuda_be, *cpu_be;

/* Waits for the backend's work; a recorded device error ends the test. */
static void be_sync(void) {
    if (cuda_be->sync(cuda_be) != 0) {
        printf("FAIL cuda backend: %s\n", cuda_be->last_error(cuda_be));
        exit(1);
    }
}

static void *be_result(const void *dev, size_t bytes) {
    be_sync();
    return dev_download(dev, bytes);
}

static void test_fused_conv(int n, int h, int w, int c, int kh, int kw, int k, int stride) {
    Conv2dShape s;
    conv2d_shape_init(&s, n, h, w, c, kh, kw, k, stride, stride, 1);
    size_t nx = (size_t)n * h * w * c, nw = (size_t)kh * kw * c * k, ny = (size_t)n * s.oh * s.ow * k;
    float *x = host_random(nx, -1, 1), *wt = host_random(nw, -0.3f, 0.3f);
    float *b = host_random((size_t)k, -0.5f, 0.5f), *y = host_alloc(ny * 4);
    float *ws = host_alloc(cpu_be->conv2d_workspace_floats(cpu_be, &s) * 4 + 4);
    cpu_be->conv2d_forward(cpu_be, &s, x, wt, b, y, ws);
    cpu_be->relu_forward(cpu_be, ny, y, y);
    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(wt, nw * 4), *dB = dev_upload(b, k * 4);
    float *dY = dev_poisoned(ny * 4);
    CK(cudaDeviceSynchronize());
    cuda_be->conv2d_relu_forward(cuda_be, &s, dX, dW, dB, dY, NULL);
    float *g = be_result(dY, ny * 4);
    char what[96];
    snprintf(what, sizeof what, "backend conv2d_relu_forward %dx%dx%dx%d k%dx%dx%d s%d", n, h, w,
             c, kh, kw, k, stride);
    check_close(what, g, y, ny, TOL_GEMM);
    free(g); free(x); free(wt); free(b); free(y); free(ws);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dY));
}

static void test_fused_dense(int n, int in, int out) {
    size_t nx = (size_t)n * in, nw = (size_t)in * out, ny = (size_t)n * out;
    float *x = host_random(nx, -1, 1), *wt = host_random(nw, -0.1f, 0.1f);
    float *b = host_random((size_t)out, -0.5f, 0.5f), *y = host_alloc(ny * 4);
    cpu_be->dense_forward(cpu_be, n, in, out, x, wt, b, y);
    cpu_be->relu_forward(cpu_be, ny, y, y);
    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(wt, nw * 4), *dB = dev_upload(b, out * 4);
    float *dY = dev_poisoned(ny * 4);
    CK(cudaDeviceSynchronize());
    cuda_be->dense_relu_forward(cuda_be, n, in, out, dX, dW, dB, dY);
    float *g = be_result(dY, ny * 4);
    char what[96];
    snprintf(what, sizeof what, "backend dense_relu_forward %dx%dx%d", n, in, out);
    check_close(what, g, y, ny, TOL_GEMM);
    free(g); free(x); free(wt); free(b); free(y);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dY));
}

/* Pool input relu-like (max(u, 0): ties at 0, and zeros the fused ReLU backward must mask). */
static void test_fused_pool(int n, int h, int w, int c, int k, int stride) {
    Pool2dShape s;
    pool2d_shape_init(&s, n, h, w, c, k, k, stride, stride, 1);
    size_t nx = (size_t)n * h * w * c, ny = (size_t)n * s.oh * s.ow * c;
    float *x = host_random(nx, -1, 1), *dy = host_random(ny, -1, 1), *y = host_alloc(ny * 4);
    for (size_t i = 0; i < nx; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
    float *dx = host_alloc(nx * 4);
    int32_t *am = host_alloc(ny * 4);
    cpu_be->maxpool2d_forward(cpu_be, &s, x, y, am);
    cpu_be->maxpool2d_backward(cpu_be, &s, dy, am, dx);
    cpu_be->relu_backward(cpu_be, nx, x, dx, dx);
    float *dX = dev_upload(x, nx * 4), *dDY = dev_upload(dy, ny * 4), *dDX = dev_poisoned(nx * 4);
    int32_t *dAM = dev_upload(am, ny * 4);
    CK(cudaDeviceSynchronize());
    cuda_be->maxpool2d_relu_backward(cuda_be, &s, dDY, dAM, dX, dDX);
    float *g = be_result(dDX, nx * 4);
    char what[96];
    snprintf(what, sizeof what, "backend maxpool2d_relu_backward %dx%dx%dx%d %d/%d", n, h, w, c,
             k, stride);
    check_equal_bytes(what, g, dx, nx * 4);
    free(g); free(x); free(dy); free(y); free(dx); free(am);
    CK(cudaFree(dX)); CK(cudaFree(dDY)); CK(cudaFree(dDX)); CK(cudaFree(dAM));
}

/* The first layer's conv + ReLU + max pool through the backend table: the CPU twin's bits
 * forward, its filter gradient to TOL_MATH (kernel-level checks: test_conv_pool). */
static void test_fused_conv_pool(int n) {
    Conv2dShape cs;
    conv2d_shape_init(&cs, n, 28, 28, 1, 5, 5, 32, 1, 1, 1);
    Pool2dShape ps;
    pool2d_shape_init(&ps, n, 28, 28, 32, 2, 2, 2, 2, 1);
    const size_t nx = (size_t)n * 784, nw = 800, ny = (size_t)n * 14 * 14 * 32;
    float *x = host_random(nx, 0, 255), *w = host_random(nw, -0.1f, 0.1f);
    float *b = host_random(32, -0.1f, 0.1f), *dy = host_random(ny, -1, 1);
    for (size_t i = 0; i < nx; i += 2) x[i] = 0.0f; /* background */
    float *y = host_alloc(ny * 4), *dw = host_alloc(nw * 4), *db = host_alloc(32 * 4);
    int32_t *am = host_alloc(ny * 4);
    conv2d_relu_maxpool_forward(&cs, &ps, x, w, b, y, am);
    cpu_filter_from_pool(&cs, &ps, x, y, am, dy, dw, db);
    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(w, nw * 4), *dB = dev_upload(b, 32 * 4);
    float *dDY = dev_upload(dy, ny * 4), *dY = dev_poisoned(ny * 4), *dDW = dev_poisoned(nw * 4);
    float *dDB = dev_poisoned(32 * 4);
    int32_t *dAM = dev_poisoned(ny * 4);
    cuda_be->conv2d_relu_maxpool_forward(cuda_be, &cs, &ps, dX, dW, dB, dY, dAM, NULL);
    cuda_be->conv2d_relu_maxpool_backward_filter(cuda_be, &cs, &ps, dX, dY, dAM, dDY, dDW, dDB,
                                                 NULL);
    char what[96], tag[16];
    snprintf(tag, sizeof tag, "n=%d", n);
    be_sync();
    check_device_bytes("backend conv2d_relu_maxpool_forward y", tag, dY, y, ny * 4);
    check_device_bytes("backend conv2d_relu_maxpool_forward argmax", tag, dAM, am, ny * 4);
    float *gw = be_result(dDW, nw * 4), *gb = be_result(dDB, 32 * 4);
    snprintf(what, sizeof what, "backend conv2d_relu_maxpool_backward dw n=%d", n);
    check_close(what, gw, dw, nw, TOL_MATH);
    snprintf(what, sizeof what, "backend conv2d_relu_maxpool_backward db n=%d", n);
    check_close(what, gb, db, 32, TOL_MATH);
    free(gw); free(gb); free(x); free(w); free(b); free(dy); free(y); free(dw); free(db); free(am);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dY));
    CK(cudaFree(dDW)); CK(cudaFree(dDB)); CK(cudaFree(dAM));
}

static void test_fused_dropout(size_t n, float rate) {
    float *ry = host_random(n, -1, 1), *dy = host_random(n, -1, 1), *dx = host_alloc(n * 4);
    uint8_t *mask = host_alloc(n);
    for (size_t i = 0; i < n; i++) {
        ry[i] = ry[i] > 0 ? ry[i] : 0.0f;
        mask[i] = rng_uniform(0, 1) >= rate;
    }
    cpu_be->dropout_backward(cpu_be, n, rate, mask, dy, dx);
    cpu_be->relu_backward(cpu_be, n, ry, dx, dx);
    float *dRY = dev_upload(ry, n * 4), *dDY = dev_upload(dy, n * 4), *dDX = dev_poisoned(n * 4);
    uint8_t *dM = dev_upload(mask, n);
    CK(cudaDeviceSynchronize());
    cuda_be->dropout_relu_backward(cuda_be, n, rate, dM, dRY, dDY, dDX);
    float *g = be_result(dDX, n * 4);
    char what[96];
    snprintf(what, sizeof what, "backend dropout_relu_backward n=%zu rate=%.2f", n, rate);
    check_equal_bytes(what, g, dx, n * 4);
    free(g); free(ry); free(dy); free(dx); free(mask);
    CK(cudaFree(dRY)); CK(cudaFree(dDY)); CK(cudaFree(dDX)); CK(cudaFree(dM));
}

/* The dropout + logits layer entries (CNN_CUDA_FUSED=5): the backend's wiring (the step read on
 * the device, dw and db on the gradient stream, dx on the main one) against the CPU twin. */
static void test_fused_dropout_dense(int n, int in, int out) {
    const float rate = 0.4f;
    const int64_t step = 77;
    const uint64_t seed = rng_u64(), base = PHILOX_STREAM_DROPOUT + 1;
    const size_t nx = (size_t)n * in, ny = (size_t)n * out, nw = (size_t)in * out;
    float *x = host_random(nx, -1, 1), *w = host_random(nw, -0.1f, 0.1f);
    float *b = host_random((size_t)out, -0.5f, 0.5f), *dy = host_random(ny, -1, 1);
    relu_forward(nx, x, x);
    float *y = host_alloc(ny * 4), *dx = host_alloc(nx * 4), *dw = host_alloc(nw * 4);
    float *db = host_alloc((size_t)out * 4);
    uint8_t *mask = host_alloc(nx);
    dropout_dense_forward(n, in, out, rate, seed, base + (uint64_t)step * 16, x, w, b, y, mask, 0);
    dropout_dense_backward(n, in, out, rate, mask, 1, x, w, dy, dx, dw, db);
    float *dX = dev_upload(x, nx * 4), *dW = dev_upload(w, nw * 4);
    float *dB = dev_upload(b, (size_t)out * 4), *dDY = dev_upload(dy, ny * 4);
    int64_t *dStep = dev_upload(&step, sizeof step);
    float *dY = dev_poisoned(ny * 4), *dDX = dev_poisoned(nx * 4), *dDW = dev_poisoned(nw * 4);
    float *dDB = dev_poisoned((size_t)out * 4);
    uint8_t *dM = dev_poisoned(nx);
    CK(cudaDeviceSynchronize());
    cuda_be->dropout_dense_forward(cuda_be, n, in, out, rate, seed, base, dStep, dX, dW, dB, dY,
                                   dM, 0);
    cuda_be->dropout_dense_backward(cuda_be, n, in, out, rate, dM, 1, dX, dW, dDY, dDX, dDW, dDB);
    char what[96];
    snprintf(what, sizeof what, "backend dropout_dense %dx%d->%d", n, in, out);
    void *g = be_result(dM, nx);
    char tag[128];
    snprintf(tag, sizeof tag, "%s mask", what);
    check_equal_bytes(tag, g, mask, nx);
    free(g);
    const float *dev[4] = {dY, dDX, dDW, dDB}, *host[4] = {y, dx, dw, db};
    const size_t count[4] = {ny, nx, nw, (size_t)out};
    const char *name[4] = {"y", "dx", "dw", "db"};
    for (int i = 0; i < 4; i++) {
        g = be_result(dev[i], count[i] * 4);
        snprintf(tag, sizeof tag, "%s %s", what, name[i]);
        check_close(tag, g, host[i], count[i], TOL_GEMM);
        free(g);
    }
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db); free(mask);
    CK(cudaFree(dX)); CK(cudaFree(dW)); CK(cudaFree(dB)); CK(cudaFree(dDY)); CK(cudaFree(dStep));
    CK(cudaFree(dY)); CK(cudaFree(dDX)); CK(cudaFree(dDW)); CK(cudaFree(dDB)); CK(cudaFree(dM));
}

static void test_fused_xent(int n, int c) {
    size_t nl = (size_t)n * c;
    float *logits = host_random(nl, -8, 8), *p = host_alloc(nl * 4), *dl = host_alloc(nl * 4);
    int32_t *lab = host_alloc((size_t)n * 4);
    for (int i = 0; i < n; i++) lab[i] = (int32_t)(rng_u64() % (uint64_t)c);
    float loss;
    cpu_be->softmax_xent_forward(cpu_be, n, c, logits, lab, p, &loss);
    cpu_be->softmax_xent_backward(cpu_be, n, c, p, lab, 1.0f, dl);
    float *dL = dev_upload(logits, nl * 4), *dP = dev_poisoned(nl * 4), *dDL = dev_poisoned(nl * 4);
    float *dLoss = dev_poisoned(4);
    int32_t *dLab = dev_upload(lab, (size_t)n * 4);
    CK(cudaDeviceSynchronize());
    cuda_be->softmax_xent_fused(cuda_be, n, c, dL, dLab, dP, dLoss, dDL);
    float *g = be_result(dP, nl * 4);
    char what[96];
    snprintf(what, sizeof what, "backend softmax_xent_fused probs %dx%d", n, c);
    check_close(what, g, p, nl, TOL_MATH);
    free(g);
    g = dev_download(dDL, nl * 4);
    snprintf(what, sizeof what, "backend softmax_xent_fused dlogits %dx%d", n, c);
    check_close(what, g, dl, nl, TOL_MATH);
    free(g);
    g = dev_download(dLoss, 4);
    snprintf(what, sizeof what, "backend softmax_xent_fused loss %dx%d", n, c);
    check_loss(what, g, loss, logits, nl, c);
    free(g); free(logits); free(p); free(dl); free(lab);
    CK(cudaFree(dL)); CK(cudaFree(dP)); CK(cudaFree(dDL)); CK(cudaFree(dLoss)); CK(cudaFree(dLab));
}

/* 1 when all five optional fused entries are set, 0 when none is, -1 otherwise. */
/* The fusion level a backend's table shows: 0 none, 1 the five ReLU/dropout/xent entries,
 * 2 those and the conv + ReLU + max pool pair, 3 those and filter gradients from the pool, 4
 * those and the pool backward from y (middle layers), 5 those and the three dropout + dense
 * entries; -1 anything else. */
static int fused_entries(const Backend *be) {
    int set = !!be->conv2d_relu_forward + !!be->dense_relu_forward +
              !!be->maxpool2d_relu_backward + !!be->dropout_relu_backward +
              !!be->softmax_xent_fused;
    int pool = !!be->conv2d_relu_maxpool_forward + !!be->conv2d_relu_maxpool_backward_filter;
    int from_pool = !!be->conv2d_filter_grad_from_pool, from_y = !!be->maxpool2d_relu_backward_from_y;
    int drop = !!be->dropout_dense_fits + !!be->dropout_dense_forward +
               !!be->dropout_dense_backward;
    const int table[6][5] = {{0, 0, 0, 0, 0}, {5, 0, 0, 0, 0}, {5, 2, 0, 0, 0},
                             {5, 2, 1, 0, 0}, {5, 2, 1, 1, 0}, {5, 2, 1, 1, 3}};
    for (int level = 0; level < 6; level++)
        if (set == table[level][0] && pool == table[level][1] && from_pool == table[level][2] &&
            from_y == table[level][3] && drop == table[level][4])
            return level;
    return -1;
}

static Backend *make_cuda_backend(const char *fused_env) {
    char err[512];
    if (fused_env) setenv("CNN_CUDA_FUSED", fused_env, 1);
    else unsetenv("CNN_CUDA_FUSED");
    Backend *be = backend_cuda_create(err, sizeof err);
    if (!be) {
        printf("FAIL backend_cuda_create: %s\n", err);
        exit(1);
    }
    return be;
}

static void test_backend_fused(void) {
    /* The switch: CNN_CUDA_FUSED=0 -> none (core's unfused sequences), 1 to 5 -> those levels,
     * unset -> level 3 (the default since GPU run 4); the levels' table with the fused conv +
     * pool forward (CNN_CUDA_CONV_POOL_FWD=1), which level 3 leaves out by default since GPU
     * run 5 (below). */
    char *keep = env_keep("CNN_CUDA_FUSED");
    char *keep_split = env_keep("CNN_CUDA_CONV_POOL_FWD");
    char *keep_dfp = env_keep("CNN_CUDA_DATA_FROM_POOL");
    unsetenv("CNN_CUDA_DATA_FROM_POOL");
    setenv("CNN_CUDA_CONV_POOL_FWD", "1", 1);
    int got[6];
    for (int level = 0; level < 6; level++) {
        char v[2] = {(char)('0' + level), 0};
        Backend *b = make_cuda_backend(v);
        got[level] = fused_entries(b);
        b->destroy(b);
    }
    /* level 3 with the fused forward, and with CNN_CUDA_DATA_FROM_POOL=0 too: GPU run 5's
     * defaults */
    Backend *fused_fwd = make_cuda_backend("3");
    setenv("CNN_CUDA_DATA_FROM_POOL", "0", 1);
    Backend *run5 = make_cuda_backend(NULL);
    unsetenv("CNN_CUDA_DATA_FROM_POOL");
    /* the defaults (both switches unset): the fused conv + pool forward left out, its backward
     * kept, the filter gradient from the pool at any channel count (conv1's too), conv2's data
     * gradient from pool2's winners; levels 4 and 5 keep the fused forward (their point) */
    unsetenv("CNN_CUDA_CONV_POOL_FWD");
    Backend *by_default = make_cuda_backend(NULL);
    Backend *level4 = make_cuda_backend("4");
    const int got_level4 = fused_entries(level4);
    level4->destroy(level4);
    /* CNN_CUDA_CONV_POOL_FWD=0 splits level 4's forwards too */
    setenv("CNN_CUDA_CONV_POOL_FWD", "0", 1);
    Backend *split4 = make_cuda_backend("4");
    const int split4_ok = !split4->conv2d_relu_maxpool_forward &&
                          split4->conv2d_relu_maxpool_backward_filter &&
                          split4->maxpool2d_relu_backward_from_y;
    split4->destroy(split4);
    /* every fused entry: the tests below call them all */
    setenv("CNN_CUDA_CONV_POOL_FWD", "1", 1);
    cuda_be = make_cuda_backend("5");
    int got_on = fused_entries(cuda_be);
    env_restore("CNN_CUDA_FUSED", keep);
    env_restore("CNN_CUDA_CONV_POOL_FWD", keep_split);
    env_restore("CNN_CUDA_DATA_FROM_POOL", keep_dfp);
    check_count++;
    const int levels_ok = got[0] == 0 && got[1] == 1 && got[2] == 2 && got[3] == 3 &&
                          got[4] == 4 && got[5] == 5 && fused_entries(run5) == 3 &&
                          got_level4 == 4 && got_on == 5;
    if (!levels_ok) check_failures++;
    printf("%s backend fused entries (CNN_CUDA_CONV_POOL_FWD=1): CNN_CUDA_FUSED=0 -> level %d, "
           "1 -> %d, 2 -> %d, 3 -> %d, 4 -> %d, 5 -> %d, unset -> %d; 4 without the switch "
           "-> %d (want 0, 1, 2, 3, 4, 5, 3; 4)\n",
           levels_ok ? "PASS" : "FAIL", got[0], got[1], got[2], got[3], got[4], got[5],
           fused_entries(run5), got_level4);
    /* Filter gradients from the pool where the backward's pixel groups apply (C % 32 == 0),
     * with the fused forward (GPU run 5's defaults); data gradients from the winners off. */
    Conv2dShape c1, c2;
    conv2d_shape_init(&c1, 100, 28, 28, 1, 5, 5, 32, 1, 1, 1);
    conv2d_shape_init(&c2, 100, 14, 14, 32, 5, 5, 64, 1, 1, 1);
    check_count++;
    if (run5->conv2d_filter_grad_from_pool(run5, &c1) ||
        !run5->conv2d_filter_grad_from_pool(run5, &c2) || run5->conv2d_data_grad_from_pool ||
        run5->conv2d_relu_maxpool_backward_data || !fused_fwd->conv2d_data_grad_from_pool) {
        check_failures++;
        printf("FAIL backend with CNN_CUDA_CONV_POOL_FWD=1: conv2d_filter_grad_from_pool: want "
               "conv2 only; CNN_CUDA_DATA_FROM_POOL=0: no data gradient from the pool\n");
    } else {
        printf("PASS backend with CNN_CUDA_CONV_POOL_FWD=1: conv2d_filter_grad_from_pool conv2 "
               "(C = 32), not conv1 (C = 1); CNN_CUDA_DATA_FROM_POOL=0: no data gradient from "
               "the pool\n");
    }
    check_count++;
    const int split_ok = !by_default->conv2d_relu_maxpool_forward &&
                         by_default->conv2d_relu_maxpool_backward_filter &&
                         by_default->conv2d_filter_grad_from_pool(by_default, &c1) &&
                         by_default->conv2d_filter_grad_from_pool(by_default, &c2) &&
                         by_default->conv2d_data_grad_from_pool &&
                         by_default->conv2d_relu_maxpool_backward_data && split4_ok;
    if (!split_ok) check_failures++;
    printf("%s backend defaults: no fused conv + pool forward, its backward, filter gradients "
           "from the pool for conv1 and conv2, data gradients from the pool; "
           "CNN_CUDA_CONV_POOL_FWD=0 at level 4: no fused forward\n",
           split_ok ? "PASS" : "FAIL");
    by_default->destroy(by_default);
    run5->destroy(run5);
    fused_fwd->destroy(fused_fwd);
    cpu_be = backend_cpu_create();
    if (!cpu_be || got_on != 5) {
        printf("FAIL backend_cpu_create / fused entries missing: fused tests not run\n");
        check_count++;
        check_failures++;
        return;
    }
    test_fused_conv(3, 9, 7, 3, 3, 4, 5, 2);                    /* odd shape, stride 2 */
    test_fused_conv(quick ? 2 : 100, 14, 14, 32, 5, 5, 64, 1);  /* conv2 */
    test_fused_conv(quick ? 2 : 100, 28, 28, 1, 5, 5, 32, 1);   /* conv1 */
    test_fused_dense(7, 45, 13);
    test_fused_dense(quick ? 3 : 100, quick ? 301 : 3136, quick ? 515 : 1024); /* dense1 */
    test_fused_pool(3, 9, 11, 5, 3, 2);                          /* overlapping windows */
    test_fused_pool(quick ? 1 : 100, 28, 28, 32, 2, 2);          /* pool1 */
    test_fused_dropout(1027, 0.4f);
    test_fused_dropout(quick ? 4099 : 102400, 0.4f);             /* dense1's output */
    test_fused_dropout_dense(5, 13, 3);
    test_fused_dropout_dense(quick ? 9 : 100, 1024, 10);         /* dropout + dense2 */
    test_fused_xent(37, 13);
    test_fused_xent(quick ? 100 : 1000, 10);
    test_fused_conv_pool(3);
    test_fused_conv_pool(quick ? 5 : 100);                       /* conv1 + pool1 */
    cpu_be->destroy(cpu_be);
    cuda_be->destroy(cuda_be);
}

#endif /* CNN_CUDA_EMU */

int main(int argc, char **argv) {
    quick = getenv("CNN_TEST_QUICK") && strcmp(getenv("CNN_TEST_QUICK"), "0") != 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--no-lib") == 0) with_lib = 0;
        else {
            fprintf(stderr, "usage: test_kernels [--quick] [--no-lib]\n");
            return 2;
        }
    }
    gpu_require("test_kernels");
    uint64_t seed = rng_seed_init();
    printf("inputs: CNN_TEST_SEED=%llu%s\n", (unsigned long long)seed, quick ? " (quick)" : "");
#ifdef CNN_CUDA_EMU
    with_lib = 0;
    printf("CPU emulator: cuDNN/cuBLAS checks and the CUDA backend's fused entries left out\n");
#else
    char why[1024];
    if (cudnn_libs_load(why, sizeof why) != 0) {
        fprintf(stderr, "FAIL cuBLAS/cuDNN: %s\n", why);
        return 1;
    }
    CKDNN(cudnnCreate(&dnn));
    CKBLAS(cublasCreate(&blas));
    CKBLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
#endif
    /* The GEMM-shaped ops under each GEMM version (kernels/gemm_cuda.cuh, CNN_GEMM_V): 1 = the
     * first GPU run's kernel, 2 = double-buffered, 3 = double-buffered with version 3's tiles,
     * 4 = version 3 with vector loads, 5 = version 4 on the tensor cores (3xTF32, the default),
     * 6 = version 5 adding its sums into the accumulators once per slice (a candidate).
     * CNN_GEMM_V set in the environment: that version only (the sanitizer runs). */
    char *gemm_keep = env_keep("CNN_GEMM_V");
    int v_first = 1, v_last = 6;
    if (gemm_keep && *gemm_keep) v_first = v_last = atoi(gemm_keep);
    for (int v = v_first; v <= v_last; v++) {
        char vs[16];
        snprintf(vs, sizeof vs, "%d", v);
        setenv("CNN_GEMM_V", vs, 1);
        printf("---- GEMM version %d (CNN_GEMM_V=%d)\n", v, v);
#ifdef CNN_CUDA_EMU
        const size_t mma_before = cuda_emu_mma_count();
#endif
        test_sgemm();
        test_dense();
        test_conv();
#ifndef CNN_CUDA_EMU
        test_backend_fused();
#else
        /* the tensor cores' instruction runs in version 5 and nowhere before it */
        const size_t mmas = cuda_emu_mma_count() - mma_before;
        char what[96];
        snprintf(what, sizeof what, "GEMM version %d: %zu warp-wide mma instructions", v, mmas);
        check_count++;
        if ((v >= 5) != (mmas > 0)) check_failures++;
        printf("%s %s\n", (v >= 5) == (mmas > 0) ? "PASS" : "FAIL", what);
#endif
    }
    /* Forced tiles and split-K counts (CNN_GEMM_TILE, CNN_GEMM_SPLITS: what the benchmark's
     * tile sweep sets): the 128x128 tile (8x8 per thread, split B columns) that no default
     * picks yet, with the automatic and a forced split count, and a tall tile on wide outputs. */
    static const char *forced[][3] = {{"128x128", "", "3"}, {"128x128", "5", "4"},
                                      {"256x32", "2", "4"}, {"64x32", "3", "4"},
                                      {"256x64", "", "4"}};
    for (size_t f = 0; f < sizeof forced / sizeof forced[0]; f++) {
        setenv("CNN_GEMM_TILE", forced[f][0], 1);
        setenv("CNN_GEMM_SPLITS", forced[f][1], 1);
        setenv("CNN_GEMM_V", forced[f][2], 1);
        printf("---- forced GEMM tile %s, splits %s, version %s\n", forced[f][0],
               *forced[f][1] ? forced[f][1] : "auto", forced[f][2]);
        test_sgemm();
        test_dense();
        test_conv();
    }
    unsetenv("CNN_GEMM_TILE");
    unsetenv("CNN_GEMM_SPLITS");
    /* The narrow dense layers through the GEMM (CNN_DENSE_V=1, the step of GPU runs 1-3). */
    setenv("CNN_GEMM_V", "4", 1);
    setenv("CNN_DENSE_V", "1", 1);
    printf("---- narrow dense layers through the GEMM (CNN_DENSE_V=1)\n");
    test_dense();
    /* The narrow kernels at every row count (CNN_DENSE_V=2; by default they stop at 192 rows,
     * kernels/dense.cu): test_dense's 1001-row case takes them */
    setenv("CNN_DENSE_V", "2", 1);
    printf("---- narrow dense layers at every batch (CNN_DENSE_V=2)\n");
    test_dense();
    unsetenv("CNN_DENSE_V");
    env_restore("CNN_GEMM_V", gemm_keep);
    test_gemm_v4_bits();
    printf("---- the rest\n");
    /* Max-pool versions (CNN_POOL_V, kernels/maxpool.cu): 1 = 64-bit indices (the first GPU
     * run), 2 = 32-bit forward, 3 = 32-bit forward and backward, 4 = the forward 4 channels per
     * thread where C % 4 == 0 (the default); all bitwise against the CPU. */
    char *pool_keep = env_keep("CNN_POOL_V");
    for (int v = 1; v <= 4; v++) {
        char pv[4] = {(char)('0' + v), 0};
        setenv("CNN_POOL_V", pv, 1);
        printf("---- max-pool version %d (CNN_POOL_V=%d)\n", v, v);
        test_pool();
    }
    env_restore("CNN_POOL_V", pool_keep);
    test_conv_pool();
    test_conv_pool_v2();
    test_conv_pool_data();
    test_dense_dx_alive();
    test_dense_sparse_input();
    test_relu();
    test_dropout();
    test_dropout_dense();
    test_softmax();
    test_optimizers();
    test_adam_versions();
    test_gather();
    test_small_entries();
#ifndef CNN_CUDA_EMU
    cublasDestroy(blas);
    cudnnDestroy(dnn);
#endif
    return check_summary("test_kernels");
}
