/* Server threads, listeners and shutdown.
 *
 * Each loop thread owns a descriptor for every listener (listen.h): its own
 * SO_REUSEPORT socket on a TCP listener's port (for --port 0, the one the
 * kernel gave the first), so the kernel spreads connections across threads
 * and no accept lock exists; a dup of a Unix or inherited socket, whose
 * backlog the threads share (in a --processes worker, a dup of every
 * listener the supervisor opened, whatever its kind). The main thread only waits for signals
 * (blocked everywhere else, taken with sigwait), talks to systemd
 * (sdnotify.h), and drives the shutdown: stop accepting, let in-flight
 * requests finish for the grace period, cancel what is left, exit. */
#include "http/server.h"
#include "http/listen.h"
#include "http/tls.h"
#include "runtime/coro.h"
#include "runtime/log.h"
#include "runtime/numfmt.h"
#include "runtime/sdnotify.h"

#include <errno.h>
#include <malloc.h>
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

/* Stacks kept per loop thread for reuse: beyond this, a coroutine costs an
 * mmap and an munmap. Sized for bursts of tasks (a gather of 20 on 64
 * connections is 1,300 coroutines); only the touched pages of a cached
 * stack count towards RSS. */
#define CORO_CACHE 1024
/* Free bytes at the top of a malloc heap before glibc gives them back. */
#define HEAP_TRIM_THRESHOLD (16 << 20)

/* How often accepting is retried while descriptors are exhausted, and how
 * often that condition may be logged. */
#define ACCEPT_RETRY_NS (100ull * 1000000ull)
#define EMFILE_LOG_NS (10ull * 1000000000ull)

static void accept_pending(vial_listener *ls);

static void accept_retry_cb(vial_loop *l, vial_timer *tm)
{
    vial_server_thread *t = (vial_server_thread *)((char *)tm - offsetof(vial_server_thread, accept_retry));
    for (unsigned i = 0; i < t->nlisteners; i++)
        if (!t->listeners[i].by_backend || t->listeners[i].stopped)
            accept_pending(&t->listeners[i]);
}

/* accept4 failed for want of descriptors. The pending connections stay in
 * the backlog and, the listener being edge-triggered, no new event will say
 * so once descriptors free up (connections closing) unless another client
 * arrives — and a full backlog admits none. So retry on a timer; log once
 * per EMFILE_LOG_NS with the count of the failures not logged. */
static void retry_later(vial_server_thread *t)
{
    vial_loop *l = &t->loop;
    if (!vial_timer_armed(&t->accept_retry) && !t->draining) {
        t->accept_retry.cb = accept_retry_cb;
        vial_timer_start(l, &t->accept_retry, l->now + ACCEPT_RETRY_NS);
    }
}

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
    retry_later(t);
}

static void take_conn(vial_listener *ls, int fd)
{
    vial_server_thread *t = ls->thr;
    int one = 1;
    const vial_listen *l = &t->server->listens[ls - t->listeners];
    if (!l->is_unix)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    vial_conn_accept(t, fd, l->tls ? t->server->tls : NULL);
}

/* Takes every pending connection with accept4: the readiness path (the
 * listener is edge-triggered), and on a backend that accepts by itself
 * the way back after its accept stopped on an error — once the backlog is
 * drained without one, the backend accepts again. */
static void accept_pending(vial_listener *ls)
{
    vial_server_thread *t = ls->thr;
    while (ls->acc.io.fd >= 0) {
        int fd = accept4(ls->acc.io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                out_of_descriptors(t, errno);
            else if (errno == EAGAIN && ls->stopped && vial_accept_resume(&t->loop, &ls->acc) == 0)
                ls->stopped = 0;
            else if (ls->stopped)
                retry_later(t); /* nothing else would wake it */
            return;
        }
        take_conn(ls, fd);
    }
}

static void listen_cb(vial_loop *l, vial_io *io, unsigned ev)
{
    accept_pending((vial_listener *)io);
}

static void accepted_cb(vial_loop *l, vial_acceptor *a, int fd)
{
    vial_listener *ls = (vial_listener *)a;
    if (fd >= 0) {
        take_conn(ls, fd);
        return;
    }
    /* The backend's accept ended on this error: accept4 sees it again (and
     * reports or retries it as on epoll) or, if it has cleared, drains what
     * came meanwhile and hands accepting back. */
    ls->stopped = 1;
    accept_pending(ls);
}

static void ping_msg(vial_loop *l, vial_msg *m)
{
    vial_server_thread *t = (vial_server_thread *)((char *)m - offsetof(vial_server_thread, ping_msg));
    atomic_fetch_add(&t->pongs, 1);
}

static void grace_expired(vial_loop *l, vial_timer *tm)
{
    vial_server_thread *t = (vial_server_thread *)((char *)tm - offsetof(vial_server_thread, grace_timer));
    vial_conn_close_all(t);
}

static vial_server_service *services;
static atomic_int running;

int vial_server_running(void)
{
    return atomic_load(&running) > 0;
}

void vial_server_add_service(vial_server_service *svc)
{
    svc->next = services;
    services = svc;
}

/* Posted to loop 0 before its thread starts: the first thing it runs. */
static void services_start(vial_loop *l, vial_msg *m)
{
    (void)m;
    for (vial_server_service *s = services; s; s = s->next)
        if (s->start)
            s->start(l, s->arg);
}

static void stop_msg(vial_loop *l, vial_msg *m)
{
    vial_server_thread *t = (vial_server_thread *)((char *)m - offsetof(vial_server_thread, stop_msg));
    if (t->draining)
        return;
    t->draining = 1;
    if (l->id == 0)
        for (vial_server_service *s = services; s; s = s->next)
            if (s->drain)
                s->drain(l, s->arg);
    vial_timer_stop(l, &t->accept_retry);
    for (unsigned i = 0; i < t->nlisteners; i++) {
        vial_listener *ls = &t->listeners[i];
        if (ls->acc.io.fd >= 0) {
            vial_io_del(l, &ls->acc.io);
            close(ls->acc.io.fd);
            ls->acc.io.fd = -1;
        }
    }
    t->grace_timer.cb = grace_expired;
    vial_timer_start(l, &t->grace_timer, l->now + (uint64_t)t->server->cfg.grace_ms * 1000000u);
    vial_conn_drain_all(t);
}

static void *thread_main(void *arg)
{
    vial_server_thread *t = arg;
    /* "vial-loop-N" in top -H, perf and /proc/PID/task/TID/comm, where
     * bench/ws-scale.sh finds the loop threads to place them. */
    char name[16] = "vial-loop-";
    char id[VIAL_FMT_INT_SIZE];
    size_t idl = vial_fmt_u64(id, (uint64_t)t->loop.id);
    if (idl < sizeof name - 11) {
        memcpy(name + 10, id, idl);
        name[10 + idl] = 0;
        pthread_setname_np(pthread_self(), name);
    }
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

static int thread_init(vial_server *s, vial_server_thread *t, int id, int *err)
{
    t->server = s;
    int r = vial_loop_init(&t->loop, id);
    if (r < 0) {
        char eb[128];
        vial_log(VIAL_LOG_ERROR, "cannot set up event loop %d: %s", id, strerror_r(-r, eb, sizeof eb));
        *err = r;
        return -1;
    }
    t->loop.data = t;
    t->loop.stall_ns = s->cfg.stall_ms > 0 ? (uint64_t)s->cfg.stall_ms * 1000000u : 0;
    t->loop.coro_pool = vial_coro_pool_new(s->cfg.stack_size, CORO_CACHE);
    t->free_bufs = calloc(VIAL_BUF_CACHE_MAX, sizeof *t->free_bufs);
    t->listeners = calloc(s->nlistens, sizeof *t->listeners);
    if (!t->loop.coro_pool || !t->free_bufs || !t->listeners) {
        *err = -ENOMEM;
        return -1;
    }
    /* Thread 0 takes the listeners as opened; the others join them. */
    for (unsigned i = 0; i < s->nlistens; i++) {
        vial_listen *l = &s->listens[i];
        int fd = id == 0 ? l->fd : vial_listen_another(l);
        l->taken |= id == 0;
        if (fd < 0) {
            char eb[128];
            vial_log(VIAL_LOG_ERROR, "cannot listen on %s: %s", l->text, strerror_r(-fd, eb, sizeof eb));
            *err = fd;
            return -1;
        }
        vial_listener *ls = &t->listeners[i];
        ls->thr = t;
        ls->acc.io.fd = fd;
        ls->acc.io.cb = listen_cb;
        ls->acc.on_accept = accepted_cb;
        t->nlisteners = i + 1;
        /* A backlog other threads or processes share goes by readiness:
         * a backend's accept waits exclusively, and the kernel would give
         * its first waiter every connection, busy or not, where readiness
         * wakes them all and the first free one takes it. */
        r = l->shared ? vial_io_add(&t->loop, &ls->acc.io) : vial_accept_add(&t->loop, &ls->acc);
        if (r < 0) {
            *err = r;
            return -1;
        }
        ls->by_backend = r == 1;
    }
    t->stop_msg.cb = stop_msg;
    t->ping_msg.cb = ping_msg;
    return 0;
}

static void thread_fini(vial_server_thread *t)
{
    for (unsigned i = 0; i < t->nlisteners; i++)
        if (t->listeners[i].acc.io.fd >= 0)
            close(t->listeners[i].acc.io.fd);
    free(t->listeners);
    vial_conn_cache_free(t);
    vial_coro_pool_free(t->loop.coro_pool);
    for (unsigned i = 0; i < t->nfree_bufs; i++)
        free(t->free_bufs[i]);
    free(t->free_bufs);
    vial_loop_fini(&t->loop);
}

/* --processes: the supervisor's listeners, in one of its workers (see
 * vial_server_inherit); none in a single process. */
static const vial_listen *inherited;
static unsigned ninherited;

void vial_server_inherit(const vial_listen *ls, unsigned n)
{
    inherited = ls;
    ninherited = n;
}

/* A worker's own descriptors for the supervisor's listeners. Each socket
 * and its queue live on in the supervisor and the other workers, so what
 * waits in it when this worker drains is taken by another; an SO_REUSEPORT
 * group per worker would drop a closed member's queue instead. */
static int adopt_inherited(vial_listen *ls, unsigned *n)
{
    for (*n = 0; *n < ninherited; (*n)++) {
        int r = vial_listen_adopt(&ls[*n], &inherited[*n]);
        if (r < 0)
            return r;
    }
    return 0;
}

/* What the main thread does with a signal while serving; 1: start the
 * shutdown. SIGHUP is where a reload hooks in (the --processes supervisor
 * replaces its workers); a single process reloads its TLS certificate, and
 * none of these signals may kill a server that an operator's habit sent
 * them to. */
static int on_signal(vial_server *s, int sig)
{
    switch (sig) {
    case SIGUSR1:
        vial_log(VIAL_LOG_INFO, "SIGUSR1 received, reopening log files");
        vial_log_reopen();
        return 0;
    case SIGHUP:
        /* A worker gets one when the whole process group does: reloading
         * (new workers, which read the certificate again) is its
         * supervisor's. */
        if (inherited)
            return 0;
        if (s->tls)
            vial_tls_reload(s->tls);
        else
            vial_log(VIAL_LOG_WARN, "SIGHUP: reload needs --processes; ignored");
        return 0;
    case SIGUSR2:
        vial_log(VIAL_LOG_WARN, "SIGUSR2: ignored");
        return 0;
    }
    return 1;
}

/* systemd's watchdog (WATCHDOG_USEC): pinged at half the interval, and only
 * while every loop thread answers a message between two pings, so a loop
 * stuck in a handler gets the service restarted rather than kept alive by
 * a healthy main thread. */
typedef struct watchdog {
    uint64_t interval_ns, next_ns;
    unsigned rounds;
} watchdog;

static void watchdog_tick(vial_server *s, watchdog *w)
{
    for (unsigned i = 0; i < s->nthreads; i++) {
        if (atomic_load(&s->threads[i].pongs) != w->rounds) {
            vial_log(VIAL_LOG_ERROR, "loop thread %u has not answered for %llu ms: watchdog ping withheld", i,
                     (unsigned long long)(w->interval_ns / 1000000u));
            return;
        }
    }
    vial_sd_notify("WATCHDOG=1");
    w->rounds++;
    for (unsigned i = 0; i < s->nthreads; i++)
        vial_loop_post(&s->threads[i].loop, &s->threads[i].ping_msg);
}

/* Waits for a signal of set until `until` (monotonic ns; 0: no limit),
 * pinging the watchdog on the way. The signal, or 0 at `until`. */
static int wait_signal(vial_server *s, const sigset_t *set, uint64_t until, watchdog *w)
{
    for (;;) {
        uint64_t now = vial_clock_ns();
        if (w->interval_ns && now >= w->next_ns) {
            watchdog_tick(s, w);
            w->next_ns = now + w->interval_ns;
        }
        if (until && now >= until)
            return 0;
        uint64_t wake = until;
        if (w->interval_ns && (!wake || w->next_ns < wake))
            wake = w->next_ns;
        int sig = 0;
        if (!wake) {
            if (sigwait(set, &sig) == 0)
                return sig;
            continue;
        }
        uint64_t d = wake - now;
        struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
        sig = sigtimedwait(set, NULL, &ts);
        if (sig > 0)
            return sig;
    }
}

int vial_server_run(const vial_config *cfg, vial_serve_fn serve, vial_reject_fn reject, void *data)
{
    vial_server s;
    memset(&s, 0, sizeof s);
    s.cfg = *cfg;
    s.serve = serve;
    s.reject = reject;
    s.serve_data = data;
    s.keep_idle_on_drain = inherited != NULL;
    s.nthreads = cfg->threads > 0 ? (unsigned)cfg->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    if (s.nthreads == 0)
        s.nthreads = 1;

    atomic_fetch_add(&running, 1);
    raise_fd_limit();
    /* glibc gives the top of a thread's heap back (madvise) whenever more
     * than 128 KiB is free there, so a loop thread whose requests in flight
     * hold a few MB (256 requests x 20 PostgreSQL results) faulted that
     * memory in again at every swing: ~10-15% of /queries?queries=20's CPU
     * (bench/results/perf-2026-12-06.md). vial trims the heap itself (conn.c:
     * when a thread's last connection closes, after 16 MiB of buffers
     * freed). Unless the user tuned malloc. */
    if (!getenv("GLIBC_TUNABLES") && !getenv("MALLOC_TRIM_THRESHOLD_"))
        mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD);
    signal(SIGPIPE, SIG_IGN);
    /* Taken by the main thread's sigwait (on_signal), blocked in every
     * other thread: none of them can kill the process. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);

    int err = 0;
    unsigned started = 0;
    watchdog wd = {0};
    s.pool = vial_pool_new((unsigned)cfg->workers, (unsigned)cfg->queue_max);
    s.threads = calloc(s.nthreads, sizeof *s.threads);
    vial_listen listens[VIAL_LISTEN_MAX];
    s.listens = listens;
    if (!s.pool || !s.threads) {
        err = -ENOMEM;
        goto out;
    }
    /* Before any port is taken: a certificate problem stops the start. */
    if (vial_tls_wanted(cfg) && (err = vial_tls_new(cfg, &s.tls)) < 0)
        goto stop;
    err = inherited ? adopt_inherited(s.listens, &s.nlistens) : vial_listen_open(cfg, s.listens, &s.nlistens);
    if (err < 0)
        goto stop;
    s.cfg.port = 0;
    for (unsigned i = 0; i < s.nlistens && !s.cfg.port; i++)
        s.cfg.port = vial_listen_port(&s.listens[i]);
    if (cfg->backend && (err = vial_loop_set_backend(cfg->backend)) < 0) {
        if (err != -ENOTSUP) {
            vial_log(VIAL_LOG_ERROR, "backend %s: unknown (io_uring or epoll)", cfg->backend);
            goto stop;
        }
        /* As when the kernel refuses it: serve, on epoll, and say so. */
        vial_log(VIAL_LOG_WARN, "%s unavailable (built without liburing): using epoll", cfg->backend);
        vial_loop_set_backend("epoll");
        err = 0;
    }
    for (unsigned i = 0; i < s.nthreads; i++) {
        if (thread_init(&s, &s.threads[i], (int)i, &err) < 0)
            goto stop;
    }
    /* Every listener is bound: the port is known for good. Connections wait
     * in the backlog until the loops start, so on_ready runs before any
     * request is served. */
    if (cfg->on_ready)
        cfg->on_ready(s.cfg.port, cfg->ready_data);
    vial_msg start_services = {.cb = services_start};
    if (services)
        vial_loop_post(&s.threads[0].loop, &start_services);
    for (; started < s.nthreads; started++) {
        if (pthread_create(&s.threads[started].tid, NULL, thread_main, &s.threads[started]) != 0) {
            err = -EAGAIN;
            goto stop;
        }
    }
    /* "listening on http://127.0.0.1:8080 and unix:/run/app.sock (...)":
     * the first TCP address first, where scripts look for the port. */
    char where[VIAL_LISTEN_MAX * 170];
    vial_listen_describe_all(s.listens, s.nlistens, where, sizeof where);
    const char *backend = s.threads[0].loop.backend->name;
    if (inherited)
        vial_log(VIAL_LOG_INFO, "worker %d serving %s (%u loop threads, %u workers) on %s", (int)getpid(),
                 where, s.nthreads, vial_pool_threads(s.pool), backend);
    else
        vial_log(VIAL_LOG_ANNOUNCE, "listening on %s (%u loop threads, %u workers) on %s", where, s.nthreads,
                 vial_pool_threads(s.pool), backend);
    {
        char msg[sizeof where + 64];
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=listening on %s", where);
        vial_sd_notify(msg);
    }
    wd.interval_ns = vial_sd_watchdog_usec() * 1000u / 2;
    wd.next_ns = vial_clock_ns();

    int sig;
    do
        sig = wait_signal(&s, &sigs, 0, &wd);
    while (!on_signal(&s, sig));
    atomic_store(&s.draining, 1);
    vial_sd_notify(sig == SIGINT ? "STOPPING=1\nSTATUS=draining (SIGINT)"
                                 : "STOPPING=1\nSTATUS=draining (SIGTERM)");
    vial_log(VIAL_LOG_INFO, "%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (cfg->drain_delay_ms > 0) {
        /* Still serving, the health check already failing: the load
         * balancer takes this instance out of rotation before its listener
         * closes. A second SIGTERM/SIGINT cuts the wait short. */
        vial_log(VIAL_LOG_INFO, "serving %d ms more while the health check reports draining",
                 cfg->drain_delay_ms);
        uint64_t until = vial_clock_ns() + (uint64_t)cfg->drain_delay_ms * 1000000u;
        int got;
        while ((got = wait_signal(&s, &sigs, until, &wd)) != 0 && !on_signal(&s, got))
            ;
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
        vial_listen_close(s.listens, s.nlistens);
        _exit(err ? 1 : 0);
    }
out:
    vial_listen_close(s.listens, s.nlistens);
    if (s.threads)
        for (unsigned i = 0; i < s.nthreads; i++)
            if (s.threads[i].loop.backend)
                thread_fini(&s.threads[i]);
    free(s.threads);
    vial_pool_free(s.pool);
    vial_tls_free(s.tls);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_fetch_sub(&running, 1);
    if (!err)
        vial_log(VIAL_LOG_INFO, "stopped");
    return err;
}
