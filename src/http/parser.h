/* HTTP/1.1 request-head parser and chunked body decoder.
 *
 * Zero-copy: every span points into the caller's buffer, so the buffer must
 * stay put while the request is in use. The parser is not incremental: the
 * connection calls it again on the whole buffer when more bytes arrive (only
 * when the new bytes contain a LF, so a slow client costs O(n) scanning, not
 * O(n^2)). Invalid input is reported as soon as it is seen, even in an
 * incomplete head, so a bad request line is answered without waiting for the
 * rest of the head.
 *
 * The rules are RFC 9112 as tightened by shared/spec/conformance-app.md
 * sections 6 and 8; every rejection carries the status code to answer with.
 */
#ifndef VIAL_HTTP_PARSER_H
#define VIAL_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

typedef struct vial_span {
    const char *p;
    size_t len;
} vial_span;

/* Limits from spec section 8. */
#define VIAL_HTTP_MAX_TARGET 8192        /* request-target bytes; more -> 414 */
#define VIAL_HTTP_MAX_HEADER_BYTES 16384 /* field lines incl. line endings; more -> 431 */
#define VIAL_HTTP_MAX_HEADERS 100        /* field lines; more -> 431 */
#define VIAL_HTTP_MAX_BODY (1024 * 1024) /* decoded body bytes; more -> 413 */

enum vial_http_body_kind {
    VIAL_BODY_NONE = 0,    /* no Content-Length, no Transfer-Encoding (or CL: 0) */
    VIAL_BODY_LENGTH = 1,  /* Content-Length > 0 */
    VIAL_BODY_CHUNKED = 2, /* Transfer-Encoding: chunked */
};

typedef struct vial_http_field {
    vial_span name;  /* as sent (case preserved) */
    vial_span value; /* leading and trailing SP/HTAB removed */
} vial_http_field;

typedef struct vial_http_head {
    vial_span method;  /* token, case-sensitive */
    vial_span target;  /* request-target exactly as sent */
    vial_span path;    /* raw (still percent-encoded) path: origin-form path, or the
                          path of an absolute-form target ("/" when it is empty:
                          then it points at a constant, not into the buffer);
                          "*" for OPTIONS * */
    vial_span query;   /* bytes after the first '?', without it; len 0 if none */
    int has_query;     /* 1 when the target had a '?', even with an empty query */
    int version_minor; /* 0 for HTTP/1.0, 1 for HTTP/1.1 and HTTP/1.x (x >= 2) */
    int is_asterisk;   /* "OPTIONS *" */
    int keep_alive;    /* persistence per version and Connection tokens */
    int expect_continue;  /* Expect: 100-continue (case-insensitive) */
    int upgrade_websocket; /* Upgrade has token "websocket" and Connection has "upgrade" */
    int body_kind;         /* enum vial_http_body_kind */
    uint64_t content_length; /* valid when body_kind == VIAL_BODY_LENGTH */
    size_t header_bytes;   /* bytes of field lines incl. their line endings */
    uint64_t max_body;     /* INPUT, set by the caller and kept by the parser:
                              Content-Length above it -> 413; 0 means
                              VIAL_HTTP_MAX_BODY */
    unsigned nheaders;
    vial_http_field headers[VIAL_HTTP_MAX_HEADERS];
} vial_http_head;

#define VIAL_HTTP_INCOMPLETE 0 /* head not complete yet, nothing invalid so far */
#define VIAL_HTTP_ERROR (-1)   /* rejected; *status says how to answer */

/* Parses the request head at the start of buf[0..len).
 * Empty lines (CRLF or LF) before the request line are skipped.
 * Returns the number of bytes of the head (leading empty lines, request line,
 * field lines and the final empty line) when it is complete and valid;
 * VIAL_HTTP_INCOMPLETE when more bytes are needed; VIAL_HTTP_ERROR with
 * *status set to 400, 413, 414, 417, 431, 501 or 505 when the request must be
 * rejected. On success *status is 0.
 * Syntax errors and limits are reported as soon as they are certain (an error
 * found in a prefix of a head is the error of the whole head); the rules that
 * need the whole head (Host count, Content-Length / Transfer-Encoding, Expect)
 * are judged at its empty line, in this order: 400, 501, 413, 417. A method
 * longer than 64 bytes is a 501; more than 16384 bytes of empty lines before
 * the request line is a 400. */
int vial_http_parse_request(const char *buf, size_t len, vial_http_head *req, int *status);

/* Case-insensitive lookup of the first field with this name, or NULL. */
const vial_http_field *vial_http_find_header(const vial_http_head *req, const char *name);

/* Incremental decoder for a chunked body (RFC 9112 section 7.1). */
typedef struct vial_chunked {
    int state;          /* private */
    uint64_t remaining; /* private: the chunk size while it is read, then the
                           bytes left in the current chunk */
    uint64_t total;     /* decoded bytes so far */
    unsigned digits;    /* private: hex digits of the size so far */
    size_t line_bytes;  /* private: bytes of the current size line (at most
                           4096), or of the trailer section (at most
                           VIAL_HTTP_MAX_HEADER_BYTES + 2) */
    unsigned ntrailers; /* private: trailer fields (at most VIAL_HTTP_MAX_HEADERS) */
} vial_chunked;

void vial_chunked_init(vial_chunked *d);

/* Feeds in[0..len). Decoded data bytes are appended to out (*out_len is
 * advanced; the caller provides room for at least len more bytes, since
 * decoding never grows the data). *consumed is set to the bytes of `in` eaten.
 * Returns 1 when the last chunk and the trailer section are complete (bytes
 * after them are not consumed: they belong to the next request), 0 when it
 * needs more input, or -400 / -413 on a framing error or when the decoded body
 * would exceed max_body (known from a chunk's size line, before its data).
 * On an error *consumed stops at the refused byte. Errors and completion are
 * sticky: later calls return the same result and consume nothing. The result
 * does not depend on how the input is split between calls. */
int vial_chunked_feed(vial_chunked *d, const char *in, size_t len, size_t *consumed,
                      char *out, size_t *out_len, uint64_t max_body);

#endif
