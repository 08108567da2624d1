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
 */
#ifndef VIAL_H
#define VIAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VIAL_VERSION "0.1.0"

typedef struct vial_app vial_app;
typedef struct vial_req vial_req;
typedef struct vial_res vial_res;

/* A view, hook or error handler. Returns 0 when the response is ready, or the
 * value of vial_abort / vial_fail. */
typedef int (*vial_handler)(vial_req *rq, vial_res *rs);

/* Returned by vial_abort: the response is an HTTP error to be rendered. */
#define VIAL_ABORTED (-100000)
/* Returned by vial_fail: an unhandled error (500). */
#define VIAL_FAILED (-100001)

/* --- application ---------------------------------------------------------- */

/* Creates an empty application. Returns NULL when out of memory. */
vial_app *vial_app_new(void);

/* Frees the application and everything registered on it. Not while running. */
void vial_app_free(vial_app *app);

/* Registers an async view (a coroutine on the loop thread).
 * rule is "METHODS PATH": METHODS a comma-separated list ("GET,POST"),
 * optional (default GET); PATH with converters <name>, <int:name>,
 * <path:name>. Returns 0, -EINVAL for a malformed rule, -EEXIST if the same
 * method and path are registered already, -ENOMEM. */
int vial_route(vial_app *app, const char *rule, vial_handler fn);

/* Registers a sync (blocking) view: it runs on the worker pool while the
 * connection's coroutine waits, so it never stalls the loop. Same rules. */
int vial_route_sync(vial_app *app, const char *rule, vial_handler fn);

/* --- running -------------------------------------------------------------- */

typedef struct vial_config {
    const char *host;       /* listen address (default "127.0.0.1") */
    int port;               /* listen port (default 8080) */
    int threads;            /* loop threads; 0: one per core */
    int workers;            /* worker-pool threads for sync handlers; 0: 16 */
    int queue_max;          /* jobs waiting for the pool before 503; 0: 4096 */
    size_t stack_size;      /* coroutine stack bytes; 0: 128 KiB */
    int grace_ms;           /* shutdown grace for in-flight requests; 0: 2000 */
    int server_header;      /* send "Server: vial" on every response */
} vial_config;

/* The defaults above, filled in. */
vial_config vial_config_default(void);

/* Reads --host H, --port P, --threads N, --workers N from argv into cfg.
 * Returns 0, or -EINVAL after printing usage to stderr. */
int vial_config_args(vial_config *cfg, int argc, char **argv);

/* Serves app until SIGTERM or SIGINT, then stops accepting, lets in-flight
 * requests finish for grace_ms, closes everything and returns 0. Returns a
 * negative errno when it cannot listen. Logs go to stderr. */
int vial_run(vial_app *app, const vial_config *cfg);

/* --- request ---------------------------------------------------------------- */

/* Method as sent ("GET"), NUL-terminated. */
const char *vial_req_method(vial_req *rq);

/* The percent-decoded path (the part the router matched). */
const char *vial_req_path(vial_req *rq);

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

/* The value of an <int:...> parameter; 0 if absent. */
int64_t vial_req_param_int(vial_req *rq, const char *name);

/* First value of a query argument, decoded; NULL when absent. */
const char *vial_req_arg(vial_req *rq, const char *name);

/* Reads an integer query argument into *out: `def` when absent; returns
 * -EINVAL when present but empty, not decimal digits, or outside
 * [min, max]. */
int vial_req_arg_int(vial_req *rq, const char *name, int64_t def, int64_t min, int64_t max,
                     int64_t *out);

/* Number of query arguments (repeated keys count each time), and the i-th. */
unsigned vial_req_arg_count(vial_req *rq);
int vial_req_arg_at(vial_req *rq, unsigned i, const char **name, const char **value);

/* The request body (already read and de-chunked); *len may be NULL.
 * Never NULL: an empty body is "" with length 0. */
const void *vial_req_body(vial_req *rq, size_t *len);

/* --- per-request memory --------------------------------------------------- */

/* Allocates from the request's arena (16-byte aligned); freed after the
 * response. NULL when out of memory. */
void *vial_alloc(vial_req *rq, size_t size);
char *vial_strdup(vial_req *rq, const char *s);
char *vial_sprintf(vial_req *rq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- response --------------------------------------------------------------- */

/* Sets the status code (default 200). */
int vial_res_status(vial_res *rs, int status);

/* Adds a header (the value is copied). Content-Length, Date,
 * Transfer-Encoding and Connection are the server's to set. */
int vial_res_header(vial_res *rs, const char *name, const char *value);

/* Replaces the body with a copy of data[0..len). */
int vial_res_body(vial_res *rs, const void *data, size_t len);

/* Uses data as the body without copying; it must outlive the response
 * (a string literal, a static buffer). */
int vial_res_body_static(vial_res *rs, const void *data, size_t len);

/* Appends to the body. */
int vial_res_append(vial_res *rs, const void *data, size_t len);

/* Sets status, Content-Type: text/plain; charset=utf-8, and the formatted
 * body. Returns 0 (or -ENOMEM). */
int vial_text(vial_res *rs, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Marks the response an HTTP error (4xx/5xx) rendered by the error handler
 * (for now a plain-text body naming the status). Returns VIAL_ABORTED:
 * `return vial_abort(rs, 404);`. */
int vial_abort(vial_res *rs, int status);

/* Marks an unhandled error with a message (500). Returns VIAL_FAILED. */
int vial_fail(vial_res *rs, const char *message);

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
void vial_json_str(vial_json *j, const char *s);
void vial_json_strn(vial_json *j, const char *s, size_t len);
void vial_json_int(vial_json *j, int64_t v);
void vial_json_double(vial_json *j, double v);
void vial_json_bool(vial_json *j, int v);
void vial_json_null(vial_json *j);
/* Returns 0 when the document is complete and was written, -EINVAL/-ENOMEM. */
int vial_json_finish(vial_json *j);

/* --- streaming ---------------------------------------------------------------
 * Async views only. vial_stream_begin sends the head at once (chunked for
 * HTTP/1.1, close-delimited for HTTP/1.0); each vial_stream_write sends its
 * bytes before returning (awaiting the socket), so nothing buffers the whole
 * body. Returns 0, or a negative errno when the client is gone or the
 * request was cancelled: stop writing then. */
int vial_stream_begin(vial_res *rs, int status, const char *content_type);
int vial_stream_write(vial_res *rs, const void *data, size_t len);
int vial_stream_printf(vial_res *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- awaiting ----------------------------------------------------------------
 * Async views only (from a sync view they return -EPERM). */

/* Awaits ms milliseconds of the loop's monotonic clock. Returns 0, or
 * -ECANCELED when the request is cancelled (client gone). */
int vial_sleep(vial_req *rq, uint64_t ms);

/* Runs fn(arg) on the worker pool and awaits it (Quart's run_sync). The loop
 * stays free meanwhile. Returns 0, -EAGAIN when the pool's queue is full. */
int vial_offload(vial_req *rq, void (*fn)(void *arg), void *arg);

/* Monotonic milliseconds (the loop's clock). */
uint64_t vial_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
