/* Incremental multipart/form-data parser; see multipart.h for the rules.
 *
 * The delimiter "\r\n--boundary" has exactly one CR, at its start (a
 * boundary cannot contain CR), so a failed partial match can only restart at
 * the byte that broke it, and only if that byte is CR: no KMP table is
 * needed, and in data the scan jumps from CR to CR with memchr. */
#include "app/multipart.h"

#include <string.h>

enum {
    ST_PREAMBLE,   /* looking for the first delimiter, bytes ignored */
    ST_AFTER_DELIM, /* "--boundary" seen: "--", whitespace or CRLF next */
    ST_LWSP,       /* transport padding after the boundary */
    ST_DELIM_LF,   /* CR after the boundary seen, LF next */
    ST_CLOSE_DASH, /* first '-' of the close delimiter seen */
    ST_HEADER,     /* inside a part header line */
    ST_HEADER_LF,  /* CR ending a header line seen, LF next; line in linebuf */
    ST_DATA,       /* part data, looking for the next delimiter */
    ST_EPILOGUE,   /* after the close delimiter: bytes ignored */
    ST_DONE,       /* finish() called */
};

int vial_multipart_init(vial_multipart *p, const char *boundary, size_t boundary_len,
                        const vial_multipart_callbacks *cb, void *ud, char *linebuf,
                        size_t linebuf_cap)
{
    memset(p, 0, offsetof(vial_multipart, delim));
    if (boundary_len == 0 || boundary_len > VIAL_MP_MAX_BOUNDARY ||
        memchr(boundary, '\r', boundary_len) || memchr(boundary, '\n', boundary_len)) {
        p->err = VIAL_MP_EBOUNDARY;
        return p->err;
    }
    memcpy(p->delim, "\r\n--", 4);
    memcpy(p->delim + 4, boundary, boundary_len);
    p->dlen = 4 + boundary_len;
    p->state = ST_PREAMBLE;
    /* The first delimiter may begin the body, with no CRLF before it:
     * pretend the CRLF was already matched. */
    p->m = 2;
    p->cb = cb;
    p->ud = ud;
    p->linebuf = linebuf;
    p->linebuf_cap = linebuf_cap;
    return 0;
}

static int fail(vial_multipart *p, int err)
{
    p->err = err;
    return err;
}

static int emit_data(vial_multipart *p, const char *d, size_t n)
{
    if (n == 0 || !p->cb || !p->cb->data)
        return 0;
    return p->cb->data(p->ud, d, n);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* One complete header line (without CRLF). */
static int header_line(vial_multipart *p, const char *s, size_t n)
{
    if (n == 0) {
        p->state = ST_DATA;
        p->m = 0;
        if (p->cb && p->cb->headers_end)
            return p->cb->headers_end(p->ud);
        return 0;
    }
    if (n > VIAL_MP_MAX_LINE)
        return VIAL_MP_ELINE;
    if (is_ws(s[0])) /* obs-fold: no modern client sends it */
        return VIAL_MP_EHEADER;
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return VIAL_MP_EHEADER;
    size_t nl = (size_t)(colon - s);
    while (nl && is_ws(s[nl - 1]))
        nl--;
    if (nl == 0)
        return VIAL_MP_EHEADER;
    const char *v = colon + 1, *e = s + n;
    while (v < e && is_ws(*v))
        v++;
    while (e > v && is_ws(e[-1]))
        e--;
    p->state = ST_HEADER;
    p->line_len = 0;
    if (p->cb && p->cb->header)
        return p->cb->header(p->ud, s, nl, v, (size_t)(e - v));
    return 0;
}

/* Appends to the line buffer (a line split across feeds). */
static int buffer_line(vial_multipart *p, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (p->line_len + n > VIAL_MP_MAX_LINE)
        return VIAL_MP_ELINE;
    if (!p->linebuf) {
        /* Only an error if more input follows: the body may just end here
         * (then finish() reports it truncated). */
        p->line_cut = 1;
        return 0;
    }
    if (p->line_len + n > p->linebuf_cap)
        return VIAL_MP_ELINE;
    memcpy(p->linebuf + p->line_len, s, n);
    p->line_len += n;
    return 0;
}

/* Scans buf[*pi..len) for the delimiter. In data (discard == 0) the bytes
 * before it are reported; in the preamble they are dropped. Returns 1 when
 * the delimiter was found (*pi just past it), 0 at the end of the buffer
 * (a partial match is kept in p->m), or a negative error. */
static int scan_delim(vial_multipart *p, const char *buf, size_t len, size_t *pi, int discard)
{
    size_t i = *pi, mark = i, mstart = i;
    size_t m = p->m;
    /* Bytes of a partial match carried from earlier feeds are not in buf;
     * if the match fails they are data, and equal to delim[0..carried). */
    size_t carried = m;
    int rc;
    for (;;) {
        if (m == 0) {
            const char *cr = memchr(buf + i, '\r', len - i);
            if (!cr) {
                i = len;
                break;
            }
            i = (size_t)(cr - buf);
            mstart = i++;
            m = 1;
        }
        while (i < len && buf[i] == p->delim[m]) {
            i++;
            if (++m == p->dlen) {
                if (!discard && !carried && (rc = emit_data(p, buf + mark, mstart - mark)) < 0)
                    return rc;
                p->m = 0;
                *pi = i;
                return 1;
            }
        }
        if (i == len)
            break;
        /* Mismatch at buf[i]: what matched is data; look at buf[i] again. */
        if (carried) {
            if (!discard && (rc = emit_data(p, p->delim, carried)) < 0)
                return rc;
            carried = 0;
        }
        m = 0;
    }
    /* End of buffer. */
    if (!discard && !carried) {
        size_t end = m ? mstart : len;
        if ((rc = emit_data(p, buf + mark, end - mark)) < 0)
            return rc;
    }
    p->m = m;
    *pi = len;
    return 0;
}

int vial_multipart_feed(vial_multipart *p, const char *buf, size_t len)
{
    if (p->err)
        return p->err;
    if (p->state == ST_DONE)
        return fail(p, VIAL_MP_ESTATE);
    if (p->line_cut && len)
        return fail(p, VIAL_MP_ENOBUF);
    const vial_multipart_callbacks *cb = p->cb;
    size_t i = 0;
    int rc;
    while (i < len) {
        char c = buf[i];
        switch (p->state) {
        case ST_PREAMBLE:
        case ST_DATA: {
            int data = p->state == ST_DATA;
            rc = scan_delim(p, buf, len, &i, !data);
            if (rc < 0)
                return fail(p, rc);
            if (rc == 1) {
                if (data && cb && cb->part_end && (rc = cb->part_end(p->ud)) < 0)
                    return fail(p, rc);
                p->state = ST_AFTER_DELIM;
            }
            break;
        }
        case ST_AFTER_DELIM:
            i++;
            if (c == '-')
                p->state = ST_CLOSE_DASH;
            else if (is_ws(c))
                p->state = ST_LWSP;
            else if (c == '\r')
                p->state = ST_DELIM_LF;
            else
                return fail(p, VIAL_MP_EDELIM);
            break;
        case ST_LWSP:
            i++;
            if (c == '\r')
                p->state = ST_DELIM_LF;
            else if (!is_ws(c))
                return fail(p, VIAL_MP_EDELIM);
            break;
        case ST_DELIM_LF:
            i++;
            if (c != '\n')
                return fail(p, VIAL_MP_EDELIM);
            p->state = ST_HEADER;
            p->line_len = 0;
            if (cb && cb->part_begin && (rc = cb->part_begin(p->ud)) < 0)
                return fail(p, rc);
            break;
        case ST_CLOSE_DASH:
            i++;
            if (c != '-')
                return fail(p, VIAL_MP_EDELIM);
            p->state = ST_EPILOGUE;
            break;
        case ST_EPILOGUE:
            return 0;
        case ST_HEADER: {
            size_t j = i;
            while (j < len && buf[j] != '\r' && buf[j] != '\n')
                j++;
            if (j == len) {
                if ((rc = buffer_line(p, buf + i, j - i)) < 0)
                    return fail(p, rc);
                i = j;
                break;
            }
            if (buf[j] == '\n')
                return fail(p, VIAL_MP_EHEADER);
            /* CR at j */
            if (j + 1 == len) {
                if ((rc = buffer_line(p, buf + i, j - i)) < 0)
                    return fail(p, rc);
                p->state = ST_HEADER_LF;
                i = len;
                break;
            }
            if (buf[j + 1] != '\n')
                return fail(p, VIAL_MP_EHEADER);
            if (p->line_len) {
                if ((rc = buffer_line(p, buf + i, j - i)) < 0)
                    return fail(p, rc);
                rc = header_line(p, p->linebuf, p->line_len);
            } else {
                rc = header_line(p, buf + i, j - i);
            }
            if (rc < 0)
                return fail(p, rc);
            i = j + 2;
            break;
        }
        case ST_HEADER_LF:
            i++;
            if (c != '\n')
                return fail(p, VIAL_MP_EHEADER);
            if ((rc = header_line(p, p->linebuf, p->line_len)) < 0)
                return fail(p, rc);
            break;
        default:
            return fail(p, VIAL_MP_ESTATE);
        }
    }
    return 0;
}

int vial_multipart_finish(vial_multipart *p)
{
    if (p->err)
        return p->err;
    int st = p->state;
    p->state = ST_DONE;
    /* "--boundary--" ends the body; a close delimiter without the CRLF that
     * usually follows it is still complete. */
    if (st != ST_EPILOGUE)
        return fail(p, VIAL_MP_ETRUNCATED);
    return 0;
}

const char *vial_multipart_strerror(int err)
{
    switch (err) {
    case 0:
        return "no error";
    case VIAL_MP_EBOUNDARY:
        return "invalid multipart boundary";
    case VIAL_MP_EDELIM:
        return "multipart delimiter followed by unexpected bytes";
    case VIAL_MP_EHEADER:
        return "malformed part header";
    case VIAL_MP_ELINE:
        return "part header line too long";
    case VIAL_MP_ENOBUF:
        return "part header line split without a line buffer";
    case VIAL_MP_ETRUNCATED:
        return "multipart body without closing delimiter";
    case VIAL_MP_ESTATE:
        return "multipart parser used after it ended";
    default:
        return "multipart callback error";
    }
}
