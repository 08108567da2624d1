/* Events, channels and semaphores: coordination between the tasks of one
 * request. Waiters are queued in FIFO order with their record on their own
 * stack; a waker marks the record granted before waking, so a waiter that
 * is cancelled after being granted still takes what it was given. */
#include "app/app.h"
#include "runtime/coro.h"

#include <errno.h>
#include <string.h>

typedef struct waiter {
    vial_coro *c;
    struct waiter *next, *prev;
    int granted;
    int queued;
} waiter;

typedef struct wq {
    waiter *head, *tail;
} wq;

static void wq_push(wq *q, waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->queued = 1;
}

static void wq_remove(wq *q, waiter *w)
{
    if (!w->queued)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->queued = 0;
}

/* Grants and wakes the first waiter; returns 0 when there was none. */
static int wq_grant_one(wq *q)
{
    waiter *w = q->head;
    if (!w)
        return 0;
    wq_remove(q, w);
    w->granted = 1;
    vial_coro_wake(w->c, 0);
    return 1;
}

/* Queues the running coroutine on q and waits; 0 when granted. */
static int wq_wait(vial_req *rq, wq *q)
{
    vial_coro *c = rq->is_sync ? NULL : vial_coro_current();
    if (!c)
        return -EPERM;
    waiter w = {.c = c};
    wq_push(q, &w);
    int r = vial_coro_wait(0);
    wq_remove(q, &w);
    return w.granted ? 0 : (r < 0 ? r : -EINTR);
}

/* --- events ----------------------------------------------------------------------- */

struct vial_event {
    int set;
    wq waiters;
};

vial_event *vial_event_new(vial_req *rq)
{
    vial_event *e = vial_alloc(rq, sizeof *e);
    if (e)
        memset(e, 0, sizeof *e);
    return e;
}

int vial_event_wait(vial_req *rq, vial_event *e)
{
    if (e->set)
        return 0;
    int r = wq_wait(rq, &e->waiters);
    return e->set ? 0 : r;
}

void vial_event_set(vial_event *e)
{
    e->set = 1;
    while (wq_grant_one(&e->waiters))
        ;
}

int vial_event_is_set(const vial_event *e)
{
    return e->set;
}

/* --- channels ----------------------------------------------------------------------- */

struct vial_chan {
    void **items;
    size_t cap, head, len;
    int closed;
    wq senders, receivers;
};

vial_chan *vial_chan_new(vial_req *rq, size_t capacity)
{
    if (!capacity)
        capacity = 1;
    vial_chan *ch = vial_alloc(rq, sizeof *ch);
    if (!ch)
        return NULL;
    memset(ch, 0, sizeof *ch);
    ch->items = vial_alloc(rq, capacity * sizeof *ch->items);
    ch->cap = capacity;
    return ch->items ? ch : NULL;
}

int vial_chan_send(vial_req *rq, vial_chan *ch, void *item)
{
    while (!ch->closed && ch->len == ch->cap) {
        int r = wq_wait(rq, &ch->senders);
        if (r < 0)
            return r;
    }
    if (ch->closed)
        return -EPIPE;
    ch->items[(ch->head + ch->len++) % ch->cap] = item;
    wq_grant_one(&ch->receivers);
    return 0;
}

int vial_chan_recv(vial_req *rq, vial_chan *ch, void **item)
{
    while (!ch->len && !ch->closed) {
        int r = wq_wait(rq, &ch->receivers);
        if (r < 0 && !ch->len)
            return r;
    }
    if (!ch->len)
        return -EPIPE;
    *item = ch->items[ch->head];
    ch->head = (ch->head + 1) % ch->cap;
    ch->len--;
    wq_grant_one(&ch->senders);
    return 0;
}

void vial_chan_close(vial_chan *ch)
{
    ch->closed = 1;
    while (wq_grant_one(&ch->receivers))
        ;
    while (wq_grant_one(&ch->senders))
        ;
}

/* --- semaphores ------------------------------------------------------------------------ */

struct vial_sem {
    unsigned count;
    wq waiters;
};

vial_sem *vial_sem_new(vial_req *rq, unsigned n)
{
    vial_sem *s = vial_alloc(rq, sizeof *s);
    if (s) {
        memset(s, 0, sizeof *s);
        s->count = n;
    }
    return s;
}

int vial_sem_acquire(vial_req *rq, vial_sem *s)
{
    if (s->count && !s->waiters.head) {
        s->count--;
        return 0;
    }
    return wq_wait(rq, &s->waiters); /* granted: the releaser handed its slot over */
}

void vial_sem_release(vial_sem *s)
{
    if (!wq_grant_one(&s->waiters))
        s->count++;
}
