#include "app/kvindex.h"

#include <string.h>

#define KV_SCAN_MAX 8

static uint32_t kv_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a: names are short */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int same(const vial_kv *k, const char *name, size_t len)
{
    return k->name_len == len && !memcmp(k->name, name, len);
}

/* Chains keep the pairs' order: each slot leads to the first pair of a
 * name, and next[] to the following ones, so lookups return Werkzeug's
 * "first value" and walking next[] gives getlist() in order. Only the first
 * pair of each name sits in the table; later ones hang off it. */
static void build(vial_kv_index *ix, const vial_kv *kv, unsigned n, vial_arena *a)
{
    ix->built = 1;
    uint32_t size = 16;
    while (size < n * 2)
        size <<= 1;
    uint32_t *tail = vial_arena_alloc(a, (size_t)n * sizeof *tail);
    ix->slots = vial_arena_alloc(a, (size_t)size * sizeof *ix->slots);
    ix->next = vial_arena_alloc(a, (size_t)n * sizeof *ix->next);
    if (!tail || !ix->slots || !ix->next) {
        ix->failed = 1; /* out of memory: lookups fall back to scanning */
        return;
    }
    memset(ix->slots, 0, (size_t)size * sizeof *ix->slots);
    memset(ix->next, 0, (size_t)n * sizeof *ix->next);
    ix->mask = size - 1;
    for (unsigned i = 0; i < n; i++) {
        uint32_t h = kv_hash(kv[i].name, kv[i].name_len) & ix->mask;
        for (;;) {
            uint32_t s = ix->slots[h];
            if (!s) {
                ix->slots[h] = i + 1;
                tail[i] = i;
                break;
            }
            if (same(&kv[s - 1], kv[i].name, kv[i].name_len)) {
                ix->next[tail[s - 1]] = i + 1;
                tail[s - 1] = i;
                break;
            }
            h = (h + 1) & ix->mask;
        }
    }
}

static int usable(vial_kv_index *ix, const vial_kv *kv, unsigned n, vial_arena *a)
{
    if (n <= KV_SCAN_MAX)
        return 0;
    if (!ix->built)
        build(ix, kv, n, a);
    return !ix->failed;
}

int vial_kv_find(vial_kv_index *ix, const vial_kv *kv, unsigned n, const char *name, size_t len,
                 vial_arena *a)
{
    if (!usable(ix, kv, n, a)) {
        for (unsigned i = 0; i < n; i++)
            if (same(&kv[i], name, len))
                return (int)i;
        return -1;
    }
    for (uint32_t h = kv_hash(name, len) & ix->mask;; h = (h + 1) & ix->mask) {
        uint32_t s = ix->slots[h];
        if (!s)
            return -1;
        if (same(&kv[s - 1], name, len))
            return (int)(s - 1);
    }
}

int vial_kv_next(vial_kv_index *ix, const vial_kv *kv, unsigned n, unsigned i, vial_arena *a)
{
    if (i >= n)
        return -1;
    if (!usable(ix, kv, n, a)) {
        for (unsigned j = i + 1; j < n; j++)
            if (same(&kv[j], kv[i].name, kv[i].name_len))
                return (int)j;
        return -1;
    }
    return ix->next[i] ? (int)(ix->next[i] - 1) : -1;
}
