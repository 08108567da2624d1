/* Signed cookie sessions and flash messages: save/load round trips on
 * hand-built requests, tampering and expiry (cookies signed here with the
 * documented scheme), then whole requests through the test client. */
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
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SECRET "correct horse battery staple"

/* --- requests built by hand --------------------------------------------------------- */

static treq req_new(vial_app *app, const char *cookie)
{
    char *line = NULL;
    if (cookie) {
        line = malloc(strlen(cookie) + 16);
        assert_non_null(line);
        sprintf(line, "Cookie: %s", cookie);
    }
    const char *headers[] = {line, NULL};
    treq t = treq_new("GET", "/", headers);
    free(line); /* the request's spans point into t.raw, not here */
    vial_rqs(t.rq)->app = app;
    return t;
}

#define req_free treq_free
#define res_header treq_res_header
#define res_header_count treq_res_header_count

/* "session=<value>" from the response's Set-Cookie (malloc'd), or NULL. */
static char *saved_cookie(treq *t)
{
    const char *sc = res_header(t->rq, "Set-Cookie", 0);
    if (!sc)
        return NULL;
    const char *semi = strchr(sc, ';');
    assert_non_null(semi);
    assert_string_equal(semi, "; Path=/; HttpOnly");
    return strndup(sc, (size_t)(semi - sc));
}

static vial_app *keyed_app(void)
{
    vial_app *app = vial_app_new();
    assert_non_null(app);
    assert_int_equal(vial_app_set_secret_key(app, SECRET), 0);
    return app;
}

/* --- signing cookies here, to test what a forger or an old client sends ----------------- */

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = a[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = 0;
}

/* "session=" b64(payload) "." ts "." mac, signed with `secret`. */
static char *forge(const char *secret, const char *payload, long long ts)
{
    unsigned char key[32], mac[32];
    unsigned len;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)"vial.session.v1", 15,
         key, &len);
    char *c = malloc(strlen(payload) * 2 + 128);
    int n = sprintf(c, "session=");
    b64url((const unsigned char *)payload, strlen(payload), c + n);
    n += (int)strlen(c + n);
    n += sprintf(c + n, ".%lld", ts);
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)c + 8, (size_t)n - 8, mac, &len);
    c[n++] = '.';
    b64url(mac, 32, c + n);
    return c;
}

/* --- tests ------------------------------------------------------------------------------- */

static void test_without_secret_key(void **st)
{
    vial_app *app = vial_app_new();
    treq t = req_new(app, NULL);
    assert_null(vial_session_get(t.rq, "a"));
    assert_int_equal(vial_session_set(t.rq, "a", "1"), -EPERM);
    assert_int_equal(vial_session_del(t.rq, "a"), -EPERM);
    assert_int_equal(vial_flash(t.rq, NULL, "hi"), -EPERM);
    const char **c, **m;
    assert_int_equal(vial_get_flashed_messages(t.rq, &c, &m), 0);
    vial_session_clear(t.rq);
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_int_equal(res_header_count(t.rq, "Set-Cookie"), 0);
    req_free(&t);
    /* a request not even using a vial_app */
    t = req_new(NULL, NULL);
    assert_int_equal(vial_session_set(t.rq, "a", "1"), -EPERM);
    req_free(&t);
    vial_app_free(app);
}

static void test_secret_key_api(void **st)
{
    vial_app *app = vial_app_new();
    assert_int_equal(vial_app_set_secret_key(app, ""), -EINVAL);
    assert_int_equal(vial_app_set_secret_key(NULL, "k"), -EINVAL);
    assert_int_equal(vial_app_set_secret_key(app, "k1"), 0);
    assert_int_equal(vial_app_set_secret_key(app, "k2"), 0); /* replaced, not leaked */
    assert_non_null(app->session_cfg);
    assert_int_equal(vial_app_set_secret_key(app, NULL), 0);
    assert_null(app->session_cfg);
    assert_int_equal(vial_app_set_secret_key(app, "k3"), 0);
    vial_app_free(app);
}

static void test_untouched_session_saves_nothing(void **st)
{
    vial_app *app = keyed_app();
    treq t = req_new(app, NULL);
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_int_equal(t.rq->res.nheaders, 0);
    req_free(&t);
    vial_app_free(app);
}

static void test_round_trip(void **st)
{
    vial_app *app = keyed_app();
    treq t = req_new(app, NULL);
    assert_null(vial_session_get(t.rq, "user"));
    assert_int_equal(vial_session_set(t.rq, "user", "alice"), 0);
    const char *odd = "a&b=c%d !\"#;,\\\n\t\xc3\xa9 end";
    assert_int_equal(vial_session_set(t.rq, "odd", odd), 0);
    assert_int_equal(vial_session_set(t.rq, "!notaflash", "x"), 0);
    assert_int_equal(vial_session_set(t.rq, "empty", ""), 0);
    assert_int_equal(vial_session_set(t.rq, "user", "bob"), 0); /* replace */
    assert_string_equal(vial_session_get(t.rq, "user"), "bob");
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_int_equal(vial_session_save(t.rq), 0); /* idempotent */
    assert_int_equal(res_header_count(t.rq, "Set-Cookie"), 1);
    assert_string_equal(res_header(t.rq, "Vary", 0), "Cookie");
    char *cookie = saved_cookie(&t);
    assert_non_null(cookie);
    /* payload . timestamp . mac: the value is a valid cookie-value */
    const char *v = cookie + 8;
    const char *d1 = strchr(v, '.'), *d2 = strrchr(v, '.');
    assert_true(d1 && d2 && d1 < d2);
    assert_int_equal(strlen(d2 + 1), 43);
    long long ts = strtoll(d1 + 1, NULL, 10);
    assert_true(llabs(ts - (long long)time(NULL)) < 5);
    for (const char *p = v; *p; p++)
        assert_true(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", *p));
    req_free(&t);

    t = req_new(app, cookie);
    assert_string_equal(vial_session_get(t.rq, "user"), "bob");
    assert_string_equal(vial_session_get(t.rq, "odd"), odd);
    assert_string_equal(vial_session_get(t.rq, "!notaflash"), "x");
    assert_string_equal(vial_session_get(t.rq, "empty"), "");
    assert_null(vial_session_get(t.rq, "nope"));
    const char **cats;
    assert_int_equal(vial_get_flashed_messages(t.rq, &cats, NULL), 0);
    /* read only: no new cookie, but Vary */
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_int_equal(res_header_count(t.rq, "Set-Cookie"), 0);
    assert_int_equal(res_header_count(t.rq, "Vary"), 1);
    req_free(&t);

    /* setting the same value is not a change */
    t = req_new(app, cookie);
    assert_int_equal(vial_session_set(t.rq, "user", "bob"), 0);
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_int_equal(res_header_count(t.rq, "Set-Cookie"), 0);
    req_free(&t);
    free(cookie);
    vial_app_free(app);
}

static void test_argument_checks(void **st)
{
    vial_app *app = keyed_app();
    treq t = req_new(app, NULL);
    assert_int_equal(vial_session_set(t.rq, NULL, "v"), -EINVAL);
    assert_int_equal(vial_session_set(t.rq, "", "v"), -EINVAL);
    assert_int_equal(vial_session_set(t.rq, "k", NULL), -EINVAL);
    assert_int_equal(vial_session_del(t.rq, NULL), -EINVAL);
    assert_int_equal(vial_session_del(t.rq, "absent"), -ENOENT);
    assert_null(vial_session_get(t.rq, NULL));
    assert_int_equal(vial_flash(t.rq, "c", NULL), -EINVAL);
    req_free(&t);
    vial_app_free(app);
}

/* The cookie that carries {"a": "1"}, fresh. */
static char *good_cookie(vial_app *app)
{
    treq t = req_new(app, NULL);
    assert_int_equal(vial_session_set(t.rq, "a", "1"), 0);
    assert_int_equal(vial_session_save(t.rq), 0);
    char *c = saved_cookie(&t);
    req_free(&t);
    return c;
}

static void expect_empty(vial_app *app, const char *cookie)
{
    treq t = req_new(app, cookie);
    if (vial_session_get(t.rq, "a"))
        fail_msg("accepted: %.80s", cookie);
    const char **c;
    assert_int_equal(vial_get_flashed_messages(t.rq, &c, NULL), 0);
    /* never an error, never a cookie written for a read */
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_int_equal(res_header_count(t.rq, "Set-Cookie"), 0);
    req_free(&t);
}

static void test_tampering_gives_empty_session(void **st)
{
    vial_app *app = keyed_app();
    char *good = good_cookie(app);
    treq t = req_new(app, good);
    assert_string_equal(vial_session_get(t.rq, "a"), "1");
    req_free(&t);

    size_t n = strlen(good);
    /* flip every character after "session=" in turn */
    for (size_t i = 8; i < n; i++) {
        char *bad = strdup(good);
        bad[i] = good[i] == 'A' ? 'B' : 'A';
        expect_empty(app, bad);
        free(bad);
    }
    /* truncations */
    for (size_t cut = 8; cut < n; cut += 3) {
        char *bad = strndup(good, cut);
        expect_empty(app, bad);
        free(bad);
    }
    static const char *const garbage[] = {
        "session=", "session=.", "session=..", "session=...", "session=a.b.c",
        "session=\"quoted\"", "session=%00", "session=x.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        expect_empty(app, garbage[i]);
    /* extra dot, extra bytes */
    char *bad = malloc(n + 8);
    sprintf(bad, "%s.x", good);
    expect_empty(app, bad);
    sprintf(bad, "session=.%s", good + 8);
    expect_empty(app, bad);
    free(bad);
    /* oversized */
    char *big = malloc(VIAL_SESSION_MAX_COOKIE + 64);
    memcpy(big, "session=", 8);
    memset(big + 8, 'A', VIAL_SESSION_MAX_COOKIE + 1);
    big[VIAL_SESSION_MAX_COOKIE + 9] = 0;
    expect_empty(app, big);
    free(big);
    /* another app's key */
    vial_app *other = vial_app_new();
    assert_int_equal(vial_app_set_secret_key(other, "another secret"), 0);
    expect_empty(other, good);
    vial_app_free(other);
    /* no key at all: cannot verify, so empty */
    vial_app *nokey = vial_app_new();
    expect_empty(nokey, good);
    vial_app_free(nokey);
    free(good);
    vial_app_free(app);
}

static void test_forged_with_right_key(void **st)
{
    vial_app *app = keyed_app();
    long long now = (long long)time(NULL);
    /* the scheme as documented: accepted */
    char *c = forge(SECRET, "a=1&b=x%20y&!warn=careful", now);
    treq t = req_new(app, c);
    assert_string_equal(vial_session_get(t.rq, "a"), "1");
    assert_string_equal(vial_session_get(t.rq, "b"), "x y");
    const char **cats, **msgs;
    assert_int_equal(vial_get_flashed_messages(t.rq, &cats, &msgs), 1);
    assert_string_equal(cats[0], "warn");
    assert_string_equal(msgs[0], "careful");
    req_free(&t);
    free(c);
    /* age limits */
    c = forge(SECRET, "a=1", now - VIAL_SESSION_MAX_AGE + 60);
    t = req_new(app, c);
    assert_string_equal(vial_session_get(t.rq, "a"), "1");
    req_free(&t);
    free(c);
    c = forge(SECRET, "a=1", now - VIAL_SESSION_MAX_AGE - 60);
    expect_empty(app, c);
    free(c);
    c = forge(SECRET, "a=1", now + 60);
    t = req_new(app, c);
    assert_string_equal(vial_session_get(t.rq, "a"), "1");
    req_free(&t);
    free(c);
    c = forge(SECRET, "a=1", now + 3600);
    expect_empty(app, c);
    free(c);
    /* authentic but malformed payloads are still no session */
    static const char *const bad[] = {"a", "a=1&", "a=%zz", "a=%0", "a=%00", "=1", "a=1&&b=2",
                                      "a=1&b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = forge(SECRET, bad[i], now);
        expect_empty(app, c);
        free(c);
    }
    /* an empty payload is an empty (valid) session */
    c = forge(SECRET, "", now);
    expect_empty(app, c);
    free(c);
    vial_app_free(app);
}

static void test_delete_and_clear(void **st)
{
    vial_app *app = keyed_app();
    char *good = good_cookie(app);
    const char *deleted = "session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly";

    /* deleting the last key deletes the cookie */
    treq t = req_new(app, good);
    assert_int_equal(vial_session_del(t.rq, "a"), 0);
    assert_null(vial_session_get(t.rq, "a"));
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0), deleted);
    req_free(&t);

    /* clear, with a cookie: deleted */
    t = req_new(app, good);
    vial_session_clear(t.rq);
    assert_null(vial_session_get(t.rq, "a"));
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0), deleted);
    req_free(&t);

    /* clear, without a cookie: nothing to delete */
    t = req_new(app, NULL);
    vial_session_clear(t.rq);
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_int_equal(res_header_count(t.rq, "Set-Cookie"), 0);
    req_free(&t);

    /* clear after a tampered cookie: the client's bad cookie is removed */
    t = req_new(app, "session=garbage");
    vial_session_clear(t.rq);
    assert_int_equal(vial_session_save(t.rq), 0);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0), deleted);
    req_free(&t);

    /* del of one key among several keeps the others, in order */
    t = req_new(app, NULL);
    vial_session_set(t.rq, "x", "1");
    vial_session_set(t.rq, "y", "2");
    vial_session_set(t.rq, "z", "3");
    assert_int_equal(vial_session_del(t.rq, "y"), 0);
    vial_session_save(t.rq);
    char *c = saved_cookie(&t);
    req_free(&t);
    t = req_new(app, c);
    assert_string_equal(vial_session_get(t.rq, "x"), "1");
    assert_null(vial_session_get(t.rq, "y"));
    assert_string_equal(vial_session_get(t.rq, "z"), "3");
    req_free(&t);
    free(c);
    free(good);
    vial_app_free(app);
}

static void test_flash(void **st)
{
    vial_app *app = keyed_app();
    treq t = req_new(app, NULL);
    assert_int_equal(vial_session_set(t.rq, "user", "alice"), 0);
    assert_int_equal(vial_flash(t.rq, "error", "bad & wrong = 100%"), 0);
    assert_int_equal(vial_flash(t.rq, NULL, "plain"), 0);
    assert_int_equal(vial_session_save(t.rq), 0);
    char *c1 = saved_cookie(&t);
    req_free(&t);

    /* next request takes them; a second call in the same request sees the
     * same list; flashing meanwhile waits for the next request */
    t = req_new(app, c1);
    const char **cats, **msgs;
    assert_int_equal(vial_get_flashed_messages(t.rq, &cats, &msgs), 2);
    assert_string_equal(cats[0], "error");
    assert_string_equal(msgs[0], "bad & wrong = 100%");
    assert_string_equal(cats[1], "message");
    assert_string_equal(msgs[1], "plain");
    assert_int_equal(vial_flash(t.rq, "info", "later"), 0);
    assert_int_equal(vial_get_flashed_messages(t.rq, &cats, NULL), 2);
    assert_string_equal(cats[1], "message");
    assert_string_equal(vial_session_get(t.rq, "user"), "alice");
    assert_int_equal(vial_session_save(t.rq), 0);
    char *c2 = saved_cookie(&t);
    assert_non_null(c2);
    req_free(&t);

    t = req_new(app, c2);
    assert_int_equal(vial_get_flashed_messages(t.rq, &cats, &msgs), 1);
    assert_string_equal(cats[0], "info");
    assert_string_equal(msgs[0], "later");
    assert_int_equal(vial_session_save(t.rq), 0);
    char *c3 = saved_cookie(&t);
    req_free(&t);

    /* only the user data is left */
    t = req_new(app, c3);
    assert_int_equal(vial_get_flashed_messages(t.rq, NULL, NULL), 0);
    assert_string_equal(vial_session_get(t.rq, "user"), "alice");
    req_free(&t);

    /* flashes alone: taking them empties the session and deletes the cookie */
    t = req_new(app, NULL);
    vial_flash(t.rq, "x", "y");
    vial_session_save(t.rq);
    char *c4 = saved_cookie(&t);
    req_free(&t);
    t = req_new(app, c4);
    assert_int_equal(vial_get_flashed_messages(t.rq, NULL, NULL), 1);
    vial_session_save(t.rq);
    assert_string_equal(res_header(t.rq, "Set-Cookie", 0),
                        "session=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; HttpOnly");
    req_free(&t);
    free(c1);
    free(c2);
    free(c3);
    free(c4);
    vial_app_free(app);
}

static void test_vary_merges(void **st)
{
    vial_app *app = keyed_app();
    treq t = req_new(app, NULL);
    vial_res_add_header(&t.rq->res, "Vary", "Accept-Encoding, Cookie");
    vial_session_get(t.rq, "a");
    vial_session_save(t.rq);
    assert_int_equal(res_header_count(t.rq, "Vary"), 1);
    req_free(&t);
    t = req_new(app, NULL);
    vial_res_add_header(&t.rq->res, "Vary", "Accept-Encoding");
    vial_session_get(t.rq, "a");
    vial_session_save(t.rq);
    assert_int_equal(res_header_count(t.rq, "Vary"), 2);
    req_free(&t);
    vial_app_free(app);
}

static void test_big_session(void **st)
{
    /* large values still round-trip (browsers may drop them: a warning) */
    vial_app *app = keyed_app();
    treq t = req_new(app, NULL);
    char val[2000];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = 0;
    for (int i = 0; i < 2; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(vial_session_set(t.rq, k, val), 0);
    }
    vial_session_save(t.rq);
    char *c = saved_cookie(&t);
    req_free(&t);
    t = req_new(app, c);
    assert_string_equal(vial_session_get(t.rq, "k1"), val);
    req_free(&t);
    free(c);
    vial_app_free(app);
}

/* --- through the app ------------------------------------------------------------------- */

static int login(vial_req *rq, vial_res *rs)
{
    const char *u = vial_req_arg(rq, "user");
    if (!u)
        return vial_abort(rs, 400);
    int r = vial_session_set(rq, "user", u);
    if (r < 0)
        return vial_abort_msg(rs, 500, "session");
    vial_flash(rq, "info", "welcome");
    return vial_redirect(rs, "/whoami", 303);
}

static int whoami(vial_req *rq, vial_res *rs)
{
    const char *u = vial_session_get(rq, "user");
    const char **cats, **msgs;
    unsigned n = vial_get_flashed_messages(rq, &cats, &msgs);
    return vial_text(rs, 200, "%s|%s", u ? u : "-", n ? msgs[0] : "");
}

static int logout(vial_req *rq, vial_res *rs)
{
    vial_session_clear(rq);
    return vial_text(rs, 200, "bye");
}

static int count_hook(vial_req *rq, vial_res *rs)
{
    /* an after_request hook may still change the session */
    const char *n = vial_session_get(rq, "hits");
    char buf[24];
    snprintf(buf, sizeof buf, "%d", n ? atoi(n) + 1 : 1);
    if (vial_session_get(rq, "user"))
        vial_session_set(rq, "hits", buf);
    return 0;
}

static int nosession(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "plain");
}

static void test_end_to_end(void **st)
{
    vial_app *app = keyed_app();
    assert_int_equal(vial_route_sync(app, "GET /login", login), 0);
    assert_int_equal(vial_route(app, "GET /whoami", whoami), 0);
    assert_int_equal(vial_route(app, "GET /logout", logout), 0);
    assert_int_equal(vial_route(app, "GET /plain", nosession), 0);
    vial_test_client *c = vial_test_client_new(app);
    assert_non_null(c);

    vial_test_response *r = vial_test_client_get(c, "/whoami");
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_body(r, NULL), "-|");
    assert_null(vial_test_response_header(r, "Set-Cookie"));
    assert_string_equal(vial_test_response_header(r, "Vary"), "Cookie");
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/login?user=ada");
    assert_int_equal(vial_test_response_status(r), 303);
    assert_string_equal(vial_test_response_header(r, "Location"), "/whoami");
    assert_non_null(strstr(vial_test_response_header(r, "Set-Cookie"), "; Path=/; HttpOnly"));
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/whoami");
    assert_string_equal(vial_test_response_body(r, NULL), "ada|welcome");
    vial_test_response_free(r);
    r = vial_test_client_get(c, "/whoami"); /* the flash was consumed */
    assert_string_equal(vial_test_response_body(r, NULL), "ada|");
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/plain"); /* untouched: no cookie, no Vary */
    assert_null(vial_test_response_header(r, "Set-Cookie"));
    assert_null(vial_test_response_header(r, "Vary"));
    vial_test_response_free(r);

    /* a forged cookie sent instead of the jar's */
    const char *forged[] = {"Cookie: session=eyJ1c2VyIjoicm9vdCJ9.1.AAAA", NULL};
    r = vial_test_client_request(c, "GET", "/whoami", forged, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_body(r, NULL), "-|");
    vial_test_response_free(r);

    r = vial_test_client_get(c, "/logout");
    assert_non_null(strstr(vial_test_response_header(r, "Set-Cookie"), "Max-Age=0"));
    vial_test_response_free(r);
    r = vial_test_client_get(c, "/whoami");
    assert_string_equal(vial_test_response_body(r, NULL), "-|");
    vial_test_response_free(r);

    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_after_request_hook_changes_session(void **st)
{
    vial_app *app = keyed_app();
    assert_int_equal(vial_route_sync(app, "GET /login", login), 0);
    assert_int_equal(vial_route(app, "GET /whoami", whoami), 0);
    assert_int_equal(vial_after_request(app, count_hook), 0);
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response_free(vial_test_client_get(c, "/login?user=ada"));
    for (int i = 0; i < 3; i++)
        vial_test_response_free(vial_test_client_get(c, "/whoami"));
    /* read the counter through a fresh request with the jar's cookie */
    vial_test_response *r = vial_test_client_get(c, "/whoami");
    const char *sc = vial_test_response_header(r, "Set-Cookie");
    assert_non_null(sc);
    char *cookie = strndup(sc, (size_t)(strchr(sc, ';') - sc));
    vial_test_response_free(r);
    treq t = req_new(app, cookie);
    assert_string_equal(vial_session_get(t.rq, "hits"), "5");
    req_free(&t);
    free(cookie);
    vial_test_client_free(c);
    vial_app_free(app);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_secret_key),
        cmocka_unit_test(test_secret_key_api),
        cmocka_unit_test(test_untouched_session_saves_nothing),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_argument_checks),
        cmocka_unit_test(test_tampering_gives_empty_session),
        cmocka_unit_test(test_forged_with_right_key),
        cmocka_unit_test(test_delete_and_clear),
        cmocka_unit_test(test_flash),
        cmocka_unit_test(test_vary_merges),
        cmocka_unit_test(test_big_session),
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_after_request_hook_changes_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
