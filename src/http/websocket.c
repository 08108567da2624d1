/* WebSockets (RFC 6455), the protocol half: the handshake checks and the
 * incremental frame parser. Sessions and groups, which run the app's
 * handlers, are app/websocket.c. */
#include "http/websocket.h"
#include "runtime/codec.h"

#include <errno.h>
#ifndef VIAL_WS_PARSER_ONLY
#include <openssl/sha.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- handshake ----------------------------------------------------------------- */

/* base64 of exactly 16 bytes: 22 symbols and "==" (RFC 6455 4.1). */
static int key_valid(const char *key)
{
    unsigned char raw[18];
    return key && strlen(key) == 24 && vial_base64_decode(raw, key, 24, 0) == 16;
}

int vial_ws_handshake_check(const vial_http_head *h, const char *key, const char *version)
{
    if (!h->upgrade_websocket || h->version_minor < 1 || h->method.len != 3 ||
        memcmp(h->method.p, "GET", 3) != 0)
        return 400;
    if (!key_valid(key))
        return 400;
    if (!version || strcmp(version, "13") != 0)
        return 426;
    return 0;
}

#ifndef VIAL_WS_PARSER_ONLY /* the fuzzer builds the parser alone */
void vial_ws_accept_value(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA_CTX ctx;
    /* SHA1_* are deprecated in OpenSSL 3 but remain the cheapest one-shot;
     * EVP would allocate a context per handshake. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    SHA1_Init(&ctx);
    SHA1_Update(&ctx, key, len);
    SHA1_Update(&ctx, guid, sizeof guid - 1);
    SHA1_Final(digest, &ctx);
#pragma GCC diagnostic pop
    vial_base64_encode(out, digest, SHA_DIGEST_LENGTH, 0);
}

#endif

/* --- frame parser ---------------------------------------------------------------- */

void vial_ws_parser_init(vial_ws_parser *p, uint64_t max_message)
{
    memset(p, 0, sizeof *p);
    p->max_message = max_message ? max_message : VIAL_WS_MAX_MESSAGE;
    p->hdr_need = 2;
}

int vial_ws_close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* Incremental UTF-8 check (Unicode Table 3-7): the state is how many
 * continuation bytes are due and the range the next one must fall in, so a
 * code point may be split anywhere between fragments. Returns 0 or -1. */
static int utf8_feed(uint8_t *need, uint8_t *lo, uint8_t *hi, const uint8_t *s, size_t n)
{
    uint8_t nd = *need, l = *lo, h = *hi;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        if (nd == 0) {
            if (b < 0x80)
                continue;
            l = 0x80, h = 0xBF;
            if (b >= 0xC2 && b <= 0xDF)
                nd = 1;
            else if (b == 0xE0)
                nd = 2, l = 0xA0;
            else if (b == 0xED)
                nd = 2, h = 0x9F; /* no surrogates */
            else if (b >= 0xE1 && b <= 0xEF)
                nd = 2;
            else if (b == 0xF0)
                nd = 3, l = 0x90;
            else if (b >= 0xF1 && b <= 0xF3)
                nd = 3;
            else if (b == 0xF4)
                nd = 3, h = 0x8F; /* nothing above U+10FFFF */
            else
                return -1;
        } else {
            if (b < l || b > h)
                return -1;
            nd--;
            l = 0x80, h = 0xBF;
        }
    }
    *need = nd, *lo = l, *hi = h;
    return 0;
}

int vial_ws_utf8_valid(const uint8_t *s, size_t n)
{
    uint8_t nd = 0, l = 0x80, h = 0xBF;
    return utf8_feed(&nd, &l, &h, s, n) == 0 && nd == 0;
}

static int fail(vial_ws_parser *p, int code)
{
    p->error = code;
    return -code;
}

static void unmask(uint8_t *d, size_t n, const uint8_t mask[4], uint64_t pos)
{
    for (size_t i = 0; i < n; i++)
        d[i] ^= mask[(pos + i) & 3];
}

/* Judges a complete frame header: everything the spec rejects is known
 * here, before any payload (a 2 GiB length is refused at once). */
static int header_done(vial_ws_parser *p)
{
    const uint8_t *h = p->hdr;
    uint64_t len = h[1] & 0x7F;
    unsigned off = 2;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        off = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        if (len >> 63)
            return fail(p, 1002);
        off = 10;
    }
    if (p->opcode == VIAL_WS_OP_TEXT || p->opcode == VIAL_WS_OP_BINARY)
        p->msg_len = 0; /* a new message */
    if (p->opcode < 8 && p->msg_len + len > p->max_message)
        return fail(p, 1009);
    memcpy(p->mask, h + off, 4);
    p->remaining = len;
    p->frame_pos = 0;
    p->in_payload = 1;
    p->ctl_len = 0;
    if (p->opcode == VIAL_WS_OP_TEXT || p->opcode == VIAL_WS_OP_BINARY) {
        p->msg_type = p->opcode;
        p->msg_rsv1 = (p->hdr[0] & 0x40) != 0;
        p->u_need = 0, p->u_lo = 0x80, p->u_hi = 0xBF;
    }
    return 0;
}

/* The first two header bytes decide the frame's shape; the rules of spec
 * section 5 that need nothing more are checked here. */
static int header_start(vial_ws_parser *p)
{
    uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
    if (b0 & 0x30)
        return fail(p, 1002); /* RSV2/3: no extension defines them */
    p->fin = b0 >> 7;
    p->opcode = b0 & 0x0F;
    /* RSV1 is permessage-deflate's "compressed" bit, on a message's first
     * frame only (RFC 7692 6): never on continuations or control frames. */
    if ((b0 & 0x40) && (!p->rsv1_ok || (p->opcode != VIAL_WS_OP_TEXT && p->opcode != VIAL_WS_OP_BINARY)))
        return fail(p, 1002);
    if (!(b1 & 0x80))
        return fail(p, 1002); /* client frames must be masked */
    unsigned len7 = b1 & 0x7F;
    switch (p->opcode) {
    case VIAL_WS_OP_CONT:
        if (!p->msg_type)
            return fail(p, 1002);
        break;
    case VIAL_WS_OP_TEXT:
    case VIAL_WS_OP_BINARY:
        if (p->msg_type)
            return fail(p, 1002); /* a new message inside a fragmented one */
        break;
    case VIAL_WS_OP_CLOSE:
    case VIAL_WS_OP_PING:
    case VIAL_WS_OP_PONG:
        if (!p->fin || len7 > 125)
            return fail(p, 1002);
        break;
    default:
        return fail(p, 1002);
    }
    p->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    return 0;
}

static int control_done(vial_ws_parser *p, vial_ws_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->kind = VIAL_WS_EV_CONTROL;
    ev->opcode = p->opcode;
    ev->data = p->ctl;
    ev->len = p->ctl_len;
    if (p->opcode == VIAL_WS_OP_CLOSE && p->ctl_len) {
        if (p->ctl_len == 1)
            return fail(p, 1002);
        int code = p->ctl[0] << 8 | p->ctl[1];
        if (!vial_ws_close_code_valid(code))
            return fail(p, 1002);
        if (!vial_ws_utf8_valid(p->ctl + 2, p->ctl_len - 2))
            return fail(p, 1007);
        ev->close_code = code;
        ev->reason = p->ctl + 2;
        ev->reason_len = p->ctl_len - 2;
    }
    return 1;
}

int vial_ws_parse(vial_ws_parser *p, uint8_t *in, size_t len, size_t *consumed, vial_ws_event *ev)
{
    size_t i = 0;
    *consumed = 0;
    if (p->error)
        return -p->error;
    for (;;) {
        if (!p->in_payload) {
            while (p->hdr_len < p->hdr_need && i < len) {
                p->hdr[p->hdr_len++] = in[i++];
                if (p->hdr_len == 2 && header_start(p) < 0)
                    goto out_err;
            }
            if (p->hdr_len < p->hdr_need) {
                *consumed = i;
                return 0;
            }
            if (header_done(p) < 0)
                goto out_err;
            p->hdr_len = 0;
            p->hdr_need = 2;
        }
        /* payload */
        size_t take = len - i;
        if (take > p->remaining)
            take = (size_t)p->remaining;
        uint8_t *d = in + i;
        unmask(d, take, p->mask, p->frame_pos);
        i += take;
        p->frame_pos += take;
        p->remaining -= take;
        if (p->opcode >= 8) {
            memcpy(p->ctl + p->ctl_len, d, take);
            p->ctl_len += (unsigned)take;
            if (p->remaining) {
                *consumed = i;
                return 0;
            }
            p->in_payload = 0;
            *consumed = i;
            int r = control_done(p, ev);
            return r < 0 ? r : 1;
        }
        p->msg_len += take;
        if (p->msg_type == VIAL_WS_OP_TEXT && !p->msg_rsv1 &&
            utf8_feed(&p->u_need, &p->u_lo, &p->u_hi, d, take) < 0) {
            *consumed = i;
            return fail(p, 1007);
        }
        int frame_end = p->remaining == 0;
        int msg_end = frame_end && p->fin;
        if (frame_end)
            p->in_payload = 0;
        if (msg_end && p->msg_type == VIAL_WS_OP_TEXT && !p->msg_rsv1 && p->u_need) {
            *consumed = i;
            return fail(p, 1007); /* ends inside a code point */
        }
        if (take || msg_end) {
            memset(ev, 0, sizeof *ev);
            ev->kind = VIAL_WS_EV_DATA;
            ev->opcode = p->msg_type;
            ev->data = d;
            ev->len = take;
            ev->fin = msg_end;
            ev->compressed = p->msg_rsv1;
            if (msg_end)
                p->msg_type = 0;
            *consumed = i;
            return 1;
        }
        if (i == len && p->in_payload) {
            *consumed = i;
            return 0;
        }
        /* an empty non-final frame: on to the next header */
    }
out_err:
    *consumed = i;
    return -p->error;
}

size_t vial_ws_frame_header(uint8_t *out, int opcode, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}
