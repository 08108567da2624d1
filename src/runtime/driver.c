/* The driver kit (driver.h): thin, so that the drivers depend on these
 * names rather than on the loop's and the coroutine's layout. */
#include "runtime/driver.h"
#include "runtime/coro.h"
#include "runtime/pool.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define LOCALS ((int)(sizeof ((vial_loop *)0)->locals / sizeof(void *)))

vial_coro *vial_drv_self(void)
{
    return vial_coro_current();
}

vial_loop *vial_drv_loop(void)
{
    return vial_loop_current();
}

vial_loop *vial_drv_coro_loop(const vial_coro *co)
{
    return co->loop;
}

uint64_t vial_drv_now(const vial_loop *loop)
{
    return loop->now;
}

int vial_drv_doomed(const vial_coro *co)
{
    if (co->cancelled)
        return -ECANCELED;
    if (co->deadline && co->deadline <= co->loop->now)
        return -ETIMEDOUT;
    return 0;
}

int vial_drv_cancelled(void)
{
    vial_coro *co = vial_coro_current();
    return co ? vial_drv_doomed(co) : 0;
}

int vial_drv_wait(uint64_t until)
{
    return vial_coro_wait(until);
}

int vial_drv_park(void)
{
    return vial_coro_park();
}

void vial_drv_wake(vial_coro *co, int result)
{
    vial_coro_wake(co, result);
}

/* --- wait queue -------------------------------------------------------------- */

struct vial_drv_waiter {
    vial_drv_waiter *next, *prev;
    vial_coro *co;
    void *gift;
    int woken;
};

static void queue_unlink(vial_drv_queue *q, vial_drv_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
}

int vial_drv_queue_wait(vial_drv_queue *q, uint64_t until, void **gift)
{
    vial_drv_waiter w = {NULL, q->tail, vial_coro_current(), NULL, 0};
    if (gift)
        *gift = NULL;
    if (!w.co)
        return -EPERM;
    if (q->tail)
        q->tail->next = &w;
    else
        q->head = &w;
    q->tail = &w;
    int r = vial_coro_wait(until);
    if (!w.woken) {
        queue_unlink(q, &w);
        return r < 0 ? r : -EINTR;
    }
    if (gift)
        *gift = w.gift;
    return 0;
}

int vial_drv_queue_wake_one(vial_drv_queue *q, void *gift)
{
    while (q->head) {
        vial_drv_waiter *w = q->head;
        queue_unlink(q, w);
        /* One already woken (cancelled, timed out) but not yet run cannot
         * take the wake: it would be lost. It finds itself off the queue. */
        if (!w->co->parked)
            continue;
        w->woken = 1;
        w->gift = gift;
        vial_coro_wake(w->co, 0);
        return 1;
    }
    return 0;
}

void vial_drv_queue_wake_all(vial_drv_queue *q)
{
    while (vial_drv_queue_wake_one(q, NULL)) {
    }
}

/* --- timers ------------------------------------------------------------------- */

static void timer_fire(vial_loop *l, vial_timer *t)
{
    (void)l;
    vial_drv_timer *dt = vial_container_of(t, vial_drv_timer, t);
    dt->fn(dt);
}

void vial_drv_timer_init(vial_drv_timer *t, vial_loop *loop, vial_drv_timer_fn fn)
{
    memset(t, 0, sizeof *t);
    t->t.cb = timer_fire;
    t->loop = loop;
    t->fn = fn;
}

void vial_drv_timer_arm(vial_drv_timer *t, uint64_t ns)
{
    vial_timer_start(t->loop, &t->t, t->loop->now + ns);
}

void vial_drv_kick(vial_drv_timer *t, uint64_t ns)
{
    uint64_t when = t->loop->now + ns;
    if (!vial_timer_armed(&t->t) || t->t.when > when)
        vial_timer_start(t->loop, &t->t, when);
}

void vial_drv_timer_stop(vial_drv_timer *t)
{
    if (t->loop)
        vial_timer_stop(t->loop, &t->t);
}

int vial_drv_timer_armed(const vial_drv_timer *t)
{
    return vial_timer_armed(&t->t);
}

/* --- per-loop state ----------------------------------------------------------- */

typedef struct local_exit {
    vial_msg m;
    int key;
    void *value;
    void (*dtor)(void *value);
} local_exit;

static atomic_int next_key;

int vial_drv_key(void)
{
    int k = atomic_fetch_add(&next_key, 1);
    return k < LOCALS ? k : -1;
}

void *vial_drv_local_get(vial_loop *loop, int key)
{
    return key >= 0 && key < LOCALS ? loop->locals[key] : NULL;
}

static void local_exit_cb(vial_loop *loop, vial_msg *m)
{
    local_exit *e = (local_exit *)m;
    if (e->dtor)
        e->dtor(e->value);
    if (loop->locals[e->key] == e->value)
        loop->locals[e->key] = NULL;
    free(e);
}

int vial_drv_local_set(vial_loop *loop, int key, void *value, void (*dtor)(void *value))
{
    if (key < 0 || key >= LOCALS)
        return -EINVAL;
    local_exit *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->m.cb = local_exit_cb;
    e->key = key;
    e->value = value;
    e->dtor = dtor;
    loop->locals[key] = value;
    vial_loop_at_exit(loop, &e->m);
    return 0;
}

void vial_drv_defer(vial_loop *loop, vial_msg *m)
{
    vial_loop_defer(loop, m);
}

void vial_drv_defer_cancel(vial_loop *l, vial_msg *m)
{
    vial_msg *prev = NULL;
    for (vial_msg *it = l->deferred_head; it; prev = it, it = it->next) {
        if (it != m)
            continue;
        if (prev)
            prev->next = it->next;
        else
            l->deferred_head = it->next;
        if (l->deferred_tail == it)
            l->deferred_tail = prev;
        return;
    }
}

/* --- work on the pool --------------------------------------------------------- */

typedef struct run_job {
    vial_job base; /* first: the pool hands us &base, the loop &base.done */
    void (*fn)(void *);
    void *arg;
    vial_coro *waiter;
    int finished;
} run_job;

static void run_work(vial_job *b)
{
    run_job *j = (run_job *)b;
    j->fn(j->arg);
}

static void run_done(vial_loop *l, vial_msg *m)
{
    (void)l;
    run_job *j = (run_job *)m;
    j->finished = 1;
    vial_coro_wake(j->waiter, 0);
}

int vial_drv_run(struct vial_pool *pool, void (*fn)(void *), void (*interrupt)(void *), void *arg)
{
    vial_coro *self = vial_coro_current();
    if (!self)
        return -EPERM;
    if (!interrupt)
        return vial_pool_run(pool, fn, arg);
    run_job j = {.fn = fn, .arg = arg, .waiter = self};
    j.base.work = run_work;
    j.base.loop = self->loop;
    j.base.done.cb = run_done;
    if (vial_pool_submit(pool, &j.base) < 0)
        return -EAGAIN;
    /* j lives on this stack: wait for it whatever happens. The first
     * cancellation or timeout interrupts fn; later wakes are absorbed. */
    int why = 0;
    while (!j.finished) {
        int w = why ? vial_coro_park() : vial_coro_wait(0);
        if (w < 0 && !j.finished && !why) {
            why = w;
            if (interrupt)
                interrupt(arg);
        }
    }
    return why;
}

/* --- file descriptors ---------------------------------------------------------- */

unsigned vial_drv_poll(int fd, unsigned events)
{
    struct pollfd p = {.fd = fd, .events = 0};
    if (events & VIAL_IO_READ)
        p.events |= POLLIN | POLLRDHUP;
    if (events & VIAL_IO_WRITE)
        p.events |= POLLOUT;
    if (poll(&p, 1, 0) <= 0)
        return 0;
    unsigned r = 0;
    if (p.revents & POLLIN)
        r |= VIAL_IO_READ;
    if (p.revents & POLLRDHUP)
        r |= VIAL_IO_READ | VIAL_IO_HUP;
    if (p.revents & POLLOUT)
        r |= VIAL_IO_WRITE;
    if (p.revents & POLLHUP)
        r |= VIAL_IO_READ | VIAL_IO_WRITE | VIAL_IO_HUP;
    if (p.revents & (POLLERR | POLLNVAL))
        r |= VIAL_IO_READ | VIAL_IO_WRITE | VIAL_IO_ERR;
    return r;
}

int vial_drv_io_add(vial_loop *loop, vial_io *io)
{
    return vial_io_add(loop, io);
}

int vial_drv_io_del(vial_loop *loop, vial_io *io)
{
    return vial_io_del(loop, io);
}
