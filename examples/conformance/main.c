/* The conformance app of shared/spec/conformance-app.md, written the way a
 * Flask user writes an application: routes with converters, hooks, error
 * handlers, g, a blueprint, a method view, streaming. Each function is marked
 * sync (runs on the worker pool, may block) or async (a coroutine on the
 * loop, may await) where it is registered, as the spec asks. */
#include <vial.h>

#include <errno.h>
#include <locale.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* A query integer that must be in range, else the view aborts with 400. */
#define ARG_INT(rq, rs, name, def, lo, hi, out)                                  \
    do {                                                                         \
        if (vial_req_arg_int(rq, name, def, lo, hi, out) != 0)                   \
            return vial_abort(rs, 400);                                          \
    } while (0)

static void json_kv_str(vial_json *j, const char *k, const char *v)
{
    vial_json_key(j, k);
    vial_json_str(j, v);
}

static void json_kv_int(vial_json *j, const char *k, int64_t v)
{
    vial_json_key(j, k);
    vial_json_int(j, v);
}

/* --- g.trace: a list in g ---------------------------------------------------- */

typedef struct trace {
    const char *items[8];
    int n;
} trace;

static void trace_add(vial_req *rq, const char *item)
{
    trace *t = vial_g_get(rq, "trace");
    if (t && t->n < 8)
        t->items[t->n++] = item;
}

/* --- 3.1 hooks ------------------------------------------------------------------ */

static int before_sync(vial_req *rq, vial_res *rs)
{
    const char *user = vial_req_header(rq, "X-User");
    vial_g_set_str(rq, "user", user ? user : "anonymous");
    trace *t = vial_alloc(rq, sizeof *t);
    if (!t)
        return vial_fail(rs, "out of memory");
    t->n = 0;
    vial_g_set(rq, "trace", t);
    trace_add(rq, "before_sync");
    return 0;
}

static int before_async(vial_req *rq, vial_res *rs)
{
    trace_add(rq, "before_async");
    const char *block = vial_req_header(rq, "X-Block");
    if (block && !strcmp(block, "1")) {
        vial_text(rs, 403, "blocked");
        return VIAL_DONE;
    }
    return 0;
}

static void append_header(vial_req *rq, vial_res *rs, const char *name, const char *item)
{
    const char *old = vial_res_get_header(rs, name);
    vial_res_set_header(rs, name, old ? vial_sprintf(rq, "%s,%s", old, item) : item);
}

static int after_sync(vial_req *rq, vial_res *rs)
{
    append_header(rq, rs, "X-After-Order", "sync");
    vial_res_set_header(rs, "X-After", "1");
    return 0;
}

static int after_async(vial_req *rq, vial_res *rs)
{
    append_header(rq, rs, "X-After-Order", "async");
    return 0;
}

/* The teardown log: process-wide, newest 1000 entries, any thread. */
#define LOG_MAX 1000
typedef struct log_entry {
    char *fn, *rid, *method, *path, *error;
} log_entry;

static struct {
    pthread_mutex_t lock;
    log_entry ring[LOG_MAX];
    unsigned start, count;
} tlog = {.lock = PTHREAD_MUTEX_INITIALIZER};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void log_teardown(vial_req *rq, const char *fn, const char *error)
{
    log_entry e = {
        strdup(fn), dup_or_null(vial_req_header(rq, "X-Request-Id")), strdup(vial_req_method(rq)),
        strdup(vial_req_path(rq)), dup_or_null(error),
    };
    pthread_mutex_lock(&tlog.lock);
    log_entry *slot;
    if (tlog.count == LOG_MAX) {
        slot = &tlog.ring[tlog.start];
        free(slot->fn), free(slot->rid), free(slot->method), free(slot->path), free(slot->error);
        tlog.start = (tlog.start + 1) % LOG_MAX;
    } else {
        slot = &tlog.ring[(tlog.start + tlog.count++) % LOG_MAX];
    }
    *slot = e;
    pthread_mutex_unlock(&tlog.lock);
}

static void teardown_sync(vial_req *rq, const char *error)
{
    log_teardown(rq, "teardown_sync", error);
}

static void teardown_async(vial_req *rq, const char *error)
{
    log_teardown(rq, "teardown_async", error);
}

/* --- 3.2 error handlers ------------------------------------------------------------- */

static int not_found(vial_req *rq, vial_res *rs)
{
    size_t len;
    const char *path = vial_req_path_n(rq, &len);
    vial_json *j = vial_json_begin(rs, 404);
    vial_json_obj(j);
    json_kv_str(j, "error", "not found");
    vial_json_key(j, "path");
    vial_json_strn(j, path, len);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int forbidden_handler(vial_req *rq, vial_res *rs)
{
    vial_json *j = vial_json_begin(rs, 403);
    vial_json_obj(j);
    json_kv_str(j, "error", "forbidden");
    vial_json_end(j);
    return vial_json_finish(j);
}

static int api_forbidden_handler(vial_req *rq, vial_res *rs)
{
    vial_json *j = vial_json_begin(rs, 403);
    vial_json_obj(j);
    json_kv_str(j, "error", "forbidden");
    json_kv_str(j, "scope", "api");
    vial_json_end(j);
    return vial_json_finish(j);
}

static int server_error(vial_req *rq, vial_res *rs)
{
    vial_json *j = vial_json_begin(rs, 500);
    vial_json_obj(j);
    json_kv_str(j, "error", "internal server error");
    vial_json_end(j);
    return vial_json_finish(j);
}

/* Fallback for every other HTTP error: {"error": <lower-case name>, "code": code}. */
static int http_error(vial_req *rq, vial_res *rs)
{
    int code = vial_error_code(rq);
    char *name = vial_strdup(rq, vial_status_text(code));
    for (char *p = name; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p += 'a' - 'A';
    /* Beyond the spec, for tests of the result contract: the error's message
     * (e.g. the JSON parser's) where they can see it. */
    const char *msg = vial_error_message(rq);
    if (msg && !strncmp(vial_req_path(rq), "/contract/", 10))
        vial_res_add_header(rs, "X-Error-Message", msg);
    vial_json *j = vial_json_begin(rs, code);
    vial_json_obj(j);
    json_kv_str(j, "error", name);
    json_kv_int(j, "code", code);
    vial_json_end(j);
    return vial_json_finish(j);
}

/* --- 4.1 routing --------------------------------------------------------------------- */

static int index_view(vial_req *rq, vial_res *rs) /* sync */
{
    return vial_text(rs, 200, "vial conformance");
}

static int hello(vial_req *rq, vial_res *rs) /* async */
{
    size_t len; /* the name may hold a decoded NUL: keep its length */
    const char *name = vial_req_param_n(rq, "name", &len);
    vial_text(rs, 200, "Hello, ");
    vial_res_append_body(rs, name, len);
    return vial_res_append_body(rs, "!", 1);
}

static int user(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "id", vial_req_param_int(rq, "id"));
    vial_json_end(j);
    return vial_json_finish(j);
}

static int files(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    size_t len;
    const char *p = vial_req_param_n(rq, "p", &len);
    vial_json_key(j, "path");
    vial_json_strn(j, p, len);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int dir(vial_req *rq, vial_res *rs) /* sync */
{
    return vial_text(rs, 200, "dir");
}

static int methods(vial_req *rq, vial_res *rs) /* sync */
{
    /* As in Flask, a HEAD request runs the GET view with method "HEAD"; the
     * spec wants HEAD's headers to equal GET's, so report it as GET. */
    const char *m = vial_req_method(rq);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_str(j, "method", strcmp(m, "HEAD") ? m : "GET");
    vial_json_end(j);
    return vial_json_finish(j);
}

static int status(vial_req *rq, vial_res *rs) /* sync */
{
    int code = (int)vial_req_param_int(rq, "code");
    if (code == 204 || code == 205 || code == 304) {
        vial_res_set_status(rs, code);
        return 0;
    }
    return vial_text(rs, code, "status %d", code);
}

static int url_for_view(vial_req *rq, vial_res *rs) /* sync */
{
    struct {
        const char *key, *url;
    } urls[] = {
        {"index", vial_url_for(rq, "index", NULL)},
        {"hello", vial_url_for(rq, "hello", "name", "wörld x", NULL)},
        {"user", vial_url_for(rq, "user", "id", "42", NULL)},
        {"files", vial_url_for(rq, "files", "p", "docs/read me.txt", NULL)},
        {"dir", vial_url_for(rq, "dir", NULL)},
        {"args", vial_url_for(rq, "args", "q", "vial", "page", "2", NULL)},
        {"api_item", vial_url_for(rq, "api.item", "id", "7", NULL)},
        {"external", vial_url_for(rq, "user", "id", "42", "_external", "1", NULL)},
    };
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        if (!urls[i].url)
            return vial_fail(rs, "url_for failed");
        json_kv_str(j, urls[i].key, urls[i].url);
    }
    vial_json_end(j);
    return vial_json_finish(j);
}

/* --- 4.2 request data ------------------------------------------------------------------ */

/* One pair of a multi-dict, with lengths (keys and values may hold decoded
 * NULs), and the link to the next pair with the same key. */
typedef struct md_pair {
    const char *k, *v;
    size_t kl, vl;
    unsigned next; /* index + 1 of the next pair with this key; 0: none */
} md_pair;

static unsigned md_hash(const char *s, size_t n)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* {"<key>": [values...]} for a multi-dict, keys in first-seen order. Linear
 * in the number of pairs (a hash of the keys), so a request with tens of
 * thousands of fields costs no more per field than one with ten. */
static int json_multidict(vial_json *j, vial_req *rq, md_pair *pr, unsigned n)
{
    unsigned size = 16;
    while (size < 2 * n)
        size <<= 1;
    unsigned *slot = vial_alloc(rq, size * sizeof *slot);  /* first pair of a key + 1 */
    unsigned *tail = vial_alloc(rq, (n ? n : 1) * sizeof *tail); /* last pair of a key */
    if (!slot || !tail)
        return -ENOMEM;
    memset(slot, 0, size * sizeof *slot);
    for (unsigned i = 0; i < n; i++) {
        pr[i].next = 0;
        for (unsigned h = md_hash(pr[i].k, pr[i].kl) & (size - 1);; h = (h + 1) & (size - 1)) {
            md_pair *f = slot[h] ? &pr[slot[h] - 1] : NULL;
            if (!f) {
                slot[h] = i + 1;
                tail[i] = i;
                break;
            }
            if (f->kl == pr[i].kl && !memcmp(f->k, pr[i].k, pr[i].kl)) {
                pr[tail[slot[h] - 1]].next = i + 1;
                tail[slot[h] - 1] = i;
                tail[i] = (unsigned)-1; /* not the first: emitted with its key's first */
                break;
            }
        }
    }
    vial_json_obj(j);
    for (unsigned i = 0; i < n; i++) {
        if (tail[i] == (unsigned)-1)
            continue;
        vial_json_keyn(j, pr[i].k, pr[i].kl);
        vial_json_arr(j);
        for (unsigned q = i + 1; q; q = pr[q - 1].next)
            vial_json_strn(j, pr[q - 1].v, pr[q - 1].vl);
        vial_json_end(j);
    }
    vial_json_end(j);
    return 0;
}

static int args(vial_req *rq, vial_res *rs) /* sync */
{
    unsigned n = vial_req_arg_count(rq);
    md_pair *pr = vial_alloc(rq, (n ? n : 1) * sizeof *pr);
    if (!pr)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++)
        vial_req_arg_at_n(rq, i, &pr[i].k, &pr[i].kl, &pr[i].v, &pr[i].vl);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "args");
    int e = json_multidict(j, rq, pr, n);
    if (e)
        return e;
    vial_json_end(j);
    return vial_json_finish(j);
}

/* The form's fields as multi-dict pairs. */
static md_pair *form_pairs(vial_req *rq, unsigned *n)
{
    *n = vial_req_form_count(rq);
    md_pair *pr = vial_alloc(rq, (*n ? *n : 1) * sizeof *pr);
    for (unsigned i = 0; pr && i < *n; i++) {
        vial_req_form_at(rq, i, &pr[i].k, &pr[i].v);
        pr[i].kl = strlen(pr[i].k);
        pr[i].vl = strlen(pr[i].v);
    }
    return pr;
}

static int form(vial_req *rq, vial_res *rs) /* sync */
{
    /* Other content types and malformed bodies read as an empty form (spec
     * 4.2); a form over the field limit is refused (413). */
    int st = vial_req_parse_form(rq);
    if (vial_http_status_of(st) == 413 || (st < 0 && !vial_http_status_of(st)))
        return st;
    unsigned n;
    md_pair *pr = form_pairs(rq, &n);
    if (!pr)
        return -ENOMEM;
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "form");
    int e = json_multidict(j, rq, pr, n);
    if (e)
        return e;
    vial_json_end(j);
    return vial_json_finish(j);
}

static int sha256_hex(const vial_file *f, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    int ok = 1;
    if (f->data) {
        ok = EVP_DigestUpdate(ctx, f->data, f->size);
    } else if (f->path) {
        FILE *fp = fopen(f->path, "rb");
        char buf[16384];
        size_t n;
        ok = fp != NULL;
        while (ok && (n = fread(buf, 1, sizeof buf, fp)) > 0)
            ok = EVP_DigestUpdate(ctx, buf, n);
        if (fp)
            fclose(fp);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    return 0;
}

static int upload(vial_req *rq, vial_res *rs) /* async */
{
    const char *ct = vial_req_header(rq, "Content-Type");
    if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0)
        return vial_abort_msg(rs, 400, "multipart/form-data required");
    int st = vial_req_parse_form(rq);
    if (st)
        return st; /* 400, 413 through the error handlers */
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "files");
    vial_json_arr(j);
    for (unsigned i = 0; i < vial_req_file_count(rq); i++) {
        const vial_file *f = vial_req_file_at(rq, i);
        char hex[65];
        if (sha256_hex(f, hex) != 0)
            return vial_fail(rs, "sha256 failed");
        vial_json_obj(j);
        json_kv_str(j, "field", f->field);
        json_kv_str(j, "filename", f->filename);
        json_kv_int(j, "size", (int64_t)f->size);
        json_kv_str(j, "sha256", hex);
        vial_json_end(j);
    }
    vial_json_end(j);
    vial_json_key(j, "form");
    unsigned n;
    md_pair *pr = form_pairs(rq, &n);
    if (!pr || json_multidict(j, rq, pr, n) != 0)
        return -ENOMEM;
    vial_json_end(j);
    return vial_json_finish(j);
}

static int json_view(vial_req *rq, vial_res *rs) /* async */
{
    const vial_jv *v;
    int st = vial_req_json(rq, &v);
    if (st)
        return st; /* 400 or 415 through the error handlers, with the reason */
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "json");
    vial_json_value(j, v);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int headers(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    unsigned n = vial_req_header_count(rq);
    vial_json_obj(j);
    vial_json_key(j, "headers");
    vial_json_obj(j);
    const char **names = vial_alloc(rq, (n + 1) * sizeof *names);
    for (unsigned i = 0; i < n; i++) {
        const char *name;
        vial_req_header_at(rq, i, &name, NULL);
        char *l = vial_strdup(rq, name);
        for (char *p = l; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p += 'a' - 'A';
        names[i] = l;
        int seen = 0;
        for (unsigned p = 0; p < i && !seen; p++)
            seen = !strcmp(names[p], l);
        if (!seen)
            json_kv_str(j, l, vial_req_header(rq, l)); /* repeated fields joined */
    }
    vial_json_end(j);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int header(vial_req *rq, vial_res *rs) /* sync */
{
    const char *name = vial_req_param(rq, "name");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_str(j, "name", name);
    json_kv_str(j, "value", vial_req_header(rq, name));
    vial_json_end(j);
    return vial_json_finish(j);
}

static int cookies(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "cookies");
    vial_json_obj(j);
    for (unsigned i = 0; i < vial_req_cookie_count(rq); i++) {
        const char *k, *v;
        vial_req_cookie_at(rq, i, &k, &v);
        json_kv_str(j, k, v);
    }
    vial_json_end(j);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int cookie_chars_ok(const char *s, size_t len, int allow_empty)
{
    if (!len)
        return allow_empty;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || (s[i] && strchr("._~-", s[i]))))
            return 0;
    return 1;
}

static int cookies_set(vial_req *rq, vial_res *rs) /* sync */
{
    unsigned n = vial_req_arg_count(rq);
    for (unsigned i = 0; i < n; i++) { /* validate all first: no cookie on error */
        const char *k, *v;
        size_t kl, vl;
        vial_req_arg_at_n(rq, i, &k, &kl, &v, &vl);
        if (!cookie_chars_ok(k, kl, 0) || !cookie_chars_ok(v, vl, 1))
            return vial_abort_msg(rs, 400, "invalid cookie name or value");
    }
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "set");
    vial_json_obj(j);
    for (unsigned i = 0; i < n; i++) {
        const char *k, *v;
        vial_req_arg_at(rq, i, &k, &v);
        vial_set_cookie(rs, k, v, NULL);
        json_kv_str(j, k, v);
    }
    vial_json_end(j);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int cookies_delete(vial_req *rq, vial_res *rs) /* sync */
{
    size_t len;
    const char *name = vial_req_arg_n(rq, "name", &len);
    if (!name || !cookie_chars_ok(name, len, 0))
        return vial_abort_msg(rs, 400, "name must be a valid cookie name");
    vial_delete_cookie(rs, name, NULL);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_str(j, "deleted", name);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int echo_body(vial_req *rq, vial_res *rs) /* async */
{
    size_t len;
    const void *body = vial_req_body(rq, &len);
    vial_res_add_header(rs, "Content-Type", "application/octet-stream");
    return vial_res_set_body(rs, body, len);
}

/* --- 4.3 responses ------------------------------------------------------------------------ */

static int redirect(vial_req *rq, vial_res *rs) /* sync */
{
    size_t to_len;
    const char *to = vial_req_arg_n(rq, "to", &to_len);
    if (to && strlen(to) != to_len)
        return vial_abort_msg(rs, 400, "to must be visible ASCII (0x21-0x7E)");
    int64_t code;
    if (vial_req_arg_int(rq, "code", 302, 301, 308, &code) != 0 || code == 304 || code == 305 ||
        code == 306)
        return vial_abort_msg(rs, 400, "code must be 301, 302, 303, 307 or 308");
    if (!to || to[0] != '/' || to[1] == '/')
        return vial_abort_msg(rs, 400, "to must be a path starting with a single /");
    for (const char *p = to; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) /* spec 4.3: no space either */
            return vial_abort_msg(rs, 400, "to must be visible ASCII (0x21-0x7E)");
    return vial_redirect(rs, to, (int)code);
}

static int forbidden(vial_req *rq, vial_res *rs) /* sync */
{
    return vial_abort(rs, 403);
}

static int fail(vial_req *rq, vial_res *rs) /* sync */
{
    return vial_fail(rs, "boom");
}

/* The request id the handler sees (the access log and X-Request-ID carry
 * the same). */
static int request_id(vial_req *rq, vial_res *rs) /* async */
{
    return vial_text(rs, 200, "%s", vial_req_id(rq));
}

static int async_fail(vial_req *rq, vial_res *rs) /* async */
{
    return vial_fail(rs, "boom");
}

/* --- /contract/: the result contract (include/vial.h "results"), beyond the
 * spec; each view passes on or drops a result the way user code does. */

static int contract_form(vial_req *rq, vial_res *rs) /* sync */
{
    int st = vial_req_parse_form(rq);
    if (st)
        return st; /* 400, 413 or 415 through the error handlers */
    return vial_text(rs, 200, "%u fields", vial_req_form_count(rq));
}

static int contract_form_recover(vial_req *rq, vial_res *rs) /* async */
{
    /* A helper's failure aborts nothing by itself: the view may answer. */
    int st = vial_req_parse_form(rq);
    return vial_text(rs, 200, "recovered from %d", vial_http_status_of(st));
}

static int contract_unbuilt(vial_req *rq, vial_res *rs) /* async */
{
    (void)rq;
    (void)rs;
    return 0; /* no response built: a 500 and a log line */
}

static int contract_fail_dropped(vial_req *rq, vial_res *rs) /* sync */
{
    vial_fail(rs, "dropped failure");
    return vial_text(rs, 200, "this is not sent");
}

static int contract_abort_dropped(vial_req *rq, vial_res *rs) /* async */
{
    vial_abort_msg(rs, 409, "dropped abort");
    return vial_text(rs, 200, "this is not sent");
}

static int contract_errno(vial_req *rq, vial_res *rs) /* async */
{
    return -ENOENT; /* an unhandled error, named by vial_strerror */
}

static int contract_positive(vial_req *rq, vial_res *rs) /* async */
{
    vial_text(rs, 200, "this is not sent");
    return 400; /* the old convention: not a result, so an unhandled error */
}

static int stream(vial_req *rq, vial_res *rs) /* async */
{
    int64_t n, ms;
    ARG_INT(rq, rs, "n", 5, 0, 10000, &n);
    ARG_INT(rq, rs, "ms", 0, 0, 10000, &ms);
    if (vial_stream_begin(rs, 200, "text/plain; charset=utf-8") != 0)
        return 0;
    for (int64_t i = 1; i <= n; i++) {
        if (i > 1 && ms && vial_sleep(rq, (uint64_t)ms) != 0)
            break;
        if (vial_stream_printf(rs, "chunk %lld\n", (long long)i) != 0)
            break;
    }
    return 0;
}

static int sse(vial_req *rq, vial_res *rs) /* async */
{
    int64_t n, ms, start = 1;
    ARG_INT(rq, rs, "n", 3, 0, 10000, &n);
    ARG_INT(rq, rs, "ms", 0, 0, 10000, &ms);
    const char *last = vial_req_header(rq, "Last-Event-ID");
    if (last && *last && strspn(last, "0123456789") == strlen(last))
        /* any id past n means nothing is left to send, however many digits */
        start = strlen(last) < 18 ? strtoll(last, NULL, 10) + 1 : n + 1;
    vial_res_add_header(rs, "Cache-Control", "no-cache");
    if (vial_stream_begin(rs, 200, "text/event-stream; charset=utf-8") != 0)
        return 0;
    for (int64_t i = start; i <= n; i++) {
        if (i > start && ms && vial_sleep(rq, (uint64_t)ms) != 0)
            break;
        if (vial_stream_printf(rs, "id: %lld\ndata: event %lld\n\n", (long long)i, (long long)i) != 0)
            break;
    }
    return 0;
}

/* --- compression (tests/blackbox/test_compress.py runs the app with --compress) ----------- */

/* GET /compress/body?n=N&type=text|json|html|png&status=S&etag=1&vary=1
 * &encoded=1&notransform=1: N bytes of lines "line K of a compressible
 * body", with what the flags add. */
static int compress_body(vial_req *rq, vial_res *rs) /* sync */
{
    int64_t n, status;
    ARG_INT(rq, rs, "n", 4000, 0, 16 << 20, &n);
    ARG_INT(rq, rs, "status", 200, 200, 599, &status);
    const char *type = vial_req_arg(rq, "type");
    static const struct {
        const char *name, *ctype;
    } types[] = {{"text", "text/plain; charset=utf-8"}, {"json", "application/json"},
                 {"html", "text/html; charset=utf-8"}, {"png", "image/png"}};
    const char *ctype = types[0].ctype;
    for (size_t i = 0; type && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(type, types[i].name))
            ctype = types[i].ctype;
    char *body = vial_alloc(rq, (size_t)n + 64);
    if (!body)
        return -ENOMEM;
    size_t len = 0;
    for (int k = 1; len < (size_t)n; k++)
        len += (size_t)snprintf(body + len, 64, "line %d of a compressible body\n", k);
    vial_res_set_status(rs, (int)status);
    vial_res_set_body_static(rs, body, (size_t)n);
    vial_res_add_header(rs, "Content-Type", ctype);
    if (vial_req_arg(rq, "etag"))
        vial_res_add_header(rs, "ETag", "\"v1\"");
    if (vial_req_arg(rq, "vary"))
        vial_res_add_header(rs, "Vary", "Cookie");
    if (vial_req_arg(rq, "encoded"))
        vial_res_add_header(rs, "Content-Encoding", "gzip"); /* the app encoded it itself */
    if (vial_req_arg(rq, "notransform"))
        vial_res_add_header(rs, "Cache-Control", "no-transform");
    if (status == 206)
        vial_res_add_header(rs, "Content-Range",
                            vial_sprintf(rq, "bytes 0-%lld/%lld", (long long)n - 1, (long long)n * 2));
    return 0;
}

/* --- 4.4 lifecycle ------------------------------------------------------------------------ */

static int lifecycle_json(vial_req *rq, vial_res *rs)
{
    trace *t = vial_g_get(rq, "trace");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_str(j, "user", vial_g_get(rq, "user"));
    vial_json_key(j, "trace");
    vial_json_arr(j);
    for (int i = 0; t && i < t->n; i++)
        vial_json_str(j, t->items[i]);
    vial_json_end(j);
    json_kv_str(j, "api", vial_g_get(rq, "api")); /* NULL -> null */
    vial_json_end(j);
    return vial_json_finish(j);
}

static int lifecycle(vial_req *rq, vial_res *rs) /* async */
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 0, 0, 10000, &ms);
    if (ms && vial_sleep(rq, (uint64_t)ms) != 0)
        return vial_fail(rs, "cancelled");
    return lifecycle_json(rq, rs);
}

static int teardown_log(vial_req *rq, vial_res *rs) /* sync */
{
    const char *rid = vial_req_arg(rq, "rid");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "entries");
    vial_json_arr(j);
    pthread_mutex_lock(&tlog.lock);
    for (unsigned i = 0; i < tlog.count; i++) {
        const log_entry *e = &tlog.ring[(tlog.start + i) % LOG_MAX];
        if (rid && (!e->rid || strcmp(e->rid, rid)))
            continue;
        vial_json_obj(j);
        json_kv_str(j, "fn", e->fn);
        json_kv_str(j, "rid", e->rid);
        json_kv_str(j, "method", e->method);
        json_kv_str(j, "path", e->path);
        json_kv_str(j, "error", e->error);
        vial_json_end(j);
    }
    pthread_mutex_unlock(&tlog.lock);
    vial_json_end(j);
    vial_json_end(j);
    return vial_json_finish(j);
}

/* --- 4.5 the method view ------------------------------------------------------------------ */

static atomic_llong counter;

static int counter_json(vial_res *rs, long long v)
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "count", v);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int counter_get(vial_req *rq, vial_res *rs) { return counter_json(rs, atomic_load(&counter)); }
static int counter_post(vial_req *rq, vial_res *rs) { return counter_json(rs, atomic_fetch_add(&counter, 1) + 1); }
static int counter_delete(vial_req *rq, vial_res *rs)
{
    atomic_store(&counter, 0);
    return counter_json(rs, 0);
}

/* --- 4.6 async and blocking work ----------------------------------------------------------- */

static atomic_llong probe_started, probe_completed, probe_cancelled;

static int async_sleep(vial_req *rq, vial_res *rs) /* async */
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 0, 0, 60000, &ms);
    if (vial_sleep(rq, (uint64_t)ms) == -ECANCELED)
        return vial_fail(rs, "cancelled");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "slept_ms", ms);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int gather_timer(vial_req *rq, void *arg)
{
    return vial_sleep(rq, *(uint64_t *)arg);
}

static int async_gather(vial_req *rq, vial_res *rs) /* async */
{
    int64_t n, ms;
    ARG_INT(rq, rs, "n", 10, 1, 1000, &n);
    ARG_INT(rq, rs, "ms", 100, 0, 60000, &ms);
    uint64_t wait = (uint64_t)ms;
    vial_task **tasks = vial_alloc(rq, (size_t)n * sizeof *tasks);
    if (!tasks)
        return vial_fail(rs, "out of memory");
    uint64_t t0 = vial_now_ms();
    for (int64_t i = 0; i < n; i++)
        if (!(tasks[i] = vial_spawn(rq, gather_timer, &wait)))
            return vial_fail(rs, "spawn failed");
    int r = vial_gather(rq, tasks, (size_t)n, 0);
    uint64_t elapsed = vial_now_ms() - t0;
    if (r != 0)
        return vial_fail(rs, r == -ECANCELED ? "cancelled" : "gather failed");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "n", n);
    json_kv_int(j, "ms", ms);
    json_kv_int(j, "elapsed_ms", (int64_t)elapsed);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int async_timeout(vial_req *rq, vial_res *rs) /* async */
{
    int64_t ms, limit;
    ARG_INT(rq, rs, "ms", 1000, 0, 60000, &ms);
    ARG_INT(rq, rs, "limit", 100, 0, 60000, &limit);
    vial_timeout scope;
    vial_timeout_begin(rq, &scope, (uint64_t)limit);
    int r = vial_sleep(rq, (uint64_t)ms); /* the timer is removed if the deadline wins */
    vial_timeout_end(rq, &scope);
    vial_json *j;
    if (r == -ETIMEDOUT) {
        j = vial_json_begin(rs, 504);
        vial_json_obj(j);
        json_kv_str(j, "error", "timeout");
        json_kv_int(j, "limit_ms", limit);
    } else if (r == 0) {
        j = vial_json_begin(rs, 200);
        vial_json_obj(j);
        json_kv_int(j, "slept_ms", ms);
    } else {
        return vial_fail(rs, "cancelled");
    }
    vial_json_end(j);
    return vial_json_finish(j);
}

static void block_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Holds its loop thread (an async view that blocks, the bug systemd's
 * watchdog exists for): the watchdog test sees the pings stop. */
static int loop_block(vial_req *rq, vial_res *rs)
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 100, 0, 10000, &ms);
    block_ms(ms);
    return vial_text(rs, 200, "unblocked");
}

static int sync_block(vial_req *rq, vial_res *rs) /* sync */
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 100, 0, 60000, &ms);
    block_ms(ms);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "blocked_ms", ms);
    vial_json_end(j);
    return vial_json_finish(j);
}

static void offload_work(void *arg)
{
    block_ms(*(int64_t *)arg);
}

static int async_offload(vial_req *rq, vial_res *rs) /* async */
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 100, 0, 60000, &ms);
    int r = vial_offload(rq, offload_work, &ms);
    if (r == -EAGAIN)
        return vial_abort(rs, 503);
    if (r != 0)
        return vial_fail(rs, "offload failed");
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "offloaded_ms", ms);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int disconnect_probe(vial_req *rq, vial_res *rs) /* async */
{
    int64_t ms;
    ARG_INT(rq, rs, "ms", 10000, 0, 60000, &ms);
    atomic_fetch_add(&probe_started, 1);
    if (vial_sleep(rq, (uint64_t)ms) == -ECANCELED) {
        atomic_fetch_add(&probe_cancelled, 1);
        return vial_fail(rs, "cancelled");
    }
    atomic_fetch_add(&probe_completed, 1);
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    vial_json_key(j, "completed");
    vial_json_bool(j, 1);
    vial_json_end(j);
    return vial_json_finish(j);
}

static int async_stats(vial_req *rq, vial_res *rs) /* sync */
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "started", atomic_load(&probe_started));
    json_kv_int(j, "completed", atomic_load(&probe_completed));
    json_kv_int(j, "cancelled", atomic_load(&probe_cancelled));
    vial_json_end(j);
    return vial_json_finish(j);
}

/* --- 4.7 blueprint api ------------------------------------------------------------------------ */

static int bp_before(vial_req *rq, vial_res *rs) /* async */
{
    vial_g_set_str(rq, "api", "v1");
    trace_add(rq, "bp_before");
    return 0;
}

static int bp_after(vial_req *rq, vial_res *rs) /* sync */
{
    vial_res_set_header(rs, "X-Api-Version", "1");
    append_header(rq, rs, "X-After-Order", "bp");
    return 0;
}

static int api_item(vial_req *rq, vial_res *rs) /* async */
{
    vial_json *j = vial_json_begin(rs, 200);
    vial_json_obj(j);
    json_kv_int(j, "id", vial_req_param_int(rq, "id"));
    json_kv_str(j, "api", "v1");
    vial_json_end(j);
    return vial_json_finish(j);
}

static int api_lifecycle(vial_req *rq, vial_res *rs) /* async */
{
    return lifecycle(rq, rs); /* "as /lifecycle", ms included */
}

static int api_forbidden(vial_req *rq, vial_res *rs) /* sync */
{
    return vial_abort(rs, 403);
}

/* --- 5 websockets ------------------------------------------------------------------------------ */

/* Each message back with its type; messages may be empty. */
static int ws_echo(vial_req *rq, vial_ws *ws)
{
    vial_ws_msg m;
    while (vial_ws_recv(ws, &m) == 0)
        if (vial_ws_send(ws, m.type, m.data, m.len) < 0)
            break;
    return 0;
}

/* One room for the whole process; members live on every loop thread. */
static vial_ws_group *chat_room;

static int ws_chat(vial_req *rq, vial_ws *ws)
{
    /* Joined before the 101 goes out: recv writes it. */
    if (vial_ws_group_join(chat_room, ws) < 0)
        return vial_ws_close(ws, 1011, "join failed");
    vial_ws_msg m;
    while (vial_ws_recv(ws, &m) == 0)
        vial_ws_group_broadcast(chat_room, m.type, m.data, m.len);
    return 0;
}

/* --- process fixtures (tests/blackbox/test_supervisor.py) -------------------------------------- */

/* Which worker process answered (--processes). */
static int ops_pid(vial_req *rq, vial_res *rs)
{
    (void)rq;
    return vial_text(rs, 200, "%d\n", (int)getpid());
}

/* Crashes on purpose: the crash report must name the signal and this route.
 * Registered only with CONFORMANCE_CRASH_ROUTES=1 (a test sets it). */
static int crash_segv(vial_req *rq, vial_res *rs)
{
    (void)rq;
    (void)rs;
    raise(SIGSEGV);
    return 0;
}

static int crash_abort(vial_req *rq, vial_res *rs) /* sync */
{
    (void)rq;
    (void)rs;
    abort();
}

/* --- the app ---------------------------------------------------------------------------------- */

int conformance_realtime(vial_app *app);

static vial_app *build_app(void)
{
    vial_app *app = vial_app_new();
    if (!app)
        return NULL;
    int e = 0;
    e |= vial_before_request_sync(app, before_sync);
    e |= vial_before_request(app, before_async);
    e |= vial_after_request_sync(app, after_sync);
    e |= vial_after_request(app, after_async);
    e |= vial_teardown_request_sync(app, teardown_sync);
    e |= vial_teardown_request(app, teardown_async);

    e |= vial_errorhandler_sync(app, 404, not_found);
    e |= vial_errorhandler(app, 403, forbidden_handler);
    e |= vial_errorhandler(app, 500, server_error);
    e |= vial_errorhandler(app, VIAL_HTTP_ERRORS, http_error);

    e |= vial_route_as_sync(app, "GET /", index_view, "index", NULL);
    e |= vial_route(app, "GET /hello/<name>", hello);
    e |= vial_route_sync(app, "GET /users/<int:id>", user);
    e |= vial_route_sync(app, "GET /files/<path:p>", files);
    e |= vial_route_sync(app, "GET /dir/", dir);
    e |= vial_route_sync(app, "GET,POST /methods", methods);
    e |= vial_route_sync(app, "GET /status/<int(min=200,max=599):code>", status);
    e |= vial_route_as_sync(app, "GET /url-for", url_for_view, "url_for", NULL);

    e |= vial_route_sync(app, "GET /args", args);
    e |= vial_route_sync(app, "POST /form", form);
    e |= vial_route(app, "POST /upload", upload);
    e |= vial_route_as(app, "POST /json", json_view, "json", NULL);
    e |= vial_route_sync(app, "GET /headers", headers);
    e |= vial_route_sync(app, "GET /header/<name>", header);
    e |= vial_route_sync(app, "GET /cookies", cookies);
    e |= vial_route_sync(app, "GET /cookies/set", cookies_set);
    e |= vial_route_sync(app, "GET /cookies/delete", cookies_delete);
    e |= vial_route(app, "POST,PUT /echo/body", echo_body);

    e |= vial_route_sync(app, "GET /redirect", redirect);
    e |= vial_route_as(app, "POST /contract/json", json_view, "contract_json", NULL);
    e |= vial_route_sync(app, "POST /contract/form", contract_form);
    e |= vial_route(app, "POST /contract/form-recover", contract_form_recover);
    e |= vial_route(app, "GET /contract/unbuilt", contract_unbuilt);
    e |= vial_route_sync(app, "GET /contract/fail-dropped", contract_fail_dropped);
    e |= vial_route(app, "GET /contract/abort-dropped", contract_abort_dropped);
    e |= vial_route(app, "GET /contract/errno", contract_errno);
    e |= vial_route(app, "GET /contract/positive", contract_positive);
    e |= vial_route_sync(app, "GET /forbidden", forbidden);
    e |= vial_route_sync(app, "GET /fail", fail);
    e |= vial_route(app, "GET /async/fail", async_fail);
    e |= vial_route(app, "GET /request-id", request_id);
    e |= vial_route(app, "GET /stream", stream);
    e |= vial_route(app, "GET /sse", sse);
    e |= vial_route_sync(app, "GET /compress/body", compress_body);

    e |= vial_route(app, "GET /lifecycle", lifecycle);
    e |= vial_route_sync(app, "GET /teardown-log", teardown_log);

    static const vial_view_method counter_methods[] = {
        {"GET", counter_get, VIAL_ASYNC},
        {"POST", counter_post, VIAL_ASYNC},
        {"DELETE", counter_delete, VIAL_ASYNC},
        {0},
    };
    e |= vial_add_view(app, "/counter", "counter", counter_methods, NULL);

    e |= vial_route(app, "GET /async/sleep", async_sleep);
    e |= vial_route_sync(app, "GET /sync/block", sync_block);
    e |= vial_route(app, "GET /debug/block-loop", loop_block);
    e |= vial_route(app, "GET /async/offload", async_offload);
    e |= vial_route(app, "GET /async/gather", async_gather);
    e |= vial_route(app, "GET /async/timeout", async_timeout);
    e |= vial_route(app, "GET /async/disconnect-probe", disconnect_probe);
    e |= vial_route_sync(app, "GET /async/stats", async_stats);

    chat_room = vial_ws_group_new();
    e |= chat_room ? 0 : -1;
    e |= vial_ws_route(app, "/ws/echo", ws_echo);
    e |= vial_ws_route(app, "/ws/chat", ws_chat);

    e |= conformance_realtime(app); /* realtime.c */

    vial_bp *api = vial_blueprint(app, "api", "/api/v1");
    if (!api)
        e |= -1;
    else {
        e |= vial_bp_before_request(api, bp_before);
        e |= vial_bp_after_request_sync(api, bp_after);
        e |= vial_bp_errorhandler_sync(api, 403, api_forbidden_handler);
        e |= vial_bp_route_as(api, "GET /items/<int:id>", api_item, "item", NULL);
        e |= vial_bp_route_as(api, "GET /lifecycle", api_lifecycle, "lifecycle", NULL);
        e |= vial_bp_route_as_sync(api, "GET /forbidden", api_forbidden, "forbidden", NULL);
    }
    e |= vial_route(app, "GET /ops/pid", ops_pid);
    const char *crash_routes = getenv("CONFORMANCE_CRASH_ROUTES");
    if (crash_routes && !strcmp(crash_routes, "1")) {
        e |= vial_route_as(app, "GET /ops/crash/segv", crash_segv, "crash_segv", NULL);
        e |= vial_route_as_sync(app, "GET /ops/crash/abort", crash_abort, "crash_abort", NULL);
    }
    /* Static files (Last-Modified, ETag, ranges) when the test names a
     * directory; read here, before vial_run, like any setting. */
    const char *static_dir = getenv("CONFORMANCE_STATIC_DIR");
    if (static_dir && *static_dir)
        e |= vial_static(app, "/static", static_dir);
    /* Templates when the test names a folder (templates.c). */
    int conformance_templates(vial_app *app);
    e |= conformance_templates(app);
    if (e) {
        fprintf(stderr, "conformance: registering the app failed\n");
        vial_app_free(app);
        return NULL;
    }
    return app;
}

int main(int argc, char **argv)
{
    /* What many C programs do first, and what must not change a byte vial
     * writes: under LC_ALL=de_DE.UTF-8 printf's decimal point is a comma and
     * strftime's day names are German (tests/blackbox/test_locale.py). */
    setlocale(LC_ALL, "");
    vial_config cfg = vial_config_default();
    if (vial_config_args(&cfg, argc, argv) != 0)
        return 2;
    vial_app *app = build_app();
    if (!app)
        return 1;
    int r = vial_run(app, &cfg);
    vial_app_free(app);
    return r == 0 ? 0 : 1;
}
