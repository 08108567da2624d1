/* The template engine's values: the public vial_tmpl_value plus the kinds
 * only the engine makes (macros, bound methods, the loop object...), and the
 * Python-compatible operations on them (truth, equality, ordering, str(),
 * repr(), number formatting, HTML escaping). */
#ifndef VIAL_TEMPLATE_VALUE_H
#define VIAL_TEMPLATE_VALUE_H

#include "runtime/arena.h"
#include <vial/template.h>

#include <stdbool.h>

typedef vial_tmpl_value tv;

enum {
    TV_UNDEF = VIAL_TMPL_UNDEFINED,
    TV_NONE = VIAL_TMPL_NONE,
    TV_BOOL = VIAL_TMPL_BOOL,
    TV_INT = VIAL_TMPL_INT,
    TV_FLOAT = VIAL_TMPL_FLOAT,
    TV_STR = VIAL_TMPL_STRING,
    TV_LIST = VIAL_TMPL_LIST,
    TV_DICT = VIAL_TMPL_DICT,
    TV_FUNC = VIAL_TMPL_FUNCTION,
    TV_BIGINT = VIAL_TMPL_BIGINT,
    TV_OBJECT = VIAL_TMPL_OBJECT, /* u.p: struct tobject */
    TV_MACRO = VIAL_TMPL_KIND_PUBLIC_END, /* u.p: struct tmacro */
    TV_METHOD,  /* u.p: struct tmethod (a builtin bound to its receiver) */
    TV_LOOP,    /* u.p: struct tloop */
    TV_SELF,    /* u.p: the template context (self.block()) */
    TV_BLOCKFN, /* u.p: struct tblockref (self.name / super) */
    TV_MODULE,  /* u.p: struct tdict of an imported template's exports */
};

/* more list flags (beside VIAL_TMPL_TUPLE): a groupby group (.grouper,
 * .list), dict views (printed as dict_items([...]) ...) */
#define TV_GROUP 8u
#define TV_VIEW_ITEMS 16u
#define TV_VIEW_KEYS 32u
#define TV_VIEW_VALUES 64u
#define TV_NAMESPACE 128u /* dict flag: namespace(), takes {% set ns.x = %} */

typedef struct tlist {
    uint32_t n, cap;
    tv *v;
} tlist;

typedef struct tdict {
    uint32_t n, cap;
    tv *k, *v;
} tdict;

typedef struct tfunc {
    vial_tmpl_fn fn;
    void *data;
    const char *name;
} tfunc;

typedef struct tobject {
    vial_tmpl_attr_fn attr;
    void *data;
    const char *name;
} tobject;

#define TV(k) ((tv){.kind = (k)})
static inline tv tv_int(int64_t i) { return (tv){.kind = TV_INT, .u.i = i}; }
static inline tv tv_bool(bool b) { return (tv){.kind = TV_BOOL, .u.i = b}; }
static inline tv tv_float(double d) { return (tv){.kind = TV_FLOAT, .u.d = d}; }
static inline tv tv_str(const char *s, size_t n) { return (tv){.kind = TV_STR, .len = (uint32_t)n, .u.s = s}; }
static inline tv tv_safe(const char *s, size_t n) { return (tv){.kind = TV_STR, .flags = VIAL_TMPL_SAFE, .len = (uint32_t)n, .u.s = s}; }
static inline bool tv_is_safe(tv v) { return v.kind == TV_STR && (v.flags & VIAL_TMPL_SAFE); }
static inline tlist *tv_list(tv v) { return (tlist *)v.u.p; }
static inline tdict *tv_dict(tv v) { return (tdict *)v.u.p; }
static inline bool tv_is_num(tv v) { return v.kind == TV_INT || v.kind == TV_FLOAT || v.kind == TV_BOOL || v.kind == TV_BIGINT; }

/* A growable byte string in an arena (or through a vial_tmpl_out). */
typedef struct sbuf {
    vial_tmpl_out *o; /* the caller's buffer, or &own */
    vial_tmpl_out own;
    vial_arena *a;
} sbuf;
void sb_init(sbuf *b, vial_arena *a);
int sb_put(vial_tmpl_out *o, const char *s, size_t n);
int sb_putc(vial_tmpl_out *o, char c);
int sb_esc(vial_tmpl_out *o, const char *s, size_t n); /* HTML-escaped */
int sb_printf(vial_tmpl_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int out_reserve(vial_tmpl_out *o, size_t need);

tv tv_list_new(vial_arena *a, uint32_t cap);
int tv_list_push(vial_arena *a, tv list, tv v);
tv tv_dict_new(vial_arena *a, uint32_t cap);
int tv_dict_put(vial_arena *a, tv dict, tv k, tv v);
bool tv_dict_find(tv dict, tv key, tv *out);
bool tv_dict_findn(tv dict, const char *k, size_t n, tv *out);

bool tv_truth(tv v);
bool tv_eq(tv a, tv b);
/* -2 when incomparable (TypeError), else -1/0/1 */
int tv_cmp(tv a, tv b);
double tv_num(tv v);
/* str(v) / repr(v) appended to o. */
int tv_write_str(vial_tmpl_out *o, tv v);
int tv_write_repr(vial_tmpl_out *o, tv v);
int fmt_float(char *buf, double d); /* Python repr of a float; returns length */
/* str(v) as a string value (borrowed for strings, else in a). */
tv tv_to_str(vial_arena *a, tv v);
const char *tv_type_name(tv v);
/* Python-style int(): 0 on success */
int tv_to_int(tv v, int64_t *out);

#endif
