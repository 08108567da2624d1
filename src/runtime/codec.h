/* Byte codecs every layer shares: hex digits, percent-encoding (URLs,
 * forms, cookies), base64 / base64url (WebSocket keys, signed cookies) and
 * HTML escaping (templates, vial_html_escape).
 * Leaf code: no allocation, no locale; callers own the buffers.
 * Outputs are never longer than the sizes stated, so callers size them up
 * front (or ask for the length first, where a function allows out = NULL). */
#ifndef VIAL_RUNTIME_CODEC_H
#define VIAL_RUNTIME_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* --- hex ----------------------------------------------------------------------- */

extern const char vial_hex_upper[17]; /* "0123456789ABCDEF" */
extern const char vial_hex_lower[17]; /* "0123456789abcdef" */
/* Digit value + 1 per byte; 0 for bytes that are not hex digits. */
extern const uint8_t vial_hex_table[256];

/* The value of hex digit c (either case), or -1. */
static inline int vial_hex_val(unsigned char c)
{
    return (int)vial_hex_table[c] - 1;
}

/* Writes n bytes as 2n lowercase hex digits (no NUL). */
void vial_hex_encode(char *out, const void *in, size_t n);

/* --- percent-encoding ------------------------------------------------------------ */

enum {
    VIAL_PCT_PLUS = 1,   /* decode '+' as ' ' / encode ' ' as '+' (forms, query strings) */
    VIAL_PCT_STRICT = 2, /* decode: a '%' not followed by two hex digits is an error
                          * (without it, the '%' is kept as it came) */
    VIAL_PCT_NO_NUL = 4, /* decode: "%00" is an error (the result is used as a C string) */
};

/* Decodes in[0..n) into out, which needs n bytes (out == in decodes in
 * place). No NUL is added: a decoded %00 is a byte like any other. Returns
 * the decoded length, or -1 (only under VIAL_PCT_STRICT / VIAL_PCT_NO_NUL). */
ssize_t vial_pct_decode(char *out, const char *in, size_t n, unsigned flags);

/* Encodes in[0..n) into out (at most 3 * n bytes, no NUL added): unreserved
 * characters (RFC 3986: A-Z a-z 0-9 - . _ ~) and those in `safe` stay, the
 * rest become %XX (upper case); with VIAL_PCT_PLUS a space becomes '+'.
 * NUL is always encoded. out NULL only counts. Returns the encoded length. */
size_t vial_pct_encode(char *out, const char *in, size_t n, const char *safe, unsigned flags);

/* --- base64 ---------------------------------------------------------------------- */

enum {
    VIAL_B64_URL = 1,       /* base64url (RFC 4648 5): "-_" alphabet, no padding */
    VIAL_B64_CANONICAL = 2, /* decode: the unused bits of the last symbol must be 0 */
};

/* Encoded length of n bytes (without the NUL). */
size_t vial_base64_len(size_t n, unsigned flags);

/* Encodes in[0..n) into out (vial_base64_len + 1 bytes, NUL-terminated):
 * standard base64 with '=' padding, or base64url without. Returns the length. */
size_t vial_base64_encode(char *out, const void *in, size_t n, unsigned flags);

/* Decodes in[0..n) into out (n / 4 * 3 + 2 bytes suffice). Standard base64
 * must be padded to a multiple of 4 with at most two '='; base64url must not
 * be padded at all. Any other byte (whitespace included) is an error.
 * Returns the decoded length, or -1. */
ssize_t vial_base64_decode(void *out, const char *in, size_t n, unsigned flags);

/* --- HTML escaping --------------------------------------------------------------
 * Jinja's and markupsafe's: & < > " ' become &amp; &lt; &gt; &#34; &#39;,
 * every other byte stays (UTF-8 passes through). The one copy of it: the
 * template engine and the public helpers build on these. */

/* The index of the first byte of s[i..n) that escaping replaces, or n.
 * Skips 16 (SSE2) or 8 bytes at a time: most text has nothing to escape. */
size_t vial_html_find(const char *s, size_t i, size_t n);

/* The entity that replaces byte c, with its length in *len; NULL (and *len
 * 0) for a byte that stays. */
const char *vial_html_entity(unsigned char c, size_t *len);

/* The length of s[0..n) escaped (at most 5 * n). */
size_t vial_html_escaped_len(const char *s, size_t n);

/* Writes s[0..n) escaped into out (vial_html_escaped_len bytes, no NUL added).
 * Returns the length written. */
size_t vial_html_escape_to(char *out, const char *s, size_t n);

#endif
