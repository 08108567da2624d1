/* systemd's notification protocol, without libsystemd: one datagram of
 * "KEY=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
 * or "@name" in the abstract namespace). Main thread only. */
#ifndef VIAL_RUNTIME_SDNOTIFY_H
#define VIAL_RUNTIME_SDNOTIFY_H

#include <stdint.h>

/* Sends msg ("READY=1\nSTATUS=serving"). 0 when sent or when no
 * NOTIFY_SOCKET is set (there is no one to tell), else a negative errno. */
int vial_sd_notify(const char *msg);

/* Whether $NOTIFY_SOCKET is set. */
int vial_sd_enabled(void);

/* The watchdog interval systemd expects pings within (WATCHDOG_USEC, when
 * WATCHDOG_PID is unset or this process), in microseconds; 0: none. */
uint64_t vial_sd_watchdog_usec(void);

#endif
