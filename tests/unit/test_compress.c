/* Response compression: the Accept-Encoding parser and the negotiation
 * table (accept_encoding.c), then vial_compress through the test client:
 * which responses are compressed, their headers, and the bytes decoded back
 * with zlib (and brotli when built with it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/compress.h"
#include "vial.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#ifdef VIAL_HAVE_BROTLI
#include <brotli/decode.h>
#endif

/* --- the parser ------------------------------------------------------------------ */

static vial_accept_enc parse(const char *h)
{
    vial_accept_enc ae;
    vial_accept_enc_parse(h, strlen(h), &ae);
    return ae;
}

static void test_parse_weights(void **state)
{
    (void)state;
    vial_accept_enc ae = parse("gzip, br;q=0.5, identity;q=0, *;q=0.001");
    assert_int_equal(ae.q_gzip, 1000);
    assert_int_equal(ae.q_br, 500);
    assert_int_equal(ae.q_identity, 0);
    assert_int_equal(ae.q_star, 1);

    ae = parse("");
    assert_int_equal(ae.q_gzip, -1);
    assert_int_equal(ae.q_br, -1);
    assert_int_equal(ae.q_identity, -1);
    assert_int_equal(ae.q_star, -1);

    /* names and the q parameter in any case, OWS around ';', x-gzip */
    ae = parse("GZip ;\tQ=0.25 ,BR; q=1.000");
    assert_int_equal(ae.q_gzip, 250);
    assert_int_equal(ae.q_br, 1000);
    assert_int_equal(parse("x-gzip;q=0.3").q_gzip, 300);
    /* the first weight of a coding named twice stands */
    assert_int_equal(parse("gzip;q=0, gzip").q_gzip, 0);
    /* unknown codings are skipped */
    ae = parse("deflate, zstd;q=0.9, compress");
    assert_int_equal(ae.q_gzip, -1);
    assert_int_equal(ae.q_br, -1);
    /* qvalue precision: up to three decimals */
    assert_int_equal(parse("br;q=0.1").q_br, 100);
    assert_int_equal(parse("br;q=0.12").q_br, 120);
    assert_int_equal(parse("br;q=0.123").q_br, 123);
    assert_int_equal(parse("br;q=0.").q_br, 0);
    assert_int_equal(parse("br;q=1.").q_br, 1000);
    /* empty elements */
    assert_int_equal(parse(",, ,gzip,,").q_gzip, 1000);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    /* each malformed element is skipped: never taken as acceptance */
    const char *bad[] = {
        "gzip;q=2",      "gzip;q=1.5",   "gzip;q=1.001", "gzip;q=0.1234", "gzip;q=-1",
        "gzip;q=",       "gzip;q",       "gzip;level=1", "gzip;q=0.5x",  "gzip;q=.5",
        "gzip;;q=1",     "gzip q=1",     "gzip;q =1",    "gzip;q= 1",    "\"gzip\"",
        "gzip;q=0.5;q=1x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vial_accept_enc ae = parse(bad[i]);
        if (ae.q_gzip != -1)
            fail_msg("'%s' gave gzip q=%d", bad[i], ae.q_gzip);
    }
    /* what follows a malformed element still counts */
    vial_accept_enc ae = parse("gzip;q=7, br;q=0.4");
    assert_int_equal(ae.q_gzip, -1);
    assert_int_equal(ae.q_br, 400);
    /* a field value that is not NUL-terminated is read to its length only */
    char buf[8] = {'b', 'r', ';', 'q', '=', '0', '5', '5'};
    vial_accept_enc_parse(buf, 6, &ae);
    assert_int_equal(ae.q_br, 0);
}

/* --- negotiation --------------------------------------------------------------------- */

#define ID VIAL_CODING_IDENTITY
#define GZ VIAL_CODING_GZIP
#define BR VIAL_CODING_BR
#define BOTH (VIAL_CODING_BIT(GZ) | VIAL_CODING_BIT(BR))
#define GZONLY VIAL_CODING_BIT(GZ)

static void test_choose_table(void **state)
{
    (void)state;
    static const struct {
        const char *h; /* NULL: no Accept-Encoding field */
        unsigned avail;
        int want;
    } t[] = {
        {NULL, BOTH, ID},                            /* no field: identity */
        {"", BOTH, ID},                              /* empty: identity only */
        {"gzip", BOTH, GZ},
        {"br", BOTH, BR},
        {"gzip, br", BOTH, BR},                      /* equal weight: br first */
        {"br, gzip", BOTH, BR},
        {"gzip, deflate, br, zstd", BOTH, BR},       /* what browsers send */
        {"gzip;q=1.0, br;q=0.9", BOTH, GZ},          /* weights decide */
        {"br;q=0.1, gzip;q=0.2", BOTH, GZ},
        {"br;q=0, gzip", BOTH, GZ},                  /* q=0 refuses */
        {"gzip;q=0", BOTH, ID},
        {"gzip;q=0, br;q=0", BOTH, ID},
        {"*", BOTH, BR},                             /* any coding */
        {"*;q=0.5, gzip", BOTH, GZ},                 /* named beats the star */
        {"*;q=0", BOTH, ID},                         /* nothing but... nothing: identity anyway */
        {"*, br;q=0", BOTH, GZ},
        {"*, gzip;q=0, br;q=0", BOTH, ID},
        {"identity", BOTH, ID},
        {"identity;q=0", BOTH, ID},                  /* refused all: identity, not 406 */
        {"identity;q=0, gzip", BOTH, GZ},
        {"gzip;q=0.5, identity", BOTH, ID},          /* identity asked for more */
        {"gzip;q=0.5, identity;q=0.5", BOTH, GZ},    /* a coding wins a tie with identity */
        {"gzip;q=0.5", BOTH, GZ},                    /* implicit identity does not compete */
        {"*;q=0.5, br;q=0.4", BOTH, GZ},             /* star gives gzip 0.5 */
        {"br", GZONLY, ID},                          /* built without brotli */
        {"gzip, br", GZONLY, GZ},
        {"*", GZONLY, GZ},
        {"x-gzip", BOTH, GZ},
        {"GZIP", BOTH, GZ},
        {"gzip;q=2, br;q=0.1", BOTH, BR},            /* the malformed element is skipped */
        {"gzip;q=0.001", BOTH, GZ},
        {"compress, deflate", BOTH, ID},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int got = vial_accept_enc_choose(t[i].h, t[i].h ? strlen(t[i].h) : 0, t[i].avail);
        if (got != t[i].want)
            fail_msg("Accept-Encoding '%s' (avail %u): got %d, want %d", t[i].h ? t[i].h : "(none)",
                     t[i].avail, got, t[i].want);
    }
}

static void test_rank(void **state)
{
    (void)state;
    int r[2];
    assert_int_equal(vial_accept_enc_rank("gzip, br", 8, BOTH, r), 2);
    assert_int_equal(r[0], BR);
    assert_int_equal(r[1], GZ);
    assert_int_equal(vial_accept_enc_rank("gzip, br;q=0.5", 14, BOTH, r), 2);
    assert_int_equal(r[0], GZ);
    assert_int_equal(r[1], BR);
    assert_int_equal(vial_accept_enc_rank("gzip;q=0.5, identity;q=0.7, br", 30, BOTH, r), 1);
    assert_int_equal(r[0], BR);
    assert_int_equal(vial_accept_enc_rank(NULL, 0, BOTH, r), 0);
}

/* --- through the test client ------------------------------------------------------------ */

static char big[8192];

static void fill_big(void)
{
    size_t len = 0;
    for (int k = 1; len + 40 < sizeof big; k++)
        len += (size_t)snprintf(big + len, sizeof big - len, "line %d of a compressible body\n", k);
    memset(big + len, '.', sizeof big - len);
}

static int text_view(vial_req *rq, vial_res *rs)
{
    int64_t n = 0;
    vial_req_arg_int(rq, "n", 4000, 0, (int64_t)sizeof big, &n);
    const char *type = vial_req_arg(rq, "type");
    vial_res_set_status(rs, 200);
    vial_res_set_body_static(rs, big, (size_t)n);
    vial_res_add_header(rs, "Content-Type", type ? type : "text/html; charset=utf-8");
    vial_res_add_header(rs, "ETag", "\"abc\"");
    if (vial_req_arg(rq, "ce"))
        vial_res_add_header(rs, "Content-Encoding", "gzip");
    if (vial_req_arg(rq, "cc"))
        vial_res_add_header(rs, "Cache-Control", vial_req_arg(rq, "cc"));
    for (unsigned i = 0; i < vial_req_arg_list(rq, "vary", NULL, 0); i++) {
        const char *v[4];
        vial_req_arg_list(rq, "vary", v, 4);
        vial_res_add_header(rs, "Vary", v[i]);
    }
    return 0;
}

static int stream_view(vial_req *rq, vial_res *rs)
{
    int r = vial_stream_begin(rs, 200, "text/event-stream");
    for (int i = 0; r == 0 && i < 20; i++)
        r = vial_stream_printf(rs, "data: event %d %s\n\n", i, "padding padding padding");
    return 0;
}

static int status_view(vial_req *rq, vial_res *rs)
{
    int64_t s = 200;
    vial_req_arg_int(rq, "s", 200, 100, 599, &s);
    vial_res_set_status(rs, (int)s);
    vial_res_set_body_static(rs, big, 4000);
    vial_res_add_header(rs, "Content-Type", "text/plain");
    return 0;
}

static vial_app *app_with(const vial_compress_opts *o)
{
    vial_app *app = vial_app_new();
    assert_non_null(app);
    assert_int_equal(vial_route(app, "GET /t", text_view), 0);
    assert_int_equal(vial_route(app, "GET /s", stream_view), 0);
    assert_int_equal(vial_route(app, "GET /status", status_view), 0);
    if (o)
        assert_int_equal(vial_compress(app, o), 0);
    return app;
}

static vial_test_response *get_ae(vial_test_client *c, const char *target, const char *ae)
{
    char h[256];
    snprintf(h, sizeof h, "Accept-Encoding: %s", ae);
    const char *hs[] = {h, NULL};
    vial_test_response *r = vial_test_client_request(c, "GET", target, ae ? hs : NULL, NULL, 0);
    assert_non_null(r);
    return r;
}

static size_t gunzip(const char *in, size_t n, char *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(inflateInit2(&zs, 16 + 15), Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t got = zs.total_out;
    inflateEnd(&zs);
    return got;
}

static void test_gzip_body(void **state)
{
    (void)state;
    vial_compress_opts o = vial_compress_opts_default();
    vial_app *app = app_with(&o);
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = get_ae(c, "/t?n=4000", "gzip");
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    assert_string_equal(vial_test_response_header(r, "Vary"), "Accept-Encoding");
    assert_string_equal(vial_test_response_header(r, "ETag"), "W/\"abc\"");
    size_t n;
    const char *b = vial_test_response_body(r, &n);
    assert_true(n < 4000);
    static char out[16384];
    assert_int_equal(gunzip(b, n, out, sizeof out), 4000);
    assert_memory_equal(out, big, 4000);
    vial_test_response_free(r);

    /* below the minimum: as it is, Vary still set */
    r = get_ae(c, "/t?n=859", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    assert_string_equal(vial_test_response_header(r, "Vary"), "Accept-Encoding");
    assert_string_equal(vial_test_response_header(r, "ETag"), "\"abc\"");
    vial_test_response_body(r, &n);
    assert_int_equal(n, 859);
    vial_test_response_free(r);
    r = get_ae(c, "/t?n=860", "gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    vial_test_response_free(r);

    /* no Accept-Encoding: identity, Vary */
    r = get_ae(c, "/t", NULL);
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    assert_string_equal(vial_test_response_header(r, "Vary"), "Accept-Encoding");
    vial_test_response_free(r);

    /* not a compressible type: untouched, no Vary */
    r = get_ae(c, "/t?type=image/png", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    assert_null(vial_test_response_header(r, "Vary"));
    vial_test_response_free(r);

    /* parameters and case of the type do not matter */
    r = get_ae(c, "/t?type=Application/JSON;%20charset=utf-8", "gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    vial_test_response_free(r);

    /* already encoded by the app: one Content-Encoding, body as set */
    r = get_ae(c, "/t?ce=1", "gzip, br");
    assert_int_equal(vial_test_response_header_count(r, "Content-Encoding"), 1);
    vial_test_response_body(r, &n);
    assert_int_equal(n, 4000);
    assert_null(vial_test_response_header(r, "Vary"));
    vial_test_response_free(r);

    /* Vary: merged into the app's first, others kept; not twice */
    r = get_ae(c, "/t?vary=Cookie&vary=Origin", "gzip");
    assert_int_equal(vial_test_response_header_count(r, "Vary"), 2);
    assert_string_equal(vial_test_response_header_nth(r, "Vary", 0), "Cookie, Accept-Encoding");
    assert_string_equal(vial_test_response_header_nth(r, "Vary", 1), "Origin");
    vial_test_response_free(r);
    r = get_ae(c, "/t?vary=Origin&vary=accept-encoding", "gzip");
    assert_string_equal(vial_test_response_header_nth(r, "Vary", 0), "Origin");
    assert_string_equal(vial_test_response_header_nth(r, "Vary", 1), "accept-encoding");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    vial_test_response_free(r);
    r = get_ae(c, "/t?vary=*", "gzip");
    assert_int_equal(vial_test_response_header_count(r, "Vary"), 1);
    assert_string_equal(vial_test_response_header(r, "Vary"), "*");
    vial_test_response_free(r);

    /* Cache-Control: no-transform opts out */
    r = get_ae(c, "/t?cc=public,%20no-transform", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    vial_test_response_free(r);
    r = get_ae(c, "/t?cc=no-cache", "gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    vial_test_response_free(r);

    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_statuses(void **state)
{
    (void)state;
    vial_app *app = app_with(NULL);
    assert_int_equal(vial_compress(app, NULL), 0);
    vial_test_client *c = vial_test_client_new(app);
    static const struct {
        int status, compressed;
    } t[] = {{200, 1}, {201, 1}, {404, 1}, {500, 1}, {204, 0}, {205, 0}, {206, 0}, {304, 0}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char target[32];
        snprintf(target, sizeof target, "/status?s=%d", t[i].status);
        vial_test_response *r = get_ae(c, target, "gzip");
        const char *ce = vial_test_response_header(r, "Content-Encoding");
        if (!!ce != t[i].compressed)
            fail_msg("status %d: Content-Encoding %s", t[i].status, ce ? ce : "(none)");
        vial_test_response_free(r);
    }
    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_off_by_default(void **state)
{
    (void)state;
    vial_app *app = app_with(NULL);
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = get_ae(c, "/t", "gzip, br");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    assert_null(vial_test_response_header(r, "Vary"));
    vial_test_response_free(r);
    vial_test_client_free(c);
    vial_app_free(app);
}

/* vial_run's --compress / --no-compress over what the app said. */
static void test_config_switch(void **state)
{
    (void)state;
    vial_app *app = app_with(NULL);
    vial_test_client *c = vial_test_client_new(app);
    assert_int_equal(vial_compress_config(app, -1), 0); /* as the app says: off */
    vial_test_response *r = get_ae(c, "/t", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    vial_test_response_free(r);
    assert_int_equal(vial_compress_config(app, 1), 0); /* --compress: on, defaults */
    r = get_ae(c, "/t", "gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    vial_test_response_free(r);
    assert_int_equal(vial_compress_config(app, 0), 0); /* --no-compress: off */
    r = get_ae(c, "/t", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    assert_null(vial_test_response_header(r, "Vary"));
    vial_test_response_free(r);
    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_options(void **state)
{
    (void)state;
    vial_app *app = app_with(NULL);
    vial_compress_opts o = vial_compress_opts_default();
    o.gzip_level = 10;
    assert_int_equal(vial_compress(app, &o), -EINVAL);
    o.gzip_level = 0;
    assert_int_equal(vial_compress(app, &o), -EINVAL);
    o = vial_compress_opts_default();
    o.br_quality = 12;
    assert_int_equal(vial_compress(app, &o), -EINVAL);
    o = vial_compress_opts_default();
    o.codings = 0;
    assert_int_equal(vial_compress(app, &o), -EINVAL);
    o.codings = 4;
    assert_int_equal(vial_compress(app, &o), -EINVAL);
    static const char *const empty_type[] = {"", NULL};
    o = vial_compress_opts_default();
    o.types = empty_type;
    assert_int_equal(vial_compress(app, &o), -EINVAL);

    /* gzip only, min_size 0, a custom type list */
    static const char *const types[] = {"image/*", "application/x-thing", NULL};
    o = vial_compress_opts_default();
    o.codings = VIAL_COMPRESS_GZIP;
    o.min_size = 0;
    o.types = types;
    assert_int_equal(vial_compress(app, &o), 0);
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = get_ae(c, "/t?n=100&type=image/png", "br, gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    vial_test_response_free(r);
    r = get_ae(c, "/t?n=100&type=text/html", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    vial_test_response_free(r);
    r = get_ae(c, "/t?n=100&type=application/x-thing", "gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    vial_test_response_free(r);
    r = get_ae(c, "/t?n=100&type=application/x-thingy", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    vial_test_response_free(r);
    vial_test_client_free(c);
    vial_app_free(app);
}

static void test_stream_gzip(void **state)
{
    (void)state;
    vial_app *app = app_with(NULL);
    vial_compress_opts o = vial_compress_opts_default();
    o.codings = VIAL_COMPRESS_GZIP;
    assert_int_equal(vial_compress(app, &o), 0);
    vial_test_client *c = vial_test_client_new(app);
    vial_test_response *r = get_ae(c, "/s", "gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    assert_string_equal(vial_test_response_header(r, "Vary"), "Accept-Encoding");
    size_t n;
    const char *b = vial_test_response_body(r, &n);
    static char out[16384];
    size_t got = gunzip(b, n, out, sizeof out);
    char want[4096];
    size_t wl = 0;
    for (int i = 0; i < 20; i++)
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "data: event %d %s\n\n", i, "padding padding padding");
    assert_int_equal(got, wl);
    assert_memory_equal(out, want, wl);
    vial_test_response_free(r);
    vial_test_client_free(c);
    vial_app_free(app);
}

/* vial_send_file with a precompressed sibling beside the file. */
static char sf_path[256];

static int send_file_view(vial_req *rq, vial_res *rs)
{
    return vial_send_file(rq, rs, sf_path, NULL);
}

static void put_file(const char *path, const char *data, time_t mtime)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, strlen(data), f), strlen(data));
    fclose(f);
    struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_send_file_sibling(void **state)
{
    (void)state;
    char dir[] = "/tmp/vial-compress-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char gz[300];
    snprintf(sf_path, sizeof sf_path, "%s/app.js", dir);
    snprintf(gz, sizeof gz, "%s/app.js.gz", dir);
    put_file(sf_path, "console.log('plain');\n", 1700000000);
    put_file(gz, "GZ-BYTES", 1700000000);

    vial_app *app = vial_app_new();
    assert_int_equal(vial_route(app, "GET /f", send_file_view), 0);
    assert_int_equal(vial_compress(app, NULL), 0);
    vial_test_client *c = vial_test_client_new(app);
    size_t n;

    vial_test_response *r = get_ae(c, "/f", "br, gzip");
    assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "gzip");
    assert_string_equal(vial_test_response_header(r, "Vary"), "Accept-Encoding");
    assert_string_equal(vial_test_response_header(r, "Content-Type"), "text/javascript; charset=utf-8");
    const char *b = vial_test_response_body(r, &n);
    assert_int_equal(n, 8);
    assert_memory_equal(b, "GZ-BYTES", 8);
    vial_test_response_free(r);

    r = get_ae(c, "/f", "br"); /* no .br: the file itself */
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    assert_string_equal(vial_test_response_header(r, "Vary"), "Accept-Encoding");
    b = vial_test_response_body(r, &n);
    assert_int_equal(n, 22);
    vial_test_response_free(r);

    /* a sibling older than the file is stale */
    put_file(gz, "GZ-BYTES", 1600000000);
    r = get_ae(c, "/f", "gzip");
    assert_null(vial_test_response_header(r, "Content-Encoding"));
    vial_test_response_free(r);

    vial_test_client_free(c);
    vial_app_free(app);
    unlink(gz);
    unlink(sf_path);
    rmdir(dir);
}

#ifdef VIAL_HAVE_BROTLI
static void test_brotli(void **state)
{
    (void)state;
    vial_app *app = app_with(NULL);
    assert_int_equal(vial_compress(app, NULL), 0);
    vial_test_client *c = vial_test_client_new(app);
    static char out[16384];
    const char *targets[] = {"/t?n=8000", "/s"};
    for (int k = 0; k < 2; k++) {
        vial_test_response *r = get_ae(c, targets[k], "gzip, br");
        assert_string_equal(vial_test_response_header(r, "Content-Encoding"), "br");
        size_t n;
        const char *b = vial_test_response_body(r, &n);
        size_t outn = sizeof out;
        assert_int_equal(BrotliDecoderDecompress(n, (const uint8_t *)b, &outn, (uint8_t *)out),
                         BROTLI_DECODER_RESULT_SUCCESS);
        if (k == 0) {
            assert_int_equal(outn, 8000);
            assert_memory_equal(out, big, 8000);
        } else {
            assert_true(outn > 0 && !memcmp(out, "data: event 0 ", 14));
        }
        vial_test_response_free(r);
    }
    vial_test_client_free(c);
    vial_app_free(app);
}
#endif

int main(void)
{
    fill_big();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_weights),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_choose_table),
        cmocka_unit_test(test_rank),
        cmocka_unit_test(test_gzip_body),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_off_by_default),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_config_switch),
        cmocka_unit_test(test_stream_gzip),
        cmocka_unit_test(test_send_file_sibling),
#ifdef VIAL_HAVE_BROTLI
        cmocka_unit_test(test_brotli),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
