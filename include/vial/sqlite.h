/* vial — SQLite client (through the worker pool).
 *
 * SQLite is an in-process library whose calls block (disk I/O, locks), so
 * from async code every statement runs on the worker pool and the view's
 * coroutine awaits it; from sync views (already on a worker) it runs
 * directly. Rows are copied out of SQLite before the call returns and live
 * in the request's memory until the request ends: nothing to free.
 *
 *   static vial_sqlite *db;   // vial_sqlite_open("app.db", NULL) in main()
 *
 *   static int user(vial_req *rq, vial_res *rs)
 *   {
 *       vial_sqlite_result *r;
 *       const char *p[] = {vial_req_param(rq, "id")};
 *       if (vial_sqlite_query(rq, db, &r, "SELECT name FROM users WHERE id = ?", 1, p) < 0)
 *           return vial_abort_msg(rs, 500, vial_sqlite_error(rq));
 *       if (vial_sqlite_nrows(r) == 0)
 *           return vial_abort(rs, 404);
 *       return vial_text(rs, 200, "%s", vial_sqlite_text(r, 0, 0));
 *   }
 *
 * Built when pkg-config finds sqlite3 (VIAL_HAVE_SQLITE is then defined).
 *
 * A database handle owns a small pool of connections (created on demand,
 * up to vial_sqlite_options.max_connections; one statement runs on one connection
 * at a time) in WAL mode, so readers run in parallel with each other and
 * with one writer. Each connection caches its prepared statements, keyed by
 * the SQL text: use parameters, not printf'd values, and a hot query is
 * parsed once per connection.
 *
 * Return values: 0 (or a count, where said) on success, else a negative
 * errno; vial_sqlite_errcode(rq) / vial_sqlite_error(rq) then give
 * SQLite's extended result code and message:
 *   -EINVAL     SQLite rejected the statement or its data: SQL error (syntax,
 *               no such table), constraint violation (UNIQUE, NOT NULL,
 *               CHECK, FOREIGN KEY), wrong number of parameters; or a bad
 *               argument
 *   -EBUSY      the database stayed locked past the busy timeout
 *   -EIO        any other SQLite failure (I/O, disk full, read-only, corrupt)
 *   -EFBIG      the result is larger than the result limit (64 MiB)
 *   -EAGAIN     the worker pool's queue is full (shed load: 503)
 *   -ECANCELED  the awaiting task/request was cancelled; -ETIMEDOUT: its
 *               deadline or vial_timeout passed. The running statement is
 *               interrupted (sqlite3_interrupt) and a transaction rolled
 *               back; a statement that finished before the interrupt took
 *               effect returns its own result.
 *   -ENOMEM     out of memory
 *   -EPERM      called from neither async code nor a sync view (e.g. from a
 *               function run with vial_offload)
 */
#ifndef VIAL_SQLITE_H
#define VIAL_SQLITE_H

#include <vial.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

typedef struct vial_sqlite vial_sqlite;
typedef struct vial_sqlite_result vial_sqlite_result;
typedef struct vial_sqlite_conn vial_sqlite_conn;
struct sqlite3;

/* --- the database ---------------------------------------------------------------- */

/* vial_sqlite_options.flags (0: read-write, create the file if missing). */
#define VIAL_SQLITE_READONLY 1 /* open read-only (no WAL switch) */
#define VIAL_SQLITE_NOCREATE 2 /* fail when the file does not exist */

/* Opens the database at path (a file name, or a "file:" URI). The first
 * connection is opened now, so a bad path fails here: NULL is returned,
 * errno set, and the reason logged to stderr. The database is switched to
 * WAL mode (persistent in the file); each connection gets synchronous=NORMAL,
 * foreign_keys=ON and the busy timeout. ":memory:" is one private
 * database, so it gets a single connection (statements take turns).
 * opts may be NULL (defaults). */
typedef struct vial_sqlite_options {
    int flags;           /* VIAL_SQLITE_READONLY, VIAL_SQLITE_NOCREATE; 0: neither */
    /* How long a statement waits for a lock held by another connection or
     * process before failing with -EBUSY, ms. 0: 5000; < 0: no wait. */
    int busy_timeout_ms;
    /* Most connections open at once (match the worker count: more cannot be
     * used at once). A statement waits for a free connection when all are
     * in use. 0: 16 (":memory:": always 1). */
    unsigned max_connections;
} vial_sqlite_options;
vial_sqlite *vial_sqlite_open(const char *path, const vial_sqlite_options *opts);

/* Closes every connection. Call when no request uses it any more (after
 * vial_run returned). NULL is ignored. */
void vial_sqlite_close(vial_sqlite *db);

/* --- parameters ------------------------------------------------------------------ */

/* Column and parameter types (the values of SQLite's fundamental types). */
#define VIAL_SQLITE_INTEGER 1
#define VIAL_SQLITE_FLOAT 2
#define VIAL_SQLITE_TEXT 3
#define VIAL_SQLITE_BLOB 4
#define VIAL_SQLITE_NULL 5

/* A typed parameter (vial_sqlite_query_args): build with the helpers below.
 * Text and blob bytes are not copied; they must stay valid during the call
 * (they do when they are locals of the caller: the call awaits). */
typedef struct vial_sqlite_arg {
    int type;
    int64_t i;
    double d;
    const void *p;
    size_t len;
} vial_sqlite_arg;

static inline vial_sqlite_arg vial_sql_int(int64_t v)
{
    vial_sqlite_arg a = {VIAL_SQLITE_INTEGER, v, 0, 0, 0};
    return a;
}
static inline vial_sqlite_arg vial_sql_double(double v)
{
    vial_sqlite_arg a = {VIAL_SQLITE_FLOAT, 0, v, 0, 0};
    return a;
}
static inline vial_sqlite_arg vial_sql_null(void)
{
    vial_sqlite_arg a = {VIAL_SQLITE_NULL, 0, 0, 0, 0};
    return a;
}
/* A NUL-terminated string; NULL binds SQL NULL. */
static inline vial_sqlite_arg vial_sql_text(const char *s)
{
    size_t n = 0;
    if (s)
        while (s[n])
            n++;
    vial_sqlite_arg a = {s ? VIAL_SQLITE_TEXT : VIAL_SQLITE_NULL, 0, 0, s, n};
    return a;
}
static inline vial_sqlite_arg vial_sql_textn(const char *s, size_t len)
{
    vial_sqlite_arg a = {VIAL_SQLITE_TEXT, 0, 0, s, len};
    return a;
}
static inline vial_sqlite_arg vial_sql_blob(const void *p, size_t len)
{
    vial_sqlite_arg a = {VIAL_SQLITE_BLOB, 0, 0, p, len};
    return a;
}

/* --- statements from views ------------------------------------------------------ */

/* Runs one statement (parameters as text, "?" or "?NNN" or ":name" in
 * order; a NULL entry binds SQL NULL; SQLite's type affinity converts text
 * for numeric columns) and collects its rows into *out. Works for
 * statements without rows too (INSERT/UPDATE/DELETE: 0 rows, see
 * vial_sqlite_changes). Returns 0 or a negative error (above); *out is NULL
 * on failure. From async code it awaits the worker pool; from sync code it
 * runs on the calling thread. */
int vial_sqlite_query(vial_req *rq, vial_sqlite *db, vial_sqlite_result **out, const char *sql,
                      int nparams, const char *const *params);

/* The same with typed parameters. */
int vial_sqlite_query_args(vial_req *rq, vial_sqlite *db, vial_sqlite_result **out,
                           const char *sql, int nargs, const vial_sqlite_arg *args);

/* Runs a statement whose rows (if any) are not wanted. With nparams == 0,
 * sql may be a script of several statements separated by ';'. Returns the
 * number of rows changed (inserted, updated, deleted; summed over a script),
 * or a negative error. */
int vial_sqlite_exec(vial_req *rq, vial_sqlite *db, const char *sql, int nparams,
                     const char *const *params);
int vial_sqlite_exec_args(vial_req *rq, vial_sqlite *db, const char *sql, int nargs,
                          const vial_sqlite_arg *args);

/* --- several statements on one connection ---------------------------------------- */

/* fn(conn, arg) runs on a worker thread (or directly from a sync view) with
 * one connection to itself; inside it, use the vial_sqlite_conn_* calls,
 * which block (it is a worker thread) and must not be used elsewhere. fn
 * must not await nor use the request (its other tasks may be running on the
 * loop); `arg` carries what it needs. Results it gets live until the
 * request ends. fn returns 0 or a negative error. */
typedef int (*vial_sqlite_fn)(vial_sqlite_conn *c, void *arg);

/* Runs fn inside BEGIN IMMEDIATE ... COMMIT (IMMEDIATE takes the write
 * lock up front, so two transactions cannot deadlock upgrading their
 * locks). fn's negative result, a failed COMMIT, or cancellation of the
 * awaiting request roll the transaction back. Returns fn's result (0 after
 * a successful COMMIT) or an error. */
int vial_sqlite_transaction(vial_req *rq, vial_sqlite *db, vial_sqlite_fn fn, void *arg);

/* Runs fn with one connection and no transaction of its own: several
 * statements for the price of one trip to the pool. Returns fn's result. */
int vial_sqlite_with(vial_req *rq, vial_sqlite *db, vial_sqlite_fn fn, void *arg);

/* Outside any request (startup, schema creation, maintenance): runs fn with
 * one connection on the calling thread, blocking. Results are freed when
 * it returns. */
int vial_sqlite_run(vial_sqlite *db, vial_sqlite_fn fn, void *arg);

/* Outside any request: runs a script (statements separated by ';'),
 * blocking. On failure copies the message into err (if given). Returns the
 * rows changed or a negative error. */
int vial_sqlite_script(vial_sqlite *db, const char *sql, char *err, size_t errlen);

/* Inside fn: the same as the request-level calls, on fn's connection. */
int vial_sqlite_conn_query(vial_sqlite_conn *c, vial_sqlite_result **out, const char *sql,
                           int nparams, const char *const *params);
int vial_sqlite_conn_query_args(vial_sqlite_conn *c, vial_sqlite_result **out, const char *sql,
                                int nargs, const vial_sqlite_arg *args);
int vial_sqlite_conn_exec(vial_sqlite_conn *c, const char *sql, int nparams,
                          const char *const *params);
int vial_sqlite_conn_exec_args(vial_sqlite_conn *c, const char *sql, int nargs,
                               const vial_sqlite_arg *args);
/* The last failure on c: SQLite's extended code (0 if not from SQLite) and
 * message ("" when none). */
int vial_sqlite_conn_errcode(const vial_sqlite_conn *c);
const char *vial_sqlite_conn_errmsg(const vial_sqlite_conn *c);
/* The raw connection, for what this API does not wrap (user functions,
 * backups). Do not close it nor keep it past fn. */
struct sqlite3 *vial_sqlite_conn_handle(vial_sqlite_conn *c);

/* --- results --------------------------------------------------------------------- */

size_t vial_sqlite_nrows(const vial_sqlite_result *r);
int vial_sqlite_ncols(const vial_sqlite_result *r);
/* Column name as SQLite reports it (the AS alias when given); NULL when
 * col is out of range. */
const char *vial_sqlite_colname(const vial_sqlite_result *r, int col);
/* Index of the column with this name (case-insensitive), or -1. */
int vial_sqlite_colindex(const vial_sqlite_result *r, const char *name);

/* The cell's type as stored (VIAL_SQLITE_INTEGER ... VIAL_SQLITE_NULL);
 * VIAL_SQLITE_NULL as well when row/col are out of range. */
int vial_sqlite_type(const vial_sqlite_result *r, size_t row, int col);
int vial_sqlite_is_null(const vial_sqlite_result *r, size_t row, int col);
/* Text of the cell (numbers as SQLite renders them), NUL-terminated; NULL
 * for SQL NULL or out of range. */
const char *vial_sqlite_text(const vial_sqlite_result *r, size_t row, int col);
/* Byte length of the text or blob (0 for NULL). */
size_t vial_sqlite_len(const vial_sqlite_result *r, size_t row, int col);
/* Numeric value with SQLite's conversions ("12abc" -> 12, NULL -> 0). */
int64_t vial_sqlite_int64(const vial_sqlite_result *r, size_t row, int col);
double vial_sqlite_double(const vial_sqlite_result *r, size_t row, int col);
/* Blob bytes (also works for text); NULL for SQL NULL. */
const void *vial_sqlite_blob(const vial_sqlite_result *r, size_t row, int col, size_t *len);

/* Rows changed by the statement (INSERT/UPDATE/DELETE; 0 otherwise), and the
 * connection's last inserted rowid right after it ran. */
int64_t vial_sqlite_changes(const vial_sqlite_result *r);
int64_t vial_sqlite_last_insert_rowid(const vial_sqlite_result *r);

/* --- errors ------------------------------------------------------------------------ */

/* SQLite's extended result code of this request's most recent failed
 * vial_sqlite_* call (e.g. 2067, SQLITE_CONSTRAINT_UNIQUE), 0 when it was
 * not SQLite's (pool full, cancelled) or none failed. */
int vial_sqlite_errcode(vial_req *rq);
/* The message of this request's most recent failed vial_sqlite_* call, e.g.
 * "UNIQUE constraint failed: users.email (SQLite 2067) in \"INSERT INTO
 * users ...\"", or NULL if none failed. Read it right after the failing call
 * (no other task of the request runs in between). Lives in the request's
 * memory. The code the call returned is named by vial_strerror. */
const char *vial_sqlite_error(vial_req *rq);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
