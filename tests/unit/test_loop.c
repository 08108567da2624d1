/* The loop: fd readiness through the backend, cross-thread mailbox, deferred
 * callbacks, timers. Every case runs on each backend built in (epoll, and
 * io_uring with liburing), named by the test's prestate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static vial_loop loop;

/* *s is the backend's name; the loop must really run on it (a fallback to
 * epoll would test epoll twice). */
static int setup(void **s)
{
    const char *name = *s;
    assert_int_equal(vial_loop_set_backend(name), 0);
    int r = vial_loop_init(&loop, 0);
    vial_loop_set_backend("epoll");
    if (r < 0)
        return r;
    assert_string_equal(loop.backend->name, name);
    return 0;
}
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

/* Edge-triggered: data that stays unread is not reported again; new data
 * is. */
static int reads_seen;
static void count_reads(vial_loop *l, vial_io *io, unsigned ev) { reads_seen += !!(ev & VIAL_IO_READ); }

static void test_edges_not_levels(void **s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    vial_io io = {.fd = sv[0], .cb = count_reads};
    assert_int_equal(vial_io_add(&loop, &io), 0);
    vial_loop_run_once(&loop, 100);
    reads_seen = 0;
    assert_int_equal(write(sv[1], "a", 1), 1);
    vial_loop_run_once(&loop, 1000);
    assert_int_equal(reads_seen, 1);
    for (int i = 0; i < 3; i++)
        vial_loop_run_once(&loop, 20); /* unread, but no new edge */
    assert_int_equal(reads_seen, 1);
    assert_int_equal(write(sv[1], "b", 1), 1);
    vial_loop_run_once(&loop, 1000);
    assert_int_equal(reads_seen, 2);
    vial_io_del(&loop, &io);
    close(sv[0]);
    close(sv[1]);
}

/* A callback closes another io whose event is in the same batch, and a new
 * io takes its place (on io_uring its slot, here its fd number too). The
 * victim is freed after the batch, as the loop's contract asks; epoll may
 * still report it in this batch, io_uring never does (its completions
 * carry a generation), and the newcomer hears only of its own fd. */
static vial_io *victim, *newcomer;
static int victim_calls;
static unsigned newcomer_events;
static int victim_pair[2], newcomer_pipe[2];
static void victim_cb(vial_loop *l, vial_io *io, unsigned ev) { victim_calls++; }
static void newcomer_cb(vial_loop *l, vial_io *io, unsigned ev) { newcomer_events |= ev; }
static void free_victim(vial_loop *l, vial_msg *m)
{
    memset(victim, 0xa5, sizeof *victim);
    free(victim);
    victim = NULL;
}
static void killer_cb(vial_loop *l, vial_io *io, unsigned ev)
{
    static vial_msg m = {.cb = free_victim};
    if (!victim || newcomer)
        return;
    vial_io_close(l, victim);
    vial_loop_defer(l, &m);
    /* A pipe's read end (the lowest free number: the victim's) is never
     * writable: a WRITE reaching it is the victim's event. */
    newcomer = calloc(1, sizeof *newcomer);
    assert_int_equal(pipe2(newcomer_pipe, O_NONBLOCK), 0);
    newcomer->fd = newcomer_pipe[0];
    newcomer->cb = newcomer_cb;
    assert_int_equal(vial_io_add(l, newcomer), 0);
}

static void test_delete_with_event_pending(void **s)
{
    int a[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, victim_pair), 0);
    /* Both writable at once: one batch, the killer's event first. */
    vial_io killer = {.fd = a[0], .cb = killer_cb};
    victim = calloc(1, sizeof *victim);
    victim->fd = victim_pair[0];
    victim->cb = victim_cb;
    newcomer = NULL;
    assert_int_equal(vial_io_add(&loop, &killer), 0);
    assert_int_equal(vial_io_add(&loop, victim), 0);
    victim_calls = 0;
    newcomer_events = 0;
    vial_loop_run_once(&loop, 100);
    assert_null(victim);
    assert_non_null(newcomer);
    if (!strcmp(*s, "io_uring"))
        assert_int_equal(victim_calls, 0);
    else
        assert_true(victim_calls <= 1);
    for (int i = 0; i < 3; i++)
        vial_loop_run_once(&loop, 50);
    assert_false(newcomer_events & VIAL_IO_WRITE);
    assert_int_equal(write(newcomer_pipe[1], "x", 1), 1); /* and it hears its own */
    for (int i = 0; i < 5 && !(newcomer_events & VIAL_IO_READ); i++)
        vial_loop_run_once(&loop, 100);
    assert_true(newcomer_events & VIAL_IO_READ);
    assert_false(newcomer_events & VIAL_IO_WRITE);
    vial_io_close(&loop, newcomer);
    close(newcomer_pipe[1]);
    free(newcomer);
    newcomer = NULL;
    vial_io_del(&loop, &killer);
    close(a[0]);
    close(a[1]);
    close(victim_pair[1]);
    vial_loop_run_once(&loop, 0);
}

/* vial_io_close ends the connection at once: the peer sees its end of
 * stream (io_uring's poll would otherwise keep the socket open). */
static void test_close_reaches_peer(void **s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    vial_io io = {.fd = sv[0], .cb = io_cb};
    assert_int_equal(vial_io_add(&loop, &io), 0);
    vial_loop_run_once(&loop, 100);
    vial_io_close(&loop, &io);
    vial_loop_run_once(&loop, 0);
    struct pollfd p = {.fd = sv[1], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 1000), 1);
    char c;
    assert_int_equal(read(sv[1], &c, 1), 0);
    close(sv[1]);
}

static int fired;
static void timer_cb(vial_loop *l, vial_timer *t) { fired++; }

/* A timer ends the wait on time with no fd ready. */
static void test_timer_ends_wait(void **s)
{
    vial_timer t = {.cb = timer_cb};
    fired = 0;
    uint64_t t0 = vial_clock_ns();
    vial_timer_start(&loop, &t, t0 + 30 * 1000000ull);
    while (!fired && vial_clock_ns() - t0 < 2000000000ull)
        vial_loop_run_once(&loop, -1);
    uint64_t took = vial_clock_ns() - t0;
    assert_int_equal(fired, 1);
    assert_true(took >= 30 * 1000000ull);
    assert_true(took < 500 * 1000000ull);
}

static int accepted[8], naccepted, accept_err;
static void on_accept(vial_loop *l, vial_acceptor *a, int fd)
{
    if (fd < 0)
        accept_err = fd;
    else if (naccepted < 8)
        accepted[naccepted++] = fd;
    else
        close(fd);
}
/* The readiness path: accept4 until EAGAIN, as the server does. */
static void listen_ready(vial_loop *l, vial_io *io, unsigned ev)
{
    int fd;
    while ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        on_accept(l, (vial_acceptor *)io, fd);
    if (errno != EAGAIN)
        accept_err = -errno;
}

static int connect_to(int client, const struct sockaddr_in *sa)
{
    int r = connect(client, (const struct sockaddr *)sa, sizeof *sa);
    return r == 0 || errno == EINPROGRESS ? 0 : -errno;
}

/* A listener: io_uring accepts by itself (each connection a completion with
 * its descriptor), epoll reports readiness. An accept that fails for want
 * of descriptors ends the backend's accepting, with the error, and
 * vial_accept_resume starts it again: what waited in the backlog meanwhile
 * comes then. */
static void test_acceptor(void **s)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    int clients[4];
    for (int i = 0; i < 4; i++)
        clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* Room for two more descriptors only (io_uring reads the limit when
     * the accept is armed, as a server sets it before its loops start). */
    struct rlimit old, tight;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int probe = dup(0);
    close(probe);
    tight = old;
    tight.rlim_cur = (rlim_t)probe + 2;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
    vial_acceptor a = {.io = {.fd = lfd, .cb = listen_ready}, .on_accept = on_accept};
    int by_backend = vial_accept_add(&loop, &a);
    naccepted = accept_err = 0;
    for (int i = 0; i < 2; i++)
        connect_to(clients[i], &sa);
    for (int i = 0; i < 20 && naccepted < 2; i++)
        vial_loop_run_once(&loop, 100);
    /* The third waits in the backlog: no descriptor for it. */
    connect_to(clients[2], &sa);
    for (int i = 0; i < 20 && !accept_err; i++)
        vial_loop_run_once(&loop, 100);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(by_backend, !strcmp(*s, "io_uring"));
    assert_int_equal(naccepted, 2);
    assert_true(fcntl(accepted[0], F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(accepted[0], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(accept_err, -EMFILE);
    connect_to(clients[3], &sa); /* epoll: a new edge */
    if (by_backend) {
        /* Ended: nothing is taken until resumed. */
        for (int i = 0; i < 3; i++)
            vial_loop_run_once(&loop, 50);
        assert_int_equal(naccepted, 2);
        assert_int_equal(vial_accept_resume(&loop, &a), 0);
    }
    for (int i = 0; i < 20 && naccepted < 4; i++)
        vial_loop_run_once(&loop, 100);
    assert_int_equal(naccepted, 4);
    vial_io_close(&loop, &a.io);
    vial_loop_run_once(&loop, 0);
    for (int i = 0; i < 4; i++) {
        close(clients[i]);
        close(accepted[i]);
    }
}

#define ON(f, backend) {#f " (" backend ")", f, setup, teardown, (void *)backend}
#ifdef VIAL_HAVE_URING
#define BOTH(f) ON(f, "epoll"), ON(f, "io_uring")
#else
#define BOTH(f) ON(f, "epoll")
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_readiness_edges),       BOTH(test_mailbox_from_threads), BOTH(test_defer_runs_after_batch),
        BOTH(test_edges_not_levels),      BOTH(test_delete_with_event_pending),
        BOTH(test_close_reaches_peer),    BOTH(test_timer_ends_wait),      BOTH(test_acceptor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
