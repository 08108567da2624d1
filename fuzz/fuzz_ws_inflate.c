/* libFuzzer target for the permessage-deflate receive path: the frame parser
 * with RSV1 allowed (src/http/websocket.c) feeding the inflater with its
 * size limit (src/http/ws_deflate.c), as app/websocket.c drives them.
 *
 * The first byte picks the agreed parameters (client window 8..15, context
 * takeover or not) and how the second feed is split. The input is fed whole,
 * then in pieces: messages, control frames and the final result must be the
 * same. Invariants: an inflated message never exceeds the limit (4 KiB, so
 * short inputs reach 1009) and its buffer never grows past limit + 1; a
 * compressed text message delivered is valid UTF-8; every zlib byte is given
 * back when the connection's state is freed. */
#include "http/websocket.h"
#include "http/ws_deflate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT 4096

typedef struct trace {
    uint64_t hash;
    int result;
} trace;

static void mix(trace *t, uint64_t v)
{
    t->hash = (t->hash ^ v) * 0x100000001b3ull;
}

static void feed(uint8_t cfg, uint8_t *in, size_t len, const size_t *cuts, size_t ncuts, trace *t)
{
    vial_ws_parser p;
    vial_ws_parser_init(&p, LIMIT);
    p.rsv1_ok = 1;
    vial_ws_pmd d;
    memset(&d, 0, sizeof d);
    d.params.client_max_window_bits = (uint8_t)(8 + (cfg & 7));
    d.params.client_no_context_takeover = (cfg >> 3) & 1;
    d.params.server_max_window_bits = 12;
    uint8_t *buf = NULL, plain[LIMIT];
    size_t blen = 0, cap = 0, plen = 0;
    memset(t, 0, sizeof *t);
    t->hash = 0xcbf29ce484222325ull;
    size_t at = 0;
    for (size_t c = 0; c <= ncuts && !t->result; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        while (at < end) {
            size_t used;
            vial_ws_event ev;
            int rc = vial_ws_parse(&p, in + at, end - at, &used, &ev);
            at += used;
            if (rc < 0) {
                t->result = rc;
                break;
            }
            if (rc == 0)
                break;
            if (ev.kind == VIAL_WS_EV_CONTROL) {
                mix(t, 0x100u + (unsigned)ev.opcode);
                for (size_t i = 0; i < ev.len; i++)
                    mix(t, ev.data[i]);
                continue;
            }
            const uint8_t *msg;
            size_t mlen;
            if (ev.compressed) {
                int r = vial_ws_pmd_inflate(&d, ev.data, ev.len, ev.fin, &buf, &blen, &cap, LIMIT);
                if (cap > LIMIT + 1)
                    abort();
                if (r < 0) {
                    t->result = r;
                    break;
                }
                if (blen > LIMIT)
                    abort();
                msg = buf, mlen = blen;
            } else {
                if (plen + ev.len > LIMIT)
                    abort();
                memcpy(plain + plen, ev.data, ev.len);
                plen += ev.len;
                msg = plain, mlen = plen;
            }
            if (!ev.fin)
                continue;
            if (ev.compressed && ev.opcode == VIAL_WS_OP_TEXT && !vial_ws_utf8_valid(msg, mlen)) {
                t->result = -1007; /* what the session does */
                break;
            }
            mix(t, (uint64_t)ev.opcode << 32 | (uint64_t)ev.compressed << 31 | mlen);
            for (size_t i = 0; i < mlen; i++)
                mix(t, msg[i]);
            blen = plen = 0;
        }
    }
    free(buf);
    vial_ws_pmd_free(&d);
    if (d.held)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t cfg = data[0];
    data++, size--;
    uint8_t *a = malloc(size + 1), *b = malloc(size + 1);
    memcpy(a, data, size);
    memcpy(b, data, size);
    trace ta, tb;
    feed(cfg, a, size, NULL, 0, &ta);
    size_t cuts[64], n = 0;
    size_t step = (cfg >> 4) + 1;
    for (size_t at = step; at < size && n < 64; at += step + (at % 5))
        cuts[n++] = at;
    feed(cfg, b, size, cuts, n, &tb);
    if (ta.result != tb.result || ta.hash != tb.hash)
        abort();
    free(a);
    free(b);
    return 0;
}
