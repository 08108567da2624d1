/* The request object: lazily decoded views of the parsed head. Everything is
 * computed on first use and kept in the request's arena. */
#include "app/app.h"
#include "runtime/ascii.h"
#include "app/utf8.h"
#include "runtime/loop.h"
#include "runtime/coro.h"
#include "runtime/codec.h"
#include "runtime/numfmt.h"
#include "http/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *vial_url_decode(vial_arena *a, const char *src, size_t n, int plus_space, size_t *out_len)
{
    /* Pass 1: bytes. Pass 2: UTF-8 repair (each bad subpart grows by at most
     * 2 bytes: 1 byte -> 3-byte U+FFFD). */
    unsigned char *raw = vial_arena_alloc(a, n + 1);
    if (!raw)
        return NULL;
    size_t m = (size_t)vial_pct_decode((char *)raw, src, n, plus_space ? VIAL_PCT_PLUS : 0);
    int ascii = 1;
    for (size_t i = 0; i < m && ascii; i++)
        ascii = raw[i] < 0x80;
    raw[m] = 0;
    if (ascii) {
        if (out_len)
            *out_len = m;
        return (char *)raw;
    }
    return vial_utf8_repair(a, (const char *)raw, m, out_len);
}

const char *vial_req_method(vial_req *rq)
{
    if (!rq->method_z)
        rq->method_z = vial_arena_strndup(&rq->arena, rq->head.method.p, rq->head.method.len);
    return rq->method_z;
}

const char *vial_req_path_n(vial_req *rq, size_t *len)
{
    if (!rq->path_z) {
        /* Most paths have no '%' and no byte >= 0x80: nothing to decode. */
        const char *p = rq->head.path.p;
        size_t n = rq->head.path.len, i = 0;
        while (i < n && p[i] != '%' && (signed char)p[i] >= 0)
            i++;
        if (i == n) {
            rq->path_z = vial_arena_strndup(&rq->arena, p, n);
            rq->path_len = n;
        } else {
            rq->path_z = vial_url_decode(&rq->arena, p, n, 0, &rq->path_len);
        }
    }
    if (!rq->path_z) {
        rq->path_z = "/";
        rq->path_len = 1;
    }
    if (len)
        *len = rq->path_len;
    return rq->path_z;
}

const char *vial_req_path(vial_req *rq)
{
    return vial_req_path_n(rq, NULL);
}

const char *vial_req_query_string(vial_req *rq)
{
    if (!rq->query_z)
        rq->query_z = vial_arena_strndup(&rq->arena, rq->head.query.p, rq->head.query.len);
    return rq->query_z ? rq->query_z : "";
}

int vial_req_http_minor(vial_req *rq)
{
    return rq->head.version_minor;
}

const char *vial_req_header(vial_req *rq, const char *name)
{
    size_t nlen = strlen(name);
    const vial_http_field *first = NULL;
    size_t total = 0;
    unsigned count = 0;
    for (unsigned i = 0; i < rq->head.nheaders; i++) {
        const vial_http_field *h = &rq->head.headers[i];
        if (h->name.len == nlen && !vial_ascii_ncasecmp(h->name.p, name, nlen)) {
            if (!first)
                first = h;
            total += h->value.len + 2;
            count++;
        }
    }
    if (!first)
        return NULL;
    if (count == 1)
        return vial_arena_strndup(&rq->arena, first->value.p, first->value.len);
    char *out = vial_arena_alloc(&rq->arena, total + 1), *o = out;
    if (!out)
        return NULL;
    for (unsigned i = 0; i < rq->head.nheaders; i++) {
        const vial_http_field *h = &rq->head.headers[i];
        if (h->name.len == nlen && !vial_ascii_ncasecmp(h->name.p, name, nlen)) {
            if (o != out) {
                *o++ = ',';
                *o++ = ' ';
            }
            memcpy(o, h->value.p, h->value.len);
            o += h->value.len;
        }
    }
    *o = 0;
    return out;
}

unsigned vial_req_header_count(vial_req *rq)
{
    return rq->head.nheaders;
}

int vial_req_header_at(vial_req *rq, unsigned i, const char **name, const char **value)
{
    if (i >= rq->head.nheaders)
        return -ERANGE;
    const vial_http_field *h = &rq->head.headers[i];
    if (name)
        *name = vial_arena_strndup(&rq->arena, h->name.p, h->name.len);
    if (value)
        *value = vial_arena_strndup(&rq->arena, h->value.p, h->value.len);
    return 0;
}

const char *vial_req_param_n(vial_req *rq, const char *name, size_t *len)
{
    for (unsigned i = 0; i < vial_rqs(rq)->nparams; i++)
        if (!strcmp(vial_rqs(rq)->params[i].name, name)) {
            if (len)
                *len = vial_rqs(rq)->params[i].value_len;
            return vial_rqs(rq)->params[i].value;
        }
    return NULL;
}

const char *vial_req_param(vial_req *rq, const char *name)
{
    return vial_req_param_n(rq, name, NULL);
}

int64_t vial_req_param_int(vial_req *rq, const char *name)
{
    for (unsigned i = 0; i < vial_rqs(rq)->nparams; i++)
        if (!strcmp(vial_rqs(rq)->params[i].name, name))
            return vial_rqs(rq)->param_ints[i];
    return 0;
}

static void parse_args(vial_req *rq)
{
    rq->args_parsed = 1;
    const char *q = rq->head.query.p, *end = q + rq->head.query.len;
    unsigned n = 0;
    for (const char *p = q; p < end; p++)
        n += *p == '&';
    rq->args = vial_arena_alloc(&rq->arena, (n + 1) * sizeof *rq->args);
    if (!rq->args)
        return;
    const char *p = q;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if (e > p) {
            const char *eq = memchr(p, '=', (size_t)(e - p));
            const char *ke = eq ? eq : e;
            vial_kv *kv = &rq->args[rq->nargs];
            kv->value_len = 0;
            kv->name = vial_url_decode(&rq->arena, p, (size_t)(ke - p), 1, &kv->name_len);
            kv->value = eq ? vial_url_decode(&rq->arena, eq + 1, (size_t)(e - eq - 1), 1, &kv->value_len) : "";
            if (kv->name && kv->value)
                rq->nargs++;
        }
        p = e + 1;
    }
}

static const vial_kv *find_arg(vial_req *rq, const char *name)
{
    if (!rq->args_parsed)
        parse_args(rq);
    int i = vial_kv_find(&vial_rqs(rq)->args_ix, rq->args, rq->nargs, name, strlen(name), &rq->arena);
    return i < 0 ? NULL : &rq->args[i];
}

unsigned vial_req_arg_list(vial_req *rq, const char *name, const char **values, unsigned cap)
{
    if (!rq->args_parsed)
        parse_args(rq);
    vial_kv_index *ix = &vial_rqs(rq)->args_ix;
    unsigned n = 0;
    for (int i = vial_kv_find(ix, rq->args, rq->nargs, name, strlen(name), &rq->arena); i >= 0;
         i = vial_kv_next(ix, rq->args, rq->nargs, (unsigned)i, &rq->arena)) {
        if (n < cap)
            values[n] = rq->args[i].value;
        n++;
    }
    return n;
}

unsigned vial_req_arg_total(vial_req *rq)
{
    /* Counted from the raw query without parsing it: dispatch checks the
     * limit on every request that has a query. */
    const char *q = rq->head.query.p, *end = q + rq->head.query.len;
    unsigned n = 0;
    for (const char *p = q; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        n += e > p; /* empty pieces are skipped, as parse_args does */
        p = e + 1;
    }
    return n;
}

const char *vial_req_arg_n(vial_req *rq, const char *name, size_t *len)
{
    const vial_kv *kv = find_arg(rq, name);
    if (kv && len)
        *len = kv->value_len;
    return kv ? kv->value : NULL;
}

const char *vial_req_arg(vial_req *rq, const char *name)
{
    return vial_req_arg_n(rq, name, NULL);
}

int vial_req_arg_int(vial_req *rq, const char *name, int64_t def, int64_t min, int64_t max,
                     int64_t *out)
{
    size_t len;
    const char *v = vial_req_arg_n(rq, name, &len);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!len)
        return -EINVAL;
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) { /* a decoded NUL is not a digit either */
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > ((uint64_t)INT64_MAX - d) / 10) /* checked before it can wrap */
            return -EINVAL;
        x = x * 10 + d;
    }
    if ((int64_t)x < min || (int64_t)x > max)
        return -EINVAL;
    *out = (int64_t)x;
    return 0;
}

unsigned vial_req_arg_count(vial_req *rq)
{
    if (!rq->args_parsed)
        parse_args(rq);
    return rq->nargs;
}

int vial_req_arg_at_n(vial_req *rq, unsigned i, const char **name, size_t *name_len,
                      const char **value, size_t *value_len)
{
    if (!rq->args_parsed)
        parse_args(rq);
    if (i >= rq->nargs)
        return -ERANGE;
    if (name)
        *name = rq->args[i].name;
    if (name_len)
        *name_len = rq->args[i].name_len;
    if (value)
        *value = rq->args[i].value;
    if (value_len)
        *value_len = rq->args[i].value_len;
    return 0;
}

int vial_req_arg_at(vial_req *rq, unsigned i, const char **name, const char **value)
{
    if (!rq->args_parsed)
        parse_args(rq);
    if (i >= rq->nargs)
        return -ERANGE;
    if (name)
        *name = rq->args[i].name;
    if (value)
        *value = rq->args[i].value;
    return 0;
}

const void *vial_req_body(vial_req *rq, size_t *len)
{
    if (len)
        *len = rq->body_len;
    return rq->body;
}

void *vial_alloc(vial_req *rq, size_t size)
{
    return vial_arena_alloc(&rq->arena, size);
}

char *vial_strdup(vial_req *rq, const char *s)
{
    return vial_arena_strndup(&rq->arena, s, strlen(s));
}

char *vial_sprintf(vial_req *rq, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vial_vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *out = n >= 0 ? vial_arena_alloc(&rq->arena, (size_t)n + 1) : NULL;
    if (out)
        vial_vsnprintf(out, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return out;
}

/* --- awaiting -------------------------------------------------------------- */

int vial_sleep(vial_req *rq, uint64_t ms)
{
    if (rq->is_sync || !vial_coro_current())
        return -EPERM;
    return vial_coro_sleep_ns(ms * 1000000ull);
}

int vial_offload(vial_req *rq, void (*fn)(void *arg), void *arg)
{
    vial_coro *c = vial_coro_current();
    if (rq->is_sync || !c)
        return -EPERM;
    return vial_pool_run_cancellable(rq->pool, fn, arg);
}

uint64_t vial_now_ms(void)
{
    /* The clock itself (a vDSO read), not the loop's now cached at the start
     * of its iteration, which lags behind a coroutine that has run a while. */
    return vial_clock_ns() / 1000000ull;
}
