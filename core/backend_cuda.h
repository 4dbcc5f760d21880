/* backend_cuda.h: what the cuDNN backend shares with the CUDA backend (core/ internal).
 *
 * backend_cudnn.c is the CUDA backend with the conv and dense entries swapped for cuDNN/cuBLAS:
 * it builds on the same stream, memory, error recording and graph capture, and keeps its own
 * state in `ext`. */
#ifndef CORE_BACKEND_CUDA_H
#define CORE_BACKEND_CUDA_H

#include <cuda_runtime_api.h>

#include "core/backend.h"

typedef struct {
    cudaStream_t stream;
    cudaError_t err;          /* the first device error since the last sync/download */
    char msg[256];
    float *ws;                /* split-K scratch of the GEMM entries on `stream` */
    size_t ws_floats;
    /* Parameter gradients on a second stream (backend.h "Ordering"; backend_cuda.c): NULL when
     * off (CNN_CUDA_STREAMS=0, and the cuDNN backend). */
    cudaStream_t grad_stream;
    cudaEvent_t fork_event, join_event;
    float *grad_ws;           /* split-K scratch of the entries on grad_stream (ws_floats) */
    int grads_pending;        /* work issued to grad_stream since the last join */
    /* Per key: one step, and graph_steps steps in one graph (multi: captured at the first
     * call with that many steps left; NULL until then, or when its capture failed). */
    struct { int key; cudaGraphExec_t exec, multi; int multi_failed; } graphs[8];
    int ngraphs;
    int graphs_failed;        /* a capture failed: steps run eagerly (with a warning) */
    int graph_steps;          /* steps per multi-step graph (CNN_CUDA_GRAPH_STEPS; 1: none) */
    int pool_filter_any_c;    /* filter gradients from the pools' winners at any channel count
                                 (every conv + pool forward split: level 3's default,
                                 CNN_CUDA_CONV_POOL_FWD=0) */
    void *ext;                /* backend_cudnn.c's state */
    void (*ext_free)(void *ext);
} CudaCtx;

/* A CUDA backend named `name` ("cuda" or "cudnn"); NULL with a message in err. */
Backend *backend_cuda_create_named(const char *name, char *err, size_t errlen);
/* Records e (the first error wins) with `what` naming the entry; returns 1 if e is an error. */
int cuda_record(CudaCtx *c, cudaError_t e, const char *what);

#endif /* CORE_BACKEND_CUDA_H */
