/* Tasks, gather, deadlines, cancellation, events, channels and semaphores,
 * driven through async views in the in-process test client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int sleeper(vial_req *rq, void *arg)
{
    int r = vial_sleep(rq, (uint64_t)(uintptr_t)arg);
    return r ? r : (int)(uintptr_t)arg;
}

static int failer(vial_req *rq, void *arg)
{
    vial_sleep(rq, 5);
    return -EIO;
}

static int saw_cancel;

static int long_sleeper(vial_req *rq, void *arg)
{
    int r = vial_sleep(rq, 10000);
    if (r == -ECANCELED)
        saw_cancel++;
    return r;
}

static int v_join(vial_req *rq, vial_res *rs)
{
    vial_task *t = vial_spawn(rq, sleeper, (void *)(uintptr_t)20);
    int before = vial_task_result(t);
    int r = vial_join(rq, t);
    return vial_text(rs, 200, "%d %d", before == -EINPROGRESS, r);
}

static int v_gather(vial_req *rq, vial_res *rs)
{
    vial_task *t[50];
    uint64_t t0 = vial_now_ms();
    for (int i = 0; i < 50; i++)
        t[i] = vial_spawn(rq, sleeper, (void *)(uintptr_t)50);
    int r = vial_gather(rq, t, 50, 0);
    uint64_t dt = vial_now_ms() - t0;
    /* concurrent: about 50 ms, never 50 x 50 ms; never early */
    return vial_text(rs, 200, "%d %d %d", r, dt >= 50, dt < 1000);
}

static int v_gather_fail_fast(vial_req *rq, vial_res *rs)
{
    saw_cancel = 0;
    vial_task *t[3] = {
        vial_spawn(rq, long_sleeper, NULL),
        vial_spawn(rq, failer, NULL),
        vial_spawn(rq, long_sleeper, NULL),
    };
    uint64_t t0 = vial_now_ms();
    int r = vial_gather(rq, t, 3, 0);
    return vial_text(rs, 200, "%d %d %d %d", r, saw_cancel, vial_task_result(t[0]),
                     vial_now_ms() - t0 < 1000);
}

static int v_gather_all(vial_req *rq, vial_res *rs)
{
    vial_task *t[2] = {vial_spawn(rq, failer, NULL), vial_spawn(rq, sleeper, (void *)(uintptr_t)10)};
    int r = vial_gather(rq, t, 2, VIAL_GATHER_ALL);
    return vial_text(rs, 200, "%d %d %d", r, vial_task_result(t[0]), vial_task_result(t[1]));
}

static int v_timeout(vial_req *rq, vial_res *rs)
{
    vial_timeout scope;
    uint64_t t0 = vial_now_ms();
    vial_timeout_begin(rq, &scope, 30);
    int r = vial_sleep(rq, 5000);
    vial_timeout_end(rq, &scope);
    uint64_t dt = vial_now_ms() - t0;
    int after = vial_sleep(rq, 1); /* the scope is over: awaits work again */
    return vial_text(rs, 200, "%d %d %d", r, dt >= 30 && dt < 1000, after);
}

static int v_timeout_gather(vial_req *rq, vial_res *rs)
{
    saw_cancel = 0;
    vial_timeout scope;
    vial_timeout_begin(rq, &scope, 30);
    vial_task *t[2] = {vial_spawn(rq, long_sleeper, NULL), vial_spawn(rq, long_sleeper, NULL)};
    int r = vial_gather(rq, t, 2, 0);
    vial_timeout_end(rq, &scope);
    /* the children inherited the deadline, or were cancelled by the gather */
    return vial_text(rs, 200, "%d %d", r, vial_task_result(t[0]) < 0 && vial_task_result(t[1]) < 0);
}

static int v_deadline(vial_req *rq, vial_res *rs)
{
    vial_set_deadline(rq, 20);
    int a = vial_sleep(rq, 5);
    int b = vial_sleep(rq, 5000);
    return vial_text(rs, 200, "%d %d", a, b);
}

static int v_after_deadline(vial_req *rq, vial_res *rs)
{
    /* the previous request's deadline must not leak into this one */
    return vial_text(rs, 200, "%d", vial_sleep(rq, 30));
}

static int v_reap(vial_req *rq, vial_res *rs)
{
    saw_cancel = 0;
    vial_spawn(rq, long_sleeper, NULL);
    vial_spawn(rq, long_sleeper, NULL);
    vial_sleep(rq, 1); /* let them start */
    return vial_text(rs, 200, "leaving");
}

static int v_cancel_one(vial_req *rq, vial_res *rs)
{
    saw_cancel = 0;
    vial_task *t = vial_spawn(rq, long_sleeper, NULL);
    vial_sleep(rq, 1);
    vial_task_cancel(t);
    int r = vial_join(rq, t);
    return vial_text(rs, 200, "%d %d", r, saw_cancel);
}

struct pc {
    vial_chan *ch;
    vial_event *ev;
    vial_sem *sem;
    int in_section, max_in_section;
};

static int producer(vial_req *rq, void *arg)
{
    struct pc *p = arg;
    for (uintptr_t i = 1; i <= 10; i++)
        if (vial_chan_send(rq, p->ch, (void *)i) != 0)
            return -1;
    vial_chan_close(p->ch);
    return 0;
}

static int v_channel(vial_req *rq, vial_res *rs)
{
    struct pc p = {.ch = vial_chan_new(rq, 2)};
    vial_task *t = vial_spawn(rq, producer, &p);
    uintptr_t sum = 0, n = 0;
    void *item;
    while (vial_chan_recv(rq, p.ch, &item) == 0) {
        sum += (uintptr_t)item;
        n++;
    }
    int r = vial_join(rq, t);
    return vial_text(rs, 200, "%lu %lu %d %d", (unsigned long)n, (unsigned long)sum, r,
                     vial_chan_send(rq, p.ch, NULL));
}

static int event_waiter(vial_req *rq, void *arg)
{
    struct pc *p = arg;
    return vial_event_wait(rq, p->ev) == 0 ? 1 : -1;
}

static int v_event(vial_req *rq, vial_res *rs)
{
    struct pc p = {.ev = vial_event_new(rq)};
    vial_task *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = vial_spawn(rq, event_waiter, &p);
    vial_sleep(rq, 5);
    int before = vial_task_result(t[0]);
    vial_event_set(p.ev);
    int r = vial_gather(rq, t, 3, 0);
    return vial_text(rs, 200, "%d %d %d", before == -EINPROGRESS, r, vial_task_result(t[2]));
}

static int sem_worker(vial_req *rq, void *arg)
{
    struct pc *p = arg;
    if (vial_sem_acquire(rq, p->sem) != 0)
        return -1;
    p->in_section++;
    if (p->in_section > p->max_in_section)
        p->max_in_section = p->in_section;
    vial_sleep(rq, 5);
    p->in_section--;
    vial_sem_release(p->sem);
    return 0;
}

static int v_sem(vial_req *rq, vial_res *rs)
{
    struct pc p = {.sem = vial_sem_new(rq, 3)};
    vial_task *t[10];
    for (int i = 0; i < 10; i++)
        t[i] = vial_spawn(rq, sem_worker, &p);
    int r = vial_gather(rq, t, 10, 0);
    return vial_text(rs, 200, "%d %d", r, p.max_in_section);
}

static int v_sync_spawn(vial_req *rq, vial_res *rs) /* registered sync */
{
    return vial_text(rs, 200, "%d %d", vial_spawn(rq, sleeper, NULL) == NULL, vial_sleep(rq, 1));
}

static vial_app *app;
static vial_test_client *client;

static int setup(void **s)
{
    app = vial_app_new();
    vial_route(app, "GET /join", v_join);
    vial_route(app, "GET /gather", v_gather);
    vial_route(app, "GET /gather-fail", v_gather_fail_fast);
    vial_route(app, "GET /gather-all", v_gather_all);
    vial_route(app, "GET /timeout", v_timeout);
    vial_route(app, "GET /timeout-gather", v_timeout_gather);
    vial_route(app, "GET /deadline", v_deadline);
    vial_route(app, "GET /after-deadline", v_after_deadline);
    vial_route(app, "GET /reap", v_reap);
    vial_route(app, "GET /cancel-one", v_cancel_one);
    vial_route(app, "GET /channel", v_channel);
    vial_route(app, "GET /event", v_event);
    vial_route(app, "GET /sem", v_sem);
    vial_route_sync(app, "GET /sync-spawn", v_sync_spawn);
    client = vial_test_client_new(app);
    return client ? 0 : -1;
}

static int teardown(void **s)
{
    vial_test_client_free(client);
    vial_app_free(app);
    return 0;
}

static void expect(const char *target, const char *body)
{
    vial_test_response *r = vial_test_client_get(client, target);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_body(r, NULL), body);
    vial_test_response_free(r);
}

static char buf[64];
static const char *fmt(const char *f, int a, int b, int c, int d)
{
    snprintf(buf, sizeof buf, f, a, b, c, d);
    return buf;
}

static void test_join(void **s) { expect("/join", "1 20"); }
static void test_gather_concurrent(void **s) { expect("/gather", "0 1 1"); }
static void test_gather_fail_fast(void **s)
{
    expect("/gather-fail", fmt("%d %d %d %d", -EIO, 2, -ECANCELED, 1));
}
static void test_gather_all(void **s) { expect("/gather-all", fmt("%d %d %d", 0, -EIO, 10, 0)); }
static void test_timeout_scope(void **s) { expect("/timeout", fmt("%d %d %d", -ETIMEDOUT, 1, 0, 0)); }
static void test_timeout_gather(void **s) { expect("/timeout-gather", fmt("%d %d", -ETIMEDOUT, 1, 0, 0)); }
static void test_request_deadline(void **s)
{
    expect("/deadline", fmt("%d %d", 0, -ETIMEDOUT, 0, 0));
    expect("/after-deadline", "0");
}
static void test_view_return_reaps_tasks(void **s)
{
    expect("/reap", "leaving");
    assert_int_equal(saw_cancel, 2);
}
static void test_cancel_one(void **s) { expect("/cancel-one", fmt("%d %d", -ECANCELED, 1, 0, 0)); }
static void test_channel(void **s) { expect("/channel", fmt("10 55 0 %d", -EPIPE, 0, 0, 0)); }
static void test_event(void **s) { expect("/event", "1 0 1"); }
static void test_semaphore(void **s) { expect("/sem", "0 3"); }
static void test_sync_cannot_await(void **s) { expect("/sync-spawn", fmt("1 %d", -EPERM, 0, 0, 0)); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_gather_concurrent),
        cmocka_unit_test(test_gather_fail_fast),
        cmocka_unit_test(test_gather_all),
        cmocka_unit_test(test_timeout_scope),
        cmocka_unit_test(test_timeout_gather),
        cmocka_unit_test(test_request_deadline),
        cmocka_unit_test(test_view_return_reaps_tasks),
        cmocka_unit_test(test_cancel_one),
        cmocka_unit_test(test_channel),
        cmocka_unit_test(test_event),
        cmocka_unit_test(test_semaphore),
        cmocka_unit_test(test_sync_cannot_await),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
