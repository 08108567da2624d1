/* Server threads, listeners and shutdown.
 *
 * Each loop thread owns a listener bound with SO_REUSEPORT to one port (for
 * --port 0, the one the kernel gave the first), so the kernel spreads
 * connections across threads and no accept lock exists. The main
 * thread only waits for SIGTERM/SIGINT (blocked everywhere else, taken with
 * sigwait) and then drives the shutdown: stop accepting, let in-flight
 * requests finish for the grace period, cancel what is left, exit. */
#include "http/server.h"
#include "runtime/coro.h"
#include "runtime/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CACHED_BUFS 64
/* Stacks kept per loop thread for reuse: beyond this, a coroutine costs an
 * mmap and an munmap. Sized for bursts of tasks (a gather of 20 on 64
 * connections is 1,300 coroutines); only the touched pages of a cached
 * stack count towards RSS. */
#define CORO_CACHE 1024

/* The listen address, resolved once: every loop thread binds the same one. */
typedef struct listen_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    char text[INET6_ADDRSTRLEN + 2]; /* "127.0.0.1" or "[::1]" */
} listen_addr;

static int addr_port(const listen_addr *a)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;
    return ntohs(sa->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                           : ((const struct sockaddr_in *)sa)->sin_port);
}

static void addr_text(listen_addr *a)
{
    char buf[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, sizeof buf);
        snprintf(a->text, sizeof a->text, "[%s]", buf);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, sizeof buf);
        snprintf(a->text, sizeof a->text, "%s", buf);
    }
}

static int bind_listen(const struct sockaddr *sa, socklen_t len, int reuseport_before_bind)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport_before_bind)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, sa, len) < 0)
        goto fail;
    /* The first listener binds without SO_REUSEPORT, so the bind fails when
     * any other socket holds the port, SO_REUSEPORT or not (another vial, a
     * python server, nginx). Only then does it open the port to its sibling
     * threads: the kernel checks SO_REUSEPORT again at each later bind, and
     * the group that spreads connections forms at listen(). No window is
     * left for a second vial: its own first bind, without the option, keeps
     * failing for as long as this socket lives. A foreign process that sets
     * SO_REUSEPORT and binds after us cannot be stopped by anyone. */
    if (!reuseport_before_bind && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (listen(fd, 4096) < 0)
        goto fail;
    return fd;
fail:;
    int e = -errno;
    close(fd);
    return e;
}

/* Binds the first listener: resolves cfg->host, takes the first address that
 * binds, and fills *a with it (the port the kernel chose for port 0 included).
 * A port in use ends the search: a later address of the same name would
 * serve on a different interface than the one asked for. */
static int open_first_listener(const vial_config *cfg, listen_addr *a)
{
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(cfg->host, port, &hints, &res);
    if (gai != 0) {
        vial_log(VIAL_LOG_ERROR, "cannot resolve %s: %s", cfg->host, gai_strerror(gai));
        return -EINVAL;
    }
    int fd = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof a->sa)
            continue;
        fd = bind_listen(ai->ai_addr, ai->ai_addrlen, 0);
        if (fd >= 0) {
            a->len = sizeof a->sa;
            if (getsockname(fd, (struct sockaddr *)&a->sa, &a->len) < 0) {
                int e = -errno;
                close(fd);
                fd = e;
            }
            break;
        }
        if (fd == -EADDRINUSE) {
            memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
            break;
        }
    }
    freeaddrinfo(res);
    if (fd == -EADDRINUSE) {
        addr_text(a);
        vial_log(VIAL_LOG_ERROR, "%s:%d is already in use", a->text, cfg->port);
    } else if (fd < 0) {
        char eb[128];
        vial_log(VIAL_LOG_ERROR, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                strerror_r(-fd, eb, sizeof eb));
    } else {
        addr_text(a);
    }
    return fd;
}

/* --processes: the supervisor's listener, shared by every worker process
 * (see vial_server_bind); -1 in a single process. */
static int inherited_fd = -1;

void vial_server_inherit(int fd)
{
    inherited_fd = fd;
}

int vial_server_bind(const vial_config *cfg, int *port)
{
    listen_addr a;
    memset(&a, 0, sizeof a);
    int fd = open_first_listener(cfg, &a);
    if (fd >= 0)
        *port = addr_port(&a);
    return fd;
}

/* A worker's own descriptor for the shared listener (each loop thread
 * registers and closes its own; the socket and its queue live on in the
 * supervisor and the other workers, so connections waiting in it when this
 * worker drains are taken by another). */
static int dup_inherited(listen_addr *a)
{
    int fd = fcntl(inherited_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (a) {
        a->len = sizeof a->sa;
        if (getsockname(fd, (struct sockaddr *)&a->sa, &a->len) < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        addr_text(a);
    }
    return fd;
}

/* How often accepting is retried while descriptors are exhausted, and how
 * often that condition may be logged. */
#define ACCEPT_RETRY_NS (100ull * 1000000ull)
#define EMFILE_LOG_NS (10ull * 1000000000ull)

static void accept_pending(vial_server_thread *t);

static void accept_retry_cb(vial_loop *l, vial_timer *tm)
{
    vial_server_thread *t = (vial_server_thread *)((char *)tm - offsetof(vial_server_thread, accept_retry));
    accept_pending(t);
}

/* accept4 failed for want of descriptors. The pending connections stay in
 * the backlog and, the listener being edge-triggered, no new event will say
 * so once descriptors free up (connections closing) unless another client
 * arrives — and a full backlog admits none. So retry on a timer; log once
 * per EMFILE_LOG_NS with the count of the failures not logged. */
static void out_of_descriptors(vial_server_thread *t, int err)
{
    vial_loop *l = &t->loop;
    t->emfile_unlogged++;
    if (!t->emfile_logged_ns || l->now - t->emfile_logged_ns >= EMFILE_LOG_NS) {
        vial_log(VIAL_LOG_ERROR, "accept: out of file descriptors (%s; %u connections open on this thread; "
                        "%u failed accepts since the last report); retrying every %llu ms",
                err == ENFILE ? "system-wide limit" : "process limit", t->nconns, t->emfile_unlogged,
                (unsigned long long)(ACCEPT_RETRY_NS / 1000000ull));
        t->emfile_logged_ns = l->now ? l->now : 1;
        t->emfile_unlogged = 0;
    }
    if (!vial_timer_armed(&t->accept_retry) && !t->draining) {
        t->accept_retry.cb = accept_retry_cb;
        vial_timer_start(l, &t->accept_retry, l->now + ACCEPT_RETRY_NS);
    }
}

static void accept_pending(vial_server_thread *t)
{
    /* Edge-triggered: take every pending connection now. */
    while (t->listen_io.fd >= 0) {
        int fd = accept4(t->listen_io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                out_of_descriptors(t, errno);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        vial_conn_accept(t, fd);
    }
}

static void listen_cb(vial_loop *l, vial_io *io, unsigned ev)
{
    accept_pending((vial_server_thread *)((char *)io - offsetof(vial_server_thread, listen_io)));
}

static void grace_expired(vial_loop *l, vial_timer *tm)
{
    vial_server_thread *t = (vial_server_thread *)((char *)tm - offsetof(vial_server_thread, grace_timer));
    vial_conn_close_all(t);
}

static void stop_msg(vial_loop *l, vial_msg *m)
{
    vial_server_thread *t = (vial_server_thread *)((char *)m - offsetof(vial_server_thread, stop_msg));
    if (t->draining)
        return;
    t->draining = 1;
    vial_timer_stop(l, &t->accept_retry);
    if (t->listen_io.fd >= 0) {
        vial_io_del(l, &t->listen_io);
        close(t->listen_io.fd);
        t->listen_io.fd = -1;
    }
    t->grace_timer.cb = grace_expired;
    vial_timer_start(l, &t->grace_timer, l->now + (uint64_t)t->server->cfg.grace_ms * 1000000u);
    vial_conn_drain_all(t);
}

static void *thread_main(void *arg)
{
    vial_server_thread *t = arg;
    vial_loop_run(&t->loop);
    return NULL;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int thread_init(vial_server *s, vial_server_thread *t, int id, const listen_addr *a, int *err)
{
    t->server = s;
    t->listen_io.fd = -1;
    int r = vial_loop_init(&t->loop, id);
    if (r < 0) {
        *err = r;
        return -1;
    }
    t->loop.data = t;
    t->loop.stall_ns = s->cfg.stall_ms > 0 ? (uint64_t)s->cfg.stall_ms * 1000000u : 0;
    t->loop.coro_pool = vial_coro_pool_new(s->cfg.stack_size, CORO_CACHE);
    t->free_bufs = calloc(MAX_CACHED_BUFS, sizeof *t->free_bufs);
    if (!t->loop.coro_pool || !t->free_bufs) {
        *err = -ENOMEM;
        return -1;
    }
    /* Thread 0 takes the first listener; the others join its port. */
    int fd = id == 0               ? s->first_fd
             : inherited_fd >= 0 ? dup_inherited(NULL)
                                 : bind_listen((const struct sockaddr *)&a->sa, a->len, 1);
    if (id == 0)
        s->first_fd = -1;
    if (fd < 0) {
        char eb[128];
        vial_log(VIAL_LOG_ERROR, "cannot listen on %s:%d: %s", a->text, addr_port(a),
                strerror_r(-fd, eb, sizeof eb));
        *err = fd;
        return -1;
    }
    t->listen_io.fd = fd;
    t->listen_io.cb = listen_cb;
    r = vial_io_add(&t->loop, &t->listen_io);
    if (r < 0) {
        *err = r;
        return -1;
    }
    t->stop_msg.cb = stop_msg;
    return 0;
}

static void thread_fini(vial_server_thread *t)
{
    if (t->listen_io.fd >= 0)
        close(t->listen_io.fd);
    vial_conn_cache_free(t);
    vial_coro_pool_free(t->loop.coro_pool);
    for (unsigned i = 0; i < t->nfree_bufs; i++)
        free(t->free_bufs[i]);
    free(t->free_bufs);
    vial_loop_fini(&t->loop);
}

int vial_server_run(const vial_config *cfg, vial_serve_fn serve, void *data)
{
    vial_server s;
    memset(&s, 0, sizeof s);
    s.cfg = *cfg;
    s.serve = serve;
    s.serve_data = data;
    s.first_fd = -1;
    s.keep_idle_on_drain = inherited_fd >= 0;
    s.nthreads = cfg->threads > 0 ? (unsigned)cfg->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    if (s.nthreads == 0)
        s.nthreads = 1;

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    sigset_t stopset, old;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGTERM);
    sigaddset(&stopset, SIGINT);
    /* SIGUSR1 asks for the log files to be reopened (logrotate); taken by
     * the same sigwait, so it never kills the process. */
    sigaddset(&stopset, SIGUSR1);
    sigaddset(&stopset, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stopset, &old);

    int err = 0;
    s.pool = vial_pool_new((unsigned)cfg->workers, (unsigned)cfg->queue_max);
    s.threads = calloc(s.nthreads, sizeof *s.threads);
    if (!s.pool || !s.threads) {
        err = -ENOMEM;
        goto out;
    }
    unsigned started = 0;
    listen_addr addr;
    memset(&addr, 0, sizeof addr);
    s.first_fd = inherited_fd >= 0 ? dup_inherited(&addr) : open_first_listener(cfg, &addr);
    if (s.first_fd < 0) {
        err = s.first_fd;
        goto stop;
    }
    s.cfg.port = addr_port(&addr);
    for (unsigned i = 0; i < s.nthreads; i++) {
        if (thread_init(&s, &s.threads[i], (int)i, &addr, &err) < 0)
            goto stop;
    }
    /* Every listener is bound: the port is known for good. Connections wait
     * in the backlog until the loops start, so on_ready runs before any
     * request is served. */
    if (cfg->on_ready)
        cfg->on_ready(s.cfg.port, cfg->ready_data);
    for (; started < s.nthreads; started++) {
        if (pthread_create(&s.threads[started].tid, NULL, thread_main, &s.threads[started]) != 0) {
            err = -EAGAIN;
            goto stop;
        }
    }
    if (inherited_fd >= 0)
        vial_log(VIAL_LOG_INFO, "worker %d serving http://%s:%d (%u loop threads, %u workers)",
                 (int)getpid(), addr.text, s.cfg.port, s.nthreads, vial_pool_threads(s.pool));
    else
        vial_log(VIAL_LOG_ANNOUNCE, "listening on http://%s:%d (%u loop threads, %u workers)",
                 addr.text, s.cfg.port, s.nthreads, vial_pool_threads(s.pool));

    int sig = 0;
    while (sigwait(&stopset, &sig) == 0 && (sig == SIGUSR1 || sig == SIGHUP)) {
        if (sig == SIGHUP) {
            /* A terminal hanging up or a reload sent to a single process
             * must not kill it: reloading is the supervisor's (--processes). */
            if (inherited_fd < 0)
                vial_log(VIAL_LOG_WARN, "SIGHUP ignored: reloading needs --processes N");
            continue;
        }
        vial_log(VIAL_LOG_INFO, "SIGUSR1 received, reopening log files");
        vial_log_reopen();
    }
    atomic_store(&s.draining, 1);
    vial_log(VIAL_LOG_INFO, "%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (cfg->drain_delay_ms > 0) {
        /* Still serving, the health check already failing: the load
         * balancer takes this instance out of rotation before its listener
         * closes. A second SIGTERM/SIGINT cuts the wait short. */
        vial_log(VIAL_LOG_INFO, "serving %d ms more while the health check reports draining",
                 cfg->drain_delay_ms);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += cfg->drain_delay_ms / 1000;
        until.tv_nsec += (long)(cfg->drain_delay_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        for (;;) {
            struct timespec now, left;
            clock_gettime(CLOCK_MONOTONIC, &now);
            left.tv_sec = until.tv_sec - now.tv_sec;
            left.tv_nsec = until.tv_nsec - now.tv_nsec;
            if (left.tv_nsec < 0) {
                left.tv_sec--;
                left.tv_nsec += 1000000000L;
            }
            if (left.tv_sec < 0)
                break;
            int got = sigtimedwait(&stopset, NULL, &left);
            if (got == SIGHUP)
                continue;
            if (got == SIGUSR1) {
                vial_log_reopen();
                continue;
            }
            if (got < 0 && errno == EINTR)
                continue;
            break; /* timed out, or asked again */
        }
    }

stop:
    for (unsigned i = 0; i < started; i++)
        vial_loop_post(&s.threads[i].loop, &s.threads[i].stop_msg);
    /* Sync work still queued would wait behind blocked workers past the
     * grace period: refuse it, so its requests answer (503) now. */
    if (s.pool && !s.keep_idle_on_drain) /* a retired worker serves what reaches it */
        vial_pool_drain(s.pool);
    /* Threads end when their last connection closes; the grace timer
     * cancels stragglers. A handler that ignores cancellation (a blocking
     * sync view) must not keep the process alive past the deadline. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    long long ms = cfg->grace_ms + 1000;
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    int forced = 0;
    for (unsigned i = 0; i < started; i++) {
        if (pthread_timedjoin_np(s.threads[i].tid, NULL, &deadline) != 0)
            forced = 1;
    }
    if (forced) {
        vial_log(VIAL_LOG_ERROR, "shutdown grace exceeded; exiting with requests still running");
        fflush(stderr);
        _exit(err ? 1 : 0);
    }
out:
    if (s.first_fd >= 0)
        close(s.first_fd);
    if (s.threads)
        for (unsigned i = 0; i < s.nthreads; i++)
            if (s.threads[i].loop.backend)
                thread_fini(&s.threads[i]);
    free(s.threads);
    vial_pool_free(s.pool);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!err)
        vial_log(VIAL_LOG_INFO, "stopped");
    return err;
}
