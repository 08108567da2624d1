/* TLS contexts and the non-blocking TLS byte pipe of a connection (see
 * tls.h). */
#include "http/tls.h"
#include "runtime/log.h"
#include "runtime/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vial_tls {
    pthread_mutex_t lock; /* guards ctx against a reload while SSL_new takes it */
    SSL_CTX *ctx;
    const char *cert, *key, *ciphers;
    int min_version;
    int ktls; /* the kernel offers the tls ULP: let OpenSSL try kTLS */
};

/* The text of the oldest queued OpenSSL error, and the queue cleared: the
 * queue is per thread, and a stale entry would confuse the next
 * SSL_get_error on this thread. */
static const char *ossl_error(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (!e)
        snprintf(buf, cap, "no detail");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

/* An encrypted key would make OpenSSL prompt on the terminal: refuse. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* Opened first so a missing or unreadable file is named with its errno,
 * before OpenSSL reports it in its own words. */
static FILE *open_pem(const char *what, const char *path, int *err)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        char eb[128];
        *err = -errno;
        vial_log(VIAL_LOG_ERROR, "TLS %s %s: %s", what, path, strerror_r(errno, eb, sizeof eb));
    }
    return f;
}

/* --- session tickets ------------------------------------------------------
 * Ticket keys live for the process, not the context, so a certificate
 * reload keeps resumption working. The current key encrypts; the previous
 * one still decrypts (and the ticket is renewed) for one more period. */

#define TICKET_PERIOD_NS (3600ull * 1000000000ull)

typedef struct ticket_key {
    unsigned char name[16], aes[32], hmac[32];
    uint64_t born_ns;
    int valid;
} ticket_key;

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static ticket_key ring[2];

/* Rotates when the current key is a period old; then copies the key named
 * `name` (the current one when NULL) to *out. 0, or -1 when there is none
 * (or no randomness). *current says whether it is the encrypting key. */
static int ring_get(const unsigned char *name, ticket_key *out, int *current)
{
    int r = -1;
    pthread_mutex_lock(&ring_lock);
    uint64_t now = vial_clock_ns();
    if (!ring[0].valid || now - ring[0].born_ns >= TICKET_PERIOD_NS) {
        ticket_key k = {.born_ns = now, .valid = 1};
        if (RAND_bytes(k.name, sizeof k.name) == 1 && RAND_bytes(k.aes, sizeof k.aes) == 1 &&
            RAND_bytes(k.hmac, sizeof k.hmac) == 1) {
            ring[1] = ring[0];
            ring[0] = k;
        }
        OPENSSL_cleanse(&k, sizeof k);
    }
    for (int i = 0; i < 2; i++) {
        const ticket_key *k = &ring[i];
        if (!k->valid || (name && memcmp(name, k->name, sizeof k->name)))
            continue;
        if (i == 1 && now - k->born_ns >= 2 * TICKET_PERIOD_NS)
            break; /* retired a whole period ago */
        if (i == 0 && now - k->born_ns >= TICKET_PERIOD_NS)
            break; /* rotation failed: never encrypt with an old key */
        *out = *k;
        *current = i == 0;
        r = 0;
        break;
    }
    pthread_mutex_unlock(&ring_lock);
    return r;
}

static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    static char sha256[] = "SHA256";
    ticket_key k;
    int current = 0, r = -1;
    if (ring_get(enc ? NULL : key_name, &k, &current) < 0)
        return enc ? -1 : 0; /* an unknown key: a full handshake, no error */
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256, 0),
                           OSSL_PARAM_construct_end()};
    if (enc) {
        memcpy(key_name, k.name, sizeof k.name);
        if (RAND_bytes(iv, 16) == 1 && EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
            EVP_MAC_init(hctx, k.hmac, sizeof k.hmac, params) == 1)
            r = 1;
    } else if (EVP_MAC_init(hctx, k.hmac, sizeof k.hmac, params) == 1 &&
               EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1) {
        r = current ? 1 : 2; /* 2: valid, but issue a ticket under the new key */
    }
    OPENSSL_cleanse(&k, sizeof k);
    return r;
}

/* --- ALPN -------------------------------------------------------------------
 * Only HTTP/1.1 is spoken. A client offering h2 and http/1.1 gets
 * http/1.1; one offering h2 alone gets no ALPN answer (no fatal alert) and
 * decides itself whether HTTP/1.1 will do. */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg)
{
    for (unsigned i = 0; i < inlen;) {
        unsigned n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && !memcmp(in + i + 1, "http/1.1", 8)) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* --- contexts ------------------------------------------------------------- */

/* kTLS needs the kernel's "tls" upper-layer protocol (CONFIG_TLS, module
 * tls); without it OpenSSL's attempt is one failed setsockopt per
 * connection, so it is not made. */
static int kernel_has_ktls(void)
{
    char buf[256];
    int fd = open("/proc/sys/net/ipv4/tcp_available_ulp", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    for (char *p = buf; (p = strstr(p, "tls"));) {
        if ((p == buf || p[-1] == ' ') && (p[3] == 0 || p[3] == ' ' || p[3] == '\n'))
            return 1;
        p += 3;
    }
    return 0;
}

static int load_key(SSL_CTX *ctx, const vial_tls *t)
{
    int err = 0;
    char eb[256];
    FILE *f = open_pem("key", t->key, &err);
    if (!f)
        return err;
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!pk) {
        vial_log(VIAL_LOG_ERROR, "TLS key %s: no unencrypted PEM private key in it (%s)", t->key,
                 ossl_error(eb, sizeof eb));
        return -EINVAL;
    }
    int ok = SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pk);
    if (!ok) {
        vial_log(VIAL_LOG_ERROR, "TLS key %s does not match the certificate %s (%s)", t->key, t->cert,
                 ossl_error(eb, sizeof eb));
        return -EINVAL;
    }
    return 0;
}

static SSL_CTX *ctx_build(const vial_tls *t, int *err)
{
    char eb[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *err = -ENOMEM;
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version);
    /* A FIN without close_notify is the end of the stream: HTTP's own
     * framing shows a truncated message, and many clients never send it. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | (t->ktls ? SSL_OP_ENABLE_KTLS : 0));
    /* Partial writes: a write returns per record, as send(2) would; moving
     * buffer: a retried write may come from a buffer compacted since;
     * release buffers: an idle keep-alive connection holds no record
     * buffers, as it holds no read/write buffers of its own (conn.c). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 20000);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"vial", 4);
    SSL_CTX_set_timeout(ctx, (long)(TICKET_PERIOD_NS / 1000000000ull));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    if (t->ciphers && *t->ciphers && SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
        vial_log(VIAL_LOG_ERROR, "--tls-ciphers %s: no cipher OpenSSL knows (%s)", t->ciphers,
                 ossl_error(eb, sizeof eb));
        *err = -EINVAL;
        goto fail;
    }
    FILE *f = open_pem("certificate", t->cert, err);
    if (!f)
        goto fail;
    fclose(f);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        vial_log(VIAL_LOG_ERROR, "TLS certificate %s: no PEM certificate chain in it (%s)", t->cert,
                 ossl_error(eb, sizeof eb));
        *err = -EINVAL;
        goto fail;
    }
    *err = load_key(ctx, t);
    if (*err < 0)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int vial_tls_wanted(const vial_config *cfg)
{
    return (cfg->tls_cert && *cfg->tls_cert) || (cfg->tls_key && *cfg->tls_key);
}

int vial_tls_new(const vial_config *cfg, vial_tls **out)
{
    *out = NULL;
    int has_cert = cfg->tls_cert && *cfg->tls_cert, has_key = cfg->tls_key && *cfg->tls_key;
    if (has_cert != has_key) {
        vial_log(VIAL_LOG_ERROR, "--tls-cert and --tls-key go together: only --%s given",
                 has_cert ? "tls-cert" : "tls-key");
        return -EINVAL;
    }
    vial_tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    t->cert = cfg->tls_cert;
    t->key = cfg->tls_key;
    t->ciphers = cfg->tls_ciphers;
    t->min_version = cfg->tls_min_version && !strcmp(cfg->tls_min_version, "1.3") ? TLS1_3_VERSION
                                                                                 : TLS1_2_VERSION;
    t->ktls = kernel_has_ktls();
    int err = 0;
    t->ctx = ctx_build(t, &err);
    if (!t->ctx) {
        vial_tls_free(t);
        return err;
    }
    vial_log(VIAL_LOG_DEBUG, "TLS: %s, TLS %s and up, kTLS %s", t->cert,
             t->min_version == TLS1_3_VERSION ? "1.3" : "1.2",
             t->ktls ? "offered by the kernel (see the first handshake)"
                     : "unavailable (no tls ULP in /proc/sys/net/ipv4/tcp_available_ulp)");
    *out = t;
    return 0;
}

int vial_tls_reload(vial_tls *t)
{
    int err = 0;
    SSL_CTX *ctx = ctx_build(t, &err);
    if (!ctx) {
        vial_log(VIAL_LOG_ERROR, "TLS reload failed: still serving the previous certificate");
        return err;
    }
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* open connections hold their own references */
    vial_log(VIAL_LOG_INFO, "TLS certificate %s and key %s reloaded", t->cert, t->key);
    return 0;
}

void vial_tls_free(vial_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

SSL *vial_tls_accept(vial_tls *t, int fd)
{
    pthread_mutex_lock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    if (!ssl) {
        ERR_clear_error();
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* --- the byte pipe ------------------------------------------------------------ */

/* Maps a failed call's SSL_get_error onto the errno contract; `sys` is
 * errno right after the call. */
static int map_error(SSL *ssl, int ret, int sys, unsigned *want)
{
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        *want = VIAL_IO_READ;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = VIAL_IO_WRITE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (sys == EAGAIN) { /* kTLS paths report the socket's own EAGAIN */
            *want = VIAL_IO_WRITE;
            return -EAGAIN;
        }
        return sys ? -sys : -ECONNRESET;
    default:
        ERR_clear_error();
        return -EPROTO;
    }
}

static atomic_int first_reported;

/* Once per process, at debug level: what the first handshake settled on,
 * and whether kTLS took over the record layer. */
static void report_first(SSL *ssl)
{
    if (!vial_log_enabled(VIAL_LOG_DEBUG) || atomic_exchange(&first_reported, 1))
        return;
    vial_log(VIAL_LOG_DEBUG, "TLS: first handshake %s %s; kTLS send %s, receive %s", SSL_get_version(ssl),
             SSL_get_cipher_name(ssl), BIO_get_ktls_send(SSL_get_wbio(ssl)) ? "engaged" : "off",
             BIO_get_ktls_recv(SSL_get_rbio(ssl)) ? "engaged" : "off");
}

int vial_tls_handshake(SSL *ssl, unsigned *want, int *plain_http)
{
    *plain_http = 0;
    errno = 0;
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        report_first(ssl);
        return 0;
    }
    int sys = errno;
    if (SSL_get_error(ssl, r) == SSL_ERROR_SSL) {
        unsigned long e = ERR_peek_error();
        *plain_http = ERR_GET_LIB(e) == ERR_LIB_SSL &&
                      (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST || ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST);
    }
    int e = map_error(ssl, r, sys, want);
    return e == 0 ? -ECONNRESET : e; /* a close_notify before the end of a handshake */
}

ssize_t vial_tls_read(SSL *ssl, void *buf, size_t cap, unsigned *want)
{
    size_t n = 0;
    errno = 0;
    int r = SSL_read_ex(ssl, buf, cap, &n);
    if (r == 1)
        return (ssize_t)n;
    int sys = errno;
    int e = map_error(ssl, r, sys, want);
    /* OpenSSL says SYSCALL with errno 0 for a bare FIN on some paths. */
    return e == -ECONNRESET && !sys ? 0 : e;
}

ssize_t vial_tls_write(SSL *ssl, const void *buf, size_t len, unsigned *want)
{
    size_t n = 0;
    errno = 0;
    int r = SSL_write_ex(ssl, buf, len, &n);
    if (r == 1)
        return (ssize_t)n;
    int e = map_error(ssl, r, errno, want);
    return e == 0 ? -EPIPE : e; /* the peer's close_notify: nothing more may be sent */
}

ssize_t vial_tls_sendfile(SSL *ssl, int fd, off_t off, size_t len, unsigned *want)
{
#ifndef OPENSSL_NO_KTLS
    if (!BIO_get_ktls_send(SSL_get_wbio(ssl)))
        return -EOPNOTSUPP;
    errno = 0;
    ossl_ssize_t n = SSL_sendfile(ssl, fd, off, len, 0);
    if (n > 0)
        return n;
    int e = map_error(ssl, (int)n, errno, want);
    return e == 0 ? -EIO : e;
#else
    return -EOPNOTSUPP;
#endif
}

int vial_tls_pending(SSL *ssl)
{
    return SSL_has_pending(ssl);
}

void vial_tls_close_notify(SSL *ssl)
{
    if (!SSL_is_init_finished(ssl))
        return;
    if (SSL_shutdown(ssl) < 0)
        ERR_clear_error();
}
