#include "http/exchange.h"

#include <string.h>

void vial_exchange_init(vial_req *rq, struct vial_conn *conn, struct vial_server *srv)
{
    /* Only the fields before the parsed head's neighbours need clearing; the
     * head was filled by the parser and the inline arena needs none. */
    rq->conn = conn;
    rq->server = srv;
    vial_arena_init(&rq->arena, rq->arena_inline, sizeof rq->arena_inline);
    rq->body = "";
    rq->body_len = 0;
    rq->is_head = 0;
    rq->is_sync = 0;
    rq->method_z = rq->path_z = rq->query_z = NULL;
    rq->args = NULL;
    rq->nargs = 0;
    rq->args_parsed = 0;
    rq->route = NULL;
    rq->nparams = 0;
    memset(&rq->res, 0, offsetof(vial_res, json));
    rq->res.rq = rq;
    rq->res.status = 200;
    rq->res.headers = rq->res.inline_headers;
    rq->res.headers_cap = VIAL_RES_INLINE_HEADERS;
}

void vial_exchange_fini(vial_req *rq)
{
    vial_arena_reset(&rq->arena, NULL, 0);
}
