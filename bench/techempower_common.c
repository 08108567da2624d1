#include "techempower_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int te_random_id(void)
{
    static __thread uint64_t s;
    if (!s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&s ^ (uint64_t)ts.tv_sec;
        if (!s)
            s = 0x9e3779b97f4a7c15ull;
    }
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return (int)(((s * 2685821657736338717ull) >> 33) % TE_WORLD_ROWS) + 1;
}

int te_queries(vial_req *rq)
{
    const char *q = vial_req_arg(rq, "queries");
    if (!q || !*q)
        return 1;
    char *end;
    long n = strtol(q, &end, 10);
    if (*end || end == q || n < 1)
        return 1;
    return n > TE_MAX_QUERIES ? TE_MAX_QUERIES : (int)n;
}

void te_world_json(vial_json *j, int64_t id, int64_t rn)
{
    vial_json_obj(j);
    vial_json_key(j, "id");
    vial_json_int(j, id);
    vial_json_key(j, "randomNumber");
    vial_json_int(j, rn);
    vial_json_end(j);
}

static int by_message(const void *a, const void *b)
{
    return strcmp(((const te_fortune *)a)->message, ((const te_fortune *)b)->message);
}

/* Stable, like glibc's qsort (a merge sort); for the page's 13 rows an
 * insertion sort skips qsort's indirect calls and copies through a
 * scratch buffer (1.7% of a /fortunes request's server CPU). */
static void sort_by_message(te_fortune *f, size_t n)
{
    if (n > 32) {
        qsort(f, n, sizeof *f, by_message);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        te_fortune x = f[i];
        size_t j = i;
        for (; j > 0 && strcmp(f[j - 1].message, x.message) > 0; j--)
            f[j] = f[j - 1];
        f[j] = x;
    }
}

/* Appends s with &, <, >, " and ' escaped. */
static void append_escaped(vial_res *rs, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep;
        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        vial_res_append_body(rs, run, (size_t)(s - run));
        vial_res_append_body(rs, rep, strlen(rep));
        run = s + 1;
    }
    vial_res_append_body(rs, run, (size_t)(s - run));
}

#define LIT(rs, s) vial_res_append_body((rs), (s), sizeof(s) - 1)

size_t te_fortunes_prepare(te_fortune *f, size_t n)
{
    f[n].id = 0;
    f[n].message = "Additional fortune added at request time.";
    n++;
    sort_by_message(f, n);
    return n;
}

int te_fortunes_page(vial_res *rs, te_fortune *f, size_t n)
{
    n = te_fortunes_prepare(f, n);
    vial_res_set_status(rs, 200);
    vial_res_add_header(rs, "Content-Type", "text/html; charset=utf-8");
    LIT(rs, "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            "<tr><th>id</th><th>message</th></tr>");
    for (size_t i = 0; i < n; i++) {
        char id[24];
        int len = snprintf(id, sizeof id, "%lld", (long long)f[i].id);
        LIT(rs, "<tr><td>");
        vial_res_append_body(rs, id, (size_t)len);
        LIT(rs, "</td><td>");
        append_escaped(rs, f[i].message);
        LIT(rs, "</td></tr>");
    }
    return LIT(rs, "</table></body></html>");
}

int te_fortunes_render(vial_req *rq, vial_res *rs, te_fortune *f, size_t n)
{
    n = te_fortunes_prepare(f, n);
    struct vial_arena *a = vial_req_arena(rq);
    vial_tmpl_value list = vial_tmpl_list(a), ctx = vial_render_ctx(rq);
    for (size_t i = 0; i < n; i++) {
        vial_tmpl_value row = vial_tmpl_dict(a);
        if (vial_tmpl_set(a, row, "id", vial_tmpl_int(f[i].id)) ||
            vial_tmpl_set(a, row, "message", vial_tmpl_cstr(f[i].message)) ||
            vial_tmpl_push(a, list, row))
            return vial_fail(rs, "out of memory");
    }
    if (vial_tmpl_set(a, ctx, "fortunes", list))
        return vial_fail(rs, "out of memory");
    return vial_render(rq, rs, "fortunes.html", ctx);
}
