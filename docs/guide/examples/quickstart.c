/* docs/guide/quickstart.md: a first app. Run it with no argument to serve on
 * 127.0.0.1:8080; with --test it checks itself through the test client. */
#include <vial.h>

#include <stdio.h>
#include <string.h>

/* An async view: a coroutine on the loop. It may await, never block. */
static int hello(vial_req *rq, vial_res *rs)
{
    const char *name = vial_req_param(rq, "name");
    return vial_text(rs, 200, "Hello, %s!", name);
}

/* A sync view: runs on the worker pool, so blocking calls are fine here. */
static int index_page(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "Welcome to vial");
}

static vial_app *make_app(void)
{
    vial_app *app = vial_app_new();
    vial_route_sync(app, "GET /", index_page);
    vial_route(app, "GET /hello/<name>", hello);
    return app;
}

static int self_test(vial_app *app)
{
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = vial_test_client_get(c, "/hello/vial");
    int ok = vial_test_response_status(r) == 200 &&
             strcmp(vial_test_response_body(r, NULL), "Hello, vial!") == 0;
    vial_test_response_free(r);
    vial_test_client_free(c);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    vial_app *app = make_app();
    int rc;
    if (argc > 1 && !strcmp(argv[1], "--test")) {
        rc = self_test(app);
    } else {
        vial_config cfg = vial_config_default();
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg);
    }
    vial_app_free(app);
    return rc;
}
