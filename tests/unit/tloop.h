/* A loop with a coroutine stack pool, for the unit tests that run
 * coroutines on it by hand (vial_coro_resume, vial_loop_run_once).
 * Header-only; include after cmocka.h. */
#ifndef VIAL_TEST_TLOOP_H
#define VIAL_TEST_TLOOP_H

#include "runtime/coro.h"

static vial_loop loop;

static int setup(void **state)
{
    assert_int_equal(vial_loop_init(&loop, 0), 0);
    loop.coro_pool = vial_coro_pool_new(64 * 1024, 4);
    assert_non_null(loop.coro_pool);
    return 0;
}

static int teardown(void **state)
{
    vial_coro_pool_free(loop.coro_pool);
    vial_loop_fini(&loop);
    return 0;
}

#endif
