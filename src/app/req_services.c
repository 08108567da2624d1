/* What the request offers to code that is not a view: the client libraries
 * (src/clients) and other extensions reach the request's arena, its end and
 * its worker pool through these, never through the exchange's fields. */
#include "http/exchange.h"
#include "runtime/driver.h"

#include <errno.h>
#include <string.h>

char *vial_strndup(vial_req *rq, const char *s, size_t n)
{
    return vial_arena_strndup(&rq->arena, s, n);
}

int vial_req_on_end(vial_req *rq, void (*fn)(void *arg), void *arg)
{
    return vial_exchange_defer(rq, fn, arg);
}

int vial_req_is_sync(const vial_req *rq)
{
    return rq->is_sync != 0;
}

int vial_offload_wait(vial_req *rq, void (*fn)(void *arg), void (*interrupt)(void *arg), void *arg)
{
    if (rq->is_sync || !vial_drv_self())
        return -EPERM;
    if (!rq->pool)
        return -ENOSYS;
    return vial_drv_run(rq->pool, fn, interrupt, arg);
}
