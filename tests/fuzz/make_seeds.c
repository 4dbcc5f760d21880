/* make_seeds: writes the seed corpora tests/fuzz/corpus/<target>/ with the engine's own writers
 * (valid inputs of each format, small, so that mutations start from real structure).
 *
 *   build-fuzz/make_seeds tests/fuzz/corpus      (built by tests/fuzz/build.sh)
 *
 * The committed corpora came from this program (plus a few hand-written JSON files); rerun it
 * only to refresh them after a format change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/atomic_file.h"
#include "io/example.h"
#include "io/mnist_records.h"
#include "io/savedmodel.h"
#include "io/tensor_bundle.h"
#include "io/tfrecord.h"

static const char *root;

static void die(const char *what, const char *err) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, err);
    exit(1);
}

static void put(const char *target, const char *name, const void *p, size_t n) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    if (atomic_file_write_all(path, p, n, err, sizeof err)) die(path, err);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path, "cannot open");
    uint8_t *buf = malloc(1 << 20);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* A small Example with every list kind: {"a": int64 [1,-2], "b": float [0.5], "c": bytes ["xy"]}. */
static void small_example(PbBuf *out) {
    ExampleBuilder b;
    example_builder_init(&b);
    int64_t iv[2] = {1, -2};
    float fv[1] = {0.5f};
    example_add_int64s(&b, "a", iv, 2);
    example_add_floats(&b, "b", fv, 1);
    example_add_bytes1(&b, "c", "xy", 2);
    example_serialize(&b, out);
    example_builder_free(&b);
}

/* An MNIST record whose image is a 3-level pattern (compresses well, still 784 bytes). */
static void mnist_example(PbBuf *out, int label) {
    ExampleBuilder b;
    uint8_t px[MNIST_PIXELS];
    for (int i = 0; i < MNIST_PIXELS; i++) px[i] = (uint8_t)(i % 28 < 14 ? 0 : 255);
    example_builder_init(&b);
    mnist_encode_example(&b, px, label, out);
    example_builder_free(&b);
}

/* A TFRecord file of the given records, through the real writer, into the corpus. */
static void tfrecord_seed(const char *name, TfrCompression c, PbBuf *recs, int n) {
    char tmp[] = "/tmp/seedXXXXXX", err[512];
    int fd = mkstemp(tmp);
    if (fd < 0) die("mkstemp", "failed");
    close(fd);
    TfrWriter *w = tfr_writer_open(tmp, c, TFR_WRITE_DIRECT, err, sizeof err);
    if (!w) die(tmp, err);
    for (int i = 0; i < n; i++) tfr_writer_write(w, recs[i].data, recs[i].len);
    if (tfr_writer_close(w, err, sizeof err)) die(tmp, err);
    size_t len;
    uint8_t *p = slurp(tmp, &len);
    /* fuzz_tfrecord inputs: a mode byte (see fuzz_tfrecord.c), then the file */
    uint8_t *q = malloc(len + 1);
    char qname[256];
    for (int mode = 0; mode < 6; mode++) {
        if (c != TFR_NONE && mode != 0 && mode != (c == TFR_GZIP ? 2 : 3)) continue;
        q[0] = (uint8_t)mode;
        memcpy(q + 1, p, len);
        snprintf(qname, sizeof qname, "%s.mode%d", name, mode);
        put("fuzz_tfrecord", qname, q, len + 1);
    }
    free(q);
    free(p);
    unlink(tmp);
}

static void idx_seeds(void) {
    /* fuzz_idx input: 1 split byte, then images IDX [2,3,3], then labels IDX [2] */
    uint8_t img[4 + 12 + 18] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3};
    for (int i = 0; i < 18; i++) img[16 + i] = (uint8_t)(i * 14);
    uint8_t lab[4 + 4 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 7, 3};
    uint8_t both[1 + sizeof img + sizeof lab];
    both[0] = (uint8_t)((1 + sizeof img) * 255 / (sizeof both - 1));
    /* the split formula rounds down: 1 + (size-1)*b/255 must equal 1 + sizeof img */
    while (1 + (sizeof both - 1) * both[0] / 255 < 1 + sizeof img) both[0]++;
    memcpy(both + 1, img, sizeof img);
    memcpy(both + 1 + sizeof img, lab, sizeof lab);
    put("fuzz_idx", "mnist_pair", both, sizeof both);
    put("fuzz_idx", "images", img, sizeof img);
    put("fuzz_idx", "labels", lab, sizeof lab);
    /* gzip: labels compressed */
    uint8_t gz[128];
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
    z.next_in = lab;
    z.avail_in = sizeof lab;
    z.next_out = gz;
    z.avail_out = sizeof gz;
    deflate(&z, Z_FINISH);
    put("fuzz_idx", "labels.gz", gz, sizeof gz - z.avail_out);
    deflateEnd(&z);
}

static void bundle_seed(void) {
    char dir[] = "/tmp/seedbXXXXXX", prefix[256], err[512], path[300];
    if (!mkdtemp(dir)) die("mkdtemp", "failed");
    snprintf(prefix, sizeof prefix, "%s/model.ckpt-1", dir);
    float k[6] = {1, 2, 3, 4, 5, 6}, bias[3] = {0};
    int64_t step = 1;
    TfTensor t[3] = {
        {"dense/kernel", TF_DT_FLOAT, 2, {2, 3}, k, sizeof k},
        {"dense/bias", TF_DT_FLOAT, 1, {3}, bias, sizeof bias},
        {"global_step", TF_DT_INT64, 0, {0}, &step, sizeof step},
    };
    if (bundle_write(prefix, t, 3, err, sizeof err)) die(prefix, err);
    snprintf(path, sizeof path, "%s.index", prefix);
    size_t n;
    uint8_t *p = slurp(path, &n);
    put("fuzz_tensor_bundle", "three_tensors.index", p, n);
    put("fuzz_pb_wire", "bundle.index", p, n);
    free(p);
    if (bundle_write(prefix, t + 2, 1, err, sizeof err)) die(prefix, err);
    p = slurp(path, &n);
    put("fuzz_tensor_bundle", "global_step.index", p, n);
    free(p);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) die(dir, "cannot remove");
}

/* A tiny network: 6x6x1 input, conv 2 filters 3x3 SAME + relu, maxpool 2, flatten, dense 3 softmax. */
static void savedmodel_seed(void) {
    SmLayer layers[4] = {
        {SM_LAYER_CONV2D, "conv2d", 2, 3, 3, 1, 1, SM_ACT_RELU, 0},
        {SM_LAYER_MAX_POOL, "max_pooling2d", 0, 2, 2, 2, 0, SM_ACT_NONE, 0},
        {SM_LAYER_FLATTEN, "flatten", 0, 0, 0, 0, 0, SM_ACT_NONE, 0},
        {SM_LAYER_DENSE, "dense", 3, 0, 0, 0, 0, SM_ACT_SOFTMAX, 0},
    };
    SmModel m = {"image_input", 6, 6, 1, layers, 4};
    float ck[18] = {0}, cb[2] = {0}, dk[18 * 3] = {0}, db[3] = {0};
    TfTensor v[4] = {
        {"conv2d/kernel", TF_DT_FLOAT, 4, {3, 3, 1, 2}, ck, sizeof ck},
        {"conv2d/bias", TF_DT_FLOAT, 1, {2}, cb, sizeof cb},
        {"dense/kernel", TF_DT_FLOAT, 2, {18, 3}, dk, sizeof dk},
        {"dense/bias", TF_DT_FLOAT, 1, {3}, db, sizeof db},
    };
    PbBuf out;
    char err[512];
    pb_buf_init(&out);
    if (savedmodel_encode(&m, v, 4, &out, err, sizeof err)) die("savedmodel", err);
    put("fuzz_savedmodel", "tiny_cnn.pb", out.data, out.len);
    pb_buf_free(&out);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0777);
    PbBuf recs[3];
    for (int i = 0; i < 3; i++) pb_buf_init(&recs[i]);
    small_example(&recs[0]);
    mnist_example(&recs[1], 7);
    pb_put_bytes(&recs[2], 1, "", 0);

    put("fuzz_example", "small", recs[0].data, recs[0].len);
    put("fuzz_example", "mnist", recs[1].data, recs[1].len);
    put("fuzz_pb_wire", "example", recs[0].data, recs[0].len);

    tfrecord_seed("one.tfrecord", TFR_NONE, recs, 1);
    PbBuf small3[3] = {recs[0], recs[2], recs[0]};
    tfrecord_seed("three.tfrecord", TFR_NONE, small3, 3);
    tfrecord_seed("three.tfrecord.gz", TFR_GZIP, small3, 3);
    tfrecord_seed("three.tfrecord.zz", TFR_ZLIB, small3, 3);
    tfrecord_seed("empty.tfrecord", TFR_NONE, NULL, 0);

    idx_seeds();
    bundle_seed();
    savedmodel_seed();
    for (int i = 0; i < 3; i++) pb_buf_free(&recs[i]);
    return 0;
}
