/* The JSON API, under /api (a blueprint whose hook asks for a login):
 *   GET    /api/tasks             every task
 *   POST   /api/tasks             {"title": "...", "status"?: "todo", "assignee"?: "bob"}
 *   GET    /api/tasks/<id>        one task
 *   PATCH  /api/tasks/<id>        any of title, status, assignee (null unassigns)
 *   DELETE /api/tasks/<id>
 * A field that does not validate is a 400 {"error": "...", "field": "..."}. */
#include "demo.h"

#include <stdlib.h>
#include <string.h>

#define TASK_COLS "id, title, status, assignee, created_by"

/* 1 when s has min..max characters (UTF-8) and no control character. */
static int text_ok(const char *s, size_t min, size_t max)
{
    size_t chars = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            return 0;
        chars += (*c & 0xc0) != 0x80; /* not a continuation byte */
    }
    return chars >= min && chars <= max;
}

const char *task_check_title(const char *s)
{
    return s && text_ok(s, 1, 200) ? NULL : "title must be 1 to 200 characters, none a control";
}

const char *task_check_status(const char *s)
{
    if (s && (!strcmp(s, "todo") || !strcmp(s, "doing") || !strcmp(s, "done")))
        return NULL;
    return "status must be one of todo, doing, done";
}

const char *task_check_assignee(const char *s)
{
    return !s || text_ok(s, 0, 64) ? NULL : "assignee must be at most 64 characters, none a control";
}

int task_insert(vial_req *rq, const char *title, const char *status, const char *assignee,
                rows *out)
{
    const char *p[] = {title, status, assignee && *assignee ? assignee : NULL, current_user(rq)};
    int r = db_query(rq, out, "INSERT INTO tasks (title, status, assignee, created_by)"
                     " VALUES ($1, $2, $3, $4) RETURNING " TASK_COLS, 4, p);
    if (r < 0)
        return r;
    return task_changed(rq, "created", cell(out, 0, 0),
                        vial_sprintf(rq, "created #%s \"%s\"", cell(out, 0, 0), title));
}

static void write_task(vial_json *j, const rows *r, size_t i)
{
    static const char *const keys[] = {"id", "title", "status", "assignee", "created_by"};
    vial_json_obj(j);
    for (int c = 0; c < 5; c++) {
        vial_json_key(j, keys[c]);
        const char *v = cell(r, i, c);
        if (c == 0)
            vial_json_int(j, strtoll(v, NULL, 10));
        else if (v)
            vial_json_str(j, v);
        else
            vial_json_null(j);
    }
    vial_json_end(j);
}

static int send_task(vial_res *rs, int status, const rows *r)
{
    vial_json *j = vial_json_begin(rs, status);
    write_task(j, r, 0);
    return vial_json_finish(j);
}

static int invalid(vial_res *rs, const char *field, const char *message)
{
    vial_json *j = vial_json_begin(rs, 400);
    vial_json_obj(j);
    vial_json_key(j, "error");
    vial_json_str(j, message);
    vial_json_key(j, "field");
    vial_json_str(j, field);
    vial_json_end(j);
    int r = vial_json_finish(j);
    return r < 0 ? r : 1;
}

static int require_login(vial_req *rq, vial_res *rs)
{
    return current_user(rq) ? 0 : vial_abort_msg(rs, 401, "login required");
}

static int list_tasks(vial_req *rq, vial_res *rs)
{
    rows r;
    if (db_query(rq, &r, "SELECT " TASK_COLS " FROM tasks ORDER BY id", 0, NULL) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_arr(j);
    for (size_t i = 0; i < r.n; i++)
        write_task(j, &r, i);
    vial_json_end(j);
    return vial_json_finish(j);
}

/* Reads one string field of the body: absent leaves *out alone (returns
 * 0), null gives NULL when null_ok, anything else but a string is an error. */
static int string_field(const vial_jv *doc, const char *key, int null_ok, const char **out)
{
    const vial_jv *v = vial_jv_get(doc, key);
    if (!v)
        return 0;
    if (vial_jv_type(v) == VIAL_JNULL && null_ok) {
        *out = NULL;
        return 0;
    }
    if (vial_jv_type(v) != VIAL_JSTRING)
        return -1;
    size_t len;
    *out = vial_jv_str(v, &len);
    return strlen(*out) == len ? 0 : -1; /* no NUL inside */
}

/* Validates the body's fields into title/status/assignee (which hold the
 * current values for a PATCH). Returns 0, 1 when a 400 naming the field is
 * written, or a negative code. */
static int read_task(vial_req *rq, vial_res *rs, const char **title, const char **status,
                     const char **assignee)
{
    const vial_jv *doc;
    int r = vial_req_json(rq, &doc);
    if (r < 0)
        return r; /* 400 or 415 with the parser's reason, as JSON by error_page */
    if (vial_jv_type(doc) != VIAL_JOBJECT)
        return invalid(rs, "body", "the body must be a JSON object");
    const char *why;
    if (string_field(doc, "title", 0, title) < 0)
        return invalid(rs, "title", "title must be a string");
    if ((why = task_check_title(*title)))
        return invalid(rs, "title", why);
    if (string_field(doc, "status", 0, status) < 0 || (why = task_check_status(*status)))
        return invalid(rs, "status", "status must be one of todo, doing, done");
    if (string_field(doc, "assignee", 1, assignee) < 0)
        return invalid(rs, "assignee", "assignee must be a string or null");
    if ((why = task_check_assignee(*assignee)))
        return invalid(rs, "assignee", why);
    return 0;
}

static int create_task(vial_req *rq, vial_res *rs)
{
    const char *title = NULL, *status = "todo", *assignee = NULL;
    int r = read_task(rq, rs, &title, &status, &assignee);
    if (r != 0)
        return r < 0 ? r : 0;
    rows t;
    if (task_insert(rq, title, status, assignee, &t) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    vial_res_set_header(rs, "Location", vial_url_for(rq, "api.task", "id", cell(&t, 0, 0), NULL));
    return send_task(rs, 201, &t);
}

static int find_task(vial_req *rq, vial_res *rs, rows *t)
{
    const char *p[] = {vial_req_param(rq, "id")};
    if (db_query(rq, t, "SELECT " TASK_COLS " FROM tasks WHERE id = $1", 1, p) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    return t->n ? 0 : vial_abort_msg(rs, 404, "no such task");
}

static int get_task(vial_req *rq, vial_res *rs)
{
    rows t;
    int r = find_task(rq, rs, &t);
    return r < 0 ? r : send_task(rs, 200, &t);
}

static int update_task(vial_req *rq, vial_res *rs)
{
    rows t;
    int r = find_task(rq, rs, &t);
    if (r < 0)
        return r;
    const char *old_status = cell(&t, 0, 2);
    const char *title = cell(&t, 0, 1), *status = old_status, *assignee = cell(&t, 0, 3);
    r = read_task(rq, rs, &title, &status, &assignee);
    if (r != 0)
        return r < 0 ? r : 0;
    const char *p[] = {cell(&t, 0, 0), title, status, assignee && *assignee ? assignee : NULL};
    if (db_query(rq, &t, "UPDATE tasks SET title = $2, status = $3, assignee = $4 WHERE id = $1"
                 " RETURNING " TASK_COLS, 4, p) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    if (t.n == 0)
        return vial_abort_msg(rs, 404, "no such task"); /* deleted meanwhile */
    const char *what = strcmp(status, old_status)
                           ? vial_sprintf(rq, "moved #%s \"%s\" to %s", p[0], title, status)
                           : vial_sprintf(rq, "edited #%s \"%s\"", p[0], title);
    task_changed(rq, "updated", p[0], what);
    return send_task(rs, 200, &t);
}

static int delete_task(vial_req *rq, vial_res *rs)
{
    const char *p[] = {vial_req_param(rq, "id")};
    rows t;
    if (db_query(rq, &t, "DELETE FROM tasks WHERE id = $1 RETURNING id, title", 1, p) < 0)
        return vial_abort_msg(rs, 503, db_error(rq));
    if (t.n == 0)
        return vial_abort_msg(rs, 404, "no such task");
    task_changed(rq, "deleted", cell(&t, 0, 0),
                 vial_sprintf(rq, "deleted #%s \"%s\"", cell(&t, 0, 0), cell(&t, 0, 1)));
    return vial_res_set_status(rs, 204);
}

int api_register(vial_app *app)
{
    vial_bp *api = vial_blueprint(app, "api", "/api");
    if (!api || vial_bp_before_request(api, require_login) < 0)
        return -1;
    int r = 0;
    r |= vial_bp_route_as(api, "GET /tasks", list_tasks, "tasks", NULL);
    r |= vial_bp_route_as(api, "POST /tasks", create_task, "create_task", NULL);
    r |= vial_bp_route_as(api, "GET /tasks/<int:id>", get_task, "task", NULL);
    r |= vial_bp_route_as(api, "PATCH /tasks/<int:id>", update_task, "update_task", NULL);
    r |= vial_bp_route_as(api, "DELETE /tasks/<int:id>", delete_task, "delete_task", NULL);
    return r < 0 ? -1 : 0;
}
