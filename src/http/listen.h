/* The server's listeners: what --host/--port, --listen or systemd's socket
 * activation name, opened once on the main thread before the loop threads
 * start. A TCP listener is re-bound by every further loop thread with
 * SO_REUSEPORT (the kernel spreads connections); a Unix socket or an
 * inherited descriptor cannot be, so each further thread takes a dup of it
 * and the threads share its backlog. */
#ifndef VIAL_HTTP_LISTEN_H
#define VIAL_HTTP_LISTEN_H

#include "vial.h"

#include <sys/socket.h>
#include <sys/types.h>

typedef struct vial_listen {
    struct sockaddr_storage sa; /* the bound address (port 0 resolved) */
    socklen_t len;
    int fd;         /* the descriptor opened here (the first thread's) */
    int taken;      /* the first thread owns fd now: not closed here */
    int shared;     /* unix or inherited: later threads dup the first fd */
    int is_unix;
    int tls;        /* speaks TLS (a TCP listener with vial_config.tls_cert) */
    char text[160]; /* "http://127.0.0.1:8080", "https://[::1]:8443", "unix:/run/app.sock" */
    /* A Unix socket file created here: removed at exit if it is still the
     * one this process bound (same inode, same process). */
    char path[108];
    dev_t dev;
    ino_t ino;
    pid_t owner;
} vial_listen;

/* The most listeners one server takes (--listen entries, LISTEN_FDS). */
#define VIAL_LISTEN_MAX 16

/* Opens the listeners: the descriptors systemd passed (LISTEN_PID is this
 * process and LISTEN_FDS > 0: fds 3.., each checked to be a listening
 * stream socket; the variables are then unset), else every entry of
 * cfg->listen, else cfg->host (a "unix:/path" host is a Unix socket) on
 * cfg->port. Fills ls[0..*n); with cfg->tls_cert, the TCP listeners are
 * marked tls (and described as https://). 0, or a negative errno (logged,
 * nothing left open). */
int vial_listen_open(const vial_config *cfg, vial_listen *ls, unsigned *n);

/* The descriptor for one more loop thread on l: a new SO_REUSEPORT socket
 * on its port, or a dup of a shared one. Non-blocking, close-on-exec, or a
 * negative errno. */
int vial_listen_another(const vial_listen *l);

/* Closes what is still open of ls[0..n) and removes the Unix socket files
 * this process created. */
void vial_listen_close(vial_listen *ls, unsigned n);

/* Another process's listener (a --processes worker's copy of its
 * supervisor's): *l becomes from's address and text on a dup of from->fd,
 * shared, with no socket file to remove. 0, or a negative errno. */
int vial_listen_adopt(vial_listen *l, const vial_listen *from);

/* "http://127.0.0.1:8080 and unix:/run/app.sock": ls[0..n) for the start-up
 * line, TCP listeners first (scripts look for the port there). */
void vial_listen_describe_all(const vial_listen *ls, unsigned n, char *out, size_t cap);

/* The TCP port of l, or 0 for a Unix socket. */
int vial_listen_port(const vial_listen *l);

/* Splits one --listen entry ("unix:/p", "[::1]:8080", "127.0.0.1:80",
 * "localhost", "::1") into a host and a port (default_port when none is
 * given); *host is NUL-terminated in hbuf, or is the whole "unix:/p".
 * 0, or -EINVAL. Pure: exported for the unit tests. */
int vial_listen_split(const char *item, size_t len, int default_port, char *hbuf, size_t hcap,
                      int *port);

#endif
