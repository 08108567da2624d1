/* vial — outbound HTTP client (libcurl).
 *
 * Awaitable HTTP requests from views, built on libcurl's multi socket API
 * driven by vial's own event loop: one curl multi handle per loop thread, so
 * a view that fetches does not block the loop, many fetches of many requests
 * share the thread's connections (keep-alive) and DNS cache, and a gather of
 * N fetches runs them all at once.
 *
 *   static int weather(vial_req *rq, vial_res *rs)
 *   {
 *       vial_http_response *r;
 *       int rc = vial_http_get(rq, "http://127.0.0.1:9000/today", NULL, &r);
 *       if (rc < 0)
 *           return vial_abort_msg(rs, 502, vial_http_error(rq));
 *       size_t len;
 *       const char *body = vial_http_body(r, &len);
 *       return vial_text(rs, vial_http_status(r), "%.*s", (int)len, body);
 *   }
 *
 * Built when pkg-config finds libcurl (VIAL_HAVE_HTTP is then defined).
 *
 * Where it can be called:
 *   - async code (vial_route, vial_before_request, ..., tasks): the call awaits
 *     the transfer; the loop serves other requests meanwhile. The request's
 *     deadline (vial_set_deadline), a vial_timeout scope and cancellation
 *     (client gone, a failed gather, vial_task_cancel) abort the transfer:
 *     its handle is removed from the multi, the connection closed, and the
 *     call returns -ETIMEDOUT / -ECANCELED.
 *   - sync code (the _sync registrations, on a worker thread): the transfer runs
 *     blocking on that thread (only opts.timeout_ms bounds it).
 *
 * Results: a request that got any HTTP response returns 0, whatever the
 * status (a 404 or 500 is a response, read it with vial_http_status). The
 * response lives in the request's memory and is freed when the request ends;
 * never free it. Nothing is ever written to stdout/stderr.
 *
 * Errors (negative errno values; vial_http_error(rq) has the full message,
 * e.g. "GET http://127.0.0.1:1/: connection refused (Failed to connect to
 * 127.0.0.1 port 1 after 0 ms: Couldn't connect to server)"):
 *   -ECONNREFUSED   nothing listens there (other connect failures carry the
 *                   socket's errno: -EHOSTUNREACH, -ENETUNREACH, ...)
 *   -ENXIO          the host name could not be resolved (DNS)
 *   -ETIMEDOUT      opts.timeout_ms / connect_timeout_ms passed, or the
 *                   request's deadline / a vial_timeout scope did
 *   -ECANCELED      the awaiting task or request was cancelled
 *   -ECONNRESET     the server closed or reset the connection mid-exchange
 *   -EPROTO         not a valid HTTP response, TLS failure, too many redirects
 *   -EFBIG          the response body is larger than opts.max_body
 *   -EINVAL         bad arguments, malformed URL, scheme other than http(s)
 *   -EPERM          called where it cannot be (no coroutine and not sync)
 *   -ENOMEM, -EIO   out of memory; any other libcurl failure
 */
#ifndef VIAL_HTTP_CLIENT_H
#define VIAL_HTTP_CLIENT_H

#include <vial.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* Per-request options; NULL or a zeroed struct means the defaults. */
typedef struct vial_http_options {
    long timeout_ms;          /* the whole transfer, connect included; 0: no
                                 limit of its own (deadlines still apply) */
    long connect_timeout_ms;  /* TCP (+TLS) connect; 0: 10000 */
    const char *content_type; /* Content-Type of the body, e.g.
                                 "application/json"; NULL: a Content-Type in
                                 `headers`, else application/octet-stream */
    int max_redirects;        /* follow up to this many redirects; 0: none
                                 (a 3xx is returned as is) */
    size_t max_body;          /* response body limit in bytes; 0: 16 MiB */
    int compressed;           /* 1: send Accept-Encoding (gzip, br, zstd,
                                 deflate) and decode the body */
    const char *user_agent;   /* NULL: "vial/<version>" */
} vial_http_options;

typedef struct vial_http_response vial_http_response;

/* Performs one HTTP request and awaits the whole response.
 * method: "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", ... (as given);
 * url: http:// or https:// only (other schemes are refused: a URL built from
 * user input must not read file://);
 * headers: "Name: value" strings ending with NULL, or NULL; "Name:" (empty)
 * removes a header curl would send;
 * body/len: sent as the request body when body is non-NULL (even when len is
 * 0); the buffer must stay valid until the call returns (it does: the call
 * returns only when the transfer is over or aborted).
 * On success *out is the response and 0 is returned; on failure *out is NULL
 * and a negative errno (above) is returned. */
int vial_http_request(vial_req *rq, const char *method, const char *url,
                      const char *const *headers, const void *body, size_t len,
                      const vial_http_options *opts, vial_http_response **out);

/* GET url. */
int vial_http_get(vial_req *rq, const char *url, const vial_http_options *opts,
                  vial_http_response **out);

/* POST a JSON document (a NUL-terminated string) with
 * Content-Type: application/json and Accept: application/json. */
int vial_http_post_json(vial_req *rq, const char *url, const char *json,
                        const vial_http_options *opts, vial_http_response **out);

/* Starts vial_http_request as a child task (vial_spawn) and returns it, for
 * concurrent fetches with vial_gather/vial_join; the task's result is the
 * request's return value, and *out is set when it finishes. url, headers,
 * body and opts are copied, so they need not outlive this call; `out` must
 * stay valid until the task is joined. Async code only. NULL when out of
 * memory or not called from async code. */
vial_task *vial_http_spawn(vial_req *rq, const char *method, const char *url,
                           const char *const *headers, const void *body, size_t len,
                           const vial_http_options *opts, vial_http_response **out);

/* --- the response ------------------------------------------------------------- */

/* The HTTP status of the final response (after redirects that were followed). */
int vial_http_status(const vial_http_response *r);

/* The first header with this name (case-insensitive), value trimmed; NULL
 * when absent. Only the final response's headers are kept. */
const char *vial_http_header(const vial_http_response *r, const char *name);

/* Number of header fields, and the i-th (name as sent, trimmed value).
 * Returns 0, or -ERANGE when i is out of range. */
unsigned vial_http_header_count(const vial_http_response *r);
int vial_http_header_at(const vial_http_response *r, unsigned i, const char **name,
                        const char **value);

/* The body (decoded when opts.compressed), NUL-terminated for convenience
 * (it may contain NULs itself: use *len). Never NULL; "" when empty. */
const char *vial_http_body(const vial_http_response *r, size_t *len);

/* The URL of the final response (differs from the request's after redirects). */
const char *vial_http_url(const vial_http_response *r);

/* Wall time of the transfer in milliseconds (from libcurl). */
double vial_http_elapsed_ms(const vial_http_response *r);

/* --- errors ------------------------------------------------------------------- */

/* The message of this request's most recent failed vial_http_* call, or NULL
 * if none failed. Read it right after the failing call returns: no other
 * task of the request runs in between, so in a gather each task sees its
 * own message. Lives in the request's memory. */
const char *vial_http_error(vial_req *rq);

/* A short static description of an error code returned by this API
 * ("connection refused", "host name not resolved", ...). */
const char *vial_http_strerror(int err);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
