/* For client tests: reads the figures a client library's metrics source
 * (runtime/driver.h) writes into the app's scrape. */
#ifndef VIAL_TEST_METRICS_TEXT_H
#define VIAL_TEST_METRICS_TEXT_H

#include "runtime/driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mbuf {
    char b[65536];
    size_t n;
} mbuf;

static inline void mbuf_append(void *ctx, const char *p, size_t n)
{
    mbuf *m = ctx;
    if (m->n + n < sizeof m->b) {
        memcpy(m->b + m->n, p, n);
        m->n += n;
        m->b[m->n] = 0;
    }
}

/* The sum over every pool of one family's samples; -1 when absent, or when
 * the family is not declared exactly once. */
static inline long long metric_sum(const char *family)
{
    static mbuf m;
    m.n = 0;
    m.b[0] = 0;
    vial_metrics_out out = {mbuf_append, &m};
    vial_metrics_sources_write(&out);
    char want[128];
    snprintf(want, sizeof want, "# TYPE %s ", family);
    const char *t = strstr(m.b, want);
    if (!t || strstr(t + 1, want))
        return -1;
    long long sum = 0;
    int seen = 0;
    size_t fl = strlen(family);
    for (const char *l = m.b; *l; l = strchr(l, '\n') + 1) {
        if (!strncmp(l, family, fl) && l[fl] == '{') {
            sum += atoll(strchr(l, ' ') + 1);
            seen = 1;
        }
        if (!strchr(l, '\n'))
            break;
    }
    return seen ? sum : -1;
}

#endif
