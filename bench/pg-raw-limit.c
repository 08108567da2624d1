/* The raw limit: how many TechEmpower statements per second PostgreSQL
 * answers to a plain libpq client that does nothing else, pipelining
 * CONNS connections, each with one batch of DEPTH units in flight, one
 * Sync per batch. bench/pg-limit.sh runs it on the server's core to set
 * the bar vial's /db, /queries, /fortunes and /updates are measured
 * against.
 *
 *   pg-raw-limit CONNINFO MODE CONNS DEPTH SECONDS
 *
 * MODE: db       a unit is SELECT id, randomNumber FROM World WHERE id = $1
 *       fortunes a unit is SELECT id, message FROM Fortune
 *       updates  a unit is what /updates?queries=20 does: 20 world reads
 *                and one UPDATE of those 20 rows ("updatesN": N reads,
 *                1 <= N <= 500, as /updates?queries=N). Each UPDATE has a Sync
 *                of its own (as vial gives every write): updates sharing
 *                one implicit transaction hold their row locks until its
 *                end and deadlock with the other connections'.
 * Prints "units/s <n>" (and the totals), and "cpu_us/unit <x> user <u> system <s>", the
 * client's own CPU time (user + system) per unit. Uses the statements of
 * bench/techempower_db.c, prepared once per connection. */
#include <libpq-fe.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { M_DB, M_FORTUNES, M_UPDATES };

typedef struct {
    PGconn *pg;
    int in_flight; /* Syncs of the batch still to come */
    long results;  /* non-NULL results of the batch so far */
} conn;

static int update_reads = 20; /* N of "updatesN" */
static uint64_t rng = 88172645463325252ull;

static unsigned next_id(void)
{
    rng ^= rng << 13; /* xorshift: any spread of ids will do */
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % 10000) + 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void must(PGconn *pg, PGresult *r)
{
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "pg-raw-limit: %s", PQerrorMessage(pg));
        exit(1);
    }
    PQclear(r);
}

static int by_value(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

static int send_unit(PGconn *pg, int mode)
{
    char a[8], ids[500 * 6 + 3], nums[500 * 6 + 3];
    const char *p[2];
    switch (mode) {
    case M_FORTUNES:
        return PQsendQueryPrepared(pg, "fortune", 0, NULL, NULL, NULL, 0);
    case M_DB:
        snprintf(a, sizeof a, "%u", next_id());
        p[0] = a;
        return PQsendQueryPrepared(pg, "world", 1, p, NULL, NULL, 0);
    default: {
        unsigned drawn[500];
        for (int i = 0; i < update_reads; i++) {
            drawn[i] = next_id();
            snprintf(a, sizeof a, "%u", drawn[i]);
            p[0] = a;
            if (!PQsendQueryPrepared(pg, "world", 1, p, NULL, NULL, 0))
                return 0;
        }
        /* The UPDATE takes the rows in id order, once each, as
         * bench/techempower_db.c does: concurrent updates on the other
         * connections then lock in the same order and cannot deadlock. */
        qsort(drawn, (size_t)update_reads, sizeof *drawn, by_value);
        size_t il = 0, nl = 0;
        ids[il++] = '{';
        nums[nl++] = '{';
        for (int i = 0; i < update_reads; i++) {
            if (i && drawn[i] == drawn[i - 1])
                continue;
            il += (size_t)snprintf(ids + il, sizeof ids - il, "%s%u", il > 1 ? "," : "", drawn[i]);
            nl += (size_t)snprintf(nums + nl, sizeof nums - nl, "%s%u", nl > 1 ? "," : "", next_id());
        }
        ids[il++] = '}';
        ids[il] = 0;
        nums[nl++] = '}';
        nums[nl] = 0;
        p[0] = ids;
        p[1] = nums;
        return PQpipelineSync(pg) && PQsendQueryPrepared(pg, "world_update", 2, p, NULL, NULL, 0) &&
               PQpipelineSync(pg);
    }
    }
}

static void send_batch(conn *c, int mode, int depth)
{
    for (int i = 0; i < depth; i++)
        if (!send_unit(c->pg, mode))
            goto fail;
    if (mode != M_UPDATES && !PQpipelineSync(c->pg)) /* libpq 15: also flushes */
        goto fail;
    c->in_flight = mode == M_UPDATES ? 2 * depth : 1;
    c->results = 0;
    return;
fail:
    fprintf(stderr, "pg-raw-limit: send: %s", PQerrorMessage(c->pg));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: pg-raw-limit CONNINFO db|fortunes|updates[N] CONNS DEPTH SECONDS\n");
        return 2;
    }
    int mode = !strcmp(argv[2], "db") ? M_DB : !strcmp(argv[2], "fortunes") ? M_FORTUNES
               : !strncmp(argv[2], "updates", 7) ? M_UPDATES : -1;
    if (mode == M_UPDATES && argv[2][7]) {
        char *end;
        long n = strtol(argv[2] + 7, &end, 10);
        update_reads = *end || n < 1 || n > 500 ? 0 : (int)n;
    }
    int nconns = atoi(argv[3]), depth = atoi(argv[4]);
    double seconds = atof(argv[5]);
    if (mode < 0 || !update_reads || nconns < 1 || nconns > 64 || depth < 1 || seconds <= 0) {
        fprintf(stderr, "pg-raw-limit: bad arguments\n");
        return 2;
    }
    conn cs[64];
    struct pollfd pf[64];
    for (int i = 0; i < nconns; i++) {
        PGconn *pg = PQconnectdb(argv[1]);
        if (PQstatus(pg) != CONNECTION_OK) {
            fprintf(stderr, "pg-raw-limit: %s", PQerrorMessage(pg));
            return 1;
        }
        must(pg, PQprepare(pg, "world", "SELECT id, randomNumber FROM World WHERE id = $1", 0, NULL));
        must(pg, PQprepare(pg, "fortune", "SELECT id, message FROM Fortune", 0, NULL));
        must(pg, PQprepare(pg, "world_update",
                           "UPDATE World AS w SET randomNumber = v.r"
                           " FROM (SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v"
                           " WHERE w.id = v.id", 0, NULL));
        if (PQsetnonblocking(pg, 1) != 0 || !PQenterPipelineMode(pg)) {
            fprintf(stderr, "pg-raw-limit: pipeline mode: %s", PQerrorMessage(pg));
            return 1;
        }
        cs[i] = (conn){pg, 0, 0};
        pf[i] = (struct pollfd){.fd = PQsocket(pg), .events = POLLIN};
    }
    long units = 0, batches = 0;
    double t0 = now_s(), end = t0 + seconds;
    for (int i = 0; i < nconns; i++)
        send_batch(&cs[i], mode, depth);
    int stopping = 0;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < nconns; i++) {
            busy |= cs[i].in_flight;
            pf[i].events = POLLIN | (PQflush(cs[i].pg) == 1 ? POLLOUT : 0);
        }
        if (!busy)
            break;
        if (poll(pf, (nfds_t)nconns, 1000) < 0)
            return 1;
        if (!stopping && now_s() >= end)
            stopping = 1;
        for (int i = 0; i < nconns; i++) {
            conn *c = &cs[i];
            if (!(pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
                continue;
            if (!PQconsumeInput(c->pg)) {
                fprintf(stderr, "pg-raw-limit: %s", PQerrorMessage(c->pg));
                return 1;
            }
            while (c->in_flight && !PQisBusy(c->pg)) {
                PGresult *r = PQgetResult(c->pg);
                if (!r)
                    continue; /* the end of one statement's results */
                ExecStatusType st = PQresultStatus(r);
                PQclear(r);
                if (st == PGRES_PIPELINE_SYNC && --c->in_flight == 0) {
                    units += depth;
                    batches++;
                    if (!stopping)
                        send_batch(c, mode, depth);
                } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_PIPELINE_SYNC) {
                    fprintf(stderr, "pg-raw-limit: statement failed: %s", PQerrorMessage(c->pg));
                    return 1;
                }
            }
        }
    }
    double el = now_s() - t0;
    /* the client's own CPU: with PostgreSQL's, what a unit costs the core */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double per = units ? 1e6 / (double)units : 0.0;
    printf("units/s %.0f\nunits %ld batches %ld seconds %.2f conns %d depth %d mode %s\n"
           "cpu_us/unit %.2f user %.2f system %.2f\n",
           (double)units / el, units, batches, el, nconns, depth, argv[2],
           (user + sys) * per, user * per, sys * per);
    for (int i = 0; i < nconns; i++)
        PQfinish(cs[i].pg);
    return 0;
}
