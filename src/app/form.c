/* Form data: application/x-www-form-urlencoded and multipart/form-data
 * bodies (RFC 7578), parsed once, lazily, into the request's arena.
 *
 * urlencoded bodies follow the query-string rules (spec §2) and reuse
 * vial_url_decode. multipart bodies go through the incremental machine in
 * multipart.c; the body is fed whole, so part data arrives as spans of the
 * body and small files are kept as pointers into it (zero copy). A file part
 * that grows past VIAL_FORM_SPILL bytes is written to a temporary file
 * instead, unlinked when the request ends. */
#include "app/app.h"
#include "runtime/ascii.h"
#include "app/utf8.h"
#include "app/multipart.h"
#include "app/kvindex.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef VIAL_FORM_SPILL /* the fuzzer lowers it to exercise spilling */
#define VIAL_FORM_SPILL (64 * 1024) /* file parts above this go to disk */
#endif
/* Too many parts is Werkzeug's RequestEntityTooLarge (max_form_parts). */
#define VIAL_FORM_PARTS_STATUS 413

struct vial_form {
    int status;        /* the parse's HTTP status: 0, 400, 413, 500 */
    const char *error; /* why, when status != 0 */
    int is_form;       /* the Content-Type is a form's */
    vial_kv *fields;
    unsigned nfields, fields_cap;
    vial_kv_index ix; /* over fields, built at the first lookup by name */
    vial_file *files;
    unsigned nfiles, files_cap;
};

/* --- small helpers ----------------------------------------------------------- */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Multipart names, values and filenames are raw bytes (no percent
 * decoding): invalid UTF-8 is replaced, as Werkzeug does. */
static char *utf8_dup(vial_arena *a, const char *s, size_t n)
{
    return vial_utf8_repair(a, s, n, NULL);
}

/* Compares the media type of a Content-Type value (before any ';',
 * whitespace-trimmed) with `type`, case-insensitively. */
static int media_type_is(const char *v, size_t n, const char *type)
{
    const char *e = memchr(v, ';', n);
    size_t len = e ? (size_t)(e - v) : n;
    while (len && is_ows(*v))
        v++, len--;
    while (len && is_ows(v[len - 1]))
        len--;
    return len == strlen(type) && !vial_ascii_ncasecmp(v, type, len);
}

/* Parameters of a header value "token *( ; name=value )", value a token or
 * a quoted-string with backslash escapes (RFC 9110 §5.6.4/5.6.6). Iterates:
 * *p starts at the first ';' (or anywhere before it); returns 1 with a
 * parameter, 0 at the end, -1 when malformed (unterminated quote, no '=').
 * Quoted values with escapes are unescaped into the arena; others are spans
 * of the header. */
typedef struct param {
    const char *name, *value;
    size_t name_len, value_len;
} param;

static int next_param(vial_arena *a, const char **pp, const char *end, param *out)
{
    const char *p = *pp;
    /* skip to the next ';' (the disposition/media type, or junk after a
     * quoted value) */
    while (p < end && *p != ';')
        p++;
    while (p < end && (*p == ';' || is_ows(*p)))
        p++;
    if (p == end) {
        *pp = p;
        return 0;
    }
    const char *n = p;
    while (p < end && *p != '=' && *p != ';')
        p++;
    if (p == end || *p != '=')
        return -1;
    const char *ne = p;
    while (ne > n && is_ows(ne[-1]))
        ne--;
    out->name = n;
    out->name_len = (size_t)(ne - n);
    p++;
    while (p < end && is_ows(*p))
        p++;
    if (p < end && *p == '"') {
        const char *s = ++p;
        int escaped = 0;
        while (p < end && *p != '"') {
            if (*p == '\\') {
                escaped = 1;
                if (++p == end)
                    return -1;
            }
            p++;
        }
        if (p == end)
            return -1;
        if (!escaped) {
            out->value = s;
            out->value_len = (size_t)(p - s);
        } else {
            char *d = vial_arena_alloc(a, (size_t)(p - s) + 1), *o = d;
            if (!d)
                return -1;
            for (const char *q = s; q < p; q++) {
                if (*q == '\\')
                    q++;
                *o++ = *q;
            }
            out->value = d;
            out->value_len = (size_t)(o - d);
        }
        p++;
    } else {
        const char *s = p;
        while (p < end && *p != ';')
            p++;
        const char *e = p;
        while (e > s && is_ows(e[-1]))
            e--;
        out->value = s;
        out->value_len = (size_t)(e - s);
    }
    *pp = p;
    return 1;
}

static int param_is(const param *pr, const char *name)
{
    return pr->name_len == strlen(name) && !vial_ascii_ncasecmp(pr->name, name, pr->name_len);
}

/* --- the form --------------------------------------------------------------- */

static int add_field(vial_arena *a, struct vial_form *f, const char *name, const char *value)
{
    if (f->nfields == f->fields_cap) {
        unsigned cap = f->fields_cap ? f->fields_cap * 2 : 8;
        vial_kv *n = vial_arena_grow(a, f->fields, f->fields_cap * sizeof *n, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        f->fields = n;
        f->fields_cap = cap;
    }
    f->fields[f->nfields].name = name;
    f->fields[f->nfields].name_len = strlen(name);
    f->fields[f->nfields].value = value;
    f->fields[f->nfields].value_len = strlen(value);
    f->nfields++;
    return 0;
}

static int add_file(vial_arena *a, struct vial_form *f, const vial_file *file)
{
    if (f->nfiles == f->files_cap) {
        unsigned cap = f->files_cap ? f->files_cap * 2 : 4;
        vial_file *n = vial_arena_grow(a, f->files, f->files_cap * sizeof *n, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        f->files = n;
        f->files_cap = cap;
    }
    f->files[f->nfiles++] = *file;
    return 0;
}

#define FORM_TOO_MANY (-2)

/* Same rules as the query string (request.c parse_args): split at '&',
 * empty pieces skipped, split at the first '=', '+' is a space, then
 * percent-decoding with UTF-8 repair. */
static int parse_urlencoded(vial_req *rq, struct vial_form *f)
{
    const char *p = rq->body, *end = p + rq->body_len;
    unsigned max = vial_req_max_fields(rq);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if (e > p) {
            if (f->nfields >= max)
                return FORM_TOO_MANY;
            const char *eq = memchr(p, '=', (size_t)(e - p));
            const char *ke = eq ? eq : e;
            const char *k = vial_url_decode(&rq->arena, p, (size_t)(ke - p), 1, NULL);
            const char *v = eq ? vial_url_decode(&rq->arena, eq + 1, (size_t)(e - eq - 1), 1, NULL) : "";
            if (!k || !v || add_field(&rq->arena, f, k, v) < 0)
                return -ENOMEM;
        }
        p = e + 1;
    }
    return 0;
}

/* --- multipart ---------------------------------------------------------------- */

/* Callback errors, mapped to a status and message by mp_error(). */
enum {
    FORM_E_PARTS = -2001,  /* more than vial_config.max_fields parts */
    FORM_E_DISP = -2002,   /* Content-Disposition not form-data or malformed */
    FORM_E_NONAME = -2003, /* part without Content-Disposition name */
    FORM_E_NOMEM = -2004,
    FORM_E_IO = -2005,     /* temporary file could not be created or written */
};

typedef struct part_ctx {
    vial_req *rq;
    struct vial_form *f;
    unsigned nparts;
    /* the current part */
    int has_disposition;
    const char *name, *filename, *content_type;
    /* its data: a span of the body while the pieces are adjacent, else a
     * copy; or, once spilled, a temporary file */
    const char *run;
    size_t size;
    char *copy;
    size_t copy_cap;
    int fd;
    const char *path;
} part_ctx;

static void unlink_upload(void *arg)
{
    unlink((const char *)arg);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static const char *tmpdir;
static pthread_once_t tmpdir_once = PTHREAD_ONCE_INIT;

/* Read once: getenv while another thread calls setenv is undefined, and
 * every upload would otherwise ask again. */
static void read_tmpdir(void)
{
    const char *d = getenv("TMPDIR");
    tmpdir = d && *d ? strdup(d) : NULL;
}

/* Moves the current part's bytes to a new temporary file. The body is in
 * memory already, so this costs a write to the page cache; a streaming
 * version would offload it. The unlink is registered before anything can
 * fail, so no file outlives the request. */
static int spill(part_ctx *c)
{
    pthread_once(&tmpdir_once, read_tmpdir);
    const char *dir = tmpdir ? tmpdir : "/tmp";
    size_t dl = strlen(dir);
    char *path = vial_arena_alloc(&c->rq->arena, dl + sizeof "/vial-upload-XXXXXX");
    if (!path)
        return FORM_E_NOMEM;
    memcpy(path, dir, dl);
    memcpy(path + dl, "/vial-upload-XXXXXX", sizeof "/vial-upload-XXXXXX");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return FORM_E_IO;
    if (vial_exchange_defer(c->rq, unlink_upload, path) < 0) {
        unlink(path);
        close(fd);
        return FORM_E_NOMEM;
    }
    c->fd = fd;
    c->path = path;
    const char *have = c->copy ? c->copy : c->run;
    if (c->size && write_all(fd, have, c->size) < 0)
        return FORM_E_IO;
    return 0;
}

static int mp_part_begin(void *ud)
{
    part_ctx *c = ud;
    if (++c->nparts > vial_req_max_fields(c->rq))
        return FORM_E_PARTS;
    c->has_disposition = 0;
    c->name = c->filename = c->content_type = NULL;
    c->run = NULL;
    c->size = 0;
    c->copy = NULL;
    c->copy_cap = 0;
    c->fd = -1;
    c->path = NULL;
    return 0;
}

/* filename*=charset'language'percent-encoded (RFC 5987/8187). UTF-8 is the
 * only charset clients use; others are decoded as UTF-8 too (invalid bytes
 * become U+FFFD) rather than rejected. */
static char *ext_value(vial_arena *a, const char *v, size_t n)
{
    const char *q1 = memchr(v, '\'', n);
    const char *q2 = q1 ? memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - v)) : NULL;
    if (q2) {
        n -= (size_t)(q2 + 1 - v);
        v = q2 + 1;
    }
    return vial_url_decode(a, v, n, 0, NULL);
}

static int parse_disposition(part_ctx *c, const char *v, size_t n)
{
    vial_arena *a = &c->rq->arena;
    const char *p = v, *end = v + n;
    if (!media_type_is(v, n, "form-data"))
        return FORM_E_DISP;
    param pr;
    int rc, ext = 0;
    while ((rc = next_param(a, &p, end, &pr)) > 0) {
        if (param_is(&pr, "name") && !c->name) {
            if (!(c->name = utf8_dup(a, pr.value, pr.value_len)))
                return FORM_E_NOMEM;
        } else if (param_is(&pr, "filename") && !ext) {
            if (!(c->filename = utf8_dup(a, pr.value, pr.value_len)))
                return FORM_E_NOMEM;
        } else if (param_is(&pr, "filename*")) {
            /* RFC 6266 §4.3: filename* wins over filename */
            if (!(c->filename = ext_value(a, pr.value, pr.value_len)))
                return FORM_E_NOMEM;
            ext = 1;
        }
    }
    return rc < 0 ? FORM_E_DISP : 0;
}

static int mp_header(void *ud, const char *name, size_t nl, const char *value, size_t vl)
{
    part_ctx *c = ud;
    if (nl == 19 && !vial_ascii_ncasecmp(name, "Content-Disposition", 19)) {
        if (c->has_disposition) /* the first one counts */
            return 0;
        c->has_disposition = 1;
        return parse_disposition(c, value, vl);
    }
    if (nl == 12 && !vial_ascii_ncasecmp(name, "Content-Type", 12) && !c->content_type) {
        if (!(c->content_type = vial_arena_strndup(&c->rq->arena, value, vl)))
            return FORM_E_NOMEM;
    }
    return 0;
}

static int mp_headers_end(void *ud)
{
    part_ctx *c = ud;
    return c->name ? 0 : FORM_E_NONAME;
}

static int mp_data(void *ud, const char *p, size_t n)
{
    part_ctx *c = ud;
    if (c->fd >= 0) {
        c->size += n;
        return write_all(c->fd, p, n) < 0 ? FORM_E_IO : 0;
    }
    if (c->filename && c->size + n > VIAL_FORM_SPILL) {
        int rc = spill(c);
        if (rc < 0)
            return rc;
        c->size += n;
        return write_all(c->fd, p, n) < 0 ? FORM_E_IO : 0;
    }
    if (!c->copy && (!c->size || c->run + c->size == p)) {
        /* adjacent in the body: extend the span (the usual case) */
        if (!c->size)
            c->run = p;
        c->size += n;
        return 0;
    }
    /* Pieces not adjacent (only when fed in pieces): copy. */
    if (c->size + n > c->copy_cap) {
        size_t cap = (c->size + n) * 2;
        char *d = vial_arena_grow(&c->rq->arena, c->copy, c->copy ? c->size : 0, cap);
        if (!d)
            return FORM_E_NOMEM;
        if (!c->copy && c->size)
            memcpy(d, c->run, c->size);
        c->copy = d;
        c->copy_cap = cap;
    }
    memcpy(c->copy + c->size, p, n);
    c->size += n;
    return 0;
}

static int mp_part_end(void *ud)
{
    part_ctx *c = ud;
    vial_arena *a = &c->rq->arena;
    const char *bytes = c->copy ? c->copy : c->run ? c->run : "";
    if (!c->filename) {
        char *v = utf8_dup(a, bytes, c->size);
        if (!v || add_field(a, c->f, c->name, v) < 0)
            return FORM_E_NOMEM;
        return 0;
    }
    vial_file file = {
        .field = c->name,
        .filename = c->filename,
        .content_type = c->content_type,
        .size = c->size,
        .data = c->fd >= 0 ? NULL : bytes,
        .path = c->path,
    };
    if (c->fd >= 0) {
        int rc = close(c->fd);
        c->fd = -1;
        if (rc < 0 && errno != EINTR)
            return FORM_E_IO;
    }
    return add_file(a, c->f, &file) < 0 ? FORM_E_NOMEM : 0;
}

static const vial_multipart_callbacks mp_callbacks = {
    mp_part_begin, mp_header, mp_headers_end, mp_data, mp_part_end,
};

static const char msg_io[] = "cannot write an upload to a temporary file";

static int mp_error(int rc, const char **msg)
{
    switch (rc) {
    case FORM_E_PARTS:
        *msg = "too many multipart parts (more than vial_config.max_fields)";
        return VIAL_FORM_PARTS_STATUS;
    case FORM_E_DISP:
        *msg = "part Content-Disposition is not form-data or is malformed";
        return 400;
    case FORM_E_NONAME:
        *msg = "part without Content-Disposition name";
        return 400;
    case FORM_E_NOMEM:
        *msg = "out of memory";
        return 500;
    case FORM_E_IO:
        *msg = msg_io;
        return 500;
    default:
        *msg = vial_multipart_strerror(rc);
        return 400;
    }
}

static int parse_multipart(vial_req *rq, struct vial_form *f, const char *ct, size_t ctlen)
{
    const char *p = ct, *end = ct + ctlen;
    param pr;
    const char *boundary = NULL;
    size_t blen = 0;
    int rc;
    while ((rc = next_param(&rq->arena, &p, end, &pr)) > 0) {
        if (param_is(&pr, "boundary") && !boundary) {
            boundary = pr.value;
            blen = pr.value_len;
        }
    }
    if (rc < 0 || !boundary || !blen) {
        f->error = "multipart body without boundary";
        return 400;
    }
    part_ctx c = {.rq = rq, .f = f, .fd = -1};
    vial_multipart mp;
    /* Fed whole: no line buffer needed (a line is never cut). */
    rc = vial_multipart_init(&mp, boundary, blen, &mp_callbacks, &c, NULL, 0);
    if (rc == 0)
        rc = vial_multipart_feed(&mp, rq->body, rq->body_len);
    if (rc == 0)
        rc = vial_multipart_finish(&mp);
    if (c.fd >= 0) /* stopped inside a spilled part */
        close(c.fd);
    if (rc == 0)
        return 0;
    return mp_error(rc, &f->error);
}

static struct vial_form *form_get(vial_req *rq)
{
    if (vial_rqs(rq)->form)
        return vial_rqs(rq)->form;
    static struct vial_form empty_oom = {.status = 500, .error = "out of memory"};
    struct vial_form *f = vial_arena_alloc(&rq->arena, sizeof *f);
    if (!f)
        return &empty_oom; /* not cached: a later call may succeed */
    memset(f, 0, sizeof *f);
    vial_rqs(rq)->form = f;
    const vial_http_field *h = vial_http_find_header(&rq->head, "Content-Type");
    if (!h)
        return f;
    const char *ct = h->value.p;
    size_t n = h->value.len;
    int status = 0;
    if (media_type_is(ct, n, "application/x-www-form-urlencoded")) {
        f->is_form = 1;
        int r = parse_urlencoded(rq, f);
        if (r == FORM_TOO_MANY) {
            status = 413;
            f->error = vial_sprintf(rq, "too many form fields (the limit is %u)", vial_req_max_fields(rq));
            if (!f->error)
                f->error = "too many form fields";
        } else if (r < 0) {
            status = 500;
            f->error = "out of memory";
        }
    } else if (media_type_is(ct, n, "multipart/form-data")) {
        f->is_form = 1;
        status = parse_multipart(rq, f, ct, n);
    }
    if (status) {
        /* A failed parse leaves an empty form; spilled files are still
         * unlinked by their deferred cleanups. */
        f->status = status;
        f->nfields = f->nfiles = 0;
    }
    return f;
}

int vial_req_parse_form(vial_req *rq)
{
    struct vial_form *f = form_get(rq);
    if (f->status == 500)
        return f->error == msg_io ? -EIO : -ENOMEM; /* not the client's fault */
    if (f->status)
        return vial_res_helper_error(&rq->res, f->status, f->error);
    if (!f->is_form && rq->body_len)
        return vial_res_helper_error(&rq->res, 415, "Content-Type is not a form "
                                                    "(application/x-www-form-urlencoded or multipart/form-data)");
    return 0;
}

const char *vial_req_form(vial_req *rq, const char *name)
{
    struct vial_form *f = form_get(rq);
    int i = vial_kv_find(&f->ix, f->fields, f->nfields, name, strlen(name), &rq->arena);
    return i < 0 ? NULL : f->fields[i].value;
}

unsigned vial_req_form_list(vial_req *rq, const char *name, const char **values, unsigned cap)
{
    struct vial_form *f = form_get(rq);
    unsigned n = 0;
    for (int i = vial_kv_find(&f->ix, f->fields, f->nfields, name, strlen(name), &rq->arena); i >= 0;
         i = vial_kv_next(&f->ix, f->fields, f->nfields, (unsigned)i, &rq->arena)) {
        if (n < cap)
            values[n] = f->fields[i].value;
        n++;
    }
    return n;
}

unsigned vial_req_form_count(vial_req *rq)
{
    return form_get(rq)->nfields;
}

int vial_req_form_at(vial_req *rq, unsigned i, const char **name, const char **value)
{
    struct vial_form *f = form_get(rq);
    if (i >= f->nfields)
        return -ERANGE;
    if (name)
        *name = f->fields[i].name;
    if (value)
        *value = f->fields[i].value;
    return 0;
}

unsigned vial_req_file_count(vial_req *rq)
{
    return form_get(rq)->nfiles;
}

const vial_file *vial_req_file_at(vial_req *rq, unsigned i)
{
    struct vial_form *f = form_get(rq);
    return i < f->nfiles ? &f->files[i] : NULL;
}

const vial_file *vial_req_file(vial_req *rq, const char *field)
{
    struct vial_form *f = form_get(rq);
    for (unsigned i = 0; i < f->nfiles; i++)
        if (!strcmp(f->files[i].field, field))
            return &f->files[i];
    return NULL;
}
