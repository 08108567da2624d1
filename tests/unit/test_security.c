/* HTML escaping (the shared escaper and the public helpers), CSRF
 * protection and CORS through the in-process test client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/app.h"
#include "app/session.h"
#include "runtime/codec.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SECRET "test secret key for csrf"

/* --- HTML escaping ------------------------------------------------------------------ */

/* The obvious escaper, to check the fast one against. */
static size_t slow_escape(char *out, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = s[i] == '&' ? "&amp;" : s[i] == '<' ? "&lt;" : s[i] == '>' ? "&gt;"
                      : s[i] == '"' ? "&#34;" : s[i] == '\'' ? "&#39;" : NULL;
        if (e) {
            memcpy(out + o, e, strlen(e));
            o += strlen(e);
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

static void test_escape_matches_reference(void **st)
{
    (void)st;
    /* Specials at every offset around the 8- and 16-byte strides. */
    static const char specials[] = "&<>\"'";
    char in[80], want[400], got[400];
    srand(7);
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof in);
        for (size_t i = 0; i < n; i++)
            in[i] = rand() % 5 == 0 ? specials[rand() % 5] : (char)('a' + rand() % 26);
        size_t wn = slow_escape(want, in, n);
        assert_int_equal(vial_html_escaped_len(in, n), wn);
        assert_int_equal(vial_html_escape_to(got, in, n), wn);
        assert_memory_equal(got, want, wn);
    }
}

static void test_escape_public(void **st)
{
    (void)st;
    const char *s = "<a href=\"x\">Tom & Jerry's</a> \xc3\xa9";
    const char *want = "&lt;a href=&#34;x&#34;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt; \xc3\xa9";
    char out[128];
    assert_int_equal(vial_html_escape(out, sizeof out, s, strlen(s)), 0);
    assert_string_equal(out, want);
    assert_int_equal(vial_html_escape_len(s, strlen(s)), strlen(want));
    /* Exactly enough, one short (never half an entity), empty. */
    assert_int_equal(vial_html_escape(out, strlen(want) + 1, s, strlen(s)), 0);
    assert_int_equal(vial_html_escape(out, strlen(want), s, strlen(s)), -ENOSPC);
    assert_string_equal(out, "");
    assert_int_equal(vial_html_escape(out, 1, "", 0), 0);
    assert_string_equal(out, "");
    assert_int_equal(vial_html_escape(out, 0, "x", 1), -ENOSPC);
}

static int escape_view(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "<p>%s</p>", vial_escape(rq, vial_req_arg(rq, "q")));
}

static void test_escape_in_request(void **st)
{
    (void)st;
    vial_app *app = vial_app_new();
    assert_int_equal(vial_route(app, "GET /e", escape_view), 0);
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = vial_test_client_get(c, "/e?q=%3Cb%3E%26%27");
    assert_string_equal(vial_test_response_body(r, NULL), "<p>&lt;b&gt;&amp;&#39;</p>");
    vial_test_response_free(r);
    vial_test_client_free(c);
    vial_app_free(app);
}

/* --- CSRF --------------------------------------------------------------------------- */

static int form_page(vial_req *rq, vial_res *rs)
{
    const char *t = vial_csrf_token(rq);
    if (!t)
        return vial_fail(rs, "no token");
    /* Asked twice, the same token in one request. */
    if (strcmp(t, vial_csrf_token(rq)))
        return vial_fail(rs, "token changed within a request");
    return vial_text(rs, 200, "%s", t);
}

static int submit(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "ok"); }
static int api_hook(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "api ok"); }

/* The message the 400 was raised with, as the error handler sees it. */
static int on_400(vial_req *rq, vial_res *rs)
{
    const char *m = vial_error_message(rq);
    return vial_text(rs, 400, "%s", m ? m : "(none)");
}

static vial_app *csrf_app(int time_limit)
{
    vial_app *app = vial_app_new();
    assert_non_null(app);
    assert_int_equal(vial_app_set_secret_key(app, SECRET), 0);
    vial_csrf_opts o = {.time_limit = time_limit};
    assert_int_equal(vial_csrf_protect(app, &o), 0);
    assert_int_equal(vial_csrf_protect(app, &o), -EEXIST);
    assert_int_equal(vial_errorhandler(app, 400, on_400), 0);
    assert_int_equal(vial_route(app, "GET /form", form_page), 0);
    assert_int_equal(vial_route(app, "POST,PUT,PATCH,DELETE /submit", submit), 0);
    assert_int_equal(vial_route_as(app, "POST /hook", submit, "hook", NULL), 0);
    assert_int_equal(vial_csrf_exempt(app, "hook"), 0);
    vial_bp *api = vial_blueprint(app, "api", "/api");
    assert_non_null(api);
    assert_int_equal(vial_bp_route_as(api, "POST /items", api_hook, "items", NULL), 0);
    assert_int_equal(vial_bp_csrf_exempt(api), 0);
    return app;
}

/* A token from GET /form (the client keeps the session cookie), malloc'd. */
static char *get_token(vial_test_client *c)
{
    vial_test_response *r = vial_test_client_get(c, "/form");
    assert_int_equal(vial_test_response_status(r), 200);
    char *t = strdup(vial_test_response_body(r, NULL));
    vial_test_response_free(r);
    return t;
}

/* POSTs body (urlencoded) with an optional extra header; returns the status
 * and copies the body into out. */
static int post(vial_test_client *c, const char *method, const char *target, const char *body,
                const char *header, char *out, size_t cap)
{
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", header, NULL};
    vial_test_response *r = vial_test_client_request(c, method, target, h, body, body ? strlen(body) : 0);
    assert_non_null(r);
    int st = vial_test_response_status(r);
    snprintf(out, cap, "%s", vial_test_response_body(r, NULL));
    vial_test_response_free(r);
    return st;
}

static void test_csrf_form_and_header(void **st)
{
    (void)st;
    vial_app *app = csrf_app(0);
    vial_test_client *c = vial_test_client_new(app);
    char *tok = get_token(c);
    char *tok2 = get_token(c);
    /* Masked: every page gets other bytes for the same session token. */
    assert_string_not_equal(tok, tok2);
    char body[512], out[256];
    snprintf(body, sizeof body, "a=1&csrf_token=%s", tok);
    assert_int_equal(post(c, "POST", "/submit", body, NULL, out, sizeof out), 200);
    assert_string_equal(out, "ok");
    /* Unsafe methods all checked, the header accepted under both names. */
    static const char *const methods[] = {"PUT", "PATCH", "DELETE"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(post(c, methods[i], "/submit", "", NULL, out, sizeof out), 400);
        assert_string_equal(out, "The CSRF token is missing.");
    }
    char h[256];
    snprintf(h, sizeof h, "X-CSRFToken: %s", tok2);
    assert_int_equal(post(c, "PUT", "/submit", "", h, out, sizeof out), 200);
    snprintf(h, sizeof h, "X-CSRF-Token: %s", tok);
    assert_int_equal(post(c, "DELETE", "/submit", "", h, out, sizeof out), 200);
    free(tok);
    free(tok2);
    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_csrf_refusals(void **st)
{
    (void)st;
    vial_app *app = csrf_app(0);
    vial_test_client *c = vial_test_client_new(app);
    char out[256], body[512];

    /* No session yet: the token's other half is missing. */
    assert_int_equal(post(c, "POST", "/submit", "csrf_token=abc", NULL, out, sizeof out), 400);
    assert_string_equal(out, "The CSRF session token is missing.");

    char *tok = get_token(c);
    assert_int_equal(post(c, "POST", "/submit", "a=1", NULL, out, sizeof out), 400);
    assert_string_equal(out, "The CSRF token is missing.");
    assert_int_equal(post(c, "POST", "/submit", "csrf_token=", NULL, out, sizeof out), 400);
    assert_string_equal(out, "The CSRF token is missing.");
    assert_int_equal(post(c, "POST", "/submit", "csrf_token=garbage", NULL, out, sizeof out), 400);
    assert_string_equal(out, "The CSRF token is invalid.");
    /* One flipped character anywhere: the signature fails. */
    for (size_t i = 0; i < strlen(tok); i += 7) {
        char *bad = strdup(tok);
        bad[i] = bad[i] == 'A' ? 'B' : bad[i] == '.' ? '.' : 'A';
        if (!strcmp(bad, tok)) {
            free(bad);
            continue;
        }
        snprintf(body, sizeof body, "csrf_token=%s", bad);
        assert_int_equal(post(c, "POST", "/submit", body, NULL, out, sizeof out), 400);
        assert_string_equal(out, "The CSRF token is invalid.");
        free(bad);
    }

    /* Another session's token: signed right, bound to the other session. */
    vial_test_client *other = vial_test_client_new(app);
    char *theirs = get_token(other);
    snprintf(body, sizeof body, "csrf_token=%s", theirs);
    assert_int_equal(post(c, "POST", "/submit", body, NULL, out, sizeof out), 400);
    assert_string_equal(out, "The CSRF tokens do not match.");
    assert_int_equal(post(other, "POST", "/submit", body, NULL, out, sizeof out), 200);

    /* GET is never checked; exempt endpoint and blueprint pass without. */
    vial_test_response *r = vial_test_client_get(c, "/form");
    assert_int_equal(vial_test_response_status(r), 200);
    vial_test_response_free(r);
    assert_int_equal(post(c, "POST", "/hook", "", NULL, out, sizeof out), 200);
    assert_int_equal(post(c, "POST", "/api/items", "", NULL, out, sizeof out), 200);
    /* Routing errors are routing's: a 405 stays a 405. */
    assert_int_equal(post(c, "POST", "/form", "", NULL, out, sizeof out), 405);
    free(tok);
    free(theirs);
    vial_test_client_free(other);
    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_csrf_form_limits_stay_413(void **st)
{
    (void)st;
    vial_app *app = csrf_app(0);
    vial_test_client *c = vial_test_client_new(app);
    char *tok = get_token(c);
    size_t cap = 1001 * 8 + 256;
    char *body = malloc(cap), out[256];
    size_t o = (size_t)snprintf(body, cap, "csrf_token=%s", tok);
    for (int i = 0; i < 1001; i++)
        o += (size_t)snprintf(body + o, cap - o, "&f%d=1", i % 10);
    /* Too many fields is what is wrong, not the token (it is there). */
    assert_int_equal(post(c, "POST", "/submit", body, NULL, out, sizeof out), 413);
    free(body);
    free(tok);
    vial_test_client_free(c);
    vial_app_free(app);
}

/* tok re-stamped `age` seconds ago and signed again with the app's key, as
 * the documented scheme says (csrf.c). */
static char *restamp(vial_app *app, const char *tok, long long age)
{
    unsigned char key[32], mac[32];
    unsigned len = 0;
    HMAC(EVP_sha256(), app->session_cfg->key, 32, (const unsigned char *)"vial.csrf.v1", 12, key, &len);
    char signed_part[128];
    int n = snprintf(signed_part, sizeof signed_part, "%.*s.%lld", (int)(strchr(tok, '.') - tok), tok,
                     (long long)time(NULL) - age);
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)signed_part, (size_t)n, mac, &len);
    char *out = malloc(256);
    char b64[64];
    vial_base64_encode(b64, mac, 32, VIAL_B64_URL);
    snprintf(out, 256, "%s.%s", signed_part, b64);
    return out;
}

static void test_csrf_expiry(void **st)
{
    (void)st;
    vial_app *app = csrf_app(60);
    vial_test_client *c = vial_test_client_new(app);
    char *tok = get_token(c);
    char out[256], body[512];
    char *fresh = restamp(app, tok, 30), *old = restamp(app, tok, 61);
    snprintf(body, sizeof body, "csrf_token=%s", fresh);
    assert_int_equal(post(c, "POST", "/submit", body, NULL, out, sizeof out), 200);
    snprintf(body, sizeof body, "csrf_token=%s", old);
    assert_int_equal(post(c, "POST", "/submit", body, NULL, out, sizeof out), 400);
    assert_string_equal(out, "The CSRF token has expired.");
    free(fresh);
    free(old);
    free(tok);
    vial_test_client_free(c);
    vial_app_free(app);

    /* -1: as long as the session. */
    app = csrf_app(-1);
    c = vial_test_client_new(app);
    tok = get_token(c);
    old = restamp(app, tok, 10 * 24 * 3600);
    snprintf(body, sizeof body, "csrf_token=%s", old);
    assert_int_equal(post(c, "POST", "/submit", body, NULL, out, sizeof out), 200);
    free(old);
    free(tok);
    vial_test_client_free(c);
    vial_app_free(app);
}

/* Should the check ever let the app start, the test ends instead of serving. */
static void stop_at_once(int port, void *data)
{
    (void)port;
    (void)data;
    kill(getpid(), SIGTERM);
}

static void test_csrf_needs_secret_key(void **st)
{
    (void)st;
    vial_app *app = vial_app_new();
    assert_int_equal(vial_csrf_protect(app, NULL), 0);
    vial_csrf_opts bad = {.time_limit = -2};
    assert_int_equal(vial_csrf_exempt(app, ""), -EINVAL);
    vial_app_free(app);
    app = vial_app_new();
    assert_int_equal(vial_csrf_protect(app, &bad), -EINVAL);
    assert_int_equal(vial_csrf_protect(app, NULL), 0);
    assert_int_equal(vial_route(app, "POST /submit", submit), 0);
    /* The start refuses, before listening. */
    vial_config cfg = vial_config_default();
    cfg.port = 0;
    cfg.threads = 1;
    cfg.on_ready = stop_at_once;
    assert_int_equal(vial_run(app, &cfg), -ENOKEY);
    vial_app_free(app);
}

/* --- CORS --------------------------------------------------------------------------- */

static int view_runs;
static int data_view(vial_req *rq, vial_res *rs)
{
    view_runs++;
    return vial_text(rs, 200, "data");
}
static int broken_view(vial_req *rq, vial_res *rs) { return vial_fail(rs, "broken"); }

static int partner_origin(vial_req *rq, const char *origin, void *arg)
{
    return !strcmp(origin, (const char *)arg);
}

static vial_test_response *req_with(vial_test_client *c, const char *method, const char *target,
                                    const char *h1, const char *h2, const char *h3)
{
    const char *h[] = {h1, h2, h3, NULL};
    vial_test_response *r = vial_test_client_request(c, method, target, h, NULL, 0);
    assert_non_null(r);
    return r;
}

#define HDR(r, name) vial_test_response_header((r), (name))

static void test_cors(void **st)
{
    (void)st;
    vial_app *app = vial_app_new();
    static const char *const origins[] = {"https://app.example", NULL};
    vial_cors_opts o = {
        .origins = origins,
        .allow_origin = partner_origin,
        .allow_origin_arg = "https://partner.example",
        .allow_headers = "Content-Type, X-CSRFToken",
        .expose_headers = "X-Total",
        .credentials = 1,
        .max_age = 600,
    };
    assert_int_equal(vial_cors(app, &o), 0);
    assert_int_equal(vial_cors(app, &o), -EEXIST);
    assert_int_equal(vial_route(app, "GET,PUT /data", data_view), 0);
    assert_int_equal(vial_route(app, "GET /broken", broken_view), 0);
    vial_bp *pub = vial_blueprint(app, "pub", "/pub");
    assert_int_equal(vial_bp_route_as(pub, "GET /data", data_view, "data", NULL), 0);
    assert_int_equal(vial_bp_cors(pub, NULL), 0); /* anyone, no credentials */
    vial_test_client *c = vial_test_client_new(app);

    /* Preflight, allowed: 204, the view does not run. */
    view_runs = 0;
    vial_test_response *r = req_with(c, "OPTIONS", "/data", "Origin: https://app.example",
                                     "Access-Control-Request-Method: PUT",
                                     "Access-Control-Request-Headers: content-type, x-other");
    assert_int_equal(vial_test_response_status(r), 204);
    assert_int_equal(view_runs, 0);
    assert_string_equal(HDR(r, "Access-Control-Allow-Origin"), "https://app.example");
    assert_string_equal(HDR(r, "Access-Control-Allow-Credentials"), "true");
    assert_string_equal(HDR(r, "Access-Control-Allow-Methods"), "GET, HEAD, POST, OPTIONS, PUT, PATCH, DELETE");
    assert_string_equal(HDR(r, "Access-Control-Allow-Headers"), "content-type");
    assert_string_equal(HDR(r, "Access-Control-Max-Age"), "600");
    assert_string_equal(HDR(r, "Vary"), "Origin");
    vial_test_response_free(r);

    /* Preflight, denied origin or method: no CORS header at all. */
    r = req_with(c, "OPTIONS", "/data", "Origin: https://evil.example", "Access-Control-Request-Method: PUT", NULL);
    assert_int_equal(vial_test_response_status(r), 204);
    assert_null(HDR(r, "Access-Control-Allow-Origin"));
    assert_null(HDR(r, "Access-Control-Allow-Methods"));
    vial_test_response_free(r);
    r = req_with(c, "OPTIONS", "/data", "Origin: https://app.example", "Access-Control-Request-Method: TRACE", NULL);
    assert_null(HDR(r, "Access-Control-Allow-Origin"));
    vial_test_response_free(r);

    /* A plain OPTIONS is no preflight: the usual answer. */
    r = req_with(c, "OPTIONS", "/data", NULL, NULL, NULL);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_non_null(HDR(r, "Allow"));
    vial_test_response_free(r);

    /* Simple requests: allowed origin (list, callback) echoed; others nothing. */
    r = req_with(c, "GET", "/data", "Origin: https://partner.example", NULL, NULL);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(HDR(r, "Access-Control-Allow-Origin"), "https://partner.example");
    assert_string_equal(HDR(r, "Access-Control-Expose-Headers"), "X-Total");
    assert_string_equal(HDR(r, "Vary"), "Origin");
    vial_test_response_free(r);
    r = req_with(c, "GET", "/data", "Origin: https://evil.example", NULL, NULL);
    assert_null(HDR(r, "Access-Control-Allow-Origin"));
    assert_string_equal(HDR(r, "Vary"), "Origin");
    vial_test_response_free(r);

    /* Errors carry the headers too: a 404, a 500. */
    r = req_with(c, "GET", "/nowhere", "Origin: https://app.example", NULL, NULL);
    assert_int_equal(vial_test_response_status(r), 404);
    assert_string_equal(HDR(r, "Access-Control-Allow-Origin"), "https://app.example");
    vial_test_response_free(r);
    r = req_with(c, "GET", "/broken", "Origin: https://app.example", NULL, NULL);
    assert_int_equal(vial_test_response_status(r), 500);
    assert_string_equal(HDR(r, "Access-Control-Allow-Origin"), "https://app.example");
    vial_test_response_free(r);

    /* The blueprint's own options: "*" for anyone, no Vary needed. */
    r = req_with(c, "GET", "/pub/data", "Origin: https://evil.example", NULL, NULL);
    assert_string_equal(HDR(r, "Access-Control-Allow-Origin"), "*");
    assert_null(HDR(r, "Access-Control-Allow-Credentials"));
    assert_null(HDR(r, "Vary"));
    vial_test_response_free(r);

    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_cors_wildcard_with_credentials(void **st)
{
    (void)st;
    vial_app *app = vial_app_new();
    static const char *const any[] = {"*", NULL};
    vial_cors_opts o = {.origins = any, .credentials = 1};
    assert_int_equal(vial_cors(app, &o), 0);
    assert_int_equal(vial_route(app, "GET /data", data_view), 0);
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = req_with(c, "GET", "/data", "Origin: https://a.example", NULL, NULL);
    /* Never "*" with credentials: the origin, and Vary. */
    assert_string_equal(HDR(r, "Access-Control-Allow-Origin"), "https://a.example");
    assert_string_equal(HDR(r, "Access-Control-Allow-Credentials"), "true");
    assert_string_equal(HDR(r, "Vary"), "Origin");
    vial_test_response_free(r);
    /* No Origin: no CORS header. */
    r = vial_test_client_get(c, "/data");
    assert_null(HDR(r, "Access-Control-Allow-Origin"));
    vial_test_response_free(r);
    vial_test_client_free(c);
    vial_cors_opts bad = {.max_age = -1};
    vial_app *app2 = vial_app_new();
    assert_int_equal(vial_cors(app2, &bad), -EINVAL);
    vial_app_free(app2);
    vial_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_matches_reference),
        cmocka_unit_test(test_escape_public),
        cmocka_unit_test(test_escape_in_request),
        cmocka_unit_test(test_csrf_form_and_header),
        cmocka_unit_test(test_csrf_refusals),
        cmocka_unit_test(test_csrf_expiry),
        cmocka_unit_test(test_csrf_form_limits_stay_413),
        cmocka_unit_test(test_csrf_needs_secret_key),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_cors_wildcard_with_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
