/* The HTTP/1.1 server: loop threads with their own listeners (listen.h),
 * connections, the worker pool, and graceful shutdown. The app plugs in one
 * function that turns a request into a response, and one that hears of the
 * requests refused before they reach it (for its access log). */
#ifndef VIAL_HTTP_SERVER_H
#define VIAL_HTTP_SERVER_H

#include "vial.h"
#include "http/exchange.h"
#include "runtime/loop.h"
#include "runtime/peak.h"
#include "runtime/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct vial_conn vial_conn;
typedef struct vial_server vial_server;
typedef struct vial_server_thread vial_server_thread;

/* Called on the connection's coroutine for each request; fills rq->res.
 * May park (await) and may run work on the pool. */
typedef void (*vial_serve_fn)(void *data, vial_req *rq);

/* Called on the connection's coroutine after the server answered a request
 * itself with `status` (400, 408, 414, 431, 501, 503, 505...) without the
 * serve function: rq->head.method.len is 0 when the request line was not
 * parsed, rq->head.version_minor -1 when its version was not. For logging
 * only; rq->res is not sent. */
typedef void (*vial_reject_fn)(void *data, vial_req *rq, int status);

/* One listening descriptor of a loop thread. */
typedef struct vial_listener {
    vial_acceptor acc;
    vial_server_thread *thr;
    int by_backend; /* the loop's backend accepts (io_uring), not accept4 */
    int stopped;    /* ... and stopped on an error: resumed once it clears */
} vial_listener;

struct vial_server_thread {
    vial_loop loop;
    vial_server *server;
    pthread_t tid;
    vial_listener *listeners; /* one per server listener, same order */
    unsigned nlisteners;
    /* systemd's watchdog: the main thread pings a loop with ping_msg and
     * pings systemd only if every loop answered the previous one. */
    vial_msg ping_msg;
    _Atomic unsigned pongs;
    vial_conn *conns;   /* all open connections of this thread (for shutdown) */
    unsigned nconns;
    int draining;       /* shutdown: no new requests, close when idle */
    vial_timer grace_timer;
    vial_msg stop_msg;
    /* Out of descriptors: the edge-triggered listener reports pending
     * connections once, so accepting is retried on a timer until they are
     * taken; the log line about it is throttled. */
    vial_timer accept_retry;
    uint64_t emfile_logged_ns;
    unsigned emfile_unlogged;
    /* small caches so steady state allocates nothing; buffers: up to
     * VIAL_BUF_CACHE_MAX, as many as recent peaks used (conn.c, buf_put) */
    char **free_bufs;
    unsigned nfree_bufs;
    unsigned bufs_out;  /* buffers in use now */
    vial_peak bufs_peak; /* ... and the most at once lately (runtime/peak.h) */
    /* Buffers freed past the cache since the heap was last trimmed: after a
     * burst, malloc keeps them unless asked (conn.c, buf_put). */
    size_t freed_since_trim;
    vial_msg trim_msg;
    int trim_pending;
    vial_conn *free_conns;
    unsigned nfree_conns;
};

struct vial_server {
    vial_config cfg;
    /* Bytes of request bodies held in memory now, all threads together
     * (bounded by cfg.body_memory_max; conn.c). */
    _Atomic size_t body_memory;
    /* The one connection allowed past that bound (conn.c's body_reserve). */
    _Atomic(struct vial_conn *) body_owner;
    vial_serve_fn serve;
    vial_reject_fn reject;
    void *serve_data;
    vial_pool *pool;
    unsigned nthreads;
    vial_server_thread *threads;
    /* The listeners as opened (listen.h); thread 0 takes their descriptors. */
    struct vial_listen *listens;
    unsigned nlistens;
    _Atomic int draining; /* SIGTERM/SIGINT received: the health check says 503 */
    struct vial_tls *tls; /* the TCP listeners' TLS context (tls.h), or NULL */
    /* A worker of --processes: draining keeps idle connections open until
     * the grace period ends, so a request racing the drain is served. */
    int keep_idle_on_drain;
};

/* Timeouts and sizes of spec section 7. */
#define VIAL_HEAD_TIMEOUT_NS (10ull * 1000000000ull)
#define VIAL_BODY_TIMEOUT_NS (10ull * 1000000000ull)
#define VIAL_IDLE_TIMEOUT_NS (5ull * 1000000000ull)
#define VIAL_WRITE_TIMEOUT_NS (60ull * 1000000000ull)
#define VIAL_LINGER_NS (2ull * 1000000000ull)
#define VIAL_RBUF_SIZE (32 * 1024) /* holds the largest legal head */
#define VIAL_BUF_CACHE_MAX 1024     /* the free-buffer cache's capacity per thread */
#define VIAL_WBUF_SIZE (16 * 1024)

/* Work of the layer above that lives as long as the server rather than a
 * request (the hub's Redis bridge): start runs on loop thread 0 before its
 * first request, drain there when the shutdown begins (cancel what start
 * began: the loop ends once its connections have). Registered before
 * vial_server_run (not thread-safe), kept for every later run; the struct
 * must outlive them. */
typedef struct vial_server_service {
    void (*start)(vial_loop *loop, void *arg);
    void (*drain)(vial_loop *loop, void *arg);
    void *arg;
    struct vial_server_service *next;
} vial_server_service;
void vial_server_add_service(vial_server_service *svc);
/* Whether a vial_server_run is under way in this process (any thread). */
int vial_server_running(void);
/* --processes: in a worker process, serve on the supervisor's listeners
 * ls[0..n) (opened by vial_listen_open there) instead of opening any: every
 * loop thread takes a dup of each, so all threads of all workers share
 * each listener's one backlog. A worker never removes a Unix socket file
 * (the supervisor does, at its exit), tells systemd nothing, ignores
 * SIGHUP, keeps its idle connections while it drains, and is announced at
 * info level. ls must outlive vial_server_run. */
void vial_server_inherit(const struct vial_listen *ls, unsigned n);

/* Runs the server until SIGTERM/SIGINT; see vial_run. reject may be NULL. */
int vial_server_run(const vial_config *cfg, vial_serve_fn serve, vial_reject_fn reject, void *data);

/* --- connection (conn.c) --- */

/* Accepted socket fd → a connection on thr (registered, idle timer armed);
 * with tls (tls.h) it speaks TLS, its handshake due within
 * cfg.tls_handshake_timeout_ms. */
void vial_conn_accept(vial_server_thread *thr, int fd, struct vial_tls *tls);
/* Shutdown: closes idle connections, marks the others to close after their
 * current response. */
void vial_conn_drain_all(vial_server_thread *thr);
/* Grace expired: cancels running handlers and closes everything. */
void vial_conn_close_all(vial_server_thread *thr);
/* Frees the thread's cache of connection structs (at thread exit). */
void vial_conn_cache_free(vial_server_thread *thr);

/* The peer's address as text (getpeername once per connection; the text
 * lives as long as the connection). */
const char *vial_conn_peer(vial_req *rq);
/* Whether rq came over TLS. */
int vial_conn_tls(vial_req *rq);

/* Streaming, called by the app's response functions from a handler. */
int vial_conn_stream_begin(vial_req *rq);
int vial_conn_stream_write(vial_req *rq, const void *data, size_t len);
/* The stream is about to wait: what is buffered goes out (awaiting the
 * socket), then the output buffer goes back to the thread's cache until the
 * next write. 0, or -EPIPE. */
int vial_conn_stream_idle(vial_req *rq);
/* From the loop while the stream's coroutine is parked with nothing
 * buffered (the hub's drain), in two steps so that a drain can send to
 * many streams in one batch (runtime/sendq.h): the descriptor to send n
 * bytes on now, or -1 (not from here); then what that send returned
 * (bytes, or -errno): 1 sent, 2 the tail was buffered
 * (vial_conn_stream_idle sends it), 0 nothing sent. */
int vial_conn_stream_try_fd(vial_req *rq, size_t n);
int vial_conn_stream_try_done(vial_req *rq, const void *p, size_t n, ssize_t res);
/* 64-byte lines from a vial_conn's start that those sends read: what a
 * caller sending to many connections in a row may prefetch. */
#define VIAL_CONN_HOT_LINES 3

/* --- response head serialisation (writer.c) --- */

/* Writes the status line and headers of rq->res (with Date, Content-Length or
 * Transfer-Encoding, Connection) into out; returns bytes written or -1 if
 * it does not fit. `keep_alive` chooses the Connection header. */
int vial_write_head(const vial_req *rq, char *out, size_t cap, int keep_alive, int chunked,
                    int server_header);
/* "HTTP/1.1 400 Bad Request\r\n..." with Connection: close and a short text body. */
int vial_write_error(int status, char *out, size_t cap, int server_header);
const char *vial_status_reason(int status);

#endif
