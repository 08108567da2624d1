/* vial/redis.h — an awaitable Redis client for async views (hiredis).
 *
 * Built when pkg-config finds hiredis (then VIAL_HAVE_REDIS is defined).
 *
 *   static vial_redis *redis;      (vial_redis_open at startup, shared by all threads)
 *
 *   static int counter(vial_req *rq, vial_res *rs)
 *   {
 *       vial_redis_reply *n;
 *       int rc = vial_redis_cmd(rq, redis, &n, "INCR %s", "hits");
 *       if (rc != 0)
 *           return vial_abort(rs, 503);
 *       return vial_text(rs, 200, "%lld", (long long)vial_redis_reply_int(n));
 *   }
 *
 * Model:
 *  - One vial_redis handle per server (address + options) for the whole
 *    process. Each loop thread keeps its own connections to it, opened
 *    lazily on first use: one shared, multiplexed connection that carries
 *    ordinary commands, plus a small pool of exclusive connections for
 *    blocking commands (BLPOP, XREAD BLOCK, WAIT...) and for
 *    vial_redis_acquire (transactions, WATCH, SELECT). Every subscription
 *    has a connection of its own.
 *  - A command awaits its reply in the calling coroutine; other coroutines
 *    run meanwhile. Commands issued by many tasks at once (vial_gather) are
 *    written to the shared connection back to back, one write per loop
 *    iteration: a gather of N commands costs one round trip.
 *  - Every await honours the coroutine's deadline (vial_set_deadline,
 *    vial_timeout_begin) and cancellation: it returns -ETIMEDOUT or
 *    -ECANCELED, and the reply that comes later is discarded. A blocking
 *    command that is abandoned this way closes its connection (so a BLPOP
 *    given up on cannot pop an element nobody will see).
 *  - A lost connection fails the commands in flight on it with a negative
 *    errno (-ECONNRESET, -ECONNREFUSED, -ETIMEDOUT for the connect) and the
 *    next command connects again. Nothing is retried behind your back: a
 *    command that may or may not have run is reported as failed.
 *  - rq may be NULL in a coroutine that is not serving a request (a
 *    background task of your own); then nothing is freed at request end and
 *    the caller frees replies, releases connections and closes
 *    subscriptions itself.
 *
 * All functions that await are for async code only: from a sync view (or
 * outside any coroutine) they return -EPERM. They must be called on the
 * loop thread that runs the coroutine. Return values: 0 or a negative errno,
 * or VIAL_REDIS_EREPLY when the server answered with an error reply.
 */
#ifndef VIAL_REDIS_H
#define VIAL_REDIS_H

#include <vial.h>

#include <errno.h> /* the -E... codes the functions return */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

typedef struct vial_redis vial_redis;
typedef struct vial_redis_reply vial_redis_reply;
typedef struct vial_redis_conn vial_redis_conn;
typedef struct vial_redis_sub vial_redis_sub;

/* Returned by the command functions when Redis answered with an error reply
 * ("ERR ...", "WRONGTYPE ..."); *out then holds that reply, whose message
 * vial_redis_reply_error gives. Outside the errno range on purpose. */
#define VIAL_REDIS_EREPLY (-102001)

typedef struct vial_redis_options {
    const char *password;   /* AUTH on every new connection; NULL: none */
    const char *username;   /* ACL user (Redis 6+), with password; NULL: default */
    int db;                 /* SELECT on every new connection; 0: leave at 0 */
    int connect_timeout_ms; /* 0: 2000 */
    int max_exclusive;      /* exclusive connections per loop thread (blocking
                               commands, vial_redis_acquire); beyond, callers
                               wait for one to be released. 0: 16 */
    size_t sub_queue_max;   /* messages a subscription buffers before it stops
                               reading its socket (Redis then buffers, up to its
                               client-output-buffer-limit). 0: 1024 */
} vial_redis_options;

/* Opens a handle for a server at address: "host:port" ("[v6addr]:port" for
 * an IPv6 address), "host" (port 6379), or "unix:/path" (or "/path") for a
 * Unix socket. host is an address or a name, resolved once, here, so that no
 * connect ever blocks a loop on DNS. address NULL: "127.0.0.1:6379"; opts
 * NULL: defaults. Connects nothing yet. Thread-safe to use from
 * every loop thread. Ignores SIGPIPE if it is at its default action (hiredis
 * writes with write(2); a server that goes away must not kill the process).
 * Returns NULL with errno set (EINVAL for a malformed address or port,
 * ENOMEM, EHOSTUNREACH when the name does not resolve). */
vial_redis *vial_redis_open(const char *address, const vial_redis_options *opts);

/* The message of this request's most recent failed vial_redis_* call (an
 * error reply's text, e.g. "WRONGTYPE ...", or the connection's), or NULL if
 * none failed. Read it right after the failing call returns: no other task
 * of the request runs in between. Lives in the request's memory. The code
 * the call returned is named by vial_strerror. */
const char *vial_redis_error(vial_req *rq);

/* Closes the handle. Connections of the calling loop thread are closed now;
 * those of other loop threads when those loops end. Call it after the
 * server stopped (vial_run returned) or the test client is done with it. */
void vial_redis_close(vial_redis *r);

/* --- commands -----------------------------------------------------------------
 * fmt is hiredis's format: words separated by spaces, %s for a C string, %b
 * for binary data (pointer, size_t length), %d/%lld/%f... for numbers; each
 * % makes exactly one argument whatever it contains:
 *     vial_redis_cmd(rq, r, &rep, "SET %s %b", key, buf, (size_t)len);
 * On 0 or VIAL_REDIS_EREPLY *out is the reply (out may be NULL when only
 * success matters); it lives until the request ends (or rq is NULL: until
 * vial_redis_reply_free). Other errors leave *out NULL:
 *   -EPERM        not in async code;
 *   -EINVAL       a malformed format, or a command that changes connection
 *                 state (MULTI, EXEC, WATCH, SELECT, AUTH, CLIENT TRACKING...:
 *                 use vial_redis_acquire), enters subscriber mode
 *                 (SUBSCRIBE, MONITOR: use vial_redis_subscribe), or breaks
 *                 the pairing of replies with commands on any connection
 *                 (HELLO: hiredis 0.14 speaks RESP2 only; CLIENT REPLY);
 *   -ETIMEDOUT, -ECANCELED   the await's deadline passed / it was cancelled;
 *   -ECONNREFUSED, -ECONNRESET, -EPIPE, ...   the connection failed;
 *   -ENOMEM.
 * Blocking commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK, WAIT,
 * ...) are recognised and run on an exclusive connection so they never hold
 * up the shared one. */
int vial_redis_cmd(vial_req *rq, vial_redis *r, vial_redis_reply **out, const char *fmt, ...);
int vial_redis_cmdv(vial_req *rq, vial_redis *r, vial_redis_reply **out, const char *fmt, va_list ap);

/* The same with arguments as an array: argv[i] is argvlen[i] bytes (binary
 * safe), or a C string when argvlen is NULL. */
int vial_redis_cmdargv(vial_req *rq, vial_redis *r, vial_redis_reply **out, int argc,
                       const char *const *argv, const size_t *argvlen);

/* --- replies ------------------------------------------------------------------ */

typedef enum vial_redis_type {
    VIAL_REDIS_NIL,     /* a missing value (GET of an absent key) */
    VIAL_REDIS_STRING,  /* a bulk string, binary safe */
    VIAL_REDIS_STATUS,  /* a status reply ("OK", "PONG", "QUEUED") */
    VIAL_REDIS_INTEGER,
    VIAL_REDIS_ARRAY,
    VIAL_REDIS_ERROR,   /* an error reply; also inside arrays (EXEC) */
} vial_redis_type;

vial_redis_type vial_redis_reply_type(const vial_redis_reply *rep);

/* The integer of an INTEGER reply; 0 for other types. */
int64_t vial_redis_reply_int(const vial_redis_reply *rep);

/* The bytes of a STRING, STATUS or ERROR reply, NUL-terminated (a STRING may
 * hold NULs too: use *len); NULL (and *len 0) for other types. len may be
 * NULL. */
const char *vial_redis_reply_str(const vial_redis_reply *rep, size_t *len);

/* Elements of an ARRAY reply (0 for other types), and the i-th (NULL when
 * out of range). Elements belong to the top-level reply. */
size_t vial_redis_reply_len(const vial_redis_reply *rep);
const vial_redis_reply *vial_redis_reply_at(const vial_redis_reply *rep, size_t i);

/* The message of an ERROR reply ("ERR wrong number of arguments..."),
 * NULL for other types. */
const char *vial_redis_reply_error(const vial_redis_reply *rep);

/* Frees a top-level reply now instead of at request end (for a long loop of
 * commands in one request). NULL is ignored. */
void vial_redis_reply_free(vial_redis_reply *rep);

/* --- exclusive connections -----------------------------------------------------
 * For what needs one connection across several awaits: MULTI/EXEC,
 * WATCH-based optimistic locking, SELECT. The connection is yours until
 * vial_redis_release (at the latest at request end); a released connection
 * whose state changed (SELECT, an open MULTI or WATCH, an abandoned command)
 * is closed rather than reused. If it is lost, commands on it fail with the
 * connection's error: release it and acquire another.
 *
 *   vial_redis_conn *c;
 *   if (vial_redis_acquire(rq, r, &c) == 0) {
 *       vial_redis_conn_cmd(rq, c, NULL, "MULTI");
 *       vial_redis_conn_cmd(rq, c, NULL, "INCR %s", "a");
 *       vial_redis_conn_cmd(rq, c, NULL, "INCR %s", "b");
 *       rc = vial_redis_conn_cmd(rq, c, &rep, "EXEC");   (an array of 2)
 *       vial_redis_release(c);
 *   }
 *
 * acquire awaits a free connection when max_exclusive are in use: 0,
 * -ETIMEDOUT, -ECANCELED, -EPERM, -ENOMEM (connecting happens at the first
 * command). The connection belongs to the loop thread that acquired it. */
int vial_redis_acquire(vial_req *rq, vial_redis *r, vial_redis_conn **out);
int vial_redis_conn_cmd(vial_req *rq, vial_redis_conn *c, vial_redis_reply **out, const char *fmt, ...);
int vial_redis_conn_cmdv(vial_req *rq, vial_redis_conn *c, vial_redis_reply **out, const char *fmt,
                         va_list ap);
int vial_redis_conn_cmdargv(vial_req *rq, vial_redis_conn *c, vial_redis_reply **out, int argc,
                            const char *const *argv, const size_t *argvlen);
/* Gives the connection back (NULL is ignored). Not needed at request end. */
void vial_redis_release(vial_redis_conn *c);

/* --- pub/sub --------------------------------------------------------------------
 * A subscription is an awaitable stream of messages on a connection of its
 * own. vial_redis_subscribe returns once Redis confirmed every channel, so a
 * message published after it returns is delivered. Messages arrive in the
 * order Redis sent them. */

typedef struct vial_redis_msg {
    const char *channel;  /* the channel the message was published to */
    size_t channel_len;
    const char *pattern;  /* the matching pattern (psubscribe), else NULL */
    size_t pattern_len;
    const char *data;     /* the payload, binary safe, NUL-terminated */
    size_t len;
} vial_redis_msg;

/* Subscribes to the channels (a NULL-terminated list of C strings). *out is
 * closed at request end (rq NULL: by vial_redis_sub_close). Returns 0,
 * -EINVAL (no channel), -EPERM, -ETIMEDOUT, -ECANCELED, -EACCES (AUTH
 * failed, or an ACL forbids the channel), a connection error. A
 * subscription belongs to the loop thread that made it; one coroutine at a
 * time awaits its messages. */
int vial_redis_subscribe(vial_req *rq, vial_redis *r, vial_redis_sub **out, const char *channel, ...)
    __attribute__((sentinel));
/* The same with glob-style patterns (PSUBSCRIBE "news.*"). */
int vial_redis_psubscribe(vial_req *rq, vial_redis *r, vial_redis_sub **out, const char *pattern, ...)
    __attribute__((sentinel));

/* Awaits the next message. 0 with *msg filled: its strings stay valid until
 * the next call on sub or its close. -ETIMEDOUT / -ECANCELED (the
 * subscription stays usable), -EPERM, or once the connection is lost a
 * connection error, returned from then on (the messages received before the
 * loss are delivered first): close the subscription and subscribe again. */
int vial_redis_next_message(vial_req *rq, vial_redis_sub *sub, vial_redis_msg *msg);

/* Unsubscribes and closes the connection (NULL is ignored). */
void vial_redis_sub_close(vial_redis_sub *sub);

/* --- publishing from anywhere on a loop ---------------------------------------------
 * PUBLISH channel data[0..len), for cross-instance broadcast (websocket and
 * SSE fan-out), usable outside requests. From a coroutine (a view, a task,
 * a background coroutine): awaits the reply and returns the number of
 * subscribers that received it (>= 0) or a negative error as above. On a
 * loop thread outside any coroutine (a timer, a mailbox message): queues the
 * PUBLISH on the thread's shared connection without waiting and returns 0
 * (or a negative errno when it cannot be queued). Elsewhere: -EPERM. */
int vial_redis_publish(vial_redis *r, const char *channel, const void *data, size_t len);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
