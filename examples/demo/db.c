/* The data-access layer: the same SQL on SQLite (a file, the default) or
 * PostgreSQL (DATABASE_URL). Both speak $1..$n parameters and RETURNING, so
 * only the schema differs. */
#include "demo.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <vial/sqlite.h>
#ifdef VIAL_HAVE_PG
#include <vial/pg.h>
#endif

static vial_sqlite *lite;
#ifdef VIAL_HAVE_PG
static vial_pg *pg;
#endif

static const char *const SCHEMA_SQLITE[] = {
    "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE, pw_hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " title TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'todo'"
    " CHECK (status IN ('todo', 'doing', 'done')),"
    " assignee TEXT, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS activity (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " at BIGINT NOT NULL, text TEXT NOT NULL)",
    NULL,
};
static const char *const SCHEMA_PG[] = {
    "CREATE TABLE IF NOT EXISTS users (id BIGSERIAL PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE, pw_hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tasks (id BIGSERIAL PRIMARY KEY,"
    " title TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'todo'"
    " CHECK (status IN ('todo', 'doing', 'done')),"
    " assignee TEXT, created_by TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS activity (id BIGSERIAL PRIMARY KEY,"
    " at BIGINT NOT NULL, text TEXT NOT NULL)",
    NULL,
};

const char *db_kind(void)
{
    return lite ? "sqlite" : "postgresql";
}

int db_open(const char *database_url, const char *sqlite_path)
{
    if (database_url && *database_url) {
#ifdef VIAL_HAVE_PG
        pg = vial_pg_open(database_url, NULL);
        return pg ? 0 : -errno;
#else
        fprintf(stderr, "demo: DATABASE_URL is set but vial was built without libpq\n");
        return -ENOTSUP;
#endif
    }
    lite = vial_sqlite_open(sqlite_path, NULL);
    if (!lite)
        return -errno;
    char err[256] = "";
    for (int i = 0; SCHEMA_SQLITE[i]; i++) {
        int r = vial_sqlite_script(lite, SCHEMA_SQLITE[i], err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "demo: schema: %s\n", err);
            return r;
        }
    }
    return 0;
}

void db_close(void)
{
    vial_sqlite_close(lite);
#ifdef VIAL_HAVE_PG
    vial_pg_close(pg);
#endif
}

/* 0: not yet, 1: a request is creating it, 2: done. */
static atomic_int schema_state;

int db_ensure_schema(vial_req *rq, vial_res *rs)
{
    if (lite || atomic_load(&schema_state) == 2)
        return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&schema_state, &expected, 1)) {
        while (atomic_load(&schema_state) == 1) /* another request is on it */
            if (vial_sleep(rq, 10) < 0)
                return vial_abort(rs, 503);
        return atomic_load(&schema_state) == 2 ? 0 : vial_abort(rs, 503);
    }
    for (int i = 0; SCHEMA_PG[i]; i++) {
        int r = db_query(rq, NULL, SCHEMA_PG[i], 0, NULL);
        if (r < 0) {
            atomic_store(&schema_state, 0); /* the next request tries again */
            return vial_abort_msg(rs, 503, db_error(rq));
        }
    }
    atomic_store(&schema_state, 2);
    return 0;
}

int db_query(vial_req *rq, rows *out, const char *sql, int n, const char *const *params)
{
    size_t nrows;
    int ncols;
    if (lite) {
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
        if (e < 0)
            return e;
        if (!out)
            return 0;
        nrows = vial_sqlite_nrows(r);
        ncols = vial_sqlite_ncols(r);
        out->cell = vial_alloc(rq, (nrows * (size_t)ncols + 1) * sizeof *out->cell);
        if (!out->cell)
            return -ENOMEM;
        for (size_t i = 0; i < nrows; i++)
            for (int j = 0; j < ncols; j++)
                out->cell[i * ncols + j] = vial_sqlite_text(r, i, j);
    } else {
#ifdef VIAL_HAVE_PG
        vial_pg_result *r;
        int e = vial_pg_query(rq, pg, &r, sql, n, params);
        if (e < 0) {
            if (e == VIAL_PG_ESQL)
                vial_g_set_str(rq, "db.sqlstate", vial_pg_sqlstate(r));
            return e;
        }
        if (!out)
            return 0;
        nrows = (size_t)vial_pg_ntuples(r);
        ncols = vial_pg_nfields(r);
        out->cell = vial_alloc(rq, (nrows * (size_t)ncols + 1) * sizeof *out->cell);
        if (!out->cell)
            return -ENOMEM;
        for (size_t i = 0; i < nrows; i++)
            for (int j = 0; j < ncols; j++)
                out->cell[i * ncols + j] =
                    vial_pg_isnull(r, (int)i, j) ? NULL : vial_pg_getvalue(r, (int)i, j);
#else
        return -ENOTSUP;
#endif
    }
    out->n = nrows;
    out->cols = ncols;
    return 0;
}

const char *db_error(vial_req *rq)
{
    const char *m = NULL;
    if (lite)
        m = vial_sqlite_error(rq);
#ifdef VIAL_HAVE_PG
    else
        m = vial_pg_error(rq);
#endif
    return m ? m : "database error";
}

int db_unique_violation(vial_req *rq, int code)
{
    if (code >= 0)
        return 0;
    if (lite)
        return vial_sqlite_errcode(rq) == 2067; /* SQLITE_CONSTRAINT_UNIQUE */
    const char *state = vial_g_get(rq, "db.sqlstate");
    return state && strcmp(state, "23505") == 0;
}
