/* vial's own messages, in one format:
 *
 *   2026-12-06T06:22:20.123Z info vial: listening on http://127.0.0.1:8080 ...
 *
 * (UTC ISO 8601 with milliseconds, the level, the message), each line one
 * write(2) to stderr so lines from several threads never interleave. Below
 * the level set by --log-level, vial_log writes nothing and formats nothing.
 * The access log (app/accesslog.c) is separate: it has its own file and
 * format. */
#ifndef VIAL_RUNTIME_LOG_H
#define VIAL_RUNTIME_LOG_H

/* ANNOUNCE: an info line written whatever the level (the listening line,
 * which tools read the port from). */
enum { VIAL_LOG_ANNOUNCE = -1, VIAL_LOG_ERROR, VIAL_LOG_WARN, VIAL_LOG_INFO, VIAL_LOG_DEBUG };

/* The current level; messages above it are dropped. Set once at start. */
extern int vial_log_threshold;

/* "error", "warn", "info", "debug" -> the level; -EINVAL otherwise. */
int vial_log_level_parse(const char *name);
void vial_log_set_level(int level);

static inline int vial_log_enabled(int level)
{
    return level <= vial_log_threshold;
}

/* One line at `level` (fmt without the trailing newline; locale-free). */
void vial_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* SIGUSR1 (logrotate): modules with a file of their own register a reopen
 * function; the server's signal thread calls vial_log_reopen. At most 4. */
int vial_log_on_reopen(void (*fn)(void));
void vial_log_reopen(void);

#endif
