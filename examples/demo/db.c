/* The data-access layer: the same SQL on SQLite (a file, the default) or
 * PostgreSQL (DATABASE_URL). Both speak $1..$n parameters and RETURNING, so
 * only the schema differs. Each client is optional in a vial build
 * (vial/config.h says which are in): a missing one fails at start. */
#include "demo.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define SCHEMA(serial)                                                                      \
    {"CREATE TABLE IF NOT EXISTS users (id " serial " PRIMARY KEY,"                          \
     " name TEXT NOT NULL UNIQUE, pw_hash TEXT NOT NULL)",                                    \
     "CREATE TABLE IF NOT EXISTS tasks (id " serial " PRIMARY KEY, title TEXT NOT NULL,"     \
     " status TEXT NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'doing', 'done')),"     \
     " assignee TEXT, created_by TEXT NOT NULL)",                                             \
     "CREATE TABLE IF NOT EXISTS activity (id " serial " PRIMARY KEY,"                        \
     " at BIGINT NOT NULL, text TEXT NOT NULL)"}
#define NTABLES 3

/* Copies a result's cells into rows (in the request's memory). */
#define COPY_ROWS(out, nrows, ncols, value)                                                  \
    do {                                                                                       \
        (out)->cell = vial_alloc(rq, ((nrows) * (size_t)(ncols) + 1) * sizeof *(out)->cell); \
        if (!(out)->cell)                                                                      \
            return -ENOMEM;                                                                    \
        for (size_t i = 0; i < (nrows); i++)                                                   \
            for (int j = 0; j < (ncols); j++)                                                  \
                (out)->cell[i * (ncols) + j] = (value);                                        \
        (out)->n = (nrows);                                                                    \
        (out)->cols = (ncols);                                                                 \
    } while (0)

/* --- SQLite ---------------------------------------------------------------------- */
#ifdef VIAL_HAVE_SQLITE
#include <vial/sqlite.h>

static vial_sqlite *lite;

static int lite_open(const char *path)
{
    static const char *const schema[NTABLES] = SCHEMA("INTEGER");
    char err[256] = "";
    if (!(lite = vial_sqlite_open(path, NULL)))
        return -errno;
    for (int i = 0; i < NTABLES; i++) {
        int r = vial_sqlite_script(lite, schema[i], err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "demo: schema: %s\n", err);
            return r;
        }
    }
    return 0;
}

static int lite_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *params)
{
    /* SQLite numbers "$2" by where it first appears, "?2" by its digits:
     * PostgreSQL's meaning. */
    char *q = vial_strdup(rq, sql);
    if (!q)
        return -ENOMEM;
    for (char *c = q; *c; c++)
        if (c[0] == '$' && c[1] >= '0' && c[1] <= '9')
            *c = '?';
    vial_sqlite_result *r;
    int e = vial_sqlite_query(rq, lite, &r, q, n, params);
    if (e == 0 && out)
        COPY_ROWS(out, vial_sqlite_nrows(r), vial_sqlite_ncols(r), vial_sqlite_text(r, i, j));
    if (e < 0 && vial_sqlite_errcode(rq) == 2067) /* SQLITE_CONSTRAINT_UNIQUE */
        vial_g_set(rq, "db.unique", "");
    return e < 0 ? e : 0;
}

static const char *lite_error(vial_req *rq)
{
    return vial_sqlite_error(rq);
}
#else
static void *lite;
static int lite_open(const char *path)
{
    fprintf(stderr, "demo: vial was built without SQLite (libsqlite3-dev): set DATABASE_URL\n");
    return path ? -ENOTSUP : -EINVAL;
}
static int lite_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *p)
{
    (void)rq, (void)out, (void)sql, (void)n, (void)p;
    return -ENOTSUP;
}
static const char *lite_error(vial_req *rq)
{
    (void)rq;
    return NULL;
}
#endif

/* --- PostgreSQL -------------------------------------------------------------------- */
#ifdef VIAL_HAVE_PG
#include <vial/pg.h>

static vial_pg *pg;

static int pg_open(const char *url)
{
    return (pg = vial_pg_open(url, NULL)) ? 0 : -errno;
}

static int pg_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *params)
{
    vial_pg_result *r;
    int e = vial_pg_query(rq, pg, &r, sql, n, params);
    if (e == 0 && out)
        COPY_ROWS(out, (size_t)vial_pg_ntuples(r), vial_pg_nfields(r),
                  vial_pg_isnull(r, (int)i, j) ? NULL : vial_pg_getvalue(r, (int)i, j));
    if (e == VIAL_PG_ESQL && strcmp(vial_pg_sqlstate(r), "23505") == 0) /* unique_violation */
        vial_g_set(rq, "db.unique", "");
    return e < 0 ? e : 0;
}

static const char *pg_error(vial_req *rq)
{
    return vial_pg_error(rq);
}
#else
static int pg_open(const char *url)
{
    fprintf(stderr, "demo: DATABASE_URL is set but vial was built without libpq\n");
    return url ? -ENOTSUP : -EINVAL;
}
static int pg_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *p)
{
    (void)rq, (void)out, (void)sql, (void)n, (void)p;
    return -ENOTSUP;
}
static const char *pg_error(vial_req *rq)
{
    (void)rq;
    return NULL;
}
#endif

/* --- either ------------------------------------------------------------------------- */

int db_open(const char *database_url, const char *sqlite_path)
{
    return database_url && *database_url ? pg_open(database_url) : lite_open(sqlite_path);
}

void db_close(void)
{
#ifdef VIAL_HAVE_SQLITE
    vial_sqlite_close(lite);
#endif
#ifdef VIAL_HAVE_PG
    vial_pg_close(pg);
#endif
}

const char *db_kind(void)
{
    return lite ? "sqlite" : "postgresql";
}

int db_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *params)
{
    return lite ? lite_query(rq, out, sql, n, params) : pg_query(rq, out, sql, n, params);
}

const char *db_error(vial_req *rq)
{
    const char *m = lite ? lite_error(rq) : pg_error(rq);
    return m ? m : "database error";
}

int db_unique_violation(vial_req *rq, int code)
{
    return code < 0 && vial_g_get(rq, "db.unique") != NULL;
}

/* 0: not yet, 1: a request is creating it, 2: done. */
static atomic_int schema_state;

int db_ensure_schema(vial_req *rq, vial_res *rs)
{
    static const char *const schema[NTABLES] = SCHEMA("BIGSERIAL");
    if (lite || atomic_load(&schema_state) == 2)
        return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&schema_state, &expected, 1)) {
        while (atomic_load(&schema_state) == 1) /* another request is on it */
            if (vial_sleep(rq, 10) < 0)
                return vial_abort(rs, 503);
        return atomic_load(&schema_state) == 2 ? 0 : vial_abort(rs, 503);
    }
    for (int i = 0; i < NTABLES; i++) {
        if (db_query(rq, NULL, schema[i], 0, NULL) < 0) {
            atomic_store(&schema_state, 0); /* the next request tries again */
            return vial_abort_msg(rs, 503, db_error(rq));
        }
    }
    atomic_store(&schema_state, 2);
    return 0;
}
