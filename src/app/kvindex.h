/* A lazily built hash index over a request's name/value pairs (query
 * arguments, form fields): looking a name up is O(1) on average instead of a
 * scan, so code that asks for every field by name stays linear — a request
 * with thousands of fields must not cost quadratic time. Lives in the
 * request's arena; small lists (up to 8 pairs) are scanned, never indexed. */
#ifndef VIAL_APP_KVINDEX_H
#define VIAL_APP_KVINDEX_H

#include "http/exchange.h"
#include "runtime/arena.h"

#include <stddef.h>
#include <stdint.h>

typedef struct vial_kv_index {
    uint32_t *slots; /* hash -> first pair index + 1 (0: empty) */
    uint32_t *next;  /* pair index -> next pair with the same name + 1 */
    uint32_t mask;
    unsigned built : 1, failed : 1;
} vial_kv_index;

/* The index of the first pair named name[0..len), or -1. kv[0..n) must not
 * change once an index is built over it. */
int vial_kv_find(vial_kv_index *ix, const vial_kv *kv, unsigned n, const char *name, size_t len,
                 vial_arena *a);

/* The index of the next pair after i with the same name, or -1. */
int vial_kv_next(vial_kv_index *ix, const vial_kv *kv, unsigned n, unsigned i, vial_arena *a);

#endif
