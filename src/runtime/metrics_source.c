/* The registry of metrics sources (driver.h): client libraries add their
 * figures to the app's scrape without the app knowing them, and without
 * including the app (layers). The lock is held while the sources write, so
 * a source removed is never running. */
#include "runtime/driver.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct source {
    struct source *next;
    vial_metrics_source_fn fn;
    void *data;
} source;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static source *sources, **tail = &sources;

int vial_metrics_source_add(vial_metrics_source_fn fn, void *data)
{
    source *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->fn = fn;
    s->data = data;
    pthread_mutex_lock(&mu);
    *tail = s; /* in order of registration: a stable scrape */
    tail = &s->next;
    pthread_mutex_unlock(&mu);
    return 0;
}

void vial_metrics_source_del(vial_metrics_source_fn fn, void *data)
{
    pthread_mutex_lock(&mu);
    for (source **pp = &sources; *pp; pp = &(*pp)->next) {
        source *s = *pp;
        if (s->fn == fn && s->data == data) {
            *pp = s->next;
            if (tail == &s->next)
                tail = pp;
            free(s);
            break;
        }
    }
    pthread_mutex_unlock(&mu);
}

static void put(vial_metrics_out *out, const char *s)
{
    out->append(out->ctx, s, strlen(s));
}

void vial_metrics_family(vial_metrics_out *out, const char *name, const char *type, const char *help)
{
    put(out, "# HELP ");
    put(out, name);
    put(out, " ");
    put(out, help);
    put(out, "\n# TYPE ");
    put(out, name);
    put(out, " ");
    put(out, type);
    put(out, "\n");
}

void vial_metrics_sample(vial_metrics_out *out, const char *name, const char *labels, uint64_t value)
{
    char b[VIAL_FMT_INT_SIZE];
    put(out, name);
    if (labels && *labels) {
        put(out, "{");
        put(out, labels);
        put(out, "}");
    }
    put(out, " ");
    out->append(out->ctx, b, vial_fmt_u64(b, value));
    put(out, "\n");
}

void vial_metrics_sample_pool(vial_metrics_out *out, const char *name, unsigned pool, uint64_t value)
{
    char label[8 + VIAL_FMT_INT_SIZE] = "pool=\"";
    size_t n = strlen(label);
    n += vial_fmt_u64(label + n, pool);
    memcpy(label + n, "\"", 2);
    vial_metrics_sample(out, name, label, value);
}

void vial_metrics_sources_write(vial_metrics_out *out)
{
    pthread_mutex_lock(&mu);
    for (source *s = sources; s; s = s->next)
        s->fn(s->data, out);
    pthread_mutex_unlock(&mu);
}
