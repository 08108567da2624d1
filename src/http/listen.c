/* Opening the listeners (see listen.h): TCP by name and port, Unix sockets,
 * and descriptors passed by systemd. */
#include "http/listen.h"
#include "runtime/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BACKLOG 4096

static int sa_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return 0;
}

int vial_listen_port(const vial_listen *l)
{
    return sa_port(&l->sa);
}

/* l->text from l->sa. */
static void describe(vial_listen *l)
{
    char buf[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr_storage *ss = &l->sa;
    if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = l->len > off ? l->len - off : 0;
        if (n && un->sun_path[0] == 0) /* abstract: shown as systemd writes it */
            snprintf(l->text, sizeof l->text, "unix:@%.*s", (int)(n - 1), un->sun_path + 1);
        else
            snprintf(l->text, sizeof l->text, "unix:%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, sizeof buf);
        snprintf(l->text, sizeof l->text, "http://[%s]:%d", buf, sa_port(ss));
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, sizeof buf);
        snprintf(l->text, sizeof l->text, "http://%s:%d", buf, sa_port(ss));
    }
}

static int bind_tcp(const struct sockaddr *sa, socklen_t len, int reuseport_before_bind)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport_before_bind)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, sa, len) < 0)
        goto fail;
    /* The first listener binds without SO_REUSEPORT, so the bind fails when
     * any other socket holds the port, SO_REUSEPORT or not (another vial, a
     * python server, nginx). Only then does it open the port to its sibling
     * threads: the kernel checks SO_REUSEPORT again at each later bind, and
     * the group that spreads connections forms at listen(). No window is
     * left for a second vial: its own first bind, without the option, keeps
     * failing for as long as this socket lives. A foreign process that sets
     * SO_REUSEPORT and binds after us cannot be stopped by anyone. */
    if (!reuseport_before_bind && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (listen(fd, BACKLOG) < 0)
        goto fail;
    return fd;
fail:;
    int e = -errno;
    close(fd);
    return e;
}

int vial_listen_another(const vial_listen *l)
{
    if (!l->shared)
        return bind_tcp((const struct sockaddr *)&l->sa, l->len, 1);
    int fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 3);
    return fd < 0 ? -errno : fd;
}

int vial_listen_adopt(vial_listen *l, const vial_listen *from)
{
    *l = *from;
    l->taken = 0;
    l->shared = 1;
    l->path[0] = 0;
    l->owner = 0;
    l->fd = fcntl(from->fd, F_DUPFD_CLOEXEC, 3);
    return l->fd < 0 ? -errno : 0;
}

void vial_listen_describe_all(const vial_listen *ls, unsigned n, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < n && used < cap; i++)
            if (ls[i].is_unix == pass)
                used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? " and " : "", ls[i].text);
}

/* Resolves host and takes the first address that binds. A port in use ends
 * the search: a later address of the same name would serve on a different
 * interface than the one asked for. */
static int open_tcp(const char *host, int port, vial_listen *l)
{
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, pbuf, &hints, &res);
    if (gai != 0) {
        vial_log(VIAL_LOG_ERROR, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -EINVAL;
    }
    int fd = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof l->sa)
            continue;
        fd = bind_tcp(ai->ai_addr, ai->ai_addrlen, 0);
        if (fd >= 0) {
            l->len = sizeof l->sa;
            if (getsockname(fd, (struct sockaddr *)&l->sa, &l->len) < 0) {
                int e = -errno;
                close(fd);
                fd = e;
            }
            break;
        }
        if (fd == -EADDRINUSE) {
            memcpy(&l->sa, ai->ai_addr, ai->ai_addrlen);
            l->len = ai->ai_addrlen;
            break;
        }
    }
    freeaddrinfo(res);
    if (fd == -EADDRINUSE) {
        describe(l);
        vial_log(VIAL_LOG_ERROR, "%s is already in use", l->text + 7);
    } else if (fd < 0) {
        char eb[128];
        vial_log(VIAL_LOG_ERROR, "cannot listen on %s:%d: %s", host, port, strerror_r(-fd, eb, sizeof eb));
    } else {
        describe(l);
        l->fd = fd;
    }
    return fd < 0 ? fd : 0;
}

/* A socket file left by a server that is gone refuses connections: remove
 * it. One that accepts is another server's; anything else is not ours to
 * delete. */
static int clear_stale(const char *path, const struct sockaddr_un *un, socklen_t len)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        vial_log(VIAL_LOG_ERROR, "unix:%s exists and is not a socket; not removed", path);
        return -EEXIST;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return -errno;
    int r = connect(probe, (const struct sockaddr *)un, len);
    int e = errno;
    close(probe);
    if (r == 0) {
        vial_log(VIAL_LOG_ERROR, "unix:%s is already in use", path);
        return -EADDRINUSE;
    }
    if (e != ECONNREFUSED)
        return -e;
    vial_log(VIAL_LOG_INFO, "unix:%s: removing a stale socket file", path);
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static int open_unix(const char *path, int mode, vial_listen *l)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&l->sa;
    size_t n = strlen(path);
    if (!n || n >= sizeof un->sun_path || n >= sizeof l->path) {
        vial_log(VIAL_LOG_ERROR, "unix socket path %s: empty or longer than %zu bytes", path,
                 sizeof un->sun_path - 1);
        return -ENAMETOOLONG;
    }
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n + 1);
    l->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    l->is_unix = l->shared = 1;
    describe(l);
    int r = clear_stale(path, un, l->len);
    if (r < 0)
        return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    /* The mode is set before listen(): no client can connect through
     * looser permissions in between. */
    if (bind(fd, (const struct sockaddr *)un, l->len) < 0)
        goto fail;
    memcpy(l->path, path, n + 1);
    l->owner = getpid();
    if (stat(path, &st) == 0) {
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    if (mode >= 0 && chmod(path, (mode_t)mode) < 0)
        goto fail;
    if (listen(fd, BACKLOG) < 0)
        goto fail;
    l->fd = fd;
    return 0;
fail:;
    int e = errno;
    char eb[128];
    vial_log(VIAL_LOG_ERROR, "cannot listen on unix:%s: %s", path, strerror_r(e, eb, sizeof eb));
    close(fd);
    if (l->path[0]) {
        unlink(l->path);
        l->path[0] = 0;
    }
    return -e;
}

int vial_listen_split(const char *item, size_t len, int default_port, char *hbuf, size_t hcap, int *port)
{
    if (len >= hcap || len == 0)
        return -EINVAL;
    *port = default_port;
    if (len > 5 && !memcmp(item, "unix:", 5)) {
        memcpy(hbuf, item, len);
        hbuf[len] = 0;
        return strlen(hbuf) == len ? 0 : -EINVAL;
    }
    const char *host = item, *ps = NULL;
    size_t hl = len;
    if (item[0] == '[') {
        const char *close = memchr(item, ']', len);
        if (!close || close == item + 1)
            return -EINVAL;
        host = item + 1;
        hl = (size_t)(close - host);
        size_t rest = len - (size_t)(close + 1 - item);
        if (rest) {
            if (close[1] != ':' || rest < 2)
                return -EINVAL;
            ps = close + 2;
        }
    } else {
        const char *colon = memchr(item, ':', len);
        /* Two colons or more without brackets: an IPv6 address alone. */
        if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - item))) {
            hl = (size_t)(colon - item);
            ps = colon + 1;
            if (ps == item + len)
                return -EINVAL;
        }
    }
    if (ps) {
        long v = 0;
        for (const char *p = ps; p < item + len; p++) {
            if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > 65535)
                return -EINVAL;
        }
        *port = (int)v;
    }
    if (!hl || memchr(host, 0, hl))
        return -EINVAL;
    memcpy(hbuf, host, hl);
    hbuf[hl] = 0;
    return 0;
}

static int open_one(const char *host, int port, int mode, vial_listen *l)
{
    memset(l, 0, sizeof *l);
    l->fd = -1;
    if (!strncmp(host, "unix:", 5))
        return open_unix(host + 5, mode, l);
    return open_tcp(host, port, l);
}

/* sd_listen_fds(3)'s protocol, read here: fds 3..3+LISTEN_FDS-1 were passed
 * to this process if LISTEN_PID is its pid. Returns how many (0: none). */
static int inherited(vial_listen *ls, unsigned *n)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds)
        return 0;
    char *end;
    long long p = strtoll(pid, &end, 10);
    if (*end || end == pid || p != (long long)getpid())
        return 0;
    long long k = strtoll(fds, &end, 10);
    if (*end || end == fds || k < 1 || k > VIAL_LISTEN_MAX) {
        vial_log(VIAL_LOG_ERROR, "LISTEN_FDS=%s: expected 1-%d descriptors", fds, VIAL_LISTEN_MAX);
        return -EINVAL;
    }
    const char *names = getenv("LISTEN_FDNAMES");
    for (int i = 0; i < (int)k; i++) {
        int fd = 3 + i;
        vial_listen *l = &ls[i];
        memset(l, 0, sizeof *l);
        l->fd = -1;
        int type = 0, acc = 0;
        socklen_t tl = sizeof type, al = sizeof acc;
        l->len = sizeof l->sa;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || !acc ||
            getsockname(fd, (struct sockaddr *)&l->sa, &l->len) < 0 ||
            (l->sa.ss_family != AF_INET && l->sa.ss_family != AF_INET6 && l->sa.ss_family != AF_UNIX)) {
            vial_log(VIAL_LOG_ERROR, "socket activation: fd %d is not a listening stream socket", fd);
            *n = (unsigned)i; /* what is before it is closed by the caller */
            return -ENOTSOCK;
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            *n = (unsigned)i;
            return -errno;
        }
        l->fd = fd;
        l->shared = 1;
        l->is_unix = l->sa.ss_family == AF_UNIX;
        describe(l);
        /* LISTEN_FDNAMES: colon-separated names, one per fd (the socket
         * unit's FileDescriptorName=), shown in the log. */
        const char *nm = names;
        for (int j = 0; nm && j < i; j++) {
            nm = strchr(nm, ':');
            nm = nm ? nm + 1 : NULL;
        }
        if (nm && *nm && *nm != ':') {
            size_t used = strlen(l->text);
            snprintf(l->text + used, sizeof l->text - used, " (%.*s)", (int)strcspn(nm, ":"), nm);
        }
    }
    *n = (unsigned)k;
    /* Not for the children this process may start. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    vial_log(VIAL_LOG_INFO, "socket activation: %lld listener%s from systemd", k, k > 1 ? "s" : "");
    return 1;
}

static int open_all(const vial_config *cfg, vial_listen *ls, unsigned *n)
{
    *n = 0;
    int r = inherited(ls, n);
    if (r != 0) {
        if (r < 0)
            vial_listen_close(ls, *n);
        return r < 0 ? r : 0;
    }
    const char *list = cfg->listen && *cfg->listen ? cfg->listen : NULL;
    if (!list) {
        r = open_one(cfg->host, cfg->port, cfg->unix_mode, &ls[0]);
        if (r == 0)
            *n = 1;
        return r;
    }
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        size_t skip = strspn(p, " \t");
        const char *item = p + (skip < len ? skip : len);
        size_t il = len - (size_t)(item - p);
        while (il && (item[il - 1] == ' ' || item[il - 1] == '\t'))
            il--;
        char host[256];
        int port;
        if (il) {
            if (*n == VIAL_LISTEN_MAX ||
                vial_listen_split(item, il, cfg->port, host, sizeof host, &port) < 0) {
                vial_log(VIAL_LOG_ERROR, *n == VIAL_LISTEN_MAX ? "--listen: more than 16 listeners"
                                                               : "--listen: cannot parse \"%.*s\"",
                         (int)il, item);
                r = -EINVAL;
            } else {
                r = open_one(host, port, cfg->unix_mode, &ls[*n]);
            }
            if (r < 0) {
                vial_listen_close(ls, *n);
                *n = 0;
                return r;
            }
            (*n)++;
        }
        p += len + (p[len] == ',');
    }
    if (!*n) {
        vial_log(VIAL_LOG_ERROR, "--listen: no address given");
        return -EINVAL;
    }
    return 0;
}

/* TLS covers every TCP listener; a Unix socket's peer is a local proxy. */
int vial_listen_open(const vial_config *cfg, vial_listen *ls, unsigned *n)
{
    int r = open_all(cfg, ls, n);
    for (unsigned i = 0; r == 0 && i < *n && cfg->tls_cert && *cfg->tls_cert; i++) {
        vial_listen *l = &ls[i];
        if (l->is_unix || strncmp(l->text, "http://", 7))
            continue;
        l->tls = 1;
        memmove(l->text + 5, l->text + 4, strnlen(l->text, sizeof l->text - 2) - 3);
        l->text[4] = 's';
        l->text[sizeof l->text - 1] = 0;
    }
    return r;
}

void vial_listen_close(vial_listen *ls, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        vial_listen *l = &ls[i];
        if (l->fd >= 0 && !l->taken)
            close(l->fd);
        l->fd = -1;
        struct stat st;
        /* Another server may have taken the path over since (a new
         * instance that found the file stale, or a supervisor's child):
         * only the file this process bound is removed. */
        if (l->path[0] && l->owner == getpid() && stat(l->path, &st) == 0 && st.st_dev == l->dev &&
            st.st_ino == l->ino)
            unlink(l->path);
        l->path[0] = 0;
    }
}
