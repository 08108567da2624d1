/* The PostgreSQL client: libpq's non-blocking API in pipeline mode, driven by
 * the loop.
 *
 * Shape. A vial_pg is shared by every thread and immutable after creation
 * (bar the statement table, published lock-free). Each loop thread keeps a
 * pg_pool per vial_pg in a loop-local slot, so running a query takes no
 * lock. A pool owns up to max_conns query connections and at most one
 * LISTEN connection.
 *
 * Who does the I/O. A connection is a state machine run by its loop
 * callback (conn_io_cb), never by a coroutine: coroutines only queue an
 * operation (pg_op) on a connection and park until the callback completes
 * it. That is what makes pipelining across unrelated coroutines simple: a
 * connection has one FIFO of operations sent and awaiting results, and the
 * results come back in the same order. Queued operations are written by a
 * zero-delay "kick" timer: every coroutine that runs in the current pass of
 * the ready queue queues first, the timer fires right after the next
 * (non-blocking) poll, and each connection writes all it has in one batch
 * — unless a batch of its is still in flight: then what queued leaves when
 * that batch's results are in (conn_send, batch_settle).
 *
 * One Sync per batch. A batch (everything queued on a connection when the
 * kick fires) is written as its statements followed by a single Sync:
 * libpq 15's PQpipelineSync flushes, so one Sync means one send, and the
 * server answers a whole batch with one send too. The statements between
 * two Syncs are one implicit transaction: when one fails, those before it
 * are rolled back and those after it are skipped (PGRES_PIPELINE_ABORTED).
 * So results are handed out only when the batch's Sync arrives; then the
 * failing statement gets its error and every other statement of the batch
 * is queued again, at the front, for the next batch (batch_settle). Each
 * such round completes at least the failing statement, so it ends.
 * Statements that must not share a transaction with strangers are
 * "solo", a Sync before and after them: a transaction's, LISTEN's,
 * internal ROLLBACKs, and every statement that may write (anything but a
 * plain SELECT / VALUES / TABLE / SHOW without FOR UPDATE/SHARE, see
 * sql_reads): batched writers would hold their row locks until the
 * batch's end and deadlock each other (detected only after
 * deadlock_timeout), and a write must not be rolled back by a stranger's
 * error. Reads are what batching is for (/db, /queries, /fortunes).
 *
 * Automatic prepared statements. Each connection keeps a cache keyed by
 * SQL text (pg_auto): the first time a text runs there, its Parse goes in
 * the same batch as its execution under a name of the cache's; afterwards
 * only Bind/Execute are sent and the server reuses the plan.
 *
 * Results. A successful statement's rows are copied out of libpq's
 * PGresult as it is parsed, and the PGresult cleared (see rows_from);
 * only errors keep theirs.
 *
 * Lifetimes. Operations with a waiter belong to the waiter; an operation
 * whose waiter gave up (cancelled, timed out) is "abandoned" and belongs to
 * its connection, which drops its result when it arrives. Connections are
 * reference counted (pool membership, a transaction pinning it, a
 * coroutine cancelling on it) and freed through vial_drv_defer, because an
 * epoll batch may still hold an event for them. */
#include "vial/pg.h"

#include "runtime/ascii.h"
#include "runtime/driver.h"
#include "runtime/log.h"
#include "runtime/numfmt.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define PG_MAX_STMTS 64
#define PG_DEFAULT_MAX_CONNS 10
#define PG_DEFAULT_CONNECT_MS 5000
#define PG_DEFAULT_NOTIFY_MAX 1024
#define PG_READ_ROUNDS 32    /* reads per event before yielding to other fds */
#define PG_GROW_BACKOFF_NS 1000000000ull
#define PG_OP_CACHE 64      /* operations cached at least (more while many are in use) */
#define PG_MAX_RETRIES 3
#define PG_NAME_MAX 63       /* NAMEDATALEN - 1 */
#define PG_AUTO_MAX 256      /* SQL texts prepared automatically per connection */
#define PG_AUTO_SLOTS 512    /* their hash table (a power of 2, > PG_AUTO_MAX) */
#define PG_JOIN_MAX 8        /* statements a forming batch takes before others spread out */

/* Internal: the operation was never sent and its connection is gone; the
 * caller may run it on another connection. Never returned to users. */
#define PG_RETRY (-1000001)

/* The Sync that follows every statement. libpq 15's PQpipelineSync also
 * flushes (one send per statement); libpq 17's PQsendPipelineSync leaves
 * the batch to the PQflush that ends conn_send (one send per batch). */
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
#define pg_sync(pg) PQsendPipelineSync(pg)
#else
#define pg_sync(pg) PQpipelineSync(pg)
#endif

/* --- the shared handle -------------------------------------------------------- */

typedef struct pg_stmt {
    char *name, *sql;
    int reads; /* sql_reads(sql) */
} pg_stmt;

struct vial_pg {
    atomic_int refs; /* the app's + one per loop pool */
    char *conninfo;
    unsigned max_conns, connect_ms, notify_max;
    int needs_dns; /* some host must be resolved: start connects on the pool */
    pthread_mutex_t stmt_lock;
    atomic_uint nstmts; /* stmts[0..nstmts) are published and immutable */
    pg_stmt stmts[PG_MAX_STMTS];
    /* The metrics: each loop's pool counts in a block of its own, kept
     * (under stmt_lock) until the db is freed, so a scrape never reads a
     * freed pool and the totals survive the loop. */
    struct pg_mblock *mblocks;
    unsigned metrics_id; /* the `pool` label: order of opening */
    vial_pg *mnext;      /* all open dbs (mlist) */
};

/* Counters cross threads to the scrape: relaxed stores (plain moves; one
 * writer each). */
#define PG_SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define PG_ADD(x, d) PG_SET(x, (x) + (d))
#define PG_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

typedef struct pg_mblock {
    struct pg_mblock *next;
    vial_pg_stats s;   /* written by the pool's loop only */
    uint64_t waiters;  /* coroutines waiting for a connection now */
    uint64_t errors;   /* statements handed to their caller as failed */
} pg_mblock;

/* --- per-thread state ------------------------------------------------------------ */

typedef struct pg_pool pg_pool;
typedef struct pg_conn pg_conn;
typedef struct pg_op pg_op;

enum { OP_QUERY, OP_PREPARED, OP_PREPARE, OP_INTERNAL };

struct pg_op {
    pg_op *next;
    pg_pool *pool;
    pg_conn *conn;      /* where it is queued or in flight; NULL once detached */
    unsigned char kind;
    unsigned char sent, done, abandoned, got_null;
    unsigned char sync_after; /* the last statement before a Sync */
    unsigned char solo;       /* in a Sync group of its own */
    int slot;           /* OP_QUERY, OP_PREPARE: its entry in conn->autos, or -1 */
    const char *sql;    /* statement text (OP_QUERY, OP_INTERNAL) */
    char *owned;        /* malloc'd sql this op frees */
    int stmt;           /* OP_PREPARED / OP_PREPARE: index in db->stmts */
    int nparams;
    const char *const *params;
    int status;         /* its result's ExecStatusType; -1 before one came */
    struct pg_rows *rows; /* a successful result, copied (rows_from) */
    PGresult *res;      /* or libpq's: an error, or a result nobody reads */
    pg_op *pair;        /* OP_PREPARE: the execution it prepares for */
    PGresult *prep_err; /* OP_PREPARED: why preparing it failed */
    vial_coro *waiter;
    int err;            /* negative errno when it failed without a usable result */
    char errstate[6];
    char *errmsg;       /* malloc'd, with err */
};

enum { C_NEW, C_CONNECTING, C_READY, C_CLOSED };

/* An automatically prepared statement: sql is prepared on the connection
 * as "vial_auto_<name>" when ready. A failed or invalidated preparation
 * takes a new name next time, so it never collides with a leftover. */
typedef struct pg_auto {
    char *sql;
    uint32_t hash;
    unsigned name;
    int ready;
    int reads; /* sql_reads(sql) */
} pg_auto;

struct pg_conn {
    vial_io io;         /* first: the loop hands the callback &io */
    pg_pool *pool;
    pg_conn *next;      /* pool->conns, or pool->graveyard */
    pg_conn *next_kick;
    PGconn *pg;
    int state;
    int refs;
    int registered;
    int is_listen;
    unsigned gen;       /* listen connections: which subscription round */
    int hold;           /* a cancel is on its way: send nothing new */
    int retiring;       /* take no new operations */
    int kicked;         /* on pool->kick list */
    int read_more;      /* input left after PG_READ_ROUNDS */
    int want;           /* connecting: PGRES_POLLING_READING / _WRITING */
    int out_pending;    /* PQflush left bytes: wait for writability */
    uint64_t drained_at; /* loop time (+1) when conn_read last found the socket empty */
    pg_op *q_head, *q_tail; /* queued, not sent */
    pg_op *f_head, *f_tail; /* sent, results pending, in order */
    pg_op *f_cur;       /* the first whose results are not all in */
    struct pg_auto *autos; /* PG_AUTO_SLOTS, allocated on first use */
    unsigned nautos, auto_seq;
    unsigned nops;      /* queued + in flight */
    vial_pg_tx *pinned;
    uint64_t prepared;  /* bit i: db->stmts[i] is prepared here */
    vial_drv_timer connect_timer;
    char fatal_state[6]; /* the server's last ERROR/FATAL outside a query */
    char fatal_msg[256];
};

typedef struct pg_chan pg_chan;

struct pg_note {
    struct pg_note *next;
    int pid;
    char *payload;
    char channel[];
};

struct vial_pg_listener {
    pg_pool *pool;
    pg_chan *chan;
    vial_pg_listener *prev, *next; /* in chan */
    struct pg_note *head, *tail, *current;
    unsigned count;
    vial_coro *waiter;
    unsigned gen;       /* the listen connection it is subscribed on; 0: none */
    int lost, overflow, closed;
};

struct pg_chan {
    pg_chan *next;
    vial_pg_listener *listeners;
    char name[];
};

struct pg_pool {
    pg_pool *next;
    vial_pg *db;
    vial_loop *loop;
    pg_conn *conns;     /* query connections */
    unsigned nconns;
    pg_conn *listen;
    unsigned next_gen;
    pg_conn *kick_head;
    vial_drv_timer kick_timer;
    pg_conn *graveyard;
    vial_msg reap_msg;
    int reap_scheduled;
    vial_drv_queue slot_waiters;
    uint64_t grow_blocked_until;
    pg_chan *chans;
    pg_op *op_cache;
    unsigned nop_cache;
    unsigned nops_live; /* operations allocated and not in op_cache */
    vial_pg_stats *stats; /* in db->mblocks */
};

typedef struct pg_local {
    pg_pool *pools;
    vial_loop *loop;
    int key;
} pg_local;

struct vial_pg_tx {
    pg_pool *pool;
    pg_conn *conn; /* pinned while open */
    int open;
};

/* --- compact results ------------------------------------------------------------------
 * A successful statement's result is copied out of libpq's PGresult the
 * moment it is parsed, and the PGresult is cleared right away. A PGresult
 * costs three mallocs and ~3 KiB (the struct, a 2 KiB data block, the
 * tuple array); under load thousands of them wait at once for their
 * coroutines (20 per /queries request x the requests in flight), so every
 * one was cold by the time it was read and freed: those cache misses, not
 * the parsing, were most of the client's cost per statement. Copied while
 * hot, a one-row result is one ~150-byte block, and libpq reuses the same
 * few (hot) allocations for every result it parses. Error results keep
 * their PGresult: their fields are read through libpq. */
typedef struct pg_value {
    uint32_t off; /* in text */
    int32_t len;  /* -1: SQL NULL */
} pg_value;

typedef struct pg_field {
    const char *name;
    unsigned type;
} pg_field;

typedef struct pg_rows {
    int ntuples, nfields;
    const char *cmd_status, *cmd_tuples;
    pg_field *fields;
    pg_value *values; /* row-major, ntuples x nfields */
    char *text;       /* every value NUL-terminated, then the names */
} pg_rows;

static size_t add_string(char *text, size_t at, const char *s, size_t n)
{
    memcpy(text + at, s, n);
    text[at + n] = 0;
    return at + n + 1;
}

/* NULL when out of memory or too large for 32-bit offsets: the caller then
 * keeps the PGresult. */
static pg_rows *rows_from(PGresult *r)
{
    int nt = PQntuples(r), nf = PQnfields(r);
    const char *cs = PQcmdStatus(r), *ct = PQcmdTuples(r);
    cs = cs ? cs : "";
    ct = ct ? ct : "";
    size_t ncs = strlen(cs), nct = strlen(ct);
    size_t nv = (size_t)nt * (size_t)nf;
    size_t text = ncs + nct + 2;
    for (int f = 0; f < nf; f++)
        text += strlen(PQfname(r, f)) + 1;
    for (int t = 0; t < nt; t++)
        for (int f = 0; f < nf; f++)
            text += (size_t)PQgetlength(r, t, f) + 1;
    if (text > UINT32_MAX || nv > (SIZE_MAX - text) / (sizeof(pg_value) + sizeof(pg_field)))
        return NULL;
    size_t head = sizeof(pg_rows) + (size_t)nf * sizeof(pg_field) + nv * sizeof(pg_value);
    pg_rows *rows = malloc(head + text);
    if (!rows)
        return NULL;
    rows->ntuples = nt;
    rows->nfields = nf;
    rows->fields = (pg_field *)(rows + 1);
    rows->values = (pg_value *)(rows->fields + nf);
    rows->text = (char *)(rows->values + nv);
    size_t at = 0;
    pg_value *v = rows->values;
    for (int t = 0; t < nt; t++) {
        for (int f = 0; f < nf; f++, v++) {
            size_t n = (size_t)PQgetlength(r, t, f);
            v->off = (uint32_t)at;
            v->len = PQgetisnull(r, t, f) ? -1 : (int32_t)n;
            at = add_string(rows->text, at, PQgetvalue(r, t, f), n);
        }
    }
    for (int f = 0; f < nf; f++) {
        const char *name = PQfname(r, f);
        rows->fields[f].name = rows->text + at;
        rows->fields[f].type = (unsigned)PQftype(r, f);
        at = add_string(rows->text, at, name, strlen(name));
    }
    rows->cmd_status = rows->text + at;
    at = add_string(rows->text, at, cs, ncs);
    rows->cmd_tuples = rows->text + at;
    add_string(rows->text, at, ct, nct);
    return rows;
}

/* The column named `name` by libpq's PQfnumber rules: case-folded (ASCII)
 * unless double-quoted, "" inside quotes standing for one quote. */
static int rows_fnumber(const pg_rows *rows, const char *name)
{
    int plain = 1;
    for (const char *s = name; *s && plain; s++)
        plain = *s != '"' && vial_ascii_lower((unsigned char)*s) == (unsigned char)*s;
    if (plain) {
        for (int f = 0; f < rows->nfields; f++)
            if (!strcmp(rows->fields[f].name, name))
                return f;
        return -1;
    }
    char *want = malloc(strlen(name) + 1), *w = want;
    if (!want)
        return -1;
    int quoted = 0;
    for (const char *s = name; *s; s++) {
        if (quoted && *s == '"') {
            if (s[1] == '"')
                *w++ = *s++;
            else
                quoted = 0;
        } else if (quoted) {
            *w++ = *s;
        } else if (*s == '"') {
            quoted = 1;
        } else {
            *w++ = (char)vial_ascii_lower((unsigned char)*s);
        }
    }
    *w = 0;
    int found = -1;
    for (int f = 0; f < rows->nfields && found < 0; f++)
        if (!strcmp(rows->fields[f].name, want))
            found = f;
    free(want);
    return found;
}

struct vial_pg_result {
    pg_rows *rows;       /* a successful result (copied: see rows_from) */
    PGresult *pg;        /* or libpq's: errors, or when copying failed */
    int code;
    char sqlstate[6];
    const char *message; /* client-side errors; server errors come from pg */
};

static void conn_close(pg_conn *c, int code, const char *msg);
static void conn_send(pg_conn *c);
static void conn_read(pg_conn *c);
static void conn_kick(pg_conn *c);
static void autos_free(pg_conn *c);

/* --- small helpers ------------------------------------------------------------------ */

static void copy_trimmed(char *dst, size_t cap, const char *src)
{
    if (!src)
        src = "";
    size_t n = strlen(src);
    while (n && isspace((unsigned char)src[n - 1]))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static int fd_readable(int fd)
{
    return (vial_drv_poll(fd, VIAL_IO_READ) & VIAL_IO_READ) != 0;
}

/* Whether sql only reads, so it may share a batch's implicit transaction
 * with strangers' statements: it starts with SELECT, VALUES, TABLE or
 * SHOW (after blanks, comments and parentheses) and locks no rows (no
 * FOR UPDATE / FOR SHARE / FOR NO KEY UPDATE / FOR KEY SHARE). Functions
 * called by a SELECT may still write; such a write can then be rolled
 * back by a stranger's error and re-run, or deadlock (retried alone). */
/* ASCII classes: the C library's follow the application's locale. */
static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (unsigned char)c >= 0x80;
}

static int sql_reads(const char *sql)
{
    const char *s = sql;
    for (;;) {
        while (blank(*s) || *s == '(')
            s++;
        if (s[0] == '-' && s[1] == '-') {
            while (*s && *s != '\n')
                s++;
        } else if (s[0] == '/' && s[1] == '*') {
            const char *e = strstr(s + 2, "*/");
            if (!e)
                return 0;
            s = e + 2;
        } else {
            break;
        }
    }
    static const char *const verbs[] = {"select", "values", "table", "show"};
    int ok = 0;
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs && !ok; i++) {
        size_t n = strlen(verbs[i]);
        ok = !vial_ascii_ncasecmp(s, verbs[i], n) && !word_char(s[n]);
    }
    if (!ok)
        return 0;
    /* " for " followed by update/share/no key/key share: a locking clause */
    for (const char *f = s; *f; f++) {
        if (vial_ascii_lower((unsigned char)*f) != 'f' || vial_ascii_ncasecmp(f, "for", 3) ||
            f == s || word_char(f[-1]))
            continue;
        const char *w = f + 3;
        if (!blank(*w))
            continue;
        while (blank(*w))
            w++;
        if (!vial_ascii_ncasecmp(w, "update", 6) || !vial_ascii_ncasecmp(w, "share", 5) ||
            !vial_ascii_ncasecmp(w, "no", 2) || !vial_ascii_ncasecmp(w, "key", 3))
            return 0;
    }
    return 1;
}

/* --- operations ------------------------------------------------------------------------- */

static pg_op *op_new(pg_pool *p, int kind)
{
    pg_op *op = p->op_cache;
    if (op) {
        p->op_cache = op->next;
        p->nop_cache--;
    } else {
        op = malloc(sizeof *op);
        if (!op)
            return NULL;
    }
    p->nops_live++;
    memset(op, 0, sizeof *op);
    op->pool = p;
    op->kind = (unsigned char)kind;
    op->stmt = -1;
    op->slot = -1;
    op->status = -1;
    return op;
}

static void op_clear(pg_op *op)
{
    PQclear(op->res);
    PQclear(op->prep_err);
    free(op->rows);
    free(op->errmsg);
    op->res = op->prep_err = NULL;
    op->rows = NULL;
    op->errmsg = NULL;
    op->status = -1;
}

static void op_free(pg_op *op)
{
    pg_pool *p = op->pool;
    op_clear(op);
    free(op->owned);
    /* Under load thousands are in flight (20 per /queries request x the
     * requests waiting): keep as many as are in use, so the steady state
     * recycles hot ones instead of a malloc and a free per statement. */
    p->nops_live--;
    if (p->nop_cache < PG_OP_CACHE || p->nop_cache < p->nops_live) {
        op->next = p->op_cache;
        p->op_cache = op;
        p->nop_cache++;
    } else {
        free(op);
    }
}

/* Ready to run again on another connection (PG_RETRY). */
static void op_reset(pg_op *op)
{
    op_clear(op);
    op->conn = NULL;
    op->sent = op->done = op->abandoned = op->got_null = op->sync_after = 0;
    op->slot = -1;
    op->err = 0;
    op->errstate[0] = 0;
}

/* Completes op without a result: err and a message. */
static void op_fail(pg_op *op, int err, const char *state, const char *msg)
{
    op->err = err;
    copy_trimmed(op->errstate, sizeof op->errstate, state);
    free(op->errmsg);
    op->errmsg = msg ? strdup(msg) : NULL;
    if (op->errmsg) {
        size_t n = strlen(op->errmsg);
        while (n && isspace((unsigned char)op->errmsg[n - 1]))
            op->errmsg[--n] = 0;
    }
    op->done = 1;
    if (op->waiter)
        vial_drv_wake(op->waiter, 0);
}

/* --- connections: lifetime --------------------------------------------------------------- */

static void slot_wake(pg_pool *p)
{
    vial_drv_queue_wake_all(&p->slot_waiters);
}

static void reap_cb(vial_loop *l, vial_msg *m)
{
    pg_pool *p = vial_container_of(m, pg_pool, reap_msg);
    p->reap_scheduled = 0;
    while (p->graveyard) {
        pg_conn *c = p->graveyard;
        p->graveyard = c->next;
        free(c);
    }
}

static void conn_unref(pg_conn *c)
{
    if (--c->refs > 0)
        return;
    pg_pool *p = c->pool;
    c->next = p->graveyard;
    p->graveyard = c;
    if (!p->reap_scheduled) {
        p->reap_scheduled = 1;
        p->reap_msg.cb = reap_cb;
        vial_drv_defer(p->loop, &p->reap_msg);
    }
}

static void connect_timeout_cb(vial_drv_timer *t)
{
    pg_conn *c = vial_container_of(t, pg_conn, connect_timer);
    char msg[96];
    snprintf(msg, sizeof msg, "timed out after %u ms while connecting to PostgreSQL",
             c->pool->db->connect_ms);
    conn_close(c, -ECONNREFUSED, msg);
}

static void conn_io_cb(vial_loop *l, vial_io *io, unsigned ev);

static pg_conn *conn_new(pg_pool *p, int is_listen)
{
    pg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->pool = p;
    c->state = C_NEW;
    c->refs = 1; /* the pool's */
    c->io.fd = -1;
    c->io.cb = conn_io_cb;
    vial_drv_timer_init(&c->connect_timer, p->loop, connect_timeout_cb);
    c->is_listen = is_listen;
    if (is_listen) {
        if (++p->next_gen == 0) /* 0 means "not subscribed" */
            ++p->next_gen;
        c->gen = p->next_gen;
        p->listen = c;
    } else {
        c->next = p->conns;
        p->conns = c;
        p->nconns++;
        PG_SET(p->stats->conns, p->nconns);
    }
    return c;
}

/* (Re)registers the connection's socket. During connection establishment
 * libpq may close a socket and open another (next address, next host),
 * possibly under the same number, so each step re-registers: epoll drops a
 * closed socket by itself, and adding reports one that is ready already. */
static int conn_register(pg_conn *c)
{
    vial_loop *l = c->pool->loop;
    if (c->registered) {
        vial_drv_io_del(l, &c->io);
        c->registered = 0;
    }
    c->io.fd = PQsocket(c->pg);
    if (c->io.fd < 0)
        return -EBADF;
    int r = vial_drv_io_add(l, &c->io);
    c->registered = r == 0;
    return r;
}

/* The server said ERROR/FATAL outside any query (e.g. "terminating
 * connection due to administrator command" before it closes): keep it for
 * the error the connection's operations will get. Other notices (NOTICE,
 * WARNING) are dropped: libpq's default would print them to stderr. */
static void notice_cb(void *arg, const PGresult *res)
{
    pg_conn *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!sev || (strcmp(sev, "ERROR") && strcmp(sev, "FATAL") && strcmp(sev, "PANIC")))
        return;
    copy_trimmed(c->fatal_state, sizeof c->fatal_state, PQresultErrorField(res, PG_DIAG_SQLSTATE));
    copy_trimmed(c->fatal_msg, sizeof c->fatal_msg, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
}

struct start_job {
    const char *conninfo;
    PGconn *pg;
};

static void start_job_fn(void *arg)
{
    struct start_job *j = arg;
    j->pg = PQconnectStart(j->conninfo);
}

/* Starts connecting (coroutine context). PQconnectStart resolves the first
 * host name with getaddrinfo, which blocks: with a host name it runs on the
 * worker pool; with addresses or socket paths it runs here. The rest of the
 * handshake is PQconnectPoll steps driven by conn_io_cb. */
static void conn_start(pg_conn *c, vial_req *rq)
{
    pg_pool *p = c->pool;
    c->state = C_CONNECTING; /* nobody else starts it */
    c->refs++;
    PGconn *pg = NULL;
    struct start_job job = {p->db->conninfo, NULL};
    if (p->db->needs_dns && vial_offload_wait(rq, start_job_fn, NULL, &job) == 0)
        pg = job.pg;
    else
        pg = PQconnectStart(p->db->conninfo);
    if (c->state == C_CLOSED) { /* the loop ended meanwhile */
        PQfinish(pg);
        conn_unref(c);
        return;
    }
    c->pg = pg;
    if (!pg) {
        conn_close(c, -ENOMEM, "out of memory");
    } else if (PQstatus(pg) == CONNECTION_BAD) {
        conn_close(c, -ECONNREFUSED, PQerrorMessage(pg));
    } else {
        PQsetNoticeReceiver(pg, notice_cb, c);
        vial_drv_timer_arm(&c->connect_timer, (uint64_t)p->db->connect_ms * 1000000ull);
        c->want = PGRES_POLLING_WRITING; /* libpq's rule for the first poll */
        if (conn_register(c) < 0)
            conn_close(c, -ECONNREFUSED, "cannot register the connection's socket");
    }
    conn_unref(c);
}

static void conn_ready(pg_conn *c)
{
    pg_pool *p = c->pool;
    vial_drv_timer_stop(&c->connect_timer);
    if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
        conn_close(c, -ECONNREFUSED, PQerrorMessage(c->pg));
        return;
    }
    if (conn_register(c) < 0) {
        conn_close(c, -ECONNREFUSED, "cannot register the connection's socket");
        return;
    }
    c->state = C_READY;
    c->fatal_state[0] = c->fatal_msg[0] = 0;
    PG_ADD(p->stats->connects, 1);
    conn_send(c); /* what queued while connecting */
}

static void conn_connect_step(pg_conn *c, unsigned ev)
{
    unsigned want = c->want == PGRES_POLLING_READING ? VIAL_IO_READ : VIAL_IO_WRITE;
    if (!(ev & (want | VIAL_IO_HUP | VIAL_IO_ERR)))
        return;
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_OK:
        conn_ready(c);
        return;
    case PGRES_POLLING_FAILED:
        conn_close(c, -ECONNREFUSED, PQerrorMessage(c->pg));
        return;
    case PGRES_POLLING_READING:
        c->want = PGRES_POLLING_READING;
        break;
    default:
        c->want = PGRES_POLLING_WRITING;
        break;
    }
    if (conn_register(c) < 0)
        conn_close(c, -ECONNREFUSED, "cannot register the connection's socket");
}

static void listeners_lost(pg_pool *p, unsigned gen);

/* Takes the connection out of service: every operation on it completes
 * (in flight: code for a failed connect, -ECONNRESET for a broken one;
 * never sent: PG_RETRY when another connection may do, else code), and
 * the pool forgets it. */
static void conn_close(pg_conn *c, int code, const char *msg)
{
    if (c->state == C_CLOSED)
        return;
    pg_pool *p = c->pool;
    int was_ready = c->state == C_READY;
    c->state = C_CLOSED;
    vial_drv_timer_stop(&c->connect_timer);
    if (c->registered) {
        vial_drv_io_del(p->loop, &c->io);
        c->registered = 0;
    }
    if (was_ready && code != -ECANCELED)
        PG_ADD(p->stats->broken, 1);
    else if (!was_ready)
        PG_ADD(p->stats->connect_failures, 1);

    /* Unlink from the pool first, so "is there another connection" below
     * and the retried operations see the pool without it. */
    if (c->is_listen) {
        if (p->listen == c)
            p->listen = NULL;
    } else {
        for (pg_conn **pp = &p->conns; *pp; pp = &(*pp)->next) {
            if (*pp == c) {
                *pp = c->next;
                p->nconns--;
                PG_SET(p->stats->conns, p->nconns);
                break;
            }
        }
    }
    int others = 0;
    for (pg_conn *o = p->conns; o; o = o->next)
        others |= o->state == C_READY;
    if (!was_ready && others)
        p->grow_blocked_until = vial_drv_now(p->loop) + PG_GROW_BACKOFF_NS;

    char text[512];
    const char *state;
    if (c->fatal_msg[0]) {
        snprintf(text, sizeof text, "%s", c->fatal_msg);
        state = c->fatal_state;
    } else {
        copy_trimmed(text, sizeof text, msg && *msg ? msg : "connection to PostgreSQL lost");
        state = was_ready ? "08006" : "08001";
    }
    int inflight_err = was_ready ? -ECONNRESET : code;
    if (code == -ECANCELED)
        state = "57014";

    while (c->f_head) {
        pg_op *op = c->f_head;
        c->f_head = op->next;
        op->conn = NULL;
        if (op->kind == OP_PREPARE || op->kind == OP_INTERNAL || op->abandoned) {
            op_free(op);
            continue;
        }
        int e = inflight_err;
        int doomed = code == -ECANCELED && op->waiter ? vial_drv_doomed(op->waiter) : 0;
        if (doomed)
            e = doomed;
        op_fail(op, e, state, text);
    }
    c->f_tail = c->f_cur = NULL;
    while (c->q_head) {
        pg_op *op = c->q_head;
        c->q_head = op->next;
        op->conn = NULL;
        if (op->kind == OP_INTERNAL) {
            op_free(op);
            continue;
        }
        /* Never sent, so never run: another connection may take it (the
         * transaction layer turns this into -ECONNRESET but for BEGIN). */
        op_fail(op, was_ready || others ? PG_RETRY : code, state, text);
    }
    c->q_tail = NULL;
    c->nops = 0;
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    autos_free(c);
    if (c->is_listen)
        listeners_lost(p, c->gen);
    slot_wake(p);
    conn_unref(c); /* the pool's reference */
}

/* --- connections: I/O --------------------------------------------------------------------- */

/* Writes what libpq buffered. libpq may read input while writing (to avoid
 * a deadlock with a server blocked on its own writes), so results are
 * dispatched afterwards too. */
static void conn_dispatch(pg_conn *c);

static void conn_flush_out(pg_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_close(c, -ECONNRESET, PQerrorMessage(c->pg));
        return;
    }
    c->out_pending = r == 1;
    conn_dispatch(c);
}

/* --- automatic prepared statements ---------------------------------------------------------- */

static uint32_t sql_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The cache entry for sql on c, made if there is room; -1 when the cache
 * is full (the statement then runs unnamed) or out of memory. */
static int auto_slot(pg_conn *c, const char *sql)
{
    if (!c->autos && !(c->autos = calloc(PG_AUTO_SLOTS, sizeof *c->autos)))
        return -1;
    uint32_t h = sql_hash(sql);
    for (unsigned i = h & (PG_AUTO_SLOTS - 1);; i = (i + 1) & (PG_AUTO_SLOTS - 1)) {
        pg_auto *a = &c->autos[i];
        if (!a->sql) {
            if (c->nautos >= PG_AUTO_MAX || !(a->sql = strdup(sql)))
                return -1;
            a->hash = h;
            a->reads = sql_reads(sql);
            c->nautos++;
            return (int)i;
        }
        if (a->hash == h && !strcmp(a->sql, sql))
            return (int)i;
    }
}

static void auto_name(const pg_conn *c, int slot, char *buf, size_t cap)
{
    snprintf(buf, cap, "vial_auto_%u", c->autos[slot].name);
}

static void autos_free(pg_conn *c)
{
    if (!c->autos)
        return;
    for (unsigned i = 0; i < PG_AUTO_SLOTS; i++)
        free(c->autos[i].sql);
    free(c->autos);
    c->autos = NULL;
    c->nautos = 0;
}

/* --- connections: sending ---------------------------------------------------------------- */

static int op_send(pg_conn *c, pg_op *op)
{
    const vial_pg *db = c->pool->db;
    char name[32];
    switch (op->kind) {
    case OP_PREPARE:
        if (op->slot >= 0) {
            auto_name(c, op->slot, name, sizeof name);
            return PQsendPrepare(c->pg, name, c->autos[op->slot].sql, 0, NULL);
        }
        return PQsendPrepare(c->pg, db->stmts[op->stmt].name, db->stmts[op->stmt].sql, 0, NULL);
    case OP_PREPARED:
        return PQsendQueryPrepared(c->pg, db->stmts[op->stmt].name, op->nparams, op->params, NULL,
                                   NULL, 0);
    default:
        if (op->slot >= 0) {
            auto_name(c, op->slot, name, sizeof name);
            return PQsendQueryPrepared(c->pg, name, op->nparams, op->params, NULL, NULL, 0);
        }
        return PQsendQueryParams(c->pg, op->sql, op->nparams, NULL, op->params, NULL, NULL, 0);
    }
}

static void flight_push(pg_conn *c, pg_op *op)
{
    op->next = NULL;
    op->sent = 1;
    op->got_null = 0;
    op->sync_after = 0;
    if (c->f_tail)
        c->f_tail->next = op;
    else
        c->f_head = op;
    c->f_tail = op;
    if (!c->f_cur)
        c->f_cur = op;
}

/* Ends the open Sync group: its last statement learns that a Sync follows. */
static int group_end(pg_conn *c)
{
    c->f_tail->sync_after = 1;
    PG_ADD(c->pool->stats->syncs, 1);
    return pg_sync(c->pg);
}

/* Queues the Parse that op's execution needs on c, if it needs one:
 * a declared statement not yet prepared here, or SQL text whose cache
 * entry is not ready. Returns 1 when a Parse was sent, 0 when none was
 * needed, -1 when sending failed (c is closed), -2 out of memory. */
static int prepare_for(pg_conn *c, pg_op *op)
{
    pg_pool *p = c->pool;
    int slot = -1;
    if (op->kind == OP_PREPARED) {
        if (c->prepared & (1ull << op->stmt))
            return 0;
    } else if (op->kind == OP_QUERY) {
        if ((slot = op->slot) < 0 || c->autos[slot].ready) {
            PG_ADD(p->stats->prepared_hits, slot >= 0);
            return 0;
        }
        c->autos[slot].name = ++c->auto_seq;
    } else {
        return 0;
    }
    pg_op *prep = op_new(p, OP_PREPARE);
    if (!prep) {
        op->slot = -1;
        return -2;
    }
    prep->stmt = op->stmt;
    prep->slot = slot;
    prep->pair = op;
    prep->conn = c;
    c->nops++;
    flight_push(c, prep);
    if (!op_send(c, prep)) {
        conn_close(c, -ECONNRESET, PQerrorMessage(c->pg));
        return -1;
    }
    if (slot >= 0) {
        c->autos[slot].ready = 1;
        PG_ADD(p->stats->auto_prepares, 1);
    } else {
        c->prepared |= 1ull << op->stmt;
    }
    return 1;
}

/* Writes every queued operation: one batch, one Sync, one send (solo
 * operations add Syncs around themselves). Not while a batch is in
 * flight: what queues meanwhile leaves as one batch when its results are
 * in (batch_settle kicks), so under load batches grow with the load
 * instead of every loop turn sending a few statements with a Sync, a send
 * and a server wake-up of their own; a lone query on an idle connection
 * still goes at once. The server would run them only after the batch in
 * flight anyway. */
static void conn_send(pg_conn *c)
{
    if (c->state != C_READY || c->hold || !c->q_head || c->f_head)
        return;
    pg_pool *p = c->pool;
    /* An idle connection may have died quietly (server restarted while the
     * loop was not polling): look before writing, so that what is queued
     * can still move to a fresh connection instead of failing — unless
     * conn_read found it empty in this same loop turn (a poll saved per
     * batch under load). */
    if (c->drained_at != vial_drv_now(p->loop) + 1 && fd_readable(c->io.fd)) {
        conn_read(c);
        if (c->state != C_READY)
            return;
    }
    uint64_t n = 0;
    unsigned open = 0; /* statements since the last Sync */
    while (c->q_head) {
        pg_op *op = c->q_head;
        if (op->next) /* queued in other loop turns: cold under load */
            __builtin_prefetch(op->next);
        int reads;
        if (op->kind == OP_QUERY) {
            /* LISTEN's statements name channels: texts that rarely repeat */
            op->slot = c->is_listen ? -1 : auto_slot(c, op->sql);
            reads = op->slot >= 0 ? c->autos[op->slot].reads : sql_reads(op->sql);
        } else {
            reads = op->kind == OP_PREPARED && p->db->stmts[op->stmt].reads;
        }
        int alone = op->solo || !reads;
        if (alone && open) {
            if (!group_end(c)) {
                conn_close(c, -ECONNRESET, PQerrorMessage(c->pg));
                return;
            }
            open = 0;
        }
        int r = prepare_for(c, op);
        if (r == -1)
            return;
        c->q_head = op->next;
        if (!c->q_head)
            c->q_tail = NULL;
        if (r == -2) {
            c->nops--;
            op->conn = NULL;
            op_fail(op, -ENOMEM, "", "out of memory");
            continue;
        }
        open += (unsigned)r; /* a Parse is not counted as a statement */
        flight_push(c, op);
        if (!op_send(c, op)) {
            conn_close(c, -ECONNRESET, PQerrorMessage(c->pg));
            return;
        }
        n++;
        open++;
        if (alone) {
            if (!group_end(c)) {
                conn_close(c, -ECONNRESET, PQerrorMessage(c->pg));
                return;
            }
            open = 0;
        }
    }
    if (open && !group_end(c)) {
        conn_close(c, -ECONNRESET, PQerrorMessage(c->pg));
        return;
    }
    PG_ADD(p->stats->batches, 1);
    PG_ADD(p->stats->queries, n);
    if (n > p->stats->max_batch)
        PG_SET(p->stats->max_batch, n);
    conn_flush_out(c);
}

/* --- connections: results ------------------------------------------------------------------ */

static const char *op_sqlstate(const pg_op *op)
{
    const PGresult *r = op->prep_err ? op->prep_err : op->res;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return st ? st : "";
}

/* Whether the statement that failed its batch deserves another go on its
 * own rather than its error: it could not run inside a transaction block
 * shared with strangers (25001), or sharing one made it deadlock or fail
 * to serialize (40P01, 40001: a SELECT whose function writes), or the connection's prepared statements
 * went stale under it (0A000 cached plan must not change result type;
 * 26000 a DEALLOCATE ALL / DISCARD ALL removed them). Once only. */
static int retry_alone(pg_conn *c, pg_op *op, unsigned statements)
{
    if (op->solo || op->kind == OP_INTERNAL)
        return 0;
    const char *st = op_sqlstate(op);
    if (!strcmp(st, "25001") || !strcmp(st, "40P01") || !strcmp(st, "40001"))
        return statements > 1;
    if (!strcmp(st, "26000")) {
        c->prepared = 0;
        for (unsigned i = 0; c->autos && i < PG_AUTO_SLOTS; i++)
            c->autos[i].ready = 0;
        return 1;
    }
    if (!strcmp(st, "0A000") && op->slot >= 0 && c->autos) {
        c->autos[op->slot].ready = 0;
        return 1;
    }
    return 0;
}

static void op_complete(pg_conn *c, pg_op *op)
{
    c->nops--;
    if (op->abandoned || op->kind == OP_INTERNAL) {
        op_free(op);
        return;
    }
    op->done = 1;
    if (op->waiter)
        vial_drv_wake(op->waiter, 0);
}

/* The Sync after `last` arrived: every statement from f_head to last has
 * all its results. Without an error they are handed out. With one, the
 * statement that failed (for a failed Parse: the execution it was for)
 * gets its error; the others were rolled back or skipped, and go back to
 * the front of the queue, in order, for the next batch. */
static void batch_settle(pg_conn *c, pg_op *last)
{
    pg_pool *p = c->pool;
    pg_op *first = c->f_head;
    c->f_head = c->f_cur = last->next;
    if (!c->f_head)
        c->f_tail = NULL;
    last->next = NULL;

    pg_op *bad = NULL;
    unsigned statements = 0;
    for (pg_op *op = first; op; op = op->next) {
        statements += op->kind != OP_PREPARE;
        if (!bad && op->status == PGRES_FATAL_ERROR)
            bad = op;
    }
    pg_op *blame = bad && bad->kind == OP_PREPARE ? bad->pair : bad;
    pg_op *rh = NULL, *rt = NULL; /* to send again */
    for (pg_op *op = first, *next; op; op = next) {
        next = op->next;
        if (op->kind == OP_PREPARE) {
            if (op->status != PGRES_COMMAND_OK) {
                if (op->slot >= 0)
                    c->autos[op->slot].ready = 0;
                else
                    c->prepared &= ~(1ull << op->stmt);
                if (op == bad && !op->pair->abandoned) { /* the execution reports it */
                    op->pair->prep_err = op->res;
                    op->res = NULL;
                }
            }
            c->nops--;
            op_free(op);
            continue;
        }
        if (!bad || op->abandoned || op->kind == OP_INTERNAL ||
            (op == blame && !retry_alone(c, op, statements))) {
            op_complete(c, op);
            continue;
        }
        if (op == blame)
            op->solo = 1;
        op_clear(op);
        op->sent = op->got_null = op->sync_after = 0;
        op->slot = -1;
        op->next = NULL;
        if (rt)
            rt->next = op;
        else
            rh = op;
        rt = op;
        PG_ADD(p->stats->batch_retries, 1);
    }
    if (rh) {
        rt->next = c->q_head;
        c->q_head = rh;
        if (!c->q_tail)
            c->q_tail = rt;
    }
    if (c->q_head && !c->f_head) /* what queued behind the batch, and any re-sends */
        conn_kick(c);
}

/* Gives op the result r (its latest: a statement may have several).
 * Returns 1 when r was consumed (a success, copied or not wanted: r is
 * cleared), 0 when op keeps r itself (an error, or copying failed). */
static int op_take(pg_op *op, PGresult *r, ExecStatusType st)
{
    PQclear(op->res);
    free(op->rows);
    op->res = NULL;
    op->rows = NULL;
    op->status = (int)st;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        if (op->kind == OP_PREPARE || op->kind == OP_INTERNAL || op->abandoned ||
            (op->rows = rows_from(r))) {
            PQclear(r);
            return 1;
        }
    }
    op->res = r;
    return 0;
}

/* Hands complete results to their operations. libpq's pipeline sequence
 * per statement: its result(s) (PGRES_PIPELINE_ABORTED for one skipped
 * after an error), then a NULL; after the last statement of a Sync group,
 * PGRES_PIPELINE_SYNC (no NULL after it). PQgetResult would block while
 * busy, so it is only called when PQisBusy says it will not. */
static void conn_dispatch(pg_conn *c)
{
    while (c->state == C_READY && c->f_cur) {
        if (PQisBusy(c->pg))
            return;
        PGresult *r = PQgetResult(c->pg);
        pg_op *op = c->f_cur;
        /* Under load thousands of operations are in flight and each is
         * cold by the time its result comes: fetch the next one while
         * libpq parses this one's. */
        if (op->next)
            __builtin_prefetch(op->next);
        if (!op->got_null) {
            if (!r) {
                op->got_null = 1;
                if (!op->sync_after)
                    c->f_cur = op->next;
                continue;
            }
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_PIPELINE_SYNC && op->sync_after) { /* no NULL came: tolerate */
                PQclear(r);
                batch_settle(c, op);
                continue;
            }
            if (st == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                conn_close(c, -ECONNRESET, "PostgreSQL pipeline out of step");
                return;
            }
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
                PQclear(r);
                conn_close(c, -ECONNRESET, "COPY is not supported by vial_pg");
                return;
            }
            if (op->status == PGRES_FATAL_ERROR) {
                PQclear(r); /* the first error is the one to report */
                continue;
            }
            if (op_take(op, r, st))
                continue;
            const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
            if (sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC"))) {
                /* The backend is exiting (terminated, shutdown): its Sync
                 * will never come, and nothing more may be sent to it. */
                copy_trimmed(c->fatal_state, sizeof c->fatal_state, PQresultErrorField(r, PG_DIAG_SQLSTATE));
                copy_trimmed(c->fatal_msg, sizeof c->fatal_msg, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
                conn_close(c, -ECONNRESET, c->fatal_msg);
                return;
            }
            continue;
        }
        if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            batch_settle(c, op);
            continue;
        }
        /* Anything else means our queue and libpq's disagree: the
         * connection cannot be trusted any more. */
        PQclear(r);
        conn_close(c, -ECONNRESET, "PostgreSQL pipeline out of step");
        return;
    }
}

static void deliver_notify(pg_pool *p, const PGnotify *n);

static void conn_notifies(pg_conn *c)
{
    PGnotify *n;
    while (c->state == C_READY && (n = PQnotifies(c->pg))) {
        if (c->is_listen)
            deliver_notify(c->pool, n);
        PQfreemem(n);
    }
}

/* Reads until the socket is drained: the loop's registration is
 * edge-triggered and one PQconsumeInput is one read, so stopping early could
 * leave results in the socket with no further event to announce them. */
static void conn_read(pg_conn *c)
{
    c->read_more = 0;
    for (int round = 0;; round++) {
        if (!PQconsumeInput(c->pg)) {
            conn_close(c, -ECONNRESET, PQerrorMessage(c->pg));
            return;
        }
        conn_dispatch(c);
        conn_notifies(c);
        if (c->state == C_READY && c->fatal_msg[0]) {
            /* FATAL outside a query (admin shutdown, pg_terminate_backend):
             * the server closes next, maybe not at once; whatever is queued
             * must not be sent into that. */
            conn_close(c, -ECONNRESET, c->fatal_msg);
            return;
        }
        if (c->state != C_READY)
            return;
        if (!fd_readable(c->io.fd)) {
            c->drained_at = vial_drv_now(c->pool->loop) + 1;
            return;
        }
        if (round == PG_READ_ROUNDS) { /* let other fds have the loop */
            c->read_more = 1;
            conn_kick(c);
            return;
        }
    }
}

static void conn_io_cb(vial_loop *l, vial_io *io, unsigned ev)
{
    pg_conn *c = (pg_conn *)io;
    if (c->state == C_CONNECTING) {
        conn_connect_step(c, ev);
        return;
    }
    if (c->state != C_READY)
        return; /* closed; freed after this batch */
    if (ev & (VIAL_IO_READ | VIAL_IO_HUP | VIAL_IO_ERR))
        conn_read(c);
    if (c->state == C_READY && (ev & VIAL_IO_WRITE) && c->out_pending)
        conn_flush_out(c);
}

static void kick_cb(vial_drv_timer *t)
{
    pg_pool *p = vial_container_of(t, pg_pool, kick_timer);
    pg_conn *list = p->kick_head;
    p->kick_head = NULL;
    while (list) {
        pg_conn *c = list;
        list = c->next_kick;
        c->kicked = 0;
        if (c->state == C_READY && c->read_more)
            conn_read(c);
        conn_send(c);
        conn_unref(c);
    }
}

/* Schedules conn_send for after the coroutines that are running now (and
 * queueing now) have parked. */
static void conn_kick(pg_conn *c)
{
    if (c->kicked || c->state == C_CLOSED)
        return;
    pg_pool *p = c->pool;
    c->kicked = 1;
    c->refs++;
    c->next_kick = p->kick_head;
    p->kick_head = c;
    vial_drv_kick(&p->kick_timer, 0);
}

/* --- per-thread pools ------------------------------------------------------------------------ */

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int loop_key = -1;

static void key_init(void)
{
    loop_key = vial_drv_key();
}

static void pool_destroy(pg_pool *p);

static void local_exit(void *arg)
{
    pg_local *L = arg;
    while (L->pools) {
        pg_pool *p = L->pools;
        L->pools = p->next;
        pool_destroy(p);
    }
    free(L);
}

/* --- metrics (driver.h's sources) ------------------------------------------------------- */


static pthread_mutex_t mlist_mu = PTHREAD_MUTEX_INITIALIZER;
static vial_pg *mlist;
static unsigned mlist_next_id;
static int msource_added;

static void metrics_write(void *data, vial_metrics_out *out);

static void metrics_remember(vial_pg *db)
{
    pthread_mutex_lock(&mlist_mu);
    db->metrics_id = mlist_next_id++;
    db->mnext = mlist;
    mlist = db;
    if (!msource_added)
        msource_added = vial_metrics_source_add(metrics_write, NULL) == 0;
    pthread_mutex_unlock(&mlist_mu);
}

static void metrics_forget(vial_pg *db)
{
    pthread_mutex_lock(&mlist_mu);
    for (vial_pg **pp = &mlist; *pp; pp = &(*pp)->mnext)
        if (*pp == db) {
            *pp = db->mnext;
            break;
        }
    pthread_mutex_unlock(&mlist_mu);
}

/* The families: fields of pg_mblock, each summed over a db's loops. */
static const struct {
    const char *name, *type, *help;
    size_t off;
    int narrow; /* an unsigned, not a uint64_t */
} pg_families[] = {
    {"vial_pg_connections", "gauge", "PostgreSQL query connections open now, by pool.",
     offsetof(pg_mblock, s.conns), 1},
    {"vial_pg_waiters", "gauge", "Coroutines waiting for a PostgreSQL connection now, by pool.",
     offsetof(pg_mblock, waiters), 0},
    {"vial_pg_queries_total", "counter", "PostgreSQL statements sent, by pool.", offsetof(pg_mblock, s.queries), 0},
    {"vial_pg_errors_total", "counter",
     "PostgreSQL statements that failed (server error or lost connection), by pool.",
     offsetof(pg_mblock, errors), 0},
    {"vial_pg_batches_total", "counter",
     "PostgreSQL pipeline batches written (queries_total / batches_total: the mean batch).",
     offsetof(pg_mblock, s.batches), 0},
    {"vial_pg_connects_total", "counter", "PostgreSQL connections established, by pool.",
     offsetof(pg_mblock, s.connects), 0},
    {"vial_pg_connect_failures_total", "counter", "PostgreSQL connection attempts that failed.",
     offsetof(pg_mblock, s.connect_failures), 0},
    {"vial_pg_broken_total", "counter", "PostgreSQL connections found broken (then replaced).",
     offsetof(pg_mblock, s.broken), 0},
    {"vial_pg_retries_total", "counter", "PostgreSQL queries moved to a fresh connection.",
     offsetof(pg_mblock, s.retries), 0},
    {"vial_pg_batch_retries_total", "counter",
     "PostgreSQL statements sent again because another of their batch failed.",
     offsetof(pg_mblock, s.batch_retries), 0},
    {"vial_pg_cancels_total", "counter", "PostgreSQL cancel requests sent.", offsetof(pg_mblock, s.cancels), 0},
};

static void metrics_write(void *data, vial_metrics_out *out)
{
    (void)data;
    pthread_mutex_lock(&mlist_mu);
    for (size_t f = 0; mlist && f < sizeof pg_families / sizeof pg_families[0]; f++) {
        vial_metrics_family(out, pg_families[f].name, pg_families[f].type, pg_families[f].help);
        for (vial_pg *db = mlist; db; db = db->mnext) {
            uint64_t v = 0;
            pthread_mutex_lock(&db->stmt_lock);
            for (pg_mblock *mb = db->mblocks; mb; mb = mb->next) {
                char *field = (char *)mb + pg_families[f].off;
                v += pg_families[f].narrow ? PG_LOAD(*(unsigned *)field) : PG_LOAD(*(uint64_t *)field);
            }
            pthread_mutex_unlock(&db->stmt_lock);
            vial_metrics_sample_pool(out, pg_families[f].name, db->metrics_id, v);
        }
    }
    pthread_mutex_unlock(&mlist_mu);
}

static void db_unref(vial_pg *db)
{
    if (atomic_fetch_sub(&db->refs, 1) != 1)
        return;
    for (unsigned i = 0; i < atomic_load(&db->nstmts); i++) {
        free(db->stmts[i].name);
        free(db->stmts[i].sql);
    }
    metrics_forget(db);
    for (pg_mblock *mb = db->mblocks, *next; mb; mb = next) {
        next = mb->next;
        free(mb);
    }
    pthread_mutex_destroy(&db->stmt_lock);
    free(db->conninfo);
    free(db);
}

/* The calling coroutine's pool for db, created on first use. */
static int pool_get(vial_req *rq, vial_pg *db, pg_pool **out)
{
    if (!rq || !db)
        return -EINVAL;
    vial_coro *co = vial_drv_self();
    if (vial_req_is_sync(rq) || !co)
        return -EPERM;
    pthread_once(&key_once, key_init);
    if (loop_key < 0)
        return -ENOSPC;
    vial_loop *l = vial_drv_coro_loop(co);
    pg_local *L = vial_drv_local_get(l, loop_key);
    if (!L) {
        L = calloc(1, sizeof *L);
        if (!L)
            return -ENOMEM;
        L->loop = l;
        L->key = loop_key;
        if (vial_drv_local_set(l, loop_key, L, local_exit) < 0) {
            free(L);
            return -ENOMEM;
        }
    }
    for (pg_pool *p = L->pools; p; p = p->next) {
        if (p->db == db) {
            *out = p;
            return 0;
        }
    }
    pg_pool *p = calloc(1, sizeof *p);
    pg_mblock *mb = calloc(1, sizeof *mb);
    if (!p || !mb) {
        free(p);
        free(mb);
        return -ENOMEM;
    }
    pthread_mutex_lock(&db->stmt_lock);
    mb->next = db->mblocks;
    db->mblocks = mb;
    pthread_mutex_unlock(&db->stmt_lock);
    p->stats = &mb->s;
    p->db = db;
    atomic_fetch_add(&db->refs, 1);
    p->loop = l;
    vial_drv_timer_init(&p->kick_timer, l, kick_cb);
    p->next = L->pools;
    L->pools = p;
    *out = p;
    return 0;
}

static void pool_destroy(pg_pool *p)
{
    vial_drv_timer_stop(&p->kick_timer);
    while (p->kick_head) {
        pg_conn *c = p->kick_head;
        p->kick_head = c->next_kick;
        c->kicked = 0;
        conn_unref(c);
    }
    while (p->conns)
        conn_close(p->conns, -ESHUTDOWN, "the loop ended");
    if (p->listen)
        conn_close(p->listen, -ESHUTDOWN, "the loop ended");
    /* Nothing runs on this loop any more: free what waits for the reaper,
     * whatever still refers to it. */
    if (p->reap_scheduled)
        vial_drv_defer_cancel(p->loop, &p->reap_msg);
    while (p->graveyard) {
        pg_conn *c = p->graveyard;
        p->graveyard = c->next;
        free(c);
    }
    while (p->chans) {
        pg_chan *ch = p->chans;
        p->chans = ch->next;
        free(ch);
    }
    while (p->op_cache) {
        pg_op *op = p->op_cache;
        p->op_cache = op->next;
        free(op);
    }
    PG_SET(p->stats->conns, 0);
    db_unref(p->db);
    free(p);
}

/* Waits until a connection is unpinned or closed (cancellable). */
static int slot_wait(pg_pool *p)
{
    pg_mblock *mb = vial_container_of(p->stats, pg_mblock, s);
    PG_SET(mb->waiters, mb->waiters + 1);
    int r = vial_drv_queue_wait(&p->slot_waiters, 0, NULL);
    PG_SET(mb->waiters, mb->waiters - 1);
    return r;
}

/* Chooses a connection for a new operation: one whose batch is forming
 * (queued this turn or while connecting, nothing in flight) while it holds fewer than
 * PG_JOIN_MAX, so a burst leaves in few batches; else an idle one; else a
 * new one while the pool may grow (slow queries then run side by side);
 * else the least busy, to queue behind. Connections pinned by
 * transactions are not shared; when all are, wait. */
static int pool_pick(pg_pool *p, pg_conn **out)
{
    for (;;) {
        pg_conn *best = NULL, *pending = NULL;
        for (pg_conn *c = p->conns; c; c = c->next) {
            if (c->state == C_CLOSED || c->pinned || c->retiring)
                continue;
            if (c->q_head && !c->f_head && !c->hold && c->nops < PG_JOIN_MAX) {
                *out = c;
                return 0;
            }
        }
        for (pg_conn *c = p->conns; c; c = c->next) {
            if (c->state == C_CLOSED || c->pinned || c->retiring)
                continue;
            if (c->state == C_READY) {
                if (!c->nops && !c->hold) {
                    *out = c;
                    return 0;
                }
                if (!best || c->nops < best->nops)
                    best = c;
            } else if (!pending || c->nops < pending->nops) {
                pending = c;
            }
        }
        if (p->nconns < p->db->max_conns &&
            (!p->nconns || vial_drv_now(p->loop) >= p->grow_blocked_until)) {
            *out = conn_new(p, 0);
            return *out ? 0 : -ENOMEM;
        }
        if (best || pending) {
            *out = best ? best : pending;
            return 0;
        }
        int r = slot_wait(p);
        if (r < 0)
            return r;
    }
}

/* --- running an operation ----------------------------------------------------------------------- */

static void op_enqueue(pg_conn *c, pg_op *op)
{
    op->conn = c;
    op->next = NULL;
    if (c->q_tail)
        c->q_tail->next = op;
    else
        c->q_head = op;
    c->q_tail = op;
    c->nops++;
}

static int op_await(pg_op *op)
{
    vial_coro *self = vial_drv_self();
    while (!op->done) {
        op->waiter = self;
        int r = vial_drv_wait(0);
        op->waiter = NULL;
        if (r < 0 && !op->done)
            return r;
    }
    return 0;
}

struct cancel_job {
    PGcancel *pc;
    int ok;
    char err[256];
};

static void cancel_fn(void *arg)
{
    struct cancel_job *j = arg;
    j->ok = PQcancel(j->pc, j->err, sizeof j->err);
    PQfreeCancel(j->pc);
}

static void *cancel_thread(void *arg)
{
    PGcancel *pc = arg;
    char err[256];
    PQcancel(pc, err, sizeof err);
    PQfreeCancel(pc);
    return NULL;
}

/* Asks the server to cancel what c's backend is running. PQcancel opens a
 * connection and waits for the server to act on it: a blocking call, so it
 * runs on the worker pool and this coroutine waits for it (libpq's own
 * advice: a command sent before the cancel was processed could be the one
 * it cancels). If the pool is saturated, a detached thread sends it. */
static void send_cancel(vial_req *rq, pg_pool *p, PGcancel *pc)
{
    if (!pc)
        return;
    PG_ADD(p->stats->cancels, 1);
    struct cancel_job job = {pc, 0, ""};
    if (vial_offload_wait(rq, cancel_fn, NULL, &job) == 0)
        return;
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, cancel_thread, pc) != 0)
        PQfreeCancel(pc);
    pthread_attr_destroy(&a);
}

/* The waiter of op gave up (cancelled, timed out). Not sent yet: it is
 * simply dropped. In flight: its result will be dropped, and the query is
 * cancelled on the server when no one else's statement could be hit:
 *  - op is the only statement in flight: hold the connection (send nothing
 *    new), cancel, release; the cancel's error result is drained and the
 *    connection goes on serving;
 *  - others are in flight but all of them are doomed too (a cancelled
 *    gather): the connection is closed with a TCP reset, then the running
 *    statement is cancelled. A cancel alone would only stop the first: the
 *    backend would go on with the next statement already in its buffer.
 *    Closed first, the backend's write of the cancelled statement's error
 *    fails and it exits before running another (a plain close is not
 *    enough: the first write to a peer that sent FIN still succeeds);
 *  - a live statement is in flight with it: leave it to finish; a cancel
 *    could hit the live one. */
static void op_abandon(vial_req *rq, pg_op *op)
{
    pg_conn *c = op->conn;
    if (!c) { /* detached (its connection closed) but not yet seen as done */
        op_free(op);
        return;
    }
    if (!op->sent) {
        pg_op **pp = &c->q_head, *prev = NULL;
        while (*pp && *pp != op) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = op->next;
            if (c->q_tail == op)
                c->q_tail = prev;
            c->nops--;
        }
        op_free(op);
        return;
    }
    op->abandoned = 1;
    op->waiter = NULL;
    if (c->state != C_READY)
        return;
    pg_pool *p = c->pool;
    int others = 0, live = 0;
    for (pg_op *o = c->f_head; o; o = o->next) {
        if (o == op || (o->kind == OP_PREPARE && o->pair == op))
            continue;
        others++;
        if (o->kind == OP_PREPARE || o->kind == OP_INTERNAL)
            live = 1; /* a transaction's ROLLBACK, a LISTEN: never cancel those */
        else if (!o->abandoned && (!o->waiter || !vial_drv_doomed(o->waiter)))
            live = 1;
    }
    if (live)
        return;
    c->refs++;
    if (!others) {
        c->hold = 1;
        send_cancel(rq, p, PQgetCancel(c->pg));
        c->hold = 0;
        if (c->state == C_READY && c->q_head)
            conn_kick(c);
    } else {
        c->retiring = 1;
        PGcancel *pc = PQgetCancel(c->pg);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(PQsocket(c->pg), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        conn_close(c, -ECANCELED, "cancelled");
        send_cancel(rq, p, pc);
    }
    conn_unref(c);
}

enum { T_POOL, T_TX, T_LISTEN };

/* Runs op to completion on a connection of p (T_POOL), tx's (T_TX) or the
 * LISTEN connection (T_LISTEN). Returns 0 when op is done (the caller reads
 * and frees it), or -ECANCELED / -ETIMEDOUT / a pick error, op then being
 * no longer the caller's. */
static int op_exec(vial_req *rq, pg_pool *p, int target, vial_pg_tx *tx, pg_op *op)
{
    int doomed = vial_drv_cancelled();
    if (doomed) {
        op_free(op);
        return doomed;
    }
    op->solo = target != T_POOL; /* never in a stranger's implicit transaction */
    for (int attempt = 0;; attempt++) {
        pg_conn *c;
        if (target == T_TX) {
            c = tx->conn;
            if (!c || c->state == C_CLOSED) {
                op_fail(op, -ECONNRESET, "08006", "the transaction's connection was lost");
                return 0;
            }
        } else if (target == T_LISTEN) {
            c = p->listen;
            if (!c && !(c = conn_new(p, 1))) {
                op_fail(op, -ENOMEM, "", "out of memory");
                return 0;
            }
        } else {
            int e = pool_pick(p, &c);
            if (e < 0) {
                op_free(op);
                return e;
            }
        }
        op_enqueue(c, op);
        if (c->state == C_NEW)
            conn_start(c, rq);
        else
            conn_kick(c);
        int r = op_await(op);
        if (r < 0) {
            op_abandon(rq, op);
            return r;
        }
        if (op->err != PG_RETRY || target == T_TX || attempt + 1 >= PG_MAX_RETRIES)
            break;
        op_reset(op);
        PG_ADD(p->stats->retries, 1);
    }
    if (op->err == PG_RETRY && target != T_TX)
        op->err = -ECONNRESET;
    return 0;
}

/* --- results ----------------------------------------------------------------------------------- */

void vial_pg_result_free(vial_pg_result *r)
{
    if (r) {
        PQclear(r->pg);
        free(r->rows);
        r->pg = NULL;
        r->rows = NULL;
    }
}

static void result_cleanup(void *arg)
{
    vial_pg_result_free(arg);
}

static vial_pg_result *result_new(vial_req *rq, pg_rows *rows, PGresult *pg, int code,
                                  const char *state, const char *msg)
{
    vial_pg_result *r = vial_alloc(rq, sizeof *r);
    if (!r || vial_req_on_end(rq, result_cleanup, r) < 0) {
        PQclear(pg);
        free(rows);
        return NULL;
    }
    r->rows = rows;
    r->pg = pg;
    r->code = code;
    copy_trimmed(r->sqlstate, sizeof r->sqlstate, state);
    r->message = msg ? vial_strdup(rq, msg) : NULL;
    return r;
}

/* The error a server result stands for: admin shutdown / crash shutdown /
 * cannot connect now (class 57P) mean the connection is going away. */
static int server_error_code(const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (st && (!strcmp(st, "57P01") || !strcmp(st, "57P02") || !strcmp(st, "57P03")))
        return -ECONNRESET;
    return VIAL_PG_ESQL;
}

/* Turns a finished operation into the caller's result and return value,
 * and frees it. */
static int op_result(vial_req *rq, pg_op *op, vial_pg_result **out)
{
    PGresult *res = op->res;
    pg_rows *rows = op->rows;
    int status = op->status;
    op->res = NULL;
    op->rows = NULL;
    if (op->prep_err) { /* preparing failed: that is the real error */
        PQclear(res);
        free(rows);
        rows = NULL;
        res = op->prep_err;
        op->prep_err = NULL;
        status = PQresultStatus(res);
    }
    int code = op->err;
    const char *state = op->errstate;
    if (!code) {
        if (!res && !rows) {
            code = -EIO;
            state = "08006";
        } else {
            switch (status) {
            case PGRES_TUPLES_OK:
            case PGRES_COMMAND_OK:
            case PGRES_EMPTY_QUERY:
                break;
            case PGRES_FATAL_ERROR:
            case PGRES_NONFATAL_ERROR:
            case PGRES_BAD_RESPONSE:
                code = res ? server_error_code(res) : VIAL_PG_ESQL;
                break;
            default:
                code = -EPROTO;
                break;
            }
        }
    }
    if (code && op->pool) {
        pg_mblock *mb = vial_container_of(op->pool->stats, pg_mblock, s);
        PG_ADD(mb->errors, 1);
    }
    if (code && status != PGRES_FATAL_ERROR) {
        PQclear(res); /* a client-side error: the result, if any, says nothing */
        free(rows);
        res = NULL;
        rows = NULL;
    }
    if (!out) {
        PQclear(res);
        free(rows);
        op_free(op);
        return code;
    }
    if (code && !res && !op->errmsg) {
        char m[96];
        /* strerror may share one buffer between threads; this does not */
        const char *why = strerrordesc_np(-code);
        snprintf(m, sizeof m, "PostgreSQL client error: %s", why ? why : "unknown error");
        *out = result_new(rq, NULL, NULL, code, state, m);
    } else {
        int has = res || rows;
        *out = result_new(rq, rows, res, code, has ? "" : state, has ? NULL : op->errmsg);
    }
    op_free(op);
    if (!*out && !code)
        return -ENOMEM;
    return code;
}

/* The result for an await that was cancelled or timed out. */
static int cancel_result(vial_req *rq, int code, vial_pg_result **out)
{
    if (out && (code == -ECANCELED || code == -ETIMEDOUT))
        *out = result_new(rq, NULL, NULL, code, "57014",
                          code == -ETIMEDOUT ? "canceling statement: the deadline passed"
                                             : "canceling statement: the request was cancelled");
    return code;
}

/* --- queries --------------------------------------------------------------------------------------- */

static int stmt_find(vial_pg *db, const char *name)
{
    unsigned n = atomic_load_explicit(&db->nstmts, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (!strcmp(db->stmts[i].name, name))
            return (int)i;
    return -1;
}

static int check_params(int nparams, const char *const *params)
{
    return nparams < 0 || nparams > 65535 || (nparams > 0 && !params) ? -EINVAL : 0;
}

static int run_statement(vial_req *rq, vial_pg *db, int target, vial_pg_tx *tx,
                         vial_pg_result **out, int kind, const char *text, int nparams,
                         const char *const *params)
{
    if (out)
        *out = NULL;
    if (!text || check_params(nparams, params) < 0)
        return -EINVAL;
    pg_pool *p;
    int e;
    if (target == T_TX) {
        if (!tx || !tx->open)
            return -EINVAL;
        if (vial_req_is_sync(rq) || !vial_drv_self())
            return -EPERM;
        p = tx->pool;
    } else if ((e = pool_get(rq, db, &p)) < 0) {
        return e;
    }
    int stmt = -1;
    if (kind == OP_PREPARED && (stmt = stmt_find(p->db, text)) < 0)
        return -EINVAL;
    pg_op *op = op_new(p, kind);
    if (!op)
        return -ENOMEM;
    op->sql = text;
    op->stmt = stmt;
    op->nparams = nparams;
    op->params = params;
    e = op_exec(rq, p, target, tx, op);
    if (e < 0)
        return cancel_result(rq, e, out);
    if (op->err == PG_RETRY) /* a transaction's connection broke */
        op->err = -ECONNRESET;
    return op_result(rq, op, out);
}

static int pg_query(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *sql, int nparams,
                    const char *const *params)
{
    return run_statement(rq, db, T_POOL, NULL, out, OP_QUERY, sql, nparams, params);
}

static int pg_exec_prepared(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *name,
                            int nparams, const char *const *params)
{
    return run_statement(rq, db, T_POOL, NULL, out, OP_PREPARED, name, nparams, params);
}

/* Issues op on a connection of p (coroutine context, does not wait).
 * *last is where the caller's previous statement went: when that one
 * queued behind a batch in flight (the pool is busy), this one follows
 * it, so that a vial_pg_query_all under load waits for one batch and is
 * woken once, not once per connection its statements were spread over;
 * while connections are idle they still spread (pool_pick), and run side
 * by side. */
static int op_issue(vial_req *rq, pg_pool *p, pg_op *op, pg_conn **last)
{
    pg_conn *c = *last;
    if (!c || !c->f_head || c->state != C_READY || c->pinned || c->retiring || c->hold) {
        int e = pool_pick(p, &c);
        if (e < 0)
            return e;
    }
    *last = c;
    op_enqueue(c, op);
    if (c->state == C_NEW) {
        *last = NULL; /* connecting may yield, and c may be gone after */
        conn_start(c, rq);
    } else {
        conn_kick(c);
    }
    return 0;
}

static int pg_query_all(vial_req *rq, vial_pg *db, vial_pg_stmt *stmts, size_t n)
{
    if (!n)
        return 0;
    if (!stmts)
        return -EINVAL;
    pg_pool *p;
    int e = pool_get(rq, db, &p);
    for (size_t i = 0; i < n; i++) {
        stmts[i].result = NULL;
        stmts[i].error = e;
    }
    if (e < 0)
        return e;
    pg_op **ops = vial_alloc(rq, n * sizeof *ops);
    if (!ops)
        return -ENOMEM;
    vial_coro *self = vial_drv_self();
    int stop = vial_drv_cancelled();
    pg_conn *last = NULL; /* only compared, never used after a wait */
    /* Queue them all before anything is written: the kick timer sends them
     * as one batch per connection. */
    for (size_t i = 0; i < n; i++) {
        vial_pg_stmt *st = &stmts[i];
        ops[i] = NULL;
        st->error = stop;
        if (stop)
            continue;
        int stmt = -1;
        if (!st->sql || check_params(st->nparams, st->params) < 0 ||
            (st->prepared && (stmt = stmt_find(p->db, st->sql)) < 0)) {
            st->error = -EINVAL;
            continue;
        }
        pg_op *op = op_new(p, st->prepared ? OP_PREPARED : OP_QUERY);
        if (!op) {
            st->error = -ENOMEM;
            continue;
        }
        op->sql = st->sql;
        op->stmt = stmt;
        op->nparams = st->nparams;
        op->params = st->params;
        if ((e = op_issue(rq, p, op, &last)) < 0) { /* cancelled while waiting for a connection */
            op_free(op);
            st->error = e;
            stop = e;
            continue;
        }
        ops[i] = op;
    }
    int retries = 0;
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < n; i++) {
            pg_op *op = ops[i];
            if (!op || !op->done)
                continue;
            if (op->err == PG_RETRY && !stop && retries < PG_MAX_RETRIES * (int)n) {
                /* never sent, its connection gone: issue it again */
                op_reset(op);
                retries++;
                PG_ADD(p->stats->retries, 1);
                last = NULL;
                if ((e = op_issue(rq, p, op, &last)) < 0) {
                    op_free(op);
                    ops[i] = NULL;
                    stmts[i].error = e;
                    stop = e;
                }
                continue;
            }
            if (op->err == PG_RETRY)
                op->err = -ECONNRESET;
            stmts[i].error = op_result(rq, op, &stmts[i].result);
            ops[i] = NULL;
        }
        for (size_t i = 0; i < n; i++)
            pending += ops[i] && !ops[i]->done;
        if (!pending) {
            int left = 0;
            for (size_t i = 0; i < n; i++)
                left |= ops[i] != NULL;
            if (!left)
                break;
            continue; /* some finished meanwhile: collect them */
        }
        if (stop)
            break;
        for (size_t i = 0; i < n; i++)
            if (ops[i] && !ops[i]->done)
                ops[i]->waiter = self;
        int r = vial_drv_wait(0);
        for (size_t i = 0; i < n; i++)
            if (ops[i])
                ops[i]->waiter = NULL;
        if (r < 0)
            stop = r;
    }
    if (stop) {
        /* Give up on what still runs. The waiters stay set while abandoning,
         * so each abandon sees its siblings as doomed, not live. */
        for (size_t i = 0; i < n; i++)
            if (ops[i] && !ops[i]->done)
                ops[i]->waiter = self;
        for (size_t i = 0; i < n; i++) {
            pg_op *op = ops[i];
            if (!op)
                continue;
            if (op->done) {
                op->waiter = NULL;
                if (op->err == PG_RETRY)
                    op->err = stop;
                stmts[i].error = op_result(rq, op, &stmts[i].result);
            } else {
                op_abandon(rq, op);
                stmts[i].error = cancel_result(rq, stop, &stmts[i].result);
            }
            ops[i] = NULL;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (stmts[i].error < 0)
            return stmts[i].error;
    return 0;
}

int vial_pg_prepare(vial_pg *db, const char *name, const char *sql)
{
    if (!db || !name || !*name || strlen(name) > PG_NAME_MAX || !sql)
        return -EINVAL;
    pthread_mutex_lock(&db->stmt_lock);
    int r = 0;
    unsigned n = atomic_load_explicit(&db->nstmts, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        if (!strcmp(db->stmts[i].name, name)) {
            r = strcmp(db->stmts[i].sql, sql) ? -EEXIST : 0;
            goto out;
        }
    }
    if (n == PG_MAX_STMTS) {
        r = -ENOSPC;
        goto out;
    }
    db->stmts[n].name = strdup(name);
    db->stmts[n].sql = strdup(sql);
    db->stmts[n].reads = sql_reads(sql);
    if (!db->stmts[n].name || !db->stmts[n].sql) {
        free(db->stmts[n].name);
        free(db->stmts[n].sql);
        r = -ENOMEM;
        goto out;
    }
    atomic_store_explicit(&db->nstmts, n + 1, memory_order_release);
out:
    pthread_mutex_unlock(&db->stmt_lock);
    return r;
}

struct spawn_args {
    vial_pg *db;
    vial_pg_result **out;
    const char *text;
    int nparams;
    const char **params;
    int prepared;
};

static int spawn_main(vial_req *rq, void *arg)
{
    struct spawn_args *a = arg;
    return a->prepared
               ? vial_pg_exec_prepared(rq, a->db, a->out, a->text, a->nparams, a->params)
               : vial_pg_query(rq, a->db, a->out, a->text, a->nparams, a->params);
}

static vial_task *spawn_statement(vial_req *rq, vial_pg *db, vial_pg_result **out,
                                  const char *text, int nparams, const char *const *params,
                                  int prepared)
{
    if (!text || check_params(nparams, params) < 0)
        return NULL;
    struct spawn_args *a = vial_alloc(rq, sizeof *a);
    if (!a)
        return NULL;
    a->db = db;
    a->out = out;
    a->prepared = prepared;
    a->nparams = nparams;
    a->text = vial_strdup(rq, text);
    a->params = nparams ? vial_alloc(rq, (size_t)nparams * sizeof *a->params) : NULL;
    if (!a->text || (nparams && !a->params))
        return NULL;
    for (int i = 0; i < nparams; i++) {
        a->params[i] = params[i] ? vial_strdup(rq, params[i]) : NULL;
        if (params[i] && !a->params[i])
            return NULL;
    }
    return vial_spawn(rq, spawn_main, a);
}

vial_task *vial_pg_spawn_query(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *sql,
                               int nparams, const char *const *params)
{
    return spawn_statement(rq, db, out, sql, nparams, params, 0);
}

vial_task *vial_pg_spawn_prepared(vial_req *rq, vial_pg *db, vial_pg_result **out,
                                  const char *name, int nparams, const char *const *params)
{
    return spawn_statement(rq, db, out, name, nparams, params, 1);
}

/* --- transactions ---------------------------------------------------------------------------------- */

/* Queues a statement nobody waits for (a transaction's ROLLBACK, an
 * UNLISTEN) and writes it now if the connection can: this may run from a
 * request's cleanup, outside any coroutine, after which the loop may not
 * turn for a while (the test client). */
static void conn_fire(pg_conn *c, const char *sql, char *owned)
{
    if (c->state == C_CLOSED) {
        free(owned);
        return;
    }
    pg_op *op = op_new(c->pool, OP_INTERNAL);
    if (!op) {
        free(owned);
        /* Could not queue the statement that restores the session: better
         * lose the connection than leave it inside a transaction. */
        conn_close(c, -ENOMEM, "out of memory");
        return;
    }
    op->sql = sql;
    op->owned = owned;
    op->solo = 1;
    op_enqueue(c, op);
    if (c->state == C_READY && !c->hold)
        conn_send(c);
}

static void tx_unpin(vial_pg_tx *tx)
{
    pg_conn *c = tx->conn;
    tx->open = 0;
    if (!c)
        return;
    tx->conn = NULL;
    c->pinned = NULL;
    slot_wake(tx->pool);
    conn_unref(c);
}

/* Ends a transaction whose outcome is unknown or unwanted: ROLLBACK is
 * queued before the connection goes back to the pool, so the next user
 * starts outside any transaction. */
static void tx_abort(vial_pg_tx *tx)
{
    if (tx->conn)
        conn_fire(tx->conn, "ROLLBACK", NULL);
    tx_unpin(tx);
}

static void tx_cleanup(void *arg)
{
    vial_pg_tx *tx = arg;
    if (tx->open)
        tx_abort(tx);
}

static int pg_begin(vial_req *rq, vial_pg *db, vial_pg_tx **txp, vial_pg_result **out)
{
    if (out)
        *out = NULL;
    if (!txp)
        return -EINVAL;
    *txp = NULL;
    pg_pool *p;
    int e = pool_get(rq, db, &p);
    if (e < 0)
        return e;
    vial_pg_tx *tx = vial_alloc(rq, sizeof *tx);
    if (!tx || vial_req_on_end(rq, tx_cleanup, tx) < 0)
        return -ENOMEM;
    memset(tx, 0, sizeof *tx);
    tx->pool = p;
    for (int attempt = 0;; attempt++) {
        pg_conn *c;
        /* A transaction takes a connection of its own: pool_pick skips the
         * pinned ones and waits when all are. */
        if ((e = pool_pick(p, &c)) < 0)
            return cancel_result(rq, e, out);
        c->pinned = tx;
        c->refs++;
        tx->conn = c;
        tx->open = 1;
        pg_op *op = op_new(p, OP_QUERY);
        if (!op) {
            tx_unpin(tx);
            return -ENOMEM;
        }
        op->sql = "BEGIN";
        e = op_exec(rq, p, T_TX, tx, op);
        if (e < 0) {
            tx_abort(tx);
            return cancel_result(rq, e, out);
        }
        if (op->err == PG_RETRY && attempt + 1 < PG_MAX_RETRIES) {
            /* the connection broke before BEGIN went out: take another */
            op_free(op);
            tx_unpin(tx);
            PG_ADD(p->stats->retries, 1);
            continue;
        }
        if (op->err == PG_RETRY)
            op->err = -ECONNRESET;
        e = op_result(rq, op, out);
        if (e < 0) {
            tx_abort(tx);
            return e;
        }
        *txp = tx;
        return 0;
    }
}

static int pg_tx_query(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out, const char *sql,
                       int nparams, const char *const *params)
{
    return run_statement(rq, NULL, T_TX, tx, out, OP_QUERY, sql, nparams, params);
}

static int pg_tx_exec_prepared(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out, const char *name,
                               int nparams, const char *const *params)
{
    return run_statement(rq, NULL, T_TX, tx, out, OP_PREPARED, name, nparams, params);
}

static int tx_end(vial_req *rq, vial_pg_tx *tx, const char *sql, vial_pg_result **out)
{
    if (out)
        *out = NULL;
    if (!tx || !tx->open)
        return -EINVAL;
    vial_pg_result *r = NULL;
    int e = run_statement(rq, NULL, T_TX, tx, &r, OP_QUERY, sql, 0, NULL);
    if (e == -ECANCELED || e == -ETIMEDOUT || e == -ENOMEM) {
        tx_abort(tx); /* unknown outcome: make sure the session is clean */
    } else {
        tx_unpin(tx);
    }
    /* COMMIT of a transaction that had failed answers "ROLLBACK", no error. */
    if (e == 0 && !strcmp(sql, "COMMIT") && r && !strcmp(vial_pg_cmd_status(r), "ROLLBACK")) {
        vial_pg_result_free(r);
        r = result_new(rq, NULL, NULL, VIAL_PG_ESQL, "25P02",
                       "the transaction was aborted by an earlier error and has been rolled back");
        e = VIAL_PG_ESQL;
    }
    if (out)
        *out = r;
    return e;
}

static int pg_commit(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out)
{
    return tx_end(rq, tx, "COMMIT", out);
}

static int pg_rollback(vial_req *rq, vial_pg_tx *tx)
{
    return tx_end(rq, tx, "ROLLBACK", NULL);
}

/* --- LISTEN / NOTIFY ---------------------------------------------------------------------------------- */

/* "name" with embedded quotes doubled: a case-preserving identifier. */
static char *quote_ident(const char *verb, const char *name)
{
    size_t n = strlen(verb) + 2 * strlen(name) + 4;
    char *s = malloc(n), *w = s;
    if (!s)
        return NULL;
    w += sprintf(w, "%s \"", verb);
    for (const char *r = name; *r; r++) {
        if (*r == '"')
            *w++ = '"';
        *w++ = *r;
    }
    *w++ = '"';
    *w = 0;
    return s;
}

static void note_free_all(vial_pg_listener *l)
{
    while (l->head) {
        struct pg_note *n = l->head;
        l->head = n->next;
        free(n);
    }
    l->tail = NULL;
    l->count = 0;
    free(l->current);
    l->current = NULL;
}

static void deliver_notify(pg_pool *p, const PGnotify *n)
{
    pg_chan *ch = p->chans;
    while (ch && strcmp(ch->name, n->relname))
        ch = ch->next;
    if (!ch)
        return;
    size_t cl = strlen(n->relname) + 1, pl = strlen(n->extra ? n->extra : "") + 1;
    for (vial_pg_listener *l = ch->listeners; l; l = l->next) {
        struct pg_note *note = malloc(sizeof *note + cl + pl);
        if (!note) {
            l->overflow = 1;
            continue;
        }
        note->next = NULL;
        note->pid = n->be_pid;
        memcpy(note->channel, n->relname, cl);
        note->payload = note->channel + cl;
        memcpy(note->payload, n->extra ? n->extra : "", pl);
        if (l->count >= p->db->notify_max) { /* bounded: drop the oldest */
            struct pg_note *old = l->head;
            l->head = old->next;
            if (!l->head)
                l->tail = NULL;
            free(old);
            l->count--;
            l->overflow = 1;
        }
        if (l->tail)
            l->tail->next = note;
        else
            l->head = note;
        l->tail = note;
        l->count++;
        if (l->waiter)
            vial_drv_wake(l->waiter, 0);
    }
}

static void listeners_lost(pg_pool *p, unsigned gen)
{
    for (pg_chan *ch = p->chans; ch; ch = ch->next) {
        for (vial_pg_listener *l = ch->listeners; l; l = l->next) {
            if (l->gen == gen) {
                l->gen = 0;
                l->lost = 1;
                if (l->waiter)
                    vial_drv_wake(l->waiter, 0);
            }
        }
    }
}

/* Sends LISTEN on the thread's LISTEN connection (opening it if needed) and
 * awaits it. */
static int listener_subscribe(vial_req *rq, vial_pg_listener *l)
{
    pg_pool *p = l->pool;
    pg_op *op = op_new(p, OP_QUERY);
    if (!op)
        return -ENOMEM;
    op->owned = quote_ident("LISTEN", l->chan->name);
    if (!op->owned) {
        op_free(op);
        return -ENOMEM;
    }
    op->sql = op->owned;
    int e = op_exec(rq, p, T_LISTEN, NULL, op);
    if (e < 0)
        return e;
    e = op_result(rq, op, NULL);
    if (e < 0)
        return e;
    /* Subscribed on the connection that is the LISTEN connection now (if it
     * broke meanwhile, gen stays 0 and the next wait subscribes again). */
    l->gen = p->listen && p->listen->state == C_READY ? p->listen->gen : 0;
    return 0;
}

static void listener_detach(vial_pg_listener *l)
{
    if (l->closed)
        return;
    l->closed = 1;
    pg_pool *p = l->pool;
    pg_chan *ch = l->chan;
    if (l->prev)
        l->prev->next = l->next;
    else
        ch->listeners = l->next;
    if (l->next)
        l->next->prev = l->prev;
    note_free_all(l);
    if (ch->listeners)
        return;
    /* Last listener of the channel on this thread: unsubscribe. */
    if (p->listen && p->listen->state != C_CLOSED) {
        char *sql = quote_ident("UNLISTEN", ch->name);
        if (sql)
            conn_fire(p->listen, sql, sql);
    }
    for (pg_chan **pp = &p->chans; *pp; pp = &(*pp)->next) {
        if (*pp == ch) {
            *pp = ch->next;
            break;
        }
    }
    free(ch);
}

static void listener_cleanup(void *arg)
{
    listener_detach(arg);
}

static int pg_listen(vial_req *rq, vial_pg *db, const char *channel, vial_pg_listener **out)
{
    if (!out || !channel || !*channel || strlen(channel) > PG_NAME_MAX)
        return -EINVAL;
    *out = NULL;
    pg_pool *p;
    int e = pool_get(rq, db, &p);
    if (e < 0)
        return e;
    vial_pg_listener *l = vial_alloc(rq, sizeof *l);
    if (!l)
        return -ENOMEM;
    memset(l, 0, sizeof *l);
    l->pool = p;
    pg_chan *ch = p->chans;
    while (ch && strcmp(ch->name, channel))
        ch = ch->next;
    if (!ch) {
        size_t n = strlen(channel) + 1;
        ch = calloc(1, sizeof *ch + n);
        if (!ch)
            return -ENOMEM;
        memcpy(ch->name, channel, n);
        ch->next = p->chans;
        p->chans = ch;
    }
    l->chan = ch;
    l->next = ch->listeners;
    if (l->next)
        l->next->prev = l;
    ch->listeners = l;
    if (vial_req_on_end(rq, listener_cleanup, l) < 0) {
        listener_detach(l);
        return -ENOMEM;
    }
    e = listener_subscribe(rq, l);
    if (e < 0) {
        listener_detach(l);
        return e;
    }
    *out = l;
    return 0;
}

static int pg_next_notify(vial_req *rq, vial_pg_listener *l, vial_pg_notify *n)
{
    if (!l || !n || l->closed)
        return -EINVAL;
    if (vial_req_is_sync(rq) || !vial_drv_self())
        return -EPERM;
    free(l->current);
    l->current = NULL;
    for (;;) {
        if (l->overflow) {
            l->overflow = 0;
            return -ENOBUFS;
        }
        if (l->head) {
            struct pg_note *note = l->head;
            l->head = note->next;
            if (!l->head)
                l->tail = NULL;
            l->count--;
            l->current = note;
            n->channel = note->channel;
            n->payload = note->payload;
            n->pid = note->pid;
            return 0;
        }
        if (l->lost) {
            l->lost = 0;
            return -ECONNRESET;
        }
        pg_pool *p = l->pool;
        if (!l->gen || !p->listen || p->listen->gen != l->gen) {
            int e = listener_subscribe(rq, l);
            if (e < 0)
                return e;
            continue;
        }
        l->waiter = vial_drv_self();
        int r = vial_drv_wait(0);
        l->waiter = NULL;
        if (r < 0)
            return r;
    }
}

void vial_pg_unlisten(vial_pg_listener *l)
{
    if (l)
        listener_detach(l);
}

/* --- the handle ------------------------------------------------------------------------------------------ */

/* Does connecting need a name lookup (blocking getaddrinfo)? Not for
 * socket paths, numeric addresses or an explicit hostaddr. */
static int conninfo_needs_dns(PQconninfoOption *opts)
{
    const char *host = NULL, *hostaddr = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = o->val;
    }
    if (!host || !*host)
        host = getenv("PGHOST");
    if (!hostaddr || !*hostaddr)
        hostaddr = getenv("PGHOSTADDR");
    if (hostaddr && *hostaddr)
        return 0;
    if (!host || !*host)
        return 0; /* the default unix socket */
    char one[256];
    for (const char *s = host; *s;) {
        size_t n = strcspn(s, ",");
        if (n >= sizeof one)
            return 1;
        memcpy(one, s, n);
        one[n] = 0;
        unsigned char buf[16];
        if (n && one[0] != '/' && one[0] != '@' && inet_pton(AF_INET, one, buf) != 1 &&
            inet_pton(AF_INET6, one, buf) != 1)
            return 1;
        s += n;
        if (*s == ',')
            s++;
    }
    return 0;
}

vial_pg *vial_pg_open(const char *conninfo, const vial_pg_options *opts)
{
    if (!conninfo) {
        errno = EINVAL;
        return NULL;
    }
    char *err = NULL;
    PQconninfoOption *parsed = PQconninfoParse(conninfo, &err);
    if (!parsed) {
        if (err) {
            vial_log(VIAL_LOG_ERROR, "vial_pg_open: %.*s", (int)strcspn(err, "\n"), err);
            PQfreemem(err);
            errno = EINVAL;
        } else {
            errno = ENOMEM;
        }
        return NULL;
    }
    int dns = conninfo_needs_dns(parsed);
    PQconninfoFree(parsed);
    vial_pg *db = calloc(1, sizeof *db);
    if (!db || !(db->conninfo = strdup(conninfo))) {
        free(db);
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&db->refs, 1);
    atomic_init(&db->nstmts, 0);
    pthread_mutex_init(&db->stmt_lock, NULL);
    db->needs_dns = dns;
    db->max_conns = opts && opts->max_conns ? opts->max_conns : PG_DEFAULT_MAX_CONNS;
    db->connect_ms = opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : PG_DEFAULT_CONNECT_MS;
    db->notify_max = opts && opts->notify_queue_max ? opts->notify_queue_max : PG_DEFAULT_NOTIFY_MAX;
    metrics_remember(db);
    return db;
}

void vial_pg_close(vial_pg *db)
{
    if (db)
        db_unref(db);
}

static int pg_stats_get(vial_req *rq, vial_pg *db, vial_pg_stats *out)
{
    pg_pool *p;
    int e = pool_get(rq, db, &p);
    if (e < 0)
        return e;
    *out = *p->stats;
    return 0;
}

/* --- result accessors ------------------------------------------------------------------------------------- */

static int in_range(const vial_pg_result *r, int row, int col)
{
    if (!r || row < 0 || col < 0)
        return 0;
    if (r->rows)
        return row < r->rows->ntuples && col < r->rows->nfields;
    return r->pg && row < PQntuples(r->pg) && col < PQnfields(r->pg);
}

/* A copied result's cell (in range). */
static const pg_value *cell(const vial_pg_result *r, int row, int col)
{
    return &r->rows->values[(size_t)row * (size_t)r->rows->nfields + (size_t)col];
}

int vial_pg_result_error(const vial_pg_result *r)
{
    return r ? r->code : -EINVAL;
}

int vial_pg_ntuples(const vial_pg_result *r)
{
    if (!r)
        return 0;
    return r->rows ? r->rows->ntuples : r->pg ? PQntuples(r->pg) : 0;
}

int vial_pg_nfields(const vial_pg_result *r)
{
    if (!r)
        return 0;
    return r->rows ? r->rows->nfields : r->pg ? PQnfields(r->pg) : 0;
}

const char *vial_pg_fname(const vial_pg_result *r, int col)
{
    if (!r || col < 0)
        return NULL;
    if (r->rows)
        return col < r->rows->nfields ? r->rows->fields[col].name : NULL;
    return r->pg ? PQfname(r->pg, col) : NULL;
}

int vial_pg_fnumber(const vial_pg_result *r, const char *name)
{
    if (!r || !name)
        return -1;
    if (r->rows)
        return rows_fnumber(r->rows, name);
    return r->pg ? PQfnumber(r->pg, name) : -1;
}

unsigned vial_pg_ftype(const vial_pg_result *r, int col)
{
    if (!r || col < 0 || col >= vial_pg_nfields(r))
        return 0;
    return r->rows ? r->rows->fields[col].type : (unsigned)PQftype(r->pg, col);
}

const char *vial_pg_getvalue(const vial_pg_result *r, int row, int col)
{
    if (!in_range(r, row, col))
        return NULL;
    if (r->rows) {
        const pg_value *v = cell(r, row, col);
        return v->len < 0 ? NULL : r->rows->text + v->off;
    }
    return PQgetisnull(r->pg, row, col) ? NULL : PQgetvalue(r->pg, row, col);
}

size_t vial_pg_getlength(const vial_pg_result *r, int row, int col)
{
    if (!in_range(r, row, col))
        return 0;
    if (r->rows) {
        const pg_value *v = cell(r, row, col);
        return v->len < 0 ? 0 : (size_t)v->len;
    }
    return (size_t)PQgetlength(r->pg, row, col);
}

int vial_pg_isnull(const vial_pg_result *r, int row, int col)
{
    if (!in_range(r, row, col))
        return -EINVAL;
    return r->rows ? cell(r, row, col)->len < 0 : PQgetisnull(r->pg, row, col);
}

static int typed_text(const vial_pg_result *r, int row, int col, const char **s)
{
    if (!in_range(r, row, col))
        return -EINVAL;
    const char *v = vial_pg_getvalue(r, row, col);
    if (!v)
        return -ENOENT;
    *s = v;
    return *v ? 0 : -EINVAL;
}

int vial_pg_getint(const vial_pg_result *r, int row, int col, int64_t *out)
{
    const char *s;
    int e = typed_text(r, row, col, &s);
    if (e < 0)
        return e;
    /* strtoll's rules (an optional sign, decimal digits, nothing after)
     * without its locale lookups: it was a visible part of reading a
     * /queries row. */
    int neg = *s == '-';
    s += *s == '-' || *s == '+';
    if (!*s)
        return -EINVAL;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int range = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (lim - d) / 10)
            range = 1;
        else
            v = v * 10 + d;
    }
    if (range)
        return -ERANGE;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int vial_pg_getdouble(const vial_pg_result *r, int row, int col, double *out)
{
    const char *s;
    int e = typed_text(r, row, col, &s);
    if (e < 0)
        return e;
    if (!strcmp(s, "NaN")) {
        *out = NAN;
        return 0;
    }
    if (!strcmp(s, "Infinity") || !strcmp(s, "-Infinity")) {
        *out = *s == '-' ? -INFINITY : INFINITY;
        return 0;
    }
    if (isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    double v = vial_parse_double(s, &end); /* the server's '.', not the app's locale */
    if (*end)
        return -EINVAL;
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL))
        return -ERANGE;
    *out = v;
    return 0;
}

int vial_pg_getbool(const vial_pg_result *r, int row, int col, int *out)
{
    const char *s;
    int e = typed_text(r, row, col, &s);
    if (e < 0)
        return e;
    if (!strcmp(s, "t") || !strcmp(s, "true")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(s, "f") || !strcmp(s, "false")) {
        *out = 0;
        return 0;
    }
    return -EINVAL;
}

int64_t vial_pg_cmd_tuples(const vial_pg_result *r)
{
    if (!r || (!r->rows && !r->pg))
        return -1;
    const char *s = r->rows ? r->rows->cmd_tuples : PQcmdTuples(r->pg);
    return s && *s ? strtoll(s, NULL, 10) : -1;
}

const char *vial_pg_cmd_status(const vial_pg_result *r)
{
    if (!r)
        return "";
    const char *s = r->rows ? r->rows->cmd_status : r->pg ? PQcmdStatus(r->pg) : NULL;
    return s ? s : "";
}

const char *vial_pg_sqlstate(const vial_pg_result *r)
{
    if (!r)
        return "";
    if (r->pg && PQresultStatus(r->pg) == PGRES_FATAL_ERROR) {
        const char *s = PQresultErrorField(r->pg, PG_DIAG_SQLSTATE);
        return s ? s : "";
    }
    return r->sqlstate;
}

const char *vial_pg_errmsg(const vial_pg_result *r)
{
    if (!r)
        return "no result (out of memory)";
    if (r->pg && PQresultStatus(r->pg) == PGRES_FATAL_ERROR) {
        const char *s = PQresultErrorField(r->pg, PG_DIAG_MESSAGE_PRIMARY);
        return s ? s : PQresultErrorMessage(r->pg);
    }
    return r->code ? (r->message ? r->message : "error") : NULL;
}

const char *vial_pg_errdetail(const vial_pg_result *r)
{
    return r && r->pg ? PQresultErrorField(r->pg, PG_DIAG_MESSAGE_DETAIL) : NULL;
}

const char *vial_pg_errhint(const vial_pg_result *r)
{
    return r && r->pg ? PQresultErrorField(r->pg, PG_DIAG_MESSAGE_HINT) : NULL;
}

/* --- errors ---------------------------------------------------------------------------------------- */

#define ERROR_KEY "vial.pg.error"

/* Keeps the message of a failed call for vial_pg_error: the result's when
 * there is one (the server's words), else the code's name. */
static int note(vial_req *rq, int rc, vial_pg_result **out)
{
    if (rc >= 0 || !rq)
        return rc;
    const char *m = out && *out ? vial_pg_errmsg(*out) : NULL;
    vial_g_set(rq, ERROR_KEY, vial_strdup(rq, m && *m ? m : vial_strerror(rc)));
    return rc;
}

const char *vial_pg_error(vial_req *rq)
{
    return rq ? vial_g_get(rq, ERROR_KEY) : NULL;
}

int vial_pg_query(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *sql, int nparams,
                  const char *const *params)
{
    return note(rq, pg_query(rq, db, out, sql, nparams, params), out);
}

int vial_pg_exec_prepared(vial_req *rq, vial_pg *db, vial_pg_result **out, const char *name,
                          int nparams, const char *const *params)
{
    return note(rq, pg_exec_prepared(rq, db, out, name, nparams, params), out);
}

int vial_pg_query_all(vial_req *rq, vial_pg *db, vial_pg_stmt *stmts, size_t n)
{
    return note(rq, pg_query_all(rq, db, stmts, n), NULL);
}

int vial_pg_begin(vial_req *rq, vial_pg *db, vial_pg_tx **txp, vial_pg_result **out)
{
    return note(rq, pg_begin(rq, db, txp, out), out);
}

int vial_pg_tx_query(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out, const char *sql,
                     int nparams, const char *const *params)
{
    return note(rq, pg_tx_query(rq, tx, out, sql, nparams, params), out);
}

int vial_pg_tx_exec_prepared(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out, const char *name,
                             int nparams, const char *const *params)
{
    return note(rq, pg_tx_exec_prepared(rq, tx, out, name, nparams, params), out);
}

int vial_pg_commit(vial_req *rq, vial_pg_tx *tx, vial_pg_result **out)
{
    return note(rq, pg_commit(rq, tx, out), out);
}

int vial_pg_rollback(vial_req *rq, vial_pg_tx *tx)
{
    return note(rq, pg_rollback(rq, tx), NULL);
}

int vial_pg_listen(vial_req *rq, vial_pg *db, const char *channel, vial_pg_listener **out)
{
    return note(rq, pg_listen(rq, db, channel, out), NULL);
}

int vial_pg_next_notify(vial_req *rq, vial_pg_listener *l, vial_pg_notify *n)
{
    return note(rq, pg_next_notify(rq, l, n), NULL);
}

int vial_pg_stats_get(vial_req *rq, vial_pg *db, vial_pg_stats *out)
{
    return note(rq, pg_stats_get(rq, db, out), NULL);
}
