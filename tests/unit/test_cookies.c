/* Cookie header parsing (spec §4.2): vial_req_cookie / _count / _at. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/request_state.h"
#include "http/exchange.h"

/* A request with the given "Name: value" header lines (NULL-terminated);
 * the strings must outlive it. */
static vial_req *mkreq(const char *const *lines)
{
    vial_req *rq = calloc(1, sizeof *rq);
    assert_non_null(rq);
    vial_exchange_init(rq, NULL, NULL);
    assert_non_null(vial_req_state_attach(rq, NULL));
    for (unsigned i = 0; lines && lines[i]; i++) {
        const char *l = lines[i], *colon = strchr(l, ':');
        assert_non_null(colon);
        const char *v = colon + 1, *e = l + strlen(l);
        while (*v == ' ')
            v++;
        while (e > v && e[-1] == ' ')
            e--;
        vial_http_field *h = &rq->head.headers[rq->head.nheaders++];
        h->name.p = l;
        h->name.len = (size_t)(colon - l);
        h->value.p = v;
        h->value.len = (size_t)(e - v);
    }
    return rq;
}

static void freereq(vial_req *rq)
{
    vial_exchange_fini(rq);
    free(rq);
}

static vial_req *one(const char *header)
{
    static char line[20000];
    snprintf(line, sizeof line, "Cookie: %s", header);
    const char *lines[] = {line, NULL};
    return mkreq(lines);
}

static void test_no_header(void **state)
{
    (void)state;
    vial_req *rq = mkreq(NULL);
    assert_int_equal(vial_req_cookie_count(rq), 0);
    assert_null(vial_req_cookie(rq, "a"));
    const char *n, *v;
    assert_int_equal(vial_req_cookie_at(rq, 0, &n, &v), -ERANGE);
    freereq(rq);
}

static void test_simple(void **state)
{
    (void)state;
    vial_req *rq = one("a=1; b=two; c=3");
    assert_int_equal(vial_req_cookie_count(rq), 3);
    assert_string_equal(vial_req_cookie(rq, "a"), "1");
    assert_string_equal(vial_req_cookie(rq, "b"), "two");
    assert_string_equal(vial_req_cookie(rq, "c"), "3");
    assert_null(vial_req_cookie(rq, "d"));
    const char *n, *v;
    assert_int_equal(vial_req_cookie_at(rq, 1, &n, &v), 0);
    assert_string_equal(n, "b");
    assert_string_equal(v, "two");
    assert_int_equal(vial_req_cookie_at(rq, 3, &n, &v), -ERANGE);
    freereq(rq);
}

static void test_spaces_optional(void **state)
{
    (void)state;
    vial_req *rq = one("a=1;b=2;   c=3 ;\td=4\t; e = 5");
    assert_int_equal(vial_req_cookie_count(rq), 5);
    assert_string_equal(vial_req_cookie(rq, "a"), "1");
    assert_string_equal(vial_req_cookie(rq, "b"), "2");
    assert_string_equal(vial_req_cookie(rq, "c"), "3");
    assert_string_equal(vial_req_cookie(rq, "d"), "4");
    assert_string_equal(vial_req_cookie(rq, "e"), "5");
    freereq(rq);
}

static void test_split_at_first_equals(void **state)
{
    (void)state;
    vial_req *rq = one("token=abc==; expr=a=b=c");
    assert_string_equal(vial_req_cookie(rq, "token"), "abc==");
    assert_string_equal(vial_req_cookie(rq, "expr"), "a=b=c");
    freereq(rq);
}

static void test_quoted(void **state)
{
    (void)state;
    vial_req *rq = one("q=\"hello world\"; e=\"\"; half=\"x; one=\"");
    assert_string_equal(vial_req_cookie(rq, "q"), "hello world");
    assert_string_equal(vial_req_cookie(rq, "e"), "");
    /* not a quoted pair: a lone quote stays */
    assert_string_equal(vial_req_cookie(rq, "half"), "\"x");
    assert_string_equal(vial_req_cookie(rq, "one"), "\"");
    freereq(rq);
}

static void test_first_wins(void **state)
{
    (void)state;
    vial_req *rq = one("a=first; b=1; a=second; a=third");
    assert_int_equal(vial_req_cookie_count(rq), 2);
    assert_string_equal(vial_req_cookie(rq, "a"), "first");
    const char *n, *v;
    assert_int_equal(vial_req_cookie_at(rq, 0, &n, &v), 0);
    assert_string_equal(n, "a");
    assert_string_equal(v, "first");
    assert_int_equal(vial_req_cookie_at(rq, 1, &n, &v), 0);
    assert_string_equal(n, "b");
    freereq(rq);
}

static void test_empty_pieces_and_names(void **state)
{
    (void)state;
    vial_req *rq = one(";; a=1;  ; =nameless; ;b=;c");
    assert_int_equal(vial_req_cookie_count(rq), 3);
    assert_string_equal(vial_req_cookie(rq, "a"), "1");
    assert_string_equal(vial_req_cookie(rq, "b"), "");
    assert_string_equal(vial_req_cookie(rq, "c"), ""); /* no '=': empty value */
    assert_null(vial_req_cookie(rq, ""));
    freereq(rq);
}

static void test_no_decoding(void **state)
{
    (void)state;
    vial_req *rq = one("p=a%20b+c; u=caf\xc3\xa9");
    assert_string_equal(vial_req_cookie(rq, "p"), "a%20b+c");
    assert_string_equal(vial_req_cookie(rq, "u"), "caf\xc3\xa9");
    freereq(rq);
}

static void test_case_sensitive_names(void **state)
{
    (void)state;
    vial_req *rq = one("Session=A; session=b");
    assert_int_equal(vial_req_cookie_count(rq), 2);
    assert_string_equal(vial_req_cookie(rq, "Session"), "A");
    assert_string_equal(vial_req_cookie(rq, "session"), "b");
    freereq(rq);
}

static void test_several_cookie_fields(void **state)
{
    (void)state;
    const char *lines[] = {"Host: x", "Cookie: a=1; b=2", "Accept: */*", "cookie: b=3; c=4", NULL};
    vial_req *rq = mkreq(lines);
    assert_int_equal(vial_req_cookie_count(rq), 3);
    assert_string_equal(vial_req_cookie(rq, "a"), "1");
    assert_string_equal(vial_req_cookie(rq, "b"), "2");
    assert_string_equal(vial_req_cookie(rq, "c"), "4");
    freereq(rq);
}

static void test_empty_header(void **state)
{
    (void)state;
    vial_req *rq = one("");
    assert_int_equal(vial_req_cookie_count(rq), 0);
    freereq(rq);
}

static void test_many_cookies_indexed(void **state)
{
    (void)state;
    /* More than 16 pairs uses the hash index; check lookups and first-wins
     * through it, with repeated names interleaved. */
    static char hdr[16000];
    size_t o = 0;
    for (int i = 0; i < 600; i++)
        o += (size_t)snprintf(hdr + o, sizeof hdr - o, "%sk%d=v%d", i ? "; " : "", i % 400, i);
    vial_req *rq = one(hdr);
    assert_int_equal(vial_req_cookie_count(rq), 400);
    char name[16], want[16];
    for (int i = 0; i < 400; i++) {
        snprintf(name, sizeof name, "k%d", i);
        snprintf(want, sizeof want, "v%d", i);
        assert_string_equal(vial_req_cookie(rq, name), want);
    }
    const char *n, *v;
    assert_int_equal(vial_req_cookie_at(rq, 399, &n, &v), 0);
    assert_string_equal(n, "k399");
    assert_string_equal(v, "v399");
    freereq(rq);
}

static void test_cached(void **state)
{
    (void)state;
    vial_req *rq = one("a=1");
    const char *v1 = vial_req_cookie(rq, "a");
    const char *v2 = vial_req_cookie(rq, "a");
    assert_ptr_equal(v1, v2);
    freereq(rq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_header),
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_spaces_optional),
        cmocka_unit_test(test_split_at_first_equals),
        cmocka_unit_test(test_quoted),
        cmocka_unit_test(test_first_wins),
        cmocka_unit_test(test_empty_pieces_and_names),
        cmocka_unit_test(test_no_decoding),
        cmocka_unit_test(test_case_sensitive_names),
        cmocka_unit_test(test_several_cookie_fields),
        cmocka_unit_test(test_empty_header),
        cmocka_unit_test(test_many_cookies_indexed),
        cmocka_unit_test(test_cached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
