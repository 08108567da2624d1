/* The PostgreSQL client against a real server, through the in-process test
 * client (so views run as coroutines on a loop, with the worker pool).
 *
 * The server comes from the environment: VIAL_TEST_PG holds its conninfo
 * (scripts/test.sh starts one with tests/services/pg.sh). Without it the
 * test fails: it never skips.
 *
 * Views cannot use cmocka's asserts (a failed assert longjmps out of a
 * coroutine), so each view checks what it can and answers "ok" or a
 * description of the first failed check; the test asserts on the body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef VIAL_HAVE_PG
#include <vial/pg.h>
#include <libpq-fe.h>

#include "de_locale.h"
#include "metrics_text.h"

#define APP_NAME "vial_test_pg"

static char conninfo[1024];
static char side_conninfo[1024];
static vial_pg *db;       /* default options */
static vial_pg *db_wide;  /* max_conns 20: a gather of 20 slow queries side by side */
static vial_pg *db_one;   /* max_conns 1: everything pipelined on one connection */
static vial_pg *db_three; /* max_conns 3: every connection busy at once */
static vial_pg *db_bad;   /* nothing listens there */
static vial_pg *db_dns;   /* host=localhost: connects start on the worker pool */
static vial_pg *db_hang;  /* accepts TCP but never answers: connect timeout */
static vial_pg *db_small; /* notify_queue_max 2 */
static int hang_fd = -1;
static vial_pg *db_priv;  /* a private server that test_reconnect_after_restart restarts */
static char priv[512];    /* its conninfo while it runs ("" when stopped) */
static vial_app *app;
static vial_test_client *client;
static PGconn *side;      /* a plain blocking connection for the test's own checks */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A failed check inside a view: answer with where and what. */
#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond))                                                                         \
            return vial_text(rs, 500, "line %d: %s", __LINE__, #cond);                      \
    } while (0)
#define CHECK_EQ(a, b)                                                                       \
    do {                                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                                 \
        if (a_ != b_)                                                                        \
            return vial_text(rs, 500, "line %d: %s == %lld, want %lld", __LINE__, #a, a_,   \
                             b_);                                                            \
    } while (0)
#define CHECK_STR(a, b)                                                                      \
    do {                                                                                     \
        const char *a_ = (a), *b_ = (b);                                                     \
        if (!a_ || strcmp(a_, b_))                                                           \
            return vial_text(rs, 500, "line %d: %s == \"%s\", want \"%s\"", __LINE__, #a,   \
                             a_ ? a_ : "(null)", b_);                                        \
    } while (0)

/* Runs SQL on the side connection; returns the first value (static buffer)
 * or NULL on error. */
static const char *side_value(const char *sql)
{
    static char buf[256];
    PGresult *r = PQexec(side, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
        fprintf(stderr, "side query failed: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    snprintf(buf, sizeof buf, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

static void side_exec(const char *sql)
{
    PGresult *r = PQexec(side, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "side exec failed: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* Our backends running a statement that starts with prefix. */
static int active_count(const char *prefix)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "select count(*) from pg_stat_activity where application_name = '" APP_NAME
             "' and state = 'active' and query like '%s%%'",
             prefix);
    const char *v = side_value(sql);
    return v ? atoi(v) : -1;
}

/* Polls until none of our backends runs prefix; returns the ms it took, or
 * -1 after limit_ms. */
static double wait_not_active(const char *prefix, double limit_ms)
{
    double t0 = now_ms();
    for (;;) {
        double el = now_ms() - t0;
        if (active_count(prefix) == 0)
            return el;
        if (el > limit_ms)
            return -1;
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static vial_test_response *get(const char *target, int want_status)
{
    vial_test_response *r = vial_test_client_get(client, target);
    assert_non_null(r);
    const char *body = vial_test_response_body(r, NULL);
    if (vial_test_response_status(r) != want_status)
        fprintf(stderr, "%s -> %d: %s\n", target, vial_test_response_status(r), body);
    assert_int_equal(vial_test_response_status(r), want_status);
    return r;
}

/* The pool's figures in the scrape (driver.h's metrics source). */
static int v_metrics(vial_req *rq, vial_res *rs)
{
    long long q = metric_sum("vial_pg_queries_total"), b = metric_sum("vial_pg_batches_total");
    long long e = metric_sum("vial_pg_errors_total");
    CHECK(q >= 0 && b >= 0 && e >= 0);
    CHECK(metric_sum("vial_pg_connections") >= 1); /* db's, from earlier tests */
    for (int i = 0; i < 5; i++)
        CHECK_EQ(vial_pg_query(rq, db, NULL, "select 1", 0, NULL), 0);
    CHECK_EQ(metric_sum("vial_pg_queries_total"), q + 5);
    CHECK_EQ(metric_sum("vial_pg_batches_total"), b + 5); /* one at a time: a batch each */
    CHECK_EQ(metric_sum("vial_pg_errors_total"), e);
    CHECK_EQ(vial_pg_query(rq, db, NULL, "select 1/0", 0, NULL), VIAL_PG_ESQL);
    CHECK_EQ(metric_sum("vial_pg_errors_total"), e + 1);
    CHECK_EQ(metric_sum("vial_pg_queries_total"), q + 6);
    CHECK_EQ(metric_sum("vial_pg_waiters"), 0);
    CHECK(metric_sum("vial_pg_connects_total") >= metric_sum("vial_pg_connections"));
    return vial_text(rs, 200, "ok");
}

static void get_ok(const char *target)
{
    vial_test_response *r = get(target, 200);
    const char *body = vial_test_response_body(r, NULL);
    if (strcmp(body, "ok"))
        fprintf(stderr, "%s: %s\n", target, body);
    assert_string_equal(body, "ok");
    vial_test_response_free(r);
}

/* --- views ------------------------------------------------------------------------------ */

static int v_simple(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r;
    int e = vial_pg_query(rq, db, &r,
                          "select 1::int4 as one, 'hello'::text as greeting, null::text as nothing,"
                          " 2.5::float8 as f, true as b, 9223372036854775807::int8 as big,"
                          " ''::text as empty, 'NaN'::float8 as nan, 12.25::numeric as num",
                          0, NULL);
    CHECK_EQ(e, 0);
    CHECK_EQ(vial_pg_result_error(r), 0);
    CHECK_STR(vial_pg_sqlstate(r), "");
    CHECK(vial_pg_errmsg(r) == NULL);
    CHECK_EQ(vial_pg_ntuples(r), 1);
    CHECK_EQ(vial_pg_nfields(r), 9);
    CHECK_STR(vial_pg_fname(r, 1), "greeting");
    CHECK(vial_pg_fname(r, 99) == NULL);
    CHECK_EQ(vial_pg_fnumber(r, "f"), 3);
    CHECK_EQ(vial_pg_fnumber(r, "missing"), -1);
    CHECK_EQ(vial_pg_ftype(r, 0), 23);
    CHECK_EQ(vial_pg_ftype(r, 5), 20);
    CHECK_EQ(vial_pg_ftype(r, 4), 16);
    CHECK_STR(vial_pg_getvalue(r, 0, 1), "hello");
    CHECK_EQ(vial_pg_getlength(r, 0, 1), 5);
    CHECK(vial_pg_getvalue(r, 0, 2) == NULL);
    CHECK_EQ(vial_pg_isnull(r, 0, 2), 1);
    CHECK_EQ(vial_pg_isnull(r, 0, 1), 0);
    CHECK_EQ(vial_pg_isnull(r, 1, 0), -EINVAL);
    CHECK(vial_pg_getvalue(r, 1, 0) == NULL);
    CHECK(vial_pg_getvalue(r, 0, -1) == NULL);
    CHECK_STR(vial_pg_getvalue(r, 0, 6), "");
    CHECK_EQ(vial_pg_isnull(r, 0, 6), 0);

    int64_t i = 0;
    CHECK_EQ(vial_pg_getint(r, 0, 0, &i), 0);
    CHECK_EQ(i, 1);
    CHECK_EQ(vial_pg_getint(r, 0, 5, &i), 0);
    CHECK(i == INT64_MAX);
    CHECK_EQ(vial_pg_getint(r, 0, 1, &i), -EINVAL);
    CHECK_EQ(vial_pg_getint(r, 0, 2, &i), -ENOENT);
    CHECK_EQ(vial_pg_getint(r, 0, 6, &i), -EINVAL);
    CHECK_EQ(vial_pg_getint(r, 3, 0, &i), -EINVAL);
    double d = 0;
    CHECK_EQ(vial_pg_getdouble(r, 0, 3, &d), 0);
    CHECK(d == 2.5);
    CHECK_EQ(vial_pg_getdouble(r, 0, 7, &d), 0);
    CHECK(d != d);
    CHECK_EQ(vial_pg_getdouble(r, 0, 8, &d), 0);
    CHECK(d == 12.25);
    CHECK_EQ(vial_pg_getdouble(r, 0, 1, &d), -EINVAL);
    int b = 0;
    CHECK_EQ(vial_pg_getbool(r, 0, 4, &b), 0);
    CHECK_EQ(b, 1);
    CHECK_EQ(vial_pg_getbool(r, 0, 0, &b), -EINVAL);
    CHECK_STR(vial_pg_cmd_status(r), "SELECT 1");
    CHECK_EQ(vial_pg_cmd_tuples(r), 1);
    vial_pg_result_free(r);
    CHECK_EQ(vial_pg_ntuples(r), 0); /* freed: empty, not a crash */

    /* out NULL: rows not wanted */
    CHECK_EQ(vial_pg_query(rq, db, NULL, "select 1", 0, NULL), 0);
    /* an out-of-range range of int */
    CHECK_EQ(vial_pg_query(rq, db, &r, "select '99999999999999999999'::text", 0, NULL), 0);
    CHECK_EQ(vial_pg_getint(r, 0, 0, &i), -ERANGE);
    /* the edges of int8, signs, stray characters */
    CHECK_EQ(vial_pg_query(rq, db, &r,
                           "select '-9223372036854775808', '-9223372036854775809', '+5', ' 5', '5 ',"
                           " '-', '-0', '12a', '9223372036854775808', '-42'", 0, NULL), 0);
    CHECK_EQ(vial_pg_getint(r, 0, 0, &i), 0);
    CHECK(i == INT64_MIN);
    CHECK_EQ(vial_pg_getint(r, 0, 1, &i), -ERANGE);
    CHECK_EQ(vial_pg_getint(r, 0, 2, &i), 0);
    CHECK_EQ(i, 5);
    CHECK_EQ(vial_pg_getint(r, 0, 3, &i), -EINVAL);
    CHECK_EQ(vial_pg_getint(r, 0, 4, &i), -EINVAL);
    CHECK_EQ(vial_pg_getint(r, 0, 5, &i), -EINVAL);
    CHECK_EQ(vial_pg_getint(r, 0, 6, &i), 0);
    CHECK_EQ(i, 0);
    CHECK_EQ(vial_pg_getint(r, 0, 7, &i), -EINVAL);
    CHECK_EQ(vial_pg_getint(r, 0, 8, &i), -ERANGE);
    CHECK_EQ(vial_pg_getint(r, 0, 9, &i), 0);
    CHECK_EQ(i, -42);
    /* many rows */
    CHECK_EQ(vial_pg_query(rq, db, &r, "select g, g * 2 from generate_series(1, 5000) g", 0, NULL), 0);
    CHECK_EQ(vial_pg_ntuples(r), 5000);
    CHECK_EQ(vial_pg_getint(r, 4999, 1, &i), 0);
    CHECK_EQ(i, 10000);
    CHECK_STR(vial_pg_cmd_status(r), "SELECT 5000");
    CHECK_EQ(vial_pg_cmd_tuples(r), 5000);
    /* column names by libpq's rules: folded unless quoted, "" a quote */
    CHECK_EQ(vial_pg_query(rq, db, &r, "select 1 as \"MixedCase\", 2 as lower, 3 as \"a\"\"b\", 4 as \"x y\"",
                           0, NULL), 0);
    CHECK_STR(vial_pg_fname(r, 0), "MixedCase");
    CHECK_STR(vial_pg_fname(r, 2), "a\"b");
    CHECK_EQ(vial_pg_fnumber(r, "MixedCase"), -1);
    CHECK_EQ(vial_pg_fnumber(r, "\"MixedCase\""), 0);
    CHECK_EQ(vial_pg_fnumber(r, "LOWER"), 1);
    CHECK_EQ(vial_pg_fnumber(r, "\"lower\""), 1);
    CHECK_EQ(vial_pg_fnumber(r, "\"LOWER\""), -1);
    CHECK_EQ(vial_pg_fnumber(r, "\"a\"\"b\""), 2);
    CHECK_EQ(vial_pg_fnumber(r, "\"x y\""), 3);
    CHECK_EQ(vial_pg_fnumber(r, "x y"), 3);
    CHECK_EQ(vial_pg_ftype(r, 3), 23);
    CHECK_EQ(vial_pg_ftype(r, 4), 0);
    CHECK(vial_pg_fname(r, 4) == NULL);
    /* no columns, no rows; an empty statement */
    CHECK_EQ(vial_pg_query(rq, db, &r, "select", 0, NULL), 0);
    CHECK_EQ(vial_pg_nfields(r), 0);
    CHECK_EQ(vial_pg_ntuples(r), 1);
    CHECK(vial_pg_getvalue(r, 0, 0) == NULL);
    CHECK_EQ(vial_pg_query(rq, db, &r, "", 0, NULL), 0);
    CHECK_EQ(vial_pg_ntuples(r), 0);
    CHECK_STR(vial_pg_cmd_status(r), "");
    CHECK_EQ(vial_pg_cmd_tuples(r), -1);
    /* rows of unequal widths, NULLs and empty strings side by side */
    CHECK_EQ(vial_pg_query(rq, db, &r,
                           "select case when g % 3 = 0 then null else repeat('x', g) end, ''::text"
                           " from generate_series(0, 300) g", 0, NULL), 0);
    for (int row = 0; row <= 300; row++) {
        CHECK_EQ(vial_pg_isnull(r, row, 0), row % 3 == 0);
        CHECK_EQ(vial_pg_getlength(r, row, 0), row % 3 == 0 ? 0 : row);
        CHECK_STR(vial_pg_getvalue(r, row, 1), "");
        const char *v = vial_pg_getvalue(r, row, 0);
        CHECK(row % 3 == 0 ? v == NULL : (v && strlen(v) == (size_t)row && v[row - 1] == 'x'));
    }
    return vial_text(rs, 200, "ok");
}

/* Run under a decimal-comma locale (test_locale): a float parameter written
 * with vial_sprintf and floats read with vial_pg_getdouble keep the '.'. */
static int v_locale(vial_req *rq, vial_res *rs)
{
    const char *p[1] = {vial_sprintf(rq, "%.2f", 3.25)};
    CHECK_STR(p[0], "3.25");
    vial_pg_result *r;
    CHECK_EQ(vial_pg_query(rq, db, &r, "select $1::float8 * 2, 2.5::float8, 12.25::numeric", 1, p), 0);
    double d = 0;
    CHECK_EQ(vial_pg_getdouble(r, 0, 0, &d), 0);
    CHECK(d == 6.5);
    CHECK_EQ(vial_pg_getdouble(r, 0, 1, &d), 0);
    CHECK(d == 2.5);
    CHECK_EQ(vial_pg_getdouble(r, 0, 2, &d), 0);
    CHECK(d == 12.25);
    return vial_text(rs, 200, "ok");
}

static int v_params(vial_req *rq, vial_res *rs)
{
    const char *p[4] = {"40", "2", NULL, "h\xc3\xa9llo 'quoted' \"x\""};
    vial_pg_result *r;
    int e = vial_pg_query(rq, db, &r, "select $1::int + $2::int, $3::text is null, length($4), $4",
                          4, p);
    CHECK_EQ(e, 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "42");
    CHECK_STR(vial_pg_getvalue(r, 0, 1), "t");
    CHECK_STR(vial_pg_getvalue(r, 0, 2), "18");
    CHECK_STR(vial_pg_getvalue(r, 0, 3), p[3]);
    /* a NULL parameter comes back NULL */
    const char *n[1] = {NULL};
    CHECK_EQ(vial_pg_query(rq, db, &r, "select $1::int", 1, n), 0);
    CHECK_EQ(vial_pg_isnull(r, 0, 0), 1);
    /* bad arguments */
    CHECK_EQ(vial_pg_query(rq, db, &r, "select 1", -1, NULL), -EINVAL);
    CHECK_EQ(vial_pg_query(rq, db, &r, "select $1", 1, NULL), -EINVAL);
    CHECK_EQ(vial_pg_query(rq, db, &r, NULL, 0, NULL), -EINVAL);
    CHECK_EQ(vial_pg_query(rq, NULL, &r, "select 1", 0, NULL), -EINVAL);
    /* too few parameters: the server says so */
    e = vial_pg_query(rq, db, &r, "select $1::int + $2::int", 1, p);
    CHECK_EQ(e, VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "08P01");
    return vial_text(rs, 200, "ok");
}

static int v_errors(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r;
    CHECK(vial_pg_error(rq) == NULL);
    int e = vial_pg_query(rq, db, &r, "select * from no_such_table", 0, NULL);
    CHECK_EQ(e, VIAL_PG_ESQL);
    /* the request keeps the last failure's message, the server's words */
    CHECK(vial_pg_error(rq) && strstr(vial_pg_error(rq), "no_such_table"));
    CHECK_EQ(vial_pg_query(rq, NULL, NULL, "select 1", 0, NULL), -EINVAL);
    CHECK_STR(vial_pg_error(rq), vial_strerror(-EINVAL));
    CHECK_EQ(vial_pg_result_error(r), VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "42P01");
    CHECK(vial_pg_errmsg(r) && strstr(vial_pg_errmsg(r), "no_such_table"));
    CHECK_EQ(vial_pg_ntuples(r), 0);

    e = vial_pg_query(rq, db, &r, "select 1/0", 0, NULL);
    CHECK_EQ(e, VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "22012");
    CHECK_STR(vial_pg_errmsg(r), "division by zero");

    e = vial_pg_query(rq, db, &r, "selec 1", 0, NULL);
    CHECK_EQ(e, VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "42601");

    /* one statement per call */
    e = vial_pg_query(rq, db, &r, "select 1; select 2", 0, NULL);
    CHECK_EQ(e, VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "42601");

    /* detail and hint travel too */
    e = vial_pg_query(rq, db, &r,
                      "do $$ begin raise exception 'custom' using detail = 'the detail',"
                      " hint = 'the hint', errcode = 'P0042'; end $$",
                      0, NULL);
    CHECK_EQ(e, VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "P0042");
    CHECK_STR(vial_pg_errdetail(r), "the detail");
    CHECK_STR(vial_pg_errhint(r), "the hint");

    /* a failed query poisons nothing: the next one on the pool works */
    CHECK_EQ(vial_pg_query(rq, db, &r, "select 7", 0, NULL), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "7");

    /* accessors on no result at all */
    CHECK_STR(vial_pg_sqlstate(NULL), "");
    CHECK_EQ(vial_pg_ntuples(NULL), 0);
    CHECK(vial_pg_getvalue(NULL, 0, 0) == NULL);
    return vial_text(rs, 200, "ok");
}

/* Errors in concurrent tasks stay theirs: a failing query pipelined with
 * good ones on the same connection does not abort them. */
static int v_errors_pipelined(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r[6];
    vial_task *t[6];
    for (int i = 0; i < 6; i++)
        t[i] = vial_pg_spawn_query(rq, db_one, &r[i], i == 2 ? "select 1/0" : "select 42", 0, NULL);
    CHECK_EQ(vial_gather(rq, t, 6, VIAL_GATHER_ALL), 0);
    for (int i = 0; i < 6; i++) {
        if (i == 2) {
            CHECK_EQ(vial_task_result(t[i]), VIAL_PG_ESQL);
            CHECK_STR(vial_pg_sqlstate(r[i]), "22012");
        } else {
            CHECK_EQ(vial_task_result(t[i]), 0);
            CHECK_STR(vial_pg_getvalue(r[i], 0, 0), "42");
        }
    }
    return vial_text(rs, 200, "ok");
}

/* --- batching across requests: one Sync per batch -------------------------------- */

/* 50 coroutines query at once: they leave in few batches, one Sync each
 * (a Sync per statement would make syncs == 50). */
static int v_batch_many(vial_req *rq, vial_res *rs)
{
    vial_pg *d = vial_req_arg(rq, "one") ? db_one : db;
    enum { N = 50 };
    vial_pg_result *r[N];
    vial_task *t[N];
    char num[N][8];
    const char *pp[N];
    CHECK_EQ(vial_pg_query(rq, d, NULL, "select 1", 0, NULL), 0); /* connected */
    vial_pg_stats s0, s1;
    CHECK_EQ(vial_pg_stats_get(rq, d, &s0), 0);
    for (int i = 0; i < N; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        pp[i] = num[i];
        t[i] = vial_pg_spawn_query(rq, d, &r[i], "select $1::int * 3", 1, &pp[i]);
        CHECK(t[i] != NULL);
    }
    CHECK_EQ(vial_gather(rq, t, N, 0), 0);
    for (int i = 0; i < N; i++) {
        int64_t v;
        CHECK_EQ(vial_pg_getint(r[i], 0, 0, &v), 0);
        CHECK_EQ(v, i * 3);
    }
    CHECK_EQ(vial_pg_stats_get(rq, d, &s1), 0);
    uint64_t batches = s1.batches - s0.batches, syncs = s1.syncs - s0.syncs;
    CHECK_EQ(syncs, batches);
    CHECK_EQ(s1.queries - s0.queries, N);
    if (d == db_one)
        CHECK_EQ(batches, 1);
    else
        CHECK(batches <= (N + 7) / 8);
    return vial_text(rs, 200, "ok %llu batches", (unsigned long long)batches);
}

/* A statement failing mid-batch aborts the batch's implicit transaction:
 * the reads before it were rolled back, those after it skipped. Only the
 * failing one reports an error; the others are sent again, together.
 * Writes never share a batch's transaction (each has its own Sync): each
 * row is there exactly once. */
static int v_batch_error(vial_req *rq, vial_res *rs)
{
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "create table if not exists vial_batch_err (v int)", 0, NULL), 0);
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "truncate vial_batch_err", 0, NULL), 0);
    enum { N = 8, READS = 5, BAD = 2 };
    vial_pg_result *r[N];
    vial_task *t[N];
    char num[N][8];
    const char *pp[N];
    vial_pg_stats s0, s1;
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s0), 0);
    for (int i = 0; i < N; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        pp[i] = num[i];
        const char *sql = i == BAD     ? "select 1 / ($1::int - 2)"
                          : i < READS ? "select $1::int * 2"
                                      : "insert into vial_batch_err values ($1::int)";
        t[i] = vial_pg_spawn_query(rq, db_one, &r[i], sql, 1, &pp[i]);
    }
    CHECK_EQ(vial_gather(rq, t, N, VIAL_GATHER_ALL), 0);
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s1), 0);
    for (int i = 0; i < N; i++) {
        if (i == BAD) {
            CHECK_EQ(vial_task_result(t[i]), VIAL_PG_ESQL);
            CHECK_STR(vial_pg_sqlstate(r[i]), "22012");
        } else if (i < READS) {
            CHECK_EQ(vial_task_result(t[i]), 0);
            CHECK_STR(vial_pg_getvalue(r[i], 0, 0), vial_sprintf(rq, "%d", i * 2));
        } else {
            CHECK_EQ(vial_task_result(t[i]), 0);
            CHECK_EQ(vial_pg_cmd_tuples(r[i]), 1);
        }
    }
    CHECK_EQ(s1.batches - s0.batches, 2);
    CHECK_EQ(s1.batch_retries - s0.batch_retries, READS - 1);
    /* the reads' group, one per insert, the re-sent reads */
    CHECK_EQ(s1.syncs - s0.syncs, 1 + (N - READS) + 1);
    vial_pg_result *c;
    CHECK_EQ(vial_pg_query(rq, db_one, &c,
                           "select count(*), count(distinct v), coalesce(sum(v), 0) from vial_batch_err",
                           0, NULL), 0);
    CHECK_STR(vial_pg_getvalue(c, 0, 0), "3");
    CHECK_STR(vial_pg_getvalue(c, 0, 1), "3");
    CHECK_STR(vial_pg_getvalue(c, 0, 2), "18"); /* 5+6+7 */
    return vial_text(rs, 200, "ok");
}

/* Repeated SQL runs as a prepared statement: one Parse per connection,
 * then Bind/Execute only; it survives DEALLOCATE ALL and a table change
 * that alters the statement's result type. */
static int v_auto_prepared(vial_req *rq, vial_res *rs)
{
    static const char sql[] = "select $1::int + 100 as auto_probe";
    const char *p[1] = {"1"};
    vial_pg_result *r;
    vial_pg_stats s0, s1;
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "select 1", 0, NULL), 0);
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s0), 0);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(vial_pg_query(rq, db_one, &r, sql, 1, p), 0);
        CHECK_STR(vial_pg_getvalue(r, 0, 0), "101");
    }
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s1), 0);
    CHECK_EQ(s1.auto_prepares - s0.auto_prepares, 1);
    CHECK_EQ(s1.prepared_hits - s0.prepared_hits, 4);
    const char *q[1] = {sql};
    CHECK_EQ(vial_pg_query(rq, db_one, &r, "select count(*) from pg_prepared_statements where statement = $1",
                           1, q), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "1");

    /* someone dropped every prepared statement: prepared again, no error */
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "deallocate all", 0, NULL), 0);
    CHECK_EQ(vial_pg_query(rq, db_one, &r, sql, 1, p), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "101");

    /* the table changed shape under a cached plan */
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "drop table if exists vial_auto_shape", 0, NULL), 0);
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "create table vial_auto_shape (a int)", 0, NULL), 0);
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "insert into vial_auto_shape values (1)", 0, NULL), 0);
    CHECK_EQ(vial_pg_query(rq, db_one, &r, "select * from vial_auto_shape", 0, NULL), 0);
    CHECK_EQ(vial_pg_nfields(r), 1);
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "alter table vial_auto_shape add column b int", 0, NULL), 0);
    int e = vial_pg_query(rq, db_one, &r, "select * from vial_auto_shape", 0, NULL);
    if (e)
        return vial_text(rs, 500, "after alter: %d %s %s", e, vial_pg_sqlstate(r), vial_pg_errmsg(r));
    CHECK_EQ(vial_pg_nfields(r), 2);
    return vial_text(rs, 200, "ok");
}

/* A lone query goes at once: no batching delay, one Sync each. */
static int v_lone(vial_req *rq, vial_res *rs)
{
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "select 1", 0, NULL), 0);
    vial_pg_stats s0, s1;
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s0), 0);
    enum { N = 50 };
    double best = 1e9;
    for (int i = 0; i < N; i++) {
        double t0 = now_ms();
        CHECK_EQ(vial_pg_query(rq, db_one, NULL, "select 1", 0, NULL), 0);
        double el = now_ms() - t0;
        if (el < best)
            best = el;
    }
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s1), 0);
    CHECK_EQ(s1.syncs - s0.syncs, N);
    CHECK_EQ(s1.batches - s0.batches, N);
    vial_res_set_header(rs, "X-Best-Us", vial_sprintf(rq, "%llu", (unsigned long long)(best * 1000)));
    return vial_text(rs, 200, "ok");
}

/* One batch in flight per connection: queries issued in later loop turns
 * while a batch is out queue behind it and leave together, as one batch
 * with one Sync, when its results are in (not one batch per turn). */
static int v_batch_behind(vial_req *rq, vial_res *rs)
{
    enum { N = 10 };
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "select 1", 0, NULL), 0);
    vial_pg_stats s0, s1;
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s0), 0);
    vial_pg_result *slow, *r[N];
    vial_task *t[N + 1];
    char num[N][8];
    const char *pp[N];
    t[N] = vial_pg_spawn_query(rq, db_one, &slow, "select pg_sleep(0.2)::text", 0, NULL);
    CHECK_EQ(vial_sleep(rq, 50), 0); /* the slow batch is out */
    for (int i = 0; i < N; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        pp[i] = num[i];
        t[i] = vial_pg_spawn_query(rq, db_one, &r[i], "select $1::int + 1", 1, &pp[i]);
        CHECK_EQ(vial_sleep(rq, 1), 0); /* each in a turn of its own */
    }
    CHECK_EQ(vial_gather(rq, t, N + 1, VIAL_GATHER_ALL), 0);
    for (int i = 0; i < N; i++)
        CHECK_STR(vial_pg_getvalue(r[i], 0, 0), vial_sprintf(rq, "%d", i + 1));
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s1), 0);
    CHECK_EQ(s1.batches - s0.batches, 2);
    CHECK_EQ(s1.syncs - s0.syncs, 2);
    return vial_text(rs, 200, "ok");
}

/* A vial_pg_query_all issued while every connection has a batch in
 * flight queues all its statements behind one of them: they leave as one
 * batch and the caller waits for one connection (spread over the three,
 * it was three batches and three wake-ups). */
static int v_query_all_behind(vial_req *rq, vial_res *rs)
{
    enum { N = 12 };
    vial_pg_result *slow[3];
    vial_task *t[3];
    vial_pg_stats s0, s1;
    for (int i = 0; i < 3; i++) {
        t[i] = vial_pg_spawn_query(rq, db_three, &slow[i], "select pg_sleep(0.5)::text", 0, NULL);
        /* out on a connection of its own: wait until that one is up (it
         * sends at once then), else the next would join it while it connects */
        for (int w = 0; w < 200; w++) {
            CHECK_EQ(vial_sleep(rq, 5), 0);
            CHECK_EQ(vial_pg_stats_get(rq, db_three, &s0), 0);
            if (s0.connects > (uint64_t)i)
                break;
        }
        CHECK_EQ(s0.connects, i + 1);
    }
    CHECK_EQ(vial_sleep(rq, 20), 0);
    CHECK_EQ(vial_pg_stats_get(rq, db_three, &s0), 0);
    CHECK_EQ(s0.conns, 3);
    CHECK_EQ(s0.batches, 3);
    vial_pg_stmt st[N];
    char num[N][8];
    const char *pp[N];
    for (int i = 0; i < N; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        pp[i] = num[i];
        st[i] = (vial_pg_stmt){.sql = "select $1::int * 2", .nparams = 1, .params = &pp[i]};
    }
    CHECK_EQ(vial_pg_query_all(rq, db_three, st, N), 0);
    for (int i = 0; i < N; i++)
        CHECK_STR(vial_pg_getvalue(st[i].result, 0, 0), vial_sprintf(rq, "%d", 2 * i));
    CHECK_EQ(vial_gather(rq, t, 3, VIAL_GATHER_ALL), 0);
    CHECK_EQ(vial_pg_stats_get(rq, db_three, &s1), 0);
    CHECK_EQ(s1.batches - s0.batches, 1);
    CHECK_EQ(s1.queries - s0.queries, N);
    return vial_text(rs, 200, "ok");
}

/* Cancelling one task whose query shares a batch with live ones: the
 * others are answered, the cancelled one is not cancelled on the server
 * (a cancel could hit a live statement) and its result is dropped. */
static int v_batch_cancel(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r[3] = {NULL, NULL, NULL};
    vial_task *t[3];
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "select 1", 0, NULL), 0);
    vial_pg_stats s0, s1;
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s0), 0);
    t[0] = vial_pg_spawn_query(rq, db_one, &r[0], "select pg_sleep(0.5)::text || 'a'", 0, NULL);
    t[1] = vial_pg_spawn_query(rq, db_one, &r[1], "select 'b'", 0, NULL);
    t[2] = vial_pg_spawn_query(rq, db_one, &r[2], "select 'c'", 0, NULL);
    CHECK_EQ(vial_sleep(rq, 50), 0); /* the batch is out; pg_sleep runs */
    vial_task_cancel(t[1]);
    CHECK_EQ(vial_gather(rq, t, 3, VIAL_GATHER_ALL), 0);
    CHECK_EQ(vial_task_result(t[0]), 0);
    CHECK_STR(vial_pg_getvalue(r[0], 0, 0), "a");
    CHECK_EQ(vial_task_result(t[1]), -ECANCELED);
    CHECK_EQ(vial_task_result(t[2]), 0);
    CHECK_STR(vial_pg_getvalue(r[2], 0, 0), "c");
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s1), 0);
    CHECK_EQ(s1.batches - s0.batches, 1);
    CHECK_EQ(s1.cancels - s0.cancels, 0);
    /* the connection goes on */
    CHECK_EQ(vial_pg_query(rq, db_one, &r[0], "select 'd'", 0, NULL), 0);
    CHECK_STR(vial_pg_getvalue(r[0], 0, 0), "d");
    return vial_text(rs, 200, "ok");
}

static int v_prepared(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r;
    const char *p[2] = {"20", "22"};
    CHECK_EQ(vial_pg_exec_prepared(rq, db, &r, "add", 2, p), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "42");
    p[0] = "1";
    CHECK_EQ(vial_pg_exec_prepared(rq, db, &r, "add", 2, p), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "23");
    /* the statement exists on the server, prepared once per connection */
    CHECK_EQ(vial_pg_query(rq, db, &r,
                           "select count(*) from pg_prepared_statements where name = 'add'", 0, NULL),
             0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "1");
    /* unknown name */
    CHECK_EQ(vial_pg_exec_prepared(rq, db, &r, "nope", 0, NULL), -EINVAL);
    /* the preparation's own error is what is reported, not "does not exist" */
    CHECK_EQ(vial_pg_exec_prepared(rq, db, &r, "broken", 0, NULL), VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "42601");
    /* and it is retried next time (still broken, same error) */
    CHECK_EQ(vial_pg_exec_prepared(rq, db, &r, "broken", 0, NULL), VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "42601");
    /* runtime errors of a prepared statement */
    p[0] = "x";
    CHECK_EQ(vial_pg_exec_prepared(rq, db, &r, "add", 2, p), VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "22P02");

    /* concurrently, on one connection: prepared once, used by all */
    vial_pg_result *rr[10];
    vial_task *t[10];
    char num[10][8];
    for (int i = 0; i < 10; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        const char *pp[2] = {num[i], "100"};
        t[i] = vial_pg_spawn_prepared(rq, db_one, &rr[i], "add", 2, pp);
        CHECK(t[i]);
    }
    CHECK_EQ(vial_gather(rq, t, 10, 0), 0);
    for (int i = 0; i < 10; i++) {
        int64_t v;
        CHECK_EQ(vial_pg_getint(rr[i], 0, 0, &v), 0);
        CHECK_EQ(v, 100 + i);
    }
    CHECK_EQ(vial_pg_query(rq, db_one, &r,
                           "select count(*) from pg_prepared_statements where name = 'add'", 0, NULL),
             0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "1");
    return vial_text(rs, 200, "ok");
}

static int count_rows(vial_req *rq, vial_pg *d, const char *tag, int64_t *n)
{
    vial_pg_result *r;
    const char *p[1] = {tag};
    int e = vial_pg_query(rq, d, &r, "select count(*) from vial_test_t where tag = $1", 1, p);
    if (e == 0)
        e = vial_pg_getint(r, 0, 0, n);
    return e;
}

static int v_tx(vial_req *rq, vial_res *rs)
{
    vial_pg_tx *tx;
    vial_pg_result *r;
    int64_t n;
    /* commit */
    CHECK_EQ(vial_pg_begin(rq, db, &tx, &r), 0);
    const char *p[1] = {"committed"};
    CHECK_EQ(vial_pg_tx_query(rq, tx, &r, "insert into vial_test_t (tag) values ($1)", 1, p), 0);
    CHECK_EQ(vial_pg_cmd_tuples(r), 1);
    CHECK_STR(vial_pg_cmd_status(r), "INSERT 0 1");
    /* not visible outside the transaction yet */
    CHECK_EQ(count_rows(rq, db, "committed", &n), 0);
    CHECK_EQ(n, 0);
    CHECK_EQ(vial_pg_tx_query(rq, tx, &r, "select count(*) from vial_test_t where tag = $1", 1, p), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "1");
    CHECK_EQ(vial_pg_commit(rq, tx, &r), 0);
    CHECK_EQ(count_rows(rq, db, "committed", &n), 0);
    CHECK_EQ(n, 1);
    /* finished: using it again is an error */
    CHECK_EQ(vial_pg_tx_query(rq, tx, &r, "select 1", 0, NULL), -EINVAL);
    CHECK_EQ(vial_pg_commit(rq, tx, &r), -EINVAL);

    /* rollback */
    CHECK_EQ(vial_pg_begin(rq, db, &tx, NULL), 0);
    p[0] = "rolled";
    CHECK_EQ(vial_pg_tx_query(rq, tx, NULL, "insert into vial_test_t (tag) values ($1)", 1, p), 0);
    CHECK_EQ(vial_pg_rollback(rq, tx), 0);
    CHECK_EQ(count_rows(rq, db, "rolled", &n), 0);
    CHECK_EQ(n, 0);

    /* a failed statement: the rest is refused, COMMIT rolls back */
    CHECK_EQ(vial_pg_begin(rq, db, &tx, NULL), 0);
    p[0] = "failed";
    CHECK_EQ(vial_pg_tx_query(rq, tx, NULL, "insert into vial_test_t (tag) values ($1)", 1, p), 0);
    CHECK_EQ(vial_pg_tx_query(rq, tx, &r, "select 1/0", 0, NULL), VIAL_PG_ESQL);
    CHECK_EQ(vial_pg_tx_query(rq, tx, &r, "select 1", 0, NULL), VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "25P02");
    CHECK_EQ(vial_pg_commit(rq, tx, &r), VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(r), "25P02");
    CHECK_EQ(count_rows(rq, db, "failed", &n), 0);
    CHECK_EQ(n, 0);

    /* a prepared statement inside a transaction */
    CHECK_EQ(vial_pg_begin(rq, db, &tx, NULL), 0);
    const char *ap[2] = {"2", "3"};
    CHECK_EQ(vial_pg_tx_exec_prepared(rq, tx, &r, "add", 2, ap), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "5");
    CHECK_EQ(vial_pg_commit(rq, tx, NULL), 0);
    return vial_text(rs, 200, "ok");
}

/* Leaves a transaction open: the request's end must roll it back. */
static int v_tx_leave(vial_req *rq, vial_res *rs)
{
    vial_pg_tx *tx;
    CHECK_EQ(vial_pg_begin(rq, db, &tx, NULL), 0);
    const char *p[1] = {"abandoned"};
    CHECK_EQ(vial_pg_tx_query(rq, tx, NULL, "insert into vial_test_t (tag) values ($1)", 1, p), 0);
    return vial_text(rs, 200, "ok");
}

static int v_tx_left_check(vial_req *rq, vial_res *rs)
{
    int64_t n = -1;
    CHECK_EQ(count_rows(rq, db, "abandoned", &n), 0);
    CHECK_EQ(n, 0);
    /* every pooled connection is usable outside a transaction: run one
     * query on each (a gather spreads over the idle ones) */
    vial_pg_result *r[10];
    vial_task *t[10];
    for (int i = 0; i < 10; i++)
        t[i] = vial_pg_spawn_query(rq, db, &r[i], "select txid_current_if_assigned() is null", 0, NULL);
    CHECK_EQ(vial_gather(rq, t, 10, 0), 0);
    for (int i = 0; i < 10; i++)
        CHECK_STR(vial_pg_getvalue(r[i], 0, 0), "t");
    return vial_text(rs, 200, "ok");
}

/* Every connection pinned by a transaction: the next begin waits for one. */
static int tx_hold_task(vial_req *rq, void *arg)
{
    vial_pg_tx *tx;
    int e = vial_pg_begin(rq, db_one, &tx, NULL);
    if (e < 0)
        return e;
    vial_sleep(rq, 100);
    return vial_pg_commit(rq, tx, NULL);
}

static int v_tx_wait(vial_req *rq, vial_res *rs)
{
    vial_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = vial_spawn(rq, tx_hold_task, NULL);
    uint64_t t0 = vial_now_ms();
    CHECK_EQ(vial_gather(rq, t, 3, 0), 0);
    uint64_t el = vial_now_ms() - t0;
    CHECK(el >= 250); /* serialised on db_one's single connection */
    /* and a plain query waits for the pinned connection too */
    return vial_text(rs, 200, "ok");
}

static int v_listen(vial_req *rq, vial_res *rs)
{
    vial_pg_listener *l, *l2, *l3;
    CHECK_EQ(vial_pg_listen(rq, db, "vial_chan", &l), 0);
    CHECK_EQ(vial_pg_listen(rq, db, "vial_chan", &l2), 0); /* two on one channel */
    CHECK_EQ(vial_pg_listen(rq, db, "Mixed Case", &l3), 0);
    const char *p[2] = {"vial_chan", "hello"};
    CHECK_EQ(vial_pg_query(rq, db, NULL, "select pg_notify($1, $2)", 2, p), 0);
    p[1] = "again";
    CHECK_EQ(vial_pg_query(rq, db, NULL, "select pg_notify($1, $2)", 2, p), 0);
    p[0] = "Mixed Case";
    p[1] = "mc";
    CHECK_EQ(vial_pg_query(rq, db, NULL, "select pg_notify($1, $2)", 2, p), 0);
    p[0] = "mixed case"; /* another channel: not delivered to l3 */
    CHECK_EQ(vial_pg_query(rq, db, NULL, "select pg_notify($1, $2)", 2, p), 0);

    vial_pg_notify n;
    CHECK_EQ(vial_pg_next_notify(rq, l, &n), 0);
    CHECK_STR(n.channel, "vial_chan");
    CHECK_STR(n.payload, "hello");
    CHECK(n.pid > 0);
    CHECK_EQ(vial_pg_next_notify(rq, l, &n), 0);
    CHECK_STR(n.payload, "again");
    CHECK_EQ(vial_pg_next_notify(rq, l2, &n), 0);
    CHECK_STR(n.payload, "hello");
    CHECK_EQ(vial_pg_next_notify(rq, l3, &n), 0);
    CHECK_STR(n.channel, "Mixed Case");
    CHECK_STR(n.payload, "mc");

    /* nothing more: the wait honours a timeout */
    vial_timeout to;
    vial_timeout_begin(rq, &to, 100);
    uint64_t t0 = vial_now_ms();
    int e = vial_pg_next_notify(rq, l3, &n);
    vial_timeout_end(rq, &to);
    CHECK_EQ(e, -ETIMEDOUT);
    CHECK(vial_now_ms() - t0 >= 90);

    /* a notification that arrives while waiting wakes the waiter */
    vial_pg_unlisten(l2);
    CHECK_EQ(vial_pg_next_notify(rq, l2, &n), -EINVAL);
    return vial_text(rs, 200, "ok");
}

static int notify_later(vial_req *rq, void *arg)
{
    vial_sleep(rq, 50);
    const char *p[2] = {"vial_chan2", "late"};
    return vial_pg_query(rq, db, NULL, "select pg_notify($1, $2)", 2, p);
}

static int v_listen_wait(vial_req *rq, vial_res *rs)
{
    vial_pg_listener *l;
    CHECK_EQ(vial_pg_listen(rq, db, "vial_chan2", &l), 0);
    vial_task *t = vial_spawn(rq, notify_later, NULL);
    vial_pg_notify n;
    CHECK_EQ(vial_pg_next_notify(rq, l, &n), 0);
    CHECK_STR(n.payload, "late");
    CHECK_EQ(vial_join(rq, t), 0);
    return vial_text(rs, 200, "ok");
}

/* 20 queries of 50 ms each, gathered. */
static int v_gather_sleep(vial_req *rq, vial_res *rs)
{
    vial_pg *d = vial_req_arg(rq, "one") ? db_one : vial_req_arg(rq, "default") ? db : db_wide;
    vial_pg_result *r[20];
    vial_task *t[20];
    vial_pg_stats s0, s1;
    vial_pg_stats_get(rq, d, &s0);
    uint64_t t0 = vial_now_ms();
    for (int i = 0; i < 20; i++)
        t[i] = vial_pg_spawn_query(rq, d, &r[i], "select pg_sleep(0.05)", 0, NULL);
    CHECK_EQ(vial_gather(rq, t, 20, 0), 0);
    uint64_t el = vial_now_ms() - t0;
    vial_pg_stats_get(rq, d, &s1);
    vial_res_set_header(rs, "X-Elapsed", vial_sprintf(rq, "%llu", (unsigned long long)el));
    vial_res_set_header(rs, "X-Conns", vial_sprintf(rq, "%u", s1.conns));
    return vial_text(rs, 200, "ok");
}

/* 20 fast queries on one connection: one batch, results matched in order. */
static int v_pipeline(vial_req *rq, vial_res *rs)
{
    vial_pg_stats s0, s1;
    CHECK_EQ(vial_pg_query(rq, db_one, NULL, "select 1", 0, NULL), 0); /* connected */
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s0), 0);
    vial_pg_result *r[20];
    vial_task *t[20];
    char num[20][8];
    for (int i = 0; i < 20; i++) {
        snprintf(num[i], sizeof num[i], "%d", i * 7);
        const char *p[1] = {num[i]};
        t[i] = vial_pg_spawn_query(rq, db_one, &r[i], "select $1::int * 2", 1, p);
    }
    CHECK_EQ(vial_gather(rq, t, 20, 0), 0);
    for (int i = 0; i < 20; i++) {
        int64_t v;
        CHECK_EQ(vial_pg_getint(r[i], 0, 0, &v), 0);
        CHECK_EQ(v, i * 14);
    }
    CHECK_EQ(vial_pg_stats_get(rq, db_one, &s1), 0);
    CHECK_EQ(s1.conns, 1);
    CHECK_EQ(s1.batches - s0.batches, 1);
    CHECK_EQ(s1.queries - s0.queries, 20);
    CHECK(s1.max_batch >= 20);
    return vial_text(rs, 200, "ok");
}

/* vial_timeout around a long query: -ETIMEDOUT after 100 ms, cancelled on
 * the server. */
static int v_timeout(vial_req *rq, vial_res *rs)
{
    vial_pg *d = vial_req_arg(rq, "one") ? db_one : db;
    vial_pg_result *r;
    vial_timeout to;
    vial_timeout_begin(rq, &to, 100);
    uint64_t t0 = vial_now_ms();
    int e = vial_pg_query(rq, d, &r, "select pg_sleep(5)", 0, NULL);
    vial_timeout_end(rq, &to);
    uint64_t el = vial_now_ms() - t0;
    CHECK_EQ(e, -ETIMEDOUT);
    CHECK_STR(vial_pg_sqlstate(r), "57014");
    /* Well under the 5 s sleep: the timeout ended it, not the query. A
     * wide margin, since a loaded sanitizer build once took 500 ms here. */
    CHECK(el < 3000);
    vial_res_set_header(rs, "X-Elapsed", vial_sprintf(rq, "%llu", (unsigned long long)el));
    /* the connection goes on: the next query answers at once */
    CHECK_EQ(vial_pg_query(rq, d, &r, "select 5", 0, NULL), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "5");
    return vial_text(rs, 200, "ok");
}

/* A task cancelled mid-query (as a client disconnect cancels a request). */
static int sleeper(vial_req *rq, void *arg)
{
    return vial_pg_query(rq, db, NULL, "select pg_sleep(5.01)", 0, NULL);
}

static int v_task_cancel(vial_req *rq, vial_res *rs)
{
    vial_task *t = vial_spawn(rq, sleeper, NULL);
    vial_sleep(rq, 100);
    vial_task_cancel(t);
    uint64_t t0 = vial_now_ms();
    CHECK_EQ(vial_join(rq, t), -ECANCELED);
    CHECK(vial_now_ms() - t0 < 300);
    return vial_text(rs, 200, "ok");
}

/* A deadline over a gather of slow queries pipelined on one connection
 * (all doomed: cancel and retire it), and spread over several. */
static int v_gather_deadline(vial_req *rq, vial_res *rs)
{
    vial_pg *d = vial_req_arg(rq, "one") ? db_one : db_wide;
    vial_set_deadline(rq, 150);
    vial_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = vial_pg_spawn_query(rq, d, NULL, "select pg_sleep(5.02)", 0, NULL);
    uint64_t t0 = vial_now_ms();
    int e = vial_gather(rq, t, 3, 0);
    CHECK_EQ(e, -ETIMEDOUT);
    CHECK(vial_now_ms() - t0 < 500);
    return vial_text(rs, 200, "ok");
}

static int v_query(vial_req *rq, vial_res *rs)
{
    vial_pg *d = vial_req_arg(rq, "bad")    ? db_bad
                 : vial_req_arg(rq, "one")  ? db_one
                 : vial_req_arg(rq, "priv") ? db_priv
                                            : db;
    vial_pg_result *r;
    int e = vial_pg_query(rq, d, &r, "select 1", 0, NULL);
    return vial_text(rs, 200, "%d %s %s", e, vial_pg_sqlstate(r), e ? vial_pg_errmsg(r) : "");
}

static void terminate_ours(void *arg)
{
    PGconn *c = PQconnectdb(side_conninfo);
    PGresult *r = PQexec(c, "select pg_terminate_backend(pid) from pg_stat_activity where"
                            " application_name = '" APP_NAME "' and pid <> pg_backend_pid()");
    PQclear(r);
    PQfinish(c);
}

static int terminate_task(vial_req *rq, void *arg)
{
    vial_sleep(rq, 200);
    return vial_offload(rq, terminate_ours, NULL);
}

/* The backend is killed while the query runs: a clear error, no hang. */
static int v_killed_midquery(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r = NULL;
    vial_task *k = vial_spawn(rq, terminate_task, NULL);
    uint64_t t0 = vial_now_ms();
    int e = vial_pg_query(rq, db, &r, "select pg_sleep(3)", 0, NULL);
    CHECK_EQ(vial_join(rq, k), 0);
    CHECK_EQ(e, -ECONNRESET);
    CHECK(vial_now_ms() - t0 < 1500);
    CHECK(vial_pg_errmsg(r) != NULL);
    vial_res_set_header(rs, "X-Error", vial_sprintf(rq, "%s %s", vial_pg_sqlstate(r), vial_pg_errmsg(r)));
    return vial_text(rs, 200, "ok");
}

static int notify_until(vial_req *rq, void *arg)
{
    vial_event *stop = arg;
    const char *p[2] = {"vial_lost", "after"};
    for (int i = 0; i < 100 && !vial_event_is_set(stop); i++) {
        vial_pg_query(rq, db, NULL, "select pg_notify($1, $2)", 2, p);
        vial_sleep(rq, 50);
    }
    return 0;
}

/* The LISTEN connection dies: the listener hears -ECONNRESET once, then
 * subscribes again by itself. */
static int v_listen_lost(vial_req *rq, vial_res *rs)
{
    vial_pg_listener *l;
    CHECK_EQ(vial_pg_listen(rq, db, "vial_lost", &l), 0);
    vial_task *k = vial_spawn(rq, terminate_task, NULL);
    vial_pg_notify n;
    vial_timeout to;
    vial_timeout_begin(rq, &to, 5000);
    int e = vial_pg_next_notify(rq, l, &n);
    vial_timeout_end(rq, &to);
    CHECK_EQ(e, -ECONNRESET);
    CHECK_EQ(vial_join(rq, k), 0);
    vial_event *stop = vial_event_new(rq);
    vial_task *t = vial_spawn(rq, notify_until, stop);
    vial_timeout_begin(rq, &to, 5000);
    e = vial_pg_next_notify(rq, l, &n);
    vial_timeout_end(rq, &to);
    vial_event_set(stop);
    CHECK_EQ(e, 0);
    CHECK_STR(n.payload, "after");
    CHECK_EQ(vial_join(rq, t), 0);
    return vial_text(rs, 200, "ok");
}

/* A listener that does not keep up: bounded queue, the overflow reported. */
static int v_listen_overflow(vial_req *rq, vial_res *rs)
{
    vial_pg_listener *l;
    CHECK_EQ(vial_pg_listen(rq, db_small, "vial_of", &l), 0);
    CHECK_EQ(vial_pg_query(rq, db_small, NULL,
                           "select pg_notify('vial_of', '1'), pg_notify('vial_of', '2'),"
                           " pg_notify('vial_of', '3')",
                           0, NULL),
             0);
    vial_sleep(rq, 300); /* let all three arrive */
    vial_pg_notify n;
    CHECK_EQ(vial_pg_next_notify(rq, l, &n), -ENOBUFS);
    CHECK_EQ(vial_pg_next_notify(rq, l, &n), 0);
    CHECK_STR(n.payload, "2");
    CHECK_EQ(vial_pg_next_notify(rq, l, &n), 0);
    CHECK_STR(n.payload, "3");
    return vial_text(rs, 200, "ok");
}

static int v_dns(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r;
    vial_task *t[4];
    vial_pg_result *rr[4];
    for (int i = 0; i < 4; i++)
        t[i] = vial_pg_spawn_query(rq, db_dns, &rr[i], "select 3", 0, NULL);
    CHECK_EQ(vial_gather(rq, t, 4, 0), 0);
    CHECK_EQ(vial_pg_query(rq, db_dns, &r, "select current_user", 0, NULL), 0);
    CHECK_STR(vial_pg_getvalue(r, 0, 0), "postgres");
    return vial_text(rs, 200, "ok");
}

static int v_hang(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r;
    uint64_t t0 = vial_now_ms();
    int e = vial_pg_query(rq, db_hang, &r, "select 1", 0, NULL);
    uint64_t el = vial_now_ms() - t0;
    CHECK_EQ(e, -ECONNREFUSED);
    CHECK_STR(vial_pg_sqlstate(r), "08001");
    CHECK(strstr(vial_pg_errmsg(r), "timed out"));
    CHECK(el >= 250 && el < 1500);
    return vial_text(rs, 200, "ok");
}

/* Many statements from one coroutine, each with its own outcome. */
static int v_all(vial_req *rq, vial_res *rs)
{
    const char *two[2] = {"40", "2"};
    const char *one[1] = {"abc"};
    vial_pg_stmt st[6] = {
        {.sql = "select $1::text || 'def'", .nparams = 1, .params = one},
        {.sql = "add", .prepared = 1, .nparams = 2, .params = two},
        {.sql = "select 1/0"},
        {.sql = "nope", .prepared = 1},
        {.sql = "select generate_series(1, 3)"},
        {.sql = NULL},
    };
    vial_pg_stats s0, s1;
    vial_pg_stats_get(rq, db_one, &s0);
    int e = vial_pg_query_all(rq, db_one, st, 6);
    vial_pg_stats_get(rq, db_one, &s1);
    CHECK_EQ(e, VIAL_PG_ESQL); /* the first failure in array order */
    CHECK_EQ(st[0].error, 0);
    CHECK_STR(vial_pg_getvalue(st[0].result, 0, 0), "abcdef");
    CHECK_EQ(st[1].error, 0);
    CHECK_STR(vial_pg_getvalue(st[1].result, 0, 0), "42");
    CHECK_EQ(st[2].error, VIAL_PG_ESQL);
    CHECK_STR(vial_pg_sqlstate(st[2].result), "22012");
    CHECK_EQ(st[3].error, -EINVAL);
    CHECK_EQ(st[4].error, 0);
    CHECK_EQ(vial_pg_ntuples(st[4].result), 3);
    CHECK_EQ(st[5].error, -EINVAL);
    /* one batch, one Sync for all of them; 1/0 aborted the batch (one
     * implicit transaction): the three others were sent again, together */
    CHECK_EQ(s1.batches - s0.batches, 2);
    CHECK_EQ(s1.syncs - s0.syncs, 2);
    CHECK_EQ(s1.batch_retries - s0.batch_retries, 3);
    /* nothing at all */
    CHECK_EQ(vial_pg_query_all(rq, db_one, NULL, 0), 0);

    /* 200 on the default pool */
    vial_pg_stmt many[200];
    char num[200][8];
    const char *pp[200];
    for (int i = 0; i < 200; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        pp[i] = num[i];
        many[i] = (vial_pg_stmt){.sql = "select $1::int + 1", .nparams = 1, .params = &pp[i]};
    }
    CHECK_EQ(vial_pg_query_all(rq, db, many, 200), 0);
    for (int i = 0; i < 200; i++) {
        int64_t v;
        CHECK_EQ(vial_pg_getint(many[i].result, 0, 0, &v), 0);
        CHECK_EQ(v, i + 1);
    }
    return vial_text(rs, 200, "ok");
}

static int v_all_timeout(vial_req *rq, vial_res *rs)
{
    vial_pg *d = vial_req_arg(rq, "one") ? db_one : db_wide;
    vial_pg_stmt st[3];
    for (int i = 0; i < 3; i++)
        st[i] = (vial_pg_stmt){.sql = "select pg_sleep(5.03)"};
    vial_timeout to;
    vial_timeout_begin(rq, &to, 100);
    uint64_t t0 = vial_now_ms();
    int e = vial_pg_query_all(rq, d, st, 3);
    vial_timeout_end(rq, &to);
    CHECK_EQ(e, -ETIMEDOUT);
    CHECK(vial_now_ms() - t0 < 500);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(st[i].error, -ETIMEDOUT);
        CHECK_STR(vial_pg_sqlstate(st[i].result), "57014");
    }
    vial_pg_result *r;
    CHECK_EQ(vial_pg_query(rq, d, &r, "select 1", 0, NULL), 0);
    return vial_text(rs, 200, "ok");
}

static int v_sync(vial_req *rq, vial_res *rs)
{
    vial_pg_result *r;
    CHECK_EQ(vial_pg_query(rq, db, &r, "select 1", 0, NULL), -EPERM);
    return vial_text(rs, 200, "ok");
}

static int v_stats(vial_req *rq, vial_res *rs)
{
    vial_pg_stats s;
    CHECK_EQ(vial_pg_stats_get(rq, vial_req_arg(rq, "priv") ? db_priv : db, &s), 0);
    return vial_text(rs, 200, "conns=%u connects=%llu broken=%llu retries=%llu cancels=%llu", s.conns,
                     (unsigned long long)s.connects, (unsigned long long)s.broken,
                     (unsigned long long)s.retries, (unsigned long long)s.cancels);
}

/* --- tests ---------------------------------------------------------------------------------- */

static void test_simple(void **state) { get_ok("/simple"); }
static void test_metrics(void **state) { get_ok("/metrics"); }
static void test_params(void **state) { get_ok("/params"); }
static void test_locale(void **state)
{
    (void)state;
    if (!vial_test_german_locale())
        skip();
    get_ok("/locale");
    setlocale(LC_ALL, "C");
}
static void test_errors(void **state) { get_ok("/errors"); }
static void test_errors_pipelined(void **state) { get_ok("/errors_pipelined"); }
static void test_prepared(void **state) { get_ok("/prepared"); }
static void test_sync_view(void **state) { get_ok("/sync"); }

static void test_transactions(void **state)
{
    get_ok("/tx");
    get_ok("/tx_leave");
    get_ok("/tx_left_check");
    assert_string_equal(side_value("select count(*) from pg_stat_activity where application_name = '" APP_NAME
                                   "' and state like 'idle in transaction%'"),
                        "0");
    get_ok("/tx_wait");
}

static void test_listen_notify(void **state)
{
    get_ok("/listen");
    get_ok("/listen_wait");
    get_ok("/listen_overflow");
}

static void test_listen_connection_lost(void **state)
{
    get_ok("/listen_lost");
}

static void test_dns_connect_on_pool(void **state)
{
    get_ok("/dns");
}

static void test_connect_timeout(void **state)
{
    get_ok("/hang");
}

static void test_query_all(void **state)
{
    get_ok("/all");
    for (int one = 0; one < 2; one++) {
        get_ok(one ? "/all_timeout?one=1" : "/all_timeout");
        double gone = wait_not_active("select pg_sleep(5.03)", 1000);
        printf("vial_pg_query_all of 3 x pg_sleep(5) timed out (%s): gone %.1f ms after the response\n",
               one ? "pipelined on 1 connection" : "side by side", gone);
        assert_true(gone >= 0);
    }
}

/* Runs the gather view; returns the view's own measure (ms). */
static double gather_once(const char *target, double *outside)
{
    double t0 = now_ms();
    vial_test_response *r = get(target, 200);
    *outside = now_ms() - t0;
    assert_string_equal(vial_test_response_body(r, NULL), "ok");
    double el = atof(vial_test_response_header(r, "X-Elapsed"));
    vial_test_response_free(r);
    return el;
}

static void test_gather_is_concurrent(void **state)
{
    double outside, cold = gather_once("/gather_sleep", &outside); /* opens the connections */
    printf("gather of 20 x pg_sleep(0.05), max_conns 20, cold (20 connects): %.0f ms\n", cold);
    double best = 1e9, best_outside = 1e9;
    for (int i = 0; i < 5; i++) {
        double el = gather_once("/gather_sleep", &outside);
        if (el < best)
            best = el;
        if (outside < best_outside)
            best_outside = outside;
    }
    printf("gather of 20 x pg_sleep(0.05), max_conns 20, warm: %.0f ms in the view, %.1f ms "
           "around vial_test_client_get (best of 5)\n", best, best_outside);
    /* Run one after another they would take 20 x 50 = 1000 ms: anything
     * clearly below shows they overlapped (wide margin: a loaded machine). */
    assert_true(best < 900);
    gather_once("/gather_sleep?default=1", &outside); /* warm the default pool */
    double def = gather_once("/gather_sleep?default=1", &outside);
    printf("the same with the default max_conns (10): %.0f ms\n", def);
    assert_true(def < 900);
    double one = gather_once("/gather_sleep?one=1", &outside);
    printf("the same pipelined on 1 connection: %.0f ms (the server runs them one after another)\n",
           one);
}

static void test_pipeline_one_batch(void **state)
{
    get_ok("/pipeline");
}

static void test_batch_many(void **state)
{
    for (int one = 0; one < 2; one++) {
        vial_test_response *r = get(one ? "/batch_many?one=1" : "/batch_many", 200);
        printf("50 concurrent queries (%s): %s\n", one ? "1 connection" : "default pool",
               vial_test_response_body(r, NULL));
        assert_non_null(strstr(vial_test_response_body(r, NULL), "ok"));
        vial_test_response_free(r);
    }
}

static void test_batch_error(void **state) { get_ok("/batch_error"); }
static void test_auto_prepared(void **state) { get_ok("/auto_prepared"); }
static void test_batch_cancel(void **state) { get_ok("/batch_cancel"); }
static void test_batch_behind(void **state) { get_ok("/batch_behind"); }
static void test_query_all_behind(void **state) { get_ok("/query_all_behind"); }

static void test_lone_query_not_delayed(void **state)
{
    double raw = 1e9;
    for (int i = 0; i < 50; i++) {
        double t0 = now_ms();
        PQclear(PQexec(side, "select 1"));
        double el = now_ms() - t0;
        if (el < raw)
            raw = el;
    }
    vial_test_response *r = get("/lone", 200);
    assert_string_equal(vial_test_response_body(r, NULL), "ok");
    double best = atof(vial_test_response_header(r, "X-Best-Us")) / 1000;
    printf("lone query: %.3f ms in vial (best of 50), %.3f ms a blocking PQexec round trip\n", best,
           raw);
    assert_true(best < raw * 3 + 0.3);
    vial_test_response_free(r);
}

static void test_timeout_cancels_on_server(void **state)
{
    for (int one = 0; one < 2; one++) {
        vial_test_response *r = get(one ? "/timeout?one=1" : "/timeout", 200);
        assert_string_equal(vial_test_response_body(r, NULL), "ok");
        const char *el = vial_test_response_header(r, "X-Elapsed");
        double gone = wait_not_active("select pg_sleep(5)", 1000);
        printf("vial_timeout 100 ms around pg_sleep(5)%s: -ETIMEDOUT after %s ms; "
               "gone from pg_stat_activity %.1f ms after the response\n",
               one ? " (1-connection pool)" : "", el ? el : "?", gone);
        assert_true(gone >= 0);
        vial_test_response_free(r);
    }
}

static void test_task_cancel_cancels_on_server(void **state)
{
    get_ok("/task_cancel");
    double gone = wait_not_active("select pg_sleep(5.01)", 1000);
    printf("cancelled task: query gone from pg_stat_activity %.1f ms after the response\n", gone);
    assert_true(gone >= 0);
}

static void test_deadline_over_gather(void **state)
{
    get_ok("/gather_deadline?one=1"); /* 3 pipelined on one connection: retired */
    double gone = wait_not_active("select pg_sleep(5.02)", 1000);
    printf("deadline over 3 pipelined queries: gone %.1f ms after the response\n", gone);
    assert_true(gone >= 0);
    vial_test_response *r = get("/query?one=1", 200); /* the pool replaced it */
    assert_string_equal(vial_test_response_body(r, NULL), "0  ");
    vial_test_response_free(r);

    get_ok("/gather_deadline"); /* 3 side by side */
    gone = wait_not_active("select pg_sleep(5.02)", 1000);
    printf("deadline over 3 side-by-side queries: gone %.1f ms after the response\n", gone);
    assert_true(gone >= 0);
}

static void test_connect_refused(void **state)
{
    double t0 = now_ms();
    vial_test_response *r = get("/query?bad=1", 200);
    const char *body = vial_test_response_body(r, NULL);
    printf("connect to a closed port: \"%s\" in %.1f ms\n", body, now_ms() - t0);
    char want[32];
    snprintf(want, sizeof want, "%d 08001 ", -ECONNREFUSED);
    assert_memory_equal(body, want, strlen(want));
    assert_non_null(strstr(body, "refused"));
    vial_test_response_free(r);
}

/* After our backends are terminated: the first query either succeeds (it
 * was moved to a fresh connection) or fails clearly; the next succeed.
 * query: "" for the shared server's pool, "?priv=1" for the private one. */
static void check_recovery(const char *what, const char *query)
{
    char want_reset[16], target[64];
    snprintf(want_reset, sizeof want_reset, "%d ", -ECONNRESET);
    snprintf(target, sizeof target, "/query%s", query);
    vial_test_response *r = get(target, 200);
    const char *body = vial_test_response_body(r, NULL);
    printf("%s: first query: \"%s\"\n", what, body);
    assert_true(!strcmp(body, "0  ") || !strncmp(body, want_reset, strlen(want_reset)));
    vial_test_response_free(r);
    for (int i = 0; i < 3; i++) {
        r = get(target, 200);
        assert_string_equal(vial_test_response_body(r, NULL), "0  ");
        vial_test_response_free(r);
    }
    snprintf(target, sizeof target, "/stats%s", query);
    r = get(target, 200);
    printf("%s: %s\n", what, vial_test_response_body(r, NULL));
    vial_test_response_free(r);
}

static void test_reconnect_after_terminate(void **state)
{
    get_ok("/simple");
    terminate_ours(NULL);
    /* pg_terminate_backend only signals: wait until they are gone */
    double t0 = now_ms();
    while (strcmp(side_value("select count(*) from pg_stat_activity where application_name = '" APP_NAME "'"), "0")) {
        assert_true(now_ms() - t0 < 5000);
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    check_recovery("after pg_terminate_backend", "");
    get_ok("/simple");
}

static void test_killed_midquery(void **state)
{
    vial_test_response *r = get("/killed_midquery", 200);
    assert_string_equal(vial_test_response_body(r, NULL), "ok");
    printf("backend killed mid-query: %s\n", vial_test_response_header(r, "X-Error"));
    vial_test_response_free(r);
    check_recovery("after a kill mid-query", "");
}

/* Runs tests/services/pg.sh (found from this file's path) with args;
 * returns its first output line in out (may be NULL). */
static int pg_sh(const char *args, char *out, size_t cap)
{
    char script[1024];
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strstr(script, "/tests/unit/");
    if (!slash)
        return -1;
    snprintf(slash, sizeof script - (size_t)(slash - script), "/tests/services/pg.sh");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s", script, args);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[1024] = "";
    if (!fgets(line, sizeof line, f))
        line[0] = 0;
    line[strcspn(line, "\n")] = 0;
    if (out)
        snprintf(out, cap, "%s", line);
    return pclose(f) == 0 ? 0 : -1;
}

/* A real restart (pg_ctl restart -m fast through tests/services/pg.sh) of
 * a private server: the shared one may be in use by other suites. */
static void test_reconnect_after_restart(void **state)
{
    char args[700];
    double t0 = now_ms();
    assert_int_equal(pg_sh("start", priv, sizeof priv), 0);
    printf("private server for the restart test: %s (%.0f ms to start)\n", priv, now_ms() - t0);
    db_priv = vial_pg_open(priv, NULL);
    assert_non_null(db_priv);
    vial_test_response *r = get("/query?priv=1", 200);
    assert_string_equal(vial_test_response_body(r, NULL), "0  ");
    vial_test_response_free(r);
    snprintf(args, sizeof args, "restart '%s'", priv);
    t0 = now_ms();
    int rc = pg_sh(args, NULL, 0);
    printf("pg_ctl restart took %.0f ms\n", now_ms() - t0);
    if (rc == 0)
        check_recovery("after pg_ctl restart", "?priv=1");
    /* while it is down: a clear error, quickly */
    snprintf(args, sizeof args, "stop '%s'", priv);
    priv[0] = 0;
    assert_int_equal(pg_sh(args, NULL, 0), 0);
    t0 = now_ms();
    r = get("/query?priv=1", 200);
    const char *body = vial_test_response_body(r, NULL);
    printf("server stopped: \"%s\" in %.1f ms\n", body, now_ms() - t0);
    char want[32];
    snprintf(want, sizeof want, "%d ", -ECONNREFUSED);
    int refused = !strncmp(body, want, strlen(want));
    snprintf(want, sizeof want, "%d ", -ECONNRESET);
    assert_true(refused || !strncmp(body, want, strlen(want)));
    vial_test_response_free(r);
    assert_int_equal(rc, 0);
}

static void quiet_notice(void *arg, const char *msg) {}

/* --- setup ---------------------------------------------------------------------------------- */

static int setup(void **state)
{
    const char *env = getenv("VIAL_TEST_PG");
    if (!env || !*env) {
        fprintf(stderr, "test_pg: VIAL_TEST_PG is not set. Start a server with\n"
                        "  export VIAL_TEST_PG=$(tests/services/pg.sh start)\n"
                        "(scripts/test.sh does this); this test does not skip.\n");
        return -1;
    }
    snprintf(conninfo, sizeof conninfo, "%s application_name=" APP_NAME, env);
    snprintf(side_conninfo, sizeof side_conninfo, "%s application_name=vial_test_side", env);
    side = PQconnectdb(side_conninfo);
    if (PQstatus(side) != CONNECTION_OK) {
        fprintf(stderr, "test_pg: cannot connect to %s: %s", conninfo, PQerrorMessage(side));
        return -1;
    }
    PQsetNoticeProcessor(side, quiet_notice, NULL);
    side_exec("drop table if exists vial_test_t");
    side_exec("create table vial_test_t (id serial primary key, tag text not null)");

    db = vial_pg_open(conninfo, NULL);
    db_wide = vial_pg_open(conninfo, &(vial_pg_options){.max_conns = 20});
    db_one = vial_pg_open(conninfo, &(vial_pg_options){.max_conns = 1});
    db_three = vial_pg_open(conninfo, &(vial_pg_options){.max_conns = 3});
    db_bad = vial_pg_open("host=127.0.0.1 port=1 user=nobody dbname=none", NULL);
    /* the same server by name: localhost (::1 refused, then 127.0.0.1) */
    char dns[1100];
    const char *ip = strstr(conninfo, "127.0.0.1");
    if (!ip)
        return -1;
    snprintf(dns, sizeof dns, "%.*slocalhost%s", (int)(ip - conninfo), conninfo, ip + 9);
    db_dns = vial_pg_open(dns, NULL);
    /* a TCP listener nobody accepts from: the handshake completes in the
     * kernel, then the server never answers */
    hang_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (hang_fd < 0 || bind(hang_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(hang_fd, 8) < 0 ||
        getsockname(hang_fd, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    char hang[256];
    snprintf(hang, sizeof hang, "host=127.0.0.1 port=%d user=postgres dbname=postgres", ntohs(sa.sin_port));
    db_hang = vial_pg_open(hang, &(vial_pg_options){.connect_timeout_ms = 300});
    db_small = vial_pg_open(conninfo, &(vial_pg_options){.notify_queue_max = 2});
    if (!db || !db_wide || !db_one || !db_bad || !db_dns || !db_hang || !db_small)
        return -1;
    if (vial_pg_open("host=x nonsense_key=1", NULL) != NULL || errno != EINVAL)
        return -1;
    vial_pg_prepare(db, "add", "select $1::int + $2::int");
    vial_pg_prepare(db, "broken", "selec 1");
    vial_pg_prepare(db_one, "add", "select $1::int + $2::int");
    if (vial_pg_prepare(db, "add", "select 2") != -EEXIST || vial_pg_prepare(db, "add", "select $1::int + $2::int") != 0)
        return -1;

    app = vial_app_new();
    vial_route(app, "GET /simple", v_simple);
    vial_route(app, "GET /metrics", v_metrics);
    vial_route(app, "GET /params", v_params);
    vial_route(app, "GET /locale", v_locale);
    vial_route(app, "GET /errors", v_errors);
    vial_route(app, "GET /errors_pipelined", v_errors_pipelined);
    vial_route(app, "GET /prepared", v_prepared);
    vial_route(app, "GET /tx", v_tx);
    vial_route(app, "GET /tx_leave", v_tx_leave);
    vial_route(app, "GET /tx_left_check", v_tx_left_check);
    vial_route(app, "GET /tx_wait", v_tx_wait);
    vial_route(app, "GET /listen", v_listen);
    vial_route(app, "GET /listen_wait", v_listen_wait);
    vial_route(app, "GET /gather_sleep", v_gather_sleep);
    vial_route(app, "GET /pipeline", v_pipeline);
    vial_route(app, "GET /timeout", v_timeout);
    vial_route(app, "GET /task_cancel", v_task_cancel);
    vial_route(app, "GET /gather_deadline", v_gather_deadline);
    vial_route(app, "GET /query", v_query);
    vial_route(app, "GET /killed_midquery", v_killed_midquery);
    vial_route(app, "GET /stats", v_stats);
    vial_route(app, "GET /listen_lost", v_listen_lost);
    vial_route(app, "GET /listen_overflow", v_listen_overflow);
    vial_route(app, "GET /dns", v_dns);
    vial_route(app, "GET /hang", v_hang);
    vial_route(app, "GET /all", v_all);
    vial_route(app, "GET /batch_many", v_batch_many);
    vial_route(app, "GET /batch_error", v_batch_error);
    vial_route(app, "GET /auto_prepared", v_auto_prepared);
    vial_route(app, "GET /lone", v_lone);
    vial_route(app, "GET /batch_cancel", v_batch_cancel);
    vial_route(app, "GET /batch_behind", v_batch_behind);
    vial_route(app, "GET /query_all_behind", v_query_all_behind);
    vial_route(app, "GET /all_timeout", v_all_timeout);
    vial_route_sync(app, "GET /sync", v_sync);
    client = vial_test_client_new(app);
    return client ? 0 : -1;
}

static int teardown(void **state)
{
    vial_test_client_free(client); /* the loop ends: its connections close */
    vial_app_free(app);
    vial_pg_close(db);
    vial_pg_close(db_wide);
    vial_pg_close(db_one);
    vial_pg_close(db_three);
    vial_pg_close(db_bad);
    vial_pg_close(db_dns);
    vial_pg_close(db_hang);
    vial_pg_close(db_small);
    vial_pg_close(db_priv);
    if (priv[0]) { /* a failed assert skipped the test's own stop */
        char args[700];
        snprintf(args, sizeof args, "stop '%s'", priv);
        pg_sh(args, NULL, 0);
    }
    if (hang_fd >= 0)
        close(hang_fd);
    if (side) {
        side_exec("drop table if exists vial_test_t");
        PQfinish(side);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_locale),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_errors_pipelined),
        cmocka_unit_test(test_prepared),
        cmocka_unit_test(test_sync_view),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_listen_notify),
        cmocka_unit_test(test_pipeline_one_batch),
        cmocka_unit_test(test_batch_many),
        cmocka_unit_test(test_batch_error),
        cmocka_unit_test(test_auto_prepared),
        cmocka_unit_test(test_lone_query_not_delayed),
        cmocka_unit_test(test_batch_cancel),
        cmocka_unit_test(test_batch_behind),
        cmocka_unit_test(test_query_all_behind),
        cmocka_unit_test(test_query_all),
        cmocka_unit_test(test_gather_is_concurrent),
        cmocka_unit_test(test_timeout_cancels_on_server),
        cmocka_unit_test(test_task_cancel_cancels_on_server),
        cmocka_unit_test(test_deadline_over_gather),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_reconnect_after_terminate),
        cmocka_unit_test(test_killed_midquery),
        cmocka_unit_test(test_reconnect_after_restart),
        cmocka_unit_test(test_listen_connection_lost),
        cmocka_unit_test(test_dns_connect_on_pool),
        cmocka_unit_test(test_connect_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

#else /* !VIAL_HAVE_PG */

int main(void)
{
    fprintf(stderr, "test_pg: vial was built without libpq (install libpq-dev: scripts/deps.sh)\n");
    return 1;
}

#endif
