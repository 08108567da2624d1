/* Prometheus metrics and the health check.
 *
 * Each thread that finishes requests counts them in a table of its own
 * (found through a thread-local pointer; only that thread writes it, with
 * relaxed stores), so the hot path takes no lock and shares no cache line.
 * A scrape walks every thread's table and adds them up; it may see a count
 * one request old, never a torn one. Gauges (connections, the pool, loop
 * lag, coroutines) are read from the server's own structures at scrape
 * time. */
#include "app/app.h"
#include "app/ops.h"
#include "app/request_state.h"
#include "http/server.h"
#include "runtime/coro.h"
#include "runtime/numfmt.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"};
#define NMETHODS 8

/* Request duration buckets (seconds); the last is +Inf. */
static const uint64_t bucket_ns[] = {500000,    1000000,   2500000,    5000000,    10000000,
                                     25000000,  50000000,  100000000,  250000000,  500000000,
                                     1000000000, 2500000000, 5000000000, 10000000000};
static const char *const bucket_le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                        "0.1",    "0.25",  "0.5",    "1",     "2.5",  "5",    "10"};
#define NBUCKETS 15

#define NCOUNTERS 512 /* (endpoint, method, status) per thread */
#define NHISTS 256    /* endpoints per thread */

typedef struct counter {
    const char *endpoint; /* NULL: free slot */
    uint16_t status;
    uint8_t method;
    uint64_t n;
} counter;

typedef struct hist {
    const char *endpoint;
    uint64_t count, sum_ns;
    uint64_t buckets[NBUCKETS];
} hist;

typedef struct mthread {
    struct mthread *next;
    uint64_t started, finished, ws_opened, ws_closed, overflow;
    counter counters[NCOUNTERS];
    hist hists[NHISTS];
} mthread;

static pthread_mutex_t threads_mu = PTHREAD_MUTEX_INITIALIZER;
static mthread *threads;
static __thread mthread *tls_m;

static mthread *me(void)
{
    if (tls_m)
        return tls_m;
    mthread *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_lock(&threads_mu);
    m->next = threads;
    __atomic_store_n(&threads, m, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&threads_mu);
    return tls_m = m;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define BUMP(x, d) __atomic_store_n(&(x), (x) + (d), __ATOMIC_RELAXED)

void vial_metrics_begin(void)
{
    mthread *m = me();
    if (m)
        BUMP(m->started, 1);
}

void vial_metrics_ws(int delta)
{
    mthread *m = me();
    if (m) {
        if (delta > 0)
            BUMP(m->ws_opened, 1);
        else
            BUMP(m->ws_closed, 1);
    }
}

static unsigned method_index(const char *m)
{
    for (unsigned i = 0; i < NMETHODS - 1; i++)
        if (!strcmp(m, methods[i]))
            return i;
    return NMETHODS - 1;
}

static size_t hash_ptr(const void *p, unsigned a, unsigned b)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull ^ ((uint64_t)a << 16 | b);
    return (size_t)(x ^ (x >> 29));
}

void vial_metrics_end(vial_req *rq, const char *endpoint, uint64_t dur)
{
    mthread *m = me();
    if (!m)
        return;
    BUMP(m->finished, 1);
    unsigned mi = method_index(vial_req_method(rq));
    unsigned st = (unsigned)rq->res.status;
    /* Endpoint names are the rules' own strings (or one static ""): the
     * pointer identifies the endpoint. A full table counts in overflow. */
    size_t i = hash_ptr(endpoint, mi, st) % NCOUNTERS;
    for (unsigned probe = 0; probe < NCOUNTERS; probe++, i = (i + 1) % NCOUNTERS) {
        counter *c = &m->counters[i];
        if (!c->endpoint) {
            c->status = (uint16_t)st;
            c->method = (uint8_t)mi;
            c->n = 1;
            __atomic_store_n(&c->endpoint, endpoint, __ATOMIC_RELEASE);
            break;
        }
        if (c->endpoint == endpoint && c->method == mi && c->status == st) {
            BUMP(c->n, 1);
            break;
        }
        if (probe == NCOUNTERS - 1)
            BUMP(m->overflow, 1);
    }
    i = hash_ptr(endpoint, 0, 0) % NHISTS;
    for (unsigned probe = 0; probe < NHISTS; probe++, i = (i + 1) % NHISTS) {
        hist *h = &m->hists[i];
        if (!h->endpoint) {
            memset(h->buckets, 0, sizeof h->buckets);
            h->count = h->sum_ns = 0;
            __atomic_store_n(&h->endpoint, endpoint, __ATOMIC_RELEASE);
        } else if (h->endpoint != endpoint) {
            continue;
        }
        unsigned b = 0;
        while (b < NBUCKETS - 1 && dur > bucket_ns[b])
            b++;
        BUMP(h->buckets[b], 1);
        BUMP(h->sum_ns, dur);
        BUMP(h->count, 1);
        break;
    }
}

/* --- the scrape ---------------------------------------------------------- */

static void out_u64(vial_res *rs, uint64_t v)
{
    char b[VIAL_FMT_INT_SIZE];
    vial_res_append(rs, b, vial_fmt_u64(b, v));
}

static void out_s(vial_res *rs, const char *s)
{
    vial_res_append(rs, s, strlen(s));
}

/* Seconds from ns, "12.345678901" without floating point. */
static void out_secs(vial_res *rs, uint64_t ns)
{
    out_u64(rs, ns / 1000000000u);
    char frac[11] = ".";
    uint64_t f = ns % 1000000000u;
    for (int i = 9; i >= 1; i--, f /= 10)
        frac[i] = (char)('0' + f % 10);
    frac[10] = 0;
    out_s(rs, frac);
}

/* A label value: backslash, quote and newline escaped (exposition format). */
static void out_label(vial_res *rs, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            vial_res_append(rs, "\\", 1);
        if (*v == '\n')
            out_s(rs, "\\n");
        else
            vial_res_append(rs, v, 1);
    }
}

static void gauge(vial_res *rs, const char *name, const char *help, uint64_t v)
{
    out_s(rs, "# HELP ");
    out_s(rs, name);
    out_s(rs, " ");
    out_s(rs, help);
    out_s(rs, "\n# TYPE ");
    out_s(rs, name);
    out_s(rs, " gauge\n");
    out_s(rs, name);
    out_s(rs, " ");
    out_u64(rs, v);
    out_s(rs, "\n");
}

/* Merged figures of one (endpoint, method, status) or one endpoint. */
typedef struct merged {
    const char *endpoint;
    unsigned method, status;
    uint64_t n, sum_ns, buckets[NBUCKETS];
} merged;

static merged *find_or_add(merged *arr, size_t *n, size_t cap, const char *ep, unsigned mi, unsigned st)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i].endpoint == ep && arr[i].method == mi && arr[i].status == st)
            return &arr[i];
    if (*n == cap)
        return NULL;
    merged *m = &arr[(*n)++];
    memset(m, 0, sizeof *m);
    m->endpoint = ep;
    m->method = mi;
    m->status = st;
    return m;
}

void vial_metrics_render(vial_req *rq)
{
    vial_res *rs = &rq->res;
    size_t cap = NCOUNTERS + NHISTS, nc = 0, nh = 0;
    merged *cs = calloc(cap, sizeof *cs), *hs = calloc(cap, sizeof *hs);
    if (!cs || !hs) {
        free(cs);
        free(hs);
        vial_text(rs, 500, "out of memory\n");
        return;
    }
    uint64_t started = 0, finished = 0, wso = 0, wsc = 0, overflow = 0;
    for (mthread *t = __atomic_load_n(&threads, __ATOMIC_ACQUIRE); t; t = t->next) {
        started += LOAD(t->started);
        finished += LOAD(t->finished);
        wso += LOAD(t->ws_opened);
        wsc += LOAD(t->ws_closed);
        overflow += LOAD(t->overflow);
        for (unsigned i = 0; i < NCOUNTERS; i++) {
            const counter *c = &t->counters[i];
            const char *ep = __atomic_load_n(&c->endpoint, __ATOMIC_ACQUIRE);
            merged *m = ep ? find_or_add(cs, &nc, cap, ep, c->method, c->status) : NULL;
            if (m)
                m->n += LOAD(c->n);
        }
        for (unsigned i = 0; i < NHISTS; i++) {
            const hist *h = &t->hists[i];
            const char *ep = __atomic_load_n(&h->endpoint, __ATOMIC_ACQUIRE);
            merged *m = ep ? find_or_add(hs, &nh, cap, ep, 0, 0) : NULL;
            if (!m)
                continue;
            m->n += LOAD(h->count);
            m->sum_ns += LOAD(h->sum_ns);
            for (unsigned b = 0; b < NBUCKETS; b++)
                m->buckets[b] += LOAD(h->buckets[b]);
        }
    }
    vial_res_status(rs, 200);
    vial_res_set_header(rs, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    out_s(rs, "# HELP vial_requests_total Requests answered, by endpoint, method and status.\n"
              "# TYPE vial_requests_total counter\n");
    for (size_t i = 0; i < nc; i++) {
        out_s(rs, "vial_requests_total{endpoint=\"");
        out_label(rs, cs[i].endpoint);
        out_s(rs, "\",method=\"");
        out_s(rs, methods[cs[i].method]);
        out_s(rs, "\",status=\"");
        out_u64(rs, cs[i].status);
        out_s(rs, "\"} ");
        out_u64(rs, cs[i].n);
        out_s(rs, "\n");
    }
    out_s(rs, "# HELP vial_request_duration_seconds Time from the request's head to its response, "
              "by endpoint.\n# TYPE vial_request_duration_seconds histogram\n");
    for (size_t i = 0; i < nh; i++) {
        uint64_t cum = 0;
        for (unsigned b = 0; b < NBUCKETS; b++) {
            cum += hs[i].buckets[b];
            out_s(rs, "vial_request_duration_seconds_bucket{endpoint=\"");
            out_label(rs, hs[i].endpoint);
            out_s(rs, "\",le=\"");
            out_s(rs, b < NBUCKETS - 1 ? bucket_le[b] : "+Inf");
            out_s(rs, "\"} ");
            out_u64(rs, cum);
            out_s(rs, "\n");
        }
        out_s(rs, "vial_request_duration_seconds_sum{endpoint=\"");
        out_label(rs, hs[i].endpoint);
        out_s(rs, "\"} ");
        out_secs(rs, hs[i].sum_ns);
        out_s(rs, "\nvial_request_duration_seconds_count{endpoint=\"");
        out_label(rs, hs[i].endpoint);
        out_s(rs, "\"} ");
        out_u64(rs, hs[i].n);
        out_s(rs, "\n");
    }
    free(cs);
    free(hs);
    /* This scrape itself is in flight. */
    gauge(rs, "vial_requests_in_flight", "Requests being served now.", started > finished ? started - finished : 0);
    gauge(rs, "vial_websocket_sessions", "Websocket sessions open now.", wso > wsc ? wso - wsc : 0);
    out_s(rs, "# HELP vial_metrics_overflow_total Requests not counted by endpoint (a thread's table "
              "was full).\n# TYPE vial_metrics_overflow_total counter\nvial_metrics_overflow_total ");
    out_u64(rs, overflow);
    out_s(rs, "\n");
    vial_server *s = rq->server;
    if (!s)
        return;
    uint64_t conns = 0, coros = 0;
    for (unsigned i = 0; i < s->nthreads; i++) {
        conns += __atomic_load_n(&s->threads[i].nconns, __ATOMIC_RELAXED);
        if (s->threads[i].loop.coro_pool)
            coros += vial_coro_pool_in_use(s->threads[i].loop.coro_pool);
    }
    gauge(rs, "vial_open_connections", "Client connections open now.", conns);
    gauge(rs, "vial_coroutines", "Coroutine stacks in use now.", coros);
    gauge(rs, "vial_pool_queued", "Sync jobs waiting for a worker now.", vial_pool_queued(s->pool));
    uint64_t jobs, wait_ns;
    vial_pool_wait_stats(s->pool, &jobs, &wait_ns);
    out_s(rs, "# HELP vial_pool_wait_seconds Time sync jobs waited in the queue for a worker.\n"
              "# TYPE vial_pool_wait_seconds summary\nvial_pool_wait_seconds_sum ");
    out_secs(rs, wait_ns);
    out_s(rs, "\nvial_pool_wait_seconds_count ");
    out_u64(rs, jobs);
    out_s(rs, "\n# HELP vial_event_loop_lag_seconds The most a timer fired late on each loop since the "
              "last scrape.\n# TYPE vial_event_loop_lag_seconds gauge\n");
    for (unsigned i = 0; i < s->nthreads; i++) {
        out_s(rs, "vial_event_loop_lag_seconds{loop=\"");
        out_u64(rs, i);
        out_s(rs, "\"} ");
        out_secs(rs, __atomic_exchange_n(&s->threads[i].loop.lag_max_ns, 0, __ATOMIC_RELAXED));
        out_s(rs, "\n");
    }
}

void vial_health_render(vial_req *rq)
{
    vial_server *s = rq->server;
    int draining = s && atomic_load(&s->draining);
    if (draining)
        vial_text(&rq->res, 503, "draining\n");
    else
        vial_text(&rq->res, 200, "ok\n");
}
