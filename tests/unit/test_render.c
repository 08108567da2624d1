/* vial_render through the test client: context, content types, autoescape,
 * the Flask globals (url_for, get_flashed_messages, request, session, g),
 * app globals and functions, blueprint folders, errors (missing template,
 * syntax error, render error) and auto reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], app_dir[96], bp_dir[96];
static vial_app *app;
static vial_test_client *client;
static char last_error[512];

static void put(const char *d, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", d, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void on_teardown(vial_req *rq, const char *err)
{
    snprintf(last_error, sizeof last_error, "%s", err ? err : "");
}

static int page(vial_req *rq, vial_res *rs)
{
    vial_tmpl_value ctx = vial_render_ctx(rq);
    const char *title = vial_req_arg(rq, "title");
    vial_tmpl_set(vial_req_arena(rq), ctx, "title", vial_tmpl_cstr(title ? title : "none"));
    return vial_render(rq, rs, vial_req_param(rq, "name"), ctx);
}

static int item(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "item"); }

static int flash_set(vial_req *rq, vial_res *rs)
{
    vial_flash(rq, "error", "bad <thing>");
    vial_flash(rq, NULL, "plain");
    return vial_text(rs, 200, "flashed");
}

static int with_state(vial_req *rq, vial_res *rs)
{
    vial_session_set(rq, "user", "ada");
    vial_g_set_str(rq, "who", "gee");
    vial_g_set(rq, "ptr", rs); /* not a string: invisible to templates */
    return vial_render(rq, rs, "state.html", vial_tmpl_undefined());
}

static int from_string(vial_req *rq, vial_res *rs)
{
    vial_tmpl_value ctx = vial_render_ctx(rq);
    vial_tmpl_set(vial_req_arena(rq), ctx, "x", vial_tmpl_cstr(vial_req_arg(rq, "x")));
    return vial_render_string(rq, rs, "<b>{{ x }}</b>", ctx);
}

static int not_found_page(vial_req *rq, vial_res *rs)
{
    return vial_render(rq, rs, "404.html", vial_tmpl_undefined());
}

static int form_page(vial_req *rq, vial_res *rs)
{
    return vial_render(rq, rs, "form.html", vial_tmpl_undefined());
}

/* Checks the token posted back (the template global csrf_token() made it). */
static int csrf_check(vial_req *rq, vial_res *rs)
{
    int st = vial_csrf_validate(rq, rs);
    if (st)
        return st;
    return vial_text(rs, 200, "token ok");
}

static int shout(vial_tmpl_call *c, vial_tmpl_value *ret)
{
    if (c->nargs != 1 || c->args[0].kind != VIAL_TMPL_STRING)
        return -EINVAL;
    char *s = vial_tmpl_alloc(c->arena, c->args[0].len + 2);
    memcpy(s, c->args[0].u.s, c->args[0].len);
    s[c->args[0].len] = '!';
    *ret = vial_tmpl_str(s, c->args[0].len + 1);
    /* the request is at hand too */
    return vial_render_req() ? 0 : -EINVAL;
}

static int setup(void **s)
{
    strcpy(dir, "/tmp/vial-render-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(app_dir, sizeof app_dir, "%s/app", dir);
    snprintf(bp_dir, sizeof bp_dir, "%s/bp", dir);
    assert_int_equal(mkdir(app_dir, 0700), 0);
    assert_int_equal(mkdir(bp_dir, 0700), 0);
    put(app_dir, "page.html", "<h1>{{ title }}</h1>");
    put(app_dir, "page.txt", "title={{ title }}");
    put(app_dir, "links.html",
        "{{ url_for('item', id=7, q='a b') }}|{{ url_for('api.thing', _external=true) }}"
        "|{{ url_for('item', id=1, _anchor='top') }}");
    put(app_dir, "badlink.html", "x\n{{ url_for('nowhere') }}");
    put(app_dir, "flash.html",
        "{% for c, m in get_flashed_messages(with_categories=true) %}[{{ c }}:{{ m }}]{% endfor %}"
        "|{{ get_flashed_messages(category_filter=['error'])|length }}");
    put(app_dir, "state.html",
        "{{ request.method }} {{ request.path }} {{ request.args.q }} {{ request.args['q'] }} "
        "{{ request.args.get('missing', 'dflt') }} {{ request.args.getlist('t')|join(',') }} "
        "{{ request.headers['x-thing'] }} {{ request.headers.get('X-THING') }} {{ request.endpoint }} "
        "{{ session.user }} {{ 'user' in session }} {{ 'nobody' in session }} {{ g.who }} "
        "[{{ g.ptr }}] {{ request.cookies.c }} {{ request.full_path }} {{ request.url }}");
    put(app_dir, "shared.html", "app version");
    put(bp_dir, "shared.html", "bp version");
    put(bp_dir, "only_bp.html", "from the blueprint: {% include 'page.txt' %}");
    put(app_dir, "globals.html", "{{ site }} {{ shout('hi') }} {{ site_obj.name }}");
    put(app_dir, "form.html",
        "{{ request.form.name }} {{ request.form.getlist('t')|join(',') }} {{ 'name' in request.form }} "
        "{{ session.get('user', 'guest') }}");
    put(app_dir, "csrf.html", "{{ csrf_token() }}|{{ csrf_token() }}");
    put(app_dir, "404.html", "no page at {{ request.path }}");
    put(app_dir, "divzero.html", "line one\n{{ 1 // 0 }}");

    app = vial_app_new();
    assert_non_null(app);
    assert_int_equal(vial_app_set_secret_key(app, "test secret key, long enough"), 0);
    assert_int_equal(vial_app_set_template_folder(app, app_dir), 0);
    assert_int_equal(vial_teardown_request_sync(app, on_teardown), 0);
    assert_int_equal(vial_route(app, "GET /p/<path:name>", page), 0);
    assert_int_equal(vial_route(app, "GET /item/<int:id>", item), 0);
    assert_int_equal(vial_route(app, "GET /flash", flash_set), 0);
    assert_int_equal(vial_route_sync(app, "GET /state", with_state), 0);
    assert_int_equal(vial_route(app, "GET /string", from_string), 0);
    assert_int_equal(vial_route(app, "POST /form", form_page), 0);
    assert_int_equal(vial_route(app, "POST /csrf", csrf_check), 0);
    assert_int_equal(vial_errorhandler(app, 404, not_found_page), 0);
    vial_bp *bp = vial_blueprint(app, "api", "/api");
    assert_non_null(bp);
    assert_int_equal(vial_bp_route_as(bp, "GET /thing", item, "thing", NULL), 0);
    assert_int_equal(vial_bp_set_template_folder(bp, bp_dir), 0);
    assert_int_equal(vial_template_global(app, "site", vial_tmpl_cstr("My <Site>")), 0);
    assert_int_equal(vial_template_function(app, "shout", shout, NULL), 0);
    static struct vial_arena *a;
    a = vial_tmpl_arena_new();
    vial_tmpl_value obj = vial_tmpl_dict(a);
    vial_tmpl_set(a, obj, "name", vial_tmpl_cstr("obj"));
    assert_int_equal(vial_template_global(app, "site_obj", obj), 0);
    client = vial_test_client_new(app);
    assert_non_null(client);
    *s = a;
    return 0;
}

static int teardown(void **s)
{
    vial_test_client_free(client);
    vial_app_free(app);
    vial_tmpl_arena_free(*s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static vial_test_response *get(const char *target, const char *const *headers)
{
    last_error[0] = 0;
    return vial_test_client_request(client, "GET", target, headers, NULL, 0);
}

/* GET target: status, body (NULL: any) and Content-Type (NULL: any). */
static void expect_ct(const char *target, int status, const char *body, const char *ctype)
{
    vial_test_response *r = get(target, NULL);
    assert_non_null(r);
    assert_int_equal(vial_test_response_status(r), status);
    if (body)
        assert_string_equal(vial_test_response_body(r, NULL), body);
    if (ctype)
        assert_string_equal(vial_test_response_header(r, "Content-Type"), ctype);
    vial_test_response_free(r);
}

static void expect(const char *target, int status, const char *body)
{
    expect_ct(target, status, body, NULL);
}

static void test_context_and_type(void **s)
{
    expect_ct("/p/page.html?title=Hi", 200, "<h1>Hi</h1>", "text/html; charset=utf-8");
    /* twice: the second comes from the cache */
    expect("/p/page.html?title=Again", 200, "<h1>Again</h1>");
    /* .txt: no autoescape */
    expect_ct("/p/page.txt?title=%3Cb%3E", 200, "title=<b>", "text/plain; charset=utf-8");
}

static void test_autoescape(void **s)
{
    expect("/p/page.html?title=%3Cscript%3Ealert(%27x%27)%3C/script%3E%26", 200,
           "<h1>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;</h1>");
}

static void test_error_handler_keeps_status(void **s)
{
    expect_ct("/no/such/route", 404, "no page at /no/such/route", "text/html; charset=utf-8");
}

static void test_missing_template(void **s)
{
    expect("/p/nope.html", 500, NULL);
    assert_non_null(strstr(last_error, "nope.html"));
}

static void test_render_error(void **s)
{
    expect("/p/divzero.html", 500, NULL);
    assert_non_null(strstr(last_error, "divzero.html:2:"));
    expect("/p/badlink.html", 500, NULL);
    assert_non_null(strstr(last_error, "badlink.html:2:"));
    assert_non_null(strstr(last_error, "nowhere"));
}

static void test_url_for(void **s)
{
    expect("/p/links.html", 200, "/item/7?q=a+b|http://localhost/api/thing|/item/1#top");
}

static void test_flashed_messages(void **s)
{
    expect("/flash", 200, "flashed");
    expect("/p/flash.html", 200, "[error:bad &lt;thing&gt;][message:plain]|1");
    expect("/p/flash.html", 200, "|0"); /* taken by the request before */
}

static void test_request_session_g(void **s)
{
    const char *h[] = {"X-Thing: hdr", "Cookie: c=cookie", NULL};
    vial_test_response *r = get("/state?q=%3Cq%3E&t=1&t=2", h);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_body(r, NULL),
                        "GET /state &lt;q&gt; &lt;q&gt; dflt 1,2 hdr hdr with_state ada True False gee "
                        "[] cookie /state?q=%3Cq%3E&amp;t=1&amp;t=2 "
                        "http://localhost/state?q=%3Cq%3E&amp;t=1&amp;t=2");
    vial_test_response_free(r);
}

static void test_request_form(void **s)
{
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    const char body[] = "name=%3Cx%3E&t=a&t=b";
    vial_test_client *c = vial_test_client_new(app); /* no session cookie */
    vial_test_response *r = vial_test_client_request(c, "POST", "/form", h, body, sizeof body - 1);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_body(r, NULL), "&lt;x&gt; a,b True guest");
    vial_test_response_free(r);
    vial_test_client_free(c);
}

/* csrf_token() in a template gives the request's token (the same string
 * twice in one page), and that token passes vial_csrf_validate when posted
 * back in the same session; a changed one does not. */
static void test_csrf_token_global(void **s)
{
    vial_test_response *r = get("/p/csrf.html", NULL);
    assert_int_equal(vial_test_response_status(r), 200);
    const char *body = vial_test_response_body(r, NULL);
    const char *bar = strchr(body, '|');
    assert_non_null(bar);
    size_t n = (size_t)(bar - body);
    assert_true(n > 20);
    assert_int_equal(strlen(bar + 1), n);
    assert_memory_equal(body, bar + 1, n);
    char form[512];
    snprintf(form, sizeof form, "csrf_token=%.*s", (int)n, body);
    vial_test_response_free(r);

    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    r = vial_test_client_request(client, "POST", "/csrf", h, form, strlen(form));
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_body(r, NULL), "token ok");
    vial_test_response_free(r);

    form[strlen("csrf_token=") + 3] ^= 1; /* one character changed */
    r = vial_test_client_request(client, "POST", "/csrf", h, form, strlen(form));
    assert_int_equal(vial_test_response_status(r), 400);
    vial_test_response_free(r);
}

static void test_blueprint_folder(void **s)
{
    expect("/p/shared.html", 200, "app version"); /* the app's folder first */
    expect("/p/only_bp.html", 200, "from the blueprint: title=none");
}

static void test_globals_and_functions(void **s)
{
    expect("/p/globals.html", 200, "My &lt;Site&gt; hi! obj");
}

static void test_render_string(void **s)
{
    expect("/string?x=%3Ci%3E", 200, "<b>&lt;i&gt;</b>");
    expect("/string?x=again", 200, "<b>again</b>");
}

static void test_setup_refused_after_render(void **s)
{
    assert_int_equal(vial_app_set_template_folder(app, "elsewhere"), -EBUSY);
}

/* A second app: load-time checks and auto reload. */
static void test_syntax_error_at_load(void **s)
{
    char d[128];
    snprintf(d, sizeof d, "%s/broken", dir);
    assert_int_equal(mkdir(d, 0700), 0);
    put(d, "ok.html", "fine");
    put(d, "bad.html", "one\ntwo {% if %}\n");
    vial_app *a2 = vial_app_new();
    assert_int_equal(vial_app_set_template_folder(a2, d), 0);
    assert_int_equal(vial_app_load_templates(a2), VIAL_ETMPL_SYNTAX);
    vial_app_free(a2);
    put(d, "bad.html", "now fine");
    a2 = vial_app_new();
    assert_int_equal(vial_app_set_template_folder(a2, d), 0);
    assert_int_equal(vial_app_load_templates(a2), 2);
    vial_app_free(a2);
}

static void test_auto_reload(void **s)
{
    char d[128];
    snprintf(d, sizeof d, "%s/reload", dir);
    assert_int_equal(mkdir(d, 0700), 0);
    put(d, "page.html", "version 1");
    vial_app *a2 = vial_app_new();
    assert_int_equal(vial_app_set_template_folder(a2, d), 0);
    assert_int_equal(vial_app_set_templates_auto_reload(a2, 1), 0);
    assert_int_equal(vial_route(a2, "GET /p/<path:name>", page), 0);
    vial_test_client *c2 = vial_test_client_new(a2);
    vial_test_response *r = vial_test_client_get(c2, "/p/page.html");
    assert_string_equal(vial_test_response_body(r, NULL), "version 1");
    vial_test_response_free(r);
    put(d, "page.html", "version 2");
    usleep(1100 * 1000); /* files are looked at once a second */
    r = vial_test_client_get(c2, "/p/page.html");
    assert_string_equal(vial_test_response_body(r, NULL), "version 2");
    vial_test_response_free(r);
    vial_test_client_free(c2);
    vial_app_free(a2);
}

/* The engine's objects, on their own: attributes computed when read. */
static int obj_attr(void *data, const char *name, size_t len, struct vial_arena *a, vial_tmpl_value *out)
{
    ++*(int *)data;
    if (len == 1 && name[0] == 'x')
        *out = vial_tmpl_cstr("<ex>");
    else if (len == 4 && !memcmp(name, "boom", 4))
        return -EIO;
    else
        *out = vial_tmpl_undefined();
    return 0;
}

static void test_engine_object(void **s)
{
    int calls = 0;
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    struct vial_arena *a = vial_tmpl_arena_new();
    assert_int_equal(vial_tmpl_global(env, "o", vial_tmpl_object(a, "Thing", obj_attr, &calls)), 0);
    const char *src = "{{ o.x }} {{ o['x'] }} {{ 'x' in o }} {{ 'y' in o }} {{ o.y is defined }} {{ o }}"
                      "{% if o %} truthy{% endif %}";
    vial_tmpl *t;
    vial_tmpl_error err;
    assert_int_equal(vial_tmpl_add_source(env, "o.html", src, strlen(src), &t, &err), 0);
    vial_tmpl_out out = {0};
    assert_int_equal(vial_tmpl_render(t, vial_tmpl_undefined(), a, &out, &err), 0);
    assert_int_equal(calls, 5);
    assert_true(out.len == strlen("&lt;ex&gt; &lt;ex&gt; True False False &lt;Thing&gt; truthy"));
    assert_memory_equal(out.data, "&lt;ex&gt; &lt;ex&gt; True False False &lt;Thing&gt; truthy", out.len);
    const char *bad = "line\n{{ o.boom }}";
    assert_int_equal(vial_tmpl_add_source(env, "b.html", bad, strlen(bad), &t, &err), 0);
    out.len = 0;
    assert_int_equal(vial_tmpl_render(t, vial_tmpl_undefined(), a, &out, &err), -ERANGE);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.message, "boom"));
    free(out.data);
    vial_tmpl_arena_free(a);
    vial_tmpl_env_free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_and_type),
        cmocka_unit_test(test_autoescape),
        cmocka_unit_test(test_missing_template),
        cmocka_unit_test(test_error_handler_keeps_status),
        cmocka_unit_test(test_render_error),
        cmocka_unit_test(test_url_for),
        cmocka_unit_test(test_flashed_messages),
        cmocka_unit_test(test_request_session_g),
        cmocka_unit_test(test_request_form),
        cmocka_unit_test(test_csrf_token_global),
        cmocka_unit_test(test_blueprint_folder),
        cmocka_unit_test(test_globals_and_functions),
        cmocka_unit_test(test_render_string),
        cmocka_unit_test(test_setup_refused_after_render),
        cmocka_unit_test(test_syntax_error_at_load),
        cmocka_unit_test(test_auto_reload),
        cmocka_unit_test(test_engine_object),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
