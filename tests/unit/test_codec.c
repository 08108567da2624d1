/* The shared codecs (runtime/codec.h): hex, percent-encoding, base64 and
 * base64url, with the edge cases their callers depend on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/codec.h"

#include <string.h>

static void test_hex(void **s)
{
    assert_int_equal(vial_hex_val('0'), 0);
    assert_int_equal(vial_hex_val('9'), 9);
    assert_int_equal(vial_hex_val('a'), 10);
    assert_int_equal(vial_hex_val('F'), 15);
    assert_int_equal(vial_hex_val('g'), -1);
    assert_int_equal(vial_hex_val('G'), -1);
    assert_int_equal(vial_hex_val('/'), -1);
    assert_int_equal(vial_hex_val(':'), -1);
    assert_int_equal(vial_hex_val(0), -1);
    assert_int_equal(vial_hex_val(0xff), -1);
    int digits = 0;
    for (int c = 0; c < 256; c++)
        digits += vial_hex_val((unsigned char)c) >= 0;
    assert_int_equal(digits, 22);
    assert_string_equal(vial_hex_upper, "0123456789ABCDEF");
    assert_string_equal(vial_hex_lower, "0123456789abcdef");
}

/* Decodes s with flags; returns the length and the bytes in out. */
static ssize_t pct(const char *s, unsigned flags, char *out)
{
    memset(out, 0x55, 64);
    return vial_pct_decode(out, s, strlen(s), flags);
}

static void test_pct_decode_lenient(void **s)
{
    char out[64];
    assert_int_equal(pct("a%41b", 0, out), 3);
    assert_memory_equal(out, "aAb", 3);
    assert_int_equal(pct("%e2%82%AC", 0, out), 3);
    assert_memory_equal(out, "\xe2\x82\xac", 3);
    /* invalid escapes stay as they came */
    assert_int_equal(pct("%zz%4", 0, out), 5);
    assert_memory_equal(out, "%zz%4", 5);
    assert_int_equal(pct("%", 0, out), 1);
    assert_int_equal(pct("%4g", 0, out), 3);
    assert_memory_equal(out, "%4g", 3);
    assert_int_equal(pct("100%", 0, out), 4);
    /* an escape ending exactly at the end is decoded */
    assert_int_equal(pct("x%2F", 0, out), 2);
    assert_memory_equal(out, "x/", 2);
    /* %00 is a byte like any other, kept with the length */
    assert_int_equal(pct("a%00b", 0, out), 3);
    assert_memory_equal(out, "a\0b", 3);
    /* '+' only with VIAL_PCT_PLUS, and %2B is always a plus */
    assert_int_equal(pct("a+b%2B", 0, out), 4);
    assert_memory_equal(out, "a+b+", 4);
    assert_int_equal(pct("a+b%2B", VIAL_PCT_PLUS, out), 4);
    assert_memory_equal(out, "a b+", 4);
    /* %%41: the first '%' is no escape, the second is */
    assert_int_equal(pct("%%41", 0, out), 2);
    assert_memory_equal(out, "%A", 2);
    assert_int_equal(pct("", 0, out), 0);
}

static void test_pct_decode_strict(void **s)
{
    char out[64];
    assert_int_equal(pct("a%41", VIAL_PCT_STRICT, out), 2);
    assert_int_equal(pct("a%4", VIAL_PCT_STRICT, out), -1);
    assert_int_equal(pct("a%", VIAL_PCT_STRICT, out), -1);
    assert_int_equal(pct("%g1", VIAL_PCT_STRICT, out), -1);
    assert_int_equal(pct("a%00", VIAL_PCT_STRICT, out), 2);
    assert_int_equal(pct("a%00", VIAL_PCT_STRICT | VIAL_PCT_NO_NUL, out), -1);
    assert_int_equal(pct("a+b", VIAL_PCT_STRICT, out), 3);
    assert_memory_equal(out, "a+b", 3);
}

static void test_pct_decode_in_place(void **s)
{
    char buf[] = "a%20b%2fc";
    ssize_t n = vial_pct_decode(buf, buf, strlen(buf), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "a b/c", 5);
}

static void test_pct_encode(void **s)
{
    char out[64];
    const char *in = "a b/~\xe2\x82\xac+";
    size_t n = strlen(in);
    size_t len = vial_pct_encode(NULL, in, n, NULL, 0);
    assert_int_equal(len, vial_pct_encode(out, in, n, NULL, 0));
    out[len] = 0;
    assert_string_equal(out, "a%20b%2F~%E2%82%AC%2B");
    len = vial_pct_encode(out, in, n, "/+", VIAL_PCT_PLUS);
    out[len] = 0;
    assert_string_equal(out, "a+b/~%E2%82%AC+");
    /* NUL is encoded even though strchr would find it in any safe set */
    len = vial_pct_encode(out, "a\0b", 3, "!", 0);
    out[len] = 0;
    assert_string_equal(out, "a%00b");
    /* round trip of every byte */
    char all[256], enc[768], dec[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    len = vial_pct_encode(enc, all, 256, "!$&'()*,;=:@/", VIAL_PCT_PLUS);
    assert_int_equal(vial_pct_decode(dec, enc, len, VIAL_PCT_PLUS | VIAL_PCT_STRICT), 256);
    assert_memory_equal(dec, all, 256);
}

static void b64(const char *in, unsigned flags, const char *want)
{
    char out[64];
    size_t n = strlen(in);
    assert_int_equal(vial_base64_len(n, flags), strlen(want));
    assert_int_equal(vial_base64_encode(out, in, n, flags), strlen(want));
    assert_string_equal(out, want);
    unsigned char back[64];
    ssize_t m = vial_base64_decode(back, out, strlen(out), flags | VIAL_B64_CANONICAL);
    assert_int_equal(m, (ssize_t)n);
    assert_memory_equal(back, in, n);
}

static void test_base64_vectors(void **s)
{
    /* RFC 4648 section 10 */
    b64("", 0, "");
    b64("f", 0, "Zg==");
    b64("fo", 0, "Zm8=");
    b64("foo", 0, "Zm9v");
    b64("foob", 0, "Zm9vYg==");
    b64("fooba", 0, "Zm9vYmE=");
    b64("foobar", 0, "Zm9vYmFy");
    b64("f", VIAL_B64_URL, "Zg");
    b64("fo", VIAL_B64_URL, "Zm8");
    b64("foobar", VIAL_B64_URL, "Zm9vYmFy");
    /* the alphabets differ in 62 and 63 */
    b64("\xfb\xff", 0, "+/8=");
    b64("\xfb\xff", VIAL_B64_URL, "-_8");
}

static ssize_t dec(const char *in, unsigned flags)
{
    unsigned char out[64];
    return vial_base64_decode(out, in, strlen(in), flags);
}

static void test_base64_padding(void **s)
{
    /* standard: padded to a multiple of 4, at most two '=', only at the end */
    assert_int_equal(dec("Zg==", 0), 1);
    assert_int_equal(dec("Zg", 0), -1);
    assert_int_equal(dec("Zg=", 0), -1);
    assert_int_equal(dec("Z===", 0), -1);
    assert_int_equal(dec("====", 0), -1);
    assert_int_equal(dec("Zg==Zg==", 0), -1);
    assert_int_equal(dec("Z=g=", 0), -1);
    assert_int_equal(dec("Zm9v\n", 0), -1);
    assert_int_equal(dec("Zm-_", 0), -1);
    /* base64url: no padding at all, and no length 4k+1 */
    assert_int_equal(dec("Zg", VIAL_B64_URL), 1);
    assert_int_equal(dec("Zg==", VIAL_B64_URL), -1);
    assert_int_equal(dec("Zm9vY", VIAL_B64_URL), -1);
    assert_int_equal(dec("Zm+/", VIAL_B64_URL), -1);
    assert_int_equal(dec("", VIAL_B64_URL), 0);
}

static void test_base64_canonical(void **s)
{
    /* "Zh" carries a non-zero unused bit: accepted unless canonical */
    assert_int_equal(dec("Zh==", 0), 1);
    assert_int_equal(dec("Zh==", VIAL_B64_CANONICAL), -1);
    assert_int_equal(dec("Zh", VIAL_B64_URL), 1);
    assert_int_equal(dec("Zh", VIAL_B64_URL | VIAL_B64_CANONICAL), -1);
    assert_int_equal(dec("Zm9=", VIAL_B64_CANONICAL), -1);
    assert_int_equal(dec("Zm8=", VIAL_B64_CANONICAL), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_pct_decode_lenient),
        cmocka_unit_test(test_pct_decode_strict),
        cmocka_unit_test(test_pct_decode_in_place),
        cmocka_unit_test(test_pct_encode),
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_padding),
        cmocka_unit_test(test_base64_canonical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
