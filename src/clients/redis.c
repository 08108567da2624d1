/* The Redis client: hiredis's async API driven by vial's loop.
 *
 * Shape
 *   vial_redis (process-wide, immutable after vial_redis_open)
 *     -> per loop thread: an lstate (loop-local slot) holding one rpool per
 *        vial_redis used on that thread
 *          -> rpool: the shared connection (ordinary commands, multiplexed),
 *             idle exclusive connections (blocking commands, acquire), the
 *             FIFO of coroutines waiting for an exclusive one
 *          -> every connection (shared, exclusive, subscription) is a
 *             vial_redis_conn wrapping one redisAsyncContext.
 *
 * The adapter
 *   hiredis asks for read/write interest through ev.addRead/addWrite...; vial
 *   registers each fd once, edge-triggered, for everything. So:
 *   - reads: on a read/hang-up edge we call redisAsyncHandleRead (one read(2)
 *     of up to 16 KiB), then ask poll(2) whether more is pending and repeat;
 *     an edge is reported once, so stopping before the socket is drained
 *     would strand replies until the next, unrelated, edge;
 *   - writes: addWrite does not write; it arms the connection's zero-delay
 *     "kick" timer, which fires once per loop iteration after every
 *     coroutine that ran has queued its commands: the commands of a whole
 *     vial_gather leave in one write(2). A write the kernel only partly took
 *     waits for the write edge (the socket buffer draining);
 *   - a timer, not vial_drv_defer, because deferred work runs after the
 *     loop already decided how long to sleep: a command queued before the
 *     poll would sit there until some unrelated event. A due timer makes
 *     the poll return at once.
 *
 * Lifetimes
 *   - A command's record (rcall) is on the heap, never on the coroutine's
 *     stack: when the await is cancelled or times out the coroutine moves on
 *     (and may end), the record is marked abandoned, and hiredis's callback,
 *     which always comes (with the reply, or with NULL when the connection
 *     is freed), frees it without touching the coroutine.
 *   - hiredis frees its context itself on errors (inside HandleRead/Write);
 *     our cleanup hook marks the connection dead (ac = NULL) and the struct
 *     is freed later (vial_drv_defer), never while an event for its fd may
 *     still be in the batch being dispatched or a caller up the stack still
 *     holds it.
 *   - Replies are copied out of hiredis (which frees its own after the
 *     callback) into one malloc'd block, freed at request end through
 *     vial_req_on_end or earlier by vial_redis_reply_free. */
#include "vial/redis.h"
#include "runtime/driver.h"
#include "runtime/ascii.h"
#include "runtime/numfmt.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Reads per readiness edge before yielding the loop to others (each up to
 * 16 KiB); the rest is picked up by the kick timer next iteration. */
#define READS_PER_EDGE 64
/* An idle connection unused for this long is probed with poll(2) before
 * reuse: if the server closed it while the loop was not watching (the test
 * client between requests, a loop busy elsewhere), we reconnect instead of
 * failing the next command. */
#define STALE_PROBE_NS (2 * 1000000ull)
/* The shared connection is replaced when this many of its commands were
 * given up on and are still unanswered: a server that stopped answering
 * must not make us accumulate records forever. */
#define MAX_ABANDONED 1024

enum { CONN_SHARED, CONN_EXCL, CONN_SUB };

typedef struct rpool rpool;
typedef struct lstate lstate;
typedef struct vial_redis_conn rconn;
typedef struct track track;

struct vial_redis {
    atomic_int refs; /* the user's, plus one per per-loop pool */
    char *host;      /* numeric address, or a Unix socket path */
    int port;
    int is_unix;
    char *password, *username;
    int db;
    int connect_timeout_ms;
    unsigned max_exclusive;
    size_t sub_queue_max;
    /* The metrics: each loop's pool counts in a block of its own, kept
     * until r is freed (so a scrape never reads a freed pool). */
    pthread_mutex_t mlock;
    struct rmblock *mblocks;
    unsigned metrics_id; /* the `pool` label: order of opening */
    vial_redis *mnext;   /* all open clients (mlist) */
};

/* Counters cross threads to the scrape: relaxed stores (plain moves; the
 * pool's loop is the one writer). */
#define R_ADD(x, d) __atomic_store_n(&(x), (x) + (d), __ATOMIC_RELAXED)
#define R_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

typedef struct rmblock {
    struct rmblock *next;
    uint64_t conns;    /* connections open now (shared, exclusive, subscriptions) */
    uint64_t waiters;  /* coroutines waiting for an exclusive connection now */
    uint64_t commands; /* commands sent */
    uint64_t errors;   /* commands answered with an error or lost with the connection */
    uint64_t connects; /* connections established */
} rmblock;

/* What a request will free at its end, unless freed before (obj NULL). */
enum { TR_REPLY, TR_CONN, TR_SUB };
struct track {
    void *obj;
    int kind;
};

struct vial_redis_conn {
    vial_io io;
    redisAsyncContext *ac; /* NULL once hiredis freed it: the connection is dead */
    rpool *pool;           /* NULL once dead */
    lstate *ls;
    vial_loop *loop;
    int kind;
    int err;               /* why it died (negative errno), once known */
    unsigned pending;      /* replies hiredis still owes us */
    unsigned live;         /* of those, awaited by a coroutine that has not given up */
    unsigned abandoned;
    uint64_t last_used;    /* loop ns */
    vial_drv_timer kick;   /* zero-delay: flush writes, resume reads, close when retired */
    vial_drv_timer ctimer; /* connect timeout */
    rconn *next, *prev;    /* the pool's list of live connections */
    rconn *idle_next;      /* the pool's idle exclusive connections */
    rconn *grave_next;     /* dead, waiting to be freed */
    vial_redis_sub *sub;   /* a subscription's connection */
    track *tr;             /* a leased connection's request-end release */
    unsigned connected : 1, want_write : 1, in_write : 1, read_more : 1, paused : 1,
        retired : 1, detached : 1, leased : 1, idle : 1, registered : 1, dirty : 1,
        in_multi : 1, watching : 1;
};

struct rpool {
    rpool *next;
    vial_redis *r;
    lstate *ls;
    rconn *shared;
    rconn *idle;
    unsigned nexcl;   /* exclusive connections counted against max_exclusive */
    rconn *all;
    vial_drv_queue waiters; /* for an exclusive connection; vial_redis_release hands one over */
    int closing;
    rmblock *m; /* in r->mblocks */
};

/* Per loop thread (a loop-local slot). Lives until the loop ends, so the
 * deferred reaper message it embeds can never outlive it. */
struct lstate {
    vial_msg reap;
    int reap_queued;
    int closing;
    vial_loop *loop;
    rpool *pools;
    rconn *grave;
};

struct vial_redis_reply {
    int type; /* vial_redis_type */
    int64_t integer;
    size_t len; /* bytes of str, or elements */
    char *str;
    vial_redis_reply *elem;
    track *tr; /* top-level reply only */
};

typedef struct rmsg {
    struct rmsg *next;
    vial_redis_msg m;
    char bytes[]; /* pattern, channel, data; each NUL-terminated */
} rmsg;

struct vial_redis_sub {
    rconn *c;          /* NULL once the connection is gone */
    vial_coro *waiter;
    rmsg *head, *tail;
    rmsg *cur;         /* the message last returned */
    size_t qlen, qmax;
    unsigned nsubs, confirmed;
    int err;           /* sticky once the connection is lost */
    track *tr;
};

typedef struct rcall {
    vial_coro *waiter;
    vial_redis_reply *reply;
    int err;
    unsigned keep : 1, done : 1, abandoned : 1, is_error : 1;
} rcall;

static int g_key = -1;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void key_init(void)
{
    g_key = vial_drv_key();
}

/* --- small helpers ------------------------------------------------------------- */

static void kick(rconn *c)
{
    vial_drv_kick(&c->kick, 0);
}

/* hiredis error class (+ errno at the failure) -> negative errno. */
static int map_error(int redis_err, int e)
{
    switch (redis_err) {
    case REDIS_ERR_EOF:
        return -ECONNRESET;
    case REDIS_ERR_IO:
        if (e == EPIPE || e <= 0 || e == EAGAIN || e == EINPROGRESS)
            return -ECONNRESET;
        return -e;
    case REDIS_ERR_PROTOCOL:
        return -EPROTO;
    case REDIS_ERR_OOM:
        return -ENOMEM;
    default:
        return -EPROTO;
    }
}

/* Why the connection is failing, computed once (callbacks of a dying
 * context run one after another; they must all report the same cause). */
static int conn_error(rconn *c)
{
    int e = errno; /* still the failed system call's: hiredis only formatted a message since */
    if (!c->err) {
        redisAsyncContext *ac = c->ac;
        int code = ac ? (ac->err ? ac->err : ac->c.err) : 0;
        c->err = code ? map_error(code, e) : -ECONNRESET;
        /* REDIS_ERR_OTHER: an error reply nobody awaited (a refused
         * SUBSCRIBE); hiredis kept its text */
        if (code == REDIS_ERR_OTHER && ac &&
            (!strncmp(ac->c.errstr, "NOPERM", 6) || !strncmp(ac->c.errstr, "NOAUTH", 6) ||
             !strncmp(ac->c.errstr, "WRONGPASS", 9)))
            c->err = -EACCES;
    }
    return c->err;
}

static vial_coro *self_coro(vial_req *rq)
{
    if (rq && vial_req_is_sync(rq))
        return NULL;
    return vial_drv_self();
}

/* --- request-end cleanup --------------------------------------------------------- */

static void reply_free_now(vial_redis_reply *rep);
static void sub_destroy(vial_redis_sub *s);

static void track_run(void *arg)
{
    track *t = arg;
    void *obj = t->obj;
    if (!obj)
        return;
    t->obj = NULL;
    switch (t->kind) {
    case TR_REPLY:
        ((vial_redis_reply *)obj)->tr = NULL;
        reply_free_now(obj);
        break;
    case TR_CONN:
        ((rconn *)obj)->tr = NULL;
        vial_redis_release(obj);
        break;
    case TR_SUB:
        ((vial_redis_sub *)obj)->tr = NULL;
        sub_destroy(obj);
        break;
    }
}

static track *track_add(vial_req *rq, void *obj, int kind)
{
    track *t = vial_alloc(rq, sizeof *t);
    if (!t)
        return NULL;
    t->obj = obj;
    t->kind = kind;
    if (vial_req_on_end(rq, track_run, t) < 0)
        return NULL;
    return t;
}

/* --- replies ---------------------------------------------------------------------- */

static void reply_measure(const redisReply *r, size_t *nodes, size_t *bytes)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        *bytes += r->len + 1;
        break;
    case REDIS_REPLY_ARRAY:
        /* hiredis bounds nesting (its reader has a fixed task stack), so
         * this recursion is bounded too */
        *nodes += r->elements;
        for (size_t i = 0; i < r->elements; i++)
            reply_measure(r->element[i], nodes, bytes);
        break;
    }
}

static void reply_fill(vial_redis_reply *d, const redisReply *s, vial_redis_reply **nodes, char **bytes)
{
    memset(d, 0, sizeof *d);
    switch (s->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        d->type = s->type == REDIS_REPLY_STRING   ? VIAL_REDIS_STRING
                  : s->type == REDIS_REPLY_STATUS ? VIAL_REDIS_STATUS
                                                  : VIAL_REDIS_ERROR;
        d->str = *bytes;
        d->len = s->len;
        if (s->len)
            memcpy(d->str, s->str, s->len);
        d->str[s->len] = 0;
        *bytes += s->len + 1;
        break;
    case REDIS_REPLY_INTEGER:
        d->type = VIAL_REDIS_INTEGER;
        d->integer = s->integer;
        break;
    case REDIS_REPLY_ARRAY:
        d->type = VIAL_REDIS_ARRAY;
        d->len = s->elements;
        d->elem = *nodes; /* an array's elements are contiguous */
        *nodes += s->elements;
        for (size_t i = 0; i < s->elements; i++)
            reply_fill(&d->elem[i], s->element[i], nodes, bytes);
        break;
    default:
        d->type = VIAL_REDIS_NIL;
        break;
    }
}

/* One allocation: the nodes, then the string bytes. */
static vial_redis_reply *reply_copy(const redisReply *r)
{
    size_t nodes = 1, bytes = 0;
    reply_measure(r, &nodes, &bytes);
    if (nodes > (SIZE_MAX - bytes) / sizeof(vial_redis_reply))
        return NULL;
    vial_redis_reply *root = malloc(nodes * sizeof *root + bytes);
    if (!root)
        return NULL;
    vial_redis_reply *next_node = root + 1;
    char *next_byte = (char *)(root + nodes);
    reply_fill(root, r, &next_node, &next_byte);
    return root;
}

static void reply_free_now(vial_redis_reply *rep)
{
    free(rep);
}

vial_redis_type vial_redis_reply_type(const vial_redis_reply *rep)
{
    return rep ? (vial_redis_type)rep->type : VIAL_REDIS_NIL;
}

int64_t vial_redis_reply_int(const vial_redis_reply *rep)
{
    return rep && rep->type == VIAL_REDIS_INTEGER ? rep->integer : 0;
}

const char *vial_redis_reply_str(const vial_redis_reply *rep, size_t *len)
{
    int has = rep && (rep->type == VIAL_REDIS_STRING || rep->type == VIAL_REDIS_STATUS ||
                      rep->type == VIAL_REDIS_ERROR);
    if (len)
        *len = has ? rep->len : 0;
    return has ? rep->str : NULL;
}

size_t vial_redis_reply_len(const vial_redis_reply *rep)
{
    return rep && rep->type == VIAL_REDIS_ARRAY ? rep->len : 0;
}

const vial_redis_reply *vial_redis_reply_at(const vial_redis_reply *rep, size_t i)
{
    return rep && rep->type == VIAL_REDIS_ARRAY && i < rep->len ? &rep->elem[i] : NULL;
}

const char *vial_redis_reply_error(const vial_redis_reply *rep)
{
    return rep && rep->type == VIAL_REDIS_ERROR ? rep->str : NULL;
}

void vial_redis_reply_free(vial_redis_reply *rep)
{
    if (!rep)
        return;
    if (rep->tr)
        rep->tr->obj = NULL; /* the request's cleanup has nothing left to do */
    reply_free_now(rep);
}

/* --- per-loop state ------------------------------------------------------------------- */

static void conn_close(rconn *c, int err);
static void lease_wake_one(rpool *p);

static void reap_cb(vial_loop *l, vial_msg *m)
{
    lstate *ls = vial_container_of(m, lstate, reap);
    ls->reap_queued = 0;
    while (ls->grave) {
        rconn *c = ls->grave;
        ls->grave = c->grave_next;
        free(c);
    }
}

static void grave_add(rconn *c)
{
    lstate *ls = c->ls;
    c->grave_next = ls->grave;
    ls->grave = c;
    if (!ls->reap_queued && !ls->closing) {
        ls->reap_queued = 1;
        ls->reap.cb = reap_cb;
        vial_drv_defer(ls->loop, &ls->reap);
    }
}

/* --- metrics (driver.h's sources) ------------------------------------------------------- */

static pthread_mutex_t mlist_mu = PTHREAD_MUTEX_INITIALIZER;
static vial_redis *mlist;
static unsigned mlist_next_id;
static int msource_added;

/* The families: fields of rmblock, each summed over a client's loops. */
static const struct {
    const char *name, *type, *help;
    size_t off;
} redis_families[] = {
    {"vial_redis_connections", "gauge", "Redis connections open now (shared, exclusive, subscriptions), by pool.",
     offsetof(rmblock, conns)},
    {"vial_redis_waiters", "gauge", "Coroutines waiting for an exclusive Redis connection now, by pool.",
     offsetof(rmblock, waiters)},
    {"vial_redis_commands_total", "counter", "Redis commands sent, by pool.", offsetof(rmblock, commands)},
    {"vial_redis_errors_total", "counter",
     "Redis commands answered with an error or lost with their connection, by pool.", offsetof(rmblock, errors)},
    {"vial_redis_connects_total", "counter",
     "Redis connections established (more than the open ones: reconnects), by pool.",
     offsetof(rmblock, connects)},
};

static void metrics_write(void *data, vial_metrics_out *out)
{
    (void)data;
    pthread_mutex_lock(&mlist_mu);
    for (size_t f = 0; mlist && f < sizeof redis_families / sizeof redis_families[0]; f++) {
        vial_metrics_family(out, redis_families[f].name, redis_families[f].type, redis_families[f].help);
        for (vial_redis *r = mlist; r; r = r->mnext) {
            uint64_t v = 0;
            pthread_mutex_lock(&r->mlock);
            for (rmblock *m = r->mblocks; m; m = m->next)
                v += R_LOAD(*(uint64_t *)((char *)m + redis_families[f].off));
            pthread_mutex_unlock(&r->mlock);
            vial_metrics_sample_pool(out, redis_families[f].name, r->metrics_id, v);
        }
    }
    pthread_mutex_unlock(&mlist_mu);
}

static void metrics_remember(vial_redis *r)
{
    pthread_mutex_lock(&mlist_mu);
    r->metrics_id = mlist_next_id++;
    r->mnext = mlist;
    mlist = r;
    if (!msource_added)
        msource_added = vial_metrics_source_add(metrics_write, NULL) == 0;
    pthread_mutex_unlock(&mlist_mu);
}

static void redis_free(vial_redis *r)
{
    pthread_mutex_lock(&mlist_mu);
    for (vial_redis **pp = &mlist; *pp; pp = &(*pp)->mnext)
        if (*pp == r) {
            *pp = r->mnext;
            break;
        }
    pthread_mutex_unlock(&mlist_mu);
    for (rmblock *m = r->mblocks, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    pthread_mutex_destroy(&r->mlock);
    free(r->host);
    free(r->password);
    free(r->username);
    free(r);
}

static void pool_destroy(rpool *p)
{
    lstate *ls = p->ls;
    p->closing = 1;
    while (p->all)
        conn_close(p->all, -ECONNABORTED); /* the cleanup hook unlinks it */
    for (rpool **pp = &ls->pools; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    vial_redis *r = p->r;
    free(p);
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        redis_free(r);
    }
}

static void lstate_exit(void *arg)
{
    lstate *ls = arg;
    ls->closing = 1;
    while (ls->pools)
        pool_destroy(ls->pools);
    /* the loop will not run its deferred list again: free the dead now */
    reap_cb(ls->loop, &ls->reap);
    free(ls);
}

static rpool *pool_get(vial_redis *r, vial_loop *l, int create)
{
    lstate *ls = vial_drv_local_get(l, g_key);
    if (!ls) {
        if (!create)
            return NULL;
        ls = calloc(1, sizeof *ls);
        if (!ls)
            return NULL;
        ls->loop = l;
        if (vial_drv_local_set(l, g_key, ls, lstate_exit) < 0) {
            free(ls);
            return NULL;
        }
    }
    for (rpool *p = ls->pools; p; p = p->next)
        if (p->r == r)
            return p;
    if (!create)
        return NULL;
    rpool *p = calloc(1, sizeof *p);
    rmblock *m = calloc(1, sizeof *m);
    if (!p || !m) {
        free(p);
        free(m);
        return NULL;
    }
    pthread_mutex_lock(&r->mlock);
    m->next = r->mblocks;
    r->mblocks = m;
    pthread_mutex_unlock(&r->mlock);
    p->m = m;
    p->r = r;
    p->ls = ls;
    atomic_fetch_add(&r->refs, 1);
    p->next = ls->pools;
    ls->pools = p;
    return p;
}

/* --- connections: the adapter ------------------------------------------------------------ */

/* Drains what the socket has (see the top of the file: edges are reported
 * once). */
static void conn_read(rconn *c)
{
    for (int i = 0; i < READS_PER_EDGE; i++) {
        if (!c->ac || c->paused)
            return;
        redisAsyncHandleRead(c->ac); /* may free the context: then c->ac is NULL */
        if (!c->ac || c->paused)
            return;
        if (!(vial_drv_poll(c->io.fd, VIAL_IO_READ) & VIAL_IO_READ))
            return;
    }
    c->read_more = 1; /* more pending: continue next iteration, let others run */
    kick(c);
}

static void conn_write(rconn *c)
{
    if (!c->ac || !c->want_write)
        return;
    /* Before the connect completed, hiredis would take "no error yet" for
     * success; wait for the write edge that ends the connect instead. */
    if (!(c->ac->c.flags & REDIS_CONNECTED) &&
        !(vial_drv_poll(c->io.fd, VIAL_IO_WRITE) & VIAL_IO_WRITE))
        return;
    c->in_write = 1;
    redisAsyncHandleWrite(c->ac); /* may free the context */
    c->in_write = 0;
    /* Still want_write: the kernel took part of it; the write edge (buffer
     * drained) brings us back. */
}

static void conn_io(vial_loop *l, vial_io *io, unsigned ev)
{
    rconn *c = vial_container_of(io, rconn, io);
    if (c->ac && c->want_write && (ev & (VIAL_IO_WRITE | VIAL_IO_HUP | VIAL_IO_ERR)))
        conn_write(c);
    if (c->ac && (ev & (VIAL_IO_READ | VIAL_IO_HUP | VIAL_IO_ERR)))
        conn_read(c);
}

static void conn_kick(vial_drv_timer *t)
{
    rconn *c = vial_container_of(t, rconn, kick);
    if (!c->ac)
        return;
    if (c->retired && c->live == 0 && !c->leased) {
        conn_close(c, -ECONNABORTED);
        return;
    }
    if (c->want_write)
        conn_write(c);
    if (c->ac && c->read_more) {
        c->read_more = 0;
        conn_read(c);
    }
}

static void conn_connect_timeout(vial_drv_timer *t)
{
    rconn *c = vial_container_of(t, rconn, ctimer);
    if (c->ac && !c->connected)
        conn_close(c, -ETIMEDOUT);
}

static void ev_add_read(void *d)
{
    (void)d; /* we always listen; reads happen on edges and kicks */
}

static void ev_del_read(void *d)
{
    (void)d;
}

static void ev_add_write(void *d)
{
    rconn *c = d;
    c->want_write = 1;
    /* From a command: flush at the end of this iteration. From inside our
     * own write (a partial write): wait for the write edge, or we would spin
     * on a full socket. */
    if (!c->in_write)
        kick(c);
}

static void ev_del_write(void *d)
{
    ((rconn *)d)->want_write = 0;
}

/* Out of the pool's sight: no new work goes to it. */
static void conn_detach(rconn *c)
{
    if (c->detached || !c->pool)
        return;
    c->detached = 1;
    rpool *p = c->pool;
    if (p->shared == c)
        p->shared = NULL;
    if (c->idle) {
        for (rconn **pp = &p->idle; *pp; pp = &(*pp)->idle_next) {
            if (*pp == c) {
                *pp = c->idle_next;
                break;
            }
        }
        c->idle = 0;
    }
    if (c->kind == CONN_EXCL) {
        p->nexcl--;
        lease_wake_one(p); /* room for a new connection */
    }
}

/* hiredis's cleanup hook: the context is being freed (after every pending
 * callback ran with a NULL reply). */
static void ev_cleanup(void *d)
{
    rconn *c = d;
    if (!c->err)
        c->err = -ECONNRESET;
    c->ac = NULL;
    if (c->registered) {
        vial_drv_io_del(c->loop, &c->io); /* the fd is still open: hiredis closes it next */
        c->registered = 0;
    }
    vial_drv_timer_stop(&c->kick);
    vial_drv_timer_stop(&c->ctimer);
    conn_detach(c);
    if (c->sub) {
        vial_redis_sub *s = c->sub;
        s->c = NULL;
        if (!s->err)
            s->err = c->err;
        if (s->waiter)
            vial_drv_wake(s->waiter, 0);
        c->sub = NULL;
    }
    rpool *p = c->pool;
    if (p) {
        if (c->prev)
            c->prev->next = c->next;
        else
            p->all = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->pool = NULL;
        R_ADD(p->m->conns, -1);
    }
    /* A leased connection stays allocated for its holder, who learns the
     * error and releases it; unless everything is being torn down. */
    if (!c->leased || c->ls->closing || (p && p->closing))
        grave_add(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rconn *c = ac->data;
    vial_drv_timer_stop(&c->ctimer);
    if (status == REDIS_OK) {
        c->connected = 1;
        if (c->pool)
            R_ADD(c->pool->m->connects, 1);
    } else if (!c->err) {
        int e = errno; /* hiredis set it from SO_ERROR */
        c->err = e > 0 && e != EINPROGRESS ? -e : -ECONNREFUSED;
    }
}

/* Replies to the commands a new connection starts with (AUTH, SELECT). */
#define SETUP_AUTH ((void *)1)
#define SETUP_SELECT ((void *)2)
static void setup_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn *c = ac->data;
    c->pending--;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ERROR && !c->err) {
        /* Commands queued behind it get the server's own errors (NOAUTH...);
         * the connection is not reused. */
        c->err = priv == SETUP_AUTH ? -EACCES : -EINVAL;
        c->retired = 1;
        conn_detach(c);
        kick(c);
    }
}

static rconn *conn_new(rpool *p, int kind, int *err)
{
    vial_redis *r = p->r;
    lstate *ls = p->ls;
    rconn *c = calloc(1, sizeof *c);
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    errno = 0;
    redisAsyncContext *ac = r->is_unix ? redisAsyncConnectUnix(r->host) : redisAsyncConnect(r->host, r->port);
    int e = errno;
    if (!ac) {
        free(c);
        *err = -ENOMEM;
        return NULL;
    }
    if (ac->err) { /* failed at once (a loopback connect can be refused synchronously) */
        *err = ac->err == REDIS_ERR_IO && e > 0 && e != EINPROGRESS ? -e
               : ac->err == REDIS_ERR_OOM                           ? -ENOMEM
                                                                    : -ECONNREFUSED;
        redisAsyncFree(ac);
        free(c);
        return NULL;
    }
    c->ac = ac;
    c->pool = p;
    c->ls = ls;
    c->loop = ls->loop;
    c->kind = kind;
    c->io.fd = ac->c.fd;
    c->io.cb = conn_io;
    vial_drv_timer_init(&c->kick, c->loop, conn_kick);
    vial_drv_timer_init(&c->ctimer, c->loop, conn_connect_timeout);
    c->last_used = vial_drv_now(c->loop);
    int rc = vial_drv_io_add(c->loop, &c->io);
    if (rc < 0) {
        redisAsyncFree(ac);
        free(c);
        *err = rc;
        return NULL;
    }
    c->registered = 1;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    c->next = p->all;
    if (p->all)
        p->all->prev = c;
    p->all = c;
    R_ADD(p->m->conns, 1);
    if (kind == CONN_EXCL)
        p->nexcl++;
    vial_drv_timer_arm(&c->ctimer, (uint64_t)r->connect_timeout_ms * 1000000u);
    redisAsyncSetConnectCallback(ac, on_connect); /* asks for the write edge */
    if (r->password) {
        const char *argv[3] = {"AUTH", r->username ? r->username : r->password, r->password};
        if (redisAsyncCommandArgv(ac, setup_cb, SETUP_AUTH, r->username ? 3 : 2, argv, NULL) == REDIS_OK)
            c->pending++;
    }
    if (r->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *argv[2] = {"SELECT", db};
        if (redisAsyncCommandArgv(ac, setup_cb, SETUP_SELECT, 2, argv, NULL) == REDIS_OK)
            c->pending++;
    }
    return c;
}

/* Frees the context now (pending callbacks run with NULL replies, which
 * report err). Never from inside a hiredis callback. */
static void conn_close(rconn *c, int err)
{
    if (!c->ac)
        return;
    if (!c->err)
        c->err = err;
    redisAsyncFree(c->ac);
}

/* No new work; closed as soon as nobody awaits a reply on it. */
static void conn_retire(rconn *c)
{
    c->retired = 1;
    conn_detach(c);
    if (c->ac && c->live == 0 && !c->leased)
        kick(c);
}

/* An idle connection the server may have closed behind our back. */
static int conn_stale(rconn *c)
{
    if (!c->ac)
        return 1;
    if (c->pending || c->want_write || !c->connected)
        return 0;
    if (vial_drv_now(c->loop) - c->last_used < STALE_PROBE_NS)
        return 0;
    /* With no reply owed, anything readable is EOF or garbage. */
    return vial_drv_poll(c->io.fd, VIAL_IO_READ) != 0;
}

/* --- commands ---------------------------------------------------------------------------- */

static void call_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn *c = ac->data;
    rcall *k = priv;
    c->pending--;
    c->last_used = vial_drv_now(c->loop);
    if (k->abandoned) { /* its coroutine gave up: drop the reply */
        c->abandoned--;
        free(k);
        return;
    }
    c->live--;
    redisReply *r = reply;
    if ((!r || r->type == REDIS_REPLY_ERROR) && c->pool)
        R_ADD(c->pool->m->errors, 1);
    if (!r) {
        k->err = conn_error(c);
    } else {
        k->is_error = r->type == REDIS_REPLY_ERROR;
        if (k->keep && !(k->reply = reply_copy(r)))
            k->err = -ENOMEM;
    }
    k->done = 1;
    if (k->waiter)
        vial_drv_wake(k->waiter, 0);
    if (c->retired && c->live == 0 && c->ac && !c->leased)
        kick(c); /* close it, outside this callback */
}

static void ff_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    rconn *c = ac->data;
    c->pending--;
    c->last_used = vial_drv_now(c->loop);
}

/* Sends one formatted command on c and awaits its reply. */
static int run_cmd(vial_req *rq, vial_coro *self, rconn *c, vial_redis_reply **out, const char *cmd,
                   size_t len)
{
    if (!c->ac)
        return c->err ? c->err : -ECONNRESET;
    /* Do not send what we could not wait for. */
    int doomed = vial_drv_doomed(self);
    if (doomed)
        return doomed;
    rcall *k = calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    k->keep = out != NULL;
    if (redisAsyncFormattedCommand(c->ac, call_cb, k, cmd, len) != REDIS_OK) {
        free(k);
        return c->err ? c->err : -ECONNRESET;
    }
    c->pending++;
    c->live++;
    c->last_used = vial_drv_now(c->loop);
    if (c->pool)
        R_ADD(c->pool->m->commands, 1);
    while (!k->done) {
        k->waiter = self;
        int rc = vial_drv_wait(0);
        k->waiter = NULL;
        if (rc < 0 && !k->done) {
            /* No reply yet, so c is alive: hiredis still owes k a callback,
             * which frees it. */
            k->abandoned = 1;
            c->live--;
            c->abandoned++;
            /* An exclusive connection may be blocked (BLPOP) or mid-MULTI:
             * unusable. The shared one only runs commands that answer;
             * replace it only when answers stopped coming. */
            if (c->kind != CONN_SHARED || c->abandoned > MAX_ABANDONED)
                conn_retire(c);
            return rc;
        }
    }
    /* done: c may be dead (and freed) by now; do not touch it */
    int rc = k->err;
    vial_redis_reply *rep = k->reply;
    int is_error = k->is_error;
    free(k);
    if (rc)
        return rc;
    if (out) {
        if (rq && rep) {
            rep->tr = track_add(rq, rep, TR_REPLY);
            if (!rep->tr) {
                free(rep);
                return -ENOMEM;
            }
        }
        *out = rep;
    }
    return is_error ? VIAL_REDIS_EREPLY : 0;
}

/* What a command does to a connection, from its name (and arguments). */
enum { K_PLAIN, K_BLOCKING, K_STATE, K_REFUSED, K_BAD };
enum { E_NONE, E_MULTI, E_EXEC, E_WATCH, E_UNWATCH, E_DIRTY };

typedef struct span {
    const char *p;
    size_t n;
} span;

static int span_is(span s, const char *word)
{
    size_t n = strlen(word);
    return s.n == n && vial_ascii_ncasecmp(s.p, word, n) == 0;
}

/* Iterates the arguments of a RESP-formatted command ("*N\r\n$len\r\n...").
 * Returns 1 with *arg set, 0 at the end, -1 when malformed. */
typedef struct resp_it {
    const char *p, *end;
    long left;
} resp_it;

static long resp_num(resp_it *it, char lead)
{
    if (it->p >= it->end || *it->p != lead)
        return -1;
    it->p++;
    long v = 0;
    int digits = 0;
    while (it->p < it->end && *it->p >= '0' && *it->p <= '9') {
        if (v > 1000000000L)
            return -1;
        v = v * 10 + (*it->p++ - '0');
        digits++;
    }
    if (!digits || it->end - it->p < 2 || it->p[0] != '\r' || it->p[1] != '\n')
        return -1;
    it->p += 2;
    return v;
}

static int resp_begin(resp_it *it, const char *cmd, size_t len)
{
    it->p = cmd;
    it->end = cmd + len;
    it->left = resp_num(it, '*');
    return it->left < 1 ? -1 : 0;
}

static int resp_next(resp_it *it, span *arg)
{
    if (it->left == 0)
        return 0;
    long n = resp_num(it, '$');
    if (n < 0 || it->end - it->p < n + 2)
        return -1;
    arg->p = it->p;
    arg->n = (size_t)n;
    it->p += n + 2;
    it->left--;
    return 1;
}

static void classify(const char *cmd, size_t len, int *kind, int *effect)
{
    resp_it it;
    span name, a;
    *kind = K_BAD;
    *effect = E_NONE;
    if (resp_begin(&it, cmd, len) < 0 || resp_next(&it, &name) != 1)
        return;
    *kind = K_PLAIN;
    /* Refused on every connection: subscriber and monitor modes need their
     * own reply routing (vial_redis_subscribe), and hiredis 0.14 speaks
     * RESP2 only (HELLO 3) and pairs replies with commands in order, which
     * CLIENT REPLY OFF/SKIP would break. */
    static const char *const refused[] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
                                         "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC",
                                         "HELLO"};
    static const char *const blocking[] = {"BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP",
                                           "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF"};
    static const char *const dirty[] = {"SELECT", "AUTH", "RESET", "QUIT",
                                        "READONLY", "READWRITE", "ASKING"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (span_is(name, refused[i])) {
            *kind = K_REFUSED;
            return;
        }
    for (size_t i = 0; i < sizeof blocking / sizeof *blocking; i++)
        if (span_is(name, blocking[i])) {
            *kind = K_BLOCKING;
            return;
        }
    for (size_t i = 0; i < sizeof dirty / sizeof *dirty; i++)
        if (span_is(name, dirty[i])) {
            *kind = K_STATE;
            *effect = E_DIRTY;
            return;
        }
    if (span_is(name, "MULTI")) {
        *kind = K_STATE;
        *effect = E_MULTI;
    } else if (span_is(name, "EXEC") || span_is(name, "DISCARD")) {
        *kind = K_STATE;
        *effect = E_EXEC;
    } else if (span_is(name, "WATCH")) {
        *kind = K_STATE;
        *effect = E_WATCH;
    } else if (span_is(name, "UNWATCH")) {
        *kind = K_STATE;
        *effect = E_UNWATCH;
    } else if (span_is(name, "CLIENT")) {
        /* the subcommands that change how the connection talks */
        if (resp_next(&it, &a) == 1) {
            if (span_is(a, "REPLY")) {
                *kind = K_REFUSED;
            } else if (span_is(a, "TRACKING") || span_is(a, "CACHING") || span_is(a, "NO-EVICT") ||
                       span_is(a, "NO-TOUCH")) {
                *kind = K_STATE;
                *effect = E_DIRTY;
            }
        }
    } else if (span_is(name, "XREAD") || span_is(name, "XREADGROUP")) {
        /* blocking only with a BLOCK option (before STREAMS) */
        int r;
        while ((r = resp_next(&it, &a)) == 1 && !span_is(a, "STREAMS"))
            if (span_is(a, "BLOCK")) {
                *kind = K_BLOCKING;
                break;
            }
    }
}

static void apply_effect(rconn *c, int effect)
{
    switch (effect) {
    case E_MULTI:
        c->in_multi = 1;
        break;
    case E_EXEC:
        c->in_multi = 0;
        c->watching = 0;
        break;
    case E_WATCH:
        c->watching = 1;
        break;
    case E_UNWATCH:
        c->watching = 0;
        break;
    case E_DIRTY:
        c->dirty = 1;
        break;
    }
}

static int shared_conn(rpool *p, rconn **out)
{
    rconn *c = p->shared;
    if (c && conn_stale(c)) {
        conn_close(c, -ECONNRESET); /* nothing pending on it: nobody sees this error */
        c = NULL;
    }
    if (!c) {
        int err;
        c = conn_new(p, CONN_SHARED, &err);
        if (!c)
            return err;
        p->shared = c;
    }
    *out = c;
    return 0;
}

/* --- exclusive connections ------------------------------------------------------------- */

static void lease_wake_one(rpool *p)
{
    vial_drv_queue_wake_one(&p->waiters, NULL);
}

static int lease(vial_coro *self, rpool *p, rconn **out)
{
    for (;;) {
        while (p->idle) {
            rconn *c = p->idle;
            p->idle = c->idle_next;
            c->idle = 0;
            if (conn_stale(c)) {
                conn_close(c, -ECONNRESET);
                continue;
            }
            c->leased = 1;
            *out = c;
            return 0;
        }
        if (p->nexcl < p->r->max_exclusive) {
            int err;
            rconn *c = conn_new(p, CONN_EXCL, &err);
            if (!c)
                return err;
            c->leased = 1;
            *out = c;
            return 0;
        }
        void *got;
        R_ADD(p->m->waiters, 1);
        int rc = vial_drv_queue_wait(&p->waiters, 0, &got);
        R_ADD(p->m->waiters, -1);
        if (got) {
            *out = got;
            return 0;
        }
        if (rc < 0)
            return rc;
    }
}

void vial_redis_release(vial_redis_conn *c)
{
    if (!c || !c->leased) /* NULL, or released already */
        return;
    if (c->tr) {
        c->tr->obj = NULL;
        c->tr = NULL;
    }
    c->leased = 0;
    if (!c->ac) { /* died while leased: it waited for us */
        grave_add(c);
        return;
    }
    rpool *p = c->pool;
    if (c->retired || c->detached || c->dirty || c->in_multi || c->watching || !p || p->closing) {
        conn_retire(c);
        if (c->live == 0)
            conn_close(c, -ECONNABORTED);
        return;
    }
    c->leased = 1; /* hand it straight to the longest waiter, if any */
    if (vial_drv_queue_wake_one(&p->waiters, c))
        return;
    c->leased = 0;
    c->idle = 1;
    c->idle_next = p->idle; /* LIFO: the warmest connection goes out first */
    p->idle = c;
}

static int redis_acquire(vial_req *rq, vial_redis *r, vial_redis_conn **out)
{
    if (out)
        *out = NULL;
    if (!r || !out)
        return -EINVAL;
    vial_coro *self = self_coro(rq);
    if (!self)
        return -EPERM;
    rpool *p = pool_get(r, vial_drv_coro_loop(self), 1);
    if (!p)
        return -ENOMEM;
    rconn *c;
    int rc = lease(self, p, &c);
    if (rc < 0)
        return rc;
    if (rq && !(c->tr = track_add(rq, c, TR_CONN))) {
        vial_redis_release(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

/* --- command entry points ----------------------------------------------------------------- */

/* Runs a formatted command: on the leased connection lc, or picks one. */
static int dispatch(vial_req *rq, vial_coro *self, vial_redis *r, rconn *lc, vial_redis_reply **out,
                    const char *cmd, size_t len)
{
    int kind, effect;
    classify(cmd, len, &kind, &effect);
    if (kind == K_BAD || kind == K_REFUSED)
        return -EINVAL;
    if (lc) {
        if (!lc->leased)
            return -EINVAL; /* released already */
        apply_effect(lc, effect);
        return run_cmd(rq, self, lc, out, cmd, len);
    }
    if (kind == K_STATE)
        return -EINVAL; /* would change the shared connection for everyone */
    rpool *p = pool_get(r, vial_drv_coro_loop(self), 1);
    if (!p)
        return -ENOMEM;
    rconn *c;
    int rc;
    if (kind == K_BLOCKING) {
        if ((rc = lease(self, p, &c)) < 0)
            return rc;
        rc = run_cmd(rq, self, c, out, cmd, len);
        vial_redis_release(c); /* abandoned: retired, so closed */
        return rc;
    }
    if ((rc = shared_conn(p, &c)) < 0)
        return rc;
    return run_cmd(rq, self, c, out, cmd, len);
}

/* --- errors ------------------------------------------------------------------------ */

#define ERROR_KEY "vial.redis.error"

/* Keeps the message of a failed call for vial_redis_error: an error reply's
 * text, else the code's name. */
static int note(vial_req *rq, int rc, vial_redis_reply *const *out)
{
    if (rc >= 0 || !rq)
        return rc;
    const char *m = out && *out ? vial_redis_reply_error(*out) : NULL;
    vial_g_set(rq, ERROR_KEY, vial_strdup(rq, m && *m ? m : vial_strerror(rc)));
    return rc;
}

const char *vial_redis_error(vial_req *rq)
{
    return rq ? vial_g_get(rq, ERROR_KEY) : NULL;
}

static int cmd_fmt_(vial_req *rq, vial_redis *r, rconn *lc, vial_redis_reply **out, const char *fmt,
                    va_list ap)
{
    if (out)
        *out = NULL;
    if ((!r && !lc) || !fmt)
        return -EINVAL;
    vial_coro *self = self_coro(rq);
    if (!self)
        return -EPERM;
    char *cmd = NULL;
    /* hiredis formats %f, %g... with vsnprintf: in the C locale, so a
     * 3.25 reaches Redis as "3.25" whatever the app's setlocale said */
    locale_t c = vial_c_locale(), old = c ? uselocale(c) : (locale_t)0;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (c)
        uselocale(old);
    if (len < 0)
        return -EINVAL; /* a bad format (or no memory, which hiredis does not tell apart) */
    int rc = dispatch(rq, self, r, lc, out, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

static int cmd_fmt(vial_req *rq, vial_redis *r, rconn *lc, vial_redis_reply **out, const char *fmt,
                   va_list ap)
{
    return note(rq, cmd_fmt_(rq, r, lc, out, fmt, ap), out);
}

static int cmd_argv_(vial_req *rq, vial_redis *r, rconn *lc, vial_redis_reply **out, int argc,
                     const char *const *argv, const size_t *argvlen)
{
    if (out)
        *out = NULL;
    if ((!r && !lc) || argc < 1 || !argv)
        return -EINVAL;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return -EINVAL;
    vial_coro *self = self_coro(rq);
    if (!self)
        return -EPERM;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, argvlen);
    if (len < 0)
        return -ENOMEM;
    int rc = dispatch(rq, self, r, lc, out, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

static int cmd_argv(vial_req *rq, vial_redis *r, rconn *lc, vial_redis_reply **out, int argc,
                    const char *const *argv, const size_t *argvlen)
{
    return note(rq, cmd_argv_(rq, r, lc, out, argc, argv, argvlen), out);
}

int vial_redis_cmdv(vial_req *rq, vial_redis *r, vial_redis_reply **out, const char *fmt,
                    va_list ap)
{
    return cmd_fmt(rq, r, NULL, out, fmt, ap);
}

int vial_redis_cmd(vial_req *rq, vial_redis *r, vial_redis_reply **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = cmd_fmt(rq, r, NULL, out, fmt, ap);
    va_end(ap);
    return rc;
}

int vial_redis_cmdargv(vial_req *rq, vial_redis *r, vial_redis_reply **out, int argc,
                       const char *const *argv, const size_t *argvlen)
{
    return cmd_argv(rq, r, NULL, out, argc, argv, argvlen);
}

int vial_redis_conn_cmdv(vial_req *rq, vial_redis_conn *c, vial_redis_reply **out, const char *fmt,
                         va_list ap)
{
    if (!c) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    return cmd_fmt(rq, NULL, c, out, fmt, ap);
}

int vial_redis_conn_cmd(vial_req *rq, vial_redis_conn *c, vial_redis_reply **out, const char *fmt,
                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vial_redis_conn_cmdv(rq, c, out, fmt, ap);
    va_end(ap);
    return rc;
}

int vial_redis_conn_cmdargv(vial_req *rq, vial_redis_conn *c, vial_redis_reply **out, int argc,
                            const char *const *argv, const size_t *argvlen)
{
    if (!c) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    return cmd_argv(rq, NULL, c, out, argc, argv, argvlen);
}

/* --- pub/sub ------------------------------------------------------------------------------ */

static void sub_enqueue(vial_redis_sub *s, const redisReply *pattern, const redisReply *channel,
                        const redisReply *data)
{
    size_t plen = pattern ? pattern->len : 0;
    rmsg *m = malloc(sizeof *m + plen + 1 + channel->len + 1 + data->len + 1);
    if (!m) {
        if (!s->err)
            s->err = -ENOMEM; /* a gap in the stream: report it, do not hide it */
        return;
    }
    char *b = m->bytes;
    m->next = NULL;
    m->m.pattern = NULL;
    m->m.pattern_len = 0;
    if (pattern) {
        memcpy(b, pattern->str, plen);
        b[plen] = 0;
        m->m.pattern = b;
        m->m.pattern_len = plen;
        b += plen + 1;
    }
    memcpy(b, channel->str, channel->len);
    b[channel->len] = 0;
    m->m.channel = b;
    m->m.channel_len = channel->len;
    b += channel->len + 1;
    if (data->len)
        memcpy(b, data->str, data->len);
    b[data->len] = 0;
    m->m.data = b;
    m->m.len = data->len;
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->qlen++;
    if (s->qlen >= s->qmax && s->c)
        s->c->paused = 1; /* backpressure: stop reading; Redis buffers for us */
}

static int is_str(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING;
}

static void sub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    vial_redis_sub *s = priv;
    rconn *c = ac->data;
    redisReply *r = reply;
    if (!r) { /* the connection is going away */
        if (!s->err)
            s->err = conn_error(c);
        if (s->waiter)
            vial_drv_wake(s->waiter, 0);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || !is_str(r->element[0]))
        return;
    const char *what = r->element[0]->str;
    if (!vial_ascii_casecmp(what, "subscribe") || !vial_ascii_casecmp(what, "psubscribe")) {
        s->confirmed++;
    } else if (!vial_ascii_casecmp(what, "message") && is_str(r->element[1]) && is_str(r->element[2])) {
        sub_enqueue(s, NULL, r->element[1], r->element[2]);
    } else if (!vial_ascii_casecmp(what, "pmessage") && r->elements >= 4 && is_str(r->element[1]) &&
               is_str(r->element[2]) && is_str(r->element[3])) {
        sub_enqueue(s, r->element[1], r->element[2], r->element[3]);
    } else {
        return;
    }
    if (s->waiter)
        vial_drv_wake(s->waiter, 0);
}

static void sub_destroy(vial_redis_sub *s)
{
    if (s->tr) {
        s->tr->obj = NULL;
        s->tr = NULL;
    }
    if (s->c) {
        rconn *c = s->c;
        /* closing the connection is the unsubscribe; its NULL callbacks
         * still see s, freed only after */
        conn_close(c, -ECONNABORTED);
        if (s->c == c) { /* not freed (cannot happen outside a callback) */
            c->sub = NULL;
            s->c = NULL;
        }
    }
    while (s->head) {
        rmsg *m = s->head;
        s->head = m->next;
        free(m);
    }
    free(s->cur);
    free(s);
}

void vial_redis_sub_close(vial_redis_sub *sub)
{
    if (sub)
        sub_destroy(sub);
}

static int subscribe(vial_req *rq, vial_redis *r, vial_redis_sub **out, const char *verb,
                     const char *first, va_list ap)
{
    if (out)
        *out = NULL;
    if (!r || !out || !first)
        return -EINVAL;
    vial_coro *self = self_coro(rq);
    if (!self)
        return -EPERM;
    int doomed = vial_drv_doomed(self);
    if (doomed)
        return doomed;
    size_t n = 1;
    va_list aq;
    va_copy(aq, ap);
    while (va_arg(aq, const char *))
        n++;
    va_end(aq);
    if (n > 100000)
        return -EINVAL;
    const char **argv = malloc((n + 1) * sizeof *argv);
    if (!argv)
        return -ENOMEM;
    argv[0] = verb;
    argv[1] = first;
    for (size_t i = 2; i <= n; i++)
        argv[i] = va_arg(ap, const char *);

    int rc = 0;
    rpool *p = pool_get(r, vial_drv_coro_loop(self), 1);
    vial_redis_sub *s = p ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        free(argv);
        return -ENOMEM;
    }
    s->qmax = r->sub_queue_max;
    s->nsubs = (unsigned)n;
    rconn *c = conn_new(p, CONN_SUB, &rc);
    if (!c) {
        free(argv);
        free(s);
        return rc;
    }
    c->sub = s;
    s->c = c;
    int ok = redisAsyncCommandArgv(c->ac, sub_cb, s, (int)n + 1, argv, NULL);
    free(argv);
    if (ok != REDIS_OK) {
        sub_destroy(s);
        return -ENOMEM;
    }
    while (s->confirmed < s->nsubs && !s->err) {
        s->waiter = self;
        rc = vial_drv_wait(0);
        s->waiter = NULL;
        if (rc < 0 && s->confirmed < s->nsubs && !s->err) {
            sub_destroy(s);
            return rc;
        }
    }
    if (s->err) {
        rc = s->err;
        sub_destroy(s);
        return rc;
    }
    if (rq && !(s->tr = track_add(rq, s, TR_SUB))) {
        sub_destroy(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

int vial_redis_subscribe(vial_req *rq, vial_redis *r, vial_redis_sub **out, const char *channel,
                         ...)
{
    va_list ap;
    va_start(ap, channel);
    int rc = note(rq, subscribe(rq, r, out, "SUBSCRIBE", channel, ap), NULL);
    va_end(ap);
    return rc;
}

int vial_redis_psubscribe(vial_req *rq, vial_redis *r, vial_redis_sub **out, const char *pattern,
                          ...)
{
    va_list ap;
    va_start(ap, pattern);
    int rc = note(rq, subscribe(rq, r, out, "PSUBSCRIBE", pattern, ap), NULL);
    va_end(ap);
    return rc;
}

static int redis_next_message(vial_req *rq, vial_redis_sub *s, vial_redis_msg *msg)
{
    if (!s || !msg)
        return -EINVAL;
    vial_coro *self = self_coro(rq);
    if (!self)
        return -EPERM;
    free(s->cur);
    s->cur = NULL;
    for (;;) {
        if (s->head) {
            rmsg *m = s->head;
            s->head = m->next;
            if (!s->head)
                s->tail = NULL;
            s->qlen--;
            s->cur = m;
            *msg = m->m;
            rconn *c = s->c;
            if (c && c->paused && s->qlen <= s->qmax / 2) {
                c->paused = 0; /* resume reading: what arrived meanwhile raised no new edge */
                c->read_more = 1;
                kick(c);
            }
            return 0;
        }
        if (s->err)
            return s->err;
        if (!s->c)
            return -ECONNRESET;
        s->waiter = self;
        int rc = vial_drv_wait(0);
        s->waiter = NULL;
        if (rc < 0 && !s->head)
            return rc;
    }
}

/* --- publish -------------------------------------------------------------------------------- */

int vial_redis_publish(vial_redis *r, const char *channel, const void *data, size_t len)
{
    if (!r || !channel || (!data && len))
        return -EINVAL;
    const char *argv[3] = {"PUBLISH", channel, data ? (const char *)data : ""};
    size_t lens[3] = {7, strlen(channel), len};
    if (vial_drv_self()) {
        vial_redis_reply *rep;
        int rc = cmd_argv(NULL, r, NULL, &rep, 3, argv, lens);
        if (rc == 0) {
            int64_t n = vial_redis_reply_int(rep);
            rc = n > INT32_MAX ? INT32_MAX : (int)n;
        }
        vial_redis_reply_free(rep);
        return rc;
    }
    /* On the loop's own stack (a timer, a mailbox message): nobody can
     * await, so queue it and let the reply be dropped. */
    vial_loop *l = vial_drv_loop();
    if (!l)
        return -EPERM;
    rpool *p = pool_get(r, l, 1);
    if (!p)
        return -ENOMEM;
    rconn *c;
    int rc = shared_conn(p, &c);
    if (rc < 0)
        return rc;
    if (redisAsyncCommandArgv(c->ac, ff_cb, NULL, 3, argv, lens) != REDIS_OK)
        return c->err ? c->err : -ECONNRESET;
    c->pending++;
    return 0;
}

/* --- the handle ----------------------------------------------------------------------------- */

/* Resolves once, at setup, so that connecting never blocks a loop on DNS.
 * IPv4 first, as hiredis itself does: a client must not pay for probing
 * IPv6 connectivity on every connect. */
static char *resolve(const char *host)
{
    static const int families[2] = {AF_INET, AF_INET6};
    for (int i = 0; i < 2; i++) {
        struct addrinfo hints = {.ai_family = families[i], .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
            continue;
        char buf[INET6_ADDRSTRLEN];
        const void *addr = res->ai_family == AF_INET
                               ? (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                               : (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
        const char *s = inet_ntop(res->ai_family, addr, buf, sizeof buf);
        freeaddrinfo(res);
        if (s)
            return strdup(s);
    }
    errno = EHOSTUNREACH;
    return NULL;
}

/* "host:port", "[v6]:port", "host", "unix:/path" or "/path" into host (a
 * path for a Unix socket) and port. */
static int parse_address(const char *address, char *host, size_t cap, int *port)
{
    *port = 6379;
    if (!strncmp(address, "unix:", 5))
        address += 5;
    if (address[0] == '/') {
        if (strlen(address) >= cap)
            return -EINVAL;
        strcpy(host, address);
        return 0;
    }
    const char *end, *colon;
    if (address[0] == '[') { /* an IPv6 address, which holds ':' itself */
        const char *close = strchr(address, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -EINVAL;
        address++;
        end = close;
        colon = close[1] ? close + 1 : NULL;
    } else {
        colon = strrchr(address, ':');
        if (colon && strchr(address, ':') != colon)
            return -EINVAL; /* a bare IPv6 address: ambiguous without [] */
        end = colon ? colon : address + strlen(address);
    }
    size_t n = (size_t)(end - address);
    if (n == 0 || n >= cap)
        return -EINVAL;
    memcpy(host, address, n);
    host[n] = 0;
    if (colon) {
        long v = 0;
        const char *d = colon + 1;
        if (!*d)
            return -EINVAL;
        for (; *d; d++) {
            if (*d < '0' || *d > '9' || v > 65535)
                return -EINVAL;
            v = v * 10 + (*d - '0');
        }
        if (v < 1 || v > 65535)
            return -EINVAL;
        *port = (int)v;
    }
    return 0;
}

vial_redis *vial_redis_open(const char *address, const vial_redis_options *opts)
{
    pthread_once(&g_key_once, key_init);
    if (g_key < 0) {
        errno = ENOSPC; /* no loop-local slot left */
        return NULL;
    }
    char host[1024];
    int port;
    if (parse_address(address ? address : "127.0.0.1:6379", host, sizeof host, &port) < 0) {
        errno = EINVAL;
        return NULL;
    }
    vial_redis_options o = opts ? *opts : (vial_redis_options){0};
    if (o.connect_timeout_ms < 0 || o.max_exclusive < 0 ||
        o.db < 0 || (o.username && !o.password)) {
        errno = EINVAL;
        return NULL;
    }
    vial_redis *r = calloc(1, sizeof *r);
    if (!r) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&r->refs, 1);
    r->port = port;
    r->is_unix = host[0] == '/';
    r->host = r->is_unix ? strdup(host) : resolve(host);
    r->password = o.password ? strdup(o.password) : NULL;
    r->username = o.username ? strdup(o.username) : NULL;
    r->db = o.db;
    r->connect_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : 2000;
    r->max_exclusive = o.max_exclusive ? (unsigned)o.max_exclusive : 16;
    r->sub_queue_max = o.sub_queue_max ? o.sub_queue_max : 1024;
    if (!r->host || (o.password && !r->password) || (o.username && !r->username)) {
        int e = r->host ? ENOMEM : errno;
        free(r->host);
        free(r->password);
        free(r->username);
        free(r);
        errno = e ? e : ENOMEM;
        return NULL;
    }
    /* hiredis writes with write(2), not send(MSG_NOSIGNAL): a server that
     * goes away would kill the process with SIGPIPE. vial_run ignores it
     * too; a test or a tool using only the client must not die either. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&r->mlock, NULL);
    metrics_remember(r);
    return r;
}

void vial_redis_close(vial_redis *r)
{
    if (!r)
        return;
    vial_coro *co = vial_drv_self();
    vial_loop *l = co ? vial_drv_coro_loop(co) : vial_drv_loop();
    rpool *p = l ? pool_get(r, l, 0) : NULL;
    if (p)
        pool_destroy(p); /* drops the pool's reference */
    if (atomic_fetch_sub(&r->refs, 1) == 1) {
        redis_free(r);
    }
}

int vial_redis_acquire(vial_req *rq, vial_redis *r, vial_redis_conn **out)
{
    return note(rq, redis_acquire(rq, r, out), NULL);
}

int vial_redis_next_message(vial_req *rq, vial_redis_sub *s, vial_redis_msg *msg)
{
    return note(rq, redis_next_message(rq, s, msg), NULL);
}
