/* Response compression (compress.c) and the Accept-Encoding negotiation it
 * rests on (accept_encoding.c). The parser is apart from the codecs so the
 * unit tests and the fuzzer take it without zlib or brotli. */
#ifndef VIAL_APP_COMPRESS_H
#define VIAL_APP_COMPRESS_H

#include "vial.h"

#include <stddef.h>
#include <sys/stat.h>

/* --- Accept-Encoding (RFC 9110, 12.5.3) ------------------------------------ */

/* Codings the server can produce, as bits of an "available" mask. */
enum { VIAL_CODING_IDENTITY = 0, VIAL_CODING_GZIP = 1, VIAL_CODING_BR = 2 };
#define VIAL_CODING_BIT(c) (1u << (c))

/* What one Accept-Encoding field value says, as weights in thousandths
 * (q=0.5 is 500); -1: the coding is not named. */
typedef struct vial_accept_enc {
    int q_gzip, q_br, q_identity, q_star;
} vial_accept_enc;

/* Parses the field value h[0..len) (several fields already joined with
 * ", "). Malformed elements (a bad q-value, a stray parameter) are skipped,
 * the rest still counts. Never fails. */
void vial_accept_enc_parse(const char *h, size_t len, vial_accept_enc *out);

/* The coding to send given what the client accepts (h NULL: the header is
 * absent) and the codings available (VIAL_CODING_BIT mask): the acceptable
 * one of highest weight, br before gzip on equal weight, a coding before
 * identity on equal weight; VIAL_CODING_IDENTITY when nothing compressed is
 * acceptable (also when the client refused identity too: RFC 9110 lets the
 * server send it rather than 406). */
int vial_accept_enc_choose(const char *h, size_t len, unsigned available);

/* The codings a client accepts, best first, among `available`: fills
 * out[0..2) and returns how many (0: identity only). For precompressed
 * static files, where the best one may be missing on disk. */
int vial_accept_enc_rank(const char *h, size_t len, unsigned available, int out[2]);

/* --- the app's compression --------------------------------------------------- */

struct vial_app;

/* Turns compression off and frees its settings (vial_app_free). */
void vial_compress_release(struct vial_app *app);

/* vial_run's --compress: 1 turns it on with the defaults when the app did
 * not call vial_compress, 0 turns it off, -1 leaves the app's choice. */
int vial_compress_config(struct vial_app *app, int on);

/* After the response is final (after_request, session): compresses a
 * buffered body, or ends a compressed stream (its last block). Adds Vary
 * to compressible responses. */
void vial_compress_end(vial_req *rq);

/* From vial_stream_begin, before the head goes out: sets the headers and
 * the stream's compressor when the stream is to be compressed. 0 or
 * -ENOMEM. */
int vial_compress_stream_begin(vial_res *rs);
/* vial_stream_write on a compressed stream: compresses data and sends what
 * came out, flushed (a write reaches the client as soon as it is made). */
int vial_compress_stream_write(vial_res *rs, const void *data, size_t len);

/* Static files (static.c): the codings whose precompressed sibling
 * (".br", ".gz") to look for, best first (0: none); also tells whether the
 * response varies with Accept-Encoding (*vary). The suffix of a coding. */
int vial_compress_static_codings(vial_req *rq, const char *content_type, int out[2], int *vary);
const char *vial_compress_suffix(int coding);
/* Marks rs as the sibling's: Content-Encoding (unless the status has no
 * body) and Vary. 0 or -ENOMEM. */
int vial_compress_static_mark(vial_res *rs, int coding, int vary);

#endif
