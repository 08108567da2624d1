/* Prometheus metrics and the health check.
 *
 * Each thread that finishes requests counts them in a table of its own
 * (found through a thread-local pointer; only that thread writes it, with
 * relaxed stores), so the hot path takes no lock and shares no cache line.
 * The table is an array indexed by the endpoint's stats id (vial_run numbers
 * the rules), so counting is an index, not a lookup.
 * A scrape walks every thread's table and adds them up; it may see a count
 * one request old, never a torn one. Gauges (connections, the pool, loop
 * lag, coroutines) are read from the server's own structures at scrape
 * time. */
#include "app/app.h"
#include "app/metrics.h"
#include "app/hub.h"
#include "app/request_state.h"
#include "http/server.h"
#include "runtime/coro.h"
#include "runtime/driver.h"
#include "runtime/numfmt.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"};
#define NMETHODS 8
#define NBUCKETS VIAL_METRICS_NBUCKETS
#define NPAIRS VIAL_METRICS_NPAIRS

/* Request duration buckets (ns); the last is +Inf. */
const uint64_t vial_metrics_bound_ns[NBUCKETS] = {
    500000,    1000000,   2500000,   5000000,    10000000,   25000000,   50000000, 100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000, UINT64_MAX};
static const char *const bucket_le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                        "0.1",    "0.25",  "0.5",    "1",     "2.5",  "5",    "10"};
/* [k]: the first bucket whose bound is >= 2^k (test_metrics checks it
 * against a linear search). */
const uint8_t vial_metrics_log2_bucket[64] = {
    0, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  1,  2,  2,
    3, 4,  5,  6,  7,  8,  9,  10, 11, 11, 12, 13, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14};

typedef vial_ep_stats ep_stats;
typedef vial_mthread mthread;

static pthread_mutex_t threads_mu = PTHREAD_MUTEX_INITIALIZER;
static mthread *threads;
static unsigned neps; /* set by vial_metrics_init before serving */
__thread vial_mthread *vial_metrics_tls __attribute__((tls_model("initial-exec")));

void vial_metrics_init(unsigned nids)
{
    neps = nids;
}

vial_mthread *vial_metrics_thread(void)
{
    if (vial_metrics_tls)
        return vial_metrics_tls;
    mthread *m = calloc(1, sizeof *m + neps * sizeof(ep_stats));
    if (!m)
        return NULL;
    m->n = neps;
    vial_loop *loop = vial_loop_current();
    m->now = loop ? &loop->now : NULL;
    pthread_mutex_lock(&threads_mu);
    m->next = threads;
    __atomic_store_n(&threads, m, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&threads_mu);
    return vial_metrics_tls = m;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define BUMP(x, d) VIAL_METRICS_BUMP(x, d)

void vial_metrics_ws(int delta)
{
    mthread *m = vial_metrics_thread();
    if (m) {
        if (delta > 0)
            BUMP(m->ws_opened, 1);
        else
            BUMP(m->ws_closed, 1);
    }
}

unsigned vial_metrics_method_slow(const char *p, size_t n)
{
    for (unsigned i = 0; i < NMETHODS - 1; i++)
        if (strlen(methods[i]) == n && !memcmp(p, methods[i], n))
            return i;
    return NMETHODS - 1;
}

void vial_metrics_first(vial_ep_stats *e, const char *endpoint)
{
    __atomic_store_n(&e->endpoint, endpoint, __ATOMIC_RELEASE);
}

/* Pair 0 missed: the others, or a free slot (published after its count). */
void vial_metrics_pair(vial_mthread *m, vial_ep_stats *e, uint32_t key)
{
    for (unsigned i = 0; i < NPAIRS; i++) {
        if (e->pair_key[i] == key) {
            BUMP(e->pair_n[i], 1);
            return;
        }
        if (!e->pair_key[i]) {
            e->pair_n[i] = 1;
            __atomic_store_n(&e->pair_key[i], key, __ATOMIC_RELEASE);
            return;
        }
    }
    BUMP(m->overflow_pairs, 1);
}

/* --- the scrape ---------------------------------------------------------- */

static void out_u64(vial_res *rs, uint64_t v)
{
    char b[VIAL_FMT_INT_SIZE];
    vial_res_append_body(rs, b, vial_fmt_u64(b, v));
}

static void out_s(vial_res *rs, const char *s)
{
    vial_res_append_body(rs, s, strlen(s));
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
            vial_res_append_body(rs, "\\", 1);
        if (*v == '\n')
            out_s(rs, "\\n");
        else
            vial_res_append_body(rs, v, 1);
    }
}

static void source_append(void *ctx, const char *p, size_t n)
{
    vial_res_append_body(ctx, p, n);
}

/* One unlabelled figure of the given type ("gauge", "counter"). */
static void figure(vial_res *rs, const char *type, const char *name, const char *help, uint64_t v)
{
    out_s(rs, "# HELP ");
    out_s(rs, name);
    out_s(rs, " ");
    out_s(rs, help);
    out_s(rs, "\n# TYPE ");
    out_s(rs, name);
    out_s(rs, " ");
    out_s(rs, type);
    out_s(rs, "\n");
    out_s(rs, name);
    out_s(rs, " ");
    out_u64(rs, v);
    out_s(rs, "\n");
}

/* One endpoint's figures, all threads added up. */
typedef struct merged {
    const char *endpoint;
    uint64_t count, sum_ns, buckets[NBUCKETS];
    uint32_t pair_key[NPAIRS * 4];
    uint64_t pair_n[NPAIRS * 4];
    unsigned npairs;
} merged;

static void gauge(vial_res *rs, const char *name, const char *help, uint64_t v)
{
    figure(rs, "gauge", name, help, v);
}

static void counter(vial_res *rs, const char *name, const char *help, uint64_t v)
{
    figure(rs, "counter", name, help, v);
}

/* The broadcast hub's totals (hub.c keeps them process-wide). */
static void hub_render(vial_res *rs)
{
    vial_hub_counts h;
    vial_hub_stats(&h);
    counter(rs, "vial_hub_published_total", "Messages published to the hub.", h.published);
    counter(rs, "vial_hub_delivered_total", "Hub messages handed to a subscriber.", h.delivered);
    counter(rs, "vial_hub_dropped_total", "Hub messages dropped from a full subscriber queue.", h.dropped);
    counter(rs, "vial_hub_disconnected_total", "Hub subscribers ended for being slow.", h.disconnected);
    gauge(rs, "vial_hub_subscribers", "Hub subscriptions open now.", h.subscribers);
    counter(rs, "vial_hub_redis_published_total", "Hub messages written to Redis.", h.redis_published);
    counter(rs, "vial_hub_redis_received_total", "Hub messages of other instances received from Redis.",
            h.redis_received);
    counter(rs, "vial_hub_redis_reconnects_total", "Hub Redis subscriptions made again after a loss.",
            h.redis_reconnects);
    counter(rs, "vial_hub_redis_dropped_total", "Hub messages not written to Redis (outbox full, refused).",
            h.redis_dropped);
}

void vial_metrics_render(vial_req *rq)
{
    vial_res *rs = &rq->res;
    merged *ms = calloc(neps ? neps : 1, sizeof *ms);
    if (!ms) {
        vial_text(rs, 500, "out of memory\n");
        return;
    }
    uint64_t started = 0, finished = 0, wso = 0, wsc = 0, overflow = 0;
    for (mthread *t = __atomic_load_n(&threads, __ATOMIC_ACQUIRE); t; t = t->next) {
        started += LOAD(t->started);
        finished += LOAD(t->overflow_ep);
        wso += LOAD(t->ws_opened);
        wsc += LOAD(t->ws_closed);
        overflow += LOAD(t->overflow_ep) + LOAD(t->overflow_pairs);
        for (unsigned id = 0; id < neps && id < t->n; id++) {
            const ep_stats *e = &t->eps[id];
            const char *ep = __atomic_load_n(&e->endpoint, __ATOMIC_ACQUIRE);
            if (!ep)
                continue;
            merged *m = &ms[id];
            m->endpoint = ep;
            m->sum_ns += LOAD(e->sum_ns);
            for (unsigned b = 0; b < NBUCKETS; b++) {
                uint64_t n = LOAD(e->buckets[b]);
                m->buckets[b] += n;
                m->count += n;
                finished += n;
            }
            for (unsigned i = 0; i < NPAIRS; i++) {
                uint32_t key = __atomic_load_n(&e->pair_key[i], __ATOMIC_ACQUIRE);
                if (!key)
                    break;
                unsigned j = 0;
                while (j < m->npairs && m->pair_key[j] != key)
                    j++;
                if (j == m->npairs) {
                    if (j == NPAIRS * 4) {
                        overflow += LOAD(e->pair_n[i]);
                        continue;
                    }
                    m->pair_key[m->npairs++] = key;
                }
                m->pair_n[j] += LOAD(e->pair_n[i]);
            }
        }
    }
    vial_res_set_status(rs, 200);
    vial_res_set_header(rs, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    out_s(rs, "# HELP vial_requests_total Requests answered, by endpoint, method and status.\n"
              "# TYPE vial_requests_total counter\n");
    for (unsigned id = 0; id < neps; id++) {
        for (unsigned j = 0; j < ms[id].npairs; j++) {
            out_s(rs, "vial_requests_total{endpoint=\"");
            out_label(rs, ms[id].endpoint);
            out_s(rs, "\",method=\"");
            out_s(rs, methods[ms[id].pair_key[j] >> 16]);
            out_s(rs, "\",status=\"");
            out_u64(rs, ms[id].pair_key[j] & 0xffff);
            out_s(rs, "\"} ");
            out_u64(rs, ms[id].pair_n[j]);
            out_s(rs, "\n");
        }
    }
    out_s(rs, "# HELP vial_request_duration_seconds Time from the request's head to its response, "
              "by endpoint.\n# TYPE vial_request_duration_seconds histogram\n");
    for (unsigned id = 0; id < neps; id++) {
        const merged *m = &ms[id];
        if (!m->endpoint)
            continue;
        uint64_t cum = 0;
        for (unsigned b = 0; b < NBUCKETS; b++) {
            cum += m->buckets[b];
            out_s(rs, "vial_request_duration_seconds_bucket{endpoint=\"");
            out_label(rs, m->endpoint);
            out_s(rs, "\",le=\"");
            out_s(rs, b < NBUCKETS - 1 ? bucket_le[b] : "+Inf");
            out_s(rs, "\"} ");
            out_u64(rs, cum);
            out_s(rs, "\n");
        }
        out_s(rs, "vial_request_duration_seconds_sum{endpoint=\"");
        out_label(rs, m->endpoint);
        out_s(rs, "\"} ");
        out_secs(rs, m->sum_ns);
        out_s(rs, "\nvial_request_duration_seconds_count{endpoint=\"");
        out_label(rs, m->endpoint);
        out_s(rs, "\"} ");
        out_u64(rs, m->count);
        out_s(rs, "\n");
    }
    free(ms);
    /* This scrape itself is in flight. */
    gauge(rs, "vial_requests_in_flight", "Requests being served now.", started > finished ? started - finished : 0);
    gauge(rs, "vial_websocket_sessions", "Websocket sessions open now.", wso > wsc ? wso - wsc : 0);
    hub_render(rs);
    out_s(rs, "# HELP vial_metrics_overflow_total Requests not counted by endpoint (a thread's table "
              "was full).\n# TYPE vial_metrics_overflow_total counter\nvial_metrics_overflow_total ");
    out_u64(rs, overflow);
    out_s(rs, "\n");
    counter(rs, "vial_requests_shed_total", "Requests answered 503 by load shedding (--shed-target-ms).",
            vial_shed_total());
    /* The client libraries' pools (PostgreSQL, Redis): their sources. */
    vial_metrics_out mo = {source_append, rs};
    vial_metrics_sources_write(&mo);
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
    /* Per loop: a loop whose io_uring was refused runs on epoll, and the
     * listening line names only the first loop's. */
    out_s(rs, "# HELP vial_event_loop_backend The backend each event loop runs on (always 1).\n"
              "# TYPE vial_event_loop_backend gauge\n");
    for (unsigned i = 0; i < s->nthreads; i++) {
        out_s(rs, "vial_event_loop_backend{loop=\"");
        out_u64(rs, i);
        out_s(rs, "\",backend=\"");
        out_s(rs, s->threads[i].loop.backend ? s->threads[i].loop.backend->name : "none");
        out_s(rs, "\"} 1\n");
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
