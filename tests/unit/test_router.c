/* Router: converters (accept/reject, bounds), Werkzeug precedence whatever
 * the registration order, backtracking, methods/405/Allow, strict slashes,
 * large trees, url_for building and encoding, malformed patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/router.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- fixtures and helpers ---------------------------------------------------- */

static char abuf[8192];
static vial_arena arena;
static vial_match m;

static int setup(void **state)
{
    vial_router *r = vial_router_new();
    assert_non_null(r);
    vial_arena_init(&arena, abuf, sizeof abuf);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    vial_router_free(*state);
    vial_arena_reset(&arena, NULL, 0);
    return 0;
}

/* Adds pattern for the comma-separated methods ("GET,POST"); the target is
 * the string tag, so tests can tell rules apart. */
static int add_tag(vial_router *r, const char *methods, const char *pattern, const char *tag,
                   vial_router_rule **out)
{
    char buf[128];
    const char *list[16];
    unsigned n = 0;
    snprintf(buf, sizeof buf, "%s", methods);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        list[n++] = tok;
    list[n] = NULL;
    return vial_router_add(r, pattern, list, (void *)tag, out);
}

static void add_ok(vial_router *r, const char *methods, const char *pattern, const char *tag)
{
    assert_int_equal(add_tag(r, methods, pattern, tag, NULL), 0);
}

static int match(vial_router *r, const char *path, const char *method)
{
    vial_arena_reset(&arena, abuf, sizeof abuf);
    memset(&m, 0x55, sizeof m);
    return vial_router_match(r, path, method, &arena, &m);
}

/* GET path must match the rule tagged tag. */
static void expect(vial_router *r, const char *path, const char *tag)
{
    int rc = match(r, path, "GET");
    if (rc != VIAL_MATCH_OK)
        fail_msg("GET %s: result %d, expected rule %s", path, rc, tag);
    assert_string_equal((const char *)m.target, tag);
}

static void expect_none(vial_router *r, const char *path)
{
    int rc = match(r, path, "GET");
    if (rc != VIAL_MATCH_NONE)
        fail_msg("GET %s: result %d (%s), expected no match", path, rc,
                 rc == VIAL_MATCH_OK ? (const char *)m.target : "-");
}

static const vial_param *param(const char *name)
{
    for (unsigned i = 0; i < m.nparams; i++)
        if (!strcmp(m.params[i].name, name))
            return &m.params[i];
    fail_msg("no parameter %s", name);
    return NULL;
}

static const char *pval(const char *name)
{
    return param(name)->value;
}

static char *allow(vial_router *r, const char *path)
{
    vial_arena_reset(&arena, abuf, sizeof abuf);
    return vial_router_allow(r, path, &arena);
}

/* url_for through rule with a NULL-terminated key/value list. */
static char *build(const vial_router_rule *rule, ...)
{
    const char *kv[32];
    size_t n = 0;
    va_list ap;
    va_start(ap, rule);
    for (const char *k; (k = va_arg(ap, const char *));) {
        kv[n++] = k;
        kv[n++] = va_arg(ap, const char *);
    }
    va_end(ap);
    vial_arena_reset(&arena, abuf, sizeof abuf);
    return vial_router_build(rule, kv, n / 2, &arena);
}

/* --- static routes ------------------------------------------------------------ */

static void test_static(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/", "root");
    add_ok(r, "GET", "/about", "about");
    add_ok(r, "GET", "/about/team", "team");
    add_ok(r, "GET", "/abc", "abc");
    add_ok(r, "GET", "/caf\xc3\xa9 menu", "cafe"); /* the router sees decoded paths */
    expect(r, "/", "root");
    expect(r, "/about", "about");
    expect(r, "/about/team", "team");
    expect(r, "/abc", "abc");
    expect(r, "/caf\xc3\xa9 menu", "cafe");
    assert_int_equal(m.nparams, 0);
    expect_none(r, "/abou");
    expect_none(r, "/aboutx");
    expect_none(r, "/ab");
    expect_none(r, "/about/team/x");
    expect_none(r, "/About");
    expect_none(r, "");
    expect_none(r, "about");
}

/* A decoded %00 is part of the path: the _n entry points see it. */
static void test_nul_in_path(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/users/<int:id>", "user");
    add_ok(r, "GET", "/hello/<name>", "hello");
    add_ok(r, "GET", "/files/<path:p>", "files");
    add_ok(r, "GET", "/about", "about");
    add_ok(r, "GET", "/dir/", "dir");
    add_ok(r, "GET,POST", "/m", "m");
#define MATCH_N(lit, meth) \
    (vial_arena_reset(&arena, abuf, sizeof abuf), \
     vial_router_match_n(r, lit, sizeof lit - 1, meth, &arena, &m))
    assert_int_equal(MATCH_N("/users/1\0", "GET"), VIAL_MATCH_NONE);
    assert_int_equal(MATCH_N("/users/1\0" "2", "GET"), VIAL_MATCH_NONE);
    assert_int_equal(MATCH_N("/users/12", "GET"), VIAL_MATCH_OK);
    assert_int_equal(m.params[0].len, 2);
    assert_int_equal(MATCH_N("/hello/a\0b", "GET"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "hello");
    assert_int_equal(m.params[0].len, 3);
    assert_memory_equal(m.params[0].value, "a\0b", 4); /* NUL-terminated after the 3 bytes */
    assert_int_equal(MATCH_N("/files/a\0b/c", "GET"), VIAL_MATCH_OK);
    assert_int_equal(m.params[0].len, 5);
    assert_memory_equal(m.params[0].value, "a\0b/c", 6);
    assert_int_equal(MATCH_N("/about\0", "GET"), VIAL_MATCH_NONE);
    assert_int_equal(MATCH_N("/dir\0", "GET"), VIAL_MATCH_NONE); /* "/dir\0/" is not "/dir/" */
    assert_int_equal(MATCH_N("/m\0", "PUT"), VIAL_MATCH_NONE);
    assert_int_equal(MATCH_N("/m", "PUT"), VIAL_MATCH_METHOD);
#undef MATCH_N
    vial_arena_reset(&arena, abuf, sizeof abuf);
    assert_null(vial_router_allow_n(r, "/m\0", 3, &arena));
    assert_string_equal(vial_router_allow_n(r, "/m\0", 2, &arena), "GET, HEAD, OPTIONS, POST");
    assert_int_equal(vial_router_match_n(r, "", 0, "GET", &arena, &m), VIAL_MATCH_NONE);
}

/* --- converters ----------------------------------------------------------------- */

static void test_string_converter(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/hello/<name>", "hello");
    add_ok(r, "GET", "/s/<string:a>/<default:b>", "two");
    expect(r, "/hello/world", "hello");
    assert_int_equal(m.nparams, 1);
    assert_string_equal(pval("name"), "world");
    assert_int_equal(param("name")->len, 5);
    expect(r, "/hello/w\xc3\xb6rld x", "hello");
    assert_string_equal(pval("name"), "w\xc3\xb6rld x");
    expect(r, "/hello/a.b%2Fc+d", "hello");
    assert_string_equal(pval("name"), "a.b%2Fc+d");
    expect(r, "/s/x/y", "two");
    assert_string_equal(pval("a"), "x");
    assert_string_equal(pval("b"), "y");
    assert_string_equal(m.params[0].name, "a"); /* pattern order */
    assert_string_equal(m.params[1].name, "b");
    expect_none(r, "/hello/");
    expect_none(r, "/hello/a/b");
    expect_none(r, "/hello/a/");
    expect_none(r, "/s/x");
    expect_none(r, "/s//y");
}

static void test_int_converter(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/users/<int:id>", "user");
    expect(r, "/users/42", "user");
    assert_string_equal(pval("id"), "42");
    assert_int_equal(param("id")->ival, 42);
    expect(r, "/users/0", "user");
    assert_int_equal(param("id")->ival, 0);
    expect(r, "/users/007", "user");
    assert_int_equal(param("id")->ival, 7);
    assert_string_equal(pval("id"), "007");
    expect(r, "/users/00000000000000000000000001", "user"); /* many digits, small value */
    assert_int_equal(param("id")->ival, 1);
    expect(r, "/users/9223372036854775807", "user"); /* 2^63 - 1 */
    assert_true(param("id")->ival == INT64_MAX);
    expect_none(r, "/users/9223372036854775808"); /* 2^63 */
    expect_none(r, "/users/18446744073709551616");  /* 2^64: no wrap-around */
    expect_none(r, "/users/99999999999999999999999999");
    expect_none(r, "/users/-1");
    expect_none(r, "/users/+1");
    expect_none(r, "/users/1a");
    expect_none(r, "/users/a1");
    expect_none(r, "/users/1.0");
    expect_none(r, "/users/ 1");
    expect_none(r, "/users/\xd9\xa1"); /* ARABIC-INDIC DIGIT ONE: ASCII only */
    expect_none(r, "/users/");
    expect_none(r, "/users/1/");
}

static void test_int_bounds(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/status/<int(min=200,max=599):code>", "status");
    add_ok(r, "GET", "/page/<int( min = 1 , max=5 ):n>", "page");
    add_ok(r, "GET", "/min/<int(min=10):n>", "min");
    add_ok(r, "GET", "/max/<int(max=10):n>", "max");
    add_ok(r, "GET", "/neg/<int(min=-5,max=0):n>", "neg");
    expect(r, "/status/200", "status");
    assert_int_equal(param("code")->ival, 200);
    expect(r, "/status/599", "status");
    expect(r, "/status/0404", "status");
    assert_int_equal(param("code")->ival, 404);
    expect_none(r, "/status/199");
    expect_none(r, "/status/600");
    expect_none(r, "/status/99999999999999999999");
    expect(r, "/page/1", "page");
    expect(r, "/page/5", "page");
    expect_none(r, "/page/0");
    expect_none(r, "/page/6");
    expect(r, "/min/9223372036854775807", "min");
    expect_none(r, "/min/9");
    expect(r, "/max/0", "max");
    expect_none(r, "/max/11");
    expect(r, "/neg/0", "neg");
    expect_none(r, "/neg/1");
    expect_none(r, "/neg/-1"); /* no sign in paths, whatever the bounds */
}

static void test_float_converter(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/f/<float:x>", "f");
    expect(r, "/f/1.5", "f");
    assert_string_equal(pval("x"), "1.5");
    assert_true(param("x")->dval == 1.5);
    expect(r, "/f/0.0", "f");
    assert_true(param("x")->dval == 0.0);
    expect(r, "/f/0010.250", "f");
    assert_true(param("x")->dval == 10.25);
    expect(r, "/f/3.14159265358979", "f");
    assert_true(param("x")->dval > 3.14159 && param("x")->dval < 3.1416);
    const char *bad[] = {"1", "1.", ".5", "-1.5", "+1.5", "1e5", "1.5e3", "1.2.3",
                         "1,5", "inf", "nan", "0x1.0p3", " 1.5", "1.5 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "/f/%s", bad[i]);
        expect_none(r, path);
    }
}

/* dval does not depend on the process's LC_NUMERIC. */
static void test_float_locale(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/f/<float:x>", "f");
    const char *locales[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "ru_RU.UTF-8"};
    const char *set = NULL;
    for (size_t i = 0; i < 4 && !set; i++)
        set = setlocale(LC_NUMERIC, locales[i]);
    if (!set)
        skip(); /* no comma-decimal locale installed */
    expect(r, "/f/2.25", "f");
    setlocale(LC_NUMERIC, "C");
    assert_true(param("x")->dval == 2.25);
}

static void test_uuid_converter(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/o/<uuid:id>", "o");
    expect(r, "/o/123e4567-e89b-12d3-a456-426614174000", "o");
    assert_string_equal(pval("id"), "123e4567-e89b-12d3-a456-426614174000");
    expect(r, "/o/123E4567-E89B-12D3-A456-426614174ABC", "o");
    expect(r, "/o/abcdefAB-cdef-ABCD-abcd-ABCDEFabcdef", "o");
    const char *bad[] = {
        "123e4567e89b12d3a456426614174000",       /* no dashes */
        "123e4567-e89b-12d3-a456-42661417400",    /* 11 in the last group */
        "123e4567-e89b-12d3-a456-4266141740000",  /* 13 */
        "123e456-7e89b-12d3-a456-426614174000",   /* dash misplaced */
        "123e4567-e89b-12d3-a456-42661417400g",   /* not hex */
        "{123e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456_426614174000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[80];
        snprintf(path, sizeof path, "/o/%s", bad[i]);
        expect_none(r, path);
    }
}

static void test_path_converter(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/files/<path:p>", "files");
    add_ok(r, "GET", "/repo/<path:p>/edit", "edit");
    add_ok(r, "GET", "/two/<path:a>/x/<path:b>", "two");
    expect(r, "/files/a", "files");
    assert_string_equal(pval("p"), "a");
    expect(r, "/files/docs/read me.txt", "files");
    assert_string_equal(pval("p"), "docs/read me.txt");
    expect(r, "/files/a/b/", "files"); /* a trailing '/' is kept */
    assert_string_equal(pval("p"), "a/b/");
    expect(r, "/files/a//b", "files");
    assert_string_equal(pval("p"), "a//b");
    expect_none(r, "/files/");
    expect_none(r, "/files//a"); /* the first byte is not '/' (Werkzeug) */
    expect_none(r, "/files");
    expect(r, "/repo/a/b/edit", "edit");
    assert_string_equal(pval("p"), "a/b");
    expect(r, "/repo/edit/edit", "edit");
    assert_string_equal(pval("p"), "edit");
    expect(r, "/repo/a/edit/b/edit", "edit");
    assert_string_equal(pval("p"), "a/edit/b");
    expect_none(r, "/repo/edit");
    expect_none(r, "/repo/a/edit/");
    expect(r, "/two/1/2/x/3/x/4", "two"); /* the first path is the shortest that fits */
    assert_string_equal(pval("a"), "1/2");
    assert_string_equal(pval("b"), "3/x/4");
}

/* Several <path:> converters and a long path that fails at the very end:
 * every split would be tried; the walk's step budget ends it quickly. */
static void test_path_backtracking_bounded(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/<path:a>/x/<path:b>/x/<path:c>/x/<path:d>/y", "four");
    enum { SEGS = 3000 };
    static char path[SEGS * 2 + 8];
    char *p = path;
    for (int i = 0; i < SEGS; i++) {
        *p++ = '/';
        *p++ = 'x';
    }
    strcpy(p, "/z");
    expect_none(r, path);
    strcpy(p, "/y"); /* the shortest splits come first: found at once */
    expect(r, path, "four");
    assert_string_equal(pval("a"), "x");
    assert_int_equal(strlen(pval("d")), 2 * SEGS - 13);
}

static int is_lower_hex(const char *s, size_t n, void *arg)
{
    (*(int *)arg)++;
    if (memchr(s, '/', n))
        fail_msg("a converter saw a '/'");
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int is_even_len(const char *s, size_t n, void *arg)
{
    (void)s;
    (void)arg;
    return n % 2 == 0;
}

static void test_user_converter(void **state)
{
    vial_router *r = *state;
    int calls = 0;
    assert_int_equal(vial_router_add_converter(r, "hex", is_lower_hex, &calls), 0);
    assert_int_equal(vial_router_add_converter(r, "even", is_even_len, NULL), 0);
    assert_int_equal(vial_router_add_converter(r, "hex", is_lower_hex, NULL), -EEXIST);
    assert_int_equal(vial_router_add_converter(r, "int", is_lower_hex, NULL), -EEXIST);
    assert_int_equal(vial_router_add_converter(r, "path", is_lower_hex, NULL), -EEXIST);
    assert_int_equal(vial_router_add_converter(r, "bad name", is_lower_hex, NULL), -EINVAL);
    assert_int_equal(vial_router_add_converter(r, "", is_lower_hex, NULL), -EINVAL);
    assert_int_equal(vial_router_add_converter(r, "1x", is_lower_hex, NULL), -EINVAL);
    assert_int_equal(vial_router_add_converter(r, "x", NULL, NULL), -EINVAL);
    assert_int_equal(add_tag(r, "GET", "/c/<nope:c>", "x", NULL), -EINVAL);
    assert_int_equal(add_tag(r, "GET", "/c/<hex(1):c>", "x", NULL), -EINVAL);

    add_ok(r, "GET", "/color/<hex:c>", "color");
    add_ok(r, "GET", "/color/<even:e>/x", "even");
    add_ok(r, "GET", "/color/<name>/x", "name");
    expect(r, "/color/ff00aa", "color");
    assert_string_equal(pval("c"), "ff00aa");
    assert_true(calls > 0);
    expect_none(r, "/color/FF00AA");
    expect_none(r, "/color/ff/00");
    expect(r, "/color/ab/x", "even"); /* user converters before string */
    expect(r, "/color/abc/x", "name");
}

/* --- precedence and backtracking ------------------------------------------------- */

static void test_precedence(void **state)
{
    vial_router *r = *state;
    /* Registered from the least to the most specific. */
    add_ok(r, "GET", "/p/<path:x>", "path");
    add_ok(r, "GET", "/p/<s>", "string");
    add_ok(r, "GET", "/p/<uuid:u>", "uuid");
    add_ok(r, "GET", "/p/<float:f>", "float");
    add_ok(r, "GET", "/p/<int:i>", "int");
    add_ok(r, "GET", "/p/static", "static");
    add_ok(r, "GET", "/p/12", "twelve");
    expect(r, "/p/static", "static");
    expect(r, "/p/12", "twelve");
    expect(r, "/p/13", "int");
    expect(r, "/p/1.5", "float");
    expect(r, "/p/123e4567-e89b-12d3-a456-426614174000", "uuid");
    expect(r, "/p/abc", "string");
    expect(r, "/p/staticx", "string");
    expect(r, "/p/stati", "string");
    expect(r, "/p/a/b", "path");
    expect(r, "/p/static/", "path");
}

static void test_precedence_same_kind(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/n/<int(min=100):big>", "big");
    add_ok(r, "GET", "/n/<int(max=9):small>", "small");
    expect(r, "/n/5", "small");
    assert_string_equal(pval("small"), "5");
    expect(r, "/n/500", "big");
    expect_none(r, "/n/50");
}

static void test_backtracking(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/a/<x>/c", "conv");
    add_ok(r, "GET", "/a/b/d", "static");
    expect(r, "/a/b/c", "conv");
    assert_string_equal(pval("x"), "b");
    expect(r, "/a/b/d", "static");
    expect(r, "/a/z/c", "conv");
    expect_none(r, "/a/b/e");
    expect_none(r, "/a/z/d");

    /* Deep: the static branch fails several segments down. */
    add_ok(r, "GET", "/k/l/m/n/o", "deep-static");
    add_ok(r, "GET", "/k/<a>/m/<b>/p", "deep-conv");
    add_ok(r, "GET", "/k/l/<c>/n/q", "mid-conv");
    expect(r, "/k/l/m/n/o", "deep-static");
    expect(r, "/k/l/m/n/p", "deep-conv");
    assert_string_equal(pval("a"), "l");
    assert_string_equal(pval("b"), "n");
    expect(r, "/k/l/m/n/q", "mid-conv");
    assert_string_equal(pval("c"), "m");
    assert_int_equal(m.nparams, 1);

    /* A static edge that diverges mid-segment. */
    add_ok(r, "GET", "/abc/x", "abc");
    add_ok(r, "GET", "/<seg>/y", "seg");
    expect(r, "/abc/y", "seg");
    assert_string_equal(pval("seg"), "abc");
    expect(r, "/ab/y", "seg");
    expect(r, "/abc/x", "abc");

    /* Converter alternatives fail later: int first, then string. */
    add_ok(r, "GET", "/t/<int:i>/int", "t-int");
    add_ok(r, "GET", "/t/<s>/str", "t-str");
    expect(r, "/t/5/str", "t-str");
    assert_string_equal(pval("s"), "5");
    expect(r, "/t/5/int", "t-int");
    assert_int_equal(param("i")->ival, 5);
    /* A failed branch leaves no stale parameters behind. */
    assert_int_equal(m.nparams, 1);
}

/* --- methods, 405 and Allow -------------------------------------------------------- */

static void test_methods(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET,POST", "/methods", "methods");
    assert_int_equal(match(r, "/methods", "GET"), VIAL_MATCH_OK);
    assert_int_equal(match(r, "/methods", "POST"), VIAL_MATCH_OK);
    assert_int_equal(match(r, "/methods", "PUT"), VIAL_MATCH_METHOD);
    assert_null(m.rule);
    assert_int_equal(match(r, "/methods", "get"), VIAL_MATCH_METHOD); /* case-sensitive */
    assert_int_equal(match(r, "/methods", "HEAD"), VIAL_MATCH_METHOD); /* the app maps HEAD */
    assert_int_equal(match(r, "/nothing", "PUT"), VIAL_MATCH_NONE);
    assert_string_equal(allow(r, "/methods"), "GET, HEAD, OPTIONS, POST");
    assert_null(allow(r, "/nothing"));
    assert_null(allow(r, "/methods/"));

    add_ok(r, "POST", "/post", "post");
    assert_string_equal(allow(r, "/post"), "OPTIONS, POST"); /* no HEAD without GET */
    add_ok(r, "GET,HEAD,OPTIONS", "/explicit", "explicit");
    assert_string_equal(allow(r, "/explicit"), "GET, HEAD, OPTIONS");
    add_ok(r, "GET,GET,PUT", "/dups", "dups");
    assert_string_equal(allow(r, "/dups"), "GET, HEAD, OPTIONS, PUT");
    add_ok(r, "PROPFIND", "/dav", "dav");
    assert_int_equal(match(r, "/dav", "PROPFIND"), VIAL_MATCH_OK);
}

static void test_same_pattern_several_rules(void **state)
{
    vial_router *r = *state;
    vial_router_rule *get, *post;
    assert_int_equal(add_tag(r, "GET", "/r", "r-get", &get), 0);
    assert_int_equal(add_tag(r, "POST", "/r", "r-post", &post), 0);
    add_ok(r, "DELETE,PATCH", "/r", "r-del");
    assert_int_equal(add_tag(r, "GET", "/r", "dup", NULL), -EEXIST);
    assert_int_equal(add_tag(r, "PUT,PATCH", "/r", "dup", NULL), -EEXIST);
    assert_int_equal(match(r, "/r", "GET"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "r-get");
    assert_ptr_equal(m.rule, get);
    assert_int_equal(match(r, "/r", "POST"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "r-post");
    assert_ptr_equal(m.rule, post);
    assert_int_equal(match(r, "/r", "PATCH"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "r-del");
    assert_int_equal(match(r, "/r", "PUT"), VIAL_MATCH_METHOD);
    assert_string_equal(allow(r, "/r"), "DELETE, GET, HEAD, OPTIONS, PATCH, POST");

    /* The same pattern up to parameter names is the same pattern. */
    add_ok(r, "GET", "/u/<int:a>", "u-get");
    assert_int_equal(add_tag(r, "GET", "/u/<int:b>", "dup", NULL), -EEXIST);
    add_ok(r, "POST", "/u/<int:b>", "u-post");
    assert_int_equal(match(r, "/u/7", "POST"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "u-post");
    assert_string_equal(m.params[0].name, "b"); /* names come from the chosen rule */
    assert_int_equal(match(r, "/u/7", "GET"), VIAL_MATCH_OK);
    assert_string_equal(m.params[0].name, "a");
    /* Different converters are different patterns. */
    add_ok(r, "GET", "/u/<int(max=5):c>", "u-small");
    add_ok(r, "GET", "/u/<d>", "u-str");
    /* A failed add leaves the router as it was. */
    assert_int_equal(match(r, "/u/7", "GET"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "u-get");
}

/* A rule with the wrong method makes the walk carry on, as Werkzeug does. */
static void test_method_backtracking(void **state)
{
    vial_router *r = *state;
    add_ok(r, "POST", "/a/b", "static-post");
    add_ok(r, "GET", "/a/<x>", "conv-get");
    assert_int_equal(match(r, "/a/b", "GET"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "conv-get");
    assert_string_equal(pval("x"), "b");
    assert_int_equal(match(r, "/a/b", "POST"), VIAL_MATCH_OK);
    assert_string_equal(m.target, "static-post");
    assert_int_equal(m.nparams, 0);
    assert_int_equal(match(r, "/a/c", "POST"), VIAL_MATCH_METHOD);
    assert_int_equal(match(r, "/a/b", "PUT"), VIAL_MATCH_METHOD);
    assert_string_equal(allow(r, "/a/b"), "GET, HEAD, OPTIONS, POST");
    assert_string_equal(allow(r, "/a/c"), "GET, HEAD, OPTIONS");
}

/* --- strict slashes ------------------------------------------------------------------ */

static void test_strict_slashes(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/dir/", "dir");
    add_ok(r, "GET,POST", "/methods", "methods");
    add_ok(r, "GET", "/dirx", "dirx");
    add_ok(r, "GET", "/users/<int:id>/", "user");
    add_ok(r, "GET", "/deep/a/b/", "deep");
    add_ok(r, "GET", "/files/<path:p>", "files");
    expect(r, "/dir/", "dir");
    assert_int_equal(match(r, "/dir", "GET"), VIAL_MATCH_REDIRECT);
    assert_null(m.rule);
    assert_int_equal(match(r, "/dir", "HEAD"), VIAL_MATCH_REDIRECT);
    assert_int_equal(match(r, "/dir", "POST"), VIAL_MATCH_REDIRECT); /* any method */
    expect(r, "/dirx", "dirx");
    expect_none(r, "/dirx/");
    expect_none(r, "/methods/");
    expect_none(r, "/di");
    expect(r, "/users/5/", "user");
    assert_int_equal(param("id")->ival, 5);
    assert_int_equal(match(r, "/users/5", "GET"), VIAL_MATCH_REDIRECT);
    expect_none(r, "/users/x");
    assert_int_equal(match(r, "/deep/a/b", "GET"), VIAL_MATCH_REDIRECT);
    expect_none(r, "/deep/a");
    expect_none(r, "/dir//");
    expect_none(r, "/files/"); /* "/files//" would need a path starting with '/' */
    expect(r, "/files/x", "files");

    /* A path that matches with the wrong method is a 405, not a redirect. */
    add_ok(r, "POST", "/both", "both-post");
    add_ok(r, "GET", "/both/", "both-slash");
    assert_int_equal(match(r, "/both", "GET"), VIAL_MATCH_METHOD);
    assert_int_equal(match(r, "/both", "POST"), VIAL_MATCH_OK);

    /* The root: "" is not a path. */
    assert_int_equal(match(r, "", "GET"), VIAL_MATCH_NONE);
}

static void test_redirect_through_path_converter(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/repo/<path:p>/", "repo");
    expect(r, "/repo/a/b/", "repo");
    assert_string_equal(pval("p"), "a/b");
    assert_int_equal(match(r, "/repo/a/b", "GET"), VIAL_MATCH_REDIRECT);
}

/* --- larger trees -------------------------------------------------------------------- */

static void test_many_rules(void **state)
{
    vial_router *r = *state;
    enum { N = 2000 };
    static char tags[N][4][48];
    for (int i = 0; i < N; i++) {
        char pat[96];
        snprintf(tags[i][0], 48, "static%d", i);
        snprintf(pat, sizeof pat, "/static/page%d", i);
        add_ok(r, "GET", pat, tags[i][0]);
        snprintf(tags[i][1], 48, "res%d", i);
        snprintf(pat, sizeof pat, "/api/v1/resource%d/<int:id>", i);
        add_ok(r, "GET,PUT", pat, tags[i][1]);
        snprintf(tags[i][2], 48, "sub%d", i);
        snprintf(pat, sizeof pat, "/api/v1/resource%d/<int:id>/sub/<name>", i);
        add_ok(r, "GET", pat, tags[i][2]);
        snprintf(tags[i][3], 48, "slash%d", i);
        snprintf(pat, sizeof pat, "/dirs/d%d/", i);
        add_ok(r, "GET", pat, tags[i][3]);
    }
    for (int i = 0; i < N; i++) {
        char path[128];
        snprintf(path, sizeof path, "/static/page%d", i);
        expect(r, path, tags[i][0]);
        snprintf(path, sizeof path, "/api/v1/resource%d/%d", i, i * 7);
        expect(r, path, tags[i][1]);
        assert_int_equal(param("id")->ival, i * 7);
        snprintf(path, sizeof path, "/api/v1/resource%d/%d/sub/n%d", i, i, i);
        expect(r, path, tags[i][2]);
        char want[16];
        snprintf(want, sizeof want, "n%d", i);
        assert_string_equal(pval("name"), want);
        snprintf(path, sizeof path, "/dirs/d%d", i);
        assert_int_equal(match(r, path, "GET"), VIAL_MATCH_REDIRECT);
        snprintf(path, sizeof path, "/api/v1/resource%d/x", i);
        expect_none(r, path);
        snprintf(path, sizeof path, "/static/page%d", i + N);
        expect_none(r, path);
    }
    assert_int_equal(match(r, "/api/v1/resource17/3", "DELETE"), VIAL_MATCH_METHOD);
    assert_string_equal(allow(r, "/api/v1/resource17/3"), "GET, HEAD, OPTIONS, PUT");
}

/* Matching allocates nothing but parameter values. */
static void test_match_allocates_only_values(void **state)
{
    vial_router *r = *state;
    add_ok(r, "GET", "/a/b/c", "static");
    add_ok(r, "GET", "/a/<x>/<int:y>", "params");
    add_ok(r, "GET", "/d/", "dir");
    char small[64];
    vial_arena a;
    vial_arena_init(&a, small, sizeof small);
    assert_int_equal(vial_router_match(r, "/a/b/c", "GET", &a, &m), VIAL_MATCH_OK);
    assert_int_equal(vial_router_match(r, "/a/b/c", "PUT", &a, &m), VIAL_MATCH_METHOD);
    assert_int_equal(vial_router_match(r, "/d", "GET", &a, &m), VIAL_MATCH_REDIRECT);
    assert_int_equal(vial_router_match(r, "/zzz", "GET", &a, &m), VIAL_MATCH_NONE);
    assert_ptr_equal(a.cur, small);
    assert_int_equal(vial_router_match(r, "/a/q/12", "GET", &a, &m), VIAL_MATCH_OK);
    assert_true(a.cur > small && a.cur <= small + sizeof small);
    assert_null(a.blocks);
    assert_string_equal(m.params[0].value, "q");
    assert_string_equal(m.params[1].value, "12");
}

/* --- randomized cross-check -------------------------------------------------------------
 * Random rule sets and paths, checked against a per-rule reference matcher:
 * the router's answer must be one a rule-by-rule search allows (the rule
 * matches, has the method, gives the same values; 405 and 308 exactly when
 * they should be; Allow is the union of the matching rules' methods). */

enum { R_STATIC, R_INT, R_FLOAT, R_STRING, R_PATH };

typedef struct ref_tok {
    int kind;
    const char *text; /* R_STATIC */
} ref_tok;

typedef struct ref_rule {
    ref_tok toks[4];
    int ntoks, slash, methods; /* methods: bit 0 GET, 1 POST, 2 PUT */
    vial_router_rule *rule;
} ref_rule;

static const char *const method_names[] = {"GET", "POST", "PUT"};
static const char *const words[] = {"a", "b", "ab", "1", "12", "1.5", "x.y"};
#define NWORDS (sizeof words / sizeof words[0])

static int ref_seg_ok(int kind, const char *s, size_t n)
{
    if (!n)
        return 0;
    size_t i = 0;
    switch (kind) {
    case R_INT:
        for (; i < n; i++)
            if (s[i] < '0' || s[i] > '9')
                return 0;
        return 1;
    case R_FLOAT: {
        size_t dot = 0, ndots = 0;
        for (; i < n; i++)
            if (s[i] == '.')
                dot = i, ndots++;
            else if (s[i] < '0' || s[i] > '9')
                return 0;
        return ndots == 1 && dot > 0 && dot < n - 1;
    }
    default:
        return 1;
    }
}

/* Does the rule match path[pos..n) from token t on? Values go to vals. */
static int ref_match_from(const ref_rule *rr, int t, const char *path, size_t pos, size_t n,
                          size_t (*vals)[2], int nv)
{
    if (t == rr->ntoks) {
        if (rr->slash)
            return pos + 1 == n && path[pos] == '/';
        return pos == n;
    }
    if (pos >= n || path[pos] != '/')
        return 0;
    pos++;
    const ref_tok *tk = &rr->toks[t];
    if (tk->kind == R_STATIC) {
        size_t l = strlen(tk->text);
        if (n - pos < l || memcmp(path + pos, tk->text, l) || (pos + l < n && path[pos + l] != '/'))
            return 0;
        return ref_match_from(rr, t + 1, path, pos + l, n, vals, nv);
    }
    if (tk->kind == R_PATH) {
        if (pos >= n || path[pos] == '/')
            return 0;
        for (size_t e = pos + 1; e <= n; e++) {
            if (e < n && path[e] != '/')
                continue;
            vals[nv][0] = pos;
            vals[nv][1] = e - pos;
            if (ref_match_from(rr, t + 1, path, e, n, vals, nv + 1))
                return 1;
        }
        return 0;
    }
    size_t e = pos;
    while (e < n && path[e] != '/')
        e++;
    if (!ref_seg_ok(tk->kind, path + pos, e - pos))
        return 0;
    vals[nv][0] = pos;
    vals[nv][1] = e - pos;
    return ref_match_from(rr, t + 1, path, e, n, vals, nv + 1);
}

/* A static rule's trailing slash is a token of its own in the router; the
 * reference reads "/a/" as tokens then a slash. A <path:> at the end takes
 * the slash into its value instead, which ref_match_from handles because
 * the path branch tries the end of the string last. */
static int ref_match(const ref_rule *rr, const char *path, size_t (*vals)[2])
{
    return ref_match_from(rr, 0, path, 0, strlen(path), vals, 0);
}

static unsigned rnd_state = 12345;
static unsigned rnd(unsigned n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) % n;
}

static void random_rule(ref_rule *rr, char *pattern, size_t cap)
{
    memset(rr, 0, sizeof *rr);
    rr->ntoks = 1 + (int)rnd(3);
    size_t len = 0;
    pattern[0] = 0;
    for (int t = 0; t < rr->ntoks; t++) {
        int kind = rnd(10) < 5 ? R_STATIC : 1 + (int)rnd(4);
        if (kind == R_PATH && t == 0 && rnd(2))
            kind = R_STRING;
        rr->toks[t].kind = kind;
        static const char *const conv[] = {"", "int:", "float:", "", "path:"};
        if (kind == R_STATIC) {
            rr->toks[t].text = words[rnd(NWORDS)];
            len += (size_t)snprintf(pattern + len, cap - len, "/%s", rr->toks[t].text);
        } else {
            len += (size_t)snprintf(pattern + len, cap - len, "/<%sp%d>", conv[kind], t);
        }
    }
    rr->slash = rnd(4) == 0;
    if (rr->slash)
        snprintf(pattern + len, cap - len, "/");
    rr->methods = 1 + (int)rnd(7);
}

static void random_path(char *path, size_t cap)
{
    int nseg = 1 + (int)rnd(4);
    size_t len = 0;
    for (int i = 0; i < nseg; i++)
        len += (size_t)snprintf(path + len, cap - len, "/%s", words[rnd(NWORDS)]);
    if (rnd(4) == 0)
        snprintf(path + len, cap - len, "/");
}

static void cross_check_one(vial_router *r, ref_rule *rules, int nrules, const char *path)
{
    size_t vals[8][2];
    int any = 0, any_slash = 0;
    char slashed[160];
    snprintf(slashed, sizeof slashed, "%s/", path);
    unsigned allow_bits = 0;
    for (int i = 0; i < nrules; i++) {
        if (ref_match(&rules[i], path, vals)) {
            any = 1;
            allow_bits |= (unsigned)rules[i].methods;
        }
        any_slash |= ref_match(&rules[i], slashed, vals);
    }
    for (int mi = 0; mi < 3; mi++) {
        int rc = match(r, path, method_names[mi]);
        int has_method = 0;
        for (int i = 0; i < nrules; i++)
            if ((rules[i].methods >> mi & 1) && ref_match(&rules[i], path, vals))
                has_method = 1;
        if (has_method) {
            if (rc != VIAL_MATCH_OK)
                fail_msg("%s %s: %d, expected a match", method_names[mi], path, rc);
            ref_rule *rr = NULL;
            for (int i = 0; i < nrules; i++)
                if (rules[i].rule == m.rule)
                    rr = &rules[i];
            assert_non_null(rr);
            if (!(rr->methods >> mi & 1) || !ref_match(rr, path, vals))
                fail_msg("%s %s: matched %s, which does not match", method_names[mi], path,
                         vial_router_rule_pattern(m.rule));
            for (unsigned k = 0; k < m.nparams; k++)
                if (m.params[k].len != vals[k][1] ||
                    memcmp(m.params[k].value, path + vals[k][0], vals[k][1]))
                    fail_msg("%s %s: value %u of %s differs", method_names[mi], path, k,
                             vial_router_rule_pattern(m.rule));
        } else if (any) {
            if (rc != VIAL_MATCH_METHOD)
                fail_msg("%s %s: %d, expected 405", method_names[mi], path, rc);
        } else if (any_slash) {
            if (rc != VIAL_MATCH_REDIRECT)
                fail_msg("%s %s: %d, expected 308", method_names[mi], path, rc);
        } else if (rc != VIAL_MATCH_NONE) {
            fail_msg("%s %s: %d, expected 404", method_names[mi], path, rc);
        }
    }
    char *al = allow(r, path);
    if (!any) {
        assert_null(al);
        return;
    }
    char want[64] = "";
    static const char *const sorted[] = {"GET", "HEAD", "OPTIONS", "POST", "PUT"};
    for (int k = 0; k < 5; k++) {
        int in = !strcmp(sorted[k], "OPTIONS") || (!strcmp(sorted[k], "HEAD") && (allow_bits & 1)) ||
                 (!strcmp(sorted[k], "GET") && (allow_bits & 1)) ||
                 (!strcmp(sorted[k], "POST") && (allow_bits & 2)) ||
                 (!strcmp(sorted[k], "PUT") && (allow_bits & 4));
        if (in)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", *want ? ", " : "",
                     sorted[k]);
    }
    assert_non_null(al);
    if (strcmp(al, want))
        fail_msg("Allow %s: \"%s\", expected \"%s\"", path, al, want);
}

static void test_randomized_cross_check(void **state)
{
    (void)state;
    for (int round = 0; round < 300; round++) {
        vial_router *r = vial_router_new();
        assert_non_null(r);
        ref_rule rules[24];
        int n = 0;
        int want = 1 + (int)rnd(24);
        for (int i = 0; i < want; i++) {
            char pattern[96];
            random_rule(&rules[n], pattern, sizeof pattern);
            const char *ms[4];
            int k = 0;
            for (int b = 0; b < 3; b++)
                if (rules[n].methods >> b & 1)
                    ms[k++] = method_names[b];
            ms[k] = NULL;
            int rc = vial_router_add(r, pattern, ms, NULL, &rules[n].rule);
            if (rc == -EEXIST)
                continue;
            assert_int_equal(rc, 0);
            n++;
        }
        for (int i = 0; i < 40; i++) {
            char path[128];
            random_path(path, sizeof path);
            cross_check_one(r, rules, n, path);
        }
        vial_router_free(r);
    }
}

/* --- building (url_for) --------------------------------------------------------------- */

static vial_router_rule *add_rule(vial_router *r, const char *methods, const char *pattern)
{
    vial_router_rule *rule = NULL;
    assert_int_equal(add_tag(r, methods, pattern, pattern, &rule), 0);
    assert_non_null(rule);
    return rule;
}

static void test_build_spec_examples(void **state)
{
    vial_router *r = *state;
    vial_router_rule *index = add_rule(r, "GET", "/");
    vial_router_rule *hello = add_rule(r, "GET", "/hello/<name>");
    vial_router_rule *user = add_rule(r, "GET", "/users/<int:id>");
    vial_router_rule *files = add_rule(r, "GET", "/files/<path:p>");
    vial_router_rule *dir = add_rule(r, "GET", "/dir/");
    vial_router_rule *args = add_rule(r, "GET", "/args");
    vial_router_rule *item = add_rule(r, "GET", "/api/v1/items/<int:id>");
    assert_string_equal(build(index, NULL), "/");
    assert_string_equal(build(hello, "name", "w\xc3\xb6rld x", NULL), "/hello/w%C3%B6rld%20x");
    assert_string_equal(build(user, "id", "42", NULL), "/users/42");
    assert_string_equal(build(files, "p", "docs/read me.txt", NULL), "/files/docs/read%20me.txt");
    assert_string_equal(build(dir, NULL), "/dir/");
    assert_string_equal(build(args, "q", "vial", "page", "2", NULL), "/args?q=vial&page=2");
    assert_string_equal(build(item, "id", "7", NULL), "/api/v1/items/7");
}

static void test_build_encoding(void **state)
{
    vial_router *r = *state;
    vial_router_rule *hello = add_rule(r, "GET", "/hello/<name>");
    vial_router_rule *files = add_rule(r, "GET", "/files/<path:p>");
    vial_router_rule *args = add_rule(r, "GET", "/args");
    /* Safe in a path: unreserved and !$&'()*+,:;=@ (and '/' for <path:>). */
    assert_string_equal(build(hello, "name", "aZ09-._~!$&'()*+,:;=@", NULL),
                        "/hello/aZ09-._~!$&'()*+,:;=@");
    assert_string_equal(build(hello, "name", "a/b", NULL), "/hello/a%2Fb");
    assert_string_equal(build(hello, "name", "50%?#[]\"<>\\^`{|}", NULL),
                        "/hello/50%25%3F%23%5B%5D%22%3C%3E%5C%5E%60%7B%7C%7D");
    assert_string_equal(build(hello, "name", "\x01\x7f\xff", NULL), "/hello/%01%7F%FF");
    assert_string_equal(build(files, "p", "a/b/c/", NULL), "/files/a/b/c/");
    assert_string_equal(build(files, "p", "a?b#c", NULL), "/files/a%3Fb%23c");
    /* Query: urlencode's rules (space -> '+', '&' '=' '+' encoded, "/?:@" kept). */
    assert_string_equal(build(args, "q", "a b", NULL), "/args?q=a+b");
    assert_string_equal(build(args, "q", "a&b=c+d", NULL), "/args?q=a%26b%3Dc%2Bd");
    assert_string_equal(build(args, "q", "/path?x:y@z!$'()*,;~", NULL),
                        "/args?q=/path?x:y@z!$'()*,;~");
    assert_string_equal(build(args, "k y", "\xc3\xa9", NULL), "/args?k+y=%C3%A9");
    assert_string_equal(build(args, "q", "", NULL), "/args?q=");
    assert_string_equal(build(args, "a", "1", "a", "2", NULL), "/args?a=1&a=2");
    assert_string_equal(build(args, "a", NULL, "b", "2", NULL), "/args?b=2"); /* None dropped */
    assert_string_equal(build(hello, "name", "x", "q", "1", NULL), "/hello/x?q=1");
    assert_string_equal(build(hello, "q", "1", "name", "x", NULL), "/hello/x?q=1");
    /* The first value of a parameter's key fills it; the others are not query args. */
    assert_string_equal(build(hello, "name", "x", "name", "y", NULL), "/hello/x");
    /* Static text is encoded too, so the URL decodes back to the rule. */
    vial_router_rule *cafe = add_rule(r, "GET", "/caf\xc3\xa9 menu/<name>");
    assert_string_equal(build(cafe, "name", "x", NULL), "/caf%C3%A9%20menu/x");
}

static int is_abc(const char *s, size_t n, void *arg)
{
    (void)arg;
    return n == 3 && !memcmp(s, "abc", 3);
}

static void test_build_converters(void **state)
{
    vial_router *r = *state;
    assert_int_equal(vial_router_add_converter(r, "abc", is_abc, NULL), 0);
    vial_router_rule *user = add_rule(r, "GET", "/users/<int:id>");
    vial_router_rule *status = add_rule(r, "GET", "/status/<int(min=200,max=599):code>");
    vial_router_rule *fl = add_rule(r, "GET", "/f/<float:x>");
    vial_router_rule *uu = add_rule(r, "GET", "/o/<uuid:id>");
    vial_router_rule *hello = add_rule(r, "GET", "/hello/<name>");
    vial_router_rule *files = add_rule(r, "GET", "/files/<path:p>");
    vial_router_rule *ab = add_rule(r, "GET", "/c/<abc:v>");
    vial_router_rule *multi = add_rule(r, "GET", "/m/<int:a>/<b>/x/<path:c>");

    assert_string_equal(build(user, "id", "0", NULL), "/users/0");
    assert_string_equal(build(user, "id", "007", NULL), "/users/7"); /* str(int(v)) */
    assert_string_equal(build(user, "id", "000", NULL), "/users/0");
    assert_string_equal(build(user, "id", "9223372036854775807", NULL), "/users/9223372036854775807");
    assert_null(build(user, "id", "9223372036854775808", NULL));
    assert_null(build(user, "id", "-1", NULL));
    assert_null(build(user, "id", "1a", NULL));
    assert_null(build(user, "id", "", NULL));
    assert_null(build(user, NULL));                 /* missing */
    assert_null(build(user, "other", "1", NULL));   /* missing */
    assert_null(build(user, "id", NULL, NULL));     /* NULL value */
    assert_string_equal(build(status, "code", "404", NULL), "/status/404");
    assert_null(build(status, "code", "199", NULL));
    assert_null(build(status, "code", "600", NULL));

    assert_string_equal(build(fl, "x", "1.5", NULL), "/f/1.5");
    assert_string_equal(build(fl, "x", "2", NULL), "/f/2.0");
    assert_null(build(fl, "x", "1e3", NULL));
    assert_null(build(fl, "x", "-1.5", NULL));
    assert_null(build(fl, "x", "1.", NULL));
    assert_null(build(fl, "x", "", NULL));

    assert_string_equal(build(uu, "id", "123E4567-E89B-12D3-A456-426614174ABC", NULL),
                        "/o/123e4567-e89b-12d3-a456-426614174abc");
    assert_null(build(uu, "id", "123e4567e89b12d3a456426614174000", NULL));

    assert_null(build(hello, "name", "", NULL));
    assert_null(build(files, "p", "", NULL));
    assert_null(build(files, "p", "/abs", NULL));

    assert_string_equal(build(ab, "v", "abc", NULL), "/c/abc");
    assert_null(build(ab, "v", "abd", NULL));

    assert_string_equal(build(multi, "c", "d/e", "b", "b b", "a", "01", "z", "1", NULL),
                        "/m/1/b%20b/x/d/e?z=1");

    /* What build produces, matching accepts, with the same values. */
    vial_arena_reset(&arena, abuf, sizeof abuf);
    const char *kv[] = {"a", "12", "b", "q", "c", "r/s"};
    char *url = vial_router_build(multi, kv, 3, &arena);
    assert_string_equal(url, "/m/12/q/x/r/s");
    char copy[64];
    snprintf(copy, sizeof copy, "%s", url);
    assert_int_equal(match(r, copy, "GET"), VIAL_MATCH_OK);
    assert_ptr_equal(m.rule, multi);
    assert_string_equal(pval("c"), "r/s");
}

/* --- malformed patterns and accessors ------------------------------------------------- */

static void test_malformed(void **state)
{
    vial_router *r = *state;
    const char *bad[] = {
        "",
        "noslash",
        "/a/<",
        "/a/<x",
        "/a/<>",
        "/a/<int:>",
        "/a/<:x>",
        "/a/<bogus:x>",
        "/a/x<y>",      /* not a whole segment */
        "/a/<y>x",
        "/a/<y>x/b",
        "/a/<x><y>",
        "/a//b",
        "//",
        "/a/>",
        "/a/<x>/<x>",   /* duplicate name */
        "/a/<x>/<int:x>",
        "/a/<1x>",
        "/a/<x-y>",
        "/a/<x y>",
        "/a/<int(min=5,max=1):x>",
        "/a/<int(foo=1):x>",
        "/a/<int(min=1,):x>",
        "/a/<int(min=1,min=2):x>",
        "/a/<int(min=a):x>",
        "/a/<int(min=):x>",
        "/a/<int(min=1:x>",
        "/a/<int(min=99999999999999999999):x>",
        "/a/<string(length=2):x>", /* only int takes arguments */
        "/a/<path(x=1):x>",
        "/<a>/<b>/<c>/<d>/<e>/<f>/<g>/<h>/<i>", /* VIAL_MAX_PARAMS + 1 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = add_tag(r, "GET", bad[i], "bad", NULL);
        if (rc != -EINVAL)
            fail_msg("pattern \"%s\": %d, expected -EINVAL", bad[i], rc);
    }
    assert_int_equal(add_tag(r, "GET", "/<a>/<b>/<c>/<d>/<e>/<f>/<g>/<h>", "eight", NULL), 0);
    expect(r, "/1/2/3/4/5/6/7/8", "eight");
    assert_int_equal(m.nparams, 8);
    assert_string_equal(pval("h"), "8");
    assert_int_equal(add_tag(r, "GET", "/a/<int()>:x", "bad", NULL), -EINVAL);
    assert_int_equal(add_tag(r, "GET", "/ok/<int():x>", "ok", NULL), 0);

    /* Methods. */
    const char *none[] = {NULL};
    const char *empty[] = {"", NULL};
    const char *space[] = {"GE T", NULL};
    assert_int_equal(vial_router_add(r, "/m", none, NULL, NULL), -EINVAL);
    assert_int_equal(vial_router_add(r, "/m", empty, NULL, NULL), -EINVAL);
    assert_int_equal(vial_router_add(r, "/m", space, NULL, NULL), -EINVAL);
    assert_int_equal(vial_router_add(r, NULL, NULL, NULL, NULL), -EINVAL);
    /* NULL methods: GET, as Flask's default. */
    vial_router_rule *rule;
    assert_int_equal(vial_router_add(r, "/m", NULL, "m", &rule), 0);
    const char *const *ms = vial_router_rule_methods(rule);
    assert_string_equal(ms[0], "GET");
    assert_null(ms[1]);
    /* Nothing malformed reached the tree. */
    expect_none(r, "/a/x");
    expect_none(r, "/a/5");
}

static void test_accessors(void **state)
{
    vial_router *r = *state;
    vial_router_rule *rule;
    char pattern[] = "/users/<int(min=1):id>/posts/<slug>";
    const char *methods[] = {"GET", "POST", "GET", NULL};
    assert_int_equal(vial_router_add(r, pattern, methods, "t", &rule), 0);
    pattern[1] = 'X';  /* the router keeps its own copies */
    methods[1] = "PUT";
    assert_string_equal(vial_router_rule_pattern(rule), "/users/<int(min=1):id>/posts/<slug>");
    const char *const *ms = vial_router_rule_methods(rule);
    assert_string_equal(ms[0], "GET");
    assert_string_equal(ms[1], "POST");
    assert_null(ms[2]);
    assert_int_equal(match(r, "/users/3/posts/hi", "POST"), VIAL_MATCH_OK);
    assert_ptr_equal(m.rule, rule);
    assert_string_equal(m.target, "t");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_static, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_converter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_converter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_float_converter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_float_locale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uuid_converter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_converter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_backtracking_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_converter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence_same_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backtracking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_pattern_several_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_backtracking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_slashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_through_path_converter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_allocates_only_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_randomized_cross_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_spec_examples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_converters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accessors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
