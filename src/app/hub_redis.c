/* The hub across instances: Redis pub/sub under a hub (vial_hub_use_redis).
 *
 * A publish is delivered to this process's subscribers at once (hub.c) and
 * handed here: any thread appends it to the bridge's outbox under a lock and
 * posts the bridge to loop 0 at most once per batch; there, on the loop's
 * own stack, each is queued as a PUBLISH on the loop's shared Redis
 * connection without awaiting the reply (vial_redis_publish), so a batch
 * goes out pipelined and no publisher ever waits. One coroutine on loop 0
 * holds the instance's only subscription (PSUBSCRIBE prefix*) and hands
 * what other instances published to vial_hub_publish_local; the copy of
 * our own publish that Redis sends back carries our origin and is skipped.
 *
 * The outbox is one FIFO and loop 0 drains it in order onto one
 * connection: publishes keep their order per instance. While Redis is
 * unreachable the outbox holds the newest OUTBOX_MAX (the oldest dropped,
 * counted) and is flushed once the subscription is back.
 *
 * Uses the public Redis API only (include/vial/redis.h); without the Redis
 * client vial_hub_use_redis says -ENOTSUP. */
#include "app/hub.h"

#include <errno.h>

#ifndef VIAL_HAVE_REDIS

int vial_hub_use_redis(vial_hub *h, const char *addr, const char *prefix)
{
    (void)h, (void)addr, (void)prefix;
    return -ENOTSUP;
}

void vial_hub_bridge_relay(vial_hub_bridge *b, const char *topic, const vial_sse_event *ev)
{
    (void)b, (void)topic, (void)ev;
}

void vial_hub_bridge_free(vial_hub_bridge *b)
{
    (void)b;
}

void vial_hub_bridge_stats(vial_hub_counts *out)
{
    out->redis_published = out->redis_received = out->redis_reconnects = out->redis_dropped = 0;
}

#else

#include "http/server.h"
#include "runtime/codec.h"
#include "runtime/coro.h"
#include "runtime/driver.h"
#include "runtime/log.h"
#include "runtime/numfmt.h"
#include "vial/redis.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define OUTBOX_MAX 4096
#define BACKOFF_MIN_NS (100ull * 1000000ull)
#define BACKOFF_MAX_NS (5000ull * 1000000ull)
#define ORIGIN_LEN 16

/* Wire form of a message: "V1" origin(16 hex) flags retry "\n" [event "\n"]
 * [id "\n"] data, flags being '0' + (1: event present, 2: id present).
 * Event and id never hold CR or LF (the hub refuses them). A message
 * without this form (redis-cli PUBLISH) is taken as plain data. */
#define WIRE_MAGIC "V1"

typedef struct out_item {
    size_t len;        /* of the payload */
    char *payload;     /* after the channel, in the same block */
    char channel[];
} out_item;

struct vial_hub_bridge {
    vial_hub *hub;
    vial_redis *redis;
    char *prefix;
    size_t prefix_len;
    char *pattern;
    char origin[ORIGIN_LEN + 1];
    vial_loop *loop;      /* loop 0 while the server runs */
    vial_coro *co;        /* the subscriber, on loop 0 */
    pthread_mutex_t lock; /* guards what follows */
    out_item **ring, **batch;
    size_t head, len;
    int up;               /* subscribed: flushing makes sense */
    int posted;
    vial_msg flush_msg;
    vial_hub_bridge *next;
};

static atomic_uint_fast64_t n_published, n_received, n_reconnects, n_dropped;

/* Every bridge, for the service on loop 0. */
static pthread_mutex_t bridges_lock = PTHREAD_MUTEX_INITIALIZER;
static vial_hub_bridge *bridges;

void vial_hub_bridge_stats(vial_hub_counts *out)
{
    out->redis_published = atomic_load(&n_published);
    out->redis_received = atomic_load(&n_received);
    out->redis_reconnects = atomic_load(&n_reconnects);
    out->redis_dropped = atomic_load(&n_dropped);
}

/* --- out: any thread -> loop 0 -> PUBLISH ------------------------------------------------ */

/* Under b->lock. */
static void kick_locked(vial_hub_bridge *b)
{
    if (b->len && b->up && !b->posted && b->loop) {
        b->posted = 1;
        vial_loop_post(b->loop, &b->flush_msg);
    }
}

/* On loop 0, outside any coroutine: vial_redis_publish queues each PUBLISH
 * and returns, so the whole batch is written together. */
static void flush_cb(vial_loop *l, vial_msg *m)
{
    (void)l;
    vial_hub_bridge *b = vial_container_of(m, vial_hub_bridge, flush_msg);
    pthread_mutex_lock(&b->lock);
    b->posted = 0;
    size_t k = 0;
    if (b->up)
        for (; b->len; b->len--, b->head = (b->head + 1) % OUTBOX_MAX)
            b->batch[k++] = b->ring[b->head];
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < k; i++) {
        out_item *it = b->batch[i];
        if (vial_redis_publish(b->redis, it->channel, it->payload, it->len) < 0)
            atomic_fetch_add(&n_dropped, 1);
        else
            atomic_fetch_add(&n_published, 1);
        free(it);
    }
}

static out_item *item_new(vial_hub_bridge *b, const char *topic, const vial_sse_event *ev)
{
    size_t tl = strlen(topic);
    size_t el = ev->event ? strlen(ev->event) + 1 : 0;
    size_t il = ev->id ? strlen(ev->id) + 1 : 0;
    char retry[VIAL_FMT_INT_SIZE];
    size_t rl = vial_fmt_u64(retry, ev->retry_ms);
    size_t len = 2 + ORIGIN_LEN + 1 + rl + 1 + el + il + ev->len;
    out_item *it = malloc(sizeof *it + b->prefix_len + tl + 1 + len);
    if (!it)
        return NULL;
    memcpy(it->channel, b->prefix, b->prefix_len);
    memcpy(it->channel + b->prefix_len, topic, tl + 1);
    char *p = it->payload = it->channel + b->prefix_len + tl + 1;
    it->len = len;
    memcpy(p, WIRE_MAGIC, 2);
    memcpy(p + 2, b->origin, ORIGIN_LEN);
    p += 2 + ORIGIN_LEN;
    *p++ = (char)('0' + (el ? 1 : 0) + (il ? 2 : 0));
    memcpy(p, retry, rl);
    p += rl;
    *p++ = '\n';
    if (el) {
        memcpy(p, ev->event, el - 1);
        p[el - 1] = '\n';
        p += el;
    }
    if (il) {
        memcpy(p, ev->id, il - 1);
        p[il - 1] = '\n';
        p += il;
    }
    if (ev->len)
        memcpy(p, ev->data, ev->len);
    return it;
}

void vial_hub_bridge_relay(vial_hub_bridge *b, const char *topic, const vial_sse_event *ev)
{
    out_item *it = item_new(b, topic, ev);
    if (!it) {
        atomic_fetch_add(&n_dropped, 1);
        return;
    }
    out_item *old = NULL;
    pthread_mutex_lock(&b->lock);
    if (b->len == OUTBOX_MAX) {
        old = b->ring[b->head];
        b->head = (b->head + 1) % OUTBOX_MAX;
        b->len--;
    }
    b->ring[(b->head + b->len++) % OUTBOX_MAX] = it;
    kick_locked(b);
    pthread_mutex_unlock(&b->lock);
    if (old) {
        free(old);
        atomic_fetch_add(&n_dropped, 1);
    }
}

/* --- in: the subscription on loop 0 ----------------------------------------------------- */

/* A message from Redis to the local subscribers, unless it is our own. */
static void receive(vial_hub_bridge *b, const vial_redis_msg *m)
{
    if (m->channel_len < b->prefix_len)
        return;
    const char *topic = m->channel + b->prefix_len; /* NUL-terminated by the client */
    vial_sse_event ev = {.data = m->data, .len = m->len};
    const char *p = m->data, *end = m->data + m->len;
    if (m->len >= 2 + ORIGIN_LEN + 2 && !memcmp(p, WIRE_MAGIC, 2)) {
        if (!memcmp(p + 2, b->origin, ORIGIN_LEN))
            return;
        const char *q = p + 2 + ORIGIN_LEN;
        int flags = *q++ - '0';
        uint64_t retry = 0;
        for (; q < end && *q >= '0' && *q <= '9' && retry < UINT32_MAX; q++)
            retry = retry * 10 + (uint64_t)(*q - '0');
        /* event and id as C strings: copied, the client's buffer is not ours */
        const char *at[2] = {NULL, NULL};
        size_t len[2] = {0, 0};
        int ok = flags >= 0 && flags <= 3 && q < end && *q++ == '\n';
        for (int i = 0; ok && i < 2; i++) {
            if (!(flags & (1 << i)))
                continue;
            const char *nl = memchr(q, '\n', (size_t)(end - q));
            if (!nl) {
                ok = 0;
                break;
            }
            at[i] = q;
            len[i] = (size_t)(nl - q);
            q = nl + 1;
        }
        if (ok) {
            char *f = malloc(len[0] + len[1] + 2);
            if (!f) {
                atomic_fetch_add(&n_dropped, 1);
                return;
            }
            char *fields[2] = {NULL, NULL};
            for (int i = 0, off = 0; i < 2; i++)
                if (at[i]) {
                    memcpy(f + off, at[i], len[i]);
                    f[off + (int)len[i]] = 0;
                    fields[i] = f + off;
                    off += (int)len[i] + 1;
                }
            ev = (vial_sse_event){fields[0], fields[1], q, (size_t)(end - q),
                                  retry > UINT32_MAX ? UINT32_MAX : (uint32_t)retry};
            atomic_fetch_add(&n_received, 1);
            vial_hub_publish_local(b->hub, topic, &ev);
            free(f);
            return;
        }
    }
    atomic_fetch_add(&n_received, 1);
    vial_hub_publish_local(b->hub, topic, &ev);
}

static void set_up(vial_hub_bridge *b, int up)
{
    pthread_mutex_lock(&b->lock);
    b->up = up;
    kick_locked(b);
    pthread_mutex_unlock(&b->lock);
}

/* Subscribes, receives until the connection is lost, resubscribes with a
 * growing pause, until drain cancels it. */
static void bridge_main(void *arg)
{
    vial_hub_bridge *b = arg;
    uint64_t pause = BACKOFF_MIN_NS;
    int ever = 0, said_down = 0;
    while (!vial_drv_cancelled()) {
        vial_redis_sub *sub = NULL;
        int rc = vial_redis_psubscribe(NULL, b->redis, &sub, b->pattern, (const char *)NULL);
        if (rc == 0) {
            if (ever) {
                atomic_fetch_add(&n_reconnects, 1);
                vial_log(VIAL_LOG_INFO, "hub: resubscribed to Redis (%s)", b->pattern);
            }
            ever = 1;
            said_down = 0;
            pause = BACKOFF_MIN_NS;
            set_up(b, 1);
            vial_redis_msg m;
            while ((rc = vial_redis_next_message(NULL, sub, &m)) == 0)
                receive(b, &m);
            set_up(b, 0);
        }
        vial_redis_sub_close(sub);
        if (rc == -ECANCELED || vial_drv_cancelled())
            break;
        if (!said_down) {
            /* Once per outage: a retry every few seconds is not news. */
            vial_log(VIAL_LOG_WARN, "hub: Redis subscription %s: %s; publishing locally, retrying",
                     ever ? "lost" : "failed", vial_strerror(rc));
            said_down = 1;
        }
        if (vial_coro_sleep_ns(pause) == -ECANCELED)
            break;
        pause = pause * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : pause * 2;
    }
    b->co = NULL;
}

/* --- the service on loop 0 ---------------------------------------------------------------- */

static void service_start(vial_loop *l, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&bridges_lock);
    for (vial_hub_bridge *b = bridges; b; b = b->next) {
        pthread_mutex_lock(&b->lock);
        b->loop = l;
        b->posted = 0; /* a post the last run's loop never took is gone with it */
        pthread_mutex_unlock(&b->lock);
        b->co = vial_coro_new(l, bridge_main, b);
        if (!b->co)
            vial_log(VIAL_LOG_ERROR, "hub: no coroutine for the Redis subscription; local only");
    }
    pthread_mutex_unlock(&bridges_lock);
    for (vial_hub_bridge *b = bridges; b; b = b->next)
        if (b->co)
            vial_coro_resume(b->co);
}

/* Publishes made after this are delivered locally only. */
static void service_drain(vial_loop *l, void *arg)
{
    (void)l, (void)arg;
    pthread_mutex_lock(&bridges_lock);
    for (vial_hub_bridge *b = bridges; b; b = b->next) {
        if (b->co)
            vial_coro_cancel(b->co);
        pthread_mutex_lock(&b->lock);
        b->loop = NULL;
        pthread_mutex_unlock(&b->lock);
    }
    pthread_mutex_unlock(&bridges_lock);
}

static vial_server_service service = {service_start, service_drain, NULL, NULL};

/* --- setup ---------------------------------------------------------------------------------- */

/* prefix as a PSUBSCRIBE pattern matching prefix + anything: glob
 * characters in it stand for themselves. */
static char *pattern_of(const char *prefix)
{
    size_t n = strlen(prefix);
    char *p = malloc(2 * n + 2), *o = p;
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", prefix[i]))
            *o++ = '\\';
        *o++ = prefix[i];
    }
    *o++ = '*';
    *o = 0;
    return p;
}

static void bridge_destroy(vial_hub_bridge *b)
{
    if (!b)
        return;
    if (b->redis)
        vial_redis_close(b->redis);
    if (b->ring)
        for (; b->len; b->len--, b->head = (b->head + 1) % OUTBOX_MAX)
            free(b->ring[b->head]);
    free(b->ring);
    free(b->batch);
    free(b->prefix);
    free(b->pattern);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

int vial_hub_use_redis(vial_hub *h, const char *addr, const char *prefix)
{
    if (!h || !addr || !*addr)
        return -EINVAL;
    if (vial_server_running())
        return -EBUSY;
    if (!prefix)
        prefix = "";
    vial_hub_bridge *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    pthread_mutex_init(&b->lock, NULL);
    b->hub = h;
    b->flush_msg.cb = flush_cb;
    b->prefix = strdup(prefix);
    b->prefix_len = strlen(prefix);
    b->pattern = pattern_of(prefix);
    b->ring = malloc(OUTBOX_MAX * sizeof *b->ring);
    b->batch = malloc(OUTBOX_MAX * sizeof *b->batch);
    if (!b->prefix || !b->pattern || !b->ring || !b->batch) {
        bridge_destroy(b);
        return -ENOMEM;
    }
    /* Tells this instance's messages from the others' on the way back. */
    unsigned char rnd[ORIGIN_LEN / 2];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        bridge_destroy(b);
        return -EIO;
    }
    vial_hex_encode(b->origin, rnd, sizeof rnd);
    b->redis = vial_redis_open(addr, NULL);
    if (!b->redis) {
        int e = errno ? -errno : -EINVAL;
        bridge_destroy(b);
        return e;
    }
    int r = vial_hub_set_bridge(h, b);
    if (r < 0) {
        bridge_destroy(b);
        return r;
    }
    pthread_mutex_lock(&bridges_lock);
    static int registered;
    if (!registered) {
        registered = 1;
        vial_server_add_service(&service);
    }
    b->next = bridges;
    bridges = b;
    pthread_mutex_unlock(&bridges_lock);
    return 0;
}

void vial_hub_bridge_free(vial_hub_bridge *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&bridges_lock);
    for (vial_hub_bridge **p = &bridges; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            break;
        }
    pthread_mutex_unlock(&bridges_lock);
    bridge_destroy(b);
}

#endif
