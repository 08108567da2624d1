/* docs/guide/routing.md: rules, converters, methods, url_for. */
#include <vial.h>

#include <stdio.h>
#include <string.h>

static int show_user(vial_req *rq, vial_res *rs)
{
    /* <int:id> has matched ASCII digits only; the value is ready to use */
    return vial_text(rs, 200, "user %lld", (long long)vial_req_param_int(rq, "id"));
}

static int show_file(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "file %s", vial_req_param(rq, "p")); /* <path:> keeps '/' */
}

static int item(vial_req *rq, vial_res *rs)
{
    /* GET and POST share one view; vial_req_method tells them apart */
    return vial_text(rs, 200, "%s item", vial_req_method(rq));
}

/* A user-defined converter: <hex:color> accepts 6 hex digits. */
static int hex6(const char *s, size_t n, void *arg)
{
    if (n != 6)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return 0;
    return 1;
}

static int color(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "#%s", vial_req_param(rq, "c"));
}

static int links(vial_req *rq, vial_res *rs)
{
    /* url_for: endpoint names are the function names */
    return vial_text(rs, 200, "%s %s", vial_url_for(rq, "show_user", "id", "7", NULL),
                     vial_url_for(rq, "show_file", "p", "a b/c.txt", "dl", "1", NULL));
}

static vial_app *make_app(void)
{
    vial_app *app = vial_app_new();
    vial_converter(app, "hex", hex6, NULL);
    vial_route_sync(app, "GET /users/<int:id>", show_user);
    vial_route_sync(app, "GET /files/<path:p>", show_file);
    vial_route(app, "GET,POST /items/", item);
    vial_route(app, "GET /color/<hex:c>", color);
    vial_route(app, "GET /links", links);
    return app;
}

static int expect(vial_test_client *c, const char *method, const char *target, int status, const char *body)
{
    vial_test_response *r = vial_test_client_request(c, method, target, NULL, NULL, 0);
    int ok = vial_test_response_status(r) == status && (!body || !strcmp(vial_test_response_body(r, NULL), body));
    if (!ok)
        fprintf(stderr, "%s %s: got %d %s\n", method, target, vial_test_response_status(r), vial_test_response_body(r, NULL));
    vial_test_response_free(r);
    return ok;
}

int main(int argc, char **argv)
{
    vial_app *app = make_app();
    int rc;
    if (argc > 1 && !strcmp(argv[1], "--test")) {
        vial_test_client *c = vial_test_client_new(app);
        int ok = expect(c, "GET", "/users/42", 200, "user 42") &&
                 expect(c, "GET", "/users/x", 404, NULL) &&
                 expect(c, "GET", "/files/a/b.txt", 200, "file a/b.txt") &&
                 expect(c, "POST", "/items/", 200, "POST item") &&
                 expect(c, "DELETE", "/items/", 405, NULL) &&
                 expect(c, "GET", "/items", 308, NULL) &&
                 expect(c, "GET", "/color/00ff7F", 200, "#00ff7F") &&
                 expect(c, "GET", "/color/red", 404, NULL) &&
                 expect(c, "GET", "/links", 200, "/users/7 /files/a%20b/c.txt?dl=1");
        vial_test_client_free(c);
        rc = ok ? 0 : 1;
    } else {
        vial_config cfg = vial_config_default();
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg);
    }
    vial_app_free(app);
    return rc;
}
