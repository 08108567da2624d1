/* Unit tests for the HTTP/1.1 head parser and the chunked decoder
 * (src/http/parser.c) against the rules of conformance-app.md §6 and §8. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

/* ---- helpers ------------------------------------------------------------- */

static vial_http_head req;

/* Parses buf[0..len) and returns the parser's result; *status is left in
 * `st` for the assertions. */
static int st;
static int parse_n(const char *buf, size_t len)
{
    st = -12345;
    int rc = vial_http_parse_request(buf, len, &req, &st);
    if (rc > 0)
        assert_int_equal(st, 0);
    return rc;
}

static int parse(const char *s)
{
    return parse_n(s, strlen(s));
}

/* The request must be rejected with exactly this status. */
#define REJECT(s, code)                                                         \
    do {                                                                        \
        int rc_ = parse(s);                                                     \
        if (rc_ != VIAL_HTTP_ERROR || st != (code))                             \
            fail_msg("expected %d for \"%s\", got rc %d status %d", (code), (s),  \
                     rc_, st);                                                  \
    } while (0)

/* The whole string must be one complete, valid head. */
#define ACCEPT(s)                                                               \
    do {                                                                        \
        int rc_ = parse(s);                                                     \
        if (rc_ != (int)strlen(s))                                              \
            fail_msg("expected %zu for \"%s\", got rc %d status %d", strlen(s),   \
                     (s), rc_, st);                                             \
    } while (0)

static int span_is(vial_span sp, const char *s)
{
    return sp.len == strlen(s) && memcmp(sp.p, s, sp.len) == 0;
}
#define assert_span(sp, s)                                                      \
    do {                                                                        \
        if (!span_is((sp), (s)))                                                \
            fail_msg("span \"%.*s\" != \"%s\"", (int)(sp).len, (sp).p, (s));     \
    } while (0)

/* "GET / HTTP/1.1" with the given field lines. The buffer stays valid until
 * the next call, since the request's spans point into it. */
static const char *with_fields(const char *fields)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n%s\r\n", fields);
    return buf;
}

static void reject_fields(const char *fields, int code)
{
    REJECT(with_fields(fields), code);
}

static void accept_fields(const char *fields)
{
    ACCEPT(with_fields(fields));
}

/* ---- request line ---------------------------------------------------------- */

static void test_simple_get(void **state)
{
    const char *s = "GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nAccept:  */*  \r\n\r\n";
    assert_int_equal(parse(s), strlen(s));
    assert_span(req.method, "GET");
    assert_span(req.target, "/a/b?x=1&y");
    assert_span(req.path, "/a/b");
    assert_span(req.query, "x=1&y");
    assert_int_equal(req.has_query, 1);
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.is_asterisk, 0);
    assert_int_equal(req.keep_alive, 1);
    assert_int_equal(req.expect_continue, 0);
    assert_int_equal(req.upgrade_websocket, 0);
    assert_int_equal(req.body_kind, VIAL_BODY_NONE);
    assert_int_equal(req.nheaders, 2);
    assert_span(req.headers[0].name, "Host");
    assert_span(req.headers[0].value, "example.com");
    assert_span(req.headers[1].name, "Accept");
    assert_span(req.headers[1].value, "*/*");
    assert_int_equal(req.header_bytes, strlen("Host: example.com\r\nAccept:  */*  \r\n"));
}

static void test_head_followed_by_body(void **state)
{
    const char *head = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
    char buf[256];
    snprintf(buf, sizeof buf, "%shelloGET / HTTP/1.1\r\n", head);
    assert_int_equal(parse(buf), strlen(head));
    assert_int_equal(req.body_kind, VIAL_BODY_LENGTH);
    assert_int_equal(req.content_length, 5);
}

static void test_pipelined(void **state)
{
    const char *s = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    int n = parse(s);
    assert_int_equal(n, strlen(s) / 2);
    assert_span(req.path, "/1");
    assert_int_equal(parse(s + n), strlen(s) / 2);
    assert_span(req.path, "/2");
}

static void test_query_forms(void **state)
{
    ACCEPT("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.path, "/p");
    assert_int_equal(req.has_query, 1);
    assert_int_equal(req.query.len, 0);
    ACCEPT("GET /p?a?b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.query, "a?b");
    ACCEPT("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req.has_query, 0);
    assert_span(req.path, "/");
    /* Percent-encoding is left alone: decoding is the router's business. */
    ACCEPT("GET /a%2Fb%zz HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.path, "/a%2Fb%zz");
}

static void test_progressive_head(void **state)
{
    const char *s = "\r\nPOST /upload?x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                    "Expect: 100-continue\r\n\r\n";
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (parse_n(s, i) != VIAL_HTTP_INCOMPLETE)
            fail_msg("prefix of %zu bytes: rc %d status %d", i, parse_n(s, i), st);
    }
    assert_int_equal(parse_n(s, n), n);
    assert_int_equal(req.expect_continue, 1);
    assert_int_equal(req.content_length, 3);
}

/* A bad byte is answered as soon as it arrives, not when the head ends. */
static void test_progressive_reject(void **state)
{
    static const struct {
        const char *s;
        int code;
    } cases[] = {
        {"GET /a\x01", 400},
        {"GET  ", 400},
        {"G(", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nBad ", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\n ", 400},
        {"GET / HTTP/1.1\r\nHost: h\rx", 400},
        {"GET / X", 400},
        {"GET / HTTP/1.1x", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i].s;
        size_t n = strlen(s);
        for (size_t k = 0; k + 1 < n; k++) {
            int rc = parse_n(s, k);
            if (rc != VIAL_HTTP_INCOMPLETE)
                fail_msg("\"%s\" prefix %zu: rc %d status %d", s, k, rc, st);
        }
        int rc = parse_n(s, n);
        if (rc != VIAL_HTTP_ERROR || st != cases[i].code)
            fail_msg("\"%s\": rc %d status %d", s, rc, st);
    }
}

static void test_leading_empty_lines(void **state)
{
    const char *s = "\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    ACCEPT(s);
    assert_span(req.method, "GET");
    assert_int_equal(parse("\r\n\r\n"), VIAL_HTTP_INCOMPLETE);
    assert_int_equal(parse("\r"), VIAL_HTTP_INCOMPLETE);
    assert_int_equal(parse(""), VIAL_HTTP_INCOMPLETE);
    REJECT("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("\r\n\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

/* Empty lines are skipped, but not without end. */
static void test_leading_empty_lines_cap(void **state)
{
    static char buf[VIAL_HTTP_MAX_HEADER_BYTES + 64];
    size_t n = 0;
    while (n < VIAL_HTTP_MAX_HEADER_BYTES) {
        memcpy(buf + n, "\r\n", 2);
        n += 2;
    }
    strcpy(buf + n, "GET / HTTP/1.0\r\n\r\n");
    ACCEPT(buf);
    memmove(buf + 2, buf, strlen(buf) + 1);
    memcpy(buf, "\r\n", 2);
    REJECT(buf, 400);
}

static void test_request_line_syntax(void **state)
{
    REJECT("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET /\tHTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    REJECT("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET /\r\nHost: h\r\n\r\n", 400);
    REJECT("GET\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
    /* Methods are case-sensitive tokens; unknown ones are the router's call. */
    ACCEPT("get / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.method, "get");
    ACCEPT("M-SEARCH! / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.method, "M-SEARCH!");
}

static void test_method_too_long(void **state)
{
    char buf[256];
    memset(buf, 'A', 64);
    strcpy(buf + 64, " / HTTP/1.1\r\nHost: h\r\n\r\n");
    ACCEPT(buf);
    memset(buf, 'A', 65);
    strcpy(buf + 65, " / HTTP/1.1\r\nHost: h\r\n\r\n");
    REJECT(buf, 501);
    buf[65] = 0;
    REJECT(buf, 501);
}

static void test_target_bytes(void **state)
{
    char buf[128];
    for (int c = 0; c < 256; c++) {
        if (c == ' ')
            continue;
        snprintf(buf, sizeof buf, "GET /a%cb HTTP/1.1\r\nHost: h\r\n\r\n", c);
        size_t n = strlen("GET /a") + 1 + strlen("b HTTP/1.1\r\nHost: h\r\n\r\n");
        int rc = parse_n(buf, n);
        if (c >= 0x21 && c <= 0x7e) {
            if (rc != (int)n)
                fail_msg("target byte 0x%02x refused", c);
        } else if (rc != VIAL_HTTP_ERROR || st != 400) {
            fail_msg("target byte 0x%02x: rc %d status %d", c, rc, st);
        }
    }
    /* Exercise the 16-byte scan with a bad byte at every offset. */
    for (int off = 0; off < 40; off++) {
        char t[64];
        memset(t, 'a', sizeof t);
        t[0] = '/';
        t[off + 1] = '\x80';
        t[50] = 0;
        snprintf(buf, sizeof buf, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", t);
        size_t n = 4 + 50 + strlen(" HTTP/1.1\r\nHost: h\r\n\r\n");
        if (off + 1 < 50) {
            assert_int_equal(parse_n(buf, n), VIAL_HTTP_ERROR);
            assert_int_equal(st, 400);
        }
    }
}

static void test_target_length(void **state)
{
    size_t cap = VIAL_HTTP_MAX_TARGET + 64;
    char *buf = malloc(cap);
    assert_non_null(buf);
    char *t = malloc(VIAL_HTTP_MAX_TARGET + 2);
    assert_non_null(t);
    assert_non_null(t);

    memset(t, 'x', VIAL_HTTP_MAX_TARGET + 1);
    t[0] = '/';
    t[VIAL_HTTP_MAX_TARGET] = 0;
    snprintf(buf, cap, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", t);
    ACCEPT(buf);
    assert_int_equal(req.target.len, VIAL_HTTP_MAX_TARGET);

    t[VIAL_HTTP_MAX_TARGET] = 'x';
    t[VIAL_HTTP_MAX_TARGET + 1] = 0;
    snprintf(buf, cap, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", t);
    REJECT(buf, 414);
    /* Known at the 8193rd byte, before the line is over. */
    snprintf(buf, cap, "GET %s", t);
    REJECT(buf, 414);
    buf[strlen(buf) - 1] = 0;
    assert_int_equal(parse(buf), VIAL_HTTP_INCOMPLETE);
    free(t);
    free(buf);
}

static void test_absolute_form(void **state)
{
    ACCEPT("GET http://example.com/a/b?q=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.path, "/a/b");
    assert_span(req.query, "q=1");
    assert_span(req.target, "http://example.com/a/b?q=1");
    ACCEPT("GET HTTPS://example.com:8443/x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.path, "/x");
    ACCEPT("OPTIONS http://example.com/o?q HTTP/1.0\r\n\r\n");
    assert_int_equal(req.is_asterisk, 0);
    assert_span(req.path, "/o");
    ACCEPT("GET http://example.com HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.path, "/");
    assert_int_equal(req.has_query, 0);
    ACCEPT("GET http://example.com:80?a=b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.path, "/");
    assert_span(req.query, "a=b");
    ACCEPT("GET http://[::1]:8080/v6 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_span(req.path, "/v6");
    ACCEPT("GET http://127.0.0.1:/ HTTP/1.1\r\nHost: h\r\n\r\n");

    REJECT("GET http://user@example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET http://user:pw@example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET http://@example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET http:///path HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET http://h:8x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET ftp://example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET http:/example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_authority_form(void **state)
{
    REJECT("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400);
    REJECT("GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_asterisk(void **state)
{
    ACCEPT("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req.is_asterisk, 1);
    assert_span(req.path, "*");
    REJECT("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("options * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("OPTIONS *?a HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ACCEPT("OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req.is_asterisk, 0);
}

static void test_versions(void **state)
{
    ACCEPT("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(req.version_minor, 0);
    ACCEPT("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req.version_minor, 1);
    ACCEPT("GET / HTTP/1.2\r\nHost: h\r\n\r\n");
    assert_int_equal(req.version_minor, 1);
    ACCEPT("GET / HTTP/1.9\r\nHost: h\r\n\r\n");
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.keep_alive, 1);

    REJECT("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    REJECT("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505);
    REJECT("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
    REJECT("GET / HTTP/9.9\r\n\r\n", 505);

    REJECT("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/10.0\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/2\r\nHost: h\r\n\r\n", 400);
    /* The version is only judged once its line is complete. */
    assert_int_equal(parse("GET / HTTP/2.0"), VIAL_HTTP_INCOMPLETE);
    assert_int_equal(parse("GET / HTTP/2.0\r"), VIAL_HTTP_INCOMPLETE);
}

/* ---- line endings ------------------------------------------------------------ */

static void test_bare_lf_head(void **state)
{
    const char *s = "GET /lf HTTP/1.1\nHost: h\nX-A: 1\n\n";
    ACCEPT(s);
    assert_int_equal(req.nheaders, 2);
    assert_span(req.headers[1].value, "1");
    assert_int_equal(req.header_bytes, strlen("Host: h\nX-A: 1\n"));
    ACCEPT("GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\n");
    ACCEPT("\nGET / HTTP/1.0\n\n");
}

static void test_bare_cr_head(void **state)
{
    REJECT("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n", 400);
    REJECT("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", 400);
}

/* ---- field lines ---------------------------------------------------------------- */

static void test_field_syntax(void **state)
{
    reject_fields("Host: h\r\nX-A : 1\r\n", 400);
    reject_fields("Host: h\r\nX-A\t: 1\r\n", 400);
    reject_fields("Host: h\r\nNoColon\r\n", 400);
    reject_fields("Host: h\r\n: novalue\r\n", 400);
    reject_fields("Host: h\r\nX(A): 1\r\n", 400);
    reject_fields("Host: h\r\nX\"A: 1\r\n", 400);
    reject_fields("Host: h\r\nX A: 1\r\n", 400);
    reject_fields(" Host: h\r\n", 400);
    reject_fields("\tHost: h\r\n", 400);
    accept_fields("Host: h\r\nX-!#$%&'*+-.^_`|~09azAZ: v\r\n");
    assert_span(req.headers[1].name, "X-!#$%&'*+-.^_`|~09azAZ");
}

static void test_obs_fold(void **state)
{
    reject_fields("Host: h\r\nX-A: 1\r\n 2\r\n", 400);
    reject_fields("Host: h\r\nX-A: 1\r\n\t2\r\n", 400);
    reject_fields("Host: h\r\nX-A: 1\n 2\n", 400);
}

static void test_field_values(void **state)
{
    accept_fields("Host: h\r\nX-A:\t a\tb \t\r\n");
    assert_span(req.headers[1].value, "a\tb");
    accept_fields("Host: h\r\nX-Empty:\r\nX-Spaces:    \r\n");
    assert_int_equal(req.headers[1].value.len, 0);
    assert_int_equal(req.headers[2].value.len, 0);
    accept_fields("Host: h\r\nX-Obs: caf\xc3\xa9 \xff\x80\r\n");
    assert_span(req.headers[1].value, "caf\xc3\xa9 \xff\x80");
    accept_fields("Host: h\r\nX-Colon: a:b: c\r\n");
    assert_span(req.headers[1].value, "a:b: c");

    /* Every control byte except HTAB is refused, at any offset (16-byte scan). */
    char buf[128];
    for (int c = 0; c < 0x20; c++) {
        if (c == '\t' || c == '\r' || c == '\n')
            continue;
        for (int off = 0; off < 20; off++) {
            /* Built with memcpy: printf would stop at a NUL. */
            static const char pre[] = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
            size_t n = sizeof pre - 1;
            memcpy(buf, pre, n);
            memset(buf + n, 'v', 40);
            buf[n + (size_t)off] = (char)c;
            memcpy(buf + n + 40, "\r\n\r\n", 4);
            n += 44;
            assert_int_equal(parse_n(buf, n), VIAL_HTTP_ERROR);
            assert_int_equal(st, 400);
        }
    }
    reject_fields("Host: h\r\nX: a\x7f" "b\r\n", 400);
    static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    assert_int_equal(parse_n(nul, sizeof nul - 1), VIAL_HTTP_ERROR);
    assert_int_equal(st, 400);
    static const char nul_name[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0: ab\r\n\r\n";
    assert_int_equal(parse_n(nul_name, sizeof nul_name - 1), VIAL_HTTP_ERROR);
    assert_int_equal(st, 400);
}

/* Field lines totalling `total` bytes (line endings included), one Host plus
 * fillers, each ending with `eol`. */
static char *head_with_field_bytes(size_t total, const char *eol)
{
    size_t cap = total + 256;
    char *s = malloc(cap), *p = s;
    assert_non_null(s);
    size_t el = strlen(eol), used = 0;
    p += sprintf(p, "GET / HTTP/1.1%s", eol);
    used += (size_t)sprintf(p, "Host: h%s", eol);
    p += used;
    while (used < total) {
        size_t left = total - used, line = left > 4000 ? 3000 : left;
        size_t vlen = line - el - 3; /* "X: " */
        p += sprintf(p, "X: ");
        memset(p, 'v', vlen);
        p += vlen;
        memcpy(p, eol, el);
        p += el;
        used += line;
    }
    sprintf(p, "%s", eol);
    return s;
}

static void test_header_bytes_limit(void **state)
{
    static const char *eols[] = {"\r\n", "\n"};
    for (int i = 0; i < 2; i++) {
        char *s = head_with_field_bytes(VIAL_HTTP_MAX_HEADER_BYTES, eols[i]);
        ACCEPT(s);
        assert_int_equal(req.header_bytes, VIAL_HTTP_MAX_HEADER_BYTES);
        free(s);
        s = head_with_field_bytes(VIAL_HTTP_MAX_HEADER_BYTES + 1, eols[i]);
        REJECT(s, 431);
        free(s);
    }
}

/* An endless field line is refused once it passes the limit, without its end. */
static void test_header_bytes_incomplete(void **state)
{
    size_t cap = VIAL_HTTP_MAX_HEADER_BYTES + 64;
    char *s = malloc(cap);
    assert_non_null(s);
    int n = sprintf(s, "GET / HTTP/1.1\r\nX: ");
    memset(s + n, 'v', cap - (size_t)n);
    size_t line_start = strlen("GET / HTTP/1.1\r\n");
    /* 16384 bytes of line so far: the line end would make it 16385+. */
    assert_int_equal(parse_n(s, line_start + VIAL_HTTP_MAX_HEADER_BYTES), VIAL_HTTP_INCOMPLETE);
    assert_int_equal(parse_n(s, line_start + VIAL_HTTP_MAX_HEADER_BYTES + 1), VIAL_HTTP_ERROR);
    assert_int_equal(st, 431);
    /* Same for a name that never reaches its colon. */
    memset(s + line_start, 'N', cap - line_start);
    assert_int_equal(parse_n(s, line_start + VIAL_HTTP_MAX_HEADER_BYTES + 1), VIAL_HTTP_ERROR);
    assert_int_equal(st, 431);
    /* 16383 bytes + CR: the LF still fits; + CR with 16384 bytes cannot. */
    memset(s + line_start, 'v', cap - line_start);
    memcpy(s + line_start, "X: ", 3);
    s[line_start + VIAL_HTTP_MAX_HEADER_BYTES - 2] = '\r';
    assert_int_equal(parse_n(s, line_start + VIAL_HTTP_MAX_HEADER_BYTES - 1), VIAL_HTTP_INCOMPLETE);
    s[line_start + VIAL_HTTP_MAX_HEADER_BYTES - 2] = 'v';
    s[line_start + VIAL_HTTP_MAX_HEADER_BYTES - 1] = '\r';
    assert_int_equal(parse_n(s, line_start + VIAL_HTTP_MAX_HEADER_BYTES), VIAL_HTTP_ERROR);
    assert_int_equal(st, 431);
    free(s);
}

static char *head_with_fields(unsigned nfields)
{
    char *s = malloc(64 + nfields * 16), *p = s;
    assert_non_null(s);
    p += sprintf(p, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (unsigned i = 1; i < nfields; i++)
        p += sprintf(p, "X-%u: %u\r\n", i, i);
    sprintf(p, "\r\n");
    return s;
}

static void test_header_count_limit(void **state)
{
    char *s = head_with_fields(VIAL_HTTP_MAX_HEADERS);
    ACCEPT(s);
    assert_int_equal(req.nheaders, VIAL_HTTP_MAX_HEADERS);
    assert_span(req.headers[99].name, "X-99");
    free(s);
    s = head_with_fields(VIAL_HTTP_MAX_HEADERS + 1);
    REJECT(s, 431);
    /* Refused as soon as the 101st line starts. */
    char *cut = strstr(s, "X-100:");
    assert_non_null(cut);
    assert_int_equal(parse_n(s, (size_t)(cut - s) + 1), VIAL_HTTP_ERROR);
    assert_int_equal(st, 431);
    assert_int_equal(parse_n(s, (size_t)(cut - s)), VIAL_HTTP_INCOMPLETE);
    free(s);
}

/* ---- Host --------------------------------------------------------------------- */

static void test_host(void **state)
{
    REJECT("GET / HTTP/1.1\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", 400);
    REJECT("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    ACCEPT("GET / HTTP/1.1\r\nHost:\r\n\r\n");
    ACCEPT("GET / HTTP/1.1\r\nhOsT: x\r\n\r\n");
    ACCEPT("GET / HTTP/1.0\r\n\r\n");
    ACCEPT("GET / HTTP/1.0\r\nHost: a\r\n\r\n");
    /* Host-ish names are not Host. */
    REJECT("GET / HTTP/1.1\r\nHosts: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400);
}

/* ---- Content-Length ------------------------------------------------------------ */

static void test_content_length_valid(void **state)
{
    accept_fields("Host: h\r\nContent-Length: 5\r\n");
    assert_int_equal(req.body_kind, VIAL_BODY_LENGTH);
    assert_int_equal(req.content_length, 5);
    accept_fields("Host: h\r\nContent-Length: 0\r\n");
    assert_int_equal(req.body_kind, VIAL_BODY_NONE);
    assert_int_equal(req.content_length, 0);
    accept_fields("Host: h\r\ncontent-length:007\r\n");
    assert_int_equal(req.content_length, 7);
    accept_fields("Host: h\r\nContent-Length: 5, 5\r\n");
    assert_int_equal(req.content_length, 5);
    accept_fields("Host: h\r\nContent-Length: 5,5 ,  5\r\n");
    assert_int_equal(req.content_length, 5);
    accept_fields("Host: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n");
    assert_int_equal(req.content_length, 5);
    accept_fields("Host: h\r\nContent-Length: 05\r\nContent-Length: 5\r\n");
    assert_int_equal(req.content_length, 5);
    accept_fields("Host: h\r\nContent-Length: 1048576\r\n");
    assert_int_equal(req.content_length, VIAL_HTTP_MAX_BODY);
}

static void test_content_length_invalid(void **state)
{
    reject_fields("Host: h\r\nContent-Length: +5\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: -1\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 0x5\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 5 5\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 5.0\r\n", 400);
    reject_fields("Host: h\r\nContent-Length:\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 5,\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: ,5\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 5, 6\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 5\r\nContent-Length: 5x\r\n", 400);
    /* A bad value beside a huge one is still a 400. */
    reject_fields("Host: h\r\nContent-Length: 99999999999\r\nContent-Length: x\r\n", 400);
}

static void test_content_length_too_large(void **state)
{
    reject_fields("Host: h\r\nContent-Length: 1048577\r\n", 413);
    reject_fields("Host: h\r\nContent-Length: 18446744073709551615\r\n", 413);
    reject_fields("Host: h\r\nContent-Length: 18446744073709551616\r\n", 413);
    reject_fields("Host: h\r\nContent-Length: 99999999999999999999999999999999999999\r\n", 413);
    reject_fields("Host: h\r\nContent-Length: 2000000, 2000000\r\n", 413);
    /* Overflowing values wrap nowhere: this is not 5 mod 2^64. */
    reject_fields("Host: h\r\nContent-Length: 18446744073709551621\r\n", 413);
}

/* ---- Transfer-Encoding ----------------------------------------------------------- */

static void test_transfer_encoding_valid(void **state)
{
    accept_fields("Host: h\r\nTransfer-Encoding: chunked\r\n");
    assert_int_equal(req.body_kind, VIAL_BODY_CHUNKED);
    accept_fields("Host: h\r\ntransfer-encoding: CHUNKED\r\n");
    assert_int_equal(req.body_kind, VIAL_BODY_CHUNKED);
    accept_fields("Host: h\r\nTransfer-Encoding: ,chunked\r\n");
    accept_fields("Host: h\r\nTransfer-Encoding: chunked,\r\n");
    accept_fields("Host: h\r\nTransfer-Encoding: , , chunked ,\r\n");
    accept_fields("Host: h\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n");
    assert_int_equal(req.body_kind, VIAL_BODY_CHUNKED);
}

static void test_transfer_encoding_invalid(void **state)
{
    reject_fields("Host: h\r\nTransfer-Encoding: gzip\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chunked, gzip\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chunked, chunked\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: gzip, chunked, chunked\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding:\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chunkedx\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chunked;q=1\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: \"chunked\"\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chu nked\r\n", 400);
    REJECT("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    reject_fields("Host: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400);
    reject_fields("Host: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n", 400);
    /* Smuggling favourites: a TE name with whitespace never counts as TE. */
    reject_fields("Host: h\r\nTransfer-Encoding : chunked\r\n", 400);
}

static void test_transfer_encoding_501(void **state)
{
    reject_fields("Host: h\r\nTransfer-Encoding: gzip, chunked\r\n", 501);
    reject_fields("Host: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501);
    reject_fields("Host: h\r\nTransfer-Encoding: identity, chunked\r\n", 501);
    reject_fields("Host: h\r\nTransfer-Encoding: gzip;level=1, chunked\r\n", 501);
}

/* ---- Expect, Connection, Upgrade --------------------------------------------------- */

static void test_expect(void **state)
{
    accept_fields("Host: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n");
    assert_int_equal(req.expect_continue, 1);
    accept_fields("Host: h\r\nExpect: 100-Continue\r\n");
    assert_int_equal(req.expect_continue, 1);
    reject_fields("Host: h\r\nExpect: 100-continue, foo\r\n", 417);
    reject_fields("Host: h\r\nExpect: foo\r\n", 417);
    reject_fields("Host: h\r\nExpect: 100-continued\r\n", 417);
    reject_fields("Host: h\r\nExpect: 100-continue\r\nExpect: 200-ok\r\n", 417);
    /* A body too large is refused from the head, never with 100 Continue. */
    reject_fields("Host: h\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n", 413);
    ACCEPT("POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(req.expect_continue, 0);
}

static void test_keep_alive(void **state)
{
    ACCEPT("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(req.keep_alive, 1);
    accept_fields("Host: h\r\nConnection: close\r\n");
    assert_int_equal(req.keep_alive, 0);
    accept_fields("Host: h\r\nConnection: keep-alive, CLOSE\r\n");
    assert_int_equal(req.keep_alive, 0);
    accept_fields("Host: h\r\nConnection: keep-alive\r\nConnection: close\r\n");
    assert_int_equal(req.keep_alive, 0);
    accept_fields("Host: h\r\nConnection: closed\r\n");
    assert_int_equal(req.keep_alive, 1);
    ACCEPT("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(req.keep_alive, 0);
    ACCEPT("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_int_equal(req.keep_alive, 1);
    ACCEPT("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    assert_int_equal(req.keep_alive, 0);
}

static void test_upgrade(void **state)
{
    accept_fields("Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    assert_int_equal(req.upgrade_websocket, 1);
    accept_fields("Host: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, upgrade\r\n");
    assert_int_equal(req.upgrade_websocket, 1);
    assert_int_equal(req.keep_alive, 1);
    accept_fields("Host: h\r\nUpgrade: websocket\r\n");
    assert_int_equal(req.upgrade_websocket, 0);
    accept_fields("Host: h\r\nConnection: upgrade\r\n");
    assert_int_equal(req.upgrade_websocket, 0);
    accept_fields("Host: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n");
    assert_int_equal(req.upgrade_websocket, 0);
}

static void test_find_header(void **state)
{
    accept_fields("Host: h\r\nX-Dup: 1\r\nx-dup: 2\r\nA^B: caret\r\n");
    const vial_http_field *h = vial_http_find_header(&req, "x-DUP");
    assert_non_null(h);
    assert_span(h->value, "1");
    assert_non_null(vial_http_find_header(&req, "HOST"));
    assert_null(vial_http_find_header(&req, "X-Du"));
    assert_null(vial_http_find_header(&req, "Missing"));
    /* '^' and '~' differ by 0x20 but are not letters. */
    assert_null(vial_http_find_header(&req, "A~B"));
    assert_non_null(vial_http_find_header(&req, "a^b"));
}

/* ---- chunked decoder ----------------------------------------------------------------- */

struct dec {
    int rc;
    size_t consumed;
    size_t out_len;
    char out[4096];
};

/* Feeds the whole input in pieces of `step` bytes (0: all at once) and stops
 * at the first non-zero result, like a connection would. */
static struct dec *decode_n(const char *in, size_t len, size_t step, uint64_t max_body)
{
    static struct dec r;
    vial_chunked d;
    vial_chunked_init(&d);
    memset(&r, 0, sizeof r);
    size_t off = 0;
    if (!step)
        step = len ? len : 1;
    do {
        size_t n = len - off < step ? len - off : step, c = 0;
        r.rc = vial_chunked_feed(&d, in + off, n, &c, r.out, &r.out_len, max_body);
        assert_true(c <= n);
        off += c;
        if (r.rc == 0)
            assert_int_equal(c, n);
    } while (r.rc == 0 && off < len);
    r.consumed = off;
    assert_int_equal(d.total, r.out_len);
    return &r;
}

static struct dec *decode(const char *in)
{
    return decode_n(in, strlen(in), 0, VIAL_HTTP_MAX_BODY);
}

#define CHUNK_OK(in, body)                                                      \
    do {                                                                        \
        for (size_t step_ = 0; step_ < 4; step_++) {                             \
            struct dec *r_ = decode_n((in), strlen(in), step_, VIAL_HTTP_MAX_BODY); \
            if (r_->rc != 1 || r_->consumed != strlen(in) ||                    \
                r_->out_len != strlen(body) || memcmp(r_->out, (body), r_->out_len)) \
                fail_msg("chunked \"%s\" step %zu: rc %d consumed %zu out \"%.*s\"", \
                         (in), step_, r_->rc, r_->consumed, (int)r_->out_len,    \
                         r_->out);                                              \
        }                                                                       \
    } while (0)

#define CHUNK_BAD(in, code)                                                     \
    do {                                                                        \
        for (size_t step_ = 0; step_ < 4; step_++) {                             \
            struct dec *r_ = decode_n((in), strlen(in), step_, VIAL_HTTP_MAX_BODY); \
            if (r_->rc != -(code))                                              \
                fail_msg("chunked \"%s\" step %zu: rc %d, expected %d", (in),   \
                         step_, r_->rc, -(code));                               \
        }                                                                       \
    } while (0)

static void test_chunked_basic(void **state)
{
    CHUNK_OK("5\r\nhello\r\n0\r\n\r\n", "hello");
    CHUNK_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
    CHUNK_OK("0\r\n\r\n", "");
    CHUNK_OK("000\r\n\r\n", "");
    CHUNK_OK("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij");
    CHUNK_OK("0000000000000005\r\nhello\r\n0\r\n\r\n", "hello");
    CHUNK_OK("0000000000000000\r\n\r\n", "");
    CHUNK_OK("3\r\n\r\n\n\r\n0\r\n\r\n", "\r\n\n");
}

static void test_chunked_stops_at_end(void **state)
{
    const char *in = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    struct dec *r = decode(in);
    assert_int_equal(r->rc, 1);
    assert_int_equal(r->consumed, strlen("3\r\nabc\r\n0\r\n\r\n"));

    /* Done is sticky and eats nothing more. */
    vial_chunked d;
    char out[64];
    size_t c, ol = 0;
    vial_chunked_init(&d);
    assert_int_equal(vial_chunked_feed(&d, in, strlen(in), &c, out, &ol, 100), 1);
    assert_int_equal(vial_chunked_feed(&d, "x", 1, &c, out, &ol, 100), 1);
    assert_int_equal(c, 0);
    assert_int_equal(ol, 3);
}

static void test_chunked_incomplete(void **state)
{
    const char *in = "5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n";
    size_t n = strlen(in);
    for (size_t k = 0; k < n; k++) {
        struct dec *r = decode_n(in, k, 0, VIAL_HTTP_MAX_BODY);
        if (r->rc != 0 || r->consumed != k)
            fail_msg("prefix %zu: rc %d consumed %zu", k, r->rc, r->consumed);
    }
}

static void test_chunked_byte_by_byte(void **state)
{
    const char *in = "4;ext=\"a\\\"b;c\" ; flag\r\nWiki\r\n"
                     "5\r\npedia\r\n"
                     "E ; name = token\r\n in\r\n\r\nchunks.\r\n"
                     "0;last\r\nExpires: never\r\nX-Sum:\t1 2\r\n\r\n";
    const char *body = "Wikipedia in\r\n\r\nchunks.";
    struct dec *r = decode_n(in, strlen(in), 1, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, 1);
    assert_int_equal(r->consumed, strlen(in));
    assert_int_equal(r->out_len, strlen(body));
    assert_memory_equal(r->out, body, strlen(body));

    /* Random piece sizes must give the same result. */
    srand(7);
    for (int round = 0; round < 200; round++) {
        vial_chunked d;
        char out[256];
        size_t ol = 0, off = 0, len = strlen(in);
        int rc = 0;
        vial_chunked_init(&d);
        while (off < len && rc == 0) {
            size_t piece = 1 + (size_t)rand() % 9, c;
            if (piece > len - off)
                piece = len - off;
            rc = vial_chunked_feed(&d, in + off, piece, &c, out, &ol, VIAL_HTTP_MAX_BODY);
            off += c;
        }
        assert_int_equal(rc, 1);
        assert_int_equal(off, len);
        assert_int_equal(ol, strlen(body));
        assert_memory_equal(out, body, ol);
    }
}

static void test_chunked_extensions(void **state)
{
    CHUNK_OK("2;a\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2;a=b\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2;a=b;c=d;e\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2 ; a = b ; c\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2\t;\ta\t=\tb\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2;a=\"\"\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2;a=\"x y;z=\\\"w\\\\\"\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2;a=\"q\" ;b\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("2;a=\"caf\xc3\xa9\"\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("0;a=b\r\n\r\n", "");

    CHUNK_BAD("2;\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2; \r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;;a\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;=b\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=b c\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a b\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=\"unterminated\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=\"x\"y\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=\"\x01\"\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=\"\\\x01\"\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=(b)\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a@\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a\x01\r\nhi\r\n0\r\n\r\n", 400);
}

static void test_chunked_whitespace(void **state)
{
    CHUNK_BAD(" 2\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2 \r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2\t\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a \r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=b \r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=\"b\" \r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2 2\r\nhi\r\n0\r\n\r\n", 400);
}

static void test_chunked_bad_size(void **state)
{
    CHUNK_BAD("\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("g\r\n", 400);
    CHUNK_BAD("-2\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("+2\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("0x2\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2x\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("00000000000000002\r\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("00000000000000000\r\n\r\n", 400);
    CHUNK_BAD(";a\r\nhi\r\n0\r\n\r\n", 400);
}

static void test_chunked_bare_lf(void **state)
{
    CHUNK_BAD("2\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2;a=b\nhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\n0\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\n\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\nX: y\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\nX: y\r\n\n", 400);
    CHUNK_BAD("2\rhi\r\n0\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\r\n0\r\n\r\n", 400);
}

static void test_chunked_data_framing(void **state)
{
    CHUNK_BAD("2\r\nhix\r\n0\r\n\r\n", 400);
    CHUNK_BAD("3\r\nhi\r\n0\r\n\r\n", 400); /* the CR is data, then "\n0" is not CRLF */
    CHUNK_BAD("2\r\nhi0\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\n\rx", 400);
}

static void test_chunked_trailers(void **state)
{
    CHUNK_OK("2\r\nhi\r\n0\r\nX-T: v\r\n\r\n", "hi");
    CHUNK_OK("2\r\nhi\r\n0\r\nX-T: v\r\nX-U:\r\nX-V: caf\xc3\xa9\t \r\n\r\n", "hi");
    CHUNK_BAD("2\r\nhi\r\n0\r\nNoColon\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\nX-T : v\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\n: v\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\nX-T: v\r\n folded\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\n X-T: v\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\nX-T: a\x01" "b\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\nX-T: a\x7f\r\n\r\n", 400);
    CHUNK_BAD("2\r\nhi\r\n0\r\nX-T: a\rb\r\n\r\n", 400);
    static const char nul[] = "2\r\nhi\r\n0\r\nX-T: a\0b\r\n\r\n";
    struct dec *r = decode_n(nul, sizeof nul - 1, 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -400);
}

static void test_chunked_trailer_limits(void **state)
{
    static char in[40 * 1024];
    char *p = in;
    p += sprintf(p, "0\r\n");
    for (int i = 0; i < VIAL_HTTP_MAX_HEADERS; i++)
        p += sprintf(p, "T%d: v\r\n", i);
    sprintf(p, "\r\n");
    struct dec *r = decode_n(in, strlen(in), 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, 1);
    sprintf(p, "Tx: v\r\n\r\n");
    r = decode_n(in, strlen(in), 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -400);

    p = in + sprintf(in, "0\r\nBig: ");
    memset(p, 'v', VIAL_HTTP_MAX_HEADER_BYTES);
    strcpy(p + VIAL_HTTP_MAX_HEADER_BYTES, "\r\n\r\n");
    r = decode_n(in, strlen(in), 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -400);
}

static void test_chunked_line_limit(void **state)
{
    size_t cap = 8192;
    char *in = malloc(cap + 16);
    assert_non_null(in);
    int n = sprintf(in, "1;a=");
    memset(in + n, 'b', cap - (size_t)n);
    strcpy(in + cap, "\r\nx\r\n0\r\n\r\n");
    struct dec *r = decode_n(in, strlen(in), 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -400);
    free(in);
}

/* Body sizes are checked against max_body as the size digits arrive. */
static void test_chunked_max_body(void **state)
{
    static char in[1200 * 1024];
    char *p = in;
    /* Exactly max in two chunks: accepted. */
    p += sprintf(p, "80000\r\n");
    memset(p, 'a', 0x80000);
    p += 0x80000;
    p += sprintf(p, "\r\n80000\r\n");
    memset(p, 'b', 0x80000);
    p += 0x80000;
    p += sprintf(p, "\r\n0\r\n\r\n");
    vial_chunked d;
    char *out = malloc(sizeof in);
    assert_non_null(out);
    size_t c, ol = 0;
    vial_chunked_init(&d);
    assert_int_equal(vial_chunked_feed(&d, in, (size_t)(p - in), &c, out, &ol, VIAL_HTTP_MAX_BODY), 1);
    assert_int_equal(ol, VIAL_HTTP_MAX_BODY);
    assert_int_equal(d.total, VIAL_HTTP_MAX_BODY);
    assert_int_equal(c, (size_t)(p - in));

    /* One more byte in a third chunk: refused at its size line. */
    p = in + strlen("80000\r\n") + 0x80000 + strlen("\r\n80000\r\n") + 0x80000;
    p += sprintf(p, "\r\n1\r\nc\r\n0\r\n\r\n");
    vial_chunked_init(&d);
    ol = 0;
    assert_int_equal(vial_chunked_feed(&d, in, (size_t)(p - in), &c, out, &ol, VIAL_HTTP_MAX_BODY), -413);
    assert_int_equal(ol, VIAL_HTTP_MAX_BODY);
    free(out);

    struct dec *r = decode_n("100001\r\n", 8, 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -413);
    r = decode_n("100000\r\n", 8, 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, 0);
    /* Known from the size alone, before any data, once its digits end (a
     * 17th digit would make it a 400 instead). */
    r = decode_n("ffffffffffffffff", 16, 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, 0);
    r = decode_n("ffffffffffffffff\r", 17, 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -413);
    r = decode_n("fffffff;x", 9, 1, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -413);
    r = decode_n("ffffffffffffffffff\r\n", 20, 0, UINT64_MAX);
    assert_int_equal(r->rc, -400); /* 17+ digits */
    /* More than 16 digits is a bad size (400), whatever the value and the
     * limit: spec 6. */
    r = decode_n("10000000000000000\r\n", 19, 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -400);
    r = decode_n("fffffffffffffffff\r\n", 19, 1, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -400);
    r = decode_n("00000000000000005\r\nhello\r\n0\r\n\r\n", 31, 0, VIAL_HTTP_MAX_BODY);
    assert_int_equal(r->rc, -400);
    r = decode_n("ffffffffffffffff\r\n", 18, 0, UINT64_MAX);
    assert_int_equal(r->rc, 0);
    /* A small max_body applies to the running total. */
    r = decode_n("3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", 23, 0, 5);
    assert_int_equal(r->rc, -413);
    assert_int_equal(r->out_len, 3);
    r = decode_n("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 22, 0, 5);
    assert_int_equal(r->rc, 1);
}

static void test_chunked_error_sticky(void **state)
{
    vial_chunked d;
    char out[16];
    size_t c, ol = 0;
    vial_chunked_init(&d);
    assert_int_equal(vial_chunked_feed(&d, "2\nhi", 4, &c, out, &ol, 100), -400);
    assert_int_equal(c, 1); /* stopped at the bad byte */
    assert_int_equal(vial_chunked_feed(&d, "\r\n", 2, &c, out, &ol, 100), -400);
    assert_int_equal(c, 0);
    vial_chunked_init(&d);
    assert_int_equal(vial_chunked_feed(&d, "fffff;", 6, &c, out, &ol, 100), -413);
    assert_int_equal(vial_chunked_feed(&d, "\r\n", 2, &c, out, &ol, 100), -413);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_head_followed_by_body),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_query_forms),
        cmocka_unit_test(test_progressive_head),
        cmocka_unit_test(test_progressive_reject),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_leading_empty_lines_cap),
        cmocka_unit_test(test_request_line_syntax),
        cmocka_unit_test(test_method_too_long),
        cmocka_unit_test(test_target_bytes),
        cmocka_unit_test(test_target_length),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_authority_form),
        cmocka_unit_test(test_asterisk),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_bare_lf_head),
        cmocka_unit_test(test_bare_cr_head),
        cmocka_unit_test(test_field_syntax),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_field_values),
        cmocka_unit_test(test_header_bytes_limit),
        cmocka_unit_test(test_header_bytes_incomplete),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_content_length_valid),
        cmocka_unit_test(test_content_length_invalid),
        cmocka_unit_test(test_content_length_too_large),
        cmocka_unit_test(test_transfer_encoding_valid),
        cmocka_unit_test(test_transfer_encoding_invalid),
        cmocka_unit_test(test_transfer_encoding_501),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_find_header),
        cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_stops_at_end),
        cmocka_unit_test(test_chunked_incomplete),
        cmocka_unit_test(test_chunked_byte_by_byte),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_whitespace),
        cmocka_unit_test(test_chunked_bad_size),
        cmocka_unit_test(test_chunked_bare_lf),
        cmocka_unit_test(test_chunked_data_framing),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_trailer_limits),
        cmocka_unit_test(test_chunked_line_limit),
        cmocka_unit_test(test_chunked_max_body),
        cmocka_unit_test(test_chunked_error_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
