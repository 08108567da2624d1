/* What the demo's files share. main.c wires the parts: pages.c (HTML),
 * api.c (JSON), live.c (websocket and SSE), db.c (SQLite or PostgreSQL). */
#ifndef DEMO_H
#define DEMO_H

#include <vial.h>

/* --- db.c: the same SQL ($1..$n parameters) on SQLite or PostgreSQL ------ */
typedef struct rows {
    size_t n;
    int cols;
    const char **cell; /* text in the request's memory; NULL for SQL NULL */
} rows;
static inline const char *cell(const rows *r, size_t row, int col)
{
    return row < r->n ? r->cell[row * r->cols + col] : NULL;
}
/* PostgreSQL when database_url is set, else the SQLite file. 0 or -errno. */
int db_open(const char *database_url, const char *sqlite_path);
void db_close(void); /* after vial_run */
const char *db_kind(void); /* "sqlite" or "postgresql" */
/* A before_request hook: PostgreSQL's schema is made by the first request. */
int db_ensure_schema(vial_req *rq, vial_res *rs);
/* One statement (out may be NULL): 0, or a negative code and db_error. */
int db_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *params);
const char *db_error(vial_req *rq);
int db_unique_violation(vial_req *rq, int code); /* 1: a UNIQUE constraint failed */

/* --- main.c, live.c ----------------------------------------------------------- */
const char *current_user(vial_req *rq); /* the logged-in name, or NULL */
/* Records an activity line ("alice created #3 ...") for the SSE feed and
 * tells every open board, over the websocket, that task `id` changed. */
int task_changed(vial_req *rq, const char *event, const char *id, const char *what);

/* --- api.c ---------------------------------------------------------------------- */
/* Why a field is not acceptable, or NULL when it is (assignee NULL: nobody). */
const char *task_check_title(const char *s);
const char *task_check_status(const char *s);
const char *task_check_assignee(const char *s);
/* Inserts a task by the current user (out: its row) and tells the boards. */
int task_insert(vial_req *rq, const char *title, const char *status, const char *assignee,
                rows *out);

/* Each file's routes, hooks and handlers. */
int pages_register(vial_app *app, const char *template_dir);
int api_register(vial_app *app);
int live_register(vial_app *app);

#endif
