/* What the TechEmpower database test types share, whatever the database:
 * the random row id, the "queries" parameter, World as JSON and the
 * Fortunes page. Used by techempower_db.c (PostgreSQL) and
 * techempower_sqlite.c. */
#ifndef TECHEMPOWER_COMMON_H
#define TECHEMPOWER_COMMON_H

#include <vial.h>

#include <stdint.h>

#define TE_WORLD_ROWS 10000
#define TE_MAX_QUERIES 500

/* 1..TE_WORLD_ROWS from a per-thread xorshift64* generator: loop threads
 * draw ids without a lock or libc's shared random() state. */
int te_random_id(void);

/* The "queries" parameter as the rules want it: missing, not a number or
 * < 1 -> 1; > 500 -> 500. */
int te_queries(vial_req *rq);

/* {"id": id, "randomNumber": rn} as the next JSON value. */
void te_world_json(vial_json *j, int64_t id, int64_t rn);

typedef struct te_fortune {
    int64_t id;
    const char *message;
} te_fortune;

/* Adds the request-time fortune to f's n rows (f has room for it) and
 * sorts them by message; returns the new count. */
size_t te_fortunes_prepare(te_fortune *f, size_t n);

/* The Fortunes page: f holds n rows from the database and room for one more;
 * adds the request-time fortune, sorts by message, writes the HTML with
 * every message escaped. */
int te_fortunes_page(vial_res *rs, te_fortune *f, size_t n);

/* The same page through the template fortunes.html (bench/templates, the
 * app's template folder): what the TechEmpower apps serve at /fortunes.
 * te_fortunes_page stays as the hand-written yardstick the template is
 * measured against (bench/fortunes-tmpl.py). */
int te_fortunes_render(vial_req *rq, vial_res *rs, te_fortune *f, size_t n);

#endif
