/* The outbound HTTP client (src/clients/http.c) against a tiny HTTP/1.1
 * server started inside this test on 127.0.0.1 (a thread per connection,
 * keep-alive, Content-Length bodies). Views that fetch run through the
 * in-process test client, so they are real coroutines on a vial loop with
 * curl's multi driven by it. No external network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>
#include <vial/http_client.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* --- the test server ----------------------------------------------------------------- */

static struct {
    int lfd;
    int port;
    int stop_pipe[2];
    pthread_t tid;
    atomic_int stopping;
    atomic_int active;      /* connection threads alive */
    atomic_int accepted;    /* connections accepted */
    atomic_int disconnects; /* clients that left while /sleep was waiting */
    atomic_int sleeping;    /* /sleep handlers waiting now */
} srv;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int respond(int fd, int status, const char *extra, const void *body, size_t len)
{
    char head[1024];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status,
                     len, extra ? extra : "");
    if (write_all(fd, head, (size_t)n) < 0)
        return -1;
    return len ? write_all(fd, body, len) : 0;
}

/* The value of header `name` in head (case-insensitive), copied into out. */
static const char *find_header(const char *head, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, name, n) && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t l = strcspn(v, "\r\n");
            if (l >= cap)
                l = cap - 1;
            memcpy(out, v, l);
            out[l] = 0;
            return out;
        }
    }
    return NULL;
}

/* Waits ms while watching the client: returns -1 as soon as it hangs up. */
static int wait_watching(int fd, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        uint64_t t = now_ms();
        if (t >= end)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
        int r = poll(&p, 1, (int)(end - t));
        if (r > 0) {
            char c;
            if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) ||
                recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
                return -1;
            /* pipelined bytes: not ours to read now */
            usleep(1000);
        }
    }
}

static void serve_one(int fd, const char *method, const char *target, const char *head,
                      const char *body, size_t blen)
{
    char v1[256], v2[256], extra[1024];
    if (!strcmp(target, "/hello")) {
        respond(fd, 200, "Content-Type: text/plain\r\nX-Test: yes\r\nX-Multi: a\r\n", "hello world", 11);
    } else if (!strcmp(target, "/echo")) {
        snprintf(extra, sizeof extra, "X-Method: %s\r\nX-Content-Type: %s\r\nX-Custom: %s\r\nX-Expect: %s\r\n",
                 method, find_header(head, "Content-Type", v1, sizeof v1) ? v1 : "-",
                 find_header(head, "X-Custom", v2, sizeof v2) ? v2 : "-",
                 strcasestr(head, "\r\nExpect:") ? "yes" : "no");
        respond(fd, 200, extra, body, blen);
    } else if (!strncmp(target, "/sleep?ms=", 10)) {
        atomic_fetch_add(&srv.sleeping, 1);
        int r = wait_watching(fd, atoi(target + 10));
        atomic_fetch_sub(&srv.sleeping, 1);
        if (r < 0) {
            atomic_fetch_add(&srv.disconnects, 1);
            shutdown(fd, SHUT_RDWR);
            return;
        }
        respond(fd, 200, "Content-Type: text/plain\r\n", "slept", 5);
    } else if (!strncmp(target, "/big?n=", 7)) {
        size_t n = (size_t)atol(target + 7);
        char *b = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++)
            b[i] = (char)('a' + i % 26);
        respond(fd, 200, NULL, b, n);
        free(b);
    } else if (!strcmp(target, "/drip")) {
        /* 10 pieces of 1000 bytes, 5 ms apart: many small edges */
        char head2[128], piece[1000];
        int n = snprintf(head2, sizeof head2, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n");
        write_all(fd, head2, (size_t)n);
        for (int i = 0; i < 10; i++) {
            memset(piece, '0' + i, sizeof piece);
            if (write_all(fd, piece, sizeof piece) < 0)
                return;
            usleep(5000);
        }
    } else if (!strcmp(target, "/redirect")) {
        respond(fd, 302, "Location: /hello\r\n", "moved", 5);
    } else {
        respond(fd, 404, "Content-Type: text/plain\r\n", "not found", 9);
    }
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(1 << 16);
    size_t have = 0;
    while (!atomic_load(&srv.stopping)) {
        char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
        if (!end) {
            if (have == (1 << 16))
                break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 100) <= 0)
                continue;
            ssize_t r = recv(fd, buf + have, (1 << 16) - have, 0);
            if (r <= 0)
                break;
            have += (size_t)r;
            continue;
        }
        size_t hlen = (size_t)(end - buf) + 4;
        char head[8192];
        size_t cp = hlen < sizeof head ? hlen : sizeof head - 1;
        memcpy(head, buf, cp);
        head[cp] = 0;
        char v[32];
        size_t blen = find_header(head, "Content-Length", v, sizeof v) ? (size_t)atol(v) : 0;
        while (have < hlen + blen && have < (1 << 16)) {
            ssize_t r = recv(fd, buf + have, (1 << 16) - have, 0);
            if (r <= 0)
                goto out;
            have += (size_t)r;
        }
        char method[16], target[1024];
        if (sscanf(head, "%15s %1023s", method, target) != 2)
            break;
        serve_one(fd, method, target, head, buf + hlen, blen);
        memmove(buf, buf + hlen + blen, have - hlen - blen);
        have -= hlen + blen;
    }
out:
    free(buf);
    close(fd);
    atomic_fetch_sub(&srv.active, 1);
    return NULL;
}

static void *accept_main(void *arg)
{
    while (!atomic_load(&srv.stopping)) {
        struct pollfd p[2] = {{.fd = srv.lfd, .events = POLLIN}, {.fd = srv.stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || p[1].revents)
            break;
        int fd = accept(srv.lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&srv.accepted, 1);
        atomic_fetch_add(&srv.active, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) != 0) {
            close(fd);
            atomic_fetch_sub(&srv.active, 1);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static int server_start(void)
{
    srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(srv.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(srv.lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(srv.lfd, 256) < 0 ||
        getsockname(srv.lfd, (struct sockaddr *)&a, &al) < 0 || pipe(srv.stop_pipe) < 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.tid, NULL, accept_main, NULL) == 0 ? 0 : -1;
}

static void server_stop(void)
{
    atomic_store(&srv.stopping, 1);
    (void)!write(srv.stop_pipe[1], "x", 1);
    pthread_join(srv.tid, NULL);
    close(srv.lfd);
    close(srv.stop_pipe[0]);
    close(srv.stop_pipe[1]);
    /* connection threads notice `stopping` within 100 ms */
    for (int i = 0; i < 300 && atomic_load(&srv.active) > 0; i++)
        usleep(10000);
}

/* --- views that fetch ---------------------------------------------------------------- */

static char base[64];

static const char *url(vial_req *rq, const char *path)
{
    return vial_sprintf(rq, "%s%s", base, path);
}

static int show(vial_req *rq, vial_res *rs, int rc, vial_http_response *r)
{
    if (rc < 0)
        return vial_text(rs, 200, "rc=%d err=%s", rc, vial_http_error(rq));
    size_t len;
    const char *body = vial_http_body(r, &len);
    return vial_text(rs, 200, "status=%d len=%zu body=%.*s", vial_http_status(r), len,
                     (int)(len > 64 ? 64 : len), body);
}

static int v_get(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int rc = vial_http_get(rq, url(rq, "/hello"), NULL, &r);
    if (rc < 0)
        return show(rq, rs, rc, r);
    const char *n0 = NULL, *v0 = NULL;
    vial_http_header_at(r, 0, &n0, &v0);
    return vial_text(rs, 200, "status=%d x-test=%s ct=%s missing=%s n=%u body=%s",
                     vial_http_status(r), vial_http_header(r, "x-TEST"),
                     vial_http_header(r, "content-type"),
                     vial_http_header(r, "X-None") ? "no" : "yes", vial_http_header_count(r),
                     vial_http_body(r, NULL));
}

static int v_post_json(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int rc = vial_http_post_json(rq, url(rq, "/echo"), "{\"a\":1,\"b\":[true,null]}", NULL, &r);
    if (rc < 0)
        return show(rq, rs, rc, r);
    return vial_text(rs, 200, "%s|%s|%s|%s", vial_http_header(r, "X-Method"),
                     vial_http_header(r, "X-Content-Type"), vial_http_header(r, "X-Expect"),
                     vial_http_body(r, NULL));
}

static int v_put_headers(vial_req *rq, vial_res *rs)
{
    static const char *const hdrs[] = {"X-Custom: forty-two", "Content-Type: text/csv", NULL};
    vial_http_response *r;
    int rc = vial_http_request(rq, "PUT", url(rq, "/echo"), hdrs, "a,b\n1,2\n", 8, NULL, &r);
    if (rc < 0)
        return show(rq, rs, rc, r);
    return vial_text(rs, 200, "%s|%s|%s|%s", vial_http_header(r, "X-Method"),
                     vial_http_header(r, "X-Content-Type"), vial_http_header(r, "X-Custom"),
                     vial_http_body(r, NULL));
}

static int v_404(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int rc = vial_http_get(rq, url(rq, "/nope"), NULL, &r);
    return show(rq, rs, rc, r);
}

static int v_opts_timeout(vial_req *rq, vial_res *rs)
{
    vial_http_options o = {.timeout_ms = 200};
    vial_http_response *r;
    uint64_t t0 = vial_now_ms();
    int rc = vial_http_get(rq, url(rq, "/sleep?ms=3000"), &o, &r);
    return vial_text(rs, 200, "rc=%d ms=%llu err=%s", rc, (unsigned long long)(vial_now_ms() - t0),
                     vial_http_error(rq));
}

static int v_vial_timeout(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    vial_timeout t;
    uint64_t t0 = vial_now_ms();
    vial_timeout_begin(rq, &t, 200);
    int rc = vial_http_get(rq, url(rq, "/sleep?ms=3000"), NULL, &r);
    vial_timeout_end(rq, &t);
    uint64_t ms = vial_now_ms() - t0;
    /* after the scope the deadline is gone: a normal fetch works again */
    vial_http_response *r2;
    int rc2 = vial_http_get(rq, url(rq, "/hello"), NULL, &r2);
    return vial_text(rs, 200, "rc=%d ms=%llu after=%d/%d err=%s", rc, (unsigned long long)ms, rc2,
                     rc2 == 0 ? vial_http_status(r2) : 0, vial_http_error(rq));
}

static int v_deadline(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    vial_set_deadline(rq, 150);
    uint64_t t0 = vial_now_ms();
    int rc = vial_http_get(rq, url(rq, "/sleep?ms=3000"), NULL, &r);
    return vial_text(rs, 200, "rc=%d ms=%llu", rc, (unsigned long long)(vial_now_ms() - t0));
}

static unsigned long long gather_ms;

static int v_gather(vial_req *rq, vial_res *rs)
{
    enum { N = 20 };
    vial_task *t[N];
    vial_http_response *r[N];
    uint64_t t0 = vial_now_ms();
    for (int i = 0; i < N; i++)
        t[i] = vial_http_spawn(rq, "GET", url(rq, "/sleep?ms=100"), NULL, NULL, 0, NULL, &r[i]);
    int rc = vial_gather(rq, t, N, 0);
    gather_ms = vial_now_ms() - t0;
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += r[i] && vial_http_status(r[i]) == 200 && !strcmp(vial_http_body(r[i], NULL), "slept");
    return vial_text(rs, 200, "rc=%d ok=%d ms=%llu", rc, ok, gather_ms);
}

static int fetch_slow(vial_req *rq, void *arg)
{
    vial_http_response **r = arg;
    return vial_http_get(rq, url(rq, "/sleep?ms=5000"), NULL, r);
}

static int v_cancel(vial_req *rq, vial_res *rs)
{
    vial_http_response *r = NULL;
    uint64_t t0 = vial_now_ms();
    vial_task *t = vial_spawn(rq, fetch_slow, &r);
    vial_sleep(rq, 150); /* the transfer is in flight, the server waits */
    vial_task_cancel(t);
    int rc = vial_join(rq, t);
    return vial_text(rs, 200, "rc=%d ms=%llu null=%d", rc, (unsigned long long)(vial_now_ms() - t0),
                     r == NULL);
}

static int refused_port;

static int v_refused(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int rc = vial_http_get(rq, vial_sprintf(rq, "http://127.0.0.1:%d/", refused_port), NULL, &r);
    return vial_text(rs, 200, "rc=%d err=%s", rc, vial_http_error(rq));
}

static int v_bad_scheme(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int rc = vial_http_get(rq, "file:///etc/passwd", NULL, &r);
    int rc2 = vial_http_get(rq, "http://[::1", NULL, &r);
    return vial_text(rs, 200, "rc=%d rc2=%d", rc, rc2);
}

static int v_sync(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int rc = vial_http_get(rq, url(rq, "/hello"), NULL, &r);
    if (rc < 0)
        return show(rq, rs, rc, r);
    /* the same thread's easy handle again: keep-alive */
    int rc2 = vial_http_post_json(rq, url(rq, "/echo"), "[1]", NULL, &r);
    return vial_text(rs, 200, "sync rc2=%d status=%d body=%s", rc2, vial_http_status(r),
                     vial_http_body(r, NULL));
}

static int v_sync_timeout(vial_req *rq, vial_res *rs)
{
    vial_http_options o = {.timeout_ms = 150};
    vial_http_response *r;
    int rc = vial_http_get(rq, url(rq, "/sleep?ms=3000"), &o, &r);
    return vial_text(rs, 200, "rc=%d", rc);
}

static int v_big(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    const size_t n = 8u << 20;
    int rc = vial_http_get(rq, url(rq, vial_sprintf(rq, "/big?n=%zu", n)), NULL, &r);
    if (rc < 0)
        return show(rq, rs, rc, r);
    size_t len;
    const char *b = vial_http_body(r, &len);
    size_t bad = 0;
    for (size_t i = 0; i < len; i++)
        bad += b[i] != (char)('a' + i % 26);
    vial_http_options small = {.max_body = 1000};
    int rc2 = vial_http_get(rq, url(rq, "/big?n=5000"), &small, &r);
    return vial_text(rs, 200, "len=%zu bad=%zu small=%d err=%s", len, bad, rc2, vial_http_error(rq));
}

static int v_drip(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int rc = vial_http_get(rq, url(rq, "/drip"), NULL, &r);
    if (rc < 0)
        return show(rq, rs, rc, r);
    size_t len;
    const char *b = vial_http_body(r, &len);
    return vial_text(rs, 200, "len=%zu first=%c last=%c", len, b[0], b[len - 1]);
}

static int v_redirect(vial_req *rq, vial_res *rs)
{
    vial_http_response *r1, *r2;
    int rc1 = vial_http_get(rq, url(rq, "/redirect"), NULL, &r1);
    vial_http_options o = {.max_redirects = 3};
    int rc2 = vial_http_get(rq, url(rq, "/redirect"), &o, &r2);
    if (rc1 < 0 || rc2 < 0)
        return vial_text(rs, 200, "rc=%d/%d", rc1, rc2);
    const char *u = vial_http_url(r2);
    return vial_text(rs, 200, "%d %s|%d %s|%s", vial_http_status(r1), vial_http_header(r1, "Location"),
                     vial_http_status(r2), vial_http_body(r2, NULL),
                     strstr(u, "/hello") ? "url-ok" : u);
}

static int v_keepalive(vial_req *rq, vial_res *rs)
{
    vial_http_response *r;
    int bad = 0;
    for (int i = 0; i < 5; i++)
        bad += vial_http_get(rq, url(rq, "/hello"), NULL, &r) != 0 || vial_http_status(r) != 200;
    return vial_text(rs, 200, "bad=%d", bad);
}

/* --- tests --------------------------------------------------------------------------- */

static vial_app *app;
static vial_test_client *client;

static const char *get_body(const char *path)
{
    static char out[4096];
    vial_test_response *r = vial_test_client_get(client, path);
    assert_non_null(r);
    assert_int_equal(vial_test_response_status(r), 200);
    snprintf(out, sizeof out, "%s", vial_test_response_body(r, NULL));
    vial_test_response_free(r);
    return out;
}

static void test_get(void **state)
{
    const char *b = get_body("/get");
    assert_string_equal(b, "status=200 x-test=yes ct=text/plain missing=yes n=4 body=hello world");
}

static void test_post_json(void **state)
{
    assert_string_equal(get_body("/post_json"), "POST|application/json|no|{\"a\":1,\"b\":[true,null]}");
}

static void test_put_with_headers(void **state)
{
    assert_string_equal(get_body("/put"), "PUT|text/csv|forty-two|a,b\n1,2\n");
}

static void test_404_passthrough(void **state)
{
    assert_string_equal(get_body("/404"), "status=404 len=9 body=not found");
}

static void test_timeout_opts(void **state)
{
    const char *b = get_body("/opts_timeout");
    int rc = 0;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d ms=%llu", &rc, &ms), 2);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(ms >= 150 && ms < 1500);
    assert_non_null(strstr(b, "timed out"));
}

static void test_vial_timeout(void **state)
{
    const char *b = get_body("/vial_timeout");
    int rc = 0, rc2 = -1, st = 0;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d ms=%llu after=%d/%d", &rc, &ms, &rc2, &st), 4);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(ms >= 150 && ms < 1000);
    assert_int_equal(rc2, 0);
    assert_int_equal(st, 200);
    assert_non_null(strstr(b, "deadline"));
}

static void test_request_deadline(void **state)
{
    const char *b = get_body("/deadline");
    int rc = 0;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d ms=%llu", &rc, &ms), 2);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(ms < 1000);
}

static void test_gather_20(void **state)
{
    const char *b = get_body("/gather");
    int rc = -1, ok = 0;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d ok=%d ms=%llu", &rc, &ok, &ms), 3);
    assert_int_equal(rc, 0);
    assert_int_equal(ok, 20);
    print_message("gather of 20 fetches of a 100 ms endpoint: %llu ms\n", ms);
    assert_true(ms >= 100 && ms < 1000);
}

static void test_cancel_aborts_transfer(void **state)
{
    int before = atomic_load(&srv.disconnects);
    const char *b = get_body("/cancel");
    int rc = 0, isnull = 0;
    unsigned long long ms = 0;
    assert_int_equal(sscanf(b, "rc=%d ms=%llu null=%d", &rc, &ms, &isnull), 3);
    assert_int_equal(rc, -ECANCELED);
    assert_true(ms < 1000);
    assert_int_equal(isnull, 1);
    /* the server's /sleep notices the closed connection */
    uint64_t t0 = now_ms();
    while (atomic_load(&srv.disconnects) == before && now_ms() - t0 < 2000)
        usleep(5000);
    assert_int_equal(atomic_load(&srv.disconnects), before + 1);
    print_message("server saw the disconnect %llu ms after the cancelled view returned\n",
                  (unsigned long long)(now_ms() - t0));
}

static void test_connection_refused(void **state)
{
    const char *b = get_body("/refused");
    int rc = 0;
    assert_int_equal(sscanf(b, "rc=%d", &rc), 1);
    assert_int_equal(rc, -ECONNREFUSED);
    assert_non_null(strstr(b, "connection refused"));
    assert_non_null(strstr(b, "127.0.0.1"));
}

static void test_bad_url(void **state)
{
    const char *b = get_body("/bad_scheme");
    int rc = 0, rc2 = 0;
    assert_int_equal(sscanf(b, "rc=%d rc2=%d", &rc, &rc2), 2);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(rc2, -EINVAL);
}

static void test_sync_view(void **state)
{
    assert_string_equal(get_body("/sync"), "sync rc2=0 status=200 body=[1]");
    const char *b = get_body("/sync_timeout");
    assert_string_equal(b, "rc=-110");
}

static void test_big_body_and_limit(void **state)
{
    const char *b = get_body("/big");
    size_t len = 0, bad = 1;
    int small = 0;
    assert_int_equal(sscanf(b, "len=%zu bad=%zu small=%d", &len, &bad, &small), 3);
    assert_int_equal(len, 8u << 20);
    assert_int_equal(bad, 0);
    assert_int_equal(small, -EFBIG);
}

static void test_drip(void **state)
{
    assert_string_equal(get_body("/drip"), "len=10000 first=0 last=9");
}

static void test_redirects(void **state)
{
    assert_string_equal(get_body("/redirect"), "302 /hello|200 hello world|url-ok");
}

static void test_keepalive(void **state)
{
    get_body("/keepalive"); /* warm: the multi now caches a connection */
    int before = atomic_load(&srv.accepted);
    assert_string_equal(get_body("/keepalive"), "bad=0");
    assert_int_equal(atomic_load(&srv.accepted), before); /* all 5 reused it */
}

static int refused_fd = -1;

static int setup(void **state)
{
    if (server_start() < 0)
        return -1;
    snprintf(base, sizeof base, "http://127.0.0.1:%d", srv.port);
    /* A bound socket that does not listen: connecting to it is refused, and
     * holding it keeps the port from being reused meanwhile. */
    refused_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(refused_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(refused_fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    refused_port = ntohs(a.sin_port);

    app = vial_app_new();
    vial_route(app, "GET /get", v_get);
    vial_route(app, "GET /post_json", v_post_json);
    vial_route(app, "GET /put", v_put_headers);
    vial_route(app, "GET /404", v_404);
    vial_route(app, "GET /opts_timeout", v_opts_timeout);
    vial_route(app, "GET /vial_timeout", v_vial_timeout);
    vial_route(app, "GET /deadline", v_deadline);
    vial_route(app, "GET /gather", v_gather);
    vial_route(app, "GET /cancel", v_cancel);
    vial_route(app, "GET /refused", v_refused);
    vial_route(app, "GET /bad_scheme", v_bad_scheme);
    vial_route_sync(app, "GET /sync", v_sync);
    vial_route_sync(app, "GET /sync_timeout", v_sync_timeout);
    vial_route(app, "GET /big", v_big);
    vial_route(app, "GET /drip", v_drip);
    vial_route(app, "GET /redirect", v_redirect);
    vial_route(app, "GET /keepalive", v_keepalive);
    client = vial_test_client_new(app);
    return client ? 0 : -1;
}

static int teardown(void **state)
{
    /* the client's loop owns curl's connections: close them before the server */
    vial_test_client_free(client);
    vial_app_free(app);
    close(refused_fd);
    server_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_post_json),
        cmocka_unit_test(test_put_with_headers),
        cmocka_unit_test(test_404_passthrough),
        cmocka_unit_test(test_timeout_opts),
        cmocka_unit_test(test_vial_timeout),
        cmocka_unit_test(test_request_deadline),
        cmocka_unit_test(test_gather_20),
        cmocka_unit_test(test_cancel_aborts_transfer),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_bad_url),
        cmocka_unit_test(test_sync_view),
        cmocka_unit_test(test_big_body_and_limit),
        cmocka_unit_test(test_drip),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_keepalive),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
