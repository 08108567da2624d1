/* Response compression: gzip (zlib) and brotli (libbrotli, optional at
 * build time) for buffered bodies and streams, chosen by Accept-Encoding
 * (accept_encoding.c), plus the precompressed-sibling decision for static
 * files (static.c opens the files).
 *
 * Buffered bodies are compressed in one shot into the request's arena: the
 * compressor's window is sized to the body (a 2 KiB page needs a 2 KiB
 * window, not zlib's 32 KiB and its 256 KiB of tables); zlib's memory is
 * the arena's, brotli's is malloc'd and freed within the call (see
 * br_oneshot), so nothing outlives the compression. Streams keep a
 * compressor for the life of the response; it is malloc'd (brotli allocates
 * and frees as it goes, which an arena would only accumulate over an
 * hours-long event stream) and destroyed by a cleanup of the exchange,
 * which runs however the request ends. */
#include "app/compress.h"
#include "app/app.h"
#include "runtime/ascii.h"
#include "runtime/coro.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef VIAL_HAVE_BROTLI
#include <brotli/encode.h>
#endif

/* Bodies this large are compressed on the worker pool: level-6 gzip runs at
 * roughly 50-100 MB/s, so 256 KiB holds a loop for a few milliseconds. */
#define OFFLOAD_MIN (256u * 1024)
/* The largest body compressed at all: zlib counts in uInt. */
#define ONESHOT_MAX ((size_t)1 << 30)
/* A stream's output buffer; more output goes out in several writes. */
#define STREAM_OUT 16384
/* A stream's brotli window (2^18 = 256 KiB): bounded memory per stream. */
#define STREAM_BR_LGWIN 18

struct vial_compress_cfg {
    unsigned codings; /* VIAL_CODING_BIT mask */
    size_t min_size;
    int gzip_level, br_quality;
    int precompressed;
    int off; /* --no-compress: kept but unused */
    unsigned ntypes;
    char **types; /* lower case; a trailing "/" matches the whole type */
};

static const char *const default_types[] = {
    "text/*", "application/json", "application/javascript", "application/xml", "image/svg+xml", NULL,
};

vial_compress_opts vial_compress_opts_default(void)
{
    return (vial_compress_opts){
        .codings = VIAL_COMPRESS_GZIP | VIAL_COMPRESS_BR,
        .min_size = 860,
        .gzip_level = 6,
        .br_quality = 4,
        .types = NULL,
        .precompressed = 1,
    };
}

static void cfg_free(struct vial_compress_cfg *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->ntypes; i++)
        free(c->types[i]);
    free(c->types);
    free(c);
}

void vial_compress_release(vial_app *app)
{
    cfg_free(app->compress);
    app->compress = NULL;
}

int vial_compress(vial_app *app, const vial_compress_opts *opts)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    vial_compress_opts o = opts ? *opts : vial_compress_opts_default();
    unsigned codings = 0;
    if (o.codings & VIAL_COMPRESS_GZIP)
        codings |= VIAL_CODING_BIT(VIAL_CODING_GZIP);
#ifdef VIAL_HAVE_BROTLI
    if (o.codings & VIAL_COMPRESS_BR)
        codings |= VIAL_CODING_BIT(VIAL_CODING_BR);
#endif
    if (!codings || (o.codings & ~(VIAL_COMPRESS_GZIP | VIAL_COMPRESS_BR)) || o.gzip_level < 1 ||
        o.gzip_level > 9 || o.br_quality < 0 || o.br_quality > 11)
        return -EINVAL;
    const char *const *types = o.types ? o.types : default_types;
    unsigned n = 0;
    while (types[n])
        if (!*types[n++])
            return -EINVAL;
    struct vial_compress_cfg *c = calloc(1, sizeof *c);
    if (!c || !(c->types = calloc(n ? n : 1, sizeof *c->types))) {
        free(c);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t len = strlen(types[i]);
        if (len >= 2 && !strcmp(types[i] + len - 2, "/*"))
            len--; /* "type/ + *" is kept as the prefix "type/" */
        char *t = malloc(len + 1);
        if (!t) {
            cfg_free(c);
            return -ENOMEM;
        }
        for (size_t k = 0; k < len; k++)
            t[k] = (char)vial_ascii_lower((unsigned char)types[i][k]);
        t[len] = 0;
        c->types[c->ntypes++] = t;
    }
    c->codings = codings;
    c->min_size = o.min_size;
    c->gzip_level = o.gzip_level;
    c->br_quality = o.br_quality;
    c->precompressed = o.precompressed;
    cfg_free(app->compress);
    app->compress = c;
    return 0;
}

int vial_compress_config(vial_app *app, int on)
{
    if (on == 1 && !app->compress)
        return vial_compress(app, NULL);
    if (app->compress)
        app->compress->off = on == 0;
    return 0;
}

static const struct vial_compress_cfg *cfg_of(const vial_req *rq)
{
    const vial_req_state *st = vial_rqs(rq);
    const struct vial_compress_cfg *c = st && st->app ? st->app->compress : NULL;
    return c && !c->off ? c : NULL;
}

/* --- what is compressible ----------------------------------------------------- */

static int type_ok(const struct vial_compress_cfg *c, const char *ctype)
{
    if (!ctype)
        return 0;
    while (*ctype == ' ' || *ctype == '\t')
        ctype++;
    size_t n = strcspn(ctype, "; \t");
    for (unsigned i = 0; i < c->ntypes; i++) {
        const char *t = c->types[i];
        size_t tl = strlen(t);
        if (t[tl - 1] == '/' ? n > tl && !vial_ascii_ncasecmp(ctype, t, tl)
                             : n == tl && !vial_ascii_ncasecmp(ctype, t, tl))
            return 1;
    }
    return 0;
}

/* Does the comma-separated list v name token tok (any case)? */
static int list_has(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    for (const char *p = v; *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == tl && !vial_ascii_ncasecmp(p, tok, tl))
            return 1;
        p += n;
    }
    return 0;
}

static int header_index(const vial_res *rs, const char *name)
{
    for (uint32_t i = 0; i < rs->nheaders; i++)
        if (!vial_ascii_casecmp(rs->headers[i].name, name))
            return (int)i;
    return -1;
}

/* A directive of Cache-Control (the only one looked for takes no value). */
static int no_transform(const vial_res *rs)
{
    for (uint32_t i = 0; i < rs->nheaders; i++)
        if (!vial_ascii_casecmp(rs->headers[i].name, "Cache-Control") &&
            list_has(rs->headers[i].value, "no-transform"))
            return 1;
    return 0;
}

/* Statuses whose body may be a representation to encode: not the bodiless
 * ones, and not a part of one (206: its ranges are of the identity bytes). */
static int status_ok(int s)
{
    return s >= 200 && s != 204 && s != 205 && s != 206 && s != 304;
}

/* The response's eligibility, before size and client: 1 when it is of a
 * compressible kind and nobody encoded it or forbade encoding. */
static int eligible(const struct vial_compress_cfg *c, const vial_res *rs)
{
    return !rs->upgraded && status_ok(rs->status) && type_ok(c, rs->content_type) &&
           header_index(rs, "Content-Encoding") < 0 && header_index(rs, "Content-Range") < 0 &&
           !no_transform(rs);
}

/* Adds Accept-Encoding to the response's Vary: merged into the first Vary
 * field the app set (any others kept as they are), unless one of them
 * already names it or "*". */
static int vary_add(vial_res *rs)
{
    int first = -1;
    for (uint32_t k = 0; k < rs->nheaders; k++) {
        if (vial_ascii_casecmp(rs->headers[k].name, "Vary"))
            continue;
        const char *v = rs->headers[k].value;
        if (list_has(v, "Accept-Encoding") || list_has(v, "*"))
            return 0;
        if (first < 0)
            first = (int)k;
    }
    if (first < 0)
        return vial_res_add_header(rs, "Vary", "Accept-Encoding");
    vial_res_header_t *h = &rs->headers[first];
    char *nv = vial_sprintf(rs->rq, "%s, Accept-Encoding", h->value);
    if (!nv)
        return -ENOMEM;
    h->value = nv;
    h->value_len += (uint32_t)sizeof ", Accept-Encoding" - 1;
    return 0;
}

/* The encoded body is another representation: a strong validator of the
 * identity bytes must not vouch for it (ranges would mix them). Weak, it
 * still matches If-None-Match (weak comparison), as nginx does. */
static int etag_weaken(vial_res *rs)
{
    int i = header_index(rs, "ETag");
    if (i < 0 || rs->headers[i].value[0] != '"')
        return 0;
    const char *nv = vial_sprintf(rs->rq, "W/%s", rs->headers[i].value);
    if (!nv)
        return -ENOMEM;
    rs->headers[i].value = nv;
    rs->headers[i].value_len += 2;
    return 0;
}

static int chosen_coding(const struct vial_compress_cfg *c, vial_req *rq)
{
    const char *ae = vial_req_header(rq, "Accept-Encoding");
    return vial_accept_enc_choose(ae, ae ? strlen(ae) : 0, c->codings);
}

static const char *coding_name(int coding)
{
    return coding == VIAL_CODING_BR ? "br" : "gzip";
}

/* --- allocation ------------------------------------------------------------ */

static void *arena_zalloc(void *opaque, uInt items, uInt size)
{
    if (size && items > SIZE_MAX / size)
        return Z_NULL;
    return vial_arena_alloc(opaque, (size_t)items * size);
}

static void arena_zfree(void *opaque, void *p)
{
    (void)opaque;
    (void)p; /* the arena frees it with the request */
}

/* --- one shot (buffered bodies) ------------------------------------------------- */

/* The smallest window (2^9 .. 2^15) that holds n bytes, and hash tables to
 * match: a larger one finds nothing more in so short an input. */
static int gzip_bits_for(size_t n)
{
    int b = 9;
    while (b < 15 && ((size_t)1 << b) < n)
        b++;
    return b;
}

static int gzip_oneshot(vial_arena *a, int level, const void *in, size_t n, char **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = arena_zalloc;
    zs.zfree = arena_zfree;
    zs.opaque = a;
    int bits = gzip_bits_for(n);
    int mem = bits - 7 < 1 ? 1 : bits - 7 > 8 ? 8 : bits - 7;
    if (deflateInit2(&zs, level, Z_DEFLATED, bits + 16, mem, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    uLong cap = deflateBound(&zs, (uLong)n);
    char *buf = vial_arena_alloc(a, cap);
    if (!buf) {
        deflateEnd(&zs);
        return -ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = (Bytef *)buf;
    zs.avail_out = (uInt)cap;
    int zr = deflate(&zs, Z_FINISH);
    *out = buf;
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return zr == Z_STREAM_END ? 0 : -EIO;
}

#ifdef VIAL_HAVE_BROTLI
static int br_oneshot(vial_arena *a, int quality, int text, const void *in, size_t n, char **out,
                      size_t *out_len)
{
    size_t cap = BrotliEncoderMaxCompressedSize(n);
    char *buf = cap ? vial_arena_alloc(a, cap) : NULL;
    /* malloc, not the arena: brotli's hash table is 512 KiB at quality 4, of
     * which a small body touches a few scattered entries. From the arena
     * (fresh mmap'd pages each time) every touched page is a page fault,
     * 1.5 ms a request; glibc keeps a freed block of that size in the
     * heap after the first one, its pages already mapped. Created and
     * destroyed within this call: nothing can leak. */
    BrotliEncoderState *s = buf ? BrotliEncoderCreateInstance(NULL, NULL, NULL) : NULL;
    if (!s)
        return -ENOMEM;
    int lgwin = BROTLI_MIN_WINDOW_BITS;
    while (lgwin < BROTLI_MAX_WINDOW_BITS && ((size_t)1 << lgwin) - 16 < n)
        lgwin++;
    BrotliEncoderSetParameter(s, BROTLI_PARAM_QUALITY, (uint32_t)quality);
    BrotliEncoderSetParameter(s, BROTLI_PARAM_LGWIN, (uint32_t)lgwin);
    BrotliEncoderSetParameter(s, BROTLI_PARAM_SIZE_HINT, (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX));
    if (text)
        BrotliEncoderSetParameter(s, BROTLI_PARAM_MODE, BROTLI_MODE_TEXT);
    const uint8_t *next_in = in;
    size_t avail_in = n, avail_out = cap;
    uint8_t *next_out = (uint8_t *)buf;
    BROTLI_BOOL ok = BrotliEncoderCompressStream(s, BROTLI_OPERATION_FINISH, &avail_in, &next_in,
                                                 &avail_out, &next_out, NULL);
    int done = ok && BrotliEncoderIsFinished(s);
    BrotliEncoderDestroyInstance(s);
    *out = buf;
    *out_len = cap - avail_out;
    return done ? 0 : -EIO;
}
#endif

struct oneshot_job {
    vial_req *rq;
    const struct vial_compress_cfg *c;
    int coding;
    char *out;
    size_t out_len;
    int rc;
};

static void oneshot_run(void *arg)
{
    struct oneshot_job *j = arg;
    vial_res *rs = &j->rq->res;
    j->rc = -ENOTSUP;
#ifdef VIAL_HAVE_BROTLI
    if (j->coding == VIAL_CODING_BR) {
        int text = !vial_ascii_ncasecmp(rs->content_type, "text/", 5);
        j->rc = br_oneshot(&j->rq->arena, j->c->br_quality, text, rs->body, rs->body_len, &j->out,
                           &j->out_len);
    }
#endif
    if (j->coding == VIAL_CODING_GZIP)
        j->rc = gzip_oneshot(&j->rq->arena, j->c->gzip_level, rs->body, rs->body_len, &j->out,
                             &j->out_len);
}

static void compress_body(const struct vial_compress_cfg *c, vial_req *rq)
{
    vial_res *rs = &rq->res;
    if (!eligible(c, rs) || vary_add(rs) < 0)
        return;
    /* Files go out with sendfile; their compressed form is a sibling file
     * (static.c). */
    if (rs->file_fd >= 0 || rs->body_len < c->min_size || rs->body_len > ONESHOT_MAX)
        return;
    int coding = chosen_coding(c, rq);
    if (coding == VIAL_CODING_IDENTITY)
        return;
    struct oneshot_job j = {rq, c, coding, NULL, 0, -1};
    if (rs->body_len >= OFFLOAD_MIN && vial_coro_current() && rq->pool) {
        if (vial_call_blocking(rq, oneshot_run, &j, VIAL_SYNC) < 0)
            return; /* the pool refused (full, shutting down): sent as it is */
    } else {
        oneshot_run(&j);
    }
    /* Incompressible bytes (already packed data under a text type) would
     * only grow: sent as they are, the same for GET and HEAD. */
    if (j.rc < 0 || j.out_len >= rs->body_len)
        return;
    if (vial_res_add_header(rs, "Content-Encoding", coding_name(coding)) < 0)
        return;
    if (etag_weaken(rs) < 0) {
        rs->nheaders--; /* the Content-Encoding just added */
        return;
    }
    rs->body = j.out;
    rs->body_len = j.out_len;
    rs->body_cap = j.out_len;
}

/* --- streams --------------------------------------------------------------------- */

typedef struct vial_zstream {
    int coding;
    int live; /* the compressor was initialised (the cleanup ends it) */
    z_stream zs;
#ifdef VIAL_HAVE_BROTLI
    BrotliEncoderState *br;
#endif
    char out[STREAM_OUT];
} vial_zstream;

static void zstream_free(void *arg)
{
    vial_zstream *z = arg;
    if (z->coding == VIAL_CODING_GZIP && z->live)
        deflateEnd(&z->zs);
#ifdef VIAL_HAVE_BROTLI
    if (z->br)
        BrotliEncoderDestroyInstance(z->br);
#endif
    free(z);
}

int vial_compress_stream_begin(vial_res *rs)
{
    vial_req *rq = rs->rq;
    const struct vial_compress_cfg *c = cfg_of(rq);
    if (!c || !eligible(c, rs))
        return 0;
    int r = vary_add(rs);
    if (r < 0)
        return r;
    int coding = chosen_coding(c, rq);
    if (coding == VIAL_CODING_IDENTITY)
        return 0;
    if ((r = vial_res_add_header(rs, "Content-Encoding", coding_name(coding))) < 0 ||
        (r = etag_weaken(rs)) < 0)
        return r;
    if (rq->is_head)
        return 0; /* the headers GET would have; no body to encode */
    vial_zstream *z = calloc(1, sizeof *z);
    if (!z)
        return -ENOMEM;
    z->coding = coding;
    if (vial_exchange_defer(rq, zstream_free, z) < 0) {
        free(z);
        return -ENOMEM;
    }
#ifdef VIAL_HAVE_BROTLI
    if (coding == VIAL_CODING_BR) {
        z->br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
        if (!z->br)
            return -ENOMEM;
        BrotliEncoderSetParameter(z->br, BROTLI_PARAM_QUALITY, (uint32_t)c->br_quality);
        BrotliEncoderSetParameter(z->br, BROTLI_PARAM_LGWIN, STREAM_BR_LGWIN);
    }
#endif
    if (coding == VIAL_CODING_GZIP) {
        if (deflateInit2(&z->zs, c->gzip_level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return -ENOMEM;
        z->live = 1;
    }
    vial_rqs(rq)->zstream = z;
    return 0;
}

static int sink(vial_req *rq, const char *p, size_t n)
{
    if (!n)
        return 0;
    int r = rq->sink_write(rq, p, n);
    if (r == 0)
        vial_rqs(rq)->streamed += n;
    return r;
}

/* Feeds data[0..len) with op (flush or finish) and sends all that comes
 * out. */
static int stream_feed(vial_req *rq, vial_zstream *z, const void *data, size_t len, int finish)
{
#ifdef VIAL_HAVE_BROTLI
    if (z->coding == VIAL_CODING_BR) {
        const uint8_t *next_in = data;
        size_t avail_in = len;
        BrotliEncoderOperation op = finish ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_FLUSH;
        for (;;) {
            uint8_t *next_out = (uint8_t *)z->out;
            size_t avail_out = sizeof z->out;
            if (!BrotliEncoderCompressStream(z->br, op, &avail_in, &next_in, &avail_out, &next_out, NULL))
                return -EIO;
            int r = sink(rq, z->out, sizeof z->out - avail_out);
            if (r < 0)
                return r;
            if (!avail_in && !BrotliEncoderHasMoreOutput(z->br) &&
                (!finish || BrotliEncoderIsFinished(z->br)))
                return 0;
        }
    }
#endif
    z->zs.next_in = (Bytef *)(uintptr_t)data;
    int flush = finish ? Z_FINISH : Z_SYNC_FLUSH;
    for (;;) {
        /* uInt-sized pieces: a write may be larger than 4 GiB in theory. */
        size_t piece = len > UINT_MAX ? UINT_MAX : len;
        z->zs.avail_in = (uInt)piece;
        int last = piece == len;
        int zr;
        do {
            z->zs.next_out = (Bytef *)z->out;
            z->zs.avail_out = sizeof z->out;
            zr = deflate(&z->zs, last ? flush : Z_NO_FLUSH);
            if (zr == Z_STREAM_ERROR)
                return -EIO;
            int r = sink(rq, z->out, sizeof z->out - z->zs.avail_out);
            if (r < 0)
                return r;
        } while (z->zs.avail_out == 0 || (last && finish && zr != Z_STREAM_END));
        len -= piece;
        if (last)
            return 0;
    }
}

int vial_compress_stream_write(vial_res *rs, const void *data, size_t len)
{
    vial_zstream *z = vial_rqs(rs->rq)->zstream;
    if (!len)
        return 0; /* a flush of nothing would still send an empty block */
    return stream_feed(rs->rq, z, data, len, 0);
}

void vial_compress_end(vial_req *rq)
{
    vial_req_state *st = vial_rqs(rq);
    if (st->zstream) {
        vial_zstream *z = st->zstream;
        st->zstream = NULL; /* the exchange's cleanup frees it */
        if (rq->res.streaming) {
            stream_feed(rq, z, NULL, 0, 1);
            return;
        }
        /* The head never went out (vial_stream_begin failed after the
         * encoder was set up): the response is a buffered one after all,
         * judged below without the Content-Encoding set for the stream. */
        int i = header_index(&rq->res, "Content-Encoding");
        if (i >= 0)
            rq->res.headers[i] = rq->res.headers[--rq->res.nheaders];
    }
    const struct vial_compress_cfg *c = cfg_of(rq);
    if (c && !rq->res.streaming)
        compress_body(c, rq);
}

/* --- static files ------------------------------------------------------------------- */

int vial_compress_static_codings(vial_req *rq, const char *content_type, int out[2], int *vary)
{
    const struct vial_compress_cfg *c = cfg_of(rq);
    *vary = c && type_ok(c, content_type);
    if (!*vary || !c->precompressed)
        return 0;
    const char *ae = vial_req_header(rq, "Accept-Encoding");
    /* Siblings are served for every coding vial knows of, built with
     * brotli or not: sending a file needs no encoder. */
    return vial_accept_enc_rank(ae, ae ? strlen(ae) : 0,
                                VIAL_CODING_BIT(VIAL_CODING_GZIP) | VIAL_CODING_BIT(VIAL_CODING_BR), out);
}

const char *vial_compress_suffix(int coding)
{
    return coding == VIAL_CODING_BR ? ".br" : ".gz";
}

int vial_compress_static_mark(vial_res *rs, int coding, int vary)
{
    int r = 0;
    if (vary)
        r = vary_add(rs);
    if (r == 0 && coding != VIAL_CODING_IDENTITY && rs->status != 304)
        r = vial_res_add_header(rs, "Content-Encoding", coding_name(coding));
    return r;
}
