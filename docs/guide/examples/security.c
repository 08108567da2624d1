/* docs/guide/security.md as one program: a form protected against CSRF, an
 * API other origins may call (CORS), and text escaped into HTML.
 *   ./build/guide/guide_security --port 8080      serve it
 *   ./build/guide/guide_security --test           check it with the test client */
#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char last_title[128] = "nothing yet";

static int edit_form(vial_req *rq, vial_res *rs)
{
    const char *token = vial_csrf_token(rq);
    if (!token)
        return vial_fail(rs, "no secret key");
    vial_res_set_header(rs, "Content-Type", "text/html; charset=utf-8");
    const char *html = vial_sprintf(rq,
        "<p>Last: %s</p><form method=\"post\" action=\"/edit\">"
        "<input type=\"hidden\" name=\"csrf_token\" value=\"%s\">"
        "<input name=\"title\"><button>Save</button></form>",
        vial_escape(rq, last_title), vial_escape(rq, token));
    return html ? vial_res_set_body(rs, html, strlen(html)) : -ENOMEM;
}

static int edit(vial_req *rq, vial_res *rs)
{
    const char *title = vial_req_form(rq, "title");
    snprintf(last_title, sizeof last_title, "%s", title ? title : "");
    return vial_redirect(rs, "/edit", 303);
}

/* A script's API: JSON in, the token in X-CSRFToken. */
static int api_token(vial_req *rq, vial_res *rs)
{
    const char *token = vial_csrf_token(rq);
    return token ? vial_text(rs, 200, "%s", token) : vial_fail(rs, "no secret key");
}

static int api_items(vial_req *rq, vial_res *rs)
{
    vial_res_set_header(rs, "X-Total-Count", "0");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_arr(j);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int bad_request(vial_req *rq, vial_res *rs)
{
    const char *why = vial_error_message(rq);
    return vial_text(rs, 400, "%s", why ? why : "bad request");
}

static vial_app *make_app(const char *secret)
{
    vial_app *app = vial_app_new();
    static const char *const origins[] = {"https://app.example.com", NULL};
    const vial_cors_opts cors = {
        .origins = origins,
        .allow_headers = "Content-Type, X-CSRFToken",
        .expose_headers = "X-Total-Count",
        .credentials = 1,
        .max_age = 600,
    };
    int e = vial_app_set_secret_key(app, secret);
    e |= vial_csrf_protect(app, NULL);
    e |= vial_cors(app, &cors);
    e |= vial_errorhandler(app, 400, bad_request);
    e |= vial_route(app, "GET /edit", edit_form);
    e |= vial_route(app, "POST /edit", edit);
    e |= vial_route(app, "GET /api/token", api_token);
    e |= vial_route(app, "GET,POST /api/items", api_items);
    if (e) {
        vial_app_free(app);
        return NULL;
    }
    return app;
}

/* The value of the form's csrf_token field in an HTML page, copied to out. */
static int field_value(const char *html, char *out, size_t cap)
{
    const char *p = strstr(html, "name=\"csrf_token\" value=\"");
    if (!p)
        return -1;
    p += strlen("name=\"csrf_token\" value=\"");
    size_t n = strcspn(p, "\"");
    if (n >= cap)
        return -1;
    memcpy(out, p, n);
    out[n] = 0;
    return 0;
}

static int self_test(vial_app *app)
{
    int rc = 0;
    char token[256], body[512];
    vial_test_client *c = vial_test_client_new(app);
    const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};

    /* The form's token is accepted; without it the post is refused. */
    vial_test_response *r = vial_test_client_get(c, "/edit");
    rc |= field_value(vial_test_response_body(r, NULL), token, sizeof token);
    vial_test_response_free(r);
    snprintf(body, sizeof body, "title=%%3Cb%%3Ehi&csrf_token=%s", token);
    r = vial_test_client_request(c, "POST", "/edit", form, body, strlen(body));
    rc |= vial_test_response_status(r) != 303;
    vial_test_response_free(r);
    r = vial_test_client_request(c, "POST", "/edit", form, "title=x", 7);
    rc |= vial_test_response_status(r) != 400 ||
          strcmp(vial_test_response_body(r, NULL), "The CSRF token is missing.") != 0;
    vial_test_response_free(r);
    /* What was saved is shown escaped. */
    r = vial_test_client_get(c, "/edit");
    rc |= strstr(vial_test_response_body(r, NULL), "<p>Last: &lt;b&gt;hi</p>") == NULL;
    vial_test_response_free(r);

    /* A script of the allowed origin: preflight, then the call with the header token. */
    const char *pre[] = {"Origin: https://app.example.com", "Access-Control-Request-Method: POST",
                         "Access-Control-Request-Headers: content-type, x-csrftoken", NULL};
    r = vial_test_client_request(c, "OPTIONS", "/api/items", pre, NULL, 0);
    rc |= vial_test_response_status(r) != 204 ||
          strcmp(vial_test_response_header(r, "Access-Control-Allow-Origin"), "https://app.example.com") != 0 ||
          strcmp(vial_test_response_header(r, "Access-Control-Allow-Headers"), "content-type, x-csrftoken") != 0;
    vial_test_response_free(r);
    r = vial_test_client_get(c, "/api/token");
    char header[300];
    snprintf(header, sizeof header, "X-CSRFToken: %s", vial_test_response_body(r, NULL));
    vial_test_response_free(r);
    const char *call[] = {"Origin: https://app.example.com", "Content-Type: application/json", header, NULL};
    r = vial_test_client_request(c, "POST", "/api/items", call, "{}", 2);
    rc |= vial_test_response_status(r) != 200 ||
          strcmp(vial_test_response_header(r, "Access-Control-Allow-Credentials"), "true") != 0;
    vial_test_response_free(r);

    /* Another origin gets no CORS header: its page cannot read the answer. */
    const char *evil[] = {"Origin: https://evil.example", NULL};
    r = vial_test_client_request(c, "GET", "/api/items", evil, NULL, 0);
    rc |= vial_test_response_header(r, "Access-Control-Allow-Origin") != NULL;
    vial_test_response_free(r);
    vial_test_client_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    const char *secret = getenv("APP_SECRET_KEY");
    int testing = argc > 1 && !strcmp(argv[1], "--test");
    if (!secret && testing)
        secret = "a key for the self-test only";
    if (!secret) {
        fprintf(stderr, "set APP_SECRET_KEY (32 random bytes, hex)\n");
        return 2;
    }
    vial_app *app = make_app(secret);
    if (!app)
        return 1;
    int rc;
    if (testing) {
        rc = self_test(app);
    } else {
        vial_config cfg = vial_config_default();
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg) ? 1 : 0;
    }
    vial_app_free(app);
    return rc;
}
