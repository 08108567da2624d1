/* Constant-rate HTTP/1.1 load generator: latency at a fixed request rate,
 * without coordinated omission.
 *
 *   loadgen [-c CONNS] [-r RATE] [-d SECONDS] [-w WARMUP_SECONDS] [-T TIMEOUT]
 *           [-H "Name: value"]... [--pid SERVER_PID] http://HOST:PORT/PATH
 *
 * Request i of the run is due at t0 + i / RATE (one schedule for all the
 * connections, RATE per second in total, for SECONDS). A due request goes
 * out on any idle keep-alive connection; when none is idle it waits, and its
 * wait is part of its latency: every latency is measured from the request's
 * SCHEDULED time to the end of its response, so a server that stalls is
 * charged for every request that should have been sent during the stall,
 * not only for the one it was serving (what a closed-loop tool like wrk
 * reports: "coordinated omission"). One request per connection at a time
 * (no pipelining), CONNS connections on one epoll thread.
 *
 * Responses are parsed: status line, Content-Length, chunked bodies (with
 * extensions and trailers), bodies that end at close, Connection: close
 * (the connection is then opened again; a request lost when the server
 * closed an idle keep-alive connection under it is sent again once, as
 * browsers do, and counted in "retries"). Latencies go into a log-linear
 * histogram (1 us buckets below 256 us, then 128 buckets per power of two:
 * under 0.8% relative error); p50/p90/p99/p99.9/max are printed, one
 * "key value" a line, for scripts (see print_report).
 *
 * Bounded: CONNS <= 100000, RATE <= 10,000,000/s, SECONDS <= 3600; after the
 * schedule ends, requests still unanswered get TIMEOUT seconds (default 10)
 * and are then counted as timeouts; connecting gets TIMEOUT seconds too.
 * -w runs the same schedule WARMUP seconds first without recording.
 * --pid: the server's CPU time (utime + stime from /proc/PID/stat, all its
 * threads) over the recorded part, per completed request.
 *
 * --selftest checks the histogram and exits (tests/blackbox/test_loadgen.py).
 *
 * No vial inside: the client must not be what is measured. Numeric IPv4
 * hosts only (this is for 127.0.0.1). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"

/* --- histogram ------------------------------------------------------------------------------ */

/* Values (us) below 256 have a bucket each; above, each power of two
 * [2^m, 2^(m+1)) is cut into 128 equal buckets. Up to 2^40 us (12 days). */
enum { SUB_BITS = 7, SUB = 1 << SUB_BITS, MAX_SHIFT = 33, NBUCKETS = 2 * SUB + MAX_SHIFT * SUB };

typedef struct hist {
    uint64_t n[NBUCKETS];
    uint64_t count, max, sum;
} hist;

static int bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (int)v;
    int m = 63 - __builtin_clzll(v); /* highest bit, >= SUB_BITS + 1 */
    int s = m - SUB_BITS;            /* >= 1 */
    if (s > MAX_SHIFT)
        return NBUCKETS - 1;
    return 2 * SUB + (s - 1) * SUB + (int)((v >> s) - SUB);
}

/* The highest value a bucket holds: percentiles err on the high side. */
static uint64_t bucket_top(int b)
{
    if (b < 2 * SUB)
        return (uint64_t)b;
    int s = (b - 2 * SUB) / SUB + 1, k = (b - 2 * SUB) % SUB;
    return (((uint64_t)(SUB + k) + 1) << s) - 1;
}

static void hist_add(hist *h, uint64_t v)
{
    h->n[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

/* The smallest recorded value v such that at least p percent are <= v. */
static uint64_t hist_pct(const hist *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)((double)h->count * p / 100.0 + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        seen += h->n[b];
        if (seen >= want) {
            uint64_t t = bucket_top(b);
            return t < h->max ? t : h->max;
        }
    }
    return h->max;
}

/* Checks the histogram's promises (exact below 256 us, under 0.8% above,
 * percentiles rounded up, never above the max); 0 when they hold. */
static int hist_selftest(void)
{
    for (uint64_t v = 0; v < (1ull << 40); v = v < 1000 ? v + 1 : v + v / 977) {
        int b = bucket_of(v);
        uint64_t top = bucket_top(b);
        if (top < v || (v < 2 * SUB && top != v) || (double)(top - v) > (double)v / 128.0 ||
            (b > 0 && bucket_top(b - 1) >= v)) {
            fprintf(stderr, "loadgen: selftest: %llu -> bucket %d, top %llu\n", (unsigned long long)v, b,
                    (unsigned long long)top);
            return 1;
        }
    }
    static hist h;
    for (uint64_t v = 1; v <= 100000; v++) /* 1 us .. 100 ms, evenly */
        hist_add(&h, v);
    const double ps[] = {50, 90, 99, 99.9, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        uint64_t want = (uint64_t)(ps[i] * 1000), got = hist_pct(&h, ps[i]);
        if (got < want || (double)(got - want) > (double)want / 128.0 || got > h.max) {
            fprintf(stderr, "loadgen: selftest: p%g = %llu, want %llu\n", ps[i], (unsigned long long)got,
                    (unsigned long long)want);
            return 1;
        }
    }
    puts("selftest ok");
    return 0;
}

/* --- connections ------------------------------------------------------------------------------ */

enum { C_CONNECTING, C_IDLE, C_BUSY, C_DEAD };
enum { P_STATUS, P_HEADER, P_BODY_CL, P_CHUNK_SIZE, P_CHUNK_DATA, P_TRAILER, P_BODY_EOF };

typedef struct conn {
    int fd, state;
    int p;             /* parser state, P_* */
    int status;        /* of the response being read */
    int close_after;   /* Connection: close, or HTTP/1.0 without keep-alive */
    int chunked;
    int64_t clen;      /* Content-Length, -1 none */
    uint64_t left;     /* body / chunk bytes (chunk: + its CRLF) still to come */
    uint64_t sched_ns; /* the request's scheduled time */
    int record;        /* in the recorded part of the run */
    int retry;         /* 1: resend the request once the connection is open again; 2: resent */
    uint32_t sent;     /* request bytes written */
    uint16_t linelen;
    char line[256];    /* the header / chunk-size line being read (longer ones are cut) */
} conn;

static conn *cs;
static int nconns = 16, ep, ndead;
static int *idle, ihead, nidle; /* idle connections, a FIFO ring: each is used in turn */
static struct sockaddr_in addr;
static char *req;
static uint32_t reqlen;

/* counters of the recorded part */
static hist lat;
static uint64_t completed, non2xx, errors, reconnects, retries, max_backlog;
static uint64_t status_counts[6]; /* 1xx .. 5xx, [0]: other */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void watch(conn *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - cs)};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static int open_conn(conn *c)
{
    ndead--;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        c->state = C_DEAD;
        ndead++;
        return -1;
    }
    c->state = C_CONNECTING;
    watch(c, EPOLL_CTL_ADD, EPOLLOUT);
    return 0;
}

static void close_conn(conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* leaves the epoll set with its last descriptor */
    c->fd = -1;
    if (c->state != C_DEAD)
        ndead++;
    c->state = C_DEAD;
}

static void reset_parser(conn *c)
{
    c->p = P_STATUS;
    c->status = 0;
    c->close_after = 0;
    c->chunked = 0;
    c->clen = -1;
    c->left = 0;
    c->linelen = 0;
}

static void make_idle(conn *c)
{
    c->state = C_IDLE;
    idle[(ihead + nidle++) % nconns] = (int)(c - cs);
}

static conn *take_idle(void)
{
    conn *c = &cs[idle[ihead]];
    ihead = (ihead + 1) % nconns;
    nidle--;
    return c;
}

/* An idle connection is closing: out of the ring (rare, so a scan). */
static void drop_idle(conn *c)
{
    int k = 0, me = (int)(c - cs);
    while (k < nidle && idle[(ihead + k) % nconns] != me)
        k++;
    if (k == nidle)
        return;
    for (; k + 1 < nidle; k++)
        idle[(ihead + k) % nconns] = idle[(ihead + k + 1) % nconns];
    nidle--;
}

/* Writes what is left of the request; arms EPOLLOUT when the socket is full. */
static int send_req(conn *c)
{
    while (c->sent < reqlen) {
        ssize_t n = send(c->fd, req + c->sent, reqlen - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                watch(c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
                return 0;
            }
            return -1;
        }
        c->sent += (uint32_t)n;
    }
    return 0;
}

/* A request lost with its connection. When not a byte of the answer came,
 * the server most likely closed the connection as idle while the request
 * was on its way (keep-alive timeout; at low rates on many connections
 * every connection idles past it): like a browser, send it again, once, on
 * a new connection — its latency still runs from its scheduled time. */
static void fail_request(conn *c)
{
    int again = c->state == C_BUSY && c->retry == 0 && c->p == P_STATUS && c->linelen == 0;
    if (c->state == C_BUSY && c->record && !again)
        errors++;
    if (again && c->record)
        retries++;
    if (c->state == C_IDLE)
        drop_idle(c);
    close_conn(c);
    reconnects++;
    reset_parser(c);
    c->retry = 0;
    if (open_conn(c) < 0) {
        if (again && c->record)
            errors++;
        return;
    }
    c->retry = again;
}

static void start_request(conn *c, uint64_t sched, int record)
{
    c->state = C_BUSY;
    c->sched_ns = sched;
    c->record = record;
    c->retry = 0;
    c->sent = 0;
    reset_parser(c);
    if (send_req(c) < 0)
        fail_request(c);
}

static int ascii_prefix_ci(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++) {
        char a = s[i], b = prefix[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a + 32);
        if (a != b)
            return 0;
    }
    return 1;
}

/* Whether the comma-separated header value names the token (lowercase). */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t k = strlen(tok);
    for (size_t i = 0; i + k <= n; i++)
        if (ascii_prefix_ci(v + i, n - i, tok) && (i == 0 || v[i - 1] == ' ' || v[i - 1] == ',') &&
            (i + k == n || v[i + k] == ' ' || v[i + k] == ',' || v[i + k] == ';'))
            return 1;
    return 0;
}

static void finish_response(conn *c, uint64_t now)
{
    if (c->record) {
        completed++;
        hist_add(&lat, (now - c->sched_ns) / 1000);
        int cls = c->status / 100;
        status_counts[cls >= 1 && cls <= 5 ? cls : 0]++;
        if (cls != 2)
            non2xx++;
    }
    if (c->close_after) {
        close_conn(c);
        reconnects++;
        if (open_conn(c) < 0 && c->record)
            errors++;
        return;
    }
    make_idle(c);
}

/* One complete line (without CR LF) in the current state; -1: malformed. */
static int on_line(conn *c, const char *l, size_t n)
{
    switch (c->p) {
    case P_STATUS:
        if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[8] != ' ')
            return -1;
        c->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
        if (c->status < 100 || c->status > 999)
            return -1;
        c->close_after = l[7] == '0'; /* HTTP/1.0: close unless it says keep-alive */
        c->p = P_HEADER;
        return 0;
    case P_HEADER:
        if (n == 0) { /* end of the head */
            if (c->status < 200) {  /* interim (100 Continue): the real one follows */
                c->p = P_STATUS;
                return 0;
            }
            if (c->status == 204 || c->status == 304)
                return 1;
            if (c->chunked) {
                c->p = P_CHUNK_SIZE;
                return 0;
            }
            if (c->clen >= 0) {
                if (c->clen == 0)
                    return 1;
                c->left = (uint64_t)c->clen;
                c->p = P_BODY_CL;
                return 0;
            }
            c->p = P_BODY_EOF;
            c->close_after = 1;
            return 0;
        }
        const char *colon = memchr(l, ':', n);
        if (!colon)
            return -1;
        const char *v = colon + 1, *end = l + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        size_t vn = (size_t)(end - v), nn = (size_t)(colon - l);
        if (nn == 14 && ascii_prefix_ci(l, nn, "content-length")) {
            int64_t x = 0;
            if (v == end)
                return -1;
            for (const char *q = v; q < end && *q != ' '; q++) {
                if (*q < '0' || *q > '9' || x > (INT64_MAX - 9) / 10)
                    return -1;
                x = x * 10 + (*q - '0');
            }
            c->clen = x;
        } else if (nn == 17 && ascii_prefix_ci(l, nn, "transfer-encoding")) {
            c->chunked = has_token(v, vn, "chunked");
        } else if (nn == 10 && ascii_prefix_ci(l, nn, "connection")) {
            if (has_token(v, vn, "close"))
                c->close_after = 1;
            else if (has_token(v, vn, "keep-alive"))
                c->close_after = 0;
        }
        return 0;
    case P_CHUNK_SIZE: {
        uint64_t x = 0;
        size_t i = 0;
        for (; i < n; i++) {
            char h = l[i];
            int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                                   : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (d < 0)
                break;
            if (x >> 56)
                return -1;
            x = x * 16 + (uint64_t)d;
        }
        if (i == 0 || (i < n && l[i] != ';' && l[i] != ' ' && l[i] != '\t'))
            return -1;
        if (x == 0) {
            c->p = P_TRAILER;
            return 0;
        }
        c->left = x + 2; /* the data and its CR LF */
        c->p = P_CHUNK_DATA;
        return 0;
    }
    case P_TRAILER:
        return n == 0 ? 1 : 0;
    }
    return -1;
}

/* Feeds received bytes to the parser; 1: a response ended (its bytes end at
 * *used), 0: all consumed, -1: malformed. */
static int parse(conn *c, const char *b, size_t n, size_t *used)
{
    size_t i = 0;
    while (i < n) {
        if (c->p == P_BODY_CL || c->p == P_CHUNK_DATA || c->p == P_BODY_EOF) {
            if (c->p == P_BODY_EOF) {
                i = n;
                break;
            }
            size_t take = n - i < c->left ? n - i : (size_t)c->left;
            i += take;
            c->left -= take;
            if (c->left)
                break;
            if (c->p == P_BODY_CL) {
                *used = i;
                return 1;
            }
            /* the chunk's CR LF was counted in left; assume it was there */
            c->p = P_CHUNK_SIZE;
            continue;
        }
        const char *nl = memchr(b + i, '\n', n - i);
        size_t k = nl ? (size_t)(nl - (b + i)) : n - i;
        size_t room = sizeof c->line - c->linelen;
        memcpy(c->line + c->linelen, b + i, k < room ? k : room);
        c->linelen = (uint16_t)(c->linelen + (k < room ? k : room));
        i += k;
        if (!nl)
            break;
        i++; /* the LF */
        size_t ln = c->linelen;
        if (ln && c->line[ln - 1] == '\r')
            ln--;
        c->linelen = 0;
        int r = on_line(c, c->line, ln);
        if (r < 0)
            return -1;
        if (r == 1) {
            *used = i;
            return 1;
        }
    }
    *used = n;
    return 0;
}

static void on_readable(conn *c, uint64_t *now)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            fail_request(c);
            return;
        }
        *now = now_ns();
        if (n == 0) {
            if (c->state == C_BUSY && c->p == P_BODY_EOF) {
                c->close_after = 1;
                finish_response(c, *now);
                return;
            }
            if (c->state == C_BUSY)
                fail_request(c);
            else { /* the server closed an idle keep-alive connection */
                drop_idle(c);
                close_conn(c);
                reconnects++;
                open_conn(c);
            }
            return;
        }
        if (c->state != C_BUSY) { /* bytes nobody asked for */
            fail_request(c);
            return;
        }
        size_t used;
        int r = parse(c, buf, (size_t)n, &used);
        if (r < 0 || (r == 1 && used < (size_t)n)) { /* malformed, or more than one response */
            fail_request(c);
            return;
        }
        if (r == 1) {
            finish_response(c, *now);
            return;
        }
        if ((size_t)n < sizeof buf)
            return;
    }
}

static void on_writable(conn *c)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            if (c->retry == 1 && c->record)
                errors++;
            c->retry = 0;
            close_conn(c);
            return;
        }
        watch(c, EPOLL_CTL_MOD, EPOLLIN);
        if (c->retry == 1) { /* the request lost on the old connection */
            c->retry = 2;
            c->state = C_BUSY;
            c->sent = 0;
            reset_parser(c);
            if (send_req(c) < 0)
                fail_request(c);
            return;
        }
        make_idle(c);
        return;
    }
    if (c->state == C_BUSY) {
        watch(c, EPOLL_CTL_MOD, EPOLLIN);
        if (send_req(c) < 0)
            fail_request(c);
    }
}

/* --- the run ---------------------------------------------------------------------------------- */

/* When request i of the schedule is due (no overflow for any bounded run). */
static uint64_t due_at(uint64_t t0, uint64_t i, uint64_t rate)
{
    return t0 + i / rate * 1000000000u + i % rate * 1000000000u / rate;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen [-c CONNS] [-r RATE] [-d SECONDS] [-w WARMUP] [-T TIMEOUT]\n"
                    "               [-H 'Name: value']... [--pid SERVER_PID] http://HOST:PORT/PATH\n");
    exit(2);
}

static long num_arg(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "loadgen: %s must be %ld..%ld\n", what, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long rate = 1000, secs = 10, warm = 0, timeout_s = 10, pid = 0;
    const char *url = NULL;
    char headers[4096] = "";
    size_t hlen = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            url = a;
            continue;
        }
        if (!strcmp(a, "--selftest"))
            return hist_selftest();
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "-c"))
            nconns = (int)num_arg(v, 1, 100000, "-c");
        else if (!strcmp(a, "-r"))
            rate = num_arg(v, 1, 10000000, "-r");
        else if (!strcmp(a, "-d"))
            secs = num_arg(v, 1, 3600, "-d");
        else if (!strcmp(a, "-w"))
            warm = num_arg(v, 0, 3600, "-w");
        else if (!strcmp(a, "-T"))
            timeout_s = num_arg(v, 1, 3600, "-T");
        else if (!strcmp(a, "--pid"))
            pid = num_arg(v, 1, 1L << 30, "--pid");
        else if (!strcmp(a, "-H")) {
            size_t k = strlen(v);
            if (hlen + k + 3 > sizeof headers || strpbrk(v, "\r\n"))
                usage();
            memcpy(headers + hlen, v, k);
            memcpy(headers + hlen + k, "\r\n", 3);
            hlen += k + 2;
        } else
            usage();
    }
    if (!url || strncmp(url, "http://", 7) != 0)
        usage();
    char host[64];
    const char *hp = url + 7, *slash = strchr(hp, '/'), *colon = strchr(hp, ':');
    const char *path = slash ? slash : "/";
    if (!colon || (slash && colon > slash) || (size_t)(colon - hp) >= sizeof host)
        usage();
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = 0;
    addr.sin_family = AF_INET;
    char port[8];
    size_t plen = (size_t)((slash ? slash : colon + strlen(colon)) - colon - 1);
    if (plen == 0 || plen >= sizeof port)
        usage();
    memcpy(port, colon + 1, plen);
    port[plen] = 0;
    addr.sin_port = htons((uint16_t)num_arg(port, 1, 65535, "the port"));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: %s: a numeric IPv4 address, please\n", host);
        return 2;
    }
    size_t cap = strlen(path) + strlen(hp) + hlen + 64;
    req = malloc(cap);
    reqlen = (uint32_t)snprintf(req, cap, "GET %s HTTP/1.1\r\nHost: %.*s\r\n%s\r\n", path,
                                (int)((slash ? slash : hp + strlen(hp)) - hp), hp, headers);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)nconns + 64 ? rl.rlim_max : (rlim_t)nconns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    cs = calloc((size_t)nconns, sizeof *cs);
    idle = calloc((size_t)nconns, sizeof *idle);
    if (!cs || !idle)
        die("calloc");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    ndead = nconns;
    for (int i = 0; i < nconns; i++) {
        cs[i].fd = -1;
        cs[i].state = C_DEAD;
        if (open_conn(&cs[i]) < 0)
            die("connect");
    }

    enum { MAXEV = 512 };
    struct epoll_event evs[MAXEV];
    uint64_t now = now_ns(), give_up = now + (uint64_t)timeout_s * 1000000000u;
    while (nidle < nconns) { /* every connection up before the clock starts */
        if (ndead) {
            fprintf(stderr, "loadgen: %d of %d connections refused\n", ndead, nconns);
            return 1;
        }
        if ((now = now_ns()) > give_up) {
            fprintf(stderr, "loadgen: connecting took over %ld s\n", timeout_s);
            return 1;
        }
        int n = epoll_wait(ep, evs, MAXEV, 100);
        for (int i = 0; i < n; i++)
            on_writable(&cs[evs[i].data.u32]);
    }

    const uint64_t warm_n = (uint64_t)warm * (uint64_t)rate, total = warm_n + (uint64_t)secs * (uint64_t)rate;
    const uint64_t t0 = now_ns();
    const uint64_t rec_t0 = t0 + (uint64_t)warm * 1000000000u;
    const uint64_t sched_end = t0 + (uint64_t)(warm + secs) * 1000000000u;
    const uint64_t deadline = sched_end + (uint64_t)timeout_s * 1000000000u;
    uint64_t next = 0; /* the first request not yet sent */
    uint64_t last_retry = 0;
    long ticks0 = -1, ticks1 = -1;
    struct rusage ru0, ru1;
    int recording = warm_n == 0;
    if (recording) {
        ticks0 = pid ? procstat_cpu_ticks(pid) : -1;
        getrusage(RUSAGE_SELF, &ru0);
    }
    for (;;) {
        now = now_ns();
        if (!recording && now >= rec_t0) {
            recording = 1;
            ticks0 = pid ? procstat_cpu_ticks(pid) : -1;
            getrusage(RUSAGE_SELF, &ru0);
        }
        /* Due requests go out on idle connections, oldest first. */
        while (next < total && nidle > 0) {
            uint64_t due = due_at(t0, next, (uint64_t)rate);
            if (due > now)
                break;
            start_request(take_idle(), due, next >= warm_n);
            next++;
        }
        if (next < total) { /* how many are due with no connection free */
            uint64_t due_n = (uint64_t)((unsigned __int128)(now - t0) * (uint64_t)rate / 1000000000u) + 1;
            if (due_n > total)
                due_n = total;
            if (due_n > next && due_n - next > max_backlog && next >= warm_n)
                max_backlog = due_n - next;
        }
        if (next >= total) { /* the schedule is over: done when nothing is in flight */
            int busy = 0;
            for (int i = 0; i < nconns && !busy; i++)
                busy = cs[i].state == C_BUSY || cs[i].retry == 1;
            if (!busy)
                break;
        }
        if (now >= deadline)
            break;
        /* Sleep until the next request is due (when a connection is free
         * for it) or until something happens. */
        uint64_t wake = deadline;
        if (next < total && nidle > 0) {
            uint64_t due = due_at(t0, next, (uint64_t)rate);
            if (due < wake)
                wake = due;
        }
        uint64_t wait = wake > now ? wake - now : 0;
        if (wait > 100000000u)
            wait = 100000000u;
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000u), .tv_nsec = (long)(wait % 1000000000u)};
        int n = epoll_pwait2(ep, evs, MAXEV, &ts, NULL);
        if (n < 0 && errno == ENOSYS) /* kernels before 5.11: millisecond sleeps */
            n = epoll_wait(ep, evs, MAXEV, (int)((wait + 999999) / 1000000));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn *c = &cs[evs[i].data.u32];
            if (c->state == C_DEAD)
                continue;
            if ((evs[i].events & (EPOLLOUT | EPOLLERR)) && (c->state == C_CONNECTING || c->sent < reqlen))
                on_writable(c);
            if (c->state != C_DEAD && c->state != C_CONNECTING && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(c, &now);
        }
        /* Connections refused on reconnecting get another try, at most
         * every 10 ms (a server that is down must not make this spin). */
        if (ndead && now - last_retry > 10000000u) {
            last_retry = now;
            for (int i = 0; i < nconns; i++)
                if (cs[i].state == C_DEAD) {
                    reconnects++;
                    if (open_conn(&cs[i]) < 0)
                        break;
                }
        }
    }
    uint64_t t_end = now_ns();
    ticks1 = pid ? procstat_cpu_ticks(pid) : -1;
    getrusage(RUSAGE_SELF, &ru1);

    uint64_t outstanding = 0, unsent = total > next ? total - next : 0;
    for (int i = 0; i < nconns; i++)
        if ((cs[i].state == C_BUSY || cs[i].retry == 1) && cs[i].record)
            outstanding++;
    if (unsent > total - warm_n)
        unsent = total - warm_n;

    double el = (double)(t_end - rec_t0) / 1e9;
    double cli_cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                     (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    printf("target %s\n", url);
    printf("rate %ld\nseconds %ld\nconnections %d\n", rate, secs, nconns);
    printf("scheduled %llu\n", (unsigned long long)(total - warm_n));
    printf("completed %llu\n", (unsigned long long)completed);
    printf("non2xx %llu\n", (unsigned long long)non2xx);
    printf("status 1xx %llu 2xx %llu 3xx %llu 4xx %llu 5xx %llu\n", (unsigned long long)status_counts[1],
           (unsigned long long)status_counts[2], (unsigned long long)status_counts[3],
           (unsigned long long)status_counts[4], (unsigned long long)status_counts[5]);
    printf("errors %llu\n", (unsigned long long)errors);
    printf("timeouts %llu\n", (unsigned long long)(outstanding + unsent));
    printf("reconnects %llu\n", (unsigned long long)reconnects);
    printf("retries %llu\n", (unsigned long long)retries);
    printf("max_backlog %llu\n", (unsigned long long)max_backlog);
    printf("achieved %.1f\n", el > 0 ? (double)completed / el : 0.0);
    printf("p50_us %llu\n", (unsigned long long)hist_pct(&lat, 50));
    printf("p90_us %llu\n", (unsigned long long)hist_pct(&lat, 90));
    printf("p99_us %llu\n", (unsigned long long)hist_pct(&lat, 99));
    printf("p99.9_us %llu\n", (unsigned long long)hist_pct(&lat, 99.9));
    printf("max_us %llu\n", (unsigned long long)lat.max);
    printf("mean_us %.1f\n", lat.count ? (double)lat.sum / (double)lat.count : 0.0);
    printf("client_cpu_pct %.1f\n", el > 0 ? 100.0 * cli_cpu / el : 0.0);
    if (pid && ticks0 >= 0 && ticks1 >= 0 && completed)
        printf("server_cpu_us_per_req %.2f\n",
               (double)(ticks1 - ticks0) * 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)completed);
    for (int i = 0; i < nconns; i++)
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    return completed == 0;
}
