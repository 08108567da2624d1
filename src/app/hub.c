/* The broadcast hub (include/vial/realtime.h).
 *
 * A topic keeps one node per loop thread that has subscribers there. A
 * publish copies the message once and posts one item per such node; on the
 * node's loop the item is queued for each local subscriber, which only that
 * loop touches, so a subscriber's queue and its wake need no lock. The
 * encoded forms (websocket frame, SSE bytes) hang on the message, built by
 * the first subscriber that needs one and shared by all.
 *
 * The hub's lock guards the topic list and each node's subscriber count;
 * publishes post under it, so all loops see a topic's messages in one order
 * (mailboxes are FIFO). Nodes live as long as the hub: an item in flight may
 * reach a node whose subscribers have all left, and finds it empty. */
#include "app/hub.h"
#include "app/app.h"
#include "app/request_state.h"
#include "http/exchange.h"
#include "http/server.h"
#include "http/websocket.h"
#include "runtime/coro.h"
#include "runtime/driver.h"
#include "runtime/loop.h"
#include "runtime/sendq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

typedef struct hub_msg {
    atomic_uint refs;
    int opcode;        /* its websocket frame's */
    size_t cost;       /* against byte bounds: len + VIAL_HUB_MSG_OVERHEAD */
    vial_hub_sender *from; /* charged for it (sender_max topics), or NULL */
    vial_sse_event ev; /* points into store */
    /* built once, at the first need: the websocket frame, the SSE bytes, and
     * those as one HTTP chunk (an SSE subscriber's direct send) */
    _Atomic(vial_shared_bytes *) frame, sse, chunk;
    char store[];
} hub_msg;

typedef struct tnode tnode;

/* How many regions a direct send reads besides the subscription. */
#define SUB_HOT 4

struct vial_sub {
    /* What the drain reads for each subscriber, first: one cache line. */
    const vial_hub_direct *direct; /* on kick_arg */
    void *kick_arg;
    size_t len;
    int ended;              /* dropped for being slow */
    int direct_form;        /* what direct sends: FORM_* */
    /* Where direct(kick_arg, ...) will read (the session, its connection):
     * the drain prefetches them a subscriber ahead, so the walk over
     * 10,000 sessions does not wait on memory at each one. */
    const void *hot[SUB_HOT];
    uint8_t hot_lines[SUB_HOT];
    tnode *node;            /* NULL once detached */
    size_t idx;             /* in node->subs */
    hub_msg **ring;
    size_t cap, head;       /* cap: the queue's bound */
    size_t slots;           /* ring's size: grows up to cap as the queue fills */
    int policy;
    uint64_t dropped;
    hub_msg *cur;           /* what vial_sub_next handed out last */
    vial_coro *waiter;      /* parked in vial_sub_wait */
    void (*kick)(void *arg);
    int poked;              /* a direct send left a tail to flush: sub_wait returns */
    int counted;            /* in its node's nsubs (until it ends or leaves) */
    /* vial_hub_limits: bytes is what the ring holds (costs) */
    size_t bytes, max_bytes;
    uint64_t stall_ns;
    uint64_t moved;         /* loop time its queue last moved, or became non-empty */
};

static void sub_set_hot(vial_sub *s, int i, const void *p, unsigned lines)
{
    s->hot[i] = p;
    s->hot_lines[i] = (uint8_t)lines;
}

/* The next subscriber's lines, while this one's send runs in the kernel
 * (a prefetch never faults: a stale address costs nothing). */
static void sub_prefetch(const vial_sub *s)
{
    for (int i = 0; i < SUB_HOT; i++)
        for (unsigned l = 0; l < s->hot_lines[i]; l++)
            __builtin_prefetch((const char *)s->hot[i] + 64 * l);
}

/* The encoded forms a direct send takes. */
enum { FORM_WS, FORM_SSE_CHUNK, FORM_SSE, NFORMS };

/* A topic on one loop thread. Publishers queue messages here (under the
 * hub's lock) and post the node once until its loop takes them: a
 * publisher faster than the loop costs at most the node's queue, never a
 * mailbox item per message. */
struct tnode {
    vial_loop *loop;
    /* loop thread only: an array, not a list, so the drain's walk reads
     * one line per 8 subscribers and can prefetch ahead */
    vial_sub **subs;
    size_t nlocal, localcap;
    hub_msg **batch;        /* loop thread only: what the last take moved out */
    uint32_t *batch_n;      /* beside batch: qn of each */
    size_t batchcap;
    /* under the hub's lock */
    size_t nsubs;
    hub_msg **q;
    uint32_t *qn;           /* beside q: nsubs when queued (what its sender was charged) */
    size_t qcap, qhead, qlen;
    size_t qlimit;          /* q grows up to this (lossless topics), else qcap */
    size_t qbytes, qmax_bytes; /* costs queued; the topic's max_bytes (0: none) */
    uint64_t lost;          /* dropped here, the queue being full */
    int posted;
    vial_msg m;
    tnode *next;
};

typedef struct topic {
    char *name;
    int policy;
    size_t qlen;
    vial_hub_limits lim;
    tnode *nodes;
    struct topic *next;
} topic;

struct vial_hub {
    pthread_mutex_t lock;
    topic *topics;
    /* Set before vial_run, read by publishers after: no lock. */
    vial_hub_bridge *bridge;
};

static atomic_uint_fast64_t n_published, n_delivered, n_dropped, n_disconnected;
static atomic_int_fast64_t n_subscribers;

void vial_hub_stats(vial_hub_counts *out)
{
    int64_t s = atomic_load(&n_subscribers);
    out->published = atomic_load(&n_published);
    out->delivered = atomic_load(&n_delivered);
    out->dropped = atomic_load(&n_dropped);
    out->disconnected = atomic_load(&n_disconnected);
    out->subscribers = s > 0 ? (uint64_t)s : 0;
    vial_hub_bridge_stats(out);
}

void vial_shared_bytes_unref(vial_shared_bytes *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
}

void vial_hub_sender_unref(vial_hub_sender *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        s->release(s);
}

/* amount of s's publishes left subscribers' queues (or were never queued):
 * a sender held for that is told once they fall to half its bound. */
static void sender_release(vial_hub_sender *s, size_t amount)
{
    if (!amount)
        return;
    size_t left = atomic_fetch_sub(&s->produced, amount) - amount;
    if (left <= atomic_load(&s->max) / 2 && atomic_load(&s->waiting) && atomic_exchange(&s->waiting, 0))
        s->wake(s);
}

/* The session whose coroutine (or an ancestor of it: a task it spawned)
 * publishes, or NULL (a worker thread, a timer of the app's). */
static vial_hub_sender *sender_current(void)
{
    for (vial_coro *c = vial_coro_current(); c; c = c->parent)
        if (c->local)
            return c->local;
    return NULL;
}

static void msg_unref(hub_msg *m)
{
    if (atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    vial_hub_sender_unref(m->from);
    vial_shared_bytes_unref(atomic_load(&m->frame));
    vial_shared_bytes_unref(atomic_load(&m->sse));
    vial_shared_bytes_unref(atomic_load(&m->chunk));
    free(m);
}

/* --- hubs and topics --------------------------------------------------------------------- */

vial_hub *vial_hub_new(void)
{
    vial_hub *h = calloc(1, sizeof *h);
    if (h)
        pthread_mutex_init(&h->lock, NULL);
    return h;
}

void vial_hub_free(vial_hub *h)
{
    if (!h)
        return;
    vial_hub_bridge_free(h->bridge);
    while (h->topics) {
        topic *t = h->topics;
        h->topics = t->next;
        while (t->nodes) {
            tnode *n = t->nodes;
            t->nodes = n->next;
            for (; n->qlen; n->qlen--, n->qhead = (n->qhead + 1) % n->qcap)
                msg_unref(n->q[n->qhead]);
            free(n->q);
            free(n->qn);
            free(n->batch);
            free(n->batch_n);
            free(n->subs);
            free(n); /* the start of its node_box */
        }
        free(t->name);
        free(t);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* Under the lock. */
static topic *topic_find(vial_hub *h, const char *name, int create)
{
    for (topic *t = h->topics; t; t = t->next)
        if (!strcmp(t->name, name))
            return t;
    if (!create)
        return NULL;
    topic *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    t->policy = VIAL_HUB_DROP_OLDEST;
    t->qlen = VIAL_HUB_QUEUE_DEFAULT;
    t->next = h->topics;
    h->topics = t;
    return t;
}

int vial_hub_set_policy(vial_hub *h, const char *name, int policy, size_t queue_len)
{
    if (!h || !name ||
        (policy != VIAL_HUB_DROP_OLDEST && policy != VIAL_HUB_DISCONNECT && policy != VIAL_HUB_ABORT) ||
        queue_len < 1 || queue_len > VIAL_HUB_QUEUE_MAX)
        return -EINVAL;
    pthread_mutex_lock(&h->lock);
    topic *t = topic_find(h, name, 1);
    if (t) {
        t->policy = policy;
        t->qlen = queue_len;
    }
    pthread_mutex_unlock(&h->lock);
    return t ? 0 : -ENOMEM;
}

int vial_hub_set_limits(vial_hub *h, const char *name, const vial_hub_limits *l)
{
    if (!h || !name)
        return -EINVAL;
    pthread_mutex_lock(&h->lock);
    topic *t = topic_find(h, name, 1);
    if (t)
        t->lim = l ? *l : (vial_hub_limits){0};
    pthread_mutex_unlock(&h->lock);
    return t ? 0 : -ENOMEM;
}

/* --- subscribers (on their loop thread) ---------------------------------------------------- */

static void sub_notify(vial_sub *s)
{
    if (s->waiter)
        vial_coro_wake(s->waiter, 0);
    if (s->kick)
        s->kick(s->kick_arg);
}

/* Takes the head off the ring: its cost leaves the byte count and its
 * sender's; the caller owns the reference. */
static hub_msg *ring_shift(vial_sub *s)
{
    hub_msg *m = s->ring[s->head];
    s->head = (s->head + 1) % s->slots;
    s->len--;
    s->bytes -= m->cost;
    if (m->from)
        sender_release(m->from, m->cost);
    return m;
}

static void ring_clear(vial_sub *s)
{
    while (s->len)
        msg_unref(ring_shift(s));
}

static void sub_drop_oldest(vial_sub *s)
{
    msg_unref(ring_shift(s));
    s->dropped++;
    atomic_fetch_add(&n_dropped, 1);
}

/* A subscriber that keeps up holds a message or two: its ring starts small
 * (10,000 idle subscribers, 2 KiB each at the full bound) and doubles when
 * a burst fills it. 0, or -ENOMEM (then the queue counts as full). */
static int ring_grow(vial_sub *s)
{
    size_t n = s->slots * 2 < s->cap ? s->slots * 2 : s->cap;
    hub_msg **r = malloc(n * sizeof *r);
    if (!r)
        return -ENOMEM;
    for (size_t i = 0; i < s->len; i++) /* head first: the order stays */
        r[i] = s->ring[(s->head + i) % s->slots];
    free(s->ring);
    s->head = 0;
    s->ring = r;
    s->slots = n;
    return 0;
}

/* The subscriber fell a queue behind under VIAL_HUB_DISCONNECT: it gets
 * nothing more, and learns it at its next wait. */
static vial_hub *node_hub(tnode *n);

static void sub_end_slow(vial_sub *s)
{
    s->ended = s->policy == VIAL_HUB_ABORT ? VIAL_HUB_ABORT : VIAL_HUB_DISCONNECT;
    ring_clear(s);
    atomic_fetch_add(&n_disconnected, 1);
    /* No longer counted among the topic's subscribers (what a group's
     * broadcast returns); it leaves the array when its owner detaches it. */
    if (s->counted && s->node) {
        vial_hub *h = node_hub(s->node);
        pthread_mutex_lock(&h->lock);
        s->node->nsubs--;
        pthread_mutex_unlock(&h->lock);
        s->counted = 0;
    }
    sub_notify(s);
}

/* Queues m for s (the drain, on s's loop at loop time now). Returns 1 when
 * it was queued. */
static int sub_enqueue(vial_sub *s, hub_msg *m, uint64_t now)
{
    if (s->ended)
        return 0;
    if (s->len && (s->max_bytes || s->stall_ns)) {
        int over = s->max_bytes && s->bytes + m->cost > s->max_bytes;
        if (s->policy != VIAL_HUB_DROP_OLDEST) {
            if (over || (s->stall_ns && now - s->moved > s->stall_ns)) {
                sub_end_slow(s);
                return 0;
            }
        } else if (over) {
            while (s->len && s->bytes + m->cost > s->max_bytes)
                sub_drop_oldest(s);
        }
    }
    if (s->len == s->slots && s->slots < s->cap)
        (void)ring_grow(s);
    if (s->len == s->slots) {
        if (s->policy != VIAL_HUB_DROP_OLDEST) {
            sub_end_slow(s);
            return 0;
        }
        sub_drop_oldest(s);
    }
    if (!s->len)
        s->moved = now; /* the stall clock starts */
    atomic_fetch_add(&m->refs, 1);
    s->ring[(s->head + s->len++) % s->slots] = m;
    s->bytes += m->cost;
    if (m->from)
        atomic_fetch_add(&m->from->produced, m->cost);
    sub_notify(s);
    return 1;
}

/* A loop that fell a whole queue behind its publishers lost messages for
 * every subscriber it has: each takes that as its policy says. */
static void sub_lost(vial_sub *s, uint64_t lost)
{
    if (s->ended)
        return;
    if (s->policy != VIAL_HUB_DROP_OLDEST) {
        sub_end_slow(s);
        return;
    }
    s->dropped += lost;
    atomic_fetch_add(&n_dropped, lost);
}

static vial_shared_bytes *shared_once(_Atomic(vial_shared_bytes *) *slot,
                                      vial_shared_bytes *(*build)(const hub_msg *m), const hub_msg *m);
static vial_shared_bytes *build_frame(const hub_msg *m);
static vial_shared_bytes *build_sse(const hub_msg *m);
static vial_shared_bytes *build_chunk(const hub_msg *m);

/* A subscriber with nothing queued, parked idle, takes the message's
 * encoded form straight to its socket from the drain: no queue entry, no
 * wake of its coroutine, no allocation, one send (in a batch of them). The
 * descriptor to send *f on, or -1. form[] is built at the first need and
 * shared by the node's subscribers. */
static int sub_direct_fd(vial_sub *s, hub_msg *m, vial_shared_bytes **form, vial_shared_bytes **f)
{
    if (!s->direct || s->len || s->ended)
        return -1;
    vial_shared_bytes **b = &form[s->direct_form];
    if (!*b) {
        if (s->direct_form == FORM_WS)
            *b = shared_once(&m->frame, build_frame, m);
        else if (s->direct_form == FORM_SSE_CHUNK)
            *b = shared_once(&m->chunk, build_chunk, m);
        else
            *b = shared_once(&m->sse, build_sse, m);
        if (!*b)
            return -1;
    }
    *f = *b;
    return s->direct->fd(s->kick_arg, (*b)->len);
}

/* A drain's direct sends go to the kernel in batches of this many: one
 * system call each (runtime/sendq.h) instead of one per subscriber. */
#define DRAIN_BATCH 256

typedef struct drain_batch {
    vial_loop *loop;
    size_t n;
    uint64_t direct; /* delivered by direct sends */
    vial_send send[DRAIN_BATCH];
    vial_sub *sub[DRAIN_BATCH];
} drain_batch;

/* Sends the batch; whoever did not take its message gets it queued. */
static void batch_flush(drain_batch *b, hub_msg *m)
{
    if (!b->n)
        return;
    vial_send_many(b->loop, b->send, b->n);
    for (size_t i = 0; i < b->n; i++) {
        vial_sub *s = b->sub[i];
        vial_send *v = &b->send[i];
        if (s->direct->done(s->kick_arg, v->p, v->len, v->res))
            b->direct++;
        else
            sub_enqueue(s, m, b->loop->now);
    }
    b->n = 0;
}

/* On the node's loop: takes what publishers queued, hands it to each
 * subscriber of this thread. */
static void node_deliver(vial_loop *l, vial_msg *mm)
{
    tnode *n = (tnode *)((char *)mm - offsetof(tnode, m));
    vial_hub *h = node_hub(n);
    pthread_mutex_lock(&h->lock);
    if (n->batchcap < n->qlen) { /* a lossless topic's queue grew */
        hub_msg **b = realloc(n->batch, n->qcap * sizeof *b);
        if (b)
            n->batch = b;
        uint32_t *bn = b ? realloc(n->batch_n, n->qcap * sizeof *bn) : NULL;
        if (bn) {
            n->batch_n = bn;
            n->batchcap = n->qcap;
        }
    }
    size_t k = 0;
    for (; n->qlen && k < n->batchcap; n->qlen--, n->qhead = (n->qhead + 1) % n->qcap) {
        n->batch_n[k] = n->qn[n->qhead];
        n->qbytes -= n->q[n->qhead]->cost;
        n->batch[k++] = n->q[n->qhead];
    }
    uint64_t lost = n->lost;
    n->lost = 0;
    if (n->qlen) /* no room for all (out of memory): the rest next turn */
        vial_loop_post(n->loop, &n->m);
    else
        n->posted = 0;
    pthread_mutex_unlock(&h->lock);
    uint64_t now = n->loop->now;
    vial_sub **subs = n->subs;
    size_t ns = n->nlocal;
    if (lost)
        for (size_t j = 0; j < ns; j++)
            sub_lost(subs[j], lost);
    /* The batch is at most the node's queue; the first 64 messages' forms
     * ride beside it (the rest, rare, take the queue). */
    vial_shared_bytes *frames[64][NFORMS];
    size_t nf = k < 64 ? k : 64;
    memset(frames, 0, nf * sizeof *frames);
    drain_batch *b = NULL;
    if (nf && ns)
        b = malloc(sizeof *b); /* 10 KiB: not on the loop's stack */
    uint64_t direct = 0;
    /* Message by message, so that a subscriber's direct send of one has
     * its result (sent, or queued) before the next is offered to it. */
    for (size_t i = 0; i < k; i++) {
        hub_msg *m = n->batch[i];
        if (b) {
            b->loop = l;
            b->n = 0;
            b->direct = 0;
        }
        /* Two ahead for the subscriptions, one ahead for what their
         * direct sends read: each arrives while this one is handled
         * (sub_enqueue wakes only queue coroutines, and batch_flush runs
         * no coroutine: nothing detaches during the walk). */
        for (size_t j = 0; j < 2 && j < ns; j++)
            __builtin_prefetch(subs[j]);
        for (size_t j = 0; j < ns; j++) {
            vial_sub *s = subs[j];
            if (j + 2 < ns) {
                __builtin_prefetch(subs[j + 2]);
                __builtin_prefetch((const char *)subs[j + 2] + 63); /* calloc: may straddle */
            }
            if (j + 1 < ns)
                sub_prefetch(subs[j + 1]);
            vial_shared_bytes *f = NULL;
            int fd = b && i < nf ? sub_direct_fd(s, m, frames[i], &f) : -1;
            if (fd < 0) {
                sub_enqueue(s, m, now);
                continue;
            }
            b->send[b->n] = (vial_send){fd, f->bytes, f->len, 0};
            b->sub[b->n++] = s;
            if (b->n == DRAIN_BATCH)
                batch_flush(b, m);
        }
        if (b) {
            batch_flush(b, m);
            direct += b->direct;
        }
    }
    free(b);
    if (direct)
        atomic_fetch_add(&n_delivered, direct);
    /* What the publishers were charged for this thread's subscribers at the
     * publish: the queued copies carry their own charge now. */
    for (size_t i = 0; i < k; i++)
        if (n->batch[i]->from)
            sender_release(n->batch[i]->from, n->batch[i]->cost * n->batch_n[i]);
    for (size_t i = 0; i < nf; i++)
        for (int f = 0; f < NFORMS; f++)
            vial_shared_bytes_unref(frames[i][f]);
    for (size_t i = 0; i < k; i++)
        msg_unref(n->batch[i]);
}

/* A node and the hub it belongs to: its loop callback needs the lock. */
typedef struct node_box {
    tnode node;
    vial_hub *hub;
} node_box;

static vial_hub *node_hub(tnode *n)
{
    return ((node_box *)n)->hub;
}

/* A lossless topic's queue doubles rather than drop (under the lock). 0 or
 * -ENOMEM. */
static int node_grow(tnode *n)
{
    size_t cap = n->qcap * 2 < n->qlimit ? n->qcap * 2 : n->qlimit;
    hub_msg **q = malloc(cap * sizeof *q);
    uint32_t *qn = malloc(cap * sizeof *qn);
    if (!q || !qn) {
        free(q);
        free(qn);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n->qlen; i++) { /* head first: the order stays */
        q[i] = n->q[(n->qhead + i) % n->qcap];
        qn[i] = n->qn[(n->qhead + i) % n->qcap];
    }
    free(n->q);
    free(n->qn);
    n->q = q;
    n->qn = qn;
    n->qhead = 0;
    n->qcap = cap;
    return 0;
}

/* The topic's bounds for its node (under the lock): a node made before
 * vial_hub_set_limits takes them at its next subscription. */
static void node_apply(tnode *n, const topic *t)
{
    size_t len = t->qlen < 64 ? 64 : t->qlen;
    n->qmax_bytes = t->lim.max_bytes;
    n->qlimit = n->qmax_bytes && len > n->qcap ? len : n->qcap;
}

static tnode *node_new(vial_hub *h, vial_loop *loop, const topic *t)
{
    node_box *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    tnode *n = &b->node;
    b->hub = h;
    n->loop = loop;
    /* At least a burst's worth: a loop is briefly busy now and then. A
     * lossless topic's starts there and grows. */
    n->qcap = t->qlen < 64 || t->lim.max_bytes ? 64 : t->qlen;
    n->q = malloc(n->qcap * sizeof *n->q);
    n->qn = malloc(n->qcap * sizeof *n->qn);
    n->batch = malloc(n->qcap * sizeof *n->batch);
    n->batch_n = malloc(n->qcap * sizeof *n->batch_n);
    if (!n->q || !n->qn || !n->batch || !n->batch_n) {
        free(n->q);
        free(n->qn);
        free(n->batch);
        free(n->batch_n);
        free(b);
        return NULL;
    }
    n->batchcap = n->qcap;
    node_apply(n, t);
    n->m.cb = node_deliver;
    return n;
}

/* The hub a subscription belongs to, kept beside it. */
typedef struct sub_box {
    vial_sub sub;
    vial_hub *hub;
} sub_box;

/* Attaches a new subscriber on this loop thread. */
static vial_sub *sub_attach(vial_hub *h, const char *name)
{
    /* A coroutine's own loop: the test client runs its loop by hand. */
    vial_coro *co = vial_coro_current();
    vial_loop *loop = co ? co->loop : vial_loop_current();
    if (!h || !name || !loop)
        return NULL;
    sub_box *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->hub = h;
    vial_sub *s = &b->sub;
    pthread_mutex_lock(&h->lock);
    topic *t = topic_find(h, name, 1);
    tnode *n = NULL;
    if (t) {
        for (n = t->nodes; n && n->loop != loop; n = n->next)
            ;
        if (!n && (n = node_new(h, loop, t))) {
            n->next = t->nodes;
            t->nodes = n;
        }
        if (n) {
            node_apply(n, t);
            s->policy = t->policy;
            s->cap = t->qlen;
            s->max_bytes = t->lim.max_bytes;
            s->stall_ns = (uint64_t)t->lim.stall_ms * 1000000ull;
        }
    }
    if (n)
        s->slots = s->cap < 4 ? s->cap : 4;
    if (n && (s->ring = malloc(s->slots * sizeof *s->ring)))
        n->nsubs++;
    else
        n = NULL;
    pthread_mutex_unlock(&h->lock);
    /* n->subs is this thread's: grown outside the lock */
    if (n && n->nlocal == n->localcap) {
        size_t cap = n->localcap ? n->localcap * 2 : 16;
        vial_sub **a = realloc(n->subs, cap * sizeof *a);
        if (a) {
            n->subs = a;
            n->localcap = cap;
        } else {
            pthread_mutex_lock(&h->lock);
            n->nsubs--;
            pthread_mutex_unlock(&h->lock);
            free(s->ring);
            n = NULL;
        }
    }
    if (!n) {
        free(b);
        return NULL;
    }
    /* Items posted after the count went up find it in the array: they run
     * on this thread, after this. */
    s->node = n;
    s->counted = 1;
    s->idx = n->nlocal;
    n->subs[n->nlocal++] = s;
    atomic_fetch_add(&n_subscribers, 1);
    return s;
}

static void sub_detach(vial_sub *s, vial_hub *h)
{
    tnode *n = s->node;
    if (!n)
        return;
    vial_sub *last = n->subs[--n->nlocal]; /* takes s's place */
    n->subs[s->idx] = last;
    last->idx = s->idx;
    s->node = NULL;
    if (s->counted) {
        pthread_mutex_lock(&h->lock);
        n->nsubs--;
        pthread_mutex_unlock(&h->lock);
        s->counted = 0;
    }
    ring_clear(s);
    if (s->cur) {
        msg_unref(s->cur);
        s->cur = NULL;
    }
    atomic_fetch_sub(&n_subscribers, 1);
}

static void sub_cleanup(void *arg)
{
    sub_box *b = arg;
    sub_detach(&b->sub, b->hub);
    free(b->sub.ring);
    free(b);
}

static vial_sub *sub_new(vial_hub *h, const char *name)
{
    return sub_attach(h, name);
}

vial_sub *vial_hub_subscribe(vial_req *rq, vial_hub *h, const char *name)
{
    if (!rq || vial_req_is_sync(rq) || !vial_coro_current())
        return NULL;
    vial_sub *s = sub_new(h, name);
    if (s && vial_exchange_defer(rq, sub_cleanup, s) < 0) {
        sub_cleanup(s);
        return NULL;
    }
    return s;
}

vial_sub *vial_hub_sub_open(vial_hub *h, const char *name, void (*kick)(void *arg), void *arg)
{
    vial_sub *s = sub_new(h, name);
    if (s) {
        s->kick = kick;
        s->kick_arg = arg;
    }
    return s;
}

void vial_hub_sub_set_direct(vial_sub *s, const vial_hub_direct *ops, const void *hot, unsigned hot_lines,
                             const void *hot2, unsigned hot2_lines)
{
    s->direct = ops;
    s->direct_form = FORM_WS;
    sub_set_hot(s, 0, hot, hot_lines);
    sub_set_hot(s, 1, hot2, hot2_lines);
}

void vial_hub_sub_free(vial_sub *s)
{
    if (s)
        sub_cleanup(s);
}

void vial_sub_close(vial_sub *s)
{
    if (s)
        sub_detach(s, ((sub_box *)s)->hub);
}

uint64_t vial_sub_dropped(const vial_sub *s)
{
    return s->dropped;
}

int vial_sub_ended(const vial_sub *s)
{
    return s->ended;
}

void vial_sub_touch(vial_sub *s)
{
    if (s->node)
        s->moved = s->node->loop->now;
}

/* Awaits a queued message: 0 when one is, else the reason. */
static int sub_wait(vial_sub *s, uint64_t timeout_ms)
{
    vial_coro *self = vial_coro_current();
    if (!self)
        return -EPERM;
    uint64_t until = timeout_ms ? self->loop->now + timeout_ms * 1000000ull : 0;
    for (;;) {
        if (s->ended)
            return -ENOBUFS;
        if (!s->node)
            return -EPIPE;
        if (s->len)
            return 0;
        if (s->poked) {
            s->poked = 0;
            return -EINPROGRESS;
        }
        s->waiter = self;
        int r = vial_coro_wait(until);
        s->waiter = NULL;
        if (r < 0 && !s->len && !s->ended && !s->poked)
            return r;
        if (r == -ECANCELED)
            return r;
    }
}

static hub_msg *sub_pop(vial_sub *s)
{
    hub_msg *m = ring_shift(s);
    s->moved = s->node->loop->now;
    atomic_fetch_add(&n_delivered, 1);
    return m;
}

int vial_sub_next(vial_sub *s, vial_sse_event *out, uint64_t timeout_ms)
{
    if (s->cur) {
        msg_unref(s->cur);
        s->cur = NULL;
    }
    int r = sub_wait(s, timeout_ms);
    if (r < 0)
        return r;
    s->cur = sub_pop(s);
    *out = s->cur->ev;
    return 0;
}

/* Builds *slot once: the first taker wins, a racing one frees its copy. */
static vial_shared_bytes *shared_once(_Atomic(vial_shared_bytes *) *slot, vial_shared_bytes *(*build)(const hub_msg *m),
                                      const hub_msg *m)
{
    vial_shared_bytes *b = atomic_load(slot);
    if (!b) {
        vial_shared_bytes *mine = build(m);
        if (!mine)
            return NULL;
        vial_shared_bytes *expected = NULL;
        if (atomic_compare_exchange_strong(slot, &expected, mine)) {
            b = mine;
        } else {
            free(mine);
            b = expected;
        }
    }
    atomic_fetch_add(&b->refs, 1);
    return b;
}

vial_shared_bytes *vial_ws_frame_shared(int opcode, const void *data, size_t len)
{
    uint8_t h[10];
    size_t hl = vial_ws_frame_header(h, opcode, len);
    vial_shared_bytes *b = malloc(sizeof *b + hl + len);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = hl + len;
    memcpy(b->bytes, h, hl);
    if (len)
        memcpy(b->bytes + hl, data, len);
    return b;
}

static vial_shared_bytes *build_frame(const hub_msg *m)
{
    return vial_ws_frame_shared(m->opcode, m->ev.data, m->ev.len);
}

static vial_shared_bytes *build_sse(const hub_msg *m)
{
    return vial_sse_shared(&m->ev);
}

/* The SSE bytes as one chunk of a chunked response. */
static vial_shared_bytes *build_chunk(const hub_msg *m)
{
    long n = vial_sse_encode(&m->ev, NULL, 0);
    if (n < 0)
        return NULL;
    char hex[20];
    int hl = snprintf(hex, sizeof hex, "%lx\r\n", n);
    vial_shared_bytes *b = malloc(sizeof *b + (size_t)hl + (size_t)n + 2);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    memcpy(b->bytes, hex, (size_t)hl);
    vial_sse_encode(&m->ev, (char *)b->bytes + hl, (size_t)n);
    memcpy(b->bytes + hl + n, "\r\n", 2);
    b->len = (size_t)hl + (size_t)n + 2;
    return b;
}

vial_shared_bytes *vial_sub_take_frame(vial_sub *s)
{
    while (s->len) {
        hub_msg *m = sub_pop(s);
        vial_shared_bytes *b = shared_once(&m->frame, build_frame, m);
        msg_unref(m);
        if (b)
            return b;
    }
    return NULL;
}

/* For vial_sse_serve: the next message's SSE bytes. */
static vial_shared_bytes *sub_take_sse(vial_sub *s)
{
    hub_msg *m = sub_pop(s);
    vial_shared_bytes *b = shared_once(&m->sse, build_sse, m);
    msg_unref(m);
    return b;
}

/* --- publishing ------------------------------------------------------------------------- */

static size_t field_len(const char *f)
{
    return f ? strlen(f) + 1 : 0;
}

int vial_hub_set_bridge(vial_hub *h, vial_hub_bridge *b)
{
    if (h->bridge)
        return -EBUSY;
    h->bridge = b;
    return 0;
}

/* Queues m at each loop thread with subscribers of the topic. Under the
 * lock. */
static int topic_post(topic *t, hub_msg *m, size_t *subscribers)
{
    int posted = 0;
    size_t total = 0;
    for (tnode *n = t->nodes; n; n = n->next) {
        if (!n->nsubs)
            continue;
        if (n->qlen == n->qcap && n->qcap < n->qlimit)
            (void)node_grow(n);
        /* Full (or over a lossless topic's byte bound, which then every
         * subscriber of this thread is): the oldest goes, and the loop's
         * subscribers take the loss as their policy says. */
        while (n->qlen && (n->qlen == n->qcap || (n->qmax_bytes && n->qbytes + m->cost > n->qmax_bytes))) {
            hub_msg *old = n->q[n->qhead];
            if (old->from)
                sender_release(old->from, old->cost * n->qn[n->qhead]);
            n->qbytes -= old->cost;
            msg_unref(old);
            n->qhead = (n->qhead + 1) % n->qcap;
            n->qlen--;
            n->lost++;
        }
        atomic_fetch_add(&m->refs, 1);
        size_t at = (n->qhead + n->qlen++) % n->qcap;
        n->q[at] = m;
        n->qn[at] = (uint32_t)n->nsubs;
        n->qbytes += m->cost;
        total += n->nsubs;
        /* Charged before its loop can see it (it takes under this lock). */
        if (m->from)
            atomic_fetch_add(&m->from->produced, m->cost * n->nsubs);
        if (!n->posted) {
            n->posted = 1;
            vial_loop_post(n->loop, &n->m);
        }
        posted++;
    }
    if (subscribers)
        *subscribers = total;
    return posted;
}

static int hub_post(vial_hub *h, const char *name, const vial_sse_event *ev, int opcode, size_t *subscribers)
{
    if (subscribers)
        *subscribers = 0;
    if (!h || !name || !ev || (ev->len && !ev->data))
        return -EINVAL;
    if ((ev->event && strpbrk(ev->event, "\r\n")) || (ev->id && strpbrk(ev->id, "\r\n")))
        return -EINVAL;
    size_t el = field_len(ev->event), il = field_len(ev->id);
    hub_msg *m = malloc(sizeof *m + ev->len + el + il + 1);
    if (!m)
        return -ENOMEM;
    atomic_init(&m->refs, 1);
    atomic_init(&m->frame, NULL);
    atomic_init(&m->sse, NULL);
    atomic_init(&m->chunk, NULL);
    m->opcode = opcode;
    m->cost = ev->len + VIAL_HUB_MSG_OVERHEAD;
    m->from = NULL;
    char *p = m->store;
    if (ev->len)
        memcpy(p, ev->data, ev->len);
    p[ev->len] = 0;
    m->ev = (vial_sse_event){NULL, NULL, p, ev->len, ev->retry_ms};
    p += ev->len + 1;
    if (el) {
        memcpy(p, ev->event, el);
        m->ev.event = p;
        p += el;
    }
    if (il) {
        memcpy(p, ev->id, il);
        m->ev.id = p;
    }
    vial_hub_sender *from = sender_current();
    int posted = 0;
    pthread_mutex_lock(&h->lock);
    topic *t = topic_find(h, name, 0);
    if (t && from && t->lim.sender_max) {
        m->from = from;
        atomic_fetch_add(&from->refs, 1);
        size_t max = atomic_load(&from->max);
        while ((!max || t->lim.sender_max < max) &&
               !atomic_compare_exchange_weak(&from->max, &max, t->lim.sender_max))
            ;
        atomic_store(&from->hold_ns, (uint64_t)(t->lim.stall_ms ? t->lim.stall_ms : 5000) * 1000000ull);
    }
    if (t)
        posted = topic_post(t, m, subscribers);
    pthread_mutex_unlock(&h->lock);
    msg_unref(m);
    return posted;
}

int vial_hub_publish_local(vial_hub *h, const char *name, const vial_sse_event *ev)
{
    return hub_post(h, name, ev, VIAL_WS_OP_TEXT, NULL);
}

/* Local delivery first, then Redis: this instance's subscribers never wait
 * for a round trip, and the bridge skips the copy that comes back. */
static int publish(vial_hub *h, const char *name, const vial_sse_event *ev, int opcode, size_t *subscribers)
{
    int r = hub_post(h, name, ev, opcode, subscribers);
    if (r < 0)
        return r;
    atomic_fetch_add(&n_published, 1); /* what came from Redis counts as received */
    if (h->bridge)
        vial_hub_bridge_relay(h->bridge, name, ev);
    return r;
}

int vial_hub_publish_event(vial_hub *h, const char *name, const vial_sse_event *ev)
{
    return publish(h, name, ev, VIAL_WS_OP_TEXT, NULL);
}

int vial_hub_publish(vial_hub *h, const char *name, const void *data, size_t len)
{
    vial_sse_event ev = {NULL, NULL, data, len, 0};
    return publish(h, name, &ev, VIAL_WS_OP_TEXT, NULL);
}

int vial_hub_publish_binary(vial_hub *h, const char *name, const void *data, size_t len)
{
    vial_sse_event ev = {NULL, NULL, data, len, 0};
    return publish(h, name, &ev, VIAL_WS_OP_BINARY, NULL);
}

int vial_hub_publish_frame(vial_hub *h, const char *name, int opcode, const void *data, size_t len,
                           size_t *subscribers)
{
    vial_sse_event ev = {NULL, NULL, data, len, 0};
    return publish(h, name, &ev, opcode, subscribers);
}

/* --- SSE streams of a topic ---------------------------------------------------------------- */

/* An SSE subscriber's direct sends (sub_direct), on its loop while it is
 * parked in vial_sse_serve's wait with nothing pending. */
typedef struct sse_direct {
    vial_req *rq;
    vial_sub *sub;
    vial_loop *loop;
    int idle;
    uint64_t last_ns; /* loop time of the last direct send: the heartbeat's clock */
} sse_direct;

static int sse_direct_fd(void *arg, size_t len)
{
    sse_direct *d = arg;
    return d->idle ? vial_conn_stream_try_fd(d->rq, len) : -1;
}

static int sse_direct_done(void *arg, const uint8_t *bytes, size_t len, ssize_t res)
{
    sse_direct *d = arg;
    int r = vial_conn_stream_try_done(d->rq, bytes, len, res);
    if (!r)
        return 0;
    if (r == 2) { /* its tail is buffered: the stream flushes it */
        d->sub->poked = 1;
        if (d->sub->waiter)
            vial_coro_wake(d->sub->waiter, 0);
    }
    d->last_ns = d->loop->now;
    size_t payload = len;
    if (d->sub->direct_form == FORM_SSE_CHUNK) { /* "<hex>\r\n" ... "\r\n" */
        const uint8_t *nl = memchr(bytes, '\n', len);
        payload = len - (size_t)(nl - bytes + 1) - 2;
    }
    vial_rqs(d->rq)->streamed += payload;
    return 1;
}

static const vial_hub_direct sse_direct_ops = {sse_direct_fd, sse_direct_done};

int vial_sse_serve(vial_req *rq, vial_res *rs, vial_hub *h, const char *name, const vial_sse_opts *o)
{
    static const vial_sse_opts none;
    if (!o)
        o = &none;
    vial_sub *s = vial_hub_subscribe(rq, h, name);
    if (!s)
        return vial_req_is_sync(rq) ? -EPERM : -ENOMEM;
    int r = vial_sse_begin(rs);
    if (r == 0 && o->retry_ms) {
        vial_sse_event retry = {.retry_ms = o->retry_ms};
        r = vial_sse_send(rs, &retry);
    }
    const char *last = vial_sse_last_id(rq);
    if (r == 0 && last && o->replay)
        r = o->replay(rq, rs, last, o->arg);
    uint64_t sent = 0;
    int trimmed = 0;
    /* Events go out from the hub's drain while this waits (one send each,
     * this coroutine not woken), unless something must count or transform
     * them: max_events, HEAD, compression. */
    sse_direct d = {rq, s, vial_coro_current()->loop, 0, 0};
    if (r == 0 && rq->conn && !o->max_events && !rq->is_head && !vial_rqs(rq)->zstream) {
        s->direct = &sse_direct_ops;
        s->kick_arg = &d;
        s->direct_form = rs->stream_close ? FORM_SSE : FORM_SSE_CHUNK;
        /* what sse_direct_send reads: d, the request's conn pointer, the
         * connection (vial_conn_stream_try_fd/_done), the access log's count */
        sub_set_hot(s, 0, &d, 1);
        sub_set_hot(s, 1, &rq->conn, 1);
        sub_set_hot(s, 2, rq->conn, VIAL_CONN_HOT_LINES);
        sub_set_hot(s, 3, &vial_rqs(rq)->streamed, 1);
    }
    while (r == 0 && (!o->max_events || sent < o->max_events)) {
        if (!s->len && rq->conn) {
            /* Thousands of subscribers sit here, as idle websockets do: no
             * output buffer (after what a direct send left in it went
             * out), and no stack pages that the head's and the replay's
             * deeper calls touched. */
            r = vial_conn_stream_idle(rq);
            if (r < 0)
                break;
            if (!trimmed) {
                trimmed = 1;
                vial_coro_trim_stack();
            }
        }
        d.idle = 1;
        r = sub_wait(s, o->heartbeat_ms);
        d.idle = 0;
        if (r == -EINPROGRESS) { /* flushed at the top */
            r = 0;
            continue;
        }
        if (r == -ETIMEDOUT && o->heartbeat_ms && !vial_drv_doomed(vial_coro_current())) {
            /* Quiet since the last wake, but events may have gone out
             * directly meanwhile: a ping only after heartbeat_ms without. */
            if (d.last_ns && d.loop->now - d.last_ns < o->heartbeat_ms * 1000000ull) {
                r = 0;
                continue;
            }
            r = vial_sse_comment(rs, "ping");
            continue;
        }
        if (r < 0)
            break;
        vial_shared_bytes *b = sub_take_sse(s);
        if (b) {
            r = vial_stream_write(rs, b->bytes, b->len);
            vial_shared_bytes_unref(b);
            sent++;
        }
    }
    s->direct = NULL;
    memset(s->hot_lines, 0, sizeof s->hot_lines); /* d and rq go with this frame */
    vial_sub_close(s);
    return r;
}
