#include "runtime/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct vial_arena_block {
    vial_arena_block *next;
    size_t size;     /* usable bytes */
    uint8_t mapped;  /* from mmap: returned to the system at reset */
    uint8_t own;     /* holds one allocation only (it may grow in place) */
    max_align_t data[];
};

#define ARENA_ALIGN 16
#define ARENA_MIN_BLOCK (16 * 1024)
/* Blocks this large (request bodies, mostly) are mapped and unmapped
 * directly: malloc would keep them in its heap after a burst of uploads
 * (glibc raises its mmap threshold as such blocks are freed), so RSS would
 * stay at the burst's peak. */
#define ARENA_MMAP_MIN (128 * 1024)

static vial_arena_block *block_new(size_t bsize)
{
    vial_arena_block *b;
    if (sizeof *b + bsize >= ARENA_MMAP_MIN) {
        void *m = mmap(NULL, sizeof *b + bsize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        b = m;
        b->mapped = 1;
    } else {
        b = malloc(sizeof *b + bsize);
        if (!b)
            return NULL;
        b->mapped = 0;
    }
    b->size = bsize;
    b->own = 0;
    return b;
}

static void block_free(vial_arena_block *b)
{
    if (b->mapped)
        munmap(b, sizeof *b + b->size);
    else
        free(b);
}

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
        block_free(b);
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
    vial_arena_block *b = block_new(bsize);
    if (!b)
        return NULL;
    b->own = bsize == size;
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
    /* A growing buffer (a chunked body) alone in the newest block: resize
     * that block instead of leaving every smaller copy behind until reset. */
    vial_arena_block *b = a->blocks;
    if (p && b && b->own && p == (void *)b->data && size > old) {
        vial_arena_block *nb = NULL;
        if (b->mapped) {
            void *m = mremap(b, sizeof *b + b->size, sizeof *b + size, MREMAP_MAYMOVE);
            nb = m == MAP_FAILED ? NULL : m;
        } else if (sizeof *b + size < ARENA_MMAP_MIN) {
            nb = realloc(b, sizeof *b + size);
        }
        if (nb) {
            nb->size = size;
            a->blocks = nb;
            return nb->data;
        }
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
