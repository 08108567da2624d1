/* The SQLite client (src/clients/sqlite.c) through the in-process test
 * client: async views (statements on the worker pool, awaited), sync views
 * (run in place), parameters and types, NULL, errors with SQLite's codes,
 * transactions, cancellation and timeouts that interrupt a running
 * statement, and several clients hammering one database file at once. The
 * database lives in a temporary directory removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>
#include <vial/sqlite.h>

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dir[64], path[128];
static vial_sqlite *db;
static vial_app *app;
static vial_test_client *client;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* sleep_ms(n): a statement that takes n ms without using the CPU, to show
 * statements of one request running in parallel on the pool. Registered
 * for every connection the process opens (sqlite3_auto_extension). */
static void sleep_ms_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    usleep((useconds_t)sqlite3_value_int(argv[0]) * 1000);
    sqlite3_result_int(ctx, sqlite3_value_int(argv[0]));
}

static int register_sleep(sqlite3 *h, char **err, const void *api)
{
    return sqlite3_create_function(h, "sleep_ms", 1, SQLITE_UTF8, NULL, sleep_ms_fn, NULL, NULL);
}

/* A statement that runs for minutes on the CPU unless interrupted. */
#define ENDLESS "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) " \
                "SELECT count(*) FROM c"

/* --- views ------------------------------------------------------------------------------------ */

static int v_select(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    const char *p[] = {vial_req_arg(rq, "min")};
    int rc = vial_sqlite_query(rq, db, &r, "SELECT id, name FROM people WHERE id >= ? ORDER BY id", 1, p);
    if (rc < 0)
        return vial_text(rs, 500, "rc=%d %s", rc, vial_sqlite_error(rq));
    vial_res_set_status(rs, 200);
    char line[128];
    snprintf(line, sizeof line, "%s,%s:", vial_sqlite_colname(r, 0), vial_sqlite_colname(r, 1));
    vial_res_append_body(rs, line, strlen(line));
    for (size_t i = 0; i < vial_sqlite_nrows(r); i++) {
        snprintf(line, sizeof line, " %lld=%s", (long long)vial_sqlite_int64(r, i, 0), vial_sqlite_text(r, i, 1));
        vial_res_append_body(rs, line, strlen(line));
    }
    return 0;
}

static int v_types(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    const unsigned char blob[] = {0, 1, 2, 255};
    vial_sqlite_arg a[] = {vial_sql_int(INT64_C(4611686018427387904)), vial_sql_double(2.5),
                           vial_sql_text("héllo"), vial_sql_blob(blob, sizeof blob), vial_sql_null()};
    int rc = vial_sqlite_query_args(rq, db, &r, "SELECT ? AS i, ? AS d, ? AS t, ? AS b, ? AS n, '42abc' AS s",
                                    5, a);
    if (rc < 0)
        return vial_text(rs, 500, "rc=%d %s", rc, vial_sqlite_error(rq));
    size_t blen = 0;
    const unsigned char *b = vial_sqlite_blob(r, 0, 3, &blen);
    return vial_text(rs, 200,
                     "cols=%d rows=%zu types=%d%d%d%d%d i=%lld itext=%s d=%g dtext=%s t=%s tlen=%zu "
                     "b=%zu:%u,%u n=%d/%s s=%lld/%s idx=%d/%d oob=%d/%s",
                     vial_sqlite_ncols(r), vial_sqlite_nrows(r), vial_sqlite_type(r, 0, 0),
                     vial_sqlite_type(r, 0, 1), vial_sqlite_type(r, 0, 2), vial_sqlite_type(r, 0, 3),
                     vial_sqlite_type(r, 0, 4), (long long)vial_sqlite_int64(r, 0, 0),
                     vial_sqlite_text(r, 0, 0), vial_sqlite_double(r, 0, 1), vial_sqlite_text(r, 0, 1),
                     vial_sqlite_text(r, 0, 2), vial_sqlite_len(r, 0, 2), blen, b[0], b[3],
                     vial_sqlite_is_null(r, 0, 4), vial_sqlite_text(r, 0, 4) ? "text" : "NULL",
                     (long long)vial_sqlite_int64(r, 0, 5), vial_sqlite_text(r, 0, 5),
                     vial_sqlite_colindex(r, "T"), vial_sqlite_colindex(r, "zz"),
                     vial_sqlite_type(r, 1, 0), vial_sqlite_text(r, 0, 9) ? "x" : "NULL");
}

static int v_null_param(vial_req *rq, vial_res *rs)
{
    const char *p[] = {"nobody", NULL};
    int ch = vial_sqlite_exec(rq, db, "INSERT INTO people(name, email) VALUES (?, ?)", 2, p);
    vial_sqlite_result *r;
    int rc = vial_sqlite_query(rq, db, &r, "SELECT email IS NULL, typeof(email) FROM people WHERE name = 'nobody'",
                               0, NULL);
    if (rc < 0)
        return vial_text(rs, 500, "rc=%d %s", rc, vial_sqlite_error(rq));
    return vial_text(rs, 200, "changes=%d null=%lld type=%s", ch, (long long)vial_sqlite_int64(r, 0, 0),
                     vial_sqlite_text(r, 0, 1));
}

static int v_insert(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    const char *p[] = {vial_req_arg(rq, "name"), vial_req_arg(rq, "email")};
    int rc = vial_sqlite_query(rq, db, &r, "INSERT INTO people(name, email) VALUES (?, ?)", 2, p);
    if (rc < 0)
        return vial_text(rs, 200, "rc=%d code=%d msg=%s", rc, vial_sqlite_errcode(rq), vial_sqlite_error(rq));
    vial_sqlite_result *r2;
    rc = vial_sqlite_query(rq, db, &r2, "SELECT count(*) FROM people", 0, NULL);
    return vial_text(rs, 200, "rowid=%lld changes=%lld rows=%zu ro_changes=%lld", (long long)vial_sqlite_last_insert_rowid(r),
                     (long long)vial_sqlite_changes(r), vial_sqlite_nrows(r), (long long)vial_sqlite_changes(r2));
}

static int v_errors(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    char out[2048];
    size_t n = 0;
    int rc = vial_sqlite_query(rq, db, &r, "SELEC 1", 0, NULL);
    n += (size_t)snprintf(out + n, sizeof out - n, "syntax rc=%d code=%d null=%d msg=%s\n", rc,
                          vial_sqlite_errcode(rq), r == NULL, vial_sqlite_error(rq));
    rc = vial_sqlite_query(rq, db, &r, "SELECT * FROM nowhere", 0, NULL);
    n += (size_t)snprintf(out + n, sizeof out - n, "table rc=%d code=%d msg=%s\n", rc, vial_sqlite_errcode(rq),
                          vial_sqlite_error(rq));
    const char *p[] = {"1"};
    rc = vial_sqlite_query(rq, db, &r, "SELECT ?, ?", 1, p);
    n += (size_t)snprintf(out + n, sizeof out - n, "params rc=%d code=%d msg=%s\n", rc, vial_sqlite_errcode(rq),
                          vial_sqlite_error(rq));
    rc = vial_sqlite_exec(rq, db, "INSERT INTO people(name) VALUES (NULL)", 0, NULL);
    n += (size_t)snprintf(out + n, sizeof out - n, "notnull rc=%d code=%d\n", rc, vial_sqlite_errcode(rq));
    rc = vial_sqlite_query(rq, db, &r, "SELECT 1; SELECT 2", 0, NULL);
    n += (size_t)snprintf(out + n, sizeof out - n, "multi rc=%d\n", rc);
    /* after all that, the connections still work */
    rc = vial_sqlite_query(rq, db, &r, "SELECT 7", 0, NULL);
    n += (size_t)snprintf(out + n, sizeof out - n, "ok rc=%d v=%lld\n", rc, (long long)vial_sqlite_int64(r, 0, 0));
    return vial_text(rs, 200, "%s", out);
}

struct tx_arg {
    const char *name;
    int fail;
    int inserted;
};

static int tx_body(vial_sqlite_conn *c, void *arg)
{
    struct tx_arg *a = arg;
    const char *p1[] = {a->name, a->name}; /* the name doubles as a unique email */
    int rc = vial_sqlite_conn_exec(c, "INSERT INTO accounts(name, email) VALUES (?, ?)", 2, p1);
    if (rc < 0)
        return rc;
    a->inserted += rc;
    vial_sqlite_result *r;
    rc = vial_sqlite_conn_query(c, &r, "SELECT count(*) FROM accounts WHERE name = ?", 1, &a->name);
    if (rc < 0)
        return rc;
    if (vial_sqlite_int64(r, 0, 0) != 1)
        return -EPROTO; /* our own insert must be visible inside the transaction */
    if (a->fail == 1)
        return -EAGAIN; /* the callback gives up: rollback */
    if (a->fail == 2) { /* the same email twice: UNIQUE fails, rollback */
        const char *p2[] = {"other", a->name};
        return vial_sqlite_conn_exec(c, "INSERT INTO accounts(name, email) VALUES (?, ?)", 2, p2);
    }
    return 0;
}

static int count_accounts(vial_req *rq, const char *name)
{
    vial_sqlite_result *r;
    const char *p[] = {name};
    if (vial_sqlite_query(rq, db, &r, "SELECT count(*) FROM accounts WHERE name = ?", 1, p) < 0)
        return -1;
    return (int)vial_sqlite_int64(r, 0, 0);
}

static int v_tx(vial_req *rq, vial_res *rs)
{
    struct tx_arg ok = {"alice", 0, 0}, give_up = {"bob", 1, 0}, unique = {"carol", 2, 0};
    int r1 = vial_sqlite_transaction(rq, db, tx_body, &ok);
    int r2 = vial_sqlite_transaction(rq, db, tx_body, &give_up);
    int r3 = vial_sqlite_transaction(rq, db, tx_body, &unique);
    int code3 = vial_sqlite_errcode(rq);
    return vial_text(rs, 200, "ok=%d/%d/%d giveup=%d/%d unique=%d/%d/code=%d", r1, ok.inserted,
                     count_accounts(rq, "alice"), r2, count_accounts(rq, "bob"), r3,
                     count_accounts(rq, "carol") + count_accounts(rq, "other"), code3);
}

static int with_body(vial_sqlite_conn *c, void *arg)
{
    vial_sqlite_result **out = arg;
    /* a result made on the worker, read by the view after: request memory */
    return vial_sqlite_conn_query(c, out, "SELECT name FROM people ORDER BY id LIMIT 1", 0, NULL);
}

static int v_with(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r = NULL;
    int rc = vial_sqlite_with(rq, db, with_body, &r);
    return vial_text(rs, 200, "rc=%d first=%s", rc, r ? vial_sqlite_text(r, 0, 0) : "-");
}

static unsigned long long parallel_ms;

static int sleep_task(vial_req *rq, void *arg)
{
    vial_sqlite_result *r;
    int rc = vial_sqlite_query(rq, db, &r, "SELECT sleep_ms(100)", 0, NULL);
    return rc < 0 ? rc : (int)vial_sqlite_int64(r, 0, 0);
}

static int ticker(vial_req *rq, void *arg)
{
    int *ticks = arg;
    /* the loop stays free while the pool works: this task keeps running */
    for (int i = 0; i < 5; i++)
        if (vial_sleep(rq, 10) == 0)
            (*ticks)++;
    return 0;
}

static int v_parallel(vial_req *rq, vial_res *rs)
{
    enum { N = 4 }; /* the test client's pool has 4 workers */
    vial_task *t[N + 1];
    int ticks = 0;
    uint64_t t0 = vial_now_ms();
    for (int i = 0; i < N; i++)
        t[i] = vial_spawn(rq, sleep_task, NULL);
    t[N] = vial_spawn(rq, ticker, &ticks);
    int rc = vial_gather(rq, t, N + 1, 0);
    parallel_ms = vial_now_ms() - t0;
    int sum = 0;
    for (int i = 0; i < N; i++)
        sum += vial_task_result(t[i]);
    return vial_text(rs, 200, "rc=%d sum=%d ticks=%d ms=%llu", rc, sum, ticks, parallel_ms);
}

static int endless_task(vial_req *rq, void *arg)
{
    vial_sqlite_result *r;
    return vial_sqlite_query(rq, db, &r, ENDLESS, 0, NULL);
}

static int v_cancel(vial_req *rq, vial_res *rs)
{
    uint64_t t0 = vial_now_ms();
    vial_task *t = vial_spawn(rq, endless_task, NULL);
    vial_sleep(rq, 100);
    vial_task_cancel(t);
    int rc = vial_join(rq, t);
    uint64_t ms = vial_now_ms() - t0;
    /* the interrupted connection went back to the pool and works */
    vial_sqlite_result *r;
    int rc2 = vial_sqlite_query(rq, db, &r, "SELECT 1", 0, NULL);
    return vial_text(rs, 200, "rc=%d ms=%llu after=%d", rc, (unsigned long long)ms, rc2);
}

static int v_timeout(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    vial_timeout t;
    uint64_t t0 = vial_now_ms();
    vial_timeout_begin(rq, &t, 150);
    int rc = vial_sqlite_query(rq, db, &r, ENDLESS, 0, NULL);
    vial_timeout_end(rq, &t);
    return vial_text(rs, 200, "rc=%d ms=%llu msg=%s", rc, (unsigned long long)(vial_now_ms() - t0),
                     vial_sqlite_error(rq));
}

static int v_sync(vial_req *rq, vial_res *rs)
{
    /* a sync view: already on a worker, the statement runs right here */
    vial_sqlite_result *r;
    const char *p[] = {"2"};
    int rc = vial_sqlite_query(rq, db, &r, "SELECT name FROM people WHERE id = ?", 1, p);
    if (rc < 0)
        return vial_text(rs, 500, "rc=%d %s", rc, vial_sqlite_error(rq));
    struct tx_arg a = {"dave", 0, 0};
    int rtx = vial_sqlite_transaction(rq, db, tx_body, &a);
    int bad = vial_sqlite_exec(rq, db, "UPDATE nowhere SET x = 1", 0, NULL);
    return vial_text(rs, 200, "sync name=%s tx=%d bad=%d code=%d", vial_sqlite_text(r, 0, 0), rtx, bad,
                     vial_sqlite_errcode(rq));
}

static int v_many_rows(vial_req *rq, vial_res *rs)
{
    vial_sqlite_result *r;
    int rc = vial_sqlite_query(rq, db, &r,
                               "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) "
                               "SELECT x, printf('row %d', x) FROM c",
                               0, NULL);
    if (rc < 0)
        return vial_text(rs, 500, "rc=%d", rc);
    long long sum = 0;
    for (size_t i = 0; i < vial_sqlite_nrows(r); i++)
        sum += vial_sqlite_int64(r, i, 0);
    return vial_text(rs, 200, "rows=%zu sum=%lld last=%s", vial_sqlite_nrows(r), sum,
                     vial_sqlite_text(r, vial_sqlite_nrows(r) - 1, 1));
}

static int v_counter(vial_req *rq, vial_res *rs)
{
    /* concurrent writers on one file: WAL + busy timeout serialise them */
    int rc = vial_sqlite_exec(rq, db, "UPDATE counter SET n = n + 1 WHERE id = 1", 0, NULL);
    vial_sqlite_result *r;
    int rc2 = vial_sqlite_query(rq, db, &r, "SELECT n FROM counter WHERE id = 1", 0, NULL);
    if (rc != 1 || rc2 < 0)
        return vial_text(rs, 500, "rc=%d rc2=%d %s", rc, rc2, vial_sqlite_error(rq));
    return vial_text(rs, 200, "%lld", (long long)vial_sqlite_int64(r, 0, 0));
}

/* --- tests --------------------------------------------------------------------------------------- */

static const char *get_body(const char *target)
{
    static char out[4096];
    vial_test_response *r = vial_test_client_get(client, target);
    assert_non_null(r);
    snprintf(out, sizeof out, "%s", vial_test_response_body(r, NULL));
    if (vial_test_response_status(r) != 200)
        print_message("%s -> %d %s\n", target, vial_test_response_status(r), out);
    assert_int_equal(vial_test_response_status(r), 200);
    vial_test_response_free(r);
    return out;
}

static void test_select_params(void **state)
{
    assert_string_equal(get_body("/select?min=2"), "id,name: 2=bea 3=cem");
    assert_string_equal(get_body("/select?min=99"), "id,name:");
}

static void test_types(void **state)
{
    assert_string_equal(get_body("/types"),
                        "cols=6 rows=1 types=12345 i=4611686018427387904 itext=4611686018427387904 d=2.5 "
                        "dtext=2.5 t=héllo tlen=6 b=4:0,255 n=1/NULL s=42/42abc idx=2/-1 oob=5/NULL");
}

static void test_null_param(void **state)
{
    assert_string_equal(get_body("/null_param"), "changes=1 null=1 type=null");
}

static void test_insert_rowid_changes(void **state)
{
    const char *b = get_body("/insert?name=eve&email=eve@example.com");
    long long rowid = 0, changes = 0, ro = -1;
    size_t rows = 9;
    assert_int_equal(sscanf(b, "rowid=%lld changes=%lld rows=%zu ro_changes=%lld", &rowid, &changes, &rows, &ro), 4);
    assert_true(rowid > 3);
    assert_int_equal(changes, 1);
    assert_int_equal(rows, 0);
    assert_int_equal(ro, 0); /* a SELECT changes nothing, whatever ran before */
    /* the same email again: UNIQUE constraint, extended code 2067 */
    b = get_body("/insert?name=eve2&email=eve@example.com");
    assert_non_null(strstr(b, "rc=-22 code=2067 msg=UNIQUE constraint failed: people.email"));
}

static void test_errors(void **state)
{
    const char *b = get_body("/errors");
    assert_non_null(strstr(b, "syntax rc=-22 code=1 null=1 msg=near \"SELEC\": syntax error"));
    assert_non_null(strstr(b, "in \"SELEC 1\""));
    assert_non_null(strstr(b, "table rc=-22 code=1 msg=no such table: nowhere"));
    assert_non_null(strstr(b, "params rc=-22 code=25 msg=statement has 2 parameters, 1 given"));
    assert_non_null(strstr(b, "notnull rc=-22 code=1299")); /* SQLITE_CONSTRAINT_NOTNULL */
    assert_non_null(strstr(b, "multi rc=-22"));
    assert_non_null(strstr(b, "ok rc=0 v=7"));
}

static void test_transactions(void **state)
{
    assert_string_equal(get_body("/tx"), "ok=0/1/1 giveup=-11/0 unique=-22/0/code=2067");
}

static void test_with_conn(void **state)
{
    assert_string_equal(get_body("/with"), "rc=0 first=ada");
}

static void test_parallel_on_pool(void **state)
{
    const char *b = get_body("/parallel");
    int rc = -1, sum = 0, ticks = 0;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d sum=%d ticks=%d ms=%llu", &rc, &sum, &ticks, &ms), 4);
    assert_int_equal(rc, 0);
    assert_int_equal(sum, 400);
    assert_int_equal(ticks, 5);
    print_message("4 statements of 100 ms each, gathered: %llu ms\n", ms);
    assert_true(ms >= 100 && ms < 300); /* serial would be 400 */
}

static void test_cancel_interrupts(void **state)
{
    const char *b = get_body("/cancel");
    int rc = 0, after = -1;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d ms=%llu after=%d", &rc, &ms, &after), 3);
    assert_int_equal(rc, -ECANCELED);
    assert_true(ms < 1000);
    assert_int_equal(after, 0);
}

static void test_timeout_interrupts(void **state)
{
    const char *b = get_body("/timeout");
    int rc = 0;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d ms=%llu", &rc, &ms), 2);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(ms >= 100 && ms < 1000);
    assert_non_null(strstr(b, "interrupted"));
}

static void test_sync_view(void **state)
{
    assert_string_equal(get_body("/sync"), "sync name=bea tx=0 bad=-22 code=1");
}

static void test_many_rows(void **state)
{
    assert_string_equal(get_body("/many"), "rows=10000 sum=50005000 last=row 10000");
}

/* Several clients (each its own loop thread and pool) on one file at once. */
static void *hammer(void *arg)
{
    vial_test_client *c = vial_test_client_new(app);
    int *ok = arg;
    for (int i = 0; i < 25; i++) {
        vial_test_response *r = vial_test_client_get(c, "/counter");
        if (r && vial_test_response_status(r) == 200)
            (*ok)++;
        else if (r)
            fprintf(stderr, "counter: %s\n", vial_test_response_body(r, NULL));
        vial_test_response_free(r);
    }
    vial_test_client_free(c);
    return NULL;
}

static void test_concurrent_requests(void **state)
{
    enum { T = 4 };
    pthread_t th[T];
    int ok[T] = {0};
    uint64_t t0 = now_ms();
    for (int i = 0; i < T; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &ok[i]), 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    int total = 0;
    for (int i = 0; i < T; i++)
        total += ok[i];
    assert_int_equal(total, T * 25);
    /* every increment landed exactly once */
    assert_string_equal(get_body("/counter"), "101");
    print_message("%d concurrent read-write requests from %d threads: %llu ms\n", T * 25, T,
                  (unsigned long long)(now_ms() - t0));
}

static void test_open_errors(void **state)
{
    errno = 0;
    assert_null(vial_sqlite_open("/nonexistent-dir-vial/x.db", NULL));
    assert_int_not_equal(errno, 0);
    char p[160];
    snprintf(p, sizeof p, "%s/missing.db", dir);
    assert_null(vial_sqlite_open(p, &(vial_sqlite_options){.flags = VIAL_SQLITE_NOCREATE}));
    snprintf(p, sizeof p, "%s/not-a-db", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("this is not a database file, not even close; it is longer than a header though......"
          "................................................................................",
          f);
    fclose(f);
    assert_null(vial_sqlite_open(p, NULL));
    unlink(p);
}

static int wal_fn(vial_sqlite_conn *c, void *arg)
{
    vial_sqlite_result *r;
    int rc = vial_sqlite_conn_query(c, &r, "PRAGMA journal_mode", 0, NULL);
    if (rc == 0)
        snprintf(arg, 16, "%s", vial_sqlite_text(r, 0, 0));
    return rc;
}

static void test_wal_and_memory(void **state)
{
    char mode[16] = "";
    assert_int_equal(vial_sqlite_run(db, wal_fn, mode), 0);
    assert_string_equal(mode, "wal");
    /* options: a read-only second handle on the same file */
    vial_sqlite *ro = vial_sqlite_open(path, &(vial_sqlite_options){.flags = VIAL_SQLITE_READONLY,
                                                                     .busy_timeout_ms = 100,
                                                                     .max_connections = 2});
    assert_non_null(ro);
    char err0[256] = "";
    assert_true(vial_sqlite_script(ro, "CREATE TABLE ro_t(x)", err0, sizeof err0) < 0);
    assert_non_null(strstr(err0, "readonly"));
    vial_sqlite_close(ro);
    vial_sqlite *m = vial_sqlite_open(":memory:", NULL);
    assert_non_null(m);
    char err[256] = "";
    assert_int_equal(vial_sqlite_script(m, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);", err, sizeof err), 2);
    assert_true(vial_sqlite_script(m, "INSERT INTO nope VALUES (1)", err, sizeof err) < 0);
    assert_non_null(strstr(err, "no such table: nope"));
    vial_sqlite_close(m);
}

static int setup(void **state)
{
    sqlite3_auto_extension((void (*)(void))register_sleep);
    snprintf(dir, sizeof dir, "/tmp/vial-sqlite-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/test.db", dir);
    db = vial_sqlite_open(path, NULL);
    if (!db)
        return -1;
    char err[256];
    if (vial_sqlite_script(db,
                           "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE);"
                           "INSERT INTO people(name, email) VALUES ('ada', 'ada@example.com'), "
                           "('bea', 'bea@example.com'), ('cem', NULL);"
                           "CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT, email TEXT UNIQUE);"
                           "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER);"
                           "INSERT INTO counter VALUES (1, 0);",
                           err, sizeof err) < 0) {
        fprintf(stderr, "schema: %s\n", err);
        return -1;
    }
    app = vial_app_new();
    vial_route(app, "GET /select", v_select);
    vial_route(app, "GET /types", v_types);
    vial_route(app, "GET /null_param", v_null_param);
    vial_route(app, "GET /insert", v_insert);
    vial_route(app, "GET /errors", v_errors);
    vial_route(app, "GET /tx", v_tx);
    vial_route(app, "GET /with", v_with);
    vial_route(app, "GET /parallel", v_parallel);
    vial_route(app, "GET /cancel", v_cancel);
    vial_route(app, "GET /timeout", v_timeout);
    vial_route_sync(app, "GET /sync", v_sync);
    vial_route(app, "GET /many", v_many_rows);
    vial_route(app, "GET /counter", v_counter);
    client = vial_test_client_new(app);
    return client ? 0 : -1;
}

static int teardown(void **state)
{
    vial_test_client_free(client);
    vial_app_free(app);
    vial_sqlite_close(db);
    char p[160];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
    sqlite3_reset_auto_extension();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_params),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_null_param),
        cmocka_unit_test(test_insert_rowid_changes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_with_conn),
        cmocka_unit_test(test_parallel_on_pool),
        cmocka_unit_test(test_cancel_interrupts),
        cmocka_unit_test(test_timeout_interrupts),
        cmocka_unit_test(test_sync_view),
        cmocka_unit_test(test_many_rows),
        cmocka_unit_test(test_concurrent_requests),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_wal_and_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
