/* The application model: routes (endpoints), blueprints, hooks, error
 * handlers and middleware, and the dispatch that runs them in Flask's order. */
#ifndef VIAL_APP_APP_H
#define VIAL_APP_APP_H

#include "vial.h"
#include "app/ops.h"
#include "app/request_state.h"
#include "app/router.h"
#include "http/exchange.h"

#include <stdint.h>

/* A function and how to call it (VIAL_ASYNC on the loop, VIAL_SYNC on the pool). */
typedef struct vial_fn {
    vial_handler fn;
    int flags;
} vial_fn;

typedef struct vial_teardown_entry {
    vial_teardown_fn fn;
    int flags;
} vial_teardown_entry;

typedef struct vial_errh {
    int code; /* HTTP status, or VIAL_HTTP_ERRORS for the fallback */
    vial_handler fn;
    int flags;
} vial_errh;

typedef struct vial_mw {
    vial_middleware fn;
    void *arg;
} vial_mw;

/* Hooks and error handlers of one scope: the app, or one blueprint. */
typedef struct vial_hooks {
    vial_fn *before;
    unsigned nbefore;
    vial_fn *after;
    unsigned nafter;
    vial_teardown_entry *teardown;
    unsigned nteardown;
    vial_errh *errh;
    unsigned nerrh;
} vial_hooks;

struct vial_bp {
    vial_app *app;
    char *name;
    char *prefix; /* "/api/v1", no trailing slash; "" for none */
    vial_hooks hooks;
    struct vial_bp *next;
};

/* One endpoint: a plain view (fn) or a method view (methods table). */
typedef struct vial_rule {
    char *endpoint;
    char *label;         /* "pattern (endpoint)": for stall and overflow reports */
    vial_bp *bp;         /* NULL: the app's own */
    vial_handler fn;     /* plain view: one function for all its methods */
    int flags;
    vial_view_method *methods; /* method view: copied table, zero-terminated */
    unsigned nmethods;
    void *view_data;
    vial_mw *mws;        /* vial_wrap decorators, outermost first */
    unsigned nmws;
    vial_router_rule *rrule;
    vial_ws_handler ws;  /* websocket route (vial_ws_route): no hooks, see dispatch */
    unsigned stats_id;   /* its slot in the metrics (ops.h) */
    struct vial_rule *next;
} vial_rule;

struct vial_session_config;
struct vial_csrf; /* app/csrf.c */
struct vial_cors; /* app/cors.c */
struct vial_compress_cfg;

struct vial_app {
    vial_router *router;
    vial_hooks hooks;
    vial_bp *bps;
    vial_rule *rules, *rules_tail;
    unsigned nrules;
    vial_mw *mws; /* vial_use: wraps every view, outermost first */
    unsigned nmws;
    void *data;
    struct vial_session_config *session_cfg;
    struct vial_csrf *csrf; /* vial_csrf_protect, vial_csrf_exempt */
    struct vial_cors *cors; /* vial_cors, vial_bp_cors */
    struct vial_compress_cfg *compress; /* vial_compress; NULL: off (compress.c) */
    int running; /* set by vial_run: registering is refused from then on */
    vial_ops ops; /* access log, metrics, health, request ids (vial_run) */
    struct vial_render_state *render; /* templates (render.c), NULL until used */
};

/* 0 while app may still be set up; -EBUSY once vial_run has started (Flask's
 * setup-method check), -EINVAL for NULL. Every registration calls it first. */
int vial_app_setup_check(const vial_app *app);

/* Runs a view, hook or handler the way it was registered: directly on the
 * loop coroutine (VIAL_ASYNC) or on the worker pool (VIAL_SYNC). */
int vial_call(vial_req *rq, vial_handler fn, int flags);
/* The same for blocking work with any signature (used for teardown). */
int vial_call_blocking(vial_req *rq, void (*fn)(void *), void *arg, int flags);

/* Query arguments the request carries (request.c), counted from the raw
 * query without parsing it: dispatch holds it to vial_config.max_fields. */
unsigned vial_req_arg_total(vial_req *rq);

/* The whole request lifecycle (dispatch.c): before hooks, routing, the view
 * through its middleware, error handlers, after hooks, session save,
 * teardown. Fills rq->res. Installed as the server's serve function. */
void vial_app_serve(void *app, vial_req *rq);

/* Writes "METHOD /path?query" of request (a vial_req *) into out, for
 * crash reports (runtime/crash.h's describer; dispatch.c). */
void vial_crash_describe(void *request, char *out, size_t cap);

/* --processes N > 1 (supervisor.c): opens the listeners (http/listen.h),
 * runs N worker processes that each call serve(app, cfg) on them all,
 * replaces crashed ones, reloads on SIGHUP, drains on SIGTERM/SIGINT, tells
 * systemd. Returns when they are gone: 0, a negative errno, or -ECHILD when
 * the first workers did not get ready (logged). */
int vial_supervise(vial_app *app, const vial_config *cfg,
                   int (*serve)(vial_app *, const vial_config *));
/* Reads the config file, the environment and the flags vial_config_args
 * was first given again, into cfg's option fields (config.c). 0 or -EINVAL. */
int vial_config_reread(vial_config *cfg);

/* Websocket sessions (websocket.c). */
/* The bounds of group traffic (vial.h, "what a slow or flooding member
 * gets"): a group's hub topic's vial_hub_limits. A member's outbound
 * queue — bytes published to it and not yet written to its socket, its
 * loop's queue included — may hold this much; the message that finds it
 * fuller drops the member. */
#define VIAL_WS_QUEUE_MAX (4u * 1024 * 1024)
/* A session whose own broadcasts are queued at members beyond this is not
 * read until they fall to half of it (backpressure to the sender). */
#define VIAL_WS_SENDER_MAX (1024u * 1024)
/* A member whose non-empty queue has not moved for this long is slow too
 * (its socket takes nothing): the next message drops it. Also the longest
 * a sender waits on its broadcasts before it reads on. */
#define VIAL_WS_STALL_NS (5ull * 1000000000ull)
/* Runs fn as the websocket session of rq (whose handshake passed) on this
 * coroutine. Returns 0 when the connection was upgraded (and is now done:
 * the caller closes it; rq->res.status is 101), or an HTTP status to answer
 * with instead (the handler returned without accepting: 403; no socket under
 * the test client: 501). */
int vial_ws_serve(vial_req *rq, vial_ws_handler fn);

/* Closes a file body set by vial_send_file (response.c): any other body
 * replaces it. */
void vial_res_drop_file(vial_res *rs);
/* A helper refusing the request for an HTTP reason (vial_req_json's 400):
 * records message (which must outlive the request) for the error handlers
 * in case the code comes back out of the view, and returns
 * VIAL_EHTTP(status). Aborts nothing: the view may recover. */
int vial_res_helper_error(vial_res *rs, int status, const char *message);

/* Request helpers (request.c). */
/* Percent-decodes src[0..n) as UTF-8 (invalid sequences become U+FFFD, a
 * stray '%' stays); plus_space turns '+' into ' ' first (query strings). */
char *vial_url_decode(vial_arena *a, const char *src, size_t n, int plus_space, size_t *out_len);

/* Session persistence (session.c): writes the Set-Cookie when the session
 * changed. Called by dispatch after the after_request hooks. */
int vial_session_save(vial_req *rq);

/* url_for (context.c) with the parameters as an array of npairs key/value
 * pairs (the template global url_for builds them at run time). */
char *vial_url_for_kv(vial_req *rq, const char *endpoint, const char *const *kv, size_t npairs,
                      int external);
/* g's value for key[0..len) when it was set with vial_g_set_str, else NULL
 * (a pointer set with vial_g_set has no type a template could print). */
const char *vial_g_str(vial_req *rq, const char *key, size_t len);

/* JSON writer (json_writer.c): writes text[0..n), already a valid JSON
 * number (a VIAL_JBIGINT's source text), as the next value. */
void vial_json_raw_number(vial_json *j, const char *text, size_t n);

#endif
