/* The Redis client against a real server: commands and typed replies,
 * errors, binary safety, pipelining through gather, exclusive connections
 * and transactions, pub/sub, deadlines and cancellation, connection loss and
 * recovery after a server restart.
 *
 * The server comes from tests/services/redis.sh; its address is in the
 * environment: VIAL_TEST_REDIS=127.0.0.1:PORT. Without it the test fails:
 * a Redis client that was not tested against Redis is not tested.
 *
 * Views run through the in-process test client (real coroutines, the
 * client's loop, the per-loop connection pool). A view checks what it sees
 * and answers "ok", or 500 with the failed check, which the test prints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>
#include <vial/redis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "de_locale.h"
#include "metrics_text.h"

static vial_redis *R;     /* default options */
static vial_redis *Rsmall; /* tiny subscription queue: exercises backpressure */
static vial_redis *Rdown;  /* a port nobody listens on */
static vial_test_client *C;
static vial_app *A;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond))                                                                              \
            return vial_text(rs, 500, "line %d: %s", __LINE__, #cond);                            \
    } while (0)

#define CHECK_RC(expr, want)                                                                      \
    do {                                                                                          \
        int rc_ = (expr);                                                                         \
        if (rc_ != (want))                                                                        \
            return vial_text(rs, 500, "line %d: %s = %d (%s), want %d", __LINE__, #expr, rc_,     \
                             rc_ < 0 && rc_ > -4096 ? strerror(-rc_) : "-", (int)(want));         \
    } while (0)

static int str_is(const vial_redis_reply *r, const char *s)
{
    size_t len;
    const char *p = vial_redis_reply_str(r, &len);
    return p && len == strlen(s) && memcmp(p, s, len) == 0;
}

/* --- basics ------------------------------------------------------------------------ */

/* Run under a decimal-comma locale (test_locale): hiredis formats %f with
 * vsnprintf, which must not write "3,25" into the command. */
static int v_locale(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:loc %.2f", 3.25), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "INCRBYFLOAT vt:loc %g", 0.5), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_STRING && str_is(rep, "3.75"));
    return vial_text(rs, 200, "ok");
}

static int v_basic(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:k vt:n vt:argv"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "SET %s %s", "vt:k", "hello world"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_STATUS && str_is(rep, "OK"));
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET %s", "vt:k"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_STRING && str_is(rep, "hello world"));
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "INCR vt:n"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_INTEGER && vial_redis_reply_int(rep) == 1);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "INCRBY vt:n %lld", 41LL), 0);
    CHECK(vial_redis_reply_int(rep) == 42);
    /* nil */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET vt:absent"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_NIL);
    CHECK(vial_redis_reply_str(rep, NULL) == NULL && vial_redis_reply_int(rep) == 0);
    /* the argv form */
    const char *argv[] = {"SET", "vt:argv", "a b c"};
    CHECK_RC(vial_redis_cmdargv(rq, R, &rep, 3, argv, NULL), 0);
    CHECK(str_is(rep, "OK"));
    const char *get[] = {"GET", "vt:argv"};
    CHECK_RC(vial_redis_cmdargv(rq, R, &rep, 2, get, NULL), 0);
    CHECK(str_is(rep, "a b c"));
    /* freeing early, and a reply that outlives nothing */
    vial_redis_reply_free(rep);
    vial_redis_reply_free(NULL);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "PING"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_STATUS && str_is(rep, "PONG"));
    /* many sequential commands, each freed at once */
    for (int i = 0; i < 500; i++) {
        CHECK_RC(vial_redis_cmd(rq, R, &rep, "INCR vt:n"), 0);
        CHECK(vial_redis_reply_int(rep) == 43 + i);
        vial_redis_reply_free(rep);
    }
    return vial_text(rs, 200, "ok");
}

static int v_errors(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK(vial_redis_error(rq) == NULL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:str notanumber"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "INCR vt:str"), VIAL_REDIS_EREPLY);
    /* the request keeps the last failure's message, a success leaves it */
    CHECK(vial_redis_error(rq) && strncmp(vial_redis_error(rq), "ERR", 3) == 0);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "PING"), 0);
    CHECK(vial_redis_error(rq) && strncmp(vial_redis_error(rq), "ERR", 3) == 0);
    CHECK_RC(vial_redis_cmd(rq, NULL, NULL, "PING"), -EINVAL);
    CHECK(vial_redis_error(rq) && !strcmp(vial_redis_error(rq), vial_strerror(-EINVAL)));
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_ERROR);
    CHECK(vial_redis_reply_error(rep) && strncmp(vial_redis_reply_error(rep), "ERR", 3) == 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "LPUSH vt:str x"), VIAL_REDIS_EREPLY);
    CHECK(strncmp(vial_redis_reply_error(rep), "WRONGTYPE", 9) == 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "NOSUCHCOMMAND a b"), VIAL_REDIS_EREPLY);
    CHECK(vial_redis_reply_error(rep) != NULL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "GET"), VIAL_REDIS_EREPLY); /* wrong arity, no reply wanted */
    /* after errors the connection carries on */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET vt:str"), 0);
    CHECK(str_is(rep, "notanumber"));
    /* commands that would change the shared connection's state */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "MULTI"), -EINVAL);
    CHECK(rep == NULL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "select 1"), -EINVAL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "WATCH vt:str"), -EINVAL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "CLIENT REPLY OFF"), -EINVAL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SUBSCRIBE x"), -EINVAL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "MONITOR"), -EINVAL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "HELLO 3"), -EINVAL);
    CHECK_RC(vial_redis_cmdargv(rq, R, NULL, 0, NULL, NULL), -EINVAL);
    CHECK_RC(vial_redis_cmd(rq, NULL, NULL, "PING"), -EINVAL);
    /* a server that is not there: a clear error, quickly */
    uint64_t t0 = vial_now_ms();
    CHECK_RC(vial_redis_cmd(rq, Rdown, &rep, "PING"), -ECONNREFUSED);
    CHECK(rep == NULL);
    CHECK_RC(vial_redis_cmd(rq, Rdown, &rep, "PING"), -ECONNREFUSED); /* and again: reconnects */
    CHECK(vial_now_ms() - t0 < 1000);
    return vial_text(rs, 200, "ok");
}

static int v_sync(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep = (void *)1;
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "PING"), -EPERM);
    CHECK(rep == NULL);
    vial_redis_sub *s;
    CHECK_RC(vial_redis_subscribe(rq, R, &s, "x", NULL), -EPERM);
    vial_redis_conn *c;
    CHECK_RC(vial_redis_acquire(rq, R, &c), -EPERM);
    /* no coroutine and no loop on a worker thread */
    CHECK_RC(vial_redis_publish(R, "x", "y", 1), -EPERM);
    return vial_text(rs, 200, "ok");
}

/* --- arrays, binary safety ------------------------------------------------------------- */

static int v_arrays(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:l"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "RPUSH vt:l a b %s", "c d"), 0);
    CHECK(vial_redis_reply_int(rep) == 3);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "LRANGE vt:l 0 -1"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_ARRAY && vial_redis_reply_len(rep) == 3);
    CHECK(str_is(vial_redis_reply_at(rep, 0), "a"));
    CHECK(str_is(vial_redis_reply_at(rep, 1), "b"));
    CHECK(str_is(vial_redis_reply_at(rep, 2), "c d"));
    CHECK(vial_redis_reply_at(rep, 3) == NULL);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "LRANGE vt:nolist 0 -1"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_ARRAY && vial_redis_reply_len(rep) == 0);
    /* nested arrays with every element type */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "EVAL %s 0", "return {1, {2, 'x', {}}, 'y', {err='bad'}}"), 0);
    CHECK(vial_redis_reply_len(rep) == 4);
    CHECK(vial_redis_reply_int(vial_redis_reply_at(rep, 0)) == 1);
    const vial_redis_reply *inner = vial_redis_reply_at(rep, 1);
    CHECK(vial_redis_reply_type(inner) == VIAL_REDIS_ARRAY && vial_redis_reply_len(inner) == 3);
    CHECK(vial_redis_reply_int(vial_redis_reply_at(inner, 0)) == 2);
    CHECK(str_is(vial_redis_reply_at(inner, 1), "x"));
    CHECK(vial_redis_reply_len(vial_redis_reply_at(inner, 2)) == 0);
    CHECK(str_is(vial_redis_reply_at(rep, 2), "y"));
    CHECK(vial_redis_reply_type(vial_redis_reply_at(rep, 3)) == VIAL_REDIS_ERROR);
    CHECK(strcmp(vial_redis_reply_error(vial_redis_reply_at(rep, 3)), "bad") == 0);
    /* HGETALL: a flat array of pairs */
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:h"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "HSET vt:h f1 v1 f2 v2"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "HGETALL vt:h"), 0);
    CHECK(vial_redis_reply_len(rep) == 4);
    return vial_text(rs, 200, "ok");
}

static int v_binary(vial_req *rq, vial_res *rs)
{
    static const char bin[] = "a\0b\r\n$3\r\n*1\xff\x00z";
    size_t blen = sizeof bin; /* the final NUL too */
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET %b %b", "vt:bin\0key", (size_t)10, bin, blen), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET %b", "vt:bin\0key", (size_t)10), 0);
    size_t len;
    const char *p = vial_redis_reply_str(rep, &len);
    CHECK(p && len == blen && memcmp(p, bin, blen) == 0 && p[len] == 0);
    const char *argv[] = {"SET", "vt:bin2", bin};
    size_t lens[] = {3, 7, blen};
    CHECK_RC(vial_redis_cmdargv(rq, R, NULL, 3, argv, lens), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "STRLEN vt:bin2"), 0);
    CHECK(vial_redis_reply_int(rep) == (int64_t)blen);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "SET vt:empty %b", "", (size_t)0), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET vt:empty"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_STRING && vial_redis_reply_str(rep, &len) && len == 0);

    /* 8 MiB each way: partial writes (write edge) and many reads per reply
     * (an edge-triggered fd must be drained) */
    size_t big = 8u << 20;
    char *buf = vial_alloc(rq, big);
    CHECK(buf);
    for (size_t i = 0; i < big; i++)
        buf[i] = (char)(i * 131 + (i >> 13));
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:big %b", buf, big), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET vt:big"), 0);
    p = vial_redis_reply_str(rep, &len);
    CHECK(p && len == big && memcmp(p, buf, big) == 0);
    vial_redis_reply_free(rep);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:big"), 0);
    return vial_text(rs, 200, "ok");
}

/* --- pipelining through gather ---------------------------------------------------------- */

struct gather_slot {
    vial_redis *r;
    int i;
    int64_t client_id, incr;
    char got[32];
};

static int gather_task(vial_req *rq, void *arg)
{
    struct gather_slot *s = arg;
    vial_redis_reply *rep;
    int rc = vial_redis_cmd(rq, s->r, &rep, "CLIENT ID");
    if (rc)
        return rc;
    s->client_id = vial_redis_reply_int(rep);
    if ((rc = vial_redis_cmd(rq, s->r, &rep, "INCR vt:gather")) != 0)
        return rc;
    s->incr = vial_redis_reply_int(rep);
    if ((rc = vial_redis_cmd(rq, s->r, NULL, "SET vt:g:%d v%d", s->i, s->i)) != 0)
        return rc;
    if ((rc = vial_redis_cmd(rq, s->r, &rep, "GET vt:g:%d", s->i)) != 0)
        return rc;
    snprintf(s->got, sizeof s->got, "%s", vial_redis_reply_str(rep, NULL));
    return 0;
}

static int v_gather(vial_req *rq, vial_res *rs)
{
    enum { N = 50 };
    struct gather_slot *slots = vial_alloc(rq, N * sizeof *slots);
    vial_task *tasks[N];
    CHECK(slots);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:gather"), 0);
    uint64_t t0 = vial_now_ms();
    for (int i = 0; i < N; i++) {
        slots[i] = (struct gather_slot){.r = R, .i = i};
        tasks[i] = vial_spawn(rq, gather_task, &slots[i]);
        CHECK(tasks[i]);
    }
    CHECK_RC(vial_gather(rq, tasks, N, 0), 0);
    CHECK(vial_now_ms() - t0 < 2000);
    int seen[N + 1] = {0};
    for (int i = 0; i < N; i++) {
        /* one shared connection carried all of them */
        CHECK(slots[i].client_id == slots[0].client_id);
        CHECK(slots[i].incr >= 1 && slots[i].incr <= N && !seen[slots[i].incr]);
        seen[slots[i].incr] = 1;
        char want[32];
        snprintf(want, sizeof want, "v%d", i);
        CHECK(strcmp(slots[i].got, want) == 0);
    }
    return vial_text(rs, 200, "ok");
}

/* --- exclusive connections and transactions ------------------------------------------------ */

static int v_acquire(vial_req *rq, vial_res *rs)
{
    vial_redis_conn *c;
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:ta vt:tb vt:w"), 0);
    CHECK_RC(vial_redis_acquire(rq, R, &c), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "MULTI"), 0);
    CHECK(str_is(rep, "OK"));
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "INCR vt:ta"), 0);
    CHECK(str_is(rep, "QUEUED"));
    const char *argv[] = {"INCRBY", "vt:tb", "5"};
    CHECK_RC(vial_redis_conn_cmdargv(rq, c, NULL, 3, argv, NULL), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "EXEC"), 0);
    CHECK(vial_redis_reply_len(rep) == 2);
    CHECK(vial_redis_reply_int(vial_redis_reply_at(rep, 0)) == 1);
    CHECK(vial_redis_reply_int(vial_redis_reply_at(rep, 1)) == 5);
    /* optimistic locking: a write from elsewhere between WATCH and EXEC aborts */
    CHECK_RC(vial_redis_conn_cmd(rq, c, NULL, "WATCH vt:w"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:w other"), 0); /* the shared connection */
    CHECK_RC(vial_redis_conn_cmd(rq, c, NULL, "MULTI"), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, NULL, "SET vt:w mine"), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "EXEC"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_NIL); /* aborted */
    CHECK_RC(vial_redis_conn_cmd(rq, c, NULL, "SUBSCRIBE x"), -EINVAL);
    CHECK_RC(vial_redis_conn_cmd(rq, c, NULL, "CLIENT REPLY OFF"), -EINVAL);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "CLIENT ID"), 0);
    int64_t id1 = vial_redis_reply_int(rep);
    vial_redis_release(c);

    /* a clean connection is reused... */
    CHECK_RC(vial_redis_acquire(rq, R, &c), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "CLIENT ID"), 0);
    CHECK(vial_redis_reply_int(rep) == id1);
    /* ...one whose state changed is not */
    CHECK_RC(vial_redis_conn_cmd(rq, c, NULL, "SELECT 1"), 0);
    vial_redis_release(c);
    CHECK_RC(vial_redis_acquire(rq, R, &c), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "CLIENT ID"), 0);
    CHECK(vial_redis_reply_int(rep) != id1);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "GET vt:w"), 0);
    CHECK(str_is(rep, "other")); /* db 0 again */
    /* left acquired: released at request end */
    return vial_text(rs, 200, "ok");
}

/* max_exclusive connections in use: the next acquire waits for a release */
static vial_redis *Rtwo;
static int holder_task(vial_req *rq, void *arg)
{
    vial_redis_conn *c;
    int rc = vial_redis_acquire(rq, Rtwo, &c);
    if (rc)
        return rc;
    vial_sleep(rq, 50);
    vial_redis_release(c);
    return 0;
}

static int v_acquire_wait(vial_req *rq, vial_res *rs)
{
    vial_task *t[2] = {vial_spawn(rq, holder_task, NULL), vial_spawn(rq, holder_task, NULL)};
    CHECK(t[0] && t[1]);
    vial_sleep(rq, 10); /* both hold one now */
    uint64_t t0 = vial_now_ms();
    vial_redis_conn *c;
    /* a short deadline: times out while both are held */
    vial_timeout to;
    vial_timeout_begin(rq, &to, 10);
    CHECK_RC(vial_redis_acquire(rq, Rtwo, &c), -ETIMEDOUT);
    vial_timeout_end(rq, &to);
    CHECK_RC(vial_redis_acquire(rq, Rtwo, &c), 0);
    CHECK(vial_now_ms() - t0 >= 30);
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "PING"), 0);
    vial_redis_release(c);
    CHECK_RC(vial_gather(rq, t, 2, 0), 0);
    return vial_text(rs, 200, "ok");
}

/* --- deadlines and cancellation --------------------------------------------------------------- */

static int blocked_clients(vial_req *rq, int64_t *n)
{
    vial_redis_reply *rep;
    int rc = vial_redis_cmd(rq, R, &rep, "INFO clients");
    if (rc)
        return rc;
    const char *s = strstr(vial_redis_reply_str(rep, NULL), "blocked_clients:");
    *n = s ? strtoll(s + 16, NULL, 10) : -1;
    return 0;
}

/* Waits (bounded) until the server says no client is blocked: an abandoned
 * BLPOP's connection was closed. */
static int wait_unblocked(vial_req *rq)
{
    for (int i = 0; i < 100; i++) {
        int64_t n;
        int rc = blocked_clients(rq, &n);
        if (rc)
            return rc;
        if (n == 0)
            return 0;
        vial_sleep(rq, 10);
    }
    return -EBUSY;
}

static int blpop_task(vial_req *rq, void *arg)
{
    vial_redis_reply *rep;
    return vial_redis_cmd(rq, R, &rep, "BLPOP %s 5", (const char *)arg);
}

static int v_timeout(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:empty1 vt:empty2"), 0);
    /* a blocking command under a per-await deadline */
    uint64_t t0 = vial_now_ms();
    vial_timeout to;
    vial_timeout_begin(rq, &to, 100);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "BLPOP vt:empty1 5"), -ETIMEDOUT);
    vial_timeout_end(rq, &to);
    uint64_t took = vial_now_ms() - t0;
    CHECK(took >= 90 && took < 1000);
    CHECK(rep == NULL);
    /* the shared connection never saw it */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "PING"), 0);
    /* the abandoned BLPOP's connection is closed, so it cannot pop what we push */
    CHECK_RC(wait_unblocked(rq), 0);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "RPUSH vt:empty1 x"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "LLEN vt:empty1"), 0);
    CHECK(vial_redis_reply_int(rep) == 1);
    /* and a blocking command that gets its answer */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "BLPOP vt:empty1 1"), 0);
    CHECK(vial_redis_reply_len(rep) == 2 && str_is(vial_redis_reply_at(rep, 1), "x"));
    /* nothing to pop within its own server-side timeout: nil */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "BLPOP vt:empty1 0.05"), 0);
    CHECK(vial_redis_reply_type(rep) == VIAL_REDIS_NIL);

    /* cancellation of a task blocked in BLPOP */
    vial_task *t = vial_spawn(rq, blpop_task, "vt:empty2");
    CHECK(t);
    vial_sleep(rq, 30);
    vial_task_cancel(t);
    CHECK_RC(vial_join(rq, t), -ECANCELED);
    CHECK_RC(wait_unblocked(rq), 0);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "RPUSH vt:empty2 y"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "LLEN vt:empty2"), 0);
    CHECK(vial_redis_reply_int(rep) == 1);

    /* a slow ordinary command times out on the shared connection; its late
     * reply is dropped and the connection serves the next command */
    vial_timeout_begin(rq, &to, 50);
    t0 = vial_now_ms();
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "EVAL %s 0",
                            "local s = redis.call('TIME'); local t0 = s[1] * 1000000 + s[2]; "
                            "while true do local n = redis.call('TIME'); "
                            "if n[1] * 1000000 + n[2] - t0 > 300000 then break end end return 7"),
             -ETIMEDOUT);
    vial_timeout_end(rq, &to);
    CHECK(vial_now_ms() - t0 < 250);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "ECHO %s", "after"), 0);
    CHECK(str_is(rep, "after"));

    /* an await that starts past the deadline sends nothing */
    vial_timeout_begin(rq, &to, 0);
    vial_sleep(rq, 1);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:never x"), -ETIMEDOUT);
    vial_timeout_end(rq, &to);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "EXISTS vt:never"), 0);
    CHECK(vial_redis_reply_int(rep) == 0);
    return vial_text(rs, 200, "ok");
}

/* --- pub/sub ----------------------------------------------------------------------------------- */

struct pubsub {
    vial_event *subscribed;
    char log[1024];
    int err;
};

static int subscriber_task(vial_req *rq, void *arg)
{
    struct pubsub *ps = arg;
    vial_redis_sub *s;
    int rc = vial_redis_subscribe(rq, R, &s, "vt:chan:a", "vt:chan:b", NULL);
    if (rc)
        return ps->err = rc;
    vial_event_set(ps->subscribed);
    for (int i = 0; i < 10; i++) {
        vial_redis_msg m;
        if ((rc = vial_redis_next_message(rq, s, &m)) != 0)
            return ps->err = rc;
        size_t n = strlen(ps->log);
        snprintf(ps->log + n, sizeof ps->log - n, "%s%s=%.*s", n ? "," : "", m.channel, (int)m.len, m.data);
    }
    vial_redis_sub_close(s);
    return 0;
}

static int publisher_task(vial_req *rq, void *arg)
{
    struct pubsub *ps = arg;
    int rc = vial_event_wait(rq, ps->subscribed);
    if (rc)
        return rc;
    for (int i = 0; i < 10; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "m%d", i);
        rc = vial_redis_publish(R, i % 2 ? "vt:chan:b" : "vt:chan:a", msg, strlen(msg));
        if (rc != 1) /* exactly one subscriber got it */
            return rc < 0 ? rc : -EPROTO;
    }
    return 0;
}

static int v_pubsub(vial_req *rq, vial_res *rs)
{
    struct pubsub ps = {.subscribed = vial_event_new(rq)};
    CHECK(ps.subscribed);
    vial_task *t[2] = {vial_spawn(rq, subscriber_task, &ps), vial_spawn(rq, publisher_task, &ps)};
    CHECK(t[0] && t[1]);
    CHECK_RC(vial_gather(rq, t, 2, 0), 0);
    CHECK_RC(ps.err, 0);
    const char *want = "vt:chan:a=m0,vt:chan:b=m1,vt:chan:a=m2,vt:chan:b=m3,vt:chan:a=m4,"
                       "vt:chan:b=m5,vt:chan:a=m6,vt:chan:b=m7,vt:chan:a=m8,vt:chan:b=m9";
    if (strcmp(ps.log, want) != 0)
        return vial_text(rs, 500, "got %s", ps.log);

    /* patterns, binary payloads, a timed-out wait that leaves the stream usable */
    vial_redis_sub *s;
    vial_redis_msg m;
    CHECK_RC(vial_redis_psubscribe(rq, R, &s, "vt:news.*", NULL), 0);
    vial_timeout to;
    vial_timeout_begin(rq, &to, 30);
    CHECK_RC(vial_redis_next_message(rq, s, &m), -ETIMEDOUT);
    vial_timeout_end(rq, &to);
    CHECK_RC(vial_redis_publish(R, "vt:news.tech", "a\0b", 3), 1);
    CHECK_RC(vial_redis_publish(R, "vt:other", "x", 1), 0);
    CHECK_RC(vial_redis_publish(R, "vt:news.art", "", 0), 1);
    CHECK_RC(vial_redis_next_message(rq, s, &m), 0);
    CHECK(m.pattern && strcmp(m.pattern, "vt:news.*") == 0 && m.pattern_len == 9);
    CHECK(strcmp(m.channel, "vt:news.tech") == 0 && m.channel_len == 12);
    CHECK(m.len == 3 && memcmp(m.data, "a\0b", 3) == 0);
    CHECK_RC(vial_redis_next_message(rq, s, &m), 0);
    CHECK(strcmp(m.channel, "vt:news.art") == 0 && m.len == 0 && m.data[0] == 0);
    /* s is closed at request end: see test_pubsub's NUMPAT check */

    /* a subscription left open by the view: closed when the request ends */
    vial_redis_sub *s2;
    CHECK_RC(vial_redis_subscribe(rq, R, &s2, "vt:left-open", NULL), 0);
    CHECK_RC(vial_redis_subscribe(rq, R, &s2, (const char *)NULL, NULL), -EINVAL);
    return vial_text(rs, 200, "ok");
}

static int v_pubsub_after(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "PUBSUB NUMSUB vt:left-open vt:chan:a"), 0);
    CHECK(vial_redis_reply_len(rep) == 4);
    CHECK(vial_redis_reply_int(vial_redis_reply_at(rep, 1)) == 0);
    CHECK(vial_redis_reply_int(vial_redis_reply_at(rep, 3)) == 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "PUBSUB NUMPAT"), 0);
    CHECK(vial_redis_reply_int(rep) == 0);
    return vial_text(rs, 200, "ok");
}

/* A subscriber that does not read while 2000 messages arrive (queue of 8:
 * it stops reading its socket), then reads them all, in order. */
static int v_backpressure(vial_req *rq, vial_res *rs)
{
    vial_redis_sub *s;
    vial_redis_msg m;
    CHECK_RC(vial_redis_subscribe(rq, Rsmall, &s, "vt:bp", NULL), 0);
    char payload[200];
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(payload, sizeof payload, "%d:", i);
        payload[n] = 'p';
        CHECK_RC(vial_redis_publish(Rsmall, "vt:bp", payload, sizeof payload), 1);
    }
    for (int i = 0; i < 2000; i++) {
        CHECK_RC(vial_redis_next_message(rq, s, &m), 0);
        CHECK(m.len == sizeof payload && atoi(m.data) == i);
    }
    vial_timeout to;
    vial_timeout_begin(rq, &to, 20);
    CHECK_RC(vial_redis_next_message(rq, s, &m), -ETIMEDOUT);
    vial_timeout_end(rq, &to);
    vial_redis_sub_close(s);
    return vial_text(rs, 200, "ok");
}

/* Outside requests: a subscription owned by nobody's request (rq NULL)
 * lives across requests; a PUBLISH queued on the loop thread outside any
 * coroutine goes out when the loop next runs. */
static vial_redis_sub *bg_sub;

static int v_bg_subscribe(vial_req *rq, vial_res *rs)
{
    CHECK_RC(vial_redis_subscribe(NULL, R, &bg_sub, "vt:bg", NULL), 0);
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(NULL, R, &rep, "PING"), 0);
    CHECK(str_is(rep, "PONG"));
    vial_redis_reply_free(rep); /* rq NULL: ours to free */
    return vial_text(rs, 200, "ok");
}

static int v_bg_receive(vial_req *rq, vial_res *rs)
{
    vial_redis_msg m;
    vial_timeout to;
    vial_timeout_begin(rq, &to, 2000);
    CHECK_RC(vial_redis_next_message(rq, bg_sub, &m), 0);
    vial_timeout_end(rq, &to);
    CHECK(strcmp(m.channel, "vt:bg") == 0 && m.len == 5 && memcmp(m.data, "hello", 5) == 0);
    vial_redis_sub_close(bg_sub);
    bg_sub = NULL;
    return vial_text(rs, 200, "ok");
}

/* --- options: Unix socket, db, AUTH, connect timeout ------------------------------------------- */

static char g_host[256];
static int g_port;
static const char *g_addr; /* "host:port" */

static int v_options(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    /* the same server through its Unix socket */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "CONFIG GET unixsocket"), 0);
    CHECK(vial_redis_reply_len(rep) == 2);
    const char *path = vial_redis_reply_str(vial_redis_reply_at(rep, 1), NULL);
    CHECK(path && path[0] == '/');
    vial_redis *ru = vial_redis_open(vial_sprintf(rq, "unix:%s", path), NULL);
    CHECK(ru);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:unix via-tcp"), 0);
    CHECK_RC(vial_redis_cmd(rq, ru, &rep, "GET vt:unix"), 0);
    CHECK(str_is(rep, "via-tcp"));
    vial_redis_close(ru); /* on this loop: its connection closes now */

    /* db: every connection of the handle SELECTs it, exclusive ones too */
    vial_redis *rdb = vial_redis_open(g_addr, &(vial_redis_options){.db = 3});
    CHECK(rdb);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:db"), 0);
    CHECK_RC(vial_redis_cmd(rq, rdb, NULL, "SET vt:db three"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "EXISTS vt:db"), 0);
    CHECK(vial_redis_reply_int(rep) == 0);
    CHECK_RC(vial_redis_cmd(rq, rdb, &rep, "BLPOP vt:nolist 0.01"), 0); /* an exclusive connection */
    vial_redis_conn *c;
    CHECK_RC(vial_redis_acquire(rq, rdb, &c), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, &rep, "GET vt:db"), 0);
    CHECK(str_is(rep, "three"));
    vial_redis_release(c);
    vial_redis_release(c); /* twice: ignored */
    CHECK_RC(vial_redis_cmd(rq, rdb, NULL, "FLUSHDB"), 0);
    vial_redis_close(rdb);

    /* AUTH: a password on the server's default user */
    vial_redis *rauth = vial_redis_open(g_addr, &(vial_redis_options){.password = "s3cret"});
    vial_redis *ruser = vial_redis_open(g_addr,
                                        &(vial_redis_options){.username = "default", .password = "s3cret"});
    vial_redis *rbad = vial_redis_open(g_addr, &(vial_redis_options){.password = "wrong"});
    CHECK(rauth && ruser && rbad);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "CONFIG SET requirepass s3cret"), 0);
    /* R's shared connection authenticated before: it keeps working */
    int rc1 = vial_redis_cmd(rq, rauth, &rep, "PING");
    int rc2 = vial_redis_cmd(rq, ruser, NULL, "PING");
    /* the wrong password: the server refuses what follows AUTH */
    int rc3 = vial_redis_cmd(rq, rbad, &rep, "PING");
    const char *err3 = rc3 == VIAL_REDIS_EREPLY ? vial_redis_reply_error(rep) : "";
    vial_redis_sub *s;
    int rc4 = vial_redis_subscribe(rq, rbad, &s, "vt:auth", NULL);
    int rc5 = vial_redis_subscribe(rq, rauth, &s, "vt:auth", NULL);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "CONFIG SET requirepass %s", ""), 0);
    CHECK_RC(rc1, 0);
    CHECK_RC(rc2, 0);
    CHECK_RC(rc3, VIAL_REDIS_EREPLY);
    CHECK(strncmp(err3, "NOAUTH", 6) == 0);
    CHECK_RC(rc4, -EACCES);
    CHECK_RC(rc5, 0);
    vial_redis_sub_close(s);
    vial_redis_close(rauth);
    vial_redis_close(ruser);
    vial_redis_close(rbad);

    /* an ACL user without channel permissions: the subscription is refused */
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "ACL SETUSER vt-nochan on >pw ~* resetchannels +@all"), 0);
    vial_redis *racl = vial_redis_open(g_addr, &(vial_redis_options){.username = "vt-nochan", .password = "pw"});
    CHECK(racl);
    CHECK_RC(vial_redis_cmd(rq, racl, &rep, "PING"), 0);
    CHECK_RC(vial_redis_subscribe(rq, racl, &s, "vt:forbidden", NULL), -EACCES);
    CHECK_RC(vial_redis_cmd(rq, racl, &rep, "PUBLISH vt:forbidden x"), VIAL_REDIS_EREPLY);
    CHECK(strncmp(vial_redis_reply_error(rep), "NOPERM", 6) == 0);
    vial_redis_close(racl);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "ACL DELUSER vt-nochan"), 0);

    /* bad arguments */
    errno = 0;
    CHECK(vial_redis_open("127.0.0.1:70000", NULL) == NULL && errno == EINVAL);
    CHECK(vial_redis_open("127.0.0.1:1", &(vial_redis_options){.username = "u"}) == NULL);
    const char *bad[] = {"", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:x", "::1", "[::1", "[::1]x", "unix:"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        CHECK(vial_redis_open(bad[i], NULL) == NULL && errno == EINVAL);
    }
    /* a path without "unix:", a host without a port (6379), an IPv6 address */
    vial_redis *ok[] = {vial_redis_open(path, NULL), vial_redis_open("127.0.0.1", NULL),
                        vial_redis_open("[::1]:6379", NULL), vial_redis_open(NULL, NULL)};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        CHECK(ok[i]);
        vial_redis_close(ok[i]);
    }
    return vial_text(rs, 200, "ok");
}

/* A listener whose accept queue is full drops SYNs: the connect hangs and
 * the connect timeout, not the caller's patience, ends it. */
static int blackhole_port;

static int v_connect_timeout(vial_req *rq, vial_res *rs)
{
    vial_redis *rt = vial_redis_open(vial_sprintf(rq, "127.0.0.1:%d", blackhole_port), &(vial_redis_options){.connect_timeout_ms = 150});
    CHECK(rt);
    uint64_t t0 = vial_now_ms();
    CHECK_RC(vial_redis_cmd(rq, rt, NULL, "PING"), -ETIMEDOUT);
    uint64_t took = vial_now_ms() - t0;
    CHECK(took >= 140 && took < 1000);
    /* and a deadline shorter than the connect timeout wins */
    vial_timeout to;
    t0 = vial_now_ms();
    vial_timeout_begin(rq, &to, 40);
    CHECK_RC(vial_redis_cmd(rq, rt, NULL, "PING"), -ETIMEDOUT);
    vial_timeout_end(rq, &to);
    CHECK(vial_now_ms() - t0 < 140);
    vial_redis_close(rt);
    return vial_text(rs, 200, "ok");
}

/* --- connection loss -------------------------------------------------------------------------------- */

static int v_kill_clients(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "DEL vt:killme"), 0);
    vial_task *t = vial_spawn(rq, blpop_task, "vt:killme");
    CHECK(t);
    vial_redis_sub *s;
    CHECK_RC(vial_redis_subscribe(rq, R, &s, "vt:killed", NULL), 0);
    vial_sleep(rq, 30);
    /* every other client of the server, the BLPOP's and the subscriber's too */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "CLIENT KILL TYPE normal SKIPME yes"), 0);
    CHECK(vial_redis_reply_int(rep) >= 1);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "CLIENT KILL TYPE pubsub SKIPME yes"), 0);
    CHECK(vial_redis_reply_int(rep) >= 1);
    CHECK_RC(vial_join(rq, t), -ECONNRESET);
    vial_redis_msg m;
    CHECK_RC(vial_redis_next_message(rq, s, &m), -ECONNRESET);
    CHECK_RC(vial_redis_next_message(rq, s, &m), -ECONNRESET); /* sticky */
    /* the next blocking command gets a fresh connection */
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "RPUSH vt:killme z"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "BLPOP vt:killme 1"), 0);
    CHECK(str_is(vial_redis_reply_at(rep, 1), "z"));
    return vial_text(rs, 200, "ok");
}

/* Shuts the server down; answers with its config file for the restart. */
static int v_shutdown(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "INFO server"), 0);
    const char *cf = strstr(vial_redis_reply_str(rep, NULL), "config_file:");
    CHECK(cf);
    cf += 12;
    size_t n = strcspn(cf, "\r\n");
    CHECK(n > 0);
    char *conf = vial_sprintf(rq, "%.*s", (int)n, cf);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:before-restart 1"), 0);
    vial_redis_sub *s;
    CHECK_RC(vial_redis_subscribe(rq, R, &s, "vt:restart", NULL), 0);
    vial_redis_conn *c;
    CHECK_RC(vial_redis_acquire(rq, R, &c), 0);
    CHECK_RC(vial_redis_conn_cmd(rq, c, NULL, "PING"), 0);

    int rc = vial_redis_cmd(rq, R, &rep, "SHUTDOWN NOSAVE");
    CHECK(rc == -ECONNRESET); /* no reply: the server went away */
    CHECK(rep == NULL);
    vial_redis_msg m;
    CHECK_RC(vial_redis_next_message(rq, s, &m), -ECONNRESET);
    /* the leased connection learns it at its next command */
    rc = vial_redis_conn_cmd(rq, c, NULL, "PING");
    CHECK(rc == -ECONNRESET);
    vial_redis_release(c);
    /* nobody listens: refused, at once, every time */
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET vt:before-restart"), -ECONNREFUSED);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "BLPOP vt:x 1"), -ECONNREFUSED);
    CHECK_RC(vial_redis_subscribe(rq, R, &s, "vt:restart", NULL), -ECONNREFUSED);
    CHECK_RC(vial_redis_publish(R, "vt:restart", "x", 1), -ECONNREFUSED);
    return vial_text(rs, 200, "%s", conf);
}

static int v_recover(vial_req *rq, vial_res *rs)
{
    vial_redis_reply *rep;
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) { /* up to ~5 s for the restart */
        rc = vial_redis_cmd(rq, R, &rep, "PING");
        if (rc)
            vial_sleep(rq, 50);
    }
    CHECK_RC(rc, 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "EXISTS vt:before-restart"), 0);
    CHECK(vial_redis_reply_int(rep) == 0); /* a new, empty server */
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "SET vt:after %s", "yes"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "GET vt:after"), 0);
    CHECK(str_is(rep, "yes"));
    /* exclusive connections and subscriptions recover too */
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "RPUSH vt:r z"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, &rep, "BLPOP vt:r 1"), 0);
    vial_redis_sub *s;
    vial_redis_msg m;
    CHECK_RC(vial_redis_subscribe(rq, R, &s, "vt:restart", NULL), 0);
    CHECK_RC(vial_redis_publish(R, "vt:restart", "back", 4), 1);
    CHECK_RC(vial_redis_next_message(rq, s, &m), 0);
    CHECK(strcmp(m.data, "back") == 0);
    return vial_text(rs, 200, "ok");
}

/* --- driving -------------------------------------------------------------------------------------- */

/* --- metrics (driver.h's sources) ------------------------------------------ */

static int v_metrics(vial_req *rq, vial_res *rs)
{
    long long cmds = metric_sum("vial_redis_commands_total"), errs = metric_sum("vial_redis_errors_total");
    CHECK(cmds >= 0 && errs >= 0);
    CHECK(metric_sum("vial_redis_connections") >= 1); /* R's shared connection, from earlier tests */
    for (int i = 0; i < 7; i++)
        CHECK_RC(vial_redis_cmd(rq, R, NULL, "PING"), 0);
    CHECK_RC(vial_redis_cmd(rq, R, NULL, "NOSUCHCOMMAND"), VIAL_REDIS_EREPLY);
    CHECK(metric_sum("vial_redis_commands_total") == cmds + 8);
    CHECK(metric_sum("vial_redis_errors_total") == errs + 1);
    CHECK(metric_sum("vial_redis_waiters") == 0);
    CHECK(metric_sum("vial_redis_connects_total") >= metric_sum("vial_redis_connections"));
    return vial_text(rs, 200, "ok");
}

static char *get_ok(const char *path)
{
    vial_test_response *r = vial_test_client_get(C, path);
    assert_non_null(r);
    size_t len;
    const char *body = vial_test_response_body(r, &len);
    if (vial_test_response_status(r) != 200)
        print_error("%s -> %d: %s\n", path, vial_test_response_status(r), body);
    assert_int_equal(vial_test_response_status(r), 200);
    char *copy = strdup(body);
    vial_test_response_free(r);
    return copy;
}

static void expect_ok(const char *path)
{
    char *body = get_ok(path);
    assert_string_equal(body, "ok");
    free(body);
}

static void test_basic(void **state) { expect_ok("/basic"); }
static void test_metrics(void **state) { expect_ok("/metrics"); }
static void test_locale(void **state)
{
    (void)state;
    if (!vial_test_german_locale())
        skip();
    expect_ok("/locale");
    setlocale(LC_ALL, "C");
}
static void test_errors(void **state) { expect_ok("/errors"); }
static void test_sync_view(void **state) { expect_ok("/sync"); }
static void test_arrays(void **state) { expect_ok("/arrays"); }
static void test_binary(void **state) { expect_ok("/binary"); }
static void test_gather(void **state) { expect_ok("/gather"); }
static void test_acquire(void **state)
{
    expect_ok("/acquire");
    expect_ok("/acquire-wait");
}
static void test_timeout(void **state) { expect_ok("/timeout"); }
static void test_pubsub(void **state)
{
    expect_ok("/pubsub");
    expect_ok("/pubsub-after");
    expect_ok("/backpressure");
}

static void test_outside_requests(void **state)
{
    expect_ok("/bg-subscribe");
    /* This thread runs the client's loop, and no coroutine is running: the
     * PUBLISH is queued on the loop's shared connection without waiting. */
    assert_int_equal(vial_redis_publish(R, "vt:bg", "hello", 5), 0);
    expect_ok("/bg-receive");
}

static void test_options(void **state) { expect_ok("/options"); }

static void test_connect_timeout(void **state)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    blackhole_port = ntohs(a.sin_port);
    /* fill the accept queue (never accepted) */
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)!connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50 * 1000);
    expect_ok("/connect-timeout");
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(l);
}

static void test_connection_loss(void **state) { expect_ok("/kill-clients"); }

static void test_restart(void **state)
{
    char *conf = get_ok("/shutdown");
    assert_true(conf[0] == '/');
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "redis-server '%s' >/dev/null 2>&1", conf);
    free(conf);
    assert_int_equal(system(cmd), 0); /* daemonizes: returns once forked */
    expect_ok("/recover");
}

int main(void)
{
    const char *addr = getenv("VIAL_TEST_REDIS");
    if (!addr || !*addr) {
        fprintf(stderr, "test_redis: VIAL_TEST_REDIS is not set (host:port of a throwaway server; "
                        "start one with tests/services/redis.sh start DIR)\n");
        return 1;
    }
    char host[256];
    int port;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host || (port = atoi(colon + 1)) <= 0) {
        fprintf(stderr, "test_redis: VIAL_TEST_REDIS=%s is not host:port\n", addr);
        return 1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    snprintf(g_host, sizeof g_host, "%s", host);
    g_port = port;
    g_addr = addr;

    R = vial_redis_open(addr, NULL);
    Rsmall = vial_redis_open(addr, &(vial_redis_options){.sub_queue_max = 8});
    Rtwo = vial_redis_open(addr, &(vial_redis_options){.max_exclusive = 2});
    Rdown = vial_redis_open("127.0.0.1:1", NULL); /* port 1: nothing listens (tcpmux) */
    A = vial_app_new();
    C = A ? vial_test_client_new(A) : NULL;
    if (!R || !Rsmall || !Rtwo || !Rdown || !C) {
        fprintf(stderr, "test_redis: setup failed\n");
        return 1;
    }
    vial_route(A, "GET /basic", v_basic);
    vial_route(A, "GET /locale", v_locale);
    vial_route(A, "GET /errors", v_errors);
    vial_route_sync(A, "GET /sync", v_sync);
    vial_route(A, "GET /arrays", v_arrays);
    vial_route(A, "GET /binary", v_binary);
    vial_route(A, "GET /gather", v_gather);
    vial_route(A, "GET /acquire", v_acquire);
    vial_route(A, "GET /acquire-wait", v_acquire_wait);
    vial_route(A, "GET /timeout", v_timeout);
    vial_route(A, "GET /pubsub", v_pubsub);
    vial_route(A, "GET /pubsub-after", v_pubsub_after);
    vial_route(A, "GET /backpressure", v_backpressure);
    vial_route(A, "GET /bg-subscribe", v_bg_subscribe);
    vial_route(A, "GET /bg-receive", v_bg_receive);
    vial_route(A, "GET /options", v_options);
    vial_route(A, "GET /connect-timeout", v_connect_timeout);
    vial_route(A, "GET /kill-clients", v_kill_clients);
    vial_route(A, "GET /shutdown", v_shutdown);
    vial_route(A, "GET /recover", v_recover);
    vial_route(A, "GET /metrics", v_metrics);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_locale),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sync_view),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_acquire),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_pubsub),
        cmocka_unit_test(test_outside_requests),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_connection_loss),
        cmocka_unit_test(test_restart), /* last: it restarts the server */
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (bg_sub) /* a failed test may have left it */
        vial_redis_sub_close(bg_sub);
    vial_redis_close(R); /* the client's loop is this thread's: closes its connections now */
    vial_redis_close(Rsmall);
    vial_redis_close(Rtwo);
    vial_redis_close(Rdown);
    vial_test_client_free(C);
    vial_app_free(A);
    return failed;
}
