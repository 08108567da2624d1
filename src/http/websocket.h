/* WebSockets (RFC 6455), the protocol half: the handshake checks, the
 * incremental frame parser, and the connection's byte pipe after an upgrade
 * (spec: conformance-app.md section 5).
 *
 * The parser is pure (no I/O, no allocation) so the unit tests and the
 * fuzzer drive it directly; the app's session (app/websocket.c) feeds it the
 * connection's read buffer through the vial_conn_ws_* primitives of conn.c. */
#ifndef VIAL_HTTP_WEBSOCKET_H
#define VIAL_HTTP_WEBSOCKET_H

#include "vial.h"
#include "http/parser.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VIAL_WS_OP_CONT 0x0
#define VIAL_WS_OP_TEXT 0x1
#define VIAL_WS_OP_BINARY 0x2
#define VIAL_WS_OP_CLOSE 0x8
#define VIAL_WS_OP_PING 0x9
#define VIAL_WS_OP_PONG 0xA

/* Largest message (reassembled payload) a peer may send: spec section 5. */
#define VIAL_WS_MAX_MESSAGE (1024 * 1024)

/* --- handshake ------------------------------------------------------------- */

/* Judges a websocket upgrade request: 0 when it may be upgraded,
 * else the status to answer with (400: not an upgrade, not GET over
 * HTTP/1.1, key missing or not base64 of 16 bytes; 426: version not 13,
 * answered with Sec-WebSocket-Version: 13). key/version may be NULL. */
int vial_ws_handshake_check(const vial_http_head *h, const char *key, const char *version);

/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)), 28 chars + NUL. */
void vial_ws_accept_value(const char *key, size_t len, char out[29]);

/* --- frame parser ------------------------------------------------------------ */

typedef struct vial_ws_parser {
    uint64_t max_message;  /* INPUT: 0 means VIAL_WS_MAX_MESSAGE */
    /* INPUT: permessage-deflate was negotiated: RSV1 may mark the first
     * frame of a data message (else RSV1 anywhere is a 1002) */
    uint8_t rsv1_ok;
    /* private */
    int in_payload;        /* 0: reading a frame header, 1: its payload */
    uint8_t hdr[14];
    unsigned hdr_len, hdr_need;
    uint8_t opcode, fin;
    uint8_t mask[4];
    uint64_t remaining;    /* payload bytes of the frame still to come */
    uint64_t frame_pos;    /* payload bytes of the frame seen (mask phase) */
    uint8_t msg_type;      /* text/binary of the message in progress, 0: none */
    uint8_t msg_rsv1;      /* it is compressed: its UTF-8 is the inflater's to check */
    uint64_t msg_len;      /* payload bytes of the message so far */
    uint8_t u_need, u_lo, u_hi; /* UTF-8 validation state across fragments */
    uint8_t ctl[125];
    unsigned ctl_len;
    int error;             /* sticky close code once failed */
} vial_ws_parser;

enum { VIAL_WS_EV_DATA = 1, VIAL_WS_EV_CONTROL = 2 };

typedef struct vial_ws_event {
    int kind;              /* VIAL_WS_EV_DATA or VIAL_WS_EV_CONTROL */
    int opcode;            /* DATA: the message's type (text/binary); CONTROL: close/ping/pong */
    uint8_t *data;         /* DATA: unmasked in place in the input; CONTROL: in the parser */
    size_t len;
    int fin;               /* DATA: these are the message's last bytes */
    int compressed;        /* DATA: the message is compressed (RSV1 on its first
                            * frame); its text is not UTF-8-checked here */
    int close_code;        /* CLOSE: the code, 0 when the payload was empty */
    const uint8_t *reason; /* CLOSE: the reason (valid UTF-8) */
    size_t reason_len;
} vial_ws_event;

void vial_ws_parser_init(vial_ws_parser *p, uint64_t max_message);

/* Feeds in[0..len) (unmasked in place). Stops after one event: returns 1 with
 * *ev filled, 0 when all input was used and more is needed, or minus the
 * close code to fail the connection with (-1002 protocol, -1007 bad UTF-8,
 * -1009 too big: known from a frame header, before its payload; for a
 * compressed message, this bounds its compressed length only).
 * *consumed is set to the input bytes used. Errors are sticky. A data frame
 * is reported in pieces as its bytes arrive (an empty final frame gives one
 * empty DATA event with fin set). */
int vial_ws_parse(vial_ws_parser *p, uint8_t *in, size_t len, size_t *consumed, vial_ws_event *ev);

/* 1 when code may appear in a close frame from a peer (1000-1003,
 * 1007-1011, 3000-4999). */
int vial_ws_close_code_valid(int code);

/* 1 when s[0..n) is valid UTF-8 (a whole text message, e.g. inflated). */
int vial_ws_utf8_valid(const uint8_t *s, size_t n);

/* Writes an unmasked server frame header for a payload of len bytes into
 * out (at most 10 bytes); returns its length. */
size_t vial_ws_frame_header(uint8_t *out, int opcode, uint64_t len);

/* --- the upgraded connection's byte pipe (conn.c) ----------------------------- */

struct vial_conn;

/* conn.c: unconsumed input, consuming it, reading more without waiting
 * (> 0 bytes, 0 at end of stream, -EAGAIN, < 0 error; input is kept from
 * `window` on so the request head before it stays valid), waiting for
 * the VIAL_IO_READ / VIAL_IO_WRITE readiness in `events` (neither: only a
 * kick or the deadline) until `deadline` (loop ns, 0: none; -ETIMEDOUT),
 * or until vial_conn_ws_kick; buffered output (may await room), room left in
 * the output buffer, flushing (may_wait 0: what the socket takes now,
 * -EAGAIN for the rest), half-closing after a flush, and dropping the
 * connection without writing more. */
void vial_conn_ws_input(struct vial_conn *c, uint8_t **p, size_t *n);
void vial_conn_ws_consume(struct vial_conn *c, size_t n);
uint32_t vial_conn_ws_window(struct vial_conn *c);
ssize_t vial_conn_ws_fill(struct vial_conn *c, uint32_t window);
int vial_conn_ws_wait(struct vial_conn *c, unsigned events, uint64_t deadline);
void vial_conn_ws_kick(struct vial_conn *c);
int vial_conn_ws_out(struct vial_conn *c, const void *p, size_t n);
size_t vial_conn_ws_room(struct vial_conn *c);
int vial_conn_ws_pending(struct vial_conn *c);
/* The session is about to sit idle: releases the empty output buffer (taken
 * back by the next vial_conn_ws_out). */
void vial_conn_ws_idle(struct vial_conn *c);
int vial_conn_ws_flush(struct vial_conn *c, int may_wait);
/* From the loop (not the session's coroutine), while the session is parked
 * with its output buffer empty, in two steps so that a caller can send to
 * many sessions in one batch (runtime/sendq.h): the descriptor to send a
 * whole n-byte frame on now, or -1 (TLS, something buffered, a frame larger
 * than the buffer, a broken connection: queue it then); then what that send
 * returned (bytes, or -errno): 1 when it went out or its tail was buffered
 * (the session is kicked to flush it), 0 when nothing was sent (queue it). */
int vial_conn_ws_try_fd(struct vial_conn *c, size_t n);
int vial_conn_ws_try_done(struct vial_conn *c, const void *p, size_t n, ssize_t res);
void vial_conn_ws_shutdown(struct vial_conn *c);
void vial_conn_ws_abort(struct vial_conn *c);

#endif
