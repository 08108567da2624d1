/* Signed cookie sessions (Flask's SecureCookieSession) and flash messages.
 *
 * The session is a small ordered map of strings, decoded lazily from the
 * "session" cookie on first use and written back by vial_session_save when
 * it changed. Cookie value:
 *
 *   base64url(payload) "." timestamp "." base64url(HMAC-SHA256(K, signed))
 *
 * where `signed` is everything before the last '.' (payload, '.', timestamp:
 * the dot keeps the split unambiguous, since base64url has digits too),
 * `timestamp` is decimal Unix seconds, and K is derived from the app's secret
 * key. The payload is urlencoded pairs, "k=v&k2=v2", with every byte outside
 * [A-Za-z0-9._~-] percent-encoded; a flash message is a pair whose key starts
 * with a raw '!' ("!category=message"), which no encoded user key can do.
 *
 * Anything wrong with the cookie (bad base64, bad MAC, expired, too long,
 * malformed payload) gives an empty session: a client must not be able to
 * turn a forged cookie into an error page. The data is signed, not
 * encrypted: the client can read it. */
#include "app/session.h"
#include "runtime/log.h"
#include "runtime/ascii.h"
#include "app/app.h"
#include "runtime/codec.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAC_LEN 32
#define MAC_B64_LEN 43 /* base64url of 32 bytes, no padding */
/* Timestamps from the future are accepted up to this skew (servers sharing a
 * key may disagree a little on the time). */
#define CLOCK_SKEW 300
/* Browsers drop cookies larger than this (name, value and attributes). */
#define COOKIE_WARN_SIZE 4093

typedef struct kvlist {
    vial_kv *v;
    unsigned n, cap;
} kvlist;

struct vial_session {
    kvlist items;   /* user data, in insertion order */
    kvlist flashes; /* name = category, value = message */
    kvlist taken;   /* what vial_get_flashed_messages returned this request */
    int flashes_taken;
    int modified;
    int had_cookie; /* the request carried a session cookie (valid or not) */
    int saved;
};

static struct vial_session_config *config_of(vial_req *rq)
{
    return vial_rqs(rq)->app ? vial_rqs(rq)->app->session_cfg : NULL;
}

/* --- secret key ------------------------------------------------------------------ */

int vial_app_set_secret_key(vial_app *app, const char *key)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!key) { /* NULL: sessions off again */
        free(app->session_cfg);
        app->session_cfg = NULL;
        return 0;
    }
    if (!*key)
        return -EINVAL; /* an empty key signs nothing */
    struct vial_session_config *c = app->session_cfg ? app->session_cfg : calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    static const char label[] = "vial.session.v1";
    unsigned len = 0;
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)label, sizeof label - 1,
              c->key, &len) ||
        len != sizeof c->key) {
        if (c != app->session_cfg)
            free(c);
        return -EIO;
    }
    app->session_cfg = c;
    return 0;
}

/* --- encodings ------------------------------------------------------------------- */

/* Bytes pct_encode will write for s. */
static size_t pct_len(const char *s)
{
    return vial_pct_encode(NULL, s, strlen(s), NULL, 0);
}

static char *pct_encode(char *o, const char *s)
{
    return o + vial_pct_encode(o, s, strlen(s), NULL, 0);
}

/* Strict percent-decoding of s[0..n) into the arena; NULL on a bad escape,
 * a "%00" (it would cut the string), or out of memory. */
static char *pct_decode(vial_arena *a, const char *s, size_t n)
{
    char *out = vial_arena_alloc(a, n + 1);
    if (!out)
        return NULL;
    ssize_t m = vial_pct_decode(out, s, n, VIAL_PCT_STRICT | VIAL_PCT_NO_NUL);
    if (m < 0)
        return NULL;
    out[m] = 0;
    return out;
}

/* --- the map ------------------------------------------------------------------------ */

static vial_kv *kv_find(kvlist *l, const char *key)
{
    for (unsigned i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, key))
            return &l->v[i];
    return NULL;
}

/* Appends (name, value) as given (already in the arena). */
static int kv_append(vial_arena *a, kvlist *l, const char *name, const char *value)
{
    if (l->n == l->cap) {
        unsigned cap = l->cap ? l->cap * 2 : 8;
        vial_kv *v = vial_arena_alloc(a, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        if (l->n)
            memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].name = name;
    l->v[l->n].value = value;
    l->n++;
    return 0;
}

/* Decodes the payload's pairs into s; -1 when anything is off. */
static int parse_payload(vial_arena *a, struct vial_session *s, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (!eq)
            return -1;
        int flash = *p == '!';
        const char *ks = p + flash;
        char *k = pct_decode(a, ks, (size_t)(eq - ks));
        char *v = pct_decode(a, eq + 1, (size_t)(e - eq - 1));
        if (!k || !v || (!flash && !*k))
            return -1;
        if (flash) {
            if (kv_append(a, &s->flashes, k, v) < 0)
                return -1;
        } else {
            vial_kv *kv = kv_find(&s->items, k);
            if (kv)
                kv->value = v;
            else if (kv_append(a, &s->items, k, v) < 0)
                return -1;
        }
        if (!amp)
            break;
        p = amp + 1;
        if (p == end)
            return -1; /* trailing '&': not what the encoder writes */
    }
    return 0;
}

/* MAC of signed[0..n) in base64url (MAC_B64_LEN chars + NUL). */
static int sign(const struct vial_session_config *cfg, const char *data, size_t n,
                char out[MAC_B64_LEN + 1])
{
    unsigned char mac[MAC_LEN];
    unsigned len = 0;
    if (!HMAC(EVP_sha256(), cfg->key, sizeof cfg->key, (const unsigned char *)data, n, mac, &len) ||
        len != MAC_LEN)
        return -EIO;
    vial_base64_encode(out, mac, MAC_LEN, VIAL_B64_URL);
    return 0;
}

/* Verifies and decodes a cookie value into s; -1 leaves s to be reset. */
static int decode_cookie(vial_req *rq, const struct vial_session_config *cfg, const char *c,
                         struct vial_session *s)
{
    size_t n = strlen(c);
    if (n > VIAL_SESSION_MAX_COOKIE)
        return -1;
    const char *dot2 = memrchr(c, '.', n);
    if (!dot2 || (size_t)(c + n - dot2 - 1) != MAC_B64_LEN)
        return -1;
    const char *dot1 = memrchr(c, '.', (size_t)(dot2 - c));
    if (!dot1)
        return -1;
    char mac[MAC_B64_LEN + 1];
    if (sign(cfg, c, (size_t)(dot2 - c), mac) < 0)
        return -1;
    /* Constant time: the comparison must not tell a forger how many leading
     * characters of its guess were right. */
    if (CRYPTO_memcmp(mac, dot2 + 1, MAC_B64_LEN) != 0)
        return -1;

    /* Authentic; now the age. */
    const char *ts = dot1 + 1;
    size_t tslen = (size_t)(dot2 - ts);
    if (tslen == 0 || tslen > 18)
        return -1;
    long long t = 0;
    for (size_t i = 0; i < tslen; i++) {
        if (ts[i] < '0' || ts[i] > '9')
            return -1;
        t = t * 10 + (ts[i] - '0');
    }
    long long now = (long long)time(NULL);
    if (t > now + CLOCK_SKEW || now - t > VIAL_SESSION_MAX_AGE)
        return -1;

    size_t plen = (size_t)(dot1 - c);
    unsigned char *payload = vial_arena_alloc(&rq->arena, plen * 3 / 4 + 1);
    if (!payload)
        return -1;
    ssize_t m = vial_base64_decode(payload, c, plen, VIAL_B64_URL | VIAL_B64_CANONICAL);
    if (m < 0)
        return -1;
    return parse_payload(&rq->arena, s, (const char *)payload, (size_t)m);
}

/* The request's session, loaded on first use; NULL only when out of memory. */
static struct vial_session *session_of(vial_req *rq)
{
    if (vial_rqs(rq)->session)
        return vial_rqs(rq)->session;
    struct vial_session *s = vial_arena_alloc(&rq->arena, sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, sizeof *s);
    const char *c = vial_req_cookie(rq, VIAL_SESSION_COOKIE);
    if (c) {
        s->had_cookie = 1;
        const struct vial_session_config *cfg = config_of(rq);
        if (!cfg || decode_cookie(rq, cfg, c, s) < 0) {
            /* A cookie we cannot trust (or verify) is no session at all. */
            memset(&s->items, 0, sizeof s->items);
            memset(&s->flashes, 0, sizeof s->flashes);
        }
    }
    vial_rqs(rq)->session = s;
    return s;
}

/* --- public API -------------------------------------------------------------------------- */

const char *vial_session_get(vial_req *rq, const char *key)
{
    if (!key)
        return NULL;
    struct vial_session *s = session_of(rq);
    vial_kv *kv = s ? kv_find(&s->items, key) : NULL;
    return kv ? kv->value : NULL;
}

int vial_session_set(vial_req *rq, const char *key, const char *value)
{
    if (!key || !*key || !value)
        return -EINVAL;
    if (!config_of(rq))
        return -EPERM;
    struct vial_session *s = session_of(rq);
    if (!s)
        return -ENOMEM;
    vial_kv *kv = kv_find(&s->items, key);
    if (kv && !strcmp(kv->value, value))
        return 0; /* unchanged: no need to re-send the cookie */
    char *v = vial_strdup(rq, value);
    if (!v)
        return -ENOMEM;
    if (kv) {
        kv->value = v;
    } else {
        char *k = vial_strdup(rq, key);
        if (!k || kv_append(&rq->arena, &s->items, k, v) < 0)
            return -ENOMEM;
    }
    s->modified = 1;
    return 0;
}

int vial_session_del(vial_req *rq, const char *key)
{
    if (!key)
        return -EINVAL;
    if (!config_of(rq))
        return -EPERM;
    struct vial_session *s = session_of(rq);
    if (!s)
        return -ENOMEM;
    vial_kv *kv = kv_find(&s->items, key);
    if (!kv)
        return -ENOENT;
    size_t i = (size_t)(kv - s->items.v);
    memmove(kv, kv + 1, (s->items.n - i - 1) * sizeof *kv);
    s->items.n--;
    s->modified = 1;
    return 0;
}

void vial_session_clear(vial_req *rq)
{
    struct vial_session *s = session_of(rq);
    if (!s)
        return;
    s->items.n = 0;
    s->flashes.n = 0;
    /* Even when it looked empty: a cookie that failed verification is then
     * deleted from the client, as Flask does. */
    s->modified = 1;
}

int vial_flash(vial_req *rq, const char *category, const char *message)
{
    if (!message)
        return -EINVAL;
    if (!config_of(rq))
        return -EPERM;
    struct vial_session *s = session_of(rq);
    if (!s)
        return -ENOMEM;
    char *c = vial_strdup(rq, category ? category : "message"); /* Flask's default */
    char *m = vial_strdup(rq, message);
    if (!c || !m || kv_append(&rq->arena, &s->flashes, c, m) < 0)
        return -ENOMEM;
    s->modified = 1;
    return 0;
}

unsigned vial_get_flashed_messages(vial_req *rq, const char ***categories, const char ***messages)
{
    if (categories)
        *categories = NULL;
    if (messages)
        *messages = NULL;
    struct vial_session *s = session_of(rq);
    if (!s)
        return 0;
    /* Like Flask's get_flashed_messages: the first call takes the messages
     * out of the session; later calls in the same request see the same list
     * (messages flashed meanwhile wait for the next request). */
    if (!s->flashes_taken) {
        s->flashes_taken = 1;
        s->taken = s->flashes;
        if (s->flashes.n)
            s->modified = 1;
        memset(&s->flashes, 0, sizeof s->flashes);
    }
    unsigned n = s->taken.n;
    if (!n)
        return 0;
    const char **cats = vial_alloc(rq, n * sizeof *cats);
    const char **msgs = vial_alloc(rq, n * sizeof *msgs);
    if (!cats || !msgs)
        return 0;
    for (unsigned i = 0; i < n; i++) {
        cats[i] = s->taken.v[i].name;
        msgs[i] = s->taken.v[i].value;
    }
    if (categories)
        *categories = cats;
    if (messages)
        *messages = msgs;
    return n;
}

/* --- saving ------------------------------------------------------------------------------- */

/* The serialized payload, NUL-terminated, in the arena. */
static char *encode_payload(vial_req *rq, const struct vial_session *s, size_t *len)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->items.n; i++)
        n += pct_len(s->items.v[i].name) + pct_len(s->items.v[i].value) + 2;
    for (unsigned i = 0; i < s->flashes.n; i++)
        n += pct_len(s->flashes.v[i].name) + pct_len(s->flashes.v[i].value) + 3;
    char *out = vial_alloc(rq, n + 1), *o = out;
    if (!out)
        return NULL;
    for (unsigned pass = 0; pass < 2; pass++) {
        const kvlist *l = pass ? &s->flashes : &s->items;
        for (unsigned i = 0; i < l->n; i++) {
            if (o != out)
                *o++ = '&';
            if (pass)
                *o++ = '!';
            o = pct_encode(o, l->v[i].name);
            *o++ = '=';
            o = pct_encode(o, l->v[i].value);
        }
    }
    *o = 0;
    *len = (size_t)(o - out);
    return out;
}

static int has_vary_cookie(const vial_res *rs)
{
    for (uint32_t i = 0; i < rs->nheaders; i++)
        if (!vial_ascii_casecmp(rs->headers[i].name, "Vary") &&
            (strcasestr(rs->headers[i].value, "cookie") || strchr(rs->headers[i].value, '*')))
            return 1;
    return 0;
}

int vial_session_save(vial_req *rq)
{
    struct vial_session *s = vial_rqs(rq)->session;
    vial_res *rs = &rq->res;
    if (!s || s->saved)
        return 0;
    s->saved = 1;
    int r;
    /* The response depends on the cookie: shared caches must not serve it
     * to another client. */
    if (!has_vary_cookie(rs) && (r = vial_res_add_header(rs, "Vary", "Cookie")) < 0)
        return r;
    if (!s->modified)
        return 0;
    const vial_cookie_opts opts = {.path = "/", .http_only = 1};
    if (!s->items.n && !s->flashes.n)
        return s->had_cookie ? vial_delete_cookie(rs, VIAL_SESSION_COOKIE, &opts) : 0;
    const struct vial_session_config *cfg = config_of(rq);
    if (!cfg)
        return -EPERM; /* cannot happen: modifying needs the key */

    size_t plen;
    char *payload = encode_payload(rq, s, &plen);
    if (!payload)
        return -ENOMEM;
    size_t b64len = (plen + 2) / 3 * 4;
    /* payload . timestamp . mac */
    char *value = vial_alloc(rq, b64len + 1 + 20 + 1 + MAC_B64_LEN + 1);
    if (!value)
        return -ENOMEM;
    size_t o = vial_base64_encode(value, payload, plen, VIAL_B64_URL);
    o += (size_t)sprintf(value + o, ".%lld", (long long)time(NULL));
    char mac[MAC_B64_LEN + 1];
    if ((r = sign(cfg, value, o, mac)) < 0)
        return r;
    value[o++] = '.';
    memcpy(value + o, mac, MAC_B64_LEN + 1);
    o += MAC_B64_LEN;

    if (o + sizeof VIAL_SESSION_COOKIE + 20 > COOKIE_WARN_SIZE) {
        /* Flask warns too: browsers silently drop such a cookie. Once per
         * process, not once per request. */
        static atomic_int warned;
        if (!atomic_exchange(&warned, 1))
            vial_log(VIAL_LOG_WARN, "session cookie is %zu bytes; browsers ignore cookies over "
                            "about 4 KiB, keep less data in the session", o);
    }
    return vial_set_cookie(rs, VIAL_SESSION_COOKIE, value, &opts);
}
