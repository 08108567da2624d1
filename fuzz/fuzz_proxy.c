/* libFuzzer target for the trusted-proxy parsers (app/proxy.c) and the
 * --listen entry splitter (http/listen.c).
 *
 * Input: a --trusted-proxy list, '\n', then lines each read as an address,
 * a CIDR, an X-Forwarded-For value, an X-Forwarded-Proto value and a
 * --listen entry. Besides the sanitizers: a parsed CIDR's own address
 * matches a list holding it, a client found in X-Forwarded-For is a valid
 * address in normal form (parsing and printing it again gives itself), and
 * a hop is never trusted unless every hop right of it is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/proxy.h"
#include "http/listen.h"
#include "runtime/log.h"

#include <arpa/inet.h>

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_proxy: invariant failed: %s (line %d)\n",   \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vial_log_threshold = VIAL_LOG_ERROR - 2; /* refused lists would flood the output */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *nl = memchr(buf, '\n', size);
    char *rest = nl ? nl + 1 : buf + size;
    if (nl)
        *nl = 0;
    vial_proxies p;
    if (vial_proxies_parse(buf, &p) < 0)
        CHECK(p.n == 0 && p.v == NULL);
    size_t rlen = size - (size_t)(rest - buf);
    for (char *line = rest; line < rest + rlen;) {
        char *end = memchr(line, '\n', (size_t)(rest + rlen - line));
        size_t len = end ? (size_t)(end - line) : (size_t)(rest + rlen - line);
        vial_cidr c;
        if (vial_cidr_parse(line, len, &c) == 0) {
            vial_proxies one = {1, &c};
            CHECK(vial_proxies_match(&one, &c));
        }
        if (vial_addr_parse(line, len, &c) == 0)
            CHECK(c.family == 4 || c.family == 6 || c.family == 'u');
        char out[INET6_ADDRSTRLEN];
        int found;
        vial_xff_client(&p, line, len, out, sizeof out, &found);
        if (found) {
            vial_cidr a;
            CHECK(vial_addr_parse(out, strlen(out), &a) == 0 && a.family != 'u');
            char again[INET6_ADDRSTRLEN];
            CHECK(inet_ntop(a.family == 4 ? AF_INET : AF_INET6, a.addr, again, sizeof again));
            CHECK(!strcmp(out, again));
        }
        const char *sch = vial_xfp_scheme(line, len);
        CHECK(!sch || !strcmp(sch, "http") || !strcmp(sch, "https"));
        char host[256];
        int port = -1;
        if (vial_listen_split(line, len, 8080, host, sizeof host, &port) == 0)
            CHECK(port >= 0 && port <= 65535 && host[0] && strlen(host) <= len);
        if (!end)
            break;
        line = end + 1;
    }
    vial_proxies_free(&p);
    free(buf);
    return 0;
}
