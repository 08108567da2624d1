/* vial/pg.h — an awaitable PostgreSQL client (libpq, non-blocking, pipelined).
 *
 *   static vial_pg *db;     (vial_pg_open at startup, shared by every thread)
 *
 *   static int user(vial_req *rq, vial_res *rs)
 *   {
 *       const char *p[1] = {vial_req_param(rq, "id")};
 *       vial_pg_result *r;
 *       int e = vial_pg_query(rq, db, &r, "select name from users where id = $1", 1, p);
 *       if (e == -ECONNRESET || e == -ECONNREFUSED)
 *           return vial_abort(rs, 503);
 *       if (e < 0)
 *           return vial_fail(rs, vial_pg_errmsg(r));
 *       if (vial_pg_ntuples(r) == 0)
 *           return vial_abort(rs, 404);
 *       return vial_text(rs, 200, "%s\n", vial_pg_getvalue(r, 0, 0));
 *   }
 *
 * Available when vial was built with libpq (VIAL_HAVE_PG is defined).
 *
 * Model. Every loop thread keeps its own small pool of connections per
 * vial_pg, opened lazily on first use; no lock is taken to run a query.
 * Queries are awaits: the calling coroutine parks until its result arrives,
 * and the loop serves other requests meanwhile. Connections run in libpq's
 * pipeline mode: every query issued on a thread during one turn of its loop
 * (the tasks of a vial_gather, other requests' queries) is written in one
 * batch per connection, one Sync per batch, one write, so N concurrent
 * queries cost one round trip, not N; a lone query is written at once (at
 * the end of the loop turn, no timer). A new query joins a batch forming on
 * a connection (fewer than 8 queued, nothing in flight), else goes to an
 * idle connection, else to a new connection while the pool is below
 * max_conns, else queues on the least busy connection (the statements of
 * one vial_pg_query_all that queue there stay together, so the call waits
 * for one batch). A connection has one
 * batch in flight at a time: what queues meanwhile is written as the next
 * batch when its results are in, so under load batches grow with the load.
 *
 * Errors stay each query's own. The reads of a batch share one implicit
 * transaction; when one fails, the server aborts the others up to the Sync,
 * and vial sends them again in the next batch: only the failing query sees
 * an error. Writes (anything but SELECT / VALUES / TABLE / SHOW without FOR
 * UPDATE/SHARE) are their own transaction (a Sync before and after), as if
 * sent alone. See docs/guide/postgres.md.
 *
 * Prepared automatically. vial_pg_query's SQL text is prepared on each
 * connection the first time it runs there (the Parse is pipelined with that
 * execution) and reused afterwards: up to 256 texts per connection, the
 * rest run unnamed. Put values in parameters, not in the text.
 *
 * Async code only. Every function taking a vial_req awaits and must be called
 * from an async view, hook or task; from a sync function it returns -EPERM.
 *
 * Errors are negative errno values, or VIAL_PG_ESQL:
 *   VIAL_PG_ESQL   the server reported an error: vial_pg_sqlstate(r) gives the
 *                  SQLSTATE ("42P01", "23505"...), vial_pg_errmsg(r) the message;
 *   -ECONNRESET    the connection broke (server restart, backend terminated)
 *                  while the query was on it: it may or may not have run.
 *                  Broken connections are replaced on next use; a query that
 *                  was not yet sent when its connection broke is retried on a
 *                  fresh one transparently. Answer 503 and let the client retry;
 *   -ECONNREFUSED  no connection could be made (server down, authentication,
 *                  too many clients...): the message says why;
 *   -ETIMEDOUT     the request's deadline or a vial_timeout scope expired;
 *   -ECANCELED     the request was cancelled (client gone).
 *                  In both cases a query already running is cancelled ON THE
 *                  SERVER (PQcancel, sent from the worker pool because it
 *                  blocks) and its result discarded; the connection stays in
 *                  use. Exception: a query with other tasks' queries pipelined
 *                  behind it on the same connection is left to finish (a
 *                  cancel would hit whichever is running) and its result is
 *                  dropped;
 *   -EINVAL        bad arguments (unknown statement name, nparams < 0...);
 *   -ENOMEM, -EPERM (not async code), -ENOSPC (too many vial_pg modules).
 * On every error but -EINVAL, -EPERM and -ENOMEM, *out (when out is not NULL)
 * receives a result describing it: vial_pg_errmsg gives a message,
 * vial_pg_sqlstate the server's SQLSTATE or a client-assigned one ("08006"
 * connection lost, "08001" could not connect, "57014" cancelled/timed out).
 *
 * Memory. Results belong to the request: they are freed when it ends
 * (vial_pg_result_free frees one earlier, which matters in long loops such
 * as a streamed response). Strings returned by the accessors live as long as
 * their result. A successful result is held in one compact block (its text
 * values and column names), not as libpq's PGresult. */
#ifndef VIAL_PG_H
#define VIAL_PG_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "vial.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* The server reported an error (see vial_pg_sqlstate). */
#define VIAL_PG_ESQL (-103001)

typedef struct vial_pg vial_pg;
typedef struct vial_pg_result vial_pg_result;
typedef struct vial_pg_tx vial_pg_tx;
typedef struct vial_pg_listener vial_pg_listener;

/* --- the database handle ------------------------------------------------------ */

typedef struct vial_pg_options {
    /* Connections per loop thread (the LISTEN connection not counted).
     * 0: 10. The server must allow threads x max_conns (+1 per thread that
     * listens): PostgreSQL's default max_connections is 100. When a connect
     * fails while others are open (e.g. "too many clients"), queries fall
     * back to pipelining on the open ones and the pool stops growing for a
     * second. */
    unsigned max_conns;
    /* Time allowed to establish a connection, ms. 0: 5000. */
    unsigned connect_timeout_ms;
    /* Notifications a listener buffers before it drops (and reports,
     * -ENOBUFS) the overflow. 0: 1024. */
    unsigned notify_queue_max;
} vial_pg_options;

/* Opens a handle for the database described by conninfo (libpq's
 * "host=... port=... dbname=..." or "postgresql://..." syntax). Nothing is
 * connected yet: every loop thread opens its connections on first use.
 * opts may be NULL (defaults). Thread-safe to use from every loop thread.
 * Returns NULL with errno EINVAL (malformed conninfo; libpq's reason is
 * printed to stderr) or ENOMEM. */
vial_pg *vial_pg_open(const char *conninfo, const vial_pg_options *opts);

/* Closes the handle. Connections still held by loop threads are closed
 * when those loops end (vial_run returning, vial_test_client_free); the
 * handle's memory lives until then. No query may use it afterwards. NULL is
 * ignored. */
void vial_pg_close(vial_pg *db);

/* The message of this request's most recent failed vial_pg_* call (the
 * server's error, e.g. "ERROR 23505: duplicate key value ...", or the
 * connection's), or NULL if none failed. Read it right after the failing
 * call returns: no other task of the request runs in between. Lives in the
 * request's memory. The code the call returned is named by vial_strerror. */
const char *vial_pg_error(vial_req *rq);

/* --- queries ---------------------------------------------------------------------- */

/* Runs one SQL statement with parameters $1..$n (text format: params[i] is
 * the value as text, NULL for SQL NULL; the server infers the types) and
 * awaits its result. One statement per call (several separated by ';' are an
 * error in the extended protocol: 42601). out may be NULL when the rows are
 * not wanted. Returns 0 with *out set, or a negative error (see above).
 * params must stay valid until the call returns (they may be on the stack).
 * Write numbers with vial_sprintf (C locale: "3.25" always), not snprintf,
 * which follows the application's setlocale ("3,25" is not a float8). */
int vial_pg_query(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *sql, int nparams,
                  const char *const *params);

/* Declares a prepared statement: name -> sql. Each connection prepares it
 * lazily, the first time vial_pg_exec_prepared runs it there (the Parse is
 * pipelined with that first execution: no extra round trip). Call at
 * startup or at any time (thread-safe); the name is used as the server-side
 * statement name. Returns 0, -EEXIST (name declared with another sql),
 * -ENOSPC (more than 64 statements), -EINVAL, -ENOMEM. */
int vial_pg_prepare(vial_pg *db, const char *name, const char *sql);

/* Executes a statement declared with vial_pg_prepare. Same contract as
 * vial_pg_query; -EINVAL when the name is unknown. If preparing it fails
 * (a syntax error...), that error is what is reported. */
int vial_pg_exec_prepared(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *name,
                          int nparams, const char *const *params);

/* Starts vial_pg_query / vial_pg_exec_prepared as a child task (vial_spawn)
 * for vial_gather / vial_join; sql, name and params are copied into the
 * request, so they need not outlive the call. *out is written when the task
 * ends; vial_task_result gives the error code. NULL when out of memory or
 * not in async code. */
vial_task *vial_pg_spawn_query(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *sql,
                               int nparams, const char *const *params);
vial_task *vial_pg_spawn_prepared(vial_req *rq, vial_pg *db, vial_pg_result **out,
                                  const char *name, int nparams, const char *const *params);

/* Runs n independent statements concurrently from the calling coroutine,
 * without a task each (a task costs a coroutine and its stack; this costs
 * nothing per statement beyond the statement): they are queued together,
 * spread over the thread's connections and pipelined exactly as n
 * vial_pg_query tasks in a vial_gather would be, and each acts as its own
 * implicit transaction (see "Errors stay each query's own"). Every item gets its own result and error (the
 * contract of vial_pg_query: result may be NULL only for -EINVAL, -ENOMEM).
 * Returns 0 when all succeeded, else the error of the first failed item in
 * array order. A cancelled or timed-out call abandons (and cancels on the
 * server, as vial_pg_query does) what is still running; those items get
 * -ECANCELED / -ETIMEDOUT. params must stay valid until it returns. */
typedef struct vial_pg_stmt {
    const char *sql;           /* SQL text, or a vial_pg_prepare name if prepared */
    int prepared;
    int nparams;
    const char *const *params;
    vial_pg_result *result;    /* out */
    int error;                 /* out */
} vial_pg_stmt;
int vial_pg_query_all(vial_req *rq, vial_pg *db, vial_pg_stmt *stmts, size_t n);

/* --- results ------------------------------------------------------------------------
 * Rows and columns count from 0. Every accessor accepts NULL (no result)
 * and out-of-range positions, answering 0 / NULL / -EINVAL. */

/* Frees a result now rather than when the request ends. NULL is ignored. */
void vial_pg_result_free(vial_pg_result *r);

/* 0 for a successful result, else the negative error it describes. */
int vial_pg_result_error(const vial_pg_result *r);

int vial_pg_ntuples(const vial_pg_result *r);
int vial_pg_nfields(const vial_pg_result *r);
/* Column name, or NULL. */
const char *vial_pg_fname(const vial_pg_result *r, int col);
/* Column number of a name (libpq rules: case-folded unless double-quoted),
 * or -1. */
int vial_pg_fnumber(const vial_pg_result *r, const char *name);
/* The column's type OID (23 int4, 20 int8, 25 text, 16 bool, 701 float8...),
 * 0 when out of range. */
unsigned vial_pg_ftype(const vial_pg_result *r, int col);

/* The value as text (NUL-terminated), or NULL when it is SQL NULL (or out of
 * range). Unlike libpq's PQgetvalue, NULL and '' are distinguishable. */
const char *vial_pg_getvalue(const vial_pg_result *r, int row, int col);
/* Its length in bytes (0 for NULL). */
size_t vial_pg_getlength(const vial_pg_result *r, int row, int col);
/* 1 when the value is SQL NULL, 0 when not, -EINVAL when out of range. */
int vial_pg_isnull(const vial_pg_result *r, int row, int col);

/* Typed access. Each returns 0 with *out set; -ENOENT for SQL NULL (*out
 * untouched); -EINVAL when out of range or the text is not of that type;
 * -ERANGE when it does not fit.
 * getint: int2/int4/int8/oid (decimal text); getdouble: float4/float8/
 * numeric (also "NaN", "Infinity", "-Infinity"); getbool: bool ("t"/"f"). */
int vial_pg_getint(const vial_pg_result *r, int row, int col, int64_t *out);
int vial_pg_getdouble(const vial_pg_result *r, int row, int col, double *out);
int vial_pg_getbool(const vial_pg_result *r, int row, int col, int *out);

/* Rows affected by INSERT/UPDATE/DELETE/SELECT..., -1 when not applicable. */
int64_t vial_pg_cmd_tuples(const vial_pg_result *r);
/* The command tag ("INSERT 0 1", "UPDATE 3", "SELECT 5"), "" when none. */
const char *vial_pg_cmd_status(const vial_pg_result *r);

/* Error details: the SQLSTATE ("" for a successful result), the primary
 * message (NULL for a successful result), and the server's DETAIL and HINT
 * (NULL when absent). */
const char *vial_pg_sqlstate(const vial_pg_result *r);
const char *vial_pg_errmsg(const vial_pg_result *r);
const char *vial_pg_errdetail(const vial_pg_result *r);
const char *vial_pg_errhint(const vial_pg_result *r);

/* --- transactions -----------------------------------------------------------------
 * A transaction pins one connection of the thread's pool until it ends: no
 * other query is pipelined onto it meanwhile. A transaction neither committed
 * nor rolled back when the request ends is rolled back then. Several tasks
 * of one request may use the same transaction; their statements run in the
 * order they were issued. */

/* Starts a transaction (sends BEGIN; follow with "SET TRANSACTION ..." for
 * another isolation level). Waits for a connection when every one is pinned
 * by another transaction. Returns 0 with *tx set, or a negative error (*out
 * as for vial_pg_query when out is not NULL). */
int vial_pg_begin(vial_req *rq, vial_pg *db, vial_pg_tx **tx, vial_pg_result **out);

/* vial_pg_query / vial_pg_exec_prepared inside the transaction. After a
 * statement failed, the server refuses the others (25P02) until rollback.
 * -ECONNRESET once the transaction's connection is gone; -EINVAL once the
 * transaction ended. */
int vial_pg_tx_query(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out, const char *sql,
                     int nparams, const char *const *params);
int vial_pg_tx_exec_prepared(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out, const char *name,
                             int nparams, const char *const *params);

/* Ends the transaction; either way the connection returns to the pool.
 * commit returns 0 when the transaction committed; VIAL_PG_ESQL with
 * SQLSTATE 25P02 when an earlier statement had failed (the server rolled
 * back instead), or the server's error (40001 serialization failure...).
 * rollback returns 0 or an error. After either, tx is finished; calling
 * either again returns -EINVAL. If the await is cancelled, the connection
 * is rolled back in the background. */
int vial_pg_commit(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out);
int vial_pg_rollback(vial_req *rq, vial_pg_tx *tx);

/* --- LISTEN / NOTIFY ---------------------------------------------------------------
 * Notifications arrive on one LISTEN connection per loop thread and
 * database, shared by that thread's listeners; each listener has its own
 * bounded queue. Send with vial_pg_query(rq, db, NULL,
 * "select pg_notify($1, $2)", 2, (const char *[]){channel, payload}). */

typedef struct vial_pg_notify {
    const char *channel;
    const char *payload; /* "" when none */
    int pid;             /* the notifying backend */
} vial_pg_notify;

/* Subscribes to channel (a name, case-sensitive as given: it is quoted) and
 * awaits the server's confirmation, so a NOTIFY sent after this returns is
 * delivered. The listener ends with the request, or with
 * vial_pg_unlisten. Returns 0 or a negative error. */
int vial_pg_listen(vial_req *rq, vial_pg *db, const char *channel, vial_pg_listener **out);

/* Awaits the next notification (honouring deadlines and cancellation).
 * Returns 0 with *n filled (its strings valid until the next call on this
 * listener or its end); -ETIMEDOUT / -ECANCELED; -ECONNRESET once when the
 * LISTEN connection broke (notifications may have been lost: reload state;
 * the next call subscribes again on a new connection); -ENOBUFS once when
 * the queue overflowed (older notifications were dropped); -ECONNREFUSED
 * while no connection can be made. */
int vial_pg_next_notify(vial_req *rq, vial_pg_listener *l, vial_pg_notify *n);

/* Unsubscribes now (otherwise at the end of the request). NULL is ignored. */
void vial_pg_unlisten(vial_pg_listener *l);

/* --- introspection ------------------------------------------------------------------ */

/* Counters of the calling thread's pool for db (since the thread's loop
 * started). batches counts writes of queued queries to a connection: a
 * gather of 20 queries on one connection is 1 batch of 20, with 1 Sync. */
typedef struct vial_pg_stats {
    unsigned conns;            /* open query connections now */
    uint64_t connects;         /* connections established */
    uint64_t connect_failures; /* connection attempts that failed */
    uint64_t broken;           /* established connections found broken */
    uint64_t queries;          /* statements sent (internal ones and re-sends
                                  included, Parses not) */
    uint64_t batches;          /* pipeline batches written */
    uint64_t max_batch;        /* most statements in one batch */
    uint64_t cancels;          /* cancel requests sent to the server */
    uint64_t retries;          /* unsent queries moved to a fresh connection */
    uint64_t syncs;            /* Syncs sent: one per batch, plus one before and
                                  after each write or transaction statement */
    uint64_t batch_retries;    /* statements sent again because another statement
                                  of their batch failed (rolled back or skipped) */
    uint64_t auto_prepares;    /* SQL texts prepared automatically (one Parse each) */
    uint64_t prepared_hits;    /* vial_pg_query runs that reused such a statement */
} vial_pg_stats;
int vial_pg_stats_get(vial_req *rq, vial_pg *db, vial_pg_stats *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
