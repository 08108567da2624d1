/* Micro-benchmark of runtime/numfmt: what output no locale can change costs.
 *   build/bench/numfmt_bench            (under the current locale)
 *   LOCPATH=$(scripts/mklocale.sh) LC_ALL=de_DE.UTF-8 build/bench/numfmt_bench
 * Prints ns per call for the C-locale switch alone (uselocale there and
 * back), vial_fmt_double against the %.17g snprintf it replaces (which is
 * wrong under a comma locale, and not shortest), vial_parse_double against
 * strtod, and vial_http_date against gmtime_r + strftime. */
#include "runtime/numfmt.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 1000000

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void)
{
    setlocale(LC_ALL, "");
    static double vals[1024];
    for (int i = 0; i < 1024; i++) /* short decimals, thirds, big, random */
        vals[i] = i % 4 == 0 ? i * 0.25 : i % 4 == 1 ? 1.0 / (i + 3) : i % 4 == 2 ? i * 1e10 + 0.1
                                                                                 : (double)rand() / RAND_MAX;
    char buf[64];
    volatile size_t sink = 0;
    double t[8];
    locale_t c = vial_c_locale();
    t[0] = now_ns();
    for (int i = 0; i < N; i++) {
        locale_t o = uselocale(c);
        uselocale(o);
        sink += (size_t)o & 1;
    }
    t[1] = now_ns();
    for (int i = 0; i < N; i++)
        sink += (size_t)snprintf(buf, sizeof buf, "%.17g", vals[i & 1023]);
    t[2] = now_ns();
    for (int i = 0; i < N; i++)
        sink += vial_fmt_double(buf, vals[i & 1023]);
    t[3] = now_ns();
    for (int i = 0; i < N; i++)
        sink += (size_t)strtod("3.141592653589793", NULL);
    t[4] = now_ns();
    for (int i = 0; i < N; i++)
        sink += (size_t)vial_parse_double("3.141592653589793", NULL);
    t[5] = now_ns();
    for (int i = 0; i < N; i++) {
        struct tm tm;
        time_t tt = 1700000000 + i;
        gmtime_r(&tt, &tm);
        sink += strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    }
    t[6] = now_ns();
    for (int i = 0; i < N; i++)
        sink += vial_http_date(1700000000 + i, buf);
    t[7] = now_ns();
    printf("locale %s\n", setlocale(LC_NUMERIC, NULL));
    printf("uselocale(C) and back      %6.1f ns\n", (t[1] - t[0]) / N);
    printf("snprintf %%.17g             %6.1f ns\n", (t[2] - t[1]) / N);
    printf("vial_fmt_double            %6.1f ns\n", (t[3] - t[2]) / N);
    printf("strtod                     %6.1f ns\n", (t[4] - t[3]) / N);
    printf("vial_parse_double          %6.1f ns\n", (t[5] - t[4]) / N);
    printf("gmtime_r + strftime        %6.1f ns\n", (t[6] - t[5]) / N);
    printf("vial_http_date             %6.1f ns\n", (t[7] - t[6]) / N);
    return sink == 42; /* keeps the loops */
}
