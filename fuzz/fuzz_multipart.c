/* libFuzzer target for the multipart machine (app/multipart.c) and the form
 * parser on top of it (app/form.c).
 *
 * Input: the first line (up to '\n') is the Content-Type value, the rest
 * the body; without a '\n', the whole input is a body for
 * "multipart/form-data; boundary=B". Besides the sanitizers it checks:
 *  - the machine gives the same result and the same events (data merged)
 *    however the body is split into pieces, and fed whole its data
 *    callbacks are adjacent spans of the body (the zero-copy promise);
 *  - vial_req_parse_form returns 0, VIAL_EHTTP(400/413/415), -ENOMEM or
 *    -EIO; after an error the form is
 *    empty; in-memory files point into the body; field names, values and
 *    filenames are valid UTF-8; spilled files (form.c is compiled with a
 *    64-byte spill threshold here) exist during the request and are gone
 *    after it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/multipart.h"
#include "app/request_state.h"
#include "http/exchange.h"

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz_multipart: invariant failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                              \
            abort();                                                               \
        }                                                                          \
    } while (0)

static uint64_t rng_state;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* --- the machine, whole vs in pieces --------------------------------------------- */

typedef struct tbuf {
    char *p;
    size_t n, cap;
} tbuf;

static void tput(tbuf *t, const void *d, size_t n)
{
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2 + 64;
        t->p = realloc(t->p, t->cap);
        CHECK(t->p);
    }
    memcpy(t->p + t->n, d, n);
    t->n += n;
}

typedef struct tctx {
    tbuf t;
    const char *body; /* fed whole: spans must lie in it, adjacent */
    size_t body_len;
    const char *last_end;
} tctx;

static int t_begin(void *ud)
{
    tput(&((tctx *)ud)->t, "B", 1);
    return 0;
}

static int t_header(void *ud, const char *n, size_t nl, const char *v, size_t vl)
{
    tctx *c = ud;
    CHECK(nl > 0 && nl <= VIAL_MP_MAX_LINE && vl <= VIAL_MP_MAX_LINE);
    CHECK(!memchr(n, '\r', nl) && !memchr(n, '\n', nl) && !memchr(v, '\r', vl) && !memchr(v, '\n', vl));
    tput(&c->t, "H", 1);
    tput(&c->t, n, nl);
    tput(&c->t, "=", 1);
    tput(&c->t, v, vl);
    tput(&c->t, "\n", 1);
    return 0;
}

static int t_hend(void *ud)
{
    tctx *c = ud;
    c->last_end = NULL;
    tput(&c->t, "E", 1);
    return 0;
}

static int t_data(void *ud, const char *p, size_t n)
{
    tctx *c = ud;
    CHECK(n > 0);
    if (c->body) {
        CHECK(p >= c->body && p + n <= c->body + c->body_len);
        CHECK(!c->last_end || p == c->last_end);
        c->last_end = p + n;
    }
    tput(&c->t, p, n);
    return 0;
}

static int t_pend(void *ud)
{
    tput(&((tctx *)ud)->t, "P", 1);
    return 0;
}

static const vial_multipart_callbacks tcb = {t_begin, t_header, t_hend, t_data, t_pend};

static char linebuf[VIAL_MP_MAX_LINE];
static tctx whole, split;

/* A rough boundary extraction for the machine test (form.c has the real
 * one): the text after "boundary=", up to ';', without quotes. */
static void boundary_of(const char *ct, size_t n, const char **b, size_t *bl)
{
    *b = "B";
    *bl = 1;
    for (size_t i = 0; i + 9 <= n; i++) {
        if (strncasecmp(ct + i, "boundary=", 9))
            continue;
        const char *s = ct + i + 9, *e = s;
        while (e < ct + n && *e != ';')
            e++;
        if (e - s >= 2 && *s == '"' && e[-1] == '"')
            s++, e--;
        *b = s;
        *bl = (size_t)(e - s);
        return;
    }
}

static void machine(const char *ct, size_t ctlen, const char *body, size_t len)
{
    const char *b;
    size_t bl;
    boundary_of(ct, ctlen, &b, &bl);
    vial_multipart mp;
    whole.t.n = 0;
    whole.body = body;
    whole.body_len = len;
    whole.last_end = NULL;
    int rc_init = vial_multipart_init(&mp, b, bl, &tcb, &whole, NULL, 0);
    if (rc_init) {
        CHECK(rc_init == VIAL_MP_EBOUNDARY);
        CHECK(vial_multipart_feed(&mp, body, len) == rc_init);
        return;
    }
    int rc_whole = vial_multipart_feed(&mp, body, len);
    if (rc_whole == 0)
        rc_whole = vial_multipart_finish(&mp);
    CHECK(rc_whole != VIAL_MP_ENOBUF && rc_whole != VIAL_MP_ESTATE);

    split.t.n = 0;
    split.body = NULL;
    CHECK(vial_multipart_init(&mp, b, bl, &tcb, &split, linebuf, sizeof linebuf) == 0);
    int rc = 0;
    size_t off = 0;
    while (off < len && rc == 0) {
        size_t n = 1 + rnd(rnd(4) ? 16 : 512);
        if (n > len - off)
            n = len - off;
        char *piece = malloc(n);
        memcpy(piece, body + off, n);
        rc = vial_multipart_feed(&mp, piece, n);
        free(piece);
        off += n;
    }
    if (rc == 0)
        rc = vial_multipart_finish(&mp);
    CHECK(rc == rc_whole);
    if (rc == 0)
        CHECK(split.t.n == whole.t.n && (!whole.t.n || !memcmp(split.t.p, whole.t.p, whole.t.n)));
}

/* --- the form ------------------------------------------------------------------------ */

static int valid_utf8(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        unsigned char c = *u;
        size_t need = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!need)
            return 0;
        for (size_t k = 1; k < need; k++)
            if ((u[k] & 0xC0) != 0x80)
                return 0;
        if ((c == 0xE0 && u[1] < 0xA0) || (c == 0xED && u[1] > 0x9F) || (c == 0xF0 && u[1] < 0x90) ||
            (c == 0xF4 && u[1] > 0x8F))
            return 0;
        u += need;
    }
    return 1;
}

static vial_req *rq;
static char tmpdir[64];

static void remove_tmpdir(void)
{
    rmdir(tmpdir); /* empty: every spilled file was unlinked */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    strcpy(tmpdir, "/tmp/vial-fuzz-mp-XXXXXX");
    CHECK(mkdtemp(tmpdir));
    setenv("TMPDIR", tmpdir, 1);
    atexit(remove_tmpdir);
    rq = calloc(1, sizeof *rq);
    CHECK(rq);
    return 0;
}

static void form(const char *ct, size_t ctlen, const char *body, size_t len)
{
    vial_exchange_init(rq, NULL, NULL);
    if (!vial_req_state_attach(rq, NULL))
        abort();
    vial_http_field *h = &rq->head.headers[0];
    h->name.p = "Content-Type";
    h->name.len = 12;
    h->value.p = ct;
    h->value.len = ctlen;
    rq->head.nheaders = 1;
    rq->body = body;
    rq->body_len = len;
    int st = vial_req_parse_form(rq);
    CHECK(st == 0 || st == VIAL_EHTTP(400) || st == VIAL_EHTTP(413) || st == VIAL_EHTTP(415) ||
          st == -ENOMEM || st == -EIO);
    unsigned nf = vial_req_form_count(rq), nfiles = vial_req_file_count(rq);
    if (st)
        CHECK(nf == 0 && nfiles == 0);
    for (unsigned i = 0; i < nf; i++) {
        const char *n, *v;
        CHECK(vial_req_form_at(rq, i, &n, &v) == 0);
        CHECK(valid_utf8(n) && valid_utf8(v));
        CHECK(vial_req_form(rq, n) != NULL);
    }
    static char *paths[2048];
    unsigned np = 0;
    for (unsigned i = 0; i < nfiles; i++) {
        const vial_file *f = vial_req_file_at(rq, i);
        CHECK(f && f->field && f->filename);
        CHECK(valid_utf8(f->field) && valid_utf8(f->filename));
        CHECK(vial_req_file(rq, f->field) != NULL);
        CHECK(f->size <= len);
        if (f->path) {
            CHECK(!f->data);
            CHECK(f->size > 64);
            struct stat sb;
            CHECK(stat(f->path, &sb) == 0 && (size_t)sb.st_size == f->size);
            if (np < 2048)
                paths[np++] = strdup(f->path);
        } else {
            CHECK(f->data && f->size <= 64);
            if (f->size)
                CHECK((const char *)f->data >= body && (const char *)f->data + f->size <= body + len);
        }
    }
    CHECK(vial_req_form_at(rq, nf, NULL, NULL) < 0);
    CHECK(vial_req_file_at(rq, nfiles) == NULL);
    vial_exchange_fini(rq);
    for (unsigned i = 0; i < np; i++) {
        CHECK(access(paths[i], F_OK) != 0);
        free(paths[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    const char *ct = "multipart/form-data; boundary=B";
    size_t ctlen = strlen(ct);
    const char *body = in;
    size_t len = size;
    if (nl) {
        ct = in;
        ctlen = (size_t)(nl - in);
        body = nl + 1;
        len = size - ctlen - 1;
    }
    /* the body in its own block, so reads past it are caught */
    char *b = malloc(len ? len : 1);
    memcpy(b, body, len);
    rng_state = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size && i < 16; i++)
        rng_state = rng_state * 31 + data[i];
    if (!rng_state)
        rng_state = 1;
    machine(ct, ctlen, b, len);
    form(ct, ctlen, b, len);
    free(b);
    return 0;
}
