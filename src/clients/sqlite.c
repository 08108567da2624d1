/* SQLite through the worker pool.
 *
 * SQLite calls block (file I/O, lock waits), so async code never makes them
 * on a loop thread: a statement is a job on the worker pool and the view's
 * coroutine parks until the job's completion is posted back to its loop.
 * Sync views are already on a worker and run the job directly.
 *
 * Connections: a mutex-protected set per database, opened on demand up to a
 * maximum, each used by one thread at a time (so they are opened with
 * SQLITE_OPEN_NOMUTEX: SQLite's own per-call locking would be redundant).
 * Each keeps a small cache of prepared statements keyed by SQL text.
 *
 * Memory: a worker must not allocate from the request's arena (the request's
 * other tasks may be allocating from it on the loop thread at that moment).
 * So a job collects rows into private malloc'd buffers, and the awaiting
 * coroutine, back on the loop thread, packs them into one block of the
 * request's arena. Results obtained inside a vial_sqlite_fn (on the worker)
 * are packed into malloc'd blocks that a cleanup registered before the job
 * frees when the request ends.
 *
 * Cancellation: each job carries a flag; a progress handler installed on
 * the connection while the job runs makes SQLite abandon the statement
 * (SQLITE_INTERRUPT) once the flag is set. Unlike sqlite3_interrupt from the
 * loop thread, it cannot race with the statement's start, and it needs no
 * lock around the connection's ownership. */
#include "vial/sqlite.h"
#include "runtime/driver.h"
#include "runtime/ascii.h"
#include "runtime/log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STMT_CACHE 32
#define RESULT_MAX ((size_t)64 << 20)
#define ERRMSG_MAX 512
#define DEFAULT_MAX_CONNS 16
#define DEFAULT_BUSY_MS 5000
#define PROGRESS_OPS 1000 /* VM instructions between cancellation checks */
#define ERRCODE_KEY "vial.sqlite.errcode"
#define ERRMSG_KEY "vial.sqlite.errmsg"

/* --- types ----------------------------------------------------------------------------- */

typedef struct cached_stmt {
    char *sql;
    uint64_t hash;
    sqlite3_stmt *st;
    unsigned long used; /* LRU tick */
} cached_stmt;

typedef struct conn {
    sqlite3 *h;
    struct conn *next; /* idle list */
    int busy_ms;       /* the timeout set on h */
    cached_stmt cache[STMT_CACHE];
    unsigned ncache;
    unsigned long tick;
} conn;

struct vial_sqlite {
    char *path;
    int flags;
    int memory; /* ":memory:": one connection, one database */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a connection came back */
    conn *idle;
    unsigned open, max;
    int busy_ms;
};

typedef struct cell {
    int type;
    int64_t i;
    double d;
    union {
        const char *s; /* packed: the bytes (text, blob, numbers as text) */
        size_t off;    /* collecting: offset into raw.bytes */
    } u;
    size_t len;
} cell;

struct vial_sqlite_result {
    int ncols;
    size_t nrows;
    const char **names;
    cell *cells; /* nrows * ncols, row-major */
    int64_t changes, rowid;
};

/* Rows as a job collects them, before packing. */
typedef struct raw {
    int ncols;
    size_t nrows;
    cell *cells;
    size_t ncells_cap;
    char *bytes;
    size_t blen, bcap;
    size_t *name_off;
    int64_t changes, rowid;
} raw;

/* malloc'd blocks holding results made on a worker; freed together. */
typedef struct block {
    struct block *next;
    max_align_t data[];
} block;

typedef struct holder {
    block *head;
} holder;

struct vial_sqlite_conn {
    vial_sqlite *db;
    conn *c;
    holder *mem;             /* where conn-level results go */
    const atomic_int *cancelled; /* the job's flag, or NULL */
    int errcode;
    char errmsg[ERRMSG_MAX];
};

/* --- errors ------------------------------------------------------------------------------ */

static int map_code(int code)
{
    switch (code & 0xff) {
    case SQLITE_OK:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_INTERRUPT:
        return -ECANCELED;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_ERROR:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISUSE:
    case SQLITE_AUTH:
        return -EINVAL;
    default:
        return -EIO;
    }
}

static int fail(vial_sqlite_conn *cx, int rc, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(vial_sqlite_conn *cx, int rc, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cx->errmsg, sizeof cx->errmsg, fmt, ap);
    va_end(ap);
    cx->errcode = code;
    return rc;
}

/* The connection's current error, with the statement it came from. */
static int fail_db(vial_sqlite_conn *cx, const char *sql)
{
    int code = sqlite3_extended_errcode(cx->c->h);
    if (code == SQLITE_OK)
        code = SQLITE_ERROR;
    int n = (int)strcspn(sql, "\n");
    return fail(cx, map_code(code), code, "%s (SQLite %d) in \"%.*s%s\"", sqlite3_errmsg(cx->c->h),
                code, n > 120 ? 120 : n, sql, n > 120 || sql[n] ? "..." : "");
}

static int cancelled(const vial_sqlite_conn *cx)
{
    return cx->cancelled && atomic_load(cx->cancelled);
}

/* Progress handler: a non-zero return abandons the running statement. */
static int on_progress(void *arg)
{
    return cancelled(arg);
}

/* --- connections ------------------------------------------------------------------------ */

static void conn_close(conn *c)
{
    for (unsigned i = 0; i < c->ncache; i++) {
        sqlite3_finalize(c->cache[i].st);
        free(c->cache[i].sql);
    }
    sqlite3_close(c->h);
    free(c);
}

static conn *conn_open(vial_sqlite *db, int busy_ms, char *err, size_t errlen)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int f = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
    if (db->flags & VIAL_SQLITE_READONLY)
        f |= SQLITE_OPEN_READONLY;
    else
        f |= SQLITE_OPEN_READWRITE | ((db->flags & VIAL_SQLITE_NOCREATE) ? 0 : SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(db->path, &c->h, f, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->h, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s (SQLite %d)", c->h ? sqlite3_errmsg(c->h) : sqlite3_errstr(rc), rc);
        sqlite3_close(c->h);
        free(c);
        return NULL;
    }
    sqlite3_extended_result_codes(c->h, 1);
    sqlite3_busy_timeout(c->h, busy_ms);
    c->busy_ms = busy_ms;
    return c;
}

/* Takes an idle connection, opens one, or waits for one to come back. */
static conn *conn_acquire(vial_sqlite_conn *cx)
{
    vial_sqlite *db = cx->db;
    pthread_mutex_lock(&db->lock);
    while (!db->idle && db->open >= db->max)
        pthread_cond_wait(&db->cond, &db->lock);
    conn *c = db->idle;
    int busy_ms = db->busy_ms;
    if (c)
        db->idle = c->next;
    else
        db->open++;
    pthread_mutex_unlock(&db->lock);
    if (!c) {
        char err[256];
        c = conn_open(db, busy_ms, err, sizeof err);
        if (!c) {
            pthread_mutex_lock(&db->lock);
            db->open--;
            pthread_cond_signal(&db->cond);
            pthread_mutex_unlock(&db->lock);
            fail(cx, -EIO, SQLITE_CANTOPEN, "cannot open %s: %s", db->path, err);
            return NULL;
        }
    } else if (c->busy_ms != busy_ms) {
        sqlite3_busy_timeout(c->h, busy_ms);
        c->busy_ms = busy_ms;
    }
    c->next = NULL;
    return c;
}

static void conn_release(vial_sqlite *db, conn *c)
{
    sqlite3_progress_handler(c->h, 0, NULL, NULL);
    /* Never hand on a connection inside a transaction (a callback that
     * returned without COMMIT, a failed ROLLBACK): roll back, else drop it. */
    if (!sqlite3_get_autocommit(c->h))
        sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
    int keep = sqlite3_get_autocommit(c->h);
    pthread_mutex_lock(&db->lock);
    if (keep) {
        c->next = db->idle;
        db->idle = c;
    } else {
        db->open--;
    }
    pthread_cond_signal(&db->cond);
    pthread_mutex_unlock(&db->lock);
    if (!keep)
        conn_close(c);
}

/* --- statements ------------------------------------------------------------------------- */

static uint64_t hash_sql(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int only_space(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s) && *s != ';')
            return 0;
    return 1;
}

/* A prepared statement for sql from the connection's cache (reset, no
 * bindings), preparing and caching it on a miss. */
static cached_stmt *cache_find(conn *c, const char *sql, uint64_t h)
{
    for (unsigned i = 0; i < c->ncache; i++)
        if (c->cache[i].hash == h && !strcmp(c->cache[i].sql, sql))
            return &c->cache[i];
    return NULL;
}

static int stmt_get(vial_sqlite_conn *cx, const char *sql, sqlite3_stmt **out)
{
    conn *c = cx->c;
    uint64_t h = hash_sql(sql);
    cached_stmt *hit = cache_find(c, sql, h);
    if (hit) {
        hit->used = ++c->tick;
        *out = hit->st;
        return 0;
    }
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v3(c->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail) != SQLITE_OK)
        return fail_db(cx, sql);
    if (!st)
        return fail(cx, -EINVAL, SQLITE_MISUSE, "empty SQL statement");
    if (tail && !only_space(tail)) {
        sqlite3_finalize(st);
        return fail(cx, -EINVAL, SQLITE_MISUSE,
                    "more than one statement in \"%.120s\" (run scripts with vial_sqlite_exec and no "
                    "parameters)", sql);
    }
    char *copy = strdup(sql);
    if (!copy) {
        sqlite3_finalize(st);
        return fail(cx, -ENOMEM, SQLITE_NOMEM, "out of memory");
    }
    unsigned slot = c->ncache;
    if (slot == STMT_CACHE) { /* evict the least recently used */
        slot = 0;
        for (unsigned i = 1; i < STMT_CACHE; i++)
            if (c->cache[i].used < c->cache[slot].used)
                slot = i;
        sqlite3_finalize(c->cache[slot].st);
        free(c->cache[slot].sql);
    } else {
        c->ncache++;
    }
    c->cache[slot] = (cached_stmt){copy, h, st, ++c->tick};
    *out = st;
    return 0;
}

static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* bound text points into the caller's memory */
}

static int bind_args(vial_sqlite_conn *cx, sqlite3_stmt *st, const char *sql, int n,
                     const vial_sqlite_arg *args)
{
    int want = sqlite3_bind_parameter_count(st);
    if (n != want)
        return fail(cx, -EINVAL, SQLITE_RANGE, "statement has %d parameter%s, %d given in \"%.120s\"",
                    want, want == 1 ? "" : "s", n, sql);
    for (int i = 0; i < n; i++) {
        const vial_sqlite_arg *a = &args[i];
        int rc;
        switch (a->type) {
        case VIAL_SQLITE_INTEGER:
            rc = sqlite3_bind_int64(st, i + 1, a->i);
            break;
        case VIAL_SQLITE_FLOAT:
            rc = sqlite3_bind_double(st, i + 1, a->d);
            break;
        case VIAL_SQLITE_TEXT:
            rc = sqlite3_bind_text64(st, i + 1, a->p ? a->p : "", a->len, SQLITE_STATIC, SQLITE_UTF8);
            break;
        case VIAL_SQLITE_BLOB:
            rc = sqlite3_bind_blob64(st, i + 1, a->p ? a->p : "", a->len, SQLITE_STATIC);
            break;
        case VIAL_SQLITE_NULL:
            rc = sqlite3_bind_null(st, i + 1);
            break;
        default:
            return fail(cx, -EINVAL, SQLITE_MISUSE, "parameter %d has no valid type", i + 1);
        }
        if (rc != SQLITE_OK)
            return fail_db(cx, sql);
    }
    return 0;
}

#if SQLITE_VERSION_NUMBER >= 3037000
#define changes_of(h) sqlite3_changes64(h)
#define total_changes_of(h) sqlite3_total_changes64(h)
#else
#define changes_of(h) sqlite3_changes(h)
#define total_changes_of(h) sqlite3_total_changes(h)
#endif

/* sqlite3_changes reports the last INSERT/UPDATE/DELETE of the connection,
 * not of this statement: count it only if this statement changed rows. */
static int64_t stmt_changes(sqlite3 *h, sqlite3_stmt *st, int64_t total_before)
{
    if (sqlite3_stmt_readonly(st) || total_changes_of(h) == total_before)
        return 0;
    return changes_of(h);
}

static int raw_bytes(vial_sqlite_conn *cx, raw *w, const void *p, size_t n, size_t *off)
{
    if (w->blen + n + 1 > w->bcap) {
        size_t cap = w->bcap ? w->bcap : 256;
        while (cap < w->blen + n + 1)
            cap *= 2;
        char *b = realloc(w->bytes, cap);
        if (!b)
            return fail(cx, -ENOMEM, SQLITE_NOMEM, "out of memory");
        w->bytes = b;
        w->bcap = cap;
    }
    *off = w->blen;
    if (n)
        memcpy(w->bytes + w->blen, p, n);
    w->bytes[w->blen + n] = 0;
    w->blen += n + 1;
    return 0;
}

static void raw_free(raw *w)
{
    free(w->cells);
    free(w->bytes);
    free(w->name_off);
    memset(w, 0, sizeof *w);
}

/* Steps st to the end, copying every row into w. */
static int collect(vial_sqlite_conn *cx, sqlite3_stmt *st, const char *sql, raw *w)
{
    sqlite3 *h = cx->c->h;
    int ncols = sqlite3_column_count(st);
    w->ncols = ncols;
    if (ncols) {
        w->name_off = malloc((size_t)ncols * sizeof *w->name_off);
        if (!w->name_off)
            return fail(cx, -ENOMEM, SQLITE_NOMEM, "out of memory");
        for (int i = 0; i < ncols; i++) {
            const char *name = sqlite3_column_name(st, i);
            if (!name)
                return fail(cx, -ENOMEM, SQLITE_NOMEM, "out of memory");
            if (raw_bytes(cx, w, name, strlen(name), &w->name_off[i]) < 0)
                return -ENOMEM;
        }
    }
    int64_t before = total_changes_of(h);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t need = (w->nrows + 1) * (size_t)ncols;
        if (need > w->ncells_cap) {
            size_t cap = w->ncells_cap ? w->ncells_cap * 2 : (size_t)ncols * 16;
            if (cap < need)
                cap = need;
            cell *c = realloc(w->cells, cap * sizeof *c);
            if (!c)
                return fail(cx, -ENOMEM, SQLITE_NOMEM, "out of memory");
            w->cells = c;
            w->ncells_cap = cap;
        }
        cell *row = w->cells + w->nrows * (size_t)ncols;
        for (int i = 0; i < ncols; i++) {
            cell *c = &row[i];
            memset(c, 0, sizeof *c);
            /* the type first: it is undefined after a conversion */
            c->type = sqlite3_column_type(st, i);
            if (c->type == SQLITE_NULL)
                continue;
            const void *p;
            if (c->type == SQLITE_BLOB) {
                p = sqlite3_column_blob(st, i);
            } else {
                /* numeric views before the text: converting to a number
                 * never invalidates the text pointer taken after it */
                c->i = sqlite3_column_int64(st, i);
                c->d = sqlite3_column_double(st, i);
                p = sqlite3_column_text(st, i);
            }
            c->len = (size_t)sqlite3_column_bytes(st, i);
            if (!p && c->len)
                return fail(cx, -ENOMEM, SQLITE_NOMEM, "out of memory");
            if (raw_bytes(cx, w, p, c->len, &c->u.off) < 0)
                return -ENOMEM;
        }
        w->nrows++;
        if (w->blen + w->nrows * (size_t)ncols * sizeof(cell) > RESULT_MAX)
            return fail(cx, -EFBIG, 0, "result larger than %zu MiB in \"%.120s\"", RESULT_MAX >> 20, sql);
        if (cancelled(cx))
            return fail(cx, -ECANCELED, SQLITE_INTERRUPT, "cancelled");
    }
    if (rc != SQLITE_DONE)
        return fail_db(cx, sql);
    w->changes = stmt_changes(h, st, before);
    w->rowid = sqlite3_last_insert_rowid(h);
    return 0;
}

/* One block holding the result, its column names, cells and bytes. */
static vial_sqlite_result *pack(const raw *w, void *(*alloc)(void *ctx, size_t n), void *ctx)
{
    size_t ncells = w->nrows * (size_t)w->ncols;
    size_t names = ((size_t)w->ncols * sizeof(char *) + 15) & ~(size_t)15;
    size_t cells = ncells * sizeof(cell);
    size_t head = (sizeof(vial_sqlite_result) + 15) & ~(size_t)15;
    char *p = alloc(ctx, head + names + cells + w->blen + 1);
    if (!p)
        return NULL;
    vial_sqlite_result *r = (vial_sqlite_result *)p;
    r->ncols = w->ncols;
    r->nrows = w->nrows;
    r->changes = w->changes;
    r->rowid = w->rowid;
    r->names = (const char **)(p + head);
    r->cells = (cell *)(p + head + names);
    char *bytes = p + head + names + cells;
    if (w->blen)
        memcpy(bytes, w->bytes, w->blen);
    for (int i = 0; i < w->ncols; i++)
        r->names[i] = bytes + w->name_off[i];
    for (size_t i = 0; i < ncells; i++) {
        r->cells[i] = w->cells[i];
        r->cells[i].u.s = w->cells[i].type == SQLITE_NULL ? NULL : bytes + w->cells[i].u.off;
    }
    return r;
}

static void *alloc_in_request(void *ctx, size_t n)
{
    return vial_alloc(ctx, n);
}

static void *alloc_in_holder(void *ctx, size_t n)
{
    holder *hd = ctx;
    block *b = malloc(sizeof *b + n);
    if (!b)
        return NULL;
    b->next = hd->head;
    hd->head = b;
    return b->data;
}

static void holder_free(void *arg)
{
    holder *hd = arg;
    while (hd->head) {
        block *b = hd->head;
        hd->head = b->next;
        free(b);
    }
}

/* Runs one statement on cx: rows into w (when w), changes returned. */
static int run_stmt(vial_sqlite_conn *cx, const char *sql, int n, const vial_sqlite_arg *args, raw *w)
{
    if (cancelled(cx))
        return fail(cx, -ECANCELED, SQLITE_INTERRUPT, "cancelled");
    sqlite3_stmt *st = NULL;
    int r = stmt_get(cx, sql, &st);
    if (r < 0)
        return r;
    r = bind_args(cx, st, sql, n, args);
    if (r == 0) {
        if (w) {
            r = collect(cx, st, sql, w);
        } else {
            int64_t before = total_changes_of(cx->c->h);
            int rc;
            while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                if (cancelled(cx)) {
                    rc = SQLITE_INTERRUPT;
                    break;
                }
            if (rc == SQLITE_INTERRUPT && cancelled(cx))
                r = fail(cx, -ECANCELED, SQLITE_INTERRUPT, "cancelled");
            else if (rc != SQLITE_DONE)
                r = fail_db(cx, sql);
            else {
                int64_t ch = stmt_changes(cx->c->h, st, before);
                r = ch > INT32_MAX ? INT32_MAX : (int)ch;
            }
        }
    }
    stmt_done(st);
    return r;
}

/* A script: every statement of sql in turn. Returns the rows changed,
 * summed. A script of one statement (a hot "UPDATE ... SET n = n + 1")
 * goes through the statement cache; longer ones are one-off, not cached. */
static int run_script(vial_sqlite_conn *cx, const char *sql)
{
    if (cache_find(cx->c, sql, hash_sql(sql)))
        return run_stmt(cx, sql, 0, NULL, NULL);
    sqlite3 *h = cx->c->h;
    int64_t total = 0;
    const char *p = sql;
    while (p && *p) {
        if (cancelled(cx))
            return fail(cx, -ECANCELED, SQLITE_INTERRUPT, "cancelled");
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        if (sqlite3_prepare_v2(h, p, -1, &st, &tail) != SQLITE_OK)
            return fail_db(cx, p);
        if (!st) /* whitespace or a comment */
            break;
        if (p == sql && only_space(tail)) { /* one statement: cache it */
            sqlite3_finalize(st);
            return run_stmt(cx, sql, 0, NULL, NULL);
        }
        int64_t before = total_changes_of(h);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (rc != SQLITE_DONE) {
            int r = rc == SQLITE_INTERRUPT && cancelled(cx) ? fail(cx, -ECANCELED, SQLITE_INTERRUPT, "cancelled")
                                                            : fail_db(cx, p);
            sqlite3_finalize(st);
            return r;
        }
        total += stmt_changes(h, st, before);
        sqlite3_finalize(st);
        p = tail;
    }
    return total > INT32_MAX ? INT32_MAX : (int)total;
}

/* --- jobs -------------------------------------------------------------------------------- */

enum { J_QUERY, J_EXEC, J_SCRIPT, J_WITH, J_TX };

typedef struct job {
    int kind;
    const char *sql;
    int nargs;
    const vial_sqlite_arg *args;
    raw w;            /* J_QUERY's rows */
    vial_sqlite_fn fn;
    void *arg;
    vial_sqlite_conn cx;
    int rc;
    atomic_int cancel;
} job;

static int run_tx(vial_sqlite_conn *cx, vial_sqlite_fn fn, void *arg)
{
    int r = run_stmt(cx, "BEGIN IMMEDIATE", 0, NULL, NULL);
    if (r < 0)
        return r;
    r = fn(cx, arg);
    if (r >= 0 && cancelled(cx))
        r = fail(cx, -ECANCELED, SQLITE_INTERRUPT, "cancelled before COMMIT; rolled back");
    if (r >= 0) {
        int c = run_stmt(cx, "COMMIT", 0, NULL, NULL);
        if (c < 0)
            r = c;
    } else if (!cx->errmsg[0]) {
        fail(cx, r, 0, "transaction callback failed (%d); rolled back", r);
    }
    /* conn_release rolls back whatever is still open */
    return r < 0 ? r : 0;
}

/* Runs on a worker (or inline from sync code); blocking. */
static void job_run(job *j)
{
    vial_sqlite_conn *cx = &j->cx;
    cx->cancelled = &j->cancel;
    if (atomic_load(&j->cancel)) {
        j->rc = fail(cx, -ECANCELED, SQLITE_INTERRUPT, "cancelled before it ran");
        return;
    }
    cx->c = conn_acquire(cx);
    if (!cx->c) {
        j->rc = -EIO;
        return;
    }
    sqlite3_progress_handler(cx->c->h, PROGRESS_OPS, on_progress, cx);
    switch (j->kind) {
    case J_QUERY:
        j->rc = run_stmt(cx, j->sql, j->nargs, j->args, &j->w);
        break;
    case J_EXEC:
        j->rc = run_stmt(cx, j->sql, j->nargs, j->args, NULL);
        break;
    case J_SCRIPT:
        j->rc = run_script(cx, j->sql);
        break;
    case J_WITH:
        j->rc = j->fn(cx, j->arg);
        break;
    case J_TX:
        j->rc = run_tx(cx, j->fn, j->arg);
        break;
    }
    conn_release(cx->db, cx->c);
    cx->c = NULL;
}

static void job_work(void *arg)
{
    job_run(arg);
}

/* The first cancellation or timeout sets the flag the statement's progress
 * handler watches. */
static void job_interrupt(void *arg)
{
    job *j = arg;
    atomic_store(&j->cancel, 1);
}

/* Records a failure for vial_sqlite_errcode/errmsg (the request's g). */
static int record(vial_req *rq, int rc, int code, const char *msg)
{
    vial_g_set(rq, ERRCODE_KEY, (void *)(intptr_t)code);
    vial_g_set(rq, ERRMSG_KEY, vial_strdup(rq, msg && *msg ? msg : "SQLite call failed"));
    return rc;
}

/* Runs j on the pool and awaits it (async code), or right here (sync code:
 * already on a worker; or no pool to use). Anywhere else the request may be
 * in use by its own tasks on the loop, so touching it would race. */
static int run_job(vial_req *rq, job *j)
{
    int sync = vial_req_is_sync(rq);
    if (!sync && !vial_drv_self()) /* e.g. a vial_offload'ed function: the request is not ours */
        return record(rq, -EPERM, 0, "called outside a coroutine and outside a sync view");
    if (!sync && vial_drv_cancelled() == -ECANCELED)
        return record(rq, -ECANCELED, 0, "cancelled before it ran");
    /* The job lives on this stack: vial_offload_wait waits for it whatever
     * happens. */
    int why = sync ? -ENOSYS : vial_offload_wait(rq, job_work, job_interrupt, j);
    if (why == -ENOSYS) { /* already on a worker, or no pool to use */
        job_run(j);
    } else if (why == -EAGAIN) {
        return record(rq, -EAGAIN, 0, "worker pool queue full");
    } else if (why && j->rc == -ECANCELED) {
        j->rc = why;
        if (why == -ETIMEDOUT)
            fail(&j->cx, why, SQLITE_INTERRUPT, "deadline or vial_timeout passed; statement interrupted");
    }
    if (j->rc < 0)
        record(rq, j->rc, j->cx.errcode, j->cx.errmsg);
    return j->rc;
}

static void job_init(job *j, vial_sqlite *db, int kind)
{
    memset(j, 0, sizeof *j);
    j->kind = kind;
    j->cx.db = db;
    atomic_init(&j->cancel, 0);
}

/* Text parameters as typed ones (arena: they must live through the job). */
static const vial_sqlite_arg *text_args(vial_req *rq, int n, const char *const *params)
{
    if (n <= 0)
        return NULL;
    vial_sqlite_arg *a = vial_alloc(rq, (size_t)n * sizeof *a);
    if (!a)
        return NULL;
    for (int i = 0; i < n; i++)
        a[i] = vial_sql_text(params[i]);
    return a;
}

static int check_args(vial_req *rq, vial_sqlite *db, const char *sql, int n, const void *args)
{
    if (!db || !sql || n < 0 || (n > 0 && !args))
        return record(rq, -EINVAL, 0, "invalid arguments (database, SQL or parameters missing)");
    return 0;
}

/* --- request-level API --------------------------------------------------------------------- */

int vial_sqlite_query_args(vial_req *rq, vial_sqlite *db, vial_sqlite_result **out,
                           const char *sql, int nargs, const vial_sqlite_arg *args)
{
    if (!rq || !out)
        return -EINVAL;
    *out = NULL;
    int r = check_args(rq, db, sql, nargs, args);
    if (r < 0)
        return r;
    job j;
    job_init(&j, db, J_QUERY);
    j.sql = sql;
    j.nargs = nargs;
    j.args = args;
    r = run_job(rq, &j);
    if (r == 0) {
        /* back on the request's own thread: pack into its arena */
        *out = pack(&j.w, alloc_in_request, rq);
        if (!*out)
            r = record(rq, -ENOMEM, SQLITE_NOMEM, "out of memory");
    }
    raw_free(&j.w);
    return r;
}

int vial_sqlite_query(vial_req *rq, vial_sqlite *db, vial_sqlite_result **out, const char *sql,
                      int nparams, const char *const *params)
{
    if (!rq || !out)
        return -EINVAL;
    *out = NULL;
    int r = check_args(rq, db, sql, nparams, params);
    if (r < 0)
        return r;
    const vial_sqlite_arg *a = text_args(rq, nparams, params);
    if (nparams > 0 && !a)
        return record(rq, -ENOMEM, SQLITE_NOMEM, "out of memory");
    return vial_sqlite_query_args(rq, db, out, sql, nparams, a);
}

int vial_sqlite_exec_args(vial_req *rq, vial_sqlite *db, const char *sql, int nargs,
                          const vial_sqlite_arg *args)
{
    if (!rq)
        return -EINVAL;
    int r = check_args(rq, db, sql, nargs, args);
    if (r < 0)
        return r;
    job j;
    job_init(&j, db, nargs == 0 ? J_SCRIPT : J_EXEC);
    j.sql = sql;
    j.nargs = nargs;
    j.args = args;
    return run_job(rq, &j);
}

int vial_sqlite_exec(vial_req *rq, vial_sqlite *db, const char *sql, int nparams,
                     const char *const *params)
{
    if (!rq)
        return -EINVAL;
    int r = check_args(rq, db, sql, nparams, params);
    if (r < 0)
        return r;
    const vial_sqlite_arg *a = text_args(rq, nparams, params);
    if (nparams > 0 && !a)
        return record(rq, -ENOMEM, SQLITE_NOMEM, "out of memory");
    return vial_sqlite_exec_args(rq, db, sql, nparams, a);
}

static int with_conn(vial_req *rq, vial_sqlite *db, vial_sqlite_fn fn, void *arg, int kind)
{
    if (!rq)
        return -EINVAL;
    if (!db || !fn)
        return record(rq, -EINVAL, 0, "invalid arguments (database or function missing)");
    /* Results made inside fn go to blocks this holder frees at the end of
     * the request; registered before the job, so nothing can leak. */
    holder *hd = vial_alloc(rq, sizeof *hd);
    if (!hd)
        return record(rq, -ENOMEM, SQLITE_NOMEM, "out of memory");
    hd->head = NULL;
    if (vial_req_on_end(rq, holder_free, hd) < 0)
        return record(rq, -ENOMEM, SQLITE_NOMEM, "out of memory");
    job j;
    job_init(&j, db, kind);
    j.fn = fn;
    j.arg = arg;
    j.cx.mem = hd;
    return run_job(rq, &j);
}

int vial_sqlite_transaction(vial_req *rq, vial_sqlite *db, vial_sqlite_fn fn, void *arg)
{
    return with_conn(rq, db, fn, arg, J_TX);
}

int vial_sqlite_with(vial_req *rq, vial_sqlite *db, vial_sqlite_fn fn, void *arg)
{
    return with_conn(rq, db, fn, arg, J_WITH);
}

int vial_sqlite_errcode(vial_req *rq)
{
    return rq ? (int)(intptr_t)vial_g_get(rq, ERRCODE_KEY) : 0;
}

const char *vial_sqlite_error(vial_req *rq)
{
    return rq ? vial_g_get(rq, ERRMSG_KEY) : NULL;
}

/* --- outside requests ---------------------------------------------------------------------- */

int vial_sqlite_run(vial_sqlite *db, vial_sqlite_fn fn, void *arg)
{
    if (!db || !fn)
        return -EINVAL;
    holder hd = {NULL};
    job j;
    job_init(&j, db, J_WITH);
    j.fn = fn;
    j.arg = arg;
    j.cx.mem = &hd;
    job_run(&j);
    holder_free(&hd);
    return j.rc;
}

int vial_sqlite_script(vial_sqlite *db, const char *sql, char *err, size_t errlen)
{
    if (!db || !sql)
        return -EINVAL;
    job j;
    job_init(&j, db, J_SCRIPT);
    j.sql = sql;
    job_run(&j);
    if (j.rc < 0 && err && errlen)
        snprintf(err, errlen, "%s", j.cx.errmsg);
    return j.rc;
}

/* --- connection-level API (inside a vial_sqlite_fn) ----------------------------------------- */

int vial_sqlite_conn_query_args(vial_sqlite_conn *c, vial_sqlite_result **out, const char *sql,
                                int nargs, const vial_sqlite_arg *args)
{
    if (!c || !out)
        return -EINVAL;
    *out = NULL;
    if (!sql || nargs < 0 || (nargs > 0 && !args))
        return fail(c, -EINVAL, 0, "invalid arguments");
    raw w;
    memset(&w, 0, sizeof w);
    int r = run_stmt(c, sql, nargs, args, &w);
    if (r == 0) {
        *out = pack(&w, alloc_in_holder, c->mem);
        if (!*out)
            r = fail(c, -ENOMEM, SQLITE_NOMEM, "out of memory");
    }
    raw_free(&w);
    return r;
}

int vial_sqlite_conn_query(vial_sqlite_conn *c, vial_sqlite_result **out, const char *sql,
                           int nparams, const char *const *params)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return -EINVAL;
    if (nparams < 0 || (nparams > 0 && !params))
        return fail(c, -EINVAL, 0, "invalid arguments");
    vial_sqlite_arg small[16];
    vial_sqlite_arg *a = !nparams ? NULL : nparams <= 16 ? small : malloc((size_t)nparams * sizeof *a);
    if (nparams && !a)
        return fail(c, -ENOMEM, SQLITE_NOMEM, "out of memory");
    for (int i = 0; i < nparams; i++)
        a[i] = vial_sql_text(params[i]);
    int r = vial_sqlite_conn_query_args(c, out, sql, nparams, a);
    if (a && a != small)
        free(a);
    return r;
}

int vial_sqlite_conn_exec_args(vial_sqlite_conn *c, const char *sql, int nargs,
                               const vial_sqlite_arg *args)
{
    if (!c)
        return -EINVAL;
    if (!sql || nargs < 0 || (nargs > 0 && !args))
        return fail(c, -EINVAL, 0, "invalid arguments");
    return nargs == 0 ? run_script(c, sql) : run_stmt(c, sql, nargs, args, NULL);
}

int vial_sqlite_conn_exec(vial_sqlite_conn *c, const char *sql, int nparams,
                          const char *const *params)
{
    if (!c)
        return -EINVAL;
    if (nparams < 0 || (nparams > 0 && !params))
        return fail(c, -EINVAL, 0, "invalid arguments");
    vial_sqlite_arg small[16];
    vial_sqlite_arg *a = !nparams ? NULL : nparams <= 16 ? small : malloc((size_t)nparams * sizeof *a);
    if (nparams && !a)
        return fail(c, -ENOMEM, SQLITE_NOMEM, "out of memory");
    for (int i = 0; i < nparams; i++)
        a[i] = vial_sql_text(params[i]);
    int r = vial_sqlite_conn_exec_args(c, sql, nparams, a);
    if (a && a != small)
        free(a);
    return r;
}

int vial_sqlite_conn_errcode(const vial_sqlite_conn *c)
{
    return c ? c->errcode : 0;
}

const char *vial_sqlite_conn_errmsg(const vial_sqlite_conn *c)
{
    return c ? c->errmsg : "";
}

struct sqlite3 *vial_sqlite_conn_handle(vial_sqlite_conn *c)
{
    return c && c->c ? c->c->h : NULL;
}

/* --- the database -------------------------------------------------------------------------- */

vial_sqlite *vial_sqlite_open(const char *path, const vial_sqlite_options *opts)
{
    vial_sqlite_options o = opts ? *opts : (vial_sqlite_options){0};
    int flags = o.flags;
    if (!path || !*path) {
        errno = EINVAL;
        return NULL;
    }
    vial_sqlite *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        errno = ENOMEM;
        return NULL;
    }
    db->flags = flags;
    db->memory = !strcmp(path, ":memory:") || strstr(path, "mode=memory") != NULL;
    db->max = db->memory ? 1 : o.max_connections ? o.max_connections : DEFAULT_MAX_CONNS;
    db->busy_ms = o.busy_timeout_ms > 0 ? o.busy_timeout_ms : o.busy_timeout_ms < 0 ? 0 : DEFAULT_BUSY_MS;
    pthread_mutex_init(&db->lock, NULL);
    pthread_cond_init(&db->cond, NULL);

    /* The first connection now: a bad path or a non-database file fails
     * here, at startup, not in the first request. */
    char err[300];
    conn *c = conn_open(db, db->busy_ms, err, sizeof err);
    if (c && !db->memory && !(flags & VIAL_SQLITE_READONLY)) {
        /* WAL: readers do not block the writer nor each other. The mode is
         * stored in the file, so this is done once per database. */
        sqlite3_stmt *st = NULL;
        const char *mode = NULL;
        if (sqlite3_prepare_v2(c->h, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || vial_ascii_casecmp(mode, "wal"))
            vial_log(VIAL_LOG_WARN, "sqlite: %s: WAL mode unavailable (%s); using journal mode %s",
                    path, sqlite3_errmsg(c->h), mode ? mode : "?");
        sqlite3_finalize(st);
    }
    if (c) {
        /* a query that reads the schema proves this is a database */
        int rc = sqlite3_exec(c->h, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            snprintf(err, sizeof err, "%s (SQLite %d)", sqlite3_errmsg(c->h), rc);
            conn_close(c);
            c = NULL;
        }
    }
    if (!c) {
        vial_log(VIAL_LOG_ERROR, "sqlite: cannot open %s: %s", path, err);
        pthread_cond_destroy(&db->cond);
        pthread_mutex_destroy(&db->lock);
        free(db->path);
        free(db);
        errno = EIO;
        return NULL;
    }
    db->idle = c;
    db->open = 1;
    return db;
}

void vial_sqlite_close(vial_sqlite *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&db->lock);
    conn *c = db->idle;
    db->idle = NULL;
    unsigned closed = 0;
    pthread_mutex_unlock(&db->lock);
    while (c) {
        conn *next = c->next;
        conn_close(c);
        closed++;
        c = next;
    }
    if (closed != db->open) {
        /* a statement still runs somewhere: its connection would be
         * returned to freed memory. Refuse loudly rather than corrupt. */
        vial_log(VIAL_LOG_ERROR, "sqlite: %s closed with %u connection(s) still in use; leaking them",
                db->path, db->open - closed);
        return;
    }
    pthread_cond_destroy(&db->cond);
    pthread_mutex_destroy(&db->lock);
    free(db->path);
    free(db);
}

/* --- results --------------------------------------------------------------------------------- */

static const cell *cell_at(const vial_sqlite_result *r, size_t row, int col)
{
    if (!r || row >= r->nrows || col < 0 || col >= r->ncols)
        return NULL;
    return &r->cells[row * (size_t)r->ncols + (size_t)col];
}

size_t vial_sqlite_nrows(const vial_sqlite_result *r)
{
    return r ? r->nrows : 0;
}

int vial_sqlite_ncols(const vial_sqlite_result *r)
{
    return r ? r->ncols : 0;
}

const char *vial_sqlite_colname(const vial_sqlite_result *r, int col)
{
    return r && col >= 0 && col < r->ncols ? r->names[col] : NULL;
}

int vial_sqlite_colindex(const vial_sqlite_result *r, const char *name)
{
    if (!r || !name)
        return -1;
    for (int i = 0; i < r->ncols; i++)
        if (!vial_ascii_casecmp(r->names[i], name))
            return i;
    return -1;
}

int vial_sqlite_type(const vial_sqlite_result *r, size_t row, int col)
{
    const cell *c = cell_at(r, row, col);
    return c ? c->type : VIAL_SQLITE_NULL;
}

int vial_sqlite_is_null(const vial_sqlite_result *r, size_t row, int col)
{
    return vial_sqlite_type(r, row, col) == VIAL_SQLITE_NULL;
}

const char *vial_sqlite_text(const vial_sqlite_result *r, size_t row, int col)
{
    const cell *c = cell_at(r, row, col);
    return c ? c->u.s : NULL;
}

size_t vial_sqlite_len(const vial_sqlite_result *r, size_t row, int col)
{
    const cell *c = cell_at(r, row, col);
    return c ? c->len : 0;
}

int64_t vial_sqlite_int64(const vial_sqlite_result *r, size_t row, int col)
{
    const cell *c = cell_at(r, row, col);
    return c ? c->i : 0;
}

double vial_sqlite_double(const vial_sqlite_result *r, size_t row, int col)
{
    const cell *c = cell_at(r, row, col);
    return c ? c->d : 0;
}

const void *vial_sqlite_blob(const vial_sqlite_result *r, size_t row, int col, size_t *len)
{
    const cell *c = cell_at(r, row, col);
    if (len)
        *len = c ? c->len : 0;
    return c ? c->u.s : NULL;
}

int64_t vial_sqlite_changes(const vial_sqlite_result *r)
{
    return r ? r->changes : 0;
}

int64_t vial_sqlite_last_insert_rowid(const vial_sqlite_result *r)
{
    return r ? r->rowid : 0;
}
