/* fuzz_json_instances: predict's JSON input (cli/predict_input.c, on cJSON): the lines form of
 * --json-instances and the TF Serving request body of --json-request, on arbitrary text.
 *
 * The first byte picks the signature's input shape ([2,2,1], [1,3,2] or MNIST's [28,28,1]); the
 * rest is parsed both ways. Accepted instances must fill exactly n * H*W*C floats.
 */
#include "fuzz_util.h"

#include "cli/predict_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int shapes[3][3] = {{2, 2, 1}, {1, 3, 2}, {28, 28, 1}};
    if (size < 1) return 0;
    const int *s = shapes[data[0] % 3];
    /* a copy without a terminating NUL, so ASan sees any read past the end */
    size_t n = size - 1;
    char *text = malloc(n ? n : 1);
    if (!text) abort();
    memcpy(text, data + 1, n);
    char err[1024];
    for (int request = 0; request < 2; request++) {
        InstanceBatch b = {NULL, 0, 0, s[0], s[1], s[2], "image_input"};
        int columnar = -1;
        int rc = request ? instances_parse_request(text, n, "in.json", &b, &columnar, err, sizeof err)
                         : instances_parse_lines(text, n, "in.json", &b, err, sizeof err);
        if (rc != 0) {
            fuzz_check_error(err, sizeof err);
            if (strncmp(err, "in.json", 7) != 0) abort();
        } else {
            if (b.n < 0 || b.n > b.cap || (request && columnar != 0 && columnar != 1)) abort();
            size_t per = (size_t)s[0] * s[1] * s[2];
            if (b.n) (void)b.data[(size_t)b.n * per - 1];     /* ASan: all of it allocated */
        }
        free(b.data);
    }
    free(text);
    return 0;
}
