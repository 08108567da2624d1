/* The application object and request dispatch: routing, automatic HEAD and
 * OPTIONS, 405 with Allow, strict-slash redirects, and calling the view on
 * the loop (async) or on the worker pool (sync). */
#include "app/app.h"
#include "http/server.h"
#include "runtime/coro.h"
#include "runtime/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vial_app *vial_app_new(void)
{
    return calloc(1, sizeof(vial_app));
}

void vial_app_free(vial_app *app)
{
    if (!app)
        return;
    vial_router_free(app);
    free(app);
}

int vial_route(vial_app *app, const char *rule, vial_handler fn)
{
    return vial_router_add(app, rule, fn, 0);
}

int vial_route_sync(vial_app *app, const char *rule, vial_handler fn)
{
    return vial_router_add(app, rule, fn, 1);
}

vial_config vial_config_default(void)
{
    return (vial_config){
        .host = "127.0.0.1",
        .port = 8080,
        .threads = 0,
        .workers = 16,
        .queue_max = 4096,
        .stack_size = 128 * 1024,
        .grace_ms = 2000,
        .server_header = 0,
    };
}

static int parse_int_arg(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

int vial_config_args(vial_config *cfg, int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--host") && v)
            cfg->host = v;
        else if (!strcmp(a, "--port") && v)
            bad = parse_int_arg(v, 0, 65535, &cfg->port);
        else if (!strcmp(a, "--threads") && v)
            bad = parse_int_arg(v, 0, 1024, &cfg->threads);
        else if (!strcmp(a, "--workers") && v)
            bad = parse_int_arg(v, 1, 4096, &cfg->workers);
        else
            bad = -EINVAL;
        if (bad) {
            fprintf(stderr, "usage: %s [--host ADDR] [--port N] [--threads N] [--workers N]\n"
                            "  bad or unknown argument: %s\n",
                    argv[0], a);
            return -EINVAL;
        }
    }
    return 0;
}

int vial_run(vial_app *app, const vial_config *cfg)
{
    vial_config c = cfg ? *cfg : vial_config_default();
    vial_config d = vial_config_default();
    if (!c.host)
        c.host = d.host;
    if (c.workers <= 0)
        c.workers = d.workers;
    if (c.queue_max <= 0)
        c.queue_max = d.queue_max;
    if (!c.stack_size)
        c.stack_size = d.stack_size;
    if (c.grace_ms <= 0)
        c.grace_ms = d.grace_ms;
    return vial_server_run(&c, vial_app_serve, app);
}

/* --- dispatch ------------------------------------------------------------------- */

struct sync_call {
    vial_handler fn;
    vial_req *rq;
    int result;
};

static void sync_call_run(void *arg)
{
    struct sync_call *sc = arg;
    sc->result = sc->fn(sc->rq, &sc->rq->res);
}

/* Runs a view, hook or handler the way it was registered. */
static int call_handler(vial_req *rq, vial_handler fn, int is_sync)
{
    if (!is_sync)
        return fn(rq, &rq->res);
    struct sync_call sc = {fn, rq, 0};
    rq->is_sync = 1;
    int r = vial_pool_run(rq->server->pool, sync_call_run, &sc);
    rq->is_sync = 0;
    if (r == -EAGAIN) {
        vial_res_header(&rq->res, "Retry-After", "1");
        return vial_abort(&rq->res, 503);
    }
    return r < 0 ? vial_fail(&rq->res, "worker pool unavailable") : sc.result;
}

/* Default rendering of an HTTP error: a short text naming the status. */
static void render_error(vial_req *rq, int status)
{
    vial_res *rs = &rq->res;
    rs->body_len = 0;
    vial_text(rs, status, "%d %s", status, vial_status_reason(status));
}

static int method_is(const vial_req *rq, const char *m)
{
    size_t n = strlen(m);
    return rq->head.method.len == n && !memcmp(rq->head.method.p, m, n);
}

static void redirect_slash(vial_req *rq, const char *path)
{
    vial_res *rs = &rq->res;
    /* Location is built from the raw path so percent-encoding survives. */
    const char *loc = rq->head.has_query
                          ? vial_sprintf(rq, "%.*s/?%.*s", (int)rq->head.path.len, rq->head.path.p,
                                         (int)rq->head.query.len, rq->head.query.p)
                          : vial_sprintf(rq, "%.*s/", (int)rq->head.path.len, rq->head.path.p);
    (void)path;
    rs->status = 308;
    if (loc)
        vial_res_header(rs, "Location", loc);
}

void vial_app_serve(void *data, vial_req *rq)
{
    vial_app *app = data;
    vial_res *rs = &rq->res;
    const char *path = vial_req_path(rq);
    const char *method = vial_req_method(rq);
    int path_matched = 0;
    /* Whatever answers a HEAD request (view, error, redirect) sends no body. */
    rq->is_head = method_is(rq, "HEAD");
    const vial_rule *r = vial_router_match(app, rq, path, method, &path_matched);
    if (!r && rq->is_head)
        r = vial_router_match(app, rq, path, "GET", &path_matched);
    int rc = 0;
    if (r) {
        rq->route = r;
        vial_coro *co = vial_coro_current();
        if (co)
            co->label = r->rule;
        rc = call_handler(rq, r->fn, r->is_sync);
    } else if (path_matched && method_is(rq, "OPTIONS")) {
        rs->status = 200;
        vial_res_header(rs, "Allow", vial_router_allow(app, rq, path));
        return;
    } else if (path_matched) {
        vial_res_header(rs, "Allow", vial_router_allow(app, rq, path));
        rc = vial_abort(rs, 405);
    } else {
        size_t n = strlen(path);
        if (n && path[n - 1] != '/') {
            char *slashed = vial_sprintf(rq, "%s/", path);
            int pm = 0;
            if (slashed && (vial_router_match(app, rq, slashed, "GET", &pm) || pm)) {
                redirect_slash(rq, path);
                return;
            }
        }
        rc = vial_abort(rs, 404);
    }
    if (rc == VIAL_ABORTED || rs->aborted) {
        if (!rs->streaming)
            render_error(rq, rs->status);
    } else if (rc < 0) {
        fprintf(stderr, "vial: %s %s: unhandled error: %s\n", method, path,
                rs->error_message ? rs->error_message : "(no message)");
        if (!rs->streaming) {
            rs->nheaders = 0;
            render_error(rq, 500);
        }
    }
}
