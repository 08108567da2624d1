/* Load shedding (--shed-target-ms), CoDel's rule applied to requests.
 *
 * A request's wait to start is the larger of two delays: how long its loop
 * took to reach it since the request's bytes woke it (a loop busy with
 * other requests), and how long the oldest sync job has been waiting in the
 * worker pool's queue (a view that would be queued now waits at least that).
 * Short bursts are absorbed: shedding starts only once the wait has stayed
 * above the target for a whole interval, and stops at the first request
 * that finds it below. Having just stopped, a wait above the target again
 * resumes shedding at once (CoDel re-enters its dropping state the same
 * way), so under steady overload accepted requests wait about the target
 * rather than target + interval each cycle.
 *
 * The state is process-wide and read and written by every loop thread with
 * relaxed atomics: a decision made on a slightly stale value only moves the
 * edge of a shedding period by a request or two. */
#include "app/app.h"
#include "app/ops.h"
#include "runtime/loop.h"
#include "runtime/pool.h"

#include <stdint.h>
#include <string.h>

/* The wait must stay above the target for the target itself, within
 * these bounds, before shedding starts: long enough to let a burst pass,
 * short enough that the queue it lets build is a small multiple of the
 * target. Having stopped within the last SHED_INTERVAL_NS, it starts again
 * at once. */
#define SHED_INTERVAL_NS (100ull * 1000000u)
#define SHED_INTERVAL_MIN_NS (10ull * 1000000u)

static uint64_t above_since; /* when the wait went above the target; 0: it is below */
static uint64_t stopped_at;  /* when the last shedding period ended */
static int shedding;
static uint64_t shed_total;

uint64_t vial_shed_total(void)
{
    return __atomic_load_n(&shed_total, __ATOMIC_RELAXED);
}

int vial_shed_check(vial_req *rq, uint64_t target_ns)
{
    uint64_t now = vial_clock_ns();
    vial_loop *loop = vial_loop_current();
    uint64_t wait = loop && now > loop->now ? now - loop->now : 0;
    if (rq->pool) {
        uint64_t oldest = vial_pool_oldest_ns(rq->pool);
        if (oldest && now > oldest && now - oldest > wait)
            wait = now - oldest;
        uint64_t backlog = vial_pool_backlog_ns(rq->pool);
        if (backlog > wait)
            wait = backlog;
    }
    int on = __atomic_load_n(&shedding, __ATOMIC_RELAXED);
    if (wait < target_ns) {
        if (on) {
            __atomic_store_n(&shedding, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&stopped_at, now, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&above_since, 0, __ATOMIC_RELAXED);
        return 0;
    }
    if (!on) {
        uint64_t since = __atomic_load_n(&above_since, __ATOMIC_RELAXED);
        uint64_t stopped = __atomic_load_n(&stopped_at, __ATOMIC_RELAXED);
        if (!since) {
            __atomic_store_n(&above_since, now, __ATOMIC_RELAXED);
            since = now;
        }
        uint64_t interval = target_ns < SHED_INTERVAL_MIN_NS ? SHED_INTERVAL_MIN_NS
                            : target_ns > SHED_INTERVAL_NS   ? SHED_INTERVAL_NS
                                                             : target_ns;
        if (now - since < interval && !(stopped && now - stopped < SHED_INTERVAL_NS))
            return 0;
        __atomic_store_n(&shedding, 1, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(&shed_total, 1, __ATOMIC_RELAXED);
    return 1;
}

void vial_shed_render(vial_req *rq)
{
    rq->is_head = !strcmp(vial_req_method(rq), "HEAD");
    vial_text(&rq->res, 503, "overloaded, retry later\n");
    vial_res_set_header(&rq->res, "Retry-After", "1");
    vial_res_set_header(&rq->res, "Cache-Control", "no-store");
}
