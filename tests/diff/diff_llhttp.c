/* Differential test: vial's request parser against llhttp.
 *
 * Usage: diff_llhttp <corpus dir> [-v]
 *
 * Every file of the directory is one connection's worth of bytes. It is run
 * through vial (vial_http_parse_request, then the body by Content-Length or
 * vial_chunked_feed, then the next pipelined request) and through llhttp in
 * HTTP_REQUEST mode with no lenient flags. The two runs are compared message
 * by message: accept / reject / incomplete, method, target, version, header
 * names and values, body framing and the decoded body bytes.
 *
 * vial follows RFC 9112 as tightened by conformance-app.md §6 and §8, which is
 * stricter than llhttp in places and different in a few. Those places are the
 * table `rules` below: each entry is a predicate, with a comment saying why
 * the parsers differ. A predicate does not trust vial's verdict alone: it
 * checks the reason in the raw bytes (through a naive reader that shares no
 * code with vial), in what llhttp parsed, or by rewriting the input and
 * running both parsers again, so a vial bug is not excused by the rule it
 * happens to resemble. A file whose disagreement
 * no rule explains fails the test (exit status 1), and so does a file whose
 * name ("ok_*", "part_*", "bad<status>_*") says something else than vial did.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/parser.h"
#include "llhttp.h"

#define MAX_MSGS 64
#define MAX_HDRS 128

/* ---- growable byte strings ------------------------------------------------- */

struct str {
    char *p;
    size_t len, cap;
};

static void str_add(struct str *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->p = realloc(s->p, s->cap);
        if (!s->p) {
            perror("realloc");
            exit(2);
        }
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = 0;
}

static void str_free(struct str *s)
{
    free(s->p);
    memset(s, 0, sizeof *s);
}

static int str_eq(const struct str *a, const struct str *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static int ieq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return 0;
    return 1;
}

/* ---- what one parser made of one file ---------------------------------------- */

enum framing { FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED };

struct header {
    struct str name, value;
};

struct message {
    size_t start;    /* offset of the message in the file (vial only) */
    size_t head_len; /* bytes of its head (vial only) */
    struct str method, target;
    int major, minor;
    struct header hdrs[MAX_HDRS];
    unsigned nhdrs;   /* fields seen, even beyond MAX_HDRS */
    size_t field_bytes; /* llhttp: bytes of name + value of all fields */
    int head_done;    /* the head was complete and accepted */
    int framing;
    uint64_t content_length;
    uint64_t max_chunk; /* largest chunk size announced */
    struct str body;
    int upgrade;
};

enum verdict { ACCEPT, REJECT, INCOMPLETE };
static const char *verdict_name[] = {"accept", "reject", "incomplete"};

struct outcome {
    struct message msgs[MAX_MSGS + 1];
    unsigned n;         /* complete messages; msgs[n] is the one in progress */
    int verdict;
    int status;         /* vial: the HTTP status of a rejection */
    int err;            /* llhttp: errno of a rejection */
    const char *reason; /* llhttp: reason of a rejection */
    size_t err_pos;     /* offset of the refused byte */
    int upgraded;       /* stopped after a message that switches protocols */
};

static void outcome_free(struct outcome *o)
{
    for (unsigned i = 0; i <= o->n && i <= MAX_MSGS; i++) {
        struct message *m = &o->msgs[i];
        str_free(&m->method);
        str_free(&m->target);
        str_free(&m->body);
        for (unsigned k = 0; k < m->nhdrs && k < MAX_HDRS; k++) {
            str_free(&m->hdrs[k].name);
            str_free(&m->hdrs[k].value);
        }
    }
    memset(o, 0, sizeof *o);
}

static void add_header(struct message *m, const char *n, size_t nl, const char *v, size_t vl)
{
    if (m->nhdrs < MAX_HDRS) {
        str_add(&m->hdrs[m->nhdrs].name, n, nl);
        str_add(&m->hdrs[m->nhdrs].value, v, vl);
    }
    m->nhdrs++;
}

static const struct str *get_header(const struct message *m, const char *name, unsigned nth)
{
    for (unsigned i = 0; i < m->nhdrs && i < MAX_HDRS; i++)
        if (ieq(m->hdrs[i].name.p, m->hdrs[i].name.len, name) && nth-- == 0)
            return &m->hdrs[i].value;
    return NULL;
}

static unsigned count_header(const struct message *m, const char *name)
{
    unsigned n = 0;
    while (get_header(m, name, n))
        n++;
    return n;
}

/* ---- vial ----------------------------------------------------------------------- */

static int only_empty_lines(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '\r' && p[i] != '\n')
            return 0;
    return 1;
}

/* vial reports no position for a head error; since an error seen in a prefix
 * is the error of the whole head, the first refused byte is found by bisection. */
static size_t vial_error_pos(const char *p, size_t n)
{
    static vial_http_head r;
    size_t lo = 0, hi = n; /* prefix lo is not refused, prefix hi is */
    int st;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (vial_http_parse_request(p, mid, &r, &st) == VIAL_HTTP_ERROR)
            hi = mid;
        else
            lo = mid;
    }
    return hi - 1;
}

static void run_vial(const char *data, size_t len, struct outcome *o)
{
    static vial_http_head r;
    size_t off = 0;

    memset(o, 0, sizeof *o);
    o->verdict = ACCEPT;
    for (;;) {
        struct message *m = &o->msgs[o->n];
        m->start = off;
        if (off == len || only_empty_lines(data + off, len - off) || o->n == MAX_MSGS)
            return;
        int st;
        int rc = vial_http_parse_request(data + off, len - off, &r, &st);
        if (rc == VIAL_HTTP_INCOMPLETE) {
            o->verdict = INCOMPLETE;
            return;
        }
        if (rc == VIAL_HTTP_ERROR) {
            o->verdict = REJECT;
            o->status = st;
            o->err_pos = off + vial_error_pos(data + off, len - off);
            return;
        }
        m->head_done = 1;
        m->head_len = (size_t)rc;
        str_add(&m->method, r.method.p, r.method.len);
        str_add(&m->target, r.target.p, r.target.len);
        m->major = 1;
        m->minor = r.version_minor;
        for (unsigned i = 0; i < r.nheaders; i++)
            add_header(m, r.headers[i].name.p, r.headers[i].name.len, r.headers[i].value.p,
                       r.headers[i].value.len);
        m->framing = r.body_kind == VIAL_BODY_CHUNKED  ? FRAME_CHUNKED
                     : r.body_kind == VIAL_BODY_LENGTH ? FRAME_LENGTH
                                                       : FRAME_NONE;
        m->content_length = r.content_length;
        m->upgrade = r.upgrade_websocket;
        off += (size_t)rc;

        if (m->framing == FRAME_LENGTH) {
            if (len - off < m->content_length) {
                o->verdict = INCOMPLETE;
                return;
            }
            str_add(&m->body, data + off, (size_t)m->content_length);
            off += (size_t)m->content_length;
        } else if (m->framing == FRAME_CHUNKED) {
            vial_chunked d;
            size_t used = 0, out_len = 0;
            char *out = malloc(len - off + 1);
            vial_chunked_init(&d);
            int crc = vial_chunked_feed(&d, data + off, len - off, &used, out, &out_len,
                                        VIAL_HTTP_MAX_BODY);
            str_add(&m->body, out, out_len);
            free(out);
            if (crc <= 0) {
                o->verdict = crc == 0 ? INCOMPLETE : REJECT;
                o->status = -crc;
                o->err_pos = off + used;
                return;
            }
            off += used;
        }
        o->n++;
        if (m->upgrade) {
            o->upgraded = 1;
            return;
        }
        /* The server answers it and closes: what follows is never read. */
        if (!r.keep_alive)
            return;
    }
}

/* ---- llhttp ------------------------------------------------------------------------ */

struct lh_state {
    struct outcome *o;
    struct str field, value; /* the field being read */
    int in_body;             /* header callbacks now mean trailers */
};

static struct message *lh_msg(llhttp_t *p)
{
    struct lh_state *s = p->data;
    return &s->o->msgs[s->o->n];
}

static int lh_message_begin(llhttp_t *p)
{
    struct lh_state *s = p->data;
    if (s->o->n >= MAX_MSGS)
        return HPE_USER;
    s->in_body = 0;
    return 0;
}

static int lh_method(llhttp_t *p, const char *at, size_t n)
{
    str_add(&lh_msg(p)->method, at, n);
    return 0;
}

static int lh_url(llhttp_t *p, const char *at, size_t n)
{
    str_add(&lh_msg(p)->target, at, n);
    return 0;
}

static int lh_field(llhttp_t *p, const char *at, size_t n)
{
    str_add(&((struct lh_state *)p->data)->field, at, n);
    return 0;
}

static int lh_value(llhttp_t *p, const char *at, size_t n)
{
    str_add(&((struct lh_state *)p->data)->value, at, n);
    return 0;
}

static int lh_value_complete(llhttp_t *p)
{
    struct lh_state *s = p->data;
    struct message *m = lh_msg(p);
    if (!s->in_body) {
        add_header(m, s->field.p ? s->field.p : "", s->field.len, s->value.p ? s->value.p : "",
                   s->value.len);
        m->field_bytes += s->field.len + s->value.len;
    }
    s->field.len = s->value.len = 0;
    return 0;
}

static int lh_headers_complete(llhttp_t *p)
{
    struct lh_state *s = p->data;
    struct message *m = lh_msg(p);
    /* A field with an empty value gets no value callback. */
    if (s->field.len)
        lh_value_complete(p);
    s->in_body = 1;
    m->head_done = 1;
    m->major = llhttp_get_http_major(p);
    m->minor = llhttp_get_http_minor(p);
    if (p->flags & F_CHUNKED) {
        m->framing = FRAME_CHUNKED;
    } else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0) {
        m->framing = FRAME_LENGTH;
        m->content_length = p->content_length;
    }
    m->upgrade = llhttp_get_upgrade(p);
    return 0;
}

static int lh_chunk_header(llhttp_t *p)
{
    struct message *m = lh_msg(p);
    if (p->content_length > m->max_chunk)
        m->max_chunk = p->content_length;
    return 0;
}

static int lh_body(llhttp_t *p, const char *at, size_t n)
{
    str_add(&lh_msg(p)->body, at, n);
    return 0;
}

static int lh_message_complete(llhttp_t *p)
{
    struct lh_state *s = p->data;
    s->o->n++;
    s->in_body = 0;
    return 0;
}

static void run_llhttp(const char *data, size_t len, struct outcome *o)
{
    static llhttp_settings_t settings;
    static int ready;
    struct lh_state s = {.o = o};
    llhttp_t p;

    if (!ready) {
        llhttp_settings_init(&settings);
        settings.on_message_begin = lh_message_begin;
        settings.on_method = lh_method;
        settings.on_url = lh_url;
        settings.on_header_field = lh_field;
        settings.on_header_value = lh_value;
        settings.on_header_value_complete = lh_value_complete;
        settings.on_headers_complete = lh_headers_complete;
        settings.on_chunk_header = lh_chunk_header;
        settings.on_body = lh_body;
        settings.on_message_complete = lh_message_complete;
        ready = 1;
    }
    memset(o, 0, sizeof *o);
    llhttp_init(&p, HTTP_REQUEST, &settings);
    p.data = &s;

    llhttp_errno_t err = llhttp_execute(&p, data, len);
    if (err == HPE_OK) {
        /* Mid-message if something of a request was read and not finished. */
        struct message *m = &o->msgs[o->n];
        o->verdict = (m->method.len || m->head_done) ? INCOMPLETE : ACCEPT;
    } else if (err == HPE_PAUSED_UPGRADE) {
        o->verdict = ACCEPT;
        o->upgraded = 1;
    } else {
        o->verdict = REJECT;
        o->err = err;
        o->reason = llhttp_get_error_reason(&p);
        const char *at = llhttp_get_error_pos(&p);
        o->err_pos = at && at >= data && at <= data + len ? (size_t)(at - data) : len;
    }
    str_free(&s.field);
    str_free(&s.value);
}

/* ---- comparison --------------------------------------------------------------------- */

static void trim(const struct str *s, const char **p, size_t *n)
{
    const char *a = s->p ? s->p : "", *b = a + s->len;
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    *p = a;
    *n = (size_t)(b - a);
}

/* Describes the first difference between two complete messages, or NULL. */
static const char *message_diff(const struct message *v, const struct message *l)
{
    static char why[256];
    if (!str_eq(&v->method, &l->method))
        return "method";
    if (!str_eq(&v->target, &l->target))
        return "target";
    if (v->major != l->major || v->minor != l->minor)
        return "version";
    if (v->nhdrs != l->nhdrs)
        return "number of header fields";
    for (unsigned i = 0; i < v->nhdrs && i < MAX_HDRS; i++) {
        const char *a, *b;
        size_t an, bn;
        if (!str_eq(&v->hdrs[i].name, &l->hdrs[i].name)) {
            snprintf(why, sizeof why, "name of header field %u", i);
            return why;
        }
        trim(&v->hdrs[i].value, &a, &an);
        trim(&l->hdrs[i].value, &b, &bn);
        if (an != bn || memcmp(a, b, an) != 0) {
            snprintf(why, sizeof why, "value of header field %u (%.*s)", i,
                     (int)v->hdrs[i].name.len, v->hdrs[i].name.p);
            return why;
        }
    }
    if (v->framing != l->framing)
        return "body framing";
    if (v->framing == FRAME_LENGTH && v->content_length != l->content_length)
        return "content length";
    if (!str_eq(&v->body, &l->body))
        return "body bytes";
    return NULL;
}

/* What the rules look at: the file, both outcomes, and where they part. */
struct ctx {
    const char *file;
    const char *data;
    size_t len;
    const struct outcome *v, *l;
    unsigned k;       /* index of the first message they disagree on */
    const char *what; /* how */
};

/* ---- a deliberately naive reading of the message in dispute ------------------------ */

/* The rules look at the raw bytes through this simple line splitter, which
 * shares no code with vial's parser: a first line, then "name: value" lines
 * up to the first empty line. */
struct naive_field {
    const char *name, *value;
    size_t nlen, vlen;
    int colon; /* the line has a ':' */
};

struct naive {
    struct naive_field f[512];
    unsigned nf;
    size_t field_bytes; /* field lines with their line endings */
    int complete;       /* the empty line was seen */
    size_t head_len;    /* then: bytes up to and including it */
};

static void naive_parse(const char *p, size_t n, struct naive *h)
{
    size_t i = 0;
    memset(h, 0, sizeof *h);
    while (i < n && (p[i] == '\r' || p[i] == '\n'))
        i++;
    for (unsigned line = 0; i < n; line++) {
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl)
            return;
        size_t e = (size_t)(nl - p), end = e > i && p[e - 1] == '\r' ? e - 1 : e;
        const char *s = p + i;
        size_t sl = end - i;
        if (line > 0 && sl == 0) {
            h->complete = 1;
            h->head_len = e + 1;
            return;
        }
        if (line > 0 && h->nf < 512) {
            struct naive_field *f = &h->f[h->nf++];
            const char *c = memchr(s, ':', sl);
            f->colon = c != NULL;
            f->name = s;
            f->nlen = c ? (size_t)(c - s) : sl;
            if (c) {
                f->value = c + 1;
                f->vlen = sl - f->nlen - 1;
                while (f->vlen && (*f->value == ' ' || *f->value == '\t'))
                    f->value++, f->vlen--;
                while (f->vlen && (f->value[f->vlen - 1] == ' ' || f->value[f->vlen - 1] == '\t'))
                    f->vlen--;
            }
            h->field_bytes += e + 1 - i;
        }
        i = e + 1;
    }
}

/* The naive head of the message in dispute, where vial's framing of the
 * messages before it (on which both agreed) puts it. */
static void disputed_head(const struct ctx *c, struct naive *h)
{
    size_t start = c->v->msgs[c->k].start;
    naive_parse(c->data + start, c->len - start, h);
}

static const struct naive_field *naive_get(const struct naive *h, const char *name, unsigned nth)
{
    for (unsigned i = 0; i < h->nf; i++)
        if (h->f[i].colon && ieq(h->f[i].name, h->f[i].nlen, name) && nth-- == 0)
            return &h->f[i];
    return NULL;
}

/* Splits a comma list into OWS-trimmed elements, empty ones included. */
static unsigned list_elements(const char *v, size_t n, const char *el[], size_t ell[], unsigned max)
{
    unsigned k = 0;
    const char *p = v, *end = v + n;
    while (k < max) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        const char *a = p, *b = e;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        el[k] = a;
        ell[k++] = (size_t)(b - a);
        if (!c)
            break;
        p = c + 1;
    }
    return k;
}

/* ---- the raw chunked body of the message in dispute ----------------------------------- */

/* A naive walk over chunk-size lines, sharing no code with vial's decoder. */
struct chunk_walk {
    const char *d;
    size_t len, i;
    /* the current chunk: */
    size_t line, line_end; /* size line [line, line_end), line_end at its LF */
    size_t digits;         /* leading hex digits */
    uint64_t size;         /* their value, saturated */
};

static size_t body_start(const struct ctx *c)
{
    struct naive h;
    disputed_head(c, &h);
    return c->v->msgs[c->k].start + h.head_len;
}

static void walk_init(struct chunk_walk *w, const struct ctx *c)
{
    memset(w, 0, sizeof *w);
    w->d = c->data;
    w->len = c->len;
    w->i = body_start(c);
}

/* Advances to the next chunk-size line; 0 when there is none. After the call,
 * the chunk's data starts at line_end + 1. */
static int walk_next(struct chunk_walk *w)
{
    if (w->i >= w->len)
        return 0;
    const char *nl = memchr(w->d + w->i, '\n', w->len - w->i);
    w->line = w->i;
    w->line_end = nl ? (size_t)(nl - w->d) : w->len;
    w->digits = 0;
    w->size = 0;
    for (size_t k = w->line; k < w->line_end && isxdigit((unsigned char)w->d[k]); k++) {
        unsigned v = (unsigned)(isdigit((unsigned char)w->d[k]) ? w->d[k] - '0'
                                                                 : (w->d[k] | 0x20) - 'a' + 10);
        w->size = w->size >> 60 ? UINT64_MAX : w->size << 4 | v;
        w->digits++;
    }
    /* The next size line follows the data and its CRLF. */
    w->i = w->size > w->len ? w->len : w->line_end + 1 + w->size + 2;
    return 1;
}

/* ---- predicates shared by the rules --------------------------------------------------- */

/* vial refused message k with this status (0: any). */
static int vial_refused(const struct ctx *c, int status)
{
    return c->v->verdict == REJECT && c->v->n == c->k && (!status || c->v->status == status);
}

/* vial took message k whole, or has found nothing wrong with it so far. */
static int vial_took(const struct ctx *c)
{
    return c->v->n > c->k || (c->v->verdict == INCOMPLETE && c->v->n == c->k);
}

/* llhttp refused message k (with this errno, or any when err < 0). */
static int llhttp_refused(const struct ctx *c, int err)
{
    return c->l->verdict == REJECT && c->l->n == c->k && (err < 0 || c->l->err == err);
}

/* llhttp's view of message k's head, if it got through the head. */
static const struct message *llhttp_head(const struct ctx *c)
{
    const struct message *m = &c->l->msgs[c->k];
    return m->head_done ? m : NULL;
}

/* The byte vial refused, if it refused message k. */
static int refused_at(const struct ctx *c, int status, size_t *at)
{
    *at = c->v->err_pos;
    return vial_refused(c, status) && *at < c->len;
}

static int is_tchar(char ch)
{
    return isalnum((unsigned char)ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int is_token(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar(p[i]))
            return 0;
    return n > 0;
}

static int is_llhttp_method(const char *p, size_t n)
{
#define XX(num, name, string) if (n == strlen(#string) && memcmp(p, #string, n) == 0) return 1;
    HTTP_METHOD_MAP(XX)
#undef XX
    return 0;
}

/* The raw request line of message k, however much of it has arrived: the
 * method up to the first SP, the target up to the next SP, then the version
 * up to the line end. A part that has not ended yet runs to the end of data. */
struct raw_line {
    const char *method, *target, *version;
    size_t mlen, tlen, vlen;
    size_t target_end; /* file offset of the byte after the target */
    int has_target, has_version;
};

static void raw_request_line(const struct ctx *c, struct raw_line *r)
{
    size_t i = c->v->msgs[c->k].start, n = c->len;
    const char *d = c->data;
    memset(r, 0, sizeof *r);
    while (i < n && (d[i] == '\r' || d[i] == '\n'))
        i++;
    r->method = d + i;
    while (i < n && d[i] != ' ' && d[i] != '\r' && d[i] != '\n')
        i++;
    r->mlen = (size_t)(d + i - r->method);
    if (i == n || d[i] != ' ')
        return;
    r->has_target = 1;
    r->target = d + ++i;
    while (i < n && d[i] != ' ' && d[i] != '\r' && d[i] != '\n')
        i++;
    r->tlen = (size_t)(d + i - r->target);
    r->target_end = i;
    if (i == n || d[i] != ' ')
        return;
    r->has_version = 1;
    r->version = d + ++i;
    while (i < n && d[i] != '\r' && d[i] != '\n')
        i++;
    r->vlen = (size_t)(d + i - r->version);
}

/* vial judges the target when its SP arrives: it must have refused there. */
static int refused_target(const struct ctx *c, struct raw_line *r)
{
    size_t at;
    raw_request_line(c, r);
    return refused_at(c, 400, &at) && r->has_version && at == r->target_end;
}

/* host [ ":" port ] per RFC 3986, written apart from vial's check. */
static int authority_ok(const char *a, size_t n)
{
    size_t i = 0;
    if (n && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close || close == a + 1)
            return 0;
        for (const char *q = a + 1; q < close; q++)
            if (!isxdigit((unsigned char)*q) && !(*q && strchr(":.vV-_~!$&'()*+,;=", *q)))
                return 0;
        i = (size_t)(close - a) + 1;
    } else {
        while (i < n && (isalnum((unsigned char)a[i]) || (a[i] && strchr("-._~%!$&'()*+,;=", a[i]))))
            i++;
        if (i == 0)
            return 0;
    }
    if (i < n && a[i++] != ':')
        return 0;
    for (; i < n; i++)
        if (!isdigit((unsigned char)a[i]))
            return 0;
    return 1;
}

/* "http://" or "https://" (any case): the length of the prefix, else 0. */
static size_t http_scheme(const char *t, size_t n)
{
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
        return 7;
    if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
        return 8;
    return 0;
}

static const char *compare(struct ctx *c);
static int explain(const struct ctx *c);

/* Same results, message for message? */
static int same_outcome(const struct outcome *a, const struct outcome *b)
{
    if (a->n != b->n || a->verdict != b->verdict || a->status != b->status)
        return 0;
    for (unsigned i = 0; i < a->n; i++)
        if (message_diff(&a->msgs[i], &b->msgs[i]))
            return 0;
    return 1;
}

/* For rules that name a detail vial ignores (bare LF vs CRLF, chunk
 * extensions): rewrites the detail away and runs both parsers again. The
 * rule holds when the rewrite changed something, vial gives the same result
 * as before (it really ignored the detail), and the parsers then agree, or
 * differ only in ways other rules explain (each rewrite removes some of the
 * detail, so this ends; 16 rewrites deep at most). */
static int explained_after(const struct ctx *c, size_t (*rewrite)(const struct ctx *c, char *out))
{
    static int depth;
    char *copy = malloc(2 * c->len + 8);
    size_t n = rewrite(c, copy);
    int ok = 0;
    if (depth < 16 && (n != c->len || memcmp(copy, c->data, n) != 0)) {
        struct outcome *v = calloc(1, sizeof *v), *l = calloc(1, sizeof *l);
        run_vial(copy, n, v);
        run_llhttp(copy, n, l);
        struct ctx d = {.file = c->file, .data = copy, .len = n, .v = v, .l = l};
        if (same_outcome(c->v, v)) {
            depth++;
            ok = !compare(&d) || explain(&d);
            depth--;
        }
        outcome_free(v);
        outcome_free(l);
        free(v);
        free(l);
    }
    free(copy);
    return ok;
}

/* Same, for vial: true when vial refuses message k of the rewritten file. */
static int vial_refuses_after(const struct ctx *c,
                              size_t (*rewrite)(const struct ctx *c, char *out))
{
    static struct outcome o;
    char *copy = malloc(2 * c->len + 8);
    size_t n = rewrite(c, copy);
    run_vial(copy, n, &o);
    int ok = o.verdict == REJECT && o.n == c->k;
    outcome_free(&o);
    free(copy);
    return ok;
}

/* Every head with its bare LFs turned into CRLF: the heads vial parsed, and
 * the one it stopped in, up to its empty line or the end of the data. */
static size_t rewrite_bare_lf(const struct ctx *c, char *out)
{
    const struct outcome *v = c->v;
    struct naive last;
    size_t n = 0, m = 0, last_start = v->msgs[v->n].start;
    naive_parse(c->data + last_start, c->len - last_start, &last);
    size_t last_end = last.complete ? last_start + last.head_len : c->len;

    for (size_t i = 0; i < c->len; i++) {
        while (m < v->n && i >= v->msgs[m].start + v->msgs[m].head_len)
            m++;
        int in_head = m < v->n ? i >= v->msgs[m].start
                               : i >= last_start && i < last_end;
        if (in_head && c->data[i] == '\n' && (i == 0 || c->data[i - 1] != '\r'))
            out[n++] = '\r';
        out[n++] = c->data[i];
    }
    return n;
}

/* The disputed chunked body with everything after each size removed. */
static size_t rewrite_no_extensions(const struct ctx *c, char *out)
{
    struct chunk_walk w;
    size_t n = 0, from = 0;
    walk_init(&w, c);
    while (walk_next(&w)) {
        /* An unfinished last line loses everything after its digits. */
        size_t cut = w.line + w.digits, cr = w.line_end;
        if (cr > cut && c->data[cr - 1] == '\r')
            cr--;
        memcpy(out + n, c->data + from, cut - from);
        n += cut - from;
        from = cr;
        if (w.size == 0)
            break;
    }
    memcpy(out + n, c->data + from, c->len - from);
    return n + c->len - from;
}

/* The file cut after the disputed head's last complete line, then the end of
 * the head. */
static size_t rewrite_end_head(const struct ctx *c, char *out)
{
    size_t n = c->len;
    while (n > c->v->msgs[c->k].start && c->data[n - 1] != '\n')
        n--;
    memcpy(out, c->data, n);
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}

/* ---- the documented differences --------------------------------------------------------- */
/* Each predicate is one deliberate difference; its comment says why vial
 * differs. "llhttp" is llhttp 8.1 as Debian builds it (LLHTTP_STRICT_MODE 0,
 * no lenient flags), which is laxer than its strict mode in places. */

/* Bare LF ends head lines in vial (RFC 9112 §2.2, spec §6); llhttp takes it
 * after the request line but refuses it after a field value. Proven by
 * rerunning llhttp with the head's bare LFs made CRLF. */
static int bare_lf_head(const struct ctx *c)
{
    return vial_took(c) && llhttp_refused(c, -1) && explained_after(c, rewrite_bare_lf);
}

/* A method is any token (RFC 9110 §9.1, spec §3.3: case-sensitive, routing
 * answers 404/405); llhttp only knows its fixed list. */
static int custom_method(const struct ctx *c)
{
    struct raw_line r;
    raw_request_line(c, &r);
    return vial_took(c) && llhttp_refused(c, HPE_INVALID_METHOD) && is_token(r.method, r.mlen) &&
           !is_llhttp_method(r.method, r.mlen);
}

/* HTTP/1.<d> for another digit d is served as HTTP/1.1 (RFC 9110 §2.5: minor
 * versions are compatible; spec §6); llhttp refuses the versions it does not
 * know. */
static int version_1x(const struct ctx *c)
{
    struct raw_line r;
    raw_request_line(c, &r);
    return vial_took(c) && llhttp_refused(c, HPE_INVALID_VERSION) && r.vlen >= 8 &&
           memcmp(r.version, "HTTP/1.", 7) == 0 && r.version[7] >= '2' && r.version[7] <= '9' &&
           (c->v->n == c->k || c->v->msgs[c->k].minor == 1);
}

/* Another major version (HTTP/0.9, 2.0, 3.0) is a 505 (RFC 9110 §15.6.6,
 * spec §6); llhttp parses these request lines and leaves the policy to its
 * caller. */
static int version_505(const struct ctx *c)
{
    struct raw_line r;
    raw_request_line(c, &r);
    return vial_refused(c, 505) && r.vlen == 8 && memcmp(r.version, "HTTP/", 5) == 0 &&
           isdigit((unsigned char)r.version[5]) && r.version[5] != '1' && r.version[6] == '.' &&
           isdigit((unsigned char)r.version[7]);
}

/* A request line without a version (HTTP/0.9's "GET /") is a 400: vial only
 * speaks HTTP/1.x (spec §6); llhttp accepts it as an HTTP/0.9 request. */
static int http09_request(const struct ctx *c)
{
    struct raw_line r;
    size_t at;
    raw_request_line(c, &r);
    return refused_at(c, 400, &at) && r.has_target && !r.has_version &&
           at == r.target_end && (c->data[at] == '\r' || c->data[at] == '\n');
}

/* HTTP/1.1 needs exactly one Host, and no request may carry two (RFC 9112
 * §3.2, spec §6); llhttp does not look at Host. */
static int host_count(const struct ctx *c)
{
    const struct message *m = llhttp_head(c);
    if (!vial_refused(c, 400) || !m)
        return 0;
    unsigned n = count_header(m, "host");
    return n > 1 || (m->major == 1 && m->minor == 1 && n == 0);
}

/* Transfer-Encoding in an HTTP/1.0 request is a 400 (spec §6; RFC 9112 §6.1:
 * such framing from a 1.0 peer is faulty); llhttp decodes it as chunked. */
static int te_http10(const struct ctx *c)
{
    const struct message *m = llhttp_head(c);
    return vial_refused(c, 400) && m && m->major == 1 && m->minor == 0 &&
           count_header(m, "transfer-encoding") > 0;
}

/* A coding before the final chunked ("gzip, chunked") is a 501: vial decodes
 * no other transfer coding (RFC 9112 §6.1, spec §6). llhttp frames the body
 * as chunked and leaves the gzip layer to its caller. */
static int te_coding_501(const struct ctx *c)
{
    const struct message *m = llhttp_head(c);
    if (!vial_refused(c, 501) || !m || m->framing != FRAME_CHUNKED)
        return 0;
    unsigned codings = 0;
    for (unsigned i = 0; get_header(m, "transfer-encoding", i); i++) {
        const struct str *v = get_header(m, "transfer-encoding", i);
        const char *el[64];
        size_t ell[64];
        unsigned k = list_elements(v->p ? v->p : "", v->len, el, ell, 64);
        for (unsigned j = 0; j < k; j++)
            codings += ell[j] > 0;
    }
    return codings > 1;
}

/* Empty list elements are ignored (RFC 9110 §5.6.1), so ",chunked," is
 * chunked; llhttp wants "chunked" as the literal last element. */
static int te_empty_elements(const struct ctx *c)
{
    struct naive hs, *h = &hs;
    disputed_head(c, h);
    const struct naive_field *f = naive_get(h, "transfer-encoding", 0);
    if (!vial_took(c) || !llhttp_refused(c, HPE_INVALID_TRANSFER_ENCODING) || !f ||
        naive_get(h, "transfer-encoding", 1))
        return 0;
    const char *el[64];
    size_t ell[64];
    unsigned k = list_elements(f->value, f->vlen, el, ell, 64), empty = 0, chunked = 0;
    for (unsigned j = 0; j < k; j++) {
        empty += ell[j] == 0;
        chunked += ieq(el[j], ell[j], "chunked");
    }
    return empty > 0 && chunked == 1 && empty + chunked == k;
}

/* Several Content-Length values that are all the same number ("5, 5", or two
 * fields "5") count as that number (RFC 9110 §8.6, spec §6); llhttp refuses
 * any list or repetition. */
static int cl_identical(const struct ctx *c)
{
    struct naive hs, *h = &hs;
    disputed_head(c, h);
    if (!vial_took(c) || !c->v->msgs[c->k].head_done ||
        (!llhttp_refused(c, HPE_INVALID_CONTENT_LENGTH) &&
         !llhttp_refused(c, HPE_UNEXPECTED_CONTENT_LENGTH)))
        return 0;
    unsigned values = 0;
    uint64_t first = 0;
    for (unsigned i = 0; naive_get(h, "content-length", i); i++) {
        const struct naive_field *f = naive_get(h, "content-length", i);
        const char *el[64];
        size_t ell[64];
        unsigned k = list_elements(f->value, f->vlen, el, ell, 64);
        for (unsigned j = 0; j < k; j++) {
            uint64_t v = 0;
            if (!ell[j] || ell[j] > 18)
                return 0;
            for (size_t q = 0; q < ell[j]; q++) {
                if (!isdigit((unsigned char)el[j][q]))
                    return 0;
                v = v * 10 + (unsigned)(el[j][q] - '0');
            }
            if (values++ && v != first)
                return 0;
            first = v;
        }
    }
    return values > 1 && c->v->msgs[c->k].content_length == first;
}

/* Content-Length and Transfer-Encoding are judged with the whole head (so the
 * answer does not depend on field order, spec §6); llhttp refuses a bad value
 * as soon as it reads it. Proven by ending the head there: vial refuses it. */
static int framing_judged_at_head_end(const struct ctx *c)
{
    if (c->v->verdict != INCOMPLETE || c->v->n != c->k || c->v->msgs[c->k].head_done)
        return 0;
    if (!llhttp_refused(c, HPE_INVALID_CONTENT_LENGTH) &&
        !llhttp_refused(c, HPE_UNEXPECTED_CONTENT_LENGTH) &&
        !llhttp_refused(c, HPE_INVALID_TRANSFER_ENCODING))
        return 0;
    return vial_refuses_after(c, rewrite_end_head);
}

/* Trailer fields are read under the field-line rules and then dropped (RFC
 * 9112 §7.1.2 lets a recipient discard them, spec §6), framing names
 * included; llhttp applies its Content-Length / Transfer-Encoding checks to
 * trailers and refuses. */
static int trailer_framing_fields(const struct ctx *c)
{
    struct chunk_walk w;
    if (c->v->n <= c->k || c->v->msgs[c->k].framing != FRAME_CHUNKED ||
        (!llhttp_refused(c, HPE_INVALID_CONTENT_LENGTH) &&
         !llhttp_refused(c, HPE_UNEXPECTED_CONTENT_LENGTH) &&
         !llhttp_refused(c, HPE_INVALID_TRANSFER_ENCODING)))
        return 0;
    walk_init(&w, c);
    while (walk_next(&w) && w.size)
        ;
    /* llhttp's complaint is after the last chunk, within vial's message. */
    size_t end = c->v->msgs[c->k + 1].start ? c->v->msgs[c->k + 1].start : c->len;
    if (c->l->err_pos <= w.line_end || c->l->err_pos > end)
        return 0;
    size_t p = c->l->err_pos;
    while (p > w.line_end && c->data[p - 1] != '\n')
        p--;
    return strncasecmp(c->data + p, "content-length:", 15) == 0 ||
           strncasecmp(c->data + p, "transfer-encoding:", 18) == 0;
}

/* Bodies over 1 MiB are refused from the head or the chunk-size line (spec
 * §8: 413, even for sizes that overflow 64 bits); llhttp has no body limit. */
static int body_limit(const struct ctx *c)
{
    if (!vial_refused(c, 413))
        return 0;
    struct naive h;
    disputed_head(c, &h);
    const struct naive_field *f = naive_get(&h, "content-length", 0);
    if (f && f->vlen > 7)
        return 1;
    if (f) {
        uint64_t v = 0;
        for (size_t q = 0; q < f->vlen && isdigit((unsigned char)f->value[q]); q++)
            v = v * 10 + (unsigned)(f->value[q] - '0');
        return v > VIAL_HTTP_MAX_BODY;
    }
    struct chunk_walk w;
    uint64_t total = 0;
    walk_init(&w, c);
    while (walk_next(&w) && w.line <= c->v->err_pos) {
        if (w.size > VIAL_HTTP_MAX_BODY - total)
            return 1;
        total += w.size;
    }
    return 0;
}

/* A request-target over 8192 bytes is a 414 (spec §8); llhttp has no limit. */
static int target_limit(const struct ctx *c)
{
    struct raw_line r;
    raw_request_line(c, &r);
    return vial_refused(c, 414) && r.tlen > VIAL_HTTP_MAX_TARGET;
}

/* More than 100 fields or 16384 bytes of field lines is a 431 (spec §8);
 * llhttp has no such limits. */
static int header_limit(const struct ctx *c)
{
    struct naive hs, *h = &hs;
    disputed_head(c, h);
    if (!vial_refused(c, 431))
        return 0;
    if (h->nf > VIAL_HTTP_MAX_HEADERS || h->field_bytes > VIAL_HTTP_MAX_HEADER_BYTES)
        return 1;
    /* An unfinished head: everything after the request line is field lines. */
    struct raw_line r;
    raw_request_line(c, &r);
    if (h->complete || !r.has_version)
        return 0;
    size_t fields = (size_t)(r.version + r.vlen - c->data);
    fields += fields < c->len && c->data[fields] == '\r';
    fields += fields < c->len && c->data[fields] == '\n';
    return c->len - fields > VIAL_HTTP_MAX_HEADER_BYTES;
}

/* An expectation other than 100-continue is a 417 (RFC 9110 §10.1.1, spec
 * §6); llhttp does not interpret Expect. */
static int expect_417(const struct ctx *c)
{
    const struct message *m = llhttp_head(c);
    if (!vial_refused(c, 417) || !m)
        return 0;
    for (unsigned i = 0; get_header(m, "expect", i); i++) {
        const struct str *v = get_header(m, "expect", i);
        const char *el[64];
        size_t ell[64];
        unsigned k = list_elements(v->p ? v->p : "", v->len, el, ell, 64);
        for (unsigned j = 0; j < k; j++)
            if (ell[j] && !ieq(el[j], ell[j], "100-continue"))
                return 1;
    }
    return 0;
}

/* userinfo in an absolute-form target ("http://user@host/") is a 400 (RFC
 * 9110 §4.2.4 forbids it in http URIs; spec §6); llhttp's URL scanner takes
 * it. */
static int userinfo(const struct ctx *c)
{
    struct raw_line r;
    if (!refused_target(c, &r))
        return 0;
    size_t s = http_scheme(r.target, r.tlen);
    size_t auth = s ? strcspn(r.target + s, "/?") : 0;
    if (auth > r.tlen - s)
        auth = r.tlen - s;
    return s && memchr(r.target + s, '@', auth) != NULL;
}

/* An absolute-form target must be http(s)://host[:port] with a valid host
 * (RFC 9110 §4.2.1, RFC 3986 §3.2); llhttp's URL scanner is laxer about the
 * authority ("[" without "]", empty host) and takes any scheme. */
static int absolute_form_syntax(const struct ctx *c)
{
    struct raw_line r;
    if (!refused_target(c, &r) || !r.tlen || r.target[0] == '/' || r.target[0] == '*')
        return 0;
    size_t s = http_scheme(r.target, r.tlen);
    if (!s)
        return memmem(r.target, r.tlen, "://", 3) != NULL; /* another scheme */
    size_t auth = 0;
    while (s + auth < r.tlen && r.target[s + auth] != '/' && r.target[s + auth] != '?')
        auth++;
    return !authority_ok(r.target + s, auth);
}

/* Authority-form ("CONNECT host:443") is a 400: vial is not a proxy (spec
 * §6). llhttp accepts it and stops parsing for the tunnel. */
static int authority_form(const struct ctx *c)
{
    struct raw_line r;
    return refused_target(c, &r) && r.tlen && r.target[0] != '/' && r.target[0] != '*' &&
           !memmem(r.target, r.tlen, "://", 3);
}

/* "*" is only for OPTIONS (RFC 9112 §3.2.4); llhttp accepts it with any
 * method. */
static int asterisk_not_options(const struct ctx *c)
{
    struct raw_line r;
    return refused_target(c, &r) && r.tlen >= 1 && r.target[0] == '*' &&
           !(r.tlen == 1 && r.mlen == 7 && memcmp(r.method, "OPTIONS", 7) == 0);
}

/* Target bytes must be visible ASCII, 0x21-0x7E (spec §6: raw UTF-8 in a
 * target is a 400); llhttp's non-strict build lets bytes >= 0x80 through. */
static int target_bytes(const struct ctx *c)
{
    struct raw_line r;
    size_t at;
    raw_request_line(c, &r);
    if (!refused_at(c, 400, &at) || !r.has_target || at < (size_t)(r.target - c->data))
        return 0;
    unsigned char b = (unsigned char)c->data[at];
    return at < r.target_end && b >= 0x80;
}

/* The request line has single spaces (RFC 9112 §3, spec §6); llhttp's
 * non-strict build skips repeated ones. */
static int request_line_spaces(const struct ctx *c)
{
    struct raw_line r;
    size_t at;
    raw_request_line(c, &r);
    return refused_at(c, 400, &at) && at > 0 && c->data[at] == ' ' && c->data[at - 1] == ' ' &&
           r.has_target && (!r.has_version || at <= (size_t)(r.version - c->data));
}

/* A CR not followed by LF is a 400 anywhere in the head (spec §6, a smuggling
 * vector); llhttp's non-strict build takes it for a line end. */
static int bare_cr(const struct ctx *c)
{
    size_t at;
    return refused_at(c, 400, &at) && at > 0 && c->data[at - 1] == '\r' && c->data[at] != '\n';
}

/* A field name is a token right before the colon (RFC 9112 §5, spec §6: no
 * whitespace, no empty name); llhttp's non-strict build lets some of these
 * through (whitespace inside the name, an empty name). */
static int field_name_syntax(const struct ctx *c)
{
    size_t at, p;
    struct raw_line r;
    raw_request_line(c, &r);
    if (!refused_at(c, 400, &at) || !r.has_version || at <= (size_t)(r.version - c->data) + r.vlen)
        return 0;
    for (p = at; p > 0 && c->data[p - 1] != '\n'; p--)
        if (!is_tchar(c->data[p - 1]))
            return 0;
    /* Whitespace or another non-token byte inside the name, or an empty one;
     * a line starting with whitespace is obs-fold's business. */
    return p < at ? !is_tchar(c->data[at]) && c->data[at] != ':' : c->data[at] == ':';
}

/* Obsolete line folding is a 400, in the head and in trailers (RFC 9112
 * §5.2 allows it; spec §6 requires it); llhttp's non-strict build unfolds. */
static int obs_fold(const struct ctx *c)
{
    size_t at;
    if (!refused_at(c, 400, &at) || at < 2)
        return 0;
    if ((c->data[at] != ' ' && c->data[at] != '\t') || c->data[at - 1] != '\n')
        return 0;
    /* The line before is a field line, not the request line or a size line. */
    size_t p = at - 1;
    while (p > 0 && c->data[p - 1] != '\n')
        p--;
    const char *colon = memchr(c->data + p, ':', at - p);
    return colon && is_token(c->data + p, (size_t)(colon - (c->data + p)));
}

/* A chunk size has 1-16 hex digits (spec §6); llhttp only checks for
 * overflow, so "00000000000000001" passes. */
static int chunk_size_digits(const struct ctx *c)
{
    struct chunk_walk w;
    if (!vial_refused(c, 400))
        return 0;
    walk_init(&w, c);
    while (walk_next(&w))
        if (c->v->err_pos >= w.line && c->v->err_pos <= w.line_end)
            return w.digits > 16;
    return 0;
}

/* Chunk data must be followed by CRLF (RFC 9112 §7.1, spec §6); llhttp's
 * non-strict build skips the two bytes after the data without looking. */
static int chunk_data_crlf(const struct ctx *c)
{
    struct chunk_walk w;
    if (!vial_refused(c, 400))
        return 0;
    walk_init(&w, c);
    while (walk_next(&w) && w.size) {
        size_t after = w.line_end + 1 + w.size;
        if (c->v->err_pos >= after && c->v->err_pos < after + 2)
            return after + 2 > c->len || memcmp(c->data + after, "\r\n", 2) != 0;
    }
    return 0;
}

/* Only CRLF ends a line of chunked framing (spec §6, §9: a bare LF there is
 * a known request-smuggling vector); llhttp's non-strict build takes a bare
 * LF in some places (after the trailer section, for one). */
static int bare_lf_in_chunked(const struct ctx *c)
{
    size_t at;
    if (!refused_at(c, 400, &at) || !c->v->msgs[c->k].head_done ||
        c->v->msgs[c->k].framing != FRAME_CHUNKED)
        return 0;
    return at >= c->v->msgs[c->k].start + c->v->msgs[c->k].head_len && c->data[at] == '\n' &&
           c->data[at - 1] != '\r';
}

/* Chunk extensions follow RFC 9112 §7.1.1: BWS around ';' and '=', several
 * extensions, token or quoted values with obs-text. llhttp refuses
 * whitespace there, an extension after a name=value pair, and some quoted
 * bytes. Proven by rerunning llhttp with the extensions removed. */
static int chunk_extensions(const struct ctx *c)
{
    return vial_took(c) &&
           (llhttp_refused(c, HPE_INVALID_CHUNK_SIZE) || llhttp_refused(c, HPE_STRICT)) &&
           explained_after(c, rewrite_no_extensions);
}

/* An Upgrade other than websocket (h2c...) is ignored and the connection
 * stays HTTP/1.1 (spec §6); llhttp stops at any Upgrade and leaves the rest
 * of the stream to its caller. */
static int upgrade_ignored(const struct ctx *c)
{
    if (!c->l->upgraded || c->k == 0 || c->v->n < c->k)
        return 0;
    const struct message *last = &c->l->msgs[c->k - 1];
    const struct str *up = get_header(last, "upgrade", 0);
    return up && !c->v->msgs[c->k - 1].upgrade && strcasecmp(last->method.p, "CONNECT") != 0;
}

struct rule {
    const char *id;
    int (*applies)(const struct ctx *c);
    unsigned hits;
};

/* Tried in this order; the first that applies classifies the file. */
static struct rule rules[] = {
    {"bare-lf-in-head", bare_lf_head, 0},
    {"bare-cr", bare_cr, 0},
    {"custom-method", custom_method, 0},
    {"http-1.x-minor", version_1x, 0},
    {"version-505", version_505, 0},
    {"http-0.9-request-line", http09_request, 0},
    {"request-line-spaces", request_line_spaces, 0},
    {"target-limit-414", target_limit, 0},
    {"target-bytes", target_bytes, 0},
    {"asterisk-not-options", asterisk_not_options, 0},
    {"authority-form", authority_form, 0},
    {"absolute-form-userinfo", userinfo, 0},
    {"absolute-form-syntax", absolute_form_syntax, 0},
    {"obs-fold", obs_fold, 0},
    {"field-name-syntax", field_name_syntax, 0},
    {"header-limits-431", header_limit, 0},
    {"host-count", host_count, 0},
    {"te-in-http-1.0", te_http10, 0},
    {"te-coding-501", te_coding_501, 0},
    {"te-empty-elements", te_empty_elements, 0},
    {"cl-identical-values", cl_identical, 0},
    {"framing-judged-at-head-end", framing_judged_at_head_end, 0},
    {"body-limit-413", body_limit, 0},
    {"expect-417", expect_417, 0},
    {"bare-lf-in-chunked", bare_lf_in_chunked, 0},
    {"chunk-size-digits", chunk_size_digits, 0},
    {"chunk-data-crlf", chunk_data_crlf, 0},
    {"chunk-extensions", chunk_extensions, 0},
    {"trailer-framing-fields", trailer_framing_fields, 0},
    {"upgrade-not-websocket", upgrade_ignored, 0},
    {NULL, NULL, 0},
};

/* The first rule that explains the difference in c, or NULL. */
static struct rule *first_rule(const struct ctx *c)
{
    for (struct rule *r = rules; r->id; r++)
        if (r->applies(c))
            return r;
    return NULL;
}

static int explain(const struct ctx *c)
{
    return first_rule(c) != NULL;
}

/* ---- driver ----------------------------------------------------------------------------- */

static int verbose;

/* Returns NULL when both parsers agree on the whole file, else what differs
 * and at which message (c->k). */
static const char *compare(struct ctx *c)
{
    const struct outcome *v = c->v, *l = c->l;
    unsigned n = v->n < l->n ? v->n : l->n;

    for (unsigned i = 0; i < n; i++) {
        const char *d = message_diff(&v->msgs[i], &l->msgs[i]);
        if (d) {
            c->k = i;
            return d;
        }
    }
    c->k = n;
    /* llhttp stops at any upgrade; what follows is not HTTP to it. */
    if (l->upgraded && v->n >= l->n)
        return v->upgraded || v->n == l->n ? NULL : "llhttp stopped at an upgrade, vial went on";
    if (v->n != l->n)
        return "number of messages";
    if (v->verdict != l->verdict)
        return "verdict";
    return NULL;
}

/* Corpus names also say what vial must do, so a change that makes both
 * parsers refuse a valid request (or accept a bad one) is caught too:
 * "ok_*" is never refused, "part_*" ends waiting for more bytes, and
 * "bad<status>_*" is refused with that status. Other names (inputs found by
 * the fuzzer) are only compared. */
static int meets_expectation(const char *name, const struct outcome *v)
{
    if (strncmp(name, "ok_", 3) == 0)
        return v->verdict != REJECT;
    if (strncmp(name, "part_", 5) == 0)
        return v->verdict == INCOMPLETE;
    if (strncmp(name, "bad", 3) == 0 && isdigit((unsigned char)name[3]) &&
        isdigit((unsigned char)name[4]) && isdigit((unsigned char)name[5]) && name[6] == '_')
        return v->verdict == REJECT && v->status == atoi(name + 3);
    return 1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct str s = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        str_add(&s, tmp, n);
    fclose(f);
    *len = s.len;
    return s.p ? s.p : calloc(1, 1);
}

static void describe(const char *who, const struct outcome *o)
{
    fprintf(stderr, "    %-6s %s after %u message(s)", who, verdict_name[o->verdict], o->n);
    if (o->verdict == REJECT) {
        if (o->status)
            fprintf(stderr, ", status %d", o->status);
        if (o->reason)
            fprintf(stderr, ", %s (%s)", llhttp_errno_name(o->err), o->reason);
        fprintf(stderr, ", at byte %zu", o->err_pos);
    }
    if (o->upgraded)
        fprintf(stderr, ", upgraded");
    fprintf(stderr, "\n");
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <corpus dir> [-v]\n", argv[0]);
        return 2;
    }
    verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
    DIR *dir = opendir(argv[1]);
    if (!dir) {
        fprintf(stderr, "diff_llhttp: %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    char **names = NULL;
    size_t nnames = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.')
            continue;
        names = realloc(names, (nnames + 1) * sizeof *names);
        names[nnames++] = strdup(e->d_name);
    }
    closedir(dir);
    qsort(names, nnames, sizeof *names, cmp_names);

    static struct outcome vo, lo;
    unsigned agree = 0, documented = 0, failed = 0;
    for (size_t i = 0; i < nnames; i++) {
        char path[4096];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        char *data = read_file(path, &len);
        if (!data) {
            fprintf(stderr, "diff_llhttp: %s: %s\n", path, strerror(errno));
            return 2;
        }
        run_vial(data, len, &vo);
        run_llhttp(data, len, &lo);
        struct ctx c = {.file = names[i], .data = data, .len = len, .v = &vo, .l = &lo};
        c.what = compare(&c);
        if (!meets_expectation(names[i], &vo)) {
            failed++;
            fprintf(stderr, "diff_llhttp: %s: vial does not do what the file name says\n",
                    names[i]);
            describe("vial", &vo);
        } else if (!c.what) {
            agree++;
            if (verbose)
                printf("agree       %s (%s, %u message(s))\n", names[i],
                       verdict_name[vo.verdict], vo.n);
        } else {
            struct rule *r = first_rule(&c);
            if (r) {
                r->hits++;
                documented++;
                if (verbose)
                    printf("documented  %s: %s (message %u, %s)\n", names[i], r->id, c.k,
                           c.what);
            } else {
                failed++;
                fprintf(stderr, "diff_llhttp: UNEXPLAINED difference in %s: %s at message %u\n",
                        names[i], c.what, c.k);
                describe("vial", &vo);
                describe("llhttp", &lo);
            }
        }
        outcome_free(&vo);
        outcome_free(&lo);
        free(data);
        free(names[i]);
    }
    free(names);

    if (verbose)
        for (struct rule *r = rules; r->id; r++)
            printf("rule %-24s %u file(s)\n", r->id, r->hits);
    printf("diff_llhttp: %u files, %u agree, %u documented differences, %u failed\n",
           agree + documented + failed, agree, documented, failed);
    if (failed) {
        fprintf(stderr, "diff_llhttp: FAIL: %u file(s) with an unexplained difference or "
                        "not doing what their name says\n", failed);
        return 1;
    }
    if (agree + documented == 0) {
        fprintf(stderr, "diff_llhttp: no files in %s\n", argv[1]);
        return 2;
    }
    return 0;
}
