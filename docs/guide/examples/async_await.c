/* docs/guide/async.md: gather, deadlines, cancellation, offloading. */
#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A stand-in for an awaitable call (a query, a fetch): 50 ms of waiting. */
static int fetch_part(vial_req *rq, void *arg)
{
    int r = vial_sleep(rq, 50);
    return r ? r : (int)(intptr_t)arg;
}

/* Three awaits in flight at once: ~50 ms, not 150. */
static int dashboard(vial_req *rq, vial_res *rs)
{
    vial_task *parts[3];
    for (intptr_t i = 0; i < 3; i++)
        parts[i] = vial_spawn(rq, fetch_part, (void *)(i + 1));
    if (vial_gather(rq, parts, 3, 0) != 0)
        return vial_abort(rs, 503);
    int sum = 0;
    for (int i = 0; i < 3; i++)
        sum += vial_task_result(parts[i]);
    return vial_text(rs, 200, "sum %d", sum);
}

/* A deadline on one await: the slow call is cancelled at 30 ms. */
static int impatient(vial_req *rq, vial_res *rs)
{
    vial_timeout t;
    vial_timeout_begin(rq, &t, 30);
    int r = vial_sleep(rq, 10000);
    vial_timeout_end(rq, &t);
    if (r == -ETIMEDOUT)
        return vial_text(rs, 504, "too slow");
    return vial_text(rs, 200, "done");
}

/* Blocking code from an async view: run it on the worker pool. */
static void checksum(void *arg)
{
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL); /* pretend to be CPU-heavy or a blocking library */
    *(int *)arg = 42;
}

static int offloaded(vial_req *rq, vial_res *rs)
{
    int result = 0;
    if (vial_offload(rq, checksum, &result) != 0)
        return vial_abort(rs, 503);
    return vial_text(rs, 200, "checksum %d", result);
}

static vial_app *make_app(void)
{
    vial_app *app = vial_app_new();
    vial_route(app, "GET /dashboard", dashboard);
    vial_route(app, "GET /impatient", impatient);
    vial_route(app, "GET /offloaded", offloaded);
    return app;
}

static int expect(vial_test_client *c, const char *target, int status, const char *body)
{
    vial_test_response *r = vial_test_client_get(c, target);
    int ok = vial_test_response_status(r) == status && !strcmp(vial_test_response_body(r, NULL), body);
    if (!ok)
        fprintf(stderr, "%s: %d %s\n", target, vial_test_response_status(r), vial_test_response_body(r, NULL));
    vial_test_response_free(r);
    return ok;
}

int main(int argc, char **argv)
{
    vial_app *app = make_app();
    int rc;
    if (argc > 1 && !strcmp(argv[1], "--test")) {
        vial_test_client *c = vial_test_client_new(app);
        rc = !(expect(c, "/dashboard", 200, "sum 6") && expect(c, "/impatient", 504, "too slow") &&
               expect(c, "/offloaded", 200, "checksum 42"));
        vial_test_client_free(c);
    } else {
        vial_config cfg = vial_config_default();
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg);
    }
    vial_app_free(app);
    return rc;
}
