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
 * order. */
#include "app/app.h"
#include "http/server.h"
#include "http/websocket.h"
#include "runtime/coro.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- sessions --------------------------------------------------------------------- */

typedef struct ws_blob {
    atomic_uint refs;
    size_t len;
    uint8_t bytes[]; /* one complete server frame */
} ws_blob;

typedef struct ws_member ws_member;

/* A broadcast on its way to one member; once delivered, an item of the
 * member's send queue. */
typedef struct ws_delivery {
    vial_msg msg;
    ws_member *mb;
    ws_blob *blob;
    struct ws_delivery *next;
} ws_delivery;

struct ws_member {
    atomic_uint refs;     /* the group's entry + deliveries in flight */
    vial_ws *ws;          /* NULL once it left; read and written on ws's loop only */
    vial_loop *loop;
    vial_ws_group *group;
    ws_member *next_of_ws;
};

struct vial_ws_group {
    pthread_mutex_t lock;
    ws_member **members;
    size_t n, cap;
};

struct vial_ws {
    vial_req *rq;
    struct vial_conn *c;
    vial_loop *loop;
    uint32_t window;        /* input is kept after the upgrade request */
    vial_ws_parser p;
    unsigned accepted : 1;
    unsigned overflow : 1;  /* fell too far behind its broadcasts */
    int result;             /* nonzero once the session is over */
    int close_code;         /* the peer's */
    uint8_t *msg;           /* reassembly of fragmented messages */
    size_t msg_len, msg_cap;
    ws_member *members;
    ws_delivery *qhead, *qtail;
    size_t qbytes, qoff;    /* queued bytes; bytes of the head already written */
};

static void blob_unref(ws_blob *b)
{
    if (atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
}

static void member_unref(ws_member *m)
{
    if (atomic_fetch_sub(&m->refs, 1) == 1)
        free(m);
}

static void delivery_free(ws_delivery *d)
{
    blob_unref(d->blob);
    free(d);
}

static void queue_drop(vial_ws *ws)
{
    while (ws->qhead) {
        ws_delivery *d = ws->qhead;
        ws->qhead = d->next;
        delivery_free(d);
    }
    ws->qtail = NULL;
    ws->qbytes = ws->qoff = 0;
}

static void leave_all(vial_ws *ws)
{
    while (ws->members)
        vial_ws_group_leave(ws->members->group, ws);
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

/* Finishes the queued frame already partly written, so another frame can
 * follow without splitting it. */
static int queue_finish_head(vial_ws *ws)
{
    if (!ws->qhead || !ws->qoff)
        return 0;
    ws_delivery *d = ws->qhead;
    int r = vial_conn_ws_out(ws->c, d->blob->bytes + ws->qoff, d->blob->len - ws->qoff);
    ws->qbytes -= d->blob->len;
    ws->qoff = 0;
    ws->qhead = d->next;
    if (!ws->qhead)
        ws->qtail = NULL;
    delivery_free(d);
    return r;
}

/* Moves queued frames into the output buffer and sends what the socket
 * takes, never waiting. Returns 0, or < 0 when the socket is broken. */
static int queue_pump(vial_ws *ws)
{
    for (;;) {
        while (ws->qhead) {
            size_t room = vial_conn_ws_room(ws->c);
            if (!room)
                break;
            ws_delivery *d = ws->qhead;
            size_t n = d->blob->len - ws->qoff;
            if (n > room)
                n = room;
            vial_conn_ws_out(ws->c, d->blob->bytes + ws->qoff, n); /* fits: no wait */
            ws->qoff += n;
            if (ws->qoff == d->blob->len) {
                ws->qbytes -= d->blob->len;
                ws->qoff = 0;
                ws->qhead = d->next;
                if (!ws->qhead)
                    ws->qtail = NULL;
                delivery_free(d);
            }
        }
        if (!vial_conn_ws_pending(ws->c))
            return 0;
        int r = vial_conn_ws_flush(ws->c, 0);
        if (r == -EAGAIN)
            return 0;
        if (r < 0)
            return r;
        if (!ws->qhead)
            return 0;
    }
}

/* Ends the session: a close frame (code 0: without payload; -1: none at
 * all), FIN at once, and no more membership. Returns result. */
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

int vial_ws_recv(vial_ws *ws, vial_ws_msg *msg)
{
    int r = vial_ws_accept(ws);
    if (r < 0)
        return r;
    struct vial_conn *c = ws->c;
    ws->msg_len = 0;
    for (;;) {
        if (ws->overflow) {
            /* Its socket is full: a close frame would never get through. */
            ws->result = -ENOBUFS;
            leave_all(ws);
            queue_drop(ws);
            vial_conn_ws_abort(c);
            return ws->result;
        }
        uint8_t *in;
        size_t n;
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
            if (ev.kind == VIAL_WS_EV_DATA) {
                if (ev.fin && ws->msg_len == 0) {
                    /* The whole message is in the read buffer: no copy. */
                    *msg = (vial_ws_msg){ev.opcode, ev.data, ev.len};
                    return 0;
                }
                if (msg_append(ws, ev.data, ev.len) < 0)
                    return ws_end(ws, 1011, NULL, 0, -ENOMEM);
                if (ev.fin) {
                    *msg = (vial_ws_msg){ev.opcode, ws->msg, ws->msg_len};
                    return 0;
                }
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
        }
        if (queue_pump(ws) < 0)
            return ws_end(ws, -1, NULL, 0, -EPIPE);
        ssize_t got = vial_conn_ws_fill(c, ws->window);
        if (got > 0)
            continue;
        if (got != -EAGAIN)
            return ws_end(ws, -1, NULL, 0, got == 0 ? -ECONNRESET : (int)got);
        r = vial_conn_ws_wait(c, ws->qhead != NULL || vial_conn_ws_pending(c));
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
    r = queue_finish_head(ws);
    if (r == 0)
        r = send_frame(ws, type, data, len);
    if (r == 0)
        r = vial_conn_ws_flush(ws->c, 1);
    if (r < 0)
        ws_end(ws, -1, NULL, 0, r);
    return r;
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
    vial_ws_parser_init(&ws.p, 0);
    int r = fn(rq, &ws);
    if (!ws.accepted) {
        leave_all(&ws);
        queue_drop(&ws);
        return 403;
    }
    /* A handler that returns with the session open closes it normally; a
     * failing one with 1011. */
    ws_end(&ws, r < 0 ? 1011 : 1000, NULL, 0, VIAL_WS_CLOSED);
    /* Members point at this stack frame: none may outlive it. */
    leave_all(&ws);
    queue_drop(&ws);
    free(ws.msg);
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
    atomic_init(&m->refs, 1);
    m->ws = ws;
    m->loop = ws->loop;
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
    /* Deliveries still in flight find no session and drop their message. */
    m->ws = NULL;
    member_unref(m);
}

/* On the member's loop thread. */
static void deliver(vial_loop *l, vial_msg *msg)
{
    ws_delivery *d = (ws_delivery *)msg;
    ws_member *m = d->mb;
    vial_ws *ws = m->ws;
    if (ws && !ws->result && !ws->overflow) {
        d->next = NULL;
        if (ws->qtail)
            ws->qtail->next = d;
        else
            ws->qhead = d;
        ws->qtail = d;
        ws->qbytes += d->blob->len;
        /* A member that does not read is dropped rather than buffered
         * without bound; its session ends at its next wake. */
        if (ws->qbytes > VIAL_WS_QUEUE_MAX)
            ws->overflow = 1;
        vial_conn_ws_kick(ws->c);
    } else {
        delivery_free(d);
    }
    member_unref(m);
}

int vial_ws_group_broadcast(vial_ws_group *g, int type, const void *data, size_t len)
{
    if (type != VIAL_WS_TEXT && type != VIAL_WS_BINARY)
        return -EINVAL;
    uint8_t h[10];
    size_t hl = vial_ws_frame_header(h, type, len);
    ws_blob *b = malloc(sizeof *b + hl + len);
    if (!b)
        return -ENOMEM;
    atomic_init(&b->refs, 1);
    b->len = hl + len;
    memcpy(b->bytes, h, hl);
    if (len)
        memcpy(b->bytes + hl, data, len);
    int sent = 0;
    /* Posting under the lock keeps the member list stable; the mailbox lock
     * nests inside it and is never held while taking this one. */
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->n; i++) {
        ws_member *m = g->members[i];
        ws_delivery *d = malloc(sizeof *d);
        if (!d)
            continue;
        d->msg.cb = deliver;
        d->mb = m;
        d->blob = b;
        atomic_fetch_add(&m->refs, 1);
        atomic_fetch_add(&b->refs, 1);
        vial_loop_post(m->loop, &d->msg);
        sent++;
    }
    pthread_mutex_unlock(&g->lock);
    blob_unref(b);
    return sent;
}
