/* Crash reports (see crash.h). Everything the handler does is
 * async-signal-safe: fixed tables, byte copies, one write(2). */
#include "runtime/crash.h"
#include "runtime/coro.h"
#include "runtime/numfmt.h"
#include "runtime/pool.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define VIAL_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VIAL_SANITIZED 1
#endif

/* sigabbrev_np is glibc 2.32+, and strsignal is not thread-safe. */
static const struct {
    int sig;
    const char *name;
} signal_names[] = {
    {SIGSEGV, "SIGSEGV"}, {SIGBUS, "SIGBUS"},   {SIGABRT, "SIGABRT"}, {SIGFPE, "SIGFPE"},
    {SIGILL, "SIGILL"},   {SIGKILL, "SIGKILL"}, {SIGTERM, "SIGTERM"}, {SIGINT, "SIGINT"},
    {SIGHUP, "SIGHUP"},   {SIGQUIT, "SIGQUIT"}, {SIGPIPE, "SIGPIPE"}, {SIGUSR1, "SIGUSR1"},
    {SIGUSR2, "SIGUSR2"}, {SIGALRM, "SIGALRM"}, {SIGTRAP, "SIGTRAP"}, {SIGSYS, "SIGSYS"},
    {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"},
};

const char *vial_signal_name(int sig)
{
    for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
        if (signal_names[i].sig == sig)
            return signal_names[i].name;
    return NULL;
}

static void (*describer)(void *request, char *out, size_t cap);

void vial_crash_set_describer(void (*fn)(void *request, char *out, size_t cap))
{
    describer = fn;
}

/* The request and route named in a report; a target beyond this is cut. */
#define ROUTE_TEXT 384

static char *crash_slot;
static size_t crash_slot_cap;

void vial_crash_set_slot(char *slot, size_t cap)
{
    crash_slot = slot;
    crash_slot_cap = cap;
}

#ifndef VIAL_SANITIZED
static size_t put(char *out, size_t at, size_t cap, const char *s)
{
    while (*s && at + 1 < cap)
        out[at++] = *s++;
    out[at] = 0;
    return at;
}

/* What the crashing thread serves: the request ("GET /path?query") and the
 * route's label of the coroutine running on a loop thread, or of the one a
 * pool worker runs a sync function for. */
static void crash_route(char *out, size_t cap)
{
    vial_coro *c = vial_coro_current();
    if (!c)
        c = vial_pool_current_coro();
    out[0] = 0;
    if (!c || !c->label) {
        put(out, 0, cap, "no request (outside any handler)");
        return;
    }
    size_t n = 0;
    if (c->request && describer) {
        describer(c->request, out, cap);
        n = put(out, strlen(out), cap, " on ");
    }
    put(out, n, cap, c->label);
}

static void crash_handler(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    if (sig == SIGSEGV)
        vial_coro_overflow_note(si->si_addr);
    const char *name = vial_signal_name(sig);
    char route[ROUTE_TEXT];
    crash_route(route, sizeof route);
    /* The line in vial's log format (runtime/log.h): the date is
     * arithmetic, clock_gettime is async-signal-safe. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char msg[512];
    size_t n = vial_iso8601_ms((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, msg);
    n = put(msg, n, sizeof msg, " error vial: crashed: ");
    n = put(msg, n, sizeof msg, name ? name : "fatal signal");
    n = put(msg, n, sizeof msg, " while serving ");
    n = put(msg, n, sizeof msg, route);
    n = put(msg, n, sizeof msg, "\n");
    (void)!write(2, msg, n);
    if (crash_slot && crash_slot_cap) {
        put(crash_slot, 0, crash_slot_cap, route);
    }
    /* Default action: dies of this very signal, so the parent and a core
     * dump see the real cause. A raise()d signal returns here otherwise. */
    signal(sig, SIG_DFL);
    raise(sig);
}
#endif

void vial_crash_install(void)
{
#ifndef VIAL_SANITIZED
    static int installed;
    if (__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL))
        return;
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = crash_handler;
    /* The alternate stack (loop threads have one) lets a stack overflow be
     * reported; one crash report at a time. */
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
#endif
}
