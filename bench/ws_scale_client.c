/* Load generator for bench/ws-scale.sh: many websocket or SSE subscribers of
 * one hub topic on one epoll loop, hand-made handshakes and frame parsing, so
 * that the client is not what the figures measure.
 *
 *   ws_scale_client --port P --pid SERVER_PID [--kind ws|sse] [--deflate] [--block] [--yield]
 *                   [-n 10000] [--rounds 20] [--size 64] [--topic T]
 *                   [--hold SECONDS] [--churn SECONDS] [--churn-rate N]
 *
 * Fan-out mode (default): opens n subscribers (at most 256 handshakes in
 * flight), reads the server's VmRSS before and after, then publishes
 * `rounds` messages through POST /hub/publish/<topic>, one at a time; the
 * time of a round runs from the POST's send to the last subscriber's receipt
 * (websocket: a complete data frame; SSE: the round's tag "R<6 digits>").
 * Prints RSS per connection and the median / p99 / max of the round times,
 * and the median / p99 of every single delivery. --hold keeps the idle set
 * open that long before the rounds (to inspect the server).
 * During a round the client polls epoll without sleeping: on loopback the
 * sender's CPU pays the wake-up of a receiver asleep in epoll_wait (an IPI
 * per ready socket, ~20% of the server's CPU per broadcast), which a
 * subscriber on another machine would not cost it. --yield: a poll that
 * finds nothing yields the CPU (to a server thread that shares it; on a
 * loaded machine it also hands the CPU to anything else). --block sleeps
 * in epoll_wait as before, to measure that case.
 *
 * Churn mode (--churn S): keeps n subscribers open and, every 100 ms, closes
 * churn-rate/10 of them at random and opens as many new ones, for S seconds;
 * samples the server's RSS once a second (prints one sample in ten), then
 * its first, lowest, highest and last samples.
 *
 * Loopback only; every socket is closed at the end; bounded by --rounds or
 * --churn and a 10 s timeout per wait. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
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

enum { ST_CONNECTING, ST_HEAD, ST_READY, ST_DEAD };

typedef struct cl {
    int fd;
    int state;
    uint32_t got;        /* ws: data messages after the greeting; SSE: highest tag + 1 */
    uint64_t recv_ns;    /* when `got` last grew */
    uint8_t hdr[14];     /* ws frame header being read */
    uint8_t hlen;
    uint64_t left;       /* ws payload bytes still to come in this frame */
    uint8_t fin_data;    /* the frame being read ends a data message */
    char head[512];      /* response head until "\r\n\r\n"; SSE: tag carry-over */
    uint16_t headlen;
} cl;

static int port, kind_sse, deflate_ext, nconn = 10000, rounds = 20, msg_size = 64;
static int churn_s, churn_rate = 1000, hold_s, block, yield;
static long server_pid;
static const char *topic = "scale";
static int ep;
static cl *cls;
static int nready, ninflight;
/* The round's target for `got` and how many have reached it: the round's
 * end is known without a pass over every connection after each epoll batch. */
static uint32_t round_want = UINT32_MAX;
static int nreached;
static unsigned long nlost_ready, nlost_head; /* closed by the server */
static int pub_fd = -1;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* The server's user + system CPU time so far, in ms. */
static double cpu_ms(void)
{
    long t = procstat_cpu_ticks(server_pid);
    return t < 0 ? -1 : (double)t * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* The server's threads: CPU ticks and the CPU each last ran on, so that a
 * run shows which loop threads did a broadcast's sends, and where. */
#define MAX_TASKS 64
typedef struct task_cpu {
    long tid;
    char name[32];
    long ticks;
    int cpu;
} task_cpu;

static int tasks_read(task_cpu *t)
{
    char path[320], b[1024];
    int n = 0;
    snprintf(path, sizeof path, "/proc/%ld/task", server_pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    for (struct dirent *e; n < MAX_TASKS && (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%ld/task/%s/stat", server_pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t k = fread(b, 1, sizeof b - 1, f);
        fclose(f);
        b[k] = 0;
        char *o = strchr(b, '('), *p = strrchr(b, ')');
        unsigned long ut = 0, st = 0;
        int cpu = -1;
        /* after ")": state, then fields 4..39; utime 14, stime 15, processor 39 */
        if (!o || !p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                                      "%*u %*u %*d %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*d %d",
                               &ut, &st, &cpu) != 3)
            continue;
        t[n].tid = atol(e->d_name);
        size_t nl = (size_t)(p - o - 1) < sizeof t[n].name - 1 ? (size_t)(p - o - 1) : sizeof t[n].name - 1;
        memcpy(t[n].name, o + 1, nl);
        t[n].name[nl] = 0;
        t[n].ticks = (long)(ut + st);
        t[n].cpu = cpu;
        n++;
    }
    closedir(d);
    return n;
}

/* Prints the threads that used CPU between a and b, in ms per broadcast. */
static void tasks_report(const task_cpu *a, int na, const task_cpu *b, int nb, int per)
{
    double tick_ms = 1000.0 / (double)sysconf(_SC_CLK_TCK);
    printf("server threads (CPU ms per broadcast, last CPU):");
    for (int i = 0; i < nb; i++) {
        long before = 0;
        for (int j = 0; j < na; j++)
            if (a[j].tid == b[i].tid)
                before = a[j].ticks;
        if (b[i].ticks > before)
            printf(" %s/%ld %.1f (cpu %d)", b[i].name, b[i].tid, (double)(b[i].ticks - before) * tick_ms / per,
                   b[i].cpu);
    }
    printf("\n");
}

/* Each CPU's busy ticks (all but idle and iowait) from /proc/stat: what
 * the server's own CPU time leaves out — softirq work the kernel deferred
 * to ksoftirqd, another process on its CPU — shows as the difference. */
#define MAX_CPUS 64
static int cpus_busy(long long *busy)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[512];
    int n = 0;
    while (n < MAX_CPUS && fgets(line, sizeof line, f)) {
        long long v[8] = {0};
        int id;
        if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9')
            continue;
        if (sscanf(line + 3, "%d %lld %lld %lld %lld %lld %lld %lld %lld", &id, &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]) != 9)
            continue;
        busy[n++] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* user nice system irq softirq steal */
    }
    fclose(f);
    return n;
}

static void die(const char *m)
{
    fprintf(stderr, "ws_scale_client: %s\n", m);
    exit(1);
}

static int tcp_connect(int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void cl_open(int i)
{
    cl *c = &cls[i];
    memset(c, 0, sizeof *c);
    c->fd = tcp_connect(1);
    if (c->fd < 0)
        die("socket/connect failed (RLIMIT_NOFILE?)");
    c->state = ST_CONNECTING;
    struct epoll_event e = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) != 0)
        die("epoll_ctl");
    ninflight++;
}

static void cl_close(int i)
{
    cl *c = &cls[i];
    if (c->state == ST_READY)
        nready--;
    else if (c->state != ST_DEAD)
        ninflight--;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = ST_DEAD;
}

static void send_request(cl *c)
{
    char req[512];
    int n;
    if (kind_sse)
        n = snprintf(req, sizeof req, "GET /hub/sse/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", topic);
    else
        n = snprintf(req, sizeof req,
                     "GET /ws/hub/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     topic, deflate_ext ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    if (write(c->fd, req, (size_t)n) != n)
        die("short handshake write");
}

static void got_set(cl *c, uint32_t v, uint64_t t)
{
    if (c->got < round_want && v >= round_want)
        nreached++;
    c->got = v;
    c->recv_ns = t;
}

/* SSE: the highest "R<6 digits>" tag in the stream; the last 7 bytes carry over. */
static void sse_scan(cl *c, const char *p, size_t n, uint64_t t)
{
    char buf[8192 + 8];
    size_t carry = c->headlen;
    memcpy(buf, c->head, carry);
    memcpy(buf + carry, p, n);
    size_t len = carry + n;
    for (size_t i = 0; i + 7 <= len; i++) {
        if (buf[i] != 'R')
            continue;
        uint32_t v = 0;
        size_t k = 1;
        for (; k < 7 && buf[i + k] >= '0' && buf[i + k] <= '9'; k++)
            v = v * 10 + (uint32_t)(buf[i + k] - '0');
        if (k == 7 && v + 1 > c->got)
            got_set(c, v + 1, t);
    }
    size_t keep = len < 6 ? len : 6;
    memcpy(c->head, buf + len - keep, keep);
    c->headlen = (uint16_t)keep;
}

/* Websocket: counts complete data messages (the greeting included). */
static void ws_scan(cl *c, const uint8_t *p, size_t n, uint64_t t)
{
    while (n) {
        if (c->left) {
            size_t k = n < c->left ? n : (size_t)c->left;
            c->left -= k;
            p += k;
            n -= k;
            if (!c->left && c->fin_data)
                got_set(c, c->got + 1, t);
            continue;
        }
        c->hdr[c->hlen++] = *p++;
        n--;
        if (c->hlen < 2)
            continue;
        unsigned l7 = c->hdr[1] & 0x7f;
        unsigned need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
        if (c->hlen < need)
            continue;
        uint64_t len = l7;
        if (l7 == 126)
            len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
        else if (l7 == 127)
            for (int i = 0; i < 8; i++)
                len = len << 8 | c->hdr[2 + i];
        unsigned op = c->hdr[0] & 0x0f;
        c->fin_data = (c->hdr[0] & 0x80) && op < 8;
        c->hlen = 0;
        c->left = len;
        if (!len && c->fin_data)
            got_set(c, c->got + 1, t);
    }
}

/* t: when epoll_wait returned, the receipt time of all its batch (one
 * clock read per batch, and the generator's own work on the batch is not
 * counted as delivery time). */
static void on_event(uint32_t i, uint32_t ev, uint64_t t)
{
    cl *c = &cls[i];
    if (c->state == ST_DEAD)
        return;
    if (c->state == ST_CONNECTING) {
        if (!(ev & EPOLLOUT))
            return;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err)
            die("connect refused (server listen backlog?)");
        send_request(c);
        c->state = ST_HEAD;
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        return;
    }
    char buf[8192];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            int ready = c->state == ST_READY;
            if (ready)
                nlost_ready++;
            else
                nlost_head++;
            if (nlost_ready + nlost_head <= 5)
                fprintf(stderr, "ws_scale_client: connection %u %s by the server (%s)\n", i,
                        ready ? "closed after its handshake" : "closed before its response",
                        n == 0 ? "EOF" : strerror(errno));
            cl_close((int)i);
            return;
        }
        if (n < 0)
            return;
        const char *p = buf;
        size_t len = (size_t)n;
        if (c->state == ST_HEAD) {
            size_t room = sizeof c->head - 1 - c->headlen, k = len < room ? len : room;
            memcpy(c->head + c->headlen, p, k);
            c->headlen = (uint16_t)(c->headlen + k);
            c->head[c->headlen] = 0;
            char *end = strstr(c->head, "\r\n\r\n");
            if (!end) {
                if (c->headlen == sizeof c->head - 1)
                    die("response head too long");
                continue;
            }
            if (strncmp(c->head, kind_sse ? "HTTP/1.1 200" : "HTTP/1.1 101", 12) != 0)
                die("handshake refused");
            if (deflate_ext && !strstr(c->head, "permessage-deflate"))
                die("permessage-deflate not negotiated");
            size_t used = (size_t)(end + 4 - c->head) - (c->headlen - k);
            p += used;
            len -= used;
            c->headlen = 0;
            c->state = ST_READY;
            ninflight--;
            nready++;
        }
        if (kind_sse)
            sse_scan(c, p, len, t);
        else
            ws_scan(c, (const uint8_t *)p, len, t);
        /* Level-triggered: a short read emptied the socket; the EAGAIN read
         * that would prove it is a syscall per event for nothing. */
        if ((size_t)n < sizeof buf)
            return;
    }
}

static void drain_pub(void)
{
    char buf[4096];
    while (read(pub_fd, buf, sizeof buf) > 0)
        ;
}

/* One epoll pass; returns after at most timeout_ms. */
static void poll_once(int timeout_ms)
{
    static struct epoll_event evs[4096];
    int n = epoll_wait(ep, evs, 4096, timeout_ms);
    /* --yield, polling with nothing to read: a server loop thread placed
     * on this CPU (bench/ws-scale.sh -P) runs first, rather than wait for
     * the scheduler to take the CPU back from this spin at its next tick. */
    if (n == 0 && !timeout_ms && yield)
        sched_yield();
    uint64_t t = n > 0 ? now_ns() : 0;
    for (int k = 0; k < n; k++) {
        if (evs[k].data.u32 == UINT32_MAX)
            drain_pub();
        else
            on_event(evs[k].data.u32, evs[k].events, t);
    }
}

/* Opens every closed slot, at most 256 handshakes in flight, then waits for
 * the greetings (ws) so that the set is idle. */
static void fill(int want_greeting)
{
    uint64_t deadline = now_ns() + 60000000000ull;
    for (int i = 0; i < nconn; i++) {
        if (cls[i].state != ST_DEAD)
            continue;
        while (ninflight >= 256) {
            poll_once(100);
            if (now_ns() > deadline)
                die("connecting took over 60 s");
        }
        cl_open(i);
    }
    while (ninflight || nready < nconn) {
        poll_once(100);
        if (now_ns() > deadline)
            die("connecting took over 60 s");
        for (int i = 0; i < nconn && nready + ninflight < nconn; i++)
            if (cls[i].state == ST_DEAD && ninflight < 256)
                cl_open(i); /* refused under load (accept queue full): again */
    }
    if (!want_greeting || kind_sse)
        return;
    for (;;) {
        int missing = 0;
        for (int i = 0; i < nconn; i++)
            missing += cls[i].got < 1;
        if (!missing)
            break;
        poll_once(100);
        if (now_ns() > deadline)
            die("greetings missing after 60 s");
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(uint64_t *v, size_t n, double p)
{
    size_t k = (size_t)(p * (double)n);
    if (k >= n)
        k = n - 1;
    return (double)v[k] / 1e6;
}

static void publish(int r)
{
    char body[65536];
    if (msg_size < 8 || msg_size > (int)sizeof body)
        die("--size between 8 and 65536");
    snprintf(body, sizeof body, "R%06d", r);
    memset(body + 7, 'x', (size_t)msg_size - 7);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST /hub/publish/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n", topic,
                      msg_size);
    /* Blocking for the send only: the head and body are small next to the socket buffer. */
    int fl = fcntl(pub_fd, F_GETFL);
    fcntl(pub_fd, F_SETFL, fl & ~O_NONBLOCK);
    if (write(pub_fd, head, (size_t)hn) != hn || write(pub_fd, body, (size_t)msg_size) != msg_size)
        die("publish write failed");
    fcntl(pub_fd, F_SETFL, fl | O_NONBLOCK);
}

static void fanout(void)
{
    long rss0 = rss_kib();
    uint64_t t0 = now_ns();
    fill(1);
    double conn_s = (double)(now_ns() - t0) / 1e9;
    usleep(500000);
    poll_once(0);
    long rss1 = rss_kib();
    printf("%s%s: %d subscribers connected in %.1f s; server RSS %ld KiB -> %ld KiB: %.1f KiB per connection\n",
           kind_sse ? "sse" : "ws", deflate_ext ? "+deflate" : "", nconn, conn_s, rss0, rss1,
           (double)(rss1 - rss0) / nconn);
    for (uint64_t end = now_ns() + (uint64_t)hold_s * 1000000000ull; now_ns() < end;)
        poll_once(100);
    pub_fd = tcp_connect(0);
    if (pub_fd < 0)
        die("publisher connect");
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, pub_fd, &e);
    uint64_t *round_ns = calloc((size_t)rounds, sizeof *round_ns);
    uint64_t *all_ns = calloc((size_t)rounds * (size_t)nconn, sizeof *all_ns);
    size_t nall = 0;
    double busy_ms = 0;
    static task_cpu ta[MAX_TASKS], tb[MAX_TASKS];
    int nta = tasks_read(ta);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    static long long busy0[MAX_CPUS], busy1[MAX_CPUS];
    int ncpu = cpus_busy(busy0);
    uint32_t base = kind_sse ? 0 : 1; /* ws: the greeting was message 1 */
    for (int r = 0; r < rounds; r++) {
        uint32_t want = base + (uint32_t)r + 1;
        nreached = 0;
        for (int i = 0; i < nconn; i++)
            nreached += cls[i].state == ST_READY && cls[i].got >= want;
        round_want = want;
        double cpu0 = cpu_ms();
        uint64_t ts = now_ns();
        publish(r);
        while (nreached < nconn) {
            poll_once(block ? 100 : 0);
            if (now_ns() - ts > 10000000000ull) {
                fprintf(stderr, "round %d: %d subscribers still waiting after 10 s\n", r, nconn - nreached);
                exit(1);
            }
        }
        round_want = UINT32_MAX;
        for (int i = 0; i < nconn; i++)
            if (cls[i].state != ST_READY)
                die("a subscriber closed during the round");
        uint64_t last = 0;
        for (int i = 0; i < nconn; i++) {
            uint64_t d = cls[i].recv_ns - ts;
            all_ns[nall++] = d;
            if (d > last)
                last = d;
        }
        round_ns[r] = last;
        busy_ms += cpu_ms() - cpu0;
        usleep(50000); /* rounds apart: one broadcast at a time */
        poll_once(0);
    }
    getrusage(RUSAGE_SELF, &ru1);
    cpus_busy(busy1);
    int ntb = tasks_read(tb);
    long rss2 = rss_kib();
    qsort(round_ns, (size_t)rounds, sizeof *round_ns, cmp_u64);
    qsort(all_ns, nall, sizeof *all_ns, cmp_u64);
    printf("%s%s: publish -> all %d received (%d rounds of %d bytes): median %.1f ms, p99 %.1f ms, max %.1f ms\n",
           kind_sse ? "sse" : "ws", deflate_ext ? "+deflate" : "", nconn, rounds, msg_size,
           pct_ms(round_ns, (size_t)rounds, 0.5), pct_ms(round_ns, (size_t)rounds, 0.99),
           (double)round_ns[rounds - 1] / 1e6);
    printf("%s%s: single deliveries (%zu): median %.1f ms, p99 %.1f ms; server RSS after the rounds %ld KiB "
           "(%.1f KiB per connection)\n",
           kind_sse ? "sse" : "ws", deflate_ext ? "+deflate" : "", nall, pct_ms(all_ns, nall, 0.5),
           pct_ms(all_ns, nall, 0.99), rss2, (double)(rss2 - rss0) / nconn);
    printf("%s%s: server CPU time per broadcast %.1f ms (user + system, /proc; clock ticks of 10 ms, "
           "so averaged over the rounds)\n",
           kind_sse ? "sse" : "ws", deflate_ext ? "+deflate" : "", busy_ms / rounds);
    tasks_report(ta, nta, tb, ntb, rounds);
    double self_ms = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e3 +
                     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e3;
    printf("load generator CPU per broadcast %.1f ms (the 50 ms pauses between rounds included)\n", self_ms / rounds);
    printf("CPUs busy per broadcast (/proc/stat: every process, softirq and ksoftirqd included):");
    for (int i = 0; i < ncpu; i++)
        printf(" cpu%d %.1f ms", i, (double)(busy1[i] - busy0[i]) * 1000.0 / (double)sysconf(_SC_CLK_TCK) / rounds);
    printf("\n");
    free(round_ns);
    free(all_ns);
}

static void churn(void)
{
    long rss0 = rss_kib();
    fill(0);
    long first = rss_kib(), min = first, max = first, last = first;
    printf("churn: %d %s subscribers open, server RSS %ld KiB (idle %ld)\n", nconn, kind_sse ? "sse" : "ws",
           first, rss0);
    fflush(stdout);
    uint64_t start = now_ns(), next_sample = start + 1000000000ull;
    unsigned long long opened = 0;
    unsigned samples = 0;
    unsigned seed = 12345;
    int per_tick = churn_rate / 10 > 0 ? churn_rate / 10 : 1;
    while (now_ns() - start < (uint64_t)churn_s * 1000000000ull) {
        for (int k = 0; k < per_tick; k++) {
            seed = seed * 1103515245u + 12345u;
            int i = (int)((seed >> 8) % (unsigned)nconn);
            if (cls[i].state == ST_READY || cls[i].state == ST_DEAD) {
                cl_close(i);
                cl_open(i);
                opened++;
            }
        }
        uint64_t tick_end = now_ns() + 100000000ull;
        while (now_ns() < tick_end)
            poll_once(10);
        if (now_ns() >= next_sample) {
            next_sample += 1000000000ull;
            last = rss_kib();
            if (last < min)
                min = last;
            if (last > max)
                max = last;
            if (++samples % 10 == 0) /* every sample counts in min/max; one line in ten */
                printf("churn: t=%3.0f s rss=%ld KiB open=%d opened=%llu\n", (double)(now_ns() - start) / 1e9,
                       last, nready, opened);
            fflush(stdout);
        }
    }
    fill(0);
    printf("churn: %d s, %llu connections replaced; server RSS first %ld KiB, min %ld, max %ld, last %ld\n",
           churn_s, opened, first, min, max, last);
    printf("churn: closed by the server: %lu after the handshake, %lu before the response\n", nlost_ready,
           nlost_head);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--deflate"))
            deflate_ext = 1;
        else if (!strcmp(a, "--block"))
            block = 1;
        else if (!strcmp(a, "--yield"))
            yield = 1;
        else if (!v)
            die("usage: see the comment at the top of bench/ws_scale_client.c");
        else if (!strcmp(a, "--port"))
            port = atoi(v), i++;
        else if (!strcmp(a, "--pid"))
            server_pid = atol(v), i++;
        else if (!strcmp(a, "--kind"))
            kind_sse = !strcmp(v, "sse"), i++;
        else if (!strcmp(a, "-n"))
            nconn = atoi(v), i++;
        else if (!strcmp(a, "--rounds"))
            rounds = atoi(v), i++;
        else if (!strcmp(a, "--size"))
            msg_size = atoi(v), i++;
        else if (!strcmp(a, "--topic"))
            topic = v, i++;
        else if (!strcmp(a, "--churn"))
            churn_s = atoi(v), i++;
        else if (!strcmp(a, "--hold"))
            hold_s = atoi(v), i++;
        else if (!strcmp(a, "--churn-rate"))
            churn_rate = atoi(v), i++;
        else
            die("unknown option");
    }
    if (!port || !server_pid || nconn < 1 || rounds < 1)
        die("--port and --pid are required");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)nconn + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)nconn + 64)
            die("RLIMIT_NOFILE too low (ulimit -n)");
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    cls = calloc((size_t)nconn, sizeof *cls);
    for (int i = 0; i < nconn; i++) {
        cls[i].fd = -1;
        cls[i].state = ST_DEAD;
    }
    if (churn_s)
        churn();
    else
        fanout();
    for (int i = 0; i < nconn; i++)
        if (cls[i].fd >= 0)
            close(cls[i].fd);
    if (pub_fd >= 0)
        close(pub_fd);
    return 0;
}
