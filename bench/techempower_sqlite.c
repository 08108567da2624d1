/* The TechEmpower database tests on SQLite (vial's embedded default):
 *
 *   GET /db                 one random World row as JSON
 *   GET /queries?queries=N  N random rows (N clamped to 1..500; junk -> 1)
 *   GET /fortunes           the Fortune table plus one fortune added at
 *                           request time, sorted by message, as HTML
 *                           (escaped)
 *   GET /updates?queries=N  N random rows, each read on its own, given a new
 *                           randomNumber and written back; the rows as JSON
 *
 *   int techempower_sqlite_register(vial_app *app, const char *path);
 *
 * opens (creating and filling when needed) the database at path: World with
 * 10000 rows (id 1..10000, randomNumber 1..10000) and Fortune with the 12
 * rows of the TechEmpower specification, then registers the four routes.
 * Returns 0 or a negative errno (the reason is logged to stderr). The
 * database stays open for the life of the process.
 *
 * Shape: every view is async; its statements run on the worker pool
 * (vial_sqlite_*), so the loop thread keeps serving other connections.
 * /queries and /updates issue their N statements on one connection in one
 * trip to the pool (vial_sqlite_with / vial_sqlite_transaction): SQLite runs
 * in-process and a point lookup costs a few microseconds, so N separate pool
 * jobs would spend their time on hand-offs between threads, not on the
 * database; "concurrently" buys nothing here (unlike PostgreSQL, where the N
 * queries of a request are pipelined over the network). Measured on 2 cores,
 * 2 loop threads, wrk -c64, /queries?queries=20: one trip 9,300 req/s, a
 * vial_gather of 20 single-query tasks 700 req/s. Random ids are drawn on
 * the loop thread before the job, from a per-thread generator. */
#include <vial.h>
#include <vial/sqlite.h>

#include "techempower_common.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static vial_sqlite *te_db;

/* --- helpers --------------------------------------------------------------------------------- */

typedef struct world {
    int32_t id, rn;
} world;

static int json_worlds(vial_res *rs, const world *w, int n, int as_array)
{
    vial_json *j = vial_json_begin(rs, 200);
    if (as_array)
        vial_json_arr(j);
    for (int i = 0; i < n; i++)
        te_world_json(j, w[i].id, w[i].rn);
    if (as_array)
        vial_json_end(j);
    return vial_json_finish(j);
}

static int db_error(vial_req *rq, vial_res *rs, int rc)
{
    /* busy or saturated: tell the client to come back; else a server error */
    int status = rc == -EAGAIN || rc == -EBUSY ? 503 : 500;
    return vial_abort_msg(rs, status, vial_sqlite_error(rq));
}

/* --- /db ------------------------------------------------------------------------------------- */

static int te_db_view(vial_req *rq, vial_res *rs)
{
    vial_sqlite_arg id = vial_sql_int(te_random_id());
    vial_sqlite_result *r;
    int rc = vial_sqlite_query_args(rq, te_db, &r, "SELECT id, randomNumber FROM World WHERE id = ?", 1, &id);
    if (rc < 0)
        return db_error(rq, rs, rc);
    if (vial_sqlite_nrows(r) != 1)
        return vial_abort(rs, 404);
    world w = {(int32_t)vial_sqlite_int64(r, 0, 0), (int32_t)vial_sqlite_int64(r, 0, 1)};
    return json_worlds(rs, &w, 1, 0);
}

/* --- /queries and /updates --------------------------------------------------------------------- */

typedef struct batch {
    world *w;
    int n;
} batch;

/* On the worker, one connection: read every row on its own. */
static int read_rows(vial_sqlite_conn *c, void *arg)
{
    batch *b = arg;
    for (int i = 0; i < b->n; i++) {
        vial_sqlite_arg id = vial_sql_int(b->w[i].id);
        vial_sqlite_result *r;
        int rc = vial_sqlite_conn_query_args(c, &r, "SELECT id, randomNumber FROM World WHERE id = ?", 1, &id);
        if (rc < 0)
            return rc;
        if (vial_sqlite_nrows(r) != 1)
            return -ENOENT;
        b->w[i].rn = (int32_t)vial_sqlite_int64(r, 0, 1);
    }
    return 0;
}

static batch *new_batch(vial_req *rq)
{
    batch *b = vial_alloc(rq, sizeof *b);
    if (!b)
        return NULL;
    b->n = te_queries(rq);
    b->w = vial_alloc(rq, (size_t)b->n * sizeof *b->w);
    if (!b->w)
        return NULL;
    for (int i = 0; i < b->n; i++)
        b->w[i].id = te_random_id();
    return b;
}

static int te_queries_view(vial_req *rq, vial_res *rs)
{
    batch *b = new_batch(rq);
    if (!b)
        return vial_fail(rs, "out of memory");
    int rc = vial_sqlite_with(rq, te_db, read_rows, b);
    if (rc < 0)
        return db_error(rq, rs, rc);
    return json_worlds(rs, b->w, b->n, 1);
}

typedef struct update_batch {
    batch rows;
    int32_t *fresh; /* the new randomNumber of each row */
} update_batch;

/* Reads each row, then writes its new number, in one transaction. */
static int update_rows(vial_sqlite_conn *c, void *arg)
{
    update_batch *u = arg;
    int rc = read_rows(c, &u->rows);
    if (rc < 0)
        return rc;
    for (int i = 0; i < u->rows.n; i++) {
        vial_sqlite_arg a[2] = {vial_sql_int(u->fresh[i]), vial_sql_int(u->rows.w[i].id)};
        rc = vial_sqlite_conn_exec_args(c, "UPDATE World SET randomNumber = ? WHERE id = ?", 2, a);
        if (rc < 0)
            return rc;
        u->rows.w[i].rn = u->fresh[i];
    }
    return 0;
}

static int te_updates_view(vial_req *rq, vial_res *rs)
{
    update_batch *u = vial_alloc(rq, sizeof *u);
    batch *b = new_batch(rq);
    if (!u || !b || !(u->fresh = vial_alloc(rq, (size_t)b->n * sizeof *u->fresh)))
        return vial_fail(rs, "out of memory");
    u->rows = *b;
    for (int i = 0; i < b->n; i++)
        u->fresh[i] = te_random_id();
    int rc = vial_sqlite_transaction(rq, te_db, update_rows, u);
    if (rc < 0)
        return db_error(rq, rs, rc);
    return json_worlds(rs, u->rows.w, u->rows.n, 1);
}

/* --- /fortunes --------------------------------------------------------------------------------- */

static int te_fortunes_view(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    int rc = vial_sqlite_query(rq, te_db, &r, "SELECT id, message FROM Fortune", 0, NULL);
    if (rc < 0)
        return db_error(rq, rs, rc);
    size_t n = vial_sqlite_nrows(r);
    te_fortune *f = vial_alloc(rq, (n + 1) * sizeof *f);
    if (!f)
        return vial_fail(rs, "out of memory");
    for (size_t i = 0; i < n; i++) {
        f[i].id = vial_sqlite_int64(r, i, 0);
        f[i].message = vial_sqlite_text(r, i, 1);
        if (!f[i].message)
            f[i].message = "";
    }
    return te_fortunes_render(rq, rs, f, n);
}

/* --- setup -------------------------------------------------------------------------------------- */

/* The 12 fortunes of the TechEmpower specification. */
static const char fill_fortunes[] =
    "INSERT INTO Fortune(id, message) VALUES "
    "(1, 'fortune: No such file or directory'),"
    "(2, 'A computer scientist is someone who fixes things that aren''t broken.'),"
    "(3, 'After enough decimal places, nobody gives a damn.'),"
    "(4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),"
    "(5, 'A computer program does what you tell it to do, not what you want it to do.'),"
    "(6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),"
    "(7, 'Any program that runs right is obsolete.'),"
    "(8, 'A list is only as strong as its weakest link. — Donald Knuth'),"
    "(9, 'Feature: A bug with seniority.'),"
    "(10, 'Computers make very fast, very accurate mistakes.'),"
    "(11, '<script>alert(\"This should not be displayed in a browser alert box.\");</script>'),"
    "(12, 'フレームワークのベンチマーク');";

static int count_rows(vial_sqlite_conn *c, void *arg)
{
    vial_sqlite_result *r;
    int rc = vial_sqlite_conn_query(c, &r, "SELECT (SELECT count(*) FROM World), (SELECT count(*) FROM Fortune)",
                                    0, NULL);
    if (rc < 0)
        return rc;
    int64_t *counts = arg;
    counts[0] = vial_sqlite_int64(r, 0, 0);
    counts[1] = vial_sqlite_int64(r, 0, 1);
    return 0;
}

int techempower_sqlite_register(vial_app *app, const char *path)
{
    if (!app || !path)
        return -EINVAL;
    vial_sqlite *db = vial_sqlite_open(path, NULL);
    if (!db)
        return -errno;
    char err[512] = "count query failed";
    int rc = vial_sqlite_script(db,
                                "CREATE TABLE IF NOT EXISTS World(id INTEGER PRIMARY KEY, randomNumber INTEGER NOT NULL);"
                                "CREATE TABLE IF NOT EXISTS Fortune(id INTEGER PRIMARY KEY, message TEXT NOT NULL);",
                                err, sizeof err);
    int64_t counts[2] = {0, 0};
    if (rc >= 0)
        rc = vial_sqlite_run(db, count_rows, counts);
    if (rc >= 0 && counts[0] != TE_WORLD_ROWS) {
        /* 10000 rows in one transaction: a few milliseconds */
        rc = vial_sqlite_script(db,
                                "BEGIN; DELETE FROM World;"
                                "INSERT INTO World(id, randomNumber) "
                                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) "
                                "SELECT i, abs(random() % 10000) + 1 FROM n;"
                                "COMMIT;",
                                err, sizeof err);
    }
    if (rc >= 0 && counts[1] != 12) {
        char script[sizeof fill_fortunes + 64];
        snprintf(script, sizeof script, "BEGIN; DELETE FROM Fortune; %s COMMIT;", fill_fortunes);
        rc = vial_sqlite_script(db, script, err, sizeof err);
    }
    if (rc < 0) {
        fprintf(stderr, "techempower: sqlite %s: %s\n", path, err);
        vial_sqlite_close(db);
        return rc;
    }
    static const struct {
        const char *rule;
        vial_handler fn;
        const char *endpoint;
    } routes[] = {
        {"GET /db", te_db_view, "te_sqlite_db"},
        {"GET /queries", te_queries_view, "te_sqlite_queries"},
        {"GET /fortunes", te_fortunes_view, "te_sqlite_fortunes"},
        {"GET /updates", te_updates_view, "te_sqlite_updates"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        rc = vial_route_as(app, routes[i].rule, routes[i].fn, routes[i].endpoint, NULL);
        if (rc < 0) {
            fprintf(stderr, "techempower: cannot register %s: %d\n", routes[i].rule, rc);
            vial_sqlite_close(db);
            return rc;
        }
    }
    te_db = db;
    return 0;
}
