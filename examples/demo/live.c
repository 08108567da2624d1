/* Live updates: every open board holds a websocket in one group and hears
 * "task N changed" the moment it happens; the activity feed is a
 * server-sent event stream read from the activity table. */
#include "demo.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static vial_ws_group *boards;
/* Bumped on every recorded activity, so idle feeds skip the database. */
static atomic_uint activity_seq;

int task_changed(vial_req *rq, const char *event, const char *id, const char *what)
{
    const char *user = current_user(rq);
    const char *p[] = {vial_sprintf(rq, "%lld", (long long)time(NULL)),
                       vial_sprintf(rq, "%s %s", user ? user : "someone", what)};
    int r = db_query(rq, NULL, "INSERT INTO activity (at, text) VALUES ($1, $2)", 2, p);
    atomic_fetch_add(&activity_seq, 1);
    /* Only the event and the id: pages fetch the task through the API, so
     * a message never carries text that would need escaping here. */
    char msg[96];
    int n = snprintf(msg, sizeof msg, "{\"event\":\"%s\",\"id\":%s}", event, id);
    vial_ws_group_broadcast(boards, VIAL_WS_TEXT, msg, (size_t)n);
    return r;
}

static int board_ws(vial_req *rq, vial_ws *ws)
{
    if (!current_user(rq))
        return 0; /* not accepted: a 403 */
    if (vial_ws_group_join(boards, ws) < 0)
        return vial_ws_close(ws, 1011, "join failed");
    vial_ws_msg m;
    while (vial_ws_recv(ws, &m) == 0)
        ; /* the page only listens; broadcasts go out while we wait here */
    return 0;
}

/* GET /events: the activity feed. The last 20 lines first (or what came
 * after Last-Event-ID on a reconnect), then each new one as it happens. */
static int events(vial_req *rq, vial_res *rs)
{
    if (!current_user(rq))
        return vial_abort(rs, 401);
    const char *since = vial_req_header(rq, "Last-Event-ID");
    long long last = since ? atoll(since) : 0;
    rows r;
    if (!since) {
        if (db_query(rq, &r, "SELECT max(id) FROM activity", 0, NULL) < 0)
            return vial_abort_msg(rs, 503, db_error(rq));
        long long max = cell(&r, 0, 0) ? atoll(cell(&r, 0, 0)) : 0;
        last = max > 20 ? max - 20 : 0;
    }
    vial_res_set_header(rs, "Cache-Control", "no-store");
    if (vial_stream_begin(rs, 200, "text/event-stream; charset=utf-8") < 0 ||
        vial_stream_printf(rs, "retry: 2000\n\n") < 0)
        return 0;
    unsigned idle_ms = 0;
    for (;;) {
        unsigned seen = atomic_load(&activity_seq);
        const char *p[] = {vial_sprintf(rq, "%lld", last)};
        if (db_query(rq, &r, "SELECT id, at, text FROM activity WHERE id > $1 ORDER BY id LIMIT 100",
                     1, p) < 0)
            return 0;
        for (size_t i = 0; i < r.n; i++) {
            last = atoll(cell(&r, i, 0));
            if (vial_stream_printf(rs, "id: %lld\ndata: %s %s\n\n", last, cell(&r, i, 1),
                                   cell(&r, i, 2)) < 0)
                return 0;
        }
        /* Sleep until something is recorded; every 15 s a comment line
         * finds out whether the client is still there, and the table is
         * read again (another process may share a PostgreSQL database). */
        while (atomic_load(&activity_seq) == seen && idle_ms < 15000) {
            if (vial_sleep(rq, 200) < 0)
                return 0;
            idle_ms += 200;
        }
        if (idle_ms >= 15000 && vial_stream_printf(rs, ": ping\n\n") < 0)
            return 0;
        idle_ms = 0;
    }
}

int live_register(vial_app *app)
{
    boards = vial_ws_group_new();
    if (!boards)
        return -1;
    int r = vial_ws_route_as(app, "/ws", board_ws, "board_ws", NULL);
    return r < 0 ? r : vial_route(app, "GET /events", events);
}
