/* Trusted proxies (--trusted-proxy): CIDR matching and the reading of
 * X-Forwarded-For / X-Forwarded-Proto. The parsers are pure (no request, no
 * allocation but the list's own) so the unit tests and the fuzzer drive them
 * directly. */
#ifndef VIAL_APP_PROXY_H
#define VIAL_APP_PROXY_H

#include <stddef.h>
#include <stdint.h>

/* One trusted range: an IPv4 or IPv6 prefix, or every Unix-socket peer. */
typedef struct vial_cidr {
    uint8_t family; /* 4, 6, or 'u' (unix) */
    uint8_t bits;   /* prefix length */
    uint8_t addr[16];
} vial_cidr;

typedef struct vial_proxies {
    unsigned n;
    vial_cidr *v;
} vial_proxies;

/* "10.0.0.0/8", "::1/128", "127.0.0.1" (a host: /32 or /128), "unix".
 * Bits beyond the prefix must be zero ("10.0.0.1/8" is refused: it is a
 * typo more often than not). 0, or -EINVAL. */
int vial_cidr_parse(const char *s, size_t len, vial_cidr *out);

/* A comma-separated list of the above (spaces allowed around items) into
 * *out (its own allocation; vial_proxies_free). 0, -EINVAL (logged, naming
 * the bad item), or -ENOMEM. */
int vial_proxies_parse(const char *list, vial_proxies *out);
void vial_proxies_free(vial_proxies *p);

/* An address as text ("192.0.2.1", "2001:db8::1", "[::1]", "::ffff:10.0.0.1",
 * "unix") into a vial_cidr with all bits set (IPv4-mapped IPv6 becomes IPv4).
 * A port is not part of an address here. 0, or -EINVAL. */
int vial_addr_parse(const char *s, size_t len, vial_cidr *out);

/* Whether addr falls in one of p's ranges. */
int vial_proxies_match(const vial_proxies *p, const vial_cidr *addr);

/* The client behind a trusted peer: X-Forwarded-For's hops (xff, len;
 * comma-separated, the nearest proxy's last) read from the right, trusted
 * hops skipped; the first untrusted hop is the client. When every hop is
 * trusted, the leftmost is; a hop that is not an address ends the walk at
 * the hop right of it (none: *found is 0, keep the peer). The result is
 * written normalised (inet_ntop) into out[cap >= 46]. */
void vial_xff_client(const vial_proxies *p, const char *xff, size_t len, char *out, size_t cap, int *found);

/* X-Forwarded-Proto's rightmost value (what the nearest proxy set) when it
 * is http or https (any case): "http" / "https"; otherwise NULL. */
const char *vial_xfp_scheme(const char *xfp, size_t len);

#endif
