/* The hub's side that websocket.c and sse.c use (hub.c). */
#ifndef VIAL_APP_HUB_H
#define VIAL_APP_HUB_H

#include "vial.h"
#include "vial/realtime.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes built once and shared by every connection that sends them (a
 * websocket frame, an SSE event). */
typedef struct vial_shared_bytes {
    atomic_uint refs;
    size_t len;
    uint8_t bytes[];
} vial_shared_bytes;

void vial_shared_bytes_unref(vial_shared_bytes *b);

/* A websocket subscription: kick(arg) runs on the session's loop when a
 * message is queued or the subscription ends. NULL when out of memory. */
vial_sub *vial_hub_sub_open(vial_hub *h, const char *topic, void (*kick)(void *arg), void *arg);
/* The fast path of a websocket subscription: the hub's drain offers each
 * message's frame to send(arg, bytes, len) when the subscriber has nothing
 * queued; it returns 1 when it took the frame (written to the socket, or
 * the rest buffered), 0 when the message must be queued as usual. On the
 * subscriber's loop, from the hub's drain: no coroutine runs meanwhile.
 * hot/hot2: what send reads (hot_lines 64-byte lines from each), which the
 * drain prefetches while the previous subscriber's send runs. */
void vial_hub_sub_set_direct(vial_sub *s, int (*send)(void *arg, const uint8_t *bytes, size_t len),
                             const void *hot, unsigned hot_lines, const void *hot2, unsigned hot2_lines);
/* Takes the next message's websocket frame (a reference the caller drops),
 * or NULL when none is queued (or none could be built). */
vial_shared_bytes *vial_sub_take_frame(vial_sub *s);
/* 1 when the hub ended it for being slow. */
int vial_sub_ended(const vial_sub *s);
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
