#include "http/exchange.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

void vial_exchange_init(vial_req *rq, struct vial_conn *conn, struct vial_server *srv)
{
    /* Only the fields before the parsed head's neighbours need clearing; the
     * head was filled by the parser and the inline arena needs none. */
    rq->conn = conn;
    rq->server = srv;
    rq->app_data = NULL;
    rq->pool = NULL;
    rq->sink_begin = NULL;
    rq->sink_write = NULL;
    rq->sink_data = NULL;
    rq->reject_status = 0;
    vial_arena_init(&rq->arena, rq->arena_inline, sizeof rq->arena_inline);
    rq->body = "";
    rq->body_len = 0;
    rq->is_head = 0;
    rq->is_sync = 0;
    rq->method_z = rq->path_z = rq->query_z = NULL;
    rq->args = NULL;
    rq->nargs = 0;
    rq->args_parsed = 0;
    rq->remote_addr = NULL;
    rq->cleanups = NULL;
    memset(&rq->res, 0, offsetof(vial_res, inline_headers));
    rq->res.file_fd = -1;
    rq->res.rq = rq;
    rq->res.status = 200;
    rq->res.headers = rq->res.inline_headers;
    rq->res.headers_cap = VIAL_RES_INLINE_HEADERS;
}

void vial_exchange_fini(vial_req *rq)
{
    while (rq->cleanups) {
        vial_cleanup *c = rq->cleanups;
        rq->cleanups = c->next;
        c->fn(c->arg);
    }
    if (rq->res.file_fd >= 0) {
        close(rq->res.file_fd);
        rq->res.file_fd = -1;
    }
    vial_arena_reset(&rq->arena, NULL, 0);
}

int vial_exchange_defer(vial_req *rq, void (*fn)(void *arg), void *arg)
{
    vial_cleanup *c = vial_arena_alloc(&rq->arena, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fn = fn;
    c->arg = arg;
    c->next = rq->cleanups;
    rq->cleanups = c;
    return 0;
}
