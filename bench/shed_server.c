/* The server bench/shed.sh overloads: GET /work is a sync view holding its
 * pool thread for ?ms= milliseconds (default 5), with no hook, so a request
 * waits for the pool once; everything else is vial's options (--workers,
 * --shed-target-ms). */
#include <vial.h>

#include <stdlib.h>
#include <time.h>

static int work(vial_req *rq, vial_res *rs)
{
    const char *a = vial_req_arg(rq, "ms");
    long ms = a ? strtol(a, NULL, 10) : 5;
    if (ms < 0 || ms > 10000)
        ms = 5;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return vial_text(rs, 200, "done\n");
}

int main(int argc, char **argv)
{
    vial_config cfg = vial_config_default();
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    vial_app *app = vial_app_new();
    if (!app || vial_route_sync(app, "GET /work", work) != 0)
        return 1;
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    return r == 0 ? 0 : 1;
}
