/* vial-render --dir DIR NAME: renders the template NAME from DIR with the
 * JSON object on stdin as its context and writes the text to stdout.
 * Exit 0 on success; 1 with "NAME:LINE: message" on stderr when the template
 * fails (syntax or render error); 2 on bad usage or bad JSON.
 *
 * Numbers keep the form Python's json module gives them: integers stay
 * integers (beyond int64 too: their digits are kept), the rest are floats. */
#include "runtime/arena.h"

#include <vial/template.h>
#include <yajl/yajl_tree.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vial_tmpl_value convert(vial_arena *a, yajl_val v)
{
    if (!v || YAJL_IS_NULL(v))
        return vial_tmpl_none();
    if (YAJL_IS_TRUE(v))
        return vial_tmpl_bool(1);
    if (YAJL_IS_FALSE(v))
        return vial_tmpl_bool(0);
    if (YAJL_IS_STRING(v))
        return vial_tmpl_cstr(YAJL_GET_STRING(v));
    if (YAJL_IS_NUMBER(v)) {
        const char *raw = YAJL_GET_NUMBER(v);
        if (!strpbrk(raw, ".eE")) {
            if (YAJL_IS_INTEGER(v))
                return vial_tmpl_int(YAJL_GET_INTEGER(v));
            /* too big for int64: keep the digits, as Python's int does */
            vial_tmpl_value b = {.kind = VIAL_TMPL_BIGINT, .len = (uint32_t)strlen(raw), .u.s = raw};
            if (raw[0] == '-' && raw[1] == '0' && !raw[2])
                return vial_tmpl_int(0);
            return b;
        }
        return vial_tmpl_float(strtod(raw, NULL));
    }
    if (YAJL_IS_ARRAY(v)) {
        vial_tmpl_value l = vial_tmpl_list(a);
        for (size_t i = 0; i < v->u.array.len; i++)
            vial_tmpl_push(a, l, convert(a, v->u.array.values[i]));
        return l;
    }
    vial_tmpl_value d = vial_tmpl_dict(a);
    for (size_t i = 0; i < v->u.object.len; i++)
        vial_tmpl_set(a, d, v->u.object.keys[i], convert(a, v->u.object.values[i]));
    return d;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (!name)
            name = argv[i];
        else
            name = NULL, dir = NULL, i = argc;
    }
    if (!dir || !name) {
        fprintf(stderr, "usage: vial-render --dir DIR NAME < context.json\n");
        return 2;
    }
    size_t cap = 65536, len = 0;
    char *in = malloc(cap);
    for (size_t r; in && (r = fread(in + len, 1, cap - len - 1, stdin)) > 0;) {
        len += r;
        if (len + 1 == cap) {
            char *n = realloc(in, cap * 2);
            if (!n) {
                free(in);
                in = NULL;
                break;
            }
            in = n;
            cap *= 2;
        }
    }
    if (!in) {
        fprintf(stderr, "vial-render: out of memory\n");
        return 2;
    }
    in[len] = 0;
    char ebuf[256];
    yajl_val doc = NULL;
    if (strspn(in, " \t\r\n") != len) {
        doc = yajl_tree_parse(in, ebuf, sizeof ebuf);
        if (!doc || !YAJL_IS_OBJECT(doc)) {
            fprintf(stderr, "vial-render: the context must be a JSON object%s%s\n", doc ? "" : ": ",
                    doc ? "" : ebuf);
            return 2;
        }
    }
    vial_arena *a = vial_tmpl_arena_new();
    vial_tmpl_value ctx = doc ? convert(a, doc) : vial_tmpl_dict(a);
    vial_tmpl_env *env = vial_tmpl_env_new(dir);
    vial_tmpl_env_stack_limit(env, 4u << 20); /* the main thread's stack is 8 MiB */
    vial_tmpl_error err = {0};
    vial_tmpl *t;
    int r = vial_tmpl_load(env, name, &t, &err);
    vial_tmpl_out out = {0};
    if (r == 0)
        r = vial_tmpl_render(t, ctx, a, &out, &err);
    if (r != 0) {
        fprintf(stderr, "%s:%d: %s\n", err.name[0] ? err.name : name, err.line, err.message);
    } else {
        fwrite(out.data, 1, out.len, stdout);
    }
    free(out.data);
    vial_tmpl_env_free(env);
    vial_tmpl_arena_free(a);
    yajl_tree_free(doc);
    free(in);
    return r != 0 ? 1 : 0;
}
