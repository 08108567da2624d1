/* The template engine's pieces: the lexer's tokens and whitespace control,
 * the parser's errors (name and line), the value builders and Python's
 * number formatting, rendering through the public API (globals, C
 * functions, the caller's buffer, limits). The byte-for-byte comparison with
 * Jinja2 is tests/template/diff.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/tmpl.h"

#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- lexer ---------------------------------------------------------------------- */

typedef struct {
    int type;
    const char *text;
} want_tok;

static void lex_expect(const char *src, const want_tok *want)
{
    vial_arena a;
    vial_arena_init(&a, NULL, 0);
    size_t n;
    char *text = tmpl_normalize(&a, src, strlen(src), &n);
    lexer lx;
    lex_init(&lx, &a, text, n);
    token t = {0};
    for (int i = 0;; i++) {
        assert_int_equal(lex_next(&lx, &t), 0);
        assert_int_equal(t.type, want[i].type);
        if (want[i].text)
            assert_true(t.n == strlen(want[i].text) && memcmp(t.s, want[i].text, t.n) == 0);
        if (t.type == T_EOF)
            break;
    }
    vial_arena_reset(&a, NULL, 0);
}

static void test_lex_tokens(void **state)
{
    (void)state;
    lex_expect("a{{ x.y|f(1, 'q') }}b", (want_tok[]){
        {T_DATA, "a"}, {T_VAR_BEGIN, NULL}, {T_NAME, "x"}, {T_OP, "."}, {T_NAME, "y"},
        {T_OP, "|"}, {T_NAME, "f"}, {T_OP, "("}, {T_INT, "1"}, {T_OP, ","}, {T_STRING, "q"},
        {T_OP, ")"}, {T_VAR_END, NULL}, {T_DATA, "b"}, {T_EOF, NULL}});
    lex_expect("{% if a // 2 ** 3 >= 1.5e3 %}", (want_tok[]){
        {T_BLOCK_BEGIN, NULL}, {T_NAME, "if"}, {T_NAME, "a"}, {T_OP, "//"}, {T_INT, "2"},
        {T_OP, "**"}, {T_INT, "3"}, {T_OP, ">="}, {T_FLOAT, NULL}, {T_BLOCK_END, NULL}, {T_EOF, NULL}});
    /* '}}' inside a dict literal does not end the tag */
    lex_expect("{{ {'a': {'b': 1}} }}", (want_tok[]){
        {T_VAR_BEGIN, NULL}, {T_OP, "{"}, {T_STRING, "a"}, {T_OP, ":"}, {T_OP, "{"},
        {T_STRING, "b"}, {T_OP, ":"}, {T_INT, "1"}, {T_OP, "}"}, {T_OP, "}"}, {T_VAR_END, NULL},
        {T_EOF, NULL}});
}

static void test_lex_whitespace_control(void **state)
{
    (void)state;
    lex_expect("a  \n {%- if x -%} \n b", (want_tok[]){
        {T_DATA, "a"}, {T_BLOCK_BEGIN, NULL}, {T_NAME, "if"}, {T_NAME, "x"}, {T_BLOCK_END, NULL},
        {T_DATA, "b"}, {T_EOF, NULL}});
    /* comments vanish; raw keeps its text */
    lex_expect("x{# c #}y{% raw %}{{ z }}{% endraw %}", (want_tok[]){
        {T_DATA, "x"}, {T_DATA, "y{{ z }}"}, {T_EOF, NULL}});
    /* one trailing newline is dropped, \r\n becomes \n */
    lex_expect("a\r\nb\n", (want_tok[]){{T_DATA, "a\nb"}, {T_EOF, NULL}});
}

static void test_lex_errors(void **state)
{
    (void)state;
    const char *bad[] = {"{{ 'open }}", "{# never closed", "{{ x", "{{ @ }}", "{% raw %}x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vial_arena a;
        vial_arena_init(&a, NULL, 0);
        lexer lx;
        lex_init(&lx, &a, bad[i], strlen(bad[i]));
        token t = {0};
        int r = 0;
        for (int k = 0; k < 100 && r == 0 && (k == 0 || t.type != T_EOF); k++)
            r = lex_next(&lx, &t);
        assert_int_equal(r, -1);
        assert_true(lx.err[0] != 0);
        vial_arena_reset(&a, NULL, 0);
    }
}

/* --- parser ----------------------------------------------------------------------- */

static void expect_syntax_error(const char *src, int line, const char *needle)
{
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    vial_tmpl_error err;
    vial_tmpl *t;
    assert_int_equal(vial_tmpl_add_source(env, "bad.html", src, strlen(src), &t, &err), -EINVAL);
    assert_string_equal(err.name, "bad.html");
    assert_int_equal(err.line, line);
    if (!strstr(err.message, needle))
        fail_msg("message '%s' lacks '%s'", err.message, needle);
    vial_tmpl_env_free(env);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_syntax_error("a\n{% if x %}\nb", 2, "Unexpected end of template");
    expect_syntax_error("\n\n{% nope %}", 3, "unknown tag 'nope'");
    expect_syntax_error("{{ x|nofilter }}", 1, "No filter named 'nofilter'");
    expect_syntax_error("{{ x is notatest }}", 1, "No test named 'notatest'");
    expect_syntax_error("{% block a %}{% endblock %}\n{% block a %}{% endblock %}", 2, "defined twice");
    expect_syntax_error("{{ 1 + }}", 1, "unexpected");
    expect_syntax_error("{% for x in y %}{% endif %}", 1, "endfor");
}

static void test_parse_nesting_limit(void **state)
{
    (void)state;
    /* thousands of parentheses: an error, not a stack overflow */
    size_t n = 20000;
    char *src = malloc(n * 2 + 8);
    strcpy(src, "{{ ");
    memset(src + 3, '(', n);
    memset(src + 3 + n, ')', n);
    strcpy(src + 3 + 2 * n, " }}");
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    vial_tmpl_error err;
    assert_int_equal(vial_tmpl_add_source(env, "deep.txt", src, strlen(src), NULL, &err), -EINVAL);
    assert_non_null(strstr(err.message, "nested too deeply"));
    vial_tmpl_env_free(env);
    free(src);
}

static void test_parse_tree(void **state)
{
    (void)state;
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    vial_tmpl *t;
    const char *src = "x{% for a, b in l if a %}{{ a ~ b }}{% endfor %}{% block c %}{% endblock %}";
    assert_int_equal(vial_tmpl_add_source(env, "p.txt", src, strlen(src), &t, NULL), 0);
    node *n = t->body;
    assert_int_equal(n->type, N_TEXT);
    n = n->next;
    assert_int_equal(n->type, N_FOR);
    assert_int_equal(n->a->type, N_TUPLE); /* a, b */
    assert_non_null(n->e);                 /* the inline filter */
    assert_int_equal(n->c->type, N_OUTPUT);
    assert_int_equal(n->c->a->type, N_CONCAT);
    assert_int_equal(n->next->type, N_BLOCK);
    assert_non_null(t->blocks);
    assert_false(t->autoescape);
    vial_tmpl_env_free(env);
}

/* --- values -------------------------------------------------------------------------- */

static void test_float_repr(void **state)
{
    (void)state;
    struct { double d; const char *s; } cases[] = {
        {3.0, "3.0"}, {2.5, "2.5"}, {0.1 + 0.2, "0.30000000000000004"}, {1e16, "1e+16"},
        {1e15, "1000000000000000.0"}, {0.0001, "0.0001"}, {0.00001, "1e-05"}, {-0.0, "-0.0"},
        {1.0 / 3, "0.3333333333333333"}, {1e300, "1e+300"}, {123456789.123, "123456789.123"},
        {1.5e-7, "1.5e-07"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[40];
        fmt_float(buf, cases[i].d);
        assert_string_equal(buf, cases[i].s);
    }
}

static void test_builders(void **state)
{
    (void)state;
    struct vial_arena *a = vial_tmpl_arena_new();
    vial_tmpl_value d = vial_tmpl_dict(a), l = vial_tmpl_list(a);
    assert_int_equal(d.kind, VIAL_TMPL_DICT);
    assert_int_equal(vial_tmpl_set(a, d, "b", vial_tmpl_int(1)), 0);
    assert_int_equal(vial_tmpl_set(a, d, "a", vial_tmpl_cstr("x")), 0);
    assert_int_equal(vial_tmpl_set(a, d, "b", vial_tmpl_int(2)), 0); /* replaced in place */
    assert_int_equal(vial_tmpl_len(d), 2);
    assert_int_equal(vial_tmpl_get(d, "b").u.i, 2);
    assert_int_equal(vial_tmpl_get(d, "zz").kind, VIAL_TMPL_UNDEFINED);
    for (int i = 0; i < 100; i++)
        assert_int_equal(vial_tmpl_push(a, l, vial_tmpl_int(i)), 0);
    assert_int_equal(vial_tmpl_len(l), 100);
    assert_int_equal(vial_tmpl_at(l, 99).u.i, 99);
    assert_int_equal(vial_tmpl_at(l, 100).kind, VIAL_TMPL_UNDEFINED);
    assert_int_equal(vial_tmpl_push(a, d, vial_tmpl_none()), -EINVAL);
    assert_int_equal(vial_tmpl_set(a, l, "k", vial_tmpl_none()), -EINVAL);
    /* Python's repr of a dict, in insertion order */
    vial_tmpl_out o = {0};
    assert_int_equal(tv_write_str(&o, d), 0);
    assert_int_equal(o.len, strlen("{'b': 2, 'a': 'x'}"));
    assert_memory_equal(o.data, "{'b': 2, 'a': 'x'}", o.len);
    free(o.data);
    vial_tmpl_arena_free(a);
}

/* the vectorised escape agrees with a byte-by-byte one at every offset */
static void test_escape(void **state)
{
    (void)state;
    const char specials[] = "&<>\"'a\xc3\xa9 ";
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char in[80];
        size_t n = (size_t)(round % 79) + 1;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = (seed >> 16) % 5 ? 'x' : specials[(seed >> 8) % (sizeof specials - 1)];
        }
        vial_tmpl_out got = {0}, want = {0};
        assert_int_equal(vial_tmpl_escape(&got, in, n), 0);
        for (size_t i = 0; i < n; i++) {
            const char *r = in[i] == '&' ? "&amp;" : in[i] == '<' ? "&lt;" : in[i] == '>' ? "&gt;"
                          : in[i] == '"' ? "&#34;" : in[i] == '\'' ? "&#39;" : NULL;
            assert_int_equal(r ? sb_put(&want, r, strlen(r)) : sb_put(&want, in + i, 1), 0);
        }
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data, want.data, got.len);
        free(got.data);
        free(want.data);
    }
}

/* --- rendering ------------------------------------------------------------------------ */

static int add(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    int64_t sum = *(int64_t *)c->data;
    for (size_t i = 0; i < c->nargs; i++) {
        if (c->args[i].kind != VIAL_TMPL_INT) {
            c->msg = "add() takes integers";
            return -EINVAL;
        }
        sum += c->args[i].u.i;
    }
    *ret = vial_tmpl_int(sum);
    return 0;
}

static char *render(vial_tmpl_env *env, const char *name, const char *src, vial_tmpl_value ctx,
                    struct vial_arena *a, int *rc, vial_tmpl_error *err)
{
    vial_tmpl *t;
    *rc = vial_tmpl_add_source(env, name, src, strlen(src), &t, err);
    if (*rc)
        return NULL;
    vial_tmpl_out out = {0};
    *rc = vial_tmpl_render(t, ctx, a, &out, err);
    char *s = strndup(out.data ? out.data : "", out.len);
    free(out.data);
    return s;
}

static void test_render_api(void **state)
{
    (void)state;
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    static int64_t base = 100;
    assert_int_equal(vial_tmpl_global_fn(env, "add", add, &base), 0);
    assert_int_equal(vial_tmpl_global(env, "site", vial_tmpl_cstr("S&S")), 0);
    struct vial_arena *a = vial_tmpl_arena_new();
    vial_tmpl_value ctx = vial_tmpl_dict(a);
    vial_tmpl_set(a, ctx, "site", vial_tmpl_cstr("ctx wins <>"));
    vial_tmpl_set(a, ctx, "html", vial_tmpl_safe("<b>ok</b>", 9));
    int rc;
    vial_tmpl_error err;
    char *s = render(env, "a.html", "{{ add(1, 2) }} {{ site }} {{ html }}", ctx, a, &rc, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "103 ctx wins &lt;&gt; <b>ok</b>");
    free(s);
    /* a C function's failure is a render error naming the template and line */
    s = render(env, "b.txt", "\n{{ add('x') }}", ctx, a, &rc, &err);
    assert_int_equal(rc, -ERANGE);
    assert_string_equal(err.name, "b.txt");
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.message, "add() takes integers"));
    free(s);
    vial_tmpl_arena_free(a);
    vial_tmpl_env_free(env);
}

/* a comma-decimal locale set by the application changes nothing */
static void test_render_locale(void **state)
{
    (void)state;
    const char *locs[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "C.UTF-8"};
    const char *set = NULL;
    for (size_t i = 0; i < 4 && !set; i++)
        set = setlocale(LC_NUMERIC, locs[i]);
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    struct vial_arena *a = vial_tmpl_arena_new();
    int rc;
    vial_tmpl_error err;
    char *s = render(env, "n.txt", "{{ 2.5 }} {{ 10 / 4 }} {{ '%.2f'|format(1.5) }} {{ '3.25'|float }} {{ 1e20 }}",
                     vial_tmpl_undefined(), a, &rc, &err);
    setlocale(LC_NUMERIC, "C");
    assert_int_equal(rc, 0);
    assert_string_equal(s, "2.5 2.5 1.50 3.25 1e+20");
    free(s);
    vial_tmpl_arena_free(a);
    vial_tmpl_env_free(env);
}

static void test_render_limits(void **state)
{
    (void)state;
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    struct vial_arena *a = vial_tmpl_arena_new();
    int rc;
    vial_tmpl_error err;
    char *s = render(env, "r.txt", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                     vial_tmpl_undefined(), a, &rc, &err);
    assert_int_equal(rc, -ERANGE);
    assert_non_null(strstr(err.message, "recursion"));
    free(s);
    s = render(env, "inc.txt", "{% include 'inc.txt' %}", vial_tmpl_undefined(), a, &rc, &err);
    assert_int_equal(rc, -ERANGE);
    free(s);
    s = render(env, "big.txt", "{% for i in range(100000000) %}{% endfor %}", vial_tmpl_undefined(), a, &rc, &err);
    assert_int_equal(rc, -ERANGE);
    free(s);
    vial_tmpl_arena_free(a);
    vial_tmpl_env_free(env);
}

/* A coroutine-sized stack (128 KiB): deep recursion is an error, not a
 * crash. Each level nests a loop, a test, filters and a concatenation. */
static void *deep_render(void *arg)
{
    int *rc = arg;
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    const char *src = "{% macro f(n) %}{% for i in [1] %}{% if n > 0 %}"
                      "{{ (f(n - 1)|upper ~ 'x')|lower }}{% endif %}{% endfor %}{% endmacro %}{{ f(95) }}";
    vial_tmpl *t;
    vial_tmpl_error err;
    *rc = vial_tmpl_add_source(env, "deep.txt", src, strlen(src), &t, &err);
    if (*rc == 0) {
        struct vial_arena *a = vial_tmpl_arena_new();
        vial_tmpl_out out = {0};
        *rc = vial_tmpl_render(t, vial_tmpl_undefined(), a, &out, &err);
        free(out.data);
        vial_tmpl_arena_free(a);
    }
    vial_tmpl_env_free(env);
    return NULL;
}

static void test_render_stack_limit(void **state)
{
    (void)state;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    pthread_t th;
    int rc = 1;
    assert_int_equal(pthread_create(&th, &attr, deep_render, &rc), 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    assert_int_equal(rc, -ERANGE);
}

/* the caller's buffer grows through its own function */
static int grow_calls;
static int my_grow(vial_tmpl_out *o, size_t need)
{
    grow_calls++;
    char *p = realloc(o->data, need + 16);
    if (!p)
        return -ENOMEM;
    o->data = p;
    o->cap = need + 16;
    return 0;
}

static void test_render_into_buffer(void **state)
{
    (void)state;
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    vial_tmpl *t;
    const char *src = "{% for i in range(50) %}{{ i }},{% endfor %}";
    assert_int_equal(vial_tmpl_add_source(env, "n.txt", src, strlen(src), &t, NULL), 0);
    struct vial_arena *a = vial_tmpl_arena_new();
    vial_tmpl_out out = {.grow = my_grow};
    assert_int_equal(sb_put(&out, "pre:", 4), 0);
    assert_int_equal(vial_tmpl_render(t, vial_tmpl_undefined(), a, &out, NULL), 0);
    assert_true(grow_calls > 1);
    assert_true(out.len > 4 && memcmp(out.data, "pre:0,1,2,", 10) == 0);
    free(out.data);
    vial_tmpl_arena_free(a);
    vial_tmpl_env_free(env);
}

static void test_loader_refuses_parent_dirs(void **state)
{
    (void)state;
    vial_tmpl_env *env = vial_tmpl_env_new("/tmp");
    vial_tmpl *t;
    vial_tmpl_error err;
    assert_int_equal(vial_tmpl_load(env, "../etc/passwd", &t, &err), -ENOENT);
    assert_int_equal(vial_tmpl_load(env, "/etc/passwd", &t, &err), -ENOENT);
    vial_tmpl_env_free(env);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *load_render(vial_tmpl_env *env, const char *name)
{
    vial_tmpl *t;
    vial_tmpl_error err;
    if (vial_tmpl_load(env, name, &t, &err) != 0)
        return NULL;
    struct vial_arena *a = vial_tmpl_arena_new();
    vial_tmpl_out out = {0};
    char *s = NULL;
    if (vial_tmpl_render(t, vial_tmpl_undefined(), a, &out, &err) == 0)
        s = strndup(out.data ? out.data : "", out.len);
    free(out.data);
    vial_tmpl_arena_free(a);
    return s;
}

/* a search path (app folder, then a blueprint's) and reloading on change */
static void test_search_path_and_reload(void **state)
{
    (void)state;
    char dir[] = "/tmp/vial-tmpl-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char app[128], bp[128], p[200];
    snprintf(app, sizeof app, "%s/app", dir);
    snprintf(bp, sizeof bp, "%s/bp", dir);
    mkdir(app, 0700);
    mkdir(bp, 0700);
    snprintf(p, sizeof p, "%s/page.txt", bp);
    write_file(p, "{% extends 'base.txt' %}{% block b %}bp page{% endblock %}");
    snprintf(p, sizeof p, "%s/base.txt", app);
    write_file(p, "app base: {% block b %}{% endblock %}");
    snprintf(p, sizeof p, "%s/base.txt", bp);
    write_file(p, "shadowed by the app's");

    vial_tmpl_env *env = vial_tmpl_env_new(app);
    assert_int_equal(vial_tmpl_env_add_dir(env, bp), 0);
    vial_tmpl_env_auto_reload(env, 1);
    char *s = load_render(env, "page.txt");
    assert_non_null(s);
    assert_string_equal(s, "app base: bp page");
    free(s);

    /* everything under the folders compiles at once (page, base, the shadowed base) */
    vial_tmpl_error lerr;
    assert_int_equal(vial_tmpl_env_load_all(env, &lerr), 3);
    snprintf(p, sizeof p, "%s/sub", bp);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/sub/bad.html", bp);
    write_file(p, "ok\n{% if %}");
    assert_int_equal(vial_tmpl_env_load_all(env, &lerr), -EINVAL);
    assert_string_equal(lerr.name, "sub/bad.html");
    assert_int_equal(lerr.line, 2);
    unlink(p);

    /* change the parent; an older mtime is still a change */
    snprintf(p, sizeof p, "%s/base.txt", app);
    write_file(p, "new base: {% block b %}{% endblock %}");
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    s = load_render(env, "page.txt");
    assert_non_null(s);
    assert_string_equal(s, "new base: bp page");
    free(s);
    vial_tmpl_env_free(env);

    /* without auto reload the first compile stays */
    env = vial_tmpl_env_new(app);
    vial_tmpl_env_add_dir(env, bp);
    s = load_render(env, "page.txt");
    assert_string_equal(s, "new base: bp page");
    free(s);
    write_file(p, "third: {% block b %}{% endblock %}");
    s = load_render(env, "page.txt");
    assert_string_equal(s, "new base: bp page");
    free(s);
    vial_tmpl_env_free(env);

    snprintf(p, sizeof p, "rm -rf '%s'", dir);
    assert_int_equal(system(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lex_tokens),
        cmocka_unit_test(test_lex_whitespace_control),
        cmocka_unit_test(test_lex_errors),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_nesting_limit),
        cmocka_unit_test(test_parse_tree),
        cmocka_unit_test(test_float_repr),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_render_api),
        cmocka_unit_test(test_render_limits),
        cmocka_unit_test(test_render_locale),
        cmocka_unit_test(test_render_stack_limit),
        cmocka_unit_test(test_render_into_buffer),
        cmocka_unit_test(test_loader_refuses_parent_dirs),
        cmocka_unit_test(test_search_path_and_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
