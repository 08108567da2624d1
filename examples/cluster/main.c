/* A vial app meant to run as several instances behind nginx
 * (docs/guide/deploy.md, "Scale-out"; tested by tests/deploy/run.sh).
 *
 *   GET  /whoami          this instance's name (--name, or $VIAL_NAME)
 *   GET  /ip              the client's address (X-Forwarded-For from a trusted proxy)
 *   GET  /count           messages stored in PostgreSQL: the same on every instance
 *   GET  /subscribers     hub subscribers in this process
 *   GET  /events          SSE stream of the "news" topic
 *   WS   /ws              websocket receiving the "news" topic
 *   POST /publish         (sync view) publishes the body to "news"
 *   POST /publish-async   (async view) stores the body in PostgreSQL, then publishes it
 *
 * Every instance publishes through the same Redis channel (--redis), so a
 * subscriber on one instance receives what is published through any other:
 * no sticky sessions are needed, and sessions are signed cookies anyway.
 *
 *   create table cluster_messages (id bigserial primary key,
 *                                  instance text not null, body text not null);
 *   ./cluster --name a --port 8001 --pg "host=... dbname=..." --redis 127.0.0.1:6379 \
 *             --trusted-proxy 127.0.0.1
 */
#include <vial.h>
#include <vial/pg.h>
#include <vial/realtime.h>

#include <stdio.h>

static const char *name = "vial";
static const char *pg_conninfo = "dbname=postgres";
static const char *redis_addr = NULL;
static const vial_option options[] = {
    {"name", "NAME", "this instance's name, answered by /whoami", &name},
    {"pg", "CONNINFO", "PostgreSQL connection string (the shared message table)", &pg_conninfo},
    {"redis", "HOST:PORT", "Redis that carries the hub between instances; none: this process only",
     &redis_addr},
    {0},
};

static vial_hub *hub;
static vial_pg *db;

#define TOPIC "news"

static int whoami(vial_req *rq, vial_res *rs)
{
    (void)rq;
    return vial_text(rs, 200, "%s\n", name);
}

static int ip(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "%s\n", vial_req_remote_addr(rq));
}

static int count(vial_req *rq, vial_res *rs) /* async */
{
    vial_pg_result *r;
    int64_t n;
    if (vial_pg_query(rq, db, &r, "select count(*) from cluster_messages", 0, NULL) != 0 ||
        vial_pg_getint(r, 0, 0, &n) != 0)
        return vial_abort(rs, 503);
    return vial_text(rs, 200, "%lld\n", (long long)n);
}

static int subscribers(vial_req *rq, vial_res *rs)
{
    (void)rq;
    vial_hub_counts c;
    vial_hub_stats(&c);
    return vial_text(rs, 200, "%llu\n", (unsigned long long)c.subscribers);
}

static int events(vial_req *rq, vial_res *rs) /* async: until the client leaves */
{
    vial_sse_opts o = {.heartbeat_ms = 15000};
    vial_sse_serve(rq, rs, hub, TOPIC, &o);
    return 0;
}

static int ws(vial_req *rq, vial_ws *ws)
{
    (void)rq;
    if (vial_ws_subscribe(ws, hub, TOPIC) < 0)
        return vial_ws_close(ws, 1011, "subscribe failed");
    /* Subscribed before this is sent: a client that has read it misses nothing. */
    char hello[80];
    int k = snprintf(hello, sizeof hello, "hello from %s", name);
    if (vial_ws_send(ws, VIAL_WS_TEXT, hello, (size_t)k) < 0)
        return 0;
    vial_ws_msg m;
    while (vial_ws_recv(ws, &m) == 0)
        ; /* what the client sends is ignored: publishing is POST's job */
    return 0;
}

static int publish(vial_req *rq, vial_res *rs) /* sync: a worker thread */
{
    size_t len;
    const void *body = vial_req_body(rq, &len);
    if (vial_hub_publish(hub, TOPIC, body, len) < 0)
        return vial_abort(rs, 503);
    return vial_text(rs, 200, "published by %s\n", name);
}

static int publish_async(vial_req *rq, vial_res *rs) /* async */
{
    size_t len;
    const char *body = vial_req_body(rq, &len);
    char *text = vial_strndup(rq, body ? body : "", len); /* a NUL-terminated parameter */
    if (!text)
        return vial_abort(rs, 500);
    const char *params[] = {name, text};
    int r = vial_pg_query(rq, db, NULL, "insert into cluster_messages(instance, body) values ($1, $2)",
                          2, params);
    if (r != 0) {
        const char *why = vial_pg_error(rq);
        return vial_text(rs, 503, "not stored: %s\n", why ? why : vial_strerror(r));
    }
    if (vial_hub_publish(hub, TOPIC, body, len) < 0)
        return vial_abort(rs, 503);
    return vial_text(rs, 200, "stored and published by %s\n", name);
}

int main(int argc, char **argv)
{
    vial_config cfg = vial_config_default();
    cfg.options = options;
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;

    hub = vial_hub_new();
    db = vial_pg_open(pg_conninfo, &(vial_pg_options){.max_conns = 4});
    if (!hub || !db) {
        fprintf(stderr, "cluster: cannot set up the hub or the database\n");
        return 1;
    }
    if (redis_addr) {
        int r = vial_hub_use_redis(hub, redis_addr, "cluster:hub:");
        if (r != 0) {
            fprintf(stderr, "cluster: redis hub at %s: %s\n", redis_addr, vial_strerror(r));
            return 1;
        }
    }

    vial_app *app = vial_app_new();
    vial_route_sync(app, "GET /whoami", whoami);
    vial_route_sync(app, "GET /ip", ip);
    vial_route(app, "GET /count", count);
    vial_route_sync(app, "GET /subscribers", subscribers);
    vial_route(app, "GET /events", events);
    vial_ws_route(app, "/ws", ws);
    vial_route_sync(app, "POST /publish", publish);
    vial_route(app, "POST /publish-async", publish_async);

    int r = vial_run(app, &cfg);
    vial_app_free(app);
    vial_pg_close(db);
    vial_hub_free(hub);
    return r == 0 ? 0 : 1;
}
