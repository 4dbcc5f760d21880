/* arena.c: planned, one-shot allocation of backend memory. */
#include "core/arena.h"

void arena_init(Arena *a, Backend *be) {
    a->be = be;
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

int arena_commit(Arena *a) {
    for (int r = 0; r < REGION_COUNT; r++) {
        if (a->size[r] == 0) continue;
        a->base[r] = a->be->alloc(a->be, a->size[r]);
        if (!a->base[r]) {
            arena_release(a);
            return -1;
        }
        a->be->zero(a->be, a->base[r], a->size[r]);
    }
    return 0;
}

void *arena_ptr(const Arena *a, Region r, size_t offset) {
    return (char *)a->base[r] + offset;
}

void arena_release(Arena *a) {
    for (int r = 0; r < REGION_COUNT; r++) {
        if (a->base[r]) a->be->free(a->be, a->base[r]);
        a->base[r] = NULL;
    }
}
