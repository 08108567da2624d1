/* The server of bench/compress.sh: two ~2 KiB responses built per request,
 * as an app would build them, served with or without compression.
 *   GET /json   ~2 KiB of JSON (a list of products), vial_json writer
 *   GET /html   ~2 KiB of HTML (a table of the same), printf'd
 * Compression is on with vial_compress's defaults, or the levels given
 * (--gzip-level N, --br-quality N); --no-compress turns it off. The
 * client's Accept-Encoding picks the coding. */
#include <vial.h>

#include <stdio.h>
#include <stdlib.h>

#define ITEMS 22 /* about 2 KiB either way */

static const char *const colours[] = {"red", "green", "blue", "black", "white", "silver"};

static int json_view(vial_req *rq, vial_res *rs)
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_arr(j);
    for (int i = 0; i < ITEMS; i++) {
        vial_json_obj(j);
        vial_json_key(j, "id");
        vial_json_int(j, 1000 + i);
        vial_json_key(j, "name");
        char name[32];
        snprintf(name, sizeof name, "Product number %d", i);
        vial_json_str(j, name);
        vial_json_key(j, "colour");
        vial_json_str(j, colours[i % 6]);
        vial_json_key(j, "price");
        vial_json_double(j, 9.5 + i);
        vial_json_key(j, "stock");
        vial_json_bool(j, i % 3 != 0);
        vial_json_end(j);
    }
    vial_json_end(j);
    return vial_json_finish(j);
}

static int html_view(vial_req *rq, vial_res *rs)
{
    vial_res_set_status(rs, 200);
    vial_res_add_header(rs, "Content-Type", "text/html; charset=utf-8");
    vial_res_append_body(rs, "<!doctype html><html><head><title>Products</title></head><body>\n<table>\n", 73);
    for (int i = 0; i < ITEMS; i++) {
        char row[160];
        int n = snprintf(row, sizeof row,
                         "<tr><td>%d</td><td>Product number %d</td><td>%s</td><td>%d.50</td></tr>\n",
                         1000 + i, i, colours[i % 6], 9 + i);
        vial_res_append_body(rs, row, (size_t)n);
    }
    return vial_res_append_body(rs, "</table>\n</body></html>\n", 24);
}

int main(int argc, char **argv)
{
    static const char *gzip_level, *br_quality;
    static const vial_option opts[] = {
        {"gzip-level", "N", "gzip level 1-9 (vial's default when not given)", &gzip_level},
        {"br-quality", "N", "brotli quality 0-11 (vial's default when not given)", &br_quality},
        {0},
    };
    vial_config cfg = vial_config_default();
    cfg.options = opts;
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    vial_app *app = vial_app_new();
    if (!app || vial_route(app, "GET /json", json_view) || vial_route(app, "GET /html", html_view))
        return 1;
    vial_compress_opts co = vial_compress_opts_default();
    if (gzip_level)
        co.gzip_level = atoi(gzip_level);
    if (br_quality)
        co.br_quality = atoi(br_quality);
    if (vial_compress(app, &co) != 0) {
        fprintf(stderr, "compress_bench: bad --gzip-level or --br-quality\n");
        return 2;
    }
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    return r ? 1 : 0;
}
