/* libFuzzer target for the HTTP/1.1 head parser and the chunked decoder.
 *
 * The input is treated as bytes arriving on one connection: heads are parsed,
 * bodies are skipped (Content-Length) or decoded (chunked, in pieces of
 * pseudo-random size), and the next pipelined request follows. Besides the
 * sanitizers, it checks properties the connection code relies on:
 *  - every span lies inside the head it was parsed from;
 *  - a result is never longer than the input, statuses are the documented ones;
 *  - an error seen in a prefix of a head is the error of the whole head, and a
 *    prefix of a valid head is INCOMPLETE (errors are reported only when
 *    certain, so re-parsing as bytes arrive is sound);
 *  - the chunked decoder gives the same result however its input is split, and
 *    never produces more bytes than it consumed;
 *  - the SSE2 scans agree with the plain loops (parser.c is compiled a second
 *    time below with VIAL_PARSER_SCALAR, under other names).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

#define vial_http_parse_request scalar_http_parse_request
#define vial_http_find_header scalar_http_find_header
#define vial_chunked_init scalar_chunked_init
#define vial_chunked_feed scalar_chunked_feed
#define VIAL_PARSER_SCALAR 1
#include "http/parser.c"
#undef vial_http_parse_request
#undef vial_http_find_header
#undef vial_chunked_init
#undef vial_chunked_feed

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_parser: invariant failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                           \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* Small deterministic PRNG: the piece sizes must be a function of the input
 * so that a crash reproduces. */
static uint64_t rng_state;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

static void seed_from(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    rng_state = h | 1;
}

static void check_span(vial_span s, const char *lo, const char *hi)
{
    CHECK(s.p >= lo && s.p <= hi && s.len <= (size_t)(hi - s.p));
}

static int same_span(vial_span a, vial_span b)
{
    return a.p == b.p && a.len == b.len;
}

static void check_head(const vial_http_head *r, const char *buf, int rc)
{
    const char *end = buf + rc;
    check_span(r->method, buf, end);
    check_span(r->target, buf, end);
    if (!(r->path.len == 1 && r->path.p[0] == '/' && (r->path.p < buf || r->path.p >= end)))
        check_span(r->path, r->target.p, r->target.p + r->target.len);
    if (r->has_query)
        check_span(r->query, r->target.p, r->target.p + r->target.len);
    CHECK(r->method.len > 0 && r->target.len > 0 && r->path.len > 0);
    CHECK(r->target.len <= VIAL_HTTP_MAX_TARGET);
    CHECK(r->nheaders <= VIAL_HTTP_MAX_HEADERS);
    CHECK(r->header_bytes <= VIAL_HTTP_MAX_HEADER_BYTES);
    CHECK(r->version_minor == 0 || r->version_minor == 1);
    CHECK(r->has_query || r->query.len == 0);
    for (unsigned i = 0; i < r->nheaders; i++) {
        check_span(r->headers[i].name, buf, end);
        check_span(r->headers[i].value, buf, end);
        CHECK(r->headers[i].name.len > 0);
        CHECK(r->headers[i].name.p + r->headers[i].name.len < r->headers[i].value.p);
    }
    switch (r->body_kind) {
    case VIAL_BODY_NONE:
        CHECK(r->content_length == 0);
        break;
    case VIAL_BODY_LENGTH:
        CHECK(r->content_length > 0 && r->content_length <= VIAL_HTTP_MAX_BODY);
        break;
    case VIAL_BODY_CHUNKED:
        CHECK(r->version_minor == 1);
        break;
    default:
        CHECK(0);
    }
    if (r->is_asterisk)
        CHECK(r->target.len == 1 && r->target.p[0] == '*');
    if (r->nheaders)
        CHECK(vial_http_find_header(r, "") == NULL);
}

static int known_status(int st)
{
    switch (st) {
    case 400: case 413: case 414: case 417: case 431: case 501: case 505:
        return 1;
    }
    return 0;
}

static vial_http_head req, req2;

/* Parses one head and checks it against the scalar build and a prefix. */
static int parse_head(const char *buf, size_t len, int *status)
{
    int rc = vial_http_parse_request(buf, len, &req, status);
    CHECK(rc == VIAL_HTTP_ERROR || rc == VIAL_HTTP_INCOMPLETE || (rc > 0 && (size_t)rc <= len));
    if (rc == VIAL_HTTP_ERROR)
        CHECK(known_status(*status));
    else
        CHECK(*status == 0);
    if (rc > 0)
        check_head(&req, buf, rc);

    int st2;
    int rc2 = scalar_http_parse_request(buf, len, &req2, &st2);
    CHECK(rc2 == rc && st2 == *status);
    if (rc > 0) {
        CHECK(same_span(req.method, req2.method) && same_span(req.target, req2.target));
        /* An absolute-form target without a path gets a constant "/", one per
         * copy of parser.c: compare it by value. */
        CHECK(same_span(req.path, req2.path) ||
              (req.path.len == 1 && req2.path.len == 1 && req.path.p[0] == '/' &&
               req2.path.p[0] == '/'));
        CHECK(same_span(req.query, req2.query) || (!req.has_query && !req2.has_query));
        CHECK(req.nheaders == req2.nheaders && req.header_bytes == req2.header_bytes);
        CHECK(req.body_kind == req2.body_kind && req.content_length == req2.content_length);
        CHECK(req.keep_alive == req2.keep_alive && req.expect_continue == req2.expect_continue);
        CHECK(req.upgrade_websocket == req2.upgrade_websocket);
        for (unsigned i = 0; i < req.nheaders; i++)
            CHECK(same_span(req.headers[i].name, req2.headers[i].name) &&
                  same_span(req.headers[i].value, req2.headers[i].value));
    }

    /* A prefix knows less, never something different. */
    if (len > 0 && rc != VIAL_HTTP_INCOMPLETE) {
        size_t whole = rc > 0 ? (size_t)rc : len;
        size_t cut = rnd((unsigned)(whole < 0x7fffffff ? whole : 0x7fffffff));
        int st3;
        int rc3 = vial_http_parse_request(buf, cut, &req2, &st3);
        if (rc > 0)
            CHECK(rc3 == VIAL_HTTP_INCOMPLETE);
        else if (rc3 == VIAL_HTTP_ERROR)
            CHECK(st3 == *status);
    }
    return rc;
}

struct decoded {
    int rc;
    size_t consumed, out_len;
};

/* Decodes in[0..len) with pieces of random size (max_piece 0: all at once). */
static struct decoded decode(const char *in, size_t len, char *out, unsigned max_piece,
                             uint64_t max_body, int scalar)
{
    vial_chunked d;
    struct decoded r = {0, 0, 0};
    if (scalar)
        scalar_chunked_init(&d);
    else
        vial_chunked_init(&d);
    while (r.consumed < len) {
        size_t piece = len - r.consumed, c = 0, before = r.out_len;
        if (max_piece && piece > 1)
            piece = 1 + rnd(piece < max_piece ? (unsigned)piece : max_piece);
        if (scalar)
            r.rc = scalar_chunked_feed(&d, in + r.consumed, piece, &c, out, &r.out_len, max_body);
        else
            r.rc = vial_chunked_feed(&d, in + r.consumed, piece, &c, out, &r.out_len, max_body);
        CHECK(c <= piece);
        CHECK(r.out_len - before <= c);
        CHECK(r.rc == 0 || r.rc == 1 || r.rc == -400 || r.rc == -413);
        r.consumed += c;
        CHECK(d.total == r.out_len && d.total <= max_body);
        if (r.rc != 0)
            break;
        CHECK(c == piece);
    }
    CHECK(r.out_len <= r.consumed);
    return r;
}

/* The decoder's answer must not depend on how the bytes were split. */
static struct decoded decode_checked(const char *in, size_t len, uint64_t max_body)
{
    char *a = malloc(len + 1), *b = malloc(len + 1);
    struct decoded whole = decode(in, len, a, 0, max_body, 0);
    struct decoded split = decode(in, len, b, 1 + rnd(64), max_body, 0);
    CHECK(whole.rc == split.rc && whole.out_len == split.out_len);
    CHECK(memcmp(a, b, whole.out_len) == 0);
    if (whole.rc != 0)
        CHECK(whole.consumed == split.consumed);
    struct decoded bytewise = decode(in, len < 512 ? len : 512, b, 1, max_body, 1);
    if (len <= 512) {
        CHECK(bytewise.rc == whole.rc && bytewise.out_len == whole.out_len);
        CHECK(memcmp(a, b, whole.out_len) == 0);
    }
    free(a);
    free(b);
    return whole;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy with no slack: any read past the input is an ASan error. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    seed_from(data, size);

    /* The decoder alone, on the raw input, with a small and the real limit. */
    decode_checked(buf, size, VIAL_HTTP_MAX_BODY);
    decode_checked(buf, size, 1 + rnd(300));

    size_t off = 0;
    for (int n = 0; n < 64 && off < size; n++) {
        int status;
        int rc = parse_head(buf + off, size - off, &status);
        if (rc <= 0)
            break;
        off += (size_t)rc;
        if (req.body_kind == VIAL_BODY_LENGTH) {
            if (req.content_length > size - off)
                break;
            off += (size_t)req.content_length;
        } else if (req.body_kind == VIAL_BODY_CHUNKED) {
            struct decoded d = decode_checked(buf + off, size - off, VIAL_HTTP_MAX_BODY);
            if (d.rc != 1)
                break;
            off += d.consumed;
        }
    }
    free(buf);
    return 0;
}
