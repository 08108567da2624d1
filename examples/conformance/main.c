/* The conformance app of shared/spec/conformance-app.md: written the way a
 * Flask user writes an application. Each view is marked sync (runs on the
 * worker pool, may block) or async (a coroutine on the loop). */
#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A query integer that must be in range, else the view aborts with 400. */
#define ARG_INT(rq, rs, name, def, lo, hi, out)                                  \
    do {                                                                         \
        if (vial_req_arg_int(rq, name, def, lo, hi, out) != 0)                   \
            return vial_abort(rs, 400);                                          \
    } while (0)

/* --- 4.1 routing --------------------------------------------------------- */

static int index_view(vial_req *rq, vial_res *rs) /* sync */
{
    return vial_text(rs, 200, "vial conformance");
}

static int hello(vial_req *rq, vial_res *rs) /* async */
{
    return vial_text(rs, 200, "Hello, %s!", vial_req_param(rq, "name"));
}

static int user(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "id");
    vial_json_int(j, vial_req_param_int(rq, "id"));
    vial_json_end(j);
    return vial_json_finish(j);
}

static int files(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "path");
    vial_json_str(j, vial_req_param(rq, "p"));
    vial_json_end(j);
    return vial_json_finish(j);
}

static int dir(vial_req *rq, vial_res *rs) /* sync */
{
    return vial_text(rs, 200, "dir");
}

static int methods(vial_req *rq, vial_res *rs) /* sync */
{
    /* As in Flask, a HEAD request runs the GET view with method "HEAD"; the
     * spec wants HEAD's headers to equal GET's, so report it as GET. */
    const char *m = vial_req_method(rq);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "method");
    vial_json_str(j, strcmp(m, "HEAD") ? m : "GET");
    vial_json_end(j);
    return vial_json_finish(j);
}

static int status(vial_req *rq, vial_res *rs) /* sync */
{
    int code = (int)vial_req_param_int(rq, "code");
    if (code == 204 || code == 205 || code == 304) {
        vial_res_status(rs, code);
        return 0;
    }
    return vial_text(rs, code, "status %d", code);
}

/* --- 4.2 request data ------------------------------------------------------ */

static int args(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    unsigned n = vial_req_arg_count(rq);
    vial_json_obj(j);
    vial_json_key(j, "args");
    vial_json_obj(j);
    /* keys in first-seen order, each with all its values in order */
    for (unsigned i = 0; i < n; i++) {
        const char *k, *v;
        vial_req_arg_at(rq, i, &k, &v);
        int seen = 0;
        for (unsigned p = 0; p < i && !seen; p++) {
            const char *pk;
            vial_req_arg_at(rq, p, &pk, NULL);
            seen = !strcmp(pk, k);
        }
        if (seen)
            continue;
        vial_json_key(j, k);
        vial_json_arr(j);
        for (unsigned q = i; q < n; q++) {
            const char *qk, *qv;
            vial_req_arg_at(rq, q, &qk, &qv);
            if (!strcmp(qk, k))
                vial_json_str(j, qv);
        }
        vial_json_end(j);
    }
    vial_json_end(j);
    vial_json_end(j);
    return vial_json_finish(j);
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s += 'a' - 'A';
}

static int headers(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    unsigned n = vial_req_header_count(rq);
    vial_json_obj(j);
    vial_json_key(j, "headers");
    vial_json_obj(j);
    const char **names = vial_alloc(rq, (n + 1) * sizeof *names);
    for (unsigned i = 0; i < n; i++) {
        const char *name;
        vial_req_header_at(rq, i, &name, NULL);
        char *l = vial_strdup(rq, name);
        lower(l);
        names[i] = l;
        int seen = 0;
        for (unsigned p = 0; p < i && !seen; p++)
            seen = !strcmp(names[p], l);
        if (seen)
            continue;
        vial_json_key(j, l);
        vial_json_str(j, vial_req_header(rq, l)); /* repeated fields joined */
    }
    vial_json_end(j);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int header(vial_req *rq, vial_res *rs) /* sync */
{
    const char *name = vial_req_param(rq, "name");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "name");
    vial_json_str(j, name);
    vial_json_key(j, "value");
    vial_json_str(j, vial_req_header(rq, name));
    vial_json_end(j);
    return vial_json_finish(j);
}

static int echo_body(vial_req *rq, vial_res *rs) /* async */
{
    size_t len;
    const void *body = vial_req_body(rq, &len);
    vial_res_header(rs, "Content-Type", "application/octet-stream");
    return vial_res_body(rs, body, len);
}

/* --- 4.3 responses ----------------------------------------------------------- */

static int stream(vial_req *rq, vial_res *rs) /* async */
{
    int64_t n, ms;
    ARG_INT(rq, rs, "n", 5, 0, 10000, &n);
    ARG_INT(rq, rs, "ms", 0, 0, 10000, &ms);
    if (vial_stream_begin(rs, 200, "text/plain; charset=utf-8") != 0)
        return 0;
    for (int64_t i = 1; i <= n; i++) {
        if (i > 1 && ms && vial_sleep(rq, (uint64_t)ms) != 0)
            break;
        if (vial_stream_printf(rs, "chunk %lld\n", (long long)i) != 0)
            break;
    }
    return 0;
}

/* --- 4.6 async and blocking work ---------------------------------------------- */

static int async_sleep(vial_req *rq, vial_res *rs) /* async */
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 0, 0, 60000, &ms);
    int r = vial_sleep(rq, (uint64_t)ms);
    if (r == -ECANCELED)
        return vial_fail(rs, "cancelled");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "slept_ms");
    vial_json_int(j, ms);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int sync_block(vial_req *rq, vial_res *rs) /* sync */
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 100, 0, 60000, &ms);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "blocked_ms");
    vial_json_int(j, ms);
    vial_json_end(j);
    return vial_json_finish(j);
}

int main(int argc, char **argv)
{
    vial_app *app = vial_app_new();
    int err = 0;
    err |= vial_route_sync(app, "GET /", index_view);
    err |= vial_route(app, "GET /hello/<name>", hello);
    err |= vial_route_sync(app, "GET /users/<int:id>", user);
    err |= vial_route_sync(app, "GET /files/<path:p>", files);
    err |= vial_route_sync(app, "GET /dir/", dir);
    err |= vial_route_sync(app, "GET,POST /methods", methods);
    err |= vial_route_sync(app, "GET /status/<int(min=200,max=599):code>", status);
    err |= vial_route_sync(app, "GET /args", args);
    err |= vial_route_sync(app, "GET /headers", headers);
    err |= vial_route_sync(app, "GET /header/<name>", header);
    err |= vial_route(app, "POST,PUT /echo/body", echo_body);
    err |= vial_route(app, "GET /stream", stream);
    err |= vial_route(app, "GET /async/sleep", async_sleep);
    err |= vial_route_sync(app, "GET /sync/block", sync_block);
    if (err) {
        fprintf(stderr, "conformance: route registration failed\n");
        return 1;
    }
    vial_config cfg = vial_config_default();
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    return r == 0 ? 0 : 1;
}
