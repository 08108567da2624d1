/* Accept-Encoding (RFC 9110, 12.5.3): the weights a client gives each
 * content coding, and the choice among the codings vial can produce.
 *
 *   Accept-Encoding = #( codings [ weight ] )
 *   codings = content-coding / "identity" / "*"
 *   weight  = OWS ";" OWS "q=" qvalue
 *   qvalue  = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
 *
 * A malformed element is skipped and parsing resumes after the next comma:
 * one bad element must not make the client's other preferences unreadable,
 * and an element that is not understood is never taken as acceptance. */
#include "app/compress.h"
#include "runtime/ascii.h"

#include <string.h>

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* A qvalue at p[0..end) in thousandths; -1 when malformed. *pp is advanced
 * past it. */
static int parse_qvalue(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p >= end || (*p != '0' && *p != '1'))
        return -1;
    int one = *p++ == '1';
    int v = one ? 1000 : 0;
    if (p < end && *p == '.') {
        p++;
        int scale = 100;
        for (int i = 0; i < 3 && p < end && *p >= '0' && *p <= '9'; i++, p++) {
            if (one && *p != '0')
                return -1;
            v += (*p - '0') * scale;
            scale /= 10;
        }
    }
    *pp = p;
    return v;
}

static int name_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && !vial_ascii_ncasecmp(p, lit, n);
}

void vial_accept_enc_parse(const char *h, size_t len, vial_accept_enc *out)
{
    out->q_gzip = out->q_br = out->q_identity = out->q_star = -1;
    const char *p = h, *end = h + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        if (p >= end)
            break;
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        size_t nlen = (size_t)(p - name);
        int q = 1000, ok = nlen > 0;
        while (ok) {
            p = skip_ows(p, end);
            if (p >= end || *p == ',')
                break;
            if (*p != ';') {
                ok = 0;
                break;
            }
            p = skip_ows(p + 1, end);
            /* Accept-Encoding has one parameter, the weight ("q", any
             * case); anything else makes the element unreadable. */
            if (end - p < 2 || (*p != 'q' && *p != 'Q') || p[1] != '=') {
                ok = 0;
                break;
            }
            p += 2;
            if ((q = parse_qvalue(&p, end)) < 0)
                ok = 0;
        }
        if (!ok) {
            while (p < end && *p != ',')
                p++;
            continue;
        }
        int *slot = NULL;
        if (name_is(name, nlen, "gzip") || name_is(name, nlen, "x-gzip"))
            slot = &out->q_gzip; /* RFC 9110, 8.4.1.3: x-gzip is gzip */
        else if (name_is(name, nlen, "br"))
            slot = &out->q_br;
        else if (name_is(name, nlen, "identity"))
            slot = &out->q_identity;
        else if (name_is(name, nlen, "*"))
            slot = &out->q_star;
        /* A coding named twice: its first weight stands. */
        if (slot && *slot < 0)
            *slot = q;
    }
}

int vial_accept_enc_rank(const char *h, size_t len, unsigned available, int out[2])
{
    if (!h)
        return 0; /* no field: identity, as every deployed server reads it */
    vial_accept_enc ae;
    vial_accept_enc_parse(h, len, &ae);
    int star = ae.q_star;
    int qbr = ae.q_br >= 0 ? ae.q_br : star > 0 ? star : 0;
    int qgz = ae.q_gzip >= 0 ? ae.q_gzip : star > 0 ? star : 0;
    if (!(available & VIAL_CODING_BIT(VIAL_CODING_BR)))
        qbr = 0;
    if (!(available & VIAL_CODING_BIT(VIAL_CODING_GZIP)))
        qgz = 0;
    /* Identity competes only with the weight the client gave it (directly
     * or through "*"): its implicit acceptability is a fallback, not a
     * preference over the codings the client asked for. */
    int qid = ae.q_identity >= 0 ? ae.q_identity : star >= 0 ? star : 0;
    int n = 0;
    if (qbr >= qgz) {
        if (qbr > 0 && qbr >= qid)
            out[n++] = VIAL_CODING_BR;
        if (qgz > 0 && qgz >= qid)
            out[n++] = VIAL_CODING_GZIP;
    } else {
        if (qgz >= qid)
            out[n++] = VIAL_CODING_GZIP;
        if (qbr > 0 && qbr >= qid)
            out[n++] = VIAL_CODING_BR;
    }
    return n;
}

int vial_accept_enc_choose(const char *h, size_t len, unsigned available)
{
    int rank[2];
    return vial_accept_enc_rank(h, len, available, rank) ? rank[0] : VIAL_CODING_IDENTITY;
}
