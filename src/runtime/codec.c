#include "runtime/codec.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

const char vial_hex_upper[17] = "0123456789ABCDEF";
const char vial_hex_lower[17] = "0123456789abcdef";

void vial_hex_encode(char *out, const void *in, size_t n)
{
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = vial_hex_lower[p[i] >> 4];
        out[2 * i + 1] = vial_hex_lower[p[i] & 15];
    }
}

const uint8_t vial_hex_table[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7,
    ['7'] = 8, ['8'] = 9, ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13,
    ['D'] = 14, ['E'] = 15, ['F'] = 16, ['a'] = 11, ['b'] = 12, ['c'] = 13,
    ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* --- percent-encoding ------------------------------------------------------------ */

ssize_t vial_pct_decode(char *out, const char *in, size_t n, unsigned flags)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '%') {
            int h = i + 2 < n ? vial_hex_val((unsigned char)in[i + 1]) : -1;
            int l = h >= 0 ? vial_hex_val((unsigned char)in[i + 2]) : -1;
            if (l >= 0) {
                if ((flags & VIAL_PCT_NO_NUL) && (h | l) == 0)
                    return -1;
                out[o++] = (char)(h << 4 | l);
                i += 2;
                continue;
            }
            if (flags & VIAL_PCT_STRICT)
                return -1;
        } else if (c == '+' && (flags & VIAL_PCT_PLUS)) {
            c = ' ';
        }
        out[o++] = c;
    }
    return (ssize_t)o;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

size_t vial_pct_encode(char *out, const char *in, size_t n, const char *safe, unsigned flags)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (is_unreserved(c) || (c && safe && strchr(safe, c))) {
            if (out)
                out[o] = (char)c;
            o++;
        } else if (c == ' ' && (flags & VIAL_PCT_PLUS)) {
            if (out)
                out[o] = '+';
            o++;
        } else {
            if (out) {
                out[o] = '%';
                out[o + 1] = vial_hex_upper[c >> 4];
                out[o + 2] = vial_hex_upper[c & 15];
            }
            o += 3;
        }
    }
    return o;
}

/* --- base64 ---------------------------------------------------------------------- */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t vial_base64_len(size_t n, unsigned flags)
{
    if (flags & VIAL_B64_URL)
        return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    return (n + 2) / 3 * 4;
}

size_t vial_base64_encode(char *out, const void *in_, size_t n, unsigned flags)
{
    const unsigned char *in = in_;
    const char *a = (flags & VIAL_B64_URL) ? b64_url : b64_std;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i) {
        uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (n - i == 2)
            out[o++] = a[(v >> 6) & 63];
        if (!(flags & VIAL_B64_URL)) {
            if (n - i == 1)
                out[o++] = '=';
            out[o++] = '=';
        }
    }
    out[o] = 0;
    return o;
}

static int b64_val(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

ssize_t vial_base64_decode(void *out_, const char *in, size_t n, unsigned flags)
{
    unsigned char *out = out_;
    int url = (flags & VIAL_B64_URL) != 0;
    if (!url) {
        if (n % 4)
            return -1;
        /* up to two '=' at the very end, and nothing after them */
        if (n && in[n - 1] == '=')
            n--;
        if (n && in[n - 1] == '=' && n % 4 == 3)
            n--;
    }
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)in[i], url);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc && (flags & VIAL_B64_CANONICAL)) /* leftover bits the encoder writes as 0 */
        return -1;
    return (ssize_t)o;
}

/* --- HTML escaping ------------------------------------------------------------------ */

/* Entity index + 1 per byte; 0 for bytes that stay. */
static const uint8_t html_tab[256] = {['&'] = 1, ['<'] = 2, ['>'] = 3, ['"'] = 4, ['\''] = 5};
static const char *const html_rep[6] = {NULL, "&amp;", "&lt;", "&gt;", "&#34;", "&#39;"};
static const uint8_t html_rlen[6] = {0, 5, 4, 4, 5, 5};

size_t vial_html_find(const char *s, size_t i, size_t n)
{
#ifdef __SSE2__
    while (i + 16 <= n) {
        __m128i w = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8('&')), _mm_cmpeq_epi8(w, _mm_set1_epi8('<'))),
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8('>')), _mm_cmpeq_epi8(w, _mm_set1_epi8('"'))),
                         _mm_cmpeq_epi8(w, _mm_set1_epi8('\''))));
        int bits = _mm_movemask_epi8(m);
        if (bits)
            return i + (size_t)__builtin_ctz((unsigned)bits);
        i += 16;
    }
#endif
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        /* SWAR: a byte of w equal to c turns into 0x80 in HAS(c) */
#define HAS(c) (((w ^ (0x0101010101010101ull * (c))) - 0x0101010101010101ull) & \
                ~(w ^ (0x0101010101010101ull * (c))) & 0x8080808080808080ull)
        if (HAS('&') | HAS('<') | HAS('>') | HAS('"') | HAS('\''))
            break;
#undef HAS
        i += 8;
    }
    for (; i < n; i++)
        if (html_tab[(unsigned char)s[i]])
            return i;
    return n;
}

const char *vial_html_entity(unsigned char c, size_t *len)
{
    *len = html_rlen[html_tab[c]];
    return html_rep[html_tab[c]];
}

size_t vial_html_escaped_len(const char *s, size_t n)
{
    size_t len = n;
    for (size_t i = vial_html_find(s, 0, n); i < n; i = vial_html_find(s, i + 1, n))
        len += html_rlen[html_tab[(unsigned char)s[i]]] - 1u;
    return len;
}

size_t vial_html_escape_to(char *out, const char *s, size_t n)
{
    size_t o = 0, start = 0;
    for (size_t i = vial_html_find(s, 0, n); i < n; i = vial_html_find(s, i + 1, n)) {
        unsigned k = html_tab[(unsigned char)s[i]];
        memcpy(out + o, s + start, i - start);
        o += i - start;
        memcpy(out + o, html_rep[k], html_rlen[k]);
        o += html_rlen[k];
        start = i + 1;
    }
    memcpy(out + o, s + start, n - start);
    return o + n - start;
}
