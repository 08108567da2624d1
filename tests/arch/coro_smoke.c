/* A dependency-free smoke test of the coroutine switch, for architectures
 * the CI machine cannot run natively: scripts/test-aarch64.sh cross-compiles
 * it with the AArch64 switch and runs it under qemu-user. It checks that
 * coroutines start, yield, resume with their callee-saved registers and
 * floating-point state intact, exchange wake results, and are cancelled. */
#include "runtime/coro.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vial_loop loop;
static int failures;

#define CHECK(c)                                                                 \
    do {                                                                         \
        if (!(c)) {                                                              \
            fprintf(stderr, "coro_smoke: %s:%d: %s\n", __FILE__, __LINE__, #c);  \
            failures++;                                                          \
        }                                                                        \
    } while (0)

static int order[8], norder;

static void stepper(void *arg)
{
    /* values that must survive switches in callee-saved registers */
    volatile long a = (long)(intptr_t)arg * 1000 + 7;
    volatile double d = (double)(intptr_t)arg * 1.5;
    order[norder++] = (int)(intptr_t)arg;
    vial_coro_yield();
    CHECK(a == (long)(intptr_t)arg * 1000 + 7);
    CHECK(d == (double)(intptr_t)arg * 1.5);
    order[norder++] = (int)(intptr_t)arg + 10;
}

static int woke;
static void parker(void *arg)
{
    woke = vial_coro_park();
}

static int sleep_rc = 1;
static void sleeper(void *arg)
{
    sleep_rc = vial_coro_sleep_ns(5 * 1000000ull);
}

static long deep(int n)
{
    volatile char frame[512];
    frame[0] = (char)n;
    return n ? deep(n - 1) + frame[0] : 0;
}

static long deep_result;
static void deep_fn(void *arg)
{
    deep_result = deep(60); /* ~30 KiB of frames on a 64 KiB stack */
}

int main(void)
{
    if (vial_loop_init(&loop, 0) != 0)
        return 2;
    loop.coro_pool = vial_coro_pool_new(64 * 1024, 4);

    vial_coro *a = vial_coro_new(&loop, stepper, (void *)1);
    vial_coro *b = vial_coro_new(&loop, stepper, (void *)2);
    vial_coro_resume(a);
    vial_coro_resume(b);
    vial_loop_run_once(&loop, 0);
    int want[] = {1, 2, 11, 12};
    CHECK(norder == 4 && !memcmp(order, want, sizeof want));

    vial_coro *p = vial_coro_new(&loop, parker, NULL);
    vial_coro_resume(p);
    vial_coro_wake(p, 42);
    vial_loop_run_once(&loop, 0);
    CHECK(woke == 42);

    p = vial_coro_new(&loop, parker, NULL);
    vial_coro_resume(p);
    vial_coro_cancel(p);
    vial_loop_run_once(&loop, 0);
    CHECK(woke == -ECANCELED);

    vial_coro *s = vial_coro_new(&loop, sleeper, NULL);
    vial_coro_resume(s);
    for (int i = 0; i < 100 && sleep_rc == 1; i++)
        vial_loop_run_once(&loop, 10);
    CHECK(sleep_rc == 0);

    vial_coro *d = vial_coro_new(&loop, deep_fn, NULL);
    vial_coro_resume(d);
    CHECK(deep_result == 60 * 61 / 2);

    vial_coro_pool_free(loop.coro_pool);
    vial_loop_fini(&loop);
    if (failures)
        return 1;
    printf("coro_smoke: 5 checks passed, 0 failed\n");
    return 0;
}
