/* The application object and everything registered on it: routes, method
 * views, blueprints, hooks, error handlers, middleware, app state, config. */
#include "app/app.h"
#include "app/compress.h"
#include "app/proxy.h"
#include "app/render.h"
#include "app/security.h"
#include "app/session.h"
#include "http/server.h"
#include "runtime/crash.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vial_app *vial_app_new(void)
{
    vial_app *app = calloc(1, sizeof(vial_app));
    if (!app)
        return NULL;
    app->router = vial_router_new();
    if (!app->router) {
        free(app);
        return NULL;
    }
    return app;
}

static void hooks_free(vial_hooks *h)
{
    free(h->before);
    free(h->after);
    free(h->teardown);
    free(h->errh);
}

void vial_app_free(vial_app *app)
{
    if (!app)
        return;
    vial_rule *r = app->rules;
    while (r) {
        vial_rule *next = r->next;
        free(r->endpoint);
        free(r->label);
        free(r->methods);
        free(r->mws);
        free(r);
        r = next;
    }
    vial_bp *bp = app->bps;
    while (bp) {
        vial_bp *next = bp->next;
        hooks_free(&bp->hooks);
        free(bp->name);
        free(bp->prefix);
        free(bp);
        bp = next;
    }
    hooks_free(&app->hooks);
    free(app->mws);
    vial_static_release(app);
    vial_render_free(app);
    vial_compress_release(app);
    vial_router_free(app->router);
    free(app->session_cfg);
    vial_csrf_release(app);
    vial_cors_release(app);
    free(app);
}

/* Grows a malloc'd array by one element of `size` bytes. */
static void *push(void *arr, unsigned *n, size_t size)
{
    char *a = realloc(arr, (*n + 1) * size);
    if (!a)
        return NULL;
    memset(a + *n * size, 0, size);
    (*n)++;
    return a;
}

static int valid_flags(int flags)
{
    return flags == VIAL_ASYNC || flags == VIAL_SYNC;
}

int vial_app_setup_check(const vial_app *app)
{
    if (!app)
        return -EINVAL;
    /* Acquire pairs with vial_run's release: a thread that sees the flag
     * clear registers before the server could have read the tables. */
    return __atomic_load_n(&app->running, __ATOMIC_ACQUIRE) ? -EBUSY : 0;
}

/* --- routes ---------------------------------------------------------------------- */

static vial_rule *find_endpoint(vial_app *app, const char *endpoint)
{
    for (vial_rule *r = app->rules; r; r = r->next)
        if (!strcmp(r->endpoint, endpoint))
            return r;
    return NULL;
}

/* Splits "GET,POST /path" into a NULL-terminated method list (in buf) and
 * the path. No methods: GET. */
static int split_rule(const char *rule, char *buf, size_t cap, const char **methods, unsigned max,
                      const char **path)
{
    if (rule[0] == '/') {
        methods[0] = "GET";
        methods[1] = NULL;
        *path = rule;
        return 0;
    }
    const char *sp = strchr(rule, ' ');
    if (!sp || (size_t)(sp - rule) >= cap)
        return -EINVAL;
    memcpy(buf, rule, (size_t)(sp - rule));
    buf[sp - rule] = 0;
    /* Cut in place at each ',' (strtok's static state would be shared by
     * every thread that registers). */
    unsigned n = 0;
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next)
            *next++ = 0;
        while (*tok == ' ')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ')
            *--end = 0;
        if (!*tok || n + 1 >= max)
            return -EINVAL;
        methods[n++] = tok;
    }
    methods[n] = NULL;
    while (*sp == ' ')
        sp++;
    *path = sp;
    return n ? 0 : -EINVAL;
}

/* Registers a rule for endpoint under bp's prefix. */
static int add_rule(vial_app *app, vial_bp *bp, const char *path, const char *const *methods,
                    const char *endpoint, vial_rule **out)
{
    char full_ep[256], pattern[1024];
    if (!endpoint || !*endpoint || !path || path[0] != '/')
        return -EINVAL;
    if (bp) {
        if ((size_t)snprintf(full_ep, sizeof full_ep, "%s.%s", bp->name, endpoint) >= sizeof full_ep ||
            (size_t)snprintf(pattern, sizeof pattern, "%s%s", bp->prefix, path) >= sizeof pattern)
            return -EINVAL;
    } else {
        if (strlen(endpoint) >= sizeof full_ep || strlen(path) >= sizeof pattern)
            return -EINVAL;
        strcpy(full_ep, endpoint);
        strcpy(pattern, path);
    }
    if (find_endpoint(app, full_ep))
        return -EEXIST;
    vial_rule *r = calloc(1, sizeof *r);
    if (!r || !(r->endpoint = strdup(full_ep))) {
        free(r);
        return -ENOMEM;
    }
    r->bp = bp;
    size_t ll = strlen(pattern) + strlen(full_ep) + 4;
    r->label = malloc(ll);
    int rc = r->label ? vial_router_add(app->router, pattern, methods, r, &r->rrule) : -ENOMEM;
    if (rc < 0) {
        free(r->label);
        free(r->endpoint);
        free(r);
        return rc;
    }
    snprintf(r->label, ll, "%s (%s)", pattern, full_ep);
    r->stats_id = VIAL_STATS_RULES + app->nrules++;
    if (app->rules_tail)
        app->rules_tail->next = r;
    else
        app->rules = r;
    app->rules_tail = r;
    *out = r;
    return 0;
}

static int route_as(vial_app *app, vial_bp *bp, const char *rule, vial_handler fn,
                    const char *endpoint, void *data, int flags)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!rule || !fn || !valid_flags(flags))
        return -EINVAL;
    char buf[256];
    const char *methods[32], *path;
    rc = split_rule(rule, buf, sizeof buf, methods, 32, &path);
    if (rc < 0)
        return rc;
    vial_rule *r;
    rc = add_rule(app, bp, path, methods, endpoint, &r);
    if (rc < 0)
        return rc;
    r->fn = fn;
    r->flags = flags;
    r->view_data = data;
    return 0;
}

int vial_route_as(vial_app *app, const char *rule, vial_handler fn, const char *endpoint, void *data)
{
    return route_as(app, NULL, rule, fn, endpoint, data, VIAL_ASYNC);
}

int vial_route_as_sync(vial_app *app, const char *rule, vial_handler fn, const char *endpoint,
                       void *data)
{
    return route_as(app, NULL, rule, fn, endpoint, data, VIAL_SYNC);
}

int vial_converter(vial_app *app, const char *name, vial_converter_fn match, void *arg)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!name || !match)
        return -EINVAL;
    return vial_router_add_converter(app->router, name, match, arg);
}

static int add_view(vial_app *app, vial_bp *bp, const char *path, const char *endpoint,
                    const vial_view_method *tbl, void *data)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!tbl)
        return -EINVAL;
    unsigned n = 0;
    const char *methods[33];
    for (; tbl[n].method; n++) {
        if (n >= 32 || !tbl[n].fn || !valid_flags(tbl[n].flags))
            return -EINVAL;
        methods[n] = tbl[n].method;
    }
    if (!n)
        return -EINVAL;
    methods[n] = NULL;
    vial_view_method *copy = calloc(n + 1, sizeof *copy);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, tbl, n * sizeof *copy);
    vial_rule *r;
    rc = add_rule(app, bp, path, methods, endpoint, &r);
    if (rc < 0) {
        free(copy);
        return rc;
    }
    r->methods = copy;
    r->nmethods = n;
    r->view_data = data;
    return 0;
}

int vial_add_view(vial_app *app, const char *path, const char *endpoint,
                  const vial_view_method *methods, void *data)
{
    return add_view(app, NULL, path, endpoint, methods, data);
}

void *vial_route_data(vial_req *rq)
{
    return vial_rqs(rq)->route ? vial_rqs(rq)->route->view_data : NULL;
}

/* --- hooks and error handlers ---------------------------------------------------- */

static int add_fn(vial_fn **arr, unsigned *n, vial_handler fn, int flags)
{
    if (!fn || !valid_flags(flags))
        return -EINVAL;
    vial_fn *a = push(*arr, n, sizeof **arr);
    if (!a)
        return -ENOMEM;
    a[*n - 1] = (vial_fn){fn, flags};
    *arr = a;
    return 0;
}

static int add_teardown(vial_hooks *h, vial_teardown_fn fn, int flags)
{
    if (!fn || !valid_flags(flags))
        return -EINVAL;
    vial_teardown_entry *a = push(h->teardown, &h->nteardown, sizeof *a);
    if (!a)
        return -ENOMEM;
    a[h->nteardown - 1] = (vial_teardown_entry){fn, flags};
    h->teardown = a;
    return 0;
}

static int add_errh(vial_hooks *h, int code, vial_handler fn, int flags)
{
    if (!fn || !valid_flags(flags) || (code != VIAL_HTTP_ERRORS && (code < 400 || code > 599)))
        return -EINVAL;
    for (unsigned i = 0; i < h->nerrh; i++)
        if (h->errh[i].code == code) { /* re-registering replaces, as in Flask */
            h->errh[i] = (vial_errh){code, fn, flags};
            return 0;
        }
    vial_errh *a = push(h->errh, &h->nerrh, sizeof *a);
    if (!a)
        return -ENOMEM;
    a[h->nerrh - 1] = (vial_errh){code, fn, flags};
    h->errh = a;
    return 0;
}

static int before_request(vial_app *app, vial_handler fn, int flags)
{
    int rc = vial_app_setup_check(app);
    return rc < 0 ? rc : add_fn(&app->hooks.before, &app->hooks.nbefore, fn, flags);
}

int vial_before_request(vial_app *app, vial_handler fn)
{
    return before_request(app, fn, VIAL_ASYNC);
}

int vial_before_request_sync(vial_app *app, vial_handler fn)
{
    return before_request(app, fn, VIAL_SYNC);
}

static int after_request(vial_app *app, vial_handler fn, int flags)
{
    int rc = vial_app_setup_check(app);
    return rc < 0 ? rc : add_fn(&app->hooks.after, &app->hooks.nafter, fn, flags);
}

int vial_after_request(vial_app *app, vial_handler fn)
{
    return after_request(app, fn, VIAL_ASYNC);
}

int vial_after_request_sync(vial_app *app, vial_handler fn)
{
    return after_request(app, fn, VIAL_SYNC);
}

static int teardown_request(vial_app *app, vial_teardown_fn fn, int flags)
{
    int rc = vial_app_setup_check(app);
    return rc < 0 ? rc : add_teardown(&app->hooks, fn, flags);
}

int vial_teardown_request(vial_app *app, vial_teardown_fn fn)
{
    return teardown_request(app, fn, VIAL_ASYNC);
}

int vial_teardown_request_sync(vial_app *app, vial_teardown_fn fn)
{
    return teardown_request(app, fn, VIAL_SYNC);
}

static int errorhandler(vial_app *app, int code, vial_handler fn, int flags)
{
    int rc = vial_app_setup_check(app);
    return rc < 0 ? rc : add_errh(&app->hooks, code, fn, flags);
}

int vial_errorhandler(vial_app *app, int code, vial_handler fn)
{
    return errorhandler(app, code, fn, VIAL_ASYNC);
}

int vial_errorhandler_sync(vial_app *app, int code, vial_handler fn)
{
    return errorhandler(app, code, fn, VIAL_SYNC);
}

/* --- blueprints ------------------------------------------------------------------------ */

vial_bp *vial_blueprint(vial_app *app, const char *name, const char *url_prefix)
{
    if (vial_app_setup_check(app) < 0 || !name || !*name || strchr(name, '.'))
        return NULL;
    for (vial_bp *b = app->bps; b; b = b->next)
        if (!strcmp(b->name, name))
            return NULL;
    const char *pfx = url_prefix ? url_prefix : "";
    size_t plen = strlen(pfx);
    while (plen && pfx[plen - 1] == '/')
        plen--;
    if (plen && pfx[0] != '/')
        return NULL;
    vial_bp *bp = calloc(1, sizeof *bp);
    if (!bp)
        return NULL;
    bp->app = app;
    bp->name = strdup(name);
    bp->prefix = strndup(pfx, plen);
    if (!bp->name || !bp->prefix) {
        free(bp->name);
        free(bp->prefix);
        free(bp);
        return NULL;
    }
    bp->next = app->bps;
    app->bps = bp;
    return bp;
}

int vial_bp_route_as(vial_bp *bp, const char *rule, vial_handler fn, const char *endpoint, void *data)
{
    return bp ? route_as(bp->app, bp, rule, fn, endpoint, data, VIAL_ASYNC) : -EINVAL;
}

int vial_bp_route_as_sync(vial_bp *bp, const char *rule, vial_handler fn, const char *endpoint,
                          void *data)
{
    return bp ? route_as(bp->app, bp, rule, fn, endpoint, data, VIAL_SYNC) : -EINVAL;
}

int vial_bp_add_view(vial_bp *bp, const char *path, const char *endpoint,
                     const vial_view_method *methods, void *data)
{
    return bp ? add_view(bp->app, bp, path, endpoint, methods, data) : -EINVAL;
}

static int bp_before_request(vial_bp *bp, vial_handler fn, int flags)
{
    if (!bp)
        return -EINVAL;
    int rc = vial_app_setup_check(bp->app);
    return rc < 0 ? rc : add_fn(&bp->hooks.before, &bp->hooks.nbefore, fn, flags);
}

int vial_bp_before_request(vial_bp *bp, vial_handler fn)
{
    return bp_before_request(bp, fn, VIAL_ASYNC);
}

int vial_bp_before_request_sync(vial_bp *bp, vial_handler fn)
{
    return bp_before_request(bp, fn, VIAL_SYNC);
}

static int bp_after_request(vial_bp *bp, vial_handler fn, int flags)
{
    if (!bp)
        return -EINVAL;
    int rc = vial_app_setup_check(bp->app);
    return rc < 0 ? rc : add_fn(&bp->hooks.after, &bp->hooks.nafter, fn, flags);
}

int vial_bp_after_request(vial_bp *bp, vial_handler fn)
{
    return bp_after_request(bp, fn, VIAL_ASYNC);
}

int vial_bp_after_request_sync(vial_bp *bp, vial_handler fn)
{
    return bp_after_request(bp, fn, VIAL_SYNC);
}

static int bp_teardown_request(vial_bp *bp, vial_teardown_fn fn, int flags)
{
    if (!bp)
        return -EINVAL;
    int rc = vial_app_setup_check(bp->app);
    return rc < 0 ? rc : add_teardown(&bp->hooks, fn, flags);
}

int vial_bp_teardown_request(vial_bp *bp, vial_teardown_fn fn)
{
    return bp_teardown_request(bp, fn, VIAL_ASYNC);
}

int vial_bp_teardown_request_sync(vial_bp *bp, vial_teardown_fn fn)
{
    return bp_teardown_request(bp, fn, VIAL_SYNC);
}

static int bp_errorhandler(vial_bp *bp, int code, vial_handler fn, int flags)
{
    if (!bp)
        return -EINVAL;
    int rc = vial_app_setup_check(bp->app);
    return rc < 0 ? rc : add_errh(&bp->hooks, code, fn, flags);
}

int vial_bp_errorhandler(vial_bp *bp, int code, vial_handler fn)
{
    return bp_errorhandler(bp, code, fn, VIAL_ASYNC);
}

int vial_bp_errorhandler_sync(vial_bp *bp, int code, vial_handler fn)
{
    return bp_errorhandler(bp, code, fn, VIAL_SYNC);
}

/* --- middleware -------------------------------------------------------------------------- */

int vial_use(vial_app *app, vial_middleware mw, void *arg)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!mw)
        return -EINVAL;
    vial_mw *a = push(app->mws, &app->nmws, sizeof *a);
    if (!a)
        return -ENOMEM;
    a[app->nmws - 1] = (vial_mw){mw, arg};
    app->mws = a;
    return 0;
}

int vial_wrap(vial_app *app, const char *endpoint, vial_middleware mw, void *arg)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!endpoint || !mw)
        return -EINVAL;
    vial_rule *r = find_endpoint(app, endpoint);
    if (!r)
        return -ENOENT;
    vial_mw *a = push(r->mws, &r->nmws, sizeof *a);
    if (!a)
        return -ENOMEM;
    a[r->nmws - 1] = (vial_mw){mw, arg};
    r->mws = a;
    return 0;
}

/* --- app state ----------------------------------------------------------------------------- */

void vial_app_set_data(vial_app *app, void *data)
{
    app->data = data;
}

/* --- running ----------------------------------------------------------------------------------- */

/* Serves in this process: a single process, or one worker of a
 * supervisor. */
static int serve_process(vial_app *app, const vial_config *cfg)
{
    vial_config c = *cfg;
    /* Again in a worker: a reload may have changed it. */
    int level = vial_log_level_parse(c.log_level ? c.log_level : "info");
    if (level >= 0)
        vial_log_set_level(level);
    vial_metrics_init(VIAL_STATS_RULES + app->nrules);
    int r = vial_compress_config(app, c.compress);
    if (r < 0)
        return r;
    vial_proxies proxies;
    r = vial_proxies_parse(c.trusted_proxy, &proxies);
    if (r < 0)
        return r;
    r = vial_accesslog_open(&c);
    if (r < 0) {
        vial_proxies_free(&proxies);
        return r;
    }
    app->ops = (vial_ops){
        .access_log = c.access_log && *c.access_log,
        .metrics = c.metrics_path && *c.metrics_path,
        /* auto (-1): with the access log, which the id ties responses to */
        .request_id = c.request_id < 0 ? c.access_log && *c.access_log : c.request_id,
        .metrics_path = c.metrics_path,
        .metrics_len = c.metrics_path ? strlen(c.metrics_path) : 0,
        .health_path = c.health_path,
        .health_len = c.health_path ? strlen(c.health_path) : 0,
        .shed_target_ns = c.shed_target_ms > 0 ? (uint64_t)c.shed_target_ms * 1000000u : 0,
        .proxies = proxies.n ? &proxies : NULL,
    };
    /* A crash is never silent: the signal and the route, then the same
     * death (runtime/crash.c). */
    vial_crash_set_describer(vial_crash_describe);
    vial_crash_install();
    vial_shed_init(app->ops.shed_target_ns);
    /* Set before the first listener exists, so no request can see the app
     * change under it. */
    __atomic_store_n(&app->running, 1, __ATOMIC_RELEASE);
    r = vial_server_run(&c, vial_app_serve, app->ops.access_log ? vial_accesslog_reject : NULL, app);
    vial_accesslog_close();
    app->ops.proxies = NULL;
    vial_proxies_free(&proxies);
    return r;
}

int vial_run(vial_app *app, const vial_config *cfg)
{
    if (!app)
        return -EINVAL;
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
    if (!c.max_body)
        c.max_body = d.max_body;
    if (!c.stall_ms)
        c.stall_ms = d.stall_ms;
    if (!c.body_grace_ms)
        c.body_grace_ms = d.body_grace_ms;
    if (!c.body_min_rate)
        c.body_min_rate = d.body_min_rate;
    if (!c.body_memory_max)
        c.body_memory_max = d.body_memory_max;
    if (c.max_fields <= 0)
        c.max_fields = d.max_fields;
    if (!c.access_log_format)
        c.access_log_format = d.access_log_format;
    int level = vial_log_level_parse(c.log_level ? c.log_level : d.log_level);
    if (level < 0) {
        vial_log(VIAL_LOG_ERROR, "log level %s is not error, warn, info or debug", c.log_level);
        return -EINVAL;
    }
    vial_log_set_level(level);
    /* Before anything is opened, and before a supervisor forks: a bad
     * setup or a template that does not compile stops the start. */
    int r = vial_csrf_check_setup(app);
    if (r < 0)
        return r;
    r = vial_render_start(app, c.debug);
    if (r < 0)
        return r;
    if (c.unix_mode == 0)
        c.unix_mode = -1; /* a zeroed config: no socket file nobody may open */
    if (c.processes > 1) {
        /* Parsed again in each worker (a reload may change it); checked
         * here so that a bad list stops the start, not every worker. */
        vial_proxies proxies;
        r = vial_proxies_parse(c.trusted_proxy, &proxies);
        if (r < 0)
            return r;
        vial_proxies_free(&proxies);
        return vial_supervise(app, &c, serve_process);
    }
    return serve_process(app, &c);
}
