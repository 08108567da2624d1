/* libFuzzer target for the websocket frame parser (src/http/websocket.c).
 *
 * The input is fed twice: whole, and split at points chosen by its first
 * byte; the events and the final result must be the same (the parser is
 * incremental, so the split must not matter). Data events must stay inside
 * the buffer fed, messages never exceed the limit, and a text message that
 * completes must be valid UTF-8 (checked here independently). A small limit
 * (4 KiB) lets short inputs reach the 1009 path. */
#include "http/websocket.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT 4096

typedef struct trace {
    uint64_t hash;
    int result;
    size_t msg_len;
} trace;

static void mix(trace *t, uint64_t v)
{
    t->hash = (t->hash ^ v) * 0x100000001b3ull;
}

static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t k;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            k = 1, cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            k = 2, cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            k = 3, cp = b & 0x07;
        } else {
            return 0;
        }
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void feed(uint8_t *buf, size_t len, const size_t *cuts, size_t ncuts, trace *t, uint8_t *msg)
{
    vial_ws_parser p;
    vial_ws_parser_init(&p, LIMIT);
    memset(t, 0, sizeof *t);
    t->hash = 0xcbf29ce484222325ull;
    size_t at = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        while (at < end) {
            size_t used;
            vial_ws_event ev;
            int rc = vial_ws_parse(&p, buf + at, end - at, &used, &ev);
            if (used > end - at)
                abort();
            at += used;
            if (rc < 0) {
                t->result = rc;
                return;
            }
            if (rc == 0) {
                if (at != end)
                    abort(); /* "need more" means everything was used */
                break;
            }
            if (ev.kind == VIAL_WS_EV_DATA) {
                if (ev.len && (ev.data < buf || ev.data + ev.len > buf + len))
                    abort();
                if (t->msg_len + ev.len > LIMIT)
                    abort();
                memcpy(msg + t->msg_len, ev.data, ev.len);
                t->msg_len += ev.len;
                if (ev.fin) {
                    if (ev.opcode == VIAL_WS_OP_TEXT && !utf8_ok(msg, t->msg_len))
                        abort();
                    mix(t, (uint64_t)ev.opcode << 32 | t->msg_len);
                    for (size_t i = 0; i < t->msg_len; i++)
                        mix(t, msg[i]);
                    t->msg_len = 0;
                }
            } else {
                if (ev.len > 125)
                    abort();
                mix(t, 0x100u + (unsigned)ev.opcode);
                mix(t, (uint64_t)ev.close_code);
                for (size_t i = 0; i < ev.len; i++)
                    mix(t, ev.data[i]);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t seed = data[0];
    data++, size--;
    uint8_t *a = malloc(size + 1), *b = malloc(size + 1);
    uint8_t *msg = malloc(LIMIT);
    memcpy(a, data, size);
    memcpy(b, data, size);
    trace ta, tb;
    feed(a, size, NULL, 0, &ta, msg);
    size_t cuts[64], n = 0;
    size_t step = (seed % 13) + 1;
    for (size_t at = step; at < size && n < 64; at += step + (at % 3))
        cuts[n++] = at;
    feed(b, size, cuts, n, &tb, msg);
    if (ta.result != tb.result || ta.hash != tb.hash)
        abort();
    free(a);
    free(b);
    free(msg);
    return 0;
}
