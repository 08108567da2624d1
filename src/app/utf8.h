/* UTF-8 validation and repair shared by the request decoders (paths, query
 * strings, form fields, JSON). One definition of "valid": RFC 3629, no
 * overlongs, no surrogates, nothing above U+10FFFF. */
#ifndef VIAL_APP_UTF8_H
#define VIAL_APP_UTF8_H

#include "runtime/arena.h"

#include <stddef.h>

/* Length of the valid sequence at s[0..n) (n >= 1), or 0 when invalid, with
 * *skip (may be NULL) set to the maximal invalid subpart — Unicode's
 * "substitution of maximal subparts", the rule Python's errors="replace"
 * follows, so each bad subpart becomes one U+FFFD as in Werkzeug. */
size_t vial_utf8_seq(const unsigned char *s, size_t n, size_t *skip);

/* A NUL-terminated copy of s[0..n) in a, invalid UTF-8 replaced by U+FFFD;
 * *out_len (may be NULL) gets its length. NULL when out of memory. */
char *vial_utf8_repair(vial_arena *a, const char *s, size_t n, size_t *out_len);

#endif
