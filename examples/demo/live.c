/* Live updates: every open board holds a websocket in one group and hears
 * "task N changed" the moment it happens; the activity feed is a stream of
 * server-sent events, its history read from the activity table and its new
 * lines carried by a hub (vial/realtime.h) from whichever thread made them. */
#include "demo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vial/realtime.h>

static vial_ws_group *boards;
static vial_hub *hub;

int task_changed(vial_req *rq, const char *event, const char *id, const char *what)
{
    const char *user = current_user(rq);
    const char *p[] = {vial_sprintf(rq, "%lld", (long long)time(NULL)),
                       vial_sprintf(rq, "%s %s", user ? user : "someone", what)};
    rows a;
    int r = db_query(rq, &a, "INSERT INTO activity (at, text) VALUES ($1, $2) RETURNING id", 2, p);
    if (r == 0) {
        const char *line = vial_sprintf(rq, "%s %s", p[0], p[1]);
        vial_sse_event ev = {.id = cell(&a, 0, 0), .data = line, .len = strlen(line)};
        vial_hub_publish_event(hub, "activity", &ev);
    }
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

/* Sends the activity lines after *last from the table; *last follows. */
static int send_history(vial_req *rq, vial_res *rs, long long *last, int limit)
{
    const char *p[] = {vial_sprintf(rq, "%lld", *last), vial_sprintf(rq, "%d", limit)};
    rows r;
    if (db_query(rq, &r, "SELECT id, at || ' ' || text FROM activity WHERE id > $1"
                 " ORDER BY id LIMIT $2", 2, p) < 0)
        return -1;
    for (size_t i = 0; i < r.n; i++) {
        vial_sse_event ev = {.id = cell(&r, i, 0), .data = cell(&r, i, 1),
                             .len = strlen(cell(&r, i, 1))};
        if (vial_sse_send(rs, &ev) < 0)
            return -1;
        *last = atoll(ev.id);
    }
    return 0;
}

/* GET /events: the activity feed. The last 20 lines first (or what came
 * after Last-Event-ID on a reconnect), then each new one as it happens. */
static int events(vial_req *rq, vial_res *rs)
{
    if (!current_user(rq))
        return vial_abort(rs, 401);
    /* Subscribed before reading the table, so no line falls in between. */
    vial_sub *sub = vial_hub_subscribe(rq, hub, "activity");
    const char *since = vial_sse_last_id(rq);
    long long last = since ? atoll(since) : 0;
    rows r;
    if (!sub || (!since && db_query(rq, &r, "SELECT max(id) FROM activity", 0, NULL) < 0))
        return vial_abort(rs, 503);
    if (!since && cell(&r, 0, 0))
        last = atoll(cell(&r, 0, 0)) > 20 ? atoll(cell(&r, 0, 0)) - 20 : 0;
    if (vial_sse_begin(rs) < 0 || send_history(rq, rs, &last, 100) < 0)
        return 0;
    for (;;) {
        vial_sse_event ev;
        int e = vial_sub_next(sub, &ev, 15000);
        if (e == 0 && atoll(ev.id) > last) { /* not one the table already gave */
            if (vial_sse_send(rs, &ev) < 0)
                return 0;
            last = atoll(ev.id);
        } else if (e == -ETIMEDOUT) {
            /* Quiet for 15 s: a comment finds out whether the client is
             * still there, and the table catches what another process
             * sharing a PostgreSQL database recorded. */
            if (vial_sse_comment(rs, "ping") < 0 || send_history(rq, rs, &last, 100) < 0)
                return 0;
        } else if (e < 0) {
            return 0;
        }
    }
}

int live_register(vial_app *app)
{
    boards = vial_ws_group_new();
    hub = vial_hub_new();
    if (!boards || !hub)
        return -1;
    int r = vial_ws_route_as(app, "/ws", board_ws, "board_ws", NULL);
    return r < 0 ? r : vial_route(app, "GET /events", events);
}
