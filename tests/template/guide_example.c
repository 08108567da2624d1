/* The C example of docs/guide/templates.md, verbatim from the #include
 * down: built and run by ctest (guide_templates_example). */
#include <vial/template.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {{ greet(name, punct="!") }}: a C function called from templates */
static int greet(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    if (c->nargs != 1 || c->args[0].kind != VIAL_TMPL_STRING) {
        c->msg = "greet() takes one string";
        return -1;
    }
    vial_tmpl_value punct = vial_tmpl_cstr(".");
    for (size_t i = 0; i < c->nkw; i++)
        if (c->kwnames[i].len == 5 && memcmp(c->kwnames[i].u.s, "punct", 5) == 0)
            punct = c->kwargs[i];
    size_t n = c->args[0].len + punct.len + 8;
    char *s = vial_tmpl_alloc(c->arena, n); /* freed with the render's arena */
    if (!s)
        return -1;
    int len = snprintf(s, n, "Hello, %.*s%.*s", (int)c->args[0].len, c->args[0].u.s,
                       (int)punct.len, punct.u.s);
    *ret = vial_tmpl_str(s, (size_t)len); /* escaped on output: not Markup */
    return 0;
}

int main(void)
{
    /* once, at startup: an environment over a directory (NULL: sources
     * are added by hand here), globals, and the templates compiled */
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    vial_tmpl_global_fn(env, "greet", greet, NULL);
    const char *src = "<h1>{{ title }}</h1>\n"
                      "{% for u in users if u.active %}<li>{{ loop.index }}. {{ u.name }}</li>{% endfor %}\n"
                      "<p>{{ greet(users[0].name, punct='!') }}</p>";
    vial_tmpl_error err;
    vial_tmpl *t;
    if (vial_tmpl_add_source(env, "page.html", src, strlen(src), &t, &err) != 0) {
        fprintf(stderr, "%s:%d: %s\n", err.name, err.line, err.message);
        return 1;
    }

    /* per render: a context built in an arena, text appended to a buffer */
    struct vial_arena *a = vial_tmpl_arena_new();
    vial_tmpl_value ctx = vial_tmpl_dict(a), users = vial_tmpl_list(a);
    const char *names[] = {"<b>Ann</b>", "Bob", "Cy"};
    for (int i = 0; i < 3; i++) {
        vial_tmpl_value u = vial_tmpl_dict(a);
        vial_tmpl_set(a, u, "name", vial_tmpl_cstr(names[i]));
        vial_tmpl_set(a, u, "active", vial_tmpl_bool(i != 1));
        vial_tmpl_push(a, users, u);
    }
    vial_tmpl_set(a, ctx, "title", vial_tmpl_cstr("Users & co"));
    vial_tmpl_set(a, ctx, "users", users);

    vial_tmpl_out out = {0}; /* grow == NULL: realloc, we free */
    int r = vial_tmpl_render(t, ctx, a, &out, &err);
    if (r != 0)
        fprintf(stderr, "%s:%d: %s\n", err.name, err.line, err.message);

    const char *want = "<h1>Users &amp; co</h1>\n"
                       "<li>1. &lt;b&gt;Ann&lt;/b&gt;</li><li>2. Cy</li>\n"
                       "<p>Hello, &lt;b&gt;Ann&lt;/b&gt;!</p>";
    int ok = r == 0 && out.len == strlen(want) && memcmp(out.data, want, out.len) == 0;
    if (!ok)
        fprintf(stderr, "got: %.*s\n", (int)out.len, out.data ? out.data : "");
    free(out.data);
    vial_tmpl_arena_free(a);
    vial_tmpl_env_free(env);
    return ok ? 0 : 1;
}
