/* runtime/numfmt: integers, shortest round-trip doubles in Python's repr
 * layout, HTTP dates, and that none of it follows the process locale (run
 * once in the C locale and once under de_DE.UTF-8, whose decimal point is a
 * comma, when that locale can be made). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/numfmt.h"
#include "de_locale.h"

static void fmt_is(double v, const char *want)
{
    char buf[VIAL_FMT_DOUBLE_SIZE];
    size_t n = vial_fmt_double(buf, v);
    if (strcmp(buf, want) || n != strlen(want))
        fail_msg("vial_fmt_double(%a) = \"%s\", want \"%s\"", v, buf, want);
}

static void check_doubles(void)
{
    fmt_is(3.25, "3.25");
    fmt_is(0.1, "0.1");
    fmt_is(1.0, "1.0");
    fmt_is(-1.0, "-1.0");
    fmt_is(0.0, "0.0");
    fmt_is(-0.0, "-0.0");
    fmt_is(100.0, "100.0");
    fmt_is(1e300, "1e+300");
    fmt_is(1e16, "1e+16");
    fmt_is(1234567890123456.0, "1234567890123456.0");
    fmt_is(1.5e16, "1.5e+16");
    fmt_is(0.0001, "0.0001");
    fmt_is(0.00001, "1e-05");
    fmt_is(1.5e-7, "1.5e-07");
    fmt_is(0.1 + 0.2, "0.30000000000000004");
    fmt_is(3.141592653589793, "3.141592653589793");
    fmt_is(123456.789, "123456.789");
    fmt_is(5e-324, "5e-324");
    fmt_is(2.2250738585072014e-308, "2.2250738585072014e-308");
    fmt_is(1.7976931348623157e308, "1.7976931348623157e+308");
    fmt_is(9007199254740993.0, "9007199254740992.0");
    char buf[VIAL_FMT_DOUBLE_SIZE];
    assert_int_equal(vial_fmt_double(buf, NAN), 0);
    assert_int_equal(vial_fmt_double(buf, INFINITY), 0);
    assert_int_equal(vial_fmt_double(buf, -INFINITY), 0);
    assert_string_equal(buf, "");
}

/* Every output reads back as the same double (checked through the helper's
 * own parser, itself locale-free). */
static void check_round_trips(void)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    char buf[VIAL_FMT_DOUBLE_SIZE];
    for (int i = 0; i < 20000; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double v;
        memcpy(&v, &s, sizeof v);
        if (!isfinite(v))
            continue;
        assert_true(vial_fmt_double(buf, v) > 0);
        assert_null(strchr(buf, ','));
        char *end;
        double back = vial_parse_double(buf, &end);
        assert_int_equal(*end, 0);
        if (memcmp(&back, &v, sizeof v))
            fail_msg("%s does not read back as %a", buf, v);
    }
}

static void check_parse(void)
{
    char *end;
    assert_true(vial_parse_double("3.25", &end) == 3.25);
    assert_int_equal(*end, 0);
    /* a comma is never a decimal point */
    assert_true(vial_parse_double("3,25", &end) == 3.0);
    assert_string_equal(end, ",25");
}

static int vfmt(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vial_vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

static void check_printf(void)
{
    char buf[64];
    assert_int_equal(vfmt(buf, sizeof buf, "%.2f|%g|%s|%d", 3.25, 0.5, "x", 7), 12);
    assert_string_equal(buf, "3.25|0.5|x|7");
}

static void check_ints(void)
{
    char buf[VIAL_FMT_INT_SIZE];
    assert_int_equal(vial_fmt_i64(buf, 0), 1);
    assert_string_equal(buf, "0");
    assert_int_equal(vial_fmt_i64(buf, -42), 3);
    assert_string_equal(buf, "-42");
    assert_int_equal(vial_fmt_i64(buf, INT64_MIN), 20);
    assert_string_equal(buf, "-9223372036854775808");
    vial_fmt_i64(buf, INT64_MAX);
    assert_string_equal(buf, "9223372036854775807");
    assert_int_equal(vial_fmt_u64(buf, UINT64_MAX), 20);
    assert_string_equal(buf, "18446744073709551615");
    vial_fmt_u64(buf, 1234567);
    assert_string_equal(buf, "1234567"); /* no thousands grouping */
}

static void date_is(int64_t t, const char *want)
{
    char buf[VIAL_HTTP_DATE_SIZE];
    assert_int_equal(vial_http_date(t, buf), 29);
    assert_string_equal(buf, want);
}

static void check_dates(void)
{
    date_is(0, "Thu, 01 Jan 1970 00:00:00 GMT");
    date_is(784111777, "Sun, 06 Nov 1994 08:49:37 GMT"); /* RFC 9110's example */
    date_is(951782400, "Tue, 29 Feb 2000 00:00:00 GMT");
    date_is(-1, "Wed, 31 Dec 1969 23:59:59 GMT");
    date_is(253402300799LL, "Fri, 31 Dec 9999 23:59:59 GMT");
    date_is(INT64_MAX, "Fri, 31 Dec 9999 23:59:59 GMT");        /* clamped */
    date_is(INT64_MIN, "Sat, 01 Jan 0000 00:00:00 GMT");        /* clamped */
    /* the same as gmtime_r over a stretch of days, each weekday and month */
    static const char *wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    for (int64_t t = -2208988800LL; t < 4102444800LL; t += 86400 * 13 + 3607) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        char buf[VIAL_HTTP_DATE_SIZE];
        vial_http_date(t, buf);
        assert_memory_equal(buf, wd[tm.tm_wday], 3);
        assert_int_equal(atoi(buf + 5), tm.tm_mday);
        assert_int_equal(atoi(buf + 12), tm.tm_year + 1900);
        int64_t days = vial_days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday);
        assert_true(days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec == t);
    }
}

/* The log lines' dates: ISO 8601 (vial's own lines) and the access log's
 * combined-format date, checked against gmtime_r over a stretch of days. */
static void check_log_dates(void)
{
    char iso[VIAL_ISO8601_SIZE], clf[VIAL_CLF_DATE_SIZE];
    assert_int_equal(vial_iso8601_ms(0, iso), 24);
    assert_string_equal(iso, "1970-01-01T00:00:00.000Z");
    assert_int_equal(vial_iso8601_ms(1796538140123LL, iso), 24);
    assert_string_equal(iso, "2026-12-06T06:22:20.123Z");
    vial_iso8601_ms(951782399999LL, iso);
    assert_string_equal(iso, "2000-02-28T23:59:59.999Z");
    assert_int_equal(vial_clf_date(1796538140, clf), 26);
    assert_string_equal(clf, "06/Dec/2026:06:22:20 +0000");
    for (int64_t t = 0; t < 4102444800LL; t += 86400 * 17 + 3607) {
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        char want[64];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.007Z", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        vial_iso8601_ms(t * 1000 + 7, iso);
        assert_string_equal(iso, want);
        vial_clf_date(t, clf);
        assert_int_equal(atoi(clf), tm.tm_mday);
        assert_int_equal(atoi(clf + 7), tm.tm_year + 1900);
    }
}

static void test_c_locale(void **state)
{
    (void)state;
    check_ints();
    check_doubles();
    check_round_trips();
    check_parse();
    check_dates();
    check_log_dates();
    check_printf();
}

static void test_comma_locale(void **state)
{
    (void)state;
    if (!vial_test_german_locale()) {
        fprintf(stderr, "de_DE.UTF-8 unavailable (see scripts/mklocale.sh): skipped\n");
        skip();
    }
    /* the locale really is comma-decimal, or this test proves nothing */
    char probe[16];
    snprintf(probe, sizeof probe, "%.2f", 3.25);
    assert_string_equal(probe, "3,25");
    check_ints();
    check_doubles();
    check_round_trips();
    check_parse();
    check_dates();
    check_printf();
    /* and the thread's locale is given back */
    snprintf(probe, sizeof probe, "%.2f", 3.25);
    assert_string_equal(probe, "3,25");
    setlocale(LC_ALL, "C");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c_locale),
        cmocka_unit_test(test_comma_locale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
