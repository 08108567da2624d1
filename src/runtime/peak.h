/* How many of something were in use at once lately: the most in the current
 * window and in the one before (windows of VIAL_PEAK_WINDOW_NS). The caches
 * of coroutine stacks (coro.c) and connection buffers (http/conn.c) keep
 * that many warm and give back the rest when a window ends, so a steady
 * load never frees what it will take again next request, and a burst's
 * excess still goes back within two windows. Owner thread only. */
#ifndef VIAL_RUNTIME_PEAK_H
#define VIAL_RUNTIME_PEAK_H

#include <stdint.h>

#define VIAL_PEAK_WINDOW_NS 1000000000ull

typedef struct vial_peak {
    unsigned cur, prev; /* peaks of this window and the one before */
    uint64_t window_end;
} vial_peak;

static inline void vial_peak_note(vial_peak *p, unsigned in_use)
{
    if (in_use > p->cur)
        p->cur = in_use;
}

static inline unsigned vial_peak_get(const vial_peak *p)
{
    return p->cur > p->prev ? p->cur : p->prev;
}

/* 1 when a window ended at now (the caller then trims to vial_peak_get). */
static inline int vial_peak_roll(vial_peak *p, uint64_t now, unsigned in_use)
{
    if (now < p->window_end)
        return 0;
    /* a whole window with no roll was an idle one: the one before counts no more */
    p->prev = now - p->window_end < VIAL_PEAK_WINDOW_NS ? p->cur : 0;
    p->cur = in_use;
    p->window_end = now + VIAL_PEAK_WINDOW_NS;
    return 1;
}

/* Forget the past (the burst is over): only what is in use now counts. */
static inline void vial_peak_reset(vial_peak *p, unsigned in_use)
{
    p->cur = p->prev = in_use;
}

#endif
