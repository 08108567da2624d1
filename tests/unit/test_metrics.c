/* The metrics' hot-path helpers (app/metrics.h): the duration bucket found
 * by a log2 table against a plain linear search, the method index, and the
 * registry of metrics sources (runtime/driver.h) the client libraries use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/metrics.h"
#include "runtime/driver.h"

#include <string.h>

static unsigned linear_bucket(uint64_t ns)
{
    unsigned b = 0;
    while (b < VIAL_METRICS_NBUCKETS - 1 && ns > vial_metrics_bound_ns[b])
        b++;
    return b;
}

static void test_bucket(void **state)
{
    (void)state;
    /* Every bound, its neighbours, every power of two and its neighbours. */
    for (unsigned b = 0; b < VIAL_METRICS_NBUCKETS - 1; b++)
        for (int d = -1; d <= 1; d++) {
            uint64_t ns = vial_metrics_bound_ns[b] + (uint64_t)(int64_t)d;
            assert_int_equal(vial_metrics_bucket(ns), linear_bucket(ns));
        }
    for (unsigned k = 0; k < 64; k++)
        for (int d = -1; d <= 1; d++) {
            uint64_t ns = ((uint64_t)1 << k) + (uint64_t)(int64_t)d;
            assert_int_equal(vial_metrics_bucket(ns), linear_bucket(ns));
        }
    assert_int_equal(vial_metrics_bucket(0), 0);
    assert_int_equal(vial_metrics_bucket(UINT64_MAX), VIAL_METRICS_NBUCKETS - 1);
    uint64_t x = 88172645463325252ull; /* xorshift: a spread of values */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t ns = x >> (x % 40);
        assert_int_equal(vial_metrics_bucket(ns), linear_bucket(ns));
    }
}

static void test_method(void **state)
{
    (void)state;
    const char *line = "GET / HTTP/1.1";
    assert_int_equal(vial_metrics_method(line, 3), 0);
    assert_int_equal(vial_metrics_method("HEAD /", 4), 1);
    assert_int_equal(vial_metrics_method("POST /", 4), 2);
    assert_int_equal(vial_metrics_method("OPTIONS /", 7), 6);
    assert_int_equal(vial_metrics_method("GETX /", 4), 7);
    assert_int_equal(vial_metrics_method("GEX /", 3), 7);
    assert_int_equal(vial_metrics_method("", 0), 7);
}

typedef struct buf {
    char b[1024];
    size_t n;
} buf;

static void append(void *ctx, const char *p, size_t n)
{
    buf *m = ctx;
    assert_true(m->n + n < sizeof m->b);
    memcpy(m->b + m->n, p, n);
    m->n += n;
    m->b[m->n] = 0;
}

static void src_a(void *data, vial_metrics_out *out)
{
    vial_metrics_family(out, "a_total", "counter", "A things.");
    vial_metrics_sample(out, "a_total", "pool=\"0\"", *(uint64_t *)data);
    vial_metrics_sample_pool(out, "a_total", 4294967295u, 7);
}

static void src_b(void *data, vial_metrics_out *out)
{
    (void)data;
    vial_metrics_family(out, "b", "gauge", "B now.");
    vial_metrics_sample(out, "b", "", 18446744073709551615ull);
}

static void test_sources(void **state)
{
    (void)state;
    uint64_t a = 42;
    buf m = {.n = 0};
    vial_metrics_out out = {append, &m};
    vial_metrics_sources_write(&out);
    assert_int_equal(m.n, 0);
    assert_int_equal(vial_metrics_source_add(src_a, &a), 0);
    assert_int_equal(vial_metrics_source_add(src_b, NULL), 0);
    vial_metrics_sources_write(&out);
    assert_string_equal(m.b, "# HELP a_total A things.\n# TYPE a_total counter\na_total{pool=\"0\"} 42\n"
                             "a_total{pool=\"4294967295\"} 7\n# HELP b B now.\n# TYPE b gauge\nb 18446744073709551615\n");
    vial_metrics_source_del(src_a, &a);
    m.n = 0;
    vial_metrics_sources_write(&out);
    assert_string_equal(m.b, "# HELP b B now.\n# TYPE b gauge\nb 18446744073709551615\n");
    vial_metrics_source_del(src_b, NULL);
    assert_int_equal(vial_metrics_source_add(src_a, &a), 0); /* the tail was fixed up */
    m.n = 0;
    vial_metrics_sources_write(&out);
    assert_string_equal(m.b, "# HELP a_total A things.\n# TYPE a_total counter\na_total{pool=\"0\"} 42\n"
                             "a_total{pool=\"4294967295\"} 7\n");
    vial_metrics_source_del(src_a, &a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_method),
        cmocka_unit_test(test_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
