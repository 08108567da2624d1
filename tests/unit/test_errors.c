/* Result codes (include/vial.h "results"): every code vial defines is
 * distinct, outside the errno range, and named by vial_strerror. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>
#include <vial/http_client.h>
#include <vial/pg.h>
#include <vial/redis.h>
#include <vial/sqlite.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>

/* Every negative code the public headers define. */
static const struct {
    int code;
    const char *name;
} codes[] = {
    {VIAL_FAILED, "VIAL_FAILED"},
    {VIAL_ETMPL_NOTFOUND, "VIAL_ETMPL_NOTFOUND"},
    {VIAL_ETMPL_SYNTAX, "VIAL_ETMPL_SYNTAX"},
    {VIAL_ETMPL_RENDER, "VIAL_ETMPL_RENDER"},
    {VIAL_WS_CLOSED, "VIAL_WS_CLOSED"},
    {VIAL_REDIS_EREPLY, "VIAL_REDIS_EREPLY"},
    {VIAL_PG_ESQL, "VIAL_PG_ESQL"},
};
#define NCODES (sizeof codes / sizeof codes[0])

static void test_codes_distinct_and_named(void **s)
{
    for (size_t i = 0; i < NCODES; i++) {
        assert_true(codes[i].code < 0);
        assert_true(codes[i].code <= -100000); /* never a negated errno */
        assert_int_equal(vial_http_status_of(codes[i].code), 0);
        for (size_t j = i + 1; j < NCODES; j++)
            if (codes[i].code == codes[j].code)
                fail_msg("%s and %s share %d", codes[i].name, codes[j].name, codes[i].code);
        const char *t = vial_strerror(codes[i].code);
        if (strncmp(t, codes[i].name, strlen(codes[i].name)) || t[strlen(codes[i].name)] != ':')
            fail_msg("%s named \"%s\"", codes[i].name, t);
    }
    /* the module ranges of the results section */
    assert_int_equal(VIAL_FAILED / 1000, -100);
    assert_int_equal(VIAL_WS_CLOSED / 1000, -101);
    assert_int_equal(VIAL_REDIS_EREPLY / 1000, -102);
    assert_int_equal(VIAL_PG_ESQL / 1000, -103);
}

static void test_http_codes(void **s)
{
    assert_int_equal(VIAL_EHTTP(404), -200404);
    assert_int_equal(vial_http_status_of(VIAL_EHTTP(404)), 404);
    assert_int_equal(vial_http_status_of(VIAL_EHTTP(100)), 100);
    assert_int_equal(vial_http_status_of(VIAL_EHTTP(999)), 999);
    assert_int_equal(vial_http_status_of(VIAL_EHTTP(99)), 0);
    assert_int_equal(vial_http_status_of(VIAL_EHTTP(1000)), 0);
    assert_int_equal(vial_http_status_of(0), 0);
    assert_int_equal(vial_http_status_of(404), 0); /* a positive status is not a code */
    assert_int_equal(vial_http_status_of(-ENOENT), 0);
    assert_string_equal(vial_strerror(VIAL_EHTTP(404)), "HTTP 404 Not Found");
    assert_string_equal(vial_strerror(VIAL_EHTTP(413)), "HTTP 413 Content Too Large");
    assert_int_equal(strncmp(vial_strerror(VIAL_EHTTP(599)), "HTTP 599", 8), 0);
    /* vial_abort's result is the code */
    for (int st = 400; st < 600; st += 7) {
        int c = VIAL_EHTTP(st);
        for (size_t i = 0; i < NCODES; i++)
            assert_int_not_equal(c, codes[i].code);
        assert_true(c < -4095);
    }
}

static void test_errno_and_unknown(void **s)
{
    assert_string_equal(vial_strerror(-ENOENT), "ENOENT: No such file or directory");
    assert_string_equal(vial_strerror(-ETIMEDOUT), "ETIMEDOUT: Connection timed out");
    assert_string_equal(vial_strerror(0), "success");
    assert_int_equal(strncmp(vial_strerror(VIAL_DONE), "VIAL_DONE: ", 11), 0);
    assert_string_equal(vial_strerror(-4000), "unknown error -4000");
    assert_string_equal(vial_strerror(-123456), "unknown error -123456");
    assert_string_equal(vial_strerror(7), "unknown error 7");
    assert_non_null(vial_strerror(INT32_MIN));
}

static void *hammer(void *arg)
{
    intptr_t ok = 1;
    for (int i = 0; i < 20000; i++) {
        const char *t = vial_strerror(i & 1 ? -EINVAL : VIAL_EHTTP(404 + (i & 2)));
        if (i & 1 ? strcmp(t, "EINVAL: Invalid argument") : strncmp(t, "HTTP 40", 7))
            ok = 0;
    }
    return (void *)ok;
}

static void test_thread_safe(void **s)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        assert_true((intptr_t)ok);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_distinct_and_named),
        cmocka_unit_test(test_http_codes),
        cmocka_unit_test(test_errno_and_unknown),
        cmocka_unit_test(test_thread_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
