/* Form bodies: urlencoded (spec §2 rules) and multipart/form-data (RFC 7578),
 * through vial_req_form* / vial_req_file* / vial_req_parse_form, and the
 * incremental multipart machine (app/multipart.h) fed in pieces. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/multipart.h"
#include "app/request_state.h"
#include "http/exchange.h"

/* --- helpers ---------------------------------------------------------------- */

static vial_req *mkreq(const char *content_type, const void *body, size_t len)
{
    vial_req *rq = calloc(1, sizeof *rq);
    assert_non_null(rq);
    vial_exchange_init(rq, NULL, NULL);
    assert_non_null(vial_req_state_attach(rq, NULL));
    if (content_type) {
        vial_http_field *h = &rq->head.headers[rq->head.nheaders++];
        h->name.p = "Content-Type";
        h->name.len = 12;
        h->value.p = content_type;
        h->value.len = strlen(content_type);
    }
    rq->body = body;
    rq->body_len = len;
    return rq;
}

static void freereq(vial_req *rq)
{
    vial_exchange_fini(rq);
    free(rq);
}

/* A growing byte buffer to assemble bodies (they may hold NULs). */
typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n);
}

#define CT_MP "multipart/form-data; boundary=XyZ123"

/* one part with boundary XyZ123 */
static void part(buf *b, const char *headers, const void *data, size_t n)
{
    puts_(b, "--XyZ123\r\n");
    puts_(b, headers);
    puts_(b, "\r\n");
    put(b, data, n);
    puts_(b, "\r\n");
}

static void field(buf *b, const char *name, const char *value)
{
    char h[512];
    snprintf(h, sizeof h, "Content-Disposition: form-data; name=\"%s\"\r\n", name);
    part(b, h, value, strlen(value));
}

static void close_(buf *b)
{
    puts_(b, "--XyZ123--\r\n");
}

/* --- urlencoded ----------------------------------------------------------------- */

#define CT_URL "application/x-www-form-urlencoded"

static vial_req *url(const char *body)
{
    return mkreq(CT_URL, body, strlen(body));
}

static void expect_field(vial_req *rq, unsigned i, const char *name, const char *value)
{
    const char *n, *v;
    assert_int_equal(vial_req_form_at(rq, i, &n, &v), 0);
    assert_string_equal(n, name);
    assert_string_equal(v, value);
}

static void test_url_basic(void **state)
{
    (void)state;
    vial_req *rq = url("a=1&b=two");
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_form_count(rq), 2);
    assert_string_equal(vial_req_form(rq, "a"), "1");
    assert_string_equal(vial_req_form(rq, "b"), "two");
    assert_null(vial_req_form(rq, "c"));
    assert_int_equal(vial_req_file_count(rq), 0);
    freereq(rq);
}

static void test_url_repeated_in_order(void **state)
{
    (void)state;
    vial_req *rq = url("a=1&b=x&a=2&a=3");
    assert_int_equal(vial_req_form_count(rq), 4);
    assert_string_equal(vial_req_form(rq, "a"), "1");
    expect_field(rq, 0, "a", "1");
    expect_field(rq, 1, "b", "x");
    expect_field(rq, 2, "a", "2");
    expect_field(rq, 3, "a", "3");
    const char *n, *v;
    assert_int_equal(vial_req_form_at(rq, 4, &n, &v), -ERANGE);
    freereq(rq);
}

static void test_url_empty_pieces_and_equals(void **state)
{
    (void)state;
    vial_req *rq = url("&&a=1&&b&=v&c=&d=x=y&");
    assert_int_equal(vial_req_form_count(rq), 5);
    expect_field(rq, 0, "a", "1");
    expect_field(rq, 1, "b", "");
    expect_field(rq, 2, "", "v");
    expect_field(rq, 3, "c", "");
    expect_field(rq, 4, "d", "x=y");
    freereq(rq);
}

static void test_url_decoding(void **state)
{
    (void)state;
    vial_req *rq = url("q=a+b%20c%2B&e=%E2%82%AC&p=100%25&bad=100%&zz=%zz&k%20+y=1&u=%FF");
    assert_string_equal(vial_req_form(rq, "q"), "a b c+");
    assert_string_equal(vial_req_form(rq, "e"), "\xe2\x82\xac");
    assert_string_equal(vial_req_form(rq, "p"), "100%");
    assert_string_equal(vial_req_form(rq, "bad"), "100%");
    assert_string_equal(vial_req_form(rq, "zz"), "%zz");
    assert_string_equal(vial_req_form(rq, "k  y"), "1");
    assert_string_equal(vial_req_form(rq, "u"), "\xef\xbf\xbd");
    freereq(rq);
}

static void test_url_content_type_params_case(void **state)
{
    (void)state;
    const char *body = "a=1";
    vial_req *rq = mkreq("Application/X-WWW-Form-URLencoded ; charset=UTF-8", body, 3);
    assert_string_equal(vial_req_form(rq, "a"), "1");
    freereq(rq);
}

static void test_other_content_types_empty(void **state)
{
    (void)state;
    const char *body = "a=1&b=2";
    const char *types[] = {NULL, "text/plain", "application/json", "application/x-www-form-urlencodedx",
                           "multipart/mixed; boundary=XyZ123", ""};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        vial_req *rq = mkreq(types[i], body, strlen(body));
        /* A body that is not a form: 415 from the explicit parse (with a
         * message for the error handler), an empty form for the accessors. */
        assert_int_equal(vial_req_parse_form(rq), VIAL_EHTTP(415));
        assert_int_equal(vial_rqs(rq)->helper_code, VIAL_EHTTP(415));
        assert_non_null(vial_rqs(rq)->helper_msg);
        assert_false(vial_rqs(rq)->aborted); /* the view may still recover */
        assert_int_equal(vial_req_form_count(rq), 0);
        assert_null(vial_req_form(rq, "a"));
        assert_int_equal(vial_req_file_count(rq), 0);
        freereq(rq);
        rq = mkreq(types[i], "", 0); /* no body: nothing to refuse */
        assert_int_equal(vial_req_parse_form(rq), 0);
        freereq(rq);
    }
}

static void test_url_empty_body(void **state)
{
    (void)state;
    vial_req *rq = url("");
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_form_count(rq), 0);
    freereq(rq);
}

static void test_url_many_fields(void **state)
{
    (void)state;
    /* up to the limit (vial_config.max_fields, 1000 under the test client):
     * every field found by name (through the hash index) */
    buf b = {0};
    for (int i = 0; i < 1000; i++)
        putf(&b, "%sk%d=v%d", i ? "&" : "", i, i);
    vial_req *rq = url(b.p);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_form_count(rq), 1000);
    expect_field(rq, 999, "k999", "v999");
    char k[16], v[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_string_equal(vial_req_form(rq, k), v);
    }
    assert_null(vial_req_form(rq, "k1000"));
    freereq(rq);
    /* one more: 413 naming the limit, and the form reads as empty */
    putf(&b, "&k1000=v1000");
    rq = url(b.p);
    assert_int_equal(vial_req_parse_form(rq), VIAL_EHTTP(413));
    assert_int_equal(vial_req_form_count(rq), 0);
    freereq(rq);
    free(b.p);
}

static void test_url_field_lists(void **state)
{
    (void)state;
    /* getlist in order, scanned (few fields) and indexed (many) alike */
    for (int many = 0; many < 2; many++) {
        buf b = {0};
        putf(&b, "a=1&b=x&a=2");
        for (int i = 0; many && i < 40; i++)
            putf(&b, "&f%d=%d&a=%d", i, i, i + 3);
        vial_req *rq = url(b.p);
        const char *vals[64];
        unsigned n = vial_req_form_list(rq, "a", vals, 64);
        assert_int_equal(n, many ? 42 : 2);
        assert_string_equal(vals[0], "1");
        assert_string_equal(vals[1], "2");
        if (many)
            assert_string_equal(vals[41], "42");
        assert_int_equal(vial_req_form_list(rq, "a", vals, 1), n); /* the count, even past cap */
        assert_int_equal(vial_req_form_list(rq, "b", vals, 64), 1);
        assert_string_equal(vals[0], "x");
        assert_int_equal(vial_req_form_list(rq, "zz", vals, 64), 0);
        freereq(rq);
        free(b.p);
    }
}

/* --- multipart: valid ----------------------------------------------------------------- */

static void test_mp_fields_and_file(void **state)
{
    (void)state;
    buf b = {0};
    field(&b, "title", "Hello");
    part(&b,
         "Content-Disposition: form-data; name=\"doc\"; filename=\"notes.txt\"\r\n"
         "Content-Type: text/plain\r\n",
         "line 1\r\nline 2\n", 15);
    field(&b, "tag", "a");
    field(&b, "tag", "b");
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_form_count(rq), 3);
    expect_field(rq, 0, "title", "Hello");
    expect_field(rq, 1, "tag", "a");
    expect_field(rq, 2, "tag", "b");
    assert_int_equal(vial_req_file_count(rq), 1);
    const vial_file *f = vial_req_file(rq, "doc");
    assert_non_null(f);
    assert_ptr_equal(f, vial_req_file_at(rq, 0));
    assert_null(vial_req_file_at(rq, 1));
    assert_null(vial_req_file(rq, "title"));
    assert_string_equal(f->field, "doc");
    assert_string_equal(f->filename, "notes.txt");
    assert_string_equal(f->content_type, "text/plain");
    assert_int_equal(f->size, 15);
    assert_null(f->path);
    assert_memory_equal(f->data, "line 1\r\nline 2\n", 15);
    /* zero copy: the bytes are the body's */
    assert_true((const char *)f->data > b.p && (const char *)f->data + f->size < b.p + b.n);
    freereq(rq);
    free(b.p);
}

static void test_mp_boundary_forms(void **state)
{
    (void)state;
    /* quoted (with characters a token cannot hold), upper-case parameter
     * name, other parameters first, whitespace around ';' and '=' */
    struct {
        const char *ct, *boundary;
    } cases[] = {
        {"multipart/form-data; boundary=\"a b:c?\"", "a b:c?"},
        {"multipart/form-data; BOUNDARY=simple", "simple"},
        {"Multipart/Form-Data;charset=utf-8;boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
         "----WebKitFormBoundary7MA4YWxkTrZu0gW"},
        {"multipart/form-data ;  boundary = spaced ; x=y", "spaced"},
        {"multipart/form-data; boundary=\"q\\\"uo\\\\te\"", "q\"uo\\te"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf b = {0};
        putf(&b, "--%s\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv%zu\r\n--%s--\r\n",
             cases[i].boundary, i, cases[i].boundary);
        vial_req *rq = mkreq(cases[i].ct, b.p, b.n);
        assert_int_equal(vial_req_parse_form(rq), 0);
        char want[8];
        snprintf(want, sizeof want, "v%zu", i);
        assert_string_equal(vial_req_form(rq, "k"), want);
        freereq(rq);
        free(b.p);
    }
}

static void test_mp_preamble_epilogue_padding(void **state)
{
    (void)state;
    buf b = {0};
    puts_(&b, "This is the preamble. --XyZ12 is not it.\r\n--XyZ1\r\nnor this\r\n");
    puts_(&b, "--XyZ123 \t \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n");
    puts_(&b, "--XyZ123--\r\nThis is the epilogue.\r\n--XyZ123\r\ngarbage without headers");
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_form_count(rq), 1);
    assert_string_equal(vial_req_form(rq, "a"), "1");
    freereq(rq);
    free(b.p);
}

static void test_mp_crlf_before_first_delimiter(void **state)
{
    (void)state;
    const char *body = "\r\n--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--";
    vial_req *rq = mkreq(CT_MP, body, strlen(body));
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_string_equal(vial_req_form(rq, "a"), "1");
    freereq(rq);
}

static void test_mp_close_without_crlf(void **state)
{
    (void)state;
    const char *body = "--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--";
    vial_req *rq = mkreq(CT_MP, body, strlen(body));
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_string_equal(vial_req_form(rq, "a"), "1");
    freereq(rq);
}

static void test_mp_data_with_delimiter_lookalikes(void **state)
{
    (void)state;
    /* CRLF, "--", and prefixes of the delimiter inside the data stay data */
    const char *v = "x\r\n\r\n--\r\n--XyZ12\r\n--XyZ12!\r--XyZ123\n-\r\r\n-";
    buf b = {0};
    field(&b, "v", v);
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_string_equal(vial_req_form(rq, "v"), v);
    freereq(rq);
    free(b.p);
}

static void test_mp_empty_values_and_files(void **state)
{
    (void)state;
    buf b = {0};
    field(&b, "empty", "");
    part(&b, "Content-Disposition: form-data; name=\"f\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n", "", 0);
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_string_equal(vial_req_form(rq, "empty"), "");
    /* filename="" is still a file (a browser's empty file input) */
    assert_int_equal(vial_req_file_count(rq), 1);
    const vial_file *f = vial_req_file(rq, "f");
    assert_non_null(f);
    assert_string_equal(f->filename, "");
    assert_int_equal(f->size, 0);
    assert_non_null(f->data);
    assert_null(f->path);
    freereq(rq);
    free(b.p);
}

static void test_mp_binary_file(void **state)
{
    (void)state;
    unsigned char data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 37 + (i >> 3));
    data[10] = 0;
    data[11] = '\r';
    data[12] = '\n';
    buf b = {0};
    part(&b, "Content-Disposition: form-data; name=\"bin\"; filename=\"x.bin\"\r\n", data, sizeof data);
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    const vial_file *f = vial_req_file(rq, "bin");
    assert_non_null(f);
    assert_int_equal(f->size, sizeof data);
    assert_memory_equal(f->data, data, sizeof data);
    assert_null(f->content_type);
    freereq(rq);
    free(b.p);
}

static void test_mp_filename_forms(void **state)
{
    (void)state;
    buf b = {0};
    part(&b, "Content-Disposition: form-data; name=\"a\"; filename=\"q\\\"uote\\\\d.txt\"\r\n", "1", 1);
    part(&b, "Content-Disposition: form-data; name=\"b\"; filename*=UTF-8''%E2%82%AC%20rates.txt\r\n", "2", 1);
    part(&b,
         "Content-Disposition: form-data; name=\"c\"; filename*=utf-8'en'%C3%A9t%C3%A9.txt; filename=\"fallback.txt\"\r\n",
         "3", 1);
    part(&b, "Content-Disposition: form-data; name=\"d\"; filename=\"caf\xc3\xa9 \xe6\x97\xa5.txt\"\r\n", "4", 1);
    part(&b, "content-disposition: FORM-DATA; NAME=e; FILENAME=plain.txt\r\n", "5", 1);
    part(&b, "Content-Disposition: form-data; filename=\"semi;colon.txt\"; name=\"f\"\r\n", "6", 1);
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_file_count(rq), 6);
    assert_string_equal(vial_req_file(rq, "a")->filename, "q\"uote\\d.txt");
    assert_string_equal(vial_req_file(rq, "b")->filename, "\xe2\x82\xac rates.txt");
    assert_string_equal(vial_req_file(rq, "c")->filename, "\xc3\xa9t\xc3\xa9.txt");
    assert_string_equal(vial_req_file(rq, "d")->filename, "caf\xc3\xa9 \xe6\x97\xa5.txt");
    assert_string_equal(vial_req_file(rq, "e")->filename, "plain.txt");
    assert_string_equal(vial_req_file(rq, "f")->filename, "semi;colon.txt");
    freereq(rq);
    free(b.p);
}

static void test_mp_utf8_repair(void **state)
{
    (void)state;
    buf b = {0};
    field(&b, "bad", "a\xff" "b\xc0\xaf" "c");
    field(&b, "n\xc3\xa4me", "ok \xe2\x82\xac");
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_string_equal(vial_req_form(rq, "bad"), "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c");
    assert_string_equal(vial_req_form(rq, "n\xc3\xa4me"), "ok \xe2\x82\xac");
    freereq(rq);
    free(b.p);
}

static void test_mp_part_headers(void **state)
{
    (void)state;
    buf b = {0};
    /* extra headers, the second Content-Disposition ignored, no space after ':' */
    part(&b,
         "X-Custom: 1\r\nContent-Disposition:form-data; name=\"a\"; filename=\"a.txt\"\r\n"
         "Content-Disposition: form-data; name=\"other\"\r\n"
         "Content-Type:   image/png  \r\nContent-Transfer-Encoding: binary\r\n",
         "PNG", 3);
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    const vial_file *f = vial_req_file(rq, "a");
    assert_non_null(f);
    assert_string_equal(f->content_type, "image/png");
    freereq(rq);
    free(b.p);
}

static void test_mp_empty_name_allowed(void **state)
{
    (void)state;
    buf b = {0};
    field(&b, "", "v");
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    expect_field(rq, 0, "", "v");
    freereq(rq);
    free(b.p);
}

static void test_mp_no_parts(void **state)
{
    (void)state;
    const char *body = "--XyZ123--\r\n";
    vial_req *rq = mkreq(CT_MP, body, strlen(body));
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_form_count(rq), 0);
    freereq(rq);
}

static void test_mp_1000_parts_ok(void **state)
{
    (void)state;
    buf b = {0};
    for (int i = 0; i < 1000; i++) {
        char n[16];
        snprintf(n, sizeof n, "f%d", i);
        field(&b, n, "x");
    }
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_form_count(rq), 1000);
    expect_field(rq, 999, "f999", "x");
    freereq(rq);
    free(b.p);
}

static void test_mp_header_line_8192_ok(void **state)
{
    (void)state;
    buf b = {0};
    const char *pre = "Content-Disposition: form-data; name=\"a\"; x=\"";
    size_t pad = 8192 - strlen(pre) - 1;
    puts_(&b, "--XyZ123\r\n");
    puts_(&b, pre);
    for (size_t i = 0; i < pad; i++)
        puts_(&b, "p");
    puts_(&b, "\"\r\n\r\nv\r\n");
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_string_equal(vial_req_form(rq, "a"), "v");
    freereq(rq);
    free(b.p);
}

/* --- multipart: spill to a temporary file ------------------------------------------------- */

static char tmpdir[64];

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* One directory for the whole program: form.c reads TMPDIR once (getenv is
 * not safe against a concurrent setenv, so it is not asked per upload). */
static int setup_tmp(void **state)
{
    (void)state;
    if (tmpdir[0])
        return 0;
    strcpy(tmpdir, "/tmp/vial-test-form-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    setenv("TMPDIR", tmpdir, 1);
    return 0;
}

/* each test leaves the directory empty (they check it) */
static int teardown_tmp(void **state)
{
    (void)state;
    return count_files(tmpdir) == 0 ? 0 : -1;
}

static int remove_tmp(void **state)
{
    (void)state;
    return tmpdir[0] ? rmdir(tmpdir) : 0;
}

static void file_part(buf *b, const char *name, size_t size, unsigned seed)
{
    char h[256];
    snprintf(h, sizeof h, "Content-Disposition: form-data; name=\"%s\"; filename=\"%s.bin\"\r\n", name, name);
    puts_(b, "--XyZ123\r\n");
    puts_(b, h);
    puts_(b, "\r\n");
    for (size_t i = 0; i < size; i++) {
        /* bytes that include CRs, LFs and dashes, never the delimiter */
        char c = "\r\n-Xab\0z"[(i * seed + i / 7) % 8];
        put(b, &c, 1);
    }
    puts_(b, "\r\n");
}

static void check_file_bytes(const vial_file *f, size_t size, unsigned seed)
{
    char *got = malloc(size + 1);
    assert_non_null(got);
    if (f->path) {
        FILE *fp = fopen(f->path, "rb");
        assert_non_null(fp);
        assert_int_equal(fread(got, 1, size + 1, fp), size);
        fclose(fp);
    } else {
        memcpy(got, f->data, size);
    }
    for (size_t i = 0; i < size; i++)
        assert_int_equal(got[i], "\r\n-Xab\0z"[(i * seed + i / 7) % 8]);
    free(got);
}

static void test_mp_spill_threshold(void **state)
{
    (void)state;
    buf b = {0};
    file_part(&b, "at", 65536, 3);
    file_part(&b, "over", 65537, 5);
    file_part(&b, "big", 700000, 7);
    /* a field is never spilled, whatever its size */
    puts_(&b, "--XyZ123\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n");
    for (int i = 0; i < 70000; i++)
        puts_(&b, "t");
    puts_(&b, "\r\n");
    close_(&b);
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), 0);
    assert_int_equal(vial_req_file_count(rq), 3);

    const vial_file *at = vial_req_file(rq, "at");
    assert_int_equal(at->size, 65536);
    assert_non_null(at->data);
    assert_null(at->path);
    check_file_bytes(at, 65536, 3);

    const vial_file *over = vial_req_file(rq, "over");
    assert_int_equal(over->size, 65537);
    assert_null(over->data);
    assert_non_null(over->path);
    assert_int_equal(strncmp(over->path, tmpdir, strlen(tmpdir)), 0);
    struct stat st;
    assert_int_equal(stat(over->path, &st), 0);
    assert_int_equal(st.st_size, 65537);
    check_file_bytes(over, 65537, 5);

    const vial_file *big = vial_req_file(rq, "big");
    assert_int_equal(big->size, 700000);
    assert_non_null(big->path);
    check_file_bytes(big, 700000, 7);

    assert_int_equal(strlen(vial_req_form(rq, "text")), 70000);
    assert_int_equal(count_files(tmpdir), 2);
    char *p1 = strdup(over->path), *p2 = strdup(big->path);
    freereq(rq);
    /* deleted when the request ends */
    assert_int_equal(count_files(tmpdir), 0);
    assert_int_equal(access(p1, F_OK), -1);
    assert_int_equal(access(p2, F_OK), -1);
    free(p1);
    free(p2);
    free(b.p);
}

static void test_mp_spill_then_error_cleans_up(void **state)
{
    (void)state;
    buf b = {0};
    file_part(&b, "over", 100000, 3);
    puts_(&b, "--XyZ123\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nno close");
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), VIAL_EHTTP(400));
    assert_int_equal(vial_req_file_count(rq), 0);
    assert_null(vial_req_file(rq, "over"));
    freereq(rq);
    assert_int_equal(count_files(tmpdir), 0);
    free(b.p);
}

static void test_mp_spill_truncated_inside_file(void **state)
{
    (void)state;
    buf b = {0};
    file_part(&b, "over", 100000, 3);
    b.n -= 2; /* no CRLF, no delimiter: the body ends inside the file */
    vial_req *rq = mkreq(CT_MP, b.p, b.n);
    assert_int_equal(vial_req_parse_form(rq), VIAL_EHTTP(400));
    freereq(rq);
    assert_int_equal(count_files(tmpdir), 0);
    free(b.p);
}

/* --- multipart: malformed ------------------------------------------------------------------ */

static void expect_status(const char *ct, const char *body, size_t len, int status)
{
    vial_req *rq = mkreq(ct, body, len);
    assert_int_equal(vial_req_parse_form(rq), VIAL_EHTTP(status));
    assert_int_equal(vial_req_form_count(rq), 0);
    assert_int_equal(vial_req_file_count(rq), 0);
    assert_null(vial_req_form(rq, "a"));
    assert_null(vial_req_file(rq, "a"));
    assert_null(vial_req_file_at(rq, 0));
    freereq(rq);
}

static void expect_400(const char *ct, const char *body, size_t len)
{
    expect_status(ct, body, len, 400);
}

static void expect_400s(const char *body)
{
    expect_400(CT_MP, body, strlen(body));
}

static void test_mp_bad_boundary_param(void **state)
{
    (void)state;
    const char *body = "--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n";
    expect_400("multipart/form-data", body, strlen(body));
    expect_400("multipart/form-data;", body, strlen(body));
    expect_400("multipart/form-data; boundary=", body, strlen(body));
    expect_400("multipart/form-data; boundary=\"\"", body, strlen(body));
    expect_400("multipart/form-data; boundary=\"XyZ123", body, strlen(body));
    expect_400("multipart/form-data; charset", body, strlen(body));
    expect_400("multipart/form-data; boundaryx=XyZ123", body, strlen(body));
    char longb[300];
    memset(longb, 'b', sizeof longb);
    strcpy(longb + 260, "");
    char ct[400];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", longb);
    expect_400(ct, body, strlen(body));
    /* the lazy accessors see an empty form, and the parse is cached */
    vial_req *rq = mkreq("multipart/form-data", body, strlen(body));
    assert_int_equal(vial_req_form_count(rq), 0);
    assert_int_equal(vial_req_parse_form(rq), VIAL_EHTTP(400));
    freereq(rq);
}

static void test_mp_truncated(void **state)
{
    (void)state;
    expect_400s("");
    expect_400s("just some text, no delimiter at all");
    expect_400s("--XyZ123");
    expect_400s("--XyZ123\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123-");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ12");
}

static void test_mp_missing_disposition_or_name(void **state)
{
    (void)state;
    expect_400s("--XyZ123\r\nContent-Type: text/plain\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name\r\n\r\n1\r\n--XyZ123--\r\n");
    /* a good part, then a bad one: the whole form is rejected */
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                "--XyZ123\r\nContent-Type: x\r\n\r\n2\r\n--XyZ123--\r\n");
}

static void test_mp_header_section_malformed(void **state)
{
    (void)state;
    /* header section without the blank line before the next delimiter */
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n--XyZ123--\r\n");
    /* no colon */
    expect_400s("--XyZ123\r\nContent-Disposition form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    /* empty header name */
    expect_400s("--XyZ123\r\n: x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    /* folded line */
    expect_400s("--XyZ123\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    /* bare LF line endings */
    expect_400s("--XyZ123\nContent-Disposition: form-data; name=\"a\"\n\n1\n--XyZ123--\n");
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\n\r\n1\r\n--XyZ123--\r\n");
    /* bare CR */
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\rX\r\n\r\n1\r\n--XyZ123--\r\n");
}

static void test_mp_delimiter_junk(void **state)
{
    (void)state;
    expect_400s("--XyZ123junk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123\rX\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    expect_400s("--XyZ123  x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123--\r\n");
    /* the delimiter inside data (RFC 2046 forbids it) */
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ1234\r\n--XyZ123--\r\n");
    /* close delimiter with one dash */
    expect_400s("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ123-x\r\n");
}

static void test_mp_header_line_too_long(void **state)
{
    (void)state;
    buf b = {0};
    const char *pre = "Content-Disposition: form-data; name=\"a\"; x=\"";
    size_t pad = 8193 - strlen(pre) - 1;
    puts_(&b, "--XyZ123\r\n");
    puts_(&b, pre);
    for (size_t i = 0; i < pad; i++)
        puts_(&b, "p");
    puts_(&b, "\"\r\n\r\nv\r\n");
    close_(&b);
    expect_400(CT_MP, b.p, b.n);
    free(b.p);
}

static void test_mp_too_many_parts(void **state)
{
    (void)state;
    buf b = {0};
    for (int i = 0; i < 1001; i++)
        field(&b, "f", "x");
    close_(&b);
    expect_status(CT_MP, b.p, b.n, 413); /* Werkzeug's max_form_parts */
    free(b.p);
}

/* --- the machine, fed in pieces ----------------------------------------------------------------- */

/* Events as text: "B" part begin, "H<name>=<value>;", "E" headers end,
 * data bytes appended between "D[" ... "]" per part, "P" part end. Data
 * pieces are merged, so the transcript does not depend on how the input
 * was split. */
typedef struct transcript {
    buf t;
    int in_data;
    const char *body; /* set when fed whole: data must point into it, adjacent */
    size_t body_len;
    const char *last_end;
} transcript;

static int t_begin(void *ud)
{
    transcript *t = ud;
    puts_(&t->t, "B");
    return 0;
}

static int t_header(void *ud, const char *n, size_t nl, const char *v, size_t vl)
{
    transcript *t = ud;
    puts_(&t->t, "H");
    put(&t->t, n, nl);
    puts_(&t->t, "=");
    put(&t->t, v, vl);
    puts_(&t->t, ";");
    return 0;
}

static int t_hend(void *ud)
{
    transcript *t = ud;
    puts_(&t->t, "ED[");
    t->last_end = NULL;
    return 0;
}

static int t_data(void *ud, const char *p, size_t n)
{
    transcript *t = ud;
    assert_true(n > 0);
    if (t->body) {
        assert_true(p >= t->body && p + n <= t->body + t->body_len);
        if (t->last_end)
            assert_ptr_equal(p, t->last_end);
        t->last_end = p + n;
    }
    put(&t->t, p, n);
    return 0;
}

static int t_pend(void *ud)
{
    transcript *t = ud;
    puts_(&t->t, "]P");
    return 0;
}

static const vial_multipart_callbacks tcb = {t_begin, t_header, t_hend, t_data, t_pend};

/* Feeds body in pieces of the given sizes (cycled); returns the result
 * code and fills the transcript. */
static int run_split(const char *boundary, const char *body, size_t len, const size_t *sizes,
                     size_t nsizes, transcript *t, int with_linebuf)
{
    static char linebuf[VIAL_MP_MAX_LINE];
    vial_multipart mp;
    memset(t, 0, sizeof *t);
    puts_(&t->t, "");
    int rc = vial_multipart_init(&mp, boundary, strlen(boundary), &tcb, t,
                                 with_linebuf ? linebuf : NULL, with_linebuf ? sizeof linebuf : 0);
    if (rc)
        return rc;
    size_t off = 0, k = 0;
    if (!nsizes) {
        t->body = body;
        t->body_len = len;
    }
    if (!nsizes) /* whole, in place: data must be spans of body */
        rc = vial_multipart_feed(&mp, body, len), off = len;
    while (off < len && rc == 0) {
        size_t n = nsizes ? sizes[k++ % nsizes] : len;
        if (n > len - off)
            n = len - off;
        /* each piece in its own heap block, so ASan catches reads past it */
        char *piece = malloc(n ? n : 1);
        memcpy(piece, body + off, n);
        rc = vial_multipart_feed(&mp, piece, n);
        free(piece);
        off += n;
    }
    if (rc == 0)
        rc = vial_multipart_finish(&mp);
    return rc;
}

static const char *split_bodies[] = {
    "preamble\r\n--B0undary\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Y:  z \r\n\r\n"
    "data\r\n--B0und\r\n--B0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\n"
    "\r\r\n\r\n-\r\n--\r\n--B\r\n--B0undar\r\n--B0undary--\r\nepilogue",
    "--B0undary\r\nA: 1\r\n\r\n\r\n--B0undary \r\nB: 2\r\n\r\nx\r\n--B0undary--",
    "--B0undary\r\nA: 1\r\n\r\n\r\n--B0undary\r\nB: 2\r\n\r\n--B0undary\r\n", /* truncated */
    "--B0undary\r\nA: 1\r\n\r\nx\r\n--B0undaryX\r\n",                         /* junk */
    "--B0undary\r\nNo colon\r\n\r\nx\r\n--B0undary--",
    "\r\n\r\n--B0undary\r\nA: 1\r\n\r\n\r\n\r\n--B0undary--",
};

static void test_machine_split_invariance(void **state)
{
    (void)state;
    for (size_t bi = 0; bi < sizeof split_bodies / sizeof *split_bodies; bi++) {
        const char *body = split_bodies[bi];
        size_t len = strlen(body);
        transcript whole, t;
        int rc_whole = run_split("B0undary", body, len, NULL, 0, &whole, 1);
        /* fixed piece sizes */
        for (size_t s = 1; s <= len; s++) {
            int rc = run_split("B0undary", body, len, &s, 1, &t, 1);
            assert_int_equal(rc, rc_whole);
            if (rc == 0)
                assert_string_equal(t.t.p, whole.t.p);
            free(t.t.p);
        }
        /* every two-piece split */
        for (size_t cut = 0; cut <= len; cut++) {
            size_t sizes[2] = {cut, len};
            int rc = run_split("B0undary", body, len, sizes, 2, &t, 1);
            assert_int_equal(rc, rc_whole);
            if (rc == 0)
                assert_string_equal(t.t.p, whole.t.p);
            free(t.t.p);
        }
        /* irregular sizes */
        size_t odd[] = {3, 1, 7, 2, 11, 5};
        assert_int_equal(run_split("B0undary", body, len, odd, 6, &t, 1), rc_whole);
        if (rc_whole == 0)
            assert_string_equal(t.t.p, whole.t.p);
        free(t.t.p);
        free(whole.t.p);
    }
}

static void test_machine_transcript(void **state)
{
    (void)state;
    transcript t;
    const char *body = split_bodies[0];
    assert_int_equal(run_split("B0undary", body, strlen(body), NULL, 0, &t, 0), 0);
    assert_string_equal(t.t.p, "BHContent-Disposition=form-data; name=\"a\";HX-Y=z;ED[data\r\n--B0und]P"
                               "BHContent-Disposition=form-data; name=\"f\"; filename=\"f\";ED["
                               "\r\r\n\r\n-\r\n--\r\n--B\r\n--B0undar]P");
    free(t.t.p);
}

static void test_machine_errors(void **state)
{
    (void)state;
    vial_multipart mp;
    assert_int_equal(vial_multipart_init(&mp, "", 0, &tcb, NULL, NULL, 0), VIAL_MP_EBOUNDARY);
    assert_int_equal(vial_multipart_init(&mp, "a\rb", 3, &tcb, NULL, NULL, 0), VIAL_MP_EBOUNDARY);
    char longb[VIAL_MP_MAX_BOUNDARY + 1];
    memset(longb, 'x', sizeof longb);
    assert_int_equal(vial_multipart_init(&mp, longb, sizeof longb, &tcb, NULL, NULL, 0), VIAL_MP_EBOUNDARY);
    assert_int_equal(vial_multipart_init(&mp, longb, VIAL_MP_MAX_BOUNDARY, &tcb, NULL, NULL, 0), 0);

    /* a header line split across feeds needs the line buffer */
    transcript t;
    const char *body = split_bodies[1];
    size_t sizes[] = {15, 1000};
    assert_int_equal(run_split("B0undary", body, strlen(body), sizes, 2, &t, 0), VIAL_MP_ENOBUF);
    free(t.t.p);
    assert_int_equal(run_split("B0undary", body, strlen(body), sizes, 2, &t, 1), 0);
    free(t.t.p);

    /* errors stick; feeding after finish is an error */
    memset(&t, 0, sizeof t);
    assert_int_equal(vial_multipart_init(&mp, "B", 1, &tcb, &t, NULL, 0), 0);
    assert_int_equal(vial_multipart_feed(&mp, "--B\r\nno colon\r\n", 15), VIAL_MP_EHEADER);
    assert_int_equal(vial_multipart_feed(&mp, "x", 1), VIAL_MP_EHEADER);
    assert_int_equal(vial_multipart_finish(&mp), VIAL_MP_EHEADER);
    free(t.t.p);
    memset(&t, 0, sizeof t);
    assert_int_equal(vial_multipart_init(&mp, "B", 1, &tcb, &t, NULL, 0), 0);
    assert_int_equal(vial_multipart_feed(&mp, "--B--", 5), 0);
    assert_int_equal(vial_multipart_finish(&mp), 0);
    assert_int_equal(vial_multipart_feed(&mp, "x", 1), VIAL_MP_ESTATE);
    free(t.t.p);
    assert_non_null(vial_multipart_strerror(VIAL_MP_ETRUNCATED));
}

static int stop_at_data(void *ud, const char *p, size_t n)
{
    (void)ud;
    (void)p;
    (void)n;
    return -42;
}

static void test_machine_callback_stops(void **state)
{
    (void)state;
    vial_multipart_callbacks cb = {0};
    cb.data = stop_at_data;
    vial_multipart mp;
    assert_int_equal(vial_multipart_init(&mp, "B", 1, &cb, NULL, NULL, 0), 0);
    const char *body = "--B\r\nA: b\r\n\r\nxyz\r\n--B--";
    assert_int_equal(vial_multipart_feed(&mp, body, strlen(body)), -42);
    assert_int_equal(vial_multipart_finish(&mp), -42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_basic),
        cmocka_unit_test(test_url_repeated_in_order),
        cmocka_unit_test(test_url_empty_pieces_and_equals),
        cmocka_unit_test(test_url_decoding),
        cmocka_unit_test(test_url_content_type_params_case),
        cmocka_unit_test(test_other_content_types_empty),
        cmocka_unit_test(test_url_empty_body),
        cmocka_unit_test(test_url_many_fields),
        cmocka_unit_test(test_url_field_lists),
        cmocka_unit_test(test_mp_fields_and_file),
        cmocka_unit_test(test_mp_boundary_forms),
        cmocka_unit_test(test_mp_preamble_epilogue_padding),
        cmocka_unit_test(test_mp_crlf_before_first_delimiter),
        cmocka_unit_test(test_mp_close_without_crlf),
        cmocka_unit_test(test_mp_data_with_delimiter_lookalikes),
        cmocka_unit_test(test_mp_empty_values_and_files),
        cmocka_unit_test(test_mp_binary_file),
        cmocka_unit_test(test_mp_filename_forms),
        cmocka_unit_test(test_mp_utf8_repair),
        cmocka_unit_test(test_mp_part_headers),
        cmocka_unit_test(test_mp_empty_name_allowed),
        cmocka_unit_test(test_mp_no_parts),
        cmocka_unit_test(test_mp_1000_parts_ok),
        cmocka_unit_test(test_mp_header_line_8192_ok),
        cmocka_unit_test_setup_teardown(test_mp_spill_threshold, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_mp_spill_then_error_cleans_up, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_mp_spill_truncated_inside_file, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_mp_bad_boundary_param),
        cmocka_unit_test(test_mp_truncated),
        cmocka_unit_test(test_mp_missing_disposition_or_name),
        cmocka_unit_test(test_mp_header_section_malformed),
        cmocka_unit_test(test_mp_delimiter_junk),
        cmocka_unit_test(test_mp_header_line_too_long),
        cmocka_unit_test(test_mp_too_many_parts),
        cmocka_unit_test(test_machine_split_invariance),
        cmocka_unit_test(test_machine_transcript),
        cmocka_unit_test(test_machine_errors),
        cmocka_unit_test(test_machine_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmp);
}
