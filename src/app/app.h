/* The application: routes and how a request reaches its view. */
#ifndef VIAL_APP_APP_H
#define VIAL_APP_APP_H

#include "vial.h"
#include "http/exchange.h"

#include <stdint.h>

enum vial_seg_kind { SEG_STATIC, SEG_STRING, SEG_INT, SEG_PATH };

typedef struct vial_segment {
    int kind;
    char *text; /* static text, or the parameter name */
    size_t len;
    int64_t imin, imax; /* <int(min=..,max=..):name> bounds */
} vial_segment;

typedef struct vial_rule {
    char *rule;        /* as registered, for logs */
    char *path;        /* the path pattern */
    char **methods;    /* NULL-terminated */
    unsigned nmethods;
    vial_handler fn;
    int is_sync;
    vial_segment *segs;
    unsigned nsegs;
    int trailing_slash; /* pattern ends with '/' */
    struct vial_rule *next;
} vial_rule;

struct vial_app {
    vial_rule *routes, *routes_tail;
};

/* Router (router.c). */
int vial_router_add(vial_app *app, const char *rule, vial_handler fn, int is_sync);
void vial_router_free(vial_app *app);
/* Finds the routes whose path matches `path`. Fills rq params from the first
 * route that also allows `method` (returned), or returns NULL and sets
 * *path_matched when some route matched the path only. */
const vial_rule *vial_router_match(vial_app *app, vial_req *rq, const char *path,
                                    const char *method, int *path_matched);
/* Comma-separated methods of every route matching path, plus HEAD (when GET
 * is there) and OPTIONS, each once. */
char *vial_router_allow(vial_app *app, vial_req *rq, const char *path);

/* Request helpers (request.c). */
/* Percent-decodes src[0..n) as UTF-8 (invalid sequences become U+FFFD, a
 * stray '%' stays); plus_space turns '+' into ' ' first (query strings). */
char *vial_url_decode(vial_arena *a, const char *src, size_t n, int plus_space, size_t *out_len);

void vial_app_serve(void *app, vial_req *rq);

#endif
