/* TLS on the connections of the TCP listeners (OpenSSL), when
 * vial_config.tls_cert and tls_key are set.
 *
 * The server holds one vial_tls: the current SSL_CTX (certificate chain,
 * key, protocol floor, ALPN http/1.1, session cache, session tickets under
 * a per-process key ring rotated hourly). A reload (SIGHUP) builds a new
 * context from the same files and swaps it in for the connections that
 * follow; an open connection keeps the context it started with (its SSL
 * holds a reference).
 *
 * A connection's SSL works on its non-blocking socket: the functions below
 * never block, and say which readiness (VIAL_IO_READ or VIAL_IO_WRITE) a
 * -EAGAIN waits for; conn.c parks its coroutine on it. */
#ifndef VIAL_HTTP_TLS_H
#define VIAL_HTTP_TLS_H

#include "vial.h"

#include <openssl/ssl.h>
#include <sys/types.h>

typedef struct vial_tls vial_tls;

/* Is TLS asked for (a certificate or a key given)? Both are needed: one
 * without the other fails vial_tls_new. */
int vial_tls_wanted(const vial_config *cfg);

/* Loads cfg's certificate chain (PEM, leaf first) and key into a new
 * context. Every failure is logged naming the file (missing, unreadable,
 * not PEM, key not matching the certificate) or the option; returns 0 or
 * -ENOENT, -EACCES, -EINVAL, -ENOMEM. */
int vial_tls_new(const vial_config *cfg, vial_tls **out);

/* Reads the files again into a new context, swapped in atomically for new
 * connections. On failure the current context stays (logged). 0 or as
 * vial_tls_new. Any thread. */
int vial_tls_reload(vial_tls *t);

/* Frees t (after every connection is gone). */
void vial_tls_free(vial_tls *t);

/* A server-side SSL on fd with the current context, or NULL (no memory). */
SSL *vial_tls_accept(vial_tls *t, int fd);

/* The handshake, one step: 0 when it is done, -EAGAIN with *want set, or a
 * negative errno (-EPROTO for a TLS error; *plain_http set when the bytes
 * were a plain HTTP request, so the caller may answer it in plain text). */
int vial_tls_handshake(SSL *ssl, unsigned *want, int *plain_http);

/* > 0 bytes, 0 at the end of the stream (close_notify, or a FIN without
 * one), -EAGAIN with *want set, or a negative errno. */
ssize_t vial_tls_read(SSL *ssl, void *buf, size_t cap, unsigned *want);

/* > 0 bytes taken (whole records), -EAGAIN with *want set (call again with
 * at least the same bytes, which may have moved), or a negative errno. */
ssize_t vial_tls_write(SSL *ssl, const void *buf, size_t len, unsigned *want);

/* sendfile(2) through kernel TLS: > 0 bytes, -EAGAIN with *want set, a
 * negative errno, or -EOPNOTSUPP when the connection has no kTLS send path
 * (the caller copies through vial_tls_write). */
ssize_t vial_tls_sendfile(SSL *ssl, int fd, off_t off, size_t len, unsigned *want);

/* Decrypted or raw bytes held inside the SSL, not visible to FIONREAD. */
int vial_tls_pending(SSL *ssl);

/* Sends close_notify if it can without waiting (best effort). */
void vial_tls_close_notify(SSL *ssl);

#endif
