/* Static files: vial_send_file (Flask's send_file) and vial_static (the
 * app's /static route, Flask's send_from_directory underneath).
 *
 * The body is never read here: the response carries the open file and the
 * byte range, and the connection sends it with sendfile(2).
 *
 * Conditional requests follow RFC 9110 section 13.2.2's order: If-Match,
 * If-Unmodified-Since (412), If-None-Match (weak comparison; 304 for GET and
 * HEAD, 412 otherwise), If-Modified-Since (304), then Range with If-Range.
 *
 * Ranges: one range (`a-b`, `a-`, `-n`) gives 206 with Content-Range; a
 * syntactically valid but unsatisfiable one gives 416 with a Content-Range
 * naming only the size ("bytes *" "/" size). A request for several ranges gets the whole
 * file with 200 -- RFC 9110 lets a server ignore Range, and multipart/
 * byteranges bodies cannot be sent with one sendfile; clients (browsers,
 * download managers, media players) cope. An invalid Range is ignored.
 * HEAD answers exactly what GET would, Range included, without the body. */
#include "app/session.h"
#include "runtime/ascii.h"
#include "app/app.h"
#include "app/compress.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

/* --- content types ---------------------------------------------------------------- */

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/vnd.microsoft.icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
};

/* By the last extension of the file name, case-insensitively. "x.tar.gz" is
 * application/gzip: unlike Python's mimetypes we never claim a
 * Content-Encoding the client would then undo. */
const char *vial_static_type_for(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!vial_ascii_casecmp(dot + 1, types[i].ext))
                return types[i].type;
    return "application/octet-stream";
}

/* --- validators ----------------------------------------------------------------- */

/* Visits the entity-tags of an If-Match / If-None-Match / If-Range list.
 * Returns 1 when one matches etag (our strong, quoted tag) under the chosen
 * comparison, or when the list is "*" and star_ok; else 0. A malformed
 * element ends the scan (what came before it still counts). */
static int etag_match(const char *list, const char *etag, int weak, int star_ok)
{
    size_t elen = strlen(etag);
    const char *p = list;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return 0;
        if (*p == '*') {
            if (star_ok)
                return 1;
            p++;
            continue;
        }
        int is_weak = 0;
        if (p[0] == 'W' && p[1] == '/') {
            is_weak = 1;
            p += 2;
        }
        if (*p != '"')
            return 0;
        const char *end = strchr(p + 1, '"');
        if (!end)
            return 0;
        size_t n = (size_t)(end + 1 - p);
        if ((weak || !is_weak) && n == elen && !memcmp(p, etag, n))
            return 1;
        p = end + 1;
    }
}

/* --- ranges -------------------------------------------------------------------------- */

enum { RANGE_NONE = 0, RANGE_ONE = 1, RANGE_UNSATISFIABLE = -1 };

/* Digits into a saturating uint64; returns the digit count. */
static int read_u64(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    int n = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p++ - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        n++;
    }
    *pp = p;
    *out = v;
    return n;
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parses a Range header against a representation of `size` bytes. */
static int parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len)
{
    const char *p = skip_ows(h);
    if (vial_ascii_ncasecmp(p, "bytes", 5))
        return RANGE_NONE; /* another unit: ignored */
    p = skip_ows(p + 5);
    if (*p++ != '=')
        return RANGE_NONE;
    int seen = 0;
    uint64_t first = 0, last = 0;
    int has_first = 0, has_last = 0;
    for (;;) {
        p = skip_ows(p);
        if (*p == ',') { /* empty list elements are allowed */
            p++;
            continue;
        }
        if (!*p)
            break;
        if (seen++)
            return RANGE_NONE; /* several ranges: the whole file (see top) */
        has_first = read_u64(&p, &first) > 0;
        if (*p++ != '-')
            return RANGE_NONE;
        has_last = read_u64(&p, &last) > 0;
        if (!has_first && !has_last)
            return RANGE_NONE;
        if (has_first && has_last && last < first)
            return RANGE_NONE; /* invalid spec: the header is ignored */
        p = skip_ows(p);
        if (*p && *p != ',')
            return RANGE_NONE;
    }
    if (!seen)
        return RANGE_NONE;
    if (has_first) {
        if (first >= size)
            return RANGE_UNSATISFIABLE;
        if (!has_last || last >= size)
            last = size - 1;
        *start = first;
        *len = last - first + 1;
        return RANGE_ONE;
    }
    /* suffix: the last `last` bytes; "-0", or any suffix of an empty file,
     * selects nothing */
    if (last == 0 || size == 0)
        return RANGE_UNSATISFIABLE;
    if (last > size)
        last = size;
    *start = size - last;
    *len = last;
    return RANGE_ONE;
}

/* --- serving an open file ------------------------------------------------------------- */

static int is_method(vial_req *rq, const char *m)
{
    const char *cur = vial_req_method(rq);
    return cur && !strcmp(cur, m);
}

static int abort_closing(vial_res *rs, int fd, int status)
{
    close(fd);
    return vial_abort(rs, status);
}

/* Takes ownership of fd (a regular file described by st). */
static int serve_fd(vial_req *rq, vial_res *rs, int fd, const struct stat *st, const char *ctype)
{
    uint64_t size = (uint64_t)st->st_size;
    int64_t mtime = (int64_t)st->st_mtim.tv_sec;
    uint64_t mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;

    /* Strong: a byte-for-byte change that keeps size and nanosecond mtime is
     * not something a file system produces in practice, and a strong tag lets
     * If-Range work. */
    char etag[48];
    snprintf(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "\"", mtime_ns, size);
    char lastmod[VIAL_HTTP_DATE_SIZE];
    vial_http_date(mtime, lastmod);

    int get_or_head = rq->is_head || is_method(rq, "GET") || is_method(rq, "HEAD");
    int64_t t;
    const char *h;

    /* 1-2: preconditions that protect state-changing requests */
    if ((h = vial_req_header(rq, "If-Match"))) {
        if (!etag_match(h, etag, 0, 1))
            return abort_closing(rs, fd, 412);
    } else if ((h = vial_req_header(rq, "If-Unmodified-Since")) && !vial_http_date_parse(h, &t) &&
               mtime > t) {
        return abort_closing(rs, fd, 412);
    }

    /* 3-4: cache validation */
    int not_modified = 0;
    if ((h = vial_req_header(rq, "If-None-Match"))) {
        if (etag_match(h, etag, 1, 1)) {
            if (!get_or_head)
                return abort_closing(rs, fd, 412);
            not_modified = 1;
        }
    } else if (get_or_head && (h = vial_req_header(rq, "If-Modified-Since")) &&
               !vial_http_date_parse(h, &t) && mtime <= t) {
        not_modified = 1;
    }

    int r;
    if ((r = vial_res_add_header(rs, "ETag", etag)) < 0 ||
        (r = vial_res_add_header(rs, "Last-Modified", lastmod)) < 0 ||
        /* Flask's default: caches keep the file but revalidate each use,
         * which the validators above make cheap. */
        (r = vial_res_add_header(rs, "Cache-Control", "no-cache")) < 0) {
        close(fd);
        return r;
    }
    if (not_modified) {
        close(fd);
        rs->status = 304;
        rs->body_len = 0;
        vial_rqs(rs->rq)->built = 1;
        return 0;
    }

    /* 5: Range, only when If-Range (if any) still names this file */
    uint64_t start = 0, len = size;
    int range = RANGE_NONE;
    if (get_or_head && (h = vial_req_header(rq, "Range"))) {
        const char *ir = vial_req_header(rq, "If-Range");
        int honour = 1;
        if (ir) {
            const char *q = skip_ows(ir);
            if (*q == '"' || (q[0] == 'W' && q[1] == '/'))
                honour = etag_match(q, etag, 0, 0);
            else
                honour = !vial_http_date_parse(q, &t) && t == mtime;
        }
        if (honour)
            range = parse_range(h, size, &start, &len);
    }
    if ((r = vial_res_add_header(rs, "Accept-Ranges", "bytes")) < 0) {
        close(fd);
        return r;
    }
    if (range == RANGE_UNSATISFIABLE) {
        char cr[48];
        snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
        if ((r = vial_res_add_header(rs, "Content-Range", cr)) < 0) {
            close(fd);
            return r;
        }
        return abort_closing(rs, fd, 416);
    }
    if (range == RANGE_ONE) {
        char cr[80];
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + len - 1, size);
        if ((r = vial_res_add_header(rs, "Content-Range", cr)) < 0) {
            close(fd);
            return r;
        }
        rs->status = 206;
    } else {
        rs->status = 200;
    }
    rs->content_type = ctype;
    vial_rqs(rs->rq)->built = 1;
    /* A previous vial_send_file on this response loses its file. */
    if (rs->file_fd >= 0)
        close(rs->file_fd);
    rs->file_fd = fd;
    rs->file_off = (int64_t)start;
    rs->body = NULL;
    rs->body_cap = 0;
    rs->body_len = (size_t)len;
    return 0;
}

/* O_NONBLOCK: opening a FIFO must not hang the worker; it is then refused
 * as not a regular file. (Regular files ignore the flag.) */
#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

static int open_beneath(int dfd, const char *rel);

/* With compression on, a client that accepts br or gzip gets NAME.br or
 * NAME.gz instead of NAME when that sibling is a regular file at least as
 * new as NAME (`gzip -k` and `brotli -k` keep NAME's time; an older one is
 * stale). It is another representation: its own validators, ranges over
 * its bytes, NAME's type. Siblings are opened as NAME is (beneath dfd for
 * vial_static). Returns the coding served; fd and st become the sibling's. */
static int pick_sibling(vial_req *rq, const char *type, int dfd, const char *rel, int *fd,
                        struct stat *st, int *vary)
{
    int codings[2];
    int n = vial_compress_static_codings(rq, type, codings, vary);
    for (int i = 0; i < n; i++) {
        const char *zname = vial_sprintf(rq, "%s%s", rel, vial_compress_suffix(codings[i]));
        int zfd = !zname ? -1 : dfd == AT_FDCWD ? open(zname, OPEN_FLAGS) : open_beneath(dfd, zname);
        if (zfd < 0)
            continue;
        struct stat zst;
        if (fstat(zfd, &zst) == 0 && S_ISREG(zst.st_mode) &&
            (zst.st_mtim.tv_sec > st->st_mtim.tv_sec ||
             (zst.st_mtim.tv_sec == st->st_mtim.tv_sec && zst.st_mtim.tv_nsec >= st->st_mtim.tv_nsec))) {
            close(*fd);
            *fd = zfd;
            *st = zst;
            return codings[i];
        }
        close(zfd);
    }
    return VIAL_CODING_IDENTITY;
}

/* Checks that fd is a regular file, then serves it (or its precompressed
 * sibling, found through dfd and rel). */
static int serve_open(vial_req *rq, vial_res *rs, int fd, const char *ctype, const char *name, int dfd,
                      const char *rel)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return abort_closing(rs, fd, 404); /* directories, devices, FIFOs */
    if (ctype && (!*ctype || strpbrk(ctype, "\r\n"))) {
        close(fd); /* a CR/LF would inject headers */
        return -EINVAL;
    }
    const char *type = ctype ? vial_strdup(rq, ctype) : vial_static_type_for(name);
    if (!type) {
        close(fd);
        return -ENOMEM;
    }
    int vary = 0;
    int coding = pick_sibling(rq, type, dfd, rel, &fd, &st, &vary);
    int r = serve_fd(rq, rs, fd, &st, type);
    if (r == 0 && (vary || coding != VIAL_CODING_IDENTITY))
        r = vial_compress_static_mark(rs, coding, vary);
    return r;
}

int vial_send_file(vial_req *rq, vial_res *rs, const char *path, const char *content_type)
{
    if (!path || !*path)
        return vial_abort(rs, 404);
    int fd = open(path, OPEN_FLAGS);
    if (fd < 0)
        return vial_abort(rs, 404);
    return serve_open(rq, rs, fd, content_type, path, AT_FDCWD, path);
}

/* --- vial_static ---------------------------------------------------------------- */

typedef struct static_mount {
    struct static_mount *next;
    vial_app *app;
    char dir[]; /* canonical absolute path */
} static_mount;

/* Mounts live as long as their app; vial_static_release frees them. A list
 * rather than a field of struct vial_app keeps this module self-contained. */
static pthread_mutex_t mounts_lock = PTHREAD_MUTEX_INITIALIZER;
static static_mount *mounts;

void vial_static_release(vial_app *app)
{
    pthread_mutex_lock(&mounts_lock);
    for (static_mount **pp = &mounts; *pp;) {
        static_mount *m = *pp;
        if (m->app == app) {
            *pp = m->next;
            free(m);
        } else {
            pp = &m->next;
        }
    }
    pthread_mutex_unlock(&mounts_lock);
}

/* The filename as routed (<path:filename>, already percent-decoded, so
 * "%2e%2e" and "%2F" arrive as ".." and "/"). Anything that could name a
 * file outside the directory is refused before the file system sees it;
 * open_beneath then enforces the same with the kernel's help. */
static int safe_name(vial_req *rq, const char *name)
{
    if (!*name || *name == '/' || strchr(name, '\\'))
        return 0;
    for (const char *seg = name; seg;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (n == 2 && seg[0] == '.' && seg[1] == '.')
            return 0;
        seg = slash ? slash + 1 : NULL;
    }
    /* A decoded NUL ("%00") silently truncates the C string; refuse any
     * request whose raw path carries one. */
    const char *raw = rq->head.path.p;
    for (size_t i = 0; raw && i + 2 < rq->head.path.len; i++)
        if (raw[i] == '%' && raw[i + 1] == '0' && raw[i + 2] == '0')
            return 0;
    return 1;
}

/* Opens rel below the directory dfd, never leaving it: openat2 with
 * RESOLVE_BENEATH lets the kernel refuse ".." and symlinks that escape
 * (symlinks staying inside work). Where openat2 is missing (old kernels,
 * seccomp filters), the path is walked one component at a time with
 * O_NOFOLLOW, so no symlink is followed at all. */
static int open_beneath(int dfd, const char *rel)
{
#ifdef SYS_openat2
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = OPEN_FLAGS;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long r2 = syscall(SYS_openat2, dfd, rel, &how, sizeof how);
    if (r2 >= 0 || (errno != ENOSYS && errno != EPERM))
        return (int)r2;
#endif
    /* Components are copied out one at a time; '.' is skipped except as
     * the last one (it then names the directory, which serve_open refuses). */
    int cur = dfd;
    const char *p = rel;
    for (;;) {
        while (*p == '/')
            p++;
        const char *end = strchrnul(p, '/');
        const char *after = end;
        while (*after == '/')
            after++;
        int last = !*after;
        size_t n = (size_t)(end - p);
        if (n == 1 && *p == '.' && !last) {
            p = after;
            continue;
        }
        char comp[NAME_MAX + 1];
        /* A trailing '/' names a directory: never a file to serve. */
        if (n == 0 || n > NAME_MAX || (last && *end == '/')) {
            if (cur != dfd)
                close(cur);
            errno = n > NAME_MAX ? ENAMETOOLONG : ENOENT;
            return -1;
        }
        memcpy(comp, p, n);
        comp[n] = 0;
        int fd = last ? openat(cur, comp, OPEN_FLAGS | O_NOFOLLOW)
                      : openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        if (cur != dfd)
            close(cur);
        if (fd < 0) {
            errno = saved;
            return -1;
        }
        if (last)
            return fd;
        cur = fd;
        p = after;
    }
}

static int static_get(vial_req *rq, vial_res *rs)
{
    const static_mount *m = vial_route_data(rq);
    const char *name = vial_req_param(rq, "filename");
    if (!m || !name || !safe_name(rq, name))
        return vial_abort(rs, 404);
    /* The directory is opened per request (cheap next to the file's own
     * open): a deploy that swaps it is picked up, and no descriptor is held
     * for the app's lifetime. */
    int dfd = open(m->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return vial_abort(rs, 404);
    int fd = open_beneath(dfd, name);
    if (fd < 0) {
        close(dfd);
        return vial_abort(rs, 404);
    }
    int r = serve_open(rq, rs, fd, NULL, name, dfd, name);
    close(dfd);
    return r;
}

/* A SYNC view: open and fstat may block on a cold disk. */
static const vial_view_method static_methods[] = {
    {"GET", static_get, VIAL_SYNC},
    {NULL, NULL, 0},
};

int vial_static(vial_app *app, const char *url_prefix, const char *directory)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!url_prefix || url_prefix[0] != '/' || !directory || !*directory)
        return -EINVAL;
    size_t plen = strlen(url_prefix);
    while (plen && url_prefix[plen - 1] == '/')
        plen--; /* "/static/" and "/" are fine: the rule adds its own '/' */

    /* Resolved once, so a later chdir() does not move the files. */
    char *real = realpath(directory, NULL);
    if (!real)
        return -errno;
    struct stat st;
    if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        return -ENOTDIR;
    }
    size_t dlen = strlen(real);
    static_mount *m = malloc(sizeof *m + dlen + 1);
    char *rule = malloc(plen + sizeof "/<path:filename>");
    if (!m || !rule) {
        free(real);
        free(m);
        free(rule);
        return -ENOMEM;
    }
    memcpy(m->dir, real, dlen + 1);
    free(real);
    m->app = app;
    memcpy(rule, url_prefix, plen);
    memcpy(rule + plen, "/<path:filename>", sizeof "/<path:filename>");

    int r = vial_add_view(app, rule, "static", static_methods, m);
    free(rule);
    if (r < 0) {
        free(m);
        return r;
    }
    pthread_mutex_lock(&mounts_lock);
    m->next = mounts;
    mounts = m;
    pthread_mutex_unlock(&mounts_lock);
    return 0;
}
