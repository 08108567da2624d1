/* The access log: one line per request, combined or JSON.
 *
 * A loop thread never writes to the file: it formats the line into a buffer
 * of its own (a mutex per buffer that only the writer thread ever contends,
 * a few times a second) and a writer thread swaps each buffer for an empty
 * one and write(2)s it out every 100 ms, or sooner when one is half full. A
 * slow disk then costs lines (a buffer that is full drops them, counted and
 * reported), never a stalled loop. SIGUSR1 sets a flag the writer sees
 * before its next write: it reopens the path, so logrotate's rename then
 * kill -USR1 loses nothing (lines buffered meanwhile go to the new file). */
#include "app/app.h"
#include "app/ops.h"
#include "app/request_state.h"
#include "runtime/log.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUF_CAP (256 * 1024)
#define FLUSH_MS 100
#define LINE_MAX_BYTES 4096

typedef struct alog_buf {
    pthread_mutex_t mu;
    char *data;
    size_t len;
    uint64_t dropped;
    struct alog_buf *next;
} alog_buf;

static struct {
    pthread_mutex_t mu; /* the list of buffers, the writer's sleep */
    pthread_cond_t cond;
    alog_buf *bufs;
    pthread_t writer;
    int running, stop, json, fd, is_stderr;
    const char *path;
    atomic_int reopen;
    char *spare;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .fd = -1};

static __thread alog_buf *tls_buf;

static int open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        char eb[128];
        vial_log(VIAL_LOG_ERROR, "access log: cannot open %s: %s", path, strerror_r(errno, eb, sizeof eb));
        return -errno;
    }
    return fd;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void reopen_request(void)
{
    atomic_store(&L.reopen, 1);
    pthread_mutex_lock(&L.mu);
    pthread_cond_signal(&L.cond);
    pthread_mutex_unlock(&L.mu);
}

/* Swaps every buffer out and writes it. Writer thread only. */
static void flush_all(void)
{
    if (atomic_exchange(&L.reopen, 0) && !L.is_stderr) {
        int fd = open_path(L.path);
        if (fd >= 0) {
            close(L.fd);
            L.fd = fd;
            vial_log(VIAL_LOG_INFO, "access log reopened: %s", L.path);
        }
    }
    pthread_mutex_lock(&L.mu);
    alog_buf *list = L.bufs;
    pthread_mutex_unlock(&L.mu);
    /* Buffers are only ever added at the head, never removed while the
     * writer runs, so walking the snapshot without the list lock is safe. */
    for (alog_buf *b = list; b; b = b->next) {
        pthread_mutex_lock(&b->mu);
        char *full = b->data;
        size_t n = b->len;
        uint64_t dropped = b->dropped;
        if (n) {
            b->data = L.spare;
            b->len = 0;
            L.spare = full;
        }
        b->dropped = 0;
        pthread_mutex_unlock(&b->mu);
        if (n)
            write_all(L.fd, full, n);
        if (dropped)
            vial_log(VIAL_LOG_WARN, "access log: %llu lines dropped (the writer fell behind)",
                     (unsigned long long)dropped);
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&L.mu);
    while (!L.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += FLUSH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&L.cond, &L.mu, &until);
        pthread_mutex_unlock(&L.mu);
        flush_all();
        pthread_mutex_lock(&L.mu);
    }
    pthread_mutex_unlock(&L.mu);
    flush_all();
    return NULL;
}

int vial_accesslog_open(const vial_config *cfg)
{
    if (!cfg->access_log || !*cfg->access_log)
        return 0;
    L.json = cfg->access_log_format && !strcmp(cfg->access_log_format, "json");
    L.path = cfg->access_log;
    L.is_stderr = !strcmp(L.path, "-");
    L.fd = L.is_stderr ? 2 : open_path(L.path);
    if (L.fd < 0)
        return L.fd;
    L.spare = malloc(BUF_CAP);
    if (!L.spare)
        return -ENOMEM;
    vial_log_on_reopen(reopen_request);
    L.stop = 0;
    /* The writer must not take the server's signals (SIGTERM, SIGUSR1):
     * they are for the thread in sigwait. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = pthread_create(&L.writer, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return -r;
    L.running = 1;
    vial_log(VIAL_LOG_DEBUG, "access log: %s (%s)", L.is_stderr ? "stderr" : L.path,
             L.json ? "json" : "combined");
    return 0;
}

void vial_accesslog_close(void)
{
    if (!L.running)
        return;
    pthread_mutex_lock(&L.mu);
    L.stop = 1;
    pthread_cond_signal(&L.cond);
    pthread_mutex_unlock(&L.mu);
    pthread_join(L.writer, NULL);
    L.running = 0;
    if (!L.is_stderr && L.fd >= 0)
        close(L.fd);
    L.fd = -1;
    /* Buffers stay registered (threads may still hold them); vial_run once
     * per process is the normal case. */
}

static alog_buf *my_buf(void)
{
    if (tls_buf)
        return tls_buf;
    alog_buf *b = calloc(1, sizeof *b);
    if (!b || !(b->data = malloc(BUF_CAP))) {
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_lock(&L.mu);
    b->next = L.bufs;
    L.bufs = b;
    pthread_mutex_unlock(&L.mu);
    return tls_buf = b;
}

/* --- formatting ---------------------------------------------------------- */

typedef struct out {
    char *p, *end;
} out;

static inline void put(out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n)
        n = (size_t)(o->end - o->p);
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUTL(o, lit) put(o, lit, sizeof lit - 1)

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(out *o, uint64_t v)
{
    char b[VIAL_FMT_INT_SIZE];
    put(o, b, vial_fmt_u64(b, v));
}

/* Bytes written as they are: printable ASCII but the quote and backslash. */
static const unsigned char plain[256] = {
    [' ' ... '!'] = 1, ['#' ... '['] = 1, [']' ... '~'] = 1,
};

/* A field from the client, escaped so it cannot break the line or the
 * format: quotes, backslashes and bytes outside printable ASCII as \xHH
 * (combined, as nginx does) or \u00HH (JSON). */
static void put_esc(out *o, const char *s, size_t n, int json)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    while (i < n && o->p < o->end) {
        /* The common case, a run of plain bytes, is copied at once. */
        size_t run = i;
        while (run < n && plain[(unsigned char)s[run]])
            run++;
        if (run > i) {
            put(o, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s[i++];
        if (json && (c == '"' || c == '\\')) {
            char e[2] = {'\\', (char)c};
            put(o, e, 2);
        } else if (json && c >= 0x80) {
            put(o, (const char *)&c, 1); /* UTF-8 passes; invalid bytes stay the reader's problem */
        } else if (json) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, e, 6);
        } else {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(o, e, 4);
        }
    }
}

static void put_str(out *o, const char *s, int json)
{
    if (!s || (!*s && !json)) {
        puts_(o, json ? "null" : "\"-\"");
        return;
    }
    put(o, "\"", 1);
    put_esc(o, s, strlen(s), json);
    put(o, "\"", 1);
}

/* "0.000123": seconds with microseconds, by hand (no locale, no double). */
static void put_seconds(out *o, uint64_t ns)
{
    uint64_t us = ns / 1000;
    put_u64(o, us / 1000000);
    char frac[7];
    uint64_t f = us % 1000000;
    for (int i = 5; i >= 0; i--, f /= 10)
        frac[i] = (char)('0' + f % 10);
    frac[6] = 0;
    put(o, ".", 1);
    put(o, frac, 6);
}

/* One line; rejected: the server refused the request itself, so only what
 * its parser got to is known (no request id: none was echoed). */
static void write_line(vial_req *rq, int status, uint64_t body_bytes, uint64_t duration_ns, int rejected)
{
    alog_buf *b = my_buf();
    if (!b)
        return;
    char line[LINE_MAX_BYTES];
    out o = {line, line + sizeof line - 1}; /* room for the newline */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const vial_http_head *h = &rq->head;
    const char *addr = vial_req_remote_addr(rq);
    /* A request line not parsed (a 400 at its first bytes, a timeout) is
     * "-", as Apache writes it. */
    const char *method = h->method.len && h->target.len ? vial_req_method(rq) : NULL;
    char proto[9] = "HTTP/1.x";
    proto[7] = (char)('0' + (h->version_minor == 0 ? 0 : 1));
    /* A refused head's version may be unknown (server.h, vial_reject_fn). */
    int proto_known = h->version_minor >= 0;
    const char *ref = vial_req_header(rq, "Referer");
    const char *ua = vial_req_header(rq, "User-Agent");
    const char *rid = rejected ? NULL : vial_req_id(rq);
    if (L.json) {
        char ts[VIAL_ISO8601_SIZE];
        vial_iso8601_ms((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, ts);
        PUTL(&o, "{\"time\":\"");
        puts_(&o, ts);
        PUTL(&o, "\",\"remote_addr\":");
        put_str(&o, addr, 1);
        PUTL(&o, ",\"method\":");
        put_str(&o, method, 1);
        if (method) {
            PUTL(&o, ",\"target\":\"");
            put_esc(&o, h->path.p, h->path.len, 1);
            if (h->has_query) {
                put(&o, "?", 1);
                put_esc(&o, h->query.p, h->query.len, 1);
            }
            PUTL(&o, "\",\"protocol\":");
            if (proto_known) {
                put(&o, "\"", 1);
                puts_(&o, proto);
                put(&o, "\"", 1);
            } else {
                PUTL(&o, "null");
            }
        } else {
            PUTL(&o, ",\"target\":null,\"protocol\":null");
        }
        PUTL(&o, ",\"status\":");
        put_u64(&o, (uint64_t)status);
        PUTL(&o, ",\"bytes\":");
        put_u64(&o, body_bytes);
        PUTL(&o, ",\"duration_s\":");
        put_seconds(&o, duration_ns);
        PUTL(&o, ",\"request_id\":");
        put_str(&o, rid, 1);
        PUTL(&o, ",\"referer\":");
        put_str(&o, ref, 1);
        PUTL(&o, ",\"user_agent\":");
        put_str(&o, ua, 1);
        PUTL(&o, "}");
    } else {
        /* Apache's combined format, then the duration (s) and the id:
         * 127.0.0.1 - - [06/Dec/2026:06:22:20 +0000] "GET / HTTP/1.1" 200 5
         *   "-" "curl/8.0" 0.000123 "3f2a..." */
        /* The date changes once a second: formatted then, per thread. */
        static __thread int64_t clf_sec = -1;
        static __thread char ts[VIAL_CLF_DATE_SIZE];
        if (clf_sec != (int64_t)now.tv_sec) {
            clf_sec = (int64_t)now.tv_sec;
            vial_clf_date(clf_sec, ts);
        }
        put_esc(&o, addr, strlen(addr), 0);
        PUTL(&o, " - - [");
        puts_(&o, ts);
        PUTL(&o, "] \"");
        if (method) {
            put_esc(&o, method, strlen(method), 0);
            put(&o, " ", 1);
            put_esc(&o, h->path.p, h->path.len, 0);
            if (h->has_query) {
                put(&o, "?", 1);
                put_esc(&o, h->query.p, h->query.len, 0);
            }
            put(&o, " ", 1);
            if (proto_known)
                puts_(&o, proto);
            else
                put(&o, "-", 1);
        } else {
            put(&o, "-", 1);
        }
        PUTL(&o, "\" ");
        put_u64(&o, (uint64_t)status);
        put(&o, " ", 1);
        if (body_bytes)
            put_u64(&o, body_bytes);
        else
            put(&o, "-", 1);
        put(&o, " ", 1);
        put_str(&o, ref, 0);
        put(&o, " ", 1);
        put_str(&o, ua, 0);
        put(&o, " ", 1);
        put_seconds(&o, duration_ns);
        put(&o, " ", 1);
        put_str(&o, rid, 0);
    }
    *o.p++ = '\n';
    size_t n = (size_t)(o.p - line);
    pthread_mutex_lock(&b->mu);
    int wake = 0;
    if (b->len + n > BUF_CAP) {
        b->dropped++;
    } else {
        memcpy(b->data + b->len, line, n);
        wake = b->len < BUF_CAP / 2 && b->len + n >= BUF_CAP / 2;
        b->len += n;
    }
    pthread_mutex_unlock(&b->mu);
    if (wake) {
        pthread_mutex_lock(&L.mu);
        pthread_cond_signal(&L.cond);
        pthread_mutex_unlock(&L.mu);
    }
}

void vial_accesslog_request(vial_req *rq, uint64_t body_bytes, uint64_t duration_ns)
{
    write_line(rq, rq->res.status, body_bytes, duration_ns, 0);
}

void vial_accesslog_reject(void *data, vial_req *rq, int status)
{
    (void)data;
    write_line(rq, status, 0, 0, 1);
}
