/* Static files: vial_send_file's headers, conditional requests and ranges on
 * hand-built requests; vial_static end to end through the test client,
 * including path traversal attempts (with openat2, and with openat2 blocked
 * by a seccomp filter so the component-walk fallback is exercised). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/app.h"
#include "app/session.h"
#include "http/exchange.h"
#include "http/parser.h"
#include "treq.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__) && defined(SYS_openat2)
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#define HAVE_SECCOMP_TEST 1
#endif

/* --- fixture: a temporary tree ------------------------------------------------------ */

static char base[256];   /* mkdtemp dir: holds secret.txt and root/ */
static char root[300];   /* the served directory */
static char path_buf[512];

static const char *at(const char *rel)
{
    snprintf(path_buf, sizeof path_buf, "%s/%s", root, rel);
    return path_buf;
}

#define MTIME_S 1700000000
#define MTIME_NS 123456789

static void write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    struct timespec ts[2] = {{MTIME_S, MTIME_NS}, {MTIME_S, MTIME_NS}};
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
}

static unsigned char blob[1000];

static int setup(void **st)
{
    snprintf(base, sizeof base, "/tmp/vial_static_XXXXXX");
    if (!mkdtemp(base))
        return -1;
    snprintf(root, sizeof root, "%s/root", base);
    mkdir(root, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/secret.txt", base);
    write_file(p, "top secret", 10);
    write_file(at("hello.txt"), "hello world\n", 12);
    write_file(at("index.html"), "<p>hi</p>", 9);
    write_file(at("empty.txt"), "", 0);
    write_file(at("noext"), "x", 1);
    write_file(at("UPPER.PNG"), "png", 3);
    write_file(at("a b.txt"), "spaced", 6);
    for (size_t i = 0; i < sizeof blob; i++)
        blob[i] = (unsigned char)(i % 251);
    write_file(at("data.bin"), blob, sizeof blob);
    mkdir(at("sub"), 0755);
    write_file(at("sub/a.css"), "a{}", 3);
    mkdir(at("dir"), 0755);
    if (symlink("hello.txt", at("link_in")) < 0 || symlink("../secret.txt", at("link_out")) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/secret.txt", base);
    if (symlink(p, at("link_abs")) < 0 || symlink("..", at("uplink")) < 0 ||
        symlink("/etc", at("etclink")) < 0)
        return -1;
    if (mkfifo(at("fifo"), 0644) < 0)
        return -1;
    return 0;
}

static int teardown(void **st)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

/* --- requests built by hand ---------------------------------------------------------- */

/* HEAD responses: dispatch sets is_head; these tests call send_file directly. */
static treq req_new(const char *method, const char *target, const char *const *headers)
{
    treq t = treq_new(method, target, headers);
    t.rq->is_head = !strcmp(method, "HEAD");
    return t;
}

#define req_free treq_free
#define res_header(rq, name) treq_res_header((rq), (name), 0)

static treq send(const char *method, const char *rel, const char *const *headers, int *rc)
{
    treq t = req_new(method, "/f", headers);
    *rc = vial_send_file(t.rq, &t.rq->res, at(rel), NULL);
    return t;
}

static void etag_of(const char *rel, char *out, size_t n)
{
    struct stat s;
    assert_int_equal(stat(at(rel), &s), 0);
    uint64_t ns = (uint64_t)s.st_mtim.tv_sec * 1000000000u + (uint64_t)s.st_mtim.tv_nsec;
    snprintf(out, n, "\"%" PRIx64 "-%" PRIx64 "\"", ns, (uint64_t)s.st_size);
}

#define LASTMOD "Tue, 14 Nov 2023 22:13:20 GMT" /* MTIME_S */

/* --- vial_send_file --------------------------------------------------------------- */

static void test_send_file_basic(void **st)
{
    int rc;
    treq t = send("GET", "hello.txt", NULL, &rc);
    vial_res *rs = &t.rq->res;
    assert_int_equal(rc, 0);
    assert_int_equal(rs->status, 200);
    assert_string_equal(rs->content_type, "text/plain; charset=utf-8");
    assert_true(rs->file_fd >= 0);
    assert_int_equal(rs->file_off, 0);
    assert_int_equal(rs->body_len, 12);
    char et[64];
    etag_of("hello.txt", et, sizeof et);
    assert_string_equal(res_header(t.rq, "ETag"), et);
    assert_string_equal(res_header(t.rq, "Last-Modified"), LASTMOD);
    assert_string_equal(res_header(t.rq, "Accept-Ranges"), "bytes");
    assert_string_equal(res_header(t.rq, "Cache-Control"), "no-cache");
    assert_null(res_header(t.rq, "Content-Range"));
    char buf[32];
    assert_int_equal(pread(rs->file_fd, buf, sizeof buf, 0), 12);
    assert_memory_equal(buf, "hello world\n", 12);
    req_free(&t);
}

static void test_send_file_content_types(void **st)
{
    static const struct {
        const char *rel, *type;
    } cases[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"sub/a.css", "text/css; charset=utf-8"},
        {"data.bin", "application/octet-stream"},
        {"noext", "application/octet-stream"},
        {"UPPER.PNG", "image/png"},
        {"empty.txt", "text/plain; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        treq t = send("GET", cases[i].rel, NULL, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(t.rq->res.content_type, cases[i].type);
        req_free(&t);
    }
    /* explicit type wins */
    treq t = req_new("GET", "/f", NULL);
    assert_int_equal(vial_send_file(t.rq, &t.rq->res, at("hello.txt"), "application/x-custom"), 0);
    assert_string_equal(t.rq->res.content_type, "application/x-custom");
    req_free(&t);
    /* no header injection through the type */
    t = req_new("GET", "/f", NULL);
    assert_int_equal(vial_send_file(t.rq, &t.rq->res, at("hello.txt"), "text/plain\r\nX: y"), -EINVAL);
    assert_int_equal(t.rq->res.file_fd, -1);
    req_free(&t);
}

static void test_send_file_not_found(void **st)
{
    static const char *const rels[] = {"missing.txt", "dir", "fifo", "hello.txt/"};
    for (size_t i = 0; i < sizeof rels / sizeof rels[0]; i++) {
        int rc;
        treq t = send("GET", rels[i], NULL, &rc);
        assert_int_equal(rc, VIAL_EHTTP(404));
        assert_int_equal(t.rq->res.status, 404);
        assert_int_equal(t.rq->res.file_fd, -1);
        req_free(&t);
    }
    treq t = req_new("GET", "/f", NULL);
    assert_int_equal(vial_send_file(t.rq, &t.rq->res, NULL, NULL), VIAL_EHTTP(404));
    assert_int_equal(vial_send_file(t.rq, &t.rq->res, "", NULL), VIAL_EHTTP(404));
    req_free(&t);
}

static void test_send_file_empty(void **st)
{
    int rc;
    treq t = send("GET", "empty.txt", NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t.rq->res.status, 200);
    assert_int_equal(t.rq->res.body_len, 0);
    req_free(&t);
    const char *h[] = {"Range: bytes=0-", NULL};
    t = send("GET", "empty.txt", h, &rc);
    assert_int_equal(rc, VIAL_EHTTP(416));
    assert_int_equal(t.rq->res.status, 416);
    assert_string_equal(res_header(t.rq, "Content-Range"), "bytes */0");
    req_free(&t);
}

static void expect_status(const char *method, const char *rel, const char *const *h, int status)
{
    int rc;
    treq t = send(method, rel, h, &rc);
    if (t.rq->res.status != status)
        fail_msg("%s %s [%s]: status %d, want %d", method, rel, h && h[0] ? h[0] : "",
                 t.rq->res.status, status);
    if (status == 304) {
        assert_int_equal(rc, 0);
        assert_int_equal(t.rq->res.body_len, 0);
        assert_int_equal(t.rq->res.file_fd, -1);
        assert_non_null(res_header(t.rq, "ETag"));
    } else if (status == 412) {
        assert_int_equal(rc, VIAL_EHTTP(412));
        assert_int_equal(t.rq->res.file_fd, -1);
    } else {
        assert_int_equal(rc, 0);
    }
    req_free(&t);
}

static void test_if_none_match(void **st)
{
    char et[64], h1[128], h2[160], h3[128], h4[160];
    etag_of("hello.txt", et, sizeof et);
    snprintf(h1, sizeof h1, "If-None-Match: %s", et);
    snprintf(h2, sizeof h2, "If-None-Match: \"nope\", \"a,b\" , W/%s", et);
    snprintf(h3, sizeof h3, "If-None-Match: W/%s", et);
    snprintf(h4, sizeof h4, "If-None-Match: \"x\", %s", et);
    const char *a[] = {h1, NULL}, *b[] = {h2, NULL}, *c[] = {h3, NULL}, *d[] = {h4, NULL};
    const char *star[] = {"If-None-Match: *", NULL};
    const char *other[] = {"If-None-Match: \"other\"", NULL};
    const char *junk[] = {"If-None-Match: garbage", NULL};
    expect_status("GET", "hello.txt", a, 304);
    expect_status("HEAD", "hello.txt", a, 304);
    expect_status("GET", "hello.txt", b, 304); /* weak comparison, inside a list */
    expect_status("GET", "hello.txt", c, 304);
    expect_status("GET", "hello.txt", d, 304);
    expect_status("GET", "hello.txt", star, 304);
    expect_status("GET", "hello.txt", other, 200);
    expect_status("GET", "hello.txt", junk, 200);
    /* other methods: a matching If-None-Match is a failed precondition */
    expect_status("POST", "hello.txt", a, 412);
    /* another file's tag */
    expect_status("GET", "data.bin", a, 200);
    /* If-None-Match wins over If-Modified-Since */
    const char *both[] = {"If-None-Match: \"other\"", "If-Modified-Since: " LASTMOD, NULL};
    expect_status("GET", "hello.txt", both, 200);
}

static void test_if_modified_since(void **st)
{
    const char *same[] = {"If-Modified-Since: " LASTMOD, NULL};
    const char *later[] = {"If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT", NULL};
    const char *earlier[] = {"If-Modified-Since: Tue, 14 Nov 2023 22:13:19 GMT", NULL};
    const char *obsolete[] = {"If-Modified-Since: Tuesday, 14-Nov-23 22:13:20 GMT", NULL};
    const char *asctime_[] = {"If-Modified-Since: Tue Nov 14 22:13:20 2023", NULL};
    const char *invalid[] = {"If-Modified-Since: yesterday", NULL};
    expect_status("GET", "hello.txt", same, 304);
    expect_status("GET", "hello.txt", later, 304);
    expect_status("GET", "hello.txt", earlier, 200);
    expect_status("GET", "hello.txt", obsolete, 304);
    expect_status("GET", "hello.txt", asctime_, 304);
    expect_status("GET", "hello.txt", invalid, 200);
    expect_status("POST", "hello.txt", same, 200); /* GET/HEAD only */
}

static void test_if_match_and_unmodified_since(void **st)
{
    char et[64], h1[128], h2[128];
    etag_of("hello.txt", et, sizeof et);
    snprintf(h1, sizeof h1, "If-Match: \"x\", %s", et);
    snprintf(h2, sizeof h2, "If-Match: W/%s", et);
    const char *a[] = {h1, NULL}, *weak[] = {h2, NULL};
    const char *star[] = {"If-Match: *", NULL};
    const char *other[] = {"If-Match: \"other\"", NULL};
    expect_status("GET", "hello.txt", a, 200);
    expect_status("GET", "hello.txt", star, 200);
    expect_status("GET", "hello.txt", weak, 412); /* strong comparison */
    expect_status("PUT", "hello.txt", other, 412);
    const char *ius_ok[] = {"If-Unmodified-Since: " LASTMOD, NULL};
    const char *ius_old[] = {"If-Unmodified-Since: Mon, 13 Nov 2023 00:00:00 GMT", NULL};
    expect_status("GET", "hello.txt", ius_ok, 200);
    expect_status("GET", "hello.txt", ius_old, 412);
    /* If-Match present: If-Unmodified-Since is not evaluated */
    const char *both[] = {"If-Match: *", "If-Unmodified-Since: Mon, 13 Nov 2023 00:00:00 GMT", NULL};
    expect_status("GET", "hello.txt", both, 200);
}

/* Range on data.bin (1000 bytes): expected status, offset, length. */
static void expect_range(const char *method, const char *const *h, int status, int64_t off,
                         size_t len, const char *content_range)
{
    int rc;
    treq t = send(method, "data.bin", h, &rc);
    vial_res *rs = &t.rq->res;
    if (rs->status != status)
        fail_msg("[%s]: status %d, want %d", h[0], rs->status, status);
    if (status == 416) {
        assert_int_equal(rc, VIAL_EHTTP(416));
        assert_int_equal(rs->file_fd, -1);
    } else {
        assert_int_equal(rc, 0);
        assert_int_equal(rs->file_off, off);
        assert_int_equal(rs->body_len, len);
        assert_string_equal(rs->content_type, "application/octet-stream");
    }
    const char *cr = res_header(t.rq, "Content-Range");
    if (content_range)
        assert_string_equal(cr, content_range);
    else
        assert_null(cr);
    req_free(&t);
}

static void test_ranges(void **st)
{
#define R(s) ((const char *[]){"Range: " s, NULL})
    expect_range("GET", R("bytes=0-9"), 206, 0, 10, "bytes 0-9/1000");
    expect_range("GET", R("bytes=990-"), 206, 990, 10, "bytes 990-999/1000");
    expect_range("GET", R("bytes=-10"), 206, 990, 10, "bytes 990-999/1000");
    expect_range("GET", R("bytes=995-2000"), 206, 995, 5, "bytes 995-999/1000");
    expect_range("GET", R("bytes=-5000"), 206, 0, 1000, "bytes 0-999/1000");
    expect_range("GET", R("bytes=999-999"), 206, 999, 1, "bytes 999-999/1000");
    expect_range("GET", R("BYTES = 5-6 "), 206, 5, 2, "bytes 5-6/1000");
    expect_range("GET", R("bytes=5-6,"), 206, 5, 2, "bytes 5-6/1000");
    expect_range("GET", R("bytes=0-99999999999999999999999"), 206, 0, 1000, "bytes 0-999/1000");
    expect_range("HEAD", R("bytes=0-9"), 206, 0, 10, "bytes 0-9/1000");
    /* unsatisfiable */
    expect_range("GET", R("bytes=1000-"), 416, 0, 0, "bytes */1000");
    expect_range("GET", R("bytes=1000-2000"), 416, 0, 0, "bytes */1000");
    expect_range("GET", R("bytes=-0"), 416, 0, 0, "bytes */1000");
    expect_range("GET", R("bytes=99999999999999999999999-"), 416, 0, 0, "bytes */1000");
    /* ignored: several ranges, invalid syntax, other units, other methods */
    expect_range("GET", R("bytes=0-1,5-6"), 200, 0, 1000, NULL);
    expect_range("GET", R("bytes=5-1"), 200, 0, 1000, NULL);
    expect_range("GET", R("bytes=abc"), 200, 0, 1000, NULL);
    expect_range("GET", R("bytes=-"), 200, 0, 1000, NULL);
    expect_range("GET", R("bytes=1-2x"), 200, 0, 1000, NULL);
    expect_range("GET", R("bytes 0-1"), 200, 0, 1000, NULL);
    expect_range("GET", R("bytes="), 200, 0, 1000, NULL);
    expect_range("GET", R("items=0-1"), 200, 0, 1000, NULL);
    expect_range("POST", R("bytes=0-1"), 200, 0, 1000, NULL);
#undef R
}

static void test_if_range(void **st)
{
    char et[64], h1[128], h2[128];
    etag_of("data.bin", et, sizeof et);
    snprintf(h1, sizeof h1, "If-Range: %s", et);
    snprintf(h2, sizeof h2, "If-Range: W/%s", et);
    const char *match[] = {"Range: bytes=0-9", h1, NULL};
    const char *weak[] = {"Range: bytes=0-9", h2, NULL};
    const char *other[] = {"Range: bytes=0-9", "If-Range: \"other\"", NULL};
    const char *date_ok[] = {"Range: bytes=0-9", "If-Range: " LASTMOD, NULL};
    const char *date_old[] = {"Range: bytes=0-9", "If-Range: Mon, 13 Nov 2023 00:00:00 GMT", NULL};
    const char *date_bad[] = {"Range: bytes=0-9", "If-Range: soon", NULL};
    expect_range("GET", match, 206, 0, 10, "bytes 0-9/1000");
    expect_range("GET", weak, 200, 0, 1000, NULL);
    expect_range("GET", other, 200, 0, 1000, NULL);
    expect_range("GET", date_ok, 206, 0, 10, "bytes 0-9/1000");
    expect_range("GET", date_old, 200, 0, 1000, NULL);
    expect_range("GET", date_bad, 200, 0, 1000, NULL);
    /* If-Range never turns a 416 into anything else but a full 200 */
    const char *unsat_other[] = {"Range: bytes=5000-", "If-Range: \"other\"", NULL};
    expect_range("GET", unsat_other, 200, 0, 1000, NULL);
}

static void test_head_and_repeat(void **st)
{
    int rc;
    treq t = send("HEAD", "hello.txt", NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t.rq->res.status, 200);
    assert_int_equal(t.rq->res.body_len, 12); /* Content-Length of the GET */
    /* a second send on the same response replaces the first (no fd leak:
     * fds are checked below) */
    int before = t.rq->res.file_fd;
    assert_int_equal(vial_send_file(t.rq, &t.rq->res, at("data.bin"), NULL), 0);
    assert_int_equal(t.rq->res.body_len, 1000);
    assert_int_equal(fcntl(before, F_GETFD) == -1 || before == t.rq->res.file_fd, 1);
    req_free(&t);
}

/* --- vial_static end to end ------------------------------------------------------------ */

static vial_app *static_app(void)
{
    vial_app *app = vial_app_new();
    assert_non_null(app);
    assert_int_equal(vial_static(app, "/static/", root), 0);
    return app;
}

static int get_status(vial_test_client *c, const char *method, const char *target,
                      const char *const *headers, const char *want_body)
{
    vial_test_response *r = vial_test_client_request(c, method, target, headers, NULL, 0);
    assert_non_null(r);
    int s = vial_test_response_status(r);
    if (want_body && s == 200) {
        size_t n;
        const char *b = vial_test_response_body(r, &n);
        if (strcmp(b, want_body))
            fail_msg("%s: body '%s', want '%s'", target, b, want_body);
    }
    vial_test_response_free(r);
    return s;
}

static const char *const traversals[] = {
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/..%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/sub/..%2F..%2Fsecret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/..%5Csecret.txt",
    "/static/sub%5C..%5C..%5Csecret.txt",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/static/link_out",
    "/static/link_abs",
    "/static/uplink/secret.txt",
    "/static/etclink/passwd",
    "/static/hello.txt%00.png",
    "/static/sub/%00",
    "/static/dir",
    "/static/dir/",
    "/static/sub",
    "/static/fifo",
    "/static/missing.txt",
    "/static/.",
    "/static/./sub/..",
    "/static/%2e",
};

static void check_traversals(vial_test_client *c)
{
    for (size_t i = 0; i < sizeof traversals / sizeof traversals[0]; i++) {
        int s = get_status(c, "GET", traversals[i], NULL, NULL);
        if (s != 404)
            fail_msg("%s: %d, want 404", traversals[i], s);
    }
}

static void test_static_serves(void **st)
{
    vial_app *app = static_app();
    vial_test_client *c = vial_test_client_new(app);
    assert_non_null(c);

    vial_test_response *r = vial_test_client_get(c, "/static/hello.txt");
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_body(r, NULL), "hello world\n");
    assert_string_equal(vial_test_response_header(r, "Content-Type"), "text/plain; charset=utf-8");
    assert_string_equal(vial_test_response_header(r, "Content-Length"), "12");
    assert_string_equal(vial_test_response_header(r, "Last-Modified"), LASTMOD);
    char etag[64];
    snprintf(etag, sizeof etag, "%s", vial_test_response_header(r, "ETag"));
    vial_test_response_free(r);

    assert_int_equal(get_status(c, "GET", "/static/sub/a.css", NULL, "a{}"), 200);
    assert_int_equal(get_status(c, "GET", "/static/a%20b.txt", NULL, "spaced"), 200);
    assert_int_equal(get_status(c, "GET", "/static/sub/./a.css", NULL, "a{}"), 200);
    assert_int_equal(get_status(c, "GET", "/static/sub//a.css", NULL, "a{}"), 200);
    /* a symlink that stays inside the directory is served (openat2) */
    assert_int_equal(get_status(c, "GET", "/static/link_in", NULL, "hello world\n"), 200);

    /* HEAD: the headers of GET, no body */
    r = vial_test_client_request(c, "HEAD", "/static/hello.txt", NULL, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_header(r, "Content-Length"), "12");
    size_t n;
    vial_test_response_body(r, &n);
    assert_int_equal(n, 0);
    vial_test_response_free(r);

    /* revalidation */
    char inm[96];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *h[] = {inm, NULL};
    r = vial_test_client_request(c, "GET", "/static/hello.txt", h, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 304);
    assert_null(vial_test_response_header(r, "Content-Length"));
    vial_test_response_body(r, &n);
    assert_int_equal(n, 0);
    vial_test_response_free(r);

    /* a range */
    const char *rh[] = {"Range: bytes=6-10", NULL};
    r = vial_test_client_request(c, "GET", "/static/hello.txt", rh, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 206);
    assert_string_equal(vial_test_response_body(r, NULL), "world");
    assert_string_equal(vial_test_response_header(r, "Content-Range"), "bytes 6-10/12");
    assert_string_equal(vial_test_response_header(r, "Content-Length"), "5");
    vial_test_response_free(r);

    /* 416 goes through the error handling and keeps Content-Range */
    const char *bad[] = {"Range: bytes=50-", NULL};
    r = vial_test_client_request(c, "GET", "/static/hello.txt", bad, NULL, 0);
    assert_int_equal(vial_test_response_status(r), 416);
    assert_string_equal(vial_test_response_header(r, "Content-Range"), "bytes */12");
    vial_test_response_free(r);

    /* GET only (HEAD and OPTIONS automatic) */
    assert_int_equal(get_status(c, "POST", "/static/hello.txt", NULL, NULL), 405);

    check_traversals(c);
    vial_test_client_free(c);
    vial_static_release(app);
    vial_app_free(app);
}

static void test_static_registration(void **st)
{
    vial_app *app = vial_app_new();
    assert_int_equal(vial_static(app, "static", root), -EINVAL);
    assert_int_equal(vial_static(app, NULL, root), -EINVAL);
    assert_int_equal(vial_static(app, "/s", NULL), -EINVAL);
    assert_int_equal(vial_static(NULL, "/s", root), -EINVAL);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope", base);
    assert_int_equal(vial_static(app, "/s", missing), -ENOENT);
    assert_int_equal(vial_static(app, "/s", at("hello.txt")), -ENOTDIR);
    /* mounted at the root; a relative directory is resolved now */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(base), 0);
    assert_int_equal(vial_static(app, "/", "root"), 0);
    assert_int_equal(chdir(cwd), 0);
    /* one "static" endpoint per app */
    assert_int_not_equal(vial_static(app, "/other", root), 0);
    vial_test_client *c = vial_test_client_new(app);
    assert_int_equal(get_status(c, "GET", "/hello.txt", NULL, "hello world\n"), 200);
    assert_int_equal(get_status(c, "GET", "/sub/a.css", NULL, "a{}"), 200);
    assert_int_equal(get_status(c, "GET", "/../secret.txt", NULL, NULL), 404);
    vial_test_client_free(c);
    vial_static_release(app);
    vial_app_free(app);
}

static void test_static_url_for(void **st)
{
    vial_app *app = static_app();
    treq t = req_new("GET", "/", NULL);
    vial_rqs(t.rq)->app = app;
    const char *u = vial_url_for(t.rq, "static", "filename", "css/a b.css", NULL);
    assert_non_null(u);
    assert_string_equal(u, "/static/css/a%20b.css");
    req_free(&t);
    vial_static_release(app);
    vial_app_free(app);
}

#ifdef HAVE_SECCOMP_TEST
/* openat2 -> ENOSYS for this process, as on old kernels or under container
 * seccomp profiles. */
static int block_openat2(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
#endif

static void test_static_without_openat2(void **st)
{
#ifndef HAVE_SECCOMP_TEST
    skip();
#else
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (block_openat2() < 0)
            _exit(77);
        vial_app *app = static_app();
        vial_test_client *c = vial_test_client_new(app);
        int bad = 0;
        if (get_status(c, "GET", "/static/hello.txt", NULL, "hello world\n") != 200)
            bad |= 1;
        if (get_status(c, "GET", "/static/sub/a.css", NULL, "a{}") != 200)
            bad |= 2;
        if (get_status(c, "GET", "/static/sub/./a.css", NULL, "a{}") != 200)
            bad |= 4;
        /* the fallback follows no symlink at all */
        if (get_status(c, "GET", "/static/link_in", NULL, NULL) != 404)
            bad |= 8;
        for (size_t i = 0; i < sizeof traversals / sizeof traversals[0]; i++)
            if (get_status(c, "GET", traversals[i], NULL, NULL) != 404)
                bad |= 16;
        vial_test_client_free(c);
        vial_static_release(app);
        vial_app_free(app);
        _exit(bad);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
#endif
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Every outcome (200, 206, 304, 404, 412, 416, HEAD, a replaced file, and
 * vial_static's directory opens) leaves no descriptor behind. */
static void test_no_fd_leaks(void **st)
{
    int before = count_fds();
    static const char *const hs[][3] = {
        {NULL},
        {"Range: bytes=0-1", NULL},
        {"Range: bytes=5000-", NULL},
        {"If-None-Match: *", NULL},
        {"If-Match: \"x\"", NULL},
        {"If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT", NULL},
    };
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
            int rc;
            treq t = send(round == 1 ? "HEAD" : "GET", "data.bin", hs[i], &rc);
            req_free(&t);
        }
        int rc;
        treq t = send("GET", "missing", NULL, &rc);
        req_free(&t);
        t = send("GET", "dir", NULL, &rc);
        req_free(&t);
        t = send("GET", "hello.txt", NULL, &rc);
        vial_send_file(t.rq, &t.rq->res, at("data.bin"), NULL);
        req_free(&t);
    }
    vial_app *app = static_app();
    vial_test_client *c = vial_test_client_new(app);
    get_status(c, "GET", "/static/hello.txt", NULL, NULL);
    get_status(c, "GET", "/static/sub/a.css", NULL, NULL);
    check_traversals(c);
    vial_test_client_free(c);
    vial_static_release(app);
    vial_app_free(app);
    assert_int_equal(count_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_file_basic),
        cmocka_unit_test(test_send_file_content_types),
        cmocka_unit_test(test_send_file_not_found),
        cmocka_unit_test(test_send_file_empty),
        cmocka_unit_test(test_if_none_match),
        cmocka_unit_test(test_if_modified_since),
        cmocka_unit_test(test_if_match_and_unmodified_since),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_head_and_repeat),
        cmocka_unit_test(test_static_serves),
        cmocka_unit_test(test_static_registration),
        cmocka_unit_test(test_static_url_for),
        cmocka_unit_test(test_static_without_openat2),
        cmocka_unit_test(test_no_fd_leaks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
