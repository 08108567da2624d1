/* vial demo: a live team task board.
 *
 *   scripts/demo.sh            (builds vial, then runs this on 127.0.0.1:8080)
 *   build/examples/demo --port 9000 --db /tmp/board.db
 *   DATABASE_URL=postgresql://... build/examples/demo
 *
 * main.c sets the app up; pages.c has the HTML pages (templates, forms,
 * sessions), api.c the JSON API, live.c the websocket and the SSE feed,
 * db.c the data access for SQLite and PostgreSQL. */
#include "demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

/* The directory holding templates/ and static/: --dir, else the one this
 * file was compiled from (so the binary runs from anywhere in a checkout). */
static const char *app_dir;
static const char *db_path = "demo.db";
static const char *host = "127.0.0.1";

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *default_app_dir(void)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        return dir;
    }
    return "examples/demo";
}

const char *current_user(vial_req *rq)
{
    return vial_session_get(rq, "user");
}

/* Static files may be cached for a day: pages link them with ?v=<start
 * time>, so a restart after an edit gets new URLs. */
static int cache_static(vial_req *rq, vial_res *rs)
{
    if (strncmp(vial_req_path(rq), "/static/", 8) == 0 && vial_res_get_status(rs) == 200)
        vial_res_set_header(rs, "Cache-Control", "public, max-age=86400");
    vial_res_set_header(rs, "X-Content-Type-Options", "nosniff");
    return 0;
}

static void on_ready(int port, void *data)
{
    (void)data;
    printf("demo: the task board is up (%s database): point your browser at http://%s:%d/\n",
           db_kind(), host, port);
    fflush(stdout);
}

/* SECRET_KEY from the environment, else a random one: sessions then last
 * as long as the process. */
static const char *secret_key(void)
{
    static char key[65];
    const char *env = getenv("SECRET_KEY");
    if (env && *env)
        return env;
    unsigned char raw[32];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return NULL;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(key + 2 * i, 3, "%02x", raw[i]);
    return key;
}

int main(int argc, char **argv)
{
    if (getenv("DEMO_DB"))
        db_path = getenv("DEMO_DB");
    app_dir = default_app_dir();
    static const vial_option opts[] = {
        {"db", "PATH", "SQLite database file (or $DEMO_DB; DATABASE_URL picks PostgreSQL)", &db_path},
        {"dir", "DIR", "where templates/ and static/ are", &app_dir},
        {0},
    };
    vial_config cfg = vial_config_default();
    cfg.options = opts;
    cfg.on_ready = on_ready;
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    host = cfg.host;

    char templates[4200], statics[4200];
    snprintf(templates, sizeof templates, "%s/templates", app_dir);
    snprintf(statics, sizeof statics, "%s/static", app_dir);
    if (!is_dir(templates) || !is_dir(statics)) {
        fprintf(stderr, "demo: no templates/ and static/ under %s (use --dir)\n", app_dir);
        return 1;
    }
    int r = db_open(getenv("DATABASE_URL"), db_path);
    if (r < 0) {
        fprintf(stderr, "demo: cannot open the database: %s\n", vial_strerror(r));
        return 1;
    }

    vial_app *app = vial_app_new();
    const char *key = secret_key();
    if (!app || !key || vial_app_set_secret_key(app, key) < 0 ||
        vial_before_request(app, db_ensure_schema) < 0 ||
        vial_after_request(app, cache_static) < 0 || vial_compress(app, NULL) < 0 ||
        vial_static(app, "/static", statics) < 0 ||
        pages_register(app, templates) < 0 || api_register(app) < 0 || live_register(app) < 0) {
        fprintf(stderr, "demo: setting the app up failed\n");
        return 1;
    }
    r = vial_run(app, &cfg);
    vial_app_free(app);
    db_close();
    return r < 0 ? 1 : 0;
}
