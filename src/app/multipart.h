/* Incremental multipart/form-data parser (RFC 7578 over RFC 2046 framing).
 *
 * A push state machine: the caller feeds the body in pieces of any size and
 * receives callbacks per part (begin, each header field, end of headers,
 * data, end). It never copies part data: data callbacks point into the fed
 * buffer, except for up to a delimiter's length of bytes that looked like
 * the start of a delimiter at the end of one piece and turned out not to be
 * one; those are handed out from the parser's own copy of the delimiter.
 * When the whole body is fed in one call, consecutive data callbacks of a
 * part are therefore adjacent in the body and can be merged into one span.
 *
 * Framing rules (strict, CRLF only):
 *  - preamble before the first "--boundary" line is ignored; the first
 *    delimiter may start the body;
 *  - a delimiter line is CRLF "--" boundary, optional spaces/tabs, CRLF;
 *    the close delimiter is CRLF "--" boundary "--", after which the
 *    epilogue is ignored;
 *  - "--boundary" followed by anything else is an error: RFC 2046 §5.1.1
 *    forbids the delimiter inside part data, so it is not data either;
 *  - each part has a header section of "Name: value" lines ended by an
 *    empty line; a line longer than VIAL_MP_MAX_LINE, a bare CR or LF, a
 *    line without ':' or a folded line is an error.
 *
 * The parser allocates nothing. A header line that is cut between two fed
 * pieces is assembled in the caller's line buffer (init's linebuf); without
 * one, feeding more after such a cut is an error (VIAL_MP_ENOBUF), while
 * finishing there is the usual VIAL_MP_ETRUNCATED: fine when the body is
 * fed whole.
 */
#ifndef VIAL_APP_MULTIPART_H
#define VIAL_APP_MULTIPART_H

#include <stddef.h>

#define VIAL_MP_MAX_BOUNDARY 200   /* RFC 2046 says 70; be lenient but bounded */
#define VIAL_MP_MAX_LINE 8192      /* one part header line, without its CRLF */

/* Errors (negative); callbacks may return their own negative values, which
 * are passed through unchanged. */
enum {
    VIAL_MP_EBOUNDARY = -1001,  /* boundary empty, too long or with CR/LF */
    VIAL_MP_EDELIM = -1002,     /* "--boundary" followed by junk */
    VIAL_MP_EHEADER = -1003,    /* header line malformed (no ':', folded, bare CR/LF) */
    VIAL_MP_ELINE = -1004,      /* header line longer than VIAL_MP_MAX_LINE */
    VIAL_MP_ENOBUF = -1005,     /* header line split across feeds and no line buffer */
    VIAL_MP_ETRUNCATED = -1006, /* finish() before the close delimiter */
    VIAL_MP_ESTATE = -1007,     /* feed after an error or after finish */
};

typedef struct vial_multipart_callbacks {
    /* Each returns 0 to go on, or a negative value to stop the parse (feed
     * then returns that value). Any of them may be NULL. */
    int (*part_begin)(void *ud);
    int (*header)(void *ud, const char *name, size_t name_len, const char *value, size_t value_len);
    int (*headers_end)(void *ud);
    int (*data)(void *ud, const char *p, size_t n);
    int (*part_end)(void *ud);
} vial_multipart_callbacks;

typedef struct vial_multipart {
    /* private */
    int state;
    int err;
    size_t dlen;     /* strlen(delim) */
    size_t m;        /* delimiter bytes matched so far */
    size_t line_len; /* bytes buffered in linebuf */
    int line_cut;    /* a line was cut at the end of a feed and not buffered */
    char *linebuf;
    size_t linebuf_cap;
    const vial_multipart_callbacks *cb;
    void *ud;
    char delim[4 + VIAL_MP_MAX_BOUNDARY]; /* "\r\n--" boundary */
} vial_multipart;

/* Prepares p for a body with this boundary (the Content-Type parameter,
 * unquoted). linebuf (may be NULL) of linebuf_cap bytes holds a header line
 * split across feeds; it needs VIAL_MP_MAX_LINE bytes to take any legal
 * line. Returns 0 or VIAL_MP_EBOUNDARY. */
int vial_multipart_init(vial_multipart *p, const char *boundary, size_t boundary_len,
                        const vial_multipart_callbacks *cb, void *ud, char *linebuf,
                        size_t linebuf_cap);

/* Feeds buf[0..len). Returns 0, or the first error (a VIAL_MP_E* code or a
 * callback's value); after an error every call returns it again. */
int vial_multipart_feed(vial_multipart *p, const char *buf, size_t len);

/* Ends the body: 0 when the close delimiter was seen, else
 * VIAL_MP_ETRUNCATED (or the earlier error). */
int vial_multipart_finish(vial_multipart *p);

/* A short English description of a VIAL_MP_E* code. */
const char *vial_multipart_strerror(int err);

#endif
