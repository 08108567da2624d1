/* libFuzzer target for Cookie header parsing (app/cookies.c).
 *
 * Input: one or more Cookie field values separated by '\n' (at most 8; a
 * non-Cookie field is put between them). Besides the sanitizers, the
 * result is compared with a plain quadratic reading of the same rules
 * written here (so the hash index and the first-wins dedup are checked),
 * and lookups by name agree with the listing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/request_state.h"
#include "http/exchange.h"

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_cookies: invariant failed: %s (line %d)\n",   \
                    #cond, __LINE__);                                           \
            abort();                                                            \
        }                                                                       \
    } while (0)

#define MAX_FIELDS 8

typedef struct ref_pair {
    const char *n, *v;
    size_t nl, vl;
} ref_pair;

static ref_pair ref[65536];
static size_t nref;

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The rules, read the obvious way. */
static void reference(const char *p, size_t len)
{
    size_t i = 0;
    while (i <= len) {
        size_t e = i;
        while (e < len && p[e] != ';')
            e++;
        size_t eq = i;
        while (eq < e && p[eq] != '=')
            eq++;
        size_t ns = i, ne = eq, vs = eq < e ? eq + 1 : e, ve = e;
        while (ns < ne && ows(p[ns]))
            ns++;
        while (ne > ns && ows(p[ne - 1]))
            ne--;
        while (vs < ve && ows(p[vs]))
            vs++;
        while (ve > vs && ows(p[ve - 1]))
            ve--;
        if (ve - vs >= 2 && p[vs] == '"' && p[ve - 1] == '"')
            vs++, ve--;
        if (ne > ns) {
            int dup = 0;
            for (size_t k = 0; k < nref && !dup; k++)
                dup = ref[k].nl == ne - ns && !memcmp(ref[k].n, p + ns, ne - ns);
            if (!dup && nref < sizeof ref / sizeof *ref)
                ref[nref++] = (ref_pair){p + ns, p + vs, ne - ns, ve - vs};
        }
        i = e + 1;
    }
}

static vial_req *rq;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rq = calloc(1, sizeof *rq);
    CHECK(rq);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    memcpy(in, data, size);
    vial_exchange_init(rq, NULL, NULL);
    if (!vial_req_state_attach(rq, NULL))
        abort();
    rq->head.nheaders = 0;
    nref = 0;
    size_t start = 0;
    int fields = 0;
    while (start <= size && fields < MAX_FIELDS) {
        char *nl = memchr(in + start, '\n', size - start);
        size_t end = nl ? (size_t)(nl - in) : size;
        if (fields) {
            vial_http_field *o = &rq->head.headers[rq->head.nheaders++];
            o->name = (vial_span){"Cookies", 7}; /* not a Cookie field */
            o->value = (vial_span){"x=1", 3};
        }
        vial_http_field *h = &rq->head.headers[rq->head.nheaders++];
        h->name = (vial_span){fields % 2 ? "cookie" : "Cookie", 6};
        h->value = (vial_span){in + start, end - start};
        reference(in + start, end - start);
        fields++;
        if (!nl)
            break;
        start = end + 1;
    }

    unsigned n = vial_req_cookie_count(rq);
    /* names with NUL cannot be compared as C strings; the reference keeps
     * them, so only compare when none has one */
    int has_nul = 0;
    for (size_t k = 0; k < nref; k++)
        has_nul |= memchr(ref[k].n, 0, ref[k].nl) || memchr(ref[k].v, 0, ref[k].vl);
    CHECK(n == nref || nref == sizeof ref / sizeof *ref);
    for (unsigned i = 0; i < n; i++) {
        const char *name, *value;
        CHECK(vial_req_cookie_at(rq, i, &name, &value) == 0);
        CHECK(name && value);
        CHECK(!strchr(name, ';') && !strchr(value, ';'));
        if (!has_nul) {
            CHECK(strlen(name) == ref[i].nl && !memcmp(name, ref[i].n, ref[i].nl));
            CHECK(strlen(value) == ref[i].vl && !memcmp(value, ref[i].v, ref[i].vl));
            CHECK(*name && !ows(name[0]) && !ows(name[strlen(name) - 1]));
            const char *got = vial_req_cookie(rq, name);
            CHECK(got == value);
        }
    }
    CHECK(vial_req_cookie_at(rq, n, NULL, NULL) < 0);
    vial_exchange_fini(rq);
    free(in);
    return 0;
}
