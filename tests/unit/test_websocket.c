/* Unit tests for the websocket frame parser and handshake helpers
 * (src/http/websocket.c) against conformance-app.md section 5. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/websocket.h"

/* ---- helpers ------------------------------------------------------------- */

/* Appends a masked client frame to buf; returns the new length. */
static size_t put_frame(uint8_t *buf, size_t at, int b0, const void *payload, uint64_t len, int mask,
                        uint64_t announced)
{
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t *o = buf + at;
    size_t n = 0;
    o[n++] = (uint8_t)b0;
    uint8_t mb = mask ? 0x80 : 0;
    if (announced < 126) {
        o[n++] = (uint8_t)(mb | announced);
    } else if (announced < 65536) {
        o[n++] = mb | 126;
        o[n++] = (uint8_t)(announced >> 8);
        o[n++] = (uint8_t)announced;
    } else {
        o[n++] = mb | 127;
        for (int i = 7; i >= 0; i--)
            o[n++] = (uint8_t)(announced >> (8 * i));
    }
    if (mask) {
        memcpy(o + n, key, 4);
        n += 4;
    }
    const uint8_t *p = payload;
    for (uint64_t i = 0; i < len; i++)
        o[n++] = mask ? p[i] ^ key[i & 3] : p[i];
    return at + n;
}

static size_t frame(uint8_t *buf, size_t at, int fin, int op, const void *payload, size_t len)
{
    return put_frame(buf, at, (fin ? 0x80 : 0) | op, payload, len, 1, len);
}

/* Collected result of parsing a whole buffer, fed in pieces of `step`. */
typedef struct result {
    int error;           /* negative close code, or 0 */
    int nmsgs;
    int types[16];
    char msgs[16][256];
    size_t lens[16];
    int ncontrol;
    int control_ops[16];
    int close_code;
    char cur[256];
    size_t cur_len;
} result;

static void run(uint8_t *buf, size_t len, size_t step, result *r)
{
    vial_ws_parser p;
    vial_ws_parser_init(&p, 0);
    memset(r, 0, sizeof *r);
    size_t at = 0;
    while (at < len) {
        size_t end = at + step < len ? at + step : len;
        while (at < end) {
            size_t used;
            vial_ws_event ev;
            int rc = vial_ws_parse(&p, buf + at, end - at, &used, &ev);
            at += used;
            if (rc < 0) {
                r->error = rc;
                return;
            }
            if (rc == 0)
                break;
            if (ev.kind == VIAL_WS_EV_DATA) {
                assert_true(r->cur_len + ev.len <= sizeof r->cur);
                memcpy(r->cur + r->cur_len, ev.data, ev.len);
                r->cur_len += ev.len;
                if (ev.fin) {
                    r->types[r->nmsgs] = ev.opcode;
                    memcpy(r->msgs[r->nmsgs], r->cur, r->cur_len);
                    r->lens[r->nmsgs++] = r->cur_len;
                    r->cur_len = 0;
                }
            } else {
                r->control_ops[r->ncontrol++] = ev.opcode;
                if (ev.opcode == VIAL_WS_OP_CLOSE)
                    r->close_code = ev.close_code;
            }
        }
    }
}

/* Same outcome whatever the split of the input. */
static void run_all_splits(uint8_t *orig, size_t len, result *out)
{
    uint8_t *copy = malloc(len + 1);
    size_t steps[] = {len ? len : 1, 1, 2, 3, 7};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        memcpy(copy, orig, len); /* the parser unmasks in place */
        result r;
        run(copy, len, steps[s], &r);
        if (s == 0)
            *out = r;
        else {
            assert_int_equal(r.error, out->error);
            assert_int_equal(r.nmsgs, out->nmsgs);
            assert_int_equal(r.ncontrol, out->ncontrol);
            for (int i = 0; i < r.nmsgs; i++) {
                assert_int_equal(r.lens[i], out->lens[i]);
                assert_memory_equal(r.msgs[i], out->msgs[i], r.lens[i]);
            }
        }
    }
    free(copy);
}

/* ---- messages ------------------------------------------------------------- */

static void test_single_frames(void **state)
{
    uint8_t b[512];
    size_t n = frame(b, 0, 1, VIAL_WS_OP_TEXT, "hello", 5);
    n = frame(b, n, 1, VIAL_WS_OP_BINARY, "\x00\xff", 2);
    n = frame(b, n, 1, VIAL_WS_OP_TEXT, "", 0);
    result r;
    run_all_splits(b, n, &r);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.nmsgs, 3);
    assert_int_equal(r.types[0], VIAL_WS_OP_TEXT);
    assert_memory_equal(r.msgs[0], "hello", 5);
    assert_int_equal(r.types[1], VIAL_WS_OP_BINARY);
    assert_int_equal(r.lens[2], 0);
}

static void test_fragments_with_controls(void **state)
{
    uint8_t b[512];
    size_t n = frame(b, 0, 0, VIAL_WS_OP_TEXT, "ab", 2);
    n = frame(b, n, 1, VIAL_WS_OP_PING, "p", 1);
    n = frame(b, n, 0, VIAL_WS_OP_CONT, "", 0);
    n = frame(b, n, 1, VIAL_WS_OP_PONG, "", 0);
    n = frame(b, n, 1, VIAL_WS_OP_CONT, "cd", 2);
    result r;
    run_all_splits(b, n, &r);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.nmsgs, 1);
    assert_memory_equal(r.msgs[0], "abcd", 4);
    assert_int_equal(r.ncontrol, 2);
    assert_int_equal(r.control_ops[0], VIAL_WS_OP_PING);
}

static void test_utf8_split_code_point(void **state)
{
    const char *s = "\xe2\x82\xac\xf0\x9f\x98\x80"; /* euro, emoji */
    uint8_t b[512];
    size_t n = frame(b, 0, 0, VIAL_WS_OP_TEXT, s, 1);
    n = frame(b, n, 0, VIAL_WS_OP_CONT, s + 1, 4);
    n = frame(b, n, 1, VIAL_WS_OP_CONT, s + 5, 2);
    result r;
    run_all_splits(b, n, &r);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.nmsgs, 1);
    assert_memory_equal(r.msgs[0], s, 7);
}

static int error_of(uint8_t *b, size_t n)
{
    result r;
    run_all_splits(b, n, &r);
    return r.error;
}

static void test_protocol_errors(void **state)
{
    uint8_t b[512];
    /* unmasked */
    size_t n = put_frame(b, 0, 0x81, "hi", 2, 0, 2);
    assert_int_equal(error_of(b, n), -1002);
    /* RSV bits */
    for (int rsv = 1; rsv < 8; rsv++) {
        n = put_frame(b, 0, 0x81 | rsv << 4, "hi", 2, 1, 2);
        assert_int_equal(error_of(b, n), -1002);
    }
    /* unknown opcodes */
    int bad_ops[] = {3, 4, 5, 6, 7, 11, 12, 13, 14, 15};
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
        n = frame(b, 0, 1, bad_ops[i], "", 0);
        assert_int_equal(error_of(b, n), -1002);
    }
    /* fragmented control, control > 125 */
    n = frame(b, 0, 0, VIAL_WS_OP_PING, "", 0);
    assert_int_equal(error_of(b, n), -1002);
    uint8_t big[126] = {0};
    n = frame(b, 0, 1, VIAL_WS_OP_PING, big, 126);
    assert_int_equal(error_of(b, n), -1002);
    /* continuation without a message; new data frame inside one */
    n = frame(b, 0, 1, VIAL_WS_OP_CONT, "x", 1);
    assert_int_equal(error_of(b, n), -1002);
    n = frame(b, 0, 0, VIAL_WS_OP_BINARY, "x", 1);
    n = frame(b, n, 1, VIAL_WS_OP_TEXT, "y", 1);
    assert_int_equal(error_of(b, n), -1002);
    /* close payload of 1 byte, invalid codes */
    n = frame(b, 0, 1, VIAL_WS_OP_CLOSE, "\x03", 1);
    assert_int_equal(error_of(b, n), -1002);
    int bad_codes[] = {0, 999, 1004, 1005, 1006, 1012, 1015, 2000, 2999, 5000};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        uint8_t pl[2] = {(uint8_t)(bad_codes[i] >> 8), (uint8_t)bad_codes[i]};
        n = frame(b, 0, 1, VIAL_WS_OP_CLOSE, pl, 2);
        assert_int_equal(error_of(b, n), -1002);
    }
    /* a 64-bit length with the top bit set */
    n = put_frame(b, 0, 0x82, "", 0, 1, 0);
    b[1] = 0x80 | 127;
    memset(b + 2, 0xff, 8);
    memset(b + 10, 0, 4);
    assert_int_equal(error_of(b, 14), -1002);
}

static void test_close_frames(void **state)
{
    uint8_t b[512];
    int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint8_t pl[4] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i], 'o', 'k'};
        size_t n = frame(b, 0, 1, VIAL_WS_OP_CLOSE, pl, 4);
        result r;
        run_all_splits(b, n, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.close_code, good[i]);
    }
    size_t n = frame(b, 0, 1, VIAL_WS_OP_CLOSE, "", 0);
    result r;
    run_all_splits(b, n, &r);
    assert_int_equal(r.error, 0);
    assert_int_equal(r.ncontrol, 1);
    assert_int_equal(r.close_code, 0);
    n = frame(b, 0, 1, VIAL_WS_OP_CLOSE, "\x03\xe8\xff", 3);
    assert_int_equal(error_of(b, n), -1007);
}

static void test_invalid_utf8(void **state)
{
    const char *bad[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80",
                         "\xf5\x80\x80\x80", "\xe0\x80\x80"};
    uint8_t b[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = frame(b, 0, 1, VIAL_WS_OP_TEXT, bad[i], strlen(bad[i]));
        assert_int_equal(error_of(b, n), -1007);
    }
    /* binary is not checked */
    size_t n = frame(b, 0, 1, VIAL_WS_OP_BINARY, "\xff", 1);
    assert_int_equal(error_of(b, n), 0);
    /* an incomplete code point in a non-final fragment is fine until the end */
    n = frame(b, 0, 0, VIAL_WS_OP_TEXT, "\xe2\x82", 2);
    assert_int_equal(error_of(b, n), 0);
}

static void test_size_limit_on_header(void **state)
{
    uint8_t b[64];
    /* exactly 1 MiB announced: accepted (the payload has not come yet) */
    size_t n = put_frame(b, 0, 0x82, "", 0, 1, VIAL_WS_MAX_MESSAGE);
    assert_int_equal(error_of(b, n), 0);
    /* one more: refused from the header alone */
    n = put_frame(b, 0, 0x82, "", 0, 1, VIAL_WS_MAX_MESSAGE + 1);
    assert_int_equal(error_of(b, n), -1009);
    /* across fragments: a small limit to keep the buffers small */
    vial_ws_parser p;
    vial_ws_parser_init(&p, 10);
    uint8_t m[128];
    n = frame(m, 0, 0, VIAL_WS_OP_BINARY, "123456", 6);
    n = put_frame(m, n, 0x00, "", 0, 1, 5); /* 11 > 10 */
    size_t used, at = 0;
    vial_ws_event ev;
    int rc;
    while ((rc = vial_ws_parse(&p, m + at, n - at, &used, &ev)) == 1)
        at += used;
    assert_int_equal(rc, -1009);
    /* errors are sticky */
    assert_int_equal(vial_ws_parse(&p, m, 1, &used, &ev), -1009);
}

static void test_frame_header(void **state)
{
    uint8_t h[10];
    assert_int_equal(vial_ws_frame_header(h, 1, 5), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 5);
    assert_int_equal(vial_ws_frame_header(h, 2, 126), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(vial_ws_frame_header(h, 2, 65536), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1);
}

/* ---- handshake --------------------------------------------------------------- */

static void test_accept_value(void **state)
{
    char out[29];
    /* RFC 6455 section 1.3 */
    vial_ws_accept_value("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_handshake_check(void **state)
{
    vial_http_head h;
    memset(&h, 0, sizeof h);
    h.method = (vial_span){"GET", 3};
    h.version_minor = 1;
    h.upgrade_websocket = 1;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(vial_ws_handshake_check(&h, key, "13"), 0);
    assert_int_equal(vial_ws_handshake_check(&h, key, "8"), 426);
    assert_int_equal(vial_ws_handshake_check(&h, key, NULL), 426);
    assert_int_equal(vial_ws_handshake_check(&h, NULL, "13"), 400);
    assert_int_equal(vial_ws_handshake_check(&h, "dGhlIHNhbXBsZSBub25jZQ", "13"), 400);
    assert_int_equal(vial_ws_handshake_check(&h, "dGhlIHNhbXBsZSBub25jZQ=A", "13"), 400);
    assert_int_equal(vial_ws_handshake_check(&h, "dGhlIHNhbXBsZSBub25j*Q==", "13"), 400);
    h.upgrade_websocket = 0;
    assert_int_equal(vial_ws_handshake_check(&h, key, "13"), 400);
    h.upgrade_websocket = 1;
    h.version_minor = 0;
    assert_int_equal(vial_ws_handshake_check(&h, key, "13"), 400);
    h.version_minor = 1;
    h.method = (vial_span){"POST", 4};
    assert_int_equal(vial_ws_handshake_check(&h, key, "13"), 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_frames),
        cmocka_unit_test(test_fragments_with_controls),
        cmocka_unit_test(test_utf8_split_code_point),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_size_limit_on_header),
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_accept_value),
        cmocka_unit_test(test_handshake_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
