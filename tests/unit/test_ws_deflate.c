/* Unit tests for permessage-deflate (src/http/ws_deflate.c) and the frame
 * parser's RSV1 rules (src/http/websocket.c): the negotiation table, inflate
 * limits, fragmented messages with control frames between, and context
 * takeover across messages. The peer's side is zlib used directly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "http/websocket.h"
#include "http/ws_deflate.h"

/* ---- the peer: raw deflate, sync-flushed, trailer stripped --------------------- */

/* zlib streams point back at themselves: initialised in place. */
static void peer_init(z_stream *z, int wbits)
{
    memset(z, 0, sizeof *z);
    assert_int_equal(deflateInit2(z, 6, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
}

/* Compresses one message with the peer's stream; returns its length. */
static size_t peer_msg(z_stream *z, const void *in, size_t n, uint8_t *out, size_t cap, int final)
{
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int r = deflate(z, final ? Z_FINISH : Z_SYNC_FLUSH);
    assert_true(r == Z_OK || r == Z_STREAM_END);
    assert_int_equal(z->avail_in, 0);
    size_t got = cap - z->avail_out;
    if (!final) {
        assert_true(got >= 4);
        assert_memory_equal(out + got - 4, "\x00\x00\xff\xff", 4);
        got -= 4;
    }
    return got;
}

/* Inflates what vial sent (trailer added back) with a fresh or kept stream. */
static size_t peer_inflate(z_stream *z, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    uint8_t buf[1 << 16];
    assert_true(n + 4 <= sizeof buf);
    memcpy(buf, in, n);
    memcpy(buf + n, "\x00\x00\xff\xff", 4);
    z->next_in = buf;
    z->avail_in = (uInt)(n + 4);
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int r = inflate(z, Z_SYNC_FLUSH);
    assert_true(r == Z_OK || r == Z_BUF_ERROR);
    return cap - z->avail_out;
}

static const char json_msg[] =
    "{\"id\":12345,\"user\":{\"name\":\"ada\",\"roles\":[\"admin\",\"dev\"]},\"items\":["
    "{\"sku\":\"A-1\",\"qty\":2,\"price\":9.5},{\"sku\":\"A-2\",\"qty\":1,\"price\":19.5},"
    "{\"sku\":\"A-3\",\"qty\":7,\"price\":1.25},{\"sku\":\"A-4\",\"qty\":3,\"price\":4.75}]}";

static vial_ws_pmd pmd_with(int cw, int cnct, int sw, int snct)
{
    vial_ws_pmd d;
    memset(&d, 0, sizeof d);
    d.params = (vial_ws_pmd_params){(uint8_t)snct, (uint8_t)cnct, (uint8_t)sw, (uint8_t)cw};
    return d;
}

/* ---- negotiation ---------------------------------------------------------------- */

static void test_negotiation_table(void **state)
{
    (void)state;
    static const struct {
        const char *offer;
        int accepted;
        const char *resp;
        int snct, cnct, sw, cw;
    } t[] = {
        {NULL, 0, NULL, 0, 0, 0, 0},
        {"", 0, NULL, 0, 0, 0, 0},
        {"x-foo; bar=1", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate", 1, "permessage-deflate", 0, 0, 12, 15},
        {"PerMessage-Deflate", 1, "permessage-deflate", 0, 0, 12, 15},
        /* Chrome's and Python websockets' offer */
        {"permessage-deflate; client_max_window_bits", 1, "permessage-deflate; client_max_window_bits=12",
         0, 0, 12, 12},
        {"permessage-deflate; client_max_window_bits=10", 1,
         "permessage-deflate; client_max_window_bits=10", 0, 0, 12, 10},
        {"permessage-deflate; client_max_window_bits=15", 1,
         "permessage-deflate; client_max_window_bits=12", 0, 0, 12, 12},
        {"permessage-deflate; client_max_window_bits=8", 1,
         "permessage-deflate; client_max_window_bits=8", 0, 0, 12, 8},
        {"permessage-deflate; server_max_window_bits=10", 1,
         "permessage-deflate; server_max_window_bits=10", 0, 0, 10, 15},
        {"permessage-deflate; server_max_window_bits=15", 1,
         "permessage-deflate; server_max_window_bits=12", 0, 0, 12, 15},
        {"permessage-deflate; server_max_window_bits=\"9\"", 1,
         "permessage-deflate; server_max_window_bits=9", 0, 0, 9, 15},
        {"permessage-deflate;server_no_context_takeover;client_no_context_takeover", 1,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover", 1, 1, 12, 15},
        /* declined offers, then the next one taken */
        {"permessage-deflate; server_max_window_bits=8, permessage-deflate", 1, "permessage-deflate", 0,
         0, 12, 15},
        {"permessage-deflate; server_max_window_bits=16, permessage-deflate; client_no_context_takeover",
         1, "permessage-deflate; client_no_context_takeover", 0, 1, 12, 15},
        {"permessage-deflate; server_max_window_bits=7", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; server_max_window_bits", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; server_max_window_bits=010", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; client_max_window_bits=0", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; client_max_window_bits=abc", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; client_max_window_bits; client_max_window_bits=9", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; server_no_context_takeover=1", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; mystery", 0, NULL, 0, 0, 0, 0},
        {"x-webkit-deflate-frame, permessage-deflate; unknown=1, permessage-deflate; client_max_window_bits",
         1, "permessage-deflate; client_max_window_bits=12", 0, 0, 12, 12},
        /* syntax that is not an extension list: nothing */
        {"permessage-deflate; =1", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate; client_max_window_bits=\"10", 0, NULL, 0, 0, 0, 0},
        {"permessage-deflate client_max_window_bits", 0, NULL, 0, 0, 0, 0},
        {" , ,permessage-deflate ;  client_max_window_bits = 11 ", 1,
         "permessage-deflate; client_max_window_bits=11", 0, 0, 12, 11},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        vial_ws_pmd_params p;
        char resp[160] = "";
        memset(&p, 0, sizeof p);
        int r = vial_ws_pmd_negotiate(t[i].offer, &p, resp, sizeof resp);
        if (r != t[i].accepted)
            fail_msg("offer %zu \"%s\": %d", i, t[i].offer ? t[i].offer : "(null)", r);
        if (!r)
            continue;
        assert_string_equal(resp, t[i].resp);
        assert_int_equal(p.server_no_context_takeover, t[i].snct);
        assert_int_equal(p.client_no_context_takeover, t[i].cnct);
        assert_int_equal(p.server_max_window_bits, t[i].sw);
        assert_int_equal(p.client_max_window_bits, t[i].cw);
    }
}

/* ---- inflate ---------------------------------------------------------------------- */

static void test_inflate_round_trip_pieces(void **state)
{
    (void)state;
    vial_ws_pmd d = pmd_with(15, 0, 12, 0);
    z_stream peer;
    peer_init(&peer, 15);
    uint8_t z[2048];
    size_t zl = peer_msg(&peer, json_msg, sizeof json_msg - 1, z, sizeof z, 0);
    /* fed in pieces of every size: the output is the same */
    for (size_t step = 1; step <= zl; step += step < 8 ? 1 : 17) {
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        for (size_t at = 0; at < zl; at += step) {
            size_t n = zl - at < step ? zl - at : step;
            assert_int_equal(vial_ws_pmd_inflate(&d, z + at, n, at + n == zl, &buf, &len, &cap, 1 << 20), 0);
        }
        assert_int_equal(len, sizeof json_msg - 1);
        assert_memory_equal(buf, json_msg, len);
        free(buf);
        /* with context takeover the peer's next message may refer back: keep
         * sending the same text */
        zl = peer_msg(&peer, json_msg, sizeof json_msg - 1, z, sizeof z, 0);
    }
    assert_true(zl < 20); /* the repeats were back-references */
    deflateEnd(&peer);
    vial_ws_pmd_free(&d);
    assert_int_equal(vial_ws_pmd_memory(), 0);
}

static void test_inflate_client_no_context_takeover(void **state)
{
    (void)state;
    /* A peer that resets per message: each message decodes alone. */
    vial_ws_pmd d = pmd_with(9, 1, 12, 0);
    uint8_t z[2048];
    for (int i = 0; i < 3; i++) {
        z_stream peer;
    peer_init(&peer, 9);
        size_t zl = peer_msg(&peer, json_msg, sizeof json_msg - 1, z, sizeof z, 0);
        deflateEnd(&peer);
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        assert_int_equal(vial_ws_pmd_inflate(&d, z, zl, 1, &buf, &len, &cap, 1 << 20), 0);
        assert_int_equal(len, sizeof json_msg - 1);
        assert_memory_equal(buf, json_msg, len);
        free(buf);
    }
    /* A message ending with a final block (BFINAL) is fine too, and the
     * next one decodes. */
    for (int i = 0; i < 2; i++) {
        z_stream peer;
    peer_init(&peer, 9);
        size_t zl = peer_msg(&peer, "hello", 5, z, sizeof z, 1);
        deflateEnd(&peer);
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        assert_int_equal(vial_ws_pmd_inflate(&d, z, zl, 1, &buf, &len, &cap, 1 << 20), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(buf, "hello", 5);
        free(buf);
    }
    vial_ws_pmd_free(&d);
}

static void test_inflate_bomb_stops_at_limit(void **state)
{
    (void)state;
    /* 64 MiB of zeros is about 64 KiB compressed: inflation must stop just
     * past the 1 MiB limit, with a buffer never larger than limit + 1. */
    size_t big = (size_t)64 << 20, limit = (size_t)1 << 20;
    uint8_t *zeros = calloc(1, 1 << 20);
    uint8_t *z = malloc(1 << 20);
    z_stream peer;
    peer_init(&peer, 15);
    size_t zl = 0;
    for (size_t at = 0; at < big; at += 1 << 20) {
        peer.next_in = zeros;
        peer.avail_in = 1 << 20;
        peer.next_out = z + zl;
        peer.avail_out = (uInt)((1 << 20) - zl);
        assert_int_equal(deflate(&peer, at + (1 << 20) == big ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
        zl = (1 << 20) - peer.avail_out;
    }
    deflateEnd(&peer);
    assert_true(zl < 128 * 1024);
    vial_ws_pmd d = pmd_with(15, 0, 12, 0);
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    int r = 0;
    size_t fed = 0;
    /* in frames of 4 KiB, as they would arrive */
    while (fed < zl && r == 0) {
        size_t n = zl - fed < 4096 ? zl - fed : 4096;
        r = vial_ws_pmd_inflate(&d, z + fed, n, fed + n == zl, &buf, &len, &cap, limit);
        fed += n;
    }
    assert_int_equal(r, VIAL_WS_PMD_TOO_BIG);
    assert_true(cap <= limit + 1);
    assert_true(fed < zl); /* failed long before the end of the input */
    free(buf);
    /* exactly the limit is fine */
    len = cap = 0;
    buf = NULL;
    vial_ws_pmd_free(&d);
    d = pmd_with(15, 0, 12, 0);
    peer_init(&peer, 15);
    zl = peer_msg(&peer, zeros, limit, z, 1 << 20, 0);
    deflateEnd(&peer);
    assert_int_equal(vial_ws_pmd_inflate(&d, z, zl, 1, &buf, &len, &cap, limit), 0);
    assert_int_equal(len, limit);
    free(buf);
    vial_ws_pmd_free(&d);
    free(zeros);
    free(z);
}

static void test_inflate_corrupt(void **state)
{
    (void)state;
    static const uint8_t bad[][4] = {
        {0xff, 0xff, 0xff, 0xff}, /* reserved block type 3 */
        {0x00, 0x05, 0x00, 0x00}, /* stored block whose LEN/NLEN disagree */
    };
    for (size_t i = 0; i < 2; i++) {
        vial_ws_pmd d = pmd_with(15, 0, 12, 0);
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        assert_int_equal(vial_ws_pmd_inflate(&d, bad[i], 4, 1, &buf, &len, &cap, 1 << 20),
                         VIAL_WS_PMD_CORRUPT);
        free(buf);
        vial_ws_pmd_free(&d);
    }
    /* a distance further back than anything sent (first message) */
    vial_ws_pmd d = pmd_with(15, 0, 12, 0);
    z_stream peer;
    peer_init(&peer, 15);
    uint8_t z[256];
    peer_msg(&peer, "abcdefghij", 10, z, sizeof z, 0); /* vial never sees this one */
    size_t zl = peer_msg(&peer, "abcdefghij", 10, z, sizeof z, 0);
    deflateEnd(&peer);
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(vial_ws_pmd_inflate(&d, z, zl, 1, &buf, &len, &cap, 1 << 20), VIAL_WS_PMD_CORRUPT);
    free(buf);
    vial_ws_pmd_free(&d);
}

static void test_memory_cap_and_figures(void **state)
{
    (void)state;
    uint8_t *buf = NULL, *out = NULL;
    size_t len = 0, cap = 0, ol;
    /* the sizes docs/guide/websockets.md states */
    vial_ws_pmd d = pmd_with(12, 0, 12, 0);
    z_stream peer;
    peer_init(&peer, 12);
    uint8_t z[2048];
    size_t zl = peer_msg(&peer, json_msg, sizeof json_msg - 1, z, sizeof z, 0);
    deflateEnd(&peer);
    assert_int_equal(vial_ws_pmd_inflate(&d, z, zl, 1, &buf, &len, &cap, 1 << 20), 0);
    size_t inf = d.held;
    assert_int_equal(vial_ws_pmd_deflate(&d, json_msg, sizeof json_msg - 1, &out, &ol), 0);
    size_t both = d.held;
    print_message("zlib state: inflate (window 2^15 always) %zu bytes, deflate (window 2^12, memLevel %d) %zu bytes\n",
                  inf, VIAL_WS_PMD_MEMLEVEL, both - inf);
    assert_true(inf < 48 * 1024);
    assert_true(both - inf < 48 * 1024);
    assert_int_equal(vial_ws_pmd_memory(), both);
    free(out);
    free(buf);
    vial_ws_pmd_free(&d);
    assert_int_equal(d.held, 0);
    assert_int_equal(vial_ws_pmd_memory(), 0);
    /* 15-bit windows, for the record */
    d = pmd_with(15, 0, 15, 0);
    buf = NULL, len = cap = 0;
    peer_init(&peer, 15);
    zl = peer_msg(&peer, json_msg, sizeof json_msg - 1, z, sizeof z, 0);
    deflateEnd(&peer);
    assert_int_equal(vial_ws_pmd_inflate(&d, z, zl, 1, &buf, &len, &cap, 1 << 20), 0);
    inf = d.held;
    assert_int_equal(vial_ws_pmd_deflate(&d, json_msg, sizeof json_msg - 1, &out, &ol), 0);
    print_message("zlib state: inflate (window 2^15) %zu bytes, deflate (window 2^15, memLevel %d) %zu bytes\n",
                  inf, VIAL_WS_PMD_MEMLEVEL, d.held - inf);
    free(out);
    free(buf);
    vial_ws_pmd_free(&d);

    /* The handshake's estimate covers what was measured. */
    vial_ws_pmd_params p12 = {0, 0, 12, 12};
    assert_true(vial_ws_pmd_room(&p12, 0));
    assert_true(vial_ws_pmd_room(&p12, 96 * 1024));
    assert_false(vial_ws_pmd_room(&p12, 64 * 1024));

    /* At the cap: no state, a distinct result; nothing stays charged. */
    d = pmd_with(15, 0, 12, 0);
    d.memory_max = 4096;
    buf = NULL, len = cap = 0;
    assert_int_equal(vial_ws_pmd_inflate(&d, z, zl, 1, &buf, &len, &cap, 1 << 20), VIAL_WS_PMD_NO_MEMORY);
    assert_int_equal(vial_ws_pmd_deflate(&d, json_msg, sizeof json_msg - 1, &out, &ol), VIAL_WS_PMD_NO_MEMORY);
    assert_int_equal(vial_ws_pmd_memory(), 0);
    free(buf);
    vial_ws_pmd_free(&d);
}

/* ---- deflate ----------------------------------------------------------------------- */

static void test_deflate_context_takeover(void **state)
{
    (void)state;
    for (int snct = 0; snct <= 1; snct++) {
        vial_ws_pmd d = pmd_with(15, 0, 12, snct);
        z_stream peer;
        memset(&peer, 0, sizeof peer);
        assert_int_equal(inflateInit2(&peer, -12), Z_OK);
        size_t sizes[3];
        for (int i = 0; i < 3; i++) {
            uint8_t *out;
            size_t ol;
            uint8_t plain[1024];
            assert_int_equal(vial_ws_pmd_deflate(&d, json_msg, sizeof json_msg - 1, &out, &ol), 0);
            assert_false(ol >= 4 && memcmp(out + ol - 4, "\x00\x00\xff\xff", 4) == 0);
            sizes[i] = ol;
            if (snct) { /* each message decodes with a fresh inflater */
                inflateEnd(&peer);
                assert_int_equal(inflateInit2(&peer, -12), Z_OK);
            }
            size_t pl = peer_inflate(&peer, out, ol, plain, sizeof plain);
            assert_int_equal(pl, sizeof json_msg - 1);
            assert_memory_equal(plain, json_msg, pl);
            free(out);
        }
        if (snct)
            assert_int_equal(sizes[1], sizes[0]);
        else
            assert_true(sizes[1] < sizes[0] / 4);
        inflateEnd(&peer);
        vial_ws_pmd_free(&d);
    }
}

static void test_deflate_incompressible_goes_plain(void **state)
{
    (void)state;
    vial_ws_pmd d = pmd_with(15, 0, 12, 0);
    uint8_t rnd[600];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (uint8_t)(x >> 16);
    }
    uint8_t *out;
    size_t ol;
    assert_int_equal(vial_ws_pmd_deflate(&d, rnd, sizeof rnd, &out, &ol), 1);
    /* the compressor forgot it: the next message must decode with a
     * context that never saw the random bytes */
    z_stream peer;
    memset(&peer, 0, sizeof peer);
    assert_int_equal(inflateInit2(&peer, -12), Z_OK);
    assert_int_equal(vial_ws_pmd_deflate(&d, json_msg, sizeof json_msg - 1, &out, &ol), 0);
    uint8_t plain[1024];
    assert_int_equal(peer_inflate(&peer, out, ol, plain, sizeof plain), sizeof json_msg - 1);
    free(out);
    inflateEnd(&peer);
    vial_ws_pmd_free(&d);
}

/* ---- the parser's RSV1 rules, and the whole receive path ----------------------------- */

static size_t put(uint8_t *buf, size_t at, int b0, const void *payload, size_t len)
{
    static const uint8_t key[4] = {0xa1, 0xb2, 0xc3, 0xd4};
    uint8_t *o = buf + at;
    size_t n = 0;
    o[n++] = (uint8_t)b0;
    if (len < 126) {
        o[n++] = (uint8_t)(0x80 | len);
    } else {
        o[n++] = 0x80 | 126;
        o[n++] = (uint8_t)(len >> 8);
        o[n++] = (uint8_t)len;
    }
    memcpy(o + n, key, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        o[n++] = ((const uint8_t *)payload)[i] ^ key[i & 3];
    return at + n;
}

static int parse_one(int rsv1_ok, const uint8_t *frames, size_t n)
{
    uint8_t buf[512];
    memcpy(buf, frames, n);
    vial_ws_parser p;
    vial_ws_parser_init(&p, 0);
    p.rsv1_ok = (uint8_t)rsv1_ok;
    size_t at = 0;
    while (at < n) {
        size_t used;
        vial_ws_event ev;
        int r = vial_ws_parse(&p, buf + at, n - at, &used, &ev);
        at += used;
        if (r <= 0)
            return r;
    }
    return 0;
}

static void test_parser_rsv1(void **state)
{
    (void)state;
    uint8_t f[256];
    size_t n;
    /* not negotiated: 1002 */
    n = put(f, 0, 0xC1, "\xff", 1);
    assert_int_equal(parse_one(0, f, n), -1002);
    /* negotiated: on a first frame, fine (invalid UTF-8 there is the
     * inflater's business) */
    assert_int_equal(parse_one(1, f, n), 0);
    /* on a continuation */
    n = put(f, 0, 0x41, "a", 1);
    n = put(f, n, 0xC0, "b", 1);
    assert_int_equal(parse_one(1, f, n), -1002);
    /* on control frames */
    n = put(f, 0, 0xC9, "", 0);
    assert_int_equal(parse_one(1, f, n), -1002);
    n = put(f, 0, 0xC8, "\x03\xe8", 2);
    assert_int_equal(parse_one(1, f, n), -1002);
    /* RSV2 / RSV3 stay errors */
    n = put(f, 0, 0xA1, "a", 1);
    assert_int_equal(parse_one(1, f, n), -1002);
    n = put(f, 0, 0x91, "a", 1);
    assert_int_equal(parse_one(1, f, n), -1002);
    /* an uncompressed text message is still checked */
    n = put(f, 0, 0x81, "\xff", 1);
    assert_int_equal(parse_one(1, f, n), -1007);
}

/* A compressed text message in three frames, a ping and a pong between
 * them, then a second message using the first as context: what
 * app/websocket.c does with the events. */
static void test_fragmented_compressed_with_controls(void **state)
{
    (void)state;
    z_stream peer;
    peer_init(&peer, 15);
    uint8_t z[2048], wire[4096];
    size_t zl = peer_msg(&peer, json_msg, sizeof json_msg - 1, z, sizeof z, 0);
    size_t a = zl / 3, b = 2 * zl / 3;
    size_t n = put(wire, 0, 0x41, z, a); /* RSV1 + text, not fin */
    n = put(wire, n, 0x89, "pi", 2);
    n = put(wire, n, 0x00, z + a, b - a);
    n = put(wire, n, 0x8A, "po", 2);
    n = put(wire, n, 0x80, z + b, zl - b);
    zl = peer_msg(&peer, json_msg, sizeof json_msg - 1, z, sizeof z, 0);
    n = put(wire, n, 0xC1, z, zl);
    deflateEnd(&peer);

    for (size_t step = 1; step <= n; step = step * 2 + 1) {
        vial_ws_parser p;
        vial_ws_parser_init(&p, 0);
        p.rsv1_ok = 1;
        vial_ws_pmd d = pmd_with(15, 0, 12, 0);
        uint8_t copy[4096];
        memcpy(copy, wire, n);
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        int msgs = 0, controls = 0;
        for (size_t at = 0; at < n;) {
            size_t lim = n - at < step ? n - at : step, used;
            vial_ws_event ev;
            int r = vial_ws_parse(&p, copy + at, lim, &used, &ev);
            at += used;
            assert_true(r >= 0);
            if (r == 0)
                continue;
            if (ev.kind == VIAL_WS_EV_CONTROL) {
                controls++;
                continue;
            }
            assert_true(ev.compressed);
            assert_int_equal(vial_ws_pmd_inflate(&d, ev.data, ev.len, ev.fin, &buf, &len, &cap, 1 << 20), 0);
            if (ev.fin) {
                assert_int_equal(ev.opcode, VIAL_WS_OP_TEXT);
                assert_int_equal(len, sizeof json_msg - 1);
                assert_memory_equal(buf, json_msg, len);
                assert_true(vial_ws_utf8_valid(buf, len));
                len = 0;
                msgs++;
            }
        }
        assert_int_equal(msgs, 2);
        assert_int_equal(controls, 2);
        free(buf);
        vial_ws_pmd_free(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiation_table),
        cmocka_unit_test(test_inflate_round_trip_pieces),
        cmocka_unit_test(test_inflate_client_no_context_takeover),
        cmocka_unit_test(test_inflate_bomb_stops_at_limit),
        cmocka_unit_test(test_inflate_corrupt),
        cmocka_unit_test(test_memory_cap_and_figures),
        cmocka_unit_test(test_deflate_context_takeover),
        cmocka_unit_test(test_deflate_incompressible_goes_plain),
        cmocka_unit_test(test_parser_rsv1),
        cmocka_unit_test(test_fragmented_compressed_with_controls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
