/* One request/response exchange: the parsed head, the body, the arena, and
 * the response being built. It lives on the connection coroutine's stack for
 * the duration of one request, so serving a request allocates nothing beyond
 * what the handler asks for. vial_req and vial_res (opaque in vial.h) are the
 * two faces of it. */
#ifndef VIAL_HTTP_EXCHANGE_H
#define VIAL_HTTP_EXCHANGE_H

#include "vial.h"
#include "http/parser.h"
#include "runtime/arena.h"

#include <stdint.h>

struct vial_conn;
struct vial_server;
struct vial_rule;
struct vial_cookies;  /* app/cookies.c: parsed Cookie header */
struct vial_form;     /* app/form.c: parsed form fields and files */
struct vial_json_doc; /* app/json_parse.c: parsed JSON body */
struct vial_session;  /* app/session.c: decoded session cookie */
struct vial_g;        /* app/lifecycle.c: Flask's g */

/* A cleanup run when the exchange ends (temp files, library objects). */
typedef struct vial_cleanup {
    struct vial_cleanup *next;
    void (*fn)(void *arg);
    void *arg;
} vial_cleanup;

#ifndef VIAL_MAX_PARAMS
#define VIAL_MAX_PARAMS 8
#endif
#define VIAL_RES_INLINE_HEADERS 8
#define VIAL_ARENA_INLINE 4096

typedef struct vial_kv {
    const char *name;
    const char *value;
    size_t name_len, value_len; /* a decoded %00 puts NULs inside */
} vial_kv;

typedef struct vial_res_header_t {
    const char *name, *value;
    uint32_t name_len, value_len;
} vial_res_header_t;

struct vial_json {
    vial_res *rs;
    uint32_t depth;
    int err;
    /* per depth, as bitsets: a value was written at this level / it is an
     * object. 520 levels: parsed JSON may nest 512 deep and be echoed. */
    uint8_t need_comma[520 / 8];
    uint8_t after_key;
    uint8_t is_obj[520 / 8];
};

struct vial_res {
    vial_req *rq;
    int status;
    const char *content_type;
    vial_res_header_t *headers;
    uint32_t nheaders, headers_cap;
    vial_res_header_t inline_headers[VIAL_RES_INLINE_HEADERS];
    char *body;
    size_t body_len, body_cap; /* body_cap 0: body is static, not ours to grow */
    const char *error_message;  /* vial_fail / vial_abort_msg */
    int aborted;                /* vial_abort's status, or 0 */
    int failed;                 /* vial_fail was called */
    /* The last helper that returned VIAL_EHTTP (vial_req_json...): its code
     * and message, used if that code comes back out of the view. */
    int helper_code;
    const char *helper_msg;
    unsigned built : 1;         /* a response-building call ran (status, body, json...) */
    int file_fd;                /* >= 0: the body is file bytes [file_off, +body_len), sent with sendfile */
    int64_t file_off;
    unsigned streaming : 1;     /* head sent by vial_stream_begin */
    unsigned stream_close : 1;  /* HTTP/1.0 stream: body ends at close */
    unsigned upgraded : 1;      /* a websocket session took the connection over */
    vial_json json;
};

struct vial_req {
    vial_http_head head;
    struct vial_conn *conn;     /* NULL under the test client */
    struct vial_server *server;
    struct vial_app *app;
    struct vial_pool *pool;     /* where VIAL_SYNC functions run */
    /* Streaming: sends the head now / one piece of body. The connection (or
     * the test client) provides them. */
    int (*sink_begin)(vial_req *rq);
    int (*sink_write)(vial_req *rq, const void *data, size_t len);
    void *sink_data; /* the sink's own state (the test client's run) */
    /* The app's response finalisation (after_request hooks, session save),
     * run before a streamed head is sent; idempotent. */
    void (*finalize)(vial_req *rq);
    int finalized;
    void *lifecycle;       /* dispatch's state for finalize */
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

    /* set by the router */
    const struct vial_rule *route;
    unsigned nparams;
    vial_kv params[VIAL_MAX_PARAMS];
    int64_t param_ints[VIAL_MAX_PARAMS];
    double param_doubles[VIAL_MAX_PARAMS];

    /* lazily built views of the request, owned by their modules */
    struct vial_cookies *cookies;
    struct vial_form *form;
    struct vial_json_doc *json;
    struct vial_session *session;
    struct vial_g *g;
    const char *remote_addr;
    vial_cleanup *cleanups;

    /* error being handled (vial_error_code / vial_error_message) */
    int error_code;
    const char *error_msg;

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
