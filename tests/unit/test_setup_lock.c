/* Once vial_run has started, the app is set up for good: every registration
 * returns -EBUSY (vial_blueprint NULL), whether it comes from vial_run's own
 * thread (on_ready), another thread, or a handler serving a request. Runs a
 * real server on an ephemeral port and stops it with SIGTERM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static vial_app *app;
static vial_bp *bp;
static sem_t ready_sem;
static int bound_port;
static int handler_rc = 1;
static int ready_fails;

static int view(vial_req *rq, vial_res *rs) { return vial_text(rs, 200, "ok"); }
static void teardown(vial_req *rq, const char *error) {}
static int mw(vial_req *rq, vial_res *rs, vial_next *next, void *arg) { return vial_next_call(next); }
static int conv(const char *s, size_t len, void *arg) { return 1; }
static int ws(vial_req *rq, vial_ws *w) { return 0; }
static const vial_view_method methods[] = {{"GET", view, VIAL_ASYNC}, {NULL, NULL, 0}};

/* Tries every registration; returns how many were not refused with -EBUSY. */
static int try_all(void)
{
    int bad = 0;
    bad += vial_route_as(app, "GET /late", view, "late", NULL) != -EBUSY;
    bad += vial_route_sync(app, "GET /late2", view) != -EBUSY;
    bad += vial_converter(app, "late", conv, NULL) != -EBUSY;
    bad += vial_add_view(app, "/late-view", "late_view", methods, NULL) != -EBUSY;
    bad += vial_before_request(app, view) != -EBUSY;
    bad += vial_after_request_sync(app, view) != -EBUSY;
    bad += vial_teardown_request(app, teardown) != -EBUSY;
    bad += vial_errorhandler(app, 404, view) != -EBUSY;
    bad += vial_blueprint(app, "late", "/late") != NULL;
    bad += vial_bp_route_as(bp, "GET /late", view, "late", NULL) != -EBUSY;
    bad += vial_bp_add_view(bp, "/v", "v", methods, NULL) != -EBUSY;
    bad += vial_bp_before_request(bp, view) != -EBUSY;
    bad += vial_bp_after_request(bp, view) != -EBUSY;
    bad += vial_bp_teardown_request(bp, teardown) != -EBUSY;
    bad += vial_bp_errorhandler(bp, 500, view) != -EBUSY;
    bad += vial_use(app, mw, NULL) != -EBUSY;
    bad += vial_wrap(app, "view", mw, NULL) != -EBUSY;
    bad += vial_static(app, "/static", ".") != -EBUSY;
    bad += vial_app_set_secret_key(app, "late secret") != -EBUSY;
    bad += vial_ws_route_as(app, "/ws-late", ws, "ws_late", NULL) != -EBUSY;
    bad += vial_ws_route(app, "/ws-late2", ws) != -EBUSY;
    bad += vial_route_as_sync(app, "GET /late3", view, "late3", NULL) != -EBUSY;
    bad += vial_before_request_sync(app, view) != -EBUSY;
    bad += vial_after_request(app, view) != -EBUSY;
    bad += vial_teardown_request_sync(app, teardown) != -EBUSY;
    bad += vial_errorhandler_sync(app, 404, view) != -EBUSY;
    bad += vial_bp_route_as_sync(bp, "GET /late3", view, "late3", NULL) != -EBUSY;
    bad += vial_bp_before_request_sync(bp, view) != -EBUSY;
    bad += vial_bp_after_request_sync(bp, view) != -EBUSY;
    bad += vial_bp_teardown_request_sync(bp, teardown) != -EBUSY;
    bad += vial_bp_errorhandler_sync(bp, 500, view) != -EBUSY;
    return bad;
}

static int register_from_handler(vial_req *rq, vial_res *rs)
{
    handler_rc = vial_route_as(app, "GET /from-handler", view, "from_handler", NULL);
    return vial_text(rs, 200, "%d", handler_rc);
}

static void on_ready(int port, void *data)
{
    bound_port = port;
    ready_fails = try_all();
    sem_post(&ready_sem);
}

static void *runner(void *arg)
{
    vial_config cfg = vial_config_default();
    cfg.port = 0;
    cfg.threads = 1;
    cfg.workers = 1;
    cfg.grace_ms = 200;
    cfg.on_ready = on_ready;
    *(int *)arg = vial_run(app, &cfg);
    return NULL;
}

static void get(int port, const char *path, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(fd, out + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = 0;
    close(fd);
}

static void test_registration_refused_while_running(void **state)
{
    app = vial_app_new();
    assert_non_null(app);
    bp = vial_blueprint(app, "api", "/api");
    assert_non_null(bp);
    assert_int_equal(vial_route(app, "GET /", view), 0);
    assert_int_equal(vial_route(app, "GET /register", register_from_handler), 0);
    assert_int_equal(sem_init(&ready_sem, 0, 0), 0);

    int run_rc = 1;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, runner, &run_rc), 0);
    assert_int_equal(sem_wait(&ready_sem), 0);
    assert_true(bound_port > 0);
    assert_int_equal(ready_fails, 0); /* from vial_run's thread */
    assert_int_equal(try_all(), 0);   /* from another thread */

    char resp[1024];
    get(bound_port, "/register", resp, sizeof resp);
    assert_non_null(strstr(resp, "200 OK"));
    assert_int_equal(handler_rc, -EBUSY); /* from a handler, on a loop thread */
    get(bound_port, "/late", resp, sizeof resp);
    assert_non_null(strstr(resp, "404")); /* nothing slipped in */

    kill(getpid(), SIGTERM);
    pthread_join(t, NULL);
    assert_int_equal(run_rc, 0);
    vial_app_free(app);
}

int main(void)
{
    /* vial_run takes SIGTERM with sigwait: keep it blocked everywhere, so
     * the kill above reaches it rather than ending the process. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registration_refused_while_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
