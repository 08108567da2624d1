/* docs/guide/configuration.md: command-line options, vial's and the app's
 * own, and learning the port when it is 0. `--help` lists them all; with
 * --test it checks itself through the test client. */
#include <vial.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The app's options: defaults are the values they hold before parsing. */
static const char *greeting = "Hello";
static int shout;

static const vial_option app_options[] = {
    {"greeting", "TEXT", "what GET / says", &greeting},
    {"shout", NULL, "say it in capitals", &shout},
    {0},
};

static int index_page(vial_req *rq, vial_res *rs)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s!", greeting);
    for (char *p = buf; shout && *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    return vial_text(rs, 200, "%s", buf);
}

/* With --port 0 the kernel picks the port: this is where the program (or
 * the script that started it) learns which. */
static void ready(int port, void *data)
{
    printf("ready on port %d\n", port);
    fflush(stdout);
}

static vial_app *make_app(void)
{
    vial_app *app = vial_app_new();
    vial_route(app, "GET /", index_page);
    return app;
}

static int self_test(vial_app *app)
{
    char *argv[] = {"app", "--port=0", "--threads", "2", "--greeting", "Bonjour", "--shout", NULL};
    vial_config cfg = vial_config_default();
    cfg.options = app_options;
    if (vial_config_args(&cfg, 7, argv) != 0 || cfg.port != 0 || cfg.threads != 2 || !shout)
        return 1;
    char *bad[] = {"app", "--port", "http", NULL};
    if (vial_config_args(&cfg, 3, bad) != -EINVAL)
        return 1;

    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = vial_test_client_get(c, "/");
    int ok = vial_test_response_status(r) == 200 && !strcmp(vial_test_response_body(r, NULL), "BONJOUR!");
    vial_test_response_free(r);
    vial_test_client_free(c);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    vial_app *app = make_app();
    int rc;
    if (argc > 1 && !strcmp(argv[1], "--test")) {
        rc = self_test(app);
    } else {
        vial_config cfg = vial_config_default();
        cfg.options = app_options;
        cfg.on_ready = ready;
        rc = vial_config_args(&cfg, argc, argv) ? 2 : vial_run(app, &cfg) ? 1 : 0;
    }
    vial_app_free(app);
    return rc;
}
