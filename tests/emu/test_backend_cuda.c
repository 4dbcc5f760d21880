/* test_backend_cuda.c: core/backend_cuda.c, the CUDA backend the trainer's --device cuda uses,
 * run on the CPU emulator (tests/emu) with the original job's model, against the CPU backend
 * from the same seed: the backend table's wiring and core's plans on it (the fused first layer,
 * filter gradients from the pools' winners, conv2 + ReLU + pool2 as one op, the dropout and the
 * logits layer as one op, the ReLU and loss fusions), which test_kernels checks only kernel by
 * kernel and test_train only on a GPU.
 *
 * For each fusion level (CNN_CUDA_FUSED=0, 1, 3, 4, 5; 1 and 3, the default, under
 * CNN_TEST_QUICK; level 3's defaults since GPU run 5 split the conv + pool forwards and take
 * conv2's data gradient from pool2's winners; level 3 also with GPU run 5's defaults,
 * CNN_CUDA_CONV_POOL_FWD=1 and CNN_CUDA_DATA_FROM_POOL=0 together and, outside CNN_TEST_QUICK,
 * each alone, and with the switches CNN_FROM_POOL_V=2, CNN_CUDA_DENSE_DX_ALIVE=1 and
 * CNN_CUDA_DENSE_SPARSE=1; outside CNN_TEST_QUICK levels 4 and 5 also with the forwards split
 * and level 4 without the data gradient from the winners), with the parameter gradients on
 * their own stream and the updates on the main one (the default; and outside CNN_TEST_QUICK
 * level 3 on one stream, level 5 with per-layer updates on the gradient stream), on GEMM
 * version 4, and
 * outside CNN_TEST_QUICK the defaults on version 5, the default GEMM (the tensor cores): gradients
 * of every parameter, loss and logits on one batch (1e-4 of the tensor's scale: the GPU kernels
 * sum in other orders), two training steps from host batches (losses to 1e-4 relative),
 * predictions and an evaluation (to 1e-4), then three steps from a resident data set (the
 * trainer's path: the device gather; to 1e-3, test_train's bound for a run's first steps, as
 * rounding differences grow through Adam). Batch 4, one of 3 rows (a short last batch), graphs
 * off; then the same training with CUDA graphs (one-step and multi-step, which the emulator
 * captures and replays) against eager steps, bit for bit; then a refused capture. Exits 1 on a
 * failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/model.h"
#include "core/model_backend.h"
#include "kernels/kernels_cuda.h"
#include "kernels/philox.h"

#define IMG 784
#define BATCH 4

static int failures = 0;

/* --part I/N (ctest runs the cases in N processes, one per core): each case goes to the part
 * with the least work so far, by the case's weight (its time in a level's units: a level on
 * GEMM version 4 1, on version 5 16, the graphs' check 4, 2 when quick), the same choice in
 * every process; the switches set between cases are set in every part. */
#define MAX_PARTS 8
static int part_i = 0, part_n = 1, case_no = 0;
static double part_load[MAX_PARTS];
static int mine(double weight) {
    int p = 0;
    for (int q = 1; q < part_n; q++)
        if (part_load[q] < part_load[p]) p = q;
    part_load[p] += weight;
    case_no++;
    return p == part_i;
}

static void check(int ok, const char *what, double got) {
    printf("%s %-58s %.3g\n", ok ? "PASS" : "FAIL", what, got);
    if (!ok) failures++;
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

/* Raw 0..255 pixels, a third of them 0 (MNIST's background: ties in the pools). */
static void images(int n, uint64_t seed, float *x, int32_t *labels) {
    for (int i = 0; i < n; i++) {
        labels[i] = (int32_t)(philox_u32(seed, 1, (uint64_t)i) % 10);
        for (int p = 0; p < IMG; p++) {
            uint32_t r = philox_u32(seed, 2, (uint64_t)i * IMG + (uint64_t)p);
            x[(size_t)i * IMG + p] = r % 3 == 0 ? 0.0f : (float)(r % 256);
        }
    }
}

static Model *make(Backend *be) {
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.batch = BATCH;
    cfg.seed = 11;
    cfg.threads = 1;
    char err[256];
    Model *m = be ? model_create_on(&cfg, be, err, sizeof err) : model_create(&cfg, err, sizeof err);
    if (!m) {
        printf("FAIL model_create: %s\n", err);
        exit(1);
    }
    return m;
}

/* fused: CNN_CUDA_FUSED; streams: CNN_CUDA_STREAMS (1, the default: the parameter gradients on
 * a second stream, which the emulator interleaves with the first in a shuffled order, so a
 * missing dependency between them fails here, and one update on the main stream; 2: per-layer
 * updates on the second stream too; 0: one stream). */
/* The trainer's path: a resident data set (uint8 pixels), batches gathered on the device from
 * the shuffled ring, three steps in one call on each model; the last losses in *a (cpu), *b. */
static void resident_steps(Model *cpu, Model *cuda, uint64_t seed, float *a, float *b) {
    enum { N_DATA = 10 };
    static uint8_t pix[N_DATA * IMG];
    static float xd[N_DATA * IMG];
    int32_t yd[N_DATA];
    char err[256];
    images(N_DATA, seed, xd, yd);
    for (int i = 0; i < N_DATA * IMG; i++) pix[i] = (uint8_t)xd[i];
    if (model_set_train_data(cpu, pix, yd, N_DATA, 1, 3, err, sizeof err) ||
        model_set_train_data(cuda, pix, yd, N_DATA, 1, 3, err, sizeof err) ||
        model_train_steps(cpu, 3, a, err, sizeof err) ||
        model_train_steps(cuda, 3, b, err, sizeof err)) {
        printf("FAIL resident-data training: %s\n", err);
        exit(1);
    }
}

/* gemm: CNN_GEMM_V for this level, NULL for the process's (main: version 4) */
static void compare_level(const char *fused, const char *streams, const char *gemm) {
    setenv("CNN_CUDA_FUSED", fused, 1);
    setenv("CNN_CUDA_STREAMS", streams, 1);
    const char *gemm_env = getenv("CNN_GEMM_V");
    char *gemm_keep = gemm_env ? strdup(gemm_env) : NULL;
    if (gemm) setenv("CNN_GEMM_V", gemm, 1);
    char level[224];
    const char *split = getenv("CNN_CUDA_CONV_POOL_FWD"), *from_pool = getenv("CNN_FROM_POOL_V");
    const char *data = getenv("CNN_CUDA_DATA_FROM_POOL");
    const char *alive = getenv("CNN_CUDA_DENSE_DX_ALIVE");
    const char *sparse = getenv("CNN_CUDA_DENSE_SPARSE");
    snprintf(level, sizeof level, "%s%s%s%s%s%s%s%s%s", fused,
             strcmp(streams, "0") == 0   ? ", one stream"
             : strcmp(streams, "2") == 0 ? ", per-layer updates on the gradient stream"
                                         : "",
             gemm ? ", GEMM v" : "", gemm ? gemm : "",
             split && strcmp(split, "0") == 0   ? ", conv + pool forwards split"
             : split && strcmp(split, "1") == 0 ? ", fused conv + pool forward"
                                                : "",
             from_pool && strcmp(from_pool, "2") == 0 ? ", filter gradient from pool v2" : "",
             data && strcmp(data, "0") == 0 ? ", no data gradient from pool" : "",
             alive && strcmp(alive, "1") == 0 ? ", dense dx where alive" : "",
             sparse && strcmp(sparse, "1") == 0 ? ", dense over nonzeros" : "");
    char err[256], what[384];
    Backend *be = backend_cuda_create(err, sizeof err);
    if (!be) {
        printf("FAIL backend_cuda_create: %s\n", err);
        exit(1);
    }
    Model *cuda = make(be), *cpu = make(NULL);
    float x[BATCH * IMG], la[BATCH * 10], lb[BATCH * 10], loss_a, loss_b;
    int32_t y[BATCH];
    images(3, 5, x, y);
    if (model_compute_gradients(cpu, x, y, 3, &loss_a, la, err, sizeof err) ||
        model_compute_gradients(cuda, x, y, 3, &loss_b, lb, err, sizeof err)) {
        printf("FAIL model_compute_gradients: %s\n", err);
        exit(1);
    }
    snprintf(what, sizeof what, "fused %s: loss, 3 rows of a batch of 4", level);
    check(fabs(loss_b - loss_a) <= 1e-4 * fabs(loss_a), what, fabs(loss_b - loss_a) / fabs(loss_a));
    snprintf(what, sizeof what, "fused %s: logits", level);
    double d = rel_diff(lb, la, 30);
    check(d <= 1e-4, what, d);
    for (int p = 0; p < model_param_count(cpu); p++) {
        const StateInfo *si = model_state_info(cpu, p);
        float *ga = malloc(si->count * 4), *gb = malloc(si->count * 4);
        model_gradient_get(cpu, p, ga);
        model_gradient_get(cuda, p, gb);
        snprintf(what, sizeof what, "fused %s: gradient of %s", level, si->name);
        d = rel_diff(gb, ga, si->count);
        check(d <= 1e-4, what, d);
        free(ga);
        free(gb);
    }
    for (int s = 0; s < 2; s++) {
        images(BATCH, 100 + (uint64_t)s, x, y);
        if (model_train_step(cpu, x, y, BATCH, &loss_a, err, sizeof err) ||
            model_train_step(cuda, x, y, BATCH, &loss_b, err, sizeof err)) {
            printf("FAIL model_train_step: %s\n", err);
            exit(1);
        }
        snprintf(what, sizeof what, "fused %s: training step %d loss", level, s);
        check(fabs(loss_b - loss_a) <= 1e-4 * fabs(loss_a), what,
              fabs(loss_b - loss_a) / fabs(loss_a));
    }
    float pa[5 * 10], pb[5 * 10], xp[5 * IMG];
    int32_t yp[5];
    images(5, 7, xp, yp);
    if (model_predict(cpu, xp, 5, pa, err, sizeof err) ||
        model_predict(cuda, xp, 5, pb, err, sizeof err)) {
        printf("FAIL model_predict: %s\n", err);
        exit(1);
    }
    snprintf(what, sizeof what, "fused %s: predictions of 5 images (chunks of 4)", level);
    d = rel_diff(pb, pa, 50);
    check(d <= 1e-4, what, d);
    /* evaluation: the set on the device, the totals accumulated there (chunks of 4, 4, 1) */
    uint8_t up[9 * IMG];
    int32_t yl[9];
    float xe[9 * IMG];
    images(9, 11, xe, yl);
    for (int i = 0; i < 9 * IMG; i++) up[i] = (uint8_t)xe[i];
    double eval_a, eval_b, acc_a, acc_b;
    if (model_evaluate(cpu, up, yl, 9, &eval_a, &acc_a, err, sizeof err) ||
        model_evaluate(cuda, up, yl, 9, &eval_b, &acc_b, err, sizeof err)) {
        printf("FAIL model_evaluate: %s\n", err);
        exit(1);
    }
    snprintf(what, sizeof what, "fused %s: evaluation of 9 images, loss", level);
    check(fabs(eval_b - eval_a) <= 1e-4 * fabs(eval_a), what,
          fabs(eval_b - eval_a) / fabs(eval_a));
    snprintf(what, sizeof what, "fused %s: evaluation of 9 images, accuracy", level);
    check(acc_b == acc_a, what, fabs(acc_b - acc_a));
    resident_steps(cpu, cuda, 200, &loss_a, &loss_b);
    snprintf(what, sizeof what, "fused %s: 3 steps from the resident data set, last loss", level);
    /* steps 2-4 of the model: test_train's bound for its first steps (1e-3), as rounding
     * differences start to grow through Adam */
    check(fabs(loss_b - loss_a) <= 1e-3 * fabs(loss_a), what, fabs(loss_b - loss_a) / fabs(loss_a));
    model_free(cuda);
    model_free(cpu);
    if (gemm_keep) setenv("CNN_GEMM_V", gemm_keep, 1);
    else unsetenv("CNN_GEMM_V");
    free(gemm_keep);
}

/* The trainer's path with CUDA graphs (the emulator captures and replays them: cuda_emu.cc,
 * "graphs"): steps replayed from the one-step graph and from graph_steps-step graphs give the
 * bits of eager steps, call after call (windows cut at the ring's epochs, the first call of a
 * key run eagerly and captured) and after the data set is replaced (the graphs dropped and
 * captured again). A capture that is not joined or that synchronises fails in the emulator as
 * on a GPU, which the backend reports as a warning and an eager fallback: that shows here as
 * a missing "graphs replayed" line and a failure of the check below. */
/* the emulator's graph counters (tests/emu/cuda_emu.cc) */
void cuda_emu_graph_counts(size_t *instantiated, size_t *launched);

static void graphs_replay_eagerly(const char *fused, const char *streams, const char *graph_steps,
                                  int quick) {
    size_t inst0, launch0, inst1, launch1;
    cuda_emu_graph_counts(&inst0, &launch0);
    setenv("CNN_CUDA_FUSED", fused, 1);
    setenv("CNN_CUDA_STREAMS", streams, 1);
    setenv("CNN_CUDA_GRAPH_STEPS", graph_steps, 1);
    char err[256];
    Backend *be[2];
    for (int g = 0; g < 2; g++) {
        setenv("CNN_CUDA_GRAPHS", g ? "1" : "0", 1);
        if (!(be[g] = backend_cuda_create(err, sizeof err))) {
            printf("FAIL backend_cuda_create: %s\n", err);
            exit(1);
        }
    }
    setenv("CNN_CUDA_GRAPHS", "0", 1);
    Model *eager = make(be[0]), *graphed = make(be[1]);
    enum { N_DATA = 10 };
    static uint8_t pix[N_DATA * IMG];
    static float xd[N_DATA * IMG];
    int32_t yd[N_DATA];
    /* quick (the sanitizer build): one call of 4 steps per data set, which still captures both
     * graphs, replays the multi-step one and, at the second set, drops and recaptures them */
    const int calls[] = {5, 1, 4}, quick_calls[] = {4};
    const int *call = quick ? quick_calls : calls, ncalls = quick ? 1 : 3;
    char what[256];
    for (int set = 0; set < 2; set++) {
        images(N_DATA, 300 + (uint64_t)set, xd, yd);
        for (int i = 0; i < N_DATA * IMG; i++) pix[i] = (uint8_t)xd[i];
        if (model_set_train_data(eager, pix, yd, N_DATA, 1, 3, err, sizeof err) ||
            model_set_train_data(graphed, pix, yd, N_DATA, 1, 3, err, sizeof err)) {
            printf("FAIL model_set_train_data: %s\n", err);
            exit(1);
        }
        for (int c = 0; c < ncalls; c++) {
            float la, lb;
            if (model_train_steps(eager, call[c], &la, err, sizeof err) ||
                model_train_steps(graphed, call[c], &lb, err, sizeof err)) {
                printf("FAIL model_train_steps: %s\n", err);
                exit(1);
            }
            snprintf(what, sizeof what, "graphs of %s steps: data set %d, call %d (%d steps): loss "
                     "== eager", graph_steps, set, c, call[c]);
            check(memcmp(&la, &lb, sizeof la) == 0, what, fabs(lb - la));
        }
    }
    int same = 1;
    for (int p = 0; p < model_state_count(eager); p++) {
        const StateInfo *si = model_state_info(eager, p);
        float *pa = malloc(si->count * 4), *pb = malloc(si->count * 4);
        if (!pa || !pb || model_state_get(eager, p, pa) || model_state_get(graphed, p, pb)) {
            printf("FAIL model_state_get\n");
            exit(1);
        }
        same &= memcmp(pa, pb, si->count * 4) == 0;
        free(pa);
        free(pb);
    }
    snprintf(what, sizeof what, "graphs of %s steps: every parameter and slot == eager",
             graph_steps);
    check(same, what, 0);
    /* the graphs did run: per data set the one-step graph, and the multi-step one where a
     * window had that many steps */
    cuda_emu_graph_counts(&inst1, &launch1);
    /* per data set: the one-step graph, and the 3-step one where a window has 3 steps left
     * after its eager first step (quick: the second set's first window, cut at the ring's
     * epochs, has 2) */
    const size_t want = strcmp(graph_steps, "1") == 0 ? 2 : quick ? 3 : 4;
    snprintf(what, sizeof what, "graphs of %s steps: %zu graphs captured (want %zu), %zu launches",
             graph_steps, inst1 - inst0, want, launch1 - launch0);
    check(inst1 - inst0 == want && launch1 - launch0 >= (quick ? 2u : 10u), what, 0);
    model_free(eager);
    model_free(graphed);
    unsetenv("CNN_CUDA_GRAPH_STEPS");
}

/* Graphs on, and the emulator refusing every capture (CNN_EMU_CAPTURE=0), as a driver might
 * refuse one with programmatic launches. The backend retries without PDL (turning it off for
 * the process), then runs the steps eagerly: still the CPU's results. */
static void capture_refused(void) {
    setenv("CNN_EMU_CAPTURE", "0", 1);
    setenv("CNN_CUDA_GRAPHS", "1", 1);
    setenv("CNN_CUDA_FUSED", "5", 1);
    setenv("CNN_CUDA_STREAMS", "2", 1);
    char err[256];
    Backend *be = backend_cuda_create(err, sizeof err);
    if (!be) {
        printf("FAIL backend_cuda_create: %s\n", err);
        exit(1);
    }
    Model *cuda = make(be), *cpu = make(NULL);
    float loss_a, loss_b;
    check(cuda_pdl_enabled() == 1, "PDL on before the capture", 0);
    resident_steps(cpu, cuda, 300, &loss_a, &loss_b);
    check(cuda_pdl_enabled() == 0, "a refused capture turns PDL off, then runs eagerly", 0);
    check(fabs(loss_b - loss_a) <= 1e-3 * fabs(loss_a),
          "refused capture: 3 steps from the resident data set, last loss",
          fabs(loss_b - loss_a) / fabs(loss_a));
    model_free(cuda);
    model_free(cpu);
    setenv("CNN_CUDA_GRAPHS", "0", 1);
    unsetenv("CNN_EMU_CAPTURE");
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--part") == 0 &&
        sscanf(argv[2], "%d/%d", &part_i, &part_n) == 2 && part_n >= 1 &&
        part_n <= MAX_PARTS && part_i >= 1 && part_i <= part_n) {
        part_i--;
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--part I/N]\n", argv[0]);
        return 2;
    }
    setenv("CNN_CUDA_GRAPHS", "0", 1);
    /* CNN_TEST_QUICK (the sanitizer build's run, ~35 s a level; the release build runs them
     * all, ~5 s a level): the default level, its base, the switches, the graphs and a refused
     * capture only */
    const char *quick = getenv("CNN_TEST_QUICK");
    const int is_quick = quick && strcmp(quick, "0") != 0;
    /* GEMM version 4 but where a level names another: the default, version 5, costs the
     * emulator several times version 4 (each mma a rendezvous of 32 threads), so one level runs
     * it, the defaults, outside CNN_TEST_QUICK (the sanitizer build's emu_test_kernels runs
     * version 5's kernels) */
    setenv("CNN_GEMM_V", "4", 1);
    /* The graphs at level 5 with per-layer updates: the most forks per captured step (first:
     * the heaviest cases, so that --part balances the rest around them) */
    if (!is_quick && mine(4)) graphs_replay_eagerly("5", "2", "1", 0);
    if (mine(is_quick ? 2 : 4)) graphs_replay_eagerly("5", "2", "3", is_quick);
    if (!is_quick) {
        if (mine(1)) compare_level("0", "1", NULL);
        if (mine(1)) compare_level("4", "1", NULL);
        if (mine(1)) compare_level("5", "1", NULL);
        if (mine(1)) compare_level("5", "2", NULL); /* per-layer updates */
        if (mine(1)) compare_level("3", "0", NULL);
        if (mine(16)) compare_level("3", "1", "5"); /* the defaults */
    }
    if (mine(1)) compare_level("1", "1", NULL);
    /* the defaults: the conv + pool forwards split, both filter gradients from the pools'
     * winners, pool1's backward skipped (item 35), conv2's data gradient from pool2's winners,
     * pool2's backward skipped (item 38) */
    if (mine(1)) compare_level("3", "1", NULL);
    /* GPU run 5's defaults: the fused conv + pool forward, conv2's data gradient through pool2's
     * backward and the GEMM; and each of the two switches alone */
    setenv("CNN_CUDA_CONV_POOL_FWD", "1", 1);
    setenv("CNN_CUDA_DATA_FROM_POOL", "0", 1);
    if (!is_quick && mine(1)) compare_level("3", "1", NULL);
    unsetenv("CNN_CUDA_DATA_FROM_POOL");
    if (!is_quick && mine(1)) compare_level("3", "1", NULL);
    unsetenv("CNN_CUDA_CONV_POOL_FWD");
    setenv("CNN_CUDA_DATA_FROM_POOL", "0", 1);
    if (!is_quick && mine(1)) compare_level("3", "1", NULL);
    /* level 4 as before run 5: its middle-layer op's data gradient from pool2's y */
    if (!is_quick && mine(1)) compare_level("4", "1", NULL);
    unsetenv("CNN_CUDA_DATA_FROM_POOL");
    /* levels 4 and 5 keep the fused forward by default; with it off */
    setenv("CNN_CUDA_CONV_POOL_FWD", "0", 1);
    if (!is_quick && mine(1)) compare_level("5", "2", NULL);
    unsetenv("CNN_CUDA_CONV_POOL_FWD");
    /* conv2's filter gradient from pool2's winners by version 2 (a warp per output channel)
     * with its data gradient from them (the default, item 38) and dense1's data gradient only
     * where pool2's output is > 0 (CNN_CUDA_DENSE_DX_ALIVE=1, item 39), its forward and filter
     * gradient over pool2's nonzeros (CNN_CUDA_DENSE_SPARSE=1, item 40) */
    setenv("CNN_FROM_POOL_V", "2", 1);
    setenv("CNN_CUDA_DENSE_DX_ALIVE", "1", 1);
    setenv("CNN_CUDA_DENSE_SPARSE", "1", 1);
    if (mine(1)) compare_level("3", "1", NULL);
    unsetenv("CNN_FROM_POOL_V");
    unsetenv("CNN_CUDA_DENSE_DX_ALIVE");
    unsetenv("CNN_CUDA_DENSE_SPARSE");
    if (mine(0.5)) capture_refused(); /* last: it turns PDL off for the process */
    if (case_no <= part_i) {
        printf("FAIL part %d/%d has none of the %d cases\n", part_i + 1, part_n, case_no);
        failures++;
    }
    printf("SUMMARY test_backend_cuda: %d failed -> %s\n", failures, failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
