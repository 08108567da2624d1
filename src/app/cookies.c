/* Request cookies: the Cookie header parsed once, lazily (spec §4.2).
 *
 * Rules (Werkzeug's parse_cookie, which Flask uses): pairs separated by ';'
 * with optional whitespace; each split at its first '='; names and values
 * trimmed; a pair without '=' is a name with an empty value; an empty name
 * is skipped; a value in double quotes loses them; the first of a repeated
 * name wins (later ones are dropped, so count/at list each name once). No
 * percent-decoding: cookie values are opaque. Several Cookie fields (not
 * sent by HTTP/1.1 clients, but legal to receive) are read in order, as if
 * joined with "; " rather than the ", " that vial_req_header would use. */
#include "app/app.h"
#include "runtime/ascii.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

struct vial_cookies {
    vial_kv *kv;
    size_t *name_len; /* names may not contain NUL, but keep lengths for the index */
    unsigned n;
};

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int is_cookie_header(const vial_http_field *h)
{
    return h->name.len == 6 && !vial_ascii_ncasecmp(h->name.p, "Cookie", 6);
}

static uint32_t hash_bytes(const char *s, size_t n)
{
    /* FNV-1a: the header is at most 16 KiB, so even a crafted worst case
     * (all names colliding) only degrades to the quadratic scan the index
     * replaces. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Index of names already kept, used once there are more than a handful of
 * pairs (a short linear scan is cheaper below that). */
typedef struct name_index {
    uint32_t *slots; /* kv index + 1; 0 is empty */
    uint32_t mask;
} name_index;

/* 1 when name was kept already; else 0, with *slot (when indexed) where to
 * record it once it is added. */
static int seen(const struct vial_cookies *c, const name_index *ix, const char *name, size_t nl,
                uint32_t **slot)
{
    if (!ix->slots) {
        for (unsigned i = 0; i < c->n; i++)
            if (c->name_len[i] == nl && !memcmp(c->kv[i].name, name, nl))
                return 1;
        return 0;
    }
    for (uint32_t s = hash_bytes(name, nl) & ix->mask;; s = (s + 1) & ix->mask) {
        uint32_t k = ix->slots[s];
        if (!k) {
            *slot = &ix->slots[s];
            return 0;
        }
        if (c->name_len[k - 1] == nl && !memcmp(c->kv[k - 1].name, name, nl))
            return 1;
    }
}

static void parse(vial_req *rq, struct vial_cookies *c)
{
    unsigned cap = 0;
    for (unsigned i = 0; i < rq->head.nheaders; i++) {
        const vial_http_field *h = &rq->head.headers[i];
        if (!is_cookie_header(h))
            continue;
        cap++;
        for (size_t k = 0; k < h->value.len; k++)
            cap += h->value.p[k] == ';';
    }
    if (!cap)
        return;
    c->kv = vial_arena_alloc(&rq->arena, cap * sizeof *c->kv);
    c->name_len = vial_arena_alloc(&rq->arena, cap * sizeof *c->name_len);
    if (!c->kv || !c->name_len)
        return;
    name_index ix = {0};
    if (cap > 16) {
        uint32_t slots = 32;
        while (slots < 2 * cap)
            slots *= 2;
        ix.slots = vial_arena_alloc(&rq->arena, slots * sizeof *ix.slots);
        if (ix.slots) {
            memset(ix.slots, 0, slots * sizeof *ix.slots);
            ix.mask = slots - 1;
        }
    }
    for (unsigned i = 0; i < rq->head.nheaders; i++) {
        const vial_http_field *h = &rq->head.headers[i];
        if (!is_cookie_header(h))
            continue;
        const char *p = h->value.p, *end = p + h->value.len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *e = semi ? semi : end;
            const char *s = p;
            p = semi ? semi + 1 : end;
            const char *eq = memchr(s, '=', (size_t)(e - s));
            const char *ne = eq ? eq : e;
            const char *v = eq ? eq + 1 : e, *ve = e;
            while (s < ne && is_ows(*s))
                s++;
            while (ne > s && is_ows(ne[-1]))
                ne--;
            if (ne == s)
                continue;
            while (v < ve && is_ows(*v))
                v++;
            while (ve > v && is_ows(ve[-1]))
                ve--;
            if (ve - v >= 2 && *v == '"' && ve[-1] == '"')
                v++, ve--;
            size_t nl = (size_t)(ne - s);
            uint32_t *slot = NULL;
            if (seen(c, &ix, s, nl, &slot))
                continue;
            char *name = vial_arena_strndup(&rq->arena, s, nl);
            char *value = vial_arena_strndup(&rq->arena, v, (size_t)(ve - v));
            if (!name || !value)
                return; /* out of memory: keep what was parsed */
            if (slot)
                *slot = c->n + 1;
            c->kv[c->n].name = name;
            c->kv[c->n].value = value;
            c->name_len[c->n] = nl;
            c->n++;
        }
    }
}

static struct vial_cookies *cookies(vial_req *rq)
{
    if (vial_rqs(rq)->cookies)
        return vial_rqs(rq)->cookies;
    static struct vial_cookies none; /* out of memory: no cookies, retried later */
    struct vial_cookies *c = vial_arena_alloc(&rq->arena, sizeof *c);
    if (!c)
        return &none;
    memset(c, 0, sizeof *c);
    parse(rq, c);
    vial_rqs(rq)->cookies = c;
    return c;
}

const char *vial_req_cookie(vial_req *rq, const char *name)
{
    struct vial_cookies *c = cookies(rq);
    for (unsigned i = 0; i < c->n; i++)
        if (!strcmp(c->kv[i].name, name))
            return c->kv[i].value;
    return NULL;
}

unsigned vial_req_cookie_count(vial_req *rq)
{
    return cookies(rq)->n;
}

int vial_req_cookie_at(vial_req *rq, unsigned i, const char **name, const char **value)
{
    struct vial_cookies *c = cookies(rq);
    if (i >= c->n)
        return -ERANGE;
    if (name)
        *name = c->kv[i].name;
    if (value)
        *value = c->kv[i].value;
    return 0;
}
