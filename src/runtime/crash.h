/* Crash reports: a fatal signal (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) in
 * any thread writes one line naming the signal and the route the crashing
 * thread was serving, copies the route where a supervisor can read it after
 * the process is gone, then dies of the same signal (core dumps intact). */
#ifndef VIAL_RUNTIME_CRASH_H
#define VIAL_RUNTIME_CRASH_H

#include <stddef.h>

/* Installs the handlers (process-wide; idempotent). Not under ASan/TSan,
 * which own these signals and report crashes themselves. */
void vial_crash_install(void);

/* Where the handler also copies "SIGNAL route" (NUL-terminated, at most
 * cap bytes): a slot in memory shared with the supervisor. NULL: nowhere. */
void vial_crash_set_slot(char *slot, size_t cap);

/* Names a coroutine's request (vial_coro.request) in a crash report: writes
 * at most cap-1 bytes and a NUL into out, and must be async-signal-safe
 * (plain memory reads). Set once, before serving. */
void vial_crash_set_describer(void (*fn)(void *request, char *out, size_t cap));

/* "SIGSEGV" for SIGSEGV; "signal 42" style names are not built: NULL for a
 * signal without a name here. A static table, safe in a signal handler. */
const char *vial_signal_name(int sig);

#endif
