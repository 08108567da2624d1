/* Jinja's builtin filters and tests, and the Python string/dict methods
 * templates call ("a,b".split(","), d.items()). Each follows the Jinja 3
 * implementation's observable behaviour (Markup in, Markup out; code points,
 * not bytes, for lengths and slicing). */
#include "template/tmpl.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRY(x) do { int r_ = (x); if (r_ != 0) return r_; } while (0)
#define OOM(st) rs_fail(st, -ENOMEM, "out of memory")
#define RERR(st, ...) rs_fail(st, -ERANGE, __VA_ARGS__)

typedef struct fargs {
    int n, nkw;
    tv *v, *kwn, *kwv;
} fargs;

/* argument i, or keyword name, or the default */
static tv arg(fargs *a, int i, const char *name, tv dflt)
{
    if (i >= 0 && i < a->n)
        return a->v[i];
    size_t nl = strlen(name);
    for (int k = 0; k < a->nkw; k++)
        if (a->kwn[k].len == nl && memcmp(a->kwn[k].u.s, name, nl) == 0)
            return a->kwv[k];
    return dflt;
}

#define FILTER(name) static int f_##name(rstate *st, tv v, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out)
#define A fargs fa = {nargs, nkw, args, kwn, kwv}; (void)fa
#define NONE TV(TV_NONE)

static size_t u8len(unsigned char c) { return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4; }

static int64_t cp_count(tv s)
{
    int64_t n = 0;
    for (uint32_t i = 0; i < s.len; i += (uint32_t)u8len((unsigned char)s.u.s[i]))
        n++;
    return n;
}

/* byte offset of code point k (clamped) */
static uint32_t cp_off(tv s, int64_t k)
{
    uint32_t i = 0;
    while (k-- > 0 && i < s.len)
        i += (uint32_t)u8len((unsigned char)s.u.s[i]);
    return i > s.len ? s.len : i;
}

static tv mkstr(const char *s, size_t n, bool safe)
{
    return safe ? tv_safe(s, n) : tv_str(s, n);
}

static tv sbuf_val(sbuf *b, bool safe)
{
    return mkstr(b->o->data ? b->o->data : "", b->o->len, safe);
}

/* soft_str: strings stay (Markup stays Markup), the rest become str() */
static tv soft_str(rstate *st, tv v) { return tv_to_str(st->a, v); }

/* --- case mapping (ASCII, Latin-1, Greek, Cyrillic) ------------------------------ */

static uint32_t dec(const char *s, uint32_t n, uint32_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    size_t l = u8len(c);
    if (*i + l > n) {
        (*i)++;
        return c;
    }
    uint32_t cp = l == 1 ? c : l == 2 ? c & 0x1f : l == 3 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; k < l; k++)
        cp = cp << 6 | ((unsigned char)s[*i + k] & 0x3f);
    *i += (uint32_t)l;
    return cp;
}

static int enc(vial_tmpl_out *o, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) b[0] = (char)cp, n = 1;
    else if (cp < 0x800) b[0] = (char)(0xc0 | cp >> 6), b[1] = (char)(0x80 | (cp & 63)), n = 2;
    else if (cp < 0x10000) b[0] = (char)(0xe0 | cp >> 12), b[1] = (char)(0x80 | ((cp >> 6) & 63)), b[2] = (char)(0x80 | (cp & 63)), n = 3;
    else b[0] = (char)(0xf0 | cp >> 18), b[1] = (char)(0x80 | ((cp >> 12) & 63)), b[2] = (char)(0x80 | ((cp >> 6) & 63)), b[3] = (char)(0x80 | (cp & 63)), n = 4;
    return sb_put(o, b, n);
}

static uint32_t to_upper(uint32_t c)
{
    if (c >= 'a' && c <= 'z') return c - 32;
    if (c < 0x80) return c;
    if ((c >= 0xe0 && c <= 0xfe && c != 0xf7)) return c - 32;
    if (c == 0xff) return 0x178;
    if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17f) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
        if (odd_upper) return (c & 1) ? c : c - 1;
        return (c & 1) ? c - 1 : c;
    }
    if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
    if (c == 0x3c2) return 0x3a3;
    if (c >= 0x430 && c <= 0x44f) return c - 32;
    if (c >= 0x450 && c <= 0x45f) return c - 80;
    return c;
}

static uint32_t to_lower(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0x80) return c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
    if (c == 0x178) return 0xff;
    if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17f) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
        if (odd_upper) return (c & 1) ? c + 1 : c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
    if (c >= 0x410 && c <= 0x42f) return c + 32;
    if (c >= 0x400 && c <= 0x40f) return c + 80;
    return c;
}

static bool is_alpha_cp(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xc0 && c != 0xd7 && c != 0xf7);
}
static bool is_word_cp(uint32_t c) { return is_alpha_cp(c) || (c >= '0' && c <= '9') || c == '_' || c == 0xaa || c == 0xb5 || c == 0xba; }
static bool is_space_cp(uint32_t c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000; }

enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE, CASE_STRTITLE };

static int change_case(rstate *st, tv s, int mode, tv *out)
{
    sbuf b;
    sb_init(&b, st->a);
    bool start = true;
    for (uint32_t i = 0; i < s.len;) {
        uint32_t c = dec(s.u.s, s.len, &i), r;
        bool prev_start = start;
        switch (mode) {
        case CASE_UPPER: r = to_upper(c); break;
        case CASE_LOWER: r = to_lower(c); break;
        case CASE_CAPITALIZE: r = start ? to_upper(c) : to_lower(c); start = false; break;
        case CASE_TITLE: /* Jinja: words begin after runs of - whitespace ( { [ < */
            r = start ? to_upper(c) : to_lower(c);
            start = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_space_cp(c);
            break;
        default: /* str.title(): after any non-letter */
            r = start ? to_upper(c) : to_lower(c);
            start = !is_alpha_cp(c);
            break;
        }
        if (c == 0xdf && r == c && mode != CASE_LOWER && (mode == CASE_UPPER || prev_start)) {
            /* ß upper-cases to SS (title case: Ss) */
            if (sb_put(b.o, mode == CASE_UPPER ? "SS" : "Ss", 2))
                return OOM(st);
            continue;
        }
        if (enc(b.o, r))
            return OOM(st);
    }
    *out = sbuf_val(&b, tv_is_safe(s));
    return 0;
}

FILTER(upper) { return change_case(st, soft_str(st, v), CASE_UPPER, out); }
FILTER(lower) { return change_case(st, soft_str(st, v), CASE_LOWER, out); }
FILTER(capitalize) { return change_case(st, soft_str(st, v), CASE_CAPITALIZE, out); }
FILTER(title)
{
    /* Jinja joins the words into a plain str: Markup is lost */
    TRY(change_case(st, soft_str(st, v), CASE_TITLE, out));
    out->flags = 0;
    return 0;
}

static bool in_chars(uint32_t c, tv chars)
{
    if (chars.kind != TV_STR)
        return is_space_cp(c);
    for (uint32_t i = 0; i < chars.len;)
        if (dec(chars.u.s, chars.len, &i) == c)
            return true;
    return false;
}

static tv strip(tv s, tv chars, bool left, bool right)
{
    uint32_t a = 0, b = s.len;
    if (left)
        while (a < b) {
            uint32_t i = a, c = dec(s.u.s, s.len, &i);
            if (!in_chars(c, chars))
                break;
            a = i;
        }
    if (right)
        while (b > a) {
            uint32_t p = b - 1;
            while (p > a && ((unsigned char)s.u.s[p] & 0xc0) == 0x80)
                p--;
            uint32_t i = p, c = dec(s.u.s, s.len, &i);
            if (!in_chars(c, chars))
                break;
            b = p;
        }
    return mkstr(s.u.s + a, b - a, tv_is_safe(s));
}

FILTER(trim) { A; *out = strip(soft_str(st, v), arg(&fa, 0, "chars", NONE), true, true); return 0; }

FILTER(escape) { *out = markup_escape(st, v); return 0; }
FILTER(safe)
{
    tv s = soft_str(st, v);
    *out = tv_safe(s.u.s, s.len);
    return 0;
}
FILTER(string) { *out = soft_str(st, v); return 0; }

FILTER(default)
{
    A;
    tv d = arg(&fa, 0, "default_value", tv_str("", 0));
    bool boolean = tv_truth(arg(&fa, 1, "boolean", tv_bool(false)));
    *out = (v.kind == TV_UNDEF || (boolean && !tv_truth(v))) ? d : v;
    return 0;
}

static int length_of(rstate *st, tv v, int64_t *n)
{
    switch (v.kind) {
    case TV_STR: *n = cp_count(v); return 0;
    case TV_LIST: *n = tv_list(v)->n; return 0;
    case TV_DICT: case TV_MODULE: *n = tv_dict(v)->n; return 0;
    case TV_UNDEF: *n = 0; return 0;
    default: return RERR(st, "object of type '%s' has no len()", tv_type_name(v));
    }
}

FILTER(length)
{
    int64_t n = 0;
    TRY(length_of(st, v, &n));
    *out = tv_int(n);
    return 0;
}

FILTER(list)
{
    tlist *l;
    TRY(iter_list(st, v, &l));
    tv r = tv_list_new(st->a, l->n);
    if (r.kind != TV_LIST)
        return OOM(st);
    if (l->n)
        memcpy(tv_list(r)->v, l->v, l->n * sizeof(tv));
    tv_list(r)->n = l->n;
    *out = r;
    return 0;
}

FILTER(first)
{
    tlist *l;
    TRY(iter_list(st, v, &l));
    *out = l->n ? l->v[0] : TV(TV_UNDEF);
    return 0;
}

FILTER(last)
{
    tlist *l;
    if (v.kind != TV_LIST && v.kind != TV_STR && v.kind != TV_UNDEF && v.kind != TV_DICT)
        return RERR(st, "'%s' object is not reversible", tv_type_name(v));
    TRY(iter_list(st, v, &l));
    *out = l->n ? l->v[l->n - 1] : TV(TV_UNDEF);
    return 0;
}

static tv join_list(rstate *st, tlist *l, bool safe)
{
    sbuf b;
    sb_init(&b, st->a);
    for (uint32_t i = 0; i < l->n; i++)
        if (sb_put(b.o, l->v[i].u.s, l->v[i].len))
            return TV(TV_UNDEF);
    return sbuf_val(&b, safe);
}

FILTER(reverse)
{
    if (v.kind == TV_STR) {
        tlist *l;
        TRY(iter_list(st, v, &l));
        for (uint32_t i = 0; i < l->n / 2; i++) {
            tv t = l->v[i];
            l->v[i] = l->v[l->n - 1 - i];
            l->v[l->n - 1 - i] = t;
        }
        *out = join_list(st, l, tv_is_safe(v));
        return 0;
    }
    tlist *l;
    TRY(iter_list(st, v, &l));
    tv r = tv_list_new(st->a, l->n);
    if (r.kind != TV_LIST)
        return OOM(st);
    for (uint32_t i = 0; i < l->n; i++)
        tv_list(r)->v[i] = l->v[l->n - 1 - i];
    tv_list(r)->n = l->n;
    *out = r;
    return 0;
}

/* attribute paths "a.b.0" as make_attrgetter does */
static int attr_path(rstate *st, tv obj, tv path, tv *out)
{
    if (path.kind == TV_INT)
        return get_item(st, obj, path, out);
    if (path.kind != TV_STR)
        return RERR(st, "attribute must be a string");
    const char *p = path.u.s, *e = p + path.len;
    *out = obj;
    while (p <= e) {
        const char *d = memchr(p, '.', (size_t)(e - p));
        if (!d)
            d = e;
        tv key = tv_str(p, (size_t)(d - p));
        bool digits = d > p;
        int64_t iv = 0;
        for (const char *c = p; c < d; c++) {
            if (*c < '0' || *c > '9') { digits = false; break; }
            iv = iv > 100000000000000LL ? iv : iv * 10 + (*c - '0');
        }
        tv cur = *out;
        TRY(get_item(st, cur, digits ? tv_int(iv) : key, out));
        p = d + 1;
    }
    return 0;
}

static tv fold(rstate *st, tv v, bool case_sensitive)
{
    if (case_sensitive || v.kind != TV_STR)
        return v;
    tv r;
    if (change_case(st, v, CASE_LOWER, &r) != 0)
        return v;
    return r;
}

typedef struct skey {
    tv key, item;
} skey;

typedef struct sortctx {
    bool err;
    bool rev;
} sortctx;

static int cmp_skey(sortctx *c, const skey *x, const skey *y)
{
    int r = tv_cmp(x->key, y->key);
    if (r == -2) {
        c->err = true;
        return 0;
    }
    if (r == 2)
        r = 0;
    return c->rev ? -r : r;
}

/* a stable merge sort (Python's sort is stable; qsort is not) */
static void msort(sortctx *c, skey *v, skey *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    msort(c, v, tmp, h);
    msort(c, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = cmp_skey(c, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static int sort_items(rstate *st, skey *k, size_t n, bool rev)
{
    skey *tmp = vial_arena_alloc(st->a, (n + 1) * sizeof *tmp);
    if (!tmp)
        return OOM(st);
    sortctx c = {false, rev};
    msort(&c, k, tmp, n);
    if (c.err) {
        for (size_t i = 1; i < n; i++)
            if (tv_cmp(k[i].key, k[0].key) == -2)
                return RERR(st, "'<' not supported between instances of '%s' and '%s'",
                            tv_type_name(k[i].key), tv_type_name(k[0].key));
        return RERR(st, "'<' not supported between these values");
    }
    return 0;
}

static int keyed(rstate *st, tv v, tv attribute, bool cs, skey **out, uint32_t *n)
{
    tlist *l;
    TRY(iter_list(st, v, &l));
    skey *k = vial_arena_alloc(st->a, (l->n + 1) * sizeof *k);
    if (!k)
        return OOM(st);
    for (uint32_t i = 0; i < l->n; i++) {
        k[i].item = l->v[i];
        tv key = l->v[i];
        if (attribute.kind != TV_NONE && attribute.kind != TV_UNDEF)
            TRY(attr_path(st, l->v[i], attribute, &key));
        k[i].key = fold(st, key, cs);
    }
    *out = k;
    *n = l->n;
    return 0;
}

static tv items_list(rstate *st, skey *k, uint32_t n)
{
    tv r = tv_list_new(st->a, n);
    if (r.kind != TV_LIST)
        return r;
    for (uint32_t i = 0; i < n; i++)
        tv_list(r)->v[i] = k[i].item;
    tv_list(r)->n = n;
    return r;
}

FILTER(sort)
{
    A;
    bool rev = tv_truth(arg(&fa, 0, "reverse", tv_bool(false)));
    bool cs = tv_truth(arg(&fa, 1, "case_sensitive", tv_bool(false)));
    tv attr = arg(&fa, 2, "attribute", NONE);
    skey *k;
    uint32_t n;
    TRY(keyed(st, v, attr, cs, &k, &n));
    TRY(sort_items(st, k, n, rev));
    *out = items_list(st, k, n);
    return out->kind == TV_LIST ? 0 : OOM(st);
}

static tv pair(rstate *st, tv a, tv b)
{
    tv t = tv_list_new(st->a, 2);
    if (t.kind == TV_LIST) {
        tv_list(t)->v[0] = a;
        tv_list(t)->v[1] = b;
        tv_list(t)->n = 2;
        t.flags = VIAL_TMPL_TUPLE;
    }
    return t;
}

FILTER(items)
{
    if (v.kind == TV_UNDEF) {
        *out = tv_list_new(st->a, 0);
        return 0;
    }
    if (v.kind != TV_DICT)
        return RERR(st, "Can only get item pairs from a mapping.");
    tdict *d = v.u.p;
    tv r = tv_list_new(st->a, d->n);
    if (r.kind != TV_LIST)
        return OOM(st);
    for (uint32_t i = 0; i < d->n; i++)
        tv_list(r)->v[i] = pair(st, d->k[i], d->v[i]);
    tv_list(r)->n = d->n;
    *out = r;
    return 0;
}

FILTER(dictsort)
{
    A;
    bool cs = tv_truth(arg(&fa, 0, "case_sensitive", tv_bool(false)));
    tv by = arg(&fa, 1, "by", tv_str("key", 3));
    bool rev = tv_truth(arg(&fa, 2, "reverse", tv_bool(false)));
    if (v.kind != TV_DICT)
        return RERR(st, "dictsort: a mapping is required");
    int pos;
    if (by.kind == TV_STR && by.len == 3 && memcmp(by.u.s, "key", 3) == 0)
        pos = 0;
    else if (by.kind == TV_STR && by.len == 5 && memcmp(by.u.s, "value", 5) == 0)
        pos = 1;
    else
        return RERR(st, "You can only sort by either \"key\" or \"value\"");
    tdict *d = v.u.p;
    skey *k = vial_arena_alloc(st->a, (d->n + 1) * sizeof *k);
    if (!k)
        return OOM(st);
    for (uint32_t i = 0; i < d->n; i++) {
        k[i].item = pair(st, d->k[i], d->v[i]);
        k[i].key = fold(st, pos ? d->v[i] : d->k[i], cs);
    }
    TRY(sort_items(st, k, d->n, rev));
    *out = items_list(st, k, d->n);
    return 0;
}

FILTER(unique)
{
    A;
    bool cs = tv_truth(arg(&fa, 0, "case_sensitive", tv_bool(false)));
    tv attr = arg(&fa, 1, "attribute", NONE);
    skey *k;
    uint32_t n;
    TRY(keyed(st, v, attr, cs, &k, &n));
    tv r = tv_list_new(st->a, n);
    if (r.kind != TV_LIST)
        return OOM(st);
    for (uint32_t i = 0; i < n; i++) {
        if (k[i].key.kind == TV_DICT || (k[i].key.kind == TV_LIST && !(k[i].key.flags & VIAL_TMPL_TUPLE)))
            return RERR(st, "unhashable type: '%s'", tv_type_name(k[i].key));
        bool seen = false;
        for (uint32_t j = 0; j < i && !seen; j++)
            seen = tv_eq(k[j].key, k[i].key);
        if (!seen)
            tv_list(r)->v[tv_list(r)->n++] = k[i].item;
    }
    *out = r;
    return 0;
}

static int minmax(rstate *st, tv v, fargs *fa, int sign, tv *out)
{
    bool cs = tv_truth(arg(fa, 0, "case_sensitive", tv_bool(false)));
    tv attr = arg(fa, 1, "attribute", NONE);
    skey *k;
    uint32_t n;
    TRY(keyed(st, v, attr, cs, &k, &n));
    if (n == 0) {
        *out = TV(TV_UNDEF);
        return 0;
    }
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++) {
        int c = tv_cmp(k[i].key, k[best].key);
        if (c == -2)
            return RERR(st, "'<' not supported between instances of '%s' and '%s'",
                        tv_type_name(k[i].key), tv_type_name(k[best].key));
        if (c != 2 && c * sign > 0)
            best = i;
    }
    *out = k[best].item;
    return 0;
}

FILTER(min) { A; return minmax(st, v, &fa, -1, out); }
FILTER(max) { A; return minmax(st, v, &fa, 1, out); }

static int add_values(rstate *st, tv a, tv b, tv *out);

FILTER(sum)
{
    A;
    tv attr = arg(&fa, 0, "attribute", NONE);
    tv acc = arg(&fa, 1, "start", tv_int(0));
    tlist *l;
    TRY(iter_list(st, v, &l));
    for (uint32_t i = 0; i < l->n; i++) {
        tv x = l->v[i];
        if (attr.kind != TV_NONE)
            TRY(attr_path(st, x, attr, &x));
        TRY(add_values(st, acc, x, &acc));
    }
    *out = acc;
    return 0;
}

static int add_values(rstate *st, tv a, tv b, tv *out)
{
    if (!tv_is_num(a) || !tv_is_num(b))
        return RERR(st, "unsupported operand type(s) for +: '%s' and '%s'", tv_type_name(a), tv_type_name(b));
    return arith(st, OP_ADD, a, b, out);
}

FILTER(abs)
{
    if (v.kind == TV_INT || v.kind == TV_BOOL) {
        if (v.u.i == INT64_MIN)
            return RERR(st, "integer overflow");
        *out = tv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    } else if (v.kind == TV_FLOAT)
        *out = tv_float(fabs(v.u.d));
    else
        return RERR(st, "bad operand type for abs(): '%s'", tv_type_name(v));
    return 0;
}

/* Python int(str, base): optional sign, digits with single underscores */
static bool parse_int(tv s, int base, int64_t *out)
{
    tv t = strip(s, TV(TV_NONE), true, true);
    const char *p = t.u.s, *e = p + t.len;
    bool neg = false;
    if (p < e && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    if ((base == 16 || base == 8 || base == 2) && e - p > 2 && p[0] == '0' &&
        ((base == 16 && (p[1] == 'x' || p[1] == 'X')) || (base == 8 && (p[1] == 'o' || p[1] == 'O')) ||
         (base == 2 && (p[1] == 'b' || p[1] == 'B'))))
        p += 2;
    if (p >= e)
        return false;
    int64_t v = 0;
    bool prev_us = true;
    for (; p < e; p++) {
        if (*p == '_') {
            if (prev_us)
                return false;
            prev_us = true;
            continue;
        }
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'z' ? *p - 'a' + 10
              : *p >= 'A' && *p <= 'Z' ? *p - 'A' + 10 : 99;
        if (d >= base)
            return false;
        if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v))
            return false;
        prev_us = false;
    }
    if (prev_us)
        return false;
    *out = neg ? -v : v;
    return true;
}

static bool parse_float(tv s, double *out)
{
    tv t = strip(s, TV(TV_NONE), true, true);
    char buf[128];
    size_t n = 0;
    for (uint32_t i = 0; i < t.len; i++) {
        if (t.u.s[i] == '_')
            continue;
        if (n + 1 >= sizeof buf)
            return false;
        buf[n++] = t.u.s[i];
    }
    buf[n] = 0;
    if (!n)
        return false;
    /* accept Python's spellings only: digits, '.', exponent, inf/nan */
    for (size_t i = 0; i < n; i++)
        if (buf[i] == 'x' || buf[i] == 'X' || buf[i] == 'p' || buf[i] == 'P')
            return false;
    char *end;
    double d = strtod(buf, &end);
    if (*end)
        return false;
    const char *q = buf + (buf[0] == '+' || buf[0] == '-');
    if ((q[0] == 'i' || q[0] == 'I' || q[0] == 'n' || q[0] == 'N') &&
        strcasecmp(q, "inf") != 0 && strcasecmp(q, "infinity") != 0 && strcasecmp(q, "nan") != 0)
        return false;
    *out = d;
    return true;
}

FILTER(int)
{
    A;
    tv dflt = arg(&fa, 0, "default", tv_int(0));
    tv basev = arg(&fa, 1, "base", tv_int(10));
    int64_t i;
    if (v.kind == TV_UNDEF) /* int(Undefined) raises */
        return RERR(st, "'%.*s' is undefined", (int)v.len, v.u.s ? v.u.s : "");
    switch (v.kind) {
    case TV_INT: case TV_BOOL: *out = tv_int(v.u.i); return 0;
    case TV_BIGINT: *out = v; return 0;
    case TV_FLOAT:
        if (tv_to_int(v, &i) == 0) { *out = tv_int(i); return 0; }
        *out = dflt;
        return 0;
    case TV_STR: {
        double d;
        if (parse_int(v, (int)basev.u.i, &i))
            *out = tv_int(i);
        else if (parse_float(v, &d) && tv_to_int(tv_float(d), &i) == 0)
            *out = tv_int(i);
        else
            *out = dflt;
        return 0;
    }
    default:
        *out = dflt;
        return 0;
    }
}

FILTER(float)
{
    A;
    tv dflt = arg(&fa, 0, "default", tv_float(0.0));
    double d;
    if (v.kind == TV_UNDEF) /* float(Undefined) raises */
        return RERR(st, "'%.*s' is undefined", (int)v.len, v.u.s ? v.u.s : "");
    if (v.kind == TV_INT || v.kind == TV_BOOL || v.kind == TV_FLOAT || v.kind == TV_BIGINT)
        *out = tv_float(tv_num(v));
    else if (v.kind == TV_STR && parse_float(v, &d))
        *out = tv_float(d);
    else
        *out = dflt;
    return 0;
}

/* Python's round(x, n): half to even on the exact binary value, which is
 * what printf's correctly rounded %.*f does */
static double py_round(double x, int64_t nd)
{
    if (!isfinite(x))
        return x;
    if (nd > 300)
        return x;
    if (nd < 0) {
        double p = pow(10, (double)-nd);
        return nearbyint(x / p) * p;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%.*f", (int)nd, x);
    return strtod(buf, NULL);
}

FILTER(round)
{
    A;
    tv prec = arg(&fa, 0, "precision", tv_int(0));
    tv method = arg(&fa, 1, "method", tv_str("common", 6));
    int64_t p;
    if (tv_to_int(prec, &p) != 0)
        return RERR(st, "precision must be an integer");
    if (!tv_is_num(v))
        return RERR(st, "type %s doesn't define __round__ method", tv_type_name(v));
    if (method.kind != TV_STR)
        return RERR(st, "method must be 'common', 'ceil' or 'floor'");
    if (method.len == 6 && memcmp(method.u.s, "common", 6) == 0) {
        if (v.kind == TV_BIGINT && p >= 0) {
            *out = v;
            return 0;
        }
        if (v.kind == TV_INT || v.kind == TV_BOOL) {
            if (p >= 0) {
                *out = tv_int(v.u.i);
                return 0;
            }
            double r = py_round((double)v.u.i, p);
            /* Rounding near INT64_MAX can leave int64's range: keep the
             * double there rather than an undefined cast. */
            *out = r < 9.2233720368547758e18 && r >= -9.2233720368547758e18 ? tv_int((int64_t)r) : tv_float(r);
            return 0;
        }
        *out = tv_float(py_round(tv_num(v), p));
        return 0;
    }
    bool ceil_m = method.len == 4 && memcmp(method.u.s, "ceil", 4) == 0;
    bool floor_m = method.len == 5 && memcmp(method.u.s, "floor", 5) == 0;
    if (!ceil_m && !floor_m)
        return RERR(st, "method must be common, ceil or floor");
    double m = pow(10, (double)p), x = tv_num(v) * m;
    *out = tv_float((ceil_m ? ceil(x) : floor(x)) / m);
    return 0;
}

FILTER(format)
{
    A;
    tv s = soft_str(st, v);
    if (nkw && nargs)
        return RERR(st, "can't handle positional and keyword arguments at the same time");
    if (nkw) {
        tv d = tv_dict_new(st->a, (uint32_t)nkw);
        for (int i = 0; i < nkw; i++)
            if (tv_dict_put(st->a, d, kwn[i], kwv[i]))
                return OOM(st);
        return py_format(st, s, -1, &d, out);
    }
    return py_format(st, s, nargs, args, out);
}

FILTER(truncate)
{
    A;
    if (v.kind == TV_LIST || v.kind == TV_DICT || v.kind == TV_UNDEF) {
        /* len() works on these: short ones come back unchanged */
        int64_t len = 0, length = 255, leeway = 5;
        TRY(length_of(st, v, &len));
        tv_to_int(arg(&fa, 0, "length", tv_int(255)), &length);
        tv lw0 = arg(&fa, 3, "leeway", NONE);
        if (lw0.kind != TV_NONE)
            tv_to_int(lw0, &leeway);
        if (len <= length + leeway) {
            *out = v;
            return 0;
        }
        return RERR(st, "truncate: only strings can be shortened");
    }
    if (v.kind != TV_STR)
        return RERR(st, "object of type '%s' has no len()", tv_type_name(v));
    tv s = v;
    int64_t length = 255, leeway = 5;
    tv_to_int(arg(&fa, 0, "length", tv_int(255)), &length);
    bool killwords = tv_truth(arg(&fa, 1, "killwords", tv_bool(false)));
    tv end = arg(&fa, 2, "end", tv_str("...", 3));
    tv lw = arg(&fa, 3, "leeway", NONE);
    if (lw.kind != TV_NONE)
        tv_to_int(lw, &leeway);
    int64_t n = cp_count(s), el = cp_count(end);
    if (length < el)
        return RERR(st, "expected length >= %" PRId64 ", got %" PRId64, el, length);
    if (leeway < 0)
        return RERR(st, "expected leeway >= 0, got %" PRId64, leeway);
    if (n <= length + leeway) {
        *out = s;
        return 0;
    }
    uint32_t cut = cp_off(s, length - el);
    tv head = mkstr(s.u.s, cut, false);
    if (!killwords) {
        const char *sp = NULL;
        for (uint32_t i = cut; i-- > 0;)
            if (s.u.s[i] == ' ') {
                sp = s.u.s + i;
                break;
            }
        if (sp)
            head.len = (uint32_t)(sp - s.u.s);
    }
    /* Markup slices stay Markup, and Markup + end escapes end */
    bool safe = tv_is_safe(s);
    if (safe)
        end = markup_escape(st, end);
    else
        end = soft_str(st, end);
    sbuf b;
    sb_init(&b, st->a);
    if (sb_put(b.o, head.u.s, head.len) || sb_put(b.o, end.u.s, end.len))
        return OOM(st);
    *out = sbuf_val(&b, safe);
    return 0;
}

FILTER(wordcount)
{
    tv s = soft_str(st, v);
    int64_t n = 0;
    bool in = false;
    for (uint32_t i = 0; i < s.len;) {
        uint32_t c = dec(s.u.s, s.len, &i);
        bool w = is_word_cp(c);
        if (w && !in)
            n++;
        in = w;
    }
    *out = tv_int(n);
    return 0;
}

/* unescapes the HTML entities markupsafe's striptags resolves */
static int html_unescape(sbuf *b, const char *s, size_t n)
{
    static const struct { const char *name; uint32_t cp; } ents[] = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", 0xa0},
        {"copy", 0xa9}, {"reg", 0xae}, {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
        {"laquo", 0xab}, {"raquo", 0xbb}, {"euro", 0x20ac},
    };
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '&') {
            size_t j = i + 1;
            if (j < n && s[j] == '#') {
                j++;
                bool hex = j < n && (s[j] == 'x' || s[j] == 'X');
                if (hex) j++;
                uint32_t cp = 0;
                size_t d0 = j;
                while (j < n && (hex ? (s[j] >= '0' && s[j] <= '9') || ((s[j] | 32) >= 'a' && (s[j] | 32) <= 'f') : (s[j] >= '0' && s[j] <= '9')) && cp < 0x110000) {
                    cp = cp * (hex ? 16 : 10) + (uint32_t)(s[j] <= '9' ? s[j] - '0' : (s[j] | 32) - 'a' + 10);
                    j++;
                }
                if (j > d0 && cp > 0 && cp < 0x110000 && !(cp >= 0xd800 && cp < 0xe000)) {
                    if (j < n && s[j] == ';') j++;
                    if (enc(b->o, cp)) return -ENOMEM;
                    i = j - 1;
                    continue;
                }
            } else {
                bool done = false;
                for (size_t e = 0; e < sizeof ents / sizeof ents[0] && !done; e++) {
                    size_t l = strlen(ents[e].name);
                    if (j + l < n + 1 && memcmp(s + j, ents[e].name, l) == 0 && j + l < n && s[j + l] == ';') {
                        if (enc(b->o, ents[e].cp)) return -ENOMEM;
                        i = j + l;
                        done = true;
                    }
                }
                if (done)
                    continue;
            }
        }
        if (sb_putc(b->o, s[i]))
            return -ENOMEM;
    }
    return 0;
}

FILTER(striptags)
{
    tv s = soft_str(st, v);
    sbuf t;
    sb_init(&t, st->a);
    const char *p = s.u.s, *e = p + s.len;
    /* comments first, then tags, as markupsafe does */
    sbuf c;
    sb_init(&c, st->a);
    while (p < e) {
        const char *o = memmem(p, (size_t)(e - p), "<!--", 4);
        if (!o) { if (sb_put(c.o, p, (size_t)(e - p))) return OOM(st); break; }
        const char *cl = memmem(o + 4, (size_t)(e - o - 4), "-->", 3);
        if (!cl) { if (sb_put(c.o, p, (size_t)(e - p))) return OOM(st); break; }
        if (sb_put(c.o, p, (size_t)(o - p))) return OOM(st);
        p = cl + 3;
    }
    p = c.o->data ? c.o->data : "";
    e = p + c.o->len;
    while (p < e) {
        const char *o = memchr(p, '<', (size_t)(e - p));
        if (!o) { if (sb_put(t.o, p, (size_t)(e - p))) return OOM(st); break; }
        const char *cl = memchr(o + 1, '>', (size_t)(e - o - 1));
        if (!cl) { if (sb_put(t.o, p, (size_t)(e - p))) return OOM(st); break; }
        if (sb_put(t.o, p, (size_t)(o - p))) return OOM(st);
        p = cl + 1;
    }
    /* collapse whitespace */
    tv ts = sbuf_val(&t, false);
    sbuf w;
    sb_init(&w, st->a);
    bool need_sp = false;
    for (uint32_t i = 0; i < ts.len;) {
        uint32_t st0 = i, cp = dec(ts.u.s, ts.len, &i);
        if (is_space_cp(cp)) {
            need_sp = w.o->len > 0;
            continue;
        }
        if (need_sp && sb_putc(w.o, ' '))
            return OOM(st);
        need_sp = false;
        if (sb_put(w.o, ts.u.s + st0, i - st0))
            return OOM(st);
    }
    sbuf u;
    sb_init(&u, st->a);
    if (html_unescape(&u, w.o->data ? w.o->data : "", w.o->len))
        return OOM(st);
    *out = sbuf_val(&u, false);
    return 0;
}

FILTER(replace)
{
    A;
    tv s = v;
    tv old = arg(&fa, 0, "old", tv_str("", 0)), nw = arg(&fa, 1, "new", tv_str("", 0));
    tv cnt = arg(&fa, 2, "count", NONE);
    int64_t count = -1;
    if (cnt.kind != TV_NONE)
        tv_to_int(cnt, &count);
    bool safe = false;
    if (!ctx_autoescape(st)) {
        s = soft_str(st, s);
        s.flags = 0;
        old = soft_str(st, old);
        nw = soft_str(st, nw);
    } else {
        if ((tv_is_safe(old) || tv_is_safe(nw)) && !tv_is_safe(s))
            s = markup_escape(st, s);
        else
            s = soft_str(st, s);
        safe = tv_is_safe(s);
        if (safe) {
            old = markup_escape(st, old);
            nw = markup_escape(st, nw);
        } else {
            old = soft_str(st, old);
            nw = soft_str(st, nw);
        }
    }
    sbuf b;
    sb_init(&b, st->a);
    const char *p = s.u.s, *e = p + s.len;
    if (old.len == 0) {
        /* Python inserts new between every code point (and at both ends) */
        int64_t done = 0;
        for (uint32_t i = 0; i <= s.len;) {
            if (count < 0 || done < count) {
                if (sb_put(b.o, nw.u.s, nw.len)) return OOM(st);
                done++;
            }
            if (i == s.len) break;
            uint32_t j = i;
            dec(s.u.s, s.len, &j);
            if (sb_put(b.o, s.u.s + i, j - i)) return OOM(st);
            i = j;
        }
        *out = sbuf_val(&b, safe);
        return 0;
    }
    int64_t done = 0;
    while (p < e) {
        const char *f = (count < 0 || done < count) ? memmem(p, (size_t)(e - p), old.u.s, old.len) : NULL;
        if (!f) {
            if (sb_put(b.o, p, (size_t)(e - p))) return OOM(st);
            break;
        }
        if (sb_put(b.o, p, (size_t)(f - p)) || sb_put(b.o, nw.u.s, nw.len)) return OOM(st);
        p = f + old.len;
        done++;
    }
    *out = sbuf_val(&b, safe);
    return 0;
}

FILTER(join)
{
    A;
    tv d = arg(&fa, 0, "d", tv_str("", 0));
    tv attr = arg(&fa, 1, "attribute", NONE);
    tlist *l;
    TRY(iter_list(st, v, &l));
    tv *items = vial_arena_alloc(st->a, (l->n + 1) * sizeof(tv));
    if (!items)
        return OOM(st);
    bool any_safe = tv_is_safe(d);
    for (uint32_t i = 0; i < l->n; i++) {
        items[i] = l->v[i];
        if (attr.kind != TV_NONE)
            TRY(attr_path(st, l->v[i], attr, &items[i]));
        any_safe |= tv_is_safe(items[i]);
    }
    bool esc = ctx_autoescape(st) && any_safe;
    tv sep = esc ? markup_escape(st, d) : soft_str(st, d);
    sbuf b;
    sb_init(&b, st->a);
    for (uint32_t i = 0; i < l->n; i++) {
        tv s = esc ? markup_escape(st, items[i]) : soft_str(st, items[i]);
        if ((i && sb_put(b.o, sep.u.s, sep.len)) || sb_put(b.o, s.u.s, s.len))
            return OOM(st);
    }
    *out = sbuf_val(&b, esc);
    return 0;
}

FILTER(center)
{
    A;
    int64_t width = 80;
    tv_to_int(arg(&fa, 0, "width", tv_int(80)), &width);
    tv s = soft_str(st, v);
    int64_t n = cp_count(s);
    if (width <= n) {
        *out = s;
        return 0;
    }
    if (width > 100000)
        return RERR(st, "width too large");
    int64_t marg = width - n, left = marg / 2 + (marg & width & 1);
    sbuf b;
    sb_init(&b, st->a);
    for (int64_t i = 0; i < left; i++)
        if (sb_putc(b.o, ' ')) return OOM(st);
    if (sb_put(b.o, s.u.s, s.len)) return OOM(st);
    for (int64_t i = 0; i < marg - left; i++)
        if (sb_putc(b.o, ' ')) return OOM(st);
    *out = sbuf_val(&b, tv_is_safe(s));
    return 0;
}

/* str.splitlines() over \n, \r\n and \r */
static int split_lines(rstate *st, tv s, tlist **out)
{
    tv l = tv_list_new(st->a, 0);
    if (l.kind != TV_LIST)
        return OOM(st);
    uint32_t start = 0;
    for (uint32_t i = 0; i < s.len; i++) {
        if (s.u.s[i] == '\n' || s.u.s[i] == '\r') {
            if (tv_list_push(st->a, l, mkstr(s.u.s + start, i - start, tv_is_safe(s))))
                return OOM(st);
            if (s.u.s[i] == '\r' && i + 1 < s.len && s.u.s[i + 1] == '\n')
                i++;
            start = i + 1;
        }
    }
    if (start < s.len && tv_list_push(st->a, l, mkstr(s.u.s + start, s.len - start, tv_is_safe(s))))
        return OOM(st);
    *out = l.u.p;
    return 0;
}

FILTER(indent)
{
    A;
    tv w = arg(&fa, 0, "width", tv_int(4));
    bool first = tv_truth(arg(&fa, 1, "first", tv_bool(false)));
    bool blank = tv_truth(arg(&fa, 2, "blank", tv_bool(false)));
    if (v.kind != TV_STR) /* Jinja appends "\n" to the value itself */
        return RERR(st, "unsupported operand type(s) for +=: '%s' and 'str'", tv_type_name(v));
    tv s = v;
    sbuf ind;
    sb_init(&ind, st->a);
    if (w.kind == TV_STR) {
        if (sb_put(ind.o, w.u.s, w.len)) return OOM(st);
    } else {
        int64_t n = 4;
        tv_to_int(w, &n);
        if (n > 10000)
            return RERR(st, "width too large");
        for (int64_t i = 0; i < n; i++)
            if (sb_putc(ind.o, ' ')) return OOM(st);
    }
    tv in = sbuf_val(&ind, false);
    /* s + "\n", then splitlines (the quirk that keeps a trailing newline) */
    sbuf sn;
    sb_init(&sn, st->a);
    if (sb_put(sn.o, s.u.s, s.len) || sb_putc(sn.o, '\n')) return OOM(st);
    tlist *lines;
    TRY(split_lines(st, sbuf_val(&sn, false), &lines));
    sbuf b;
    sb_init(&b, st->a);
    if (first && sb_put(b.o, in.u.s, in.len)) return OOM(st);
    for (uint32_t i = 0; i < lines->n; i++) {
        tv ln = lines->v[i];
        if (i) {
            if (sb_putc(b.o, '\n')) return OOM(st);
            if ((blank || ln.len) && sb_put(b.o, in.u.s, in.len)) return OOM(st);
        }
        if (sb_put(b.o, ln.u.s, ln.len)) return OOM(st);
    }
    *out = sbuf_val(&b, tv_is_safe(s));
    return 0;
}

/* textwrap.wrap with expand_tabs=False, replace_whitespace=False */
static int wrap_line(rstate *st, tv line, int64_t width, bool break_long, bool hyphens, tv wrapstr,
                     vial_tmpl_out *o, bool *first_out)
{
    /* chunks: runs of whitespace, and words (split after hyphens) */
    typedef struct { uint32_t s, n; int64_t cps; bool ws; } chunk;
    uint32_t cap = 16, nc = 0;
    chunk *ch = vial_arena_alloc(st->a, cap * sizeof *ch);
    if (!ch) return OOM(st);
    for (uint32_t i = 0; i < line.len;) {
        uint32_t s0 = i, j = i;
        uint32_t c = dec(line.u.s, line.len, &j);
        bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
        int64_t cps = 0;
        while (i < line.len) {
            uint32_t k = i, d = dec(line.u.s, line.len, &k);
            bool w2 = d == ' ' || d == '\t' || d == '\n' || d == '\r' || d == '\f' || d == '\v';
            if (w2 != ws) break;
            i = k;
            cps++;
            if (!ws && hyphens && d == '-' && i < line.len && cps > 1) {
                uint32_t k2 = i, nx = dec(line.u.s, line.len, &k2);
                uint32_t pk = s0;
                uint32_t prev = 0;
                /* split "well-known" after the hyphen when letters surround it */
                while (pk < i - 1) prev = dec(line.u.s, line.len, &pk);
                if (is_alpha_cp(nx) && is_alpha_cp(prev))
                    break;
            }
        }
        if (nc == cap) {
            chunk *n2 = vial_arena_grow(st->a, ch, cap * sizeof *ch, cap * 2 * sizeof *ch);
            if (!n2) return OOM(st);
            ch = n2, cap *= 2;
        }
        ch[nc++] = (chunk){s0, i - s0, cps, ws};
    }
    uint32_t ci = 0;
    bool any_line = false;
    while (ci < nc) {
        sbuf cur;
        sb_init(&cur, st->a);
        int64_t cur_len = 0;
        typedef struct { uint32_t s, n; int64_t cps; bool ws; } piece;
        piece last = {0};
        bool have_last = false;
        uint32_t start_len = 0;
        if (ch[ci].ws && any_line)
            ci++;
        (void)start_len;
        /* line pieces kept as offsets in cur */
        uint32_t last_ws_off = 0;
        while (ci < nc) {
            if (cur_len + ch[ci].cps <= width) {
                last_ws_off = (uint32_t)cur.o->len;
                if (sb_put(cur.o, line.u.s + ch[ci].s, ch[ci].n)) return OOM(st);
                cur_len += ch[ci].cps;
                last = (piece){ch[ci].s, ch[ci].n, ch[ci].cps, ch[ci].ws};
                have_last = true;
                ci++;
            } else
                break;
        }
        if (ci < nc && ch[ci].cps > width) {
            int64_t space_left = width - cur_len < 1 ? 1 : width - cur_len;
            if (break_long) {
                int64_t end = space_left;
                tv cs = tv_str(line.u.s + ch[ci].s, ch[ci].n);
                if (hyphens && ch[ci].cps > space_left) {
                    uint32_t lim = cp_off(cs, space_left);
                    for (uint32_t h = lim; h-- > 0;)
                        if (cs.u.s[h] == '-') {
                            bool nondash = false;
                            for (uint32_t q = 0; q < h; q++) if (cs.u.s[q] != '-') nondash = true;
                            if (h > 0 && nondash) end = cp_count(tv_str(cs.u.s, h)) + 1;
                            break;
                        }
                }
                uint32_t off = cp_off(cs, end);
                last_ws_off = (uint32_t)cur.o->len;
                if (sb_put(cur.o, cs.u.s, off)) return OOM(st);
                last = (piece){ch[ci].s, off, end, false};
                have_last = true;
                ch[ci].s += off;
                ch[ci].n -= off;
                ch[ci].cps -= end;
            } else if (!have_last) {
                last_ws_off = (uint32_t)cur.o->len;
                if (sb_put(cur.o, line.u.s + ch[ci].s, ch[ci].n)) return OOM(st);
                last = (piece){ch[ci].s, ch[ci].n, ch[ci].cps, false};
                have_last = true;
                ci++;
            }
        }
        if (have_last && last.ws)
            cur.o->len = last_ws_off;
        if (cur.o->len || (have_last && !last.ws)) {
            if (!*first_out && sb_put(o, wrapstr.u.s, wrapstr.len)) return OOM(st);
            if (sb_put(o, cur.o->data, cur.o->len)) return OOM(st);
            *first_out = false;
            any_line = true;
        } else if (!have_last && ci < nc && !(ch[ci].cps > width)) {
            break;
        }
        if (!have_last && ci < nc && ch[ci].ws && !any_line)
            ci++;
    }
    return 0;
}

FILTER(wordwrap)
{
    A;
    tv s = soft_str(st, v);
    int64_t width = 79;
    tv_to_int(arg(&fa, 0, "width", tv_int(79)), &width);
    bool break_long = tv_truth(arg(&fa, 1, "break_long_words", tv_bool(true)));
    tv wrapstr = arg(&fa, 2, "wrapstring", NONE);
    bool hyph = tv_truth(arg(&fa, 3, "break_on_hyphens", tv_bool(true)));
    if (wrapstr.kind == TV_NONE)
        wrapstr = tv_str("\n", 1);
    wrapstr = soft_str(st, wrapstr);
    if (width <= 0)
        return RERR(st, "invalid width %" PRId64 " (must be > 0)", width);
    tlist *lines;
    TRY(split_lines(st, s, &lines));
    sbuf b;
    sb_init(&b, st->a);
    for (uint32_t i = 0; i < lines->n; i++) {
        if (i && sb_put(b.o, wrapstr.u.s, wrapstr.len)) return OOM(st);
        bool first = true;
        TRY(wrap_line(st, lines->v[i], width, break_long, hyph, wrapstr, b.o, &first));
    }
    *out = sbuf_val(&b, false);
    return 0;
}

static int url_quote(vial_tmpl_out *o, tv s, const char *safe, bool qs)
{
    static const char hex[] = "0123456789ABCDEF";
    for (uint32_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.u.s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
            c == '.' || c == '-' || c == '~' || (c && strchr(safe, c))) {
            if (sb_putc(o, (char)c)) return -ENOMEM;
        } else if (qs && c == ' ') {
            if (sb_putc(o, '+')) return -ENOMEM;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (sb_put(o, e, 3)) return -ENOMEM;
        }
    }
    return 0;
}

FILTER(urlencode)
{
    sbuf b;
    sb_init(&b, st->a);
    if (v.kind == TV_STR) {
        if (url_quote(b.o, v, "/", false)) return OOM(st);
    } else if (v.kind == TV_DICT || v.kind == TV_LIST) {
        tlist *pairs;
        if (v.kind == TV_DICT) {
            tv it;
            TRY(f_items(st, v, 0, NULL, NULL, NULL, 0, &it));
            pairs = it.u.p;
        } else
            pairs = v.u.p;
        for (uint32_t i = 0; i < pairs->n; i++) {
            tlist *p;
            TRY(iter_list(st, pairs->v[i], &p));
            if (p->n != 2)
                return RERR(st, "urlencode: pairs expected");
            if ((i && sb_putc(b.o, '&')) || url_quote(b.o, tv_to_str(st->a, p->v[0]), "", true) ||
                sb_putc(b.o, '=') || url_quote(b.o, tv_to_str(st->a, p->v[1]), "", true))
                return OOM(st);
        }
    } else {
        if (url_quote(b.o, tv_to_str(st->a, v), "/", false)) return OOM(st);
    }
    *out = sbuf_val(&b, false);
    return 0;
}

/* json.dumps(sort_keys=True) then <>&' as \u escapes (htmlsafe_json_dumps) */
static int json_str(vial_tmpl_out *o, tv s)
{
    if (sb_putc(o, '"')) return -ENOMEM;
    for (uint32_t i = 0; i < s.len;) {
        uint32_t c = dec(s.u.s, s.len, &i);
        int r;
        switch (c) {
        case '"': r = sb_put(o, "\\\"", 2); break;
        case '\\': r = sb_put(o, "\\\\", 2); break;
        case '\n': r = sb_put(o, "\\n", 2); break;
        case '\r': r = sb_put(o, "\\r", 2); break;
        case '\t': r = sb_put(o, "\\t", 2); break;
        case '\b': r = sb_put(o, "\\b", 2); break;
        case '\f': r = sb_put(o, "\\f", 2); break;
        case '<': case '>': case '&': case '\'':
            r = sb_printf(o, "\\u%04x", c);
            break;
        default:
            if (c < 0x20 || (c >= 0x7f && c < 0x10000))
                r = c >= 0x7f || c < 0x20 ? sb_printf(o, "\\u%04x", c) : sb_putc(o, (char)c);
            else if (c >= 0x10000) {
                uint32_t u = c - 0x10000;
                r = sb_printf(o, "\\u%04x\\u%04x", 0xd800 + (u >> 10), 0xdc00 + (u & 0x3ff));
            } else
                r = sb_putc(o, (char)c);
        }
        if (r) return -ENOMEM;
    }
    return sb_putc(o, '"');
}

static int json_val(rstate *st, vial_tmpl_out *o, tv v, int64_t indent, int level)
{
    if (level > 200)
        return RERR(st, "tojson: nested too deeply");
    char buf[40];
    switch (v.kind) {
    case TV_NONE: return sb_put(o, "null", 4) ? OOM(st) : 0;
    case TV_BOOL: return (v.u.i ? sb_put(o, "true", 4) : sb_put(o, "false", 5)) ? OOM(st) : 0;
    case TV_INT: case TV_BIGINT: return tv_write_str(o, v) ? OOM(st) : 0;
    case TV_FLOAT:
        if (isnan(v.u.d)) return sb_put(o, "NaN", 3) ? OOM(st) : 0;
        if (isinf(v.u.d)) return (v.u.d < 0 ? sb_put(o, "-Infinity", 9) : sb_put(o, "Infinity", 8)) ? OOM(st) : 0;
        return sb_put(o, buf, (size_t)fmt_float(buf, v.u.d)) ? OOM(st) : 0;
    case TV_STR: return json_str(o, v) ? OOM(st) : 0;
    case TV_LIST: case TV_DICT: {
        bool dict = v.kind == TV_DICT;
        uint32_t n = dict ? tv_dict(v)->n : tv_list(v)->n;
        if (sb_putc(o, dict ? '{' : '[')) return OOM(st);
        if (n == 0)
            return sb_putc(o, dict ? '}' : ']') ? OOM(st) : 0;
        skey *k = NULL;
        if (dict) {
            k = vial_arena_alloc(st->a, n * sizeof *k);
            if (!k) return OOM(st);
            for (uint32_t i = 0; i < n; i++) {
                k[i].key = tv_dict(v)->k[i];
                k[i].item = tv_dict(v)->v[i];
                if (k[i].key.kind != TV_STR)
                    k[i].key = tv_to_str(st->a, k[i].key); /* json turns keys into strings */
            }
            TRY(sort_items(st, k, n, false));
        }
        for (uint32_t i = 0; i < n; i++) {
            if (i && sb_putc(o, ',')) return OOM(st);
            if (indent >= 0) {
                if (sb_putc(o, '\n')) return OOM(st);
                for (int64_t s = 0; s < indent * (level + 1); s++)
                    if (sb_putc(o, ' ')) return OOM(st);
            } else if (i && sb_putc(o, ' '))
                return OOM(st);
            if (dict) {
                if (json_str(o, k[i].key) || sb_put(o, ": ", 2)) return OOM(st);
                TRY(json_val(st, o, k[i].item, indent, level + 1));
            } else {
                TRY(json_val(st, o, tv_list(v)->v[i], indent, level + 1));
            }
        }
        if (indent >= 0) {
            if (sb_putc(o, '\n')) return OOM(st);
            for (int64_t s = 0; s < indent * level; s++)
                if (sb_putc(o, ' ')) return OOM(st);
        }
        return sb_putc(o, dict ? '}' : ']') ? OOM(st) : 0;
    }
    default:
        return RERR(st, "Object of type %s is not JSON serializable", tv_type_name(v));
    }
}

FILTER(tojson)
{
    A;
    tv ind = arg(&fa, 0, "indent", NONE);
    int64_t indent = -1;
    if (ind.kind != TV_NONE && tv_to_int(ind, &indent) != 0)
        return RERR(st, "indent must be an integer");
    if (indent > 100)
        indent = 100;
    sbuf b;
    sb_init(&b, st->a);
    TRY(json_val(st, b.o, v, indent, 0));
    *out = sbuf_val(&b, true);
    return 0;
}

FILTER(attr)
{
    A;
    tv name = arg(&fa, 0, "name", tv_str("", 0));
    name = tv_to_str(st->a, name);
    *out = TV(TV_UNDEF);
    if (v.kind == TV_DICT || v.kind == TV_STR || v.kind == TV_LIST)
        return str_method(st, v, name.u.s, name.len, out);
    if (v.kind == TV_UNDEF)
        return 0;
    return get_attr(st, v, name.u.s, name.len, out);
}

FILTER(filesizeformat)
{
    A;
    bool binary = tv_truth(arg(&fa, 0, "binary", tv_bool(false)));
    double bytes;
    if (v.kind == TV_STR) {
        if (!parse_float(v, &bytes))
            return RERR(st, "could not convert string to float");
    } else if (tv_is_num(v))
        bytes = tv_num(v);
    else
        return RERR(st, "float() argument must be a string or a number");
    double base = binary ? 1024 : 1000;
    static const char *bin[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
    static const char *dec_[] = {"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
    sbuf b;
    sb_init(&b, st->a);
    int r;
    if (bytes == 1)
        r = sb_put(b.o, "1 Byte", 6);
    else if (bytes < base && bytes > -9.2e18)
        r = sb_printf(b.o, "%" PRId64 " Bytes", (int64_t)bytes);
    else if (bytes < base) /* beyond int64 (a cast would be undefined): the double's digits, as Python's %d */
        r = sb_printf(b.o, "%.0f Bytes", bytes);
    else {
        int i;
        double unit = base;
        for (i = 0; i < 8; i++) {
            unit = pow(base, i + 2);
            if (bytes < unit)
                break;
        }
        if (i == 8)
            i = 7;
        r = sb_printf(b.o, "%.1f %s", base * bytes / unit, binary ? bin[i] : dec_[i]);
    }
    if (r) return OOM(st);
    *out = sbuf_val(&b, false);
    return 0;
}

FILTER(batch)
{
    A;
    int64_t n;
    if (tv_to_int(arg(&fa, 0, "linecount", tv_int(0)), &n) != 0 || n <= 0)
        return RERR(st, "batch: linecount must be a positive integer");
    tv fill = arg(&fa, 1, "fill_with", NONE);
    bool do_fill = fill.kind != TV_NONE;
    tlist *l;
    TRY(iter_list(st, v, &l));
    tv r = tv_list_new(st->a, 0), cur = TV(TV_UNDEF);
    for (uint32_t i = 0; i < l->n; i++) {
        if (cur.kind != TV_LIST || tv_list(cur)->n == (uint64_t)n) {
            cur = tv_list_new(st->a, 0);
            if (tv_list_push(st->a, r, cur)) return OOM(st);
        }
        if (tv_list_push(st->a, cur, l->v[i])) return OOM(st);
    }
    if (do_fill && cur.kind == TV_LIST)
        while (tv_list(cur)->n < (uint64_t)n)
            if (tv_list_push(st->a, cur, fill)) return OOM(st);
    *out = r;
    return 0;
}

FILTER(slice)
{
    A;
    int64_t slices;
    if (tv_to_int(arg(&fa, 0, "slices", tv_int(0)), &slices) != 0 || slices <= 0)
        return RERR(st, "slice: slices must be a positive integer");
    if (slices > 100000)
        return RERR(st, "slice: too many slices");
    tv fill = arg(&fa, 1, "fill_with", NONE);
    tlist *l;
    TRY(iter_list(st, v, &l));
    int64_t len = l->n, per = len / slices, extra = len % slices, offset = 0;
    tv r = tv_list_new(st->a, (uint32_t)slices);
    for (int64_t i = 0; i < slices; i++) {
        int64_t start = offset + i * per;
        if (i < extra)
            offset++;
        int64_t end = offset + (i + 1) * per;
        tv t = tv_list_new(st->a, 0);
        for (int64_t k = start; k < end && k < len; k++)
            if (tv_list_push(st->a, t, l->v[k])) return OOM(st);
        if (fill.kind != TV_NONE && i >= extra)
            if (tv_list_push(st->a, t, fill)) return OOM(st);
        if (tv_list_push(st->a, r, t)) return OOM(st);
    }
    *out = r;
    return 0;
}

static int call_filter_by_name(rstate *st, tv name, tv v, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out)
{
    if (name.kind != TV_STR)
        return RERR(st, "filter name must be a string");
    const builtin *b = find_filter(name.u.s, name.len);
    if (!b)
        return RERR(st, "No filter named '%.*s'.", (int)name.len, name.u.s);
    return ((filt_fn)b->fn)(st, v, nargs, args, kwn, kwv, nkw, out);
}

static int call_test_by_name(rstate *st, tv name, tv v, int nargs, tv *args, bool *res)
{
    if (name.kind != TV_STR)
        return RERR(st, "test name must be a string");
    const builtin *b = find_test(name.u.s, name.len);
    if (!b)
        return RERR(st, "No test named '%.*s'.", (int)name.len, name.u.s);
    return ((test_fn)b->fn)(st, v, nargs, args, res);
}

FILTER(map)
{
    tlist *l;
    if (!tv_truth(v)) { /* Jinja iterates only a true value */
        *out = tv_list_new(st->a, 0);
        return out->kind == TV_LIST ? 0 : OOM(st);
    }
    TRY(iter_list(st, v, &l));
    tv r = tv_list_new(st->a, l->n);
    if (r.kind != TV_LIST)
        return OOM(st);
    fargs fa = {0, nkw, NULL, kwn, kwv};
    tv attr = arg(&fa, -1, "attribute", TV(TV_UNDEF));
    if (nargs == 0 && attr.kind != TV_UNDEF) {
        tv dflt = arg(&fa, -1, "default", TV(TV_UNDEF));
        for (uint32_t i = 0; i < l->n; i++) {
            tv x;
            TRY(attr_path(st, l->v[i], attr, &x));
            if (x.kind == TV_UNDEF && dflt.kind != TV_UNDEF)
                x = dflt;
            tv_list(r)->v[tv_list(r)->n++] = x;
        }
    } else {
        if (nargs == 0)
            return RERR(st, "map requires a filter argument");
        for (uint32_t i = 0; i < l->n; i++) {
            tv x;
            TRY(call_filter_by_name(st, args[0], l->v[i], nargs - 1, args + 1, kwn, kwv, nkw, &x));
            tv_list(r)->v[tv_list(r)->n++] = x;
        }
    }
    *out = r;
    return 0;
}

static int select_impl(rstate *st, tv v, int nargs, tv *args, bool attr, bool want, tv *out)
{
    tlist *l;
    if (!tv_truth(v)) { /* Jinja iterates only a true value */
        *out = tv_list_new(st->a, 0);
        return out->kind == TV_LIST ? 0 : OOM(st);
    }
    TRY(iter_list(st, v, &l));
    tv r = tv_list_new(st->a, l->n);
    if (r.kind != TV_LIST)
        return OOM(st);
    int off = attr ? 1 : 0;
    if (attr && nargs < 1)
        return RERR(st, "Missing parameter for attribute name");
    for (uint32_t i = 0; i < l->n; i++) {
        tv x = l->v[i];
        if (attr)
            TRY(attr_path(st, x, args[0], &x));
        bool res;
        if (nargs > off)
            TRY(call_test_by_name(st, args[off], x, nargs - off - 1, args + off + 1, &res));
        else
            res = tv_truth(x);
        if (res == want)
            tv_list(r)->v[tv_list(r)->n++] = l->v[i];
    }
    *out = r;
    return 0;
}

FILTER(select) { return select_impl(st, v, nargs, args, false, true, out); }
FILTER(reject) { return select_impl(st, v, nargs, args, false, false, out); }
FILTER(selectattr) { return select_impl(st, v, nargs, args, true, true, out); }
FILTER(rejectattr) { return select_impl(st, v, nargs, args, true, false, out); }

FILTER(groupby)
{
    A;
    tv attr = arg(&fa, 0, "attribute", NONE);
    tv dflt = arg(&fa, 1, "default", NONE);
    bool cs = tv_truth(arg(&fa, 2, "case_sensitive", tv_bool(false)));
    tlist *l;
    TRY(iter_list(st, v, &l));
    skey *k = vial_arena_alloc(st->a, (l->n + 1) * sizeof *k);
    tv *orig = vial_arena_alloc(st->a, (l->n + 1) * sizeof(tv));
    if (!k || !orig)
        return OOM(st);
    for (uint32_t i = 0; i < l->n; i++) {
        tv key;
        TRY(attr_path(st, l->v[i], attr, &key));
        if (key.kind == TV_UNDEF && dflt.kind != TV_NONE)
            key = dflt;
        /* keep the original key beside the item: sort pairs */
        k[i].item = pair(st, l->v[i], key);
        k[i].key = fold(st, key, cs);
    }
    TRY(sort_items(st, k, l->n, false));
    tv r = tv_list_new(st->a, 0);
    for (uint32_t i = 0; i < l->n;) {
        uint32_t j = i;
        tv grp = tv_list_new(st->a, 0);
        while (j < l->n && tv_eq(k[j].key, k[i].key)) {
            if (tv_list_push(st->a, grp, tv_list(k[j].item)->v[0])) return OOM(st);
            j++;
        }
        tv g = pair(st, cs ? k[i].key : tv_list(k[i].item)->v[1], grp);
        g.flags |= TV_GROUP;
        if (tv_list_push(st->a, r, g)) return OOM(st);
        i = j;
    }
    *out = r;
    return 0;
}

FILTER(count) { return f_length(st, v, nargs, args, kwn, kwv, nkw, out); }

/* {{ {'class': 'x', 'id': none}|xmlattr }} -> ' class="x"' (none and
 * undefined values are left out) */
FILTER(xmlattr)
{
    A;
    bool autospace = tv_truth(arg(&fa, 0, "autospace", tv_bool(true)));
    if (v.kind != TV_DICT)
        return RERR(st, "xmlattr: a mapping is required");
    tdict *d = v.u.p;
    sbuf b;
    sb_init(&b, st->a);
    bool first = true;
    for (uint32_t i = 0; i < d->n; i++) {
        if (d->v[i].kind == TV_NONE || d->v[i].kind == TV_UNDEF)
            continue;
        tv k = tv_to_str(st->a, d->k[i]);
        for (uint32_t j = 0; j < k.len; j++)
            if (k.u.s[j] == ' ' || k.u.s[j] == '/' || k.u.s[j] == '>' || k.u.s[j] == '=' ||
                k.u.s[j] == '\t' || k.u.s[j] == '\n' || k.u.s[j] == '\f')
                return RERR(st, "Invalid character in attribute name: %.*s", (int)k.len, k.u.s);
        tv ek = markup_escape(st, k), ev = markup_escape(st, d->v[i]);
        if ((!first && sb_putc(b.o, ' ')) || sb_put(b.o, ek.u.s, ek.len) || sb_put(b.o, "=\"", 2) ||
            sb_put(b.o, ev.u.s, ev.len) || sb_putc(b.o, '"'))
            return OOM(st);
        first = false;
    }
    tv body = sbuf_val(&b, false);
    if (autospace && body.len) {
        sbuf c;
        sb_init(&c, st->a);
        if (sb_putc(c.o, ' ') || sb_put(c.o, body.u.s, body.len))
            return OOM(st);
        body = sbuf_val(&c, false);
    }
    body.flags = ctx_autoescape(st) ? VIAL_TMPL_SAFE : 0;
    *out = body;
    return 0;
}

/* --- tests --------------------------------------------------------------------------- */

#define TEST(name) static int t_##name(rstate *st, tv v, int nargs, tv *args, bool *res)

TEST(defined) { *res = v.kind != TV_UNDEF; return 0; }
TEST(undefined) { *res = v.kind == TV_UNDEF; return 0; }
TEST(none) { *res = v.kind == TV_NONE; return 0; }
TEST(number) { *res = tv_is_num(v); return 0; }
TEST(integer) { *res = v.kind == TV_INT || v.kind == TV_BIGINT; return 0; }
TEST(float) { *res = v.kind == TV_FLOAT; return 0; }
TEST(boolean) { *res = v.kind == TV_BOOL; return 0; }
TEST(true) { *res = v.kind == TV_BOOL && v.u.i; return 0; }
TEST(false) { *res = v.kind == TV_BOOL && !v.u.i; return 0; }
TEST(string) { *res = v.kind == TV_STR; return 0; }
TEST(mapping) { *res = v.kind == TV_DICT; return 0; }
TEST(iterable) { *res = v.kind == TV_LIST || v.kind == TV_DICT || v.kind == TV_STR || v.kind == TV_UNDEF || v.kind == TV_MODULE; return 0; }
TEST(sequence) { *res = v.kind == TV_LIST || v.kind == TV_DICT || v.kind == TV_STR; return 0; }
TEST(callable) { *res = v.kind == TV_FUNC || v.kind == TV_MACRO || v.kind == TV_METHOD || v.kind == TV_BLOCKFN; return 0; }
TEST(escaped) { *res = tv_is_safe(v); return 0; }

static int mod_int(rstate *st, tv v, tv d, bool *zero, int64_t *m, double *fm, bool *isf)
{
    if (v.kind == TV_UNDEF)
        return RERR(st, "'%.*s' is undefined", (int)v.len, v.u.s ? v.u.s : "");
    if (!tv_is_num(v) || !tv_is_num(d))
        return RERR(st, "unsupported operand type(s) for %%: '%s' and '%s'", tv_type_name(v), tv_type_name(d));
    /* Python's %: the result takes the divisor's sign */
    *isf = v.kind == TV_FLOAT || d.kind == TV_FLOAT;
    if (*isf) {
        double y = tv_num(d);
        *zero = y == 0;
        if (!*zero) {
            *fm = fmod(tv_num(v), y);
            if (*fm != 0 && ((*fm < 0) != (y < 0)))
                *fm += y;
        }
        return 0;
    }
    *zero = d.u.i == 0;
    if (!*zero) {
        *m = d.u.i == -1 ? 0 : v.u.i % d.u.i;
        if (*m != 0 && ((*m < 0) != (d.u.i < 0)))
            *m += d.u.i;
    }
    return 0;
}

TEST(even)
{
    bool z, f; int64_t m = 0; double fm = 0;
    TRY(mod_int(st, v, tv_int(2), &z, &m, &fm, &f));
    *res = f ? fm == 0 : m == 0;
    return 0;
}
TEST(odd)
{
    bool z, f; int64_t m = 0; double fm = 0;
    TRY(mod_int(st, v, tv_int(2), &z, &m, &fm, &f));
    *res = f ? fm == 1 : m == 1;
    return 0;
}
TEST(divisibleby)
{
    if (nargs < 1)
        return RERR(st, "divisibleby() missing required argument 'num'");
    bool z, f; int64_t m = 0; double fm = 0;
    TRY(mod_int(st, v, args[0], &z, &m, &fm, &f));
    if (z)
        return RERR(st, "integer division or modulo by zero");
    *res = f ? fm == 0 : m == 0;
    return 0;
}
TEST(sameas)
{
    if (nargs < 1)
        return RERR(st, "sameas() missing required argument 'other'");
    tv o = args[0];
    if (v.kind != o.kind)
        *res = false;
    else if (v.kind == TV_NONE || v.kind == TV_UNDEF)
        *res = v.kind == TV_NONE; /* two Undefined objects are distinct */
    else if (v.kind == TV_BOOL)
        *res = v.u.i == o.u.i;
    else if (v.kind == TV_INT) /* CPython caches -5..256 */
        *res = v.u.i == o.u.i && v.u.i >= -5 && v.u.i <= 256;
    else if (v.kind == TV_STR)
        *res = v.u.s == o.u.s && v.len == o.len;
    else
        *res = v.u.p == o.u.p;
    return 0;
}
static int case_test(rstate *st, tv v, bool upper, bool *res)
{
    tv s = tv_to_str(st->a, v);
    bool cased = false, ok = true;
    for (uint32_t i = 0; i < s.len;) {
        uint32_t c = dec(s.u.s, s.len, &i);
        if (to_upper(c) != c || to_lower(c) != c) {
            cased = true;
            if (upper ? to_upper(c) != c : to_lower(c) != c)
                ok = false;
        }
    }
    *res = cased && ok;
    return 0;
}
TEST(lower) { return case_test(st, v, false, res); }
TEST(upper) { return case_test(st, v, true, res); }

static int cmp_test(rstate *st, tv v, int nargs, tv *args, int op, bool *res)
{
    if (nargs < 1)
        return RERR(st, "comparison test requires an argument");
    if (op == 0) { *res = tv_eq(v, args[0]); return 0; }
    if (op == 1) { *res = !tv_eq(v, args[0]); return 0; }
    int c = tv_cmp(v, args[0]);
    if (c == -2)
        return RERR(st, "'<' not supported between instances of '%s' and '%s'", tv_type_name(v), tv_type_name(args[0]));
    if (c == 2) { *res = false; return 0; }
    *res = op == 2 ? c < 0 : op == 3 ? c <= 0 : op == 4 ? c > 0 : c >= 0;
    return 0;
}
TEST(eq) { return cmp_test(st, v, nargs, args, 0, res); }
TEST(ne) { return cmp_test(st, v, nargs, args, 1, res); }
TEST(lt) { return cmp_test(st, v, nargs, args, 2, res); }
TEST(le) { return cmp_test(st, v, nargs, args, 3, res); }
TEST(gt) { return cmp_test(st, v, nargs, args, 4, res); }
TEST(ge) { return cmp_test(st, v, nargs, args, 5, res); }
TEST(in)
{
    if (nargs < 1)
        return RERR(st, "in test requires an argument");
    tv h = args[0];
    if (h.kind == TV_STR) {
        if (v.kind != TV_STR)
            return RERR(st, "'in <string>' requires string as left operand");
        *res = v.len == 0 || memmem(h.u.s, h.len, v.u.s, v.len) != NULL;
        return 0;
    }
    if (h.kind == TV_DICT) {
        tv o;
        *res = tv_dict_find(h, v, &o);
        return 0;
    }
    tlist *l;
    TRY(iter_list(st, h, &l));
    *res = false;
    for (uint32_t i = 0; i < l->n && !*res; i++)
        *res = tv_eq(l->v[i], v);
    return 0;
}

/* --- tables ----------------------------------------------------------------------------- */

static const builtin filters[] = {
    {"abs", f_abs}, {"attr", f_attr}, {"batch", f_batch}, {"capitalize", f_capitalize},
    {"center", f_center}, {"count", f_count}, {"d", f_default}, {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape}, {"escape", f_escape},
    {"filesizeformat", f_filesizeformat}, {"first", f_first}, {"float", f_float},
    {"forceescape", f_escape}, {"format", f_format}, {"groupby", f_groupby}, {"indent", f_indent},
    {"int", f_int}, {"items", f_items}, {"join", f_join}, {"last", f_last}, {"length", f_length},
    {"list", f_list}, {"lower", f_lower}, {"map", f_map}, {"max", f_max}, {"min", f_min},
    {"reject", f_reject}, {"rejectattr", f_rejectattr}, {"replace", f_replace},
    {"reverse", f_reverse}, {"round", f_round}, {"safe", f_safe}, {"select", f_select},
    {"selectattr", f_selectattr}, {"slice", f_slice}, {"sort", f_sort}, {"string", f_string},
    {"striptags", f_striptags}, {"sum", f_sum}, {"title", f_title}, {"tojson", f_tojson},
    {"trim", f_trim}, {"truncate", f_truncate}, {"unique", f_unique}, {"upper", f_upper},
    {"urlencode", f_urlencode}, {"wordcount", f_wordcount}, {"wordwrap", f_wordwrap},
    {"xmlattr", f_xmlattr},
};

static const builtin tests[] = {
    {"!=", t_ne}, {"<", t_lt}, {"<=", t_le}, {"==", t_eq}, {">", t_gt}, {">=", t_ge},
    {"boolean", t_boolean}, {"callable", t_callable}, {"defined", t_defined},
    {"divisibleby", t_divisibleby}, {"eq", t_eq}, {"equalto", t_eq}, {"escaped", t_escaped},
    {"even", t_even}, {"false", t_false}, {"float", t_float}, {"ge", t_ge}, {"greaterthan", t_gt},
    {"gt", t_gt}, {"in", t_in}, {"integer", t_integer}, {"iterable", t_iterable}, {"le", t_le},
    {"lessthan", t_lt}, {"lower", t_lower}, {"lt", t_lt}, {"mapping", t_mapping}, {"ne", t_ne},
    {"none", t_none}, {"number", t_number}, {"odd", t_odd}, {"sameas", t_sameas},
    {"sequence", t_sequence}, {"string", t_string}, {"true", t_true}, {"undefined", t_undefined},
    {"upper", t_upper},
};

static const builtin *find_in(const builtin *t, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(t[i].name) == len && memcmp(t[i].name, name, len) == 0)
            return &t[i];
    return NULL;
}

const builtin *find_filter(const char *name, size_t n) { return find_in(filters, sizeof filters / sizeof filters[0], name, n); }
const builtin *find_test(const char *name, size_t n) { return find_in(tests, sizeof tests / sizeof tests[0], name, n); }

/* --- methods ------------------------------------------------------------------------------ */

enum {
    M_UPPER = 1, M_LOWER, M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_STARTSWITH, M_ENDSWITH,
    M_REPLACE, M_FORMAT, M_TITLE, M_CAPITALIZE, M_JOIN, M_COUNT, M_FIND, M_SPLITLINES,
    M_ISDIGIT, M_ISALPHA, M_ISSPACE, M_ZFILL, M_CENTER, M_LJUST, M_RJUST, M_ISUPPER, M_ISLOWER,
    M_ITEMS, M_KEYS, M_VALUES, M_GET, M_INDEX, M_LCOUNT, M_LINDEX,
};

static const struct { const char *name; int id; int kind; } methods[] = {
    {"upper", M_UPPER, TV_STR}, {"lower", M_LOWER, TV_STR}, {"strip", M_STRIP, TV_STR},
    {"lstrip", M_LSTRIP, TV_STR}, {"rstrip", M_RSTRIP, TV_STR}, {"split", M_SPLIT, TV_STR},
    {"rsplit", M_RSPLIT, TV_STR}, {"startswith", M_STARTSWITH, TV_STR}, {"endswith", M_ENDSWITH, TV_STR},
    {"replace", M_REPLACE, TV_STR}, {"format", M_FORMAT, TV_STR}, {"title", M_TITLE, TV_STR},
    {"capitalize", M_CAPITALIZE, TV_STR}, {"join", M_JOIN, TV_STR}, {"count", M_COUNT, TV_STR},
    {"find", M_FIND, TV_STR}, {"splitlines", M_SPLITLINES, TV_STR}, {"isdigit", M_ISDIGIT, TV_STR},
    {"isalpha", M_ISALPHA, TV_STR}, {"isspace", M_ISSPACE, TV_STR}, {"zfill", M_ZFILL, TV_STR},
    {"center", M_CENTER, TV_STR}, {"ljust", M_LJUST, TV_STR}, {"rjust", M_RJUST, TV_STR},
    {"isupper", M_ISUPPER, TV_STR}, {"islower", M_ISLOWER, TV_STR},
    {"items", M_ITEMS, TV_DICT}, {"keys", M_KEYS, TV_DICT}, {"values", M_VALUES, TV_DICT},
    {"get", M_GET, TV_DICT}, {"index", M_LINDEX, TV_LIST}, {"count", M_LCOUNT, TV_LIST},
    {"index", M_INDEX, TV_STR},
};

int str_method(rstate *st, tv self, const char *name, size_t n, tv *out)
{
    *out = TV(TV_UNDEF);
    if (self.kind == TV_LIST && (self.flags & TV_GROUP)) {
        if (n == 7 && memcmp(name, "grouper", 7) == 0) { *out = tv_list(self)->v[0]; return 0; }
        if (n == 4 && memcmp(name, "list", 4) == 0) { *out = tv_list(self)->v[1]; return 0; }
    }
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (methods[i].kind == self.kind && strlen(methods[i].name) == n && memcmp(methods[i].name, name, n) == 0) {
            tmethod *m = vial_arena_alloc(st->a, sizeof *m);
            if (!m)
                return OOM(st);
            m->id = methods[i].id;
            m->self = self;
            *out = (tv){.kind = TV_METHOD, .u.p = m};
            return 0;
        }
    return 0;
}

static int split_impl(rstate *st, tv s, tv sep, int64_t maxsplit, bool right, tv *out)
{
    tv l = tv_list_new(st->a, 0);
    if (l.kind != TV_LIST)
        return OOM(st);
    bool safe = tv_is_safe(s);
    if (sep.kind == TV_NONE || sep.kind == TV_UNDEF) {
        /* whitespace runs; empty pieces dropped */
        tv pieces = tv_list_new(st->a, 0);
        uint32_t i = 0;
        while (i < s.len) {
            uint32_t k = i;
            uint32_t c = dec(s.u.s, s.len, &k);
            if (is_space_cp(c)) { i = k; continue; }
            uint32_t start = i;
            while (i < s.len) {
                uint32_t k2 = i, c2 = dec(s.u.s, s.len, &k2);
                if (is_space_cp(c2)) break;
                i = k2;
            }
            if (tv_list_push(st->a, pieces, mkstr(s.u.s + start, i - start, safe))) return OOM(st);
            (void)c;
        }
        tlist *p = pieces.u.p;
        if (maxsplit < 0 || p->n <= (uint64_t)maxsplit + 1) {
            *out = pieces;
            return 0;
        }
        /* with maxsplit, the rest stays joined as in the source text */
        if (!right) {
            for (int64_t k = 0; k < maxsplit; k++)
                tv_list_push(st->a, l, p->v[k]);
            const char *rest = p->v[maxsplit].u.s;
            tv r = strip(mkstr(rest, (size_t)(s.u.s + s.len - rest), safe), TV(TV_NONE), false, true);
            tv_list_push(st->a, l, r);
        } else {
            uint32_t first = p->n - (uint32_t)maxsplit;
            const char *end = p->v[first - 1].u.s + p->v[first - 1].len;
            tv r = strip(mkstr(s.u.s, (size_t)(end - s.u.s), safe), TV(TV_NONE), true, false);
            tv_list_push(st->a, l, r);
            for (uint32_t k = first; k < p->n; k++)
                tv_list_push(st->a, l, p->v[k]);
        }
        *out = l;
        return 0;
    }
    if (sep.kind != TV_STR)
        return RERR(st, "must be str or None, not %s", tv_type_name(sep));
    if (sep.len == 0)
        return RERR(st, "empty separator");
    const char *p = s.u.s, *e = p + s.len;
    int64_t done = 0;
    if (!right) {
        while (1) {
            const char *f = (maxsplit < 0 || done < maxsplit) ? memmem(p, (size_t)(e - p), sep.u.s, sep.len) : NULL;
            if (!f) {
                if (tv_list_push(st->a, l, mkstr(p, (size_t)(e - p), safe))) return OOM(st);
                break;
            }
            if (tv_list_push(st->a, l, mkstr(p, (size_t)(f - p), safe))) return OOM(st);
            p = f + sep.len;
            done++;
        }
    } else {
        /* from the right: collect then reverse */
        const char *hi = e;
        while (1) {
            const char *f = NULL;
            if (maxsplit < 0 || done < maxsplit)
                for (const char *q = hi - sep.len; q >= p; q--)
                    if (memcmp(q, sep.u.s, sep.len) == 0) { f = q; break; }
            if (!f) {
                if (tv_list_push(st->a, l, mkstr(p, (size_t)(hi - p), safe))) return OOM(st);
                break;
            }
            if (tv_list_push(st->a, l, mkstr(f + sep.len, (size_t)(hi - f - sep.len), safe))) return OOM(st);
            hi = f;
            done++;
        }
        tlist *ll = l.u.p;
        for (uint32_t i = 0; i < ll->n / 2; i++) {
            tv t = ll->v[i];
            ll->v[i] = ll->v[ll->n - 1 - i];
            ll->v[ll->n - 1 - i] = t;
        }
    }
    *out = l;
    return 0;
}

static bool affix(tv s, tv x, bool end)
{
    if (x.kind != TV_STR || x.len > s.len)
        return false;
    return memcmp(end ? s.u.s + s.len - x.len : s.u.s, x.u.s, x.len) == 0;
}

/* str.format: {} {0} {name} {x.attr} {:spec} with simple specs */
static int str_format(rstate *st, tv fmt, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out)
{
    sbuf b;
    sb_init(&b, st->a);
    bool safe = tv_is_safe(fmt);
    int autoidx = 0;
    for (uint32_t i = 0; i < fmt.len; i++) {
        char c = fmt.u.s[i];
        if (c == '{' && i + 1 < fmt.len && fmt.u.s[i + 1] == '{') { if (sb_putc(b.o, '{')) return OOM(st); i++; continue; }
        if (c == '}' && i + 1 < fmt.len && fmt.u.s[i + 1] == '}') { if (sb_putc(b.o, '}')) return OOM(st); i++; continue; }
        if (c == '}')
            return RERR(st, "Single '}' encountered in format string");
        if (c != '{') { if (sb_putc(b.o, c)) return OOM(st); continue; }
        uint32_t j = i + 1;
        while (j < fmt.len && fmt.u.s[j] != '}') j++;
        if (j >= fmt.len)
            return RERR(st, "Single '{' encountered in format string");
        const char *f = fmt.u.s + i + 1;
        size_t fl = j - i - 1;
        const char *colon = memchr(f, ':', fl);
        const char *bang = memchr(f, '!', colon ? (size_t)(colon - f) : fl);
        size_t namel = bang ? (size_t)(bang - f) : colon ? (size_t)(colon - f) : fl;
        tv val = TV(TV_UNDEF);
        const char *dot = memchr(f, '.', namel);
        size_t headl = dot ? (size_t)(dot - f) : namel;
        if (headl == 0) {
            if (autoidx >= nargs) return RERR(st, "Replacement index %d out of range for positional args tuple", autoidx);
            val = args[autoidx++];
        } else if (f[0] >= '0' && f[0] <= '9') {
            int idx = 0;
            for (size_t k = 0; k < headl && f[k] >= '0' && f[k] <= '9'; k++)
                idx = idx > 100000 ? idx : idx * 10 + (f[k] - '0');
            if (idx >= nargs) return RERR(st, "Replacement index %d out of range for positional args tuple", idx);
            val = args[idx];
        } else {
            bool found = false;
            for (int k = 0; k < nkw; k++)
                if (kwn[k].len == headl && memcmp(kwn[k].u.s, f, headl) == 0) { val = kwv[k]; found = true; }
            if (!found) return RERR(st, "KeyError: '%.*s'", (int)headl, f);
        }
        if (dot) {
            tv path = tv_str(dot + 1, namel - headl - 1);
            TRY(attr_path(st, val, path, &val));
        }
        tv s;
        if (bang && bang + 1 < f + fl && bang[1] == 'r') {
            sbuf rb; sb_init(&rb, st->a);
            if (tv_write_repr(rb.o, val)) return OOM(st);
            s = sbuf_val(&rb, false);
        } else if (colon && colon + 1 < f + fl) {
            /* a printf-style spec: [[fill]align][width][.prec][type] */
            const char *sp = colon + 1, *se = f + fl;
            char fill = ' ', align = 0;
            if (se - sp >= 2 && (sp[1] == '<' || sp[1] == '>' || sp[1] == '^')) fill = sp[0], align = sp[1], sp += 2;
            else if (sp < se && (*sp == '<' || *sp == '>' || *sp == '^')) align = *sp++;
            bool comma = false;
            int width = 0, prec = -1;
            if (sp < se && *sp == '0' && !align) { fill = '0'; align = '='; sp++; }
            for (; sp < se && *sp >= '0' && *sp <= '9'; sp++)
                if (width <= 1000000)
                    width = width * 10 + (*sp - '0');
            if (width > 100000)
                return RERR(st, "format width too large");
            if (sp < se && *sp == ',') comma = true, sp++;
            if (sp < se && *sp == '.') { prec = 0; sp++; for (; sp < se && *sp >= '0' && *sp <= '9'; sp++) if (prec <= 1000000) prec = prec * 10 + (*sp - '0'); }
            if (prec > 100000)
                return RERR(st, "format precision too large");
            char type = sp < se ? *sp : 0;
            sbuf vb; sb_init(&vb, st->a);
            if (type == 'f' || type == 'F' || type == 'e' || type == 'g' || type == '%') {
                if (!tv_is_num(val)) return RERR(st, "Unknown format code '%c' for object of type '%s'", type, tv_type_name(val));
                double d = tv_num(val) * (type == '%' ? 100 : 1);
                char t2 = type == '%' ? 'f' : type;
                char fmtb[16];
                snprintf(fmtb, sizeof fmtb, "%%.%d%c", prec < 0 ? 6 : prec, t2);
                if (sb_printf(vb.o, fmtb, d)) return OOM(st);
                if (type == '%' && sb_putc(vb.o, '%')) return OOM(st);
            } else if (type == 'd') {
                if (val.kind != TV_INT && val.kind != TV_BOOL) return RERR(st, "Unknown format code 'd' for object of type '%s'", tv_type_name(val));
                if (sb_printf(vb.o, "%" PRId64, val.u.i)) return OOM(st);
            } else if (type == 'x' || type == 'X' || type == 'o' || type == 'b') {
                if (val.kind != TV_INT) return RERR(st, "Unknown format code '%c'", type);
                if (type == 'b') {
                    uint64_t u = val.u.i < 0 ? (uint64_t)-val.u.i : (uint64_t)val.u.i;
                    char bb[70]; int k = 69; bb[k] = 0;
                    do { bb[--k] = (char)('0' + (u & 1)); u >>= 1; } while (u);
                    if (val.u.i < 0) bb[--k] = '-';
                    if (sb_put(vb.o, bb + k, (size_t)(69 - k))) return OOM(st);
                } else if (sb_printf(vb.o, type == 'x' ? "%" PRIx64 : type == 'X' ? "%" PRIX64 : "%" PRIo64, val.u.i)) return OOM(st);
            } else {
                tv sv = tv_to_str(st->a, val);
                if (prec >= 0 && val.kind == TV_STR) sv.len = cp_off(sv, prec);
                else if (prec >= 0 && val.kind == TV_FLOAT) { if (sb_printf(vb.o, "%.*g", prec, val.u.d)) return OOM(st); sv.len = 0; }
                if (sv.len && sb_put(vb.o, sv.u.s, sv.len)) return OOM(st);
            }
            tv body = sbuf_val(&vb, false);
            if (comma) {
                /* thousands separators in the integer part */
                const char *d0 = body.u.s, *de = d0 + body.len;
                const char *ds = d0 + (d0 < de && *d0 == '-');
                const char *ie = ds;
                while (ie < de && *ie >= '0' && *ie <= '9') ie++;
                sbuf cb; sb_init(&cb, st->a);
                if (sb_put(cb.o, d0, (size_t)(ds - d0))) return OOM(st);
                for (const char *q = ds; q < ie; q++) {
                    if (q > ds && (ie - q) % 3 == 0 && sb_putc(cb.o, ',')) return OOM(st);
                    if (sb_putc(cb.o, *q)) return OOM(st);
                }
                if (sb_put(cb.o, ie, (size_t)(de - ie))) return OOM(st);
                body = sbuf_val(&cb, false);
            }
            int64_t n = cp_count(body), pad = width > n ? width - n : 0;
            if (!align) align = (tv_is_num(val) && val.kind != TV_STR) ? '>' : '<';
            sbuf pb; sb_init(&pb, st->a);
            int64_t left = align == '>' || align == '=' ? pad : align == '^' ? pad / 2 : 0;
            if (align == '=' && body.len && body.u.s[0] == '-') { if (sb_putc(pb.o, '-')) return OOM(st); body.u.s++; body.len--; }
            for (int64_t k = 0; k < left; k++) if (sb_putc(pb.o, fill)) return OOM(st);
            if (sb_put(pb.o, body.u.s, body.len)) return OOM(st);
            for (int64_t k = 0; k < pad - left; k++) if (sb_putc(pb.o, fill)) return OOM(st);
            s = sbuf_val(&pb, false);
        } else {
            s = tv_to_str(st->a, val);
        }
        if (safe && !tv_is_safe(s))
            s = markup_escape(st, s);
        if (sb_put(b.o, s.u.s, s.len))
            return OOM(st);
        i = j;
    }
    *out = sbuf_val(&b, safe);
    return 0;
}

static int64_t find_sub(tv s, tv x)
{
    if (x.len == 0)
        return 0;
    const char *f = memmem(s.u.s, s.len, x.u.s, x.len);
    return f ? cp_count(tv_str(s.u.s, (size_t)(f - s.u.s))) : -1;
}

static int pad_str(rstate *st, tv s, int64_t width, tv fill, int mode, tv *out)
{
    int64_t n = cp_count(s);
    if (width <= n) { *out = s; return 0; }
    if (width > 100000) return RERR(st, "width too large");
    tv f = fill.kind == TV_STR && fill.len ? fill : tv_str(" ", 1);
    int64_t marg = width - n, left = mode == 0 ? marg / 2 + (marg & width & 1) : mode == 1 ? 0 : marg;
    sbuf b; sb_init(&b, st->a);
    for (int64_t i = 0; i < left; i++) if (sb_put(b.o, f.u.s, f.len)) return OOM(st);
    if (sb_put(b.o, s.u.s, s.len)) return OOM(st);
    for (int64_t i = 0; i < marg - left; i++) if (sb_put(b.o, f.u.s, f.len)) return OOM(st);
    *out = sbuf_val(&b, tv_is_safe(s));
    return 0;
}

int call_method(rstate *st, tmethod *m, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out)
{
    fargs fa = {nargs, nkw, args, kwn, kwv};
    tv s = m->self;
    *out = TV(TV_UNDEF);
    switch (m->id) {
    case -1: { /* loop.cycle */
        tloop *l = s.u.p;
        if (nargs == 0)
            return RERR(st, "no items for cycling given");
        *out = args[l->i % nargs];
        return 0;
    }
    case -2: { /* loop.changed(*values): true when they differ from the last call */
        tloop *l = s.u.p;
        tv cur = tv_list_new(st->a, (uint32_t)nargs);
        if (cur.kind != TV_LIST)
            return OOM(st);
        for (int i = 0; i < nargs; i++)
            tv_list(cur)->v[tv_list(cur)->n++] = args[i];
        bool changed = !l->changed_set || !tv_eq(l->changed_last, cur);
        l->changed_set = true;
        l->changed_last = cur;
        *out = tv_bool(changed);
        return 0;
    }
    case M_UPPER: return change_case(st, s, CASE_UPPER, out);
    case M_LOWER: return change_case(st, s, CASE_LOWER, out);
    case M_TITLE: return change_case(st, s, CASE_STRTITLE, out);
    case M_CAPITALIZE: return change_case(st, s, CASE_CAPITALIZE, out);
    case M_STRIP: *out = strip(s, arg(&fa, 0, "chars", NONE), true, true); return 0;
    case M_LSTRIP: *out = strip(s, arg(&fa, 0, "chars", NONE), true, false); return 0;
    case M_RSTRIP: *out = strip(s, arg(&fa, 0, "chars", NONE), false, true); return 0;
    case M_SPLIT: case M_RSPLIT: {
        int64_t maxsplit = -1;
        tv_to_int(arg(&fa, 1, "maxsplit", tv_int(-1)), &maxsplit);
        return split_impl(st, s, arg(&fa, 0, "sep", NONE), maxsplit, m->id == M_RSPLIT, out);
    }
    case M_SPLITLINES: {
        tlist *l;
        TRY(split_lines(st, s, &l));
        *out = (tv){.kind = TV_LIST, .u.p = l};
        return 0;
    }
    case M_STARTSWITH: case M_ENDSWITH: {
        tv x = arg(&fa, 0, "prefix", NONE);
        bool end = m->id == M_ENDSWITH;
        if (x.kind == TV_LIST && (x.flags & VIAL_TMPL_TUPLE)) {
            bool r = false;
            for (uint32_t i = 0; i < tv_list(x)->n; i++)
                r |= affix(s, tv_list(x)->v[i], end);
            *out = tv_bool(r);
            return 0;
        }
        if (x.kind != TV_STR)
            return RERR(st, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith", tv_type_name(x));
        *out = tv_bool(affix(s, x, end));
        return 0;
    }
    case M_REPLACE: {
        if (nargs < 2)
            return RERR(st, "replace expected at least 2 arguments, got %d", nargs);
        /* str.replace: not autoescape-aware (that's the filter) */
        tv old = args[0], nw = args[1];
        if (old.kind != TV_STR || nw.kind != TV_STR)
            return RERR(st, "replace() argument must be str");
        if (tv_is_safe(s)) {
            old = markup_escape(st, old);
            nw = markup_escape(st, nw);
        }
        int64_t count = -1;
        if (nargs > 2) tv_to_int(args[2], &count);
        sbuf b; sb_init(&b, st->a);
        const char *p = s.u.s, *e = p + s.len;
        int64_t done = 0;
        if (old.len == 0) {
            tv a3[3] = {old, nw, tv_int(count)};
            return f_replace(st, s, 3, a3, NULL, NULL, 0, out);
        }
        while (p < e) {
            const char *f = (count < 0 || done < count) ? memmem(p, (size_t)(e - p), old.u.s, old.len) : NULL;
            if (!f) { if (sb_put(b.o, p, (size_t)(e - p))) return OOM(st); break; }
            if (sb_put(b.o, p, (size_t)(f - p)) || sb_put(b.o, nw.u.s, nw.len)) return OOM(st);
            p = f + old.len;
            done++;
        }
        *out = sbuf_val(&b, tv_is_safe(s));
        return 0;
    }
    case M_FORMAT: return str_format(st, s, nargs, args, kwn, kwv, nkw, out);
    case M_JOIN: {
        if (nargs < 1) return RERR(st, "join() takes exactly one argument");
        tlist *l;
        TRY(iter_list(st, args[0], &l));
        sbuf b; sb_init(&b, st->a);
        bool safe = tv_is_safe(s);
        for (uint32_t i = 0; i < l->n; i++) {
            tv x = l->v[i];
            if (x.kind != TV_STR) return RERR(st, "sequence item %u: expected str instance, %s found", i, tv_type_name(x));
            if (safe) x = markup_escape(st, x);
            if ((i && sb_put(b.o, s.u.s, s.len)) || sb_put(b.o, x.u.s, x.len)) return OOM(st);
        }
        *out = sbuf_val(&b, safe);
        return 0;
    }
    case M_COUNT: {
        tv x = arg(&fa, 0, "x", NONE);
        if (x.kind != TV_STR) return RERR(st, "must be str, not %s", tv_type_name(x));
        int64_t c = 0;
        if (x.len == 0) c = cp_count(s) + 1;
        else for (const char *p = s.u.s, *e = p + s.len; (p = memmem(p, (size_t)(e - p), x.u.s, x.len)); p += x.len) c++;
        *out = tv_int(c);
        return 0;
    }
    case M_FIND: case M_INDEX: {
        tv x = arg(&fa, 0, "sub", NONE);
        if (x.kind != TV_STR) return RERR(st, "must be str, not %s", tv_type_name(x));
        int64_t r = find_sub(s, x);
        if (r < 0 && m->id == M_INDEX) return RERR(st, "substring not found");
        *out = tv_int(r);
        return 0;
    }
    case M_ISDIGIT: case M_ISALPHA: case M_ISSPACE: {
        bool r = s.len > 0;
        for (uint32_t i = 0; i < s.len && r;) {
            uint32_t c = dec(s.u.s, s.len, &i);
            r = m->id == M_ISDIGIT ? (c >= '0' && c <= '9') : m->id == M_ISALPHA ? is_alpha_cp(c) : is_space_cp(c);
        }
        *out = tv_bool(r);
        return 0;
    }
    case M_ISUPPER: case M_ISLOWER: {
        bool r;
        TRY(case_test(st, s, m->id == M_ISUPPER, &r));
        *out = tv_bool(r);
        return 0;
    }
    case M_ZFILL: {
        int64_t w = 0;
        tv_to_int(arg(&fa, 0, "width", tv_int(0)), &w);
        int64_t n = cp_count(s);
        if (w <= n) { *out = s; return 0; }
        if (w > 100000) return RERR(st, "width too large");
        sbuf b; sb_init(&b, st->a);
        uint32_t start = 0;
        if (s.len && (s.u.s[0] == '-' || s.u.s[0] == '+')) { if (sb_putc(b.o, s.u.s[0])) return OOM(st); start = 1; }
        for (int64_t i = 0; i < w - n; i++) if (sb_putc(b.o, '0')) return OOM(st);
        if (sb_put(b.o, s.u.s + start, s.len - start)) return OOM(st);
        *out = sbuf_val(&b, tv_is_safe(s));
        return 0;
    }
    case M_CENTER: case M_LJUST: case M_RJUST: {
        int64_t w = 0;
        tv_to_int(arg(&fa, 0, "width", tv_int(0)), &w);
        return pad_str(st, s, w, arg(&fa, 1, "fillchar", NONE), m->id == M_CENTER ? 0 : m->id == M_LJUST ? 1 : 2, out);
    }
    case M_ITEMS:
        TRY(f_items(st, s, 0, NULL, NULL, NULL, 0, out));
        out->flags |= TV_VIEW_ITEMS;
        return 0;
    case M_KEYS: case M_VALUES: {
        tdict *d = s.u.p;
        tv l = tv_list_new(st->a, d->n);
        if (l.kind != TV_LIST) return OOM(st);
        if (d->n)
            memcpy(tv_list(l)->v, m->id == M_KEYS ? d->k : d->v, d->n * sizeof(tv));
        tv_list(l)->n = d->n;
        l.flags = m->id == M_KEYS ? TV_VIEW_KEYS : TV_VIEW_VALUES;
        *out = l;
        return 0;
    }
    case M_GET: {
        if (nargs < 1) return RERR(st, "get expected at least 1 argument, got 0");
        if (!tv_dict_find(s, args[0], out))
            *out = nargs > 1 ? args[1] : TV(TV_NONE);
        return 0;
    }
    case M_LINDEX: case M_LCOUNT: {
        if (nargs < 1) return RERR(st, "expected 1 argument");
        tlist *l = s.u.p;
        int64_t c = 0;
        for (uint32_t i = 0; i < l->n; i++)
            if (tv_eq(l->v[i], args[0])) {
                if (m->id == M_LINDEX) { *out = tv_int(i); return 0; }
                c++;
            }
        if (m->id == M_LINDEX) return RERR(st, "x not in list");
        *out = tv_int(c);
        return 0;
    }
    }
    return RERR(st, "unsupported method");
}

/* --- printf-style formatting (the % operator and the format filter) ---------------- */

int py_format(rstate *st, tv fmt, int nargs, tv *args, tv *out)
{
    /* nargs < 0: a single (non-tuple) argument in args[0] */
    bool single = nargs < 0;
    tv one = single ? args[0] : TV(TV_UNDEF);
    int n = single ? 1 : nargs, ai = 0;
    bool safe = tv_is_safe(fmt);
    bool used_map = false;
    sbuf b;
    sb_init(&b, st->a);
    for (uint32_t i = 0; i < fmt.len; i++) {
        char c = fmt.u.s[i];
        if (c != '%') {
            if (sb_putc(b.o, c)) return OOM(st);
            continue;
        }
        if (++i >= fmt.len)
            return RERR(st, "incomplete format");
        tv val;
        bool have = false;
        if (fmt.u.s[i] == '(') {
            uint32_t j = i + 1;
            while (j < fmt.len && fmt.u.s[j] != ')') j++;
            if (j >= fmt.len) return RERR(st, "incomplete format key");
            tv m = single ? one : TV(TV_UNDEF);
            if (m.kind != TV_DICT) return RERR(st, "format requires a mapping");
            if (!tv_dict_findn(m, fmt.u.s + i + 1, j - i - 1, &val))
                return RERR(st, "KeyError: '%.*s'", (int)(j - i - 1), fmt.u.s + i + 1);
            have = true;
            used_map = true;
            i = j + 1;
        }
        char flags[8];
        int nf = 0;
        while (i < fmt.len && strchr("-+ #0", fmt.u.s[i]) && nf < 6)
            flags[nf++] = fmt.u.s[i++];
        flags[nf] = 0;
        int width = -1, prec = -1;
        if (i < fmt.len && fmt.u.s[i] == '*') return RERR(st, "* width not supported");
        while (i < fmt.len && fmt.u.s[i] >= '0' && fmt.u.s[i] <= '9') width = width > 1000000 ? width : (width < 0 ? 0 : width) * 10 + (fmt.u.s[i] - '0'), i++;
        if (i < fmt.len && fmt.u.s[i] == '.') {
            prec = 0;
            i++;
            while (i < fmt.len && fmt.u.s[i] >= '0' && fmt.u.s[i] <= '9') prec = prec > 1000000 ? prec : prec * 10 + (fmt.u.s[i] - '0'), i++;
        }
        while (i < fmt.len && (fmt.u.s[i] == 'l' || fmt.u.s[i] == 'h' || fmt.u.s[i] == 'L')) i++;
        if (i >= fmt.len) return RERR(st, "incomplete format");
        char conv = fmt.u.s[i];
        if (conv == '%') {
            if (sb_putc(b.o, '%')) return OOM(st);
            continue;
        }
        if (!have) {
            if (ai >= n) return RERR(st, "not enough arguments for format string");
            val = single ? one : args[ai];
            ai++;
        }
        if (width > 10000 || prec > 10000) return RERR(st, "width too large");
        sbuf vb;
        sb_init(&vb, st->a);
        tv piece;
        switch (conv) {
        case 's': case 'r': case 'a': {
            tv s;
            if (conv == 's') s = tv_to_str(st->a, val);
            else {
                sbuf rb; sb_init(&rb, st->a);
                if (tv_write_repr(rb.o, val)) return OOM(st);
                s = sbuf_val(&rb, false);
            }
            if (safe && !tv_is_safe(val))
                s = markup_escape(st, s);
            if (prec >= 0) s.len = cp_off(s, prec);
            int64_t cps = cp_count(s), pad = width > cps ? width - cps : 0;
            bool left = strchr(flags, '-') != NULL;
            for (int64_t k = 0; !left && k < pad; k++) if (sb_putc(vb.o, ' ')) return OOM(st);
            if (sb_put(vb.o, s.u.s, s.len)) return OOM(st);
            for (int64_t k = 0; left && k < pad; k++) if (sb_putc(vb.o, ' ')) return OOM(st);
            piece = sbuf_val(&vb, false);
            break;
        }
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'c': {
            int64_t iv;
            if (!tv_is_num(val) || val.kind == TV_BIGINT)
                return RERR(st, "%%%c format: a real number is required, not %s", conv, tv_type_name(val));
            if ((conv == 'x' || conv == 'X' || conv == 'o' || conv == 'c') && val.kind == TV_FLOAT)
                return RERR(st, "%%%c format: an integer is required, not float", conv);
            if (tv_to_int(val, &iv) != 0) return RERR(st, "cannot convert float to integer");
            if (conv == 'c') {
                if (iv < 0 || iv > 0x10ffff) return RERR(st, "%%c arg not in range(0x110000)");
                if (enc(vb.o, (uint32_t)iv)) return OOM(st);
            } else {
                char cv = conv == 'i' || conv == 'u' ? 'd' : conv;
                char f2[32];
                snprintf(f2, sizeof f2, "%%%s%s%sll%c", flags, width >= 0 ? "*" : "", prec >= 0 ? ".*" : "", cv);
                long long ll = (long long)iv;
                bool neg_hex = (cv == 'x' || cv == 'X' || cv == 'o') && ll < 0;
                if (neg_hex && ll == INT64_MIN) return RERR(st, "integer overflow");
                if (neg_hex) ll = -ll;
                int r;
                if (width >= 0 && prec >= 0) r = sb_printf(vb.o, f2, width, prec, ll);
                else if (width >= 0) r = sb_printf(vb.o, f2, width, ll);
                else if (prec >= 0) r = sb_printf(vb.o, f2, prec, ll);
                else r = sb_printf(vb.o, f2, ll);
                if (r) return OOM(st);
                if (neg_hex) {
                    /* Python prints -ff where C prints the two's complement */
                    tv t = sbuf_val(&vb, false);
                    sbuf nb; sb_init(&nb, st->a);
                    uint32_t k = 0;
                    while (k < t.len && t.u.s[k] == ' ') k++;
                    if (k > 0) k--;
                    if (sb_put(nb.o, t.u.s, k) || sb_putc(nb.o, '-') || sb_put(nb.o, t.u.s + k + (k > 0 || t.u.s[0] == ' '), t.len - k - (k > 0 || t.u.s[0] == ' '))) return OOM(st);
                    piece = sbuf_val(&nb, false);
                    break;
                }
            }
            piece = sbuf_val(&vb, false);
            break;
        }
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
            if (!tv_is_num(val))
                return RERR(st, "must be real number, not %s", tv_type_name(val));
            char f2[32];
            snprintf(f2, sizeof f2, "%%%s%s.*%c", flags, width >= 0 ? "*" : "", conv);
            double d = tv_num(val);
            int p = prec >= 0 ? prec : 6;
            if (!isfinite(d)) {
                /* Python spells these inf / nan */
                const char *t = isnan(d) ? "nan" : d < 0 ? "-inf" : "inf";
                if (conv == 'F' || conv == 'E' || conv == 'G') t = isnan(d) ? "NAN" : d < 0 ? "-INF" : "INF";
                int64_t pad = width > (int)strlen(t) ? width - (int)strlen(t) : 0;
                bool left = strchr(flags, '-') != NULL;
                for (int64_t k = 0; !left && k < pad; k++) if (sb_putc(vb.o, ' ')) return OOM(st);
                if (sb_put(vb.o, t, strlen(t))) return OOM(st);
                for (int64_t k = 0; left && k < pad; k++) if (sb_putc(vb.o, ' ')) return OOM(st);
            } else if ((width >= 0 ? sb_printf(vb.o, f2, width, p, d) : sb_printf(vb.o, f2, p, d)))
                return OOM(st);
            piece = sbuf_val(&vb, false);
            break;
        }
        default:
            return RERR(st, "unsupported format character '%c' (0x%x)", conv, (unsigned char)conv);
        }
        if (sb_put(b.o, piece.u.s, piece.len))
            return OOM(st);
    }
    /* Python treats a non-tuple argument with items (dict, list) as a
     * mapping: unused, it is no error */
    if (!used_map && ai < n && !(single && (one.kind == TV_DICT || one.kind == TV_LIST)))
        return RERR(st, "not all arguments converted during string formatting");
    *out = sbuf_val(&b, safe);
    return 0;
}
