/* Numbers and dates that no process setting can change.
 *
 * An application may call setlocale(LC_ALL, "") (under LC_ALL=de_DE.UTF-8
 * printf writes "3,25" and strftime "So, 06 Dez"), yet what vial writes into
 * HTTP heads, JSON and database protocols must be the same bytes everywhere.
 * Every layer formats numbers and dates through here. Integers and dates are
 * written by hand; doubles go through snprintf/strtod with the thread
 * switched to the C locale for the call (uselocale: per thread, nothing
 * global is touched). */
#ifndef VIAL_RUNTIME_NUMFMT_H
#define VIAL_RUNTIME_NUMFMT_H

#include <locale.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* "-9223372036854775808" plus NUL. */
#define VIAL_FMT_INT_SIZE 21
/* Longest double: "-2.2250738585072014e-308" plus NUL, with room to spare. */
#define VIAL_FMT_DOUBLE_SIZE 32
/* "Sun, 06 Nov 1994 08:49:37 GMT" plus NUL. */
#define VIAL_HTTP_DATE_SIZE 30

/* Decimal digits of v; returns the length (NUL-terminated). */
size_t vial_fmt_u64(char out[VIAL_FMT_INT_SIZE], uint64_t v);
size_t vial_fmt_i64(char out[VIAL_FMT_INT_SIZE], int64_t v);

/* The shortest text that reads back as exactly v, laid out as Python's
 * repr(float) does (and so Flask's jsonify): "3.25", "0.1", "1.0" (an
 * integral value keeps its ".0"), "1e+300", "1e-05", "-0.0"; plain digits for
 * decimal exponents -4..15, d.ddde±XX otherwise. Returns the length, or 0 for
 * NaN and infinities (out is then ""), which have no JSON or SQL literal. */
size_t vial_fmt_double(char out[VIAL_FMT_DOUBLE_SIZE], double v);

/* strtod with '.' as the decimal point whatever the locale says. */
double vial_parse_double(const char *s, char **end);

/* vsnprintf in the C locale: what vial's printf-style APIs (vial_text,
 * vial_sprintf, vial_stream_printf) format with, so "%.2f" is "3.25" as in
 * Python's f-strings, whatever the process locale. */
int vial_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* The C locale as a locale_t, for code vial does not own that formats with
 * printf (hiredis's %f): `locale_t old = uselocale(vial_c_locale()); ...;
 * uselocale(old);`. Never NULL after the first call succeeds; NULL only when
 * the C library cannot create it (then callers fall back to the global
 * locale). */
locale_t vial_c_locale(void);

/* Formats Unix time t as an IMF-fixdate (RFC 9110 §5.6.7, English names,
 * GMT); years are clamped to 0000..9999. Returns its length (29). */
size_t vial_http_date(int64_t t, char out[VIAL_HTTP_DATE_SIZE]);

/* "2026-12-06T06:22:20.123Z": Unix time in milliseconds as UTC ISO 8601,
 * for log lines. Returns its length (24). */
#define VIAL_ISO8601_SIZE 25
size_t vial_iso8601_ms(int64_t ms, char out[VIAL_ISO8601_SIZE]);

/* "06/Dec/2026:06:22:20 +0000": the access log's combined-format date.
 * Returns its length (26). */
#define VIAL_CLF_DATE_SIZE 27
size_t vial_clf_date(int64_t t, char out[VIAL_CLF_DATE_SIZE]);

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12): timegm
 * without the C library's time-zone lock and shared cache. */
int64_t vial_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif
