/* model_backend.h: a model on a backend the caller made, for tests that instrument a backend
 * (e.g. tests/test_core_capture.c replays captured steps on the CPU as a CUDA graph would). */
#ifndef CORE_MODEL_BACKEND_H
#define CORE_MODEL_BACKEND_H

#include <stddef.h>

#include "core/backend.h"
#include "core/model.h"

/* As model_create, on `be` (cfg->device is ignored). The model owns be from then on: it is
 * destroyed with the model, or at once when creation fails. */
Model *model_create_on(const ModelConfig *cfg, Backend *be, char *err, size_t errlen);

#endif /* CORE_MODEL_BACKEND_H */
