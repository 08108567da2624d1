/* Trusted proxies (app/proxy.c): CIDRs, addresses, X-Forwarded-For and
 * X-Forwarded-Proto; and the --listen entry splitter (http/listen.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "app/proxy.h"
#include "http/listen.h"

static int cidr(const char *s, vial_cidr *c)
{
    return vial_cidr_parse(s, strlen(s), c);
}

static void test_cidr_parse(void **st)
{
    (void)st;
    vial_cidr c;
    assert_int_equal(cidr("10.0.0.0/8", &c), 0);
    assert_int_equal(c.family, 4);
    assert_int_equal(c.bits, 8);
    assert_int_equal(c.addr[0], 10);
    assert_int_equal(cidr("127.0.0.1", &c), 0);
    assert_int_equal(c.bits, 32);
    assert_int_equal(cidr(" ::1/128 ", &c), 0);
    assert_int_equal(c.family, 6);
    assert_int_equal(c.bits, 128);
    assert_int_equal(cidr("2001:db8::/32", &c), 0);
    assert_int_equal(c.bits, 32);
    assert_int_equal(cidr("0.0.0.0/0", &c), 0);
    assert_int_equal(cidr("::/0", &c), 0);
    assert_int_equal(cidr("unix", &c), 0);
    assert_int_equal(c.family, 'u');
    /* IPv4-mapped IPv6 is IPv4, its prefix counted from bit 96 */
    assert_int_equal(cidr("::ffff:10.0.0.0/104", &c), 0);
    assert_int_equal(c.family, 4);
    assert_int_equal(c.bits, 8);

    static const char *const bad[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "::1/129", "10.0.0.1/8", "10.0.0.0/8x",
        "10.0.0.0/-1", "10.0.0", "1.2.3.4.5", "256.0.0.0", "unix/8", "fe80::1%eth0",
        "example.com", "10.0.0.0/0008", "::ffff:10.0.0.0/8", "2001:db8::1/32", "[::1]/128x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (cidr(bad[i], &c) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static int matches(const vial_proxies *p, const char *addr)
{
    vial_cidr a;
    assert_int_equal(vial_addr_parse(addr, strlen(addr), &a), 0);
    return vial_proxies_match(p, &a);
}

static void test_match(void **st)
{
    (void)st;
    vial_proxies p;
    assert_int_equal(vial_proxies_parse("10.0.0.0/8, 192.168.1.0/25,::1/128,2001:db8:8000::/33,unix", &p), 0);
    assert_int_equal(p.n, 5);
    assert_true(matches(&p, "10.255.1.2"));
    assert_true(matches(&p, "10.0.0.0"));
    assert_false(matches(&p, "11.0.0.1"));
    assert_true(matches(&p, "192.168.1.127"));
    assert_false(matches(&p, "192.168.1.128"));
    assert_true(matches(&p, "::1"));
    assert_true(matches(&p, "[::1]"));
    assert_false(matches(&p, "::2"));
    assert_true(matches(&p, "2001:db8:8000::5"));
    assert_true(matches(&p, "2001:db8:ffff::5"));
    assert_false(matches(&p, "2001:db8:7fff::5"));
    assert_true(matches(&p, "unix"));
    assert_true(matches(&p, "::ffff:10.1.2.3")); /* dual-stack socket's view of IPv4 */
    assert_false(matches(&p, "::ffff:11.1.2.3"));
    vial_proxies_free(&p);

    assert_int_equal(vial_proxies_parse("127.0.0.1", &p), 0);
    assert_false(matches(&p, "unix"));
    assert_false(matches(&p, "::1"));
    assert_false(matches(&p, "127.0.0.2"));
    vial_proxies_free(&p);

    assert_int_equal(vial_proxies_parse("10.0.0.0/8,bogus", &p), -EINVAL);
    assert_int_equal(p.n, 0);
    assert_int_equal(vial_proxies_parse(NULL, &p), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(vial_proxies_parse(" , ", &p), 0);
    assert_int_equal(p.n, 0);
    vial_proxies_free(&p);
}

/* The client X-Forwarded-For names behind a trusted peer, or "" for none. */
static const char *client(const vial_proxies *p, const char *xff)
{
    static char out[64];
    int found;
    vial_xff_client(p, xff, strlen(xff), out, sizeof out, &found);
    return found ? out : "";
}

static void test_xff(void **st)
{
    (void)st;
    vial_proxies p;
    assert_int_equal(vial_proxies_parse("10.0.0.0/8,::1", &p), 0);
    assert_string_equal(client(&p, "203.0.113.7"), "203.0.113.7");
    /* a client's own header is to the left of what proxies appended */
    assert_string_equal(client(&p, "1.1.1.1, 203.0.113.7"), "203.0.113.7");
    assert_string_equal(client(&p, "1.1.1.1, 203.0.113.7, 10.0.0.2"), "203.0.113.7");
    assert_string_equal(client(&p, "203.0.113.7,10.0.0.3,::1"), "203.0.113.7");
    /* every hop trusted: the leftmost */
    assert_string_equal(client(&p, "10.0.0.9, 10.0.0.2"), "10.0.0.9");
    /* normalised */
    assert_string_equal(client(&p, " 2001:DB8:0::1 "), "2001:db8::1");
    assert_string_equal(client(&p, "[2001:db8::1]"), "2001:db8::1");
    assert_string_equal(client(&p, "::ffff:203.0.113.9"), "203.0.113.9");
    /* garbage ends the walk at the hop right of it */
    assert_string_equal(client(&p, "<script>, 10.0.0.5"), "10.0.0.5");
    assert_string_equal(client(&p, "203.0.113.7, evil"), "");
    assert_string_equal(client(&p, "unix"), "");
    assert_string_equal(client(&p, "1.2.3.4:80"), "");
    /* empty hops are skipped */
    assert_string_equal(client(&p, ",, 203.0.113.7 ,"), "203.0.113.7");
    assert_string_equal(client(&p, ""), "");
    assert_string_equal(client(&p, " , "), "");
    vial_proxies_free(&p);
}

static void test_xfp(void **st)
{
    (void)st;
    assert_string_equal(vial_xfp_scheme("https", 5), "https");
    assert_string_equal(vial_xfp_scheme("HTTPS", 5), "https");
    assert_string_equal(vial_xfp_scheme("http", 4), "http");
    assert_string_equal(vial_xfp_scheme("http, https", 11), "https");
    assert_string_equal(vial_xfp_scheme("https , http ", 13), "http");
    assert_null(vial_xfp_scheme("ftp", 3));
    assert_null(vial_xfp_scheme("", 0));
    assert_null(vial_xfp_scheme("https,", 6));
    assert_null(vial_xfp_scheme("httpsx", 6));
}

static void split_ok(const char *item, const char *host, int port)
{
    char h[256];
    int p;
    assert_int_equal(vial_listen_split(item, strlen(item), 8080, h, sizeof h, &p), 0);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void test_listen_split(void **st)
{
    (void)st;
    split_ok("127.0.0.1:80", "127.0.0.1", 80);
    split_ok("localhost", "localhost", 8080);
    split_ok("[::1]:9000", "::1", 9000);
    split_ok("[::1]", "::1", 8080);
    split_ok("::1", "::1", 8080);
    split_ok("0.0.0.0:0", "0.0.0.0", 0);
    split_ok("unix:/run/app.sock", "unix:/run/app.sock", 8080);
    static const char *const bad[] = {"", "[::1", "[]:80", "[::1]80", "a:", "a:65536", "a:8x", ":80",
                                      "[::1]:", "unix:"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char h[256];
        int p;
        if (vial_listen_split(bad[i], strlen(bad[i]), 8080, h, sizeof h, &p) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse), cmocka_unit_test(test_match), cmocka_unit_test(test_xff),
        cmocka_unit_test(test_xfp), cmocka_unit_test(test_listen_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
