/* docs/guide/hooks-and-errors.md: before/after/teardown, error handlers, g. */
#include <vial.h>

#include <stdio.h>
#include <string.h>

/* before_request (sync: may block, e.g. look a token up in a database) */
static int load_user(vial_req *rq, vial_res *rs)
{
    const char *token = vial_req_header(rq, "Authorization");
    if (!token) {
        vial_text(rs, 401, "login first");
        return VIAL_DONE; /* short-circuit: the view does not run */
    }
    vial_g_set_str(rq, "user", strncmp(token, "Bearer ", 7) ? token : token + 7);
    return 0;
}

/* after_request (async): edits every response, error responses included */
static int add_header(vial_req *rq, vial_res *rs)
{
    return vial_res_set_header(rs, "X-Served-By", "vial");
}

/* teardown: always runs, with the unhandled error or NULL */
static void log_request(vial_req *rq, const char *error)
{
    if (error)
        fprintf(stderr, "%s %s failed: %s\n", vial_req_method(rq), vial_req_path(rq), error);
}

static int me(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "you are %s", (const char *)vial_g_get(rq, "user"));
}

static int admin(vial_req *rq, vial_res *rs)
{
    return vial_abort_msg(rs, 403, "admins only");
}

static int crash(vial_req *rq, vial_res *rs)
{
    return vial_fail(rs, "database on fire");
}

static int forbidden(vial_req *rq, vial_res *rs)
{
    vial_json *j = vial_json_begin(rs, 403);
    vial_json_obj(j);
    vial_json_key(j, "error");
    vial_json_str(j, vial_error_message(rq));
    vial_json_end(j);
    return vial_json_finish(j);
}

static int internal(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 500, "sorry");
}

static vial_app *make_app(void)
{
    vial_app *app = vial_app_new();
    vial_before_request_sync(app, load_user);
    vial_after_request(app, add_header);
    vial_teardown_request(app, log_request);
    vial_errorhandler(app, 403, forbidden);
    vial_errorhandler(app, 500, internal);
    vial_route(app, "GET /me", me);
    vial_route(app, "GET /admin", admin);
    vial_route(app, "GET /crash", crash);
    return app;
}

int main(int argc, char **argv)
{
    vial_app *app = make_app();
    int rc = 0;
    if (argc > 1 && !strcmp(argv[1], "--test")) {
        vial_test_client *c = vial_test_client_new(app);
        const char *auth[] = {"Authorization: Bearer ada", NULL};
        vial_test_response *r = vial_test_client_request(c, "GET", "/me", auth, NULL, 0);
        rc |= strcmp(vial_test_response_body(r, NULL), "you are ada") != 0;
        rc |= strcmp(vial_test_response_header(r, "X-Served-By"), "vial") != 0;
        vial_test_response_free(r);
        r = vial_test_client_get(c, "/me");
        rc |= vial_test_response_status(r) != 401 || !vial_test_response_header(r, "X-Served-By");
        vial_test_response_free(r);
        r = vial_test_client_request(c, "GET", "/admin", auth, NULL, 0);
        rc |= vial_test_response_status(r) != 403 ||
              strcmp(vial_test_response_body(r, NULL), "{\"error\":\"admins only\"}") != 0;
        vial_test_response_free(r);
        r = vial_test_client_request(c, "GET", "/crash", auth, NULL, 0);
        rc |= vial_test_response_status(r) != 500 || strcmp(vial_test_response_body(r, NULL), "sorry") != 0;
        vial_test_response_free(r);
        vial_test_client_free(c);
    } else {
        vial_config cfg = vial_config_default();
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg);
    }
    vial_app_free(app);
    return rc;
}
