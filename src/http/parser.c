/* HTTP/1.1 request-head parser and chunked body decoder (see parser.h).
 *
 * The head parser re-reads the whole buffer on every call, so it keeps no
 * state between calls; it is written as straight-line scans over the buffer:
 * byte classes come from 256-entry tables and the two long scans (request
 * target, field values) look at 16 bytes at a time with SSE2, or 8 at a time
 * in a plain 64-bit word elsewhere.
 *
 * Syntax errors and limit violations are reported at the byte where they
 * become certain, even in an incomplete head. Rules that need the whole head
 * (Host count, Content-Length / Transfer-Encoding consistency, Expect) are
 * decided once the empty line is seen, in a fixed order, so the answer to a
 * request never depends on the order of its fields.
 */
#include "parser.h"
#include "runtime/codec.h"

#include <string.h>

#if defined(__SSE2__) && !defined(VIAL_PARSER_SCALAR)
#include <emmintrin.h>
#define VIAL_PARSER_SSE2 1
#endif

/* A method longer than any sane one is refused with 501 (RFC 9112 §3) rather
 * than buffered without bound; the rest of the head is bounded by §8. */
#define MAX_METHOD 64
/* Empty lines before a request line are tolerated (RFC 9112 §2.2) but not
 * without bound, or a peer could grow the connection buffer forever. */
#define MAX_LEADING_EMPTY VIAL_HTTP_MAX_HEADER_BYTES
/* A chunk-size line, extensions included; the decoder keeps nothing of it,
 * the cap only stops a peer from streaming one endless line. */
#define MAX_CHUNK_LINE 4096

/* ---- byte classes ------------------------------------------------------ */

/* tchar (RFC 9110 §5.6.2): method, field names, chunk-extension tokens. */
static const uint8_t tchar[256] = {
    ['!'] = 1, ['#' ... '\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1,
    ['a' ... 'z'] = 1, ['|'] = 1, ['~'] = 1,
};

/* Field-value bytes: HTAB, SP, VCHAR and obs-text; every other control (NUL,
 * CR, LF, DEL...) either ends the line or is an error. */
static const uint8_t value_ok[256] = {
    ['\t'] = 1, [0x20 ... 0x7e] = 1, [0x80 ... 0xff] = 1,
};

/* qdtext of a quoted string (RFC 9110 §5.6.4), used by chunk extensions. */
static const uint8_t qdtext[256] = {
    ['\t'] = 1, [' '] = 1, ['!'] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

/* reg-name and IP-literal bytes of an absolute-form authority (RFC 3986):
 * unreserved, pct-encoded ('%'), sub-delims, plus ':' '[' ']' for IPv6. */
static const uint8_t host_ok[256] = {
    ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['0' ... '9'] = 1, ['-'] = 1, ['.'] = 1,
    ['_'] = 1, ['~'] = 1, ['%'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1,
    ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1,
};

static inline uint8_t lower(uint8_t c)
{
    return (uint8_t)(c + ((unsigned)(c - 'A') < 26u ? 32 : 0));
}

static inline int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ASCII case-insensitive equality of a span and a lower-case literal. */
static int span_eq_lit(const char *p, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((uint8_t)p[i]) != (uint8_t)lit[i])
            return 0;
    return 1;
}
#define SPAN_EQ(p, n, lit) span_eq_lit((p), (n), lit, sizeof(lit) - 1)

static inline int fail(int *status, int code)
{
    *status = code;
    return VIAL_HTTP_ERROR;
}

/* ---- vectorised scans ---------------------------------------------------- */

#ifndef VIAL_PARSER_SSE2
/* SWAR constants: (x - ONES * n) & ~x & HIGHS is non-zero exactly when some
 * byte of x is below n (n <= 0x80). */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#endif

/* First index in [pos, end) whose byte is not a visible ASCII char (0x21-0x7E),
 * or end. This is the request-target scan: SP ends it, anything else is bad. */
static inline size_t scan_target(const char *buf, size_t pos, size_t end)
{
#ifdef VIAL_PARSER_SSE2
    const __m128i lo = _mm_set1_epi8(0x20), hi = _mm_set1_epi8(0x7f);
    while (end - pos >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(buf + pos));
        /* Signed compares: bytes >= 0x80 are negative, so they fail "> 0x20". */
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi));
        unsigned bad = ~(unsigned)_mm_movemask_epi8(ok) & 0xffffu;
        if (bad)
            return pos + (size_t)__builtin_ctz(bad);
        pos += 16;
    }
#else
    /* Eight bytes at a time: a word is skipped when none of its bytes is
     * <= 0x20 or >= 0x7F; the byte loop finds the culprit otherwise. */
    while (end - pos >= 8) {
        uint64_t x;
        memcpy(&x, buf + pos, 8);
        if (((x - ONES * 0x21) & ~x & HIGHS) | ((x | (x + ONES)) & HIGHS))
            break;
        pos += 8;
    }
#endif
    while (pos < end && (uint8_t)(buf[pos] - 0x21) < 0x5e)
        pos++;
    return pos;
}

/* First index in [pos, end) whose byte may not appear inside a field value
 * (CR and LF included, which is how the line end is found), or end. */
static inline size_t scan_value(const char *buf, size_t pos, size_t end)
{
#ifdef VIAL_PARSER_SSE2
    const __m128i c1f = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f),
                  tab = _mm_set1_epi8('\t');
    while (end - pos >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(buf + pos));
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, c1f), v); /* v <= 0x1f */
        __m128i bad = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(v, tab), ctl),
                                   _mm_cmpeq_epi8(v, del));
        unsigned m = (unsigned)_mm_movemask_epi8(bad);
        if (m)
            return pos + (size_t)__builtin_ctz(m);
        pos += 16;
    }
#else
    /* Words with no byte < 0x20 and no DEL are skipped; an HTAB also stops
     * the word scan, and the byte loop carries on past it. */
    while (end - pos >= 8) {
        uint64_t x, d;
        memcpy(&x, buf + pos, 8);
        d = x ^ (ONES * 0x7f);
        if (((x - ONES * 0x20) & ~x & HIGHS) | ((d - ONES) & ~d & HIGHS))
            break;
        pos += 8;
    }
#endif
    while (pos < end && value_ok[(uint8_t)buf[pos]])
        pos++;
    return pos;
}

/* ---- request line -------------------------------------------------------- */

static int skip_empty_lines(const char *buf, size_t len, size_t *ppos, int *status)
{
    size_t pos = 0;
    while (pos < len) {
        if (buf[pos] == '\n') {
            pos++;
        } else if (buf[pos] == '\r') {
            if (pos + 1 == len)
                return VIAL_HTTP_INCOMPLETE;
            if (buf[pos + 1] != '\n')
                return fail(status, 400);
            pos += 2;
        } else {
            break;
        }
        if (pos > MAX_LEADING_EMPTY)
            return fail(status, 400);
    }
    *ppos = pos;
    return pos < len ? 1 : VIAL_HTTP_INCOMPLETE;
}

/* host [ ":" port ] of an absolute-form target; userinfo is refused because
 * "user@host" is a classic way to make two parsers disagree on the host. */
static int valid_authority(const char *p, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return 0;
    if (p[0] == '[') {
        while (++i < n && p[i] != ']')
            if (!host_ok[(uint8_t)p[i]] && p[i] != ':')
                return 0;
        if (i == n || i == 1)
            return 0;
        i++;
    } else {
        while (i < n && host_ok[(uint8_t)p[i]])
            i++;
        if (i == 0)
            return 0;
    }
    if (i == n)
        return 1;
    if (p[i] != ':')
        return 0; /* '@' (userinfo) and stray bytes land here */
    while (++i < n)
        if ((unsigned)(p[i] - '0') > 9)
            return 0;
    return 1;
}

static void split_query(vial_http_head *req, const char *p, size_t n)
{
    const char *q = memchr(p, '?', n);
    if (q) {
        req->path = (vial_span){p, (size_t)(q - p)};
        req->query = (vial_span){q + 1, n - (size_t)(q - p) - 1};
        req->has_query = 1;
    } else {
        req->path = (vial_span){p, n};
    }
}

/* Sorts the complete target into origin-form, absolute-form or "*" and fills
 * path and query; anything else (authority-form included) is a 400. */
static int classify_target(vial_http_head *req)
{
    const char *t = req->target.p;
    size_t n = req->target.len, i;

    if (t[0] == '/') {
        split_query(req, t, n);
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (req->method.len != 7 || memcmp(req->method.p, "OPTIONS", 7) != 0)
            return -1;
        req->is_asterisk = 1;
        req->path = req->target;
        return 0;
    }
    if (n > 7 && SPAN_EQ(t, 7, "http://"))
        i = 7;
    else if (n > 8 && SPAN_EQ(t, 8, "https://"))
        i = 8;
    else
        return -1;

    size_t a0 = i;
    while (i < n && t[i] != '/' && t[i] != '?')
        i++;
    if (!valid_authority(t + a0, i - a0))
        return -1;
    if (i < n && t[i] == '/') {
        split_query(req, t + i, n - i);
    } else {
        /* No path: it means "/" (RFC 9112 §3.2.2); the span points at a
         * constant since the buffer has no '/' to point at. */
        req->path = (vial_span){"/", 1};
        if (i < n) {
            req->query = (vial_span){t + i + 1, n - i - 1};
            req->has_query = 1;
        }
    }
    return 0;
}

/* "HTTP/" DIGIT "." DIGIT, checked against whatever prefix has arrived so a
 * bad version is refused without waiting for the line end. */
static int version_prefix_ok(const char *v, size_t n)
{
    static const char pat[] = "HTTP/0.0";
    for (size_t i = 0; i < n && i < 8; i++) {
        if (i == 5 || i == 7) {
            if ((unsigned)(v[i] - '0') > 9)
                return 0;
        } else if (v[i] != pat[i]) {
            return 0;
        }
    }
    return 1;
}

static int parse_request_line(const char *buf, size_t len, size_t *ppos,
                              vial_http_head *req, int *status)
{
    size_t pos = *ppos, start = pos, end;

    end = len - start > MAX_METHOD + 1 ? start + MAX_METHOD + 1 : len;
    while (pos < end && tchar[(uint8_t)buf[pos]])
        pos++;
    if (pos - start > MAX_METHOD)
        return fail(status, 501);
    if (pos == len)
        return VIAL_HTTP_INCOMPLETE;
    if (buf[pos] != ' ' || pos == start)
        return fail(status, 400);
    req->method = (vial_span){buf + start, pos - start};

    size_t t0 = ++pos;
    end = len - t0 > VIAL_HTTP_MAX_TARGET + 1 ? t0 + VIAL_HTTP_MAX_TARGET + 1 : len;
    pos = scan_target(buf, t0, end);
    if (pos - t0 > VIAL_HTTP_MAX_TARGET)
        return fail(status, 414);
    if (pos == len)
        return VIAL_HTTP_INCOMPLETE;
    if (buf[pos] != ' ' || pos == t0)
        return fail(status, 400);
    req->target = (vial_span){buf + t0, pos - t0};
    if (classify_target(req) < 0)
        return fail(status, 400);

    const char *v = buf + ++pos;
    size_t avail = len - pos;
    if (!version_prefix_ok(v, avail))
        return fail(status, 400);
    if (avail < 9)
        return VIAL_HTTP_INCOMPLETE;
    if (v[8] == '\n') {
        pos += 9;
    } else if (v[8] == '\r') {
        if (avail < 10)
            return VIAL_HTTP_INCOMPLETE;
        if (v[9] != '\n')
            return fail(status, 400);
        pos += 10;
    } else {
        return fail(status, 400);
    }
    if (v[5] != '1')
        return fail(status, 505);
    req->version_minor = v[7] == '0' ? 0 : 1;
    *ppos = pos;
    return 1;
}

/* ---- field semantics ------------------------------------------------------ */

/* What the head's fields say about framing and the connection; gathered field
 * by field, judged once the head is complete. */
struct semantics {
    unsigned hosts;
    int cl_seen, cl_bad;
    uint64_t cl;
    int te_seen, te_bad, te_last_chunked;
    unsigned te_chunked, te_codings;
    int conn_close, conn_keep_alive, conn_upgrade;
    int upgrade_websocket;
    int expect_continue, expect_other;
};

/* Walks the non-empty, OWS-trimmed elements of a comma list (RFC 9110
 * §5.6.1: empty elements are ignored). */
struct list_iter {
    const char *p, *end;
};

static int list_next(struct list_iter *it, const char **el, size_t *n)
{
    while (it->p < it->end) {
        const char *c = memchr(it->p, ',', (size_t)(it->end - it->p));
        const char *a = it->p, *b = c ? c : it->end;
        it->p = c ? c + 1 : it->end;
        while (a < b && is_ows(*a))
            a++;
        while (b > a && is_ows(b[-1]))
            b--;
        if (b > a) {
            *el = a;
            *n = (size_t)(b - a);
            return 1;
        }
    }
    return 0;
}

/* Content-Length: 1*DIGIT, or a list of identical ones. Values too large for
 * 64 bits saturate: they are over the body limit whatever their exact value. */
static void content_length(struct semantics *s, const char *v, size_t n)
{
    const char *p = v, *end = v + n;

    while (p <= end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end, *q = e;
        while (p < q && is_ows(*p))
            p++;
        while (q > p && is_ows(q[-1]))
            q--;
        if (p == q) {
            /* "5," or an empty field: not a length, and a smuggling tool. */
            s->cl_bad = 1;
            return;
        }
        uint64_t val = 0;
        for (; p < q; p++) {
            unsigned d = (unsigned)(*p - '0');
            if (d > 9) {
                s->cl_bad = 1;
                return;
            }
            val = val > (UINT64_MAX - d) / 10 ? UINT64_MAX : val * 10 + d;
        }
        if (s->cl_seen && val != s->cl) {
            s->cl_bad = 1;
            return;
        }
        s->cl_seen = 1;
        s->cl = val;
        if (!c)
            break;
        p = c + 1;
    }
}

/* transfer-coding = token *( OWS ";" OWS transfer-parameter ); only the
 * coding name matters here, the parameters of an unsupported coding do not. */
static void transfer_encoding(struct semantics *s, const char *v, size_t n)
{
    struct list_iter it = {v, v + n};
    const char *e;
    size_t en;

    s->te_seen = 1;
    while (list_next(&it, &e, &en)) {
        size_t k = 0;
        while (k < en && tchar[(uint8_t)e[k]])
            k++;
        size_t name_len = k;
        while (k < en && is_ows(e[k]))
            k++;
        if (name_len == 0 || (k < en && e[k] != ';')) {
            s->te_bad = 1;
        } else if (k == en && SPAN_EQ(e, name_len, "chunked")) {
            s->te_chunked++;
            s->te_last_chunked = 1;
        } else {
            s->te_last_chunked = 0;
        }
        s->te_codings++;
    }
}

static void connection(struct semantics *s, const char *v, size_t n)
{
    struct list_iter it = {v, v + n};
    const char *e;
    size_t en;

    while (list_next(&it, &e, &en)) {
        if (SPAN_EQ(e, en, "close"))
            s->conn_close = 1;
        else if (SPAN_EQ(e, en, "keep-alive"))
            s->conn_keep_alive = 1;
        else if (SPAN_EQ(e, en, "upgrade"))
            s->conn_upgrade = 1;
    }
}

static void upgrade(struct semantics *s, const char *v, size_t n)
{
    struct list_iter it = {v, v + n};
    const char *e;
    size_t en;

    while (list_next(&it, &e, &en))
        if (SPAN_EQ(e, en, "websocket"))
            s->upgrade_websocket = 1;
}

static void expect(struct semantics *s, const char *v, size_t n)
{
    struct list_iter it = {v, v + n};
    const char *e;
    size_t en;

    while (list_next(&it, &e, &en)) {
        if (SPAN_EQ(e, en, "100-continue"))
            s->expect_continue = 1;
        else
            s->expect_other = 1;
    }
}

/* Dispatches on length first: most fields are none of these and cost one
 * switch. */
static void note_field(struct semantics *s, const vial_http_field *h)
{
    const char *n = h->name.p, *v = h->value.p;
    size_t vn = h->value.len;

    switch (h->name.len) {
    case 4:
        if (SPAN_EQ(n, 4, "host"))
            s->hosts++;
        break;
    case 6:
        if (SPAN_EQ(n, 6, "expect"))
            expect(s, v, vn);
        break;
    case 7:
        if (SPAN_EQ(n, 7, "upgrade"))
            upgrade(s, v, vn);
        break;
    case 10:
        if (SPAN_EQ(n, 10, "connection"))
            connection(s, v, vn);
        break;
    case 14:
        if (SPAN_EQ(n, 14, "content-length"))
            content_length(s, v, vn);
        break;
    case 17:
        if (SPAN_EQ(n, 17, "transfer-encoding"))
            transfer_encoding(s, v, vn);
        break;
    }
}

/* The whole-head rules, in a fixed order: malformed framing (400) before the
 * unsupported coding (501), the body limit (413) and the expectation (417). */
static int judge(const struct semantics *s, vial_http_head *req, int *status)
{
    int http11 = req->version_minor == 1;

    if (s->hosts > 1 || (http11 && s->hosts == 0))
        return fail(status, 400);
    if (s->te_seen) {
        if (!http11 || s->cl_seen || s->cl_bad || s->te_bad)
            return fail(status, 400);
        if (s->te_chunked != 1 || !s->te_last_chunked)
            return fail(status, 400);
        if (s->te_codings > 1)
            return fail(status, 501);
        req->body_kind = VIAL_BODY_CHUNKED;
    } else if (s->cl_bad) {
        return fail(status, 400);
    } else if (s->cl_seen) {
        if (s->cl > (req->max_body ? req->max_body : VIAL_HTTP_MAX_BODY))
            return fail(status, 413);
        req->content_length = s->cl;
        req->body_kind = s->cl ? VIAL_BODY_LENGTH : VIAL_BODY_NONE;
    }
    if (s->expect_other)
        return fail(status, 417);
    /* RFC 9110 §10.1.1: a 100-continue from an HTTP/1.0 client is ignored. */
    req->expect_continue = http11 && s->expect_continue;
    req->keep_alive = !s->conn_close && (http11 || s->conn_keep_alive);
    req->upgrade_websocket = s->upgrade_websocket && s->conn_upgrade;
    return 0;
}

/* ---- field lines ---------------------------------------------------------- */

/* The scan ran out of bytes: either the line is already over the header
 * budget (431) or more input is needed. */
static inline int out_of_input(size_t seen, size_t budget, int *status)
{
    return seen > budget ? fail(status, 431) : VIAL_HTTP_INCOMPLETE;
}

static int parse_fields(const char *buf, size_t len, size_t *ppos,
                        vial_http_head *req, struct semantics *sem, int *status)
{
    size_t pos = *ppos, hbytes = 0;
    unsigned n = 0;

    for (;;) {
        if (pos >= len)
            return VIAL_HTTP_INCOMPLETE;
        if (buf[pos] == '\n') {
            pos += 1;
            break;
        }
        if (buf[pos] == '\r') {
            if (pos + 1 == len)
                return VIAL_HTTP_INCOMPLETE;
            if (buf[pos + 1] != '\n')
                return fail(status, 400);
            pos += 2;
            break;
        }
        if (n == VIAL_HTTP_MAX_HEADERS)
            return fail(status, 431);

        /* Every scan of this line stops at `end`, one byte past what the
         * header budget allows, so an endless line costs no more than that. */
        size_t line0 = pos, budget = VIAL_HTTP_MAX_HEADER_BYTES - hbytes;
        size_t end = len - line0 > budget ? line0 + budget + 1 : len;

        while (pos < end && tchar[(uint8_t)buf[pos]])
            pos++;
        if (pos == end)
            return out_of_input(pos - line0, budget, status);
        /* Whitespace at the start (obs-fold, or before the first field) or
         * before the colon, an empty name, a line without a colon: all 400. */
        if (buf[pos] != ':' || pos == line0)
            return fail(status, 400);
        vial_http_field *h = &req->headers[n];
        h->name = (vial_span){buf + line0, pos - line0};

        pos++;
        while (pos < end && is_ows(buf[pos]))
            pos++;
        size_t v0 = pos;
        pos = scan_value(buf, pos, end);
        if (pos == end)
            return out_of_input(pos - line0, budget, status);
        size_t v1 = pos;
        if (buf[pos] == '\n') {
            pos += 1;
        } else if (buf[pos] == '\r') {
            if (pos + 1 == len)
                return out_of_input(pos + 2 - line0, budget, status);
            if (buf[pos + 1] != '\n')
                return fail(status, 400);
            pos += 2;
        } else {
            return fail(status, 400); /* NUL, DEL or another control */
        }
        if (pos - line0 > budget)
            return fail(status, 431);
        hbytes += pos - line0;

        while (v1 > v0 && is_ows(buf[v1 - 1]))
            v1--;
        h->value = (vial_span){buf + v0, v1 - v0};
        note_field(sem, h);
        n++;
    }
    req->nheaders = n;
    req->header_bytes = hbytes;
    *ppos = pos;
    return 1;
}

/* ---- public: head ---------------------------------------------------------- */

int vial_http_parse_request(const char *buf, size_t len, vial_http_head *req, int *status)
{
    struct semantics sem = {0};
    size_t pos = 0;
    int rc;

    *status = 0;
    req->method = req->target = req->path = req->query = (vial_span){buf, 0};
    req->has_query = req->version_minor = req->is_asterisk = 0;
    req->keep_alive = req->expect_continue = req->upgrade_websocket = 0;
    req->body_kind = VIAL_BODY_NONE;
    req->content_length = 0;
    req->header_bytes = 0;
    req->nheaders = 0;

    if ((rc = skip_empty_lines(buf, len, &pos, status)) <= 0)
        return rc;
    if ((rc = parse_request_line(buf, len, &pos, req, status)) <= 0)
        return rc;
    if ((rc = parse_fields(buf, len, &pos, req, &sem, status)) <= 0)
        return rc;
    if (judge(&sem, req, status) < 0)
        return VIAL_HTTP_ERROR;
    return (int)pos;
}

const vial_http_field *vial_http_find_header(const vial_http_head *req, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < req->nheaders; i++) {
        const vial_http_field *h = &req->headers[i];
        if (h->name.len != n)
            continue;
        size_t k = 0;
        while (k < n && lower((uint8_t)h->name.p[k]) == lower((uint8_t)name[k]))
            k++;
        if (k == n)
            return h;
    }
    return NULL;
}

/* ---- chunked decoder ------------------------------------------------------- */

enum {
    CK_SIZE_START,   /* first hex digit of a chunk size */
    CK_SIZE,         /* more hex digits, then ';', OWS or CR */
    CK_SIZE_WS,      /* OWS after the size: only ';' may follow */
    CK_EXT_NAME0,    /* after ';': OWS, then the first byte of a name */
    CK_EXT_NAME,     /* in a name */
    CK_EXT_NAME_WS,  /* OWS after a name: '=' or ';' must follow */
    CK_EXT_VAL0,     /* after '=': OWS, then a token or a quoted string */
    CK_EXT_TOKEN,    /* in a token value */
    CK_EXT_QUOTED,   /* in a quoted value */
    CK_EXT_QESC,     /* after a backslash in a quoted value */
    CK_EXT_QEND,     /* after the closing quote */
    CK_EXT_VAL_WS,   /* OWS after a value: only ';' may follow */
    CK_SIZE_LF,      /* CR of the size line seen */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER0,     /* start of a trailer line, or of the final CRLF */
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_END_LF,
    CK_DONE,
    CK_ERR_400,
    CK_ERR_413,
};

void vial_chunked_init(vial_chunked *d)
{
    memset(d, 0, sizeof *d);
    d->state = CK_SIZE_START;
}

/* After the size and its extensions only CR may come (then LF): a bare LF in
 * chunked framing is a request-smuggling vector, so it is refused. */
static inline int size_line_end(uint8_t c)
{
    return c == '\r' ? CK_SIZE_LF : CK_ERR_400;
}

/* One byte of the size line or the trailer section; returns the next state.
 * `remaining` holds the chunk size while its digits arrive. */
static int chunk_framing_byte(vial_chunked *d, uint8_t c, uint64_t max_body)
{
    switch (d->state) {
    case CK_SIZE_START:
    case CK_SIZE: {
        int h = vial_hex_val(c);
        if (h >= 0) {
            if (++d->digits > 16)
                return CK_ERR_400;
            d->remaining = d->remaining << 4 | (unsigned)h; /* 16 digits fit */
            return CK_SIZE;
        }
        if (d->state == CK_SIZE_START)
            return CK_ERR_400;
        /* The limit is judged once the digits end, so that a 17th digit is
         * the 400 it is (a bad size) whatever the value read so far. */
        if (d->total > max_body || d->remaining > max_body - d->total)
            return CK_ERR_413;
        if (c == ';')
            return CK_EXT_NAME0;
        if (is_ows((char)c))
            return CK_SIZE_WS;
        return size_line_end(c);
    }
    case CK_SIZE_WS:
        if (is_ows((char)c))
            return CK_SIZE_WS;
        return c == ';' ? CK_EXT_NAME0 : CK_ERR_400;
    case CK_EXT_NAME0:
        if (is_ows((char)c))
            return CK_EXT_NAME0;
        return tchar[c] ? CK_EXT_NAME : CK_ERR_400;
    case CK_EXT_NAME:
        if (tchar[c])
            return CK_EXT_NAME;
        if (c == '=')
            return CK_EXT_VAL0;
        if (c == ';')
            return CK_EXT_NAME0;
        if (is_ows((char)c))
            return CK_EXT_NAME_WS;
        return size_line_end(c);
    case CK_EXT_NAME_WS:
        if (is_ows((char)c))
            return CK_EXT_NAME_WS;
        if (c == '=')
            return CK_EXT_VAL0;
        return c == ';' ? CK_EXT_NAME0 : CK_ERR_400;
    case CK_EXT_VAL0:
        if (is_ows((char)c))
            return CK_EXT_VAL0;
        if (c == '"')
            return CK_EXT_QUOTED;
        return tchar[c] ? CK_EXT_TOKEN : CK_ERR_400;
    case CK_EXT_TOKEN:
        if (tchar[c])
            return CK_EXT_TOKEN;
        /* A token value ends the way a quoted one does. */
        __attribute__((fallthrough));
    case CK_EXT_QEND:
        if (c == ';')
            return CK_EXT_NAME0;
        if (is_ows((char)c))
            return CK_EXT_VAL_WS;
        return size_line_end(c);
    case CK_EXT_QUOTED:
        if (c == '"')
            return CK_EXT_QEND;
        if (c == '\\')
            return CK_EXT_QESC;
        return qdtext[c] ? CK_EXT_QUOTED : CK_ERR_400;
    case CK_EXT_QESC:
        /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
        return value_ok[c] ? CK_EXT_QUOTED : CK_ERR_400;
    case CK_EXT_VAL_WS:
        if (is_ows((char)c))
            return CK_EXT_VAL_WS;
        return c == ';' ? CK_EXT_NAME0 : CK_ERR_400;
    case CK_SIZE_LF:
        if (c != '\n')
            return CK_ERR_400;
        d->line_bytes = 0;
        if (d->remaining == 0)
            return CK_TRAILER0;
        return CK_DATA;
    case CK_DATA_CR:
        return c == '\r' ? CK_DATA_LF : CK_ERR_400;
    case CK_DATA_LF:
        if (c != '\n')
            return CK_ERR_400;
        d->digits = 0;
        d->remaining = 0;
        d->line_bytes = 0;
        return CK_SIZE_START;
    case CK_TRAILER0:
        if (c == '\r')
            return CK_END_LF;
        if (!tchar[c]) /* bare LF, obs-fold, leading whitespace, junk */
            return CK_ERR_400;
        if (++d->ntrailers > VIAL_HTTP_MAX_HEADERS)
            return CK_ERR_400;
        return CK_TRAILER_NAME;
    case CK_TRAILER_NAME:
        if (tchar[c])
            return CK_TRAILER_NAME;
        return c == ':' ? CK_TRAILER_VALUE : CK_ERR_400;
    case CK_TRAILER_VALUE:
        if (c == '\r')
            return CK_TRAILER_LF;
        return value_ok[c] ? CK_TRAILER_VALUE : CK_ERR_400;
    case CK_TRAILER_LF:
        return c == '\n' ? CK_TRAILER0 : CK_ERR_400;
    case CK_END_LF:
        return c == '\n' ? CK_DONE : CK_ERR_400;
    }
    return CK_ERR_400;
}

static inline int is_trailer_state(int s)
{
    return s >= CK_TRAILER0 && s <= CK_END_LF;
}

int vial_chunked_feed(vial_chunked *d, const char *in, size_t len, size_t *consumed,
                      char *out, size_t *out_len, uint64_t max_body)
{
    size_t pos = 0;

    while (pos < len && d->state < CK_DONE) {
        if (d->state == CK_DATA) {
            size_t n = len - pos;
            if (n > d->remaining)
                n = (size_t)d->remaining;
            memcpy(out + *out_len, in + pos, n);
            *out_len += n;
            pos += n;
            d->remaining -= n;
            d->total += n;
            if (d->remaining == 0)
                d->state = CK_DATA_CR;
            continue;
        }
        /* Both caps count the byte about to be read: the size line on its
         * own, the trailer section as a whole (it is a small header). */
        size_t cap = is_trailer_state(d->state) ? VIAL_HTTP_MAX_HEADER_BYTES + 2
                                                : MAX_CHUNK_LINE;
        if (d->state != CK_DATA_CR && d->state != CK_DATA_LF && ++d->line_bytes > cap) {
            d->state = CK_ERR_400;
            break;
        }
        d->state = chunk_framing_byte(d, (uint8_t)in[pos], max_body);
        if (d->state < CK_ERR_400)
            pos++;
    }
    *consumed = pos;
    switch (d->state) {
    case CK_DONE:
        return 1;
    case CK_ERR_400:
        return -400;
    case CK_ERR_413:
        return -413;
    default:
        return 0;
    }
}
