/* The loop's timer heap: ordering, stop from any slot, re-arming. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/loop.h"

#include <stdlib.h>

static vial_loop loop;
static int fired[512], nfired;

typedef struct {
    vial_timer t;
    int id;
} idtimer;

static void record(vial_loop *l, vial_timer *t)
{
    fired[nfired++] = ((idtimer *)t)->id;
}

static int setup(void **s)
{
    nfired = 0;
    return vial_loop_init(&loop, 0);
}

static int teardown(void **s)
{
    vial_loop_fini(&loop);
    return 0;
}

static void test_fire_in_deadline_order(void **s)
{
    enum { N = 300 };
    static idtimer ts[N];
    srand(7);
    uint64_t base = vial_clock_ns();
    for (int i = 0; i < N; i++) {
        ts[i].t.cb = record;
        ts[i].id = i;
        ts[i].t.slot = 0;
        vial_timer_start(&loop, &ts[i].t, base + (uint64_t)(rand() % 1000) * 1000);
    }
    /* stop a third of them, from arbitrary heap positions */
    for (int i = 0; i < N; i += 3)
        vial_timer_stop(&loop, &ts[i].t);
    assert_int_equal(loop.nheap, N - (N + 2) / 3);
    for (int k = 0; k < 50 && loop.nheap; k++)
        vial_loop_run_once(&loop, 5);
    assert_int_equal(nfired, N - (N + 2) / 3);
    for (int i = 1; i < nfired; i++)
        assert_true(ts[fired[i - 1]].t.when <= ts[fired[i]].t.when);
    for (int i = 0; i < nfired; i++)
        assert_int_not_equal(fired[i] % 3, 0);
}

static void test_restart_moves_deadline(void **s)
{
    idtimer a = {.t = {.cb = record}, .id = 1}, b = {.t = {.cb = record}, .id = 2};
    uint64_t now = vial_clock_ns();
    vial_timer_start(&loop, &a.t, now + 1000);
    vial_timer_start(&loop, &b.t, now + 2000);
    vial_timer_start(&loop, &a.t, now + 3000); /* re-arm later: b first now */
    assert_int_equal(loop.nheap, 2);
    for (int k = 0; k < 20 && loop.nheap; k++)
        vial_loop_run_once(&loop, 5);
    assert_int_equal(nfired, 2);
    assert_int_equal(fired[0], 2);
    assert_int_equal(fired[1], 1);
    assert_false(vial_timer_armed(&a.t));
}

static void test_stop_unarmed_is_noop(void **s)
{
    idtimer a = {.t = {.cb = record}, .id = 1};
    vial_timer_stop(&loop, &a.t);
    assert_int_equal(loop.nheap, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fire_in_deadline_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_moves_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_unarmed_is_noop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
