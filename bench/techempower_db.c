/* The TechEmpower database test types for vial, on PostgreSQL
 * (https://github.com/TechEmpower/FrameworkBenchmarks/wiki/Project-Information-Framework-Tests-Overview):
 *
 *   GET /db                 one random World row: {"id":N,"randomNumber":N}
 *   GET /queries?queries=N  N random rows, as a JSON array; N is clamped to
 *                           1..500 (missing or not a number: 1). The N
 *                           queries are separate statements issued
 *                           concurrently (vial_pg_query_all; tasks with
 *                           -DVIAL_PG_TASKS): the client pipelines them over
 *                           the thread's connections, about one round trip.
 *   GET /fortunes           every Fortune row plus one added at request time,
 *                           sorted by message, as an HTML table (escaped)
 *   GET /updates?queries=N  N random rows read as in /queries, each given a
 *                           new random number, written back with one UPDATE
 *                           (a bulk update is allowed by the rules), and
 *                           returned as in /queries
 *
 * The schema and data: bench/techempower.sql. Each loop thread has its own
 * connection pool (vial/pg.h); the statements are prepared once per
 * connection. A database outage answers 503.
 *
 *   int techempower_db_register(vial_app *app, const char *conninfo);
 *   void techempower_db_free(void);   (after vial_run returned)
 *
 * Without libpq (VIAL_HAVE_PG undefined) registering fails with -ENOSYS, so
 * the file can always be built into the benchmark.
 */
#include <vial.h>

#include <errno.h>

int techempower_db_register(vial_app *app, const char *conninfo);
void techempower_db_free(void);

#ifdef VIAL_HAVE_PG
#include <vial/pg.h>

#include "techempower_common.h"
#include "runtime/numfmt.h" /* the id parameter's text: snprintf was 1.7% of /db */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static vial_pg *db;

/* --- helpers ---------------------------------------------------------------------- */

/* A database error as a response: 503 while the database is unreachable
 * (the client may retry), 500 otherwise. */
static int db_error(vial_res *rs, int e, const vial_pg_result *r)
{
    if (e == -ECONNRESET || e == -ECONNREFUSED || e == -ETIMEDOUT)
        return vial_abort_msg(rs, 503, vial_pg_errmsg(r));
    return vial_fail(rs, vial_pg_errmsg(r) ? vial_pg_errmsg(r) : strerror(-e));
}

typedef struct world {
    int id, random_number;
    char id_s[VIAL_FMT_INT_SIZE]; /* the parameter text */
    vial_pg_result *r;
} world;

static int world_from(world *w, const vial_pg_result *r)
{
    int64_t id, n;
    if (vial_pg_ntuples(r) != 1 || vial_pg_getint(r, 0, 0, &id) < 0 || vial_pg_getint(r, 0, 1, &n) < 0)
        return -EINVAL;
    w->id = (int)id;
    w->random_number = (int)n;
    return 0;
}

/* Reads n random rows: n separate statements issued concurrently. With
 * VIAL_PG_TASKS defined, one task per statement (vial_pg_spawn_prepared +
 * vial_gather); by default vial_pg_query_all, which issues the same
 * statements the same way from this coroutine (no coroutine and stack per
 * statement: at 20 queries x 256 connections that is 5120 stacks).
 * Returns 0, or a negative error with *bad the failed result. */
static int read_worlds(vial_req *rq, world *w, int n, const vial_pg_result **bad)
{
#ifdef VIAL_PG_TASKS
    vial_task **t = vial_alloc(rq, (size_t)n * sizeof *t);
    if (!t)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        vial_fmt_u64(w[i].id_s, (uint64_t)te_random_id());
        const char *p[1] = {w[i].id_s};
        t[i] = vial_pg_spawn_prepared(rq, db, &w[i].r, "world", 1, p);
        if (!t[i])
            return -ENOMEM;
    }
    int e = vial_gather(rq, t, (size_t)n, 0);
    for (int i = 0; i < n; i++) {
        int te = vial_task_result(t[i]);
        if (te < 0 && te != -ECANCELED) { /* the first real failure */
            *bad = w[i].r;
            return te;
        }
    }
#else
    vial_pg_stmt *st = vial_alloc(rq, (size_t)n * sizeof *st);
    const char **params = vial_alloc(rq, (size_t)n * sizeof *params);
    if (!st || !params)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        vial_fmt_u64(w[i].id_s, (uint64_t)te_random_id());
        params[i] = w[i].id_s;
        st[i] = (vial_pg_stmt){.sql = "world", .prepared = 1, .nparams = 1, .params = &params[i]};
    }
    int e = vial_pg_query_all(rq, db, st, (size_t)n);
    for (int i = 0; i < n; i++) {
        w[i].r = st[i].result;
        if (st[i].error < 0) {
            *bad = w[i].r;
            return st[i].error;
        }
    }
#endif
    for (int i = 0; e == 0 && i < n; i++) {
        if (world_from(&w[i], w[i].r) < 0) {
            *bad = w[i].r;
            return -EPROTO;
        }
    }
    *bad = NULL;
    return e;
}

/* --- /db ------------------------------------------------------------------------------- */

static int db_view(vial_req *rq, vial_res *rs)
{
    world w;
    vial_fmt_u64(w.id_s, (uint64_t)te_random_id());
    const char *p[1] = {w.id_s};
    int e = vial_pg_exec_prepared(rq, db, &w.r, "world", 1, p);
    if (e < 0)
        return db_error(rs, e, w.r);
    if (world_from(&w, w.r) < 0)
        return vial_fail(rs, "World row missing");
    vial_json *j = vial_json_begin(rs, 200);
    te_world_json(j, w.id, w.random_number);
    return vial_json_finish(j);
}

/* --- /queries ---------------------------------------------------------------------------- */

static int queries_view(vial_req *rq, vial_res *rs)
{
    int n = te_queries(rq);
    world *w = vial_alloc(rq, (size_t)n * sizeof *w);
    if (!w)
        return vial_fail(rs, "out of memory");
    const vial_pg_result *bad;
    int e = read_worlds(rq, w, n, &bad);
    if (e < 0)
        return db_error(rs, e, bad);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_arr(j);
    for (int i = 0; i < n; i++)
        te_world_json(j, w[i].id, w[i].random_number);
    vial_json_end(j);
    return vial_json_finish(j);
}

/* --- /updates ------------------------------------------------------------------------------ */

static int by_id(const void *a, const void *b)
{
    const world *x = *(const world *const *)a, *y = *(const world *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

static int updates_view(vial_req *rq, vial_res *rs)
{
    int n = te_queries(rq);
    world *w = vial_alloc(rq, (size_t)n * sizeof *w);
    world **sorted = vial_alloc(rq, (size_t)n * sizeof *sorted);
    char *ids = vial_alloc(rq, (size_t)n * 12 + 3), *nums = vial_alloc(rq, (size_t)n * 12 + 3);
    if (!w || !sorted || !ids || !nums)
        return vial_fail(rs, "out of memory");
    const vial_pg_result *bad;
    int e = read_worlds(rq, w, n, &bad);
    if (e < 0)
        return db_error(rs, e, bad);
    for (int i = 0; i < n; i++) {
        w[i].random_number = te_random_id();
        sorted[i] = &w[i];
    }
    /* Rows in id order (concurrent updates then lock in the same order and
     * cannot deadlock), and one value per id: a row drawn twice ends with
     * one number, which both of its entries report. */
    qsort(sorted, (size_t)n, sizeof *sorted, by_id);
    size_t il = 0, nl = 0;
    ids[il++] = '{';
    nums[nl++] = '{';
    for (int i = 0; i < n; i++) {
        if (i > 0 && sorted[i]->id == sorted[i - 1]->id) {
            sorted[i]->random_number = sorted[i - 1]->random_number;
            continue;
        }
        il += (size_t)sprintf(ids + il, "%s%d", il > 1 ? "," : "", sorted[i]->id);
        nl += (size_t)sprintf(nums + nl, "%s%d", nl > 1 ? "," : "", sorted[i]->random_number);
    }
    ids[il++] = '}';
    ids[il] = 0;
    nums[nl++] = '}';
    nums[nl] = 0;
    const char *p[2] = {ids, nums};
    vial_pg_result *r;
    e = vial_pg_exec_prepared(rq, db, &r, "world_update", 2, p);
    if (e < 0)
        return db_error(rs, e, r);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_arr(j);
    for (int i = 0; i < n; i++)
        te_world_json(j, w[i].id, w[i].random_number);
    vial_json_end(j);
    return vial_json_finish(j);
}

/* --- /fortunes ------------------------------------------------------------------------------ */

static int fortunes_view(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r;
    int e = vial_pg_exec_prepared(rq, db, &r, "fortune", 0, NULL);
    if (e < 0)
        return db_error(rs, e, r);
    int n = vial_pg_ntuples(r);
    te_fortune *f = vial_alloc(rq, (size_t)(n + 1) * sizeof *f);
    if (!f)
        return vial_fail(rs, "out of memory");
    for (int i = 0; i < n; i++) {
        vial_pg_getint(r, i, 0, &f[i].id);
        f[i].message = vial_pg_getvalue(r, i, 1);
        if (!f[i].message)
            f[i].message = "";
    }
    return te_fortunes_render(rq, rs, f, (size_t)n);
}

/* --- registration ----------------------------------------------------------------------------- */

int techempower_db_register(vial_app *app, const char *conninfo)
{
    if (db)
        return -EEXIST;
    /* Pipelining makes a few connections per thread enough. Two, not
     * four: the batches grow to ~35 statements (each connection has one
     * batch in flight), so a backend sleeps and wakes once per ~34
     * statements instead of ~16, and on a contended core PostgreSQL spends
     * ~10% less CPU per /db and /fortunes query (the same when the core is
     * quiet; bench/results/pg-limit-2026-12-06.md, Wave 6); /queries and
     * /updates do not move. $TECHEMPOWER_PG_CONNS
     * overrides the count. */
    const char *nc = getenv("TECHEMPOWER_PG_CONNS");
    int conns = nc ? atoi(nc) : 2;
    db = vial_pg_open(conninfo, &(vial_pg_options){.max_conns = conns > 0 ? conns : 2});
    if (!db)
        return -errno;
    int e;
    if ((e = vial_pg_prepare(db, "world", "SELECT id, randomNumber FROM World WHERE id = $1")) < 0 ||
        (e = vial_pg_prepare(db, "fortune", "SELECT id, message FROM Fortune")) < 0 ||
        (e = vial_pg_prepare(db, "world_update",
                             "UPDATE World AS w SET randomNumber = v.r"
                             " FROM (SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v"
                             " WHERE w.id = v.id")) < 0 ||
        (e = vial_route(app, "GET /db", db_view)) < 0 ||
        (e = vial_route(app, "GET /queries", queries_view)) < 0 ||
        (e = vial_route(app, "GET /fortunes", fortunes_view)) < 0 ||
        (e = vial_route(app, "GET /updates", updates_view)) < 0)
        return e;
    return 0;
}

void techempower_db_free(void)
{
    vial_pg_close(db);
    db = NULL;
}

#else /* !VIAL_HAVE_PG */

int techempower_db_register(vial_app *app, const char *conninfo)
{
    return -ENOSYS;
}

void techempower_db_free(void)
{
}

#endif
