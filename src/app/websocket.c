/* WebSocket sessions and groups: the app's side of RFC 6455 (the frame
 * parser and the handshake checks are http/websocket.c).
 *
 * A session runs inside its handler on the connection's coroutine, with the
 * connection's buffers: no thread, no extra coroutine. vial_ws_recv is the
 * session's pump: it parses what the read buffer holds, answers pings,
 * writes the messages other threads broadcast to it (queued by its loop's
 * mailbox), and parks on the socket when there is nothing to do.
 *
 * Groups fan a message out across loop threads: it is framed once into a
 * refcounted blob (server frames are unmasked, so every member sends the
 * same bytes), and one small delivery per member is posted to the member's
 * loop. Mailboxes are FIFO, so one sender's messages reach each member in
 * order.
 *
 * Nothing here may hold a loop or grow without bound (vial.h: "what a slow
 * or flooding member gets"): the pump yields after a slice's budget; the
 * publisher charges each member's queue with atomics before posting, and
 * drops a member that is too far behind right there; and a session whose
 * broadcasts are queued beyond a bound is not read until they drain. */
#include "app/app.h"
#include "app/hub.h"
#include "http/server.h"
#include "http/websocket.h"
#include "http/ws_deflate.h"
#include "runtime/coro.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- sessions --------------------------------------------------------------------- */

/* One complete server frame, shared by every member it goes to. */
typedef vial_shared_bytes ws_blob;

/* A hub topic the session subscribed to (vial_ws_subscribe). */
typedef struct ws_hsub {
    vial_sub *sub;
    struct ws_hsub *next;
} ws_hsub;

/* The part of a session that publishers on other threads see; it outlives
 * the session while deliveries to or from it are in flight. */
typedef struct ws_sess {
    atomic_uint refs;        /* the session + deliveries to or from it + a posted wake */
    /* Its outbound queue: bytes published to it (charged by the publisher,
     * before the delivery travels) and not yet written to its socket. */
    atomic_size_t queued;
    /* Bytes of its own broadcasts still queued at members. */
    atomic_size_t produced;
    atomic_uint_fast64_t moved; /* clock ns its queue last moved or was empty */
    atomic_int slow;         /* a publisher found it too far behind: it ends */
    atomic_int waiting;      /* its reading waits for produced to fall */
    atomic_int wake_posted;
    vial_loop *loop;
    vial_ws *ws;             /* NULL once over; read and written on its loop only */
    vial_msg wake;
} ws_sess;

/* A broadcast on its way to one member; once delivered, an item of the
 * member's send queue. */
typedef struct ws_delivery {
    vial_msg msg;
    ws_sess *to;
    ws_sess *from;  /* the session that published it, or NULL */
    ws_blob *blob;
    size_t cost;    /* charged to to->queued and from->produced */
    struct ws_delivery *next;
} ws_delivery;

/* A session's entry in one group; used under the group's lock only. */
typedef struct ws_member {
    ws_sess *sess;
    vial_ws_group *group;
    struct ws_member *next_of_ws;
} ws_member;

struct vial_ws_group {
    pthread_mutex_t lock;
    ws_member **members;
    size_t n, cap;
};

struct vial_ws {
    /* What hub_direct reads, in one line (the hub's drain prefetches it). */
    vial_req *rq;
    struct vial_conn *c;
    ws_delivery *qhead, *qtail;
    unsigned accepted : 1;
    unsigned in_app : 1;    /* the handler runs its own code (not in recv/send) */
    unsigned stack_trimmed : 1; /* vial_coro_trim_stack ran once it was idle */
    unsigned idle : 1;      /* parked in recv with nothing to write: the hub may send directly */
    int result;             /* nonzero once the session is over */
    vial_loop *loop;
    uint32_t window;        /* input is kept after the upgrade request */
    vial_ws_parser p;
    int close_code;         /* the peer's */
    uint8_t *msg;           /* reassembly of fragmented messages */
    size_t msg_len, msg_cap;
    ws_sess *sess;
    ws_member *members;
    ws_hsub *hsubs;
    size_t qoff;            /* bytes of the head already written */
    vial_ws_pmd pmd;        /* permessage-deflate, when negotiated */
    unsigned deflate : 1;
    size_t deflate_min;     /* messages shorter than this go uncompressed */
};

static void blob_unref(ws_blob *b)
{
    vial_shared_bytes_unref(b);
}

static void sess_unref(ws_sess *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        free(s);
}

static void sess_wake_cb(vial_loop *l, vial_msg *m)
{
    ws_sess *s = (ws_sess *)((char *)m - offsetof(ws_sess, wake));
    atomic_store(&s->wake_posted, 0);
    if (s->ws)
        vial_conn_ws_kick(s->ws->c);
    sess_unref(s);
}

/* From any thread: makes s's session, if it waits in recv, look at its
 * state again (it became slow, or its broadcasts drained). */
static void sess_wake(ws_sess *s)
{
    if (s->loop == vial_loop_current()) {
        if (s->ws)
            vial_conn_ws_kick(s->ws->c);
        return;
    }
    if (atomic_exchange(&s->wake_posted, 1))
        return; /* one in flight does it */
    atomic_fetch_add(&s->refs, 1);
    s->wake.cb = sess_wake_cb;
    vial_loop_post(s->loop, &s->wake);
}

/* A delivery leaves its member's queue (written, or dropped): the member's
 * queue and the publisher's count shrink, and a publisher waiting for that
 * is told. On the member's loop (or the publisher's, if it never left). */
static void delivery_retire(ws_delivery *d)
{
    ws_sess *to = d->to, *from = d->from;
    atomic_fetch_sub(&to->queued, d->cost);
    if (from) {
        size_t left = atomic_fetch_sub(&from->produced, d->cost) - d->cost;
        if (left <= VIAL_WS_SENDER_MAX / 2 && atomic_load(&from->waiting) &&
            atomic_exchange(&from->waiting, 0))
            sess_wake(from);
        sess_unref(from);
    }
    blob_unref(d->blob);
    sess_unref(to);
    free(d);
}

static void queue_drop(vial_ws *ws)
{
    while (ws->qhead) {
        ws_delivery *d = ws->qhead;
        ws->qhead = d->next;
        delivery_retire(d);
    }
    ws->qtail = NULL;
    ws->qoff = 0;
}

/* The head of the queue went out whole. */
static void queue_pop(vial_ws *ws)
{
    ws_delivery *d = ws->qhead;
    ws->qoff = 0;
    ws->qhead = d->next;
    if (!ws->qhead)
        ws->qtail = NULL;
    delivery_retire(d);
}

static void leave_all(vial_ws *ws)
{
    while (ws->members)
        vial_ws_group_leave(ws->members->group, ws);
    while (ws->hsubs) {
        ws_hsub *h = ws->hsubs;
        ws->hsubs = h->next;
        vial_hub_sub_free(h->sub);
        free(h);
    }
}

/* Moves one hub message into the send queue, if a subscription has one;
 * the hub's bounded queue holds the rest, so a slow peer costs at most the
 * topic's queue (its policy decides what happens beyond). */
static int hub_refill(vial_ws *ws)
{
    for (ws_hsub *h = ws->hsubs; h; h = h->next) {
        ws_blob *b = vial_sub_take_frame(h->sub);
        if (!b)
            continue;
        ws_delivery *d = malloc(sizeof *d);
        if (!d) {
            blob_unref(b);
            return 0;
        }
        *d = (ws_delivery){.to = ws->sess, .blob = b};
        atomic_fetch_add(&ws->sess->refs, 1);
        if (ws->qtail)
            ws->qtail->next = d;
        else
            ws->qhead = d;
        ws->qtail = d;
        return 1;
    }
    return 0;
}

static int hub_ended(const vial_ws *ws)
{
    for (const ws_hsub *h = ws->hsubs; h; h = h->next)
        if (vial_sub_ended(h->sub))
            return 1;
    return 0;
}

static void hub_kick(void *arg)
{
    vial_ws *ws = arg;
    vial_conn_ws_kick(ws->c);
}

/* The hub's drain, on this loop while the session is parked idle in recv
 * (so no frame of its own is half written): the broadcast goes to the
 * socket from there (in a batch with the other sessions'), without waking
 * the session. */
static int hub_direct_fd(void *arg, size_t len)
{
    vial_ws *ws = arg;
    if (!ws->idle || ws->result || ws->qhead)
        return -1;
    /* (sess->moved, a group's stall clock, need not move: with group
     * deliveries queued, qhead is set and this path is not taken.) */
    return vial_conn_ws_try_fd(ws->c, len);
}

static int hub_direct_done(void *arg, const uint8_t *bytes, size_t len, ssize_t res)
{
    vial_ws *ws = arg;
    return vial_conn_ws_try_done(ws->c, bytes, len, res);
}

static const vial_hub_direct hub_direct = {hub_direct_fd, hub_direct_done};

int vial_ws_subscribe(vial_ws *ws, vial_hub *h, const char *topic)
{
    if (ws->result)
        return -EPIPE;
    if (!h || !topic)
        return -EINVAL;
    ws_hsub *e = malloc(sizeof *e);
    if (!e)
        return -ENOMEM;
    e->sub = vial_hub_sub_open(h, topic, hub_kick, ws);
    if (!e->sub) {
        free(e);
        return -ENOMEM;
    }
    vial_hub_sub_set_direct(e->sub, &hub_direct, ws, 2, ws->c, VIAL_CONN_HOT_LINES);
    e->next = ws->hsubs;
    ws->hsubs = e;
    return 0;
}

/* Writes a whole frame (blocking: awaits room). */
static int send_frame(vial_ws *ws, int opcode, const void *data, size_t len)
{
    uint8_t h[10];
    size_t hl = vial_ws_frame_header(h, opcode, len);
    int r = vial_conn_ws_out(ws->c, h, hl);
    if (r == 0 && len)
        r = vial_conn_ws_out(ws->c, data, len);
    return r;
}

/* A message over the threshold, deflated with RSV1 set; sent as it is when
 * compressing does not shrink it or zlib's memory cap is reached. */
static int send_compressed(vial_ws *ws, int opcode, const void *data, size_t len)
{
    uint8_t *z;
    size_t zl;
    if (vial_ws_pmd_deflate(&ws->pmd, data, len, &z, &zl) != 0)
        return send_frame(ws, opcode, data, len);
    uint8_t h[10];
    size_t hl = vial_ws_frame_header(h, opcode, zl);
    h[0] |= 0x40;
    int r = vial_conn_ws_out(ws->c, h, hl);
    if (r == 0)
        r = vial_conn_ws_out(ws->c, z, zl);
    free(z);
    return r;
}

/* Finishes the queued frame already partly written, so another frame can
 * follow without splitting it. */
static int queue_finish_head(vial_ws *ws)
{
    if (!ws->qhead || !ws->qoff)
        return 0;
    ws_delivery *d = ws->qhead;
    int r = vial_conn_ws_out(ws->c, d->blob->bytes + ws->qoff, d->blob->len - ws->qoff);
    queue_pop(ws);
    return r;
}

/* Moves queued frames into the output buffer and sends what the socket
 * takes, never waiting (it may yield: a long queue to a fast reader is a
 * slice's work like any other). Returns 0, or < 0 when the socket is
 * broken. */
static int queue_pump(vial_ws *ws)
{
    for (;;) {
        size_t moved = 0;
        while (ws->qhead || hub_refill(ws)) {
            size_t room = vial_conn_ws_room(ws->c);
            if (!room)
                break;
            ws_delivery *d = ws->qhead;
            size_t n = d->blob->len - ws->qoff;
            if (n > room)
                n = room;
            vial_conn_ws_out(ws->c, d->blob->bytes + ws->qoff, n); /* fits: no wait */
            ws->qoff += n;
            moved += n;
            if (ws->qoff == d->blob->len)
                queue_pop(ws);
        }
        if (moved)
            atomic_store(&ws->sess->moved, ws->loop->now);
        if (!vial_conn_ws_pending(ws->c))
            return 0;
        int r = vial_conn_ws_flush(ws->c, 0);
        if (r == -EAGAIN)
            return 0;
        if (r < 0)
            return r;
        if (!ws->qhead)
            return 0;
        vial_coro_spend(moved);
    }
}

static int ws_end(vial_ws *ws, int code, const uint8_t *reason, size_t reason_len, int result)
{
    if (ws->result)
        return ws->result;
    ws->result = result;
    leave_all(ws);
    if (code >= 0 && queue_finish_head(ws) == 0) {
        uint8_t pl[125];
        size_t n = 0;
        if (code > 0) {
            pl[0] = (uint8_t)(code >> 8);
            pl[1] = (uint8_t)code;
            n = 2;
            if (reason_len > sizeof pl - 2)
                reason_len = sizeof pl - 2;
            if (reason_len)
                memcpy(pl + 2, reason, reason_len);
            n += reason_len;
        }
        send_frame(ws, VIAL_WS_OP_CLOSE, pl, n);
    }
    queue_drop(ws);
    vial_conn_ws_shutdown(ws->c);
    return result;
}

int vial_ws_accept(vial_ws *ws)
{
    if (ws->accepted)
        return ws->result ? ws->result : 0;
    ws->accepted = 1;
    vial_req *rq = ws->rq;
    const char *key = vial_req_header(rq, "Sec-WebSocket-Key");
    char accept[29];
    vial_ws_accept_value(key, strlen(key), accept);
    vial_res *rs = &rq->res;
    rs->status = 101;
    rs->upgraded = 1;
    rs->content_type = NULL;
    if (vial_res_add_header(rs, "Upgrade", "websocket") < 0 ||
        vial_res_add_header(rs, "Connection", "Upgrade") < 0 ||
        vial_res_add_header(rs, "Sec-WebSocket-Accept", accept) < 0)
        return ws->result = -ENOMEM;
    char ext[160];
    const vial_config *cfg = &rq->server->cfg;
    size_t zmax = cfg->ws_deflate_memory_max ? cfg->ws_deflate_memory_max : VIAL_WS_DEFLATE_MEMORY_MAX;
    if (cfg->ws_deflate &&
        vial_ws_pmd_negotiate(vial_req_header(rq, "Sec-WebSocket-Extensions"), &ws->pmd.params, ext,
                              sizeof ext) == 1 &&
        vial_ws_pmd_room(&ws->pmd.params, zmax)) {
        if (vial_res_add_header(rs, "Sec-WebSocket-Extensions", ext) < 0)
            return ws->result = -ENOMEM;
        ws->deflate = 1;
        ws->p.rsv1_ok = 1;
        ws->pmd.memory_max = zmax;
        ws->deflate_min = cfg->ws_deflate_min ? cfg->ws_deflate_min : VIAL_WS_DEFLATE_MIN;
    }
    char head[2048];
    int n = vial_write_head(rq, head, sizeof head, 1, 0, rq->server->cfg.server_header);
    if (n < 0)
        return ws->result = -E2BIG;
    int r = vial_conn_ws_out(ws->c, head, (size_t)n);
    if (r == 0)
        r = vial_conn_ws_flush(ws->c, 1);
    if (r < 0)
        ws->result = r;
    return r;
}

static int msg_append(vial_ws *ws, const uint8_t *d, size_t n)
{
    if (ws->msg_cap - ws->msg_len < n) {
        size_t cap = ws->msg_cap ? ws->msg_cap : 4096;
        while (cap - ws->msg_len < n)
            cap *= 2;
        uint8_t *m = realloc(ws->msg, cap);
        if (!m)
            return -ENOMEM;
        ws->msg = m;
        ws->msg_cap = cap;
    }
    memcpy(ws->msg + ws->msg_len, d, n);
    ws->msg_len += n;
    return 0;
}

/* Backpressure to a sender: while more of its broadcasts are queued at
 * members than VIAL_WS_SENDER_MAX, its input is not read (the peer's sends
 * stall in TCP) until they fall to half, its own queue still being written.
 * A member that takes nothing cannot hold it for ever: after
 * VIAL_WS_STALL_NS it reads on, and its next publish drops the members
 * whose queues have not moved for that long. Returns 0 or < 0 (cancelled,
 * broken). */
static int sender_hold(vial_ws *ws)
{
    ws_sess *s = ws->sess;
    if (atomic_load(&s->produced) <= VIAL_WS_SENDER_MAX)
        return 0;
    uint64_t until = ws->loop->now + VIAL_WS_STALL_NS;
    for (;;) {
        if (atomic_load(&s->slow))
            return 0;
        if (queue_pump(ws) < 0)
            return -EPIPE;
        /* Announce the wait, then look again: a retire in between either
         * sees the flag or left a count this load sees. */
        atomic_store(&s->waiting, 1);
        if (atomic_load(&s->produced) <= VIAL_WS_SENDER_MAX / 2) {
            atomic_store(&s->waiting, 0);
            return 0;
        }
        int want = ws->qhead != NULL || vial_conn_ws_pending(ws->c);
        int r = vial_conn_ws_wait(ws->c, want ? VIAL_IO_WRITE : 0, until);
        atomic_store(&s->waiting, 0);
        if (r == -ETIMEDOUT)
            return 0;
        if (r < 0)
            return r;
    }
}

/* A message for the handler: from here on it runs its own code. */
static int ws_deliver_msg(vial_ws *ws, vial_ws_msg *msg, int opcode, const uint8_t *data, size_t len)
{
    *msg = (vial_ws_msg){opcode, data, len};
    ws->in_app = 1;
    return 0;
}

/* A compressed message that cannot be read ends the session: r is the
 * close code negated (ws_deflate.h), or -ENOMEM. */
static int inflate_fail(vial_ws *ws, int r)
{
    if (r == -ENOMEM)
        return ws_end(ws, 1011, NULL, 0, -ENOMEM);
    return ws_end(ws, -r, NULL, 0,
                  r == VIAL_WS_PMD_TOO_BIG ? -EMSGSIZE : r == VIAL_WS_PMD_NO_MEMORY ? -ENOMEM : -EPROTO);
}

int vial_ws_recv(vial_ws *ws, vial_ws_msg *msg)
{
    int r = vial_ws_accept(ws);
    if (r < 0)
        return r;
    struct vial_conn *c = ws->c;
    ws->in_app = 0;
    ws->msg_len = 0;
    for (;;) {
        /* A session whose input never runs dry never reaches the wait that
         * would see a cancellation (shutdown): look after every slice. */
        vial_coro *self = vial_coro_current();
        if (self && self->cancelled)
            return ws_end(ws, 1001, NULL, 0, -ECANCELED);
        r = sender_hold(ws);
        if (r < 0)
            return ws_end(ws, r == -EPIPE ? -1 : 1001, NULL, 0, r);
        if (atomic_load(&ws->sess->slow)) {
            /* Too far behind its broadcasts: its socket is full, a close
             * frame would never get through. */
            ws->result = -ENOBUFS;
            leave_all(ws);
            queue_drop(ws);
            vial_conn_ws_abort(c);
            return ws->result;
        }
        if (hub_ended(ws)) /* what it was sent still goes out, then the close */
            return ws_end(ws, 1008, (const uint8_t *)"too slow", 8, -ENOBUFS);
        uint8_t *in;
        size_t n;
        int held = 0;
        vial_conn_ws_input(c, &in, &n);
        while (n) {
            size_t used;
            vial_ws_event ev;
            int pr = vial_ws_parse(&ws->p, in, n, &used, &ev);
            vial_conn_ws_consume(c, used);
            in += used;
            n -= used;
            if (pr < 0)
                return ws_end(ws, -pr, NULL, 0, pr == -1009 ? -EMSGSIZE : -EPROTO);
            if (pr == 0)
                break;
            /* Input that keeps coming must not hold the loop: a frame is a
             * slice's item (the read buffer is this coroutine's alone, so
             * ev.data stays valid across the yield). */
            vial_coro_spend(VIAL_SLICE_ITEM + ev.len);
            if (ev.kind == VIAL_WS_EV_DATA && ev.compressed) {
                r = vial_ws_pmd_inflate(&ws->pmd, ev.data, ev.len, ev.fin, &ws->msg, &ws->msg_len,
                                        &ws->msg_cap, ws->p.max_message);
                if (r == 0 && ev.fin && ev.opcode == VIAL_WS_OP_TEXT &&
                    !vial_ws_utf8_valid(ws->msg, ws->msg_len))
                    r = -1007;
                if (r < 0)
                    return inflate_fail(ws, r);
                if (ev.fin)
                    return ws_deliver_msg(ws, msg, ev.opcode, ws->msg, ws->msg_len);
            } else if (ev.kind == VIAL_WS_EV_DATA) {
                if (ev.fin && ws->msg_len == 0) /* whole in the read buffer: no copy */
                    return ws_deliver_msg(ws, msg, ev.opcode, ev.data, ev.len);
                if (msg_append(ws, ev.data, ev.len) < 0)
                    return ws_end(ws, 1011, NULL, 0, -ENOMEM);
                if (ev.fin)
                    return ws_deliver_msg(ws, msg, ev.opcode, ws->msg, ws->msg_len);
            } else if (ev.opcode == VIAL_WS_OP_PING) {
                r = queue_finish_head(ws);
                if (r == 0)
                    r = send_frame(ws, VIAL_WS_OP_PONG, ev.data, ev.len);
                if (r < 0)
                    return ws_end(ws, -1, NULL, 0, r);
            } else if (ev.opcode == VIAL_WS_OP_CLOSE) {
                ws->close_code = ev.close_code;
                /* Echo the code (RFC 6455 5.5.1); no code: an empty close. */
                return ws_end(ws, ev.close_code, NULL, 0, VIAL_WS_CLOSED);
            }
            /* pongs are ignored */
            if (atomic_load(&ws->sess->produced) > VIAL_WS_SENDER_MAX || atomic_load(&ws->sess->slow)) {
                held = 1;
                break;
            }
        }
        if (queue_pump(ws) < 0)
            return ws_end(ws, -1, NULL, 0, -EPIPE);
        if (held)
            continue; /* input left for after sender_hold */
        ssize_t got = vial_conn_ws_fill(c, ws->window);
        if (got > 0)
            continue;
        if (got != -EAGAIN)
            return ws_end(ws, -1, NULL, 0, got == 0 ? -ECONNRESET : (int)got);
        int want = ws->qhead != NULL || vial_conn_ws_pending(c);
        if (!want) {
            /* Thousands of sessions sit here: no output buffer, and no stack
             * pages that the handshake's deeper calls touched. */
            vial_conn_ws_idle(c);
            if (!ws->stack_trimmed) {
                ws->stack_trimmed = 1;
                vial_coro_trim_stack();
            }
        }
        ws->idle = !want;
        r = vial_conn_ws_wait(c, VIAL_IO_READ | (want ? VIAL_IO_WRITE : 0), 0);
        ws->idle = 0;
        if (r < 0)
            return ws_end(ws, 1001, NULL, 0, r);
    }
}

int vial_ws_send(vial_ws *ws, int type, const void *data, size_t len)
{
    if (type != VIAL_WS_TEXT && type != VIAL_WS_BINARY)
        return -EINVAL;
    int r = vial_ws_accept(ws);
    if (r < 0)
        return r;
    if (ws->result)
        return -EPIPE;
    ws->in_app = 0;
    r = queue_finish_head(ws);
    if (r == 0)
        r = ws->deflate && len >= ws->deflate_min ? send_compressed(ws, type, data, len)
                                                  : send_frame(ws, type, data, len);
    if (r == 0)
        r = vial_conn_ws_flush(ws->c, 1);
    if (r < 0) {
        ws_end(ws, -1, NULL, 0, r);
        return r;
    }
    /* A handler that only sends, to a reader that keeps up, never waits:
     * each message is a slice's item. */
    vial_coro_spend(VIAL_SLICE_ITEM);
    ws->in_app = 1;
    return 0;
}

int vial_ws_close(vial_ws *ws, int code, const char *reason)
{
    size_t rl = reason ? strlen(reason) : 0;
    if ((code && (code < 1000 || code > 4999 || code == 1004 || code == 1005 || code == 1006 ||
                  code == 1015)) ||
        rl > 123 || (!code && rl))
        return -EINVAL;
    int r = vial_ws_accept(ws);
    if (r < 0)
        return r;
    if (ws->result)
        return -EPIPE;
    ws_end(ws, code, (const uint8_t *)reason, rl, VIAL_WS_CLOSED);
    return 0;
}

int vial_ws_close_code(const vial_ws *ws)
{
    return ws->close_code;
}

/* The session is over: nothing reaches it any more. */
static void ws_fini(vial_ws *ws, vial_coro *co, void *prev_local)
{
    leave_all(ws);
    queue_drop(ws);
    co->local = prev_local;
    ws->sess->ws = NULL;
    sess_unref(ws->sess);
    free(ws->msg);
    vial_ws_pmd_free(&ws->pmd);
}

int vial_ws_serve(vial_req *rq, vial_ws_handler fn)
{
    if (!rq->conn)
        return 501; /* the test client has no socket to upgrade */
    vial_ws ws;
    memset(&ws, 0, sizeof ws);
    ws.rq = rq;
    ws.c = rq->conn;
    ws.loop = vial_loop_current();
    ws.window = vial_conn_ws_window(ws.c);
    ws.in_app = 1; /* the handler runs first */
    vial_ws_parser_init(&ws.p, 0);
    ws.sess = calloc(1, sizeof *ws.sess);
    if (!ws.sess)
        return 503;
    atomic_init(&ws.sess->refs, 1);
    atomic_init(&ws.sess->moved, ws.loop->now);
    ws.sess->loop = ws.loop;
    ws.sess->ws = &ws;
    /* Broadcasts made on this coroutine (or its tasks) are this session's:
     * they count against its sender bound. */
    vial_coro *co = vial_coro_current();
    void *prev_local = co->local;
    co->local = ws.sess;
    int r = fn(rq, &ws);
    if (!ws.accepted) {
        ws_fini(&ws, co, prev_local);
        return 403;
    }
    /* A handler that returns with the session open closes it normally; a
     * failing one with 1011. */
    ws_end(&ws, r < 0 ? 1011 : 1000, NULL, 0, VIAL_WS_CLOSED);
    /* Deliveries in flight find no session (sess->ws) and are dropped. */
    ws_fini(&ws, co, prev_local);
    rq->res.status = 101;
    rq->res.upgraded = 1;
    return 0;
}

/* Never called: dispatch runs websocket rules through vial_ws_serve. It is
 * the rule's view so routing, url_for and Allow treat the route like any
 * GET route. */
static int ws_route_view(vial_req *rq, vial_res *rs)
{
    return vial_abort(rs, 400);
}

int vial_ws_route_as(vial_app *app, const char *path, vial_ws_handler fn, const char *endpoint,
                     void *data)
{
    if (!app || !path || !fn || path[0] != '/')
        return -EINVAL;
    char rule[1100];
    if ((size_t)snprintf(rule, sizeof rule, "GET %s", path) >= sizeof rule)
        return -EINVAL;
    int r = vial_route_as(app, rule, ws_route_view, endpoint, data);
    if (r == 0)
        app->rules_tail->ws = fn; /* the rule just added */
    return r;
}

/* --- groups ------------------------------------------------------------------------ */

vial_ws_group *vial_ws_group_new(void)
{
    vial_ws_group *g = calloc(1, sizeof *g);
    if (g)
        pthread_mutex_init(&g->lock, NULL);
    return g;
}

void vial_ws_group_free(vial_ws_group *g)
{
    if (!g)
        return;
    pthread_mutex_destroy(&g->lock);
    free(g->members);
    free(g);
}

int vial_ws_group_join(vial_ws_group *g, vial_ws *ws)
{
    if (ws->result)
        return -EPIPE;
    for (ws_member *m = ws->members; m; m = m->next_of_ws)
        if (m->group == g)
            return -EALREADY;
    ws_member *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->sess = ws->sess;
    m->group = g;
    pthread_mutex_lock(&g->lock);
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        ws_member **a = realloc(g->members, cap * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&g->lock);
            free(m);
            return -ENOMEM;
        }
        g->members = a;
        g->cap = cap;
    }
    g->members[g->n++] = m;
    pthread_mutex_unlock(&g->lock);
    m->next_of_ws = ws->members;
    ws->members = m;
    return 0;
}

void vial_ws_group_leave(vial_ws_group *g, vial_ws *ws)
{
    ws_member **pp = &ws->members;
    while (*pp && (*pp)->group != g)
        pp = &(*pp)->next_of_ws;
    ws_member *m = *pp;
    if (!m)
        return;
    *pp = m->next_of_ws;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n; i++) {
        if (g->members[i] == m) {
            g->members[i] = g->members[--g->n];
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
    /* Publishers use members under the lock only; deliveries hold the
     * session, not the member. */
    free(m);
}

/* On the member's loop thread. */
static void deliver(vial_loop *l, vial_msg *msg)
{
    ws_delivery *d = (ws_delivery *)msg;
    vial_ws *ws = d->to->ws;
    if (!ws || ws->result || atomic_load(&d->to->slow)) {
        delivery_retire(d);
        return;
    }
    d->next = NULL;
    if (ws->qtail)
        ws->qtail->next = d;
    else
        ws->qhead = d;
    ws->qtail = d;
    /* A handler busy with its own work (not in recv) cannot write its queue
     * meanwhile; its socket is not the one stuck. Only the byte bound
     * judges it then. */
    if (ws->in_app)
        atomic_store(&d->to->moved, l->now);
    vial_conn_ws_kick(ws->c);
}

/* The session whose coroutine (or an ancestor of it: a task it spawned)
 * publishes, or NULL (a worker thread, a timer of the app's). */
static ws_sess *publishing_session(void)
{
    for (vial_coro *c = vial_coro_current(); c; c = c->parent)
        if (c->local)
            return c->local;
    return NULL;
}

int vial_ws_group_broadcast(vial_ws_group *g, int type, const void *data, size_t len)
{
    if (type != VIAL_WS_TEXT && type != VIAL_WS_BINARY)
        return -EINVAL;
    ws_blob *b = vial_ws_frame_shared(type, data, len);
    if (!b)
        return -ENOMEM;
    ws_sess *from = publishing_session();
    size_t cost = sizeof(ws_delivery) + b->len;
    uint64_t now = vial_clock_ns();
    int sent = 0;
    /* Posting under the lock keeps the member list stable; the mailbox lock
     * nests inside it and is never held while taking this one. */
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n; i++) {
        ws_sess *to = g->members[i]->sess;
        if (atomic_load(&to->slow))
            continue;
        /* The member's queue is charged here, before the delivery travels,
         * so its bound also bounds what waits in its loop's mailbox. A
         * member too far behind is dropped now: its queue (or a single
         * message into an empty one) never grows past the bound. */
        size_t old = atomic_fetch_add(&to->queued, cost);
        if (old == 0) {
            atomic_store(&to->moved, now);
        } else if (old + cost > VIAL_WS_QUEUE_MAX ||
                   (int64_t)(now - atomic_load(&to->moved)) > (int64_t)VIAL_WS_STALL_NS) {
            atomic_fetch_sub(&to->queued, cost);
            if (!atomic_exchange(&to->slow, 1))
                sess_wake(to);
            continue;
        }
        ws_delivery *d = malloc(sizeof *d);
        if (!d) {
            atomic_fetch_sub(&to->queued, cost);
            continue;
        }
        d->msg.cb = deliver;
        d->to = to;
        d->from = from;
        d->blob = b;
        d->cost = cost;
        atomic_fetch_add(&to->refs, 1);
        atomic_fetch_add(&b->refs, 1);
        if (from) {
            atomic_fetch_add(&from->refs, 1);
            atomic_fetch_add(&from->produced, cost);
        }
        vial_loop_post(to->loop, &d->msg);
        sent++;
    }
    pthread_mutex_unlock(&g->lock);
    blob_unref(b);
    return sent;
}
