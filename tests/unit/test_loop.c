/* The loop: fd readiness through the backend, cross-thread mailbox, deferred
 * callbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/loop.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static vial_loop loop;

static int setup(void **s) { return vial_loop_init(&loop, 0); }
static int teardown(void **s)
{
    vial_loop_fini(&loop);
    return 0;
}

static unsigned seen_events;
static void io_cb(vial_loop *l, vial_io *io, unsigned ev) { seen_events |= ev; }

static void test_readiness_edges(void **s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    vial_io io = {.fd = sv[0], .cb = io_cb};
    assert_int_equal(vial_io_add(&loop, &io), 0);
    seen_events = 0;
    vial_loop_run_once(&loop, 100);
    assert_true(seen_events & VIAL_IO_WRITE); /* writable at once */
    assert_false(seen_events & VIAL_IO_READ);
    seen_events = 0;
    assert_int_equal(write(sv[1], "x", 1), 1);
    vial_loop_run_once(&loop, 1000);
    assert_true(seen_events & VIAL_IO_READ);
    seen_events = 0;
    close(sv[1]);
    vial_loop_run_once(&loop, 1000);
    assert_true(seen_events & VIAL_IO_HUP);
    vial_io_del(&loop, &io);
    close(sv[0]);
}

enum { POSTERS = 4, PER_POSTER = 2000 };
static vial_msg msgs[POSTERS][PER_POSTER];
static int received;
static void count_msg(vial_loop *l, vial_msg *m) { received++; }

static void *poster(void *arg)
{
    vial_msg *mine = arg;
    for (int i = 0; i < PER_POSTER; i++) {
        mine[i].cb = count_msg;
        vial_loop_post(&loop, &mine[i]);
    }
    return NULL;
}

static void test_mailbox_from_threads(void **s)
{
    received = 0;
    pthread_t th[POSTERS];
    for (int i = 0; i < POSTERS; i++)
        pthread_create(&th[i], NULL, poster, msgs[i]);
    uint64_t t0 = vial_clock_ns();
    while (received < POSTERS * PER_POSTER && vial_clock_ns() - t0 < 5000000000ull)
        vial_loop_run_once(&loop, 50);
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    vial_loop_run_once(&loop, 0);
    assert_int_equal(received, POSTERS * PER_POSTER);
}

static int order[4], norder;
static void deferred(vial_loop *l, vial_msg *m) { order[norder++] = 2; }
static void io_defer_cb(vial_loop *l, vial_io *io, unsigned ev)
{
    static vial_msg m = {.cb = deferred};
    if (norder == 0) {
        order[norder++] = 1;
        vial_loop_defer(l, &m);
    }
}

static void test_defer_runs_after_batch(void **s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    vial_io io = {.fd = sv[0], .cb = io_defer_cb};
    norder = 0;
    vial_io_add(&loop, &io);
    vial_loop_run_once(&loop, 100);
    assert_int_equal(norder, 2);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    vial_io_del(&loop, &io);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readiness_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_from_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_runs_after_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
