/* Load shedding (--shed-target-ms): CoDel's control law applied to requests.
 *
 * Two waits are sampled: each sync job's time in the worker pool's queue
 * (taken by the pool as the job starts), and each request's time between its
 * bytes waking the loop and the app starting on it (a loop busy with other
 * work). Each has its own state, and a new request is shed while either says
 * so:
 *
 *   - a sample at or above the target starts the clock; once samples have
 *     stayed there for an interval (the target itself, kept within 10..100
 *     ms: long enough to let a burst through, short enough that the queue it
 *     lets build is a small multiple of the target), shedding starts;
 *   - the first sample below the target stops it;
 *   - having stopped less than 100 ms ago, a sample above the target starts
 *     it again at once (CoDel re-enters its dropping state the same way), so
 *     under steady overload accepted requests wait about the target, not
 *     target + interval each cycle;
 *   - shedding leaves no new samples once the queue has drained, so a pool
 *     with nothing queued and no sample for an interval stops it too;
 *   - a burst has not waited yet when it arrives: a request that would
 *     find the pool's backlog (queued jobs x their recent run time / pool
 *     threads) beyond target + interval is shed whatever the state.
 *
 * The state is process-wide, read and written with relaxed atomics by every
 * thread: a decision made on a slightly stale value only moves the edge of
 * a shedding period by a request or two. Off (target 0), nothing here runs. */
#include "app/app.h"
#include "app/ops.h"
#include "runtime/loop.h"
#include "runtime/pool.h"

#include <stdint.h>
#include <string.h>

#define SHED_REENTER_NS (100ull * 1000000u)
#define SHED_INTERVAL_MAX_NS (100ull * 1000000u)
#define SHED_INTERVAL_MIN_NS (10ull * 1000000u)

typedef struct codel {
    uint64_t above_since; /* first sample of the current run above target; 0: none */
    uint64_t stopped_at;  /* when shedding last stopped */
    uint64_t last_sample;
    int shedding;
} codel;

static uint64_t target_ns, interval_ns;
static codel pool_state, loop_state;
static uint64_t shed_total;

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* Writes only on a change of state (and the pool's sample time, which its
 * drain rule needs): below the target, the loop threads only read these
 * cache lines, so they do not bounce between cores on every request. */
static void observe(codel *c, uint64_t wait, uint64_t now)
{
    if (c == &pool_state)
        STORE(c->last_sample, now);
    if (wait < target_ns) {
        if (LOAD(c->above_since))
            STORE(c->above_since, 0);
        if (LOAD(c->shedding)) {
            STORE(c->shedding, 0);
            STORE(c->stopped_at, now);
        }
        return;
    }
    if (LOAD(c->shedding))
        return;
    uint64_t since = LOAD(c->above_since);
    if (!since)
        STORE(c->above_since, since = now);
    uint64_t stopped = LOAD(c->stopped_at);
    if (now - since >= interval_ns || (stopped && now - stopped < SHED_REENTER_NS))
        STORE(c->shedding, 1);
}

static void pool_wait(uint64_t wait_ns, uint64_t now_ns)
{
    observe(&pool_state, wait_ns, now_ns);
}

void vial_shed_init(uint64_t target)
{
    target_ns = target;
    interval_ns = target < SHED_INTERVAL_MIN_NS   ? SHED_INTERVAL_MIN_NS
                  : target > SHED_INTERVAL_MAX_NS ? SHED_INTERVAL_MAX_NS
                                                  : target;
    vial_pool_observe_waits(target ? pool_wait : NULL);
}

uint64_t vial_shed_total(void)
{
    return LOAD(shed_total);
}

int vial_shed_check(vial_req *rq)
{
    uint64_t now = vial_clock_ns();
    vial_loop *loop = vial_loop_current();
    observe(&loop_state, loop && now > loop->now ? now - loop->now : 0, now);
    int shed = LOAD(loop_state.shedding);
    if (LOAD(pool_state.shedding)) {
        if (rq->pool && !vial_pool_oldest_ns(rq->pool) &&
            now - LOAD(pool_state.last_sample) >= interval_ns) {
            /* Drained, and no job has started since: nothing would wait. */
            STORE(pool_state.shedding, 0);
            STORE(pool_state.above_since, 0);
            STORE(pool_state.stopped_at, now);
        } else {
            shed = 1;
        }
    }
    /* A burst arriving at once has not waited yet, so the samples cannot
     * see it; CoDel would drop its tail at dequeue. Here the tail is refused
     * at the door: what the queue holds already would keep it waiting
     * longer than shedding lets a queue build (target + interval). */
    if (!shed && rq->pool && vial_pool_backlog_ns(rq->pool) > target_ns + interval_ns)
        shed = 1;
    if (shed)
        __atomic_fetch_add(&shed_total, 1, __ATOMIC_RELAXED);
    return shed;
}

void vial_shed_render(vial_req *rq)
{
    rq->is_head = !strcmp(vial_req_method(rq), "HEAD");
    vial_text(&rq->res, 503, "overloaded, retry later\n");
    vial_res_set_header(&rq->res, "Retry-After", "1");
    vial_res_set_header(&rq->res, "Cache-Control", "no-store");
}
