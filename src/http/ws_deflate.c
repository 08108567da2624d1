/* permessage-deflate (RFC 7692): negotiation and the per-connection zlib
 * streams. See ws_deflate.h. */
#include "http/ws_deflate.h"
#include "runtime/ascii.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* --- negotiation ------------------------------------------------------------------ */

/* RFC 7230 tchar. */
static int tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static const char *token(const char *s, size_t *len)
{
    const char *b = s;
    while (tchar((unsigned char)*s))
        s++;
    *len = (size_t)(s - b);
    return s;
}

static int is(const char *s, size_t n, const char *word)
{
    return n == strlen(word) && vial_ascii_ncasecmp(s, word, n) == 0;
}

/* "8".."15" (a token, or the quoted string's content): the number, or -1. */
static int window_bits(const char *v, size_t n)
{
    if (n == 1 && v[0] == '8')
        return 8;
    if (n == 1 && v[0] == '9')
        return 9;
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return -1;
}

/* One offer's parameters as they are read; judged at the offer's end. */
typedef struct offer {
    int pmd;          /* the extension is permessage-deflate */
    int bad;          /* a parameter that declines it */
    int snct, cnct;   /* no_context_takeover: seen */
    int smwb, cmwb;   /* max_window_bits: -1 unseen, 0 seen without value, else the value */
} offer;

static void offer_param(offer *o, const char *name, size_t nl, const char *val, size_t vl, int has_val)
{
    if (!o->pmd || o->bad)
        return;
    int *flag = is(name, nl, "server_no_context_takeover")   ? &o->snct
                : is(name, nl, "client_no_context_takeover") ? &o->cnct
                                                             : NULL;
    if (flag) {
        if (*flag || has_val)
            o->bad = 1;
        *flag = 1;
        return;
    }
    int *bits = is(name, nl, "server_max_window_bits")   ? &o->smwb
                : is(name, nl, "client_max_window_bits") ? &o->cmwb
                                                         : NULL;
    if (!bits || *bits >= 0) {
        o->bad = 1; /* unknown, or a duplicate */
        return;
    }
    if (!has_val) {
        if (bits == &o->smwb)
            o->bad = 1; /* server_max_window_bits needs its value */
        *bits = 0;
        return;
    }
    int b = window_bits(val, vl);
    if (b < 0)
        o->bad = 1;
    *bits = b < 0 ? 0 : b;
}

/* The offer is complete: 1 when vial takes it (params and response out). */
static int offer_take(const offer *o, vial_ws_pmd_params *p, char *resp, size_t cap)
{
    if (!o->pmd || o->bad)
        return 0;
    /* zlib refuses windowBits 8 for raw deflate (since 1.2.9 it would mean
     * 9): a peer that asks for a 256-byte window gets another offer taken. */
    if (o->smwb == 8)
        return 0;
    int sw = VIAL_WS_PMD_WBITS;
    if (o->smwb > 0 && o->smwb < sw)
        sw = o->smwb;
    /* The client's window: ours to choose only when it offered the
     * parameter; otherwise it may use 15. */
    int cw = 15;
    if (o->cmwb >= 0)
        cw = o->cmwb > 0 && o->cmwb < VIAL_WS_PMD_WBITS ? o->cmwb : VIAL_WS_PMD_WBITS;
    *p = (vial_ws_pmd_params){(uint8_t)o->snct, (uint8_t)o->cnct, (uint8_t)sw, (uint8_t)cw};
    int n = snprintf(resp, cap, "permessage-deflate%s%s", o->snct ? "; server_no_context_takeover" : "",
                     o->cnct ? "; client_no_context_takeover" : "");
    if (n > 0 && o->smwb > 0 && (size_t)n < cap)
        n += snprintf(resp + n, cap - (size_t)n, "; server_max_window_bits=%d", sw);
    if (n > 0 && o->cmwb >= 0 && (size_t)n < cap)
        n += snprintf(resp + n, cap - (size_t)n, "; client_max_window_bits=%d", cw);
    return n > 0 && (size_t)n < cap;
}

int vial_ws_pmd_negotiate(const char *s, vial_ws_pmd_params *out, char *resp, size_t cap)
{
    if (!s)
        return 0;
    /* Syntax is checked up to the offer taken; what follows it is not read. */
    for (;;) {
        size_t nl;
        s = ows(s);
        if (*s == ',') { /* empty list elements are allowed (RFC 7230 7) */
            s++;
            continue;
        }
        if (!*s)
            return 0;
        const char *name = s;
        s = token(s, &nl);
        if (!nl)
            return 0;
        offer o = {.pmd = is(name, nl, "permessage-deflate"), .smwb = -1, .cmwb = -1};
        for (;;) {
            s = ows(s);
            if (*s != ';')
                break;
            s = ows(s + 1);
            size_t pl, vl = 0;
            const char *pname = s, *val = NULL;
            char qbuf[8];
            s = token(s, &pl);
            if (!pl)
                return 0;
            s = ows(s);
            int has_val = *s == '=';
            if (has_val) {
                s = ows(s + 1);
                if (*s == '"') { /* quoted-string: its content, unescaped */
                    s++;
                    while (*s && *s != '"') {
                        if (*s == '\\' && s[1])
                            s++;
                        if (vl < sizeof qbuf)
                            qbuf[vl] = *s;
                        vl++;
                        s++;
                    }
                    if (*s != '"')
                        return 0;
                    s++;
                    val = qbuf;
                    if (vl > sizeof qbuf)
                        vl = sizeof qbuf; /* too long for any valid value */
                } else {
                    val = s;
                    s = token(s, &vl);
                    if (!vl)
                        return 0;
                }
            }
            offer_param(&o, pname, pl, val, vl, has_val);
        }
        if (*s && *s != ',')
            return 0;
        if (offer_take(&o, out, resp, cap))
            return 1;
    }
}

/* --- memory ------------------------------------------------------------------------- */

static atomic_size_t pmd_memory;

size_t vial_ws_pmd_memory(void)
{
    return atomic_load(&pmd_memory);
}

int vial_ws_pmd_room(const vial_ws_pmd_params *p, size_t memory_max)
{
    /* inflate: its 32 KiB window and ~7 KiB of state; deflate: window,
     * prev and head (4 << wbits) + hash/pending buffers (1 << (memLevel +
     * 9)) and ~6 KiB of state. Measured: 78,872 bytes for a server window
     * of 2^12 (ROOM_SLACK covers the allocator's headers). */
    enum { ROOM_SLACK = 14 * 1024 };
    (void)p->client_max_window_bits; /* the inflater always has 2^15 (vial_ws_pmd_inflate) */
    size_t need = ((size_t)1 << 15) + ((size_t)4 << p->server_max_window_bits) +
                  ((size_t)1 << (VIAL_WS_PMD_MEMLEVEL + 9)) + ROOM_SLACK;
    return !memory_max || atomic_load(&pmd_memory) + need <= memory_max;
}

/* zlib's allocations, each charged to the connection and the process-wide
 * count; one that would pass the cap fails, and zlib's init reports
 * Z_MEM_ERROR. The size is kept in front of the block for the free. */
typedef union zhdr {
    size_t size;
    max_align_t align;
} zhdr;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    vial_ws_pmd *d = opaque;
    size_t n = (size_t)items * size + sizeof(zhdr);
    size_t cur = atomic_load(&pmd_memory);
    do {
        if (d->memory_max && cur + n > d->memory_max)
            return NULL;
    } while (!atomic_compare_exchange_weak(&pmd_memory, &cur, cur + n));
    zhdr *h = malloc(n);
    if (!h) {
        atomic_fetch_sub(&pmd_memory, n);
        return NULL;
    }
    h->size = n;
    d->held += n;
    return h + 1;
}

static void z_free(voidpf opaque, voidpf p)
{
    vial_ws_pmd *d = opaque;
    if (!p)
        return;
    zhdr *h = (zhdr *)p - 1;
    atomic_fetch_sub(&pmd_memory, h->size);
    d->held -= h->size;
    free(h);
}

static z_stream *stream_new(vial_ws_pmd *d)
{
    z_stream *z = calloc(1, sizeof *z);
    if (z) {
        z->zalloc = z_alloc;
        z->zfree = z_free;
        z->opaque = d;
    }
    return z;
}

/* --- inflate ------------------------------------------------------------------------- */

#define INFLATE_FIRST 4096 /* then doubled: a small message keeps a small buffer */

static int inflate_some(vial_ws_pmd *d, const uint8_t *in, size_t n, uint8_t **buf, size_t *len,
                        size_t *cap, size_t max)
{
    z_stream *z = d->inf;
    if (d->inf_done)
        return 0;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    /* Until the input is used and the output did not fill its room: a
     * full buffer may leave output of input already taken. */
    for (;;) {
        if (*len > max)
            return VIAL_WS_PMD_TOO_BIG;
        if (*cap == *len) {
            /* Grown a step at a time, never past max + 1: the output is
             * judged as it comes, not once the whole message is inflated. */
            size_t c = *cap ? *cap * 2 : INFLATE_FIRST;
            if (c > max + 1)
                c = max + 1;
            uint8_t *b = realloc(*buf, c);
            if (!b)
                return -ENOMEM;
            *buf = b;
            *cap = c;
        }
        z->next_out = *buf + *len;
        z->avail_out = (uInt)(*cap - *len);
        int r = inflate(z, Z_SYNC_FLUSH);
        *len = *cap - z->avail_out;
        /* Past the limit is the verdict even if zlib went on to find bad
         * data after the output it had room for: the same input then fails
         * the same way however its frames were cut. */
        if (*len > max)
            return VIAL_WS_PMD_TOO_BIG;
        if (r == Z_STREAM_END) {
            d->inf_done = 1; /* a final block: the rest of the message is ignored */
            break;
        }
        if (r == Z_MEM_ERROR)
            return VIAL_WS_PMD_NO_MEMORY; /* zlib allocates the window on first output */
        if ((r != Z_OK && r != Z_BUF_ERROR) || (r == Z_BUF_ERROR && z->avail_in && z->avail_out))
            return VIAL_WS_PMD_CORRUPT;
        if (!z->avail_in && z->avail_out)
            break;
    }
    return *len > max ? VIAL_WS_PMD_TOO_BIG : 0;
}

int vial_ws_pmd_inflate(vial_ws_pmd *d, const uint8_t *in, size_t n, int fin, uint8_t **buf,
                        size_t *len, size_t *cap, size_t max)
{
    static const uint8_t trailer[4] = {0x00, 0x00, 0xff, 0xff};
    if (!d->inf) {
        z_stream *z = stream_new(d);
        if (!z)
            return -ENOMEM;
        /* Always zlib's largest window, whatever client_max_window_bits
         * says: zlib (built without INFLATE_STRICT) checks a distance
         * against its window only for output that left the current call's
         * buffer, so with a smaller window a client that breaks its own
         * agreement would be accepted or refused depending on how TCP cut
         * its frames (fuzz_ws_inflate found one). With 2^15 no distance the
         * format can express is out of reach: the verdict no longer depends
         * on the cuts. The price: the inflater's window is 32 KiB, not the
         * agreed one (docs/guide/websockets.md, "Memory"). */
        int r = inflateInit2(z, -15);
        if (r != Z_OK) {
            free(z);
            return r == Z_MEM_ERROR ? VIAL_WS_PMD_NO_MEMORY : -ENOMEM;
        }
        d->inf = z;
    }
    int r = n ? inflate_some(d, in, n, buf, len, cap, max) : 0;
    if (r == 0 && fin)
        r = inflate_some(d, trailer, sizeof trailer, buf, len, cap, max);
    if (fin || r < 0) {
        z_stream *z = d->inf;
        if (d->inf_done || d->params.client_no_context_takeover)
            inflateReset(z);
        d->inf_done = 0;
    }
    return r;
}

/* --- deflate --------------------------------------------------------------------------- */

int vial_ws_pmd_deflate(vial_ws_pmd *d, const void *in, size_t n, uint8_t **out, size_t *out_len)
{
    if (!d->def) {
        z_stream *z = stream_new(d);
        if (!z)
            return -ENOMEM;
        int r = deflateInit2(z, VIAL_WS_PMD_LEVEL, Z_DEFLATED, -(int)d->params.server_max_window_bits,
                             VIAL_WS_PMD_MEMLEVEL, Z_DEFAULT_STRATEGY);
        if (r != Z_OK) {
            free(z);
            return r == Z_MEM_ERROR ? VIAL_WS_PMD_NO_MEMORY : -ENOMEM;
        }
        d->def = z;
    }
    z_stream *z = d->def;
    /* Room for the bound plus the sync flush's marker; what does not shrink
     * is sent as it is. */
    size_t cap = deflateBound(z, (uLong)n) + 16;
    uint8_t *o = malloc(cap);
    if (!o)
        return -ENOMEM;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = o;
    z->avail_out = (uInt)cap;
    int r = deflate(z, Z_SYNC_FLUSH);
    size_t got = cap - z->avail_out;
    if (r != Z_OK || z->avail_in || got < 4 || got - 4 >= n) {
        /* The peer's inflater never sees these bytes: forgetting them here
         * keeps the two contexts the same. */
        deflateReset(z);
        free(o);
        return r == Z_OK || r == Z_BUF_ERROR ? 1 : -ENOMEM;
    }
    if (d->params.server_no_context_takeover)
        deflateReset(z);
    *out = o;
    *out_len = got - 4; /* the 00 00 ff ff the flush ended with */
    return 0;
}

void vial_ws_pmd_free(vial_ws_pmd *d)
{
    if (d->inf) {
        inflateEnd(d->inf);
        free(d->inf);
        d->inf = NULL;
    }
    if (d->def) {
        deflateEnd(d->def);
        free(d->def);
        d->def = NULL;
    }
}
