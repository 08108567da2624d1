/* The HTML pages: register, log in and out, the board, and the form that
 * adds a task. Templates (templates/) render with vial_render; every form
 * and API call carries a CSRF token (vial_csrf_protect). */
#include "demo.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* --- errors ---------------------------------------------------------------------------- */

/* Errors: JSON under /api/ ({"error": "..."}), a page elsewhere. */
static int error_page(vial_req *rq, vial_res *rs)
{
    int status = vial_error_code(rq);
    const char *msg = vial_error_message(rq);
    if (!msg)
        msg = vial_status_text(status);
    if (strncmp(vial_req_path(rq), "/api/", 5) == 0) {
        vial_json *j = vial_json_begin(rs, status);
        vial_json_obj(j);
        vial_json_key(j, "error");
        vial_json_str(j, msg);
        vial_json_end(j);
        return vial_json_finish(j);
    }
    struct vial_arena *a = vial_req_arena(rq);
    vial_tmpl_value ctx = vial_render_ctx(rq);
    vial_tmpl_set(a, ctx, "status", vial_tmpl_int(status));
    vial_tmpl_set(a, ctx, "reason", vial_tmpl_cstr(vial_status_text(status)));
    vial_tmpl_set(a, ctx, "message", vial_tmpl_cstr(msg));
    return vial_render(rq, rs, "error.html", ctx); /* the status stays the error's */
}

/* --- accounts ------------------------------------------------------------------ */

/* Hashing is slow on purpose: it runs on the worker pool (vial_offload),
 * never on the event loop. */
typedef struct pw_job {
    const char *password, *hash;
    char out[200];
    int result;
} pw_job;

static char no_user_hash[200]; /* made at start */

static void hash_job(void *arg)
{
    pw_job *j = arg;
    j->result = vial_password_hash(j->password, j->out, sizeof j->out);
}

static void verify_job(void *arg)
{
    pw_job *j = arg;
    j->result = vial_password_verify(j->hash, j->password);
}

static const char *check_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return "The name must be 1 to 32 characters.";
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", s[i]))
            return "The name may hold letters, digits, '_', '.' and '-' only.";
    return NULL;
}

static int account_form(vial_req *rq, vial_res *rs, int status, const char *name, const char *error)
{
    vial_tmpl_value ctx = vial_render_ctx(rq);
    vial_tmpl_set(vial_req_arena(rq), ctx, "error", error ? vial_tmpl_cstr(error) : vial_tmpl_none());
    vial_res_set_status(rs, status);
    return vial_render(rq, rs, name, ctx);
}

static int log_in(vial_req *rq, vial_res *rs, const char *name, const char *message)
{
    vial_session_clear(rq); /* a fresh session (and CSRF token) per login */
    vial_session_set(rq, "user", name);
    vial_flash(rq, "info", message);
    return vial_redirect(rs, "/board", 303);
}

static int register_page(vial_req *rq, vial_res *rs)
{
    if (strcmp(vial_req_method(rq), "GET") == 0)
        return account_form(rq, rs, 200, "register.html", NULL);
    const char *name = vial_req_form(rq, "name");
    const char *why = check_name(name);
    pw_job j = {.password = vial_req_form(rq, "password")};
    if (!why && (!j.password || strlen(j.password) < 6))
        why = "The password must have at least 6 characters.";
    if (why)
        return account_form(rq, rs, 400, "register.html", why);
    int r = vial_offload(rq, hash_job, &j);
    if (r < 0 || j.result < 0)
        return vial_abort(rs, 503);
    const char *p[] = {name, j.out};
    r = db_query(rq, NULL, "INSERT INTO users (name, pw_hash) VALUES ($1, $2)", 2, p);
    if (db_unique_violation(rq, r))
        return account_form(rq, rs, 409, "register.html", "That name is taken.");
    if (r < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    return log_in(rq, rs, name, vial_sprintf(rq, "Welcome, %s! Your account is ready.", name));
}

static int login_page(vial_req *rq, vial_res *rs)
{
    if (strcmp(vial_req_method(rq), "GET") == 0)
        return account_form(rq, rs, 200, "login.html", NULL);
    const char *name = vial_req_form(rq, "name");
    pw_job j = {.password = vial_req_form(rq, "password")};
    rows u;
    const char *p[] = {name};
    if (db_query(rq, &u, "SELECT pw_hash FROM users WHERE name = $1", 1, p) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    /* An unknown name costs a hash check too: the time says nothing. */
    j.hash = u.n == 1 ? cell(&u, 0, 0) : no_user_hash;
    if (j.password && vial_offload(rq, verify_job, &j) < 0)
        return vial_abort(rs, 503);
    if (u.n == 1 && j.password && j.result == 1)
        return log_in(rq, rs, name, vial_sprintf(rq, "Logged in as %s.", name));
    return account_form(rq, rs, 401, "login.html", "Wrong name or password.");
}

static int logout(vial_req *rq, vial_res *rs)
{
    vial_session_clear(rq);
    vial_flash(rq, "info", "Logged out.");
    return vial_redirect(rs, "/login", 303);
}

/* --- the board ------------------------------------------------------------------- */

static int require_login_page(vial_req *rq, vial_res *rs)
{
    vial_flash(rq, "error", "Please log in first.");
    return vial_redirect(rs, "/login", 303);
}

static int index_page(vial_req *rq, vial_res *rs)
{
    return vial_redirect(rs, current_user(rq) ? "/board" : "/login", 303);
}

static int board(vial_req *rq, vial_res *rs)
{
    if (!current_user(rq))
        return require_login_page(rq, rs);
    rows t;
    if (db_query(rq, &t, "SELECT id, title, status, assignee, created_by FROM tasks ORDER BY id",
                 0, NULL) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    static const char *const keys[] = {"id", "title", "status", "assignee", "created_by"};
    struct vial_arena *a = vial_req_arena(rq);
    vial_tmpl_value tasks = vial_tmpl_list(a); /* the template sorts them into columns */
    for (size_t i = 0; i < t.n; i++) {
        vial_tmpl_value task = vial_tmpl_dict(a);
        for (int c = 0; c < 5; c++) {
            const char *v = cell(&t, i, c);
            vial_tmpl_set(a, task, keys[c], v ? vial_tmpl_cstr(v) : vial_tmpl_none());
        }
        vial_tmpl_push(a, tasks, task);
    }
    vial_tmpl_value ctx = vial_render_ctx(rq);
    vial_tmpl_set(a, ctx, "tasks", tasks);
    return vial_render(rq, rs, "board.html", ctx);
}

/* The form on the board (works without JavaScript): Post/Redirect/Get. */
static int add_task(vial_req *rq, vial_res *rs)
{
    if (!current_user(rq))
        return require_login_page(rq, rs);
    const char *title = vial_req_form(rq, "title"), *assignee = vial_req_form(rq, "assignee");
    const char *why = task_check_title(title);
    if (!why)
        why = task_check_assignee(assignee);
    rows t;
    if (why)
        vial_flash(rq, "error", vial_sprintf(rq, "Not added: %s.", why));
    else if (task_insert(rq, title, "todo", assignee, &t) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    else
        vial_flash(rq, "info", vial_sprintf(rq, "Added task #%s.", cell(&t, 0, 0)));
    return vial_redirect(rs, "/board", 303);
}

int pages_register(vial_app *app, const char *template_dir)
{
    static char version[24]; /* ?v= on static URLs: the start time */
    snprintf(version, sizeof version, "%lld", (long long)time(NULL));
    int r = vial_password_hash("no such user", no_user_hash, sizeof no_user_hash);
    r |= vial_app_set_template_folder(app, template_dir);
    r |= vial_template_global(app, "v", vial_tmpl_cstr(version));
    r |= vial_csrf_protect(app, NULL);
    r |= vial_errorhandler(app, VIAL_HTTP_ERRORS, error_page);
    r |= vial_route(app, "GET /", index_page);
    r |= vial_route(app, "GET,POST /register", register_page);
    r |= vial_route(app, "GET,POST /login", login_page);
    r |= vial_route(app, "POST /logout", logout);
    r |= vial_route(app, "GET /board", board);
    r |= vial_route(app, "POST /tasks", add_task);
    return r < 0 ? -1 : 0;
}
