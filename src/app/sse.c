/* Server-sent events: the wire form of an event, and the stream around it
 * (include/vial/realtime.h). A field value ends at a line break, so data
 * is split into one "data:" line per line of it, and event and id may hold
 * none: those are refused rather than cleaned, so what the app meant is
 * never silently changed into another event. */
#include "app/hub.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Appends to out while it has room; counts every byte either way. */
typedef struct sink {
    char *out;
    size_t cap, len;
} sink;

static void put(sink *k, const void *p, size_t n)
{
    if (k->len < k->cap) {
        size_t room = k->cap - k->len;
        memcpy(k->out + k->len, p, n < room ? n : room);
    }
    k->len += n;
}

static void field(sink *k, const char *name, const char *v, size_t n)
{
    put(k, name, strlen(name));
    put(k, ": ", 2);
    put(k, v, n);
    put(k, "\n", 1);
}

static int bad_line(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

long vial_sse_encode(const vial_sse_event *ev, char *out, size_t cap)
{
    if (!ev || bad_line(ev->event) || bad_line(ev->id) || (ev->len && !ev->data))
        return -EINVAL;
    sink k = {out, out ? cap : 0, 0};
    if (ev->event && *ev->event)
        field(&k, "event", ev->event, strlen(ev->event));
    if (ev->id)
        field(&k, "id", ev->id, strlen(ev->id));
    if (ev->retry_ms) {
        char num[VIAL_FMT_INT_SIZE];
        field(&k, "retry", num, vial_fmt_u64(num, ev->retry_ms));
    }
    if (ev->data) {
        /* CRLF, CR and LF all end a line for the client (a lone CR too),
         * so each is a line break here. */
        const char *p = ev->data, *end = p + ev->len;
        for (;;) {
            const char *e = p;
            while (e < end && *e != '\r' && *e != '\n')
                e++;
            field(&k, "data", p, (size_t)(e - p));
            if (e == end)
                break;
            p = e + (*e == '\r' && e + 1 < end && e[1] == '\n' ? 2 : 1);
        }
    }
    put(&k, "\n", 1);
    return (long)k.len;
}

vial_shared_bytes *vial_sse_shared(const vial_sse_event *ev)
{
    long n = vial_sse_encode(ev, NULL, 0);
    if (n < 0)
        return NULL;
    vial_shared_bytes *b = malloc(sizeof *b + (size_t)n);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = (size_t)vial_sse_encode(ev, (char *)b->bytes, (size_t)n);
    return b;
}

int vial_sse_begin(vial_res *rs)
{
    int r = vial_res_set_header(rs, "Cache-Control", "no-cache");
    if (r == 0)
        r = vial_res_set_header(rs, "X-Accel-Buffering", "no");
    if (r == 0)
        r = vial_stream_begin(rs, 200, "text/event-stream; charset=utf-8");
    return r;
}

int vial_sse_send(vial_res *rs, const vial_sse_event *ev)
{
    char small[512];
    long n = vial_sse_encode(ev, small, sizeof small);
    if (n < 0)
        return (int)n;
    if ((size_t)n <= sizeof small)
        return vial_stream_write(rs, small, (size_t)n);
    char *big = malloc((size_t)n);
    if (!big)
        return -ENOMEM;
    vial_sse_encode(ev, big, (size_t)n);
    int r = vial_stream_write(rs, big, (size_t)n);
    free(big);
    return r;
}

int vial_sse_comment(vial_res *rs, const char *text)
{
    if (!text || bad_line(text))
        return -EINVAL;
    size_t n = strlen(text);
    char small[256];
    if (n + 4 > sizeof small)
        return -EINVAL;
    small[0] = ':';
    small[1] = ' ';
    memcpy(small + 2, text, n);
    small[n + 2] = '\n';
    small[n + 3] = '\n';
    return vial_stream_write(rs, small, n + 4);
}

const char *vial_sse_last_id(vial_req *rq)
{
    const char *v = vial_req_header(rq, "Last-Event-ID");
    return v && *v ? v : NULL;
}
