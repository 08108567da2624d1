/* Templates in the conformance app (tests/blackbox/test_templates.py): the
 * app's folder from $CONFORMANCE_TEMPLATES, a blueprint "pages" (under
 * /pages) with its own folder from $CONFORMANCE_BP_TEMPLATES, searched
 * after the app's. Without $CONFORMANCE_TEMPLATES nothing is registered.
 *
 *   GET /tmpl/<path:name>?name=..&item=..  renders name with {name, items}
 *   GET /pages/<path:name>                 the same, from the blueprint
 *   GET /tmpl-flash                        flashes two messages (one with a
 *                                          category), then 200 "flashed"
 *   GET /tmpl-login?user=U                 session["user"] = U, 200 "ok" */
#include <vial.h>

#include <stdlib.h>

static int render_named(vial_req *rq, vial_res *rs)
{
    struct vial_arena *a = vial_req_arena(rq);
    vial_tmpl_value ctx = vial_render_ctx(rq), items = vial_tmpl_list(a);
    const char *name = vial_req_arg(rq, "name");
    vial_tmpl_set(a, ctx, "name", name ? vial_tmpl_cstr(name) : vial_tmpl_none());
    const char *vals[16];
    unsigned n = vial_req_arg_list(rq, "item", vals, 16);
    for (unsigned i = 0; i < n && i < 16; i++)
        vial_tmpl_push(a, items, vial_tmpl_cstr(vals[i]));
    vial_tmpl_set(a, ctx, "items", items);
    return vial_render(rq, rs, vial_req_param(rq, "name"), ctx);
}

static int tmpl_flash(vial_req *rq, vial_res *rs)
{
    int e = vial_flash(rq, "error", "<b>bad</b> input");
    if (!e)
        e = vial_flash(rq, NULL, "saved");
    return e ? e : vial_text(rs, 200, "flashed");
}

static int tmpl_login(vial_req *rq, vial_res *rs)
{
    const char *user = vial_req_arg(rq, "user");
    int e = vial_session_set(rq, "user", user ? user : "nobody");
    return e ? e : vial_text(rs, 200, "ok");
}

int conformance_templates(vial_app *app)
{
    const char *dir = getenv("CONFORMANCE_TEMPLATES");
    if (!dir || !*dir)
        return 0;
    int e = vial_app_set_template_folder(app, dir);
    e |= vial_app_set_secret_key(app, "conformance templates secret key");
    e |= vial_route_as(app, "GET /tmpl/<path:name>", render_named, "tmpl", NULL);
    e |= vial_route_sync(app, "GET /tmpl-flash", tmpl_flash);
    e |= vial_route(app, "GET /tmpl-login", tmpl_login);
    vial_bp *pages = vial_blueprint(app, "pages", "/pages");
    if (!pages)
        return -1;
    e |= vial_bp_route_as(pages, "GET /<path:name>", render_named, "page", NULL);
    const char *bp_dir = getenv("CONFORMANCE_BP_TEMPLATES");
    if (bp_dir && *bp_dir)
        e |= vial_bp_set_template_folder(pages, bp_dir);
    return e;
}
