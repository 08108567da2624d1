/* render_template for vial: the app's template environment (folders,
 * globals, debug reload), the per-name cache that keeps a render lock-free,
 * and the render itself, straight into the response body. The globals Flask
 * gives templates (request, session, g, url_for...) are in template_glue.c. */
#include "app/app.h"
#include "app/render.h"
#include "app/session.h"
#include "runtime/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One compiled template by name. Entries are immutable once published, so
 * readers walk a bucket without a lock. */
typedef struct cache_ent {
    struct cache_ent *next;
    vial_tmpl *t;
    const char *content_type;
    size_t size_hint; /* the last render's length: the body is reserved once */
    size_t len;
    char name[];
} cache_ent;

#define NBUCKETS 64

struct vial_render_state {
    vial_tmpl_env *env;
    char *app_dir;      /* NULL: "templates" */
    char **bp_dirs;
    size_t nbp;
    int auto_reload;
    int frozen;         /* the search path is fixed (first render or vial_run) */
    pthread_mutex_t lock; /* cache inserts, freezing */
    cache_ent *buckets[NBUCKETS];
};

/* Creating the state on first use races only under the test client, where
 * sync views of several clients may render at once. */
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static struct vial_render_state *state_of(vial_app *app)
{
    struct vial_render_state *st = __atomic_load_n(&app->render, __ATOMIC_ACQUIRE);
    if (st)
        return st;
    pthread_mutex_lock(&create_lock);
    st = app->render;
    if (!st && (st = calloc(1, sizeof *st))) {
        st->env = vial_tmpl_env_new(NULL);
        if (!st->env || vial_render_globals(st->env) != 0) {
            vial_tmpl_env_free(st->env);
            free(st);
            st = NULL;
        } else {
            pthread_mutex_init(&st->lock, NULL);
            __atomic_store_n(&app->render, st, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&create_lock);
    return st;
}

/* Fixes the search path once: the app's folder first, then the blueprints'
 * in registration order, whenever each was set. */
static int freeze(struct vial_render_state *st)
{
    if (__atomic_load_n(&st->frozen, __ATOMIC_ACQUIRE))
        return 0;
    int r = 0;
    pthread_mutex_lock(&st->lock);
    if (!st->frozen) {
        r = vial_tmpl_env_add_dir(st->env, st->app_dir ? st->app_dir : "templates");
        for (size_t i = 0; r == 0 && i < st->nbp; i++)
            r = vial_tmpl_env_add_dir(st->env, st->bp_dirs[i]);
        vial_tmpl_env_auto_reload(st->env, st->auto_reload);
        vial_tmpl_env_reload_interval(st->env, 1000);
        if (r == 0)
            __atomic_store_n(&st->frozen, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&st->lock);
    return r;
}

void vial_render_free(vial_app *app)
{
    struct vial_render_state *st = app->render;
    if (!st)
        return;
    for (int i = 0; i < NBUCKETS; i++)
        for (cache_ent *e = st->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    vial_tmpl_env_free(st->env);
    free(st->app_dir);
    for (size_t i = 0; i < st->nbp; i++)
        free(st->bp_dirs[i]);
    free(st->bp_dirs);
    pthread_mutex_destroy(&st->lock);
    free(st);
    app->render = NULL;
}

/* --- setup ------------------------------------------------------------------------- */

/* The state for a registration: refused once running or frozen. */
static int setup_state(vial_app *app, struct vial_render_state **out)
{
    int r = vial_app_setup_check(app);
    if (r)
        return r;
    struct vial_render_state *st = state_of(app);
    if (!st)
        return -ENOMEM;
    *out = st;
    return 0;
}

int vial_app_set_template_folder(vial_app *app, const char *dir)
{
    struct vial_render_state *st;
    int r = dir ? setup_state(app, &st) : -EINVAL;
    if (r)
        return r;
    if (__atomic_load_n(&st->frozen, __ATOMIC_ACQUIRE))
        return -EBUSY;
    char *d = strdup(dir);
    if (!d)
        return -ENOMEM;
    free(st->app_dir);
    st->app_dir = d;
    return 0;
}

int vial_bp_set_template_folder(vial_bp *bp, const char *dir)
{
    struct vial_render_state *st;
    int r = bp && dir ? setup_state(bp->app, &st) : -EINVAL;
    if (r)
        return r;
    if (__atomic_load_n(&st->frozen, __ATOMIC_ACQUIRE))
        return -EBUSY;
    char *d = strdup(dir);
    char **nd = d ? realloc(st->bp_dirs, (st->nbp + 1) * sizeof *nd) : NULL;
    if (!nd) {
        free(d);
        return -ENOMEM;
    }
    nd[st->nbp++] = d;
    st->bp_dirs = nd;
    return 0;
}

int vial_app_set_templates_auto_reload(vial_app *app, int on)
{
    struct vial_render_state *st;
    int r = setup_state(app, &st);
    if (r)
        return r;
    if (__atomic_load_n(&st->frozen, __ATOMIC_ACQUIRE))
        return -EBUSY;
    st->auto_reload = on != 0;
    return 0;
}

int vial_template_global(vial_app *app, const char *name, vial_tmpl_value value)
{
    struct vial_render_state *st;
    int r = name && *name ? setup_state(app, &st) : -EINVAL;
    return r ? r : vial_tmpl_global(st->env, name, value);
}

int vial_template_function(vial_app *app, const char *name, vial_tmpl_fn fn, void *data)
{
    struct vial_render_state *st;
    int r = name && *name && fn ? setup_state(app, &st) : -EINVAL;
    return r ? r : vial_tmpl_global_fn(st->env, name, fn, data);
}

static int log_load_error(int r, const vial_tmpl_error *err)
{
    if (r == -EINVAL) {
        vial_log(VIAL_LOG_ERROR, "%s:%d: %s", err->name, err->line, err->message);
        return VIAL_ETMPL_SYNTAX;
    }
    vial_log(VIAL_LOG_ERROR, "loading templates: %s", vial_strerror(r));
    return r;
}

int vial_app_load_templates(vial_app *app)
{
    if (!app)
        return -EINVAL;
    struct vial_render_state *st = state_of(app);
    if (!st || freeze(st) != 0)
        return -ENOMEM;
    vial_tmpl_error err;
    memset(&err, 0, sizeof err);
    int r = vial_tmpl_env_load_all(st->env, &err);
    return r < 0 ? log_load_error(r, &err) : r;
}

int vial_render_start(vial_app *app, int debug)
{
    if (!app->render) {
        /* Nothing registered: only an existing ./templates makes it worth it. */
        struct stat sb;
        if (!debug && (stat("templates", &sb) != 0 || !S_ISDIR(sb.st_mode)))
            return 0;
    }
    struct vial_render_state *st = state_of(app);
    if (!st)
        return -ENOMEM;
    if (debug && !__atomic_load_n(&st->frozen, __ATOMIC_ACQUIRE))
        st->auto_reload = 1;
    int r = vial_app_load_templates(app);
    return r < 0 ? r : 0;
}

/* --- lookup ------------------------------------------------------------------------ */

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* "text/html; charset=utf-8" for .html; text/plain for what vial_static
 * would call octet-stream (a template is text). */
static const char *type_of(const char *name)
{
    const char *t = vial_static_type_for(name);
    return strcmp(t, "application/octet-stream") ? t : "text/plain; charset=utf-8";
}

/* The compiled template for name (from the cache, else loaded and cached).
 * With auto reload every render asks the environment, which looks at the
 * file once a second. */
static int find_template(struct vial_render_state *st, const char *name, cache_ent **out,
                         vial_tmpl **t, vial_tmpl_error *err)
{
    size_t n = strlen(name);
    *out = NULL;
    if (st->auto_reload)
        return vial_tmpl_load(st->env, name, t, err);
    cache_ent **b = &st->buckets[name_hash(name, n) % NBUCKETS];
    for (cache_ent *e = __atomic_load_n(b, __ATOMIC_ACQUIRE); e; e = e->next)
        if (e->len == n && !memcmp(e->name, name, n)) {
            *out = e;
            *t = e->t;
            return 0;
        }
    int r = vial_tmpl_load(st->env, name, t, err);
    if (r)
        return r;
    cache_ent *e = malloc(sizeof *e + n + 1);
    if (!e)
        return 0; /* rendered uncached */
    e->t = *t;
    e->content_type = type_of(name);
    e->size_hint = 0;
    e->len = n;
    memcpy(e->name, name, n + 1);
    pthread_mutex_lock(&st->lock);
    for (cache_ent *o = *b; o; o = o->next)
        if (o->len == n && !memcmp(o->name, name, n)) {
            pthread_mutex_unlock(&st->lock);
            free(e); /* another thread cached it meanwhile */
            *out = o;
            return 0;
        }
    e->next = *b;
    __atomic_store_n(b, e, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&st->lock);
    *out = e;
    return 0;
}

/* --- rendering --------------------------------------------------------------------- */

/* The response body as the engine's output buffer: grown in the request's
 * arena, as vial_res_append_body grows it. */
static int body_grow(vial_tmpl_out *o, size_t need)
{
    vial_res *rs = o->user;
    size_t cap = o->cap ? o->cap * 2 : 1024;
    while (cap < need)
        cap *= 2;
    char *nb = vial_arena_grow(&rs->rq->arena, o->cap ? o->data : NULL, o->cap ? o->len : 0, cap);
    if (!nb)
        return -ENOMEM;
    if (!o->cap && o->len)
        memcpy(nb, o->data, o->len); /* a static body before */
    o->data = nb;
    o->cap = cap;
    return 0;
}

static int fail_with(vial_res *rs, int code, const vial_tmpl_error *err)
{
    char *m = err->line > 0 ? vial_sprintf(rs->rq, "%s:%d: %s", err->name, err->line, err->message)
                            : vial_sprintf(rs->rq, "%s: %s", err->name, err->message);
    vial_fail(rs, m ? m : "template error");
    return code;
}

static int render_into(vial_res *rs, vial_tmpl *t, cache_ent *e, const char *ctype, vial_tmpl_value ctx)
{
    vial_req *rq = rs->rq;
    vial_res_drop_file(rs);
    vial_tmpl_out out = {.data = rs->body, .len = 0, .cap = rs->body_cap, .grow = body_grow, .user = rs};
    if (!out.cap)
        out.data = NULL;
    size_t hint = e ? __atomic_load_n(&e->size_hint, __ATOMIC_RELAXED) : 0;
    if (hint > out.cap && body_grow(&out, hint + hint / 4) != 0)
        return -ENOMEM;
    vial_tmpl_error err;
    vial_req *saved = vial_render_current;
    vial_render_current = rq;
    int r = vial_tmpl_render(t, ctx, &rq->arena, &out, &err);
    vial_render_current = saved;
    rs->body = out.data;
    rs->body_cap = out.cap;
    if (r != 0) {
        rs->body_len = 0;
        if (r == -ENOMEM)
            return vial_fail(rs, "out of memory"), -ENOMEM;
        return fail_with(rs, r == -EINVAL ? VIAL_ETMPL_SYNTAX
                                          : r == -ENOENT ? VIAL_ETMPL_NOTFOUND : VIAL_ETMPL_RENDER,
                         &err);
    }
    if (!rs->body)
        rs->body = "";
    rs->body_len = out.len;
    if (e && out.len != hint)
        __atomic_store_n(&e->size_hint, out.len, __ATOMIC_RELAXED);
    rs->content_type = ctype;
    /* The status stays: 200 for a view, the error's in an error handler. */
    vial_rqs(rq)->built = 1;
    return 0;
}

static int load_failed(vial_res *rs, int r, const vial_tmpl_error *err)
{
    if (r == -ENOENT)
        return fail_with(rs, VIAL_ETMPL_NOTFOUND, err);
    if (r == -EINVAL)
        return fail_with(rs, VIAL_ETMPL_SYNTAX, err);
    vial_fail(rs, vial_strerror(r));
    return r;
}

/* The app's template state, ready to render (search path fixed); NULL when
 * out of memory (after vial_fail). */
static struct vial_render_state *render_state(vial_req *rq, vial_res *rs)
{
    struct vial_render_state *st = vial_rqs(rq)->app ? state_of(vial_rqs(rq)->app) : NULL;
    if (!st || freeze(st) != 0) {
        vial_fail(rs, "out of memory");
        return NULL;
    }
    return st;
}

int vial_render(vial_req *rq, vial_res *rs, const char *name, vial_tmpl_value ctx)
{
    if (!rq || !rs || !name)
        return -EINVAL;
    struct vial_render_state *st = render_state(rq, rs);
    if (!st)
        return -ENOMEM;
    vial_tmpl_error err;
    vial_tmpl *t;
    cache_ent *e;
    int r = find_template(st, name, &e, &t, &err);
    if (r)
        return load_failed(rs, r, &err);
    return render_into(rs, t, e, e ? e->content_type : type_of(name), ctx);
}

int vial_render_string(vial_req *rq, vial_res *rs, const char *source, vial_tmpl_value ctx)
{
    if (!rq || !rs || !source)
        return -EINVAL;
    struct vial_render_state *st = render_state(rq, rs);
    if (!st)
        return -ENOMEM;
    /* Named by the source's length and two 32-bit hashes of it (".html":
     * autoescaped, as Flask's render_template_string is). */
    size_t n = strlen(source);
    uint32_t h2 = 5381;
    for (size_t i = 0; i < n; i++)
        h2 = h2 * 33 + (unsigned char)source[i];
    char name[64];
    snprintf(name, sizeof name, "<string %zx %08x%08x>.html", n, name_hash(source, n), h2);
    vial_tmpl_error err;
    vial_tmpl *t;
    cache_ent *e;
    int r = find_template(st, name, &e, &t, &err);
    if (r == -ENOENT) {
        r = vial_tmpl_add_source(st->env, name, source, n, &t, &err);
        if (r == -EEXIST)
            r = 0; /* another thread compiled it */
        if (r == 0)
            r = find_template(st, name, &e, &t, &err);
    }
    if (r) {
        if (r == -EINVAL)
            snprintf(err.name, sizeof err.name, "<string>");
        return load_failed(rs, r, &err);
    }
    return render_into(rs, t, e, "text/html; charset=utf-8", ctx);
}

vial_tmpl_value vial_render_ctx(vial_req *rq)
{
    return vial_tmpl_dict(&rq->arena);
}

struct vial_arena *vial_req_arena(vial_req *rq)
{
    return &rq->arena;
}

vial_req *vial_render_req(void)
{
    return vial_render_current;
}
