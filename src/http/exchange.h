/* One request/response exchange: the parsed head, the body, the arena, and
 * the response being built. It lives on the connection coroutine's stack for
 * the duration of one request, so serving a request allocates nothing beyond
 * what the handler asks for. vial_req and vial_res (opaque in vial.h) are the
 * two faces of it. What the application layer keeps per request hangs off
 * app_data, which this layer never looks into. */
#ifndef VIAL_HTTP_EXCHANGE_H
#define VIAL_HTTP_EXCHANGE_H

#include "vial.h"
#include "http/parser.h"
#include "runtime/arena.h"

#include <stdint.h>

struct vial_conn;
struct vial_server;

/* A cleanup run when the exchange ends (temp files, library objects). */
typedef struct vial_cleanup {
    struct vial_cleanup *next;
    void (*fn)(void *arg);
    void *arg;
} vial_cleanup;

#define VIAL_RES_INLINE_HEADERS 8
/* Small on purpose: the request sits in conn_main's frame, above every
 * long-lived session's park; at 4 KiB an idle websocket or SSE subscriber
 * touched a third stack page (bench/results/ws-scale-2026-12-06.md). */
#define VIAL_ARENA_INLINE 1024

typedef struct vial_kv {
    const char *name;
    const char *value;
    size_t name_len, value_len; /* a decoded %00 puts NULs inside */
} vial_kv;

typedef struct vial_res_header_t {
    const char *name, *value;
    uint32_t name_len, value_len;
} vial_res_header_t;

struct vial_res {
    vial_req *rq;
    int status;
    const char *content_type;
    vial_res_header_t *headers;
    uint32_t nheaders, headers_cap;
    char *body;
    size_t body_len, body_cap; /* body_cap 0: body is static, not ours to grow */
    int file_fd;                /* >= 0: the body is file bytes [file_off, +body_len), sent with sendfile */
    int64_t file_off;
    unsigned streaming : 1;     /* head sent by vial_stream_begin */
    unsigned stream_close : 1;  /* HTTP/1.0 stream: body ends at close */
    unsigned upgraded : 1;      /* a websocket session took the connection over */
    /* last: not cleared per request, an entry is written before it counts */
    vial_res_header_t inline_headers[VIAL_RES_INLINE_HEADERS];
};

struct vial_req {
    vial_http_head head;
    struct vial_conn *conn;     /* NULL under the test client */
    struct vial_server *server;
    /* The layer above's per-request state, set by the serve function and
     * valid while it runs; never read here. */
    void *app_data;
    struct vial_pool *pool;     /* where VIAL_SYNC functions run */
    /* Streaming: sends the head now / one piece of body. The connection (or
     * the test client) provides them. */
    int (*sink_begin)(vial_req *rq);
    int (*sink_write)(vial_req *rq, const void *data, size_t len);
    void *sink_data; /* the sink's own state (the test client's run) */
    vial_arena arena;
    /* Non-zero: the http layer refused the request with this status (413);
     * the app renders only that error (no hooks), then the connection closes. */
    int reject_status;
    const char *body;
    size_t body_len;
    int is_head; /* HEAD: the response is written without its body */
    int is_sync; /* running on the worker pool */

    /* filled lazily */
    const char *method_z, *path_z, *query_z;
    size_t path_len;
    vial_kv *args;
    unsigned nargs;
    int args_parsed;

    const char *remote_addr;
    vial_cleanup *cleanups;

    vial_res res;
    char arena_inline[VIAL_ARENA_INLINE];
};

/* Prepares ex for a new request on conn (head already parsed). */
void vial_exchange_init(vial_req *rq, struct vial_conn *conn, struct vial_server *srv);
/* Runs the cleanups (newest first), then frees the arena's overflow blocks. */
void vial_exchange_fini(vial_req *rq);

/* Registers fn(arg) to run when the exchange ends. Returns 0 or -ENOMEM. */
int vial_exchange_defer(vial_req *rq, void (*fn)(void *arg), void *arg);

#endif
