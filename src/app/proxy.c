/* Trusted proxies: CIDRs, X-Forwarded-For and X-Forwarded-Proto (proxy.h).
 * Only a peer in the trusted list is believed; its headers are read from the
 * right, so a client cannot push its own "X-Forwarded-For: 1.2.3.4" past a
 * proxy that appends. */
#include "app/proxy.h"
#include "runtime/ascii.h"
#include "runtime/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *trim(const char *s, size_t *len)
{
    while (*len && (*s == ' ' || *s == '\t'))
        s++, (*len)--;
    while (*len && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
        (*len)--;
    return s;
}

int vial_addr_parse(const char *s, size_t len, vial_cidr *out)
{
    s = trim(s, &len);
    memset(out, 0, sizeof *out);
    if (len == 4 && !memcmp(s, "unix", 4)) {
        out->family = 'u';
        return 0;
    }
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
        s++, len -= 2;
    char buf[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (memchr(buf, ':', len)) {
        if (inet_pton(AF_INET6, buf, out->addr) != 1)
            return -EINVAL;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(out->addr, mapped, 12)) {
            memmove(out->addr, out->addr + 12, 4);
            memset(out->addr + 4, 0, 12);
            out->family = 4;
            out->bits = 32;
            return 0;
        }
        out->family = 6;
        out->bits = 128;
        return 0;
    }
    if (inet_pton(AF_INET, buf, out->addr) != 1)
        return -EINVAL;
    out->family = 4;
    out->bits = 32;
    return 0;
}

int vial_cidr_parse(const char *s, size_t len, vial_cidr *out)
{
    s = trim(s, &len);
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    if (vial_addr_parse(s, alen, out) < 0)
        return -EINVAL;
    if (!slash)
        return 0;
    if (out->family == 'u')
        return -EINVAL;
    const char *b = slash + 1, *end = s + len;
    unsigned bits = 0;
    if (b == end || end - b > 3)
        return -EINVAL;
    for (; b < end; b++) {
        if (*b < '0' || *b > '9')
            return -EINVAL;
        bits = bits * 10 + (unsigned)(*b - '0');
    }
    /* "::ffff:10.0.0.0/104" became IPv4: its prefix counts from bit 96. */
    int was_mapped = out->family == 4 && memchr(s, ':', alen);
    if (was_mapped) {
        if (bits < 96)
            return -EINVAL;
        bits -= 96;
    }
    if (bits > (out->family == 4 ? 32u : 128u))
        return -EINVAL;
    out->bits = (uint8_t)bits;
    for (unsigned i = bits; i < 128; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8)))
            return -EINVAL;
    return 0;
}

int vial_proxies_match(const vial_proxies *p, const vial_cidr *a)
{
    for (unsigned k = 0; p && k < p->n; k++) {
        const vial_cidr *c = &p->v[k];
        if (c->family != a->family)
            continue;
        if (c->family == 'u')
            return 1;
        unsigned full = c->bits / 8, rest = c->bits % 8;
        if (memcmp(c->addr, a->addr, full))
            continue;
        if (rest && ((c->addr[full] ^ a->addr[full]) & (uint8_t)(0xff00 >> rest)))
            continue;
        return 1;
    }
    return 0;
}

int vial_proxies_parse(const char *list, vial_proxies *out)
{
    out->n = 0;
    out->v = NULL;
    if (!list)
        return 0;
    unsigned cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    out->v = calloc(cap, sizeof *out->v);
    if (!out->v)
        return -ENOMEM;
    for (const char *p = list;;) {
        size_t len = strcspn(p, ",");
        size_t tl = len;
        const char *t = trim(p, &tl);
        if (tl && vial_cidr_parse(t, tl, &out->v[out->n]) < 0) {
            vial_log(VIAL_LOG_ERROR, "--trusted-proxy: \"%.*s\" is not an address, a CIDR or unix",
                     (int)tl, t);
            vial_proxies_free(out);
            return -EINVAL;
        }
        if (tl)
            out->n++;
        if (!p[len])
            break;
        p += len + 1;
    }
    return 0;
}

void vial_proxies_free(vial_proxies *p)
{
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

static void addr_text(const vial_cidr *a, char *out, size_t cap)
{
    if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->addr, out, (socklen_t)cap))
        out[0] = 0;
}

void vial_xff_client(const vial_proxies *p, const char *xff, size_t len, char *out, size_t cap, int *found)
{
    *found = 0;
    vial_cidr hop, last;
    int have_last = 0;
    size_t end = len;
    for (;;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t hl = end - start;
        const char *h = trim(xff + start, &hl);
        if (hl) {
            /* "unix" names no client: only a proxy's own socket could be. */
            if (vial_addr_parse(h, hl, &hop) < 0 || hop.family == 'u')
                break;
            if (!vial_proxies_match(p, &hop)) {
                addr_text(&hop, out, cap);
                *found = out[0] != 0;
                return;
            }
            last = hop;
            have_last = 1;
        }
        if (start == 0)
            break;
        end = start - 1;
    }
    if (have_last) {
        addr_text(&last, out, cap);
        *found = out[0] != 0;
    }
}

const char *vial_xfp_scheme(const char *xfp, size_t len)
{
    size_t start = len;
    while (start > 0 && xfp[start - 1] != ',')
        start--;
    size_t vl = len - start;
    const char *v = trim(xfp + start, &vl);
    if (vl == 5 && !vial_ascii_ncasecmp(v, "https", 5))
        return "https";
    if (vl == 4 && !vial_ascii_ncasecmp(v, "http", 4))
        return "http";
    return NULL;
}
