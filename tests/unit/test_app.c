/* The Flask model through the in-process test client: routing, hooks and
 * their order, error handlers, g, blueprints, method views, middleware,
 * url_for, streaming, sync and async functions alike. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char order[256];
static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER;

static void mark(const char *s)
{
    pthread_mutex_lock(&order_lock);
    if (order[0])
        strncat(order, ",", sizeof order - strlen(order) - 1);
    strncat(order, s, sizeof order - strlen(order) - 1);
    pthread_mutex_unlock(&order_lock);
}

static int b1(vial_req *rq, vial_res *rs) { mark("b1"); return 0; }
static int b2(vial_req *rq, vial_res *rs)
{
    mark("b2");
    const char *stop = vial_req_header(rq, "X-Stop");
    if (stop) {
        vial_text(rs, 403, "stopped");
        return VIAL_DONE;
    }
    vial_g_set_str(rq, "who", "b2");
    return 0;
}
static int a1(vial_req *rq, vial_res *rs) { mark("a1"); vial_res_set_header(rs, "X-A1", "1"); return 0; }
static int a2(vial_req *rq, vial_res *rs) { mark("a2"); return 0; }
static const char *last_error;
static char last_error_buf[256];
static void t1(vial_req *rq, const char *err)
{
    mark("t1");
    if (err)
        snprintf(last_error_buf, sizeof last_error_buf, "%s", err);
    last_error = err ? last_error_buf : NULL;
}
static void t2(vial_req *rq, const char *err) { mark("t2"); }

static int view(vial_req *rq, vial_res *rs)
{
    mark("view");
    const char *who = vial_g_get(rq, "who");
    return vial_text(rs, 200, "hi %s", who ? who : "?");
}
static int sync_view(vial_req *rq, vial_res *rs) { mark("view"); return vial_text(rs, 200, "sync"); }
static int boom(vial_req *rq, vial_res *rs) { return vial_fail(rs, "boom"); }
static int teapot(vial_req *rq, vial_res *rs) { return vial_abort_msg(rs, 418, "short and stout"); }
static int gone(vial_req *rq, vial_res *rs) { return vial_abort(rs, 410); }

static int on_404(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 404, "nothing at %s", vial_req_path(rq));
}
static int on_any(vial_req *rq, vial_res *rs)
{
    const char *m = vial_error_message(rq);
    return vial_text(rs, vial_error_code(rq), "error %d%s%s", vial_error_code(rq), m ? ": " : "", m ? m : "");
}
static int on_500(vial_req *rq, vial_res *rs) { return vial_text(rs, 500, "oops"); }

static int sleepy(vial_req *rq, vial_res *rs)
{
    int r = vial_sleep(rq, 20);
    return vial_text(rs, 200, "slept %d", r);
}

static int streamer(vial_req *rq, vial_res *rs)
{
    if (vial_stream_begin(rs, 200, "text/plain") != 0)
        return 0;
    for (int i = 1; i <= 3; i++) {
        vial_sleep(rq, 1);
        vial_stream_printf(rs, "line %d\n", i);
    }
    return 0;
}

static int bp_view(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "bp %lld", (long long)vial_req_param_int(rq, "id")); }
static int bp_forbid(vial_req *rq, vial_res *rs) { return vial_abort(rs, 403); }
static int bp_before(vial_req *rq, vial_res *rs) { mark("bpb"); return 0; }
static int bp_after(vial_req *rq, vial_res *rs) { mark("bpa"); return 0; }
static int bp_403(vial_req *rq, vial_res *rs) { return vial_text(rs, 403, "bp forbidden"); }
static int app_403(vial_req *rq, vial_res *rs) { return vial_text(rs, 403, "app forbidden"); }

/* A route's data, and where it ran: "<data> sync|async". */
static int with_data(vial_req *rq, vial_res *rs)
{
    const char *d = vial_route_data(rq);
    return vial_text(rs, 200, "%s %s", d ? d : "(null)", vial_req_is_sync(rq) ? "sync" : "async");
}

static int mv_get(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "get %d", *(int *)vial_route_data(rq)); }
static int mv_post(vial_req *rq, vial_res *rs) { (*(int *)vial_route_data(rq))++; return vial_text(rs, 201, "posted"); }

/* Middleware: the same function wraps an async and a sync view. */
static int timing_mw(vial_req *rq, vial_res *rs, vial_next *next, void *arg)
{
    mark((const char *)arg);
    int r = vial_next_call(next);
    vial_res_set_header(rs, "X-Wrapped", (const char *)arg);
    return r;
}

static int urls(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "%s %s %s", vial_url_for(rq, "view", NULL),
                     vial_url_for(rq, "shop.bp_view", "id", "5", "q", "a b", NULL),
                     vial_url_for(rq, "view", "_external", "1", NULL));
}

/* The result contract: helpers' codes passed on, results dropped. */
static int c_json(vial_req *rq, vial_res *rs)
{
    const vial_jv *doc;
    int st = vial_req_json(rq, &doc);
    if (st)
        return st;
    return vial_text(rs, 200, "%lld", (long long)vial_jv_int(doc));
}
static int c_form(vial_req *rq, vial_res *rs)
{
    int st = vial_req_parse_form(rq);
    if (st)
        return st;
    return vial_text(rs, 200, "%u", vial_req_form_count(rq));
}
static int c_unbuilt(vial_req *rq, vial_res *rs) { return 0; }
static int c_header_only(vial_req *rq, vial_res *rs) { return vial_res_add_header(rs, "X-Only", "1"); }
static int c_faildrop(vial_req *rq, vial_res *rs) { vial_fail(rs, "dropped"); return 0; }
static int c_abortdrop(vial_req *rq, vial_res *rs)
{
    vial_abort_msg(rs, 409, "dropped abort");
    return vial_text(rs, 200, "not this");
}
static int c_enoent(vial_req *rq, vial_res *rs) { return -ENOENT; }
static int c_by_mw(vial_req *rq, vial_res *rs) { return 0; } /* its middleware answers */
static int answer_mw(vial_req *rq, vial_res *rs, vial_next *next, void *arg)
{
    return vial_text(rs, 200, "from middleware");
}
static int c_fail_then_abort(vial_req *rq, vial_res *rs)
{
    vial_fail(rs, "first");
    vial_abort(rs, 410); /* the latest stands */
    return 0;
}

static vial_app *app;
static vial_test_client *client;
static int mv_state;

static int setup(void **s)
{
    app = vial_app_new();
    assert_non_null(app);
    assert_int_equal(vial_before_request_sync(app, b1), 0);
    assert_int_equal(vial_before_request(app, b2), 0);
    assert_int_equal(vial_after_request_sync(app, a1), 0);
    assert_int_equal(vial_after_request(app, a2), 0);
    assert_int_equal(vial_teardown_request_sync(app, t1), 0);
    assert_int_equal(vial_teardown_request(app, t2), 0);
    assert_int_equal(vial_errorhandler_sync(app, 404, on_404), 0);
    assert_int_equal(vial_errorhandler(app, 500, on_500), 0);
    assert_int_equal(vial_errorhandler(app, 403, app_403), 0);
    assert_int_equal(vial_errorhandler(app, VIAL_HTTP_ERRORS, on_any), 0);
    assert_int_equal(vial_route(app, "GET /", view), 0);
    assert_int_equal(vial_route_sync(app, "GET,POST /sync", sync_view), 0);
    assert_int_equal(vial_route(app, "GET /boom", boom), 0);
    assert_int_equal(vial_route_sync(app, "GET /teapot", teapot), 0);
    assert_int_equal(vial_route(app, "GET /gone", gone), 0);
    assert_int_equal(vial_route(app, "GET /sleepy", sleepy), 0);
    assert_int_equal(vial_route(app, "GET /stream", streamer), 0);
    assert_int_equal(vial_route(app, "GET /urls", urls), 0);
    assert_int_equal(vial_route(app, "GET /dir/", view), -EEXIST); /* endpoint "view" taken */
    assert_int_equal(vial_route_as(app, "GET /dir/", view, "dir", NULL), 0);
    assert_int_equal(vial_route_as(app, "BAD RULE", view, "x", NULL), -EINVAL);
    static char data_a[] = "a", data_s[] = "s";
    assert_int_equal(vial_route_as(app, "GET /data/a", with_data, "data_a", data_a), 0);
    assert_int_equal(vial_route_as_sync(app, "GET /data/s", with_data, "data_s", data_s), 0);
    assert_int_equal(vial_route(app, "GET /data/none", with_data), 0);

    vial_bp *bp = vial_blueprint(app, "shop", "/shop/");
    assert_non_null(bp);
    assert_null(vial_blueprint(app, "shop", "/other"));
    assert_int_equal(vial_bp_route(bp, "GET /items/<int:id>", bp_view), 0);
    assert_int_equal(vial_bp_route_sync(bp, "GET /forbid", bp_forbid), 0);
    assert_int_equal(vial_bp_before_request_sync(bp, bp_before), 0);
    assert_int_equal(vial_bp_after_request(bp, bp_after), 0);
    assert_int_equal(vial_bp_errorhandler_sync(bp, 403, bp_403), 0);

    static const vial_view_method mv[] = {
        {"GET", mv_get, VIAL_ASYNC}, {"POST", mv_post, VIAL_SYNC}, {0},
    };
    mv_state = 0;
    assert_int_equal(vial_add_view(app, "/thing", "thing", mv, &mv_state), 0);

    assert_int_equal(vial_route(app, "POST /c/json", c_json), 0);
    assert_int_equal(vial_route_sync(app, "POST /c/form", c_form), 0);
    assert_int_equal(vial_route(app, "GET /c/unbuilt", c_unbuilt), 0);
    assert_int_equal(vial_route_sync(app, "GET /c/unbuilt-sync", c_unbuilt), -EEXIST);
    assert_int_equal(vial_route_as_sync(app, "GET /c/unbuilt-sync", c_unbuilt, "c_unbuilt_sync", NULL), 0);
    assert_int_equal(vial_route(app, "GET /c/header-only", c_header_only), 0);
    assert_int_equal(vial_route_sync(app, "GET /c/faildrop", c_faildrop), 0);
    assert_int_equal(vial_route(app, "GET /c/abortdrop", c_abortdrop), 0);
    assert_int_equal(vial_route(app, "GET /c/enoent", c_enoent), 0);
    assert_int_equal(vial_route(app, "GET /c/by-mw", c_by_mw), 0);
    assert_int_equal(vial_wrap(app, "c_by_mw", answer_mw, NULL), 0);
    assert_int_equal(vial_route(app, "GET /c/fail-then-abort", c_fail_then_abort), 0);
    static const vial_view_method mv_unbuilt[] = {{"GET", c_unbuilt, VIAL_ASYNC}, {0}};
    assert_int_equal(vial_add_view(app, "/c/mv", "c_mv", mv_unbuilt, NULL), 0);

    assert_int_equal(vial_use(app, timing_mw, "outer"), 0);
    assert_int_equal(vial_wrap(app, "sync_view", timing_mw, "inner"), 0);
    assert_int_equal(vial_wrap(app, "nope", timing_mw, "inner"), -ENOENT);

    client = vial_test_client_new(app);
    assert_non_null(client);
    return 0;
}

static int teardown(void **s)
{
    vial_test_client_free(client);
    vial_app_free(app);
    return 0;
}

static vial_test_response *get(const char *target, const char *const *headers)
{
    order[0] = 0;
    return vial_test_client_request(client, "GET", target, headers, NULL, 0);
}

static void assert_body(vial_test_response *r, const char *want)
{
    assert_string_equal(vial_test_response_body(r, NULL), want);
}

static void test_hook_order(void **s)
{
    vial_test_response *r = get("/", NULL);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_body(r, "hi b2");
    /* before in order; middleware around the view; after and teardown reversed */
    assert_string_equal(order, "b1,b2,outer,view,a2,a1,t2,t1");
    assert_string_equal(vial_test_response_header(r, "X-A1"), "1");
    assert_string_equal(vial_test_response_header(r, "X-Wrapped"), "outer");
    assert_null(last_error);
    vial_test_response_free(r);
}

static void test_before_short_circuits(void **s)
{
    const char *h[] = {"X-Stop: 1", NULL};
    vial_test_response *r = get("/", h);
    assert_int_equal(vial_test_response_status(r), 403);
    assert_body(r, "stopped");
    assert_string_equal(order, "b1,b2,a2,a1,t2,t1"); /* no view; after still runs */
    vial_test_response_free(r);
}

static void test_sync_view_and_middleware(void **s)
{
    vial_test_response *r = get("/sync", NULL);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_body(r, "sync");
    assert_string_equal(order, "b1,b2,outer,inner,view,a2,a1,t2,t1");
    assert_string_equal(vial_test_response_header(r, "X-Wrapped"), "outer");
    vial_test_response_free(r);
}

static void test_route_data_and_sync(void **s)
{
    const char *want[][2] = {{"/data/a", "a async"}, {"/data/s", "s sync"}, {"/data/none", "(null) async"}};
    for (size_t i = 0; i < 3; i++) {
        vial_test_response *r = get(want[i][0], NULL);
        assert_int_equal(vial_test_response_status(r), 200);
        assert_body(r, want[i][1]);
        vial_test_response_free(r);
    }
}

static void test_not_found_runs_hooks_and_handler(void **s)
{
    vial_test_response *r = get("/missing", NULL);
    assert_int_equal(vial_test_response_status(r), 404);
    assert_body(r, "nothing at /missing");
    assert_string_equal(order, "b1,b2,a2,a1,t2,t1");
    vial_test_response_free(r);
}

static void test_unhandled_error(void **s)
{
    vial_test_response *r = get("/boom", NULL);
    assert_int_equal(vial_test_response_status(r), 500);
    assert_body(r, "oops");
    assert_non_null(last_error);
    assert_string_equal(last_error, "boom");
    last_error = NULL;
    vial_test_response_free(r);
}

static void test_fallback_handler_and_message(void **s)
{
    vial_test_response *r = get("/teapot", NULL);
    assert_int_equal(vial_test_response_status(r), 418);
    assert_body(r, "error 418: short and stout");
    assert_null(last_error); /* an HTTP error is handled: teardown sees none */
    vial_test_response_free(r);
    r = get("/gone", NULL);
    assert_int_equal(vial_test_response_status(r), 410);
    assert_body(r, "error 410");
    vial_test_response_free(r);
}

static void test_405_keeps_allow(void **s)
{
    order[0] = 0;
    vial_test_response *r = vial_test_client_request(client, "DELETE", "/sync", NULL, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 405);
    assert_string_equal(vial_test_response_header(r, "Allow"), "GET, HEAD, OPTIONS, POST");
    assert_body(r, "error 405");
    vial_test_response_free(r);
}

static void test_options_and_head(void **s)
{
    vial_test_response *r = vial_test_client_request(client, "OPTIONS", "/sync", NULL, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_header(r, "Allow"), "GET, HEAD, OPTIONS, POST");
    assert_body(r, "");
    assert_string_equal(vial_test_response_header(r, "Content-Length"), "0");
    vial_test_response_free(r);
    r = vial_test_client_request(client, "HEAD", "/", NULL, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_body(r, "");
    assert_string_equal(vial_test_response_header(r, "Content-Length"), "5");
    vial_test_response_free(r);
}

static void test_slash_redirect_not_handled(void **s)
{
    vial_test_response *r = get("/dir?x=1", NULL);
    assert_int_equal(vial_test_response_status(r), 308);
    assert_string_equal(vial_test_response_header(r, "Location"), "/dir/?x=1");
    assert_string_equal(order, "b1,b2,a2,a1,t2,t1");
    vial_test_response_free(r);
}

static void test_async_view_awaits(void **s)
{
    vial_test_response *r = get("/sleepy", NULL);
    assert_body(r, "slept 0");
    vial_test_response_free(r);
}

static void test_streaming_collected(void **s)
{
    vial_test_response *r = get("/stream", NULL);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_body(r, "line 1\nline 2\nline 3\n");
    /* after_request ran before the head was sent */
    assert_string_equal(vial_test_response_header(r, "X-A1"), "1");
    vial_test_response_free(r);
}

static void test_blueprint_hooks_and_handlers(void **s)
{
    vial_test_response *r = get("/shop/items/7", NULL);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_body(r, "bp 7");
    assert_string_equal(order, "b1,b2,bpb,outer,bpa,a2,a1,t2,t1");
    vial_test_response_free(r);
    r = get("/shop/forbid", NULL);
    assert_int_equal(vial_test_response_status(r), 403);
    assert_body(r, "bp forbidden"); /* the blueprint's handler wins */
    vial_test_response_free(r);
    r = get("/shop/nothing", NULL);
    assert_int_equal(vial_test_response_status(r), 404);
    assert_string_equal(order, "b1,b2,a2,a1,t2,t1"); /* app-level 404 */
    vial_test_response_free(r);
}

static void test_method_view(void **s)
{
    vial_test_response *r = vial_test_client_request(client, "POST", "/thing", NULL, "", 0);
    assert_int_equal(vial_test_response_status(r), 201);
    vial_test_response_free(r);
    r = get("/thing", NULL);
    assert_body(r, "get 1");
    vial_test_response_free(r);
    r = vial_test_client_request(client, "PUT", "/thing", NULL, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 405);
    assert_string_equal(vial_test_response_header(r, "Allow"), "GET, HEAD, OPTIONS, POST");
    vial_test_response_free(r);
}

static void test_url_for(void **s)
{
    const char *h[] = {"Host: example.test:8080", NULL};
    vial_test_response *r = get("/urls", h);
    assert_body(r, "/ /shop/items/5?q=a+b http://example.test:8080/");
    vial_test_response_free(r);
}

static void test_bad_request_rejected_by_parser(void **s)
{
    const char *h[] = {"Bad Header: x", NULL};
    vial_test_response *r = get("/", h);
    assert_int_equal(vial_test_response_status(r), 400);
    vial_test_response_free(r);
}

static vial_test_response *post(const char *target, const char *ctype, const char *body)
{
    const char *h[] = {ctype, NULL};
    order[0] = 0;
    return vial_test_client_request(client, "POST", target, ctype ? h : NULL, body, strlen(body));
}

static void expect(vial_test_response *r, int status, const char *body)
{
    assert_int_equal(vial_test_response_status(r), status);
    assert_body(r, body);
    vial_test_response_free(r);
}

static void test_contract_json(void **s)
{
    expect(post("/c/json", "Content-Type: application/json", "42"), 200, "42");
    /* `if (st) return st;` gives the 4xx through the handler, with the
     * parser's reason as vial_error_message; no unhandled error */
    last_error = "unset";
    vial_test_response *r = post("/c/json", "Content-Type: application/json", "[1,");
    assert_int_equal(vial_test_response_status(r), 400);
    assert_int_equal(strncmp(vial_test_response_body(r, NULL), "error 400: ", 11), 0);
    assert_true(strlen(vial_test_response_body(r, NULL)) > 12);
    assert_null(last_error);
    assert_string_equal(vial_test_response_header(r, "X-A1"), "1"); /* after hooks ran */
    vial_test_response_free(r);
    expect(post("/c/json", "Content-Type: text/plain", "42"), 415,
           "error 415: Content-Type is not application/json");
    expect(post("/c/json", NULL, "42"), 415, "error 415: Content-Type is not application/json");
}

static void test_contract_form(void **s)
{
    expect(post("/c/form", "Content-Type: application/x-www-form-urlencoded", "a=1&b=2"), 200, "2");
    expect(post("/c/form", NULL, ""), 200, "0");
    vial_test_response *r = post("/c/form", "Content-Type: application/json", "{}");
    assert_int_equal(vial_test_response_status(r), 415);
    assert_int_equal(strncmp(vial_test_response_body(r, NULL), "error 415: ", 11), 0);
    vial_test_response_free(r);
    expect(post("/c/form", "Content-Type: multipart/form-data", "x"), 400,
           "error 400: multipart body without boundary");
}

static void test_contract_unbuilt_is_500(void **s)
{
    const char *paths[] = {"/c/unbuilt", "/c/unbuilt-sync", "/c/header-only", "/c/mv"};
    const char *names[] = {"c_unbuilt", "c_unbuilt_sync", "c_header_only", "c_mv"};
    for (int i = 0; i < 4; i++) {
        last_error = NULL;
        expect(get(paths[i], NULL), 500, "oops");
        char want[128];
        snprintf(want, sizeof want, "view '%s' returned 0 without building a response", names[i]);
        assert_non_null(last_error);
        assert_string_equal(last_error, want);
    }
    /* HEAD of a GET view that builds its response is no error */
    vial_test_response *r = vial_test_client_request(client, "HEAD", "/", NULL, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 200);
    vial_test_response_free(r);
    /* a response built by the view's middleware counts */
    expect(get("/c/by-mw", NULL), 200, "from middleware");
}

static void test_contract_sticky(void **s)
{
    last_error = NULL;
    expect(get("/c/faildrop", NULL), 500, "oops");
    assert_string_equal(last_error, "dropped");
    last_error = "unset";
    expect(get("/c/abortdrop", NULL), 409, "error 409: dropped abort");
    assert_null(last_error);
    expect(get("/c/fail-then-abort", NULL), 410, "error 410");
    last_error = NULL;
    expect(get("/c/enoent", NULL), 500, "oops");
    assert_string_equal(last_error, "ENOENT: No such file or directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_order),
        cmocka_unit_test(test_before_short_circuits),
        cmocka_unit_test(test_sync_view_and_middleware),
        cmocka_unit_test(test_route_data_and_sync),
        cmocka_unit_test(test_not_found_runs_hooks_and_handler),
        cmocka_unit_test(test_unhandled_error),
        cmocka_unit_test(test_fallback_handler_and_message),
        cmocka_unit_test(test_405_keeps_allow),
        cmocka_unit_test(test_options_and_head),
        cmocka_unit_test(test_slash_redirect_not_handled),
        cmocka_unit_test(test_async_view_awaits),
        cmocka_unit_test(test_streaming_collected),
        cmocka_unit_test(test_blueprint_hooks_and_handlers),
        cmocka_unit_test(test_method_view),
        cmocka_unit_test(test_url_for),
        cmocka_unit_test(test_bad_request_rejected_by_parser),
        cmocka_unit_test(test_contract_json),
        cmocka_unit_test(test_contract_form),
        cmocka_unit_test(test_contract_unbuilt_is_500),
        cmocka_unit_test(test_contract_sticky),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
