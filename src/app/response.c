/* The response object: status, headers and a body in the request's arena,
 * plus the streaming calls that hand bytes to the connection at once. */
#include "app/app.h"
#include "app/compress.h"
#include "runtime/ascii.h"
#include "http/server.h"
#include "runtime/coro.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static vial_arena *res_arena(vial_res *rs)
{
    return &rs->rq->arena;
}

int vial_res_set_status(vial_res *rs, int status)
{
    if (status < 100 || status > 999)
        return -EINVAL;
    rs->status = status;
    vial_rqs(rs->rq)->built = 1;
    return 0;
}

int vial_res_add_header(vial_res *rs, const char *name, const char *value)
{
    if (!name || !value || !*name)
        return -EINVAL;
    size_t vl = strcspn(value, "\r\n"); /* one pass: length and injection check */
    if (value[vl])
        return -EINVAL; /* header injection is never what the caller meant */
    if (!vial_ascii_casecmp(name, "Content-Type")) {
        rs->content_type = vial_arena_strndup(res_arena(rs), value, vl);
        return rs->content_type ? 0 : -ENOMEM;
    }
    if (name[strcspn(name, "\r\n:")])
        return -EINVAL;
    if (rs->nheaders == rs->headers_cap) {
        uint32_t cap = rs->headers_cap * 2;
        vial_res_header_t *h = vial_arena_alloc(res_arena(rs), cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        memcpy(h, rs->headers, rs->nheaders * sizeof *h);
        rs->headers = h;
        rs->headers_cap = cap;
    }
    size_t nl = strlen(name);
    vial_res_header_t *h = &rs->headers[rs->nheaders];
    h->name = vial_arena_strndup(res_arena(rs), name, nl);
    h->value = vial_arena_strndup(res_arena(rs), value, vl);
    if (!h->name || !h->value)
        return -ENOMEM;
    h->name_len = (uint32_t)nl;
    h->value_len = (uint32_t)vl;
    rs->nheaders++;
    return 0;
}

int vial_res_set_header(vial_res *rs, const char *name, const char *value)
{
    if (!vial_ascii_casecmp(name, "Content-Type"))
        return vial_res_add_header(rs, name, value);
    uint32_t o = 0;
    for (uint32_t i = 0; i < rs->nheaders; i++)
        if (vial_ascii_casecmp(rs->headers[i].name, name))
            rs->headers[o++] = rs->headers[i];
    rs->nheaders = o;
    return vial_res_add_header(rs, name, value);
}

const char *vial_res_get_header(vial_res *rs, const char *name)
{
    if (!vial_ascii_casecmp(name, "Content-Type"))
        return rs->content_type;
    for (uint32_t i = 0; i < rs->nheaders; i++)
        if (!vial_ascii_casecmp(rs->headers[i].name, name))
            return rs->headers[i].value;
    return NULL;
}

int vial_res_get_status(vial_res *rs)
{
    return rs->status;
}

void vial_res_drop_file(vial_res *rs)
{
    if (rs->file_fd >= 0) {
        close(rs->file_fd);
        rs->file_fd = -1;
    }
}

int vial_res_set_body_static(vial_res *rs, const void *data, size_t len)
{
    vial_res_drop_file(rs); /* a body replaces a file body */
    vial_rqs(rs->rq)->built = 1;
    rs->body = (char *)data;
    rs->body_len = len;
    rs->body_cap = 0;
    return 0;
}

static int body_reserve(vial_res *rs, size_t extra)
{
    if (rs->body_cap && rs->body_cap - rs->body_len >= extra)
        return 0;
    size_t need = rs->body_len + extra;
    size_t cap = rs->body_cap ? rs->body_cap * 2 : 256;
    while (cap < need)
        cap *= 2;
    char *nb = vial_arena_grow(res_arena(rs), rs->body_cap ? rs->body : NULL,
                               rs->body_cap ? rs->body_len : 0, cap);
    if (!nb)
        return -ENOMEM;
    if (!rs->body_cap && rs->body_len)
        memcpy(nb, rs->body, rs->body_len); /* was static */
    rs->body = nb;
    rs->body_cap = cap;
    return 0;
}

int vial_res_append_body(vial_res *rs, const void *data, size_t len)
{
    vial_res_drop_file(rs); /* a body replaces a file body */
    vial_rqs(rs->rq)->built = 1;
    if (body_reserve(rs, len) < 0)
        return -ENOMEM;
    memcpy(rs->body + rs->body_len, data, len);
    rs->body_len += len;
    return 0;
}

int vial_res_set_body(vial_res *rs, const void *data, size_t len)
{
    rs->body_len = 0;
    if (rs->body_cap == 0)
        rs->body = NULL;
    return vial_res_append_body(rs, data, len);
}

static int res_vprintf(vial_res *rs, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vial_vsnprintf(small, sizeof small, fmt, ap);
    int r = 0;
    if (n < 0)
        r = -EINVAL;
    else if ((size_t)n < sizeof small)
        r = vial_res_append_body(rs, small, (size_t)n);
    else if ((r = body_reserve(rs, (size_t)n + 1)) == 0) {
        vial_vsnprintf(rs->body + rs->body_len, (size_t)n + 1, fmt, ap2);
        rs->body_len += (size_t)n;
    }
    va_end(ap2);
    return r;
}

int vial_text(vial_res *rs, int status, const char *fmt, ...)
{
    vial_res_drop_file(rs); /* a body replaces a file body */
    vial_rqs(rs->rq)->built = 1;
    rs->status = status;
    rs->content_type = "text/plain; charset=utf-8";
    rs->body_len = 0;
    va_list ap;
    va_start(ap, fmt);
    int r = res_vprintf(rs, fmt, ap);
    va_end(ap);
    return r;
}

int vial_abort(vial_res *rs, int status)
{
    if (status < 100 || status > 999)
        status = 500; /* VIAL_EHTTP must stay a status */
    rs->status = status;
    vial_rqs(rs->rq)->aborted = status; /* kept apart: a later vial_text must not change it */
    vial_rqs(rs->rq)->failed = 0; /* the latest of abort and fail stands */
    vial_rqs(rs->rq)->error_message = NULL;
    return VIAL_EHTTP(status);
}

int vial_fail(vial_res *rs, const char *message)
{
    const char *copy = message ? vial_arena_strndup(res_arena(rs), message, strlen(message)) : NULL;
    vial_rqs(rs->rq)->error_message = copy ? copy : message ? "out of memory" : "error";
    vial_rqs(rs->rq)->failed = 1;
    vial_rqs(rs->rq)->aborted = 0;
    return VIAL_FAILED;
}

int vial_res_helper_error(vial_res *rs, int status, const char *message)
{
    vial_rqs(rs->rq)->helper_code = VIAL_EHTTP(status);
    vial_rqs(rs->rq)->helper_msg = message;
    return vial_rqs(rs->rq)->helper_code;
}

/* --- streaming ------------------------------------------------------------- */

int vial_stream_begin(vial_res *rs, int status, const char *content_type)
{
    vial_req *rq = rs->rq;
    if (rq->is_sync || !vial_coro_current())
        return -EPERM;
    if (rs->streaming)
        return -EALREADY;
    vial_rqs(rs->rq)->built = 1;
    rs->status = status;
    if (content_type)
        rs->content_type = content_type;
    rs->body_len = 0;
    /* Flask runs after_request on the response object before its body is
     * iterated: here, before the head goes out. */
    if (vial_rqs(rq)->finalize)
        vial_rqs(rq)->finalize(rq);
    if (!rq->sink_begin)
        return -EPERM;
    int r = vial_compress_stream_begin(rs);
    return r < 0 ? r : rq->sink_begin(rq);
}

int vial_stream_write(vial_res *rs, const void *data, size_t len)
{
    if (!rs->streaming)
        return -EINVAL;
    vial_coro *c = vial_coro_current();
    if (c && c->cancelled)
        return -ECANCELED;
    if (vial_rqs(rs->rq) && vial_rqs(rs->rq)->zstream)
        return vial_compress_stream_write(rs, data, len); /* counts what it sends */
    int r = rs->rq->sink_write(rs->rq, data, len);
    if (r == 0 && vial_rqs(rs->rq) && !rs->rq->is_head)
        vial_rqs(rs->rq)->streamed += len;
    return r;
}

int vial_stream_printf(vial_res *rs, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vial_vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof small)
        return vial_stream_write(rs, small, (size_t)n);
    char *big = vial_alloc(rs->rq, (size_t)n + 1);
    if (!big)
        return -ENOMEM;
    va_start(ap, fmt);
    vial_vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return vial_stream_write(rs, big, (size_t)n);
}
