/* libFuzzer target for the Accept-Encoding parser and the choice of coding
 * (app/accept_encoding.c).
 *
 * Input: the field value, byte for byte (in a buffer of exactly its size,
 * so a read past the end is caught). Besides the sanitizers: every weight
 * is -1 or in 0..1000; the choice is one of the available codings or
 * identity and agrees with the ranking; the ranking is sorted by weight,
 * without repeats; a value that names neither gzip, br nor "*" (in any
 * case) never gets a compressed coding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/compress.h"
#include "runtime/ascii.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "fuzz_accept_encoding: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                                \
            abort();                                                                 \
        }                                                                            \
    } while (0)

static int mentions(const char *p, size_t n, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl <= n; i++)
        if (!vial_ascii_ncasecmp(p + i, word, wl))
            return 1;
    return 0;
}

static int weight_ok(int q)
{
    return q == -1 || (q >= 0 && q <= 1000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *h = malloc(size ? size : 1);
    if (!h)
        return 0;
    memcpy(h, data, size);

    vial_accept_enc ae;
    vial_accept_enc_parse(h, size, &ae);
    CHECK(weight_ok(ae.q_gzip) && weight_ok(ae.q_br) && weight_ok(ae.q_identity) && weight_ok(ae.q_star));

    for (unsigned avail = 0; avail < 4; avail++) {
        unsigned mask = avail << 1; /* the gzip and br bits */
        int rank[2] = {-1, -1};
        int n = vial_accept_enc_rank(h, size, mask, rank);
        CHECK(n >= 0 && n <= 2);
        for (int i = 0; i < n; i++)
            CHECK((rank[i] == VIAL_CODING_GZIP || rank[i] == VIAL_CODING_BR) &&
                  (mask & VIAL_CODING_BIT(rank[i])));
        CHECK(n < 2 || rank[0] != rank[1]);
        int c = vial_accept_enc_choose(h, size, mask);
        CHECK(c == (n ? rank[0] : VIAL_CODING_IDENTITY));
        if (!mentions(h, size, "gzip") && !mentions(h, size, "br") && !mentions(h, size, "*"))
            CHECK(c == VIAL_CODING_IDENTITY);
        if (n == 2) {
            /* sorted by weight, br first on a tie */
            int q0 = rank[0] == VIAL_CODING_BR ? ae.q_br : ae.q_gzip;
            int q1 = rank[1] == VIAL_CODING_BR ? ae.q_br : ae.q_gzip;
            if (q0 >= 0 && q1 >= 0)
                CHECK(q0 > q1 || (q0 == q1 && rank[0] == VIAL_CODING_BR));
        }
    }
    /* no field at all: identity */
    CHECK(vial_accept_enc_choose(NULL, 0, 6) == VIAL_CODING_IDENTITY);
    free(h);
    return 0;
}
