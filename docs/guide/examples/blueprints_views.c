/* docs/guide/blueprints-and-views.md: a blueprint with its own hooks and
 * error handler, a method view, and middleware written once for sync and
 * async views. */
#include <vial.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* --- a blueprint: /api/v2 ---------------------------------------------------- */

static int api_version(vial_req *rq, vial_res *rs)
{
    return vial_res_set_header(rs, "X-Api", "2");
}

static int api_ping(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "pong");
}

static int api_not_allowed(vial_req *rq, vial_res *rs)
{
    return vial_abort(rs, 403);
}

static int api_403(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 403, "api says no");
}

/* --- a method view: one resource, one function per method ------------------- */

typedef struct stock {
    atomic_int count;
} stock;

static int stock_get(vial_req *rq, vial_res *rs)
{
    stock *s = vial_route_data(rq);
    return vial_text(rs, 200, "%d", atomic_load(&s->count));
}

static int stock_post(vial_req *rq, vial_res *rs) /* registered sync */
{
    stock *s = vial_route_data(rq);
    return vial_text(rs, 201, "%d", atomic_fetch_add(&s->count, 1) + 1);
}

/* --- middleware: wraps sync and async views alike ----------------------------- */

static int server_timing(vial_req *rq, vial_res *rs, vial_next *next, void *arg)
{
    uint64_t t0 = vial_now_ms();
    int r = vial_next_call(next); /* runs the view the way it was registered */
    vial_res_set_header(rs, "Server-Timing", vial_sprintf(rq, "app;dur=%llu",
                                                          (unsigned long long)(vial_now_ms() - t0)));
    return r;
}

static stock the_stock;

static vial_app *make_app(void)
{
    vial_app *app = vial_app_new();
    vial_bp *api = vial_blueprint(app, "api", "/api/v2");
    vial_bp_after_request(api, api_version);
    vial_bp_errorhandler(api, 403, api_403);
    vial_bp_route(api, "GET /ping", api_ping);
    vial_bp_route(api, "GET /secret", api_not_allowed);

    static const vial_view_method stock_methods[] = {
        {"GET", stock_get, VIAL_ASYNC},
        {"POST", stock_post, VIAL_SYNC},
        {0},
    };
    vial_add_view(app, "/stock", "stock", stock_methods, &the_stock);
    vial_use(app, server_timing, NULL);
    return app;
}

int main(int argc, char **argv)
{
    vial_app *app = make_app();
    int rc = 0;
    if (argc > 1 && !strcmp(argv[1], "--test")) {
        vial_test_client *c = vial_test_client_new(app);
        vial_test_response *r = vial_test_client_get(c, "/api/v2/ping");
        rc |= strcmp(vial_test_response_body(r, NULL), "pong") || strcmp(vial_test_response_header(r, "X-Api"), "2");
        rc |= !vial_test_response_header(r, "Server-Timing");
        vial_test_response_free(r);
        r = vial_test_client_get(c, "/api/v2/secret");
        rc |= vial_test_response_status(r) != 403 || strcmp(vial_test_response_body(r, NULL), "api says no");
        vial_test_response_free(r);
        r = vial_test_client_request(c, "POST", "/stock", NULL, "", 0);
        rc |= vial_test_response_status(r) != 201 || !vial_test_response_header(r, "Server-Timing");
        vial_test_response_free(r);
        r = vial_test_client_get(c, "/stock");
        rc |= strcmp(vial_test_response_body(r, NULL), "1");
        vial_test_response_free(r);
        r = vial_test_client_request(c, "PATCH", "/stock", NULL, NULL, 0);
        rc |= vial_test_response_status(r) != 405;
        vial_test_response_free(r);
        vial_test_client_free(c);
    } else {
        vial_config cfg = vial_config_default();
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg);
    }
    vial_app_free(app);
    return rc;
}
