/* The driver kit (runtime/driver.h): the wait queue's order and its
 * cancellation, coalescing kicks, per-loop slots and their destructors, the
 * doomed check and the readiness re-poll. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/driver.h"
#include "runtime/coro.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tloop.h"

static vial_drv_queue queue;
static int order[8], norder, results[8];
static void *gifts[8];

static void waiter_fn(void *arg)
{
    int id = (int)(intptr_t)arg;
    results[id] = vial_drv_queue_wait(&queue, 0, &gifts[id]);
    order[norder++] = id;
}

static void test_queue_fifo_and_cancel(void **state)
{
    memset(&queue, 0, sizeof queue);
    norder = 0;
    vial_coro *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = vial_coro_new(&loop, waiter_fn, (void *)(intptr_t)i);
        vial_coro_resume(c[i]);
    }
    assert_int_equal(norder, 0);
    /* a cancelled waiter leaves the queue: the next wake goes past it */
    vial_coro_cancel(c[0]);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(norder, 1);
    assert_int_equal(results[0], -ECANCELED);
    static int gift;
    assert_int_equal(vial_drv_queue_wake_one(&queue, &gift), 1);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(norder, 2);
    assert_int_equal(order[1], 1);
    assert_int_equal(results[1], 0);
    assert_ptr_equal(gifts[1], &gift);
    vial_drv_queue_wake_all(&queue);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(norder, 3);
    assert_int_equal(order[2], 2);
    assert_int_equal(results[2], 0);
    assert_null(gifts[2]);
    assert_int_equal(vial_drv_queue_wake_one(&queue, NULL), 0);
    assert_null(queue.head);
    assert_null(queue.tail);
}

/* A waiter cancelled but not yet run cannot take a wake (or what it hands
 * over): the next one gets it. */
static void test_queue_passes_over_cancelled(void **state)
{
    memset(&queue, 0, sizeof queue);
    memset(gifts, 0, sizeof gifts);
    norder = 0;
    vial_coro *c[2];
    for (int i = 0; i < 2; i++) {
        c[i] = vial_coro_new(&loop, waiter_fn, (void *)(intptr_t)i);
        vial_coro_resume(c[i]);
    }
    vial_coro_cancel(c[0]);
    static int gift;
    assert_int_equal(vial_drv_queue_wake_one(&queue, &gift), 1);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(norder, 2);
    assert_int_equal(results[0], -ECANCELED);
    assert_null(gifts[0]);
    assert_int_equal(results[1], 0);
    assert_ptr_equal(gifts[1], &gift);
    assert_null(queue.head);
}

static void timed_waiter_fn(void *arg)
{
    results[0] = vial_drv_queue_wait(&queue, vial_drv_now(&loop) + 1000000, NULL);
    norder++;
}

static void test_queue_deadline(void **state)
{
    memset(&queue, 0, sizeof queue);
    norder = 0;
    vial_coro_resume(vial_coro_new(&loop, timed_waiter_fn, NULL));
    for (int i = 0; i < 100 && !norder; i++)
        vial_loop_run_once(&loop, 5);
    assert_int_equal(results[0], -ETIMEDOUT);
    assert_null(queue.head); /* it left the queue */
}

static int kicks;

static void kick_fn(vial_drv_timer *t)
{
    kicks++;
}

static void test_kick_coalesces(void **state)
{
    vial_drv_timer t;
    kicks = 0;
    vial_drv_timer_init(&t, &loop, kick_fn);
    vial_drv_kick(&t, 0);
    vial_drv_kick(&t, 0);
    vial_drv_kick(&t, 50000000);
    assert_true(vial_drv_timer_armed(&t));
    vial_loop_run_once(&loop, 0);
    assert_int_equal(kicks, 1);
    assert_false(vial_drv_timer_armed(&t));
    /* a later kick does not postpone an earlier one, an earlier one advances it */
    vial_drv_kick(&t, 3600ull * 1000000000ull);
    vial_drv_kick(&t, 0);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(kicks, 2);
    vial_drv_timer_stop(&t);
}

static int dtor_runs;
static void *dtor_seen;

static void dtor(void *v)
{
    dtor_runs++;
    dtor_seen = v;
}

static void test_local_dtor_at_loop_end(void **state)
{
    vial_loop l2;
    assert_int_equal(vial_loop_init(&l2, 1), 0);
    int key = vial_drv_key();
    assert_true(key >= 0);
    static int value;
    assert_null(vial_drv_local_get(&l2, key));
    assert_int_equal(vial_drv_local_set(&l2, key, &value, dtor), 0);
    assert_ptr_equal(vial_drv_local_get(&l2, key), &value);
    assert_null(vial_drv_local_get(&loop, key));
    dtor_runs = 0;
    vial_loop_fini(&l2);
    assert_int_equal(dtor_runs, 1);
    assert_ptr_equal(dtor_seen, &value);
    assert_int_equal(vial_drv_local_set(&l2, -1, &value, dtor), -EINVAL);
}

static int doomed_seen[2];

static void doomed_fn(void *arg)
{
    doomed_seen[0] = vial_drv_cancelled();
    vial_drv_wait(0);
    doomed_seen[1] = vial_drv_cancelled();
}

static void test_doomed(void **state)
{
    assert_int_equal(vial_drv_cancelled(), 0); /* not in a coroutine */
    vial_coro *c = vial_coro_new(&loop, doomed_fn, NULL);
    vial_coro_resume(c);
    assert_int_equal(doomed_seen[0], 0);
    assert_int_equal(vial_drv_doomed(c), 0);
    c->deadline = vial_drv_now(&loop); /* passed already */
    assert_int_equal(vial_drv_doomed(c), -ETIMEDOUT);
    vial_coro_cancel(c);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(doomed_seen[1], -ECANCELED);
}

static void test_poll(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(vial_drv_poll(sv[0], VIAL_IO_READ), 0);
    assert_int_equal(vial_drv_poll(sv[0], VIAL_IO_WRITE), VIAL_IO_WRITE);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(vial_drv_poll(sv[0], VIAL_IO_READ), VIAL_IO_READ);
    close(sv[1]);
    unsigned r = vial_drv_poll(sv[0], VIAL_IO_READ);
    assert_true(r & VIAL_IO_READ);
    assert_true(r & VIAL_IO_HUP);
    close(sv[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_fifo_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_passes_over_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick_coalesces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_dtor_at_loop_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doomed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
