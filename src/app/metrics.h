/* The metrics' per-thread tables and the per-request record, inlined into
 * dispatch: a request costs a few increments in its own thread's table,
 * found through a thread-local pointer and indexed by the endpoint's stats
 * id (ops.h), with no lock, no lookup and no read-modify-write atomic.
 * metrics.c makes the tables and adds them up at scrape time. */
#ifndef VIAL_APP_METRICS_H
#define VIAL_APP_METRICS_H

#include "app/ops.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Request-duration buckets: 14 bounds (metrics.c) and +Inf. */
#define VIAL_METRICS_NBUCKETS 15
/* (method, status) pairs an endpoint keeps per thread (one or two seen
 * usually); more count as overflow. */
#define VIAL_METRICS_NPAIRS 8

typedef struct vial_ep_stats {
    const char *endpoint; /* NULL: no request yet */
    uint64_t sum_ns;
    uint64_t buckets[VIAL_METRICS_NBUCKETS]; /* their sum is the count */
    uint32_t pair_key[VIAL_METRICS_NPAIRS];  /* method << 16 | status; 0: free */
    uint64_t pair_n[VIAL_METRICS_NPAIRS];
} vial_ep_stats;

typedef struct vial_mthread {
    struct vial_mthread *next;
    /* Requests finished are the buckets' sum plus overflow_ep, so only the
     * start is counted separately (in flight = started - finished). */
    uint64_t started, ws_opened, ws_closed, overflow_ep, overflow_pairs;
    const uint64_t *now; /* the thread's loop clock (loop->now), or NULL */
    unsigned n; /* entries of eps */
    vial_ep_stats eps[]; /* indexed by the endpoint's stats id */
} vial_mthread;

/* This thread's table, NULL until its first request. Initial-exec: no
 * __tls_get_addr call on the hot path (libvial is never dlopen'ed late). */
extern __thread vial_mthread *vial_metrics_tls __attribute__((tls_model("initial-exec")));
/* Makes this thread's table; NULL when out of memory (nothing is counted). */
vial_mthread *vial_metrics_thread(void);
/* The cold parts of a record (metrics.c). */
void vial_metrics_first(vial_ep_stats *e, const char *endpoint);
void vial_metrics_pair(vial_mthread *m, vial_ep_stats *e, uint32_t key);
unsigned vial_metrics_method_slow(const char *p, size_t n);
/* The bucket for a duration: the bounds are at least twice apart, so each
 * power of two holds at most one; the table gives the bucket below the
 * first bound of the duration's power of two and one compare settles it. */
extern const uint8_t vial_metrics_log2_bucket[64];
extern const uint64_t vial_metrics_bound_ns[VIAL_METRICS_NBUCKETS];

#define VIAL_METRICS_BUMP(x, d) __atomic_store_n(&(x), (x) + (d), __ATOMIC_RELAXED)

/* A request began: returns the table to hand to vial_metrics_end, NULL
 * when there is none (nothing is counted). */
static inline vial_mthread *vial_metrics_begin(void)
{
    vial_mthread *m = vial_metrics_tls;
    if (__builtin_expect(!m, 0) && !(m = vial_metrics_thread()))
        return NULL;
    VIAL_METRICS_BUMP(m->started, 1);
    return m;
}

static inline unsigned vial_metrics_method(const char *p, size_t n)
{
    /* The request line holds a space after the method: 4 bytes to read.
     * (Big-endian machines miss here and take the slow path: same answer.) */
    uint32_t w;
    if (n == 3 && (memcpy(&w, p, 4), (w & 0xffffffu) == ('G' | 'E' << 8 | (uint32_t)'T' << 16)))
        return 0;
    return vial_metrics_method_slow(p, n);
}

static inline unsigned vial_metrics_bucket(uint64_t ns)
{
    unsigned b = vial_metrics_log2_bucket[63 - __builtin_clzll(ns | 1)];
    return b + (ns > vial_metrics_bound_ns[b]);
}

/* The request of begin's m ended with `status` after duration_ns, counted under stats id
 * `id` named `endpoint` (a string that lives as long as the app). */
static inline void vial_metrics_end(vial_mthread *m, const char *method, size_t method_len, int status,
                                    unsigned id, const char *endpoint, uint64_t duration_ns)
{
    if (__builtin_expect(id >= m->n, 0)) {
        VIAL_METRICS_BUMP(m->overflow_ep, 1);
        return;
    }
    vial_ep_stats *e = &m->eps[id];
    if (__builtin_expect(!e->endpoint, 0))
        vial_metrics_first(e, endpoint);
    unsigned b = vial_metrics_bucket(duration_ns);
    VIAL_METRICS_BUMP(e->buckets[b], 1);
    VIAL_METRICS_BUMP(e->sum_ns, duration_ns);
    uint32_t key = vial_metrics_method(method, method_len) << 16 | (uint32_t)status;
    if (__builtin_expect(e->pair_key[0] == key, 1))
        VIAL_METRICS_BUMP(e->pair_n[0], 1);
    else
        vial_metrics_pair(m, e, key);
}

#endif
