/* Per-request arena: bump allocation, freed all at once after teardown.
 * The first block lives inside the request (on the connection coroutine's
 * stack), so a typical request allocates nothing from malloc. */
#ifndef VIAL_RUNTIME_ARENA_H
#define VIAL_RUNTIME_ARENA_H

#include <stddef.h>

typedef struct vial_arena_block vial_arena_block;

typedef struct vial_arena {
    char *cur, *end;
    vial_arena_block *blocks; /* malloc'd overflow blocks, newest first */
} vial_arena;

/* Starts an arena on caller-owned memory buf[0..size) (may be 0). */
void vial_arena_init(vial_arena *a, void *buf, size_t size);
/* Frees the overflow blocks; the arena is empty and reusable after. */
void vial_arena_reset(vial_arena *a, void *buf, size_t size);
/* 16-byte aligned; NULL when out of memory. */
void *vial_arena_alloc(vial_arena *a, size_t size);
/* Grows the most recent allocation p (old bytes) to size bytes when it can in
 * place, else copies; like realloc but the old block is not freed. */
void *vial_arena_grow(vial_arena *a, void *p, size_t old, size_t size);
char *vial_arena_strndup(vial_arena *a, const char *s, size_t n);

#endif
