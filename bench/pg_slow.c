/* A one-route app for bench/pg-disconnect.sh: GET /slow awaits
 * `select pg_sleep(5)` on the PostgreSQL named by $VIAL_PG. */
#include <vial.h>
#include <vial/pg.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static vial_pg *db;

static int slow(vial_req *rq, vial_res *rs)
{
    vial_pg_result *res;
    int r = vial_pg_query(rq, db, &res, "select pg_sleep(5)", 0, NULL);
    if (r == -ECANCELED)
        fprintf(stderr, "pg_slow: query cancelled (client gone)\n");
    return r ? vial_abort(rs, 503) : vial_text(rs, 200, "slept");
}

int main(int argc, char **argv)
{
    const char *conninfo = getenv("VIAL_PG");
    if (!conninfo)
        return 2;
    db = vial_pg_open(conninfo, NULL);
    vial_app *app = vial_app_new();
    vial_route(app, "GET /slow", slow);
    vial_config cfg = vial_config_default();
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    int rc = vial_run(app, &cfg);
    vial_app_free(app);
    vial_pg_close(db);
    return rc ? 1 : 0;
}
