/* Request JSON (spec §4.2): media type check, every rejection the spec
 * lists, number and string fidelity, the vial_jv accessors, depth, and
 * round-trips through vial_json_value. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/request_state.h"
#include "http/exchange.h"

/* Declared in vial.h once the lead adds it; repeated here meanwhile (a
 * compatible redeclaration is harmless). */
void vial_json_value(vial_json *j, const vial_jv *v);

static vial_req *mkreq_ct(const char *ct, const void *body, size_t len)
{
    vial_req *rq = calloc(1, sizeof *rq);
    assert_non_null(rq);
    vial_exchange_init(rq, NULL, NULL);
    assert_non_null(vial_req_state_attach(rq, NULL));
    if (ct) {
        vial_http_field *h = &rq->head.headers[rq->head.nheaders++];
        h->name.p = "content-type";
        h->name.len = 12;
        h->value.p = ct;
        h->value.len = strlen(ct);
    }
    rq->body = body;
    rq->body_len = len;
    return rq;
}

static void freereq(vial_req *rq)
{
    vial_exchange_fini(rq);
    free(rq);
}

/* Parses text (length n) as application/json; returns the status. */
static int parse_n(vial_req **rqp, const char *text, size_t n, const vial_jv **out)
{
    *rqp = mkreq_ct("application/json", text, n);
    return vial_req_json(*rqp, out);
}

static const vial_jv *ok(vial_req **rqp, const char *text)
{
    const vial_jv *v = NULL;
    int st = parse_n(rqp, text, strlen(text), &v);
    if (st != 0)
        fail_msg("rejected %s: %s", text, vial_req_json_error(*rqp));
    assert_non_null(v);
    return v;
}

static void rejected_n(const char *text, size_t n)
{
    vial_req *rq;
    const vial_jv *v = (const vial_jv *)1;
    int st = parse_n(&rq, text, n, &v);
    if (st != VIAL_EHTTP(400))
        fail_msg("status %d for %.*s", st, (int)n, text);
    assert_null(v);
    const char *e = vial_req_json_error(rq);
    assert_non_null(e);
    assert_true(strlen(e) > 10);
    freereq(rq);
}

static void rejected(const char *text)
{
    rejected_n(text, strlen(text));
}

/* --- media type ----------------------------------------------------------------- */

static void test_media_types(void **state)
{
    (void)state;
    const char *good[] = {"application/json", "Application/JSON", "application/json; charset=utf-8",
                          "application/json;charset=UTF-8", "  application/json  ; x=y",
                          "application/vnd.api+json", "application/problem+json; charset=utf-8",
                          "APPLICATION/LD+JSON"};
    const char *bad[] = {NULL, "", "text/json", "text/plain", "application/jsonx", "application/json5",
                         "application/+json", "application/x+jsonx", "application/x-json",
                         "json", "application/a/b+json", "multipart/form-data; boundary=x"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        vial_req *rq = mkreq_ct(good[i], "[1]", 3);
        const vial_jv *v;
        assert_int_equal(vial_req_json(rq, &v), 0);
        assert_int_equal(vial_jv_type(v), VIAL_JARRAY);
        assert_null(vial_req_json_error(rq));
        freereq(rq);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        vial_req *rq = mkreq_ct(bad[i], "[1]", 3);
        const vial_jv *v = (const vial_jv *)1;
        if (vial_req_json(rq, &v) != VIAL_EHTTP(415))
            fail_msg("not 415: %s", bad[i] ? bad[i] : "(none)");
        assert_null(v);
        assert_non_null(vial_req_json_error(rq));
        freereq(rq);
    }
}

static void test_error_before_parse_is_null(void **state)
{
    (void)state;
    vial_req *rq = mkreq_ct("application/json", "[", 1);
    assert_null(vial_req_json_error(rq));
    assert_int_equal(vial_req_json(rq, NULL), VIAL_EHTTP(400));
    assert_non_null(vial_req_json_error(rq));
    freereq(rq);
}

/* --- rejections (the spec's list, and RFC 8259 grammar) ------------------------------- */

static void test_reject_empty_truncated(void **state)
{
    (void)state;
    rejected("");
    rejected(" \r\n\t ");
    rejected("\xef\xbb\xbf");
    rejected("{\"a\":1");
    rejected("{\"a\":");
    rejected("{\"a\"");
    rejected("{");
    rejected("[1,2");
    rejected("[");
    rejected("\"abc");
    rejected("\"abc\\");
    rejected("\"\\u12");
    rejected("tru");
    rejected("nul");
    rejected("-");
    rejected("1e");
    rejected("1e+");
    rejected("0.");
}

static void test_reject_trailing_data(void **state)
{
    (void)state;
    rejected("{} x");
    rejected("1 2");
    rejected("{}{}");
    rejected("[] []");
    rejected("\"a\"\"b\"");
    rejected("null,");
    rejected("{}]");
    rejected_n("{}\0", 3);
    rejected_n("1\0", 2);
    rejected_n("[0\0]", 4);
    /* a cut-off string or literal after the value (yajl alone lets the
     * string pass) */
    rejected("2\"");
    rejected("{} \"abc");
    rejected("[1] \"x");
    rejected("true \"");
    rejected("\"s\"  \"");
    rejected("1 tru");
    rejected("{}\n\n  [");
}

static void test_reject_comments_quotes_commas(void **state)
{
    (void)state;
    rejected("/*c*/ 1");
    rejected("1 /*c*/");
    rejected("[1 // c\n]");
    rejected("# c\n1");
    rejected("'a'");
    rejected("{'a':1}");
    rejected("{\"a\":'b'}");
    rejected("[1,]");
    rejected("[1,,2]");
    rejected("[,1]");
    rejected("{\"a\":1,}");
    rejected("{,}");
    rejected("{a:1}");
    rejected("{\"a\" 1}");
    rejected("{1:1}");
}

static void test_reject_nan_infinity(void **state)
{
    (void)state;
    rejected("NaN");
    rejected("nan");
    rejected("[NaN]");
    rejected("Infinity");
    rejected("-Infinity");
    rejected("[Infinity]");
    rejected("{\"a\":-Infinity}");
    rejected("inf");
    /* beyond the double range: no JSON to send back, so rejected too */
    rejected("1e400");
    rejected("-1e400");
    rejected("[123456789e999]");
}

static void test_reject_bad_numbers(void **state)
{
    (void)state;
    rejected("01");
    rejected("-01");
    rejected("+1");
    rejected(".5");
    rejected("1.");
    rejected("1.e5");
    rejected("0x10");
    rejected("1e5.5");
    rejected("--1");
    rejected("- 1");
}

static void test_reject_control_whitespace(void **state)
{
    (void)state;
    /* RFC 8259 whitespace is space, tab, LF, CR only (yajl alone would
     * skip \f and \v) */
    rejected("[1,2\f]");
    rejected("\f[1]");
    rejected("[1]\v");
    rejected("{\"a\":\v1}");
    rejected("[1,\x01 2]");
    rejected_n("[\0]", 3);
    rejected("\x1f" "1");
}

static void test_reject_bad_strings(void **state)
{
    (void)state;
    rejected("\"a\x01" "b\"");
    rejected("\"a\tb\"");
    rejected("\"a\nb\"");
    rejected("\"\\x41\"");
    rejected("\"\\a\"");
    rejected("\"\\u12G4\"");
    rejected("\"\\U0041\"");
    rejected("\"\\\xc3\xa9\"");
}

static void test_reject_invalid_utf8(void **state)
{
    (void)state;
    rejected("\"\xff\"");
    rejected("\"\xfe\"");
    rejected("\"\x80\"");
    rejected("\"\xbf\"");
    rejected("\"\xe2\x82\"");         /* truncated */
    rejected("\"\xe2\x82");           /* truncated at the end of the text */
    rejected("\"\xc3\"");
    rejected("\"\xc0\xaf\"");         /* overlong '/' */
    rejected("\"\xc1\xbf\"");         /* overlong */
    rejected("\"\xe0\x80\xaf\"");     /* overlong 3-byte */
    rejected("\"\xe0\x9f\xbf\"");     /* overlong 3-byte */
    rejected("\"\xf0\x80\x80\xaf\""); /* overlong 4-byte */
    rejected("\"\xf0\x8f\xbf\xbf\""); /* overlong 4-byte */
    rejected("\"\xed\xa0\x80\"");     /* surrogate D800 */
    rejected("\"\xed\xbf\xbf\"");     /* surrogate DFFF */
    rejected("\"\xed\xa0\xbd\xed\xb8\x80\""); /* CESU-8 pair */
    rejected("\"\xf4\x90\x80\x80\""); /* above U+10FFFF */
    rejected("\"\xf5\x80\x80\x80\"");
    rejected("\"\xf8\x88\x80\x80\x80\"");
    rejected("[1]\xff");
    rejected("\xff[1]");
    rejected("{\"k\xff\":1}");
    rejected("\"ok\" \xc3");
    /* long ASCII run then a bad byte (the 8-byte fast path) */
    rejected("\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc0\x80\"");
}

static void test_reject_lone_surrogate_escapes(void **state)
{
    (void)state;
    rejected("\"\\ud800\"");
    rejected("\"\\uDBFF\"");
    rejected("\"\\udc00\"");
    rejected("\"\\uDFFF x\"");
    rejected("\"\\ud800\\u0041\"");
    rejected("\"\\ud800\\ud800\"");
    rejected("\"\\ud800\\n\"");
    rejected("\"\\udc00\\ud800\"");
    rejected("\"\\ud800");
    rejected("{\"\\ud800\":1}");
}

static void test_error_location(void **state)
{
    (void)state;
    vial_req *rq;
    const char *text = "{\n  \"a\": 1,\n  \"b\": tru\n}";
    assert_int_equal(parse_n(&rq, text, strlen(text), NULL), VIAL_EHTTP(400));
    const char *e = vial_req_json_error(rq);
    assert_non_null(strstr(e, "line 3"));
    freereq(rq);
    text = "[1,\n\"\xc0\xaf\"]";
    assert_int_equal(parse_n(&rq, text, strlen(text), NULL), VIAL_EHTTP(400));
    e = vial_req_json_error(rq);
    assert_non_null(strstr(e, "line 2, column 2"));
    assert_non_null(strstr(e, "UTF-8"));
    freereq(rq);
    text = "[\"\\ud800\"]";
    assert_int_equal(parse_n(&rq, text, strlen(text), NULL), VIAL_EHTTP(400));
    assert_non_null(strstr(vial_req_json_error(rq), "surrogate"));
    freereq(rq);
    text = "[1e999]";
    assert_int_equal(parse_n(&rq, text, strlen(text), NULL), VIAL_EHTTP(400));
    assert_non_null(strstr(vial_req_json_error(rq), "out of range"));
    freereq(rq);
    text = "";
    assert_int_equal(parse_n(&rq, text, 0, NULL), VIAL_EHTTP(400));
    assert_non_null(strstr(vial_req_json_error(rq), "empty"));
    freereq(rq);
}

/* --- accepted values ---------------------------------------------------------------------- */

static void test_scalars(void **state)
{
    (void)state;
    vial_req *rq;
    assert_int_equal(vial_jv_type(ok(&rq, "null")), VIAL_JNULL);
    freereq(rq);
    assert_int_equal(vial_jv_type(ok(&rq, " true ")), VIAL_JTRUE);
    freereq(rq);
    assert_int_equal(vial_jv_type(ok(&rq, "\r\n\tfalse\n")), VIAL_JFALSE);
    freereq(rq);
    const vial_jv *v = ok(&rq, "\"hi\"");
    size_t len;
    assert_string_equal(vial_jv_str(v, &len), "hi");
    assert_int_equal(len, 2);
    freereq(rq);
    /* a UTF-8 byte order mark is ignored (Flask accepts it too) */
    v = ok(&rq, "\xef\xbb\xbf{\"a\":1}");
    assert_int_equal(vial_jv_int(vial_jv_get(v, "a")), 1);
    freereq(rq);
}

static void expect_int(const char *text, int64_t want)
{
    vial_req *rq;
    const vial_jv *v = ok(&rq, text);
    assert_int_equal(vial_jv_type(v), VIAL_JINT);
    assert_true(vial_jv_int(v) == want);
    assert_true(vial_jv_real(v) == (double)want);
    freereq(rq);
}

static void expect_real(const char *text, double want)
{
    vial_req *rq;
    const vial_jv *v = ok(&rq, text);
    assert_int_equal(vial_jv_type(v), VIAL_JREAL);
    double got = vial_jv_real(v);
    if (!(got == want && signbit(got) == signbit(want)))
        fail_msg("%s -> %.17g, want %.17g", text, got, want);
    freereq(rq);
}

static void expect_bigint(const char *text, double real)
{
    vial_req *rq;
    const vial_jv *v = ok(&rq, text);
    assert_int_equal(vial_jv_type(v), VIAL_JBIGINT);
    size_t n;
    const char *t = vial_jv_bigint(v, &n);
    assert_non_null(t);
    assert_int_equal(n, strlen(text));
    assert_string_equal(t, text);
    assert_true(vial_jv_int(v) == 0); /* does not fit: 0, as documented */
    assert_true(vial_jv_real(v) == real);
    freereq(rq);
}

static void test_integers_exact(void **state)
{
    (void)state;
    expect_int("0", 0);
    expect_int("-0", 0);
    expect_int("7", 7);
    expect_int("-42", -42);
    expect_int("9007199254740992", 9007199254740992LL);
    expect_int("-9007199254740992", -9007199254740992LL);
    expect_int("9007199254740993", 9007199254740993LL);
    expect_int("9223372036854775807", INT64_MAX);
    expect_int("-9223372036854775808", INT64_MIN);
    /* beyond int64: kept as text, never silently a double */
    expect_bigint("9223372036854775808", 9223372036854775808.0);
    expect_bigint("-9223372036854775809", -9223372036854775808.0);
    expect_bigint("18446744073709551616", 18446744073709551616.0);
    expect_bigint("123456789012345678901234567890", 123456789012345678901234567890.0);
}

static void test_reals_same_double(void **state)
{
    (void)state;
    expect_real("0.1", 0.1);
    expect_real("1.0", 1.0);
    expect_real("-0.0", -0.0);
    expect_real("1E2", 100.0);
    expect_real("1e+2", 100.0);
    expect_real("25e-1", 2.5);
    expect_real("1.5e-10", 1.5e-10);
    expect_real("0.30000000000000004", 0.30000000000000004);
    expect_real("1.7976931348623157e308", 1.7976931348623157e308);
    expect_real("2.2250738585072014e-308", 2.2250738585072014e-308);
    expect_real("5e-324", 5e-324);
    expect_real("1e-400", 0.0); /* underflow: 0, as Python */
    expect_real("3.141592653589793238462643383279502884197", 3.141592653589793);
    /* long number text (> the 64-byte fast buffer) */
    expect_real("0.0000000000000000000000000000000000000000000000000000000000000000000000000001",
                1e-76);
}

static void test_strings_exact(void **state)
{
    (void)state;
    vial_req *rq;
    size_t len;
    const vial_jv *v = ok(&rq, "\"a\\u0000b\"");
    const char *s = vial_jv_str(v, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 4);
    freereq(rq);
    v = ok(&rq, "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
    s = vial_jv_str(v, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(s, "\"\\/\b\f\n\r\t", 8);
    freereq(rq);
    v = ok(&rq, "\"\\u00e9\\u20AC\\ud83d\\ude00 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"");
    s = vial_jv_str(v, &len);
    assert_string_equal(s, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
    freereq(rq);
    v = ok(&rq, "\"\\uDBFF\\uDFFF\\u007f\x7f\"");
    s = vial_jv_str(v, &len);
    assert_string_equal(s, "\xf4\x8f\xbf\xbf\x7f\x7f");
    freereq(rq);
    v = ok(&rq, "\"\"");
    assert_string_equal(vial_jv_str(v, &len), "");
    assert_int_equal(len, 0);
    freereq(rq);
    /* escaped backslash before 'u' is not an escape */
    v = ok(&rq, "\"\\\\ud800\"");
    assert_string_equal(vial_jv_str(v, NULL), "\\ud800");
    freereq(rq);
}

static void test_arrays(void **state)
{
    (void)state;
    vial_req *rq;
    const vial_jv *v = ok(&rq, "[1, \"two\", [3], {\"four\": 4}, null, true, 2.5]");
    assert_int_equal(vial_jv_type(v), VIAL_JARRAY);
    assert_int_equal(vial_jv_len(v), 7);
    assert_int_equal(vial_jv_int(vial_jv_at(v, 0)), 1);
    assert_string_equal(vial_jv_str(vial_jv_at(v, 1), NULL), "two");
    assert_int_equal(vial_jv_int(vial_jv_at(vial_jv_at(v, 2), 0)), 3);
    assert_int_equal(vial_jv_int(vial_jv_get(vial_jv_at(v, 3), "four")), 4);
    assert_int_equal(vial_jv_type(vial_jv_at(v, 4)), VIAL_JNULL);
    assert_non_null(vial_jv_at(v, 4));
    assert_int_equal(vial_jv_type(vial_jv_at(v, 5)), VIAL_JTRUE);
    assert_true(vial_jv_real(vial_jv_at(v, 6)) == 2.5);
    assert_int_equal(vial_jv_int(vial_jv_at(v, 6)), 2);
    assert_null(vial_jv_at(v, 7));
    assert_null(vial_jv_get(v, "x"));
    assert_null(vial_jv_key_at(v, 0, NULL));
    freereq(rq);
    v = ok(&rq, "[]");
    assert_int_equal(vial_jv_len(v), 0);
    assert_null(vial_jv_at(v, 0));
    freereq(rq);
}

static void test_objects(void **state)
{
    (void)state;
    vial_req *rq;
    const vial_jv *v = ok(&rq, "{\"a\": 1, \"b\": {\"c\": [true]}, \"\": \"empty\", \"k\\u0000z\": 5}");
    assert_int_equal(vial_jv_type(v), VIAL_JOBJECT);
    assert_int_equal(vial_jv_len(v), 4);
    assert_int_equal(vial_jv_int(vial_jv_get(v, "a")), 1);
    assert_int_equal(vial_jv_type(vial_jv_at(vial_jv_get(vial_jv_get(v, "b"), "c"), 0)), VIAL_JTRUE);
    assert_string_equal(vial_jv_str(vial_jv_get(v, ""), NULL), "empty");
    assert_null(vial_jv_get(v, "k")); /* a C string cannot name a key with NUL */
    size_t kl;
    assert_string_equal(vial_jv_key_at(v, 0, &kl), "a");
    assert_int_equal(kl, 1);
    assert_memory_equal(vial_jv_key_at(v, 3, &kl), "k\0z", 3);
    assert_int_equal(kl, 3);
    assert_int_equal(vial_jv_int(vial_jv_value_at(v, 3)), 5);
    assert_null(vial_jv_key_at(v, 4, &kl));
    assert_null(vial_jv_value_at(v, 4));
    assert_null(vial_jv_get(v, "missing"));
    freereq(rq);
    v = ok(&rq, "{}");
    assert_int_equal(vial_jv_len(v), 0);
    assert_null(vial_jv_get(v, "a"));
    freereq(rq);
}

static void test_duplicate_keys_last_value_first_position(void **state)
{
    (void)state;
    vial_req *rq;
    const vial_jv *v = ok(&rq, "{\"a\": 1, \"b\": 2, \"a\": 3, \"c\": 4, \"a\": {\"x\":1}}");
    assert_int_equal(vial_jv_len(v), 3);
    assert_string_equal(vial_jv_key_at(v, 0, NULL), "a");
    assert_string_equal(vial_jv_key_at(v, 1, NULL), "b");
    assert_string_equal(vial_jv_key_at(v, 2, NULL), "c");
    assert_int_equal(vial_jv_int(vial_jv_get(vial_jv_get(v, "a"), "x")), 1);
    freereq(rq);
}

static void test_large_objects_indexed(void **state)
{
    (void)state;
    /* Enough members for the hash index; with duplicates interleaved. */
    size_t cap = 200000, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, "{");
    for (int i = 0; i < 3000; i++)
        o += (size_t)snprintf(t + o, cap - o, "%s\"key%d\": %d", i ? "," : "", i % 2000, i);
    o += (size_t)snprintf(t + o, cap - o, "}");
    vial_req *rq;
    const vial_jv *v = ok(&rq, t);
    assert_int_equal(vial_jv_len(v), 2000);
    char k[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        int64_t want = i < 1000 ? i + 2000 : i;
        assert_true(vial_jv_int(vial_jv_get(v, k)) == want);
        assert_string_equal(vial_jv_key_at(v, (size_t)i, NULL), k);
    }
    assert_null(vial_jv_get(v, "key2000"));
    assert_null(vial_jv_get(v, "nope"));
    freereq(rq);
    /* sizes around the index threshold, no duplicates */
    for (int n = 1; n <= 40; n++) {
        o = 0;
        o += (size_t)snprintf(t + o, cap - o, "{");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(t + o, cap - o, "%s\"k%d\":%d", i ? "," : "", i, i * 3);
        o += (size_t)snprintf(t + o, cap - o, "}");
        v = ok(&rq, t);
        assert_int_equal(vial_jv_len(v), n);
        for (int i = 0; i < n; i++) {
            snprintf(k, sizeof k, "k%d", i);
            assert_int_equal(vial_jv_int(vial_jv_get(v, k)), i * 3);
        }
        assert_null(vial_jv_get(v, "k-1"));
        freereq(rq);
    }
    free(t);
}

static void test_null_safe_accessors(void **state)
{
    (void)state;
    size_t len = 99;
    assert_int_equal(vial_jv_type(NULL), VIAL_JNULL);
    assert_int_equal(vial_jv_int(NULL), 0);
    assert_true(vial_jv_real(NULL) == 0);
    assert_null(vial_jv_str(NULL, &len));
    assert_int_equal(len, 0);
    assert_int_equal(vial_jv_len(NULL), 0);
    assert_null(vial_jv_at(NULL, 0));
    assert_null(vial_jv_get(NULL, "a"));
    assert_null(vial_jv_key_at(NULL, 0, NULL));
    assert_null(vial_jv_value_at(NULL, 0));
    vial_req *rq;
    const vial_jv *v = ok(&rq, "{\"s\":\"x\",\"n\":1}");
    assert_null(vial_jv_str(vial_jv_get(v, "n"), NULL));
    assert_int_equal(vial_jv_int(vial_jv_get(v, "s")), 0);
    assert_int_equal(vial_jv_len(vial_jv_get(v, "s")), 0);
    assert_null(vial_jv_get(v, NULL));
    assert_int_equal(vial_jv_int(vial_jv_get(vial_jv_get(v, "a"), "b")), 0);
    freereq(rq);
}

static void test_cached(void **state)
{
    (void)state;
    vial_req *rq;
    const vial_jv *a, *b;
    assert_int_equal(parse_n(&rq, "[1]", 3, &a), 0);
    assert_int_equal(vial_req_json(rq, &b), 0);
    assert_ptr_equal(a, b);
    freereq(rq);
}

/* --- depth ---------------------------------------------------------------------------------- */

static char *nested(int depth, int objects)
{
    char *t = malloc((size_t)depth * 8 + 16), *o = t;
    for (int i = 0; i < depth; i++)
        o += sprintf(o, objects && i % 2 ? "{\"k\":" : "[");
    o += sprintf(o, "0");
    for (int i = depth - 1; i >= 0; i--)
        *o++ = objects && i % 2 ? '}' : ']';
    *o = 0;
    return t;
}

static void test_depth_limit(void **state)
{
    (void)state;
    for (int objects = 0; objects <= 1; objects++) {
        char *t = nested(512, objects);
        vial_req *rq;
        const vial_jv *v = ok(&rq, t);
        for (int i = 0; i < 511; i++)
            v = objects && i % 2 ? vial_jv_get(v, "k") : vial_jv_at(v, 0);
        /* v is the innermost container, level 511 (an object when mixing) */
        assert_int_equal(vial_jv_type(v), objects ? VIAL_JOBJECT : VIAL_JARRAY);
        const vial_jv *leaf = objects ? vial_jv_get(v, "k") : vial_jv_at(v, 0);
        assert_int_equal(vial_jv_type(leaf), VIAL_JINT);
        assert_int_equal(vial_jv_int(leaf), 0);
        freereq(rq);
        free(t);
        t = nested(513, objects);
        assert_int_equal(parse_n(&rq, t, strlen(t), NULL), VIAL_EHTTP(400));
        assert_non_null(strstr(vial_req_json_error(rq), "512"));
        freereq(rq);
        free(t);
    }
    /* very deep: rejected without deep recursion anywhere */
    char *t = malloc(200001);
    memset(t, '[', 200000);
    t[200000] = 0;
    rejected(t);
    free(t);
}

/* --- round trips through vial_json_value --------------------------------------------------- */

static int jv_equal(const vial_jv *a, const vial_jv *b)
{
    if (vial_jv_type(a) != vial_jv_type(b))
        return 0;
    size_t la, lb;
    switch (vial_jv_type(a)) {
    case VIAL_JINT:
        return vial_jv_int(a) == vial_jv_int(b);
    case VIAL_JREAL:
        return vial_jv_real(a) == vial_jv_real(b) && signbit(vial_jv_real(a)) == signbit(vial_jv_real(b));
    case VIAL_JBIGINT: {
        const char *sa = vial_jv_bigint(a, &la), *sb = vial_jv_bigint(b, &lb);
        return la == lb && !memcmp(sa, sb, la);
    }
    case VIAL_JSTRING: {
        const char *sa = vial_jv_str(a, &la), *sb = vial_jv_str(b, &lb);
        return la == lb && !memcmp(sa, sb, la);
    }
    case VIAL_JARRAY:
        if (vial_jv_len(a) != vial_jv_len(b))
            return 0;
        for (size_t i = 0; i < vial_jv_len(a); i++)
            if (!jv_equal(vial_jv_at(a, i), vial_jv_at(b, i)))
                return 0;
        return 1;
    case VIAL_JOBJECT:
        if (vial_jv_len(a) != vial_jv_len(b))
            return 0;
        for (size_t i = 0; i < vial_jv_len(a); i++) {
            const char *ka = vial_jv_key_at(a, i, &la), *kb = vial_jv_key_at(b, i, &lb);
            if (la != lb || memcmp(ka, kb, la) || !jv_equal(vial_jv_value_at(a, i), vial_jv_value_at(b, i)))
                return 0;
        }
        return 1;
    default:
        return 1;
    }
}

/* Writes v through vial_json_value into rq's response; returns the text. */
static const char *write_back(vial_req *rq, const vial_jv *v, size_t *len)
{
    vial_json *j = vial_json_begin(&rq->res, 200);
    vial_json_value(j, v);
    assert_int_equal(vial_json_finish(j), 0);
    *len = rq->res.body_len;
    return rq->res.body;
}

static void roundtrip(const char *text, const char *exact)
{
    vial_req *rq, *rq2;
    const vial_jv *v = ok(&rq, text), *v2;
    size_t n;
    const char *out = write_back(rq, v, &n);
    char *copy = malloc(n + 1);
    memcpy(copy, out, n);
    copy[n] = 0;
    if (exact)
        assert_string_equal(copy, exact);
    assert_int_equal(parse_n(&rq2, copy, n, &v2), 0);
    assert_true(jv_equal(v, v2));
    freereq(rq2);
    freereq(rq);
    free(copy);
}

static void test_roundtrip(void **state)
{
    (void)state;
    roundtrip("{\"a\":[1,-2,9007199254740993,-9223372036854775808],\"b\":\"x\\\"y\\\\z\\n\",\"c\":null,"
              "\"d\":true,\"e\":false,\"f\":{},\"g\":[]}",
              "{\"a\":[1,-2,9007199254740993,-9223372036854775808],\"b\":\"x\\\"y\\\\z\\n\",\"c\":null,"
              "\"d\":true,\"e\":false,\"f\":{},\"g\":[]}");
    roundtrip("\"a\\u0000b\\u001f\"", "\"a\\u0000b\\u001f\"");
    roundtrip("[0.1, 1e300, -2.5e-300, 5e-324, 1.7976931348623157e308, 0.30000000000000004, 123.456]", NULL);
    roundtrip("\"\xf0\x9f\x98\x80 \\ud83d\\ude00 caf\xc3\xa9\"", NULL);
    /* numbers keep what they are: a float stays a float, an integer beyond
     * int64 comes back byte for byte */
    roundtrip("[1.0, 3.25, 0.1, 1e300, -0.0, 2.50, 1E2, 1e-5, 5e-324, 9223372036854775807]",
              "[1.0,3.25,0.1,1e+300,-0.0,2.5,100.0,1e-05,5e-324,9223372036854775807]");
    roundtrip("[9223372036854775808,-9223372036854775809,123456789012345678901234567890123]",
              "[9223372036854775808,-9223372036854775809,123456789012345678901234567890123]");
    roundtrip("42", "42");
    roundtrip("null", "null");
    roundtrip(" [ { \"deep\" : [ [ [ { } ] ] ] } ] ", "[{\"deep\":[[[{}]]]}]");
    /* nesting beyond the writer's 64-frame local stack (the writer itself
     * currently allows 63 levels: see json_writer.c MAX_DEPTH) */
    char *t = nested(60, 1);
    roundtrip(t, t);
    free(t);
}

/* NaN and the infinities have no JSON form: the writer refuses them (an
 * error that sticks) instead of writing null or NaN. */
static void test_write_non_finite_refused(void **state)
{
    (void)state;
    double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        vial_req *rq = mkreq_ct(NULL, "", 0);
        vial_json *j = vial_json_begin(&rq->res, 200);
        vial_json_arr(j);
        vial_json_double(j, 1.5);
        vial_json_double(j, bad[i]);
        vial_json_double(j, 2.5);
        vial_json_end(j);
        assert_int_equal(vial_json_finish(j), -EDOM);
        freereq(rq);
    }
    vial_req *rq = mkreq_ct(NULL, "", 0);
    vial_json *j = vial_json_begin(&rq->res, 200);
    vial_json_arr(j);
    vial_json_double(j, 1.0);
    vial_json_double(j, 3.25);
    vial_json_int(j, INT64_MIN);
    vial_json_end(j);
    assert_int_equal(vial_json_finish(j), 0);
    assert_int_equal(rq->res.body_len, strlen("[1.0,3.25,-9223372036854775808]"));
    assert_memory_equal(rq->res.body, "[1.0,3.25,-9223372036854775808]", rq->res.body_len);
    freereq(rq);
}

static void test_write_null_value(void **state)
{
    (void)state;
    vial_req *rq = mkreq_ct(NULL, "", 0);
    size_t n;
    const char *out = write_back(rq, NULL, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "null", 4);
    freereq(rq);
}

static void test_big_document(void **state)
{
    (void)state;
    size_t cap = 1100000, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, "[");
    int n = 0;
    while (o < 1000000) {
        o += (size_t)snprintf(t + o, cap - o, "%s{\"id\":%d,\"v\":%d.25,\"s\":\"caf\xc3\xa9\\n\"}", n ? "," : "", n, n);
        n++;
    }
    o += (size_t)snprintf(t + o, cap - o, "]");
    vial_req *rq;
    const vial_jv *v = ok(&rq, t);
    assert_int_equal(vial_jv_len(v), (size_t)n);
    const vial_jv *last = vial_jv_at(v, (size_t)n - 1);
    assert_int_equal(vial_jv_int(vial_jv_get(last, "id")), n - 1);
    assert_true(vial_jv_real(vial_jv_get(last, "v")) == n - 1 + 0.25);
    assert_string_equal(vial_jv_str(vial_jv_get(last, "s"), NULL), "caf\xc3\xa9\n");
    freereq(rq);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_media_types),
        cmocka_unit_test(test_error_before_parse_is_null),
        cmocka_unit_test(test_reject_empty_truncated),
        cmocka_unit_test(test_reject_trailing_data),
        cmocka_unit_test(test_reject_comments_quotes_commas),
        cmocka_unit_test(test_reject_nan_infinity),
        cmocka_unit_test(test_reject_bad_numbers),
        cmocka_unit_test(test_reject_control_whitespace),
        cmocka_unit_test(test_reject_bad_strings),
        cmocka_unit_test(test_reject_invalid_utf8),
        cmocka_unit_test(test_reject_lone_surrogate_escapes),
        cmocka_unit_test(test_error_location),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_integers_exact),
        cmocka_unit_test(test_reals_same_double),
        cmocka_unit_test(test_strings_exact),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_duplicate_keys_last_value_first_position),
        cmocka_unit_test(test_large_objects_indexed),
        cmocka_unit_test(test_null_safe_accessors),
        cmocka_unit_test(test_cached),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_write_null_value),
        cmocka_unit_test(test_write_non_finite_refused),
        cmocka_unit_test(test_big_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
