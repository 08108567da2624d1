/* WebSocket sessions and groups: the app's side of RFC 6455 (the frame
 * parser and the handshake checks are http/websocket.c).
 *
 * A session runs inside its handler on the connection's coroutine, with the
 * connection's buffers: no thread, no extra coroutine. vial_ws_recv is the
 * session's pump: it parses what the read buffer holds, answers pings,
 * writes the messages of its hub subscriptions (hub.c; the hub's drain
 * writes them itself while the session is parked idle), and parks on the
 * socket when there is nothing to do.
 *
 * Groups are a use of the hub: each is a private topic with a byte bound,
 * a stall clock, the abort policy and sender throttling (vial.h: "what a
 * slow or flooding member gets"). Nothing here may hold a loop or grow
 * without bound: the pump yields after a slice's budget, and a session
 * whose publishes are queued beyond its topics' bound is not read until
 * they drain. */
#include "app/app.h"
#include "app/hub.h"
#include "http/server.h"
#include "http/websocket.h"
#include "http/ws_deflate.h"
#include "runtime/coro.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- sessions --------------------------------------------------------------------- */

/* One complete server frame, shared by every subscriber it goes to. */
typedef vial_shared_bytes ws_blob;

/* A hub topic the session subscribed to (vial_ws_subscribe, or a group's
 * private topic: group says which). */
typedef struct ws_hsub {
    vial_sub *sub;
    const vial_ws_group *group;
    struct ws_hsub *next;
} ws_hsub;

/* The part of a session that other threads see: the hub charges its
 * publishes to it (sender throttling) and wakes it when they drain; it
 * outlives the session while messages it published are in flight. */
typedef struct ws_sess {
    vial_hub_sender snd;     /* first: the hub's view of it */
    atomic_int wake_posted;
    vial_loop *loop;
    vial_ws *ws;             /* NULL once over; read and written on its loop only */
    vial_msg wake;
} ws_sess;

/* A group: a private, unnamed topic of a hub of its own (never bridged to
 * Redis), with the bounds vial.h describes. */
struct vial_ws_group {
    vial_hub *hub;
};

struct vial_ws {
    /* What hub_direct reads, in one line (the hub's drain prefetches it). */
    vial_req *rq;
    struct vial_conn *c;
    ws_blob *out;           /* a frame taken from a subscription, being written */
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
    ws_hsub *hsubs;
    size_t qoff;            /* bytes of out already written */
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
    vial_hub_sender_unref(&s->snd);
}

static void sess_release(vial_hub_sender *snd)
{
    free(snd); /* the start of its ws_sess */
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
 * state again (its publishes drained). */
static void sess_wake(vial_hub_sender *snd)
{
    ws_sess *s = (ws_sess *)snd;
    if (s->loop == vial_loop_current()) {
        if (s->ws)
            vial_conn_ws_kick(s->ws->c);
        return;
    }
    if (atomic_exchange(&s->wake_posted, 1))
        return; /* one in flight does it */
    atomic_fetch_add(&s->snd.refs, 1);
    s->wake.cb = sess_wake_cb;
    vial_loop_post(s->loop, &s->wake);
}

static void queue_drop(vial_ws *ws)
{
    blob_unref(ws->out);
    ws->out = NULL;
    ws->qoff = 0;
}

static void leave_all(vial_ws *ws)
{
    while (ws->hsubs) {
        ws_hsub *h = ws->hsubs;
        ws->hsubs = h->next;
        vial_hub_sub_free(h->sub);
        free(h);
    }
}

/* Takes one hub message to write, if a subscription has one; the hub's
 * bounded queues hold the rest, so a slow peer costs at most its topics'
 * bounds (their policies decide what happens beyond). */
static int hub_refill(vial_ws *ws)
{
    for (ws_hsub *h = ws->hsubs; h; h = h->next)
        if ((ws->out = vial_sub_take_frame(h->sub)))
            return 1;
    return 0;
}

/* How the hub ended a subscription for being slow: VIAL_HUB_ABORT wins
 * over VIAL_HUB_DISCONNECT; 0: none was. */
static int hub_ended(const vial_ws *ws)
{
    int how = 0;
    for (const ws_hsub *h = ws->hsubs; h; h = h->next)
        if (vial_sub_ended(h->sub) > how)
            how = vial_sub_ended(h->sub);
    return how;
}

static void hub_kick(void *arg)
{
    vial_ws *ws = arg;
    /* A handler busy with its own work (not in recv) cannot write its queue
     * meanwhile; its socket is not the one stuck. Only the byte bound
     * judges it then. */
    if (ws->in_app)
        for (ws_hsub *h = ws->hsubs; h; h = h->next)
            vial_sub_touch(h->sub);
    vial_conn_ws_kick(ws->c);
}

/* The hub's drain, on this loop while the session is parked idle in recv
 * (so no frame of its own is half written): the broadcast goes to the
 * socket from there (in a batch with the other sessions'), without waking
 * the session. */
static int hub_direct_fd(void *arg, size_t len)
{
    vial_ws *ws = arg;
    if (!ws->idle || ws->result || ws->out)
        return -1;
    return vial_conn_ws_try_fd(ws->c, len);
}

static int hub_direct_done(void *arg, const uint8_t *bytes, size_t len, ssize_t res)
{
    vial_ws *ws = arg;
    return vial_conn_ws_try_done(ws->c, bytes, len, res);
}

static const vial_hub_direct hub_direct = {hub_direct_fd, hub_direct_done};

static int ws_subscribe(vial_ws *ws, vial_hub *h, const char *topic, const vial_ws_group *g)
{
    if (ws->result)
        return -EPIPE;
    if (!h || !topic)
        return -EINVAL;
    ws_hsub *e = malloc(sizeof *e);
    if (!e)
        return -ENOMEM;
    e->group = g;
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

int vial_ws_subscribe(vial_ws *ws, vial_hub *h, const char *topic)
{
    return ws_subscribe(ws, h, topic, NULL);
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
    if (!ws->out || !ws->qoff)
        return 0;
    int r = vial_conn_ws_out(ws->c, ws->out->bytes + ws->qoff, ws->out->len - ws->qoff);
    queue_drop(ws);
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
        while (ws->out || hub_refill(ws)) {
            size_t room = vial_conn_ws_room(ws->c);
            if (!room)
                break;
            size_t n = ws->out->len - ws->qoff;
            if (n > room)
                n = room;
            vial_conn_ws_out(ws->c, ws->out->bytes + ws->qoff, n); /* fits: no wait */
            ws->qoff += n;
            moved += n;
            if (ws->qoff == ws->out->len)
                queue_drop(ws);
        }
        if (!vial_conn_ws_pending(ws->c))
            return 0;
        int r = vial_conn_ws_flush(ws->c, 0);
        if (r == -EAGAIN)
            return 0;
        if (r < 0)
            return r;
        if (!ws->out)
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

/* Its publishes to topics with a sender bound (a group's broadcasts) that
 * are queued at subscribers pass the bound. */
static int sender_over(const vial_ws *ws)
{
    size_t max = atomic_load(&ws->sess->snd.max);
    return max && atomic_load(&ws->sess->snd.produced) > max;
}

/* Backpressure to a sender: while more of its publishes are queued at
 * subscribers than the topics' sender_max, its input is not read (the
 * peer's sends stall in TCP) until they fall to half, its own queue still
 * being written. A subscriber that takes nothing cannot hold it for ever:
 * after the topic's stall clock it reads on, and its next publish finds
 * the subscribers whose queues have not moved for that long slow. Returns 0
 * or < 0 (cancelled, broken). */
static int sender_hold(vial_ws *ws)
{
    vial_hub_sender *s = &ws->sess->snd;
    if (!sender_over(ws))
        return 0;
    uint64_t until = ws->loop->now + atomic_load(&s->hold_ns);
    for (;;) {
        if (hub_ended(ws) == VIAL_HUB_ABORT)
            return 0;
        if (queue_pump(ws) < 0)
            return -EPIPE;
        /* Announce the wait, then look again: a release in between either
         * sees the flag or left a count this load sees. */
        atomic_store(&s->waiting, 1);
        if (atomic_load(&s->produced) <= atomic_load(&s->max) / 2) {
            atomic_store(&s->waiting, 0);
            return 0;
        }
        int want = ws->out != NULL || vial_conn_ws_pending(ws->c);
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
        int ended = hub_ended(ws);
        if (ended == VIAL_HUB_ABORT) {
            /* Too far behind its messages: its socket is full, a close
             * frame would never get through. */
            ws->result = -ENOBUFS;
            leave_all(ws);
            queue_drop(ws);
            vial_conn_ws_abort(c);
            return ws->result;
        }
        if (ended) /* what it was sent still goes out, then the close */
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
            if (sender_over(ws) || hub_ended(ws)) {
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
        int want = ws->out != NULL || vial_conn_ws_pending(c);
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
    atomic_init(&ws.sess->snd.refs, 1);
    ws.sess->snd.wake = sess_wake;
    ws.sess->snd.release = sess_release;
    ws.sess->loop = ws.loop;
    ws.sess->ws = &ws;
    /* Publishes made on this coroutine (or its tasks) are this session's:
     * they count against its sender bound (hub.c: sender_current). */
    vial_coro *co = vial_coro_current();
    void *prev_local = co->local;
    co->local = &ws.sess->snd;
    int r = fn(rq, &ws);
    if (!ws.accepted) {
        ws_fini(&ws, co, prev_local);
        return 403;
    }
    /* A handler that returns with the session open closes it normally; a
     * failing one with 1011. */
    ws_end(&ws, r < 0 ? 1011 : 1000, NULL, 0, VIAL_WS_CLOSED);
    /* Wakes in flight find no session (sess->ws). */
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

/* --- groups: a use of the hub ------------------------------------------------------------ */

vial_ws_group *vial_ws_group_new(void)
{
    vial_ws_group *g = calloc(1, sizeof *g);
    if (!g || !(g->hub = vial_hub_new())) {
        free(g);
        return NULL;
    }
    vial_hub_limits lim = {VIAL_WS_QUEUE_MAX, (uint32_t)(VIAL_WS_STALL_NS / 1000000), VIAL_WS_SENDER_MAX};
    if (vial_hub_set_policy(g->hub, "", VIAL_HUB_ABORT, VIAL_HUB_QUEUE_MAX) < 0 ||
        vial_hub_set_limits(g->hub, "", &lim) < 0) {
        vial_hub_free(g->hub);
        free(g);
        return NULL;
    }
    return g;
}

void vial_ws_group_free(vial_ws_group *g)
{
    if (!g)
        return;
    vial_hub_free(g->hub);
    free(g);
}

int vial_ws_group_join(vial_ws_group *g, vial_ws *ws)
{
    if (ws->result)
        return -EPIPE;
    for (ws_hsub *h = ws->hsubs; h; h = h->next)
        if (h->group == g)
            return -EALREADY;
    return ws_subscribe(ws, g->hub, "", g);
}

void vial_ws_group_leave(vial_ws_group *g, vial_ws *ws)
{
    for (ws_hsub **pp = &ws->hsubs; *pp; pp = &(*pp)->next) {
        ws_hsub *h = *pp;
        if (h->group == g) {
            *pp = h->next;
            vial_hub_sub_free(h->sub);
            free(h);
            return;
        }
    }
}

int vial_ws_group_broadcast(vial_ws_group *g, int type, const void *data, size_t len)
{
    if (type != VIAL_WS_TEXT && type != VIAL_WS_BINARY)
        return -EINVAL;
    size_t members;
    int r = vial_hub_publish_frame(g->hub, "", type == VIAL_WS_TEXT ? VIAL_WS_OP_TEXT : VIAL_WS_OP_BINARY, data,
                                   len, &members);
    return r < 0 ? r : (int)members;
}
