/* CSRF protection, CORS and HTML escaping in one small app; also the
 * fixture of tests/blackbox/test_csrf.py and test_cors.py (keep the routes
 * and settings those tests rely on).
 *
 *   ./build/examples/websec --port 8080 [--secret KEY] [--no-csrf] [--no-cors]
 *
 * --no-csrf / --no-cors leave a feature off, so the tests can be seen to
 * fail without it. */
#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int form_page(vial_req *rq, vial_res *rs)
{
    const char *tok = vial_csrf_token(rq);
    if (!tok)
        return vial_fail(rs, "no CSRF token (is the secret key set?)");
    vial_res_set_header(rs, "Content-Type", "text/html; charset=utf-8");
    const char *html = vial_sprintf(rq,
                                    "<form method=\"post\" action=\"/submit\">"
                                    "<input type=\"hidden\" name=\"csrf_token\" value=\"%s\">"
                                    "<input name=\"title\"><button>Save</button></form>\n",
                                    vial_escape(rq, tok));
    if (!html)
        return -ENOMEM;
    return vial_res_set_body(rs, html, strlen(html));
}

/* The token alone, for scripts that send it in X-CSRFToken. */
static int token(vial_req *rq, vial_res *rs)
{
    const char *tok = vial_csrf_token(rq);
    return tok ? vial_text(rs, 200, "%s", tok) : vial_fail(rs, "no CSRF token");
}

static int submit(vial_req *rq, vial_res *rs)
{
    const char *title = vial_req_form(rq, "title");
    return vial_text(rs, 200, "saved %s", title ? title : "");
}

static int webhook(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "hook ok"); }

static int api_ping(vial_req *rq, vial_res *rs)
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "pong");
    vial_json_bool(j, 1);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int data(vial_req *rq, vial_res *rs)
{
    vial_res_set_header(rs, "X-Total", "3");
    return vial_text(rs, 200, "%s data", vial_req_method(rq));
}

static int broken(vial_req *rq, vial_res *rs) { return vial_fail(rs, "broken on purpose"); }

static int hello(vial_req *rq, vial_res *rs)
{
    const char *name = vial_req_arg(rq, "name");
    vial_res_set_header(rs, "Content-Type", "text/html; charset=utf-8");
    const char *html = vial_sprintf(rq, "<p>Hello, %s!</p>\n", vial_escape(rq, name ? name : "world"));
    return html ? vial_res_set_body(rs, html, strlen(html)) : -ENOMEM;
}

/* Errors name their problem: "400 Bad Request: The CSRF token is missing." */
static int http_error(vial_req *rq, vial_res *rs)
{
    int code = vial_error_code(rq);
    const char *msg = vial_error_message(rq);
    return vial_text(rs, code, "%d %s%s%s\n", code, vial_status_text(code), msg ? ": " : "", msg ? msg : "");
}

static const char *secret = "websec example secret: change me";
static int no_csrf, no_cors;
static const vial_option options[] = {
    {"secret", "KEY", "the session's secret key", &secret},
    {"no-csrf", NULL, "leave CSRF protection off", &no_csrf},
    {"no-cors", NULL, "leave CORS off", &no_cors},
    {0},
};

int main(int argc, char **argv)
{
    vial_config cfg = vial_config_default();
    cfg.options = options;
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    vial_app *app = vial_app_new();
    int e = vial_app_set_secret_key(app, secret);
    e |= vial_errorhandler(app, VIAL_HTTP_ERRORS, http_error);
    e |= vial_route(app, "GET /form", form_page);
    e |= vial_route(app, "GET /token", token);
    e |= vial_route(app, "POST /submit", submit);
    e |= vial_route(app, "POST /webhook", webhook);
    e |= vial_route(app, "GET,PUT /data", data);
    e |= vial_route(app, "GET /broken", broken);
    e |= vial_route(app, "GET /hello", hello);
    vial_bp *api = vial_blueprint(app, "api", "/api");
    vial_bp *pub = vial_blueprint(app, "pub", "/pub");
    e |= !api || !pub;
    if (!e) {
        e |= vial_bp_route_as(api, "POST /ping", api_ping, "ping", NULL);
        e |= vial_bp_route_as(pub, "GET /data", data, "data", NULL);
    }
    if (!no_csrf && !e) {
        e |= vial_csrf_protect(app, NULL);
        e |= vial_csrf_exempt(app, "webhook"); /* signed by its sender instead */
        e |= vial_bp_csrf_exempt(api);         /* token-authenticated JSON API */
    }
    if (!no_cors && !e) {
        static const char *const origins[] = {"https://app.example", NULL};
        const vial_cors_opts site = {
            .origins = origins,
            .allow_headers = "Content-Type, X-CSRFToken",
            .expose_headers = "X-Total",
            .credentials = 1,
            .max_age = 600,
        };
        e |= vial_cors(app, &site);
        e |= vial_bp_cors(pub, NULL); /* public data: any origin, no cookies */
    }
    if (e) {
        fprintf(stderr, "websec: setting the app up failed\n");
        vial_app_free(app);
        return 1;
    }
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    return r == 0 ? 0 : 1;
}
