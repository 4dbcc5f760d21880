/* arena.c: planned, one-shot allocation of backend memory. */
#include "core/arena.h"

void arena_init(Arena *a, Backend *be) {
    a->be = be;
    a->block = NULL;
    for (int r = 0; r < REGION_COUNT; r++) {
        a->size[r] = 0;
        a->base[r] = NULL;
    }
}

size_t arena_reserve(Arena *a, Region r, size_t bytes) {
    size_t align = (r == REGION_WORK) ? ARENA_ALIGN : 4;
    size_t off = (a->size[r] + align - 1) / align * align;
    a->size[r] = off + bytes;
    return off;
}

/* One backend allocation holds every region, each starting on an ARENA_ALIGN boundary. */
int arena_commit(Arena *a) {
    size_t offset[REGION_COUNT], total = 0;
    for (int r = 0; r < REGION_COUNT; r++) {
        offset[r] = total;
        total += (a->size[r] + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    }
    a->block = a->be->alloc(a->be, total ? total : ARENA_ALIGN);
    if (!a->block) return -1;
    a->be->zero(a->be, a->block, total);
    for (int r = 0; r < REGION_COUNT; r++)
        a->base[r] = a->size[r] ? (char *)a->block + offset[r] : NULL;
    return 0;
}

void *arena_ptr(const Arena *a, Region r, size_t offset) {
    return (char *)a->base[r] + offset;
}

void arena_release(Arena *a) {
    if (a->block) a->be->free(a->be, a->block);
    a->block = NULL;
    for (int r = 0; r < REGION_COUNT; r++) a->base[r] = NULL;
}
