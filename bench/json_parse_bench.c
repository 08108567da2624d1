/* Chooses vial's JSON parser by measurement: parse throughput on a few
 * realistic documents, and strictness against the rules of
 * shared/spec/conformance-app.md §4.2 (/json). Candidates: the three JSON
 * parsers Debian packages for C (jansson, yajl, cJSON).
 *
 * Standalone, not part of the CMake build:
 *   apt-get install libjansson-dev libyajl-dev libcjson-dev
 *   cc -O2 -o /tmp/json_parse_bench bench/json_parse_bench.c \
 *      $(pkg-config --cflags --libs jansson yajl libcjson) && /tmp/json_parse_bench
 *
 * Each library is driven the way vial would drive it:
 *   jansson  json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL): builds its tree;
 *   cJSON    cJSON_ParseWithLengthOpts(require_null_terminated): builds its tree;
 *   yajl     SAX callbacks (numbers as text through yajl_number), measured
 *            with empty callbacks (the bare lexer), building a tree in an
 *            arena the way src/app/json_parse.c does, and as vial ships it:
 *            a strict UTF-8/surrogate pre-validation pass, then yajl with
 *            its own (weaker) UTF-8 check off, building the tree, then a
 *            check that only whitespace follows the top-level value.
 * The strictness table prints, per case, "ok" when the library does what the
 * spec asks and the library's actual behaviour otherwise.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <jansson.h>
#include <yajl/yajl_parse.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- what a parse produced ------------------------------------------------ */

enum { R_REJECT, R_OTHER, R_INT, R_REAL, R_STR };

typedef struct result {
    int kind; /* R_* */
    long long i;
    double d;
    size_t slen;
    char s[64];
} result;

/* --- jansson -------------------------------------------------------------- */

static void from_jansson(json_t *v, result *r)
{
    if (json_is_integer(v)) {
        r->kind = R_INT;
        r->i = json_integer_value(v);
    } else if (json_is_real(v)) {
        r->kind = R_REAL;
        r->d = json_real_value(v);
    } else if (json_is_string(v)) {
        r->kind = R_STR;
        r->slen = json_string_length(v);
        memcpy(r->s, json_string_value(v), r->slen < sizeof r->s ? r->slen : sizeof r->s);
    } else if (json_is_array(v) && json_array_size(v) == 1) {
        from_jansson(json_array_get(v, 0), r);
    } else
        r->kind = R_OTHER;
}

static int parse_jansson(const char *buf, size_t len, result *r)
{
    json_error_t err;
    json_t *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!v) {
        if (r)
            r->kind = R_REJECT;
        return -1;
    }
    if (r)
        from_jansson(v, r);
    json_decref(v);
    return 0;
}

/* --- cJSON ------------------------------------------------------------------ */

static void from_cjson(cJSON *v, result *r)
{
    /* cJSON keeps every number as a double: 1 and 1.0 are the same to it. */
    if (cJSON_IsNumber(v)) {
        r->kind = R_REAL;
        r->d = v->valuedouble;
    } else if (cJSON_IsString(v)) {
        r->kind = R_STR;
        r->slen = strlen(v->valuestring); /* NUL-terminated only */
        memcpy(r->s, v->valuestring, r->slen < sizeof r->s ? r->slen : sizeof r->s);
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) {
        from_cjson(cJSON_GetArrayItem(v, 0), r);
    } else
        r->kind = R_OTHER;
}

static char *cjson_buf;
static size_t cjson_cap;

static int parse_cjson(const char *buf, size_t len, result *r)
{
    /* require_null_terminated makes cJSON reject trailing data, but it looks
     * for the NUL inside the length: hand it a terminated copy. */
    if (len + 1 > cjson_cap) {
        cjson_cap = len + 1;
        cjson_buf = realloc(cjson_buf, cjson_cap);
    }
    memcpy(cjson_buf, buf, len);
    cjson_buf[len] = 0;
    const char *end;
    cJSON *v = cJSON_ParseWithLengthOpts(cjson_buf, len + 1, &end, 1);
    if (!v) {
        if (r)
            r->kind = R_REJECT;
        return -1;
    }
    if (r)
        from_cjson(v, r);
    cJSON_Delete(v);
    return 0;
}

/* --- yajl ------------------------------------------------------------------- */

/* A small arena tree, as json_parse.c builds it: values pushed on a scratch
 * stack and copied into exact-size arena arrays when their container ends. */
typedef struct node {
    int type;
    size_t n;
    union {
        long long i;
        double d;
        const char *s;
        struct node *items;
    } u;
    const char *key;
    size_t klen;
} node;

typedef struct yctx {
    int build;
    int depth, max_depth;
    result *r;
    /* arena */
    char *arena;
    size_t apos, acap;
    /* scratch */
    node *stk;
    size_t sn, scap;
    size_t frames[4096];
    int nframes;
    const unsigned char *key;
    size_t klen;
    /* where the top-level value ended (vial's trailing-data check) */
    yajl_handle h;
    int in_parse;
    size_t root_end;
} yctx;

static int fin(yctx *c, int rv)
{
    if (rv && c->depth == 0 && c->in_parse)
        c->root_end = yajl_get_bytes_consumed(c->h);
    return rv;
}

static void *aalloc(yctx *c, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (c->apos + n > c->acap) {
        /* The bench keeps one arena for the whole run and resets it per parse;
         * grow by doubling (kept afterwards). */
        size_t cap = c->acap ? c->acap : 1 << 16;
        while (cap < c->apos + n)
            cap *= 2;
        /* Old pointers die with a realloc; the bench only needs the bytes
         * written, so start a fresh block and forget the old one. */
        c->arena = malloc(cap);
        c->acap = cap;
        c->apos = 0;
    }
    void *p = c->arena + c->apos;
    c->apos += n;
    return p;
}

static int push(yctx *c, node v)
{
    if (c->key) {
        char *k = aalloc(c, c->klen + 1);
        memcpy(k, c->key, c->klen);
        k[c->klen] = 0;
        v.key = k;
        v.klen = c->klen;
        c->key = NULL;
    }
    if (c->sn == c->scap) {
        c->scap = c->scap ? c->scap * 2 : 256;
        c->stk = realloc(c->stk, c->scap * sizeof *c->stk);
    }
    c->stk[c->sn++] = v;
    return 1;
}

static void capture(yctx *c, int kind, long long i, double d, const unsigned char *s, size_t n)
{
    if (c->r && c->depth <= 1 && c->r->kind == R_OTHER) {
        c->r->kind = kind;
        c->r->i = i;
        c->r->d = d;
        c->r->slen = n;
        if (s)
            memcpy(c->r->s, s, n < sizeof c->r->s ? n : sizeof c->r->s);
    }
}

static int y_null(void *ctx)
{
    yctx *c = ctx;
    return fin(c, c->build ? push(c, (node){.type = 0}) : 1);
}

static int y_bool(void *ctx, int b)
{
    yctx *c = ctx;
    return fin(c, c->build ? push(c, (node){.type = b ? 2 : 1}) : 1);
}

static int y_number(void *ctx, const char *s, size_t n)
{
    yctx *c = ctx;
    char tmp[512];
    if (n >= sizeof tmp)
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    int is_int = !memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n);
    node v = {0};
    if (is_int) {
        errno = 0;
        long long x = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v.type = 3;
            v.u.i = x;
            capture(c, R_INT, x, 0, NULL, 0);
            return fin(c, c->build ? push(c, v) : 1);
        }
    }
    v.type = 4;
    v.u.d = strtod(tmp, NULL);
    if (isinf(v.u.d))
        return 0;
    capture(c, R_REAL, 0, v.u.d, NULL, 0);
    return fin(c, c->build ? push(c, v) : 1);
}

static int y_string(void *ctx, const unsigned char *s, size_t n)
{
    yctx *c = ctx;
    capture(c, R_STR, 0, 0, s, n);
    if (!c->build)
        return fin(c, 1);
    char *p = aalloc(c, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return fin(c, push(c, (node){.type = 5, .n = n, .u.s = p}));
}

static int y_key(void *ctx, const unsigned char *s, size_t n)
{
    yctx *c = ctx;
    c->key = s; /* valid until the next callback; copied by push() */
    c->klen = n;
    return 1;
}

static int y_start(void *ctx)
{
    yctx *c = ctx;
    if (++c->depth > c->max_depth)
        return 0;
    if (!c->build)
        return 1;
    /* the key must be copied now: yajl reuses its buffer */
    push(c, (node){.type = 6});
    c->frames[c->nframes++] = c->sn;
    return 1;
}

static int y_end(void *ctx)
{
    yctx *c = ctx;
    c->depth--;
    if (!c->build)
        return fin(c, 1);
    size_t start = c->frames[--c->nframes], n = c->sn - start;
    node *items = aalloc(c, n * sizeof *items + 1);
    memcpy(items, c->stk + start, n * sizeof *items);
    c->sn = start;
    c->stk[start - 1].n = n;
    c->stk[start - 1].u.items = items;
    return fin(c, 1);
}

static const yajl_callbacks ycb = {y_null, y_bool, NULL, NULL, y_number, y_string,
                                   y_start, y_key, y_end, y_start, y_end};

static yctx yc;

static int parse_yajl_common(const char *buf, size_t len, result *r, int build)
{
    yc.build = build;
    yc.depth = 0;
    yc.max_depth = build == 2 ? 512 : build ? 4096 : 1 << 30; /* vial: 512; frames[]: 4096 */
    yc.r = r;
    yc.apos = 0;
    yc.sn = 0;
    yc.nframes = 0;
    yc.key = NULL;
    if (r)
        r->kind = R_OTHER;
    yajl_handle h = yajl_alloc(&ycb, NULL, &yc);
    if (build == 2)
        yajl_config(h, yajl_dont_validate_strings, 1);
    yc.h = h;
    yc.root_end = (size_t)-1;
    yc.in_parse = 1;
    yajl_status st = yajl_parse(h, (const unsigned char *)buf, len);
    yc.in_parse = 0;
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st == yajl_status_ok && build == 2 && yc.root_end != (size_t)-1) {
        /* vial's check: only whitespace after the top-level value */
        for (size_t i = yc.root_end; i < len; i++)
            if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r')
                st = yajl_status_error;
    }
    yajl_free(h);
    if (st != yajl_status_ok) {
        if (r)
            r->kind = R_REJECT;
        return -1;
    }
    return 0;
}

/* A copy of src/app/json_parse.c's prevalidate(): strict UTF-8 over the
 * whole text (Unicode Table 3-7) and paired \u surrogate escapes. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        lo = b == 0xE0 ? 0xA0 : 0x80;
        hi = b == 0xED ? 0x9F : 0xBF;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        lo = b == 0xF0 ? 0x90 : 0x80;
        hi = b == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < need; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return need;
}

static int hex4(const unsigned char *s, size_t n, unsigned *out)
{
    if (n < 4)
        return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = s[k];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15)
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static int prevalidate(const unsigned char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint64_t w, x;
            memcpy(&w, s + i, 8);
            x = w ^ (ones * '\\');
            /* no high bit, no backslash, no byte below 0x20 */
            if (!(w & highs) && !((x - ones) & ~x & highs) && !((w - ones * 0x20) & ~w & highs)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c == '\\') {
            unsigned u, lo;
            if (i + 1 < n && s[i + 1] == 'u' && hex4(s + i + 2, n - i - 2, &u) == 0) {
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return -1;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (i + 7 >= n || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                        hex4(s + i + 8, n - i - 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    i += 12;
                } else
                    i += 6;
            } else
                i += i + 1 < n && s[i + 1] < 0x80 ? 2 : 1;
        } else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            return -1;
        } else if (c < 0x80) {
            i++;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (!k)
                return -1;
            i += k;
        }
    }
    return 0;
}

static int parse_vial(const char *buf, size_t len, result *r)
{
    /* what vial ships: pre-validation, then yajl (its own UTF-8 check off)
     * building the arena tree */
    if (prevalidate((const unsigned char *)buf, len) < 0) {
        if (r)
            r->kind = R_REJECT;
        return -1;
    }
    return parse_yajl_common(buf, len, r, 2);
}

static int parse_yajl_sax(const char *buf, size_t len, result *r)
{
    return parse_yajl_common(buf, len, r, 0);
}

static int parse_yajl_tree(const char *buf, size_t len, result *r)
{
    return parse_yajl_common(buf, len, r, 1);
}

/* --- the libraries ------------------------------------------------------------ */

typedef struct lib {
    const char *name;
    int (*parse)(const char *buf, size_t len, result *r);
} lib;

static const lib libs[] = {
    {"jansson", parse_jansson},
    {"cJSON", parse_cjson},
    {"yajl (SAX only)", parse_yajl_sax},
    {"yajl + arena tree", parse_yajl_tree},
    {"**vial: pre-validation + yajl + arena tree**", parse_vial},
};
#define NLIBS (sizeof libs / sizeof libs[0])

/* --- strictness ---------------------------------------------------------------- */

enum { E_REJECT, E_ACCEPT, E_INT, E_REAL, E_STR };

typedef struct tcase {
    const char *name;
    const char *in;
    int len; /* -1: strlen */
    int expect;
    long long i;
    double d;
    const char *s;
    int slen;
} tcase;

#define REJ(name, in) {name, in, -1, E_REJECT, 0, 0, NULL, 0}
#define REJN(name, in, n) {name, in, n, E_REJECT, 0, 0, NULL, 0}
#define ACC(name, in) {name, in, -1, E_ACCEPT, 0, 0, NULL, 0}
#define INT(name, in, v) {name, in, -1, E_INT, v, 0, NULL, 0}
#define REAL(name, in, v) {name, in, -1, E_REAL, 0, v, NULL, 0}
#define STR(name, in, s, n) {name, in, -1, E_STR, 0, 0, s, n}

static const tcase cases[] = {
    REJ("empty", ""),
    REJ("whitespace only", " \n\t "),
    REJ("truncated object", "{\"a\":1"),
    REJ("truncated array", "[1,2"),
    REJ("truncated string", "\"abc"),
    REJ("truncated literal", "tru"),
    REJ("truncated number", "-"),
    REJ("truncated exponent", "1e"),
    REJ("trailing data", "{} x"),
    REJ("two values", "1 2"),
    REJ("two objects", "{}{}"),
    REJ("form feed as whitespace", "[1,2\f]"),
    REJ("vertical tab as whitespace", "\v[1]"),
    REJ("trailing unterminated string", "2\""),
    REJ("trailing partial string", "{} \"abc"),
    REJ("trailing partial literal", "[1] tru"),
    REJN("NUL after value", "{}\0", 3),
    REJN("NUL after number", "[0\0]", 4),
    REJN("NUL inside string", "\"a\0b\"", 5),
    REJ("block comment", "/*c*/ 1"),
    REJ("line comment", "[1 // c\n]"),
    REJ("hash comment", "# c\n1"),
    REJ("single-quoted string", "'a'"),
    REJ("single-quoted key", "{'a':1}"),
    REJ("trailing comma array", "[1,]"),
    REJ("trailing comma object", "{\"a\":1,}"),
    REJ("unquoted key", "{a:1}"),
    REJ("NaN", "NaN"),
    REJ("nan in array", "[nan]"),
    REJ("Infinity", "Infinity"),
    REJ("-Infinity", "[-Infinity]"),
    REJ("leading zero", "01"),
    REJ("plus sign", "+1"),
    REJ("leading dot", ".5"),
    REJ("trailing dot", "1."),
    REJ("hex number", "0x10"),
    REJ("raw control char", "\"a\x01" "b\""),
    REJ("raw tab in string", "\"a\tb\""),
    REJ("bad escape", "\"\\x41\""),
    REJ("short \\u escape", "\"\\u12\""),
    REJ("invalid UTF-8 byte FF", "\"\xff\""),
    REJ("UTF-8 continuation alone", "\"\x80\""),
    REJ("UTF-8 truncated sequence", "\"\xe2\x82\""),
    REJ("UTF-8 overlong '/' (C0 AF)", "\"\xc0\xaf\""),
    REJ("UTF-8 overlong 3-byte (E0 80 AF)", "\"\xe0\x80\xaf\""),
    REJ("UTF-8 overlong 4-byte (F0 80 80 AF)", "\"\xf0\x80\x80\xaf\""),
    REJ("UTF-8 surrogate (ED A0 80)", "\"\xed\xa0\x80\""),
    REJ("UTF-8 above U+10FFFF (F4 90 80 80)", "\"\xf4\x90\x80\x80\""),
    REJ("UTF-8 F5 lead byte", "\"\xf5\x80\x80\x80\""),
    REJ("invalid UTF-8 outside string", "[1]\xff"),
    REJ("escaped lone high surrogate", "\"\\ud800\""),
    REJ("escaped lone low surrogate", "\"\\udc00\""),
    REJ("number overflowing double", "1e400"),
    ACC("top-level scalar", "true"),
    ACC("surrounding whitespace", " \r\n\t{\"a\":[]} \n"),
    ACC("nested", "{\"a\":{\"b\":[1,{\"c\":null}]}}"),
    STR("\\u0000 in string", "\"a\\u0000b\"", "a\0b", 3),
    STR("surrogate pair escape", "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4),
    STR("raw 4-byte UTF-8", "\"\xf0\x9f\x98\x80\"", "\xf0\x9f\x98\x80", 4),
    STR("escapes", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8),
    INT("int 2^53", "9007199254740992", 9007199254740992LL),
    INT("int -2^53", "-9007199254740992", -9007199254740992LL),
    INT("int 2^53+1", "9007199254740993", 9007199254740993LL),
    INT("int64 max", "9223372036854775807", INT64_MAX),
    INT("int64 min", "-9223372036854775808", INT64_MIN),
    INT("-0 int", "-0", 0),
    REAL("int beyond int64 -> double", "18446744073709551616", 18446744073709551616.0),
    REAL("0.1", "0.1", 0.1),
    REAL("1.7976931348623157e308", "1.7976931348623157e308", 1.7976931348623157e308),
    REAL("5e-324 (denormal)", "5e-324", 5e-324),
    REAL("1E2", "1E2", 100.0),
    REAL("-0.0", "-0.0", -0.0),
    REAL("1.5e-10", "1.5e-10", 1.5e-10),
    REAL("17 significant digits", "0.30000000000000004", 0.30000000000000004),
};
#define NCASES (sizeof cases / sizeof cases[0])

/* "ok" when the library met the expectation; else what it did. */
static const char *judge(const tcase *t, const result *r, char *buf, size_t cap)
{
    if (t->expect == E_REJECT)
        return r->kind == R_REJECT ? "ok" : "ACCEPTS";
    if (r->kind == R_REJECT)
        return "REJECTS";
    switch (t->expect) {
    case E_ACCEPT:
        return "ok";
    case E_INT:
        if (r->kind == R_INT && r->i == t->i)
            return "ok";
        if (r->kind == R_REAL && r->d == (double)t->i && fabs(r->d) <= 9007199254740992.0) {
            snprintf(buf, cap, "as double %.17g", r->d);
            return buf;
        }
        if (r->kind == R_INT)
            snprintf(buf, cap, "int %lld", r->i);
        else if (r->kind == R_REAL)
            snprintf(buf, cap, "double %.17g", r->d);
        else
            snprintf(buf, cap, "kind %d", r->kind);
        return buf;
    case E_REAL:
        if (r->kind == R_REAL && r->d == t->d && signbit(r->d) == signbit(t->d))
            return "ok";
        if (r->kind == R_REAL)
            snprintf(buf, cap, "%.17g", r->d);
        else
            snprintf(buf, cap, "kind %d", r->kind);
        return buf;
    case E_STR:
        if (r->kind == R_STR && r->slen == (size_t)t->slen && !memcmp(r->s, t->s, r->slen))
            return "ok";
        if (r->kind == R_STR) {
            snprintf(buf, cap, "len %zu", r->slen);
            return buf;
        }
        return "not a string";
    }
    return "?";
}

static int deep(const lib *l, int levels)
{
    char *b = malloc(2 * (size_t)levels);
    memset(b, '[', (size_t)levels);
    memset(b + levels, ']', (size_t)levels);
    int rc = l->parse(b, 2 * (size_t)levels, NULL);
    free(b);
    return rc;
}

/* --- documents ------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sput(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sput(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = realloc(b->p, b->cap);
    }
}

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)rs;
}

static const char *names[] = {"Ada Lovelace", "Grace Hopper", "Émile Zola", "Søren Kierkegaard",
                              "李小龙", "Алексей", "Zoë \\\"Z\\\" O'Neil", "Jean-Luc"};

static void record(sbuf *b, int id)
{
    sput(b,
         "{\"id\":%d,\"name\":\"%s\",\"email\":\"user%d@example.com\",\"active\":%s,"
         "\"score\":%d.%02u,\"roles\":[\"reader\",\"writer\"],\"address\":{\"street\":"
         "\"%u Main St\",\"city\":\"Springfield\",\"zip\":\"%05u\"},\"tags\":null,"
         "\"created\":\"2024-03-%02uT12:%02u:00Z\",\"balance\":%u}",
         id, names[id % 8], id, rnd() & 1 ? "true" : "false", (int)(rnd() % 100), rnd() % 100,
         rnd() % 9999, rnd() % 99999, 1 + rnd() % 28, rnd() % 60, rnd());
}

static sbuf doc_api(void)
{
    sbuf b = {0};
    sput(&b, "{\"user\":");
    record(&b, 1);
    sput(&b, ",\"items\":[");
    for (int i = 0; i < 5; i++)
        sput(&b, "%s{\"sku\":\"A-%d\",\"qty\":%u,\"price\":%u.%02u}", i ? "," : "", i, 1 + rnd() % 9,
             rnd() % 100, rnd() % 100);
    sput(&b, "],\"note\":\"Gr\\u00fc\\u00dfe, please deliver before noon\",\"coupon\":null}");
    return b;
}

static sbuf doc_records(void)
{
    sbuf b = {0};
    sput(&b, "[");
    for (int i = 0; i < 400; i++) {
        if (i)
            sput(&b, ",\n");
        record(&b, i);
    }
    sput(&b, "]");
    return b;
}

static sbuf doc_numbers(void)
{
    /* GeoJSON-like coordinates: the number-heavy case (canada.json style). */
    sbuf b = {0};
    sput(&b, "{\"type\":\"Polygon\",\"coordinates\":[[");
    for (int i = 0; i < 12000; i++)
        sput(&b, "%s[%.15g,%.15g]", i ? "," : "", -180.0 + (rnd() % 3600000) / 10000.0 + 1e-9 * rnd(),
             -90.0 + (rnd() % 1800000) / 10000.0 + 1e-9 * rnd());
    sput(&b, "]]}");
    return b;
}

static sbuf doc_strings(void)
{
    sbuf b = {0};
    sput(&b, "{\"messages\":[");
    for (int i = 0; i < 1500; i++)
        sput(&b,
             "%s{\"from\":\"%s\",\"text\":\"Line one\\nLine two \\\"quoted\\\" \\u263a %s "
             "— naïve café, 日本語のテキスト, emoji \\ud83d\\ude00 and a tab\\tend\"}",
             i ? "," : "", names[i % 8], names[(i + 3) % 8]);
    sput(&b, "]}");
    return b;
}

static double now(void)
{
    /* CPU time of this thread: the numbers stay comparable on a loaded
     * machine (wall time would count other processes' slices). */
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double throughput(const lib *l, const sbuf *d)
{
    /* Best of 5 runs of >= 0.1 s of CPU each, in MB/s. */
    double best = 0;
    for (int run = 0; run < 5; run++) {
        long iters = 0;
        double t0 = now(), t;
        do {
            for (int k = 0; k < 16; k++)
                if (l->parse(d->p, d->n, NULL) != 0)
                    return -1;
            iters += 16;
        } while ((t = now() - t0) < 0.1);
        double mbs = (double)d->n * iters / t / 1e6;
        if (mbs > best)
            best = mbs;
    }
    return best;
}

int main(void)
{
    printf("## Strictness (spec §4.2; \"ok\" = behaves as the spec requires)\n\n");
    printf("| case |");
    for (size_t l = 0; l < NLIBS; l++)
        printf(" %s |", libs[l].name);
    printf("\n|---|");
    for (size_t l = 0; l < NLIBS; l++)
        printf("---|");
    printf("\n");
    int fails[NLIBS] = {0};
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *t = &cases[c];
        size_t len = t->len < 0 ? strlen(t->in) : (size_t)t->len;
        printf("| %s |", t->name);
        for (size_t l = 0; l < NLIBS; l++) {
            result r = {0};
            char buf[64];
            libs[l].parse(t->in, len, &r);
            const char *v = judge(t, &r, buf, sizeof buf);
            fails[l] += strcmp(v, "ok") != 0;
            printf(" %s |", v);
        }
        printf("\n");
    }
    printf("| 512 nested arrays |");
    for (size_t l = 0; l < NLIBS; l++)
        printf(" %s |", deep(&libs[l], 512) == 0 ? "accepted" : "rejected");
    printf("\n| 100000 nested arrays |");
    for (size_t l = 0; l < NLIBS; l++)
        printf(" %s |", deep(&libs[l], 100000) == 0 ? "accepted" : "rejected");
    printf("\n| **cases not as the spec wants** |");
    for (size_t l = 0; l < NLIBS; l++)
        printf(" **%d** |", fails[l]);
    printf("\n\n## Throughput (MB/s of CPU time, best of 5; higher is better)\n\n| document | bytes |");
    for (size_t l = 0; l < NLIBS; l++)
        printf(" %s |", libs[l].name);
    printf("\n|---|---|");
    for (size_t l = 0; l < NLIBS; l++)
        printf("---|");
    printf("\n");
    struct {
        const char *name;
        sbuf d;
    } docs[] = {{"API request (1 record + 5 items)", doc_api()},
                {"400 user records", doc_records()},
                {"12000 coordinate pairs", doc_numbers()},
                {"1500 UTF-8/escape-heavy messages", doc_strings()}};
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        printf("| %s | %zu |", docs[d].name, docs[d].d.n);
        for (size_t l = 0; l < NLIBS; l++) {
            double t = throughput(&libs[l], &docs[d].d);
            if (t < 0)
                printf(" rejected! |");
            else
                printf(" %.0f |", t);
        }
        printf("\n");
    }
    return 0;
}
