/* The driver kit: what a client library (src/clients: libpq, hiredis,
 * libcurl, SQLite) needs from the runtime to be driven by coroutines, and
 * nothing else. A driver includes this header and the public API; it never
 * reads the loop's, a coroutine's or the exchange's fields, so those can
 * change without touching the drivers.
 *
 * Everything here runs on a loop thread (the one the driver state belongs
 * to) unless said otherwise. */
#ifndef VIAL_RUNTIME_DRIVER_H
#define VIAL_RUNTIME_DRIVER_H

#include "runtime/loop.h"

#include <stddef.h>
#include <stdint.h>

#define vial_container_of(p, type, field) ((type *)((char *)(p) - offsetof(type, field)))

/* --- where am I ------------------------------------------------------------- */

/* The coroutine running on this thread, or NULL (a loop's own stack, a
 * worker thread, any other thread). */
vial_coro *vial_drv_self(void);
/* The loop of this thread, or NULL when this is not a loop thread. */
vial_loop *vial_drv_loop(void);
/* The loop a coroutine belongs to. */
vial_loop *vial_drv_coro_loop(const vial_coro *co);
/* The loop's clock (monotonic ns, refreshed once per iteration). */
uint64_t vial_drv_now(const vial_loop *loop);

/* Whether co's awaits already fail though it may not have run yet to notice:
 * -ECANCELED (cancelled), -ETIMEDOUT (its deadline passed), else 0. */
int vial_drv_doomed(const vial_coro *co);
/* The same for the running coroutine (0 outside one). */
int vial_drv_cancelled(void);

/* --- awaiting ---------------------------------------------------------------- */

/* The one await primitive (vial_coro_wait): parks the running coroutine until
 * woken, until `until` (loop ns; 0: no limit of its own) or its deadline.
 * Returns the wake result, -ETIMEDOUT or -ECANCELED. */
int vial_drv_wait(uint64_t until);
/* Parks ignoring cancellation and deadline (for waits that must end, e.g.
 * for work on another thread using this stack). Returns the wake result. */
int vial_drv_park(void);
/* Makes a parked coroutine of this loop runnable with `result`. */
void vial_drv_wake(vial_coro *co, int result);

/* A queue of coroutines waiting for a resource (a free connection, a slot).
 * Zero-initialised is empty. */
typedef struct vial_drv_waiter vial_drv_waiter;
typedef struct vial_drv_queue {
    vial_drv_waiter *head, *tail;
} vial_drv_queue;

/* Queues the running coroutine and awaits a wake (vial_drv_wait's rules).
 * Returns 0 when woken by vial_drv_queue_wake*, -ECANCELED, -ETIMEDOUT, or
 * -EINTR when something else woke it; it has left the queue either way. gift (may be NULL) receives what
 * the waker handed over, NULL when it was not woken by a wake_one. */
int vial_drv_queue_wait(vial_drv_queue *q, uint64_t until, void **gift);
/* Wakes the longest waiter that can still take a wake (waiters already
 * cancelled or timed out are passed over), handing it `gift`. Returns 1, or
 * 0 when nobody could take it (the gift is still the caller's). */
int vial_drv_queue_wake_one(vial_drv_queue *q, void *gift);
/* Wakes every waiter. */
void vial_drv_queue_wake_all(vial_drv_queue *q);

/* --- timers and kicks --------------------------------------------------------- */

typedef struct vial_drv_timer vial_drv_timer;
typedef void (*vial_drv_timer_fn)(vial_drv_timer *t);
struct vial_drv_timer {
    vial_timer t; /* the loop's; not for drivers to touch */
    vial_loop *loop;
    vial_drv_timer_fn fn;
};

void vial_drv_timer_init(vial_drv_timer *t, vial_loop *loop, vial_drv_timer_fn fn);
/* Arms t to run fn `ns` nanoseconds from the loop's now (re-arms an armed one). */
void vial_drv_timer_arm(vial_drv_timer *t, uint64_t ns);
/* Batching: makes sure fn runs no later than `ns` from now, once, however
 * many kicks come before it runs. With ns 0 it runs at the end of this loop
 * iteration, after the coroutines running and queued now have parked, so
 * their work goes out in one batch. */
void vial_drv_kick(vial_drv_timer *t, uint64_t ns);
void vial_drv_timer_stop(vial_drv_timer *t);
int vial_drv_timer_armed(const vial_drv_timer *t);

/* --- per-loop state ----------------------------------------------------------- */

/* A key for a per-loop slot, handed out once per process (any thread);
 * negative when all slots are taken. Every loop's slot starts NULL. */
int vial_drv_key(void);
void *vial_drv_local_get(vial_loop *loop, int key);
/* Stores value in loop's slot; when the loop thread ends, dtor(value) runs
 * on it (newest first) and the slot is cleared. Returns 0 or -ENOMEM. */
int vial_drv_local_set(vial_loop *loop, int key, void *value, void (*dtor)(void *value));

/* Runs m->cb after the events of this loop iteration are handled: freeing an
 * object whose fd may still have an event in the batch must wait for this. */
void vial_drv_defer(vial_loop *loop, vial_msg *m);
/* Takes m back if it has not run yet (its owner is going away). */
void vial_drv_defer_cancel(vial_loop *loop, vial_msg *m);

/* Runs fn(arg) on `pool` (a worker thread) and awaits it even when the
 * running coroutine is cancelled or its deadline passes (fn's arguments may
 * live on this stack); on the first of those, interrupt(arg) is called here,
 * if not NULL, so fn can stop early. Returns 0 (fn ran, uninterrupted), the
 * code that interrupted it (fn still ran to its end), -EAGAIN (queue full)
 * or -EPERM (not in a coroutine). */
struct vial_pool;
int vial_drv_run(struct vial_pool *pool, void (*fn)(void *), void (*interrupt)(void *), void *arg);

/* --- file descriptors ----------------------------------------------------------
 *
 * The loop registers fds edge-triggered; libraries, though, read "some" data
 * and expect to be told again if more is pending (level-triggered). A driver
 * keeps its own vial_io and re-polls with vial_drv_poll where a library may
 * have left data behind, rather than wait for an edge that already came. */

/* Asks the kernel (a zero-timeout poll) which of events (VIAL_IO_READ |
 * VIAL_IO_WRITE) fd is ready for now. A hang-up (or, when reading, the
 * peer's FIN) adds VIAL_IO_HUP, an error
 * (or a closed fd) VIAL_IO_ERR, and either counts as ready for both, so the
 * library's next call finds out. */
unsigned vial_drv_poll(int fd, unsigned events);

/* An fd driven by the loop with a callback of the driver's own. */
int vial_drv_io_add(vial_loop *loop, vial_io *io);
int vial_drv_io_del(vial_loop *loop, vial_io *io);

/* --- metrics sources ------------------------------------------------------------
 *
 * A client library's figures in the app's Prometheus text (--metrics-path):
 * it registers a source, and each scrape calls it (on the scraping thread,
 * any loop thread) to write its families with the two writers below. A
 * source writes each family it owns once (HELP and TYPE), all its samples
 * after it: one source per library, with a label per pool, not one per
 * pool. Any thread; the figures read across threads are the source's
 * business (relaxed atomics). */
typedef struct vial_metrics_out {
    void (*append)(void *ctx, const char *p, size_t n);
    void *ctx;
} vial_metrics_out;
typedef void (*vial_metrics_source_fn)(void *data, vial_metrics_out *out);

/* Adds fn(data) to every scrape. 0, or -ENOMEM. */
int vial_metrics_source_add(vial_metrics_source_fn fn, void *data);
/* Removes it; once this returns, no scrape is in it. */
void vial_metrics_source_del(vial_metrics_source_fn fn, void *data);
/* The HELP and TYPE lines of a family (type: "counter", "gauge", ...). */
void vial_metrics_family(vial_metrics_out *out, const char *name, const char *type, const char *help);
/* One sample: `name{labels} value`; labels is "" or already formatted and
 * escaped (`pool="0"`). */
void vial_metrics_sample(vial_metrics_out *out, const char *name, const char *labels, uint64_t value);
/* The same labelled pool="<pool>": a client's figure for one of its
 * handles, numbered in the order they were opened. */
void vial_metrics_sample_pool(vial_metrics_out *out, const char *name, unsigned pool, uint64_t value);
/* Runs every source into out (the app's scrape). */
void vial_metrics_sources_write(vial_metrics_out *out);

#endif
