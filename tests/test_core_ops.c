/* test_core_ops.c: every op's backward through the tape against central finite differences,
 * plus the tape's gradient accumulation (a tensor with several consumers) and views.
 *
 * Method: inputs on a grid (distinct values 0.01 apart, none within 0.005 of zero), so a step of
 * h = 2e-3 never crosses a ReLU kink or changes a max-pool winner: the ops are then exactly
 * linear or smooth over [x-h, x+h]. The scalar checked is L = sum(r * y) for a fixed random r
 * (or the loss itself for softmax_xent), accumulated in double on the host.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/ops.h"
#include "core/tape.h"
#include "kernels/philox.h"
#include "support/check_run.h"
#include "support/conv_pool_cpu.h"
#include "support/dropout_dense_cpu.h"
#include "support/gradcheck.h"

typedef struct {
    Backend *be;
    Tape t;
    Tensor *inputs[4];
    int n_inputs;
    float *host_in[4];
    Tensor *out;
    float *r;      /* upstream gradient, NULL when out is a loss that seeds itself */
    int is_loss;
    int ops_end;
} Check;

static uint64_t rng_state = 12345;
static double urand(void) { /* deterministic uniform [0,1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* Distinct grid values, none zero: a random permutation of (k - floor(count/2) + 0.5) * spacing. */
static void fill_grid(float *x, size_t count, double spacing) {
    for (size_t i = 0; i < count; i++) x[i] = (float)(((double)i - (double)(count / 2) + 0.5) * spacing);
    for (size_t i = count - 1; i > 0; i--) {
        size_t j = (size_t)(urand() * (double)(i + 1));
        float tmp = x[i];
        x[i] = x[j];
        x[j] = tmp;
    }
}

static Tensor *input(Check *c, int rank, const int *shape, int batched, double spacing) {
    Tensor *x = tape_tensor(&c->t, DT_F32, rank, shape, batched);
    x->requires_grad = 1;
    c->host_in[c->n_inputs] = malloc(x->count * sizeof(float));
    fill_grid(c->host_in[c->n_inputs], x->count, spacing);
    c->inputs[c->n_inputs++] = x;
    return x;
}

static void check_begin(Check *c, int batch) {
    memset(c, 0, sizeof *c);
    c->be = backend_cpu_create();
    tape_init(&c->t, c->be, batch, 7);
}

static void check_end(Check *c) {
    for (int i = 0; i < c->n_inputs; i++) free(c->host_in[i]);
    free(c->r);
    tape_free(&c->t);
    c->be->destroy(c->be);
}

static void commit(Check *c, Tensor *out, int is_loss) {
    char err[256] = "";
    ck_assert_ptr_nonnull(out);
    c->out = out;
    c->is_loss = is_loss;
    c->ops_end = c->t.n_ops;
    ck_assert_msg(tape_commit(&c->t, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < c->n_inputs; i++)
        c->be->upload(c->be, c->inputs[i]->data, c->host_in[i],
                      c->inputs[i]->count * sizeof(float));
    if (!is_loss) {
        c->r = malloc(out->count * sizeof(float));
        for (size_t i = 0; i < out->count; i++) c->r[i] = (float)(2.0 * urand() - 1.0);
    }
}

static double objective(void *ctx) {
    Check *c = ctx;
    tape_forward(&c->t, 0, c->ops_end);
    size_t n = tensor_count_at(c->out, c->t.n);
    const float *y = c->out->data; /* CPU backend: host memory */
    if (c->is_loss) return y[0];
    return gradcheck_dot(c->r, y, n);
}

/* Compares the tape's gradient of every input with finite differences (tests/support/gradcheck)
 * at up to `samples` elements per input: relative error under rtol, with a floor of 5% of the
 * largest gradient of that input so tiny entries are not judged on rounding noise. */
static void check_grads(Check *c, double h, double rtol, int samples) {
    objective(c);
    if (!c->is_loss)
        c->be->upload(c->be, c->out->grad, c->r, tensor_count_at(c->out, c->t.n) * sizeof(float));
    tape_backward(&c->t, NULL, NULL);
    for (int k = 0; k < c->n_inputs; k++) {
        Tensor *x = c->inputs[k];
        size_t n = tensor_count_at(x, c->t.n);
        float *g = malloc(n * sizeof(float));
        c->be->download(c->be, g, x->grad, n * sizeof(float));
        double gmax = 0.0;
        for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
        GradcheckResult r = gradcheck(objective, c, x->data, n, g, (float)h, 0.05 * gmax + 1e-5,
                                      (size_t)samples);
        ck_assert_msg(r.max_err <= rtol,
                      "input %d element %zu: tape %.7g, finite difference %.7g (rel err %.2g)", k,
                      r.worst, r.worst_ana, r.worst_num, r.max_err);
        ck_assert_uint_gt(r.checked, 0);
        free(g);
    }
}

START_TEST(test_conv2d_same_and_valid) {
    static const struct { int n, h, w, c, k, kh, stride, same; } cases[] = {
        {2, 7, 6, 3, 4, 3, 1, 1}, {2, 7, 6, 3, 4, 3, 1, 0}, {1, 9, 8, 2, 3, 5, 2, 1},
        {3, 8, 9, 2, 2, 4, 2, 0}, {2, 5, 5, 1, 3, 5, 1, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        Check c;
        check_begin(&c, cases[ci].n);
        int xs[4] = {cases[ci].n, cases[ci].h, cases[ci].w, cases[ci].c};
        int ws[4] = {cases[ci].kh, cases[ci].kh, cases[ci].c, cases[ci].k};
        Tensor *x = input(&c, 4, xs, 1, 0.01);
        Tensor *w = input(&c, 4, ws, 0, 0.01);
        Tensor *b = input(&c, 1, &cases[ci].k, 0, 0.01);
        commit(&c, op_conv2d(&c.t, x, w, b, cases[ci].stride, cases[ci].same, 0), 0);
        check_grads(&c, 0.05, 1e-3, test_quick() ? 12 : 40);
        check_end(&c);
    }
}
END_TEST

START_TEST(test_maxpool) {
    static const struct { int n, h, w, c, k, stride, same; } cases[] = {
        {2, 6, 6, 3, 2, 2, 0}, {2, 7, 5, 2, 2, 2, 1}, {1, 7, 7, 2, 3, 2, 0}, {2, 5, 6, 1, 3, 1, 1}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        Check c;
        check_begin(&c, cases[ci].n);
        int xs[4] = {cases[ci].n, cases[ci].h, cases[ci].w, cases[ci].c};
        Tensor *x = input(&c, 4, xs, 1, 0.01);
        commit(&c, op_maxpool2d(&c.t, x, cases[ci].k, cases[ci].k, cases[ci].stride,
                                cases[ci].same), 0);
        check_grads(&c, 2e-3, 1e-3, test_quick() ? 20 : 80);
        check_end(&c);
    }
}
END_TEST

START_TEST(test_dense) {
    Check c;
    check_begin(&c, 5);
    int xs[2] = {5, 13}, ws[2] = {13, 7}, bs = 7;
    Tensor *x = input(&c, 2, xs, 1, 0.01);
    Tensor *w = input(&c, 2, ws, 0, 0.01);
    Tensor *b = input(&c, 1, &bs, 0, 0.01);
    commit(&c, op_dense(&c.t, x, w, b, 0), 0);
    check_grads(&c, 0.05, 1e-3, test_quick() ? 20 : 100);
    check_end(&c);
}
END_TEST

START_TEST(test_relu) {
    Check c;
    check_begin(&c, 3);
    int xs[4] = {3, 4, 5, 2};
    Tensor *x = input(&c, 4, xs, 1, 0.01);
    commit(&c, op_relu(&c.t, x), 0);
    check_grads(&c, 2e-3, 1e-3, 120);
    check_end(&c);
}
END_TEST

START_TEST(test_dropout) {
    Check c;
    check_begin(&c, 4);
    int xs[2] = {4, 50};
    Tensor *x = input(&c, 2, xs, 1, 0.01);
    commit(&c, op_dropout(&c.t, x, 0.4f), 0);
    int64_t step = 3;
    c.be->upload(c.be, c.t.step, &step, sizeof step);
    check_grads(&c, 2e-3, 1e-3, 200);
    /* The mask is Philox(seed, PHILOX_STREAM_DROPOUT + step*16 + 0, i): kept <=> u >= rate. */
    const float *y = c.out->data, *xv = x->data;
    int kept = 0;
    for (int i = 0; i < 200; i++) {
        int keep = philox_uniform(7, PHILOX_STREAM_DROPOUT + 3 * 16, (uint64_t)i) >= 0.4f;
        kept += keep;
        ck_assert_msg(keep ? fabsf(y[i] - xv[i] / 0.6f) <= 1e-6f * fabsf(xv[i]) : y[i] == 0.0f,
                      "dropout element %d: x %g y %g keep %d", i, (double)xv[i], (double)y[i],
                      keep);
    }
    ck_assert_int_gt(kept, 90);
    ck_assert_int_lt(kept, 150);
    /* Inference: identity. */
    c.t.training = 0;
    tape_forward(&c.t, 0, c.ops_end);
    for (int i = 0; i < 200; i++) ck_assert(y[i] == xv[i]);
    check_end(&c);
}
END_TEST

START_TEST(test_flatten_view) {
    Check c;
    check_begin(&c, 2);
    int xs[4] = {2, 3, 4, 5}, ws[2] = {60, 3};
    Tensor *x = input(&c, 4, xs, 1, 0.01);
    Tensor *w = input(&c, 2, ws, 0, 0.01);
    Tensor *f = op_flatten(&c.t, x);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->shape[1], 60);
    commit(&c, op_dense(&c.t, f, w, NULL, 0), 0);
    ck_assert_ptr_eq(f->data, x->data); /* [h][w][c] order: the same memory */
    check_grads(&c, 0.05, 1e-3, 60);
    check_end(&c);
}
END_TEST

START_TEST(test_softmax) {
    Check c;
    check_begin(&c, 4);
    int xs[2] = {4, 10};
    Tensor *x = input(&c, 2, xs, 1, 0.05);
    commit(&c, op_softmax(&c.t, x), 0);
    check_grads(&c, 1e-2, 2e-3, 40);
    check_end(&c);
}
END_TEST

START_TEST(test_softmax_xent_and_accuracy) {
    Check c;
    check_begin(&c, 6);
    int xs[2] = {6, 10}, n = 6;
    Tensor *x = input(&c, 2, xs, 1, 0.05);
    Tensor *labels = tape_tensor(&c.t, DT_I32, 1, &n, 1);
    Tensor *loss = op_softmax_xent(&c.t, x, labels);
    tape_set_grad_enabled(&c.t, 0);
    Tensor *correct = op_accuracy(&c.t, x, labels);
    tape_set_grad_enabled(&c.t, 1);
    commit(&c, loss, 1);
    c.ops_end = 1; /* the loss op only */
    int32_t lab[6] = {0, 3, 9, 5, 5, 1};
    c.be->upload(c.be, labels->data, lab, sizeof lab);
    check_grads(&c, 1e-2, 2e-3, 60);
    /* The loss against a double reference, and the accuracy head. */
    double ref = 0.0;
    int ref_correct = 0;
    const float *lg = x->data;
    for (int i = 0; i < 6; i++) {
        double mx = -1e30, s = 0.0;
        int am = 0;
        for (int j = 0; j < 10; j++)
            if (lg[i * 10 + j] > mx) mx = lg[i * 10 + j], am = j;
        for (int j = 0; j < 10; j++) s += exp(lg[i * 10 + j] - mx);
        ref += (log(s) + mx - lg[i * 10 + lab[i]]) / 6.0;
        ref_correct += am == lab[i];
    }
    tape_forward(&c.t, 0, 2);
    ck_assert_double_eq_tol(*(float *)loss->data, ref, 1e-5 * fabs(ref) + 1e-6);
    ck_assert_int_eq(*(int32_t *)correct->data, ref_correct);
    ck_assert_int_eq(correct->requires_grad, 0);
    check_end(&c);
}
END_TEST

START_TEST(test_mean) {
    Check c;
    check_begin(&c, 3);
    int xs[2] = {3, 7};
    Tensor *x = input(&c, 2, xs, 1, 0.01);
    commit(&c, op_mean(&c.t, x), 0);
    check_grads(&c, 0.05, 1e-3, 21);
    check_end(&c);
}
END_TEST

/* Shared weights: w and b are read by two dense ops, so their gradients are the sum of both
 * paths (the second writes scratch and adds, one scratch per input slot). Run at a runtime
 * batch smaller than the tape's. */
START_TEST(test_shared_weights_small_batch) {
    Check c;
    check_begin(&c, 4);
    int xs[2] = {4, 6}, ws[2] = {6, 6}, bs = 6;
    Tensor *x = input(&c, 2, xs, 1, 0.01);
    Tensor *w = input(&c, 2, ws, 0, 0.05);
    Tensor *b = input(&c, 1, &bs, 0, 0.01);
    Tensor *y1 = op_dense(&c.t, x, w, b, 0);
    Tensor *r = op_dropout(&c.t, y1, 0.3f); /* linear for a fixed mask: no kinks */
    commit(&c, op_dense(&c.t, r, w, b, 0), 0);
    ck_assert_int_eq(c.t.ops[2].accumulate[1] + c.t.ops[2].accumulate[2], 0);
    ck_assert_int_eq(c.t.ops[0].accumulate[1], 1);
    ck_assert_int_eq(c.t.ops[0].accumulate[2], 1);
    c.t.n = 3;
    check_grads(&c, 2e-3, 2e-3, 40);
    check_end(&c);
}
END_TEST

/* One tensor feeding both inputs of an op through different paths: y = dense(relu(P), P). */
START_TEST(test_tensor_two_paths) {
    Check c;
    check_begin(&c, 5);
    int ps[2] = {5, 5};
    Tensor *p = input(&c, 2, ps, 0, 0.05);
    commit(&c, op_dense(&c.t, op_relu(&c.t, p), p, NULL, 0), 0);
    check_grads(&c, 2e-3, 2e-3, 25);
    check_end(&c);
}
END_TEST

/* ReLU fusion: conv/dense with their ReLU fused, the ReLU backward folded into max-pool and
 * dropout, the loss gradient computed in the forward pass: the same bits as the unfused ops,
 * with the backend's fused entries and without them. */
typedef struct {
    Backend *be;
    Tape t;
    Tensor *in[7];
    Tensor *loss;
} FusionNet;

static void fusion_net(FusionNet *f, int fused, int backend_fused_entries) {
    char err[256];
    f->be = backend_cpu_create();
    if (!backend_fused_entries) {
        f->be->conv2d_relu_forward = NULL;
        f->be->dense_relu_forward = NULL;
        f->be->maxpool2d_relu_backward = NULL;
        f->be->dropout_relu_backward = NULL;
        f->be->softmax_xent_fused = NULL;
    }
    Tape *t = &f->t;
    tape_init(t, f->be, 3, 9);
    int xs[4] = {3, 8, 8, 2}, ws[4] = {3, 3, 2, 4}, bs = 4, w2[2] = {64, 12}, b2 = 12,
        w3[2] = {12, 10}, b3 = 10, n = 3;
    const int *shapes[7] = {xs, ws, &bs, w2, &b2, w3, &b3};
    int ranks[7] = {4, 4, 1, 2, 1, 2, 1};
    for (int i = 0; i < 7; i++) {
        f->in[i] = tape_tensor(t, DT_F32, ranks[i], shapes[i], i == 0);
        f->in[i]->requires_grad = 1;
    }
    Tensor *labels = tape_tensor(t, DT_I32, 1, &n, 1);
    Tensor *h = op_conv2d(t, f->in[0], f->in[1], f->in[2], 1, 1, fused);
    if (!fused) h = op_relu(t, h);
    h = op_flatten(t, op_maxpool2d(t, h, 2, 2, 2, 0));
    h = op_dense(t, h, f->in[3], f->in[4], fused);
    if (!fused) h = op_relu(t, h);
    h = op_dense(t, op_dropout(t, h, 0.25f), f->in[5], f->in[6], 0);
    f->loss = op_softmax_xent(t, h, labels);
    ck_assert_ptr_nonnull(f->loss);
    ck_assert_int_eq(tape_commit(t, err, sizeof err), 0);
    /* Consumers fold the ReLU backward exactly when fused ops meet fused backend entries. */
    int folded = fused && backend_fused_entries;
    ck_assert_int_eq(t->ops[fused ? 1 : 2].mask_input_relu, folded); /* max-pool */
    ck_assert_int_eq(t->ops[0].relu_grad_masked, folded);
    for (int i = 0; i < 7; i++) {
        float *v = malloc(f->in[i]->count * sizeof(float));
        test_fill_uniform(v, f->in[i]->count, -1.0f, 1.0f, 5, (uint64_t)i);
        f->be->upload(f->be, f->in[i]->data, v, f->in[i]->count * sizeof(float));
        free(v);
    }
    int32_t lab[3] = {4, 0, 7};
    f->be->upload(f->be, labels->data, lab, sizeof lab);
    tape_forward(t, 0, t->n_ops);
    tape_backward(t, NULL, NULL);
}

START_TEST(test_relu_fusion_same_bits) {
    FusionNet ref, f;
    fusion_net(&ref, 0, 1);
    for (int variant = 0; variant < 2; variant++) {
        fusion_net(&f, 1, variant);
        ck_assert_int_eq(memcmp(ref.loss->data, f.loss->data, sizeof(float)), 0);
        for (int i = 0; i < 7; i++)
            ck_assert_msg(memcmp(ref.in[i]->grad, f.in[i]->grad,
                                 ref.in[i]->count * sizeof(float)) == 0,
                          "fused (backend entries %d): gradient of input %d differs", variant, i);
        tape_free(&f.t);
        f.be->destroy(f.be);
    }
    tape_free(&ref.t);
    ref.be->destroy(ref.be);
}
END_TEST

/* conv + ReLU + max pool on the backend's conv2d_relu_maxpool entries, against the plain ops,
 * through a small network and its loss at a batch below the tape's: the same loss and
 * gradients (the filter gradient from the pool's winners sums in another order: 1e-5). The CPU
 * backend has no such entries (its im2col GEMM path stays); here they are the kernels/ CPU
 * twins (support/conv_pool_cpu.h). Modes: 0 plain backend, x without a gradient; 1 the same
 * with the entries: the fused first-layer op (op_conv2d_relu_maxpool); 2 plain backend, x with
 * a gradient (a middle layer); 3 the same with the entries: conv2d and maxpool2d ops, the conv's
 * filter gradient from the pool's winners (op->pool_after), its data gradient as before; 4 the
 * same with maxpool2d_relu_backward_from_y too: the fused op on a middle layer, its data
 * gradient through the conv output's gradient made from the pool's y and argmax; 5 x without a
 * gradient, the entries without the fused forward (CUDA's CNN_CUDA_CONV_POOL_FWD=0): conv2d and
 * maxpool2d ops, the filter gradient from the pool's winners, the pool's backward skipped; 6
 * mode 3 with the data gradient from the pool's winners too (CUDA's CNN_CUDA_DATA_FROM_POOL=1),
 * the pool's backward skipped; 7 mode 4 with it: the fused op's data gradient from the winners,
 * no conv output gradient made; 8 mode 6 with the dense layer's data gradient only where its
 * input, the pooled ReLU output, is > 0 (CUDA's CNN_CUDA_DENSE_DX_ALIVE=1); 9 mode 2 with mode
 * 8's wider dense layer (its reference). */
typedef struct {
    Backend *be;
    Tape t;
    Tensor *x, *in[4];
    Tensor *loss;
} PoolNet;

static void pool_net(PoolNet *f, int mode) {
    char err[256];
    f->be = test_without_pool_entries(backend_cpu_create());
    Tape *t = &f->t;
    tape_init(t, f->be, 4, 9);
    /* the dense layer: 10 outputs, 128 where mode 8's entry needs a multiple of 128 */
    const int outs = mode >= 8 ? 128 : 10;
    int xs[4] = {4, 9, 8, 1}, ws[4] = {3, 3, 1, 5}, bs = 5, w2[2] = {100, outs}, b2 = outs, n = 4;
    Tensor *x = f->x = tape_tensor(t, DT_F32, 4, xs, 1);
    x->requires_grad = mode >= 2 && mode != 5;
    if (mode == 9) mode = 2; /* from here on, mode 2 */
    const int fused_op = mode == 1 || mode == 4 || mode == 7;
    const int from_pool = mode == 6 || mode == 7 || mode == 8;
    const int *shapes[4] = {ws, &bs, w2, &b2};
    int ranks[4] = {4, 1, 2, 1};
    for (int i = 0; i < 4; i++) {
        f->in[i] = tape_tensor(t, DT_F32, ranks[i], shapes[i], 0);
        f->in[i]->requires_grad = 1;
    }
    Tensor *labels = tape_tensor(t, DT_I32, 1, &n, 1);
    /* Without the backend entries, or on an input that takes a gradient: refused. */
    ck_assert_ptr_null(op_conv2d_relu_maxpool(t, x, f->in[0], f->in[1], 1, 1, 2, 2, 1));
    if (mode == 1 || mode >= 3) test_add_conv_pool_entries(f->be);
    if (mode == 4 || mode == 7) test_add_conv_pool_middle_entry(f->be);
    if (from_pool) test_add_conv_pool_data_entry(f->be);
    if (mode == 8) test_add_dense_dx_alive_entry(f->be);
    if (mode == 5) f->be->conv2d_relu_maxpool_forward = NULL;
    Tensor *h = op_conv2d_relu_maxpool(t, x, f->in[0], f->in[1], 1, 1, 2, 2, 1);
    ck_assert(fused_op ? h != NULL : h == NULL);
    if (!h) h = op_maxpool2d(t, op_conv2d(t, x, f->in[0], f->in[1], 1, 1, 1), 2, 2, 2, 1);
    ck_assert_int_eq(h->shape[1] * h->shape[2] * h->shape[3], 100);
    f->loss = op_softmax_xent(t, op_dense(t, op_flatten(t, h), f->in[2], f->in[3], 0), labels);
    ck_assert_ptr_nonnull(f->loss);
    ck_assert_int_eq(tape_commit(t, err, sizeof err), 0);
    /* The filter gradient comes from the pool in the two-op modes 3, 5 and 6; in 5 (x without a
     * gradient) and 6 (x's gradient from the winners) nothing reads the conv output's gradient,
     * so the pool's backward is skipped. */
    ck_assert(mode == 3 || mode == 5 || mode == 6 || mode == 8
                  ? t->ops[0].pool_after == &t->ops[1]
                  : t->ops[0].pool_after == NULL);
    ck_assert_int_eq(t->ops[0].data_from_pool, from_pool);
    if (!fused_op) ck_assert_int_eq(t->ops[1].skip_backward, mode == 5 || mode == 6 || mode == 8);
    const TapeOp *dense = &t->ops[fused_op ? 1 : 2];
    ck_assert_str_eq(dense->def->name, "dense");
    ck_assert_int_eq(dense->dx_alive, mode == 8);
    if (mode == 7) ck_assert_ptr_null(t->ops[0].saved[1]); /* no conv output gradient */
    float *v;
    /* poisoned: a backward that reads the skipped gradient reads NaN */
    if (mode == 5 || mode == 6 || mode == 8) {
        v = malloc(t->ops[0].out->count * sizeof(float));
        for (size_t i = 0; i < t->ops[0].out->count; i++) v[i] = NAN;
        f->be->upload(f->be, t->ops[0].out->grad, v, t->ops[0].out->count * sizeof(float));
        free(v);
    }
    v = malloc(x->count * sizeof(float));
    test_fill_uniform(v, x->count, -1.0f, 1.0f, 5, 99);
    for (size_t i = 0; i < x->count; i += 3) v[i] = 0.0f; /* blank pixels: ties */
    f->be->upload(f->be, x->data, v, x->count * sizeof(float));
    free(v);
    for (int i = 0; i < 4; i++) {
        v = malloc(f->in[i]->count * sizeof(float));
        test_fill_uniform(v, f->in[i]->count, -0.5f, 0.5f, 5, (uint64_t)i);
        f->be->upload(f->be, f->in[i]->data, v, f->in[i]->count * sizeof(float));
        free(v);
    }
    int32_t lab[4] = {4, 0, 7, 9};
    f->be->upload(f->be, labels->data, lab, sizeof lab);
    t->n = 3; /* a smaller last batch */
    tape_forward(t, 0, t->n_ops);
    tape_backward(t, NULL, NULL);
}

static void pool_nets_agree(int ref_mode, int mode) {
    PoolNet ref, f;
    pool_net(&ref, ref_mode);
    pool_net(&f, mode);
    ck_assert_int_eq(f.t.n_ops, ref.t.n_ops - (mode == 1 || mode == 4 || mode == 7));
    ck_assert(test_max_scaled_diff(f.loss->data, ref.loss->data, 1, 1e-7, 1e-6, NULL) <= 1);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(test_max_scaled_diff(f.in[i]->grad, ref.in[i]->grad, ref.in[i]->count,
                                           1e-6, 1e-5, NULL) <= 1,
                      "mode %d: gradient of parameter %d differs", mode, i);
    if (mode == 3) /* the data gradient: the same GEMM on the same masked dy, the same bits */
        ck_assert_int_eq(memcmp(f.x->grad, ref.x->grad, 3 * 9 * 8 * sizeof(float)), 0);
    /* mode 4: the same, but the fused forward's conv sums in tap order; 6 and 7: the winners'
     * terms in pooled order: rounding */
    if (mode == 4 || mode >= 6)
        ck_assert(test_max_scaled_diff(f.x->grad, ref.x->grad, 3 * 9 * 8, 1e-6, 1e-5, NULL) <= 1);
    tape_free(&f.t);
    f.be->destroy(f.be);
    tape_free(&ref.t);
    ref.be->destroy(ref.be);
}

START_TEST(test_conv_relu_maxpool_fused_op) { pool_nets_agree(0, 1); }
END_TEST

START_TEST(test_conv_filter_grad_from_pool) { pool_nets_agree(2, 3); }
END_TEST

START_TEST(test_conv_relu_maxpool_fused_middle_layer) { pool_nets_agree(2, 4); }
END_TEST

START_TEST(test_conv_filter_grad_from_pool_first_layer) { pool_nets_agree(0, 5); }
END_TEST

START_TEST(test_conv_data_grad_from_pool) { pool_nets_agree(2, 6); }
END_TEST

START_TEST(test_conv_relu_maxpool_fused_middle_layer_from_pool) { pool_nets_agree(2, 7); }
END_TEST

/* The dense layer's data gradient where its input is alive, against mode 2 with its dense layer
 * as wide (128 outputs): pool_nets_agree compares like with like */
START_TEST(test_dense_dx_alive_after_pool) {
    PoolNet ref, f;
    pool_net(&ref, 9);
    pool_net(&f, 8);
    ck_assert(test_max_scaled_diff(f.x->grad, ref.x->grad, 3 * 9 * 8, 1e-6, 1e-5, NULL) <= 1);
    for (int i = 0; i < 2; i++)
        ck_assert(test_max_scaled_diff(f.in[i]->grad, ref.in[i]->grad, ref.in[i]->count, 1e-6,
                                       1e-5, NULL) <= 1);
    tape_free(&f.t);
    f.be->destroy(f.be);
    tape_free(&ref.t);
    ref.be->destroy(ref.be);
}
END_TEST

/* Finite differences through a ReLU, a max pool and a dense layer whose data gradient comes
 * from dense_backward_data_alive; and the plan's rule: a pool over anything but a ReLU's output
 * keeps the full gradient. */
START_TEST(test_dense_dx_alive) {
    Check c;
    check_begin(&c, 2);
    test_add_dense_dx_alive_entry(c.be);
    int xs[4] = {2, 4, 6, 3}, ws[2] = {18, 128};
    Tensor *x = input(&c, 4, xs, 1, 0.01);
    Tensor *w = input(&c, 2, ws, 0, 0.001);
    Tensor *h = op_flatten(&c.t, op_maxpool2d(&c.t, op_relu(&c.t, x), 2, 2, 2, 0));
    commit(&c, op_dense(&c.t, h, w, NULL, 0), 0);
    ck_assert_int_eq(c.t.ops[2].dx_alive, 1);
    ck_assert_int_eq(c.t.ops[2].sparse_input, 0); /* the CPU backend has no such entries */
    check_grads(&c, 2e-3, 1e-3, test_quick() ? 20 : 60);
    check_end(&c);

    /* with the forward and filter gradient over the input's nonzeros too (and a bias and the
     * layer's ReLU, which those entries take) */
    check_begin(&c, 2);
    test_add_dense_sparse_input_entries(test_add_dense_dx_alive_entry(c.be));
    x = input(&c, 4, xs, 1, 0.01);
    w = input(&c, 2, ws, 0, 0.001);
    int bn = 128;
    Tensor *bias = input(&c, 1, &bn, 0, 0.01);
    h = op_flatten(&c.t, op_maxpool2d(&c.t, op_relu(&c.t, x), 2, 2, 2, 0));
    commit(&c, op_dense(&c.t, h, w, bias, 1), 0);
    ck_assert_int_eq(c.t.ops[2].dx_alive, 1);
    ck_assert_int_eq(c.t.ops[2].sparse_input, 1);
    check_grads(&c, 2e-3, 1e-3, test_quick() ? 20 : 60);
    check_end(&c);

    check_begin(&c, 2);
    test_add_dense_dx_alive_entry(c.be);
    x = input(&c, 4, xs, 1, 0.01);
    int ks[4] = {1, 1, 3, 3};
    Tensor *k = input(&c, 4, ks, 0, 0.05);
    w = input(&c, 2, ws, 0, 0.001);
    /* a conv without its ReLU: the pool's outputs are negative too, and take gradients */
    h = op_flatten(&c.t, op_maxpool2d(&c.t, op_conv2d(&c.t, x, k, NULL, 1, 1, 0), 2, 2, 2, 0));
    commit(&c, op_dense(&c.t, h, w, NULL, 0), 0);
    ck_assert_int_eq(c.t.ops[2].dx_alive, 0);
    ck_assert_int_eq(c.t.ops[2].sparse_input, 0);
    check_grads(&c, 2e-3, 1e-3, test_quick() ? 20 : 60);
    check_end(&c);
}
END_TEST

/* Dropout and the dense layer after it as one op (op_dropout_dense, on the kernels/ CPU twin:
 * support/dropout_dense_cpu.h). Finite differences through a ReLU'd dense layer into the fused
 * op with a ReLU of its own, so that every path runs: the mask drawn as op_dropout's, the
 * ReLU's mask of x applied by the fused backward (mask_input_relu), the op's own ReLU. */
START_TEST(test_dropout_dense) {
    Check c;
    check_begin(&c, 4);
    test_add_dropout_dense_entries(c.be);
    int xs[2] = {4, 13}, w1s[2] = {13, 37}, w2s[2] = {37, 6}, bs = 6;
    Tensor *x = input(&c, 2, xs, 1, 0.01);
    Tensor *w1 = input(&c, 2, w1s, 0, 0.002);
    Tensor *w2 = input(&c, 2, w2s, 0, 0.01);
    Tensor *b2 = input(&c, 1, &bs, 0, 0.01);
    Tensor *h = op_dense(&c.t, x, w1, NULL, 1);
    ck_assert(op_dropout_dense_fits(&c.t, h, 6));
    commit(&c, op_dropout_dense(&c.t, h, 0.4f, w2, b2, 1), 0);
    ck_assert_int_eq(c.t.n_ops, 2);
    ck_assert(c.t.ops[1].mask_input_relu && c.t.ops[0].relu_grad_masked);
    int64_t step = 3;
    c.be->upload(c.be, c.t.step, &step, sizeof step);
    check_grads(&c, 1e-3, 2e-3, 200);
    /* The mask is op_dropout's: Philox(seed, PHILOX_STREAM_DROPOUT + step*16 + 0, i). */
    const uint8_t *mask = c.t.ops[1].saved[0]->data;
    int kept = 0;
    for (int i = 0; i < 4 * 37; i++) {
        int keep = philox_uniform(7, PHILOX_STREAM_DROPOUT + 3 * 16, (uint64_t)i) >= 0.4f;
        ck_assert_int_eq(mask[i], keep);
        kept += keep;
    }
    ck_assert_int_gt(kept, 60);
    ck_assert_int_lt(kept, 120);
    /* Without the entries, or with the tape's 16 dropout streams taken: not fused. */
    Check plain;
    check_begin(&plain, 4);
    Tensor *px = input(&plain, 2, xs, 1, 0.01);
    ck_assert(!op_dropout_dense_fits(&plain.t, px, 6));
    test_add_dropout_dense_entries(plain.be);
    plain.t.n_dropout = 16;
    ck_assert(!op_dropout_dense_fits(&plain.t, px, 6));
    check_end(&plain);
    check_end(&c);
}
END_TEST

/* The fused op against op_dropout + op_dense in a small network and its loss, at a batch below
 * the tape's, training and inference: the same masks, the loss and every gradient to 1e-5 (the
 * twin's dense layer sums in another order than the CPU's sgemm). */
typedef struct {
    Backend *be;
    Tape t;
    Tensor *x, *in[4], *loss, *logits;
} DropNet;

static void drop_net(DropNet *f, int fused, int training) {
    char err[256];
    f->be = backend_cpu_create();
    if (fused) test_add_dropout_dense_entries(f->be);
    Tape *t = &f->t;
    tape_init(t, f->be, 5, 11);
    int xs[2] = {5, 30}, w1[2] = {30, 41}, b1 = 41, w2[2] = {41, 10}, b2 = 10, n = 5;
    Tensor *x = f->x = tape_tensor(t, DT_F32, 2, xs, 1);
    x->requires_grad = 1;
    const int *shapes[4] = {w1, &b1, w2, &b2};
    int ranks[4] = {2, 1, 2, 1};
    for (int i = 0; i < 4; i++) {
        f->in[i] = tape_tensor(t, DT_F32, ranks[i], shapes[i], 0);
        f->in[i]->requires_grad = 1;
    }
    Tensor *labels = tape_tensor(t, DT_I32, 1, &n, 1);
    Tensor *h = op_dense(t, x, f->in[0], f->in[1], 1);
    f->logits = fused ? op_dropout_dense(t, h, 0.4f, f->in[2], f->in[3], 0)
                      : op_dense(t, op_dropout(t, h, 0.4f), f->in[2], f->in[3], 0);
    f->loss = op_softmax_xent(t, f->logits, labels);
    ck_assert_ptr_nonnull(f->loss);
    ck_assert_int_eq(t->n_ops, fused ? 3 : 4);
    ck_assert_int_eq(tape_commit(t, err, sizeof err), 0);
    t->training = training;
    for (int i = -1; i < 4; i++) {
        Tensor *p = i < 0 ? x : f->in[i];
        float *v = malloc(p->count * sizeof(float));
        test_fill_uniform(v, p->count, -0.5f, 0.5f, 5, (uint64_t)(i + 1));
        f->be->upload(f->be, p->data, v, p->count * sizeof(float));
        free(v);
    }
    int32_t lab[5] = {4, 0, 7, 9, 1};
    f->be->upload(f->be, labels->data, lab, sizeof lab);
    int64_t step = 11;
    f->be->upload(f->be, t->step, &step, sizeof step);
    t->n = 4; /* a smaller last batch */
    tape_forward(t, 0, t->n_ops);
    if (training) tape_backward(t, NULL, NULL);
}

static void drop_nets_agree(int training) {
    DropNet ref, f;
    drop_net(&ref, 0, training);
    drop_net(&f, 1, training);
    ck_assert(test_max_scaled_diff(f.logits->data, ref.logits->data, 4 * 10, 1e-6, 1e-5, NULL) <=
              1);
    if (training) {
        ck_assert_int_eq(memcmp(f.t.ops[1].saved[0]->data, ref.t.ops[1].saved[0]->data, 4 * 41),
                         0);
        ck_assert(test_max_scaled_diff(f.loss->data, ref.loss->data, 1, 1e-7, 1e-6, NULL) <= 1);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(test_max_scaled_diff(f.in[i]->grad, ref.in[i]->grad, ref.in[i]->count,
                                               1e-6, 1e-5, NULL) <= 1,
                          "gradient of parameter %d differs", i);
        ck_assert(test_max_scaled_diff(f.x->grad, ref.x->grad, 4 * 30, 1e-6, 1e-5, NULL) <= 1);
    }
    tape_free(&f.t);
    f.be->destroy(f.be);
    tape_free(&ref.t);
    ref.be->destroy(ref.be);
}

START_TEST(test_dropout_dense_vs_two_ops) {
    drop_nets_agree(1);
    drop_nets_agree(0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("core_ops");
    TCase *tc = tcase_create("gradients");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_conv2d_same_and_valid);
    tcase_add_test(tc, test_maxpool);
    tcase_add_test(tc, test_dense);
    tcase_add_test(tc, test_relu);
    tcase_add_test(tc, test_dropout);
    tcase_add_test(tc, test_flatten_view);
    tcase_add_test(tc, test_softmax);
    tcase_add_test(tc, test_softmax_xent_and_accuracy);
    tcase_add_test(tc, test_mean);
    tcase_add_test(tc, test_shared_weights_small_batch);
    tcase_add_test(tc, test_tensor_two_paths);
    tcase_add_test(tc, test_relu_fusion_same_bits);
    tcase_add_test(tc, test_conv_relu_maxpool_fused_op);
    tcase_add_test(tc, test_conv_filter_grad_from_pool);
    tcase_add_test(tc, test_conv_relu_maxpool_fused_middle_layer);
    tcase_add_test(tc, test_conv_filter_grad_from_pool_first_layer);
    tcase_add_test(tc, test_conv_data_grad_from_pool);
    tcase_add_test(tc, test_conv_relu_maxpool_fused_middle_layer_from_pool);
    tcase_add_test(tc, test_dense_dx_alive_after_pool);
    tcase_add_test(tc, test_dense_dx_alive);
    tcase_add_test(tc, test_dropout_dense);
    tcase_add_test(tc, test_dropout_dense_vs_two_ops);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
