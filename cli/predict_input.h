/* predict_input.h: the instances of a `predict` call, parsed from JSON text (split out of
 * cli/predict.c so that tests/fuzz/fuzz_json_instances.c can run the same code on any bytes).
 *
 *   lines form   (--json-instances): one JSON value per non-blank line (gcloud local predict):
 *                the input's value ([H][W][C] nested lists) or {"<input_key>": value};
 *   request form (--json-request):   a TF Serving REST body {"instances": [...]} (row form) or
 *                {"inputs": ...} (columnar form), with an optional "signature_name".
 * Errors name the file and the line / instance, and say what is wrong.
 */
#ifndef CLI_PREDICT_INPUT_H
#define CLI_PREDICT_INPUT_H

#include <stddef.h>

#define PREDICT_SIGNATURE_KEY "serving_default"

/* The images collected so far. Layout: data is NHWC float [n, h, w, c]. Set h, w, c and
 * input_key (the signature's input name) before parsing; free data when done. */
typedef struct {
    float *data;
    int n, cap;
    int h, w, c;
    const char *input_key;
} InstanceBatch;

/* text[0..len) (no NUL needed) in the lines form; file names the source in messages.
 * Appends to b. 0 ok, -1 with err set. */
int instances_parse_lines(const char *text, size_t len, const char *file, InstanceBatch *b,
                          char *err, size_t errlen);
/* text[0..len) in the request form; *columnar = 1 for {"inputs": ...}. 0 ok, -1 with err set. */
int instances_parse_request(const char *text, size_t len, const char *file, InstanceBatch *b,
                            int *columnar, char *err, size_t errlen);

#endif
