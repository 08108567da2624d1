/* The router: path patterns with converters, matched by a radix tree whose
 * cost depends on the path's length, not on the number of rules.
 *
 * It knows nothing about handlers: a rule carries an opaque target pointer
 * (the app's route). Matching is against the percent-decoded path. */
#ifndef VIAL_APP_ROUTER_H
#define VIAL_APP_ROUTER_H

#include "vial.h"
#include "runtime/arena.h"

#include <stddef.h>
#include <stdint.h>

#ifndef VIAL_MAX_PARAMS
#define VIAL_MAX_PARAMS 8
#endif

typedef struct vial_router vial_router;
typedef struct vial_router_rule vial_router_rule;

typedef struct vial_param {
    const char *name;  /* the rule's parameter name (owned by the router) */
    const char *value; /* decoded segment(s), NUL-terminated, in the match arena */
    size_t len;        /* value's length: a decoded %00 makes it contain NULs */
    int64_t ival;      /* <int:> value */
    double dval;       /* <float:> value */
} vial_param;

typedef struct vial_match {
    void *target;          /* the matched rule's target */
    vial_router_rule *rule;
    unsigned nparams;
    vial_param params[VIAL_MAX_PARAMS];
} vial_match;

enum vial_match_result {
    VIAL_MATCH_NONE = 0,     /* no rule matches the path: 404 */
    VIAL_MATCH_OK = 1,       /* m filled */
    VIAL_MATCH_METHOD = 2,   /* the path matches, the method does not: 405 */
    VIAL_MATCH_REDIRECT = 3, /* only path + "/" matches a rule: strict-slash 308 */
};

vial_router *vial_router_new(void);
void vial_router_free(vial_router *r);

/* Registers <name:param>; match() sees one segment (no '/'). Returns 0,
 * -EEXIST (a built-in or registered name), -EINVAL, -ENOMEM. */
int vial_router_add_converter(vial_router *r, const char *name, vial_converter_fn match, void *arg);

/* Adds a rule. pattern: "/users/<int:id>" (see vial_route_as for the
 * converter syntax); a converter fills a whole segment ("/f/<x>.json" is
 * -EINVAL). methods: NULL-terminated list, copied (NULL: GET). Two rules
 * with the same pattern (up to parameter names) must not share a method
 * (-EEXIST). Returns 0 and the rule in *out (may be NULL), -EINVAL
 * (malformed pattern, "//", unknown converter, duplicate parameter name,
 * more than VIAL_MAX_PARAMS parameters, bad method token), -ENOMEM. */
int vial_router_add(vial_router *r, const char *pattern, const char *const *methods, void *target,
                    vial_router_rule **out);

/* Matches path (decoded, starts with '/') and method (exact, case-sensitive;
 * HEAD is not mapped to GET here). Parameter values are allocated from a
 * (one allocation; nothing else is allocated). Static segments win over
 * converters, converters over <path:> (Werkzeug's ordering: int, float,
 * uuid, user converters, string, path), whatever the order rules were added
 * in; when the preferred branch fails further on, or its rule lacks the
 * method, the next one is tried. <path:> takes the shortest value that lets
 * the rest match; its first byte is not '/'. REDIRECT: no rule matches path
 * but one (any method) matches path + "/"; METHOD takes precedence over it.
 * Returns a vial_match_result, or -ENOMEM when the values cannot be copied. */
int vial_router_match(vial_router *r, const char *path, const char *method, vial_arena *a,
                      vial_match *m);
/* The same on path[0..len), which may contain NUL bytes (a decoded %00):
 * "/users/1%00" must not match <int:id>. */
int vial_router_match_n(vial_router *r, const char *path, size_t len, const char *method,
                        vial_arena *a, vial_match *m);

/* "GET, HEAD, OPTIONS, POST": the methods of every rule matching path, plus
 * HEAD when GET is there and OPTIONS, each once, sorted. In a's memory; NULL
 * when no rule matches (or out of memory). */
char *vial_router_allow(vial_router *r, const char *path, vial_arena *a);
char *vial_router_allow_n(vial_router *r, const char *path, size_t len, vial_arena *a);

/* The rule's methods (NULL-terminated) and pattern. */
const char *const *vial_router_rule_methods(const vial_router_rule *rule);
const char *vial_router_rule_pattern(const vial_router_rule *rule);

/* Builds a URL for rule (url_for): kv holds n key/value pairs (2n
 * pointers). Keys naming the rule's parameters fill them (the first value
 * wins; the value must satisfy the converter, and is written the way
 * Werkzeug's to_url writes it: "007" -> "7", float "2" -> "2.0", uuid in
 * lower case); the rest become "?k=v&..." in order, pairs with a NULL value
 * skipped. Encoding: path values and static text keep unreserved characters
 * and !$&'()*+,:;=@ (Werkzeug's quote), and '/' in static text and <path:>
 * values only (a <string> value's '/' becomes %2F; Werkzeug would keep it,
 * making a URL that cannot match); query keys and values go through
 * urlencode's rules (Werkzeug 3's _urlencode): ' ' -> '+', unreserved and
 * !$'()*,/:;?@ kept, everything else (& = + # % ...) %XX. Returns the URL
 * in a, or NULL when a parameter is missing or does not convert. */
char *vial_router_build(const vial_router_rule *rule, const char *const *kv, size_t n, vial_arena *a);

#endif
