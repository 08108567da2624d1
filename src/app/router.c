/* Routing: rules, converters, matching, Allow.
 *
 * A first, linear router: each rule is a list of path segments matched in
 * order. It has the final interface (match with parameters, Allow, strict
 * slashes); the radix tree replaces the list behind it. */
#include "app/app.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static void route_free(vial_rule *r)
{
    if (!r)
        return;
    free(r->rule);
    free(r->path);
    if (r->methods)
        for (unsigned i = 0; i < r->nmethods; i++)
            free(r->methods[i]);
    free(r->methods);
    for (unsigned i = 0; i < r->nsegs; i++)
        free(r->segs[i].text);
    free(r->segs);
    free(r);
}

static int is_tchar(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* <name>, <int:name>, <int(min=A,max=B):name>, <path:name>, <string:name> */
static int parse_converter(const char *s, size_t n, vial_segment *seg)
{
    const char *colon = memchr(s, ':', n);
    seg->kind = SEG_STRING;
    seg->imin = 0;
    seg->imax = INT64_MAX;
    const char *name = s;
    size_t nlen = n;
    if (colon) {
        size_t clen = (size_t)(colon - s);
        name = colon + 1;
        nlen = n - clen - 1;
        if (clen == 6 && !memcmp(s, "string", 6))
            seg->kind = SEG_STRING;
        else if (clen == 4 && !memcmp(s, "path", 4))
            seg->kind = SEG_PATH;
        else if (clen >= 3 && !memcmp(s, "int", 3)) {
            seg->kind = SEG_INT;
            if (clen > 3) {
                /* int(min=200,max=599) */
                char buf[64];
                if (clen - 3 >= sizeof buf || s[3] != '(' || s[clen - 1] != ')')
                    return -EINVAL;
                memcpy(buf, s + 4, clen - 5);
                buf[clen - 5] = 0;
                for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                    while (*tok == ' ')
                        tok++;
                    char *end;
                    if (!strncmp(tok, "min=", 4))
                        seg->imin = strtoll(tok + 4, &end, 10);
                    else if (!strncmp(tok, "max=", 4))
                        seg->imax = strtoll(tok + 4, &end, 10);
                    else
                        return -EINVAL;
                    if (*end)
                        return -EINVAL;
                }
            }
        } else
            return -EINVAL;
    }
    if (!nlen)
        return -EINVAL;
    for (size_t i = 0; i < nlen; i++)
        if (!(is_tchar(name[i]) || name[i] == '_'))
            return -EINVAL;
    seg->text = xstrndup(name, nlen);
    seg->len = nlen;
    return seg->text ? 0 : -ENOMEM;
}

static int parse_path(vial_rule *r, const char *path)
{
    if (path[0] != '/')
        return -EINVAL;
    size_t n = strlen(path);
    r->trailing_slash = n > 1 && path[n - 1] == '/';
    const char *p = path + 1, *end = path + n - (r->trailing_slash ? 1 : 0);
    unsigned cap = 0;
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *e = slash ? slash : end;
        if (e == p)
            return -EINVAL; /* empty segment: "//" */
        if (r->nsegs == cap) {
            cap = cap ? cap * 2 : 4;
            vial_segment *ns = realloc(r->segs, cap * sizeof *ns);
            if (!ns)
                return -ENOMEM;
            r->segs = ns;
        }
        vial_segment *seg = &r->segs[r->nsegs];
        memset(seg, 0, sizeof *seg);
        int rc;
        if (*p == '<') {
            if (e[-1] != '>')
                return -EINVAL;
            rc = parse_converter(p + 1, (size_t)(e - p - 2), seg);
        } else {
            seg->kind = SEG_STATIC;
            seg->text = xstrndup(p, (size_t)(e - p));
            seg->len = (size_t)(e - p);
            rc = seg->text ? 0 : -ENOMEM;
        }
        if (rc < 0)
            return rc;
        r->nsegs++;
        if (seg->kind == SEG_PATH && e != end)
            return -EINVAL; /* <path:...> must be last */
        p = e + (slash ? 1 : 0);
    }
    return 0;
}

static int parse_methods(vial_rule *r, const char *s, size_t n)
{
    unsigned cap = 4;
    r->methods = calloc(cap + 1, sizeof *r->methods);
    if (!r->methods)
        return -ENOMEM;
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        while (p < e && *p == ' ')
            p++;
        const char *te = e;
        while (te > p && te[-1] == ' ')
            te--;
        if (te == p)
            return -EINVAL;
        for (const char *q = p; q < te; q++)
            if (!is_tchar(*q))
                return -EINVAL;
        if (r->nmethods == cap) {
            cap *= 2;
            char **nm = realloc(r->methods, (cap + 1) * sizeof *nm);
            if (!nm)
                return -ENOMEM;
            r->methods = nm;
        }
        r->methods[r->nmethods] = xstrndup(p, (size_t)(te - p));
        if (!r->methods[r->nmethods])
            return -ENOMEM;
        r->nmethods++;
        r->methods[r->nmethods] = NULL;
        p = e + (comma ? 1 : 0);
    }
    return r->nmethods ? 0 : -EINVAL;
}

static int route_allows(const vial_rule *r, const char *m)
{
    for (unsigned i = 0; i < r->nmethods; i++)
        if (!strcmp(r->methods[i], m))
            return 1;
    return 0;
}

int vial_router_add(vial_app *app, const char *rule, vial_handler fn, int is_sync)
{
    if (!app || !rule || !fn)
        return -EINVAL;
    vial_rule *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->fn = fn;
    r->is_sync = is_sync;
    r->rule = strdup(rule);
    const char *sp = strchr(rule, ' ');
    int rc;
    if (rule[0] == '/') {
        rc = parse_methods(r, "GET", 3);
        r->path = strdup(rule);
    } else if (sp) {
        rc = parse_methods(r, rule, (size_t)(sp - rule));
        while (*sp == ' ')
            sp++;
        r->path = strdup(sp);
    } else {
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = r->rule && r->path ? parse_path(r, r->path) : -ENOMEM;
    if (rc == 0) {
        /* same path pattern and a shared method: ambiguous */
        for (vial_rule *o = app->routes; o; o = o->next) {
            if (strcmp(o->path, r->path))
                continue;
            for (unsigned i = 0; i < r->nmethods; i++)
                if (route_allows(o, r->methods[i]))
                    rc = -EEXIST;
        }
    }
    if (rc < 0) {
        route_free(r);
        return rc;
    }
    if (app->routes_tail)
        app->routes_tail->next = r;
    else
        app->routes = r;
    app->routes_tail = r;
    return 0;
}

void vial_router_free(vial_app *app)
{
    vial_rule *r = app->routes;
    while (r) {
        vial_rule *next = r->next;
        route_free(r);
        r = next;
    }
    app->routes = app->routes_tail = NULL;
}

/* Matches one route; on success stores parameters in rq. */
static int route_match(const vial_rule *r, vial_req *rq, const char *path)
{
    if (path[0] != '/')
        return 0;
    const char *p = path + 1;
    unsigned np = 0;
    for (unsigned i = 0; i < r->nsegs; i++) {
        const vial_segment *s = &r->segs[i];
        if (s->kind == SEG_PATH) {
            size_t len = strlen(p);
            if (!len || np >= VIAL_MAX_PARAMS)
                return 0;
            rq->params[np].name = s->text;
            rq->params[np].value = p;
            rq->param_ints[np++] = 0;
            rq->nparams = np;
            return 1; /* consumes the rest, trailing slash included */
        }
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!len)
            return 0;
        if (s->kind == SEG_STATIC) {
            if (len != s->len || memcmp(p, s->text, len))
                return 0;
        } else {
            if (np >= VIAL_MAX_PARAMS)
                return 0;
            int64_t iv = 0;
            if (s->kind == SEG_INT) {
                uint64_t v = 0;
                for (size_t k = 0; k < len; k++) {
                    if (p[k] < '0' || p[k] > '9')
                        return 0;
                    v = v * 10 + (uint64_t)(p[k] - '0');
                    if (v > (uint64_t)INT64_MAX)
                        return 0;
                }
                iv = (int64_t)v;
                if (iv < s->imin || iv > s->imax)
                    return 0;
            }
            char *val = vial_arena_strndup(&rq->arena, p, len);
            if (!val)
                return 0;
            rq->params[np].name = s->text;
            rq->params[np].value = val;
            rq->param_ints[np++] = iv;
        }
        p += len;
        if (i + 1 < r->nsegs) {
            if (*p != '/')
                return 0;
            p++;
        }
    }
    if (r->trailing_slash ? (p[0] != '/' || p[1] != 0) : *p != 0)
        return 0;
    rq->nparams = np;
    return 1;
}

const vial_rule *vial_router_match(vial_app *app, vial_req *rq, const char *path,
                                    const char *method, int *path_matched)
{
    *path_matched = 0;
    for (const vial_rule *r = app->routes; r; r = r->next) {
        if (!route_match(r, rq, path))
            continue;
        *path_matched = 1;
        if (route_allows(r, method))
            return r;
    }
    rq->nparams = 0;
    return NULL;
}

char *vial_router_allow(vial_app *app, vial_req *rq, const char *path)
{
    const char *list[32];
    unsigned n = 0;
    int has_get = 0;
    unsigned saved = rq->nparams;
    for (const vial_rule *r = app->routes; r; r = r->next) {
        if (!route_match(r, rq, path))
            continue;
        for (unsigned i = 0; i < r->nmethods && n < 30; i++) {
            unsigned k = 0;
            while (k < n && strcmp(list[k], r->methods[i]))
                k++;
            if (k == n)
                list[n++] = r->methods[i];
            if (!strcmp(r->methods[i], "GET"))
                has_get = 1;
        }
    }
    rq->nparams = saved;
    const char *extra[2] = {has_get ? "HEAD" : NULL, "OPTIONS"};
    for (int e = 0; e < 2; e++) {
        if (!extra[e])
            continue;
        unsigned k = 0;
        while (k < n && strcmp(list[k], extra[e]))
            k++;
        if (k == n)
            list[n++] = extra[e];
    }
    size_t total = 1;
    for (unsigned i = 0; i < n; i++)
        total += strlen(list[i]) + 2;
    char *out = vial_arena_alloc(&rq->arena, total);
    if (!out)
        return NULL;
    char *o = out;
    for (unsigned i = 0; i < n; i++) {
        if (i) {
            *o++ = ',';
            *o++ = ' ';
        }
        size_t l = strlen(list[i]);
        memcpy(o, list[i], l);
        o += l;
    }
    *o = 0;
    return out;
}
