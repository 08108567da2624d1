/* bench-template [N]: renders a fortunes-like page (a 12-row table with
 * escaping, through extends/block and a for loop) N times into one reused
 * buffer and prints the time per render. */
#include "runtime/arena.h"

#include <vial/template.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *base_src =
    "<!DOCTYPE html>\n<html><head><title>{% block title %}{% endblock %}</title></head>"
    "<body>{% block body %}{% endblock %}</body></html>\n";
static const char *page_src =
    "{% extends \"base.html\" %}{% block title %}Fortunes{% endblock %}\n"
    "{% block body %}<table><tr><th>id</th><th>message</th></tr>"
    "{% for f in fortunes %}<tr><td>{{ f.id }}</td><td>{{ f.message }}</td></tr>{% endfor %}"
    "</table>{% endblock %}\n";

static const char *msgs[] = {
    "fortune: No such file or directory",
    "A computer scientist is someone who fixes things that aren't broken.",
    "After enough decimal places, nobody gives a damn.",
    "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    "A computer program does what you tell it to do, not what you want it to do.",
    "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen",
    "Any program that runs right is obsolete.",
    "A list is only as strong as its weakest link. — Donald Knuth",
    "Feature: A bug with seniority.",
    "Computers make very fast, very accurate mistakes.",
    "<script>alert(\"This should not be displayed in a browser alert box.\");</script>",
    "フレームワークのベンチマーク",
};

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    vial_tmpl_env *env = vial_tmpl_env_new(NULL);
    vial_tmpl_error err;
    vial_tmpl *t;
    if (vial_tmpl_add_source(env, "base.html", base_src, strlen(base_src), NULL, &err) ||
        vial_tmpl_add_source(env, "fortunes.html", page_src, strlen(page_src), &t, &err)) {
        fprintf(stderr, "%s:%d: %s\n", err.name, err.line, err.message);
        return 1;
    }
    vial_arena a;
    static char block[64 * 1024];
    vial_tmpl_out out = {0};
    size_t bytes = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        vial_arena_init(&a, block, sizeof block);
        vial_tmpl_value ctx = vial_tmpl_dict(&a), list = vial_tmpl_list(&a);
        for (int k = 0; k < 12; k++) {
            vial_tmpl_value f = vial_tmpl_dict(&a);
            vial_tmpl_set(&a, f, "id", vial_tmpl_int(k + 1));
            vial_tmpl_set(&a, f, "message", vial_tmpl_cstr(msgs[k]));
            vial_tmpl_push(&a, list, f);
        }
        vial_tmpl_set(&a, ctx, "fortunes", list);
        out.len = 0;
        if (vial_tmpl_render(t, ctx, &a, &out, &err) != 0) {
            fprintf(stderr, "%s:%d: %s\n", err.name, err.line, err.message);
            return 1;
        }
        bytes = out.len;
        if (i == 0)
            printf("arena: %zu bytes used of the %zu-byte first block%s\n",
                   (size_t)(a.cur - block), sizeof block, a.blocks ? " (and overflow blocks)" : "");
        vial_arena_reset(&a, block, sizeof block);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / (double)n;
    printf("template:     %ld renders, %zu bytes each: %.2f us per render (context built in the loop)\n", n, bytes, us);

    /* the same page written by hand: appends and an escape per message */
    vial_tmpl_out hand = {0};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        hand.len = 0;
        static const char head[] = "<!DOCTYPE html>\n<html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>";
        if (hand.cap < 4096) {
            hand.data = realloc(hand.data, 4096);
            hand.cap = 4096;
        }
        memcpy(hand.data, head, sizeof head - 1);
        hand.len = sizeof head - 1;
        for (int k = 0; k < 12; k++) {
            char num[32];
            int nl = snprintf(num, sizeof num, "<tr><td>%d</td><td>", k + 1);
            memcpy(hand.data + hand.len, num, (size_t)nl);
            hand.len += (size_t)nl;
            vial_tmpl_escape(&hand, msgs[k], strlen(msgs[k]));
            memcpy(hand.data + hand.len, "</td></tr>", 10);
            hand.len += 10;
        }
        static const char tail[] = "</table></body></html>";
        memcpy(hand.data + hand.len, tail, sizeof tail - 1);
        hand.len += sizeof tail - 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double hus = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / (double)n;
    printf("hand-written: %ld renders, %zu bytes each: %.2f us per render\n", n, hand.len, hus);
    free(hand.data);
    if (argc > 2)
        fwrite(out.data, 1, out.len, stdout);
    free(out.data);
    vial_tmpl_env_free(env);
    return 0;
}
