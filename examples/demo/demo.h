/* The demo's shared declarations: the data-access layer (db.c), the pages
 * (pages.c), the JSON API and the live channels (api.c). main.c wires them. */
#ifndef DEMO_H
#define DEMO_H

#include <vial.h>

/* --- db.c: one small layer over SQLite (default) and PostgreSQL ----------
 * SQL is written once with $1..$n parameters, which both understand. Rows
 * come back as text cells in the request's memory. */
typedef struct rows {
    size_t n;
    int cols;
    const char **cell; /* cell[row * cols + col]; NULL for SQL NULL */
} rows;

/* Opens DATABASE_URL (PostgreSQL) when set, else the SQLite file at path,
 * and creates the schema (PostgreSQL: on the first request, see
 * db_ensure_schema). Returns 0 or a negative errno. */
int db_open(const char *database_url, const char *sqlite_path);
void db_close(void); /* after vial_run */
/* "sqlite" or "postgresql". */
const char *db_kind(void);
/* A before_request hook: the PostgreSQL client only talks from requests,
 * so its schema is created by the first one. */
int db_ensure_schema(vial_req *rq, vial_res *rs);
/* Runs one statement; out may be NULL. Returns 0 or a negative code, with
 * db_error(rq) saying why. */
int db_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *params);
const char *db_error(vial_req *rq);
/* 1 when the failure was a UNIQUE violation. */
int db_unique_violation(vial_req *rq, int code);
static inline const char *cell(const rows *r, size_t row, int col)
{
    return row < r->n ? r->cell[row * r->cols + col] : NULL;
}

/* --- main.c ------------------------------------------------------------------ */
/* The logged-in user's name, or NULL. */
const char *current_user(vial_req *rq);

/* --- live.c --------------------------------------------------------------------- */
/* Records an activity line ("alice created #3 Ship it") for the SSE feed
 * and tells every open board, over the websocket, that a task changed. */
int task_changed(vial_req *rq, const char *event, const char *id, const char *what);

/* --- api.c ------------------------------------------------------------------------ */
/* Why a field is not acceptable, or NULL when it is. */
const char *task_check_title(const char *s);
const char *task_check_status(const char *s);
const char *task_check_assignee(const char *s); /* NULL (unassigned) is fine */
/* Inserts a task created by the current user (out: its row) and tells the
 * boards. Returns 0 or a negative code. */
int task_insert(vial_req *rq, const char *title, const char *status, const char *assignee,
                rows *out);

/* --- pages.c and api.c ------------------------------------------------------ */
int pages_register(vial_app *app, const char *template_dir);
int api_register(vial_app *app);
/* live.c: the websocket every board listens on, and the activity feed. */
int live_register(vial_app *app);

#endif
