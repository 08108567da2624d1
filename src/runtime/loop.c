/* The per-thread event loop: timers (binary heap), the ready queue, the
 * cross-thread mailbox, and the iteration that ties them to the backend. */
#include "runtime/loop.h"
#include "runtime/coro.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static __thread vial_loop *tls_loop;

vial_loop *vial_loop_current(void)
{
    return tls_loop;
}

/* --- timers ----------------------------------------------------------------- */

static inline void heap_set(vial_loop *l, uint32_t i, vial_timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void heap_up(vial_loop *l, uint32_t i)
{
    vial_timer *t = l->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (l->heap[parent]->when <= t->when)
            break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void heap_down(vial_loop *l, uint32_t i)
{
    vial_timer *t = l->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= l->nheap)
            break;
        if (child + 1 < l->nheap && l->heap[child + 1]->when < l->heap[child]->when)
            child++;
        if (t->when <= l->heap[child]->when)
            break;
        heap_set(l, i, l->heap[child]);
        i = child;
    }
    heap_set(l, i, t);
}

void vial_timer_start(vial_loop *l, vial_timer *t, uint64_t when)
{
    if (t->slot) {
        uint64_t old = t->when;
        t->when = when;
        if (when < old)
            heap_up(l, t->slot - 1);
        else
            heap_down(l, t->slot - 1);
        return;
    }
    if (l->nheap == l->heap_cap) {
        uint32_t cap = l->heap_cap ? l->heap_cap * 2 : 256;
        vial_timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h)
            abort(); /* a loop that cannot keep time cannot keep its promises */
        l->heap = h;
        l->heap_cap = cap;
    }
    t->when = when;
    heap_set(l, l->nheap++, t);
    heap_up(l, l->nheap - 1);
}

void vial_timer_stop(vial_loop *l, vial_timer *t)
{
    if (!t->slot)
        return;
    uint32_t i = t->slot - 1;
    t->slot = 0;
    vial_timer *last = l->heap[--l->nheap];
    if (i == l->nheap)
        return;
    heap_set(l, i, last);
    if (i > 0 && l->heap[(i - 1) / 2]->when > last->when)
        heap_up(l, i);
    else
        heap_down(l, i);
}

static void run_timers(vial_loop *l)
{
    while (l->nheap && l->heap[0]->when <= l->now) {
        vial_timer *t = l->heap[0];
        uint64_t late = l->now - t->when;
        if (late > __atomic_load_n(&l->lag_max_ns, __ATOMIC_RELAXED))
            __atomic_store_n(&l->lag_max_ns, late, __ATOMIC_RELAXED);
        vial_timer_stop(l, t);
        t->cb(l, t);
    }
}

/* --- mailbox ---------------------------------------------------------------- */

void vial_loop_post(vial_loop *l, vial_msg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&l->mbox_lock);
    if (l->mbox_tail)
        l->mbox_tail->next = m;
    else
        l->mbox_head = m;
    l->mbox_tail = m;
    /* Only the first message after a drain pays for the eventfd write. */
    int signal = !l->mbox_signalled;
    l->mbox_signalled = 1;
    pthread_mutex_unlock(&l->mbox_lock);
    if (signal) {
        uint64_t one = 1;
        (void)!write(l->wake_io.fd, &one, sizeof one);
    }
}

static void drain_mailbox(vial_loop *l)
{
    pthread_mutex_lock(&l->mbox_lock);
    vial_msg *m = l->mbox_head;
    l->mbox_head = l->mbox_tail = NULL;
    l->mbox_signalled = 0;
    pthread_mutex_unlock(&l->mbox_lock);
    while (m) {
        vial_msg *next = m->next;
        m->cb(l, m);
        m = next;
    }
}

void vial_loop_defer(vial_loop *l, vial_msg *m)
{
    m->next = NULL;
    if (l->deferred_tail)
        l->deferred_tail->next = m;
    else
        l->deferred_head = m;
    l->deferred_tail = m;
}

static void run_deferred(vial_loop *l)
{
    while (l->deferred_head) {
        vial_msg *m = l->deferred_head;
        l->deferred_head = m->next;
        if (!l->deferred_head)
            l->deferred_tail = NULL;
        m->cb(l, m);
    }
}

static void wake_cb(vial_loop *l, vial_io *io, unsigned events)
{
    uint64_t v;
    (void)!read(io->fd, &v, sizeof v);
    drain_mailbox(l);
}

/* --- the loop ---------------------------------------------------------------- */

/* Set before the loop threads start, read as each loop is initialised.
 * io_uring where built: a kernel that refuses it costs one failed
 * io_uring_setup and a warning, then epoll (vial_loop_init). */
#ifdef VIAL_HAVE_URING
static const vial_backend *chosen_backend = &vial_backend_uring;
#else
static const vial_backend *chosen_backend = &vial_backend_epoll;
#endif

int vial_loop_set_backend(const char *name)
{
    if (!strcmp(name, "epoll")) {
        chosen_backend = &vial_backend_epoll;
        return 0;
    }
    if (!strcmp(name, "io_uring")) {
#ifdef VIAL_HAVE_URING
        chosen_backend = &vial_backend_uring;
        return 0;
#else
        return -ENOTSUP;
#endif
    }
    return -EINVAL;
}

int vial_loop_init(vial_loop *l, int id)
{
    memset(l, 0, sizeof *l);
    l->id = id;
    l->backend = chosen_backend;
    l->now = vial_clock_ns();
    pthread_mutex_init(&l->mbox_lock, NULL);
    int r = l->backend->init(l);
    if (r < 0 && l->backend != &vial_backend_epoll) {
        /* The kernel refused (io_uring_disabled, a seccomp filter, an old
         * kernel): serve on epoll rather than not at all, and say so once. */
        static atomic_int said;
        if (!atomic_exchange(&said, 1)) {
            char eb[96];
            vial_log(VIAL_LOG_WARN, "%s unavailable (%s): using epoll", l->backend->name,
                     strerror_r(-r, eb, sizeof eb));
        }
        l->backend = &vial_backend_epoll;
        r = l->backend->init(l);
    }
    if (r < 0)
        return r;
    l->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_io.fd < 0) {
        r = -errno;
        l->backend->fini(l);
        return r;
    }
    l->wake_io.cb = wake_cb;
    r = vial_io_add(l, &l->wake_io);
    if (r < 0) {
        close(l->wake_io.fd);
        l->backend->fini(l);
    }
    return r;
}

void vial_loop_at_exit(vial_loop *l, vial_msg *m)
{
    m->next = l->at_exit;
    l->at_exit = m;
}

void vial_loop_fini(vial_loop *l)
{
    vial_loop *prev = tls_loop;
    tls_loop = l; /* exit handlers may ask for the current loop */
    while (l->at_exit) {
        vial_msg *m = l->at_exit;
        l->at_exit = m->next;
        m->cb(l, m);
    }
    tls_loop = prev == l ? NULL : prev;
    vial_io_del(l, &l->wake_io);
    close(l->wake_io.fd);
    l->backend->fini(l);
    free(l->heap);
    l->heap = NULL;
    pthread_mutex_destroy(&l->mbox_lock);
}

int vial_io_add(vial_loop *l, vial_io *io)
{
    return l->backend->add(l, io);
}

int vial_io_del(vial_loop *l, vial_io *io)
{
    return l->backend->del(l, io);
}

void vial_io_close(vial_loop *l, vial_io *io)
{
    if (l->backend->close)
        l->backend->close(l, io);
    else
        close(io->fd);
}

int vial_accept_add(vial_loop *l, vial_acceptor *a)
{
    if (!l->backend->add_acceptor)
        return vial_io_add(l, &a->io);
    int r = l->backend->add_acceptor(l, a);
    return r < 0 ? r : 1;
}

int vial_accept_resume(vial_loop *l, vial_acceptor *a)
{
    return l->backend->resume_acceptor ? l->backend->resume_acceptor(l, a) : 0;
}

static void run_ready(vial_loop *l)
{
    /* Only what is queued now runs in this pass, so a coroutine that keeps
     * yielding cannot starve I/O. */
    vial_coro *tail = l->ready_tail;
    while (l->ready_head) {
        vial_coro *c = l->ready_head;
        l->ready_head = c->next_ready;
        if (!l->ready_head)
            l->ready_tail = NULL;
        c->queued = 0;
        vial_coro_resume(c);
        if (c == tail)
            break;
    }
}

int vial_loop_run_once(vial_loop *l, int timeout_ms)
{
    tls_loop = l;
    /* Coroutines woken or yielded since the last pass run after the poll,
     * never before it: a coroutine that yields because it spent its slice
     * (vial_coro_spend) resumes only once the I/O events and mailbox
     * messages that came meanwhile were handled. */
    if (l->ready_head || l->stopping)
        timeout_ms = 0; /* work is waiting, or the owner asked to stop: don't sleep */
    if (l->nheap) {
        uint64_t now = vial_clock_ns();
        uint64_t when = l->heap[0]->when;
        int t = when <= now ? 0 : (int)((when - now + 999999) / 1000000);
        if (timeout_ms < 0 || t < timeout_ms)
            timeout_ms = t;
    }
    int r = l->backend->poll(l, timeout_ms);
    l->now = vial_clock_ns();
    run_timers(l);
    run_ready(l);
    run_deferred(l);
    return r;
}

int vial_loop_run(vial_loop *l)
{
    tls_loop = l;
    vial_coro_install_overflow_handler();
    int r = 0;
    while (!l->stopping) {
        r = vial_loop_run_once(l, -1);
        if (r < 0 && r != -EINTR)
            break;
        r = 0;
    }
    if (l->backend->quiesce)
        l->backend->quiesce(l);
    return r;
}

void vial_loop_stop(vial_loop *l)
{
    l->stopping = 1;
}
