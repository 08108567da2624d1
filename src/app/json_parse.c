/* Request JSON: vial_req_json parses the body once into a tree in the
 * request's arena; vial_jv_* read it; vial_json_value writes it back out.
 *
 * Why yajl (bench/json_parse_bench.c has the numbers): of Debian's three C
 * parsers it was the fastest by 2-8x over jansson, it is a push parser
 * (iterative: constant stack on a 128 KiB coroutine stack, whatever the
 * nesting, and ready for bodies streamed from the socket), it hands numbers
 * over as text (so integers stay exact up to int64 and larger ones are kept
 * as their text, which jansson cannot do; yajl never calls strtod itself
 * when given a number callback), and strings with
 * their length (\u0000 survives). Its gaps against the spec are closed
 * here: three by one pre-validation pass over the body, before yajl sees
 * it, one by a check after it:
 *   - yajl checks UTF-8 structure only: it accepts overlong forms, encoded
 *     surrogates and code points above U+10FFFF. We validate the whole body
 *     strictly (Unicode Table 3-7), so yajl's own check is switched off;
 *   - yajl turns an unpaired \uD800-\uDFFF escape into '?'. We reject it: it
 *     has no UTF-8 form, and RFC 8259 §8.2 leaves its meaning unpredictable;
 *   - yajl skips \f and \v as whitespace (found by fuzz_json): the same
 *     pass rejects every control byte but tab, LF and CR;
 *   - yajl accepts a cut-off string after the value ("2\"", found by
 *     fuzz_json): we check that only whitespace follows the value.
 * jansson, the strictest, is 3-8x slower, rejects integers beyond int64,
 * and (found by the fuzzer's differential) ignores a raw NUL after a number.
 * cJSON was ruled out: it accepts raw control characters, invalid UTF-8,
 * leading zeros, "1." and 1e400, truncates strings at \u0000, and keeps
 * every number as a double.
 *
 * Everything lives in the request's arena, yajl's own allocations included
 * (through yajl_alloc_funcs), so nothing needs freeing after a parse except
 * the scratch stack, freed before returning. */
#include "app/app.h"
#include "runtime/ascii.h"
#include "app/utf8.h"
#include "runtime/codec.h"
#include "runtime/numfmt.h"

#include <yajl/yajl_parse.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define VIAL_JSON_MAX_DEPTH 512
#define INDEX_MIN 9 /* objects with more members get a hash index */

typedef struct vial_jmember vial_jmember;

struct vial_jv {
    uint32_t type;  /* vial_jtype */
    uint32_t hbits; /* objects: log2(index slots), 0 when not indexed */
    size_t n;       /* string bytes, array items, object members */
    union {
        int64_t i;
        double d;
        const char *s; /* NUL-terminated copy (may also hold NULs) */
        struct vial_jv *items;
        vial_jmember *members; /* followed by the index, uint32_t[1 << hbits] */
    } u;
};

struct vial_jmember {
    const char *key; /* NUL-terminated */
    size_t klen;
    struct vial_jv v;
};

struct vial_json_doc {
    int status;         /* vial_req_json's result */
    const char *error;  /* why, when status != 0 */
    const vial_jv *root;
};

/* --- keyed hash for object indexes ------------------------------------------
 * Objects are indexed by a keyed hash (SipHash-1-3) with a per-process
 * random key: with a fixed hash a 1 MiB body of colliding keys would make
 * building the index quadratic (hash flooding). */

static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
    uint64_t k[2] = {0x736f6d6570736575ull, 0x646f72616e646f6dull};
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != sizeof k) {
        /* No entropy this early: still better than a fixed key. */
        k[0] ^= (uint64_t)(uintptr_t)&k;
        k[1] ^= (uint64_t)time(NULL);
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                \
    do {                                                                        \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);               \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                  \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                  \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);               \
    } while (0)

static uint64_t siphash13(const char *s, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ sip_k0, v1 = 0x646f72616e646f6dull ^ sip_k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ sip_k0, v3 = 0x7465646279746573ull ^ sip_k1;
    const unsigned char *p = (const unsigned char *)s;
    size_t full = n & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8); /* little-endian hosts; the value only indexes */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < (n & 7); i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint32_t *obj_index(const vial_jv *o)
{
    return (uint32_t *)(void *)(o->u.members + o->n);
}

/* --- pre-validation ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    return vial_utf8_seq(s, n, NULL);
}

static int hex4(const unsigned char *s, size_t n, unsigned *out)
{
    if (n < 4)
        return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int d = vial_hex_val(s[k]);
        if (d < 0)
            return -1;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

/* Checks the whole text is UTF-8 and every \u escape of a surrogate is a
 * proper pair. A backslash is only legal inside strings (yajl rejects it
 * anywhere else), so the escapes can be found without tracking quotes.
 * Returns 0, or -1 with *off and *why set. */
static int prevalidate(const unsigned char *s, size_t n, size_t *off, const char **why)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            /* 8 bytes at a time while they are ASCII without a backslash */
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
                if (u >= 0xDC00 && u <= 0xDFFF) {
                    *off = i;
                    *why = "unpaired surrogate escape";
                    return -1;
                }
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (i + 7 >= n || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                        hex4(s + i + 8, n - i - 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                        *off = i;
                        *why = "unpaired surrogate escape";
                        return -1;
                    }
                    i += 12;
                } else
                    i += 6;
            } else {
                /* any other escape: skip the escaped ASCII byte (it may be a
                 * quote or backslash); yajl judges it */
                i += i + 1 < n && s[i + 1] < 0x80 ? 2 : 1;
            }
        } else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            /* never valid: not whitespace outside strings, not allowed raw
             * inside them (yajl would skip \f and \v as whitespace) */
            *off = i;
            *why = "invalid control character";
            return -1;
        } else if (c < 0x80) {
            i++;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (!k) {
                *off = i;
                *why = "invalid UTF-8";
                return -1;
            }
            i += k;
        }
    }
    return 0;
}

/* --- yajl into the arena --------------------------------------------------------- */

/* yajl's allocations come from the request's arena; a 16-byte header keeps
 * the size for realloc. free is a no-op: the arena goes with the request. */
typedef struct ya_hdr {
    size_t size;
    size_t pad;
} ya_hdr;

static void *ya_malloc(void *ctx, size_t sz)
{
    ya_hdr *h = vial_arena_alloc(ctx, sizeof *h + sz);
    if (!h)
        return NULL;
    h->size = sz;
    return h + 1;
}

static void *ya_realloc(void *ctx, void *p, size_t sz)
{
    if (!p)
        return ya_malloc(ctx, sz);
    ya_hdr *h = (ya_hdr *)p - 1;
    if (sz <= h->size)
        return p;
    ya_hdr *n = vial_arena_grow(ctx, h, sizeof *h + h->size, sizeof *h + sz);
    if (!n)
        return NULL;
    n->size = sz;
    return n + 1;
}

static void ya_free(void *ctx, void *p)
{
    (void)ctx;
    (void)p;
}

/* The tree is built bottom-up: values are pushed on a scratch stack (with
 * their key when inside an object) and, when a container ends, its
 * children are copied into one exact-size arena array. A container's
 * placeholder entry remembers where the enclosing container's children
 * start (in v.n), so no separate frame stack is needed. */
typedef struct builder {
    vial_arena *a;
    vial_jmember *stk;
    size_t sn, scap;
    size_t frame; /* index of the first child of the innermost container */
    int depth;
    const char *key; /* pending object key (arena copy) */
    size_t klen;
    const char *err; /* our own reason for cancelling yajl */
    int err_status;
    /* Where the top-level value ended, as an offset in the text yajl was
     * given; SIZE_MAX while it has not ended during yajl_parse (then it
     * ends in yajl_complete_parse, at the end of the text). */
    yajl_handle h;
    int in_parse;
    size_t root_end;
} builder;

/* After each value: when it completes the top-level value, note where.
 * yajl lets an unterminated string after the value pass ("2\"", "{} \"ab"):
 * its trailing-garbage check peeks one token, and a cut-off string reads as
 * "need more input", also at the end. So parse() checks itself that only
 * whitespace follows the value. */
static int ended(builder *b)
{
    if (b->depth == 0 && b->in_parse)
        b->root_end = yajl_get_bytes_consumed(b->h);
    return 1;
}

static int stop(builder *b, const char *why, int status)
{
    b->err = why;
    b->err_status = status;
    return 0; /* tells yajl to cancel */
}

static int push(builder *b, vial_jv v)
{
    if (b->sn == b->scap) {
        size_t cap = b->scap ? b->scap * 2 : 64;
        vial_jmember *n = realloc(b->stk, cap * sizeof *n);
        if (!n)
            return stop(b, "out of memory", 500);
        b->stk = n;
        b->scap = cap;
    }
    vial_jmember *m = &b->stk[b->sn++];
    m->key = b->key;
    m->klen = b->klen;
    m->v = v;
    b->key = NULL;
    b->klen = 0;
    return ended(b);
}

static int cb_null(void *ctx)
{
    return push(ctx, (vial_jv){.type = VIAL_JNULL});
}

static int cb_bool(void *ctx, int v)
{
    return push(ctx, (vial_jv){.type = v ? VIAL_JTRUE : VIAL_JFALSE});
}

/* Numbers arrive as validated JSON number text. Integers that fit int64 are
 * kept exactly; fractions and exponents become the correctly rounded double,
 * as Python's json does for floats. A magnitude beyond the double range has
 * no JSON representation to send back, so it is rejected rather than turned
 * into Infinity. Integers beyond int64 are kept as their text (VIAL_JBIGINT):
 * rounding them to a double would silently change an id or an amount. */
static int cb_number(void *ctx, const char *s, size_t n)
{
    builder *b = ctx;
    int integral = !memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n);
    if (integral) {
        int neg = s[0] == '-';
        uint64_t x = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        size_t i = (size_t)neg;
        for (; i < n; i++) {
            unsigned d = (unsigned)(s[i] - '0');
            if (x > (lim - d) / 10)
                break;
            x = x * 10 + d;
        }
        if (i == n) {
            int64_t v = neg ? (int64_t)(0 - x) : (int64_t)x;
            return push(b, (vial_jv){.type = VIAL_JINT, .u.i = v});
        }
        char *t = vial_arena_strndup(b->a, s, n);
        if (!t)
            return stop(b, "out of memory", 500);
        return push(b, (vial_jv){.type = VIAL_JBIGINT, .n = n, .u.s = t});
    }
    char small[64], *z = small;
    if (n >= sizeof small && !(z = vial_arena_alloc(b->a, n + 1)))
        return stop(b, "out of memory", 500);
    memcpy(z, s, n);
    z[n] = 0;
    double d = vial_parse_double(z, NULL);
    if (isinf(d))
        return stop(b, "number out of range", 400);
    return push(b, (vial_jv){.type = VIAL_JREAL, .u.d = d});
}

static int cb_string(void *ctx, const unsigned char *s, size_t n)
{
    builder *b = ctx;
    char *p = vial_arena_strndup(b->a, (const char *)s, n);
    if (!p)
        return stop(b, "out of memory", 500);
    return push(b, (vial_jv){.type = VIAL_JSTRING, .n = n, .u.s = p});
}

static int cb_key(void *ctx, const unsigned char *s, size_t n)
{
    builder *b = ctx;
    /* yajl's pointer is only valid during this call */
    char *p = vial_arena_strndup(b->a, (const char *)s, n);
    if (!p)
        return stop(b, "out of memory", 500);
    b->key = p;
    b->klen = n;
    return 1;
}

static int cb_start(builder *b, vial_jtype type)
{
    if (b->depth == VIAL_JSON_MAX_DEPTH)
        return stop(b, "nesting deeper than 512 levels", 400);
    b->depth++;
    if (!push(b, (vial_jv){.type = type, .n = b->frame}))
        return 0;
    b->frame = b->sn;
    return 1;
}

static int cb_start_map(void *ctx)
{
    return cb_start(ctx, VIAL_JOBJECT);
}

static int cb_start_array(void *ctx)
{
    return cb_start(ctx, VIAL_JARRAY);
}

static int cb_end_array(void *ctx)
{
    builder *b = ctx;
    size_t start = b->frame, n = b->sn - start;
    vial_jv *self = &b->stk[start - 1].v;
    vial_jv *items = vial_arena_alloc(b->a, (n ? n : 1) * sizeof *items);
    if (!items)
        return stop(b, "out of memory", 500);
    for (size_t i = 0; i < n; i++)
        items[i] = b->stk[start + i].v;
    b->frame = self->n;
    self->n = n;
    self->u.items = items;
    b->sn = start;
    b->depth--;
    return ended(b);
}

/* Copies the members of an object, keeping one per key: a repeated key keeps
 * its first position and its last value (what Python's dict does with
 * json.loads). Large objects get an open-addressing index (positions + 1)
 * right after the members, used for the dedup here and by vial_jv_get. */
static int cb_end_map(void *ctx)
{
    builder *b = ctx;
    size_t start = b->frame, n = b->sn - start;
    vial_jv *self = &b->stk[start - 1].v;
    const vial_jmember *src = b->stk + start;
    uint32_t hbits = 0;
    if (n >= INDEX_MIN) {
        hbits = 4;
        while (((size_t)1 << hbits) < 2 * n)
            hbits++;
    }
    size_t slots = hbits ? (size_t)1 << hbits : 0;
    size_t bytes = (n ? n : 1) * sizeof(vial_jmember) + slots * sizeof(uint32_t);
    vial_jmember *m = vial_arena_alloc(b->a, bytes);
    if (!m)
        return stop(b, "out of memory", 500);
    size_t out = 0;
    if (!hbits) {
        for (size_t i = 0; i < n; i++) {
            size_t k = 0;
            while (k < out && !(m[k].klen == src[i].klen && !memcmp(m[k].key, src[i].key, src[i].klen)))
                k++;
            if (k < out)
                m[k].v = src[i].v;
            else
                m[out++] = src[i];
        }
    } else {
        uint32_t *ix = (uint32_t *)(void *)(m + n), mask = (uint32_t)slots - 1;
        memset(ix, 0, slots * sizeof *ix);
        for (size_t i = 0; i < n; i++) {
            uint32_t s = (uint32_t)siphash13(src[i].key, src[i].klen) & mask;
            for (;; s = (s + 1) & mask) {
                uint32_t k = ix[s];
                if (!k) {
                    ix[s] = (uint32_t)++out;
                    m[out - 1] = src[i];
                    break;
                }
                if (m[k - 1].klen == src[i].klen && !memcmp(m[k - 1].key, src[i].key, src[i].klen)) {
                    m[k - 1].v = src[i].v;
                    break;
                }
            }
        }
        if (out < n) {
            /* duplicates: the index must sit right after the members */
            memmove(m + out, ix, slots * sizeof *ix);
        }
    }
    b->frame = self->n;
    self->n = out;
    self->hbits = hbits;
    self->u.members = m;
    b->sn = start;
    b->depth--;
    return ended(b);
}

static const yajl_callbacks callbacks = {
    cb_null,   cb_bool, NULL, NULL, cb_number, cb_string, cb_start_map,
    cb_key,    cb_end_map, cb_start_array, cb_end_array,
};

/* --- vial_req_json ------------------------------------------------------------------ */

/* application/json or application/<x>+json, parameters allowed,
 * case-insensitive. */
static int json_media_type(const vial_http_field *h)
{
    if (!h)
        return 0;
    const char *v = h->value.p;
    size_t n = h->value.len;
    const char *semi = memchr(v, ';', n);
    if (semi)
        n = (size_t)(semi - v);
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n < 16 || vial_ascii_ncasecmp(v, "application/", 12))
        return 0;
    if (n == 16)
        return !vial_ascii_ncasecmp(v + 12, "json", 4);
    /* application/<x>+json: a non-empty x without '/' or whitespace */
    if (n < 18 || vial_ascii_ncasecmp(v + n - 5, "+json", 5))
        return 0;
    for (size_t i = 12; i < n - 5; i++)
        if (v[i] == '/' || v[i] == ' ' || v[i] == '\t')
            return 0;
    return 1;
}

static const char *located(vial_arena *a, const char *body, size_t off, const char *what)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (body[i] == '\n')
            line++, col = 1;
        else
            col++;
    }
    size_t cap = strlen(what) + 64;
    char *m = vial_arena_alloc(a, cap);
    if (!m)
        return what;
    snprintf(m, cap, "invalid JSON at line %zu, column %zu: %s", line, col, what);
    return m;
}

/* yajl's message ("lexical error: invalid char in json text.\n") without
 * its trailing period and newline. It lives in the arena, like every yajl
 * allocation. */
static const char *yajl_reason(yajl_handle h, vial_arena *a)
{
    unsigned char *e = yajl_get_error(h, 0, NULL, 0);
    if (!e)
        return "syntax error";
    size_t n = strlen((char *)e);
    while (n && (e[n - 1] == '\n' || e[n - 1] == ' ' || e[n - 1] == '.'))
        n--;
    const char *r = vial_arena_strndup(a, (char *)e, n);
    return r ? r : "syntax error";
}

/* Offset of the first non-whitespace byte in text[from..len), or len. */
static size_t trailing(const char *text, size_t from, size_t len)
{
    while (from < len && (text[from] == ' ' || text[from] == '\t' || text[from] == '\n' ||
                          text[from] == '\r'))
        from++;
    return from;
}

static int parse(vial_req *rq, struct vial_json_doc *doc)
{
    vial_arena *a = &rq->arena;
    const char *text = rq->body;
    size_t len = rq->body_len, skip = 0;
    /* A UTF-8 byte order mark is ignored (RFC 8259 §8.1 allows it; Flask
     * accepts it too, decoding bytes as utf-8-sig). */
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        skip = 3;
    size_t k = skip;
    while (k < len && (text[k] == ' ' || text[k] == '\t' || text[k] == '\n' || text[k] == '\r'))
        k++;
    if (k == len) {
        doc->error = "invalid JSON: empty body";
        return 400;
    }
    size_t off;
    const char *why;
    if (prevalidate((const unsigned char *)text + skip, len - skip, &off, &why) < 0) {
        doc->error = located(a, text, skip + off, why);
        return 400;
    }
    pthread_once(&sip_once, init_once);

    builder b = {.a = a, .root_end = SIZE_MAX};
    yajl_alloc_funcs af = {ya_malloc, ya_realloc, ya_free, a};
    yajl_handle h = yajl_alloc(&callbacks, &af, &b);
    if (!h) {
        doc->error = "out of memory";
        return 500;
    }
    /* UTF-8 was checked above, more strictly than yajl would. */
    yajl_config(h, yajl_dont_validate_strings, 1);
    int status = 0;
    b.h = h;
    b.in_parse = 1;
    yajl_status st = yajl_parse(h, (const unsigned char *)text + skip, len - skip);
    b.in_parse = 0;
    /* yajl counts the offending token as consumed: point at its last byte */
    size_t at = skip + yajl_get_bytes_consumed(h);
    if (at > skip)
        at--;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        at = len; /* complete_parse only fails for a text cut short */
    }
    if (st != yajl_status_ok) {
        if (b.err) {
            status = b.err_status;
            doc->error = status == 400 ? located(a, text, at, b.err) : b.err;
        } else {
            status = 400;
            doc->error = located(a, text, at, yajl_reason(h, a));
        }
    } else if (b.root_end != SIZE_MAX && (k = trailing(text, skip + b.root_end, len)) < len) {
        status = 400;
        doc->error = located(a, text, k, "trailing data after the JSON value");
    } else {
        vial_jv *root = vial_arena_alloc(a, sizeof *root);
        if (!root || b.sn != 1) {
            status = 500;
            doc->error = "out of memory";
        } else {
            *root = b.stk[0].v;
            doc->root = root;
        }
    }
    yajl_free(h);
    free(b.stk);
    return status;
}

int vial_req_json(vial_req *rq, const vial_jv **out)
{
    struct vial_json_doc *doc = vial_rqs(rq)->json;
    if (out)
        *out = NULL;
    if (!doc) {
        doc = vial_arena_alloc(&rq->arena, sizeof *doc);
        if (!doc)
            return -ENOMEM;
        memset(doc, 0, sizeof *doc);
        if (!json_media_type(vial_http_find_header(&rq->head, "Content-Type"))) {
            doc->status = 415;
            doc->error = "Content-Type is not application/json";
        } else {
            doc->status = parse(rq, doc);
        }
        vial_rqs(rq)->json = doc;
    }
    if (doc->status == 500)
        return -ENOMEM; /* parse() has no other 500 */
    if (doc->status)
        return vial_res_helper_error(&rq->res, doc->status, doc->error);
    if (out)
        *out = doc->root;
    return 0;
}

const char *vial_req_json_error(vial_req *rq)
{
    return vial_rqs(rq)->json ? vial_rqs(rq)->json->error : NULL;
}

/* --- accessors ------------------------------------------------------------------------
 * NULL is read as JSON null, so lookups chain without checks:
 * vial_jv_int(vial_jv_get(vial_jv_get(root, "a"), "b")). */

vial_jtype vial_jv_type(const vial_jv *v)
{
    return v ? (vial_jtype)v->type : VIAL_JNULL;
}

int64_t vial_jv_int(const vial_jv *v)
{
    if (!v)
        return 0;
    if (v->type == VIAL_JINT)
        return v->u.i;
    /* a real in range is truncated, like a C cast; others (a VIAL_JBIGINT
     * too: it is beyond int64 by definition) give 0 */
    if (v->type == VIAL_JREAL && v->u.d >= -9223372036854775808.0 && v->u.d < 9223372036854775808.0)
        return (int64_t)v->u.d;
    return 0;
}

double vial_jv_real(const vial_jv *v)
{
    if (!v)
        return 0;
    if (v->type == VIAL_JREAL)
        return v->u.d;
    if (v->type == VIAL_JINT)
        return (double)v->u.i;
    if (v->type == VIAL_JBIGINT)
        return vial_parse_double(v->u.s, NULL); /* the caller asked for a double */
    return 0;
}

const char *vial_jv_bigint(const vial_jv *v, size_t *len)
{
    if (!v || v->type != VIAL_JBIGINT) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->n;
    return v->u.s;
}

const char *vial_jv_str(const vial_jv *v, size_t *len)
{
    if (!v || v->type != VIAL_JSTRING) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->n;
    return v->u.s;
}

size_t vial_jv_len(const vial_jv *v)
{
    return v && (v->type == VIAL_JARRAY || v->type == VIAL_JOBJECT) ? v->n : 0;
}

const vial_jv *vial_jv_at(const vial_jv *v, size_t i)
{
    return v && v->type == VIAL_JARRAY && i < v->n ? &v->u.items[i] : NULL;
}

const vial_jv *vial_jv_get(const vial_jv *v, const char *key)
{
    if (!v || v->type != VIAL_JOBJECT || !key)
        return NULL;
    size_t kl = strlen(key);
    const vial_jmember *m = v->u.members;
    if (!v->hbits) {
        for (size_t i = 0; i < v->n; i++)
            if (m[i].klen == kl && !memcmp(m[i].key, key, kl))
                return &m[i].v;
        return NULL;
    }
    const uint32_t *ix = obj_index(v);
    uint32_t mask = ((uint32_t)1 << v->hbits) - 1;
    for (uint32_t s = (uint32_t)siphash13(key, kl) & mask;; s = (s + 1) & mask) {
        uint32_t k = ix[s];
        if (!k)
            return NULL;
        if (m[k - 1].klen == kl && !memcmp(m[k - 1].key, key, kl))
            return &m[k - 1].v;
    }
}

const char *vial_jv_key_at(const vial_jv *v, size_t i, size_t *len)
{
    if (!v || v->type != VIAL_JOBJECT || i >= v->n) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = v->u.members[i].klen;
    return v->u.members[i].key;
}

const vial_jv *vial_jv_value_at(const vial_jv *v, size_t i)
{
    return v && v->type == VIAL_JOBJECT && i < v->n ? &v->u.members[i].v : NULL;
}

/* --- writing a parsed value back -------------------------------------------------------
 * Iterative, like the parser: 512 levels of recursion would be a real cost
 * on a coroutine stack. The path to the current value is kept in a small
 * local array, moved to the request's arena past 64 levels. */

typedef struct wframe {
    const vial_jv *c;
    size_t i;
} wframe;

static void write_scalar(vial_json *j, const vial_jv *v)
{
    switch (v->type) {
    case VIAL_JFALSE:
        vial_json_bool(j, 0);
        break;
    case VIAL_JTRUE:
        vial_json_bool(j, 1);
        break;
    case VIAL_JINT:
        vial_json_int(j, v->u.i);
        break;
    case VIAL_JREAL:
        vial_json_double(j, v->u.d);
        break;
    case VIAL_JBIGINT:
        vial_json_raw_number(j, v->u.s, v->n);
        break;
    case VIAL_JSTRING:
        vial_json_strn(j, v->u.s, v->n);
        break;
    default:
        vial_json_null(j);
    }
}

void vial_json_value(vial_json *j, const vial_jv *v)
{
    if (!v || (v->type != VIAL_JARRAY && v->type != VIAL_JOBJECT)) {
        if (v)
            write_scalar(j, v);
        else
            vial_json_null(j);
        return;
    }
    wframe local[64], *st = local;
    size_t cap = 64, d = 0;
    vial_req *rq = j->rs ? j->rs->rq : NULL;
    v->type == VIAL_JARRAY ? vial_json_arr(j) : vial_json_obj(j);
    st[d++] = (wframe){v, 0};
    while (d) {
        wframe *f = &st[d - 1];
        if (f->i == f->c->n) {
            vial_json_end(j);
            d--;
            continue;
        }
        const vial_jv *x;
        if (f->c->type == VIAL_JOBJECT) {
            vial_json_keyn(j, f->c->u.members[f->i].key, f->c->u.members[f->i].klen);
            x = &f->c->u.members[f->i].v;
        } else {
            x = &f->c->u.items[f->i];
        }
        f->i++;
        if (x->type != VIAL_JARRAY && x->type != VIAL_JOBJECT) {
            write_scalar(j, x);
            continue;
        }
        if (d == cap) {
            wframe *n = rq ? vial_arena_alloc(&rq->arena, 2 * cap * sizeof *n) : NULL;
            if (!n) {
                j->err = -ENOMEM;
                return;
            }
            memcpy(n, st, d * sizeof *n);
            st = n;
            cap *= 2;
        }
        x->type == VIAL_JARRAY ? vial_json_arr(j) : vial_json_obj(j);
        st[d++] = (wframe){x, 0};
    }
}
