/* Template values: builders, containers, and Python's rules for truth,
 * equality, ordering, str() and repr(). */
#include "template/value.h"
#include "runtime/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- output buffers --------------------------------------------------------- */

static int arena_grow_out(vial_tmpl_out *o, size_t need)
{
    vial_arena *a = o->user;
    size_t cap = o->cap ? o->cap * 2 : 256;
    while (cap < need)
        cap *= 2;
    char *p = vial_arena_grow(a, o->data, o->len, cap);
    if (!p)
        return -ENOMEM;
    o->data = p;
    o->cap = cap;
    return 0;
}

void sb_init(sbuf *b, vial_arena *a)
{
    memset(b, 0, sizeof *b);
    b->own.grow = arena_grow_out;
    b->own.user = a;
    b->o = &b->own;
    b->a = a;
}

int out_reserve(vial_tmpl_out *o, size_t need)
{
    if (need <= o->cap)
        return 0;
    if (o->grow)
        return o->grow(o, need);
    size_t cap = o->cap ? o->cap * 2 : 1024;
    while (cap < need)
        cap *= 2;
    char *p = realloc(o->data, cap);
    if (!p)
        return -ENOMEM;
    o->data = p;
    o->cap = cap;
    return 0;
}

int sb_put(vial_tmpl_out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap && out_reserve(o, o->len + n) != 0)
        return -ENOMEM;
    if (n)
        memcpy(o->data + o->len, s, n);
    o->len += n;
    return 0;
}

int sb_putc(vial_tmpl_out *o, char c) { return sb_put(o, &c, 1); }

int sb_esc(vial_tmpl_out *o, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = vial_html_find(s, 0, n); i < n; i = vial_html_find(s, i + 1, n)) {
        size_t elen;
        const char *e = vial_html_entity((unsigned char)s[i], &elen);
        if (sb_put(o, s + start, i - start) || sb_put(o, e, elen))
            return -ENOMEM;
        start = i + 1;
    }
    return sb_put(o, s + start, n - start);
}

int sb_printf(vial_tmpl_out *o, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof buf)
        return sb_put(o, buf, (size_t)n);
    if (out_reserve(o, o->len + (size_t)n + 1) != 0)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(o->data + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
    return 0;
}

int vial_tmpl_escape(vial_tmpl_out *out, const char *s, size_t len) { return sb_esc(out, s, len); }

/* --- builders --------------------------------------------------------------- */

vial_tmpl_value vial_tmpl_undefined(void) { return TV(TV_UNDEF); }
vial_tmpl_value vial_tmpl_none(void) { return TV(TV_NONE); }
vial_tmpl_value vial_tmpl_bool(int b) { return tv_bool(b != 0); }
vial_tmpl_value vial_tmpl_int(int64_t i) { return tv_int(i); }
vial_tmpl_value vial_tmpl_float(double d) { return tv_float(d); }
vial_tmpl_value vial_tmpl_str(const char *s, size_t len) { return tv_str(s, len); }
vial_tmpl_value vial_tmpl_cstr(const char *s) { return tv_str(s, strlen(s)); }
vial_tmpl_value vial_tmpl_safe(const char *s, size_t len) { return tv_safe(s, len); }

void *vial_tmpl_alloc(struct vial_arena *a, size_t size) { return vial_arena_alloc(a, size); }

vial_tmpl_value vial_tmpl_strdup(struct vial_arena *a, const char *s, size_t len)
{
    char *d = vial_arena_strndup(a, s, len);
    return d ? tv_str(d, len) : TV(TV_UNDEF);
}

tv tv_list_new(vial_arena *a, uint32_t cap)
{
    tlist *l = vial_arena_alloc(a, sizeof *l);
    if (!l)
        return TV(TV_UNDEF);
    l->n = 0;
    l->cap = cap;
    l->v = cap ? vial_arena_alloc(a, cap * sizeof(tv)) : NULL;
    if (cap && !l->v)
        return TV(TV_UNDEF);
    return (tv){.kind = TV_LIST, .u.p = l};
}

int tv_list_push(vial_arena *a, tv list, tv v)
{
    if (list.kind != TV_LIST)
        return -EINVAL;
    tlist *l = list.u.p;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 8;
        tv *nv = vial_arena_grow(a, l->v, l->n * sizeof(tv), cap * sizeof(tv));
        if (!nv)
            return -ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

tv tv_dict_new(vial_arena *a, uint32_t cap)
{
    tdict *d = vial_arena_alloc(a, sizeof *d);
    if (!d)
        return TV(TV_UNDEF);
    memset(d, 0, sizeof *d);
    if (cap) {
        d->k = vial_arena_alloc(a, cap * sizeof(tv));
        d->v = vial_arena_alloc(a, cap * sizeof(tv));
        if (!d->k || !d->v)
            return TV(TV_UNDEF);
        d->cap = cap;
    }
    return (tv){.kind = TV_DICT, .u.p = d};
}

static int64_t dict_index(tdict *d, tv key)
{
    if (key.kind == TV_STR) {
        for (uint32_t i = 0; i < d->n; i++)
            if (d->k[i].kind == TV_STR && d->k[i].len == key.len &&
                memcmp(d->k[i].u.s, key.u.s, key.len) == 0)
                return i;
        return -1;
    }
    for (uint32_t i = 0; i < d->n; i++)
        if (tv_eq(d->k[i], key))
            return i;
    return -1;
}

int tv_dict_put(vial_arena *a, tv dict, tv k, tv v)
{
    if (dict.kind != TV_DICT && dict.kind != TV_MODULE)
        return -EINVAL;
    tdict *d = dict.u.p;
    int64_t i = dict_index(d, k);
    if (i >= 0) {
        d->v[i] = v;
        return 0;
    }
    if (d->n == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 8;
        tv *nk = vial_arena_alloc(a, cap * sizeof(tv));
        tv *nv = vial_arena_alloc(a, cap * sizeof(tv));
        if (!nk || !nv)
            return -ENOMEM;
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(tv));
            memcpy(nv, d->v, d->n * sizeof(tv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
    return 0;
}

bool tv_dict_find(tv dict, tv key, tv *out)
{
    if (dict.kind != TV_DICT && dict.kind != TV_MODULE)
        return false;
    int64_t i = dict_index(dict.u.p, key);
    if (i < 0)
        return false;
    *out = ((tdict *)dict.u.p)->v[i];
    return true;
}

bool tv_dict_findn(tv dict, const char *k, size_t n, tv *out)
{
    return tv_dict_find(dict, tv_str(k, n), out);
}

vial_tmpl_value vial_tmpl_list(struct vial_arena *a) { return tv_list_new(a, 0); }
vial_tmpl_value vial_tmpl_dict(struct vial_arena *a) { return tv_dict_new(a, 0); }
int vial_tmpl_push(struct vial_arena *a, vial_tmpl_value list, vial_tmpl_value v)
{
    return tv_list_push(a, list, v);
}
int vial_tmpl_setn(struct vial_arena *a, vial_tmpl_value dict, const char *key, size_t klen,
                   vial_tmpl_value v)
{
    if (dict.kind != TV_DICT)
        return -EINVAL;
    return tv_dict_put(a, dict, tv_str(key, klen), v);
}
int vial_tmpl_set(struct vial_arena *a, vial_tmpl_value dict, const char *key, vial_tmpl_value v)
{
    return vial_tmpl_setn(a, dict, key, strlen(key), v);
}
size_t vial_tmpl_len(vial_tmpl_value v)
{
    if (v.kind == TV_LIST)
        return tv_list(v)->n;
    if (v.kind == TV_DICT)
        return tv_dict(v)->n;
    return 0;
}
vial_tmpl_value vial_tmpl_at(vial_tmpl_value list, size_t i)
{
    if (list.kind != TV_LIST || i >= tv_list(list)->n)
        return TV(TV_UNDEF);
    return tv_list(list)->v[i];
}
vial_tmpl_value vial_tmpl_get(vial_tmpl_value dict, const char *key)
{
    tv r;
    if (tv_dict_findn(dict, key, strlen(key), &r))
        return r;
    return TV(TV_UNDEF);
}
vial_tmpl_value vial_tmpl_function(struct vial_arena *a, const char *name, vial_tmpl_fn fn, void *data)
{
    tfunc *f = a ? vial_arena_alloc(a, sizeof *f) : malloc(sizeof *f);
    if (!f)
        return TV(TV_UNDEF);
    f->fn = fn;
    f->data = data;
    f->name = name;
    return (tv){.kind = TV_FUNC, .u.p = f};
}

vial_tmpl_value vial_tmpl_object(struct vial_arena *a, const char *name, vial_tmpl_attr_fn attr,
                                 void *data)
{
    tobject *o = a ? vial_arena_alloc(a, sizeof *o) : malloc(sizeof *o);
    if (!o || !attr) {
        if (!a)
            free(o);
        return TV(TV_UNDEF);
    }
    o->attr = attr;
    o->data = data;
    o->name = name ? name : "object";
    return (tv){.kind = TV_OBJECT, .u.p = o};
}

struct vial_arena *vial_tmpl_arena_new(void)
{
    vial_arena *a = malloc(sizeof *a);
    if (a)
        vial_arena_init(a, NULL, 0);
    return a;
}

void vial_tmpl_arena_free(struct vial_arena *a)
{
    if (a) {
        vial_arena_reset(a, NULL, 0);
        free(a);
    }
}

/* --- Python semantics ------------------------------------------------------- */

bool tv_truth(tv v)
{
    switch (v.kind) {
    case TV_UNDEF: case TV_NONE: return false;
    case TV_BOOL: case TV_INT: return v.u.i != 0;
    case TV_FLOAT: return v.u.d != 0;
    case TV_STR: return v.len > 0;
    case TV_LIST: return tv_list(v)->n > 0;
    case TV_DICT: case TV_MODULE: return tv_dict(v)->n > 0;
    default: return true;
    }
}

double tv_num(tv v)
{
    if (v.kind == TV_FLOAT)
        return v.u.d;
    if (v.kind == TV_BIGINT)
        return strtod(v.u.s, NULL);
    return (double)v.u.i;
}

bool tv_eq(tv a, tv b)
{
    if (tv_is_num(a) && tv_is_num(b)) {
        if (a.kind == TV_BIGINT || b.kind == TV_BIGINT) {
            if (a.kind == TV_BIGINT && b.kind == TV_BIGINT)
                return a.len == b.len && memcmp(a.u.s, b.u.s, a.len) == 0;
            return false;
        }
        if (a.kind == TV_FLOAT || b.kind == TV_FLOAT)
            return tv_num(a) == tv_num(b);
        return a.u.i == b.u.i;
    }
    if (a.kind != b.kind)
        return false;
    switch (a.kind) {
    case TV_UNDEF: case TV_NONE: return true;
    case TV_STR: return a.len == b.len && memcmp(a.u.s, b.u.s, a.len) == 0;
    case TV_LIST: {
        tlist *x = a.u.p, *y = b.u.p;
        if ((a.flags & VIAL_TMPL_TUPLE) != (b.flags & VIAL_TMPL_TUPLE) || x->n != y->n)
            return false;
        for (uint32_t i = 0; i < x->n; i++)
            if (!tv_eq(x->v[i], y->v[i]))
                return false;
        return true;
    }
    case TV_DICT: {
        tdict *x = a.u.p, *y = b.u.p;
        if (x->n != y->n)
            return false;
        for (uint32_t i = 0; i < x->n; i++) {
            tv o;
            if (!tv_dict_find(b, x->k[i], &o) || !tv_eq(x->v[i], o))
                return false;
        }
        return true;
    }
    default: return a.u.p == b.u.p;
    }
}

int tv_cmp(tv a, tv b)
{
    if (tv_is_num(a) && tv_is_num(b)) {
        if (a.kind != TV_FLOAT && b.kind != TV_FLOAT && a.kind != TV_BIGINT && b.kind != TV_BIGINT)
            return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
        double x = tv_num(a), y = tv_num(b);
        if (x != x || y != y)
            return 2; /* NaN: every ordering is false */
        return x < y ? -1 : x > y;
    }
    if (a.kind == TV_STR && b.kind == TV_STR) {
        size_t n = a.len < b.len ? a.len : b.len;
        int c = memcmp(a.u.s, b.u.s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a.len < b.len ? -1 : a.len > b.len;
    }
    if (a.kind == TV_LIST && b.kind == TV_LIST &&
        (a.flags & VIAL_TMPL_TUPLE) == (b.flags & VIAL_TMPL_TUPLE)) {
        tlist *x = a.u.p, *y = b.u.p;
        for (uint32_t i = 0; i < x->n && i < y->n; i++) {
            if (tv_eq(x->v[i], y->v[i]))
                continue;
            return tv_cmp(x->v[i], y->v[i]);
        }
        return x->n < y->n ? -1 : x->n > y->n;
    }
    return -2;
}

const char *tv_type_name(tv v)
{
    switch (v.kind) {
    case TV_UNDEF: return "Undefined";
    case TV_NONE: return "NoneType";
    case TV_BOOL: return "bool";
    case TV_INT: case TV_BIGINT: return "int";
    case TV_FLOAT: return "float";
    case TV_STR: return "str";
    case TV_LIST: return v.flags & VIAL_TMPL_TUPLE ? "tuple" : "list";
    case TV_DICT: return "dict";
    case TV_MODULE: return "module";
    case TV_LOOP: return "LoopContext";
    case TV_OBJECT: return ((tobject *)v.u.p)->name;
    default: return "function";
    }
}

/* Python's repr(float): the shortest digits that read back the same, fixed
 * notation for exponents -4..15, else d.ddde+XX. */
int fmt_float(char *buf, double d)
{
    if (isnan(d))
        return sprintf(buf, "nan");
    if (isinf(d))
        return sprintf(buf, d < 0 ? "-inf" : "inf");
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* tmp: [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = 0;
    const char *p = tmp;
    if (*p == '-')
        neg = 1, p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    char *o = buf;
    if (neg)
        *o++ = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -exp - 1; i++)
                *o++ = '0';
            for (int i = 0; i < nd; i++)
                *o++ = digits[i];
        } else {
            for (int i = 0; i <= exp; i++)
                *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++)
                    *o++ = digits[i];
            else
                *o++ = '0';
        }
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++)
                *o++ = digits[i];
        }
        o += sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    *o = 0;
    return (int)(o - buf);
}

static int write_str_repr(vial_tmpl_out *o, const char *s, size_t n)
{
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    if (sb_putc(o, q))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int r = 0;
        if (c == q || c == '\\')
            r = sb_putc(o, '\\') || sb_putc(o, (char)c);
        else if (c == '\n')
            r = sb_put(o, "\\n", 2);
        else if (c == '\r')
            r = sb_put(o, "\\r", 2);
        else if (c == '\t')
            r = sb_put(o, "\\t", 2);
        else if (c < 0x20 || c == 0x7f)
            r = sb_printf(o, "\\x%02x", c);
        else if (c == 0xc2 && i + 1 < n &&
                 (((unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0xa0) ||
                  (unsigned char)s[i + 1] == 0xad))
            r = sb_printf(o, "\\x%02x", (unsigned char)s[++i]);
        else
            r = sb_putc(o, (char)c);
        if (r)
            return -ENOMEM;
    }
    return sb_putc(o, q);
}

/* decimal digits of i into buf (at least 21 bytes); returns the length */
static size_t fmt_int(char *buf, int64_t i)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t k = 0;
    if (i < 0)
        buf[k++] = '-';
    while (n)
        buf[k++] = tmp[--n];
    return k;
}

static int write_num(vial_tmpl_out *o, tv v)
{
    char buf[40];
    switch (v.kind) {
    case TV_BOOL: return v.u.i ? sb_put(o, "True", 4) : sb_put(o, "False", 5);
    case TV_INT: return sb_put(o, buf, fmt_int(buf, v.u.i));
    case TV_FLOAT: return sb_put(o, buf, (size_t)fmt_float(buf, v.u.d));
    case TV_BIGINT: return sb_put(o, v.u.s, v.len);
    }
    return 0;
}

int tv_write_repr(vial_tmpl_out *o, tv v)
{
    switch (v.kind) {
    case TV_STR:
        if (v.flags & VIAL_TMPL_SAFE) {
            if (sb_put(o, "Markup(", 7) || write_str_repr(o, v.u.s, v.len))
                return -ENOMEM;
            return sb_putc(o, ')');
        }
        return write_str_repr(o, v.u.s, v.len);
    case TV_LIST: {
        tlist *l = v.u.p;
        bool tup = v.flags & VIAL_TMPL_TUPLE;
        /* dict views print as Python shows them */
        const char *view = v.flags & TV_VIEW_ITEMS ? "dict_items(" : v.flags & TV_VIEW_KEYS ? "dict_keys("
                         : v.flags & TV_VIEW_VALUES ? "dict_values(" : NULL;
        if (view) {
            tv plain = v;
            plain.flags = 0;
            if (sb_put(o, view, strlen(view)) || tv_write_repr(o, plain))
                return -ENOMEM;
            return sb_putc(o, ')');
        }
        if (sb_putc(o, tup ? '(' : '['))
            return -ENOMEM;
        for (uint32_t i = 0; i < l->n; i++) {
            if ((i && sb_put(o, ", ", 2)) || tv_write_repr(o, l->v[i]))
                return -ENOMEM;
        }
        if (tup && l->n == 1 && sb_putc(o, ','))
            return -ENOMEM;
        return sb_putc(o, tup ? ')' : ']');
    }
    case TV_DICT: {
        tdict *d = v.u.p;
        if (sb_putc(o, '{'))
            return -ENOMEM;
        for (uint32_t i = 0; i < d->n; i++) {
            if ((i && sb_put(o, ", ", 2)) || tv_write_repr(o, d->k[i]) || sb_put(o, ": ", 2) ||
                tv_write_repr(o, d->v[i]))
                return -ENOMEM;
        }
        return sb_putc(o, '}');
    }
    case TV_UNDEF:
        return sb_put(o, "Undefined", 9);
    default:
        return tv_write_str(o, v);
    }
}

int tv_write_str(vial_tmpl_out *o, tv v)
{
    switch (v.kind) {
    case TV_UNDEF: return 0;
    case TV_NONE: return sb_put(o, "None", 4);
    case TV_BOOL: case TV_INT: case TV_FLOAT: case TV_BIGINT: return write_num(o, v);
    case TV_STR: return sb_put(o, v.u.s, v.len);
    case TV_LIST: case TV_DICT: return tv_write_repr(o, v);
    case TV_FUNC: return sb_printf(o, "<function %s>", ((tfunc *)v.u.p)->name);
    case TV_MODULE: return sb_put(o, "<module>", 8);
    case TV_LOOP: return sb_put(o, "<LoopContext>", 13);
    case TV_OBJECT: return sb_printf(o, "<%s>", ((tobject *)v.u.p)->name);
    default: return sb_put(o, "<function>", 10);
    }
}

tv tv_to_str(vial_arena *a, tv v)
{
    if (v.kind == TV_STR)
        return v;
    if (v.kind == TV_UNDEF)
        return tv_str("", 0);
    sbuf b;
    sb_init(&b, a);
    if (tv_write_str(b.o, v) != 0)
        return tv_str("", 0);
    return tv_str(b.o->data ? b.o->data : "", b.o->len);
}

int tv_to_int(tv v, int64_t *out)
{
    switch (v.kind) {
    case TV_BOOL: case TV_INT: *out = v.u.i; return 0;
    case TV_FLOAT:
        if (!(v.u.d >= -9.2e18 && v.u.d <= 9.2e18))
            return -1;
        *out = (int64_t)v.u.d;
        return 0;
    default: return -1;
    }
}
