/* X-Request-ID: the client's (or the proxy's) when it is sane, else a
 * random one, so one request can be followed from the access log into the
 * handler's own log lines and back to the client. */
#include "app/app.h"
#include "app/ops.h"
#include "app/request_state.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Visible ASCII only and at most 200 bytes: anything else could forge log
 * lines or bloat them, and is replaced. */
static int sane(const char *v)
{
    size_t n = 0;
    for (; v[n]; n++)
        if (n >= 200 || (unsigned char)v[n] < 0x21 || (unsigned char)v[n] > 0x7e)
            return 0;
    return n > 0;
}

/* xoshiro256** per thread, seeded from getrandom: unique ids, no lock and
 * no rand(). Not secret; ids are for correlation only. */
static __thread uint64_t rng[4];
static __thread int rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next64(void)
{
    if (!rng_seeded) {
        if (getrandom(rng, sizeof rng, 0) != (ssize_t)sizeof rng) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            rng[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
            rng[1] = (uint64_t)(uintptr_t)&rng;
            rng[2] = 0x9e3779b97f4a7c15ull;
            rng[3] = (uint64_t)pthread_self();
        }
        rng_seeded = 1;
    }
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

const char *vial_req_id(vial_req *rq)
{
    vial_req_state *st = vial_rqs(rq);
    if (st && st->req_id)
        return st->req_id;
    const char *in = vial_req_header(rq, "X-Request-ID");
    const char *id = in && sane(in) ? in : NULL;
    if (!id) {
        static const char hex[] = "0123456789abcdef";
        char *out = vial_arena_alloc(&rq->arena, 33);
        if (!out)
            return "";
        uint64_t w[2] = {next64(), next64()};
        for (int i = 0; i < 16; i++) {
            unsigned byte = (unsigned)(w[i >> 3] >> (8 * (i & 7))) & 0xff;
            out[2 * i] = hex[byte >> 4];
            out[2 * i + 1] = hex[byte & 15];
        }
        out[32] = 0;
        id = out;
    }
    if (st)
        st->req_id = id;
    return id;
}

void vial_request_id_echo(vial_req *rq)
{
    vial_res_add_header(&rq->res, "X-Request-ID", vial_req_id(rq));
}
