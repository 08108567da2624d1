/* Set-Cookie (set/delete) exact formats, redirects, vial_abort_msg, reason
 * phrases and the HTTP-date helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/app.h"
#include "app/session.h"
#include "http/exchange.h"
#include "http/parser.h"
#include "treq.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- a request built by hand: raw head -> the real parser -> exchange --------- */

#define req_new treq_new
#define req_free treq_free
#define res_header treq_res_header
#define res_header_count treq_res_header_count

/* --- Set-Cookie ----------------------------------------------------------------- */

static void test_set_cookie_null_opts(void **st)
{
    treq t = req_new("GET", "/", NULL);
    assert_int_equal(vial_set_cookie(&t.rq->res, "a", "b", NULL), 0);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0), "a=b; Path=/");
    req_free(&t);
}

static void test_set_cookie_all_attributes_in_order(void **st)
{
    treq t = req_new("GET", "/", NULL);
    vial_cookie_opts o = {
        .path = "/x", .domain = "example.com", .max_age = 3600, .expires = 784111777,
        .secure = 1, .http_only = 1, .same_site = "lax",
    };
    assert_int_equal(vial_set_cookie(&t.rq->res, "n", "v", &o), 0);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0),
                        "n=v; Expires=Sun, 06 Nov 1994 08:49:37 GMT; Max-Age=3600; "
                        "Domain=example.com; Path=/x; Secure; HttpOnly; SameSite=Lax");
    req_free(&t);
}

static void test_set_cookie_partial_opts(void **st)
{
    treq t = req_new("GET", "/", NULL);
    /* max_age 0: none (< 0: expire now); expires 0: none; path NULL: "/" */
    vial_cookie_opts o = {.http_only = 1, .same_site = "Strict"};
    assert_int_equal(vial_set_cookie(&t.rq->res, "sid", "", &o), 0);
    vial_cookie_opts o2 = {.max_age = -1, .path = "/p"};
    assert_int_equal(vial_set_cookie(&t.rq->res, "z", "1", &o2), 0);
    vial_cookie_opts o3 = {.same_site = "NONE", .secure = 1};
    assert_int_equal(vial_set_cookie(&t.rq->res, "y", "2", &o3), 0);
    assert_int_equal(res_header_count(t.rq, "Set-Cookie"), 3);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0), "sid=; Path=/; HttpOnly; SameSite=Strict");
    assert_string_equal(res_header(t.rq, "Set-Cookie", 1), "z=1; Max-Age=0; Path=/p");
    assert_string_equal(res_header(t.rq, "Set-Cookie", 2), "y=2; Path=/; Secure; SameSite=None");
    req_free(&t);
}

static void test_set_cookie_rejects_bad_names(void **st)
{
    treq t = req_new("GET", "/", NULL);
    static const char *const bad[] = {"", "a b", "a;b", "a=b", "a,b", "(a)", "a\"", "a/b",
                                      "a\tb", "a\r\nb", "\xc3\xa9", "a:b", "a@b", "[a]", "{a}",
                                      "a?b", "a\\b", "\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(vial_set_cookie(&t.rq->res, bad[i], "v", NULL), -EINVAL);
    assert_int_equal(vial_set_cookie(&t.rq->res, NULL, "v", NULL), -EINVAL);
    assert_int_equal(t.rq->res.nheaders, 0);
    /* every tchar is fine */
    assert_int_equal(vial_set_cookie(&t.rq->res, "!#$%&'*+-.^_`|~Az09", "v", NULL), 0);
    req_free(&t);
}

static void test_set_cookie_rejects_bad_values(void **st)
{
    treq t = req_new("GET", "/", NULL);
    static const char *const bad[] = {"a b", "\"q\"", "a,b", "a;b", "a\\b", "\x01", "a\tb",
                                      "a\r\nSet-Cookie: x=y", "\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(vial_set_cookie(&t.rq->res, "n", bad[i], NULL), -EINVAL);
    assert_int_equal(vial_set_cookie(&t.rq->res, "n", NULL, NULL), -EINVAL);
    assert_int_equal(t.rq->res.nheaders, 0);
    static const char *const good[] = {"", "a=b", "%20", "x.y_z~-", "\xc3\xa9t\xc3\xa9", "!#$&'()*+/:<=>?@[]^`{|}"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(vial_set_cookie(&t.rq->res, "n", good[i], NULL), 0);
    assert_int_equal(t.rq->res.nheaders, sizeof good / sizeof good[0]);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 1), "n=a=b; Path=/");
    req_free(&t);
}

static void test_set_cookie_rejects_bad_attributes(void **st)
{
    treq t = req_new("GET", "/", NULL);
    vial_cookie_opts o = {.max_age = -1, .same_site = "Sometimes"};
    assert_int_equal(vial_set_cookie(&t.rq->res, "n", "v", &o), -EINVAL);
    vial_cookie_opts o2 = {.max_age = -1, .domain = "a.com; Secure"};
    assert_int_equal(vial_set_cookie(&t.rq->res, "n", "v", &o2), -EINVAL);
    vial_cookie_opts o3 = {.max_age = -1, .path = "/a\r\nX: y"};
    assert_int_equal(vial_set_cookie(&t.rq->res, "n", "v", &o3), -EINVAL);
    assert_int_equal(vial_delete_cookie(&t.rq->res, "n", &o3), -EINVAL);
    assert_int_equal(t.rq->res.nheaders, 0);
    req_free(&t);
}

static void test_delete_cookie_exact(void **st)
{
    treq t = req_new("GET", "/", NULL);
    assert_int_equal(vial_delete_cookie(&t.rq->res, "N", NULL), 0);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0),
                        "N=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/");
    /* opts keep their scope (so the browser matches the cookie) but cannot
     * resurrect it: expires/max_age are forced */
    vial_cookie_opts o = {.path = "/p", .domain = "d.org", .max_age = 99, .expires = 2000000000,
                          .secure = 1, .http_only = 1, .same_site = "Lax"};
    assert_int_equal(vial_delete_cookie(&t.rq->res, "M", &o), 0);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 1),
                        "M=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Domain=d.org; "
                        "Path=/p; Secure; HttpOnly; SameSite=Lax");
    assert_int_equal(vial_delete_cookie(&t.rq->res, "bad name", NULL), -EINVAL);
    assert_int_equal(vial_delete_cookie(&t.rq->res, "", NULL), -EINVAL);
    req_free(&t);
}

/* --- redirects, aborts -------------------------------------------------------------- */

static void test_redirect_statuses(void **st)
{
    static const int ok[] = {301, 302, 303, 307, 308};
    for (size_t i = 0; i < 5; i++) {
        treq t = req_new("GET", "/", NULL);
        assert_int_equal(vial_redirect(&t.rq->res, "/target?x=1&y=%20", ok[i]), 0);
        assert_int_equal(t.rq->res.status, ok[i]);
        assert_string_equal(res_header(t.rq, "Location", 0), "/target?x=1&y=%20");
        assert_int_equal(res_header_count(t.rq, "Location"), 1);
        req_free(&t);
    }
    static const int bad[] = {0, 200, 300, 304, 305, 306, 309, 400, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        treq t = req_new("GET", "/", NULL);
        assert_int_equal(vial_redirect(&t.rq->res, "/x", bad[i]), -EINVAL);
        assert_int_equal(t.rq->res.status, 200);
        assert_int_equal(t.rq->res.nheaders, 0);
        req_free(&t);
    }
}

static void test_redirect_location_as_given(void **st)
{
    treq t = req_new("GET", "/", NULL);
    const char *loc = "https://example.com/p\xc3\xa4th?q=a b#frag";
    assert_int_equal(vial_redirect(&t.rq->res, loc, 302), 0);
    assert_string_equal(res_header(t.rq, "Location", 0), loc);
    /* a second redirect replaces the first */
    assert_int_equal(vial_redirect(&t.rq->res, "/second", 308), 0);
    assert_int_equal(res_header_count(t.rq, "Location"), 1);
    assert_string_equal(res_header(t.rq, "Location", 0), "/second");
    assert_int_equal(t.rq->res.status, 308);
    req_free(&t);
}

static void test_redirect_rejects_crlf(void **st)
{
    treq t = req_new("GET", "/", NULL);
    assert_int_equal(vial_redirect(&t.rq->res, "/a\r\nSet-Cookie: x=1", 302), -EINVAL);
    assert_int_equal(vial_redirect(&t.rq->res, "/a\nb", 302), -EINVAL);
    assert_int_equal(vial_redirect(&t.rq->res, "/a\rb", 302), -EINVAL);
    assert_int_equal(vial_redirect(&t.rq->res, "/a\x01", 302), -EINVAL);
    assert_int_equal(vial_redirect(&t.rq->res, "", 302), -EINVAL);
    assert_int_equal(vial_redirect(&t.rq->res, NULL, 302), -EINVAL);
    assert_int_equal(t.rq->res.status, 200);
    assert_int_equal(t.rq->res.nheaders, 0);
    req_free(&t);
}

static void test_abort_msg_copies(void **st)
{
    treq t = req_new("GET", "/", NULL);
    char msg[] = "teapot says no";
    assert_int_equal(vial_abort_msg(&t.rq->res, 418, msg), VIAL_EHTTP(418));
    msg[0] = 'X';
    assert_int_equal(t.rq->res.status, 418);
    assert_true(vial_rqs(t.rq)->aborted);
    assert_string_equal(vial_rqs(t.rq)->error_message, "teapot says no");
    assert_int_equal(vial_abort_msg(&t.rq->res, 404, NULL), VIAL_EHTTP(404));
    assert_int_equal(t.rq->res.status, 404);
    assert_null(vial_rqs(t.rq)->error_message);
    req_free(&t);
}

static void test_status_text(void **st)
{
    assert_string_equal(vial_status_text(200), "OK");
    assert_string_equal(vial_status_text(404), "Not Found");
    assert_string_equal(vial_status_text(416), "Range Not Satisfiable");
    assert_string_equal(vial_status_text(206), "Partial Content");
    assert_string_equal(vial_status_text(308), "Permanent Redirect");
    assert_non_null(vial_status_text(799));
}

/* --- HTTP dates ----------------------------------------------------------------------- */

static void test_http_date_format(void **st)
{
    char d[VIAL_HTTP_DATE_SIZE];
    assert_int_equal(vial_http_date(0, d), 29);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    vial_http_date(784111777, d);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    vial_http_date(951782400, d); /* leap day */
    assert_string_equal(d, "Tue, 29 Feb 2000 00:00:00 GMT");
    vial_http_date(INT64_MAX, d); /* clamped, never wrapped into the past */
    assert_string_equal(d, "Fri, 31 Dec 9999 23:59:59 GMT");
    vial_http_date(-1, d);
    assert_string_equal(d, "Wed, 31 Dec 1969 23:59:59 GMT");
    /* English whatever the locale (if a non-C locale is installed) */
    if (setlocale(LC_TIME, "de_DE.UTF-8") || setlocale(LC_TIME, "fr_FR.UTF-8")) {
        vial_http_date(784111777, d);
        assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
        setlocale(LC_TIME, "C");
    }
}

static void test_http_date_parse(void **st)
{
    int64_t t;
    assert_int_equal(vial_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(vial_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(vial_http_date_parse("Sun Nov  6 08:49:37 1994", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(vial_http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(vial_http_date_parse("  Sun, 06 Nov 1994 08:49:37 GMT  ", &t), 0);
    static const char *const bad[] = {
        "", "garbage", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT x", "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT", "1994-11-06T08:49:37Z",
        "Sun Nov 6 08:49:37", "Sunday, 06-Nov-1994 08:49:37 GMT", "12345",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (vial_http_date_parse(bad[i], &t) == 0)
            fail_msg("accepted %s", bad[i]);
    }
    /* round trip over a range of instants */
    for (int64_t x = 0; x < 4102444800LL; x += 86400LL * 37 + 3671) {
        char d[VIAL_HTTP_DATE_SIZE];
        vial_http_date(x, d);
        assert_int_equal(vial_http_date_parse(d, &t), 0);
        assert_int_equal(t, x);
    }
}

/* --- end to end through the app and the test client ---------------------------------------- */

static int set_view(vial_req *rq, vial_res *rs)
{
    for (unsigned i = 0; i < vial_req_arg_count(rq); i++) {
        const char *n, *v;
        vial_req_arg_at(rq, i, &n, &v);
        if (vial_set_cookie(rs, n, v, NULL) < 0)
            return vial_abort(rs, 400);
    }
    return vial_text(rs, 200, "ok");
}

static int del_view(vial_req *rq, vial_res *rs)
{
    const char *n = vial_req_arg(rq, "name");
    if (!n || vial_delete_cookie(rs, n, NULL) < 0)
        return vial_abort(rs, 400);
    return vial_text(rs, 200, "deleted");
}

static int redirect_view(vial_req *rq, vial_res *rs)
{
    const char *to = vial_req_arg(rq, "to");
    int64_t code;
    if (!to || vial_req_arg_int(rq, "code", 302, 0, 999, &code) < 0 ||
        vial_redirect(rs, to, (int)code) < 0)
        return vial_abort(rs, 400);
    return 0;
}

static int teapot_view(vial_req *rq, vial_res *rs)
{
    return vial_abort_msg(rs, 418, "short and stout");
}

static int teapot_handler(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, vial_error_code(rq), "handled: %s", vial_error_message(rq));
}

static void test_end_to_end(void **st)
{
    vial_app *app = vial_app_new();
    assert_non_null(app);
    assert_int_equal(vial_route_sync(app, "GET /cookies/set", set_view), 0);
    assert_int_equal(vial_route_sync(app, "GET /cookies/delete", del_view), 0);
    assert_int_equal(vial_route_sync(app, "GET /redirect", redirect_view), 0);
    assert_int_equal(vial_route(app, "GET /teapot", teapot_view), 0);
    assert_int_equal(vial_errorhandler(app, 418, teapot_handler), 0);
    vial_test_client *c = vial_test_client_new(app);
    assert_non_null(c);

    vial_test_response *r = vial_test_client_get(c, "/cookies/set?a=1&b=x.y");
    assert_int_equal(vial_test_response_status(r), 200);
    assert_int_equal(vial_test_response_header_count(r, "Set-Cookie"), 2);
    assert_string_equal(vial_test_response_header_nth(r, "Set-Cookie", 0), "a=1; Path=/");
    assert_string_equal(vial_test_response_header_nth(r, "Set-Cookie", 1), "b=x.y; Path=/");
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/cookies/delete?name=a");
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_header(r, "Set-Cookie"),
                        "a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/");
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/redirect?to=/x%3Fy%3D1&code=307");
    assert_int_equal(vial_test_response_status(r), 307);
    assert_string_equal(vial_test_response_header(r, "Location"), "/x?y=1");
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/redirect?to=/x&code=305");
    assert_int_equal(vial_test_response_status(r), 400);
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/teapot");
    assert_int_equal(vial_test_response_status(r), 418);
    assert_string_equal(vial_test_response_body(r, NULL), "handled: short and stout");
    vial_test_response_free(r);

    vial_test_client_free(c);
    vial_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_cookie_null_opts),
        cmocka_unit_test(test_set_cookie_all_attributes_in_order),
        cmocka_unit_test(test_set_cookie_partial_opts),
        cmocka_unit_test(test_set_cookie_rejects_bad_names),
        cmocka_unit_test(test_set_cookie_rejects_bad_values),
        cmocka_unit_test(test_set_cookie_rejects_bad_attributes),
        cmocka_unit_test(test_delete_cookie_exact),
        cmocka_unit_test(test_redirect_statuses),
        cmocka_unit_test(test_redirect_location_as_given),
        cmocka_unit_test(test_redirect_rejects_crlf),
        cmocka_unit_test(test_abort_msg_copies),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_http_date_format),
        cmocka_unit_test(test_http_date_parse),
        cmocka_unit_test(test_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
