/* TLS contexts and the non-blocking byte pipe (http/tls.c), over a
 * socketpair with an OpenSSL client on the other end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/tls.h"
#include "runtime/loop.h"

static char dir[64], cert_path[96], key_path[96], other_key_path[96];

static EVP_PKEY *write_key(const char *path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    return pk;
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/vial-test-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    snprintf(other_key_path, sizeof other_key_path, "%s/other.pem", dir);
    EVP_PKEY *pk = write_key(key_path);
    EVP_PKEY_free(write_key(other_key_path));
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    unlink(cert_path);
    unlink(key_path);
    unlink(other_key_path);
    rmdir(dir);
    return 0;
}

static vial_config cfg_with(const char *cert, const char *key)
{
    vial_config c = vial_config_default();
    c.tls_cert = cert;
    c.tls_key = key;
    return c;
}

static void test_new_refuses_bad_files(void **st)
{
    (void)st;
    vial_tls *t = NULL;
    vial_config c = cfg_with("/nonexistent/cert.pem", key_path);
    assert_int_equal(vial_tls_new(&c, &t), -ENOENT);
    assert_null(t);
    c = cfg_with(cert_path, NULL);
    assert_true(vial_tls_wanted(&c));
    assert_int_equal(vial_tls_new(&c, &t), -EINVAL);
    c = cfg_with(cert_path, other_key_path);
    assert_int_equal(vial_tls_new(&c, &t), -EINVAL);
    c = cfg_with(key_path, key_path); /* a key is no certificate */
    assert_int_equal(vial_tls_new(&c, &t), -EINVAL);
    c = cfg_with(cert_path, key_path);
    c.tls_ciphers = "NO-SUCH-CIPHER";
    assert_int_equal(vial_tls_new(&c, &t), -EINVAL);
    c = cfg_with(NULL, NULL);
    assert_false(vial_tls_wanted(&c));
}

/* The client's handshake and the server's, stepped in turn until both end. */
static void handshake(SSL *cli, SSL *srv)
{
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 100 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(cli);
            cdone = r == 1;
            if (!cdone)
                assert_int_equal(SSL_get_error(cli, r), SSL_ERROR_WANT_READ);
        }
        if (!sdone) {
            unsigned want = 0;
            int plain = 1;
            int r = vial_tls_handshake(srv, &want, &plain);
            assert_int_equal(plain, 0);
            sdone = r == 0;
            if (!sdone) {
                assert_int_equal(r, -EAGAIN);
                assert_int_equal(want, VIAL_IO_READ);
            }
        }
    }
    assert_true(cdone && sdone);
}

static void pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
}

static void test_pipe(void **st)
{
    (void)st;
    vial_tls *t;
    vial_config c = cfg_with(cert_path, key_path);
    assert_int_equal(vial_tls_new(&c, &t), 0);
    int fds[2];
    pair(fds);
    SSL *srv = vial_tls_accept(t, fds[0]);
    assert_non_null(srv);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    SSL_CTX_set_alpn_protos(cctx, alpn, sizeof alpn - 1);
    SSL *cli = SSL_new(cctx);
    SSL_set_fd(cli, fds[1]);
    SSL_set_connect_state(cli);
    handshake(cli, srv);

    const unsigned char *sel;
    unsigned sel_len;
    SSL_get0_alpn_selected(cli, &sel, &sel_len);
    assert_int_equal(sel_len, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    assert_int_equal(SSL_version(cli), TLS1_3_VERSION);

    char buf[64];
    unsigned want = 0;
    assert_int_equal(vial_tls_read(srv, buf, sizeof buf, &want), -EAGAIN);
    assert_int_equal(want, VIAL_IO_READ);
    assert_int_equal(SSL_write(cli, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    assert_int_equal(vial_tls_read(srv, buf, sizeof buf, &want), 18);
    assert_memory_equal(buf, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_int_equal(vial_tls_write(srv, "HTTP/1.1 200 OK\r\n\r\n", 19, &want), 19);
    size_t got = 0;
    while (SSL_read_ex(cli, buf, sizeof buf, &got) != 1 && SSL_get_error(cli, 0) == SSL_ERROR_WANT_READ)
        ;
    assert_int_equal(got, 19);
    /* no kTLS on a Unix socket: the caller copies */
    assert_int_equal(vial_tls_sendfile(srv, 0, 0, 1, &want), -EOPNOTSUPP);
    /* the client's close_notify is the end of the stream */
    SSL_shutdown(cli);
    assert_int_equal(vial_tls_read(srv, buf, sizeof buf, &want), 0);
    vial_tls_close_notify(srv);

    SSL_free(cli);
    SSL_free(srv);
    close(fds[0]);
    close(fds[1]);
    SSL_CTX_free(cctx);
    vial_tls_free(t);
}

static void test_plain_http_recognised(void **st)
{
    (void)st;
    vial_tls *t;
    vial_config c = cfg_with(cert_path, key_path);
    assert_int_equal(vial_tls_new(&c, &t), 0);
    int fds[2];
    pair(fds);
    SSL *srv = vial_tls_accept(t, fds[0]);
    assert_int_equal(write(fds[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 27);
    unsigned want = 0;
    int plain = 0;
    assert_int_equal(vial_tls_handshake(srv, &want, &plain), -EPROTO);
    assert_int_equal(plain, 1);
    SSL_free(srv);
    close(fds[0]);
    close(fds[1]);
    /* other garbage is an error too, but not plain HTTP */
    pair(fds);
    srv = vial_tls_accept(t, fds[0]);
    assert_int_equal(write(fds[1], "\x01\x02\x03\x04\x05\x06\x07\x08", 8), 8);
    assert_int_equal(vial_tls_handshake(srv, &want, &plain), -EPROTO);
    assert_int_equal(plain, 0);
    SSL_free(srv);
    close(fds[0]);
    close(fds[1]);
    vial_tls_free(t);
}

static void test_reload_keeps_context_on_failure(void **st)
{
    (void)st;
    vial_tls *t;
    vial_config c = cfg_with(cert_path, key_path);
    assert_int_equal(vial_tls_new(&c, &t), 0);
    int fds[2];
    pair(fds);
    SSL *before = vial_tls_accept(t, fds[0]);
    assert_int_equal(vial_tls_reload(t), 0);
    SSL *after = vial_tls_accept(t, fds[0]);
    /* a new context for new connections; the old SSL keeps its own */
    assert_ptr_not_equal(SSL_get_SSL_CTX(before), SSL_get_SSL_CTX(after));
    /* a key that no longer matches: the reload fails, the context stays */
    c = cfg_with(cert_path, other_key_path);
    vial_tls *t2;
    assert_int_equal(vial_tls_new(&c, &t2), -EINVAL);
    char saved[96];
    snprintf(saved, sizeof saved, "%s/saved.pem", dir);
    assert_int_equal(rename(key_path, saved), 0);
    assert_int_equal(vial_tls_reload(t), -ENOENT);
    SSL *still = vial_tls_accept(t, fds[0]);
    assert_ptr_equal(SSL_get_SSL_CTX(still), SSL_get_SSL_CTX(after));
    assert_int_equal(rename(saved, key_path), 0);
    SSL_free(before);
    SSL_free(after);
    SSL_free(still);
    close(fds[0]);
    close(fds[1]);
    vial_tls_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refuses_bad_files),
        cmocka_unit_test(test_pipe),
        cmocka_unit_test(test_plain_http_recognised),
        cmocka_unit_test(test_reload_keeps_context_on_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
