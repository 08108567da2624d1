/* Coroutines: switching, parking/waking, cancellation, stack reuse and the
 * guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/coro.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tloop.h"

static int trace[16], ntrace;

static void step_fn(void *arg)
{
    intptr_t id = (intptr_t)arg;
    trace[ntrace++] = (int)id;
    vial_coro_yield();
    trace[ntrace++] = (int)id + 10;
}

static void test_resume_and_yield_interleave(void **state)
{
    ntrace = 0;
    vial_coro *a = vial_coro_new(&loop, step_fn, (void *)1);
    vial_coro *b = vial_coro_new(&loop, step_fn, (void *)2);
    vial_coro_resume(a);
    vial_coro_resume(b);
    assert_int_equal(ntrace, 2);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(ntrace, 4);
    int want[] = {1, 2, 11, 12};
    assert_memory_equal(trace, want, sizeof want);
}

static int park_result;

static void park_fn(void *arg)
{
    park_result = vial_coro_park();
}

static void test_wake_passes_result(void **state)
{
    park_result = 0;
    vial_coro *c = vial_coro_new(&loop, park_fn, NULL);
    vial_coro_resume(c);
    assert_true(c->parked);
    vial_coro_wake(c, 42);
    vial_coro_wake(c, 7); /* not parked any more: ignored */
    vial_loop_run_once(&loop, 0);
    assert_int_equal(park_result, 42);
}

static void test_cancel_wakes_with_ecanceled(void **state)
{
    park_result = 0;
    vial_coro *c = vial_coro_new(&loop, park_fn, NULL);
    vial_coro_resume(c);
    vial_coro_cancel(c);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(park_result, -ECANCELED);
}

static int sleep_result;
static uint64_t slept_ns;

static void sleep_fn(void *arg)
{
    uint64_t t0 = vial_clock_ns();
    sleep_result = vial_coro_sleep_ns((uint64_t)(uintptr_t)arg);
    slept_ns = vial_clock_ns() - t0;
}

static void test_sleep_never_early(void **state)
{
    vial_coro *c = vial_coro_new(&loop, sleep_fn, (void *)(uintptr_t)20000000u);
    vial_coro_resume(c);
    for (int i = 0; i < 100 && !c->done && slept_ns == 0; i++)
        vial_loop_run_once(&loop, 50);
    assert_int_equal(sleep_result, 0);
    assert_true(slept_ns >= 20000000u);
}

static void test_sleep_cancelled_removes_timer(void **state)
{
    sleep_result = 1;
    vial_coro *c = vial_coro_new(&loop, sleep_fn, (void *)(uintptr_t)5000000000u);
    vial_coro_resume(c);
    assert_int_equal(loop.nheap, 1);
    vial_coro_cancel(c);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(sleep_result, -ECANCELED);
    assert_int_equal(loop.nheap, 0);
}

static int exits;
static void on_exit_count(vial_coro *c) { exits++; }
static void nop_fn(void *arg) {}

static void test_stacks_are_reused(void **state)
{
    exits = 0;
    vial_coro *first = vial_coro_new(&loop, nop_fn, NULL);
    first->on_exit = on_exit_count;
    char *stack = first->stack;
    vial_coro_resume(first);
    vial_coro *second = vial_coro_new(&loop, nop_fn, NULL);
    assert_ptr_equal(second->stack, stack);
    second->on_exit = on_exit_count;
    vial_coro_resume(second);
    assert_int_equal(exits, 2);
}

static void deep_fn(void *arg)
{
    /* uses most of a 64 KiB stack, legitimately */
    volatile char buf[48 * 1024];
    memset((char *)buf, 1, sizeof buf);
    *(int *)arg = buf[100] + buf[sizeof buf - 1];
}

static void test_deep_stack_use_fits(void **state)
{
    int out = 0;
    vial_coro *c = vial_coro_new(&loop, deep_fn, &out);
    vial_coro_resume(c);
    assert_int_equal(out, 2);
}

__attribute__((noinline)) static int touch_deep(void)
{
    volatile char buf[32 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 512)
        buf[i] = 1;
    return buf[100] + buf[sizeof buf - 512];
}

/* Resident pages of the running coroutine's usable stack. */
static size_t stack_resident(void)
{
    vial_coro *c = vial_coro_current();
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), n = (c->stack_size + ps - 1) / ps, count = 0;
    unsigned char v[64];
    assert_true(n <= sizeof v);
    assert_int_equal(mincore(c->stack, n * ps, v), 0);
    for (size_t i = 0; i < n; i++)
        count += v[i] & 1;
    return count;
}

static void trim_fn(void *arg)
{
    size_t *out = arg;
    assert_int_equal(touch_deep(), 1);
    out[0] = stack_resident();
    vial_coro_trim_stack();
    out[1] = stack_resident();
}

static void test_trim_gives_back_deep_pages(void **state)
{
    size_t out[2] = {0, 0};
    vial_coro *c = vial_coro_new(&loop, trim_fn, out);
    vial_coro_resume(c);
#ifndef __SANITIZE_ADDRESS__
    assert_true(out[0] >= 8); /* the 32 KiB buffer was on this stack */
#endif
    assert_true(out[1] <= 2); /* the top page (the header and trim_fn's frame), maybe one more */
}

/* A burst larger than WARM_STACKS leaves its stacks warm for the requests
 * that follow (giving back the stack just put made every later coroutine
 * fault its pages in again); vial_coro_pool_trim gives back all but the
 * warmest few. */
static void burst_fn(void *arg)
{
    size_t *resident = arg;
    if (resident)
        *resident = stack_resident();
    touch_deep();
    vial_coro_park();
}

static void test_burst_stacks_stay_warm(void **state)
{
    enum { N = 200 };
    vial_coro_pool *small = loop.coro_pool;
    loop.coro_pool = vial_coro_pool_new(64 * 1024, 1024);
    assert_non_null(loop.coro_pool);
    static size_t resident[N];
    vial_coro *cs[N];
    for (int round = 0; round < 3; round++) {
        if (round == 2)
            vial_coro_pool_trim(loop.coro_pool);
        for (int i = 0; i < N; i++) {
            cs[i] = vial_coro_new(&loop, burst_fn, &resident[i]);
            assert_non_null(cs[i]);
            vial_coro_resume(cs[i]);
        }
        for (int i = 0; i < N; i++)
            vial_coro_wake(cs[i], 0);
        vial_loop_run_once(&loop, 0);
#ifndef __SANITIZE_ADDRESS__
        size_t warm = 0;
        for (int i = 0; i < N; i++)
            warm += resident[i] >= 8;
        if (round == 1)
            assert_int_equal(warm, N); /* every stack came back warm */
        if (round == 2)
            assert_true(warm <= 64 + 1); /* trimmed: only the warmest kept */
#endif
    }
    vial_coro_pool_free(loop.coro_pool);
    loop.coro_pool = small;
}

static void test_many_coroutines(void **state)
{
    /* more coroutines alive at once than the stack cache holds */
    enum { N = 200 };
    vial_coro *cs[N];
    park_result = -1;
    for (int i = 0; i < N; i++) {
        cs[i] = vial_coro_new(&loop, park_fn, NULL);
        assert_non_null(cs[i]);
        vial_coro_resume(cs[i]);
    }
    for (int i = 0; i < N; i++)
        vial_coro_wake(cs[i], i);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(park_result, N - 1);
}

#if !defined(VIAL_SANITIZE)
static int recurse(int depth)
{
    volatile char frame[1024];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)depth;
    return depth > 1000000 ? frame[0] : recurse(depth + 1) + frame[sizeof frame - 1];
}

static void overflow_fn(void *arg)
{
    *(int *)arg = recurse(0); /* unbounded recursion: runs into the guard page */
}

/* The guard page turns an overflow into a report naming the coroutine. */
static void test_overflow_is_reported(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        vial_coro_install_overflow_handler();
        static int sink;
        vial_coro *c = vial_coro_new(&loop, overflow_fn, &sink);
        c->label = "GET /too-deep";
        vial_coro_resume(c);
        _exit(0);
    }
    close(fds[1]);
    char out[512] = {0};
    ssize_t n = read(fds[0], out, sizeof out - 1);
    int st;
    waitpid(pid, &st, 0);
    close(fds[0]);
    assert_true(n > 0);
    assert_true(WIFSIGNALED(st));
    assert_non_null(strstr(out, "stack overflow"));
    assert_non_null(strstr(out, "GET /too-deep"));
}
#endif

/* A route that computes without awaiting and returns, after which the
 * connection relabels itself and finishes the slice: the stall report must
 * still name the route, not the connection. */
static void spin_then_relabel(void *arg)
{
    vial_coro *c = vial_coro_current();
    vial_coro_label_route(c, "GET /spin (spin)");
    uint64_t t0 = vial_clock_ns();
    while (vial_clock_ns() - t0 < 80 * 1000000ull)
        ;
    c->label = "http connection";
}

static void test_stall_report_names_the_route(void **state)
{
    char path[] = "/tmp/vial-stall-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    loop.stall_ns = 20 * 1000000ull;
    vial_coro *c = vial_coro_new(&loop, spin_then_relabel, NULL);
    c->label = "http connection";
    vial_coro_resume(c);
    loop.stall_ns = 0;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char out[1024] = {0};
    assert_true(pread(fd, out, sizeof out - 1, 0) > 0);
    close(fd);
    assert_non_null(strstr(out, "stall: GET /spin (spin) held the event loop"));
}

/* --- the fairness budget (vial_coro_spend) ------------------------------------- */

static int spends, slices_seen, spender_stop;

static void spender_fn(void *arg)
{
    while (!spender_stop) {
        spends++;
        if (vial_coro_spend(VIAL_SLICE_ITEM))
            slices_seen++;
    }
}

/* A coroutine whose work never runs dry yields once per budget, and only
 * then: the slice is VIAL_SLICE_BUDGET / VIAL_SLICE_ITEM items. */
static void test_spend_yields_once_per_budget(void **state)
{
    spends = slices_seen = spender_stop = 0;
    vial_coro *c = vial_coro_new(&loop, spender_fn, NULL);
    vial_coro_resume(c);
    assert_int_equal(spends, VIAL_SLICE_BUDGET / VIAL_SLICE_ITEM);
    assert_true(c->queued);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(slices_seen, 1);
    assert_int_equal(spends, 2 * (VIAL_SLICE_BUDGET / VIAL_SLICE_ITEM));
    spender_stop = 1;
    vial_loop_run_once(&loop, 0);
    assert_true(vial_coro_spend(VIAL_SLICE_BUDGET) == 0); /* off a coroutine: no-op */
}

static int io_saw_spends = -1, msg_saw_spends = -1;

static void fair_io_cb(vial_loop *l, vial_io *io, unsigned ev)
{
    char b[8];
    (void)!read(io->fd, b, sizeof b);
    io_saw_spends = spends;
}

static void fair_msg_cb(vial_loop *l, vial_msg *m)
{
    msg_saw_spends = spends;
}

/* A yielding coroutine resumes only after the loop handled the I/O events
 * and mailbox messages that came during its slice: yielding lets the other
 * connections in, and does not just run it again. */
static void test_yield_lets_io_and_mailbox_in_first(void **state)
{
    spends = slices_seen = spender_stop = 0;
    io_saw_spends = msg_saw_spends = -1;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    vial_io io = {.fd = fds[0], .cb = fair_io_cb};
    assert_int_equal(vial_io_add(&loop, &io), 0);
    vial_coro *c = vial_coro_new(&loop, spender_fn, NULL);
    vial_coro_resume(c); /* the first slice; it yielded */
    int first = spends;
    assert_int_equal(write(fds[1], "x", 1), 1);
    vial_msg m = {.cb = fair_msg_cb};
    vial_loop_post(&loop, &m);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(io_saw_spends, first);
    assert_int_equal(msg_saw_spends, first);
    assert_true(spends > first); /* and then it ran again */
    spender_stop = 1;
    vial_loop_run_once(&loop, 0);
    vial_io_del(&loop, &io);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_and_yield_interleave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wake_passes_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_wakes_with_ecanceled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sleep_never_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sleep_cancelled_removes_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stacks_are_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_stack_use_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_gives_back_deep_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_stacks_stay_warm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_coroutines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_report_names_the_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spend_yields_once_per_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yield_lets_io_and_mailbox_in_first, setup, teardown),
#if !defined(VIAL_SANITIZE)
        cmocka_unit_test_setup_teardown(test_overflow_is_reported, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
