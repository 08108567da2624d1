/* docs/guide/request-and-response.md: query args, forms, JSON, cookies,
 * redirects, abort, streaming, sessions. */
#include <vial.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int search(vial_req *rq, vial_res *rs)
{
    int64_t page;
    if (vial_req_arg_int(rq, "page", 1, 1, 1000, &page) != 0)
        return vial_abort_msg(rs, 400, "page must be 1..1000");
    const char *q = vial_req_arg(rq, "q");
    return vial_text(rs, 200, "q=%s page=%lld", q ? q : "", (long long)page);
}

static int signup(vial_req *rq, vial_res *rs) /* form posts */
{
    const char *name = vial_req_form(rq, "name");
    if (!name || !*name)
        return vial_abort_msg(rs, 400, "name is required");
    vial_set_cookie(rs, "member", name, &(vial_cookie_opts){.max_age = 3600, .http_only = 1});
    return vial_redirect(rs, vial_url_for(rq, "welcome", NULL), 303);
}

static int welcome(vial_req *rq, vial_res *rs)
{
    const char *who = vial_req_cookie(rq, "member");
    return vial_text(rs, 200, "welcome %s", who ? who : "stranger");
}

static int add(vial_req *rq, vial_res *rs) /* JSON in, JSON out */
{
    const vial_jv *doc;
    int st = vial_req_json(rq, &doc);
    if (st)
        return st; /* 400 or 415 through the error handlers, with the reason */
    const vial_jv *a = vial_jv_get(doc, "a"), *b = vial_jv_get(doc, "b");
    if (!a || !b || vial_jv_type(a) != VIAL_JINT || vial_jv_type(b) != VIAL_JINT)
        return vial_abort_msg(rs, 400, "a and b must be integers");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "sum");
    vial_json_int(j, vial_jv_int(a) + vial_jv_int(b));
    vial_json_end(j);
    return vial_json_finish(j);
}

static int countdown(vial_req *rq, vial_res *rs) /* streamed: each line goes out at once */
{
    if (vial_stream_begin(rs, 200, "text/plain; charset=utf-8") != 0)
        return 0;
    for (int i = 3; i > 0; i--) {
        if (vial_stream_printf(rs, "%d\n", i) != 0 || vial_sleep(rq, 10) != 0)
            return 0; /* the client left: stop */
    }
    return vial_stream_printf(rs, "liftoff\n");
}

static int visits(vial_req *rq, vial_res *rs) /* a signed-cookie session */
{
    const char *v = vial_session_get(rq, "visits");
    int n = v ? atoi(v) + 1 : 1;
    vial_session_set(rq, "visits", vial_sprintf(rq, "%d", n));
    return vial_text(rs, 200, "visit %d", n);
}

static vial_app *make_app(void)
{
    vial_app *app = vial_app_new();
    vial_app_set_secret_key(app, "change me: a long random secret");
    vial_route(app, "GET /search", search);
    vial_route_sync(app, "POST /signup", signup);
    vial_route(app, "GET /welcome", welcome);
    vial_route(app, "POST /add", add);
    vial_route(app, "GET /countdown", countdown);
    vial_route(app, "GET /visits", visits);
    return app;
}

static int check(int ok, const char *what)
{
    if (!ok)
        fprintf(stderr, "request_response: %s failed\n", what);
    return !ok;
}

int main(int argc, char **argv)
{
    vial_app *app = make_app();
    int rc = 0;
    if (argc > 1 && !strcmp(argv[1], "--test")) {
        vial_test_client *c = vial_test_client_new(app);
        vial_test_response *r = vial_test_client_get(c, "/search?q=c+lang&page=2");
        rc |= check(!strcmp(vial_test_response_body(r, NULL), "q=c lang page=2"), "args");
        vial_test_response_free(r);
        const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
        r = vial_test_client_request(c, "POST", "/signup", form, "name=ada", 8);
        rc |= check(vial_test_response_status(r) == 303 && !strcmp(vial_test_response_header(r, "Location"), "/welcome"), "form+redirect");
        vial_test_response_free(r);
        r = vial_test_client_get(c, "/welcome"); /* the client kept the cookie */
        rc |= check(!strcmp(vial_test_response_body(r, NULL), "welcome ada"), "cookie");
        vial_test_response_free(r);
        const char *json[] = {"Content-Type: application/json", NULL};
        r = vial_test_client_request(c, "POST", "/add", json, "{\"a\": 2, \"b\": 40}", 17);
        rc |= check(!strcmp(vial_test_response_body(r, NULL), "{\"sum\":42}"), "json");
        vial_test_response_free(r);
        r = vial_test_client_request(c, "POST", "/add", json, "{\"a\": 2,}", 9);
        rc |= check(vial_test_response_status(r) == 400, "bad json");
        vial_test_response_free(r);
        r = vial_test_client_get(c, "/countdown");
        rc |= check(!strcmp(vial_test_response_body(r, NULL), "3\n2\n1\nliftoff\n"), "stream");
        vial_test_response_free(r);
        for (int i = 1; i <= 2; i++) {
            r = vial_test_client_get(c, "/visits");
            char want[16];
            snprintf(want, sizeof want, "visit %d", i);
            rc |= check(!strcmp(vial_test_response_body(r, NULL), want), "session");
            vial_test_response_free(r);
        }
        vial_test_client_free(c);
    } else {
        vial_config cfg = vial_config_default();
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg);
    }
    vial_app_free(app);
    return rc;
}
