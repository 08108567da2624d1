/* Worker pool: parallelism, completion on the owning loop, bounded queue,
 * cancellation while a job runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/coro.h"
#include "runtime/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static vial_loop loop;
static vial_pool *pool;

static int setup(void **s)
{
    assert_int_equal(vial_loop_init(&loop, 0), 0);
    loop.coro_pool = vial_coro_pool_new(64 * 1024, 16);
    pool = vial_pool_new(4, 8);
    assert_non_null(pool);
    return 0;
}

static int teardown(void **s)
{
    vial_pool_free(pool);
    vial_coro_pool_free(loop.coro_pool);
    vial_loop_fini(&loop);
    return 0;
}

static atomic_int running, max_running;
static pthread_t loop_thread;

static void blocking_work(void *arg)
{
    int now = atomic_fetch_add(&running, 1) + 1;
    int m = atomic_load(&max_running);
    while (now > m && !atomic_compare_exchange_weak(&max_running, &m, now))
        ;
    assert_false(pthread_equal(pthread_self(), loop_thread));
    usleep(100 * 1000);
    atomic_fetch_sub(&running, 1);
}

static int done;

static void offload_fn(void *arg)
{
    int r = vial_pool_run(pool, blocking_work, NULL);
    assert_int_equal(r, 0);
    /* resumed on the loop's thread */
    assert_true(pthread_equal(pthread_self(), loop_thread));
    done++;
}

static void test_four_jobs_run_at_once(void **s)
{
    loop_thread = pthread_self();
    done = 0;
    atomic_store(&max_running, 0);
    for (int i = 0; i < 4; i++)
        vial_coro_resume(vial_coro_new(&loop, offload_fn, NULL));
    uint64_t t0 = vial_clock_ns();
    while (done < 4 && vial_clock_ns() - t0 < 5000000000ull)
        vial_loop_run_once(&loop, 100);
    assert_int_equal(done, 4);
    assert_int_equal(atomic_load(&max_running), 4);
}

static void noop_work(vial_job *j) {}
static void noop_done(vial_loop *l, vial_msg *m) { done++; }

static void slow_work(vial_job *j) { usleep(200 * 1000); }

static void test_queue_is_bounded(void **s)
{
    /* 4 workers busy + 8 queued: the 13th submission is refused */
    static vial_job jobs[13];
    done = 0;
    int refused = 0;
    for (int i = 0; i < 13; i++) {
        jobs[i] = (vial_job){.done = {.cb = noop_done}, .work = i < 4 ? slow_work : noop_work, .loop = &loop};
        if (vial_pool_submit(pool, &jobs[i]) == -EAGAIN)
            refused++;
        if (i == 3)
            usleep(50 * 1000); /* let the workers take the slow ones */
    }
    assert_int_equal(refused, 1);
    uint64_t t0 = vial_clock_ns();
    while (done < 12 && vial_clock_ns() - t0 < 5000000000ull)
        vial_loop_run_once(&loop, 100);
    assert_int_equal(done, 12);
}

static void cancel_target(void *arg)
{
    *(int *)arg = vial_pool_run(pool, blocking_work, NULL);
    done++;
}

static void test_cancel_waits_for_running_job(void **s)
{
    loop_thread = pthread_self();
    done = 0;
    int result = -1;
    vial_coro *c = vial_coro_new(&loop, cancel_target, &result);
    vial_coro_resume(c);
    vial_coro_cancel(c);
    vial_loop_run_once(&loop, 0);
    /* the job's memory is on c's stack: c must still be waiting */
    assert_int_equal(done, 0);
    uint64_t t0 = vial_clock_ns();
    while (!done && vial_clock_ns() - t0 < 5000000000ull)
        vial_loop_run_once(&loop, 100);
    assert_int_equal(done, 1);
    assert_int_equal(result, 0);
}

static atomic_int queued_ran;
static void mark_ran(void *arg) { atomic_fetch_add(&queued_ran, 1); }

static void cancellable_target(void *arg)
{
    *(int *)arg = vial_pool_run_cancellable(pool, mark_ran, NULL);
    done++;
}

static void test_cancel_withdraws_queued_job(void **s)
{
    /* 4 workers busy for 200 ms: the next job waits in the queue. Its
     * coroutine is cancelled: it must return at once with -ECANCELED, and
     * the job must never run. */
    static vial_job busy[4];
    done = 0;
    atomic_store(&queued_ran, 0);
    for (int i = 0; i < 4; i++) {
        busy[i] = (vial_job){.done = {.cb = noop_done}, .work = slow_work, .loop = &loop};
        assert_int_equal(vial_pool_submit(pool, &busy[i]), 0);
    }
    /* the workers take them (polled, bounded: a loaded machine may take
     * longer than any fixed sleep to schedule four threads) */
    for (int i = 0; i < 5000 && vial_pool_queued(pool) > 0; i++)
        usleep(1000);
    assert_int_equal(vial_pool_queued(pool), 0);
    int result = 1;
    vial_coro *c = vial_coro_new(&loop, cancellable_target, &result);
    vial_coro_resume(c);
    assert_int_equal(vial_pool_queued(pool), 1);
    vial_coro_abandon(c);
    uint64_t t0 = vial_clock_ns();
    while (done < 1 && vial_clock_ns() - t0 < 5000000000ull)
        vial_loop_run_once(&loop, 10);
    assert_int_equal(result, -ECANCELED);
    assert_int_equal(vial_pool_queued(pool), 0);
    /* the busy jobs finish (4 completions); the withdrawn one never runs */
    while (done < 5 && vial_clock_ns() - t0 < 5000000000ull)
        vial_loop_run_once(&loop, 10);
    assert_int_equal(done, 5);
    usleep(20 * 1000);
    assert_int_equal(atomic_load(&queued_ran), 0);

    /* a plain cancellation (a FIN: the client may still read) keeps the job */
    for (int i = 0; i < 4; i++) {
        busy[i] = (vial_job){.done = {.cb = noop_done}, .work = slow_work, .loop = &loop};
        assert_int_equal(vial_pool_submit(pool, &busy[i]), 0);
    }
    usleep(50 * 1000);
    done = 0;
    c = vial_coro_new(&loop, cancellable_target, &result);
    vial_coro_resume(c);
    vial_coro_cancel(c);
    t0 = vial_clock_ns();
    while (done < 5 && vial_clock_ns() - t0 < 5000000000ull)
        vial_loop_run_once(&loop, 10);
    assert_int_equal(result, 0);
    assert_int_equal(atomic_load(&queued_ran), 1);

    /* already abandoned: nothing is queued at all */
    done = 0;
    c = vial_coro_new(&loop, cancellable_target, &result);
    c->cancelled = c->abandoned = 1;
    vial_coro_resume(c);
    assert_int_equal(result, -ECANCELED);
    assert_int_equal(vial_pool_queued(pool), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_four_jobs_run_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_waits_for_running_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_withdraws_queued_job, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
