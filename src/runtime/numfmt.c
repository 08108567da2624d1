/* Locale-free numbers and dates (see numfmt.h for why). */
#include "runtime/numfmt.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- integers ------------------------------------------------------------------ */

static size_t digits(char *out, uint64_t v)
{
    char tmp[VIAL_FMT_INT_SIZE];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

size_t vial_fmt_u64(char out[VIAL_FMT_INT_SIZE], uint64_t v)
{
    return digits(out, v);
}

size_t vial_fmt_i64(char out[VIAL_FMT_INT_SIZE], int64_t v)
{
    if (v >= 0)
        return digits(out, (uint64_t)v);
    out[0] = '-';
    /* 0 - (uint64_t)v: INT64_MIN has no positive int64 */
    return 1 + digits(out + 1, 0 - (uint64_t)v);
}

/* --- the C locale ------------------------------------------------------------------ */

static locale_t c_loc;
static pthread_once_t c_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

locale_t vial_c_locale(void)
{
    pthread_once(&c_once, make_c_locale);
    return c_loc;
}

int vial_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    locale_t c = vial_c_locale(), old = c ? uselocale(c) : (locale_t)0;
    int n = vsnprintf(buf, size, fmt, ap);
    if (c)
        uselocale(old);
    return n;
}

double vial_parse_double(const char *s, char **end)
{
    locale_t c = vial_c_locale();
    return c ? strtod_l(s, end, c) : strtod(s, end);
}

/* --- doubles ------------------------------------------------------------------------ */

/* Lays out sign, significant digits dig[0..nd) and decimal exponent x (the
 * value is d.ddd × 10^x) the way Python's repr does. */
static size_t layout(char *out, int neg, const char *dig, size_t nd, int x)
{
    char *p = out;
    if (neg)
        *p++ = '-';
    if (x >= -4 && x < 16) {
        if (x < 0) {
            *p++ = '0';
            *p++ = '.';
            for (int i = -1; i > x; i--)
                *p++ = '0';
            memcpy(p, dig, nd);
            p += nd;
        } else {
            size_t ip = (size_t)x + 1; /* digits before the point */
            for (size_t i = 0; i < ip; i++)
                *p++ = i < nd ? dig[i] : '0';
            *p++ = '.';
            if (nd > ip) {
                memcpy(p, dig + ip, nd - ip);
                p += nd - ip;
            } else {
                *p++ = '0';
            }
        }
    } else {
        *p++ = dig[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, dig + 1, nd - 1);
            p += nd - 1;
        }
        *p++ = 'e';
        *p++ = x < 0 ? '-' : '+';
        unsigned ax = (unsigned)(x < 0 ? -x : x);
        if (ax >= 100)
            *p++ = (char)('0' + ax / 100);
        *p++ = (char)('0' + ax / 10 % 10);
        *p++ = (char)('0' + ax % 10);
    }
    *p = 0;
    return (size_t)(p - out);
}

size_t vial_fmt_double(char out[VIAL_FMT_DOUBLE_SIZE], double v)
{
    out[0] = 0;
    if (!isfinite(v))
        return 0;
    /* A normal double has 15.95 decimal digits of precision: a shortest text
     * of 15 digits or fewer is exactly what %.14e gives once its trailing
     * zeros go, so only 15, 16 and 17 digits need trying. Subnormals have
     * fewer bits, so they try every length. */
    int lo = v != 0 && fabs(v) < DBL_MIN ? 1 : 15;
    char e[40];
    locale_t c = vial_c_locale(), old = c ? uselocale(c) : (locale_t)0;
    for (int prec = lo;; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (prec == 17 || strtod(e, NULL) == v)
            break;
    }
    if (c)
        uselocale(old);
    /* e is "[-]d[.ddd]e±XX" */
    const char *p = e;
    int neg = *p == '-';
    p += neg;
    char dig[20];
    size_t nd = 0;
    for (; *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            dig[nd++] = *p;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    p++;
    int xneg = *p == '-';
    int x = 0;
    for (p++; *p; p++)
        x = x * 10 + (*p - '0');
    return layout(out, neg, dig, nd, xneg ? -x : x);
}

/* --- dates ------------------------------------------------------------------------- */

/* Gregorian calendar arithmetic on 400-year cycles (146097 days), counting
 * years from March so that the leap day ends the year. */
int64_t vial_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t cycle = (y >= 0 ? y : y - 399) / 400;
    int64_t yoc = y - cycle * 400;                          /* 0..399 */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* from March 1 */
    int64_t doc = yoc * 365 + yoc / 4 - yoc / 100 + doy;
    return cycle * 146097 + doc - 719468; /* 719468: 0000-03-01 .. 1970-01-01 */
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t cycle = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doc = z - cycle * 146097;                                 /* 0..146096 */
    int64_t yoc = (doc - doc / 1460 + doc / 36524 - doc / 146096) / 365; /* 0..399 */
    int64_t doy = doc - (365 * yoc + yoc / 4 - yoc / 100);            /* 0..365 */
    int64_t mp = (5 * doy + 2) / 153;                                 /* 0 = March */
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoc + cycle * 400 + (*m <= 2);
}

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static char *two(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}


/* "HH:MM:SS" for sec seconds into the day. */
static char *hms(char *p, int64_t sec)
{
    p = two(p, (unsigned)(sec / 3600));
    *p++ = ':';
    p = two(p, (unsigned)(sec / 60 % 60));
    *p++ = ':';
    return two(p, (unsigned)(sec % 60));
}

size_t vial_http_date(int64_t t, char out[VIAL_HTTP_DATE_SIZE])
{
    /* Four year digits: clamp to 0000-01-01 .. 9999-12-31 23:59:59, so a
     * huge Expires stays far in the future instead of wrapping. */
    if (t < -62167219200LL)
        t = -62167219200LL;
    if (t > 253402300799LL)
        t = 253402300799LL;
    int64_t days = (t >= 0 ? t : t - 86399) / 86400;
    int64_t sec = t - days * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    int64_t wd = (days % 7 + 11) % 7; /* 1970-01-01 was a Thursday (4) */
    char *p = out;
    memcpy(p, wdays[wd], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = two(p, d);
    *p++ = ' ';
    memcpy(p, months[m - 1], 3);
    p += 3;
    *p++ = ' ';
    p = two(p, (unsigned)(y / 100));
    p = two(p, (unsigned)(y % 100));
    *p++ = ' ';
    p = hms(p, sec);
    memcpy(p, " GMT", 5);
    return (size_t)(p + 4 - out);
}

size_t vial_iso8601_ms(int64_t ms, char out[VIAL_ISO8601_SIZE])
{
    int64_t t = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    unsigned frac = (unsigned)(ms - t * 1000);
    if (t < 0)
        t = 0, frac = 0;
    if (t > 253402300799LL)
        t = 253402300799LL;
    int64_t days = t / 86400, sec = t % 86400, y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char *p = out;
    p = two(p, (unsigned)(y / 100));
    p = two(p, (unsigned)(y % 100));
    *p++ = '-';
    p = two(p, m);
    *p++ = '-';
    p = two(p, d);
    *p++ = 'T';
    p = hms(p, sec);
    *p++ = '.';
    *p++ = (char)('0' + frac / 100);
    p = two(p, frac % 100);
    *p++ = 'Z';
    *p = 0;
    return (size_t)(p - out);
}

size_t vial_clf_date(int64_t t, char out[VIAL_CLF_DATE_SIZE])
{
    if (t < 0)
        t = 0;
    if (t > 253402300799LL)
        t = 253402300799LL;
    int64_t days = t / 86400, sec = t % 86400, y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char *p = out;
    p = two(p, d);
    *p++ = '/';
    memcpy(p, months[m - 1], 3);
    p += 3;
    *p++ = '/';
    p = two(p, (unsigned)(y / 100));
    p = two(p, (unsigned)(y % 100));
    *p++ = ':';
    p = hms(p, sec);
    memcpy(p, " +0000", 6);
    p += 6;
    *p = 0;
    return (size_t)(p - out);
}
