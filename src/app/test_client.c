/* The in-process test client (Flask's app.test_client()).
 *
 * It runs each request through the real request path minus the socket: the
 * request head is written as HTTP bytes and parsed by the server's parser,
 * the app's dispatch runs on a coroutine of the client's own loop (so async
 * views really await their timers), sync functions go to the client's own
 * worker pool, and streamed bodies are collected. Cookies the app sets are
 * kept in a jar and sent back, so sessions work across requests. */
#include "app/app.h"
#include "runtime/ascii.h"
#include "http/server.h"
#include "runtime/coro.h"
#include "runtime/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct kv {
    char *name, *value;
} kv;

struct vial_test_client {
    vial_app *app;
    vial_loop loop;
    vial_pool *pool;
    kv *jar;
    unsigned njar;
};

struct vial_test_response {
    int status;
    kv *headers;
    unsigned nheaders;
    char *body;
    size_t body_len, body_cap;
};

vial_test_client *vial_test_client_new(vial_app *app)
{
    vial_test_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->app = app;
    if (vial_loop_init(&c->loop, 0) < 0) {
        free(c);
        return NULL;
    }
    c->loop.coro_pool = vial_coro_pool_new(128 * 1024, 8);
    c->pool = vial_pool_new(4, 256);
    if (!c->loop.coro_pool || !c->pool) {
        vial_test_client_free(c);
        return NULL;
    }
    return c;
}

static void jar_clear(vial_test_client *c)
{
    for (unsigned i = 0; i < c->njar; i++) {
        free(c->jar[i].name);
        free(c->jar[i].value);
    }
    free(c->jar);
    c->jar = NULL;
    c->njar = 0;
}

void vial_test_client_free(vial_test_client *c)
{
    if (!c)
        return;
    jar_clear(c);
    vial_pool_free(c->pool);
    vial_coro_pool_free(c->loop.coro_pool);
    vial_loop_fini(&c->loop);
    free(c);
}

/* --- response building ----------------------------------------------------------- */

static int body_append(vial_test_response *r, const void *data, size_t len)
{
    if (r->body_cap - r->body_len < len + 1) {
        size_t cap = r->body_cap ? r->body_cap : 256;
        while (cap - r->body_len < len + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return -ENOMEM;
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = 0;
    return 0;
}

static int header_add(vial_test_response *r, const char *name, const char *value)
{
    kv *h = realloc(r->headers, (r->nheaders + 1) * sizeof *h);
    if (!h)
        return -ENOMEM;
    r->headers = h;
    h[r->nheaders].name = strdup(name);
    h[r->nheaders].value = strdup(value);
    if (!h[r->nheaders].name || !h[r->nheaders].value) {
        free(h[r->nheaders].name);
        free(h[r->nheaders].value);
        return -ENOMEM;
    }
    r->nheaders++;
    return 0;
}

struct run {
    vial_test_client *client;
    vial_req *rq;
    vial_test_response *resp;
    int done;
};

static int sink_begin(vial_req *rq)
{
    rq->res.streaming = 1;
    return 0;
}

static int sink_write(vial_req *rq, const void *data, size_t len)
{
    struct run *run = rq->sink_data;
    return rq->is_head ? 0 : body_append(run->resp, data, len);
}

static void run_request(void *arg)
{
    struct run *run = arg;
    vial_app_serve(run->client->app, run->rq);
    run->done = 1;
    vial_loop_stop(&run->client->loop); /* wake the driver now, not at its next poll timeout */
}

/* Remembers Set-Cookie values: "name=value; attrs". Max-Age=0 or an
 * Expires in 1970 deletes. */
static void jar_update(vial_test_client *c, const char *set_cookie)
{
    const char *eq = strchr(set_cookie, '=');
    if (!eq)
        return;
    const char *semi = strchr(eq, ';');
    size_t nlen = (size_t)(eq - set_cookie);
    size_t vlen = semi ? (size_t)(semi - eq - 1) : strlen(eq + 1);
    int expired = strstr(set_cookie, "Max-Age=0") || strstr(set_cookie, "01 Jan 1970");
    for (unsigned i = 0; i < c->njar; i++) {
        if (strlen(c->jar[i].name) == nlen && !memcmp(c->jar[i].name, set_cookie, nlen)) {
            free(c->jar[i].name);
            free(c->jar[i].value);
            c->jar[i] = c->jar[--c->njar];
            break;
        }
    }
    if (expired)
        return;
    kv *j = realloc(c->jar, (c->njar + 1) * sizeof *j);
    if (!j)
        return;
    c->jar = j;
    j[c->njar].name = strndup(set_cookie, nlen);
    j[c->njar].value = strndup(eq + 1, vlen);
    if (j[c->njar].name && j[c->njar].value)
        c->njar++;
}

static void collect(vial_test_client *c, vial_req *rq, vial_test_response *r)
{
    vial_res *rs = &rq->res;
    r->status = rs->status;
    if (rs->content_type)
        header_add(r, "Content-Type", rs->content_type);
    for (uint32_t i = 0; i < rs->nheaders; i++) {
        header_add(r, rs->headers[i].name, rs->headers[i].value);
        if (!vial_ascii_casecmp(rs->headers[i].name, "Set-Cookie"))
            jar_update(c, rs->headers[i].value);
    }
    if (rs->streaming) {
        header_add(r, "Transfer-Encoding", "chunked");
        return;
    }
    int no_body = rs->status < 200 || rs->status == 204 || rs->status == 304;
    if (!no_body) {
        char len[24];
        snprintf(len, sizeof len, "%zu", rs->status == 205 ? 0 : rs->body_len);
        header_add(r, "Content-Length", len);
    }
    if (rq->is_head || no_body || rs->status == 205 || !rs->body_len)
        return;
    if (rs->file_fd >= 0) {
        char buf[16384];
        size_t left = rs->body_len;
        off_t off = (off_t)rs->file_off;
        while (left) {
            ssize_t n = pread(rs->file_fd, buf, left < sizeof buf ? left : sizeof buf, off);
            if (n <= 0)
                break;
            body_append(r, buf, (size_t)n);
            left -= (size_t)n;
            off += n;
        }
        return;
    }
    body_append(r, rs->body, rs->body_len);
}

/* A response for a request the HTTP layer itself rejects. */
static vial_test_response *rejected(vial_test_response *r, int status)
{
    r->status = status;
    const char *reason = vial_status_reason(status);
    header_add(r, "Content-Type", "text/plain; charset=utf-8");
    header_add(r, "Connection", "close");
    body_append(r, reason, strlen(reason));
    return r;
}

vial_test_response *vial_test_client_request(vial_test_client *c, const char *method, const char *target,
                                   const char *const *headers, const void *body, size_t len)
{
    vial_test_response *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    body_append(r, "", 0);
    /* The request head as bytes, so the real parser validates it. */
    size_t cap = strlen(method) + strlen(target) + 256;
    int has_host = 0, has_cookie = 0;
    for (const char *const *h = headers; h && *h; h++) {
        cap += strlen(*h) + 2;
        has_host |= !vial_ascii_ncasecmp(*h, "Host:", 5);
        has_cookie |= !vial_ascii_ncasecmp(*h, "Cookie:", 7);
    }
    for (unsigned i = 0; i < c->njar; i++)
        cap += strlen(c->jar[i].name) + strlen(c->jar[i].value) + 2;
    char *raw = malloc(cap);
    if (!raw) {
        vial_test_response_free(r);
        return NULL;
    }
    size_t n = (size_t)snprintf(raw, cap, "%s %s HTTP/1.1\r\n", method, target);
    if (!has_host)
        n += (size_t)snprintf(raw + n, cap - n, "Host: localhost\r\n");
    for (const char *const *h = headers; h && *h; h++)
        n += (size_t)snprintf(raw + n, cap - n, "%s\r\n", *h);
    if (c->njar && !has_cookie) {
        n += (size_t)snprintf(raw + n, cap - n, "Cookie: ");
        for (unsigned i = 0; i < c->njar; i++)
            n += (size_t)snprintf(raw + n, cap - n, "%s%s=%s", i ? "; " : "", c->jar[i].name, c->jar[i].value);
        n += (size_t)snprintf(raw + n, cap - n, "\r\n");
    }
    if (len || body)
        n += (size_t)snprintf(raw + n, cap - n, "Content-Length: %zu\r\n", len);
    n += (size_t)snprintf(raw + n, cap - n, "\r\n");

    vial_req *rq = calloc(1, sizeof *rq);
    if (!rq) {
        free(raw);
        vial_test_response_free(r);
        return NULL;
    }
    int status = 0;
    int hl = vial_http_parse_request(raw, n, &rq->head, &status);
    if (hl <= 0 || (size_t)hl != n) {
        free(rq);
        free(raw);
        return rejected(r, status ? status : 400);
    }
    if (len > VIAL_HTTP_MAX_BODY) {
        free(rq);
        free(raw);
        return rejected(r, 413);
    }
    vial_exchange_init(rq, NULL, NULL);
    rq->body = body ? body : "";
    rq->body_len = len;
    rq->pool = c->pool;
    rq->sink_begin = sink_begin;
    rq->sink_write = sink_write;
    struct run run = {c, rq, r, 0};
    rq->sink_data = &run;

    vial_coro *co = vial_coro_new(&c->loop, run_request, &run);
    if (!co) {
        vial_exchange_fini(rq);
        free(rq);
        free(raw);
        vial_test_response_free(r);
        return NULL;
    }
    c->loop.stopping = 0;
    /* The loop sat idle since the last request (the test may have slept):
     * timers this request arms must count from now, not from then. */
    c->loop.now = vial_clock_ns();
    vial_coro_resume(co);
    while (!run.done)
        vial_loop_run_once(&c->loop, 100);
    c->loop.stopping = 0;
    collect(c, rq, r);
    vial_exchange_fini(rq);
    free(rq);
    free(raw);
    return r;
}

vial_test_response *vial_test_client_get(vial_test_client *c, const char *target)
{
    return vial_test_client_request(c, "GET", target, NULL, NULL, 0);
}

int vial_test_response_status(const vial_test_response *r)
{
    return r->status;
}

const char *vial_test_response_header(const vial_test_response *r, const char *name)
{
    return vial_test_response_header_nth(r, name, 0);
}

unsigned vial_test_response_header_count(const vial_test_response *r, const char *name)
{
    unsigned n = 0;
    for (unsigned i = 0; i < r->nheaders; i++)
        n += !vial_ascii_casecmp(r->headers[i].name, name);
    return n;
}

const char *vial_test_response_header_nth(const vial_test_response *r, const char *name, unsigned nth)
{
    for (unsigned i = 0; i < r->nheaders; i++)
        if (!vial_ascii_casecmp(r->headers[i].name, name) && nth-- == 0)
            return r->headers[i].value;
    return NULL;
}

const char *vial_test_response_body(const vial_test_response *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body ? r->body : "";
}

void vial_test_response_free(vial_test_response *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    free(r);
}
