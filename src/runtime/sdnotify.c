/* sd_notify(3)'s wire protocol (see sdnotify.h). The socket is opened on
 * first use and kept: the watchdog sends every few seconds. */
#include "runtime/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;

int vial_sd_enabled(void)
{
    const char *e = getenv("NOTIFY_SOCKET");
    return e && (e[0] == '/' || e[0] == '@');
}

int vial_sd_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@'))
        return 0;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof un.sun_path)
        return -ENAMETOOLONG;
    memcpy(un.sun_path, path, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (path[0] == '@')
        un.sun_path[0] = 0; /* abstract: the length, not a NUL, ends the name */
    else
        len++;
    if (notify_fd < 0) {
        notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (notify_fd < 0)
            return -errno;
    }
    ssize_t w;
    do
        w = sendto(notify_fd, msg, strlen(msg), MSG_NOSIGNAL, (const struct sockaddr *)&un, len);
    while (w < 0 && errno == EINTR);
    return w < 0 ? -errno : 0;
}

uint64_t vial_sd_watchdog_usec(void)
{
    const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!us || !vial_sd_enabled())
        return 0;
    char *end;
    if (pid && *pid) {
        long long p = strtoll(pid, &end, 10);
        if (*end || p != (long long)getpid())
            return 0;
    }
    unsigned long long v = strtoull(us, &end, 10);
    return *end || end == us ? 0 : (uint64_t)v;
}
