/* fuzz_savedmodel: saved_model.pb as `predict` reads it: io/savedmodel_read.c (savedmodel_parse:
 * the serve meta graph, the serving_default signature, the variables, the layer chain), then the
 * export's layer list as an engine spec (cli/model_graph.c: model_graph_to_spec) parsed as the
 * model builder parses it (core/model_spec.c).
 *
 * An accepted export must be a usable description: an [N,H,W,C] float input with positive
 * sizes, at least one layer, the last one dense + softmax.
 */
#include "fuzz_util.h"

#include "cli/model_graph.h"
#include "core/model_spec.h"
#include "io/savedmodel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    SmInfo info;
    char err[1024];
    if (savedmodel_parse(data, size, "fuzz/saved_model.pb", &info, err, sizeof err) != 0) {
        fuzz_check_error(err, sizeof err);
        if (!strstr(err, "fuzz/saved_model.pb")) abort();
        return 0;
    }
    const SmModel *m = &info.model;
    if (info.input_rank != 4 || m->num_layers < 1 || !m->layers || m->height < 1 ||
        m->width < 1 || m->channels < 1)
        abort();
    const SmLayer *last = &m->layers[m->num_layers - 1];
    if (last->kind != SM_LAYER_DENSE || last->activation != SM_ACT_SOFTMAX || last->units < 1)
        abort();
    for (int i = 0; i < info.num_variables; i++)
        if (!memchr(info.variables[i].name, 0, sizeof info.variables[i].name)) abort();
    char spec[2048];
    if (model_graph_to_spec(m, spec, sizeof spec, err, sizeof err) == 0) {
        ModelSpec ms;
        if (model_spec_parse(spec, &ms, err, sizeof err) != 0) fuzz_check_error(err, sizeof err);
    } else {
        fuzz_check_error(err, sizeof err);
    }
    savedmodel_info_free(&info);
    return 0;
}
