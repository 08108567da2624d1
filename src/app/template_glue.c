/* The globals Flask gives every template (request, session, g, url_for,
 * get_flashed_messages, csrf_token), over the request vial_render is
 * rendering on this thread. They are registered once per app and build
 * nothing per render: request, session and g are objects whose attributes
 * are looked up when a template reads them. A render never awaits, so the
 * thread's current request cannot change under it. */
#include "app/app.h"
#include "app/render.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

__thread vial_req *vial_render_current;

static vial_req *current(vial_tmpl_call *c)
{
    if (!vial_render_current)
        c->msg = "called outside vial_render";
    return vial_render_current;
}

static int is_name(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && !memcmp(s, lit, n);
}

static vial_tmpl_value str_or_undef(const char *s)
{
    return s ? vial_tmpl_cstr(s) : vial_tmpl_undefined();
}

/* A template string as a C string: in place when a NUL follows it, else
 * copied into the arena. NULL when out of memory. */
static const char *cstr_of(struct vial_arena *a, const char *s, size_t n)
{
    if (!s)
        return "";
    vial_tmpl_value v = vial_tmpl_strdup(a, s, n);
    return v.kind == VIAL_TMPL_STRING ? v.u.s : NULL;
}

/* --- lookups: request.args/.form/.cookies/.headers, session, g ---------------------- */

enum { L_ARGS, L_FORM, L_COOKIES, L_HEADERS, L_SESSION, L_G, L_COUNT };
static const int lookup_ids[L_COUNT] = {L_ARGS, L_FORM, L_COOKIES, L_HEADERS, L_SESSION, L_G};
static const char *const lookup_names[L_COUNT] = {"ImmutableMultiDict", "ImmutableMultiDict",
                                                  "ImmutableMultiDict", "EnvironHeaders",
                                                  "SecureCookieSession", "_AppCtxGlobals"};

static const char *lookup(vial_req *rq, int kind, const char *key, size_t n, struct vial_arena *a)
{
    if (kind == L_G)
        return vial_g_str(rq, key, n);
    const char *k = cstr_of(a, key, n);
    if (!k)
        return NULL;
    switch (kind) {
    case L_ARGS: return vial_req_arg(rq, k);
    case L_FORM: return vial_req_form(rq, k);
    case L_COOKIES: return vial_req_cookie(rq, k);
    case L_HEADERS: return vial_req_header(rq, k);
    default: return vial_session_get(rq, k);
    }
}

/* d.get(key, default=None) */
static int fn_get(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    vial_req *rq = current(c);
    if (!rq)
        return -EPERM;
    if (c->nargs < 1 || c->nargs > 2 || c->args[0].kind != VIAL_TMPL_STRING) {
        c->msg = "get(key, default=None) takes a string key";
        return -EINVAL;
    }
    const char *v = lookup(rq, *(const int *)c->data, c->args[0].u.s, c->args[0].len, c->arena);
    *ret = v ? vial_tmpl_cstr(v) : c->nargs == 2 ? c->args[1] : vial_tmpl_none();
    return 0;
}

/* args.getlist(key) / form.getlist(key): every value, in order */
static int fn_getlist(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    vial_req *rq = current(c);
    if (!rq)
        return -EPERM;
    if (c->nargs != 1 || c->args[0].kind != VIAL_TMPL_STRING) {
        c->msg = "getlist(key) takes a string key";
        return -EINVAL;
    }
    const char *k = cstr_of(c->arena, c->args[0].u.s, c->args[0].len);
    int kind = *(const int *)c->data;
    const char *vals[64];
    unsigned n = !k ? 0 : kind == L_ARGS ? vial_req_arg_list(rq, k, vals, 64)
                                         : vial_req_form_list(rq, k, vals, 64);
    *ret = vial_tmpl_list(c->arena);
    for (unsigned i = 0; i < n && i < 64; i++)
        if (vial_tmpl_push(c->arena, *ret, vial_tmpl_cstr(vals[i])) != 0)
            return -ENOMEM;
    return 0;
}

static int lookup_attr(void *data, const char *name, size_t n, struct vial_arena *a, vial_tmpl_value *out)
{
    int kind = *(const int *)data;
    vial_req *rq = vial_render_current;
    if (!rq) {
        *out = vial_tmpl_undefined();
        return 0;
    }
    if (is_name(name, n, "get")) {
        *out = vial_tmpl_function(a, "get", fn_get, data);
        return 0;
    }
    if (is_name(name, n, "getlist") && (kind == L_ARGS || kind == L_FORM)) {
        *out = vial_tmpl_function(a, "getlist", fn_getlist, data);
        return 0;
    }
    *out = str_or_undef(lookup(rq, kind, name, n, a));
    return 0;
}

/* --- request ------------------------------------------------------------------------ */

static vial_tmpl_value lookup_objs[L_COUNT];

static int request_attr(void *data, const char *name, size_t n, struct vial_arena *a, vial_tmpl_value *out)
{
    vial_req *rq = vial_render_current;
    *out = vial_tmpl_undefined();
    if (!rq)
        return 0;
    const char *qs = vial_req_query_string(rq);
    if (is_name(name, n, "method"))
        *out = vial_tmpl_cstr(vial_req_method(rq));
    else if (is_name(name, n, "path"))
        *out = vial_tmpl_cstr(vial_req_path(rq));
    else if (is_name(name, n, "query_string"))
        *out = vial_tmpl_cstr(qs);
    else if (is_name(name, n, "full_path")) /* Werkzeug: always with '?' */
        *out = str_or_undef(vial_sprintf(rq, "%s?%s", vial_req_path(rq), qs));
    else if (is_name(name, n, "url") || is_name(name, n, "base_url")) {
        const char *host = vial_req_header(rq, "Host");
        int with_qs = *qs && name[0] == 'u';
        *out = str_or_undef(vial_sprintf(rq, "http://%s%s%s%s", host ? host : "localhost",
                                         vial_req_path(rq), with_qs ? "?" : "", with_qs ? qs : ""));
    } else if (is_name(name, n, "endpoint"))
        *out = vial_tmpl_none(), vial_req_endpoint(rq) && (*out = vial_tmpl_cstr(vial_req_endpoint(rq)), 1);
    else if (is_name(name, n, "blueprint")) {
        const vial_rule *r = vial_rqs(rq)->route;
        *out = r && r->bp ? vial_tmpl_cstr(r->bp->name) : vial_tmpl_none();
    } else if (is_name(name, n, "remote_addr"))
        *out = vial_tmpl_cstr(vial_req_remote_addr(rq));
    else if (is_name(name, n, "args"))
        *out = lookup_objs[L_ARGS];
    else if (is_name(name, n, "form"))
        *out = lookup_objs[L_FORM];
    else if (is_name(name, n, "cookies"))
        *out = lookup_objs[L_COOKIES];
    else if (is_name(name, n, "headers"))
        *out = lookup_objs[L_HEADERS];
    return 0;
}

/* --- functions ----------------------------------------------------------------------- */

/* A keyword value as URL text: str() of strings and numbers. */
static const char *url_value(struct vial_arena *a, vial_tmpl_value v)
{
    char buf[VIAL_FMT_DOUBLE_SIZE > VIAL_FMT_INT_SIZE ? VIAL_FMT_DOUBLE_SIZE : VIAL_FMT_INT_SIZE];
    size_t n;
    switch (v.kind) {
    case VIAL_TMPL_STRING: case VIAL_TMPL_BIGINT: return cstr_of(a, v.u.s, v.len);
    case VIAL_TMPL_INT: n = vial_fmt_i64(buf, v.u.i); break;
    case VIAL_TMPL_FLOAT: n = vial_fmt_double(buf, v.u.d); break;
    case VIAL_TMPL_BOOL: return v.u.i ? "True" : "False";
    default: return NULL;
    }
    return cstr_of(a, buf, n);
}

/* url_for(endpoint, **values): Flask's, over vial_url_for. None values are
 * left out, _external=true gives an absolute URL, _anchor a #fragment. */
static int fn_url_for(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    vial_req *rq = current(c);
    if (!rq)
        return -EPERM;
    if (c->nargs != 1 || c->args[0].kind != VIAL_TMPL_STRING) {
        c->msg = "url_for() takes the endpoint name, then keyword values";
        return -EINVAL;
    }
    const char *kv[64];
    size_t n = 0;
    int external = 0;
    const char *anchor = NULL;
    for (size_t i = 0; i < c->nkw; i++) {
        vial_tmpl_value k = c->kwnames[i], v = c->kwargs[i];
        if (is_name(k.u.s, k.len, "_external")) {
            external = v.kind != VIAL_TMPL_UNDEFINED && v.kind != VIAL_TMPL_NONE &&
                       !((v.kind == VIAL_TMPL_BOOL || v.kind == VIAL_TMPL_INT) && !v.u.i);
            continue;
        }
        if (v.kind == VIAL_TMPL_NONE || v.kind == VIAL_TMPL_UNDEFINED)
            continue;
        const char *val = url_value(c->arena, v);
        if (!val) {
            c->msg = "a URL value must be a string or a number";
            return -EINVAL;
        }
        if (is_name(k.u.s, k.len, "_anchor")) {
            anchor = val;
            continue;
        }
        if (n + 2 > 64) {
            c->msg = "too many values";
            return -EINVAL;
        }
        kv[n++] = cstr_of(c->arena, k.u.s, k.len);
        kv[n++] = val;
    }
    const char *ep = cstr_of(c->arena, c->args[0].u.s, c->args[0].len);
    char *url = ep ? vial_url_for_kv(rq, ep, kv, n / 2, external) : NULL;
    if (!url) {
        c->msg = ep ? vial_sprintf(rq, "could not build url for endpoint '%s'", ep) : NULL;
        return -EINVAL;
    }
    if (anchor && !(url = vial_sprintf(rq, "%s#%s", url, anchor)))
        return -ENOMEM;
    *ret = vial_tmpl_cstr(url);
    return 0;
}

static int truthy(vial_tmpl_value v)
{
    switch (v.kind) {
    case VIAL_TMPL_UNDEFINED: case VIAL_TMPL_NONE: return 0;
    case VIAL_TMPL_BOOL: case VIAL_TMPL_INT: return v.u.i != 0;
    case VIAL_TMPL_STRING: return v.len > 0;
    default: return 1;
    }
}

static int in_filter(vial_tmpl_value filter, const char *cat)
{
    size_t n = vial_tmpl_len(filter);
    if (filter.kind == VIAL_TMPL_STRING) /* a single category */
        return strlen(cat) == filter.len && !memcmp(cat, filter.u.s, filter.len);
    for (size_t i = 0; i < n; i++) {
        vial_tmpl_value f = vial_tmpl_at(filter, i);
        if (f.kind == VIAL_TMPL_STRING && strlen(cat) == f.len && !memcmp(cat, f.u.s, f.len))
            return 1;
    }
    return 0;
}

/* get_flashed_messages(with_categories=false, category_filter=[]) */
static int fn_flashed(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    vial_req *rq = current(c);
    if (!rq)
        return -EPERM;
    vial_tmpl_value with = c->nargs > 0 ? c->args[0] : vial_tmpl_bool(0);
    vial_tmpl_value filter = c->nargs > 1 ? c->args[1] : vial_tmpl_undefined();
    for (size_t i = 0; i < c->nkw; i++) {
        vial_tmpl_value k = c->kwnames[i];
        if (is_name(k.u.s, k.len, "with_categories"))
            with = c->kwargs[i];
        else if (is_name(k.u.s, k.len, "category_filter"))
            filter = c->kwargs[i];
        else {
            c->msg = "unexpected keyword argument";
            return -EINVAL;
        }
    }
    const char **cats, **msgs;
    unsigned n = vial_get_flashed_messages(rq, &cats, &msgs);
    int use_filter = filter.kind == VIAL_TMPL_STRING || vial_tmpl_len(filter) > 0;
    *ret = vial_tmpl_list(c->arena);
    if (ret->kind != VIAL_TMPL_LIST)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        if (use_filter && !in_filter(filter, cats[i]))
            continue;
        vial_tmpl_value item = vial_tmpl_cstr(msgs[i]);
        if (truthy(with)) {
            item = vial_tmpl_list(c->arena);
            item.flags |= VIAL_TMPL_TUPLE;
            if (vial_tmpl_push(c->arena, item, vial_tmpl_cstr(cats[i])) != 0 ||
                vial_tmpl_push(c->arena, item, vial_tmpl_cstr(msgs[i])) != 0)
                return -ENOMEM;
        }
        if (vial_tmpl_push(c->arena, *ret, item) != 0)
            return -ENOMEM;
    }
    return 0;
}

static int fn_csrf_token(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    vial_req *rq = current(c);
    if (!rq)
        return -EPERM;
    const char *tok = vial_csrf_token(rq);
    if (!tok) {
        c->msg = "no token (is a secret key set?)";
        return -EPERM;
    }
    *ret = vial_tmpl_cstr(tok);
    return 0;
}

/* --- registration ------------------------------------------------------------------- */

/* Objects without per-app data: built once, shared by every app (the
 * attribute functions read the thread's current request). */
static struct vial_arena *objs_arena;
static vial_tmpl_value request_obj;
static pthread_once_t objs_once = PTHREAD_ONCE_INIT;

static void objs_init(void)
{
    objs_arena = vial_tmpl_arena_new();
    if (!objs_arena)
        return;
    for (int i = 0; i < L_COUNT; i++)
        lookup_objs[i] = vial_tmpl_object(objs_arena, lookup_names[i], lookup_attr, (void *)&lookup_ids[i]);
    request_obj = vial_tmpl_object(objs_arena, "Request", request_attr, NULL);
}

int vial_render_globals(vial_tmpl_env *env)
{
    pthread_once(&objs_once, objs_init);
    if (request_obj.kind != VIAL_TMPL_OBJECT)
        return -ENOMEM;
    for (int i = 0; i < L_COUNT; i++)
        if (lookup_objs[i].kind != VIAL_TMPL_OBJECT)
            return -ENOMEM;
    int r = vial_tmpl_global(env, "request", request_obj);
    if (!r)
        r = vial_tmpl_global(env, "session", lookup_objs[L_SESSION]);
    if (!r)
        r = vial_tmpl_global(env, "g", lookup_objs[L_G]);
    if (!r)
        r = vial_tmpl_global_fn(env, "url_for", fn_url_for, NULL);
    if (!r)
        r = vial_tmpl_global_fn(env, "get_flashed_messages", fn_flashed, NULL);
    if (!r)
        r = vial_tmpl_global_fn(env, "csrf_token", fn_csrf_token, NULL);
    return r;
}
