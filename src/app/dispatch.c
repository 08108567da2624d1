/* The request lifecycle, in Flask's order (full_dispatch_request):
 *
 *   before_request: app hooks, then the matched blueprint's, in registration
 *                   order; a VIAL_DONE, abort or failure ends the phase;
 *   routing errors: raised only after the before hooks (404, 405, slash 308);
 *   the view:       through the app's middleware, then the endpoint's;
 *   errors:         HTTP errors go to the handler for their code, else to the
 *                   VIAL_HTTP_ERRORS fallback, the blueprint's before the
 *                   app's; unhandled errors are a 500 and teardown sees them;
 *                   the strict-slash 308 is never passed to handlers;
 *   after_request:  the blueprint's, then the app's, each newest first, on
 *                   every response (for a stream: before its head is sent);
 *   session save, then teardown (blueprint's, then app's, newest first).
 *
 * Each function runs the way it was registered: VIAL_ASYNC on this
 * coroutine, VIAL_SYNC on the worker pool. */
#include "app/app.h"
#include "app/compress.h"
#include "app/metrics.h"
#include "app/security.h"
#include "app/tasks.h"
#include "http/server.h"
#include "http/websocket.h"
#include "runtime/coro.h"
#include "runtime/log.h"
#include "runtime/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* --- calling functions the way they were registered ---------------------------- */

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

int vial_call_blocking(vial_req *rq, void (*fn)(void *), void *arg, int flags)
{
    if (flags != VIAL_SYNC || !rq->pool) {
        fn(arg);
        return 0;
    }
    if (rq->app_data && vial_rqs(rq)->shed)
        return 0; /* shutting down with the pool refusing work: skipped (see vial_call) */
    rq->is_sync = 1;
    int r = vial_pool_run(rq->pool, fn, arg);
    rq->is_sync = 0;
    return r;
}

int vial_call(vial_req *rq, vial_handler fn, int flags)
{
    if (flags != VIAL_SYNC || !rq->pool)
        return fn(rq, &rq->res);
    /* Shutting down, and the pool refused this request's sync work: its
     * remaining sync functions are skipped, so it answers within the grace
     * period instead of waiting behind blocked workers. */
    if (vial_rqs(rq)->shed)
        return 0;
    struct sync_call sc = {fn, rq, 0};
    /* A sync handler whose client left while it waited in the queue is
     * withdrawn, never run: departed clients must not fill the pool. */
    rq->is_sync = 1;
    int r = vial_pool_run_cancellable(rq->pool, sync_call_run, &sc);
    rq->is_sync = 0;
    if (r == -ECANCELED)
        return vial_fail(&rq->res, "request cancelled before its sync handler ran");
    if (r == -ESHUTDOWN) {
        /* The caller decides what a refusal means: before the view, a 503;
         * after it (after_request), the hook is skipped. */
        vial_rqs(rq)->shed = 1;
        return -ESHUTDOWN;
    }
    if (r == -EAGAIN) {
        /* The pool's queue is full: shed load rather than queue forever. */
        vial_res_add_header(&rq->res, "Retry-After", "1");
        return vial_abort_msg(&rq->res, 503, "worker pool saturated");
    }
    return r < 0 ? vial_fail(&rq->res, "worker pool unavailable") : sc.result;
}

/* --- middleware chain ----------------------------------------------------------------- */

struct vial_next {
    vial_req *rq;
    vial_handler fn;
    int flags;
    const vial_mw *lists[2];
    unsigned counts[2];
    unsigned list, idx;
};

int vial_next_call(vial_next *n)
{
    while (n->list < 2 && n->idx >= n->counts[n->list]) {
        n->list++;
        n->idx = 0;
    }
    if (n->list < 2) {
        const vial_mw *m = &n->lists[n->list][n->idx++];
        return m->fn(n->rq, &n->rq->res, n, m->arg);
    }
    return vial_call(n->rq, n->fn, n->flags);
}

static int call_view(vial_app *app, vial_req *rq, const vial_rule *r)
{
    vial_handler fn = r->fn;
    int flags = r->flags;
    if (r->methods) {
        /* method view: the handler for this method; HEAD uses GET's */
        const char *m = vial_req_method(rq);
        const vial_view_method *hit = NULL;
        for (unsigned i = 0; i < r->nmethods && !hit; i++)
            if (!strcmp(r->methods[i].method, m))
                hit = &r->methods[i];
        for (unsigned i = 0; i < r->nmethods && !hit && rq->is_head; i++)
            if (!strcmp(r->methods[i].method, "GET"))
                hit = &r->methods[i];
        if (!hit)
            return vial_abort(&rq->res, 405);
        fn = hit->fn;
        flags = hit->flags;
    }
    if (!app->nmws && !r->nmws)
        return vial_call(rq, fn, flags);
    vial_next n = {
        .rq = rq, .fn = fn, .flags = flags,
        .lists = {app->mws, r->mws}, .counts = {app->nmws, r->nmws},
    };
    return vial_next_call(&n);
}

/* --- phases -------------------------------------------------------------------------------- */

/* A function's result with vial_abort / vial_fail made sticky: they stand
 * when their return value was dropped. A returned negative code wins. */
/* Failures of a request whose client reset the connection are the reset's
 * echo (its sync functions are withdrawn, never run): worth a debug line,
 * not an error each — a client resetting thousands of requests must not
 * flood the log. */
static int failure_level(void)
{
    vial_coro *co = vial_coro_current();
    return co && vial_coro_is_abandoned(co) ? VIAL_LOG_DEBUG : VIAL_LOG_ERROR;
}

static int outcome(const vial_res *rs, int rc)
{
    if (rc < 0)
        return rc;
    if (vial_rqs(rs->rq)->aborted)
        return VIAL_EHTTP(vial_rqs(rs->rq)->aborted);
    if (vial_rqs(rs->rq)->failed)
        return VIAL_FAILED;
    return rc;
}

static int run_before(vial_req *rq, const vial_hooks *h)
{
    for (unsigned i = 0; i < h->nbefore; i++) {
        int r = outcome(&rq->res, vial_call(rq, h->before[i].fn, h->before[i].flags));
        if (r != 0)
            return r;
    }
    return 0;
}

static int run_after(vial_req *rq, const vial_hooks *h)
{
    for (unsigned i = h->nafter; i-- > 0;) {
        int r = vial_call(rq, h->after[i].fn, h->after[i].flags);
        if (r == -ESHUTDOWN)
            continue; /* shutting down: the view's response stands */
        if (r < 0)
            return r;
        if (vial_rqs(rq)->failed)
            return VIAL_FAILED;
    }
    return 0;
}

struct teardown_call {
    vial_teardown_fn fn;
    vial_req *rq;
    const char *error;
};

static void teardown_run(void *arg)
{
    struct teardown_call *t = arg;
    t->fn(t->rq, t->error);
}

static void run_teardown(vial_req *rq, const vial_hooks *h, const char *error)
{
    for (unsigned i = h->nteardown; i-- > 0;) {
        struct teardown_call t = {h->teardown[i].fn, rq, error};
        vial_call_blocking(rq, teardown_run, &t, h->teardown[i].flags);
    }
}

static const vial_errh *find_handler(const vial_hooks *h, int code)
{
    for (unsigned i = 0; i < h->nerrh; i++)
        if (h->errh[i].code == code)
            return &h->errh[i];
    return NULL;
}

/* Default rendering of an HTTP error nobody handles: a short text. */
static void render_default(vial_req *rq, int status)
{
    vial_res *rs = &rq->res;
    rs->streaming = 0;
    vial_text(rs, status, "%d %s", status, vial_status_reason(status));
}

/* Renders an HTTP error through the handlers (code-specific, then the
 * fallback; blueprint before app). Returns the unhandled error message when
 * the handler itself failed, else NULL. */
static const char *handle_error(vial_app *app, vial_req *rq, const vial_bp *bp, int code,
                                const char *msg)
{
    vial_res *rs = &rq->res;
    vial_rqs(rq)->error_code = code;
    vial_rqs(rq)->error_msg = msg;
    const vial_errh *eh = NULL;
    int codes[2] = {code, VIAL_HTTP_ERRORS};
    for (int c = 0; c < 2 && !eh; c++) {
        if (bp)
            eh = find_handler(&bp->hooks, codes[c]);
        if (!eh)
            eh = find_handler(&app->hooks, codes[c]);
    }
    /* The error's own headers (Allow on 405) stay; the body is the handler's. */
    rs->status = code;
    vial_rqs(rs->rq)->aborted = 0;
    vial_rqs(rs->rq)->failed = 0;
    vial_res_drop_file(rs);
    rs->body_len = 0;
    rs->content_type = NULL;
    if (!eh || (eh->flags == VIAL_SYNC && vial_rqs(rq)->shed)) {
        render_default(rq, code);
        return NULL;
    }
    int r = outcome(rs, vial_call(rq, eh->fn, eh->flags));
    if (r == -ESHUTDOWN) {
        render_default(rq, code);
        return NULL;
    }
    if (r == 0 || r == VIAL_DONE)
        return NULL;
    /* A failing error handler: Flask gives up on handlers and sends a bare 500. */
    const char *err = vial_rqs(rs->rq)->failed && vial_rqs(rs->rq)->error_message ? vial_rqs(rs->rq)->error_message
                                                     : vial_strdup(rq, vial_strerror(r));
    if (!err)
        err = "error handler failed";
    vial_log(failure_level(), "error handler for %d failed: %s", code, err);
    rs->nheaders = 0;
    render_default(rq, 500);
    return err;
}

/* The unhandled error's message, for the log and teardown: vial_fail's, else
 * the code's name (copied: vial_strerror may use a per-thread buffer). */
static const char *failure_message(vial_req *rq, int rc)
{
    if (vial_rqs(rq)->failed && vial_rqs(rq)->error_message)
        return vial_rqs(rq)->error_message;
    if (rc == VIAL_FAILED && vial_rqs(rq)->error_message)
        return vial_rqs(rq)->error_message;
    if (rc > VIAL_DONE) {
        const char *m = vial_sprintf(rq, "returned %d, not 0 or a negative code", rc);
        return m ? m : "unhandled error";
    }
    const char *m = vial_strdup(rq, vial_strerror(rc));
    return m ? m : "unhandled error";
}

/* after_request + session save, once. Also called by vial_stream_begin. */
struct lifecycle {
    vial_app *app;
    const vial_bp *bp;
    const char *error; /* unhandled error, for teardown */
};

static void finalize(vial_req *rq)
{
    if (vial_rqs(rq)->finalized)
        return;
    vial_rqs(rq)->finalized = 1;
    struct lifecycle *lc = vial_rqs(rq)->lifecycle;
    int r = 0;
    if (lc->bp)
        r = run_after(rq, &lc->bp->hooks);
    if (r >= 0)
        r = run_after(rq, &lc->app->hooks);
    if (r < 0 && !rq->res.streaming) {
        /* A failing after_request hook: the response becomes the 500 and the
         * hooks run again on it, their failures ignored (as Flask does). */
        lc->error = failure_message(rq, r);
        vial_log(failure_level(), "after_request failed: %s", lc->error);
        rq->res.nheaders = 0;
        handle_error(lc->app, rq, lc->bp, 500, lc->error);
        if (lc->bp)
            run_after(rq, &lc->bp->hooks);
        run_after(rq, &lc->app->hooks);
    }
    if (vial_rqs(rq)->session)
        vial_session_save(rq);
    if (lc->app->ops.request_id)
        vial_request_id_echo(rq);
}

static void copy_params(vial_req *rq, const vial_match *m)
{
    vial_rqs(rq)->nparams = m->nparams;
    for (unsigned i = 0; i < m->nparams; i++) {
        vial_rqs(rq)->params[i].name = m->params[i].name;
        vial_rqs(rq)->params[i].value = m->params[i].value;
        vial_rqs(rq)->params[i].name_len = strlen(m->params[i].name);
        vial_rqs(rq)->params[i].value_len = m->params[i].len;
        vial_rqs(rq)->param_ints[i] = m->params[i].ival;
        vial_rqs(rq)->param_doubles[i] = m->params[i].dval;
    }
}

/* For OPTIONS, the rule that answers (so its blueprint's hooks apply): any
 * rule of the path, found through one of its methods. */
static const vial_rule *rule_for_options(vial_app *app, vial_req *rq, const char *path, size_t path_len,
                                         const char *allow)
{
    vial_match m;
    const char *p = allow;
    for (;;) {
        p += strspn(p, ", ");
        size_t n = strcspn(p, ", ");
        if (!n)
            return NULL;
        char method[32];
        if (n < sizeof method) {
            memcpy(method, p, n);
            method[n] = 0;
            if (vial_router_match_n(app->router, path, path_len, method, &rq->arena, &m) == VIAL_MATCH_OK)
                return m.target;
        }
        p += n;
    }
}

static void redirect_slash(vial_req *rq)
{
    vial_res *rs = &rq->res;
    /* Built from the raw path so percent-encoding survives the round trip. */
    const char *loc = rq->head.has_query
                          ? vial_sprintf(rq, "%.*s/?%.*s", (int)rq->head.path.len, rq->head.path.p,
                                         (int)rq->head.query.len, rq->head.query.p)
                          : vial_sprintf(rq, "%.*s/", (int)rq->head.path.len, rq->head.path.p);
    rs->status = 308;
    rs->body_len = 0;
    if (loc)
        vial_res_add_header(rs, "Location", loc);
}

static void serve(vial_app *app, vial_req *rq)
{
    vial_res *rs = &rq->res;
    size_t path_len;
    const char *path = vial_req_path_n(rq, &path_len);
    const char *method = vial_req_method(rq);
    /* Whatever answers a HEAD request (view, error, redirect) sends no body. */
    rq->is_head = !strcmp(method, "HEAD");

    if (rq->reject_status) {
        /* The HTTP layer refused the request (a body over max_body): the
         * app's handler renders the error, but the request never reached the
         * app proper, so no hook runs (spec 3.2, 9). */
        handle_error(app, rq, NULL, rq->reject_status, NULL);
        if (app->cors)
            vial_cors_headers(rq); /* so the page's script can read why */
        if (app->ops.request_id)
            vial_request_id_echo(rq);
        return;
    }

    vial_match m;
    int mr = vial_router_match_n(app->router, path, path_len, method, &rq->arena, &m);
    if (mr != VIAL_MATCH_OK && rq->is_head) {
        vial_match mg;
        if (vial_router_match_n(app->router, path, path_len, "GET", &rq->arena, &mg) == VIAL_MATCH_OK) {
            m = mg;
            mr = VIAL_MATCH_OK;
        }
    }
    const vial_rule *rule = NULL;
    const char *allow = NULL;
    int options = 0;
    if (mr == VIAL_MATCH_OK) {
        rule = m.target;
        copy_params(rq, &m);
    } else if (mr == VIAL_MATCH_METHOD) {
        allow = vial_router_allow_n(app->router, path, path_len, &rq->arena);
        options = !strcmp(method, "OPTIONS");
        if (options && allow)
            rule = rule_for_options(app, rq, path, path_len, allow);
    }
    vial_rqs(rq)->route = rule;
    vial_coro *co = vial_coro_current();
    if (co && rule) {
        vial_coro_label_route(co, rule->label);
        co->request = rq; /* for a crash report (vial_crash_describe) */
    }

    if (rule && rule->ws) {
        /* Websocket routes run no hooks (spec 3.1, 5): judge the handshake,
         * then the session takes the connection over (http/websocket.c). */
        int st = vial_ws_handshake_check(&rq->head, vial_req_header(rq, "Sec-WebSocket-Key"),
                                         vial_req_header(rq, "Sec-WebSocket-Version"));
        if (st == 0) {
            if (app->ops.metrics)
                vial_metrics_ws(1);
            st = vial_ws_serve(rq, rule->ws);
            if (app->ops.metrics)
                vial_metrics_ws(-1);
            vial_tasks_reap(rq);
        }
        if (st == 426)
            vial_res_add_header(rs, "Sec-WebSocket-Version", "13");
        if (st)
            handle_error(app, rq, rule->bp, st, NULL);
        if (co) {
            co->label = "http connection";
            co->request = NULL;
        }
        return;
    }

    struct lifecycle lc = {app, rule ? rule->bp : NULL, NULL};
    vial_rqs(rq)->lifecycle = &lc;
    vial_rqs(rq)->finalize = finalize;

    int rc = run_before(rq, &app->hooks);
    if (rc == 0 && lc.bp)
        rc = run_before(rq, &lc.bp->hooks);
    int routing_redirect = 0;
    unsigned nargs = rq->head.has_query ? vial_req_arg_total(rq) : 0;
    if (rc == 0) {
        if (nargs > vial_req_max_fields(rq)) {
            /* Raised where routing errors are, after the before hooks, as
             * Werkzeug raises its form limits when the data is read. */
            rc = vial_abort_msg(rs, 413, vial_sprintf(rq, "too many query arguments (%u; the limit is %u)",
                                                      nargs, vial_req_max_fields(rq)));
        } else if (options) {
            rs->status = 200;
            rs->body_len = 0;
            vial_res_add_header(rs, "Allow", allow);
        } else if (mr == VIAL_MATCH_OK && rq->head.upgrade_websocket) {
            rc = vial_abort(rs, 400); /* not a websocket route: not upgraded */
        } else if (mr == VIAL_MATCH_OK) {
            rc = outcome(rs, call_view(app, rq, rule));
            vial_tasks_reap(rq); /* nothing the view spawned outlives it */
            if (rc >= 0 && rc <= VIAL_DONE && !vial_rqs(rs->rq)->built) {
                /* Flask: "the view function did not return a valid response". */
                vial_rqs(rs->rq)->error_message = vial_sprintf(rq, "view '%s' returned 0 without building a response",
                                                 rule->endpoint);
                vial_rqs(rs->rq)->failed = 1;
                rc = VIAL_FAILED;
            }
        } else if (mr == VIAL_MATCH_METHOD) {
            if (allow)
                vial_res_add_header(rs, "Allow", allow);
            rc = vial_abort(rs, 405);
        } else if (mr == VIAL_MATCH_REDIRECT) {
            redirect_slash(rq);
            routing_redirect = 1;
        } else {
            rc = vial_abort(rs, 404);
        }
    }
    if (rc == -ESHUTDOWN) {
        /* A before hook or the view was refused by the draining pool. */
        vial_res_add_header(rs, "Retry-After", "1");
        rc = vial_abort_msg(rs, 503, "server shutting down");
    }
    rc = outcome(rs, rc);
    int http_status = vial_http_status_of(rc);
    if (http_status && !routing_redirect) {
        /* The message of whoever raised it: vial_abort_msg, or the helper
         * (vial_req_json...) whose code the view passed on. */
        const char *msg = NULL;
        if (vial_rqs(rs->rq)->aborted == http_status)
            msg = vial_rqs(rs->rq)->error_message;
        else if (rc == vial_rqs(rs->rq)->helper_code)
            msg = vial_rqs(rs->rq)->helper_msg;
        if (!rs->streaming)
            lc.error = handle_error(app, rq, lc.bp, http_status, msg);
    } else if (rc < 0 || rc > VIAL_DONE) {
        lc.error = failure_message(rq, rc);
        vial_log(failure_level(), "%s %s: unhandled error: %s", method, path, lc.error);
        if (!rs->streaming) {
            rs->nheaders = 0;
            const char *again = handle_error(app, rq, lc.bp, 500, lc.error);
            (void)again;
        }
    }
    finalize(rq);
    vial_compress_end(rq);
    vial_tasks_reap(rq);
    if (co) {
        co->deadline = 0; /* vial_set_deadline is per request; the connection goes on */
        co->label = "http connection";
        co->request = NULL;
    }
    if (lc.bp)
        run_teardown(rq, &lc.bp->hooks, lc.error);
    run_teardown(rq, &app->hooks, lc.error);
    vial_rqs(rq)->lifecycle = NULL;
}

/* "GET /path?query" of a crashing request, from its parsed head: byte
 * copies only, as a signal handler may do. */
void vial_crash_describe(void *request, char *out, size_t cap)
{
    const vial_req *rq = request;
    const struct { const char *p; size_t n; } parts[] = {
        {rq->head.method.p, rq->head.method.len}, {" ", 1}, {rq->head.path.p, rq->head.path.len},
        {"?", rq->head.has_query ? 1 : 0}, {rq->head.query.p, rq->head.has_query ? rq->head.query.len : 0},
    };
    size_t at = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        for (size_t k = 0; k < parts[i].n && at + 1 < cap; k++)
            out[at++] = parts[i].p[k];
    out[at] = 0;
}

/* --metrics-path and --health-path are answered before routing and hooks:
 * a probe must not depend on the app's before_request (an auth hook would
 * make the load balancer think the server is down). */
static int ops_path(const vial_req *rq, const char *want, size_t n)
{
    return n && rq->head.path.len == n && !memcmp(rq->head.path.p, want, n);
}

static uint64_t body_bytes(const vial_req *rq, const vial_req_state *st)
{
    const vial_res *rs = &rq->res;
    if (rs->streaming)
        return st->streamed;
    if (rq->is_head || rs->upgraded || rs->status < 200 || rs->status == 204 || rs->status == 304)
        return 0;
    return rs->body_len;
}

void vial_app_serve(void *data, vial_req *rq)
{
    vial_app *app = data;
    vial_req_state state;
    vial_req_state_init(rq, &state, app);
    const vial_ops *ops = &app->ops;
    /* One call site for the lifecycle, so it stays inlined: with every
     * operations feature off, serving costs one test of the flags. */
    int timed = ops->access_log | ops->metrics;
    const char *probe = NULL;
    int shed = 0;
    uint64_t t0 = 0;
    vial_mthread *mt = NULL;
    if (__builtin_expect(timed | ops->request_id | (ops->health_len != 0) | (ops->shed_target_ns != 0),
                         0)) {
        /* The start is when the loop woke up with the request's bytes (its
         * cached clock): no clock read, and time spent behind other
         * requests of the same wake-up counts, as the client saw it. */
        if (ops->metrics && (mt = vial_metrics_begin()) && mt->now) {
            t0 = *mt->now;
        } else if (timed) {
            vial_loop *loop = vial_loop_current();
            t0 = loop ? loop->now : vial_clock_ns();
        }
        /* The probes count under endpoints of their own, in parentheses so
         * no app endpoint (an identifier) can share their series. */
        if (!rq->reject_status && ops_path(rq, ops->health_path, ops->health_len))
            probe = "(health)";
        else if (!rq->reject_status && ops_path(rq, ops->metrics_path, ops->metrics_len))
            probe = "(metrics)";
        /* Probes are never shed: an overloaded instance must still say so. */
        shed = !probe && ops->shed_target_ns && vial_shed_check(rq);
    }
    if (probe) {
        rq->is_head = !strcmp(vial_req_method(rq), "HEAD");
        if (probe[1] == 'h')
            vial_health_render(rq);
        else
            vial_metrics_render(rq);
        vial_res_set_header(&rq->res, "Cache-Control", "no-store");
        if (ops->request_id)
            vial_request_id_echo(rq);
    } else if (shed) {
        vial_shed_render(rq);
        if (ops->request_id)
            vial_request_id_echo(rq);
    } else {
        serve(app, rq);
    }
    if (!timed)
        return;
    {
        uint64_t dur = vial_clock_ns() - t0;
        if (mt)
            vial_metrics_end(mt, rq->head.method.p, rq->head.method.len, rq->res.status,
                             probe ? (probe[1] == 'h' ? VIAL_STATS_HEALTH : VIAL_STATS_METRICS)
                             : state.route ? state.route->stats_id : VIAL_STATS_NONE,
                             probe ? probe : state.route ? state.route->endpoint : "", dur);
        if (ops->access_log)
            vial_accesslog_request(rq, body_bytes(rq, &state), dur);
    }
}
