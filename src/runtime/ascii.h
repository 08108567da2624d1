/* ASCII case-insensitive comparison for protocol tokens (header names,
 * media types, Redis and SQLite keywords). Not the C library's strcasecmp:
 * glibc's follows LC_CTYPE, and under tr_TR.UTF-8 "IF-MODIFIED-SINCE" and
 * "if-modified-since" differ (its 'I' does not lower to 'i'). */
#ifndef VIAL_RUNTIME_ASCII_H
#define VIAL_RUNTIME_ASCII_H

#include <stddef.h>

static inline unsigned char vial_ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* strncasecmp / strcasecmp for ASCII letters only, whatever the locale. */
static inline int vial_ascii_ncasecmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = vial_ascii_lower((unsigned char)a[i]), y = vial_ascii_lower((unsigned char)b[i]);
        if (x != y || !x)
            return x - y;
    }
    return 0;
}

static inline int vial_ascii_casecmp(const char *a, const char *b)
{
    return vial_ascii_ncasecmp(a, b, (size_t)-1);
}

#endif
