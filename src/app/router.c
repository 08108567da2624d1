/* The router: a radix tree over the static bytes of the patterns, with
 * converter nodes for the <...> segments.
 *
 * "/api/v1/items/<int:id>/sub" becomes the static edge "/api/v1/items/", an
 * int converter node, and the static edge "/sub" under it. Static edges are
 * compressed (a node holds the bytes shared by every rule below it) and split
 * when a new rule diverges inside one. Converter nodes hang only at segment
 * starts (right after a '/'); a converter node is identified by what it
 * accepts, not by the parameter's name, so "/a/<int:x>" and "/a/<int:y>/b"
 * share it. The names live in the rule and are paired with the values in
 * pattern order once a rule is chosen.
 *
 * Lookup walks the path once, byte by byte through static edges, and at each
 * node tries the static child first, then the converter children in
 * precedence order (int, float, uuid, user converters, string, then path),
 * backtracking when a branch dead-ends. That is Werkzeug's ordering (static
 * beats converter beats path, int/float before string) independent of
 * registration order. Its cost follows the path's length and the
 * alternatives on it, not the number of rules.
 *
 * Matching allocates nothing but the parameter values: the walk keeps
 * (offset, length) slots on the stack and copies them into the arena only
 * for the rule that wins. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* newlocale, strtod_l */
#endif
#include "app/router.h"
#include "runtime/codec.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Converter kinds; the order is the precedence among the converter children
 * of one node (Werkzeug weights int/float 50, string/uuid/custom 100, path
 * 200; ties are broken by specificity so the result never depends on the
 * registration order). */
enum conv_kind { CONV_INT, CONV_FLOAT, CONV_UUID, CONV_USER, CONV_STRING, CONV_PATH };

typedef struct user_conv {
    char *name;
    vial_converter_fn match;
    void *arg;
    struct user_conv *next;
} user_conv;

typedef struct conv_spec {
    enum conv_kind kind;
    int64_t min, max;      /* CONV_INT bounds */
    const user_conv *user; /* CONV_USER */
} conv_spec;

typedef struct node node;
struct node {
    char *edge; /* static bytes leading into this node; none for converter nodes */
    size_t elen;
    bool is_conv;
    conv_spec conv;
    /* Static children; keys[i] is the first byte of kids[i]'s edge (no two
     * children share one), so the next path byte picks at most one child. */
    unsigned char *keys;
    node **kids;
    unsigned nkids;
    /* With many static children (the first letters of a hundred resource
     * names), index[c] is the position of the child starting with byte c, or
     * 0 when there is none (then keys[0] != c): one load instead of a scan.
     * NULL while the fan-out is small. */
    unsigned char *index;
    node **convs; /* converter children, in precedence order */
    unsigned nconvs;
    vial_router_rule *rules; /* rules ending here, in registration order */
};

/* A piece of the pattern, for url_for: static text, or parameter `param`. */
typedef struct token {
    const char *text; /* static text (into the rule's pattern copy) */
    size_t len;
    int param; /* -1 for static text */
} token;

#define MAX_TOKENS (2 * VIAL_MAX_PARAMS + 1)

struct vial_router_rule {
    char *pattern;
    char **methods; /* NULL-terminated */
    void *target;
    vial_router_rule *next_here; /* next rule ending at the same node */
    vial_router_rule *next_all;  /* the router's list, for freeing */
    unsigned nparams, ntoks;
    char *names[VIAL_MAX_PARAMS];
    conv_spec specs[VIAL_MAX_PARAMS];
    token toks[MAX_TOKENS];
};

struct vial_router {
    node root; /* empty edge; its static children start with '/' */
    user_conv *convs;
    vial_router_rule *rules;
};

/* --- small helpers --------------------------------------------------------- */

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident(const char *s, size_t n)
{
    if (!n || is_digit(s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || is_digit(s[i]) || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

/* RFC 9110 token characters, what a method name is made of. */
static bool is_tchar(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* --- converters -------------------------------------------------------------- */

/* [0-9]+ with a value in 0..2^63-1 (leading zeros allowed). */
static inline bool parse_uint63(const char *s, size_t n, int64_t *out)
{
    if (!n)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        /* v * 10 + d > INT64_MAX, tested before it can wrap */
        if (v >= INT64_MAX / 10 && (v > INT64_MAX / 10 || d > INT64_MAX % 10))
            return false;
        v = v * 10 + d;
    }
    *out = (int64_t)v;
    return true;
}

/* Werkzeug's float: digits '.' digits; no sign, no exponent. */
static bool is_float(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_digit(s[i]))
        i++;
    if (i == 0 || i == n || s[i] != '.')
        return false;
    size_t frac = ++i;
    while (i < n && is_digit(s[i]))
        i++;
    return i == n && i > frac;
}

/* 8-4-4-4-12 hex digits, either case. */
static bool is_uuid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : vial_hex_val((unsigned char)s[i]) < 0)
            return false;
    }
    return true;
}

/* Whether the segment s[0..n) (n > 0, no '/') satisfies c; *ival gets an
 * int's value. Not for CONV_PATH, which spans segments. */
static bool conv_accepts(const conv_spec *c, const char *s, size_t n, int64_t *ival)
{
    switch (c->kind) {
    case CONV_INT:
        return parse_uint63(s, n, ival) && *ival >= c->min && *ival <= c->max;
    case CONV_FLOAT:
        return is_float(s, n);
    case CONV_UUID:
        return is_uuid(s, n);
    case CONV_USER:
        return c->user->match(s, n, c->user->arg) != 0;
    case CONV_STRING:
        return true;
    case CONV_PATH:
        break;
    }
    return false;
}

static bool spec_equal(const conv_spec *a, const conv_spec *b)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == CONV_INT)
        return a->min == b->min && a->max == b->max;
    if (a->kind == CONV_USER)
        return a->user == b->user;
    return true;
}

static const user_conv *find_user_conv(const vial_router *r, const char *name, size_t n)
{
    for (const user_conv *c = r->convs; c; c = c->next)
        if (strlen(c->name) == n && !memcmp(c->name, name, n))
            return c;
    return NULL;
}

/* The built-in converter called name[0..n), or -1. */
static int builtin_conv(const char *name, size_t n)
{
    static const struct {
        const char *name;
        enum conv_kind kind;
    } tbl[] = {{"string", CONV_STRING}, {"default", CONV_STRING}, {"int", CONV_INT},
               {"float", CONV_FLOAT},   {"uuid", CONV_UUID},      {"path", CONV_PATH}};
    for (size_t i = 0; i < sizeof tbl / sizeof tbl[0]; i++)
        if (strlen(tbl[i].name) == n && !memcmp(tbl[i].name, name, n))
            return (int)tbl[i].kind;
    return -1;
}

int vial_router_add_converter(vial_router *r, const char *name, vial_converter_fn match, void *arg)
{
    if (!r || !name || !match || !is_ident(name, strlen(name)))
        return -EINVAL;
    size_t n = strlen(name);
    if (builtin_conv(name, n) >= 0 || find_user_conv(r, name, n))
        return -EEXIST;
    user_conv *c = calloc(1, sizeof *c);
    if (!c || !(c->name = xstrndup(name, n))) {
        free(c);
        return -ENOMEM;
    }
    c->match = match;
    c->arg = arg;
    c->next = r->convs;
    r->convs = c;
    return 0;
}

/* --- pattern parsing ------------------------------------------------------------ */

/* One "key=value" of int(...): min or max, a signed decimal int64. */
static int parse_int_arg(const char *s, const char *e, conv_spec *spec, bool *seen_min, bool *seen_max)
{
    while (s < e && *s == ' ')
        s++;
    while (e > s && e[-1] == ' ')
        e--;
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (!eq)
        return -EINVAL;
    const char *ke = eq;
    while (ke > s && ke[-1] == ' ')
        ke--;
    const char *v = eq + 1;
    while (v < e && *v == ' ')
        v++;
    bool neg = v < e && *v == '-';
    int64_t val;
    if (!parse_uint63(v + neg, (size_t)(e - v - neg), &val))
        return -EINVAL;
    if (neg)
        val = -val;
    bool *seen;
    if (ke - s == 3 && !memcmp(s, "min", 3)) {
        seen = seen_min;
        spec->min = val;
    } else if (ke - s == 3 && !memcmp(s, "max", 3)) {
        seen = seen_max;
        spec->max = val;
    } else {
        return -EINVAL;
    }
    if (*seen)
        return -EINVAL;
    *seen = true;
    return 0;
}

/* The argument list of int(...), s[0..n) between the parentheses. */
static int parse_int_args(const char *s, size_t n, conv_spec *spec)
{
    bool seen_min = false, seen_max = false;
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        int rc = parse_int_arg(p, e, spec, &seen_min, &seen_max);
        if (rc < 0)
            return rc;
        p = comma ? comma + 1 : end;
        if (comma && p == end)
            return -EINVAL; /* trailing comma */
    }
    return spec->min <= spec->max ? 0 : -EINVAL;
}

/* The inside of <...>: "name", "conv:name" or "conv(args):name". */
static int parse_conv(const vial_router *r, const char *s, size_t n, conv_spec *spec,
                      const char **name, size_t *nlen)
{
    const char *colon = memchr(s, ':', n);
    *spec = (conv_spec){CONV_STRING, 0, INT64_MAX, NULL};
    *name = colon ? colon + 1 : s;
    *nlen = colon ? n - (size_t)(colon - s) - 1 : n;
    if (!is_ident(*name, *nlen))
        return -EINVAL;
    if (!colon)
        return 0;
    size_t clen = (size_t)(colon - s);
    const char *paren = memchr(s, '(', clen);
    size_t cname = paren ? (size_t)(paren - s) : clen;
    if (!is_ident(s, cname))
        return -EINVAL;
    int kind = builtin_conv(s, cname);
    if (kind >= 0) {
        spec->kind = (enum conv_kind)kind;
    } else if ((spec->user = find_user_conv(r, s, cname))) {
        spec->kind = CONV_USER;
    } else {
        return -EINVAL; /* unknown converter */
    }
    if (!paren)
        return 0;
    /* Arguments: only int takes them (min, max). */
    if (spec->kind != CONV_INT || s[clen - 1] != ')')
        return -EINVAL;
    return parse_int_args(paren + 1, clen - cname - 2, spec);
}

static int add_static_token(vial_router_rule *rule, const char *s, size_t n)
{
    if (!n)
        return 0;
    if (rule->ntoks == MAX_TOKENS)
        return -EINVAL;
    rule->toks[rule->ntoks++] = (token){s, n, -1};
    return 0;
}

/* A <...> segment at p (p[-1] == '/'); on success *next is past the '>'. */
static int parse_param(const vial_router *r, vial_router_rule *rule, const char *p, const char **next)
{
    const char *close = strchr(p, '>');
    if (!close || (close[1] && close[1] != '/'))
        return -EINVAL; /* unterminated, or not a whole segment */
    conv_spec spec;
    const char *name;
    size_t nlen;
    int rc = parse_conv(r, p + 1, (size_t)(close - p - 1), &spec, &name, &nlen);
    if (rc < 0)
        return rc;
    if (rule->nparams == VIAL_MAX_PARAMS || rule->ntoks == MAX_TOKENS)
        return -EINVAL;
    for (unsigned i = 0; i < rule->nparams; i++)
        if (strlen(rule->names[i]) == nlen && !memcmp(rule->names[i], name, nlen))
            return -EINVAL; /* duplicate parameter name */
    unsigned k = rule->nparams;
    if (!(rule->names[k] = xstrndup(name, nlen)))
        return -ENOMEM;
    rule->specs[k] = spec;
    rule->nparams++;
    rule->toks[rule->ntoks++] = (token){NULL, 0, (int)k};
    *next = close + 1;
    return 0;
}

/* Splits rule->pattern into static tokens and parameters. Converters must
 * fill a whole segment; empty segments ("//") and stray '<' '>' are errors. */
static int parse_pattern(const vial_router *r, vial_router_rule *rule)
{
    const char *p = rule->pattern, *start = p;
    if (*p != '/')
        return -EINVAL;
    while (*p) {
        int rc = 0;
        if (*p == '<') {
            if (p[-1] != '/')
                return -EINVAL;
            if ((rc = add_static_token(rule, start, (size_t)(p - start))) < 0 ||
                (rc = parse_param(r, rule, p, &p)) < 0)
                return rc;
            start = p;
        } else if (*p == '>' || (*p == '/' && p[1] == '/')) {
            return -EINVAL;
        } else {
            p++;
        }
    }
    return add_static_token(rule, start, (size_t)(p - start));
}

/* Copies methods (NULL: just GET), dropping repeats. */
static int copy_methods(vial_router_rule *rule, const char *const *methods)
{
    static const char *const get_only[] = {"GET", NULL};
    if (!methods)
        methods = get_only;
    size_t n = 0;
    while (methods[n])
        n++;
    if (!n)
        return -EINVAL;
    if (!(rule->methods = calloc(n + 1, sizeof *rule->methods)))
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *m = methods[i];
        if (!*m)
            return -EINVAL;
        for (const char *q = m; *q; q++)
            if (!is_tchar(*q))
                return -EINVAL;
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = !strcmp(rule->methods[j], m);
        if (!dup && !(rule->methods[k++] = strdup(m)))
            return -ENOMEM;
    }
    return 0;
}

static bool rule_has_method(const vial_router_rule *rule, const char *m)
{
    for (char **p = rule->methods; *p; p++)
        if (!strcmp(*p, m))
            return true;
    return false;
}

static void rule_free(vial_router_rule *rule)
{
    if (!rule)
        return;
    if (rule->methods)
        for (char **p = rule->methods; *p; p++)
            free(*p);
    free(rule->methods);
    for (unsigned i = 0; i < rule->nparams; i++)
        free(rule->names[i]);
    free(rule->pattern);
    free(rule);
}

/* --- tree construction ------------------------------------------------------------ */

/* Above this many static children a node gets an index; below, a scan of
 * keys is as fast and costs no memory. */
#define INDEX_FANOUT 8

/* The static child whose edge starts with c. */
static inline node *find_kid(const node *nd, unsigned char c)
{
    if (nd->index) {
        unsigned i = nd->index[c];
        return nd->keys[i] == c ? nd->kids[i] : NULL;
    }
    for (unsigned i = 0; i < nd->nkids; i++)
        if (nd->keys[i] == c)
            return nd->kids[i];
    return NULL;
}

static int add_kid(node *nd, node *kid)
{
    unsigned char *keys = realloc(nd->keys, nd->nkids + 1);
    if (!keys)
        return -ENOMEM;
    nd->keys = keys;
    node **kids = realloc(nd->kids, (nd->nkids + 1) * sizeof *kids);
    if (!kids)
        return -ENOMEM;
    nd->kids = kids;
    if (!nd->index && nd->nkids + 1 > INDEX_FANOUT) {
        /* calloc: bytes without a child point at child 0, whose key differs */
        if (!(nd->index = calloc(256, 1)))
            return -ENOMEM;
        for (unsigned i = 0; i < nd->nkids; i++)
            nd->index[keys[i]] = (unsigned char)i;
    }
    unsigned char c = (unsigned char)kid->edge[0];
    keys[nd->nkids] = c;
    kids[nd->nkids] = kid;
    if (nd->index)
        nd->index[c] = (unsigned char)nd->nkids; /* at most 255: one child per byte */
    nd->nkids++;
    return 0;
}

/* Makes nd's edge end after k bytes: the rest of the edge and everything
 * below nd move to a new child. nd stays where it is, so its parent's
 * pointer remains valid. */
static int split_node(node *nd, size_t k)
{
    node *tail = calloc(1, sizeof *tail);
    if (!tail || !(tail->edge = xstrndup(nd->edge + k, nd->elen - k))) {
        free(tail);
        return -ENOMEM;
    }
    tail->elen = nd->elen - k;
    tail->keys = nd->keys;
    tail->kids = nd->kids;
    tail->nkids = nd->nkids;
    tail->index = nd->index;
    tail->convs = nd->convs;
    tail->nconvs = nd->nconvs;
    tail->rules = nd->rules;
    nd->keys = NULL;
    nd->kids = NULL;
    nd->nkids = 0;
    nd->index = NULL;
    nd->convs = NULL;
    nd->nconvs = 0;
    nd->rules = NULL;
    nd->elen = k;
    if (add_kid(nd, tail) < 0) { /* undo: nd is as before */
        free(nd->keys);
        free(nd->kids);
        nd->elen += tail->elen;
        nd->keys = tail->keys;
        nd->kids = tail->kids;
        nd->nkids = tail->nkids;
        nd->index = tail->index;
        nd->convs = tail->convs;
        nd->nconvs = tail->nconvs;
        nd->rules = tail->rules;
        free(tail->edge);
        free(tail);
        return -ENOMEM;
    }
    return 0;
}

/* The node reached from cur by the static bytes s[0..n): created (splitting
 * edges) when create, else NULL when the tree has no such node. */
static node *descend_static(node *cur, const char *s, size_t n, bool create, int *err)
{
    while (n) {
        node *kid = find_kid(cur, (unsigned char)s[0]);
        if (!kid) {
            if (!create)
                return NULL;
            if (!(kid = calloc(1, sizeof *kid)) || !(kid->edge = xstrndup(s, n)) ||
                add_kid(cur, kid) < 0) {
                if (kid)
                    free(kid->edge);
                free(kid);
                *err = -ENOMEM;
                return NULL;
            }
            kid->elen = n;
            return kid;
        }
        size_t k = 0;
        while (k < kid->elen && k < n && kid->edge[k] == s[k])
            k++;
        if (k < kid->elen) {
            if (!create)
                return NULL;
            if ((*err = split_node(kid, k)) < 0)
                return NULL;
        }
        cur = kid;
        s += k;
        n -= k;
    }
    return cur;
}

/* The converter child of cur for spec, inserted in precedence order (after
 * its equals in rank: first registered is tried first among ties). */
static node *descend_conv(node *cur, const conv_spec *spec, bool create, int *err)
{
    unsigned at = 0;
    for (unsigned i = 0; i < cur->nconvs; i++) {
        if (spec_equal(&cur->convs[i]->conv, spec))
            return cur->convs[i];
        if (cur->convs[i]->conv.kind <= spec->kind)
            at = i + 1;
    }
    if (!create)
        return NULL;
    node *kid = calloc(1, sizeof *kid);
    node **convs = kid ? realloc(cur->convs, (cur->nconvs + 1) * sizeof *convs) : NULL;
    if (!convs) {
        free(kid);
        *err = -ENOMEM;
        return NULL;
    }
    cur->convs = convs;
    memmove(convs + at + 1, convs + at, (cur->nconvs - at) * sizeof *convs);
    kid->is_conv = true;
    kid->conv = *spec;
    convs[at] = kid;
    cur->nconvs++;
    return kid;
}

/* The node where rule's pattern ends (NULL: absent and !create, or *err). */
static node *rule_node(vial_router *r, const vial_router_rule *rule, bool create, int *err)
{
    node *cur = &r->root;
    for (unsigned i = 0; cur && i < rule->ntoks; i++) {
        const token *t = &rule->toks[i];
        cur = t->param < 0 ? descend_static(cur, t->text, t->len, create, err)
                           : descend_conv(cur, &rule->specs[t->param], create, err);
    }
    return cur;
}

static void node_free(node *nd)
{
    for (unsigned i = 0; i < nd->nkids; i++)
        node_free(nd->kids[i]);
    for (unsigned i = 0; i < nd->nconvs; i++)
        node_free(nd->convs[i]);
    free(nd->keys);
    free(nd->kids);
    free(nd->index);
    free(nd->convs);
    free(nd->edge);
    if (nd->edge || nd->is_conv) /* every node but the embedded root */
        free(nd);
}

vial_router *vial_router_new(void)
{
    vial_router *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    return r;
}

void vial_router_free(vial_router *r)
{
    if (!r)
        return;
    node_free(&r->root);
    for (vial_router_rule *rule = r->rules, *next; rule; rule = next) {
        next = rule->next_all;
        rule_free(rule);
    }
    for (user_conv *c = r->convs, *next; c; c = next) {
        next = c->next;
        free(c->name);
        free(c);
    }
    free(r);
}

/* Two rules ending at the same node (the same pattern up to parameter names)
 * that share a method would make one of them unreachable. */
static bool methods_clash(const node *nd, const vial_router_rule *rule)
{
    for (const vial_router_rule *o = nd ? nd->rules : NULL; o; o = o->next_here)
        for (char **m = rule->methods; *m; m++)
            if (rule_has_method(o, *m))
                return true;
    return false;
}

int vial_router_add(vial_router *r, const char *pattern, const char *const *methods, void *target,
                    vial_router_rule **out)
{
    if (out)
        *out = NULL;
    if (!r || !pattern)
        return -EINVAL;
    vial_router_rule *rule = calloc(1, sizeof *rule);
    if (!rule || !(rule->pattern = strdup(pattern))) {
        free(rule);
        return -ENOMEM;
    }
    rule->target = target;
    int rc = copy_methods(rule, methods);
    if (rc == 0)
        rc = parse_pattern(r, rule);
    if (rc == 0 && methods_clash(rule_node(r, rule, false, &rc), rule))
        rc = -EEXIST;
    node *end = rc == 0 ? rule_node(r, rule, true, &rc) : NULL;
    if (rc < 0 || !end) {
        rule_free(rule);
        return rc < 0 ? rc : -ENOMEM;
    }
    vial_router_rule **tail = &end->rules;
    while (*tail)
        tail = &(*tail)->next_here;
    *tail = rule;
    rule->next_all = r->rules;
    r->rules = rule;
    if (out)
        *out = rule;
    return 0;
}

const char *const *vial_router_rule_methods(const vial_router_rule *rule)
{
    return (const char *const *)rule->methods;
}

const char *vial_router_rule_pattern(const vial_router_rule *rule)
{
    return rule->pattern;
}

/* --- matching --------------------------------------------------------------------- */

enum walk_mode {
    WALK_MATCH, /* the first rule (precedence order) with the method */
    WALK_ANY,   /* whether any rule matches, whatever its methods */
    WALK_ALLOW, /* visit every matching rule, collecting methods */
};

/* Several <path:> converters in one pattern ("/<path:a>/x/<path:b>/y")
 * make a failing lookup try every split of the path: polynomial in its
 * segments, a denial of service with a long hostile path. A lookup gives up
 * (no match) after this many steps; real ones take a few dozen. */
#define MAX_STEPS 65536

typedef struct slot {
    size_t off, len;
    int64_t ival;
} slot;

/* One lookup. The path is s[0..n); with a virtual slash (the strict-slash
 * check) it is read as s[0..n) + "/" without copying: len is n + 1 and
 * byte n reads as '/'. */
typedef struct walk {
    const char *s;
    size_t n, len;
    enum walk_mode mode;
    const char *method;
    bool path_matched;        /* WALK_MATCH: some rule matched, method aside */
    vial_router_rule *found;  /* WALK_MATCH result */
    vial_arena *a;            /* WALK_ALLOW: list[0..nlist) of distinct methods */
    const char **list;
    unsigned nlist, cap;
    bool oom;
    unsigned steps;           /* walk_node calls so far, bounded by MAX_STEPS */
    unsigned np;              /* parameter slots in use */
    slot slots[VIAL_MAX_PARAMS]; /* last: walk_init leaves them alone */
} walk;

static bool allow_add(walk *w, const char *m)
{
    for (unsigned i = 0; i < w->nlist; i++)
        if (!strcmp(w->list[i], m))
            return true;
    if (w->nlist == w->cap) {
        unsigned cap = w->cap ? 2 * w->cap : 16;
        const char **l = vial_arena_grow(w->a, w->list, w->cap * sizeof *l, cap * sizeof *l);
        if (!l)
            return false;
        w->list = l;
        w->cap = cap;
    }
    w->list[w->nlist++] = m;
    return true;
}

/* The path is fully consumed at nd, which has rules. true stops the walk. */
static bool visit(walk *w, const node *nd)
{
    switch (w->mode) {
    case WALK_ANY:
        return true;
    case WALK_MATCH:
        for (vial_router_rule *rule = nd->rules; rule; rule = rule->next_here)
            if (rule_has_method(rule, w->method)) {
                w->found = rule;
                return true;
            }
        w->path_matched = true;
        return false; /* maybe a lower-precedence rule has the method */
    case WALK_ALLOW:
        for (vial_router_rule *rule = nd->rules; rule; rule = rule->next_here)
            for (char **m = rule->methods; *m; m++)
                if (!allow_add(w, *m))
                    return w->oom = true;
        return false;
    }
    return true;
}

/* Edges are short ("/", "api/v1/", "users/"): comparing inline, eight
 * bytes at a time, beats a call to memcmp. */
static inline bool bytes_equal(const char *a, const char *b, size_t n)
{
    for (; n >= 8; a += 8, b += 8, n -= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y)
            return false;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* Whether kid's edge continues the path at pos (< len). Its first byte has
 * been matched by find_kid, so one-byte edges (digits, '/') cost nothing. */
static inline bool edge_matches(const walk *w, size_t pos, const node *kid)
{
    size_t n = kid->elen;
    if (n == 1)
        return true;
    if (pos + n <= w->n)
        return bytes_equal(w->s + pos + 1, kid->edge + 1, n - 1);
    /* Only the virtual slash can lie past n: the edge must end with it. */
    return pos + n == w->len && kid->edge[n - 1] == '/' &&
           bytes_equal(w->s + pos + 1, kid->edge + 1, n - 2);
}

static bool walk_node(walk *w, const node *nd, size_t pos);

/* <path:> at pos: one or more bytes, the first not '/' (as Werkzeug), the
 * shortest that lets the rest of the pattern match. */
static bool walk_path(walk *w, const node *pn, size_t pos)
{
    if (w->s[pos] == '/')
        return false;
    slot *sl = &w->slots[w->np++];
    *sl = (slot){pos, 0, 0};
    if (pn->nkids) /* something follows the path: try each '/' as its end */
        for (size_t i = pos + 1; i < w->len; i++) {
            if (i < w->n && w->s[i] != '/')
                continue;
            sl->len = i - pos;
            if (walk_node(w, pn, i))
                return true;
        }
    sl->len = w->len - pos; /* the rest of the path (never read with a virtual slash) */
    if (walk_node(w, pn, w->len))
        return true;
    w->np--;
    return false;
}

/* The converter children of nd, on the segment starting at pos. */
static bool walk_convs(walk *w, const node *nd, size_t pos)
{
    if (pos >= w->n)
        return false; /* the virtual slash cannot start a value */
    const char *seg = w->s + pos;
    const char *slash = memchr(seg, '/', w->n - pos);
    size_t slen = slash ? (size_t)(slash - seg) : w->n - pos;
    for (unsigned i = 0; i < nd->nconvs; i++) {
        const node *c = nd->convs[i];
        if (c->conv.kind == CONV_PATH) {
            if (walk_path(w, c, pos))
                return true;
            continue;
        }
        int64_t ival = 0;
        if (!slen || !conv_accepts(&c->conv, seg, slen, &ival))
            continue;
        w->slots[w->np++] = (slot){pos, slen, ival};
        if (walk_node(w, c, pos + slen))
            return true;
        w->np--;
    }
    return false;
}

/* nd has been reached with the path consumed up to pos. Static-only
 * stretches of the tree are walked in a loop; recursion is needed only where
 * converter children leave something to backtrack to. */
static bool walk_node(walk *w, const node *nd, size_t pos)
{
    if (++w->steps > MAX_STEPS)
        return false;
    for (;;) {
        if (pos == w->len)
            return nd->rules && visit(w, nd);
        unsigned char c = pos < w->n ? (unsigned char)w->s[pos] : '/';
        const node *kid = find_kid(nd, c);
        if (kid && !edge_matches(w, pos, kid))
            kid = NULL;
        if (!nd->nconvs) {
            if (!kid)
                return false;
            nd = kid;
            pos += kid->elen;
            continue;
        }
        if (kid && walk_node(w, kid, pos + kid->elen))
            return true;
        return walk_convs(w, nd, pos);
    }
}

static void walk_init(walk *w, const char *path, size_t n, enum walk_mode mode, bool vslash)
{
    memset(w, 0, offsetof(walk, slots));
    w->s = path;
    w->n = n;
    w->len = w->n + vslash;
    w->mode = mode;
}

/* Copies the winning rule's values into the arena, in one allocation. */
static int fill_match(const vial_router *r, const walk *w, vial_arena *a, vial_match *m)
{
    const vial_router_rule *rule = w->found;
    m->target = rule->target;
    m->rule = w->found;
    m->nparams = rule->nparams < w->np ? rule->nparams : w->np;
    if (!m->nparams)
        return VIAL_MATCH_OK;
    size_t total = 0;
    for (unsigned i = 0; i < m->nparams; i++)
        total += w->slots[i].len + 1;
    char *buf = vial_arena_alloc(a, total);
    if (!buf) {
        m->nparams = 0;
        return -ENOMEM;
    }
    for (unsigned i = 0; i < m->nparams; i++) {
        const slot *sl = &w->slots[i];
        vial_param *p = &m->params[i];
        memcpy(buf, w->s + sl->off, sl->len);
        buf[sl->len] = 0;
        p->name = rule->names[i];
        p->value = buf;
        p->len = sl->len;
        p->ival = sl->ival;
        p->dval = rule->specs[i].kind == CONV_FLOAT ? vial_parse_double(buf, NULL) : 0; /* '.' in any locale */
        buf += sl->len + 1;
    }
    return VIAL_MATCH_OK;
}

int vial_router_match_n(vial_router *r, const char *path, size_t len, const char *method,
                        vial_arena *a, vial_match *m)
{
    m->target = NULL;
    m->rule = NULL;
    m->nparams = 0;
    if (!path || !len || path[0] != '/' || !method)
        return VIAL_MATCH_NONE;
    walk w;
    walk_init(&w, path, len, WALK_MATCH, false);
    w.method = method;
    if (walk_node(&w, &r->root, 0))
        return fill_match(r, &w, a, m);
    if (w.path_matched)
        return VIAL_MATCH_METHOD;
    walk_init(&w, path, len, WALK_ANY, true);
    return walk_node(&w, &r->root, 0) ? VIAL_MATCH_REDIRECT : VIAL_MATCH_NONE;
}

int vial_router_match(vial_router *r, const char *path, const char *method, vial_arena *a,
                      vial_match *m)
{
    return vial_router_match_n(r, path, path ? strlen(path) : 0, method, a, m);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

char *vial_router_allow(vial_router *r, const char *path, vial_arena *a)
{
    return vial_router_allow_n(r, path, path ? strlen(path) : 0, a);
}

char *vial_router_allow_n(vial_router *r, const char *path, size_t len, vial_arena *a)
{
    if (!path || !len || path[0] != '/')
        return NULL;
    walk w;
    walk_init(&w, path, len, WALK_ALLOW, false);
    w.a = a;
    walk_node(&w, &r->root, 0);
    if (w.oom || !w.nlist)
        return NULL;
    bool get = false;
    for (unsigned i = 0; i < w.nlist; i++)
        get |= !strcmp(w.list[i], "GET");
    if ((get && !allow_add(&w, "HEAD")) || !allow_add(&w, "OPTIONS"))
        return NULL;
    /* Sorted: a stable header whatever the registration order. */
    qsort(w.list, w.nlist, sizeof *w.list, cmp_str);
    size_t total = 1;
    for (unsigned i = 0; i < w.nlist; i++)
        total += strlen(w.list[i]) + 2;
    char *out = vial_arena_alloc(a, total), *o = out;
    if (!out)
        return NULL;
    for (unsigned i = 0; i < w.nlist; i++) {
        if (i) {
            *o++ = ',';
            *o++ = ' ';
        }
        size_t l = strlen(w.list[i]);
        memcpy(o, w.list[i], l);
        o += l;
    }
    *o = 0;
    return out;
}

/* --- building (url_for) ----------------------------------------------------------- */

/* Writes into p when it is not NULL, and counts either way: the same code
 * sizes the URL and then writes it. */
typedef struct out {
    char *p;
    size_t n;
} out;

static void put(out *o, char c)
{
    if (o->p)
        o->p[o->n] = c;
    o->n++;
}

static void put_n(out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(o, s[i]);
}

enum enc {
    ENC_SEGMENT, /* a path value that must stay one segment: '/' -> %2F */
    ENC_PATH,    /* static text and <path:> values: '/' kept */
    ENC_QUERY,   /* query keys and values: ' ' -> '+' */
};

/* Werkzeug's safe sets: path values are quoted with "!$&'()*+,/:;=@" kept
 * (the WHATWG path-segment set); query pairs go through urllib's urlencode
 * (quote_plus) with "!$'()*,/:;?@" kept. Unreserved characters always stay. */
static const char *const enc_safe[] = {
    [ENC_SEGMENT] = "!$&'()*+,:;=@",
    [ENC_PATH] = "!$&'()*+,/:;=@",
    [ENC_QUERY] = "!$'()*,/:;?@",
};

static void put_encoded(out *o, const char *s, size_t n, enum enc e)
{
    o->n += vial_pct_encode(o->p ? o->p + o->n : NULL, s, n, enc_safe[e],
                            e == ENC_QUERY ? VIAL_PCT_PLUS : 0);
}

/* Whether v is an acceptable value for spec (what matching would accept,
 * plus a plain integer for <float:>, written back as "N.0"). */
static bool value_ok(const conv_spec *spec, const char *v)
{
    size_t n = strlen(v);
    int64_t iv;
    switch (spec->kind) {
    case CONV_INT:
        return parse_uint63(v, n, &iv) && iv >= spec->min && iv <= spec->max;
    case CONV_FLOAT:
        return is_float(v, n) || (n && strspn(v, "0123456789") == n);
    case CONV_UUID:
        return is_uuid(v, n);
    case CONV_USER:
        return n && !strchr(v, '/') && spec->user->match(v, n, spec->user->arg);
    case CONV_STRING:
        return n > 0;
    case CONV_PATH:
        return n && v[0] != '/';
    }
    return false;
}

/* A value in its canonical form, as Werkzeug's to_url writes it: ints
 * without leading zeros, floats with a fraction, uuids in lower case. */
static void put_value(out *o, const conv_spec *spec, const char *v)
{
    size_t n = strlen(v);
    switch (spec->kind) {
    case CONV_INT:
        while (n > 1 && *v == '0')
            v++, n--;
        put_n(o, v, n);
        break;
    case CONV_FLOAT:
        put_n(o, v, n);
        if (!strchr(v, '.'))
            put_n(o, ".0", 2);
        break;
    case CONV_UUID:
        for (size_t i = 0; i < n; i++)
            put(o, (v[i] >= 'A' && v[i] <= 'F') ? (char)(v[i] - 'A' + 'a') : v[i]);
        break;
    case CONV_PATH:
        put_encoded(o, v, n, ENC_PATH);
        break;
    case CONV_STRING:
    case CONV_USER:
        put_encoded(o, v, n, ENC_SEGMENT);
        break;
    }
}

static int param_index(const vial_router_rule *rule, const char *key)
{
    for (unsigned i = 0; i < rule->nparams; i++)
        if (!strcmp(rule->names[i], key))
            return (int)i;
    return -1;
}

/* The path, then "?k=v&..." for the pairs that are not parameters (pairs
 * with a NULL value are skipped, as Werkzeug skips None). */
static void put_url(out *o, const vial_router_rule *rule, const char *const *vals,
                    const char *const *kv, size_t n)
{
    for (unsigned i = 0; i < rule->ntoks; i++) {
        const token *t = &rule->toks[i];
        if (t->param < 0)
            put_encoded(o, t->text, t->len, ENC_PATH);
        else
            put_value(o, &rule->specs[t->param], vals[t->param]);
    }
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[2 * i], *v = kv[2 * i + 1];
        if (!v || param_index(rule, k) >= 0)
            continue;
        put(o, first ? '?' : '&');
        first = false;
        put_encoded(o, k, strlen(k), ENC_QUERY);
        put(o, '=');
        put_encoded(o, v, strlen(v), ENC_QUERY);
    }
}

char *vial_router_build(const vial_router_rule *rule, const char *const *kv, size_t n, vial_arena *a)
{
    if (!rule || (n && !kv))
        return NULL;
    const char *vals[VIAL_MAX_PARAMS] = {0};
    for (size_t i = 0; i < n; i++) {
        if (!kv[2 * i])
            return NULL;
        int p = param_index(rule, kv[2 * i]);
        if (p >= 0 && !vals[p])
            vals[p] = kv[2 * i + 1];
    }
    for (unsigned i = 0; i < rule->nparams; i++)
        if (!vals[i] || !value_ok(&rule->specs[i], vals[i]))
            return NULL;
    out o = {NULL, 0};
    put_url(&o, rule, vals, kv, n);
    char *s = vial_arena_alloc(a, o.n + 1);
    if (!s)
        return NULL;
    o = (out){s, 0};
    put_url(&o, rule, vals, kv, n);
    s[o.n] = 0;
    return s;
}
