/* The smallest vial app: one async view, one sync view. */
#include <vial.h>

static int hello(vial_req *rq, vial_res *rs)
{
    const char *name = vial_req_param(rq, "name");
    return vial_text(rs, 200, "Hello, %s!\n", name ? name : "world");
}

static int index_view(vial_req *rq, vial_res *rs)
{
    return vial_text(rs, 200, "vial is running. Try /hello/you\n");
}

int main(int argc, char **argv)
{
    vial_app *app = vial_app_new();
    vial_route_sync(app, "GET /", index_view);
    vial_route(app, "GET /hello/<name>", hello);
    vial_config cfg = vial_config_default();
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    return r == 0 ? 0 : 1;
}
