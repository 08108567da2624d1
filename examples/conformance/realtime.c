/* The realtime fixtures: SSE streams, websockets and plain streams of a
 * broadcast hub's topics, publishers (sync views), a replay ring for
 * Last-Event-ID, and the hub's counters (tests/blackbox/test_sse.py,
 * test_hub.py). */
#include <vial.h>
#include <vial/realtime.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static vial_hub *hub;

/* The last RING events published through /hub/publish, for replay. */
#define RING 256
static struct {
    pthread_mutex_t lock;
    unsigned long long next_id;
    struct {
        unsigned long long id;
        char topic[32];
        char *data;
        size_t len;
    } ev[RING];
} ring = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 1};

/* Which thread serves the connection: tests check subscribers span loops. */
static void thread_header(vial_res *rs)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%ld", (long)syscall(SYS_gettid));
    vial_res_add_header(rs, "X-Thread", tid);
}

static int replay(vial_req *rq, vial_res *rs, const char *last, void *arg)
{
    (void)rq;
    const char *topic = arg;
    unsigned long long after = strtoull(last, NULL, 10);
    pthread_mutex_lock(&ring.lock);
    unsigned long long first = ring.next_id > RING ? ring.next_id - RING : 1;
    if (after + 1 > first)
        first = after + 1;
    /* Copied out under the lock: the writes await the socket. */
    size_t n = 0;
    struct { char id[24]; char *data; size_t len; } out[RING];
    for (unsigned long long id = first; id < ring.next_id; id++) {
        unsigned slot = (unsigned)(id % RING);
        if (ring.ev[slot].id != id || strcmp(ring.ev[slot].topic, topic))
            continue;
        snprintf(out[n].id, sizeof out[n].id, "%llu", id);
        out[n].data = malloc(ring.ev[slot].len + 1);
        if (!out[n].data)
            break;
        memcpy(out[n].data, ring.ev[slot].data, ring.ev[slot].len);
        out[n].len = ring.ev[slot].len;
        n++;
    }
    pthread_mutex_unlock(&ring.lock);
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        vial_sse_event ev = {.id = out[i].id, .data = out[i].data, .len = out[i].len};
        if (r == 0)
            r = vial_sse_send(rs, &ev);
        free(out[i].data);
    }
    return r;
}

/* GET /hub/sse/<topic>?hb=ms&n=events */
static int hub_sse(vial_req *rq, vial_res *rs) /* async */
{
    int64_t hb, n;
    if (vial_req_arg_int(rq, "hb", 0, 0, 60000, &hb) || vial_req_arg_int(rq, "n", 0, 0, 1000000, &n))
        return vial_abort(rs, 400);
    thread_header(rs);
    vial_sse_opts o = {.heartbeat_ms = (uint32_t)hb, .replay = replay,
                       .arg = (void *)vial_req_param(rq, "topic"), .max_events = (uint64_t)n};
    vial_sse_serve(rq, rs, hub, vial_req_param(rq, "topic"), &o);
    return 0;
}

/* GET /hub/stream/<topic>?n=messages: a plain stream, one line a message. */
static int hub_stream(vial_req *rq, vial_res *rs) /* async */
{
    int64_t n;
    if (vial_req_arg_int(rq, "n", 0, 0, 1000000, &n))
        return vial_abort(rs, 400);
    vial_sub *s = vial_hub_subscribe(rq, hub, vial_req_param(rq, "topic"));
    if (!s)
        return vial_abort(rs, 503);
    thread_header(rs);
    if (vial_stream_begin(rs, 200, "text/plain") != 0)
        return 0;
    vial_sse_event ev;
    for (int64_t i = 0; !n || i < n; i++) {
        if (vial_sub_next(s, &ev, 0) != 0)
            break;
        if (vial_stream_write(rs, ev.data, ev.len) != 0 || vial_stream_write(rs, "\n", 1) != 0)
            break;
    }
    return 0;
}

/* /ws/hub/<topic>: receives the topic; what the peer sends is published. */
static int ws_hub(vial_req *rq, vial_ws *ws)
{
    if (vial_ws_subscribe(ws, hub, vial_req_param(rq, "topic")) < 0)
        return vial_ws_close(ws, 1011, "subscribe failed");
    /* First message: the serving thread (the 101 goes out with it). */
    char tid[40];
    int k = snprintf(tid, sizeof tid, "thread:%ld", (long)syscall(SYS_gettid));
    if (vial_ws_send(ws, VIAL_WS_TEXT, tid, (size_t)k) < 0)
        return 0;
    vial_ws_msg m;
    while (vial_ws_recv(ws, &m) == 0)
        vial_hub_publish(hub, vial_req_param(rq, "topic"), m.data, m.len);
    return 0;
}

/* /ws/hub-pub/<topic>: publishes what the peer sends, binary as binary,
 * without subscribing (a pure publisher: the bounded topics' sender
 * throttling). */
static int ws_hub_pub(vial_req *rq, vial_ws *ws)
{
    vial_ws_msg m;
    while (vial_ws_recv(ws, &m) == 0) {
        if (m.type == VIAL_WS_BINARY)
            vial_hub_publish_binary(hub, vial_req_param(rq, "topic"), m.data, m.len);
        else
            vial_hub_publish(hub, vial_req_param(rq, "topic"), m.data, m.len);
    }
    return 0;
}

/* POST /hub/publish-binary/<topic>: the body as one binary message. */
static int hub_publish_binary(vial_req *rq, vial_res *rs) /* sync */
{
    size_t len;
    const void *body = vial_req_body(rq, &len);
    int r = vial_hub_publish_binary(hub, vial_req_param(rq, "topic"), body, len);
    return r < 0 ? vial_abort(rs, 500) : vial_text(rs, 200, "%d\n", r);
}

/* POST /hub/publish/<topic>?event=name: the body as one event; its id is
 * the ring's next. Sync view: publishes come from a worker thread. */
static int hub_publish(vial_req *rq, vial_res *rs) /* sync */
{
    const char *topic = vial_req_param(rq, "topic");
    size_t len;
    const void *body = vial_req_body(rq, &len);
    char *copy = malloc(len + 1);
    if (!copy || strlen(topic) >= sizeof ring.ev[0].topic) {
        free(copy);
        return vial_abort(rs, 400);
    }
    memcpy(copy, body, len);
    char id[24];
    pthread_mutex_lock(&ring.lock);
    unsigned long long n = ring.next_id++;
    unsigned slot = (unsigned)(n % RING);
    free(ring.ev[slot].data);
    ring.ev[slot].id = n;
    snprintf(ring.ev[slot].topic, sizeof ring.ev[slot].topic, "%s", topic);
    ring.ev[slot].data = copy;
    ring.ev[slot].len = len;
    snprintf(id, sizeof id, "%llu", n);
    vial_sse_event ev = {.event = vial_req_arg(rq, "event"), .id = id, .data = body, .len = len};
    int r = vial_hub_publish_event(hub, topic, &ev); /* under the lock: ring order is hub order */
    pthread_mutex_unlock(&ring.lock);
    if (r == -EINVAL)
        return vial_abort(rs, 400);
    return vial_text(rs, 200, "%s %d\n", id, r);
}

/* POST /hub/flood/<topic>?n=count&size=bytes&tag=t: n messages "seq:<i>:<t>:" padded
 * to size, from this worker thread, as fast as it can. */
static int hub_flood(vial_req *rq, vial_res *rs) /* sync */
{
    int64_t n, size;
    if (vial_req_arg_int(rq, "n", 10, 1, 100000, &n) || vial_req_arg_int(rq, "size", 16, 16, 1 << 20, &size))
        return vial_abort(rs, 400);
    char *buf = malloc((size_t)size);
    if (!buf)
        return vial_abort(rs, 503);
    memset(buf, 'x', (size_t)size);
    const char *tag = vial_req_arg(rq, "tag");
    for (int64_t i = 0; i < n; i++) {
        int k = snprintf(buf, (size_t)size, "seq:%lld:%.8s:", (long long)i, tag ? tag : "");
        buf[k] = 'x';
        vial_hub_publish(hub, vial_req_param(rq, "topic"), buf, (size_t)size);
    }
    free(buf);
    return vial_text(rs, 200, "%lld\n", (long long)n);
}

/* POST /hub/from-thread/<topic>: the body published by a thread of the
 * app's own (no loop, no worker, no request). */
typedef struct thread_pub {
    const char *topic;
    const void *body;
    size_t len;
    int result;
} thread_pub;

static void *publisher_thread(void *arg)
{
    thread_pub *p = arg;
    p->result = vial_hub_publish(hub, p->topic, p->body, p->len);
    return NULL;
}

static int hub_from_thread(vial_req *rq, vial_res *rs) /* sync */
{
    thread_pub p = {vial_req_param(rq, "topic"), NULL, 0, 0};
    p.body = vial_req_body(rq, &p.len);
    pthread_t t;
    if (pthread_create(&t, NULL, publisher_thread, &p) != 0)
        return vial_abort(rs, 503);
    pthread_join(t, NULL);
    return vial_text(rs, 200, "%d\n", p.result);
}

/* GET /firehose?mb=limit: 16 KiB chunks as fast as the client takes them
 * (bench/backpressure.py: a client that stops reading must cost the server
 * its output buffer, not the stream). */
static int firehose(vial_req *rq, vial_res *rs) /* async */
{
    int64_t mb;
    if (vial_req_arg_int(rq, "mb", 1024, 1, 1 << 20, &mb))
        return vial_abort(rs, 400);
    enum { CHUNK = 16384 };
    char *chunk = malloc(CHUNK);
    if (!chunk)
        return vial_abort(rs, 503);
    memset(chunk, 'f', CHUNK);
    if (vial_stream_begin(rs, 200, "application/octet-stream") == 0)
        for (int64_t i = 0; i < mb * 64; i++)
            if (vial_stream_write(rs, chunk, CHUNK) != 0)
                break;
    free(chunk);
    return 0;
}

/* POST /hub/publish-async/<topic>: the body published from an async view
 * (the loop thread itself). */
static int hub_publish_async(vial_req *rq, vial_res *rs) /* async */
{
    size_t len;
    const void *body = vial_req_body(rq, &len);
    int r = vial_hub_publish(hub, vial_req_param(rq, "topic"), body, len);
    return vial_text(rs, 200, "%d\n", r);
}

/* GET /hub/stats: the hub's counters as JSON. */
static int hub_stats(vial_req *rq, vial_res *rs) /* sync */
{
    (void)rq;
    vial_hub_counts c;
    vial_hub_stats(&c);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "published");
    vial_json_int(j, (int64_t)c.published);
    vial_json_key(j, "delivered");
    vial_json_int(j, (int64_t)c.delivered);
    vial_json_key(j, "dropped");
    vial_json_int(j, (int64_t)c.dropped);
    vial_json_key(j, "disconnected");
    vial_json_int(j, (int64_t)c.disconnected);
    vial_json_key(j, "subscribers");
    vial_json_int(j, (int64_t)c.subscribers);
    vial_json_key(j, "redis_published");
    vial_json_int(j, (int64_t)c.redis_published);
    vial_json_key(j, "redis_received");
    vial_json_int(j, (int64_t)c.redis_received);
    vial_json_key(j, "redis_reconnects");
    vial_json_int(j, (int64_t)c.redis_reconnects);
    vial_json_key(j, "redis_dropped");
    vial_json_int(j, (int64_t)c.redis_dropped);
    vial_json_end(j);
    return vial_json_finish(j);
}

/* GET /sse/encode?event=&id=&data=: one event written by vial_sse_send, or
 * 400 with the code when it refuses (CR/LF in a field). */
static int sse_encode(vial_req *rq, vial_res *rs) /* async */
{
    size_t len = 0;
    const char *data = vial_req_arg_n(rq, "data", &len);
    vial_sse_event ev = {.event = vial_req_arg(rq, "event"), .id = vial_req_arg(rq, "id"), .data = data,
                         .len = data ? len : 0};
    if (vial_sse_encode(&ev, NULL, 0) < 0)
        return vial_text(rs, 400, "refused\n");
    if (vial_sse_begin(rs) != 0)
        return 0;
    vial_sse_send(rs, &ev);
    return 0;
}

int conformance_realtime(vial_app *app)
{
    hub = vial_hub_new();
    if (!hub)
        return -1;
    int e = 0;
    /* Several instances as one hub (tests/blackbox/test_hub_redis.py). */
    const char *redis = getenv("CONFORMANCE_HUB_REDIS");
    if (redis && *redis && vial_hub_use_redis(hub, redis, "vialtest:hub:") < 0)
        return -1;
    /* Slow subscribers: a queue of 4, then the policy. */
    e |= vial_hub_set_policy(hub, "slow-drop", VIAL_HUB_DROP_OLDEST, 4);
    e |= vial_hub_set_policy(hub, "slow-close", VIAL_HUB_DISCONNECT, 4);
    /* Byte bounds (tests/blackbox/test_hub_limits.py): a 256 KiB bound;
     * a stall clock of 500 ms; a publisher paced to a 4 MiB-bounded reader. */
    e |= vial_hub_set_policy(hub, "bounded", VIAL_HUB_ABORT, VIAL_HUB_QUEUE_MAX);
    e |= vial_hub_set_limits(hub, "bounded", &(vial_hub_limits){.max_bytes = 256 << 10});
    e |= vial_hub_set_policy(hub, "stalled", VIAL_HUB_ABORT, VIAL_HUB_QUEUE_MAX);
    e |= vial_hub_set_limits(hub, "stalled", &(vial_hub_limits){.max_bytes = 64 << 20, .stall_ms = 500});
    e |= vial_hub_set_policy(hub, "paced", VIAL_HUB_ABORT, VIAL_HUB_QUEUE_MAX);
    e |= vial_hub_set_limits(hub, "paced",
                             &(vial_hub_limits){.max_bytes = 4 << 20, .stall_ms = 5000, .sender_max = 1 << 20});
    e |= vial_ws_route(app, "/ws/hub-pub/<topic>", ws_hub_pub);
    e |= vial_route_sync(app, "POST /hub/publish-binary/<topic>", hub_publish_binary);
    e |= vial_route(app, "GET /hub/sse/<topic>", hub_sse);
    e |= vial_route(app, "GET /hub/stream/<topic>", hub_stream);
    e |= vial_ws_route(app, "/ws/hub/<topic>", ws_hub);
    e |= vial_route_sync(app, "POST /hub/publish/<topic>", hub_publish);
    e |= vial_route_sync(app, "POST /hub/flood/<topic>", hub_flood);
    e |= vial_route(app, "POST /hub/publish-async/<topic>", hub_publish_async);
    e |= vial_route_sync(app, "POST /hub/from-thread/<topic>", hub_from_thread);
    e |= vial_route_sync(app, "GET /hub/stats", hub_stats);
    e |= vial_route(app, "GET /sse/encode", sse_encode);
    e |= vial_route(app, "GET /firehose", firehose);
    return e;
}
