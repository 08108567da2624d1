/* Stackful coroutines, scheduled by the loop of the thread that made them.
 *
 * A coroutine runs until it parks (waits for something); whoever it waits on
 * wakes it with a result, which vial_coro_park returns. Stacks are mmap'd with
 * a guard page and pooled per loop, so starting a coroutine costs no system
 * call once the pool is warm. A coroutine never migrates between threads. */
#ifndef VIAL_RUNTIME_CORO_H
#define VIAL_RUNTIME_CORO_H

#include "runtime/loop.h"
#include "runtime/arch/ctx.h"

#include <stddef.h>

typedef void (*vial_coro_fn)(void *arg);

struct vial_coro {
    vial_ctx ctx;
    vial_loop *loop;
    vial_coro *next_ready;
    vial_coro_fn fn;
    void *arg;
    char *stack;        /* lowest usable byte (just above the guard page) */
    size_t stack_size;  /* usable bytes */
    int result;         /* value handed to the parked coroutine by its waker */
    unsigned parked : 1;    /* waiting for a wake */
    unsigned queued : 1;    /* on the ready queue */
    unsigned cancelled : 1; /* cancellation requested: awaits return -ECANCELED */
    unsigned abandoned : 1; /* and nobody will take the result (the peer reset) */
    unsigned done : 1;
    unsigned cold : 1;      /* cached with its pages given back (MADV_DONTNEED) */
    const char *label;  /* what it runs (a route), for stack-overflow and stall reports */
    /* The label a stall report names: the label at the start of the slice,
     * or a route label set during it (the route that ran, even if it ended
     * before the slice did). Set a route's label with vial_coro_label_route. */
    const char *slice_label;
    /* Called just before the coroutine parks; the connection uses it to
     * flush buffered pipelined responses before a handler waits. */
    void (*on_park)(void *arg);
    void *on_park_arg;
    /* Called on the loop stack after the coroutine finished, before its stack
     * returns to the pool. */
    void (*on_exit)(vial_coro *c);
    void *user;
    /* Structured concurrency: tasks spawned by this coroutine. Cancelling
     * a coroutine cancels its children. */
    vial_coro *parent, *first_child, *next_sibling, *prev_sibling;
    /* Deadline (loop ns, 0: none) every await of this coroutine obeys:
     * vial_coro_wait returns -ETIMEDOUT once it passes. */
    uint64_t deadline;
    vial_timer wait_timer; /* armed by vial_coro_wait */
    /* Work charged to the current slice (vial_coro_spend); every resume
     * starts a fresh slice. */
    size_t spent;
    /* One value the layers above hang on the coroutine: the websocket
     * session it runs (app/websocket.c), so a broadcast made from it is
     * charged to that session. */
    void *local;
    /* The request it serves now (set by app/dispatch.c), for a crash report
     * to name (runtime/crash.h: vial_crash_set_describer). */
    void *request;
    void *sanitizer_fiber;   /* TSan fiber handle */
    void *asan_fake_stack;   /* ASan fake-stack save slot while switched out */
};

typedef struct vial_coro_pool vial_coro_pool;

/* Per-loop stack pool. stack_size is rounded up to whole pages. */
vial_coro_pool *vial_coro_pool_new(size_t stack_size, unsigned max_cached);
void vial_coro_pool_free(vial_coro_pool *pool);
size_t vial_coro_pool_stack_size(const vial_coro_pool *pool);
/* Coroutines (stacks) alive now; any thread may read it (the metrics). */
unsigned vial_coro_pool_in_use(const vial_coro_pool *pool);
/* Gives back the pages of the cached stacks beyond the warmest few (the
 * pool otherwise keeps as many warm as recent peaks used); for an idle
 * moment, e.g. when a thread's last connection closed. */
void vial_coro_pool_trim(vial_coro_pool *pool);
/* The most stacks in use at once lately (the cache keeps that many warm,
 * at least 64), until vial_coro_pool_trim. */
unsigned vial_coro_pool_peak(const vial_coro_pool *pool);

/* Makes a coroutine on loop's pool; it runs at the next vial_coro_resume
 * (or when the loop takes it from the ready queue after vial_coro_wake).
 * Returns NULL when no stack can be had. */
vial_coro *vial_coro_new(vial_loop *loop, vial_coro_fn fn, void *arg);

/* Switches from the loop's own stack into c until it parks or ends. Only the
 * loop (not another coroutine) resumes: coroutines wake each other instead. */
void vial_coro_resume(vial_coro *c);

/* Parks the running coroutine; returns the result passed to vial_coro_wake. */
int vial_coro_park(void);

/* Makes a parked coroutine runnable with `result`. Safe from the loop or from
 * a coroutine of the same loop; a wake of a coroutine that is not parked (it
 * was already woken, e.g. a timer racing a cancel) is ignored. */
void vial_coro_wake(vial_coro *c, int result);

/* Requests cancellation of c and all its descendants: a parked one is woken
 * with -ECANCELED; later awaits return -ECANCELED at once. */
void vial_coro_cancel(vial_coro *c);

/* Labels c with the route it now runs; a stall of the current slice names
 * that route even if the label changes again before the slice ends. */
static inline void vial_coro_label_route(vial_coro *c, const char *label)
{
    c->label = label;
    c->slice_label = label;
}

/* Cancels c (vial_coro_cancel) and marks it abandoned: its result will
 * never be used (the client reset the connection), so work queued for it may
 * be dropped rather than run (vial_pool_run_cancellable). A plain
 * cancellation (a FIN, a deadline) does not drop queued work: the response
 * may still be read. */
void vial_coro_abandon(vial_coro *c);

/* 1 when c or one of its ancestors was abandoned. */
int vial_coro_is_abandoned(const vial_coro *c);

/* Puts the running coroutine at the back of the ready queue. The loop polls
 * for I/O (and drains its mailbox) before it resumes it, so the connections
 * whose events came meanwhile run first. */
void vial_coro_yield(void);

/* The fairness budget of one slice: what a coroutine may do without
 * waiting before it must let the loop's other work in. Charged in bytes
 * moved (read, parsed, written, sent from a file); a message or request
 * costs VIAL_SLICE_ITEM besides its bytes, so a flood of tiny frames yields
 * as often as one of large ones (1 MiB / 16 KiB: at most 64 per slice). A
 * slice of that size takes well under a millisecond. */
#define VIAL_SLICE_BUDGET (1024u * 1024)
#define VIAL_SLICE_ITEM (16u * 1024)

/* Charges cost to the running coroutine's slice; once the slice has spent
 * VIAL_SLICE_BUDGET it yields (vial_coro_yield) and the next slice starts
 * fresh. For loops that may never wait because their input or output never
 * runs dry (a flooding websocket peer, a fast client downloading a large
 * file). Returns 1 when it yielded, 0 otherwise; a no-op off a coroutine. */
int vial_coro_spend(size_t cost);

/* Gives back to the kernel the pages of the running coroutine's stack below
 * the caller's frame (what deeper calls touched before). For a coroutine
 * about to sit idle for long, e.g. a websocket session after its handshake;
 * a system call, so not on every park. No-op off a coroutine. */
void vial_coro_trim_stack(void);

/* The running coroutine of this thread, or NULL on a loop's own stack. */
vial_coro *vial_coro_current(void);

/* The await primitive every waiting operation goes through: parks the
 * running coroutine until it is woken, until `until` (loop ns; 0: no limit of
 * its own) or the coroutine's deadline, whichever is first. Returns the wake
 * result, -ETIMEDOUT when a time limit passed, or -ECANCELED at once if the
 * coroutine is already cancelled. */
int vial_coro_wait(uint64_t until);

/* Parks the running coroutine until `ns` nanoseconds of the loop clock pass.
 * Returns 0, -ECANCELED if cancelled first, -ETIMEDOUT if the coroutine's
 * deadline comes first. */
int vial_coro_sleep_ns(uint64_t ns);

/* Links child under parent (structured concurrency); unlinked when the
 * child ends. */
void vial_coro_adopt(vial_coro *parent, vial_coro *child);

/* Per thread: sets up the alternate signal stack, so a coroutine whose stack
 * overflowed into its guard page can be named; installs the crash handlers
 * (runtime/crash.h). */
void vial_coro_install_overflow_handler(void);
/* From the SIGSEGV handler: names the running coroutine if fault_addr is in
 * its guard page (one write(2) to stderr). */
void vial_coro_overflow_note(void *fault_addr);

#endif
