/* Coroutines: stack pool, switching, parking and waking.
 *
 * Each stack is one mmap: a PROT_NONE guard page at the bottom, the usable
 * stack, and the vial_coro itself at the top, so a coroutine costs one
 * mapping and no malloc. Freed stacks stay in a per-loop cache (bounded) so
 * the steady state makes no system call per coroutine. */
#include "runtime/coro.h"
#include "runtime/crash.h"
#include "runtime/log.h"
#include "runtime/peak.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VIAL_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define VIAL_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define VIAL_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define VIAL_TSAN 1
#endif

#ifdef VIAL_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef VIAL_TSAN
#include <sanitizer/tsan_interface.h>
#endif

struct vial_coro_pool {
    size_t stack_size; /* usable bytes, page multiple */
    size_t map_size;   /* guard + stack (the header at its top) */
    unsigned cached, max_cached;
    unsigned in_use; /* written by the owning loop only; read racily by the metrics */
    vial_coro *free_list; /* linked through next_ready, most recently used first */
    vial_peak peak; /* the most stacks in use at once lately: how many stay warm */
};

/* Per thread: the loop's own context, and what runs now. */
static __thread vial_ctx tls_loop_ctx;
static __thread vial_coro *tls_current;
#ifdef VIAL_ASAN
static __thread const void *tls_loop_stack_bottom;
static __thread size_t tls_loop_stack_size;
#endif
#ifdef VIAL_TSAN
static __thread void *tls_loop_fiber;
#endif

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

vial_coro_pool *vial_coro_pool_new(size_t stack_size, unsigned max_cached)
{
    vial_coro_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    size_t ps = page_size();
    if (stack_size < 16 * 1024)
        stack_size = 16 * 1024;
    p->stack_size = (stack_size + ps - 1) & ~(ps - 1);
    /* The vial_coro shares the stack's top page (which every coroutine
     * touches at once) rather than having a page of its own: a page less
     * per connection. */
    p->map_size = ps + p->stack_size;
    p->max_cached = max_cached;
    return p;
}

static void stack_unmap(vial_coro_pool *p, vial_coro *c)
{
#ifdef VIAL_TSAN
    if (c->sanitizer_fiber)
        __tsan_destroy_fiber(c->sanitizer_fiber);
#endif
    munmap(c->stack - page_size(), p->map_size);
}

void vial_coro_pool_free(vial_coro_pool *p)
{
    if (!p)
        return;
    while (p->free_list) {
        vial_coro *c = p->free_list;
        p->free_list = c->next_ready;
        stack_unmap(p, c);
    }
    free(p);
}

size_t vial_coro_pool_stack_size(const vial_coro_pool *p)
{
    return p->stack_size;
}

unsigned vial_coro_pool_in_use(const vial_coro_pool *p)
{
    return __atomic_load_n(&p->in_use, __ATOMIC_RELAXED);
}

/* The vial_coro at the top of its mapping, the stack right below it. */
#define CORO_HEADER ((sizeof(vial_coro) + 63) & ~(size_t)63)

static vial_coro *stack_get(vial_coro_pool *p)
{
    vial_coro *c = p->free_list;
    if (c) {
        p->free_list = c->next_ready;
        p->cached--;
        return c;
    }
    size_t ps = page_size();
    char *base = mmap(NULL, p->map_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    if (mprotect(base, ps, PROT_NONE) != 0) {
        munmap(base, p->map_size);
        return NULL;
    }
    c = (vial_coro *)(base + p->map_size - CORO_HEADER);
    memset(c, 0, sizeof *c);
    c->stack = base + ps;
    c->stack_size = p->stack_size - CORO_HEADER;
#ifdef VIAL_TSAN
    c->sanitizer_fiber = __tsan_create_fiber(0);
#endif
    return c;
}

/* Stacks kept warm in the cache: at least WARM_STACKS, and as many as were
 * in use at once in the last one to two windows (peak.h). The
 * cache is a stack (LIFO), so the stack just put back is the next one
 * taken: it stays warm; when a window ends, the pages of the cached stacks
 * beyond that count, the least recently used, are given back
 * (MADV_DONTNEED: the mapping stays, the next use faults fresh zero pages
 * in), so a burst does not leave the process at its peak RSS;
 * vial_coro_pool_trim does it at once. Giving back the stack just put
 * whenever more than 64 were cached made every request pay an madvise (its
 * TLB flush) and the page faults of the next use, once a burst (256
 * requests waiting for the database) had filled the cache: 40-60% of the
 * CPU of /db, and of /plaintext after it (bench/results/perf-2026-12-06.md). */
#define WARM_STACKS 64

static void stack_cool(vial_coro *c)
{
    if (!c->cold)
        madvise(c->stack, c->stack_size & ~(page_size() - 1), MADV_DONTNEED); /* not the header's page */
    c->cold = 1;
}

/* Gives back the pages of every cached stack after the first keep (the
 * most recently used). */
static void stack_cool_beyond(vial_coro_pool *p, unsigned keep)
{
    unsigned i = 0;
    for (vial_coro *c = p->free_list; c; c = c->next_ready)
        if (i++ >= keep)
            stack_cool(c);
}

/* Cached stacks to keep warm: what recent peaks used beyond what is in use. */
static unsigned warm_limit(const vial_coro_pool *p)
{
    unsigned n = vial_coro_pool_peak(p);
    n = n > p->in_use ? n - p->in_use : 0;
    return n > WARM_STACKS ? n : WARM_STACKS;
}

static void stack_window(vial_coro_pool *p, uint64_t now)
{
    if (vial_peak_roll(&p->peak, now, p->in_use))
        stack_cool_beyond(p, warm_limit(p));
}

static void stack_put(vial_coro_pool *p, vial_coro *c, uint64_t now)
{
    if (p->cached >= p->max_cached) {
        stack_unmap(p, c);
        return;
    }
    stack_window(p, now);
    c->next_ready = p->free_list;
    p->free_list = c;
    p->cached++;
}

unsigned vial_coro_pool_peak(const vial_coro_pool *p)
{
    return vial_peak_get(&p->peak);
}

void vial_coro_pool_trim(vial_coro_pool *p)
{
    vial_peak_reset(&p->peak, p->in_use);
    stack_cool_beyond(p, WARM_STACKS);
}

/* --- switching, with the sanitizers told about every stack change ------- */

static inline void switch_into(vial_coro *c)
{
#ifdef VIAL_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, c->stack, c->stack_size);
#endif
#ifdef VIAL_TSAN
    if (!tls_loop_fiber)
        tls_loop_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(c->sanitizer_fiber, 0);
#endif
    vial_ctx_swap(&tls_loop_ctx, &c->ctx);
#ifdef VIAL_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static inline void switch_out(vial_coro *c, int final)
{
#ifdef VIAL_ASAN
    __sanitizer_start_switch_fiber(final ? NULL : &c->asan_fake_stack, tls_loop_stack_bottom,
                                   tls_loop_stack_size);
#endif
#ifdef VIAL_TSAN
    __tsan_switch_to_fiber(tls_loop_fiber, 0);
#endif
    (void)final;
    vial_ctx_swap(&c->ctx, &tls_loop_ctx);
#ifdef VIAL_ASAN
    __sanitizer_finish_switch_fiber(c->asan_fake_stack, &tls_loop_stack_bottom, &tls_loop_stack_size);
#endif
}

static void coro_entry(void *arg)
{
    vial_coro *c = arg;
#ifdef VIAL_ASAN
    __sanitizer_finish_switch_fiber(NULL, &tls_loop_stack_bottom, &tls_loop_stack_size);
#endif
    c->fn(c->arg);
    c->done = 1;
    switch_out(c, 1);
    abort(); /* a finished coroutine is never resumed */
}

vial_coro *vial_coro_new(vial_loop *loop, vial_coro_fn fn, void *arg)
{
    vial_coro *c = stack_get(loop->coro_pool);
    if (!c)
        return NULL;
    vial_coro_pool *p = loop->coro_pool;
    __atomic_store_n(&p->in_use, p->in_use + 1, __ATOMIC_RELAXED);
    vial_peak_note(&p->peak, p->in_use);
    char *stack = c->stack;
    size_t size = c->stack_size;
    void *fiber = c->sanitizer_fiber;
    memset(c, 0, sizeof *c);
    c->stack = stack;
    c->stack_size = size;
    c->sanitizer_fiber = fiber;
    c->loop = loop;
    c->fn = fn;
    c->arg = arg;
    vial_ctx_make(&c->ctx, stack, size, coro_entry, c);
    return c;
}

/* Below the running frame's stack pointer: the margin left resident for the
 * system call's own frame, the red zone (128 bytes) and the few frames down
 * to the park. No more: with 1 KiB an idle session kept the page below its
 * park, which the handshake had touched. A deeper call later just faults a
 * zero page in. */
#define TRIM_MARGIN 256

void vial_coro_trim_stack(void)
{
    vial_coro *c = tls_current;
    if (!c)
        return;
    uintptr_t lo = (uintptr_t)c->stack;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    if (sp < lo + TRIM_MARGIN)
        return;
    uintptr_t hi = (sp - TRIM_MARGIN) & ~(uintptr_t)(page_size() - 1);
    if (hi > lo)
        madvise(c->stack, hi - lo, MADV_DONTNEED);
}

static void unlink_child(vial_coro *c)
{
    vial_coro *p = c->parent;
    if (!p)
        return;
    if (c->prev_sibling)
        c->prev_sibling->next_sibling = c->next_sibling;
    else
        p->first_child = c->next_sibling;
    if (c->next_sibling)
        c->next_sibling->prev_sibling = c->prev_sibling;
    c->parent = c->next_sibling = c->prev_sibling = NULL;
}

void vial_coro_adopt(vial_coro *parent, vial_coro *child)
{
    child->parent = parent;
    child->prev_sibling = NULL;
    child->next_sibling = parent->first_child;
    if (parent->first_child)
        parent->first_child->prev_sibling = child;
    parent->first_child = child;
}

static uint64_t coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vial_coro_resume(vial_coro *c)
{
    vial_loop *loop = c->loop;
    vial_coro *prev = tls_current;
    tls_current = c;
    loop->running = c;
    /* The watchdog measures each slice of a coroutine on the loop with the
     * coarse clock (a vDSO read, no system call): an async handler that
     * blocks or computes for long stalls every connection of this thread. */
    uint64_t t0 = loop->stall_ns ? coarse_ns() : 0;
    c->slice_label = c->label;
    c->spent = 0;
    switch_into(c);
    if (loop->stall_ns) {
        uint64_t dt = coarse_ns() - t0;
        if (dt > loop->stall_ns)
            vial_log(VIAL_LOG_WARN, "stall: %s held the event loop for %llu ms without awaiting "
                            "(threshold %llu ms); make it sync or offload the blocking part",
                    c->slice_label ? c->slice_label : "a coroutine", (unsigned long long)(dt / 1000000),
                    (unsigned long long)(loop->stall_ns / 1000000));
    }
    tls_current = prev;
    loop->running = prev;
    if (c->done) {
        vial_timer_stop(loop, &c->wait_timer);
        /* children outlive a finished parent only as orphans: detach them */
        for (vial_coro *k = c->first_child; k; k = k->next_sibling)
            k->parent = NULL;
        c->first_child = NULL;
        unlink_child(c);
        if (c->on_exit)
            c->on_exit(c);
        __atomic_store_n(&loop->coro_pool->in_use, loop->coro_pool->in_use - 1, __ATOMIC_RELAXED);
        stack_put(loop->coro_pool, c, loop->now);
    }
}

int vial_coro_park(void)
{
    vial_coro *c = tls_current;
    if (c->on_park)
        c->on_park(c->on_park_arg);
    c->parked = 1;
    switch_out(c, 0);
    return c->result;
}

void vial_coro_wake(vial_coro *c, int result)
{
    if (!c->parked)
        return;
    c->parked = 0;
    c->result = result;
    c->queued = 1;
    c->next_ready = NULL;
    vial_loop *loop = c->loop;
    if (loop->ready_tail)
        loop->ready_tail->next_ready = c;
    else
        loop->ready_head = c;
    loop->ready_tail = c;
}

void vial_coro_abandon(vial_coro *c)
{
    c->abandoned = 1;
    vial_coro_cancel(c);
}

int vial_coro_is_abandoned(const vial_coro *c)
{
    for (; c; c = c->parent)
        if (c->abandoned)
            return 1;
    return 0;
}

void vial_coro_cancel(vial_coro *c)
{
    if (c->done)
        return;
    c->cancelled = 1;
    for (vial_coro *k = c->first_child; k; k = k->next_sibling)
        vial_coro_cancel(k);
    vial_coro_wake(c, -ECANCELED);
}

void vial_coro_yield(void)
{
    vial_coro *c = tls_current;
    c->parked = 1;
    vial_coro_wake(c, 0);
    c->parked = 0;
    /* queued; park without the on_park hook semantics of a real wait */
    switch_out(c, 0);
}

int vial_coro_spend(size_t cost)
{
    vial_coro *c = tls_current;
    if (!c)
        return 0;
    c->spent += cost;
    if (c->spent < VIAL_SLICE_BUDGET)
        return 0;
    vial_coro_yield();
    return 1;
}

vial_coro *vial_coro_current(void)
{
    return tls_current;
}

/* The wait timer fires for the earlier of the wait's own limit and the
 * coroutine's deadline; which one it was decides the result. */
static void wait_fire(vial_loop *loop, vial_timer *t)
{
    vial_coro *c = (vial_coro *)((char *)t - offsetof(vial_coro, wait_timer));
    int own = c->deadline == 0 || t->when < c->deadline;
    vial_coro_wake(c, own ? 1 : -ETIMEDOUT); /* 1: see wait_raw */
}

/* Parks with a time limit; returns 1 when the wait's own limit passed. */
static int wait_raw(uint64_t until)
{
    vial_coro *c = tls_current;
    if (c->cancelled)
        return -ECANCELED;
    uint64_t when = until;
    if (c->deadline && (!when || c->deadline <= when)) {
        if (c->deadline <= c->loop->now)
            return -ETIMEDOUT;
        when = c->deadline;
    }
    if (when) {
        c->wait_timer.cb = wait_fire;
        vial_timer_start(c->loop, &c->wait_timer, when);
    }
    int r = vial_coro_park();
    vial_timer_stop(c->loop, &c->wait_timer);
    return r;
}

int vial_coro_wait(uint64_t until)
{
    int r = wait_raw(until);
    return r == 1 ? -ETIMEDOUT : r;
}

int vial_coro_sleep_ns(uint64_t ns)
{
    /* From the clock, not the loop's cached now: a coroutine that ran for a
     * while in this iteration would otherwise sleep short. */
    int r = wait_raw(vial_clock_ns() + ns);
    return r == 1 ? 0 : r; /* a sleep's own limit passing is its success */
}

/* --- stack overflow reports ---------------------------------------------- */

void vial_coro_overflow_note(void *fault_addr)
{
    vial_coro *c = tls_current;
    char *addr = fault_addr;
    if (c && addr >= c->stack - page_size() && addr < c->stack) {
        char msg[256];
        int n = snprintf(msg, sizeof msg,
                         "vial: coroutine stack overflow (%zu-byte stack) in %s; "
                         "raise vial_config.stack_size or move big buffers off the stack\n",
                         c->stack_size, c->label ? c->label : "(unnamed coroutine)");
        if (n > 0)
            (void)!write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    }
}

void vial_coro_install_overflow_handler(void)
{
#if !defined(VIAL_ASAN) && !defined(VIAL_TSAN)
    static __thread int installed;
    if (installed)
        return;
    installed = 1;
    stack_t ss = {.ss_size = 64 * 1024};
    ss.ss_sp = malloc(ss.ss_size);
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0)
        return;
    vial_crash_install();
#endif
}
