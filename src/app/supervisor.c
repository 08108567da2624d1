/* --processes N: a supervisor process and N worker processes.
 *
 * The supervisor opens every listener once (http/listen.c: TCP, Unix
 * sockets, or the ones systemd passed) and forks workers that inherit them
 * all: one socket and one accept queue per listener, shared by every worker
 * (each loop thread of each worker polls a dup of each). A worker that stops
 * accepting (reload, shutdown) leaves the connections still queued to the
 * others, which is what makes a reload lose nothing; SO_REUSEPORT groups
 * would drop a closed socket's queue. The supervisor is off the hot path:
 * it only waits for signals and for its children, removes the Unix socket
 * files at its exit, and is the one process that talks to systemd
 * (READY/RELOADING/STOPPING, and the watchdog pings: it answers for its
 * workers being alive, not for their loops being responsive).
 *
 * Crash reports: each worker has a slot in a MAP_SHARED page into which its
 * crash handler (runtime/crash.c) copies the route the crashing thread was
 * serving; the supervisor reads it after waitpid. Everything here runs on
 * the supervisor's single thread (signals are blocked and taken with
 * sigtimedwait), so the usual libc calls are safe. */
#include "app/app.h"
#include "http/listen.h"
#include "http/server.h"
#include "runtime/crash.h"
#include "runtime/log.h"
#include "runtime/sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUTE_CAP 384
/* Room for a full set of workers plus the set a reload starts. */
#define MAX_SLOTS 2048
/* How long new workers have to report ready on a reload. */
#define READY_LIMIT_MS 30000
/* Restart back-off for a worker that keeps crashing: from 100 ms doubling
 * to 10 s; a worker that lived this long resets it. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define STABLE_MS 5000

typedef struct shared_slot {
    char route[ROUTE_CAP]; /* written by the worker's crash handler */
} shared_slot;

enum { FREE, LIVE, RETIRING, WAITING };

typedef struct worker {
    int state;
    pid_t pid;
    int ready_fd;        /* read end of the worker's ready pipe, -1 once read */
    uint64_t started_ms; /* when forked (for the back-off) */
    uint64_t respawn_ms; /* WAITING: when to fork it again */
    unsigned fails;      /* crashes in a row, each soon after its start */
} worker;

typedef struct supervisor {
    vial_app *app;
    vial_config cfg;
    int (*serve)(vial_app *, const vial_config *);
    vial_listen listens[VIAL_LISTEN_MAX];
    unsigned nlistens;
    char where[VIAL_LISTEN_MAX * 170]; /* the listeners, for the log and systemd */
    uint64_t watchdog_ms, next_ping_ms; /* WATCHDOG_USEC / 2; 0: none */
    pid_t self;
    shared_slot *slots;
    worker w[MAX_SLOTS];
    int stopping;
} supervisor;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void worker_ready(int port, void *data);

/* The child: serves as a single process would, on the inherited listener,
 * and exits; it never returns into the supervisor's code. */
static void worker_main(supervisor *sv, int idx)
{
    /* Orphan protection: the kernel signals us when the supervisor dies;
     * the getppid check covers a death before prctl took effect. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != sv->self)
        _exit(1);
    sigset_t all;
    sigemptyset(&all);
    sigaddset(&all, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &all, NULL);
    signal(SIGCHLD, SIG_DFL);
    memset(sv->slots[idx].route, 0, ROUTE_CAP);
    vial_crash_set_slot(sv->slots[idx].route, ROUTE_CAP);
    /* systemd hears from the supervisor only (NotifyAccess=main would drop
     * a worker's messages anyway). One thread here since the fork. */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    vial_server_inherit(sv->listens, sv->nlistens);
    vial_config c = sv->cfg;
    c.processes = 1;
    /* Ready: every loop thread holds the listener. The supervisor waits
     * for this byte before it retires the workers this one replaces (the
     * app's own on_ready ran once, in the supervisor). */
    c.on_ready = worker_ready;
    int r = sv->serve(sv->app, &c);
    exit(r < 0 ? 1 : 0);
}

static int ready_pipe_wr = -1;

/* The worker's on_ready hook (see spawn). */
static void worker_ready(int port, void *data)
{
    (void)port;
    (void)data;
    if (ready_pipe_wr >= 0) {
        char b = 'r';
        (void)!write(ready_pipe_wr, &b, 1);
        close(ready_pipe_wr);
        ready_pipe_wr = -1;
    }
}

/* The watchdog's ping, due every WATCHDOG_USEC/2 wherever the supervisor
 * waits (its main loop, a reload's wait for ready, the shutdown). */
static void watchdog(supervisor *sv)
{
    if (!sv->watchdog_ms)
        return;
    uint64_t now = now_ms();
    if (now >= sv->next_ping_ms) {
        vial_sd_notify("WATCHDOG=1");
        sv->next_ping_ms = now + sv->watchdog_ms;
    }
}

/* How long the supervisor may sleep: `ms`, or less when a ping is due. */
static struct timespec tick(const supervisor *sv, uint64_t ms)
{
    if (sv->watchdog_ms) {
        uint64_t now = now_ms();
        uint64_t left = sv->next_ping_ms > now ? sv->next_ping_ms - now : 0;
        if (left < ms)
            ms = left;
    }
    return (struct timespec){(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
}

static void notify_ready(supervisor *sv)
{
    char msg[sizeof sv->where + 64];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=listening on %s (%d processes)", sv->where, sv->cfg.processes);
    vial_sd_notify(msg);
}

static int free_slot(supervisor *sv)
{
    for (int i = 0; i < MAX_SLOTS; i++)
        if (sv->w[i].state == FREE)
            return i;
    return -1;
}

/* Forks a worker into slot idx. 0, or a negative errno (logged). */
static int spawn(supervisor *sv, int idx)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(p[0]);
        close(p[1]);
        char eb[128];
        vial_log(VIAL_LOG_ERROR, "cannot start a worker: %s", strerror_r(-e, eb, sizeof eb));
        return e;
    }
    if (pid == 0) {
        close(p[0]);
        for (int i = 0; i < MAX_SLOTS; i++)
            if (sv->w[i].ready_fd >= 0 && sv->w[i].state != FREE)
                close(sv->w[i].ready_fd);
        ready_pipe_wr = p[1];
        worker_main(sv, idx);
    }
    close(p[1]);
    worker *w = &sv->w[idx];
    w->state = LIVE;
    w->pid = pid;
    w->ready_fd = p[0];
    w->started_ms = now_ms();
    return 0;
}

static void close_ready(worker *w)
{
    if (w->ready_fd >= 0) {
        close(w->ready_fd);
        w->ready_fd = -1;
    }
}

static void signal_all(supervisor *sv, int sig, int only_state)
{
    for (int i = 0; i < MAX_SLOTS; i++)
        if ((sv->w[i].state == LIVE || sv->w[i].state == RETIRING) &&
            (only_state < 0 || sv->w[i].state == only_state))
            kill(sv->w[i].pid, sig);
}

static int count(const supervisor *sv, int state)
{
    int n = 0;
    for (int i = 0; i < MAX_SLOTS; i++)
        n += sv->w[i].state == state;
    return n;
}

/* A child ended: a retired or stopping one is simply gone; any other death
 * is a crash, logged with the route it served, and replaced. */
static void reaped(supervisor *sv, pid_t pid, int status)
{
    int idx = -1;
    for (int i = 0; i < MAX_SLOTS && idx < 0; i++)
        if (sv->w[i].state != FREE && sv->w[i].state != WAITING && sv->w[i].pid == pid)
            idx = i;
    if (idx < 0)
        return;
    worker *w = &sv->w[idx];
    close_ready(w);
    int expected = w->state == RETIRING || sv->stopping;
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (expected && clean) {
        w->state = FREE;
        return;
    }
    /* Empty when the worker could not report (SIGKILL, or the crash
     * handler never ran). */
    const char *route = sv->slots[idx].route[0] ? sv->slots[idx].route : "(no crash report)";
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *name = vial_signal_name(sig);
        char num[24];
        if (!name) {
            snprintf(num, sizeof num, "signal %d", sig);
            name = num;
        }
        vial_log(VIAL_LOG_ERROR, "worker %d killed by %s while serving %s", (int)pid, name, route);
    } else if (clean) {
        vial_log(VIAL_LOG_WARN, "worker %d exited unasked (a SIGTERM sent to it?)", (int)pid);
    } else {
        vial_log(VIAL_LOG_ERROR, "worker %d exited with status %d (serving %s)", (int)pid,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, route);
    }
    if (expected) {
        w->state = FREE;
        return;
    }
    uint64_t now = now_ms();
    w->fails = now - w->started_ms >= STABLE_MS ? 0 : w->fails + 1;
    uint64_t delay = 0;
    if (w->fails > 1) {
        delay = BACKOFF_MIN_MS;
        for (unsigned k = 2; k < w->fails && delay < BACKOFF_MAX_MS; k++)
            delay *= 2;
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
        vial_log(VIAL_LOG_WARN, "worker crashed %u times in a row; restarting it in %llu ms", w->fails,
                 (unsigned long long)delay);
    }
    w->state = WAITING;
    w->respawn_ms = now + delay;
}

static void reap_all(supervisor *sv)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        reaped(sv, pid, status);
}

static void respawn_due(supervisor *sv)
{
    uint64_t now = now_ms();
    for (int i = 0; i < MAX_SLOTS; i++) {
        worker *w = &sv->w[i];
        if (w->state != WAITING || w->respawn_ms > now)
            continue;
        if (spawn(sv, i) == 0) {
            vial_log(VIAL_LOG_INFO, "worker %d started in place of the one that died", (int)w->pid);
        } else {
            w->respawn_ms = now + BACKOFF_MAX_MS;
            w->state = WAITING;
        }
    }
}

/* Waits until every LIVE worker in `fresh` has written its ready byte (or
 * died). 1 when all are ready. */
static int wait_ready(supervisor *sv, const int *fresh, int n)
{
    uint64_t deadline = now_ms() + READY_LIMIT_MS;
    for (;;) {
        struct pollfd pfd[MAX_SLOTS / 2];
        int idx[MAX_SLOTS / 2], np = 0;
        for (int k = 0; k < n; k++) {
            worker *w = &sv->w[fresh[k]];
            if (w->state != LIVE)
                return 0; /* died before it was ready */
            if (w->ready_fd >= 0) {
                pfd[np] = (struct pollfd){.fd = w->ready_fd, .events = POLLIN};
                idx[np++] = fresh[k];
            }
        }
        if (np == 0)
            return 1;
        uint64_t now = now_ms();
        if (now >= deadline)
            return 0;
        watchdog(sv);
        int r = poll(pfd, (nfds_t)np, 50);
        int failed = 0;
        for (int k = 0; r > 0 && k < np; k++) {
            if (!pfd[k].revents)
                continue;
            char b;
            ssize_t got = read(pfd[k].fd, &b, 1);
            close_ready(&sv->w[idx[k]]);
            /* Closed without a byte: it is exiting, maybe not reapable
             * yet; not ready in any case. */
            failed |= got != 1;
        }
        if (failed)
            return 0;
        /* A SIGCHLD meanwhile: note deaths, so a crash is seen as one.
         * Only SIGCHLD is taken here: a SIGTERM stays pending for the main
         * loop. */
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        struct timespec zero = {0, 0};
        siginfo_t si;
        while (sigtimedwait(&chld, &si, &zero) == SIGCHLD)
            ;
        reap_all(sv);
    }
}

/* SIGHUP: new workers with the re-read config, ready before the old ones
 * are told to drain (the SIGTERM path: stop accepting, finish in-flight
 * requests within the grace period). */
static void reload(supervisor *sv)
{
    vial_config next = sv->cfg;
    if (vial_config_reread(&next) < 0) {
        vial_log(VIAL_LOG_ERROR, "reload: the configuration has errors; keeping the running workers");
        return;
    }
    if (strcmp(next.host ? next.host : "", sv->cfg.host ? sv->cfg.host : "") ||
        strcmp(next.listen ? next.listen : "", sv->cfg.listen ? sv->cfg.listen : "") ||
        (next.unix_mode != sv->cfg.unix_mode && next.unix_mode != 0) ||
        (next.port != sv->cfg.port && next.port != 0))
        vial_log(VIAL_LOG_WARN, "reload: listener changes need a restart; listeners kept");
    next.host = sv->cfg.host;
    next.port = sv->cfg.port;
    next.listen = sv->cfg.listen;
    next.unix_mode = sv->cfg.unix_mode;
    next.on_ready = sv->cfg.on_ready;
    next.ready_data = sv->cfg.ready_data;
    /* systemd (Type=notify-reload) waits for READY=1 again. */
    struct timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)mono.tv_sec * 1000000u + (unsigned long long)mono.tv_nsec / 1000u);
    vial_sd_notify(msg);
    vial_config old = sv->cfg;
    sv->cfg = next;
    int fresh[MAX_SLOTS / 2], n = 0;
    for (int k = 0; k < sv->cfg.processes && n < MAX_SLOTS / 2; k++) {
        int i = free_slot(sv);
        if (i < 0 || spawn(sv, i) < 0)
            break;
        fresh[n++] = i;
    }
    if (n < sv->cfg.processes || !wait_ready(sv, fresh, n)) {
        vial_log(VIAL_LOG_ERROR, "reload: new workers did not start; keeping the running ones");
        for (int k = 0; k < n; k++)
            if (sv->w[fresh[k]].state == LIVE) {
                sv->w[fresh[k]].state = RETIRING;
                kill(sv->w[fresh[k]].pid, SIGKILL);
            }
        sv->cfg = old;
        notify_ready(sv); /* still serving, with the old workers */
        return;
    }
    int retired = 0;
    for (int i = 0; i < MAX_SLOTS; i++) {
        int is_fresh = 0;
        for (int k = 0; k < n; k++)
            is_fresh |= fresh[k] == i;
        if (is_fresh)
            continue;
        if (sv->w[i].state == LIVE) {
            sv->w[i].state = RETIRING;
            kill(sv->w[i].pid, SIGTERM);
            retired++;
        } else if (sv->w[i].state == WAITING) {
            sv->w[i].state = FREE; /* its replacement is among the new ones */
        }
    }
    vial_log(VIAL_LOG_INFO, "reloaded: %d new workers serving, %d draining", n, retired);
    notify_ready(sv);
}

/* SIGTERM/SIGINT: the workers drain as a single process does; past their
 * grace period (and a margin) the stragglers are killed. */
static void shutdown_all(supervisor *sv, int sig, const sigset_t *set)
{
    sv->stopping = 1;
    for (int i = 0; i < MAX_SLOTS; i++)
        if (sv->w[i].state == WAITING)
            sv->w[i].state = FREE;
    signal_all(sv, sig, -1);
    uint64_t deadline = now_ms() + (uint64_t)sv->cfg.drain_delay_ms + (uint64_t)sv->cfg.grace_ms + 2000;
    while (count(sv, LIVE) + count(sv, RETIRING) > 0) {
        struct timespec t = tick(sv, 100);
        siginfo_t si;
        int got = sigtimedwait(set, &si, &t);
        watchdog(sv);
        if (got == SIGTERM || got == SIGINT)
            signal_all(sv, got, -1); /* asked again: cuts their drain delay short */
        reap_all(sv);
        if (now_ms() > deadline) {
            vial_log(VIAL_LOG_ERROR, "workers still running past the grace period; killing them");
            signal_all(sv, SIGKILL, -1);
            deadline = UINT64_MAX;
        }
    }
}

/* Stops the workers started so far at once (a failed start). */
static void kill_all(supervisor *sv)
{
    sv->stopping = 1;
    signal_all(sv, SIGKILL, -1);
    while (count(sv, LIVE) + count(sv, RETIRING) > 0 && waitpid(-1, NULL, 0) > 0)
        ;
    reap_all(sv);
    for (int i = 0; i < MAX_SLOTS; i++)
        if (sv->w[i].state != FREE) {
            close_ready(&sv->w[i]);
            sv->w[i].state = FREE;
        }
}

int vial_supervise(vial_app *app, const vial_config *cfg, int (*serve)(vial_app *, const vial_config *))
{
    supervisor *sv = calloc(1, sizeof *sv);
    if (!sv)
        return -ENOMEM;
    sv->app = app;
    sv->cfg = *cfg;
    sv->serve = serve;
    sv->self = getpid();
    for (int i = 0; i < MAX_SLOTS; i++)
        sv->w[i].ready_fd = -1;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);
    int err = 0;
    sv->slots = mmap(NULL, MAX_SLOTS * sizeof(shared_slot), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sv->slots == MAP_FAILED) {
        sv->slots = NULL;
        err = -errno;
        goto out;
    }
    err = vial_listen_open(cfg, sv->listens, &sv->nlistens);
    if (err < 0)
        goto out;
    int port = 0;
    for (unsigned i = 0; i < sv->nlistens && !port; i++)
        port = vial_listen_port(&sv->listens[i]);
    sv->cfg.port = port;
    vial_listen_describe_all(sv->listens, sv->nlistens, sv->where, sizeof sv->where);
    if (cfg->on_ready)
        cfg->on_ready(port, cfg->ready_data);
    int fresh[MAX_SLOTS / 2], nfresh = 0;
    for (int k = 0; k < cfg->processes && k < MAX_SLOTS / 2; k++) {
        err = spawn(sv, k);
        fresh[nfresh++] = k;
        if (err < 0) {
            kill_all(sv);
            goto out;
        }
    }
    sv->watchdog_ms = vial_sd_watchdog_usec() / 2000u;
    sv->next_ping_ms = now_ms();
    /* systemd hears READY=1 when the first workers can serve: a worker
     * that cannot start (an access log it cannot open, a crash) stops the
     * start rather than leave a service that only restarts workers. */
    if (!wait_ready(sv, fresh, nfresh)) {
        vial_log(VIAL_LOG_ERROR, "the workers did not start; stopping");
        kill_all(sv);
        err = -ECHILD;
        goto out;
    }
    /* Like a single process's, the line says the port serves: scripts and
     * tests wait for it. */
    char loops[32] = "one per core";
    if (cfg->threads > 0)
        snprintf(loops, sizeof loops, "%d", cfg->threads);
    vial_log(VIAL_LOG_ANNOUNCE, "listening on %s (%d processes; loop threads: %s, workers: %d each)", sv->where,
             cfg->processes, loops, cfg->workers);
    notify_ready(sv);
    int sig = 0;
    for (;;) {
        struct timespec t = tick(sv, 200);
        siginfo_t si;
        sig = sigtimedwait(&set, &si, &t);
        watchdog(sv);
        reap_all(sv);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP) {
            vial_log(VIAL_LOG_INFO, "SIGHUP received, reloading");
            reload(sv);
        } else if (sig == SIGUSR1) {
            signal_all(sv, SIGUSR1, LIVE);
        } else if (sig == SIGUSR2) {
            vial_log(VIAL_LOG_WARN, "SIGUSR2: ignored");
        }
        for (int i = 0; i < MAX_SLOTS; i++)
            if (sv->w[i].state == LIVE && sv->w[i].ready_fd >= 0) {
                struct pollfd p = {.fd = sv->w[i].ready_fd, .events = POLLIN};
                if (poll(&p, 1, 0) > 0)
                    close_ready(&sv->w[i]);
            }
        respawn_due(sv);
    }
    vial_log(VIAL_LOG_INFO, "%s received, stopping the workers", sig == SIGINT ? "SIGINT" : "SIGTERM");
    vial_sd_notify(sig == SIGINT ? "STOPPING=1\nSTATUS=draining (SIGINT)" : "STOPPING=1\nSTATUS=draining (SIGTERM)");
    shutdown_all(sv, sig, &set);
    vial_log(VIAL_LOG_INFO, "stopped");
out:
    /* The socket files are removed here only: the supervisor bound them. */
    vial_listen_close(sv->listens, sv->nlistens);
    for (int i = 0; i < MAX_SLOTS; i++)
        close_ready(&sv->w[i]);
    if (sv->slots)
        munmap(sv->slots, MAX_SLOTS * sizeof(shared_slot));
    free(sv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}
