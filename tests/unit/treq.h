/* A request built by hand for the unit tests that call response and session
 * functions directly: the raw head goes through the real parser into an
 * exchange, as the connection would do it. Header-only: each test is its own
 * program. */
#ifndef VIAL_TEST_TREQ_H
#define VIAL_TEST_TREQ_H

#include "app/request_state.h"
#include "http/exchange.h"
#include "http/parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    vial_req *rq;
    char *raw; /* the head the request's spans point into */
} treq;

/* headers: "Name: value" strings ending with NULL (may be NULL). */
static inline treq treq_new(const char *method, const char *target, const char *const *headers)
{
    treq t;
    size_t cap = strlen(method) + strlen(target) + 64;
    for (const char *const *h = headers; h && *h; h++)
        cap += strlen(*h) + 2;
    t.raw = malloc(cap);
    assert_non_null(t.raw);
    size_t n = (size_t)snprintf(t.raw, cap, "%s %s HTTP/1.1\r\nHost: t\r\n", method, target);
    for (const char *const *h = headers; h && *h; h++)
        n += (size_t)snprintf(t.raw + n, cap - n, "%s\r\n", *h);
    n += (size_t)snprintf(t.raw + n, cap - n, "\r\n");
    t.rq = calloc(1, sizeof *t.rq);
    assert_non_null(t.rq);
    int status = 0;
    assert_int_equal(vial_http_parse_request(t.raw, n, &t.rq->head, &status), (int)n);
    vial_exchange_init(t.rq, NULL, NULL);
    assert_non_null(vial_req_state_attach(t.rq, NULL)); /* the app's half, as vial_app_serve gives it */
    return t;
}

static inline void treq_free(treq *t)
{
    vial_exchange_fini(t->rq);
    free(t->rq);
    free(t->raw);
}

/* The nth response header with this name, or NULL. */
static inline const char *treq_res_header(vial_req *rq, const char *name, unsigned nth)
{
    for (uint32_t i = 0; i < rq->res.nheaders; i++)
        if (!strcasecmp(rq->res.headers[i].name, name) && nth-- == 0)
            return rq->res.headers[i].value;
    return NULL;
}

static inline unsigned treq_res_header_count(vial_req *rq, const char *name)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < rq->res.nheaders; i++)
        n += !strcasecmp(rq->res.headers[i].name, name);
    return n;
}

#endif
