/* Outbound HTTP on libcurl's multi socket API, driven by vial's loop.
 *
 * Shape: one CURLM per loop thread (a per-loop local created on first use
 * and cleaned up by vial_drv_local_set). A request's coroutine configures an
 * easy handle, adds it to its thread's multi and parks; curl tells us which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION -> vial_io) and when to call it
 * back (CURLMOPT_TIMERFUNCTION -> a vial_drv_timer); the loop calls
 * curl_multi_socket_action on readiness, and finished transfers, read with
 * curl_multi_info_read, wake their coroutine. Transfers of every request on
 * the thread share the multi's connection cache and DNS cache.
 *
 * Edge-triggered registration. vial registers every fd once, edge-triggered,
 * for read and write. curl assumes level-triggered readiness: it may read
 * only part of what is pending, or change its interest (write -> read) after
 * the edge it now wants was already reported. Either would stall a transfer
 * until curl's own timeout. So after each action on a socket, and whenever
 * curl changes what it waits for, we ask the kernel (a zero-timeout poll) if
 * the socket is ready for what curl wants now, and if so run the action
 * again on the next loop iteration ("kick"). Kicks are immediate for the
 * first KICK_FAST in a row, then spaced by KICK_BACKOFF_NS, so a transfer
 * curl chooses not to serve (rate limit, pause) cannot spin the loop, and
 * none can stall either. Cost: one poll(2) per socket event, nothing next to
 * a network round trip.
 *
 * Lifetimes. Socket records are freed only after the current batch of
 * epoll events (vial_drv_defer), since an event for a removed fd may still
 * be queued. The transfer state lives on the awaiting coroutine's stack; the
 * coroutine never returns while its handle is in the multi (cancellation
 * removes it first), so curl never calls back into a dead frame. */
#include "runtime/ascii.h"
#include "vial/http_client.h"
#include "runtime/driver.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_BODY (16u * 1024 * 1024)
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define MAX_RESPONSE_HEADERS 256
#define IDLE_EASY_MAX 16
#define KICK_FAST 64
#define KICK_BACKOFF_NS (5ull * 1000000ull)
#define ERROR_KEY "vial.http.error"

typedef struct http_loop http_loop;

typedef struct http_sock {
    vial_io io; /* first: the loop hands us &io */
    http_loop *hl;
    int what;            /* CURL_POLL_IN / _OUT / _INOUT: what curl waits for */
    int dead;            /* curl said REMOVE; freed after the batch */
    int kick_queued;     /* on hl's kick list */
    int kick_flags;      /* CURL_CSELECT_* found ready by the last check */
    unsigned kicks;      /* kicks since the last real readiness event */
    struct http_sock *next;      /* hl->socks or hl->dead */
    struct http_sock *next_kick; /* hl->kicks */
} http_sock;

struct http_loop {
    vial_loop *loop;
    CURLM *multi;
    vial_drv_timer curl_timer; /* what CURLMOPT_TIMERFUNCTION asked for */
    vial_drv_timer kick_timer; /* re-runs sockets still ready (see above) */
    vial_msg reap_msg;     /* frees hl->dead after the batch */
    int reap_queued;
    int exiting;
    http_sock *socks, *dead, *kicks;
    CURL *idle[IDLE_EASY_MAX]; /* easy handles kept for reuse (reset) */
    unsigned nidle;
};

typedef struct hdr {
    const char *name, *value;
} hdr;

struct vial_http_response {
    vial_req *rq;
    int status;
    char *body; /* malloc'd; freed when the request ends */
    size_t len, cap, max;
    int too_big;
    hdr *hdrs;
    unsigned nhdrs, hdrs_cap;
    const char *url;
    double elapsed_ms;
};

/* One transfer in progress; on the awaiting coroutine's (or sync view's)
 * stack. */
typedef struct xfer {
    CURL *easy;
    vial_req *rq;
    vial_http_response *resp;
    struct curl_slist *hdrs;
    vial_coro *waiter;
    int done;
    CURLcode code;
    char errbuf[CURL_ERROR_SIZE];
} xfer;

/* --- process-wide setup ----------------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_err;          /* nonzero when libcurl could not be initialised */
static int loop_key = -1;       /* per-loop slot for http_loop */
static pthread_key_t sync_key;  /* per-worker-thread easy handle for sync views */

static void sync_easy_free(void *p)
{
    curl_easy_cleanup(p);
}

static void global_init(void)
{
    /* curl_global_init is not reentrant; pthread_once makes the first user
     * (whichever thread) do it exactly once. It is never undone: other
     * parts of the process may use libcurl too. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        global_err = -EIO;
        return;
    }
    loop_key = vial_drv_key();
    if (loop_key < 0 || pthread_key_create(&sync_key, sync_easy_free) != 0)
        global_err = -ENOMEM;
}

/* --- sockets: curl <-> vial_io ------------------------------------------------------ */

static void act(http_loop *hl, http_sock *s, int flags);

static void kick_fire(vial_drv_timer *t)
{
    http_loop *hl = vial_container_of(t, http_loop, kick_timer);
    http_sock *list = hl->kicks;
    hl->kicks = NULL;
    while (list) {
        http_sock *s = list;
        list = s->next_kick;
        s->kick_queued = 0;
        s->next_kick = NULL;
        if (!s->dead) /* dead ones were unlinked, but be safe */
            act(hl, s, s->kick_flags);
    }
}

/* Is s ready now for what curl waits for? Then queue it for a kick. */
static void sock_check(http_loop *hl, http_sock *s)
{
    if (s->dead || s->kick_queued || !s->what)
        return;
    unsigned want = 0;
    if (s->what & CURL_POLL_IN)
        want |= VIAL_IO_READ;
    if (s->what & CURL_POLL_OUT)
        want |= VIAL_IO_WRITE;
    unsigned ready = vial_drv_poll(s->io.fd, want);
    int flags = 0;
    if (ready & VIAL_IO_READ)
        flags |= (s->what & CURL_POLL_IN) ? CURL_CSELECT_IN : 0;
    if (ready & VIAL_IO_WRITE)
        flags |= (s->what & CURL_POLL_OUT) ? CURL_CSELECT_OUT : 0;
    if (ready & VIAL_IO_ERR)
        flags |= CURL_CSELECT_ERR;
    if (!flags)
        return;
    s->kick_flags = flags;
    s->kick_queued = 1;
    s->next_kick = hl->kicks;
    hl->kicks = s;
    uint64_t after = s->kicks < KICK_FAST ? 0 : KICK_BACKOFF_NS;
    s->kicks++;
    vial_drv_kick(&hl->kick_timer, after);
}

/* Every finished transfer: out of the multi, its coroutine woken. */
static void drain_done(http_loop *hl)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(hl->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode code = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        /* m is invalid after this */
        curl_multi_remove_handle(hl->multi, e);
        xfer *x = (xfer *)priv;
        if (x) {
            x->code = code;
            x->done = 1;
            vial_drv_wake(x->waiter, 0);
        }
    }
}

static void act(http_loop *hl, http_sock *s, int flags)
{
    int running;
    curl_multi_socket_action(hl->multi, s->io.fd, flags, &running);
    drain_done(hl);
    sock_check(hl, s); /* s is not freed before the batch ends */
}

static void on_io(vial_loop *l, vial_io *io, unsigned ev)
{
    http_sock *s = (http_sock *)io;
    if (s->dead)
        return;
    s->kicks = 0;
    /* Only the directions curl waits for: a write edge while curl waits to
     * read says nothing to it. Hang-ups and errors count for both, so curl
     * finds out on its next read or write. */
    int flags = 0;
    if ((s->what & CURL_POLL_IN) && (ev & (VIAL_IO_READ | VIAL_IO_HUP | VIAL_IO_ERR)))
        flags |= CURL_CSELECT_IN;
    if ((s->what & CURL_POLL_OUT) && (ev & (VIAL_IO_WRITE | VIAL_IO_HUP | VIAL_IO_ERR)))
        flags |= CURL_CSELECT_OUT;
    if (!flags)
        return;
    if (ev & VIAL_IO_ERR)
        flags |= CURL_CSELECT_ERR;
    act(s->hl, s, flags);
}

static void reap(vial_loop *l, vial_msg *m)
{
    http_loop *hl = vial_container_of(m, http_loop, reap_msg);
    hl->reap_queued = 0;
    while (hl->dead) {
        http_sock *s = hl->dead;
        hl->dead = s->next;
        free(s);
    }
}

static void unlink_sock(http_sock **list, http_sock *s, int kick)
{
    for (http_sock **p = list; *p; p = kick ? &(*p)->next_kick : &(*p)->next) {
        if (*p == s) {
            *p = kick ? s->next_kick : s->next;
            return;
        }
    }
}

static void sock_retire(http_loop *hl, http_sock *s)
{
    vial_drv_io_del(hl->loop, &s->io); /* may fail if curl closed it already: fine */
    unlink_sock(&hl->socks, s, 0);
    if (s->kick_queued) {
        unlink_sock(&hl->kicks, s, 1);
        s->kick_queued = 0;
    }
    if (hl->exiting) { /* no batch in progress, and no loop iteration to come */
        free(s);
        return;
    }
    s->dead = 1;
    s->next = hl->dead;
    hl->dead = s;
    if (!hl->reap_queued) {
        hl->reap_queued = 1;
        vial_drv_defer(hl->loop, &hl->reap_msg);
    }
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    http_loop *hl = userp;
    http_sock *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_retire(hl, s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->io.fd = fd;
        s->io.cb = on_io;
        s->hl = hl;
        s->what = what;
        int r = vial_drv_io_add(hl->loop, &s->io);
        if (r == -EEXIST) { /* a registration curl never removed: take it over */
            vial_drv_io_del(hl->loop, &s->io);
            r = vial_drv_io_add(hl->loop, &s->io);
        }
        if (r < 0) {
            free(s);
            return -1;
        }
        s->next = hl->socks;
        hl->socks = s;
        curl_multi_assign(hl->multi, fd, s);
        /* A fresh edge-triggered registration reports the current state. */
        return 0;
    }
    if (what != s->what) {
        /* curl waits for something else now; its readiness may have been
         * reported while curl did not want it (edge-triggered): ask again. */
        s->what = what;
        sock_check(hl, s);
    }
    return 0;
}

static void curl_timer_fire(vial_drv_timer *t)
{
    http_loop *hl = vial_container_of(t, http_loop, curl_timer);
    int running;
    curl_multi_socket_action(hl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(hl);
}

static int on_timer(CURLM *m, long ms, void *userp)
{
    http_loop *hl = userp;
    /* Never call curl from here (it is not reentrant): a 0 ms request fires
     * on the next loop iteration. */
    if (ms < 0)
        vial_drv_timer_stop(&hl->curl_timer);
    else
        vial_drv_timer_arm(&hl->curl_timer, (uint64_t)ms * 1000000ull);
    return 0;
}

static void loop_exit(void *arg)
{
    http_loop *hl = arg;
    vial_loop *l = hl->loop;
    hl->exiting = 1;
    while (hl->nidle)
        curl_easy_cleanup(hl->idle[--hl->nidle]);
    /* Closes the cached connections; their REMOVE callbacks free at once. */
    curl_multi_cleanup(hl->multi);
    while (hl->socks) {
        http_sock *s = hl->socks;
        hl->socks = s->next;
        vial_drv_io_del(l, &s->io);
        free(s);
    }
    hl->reap_queued = 0;
    reap(l, &hl->reap_msg);
    vial_drv_timer_stop(&hl->curl_timer);
    vial_drv_timer_stop(&hl->kick_timer);
    free(hl);
}

static http_loop *loop_state(vial_loop *loop)
{
    http_loop *hl = vial_drv_local_get(loop, loop_key);
    if (hl)
        return hl;
    hl = calloc(1, sizeof *hl);
    if (!hl)
        return NULL;
    hl->loop = loop;
    hl->multi = curl_multi_init();
    if (!hl->multi) {
        free(hl);
        return NULL;
    }
    curl_multi_setopt(hl->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(hl->multi, CURLMOPT_SOCKETDATA, hl);
    curl_multi_setopt(hl->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(hl->multi, CURLMOPT_TIMERDATA, hl);
    vial_drv_timer_init(&hl->curl_timer, loop, curl_timer_fire);
    vial_drv_timer_init(&hl->kick_timer, loop, kick_fire);
    hl->reap_msg.cb = reap;
    if (vial_drv_local_set(loop, loop_key, hl, loop_exit) < 0) {
        curl_multi_cleanup(hl->multi);
        free(hl);
        return NULL;
    }
    return hl;
}

/* --- easy handles ---------------------------------------------------------------- */

static CURL *easy_get(http_loop *hl)
{
    if (hl->nidle)
        return hl->idle[--hl->nidle];
    return curl_easy_init();
}

static void easy_put(http_loop *hl, CURL *e)
{
    /* reset forgets our options (pointers into dead frames included) but
     * keeps nothing that matters: connections belong to the multi. */
    if (hl->nidle < IDLE_EASY_MAX && !hl->exiting) {
        curl_easy_reset(e);
        hl->idle[hl->nidle++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

/* Sync views: one easy handle per worker thread, kept so its connection
 * cache gives keep-alive between the thread's requests; freed at thread
 * exit by the key's destructor. */
static CURL *sync_easy(void)
{
    CURL *e = pthread_getspecific(sync_key);
    if (e)
        return e;
    e = curl_easy_init();
    if (e && pthread_setspecific(sync_key, e) != 0) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

/* --- response building (curl callbacks) ------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    vial_http_response *r = ((xfer *)ud)->resp;
    size_t len = size * n;
    if (len > r->max - r->len) {
        r->too_big = 1;
        return 0; /* a short count aborts the transfer (CURLE_WRITE_ERROR) */
    }
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len + 1)
            cap *= 2;
        if (cap > r->max + 1)
            cap = r->max + 1;
        char *b = realloc(r->body, cap);
        if (!b)
            return 0;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = 0;
    return len;
}

static const char *trimmed(vial_req *rq, const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    return vial_strndup(rq, s, n);
}

/* curl calls this once per header line, status lines of every response
 * included (1xx, redirects): a status line starts the set over, so only the
 * final response's headers remain. Allocations come from the request's
 * arena: this runs on the loop thread (async) or the worker that owns the
 * request (sync), never concurrently with the request's other code. */
static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    vial_http_response *r = x->resp;
    vial_req *rq = x->rq;
    size_t len = size * n;
    if (len >= 5 && !memcmp(line, "HTTP/", 5)) {
        r->nhdrs = 0;
        r->len = 0; /* a body curl passed on from an earlier response */
        return len;
    }
    size_t end = len;
    while (end && (line[end - 1] == '\r' || line[end - 1] == '\n'))
        end--;
    if (!end)
        return len;
    if ((line[0] == ' ' || line[0] == '\t') && r->nhdrs) {
        /* obsolete line folding: a continuation of the previous value */
        hdr *h = &r->hdrs[r->nhdrs - 1];
        const char *more = trimmed(rq, line, end);
        char *joined = more ? vial_sprintf(rq, "%s %s", h->value, more) : NULL;
        if (joined)
            h->value = joined;
        return len;
    }
    const char *colon = memchr(line, ':', end);
    if (!colon || colon == line || r->nhdrs >= MAX_RESPONSE_HEADERS)
        return len; /* not a field, or past the bound we keep: ignore */
    if (r->nhdrs == r->hdrs_cap) {
        unsigned cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
        hdr *h = vial_alloc(rq, cap * sizeof *h);
        if (!h)
            return 0;
        if (r->nhdrs)
            memcpy(h, r->hdrs, r->nhdrs * sizeof *h);
        r->hdrs = h;
        r->hdrs_cap = cap;
    }
    const char *name = vial_strndup(rq, line, (size_t)(colon - line));
    const char *value = trimmed(rq, colon + 1, end - (size_t)(colon + 1 - line));
    if (!name || !value)
        return 0;
    r->hdrs[r->nhdrs].name = name;
    r->hdrs[r->nhdrs].value = value;
    r->nhdrs++;
    return len;
}

static void response_free(void *arg)
{
    vial_http_response *r = arg;
    free(r->body);
    r->body = NULL;
}

/* --- errors ------------------------------------------------------------------------ */

static int set_error(vial_req *rq, int err, const char *method, const char *url, const char *detail)
{
    const char *msg = vial_sprintf(rq, "%s %s: %s%s%s%s", method ? method : "?", url ? url : "?",
                                   vial_http_strerror(err), detail && *detail ? " (" : "",
                                   detail ? detail : "", detail && *detail ? ")" : "");
    if (msg)
        vial_g_set(rq, ERROR_KEY, (void *)msg);
    return err;
}

static int map_error(CURLcode c, long oserr, int too_big)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return -EINVAL;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -ENXIO;
    case CURLE_COULDNT_CONNECT:
        return oserr > 0 ? -(int)oserr : -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_WRITE_ERROR:
        return too_big ? -EFBIG : -ENOMEM; /* our write callback only fails for these */
    case CURLE_FILESIZE_EXCEEDED:
        return -EFBIG;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_USE_SSL_FAILED:
    case CURLE_RANGE_ERROR:
        return -EPROTO;
    case CURLE_ABORTED_BY_CALLBACK:
        return -ECANCELED;
    default:
        return -EIO;
    }
}

const char *vial_http_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case -ECONNREFUSED:
        return "connection refused";
    case -ENXIO:
        return "host name not resolved";
    case -ETIMEDOUT:
        return "timed out";
    case -ECANCELED:
        return "cancelled";
    case -ECONNRESET:
        return "connection closed by the server";
    case -EPROTO:
        return "protocol or TLS error";
    case -EFBIG:
        return "response body too large";
    case -EINVAL:
        return "invalid request or URL";
    case -EPERM:
        return "not callable here (needs an async coroutine or a sync view)";
    case -ENOMEM:
        return "out of memory";
    case -EHOSTUNREACH:
        return "host unreachable";
    case -ENETUNREACH:
        return "network unreachable";
    case -EIO:
        return "transfer failed";
    default:
        return "transfer failed";
    }
}

const char *vial_http_error(vial_req *rq)
{
    return rq ? vial_g_get(rq, ERROR_KEY) : NULL;
}

/* --- the request ------------------------------------------------------------------- */

static int has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (const char *const *h = headers; h && *h; h++)
        if (!vial_ascii_ncasecmp(*h, name, n) && (*h)[n] == ':')
            return 1;
    return 0;
}

static int add_header(xfer *x, const char *line)
{
    struct curl_slist *l = curl_slist_append(x->hdrs, line);
    if (!l)
        return -ENOMEM;
    x->hdrs = l;
    return 0;
}

static int setup(xfer *x, const char *method, const char *url, const char *const *headers,
                 const void *body, size_t len, const vial_http_options *o)
{
    CURL *e = x->easy;
    int bad = 0;
#define SET(opt, val) (bad |= curl_easy_setopt(e, opt, val) != CURLE_OK)
    SET(CURLOPT_URL, url);
    /* A URL that comes from user input must not reach file://, ftp://, ... */
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM-based DNS timeouts */
    SET(CURLOPT_PRIVATE, (void *)x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)x);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)x);
    SET(CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms : 0L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms > 0 ? o->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS);
    if (o->max_redirects > 0) {
        SET(CURLOPT_FOLLOWLOCATION, 1L);
        SET(CURLOPT_MAXREDIRS, (long)o->max_redirects);
    }
    if (o->compressed)
        SET(CURLOPT_ACCEPT_ENCODING, ""); /* every encoding this libcurl decodes */
    SET(CURLOPT_USERAGENT, o->user_agent ? o->user_agent : "vial/" VIAL_VERSION);

    if (!strcmp(method, "HEAD")) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (!strcmp(method, "GET") && !body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(method, "POST")) {
        SET(CURLOPT_POST, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
    if (body || !strcmp(method, "POST")) {
        /* POSTFIELDS does not copy: the caller's buffer outlives the
         * transfer because this call returns only once it is over. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
        SET(CURLOPT_POSTFIELDS, body ? body : "");
    }
#undef SET
    if (bad)
        return -EINVAL;

    for (const char *const *h = headers; h && *h; h++)
        if (add_header(x, *h) < 0)
            return -ENOMEM;
    if ((body || !strcmp(method, "POST")) && !has_header(headers, "Content-Type")) {
        /* curl would say application/x-www-form-urlencoded, which is wrong
         * for anything but a form */
        const char *ct = o->content_type ? o->content_type : "application/octet-stream";
        char line[256];
        if ((size_t)snprintf(line, sizeof line, "Content-Type: %s", ct) >= sizeof line)
            return -EINVAL;
        if (add_header(x, line) < 0)
            return -ENOMEM;
    }
    /* No "Expect: 100-continue" round trip (and its 1 s wait on servers
     * that ignore it) unless the caller asks for it. */
    if (!has_header(headers, "Expect") && add_header(x, "Expect:") < 0)
        return -ENOMEM;
    if (x->hdrs && curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs) != CURLE_OK)
        return -EINVAL;
    return 0;
}

/* Adds the transfer to the thread's multi and parks until it is done, or
 * until the await is cancelled or times out: then the handle is removed,
 * which aborts the transfer and closes its connection. */
static int await_xfer(http_loop *hl, xfer *x)
{
    CURLMcode mc = curl_multi_add_handle(hl->multi, x->easy);
    if (mc != CURLM_OK)
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    while (!x->done) {
        int r = vial_drv_wait(0);
        if (r < 0 && !x->done) {
            curl_multi_remove_handle(hl->multi, x->easy);
            return r;
        }
    }
    return 0;
}

int vial_http_request(vial_req *rq, const char *method, const char *url,
                      const char *const *headers, const void *body, size_t len,
                      const vial_http_options *opts, vial_http_response **out)
{
    static const vial_http_options defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!rq)
        return -EINVAL;
    if (!method || !*method || !url)
        return set_error(rq, -EINVAL, method, url, "method and url are required");
    if (!opts)
        opts = &defaults;
    pthread_once(&global_once, global_init);
    if (global_err)
        return set_error(rq, global_err, method, url, "libcurl initialisation failed");

    http_loop *hl = NULL;
    if (!vial_req_is_sync(rq)) {
        vial_coro *self = vial_drv_self();
        if (!self)
            return set_error(rq, -EPERM, method, url, NULL);
        if (vial_drv_cancelled() == -ECANCELED)
            return set_error(rq, -ECANCELED, method, url, NULL);
        hl = loop_state(vial_drv_coro_loop(self));
        if (!hl)
            return set_error(rq, -ENOMEM, method, url, NULL);
    }

    vial_http_response *resp = vial_alloc(rq, sizeof *resp);
    if (!resp)
        return set_error(rq, -ENOMEM, method, url, NULL);
    memset(resp, 0, sizeof *resp);
    resp->rq = rq;
    resp->max = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
    if (vial_req_on_end(rq, response_free, resp) < 0)
        return set_error(rq, -ENOMEM, method, url, NULL);

    xfer x;
    memset(&x, 0, sizeof x);
    x.rq = rq;
    x.resp = resp;
    x.waiter = vial_drv_self();
    x.easy = hl ? easy_get(hl) : sync_easy();
    if (!x.easy)
        return set_error(rq, -ENOMEM, method, url, NULL);

    int rc = setup(&x, method, url, headers, body, len, opts);
    const char *detail = rc == -EINVAL ? "unsupported option or header" : NULL;
    if (rc == 0) {
        if (hl) {
            rc = await_xfer(hl, &x);
            if (rc == -ETIMEDOUT)
                detail = "request deadline or vial_timeout passed; transfer aborted";
            else if (rc == -ECANCELED)
                detail = "transfer aborted";
        } else {
            x.code = curl_easy_perform(x.easy);
            x.done = 1;
        }
    }
    if (rc == 0 && x.code != CURLE_OK) {
        long oserr = 0;
        curl_easy_getinfo(x.easy, CURLINFO_OS_ERRNO, &oserr);
        rc = map_error(x.code, oserr, resp->too_big);
        detail = x.errbuf[0] ? x.errbuf : curl_easy_strerror(x.code);
        if (rc == -EFBIG)
            detail = "response body larger than max_body";
    }
    if (rc == 0) {
        long status = 0;
        char *eff = NULL;
        double total = 0;
        curl_easy_getinfo(x.easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(x.easy, CURLINFO_EFFECTIVE_URL, &eff);
        curl_easy_getinfo(x.easy, CURLINFO_TOTAL_TIME, &total);
        resp->status = (int)status;
        resp->url = vial_strdup(rq, eff ? eff : url);
        resp->elapsed_ms = total * 1000.0;
    } else {
        /* detail may point into x.errbuf: format before the frame goes */
        set_error(rq, rc, method, url, detail);
    }
    curl_slist_free_all(x.hdrs);
    if (hl)
        easy_put(hl, x.easy);
    else
        curl_easy_reset(x.easy); /* drop pointers into this frame; keep connections */
    if (rc == 0)
        *out = resp;
    return rc;
}

int vial_http_get(vial_req *rq, const char *url, const vial_http_options *opts, vial_http_response **out)
{
    return vial_http_request(rq, "GET", url, NULL, NULL, 0, opts, out);
}

int vial_http_post_json(vial_req *rq, const char *url, const char *json, const vial_http_options *opts,
                        vial_http_response **out)
{
    static const char *const headers[] = {"Accept: application/json", NULL};
    vial_http_options o = opts ? *opts : (vial_http_options){0};
    o.content_type = "application/json";
    if (!json) {
        if (out)
            *out = NULL;
        return rq ? set_error(rq, -EINVAL, "POST", url, "json body is NULL") : -EINVAL;
    }
    return vial_http_request(rq, "POST", url, headers, json, strlen(json), &o, out);
}

/* --- concurrent fetches as tasks ----------------------------------------------------- */

struct spawn_args {
    const char *method, *url;
    const char **headers;
    const void *body;
    size_t len;
    vial_http_options opts;
    vial_http_response **out;
};

static int spawn_main(vial_req *rq, void *arg)
{
    struct spawn_args *a = arg;
    return vial_http_request(rq, a->method, a->url, a->headers, a->body, a->len, &a->opts, a->out);
}

vial_task *vial_http_spawn(vial_req *rq, const char *method, const char *url,
                           const char *const *headers, const void *body, size_t len,
                           const vial_http_options *opts, vial_http_response **out)
{
    if (!rq || !method || !url || !out)
        return NULL;
    *out = NULL;
    struct spawn_args *a = vial_alloc(rq, sizeof *a);
    if (!a)
        return NULL;
    memset(a, 0, sizeof *a);
    a->method = vial_strdup(rq, method);
    a->url = vial_strdup(rq, url);
    if (!a->method || !a->url)
        return NULL;
    size_t n = 0;
    while (headers && headers[n])
        n++;
    if (n) {
        a->headers = vial_alloc(rq, (n + 1) * sizeof *a->headers);
        if (!a->headers)
            return NULL;
        for (size_t i = 0; i < n; i++)
            if (!(a->headers[i] = vial_strdup(rq, headers[i])))
                return NULL;
        a->headers[n] = NULL;
    }
    if (body) {
        void *copy = vial_alloc(rq, len ? len : 1);
        if (!copy)
            return NULL;
        memcpy(copy, body, len);
        a->body = copy;
        a->len = len;
    }
    if (opts) {
        a->opts = *opts;
        if (opts->content_type && !(a->opts.content_type = vial_strdup(rq, opts->content_type)))
            return NULL;
        if (opts->user_agent && !(a->opts.user_agent = vial_strdup(rq, opts->user_agent)))
            return NULL;
    }
    a->out = out;
    return vial_spawn(rq, spawn_main, a);
}

/* --- response accessors -------------------------------------------------------------- */

int vial_http_status(const vial_http_response *r)
{
    return r ? r->status : 0;
}

const char *vial_http_header(const vial_http_response *r, const char *name)
{
    if (!r || !name)
        return NULL;
    for (unsigned i = 0; i < r->nhdrs; i++)
        if (!vial_ascii_casecmp(r->hdrs[i].name, name))
            return r->hdrs[i].value;
    return NULL;
}

unsigned vial_http_header_count(const vial_http_response *r)
{
    return r ? r->nhdrs : 0;
}

int vial_http_header_at(const vial_http_response *r, unsigned i, const char **name, const char **value)
{
    if (!r || i >= r->nhdrs)
        return -ERANGE;
    if (name)
        *name = r->hdrs[i].name;
    if (value)
        *value = r->hdrs[i].value;
    return 0;
}

const char *vial_http_body(const vial_http_response *r, size_t *len)
{
    if (len)
        *len = r && r->body ? r->len : 0;
    return r && r->body ? r->body : "";
}

const char *vial_http_url(const vial_http_response *r)
{
    return r ? r->url : NULL;
}

double vial_http_elapsed_ms(const vial_http_response *r)
{
    return r ? r->elapsed_ms : 0;
}
