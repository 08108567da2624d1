/* Events, channels and semaphores: coordination between the tasks of one
 * request. Waiters are queued in FIFO order (runtime/driver.h's queue, the
 * record on the waiter's stack); a waiter that is cancelled after being
 * granted still takes what it was given, one cancelled before is passed
 * over, so nothing granted is lost. */
#include "app/app.h"
#include "runtime/driver.h"

#include <errno.h>
#include <string.h>

typedef vial_drv_queue wq;

/* Queues the running coroutine on q and waits; 0 when granted. */
static int wq_wait(vial_req *rq, wq *q)
{
    if (vial_req_is_sync(rq) || !vial_drv_self())
        return -EPERM;
    return vial_drv_queue_wait(q, 0, NULL);
}

/* Grants and wakes the first waiter; returns 0 when there was none. */
static int wq_grant_one(wq *q)
{
    return vial_drv_queue_wake_one(q, NULL);
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
