/* libFuzzer target for the request JSON parser (app/json_parse.c).
 *
 * Input: the request body (Content-Type: application/json). Besides the
 * sanitizers it checks:
 *  - the status is 0 or 400, with an error message exactly when 400;
 *  - an accepted value written back with vial_json_value (through the real
 *    streaming writer, json_writer.c) parses again to an equal value;
 *  - when built with jansson (VIAL_FUZZ_JANSSON), vial accepts exactly what
 *    jansson accepts, up to the documented differences (vial: integers
 *    beyond int64 become doubles, a UTF-8 BOM is skipped, nesting is capped
 *    at 512; jansson: no NUL in object keys, and it ignores a raw NUL after
 *    a number, which vial rejects), and both read the same values.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/request_state.h"
#include "http/exchange.h"

#ifdef VIAL_FUZZ_JANSSON
#include <jansson.h>
#endif

void vial_json_value(vial_json *j, const vial_jv *v);

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_json: invariant failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

static vial_req *rq, *rq2;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rq = calloc(1, sizeof *rq);
    rq2 = calloc(1, sizeof *rq2);
    CHECK(rq && rq2);
    return 0;
}

static int parse(vial_req *r, const char *body, size_t len, const vial_jv **v)
{
    vial_exchange_init(r, NULL, NULL);
    if (!vial_req_state_attach(r, NULL))
        abort();
    vial_http_field *h = &r->head.headers[0];
    h->name = (vial_span){"Content-Type", 12};
    h->value = (vial_span){"application/json; charset=utf-8", 31};
    r->head.nheaders = 1;
    r->body = body;
    r->body_len = len;
    *v = NULL;
    return vial_req_json(r, v);
}

static int depth_of(const vial_jv *v)
{
    /* only called on values that round-trip; recursion is fine here */
    int d = 0;
    if (vial_jv_type(v) == VIAL_JARRAY)
        for (size_t i = 0; i < vial_jv_len(v); i++) {
            int k = depth_of(vial_jv_at(v, i));
            d = k > d ? k : d;
        }
    else if (vial_jv_type(v) == VIAL_JOBJECT)
        for (size_t i = 0; i < vial_jv_len(v); i++) {
            int k = depth_of(vial_jv_value_at(v, i));
            d = k > d ? k : d;
        }
    else
        return 0;
    return d + 1;
}

static int has_nul_key(const vial_jv *v)
{
    size_t kl;
    if (vial_jv_type(v) == VIAL_JARRAY) {
        for (size_t i = 0; i < vial_jv_len(v); i++)
            if (has_nul_key(vial_jv_at(v, i)))
                return 1;
    } else if (vial_jv_type(v) == VIAL_JOBJECT) {
        for (size_t i = 0; i < vial_jv_len(v); i++) {
            const char *k = vial_jv_key_at(v, i, &kl);
            if (memchr(k, 0, kl) || has_nul_key(vial_jv_value_at(v, i)))
                return 1;
        }
    }
    return 0;
}

static int equal(const vial_jv *a, const vial_jv *b)
{
    size_t la, lb;
    if (vial_jv_type(a) != vial_jv_type(b)) {
        /* the writer prints a double without a fraction ("1e+20", "3") and
         * it may read back as an integer: same number */
        if (vial_jv_type(a) == VIAL_JREAL && vial_jv_type(b) == VIAL_JINT)
            return vial_jv_real(a) == (double)vial_jv_int(b);
        return 0;
    }
    switch (vial_jv_type(a)) {
    case VIAL_JINT:
        return vial_jv_int(a) == vial_jv_int(b);
    case VIAL_JREAL:
        return vial_jv_real(a) == vial_jv_real(b);
    case VIAL_JBIGINT: {
        const char *sa = vial_jv_bigint(a, &la), *sb = vial_jv_bigint(b, &lb);
        return la == lb && !memcmp(sa, sb, la);
    }
    case VIAL_JSTRING: {
        const char *sa = vial_jv_str(a, &la), *sb = vial_jv_str(b, &lb);
        return la == lb && !memcmp(sa, sb, la) && sa[la] == 0;
    }
    case VIAL_JARRAY:
        if (vial_jv_len(a) != vial_jv_len(b))
            return 0;
        for (size_t i = 0; i < vial_jv_len(a); i++)
            if (!equal(vial_jv_at(a, i), vial_jv_at(b, i)))
                return 0;
        return 1;
    case VIAL_JOBJECT:
        if (vial_jv_len(a) != vial_jv_len(b))
            return 0;
        for (size_t i = 0; i < vial_jv_len(a); i++) {
            const char *ka = vial_jv_key_at(a, i, &la), *kb = vial_jv_key_at(b, i, &lb);
            if (la != lb || memcmp(ka, kb, la) || !equal(vial_jv_value_at(a, i), vial_jv_value_at(b, i)))
                return 0;
            /* lookups by name find the same member (unless the key holds a
             * NUL, which a C string cannot name) */
            if (!memchr(ka, 0, la) && vial_jv_get(a, ka) != vial_jv_value_at(a, i))
                return 0;
        }
        return 1;
    default:
        return 1;
    }
}

#ifdef VIAL_FUZZ_JANSSON
static int same_as_jansson(const vial_jv *v, json_t *j)
{
    size_t n;
    switch (vial_jv_type(v)) {
    case VIAL_JNULL:
        return json_is_null(j);
    case VIAL_JTRUE:
        return json_is_true(j);
    case VIAL_JFALSE:
        return json_is_false(j);
    case VIAL_JINT:
        return json_is_integer(j) && json_integer_value(j) == vial_jv_int(v);
    case VIAL_JREAL:
        return json_is_real(j) && json_real_value(j) == vial_jv_real(v);
    case VIAL_JSTRING: {
        const char *s = vial_jv_str(v, &n);
        return json_is_string(j) && json_string_length(j) == n && !memcmp(json_string_value(j), s, n);
    }
    case VIAL_JARRAY:
        if (!json_is_array(j) || json_array_size(j) != vial_jv_len(v))
            return 0;
        for (size_t i = 0; i < vial_jv_len(v); i++)
            if (!same_as_jansson(vial_jv_at(v, i), json_array_get(j, i)))
                return 0;
        return 1;
    case VIAL_JOBJECT:
        if (!json_is_object(j) || json_object_size(j) != vial_jv_len(v))
            return 0;
        for (size_t i = 0; i < vial_jv_len(v); i++) {
            const char *k = vial_jv_key_at(v, i, &n);
            json_t *m = json_object_getn(j, k, n);
            if (!m || !same_as_jansson(vial_jv_value_at(v, i), m))
                return 0;
        }
        return 1;
    }
    return 0;
}

static void differential(const char *body, size_t len, int st, const vial_jv *v)
{
    /* A raw NUL is never valid JSON (not even inside a string); jansson 2.14
     * skips one that follows a number ("[0\0]" is accepted), so it is no
     * oracle for such inputs. */
    if (memchr(body, 0, len)) {
        CHECK(st != 0);
        return;
    }
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (st == 0 && !j) {
        int explained = strstr(err.text, "too big") != NULL                    /* int beyond int64 */
                        || (len >= 3 && !memcmp(body, "\xEF\xBB\xBF", 3))      /* BOM */
                        || (strstr(err.text, "NUL") && has_nul_key(v));         /* NUL in a key */
        if (!explained)
            fprintf(stderr, "vial accepts, jansson rejects: %s\n", err.text);
        CHECK(explained);
    } else if (st != 0 && j) {
        const char *e = vial_req_json_error(rq);
        CHECK(strstr(e, "512")); /* only the depth cap */
    } else if (st == 0 && j) {
        CHECK(same_as_jansson(v, j));
    }
    json_decref(j);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    memcpy(body, data, size);
    const vial_jv *v;
    int st = parse(rq, body, size, &v);
    CHECK(st == 0 || st == VIAL_EHTTP(400));
    CHECK((st == 0) == (v != NULL));
    CHECK((st == 0) == (vial_req_json_error(rq) == NULL));
#ifdef VIAL_FUZZ_JANSSON
    differential(body, size, st, v);
#endif
    /* json_writer.c nests at most 63 levels today; deeper values are not
     * written back */
    if (st == 0 && depth_of(v) < 63 && !has_nul_key(v)) {
        vial_json *j = vial_json_begin(&rq->res, 200);
        vial_json_value(j, v);
        CHECK(vial_json_finish(j) == 0);
        size_t out_len = rq->res.body_len;
        char *copy = malloc(out_len ? out_len : 1);
        memcpy(copy, rq->res.body, out_len);
        const vial_jv *v2;
        int st2 = parse(rq2, copy, out_len, &v2);
        if (st2 != 0)
            fprintf(stderr, "written back: %.*s\nerror: %s\n", (int)out_len, copy, vial_req_json_error(rq2));
        CHECK(st2 == 0);
        CHECK(equal(v, v2));
        vial_exchange_fini(rq2);
        free(copy);
    }
    vial_exchange_fini(rq);
    free(body);
    return 0;
}
