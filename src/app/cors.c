/* CORS (Flask-CORS): a before_request hook answers preflights, an
 * after_request hook puts Access-Control-Allow-Origin and its companions on
 * every response to an allowed origin, error pages included (after hooks
 * run on those too). The options of the matched route's blueprint apply
 * when it has its own (vial_bp_cors), else the app's. */
#include "app/app.h"
#include "app/security.h"
#include "runtime/ascii.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_METHODS "GET, HEAD, POST, OPTIONS, PUT, PATCH, DELETE"

typedef struct cors_scope {
    const vial_bp *bp; /* NULL: the app's */
    char **origins;
    unsigned norigins;
    int any; /* every origin is allowed */
    int (*allow_origin)(vial_req *rq, const char *origin, void *arg);
    void *allow_origin_arg;
    char *methods, *allow_headers, *expose_headers;
    int credentials, max_age;
} cors_scope;

struct vial_cors {
    int hooked;
    cors_scope *app;
    cors_scope **bps;
    unsigned nbps;
};

static void scope_free(cors_scope *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->norigins; i++)
        free(s->origins[i]);
    free(s->origins);
    free(s->methods);
    free(s->allow_headers);
    free(s->expose_headers);
    free(s);
}

void vial_cors_release(vial_app *app)
{
    struct vial_cors *c = app->cors;
    if (!c)
        return;
    scope_free(c->app);
    for (unsigned i = 0; i < c->nbps; i++)
        scope_free(c->bps[i]);
    free(c->bps);
    free(c);
    app->cors = NULL;
}

/* --- lists ----------------------------------------------------------------------- */

/* The next token of a comma-separated list at *p (spaces trimmed): its
 * start and length, or NULL at the end. */
static const char *next_token(const char **p, size_t *len)
{
    const char *s = *p;
    for (;;) {
        s += strspn(s, " \t,");
        if (!*s)
            return NULL;
        size_t n = strcspn(s, ",");
        *p = s + n;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n) {
            *len = n;
            return s;
        }
    }
}

/* tok[0..n) is in the list (ignoring case). */
static int listed(const char *list, const char *tok, size_t n)
{
    size_t len;
    for (const char *t; (t = next_token(&list, &len));)
        if (len == n && !vial_ascii_ncasecmp(t, tok, n))
            return 1;
    return 0;
}

/* The response already says it varies by `what` (or by everything). */
static int varies_by(const vial_res *rs, const char *what)
{
    for (uint32_t i = 0; i < rs->nheaders; i++) {
        if (vial_ascii_casecmp(rs->headers[i].name, "Vary"))
            continue;
        if (listed(rs->headers[i].value, what, strlen(what)) || listed(rs->headers[i].value, "*", 1))
            return 1;
    }
    return 0;
}

/* --- the hooks ---------------------------------------------------------------------- */

static const cors_scope *scope_of(vial_req *rq)
{
    const struct vial_cors *c = vial_rqs(rq)->app->cors;
    const vial_rule *rule = vial_rqs(rq)->route;
    if (rule && rule->bp)
        for (unsigned i = 0; i < c->nbps; i++)
            if (c->bps[i]->bp == rule->bp)
                return c->bps[i];
    return c->app;
}

static int origin_allowed(vial_req *rq, const cors_scope *s, const char *origin)
{
    if (s->any)
        return 1;
    for (unsigned i = 0; i < s->norigins; i++)
        if (!vial_ascii_casecmp(s->origins[i], origin))
            return 1;
    return s->allow_origin && s->allow_origin(rq, origin, s->allow_origin_arg) == 1;
}

/* Access-Control-Allow-Origin, -Credentials and Vary: what every answer to
 * an allowed origin carries. */
static int allow_origin(vial_res *rs, const cors_scope *s, const char *origin)
{
    /* "*" is only for anyone without credentials: browsers refuse it with
     * cookies, so the origin is echoed then. */
    int r = vial_res_set_header(rs, "Access-Control-Allow-Origin", s->any && !s->credentials ? "*" : origin);
    if (r == 0 && s->credentials)
        r = vial_res_set_header(rs, "Access-Control-Allow-Credentials", "true");
    return r;
}

/* Every response of a scope whose answer depends on the origin says so,
 * disallowed origins and requests without one included: a cache must not
 * hand one origin's answer to another. */
static int add_vary(vial_res *rs, const cors_scope *s)
{
    if ((s->any && !s->credentials) || varies_by(rs, "Origin"))
        return 0;
    return vial_res_add_header(rs, "Vary", "Origin");
}

/* The headers of Access-Control-Request-Headers that are allowed, joined,
 * in the arena; NULL for none. */
static const char *allowed_headers(vial_req *rq, const cors_scope *s, const char *requested)
{
    if (!requested || !*requested)
        return NULL;
    if (!s->allow_headers)
        return requested;
    char *out = vial_alloc(rq, strlen(requested) + 1), *o = out;
    if (!out)
        return NULL;
    size_t len;
    for (const char *t, *p = requested; (t = next_token(&p, &len));) {
        if (!listed(s->allow_headers, t, len))
            continue;
        if (o != out) {
            memcpy(o, ", ", 2);
            o += 2;
        }
        memcpy(o, t, len);
        o += len;
    }
    *o = 0;
    return o == out ? NULL : out;
}

/* A preflight to a route (one to nowhere is a 404 like any request). */
static int is_preflight(vial_req *rq)
{
    return vial_rqs(rq)->route && !strcmp(vial_req_method(rq), "OPTIONS") && vial_req_header(rq, "Origin") &&
           vial_req_header(rq, "Access-Control-Request-Method");
}

static int cors_before(vial_req *rq, vial_res *rs)
{
    const cors_scope *s = scope_of(rq);
    if (!s || !is_preflight(rq))
        return 0; /* no CORS here, or not a preflight: OPTIONS as usual */
    const char *origin = vial_req_header(rq, "Origin");
    const char *method = vial_req_header(rq, "Access-Control-Request-Method");
    /* A preflight is the browser's question, not the app's request: the
     * view does not run, whatever the answer. */
    int r = vial_res_set_status(rs, 204);
    if (r == 0)
        r = add_vary(rs, s);
    if (r == 0 && origin_allowed(rq, s, origin) && listed(s->methods, method, strlen(method))) {
        const char *hdrs = allowed_headers(rq, s, vial_req_header(rq, "Access-Control-Request-Headers"));
        r = allow_origin(rs, s, origin);
        if (r == 0)
            r = vial_res_set_header(rs, "Access-Control-Allow-Methods", s->methods);
        if (r == 0 && hdrs)
            r = vial_res_set_header(rs, "Access-Control-Allow-Headers", hdrs);
        if (r == 0 && s->max_age > 0) {
            char age[VIAL_FMT_INT_SIZE];
            vial_fmt_u64(age, (uint64_t)s->max_age);
            r = vial_res_set_header(rs, "Access-Control-Max-Age", age);
        }
    }
    return r < 0 ? r : VIAL_DONE;
}

static int cors_after(vial_req *rq, vial_res *rs)
{
    const cors_scope *s = scope_of(rq);
    if (!s)
        return 0;
    int r = add_vary(rs, s);
    const char *origin = vial_req_header(rq, "Origin");
    /* A preflight was answered by cors_before, allowed or not. */
    if (r < 0 || !origin || is_preflight(rq) || !origin_allowed(rq, s, origin))
        return r;
    r = allow_origin(rs, s, origin);
    if (r == 0 && s->expose_headers)
        r = vial_res_set_header(rs, "Access-Control-Expose-Headers", s->expose_headers);
    return r;
}

void vial_cors_headers(vial_req *rq)
{
    cors_after(rq, &rq->res);
}

/* --- registration -------------------------------------------------------------------- */

static char *dup_opt(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

static cors_scope *scope_new(const vial_cors_opts *o, const vial_bp *bp)
{
    cors_scope *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->bp = bp;
    int oom = 0;
    s->methods = dup_opt(o->methods ? o->methods : DEFAULT_METHODS, &oom);
    s->allow_headers = dup_opt(o->allow_headers, &oom);
    s->expose_headers = dup_opt(o->expose_headers, &oom);
    s->credentials = o->credentials;
    s->max_age = o->max_age;
    s->allow_origin = o->allow_origin;
    s->allow_origin_arg = o->allow_origin_arg;
    s->any = !o->origins && !o->allow_origin;
    unsigned n = 0;
    while (o->origins && o->origins[n])
        n++;
    if (n && !(s->origins = calloc(n, sizeof *s->origins)))
        oom = 1;
    for (unsigned i = 0; i < n && !oom; i++) {
        if (!strcmp(o->origins[i], "*"))
            s->any = 1;
        else if ((s->origins[s->norigins] = strdup(o->origins[i])))
            s->norigins++;
        else
            oom = 1;
    }
    if (oom) {
        scope_free(s);
        return NULL;
    }
    return s;
}

static int valid_opts(const vial_cors_opts *o)
{
    return !o || o->max_age >= 0;
}

/* The app's CORS state with both hooks registered. */
static struct vial_cors *cors_of(vial_app *app)
{
    if (!app->cors && !(app->cors = calloc(1, sizeof *app->cors)))
        return NULL;
    struct vial_cors *c = app->cors;
    if (!c->hooked) {
        if (vial_before_request(app, cors_before) < 0)
            return NULL;
        if (vial_after_request(app, cors_after) < 0)
            return NULL; /* a second try registers a second before hook: harmless, it answers first */
        c->hooked = 1;
    }
    return c;
}

int vial_cors(vial_app *app, const vial_cors_opts *opts)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!valid_opts(opts))
        return -EINVAL;
    if (app->cors && app->cors->app)
        return -EEXIST;
    struct vial_cors *c = cors_of(app);
    const vial_cors_opts none = {0};
    if (!c || !(c->app = scope_new(opts ? opts : &none, NULL)))
        return -ENOMEM;
    return 0;
}

int vial_bp_cors(vial_bp *bp, const vial_cors_opts *opts)
{
    if (!bp)
        return -EINVAL;
    int rc = vial_app_setup_check(bp->app);
    if (rc < 0)
        return rc;
    if (!valid_opts(opts))
        return -EINVAL;
    struct vial_cors *c = bp->app->cors;
    for (unsigned i = 0; c && i < c->nbps; i++)
        if (c->bps[i]->bp == bp)
            return -EEXIST;
    if (!(c = cors_of(bp->app)))
        return -ENOMEM;
    cors_scope **v = realloc(c->bps, (c->nbps + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    c->bps = v;
    const vial_cors_opts none = {0};
    if (!(v[c->nbps] = scope_new(opts ? opts : &none, bp)))
        return -ENOMEM;
    c->nbps++;
    return 0;
}
