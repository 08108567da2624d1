/* The TechEmpower Framework Benchmarks application for vial.
 *
 *   techempower [--host H] [--port P] [--threads N] [--workers N]
 *
 * Implements the test types of the TechEmpower rules
 * (https://github.com/TechEmpower/FrameworkBenchmarks/wiki/Project-Information-Framework-Tests-Overview):
 *
 *   GET /plaintext  200 "Hello, World!"                  text/plain
 *   GET /json       200 {"message":"Hello, World!"}      application/json
 *
 * Every response carries Server and Date (cfg.server_header = 1; vial always
 * sends Date). The JSON body is serialised per request with the JSON writer,
 * as the rules require (no cached bytes). All views are async (vial_route):
 * they run as coroutines on the loop thread that owns the connection.
 *
 * Adding a test type (/db, /queries, /fortunes, /updates): write the view
 * below in its own section and add one line to the `routes` table; database
 * state that each loop thread needs belongs in a per-thread context set up by
 * the view on first use. Default: one loop thread per core. */
#include <vial.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- test 1: JSON serialisation ------------------------------------------ */

static int json_view(vial_req *rq, vial_res *rs)
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "message");
    vial_json_str(j, "Hello, World!");
    vial_json_end(j);
    return vial_json_finish(j);
}

/* --- test 6: plaintext ------------------------------------------------------- */

static const char hello[] = "Hello, World!";

static int plaintext_view(vial_req *rq, vial_res *rs)
{
    vial_res_add_header(rs, "Content-Type", "text/plain");
    return vial_res_set_body_static(rs, hello, sizeof hello - 1);
}

/* --- the application ------------------------------------------------------------ */

/* One line per test type. vial_route() takes the endpoint name from the
 * function's name (#fn), so a table registers with vial_route_as and names
 * each endpoint itself. */
static const struct {
    const char *rule;
    vial_handler fn;
    const char *endpoint;
    int flags; /* VIAL_ASYNC, or VIAL_SYNC for a blocking view on the pool */
} routes[] = {
    {"GET /json", json_view, "json", VIAL_ASYNC},
    {"GET /plaintext", plaintext_view, "plaintext", VIAL_ASYNC},
};

/* The database test types (/db, /queries, /fortunes, /updates) come from
 * techempower_db.c (PostgreSQL, $TECHEMPOWER_PG: a conninfo) or
 * techempower_sqlite.c (SQLite, $TECHEMPOWER_SQLITE: a file it creates and
 * fills); one backend per process, since both register the same routes. */
int techempower_db_register(vial_app *app, const char *conninfo);
void techempower_db_free(void);
#ifdef VIAL_HAVE_SQLITE
int techempower_sqlite_register(vial_app *app, const char *path);
#endif

int main(int argc, char **argv)
{
    vial_app *app = vial_app_new();
    if (!app) {
        fprintf(stderr, "techempower: out of memory\n");
        return 1;
    }
    /* /fortunes renders bench/templates/fortunes.html (te_fortunes_render). */
    if (vial_app_set_template_folder(app, TE_TEMPLATES) < 0) {
        fprintf(stderr, "techempower: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int r = (routes[i].flags == VIAL_SYNC ? vial_route_as_sync : vial_route_as)(
            app, routes[i].rule, routes[i].fn, routes[i].endpoint, NULL);
        if (r != 0) {
            fprintf(stderr, "techempower: cannot register %s: %s\n", routes[i].rule, strerror(-r));
            return 1;
        }
    }
    const char *pg = getenv("TECHEMPOWER_PG"), *sqlite = getenv("TECHEMPOWER_SQLITE");
    if (pg && techempower_db_register(app, pg) != 0) {
        fprintf(stderr, "techempower: PostgreSQL tests unavailable ($TECHEMPOWER_PG)\n");
        return 1;
    }
#ifdef VIAL_HAVE_SQLITE
    if (!pg && sqlite && techempower_sqlite_register(app, sqlite) != 0) {
        fprintf(stderr, "techempower: SQLite tests unavailable ($TECHEMPOWER_SQLITE)\n");
        return 1;
    }
#else
    (void)sqlite;
#endif
    vial_config cfg = vial_config_default();
    cfg.threads = 0; /* one loop thread per core unless --threads says otherwise */
    cfg.server_header = 1;
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    techempower_db_free();
    return r == 0 ? 0 : 1;
}
