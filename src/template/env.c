/* Environments: the template directory or loader, the compiled-template
 * cache (loads are serialised by the environment's lock) and the globals. */
#include "template/tmpl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <locale.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Reads dir/name; -ENOENT when it is not a regular file there. */
static int read_file(const char *dir, const char *name, char **src, size_t *len, char **pathp,
                     int64_t *mtime)
{
    size_t dl = strlen(dir), nl = strlen(name);
    char *path = malloc(dl + nl + 2);
    if (!path)
        return -ENOMEM;
    memcpy(path, dir, dl);
    path[dl] = '/';
    memcpy(path + dl + 1, name, nl + 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        free(path);
        return -ENOENT;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    int r = buf ? 0 : -ENOMEM;
    while (r == 0) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                r = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            r = -EIO;
        else if (k == 0)
            break;
        else
            n += (size_t)k;
    }
    close(fd);
    if (r != 0) {
        free(buf);
        free(path);
        return r;
    }
    *src = buf;
    *len = n;
    *pathp = path;
    *mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

static bool bad_name(const char *name)
{
    if (!*name || name[0] == '/')
        return true;
    /* Refuse any ".." piece, as Jinja's FileSystemLoader does. */
    for (const char *p = name; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return true;
        p += n + (e ? 1 : 0);
    }
    return false;
}

/* The default loader: the first directory of the search path that has the
 * file (Flask: the app's folder, then each blueprint's). */
static int dirs_load(vial_tmpl_env *env, const char *name, char **src, size_t *len, char **path,
                     int64_t *mtime)
{
    if (bad_name(name))
        return -ENOENT;
    for (size_t i = 0; i < env->ndirs; i++) {
        int r = read_file(env->dirs[i], name, src, len, path, mtime);
        if (r != -ENOENT)
            return r;
    }
    return -ENOENT;
}

static int file_loader(void *data, const char *name, char **src, size_t *len)
{
    char *path;
    int64_t mtime;
    int r = dirs_load(data, name, src, len, &path, &mtime);
    if (r == 0)
        free(path);
    return r;
}

int vial_tmpl_env_add_dir(vial_tmpl_env *env, const char *dir)
{
    char *d = strdup(dir);
    char **nd = d ? realloc(env->dirs, (env->ndirs + 1) * sizeof *nd) : NULL;
    if (!nd) {
        free(d);
        return -ENOMEM;
    }
    nd[env->ndirs++] = d;
    env->dirs = nd;
    return 0;
}

void vial_tmpl_env_auto_reload(vial_tmpl_env *env, int on) { env->auto_reload = on != 0; }

void vial_tmpl_env_reload_interval(vial_tmpl_env *env, unsigned ms)
{
    env->reload_interval_ns = (int64_t)ms * 1000000;
}

vial_tmpl_env *vial_tmpl_env_new(const char *dir)
{
    vial_tmpl_env *env = calloc(1, sizeof *env);
    if (!env)
        return NULL;
    if (dir && vial_tmpl_env_add_dir(env, dir) != 0) {
        free(env);
        return NULL;
    }
    env->loader = file_loader;
    env->loader_data = env;
    env->stack_limit = VIAL_TMPL_DEFAULT_STACK;
    vial_arena_init(&env->arena, NULL, 0);
    env->globals = tv_dict_new(&env->arena, 0);
    pthread_mutex_init(&env->lock, NULL);
    return env;
}

void vial_tmpl_env_free(vial_tmpl_env *env)
{
    if (!env)
        return;
    vial_tmpl *t = env->templates;
    while (t) {
        vial_tmpl *n = t->next;
        vial_arena_reset(&t->arena, NULL, 0);
        free(t->name);
        free(t->path);
        free(t);
        t = n;
    }
    vial_arena_reset(&env->arena, NULL, 0);
    pthread_mutex_destroy(&env->lock);
    for (size_t i = 0; i < env->ndirs; i++)
        free(env->dirs[i]);
    free(env->dirs);
    free(env);
}

void vial_tmpl_env_stack_limit(vial_tmpl_env *env, size_t bytes)
{
    env->stack_limit = bytes ? bytes : VIAL_TMPL_DEFAULT_STACK;
}

void vial_tmpl_env_loader(vial_tmpl_env *env, vial_tmpl_loader fn, void *data)
{
    env->loader = fn ? fn : file_loader;
    env->loader_data = fn ? data : env;
}

int vial_tmpl_global(vial_tmpl_env *env, const char *name, vial_tmpl_value v)
{
    pthread_mutex_lock(&env->lock);
    char *k = vial_arena_strndup(&env->arena, name, strlen(name));
    int r = k ? tv_dict_put(&env->arena, env->globals, tv_str(k, strlen(k)), v) : -ENOMEM;
    pthread_mutex_unlock(&env->lock);
    return r;
}

int vial_tmpl_global_fn(vial_tmpl_env *env, const char *name, vial_tmpl_fn fn, void *data)
{
    pthread_mutex_lock(&env->lock);
    tv f = vial_tmpl_function(&env->arena, name, fn, data);
    pthread_mutex_unlock(&env->lock);
    if (f.kind != TV_FUNC)
        return -ENOMEM;
    return vial_tmpl_global(env, name, f);
}

/* Number formatting and parsing (printf's %e/%f/%g, strtod) follow
 * LC_NUMERIC; templates must print 2.5, whatever locale the application
 * set. Renders and compiles switch their thread to the C locale. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void c_locale_init(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

void *tmpl_locale_enter(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? (void *)uselocale(c_locale) : NULL;
}

void tmpl_locale_leave(void *old)
{
    if (old)
        uselocale((locale_t)old);
}

static bool autoescape_for(const char *name)
{
    size_t n = strlen(name);
    static const char *const ext[] = {".html", ".htm", ".xml"};
    for (int i = 0; i < 3; i++) {
        size_t e = strlen(ext[i]);
        if (n >= e && strcasecmp(name + n - e, ext[i]) == 0)
            return true;
    }
    return false;
}

static vial_tmpl *find_loaded(vial_tmpl_env *env, const char *name, size_t len)
{
    for (vial_tmpl *t = env->templates; t; t = t->next)
        if (strlen(t->name) == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

static int compile_locked(vial_tmpl_env *env, const char *name, size_t nlen, const char *src,
                          size_t len, vial_tmpl **out, vial_tmpl_error *err)
{
    vial_tmpl *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    if (!(t->name = strndup(name, nlen))) {
        free(t);
        return -ENOMEM;
    }
    t->env = env;
    t->autoescape = autoescape_for(t->name);
    vial_arena_init(&t->arena, NULL, 0);
    void *loc = tmpl_locale_enter();
    int r = tmpl_parse(t, src, len, err);
    tmpl_locale_leave(loc);
    if (r != 0) {
        if (r == -ENOMEM)
            tmpl_set_error(err, t->name, 0, "out of memory");
        vial_arena_reset(&t->arena, NULL, 0);
        free(t->name);
        free(t);
        return r;
    }
    t->next = env->templates;
    env->templates = t;
    *out = t;
    return 0;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Has the file behind t changed since it was compiled? (auto reload) Looked
 * at once per reload interval at most. Called under the environment's lock. */
static bool stale(vial_tmpl *t)
{
    if (t->env->reload_interval_ns) {
        int64_t now = mono_ns();
        if (now - t->checked_ns < t->env->reload_interval_ns)
            return false;
        t->checked_ns = now;
    }
    struct stat st;
    if (!t->path || stat(t->path, &st) != 0)
        return t->path != NULL;
    return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != t->mtime_ns;
}

int tmpl_get(vial_tmpl_env *env, const char *name, size_t len, vial_tmpl **out, vial_tmpl_error *err)
{
    pthread_mutex_lock(&env->lock);
    vial_tmpl *t = find_loaded(env, name, len);
    int r = 0;
    /* A changed file is compiled again and put first in the list; the old
     * version stays until the environment is freed, since a render on
     * another thread may be walking it (auto reload is for development). */
    if (!t || (env->auto_reload && stale(t))) {
        t = NULL;
        char *nm = strndup(name, len);
        char *src = NULL, *path = NULL;
        size_t slen = 0;
        int64_t mtime = 0;
        if (!nm)
            r = -ENOMEM;
        else if (env->loader == file_loader)
            r = dirs_load(env, nm, &src, &slen, &path, &mtime);
        else
            r = env->loader(env->loader_data, nm, &src, &slen);
        if (r == 0) {
            r = compile_locked(env, name, len, src, slen, &t, err);
            if (r == 0) {
                t->path = path;
                t->mtime_ns = mtime;
                t->checked_ns = mono_ns();
                path = NULL;
            }
        } else {
            tmpl_set_error(err, nm ? nm : "?", 0, "TemplateNotFound: %s", nm ? nm : "?");
        }
        free(path);
        free(src);
        free(nm);
    }
    pthread_mutex_unlock(&env->lock);
    if (r == 0)
        *out = t;
    return r;
}

int vial_tmpl_load(vial_tmpl_env *env, const char *name, vial_tmpl **out, vial_tmpl_error *err)
{
    vial_tmpl *t;
    int r = tmpl_get(env, name, strlen(name), &t, err);
    if (r == 0 && out)
        *out = t;
    return r;
}

int vial_tmpl_add_source(vial_tmpl_env *env, const char *name, const char *src, size_t len,
                         vial_tmpl **out, vial_tmpl_error *err)
{
    pthread_mutex_lock(&env->lock);
    vial_tmpl *t = NULL;
    int r = find_loaded(env, name, strlen(name)) ? -EEXIST
                                                 : compile_locked(env, name, strlen(name), src, len, &t, err);
    pthread_mutex_unlock(&env->lock);
    if (r == 0 && out)
        *out = t;
    return r;
}

const char *vial_tmpl_name(const vial_tmpl *t) { return t->name; }

/* Loads every file under dir/prefix (names relative to dir). */
static int load_tree(vial_tmpl_env *env, const char *dir, const char *prefix, int depth, int *count,
                     vial_tmpl_error *err)
{
    if (depth > 32)
        return 0;
    size_t dl = strlen(dir), pl = strlen(prefix);
    char *path = malloc(dl + pl + 2);
    if (!path)
        return -ENOMEM;
    snprintf(path, dl + pl + 2, "%s%s%s", dir, pl ? "/" : "", prefix);
    DIR *d = opendir(path);
    free(path);
    if (!d)
        return 0;
    int r = 0;
    struct dirent *e;
    while (r == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue; /* ., .., and hidden files (editor swap files) */
        size_t nl = strlen(e->d_name);
        char *name = malloc(pl + nl + 2);
        if (!name) {
            r = -ENOMEM;
            break;
        }
        snprintf(name, pl + nl + 2, "%s%s%s", prefix, pl ? "/" : "", e->d_name);
        char *full = malloc(dl + strlen(name) + 2);
        struct stat st;
        if (!full) {
            r = -ENOMEM;
        } else {
            snprintf(full, dl + strlen(name) + 2, "%s/%s", dir, name);
            if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
                r = load_tree(env, dir, name, depth + 1, count, err);
            } else if (S_ISREG(st.st_mode)) {
                vial_tmpl *t;
                r = tmpl_get(env, name, strlen(name), &t, err);
                if (r == 0)
                    (*count)++;
            }
        }
        free(full);
        free(name);
    }
    closedir(d);
    return r;
}

int vial_tmpl_env_load_all(vial_tmpl_env *env, vial_tmpl_error *err)
{
    int count = 0;
    for (size_t i = 0; i < env->ndirs; i++) {
        int r = load_tree(env, env->dirs[i], "", 0, &count, err);
        if (r != 0)
            return r;
    }
    return count;
}
