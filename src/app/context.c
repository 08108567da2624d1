/* Per-request context beyond the HTTP request itself: Flask's g, the app's
 * state, the error being handled, the matched endpoint, the client address,
 * and reverse routing (url_for). */
#include "app/app.h"
#include "app/proxy.h"
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct vial_g {
    struct vial_g *next;
    const char *key;
    void *value;
    int is_str; /* set by vial_g_set_str: templates may print it */
};

static int g_put(vial_req *rq, const char *key, void *value, int is_str)
{
    for (struct vial_g *e = vial_rqs(rq)->g; e; e = e->next)
        if (!strcmp(e->key, key)) {
            e->value = value;
            e->is_str = is_str;
            return 0;
        }
    struct vial_g *e = vial_arena_alloc(&rq->arena, sizeof *e);
    const char *k = e ? vial_arena_strndup(&rq->arena, key, strlen(key)) : NULL;
    if (!k)
        return -ENOMEM;
    e->key = k;
    e->value = value;
    e->is_str = is_str;
    e->next = vial_rqs(rq)->g;
    vial_rqs(rq)->g = e;
    return 0;
}

int vial_g_set(vial_req *rq, const char *key, void *value)
{
    return g_put(rq, key, value, 0);
}

void *vial_g_get(vial_req *rq, const char *key)
{
    for (struct vial_g *e = vial_rqs(rq)->g; e; e = e->next)
        if (!strcmp(e->key, key))
            return e->value;
    return NULL;
}

const char *vial_g_str(vial_req *rq, const char *key, size_t len)
{
    for (struct vial_g *e = vial_rqs(rq)->g; e; e = e->next)
        if (!strncmp(e->key, key, len) && !e->key[len])
            return e->is_str ? e->value : NULL;
    return NULL;
}

int vial_g_set_str(vial_req *rq, const char *key, const char *value)
{
    char *copy = value ? vial_arena_strndup(&rq->arena, value, strlen(value)) : NULL;
    if (value && !copy)
        return -ENOMEM;
    return g_put(rq, key, copy, value != NULL);
}

void *vial_app_get_data(vial_req *rq)
{
    return vial_rqs(rq)->app ? vial_rqs(rq)->app->data : NULL;
}

int vial_error_code(vial_req *rq)
{
    return vial_rqs(rq)->error_code;
}

const char *vial_error_message(vial_req *rq)
{
    return vial_rqs(rq)->error_msg;
}

const char *vial_req_endpoint(vial_req *rq)
{
    return vial_rqs(rq)->route ? vial_rqs(rq)->route->endpoint : NULL;
}

/* The proxies this request's app trusts, if its peer is one of them. */
static const vial_proxies *trusted_peer(vial_req *rq)
{
    const vial_proxies *px = vial_rqs(rq) && vial_rqs(rq)->app ? vial_rqs(rq)->app->ops.proxies : NULL;
    const char *peer = px && rq->conn ? vial_conn_peer(rq) : NULL;
    vial_cidr a;
    if (!peer || vial_addr_parse(peer, strlen(peer), &a) < 0 || !vial_proxies_match(px, &a))
        return NULL;
    return px;
}

const char *vial_req_remote_addr(vial_req *rq)
{
    if (rq->remote_addr)
        return rq->remote_addr;
    rq->remote_addr = rq->conn ? vial_conn_peer(rq) : "127.0.0.1";
    const vial_proxies *px = trusted_peer(rq);
    const char *xff = px ? vial_req_header(rq, "X-Forwarded-For") : NULL;
    if (xff) {
        char client[INET6_ADDRSTRLEN];
        int found;
        vial_xff_client(px, xff, strlen(xff), client, sizeof client, &found);
        if (found) {
            char *kept = vial_arena_strndup(&rq->arena, client, strlen(client));
            if (kept)
                rq->remote_addr = kept;
        }
    }
    if (!rq->remote_addr)
        rq->remote_addr = "";
    return rq->remote_addr;
}

const char *vial_req_scheme(vial_req *rq)
{
    const char *xfp = trusted_peer(rq) ? vial_req_header(rq, "X-Forwarded-Proto") : NULL;
    const char *s = xfp ? vial_xfp_scheme(xfp, strlen(xfp)) : NULL;
    return s ? s : vial_conn_tls(rq) ? "https" : "http";
}

double vial_req_param_double(vial_req *rq, const char *name)
{
    for (unsigned i = 0; i < vial_rqs(rq)->nparams; i++)
        if (!strcmp(vial_rqs(rq)->params[i].name, name))
            return vial_rqs(rq)->param_doubles[i];
    return 0;
}

/* --- url_for ------------------------------------------------------------------- */

static const vial_rule *lookup_endpoint(vial_req *rq, const char *endpoint)
{
    char full[256];
    /* ".name" is relative to the current blueprint, as in Flask. */
    if (endpoint[0] == '.' && vial_rqs(rq)->route && vial_rqs(rq)->route->bp) {
        snprintf(full, sizeof full, "%s%s", vial_rqs(rq)->route->bp->name, endpoint);
        endpoint = full;
    } else if (endpoint[0] == '.') {
        endpoint++;
    }
    for (const vial_rule *r = vial_rqs(rq)->app ? vial_rqs(rq)->app->rules : NULL; r; r = r->next)
        if (!strcmp(r->endpoint, endpoint))
            return r;
    return NULL;
}

char *vial_url_for_kv(vial_req *rq, const char *endpoint, const char *const *kv, size_t npairs,
                      int external)
{
    const vial_rule *r = endpoint ? lookup_endpoint(rq, endpoint) : NULL;
    if (!r)
        return NULL;
    char *path = vial_router_build(r->rrule, kv, npairs, &rq->arena);
    if (!path || !external)
        return path;
    const char *host = vial_req_header(rq, "Host");
    return vial_sprintf(rq, "%s://%s%s", vial_req_scheme(rq), host ? host : "localhost", path);
}

char *vial_url_for(vial_req *rq, const char *endpoint, ...)
{
    const char *kv[64];
    size_t n = 0;
    int external = 0;
    va_list ap;
    va_start(ap, endpoint);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        if (!v || n + 2 > 64) {
            va_end(ap);
            return NULL;
        }
        if (!strcmp(k, "_external")) {
            external = 1;
            continue;
        }
        kv[n++] = k;
        kv[n++] = v;
    }
    va_end(ap);
    return vial_url_for_kv(rq, endpoint, kv, n / 2, external);
}
