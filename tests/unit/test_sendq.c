/* vial_send_many: every send's result is known when the call returns —
 * sent, a full socket's -EAGAIN (not a send left waiting in the kernel),
 * a bad descriptor's error — in batches longer than the ring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/sendq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { NPAIRS = 300 }; /* more than the ring's 256 entries */

static vial_loop loop;
static int pairs[NPAIRS][2];

static int setup(void **s)
{
    (void)s;
    if (vial_loop_init(&loop, 0) < 0)
        return -1;
    for (int i = 0; i < NPAIRS; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pairs[i]) < 0)
            return -1;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    for (int i = 0; i < NPAIRS; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
    vial_loop_fini(&loop);
    return 0;
}

static void test_all_sent_and_received(void **s)
{
    (void)s;
    static vial_send v[NPAIRS];
    static char msg[NPAIRS][16];
    for (int i = 0; i < NPAIRS; i++) {
        int n = snprintf(msg[i], sizeof msg[i], "m%d", i);
        v[i] = (vial_send){pairs[i][0], msg[i], (size_t)n, 12345};
    }
    vial_send_many(&loop, v, NPAIRS);
    for (int i = 0; i < NPAIRS; i++) {
        assert_int_equal(v[i].res, (ssize_t)strlen(msg[i]));
        char got[16];
        assert_int_equal(read(pairs[i][1], got, sizeof got), v[i].res);
        assert_memory_equal(got, msg[i], (size_t)v[i].res);
    }
}

static void test_full_socket_says_eagain(void **s)
{
    (void)s;
    char fill[4096];
    memset(fill, 'f', sizeof fill);
    while (write(pairs[0][0], fill, sizeof fill) > 0)
        ;
    assert_int_equal(errno, EAGAIN);
    vial_send v[3] = {{pairs[1][0], "a", 1, 0}, {pairs[0][0], "b", 1, 0}, {pairs[2][0], "c", 1, 0}};
    vial_send_many(&loop, v, 3);
    assert_int_equal(v[0].res, 1);
    assert_int_equal(v[1].res, -EAGAIN);
    assert_int_equal(v[2].res, 1);
    /* nothing of "b" arrives later: the send was not left pending */
    char got[4096];
    while (read(pairs[0][1], got, sizeof got) > 0)
        ;
    usleep(10000);
    assert_int_equal(read(pairs[0][1], got, sizeof got), -1);
    assert_int_equal(errno, EAGAIN);
    char c;
    assert_int_equal(read(pairs[1][1], &c, 1), 1);
    assert_int_equal(read(pairs[2][1], &c, 1), 1);
}

static void test_bad_descriptor_fails_alone(void **s)
{
    (void)s;
    int dead = dup(pairs[3][0]);
    close(dead);
    vial_send v[3] = {{pairs[4][0], "x", 1, 0}, {dead, "y", 1, 0}, {pairs[5][0], "z", 1, 0}};
    vial_send_many(&loop, v, 3);
    assert_int_equal(v[0].res, 1);
    assert_int_equal(v[1].res, -EBADF);
    assert_int_equal(v[2].res, 1);
    char c;
    assert_int_equal(read(pairs[4][1], &c, 1), 1);
    assert_int_equal(read(pairs[5][1], &c, 1), 1);
}

static void test_peer_gone_is_an_error(void **s)
{
    (void)s;
    int p[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p), 0);
    close(p[1]);
    vial_send v[2] = {{p[0], "x", 1, 0}, {pairs[6][0], "y", 1, 0}};
    vial_send_many(&loop, v, 2); /* MSG_NOSIGNAL: no SIGPIPE ends the test */
    assert_int_equal(v[0].res, -EPIPE);
    assert_int_equal(v[1].res, 1);
    close(p[0]);
    char c;
    assert_int_equal(read(pairs[6][1], &c, 1), 1);
}

static void test_one_send(void **s)
{
    (void)s;
    vial_send v = {pairs[7][0], "one", 3, 0};
    vial_send_many(&loop, &v, 1);
    assert_int_equal(v.res, 3);
    char got[4];
    assert_int_equal(read(pairs[7][1], got, sizeof got), 3);
    vial_send_many(&loop, &v, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_sent_and_received),
        cmocka_unit_test(test_full_socket_says_eagain),
        cmocka_unit_test(test_bad_descriptor_fails_alone),
        cmocka_unit_test(test_peer_gone_is_an_error),
        cmocka_unit_test(test_one_send),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
