#include "app/utf8.h"

#include <string.h>

size_t vial_utf8_seq(const unsigned char *s, size_t n, size_t *skip)
{
    size_t dummy;
    if (!skip)
        skip = &dummy;
    unsigned char b = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        lo = b == 0xE0 ? 0xA0 : 0x80; /* E0 80..9F: overlong */
        hi = b == 0xED ? 0x9F : 0xBF; /* ED A0..BF: surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        lo = b == 0xF0 ? 0x90 : 0x80; /* F0 80..8F: overlong */
        hi = b == 0xF4 ? 0x8F : 0xBF; /* F4 90..: above U+10FFFF */
    } else {
        *skip = 1; /* 80..C1 (continuation, overlong lead), F5..FF */
        return 0;
    }
    for (size_t k = 1; k < need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) {
            *skip = k;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need;
}

char *vial_utf8_repair(vial_arena *a, const char *s, size_t n, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, skip;
    while (i < n) {
        size_t v = vial_utf8_seq(u + i, n - i, &skip);
        if (!v)
            break;
        i += v;
    }
    if (i == n) {
        if (out_len)
            *out_len = n;
        return vial_arena_strndup(a, s, n);
    }
    /* each bad subpart (>= 1 byte) grows to at most 3 bytes */
    char *out = vial_arena_alloc(a, n * 3 + 1);
    if (!out)
        return NULL;
    memcpy(out, s, i);
    size_t o = i;
    while (i < n) {
        size_t v = vial_utf8_seq(u + i, n - i, &skip);
        if (v) {
            memcpy(out + o, s + i, v);
            o += v;
            i += v;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += skip;
        }
    }
    out[o] = 0;
    if (out_len)
        *out_len = o;
    return out;
}
