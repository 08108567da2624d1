/* vial — Flask's programming model, async-first, in C.
 *
 * One public header. Handles are opaque; every function is prefixed vial_;
 * functions that can fail return 0 or a negative errno-style code.
 *
 *   static int hello(vial_req *rq, vial_res *rs)
 *   {
 *       return vial_text(rs, 200, "Hello, %s!", vial_req_param(rq, "name"));
 *   }
 *
 *   int main(int argc, char **argv)
 *   {
 *       vial_app *app = vial_app_new();
 *       vial_route(app, "GET /hello/<name>", hello);
 *       vial_config cfg = vial_config_default();
 *       if (vial_config_args(&cfg, argc, argv) != 0)
 *           return 2;
 *       return vial_run(app, &cfg);
 *   }
 *
 * Concurrency: a handler registered with vial_route runs as a coroutine on
 * the loop thread that owns the connection; it may await (vial_sleep,
 * vial_offload, vial_stream_write, ...) but must not block. A handler
 * registered with vial_route_sync runs on the worker pool and may block.
 * Memory: everything a request allocates (vial_alloc, strings returned by
 * vial_req_*) lives in a per-request arena freed after the response; nothing
 * returned by vial must be freed by the caller unless documented.
 *
 * Names (the same rule in every header of vial):
 * - A read-only object's property is read by a noun: vial_req_method,
 *   vial_req_header, vial_jv_int, vial_test_response_status, vial_pg_ntuples.
 * - Mutable things take verbs: _set_ replaces (vial_res_set_status,
 *   vial_res_set_header), _add_ adds one more (vial_res_add_header), _append_
 *   extends (vial_res_append_body), _get_ reads back what was set
 *   (vial_res_get_header, vial_app_get_data), _del / _clear remove.
 * - Registration: vial_<thing>(app, ...) registers an async function (a
 *   coroutine on the connection's loop thread: it may await, must not
 *   block); vial_<thing>_sync(app, ...) registers the same kind of function
 *   to run on the worker pool (it may block, must not await):
 *   vial_route / vial_route_sync, vial_before_request /
 *   vial_before_request_sync, vial_errorhandler / vial_errorhandler_sync.
 *   The only other place sync or async is said is a method view's table
 *   (vial_view_method.flags: VIAL_ASYNC or VIAL_SYNC).
 * - _new / _free for objects in memory (vial_app_new, vial_test_client_new);
 *   _open / _close for handles that connect to something (vial_pg_open,
 *   vial_redis_open, vial_sqlite_open).
 * scripts/migrate-0.2.py rewrites code written for vial 0.1's names.
 */
#ifndef VIAL_H
#define VIAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <vial/config.h> /* VIAL_VERSION, VIAL_HAVE_<client> */
#include <vial/template.h> /* vial_tmpl_value, for vial_render */

#ifdef __cplusplus
extern "C" {
#endif
/* Only what the public headers declare is exported from libvial.so (built
 * with -fvisibility=hidden). */
#pragma GCC visibility push(default)

typedef struct vial_app vial_app;
typedef struct vial_req vial_req;
typedef struct vial_res vial_res;
typedef struct vial_jv vial_jv; /* a parsed JSON value (vial_req_json) */

/* --- results -----------------------------------------------------------------
 * One contract for every result vial defines or expects.
 *
 * A function that can fail returns 0, or a negative code that names the
 * problem (never a positive status):
 *   -1 .. -4095        a negated errno value (-ENOMEM, -EINVAL, -ETIMEDOUT...);
 *   VIAL_EHTTP(status) an HTTP error (-(200000 + status)): VIAL_EHTTP(404);
 *                      vial_http_status_of(code) gives the status back;
 *   -100xxx ...        vial's own codes, one range per module: -100xxx the
 *                      app (VIAL_FAILED), -101xxx websockets, -102xxx Redis,
 *                      -103xxx PostgreSQL, -104xxx the HTTP client, -105xxx
 *                      SQLite. Every code is distinct.
 * vial_strerror(code) names any of them.
 *
 * A view, hook or error handler (vial_handler) returns:
 *   0                  the response in rs is ready (from a before_request
 *                      hook: carry on to the next hook and the view);
 *   VIAL_DONE          only from a before_request hook: rs holds the
 *                      response, skip the remaining before hooks and the view
 *                      (Flask: a hook returned a value);
 *   VIAL_EHTTP(status) an HTTP error, rendered by the error handlers with
 *                      vial_error_message = the message of the helper that
 *                      returned it (Flask: abort(404), or get_json()'s 400);
 *   any other negative an unhandled error (Flask: an exception): a 500
 *                      through the handler for 500, a log line, and teardown
 *                      receives its message (vial_fail's, else vial_strerror).
 * So a helper's result can be passed on as is:
 *
 *       const vial_jv *doc;
 *       int st = vial_req_json(rq, &doc);   // VIAL_EHTTP(400) or (415)
 *       if (st)
 *           return st;                      // the 4xx, through the handlers
 *
 * A positive value other than VIAL_DONE is no result: an unhandled error.
 *
 * vial_abort and vial_fail are sticky: the response is that error even when
 * their result is dropped and the view returns 0 (the latest of the two
 * stands; a negative code the function returns wins). A view that returns 0
 * without building a response (no vial_res_set_status, _set_body, _append_body, vial_text,
 * vial_json_begin, vial_redirect, vial_send_file or vial_stream_begin,
 * neither by it nor by a middleware) is a 500 and a log line naming its
 * endpoint (Flask: "the view function did not return a valid response");
 * hooks and error handlers are not held to this. */
typedef int (*vial_handler)(vial_req *rq, vial_res *rs);

#define VIAL_DONE 1
/* An unhandled error (vial_fail). */
#define VIAL_FAILED (-100001)
/* The code for an HTTP error status (100..999). */
#define VIAL_EHTTP(status) (-(200000 + (status)))

/* The status of a VIAL_EHTTP code, else 0. */
int vial_http_status_of(int code);

/* A short name and description of a result code: vial's own codes
 * ("VIAL_WS_CLOSED: the peer closed the websocket"), VIAL_EHTTP codes
 * ("HTTP 404 Not Found"), negated errno values ("ENOENT: No such file or
 * directory"), else "unknown error -N". Never NULL; thread-safe. A static
 * string, except "unknown error -N", which lives in a per-thread buffer until
 * the thread's next such call. */
const char *vial_strerror(int code);

/* How a method view's function is called (vial_view_method.flags; Flask's
 * ensure_sync, decided at registration): VIAL_ASYNC: as a coroutine on the
 * connection's loop thread (must not block; may await); VIAL_SYNC: on the
 * worker pool (may block; must not await). Every other registration says it
 * by its name: vial_route / vial_route_sync and so on. */
#define VIAL_ASYNC 0
#define VIAL_SYNC 1

/* --- application ----------------------------------------------------------
 * Set the app up, then run it: every registration function in this header
 * (routes, views, converters, hooks, error handlers, blueprints and theirs,
 * middleware, vial_static, vial_ws_route, vial_app_set_secret_key) returns
 * -EBUSY once vial_run has started, from any thread, handlers included
 * (vial_blueprint returns NULL): requests read these tables without locks.
 * Flask refuses the same ("setup method ... can no longer be called"). */

/* Creates an empty application. Returns NULL when out of memory. */
vial_app *vial_app_new(void);

/* Frees the application and everything registered on it. Not while running. */
void vial_app_free(vial_app *app);

/* Registers a view under an endpoint name (for url_for).
 * rule is "METHODS PATH": METHODS a comma-separated list ("GET,POST"),
 * optional (default GET); PATH with converters: <name> (string: one or more
 * characters without '/'), <int:name> (ASCII digits, 0..2^63-1;
 * <int(min=200,max=599):name> bounds it), <float:name> (digits '.' digits),
 * <uuid:name>, <path:name> (may contain '/'), or a converter registered
 * with vial_converter. data: the route's own state, returned by
 * vial_route_data(rq) (may be NULL). vial_route_as registers an async view,
 * vial_route_as_sync a sync one (run on the worker pool).
 * Returns 0, -EINVAL for a malformed rule or unknown converter, -EEXIST if
 * the same method and path, or the endpoint, is registered already, -ENOMEM,
 * -EBUSY once vial_run has started. */
int vial_route_as(vial_app *app, const char *rule, vial_handler fn, const char *endpoint, void *data);
int vial_route_as_sync(vial_app *app, const char *rule, vial_handler fn, const char *endpoint,
                       void *data);

/* Flask's @app.route: the endpoint is the function's name, no data. */
#define vial_route(app, rule, fn) vial_route_as((app), (rule), (fn), #fn, NULL)
#define vial_route_sync(app, rule, fn) vial_route_as_sync((app), (rule), (fn), #fn, NULL)

/* A user-defined converter <name:param>: match() says whether the segment
 * s[0..len) (never containing '/') is acceptable. Register before the routes
 * that use it. Returns 0, -EEXIST, -EINVAL. */
typedef int (*vial_converter_fn)(const char *s, size_t len, void *arg);
int vial_converter(vial_app *app, const char *name, vial_converter_fn match, void *arg);

/* Method views (Flask's MethodView): one resource, one handler per method.
 * The table ends with a zero entry. HEAD (when GET exists) and OPTIONS are
 * automatic, other methods get 405 with Allow. `data` is the view's own
 * state, returned by vial_route_data(rq). */
typedef struct vial_view_method {
    const char *method; /* "GET", "POST", ... */
    vial_handler fn;
    int flags;          /* VIAL_ASYNC or VIAL_SYNC */
} vial_view_method;
int vial_add_view(vial_app *app, const char *path, const char *endpoint,
                  const vial_view_method *methods, void *data);
/* The data of the matched route, method view or websocket route (NULL when
 * none was given). */
void *vial_route_data(vial_req *rq);

/* --- hooks and error handlers ----------------------------------------------
 * Flask's order: before_request functions run in registration order before
 * every request (also when routing fails: 404, 405, slash redirect), app
 * hooks first, then the matched blueprint's; the first that returns
 * VIAL_DONE or a negative code (or aborts/fails) ends that phase. after_request functions run on
 * every response the app produces, in reverse registration order, the
 * blueprint's first; they edit rs. teardown functions run after every
 * request, in reverse order, with the unhandled error's message or NULL.
 * The plain names register async functions, the _sync ones functions run on
 * the worker pool. Each returns 0, -EINVAL (fn NULL), -ENOMEM, -EBUSY. */
int vial_before_request(vial_app *app, vial_handler fn);
int vial_before_request_sync(vial_app *app, vial_handler fn);
int vial_after_request(vial_app *app, vial_handler fn);
int vial_after_request_sync(vial_app *app, vial_handler fn);
typedef void (*vial_teardown_fn)(vial_req *rq, const char *error);
int vial_teardown_request(vial_app *app, vial_teardown_fn fn);
int vial_teardown_request_sync(vial_app *app, vial_teardown_fn fn);

/* Error handlers. code: an HTTP status (404, 405, 500, ...), or
 * VIAL_HTTP_ERRORS for any HTTP error without a code-specific handler
 * (Flask's handler for HTTPException). 500 also receives unhandled errors.
 * A request body over cfg.max_body is a 413 rendered by the app's handler
 * for 413 (or its fallback) alone: no before/after/teardown hook runs (the
 * HTTP layer refused the request), and the connection closes after it.
 * Error handlers are not held to "build a response": one that returns 0
 * leaves the error's status with an empty body.
 * The handler builds the response in rs (the error's headers, e.g. Allow,
 * are kept); vial_error_code and vial_error_message describe the error. */
#define VIAL_HTTP_ERRORS 0
int vial_errorhandler(vial_app *app, int code, vial_handler fn);
int vial_errorhandler_sync(vial_app *app, int code, vial_handler fn);

/* Inside an error handler: the HTTP status being handled, and the message
 * (vial_abort_msg's, vial_fail's, or that of the helper whose VIAL_EHTTP code
 * the view returned, e.g. vial_req_json's parse error), or NULL. */
int vial_error_code(vial_req *rq);
const char *vial_error_message(vial_req *rq);

/* --- blueprints --------------------------------------------------------------
 * A group of views under a URL prefix, with its own hooks and error handlers
 * (they apply to the blueprint's routes only). Endpoints are "<bp>.<name>".
 * The blueprint belongs to the app. */
typedef struct vial_bp vial_bp;
vial_bp *vial_blueprint(vial_app *app, const char *name, const char *url_prefix);
int vial_bp_route_as(vial_bp *bp, const char *rule, vial_handler fn, const char *endpoint, void *data);
int vial_bp_route_as_sync(vial_bp *bp, const char *rule, vial_handler fn, const char *endpoint,
                          void *data);
#define vial_bp_route(bp, rule, fn) vial_bp_route_as((bp), (rule), (fn), #fn, NULL)
#define vial_bp_route_sync(bp, rule, fn) vial_bp_route_as_sync((bp), (rule), (fn), #fn, NULL)
int vial_bp_add_view(vial_bp *bp, const char *path, const char *endpoint,
                     const vial_view_method *methods, void *data);
int vial_bp_before_request(vial_bp *bp, vial_handler fn);
int vial_bp_before_request_sync(vial_bp *bp, vial_handler fn);
int vial_bp_after_request(vial_bp *bp, vial_handler fn);
int vial_bp_after_request_sync(vial_bp *bp, vial_handler fn);
int vial_bp_teardown_request(vial_bp *bp, vial_teardown_fn fn);
int vial_bp_teardown_request_sync(vial_bp *bp, vial_teardown_fn fn);
int vial_bp_errorhandler(vial_bp *bp, int code, vial_handler fn);
int vial_bp_errorhandler_sync(vial_bp *bp, int code, vial_handler fn);

/* --- extensions ------------------------------------------------------------------
 * Middleware wraps views the way a Flask decorator does, written once for sync
 * and async views alike: it runs on the loop (it may await, must not block)
 * and calls vial_next to run what it wraps, which runs the view the way the
 * view was registered (on the pool for a sync view). */
typedef struct vial_next vial_next;
typedef int (*vial_middleware)(vial_req *rq, vial_res *rs, vial_next *next, void *arg);
/* Runs the wrapped middleware chain / view; returns its result. */
int vial_next_call(vial_next *next);
/* Wraps every view of the app (blueprints included); the first registered
 * is the outermost. */
int vial_use(vial_app *app, vial_middleware mw, void *arg);
/* Wraps one view, by endpoint (a decorator on that view). */
int vial_wrap(vial_app *app, const char *endpoint, vial_middleware mw, void *arg);

/* --- g and app state ----------------------------------------------------------- */

/* Per-request store (Flask's g): key -> pointer, for this request only.
 * The pointer is not owned; vial_g_set_str copies the string into the
 * request's arena. */
int vial_g_set(vial_req *rq, const char *key, void *value);
void *vial_g_get(vial_req *rq, const char *key);
int vial_g_set_str(vial_req *rq, const char *key, const char *value);

/* App-level state shared by every request (Flask's app.extensions / config):
 * the pointer set here, returned to any request. Thread safety is the
 * owner's: requests run on several threads. */
void vial_app_set_data(vial_app *app, void *data);
void *vial_app_get_data(vial_req *rq);

/* Reverse routing (Flask's url_for): builds the URL of an endpoint from
 * key/value string pairs ending with NULL. Pairs that are not parameters of
 * the rule become the query string, in the order given. Values are
 * percent-encoded (path parameters keep '/' for <path:>). The key "_external"
 * with any value gives an absolute URL from the request's Host header.
 * Returns a string in the request's arena, or NULL (unknown endpoint,
 * missing or unconvertible parameter). */
char *vial_url_for(vial_req *rq, const char *endpoint, ...) __attribute__((sentinel));

/* --- running -------------------------------------------------------------- */

/* An option of the app's own, parsed by vial_config_args beside vial's and
 * listed by --help (Flask's click options, allocation-free): a table ending
 * with a zero entry, in static storage, that cfg.options points to.
 *
 *   static const char *db_path = "app.db";            (the default)
 *   static int verbose;
 *   static const vial_option opts[] = {
 *       {"db", "PATH", "database file", &db_path},
 *       {"verbose", NULL, "log every query", &verbose},
 *       {0},
 *   };
 *   cfg.options = opts;
 *
 * With `arg` set, the option takes a value (--db x.db or --db=x.db) and
 * `dest` is a `const char **` that receives it (a pointer into argv; its
 * value before parsing is the default --help shows). With `arg` NULL it is
 * a flag and `dest` is an `int *` set to 1. Names must differ from vial's
 * own (vial_config_args refuses the table otherwise). */
typedef struct vial_option {
    const char *name; /* "db" for --db */
    const char *arg;  /* what the value is, for --help ("PATH"); NULL: a flag */
    const char *help; /* one line for --help */
    void *dest;       /* const char ** (valued option) or int * (flag) */
} vial_option;

typedef struct vial_config {
    const char *host;       /* listen address (default "127.0.0.1"); "::1" for IPv6; "unix:/path" */
    int port;               /* listen port (default 8080); 0: any free port, one for all threads */
    int threads;            /* loop threads; 0: one per core */
    int workers;            /* worker-pool threads for sync handlers; 0: 16 */
    int queue_max;          /* jobs waiting for the pool before 503; 0: 4096 */
    size_t stack_size;      /* coroutine stack bytes; 0: 128 KiB */
    int grace_ms;           /* shutdown grace for in-flight requests; 0: 2000 */
    int server_header;      /* send "Server: vial" on every response */
    size_t max_body;        /* request body limit, 413 beyond; 0: 1 MiB */
    int stall_ms;           /* log async code holding the loop longer; 0: 100, -1: off */
    /* Slow bodies: after body_grace_ms from its first byte, a request body
     * must have arrived at body_min_rate bytes/s on average (counting from
     * the start, with the grace as credit), else 408 and close. Defends
     * against uploads trickled to hold connections; the 10 s inactivity
     * timer still applies. 0: defaults (30000 ms, 1024 bytes/s); -1: off. */
    int body_grace_ms;
    int body_min_rate;
    /* Server-wide bytes of request bodies held in memory at once (bodies
     * larger than the 32 KiB read buffer); past it, a connection stops
     * reading its body until others finish (the client is held back by
     * TCP). 0: 256 MiB. */
    size_t body_memory_max;
    /* Most query arguments, form fields (urlencoded) and multipart parts a
     * request may carry (Werkzeug's max_form_parts); more is a 413 naming
     * the limit. 0: 1000. */
    int max_fields;
    /* Operations (docs/guide/deploy.md). access_log: a file appended one
     * line per request (client address, method, target, protocol, status,
     * body bytes, duration, request id), "-" for stderr, NULL: none; written
     * by a background thread, reopened on SIGUSR1. access_log_format:
     * "combined" (default) or "json". log_level: vial's own messages at
     * this level and above, "error", "warn", "info" (default) or "debug".
     * metrics_path: where Prometheus text is served ("/metrics"), NULL:
     * nowhere. health_path: answers 200 while serving, 503 while draining
     * ("/healthz"), NULL: nowhere. Both are answered before routing, by no
     * hook. drain_delay_ms: after SIGTERM/SIGINT, keep serving (listener
     * open) this long while the health check says 503, so a load balancer
     * stops sending before connections are refused (default 0; a second
     * signal cuts it short). request_id: each response carries X-Request-ID, the request's
     * own when sane (visible ASCII, at most 200 bytes) else a generated one
     * (vial_req_id); 1: on, 0: off, -1 (the default): on when the access
     * log is, which records the id (generating and echoing it is a
     * measurable share of a minimal request's CPU time). */
    const char *access_log;
    const char *access_log_format;
    const char *log_level;
    const char *metrics_path;
    const char *health_path;
    int drain_delay_ms;
    int request_id;
    /* processes: 1 (the default) serves in this process; N > 1 makes it a
     * supervisor that opens the listeners (host/port, listen, or systemd's
     * sockets), runs N worker processes sharing them all (each with
     * `threads` loops and `workers` pool threads; the only process that
     * talks to systemd is the supervisor), logs and
     * replaces a worker that crashes (its signal and the route it served),
     * reloads on SIGHUP with no request lost (new workers ready before the
     * old ones drain; the config file re-read), forwards SIGTERM/SIGINT
     * (drain) and SIGUSR1 (log reopen). shed_target_ms: load shedding, 0
     * (the default) off; when the time requests wait to start (for their
     * loop, or in the worker pool's queue) stays above this many ms for
     * 100 ms, new requests get a fast 503 with Retry-After: 1, no hook run,
     * until the wait falls below it again. */
    int processes;
    int shed_target_ms;
    /* Development mode (Flask's debug): templates whose files changed are
     * compiled again at their next render. Off by default. */
    int debug;
    /* Response compression (vial_compress): 1 turns it on, with the
     * defaults when the app did not call vial_compress; 0 turns it off;
     * -1 (the default): as the app set it. */
    int compress;
    /* Listening (docs/guide/deploy.md). host may also be "unix:/path", a
     * Unix domain socket (port unused; a stale socket file is removed at
     * start if nothing listens on it, the file is removed at a clean exit).
     * listen: comma-separated listeners that replace host/port:
     * "127.0.0.1:8080,[::1]:8080,unix:/run/app.sock" (an entry without a
     * port takes `port`); NULL: host and port. unix_mode: the permission
     * bits of the Unix socket files (0660); -1 (the default): as the umask
     * leaves them. Descriptors passed by systemd (LISTEN_FDS, LISTEN_PID)
     * replace both; with NOTIFY_SOCKET set, systemd is told READY=1,
     * STOPPING=1 and STATUS= lines, and pinged with WATCHDOG=1 when it
     * asks (WATCHDOG_USEC). trusted_proxy: comma-separated CIDRs
     * ("10.0.0.0/8,::1/128") or "unix"; a request whose peer is one of
     * them takes its client address (vial_req_remote_addr, the access log)
     * from X-Forwarded-For and its scheme (vial_req_scheme, url_for
     * _external) from X-Forwarded-Proto; NULL: no peer is trusted. */
    const char *listen;
    int unix_mode;
    const char *trusted_proxy;
    /* WebSocket permessage-deflate (RFC 7692; docs/guide/websockets.md).
     * ws_deflate: accept a client's offer (vial_config_default: 1; 0: never
     * negotiated). ws_deflate_min: messages vial sends shorter than this go
     * uncompressed (0: 128 bytes). ws_deflate_memory_max: bytes of zlib
     * state all connections may hold at once (0: 64 MiB); a handshake that
     * finds no room for one more connection declines the extension, and a
     * connection that cannot get its state later sends uncompressed, or,
     * to read a compressed message, is closed with 1013. */
    int ws_deflate;
    size_t ws_deflate_min;
    size_t ws_deflate_memory_max;
    /* TLS (docs/guide/deploy.md). With tls_cert (PEM: the certificate,
     * then its chain) and tls_key (PEM, unencrypted) set, every TCP
     * listener speaks TLS (Unix sockets stay plain): TLS 1.2 and 1.3 (or
     * 1.3 only: tls_min_version "1.3"), ALPN http/1.1, session tickets and
     * a session cache; SIGHUP reads both files again for new connections.
     * A missing, unreadable or mismatched file fails vial_run at start,
     * naming it. tls_ciphers: an OpenSSL cipher list for TLS 1.2 (NULL:
     * OpenSSL's defaults; TLS 1.3 suites are always its defaults).
     * tls_handshake_timeout_ms: a connection must finish its handshake
     * this long after it was accepted, else it is closed (0: 10000). */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_ciphers;
    const char *tls_min_version;
    int tls_handshake_timeout_ms;
    /* The event loops' backend (docs/architecture.md): "io_uring" (the
     * default; NULL means it too: multishot accepts and polls, receives
     * into a buffer ring, one system call per loop iteration for every
     * submission and wait) or "epoll". Where the kernel refuses io_uring
     * (too old, io_uring_disabled, a seccomp profile) or vial was built
     * without liburing, the loops use epoll and a warning says so; the
     * listening line ends with the backend in use. */
    const char *backend;
    const vial_option *options; /* the app's own command-line options, or NULL */
    /* Called once by vial_run on its thread when every loop thread's
     * listener is bound, with the port (the real one for port 0), before
     * the loops start: connections wait in the backlog until it returns.
     * NULL: none. The log line "vial: listening on http://HOST:PORT ..." on
     * stderr carries the same port. */
    void (*on_ready)(int port, void *data);
    void *ready_data;       /* passed to on_ready */
} vial_config;

/* The defaults above, filled in. */
vial_config vial_config_default(void);

/* Reads vial's options and the app's (cfg->options) from argv[1..argc):
 *   --host ADDR  --port N  --threads N  --workers N  --queue-max N
 *   --stack-size BYTES  --grace-ms MS  --max-body BYTES  --stall-ms MS
 *   --body-grace-ms MS  --body-min-rate BYTES  --body-memory-max BYTES
 *   --access-log PATH  --access-log-format combined|json
 *   --log-level error|warn|info|debug  --metrics-path PATH
 *   --health-path PATH  --drain-delay-ms MS  --[no-]request-id  --[no-]server-header
 *   --[no-]debug
 *   --[no-]compress
 *   --listen ADDR[,ADDR...] (repeatable)  --unix-mode MODE  --trusted-proxy CIDR[,CIDR...]
 *   --[no-]ws-deflate  --ws-deflate-min BYTES  --ws-deflate-memory-max BYTES
 *   --tls-cert FILE  --tls-key FILE  --tls-ciphers LIST  --tls-min-version 1.2|1.3
 *   --tls-handshake-timeout-ms MS
 *   --config FILE  -h/--help
 * Before the flags it reads --config FILE (or $VIAL_CONFIG): "name = value"
 * lines with the options' long names ("port = 8080", "access-log = -"),
 * blank lines and # comments skipped; then every VIAL_<NAME> environment
 * variable (VIAL_ACCESS_LOG for --access-log, the app's options too). So
 * the file is overridden by the environment, and both by flags. Booleans
 * there take 1/0, on/off, yes/no, true/false. Values read from the file
 * are kept for the life of the process.
 * Each takes "--opt value" or "--opt=value"; sizes accept a K, M or G
 * suffix (KiB, MiB, GiB). Values are range-checked. --help (or -h) prints
 * every option with its description and default (the value cfg holds) to
 * stdout and exits the process with status 0, like Python's argparse.
 * Returns 0, or -EINVAL after printing to stderr what was wrong ("vial:
 * unknown option --frob", "vial: --port needs a number 0-65535") and a hint
 * to --help; apps exit with status 2 then. Stores pointers into argv, so
 * argv must outlive cfg. */
int vial_config_args(vial_config *cfg, int argc, char **argv);

/* Serves app until SIGTERM or SIGINT, then stops accepting, lets in-flight
 * requests finish for grace_ms, closes everything and returns 0 (SIGUSR1
 * reopens the access log; SIGHUP and SIGUSR2 are logged and ignored). Every
 * loop thread listens on every listener (host/port, listen, or systemd's
 * descriptors): on a TCP port with SO_REUSEPORT (the kernel spreads the
 * connections); a port some other socket already holds, SO_REUSEPORT or
 * not, another vial included, is refused: "vial: 127.0.0.1:8080 is already
 * in use" and -EADDRINUSE, as is a Unix socket path a live server holds.
 * Returns a negative errno when it cannot listen, -EINVAL for a bad
 * trusted_proxy or listen entry.
 * From the moment vial_run starts, the app is set up for good: every
 * registration function (routes, views, hooks, error handlers, blueprints,
 * converters, middleware, static, websocket routes, the secret key) refuses
 * with -EBUSY (Flask's setup-method check), vial_blueprint with NULL.
 * Logs go to stderr. */
int vial_run(vial_app *app, const vial_config *cfg);

/* --- request ---------------------------------------------------------------- */

/* Method as sent ("GET"), NUL-terminated. */
const char *vial_req_method(vial_req *rq);

/* The percent-decoded path (the part the router matched). */
const char *vial_req_path(vial_req *rq);

/* The decoded path with its length: a decoded %00 is a NUL inside it (as in
 * Werkzeug), which the plain accessor's C string would cut short. The same
 * _n variants exist for route parameters and query arguments. */
const char *vial_req_path_n(vial_req *rq, size_t *len);

/* The raw query string (without '?'), "" when there is none. */
const char *vial_req_query_string(vial_req *rq);

/* 0 for HTTP/1.0, 1 for HTTP/1.1. */
int vial_req_http_minor(vial_req *rq);

/* Value of a request header (case-insensitive name); repeated fields are
 * joined with ", ". NULL when absent. */
const char *vial_req_header(vial_req *rq, const char *name);

/* Number of header fields, and the i-th (name as sent, trimmed value). */
unsigned vial_req_header_count(vial_req *rq);
int vial_req_header_at(vial_req *rq, unsigned i, const char **name, const char **value);

/* A route parameter by name (<name>, <int:id>, <path:p>), decoded. */
const char *vial_req_param(vial_req *rq, const char *name);

const char *vial_req_param_n(vial_req *rq, const char *name, size_t *len);

/* The value of an <int:...> parameter; 0 if absent. */
int64_t vial_req_param_int(vial_req *rq, const char *name);

/* First value of a query argument, decoded; NULL when absent. */
const char *vial_req_arg(vial_req *rq, const char *name);

const char *vial_req_arg_n(vial_req *rq, const char *name, size_t *len);

/* Reads an integer query argument into *out: `def` when absent; returns
 * -EINVAL when present but empty, not decimal digits, or outside
 * [min, max]. */
int vial_req_arg_int(vial_req *rq, const char *name, int64_t def, int64_t min, int64_t max,
                     int64_t *out);

/* Every value of a query argument, in order (Werkzeug's getlist): fills
 * values[0..cap) and returns how many there are (which may exceed cap).
 * Lookups by name use a hash index built at the first one, so asking for
 * every argument by name stays linear in their number. */
unsigned vial_req_arg_list(vial_req *rq, const char *name, const char **values, unsigned cap);

/* Number of query arguments (repeated keys count each time), and the i-th.
 * A request with more than vial_config.max_fields arguments is answered 413
 * before its view runs. */
unsigned vial_req_arg_count(vial_req *rq);
int vial_req_arg_at(vial_req *rq, unsigned i, const char **name, const char **value);
int vial_req_arg_at_n(vial_req *rq, unsigned i, const char **name, size_t *name_len,
                      const char **value, size_t *value_len);

/* The request body (already read and de-chunked); *len may be NULL.
 * Never NULL: an empty body is "" with length 0. */
const void *vial_req_body(vial_req *rq, size_t *len);

/* The value of a <float:name> parameter; 0 if absent. */
double vial_req_param_double(vial_req *rq, const char *name);

/* The client's address ("127.0.0.1", "::1"; "unix" over a Unix socket).
 * When the peer is a trusted proxy (vial_config.trusted_proxy), the client
 * named by X-Forwarded-For: its hops read from the right, trusted ones
 * skipped; otherwise the header is never read. */
const char *vial_req_remote_addr(vial_req *rq);

/* What a trusted proxy says in X-Forwarded-Proto (its rightmost value),
 * else "https" on a TLS connection (vial_config.tls_cert), else "http".
 * vial_url_for's _external URLs use it. */
const char *vial_req_scheme(vial_req *rq);

/* The endpoint of the matched view ("hello", "api.items"), or NULL. */
const char *vial_req_endpoint(vial_req *rq);

/* Cookies from the Cookie header: pairs split at ';' (optional spaces), at
 * the first '='; a double-quoted value loses its quotes; the first of a
 * repeated name wins. */
const char *vial_req_cookie(vial_req *rq, const char *name);
unsigned vial_req_cookie_count(vial_req *rq);
int vial_req_cookie_at(vial_req *rq, unsigned i, const char **name, const char **value);

/* Form fields from an application/x-www-form-urlencoded body, or the
 * non-file parts of a multipart/form-data body (repeated keys keep every
 * value in order). Other content types have no fields. */
const char *vial_req_form(vial_req *rq, const char *name);
unsigned vial_req_form_count(vial_req *rq);
/* Every value of a form field, in order (getlist); as vial_req_arg_list. */
unsigned vial_req_form_list(vial_req *rq, const char *name, const char **values, unsigned cap);
int vial_req_form_at(vial_req *rq, unsigned i, const char **name, const char **value);

/* Uploaded files (multipart parts with a filename parameter). Parts larger
 * than the spill threshold (64 KiB) are written to a temporary file, deleted
 * after the request. */
typedef struct vial_file {
    const char *field;        /* the part's form name */
    const char *filename;     /* as sent (UTF-8) */
    const char *content_type; /* the part's Content-Type, or NULL */
    size_t size;
    const void *data;         /* the bytes, when kept in memory; else NULL */
    const char *path;         /* the temporary file, when spilled; else NULL */
} vial_file;
unsigned vial_req_file_count(vial_req *rq);
const vial_file *vial_req_file_at(vial_req *rq, unsigned i);
const vial_file *vial_req_file(vial_req *rq, const char *field);

/* Parses the form now and reports errors: 0 (also for a request without a
 * body), or VIAL_EHTTP(400) for a multipart body without boundary, not valid
 * multipart, or with a part header line over 8 KiB; VIAL_EHTTP(413) for more
 * than vial_config.max_fields (1000) multipart parts or urlencoded fields;
 * VIAL_EHTTP(415) for a body whose Content-Type is neither
 * application/x-www-form-urlencoded nor multipart/form-data; -ENOMEM or -EIO
 * (an upload could not be spilled). Returned from a view, the 4xx goes
 * through the error handlers with the reason as vial_error_message; the
 * call itself aborts nothing, so a view may also recover. The accessors
 * above parse lazily and ignore errors (a bad body reads as an empty form). Field names, values
 * and filenames have invalid UTF-8 replaced with U+FFFD; filename="" still
 * makes a file. */
int vial_req_parse_form(vial_req *rq);

/* Parsed JSON (RFC 8259, strict). Numbers keep what they are:
 *   VIAL_JINT     an integer (no '.', no exponent) that fits int64, exact;
 *   VIAL_JREAL    a number with a fraction or an exponent ("1.0", "2e3"):
 *                 the correctly rounded double, written back by
 *                 vial_json_value as a float ("1.0" stays "1.0"); a
 *                 magnitude beyond the double range (1e400) is a 400;
 *   VIAL_JBIGINT  an integer beyond int64: kept as its source text
 *                 (vial_jv_bigint) and written back byte for byte, never
 *                 rounded to a double behind the app's back.
 * Numbers are read with '.' whatever the application's locale. */
typedef enum vial_jtype {
    VIAL_JNULL, VIAL_JFALSE, VIAL_JTRUE, VIAL_JINT, VIAL_JREAL, VIAL_JSTRING, VIAL_JARRAY, VIAL_JOBJECT,
    VIAL_JBIGINT
} vial_jtype;

/* Parses the body as JSON. Returns 0 with *out set; VIAL_EHTTP(415) when the
 * media type is not application/json or application/<x>+json;
 * VIAL_EHTTP(400) when the body is not one valid JSON text or nests deeper
 * than 512 levels; -ENOMEM. vial_req_json_error says why; returned from a
 * view, the 4xx goes through the error handlers with that reason as
 * vial_error_message (the call itself aborts nothing: a view may recover).
 * The tree lives until the response is sent. */
int vial_req_json(vial_req *rq, const vial_jv **out);
const char *vial_req_json_error(vial_req *rq);

vial_jtype vial_jv_type(const vial_jv *v);
/* VIAL_JINT; a VIAL_JREAL in range truncated like a C cast; 0 for anything
 * else, a VIAL_JBIGINT included (check the type when it matters). */
int64_t vial_jv_int(const vial_jv *v);
/* VIAL_JREAL; a VIAL_JINT or VIAL_JBIGINT converted to the nearest double
 * (±HUGE_VAL beyond the double range): asking for a double is asking for
 * the rounding. 0 for anything else. */
double vial_jv_real(const vial_jv *v);
/* VIAL_JBIGINT: its decimal text exactly as in the body ('-'? digits,
 * NUL-terminated), e.g. for a bignum library or a NUMERIC parameter; NULL
 * (and *len 0) for any other type. */
const char *vial_jv_bigint(const vial_jv *v, size_t *len);
const char *vial_jv_str(const vial_jv *v, size_t *len); /* VIAL_JSTRING; NUL-terminated copy, may hold NULs */
/* The accessors accept NULL and read it as JSON null, so lookups chain:
 * vial_jv_int(vial_jv_get(vial_jv_get(doc, "a"), "b")). Duplicate object keys
 * keep the first position and the last value; a leading UTF-8 BOM is
 * skipped, as Flask does. */
size_t vial_jv_len(const vial_jv *v);           /* items of an array or object */
const vial_jv *vial_jv_at(const vial_jv *v, size_t i);          /* array item */
const vial_jv *vial_jv_get(const vial_jv *v, const char *key);  /* object member */
const char *vial_jv_key_at(const vial_jv *v, size_t i, size_t *len); /* object key */
const vial_jv *vial_jv_value_at(const vial_jv *v, size_t i);         /* object value */

/* --- per-request memory --------------------------------------------------- */

/* Allocates from the request's arena (16-byte aligned); freed after the
 * response. NULL when out of memory. */
void *vial_alloc(vial_req *rq, size_t size);
char *vial_strdup(vial_req *rq, const char *s);
/* vial_sprintf, vial_text and vial_stream_printf format in the C locale:
 * "%.2f" writes "3.25" (as a Python f-string would) even after the
 * application called setlocale(LC_ALL, "") under a comma-decimal locale. */
char *vial_sprintf(vial_req *rq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies n bytes of s into the arena and adds a NUL (s need not end at n). */
char *vial_strndup(vial_req *rq, const char *s, size_t n);

/* Runs fn(arg) when the request ends: after the response went out (or the
 * client went away), before the arena is freed, newest first (Flask's
 * call_on_close). For objects a library hands out per request: a result
 * set, a leased connection. Returns 0 or -ENOMEM. */
int vial_req_on_end(vial_req *rq, void (*fn)(void *arg), void *arg);

/* The request's id: its X-Request-ID header when sane (visible ASCII, at
 * most 200 bytes), else 32 random hex digits generated once per request
 * (per-thread generator, no lock). The same id is echoed in the response's
 * X-Request-ID (as cfg.request_id says) and written to the access log,
 * so a handler's own log lines can carry it. Lives as long as the request;
 * never NULL. */
const char *vial_req_id(vial_req *rq);

/* 1 when rq is served by a sync view (on a worker thread, where blocking is
 * allowed), 0 for an async one (on its loop thread, in a coroutine). */
int vial_req_is_sync(const vial_req *rq);

/* --- response --------------------------------------------------------------- */

/* Sets the status code (default 200). */
int vial_res_set_status(vial_res *rs, int status);

/* Adds a header (the value is copied). Content-Length, Date,
 * Transfer-Encoding and Connection are the server's to set. */
int vial_res_add_header(vial_res *rs, const char *name, const char *value);

/* Replaces every header of that name with one (the value is copied). */
int vial_res_set_header(vial_res *rs, const char *name, const char *value);

/* The first response header of that name (case-insensitive), or NULL. */
const char *vial_res_get_header(vial_res *rs, const char *name);

/* The response status (so far). */
int vial_res_get_status(vial_res *rs);

/* Replaces the body with a copy of data[0..len). */
int vial_res_set_body(vial_res *rs, const void *data, size_t len);

/* Uses data as the body without copying; it must outlive the response
 * (a string literal, a static buffer). */
int vial_res_set_body_static(vial_res *rs, const void *data, size_t len);

/* Appends to the body. */
int vial_res_append_body(vial_res *rs, const void *data, size_t len);

/* Sets status, Content-Type: text/plain; charset=utf-8, and the formatted
 * body. Returns 0 (or -ENOMEM). */
int vial_text(vial_res *rs, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Marks the response an HTTP error (4xx/5xx), rendered by the error handler
 * registered for it (else a plain-text body naming the status); headers
 * already set (e.g. Allow) are kept. Sticky: the error stands even if the
 * result is dropped. A status outside 100..999 is taken as 500. Returns
 * VIAL_EHTTP(status):
 * `return vial_abort(rs, 404);` (Flask's abort(404)). */
int vial_abort(vial_res *rs, int status);

/* vial_abort with a message (vial_error_message in the error handler). */
int vial_abort_msg(vial_res *rs, int status, const char *message);

/* Marks an unhandled error with a message (500; teardown receives the
 * message). Sticky like vial_abort. Returns VIAL_FAILED. */
int vial_fail(vial_res *rs, const char *message);

/* A redirect: status (301, 302, 303, 307, 308) and Location, as given. */
int vial_redirect(vial_res *rs, const char *location, int status);

/* Cookies. opts may be NULL: Path=/ and nothing else. Attributes are
 * written in this order: Expires, Max-Age, Domain, Path, Secure, HttpOnly,
 * SameSite. */
typedef struct vial_cookie_opts {
    const char *path;      /* default "/" */
    const char *domain;    /* NULL: none */
    long long max_age;     /* seconds; 0: none (a session cookie); < 0: expire now */
    long long expires;     /* Unix time; 0: none */
    int secure, http_only;
    const char *same_site; /* "Lax", "Strict", "None" or NULL */
} vial_cookie_opts;
/* Returns 0, or -EINVAL when name or value has characters a cookie cannot
 * carry (name: RFC 6265 token; value: no CTL, space, '"', ',', ';', '\\'). */
int vial_set_cookie(vial_res *rs, const char *name, const char *value, const vial_cookie_opts *opts);
/* Expires the cookie now: "name=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/". */
int vial_delete_cookie(vial_res *rs, const char *name, const vial_cookie_opts *opts);

/* The reason phrase of a status ("Not Found"). */
const char *vial_status_text(int status);

/* --- static files ------------------------------------------------------------------- */

/* Serves directory's files under url_prefix ("/static"): GET/HEAD, content
 * type by extension, ETag and Last-Modified with 304s, Range (206/416),
 * sendfile(2) for the body; paths escaping the directory are 404. */
int vial_static(vial_app *app, const char *url_prefix, const char *directory);

/* Sends one file as the response (Flask's send_file), with the same
 * conditional and range handling. content_type NULL: by extension.
 * Returns 0, or vial_abort(rs, 404) (VIAL_EHTTP(404)) when it cannot be
 * opened. */
int vial_send_file(vial_req *rq, vial_res *rs, const char *path, const char *content_type);

/* --- compression ---------------------------------------------------------------------
 * Response bodies in gzip (zlib, always built) or brotli (libbrotli, when
 * found at build time: VIAL_HAVE_BROTLI in vial/config.h), chosen from the
 * request's Accept-Encoding with its q-values (br before gzip on equal
 * weight), as Flask-Compress does. Off until vial_compress (or --compress,
 * VIAL_COMPRESS) turns it on. Then, after the after_request hooks:
 *   - every response of a compressible type gets Vary: Accept-Encoding,
 *     compressed or not;
 *   - a buffered body of at least min_size bytes is compressed when the
 *     client accepts a coding: Content-Encoding set, Content-Length that of
 *     the compressed bytes, a strong ETag made weak (W/"..."). HEAD gets the
 *     headers GET would;
 *   - a stream (vial_stream_begin) is compressed as it goes, each
 *     vial_stream_write flushed through the compressor so it reaches the
 *     client at once (server-sent events stay live);
 *   - untouched: a response that already has a Content-Encoding, one with
 *     Cache-Control: no-transform (the per-response opt-out), 1xx, 204, 205,
 *     206 and 304 responses, and file bodies (vial_send_file, vial_static),
 *     which are sent with sendfile: for those, a precompressed sibling
 *     (NAME.br, NAME.gz, as made by `brotli -k` / `gzip -k`) is sent instead
 *     when it exists, is not older than NAME and the client accepts it.
 * Compressing runs on the loop thread; a body over 256 KiB is compressed on
 * the worker pool instead. Compressor state is the request's: freed when
 * the body is compressed, or for a stream when the request ends, client
 * gone or not. */
#define VIAL_COMPRESS_GZIP 1u
#define VIAL_COMPRESS_BR 2u /* ignored without VIAL_HAVE_BROTLI */

typedef struct vial_compress_opts {
    unsigned codings;       /* VIAL_COMPRESS_GZIP | VIAL_COMPRESS_BR (default: both) */
    size_t min_size;        /* smaller buffered bodies go as they are (default 860,
                             * Akamai's and Flask-Compress's 500 byte floor plus a
                             * margin: below about a packet, compressing saves no
                             * round trip and costs CPU) */
    int gzip_level;         /* 1-9 (default 6, zlib's and Flask-Compress's) */
    int br_quality;         /* 0-11 (default 4, Flask-Compress's: 11 is for
                             * precompressing, tens of times slower) */
    /* Compressible media types, NULL-terminated: "text/" followed by "*"
     * matches every text type; parameters (charset) are ignored. NULL:
     * every text type, application/json, application/javascript, application/xml,
     * image/svg+xml. Copied. */
    const char *const *types;
    int precompressed;      /* static files: look for NAME.br / NAME.gz (default 1) */
} vial_compress_opts;

/* The defaults above, filled in. */
vial_compress_opts vial_compress_opts_default(void);

/* Turns compression on for app with opts (NULL: the defaults); a second
 * call replaces the first. Returns 0, -EINVAL (a level out of range, no
 * coding, an empty type), -ENOMEM, or -EBUSY once the app runs. */
int vial_compress(vial_app *app, const vial_compress_opts *opts);

/* --- sessions -------------------------------------------------------------------------
 * Signed cookie sessions (HMAC-SHA256 with the app's secret key), like
 * Flask's: the data travels in the "session" cookie, readable by the client
 * but not forgeable. A cookie that fails verification gives an empty
 * session, never an error. Without a secret key, setting fails (-EPERM). */
int vial_app_set_secret_key(vial_app *app, const char *key);
const char *vial_session_get(vial_req *rq, const char *key);
int vial_session_set(vial_req *rq, const char *key, const char *value);
int vial_session_del(vial_req *rq, const char *key);
void vial_session_clear(vial_req *rq);

/* --- passwords -----------------------------------------------------------------------
 * Password hashes in Werkzeug's formats, so a Flask application's user table
 * moves over unchanged and back: "scrypt:N:r:p$SALT$HEX" (the default,
 * scrypt:32768:8:1 with a 16-character salt and a 64-byte key) and
 * "pbkdf2:HASH:ITERATIONS$SALT$HEX" (HASH sha1, sha224, sha256, sha384 or
 * sha512). Hashing is slow by design (tens of milliseconds, 32 MiB for
 * scrypt): call these from a sync view or through vial_offload, never from
 * async code on the loop. Thread-safe. */

/* Hashes password with the default method into out[0..cap) (NUL-terminated;
 * 163 bytes are enough). Returns 0, -ENOSPC when cap is too small, -EIO when
 * no random salt could be had, -ENOMEM. */
int vial_password_hash(const char *password, char *out, size_t cap);

/* The same with a method of Werkzeug's: "scrypt", "scrypt:N:r:p", "pbkdf2",
 * "pbkdf2:HASH" or "pbkdf2:HASH:ITERATIONS" (600000 when not given).
 * Returns -EINVAL for a malformed or out-of-bounds method (scrypt N a power
 * of two up to 2^24, r and p up to 64, at most 1 GiB; up to 10 million
 * iterations), -ENOTSUP for an unknown one. */
int vial_password_hash_with(const char *password, const char *method, char *out, size_t cap);

/* Checks password against a stored hash, in constant time: 1 when it
 * matches, 0 when not, -EINVAL for a malformed hash (or a work factor beyond
 * the bounds above), -ENOTSUP for a method vial does not know, -ENOMEM. */
int vial_password_verify(const char *hash, const char *password);

/* Flask's flash(): a one-shot message for the next request that asks. */
int vial_flash(vial_req *rq, const char *category, const char *message);
/* Takes the flashed messages (and removes them from the session): returns
 * the count; the arrays live in the request's arena. */
unsigned vial_get_flashed_messages(vial_req *rq, const char ***categories, const char ***messages);

/* --- HTML escaping, CSRF, CORS ---------------------------------------------------------
 * docs/guide/security.md. */

/* HTML-escapes s[0..n) as Jinja and markupsafe do: & < > " ' become &amp;
 * &lt; &gt; &#34; &#39;, every other byte is kept (UTF-8 passes through).
 * Writes the result and a NUL into out[0..cap). Returns 0, or -ENOSPC when
 * cap is too small (out then holds "" when cap > 0): vial_html_escape_len(s,
 * n) + 1 bytes are enough, 5 * n + 1 always. Thread-safe, no allocation:
 * usable outside requests. The template engine escapes with the same code. */
int vial_html_escape(char *out, size_t cap, const char *s, size_t n);
/* The length of s[0..n) escaped, without the NUL. */
size_t vial_html_escape_len(const char *s, size_t n);
/* The escaped copy of the C string s in the request's arena, for text put
 * into HTML by hand: vial_text(rs, 200, "<p>%s</p>", vial_escape(rq, name)).
 * NULL when s is NULL or out of memory. */
const char *vial_escape(vial_req *rq, const char *s);

/* CSRF protection (Flask-WTF's CSRFProtect). Each session gets a random
 * token, kept in the signed session under the field name; the token given
 * to forms (vial_csrf_token) is that one masked with fresh random bytes and
 * signed with a time stamp, so no two pages carry the same bytes (BREACH)
 * and an old page's token expires. Requests with POST, PUT, PATCH or DELETE
 * to a view that is not exempt must carry it in the form field (default
 * "csrf_token") or in an X-CSRFToken or X-CSRF-Token header (for scripts);
 * otherwise they are answered 400 through the app's error handlers, with
 * vial_error_message naming the problem: "The CSRF token is missing.",
 * "The CSRF session token is missing.", "The CSRF token is invalid.", "The
 * CSRF token has expired.", "The CSRF tokens do not match.". Routing errors
 * (404, 405), OPTIONS and websocket routes are not checked. A JSON API
 * authenticated by something other than cookies is exempted
 * (vial_csrf_exempt, vial_bp_csrf_exempt); a cookie-authenticated one sends
 * the header. Needs the secret key (vial_app_set_secret_key): vial_run
 * refuses to start without it (-ENOKEY). */
typedef struct vial_csrf_opts {
    int time_limit;         /* seconds a form token stays valid; 0: 3600; -1: as long
                             * as the session */
    const char *field_name; /* form field and session key; NULL: "csrf_token" */
} vial_csrf_opts;

/* Turns the check on for every view of the app (opts NULL: the defaults),
 * as a before_request hook registered now (it runs after the hooks
 * registered before it). Returns 0, -EINVAL, -ENOMEM, -EBUSY, -EEXIST when
 * called twice. */
int vial_csrf_protect(vial_app *app, const vial_csrf_opts *opts);
/* Exempts one endpoint ("api.items" for a blueprint's) / every view of a
 * blueprint from the check (Flask-WTF's csrf.exempt). Before or after
 * vial_csrf_protect. Returns 0, -EINVAL, -ENOMEM, -EBUSY. */
int vial_csrf_exempt(vial_app *app, const char *endpoint);
int vial_bp_csrf_exempt(vial_bp *bp);

/* The token for this request's forms (the template global csrf_token()):
 * creates the session's token on first use (the session cookie is sent
 * with the response). The same string for the whole request,
 * NUL-terminated, in the request's arena. NULL without a secret key or
 * when out of memory. Works with or without vial_csrf_protect. */
const char *vial_csrf_token(vial_req *rq);

/* Checks the request's token now, whatever its method (Flask-WTF's
 * csrf.protect(), for an exempt view that wants the check after all).
 * Returns 0, VIAL_EHTTP(400) through vial_abort_msg with the messages
 * above, VIAL_FAILED without a secret key, or what reading the form failed
 * with (VIAL_EHTTP(413) past vial_config.max_fields, -ENOMEM, -EIO). */
int vial_csrf_validate(vial_req *rq, vial_res *rs);

/* CORS (Flask-CORS). For a request with an Origin header the origin is
 * checked; an allowed one gets Access-Control-Allow-Origin on every
 * response, error pages included ("*" when any origin is allowed without
 * credentials, else the origin itself), with Allow-Credentials and
 * Expose-Headers as configured; a disallowed one gets no CORS header and
 * the browser keeps the response from the page. A preflight (OPTIONS with
 * Origin and Access-Control-Request-Method) to a route is answered 204 by
 * a before_request hook without running the view, with Allow-Methods,
 * Allow-Headers and Max-Age when origin and method are allowed. Responses
 * that depend on the origin carry Vary: Origin, so caches keep them apart.
 * The hooks are registered by the first vial_cors / vial_bp_cors call, in
 * order with the app's own: call it before registering a hook that refuses
 * requests without credentials (preflights carry none). Strings are copied. */
typedef struct vial_cors_opts {
    /* Allowed origins ("https://app.example.com", compared ignoring case),
     * ending with NULL; "*" in the list allows any. NULL: any origin, unless
     * allow_origin is set. */
    const char *const *origins;
    /* Or a function (on the loop: must not block) that says whether an
     * origin not in the list is allowed: 1 yes, 0 no. */
    int (*allow_origin)(vial_req *rq, const char *origin, void *arg);
    void *allow_origin_arg;
    /* Access-Control-Allow-Methods, and what a preflight may ask for; NULL:
     * "GET, HEAD, POST, OPTIONS, PUT, PATCH, DELETE". */
    const char *methods;
    /* Request headers allowed, comma-separated ("Content-Type, X-CSRFToken");
     * NULL: whatever the preflight asks for. */
    const char *allow_headers;
    const char *expose_headers; /* Access-Control-Expose-Headers; NULL: none */
    int credentials;            /* send Access-Control-Allow-Credentials: true (cookies);
                                 * the origin is then echoed, never "*" */
    int max_age;                /* Access-Control-Max-Age in seconds; 0: not sent */
} vial_cors_opts;

/* CORS for every route of the app (and for requests no route matched);
 * vial_bp_cors for a blueprint's routes, which then follow the blueprint's
 * options instead. Once each; opts NULL: any origin, no credentials.
 * Returns 0, -EINVAL, -ENOMEM, -EBUSY, -EEXIST. */
int vial_cors(vial_app *app, const vial_cors_opts *opts);
int vial_bp_cors(vial_bp *bp, const vial_cors_opts *opts);

/* --- JSON writer -------------------------------------------------------------
 * Writes JSON straight into the response body, no tree:
 *   vial_json *j = vial_json_begin(rs, 200);    (sets Content-Type)
 *   vial_json_obj(j); vial_json_key(j, "id"); vial_json_int(j, 7); vial_json_end(j);
 * Commas and escaping are handled; errors stick and vial_json_finish reports
 * them. */
typedef struct vial_json vial_json;
vial_json *vial_json_begin(vial_res *rs, int status);
void vial_json_obj(vial_json *j);   /* { */
void vial_json_arr(vial_json *j);   /* [ */
void vial_json_end(vial_json *j);   /* } or ] */
void vial_json_key(vial_json *j, const char *key);
void vial_json_keyn(vial_json *j, const char *key, size_t len);
void vial_json_str(vial_json *j, const char *s);
void vial_json_strn(vial_json *j, const char *s, size_t len);
void vial_json_int(vial_json *j, int64_t v);
/* The shortest text that reads back as exactly v, as Python's repr and
 * Flask's jsonify write it: 3.25, 0.1, 1.0 (an integral double stays a
 * float), 1e+300, 1e-05, -0.0. Always '.', whatever setlocale said. NaN and
 * the infinities have no JSON form: they stick -EDOM in the writer
 * (vial_json_finish returns it) instead of writing something invalid. */
void vial_json_double(vial_json *j, double v);
void vial_json_bool(vial_json *j, int v);
void vial_json_null(vial_json *j);
/* Returns 0 when the document is complete and was written, -EINVAL (a
 * misplaced key or value, an unclosed level), -EDOM (a NaN or infinite
 * double) or -ENOMEM. */
int vial_json_finish(vial_json *j);

/* Writes a parsed JSON value (see vial_req_json) as the next value. */
void vial_json_value(vial_json *j, const vial_jv *v);

/* --- streaming ---------------------------------------------------------------
 * Async views only. vial_stream_begin sends the head at once (chunked for
 * HTTP/1.1, close-delimited for HTTP/1.0); each vial_stream_write sends its
 * bytes before returning (awaiting the socket), so nothing buffers the whole
 * body. A stream (or a file or a large body) to a client that keeps up
 * yields the loop after each slice's budget (1 MiB or 64 writes), so other
 * connections of the thread are not held while it goes out. Returns 0, or a
 * negative errno when the client is gone or the request was cancelled: stop
 * writing then. */
int vial_stream_begin(vial_res *rs, int status, const char *content_type);
int vial_stream_write(vial_res *rs, const void *data, size_t len);
int vial_stream_printf(vial_res *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- awaiting ----------------------------------------------------------------
 * Async views only (from a sync view they return -EPERM). */

/* Awaits ms milliseconds of the loop's monotonic clock. Returns 0, or
 * -ECANCELED when the request is cancelled (client gone). */
int vial_sleep(vial_req *rq, uint64_t ms);

/* Runs fn(arg) on the worker pool and awaits it (Quart's run_sync). The loop
 * stays free meanwhile. Returns 0, -EAGAIN when the pool's queue is full,
 * -ECANCELED when the request was cancelled before a worker took the job
 * (then fn never runs; once it has started, it is awaited to its end). */
int vial_offload(vial_req *rq, void (*fn)(void *arg), void *arg);

/* vial_offload for code that must see fn finish whatever happens (fn's
 * arguments live on the caller's stack; teardown after a cancellation): it
 * awaits fn even when the request is cancelled or its deadline passes
 * meanwhile. On the first of those, interrupt(arg) is called on the loop
 * thread while fn may still run (e.g. to set a flag fn polls); NULL ignores
 * them. Returns 0 once fn returned uninterrupted; -ECANCELED or -ETIMEDOUT
 * when it was interrupted (fn has returned all the same); -EAGAIN when the
 * pool's queue is full; -ENOSYS when the request has no worker pool (built by
 * hand in a unit test); -EPERM outside an async view's coroutine. */
int vial_offload_wait(vial_req *rq, void (*fn)(void *arg), void (*interrupt)(void *arg), void *arg);

/* Monotonic milliseconds (CLOCK_MONOTONIC, read now). */
uint64_t vial_now_ms(void);

/* --- tasks -------------------------------------------------------------------
 * Structured concurrency for async code (Quart's asyncio.gather/create_task,
 * with trio's rule that nothing outlives its owner): a task is a coroutine on
 * the request's loop thread, owned by the view, hook or task that spawned it.
 * When the view returns, tasks still running are cancelled and awaited; a
 * cancelled request (client gone, deadline) cancels all of them. All of these
 * are for async code only: from a sync function they fail with -EPERM (or
 * return NULL). They are not thread-safe: events, channels and semaphores
 * coordinate the tasks of one request (one loop thread). */
typedef struct vial_task vial_task;
typedef int (*vial_task_fn)(vial_req *rq, void *arg);

/* Starts fn(rq, arg) as a child task; it runs from the next await of the
 * caller on. Returns NULL when out of memory or not in async code. */
vial_task *vial_spawn(vial_req *rq, vial_task_fn fn, void *arg);

/* Awaits t and returns its result (fn's return value). If the wait itself
 * is cancelled or times out, returns -ECANCELED / -ETIMEDOUT (t goes on,
 * unless it was cancelled too). One coroutine awaits a task at a time. */
int vial_join(vial_req *rq, vial_task *t);

/* Awaits all n tasks (Quart's gather). Default: the first task to fail
 * (negative result) cancels the others, which are awaited, and its result is
 * returned; 0 when all succeeded. VIAL_GATHER_ALL: waits for every task
 * whatever happens and returns 0; read each with vial_task_result. A
 * cancelled or timed-out gather cancels the tasks, awaits them, and returns
 * -ECANCELED / -ETIMEDOUT. */
#define VIAL_GATHER_ALL 1
int vial_gather(vial_req *rq, vial_task *const *tasks, size_t n, int flags);

/* fn's result once t finished, -EINPROGRESS before. */
int vial_task_result(const vial_task *t);

/* Cancels t: its pending await returns -ECANCELED, and so do its later ones. */
void vial_task_cancel(vial_task *t);

/* 1 when the running view/task has been cancelled (client gone, deadline). */
int vial_cancelled(vial_req *rq);

/* Per-request deadline: ms from now, every await of the request and of its
 * tasks fails with -ETIMEDOUT once it passes (sooner deadlines win). */
int vial_set_deadline(vial_req *rq, uint64_t ms);

/* Per-await deadline (asyncio.timeout): between begin and end, awaits of the
 * running coroutine fail with -ETIMEDOUT once ms have passed; the awaited
 * operation is cancelled (its timer removed, its query cancelled...). Scopes
 * nest; end restores the outer deadline. */
typedef struct vial_timeout {
    uint64_t saved;
} vial_timeout;
void vial_timeout_begin(vial_req *rq, vial_timeout *t, uint64_t ms);
void vial_timeout_end(vial_req *rq, vial_timeout *t);

/* Events: set once, wake every waiter. */
typedef struct vial_event vial_event;
vial_event *vial_event_new(vial_req *rq);
int vial_event_wait(vial_req *rq, vial_event *e); /* 0, -ECANCELED, -ETIMEDOUT */
void vial_event_set(vial_event *e);
int vial_event_is_set(const vial_event *e);

/* Channels: a bounded FIFO of pointers between tasks. send awaits room,
 * recv awaits an item; after close, send fails with -EPIPE and recv drains
 * what is left, then fails with -EPIPE. */
typedef struct vial_chan vial_chan;
vial_chan *vial_chan_new(vial_req *rq, size_t capacity);
int vial_chan_send(vial_req *rq, vial_chan *ch, void *item);
int vial_chan_recv(vial_req *rq, vial_chan *ch, void **item);
void vial_chan_close(vial_chan *ch);

/* Semaphores: at most n holders; acquire awaits a free slot (FIFO). */
typedef struct vial_sem vial_sem;
vial_sem *vial_sem_new(vial_req *rq, unsigned n);
int vial_sem_acquire(vial_req *rq, vial_sem *s);
void vial_sem_release(vial_sem *s);

/* --- websockets ---------------------------------------------------------------
 * RFC 6455 over the HTTP/1.1 connection (Quart's websocket routes):
 *
 *   static int echo(vial_req *rq, vial_ws *ws)
 *   {
 *       vial_ws_msg m;
 *       while (vial_ws_recv(ws, &m) == 0)
 *           vial_ws_send(ws, m.type, m.data, m.len);
 *       return 0;
 *   }
 *   vial_ws_route(app, "/ws/echo", echo);
 *
 * A websocket route answers GET upgrade requests (a plain request to it is a
 * 400; a bad key 400, a version other than 13 a 426 with
 * Sec-WebSocket-Version: 13) and runs no before/after/teardown hooks. The
 * handler is async (a coroutine on the connection's loop thread). The 101 is
 * written when the handler first calls vial_ws_accept, _recv or _send, so
 * what it does before (join a group, check the request) happens first; a
 * handler that returns without accepting answers 403. When the handler
 * returns, a session still open is closed with 1000. No subprotocol is
 * negotiated; permessage-deflate is, when the client offers it (see
 * vial_config.ws_deflate): received messages are inflated before
 * vial_ws_recv returns them, and vial_ws_send compresses those of at least
 * ws_deflate_min bytes (group broadcasts go uncompressed). Messages are
 * limited to 1 MiB (1009 beyond; for a compressed one, its inflated size;
 * compressed data that does not inflate is a 1007);
 * protocol errors (1002) and invalid UTF-8 text (1007) fail the connection:
 * a close frame with the code, then the TCP connection is closed at once.
 * WebSocket connections have no idle timeout.
 *
 * Fairness: a session shares its loop thread with every other connection on
 * it. vial_ws_recv and vial_ws_send yield the loop after a slice's budget
 * (about 64 frames or 1 MiB, well under a millisecond of work) even while
 * the peer keeps sending or reading, so a flooding peer delays the other
 * connections of its loop by one slice at most. */
typedef struct vial_ws vial_ws;
typedef int (*vial_ws_handler)(vial_req *rq, vial_ws *ws);

#define VIAL_WS_TEXT 1
#define VIAL_WS_BINARY 2
/* vial_ws_recv: the peer closed the session (vial_ws_close_code says how). */
#define VIAL_WS_CLOSED (-101001)

typedef struct vial_ws_msg {
    int type;         /* VIAL_WS_TEXT (valid UTF-8) or VIAL_WS_BINARY */
    const void *data; /* valid until the next vial_ws_recv */
    size_t len;
} vial_ws_msg;

/* Registers fn for GET upgrade requests to path (converters allowed, see
 * vial_route_as) under an endpoint name (for url_for), with data for
 * vial_route_data. Returns 0, -EINVAL, -EEXIST, -ENOMEM, -EBUSY. */
int vial_ws_route_as(vial_app *app, const char *path, vial_ws_handler fn, const char *endpoint,
                     void *data);
/* Like vial_route: the endpoint is the function's name, no data. */
#define vial_ws_route(app, path, fn) vial_ws_route_as((app), (path), (fn), #fn, NULL)

/* Writes the 101 now (the other calls do it when needed). Returns 0 or a
 * negative errno. */
int vial_ws_accept(vial_ws *ws);

/* Awaits the next complete text or binary message (fragments reassembled).
 * Pings are answered inside it, pongs ignored, and messages broadcast to the
 * session's groups are sent while it waits. Returns 0 with *msg filled;
 * VIAL_WS_CLOSED when the peer closed (its close was echoed); -EPROTO,
 * -EMSGSIZE after failing the connection with 1002/1007 or 1009; -ENOMEM
 * after 1013 (no room for permessage-deflate's zlib state) or 1011;
 * -ECONNRESET when the peer vanished; -ENOBUFS when the session was dropped
 * for not reading its broadcasts; -ECANCELED. Once it fails, the session is
 * over: later calls return the same result. */
int vial_ws_recv(vial_ws *ws, vial_ws_msg *msg);

/* Sends one message (VIAL_WS_TEXT: data must be UTF-8, not checked),
 * awaiting room in the socket. Returns 0 or a negative errno (-EPIPE once
 * the session is over). */
int vial_ws_send(vial_ws *ws, int type, const void *data, size_t len);

/* Sends a close frame (code 1000-4999 except 1004-1006 and 1015, or 0 for
 * none; reason may be NULL) and ends the session. Returns 0 or -errno. */
int vial_ws_close(vial_ws *ws, int code, const char *reason);

/* The peer's close code (0: none yet, or a close without a code). */
int vial_ws_close_code(const vial_ws *ws);

/* Groups: process-wide sets of sessions, for fan-out across loop threads
 * (a chat room). Thread-safe. A group is a use of the broadcast hub
 * (include/vial/realtime.h): a private, unnamed topic, local to the
 * process, with the policy VIAL_HUB_ABORT and the limits {4 MiB, 5 s,
 * 1 MiB} (vial_hub_set_limits), which an app may give a hub topic of its
 * own. A broadcast is encoded once and shared by every member, and every
 * member receives the group's messages in one order (each sender's in the
 * order sent). A member is sent its queued messages while its handler
 * awaits vial_ws_recv (an idle member directly by the hub's drain); one
 * that vanishes leaves without affecting the others. A session leaves its
 * groups when it ends. Nothing is lost for a member that keeps up.
 *
 * What a slow or flooding member gets (the bounds hold per session, so a
 * group's memory is at most members x 4 MiB, the loops' queues included,
 * the messages themselves shared):
 * - Its outbound queue (published to it, not yet written to its socket,
 *   counted from the moment of the broadcast) holds up to 4 MiB (a message
 *   costs its length + VIAL_HUB_MSG_OVERHEAD). The message that finds it
 *   fuller, or finds its queue has not moved for 5 s (its socket takes
 *   nothing), drops it: it receives nothing more, and its vial_ws_recv
 *   returns -ENOBUFS with the connection closed at once (a close frame
 *   could not get through). A single message larger than the bound still
 *   goes to a member whose queue is empty. A member's loop never holds
 *   more than the bound for it.
 * - A sender is throttled instead of its readers being flooded: while more
 *   than 1 MiB of a session's broadcasts are still queued at members, its
 *   vial_ws_recv stops reading its socket (the peer's sends wait in TCP) and
 *   only writes its own queue, until they fall to 512 KiB. It never waits
 *   more than 5 s on a member that takes nothing: it then reads on, and its
 *   next broadcast drops that member. Broadcasts made by the session's
 *   handler (or a task it spawned) count as its own; those from other
 *   threads or timers count for no session.
 * - A handler busy with its own awaits between vial_ws_recv calls is not
 *   slow for that; only its 4 MiB bound applies meanwhile. */
typedef struct vial_ws_group vial_ws_group;
vial_ws_group *vial_ws_group_new(void);
/* Only once no session is a member any more. */
void vial_ws_group_free(vial_ws_group *g);
/* From the session's handler. Returns 0, -EALREADY, -EPIPE (session over), -ENOMEM. */
int vial_ws_group_join(vial_ws_group *g, vial_ws *ws);
void vial_ws_group_leave(vial_ws_group *g, vial_ws *ws);
/* Sends one message to every member (the sender too, when it is one). From
 * any thread; it never waits. Returns the number of members it was queued
 * for (members already dropped for being slow are not counted; one that
 * this message finds too slow is dropped on its loop, and counted), or
 * -errno. */
int vial_ws_group_broadcast(vial_ws_group *g, int type, const void *data, size_t len);

/* --- rendering templates --------------------------------------------------
 * Flask's render_template over the template engine (include/vial/template.h,
 * Jinja's syntax):
 *
 *   static int hello(vial_req *rq, vial_res *rs)
 *   {
 *       vial_tmpl_value ctx = vial_render_ctx(rq);
 *       vial_tmpl_set(vial_req_arena(rq), ctx, "name", vial_tmpl_cstr(vial_req_param(rq, "name")));
 *       return vial_render(rq, rs, "hello.html", ctx);
 *   }
 *
 * Templates are found in the app's folder ("templates", relative to the
 * working directory, unless vial_app_set_template_folder says otherwise),
 * then in each blueprint's folder in registration order (Flask's search
 * path: the first folder that has the name wins, whoever renders it).
 * vial_run compiles every file of those folders before it listens: a syntax
 * error stops the start with "vial: NAME:LINE: message" and VIAL_ETMPL_SYNTAX.
 * Templates load once and are shared by every thread; with cfg.debug
 * (--debug, VIAL_DEBUG=1) a template whose file changed is compiled again at
 * its next render (its file is looked at once a second at most).
 *
 * Every template sees, besides its context, the globals Flask gives it:
 *   url_for(endpoint, **values)     vial_url_for; _external=true for an absolute URL;
 *                                   an unknown endpoint is a render error
 *   get_flashed_messages(with_categories=false, category_filter=[])
 *                                   messages, or (category, message) pairs
 *   csrf_token()                    the session's CSRF token
 *   request   .method .path .full_path .url .base_url .query_string .host
 *             .scheme .endpoint .blueprint .remote_addr, and the lookups .args .form .cookies
 *             .headers (headers case-insensitive): request.args.q,
 *             request.args['q'], request.args.get('q', 'none'),
 *             request.args.getlist('tag'), 'q' in request.args
 *   session   the signed session: session.user, session['user'],
 *             session.get('user'), 'user' in session
 *   g         the strings set with vial_g_set_str (g.user)
 * plus the app's own (vial_template_global, vial_template_function). They
 * cost nothing until a template reads them: request, session and g are
 * objects whose attributes are computed when read, so they cannot be
 * iterated or measured (|length); lookups are all they do. */

/* vial_render's own codes (the template's name and line are logged, and the
 * response is a 500 through the handler for 500): */
#define VIAL_ETMPL_NOTFOUND (-100021) /* no such template */
#define VIAL_ETMPL_SYNTAX (-100022)   /* a template (or one it uses) does not compile */
#define VIAL_ETMPL_RENDER (-100023)   /* a render-time error (undefined attribute...) */

/* Renders template `name` with ctx (a dict from vial_render_ctx, or
 * vial_tmpl_undefined() for none) into rs: the body, and a Content-Type by
 * the name's extension (.html/.htm "text/html; charset=utf-8", .xml, .txt,
 * .json, .css... as vial_static; unknown extensions "text/plain;
 * charset=utf-8"). The status stays as it is: 200 unless the view set
 * another, the error's in an error handler (a 404 page stays a 404).
 * Values are allocated from the request's arena and the text is written
 * straight into the body: nothing else is allocated per render.
 * Autoescaping is on for .html, .htm and .xml. Returns 0;
 * VIAL_ETMPL_NOTFOUND, VIAL_ETMPL_SYNTAX or VIAL_ETMPL_RENDER after
 * vial_fail with "NAME:LINE: message" (so `return vial_render(...)` gives a
 * 500 and that log line); -ENOMEM. */
int vial_render(vial_req *rq, vial_res *rs, const char *name, vial_tmpl_value ctx);

/* The same for a template given as text (Flask's render_template_string):
 * autoescaped, served as text/html. Each distinct source is compiled once
 * and kept for the life of the app: pass constant text, never text built
 * from the request. */
int vial_render_string(vial_req *rq, vial_res *rs, const char *source, vial_tmpl_value ctx);

/* An empty context dict in the request's arena (UNDEFINED when out of
 * memory), and that arena, for vial_tmpl_set / vial_tmpl_list / ...: the
 * values live until the response is sent. */
vial_tmpl_value vial_render_ctx(vial_req *rq);
struct vial_arena *vial_req_arena(vial_req *rq);

/* The folder of the app's templates (copied; default "templates", relative
 * to the working directory), and a blueprint's, searched after the app's.
 * 0, -EINVAL, -ENOMEM, -EBUSY once vial_run started (or once a template was
 * rendered). */
int vial_app_set_template_folder(vial_app *app, const char *dir);
int vial_bp_set_template_folder(vial_bp *bp, const char *dir);

/* Recompile templates whose file changed (what cfg.debug turns on), for an
 * app driven without vial_run (the test client). 0 or -EBUSY like above. */
int vial_app_set_templates_auto_reload(vial_app *app, int on);

/* Registers a global every template of the app sees (Flask's
 * app.template_global / add_template_global): a value whose strings and
 * lists live as long as the app (static text, a value built with a NULL
 * arena), or a C function (vial_tmpl_fn; data is passed to it as
 * call->data). A name in a render's context hides a global. A function
 * runs inside the render, on the view's thread: it must not await, nor
 * block when the view is async. Returns 0, -EINVAL, -ENOMEM, -EBUSY once
 * vial_run started. */
int vial_template_global(vial_app *app, const char *name, vial_tmpl_value value);
int vial_template_function(vial_app *app, const char *name, vial_tmpl_fn fn, void *data);

/* Inside a template function called by vial_render: the request being
 * rendered (NULL outside a render). */
vial_req *vial_render_req(void);

/* Compiles every template of the app's folders now (what vial_run does
 * before it listens). The number of templates, or the first error's code
 * (VIAL_ETMPL_SYNTAX), logged as NAME:LINE: message. */
int vial_app_load_templates(vial_app *app);

/* --- test client --------------------------------------------------------------------
 * Drives the app in-process, without a socket (Flask's app.test_client()):
 * each request runs through routing, hooks, error handlers, async views as
 * coroutines (timers and awaits included) and sync views on a worker pool,
 * and the finished response can be inspected. Cookies set by responses are
 * kept and sent with later requests (a session survives between requests).
 * One client is used from one thread at a time. */
typedef struct vial_test_client vial_test_client;
typedef struct vial_test_response vial_test_response;

vial_test_client *vial_test_client_new(vial_app *app);
void vial_test_client_free(vial_test_client *c);

/* Runs one request. headers: "Name: value" strings ending with NULL (may be
 * NULL). target: path with optional query. Returns the response (free it
 * with vial_test_response_free) or NULL when out of memory. */
vial_test_response *vial_test_client_request(vial_test_client *c, const char *method, const char *target,
                                   const char *const *headers, const void *body, size_t len);
/* GET target, no headers. */
vial_test_response *vial_test_client_get(vial_test_client *c, const char *target);

int vial_test_response_status(const vial_test_response *r);
/* First header with this name (case-insensitive), or NULL. */
const char *vial_test_response_header(const vial_test_response *r, const char *name);
/* Number of headers with this name (e.g. Set-Cookie), and the i-th of them. */
unsigned vial_test_response_header_count(const vial_test_response *r, const char *name);
const char *vial_test_response_header_nth(const vial_test_response *r, const char *name, unsigned i);
/* The body (streamed bodies are collected whole); NUL-terminated. */
const char *vial_test_response_body(const vial_test_response *r, size_t *len);
void vial_test_response_free(vial_test_response *r);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
