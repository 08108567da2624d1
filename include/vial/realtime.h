/* Realtime: server-sent events and the broadcast hub.
 *
 * SSE (the EventSource protocol) writes events on a streamed response; the
 * hub carries messages published anywhere in the process (a sync or async
 * view on any thread, a worker, a thread of the app's own, code outside any
 * request) to every subscriber of a topic on every loop thread: websocket
 * sessions, SSE streams and plain streaming views alike.
 *
 *   static vial_hub *hub;                       // vial_hub_new() in main
 *
 *   static int events(vial_req *rq, vial_res *rs)      // async view
 *   {
 *       vial_sse_opts o = {.heartbeat_ms = 15000};
 *       return vial_sse_serve(rq, rs, hub, "news", &o); // until the client leaves
 *   }
 *   static int post(vial_req *rq, vial_res *rs)        // sync view
 *   {
 *       vial_hub_publish(hub, "news", "hello", 5);
 *       return vial_text(rs, 200, "sent\n");
 *   }
 *
 * Delivery: a publish copies the message once and queues it for each loop
 * thread that has subscribers of the topic (one queue per topic and thread,
 * the thread woken once per batch, not once per message or subscriber);
 * that thread hands it to each of its subscribers. The websocket frame and
 * the SSE bytes of a message are each built once (by the first thread that
 * needs them) and shared by every subscriber, refcounted. Publishes queue
 * under the hub's lock and every queue is FIFO, so every subscriber sees the
 * messages of a topic in one order, which keeps each publisher's order.
 *
 * Slow subscribers: each has a bounded queue (VIAL_HUB_QUEUE_DEFAULT
 * messages, or the topic's vial_hub_set_policy); a message for a full queue
 * either drops the oldest queued one (VIAL_HUB_DROP_OLDEST, the default) or
 * ends the subscription (VIAL_HUB_DISCONNECT): a websocket is closed with
 * 1008 once what it was already sent is written, an SSE stream ends; or
 * VIAL_HUB_ABORT: a websocket's connection is closed at once. A topic may
 * instead be bounded in bytes, with a stall clock and sender throttling
 * (vial_hub_set_limits: what vial_ws_group is made of). A
 * loop thread that falls a whole queue behind its publishers (at least 64
 * messages) loses the oldest for its subscribers, who take it as their
 * policy says. Memory is thus bounded by the queues (messages shared with
 * the other subscribers) plus each connection's output buffer: the writers
 * await the socket (backpressure), nothing else buffers.
 *
 * Within one process unless vial_hub_use_redis joins the hubs of several
 * instances through Redis.
 *
 * Metrics (vial_config.metrics): vial_hub_published_total,
 * vial_hub_delivered_total, vial_hub_dropped_total,
 * vial_hub_disconnected_total and the vial_hub_subscribers gauge; in Redis
 * mode also vial_hub_redis_published_total, _received_total,
 * _reconnects_total and _dropped_total. */
#ifndef VIAL_REALTIME_H
#define VIAL_REALTIME_H

#include "vial.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* --- server-sent events ----------------------------------------------------------------
 * An event's fields. data may hold several lines (LF, CR or CRLF between
 * them): each becomes its own "data:" line, so the client reads the same
 * text back (its line breaks as LF). event and id are single lines: a CR or
 * LF in them (which would start a new field) makes the call fail with
 * -EINVAL and nothing is written; an id may not hold NUL either (the
 * protocol ignores such ids). */
typedef struct vial_sse_event {
    const char *event;   /* NULL or "": none (the client's "message") */
    const char *id;      /* NULL: none; "": resets the client's last id */
    const void *data;    /* may be NULL when len is 0 */
    size_t len;
    uint32_t retry_ms;   /* 0: none; else the client's reconnection delay */
} vial_sse_event;

/* Starts an event stream (async views): status 200, Content-Type
 * text/event-stream, Cache-Control: no-cache, X-Accel-Buffering: no (so a
 * proxy such as nginx passes events at once). Returns vial_stream_begin's
 * result. */
int vial_sse_begin(vial_res *rs);

/* Writes one event, awaiting the socket. Returns 0, -EINVAL (CR/LF in event
 * or id; nothing written), or vial_stream_write's error (the client left:
 * stop then). */
int vial_sse_send(vial_res *rs, const vial_sse_event *ev);

/* Writes a comment line (": text"), which clients ignore: a heartbeat that
 * keeps proxies from timing the stream out. -EINVAL for CR/LF in text. */
int vial_sse_comment(vial_res *rs, const char *text);

/* The event's wire form (what vial_sse_send writes) into out, which holds
 * cap bytes. Returns its length even when larger than cap (then out holds
 * nothing useful: call again with room), or -EINVAL. For apps that keep
 * encoded events (a replay ring). */
long vial_sse_encode(const vial_sse_event *ev, char *out, size_t cap);

/* The request's Last-Event-ID header (sent by a reconnecting EventSource),
 * or NULL when absent or empty. */
const char *vial_sse_last_id(vial_req *rq);

/* Called by vial_sse_serve before live events with the client's
 * Last-Event-ID (never NULL): send what it missed with vial_sse_send and
 * return 0, or a negative code to end the stream. */
typedef int (*vial_sse_replay_fn)(vial_req *rq, vial_res *rs, const char *last_id, void *arg);

typedef struct vial_sse_opts {
    uint32_t heartbeat_ms;      /* ": ping" after this long without an event (at most twice as long
                                 * after the last one); 0: never */
    uint32_t retry_ms;          /* sent first as "retry:" when not 0 */
    vial_sse_replay_fn replay;  /* NULL: a reconnect gets live events only */
    void *arg;                  /* for replay */
    uint64_t max_events;        /* end after this many live events; 0: no limit */
} vial_sse_opts;

struct vial_hub;

/* Serves an SSE stream of a hub topic (async views): begins the stream,
 * subscribes (before the replay, so nothing published meanwhile is lost;
 * an event may then come twice, the ids tell), calls o->replay when the
 * client sent Last-Event-ID, then writes each published message as an event
 * and a heartbeat comment when the topic is quiet. Returns when the client
 * leaves (-ECANCELED or the write's error), when the hub dropped it for
 * being slow under VIAL_HUB_DISCONNECT or VIAL_HUB_ABORT (-ENOBUFS), or 0
 * after max_events.
 * The subscription ends with it. o may be NULL. */
int vial_sse_serve(vial_req *rq, vial_res *rs, struct vial_hub *hub, const char *topic,
                   const vial_sse_opts *o);

/* --- the hub ---------------------------------------------------------------------------- */
typedef struct vial_hub vial_hub;
typedef struct vial_sub vial_sub;

/* What a full (or, with limits, slow) subscriber queue does with one more
 * message: drop the oldest queued one; end the subscription, a websocket
 * closed with 1008 once what it was sent is written; or end it at once, a
 * websocket's connection closed unflushed (a peer that reads nothing would
 * never get a close frame) and its vial_ws_recv returning -ENOBUFS. */
#define VIAL_HUB_DROP_OLDEST 0
#define VIAL_HUB_DISCONNECT 1
#define VIAL_HUB_ABORT 2
#define VIAL_HUB_QUEUE_DEFAULT 256
#define VIAL_HUB_QUEUE_MAX 65536
/* What a queued message costs against vial_hub_limits' byte bounds besides
 * its data. */
#define VIAL_HUB_MSG_OVERHEAD 64

/* A hub: a set of named topics. Thread-safe. NULL when out of memory. */
vial_hub *vial_hub_new(void);
/* Only once nothing subscribes or publishes any more (after vial_run). */
void vial_hub_free(vial_hub *h);

/* Sets topic's slow-subscriber policy and per-subscriber queue length
 * (1..VIAL_HUB_QUEUE_MAX messages); it applies to subscriptions made after
 * it. Returns 0, -EINVAL, -ENOMEM. Topics exist from their first use and
 * last as long as the hub (a name and a few words each). */
int vial_hub_set_policy(vial_hub *h, const char *topic, int policy, size_t queue_len);

/* A topic's byte bounds (vial_hub_set_limits); all 0: none, the default. */
typedef struct vial_hub_limits {
    /* Per subscriber: bytes published to it and not yet handed to its
     * connection (each message costs its length + VIAL_HUB_MSG_OVERHEAD),
     * counted from the publish, so what waits for its loop thread counts
     * too. A message that would pass it finds the subscriber slow, unless
     * its queue is empty (one message larger than the bound still goes). */
    size_t max_bytes;
    /* A subscriber with something queued whose queue has not moved for this
     * long (its socket takes nothing) is slow at the next message. A
     * websocket handler busy with its own awaits between vial_ws_recv calls
     * is not stalled for that. 0: no clock. */
    uint32_t stall_ms;
    /* Sender throttling: while more than this many bytes of a websocket
     * session's publishes to such topics are queued at subscribers, its
     * vial_ws_recv stops reading its socket (the peer's sends wait in TCP)
     * and only writes its own queue, until they fall to half; never more
     * than stall_ms (5 s when 0) at a time. Publishes made by the session's
     * handler (or a task it spawned) are its own; others count for no one.
     * 0: none. */
    size_t sender_max;
} vial_hub_limits;

/* Sets topic's byte bounds, for subscriptions made after it. With
 * max_bytes set the topic loses nothing for subscribers that keep up: a
 * loop thread's queue of it grows (up to the topic's queue length, and
 * max_bytes) instead of dropping the oldest, and a slow subscriber (over
 * max_bytes, or stalled) is handled as the topic's policy says: under
 * VIAL_HUB_DROP_OLDEST it loses its oldest messages until the new one fits
 * (the stall clock does not apply), under VIAL_HUB_DISCONNECT and
 * VIAL_HUB_ABORT it is ended. NULL clears them. Returns 0, -EINVAL, -ENOMEM.
 * vial_ws_group is a topic with VIAL_HUB_ABORT, VIAL_HUB_QUEUE_MAX and
 * {4 MiB, 5000 ms, 1 MiB}. */
int vial_hub_set_limits(vial_hub *h, const char *topic, const vial_hub_limits *l);

/* Publishes data (sent to websockets as a text frame: UTF-8, not checked;
 * to SSE as an event's data). From anywhere; never waits. Returns the number
 * of loop threads it was posted to (0: no subscriber), or -ENOMEM. */
int vial_hub_publish(vial_hub *h, const char *topic, const void *data, size_t len);
/* The same with SSE fields (event, id, retry: websockets get the data
 * only). -EINVAL for CR/LF in event or id. */
int vial_hub_publish_event(vial_hub *h, const char *topic, const vial_sse_event *ev);
/* The same as a binary message: a binary frame to websockets (SSE streams
 * get the bytes as an event's data, so they had better be text there; the
 * Redis bridge carries them as a text message to other instances). */
int vial_hub_publish_binary(vial_hub *h, const char *topic, const void *data, size_t len);

/* Subscribes the running async view (or websocket handler) to topic on its
 * loop thread. The subscription ends with the request at the latest.
 * Returns NULL when out of memory or not in async code. */
vial_sub *vial_hub_subscribe(vial_req *rq, vial_hub *h, const char *topic);

/* Awaits the next message, at most timeout_ms (0: no limit). Returns 0 with
 * *out filled (its pointers valid until the next call or vial_sub_close);
 * -ETIMEDOUT when none came in time; -ENOBUFS when the subscription was
 * ended for being slow (VIAL_HUB_DISCONNECT, VIAL_HUB_ABORT); -EPIPE once closed;
 * -ECANCELED when the request was cancelled (the client left). */
int vial_sub_next(vial_sub *s, vial_sse_event *out, uint64_t timeout_ms);

/* Messages this subscriber lost to VIAL_HUB_DROP_OLDEST so far. */
uint64_t vial_sub_dropped(const vial_sub *s);

/* Ends the subscription now (else it ends with the request). */
void vial_sub_close(vial_sub *s);

/* Subscribes a websocket session: while its handler awaits vial_ws_recv,
 * the topic's messages are written to it as text frames (binary ones for
 * vial_hub_publish_binary). Under VIAL_HUB_DISCONNECT a slow session is
 * closed with 1008, under VIAL_HUB_ABORT its connection is closed at once;
 * either way its vial_ws_recv returns -ENOBUFS. From the session's handler.
 * Returns 0, -EPIPE (session over), -ENOMEM. */
int vial_ws_subscribe(vial_ws *ws, vial_hub *h, const char *topic);

/* Redis mode: makes h one hub across every instance that uses the same
 * Redis and channel_prefix. addr is what vial_redis_open takes ("host:port",
 * "host", "unix:/path"; redis:// URLs are not understood); channel_prefix
 * (NULL: "") names the channels, prefix + topic. Call before vial_run;
 * needs the Redis client (VIAL_HAVE_REDIS in vial/config.h).
 *
 * A publish (from anywhere, as above) is delivered to this process's
 * subscribers at once and also PUBLISHed to Redis; one subscription per
 * instance (PSUBSCRIBE prefix*, on loop thread 0) delivers what the other
 * instances published to the local subscribers, skipping our own messages,
 * so each subscriber receives each message once. Publishers never wait:
 * their messages go through a bounded outbox (4096 messages) that loop
 * thread 0 writes to Redis, pipelined, in publish order.
 *
 * The guarantee across instances: at most once, in order per publishing
 * instance (per publisher thread a fortiori), no order between instances.
 * While Redis is unreachable, publishes reach this instance's subscribers
 * only; the newest 4096 wait in the outbox and go out once Redis is back
 * (the oldest are dropped, counted as redis_dropped); messages of other
 * instances published meanwhile are lost to this one: an SSE client's
 * Last-Event-ID replay (vial_sse_opts.replay from a store the instances
 * share) can fill the gap. Subscribers stay connected across a Redis
 * restart; the subscription is retried with a pause growing from 100 ms to
 * 5 s. Payloads written by others (PUBLISH prefix+topic from redis-cli)
 * arrive as plain data.
 *
 * Returns 0, -EINVAL, -EBUSY (the server runs already, or h has Redis
 * already), -ENOTSUP (built without the Redis client), -ENOMEM, or
 * vial_redis_open's errno (negated) for a malformed address. */
int vial_hub_use_redis(vial_hub *h, const char *addr, const char *channel_prefix);

/* Totals since start, all hubs: for tests and the metrics. */
typedef struct vial_hub_counts {
    uint64_t published, delivered, dropped, disconnected, subscribers;
    /* Redis mode (vial_hub_use_redis): publishes written to Redis, messages
     * of other instances received, resubscriptions after a lost
     * connection, publishes lost from the outbox (full, or refused). */
    uint64_t redis_published, redis_received, redis_reconnects, redis_dropped;
} vial_hub_counts;
void vial_hub_stats(vial_hub_counts *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
