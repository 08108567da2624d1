/* The renderer: walks a template's tree, writing text into the output.
 * Scoping follows Jinja: a template's top-level names live in its root
 * frame (shared with the templates it extends, exported by imports); for
 * loops, macros, blocks and with open frames of their own; if does not. */
#include "template/tmpl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rs_fail(rstate *st, int code, const char *fmt, ...)
{
    if (st->failed)
        return st->code;
    st->failed = true;
    st->code = code;
    if (st->err) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        tmpl_set_error(st->err, st->curt ? st->curt->name : "?", st->cur ? st->cur->line : 0, "%s", msg);
    }
    return code;
}

#define TRY(x) do { int r_ = (x); if (r_ != 0) return r_; } while (0)
#define OOM(st) rs_fail(st, -ENOMEM, "out of memory")
#define RERR(st, ...) rs_fail(st, -ERANGE, __VA_ARGS__)

/* Two autoescape settings, as in Jinja: the template being executed decides
 * at compile time ({{ }} output, ~, block set, filter blocks); the render
 * context's template (the one rendered, included or imported) decides at
 * run time (macro and caller() results, super(), join/replace/xmlattr). */
bool cur_autoescape(rstate *st)
{
    if (st->ae >= 0) /* an {% autoescape %} block */
        return st->ae;
    return st->curt && st->curt->autoescape;
}
bool ctx_autoescape(rstate *st)
{
    if (st->ae >= 0)
        return st->ae;
    return st->tc && st->tc->t ? st->tc->t->autoescape : cur_autoescape(st);
}

static bool name_is(tv v, const char *s)
{
    size_t n = strlen(s);
    return v.len == n && memcmp(v.u.s, s, n) == 0;
}

/* --- frames ------------------------------------------------------------------ */

static frame *frame_new(rstate *st, frame *parent)
{
    frame *f = vial_arena_alloc(st->a, sizeof *f);
    if (f) {
        memset(f, 0, sizeof *f);
        f->parent = parent;
    }
    return f;
}

static int frame_set(rstate *st, frame *f, tv name, tv v)
{
    for (uint32_t i = 0; i < f->n; i++)
        if (f->k[i].len == name.len && memcmp(f->k[i].u.s, name.u.s, name.len) == 0) {
            f->v[i] = v;
            return 0;
        }
    if (f->n == f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 4;
        tv *k = vial_arena_alloc(st->a, cap * sizeof(tv)), *v2 = vial_arena_alloc(st->a, cap * sizeof(tv));
        if (!k || !v2)
            return OOM(st);
        if (f->n) {
            memcpy(k, f->k, f->n * sizeof(tv));
            memcpy(v2, f->v, f->n * sizeof(tv));
        }
        f->k = k, f->v = v2, f->cap = cap;
    }
    f->k[f->n] = name;
    f->v[f->n++] = v;
    return 0;
}

static bool frame_find(frame *f, const char *s, uint32_t n, tv *out)
{
    bool is_loop = n == 4 && memcmp(s, "loop", 4) == 0;
    for (; f; f = f->parent) {
        for (uint32_t i = f->n; i-- > 0;)
            if (f->k[i].len == n && memcmp(f->k[i].u.s, s, n) == 0) {
                *out = f->v[i];
                return true;
            }
        if (is_loop && f->hides_loop)
            return false;
    }
    return false;
}

static int fn_range(vial_tmpl_call *c, tv *ret);
static int fn_dict(vial_tmpl_call *c, tv *ret);
static int fn_namespace(vial_tmpl_call *c, tv *ret);
static int fn_joiner(vial_tmpl_call *c, tv *ret);
static const tfunc builtin_fns[] = {
    {fn_range, NULL, "range"},
    {fn_dict, NULL, "dict"},
    {fn_namespace, NULL, "namespace"},
    {fn_joiner, NULL, "joiner"},
};

static tv lookup(rstate *st, tv name)
{
    tv v;
    if (frame_find(st->fr, name.u.s, name.len, &v))
        return v;
    if (tv_dict_findn(st->tc->ctx, name.u.s, name.len, &v))
        return v;
    if (tv_dict_findn(st->env->globals, name.u.s, name.len, &v))
        return v;
    if (name_is(name, "self"))
        return (tv){.kind = TV_SELF, .u.p = st->tc};
    if (name_is(name, "super") && st->blk) {
        tblockref *r = vial_arena_alloc(st->a, sizeof *r);
        if (r) {
            r->bc = st->blk;
            r->level = st->blk_level + 1;
            r->tc = st->tc;
            return (tv){.kind = TV_BLOCKFN, .u.p = r};
        }
    }
    for (size_t i = 0; i < sizeof builtin_fns / sizeof builtin_fns[0]; i++)
        if (name_is(name, builtin_fns[i].name))
            return (tv){.kind = TV_FUNC, .u.p = (void *)&builtin_fns[i]};
    return (tv){.kind = TV_UNDEF, .len = name.len, .u.s = name.u.s};
}

static int undefined_error(rstate *st, tv u)
{
    if (u.u.s && u.len)
        return RERR(st, "'%.*s' is undefined", (int)u.len, u.u.s);
    return RERR(st, "undefined value");
}

/* --- output ------------------------------------------------------------------ */

static int emit(rstate *st, const char *s, size_t n)
{
    if (st->discard)
        return 0;
    return sb_put(st->out, s, n) ? OOM(st) : 0;
}

int write_value(rstate *st, vial_tmpl_out *o, tv v, bool autoescape)
{
    int r;
    if (v.kind == TV_STR)
        r = autoescape && !(v.flags & VIAL_TMPL_SAFE) ? sb_esc(o, v.u.s, v.len) : sb_put(o, v.u.s, v.len);
    else if (!autoescape || v.kind == TV_INT || v.kind == TV_FLOAT || v.kind == TV_BOOL || v.kind == TV_NONE)
        r = tv_write_str(o, v);
    else {
        tv s = tv_to_str(st->a, v);
        r = sb_esc(o, s.u.s, s.len);
    }
    return r ? OOM(st) : 0;
}

tv markup_escape(rstate *st, tv v)
{
    if (tv_is_safe(v))
        return v;
    tv s = tv_to_str(st->a, v);
    sbuf b;
    sb_init(&b, st->a);
    if (sb_esc(b.o, s.u.s, s.len) != 0)
        return tv_safe("", 0);
    return tv_safe(b.o->data ? b.o->data : "", b.o->len);
}

/* Output captured into a string (macro bodies, block set, super()). */
typedef struct capture {
    vial_tmpl_out *saved;
    bool saved_discard;
    sbuf b;
} capture;

static void cap_begin(rstate *st, capture *c)
{
    sb_init(&c->b, st->a);
    c->saved = st->out;
    c->saved_discard = st->discard;
    st->out = c->b.o;
    st->discard = false;
}

static tv cap_end(rstate *st, capture *c, bool safe)
{
    st->out = c->saved;
    st->discard = c->saved_discard;
    const char *s = c->b.o->data ? c->b.o->data : "";
    return safe ? tv_safe(s, c->b.o->len) : tv_str(s, c->b.o->len);
}

/* --- iteration ---------------------------------------------------------------- */

static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

int iter_list(rstate *st, tv v, tlist **out)
{
    static tlist empty;
    switch (v.kind) {
    case TV_LIST:
        *out = v.u.p;
        return 0;
    case TV_UNDEF:
        *out = &empty;
        return 0;
    case TV_DICT: case TV_MODULE: {
        tdict *d = v.u.p;
        tv l = tv_list_new(st->a, d->n);
        if (l.kind != TV_LIST)
            return OOM(st);
        if (d->n)
            memcpy(tv_list(l)->v, d->k, d->n * sizeof(tv));
        tv_list(l)->n = d->n;
        *out = l.u.p;
        return 0;
    }
    case TV_STR: {
        tv l = tv_list_new(st->a, v.len);
        if (l.kind != TV_LIST)
            return OOM(st);
        for (uint32_t i = 0; i < v.len;) {
            size_t n = utf8_len((unsigned char)v.u.s[i]);
            if (i + n > v.len)
                n = v.len - i;
            tv c = tv_str(v.u.s + i, n); /* iterating Markup gives plain str */
            tv_list(l)->v[tv_list(l)->n++] = c;
            i += (uint32_t)n;
        }
        *out = l.u.p;
        return 0;
    }
    default:
        return RERR(st, "'%s' object is not iterable", tv_type_name(v));
    }
}

/* --- attributes and items ----------------------------------------------------- */

static int loop_attr(rstate *st, tloop *l, tv name, tv *out)
{
    int64_t i = l->i, n = l->len;
    if (name_is(name, "index")) *out = tv_int(i + 1);
    else if (name_is(name, "index0")) *out = tv_int(i);
    else if (name_is(name, "revindex")) *out = tv_int(n - i);
    else if (name_is(name, "revindex0")) *out = tv_int(n - i - 1);
    else if (name_is(name, "first")) *out = tv_bool(i == 0);
    else if (name_is(name, "last")) *out = tv_bool(i == n - 1);
    else if (name_is(name, "length")) *out = tv_int(n);
    else if (name_is(name, "depth")) *out = tv_int(l->depth);
    else if (name_is(name, "depth0")) *out = tv_int(l->depth - 1);
    else if (name_is(name, "previtem")) *out = i > 0 ? l->items->v[i - 1] : TV(TV_UNDEF);
    else if (name_is(name, "nextitem")) *out = i + 1 < n ? l->items->v[i + 1] : TV(TV_UNDEF);
    else if (name_is(name, "cycle") || name_is(name, "changed")) {
        tmethod *m = vial_arena_alloc(st->a, sizeof *m);
        if (!m)
            return OOM(st);
        m->id = name_is(name, "cycle") ? -1 : -2;
        m->self = (tv){.kind = TV_LOOP, .u.p = l};
        *out = (tv){.kind = TV_METHOD, .u.p = m};
    } else
        *out = TV(TV_UNDEF);
    return 0;
}

static blockchain *find_chain(tctx *tc, const char *s, size_t n)
{
    for (blockchain *b = tc->blocks; b; b = b->next)
        if (b->len == n && memcmp(b->name, s, n) == 0)
            return b;
    return NULL;
}

int get_attr(rstate *st, tv obj, const char *s, size_t n, tv *out)
{
    tv name = tv_str(s, n);
    *out = TV(TV_UNDEF);
    switch (obj.kind) {
    case TV_UNDEF:
        return undefined_error(st, obj);
    case TV_DICT:
        /* Jinja tries the attribute before the item: d.items is the method
         * even when d has an "items" key */
        if ((n == 5 && (memcmp(s, "items", 5) == 0)) || (n == 4 && memcmp(s, "keys", 4) == 0) ||
            (n == 6 && memcmp(s, "values", 6) == 0) || (n == 3 && memcmp(s, "get", 3) == 0))
            return str_method(st, obj, s, n, out);
        tv_dict_find(obj, name, out);
        return 0;
    case TV_MODULE:
        tv_dict_find(obj, name, out);
        return 0;
    case TV_STR: case TV_LIST:
        return str_method(st, obj, s, n, out);
    case TV_LOOP:
        return loop_attr(st, obj.u.p, name, out);
    case TV_OBJECT: {
        tobject *o = obj.u.p;
        if (o->attr(o->data, s, n, st->a, out) != 0)
            return rs_fail(st, -ERANGE, "%s.%.*s: failed", o->name, (int)n, s);
        return 0;
    }
    case TV_SELF: {
        blockchain *bc = find_chain(obj.u.p, s, n);
        if (!bc)
            return 0;
        tblockref *r = vial_arena_alloc(st->a, sizeof *r);
        if (!r)
            return OOM(st);
        r->bc = bc;
        r->level = 0;
        r->tc = obj.u.p;
        *out = (tv){.kind = TV_BLOCKFN, .u.p = r};
        return 0;
    }
    default:
        return 0;
    }
}

/* code-point index i of a UTF-8 string (negative from the end) */
static bool utf8_at(tv s, int64_t i, tv *out)
{
    int64_t n = 0;
    for (uint32_t p = 0; p < s.len; p += (uint32_t)utf8_len((unsigned char)s.u.s[p]))
        n++;
    if (i < 0)
        i += n;
    if (i < 0 || i >= n)
        return false;
    uint32_t p = 0;
    for (int64_t k = 0; k < i; k++)
        p += (uint32_t)utf8_len((unsigned char)s.u.s[p]);
    size_t l = utf8_len((unsigned char)s.u.s[p]);
    if (p + l > s.len)
        l = s.len - p;
    *out = tv_str(s.u.s + p, l);
    out->flags = s.flags;
    return true;
}

int get_item(rstate *st, tv obj, tv key, tv *out)
{
    *out = TV(TV_UNDEF);
    switch (obj.kind) {
    case TV_UNDEF:
        return undefined_error(st, obj);
    case TV_LIST:
        if (key.kind == TV_INT || key.kind == TV_BOOL) {
            tlist *l = obj.u.p;
            int64_t i = key.u.i < 0 ? key.u.i + l->n : key.u.i;
            if (i >= 0 && i < l->n)
                *out = l->v[i];
            return 0;
        }
        break;
    case TV_DICT: case TV_MODULE:
        if (key.kind == TV_DICT || (key.kind == TV_LIST && !(key.flags & VIAL_TMPL_TUPLE)))
            return RERR(st, "unhashable type: '%s'", tv_type_name(key));
        if (tv_dict_find(obj, key, out))
            return 0;
        break;
    case TV_STR:
        if (key.kind == TV_INT || key.kind == TV_BOOL) {
            utf8_at(obj, key.u.i, out);
            return 0;
        }
        break;
    default:
        break;
    }
    if (key.kind == TV_STR)
        return get_attr(st, obj, key.u.s, key.len, out);
    return 0;
}

static int slice_value(rstate *st, tv obj, node *n, tv *out)
{
    tv a = TV(TV_NONE), b = TV(TV_NONE), c = TV(TV_NONE);
    if (n->b) TRY(eval(st, n->b, &a));
    if (n->c) TRY(eval(st, n->c, &b));
    if (n->d) TRY(eval(st, n->d, &c));
    if (obj.kind == TV_UNDEF)
        return undefined_error(st, obj);
    /* lists of code points for strings */
    bool is_str = obj.kind == TV_STR;
    tlist *src;
    if (obj.kind != TV_LIST && !is_str) {
        *out = TV(TV_UNDEF);
        return 0;
    }
    TRY(iter_list(st, obj, &src));
    int64_t len = src->n, step = 1, start, stop;
    if (c.kind != TV_NONE && tv_to_int(c, &step) != 0)
        return RERR(st, "slice indices must be integers or None");
    if (step == 0)
        return RERR(st, "slice step cannot be zero");
    int64_t lo = step < 0 ? -1 : 0, hi = step < 0 ? len - 1 : len;
    if (a.kind == TV_NONE) start = step < 0 ? hi : lo;
    else {
        if (tv_to_int(a, &start) != 0 || a.kind == TV_FLOAT)
            return RERR(st, "slice indices must be integers or None");
        if (start < 0) { start += len; if (start < lo) start = lo; }
        else if (start > hi) start = hi;
    }
    if (b.kind == TV_NONE) stop = step < 0 ? lo : hi;
    else {
        if (tv_to_int(b, &stop) != 0 || b.kind == TV_FLOAT)
            return RERR(st, "slice indices must be integers or None");
        if (stop < 0) { stop += len; if (stop < lo) stop = lo; }
        else if (stop > hi) stop = hi;
    }
    tv l = tv_list_new(st->a, 0);
    if (l.kind != TV_LIST)
        return OOM(st);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
        if (tv_list_push(st->a, l, src->v[i]))
            return OOM(st);
    if (is_str) {
        sbuf sb;
        sb_init(&sb, st->a);
        for (uint32_t i = 0; i < tv_list(l)->n; i++)
            if (sb_put(sb.o, tv_list(l)->v[i].u.s, tv_list(l)->v[i].len))
                return OOM(st);
        *out = tv_str(sb.o->data ? sb.o->data : "", sb.o->len);
        out->flags = obj.flags;
    } else {
        l.flags = obj.flags;
        *out = l;
    }
    return 0;
}

/* --- calls ---------------------------------------------------------------------- */

static int exec_body(rstate *st, node *n);

/* Renders body into a string in a scope of its own (Jinja's frame.inner()):
 * what a block set or a filter block works on. */
static int capture_scoped(rstate *st, node *body, tv *out)
{
    frame *f = frame_new(st, st->fr), *sfr = st->fr;
    if (!f)
        return OOM(st);
    capture c;
    cap_begin(st, &c);
    st->fr = f;
    int r = exec_body(st, body);
    st->fr = sfr;
    *out = cap_end(st, &c, cur_autoescape(st));
    return r;
}
static int run_loop(rstate *st, node *n, tv seq, int depth);
static int render_block(rstate *st, tctx *tc, blockchain *bc, uint32_t level, frame *parent);

static int call_macro(rstate *st, tmacro *m, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out)
{
    if (++st->depth > MAX_DEPTH)
        return RERR(st, "maximum recursion depth exceeded");
    bool markup = ctx_autoescape(st); /* the calling context's setting */
    int8_t saved_ae = st->ae;
    st->ae = m->ae;
    frame *f = frame_new(st, m->closure);
    if (!f)
        return OOM(st);
    node *params = m->is_caller ? m->def->b : m->def->a;
    node *body = m->is_caller ? m->def->c : m->def->b;
    tctx *saved_tc = st->tc;
    frame *saved_fr = st->fr;
    vial_tmpl *saved_t = st->curt;
    blockchain *saved_blk = st->blk;
    uint32_t saved_lv = st->blk_level;
    st->tc = m->tc;
    st->curt = m->tc->t;
    st->fr = f;
    int pi = 0;
    bool *used = nkw ? vial_arena_alloc(st->a, (size_t)nkw) : NULL;
    if (nkw && !used)
        return OOM(st);
    if (nkw)
        memset(used, 0, (size_t)nkw);
    for (node *p = params; p; p = p->next, pi++) {
        tv v = TV(TV_UNDEF);
        bool have = false;
        if (pi < nargs) {
            v = args[pi];
            have = true;
        }
        for (int k = 0; k < nkw; k++)
            if (kwn[k].len == p->v.len && memcmp(kwn[k].u.s, p->v.u.s, p->v.len) == 0) {
                if (have) {
                    st->tc = saved_tc;
                    return RERR(st, "macro '%.*s' got multiple values for argument '%.*s'",
                                (int)m->def->v.len, m->def->v.u.s, (int)p->v.len, p->v.u.s);
                }
                v = kwv[k];
                have = true;
                used[k] = true;
            }
        if (!have && p->a)
            TRY(eval(st, p->a, &v));
        else if (!have)
            v = (tv){.kind = TV_UNDEF, .len = p->v.len, .u.s = p->v.u.s};
        TRY(frame_set(st, f, p->v, v));
    }
    tv varargs = tv_list_new(st->a, 0), kwargs = tv_dict_new(st->a, 0);
    if (varargs.kind != TV_LIST || kwargs.kind != TV_DICT)
        return OOM(st);
    for (int i = pi; i < nargs; i++)
        if (tv_list_push(st->a, varargs, args[i]))
            return OOM(st);
    varargs.flags = VIAL_TMPL_TUPLE;
    tv caller = m->caller;
    for (int k = 0; k < nkw; k++) {
        if (used[k])
            continue;
        if (name_is(kwn[k], "caller") && !m->is_caller) {
            caller = kwv[k];
            continue;
        }
        if (tv_dict_put(st->a, kwargs, kwn[k], kwv[k]))
            return OOM(st);
    }
    TRY(frame_set(st, f, tv_str("varargs", 7), varargs));
    TRY(frame_set(st, f, tv_str("kwargs", 6), kwargs));
    if (caller.kind != TV_UNDEF)
        TRY(frame_set(st, f, tv_str("caller", 6), caller));
    capture c;
    cap_begin(st, &c);
    st->blk = NULL;
    int r = exec_body(st, body);
    *out = cap_end(st, &c, markup);
    st->ae = saved_ae;
    st->tc = saved_tc;
    st->fr = saved_fr;
    st->curt = saved_t;
    st->blk = saved_blk;
    st->blk_level = saved_lv;
    st->depth--;
    return r;
}

int call_value(rstate *st, tv f, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out)
{
    *out = TV(TV_UNDEF);
    switch (f.kind) {
    case TV_MACRO:
        return call_macro(st, f.u.p, nargs, args, kwn, kwv, nkw, out);
    case TV_FUNC: {
        tfunc *fn = f.u.p;
        vial_tmpl_call c = {.arena = st->a, .data = fn->data, .nargs = (size_t)nargs, .args = args,
                            .nkw = (size_t)nkw, .kwnames = kwn, .kwargs = kwv};
        int r = fn->fn(&c, out);
        if (r != 0)
            return rs_fail(st, -ERANGE, "%s: %s", fn->name ? fn->name : "function",
                           c.msg ? c.msg : "failed");
        return 0;
    }
    case TV_METHOD:
        return call_method(st, f.u.p, nargs, args, kwn, kwv, nkw, out);
    case TV_BLOCKFN: {
        tblockref *r = f.u.p;
        if (r->level >= r->bc->n)
            return RERR(st, "there is no parent block called '%.*s'.", (int)r->bc->len, r->bc->name);
        capture c;
        cap_begin(st, &c);
        /* super() renders with the current block's context; self.x() with the template's */
        frame *parent = r->level > 0 && st->blk_frame ? st->blk_frame : r->tc->root;
        int rr = render_block(st, r->tc, r->bc, r->level, parent);
        *out = cap_end(st, &c, r->tc->t->autoescape);
        return rr;
    }
    case TV_LOOP: {
        tloop *l = f.u.p;
        if (!(l->def->op & F_RECURSIVE))
            return RERR(st, "The loop must be marked as 'recursive' to be called");
        if (nargs != 1)
            return RERR(st, "loop() takes exactly one argument");
        if (++st->depth > MAX_DEPTH)
            return RERR(st, "maximum recursion depth exceeded");
        capture c;
        cap_begin(st, &c);
        frame *saved = st->fr;
        st->fr = l->outer;
        int r = run_loop(st, l->def, args[0], l->depth + 1);
        st->fr = saved;
        *out = cap_end(st, &c, cur_autoescape(st));
        st->depth--;
        return r;
    }
    case TV_UNDEF:
        return undefined_error(st, f);
    default:
        return RERR(st, "'%s' object is not callable", tv_type_name(f));
    }
}

/* evaluates call arguments: positional into args, keywords into kwn/kwv */
typedef struct argv {
    int n, nkw;
    tv *v, *kwn, *kwv;
} argv;

static int eval_args(rstate *st, node *a, argv *out, int extra_kw)
{
    int cap = 0, kcap = extra_kw;
    for (node *p = a; p; p = p->next)
        if (p->type == N_KWARG) kcap++;
        else if (p->type == N_STARARGS || p->type == N_STARKW) cap += 0;
        else cap++;
    /* star arguments expand: evaluate them first to size the arrays */
    tv stars[8];
    int ns = 0;
    for (node *p = a; p; p = p->next)
        if (p->type == N_STARARGS || p->type == N_STARKW) {
            if (ns == 8)
                return RERR(st, "too many * arguments");
            TRY(eval(st, p->a, &stars[ns]));
            tv s = stars[ns++];
            if (p->type == N_STARARGS) {
                tlist *l;
                TRY(iter_list(st, s, &l));
                cap += (int)l->n;
            } else if (s.kind == TV_DICT) {
                kcap += (int)tv_dict(s)->n;
            } else {
                return RERR(st, "argument after ** must be a mapping");
            }
        }
    out->v = vial_arena_alloc(st->a, (size_t)(cap + 1) * sizeof(tv));
    out->kwn = vial_arena_alloc(st->a, (size_t)(kcap + 1) * sizeof(tv));
    out->kwv = vial_arena_alloc(st->a, (size_t)(kcap + 1) * sizeof(tv));
    if (!out->v || !out->kwn || !out->kwv)
        return OOM(st);
    out->n = out->nkw = 0;
    ns = 0;
    for (node *p = a; p; p = p->next) {
        if (p->type == N_KWARG) {
            out->kwn[out->nkw] = p->v;
            TRY(eval(st, p->a, &out->kwv[out->nkw]));
            out->nkw++;
        } else if (p->type == N_STARARGS) {
            tlist *l;
            TRY(iter_list(st, stars[ns++], &l));
            for (uint32_t i = 0; i < l->n; i++)
                out->v[out->n++] = l->v[i];
        } else if (p->type == N_STARKW) {
            tdict *d = tv_dict(stars[ns++]);
            for (uint32_t i = 0; i < d->n; i++) {
                out->kwn[out->nkw] = tv_to_str(st->a, d->k[i]);
                out->kwv[out->nkw++] = d->v[i];
            }
        } else {
            TRY(eval(st, p, &out->v[out->n]));
            out->n++;
        }
    }
    return 0;
}

static int eval_call(rstate *st, node *n, tv caller, tv *out)
{
    tv f;
    TRY(eval(st, n->a, &f));
    argv av;
    TRY(eval_args(st, n->b, &av, caller.kind != TV_UNDEF));
    if (caller.kind != TV_UNDEF) {
        av.kwn[av.nkw] = tv_str("caller", 6);
        av.kwv[av.nkw++] = caller;
    }
    st->cur = n;
    return call_value(st, f, av.n, av.v, av.kwn, av.kwv, av.nkw, out);
}

/* --- builtin global functions ---------------------------------------------------- */

static int fn_range(vial_tmpl_call *c, tv *ret)
{
    int64_t a = 0, b, s = 1;
    if (c->nargs < 1 || c->nargs > 3) {
        c->msg = "range expected 1 to 3 arguments";
        return -EINVAL;
    }
    for (size_t i = 0; i < c->nargs; i++)
        if (c->args[i].kind != TV_INT && c->args[i].kind != TV_BOOL) {
            c->msg = "'float' object cannot be interpreted as an integer";
            return -EINVAL;
        }
    if (c->nargs == 1)
        b = c->args[0].u.i;
    else {
        a = c->args[0].u.i;
        b = c->args[1].u.i;
        if (c->nargs == 3)
            s = c->args[2].u.i;
    }
    if (s == 0) {
        c->msg = "range() arg 3 must not be zero";
        return -EINVAL;
    }
    double cnt = s > 0 ? ((double)b - (double)a) / (double)s : ((double)a - (double)b) / (double)-s;
    if (cnt * sizeof(tv) > VIAL_TMPL_MAX_BUILD) {
        c->msg = "range too big";
        return -EINVAL;
    }
    tv l = tv_list_new(c->arena, cnt > 0 ? (uint32_t)ceil(cnt) : 0);
    if (l.kind != TV_LIST)
        return -ENOMEM;
    for (int64_t i = a; s > 0 ? i < b : i > b; i += s)
        if (tv_list_push(c->arena, l, tv_int(i)))
            return -ENOMEM;
    *ret = l;
    return 0;
}

static int fn_dict(vial_tmpl_call *c, tv *ret)
{
    tv d = tv_dict_new(c->arena, (uint32_t)c->nkw);
    if (d.kind != TV_DICT)
        return -ENOMEM;
    if (c->nargs == 1 && c->args[0].kind == TV_DICT) {
        tdict *s = tv_dict(c->args[0]);
        for (uint32_t i = 0; i < s->n; i++)
            if (tv_dict_put(c->arena, d, s->k[i], s->v[i]))
                return -ENOMEM;
    }
    for (size_t i = 0; i < c->nkw; i++)
        if (tv_dict_put(c->arena, d, c->kwnames[i], c->kwargs[i]))
            return -ENOMEM;
    *ret = d;
    return 0;
}

/* joiner(sep=", "): a function returning "" the first time, sep after */
typedef struct joiner {
    tv sep;
    bool used;
} joiner;

static int joiner_call(vial_tmpl_call *c, tv *ret)
{
    joiner *j = c->data;
    *ret = j->used ? j->sep : tv_str("", 0);
    j->used = true;
    return 0;
}

static int fn_joiner(vial_tmpl_call *c, tv *ret)
{
    joiner *j = vial_arena_alloc(c->arena, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->sep = c->nargs ? c->args[0] : c->nkw ? c->kwargs[0] : tv_str(", ", 2);
    j->used = false;
    *ret = vial_tmpl_function(c->arena, "joiner", joiner_call, j);
    return ret->kind == TV_FUNC ? 0 : -ENOMEM;
}

static int fn_namespace(vial_tmpl_call *c, tv *ret)
{
    int r = fn_dict(c, ret);
    if (r == 0)
        ret->flags = TV_NAMESPACE;
    return r;
}

/* --- expressions ---------------------------------------------------------------- */


static int concat_values(rstate *st, tv a, tv b, tv *out)
{
    bool ae = cur_autoescape(st) && (tv_is_safe(a) || tv_is_safe(b));
    if (ae) {
        a = markup_escape(st, a);
        b = markup_escape(st, b);
    } else {
        a = tv_to_str(st->a, a);
        b = tv_to_str(st->a, b);
    }
    char *s = vial_arena_alloc(st->a, (size_t)a.len + b.len + 1);
    if (!s)
        return OOM(st);
    if (a.len)
        memcpy(s, a.u.s, a.len);
    if (b.len)
        memcpy(s + a.len, b.u.s, b.len);
    s[a.len + b.len] = 0;
    *out = ae ? tv_safe(s, (size_t)a.len + b.len) : tv_str(s, (size_t)a.len + b.len);
    return 0;
}

static int contains(rstate *st, tv needle, tv hay, bool *res)
{
    switch (hay.kind) {
    case TV_STR:
        if (needle.kind != TV_STR)
            return RERR(st, "'in <string>' requires string as left operand, not %s", tv_type_name(needle));
        *res = needle.len == 0 || (needle.len <= hay.len && memmem(hay.u.s, hay.len, needle.u.s, needle.len));
        return 0;
    case TV_LIST: {
        tlist *l = hay.u.p;
        for (uint32_t i = 0; i < l->n; i++)
            if (tv_eq(l->v[i], needle)) {
                *res = true;
                return 0;
            }
        *res = false;
        return 0;
    }
    case TV_DICT: case TV_MODULE: {
        tv o;
        if (needle.kind == TV_DICT || (needle.kind == TV_LIST && !(needle.flags & VIAL_TMPL_TUPLE)))
            return RERR(st, "unhashable type: '%s'", tv_type_name(needle));
        *res = tv_dict_find(hay, needle, &o);
        return 0;
    }
    case TV_UNDEF:
        *res = false;
        return 0;
    case TV_OBJECT: {
        tv o;
        if (needle.kind != TV_STR)
            return RERR(st, "'in <%s>' requires a string key", tv_type_name(hay));
        TRY(get_attr(st, hay, needle.u.s, needle.len, &o));
        *res = o.kind != TV_UNDEF;
        return 0;
    }
    default:
        return RERR(st, "argument of type '%s' is not iterable", tv_type_name(hay));
    }
}

static int compare(rstate *st, int op, tv a, tv b, bool *res)
{
    switch (op) {
    case OP_EQ: *res = tv_eq(a, b); return 0;
    case OP_NE: *res = !tv_eq(a, b); return 0;
    case OP_IN: return contains(st, a, b, res);
    case OP_NOTIN: TRY(contains(st, a, b, res)); *res = !*res; return 0;
    default: break;
    }
    int c = tv_cmp(a, b);
    if (c == -2) {
        static const char *names[] = {[OP_LT] = "<", [OP_LE] = "<=", [OP_GT] = ">", [OP_GE] = ">="};
        if (a.kind == TV_UNDEF)
            return undefined_error(st, a);
        if (b.kind == TV_UNDEF)
            return undefined_error(st, b);
        return RERR(st, "'%s' not supported between instances of '%s' and '%s'", names[op],
                    tv_type_name(a), tv_type_name(b));
    }
    if (c == 2) { *res = false; return 0; }
    switch (op) {
    case OP_LT: *res = c < 0; break;
    case OP_LE: *res = c <= 0; break;
    case OP_GT: *res = c > 0; break;
    default: *res = c >= 0; break;
    }
    return 0;
}

static int apply_filter(rstate *st, node *n, tv subject, tv *out)
{
    argv av;
    TRY(eval_args(st, n->b, &av, 0));
    st->cur = n;
    const builtin *b = n->fn;
    return ((filt_fn)b->fn)(st, subject, av.n, av.v, av.kwn, av.kwv, av.nkw, out);
}

/* a chain of filters whose innermost subject is NULL (block set, filter block) */
static int apply_chain(rstate *st, node *n, tv subject, tv *out)
{
    if (!n) {
        *out = subject;
        return 0;
    }
    tv inner;
    TRY(apply_chain(st, n->a, subject, &inner));
    return apply_filter(st, n, inner, out);
}

/* Integers beyond int64: Python switches to big integers; 128 bits cover
 * what templates compute in practice (2**100, products of big ids), and
 * results print exactly (as TV_BIGINT digits). Beyond that it is an error. */
typedef __int128 i128;

static bool to_i128(tv v, i128 *out)
{
    if (v.kind == TV_INT || v.kind == TV_BOOL) {
        *out = v.u.i;
        return true;
    }
    if (v.kind != TV_BIGINT)
        return false;
    const char *p = v.u.s, *e = p + v.len;
    bool neg = p < e && *p == '-';
    if (neg)
        p++;
    i128 r = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9' || __builtin_mul_overflow(r, 10, &r) ||
            __builtin_add_overflow(r, *p - '0', &r))
            return false;
    }
    *out = neg ? -r : r;
    return true;
}

static int from_i128(rstate *st, i128 v, tv *out)
{
    if (v >= INT64_MIN && v <= INT64_MAX) {
        *out = tv_int((int64_t)v);
        return 0;
    }
    char tmp[48];
    int n = 0;
    unsigned __int128 u = v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;
    while (u) {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    }
    char *d = vial_arena_alloc(st->a, (size_t)n + 2);
    if (!d)
        return OOM(st);
    int k = 0;
    if (v < 0)
        d[k++] = '-';
    while (n)
        d[k++] = tmp[--n];
    d[k] = 0;
    *out = (tv){.kind = TV_BIGINT, .len = (uint32_t)k, .u.s = d};
    return 0;
}

static int big_arith(rstate *st, int op, i128 x, i128 y, tv *out)
{
    i128 r;
    bool of = false;
    switch (op) {
    case OP_ADD: of = __builtin_add_overflow(x, y, &r); break;
    case OP_SUB: of = __builtin_sub_overflow(x, y, &r); break;
    case OP_MUL: of = __builtin_mul_overflow(x, y, &r); break;
    case OP_DIV:
        if (y == 0)
            return RERR(st, "division by zero");
        *out = tv_float((double)x / (double)y);
        return 0;
    case OP_FLOORDIV: case OP_MOD: {
        if (y == 0)
            return RERR(st, "integer division or modulo by zero");
        if (y == -1) {
            of = __builtin_mul_overflow(x, -1, &r);
            if (op == OP_MOD)
                r = 0, of = false;
            break;
        }
        i128 q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0)))
            q--, m += y;
        r = op == OP_MOD ? m : q;
        break;
    }
    case OP_POW: {
        if (y < 0) {
            *out = tv_float(pow((double)x, (double)y));
            return 0;
        }
        i128 acc = 1, base = x;
        while (y > 0 && !of) {
            if (y & 1)
                of |= __builtin_mul_overflow(acc, base, &acc);
            y >>= 1;
            if (y)
                of |= __builtin_mul_overflow(base, base, &base);
        }
        r = acc;
        break;
    }
    default:
        return RERR(st, "bad operator");
    }
    if (of)
        return RERR(st, "integer result too large (more than 128 bits)");
    return from_i128(st, r, out);
}

/* Deep recursion (macros, includes, nested expressions) ends in an error
 * before it reaches the end of the C stack (a coroutine's is small). */
static int stack_check(rstate *st)
{
    const char *here = __builtin_frame_address(0);
    if ((size_t)(st->stack_base - here) > st->env->stack_limit)
        return RERR(st, "maximum recursion depth exceeded (template nested too deeply)");
    return 0;
}

/* Would Jinja's optimizer fold n into a constant? (numbers and operators) */
static bool is_const(const node *n)
{
    switch (n->type) {
    case N_CONST: return true;
    case N_NEG: case N_POS: return is_const(n->a);
    case N_BINOP: case N_CONCAT: return is_const(n->a) && is_const(n->b);
    default: return false;
    }
}

int eval(rstate *st, node *n, tv *out)
{
    st->cur = n;
    if ((size_t)(st->stack_base - (const char *)__builtin_frame_address(0)) > st->env->stack_limit)
        return stack_check(st);
    switch (n->type) {
    case N_CONST:
        *out = n->v;
        return 0;
    case N_NAME:
        *out = lookup(st, n->v);
        return 0;
    case N_LIST: case N_TUPLE: {
        tv l = tv_list_new(st->a, 0);
        if (l.kind != TV_LIST)
            return OOM(st);
        for (node *p = n->a; p; p = p->next) {
            tv v;
            TRY(eval(st, p, &v));
            if (tv_list_push(st->a, l, v))
                return OOM(st);
        }
        if (n->type == N_TUPLE)
            l.flags = VIAL_TMPL_TUPLE;
        *out = l;
        return 0;
    }
    case N_DICT: {
        tv d = tv_dict_new(st->a, 0);
        if (d.kind != TV_DICT)
            return OOM(st);
        for (node *p = n->a; p; p = p->next) {
            tv k, v;
            TRY(eval(st, p->a, &k));
            TRY(eval(st, p->b, &v));
            if (k.kind == TV_LIST && !(k.flags & VIAL_TMPL_TUPLE))
                return RERR(st, "unhashable type: 'list'");
            if (tv_dict_put(st->a, d, k, v))
                return OOM(st);
        }
        *out = d;
        return 0;
    }
    case N_GETATTR: {
        tv o;
        TRY(eval(st, n->a, &o));
        st->cur = n;
        return get_attr(st, o, n->v.u.s, n->v.len, out);
    }
    case N_GETITEM: {
        tv o, k;
        TRY(eval(st, n->a, &o));
        TRY(eval(st, n->b, &k));
        st->cur = n;
        return get_item(st, o, k, out);
    }
    case N_SLICE: {
        tv o;
        if (!n->a) /* x[1:, 2]: a slice inside a subscript tuple */
            return RERR(st, "unsupported subscript: a slice in a tuple");
        TRY(eval(st, n->a, &o));
        return slice_value(st, o, n, out);
    }
    case N_CALL:
        return eval_call(st, n, TV(TV_UNDEF), out);
    case N_FILTER: {
        tv v;
        TRY(eval(st, n->a, &v));
        return apply_filter(st, n, v, out);
    }
    case N_TEST: {
        tv v;
        TRY(eval(st, n->a, &v));
        argv av;
        TRY(eval_args(st, n->b, &av, 0));
        st->cur = n;
        bool res = false;
        const builtin *b = n->fn;
        TRY(((test_fn)b->fn)(st, v, av.n, av.v, &res));
        *out = tv_bool(res);
        return 0;
    }
    case N_BINOP: {
        tv a, b;
        TRY(eval(st, n->a, &a));
        TRY(eval(st, n->b, &b));
        st->cur = n;
        if (n->op == OP_POW && is_const(n->a) && !is_const(n->b) && tv_is_num(a) && tv_num(a) < 0) {
            /* Jinja folds a constant base into a literal and emits "-2 ** x",
             * which Python reads as -(2 ** x) */
            tv pos, r;
            TRY(arith(st, OP_SUB, tv_int(0), a, &pos));
            TRY(arith(st, OP_POW, pos, b, &r));
            return arith(st, OP_SUB, tv_int(0), r, out);
        }
        return arith(st, n->op, a, b, out);
    }
    case N_CONCAT: {
        tv a, b;
        TRY(eval(st, n->a, &a));
        TRY(eval(st, n->b, &b));
        return concat_values(st, a, b, out);
    }
    case N_NEG: case N_POS: {
        tv a;
        TRY(eval(st, n->a, &a));
        st->cur = n;
        if (a.kind == TV_BIGINT) {
            i128 x;
            if (!to_i128(a, &x))
                return RERR(st, "integer too large");
            return from_i128(st, n->type == N_NEG ? -x : x, out);
        }
        if (a.kind == TV_INT || a.kind == TV_BOOL) {
            if (n->type == N_NEG && a.u.i == INT64_MIN)
                return from_i128(st, -(i128)a.u.i, out);
            *out = tv_int(n->type == N_NEG ? -a.u.i : a.u.i);
        } else if (a.kind == TV_FLOAT) {
            *out = tv_float(n->type == N_NEG ? -a.u.d : a.u.d);
        } else if (a.kind == TV_UNDEF) {
            return undefined_error(st, a);
        } else {
            return RERR(st, "bad operand type for unary %c: '%s'", n->type == N_NEG ? '-' : '+', tv_type_name(a));
        }
        return 0;
    }
    case N_NOT: {
        tv a;
        TRY(eval(st, n->a, &a));
        *out = tv_bool(!tv_truth(a));
        return 0;
    }
    case N_AND: case N_OR: {
        tv a;
        TRY(eval(st, n->a, &a));
        if (tv_truth(a) == (n->type == N_OR)) {
            *out = a;
            return 0;
        }
        return eval(st, n->b, out);
    }
    case N_CMP: {
        tv a;
        TRY(eval(st, n->a, &a));
        for (node *c = n->b; c; c = c->next) {
            tv b;
            TRY(eval(st, c->a, &b));
            bool res;
            st->cur = c;
            TRY(compare(st, c->op, a, b, &res));
            if (!res) {
                *out = tv_bool(false);
                return 0;
            }
            a = b;
        }
        *out = tv_bool(true);
        return 0;
    }
    case N_CONDEXPR: {
        tv c;
        TRY(eval(st, n->b, &c));
        if (tv_truth(c))
            return eval(st, n->a, out);
        if (n->c)
            return eval(st, n->c, out);
        *out = TV(TV_UNDEF);
        return 0;
    }
    default:
        return RERR(st, "bad expression");
    }
}

/* Python's float //: from fmod, so 1 // 0.1 is 9.0 (0.1 is a bit more
 * than a tenth), not floor(1 / 0.1) = 10.0 */
static double py_floordiv(double vx, double wx)
{
    double mod = fmod(vx, wx), div = (vx - mod) / wx;
    if (mod != 0 && ((wx < 0) != (mod < 0)))
        div -= 1.0;
    if (div == 0)
        return copysign(0.0, vx / wx);
    double fl = floor(div);
    if (div - fl > 0.5)
        fl += 1.0;
    return fl;
}

static double py_fmod(double a, double b)
{
    double m = fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0)))
        m += b;
    return m;
}

int arith(rstate *st, int op, tv a, tv b, tv *out)
{
    bool ai = a.kind == TV_INT || a.kind == TV_BOOL, bi = b.kind == TV_INT || b.kind == TV_BOOL;
    bool an = ai || a.kind == TV_FLOAT || a.kind == TV_BIGINT, bn = bi || b.kind == TV_FLOAT || b.kind == TV_BIGINT;
    if (an && bn) {
        i128 bx, by;
        if ((a.kind == TV_BIGINT || b.kind == TV_BIGINT) && to_i128(a, &bx) && to_i128(b, &by))
            return big_arith(st, op, bx, by, out);
        if (ai && bi) {
            int64_t x = a.u.i, y = b.u.i, r;
            switch (op) {
            case OP_ADD: case OP_SUB: case OP_MUL: {
                bool of = op == OP_ADD ? __builtin_add_overflow(x, y, &r)
                        : op == OP_SUB ? __builtin_sub_overflow(x, y, &r) : __builtin_mul_overflow(x, y, &r);
                if (of)
                    return big_arith(st, op, x, y, out);
                *out = tv_int(r);
                return 0;
            }
            case OP_DIV:
                if (y == 0)
                    return RERR(st, "division by zero");
                *out = tv_float((double)x / (double)y);
                return 0;
            case OP_FLOORDIV: case OP_MOD: {
                if (y == 0)
                    return RERR(st, op == OP_MOD ? "integer modulo by zero" : "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1)
                    return big_arith(st, op, x, y, out);
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0)))
                    q--, m += y;
                *out = tv_int(op == OP_MOD ? m : q);
                return 0;
            }
            case OP_POW: {
                if (y < 0) {
                    if (x == 0)
                        return RERR(st, "0.0 cannot be raised to a negative power");
                    *out = tv_float(pow((double)x, (double)y));
                    return 0;
                }
                int64_t acc = 1, base = x;
                bool of = false;
                while (y > 0) {
                    if (y & 1)
                        of |= __builtin_mul_overflow(acc, base, &acc);
                    y >>= 1;
                    if (y)
                        of |= __builtin_mul_overflow(base, base, &base);
                }
                if (of)
                    return big_arith(st, op, x, b.u.i, out);
                *out = tv_int(acc);
                return 0;
            }
            }
        }
        double x = tv_num(a), y = tv_num(b);
        switch (op) {
        case OP_ADD: *out = tv_float(x + y); return 0;
        case OP_SUB: *out = tv_float(x - y); return 0;
        case OP_MUL: *out = tv_float(x * y); return 0;
        case OP_DIV:
            if (y == 0)
                return RERR(st, "float division by zero");
            *out = tv_float(x / y);
            return 0;
        case OP_FLOORDIV:
            if (y == 0)
                return RERR(st, "float floor division by zero");
            *out = tv_float(py_floordiv(x, y));
            return 0;
        case OP_MOD:
            if (y == 0)
                return RERR(st, "float modulo");
            *out = tv_float(py_fmod(x, y));
            return 0;
        case OP_POW:
            if (x == 0 && y < 0)
                return RERR(st, "0.0 cannot be raised to a negative power");
            if (x < 0 && y != floor(y))
                return RERR(st, "complex results are not supported");
            *out = tv_float(pow(x, y));
            if (isinf(out->u.d) && isfinite(x) && isfinite(y))
                return RERR(st, "(34, 'Numerical result out of range')"); /* Python's OverflowError */
            return 0;
        }
    }
    if (a.kind == TV_UNDEF)
        return undefined_error(st, a);
    if (b.kind == TV_UNDEF)
        return undefined_error(st, b);
    if (op == OP_ADD && a.kind == TV_STR && b.kind == TV_STR)
        return concat_values(st, a, b, out);
    if (op == OP_ADD && a.kind == TV_LIST && b.kind == TV_LIST &&
        (a.flags & VIAL_TMPL_TUPLE) == (b.flags & VIAL_TMPL_TUPLE)) {
        tv l = tv_list_new(st->a, tv_list(a)->n + tv_list(b)->n);
        if (l.kind != TV_LIST)
            return OOM(st);
        for (uint32_t i = 0; i < tv_list(a)->n; i++)
            tv_list(l)->v[tv_list(l)->n++] = tv_list(a)->v[i];
        for (uint32_t i = 0; i < tv_list(b)->n; i++)
            tv_list(l)->v[tv_list(l)->n++] = tv_list(b)->v[i];
        l.flags = a.flags;
        *out = l;
        return 0;
    }
    if (op == OP_MUL && ((a.kind == TV_STR && bi) || (ai && b.kind == TV_STR) ||
                         (a.kind == TV_LIST && bi) || (ai && b.kind == TV_LIST))) {
        tv s = ai ? b : a;
        int64_t k = ai ? a.u.i : b.u.i;
        if (k < 0)
            k = 0;
        if (s.kind == TV_STR) {
            if ((double)s.len * (double)k > (double)VIAL_TMPL_MAX_BUILD)
                return RERR(st, "string too large");
            char *p = vial_arena_alloc(st->a, (size_t)(s.len * k) + 1);
            if (!p)
                return OOM(st);
            for (int64_t i = 0; i < k; i++)
                if (s.len)
                    memcpy(p + i * s.len, s.u.s, s.len);
            *out = tv_str(p, (size_t)(s.len * k));
            out->flags = s.flags;
            return 0;
        }
        if ((double)tv_list(s)->n * (double)k * sizeof(tv) > (double)VIAL_TMPL_MAX_BUILD)
            return RERR(st, "list too large");
        tv l = tv_list_new(st->a, (uint32_t)(tv_list(s)->n * k));
        if (l.kind != TV_LIST)
            return OOM(st);
        for (int64_t i = 0; i < k; i++)
            for (uint32_t j = 0; j < tv_list(s)->n; j++)
                tv_list(l)->v[tv_list(l)->n++] = tv_list(s)->v[j];
        l.flags = s.flags;
        *out = l;
        return 0;
    }
    if (op == OP_MOD && a.kind == TV_STR) {
        if (b.kind == TV_LIST && (b.flags & VIAL_TMPL_TUPLE))
            return py_format(st, a, (int)tv_list(b)->n, tv_list(b)->v, out);
        return py_format(st, a, -1, &b, out);
    }
    static const char *ops[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    return RERR(st, "unsupported operand type(s) for %s: '%s' and '%s'", ops[op], tv_type_name(a),
                tv_type_name(b));
}

/* --- statements ------------------------------------------------------------------ */

static int assign(rstate *st, frame *f, node *target, tv v)
{
    if (target->type == N_NAME)
        return frame_set(st, f, target->v, v);
    if (target->type == N_GETATTR) {
        /* {% set ns.attr = v %}: only namespace() objects take attributes */
        tv ns = lookup(st, target->a->v);
        if (ns.kind != TV_DICT || !(ns.flags & TV_NAMESPACE))
            return RERR(st, "cannot assign attribute on non-namespace object");
        return tv_dict_put(st->a, ns, target->v, v) ? OOM(st) : 0;
    }
    /* tuple unpacking */
    tlist *l;
    if (v.kind == TV_UNDEF || (v.kind != TV_LIST && v.kind != TV_STR && v.kind != TV_DICT))
        return RERR(st, "cannot unpack non-iterable %s object", tv_type_name(v));
    TRY(iter_list(st, v, &l));
    uint32_t want = 0;
    for (node *p = target->a; p; p = p->next)
        want++;
    if (l->n < want)
        return RERR(st, "not enough values to unpack (expected %u, got %u)", want, l->n);
    if (l->n > want)
        return RERR(st, "too many values to unpack (expected %u)", want);
    uint32_t i = 0;
    for (node *p = target->a; p; p = p->next)
        TRY(frame_set(st, f, p->v, l->v[i++]));
    return 0;
}

static int exec_for(rstate *st, node *n)
{
    tv seq;
    TRY(eval(st, n->b, &seq));
    return run_loop(st, n, seq, 1);
}

/* one for loop over seq; depth > 1 for the calls of a recursive loop */
static int run_loop(rstate *st, node *n, tv seq, int depth)
{
    tlist *items;
    TRY(iter_list(st, seq, &items));
    frame *f = frame_new(st, st->fr);
    if (!f)
        return OOM(st);
    frame *saved = st->fr;
    st->fr = f;
    if (n->e) {
        /* the inline filter runs first: loop.length counts what it keeps */
        tv kept = tv_list_new(st->a, items->n);
        if (kept.kind != TV_LIST)
            return OOM(st);
        for (uint32_t i = 0; i < items->n; i++) {
            TRY(assign(st, f, n->a, items->v[i]));
            tv c;
            TRY(eval(st, n->e, &c));
            if (tv_truth(c))
                tv_list(kept)->v[tv_list(kept)->n++] = items->v[i];
        }
        items = kept.u.p;
        f->n = 0;
    }
    tloop *lp = vial_arena_alloc(st->a, sizeof *lp);
    if (!lp)
        return OOM(st);
    memset(lp, 0, sizeof *lp);
    lp->items = items;
    lp->len = items->n;
    lp->def = n;
    lp->depth = depth;
    lp->outer = saved;
    for (uint32_t i = 0; i < items->n; i++) {
        if (++st->steps > MAX_STEPS)
            return RERR(st, "too many loop iterations");
        lp->i = i;
        f->n = 0; /* Jinja: what an iteration sets is gone in the next one */
        TRY(frame_set(st, f, tv_str("loop", 4), (tv){.kind = TV_LOOP, .u.p = lp}));
        TRY(assign(st, f, n->a, items->v[i]));
        TRY(exec_body(st, n->c));
    }
    if (items->n == 0 && n->d) {
        st->fr = saved;
        TRY(exec_body(st, n->d));
    }
    st->fr = saved;
    return 0;
}

static int register_blocks(rstate *st, tctx *tc, vial_tmpl *t)
{
    for (tmpl_block *b = t->blocks; b; b = b->next) {
        blockchain *bc = find_chain(tc, b->name, b->len);
        if (!bc) {
            bc = vial_arena_alloc(st->a, sizeof *bc);
            if (!bc)
                return OOM(st);
            memset(bc, 0, sizeof *bc);
            bc->name = b->name;
            bc->len = b->len;
            bc->next = tc->blocks;
            tc->blocks = bc;
        }
        if (bc->n == bc->cap) {
            uint32_t cap = bc->cap ? bc->cap * 2 : 4;
            tmpl_block **lv = vial_arena_alloc(st->a, cap * sizeof *lv);
            vial_tmpl **ow = vial_arena_alloc(st->a, cap * sizeof *ow);
            if (!lv || !ow)
                return OOM(st);
            if (bc->n) {
                memcpy(lv, bc->lv, bc->n * sizeof *lv);
                memcpy(ow, bc->owner, bc->n * sizeof *ow);
            }
            bc->lv = lv, bc->owner = ow, bc->cap = cap;
        }
        bc->lv[bc->n] = b;
        bc->owner[bc->n++] = t;
    }
    return 0;
}

/* parent: the frame the block sees — the caller's for a scoped block
 * statement, the current block's for super(), else the template's root */
static int render_block(rstate *st, tctx *tc, blockchain *bc, uint32_t level, frame *parent)
{
    if (++st->depth > MAX_DEPTH)
        return RERR(st, "maximum recursion depth exceeded");
    tmpl_block *b = bc->lv[level];
    frame *f = frame_new(st, parent);
    if (!f)
        return OOM(st);
    frame *sfr = st->fr;
    tctx *stc = st->tc;
    vial_tmpl *st_t = st->curt;
    blockchain *sblk = st->blk;
    uint32_t slv = st->blk_level;
    frame *sbf = st->blk_frame;
    st->fr = f;
    st->tc = tc;
    st->curt = bc->owner[level];
    st->blk = bc;
    st->blk_level = level;
    st->blk_frame = parent;
    TRY(exec_body(st, b->body));
    st->fr = sfr;
    st->tc = stc;
    st->curt = st_t;
    st->blk = sblk;
    st->blk_level = slv;
    st->blk_frame = sbf;
    st->depth--;
    return 0;
}

/* runs t (and what it extends) in tc */
static int render_in(rstate *st, vial_tmpl *t, tctx *tc)
{
    if (++st->depth > MAX_DEPTH)
        return RERR(st, "maximum recursion depth exceeded");
    tctx *stc = st->tc;
    frame *sfr = st->fr;
    vial_tmpl *st_t = st->curt;
    blockchain *sblk = st->blk;
    bool sdis = st->discard;
    int8_t sae = st->ae;
    st->ae = -1; /* another template: its own setting */
    st->tc = tc;
    st->fr = tc->root;
    st->curt = t;
    st->blk = NULL;
    TRY(register_blocks(st, tc, t));
    TRY(exec_body(st, t->body));
    int levels = 0;
    while (tc->parent) {
        vial_tmpl *p = tc->parent;
        if (++levels > MAX_DEPTH)
            return RERR(st, "maximum recursion depth exceeded");
        tc->parent = NULL;
        st->discard = sdis;
        st->curt = p;
        st->fr = tc->root;
        TRY(register_blocks(st, tc, p));
        TRY(exec_body(st, p->body));
    }
    st->tc = stc;
    st->fr = sfr;
    st->curt = st_t;
    st->blk = sblk;
    st->discard = sdis;
    st->ae = sae;
    st->depth--;
    return 0;
}

static int load_named(rstate *st, tv name, vial_tmpl **t, bool *missing)
{
    *missing = false;
    if (name.kind == TV_LIST) {
        tlist *l = name.u.p;
        for (uint32_t i = 0; i < l->n; i++) {
            TRY(load_named(st, l->v[i], t, missing));
            if (!*missing)
                return 0;
        }
        *missing = true;
        return 0;
    }
    if (name.kind != TV_STR)
        return RERR(st, "template name must be a string, not %s", tv_type_name(name));
    vial_tmpl_error e;
    int r = tmpl_get(st->env, name.u.s, name.len, t, &e);
    if (r == -ENOENT) {
        *missing = true;
        return 0;
    }
    if (r != 0) {
        /* a syntax error in a template loaded at render time: report it there */
        if (!st->failed) {
            st->failed = true;
            st->code = r;
            if (st->err)
                *st->err = e;
        }
        return r;
    }
    return 0;
}

/* The template a extends/include/import names. A constant name is
 * resolved once and remembered in the node, so renders after the first take
 * no lock (unless auto reload asks to look at the file again). */
static int resolve(rstate *st, node *n, tv *name, vial_tmpl **t, bool *missing)
{
    bool constant = n->a->type == N_CONST && !st->env->auto_reload;
    if (constant) {
        vial_tmpl *c = __atomic_load_n(&n->cached, __ATOMIC_ACQUIRE);
        if (c) {
            *name = n->a->v;
            *t = c;
            *missing = false;
            return 0;
        }
    }
    TRY(eval(st, n->a, name));
    TRY(load_named(st, *name, t, missing));
    if (constant && !*missing)
        __atomic_store_n(&n->cached, *t, __ATOMIC_RELEASE);
    return 0;
}

static tctx *tctx_new(rstate *st, vial_tmpl *t, frame *parent, tv ctx)
{
    tctx *tc = vial_arena_alloc(st->a, sizeof *tc);
    if (!tc)
        return NULL;
    memset(tc, 0, sizeof *tc);
    tc->t = t;
    tc->ctx = ctx;
    tc->root = frame_new(st, parent);
    return tc->root ? tc : NULL;
}

static int import_module(rstate *st, node *n, tv *mod)
{
    tv name;
    vial_tmpl *t;
    bool missing;
    TRY(resolve(st, n, &name, &t, &missing));
    st->cur = n;
    if (missing)
        return RERR(st, "TemplateNotFound: %.*s", (int)(name.kind == TV_STR ? name.len : 0), name.u.s);
    bool with = n->op & F_WITH_CONTEXT;
    tctx *tc = tctx_new(st, t, with ? st->fr : NULL, with ? st->tc->ctx : TV(TV_UNDEF));
    if (!tc)
        return OOM(st);
    capture c;
    cap_begin(st, &c);
    int r = render_in(st, t, tc);
    cap_end(st, &c, false);
    TRY(r);
    tv d = tv_dict_new(st->a, tc->root->n);
    if (d.kind != TV_DICT)
        return OOM(st);
    for (uint32_t i = 0; i < tc->root->n; i++)
        if (tc->root->k[i].len && tc->root->k[i].u.s[0] != '_')
            if (tv_dict_put(st->a, d, tc->root->k[i], tc->root->v[i]))
                return OOM(st);
    d.kind = TV_MODULE;
    *mod = d;
    return 0;
}

static int exec_stmt(rstate *st, node *n)
{
    st->cur = n;
    if ((size_t)(st->stack_base - (const char *)__builtin_frame_address(0)) > st->env->stack_limit)
        return stack_check(st);
    if (++st->steps > MAX_STEPS)
        return RERR(st, "template ran too long");
    switch (n->type) {
    case N_TEXT:
        return emit(st, n->v.u.s, n->v.len);
    case N_OUTPUT: {
        tv v;
        TRY(eval(st, n->a, &v));
        if (st->discard)
            return 0;
        return write_value(st, st->out, v, cur_autoescape(st));
    }
    case N_IF:
        /* n->c: an elif (an N_IF marked F_ELIF) or the else body */
        for (;;) {
            tv c;
            st->cur = n;
            TRY(eval(st, n->a, &c));
            if (tv_truth(c))
                return exec_body(st, n->b);
            if (!n->c || !(n->c->type == N_IF && (n->c->op & F_ELIF)))
                return exec_body(st, n->c);
            n = n->c;
        }
    case N_FOR:
        return exec_for(st, n);
    case N_SET: {
        tv v;
        TRY(eval(st, n->b, &v));
        return assign(st, st->fr, n->a, v);
    }
    case N_SETBLOCK: {
        tv v;
        TRY(capture_scoped(st, n->b, &v));
        TRY(apply_chain(st, n->c, v, &v));
        return frame_set(st, st->fr, n->a->v, v);
    }
    case N_FILTERBLOCK: {
        tv v;
        TRY(capture_scoped(st, n->b, &v));
        TRY(apply_chain(st, n->a, v, &v));
        if (st->discard)
            return 0;
        return write_value(st, st->out, v, cur_autoescape(st));
    }
    case N_AUTOESCAPE: {
        tv on;
        TRY(eval(st, n->a, &on));
        frame *f = frame_new(st, st->fr); /* a scope of its own, like with */
        if (!f)
            return OOM(st);
        frame *sfr = st->fr;
        int8_t saved = st->ae;
        st->ae = tv_truth(on);
        st->fr = f;
        int r = exec_body(st, n->b);
        st->fr = sfr;
        st->ae = saved;
        return r;
    }
    case N_WITH: {
        frame *f = frame_new(st, st->fr);
        if (!f)
            return OOM(st);
        for (node *s = n->a; s; s = s->next) {
            tv v;
            TRY(eval(st, s->b, &v));
            TRY(assign(st, f, s->a, v));
        }
        frame *saved = st->fr;
        st->fr = f;
        TRY(exec_body(st, n->b));
        st->fr = saved;
        return 0;
    }
    case N_BLOCK: {
        if (st->tc->parent)
            return 0; /* extended: the parent decides where blocks go */
        blockchain *bc = find_chain(st->tc, n->v.u.s, n->v.len);
        if (!bc)
            return RERR(st, "block '%.*s' not found", (int)n->v.len, n->v.u.s);
        return render_block(st, st->tc, bc, 0, (n->op & F_SCOPED) ? st->fr : st->tc->root);
    }
    case N_EXTENDS: {
        if (st->tc->parent)
            return RERR(st, "extended multiple times");
        tv name;
        vial_tmpl *t;
        bool missing;
        TRY(resolve(st, n, &name, &t, &missing));
        st->cur = n;
        if (missing)
            return RERR(st, "TemplateNotFound: %.*s", (int)(name.kind == TV_STR ? name.len : 0), name.u.s);
        st->tc->parent = t;
        st->discard = true;
        return 0;
    }
    case N_INCLUDE: {
        tv name;
        vial_tmpl *t;
        bool missing;
        TRY(resolve(st, n, &name, &t, &missing));
        st->cur = n;
        if (missing) {
            if (n->op & F_IGNORE_MISSING)
                return 0;
            return RERR(st, "TemplateNotFound: %.*s", (int)(name.kind == TV_STR ? name.len : 0), name.u.s);
        }
        bool with = n->op & F_WITH_CONTEXT;
        tctx *tc = tctx_new(st, t, with ? st->fr : NULL, with ? st->tc->ctx : TV(TV_UNDEF));
        if (!tc)
            return OOM(st);
        tc->root->hides_loop = true;
        return render_in(st, t, tc);
    }
    case N_IMPORT: {
        tv mod;
        TRY(import_module(st, n, &mod));
        return frame_set(st, st->fr, n->v, mod);
    }
    case N_FROMIMPORT: {
        tv mod;
        TRY(import_module(st, n, &mod));
        for (node *p = n->b; p; p = p->next) {
            tv v;
            if (!tv_dict_find(mod, p->v, &v))
                v = (tv){.kind = TV_UNDEF, .len = p->v.len, .u.s = p->v.u.s};
            TRY(frame_set(st, st->fr, p->w, v));
        }
        return 0;
    }
    case N_MACRO: {
        tmacro *m = vial_arena_alloc(st->a, sizeof *m);
        if (!m)
            return OOM(st);
        memset(m, 0, sizeof *m);
        m->def = n;
        m->closure = st->fr;
        m->tc = st->tc;
        m->ae = st->ae;
        return frame_set(st, st->fr, n->v, (tv){.kind = TV_MACRO, .u.p = m});
    }
    case N_CALLBLOCK: {
        tmacro *m = vial_arena_alloc(st->a, sizeof *m);
        if (!m)
            return OOM(st);
        memset(m, 0, sizeof *m);
        m->def = n;
        m->closure = st->fr;
        m->tc = st->tc;
        m->ae = st->ae;
        m->is_caller = true;
        tv v;
        TRY(eval_call(st, n->a, (tv){.kind = TV_MACRO, .u.p = m}, &v));
        if (st->discard)
            return 0;
        return write_value(st, st->out, v, cur_autoescape(st));
    }
    default:
        return RERR(st, "bad statement");
    }
}

static int exec_body(rstate *st, node *n)
{
    for (; n; n = n->next)
        TRY(exec_stmt(st, n));
    return 0;
}

int vial_tmpl_render(vial_tmpl *t, vial_tmpl_value ctx, struct vial_arena *a, vial_tmpl_out *out,
                     vial_tmpl_error *err)
{
    rstate st;
    memset(&st, 0, sizeof st);
    st.env = t->env;
    st.a = a;
    st.out = out;
    st.err = err;
    st.curt = t;
    st.stack_base = __builtin_frame_address(0);
    st.ae = -1;
    tctx *tc = tctx_new(&st, t, NULL, ctx.kind == TV_DICT ? ctx : TV(TV_UNDEF));
    if (!tc) {
        tmpl_set_error(err, t->name, 0, "out of memory");
        return -ENOMEM;
    }
    void *loc = tmpl_locale_enter();
    int r = render_in(&st, t, tc);
    tmpl_locale_leave(loc);
    return r ? (st.code ? st.code : r) : 0;
}
