/* Names for every result code vial defines (include/vial.h, "results").
 * What is returned is static (built once), so callers on any thread may
 * keep it; only a code nobody defined is formatted, into a per-thread buffer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerrorname_np, strerrordesc_np */
#endif
#include "vial.h"
#include "http/server.h"
#include "vial/pg.h"
#include "vial/redis.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vial_http_status_of(int code)
{
    if (code > VIAL_EHTTP(100) || code < VIAL_EHTTP(999))
        return 0;
    return -code - 200000;
}

static const struct {
    int code;
    const char *text;
} own[] = {
    {VIAL_DONE, "VIAL_DONE: a before_request hook answered the request"},
    {VIAL_FAILED, "VIAL_FAILED: unhandled error"},
    {VIAL_ETMPL_NOTFOUND, "VIAL_ETMPL_NOTFOUND: no such template"},
    {VIAL_ETMPL_SYNTAX, "VIAL_ETMPL_SYNTAX: a template does not compile"},
    {VIAL_ETMPL_RENDER, "VIAL_ETMPL_RENDER: a template failed while rendering"},
    {VIAL_WS_CLOSED, "VIAL_WS_CLOSED: the peer closed the websocket"},
    {VIAL_REDIS_EREPLY, "VIAL_REDIS_EREPLY: the Redis server answered with an error reply"},
    {VIAL_PG_ESQL, "VIAL_PG_ESQL: the PostgreSQL server reported an error"},
};

/* "HTTP 404 Not Found" for every status 100..999, built once: a table of
 * static strings keeps vial_strerror free of per-call buffers. */
#define HTTP_TEXT_LEN 48
static char http_text[900][HTTP_TEXT_LEN];
static pthread_once_t http_once = PTHREAD_ONCE_INIT;

static void http_text_init(void)
{
    for (int s = 100; s <= 999; s++) {
        const char *reason = vial_status_reason(s);
        snprintf(http_text[s - 100], HTTP_TEXT_LEN, "HTTP %d%s%s", s, *reason ? " " : "", reason);
    }
}

/* "ENOENT: No such file or directory": glibc's name and description
 * tables are static (strerror's buffer is not), joined once at first use. */
#define ERRNO_MAX 4096
static const char *errno_text[ERRNO_MAX];
static pthread_once_t errno_once = PTHREAD_ONCE_INIT;

static void errno_text_init(void)
{
    for (int e = 1; e < ERRNO_MAX; e++) {
        const char *name = strerrorname_np(e), *desc = strerrordesc_np(e);
        if (!name || !desc)
            continue;
        size_t n = strlen(name) + 2 + strlen(desc) + 1;
        char *t = malloc(n);
        if (t)
            snprintf(t, n, "%s: %s", name, desc);
        errno_text[e] = t ? t : name;
    }
}

const char *vial_strerror(int code)
{
    if (code == 0)
        return "success";
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (own[i].code == code)
            return own[i].text;
    int status = vial_http_status_of(code);
    if (status) {
        pthread_once(&http_once, http_text_init);
        return http_text[status - 100];
    }
    if (code < 0 && code > -ERRNO_MAX) {
        pthread_once(&errno_once, errno_text_init);
        if (errno_text[-code])
            return errno_text[-code];
    }
    /* Any other int: a per-thread buffer, so concurrent callers never share
     * it (valid until this thread's next unknown code). */
    static _Thread_local char unknown[32];
    snprintf(unknown, sizeof unknown, "unknown error %d", code);
    return unknown;
}
