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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
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

#ifdef VIAL_HAVE_URING
/* --- io_uring: receiving into the ring's buffers (vial_io_recv) ----------- */

/* A connected loopback TCP pair: *srv is the accepted end. */
static void tcp_pair(int *cli, int *srv)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    *cli = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(*cli, (struct sockaddr *)&a, sizeof a), 0);
    *srv = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(*srv >= 0);
    close(l);
    assert_int_equal(fcntl(*cli, F_SETFL, O_NONBLOCK), 0);
}

static unsigned rx_events;
static void rx_cb(vial_loop *l, vial_io *io, unsigned ev) { rx_events |= ev; }

static void run_until(unsigned ev, int rounds)
{
    for (int i = 0; i < rounds && !(rx_events & ev); i++)
        vial_loop_run_once(&loop, 100);
}

/* Reads everything vial_io_recv has, running the loop on -EAGAIN until
 * want bytes came (or the stream ended); caps vary so that a read ends
 * inside a buffer as well as across several. */
static size_t rx_drain(vial_io *io, char *dst, size_t want)
{
    static const size_t caps[] = {1, 700, 4096, 65536, 3};
    size_t got = 0;
    for (int spins = 0, k = 0; got < want && spins < 200; k++) {
        size_t cap = caps[k % 5];
        if (cap > want - got)
            cap = want - got;
        long n = vial_io_recv(&loop, io, dst + got, cap);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        assert_int_equal(n, -EAGAIN);
        rx_events = 0;
        run_until(VIAL_IO_READ, 5);
        spins++;
    }
    return got;
}

/* A connection that does not read holds at most a few buffers: its receive
 * is stopped at the second, the rest waits in the socket (the client is
 * held back by TCP, not by the ring running out); what it gets is whole and
 * in order across the stop, the buffers and the receive armed again. */
static void test_ring_recv_bounded_in_order(void **s)
{
    int cli, srv;
    tcp_pair(&cli, &srv);
    vial_io io = {.fd = srv, .cb = rx_cb, .rstate = VIAL_IO_RECV_WANTED};
    assert_int_equal(vial_io_add(&loop, &io), 0);
    assert_true(io.rstate & VIAL_IO_RECV_ON);
    char chunk[100], sent[800];
    for (int i = 0; i < 8; i++) {
        memset(chunk, 'a' + i, sizeof chunk);
        memcpy(sent + i * 100, chunk, 100);
        assert_int_equal(write(cli, chunk, sizeof chunk), 100);
        rx_events = 0;
        run_until(VIAL_IO_READ, i < 2 ? 10 : 2); /* not read: it piles up */
        if (i < 2)
            assert_true(rx_events & VIAL_IO_READ);
    }
    int pending = 0;
    assert_int_equal(ioctl(srv, FIONREAD, &pending), 0);
    assert_true(pending >= 500); /* 800 sent, at most 3 chunks taken */
    char got[800];
    assert_int_equal(rx_drain(&io, got, sizeof got), sizeof got);
    assert_memory_equal(got, sent, sizeof got);
    assert_int_equal(vial_io_recv(&loop, &io, got, sizeof got), -EAGAIN);
    /* and it receives again, through the ring */
    assert_int_equal(write(cli, "next", 4), 4);
    rx_events = 0;
    run_until(VIAL_IO_READ, 10);
    assert_int_equal(vial_io_recv(&loop, &io, got, sizeof got), 4);
    assert_memory_equal(got, "next", 4);
    vial_io_close(&loop, &io);
    close(cli);
    vial_loop_run_once(&loop, 0);
}

/* A bulk upload: full buffers switch the reader to recv(2) once the ring's
 * receive has ended, then back — never both at once, or bytes would come
 * out of order. 2 MiB of a pattern, read with varying sizes. */
static void test_ring_recv_bulk_order(void **s)
{
    int cli, srv;
    tcp_pair(&cli, &srv);
    vial_io io = {.fd = srv, .cb = rx_cb, .rstate = VIAL_IO_RECV_WANTED};
    assert_int_equal(vial_io_add(&loop, &io), 0);
    enum { TOTAL = 2 << 20 };
    char *out = malloc(TOTAL), *in = malloc(TOTAL);
    for (size_t i = 0; i < TOTAL; i++)
        out[i] = (char)(i * 7 % 251);
    size_t sent = 0, got = 0;
    static const size_t caps[] = {65536, 1, 5000, 4096, 100000, 17};
    for (int k = 0; got < TOTAL && k < 200000; k++) {
        if (sent < TOTAL) {
            ssize_t w = write(cli, out + sent, TOTAL - sent < 50000 ? TOTAL - sent : 50000);
            if (w > 0)
                sent += (size_t)w;
        }
        size_t cap = caps[k % 6];
        if (cap > TOTAL - got)
            cap = TOTAL - got;
        long n = vial_io_recv(&loop, &io, in + got, cap);
        if (n > 0)
            got += (size_t)n;
        else if (n == -EAGAIN)
            vial_loop_run_once(&loop, 10);
        else
            fail_msg("vial_io_recv: %ld", n);
    }
    assert_int_equal(got, TOTAL);
    assert_memory_equal(in, out, TOTAL);
    free(out);
    free(in);
    vial_io_close(&loop, &io);
    close(cli);
    vial_loop_run_once(&loop, 0);
}

/* Data and then the peer's FIN: the data first, then 0, with HUP said. */
static void test_ring_recv_data_then_eof(void **s)
{
    int cli, srv;
    tcp_pair(&cli, &srv);
    vial_io io = {.fd = srv, .cb = rx_cb, .rstate = VIAL_IO_RECV_WANTED};
    assert_int_equal(vial_io_add(&loop, &io), 0);
    assert_int_equal(write(cli, "abc", 3), 3);
    rx_events = 0;
    run_until(VIAL_IO_READ, 10);
    assert_int_equal(shutdown(cli, SHUT_WR), 0);
    run_until(VIAL_IO_HUP, 10);
    assert_true(rx_events & VIAL_IO_HUP);
    char got[16];
    assert_int_equal(rx_drain(&io, got, sizeof got), 3);
    assert_memory_equal(got, "abc", 3);
    assert_int_equal(vial_io_recv(&loop, &io, got, sizeof got), 0);
    vial_io_close(&loop, &io);
    close(cli);
    vial_loop_run_once(&loop, 0);
}
#endif

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
#ifdef VIAL_HAVE_URING
        ON(test_ring_recv_bounded_in_order, "io_uring"), ON(test_ring_recv_bulk_order, "io_uring"),
        ON(test_ring_recv_data_then_eof, "io_uring"),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
