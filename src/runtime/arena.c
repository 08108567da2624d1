#include "runtime/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct vial_arena_block {
    vial_arena_block *next;
    size_t size;
    max_align_t data[];
};

#define ARENA_ALIGN 16
#define ARENA_MIN_BLOCK (16 * 1024)

void vial_arena_init(vial_arena *a, void *buf, size_t size)
{
    a->cur = buf;
    a->end = buf ? (char *)buf + size : NULL;
    a->blocks = NULL;
}

void vial_arena_reset(vial_arena *a, void *buf, size_t size)
{
    vial_arena_block *b = a->blocks;
    while (b) {
        vial_arena_block *next = b->next;
        free(b);
        b = next;
    }
    vial_arena_init(a, buf, size);
}

void *vial_arena_alloc(vial_arena *a, size_t size)
{
    uintptr_t p = ((uintptr_t)a->cur + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
    if (a->cur && p + size <= (uintptr_t)a->end && p + size >= p) {
        a->cur = (char *)(p + size);
        return (void *)p;
    }
    if (size > SIZE_MAX / 2)
        return NULL;
    /* Big allocations get a block of their own so the current block's free
     * space stays usable for the small ones that follow. */
    size_t bsize = size > ARENA_MIN_BLOCK / 4 ? size : ARENA_MIN_BLOCK;
    vial_arena_block *b = malloc(sizeof *b + bsize);
    if (!b)
        return NULL;
    b->size = bsize;
    b->next = a->blocks;
    a->blocks = b;
    char *data = (char *)b->data;
    if (bsize != size)
        return a->cur = data + size, a->end = data + bsize, data;
    return data;
}

void *vial_arena_grow(vial_arena *a, void *p, size_t old, size_t size)
{
    if (p && (char *)p + old == a->cur && (char *)p + size <= a->end && size >= old) {
        a->cur = (char *)p + size;
        return p;
    }
    void *n = vial_arena_alloc(a, size);
    if (n && p && old)
        memcpy(n, p, old < size ? old : size);
    return n;
}

char *vial_arena_strndup(vial_arena *a, const char *s, size_t n)
{
    char *d = vial_arena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}
