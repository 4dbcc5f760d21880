/* test_core_capture.c: the graph-capture contract of core/backend.h, checked on the CPU.
 *
 * A CUDA graph records a step's launches once and replays them: any value core passes by value
 * that should change from step to step (the step, a dropout stream, a batch offset, a pointer)
 * would be frozen at capture. This test gives a model a CPU backend that does the same: its
 * run_steps runs the first call of a key eagerly, then records the second call's entries
 * (executing nothing, like cudaStreamBeginCapture) and replays the recording for that step and
 * every later one. Training through it must give the same bits as eager training, across epoch
 * boundaries (the permutation ring is uploaded between windows) and for every optimizer. Host
 * transfers inside a captured step are errors.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/model_backend.h"
#include "kernels/philox.h"
#include "support/check_run.h"
#include "support/gradcheck.h"

typedef enum {
    C_CONV_FWD, C_CONV_RELU_FWD, C_CONV_BWD_DATA, C_CONV_BWD_FILTER, C_POOL_FWD, C_POOL_BWD,
    C_POOL_RELU_BWD, C_DENSE_FWD, C_DENSE_RELU_FWD, C_DENSE_BWD, C_RELU_FWD, C_RELU_BWD,
    C_DROP_FWD, C_DROP_BWD, C_DROP_RELU_BWD, C_XENT_FWD, C_XENT_BWD, C_XENT_FUSED, C_ADAM, C_SGD,
    C_MOMENTUM, C_ADD, C_STEP, C_GATHER, C_COPY, C_ZERO, C_CONV_POOL_FWD, C_POOL_FROM_Y_BWD,
    C_DENSE_ADAM, C_CONV_POOL_BWD_FILTER, C_DENSE_ALIVE
} CallKind;

/* One recorded entry: its kind and every argument, by value (pointers included). */
typedef struct {
    CallKind kind;
    Conv2dShape cs;
    Pool2dShape ps;
    size_t n;
    int i[4];
    float f[4];
    uint64_t u[2];
    const void *p[10];
} Call;

typedef struct {
    Backend inner;     /* the CPU backend's table, to execute */
    Backend *cpu;      /* owner of the inner table */
    int recording;     /* 1: append calls, execute nothing */
    Call *calls;
    int n_calls, cap;
    int captured;      /* a recording exists for key 0 */
    int host_calls_in_capture;
    int replays;
} Replay;

#define RP(be) ((Replay *)(be)->ctx)

static int record(Backend *be, Call c) {
    Replay *r = RP(be);
    if (!r->recording) return 0;
    if (r->n_calls == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->calls = realloc(r->calls, (size_t)r->cap * sizeof(Call));
    }
    r->calls[r->n_calls++] = c;
    return 1;
}

/* Executes a call on the inner CPU backend. */
static void execute(Replay *r, const Call *c) {
    Backend *b = &r->inner;
    float *P[10];
    for (int k = 0; k < 10; k++) P[k] = (float *)c->p[k];
    switch (c->kind) {
    case C_CONV_FWD: b->conv2d_forward(b, &c->cs, P[0], P[1], P[2], P[3], P[4]); break;
    case C_CONV_RELU_FWD: b->conv2d_relu_forward(b, &c->cs, P[0], P[1], P[2], P[3], P[4]); break;
    case C_CONV_BWD_DATA: b->conv2d_backward_data(b, &c->cs, P[0], P[1], P[2], P[3]); break;
    case C_CONV_BWD_FILTER:
        b->conv2d_backward_filter(b, &c->cs, P[0], P[1], P[2], P[3], P[4]);
        break;
    case C_POOL_FWD: b->maxpool2d_forward(b, &c->ps, P[0], P[1], (int32_t *)c->p[2]); break;
    case C_POOL_BWD: b->maxpool2d_backward(b, &c->ps, P[0], c->p[1], P[2]); break;
    case C_POOL_RELU_BWD: b->maxpool2d_relu_backward(b, &c->ps, P[0], c->p[1], P[2], P[3]); break;
    case C_DENSE_FWD: b->dense_forward(b, c->i[0], c->i[1], c->i[2], P[0], P[1], P[2], P[3]); break;
    case C_DENSE_RELU_FWD:
        b->dense_relu_forward(b, c->i[0], c->i[1], c->i[2], P[0], P[1], P[2], P[3]);
        break;
    case C_DENSE_BWD:
        b->dense_backward(b, c->i[0], c->i[1], c->i[2], P[0], P[1], P[2], P[3], P[4], P[5]);
        break;
    case C_RELU_FWD: b->relu_forward(b, c->n, P[0], P[1]); break;
    case C_RELU_BWD: b->relu_backward(b, c->n, P[0], P[1], P[2]); break;
    case C_DROP_FWD:
        b->dropout_forward(b, c->n, c->f[0], c->u[0], c->u[1], c->p[0], P[1], P[2],
                           (uint8_t *)c->p[3]);
        break;
    case C_DROP_BWD: b->dropout_backward(b, c->n, c->f[0], c->p[0], P[1], P[2]); break;
    case C_DROP_RELU_BWD:
        b->dropout_relu_backward(b, c->n, c->f[0], c->p[0], P[1], P[2], P[3]);
        break;
    case C_XENT_FWD: b->softmax_xent_forward(b, c->i[0], c->i[1], P[0], c->p[1], P[2], P[3]); break;
    case C_XENT_BWD:
        b->softmax_xent_backward(b, c->i[0], c->i[1], P[0], c->p[1], c->f[0], P[2]);
        break;
    case C_XENT_FUSED:
        b->softmax_xent_fused(b, c->i[0], c->i[1], P[0], c->p[1], P[2], P[3], P[4]);
        break;
    case C_ADAM:
        b->adam_update(b, c->n, P[0], P[1], P[2], P[3], c->f[0], c->f[1], c->f[2], c->f[3],
                       c->p[4]);
        break;
    case C_SGD: b->sgd_update(b, c->n, P[0], P[1], c->f[0]); break;
    case C_MOMENTUM: b->momentum_update(b, c->n, P[0], P[1], P[2], c->f[0], c->f[1], c->i[0]); break;
    case C_ADD: b->add_inplace(b, c->n, P[0], P[1]); break;
    case C_STEP: b->step_increment(b, (int64_t *)c->p[0]); break;
    case C_GATHER:
        b->gather_batch(b, c->i[0], c->i[1], c->i[2], c->p[0], c->p[1], c->p[2], c->i[3], c->p[3],
                        P[4], (int32_t *)c->p[5]);
        break;
    case C_CONV_POOL_FWD:
        b->conv2d_relu_maxpool_forward(b, &c->cs, &c->ps, P[0], P[1], P[2], P[3],
                                       (int32_t *)c->p[4], P[5]);
        break;
    case C_POOL_FROM_Y_BWD:
        b->maxpool2d_relu_backward_from_y(b, &c->ps, P[0], c->p[1], P[2], P[3]);
        break;
    case C_DENSE_ADAM:
        b->dense_backward_adam(b, c->i[0], c->i[1], c->i[2], P[0], P[1], P[2], P[3], P[4], P[5],
                               P[6], P[7], c->f[0], c->f[1], c->f[2], c->f[3], c->p[8]);
        break;
    case C_CONV_POOL_BWD_FILTER:
        b->conv2d_relu_maxpool_backward_filter(b, &c->cs, &c->ps, P[0], P[1], c->p[2], P[3], P[4],
                                               P[5], P[6]);
        break;
    case C_DENSE_ALIVE:
        b->dense_backward_data_alive(b, c->i[0], c->i[1], c->i[2], P[0], P[1], P[2], P[3]);
        break;
    case C_COPY: b->copy(b, P[0], c->p[1], c->n); break;
    case C_ZERO: b->zero(b, P[0], c->n); break;
    }
}

static void run(Backend *be, Call c) {
    if (!record(be, c)) execute(RP(be), &c);
}

#define CALL(...) run(be, (Call){__VA_ARGS__})

static void w_conv_fwd(Backend *be, const Conv2dShape *s, const float *x, const float *w,
                       const float *b, float *y, float *ws) {
    CALL(.kind = C_CONV_FWD, .cs = *s, .p = {x, w, b, y, ws});
}
static void w_conv_relu_fwd(Backend *be, const Conv2dShape *s, const float *x, const float *w,
                            const float *b, float *y, float *ws) {
    CALL(.kind = C_CONV_RELU_FWD, .cs = *s, .p = {x, w, b, y, ws});
}
static void w_conv_bwd_data(Backend *be, const Conv2dShape *s, const float *dy, const float *w,
                            float *dx, float *ws) {
    CALL(.kind = C_CONV_BWD_DATA, .cs = *s, .p = {dy, w, dx, ws});
}
static void w_conv_bwd_filter(Backend *be, const Conv2dShape *s, const float *x, const float *dy,
                              float *dw, float *db, float *ws) {
    CALL(.kind = C_CONV_BWD_FILTER, .cs = *s, .p = {x, dy, dw, db, ws});
}
static void w_pool_fwd(Backend *be, const Pool2dShape *s, const float *x, float *y,
                       int32_t *argmax) {
    CALL(.kind = C_POOL_FWD, .ps = *s, .p = {x, y, argmax});
}
static void w_pool_bwd(Backend *be, const Pool2dShape *s, const float *dy, const int32_t *am,
                       float *dx) {
    CALL(.kind = C_POOL_BWD, .ps = *s, .p = {dy, am, dx});
}
static void w_pool_relu_bwd(Backend *be, const Pool2dShape *s, const float *dy,
                            const int32_t *am, const float *rx, float *dx) {
    CALL(.kind = C_POOL_RELU_BWD, .ps = *s, .p = {dy, am, rx, dx});
}
static void w_dense_fwd(Backend *be, int n, int in, int out, const float *x, const float *w,
                        const float *b, float *y) {
    CALL(.kind = C_DENSE_FWD, .i = {n, in, out}, .p = {x, w, b, y});
}
static void w_dense_relu_fwd(Backend *be, int n, int in, int out, const float *x, const float *w,
                             const float *b, float *y) {
    CALL(.kind = C_DENSE_RELU_FWD, .i = {n, in, out}, .p = {x, w, b, y});
}
static void w_dense_bwd(Backend *be, int n, int in, int out, const float *x, const float *w,
                        const float *dy, float *dx, float *dw, float *db) {
    CALL(.kind = C_DENSE_BWD, .i = {n, in, out}, .p = {x, w, dy, dx, dw, db});
}
static void w_relu_fwd(Backend *be, size_t n, const float *x, float *y) {
    CALL(.kind = C_RELU_FWD, .n = n, .p = {x, y});
}
static void w_relu_bwd(Backend *be, size_t n, const float *y, const float *dy, float *dx) {
    CALL(.kind = C_RELU_BWD, .n = n, .p = {y, dy, dx});
}
static void w_drop_fwd(Backend *be, size_t n, float rate, uint64_t seed, uint64_t base,
                       const int64_t *step, const float *x, float *y, uint8_t *mask) {
    CALL(.kind = C_DROP_FWD, .n = n, .f = {rate}, .u = {seed, base}, .p = {step, x, y, mask});
}
static void w_drop_bwd(Backend *be, size_t n, float rate, const uint8_t *mask, const float *dy,
                       float *dx) {
    CALL(.kind = C_DROP_BWD, .n = n, .f = {rate}, .p = {mask, dy, dx});
}
static void w_drop_relu_bwd(Backend *be, size_t n, float rate, const uint8_t *mask,
                            const float *ry, const float *dy, float *dx) {
    CALL(.kind = C_DROP_RELU_BWD, .n = n, .f = {rate}, .p = {mask, ry, dy, dx});
}
static void w_xent_fwd(Backend *be, int n, int c, const float *lg, const int32_t *lab, float *pr,
                       float *loss) {
    CALL(.kind = C_XENT_FWD, .i = {n, c}, .p = {lg, lab, pr, loss});
}
static void w_xent_bwd(Backend *be, int n, int c, const float *pr, const int32_t *lab, float dl,
                       float *dlg) {
    CALL(.kind = C_XENT_BWD, .i = {n, c}, .f = {dl}, .p = {pr, lab, dlg});
}
static void w_xent_fused(Backend *be, int n, int c, const float *lg, const int32_t *lab,
                         float *pr, float *loss, float *dlg) {
    CALL(.kind = C_XENT_FUSED, .i = {n, c}, .p = {lg, lab, pr, loss, dlg});
}
static void w_adam(Backend *be, size_t n, float *w, const float *g, float *m, float *v, float lr,
                   float b1, float b2, float eps, const int64_t *step) {
    CALL(.kind = C_ADAM, .n = n, .f = {lr, b1, b2, eps}, .p = {w, g, m, v, step});
}
static void w_sgd(Backend *be, size_t n, float *w, const float *g, float lr) {
    CALL(.kind = C_SGD, .n = n, .f = {lr}, .p = {w, g});
}
static void w_momentum(Backend *be, size_t n, float *w, const float *g, float *vel, float lr,
                       float mu, int nesterov) {
    CALL(.kind = C_MOMENTUM, .n = n, .f = {lr, mu}, .i = {nesterov}, .p = {w, g, vel});
}
static void w_add(Backend *be, size_t n, const float *x, float *y) {
    CALL(.kind = C_ADD, .n = n, .p = {x, y});
}
static void w_conv_pool_fwd(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                            const float *x, const float *w, const float *b, float *y,
                            int32_t *argmax, float *ws) {
    CALL(.kind = C_CONV_POOL_FWD, .cs = *cs, .ps = *ps, .p = {x, w, b, y, argmax, ws});
}
static void w_pool_from_y_bwd(Backend *be, const Pool2dShape *s, const float *dy,
                              const int32_t *am, const float *y, float *dx) {
    CALL(.kind = C_POOL_FROM_Y_BWD, .ps = *s, .p = {dy, am, y, dx});
}
static void w_dense_adam(Backend *be, int n, int in, int out, const float *x, float *w,
                         const float *dy, float *dx, float *dw, float *db, float *m, float *v,
                         float lr, float b1, float b2, float eps, const int64_t *step) {
    CALL(.kind = C_DENSE_ADAM, .i = {n, in, out}, .f = {lr, b1, b2, eps},
         .p = {x, w, dy, dx, dw, db, m, v, step});
}
static void w_conv_pool_bwd_filter(Backend *be, const Conv2dShape *cs, const Pool2dShape *ps,
                                   const float *x, const float *y, const int32_t *am,
                                   const float *dy, float *dw, float *db, float *ws) {
    CALL(.kind = C_CONV_POOL_BWD_FILTER, .cs = *cs, .ps = *ps, .p = {x, y, am, dy, dw, db, ws});
}
static void w_dense_alive(Backend *be, int n, int in, int out, const float *x, const float *w,
                          const float *dy, float *dx) {
    CALL(.kind = C_DENSE_ALIVE, .i = {n, in, out}, .p = {x, w, dy, dx});
}
static void w_step(Backend *be, int64_t *step) { CALL(.kind = C_STEP, .p = {step}); }
static void w_gather(Backend *be, int batch, int size, int n_ex, const uint8_t *pix,
                     const int32_t *lab, const int32_t *ring, int ring_epochs,
                     const int64_t *step, float *x, int32_t *y) {
    CALL(.kind = C_GATHER, .i = {batch, size, n_ex, ring_epochs}, .p = {pix, lab, ring, step, x, y});
}
static void w_copy(Backend *be, void *dst, const void *src, size_t bytes) {
    CALL(.kind = C_COPY, .n = bytes, .p = {dst, src});
}
static void w_zero(Backend *be, void *p, size_t bytes) { CALL(.kind = C_ZERO, .n = bytes, .p = {p}); }

/* Host transfers cannot be part of a graph. */
static void w_upload(Backend *be, void *dst, const void *src, size_t bytes) {
    if (RP(be)->recording) RP(be)->host_calls_in_capture++;
    RP(be)->inner.upload(&RP(be)->inner, dst, src, bytes);
}
static int w_download(Backend *be, void *dst, const void *src, size_t bytes) {
    if (RP(be)->recording) RP(be)->host_calls_in_capture++;
    return RP(be)->inner.download(&RP(be)->inner, dst, src, bytes);
}
static int w_sync(Backend *be) {
    if (RP(be)->recording) RP(be)->host_calls_in_capture++;
    return 0;
}

static void w_invalidate(Backend *be) {
    RP(be)->n_calls = 0;
    RP(be)->captured = 0;
}

/* As the CUDA backend: the first call of a key runs eagerly, the second is recorded (nothing
 * executed) and, like every later call, replayed from the recording. */
static int w_run_steps(Backend *be, int key, void (*step_fn)(void *), void *arg, int steps) {
    Replay *r = RP(be);
    ck_assert_int_eq(key, 0);
    int s = 0;
    if (!r->captured && s < steps) {
        step_fn(arg);
        s++;
        if (s < steps) {
            r->recording = 1;
            step_fn(arg);
            r->recording = 0;
            r->captured = 1;
        }
    }
    for (; s < steps; s++) {
        for (int k = 0; k < r->n_calls; k++) execute(r, &r->calls[k]);
        r->replays++;
    }
    return 0;
}

static void w_destroy(Backend *be) {
    Replay *r = RP(be);
    free(r->calls);
    r->cpu->destroy(r->cpu);
    free(r);
    free(be);
}

static Backend *replay_backend(void) {
    Backend *cpu = backend_cpu_create();
    Replay *r = calloc(1, sizeof *r);
    Backend *be = malloc(sizeof *be);
    ck_assert(cpu && r && be);
    r->cpu = cpu;
    r->inner = *cpu;
    *be = *cpu; /* evaluation-only entries (softmax, argmax, mean, u8_to_float, eval_accumulate)
                 * stay direct */
    be->name = "cpu-replay";
    be->ctx = r;
    be->destroy = w_destroy;
    be->upload = w_upload;
    be->download = w_download;
    be->sync = w_sync;
    be->copy = w_copy;
    be->zero = w_zero;
    be->conv2d_forward = w_conv_fwd;
    be->conv2d_relu_forward = w_conv_relu_fwd;
    be->conv2d_backward_data = w_conv_bwd_data;
    be->conv2d_backward_filter = w_conv_bwd_filter;
    be->maxpool2d_forward = w_pool_fwd;
    be->maxpool2d_backward = w_pool_bwd;
    be->maxpool2d_relu_backward = w_pool_relu_bwd;
    be->dense_forward = w_dense_fwd;
    be->dense_relu_forward = w_dense_relu_fwd;
    be->dense_backward = w_dense_bwd;
    be->relu_forward = w_relu_fwd;
    be->relu_backward = w_relu_bwd;
    be->dropout_forward = w_drop_fwd;
    be->dropout_backward = w_drop_bwd;
    be->dropout_relu_backward = w_drop_relu_bwd;
    be->softmax_xent_forward = w_xent_fwd;
    be->softmax_xent_backward = w_xent_bwd;
    be->softmax_xent_fused = w_xent_fused;
    be->adam_update = w_adam;
    be->sgd_update = w_sgd;
    be->momentum_update = w_momentum;
    be->add_inplace = w_add;
    be->step_increment = w_step;
    be->gather_batch = w_gather;
    be->conv2d_relu_maxpool_forward = cpu->conv2d_relu_maxpool_forward ? w_conv_pool_fwd : NULL;
    be->maxpool2d_relu_backward_from_y =
        cpu->maxpool2d_relu_backward_from_y ? w_pool_from_y_bwd : NULL;
    be->dense_backward_adam = cpu->dense_backward_adam ? w_dense_adam : NULL;
    be->conv2d_relu_maxpool_backward_filter =
        cpu->conv2d_relu_maxpool_backward_filter ? w_conv_pool_bwd_filter : NULL;
    be->dense_backward_data_alive = cpu->dense_backward_data_alive ? w_dense_alive : NULL;
    /* The data gradient from a pool's winners (conv2's shapes; none in this model) is not
     * wrapped: taken away, so that nothing could run outside the recording. */
    be->conv2d_data_grad_from_pool = NULL;
    be->conv2d_relu_maxpool_backward_data = NULL;
    be->run_steps = w_run_steps;
    be->invalidate_graphs = w_invalidate;
    return be;
}

static void synth(int n, uint8_t *pix, int32_t *labels) {
    for (int i = 0; i < n; i++) {
        labels[i] = (int32_t)(philox_u32(3, 1, (uint64_t)i) % 10);
        for (int p = 0; p < 784; p++)
            pix[(size_t)i * 784 + p] =
                (uint8_t)(philox_u32(3, 2, (uint64_t)i * 784 + (uint64_t)p) & 0xff);
    }
}

static void same_state(Model *a, Model *b) {
    ck_assert_int_eq(model_step(a), model_step(b));
    for (int i = 0; i < model_state_count(a); i++) {
        size_t n = model_state_info(a, i)->count;
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
        ck_assert_int_eq(model_state_get(a, i, x), 0);
        ck_assert_int_eq(model_state_get(b, i, y), 0);
        ck_assert_msg(memcmp(x, y, n * sizeof(float)) == 0, "state %s differs",
                      model_state_info(a, i)->name);
        free(x);
        free(y);
    }
}

START_TEST(test_replayed_training_same_bits) {
    static const OptimizerKind kinds[] = {OPT_ADAM, OPT_MOMENTUM, OPT_SGD};
    static const int windows[] = {1, 7, 1, 13, 2}; /* 24 steps of 10: 6.5 epochs of 37 */
    int n = 37;
    uint8_t *pix = malloc((size_t)n * 784);
    int32_t *labels = malloc((size_t)n * sizeof(int32_t));
    synth(n, pix, labels);
    for (int k = 0; k < 3; k++) {
        ModelConfig cfg;
        model_config_default(&cfg);
        /* the CPU backend's fused first layer (conv + ReLU + pool, its filter gradient
         * through the conv output's) and, at 32 units, dense's dx where alive and Adam inside
         * its backward */
        cfg.spec = "conv:4:5:same,relu,maxpool:2,flatten,dense:32,relu,dropout:0.4,dense:10";
        cfg.batch = 10;
        cfg.seed = 11;
        cfg.optimizer = kinds[k];
        cfg.learning_rate = 0.01f;
        char err[256];
        Model *eager = model_create(&cfg, err, sizeof err);
        Backend *rb = replay_backend();
        Replay *r = RP(rb);
        Model *rep = model_create_on(&cfg, rb, err, sizeof err);
        ck_assert(eager && rep);
        for (int round = 0; round < 2; round++) {
            /* A new data set invalidates the recording (pointers change). */
            ck_assert_int_eq(model_set_train_data(eager, pix, labels, n, 1, 5 + round, err, sizeof err), 0);
            ck_assert_int_eq(model_set_train_data(rep, pix, labels, n, 1, 5 + round, err, sizeof err), 0);
            ck_assert_int_eq(r->captured, 0);
            for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
                float la, lb;
                ck_assert_int_eq(model_train_steps(eager, windows[w], &la, err, sizeof err), 0);
                ck_assert_int_eq(model_train_steps(rep, windows[w], &lb, err, sizeof err), 0);
                ck_assert(isfinite(la));
                ck_assert_msg(memcmp(&la, &lb, sizeof la) == 0,
                              "optimizer %d round %d window %zu: eager %.9g, replayed %.9g", k,
                              round, w, (double)la, (double)lb);
            }
            same_state(eager, rep);
        }
        ck_assert_int_gt(r->replays, 30);
        ck_assert_int_gt(r->n_calls, 10);
        ck_assert_int_eq(r->host_calls_in_capture, 0);
        model_free(eager);
        model_free(rep);
    }
    free(pix);
    free(labels);
}
END_TEST

int main(void) {
    Suite *s = suite_create("core_capture");
    TCase *tc = tcase_create("capture");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_replayed_training_same_bits);
    suite_add_tcase(s, tc);
    return test_run_suite(s);
}
