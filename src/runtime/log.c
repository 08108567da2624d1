/* vial's own log lines (log.h). */
#include "runtime/log.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int vial_log_threshold = VIAL_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int vial_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, level_names[i]))
            return i;
    return -EINVAL;
}

void vial_log_set_level(int level)
{
    if (level >= VIAL_LOG_ERROR && level <= VIAL_LOG_DEBUG)
        vial_log_threshold = level;
}

void vial_log(int level, const char *fmt, ...)
{
    if (!vial_log_enabled(level))
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = vial_iso8601_ms((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, line);
    line[n++] = ' ';
    const char *name = level_names[level < 0 ? VIAL_LOG_INFO : level];
    size_t ln = strlen(name);
    memcpy(line + n, name, ln);
    n += ln;
    memcpy(line + n, " vial: ", 7);
    n += 7;
    va_list ap;
    va_start(ap, fmt);
    int m = vial_vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    line[n++] = '\n';
    /* One write: lines from threads do not interleave (stderr is unbuffered
     * anyway, but stdio would split a line into several writes). */
    for (size_t off = 0; off < n;) {
        ssize_t w = write(2, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

static void (*reopeners[4])(void);
static int nreopeners;

int vial_log_on_reopen(void (*fn)(void))
{
    for (int i = 0; i < nreopeners; i++)
        if (reopeners[i] == fn)
            return 0;
    if (nreopeners == 4)
        return -ENOSPC;
    reopeners[nreopeners++] = fn;
    return 0;
}

void vial_log_reopen(void)
{
    for (int i = 0; i < nreopeners; i++)
        reopeners[i]();
}
