/* The hub's side that websocket.c and sse.c use (hub.c). */
#ifndef VIAL_APP_HUB_H
#define VIAL_APP_HUB_H

#include "vial.h"
#include "vial/realtime.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes built once and shared by every connection that sends them (a
 * websocket frame, an SSE event). */
typedef struct vial_shared_bytes {
    atomic_uint refs;
    size_t len;
    uint8_t bytes[];
} vial_shared_bytes;

void vial_shared_bytes_unref(vial_shared_bytes *b);

/* A publisher that topics with vial_hub_limits.sender_max charge: a
 * websocket session (coroutine local of its handler's coroutine, which its
 * tasks inherit through their parents). Each message it publishes there
 * holds a reference; produced counts the bytes of them queued at
 * subscribers (charged at the publish, released as each leaves a
 * subscriber's queue). */
typedef struct vial_hub_sender {
    atomic_uint refs;
    atomic_size_t produced;
    atomic_size_t max;          /* the smallest sender_max it published under; 0: none */
    atomic_uint_fast64_t hold_ns; /* the longest a hold may last (the topic's stall clock) */
    atomic_int waiting;         /* set by the sender: wake it when produced falls to max / 2 */
    /* From any thread, once waiting was set and produced fell. */
    void (*wake)(struct vial_hub_sender *s);
    /* The last reference went. */
    void (*release)(struct vial_hub_sender *s);
} vial_hub_sender;

void vial_hub_sender_unref(vial_hub_sender *s);

/* A websocket subscription: kick(arg) runs on the session's loop when a
 * message is queued or the subscription ends. NULL when out of memory. */
vial_sub *vial_hub_sub_open(vial_hub *h, const char *topic, void (*kick)(void *arg), void *arg);
/* The fast path of a subscription: the hub's drain offers each message's
 * encoded form to a subscriber that has nothing queued, in two steps so
 * that it sends to all of a loop's subscribers in batches
 * (runtime/sendq.h). fd(arg, len): the descriptor to send len bytes on
 * now, or -1 when the message must be queued as usual; done(arg, bytes,
 * len, res), after that send (res: bytes sent, or -errno): 1 when the
 * subscriber took the message (sent, or the rest buffered), 0 when it must
 * be queued. On the subscriber's loop, from the hub's drain: no coroutine
 * runs between the two. */
typedef struct vial_hub_direct {
    int (*fd)(void *arg, size_t len);
    int (*done)(void *arg, const uint8_t *bytes, size_t len, ssize_t res);
} vial_hub_direct;
/* A websocket subscription's direct sends (ops on arg, vial_hub_sub_open's).
 * hot/hot2: what they read (hot_lines 64-byte lines from each), which the
 * drain prefetches while the previous subscriber is handled. */
void vial_hub_sub_set_direct(vial_sub *s, const vial_hub_direct *ops, const void *hot, unsigned hot_lines,
                             const void *hot2, unsigned hot2_lines);
/* Takes the next message's websocket frame (a reference the caller drops),
 * or NULL when none is queued (or none could be built). */
vial_shared_bytes *vial_sub_take_frame(vial_sub *s);
/* 0, or the policy it was ended by for being slow (VIAL_HUB_DISCONNECT,
 * VIAL_HUB_ABORT). */
int vial_sub_ended(const vial_sub *s);
/* The subscriber is busy elsewhere (a handler running its own code): its
 * stall clock restarts. On its loop. */
void vial_sub_touch(vial_sub *s);
/* Publishes a websocket message of opcode (VIAL_WS_OP_TEXT or _BINARY);
 * *subscribers (when not NULL) gets how many subscribers the topic had on
 * the loop threads it was posted to. Returns what vial_hub_publish does. */
int vial_hub_publish_frame(vial_hub *h, const char *topic, int opcode, const void *data, size_t len,
                           size_t *subscribers);
/* Ends and frees a subscription opened with vial_hub_sub_open. */
void vial_hub_sub_free(vial_sub *s);

/* One complete server frame (unmasked, so any connection may send it). */
vial_shared_bytes *vial_ws_frame_shared(int opcode, const void *data, size_t len);

/* The SSE wire form of ev into a new shared buffer; NULL: -EINVAL or no memory. */
vial_shared_bytes *vial_sse_shared(const vial_sse_event *ev);

/* --- the Redis bridge (hub_redis.c) --- */
typedef struct vial_hub_bridge vial_hub_bridge;

/* Publishes to this process's subscribers only: what the bridge received. */
int vial_hub_publish_local(vial_hub *h, const char *topic, const vial_sse_event *ev);
/* Gives h its bridge: 0, or -EBUSY when it has one. Before vial_run. */
int vial_hub_set_bridge(vial_hub *h, vial_hub_bridge *b);
/* Hands a local publish (fields checked) to Redis; any thread, never waits. */
void vial_hub_bridge_relay(vial_hub_bridge *b, const char *topic, const vial_sse_event *ev);
/* After vial_run returned. NULL is ignored. */
void vial_hub_bridge_free(vial_hub_bridge *b);
/* Fills the redis_* counts. */
void vial_hub_bridge_stats(vial_hub_counts *out);

#endif
