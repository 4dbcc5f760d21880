/* arena.h: all backend memory of a model, planned first and allocated once.
 *
 * Tensors reserve space in a region while the tape is built; arena_commit() then makes one
 * backend allocation for all of them (parameters, gradients, optimizer slots, activations,
 * workspaces: one cudaMalloc per model on the GPU). Parameters and their gradients have regions of their own so
 * that all parameters are one contiguous buffer and all gradients another, at the same offsets
 * (one fused optimizer pass covers every parameter). Nothing is allocated after commit.
 */
#ifndef CORE_ARENA_H
#define CORE_ARENA_H

#include <stddef.h>

#include "core/backend.h"

typedef enum { REGION_PARAM = 0, REGION_GRAD = 1, REGION_WORK = 2, REGION_COUNT = 3 } Region;

/* Offsets within a region are aligned to ARENA_ALIGN bytes, except in the parameter and gradient
 * regions, which are packed (4-byte floats, no gaps) so that they are flat float arrays. */
#define ARENA_ALIGN 64

typedef struct {
    Backend *be;
    size_t size[REGION_COUNT];
    void *base[REGION_COUNT];  /* each region's start inside block */
    void *block;               /* the one backend allocation */
} Arena;

void arena_init(Arena *a, Backend *be);
/* Reserves `bytes` in region r and returns its offset. */
size_t arena_reserve(Arena *a, Region r, size_t bytes);
/* Allocates all regions in one block (zero-filled). 0 ok, -1 out of backend memory. */
int arena_commit(Arena *a);
void *arena_ptr(const Arena *a, Region r, size_t offset);
void arena_release(Arena *a);

#endif /* CORE_ARENA_H */
