/* CSRF protection (Flask-WTF's CSRFProtect): a random token per session,
 * handed to forms masked and signed, checked by a before_request hook on
 * the methods that change state.
 *
 * The session keeps the raw token as 40 hex digits (20 random bytes) under
 * the field name. The token a page carries is
 *
 *   base64url(mask || raw ^ mask) "." timestamp "." base64url(HMAC-SHA256(K, signed))
 *
 * with a fresh 20-byte mask per request (the page's bytes never repeat, so
 * a compression side channel such as BREACH learns nothing from them),
 * `signed` everything before the last '.', and K = HMAC-SHA256(session key,
 * "vial.csrf.v1"): a key of its own, so no session cookie is ever a valid
 * token or the reverse. The time stamp bounds a token's life (Flask-WTF's
 * WTF_CSRF_TIME_LIMIT); the session binds it to the client. */
#include "app/app.h"
#include "app/security.h"
#include "app/session.h"
#include "runtime/codec.h"
#include "runtime/log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RAW_LEN 20
#define RAW_HEX (2 * RAW_LEN)
#define PAYLOAD_B64 54 /* base64url of 2 * RAW_LEN bytes, no padding */
#define MAC_B64 43     /* base64url of 32 bytes */
#define DEFAULT_TIME_LIMIT 3600
/* A token stamped this far in the future still counts (servers sharing a
 * key may disagree a little on the time). */
#define CLOCK_SKEW 300
#define G_KEY "vial.csrf_token" /* the request's token, made once */

struct vial_csrf {
    int enabled;
    int time_limit; /* -1: none */
    char *field;
    char **exempt; /* endpoints */
    unsigned nexempt;
    const vial_bp **exempt_bps;
    unsigned nexempt_bps;
};

static const char *const MSG_MISSING = "The CSRF token is missing.";
static const char *const MSG_SESSION = "The CSRF session token is missing.";
static const char *const MSG_INVALID = "The CSRF token is invalid.";
static const char *const MSG_EXPIRED = "The CSRF token has expired.";
static const char *const MSG_MISMATCH = "The CSRF tokens do not match.";

static struct vial_csrf *state_of(vial_app *app)
{
    if (!app->csrf) {
        app->csrf = calloc(1, sizeof *app->csrf);
        if (app->csrf)
            app->csrf->time_limit = DEFAULT_TIME_LIMIT;
    }
    return app->csrf;
}

static const char *field_of(const vial_app *app)
{
    return app && app->csrf && app->csrf->field ? app->csrf->field : "csrf_token";
}

void vial_csrf_release(vial_app *app)
{
    struct vial_csrf *c = app->csrf;
    if (!c)
        return;
    for (unsigned i = 0; i < c->nexempt; i++)
        free(c->exempt[i]);
    free(c->exempt);
    free(c->exempt_bps);
    free(c->field);
    free(c);
    app->csrf = NULL;
}

int vial_csrf_check_setup(const vial_app *app)
{
    const struct vial_csrf *c = app->csrf;
    if (!c)
        return 0;
    if (c->enabled && !app->session_cfg) {
        vial_log(VIAL_LOG_ERROR, "CSRF protection (vial_csrf_protect) needs the app's secret key: "
                                 "call vial_app_set_secret_key before vial_run");
        return -ENOKEY;
    }
    /* A misspelt exemption would leave its API refused with 400s: say so now. */
    for (unsigned i = 0; i < c->nexempt; i++) {
        const vial_rule *r = app->rules;
        while (r && strcmp(r->endpoint, c->exempt[i]))
            r = r->next;
        if (!r)
            vial_log(VIAL_LOG_WARN, "vial_csrf_exempt: no endpoint is named '%s'", c->exempt[i]);
    }
    return 0;
}

/* --- tokens ------------------------------------------------------------------------ */

/* HMAC-SHA256 of data[0..n) under the CSRF key, in base64url (MAC_B64 + NUL). */
static int sign(const vial_app *app, const char *data, size_t n, char out[MAC_B64 + 1])
{
    static const char label[] = "vial.csrf.v1";
    unsigned char key[32], mac[32];
    unsigned klen = 0, mlen = 0;
    if (!HMAC(EVP_sha256(), app->session_cfg->key, sizeof app->session_cfg->key,
              (const unsigned char *)label, sizeof label - 1, key, &klen) ||
        !HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, n, mac, &mlen) || mlen != 32)
        return -EIO;
    OPENSSL_cleanse(key, sizeof key);
    vial_base64_encode(out, mac, sizeof mac, VIAL_B64_URL);
    return 0;
}

/* The session's raw token as bytes, when it holds a well-formed one. */
static int session_raw(vial_req *rq, const char *field, unsigned char raw[RAW_LEN])
{
    const char *h = vial_session_get(rq, field);
    if (!h || strlen(h) != RAW_HEX)
        return -1;
    for (int i = 0; i < RAW_LEN; i++) {
        int hi = vial_hex_val((unsigned char)h[2 * i]), lo = vial_hex_val((unsigned char)h[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        raw[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

const char *vial_csrf_token(vial_req *rq)
{
    const char *cached = vial_g_get(rq, G_KEY);
    if (cached)
        return cached;
    vial_app *app = vial_rqs(rq)->app;
    if (!app || !app->session_cfg) {
        vial_log(VIAL_LOG_ERROR, "vial_csrf_token: the app has no secret key (vial_app_set_secret_key)");
        return NULL;
    }
    const char *field = field_of(app);
    unsigned char raw[RAW_LEN], buf[2 * RAW_LEN];
    if (session_raw(rq, field, raw) < 0) {
        char hex[RAW_HEX + 1];
        if (RAND_bytes(raw, sizeof raw) != 1)
            return NULL;
        vial_hex_encode(hex, raw, sizeof raw);
        hex[RAW_HEX] = 0;
        if (vial_session_set(rq, field, hex) < 0)
            return NULL;
    }
    if (RAND_bytes(buf, RAW_LEN) != 1)
        return NULL;
    for (int i = 0; i < RAW_LEN; i++)
        buf[RAW_LEN + i] = raw[i] ^ buf[i];
    char *tok = vial_alloc(rq, PAYLOAD_B64 + 1 + 20 + 1 + MAC_B64 + 1);
    if (!tok)
        return NULL;
    size_t o = vial_base64_encode(tok, buf, sizeof buf, VIAL_B64_URL);
    tok[o++] = '.';
    o += (size_t)vial_fmt_u64(tok + o, (uint64_t)time(NULL));
    if (sign(app, tok, o, tok + o + 1) < 0)
        return NULL;
    tok[o] = '.';
    vial_g_set(rq, G_KEY, tok);
    return tok;
}

/* The token the request carries: the form field, else a header. */
static const char *sent_token(vial_req *rq, const char *field)
{
    const char *t = vial_req_form(rq, field);
    if (!t || !*t)
        t = vial_req_header(rq, "X-CSRFToken");
    if (!t || !*t)
        t = vial_req_header(rq, "X-CSRF-Token");
    return t && *t ? t : NULL;
}

/* NULL when tok is good, else the message that says why not. */
static const char *check(vial_req *rq, vial_app *app, const char *tok)
{
    const char *field = field_of(app);
    if (!tok)
        return MSG_MISSING;
    unsigned char raw[RAW_LEN];
    if (session_raw(rq, field, raw) < 0)
        return MSG_SESSION;

    size_t n = strlen(tok);
    const char *dot2 = memrchr(tok, '.', n);
    if (!dot2 || (size_t)(tok + n - dot2 - 1) != MAC_B64)
        return MSG_INVALID;
    const char *dot1 = memchr(tok, '.', (size_t)(dot2 - tok));
    if (!dot1 || dot1 - tok != PAYLOAD_B64)
        return MSG_INVALID;
    char mac[MAC_B64 + 1];
    if (sign(app, tok, (size_t)(dot2 - tok), mac) < 0)
        return MSG_INVALID;
    /* Constant time: a forger learns nothing from how long the check took. */
    if (CRYPTO_memcmp(mac, dot2 + 1, MAC_B64) != 0)
        return MSG_INVALID;

    const char *ts = dot1 + 1;
    size_t tslen = (size_t)(dot2 - ts);
    if (tslen == 0 || tslen > 18)
        return MSG_INVALID;
    long long t = 0;
    for (size_t i = 0; i < tslen; i++) {
        if (ts[i] < '0' || ts[i] > '9')
            return MSG_INVALID;
        t = t * 10 + (ts[i] - '0');
    }
    long long now = (long long)time(NULL);
    int limit = app->csrf ? app->csrf->time_limit : DEFAULT_TIME_LIMIT;
    if (t > now + CLOCK_SKEW)
        return MSG_INVALID;
    if (limit >= 0 && now - t > limit)
        return MSG_EXPIRED;

    unsigned char buf[2 * RAW_LEN + 2];
    if (vial_base64_decode(buf, tok, PAYLOAD_B64, VIAL_B64_URL | VIAL_B64_CANONICAL) != 2 * RAW_LEN)
        return MSG_INVALID;
    unsigned char got[RAW_LEN];
    for (int i = 0; i < RAW_LEN; i++)
        got[i] = buf[RAW_LEN + i] ^ buf[i];
    if (CRYPTO_memcmp(got, raw, RAW_LEN) != 0)
        return MSG_MISMATCH;
    return NULL;
}

int vial_csrf_validate(vial_req *rq, vial_res *rs)
{
    vial_app *app = vial_rqs(rq)->app;
    if (!app || !app->session_cfg)
        return vial_fail(rs, "CSRF protection needs the app's secret key (vial_app_set_secret_key)");
    /* A form over the limits is that error (413), not a missing token; any
     * other content type simply has no form field. */
    int pr = vial_req_parse_form(rq);
    if (pr == VIAL_EHTTP(413) || (pr < 0 && !vial_http_status_of(pr)))
        return pr;
    const char *why = check(rq, app, sent_token(rq, field_of(app)));
    return why ? vial_abort_msg(rs, 400, why) : 0;
}

/* --- the hook ---------------------------------------------------------------------- */

static int unsafe_method(const char *m)
{
    return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH") || !strcmp(m, "DELETE");
}

static int exempt(const struct vial_csrf *c, const vial_rule *rule)
{
    for (unsigned i = 0; i < c->nexempt_bps; i++)
        if (rule->bp == c->exempt_bps[i])
            return 1;
    for (unsigned i = 0; i < c->nexempt; i++)
        if (!strcmp(c->exempt[i], rule->endpoint))
            return 1;
    return 0;
}

static int csrf_before(vial_req *rq, vial_res *rs)
{
    vial_app *app = vial_rqs(rq)->app;
    const vial_rule *rule = vial_rqs(rq)->route;
    /* No route: routing answers (404, 405) with nothing to protect. */
    if (!rule || !app->csrf || !unsafe_method(vial_req_method(rq)) || exempt(app->csrf, rule))
        return 0;
    return vial_csrf_validate(rq, rs);
}

/* --- registration -------------------------------------------------------------------- */

int vial_csrf_protect(vial_app *app, const vial_csrf_opts *opts)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (opts && (opts->time_limit < -1 || (opts->field_name && !*opts->field_name)))
        return -EINVAL;
    struct vial_csrf *c = state_of(app);
    if (!c)
        return -ENOMEM;
    if (c->enabled)
        return -EEXIST;
    if (opts && opts->field_name && !(c->field = strdup(opts->field_name)))
        return -ENOMEM;
    if (opts && opts->time_limit)
        c->time_limit = opts->time_limit;
    if ((rc = vial_before_request(app, csrf_before)) < 0) {
        free(c->field);
        c->field = NULL;
        return rc;
    }
    c->enabled = 1;
    return 0;
}

int vial_csrf_exempt(vial_app *app, const char *endpoint)
{
    int rc = vial_app_setup_check(app);
    if (rc < 0)
        return rc;
    if (!endpoint || !*endpoint)
        return -EINVAL;
    struct vial_csrf *c = state_of(app);
    if (!c)
        return -ENOMEM;
    char **v = realloc(c->exempt, (c->nexempt + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    c->exempt = v;
    if (!(v[c->nexempt] = strdup(endpoint)))
        return -ENOMEM;
    c->nexempt++;
    return 0;
}

int vial_bp_csrf_exempt(vial_bp *bp)
{
    if (!bp)
        return -EINVAL;
    int rc = vial_app_setup_check(bp->app);
    if (rc < 0)
        return rc;
    struct vial_csrf *c = state_of(bp->app);
    if (!c)
        return -ENOMEM;
    const vial_bp **v = realloc(c->exempt_bps, (c->nexempt_bps + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    c->exempt_bps = v;
    v[c->nexempt_bps++] = bp;
    return 0;
}
