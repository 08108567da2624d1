/* Router micro-benchmark: does lookup cost stay flat as the rule count grows?
 *
 * Builds routers with 10, 100, 1000 and 10000 rules of the shapes real apps
 * have (static pages, /api/v1/<name>/<int:id>, nested resources with several
 * parameters, trailing-slash directories, a <path:> catch-all) and
 * times lookups of a fixed mix of paths that hit rules in every router: a
 * typical app's routes, present in each router, plus the rule registered
 * last (the worst case for a linear router). Misses (404) and strict-slash
 * redirects are timed separately.
 *
 *   router_bench [--lookups N] [--check]
 *
 * Prints ns/lookup per router size and the 1000-vs-10 ratio; the goal is
 * "routing 1,000 routes costs within 10% of routing 10". --check exits 1
 * when the ratio is above 1.10. Each figure is the best of several rounds
 * of thread CPU time, the sizes taking turns within a round, to keep
 * frequency scaling and other tenants of the machine out of the comparison.
 * On a busy machine the timings still wander by 10-20%; the instruction
 * counts of `valgrind --tool=callgrind` (vial_router_match's inclusive cost
 * per call) compare the sizes deterministically. */
#include "app/router.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 40
#define MAX_PATHS 16

static const size_t sizes[] = {10, 100, 1000, 10000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* The rules every router has: a small app's routes. */
static const char *const base_rules[] = {
    "/",
    "/login",
    "/about/",
    "/users/<int:id>",
    "/users/<int:id>/posts/<slug>",
    "/api/v1/items/<int:id>",
    "/static/<path:filename>",
};
#define NBASE (sizeof base_rules / sizeof base_rules[0])

/* Paths that hit the base rules. */
static const char *const base_paths[] = {
    "/",
    "/login",
    "/about/",
    "/users/42",
    "/users/42/posts/hello-world",
    "/api/v1/items/7",
    "/static/css/site.css",
};

/* The thread's CPU time: time spent preempted by other processes on a
 * shared machine does not count. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The i-th resource name: eight pseudo-random lowercase letters, like the
 * distinct words of a real app's URLs ("invoices", "webhooks") and unlike
 * "resource17", whose shared prefix and digit-by-digit branching would
 * measure the tree's depth on one pathological family of names. */
static void word(size_t i, char out[9])
{
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15u + 0x2545F4914F6CDD1Du;
    for (int k = 0; k < 8; k++) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9u;
        x ^= x >> 32;
        out[k] = (char)('a' + x % 26);
    }
    out[8] = 0;
}

/* The i-th generated rule (i counts from 0 after the base rules); the
 * shapes cycle so every router mixes them. */
static void gen_rule(size_t i, char *buf, size_t n)
{
    char w[9];
    word(i, w);
    switch (i % 5) {
    case 0:
        snprintf(buf, n, "/pages/%s", w);
        break;
    case 1:
        snprintf(buf, n, "/api/v1/%s/<int:id>", w);
        break;
    case 2:
        snprintf(buf, n, "/api/v1/%s/<int:id>/sub/<name>", w);
        break;
    case 3:
        snprintf(buf, n, "/orgs/<org>/%s/<int:member>/settings", w);
        break;
    default:
        snprintf(buf, n, "/docs/%s/", w);
        break;
    }
}

/* A path that the i-th generated rule matches. */
static void gen_path(size_t i, char *buf, size_t n)
{
    char w[9];
    word(i, w);
    switch (i % 5) {
    case 0:
        snprintf(buf, n, "/pages/%s", w);
        break;
    case 1:
        snprintf(buf, n, "/api/v1/%s/12345", w);
        break;
    case 2:
        snprintf(buf, n, "/api/v1/%s/12345/sub/details", w);
        break;
    case 3:
        snprintf(buf, n, "/orgs/acme/%s/99/settings", w);
        break;
    default:
        snprintf(buf, n, "/docs/%s/", w);
        break;
    }
}

static vial_router *build_router(size_t nrules)
{
    static const char *const get[] = {"GET", NULL};
    vial_router *r = vial_router_new();
    if (!r)
        return NULL;
    for (size_t i = 0; i < NBASE; i++)
        if (vial_router_add(r, base_rules[i], get, (void *)base_rules[i], NULL) != 0)
            goto fail;
    for (size_t i = 0; i + NBASE < nrules; i++) {
        char pat[128];
        gen_rule(i, pat, sizeof pat);
        if (vial_router_add(r, pat, get, NULL, NULL) != 0)
            goto fail;
    }
    return r;
fail:
    fprintf(stderr, "router_bench: cannot build a router of %zu rules\n", nrules);
    vial_router_free(r);
    return NULL;
}

/* A set of paths looked up round-robin, and the result each must give. */
typedef struct probe {
    const char *name;
    char paths[MAX_PATHS][128];
    size_t npaths;
    int want;
} probe;

static unsigned long sink; /* keeps the lookups from being optimised away */

/* One timed sample: ns per lookup over `lookups` lookups of p. */
static double sample(vial_router *r, const probe *p, size_t lookups)
{
    char buf[1024];
    vial_arena a;
    vial_match m;
    double t0 = now_ns();
    for (size_t i = 0, k = 0; i < lookups; i++) {
        vial_arena_init(&a, buf, sizeof buf);
        int rc = vial_router_match(r, p->paths[k], "GET", &a, &m);
        if (rc != p->want) {
            fprintf(stderr, "router_bench: %s gave %d, expected %d\n", p->paths[k], rc, p->want);
            exit(2);
        }
        sink += m.nparams + (unsigned long)(uintptr_t)m.target;
        if (++k == p->npaths)
            k = 0;
    }
    return (now_ns() - t0) / (double)lookups;
}

enum { P_MIX, P_LAST, P_MISS, P_REDIRECT, NPROBES };

static void make_probes(size_t nrules, probe *p)
{
    /* The hit mix: the base app's paths plus the rule registered last. */
    p[P_MIX] = (probe){.name = "hit mix", .want = VIAL_MATCH_OK};
    for (size_t i = 0; i < NBASE; i++)
        snprintf(p[P_MIX].paths[i], 128, "%s", base_paths[i]);
    gen_path(nrules - NBASE - 1, p[P_MIX].paths[NBASE], 128);
    p[P_MIX].npaths = NBASE + 1;
    p[P_LAST] = (probe){.name = "last rule", .want = VIAL_MATCH_OK, .npaths = 1};
    gen_path(nrules - NBASE - 1, p[P_LAST].paths[0], 128);
    p[P_MISS] = (probe){.name = "404", .want = VIAL_MATCH_NONE, .npaths = 3};
    char w[9];
    word(nrules * 10 + 1, w); /* a name no router has */
    snprintf(p[P_MISS].paths[0], 128, "/api/v1/%s/12345", w);
    snprintf(p[P_MISS].paths[1], 128, "/users/42/comments");
    snprintf(p[P_MISS].paths[2], 128, "/nope");
    p[P_REDIRECT] = (probe){.name = "308", .want = VIAL_MATCH_REDIRECT, .npaths = 1};
    snprintf(p[P_REDIRECT].paths[0], 128, "/about");
}

int main(int argc, char **argv)
{
    size_t lookups = 2000000;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lookups") && i + 1 < argc)
            lookups = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--check"))
            check = 1;
        else {
            fprintf(stderr, "usage: %s [--lookups N] [--check]\n", argv[0]);
            return 2;
        }
    }
    size_t per_round = lookups / ROUNDS ? lookups / ROUNDS : 1;

    vial_router *routers[NSIZES];
    static probe probes[NSIZES][NPROBES];
    double build_ms[NSIZES];
    for (size_t s = 0; s < NSIZES; s++) {
        double t0 = now_ns();
        if (!(routers[s] = build_router(sizes[s])))
            return 1;
        build_ms[s] = (now_ns() - t0) / 1e6;
        make_probes(sizes[s], probes[s]);
    }
    /* Sizes take turns within each round, so a noisy moment hurts them
     * alike; each figure is the best round. */
    double best[NSIZES][NPROBES];
    for (size_t s = 0; s < NSIZES; s++)
        for (int p = 0; p < NPROBES; p++)
            best[s][p] = 1e30;
    for (int round = 0; round < ROUNDS; round++)
        for (int p = 0; p < NPROBES; p++)
            for (size_t s = 0; s < NSIZES; s++) {
                double ns = sample(routers[s], &probes[s][p], per_round);
                if (ns < best[s][p])
                    best[s][p] = ns;
            }
    for (size_t s = 0; s < NSIZES; s++)
        vial_router_free(routers[s]);

    printf("router lookup: ns/lookup, best of %d rounds of %zu lookups\n", ROUNDS, per_round);
    printf("%8s", "rules");
    for (int p = 0; p < NPROBES; p++)
        printf(" %10s", probes[0][p].name);
    printf(" %10s\n", "build ms");
    for (size_t s = 0; s < NSIZES; s++) {
        printf("%8zu", sizes[s]);
        for (int p = 0; p < NPROBES; p++)
            printf(" %10.1f", best[s][p]);
        printf(" %10.2f\n", build_ms[s]);
    }
    double ratio = best[2][P_MIX] / best[0][P_MIX];
    printf("hit mix, 1000 vs 10 rules: %.3f (goal <= 1.10: %s)\n", ratio,
           ratio <= 1.10 ? "met" : "NOT met");
    printf("last rule, 1000 vs 10 rules: %.3f\n", best[2][P_LAST] / best[0][P_LAST]);
    if (sink == 42)
        puts("");
    return check && ratio > 1.10 ? 1 : 0;
}
