/* The HTTP/1.1 connection state machine.
 *
 * An idle connection is just this struct, registered with the loop: no
 * coroutine, no buffers (nginx-style), so idle keep-alive connections cost a
 * few hundred bytes. When bytes arrive, a coroutine is started with a read
 * and a write buffer from the thread's cache; it serves requests while there
 * are any (pipelining: responses are batched in the write buffer and flushed
 * when the input runs dry or a handler waits), then gives everything back and
 * the connection is idle again.
 *
 * Every wait of the coroutine (head, body, write) has a deadline on the
 * connection's single timer; an idle connection uses the same timer for the
 * keep-alive timeout. */
#include "http/server.h"
#include "http/tls.h"
#include "http/websocket.h"
#include "runtime/coro.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

struct vial_conn {
    vial_io io;
    vial_timer timer;
    vial_server_thread *thr;
    vial_coro *coro;
    vial_conn *prev, *next;
    char *rbuf, *wbuf;
    uint32_t rpos, rlen; /* unconsumed input is rbuf[rpos..rlen) */
    uint32_t wpos, wlen; /* unsent output is wbuf[wpos..wlen) */
    unsigned wait;       /* VIAL_IO_* the coroutine is parked on */
    unsigned in_ready : 1, out_ready : 1;
    unsigned in_handler : 1; /* the app is running: a hang-up cancels it */
    unsigned closing : 1;    /* close when the coroutine ends */
    unsigned closed : 1;     /* fd closed, struct waiting for deferred free */
    unsigned broken : 1;     /* a write failed: no further output possible */
    unsigned hup : 1;        /* the peer's FIN (or an error) was seen */
    unsigned reset : 1;      /* the peer reset the connection (an error was seen) */
    unsigned in_request : 1; /* from a parsed head to its response's end */
    unsigned tls_ready : 1;  /* the TLS handshake is done */
    unsigned sending : 1;    /* the last output is the loop's to send (vial_io_send) */
    unsigned timed_wait : 1; /* the timer is conn_wait's deadline */
    SSL *ssl;                /* TLS over the socket (tls.h), or NULL: plain */
    uint64_t hs_deadline;    /* loop ns by which the TLS handshake must end */
    /* Loop ns at which an idle connection (no coroutine) is closed. Its
     * timer is left armed while a request runs and may fire earlier than
     * this (at the previous idle deadline): conn_timer then sets it again.
     * A keep-alive request so touches the timer heap once per idle period,
     * not twice per request (a stop and a start: 1-1.5 % of /plaintext's
     * CPU, the heap's entries scattered over every connection). */
    uint64_t idle_until;
    uint64_t body_start;     /* loop ns when the current body began (minimum rate) */
    size_t body_reserved;    /* bytes of the server's body budget this request holds */
    vial_req *rq;
    vial_msg free_msg;
    /* Last: the hub's direct sends (conn_try_fd) read the fields above
     * from the first two lines (VIAL_CONN_HOT_LINES). */
    char peer[INET6_ADDRSTRLEN]; /* the peer's address as text, once asked ("" until then) */
};

/* --- buffers and structs from the thread's caches -------------------------- */

#define MAX_CACHED_CONNS 1024
/* Buffers kept for reuse: the cache is a stack (LIFO, the buffer just put
 * back is the next one taken); when a window ends (runtime/peak.h), it
 * keeps WARM_BUFS, or as many as were in use at once in the last one to two
 * windows, and frees the rest, the least recently used. So 256 requests in
 * flight (each waiting for its database query) do not free and malloc two
 * 32 KiB buffers per request — with the heap trims that followed, ~15% of
 * /db's CPU — and a burst's buffers still go back after it. */
#define WARM_BUFS 64

static char *buf_get(vial_server_thread *t)
{
    char *b = t->nfree_bufs ? t->free_bufs[--t->nfree_bufs] : malloc(VIAL_RBUF_SIZE);
    if (b)
        vial_peak_note(&t->bufs_peak, ++t->bufs_out);
    return b;
}

/* Freed buffers past this many bytes trigger one malloc_trim: 32 KiB buffers
 * come from malloc's heap, which keeps freed pages resident, so a burst of
 * connections would otherwise leave the process at its peak RSS. */
#define TRIM_AFTER_BYTES (16u << 20)

static void trim_heap(vial_loop *l, vial_msg *m)
{
    vial_server_thread *t = (vial_server_thread *)((char *)m - offsetof(vial_server_thread, trim_msg));
    t->trim_pending = 0;
    t->freed_since_trim = 0;
    malloc_trim(0);
    vial_coro_pool_trim(t->loop.coro_pool);
}

static void schedule_trim(vial_server_thread *t)
{
    if (t->trim_pending || t->draining)
        return;
    t->trim_pending = 1;
    t->trim_msg.cb = trim_heap;
    vial_loop_defer(&t->loop, &t->trim_msg); /* after this iteration's events */
}

static void buf_free(vial_server_thread *t, char *b)
{
    free(b);
    t->freed_since_trim += VIAL_RBUF_SIZE;
    if (t->freed_since_trim >= TRIM_AFTER_BYTES)
        schedule_trim(t);
}

static unsigned bufs_keep(const vial_server_thread *t)
{
    unsigned n = vial_peak_get(&t->bufs_peak);
    n = n > WARM_BUFS ? n : WARM_BUFS;
    return n < VIAL_BUF_CACHE_MAX ? n : VIAL_BUF_CACHE_MAX;
}

/* A window ended: what the last two did not need goes (the oldest first). */
static void bufs_window(vial_server_thread *t)
{
    if (!vial_peak_roll(&t->bufs_peak, t->loop.now, t->bufs_out))
        return;
    unsigned keep = bufs_keep(t);
    if (t->nfree_bufs <= keep)
        return;
    unsigned drop = t->nfree_bufs - keep;
    for (unsigned i = 0; i < drop; i++)
        buf_free(t, t->free_bufs[i]);
    memmove(t->free_bufs, t->free_bufs + drop, keep * sizeof *t->free_bufs);
    t->nfree_bufs = keep;
}

static void buf_put(vial_server_thread *t, char *b)
{
    if (!b)
        return;
    t->bufs_out--;
    bufs_window(t);
    if (t->nfree_bufs < VIAL_BUF_CACHE_MAX) {
        t->free_bufs[t->nfree_bufs++] = b;
        return;
    }
    buf_free(t, b);
}

static void conn_release_buffers(vial_conn *c)
{
    buf_put(c->thr, c->rbuf);
    buf_put(c->thr, c->wbuf);
    c->rbuf = c->wbuf = NULL;
    c->rpos = c->rlen = c->wpos = c->wlen = 0;
}

static void conn_free_deferred(vial_loop *l, vial_msg *m)
{
    vial_conn *c = (vial_conn *)((char *)m - offsetof(vial_conn, free_msg));
    vial_server_thread *t = c->thr;
    if (t->nfree_conns < MAX_CACHED_CONNS) {
        c->next = t->free_conns;
        t->free_conns = c;
        t->nfree_conns++;
    } else {
        free(c);
    }
}

/* Closes the socket now; the struct is freed after the current event batch,
 * which may still hold an event for it. */
static void conn_destroy(vial_conn *c)
{
    vial_server_thread *t = c->thr;
    vial_loop *l = &t->loop;
    if (c->closed)
        return;
    c->closed = 1;
    vial_timer_stop(l, &c->timer);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    vial_io_close(l, &c->io); /* io_uring's poll would hold it open */
    conn_release_buffers(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    t->nconns--;
    c->free_msg.cb = conn_free_deferred;
    vial_loop_defer(l, &c->free_msg);
    /* The burst is over on this thread: give back what it left in the heap
     * and the caches (buffers, stacks) kept for its peak. */
    if (t->nconns == 0 && (t->freed_since_trim || t->nfree_bufs > WARM_BUFS ||
                           vial_peak_get(&t->bufs_peak) > WARM_BUFS ||
                           vial_coro_pool_peak(t->loop.coro_pool) > WARM_BUFS)) {
        vial_peak_reset(&t->bufs_peak, 0);
        while (t->nfree_bufs > WARM_BUFS)
            buf_free(t, t->free_bufs[--t->nfree_bufs]);
        schedule_trim(t);
    }
    if (t->draining && t->nconns == 0)
        vial_loop_stop(l);
}

/* --- the byte pipe: the socket, or TLS over it ------------------------------------
 * Each returns what the system call would, as -errno; a -EAGAIN sets *want
 * to the readiness to wait for (TLS may need to write to read, and the
 * reverse). */

static ssize_t pipe_recv(vial_conn *c, void *dst, size_t cap, unsigned *want)
{
    if (c->io.rstate & VIAL_IO_RECV_ON) { /* io_uring received it already */
        *want = VIAL_IO_READ;
        return vial_io_recv(&c->thr->loop, &c->io, dst, cap);
    }
    if (c->ssl)
        return vial_tls_read(c->ssl, dst, cap, want);
    ssize_t n = recv(c->io.fd, dst, cap, 0);
    *want = VIAL_IO_READ;
    return n < 0 ? -errno : n;
}

/* Sends from iov[0..n) (n <= 2). TLS takes one region per call: the head
 * and a large body are two records either way. */
static ssize_t pipe_sendv(vial_conn *c, const struct iovec *iov, int n, unsigned *want)
{
    *want = VIAL_IO_WRITE;
    if (c->ssl)
        return vial_tls_write(c->ssl, iov[0].iov_base, iov[0].iov_len, want);
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
    return w < 0 ? -errno : w;
}

/* Ends the output: close_notify first over TLS, then the FIN. */
static void pipe_shutdown(vial_conn *c, int how)
{
    if (c->ssl && how == SHUT_WR)
        vial_tls_close_notify(c->ssl);
    shutdown(c->io.fd, how);
}

static void set_waiting(vial_conn *c, unsigned want)
{
    if (want & VIAL_IO_READ)
        c->in_ready = 0;
    else
        c->out_ready = 0;
}

/* --- waiting ----------------------------------------------------------------- */

static int conn_flush(vial_conn *c);

/* Not an I/O event: marks a wait that vial_conn_ws_kick may end (a
 * websocket session that waits for its queue or its senders). */
#define CONN_WAIT_KICK 0x100u

static int conn_wait(vial_conn *c, unsigned ev, uint64_t deadline)
{
    vial_loop *l = &c->thr->loop;
    c->wait = ev;
    if (deadline) {
        vial_timer_start(l, &c->timer, deadline);
        c->timed_wait = 1;
    }
    int r = vial_coro_park();
    c->wait = 0;
    if (c->timed_wait) {
        vial_timer_stop(l, &c->timer);
        c->timed_wait = 0;
    }
    return r;
}

/* > 0 bytes read, 0 at end of stream, < 0 error (-ETIMEDOUT, -ECANCELED,
 * -errno). deadline 0: -EAGAIN rather than waiting. */
static ssize_t conn_read(vial_conn *c, char *dst, size_t cap, uint64_t deadline)
{
    for (;;) {
        unsigned want;
        ssize_t n = pipe_recv(c, dst, cap, &want);
        if (n > 0) {
            /* A short read drained the socket: the next arrival is a new
             * edge, so no need to pay for a recv that says EAGAIN. (Not
             * so over TLS: a read returns one record, more may wait.) */
            if ((size_t)n < cap && !c->ssl)
                c->in_ready = 0;
            return n;
        }
        if (n == 0)
            return 0;
        if (n == -EINTR)
            continue;
        if (n != -EAGAIN)
            return n;
        set_waiting(c, want);
        if (!deadline)
            return -EAGAIN;
        /* Never wait for input with responses still buffered: the client may
         * be waiting for them before it sends more. */
        if (c->wpos < c->wlen && conn_flush(c) < 0)
            return -EPIPE;
        int r = conn_wait(c, want, deadline);
        if (r < 0)
            return r;
    }
}

/* The largest TLS record's payload. */
#define TLS_RECORD 16384

/* Sends wbuf[wpos..wlen) and then extra[0..extra_len) with as few system calls
 * as possible. may_wait = 0 sends what the socket takes now and returns
 * -EAGAIN for the rest (used to flush before a handler parks). */
static int conn_send(vial_conn *c, const char *extra, size_t extra_len, int may_wait)
{
    if (c->broken)
        return -EPIPE;
    while (c->wpos < c->wlen || extra_len) {
        /* TLS seals one region per call: a head still buffered takes the
         * start of the body into its record (one record, one write(2),
         * one seal instead of two). A retry after WANT_WRITE finds the
         * record full or the body all taken, so it presents the same
         * bytes, as OpenSSL requires. */
        size_t pending = c->wlen - c->wpos;
        if (c->ssl && pending && extra_len && pending < TLS_RECORD) {
            size_t k = TLS_RECORD - pending;
            if (k > VIAL_RBUF_SIZE - c->wlen)
                k = VIAL_RBUF_SIZE - c->wlen;
            if (k > extra_len)
                k = extra_len;
            memcpy(c->wbuf + c->wlen, extra, k);
            c->wlen += (uint32_t)k;
            extra += k;
            extra_len -= k;
        }
        struct iovec iov[2];
        int n = 0;
        if (c->wpos < c->wlen)
            iov[n++] = (struct iovec){c->wbuf + c->wpos, c->wlen - c->wpos};
        if (extra_len)
            iov[n++] = (struct iovec){(void *)extra, extra_len};
        unsigned want;
        ssize_t w = pipe_sendv(c, iov, n, &want);
        if (w > 0) {
            size_t sent = (size_t)w;
            size_t fromw = c->wlen - c->wpos;
            if ((size_t)w >= fromw) {
                c->wpos = c->wlen = 0;
                w -= (ssize_t)fromw;
                if (w) {
                    extra += w;
                    extra_len -= (size_t)w;
                }
            } else {
                c->wpos += (uint32_t)w;
            }
            /* A fast reader never makes this wait: a large body or stream
             * yields after a slice's budget (not from the on_park flush,
             * which runs as the coroutine parks anyway). */
            if (may_wait)
                vial_coro_spend(sent);
            continue;
        }
        if (w == -EINTR)
            continue;
        if (w == -EAGAIN) {
            set_waiting(c, want);
            if (!may_wait)
                return -EAGAIN; /* only the on_park flush, which has no extra */
            int r = conn_wait(c, want, c->thr->loop.now + VIAL_WRITE_TIMEOUT_NS);
            if (r < 0) {
                c->broken = 1;
                return r;
            }
            continue;
        }
        c->broken = 1;
        return w < 0 ? (int)w : -EPIPE;
    }
    c->wpos = c->wlen = 0;
    return 0;
}

static int conn_flush(vial_conn *c)
{
    return conn_send(c, NULL, 0, 1);
}

static void sent_buf_release(vial_loop *l, void *buf)
{
    buf_put(l->data, buf);
}

/* The output of a batch that ends the coroutine: where the backend sends
 * by itself (io_uring), the buffer goes with the send and the connection
 * goes idle now, not after a system call; its next request waits for the
 * completion (conn_io). */
static int conn_flush_last(vial_conn *c)
{
    if ((c->io.rstate & VIAL_IO_RECV_ON) && c->wpos == 0 && c->wlen && !c->broken &&
        vial_io_send(&c->thr->loop, &c->io, c->wbuf, c->wlen, sent_buf_release) == 0) {
        c->wbuf = NULL;
        c->wlen = 0;
        c->sending = 1;
        return 0;
    }
    return conn_flush(c);
}

/* on_park hook while a handler runs: responses to earlier pipelined requests
 * must not wait for a slow handler. */
static void conn_flush_nowait(void *arg)
{
    vial_conn *c = arg;
    if (c->wpos < c->wlen)
        conn_send(c, NULL, 0, 0);
}

/* Appends bytes to the output buffer, flushing first if they do not fit. */
static int conn_out(vial_conn *c, const char *s, size_t n)
{
    if (n > VIAL_RBUF_SIZE - c->wlen) {
        if (n > VIAL_RBUF_SIZE / 2)
            return conn_send(c, s, n, 1);
        int r = conn_flush(c);
        if (r < 0)
            return r;
    }
    memcpy(c->wbuf + c->wlen, s, n);
    c->wlen += (uint32_t)n;
    return 0;
}

/* Ends the connection after a response the server chose to close with:
 * FIN first, then read and discard what the client still sends for a short
 * while, so the response is not destroyed by a reset. */
static void conn_linger_close(vial_conn *c)
{
    conn_flush(c);
    pipe_shutdown(c, SHUT_WR);
    uint64_t deadline = c->thr->loop.now + VIAL_LINGER_NS;
    size_t total = 0;
    while (total < 1024 * 1024) {
        ssize_t n = conn_read(c, c->rbuf, VIAL_RBUF_SIZE, deadline);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    c->closing = 1;
}

/* The minor version of a refused head's request line, or -1 when the
 * parser stopped before it was known valid (a 505, a bad version, a line
 * cut short): read back from the bytes after the target, still in rbuf. */
static int refused_version(const vial_conn *c, const vial_http_head *h)
{
    if (!h->method.len || !h->target.len)
        return -1;
    const char *v = h->target.p + h->target.len, *end = c->rbuf + c->rlen;
    if (v < c->rbuf || v > end || end - v < 10 || memcmp(v, " HTTP/1.", 8) || (v[8] != '0' && v[8] != '1') ||
        (v[9] != '\r' && v[9] != '\n'))
        return -1;
    return v[8] - '0';
}

/* The server answers rq itself (rq prepared by vial_exchange_init; its head
 * as far as the parser got) and tells the layer above, for its log. */
static void conn_reject(vial_conn *c, vial_req *rq, int status)
{
    char tmp[512];
    vial_server *s = c->thr->server;
    int n = vial_write_error(status, tmp, sizeof tmp, s->cfg.server_header);
    if (n > 0)
        conn_out(c, tmp, (size_t)n);
    if (s->reject) {
        if (!c->in_request)
            rq->head.version_minor = refused_version(c, &rq->head);
        s->reject(s->serve_data, rq, status);
    }
    conn_linger_close(c);
}

/* --- reading a request -------------------------------------------------------- */

/* Returns the head length (> 0), 0 when the connection should go idle (no
 * bytes pending), -1 to close (with *status set when a response is due). */
static int read_head(vial_conn *c, vial_http_head *h, int *status)
{
    uint64_t deadline = 0;
    uint32_t scanned = c->rpos, parsed_at = c->rpos;
    *status = 0;
    for (;;) {
        if (c->rlen > c->rpos) {
            if (!deadline)
                deadline = c->thr->loop.now + VIAL_HEAD_TIMEOUT_NS;
            /* Parse when a new line ended, or every KiB of a long line (so
             * an over-long target is answered 414 early), never per byte. */
            int has_lf = memchr(c->rbuf + scanned, '\n', c->rlen - scanned) != NULL;
            scanned = c->rlen;
            if (has_lf || c->rlen - parsed_at >= 1024) {
                parsed_at = c->rlen;
                int n = vial_http_parse_request(c->rbuf + c->rpos, c->rlen - c->rpos, h, status);
                if (n > 0)
                    return n;
                if (n < 0)
                    return -1;
            }
        } else if (!c->in_ready && !c->hup) {
            return 0;
        }
        if (c->rlen == VIAL_RBUF_SIZE) {
            if (c->rpos == 0) {
                /* A buffer that holds any legal head is full: the parser
                 * would have answered 414/431 for a too-long target or
                 * field section, so this is a flood of empty lines or a
                 * giant method. */
                *status = 400;
                return -1;
            }
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            scanned -= c->rpos;
            parsed_at -= c->rpos;
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        /* No byte of a head yet: nothing to wait for, the connection goes
         * idle (the edge flag can be stale, and over TLS it stays set after
         * every read). */
        ssize_t n = conn_read(c, c->rbuf + c->rlen, VIAL_RBUF_SIZE - c->rlen, deadline);
        if (n > 0) {
            c->rlen += (uint32_t)n;
            continue;
        }
        if (n == -EAGAIN)
            return 0;
        if (n == -ETIMEDOUT && c->rlen > c->rpos)
            *status = 408;
        return -1;
    }
}

/* --- request bodies: minimum rate and the server's memory budget ----------- */

/* The time the body read so far (got bytes) must be complete by: 10 s of
 * inactivity, or the minimum-rate line — after the grace period, the body
 * must average body_min_rate bytes/s since it began — whichever is sooner.
 * An inactivity timer alone lets a client trickle one byte every few
 * seconds and hold the connection (and its buffers) forever. */
static uint64_t body_deadline(vial_conn *c, size_t got)
{
    const vial_config *cfg = &c->thr->server->cfg;
    uint64_t d = c->thr->loop.now + VIAL_BODY_TIMEOUT_NS;
    if (cfg->body_grace_ms > 0 && cfg->body_min_rate > 0) {
        uint64_t rate = (uint64_t)cfg->body_min_rate;
        uint64_t earned = (uint64_t)got / rate * 1000000000ull + (uint64_t)got % rate * 1000000000ull / rate;
        uint64_t r = c->body_start + (uint64_t)cfg->body_grace_ms * 1000000ull + earned;
        if (r < d)
            d = r;
    }
    return d;
}

/* Takes n bytes of the server-wide body budget before they are allocated.
 * When it is spent, the connection stops reading (TCP holds its client
 * back) and polls until other requests give memory back: a cross-thread
 * waiter queue would wake it sooner, but this only runs under memory
 * pressure and costs one timer per 10 ms. The budget is taken a step at a
 * time, so uploads that arrive together can split it among themselves with
 * none able to finish: then one waiter at a time (the owner) may go past
 * the bound until its body is complete, so memory stays within the budget
 * plus one body and every upload is served in turn. (A body larger than
 * the whole budget proceeds the same way.) The wait is not the client's
 * fault: it does not count against its minimum rate. */
#define BODY_BUDGET_STEP (64 * 1024)

static int body_reserve(vial_conn *c, size_t n)
{
    vial_server *s = c->thr->server;
    size_t max = s->cfg.body_memory_max;
    uint64_t waited_from = 0;
    for (;;) {
        size_t cur = atomic_load(&s->body_memory);
        if (!max || cur + n <= max || cur == 0 || atomic_load(&s->body_owner) == c) {
            if (!atomic_compare_exchange_weak(&s->body_memory, &cur, cur + n))
                continue;
            c->body_reserved += n;
            if (waited_from)
                c->body_start += c->thr->loop.now - waited_from;
            return 0;
        }
        vial_conn *none = NULL;
        if (atomic_compare_exchange_strong(&s->body_owner, &none, c))
            continue;
        if (!waited_from)
            waited_from = c->thr->loop.now;
        int r = vial_coro_sleep_ns(10 * 1000000ull);
        if (r == -ECANCELED)
            return r;
    }
}

static void body_release(vial_conn *c)
{
    if (c->body_reserved) {
        atomic_fetch_sub(&c->thr->server->body_memory, c->body_reserved);
        c->body_reserved = 0;
    }
    /* Only c itself makes c the owner, so a plain load tells; a locked
     * compare-exchange per request would bounce the server-wide line
     * between the loop threads. */
    vial_conn *me = c;
    if (atomic_load_explicit(&c->thr->server->body_owner, memory_order_relaxed) == c)
        atomic_compare_exchange_strong(&c->thr->server->body_owner, &me, NULL);
}

/* Reads a Content-Length body. Small bodies stay in the read buffer (no
 * copy); larger ones get an arena block and are read straight into it. */
static int read_body_length(vial_conn *c, vial_req *rq, int *status)
{
    uint64_t need = rq->head.content_length;
    uint32_t have = c->rlen - c->rpos;
    if (c->rpos + need <= VIAL_RBUF_SIZE) {
        while (have < need) {
            ssize_t n = conn_read(c, c->rbuf + c->rlen, VIAL_RBUF_SIZE - c->rlen, body_deadline(c, have));
            if (n <= 0) {
                *status = n == -ETIMEDOUT ? 408 : 0;
                return -1;
            }
            c->rlen += (uint32_t)n;
            have += (uint32_t)n;
        }
        rq->body = c->rbuf + c->rpos;
        rq->body_len = need;
        c->rpos += (uint32_t)need;
        return 0;
    }
    /* A block this large is mapped (arena.c): its pages cost memory only
     * once written. So the budget is taken as the body arrives, a step
     * ahead of it, not for the whole Content-Length at once: a client that
     * announces 1 MiB and trickles holds a step, not a megabyte. */
    size_t got = have < need ? have : need;
    size_t held = 0;
    char *body = vial_arena_alloc(&rq->arena, need);
    if (!body || body_reserve(c, held = got + BODY_BUDGET_STEP < need ? got + BODY_BUDGET_STEP : need) < 0) {
        *status = 503;
        return -1;
    }
    memcpy(body, c->rbuf + c->rpos, got);
    c->rpos += (uint32_t)got;
    while (got < need) {
        if (got == held) {
            size_t more = need - held < BODY_BUDGET_STEP ? need - held : BODY_BUDGET_STEP;
            if (body_reserve(c, more) < 0) {
                *status = 0;
                return -1;
            }
            held += more;
        }
        ssize_t n = conn_read(c, body + got, held - got, body_deadline(c, got));
        if (n <= 0) {
            *status = n == -ETIMEDOUT ? 408 : 0;
            return -1;
        }
        got += (size_t)n;
    }
    rq->body = body;
    rq->body_len = need;
    return 0;
}

/* Decodes a chunked body into an arena buffer. Input is read into the part of
 * the read buffer after the head; consumed framing is dropped as it goes, so
 * the head's spans stay valid. */
static int read_body_chunked(vial_conn *c, vial_req *rq, int *status)
{
    vial_chunked d;
    vial_chunked_init(&d);
    uint32_t window = c->rpos; /* first byte after the head */
    char *body = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        size_t avail = c->rlen - c->rpos;
        if (avail) {
            if (cap - len < avail) {
                size_t ncap = cap ? cap * 2 : 4096;
                while (ncap - len < avail)
                    ncap *= 2;
                char *nb = body_reserve(c, ncap - cap) == 0 ? vial_arena_grow(&rq->arena, body, len, ncap) : NULL;
                if (!nb) {
                    *status = 503;
                    return -1;
                }
                body = nb;
                cap = ncap;
            }
            size_t used = 0;
            int r = vial_chunked_feed(&d, c->rbuf + c->rpos, avail, &used, body, &len,
                                      c->thr->server->cfg.max_body);
            c->rpos += (uint32_t)used;
            if (r < 0) {
                *status = -r;
                return -1;
            }
            if (r == 1)
                break;
            if (c->rpos == c->rlen)
                c->rpos = c->rlen = window;
        }
        if (c->rlen == VIAL_RBUF_SIZE) {
            /* The decoder holds partial lines in its state, so it always
             * consumes everything; a full window means it did not. */
            *status = 400;
            return -1;
        }
        ssize_t n = conn_read(c, c->rbuf + c->rlen, VIAL_RBUF_SIZE - c->rlen, body_deadline(c, len));
        if (n <= 0) {
            *status = n == -ETIMEDOUT ? 408 : 0;
            return -1;
        }
        c->rlen += (uint32_t)n;
    }
    rq->body = body ? body : "";
    rq->body_len = len;
    return 0;
}

/* --- writing a response --------------------------------------------------------- */

/* TLS without kTLS: the file is read into the (flushed) output buffer and
 * sent from there, a buffer at a time. */
static int conn_copyfile(vial_conn *c, int fd, off_t pos, size_t len)
{
    while (len) {
        ssize_t n = pread(fd, c->wbuf, len < VIAL_RBUF_SIZE ? len : VIAL_RBUF_SIZE, pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* the file shrank under us: as in conn_sendfile */
            c->broken = 1;
            return n < 0 ? -errno : -EIO;
        }
        c->wpos = 0;
        c->wlen = (uint32_t)n;
        int r = conn_flush(c);
        if (r < 0)
            return r;
        pos += n;
        len -= (size_t)n;
    }
    return 0;
}

/* File bodies go from the page cache to the socket with sendfile(2) (over
 * kTLS too), after the head still in the output buffer. */
static int conn_sendfile(vial_conn *c, int fd, int64_t off, size_t len)
{
    int r = conn_flush(c);
    if (r < 0)
        return r;
    off_t pos = (off_t)off;
    while (len) {
        /* At most a slice's budget per call, then the loop's other work
         * (a 1 GiB file to a fast client held a loop for 192 ms). */
        size_t part = len > VIAL_SLICE_BUDGET ? VIAL_SLICE_BUDGET : len;
        unsigned want = VIAL_IO_WRITE;
        ssize_t n;
        if (c->ssl) {
            n = vial_tls_sendfile(c->ssl, fd, pos, part, &want);
            if (n == -EOPNOTSUPP)
                return conn_copyfile(c, fd, pos, len);
            if (n > 0)
                pos += n;
        } else {
            n = sendfile(c->io.fd, fd, &pos, part);
            if (n < 0)
                n = -errno;
        }
        if (n > 0) {
            len -= (size_t)n;
            vial_coro_spend((size_t)n);
            continue;
        }
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN) {
            set_waiting(c, want);
            r = conn_wait(c, want, c->thr->loop.now + VIAL_WRITE_TIMEOUT_NS);
            if (r < 0) {
                c->broken = 1;
                return r;
            }
            continue;
        }
        /* n == 0: the file shrank under us; the promised length cannot be
         * kept, so the connection must end. */
        c->broken = 1;
        return n < 0 ? (int)n : -EIO;
    }
    return 0;
}

static int body_allowed(int status)
{
    return !(status < 200 || status == 204 || status == 205 || status == 304);
}

static int write_response(vial_conn *c, vial_req *rq, int keep)
{
    const vial_server *s = c->thr->server;
    for (int attempt = 0; attempt < 2; attempt++) {
        int n = vial_write_head(rq, c->wbuf + c->wlen, VIAL_RBUF_SIZE - c->wlen, keep, 0,
                                s->cfg.server_header);
        if (n >= 0) {
            c->wlen += (uint32_t)n;
            break;
        }
        if (attempt == 0 && c->wlen) {
            int r = conn_flush(c);
            if (r < 0)
                return r;
            continue;
        }
        /* headers larger than the whole buffer: the handler's bug, not the
         * client's; answer 500 rather than a truncated head. */
        n = vial_write_error(500, c->wbuf + c->wlen, VIAL_RBUF_SIZE - c->wlen, s->cfg.server_header);
        c->wlen += (uint32_t)(n > 0 ? n : 0);
        c->closing = 1;
        return conn_flush(c);
    }
    const vial_res *rs = &rq->res;
    if (rq->is_head || !body_allowed(rs->status) || !rs->body_len)
        return 0;
    if (rs->file_fd >= 0)
        return conn_sendfile(c, rs->file_fd, rs->file_off, rs->body_len);
    if (rs->body_len <= 4096 && rs->body_len <= VIAL_RBUF_SIZE - c->wlen) {
        memcpy(c->wbuf + c->wlen, rs->body, rs->body_len);
        c->wlen += (uint32_t)rs->body_len;
        return 0;
    }
    return conn_send(c, rs->body, rs->body_len, 1);
}

int vial_conn_stream_begin(vial_req *rq)
{
    vial_conn *c = rq->conn;
    vial_res *rs = &rq->res;
    int chunked = rq->head.version_minor >= 1;
    rs->stream_close = !chunked;
    int n = vial_write_head(rq, c->wbuf + c->wlen, VIAL_RBUF_SIZE - c->wlen,
                            chunked && rq->head.keep_alive && !c->thr->draining, chunked,
                            c->thr->server->cfg.server_header);
    if (n < 0)
        return -E2BIG;
    c->wlen += (uint32_t)n;
    rs->streaming = 1;
    return conn_flush(c);
}

/* Gives the output buffer back while nothing is pending in it: thousands of
 * quiet streams (SSE subscribers) would each hold a touched page of it. The
 * next write, or conn_main after the handler, takes one back. */
static void out_release(vial_conn *c)
{
    if (c->wbuf && c->wpos == c->wlen) {
        buf_put(c->thr, c->wbuf);
        c->wbuf = NULL;
        c->wpos = c->wlen = 0;
    }
}

/* 0, or -ENOMEM (then nothing more can be written). */
static int out_take(vial_conn *c)
{
    if (__builtin_expect(c->wbuf != NULL, 1))
        return 0;
    if (!(c->wbuf = buf_get(c->thr))) {
        c->broken = 1;
        return -ENOMEM;
    }
    return 0;
}

int vial_conn_stream_idle(vial_req *rq)
{
    vial_conn *c = rq->conn;
    if (c->wpos < c->wlen && conn_flush(c) < 0)
        return -EPIPE;
    out_release(c);
    return 0;
}

int vial_conn_stream_write(vial_req *rq, const void *data, size_t len)
{
    vial_conn *c = rq->conn;
    if (c->broken)
        return -EPIPE;
    if (rq->is_head || len == 0)
        return 0;
    if (out_take(c) < 0)
        return -ENOMEM;
    if (!rq->res.stream_close) {
        char line[24];
        int n = snprintf(line, sizeof line, "%zx\r\n", len);
        int r = conn_out(c, line, (size_t)n);
        if (r < 0)
            return r;
    }
    int r = len <= 4096 ? conn_out(c, data, len) : conn_send(c, data, len, 1);
    if (r == 0 && !rq->res.stream_close)
        r = conn_out(c, "\r\n", 2);
    if (r == 0)
        r = conn_flush(c);
    /* Each write is a system call: a stream of small pieces to a client
     * that keeps up yields as often as one of large pieces. */
    if (r == 0)
        vial_coro_spend(VIAL_SLICE_ITEM);
    return r;
}

/* --- the connection coroutine ---------------------------------------------------- */

/* A request refused for its size (413) is still answered by the app: its
 * error handler renders the page (rq->reject_status tells it that nothing
 * else may run), as Flask and Quart do. The body was not read, so the
 * connection closes after it. Other rejections get the fixed page. */
static void conn_reject_rendered(vial_conn *c, vial_req *rq, int status)
{
    vial_server *s = c->thr->server;
    if (status != 413 || !s->serve) {
        conn_reject(c, rq, status);
        return;
    }
    rq->reject_status = status;
    rq->pool = s->pool;
    c->rq = rq;
    c->in_handler = 1;
    s->serve(s->serve_data, rq);
    c->in_handler = 0;
    c->rq = NULL;
    write_response(c, rq, 0);
    conn_linger_close(c);
}

static void serve_options_asterisk(vial_conn *c, vial_req *rq, int keep)
{
    rq->res.status = 200;
    write_response(c, rq, keep);
}

/* Someone spoke plain HTTP to a TLS port (OpenSSL recognised the request
 * line): a plain-text 400 saying so, as nginx answers, then the usual
 * lingering close. The connection is plain from here on. */
static void refuse_plain_http(vial_conn *c)
{
    static const char msg[] = "HTTP/1.1 400 Bad Request\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 46\r\n"
                              "Connection: close\r\n\r\n"
                              "The plain HTTP request was sent to HTTPS port\n";
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (conn_out(c, msg, sizeof msg - 1) == 0)
        conn_linger_close(c);
}

/* The TLS handshake, from the connection's first input; it must be over by
 * hs_deadline. */
static int conn_handshake(vial_conn *c)
{
    for (;;) {
        unsigned want = 0;
        int plain = 0;
        int r = vial_tls_handshake(c->ssl, &want, &plain);
        if (r == 0) {
            c->tls_ready = 1;
            return 0;
        }
        if (r != -EAGAIN) {
            if (plain)
                refuse_plain_http(c);
            return r;
        }
        set_waiting(c, want);
        r = conn_wait(c, want, c->hs_deadline);
        if (r < 0)
            return r;
    }
}

static void conn_main(void *arg)
{
    vial_conn *c = arg;
    vial_server_thread *t = c->thr;
    vial_server *s = t->server;
    vial_req rq;

    if (c->ssl && !c->tls_ready && conn_handshake(c) < 0) {
        c->closing = 1;
        return;
    }

    for (;;) {
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        int status;
        c->in_request = 0;
        rq.head.max_body = s->cfg.max_body;
        /* A head the parser never reached (a timeout) must not show the
         * previous request's line in a rejection's log line. */
        rq.head.method.len = rq.head.target.len = rq.head.path.len = 0;
        rq.head.nheaders = 0;
        rq.head.has_query = 0;
        int n = read_head(c, &rq.head, &status);
        if (n == 0) {
            if (c->wpos < c->wlen && conn_flush(c) < 0)
                c->closing = 1;
            break; /* nothing pending: go idle */
        }
        if (n < 0) {
            if (status) {
                /* A 413's head is whole (the limit is judged at its end):
                 * the app renders it. */
                vial_exchange_init(&rq, c, s);
                conn_reject_rendered(c, &rq, status);
                vial_exchange_fini(&rq);
            }
            else if (c->wpos < c->wlen)
                conn_flush(c); /* the client half-closed after pipelining: answer all */
            c->closing = 1;
            break;
        }
        c->rpos += (uint32_t)n;
        c->in_request = 1;
        vial_exchange_init(&rq, c, s);
        rq.pool = s->pool;
        rq.sink_begin = vial_conn_stream_begin;
        rq.sink_write = vial_conn_stream_write;
        c->rq = &rq;

        if (rq.head.body_kind != VIAL_BODY_NONE) {
            if (rq.head.expect_continue && rq.head.version_minor >= 1) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (conn_out(c, cont, sizeof cont - 1) < 0 || conn_flush(c) < 0) {
                    c->closing = 1;
                    vial_exchange_fini(&rq);
                    body_release(c);
                    break;
                }
            }
            c->body_start = c->thr->loop.now;
            int r = rq.head.body_kind == VIAL_BODY_CHUNKED ? read_body_chunked(c, &rq, &status)
                                                           : read_body_length(c, &rq, &status);
            if (r < 0) {
                if (status)
                    conn_reject_rendered(c, &rq, status);
                c->closing = 1;
                vial_exchange_fini(&rq);
                body_release(c);
                break;
            }
        }

        int keep = rq.head.keep_alive && !t->draining;
        if (rq.head.is_asterisk) {
            serve_options_asterisk(c, &rq, keep);
        } else {
            c->in_handler = 1;
            /* A reset that came with (or right after) the request was seen
             * before the handler could be cancelled by it: nobody will read
             * the answer, so the request starts cancelled — its sync work is
             * never queued and its awaits return -ECANCELED. (A FIN alone is
             * a half-close: the client still waits for the answer.) */
            if (c->reset)
                vial_coro_abandon(c->coro);
            c->coro->on_park = conn_flush_nowait;
            c->coro->on_park_arg = c;
            s->serve(s->serve_data, &rq);
            c->coro->on_park = NULL;
            c->in_handler = 0;
            keep = keep && !t->draining && !c->coro->cancelled;
            (void)out_take(c); /* a quiet stream gave it back (vial_conn_stream_idle) */
            if (rq.res.upgraded) {
                /* A websocket session ran on this coroutine (websocket.c):
                 * it wrote the 101, its frames and the close; the
                 * connection ends here. */
                keep = 0;
            } else if (rq.res.streaming) {
                if (rq.res.stream_close)
                    keep = 0;
                else if (!rq.is_head && !c->broken)
                    conn_out(c, "0\r\n\r\n", 5);
                if (!rq.head.keep_alive || t->draining)
                    keep = 0;
            } else if (write_response(c, &rq, keep) < 0) {
                keep = 0;
            }
        }
        c->rq = NULL;
        c->in_request = 0;
        vial_exchange_fini(&rq);
        body_release(c);

        if (!keep || c->broken) {
            if (!c->broken)
                conn_linger_close(c);
            c->closing = 1;
            break;
        }
        if (c->rpos == c->rlen && !c->in_ready && !c->hup) {
            if (conn_flush_last(c) < 0)
                c->closing = 1;
            break;
        }
        /* Pipelined requests that keep coming share the loop like any
         * other input: a slice serves at most VIAL_SLICE_BUDGET's worth. */
        vial_coro_spend(VIAL_SLICE_ITEM + (size_t)n);
        if (c->wlen > VIAL_WBUF_SIZE && conn_flush(c) < 0) {
            c->closing = 1;
            break;
        }
    }
}

static void conn_coro_exit(vial_coro *co)
{
    vial_conn *c = co->user;
    c->coro = NULL;
    if (c->closing || c->broken) {
        conn_destroy(c);
        return;
    }
    conn_release_buffers(c);
    if (c->thr->draining) {
        conn_destroy(c);
        return;
    }
    c->idle_until = c->thr->loop.now + VIAL_IDLE_TIMEOUT_NS;
    if (!c->timer.slot || c->timer.when > c->idle_until)
        vial_timer_start(&c->thr->loop, &c->timer, c->idle_until);
}

static void conn_start(vial_conn *c)
{
    vial_server_thread *t = c->thr;
    c->rbuf = buf_get(t);
    c->wbuf = buf_get(t);
    vial_coro *co = c->rbuf && c->wbuf ? vial_coro_new(&t->loop, conn_main, c) : NULL;
    if (!co) {
        conn_destroy(c); /* out of memory: shed this connection, keep the rest */
        return;
    }
    co->user = c;
    co->on_exit = conn_coro_exit;
    co->label = "http connection";
    c->coro = co;
    vial_coro_resume(co);
}

/* A FIN that follows more pipelined requests is a half-close (HTTP/1.1
 * allows it: "that's all I am sending"), not a disconnect: the client still
 * waits for those answers. Only a FIN with nothing left to serve, or a reset,
 * cancels the running handler. */
static int peer_still_asking(vial_conn *c, unsigned ev)
{
    if (ev & VIAL_IO_ERR)
        return 0;
    if (c->rpos < c->rlen || c->io.rbid || (c->ssl && vial_tls_pending(c->ssl)))
        return 1;
    int pending = 0;
    return ioctl(c->io.fd, FIONREAD, &pending) == 0 && pending > 0;
}

static void conn_io(vial_loop *l, vial_io *io, unsigned ev)
{
    vial_conn *c = (vial_conn *)io;
    if (c->closed)
        return;
    if (ev & (VIAL_IO_READ | VIAL_IO_HUP | VIAL_IO_ERR))
        c->in_ready = 1;
    if (ev & (VIAL_IO_HUP | VIAL_IO_ERR))
        c->hup = 1; /* the edge comes once: remember it for when input runs dry */
    if (ev & VIAL_IO_ERR)
        c->reset = 1;
    if (ev & (VIAL_IO_WRITE | VIAL_IO_ERR | VIAL_IO_HUP))
        c->out_ready = 1;
    if (ev & VIAL_IO_SENT)
        c->sending = 0; /* (an error was flagged above: the next read ends it) */
    if (!c->coro) {
        if (c->in_ready && !c->sending)
            conn_start(c);
        return;
    }
    if (((c->wait & VIAL_IO_READ) && c->in_ready) || ((c->wait & VIAL_IO_WRITE) && c->out_ready)) {
        vial_coro_wake(c->coro, 0);
    } else if (c->in_handler && (ev & (VIAL_IO_HUP | VIAL_IO_ERR)) && !peer_still_asking(c, ev)) {
        /* The client went away while its handler runs: cancel it, so every
         * pending await returns -ECANCELED. A reset also abandons it (its
         * queued sync work is dropped); after a FIN the client may still
         * read the answer. */
        if (ev & VIAL_IO_ERR)
            vial_coro_abandon(c->coro);
        else
            vial_coro_cancel(c->coro);
    }
}

static void conn_timer(vial_loop *l, vial_timer *t)
{
    vial_conn *c = (vial_conn *)((char *)t - offsetof(vial_conn, timer));
    if (c->coro) {
        if (c->timed_wait)
            vial_coro_wake(c->coro, -ETIMEDOUT);
        return; /* (an idle deadline left armed: the coroutine's end sets it again) */
    }
    if (c->idle_until > l->now)
        vial_timer_start(l, t, c->idle_until); /* an earlier idle deadline, left armed */
    else
        conn_destroy(c); /* keep-alive idle timeout: close silently */
}

void vial_conn_accept(vial_server_thread *t, int fd, struct vial_tls *tls)
{
    vial_conn *c = t->free_conns;
    if (c) {
        t->free_conns = c->next;
        t->nfree_conns--;
    } else {
        c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
    }
    memset(c, 0, sizeof *c);
    c->io.fd = fd;
    c->io.cb = conn_io;
    c->timer.cb = conn_timer;
    c->thr = t;
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    t->nconns++;
    uint64_t deadline = t->loop.now + VIAL_IDLE_TIMEOUT_NS;
    if (tls) {
        int ms = t->server->cfg.tls_handshake_timeout_ms;
        c->hs_deadline = deadline = t->loop.now + (uint64_t)(ms > 0 ? ms : 10000) * 1000000u;
        c->ssl = vial_tls_accept(tls, fd);
    }
    if (!tls)
        c->io.rstate = VIAL_IO_RECV_WANTED; /* io_uring: receive into its buffers */
    if ((tls && !c->ssl) || vial_io_add(&t->loop, &c->io) < 0) {
        conn_destroy(c);
        return;
    }
    c->idle_until = deadline;
    vial_timer_start(&t->loop, &c->timer, deadline);
}

int vial_conn_tls(vial_req *rq)
{
    vial_conn *c = rq->conn;
    return c && c->ssl;
}

void vial_conn_drain_all(vial_server_thread *t)
{
    vial_conn *c = t->conns;
    while (c) {
        vial_conn *next = c->next;
        /* A worker retired by a reload keeps its idle connections: a
         * request already on its way to one is served (Connection: close),
         * not lost; the grace period's end closes the rest. */
        if (t->server->keep_idle_on_drain)
            ;
        else if (!c->coro)
            conn_destroy(c);
        else if (!c->in_request)
            vial_coro_cancel(c->coro); /* waiting for a request: stop waiting */
        /* A request under way (its body arriving, its handler running, its
         * response or file going out) finishes within the grace period;
         * the connection closes after it (keep-alive ends when draining). */
        c = next;
    }
    if (t->nconns == 0)
        vial_loop_stop(&t->loop);
}

void vial_conn_close_all(vial_server_thread *t)
{
    for (vial_conn *c = t->conns, *next; c; c = next) {
        next = c->next;
        if (c->coro)
            vial_coro_cancel(c->coro);
        else
            conn_destroy(c); /* idle, kept by keep_idle_on_drain */
    }
}

void vial_conn_cache_free(vial_server_thread *t)
{
    while (t->free_conns) {
        vial_conn *c = t->free_conns;
        t->free_conns = c->next;
        free(c);
    }
    t->nfree_conns = 0;
}

/* Once per connection (the access log asks on every request): the text is
 * kept in the connection, which outlives its requests. */
const char *vial_conn_peer(vial_req *rq)
{
    vial_conn *c = rq->conn;
    if (!c)
        return NULL;
    if (c->peer[0])
        return c->peer;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(c->io.fd, (struct sockaddr *)&ss, &len) != 0)
        return NULL;
    /* A Unix socket's peer has no address worth showing (usually an
     * unnamed socket): a fixed word, which --trusted-proxy can name. */
    if (ss.ss_family == AF_UNIX) {
        memcpy(c->peer, "unix", 5);
        return c->peer;
    }
    const void *addr = ss.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                                : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!inet_ntop(ss.ss_family, addr, c->peer, sizeof c->peer)) {
        c->peer[0] = 0;
        return NULL;
    }
    return c->peer;
}

/* --- websocket sessions (websocket.c) ---------------------------------------------
 * A session runs inside its handler on this coroutine with these buffers;
 * these are its byte pipe. No time limits: websocket connections have no
 * idle timeout (writes keep theirs). */

void vial_conn_ws_input(vial_conn *c, uint8_t **p, size_t *n)
{
    *p = (uint8_t *)c->rbuf + c->rpos;
    *n = c->rlen - c->rpos;
}

void vial_conn_ws_consume(vial_conn *c, size_t n)
{
    c->rpos += (uint32_t)n;
}

uint32_t vial_conn_ws_window(vial_conn *c)
{
    return c->rpos;
}

ssize_t vial_conn_ws_fill(vial_conn *c, uint32_t window)
{
    /* The request head before `window` stays: the handler may read it. */
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = window;
    } else if (c->rlen == VIAL_RBUF_SIZE) {
        memmove(c->rbuf + window, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen = window + (c->rlen - c->rpos);
        c->rpos = window;
    }
    if (c->rlen == VIAL_RBUF_SIZE)
        return -ENOBUFS; /* the frame parser always consumes what it is given */
    /* Drained since the last edge: a session woken to send (a broadcast)
     * pays no recv that says EAGAIN. */
    if (!c->in_ready)
        return -EAGAIN;
    for (;;) {
        size_t cap = VIAL_RBUF_SIZE - c->rlen;
        unsigned want;
        ssize_t n = pipe_recv(c, c->rbuf + c->rlen, cap, &want);
        if (n > 0) {
            if ((size_t)n < cap && !c->ssl)
                c->in_ready = 0;
            c->rlen += (uint32_t)n;
            return n;
        }
        if (n == -EINTR)
            continue;
        /* (TLS may want to write first; the session's wait for input
         * retries once the socket is readable again.) */
        if (n == -EAGAIN)
            set_waiting(c, want);
        return n;
    }
}

int vial_conn_ws_wait(vial_conn *c, unsigned events, uint64_t deadline)
{
    if (c->coro->cancelled)
        return -ECANCELED;
    /* An edge that came while the coroutine was busy will not come again. */
    if (((events & VIAL_IO_READ) && c->in_ready) || ((events & VIAL_IO_WRITE) && c->out_ready))
        return 0;
    return conn_wait(c, events | CONN_WAIT_KICK, deadline);
}

void vial_conn_ws_kick(vial_conn *c)
{
    /* Only a coroutine parked in conn_wait: any other park belongs to the
     * handler's own awaits. Waits in conn_read/conn_send retry on a spurious
     * wake, so kicking them is harmless. */
    if (c->coro && c->wait)
        vial_coro_wake(c->coro, 0);
}

int vial_conn_ws_out(vial_conn *c, const void *p, size_t n)
{
    if (out_take(c) < 0)
        return -ENOMEM;
    return conn_out(c, p, n);
}

size_t vial_conn_ws_room(vial_conn *c)
{
    if (c->broken || out_take(c) < 0)
        return 0;
    return VIAL_RBUF_SIZE - c->wlen;
}

void vial_conn_ws_idle(vial_conn *c)
{
    /* vial_conn_ws_out takes one back; after the upgrade nothing else
     * writes to this connection. */
    out_release(c);
}

int vial_conn_ws_pending(vial_conn *c)
{
    return c->wpos < c->wlen;
}

int vial_conn_ws_flush(vial_conn *c, int may_wait)
{
    return conn_send(c, NULL, 0, may_wait);
}

/* For sends from the loop while the connection's coroutine is parked with
 * its output buffer empty (the hub's drain), in two steps so that a drain
 * can send to many connections in one batch (runtime/sendq.h):
 * conn_try_fd says where n bytes may go now (-1: not from here — TLS,
 * something buffered, larger than the buffer, broken), conn_try_done takes
 * what the send returned: 1 sent whole, 2 the tail buffered (the coroutine
 * must flush it), 0 nothing sent (the socket is full, or an error the
 * coroutine's own send will meet). */
static int conn_try_fd(const vial_conn *c, size_t n)
{
    /* TLS must retry a refused write with the same bytes: not from here. */
    if (c->ssl || c->broken || c->wpos < c->wlen || n > VIAL_RBUF_SIZE || !c->coro)
        return -1;
    return c->io.fd;
}

static int conn_try_done(vial_conn *c, const void *p, size_t n, ssize_t w)
{
    if (w == (ssize_t)n)
        return 1;
    if (w <= 0) {
        if (w == -EAGAIN || w == -EWOULDBLOCK)
            set_waiting(c, VIAL_IO_WRITE);
        return 0;
    }
    if (out_take(c) < 0)
        return 1; /* broken: the coroutine ends at its next look */
    memcpy(c->wbuf, (const char *)p + w, n - (size_t)w);
    c->wpos = 0;
    c->wlen = (uint32_t)(n - (size_t)w);
    return 2;
}

int vial_conn_stream_try_fd(vial_req *rq, size_t n)
{
    return conn_try_fd(rq->conn, n);
}

int vial_conn_stream_try_done(vial_req *rq, const void *p, size_t n, ssize_t res)
{
    return conn_try_done(rq->conn, p, n, res);
}

/* A websocket session parked in recv flushes a buffered tail when kicked. */
static int ws_tried(vial_conn *c, int r)
{
    if (r == 2)
        vial_conn_ws_kick(c);
    return r != 0;
}

int vial_conn_ws_try_fd(vial_conn *c, size_t n)
{
    return conn_try_fd(c, n);
}

int vial_conn_ws_try_done(vial_conn *c, const void *p, size_t n, ssize_t res)
{
    return ws_tried(c, conn_try_done(c, p, n, res));
}

void vial_conn_ws_shutdown(vial_conn *c)
{
    if (!c->broken)
        conn_flush(c);
    pipe_shutdown(c, SHUT_WR);
}

void vial_conn_ws_abort(vial_conn *c)
{
    /* Nothing more is written (a peer that does not read would hold a
     * flush for the whole write timeout); the connection ends unflushed. */
    c->broken = 1;
    pipe_shutdown(c, SHUT_RDWR);
}
