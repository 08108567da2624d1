/* Response helpers that write headers with exact formats: Set-Cookie (set and
 * delete), redirects, aborts with a message, reason phrases, and the
 * HTTP-date parser shared with static.c.
 *
 * Every value that ends up in a header is validated here rather than escaped:
 * a cookie or Location the caller did not mean (split by a CR/LF, a stray ';'
 * starting a bogus attribute) is a bug to report, not to repair. */
#include "app/session.h"
#include "runtime/ascii.h"
#include "app/app.h"
#include "http/server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* --- HTTP dates --------------------------------------------------------------- */

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Formatting (vial_http_date) lives in runtime/numfmt.c, shared with the
 * Date header. */

static int parse_digits(const char **pp, int min_digits, int max_digits, int *out)
{
    const char *p = *pp;
    int v = 0, n = 0;
    while (n < max_digits && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        n++;
    }
    if (n < min_digits)
        return -1;
    *pp = p;
    *out = v;
    return 0;
}

static int parse_month(const char **pp)
{
    for (int i = 0; i < 12; i++)
        if (!strncmp(*pp, months[i], 3)) {
            *pp += 3;
            return i;
        }
    return -1;
}

static int expect(const char **pp, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*pp, lit, n))
        return -1;
    *pp += n;
    return 0;
}

static int parse_hms(const char **pp, struct tm *tm)
{
    if (parse_digits(pp, 2, 2, &tm->tm_hour) || expect(pp, ":") ||
        parse_digits(pp, 2, 2, &tm->tm_min) || expect(pp, ":") ||
        parse_digits(pp, 2, 2, &tm->tm_sec))
        return -1;
    return 0;
}

/* RFC 9110 section 5.6.7: recipients accept IMF-fixdate and the two obsolete
 * forms (RFC 850 and asctime). The weekday is skipped, not checked: a wrong
 * weekday does not make the instant ambiguous. */
int vial_http_date_parse(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = s;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *comma = strchr(p, ',');
    if (comma && comma - p == 3) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        p = comma + 1;
        if (expect(&p, " ") || parse_digits(&p, 2, 2, &tm.tm_mday) || expect(&p, " ") ||
            (tm.tm_mon = parse_month(&p)) < 0 || expect(&p, " ") ||
            parse_digits(&p, 4, 4, &tm.tm_year) || expect(&p, " ") || parse_hms(&p, &tm) ||
            expect(&p, " GMT"))
            return -1;
        tm.tm_year -= 1900;
    } else if (comma) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; two-digit years within
         * 50 years of now, per RFC 9110, approximated as 70..99 -> 19xx. */
        p = comma + 1;
        int yy;
        if (expect(&p, " ") || parse_digits(&p, 2, 2, &tm.tm_mday) || expect(&p, "-") ||
            (tm.tm_mon = parse_month(&p)) < 0 || expect(&p, "-") ||
            parse_digits(&p, 2, 2, &yy) || expect(&p, " ") || parse_hms(&p, &tm) ||
            expect(&p, " GMT"))
            return -1;
        tm.tm_year = yy < 70 ? yy + 100 : yy;
    } else {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        if (strlen(p) < 4 || p[3] != ' ')
            return -1;
        p += 4;
        if ((tm.tm_mon = parse_month(&p)) < 0 || expect(&p, " "))
            return -1;
        if (*p == ' ')
            p++;
        if (parse_digits(&p, 1, 2, &tm.tm_mday) || expect(&p, " ") || parse_hms(&p, &tm) ||
            expect(&p, " ") || parse_digits(&p, 4, 4, &tm.tm_year))
            return -1;
        tm.tm_year -= 1900;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return -1;
    /* not timegm: glibc's keeps a shared cache and takes the time-zone lock;
     * out-of-range fields carry over the same way (Feb 30 = Mar 2) */
    *out = vial_days_from_civil((int64_t)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, 1) * 86400 +
           ((int64_t)tm.tm_mday - 1) * 86400 + (int64_t)tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    return 0;
}

/* --- cookies -------------------------------------------------------------------- */

/* RFC 6265 cookie-name = token (RFC 9110 tchar). */
static int is_tchar(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int valid_name(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

/* The value rule of vial.h: no CTL, space, DQUOTE, ',', ';' or '\'. Bytes
 * >= 0x80 pass (RFC 6265 excludes them, browsers take UTF-8 values). */
static int valid_value(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == ' ' || c == '"' || c == ',' || c == ';' || c == '\\')
            return 0;
    }
    return 1;
}

/* Domain and Path are attribute values: a ';' would start another attribute
 * and a CTL would break the header. */
static int valid_attr(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == ';')
            return 0;
    }
    return 1;
}

static const char *canonical_same_site(const char *s)
{
    static const char *const names[] = {"Lax", "Strict", "None"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!vial_ascii_casecmp(s, names[i]))
            return names[i];
    return NULL;
}

/* Builds "name=value; attrs..." into the request arena. `deleting` forces
 * the epoch Expires and Max-Age=0 whatever opts say. */
static int cookie_header(vial_res *rs, const char *name, const char *value,
                         const vial_cookie_opts *opts, int deleting)
{
    if (!valid_name(name) || !value || !valid_value(value))
        return -EINVAL;
    const char *path = opts && opts->path && *opts->path ? opts->path : "/";
    const char *domain = opts && opts->domain && *opts->domain ? opts->domain : NULL;
    const char *same_site = NULL;
    if (!valid_attr(path) || (domain && !valid_attr(domain)))
        return -EINVAL;
    if (opts && opts->same_site && !(same_site = canonical_same_site(opts->same_site)))
        return -EINVAL;

    char expires[VIAL_HTTP_DATE_SIZE] = "";
    long long max_age = 0;
    if (deleting) {
        vial_http_date(0, expires);
        max_age = 0;
    } else if (opts) {
        if (opts->expires)
            vial_http_date(opts->expires, expires);
        max_age = opts->max_age;
    }
    /* 0 (a zeroed struct) means no Max-Age, so designated initialisers do
     * the obvious thing; a negative value expires the cookie now. */
    char ma[32] = "";
    if (deleting || max_age < 0)
        snprintf(ma, sizeof ma, "; Max-Age=0");
    else if (max_age > 0)
        snprintf(ma, sizeof ma, "; Max-Age=%lld", max_age);

    char *h = vial_sprintf(rs->rq, "%s=%s%s%s%s%s%s; Path=%s%s%s%s%s", name, value,
                           *expires ? "; Expires=" : "", expires, ma,
                           domain ? "; Domain=" : "", domain ? domain : "", path,
                           opts && opts->secure ? "; Secure" : "",
                           opts && opts->http_only ? "; HttpOnly" : "",
                           same_site ? "; SameSite=" : "", same_site ? same_site : "");
    if (!h)
        return -ENOMEM;
    return vial_res_add_header(rs, "Set-Cookie", h);
}

int vial_set_cookie(vial_res *rs, const char *name, const char *value, const vial_cookie_opts *opts)
{
    return cookie_header(rs, name, value, opts, 0);
}

int vial_delete_cookie(vial_res *rs, const char *name, const vial_cookie_opts *opts)
{
    return cookie_header(rs, name, "", opts, 1);
}

/* --- redirects, aborts, reasons --------------------------------------------------------- */

int vial_redirect(vial_res *rs, const char *location, int status)
{
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
        return -EINVAL;
    if (!location || !*location)
        return -EINVAL;
    for (const char *p = location; *p; p++) {
        unsigned char c = (unsigned char)*p;
        /* CR/LF would split the header; other controls are not valid in a
         * field value either (RFC 9110 section 5.5). */
        if (c < 0x20 || c == 0x7f)
            return -EINVAL;
    }
    /* A second redirect replaces the first: one Location only. */
    int r = 0;
    uint32_t i = 0;
    while (i < rs->nheaders && vial_ascii_casecmp(rs->headers[i].name, "Location"))
        i++;
    if (i < rs->nheaders) {
        size_t n = strlen(location);
        char *copy = vial_arena_strndup(&rs->rq->arena, location, n);
        if (!copy)
            return -ENOMEM;
        rs->headers[i].value = copy;
        rs->headers[i].value_len = (uint32_t)n;
    } else if ((r = vial_res_add_header(rs, "Location", location)) < 0) {
        return r;
    }
    rs->status = status;
    /* The body is unspecified; a one-line hint for clients that show it.
     * Plain text, so the location needs no escaping. */
    rs->content_type = "text/plain; charset=utf-8";
    rs->body_len = 0;
    r = vial_res_append_body(rs, "Redirecting to ", 15);
    if (r == 0)
        r = vial_res_append_body(rs, location, strlen(location));
    return r;
}

int vial_abort_msg(vial_res *rs, int status, const char *message)
{
    int r = vial_abort(rs, status);
    if (message) {
        const char *copy = vial_arena_strndup(&rs->rq->arena, message, strlen(message));
        /* Out of memory: the abort still stands, with a message saying so
         * rather than a dangling caller pointer. */
        vial_rqs(rs->rq)->error_message = copy ? copy : "out of memory";
    } else {
        vial_rqs(rs->rq)->error_message = NULL;
    }
    return r;
}

const char *vial_status_text(int status)
{
    return vial_status_reason(status);
}
