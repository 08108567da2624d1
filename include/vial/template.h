/* vial — templates with Jinja2's syntax and semantics (the subset Flask
 * applications use), compiled once and rendered straight into a buffer.
 *
 *   vial_tmpl_env *env = vial_tmpl_env_new("templates");
 *   vial_tmpl_error err;
 *   vial_tmpl *t;
 *   if (vial_tmpl_load(env, "page.html", &t, &err) != 0)      // at startup
 *       fprintf(stderr, "%s:%d: %s\n", err.name, err.line, err.message);
 *
 *   struct vial_arena *a = vial_tmpl_arena_new();               // per render
 *   vial_tmpl_value ctx = vial_tmpl_dict(a);
 *   vial_tmpl_set(a, ctx, "title", vial_tmpl_cstr("Hello"));
 *   vial_tmpl_out out = {0};                                   // realloc'd
 *   if (vial_tmpl_render(t, ctx, a, &out, &err) == 0)
 *       fwrite(out.data, 1, out.len, stdout);
 *   free(out.data);
 *   vial_tmpl_arena_free(a);
 *
 * Memory: a template and everything compiled from it live as long as the
 * environment. A render allocates its values from the arena it is given (the
 * request's arena in an application) and writes into the caller's buffer;
 * nothing else is allocated. Values built with vial_tmpl_* builders borrow
 * the strings they are given: keep them alive until the render returns.
 *
 * Threads: an environment may be shared by threads once its templates are
 * loaded; loading (also the lazy loads of include/import/extends) takes the
 * environment's lock. Renders share nothing but the compiled templates.
 *
 * Return values: 0, or a negative errno-style code:
 *   -ENOENT   no such template;  -EINVAL  a syntax error (see the error);
 *   -ERANGE   a render-time error (undefined attribute, division by zero,
 *             recursion too deep...);  -ENOMEM  out of memory.
 */
#ifndef VIAL_TEMPLATE_H
#define VIAL_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The public API is exported from libvial.so; everything else is hidden. */
#pragma GCC visibility push(default)

struct vial_arena;
typedef struct vial_tmpl_env vial_tmpl_env;
typedef struct vial_tmpl vial_tmpl;

/* The kinds of value a template sees. Strings are UTF-8 with a length; a
 * string with VIAL_TMPL_SAFE set is Markup: it is never escaped again. */
typedef enum {
    VIAL_TMPL_UNDEFINED = 0, /* a missing name: renders empty, falsy */
    VIAL_TMPL_NONE,
    VIAL_TMPL_BOOL,
    VIAL_TMPL_INT,
    VIAL_TMPL_FLOAT,
    VIAL_TMPL_STRING,
    VIAL_TMPL_LIST,
    VIAL_TMPL_DICT, /* keeps insertion order */
    VIAL_TMPL_FUNCTION,
    VIAL_TMPL_BIGINT, /* an integer beyond int64, kept as its decimal digits */
    VIAL_TMPL_OBJECT, /* attributes computed on demand (vial_tmpl_object) */
    VIAL_TMPL_KIND_PUBLIC_END
} vial_tmpl_kind;

#define VIAL_TMPL_SAFE 1u  /* string flag: Markup */
#define VIAL_TMPL_TUPLE 2u /* list flag: prints as (a, b) */

/* A value is small and passed by value; lists and dicts point into an arena. */
typedef struct vial_tmpl_value {
    uint8_t kind; /* vial_tmpl_kind (internal kinds follow the public ones) */
    uint8_t flags;
    uint32_t len; /* string bytes */
    union {
        int64_t i; /* BOOL, INT */
        double d;  /* FLOAT */
        const char *s;
        void *p;
    } u;
} vial_tmpl_value;

/* --- values ---------------------------------------------------------------- */

/* Scalars (no allocation; strings are borrowed). */
vial_tmpl_value vial_tmpl_undefined(void);
vial_tmpl_value vial_tmpl_none(void);
vial_tmpl_value vial_tmpl_bool(int b);
vial_tmpl_value vial_tmpl_int(int64_t i);
vial_tmpl_value vial_tmpl_float(double d);
vial_tmpl_value vial_tmpl_str(const char *s, size_t len);
vial_tmpl_value vial_tmpl_cstr(const char *s);
/* Markup: a string that is already HTML (never escaped again). */
vial_tmpl_value vial_tmpl_safe(const char *s, size_t len);

/* Memory from arena a for values a C function builds (freed with the
 * arena); NULL when out of memory. vial_tmpl_strdup copies len bytes into
 * the arena (UNDEFINED when out of memory). */
void *vial_tmpl_alloc(struct vial_arena *a, size_t size);
vial_tmpl_value vial_tmpl_strdup(struct vial_arena *a, const char *s, size_t len);

/* An empty list or dict in arena a; the invalid (UNDEFINED) value when out
 * of memory. */
vial_tmpl_value vial_tmpl_list(struct vial_arena *a);
vial_tmpl_value vial_tmpl_dict(struct vial_arena *a);
/* Appends v to a list. 0, -EINVAL (not a list) or -ENOMEM. */
int vial_tmpl_push(struct vial_arena *a, vial_tmpl_value list, vial_tmpl_value v);
/* Sets dict[key] = v (replacing an existing key in place). The key is
 * borrowed. 0, -EINVAL (not a dict) or -ENOMEM. */
int vial_tmpl_set(struct vial_arena *a, vial_tmpl_value dict, const char *key, vial_tmpl_value v);
int vial_tmpl_setn(struct vial_arena *a, vial_tmpl_value dict, const char *key, size_t klen,
                   vial_tmpl_value v);
/* Reading: the item count of a list/dict (0 otherwise), an item by
 * position, a dict's value by key (UNDEFINED when missing). */
size_t vial_tmpl_len(vial_tmpl_value v);
vial_tmpl_value vial_tmpl_at(vial_tmpl_value list, size_t i);
vial_tmpl_value vial_tmpl_get(vial_tmpl_value dict, const char *key);

/* A C function callable from templates: {{ price(3, currency="EUR") }}.
 * args: positional arguments; kwnames/kwargs: nkw keyword arguments. It
 * stores its result in *ret (allocating from a if it needs memory) and
 * returns 0, or a negative code; msg (may be left alone) then names the
 * problem in the render error. */
typedef struct vial_tmpl_call {
    struct vial_arena *arena;
    void *data; /* the pointer given to vial_tmpl_function */
    size_t nargs;
    const vial_tmpl_value *args;
    size_t nkw;
    const vial_tmpl_value *kwnames; /* strings */
    const vial_tmpl_value *kwargs;
    const char *msg; /* out: an error message (static or in the arena) */
} vial_tmpl_call;
typedef int (*vial_tmpl_fn)(vial_tmpl_call *call, vial_tmpl_value *ret);

/* A function value (in a; UNDEFINED when out of memory). */
vial_tmpl_value vial_tmpl_function(struct vial_arena *a, const char *name, vial_tmpl_fn fn,
                                   void *data);

/* An object whose attributes a C function computes when a template reads
 * them ({{ request.path }}, {{ session['user'] }}): nothing is built until
 * a template asks. attr stores the attribute name[0..len) in *out
 * (UNDEFINED when there is none), allocating from a if it needs memory, and
 * returns 0 or a negative code (a render error). Subscripts with a string
 * key read the same attributes; `key in obj` is true when the attribute is
 * defined. The object is truthy and prints as <name>. It lives in a (NULL:
 * malloc'd for good, for globals). UNDEFINED when out of memory. */
typedef int (*vial_tmpl_attr_fn)(void *data, const char *name, size_t len, struct vial_arena *a,
                                 vial_tmpl_value *out);
vial_tmpl_value vial_tmpl_object(struct vial_arena *a, const char *name, vial_tmpl_attr_fn attr,
                                 void *data);

/* A standalone arena (malloc'd blocks) for programs outside a request;
 * an application passes its request's arena instead. */
struct vial_arena *vial_tmpl_arena_new(void);
void vial_tmpl_arena_free(struct vial_arena *a);

/* --- environment and templates ---------------------------------------------- */

/* A loader returns a template's source for a name: *src malloc'd (freed by
 * the environment), 0 or -ENOENT. The default loader reads dir/name
 * (names with a ".." component or a leading '/' are refused). */
typedef int (*vial_tmpl_loader)(void *data, const char *name, char **src, size_t *len);

/* An environment over a template directory (copied; NULL: none yet, see
 * vial_tmpl_env_add_dir, the loader, vial_tmpl_add_source). NULL when out
 * of memory. Autoescaping is on for
 * names ending in .html, .htm and .xml (Flask's rule), off otherwise. */
vial_tmpl_env *vial_tmpl_env_new(const char *dir);
void vial_tmpl_env_free(vial_tmpl_env *env);
/* Appends a directory to the search path (the first that has a name wins;
 * Flask: the app's templates/, then each blueprint's). 0 or -ENOMEM. */
int vial_tmpl_env_add_dir(vial_tmpl_env *env, const char *dir);
/* Development mode: each load (also of extended/included templates at
 * render time) checks the file's modification time and compiles it again
 * when it changed. Old versions are kept until vial_tmpl_env_free. */
void vial_tmpl_env_auto_reload(vial_tmpl_env *env, int on);
/* With auto reload, look at a template's file at most once every ms
 * milliseconds (default 0: at every load); a server sets 1000 so a page
 * that includes ten templates does not stat ten files per render. */
void vial_tmpl_env_reload_interval(vial_tmpl_env *env, unsigned ms);
/* The C stack a render may use (default 64 KiB, half a vial coroutine's
 * stack): deeper recursion (macros, includes, nested expressions) is a
 * render error, not a crash. Raise it for renders on big stacks. */
void vial_tmpl_env_stack_limit(vial_tmpl_env *env, size_t bytes);
/* Replaces the default file loader. */
void vial_tmpl_env_loader(vial_tmpl_env *env, vial_tmpl_loader fn, void *data);

/* A global visible to every template of env (under the render's context):
 * a value whose strings/lists live as long as env (e.g. static strings, or
 * a function made with a NULL arena: vial_tmpl_global_fn). */
int vial_tmpl_global(vial_tmpl_env *env, const char *name, vial_tmpl_value v);
int vial_tmpl_global_fn(vial_tmpl_env *env, const char *name, vial_tmpl_fn fn, void *data);

/* Where a template failed: its name, line (1-based; 0 if unknown) and a
 * message, copied into the struct. */
typedef struct vial_tmpl_error {
    char name[128];
    int line;
    char message[256];
} vial_tmpl_error;

/* Compiles name (once; later calls return the cached template). A syntax
 * error fills err and returns -EINVAL; a missing template -ENOENT. err may
 * be NULL. Templates it extends/includes/imports load at render time, or
 * earlier with vial_tmpl_load of their names. */
int vial_tmpl_load(vial_tmpl_env *env, const char *name, vial_tmpl **out, vial_tmpl_error *err);
/* Compiles every file under the environment's directories (hidden files
 * skipped; the first directory wins for a name), so a bad template stops
 * the start rather than a request. The number of files compiled (or found
 * compiled), or the first error (-EINVAL: err names the template and line). */
int vial_tmpl_env_load_all(vial_tmpl_env *env, vial_tmpl_error *err);
/* Compiles source text under name (replacing nothing: -EEXIST when loaded). */
int vial_tmpl_add_source(vial_tmpl_env *env, const char *name, const char *src, size_t len,
                         vial_tmpl **out, vial_tmpl_error *err);
/* The name a template was loaded under (owned by the environment). */
const char *vial_tmpl_name(const vial_tmpl *t);

/* The output buffer: data[0..len) is the text so far. grow makes room for
 * at least need bytes in total (cap >= need) and returns 0, or -ENOMEM; a
 * NULL grow means realloc (the caller frees data). */
typedef struct vial_tmpl_out {
    char *data;
    size_t len, cap;
    int (*grow)(struct vial_tmpl_out *o, size_t need);
    void *user;
} vial_tmpl_out;

/* Renders t with ctx (a dict, or UNDEFINED for none) into out, appending.
 * Values allocate from a (required). On error, out holds the partial text
 * and err says what and where. */
int vial_tmpl_render(vial_tmpl *t, vial_tmpl_value ctx, struct vial_arena *a, vial_tmpl_out *out,
                     vial_tmpl_error *err);

/* HTML-escapes s (& < > " ' as Markup does) and appends it to out. */
int vial_tmpl_escape(vial_tmpl_out *out, const char *s, size_t len);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
