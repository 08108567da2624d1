/* The TechEmpower Fortunes page written by hand and rendered from a
 * template, side by side (bench/fortunes-tmpl.sh measures both):
 *
 *   GET /fortunes       te_fortunes_page, the hand-written page of
 *                       bench/techempower (escaping by hand)
 *   GET /fortunes-tmpl  the same page from bench/templates/fortunes.html
 *                       through vial_render
 *
 * The rows are the 12 of the TechEmpower specification, copied from memory
 * per request (no database), so the figures are the page's own cost: the
 * request-time fortune, the sort, the HTML with every message escaped. */
#include "techempower_common.h"

#include <stdio.h>
#include <string.h>

#ifndef FORTUNES_TEMPLATES
#define FORTUNES_TEMPLATES "bench/templates"
#endif

static const te_fortune rows[] = {
    {1, "fortune: No such file or directory"},
    {2, "A computer scientist is someone who fixes things that aren't broken."},
    {3, "After enough decimal places, nobody gives a damn."},
    {4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"},
    {5, "A computer program does what you tell it to do, not what you want it to do."},
    {6, "Emacs is a nice operating system, but I prefer UNIX. \xe2\x80\x94 Tom Christaensen"},
    {7, "Any program that runs right is obsolete."},
    {8, "A list is only as strong as its weakest link. \xe2\x80\x94 Donald Knuth"},
    {9, "Feature: A bug with seniority."},
    {10, "Computers make very fast, very accurate mistakes."},
    {11, "<script>alert(\"This should not be displayed in a browser alert box.\");</script>"},
    {12, "\xe3\x83\x95\xe3\x83\xac\xe3\x83\xbc\xe3\x83\xa0\xe3\x83\xaf\xe3\x83\xbc\xe3\x82\xaf\xe3\x81\xae"
         "\xe3\x83\x99\xe3\x83\xb3\xe3\x83\x81\xe3\x83\x9e\xe3\x83\xbc\xe3\x82\xaf"},
};
#define NROWS (sizeof rows / sizeof rows[0])

/* What a database view holds after its query: the rows, room for one more. */
static te_fortune *fetch(vial_req *rq)
{
    te_fortune *f = vial_alloc(rq, (NROWS + 1) * sizeof *f);
    if (f)
        memcpy(f, rows, sizeof rows);
    return f;
}

static int fortunes_hand(vial_req *rq, vial_res *rs)
{
    te_fortune *f = fetch(rq);
    return f ? te_fortunes_page(rs, f, NROWS) : vial_fail(rs, "out of memory");
}

static int fortunes_tmpl(vial_req *rq, vial_res *rs)
{
    te_fortune *f = fetch(rq);
    return f ? te_fortunes_render(rq, rs, f, NROWS) : vial_fail(rs, "out of memory");
}

int main(int argc, char **argv)
{
    vial_app *app = vial_app_new();
    vial_config cfg = vial_config_default();
    cfg.server_header = 1;
    if (!app || vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    if (vial_app_set_template_folder(app, FORTUNES_TEMPLATES) ||
        vial_route_as(app, "GET /fortunes", fortunes_hand, "fortunes", NULL) ||
        vial_route_as(app, "GET /fortunes-tmpl", fortunes_tmpl, "fortunes_tmpl", NULL)) {
        fprintf(stderr, "fortunes_tmpl: setup failed\n");
        return 1;
    }
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    return r == 0 ? 0 : 1;
}
