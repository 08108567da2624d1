/* SSE encoding (no field injection), the hub's order across loop threads
 * and publisher threads, its slow-subscriber policies, and SSE streams of a
 * topic through the test client (include/vial/realtime.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "app/hub.h"
#include "runtime/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- encoding ------------------------------------------------------------------------- */

static void expect_bytes(const vial_sse_event *ev, const char *want, size_t len)
{
    char out[512];
    long n = vial_sse_encode(ev, out, sizeof out);
    assert_true(n >= 0);
    assert_int_equal((size_t)n, len);
    assert_memory_equal(out, want, len);
}

static void expect_encoding(const vial_sse_event *ev, const char *want)
{
    expect_bytes(ev, want, strlen(want));
}

static void test_encode_fields(void **state)
{
    (void)state;
    expect_encoding(&(vial_sse_event){.event = "tick", .id = "7", .data = "x", .len = 1, .retry_ms = 1500},
                    "event: tick\nid: 7\nretry: 1500\ndata: x\n\n");
    /* no data: no data line (the client dispatches nothing) */
    expect_encoding(&(vial_sse_event){.retry_ms = 10}, "retry: 10\n\n");
    /* empty data: one empty data line (an event with data "") */
    expect_encoding(&(vial_sse_event){.data = "", .len = 0}, "data: \n\n");
    /* an empty id is a field (it resets the last id); an empty event is none */
    expect_encoding(&(vial_sse_event){.event = "", .id = "", .data = "d", .len = 1}, "id: \ndata: d\n\n");
}

static void test_encode_multiline_data(void **state)
{
    (void)state;
    const char d[] = "a\nb\r\nc\rd\n";
    expect_encoding(&(vial_sse_event){.data = d, .len = sizeof d - 1},
                    "data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n");
    /* what looks like a field inside data stays data */
    const char evil[] = "x\n\nevent: evil\rid: 1\r\n\r\nretry: 0";
    expect_encoding(&(vial_sse_event){.data = evil, .len = sizeof evil - 1},
                    "data: x\ndata: \ndata: event: evil\ndata: id: 1\ndata: \ndata: retry: 0\n\n");
    /* a NUL inside data is bytes like any other */
    expect_bytes(&(vial_sse_event){.data = "a\0b", .len = 3}, "data: a\0b\n\n", 11);
}

static void test_encode_refuses_injection(void **state)
{
    (void)state;
    const char *bad[] = {"a\nb", "a\rb", "a\r\nb", "\n", "x\r"};
    char out[64];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(vial_sse_encode(&(vial_sse_event){.event = bad[i], .data = "x", .len = 1}, out,
                                         sizeof out),
                         -EINVAL);
        assert_int_equal(vial_sse_encode(&(vial_sse_event){.id = bad[i], .data = "x", .len = 1}, out,
                                         sizeof out),
                         -EINVAL);
    }
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_publish_event(h, "t", &(vial_sse_event){.event = "a\nb", .data = "x", .len = 1}),
                     -EINVAL);
    assert_int_equal(vial_hub_publish_event(h, "t", &(vial_sse_event){.id = "1\r", .data = "x", .len = 1}),
                     -EINVAL);
    vial_hub_free(h);
}

static void test_encode_short_buffer(void **state)
{
    (void)state;
    char out[4];
    vial_sse_event ev = {.data = "hello", .len = 5};
    assert_int_equal(vial_sse_encode(&ev, out, sizeof out), 13); /* "data: hello\n\n" */
    assert_int_equal(vial_sse_encode(&ev, NULL, 0), 13);
}

/* --- the hub across threads ------------------------------------------------------------- */

#define LOOPS 3
#define PUBS 4
#define PER_PUB 3000

typedef struct sub_ctx {
    vial_loop *loop;
    vial_hub *hub;
    const char *topic;
    vial_sub *sub;
    int drain;          /* the kick takes what is queued */
    long next[PUBS];    /* the next sequence expected of each publisher */
    atomic_long got;
    atomic_int bad;     /* a message out of order */
    vial_msg m;
} sub_ctx;

static void take_all(sub_ctx *c)
{
    vial_shared_bytes *b;
    while ((b = vial_sub_take_frame(c->sub))) {
        /* a server text frame: 2 or 4 header bytes, then "P<p>:<seq>" */
        size_t off = (b->bytes[1] & 0x7f) == 126 ? 4 : 2;
        char text[64];
        size_t n = b->len - off < sizeof text - 1 ? b->len - off : sizeof text - 1;
        memcpy(text, b->bytes + off, n);
        text[n] = 0;
        int p;
        long seq;
        if (sscanf(text, "P%d:%ld", &p, &seq) == 2 && p >= 0 && p < PUBS) {
            if (seq != c->next[p])
                atomic_store(&c->bad, 1);
            c->next[p] = seq + 1;
        }
        atomic_fetch_add(&c->got, 1);
        vial_shared_bytes_unref(b);
    }
}

static void kick(void *arg)
{
    sub_ctx *c = arg;
    if (c->drain)
        take_all(c);
}

static void open_cb(vial_loop *l, vial_msg *m)
{
    sub_ctx *c = (sub_ctx *)((char *)m - offsetof(sub_ctx, m));
    c->sub = vial_hub_sub_open(c->hub, c->topic, kick, c);
}

static void close_cb(vial_loop *l, vial_msg *m)
{
    sub_ctx *c = (sub_ctx *)((char *)m - offsetof(sub_ctx, m));
    vial_hub_sub_free(c->sub);
    c->sub = NULL;
}

static void drain_cb(vial_loop *l, vial_msg *m)
{
    sub_ctx *c = (sub_ctx *)((char *)m - offsetof(sub_ctx, m));
    take_all(c);
}

static void stop_cb(vial_loop *l, vial_msg *m)
{
    vial_loop_stop(l);
    free(m);
}

typedef struct loop_thread {
    vial_loop loop;
    pthread_t tid;
} loop_thread;

static void *loop_main(void *arg)
{
    loop_thread *t = arg;
    vial_loop_run(&t->loop);
    return NULL;
}

static void loops_start(loop_thread *t, int n)
{
    for (int i = 0; i < n; i++) {
        assert_int_equal(vial_loop_init(&t[i].loop, i), 0);
        assert_int_equal(pthread_create(&t[i].tid, NULL, loop_main, &t[i]), 0);
    }
}

static void loops_stop(loop_thread *t, int n)
{
    for (int i = 0; i < n; i++) {
        vial_msg *m = calloc(1, sizeof *m);
        m->cb = stop_cb;
        vial_loop_post(&t[i].loop, m);
        pthread_join(t[i].tid, NULL);
        vial_loop_fini(&t[i].loop);
    }
}

typedef struct marker {
    vial_msg m;
    atomic_int done;
} marker;

static void mark_cb(vial_loop *l, vial_msg *m)
{
    atomic_store(&((marker *)m)->done, 1);
}

/* Runs cb for c on its loop and returns once it ran: a marker posted behind
 * it runs after it (mailboxes are FIFO). */
static void run_on(sub_ctx *c, vial_msg_cb cb)
{
    marker mk = {.m.cb = mark_cb};
    c->m.cb = cb;
    vial_loop_post(c->loop, &c->m);
    vial_loop_post(c->loop, &mk.m);
    while (!atomic_load(&mk.done))
        usleep(500);
}

typedef struct pub_arg {
    vial_hub *hub;
    int id;
} pub_arg;

static void *publisher(void *arg)
{
    pub_arg *p = arg;
    char text[32];
    for (long i = 0; i < PER_PUB; i++) {
        int n = snprintf(text, sizeof text, "P%d:%ld", p->id, i);
        vial_hub_publish(p->hub, "order", text, (size_t)n);
    }
    return NULL;
}

static void test_order_across_threads(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_set_policy(h, "order", VIAL_HUB_DISCONNECT, VIAL_HUB_QUEUE_MAX), 0);
    loop_thread lt[LOOPS];
    loops_start(lt, LOOPS);
    sub_ctx subs[LOOPS * 2];
    memset(subs, 0, sizeof subs);
    for (int i = 0; i < LOOPS * 2; i++) {
        /* half take each message as it comes, half take what piled up */
        subs[i] = (sub_ctx){.loop = &lt[i % LOOPS].loop, .hub = h, .topic = "order", .drain = i % 2};
        run_on(&subs[i], open_cb);
        assert_non_null(subs[i].sub);
    }
    vial_hub_counts before;
    vial_hub_stats(&before);
    assert_int_equal(before.subscribers, LOOPS * 2);
    pthread_t pt[PUBS];
    pub_arg pa[PUBS];
    for (int p = 0; p < PUBS; p++) {
        pa[p] = (pub_arg){h, p};
        assert_int_equal(pthread_create(&pt[p], NULL, publisher, &pa[p]), 0);
    }
    for (int p = 0; p < PUBS; p++)
        pthread_join(pt[p], NULL);
    for (int i = 0; i < LOOPS * 2; i++) {
        for (int w = 0; w < 5000 && atomic_load(&subs[i].got) < PUBS * PER_PUB; w++) {
            usleep(1000);
            if (!subs[i].drain)
                run_on(&subs[i], drain_cb);
        }
        assert_int_equal(atomic_load(&subs[i].got), PUBS * PER_PUB);
        assert_int_equal(atomic_load(&subs[i].bad), 0);
        assert_false(vial_sub_ended(subs[i].sub));
    }
    for (int i = 0; i < LOOPS * 2; i++)
        run_on(&subs[i], close_cb);
    vial_hub_counts after;
    vial_hub_stats(&after);
    assert_int_equal(after.subscribers, 0);
    assert_int_equal(after.published - before.published, PUBS * PER_PUB);
    loops_stop(lt, LOOPS);
    vial_hub_free(h);
}

/* Subscribers leave from the middle, the end and the start of a loop's
 * set and others join: each still there gets each message once, the ones
 * gone nothing more (the drain's array moves its last entry into a hole). */
static void test_leave_and_join(void **state)
{
    (void)state;
    enum { N = 9 };
    vial_hub *h = vial_hub_new();
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx subs[N];
    long expect[N] = {0};
    memset(subs, 0, sizeof subs);
    for (int i = 0; i < N; i++)
        subs[i] = (sub_ctx){.loop = &lt[0].loop, .hub = h, .topic = "lj", .drain = 1};
    for (int i = 0; i < 7; i++)
        run_on(&subs[i], open_cb);
    static const struct {
        int id, join;
    } steps[] = {{3, 0}, {6, 0}, {7, 1}, {8, 1}, {0, 0}, {4, 0}, {7, 0}};
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        run_on(&subs[steps[k].id], steps[k].join ? open_cb : close_cb);
        char text[16];
        int n = snprintf(text, sizeof text, "P0:%zu", k);
        assert_true(vial_hub_publish(h, "lj", text, (size_t)n) >= 0);
        for (int j = 0; j < N; j++)
            expect[j] += subs[j].sub != NULL;
        /* the drain was posted before this marker: it ran */
        marker mk = {.m.cb = mark_cb};
        vial_loop_post(&lt[0].loop, &mk.m);
        while (!atomic_load(&mk.done))
            usleep(500);
        for (int j = 0; j < N; j++)
            assert_int_equal(atomic_load(&subs[j].got), expect[j]);
    }
    for (int i = 0; i < N; i++)
        if (subs[i].sub)
            run_on(&subs[i], close_cb);
    vial_hub_counts c;
    vial_hub_stats(&c);
    assert_int_equal(c.subscribers, 0);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

static void test_policy_drop_oldest(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_set_policy(h, "d", VIAL_HUB_DROP_OLDEST, 4), 0);
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx c = {.loop = &lt[0].loop, .hub = h, .topic = "d", .drain = 0};
    run_on(&c, open_cb);
    vial_hub_counts before, after;
    vial_hub_stats(&before);
    char text[16];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(text, sizeof text, "P0:%d", i);
        assert_int_equal(vial_hub_publish(h, "d", text, (size_t)n), 1);
    }
    c.next[0] = 6; /* the four newest remain */
    run_on(&c, drain_cb);
    assert_int_equal(atomic_load(&c.got), 4);
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(vial_sub_dropped(c.sub), 6);
    assert_false(vial_sub_ended(c.sub));
    vial_hub_stats(&after);
    assert_int_equal(after.dropped - before.dropped, 6);
    assert_int_equal(after.disconnected, before.disconnected);
    run_on(&c, close_cb);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

/* The ring starts small and grows while full; growing with its contents
 * wrapped around must keep them in order. */
static void test_ring_grows_in_order(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_set_policy(h, "g", VIAL_HUB_DROP_OLDEST, 10), 0);
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx c = {.loop = &lt[0].loop, .hub = h, .topic = "g", .drain = 0};
    run_on(&c, open_cb);
    char text[16];
    int seq = 0;
    for (; seq < 3; seq++) { /* taken at once: the ring's head moves off slot 0 */
        int n = snprintf(text, sizeof text, "P0:%d", seq);
        assert_int_equal(vial_hub_publish(h, "g", text, (size_t)n), 1);
    }
    run_on(&c, drain_cb);
    assert_int_equal(atomic_load(&c.got), 3);
    for (; seq < 12; seq++) { /* 4 slots, wrapped, grow to 8, then to 10: none dropped */
        int n = snprintf(text, sizeof text, "P0:%d", seq);
        assert_int_equal(vial_hub_publish(h, "g", text, (size_t)n), 1);
    }
    run_on(&c, drain_cb);
    assert_int_equal(atomic_load(&c.got), 12);
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(vial_sub_dropped(c.sub), 0);
    for (; seq < 27; seq++) { /* at the bound: the oldest go */
        int n = snprintf(text, sizeof text, "P0:%d", seq);
        assert_int_equal(vial_hub_publish(h, "g", text, (size_t)n), 1);
    }
    c.next[0] = 17; /* the ten newest remain, oldest first */
    run_on(&c, drain_cb);
    assert_int_equal(atomic_load(&c.got), 22);
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(vial_sub_dropped(c.sub), 5);
    run_on(&c, close_cb);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

static void test_policy_disconnect(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_set_policy(h, "x", VIAL_HUB_DISCONNECT, 4), 0);
    assert_int_equal(vial_hub_set_policy(h, "x", 7, 4), -EINVAL);
    assert_int_equal(vial_hub_set_policy(h, "x", VIAL_HUB_DISCONNECT, 0), -EINVAL);
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx c = {.loop = &lt[0].loop, .hub = h, .topic = "x", .drain = 0};
    run_on(&c, open_cb);
    vial_hub_counts before, after;
    vial_hub_stats(&before);
    for (int i = 0; i < 5; i++)
        vial_hub_publish(h, "x", "P0:0", 4);
    run_on(&c, drain_cb);
    assert_true(vial_sub_ended(c.sub));
    assert_int_equal(atomic_load(&c.got), 0); /* its queue went with it */
    vial_hub_stats(&after);
    assert_int_equal(after.disconnected - before.disconnected, 1);
    run_on(&c, close_cb);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

static void noop_cb(vial_loop *l, vial_msg *m)
{
    (void)l;
    (void)m;
}

/* Publishes "P0:<i>" and waits until the subscriber's loop took it into
 * the subscriber's queue (a message posted behind the node's runs after). */
static void publish_step(sub_ctx *c, int i)
{
    char text[16];
    int n = snprintf(text, sizeof text, "P0:%d", i);
    assert_int_equal(vial_hub_publish(c->hub, c->topic, text, (size_t)n), 1);
    run_on(c, noop_cb);
}

/* A message costs its length + VIAL_HUB_MSG_OVERHEAD ("P0:<i>": 4 bytes
 * here); three fit under the bound, the fourth finds the subscriber slow. */
static void test_limits_byte_bound_aborts(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_set_policy(h, "a", VIAL_HUB_ABORT, VIAL_HUB_QUEUE_MAX), 0);
    assert_int_equal(vial_hub_set_limits(h, "a", &(vial_hub_limits){.max_bytes = 3 * (4 + VIAL_HUB_MSG_OVERHEAD)}),
                     0);
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx c = {.loop = &lt[0].loop, .hub = h, .topic = "a", .drain = 0};
    run_on(&c, open_cb);
    vial_hub_counts before, after;
    vial_hub_stats(&before);
    for (int i = 0; i < 3; i++)
        publish_step(&c, i);
    assert_int_equal(vial_sub_ended(c.sub), 0);
    publish_step(&c, 3);
    assert_int_equal(vial_sub_ended(c.sub), VIAL_HUB_ABORT);
    run_on(&c, drain_cb);
    assert_int_equal(atomic_load(&c.got), 0); /* its queue went with it */
    vial_hub_stats(&after);
    assert_int_equal(after.disconnected - before.disconnected, 1);
    /* Ended, it no longer counts: a publish finds no subscriber. */
    assert_int_equal(vial_hub_publish(h, "a", "P0:9", 4), 0);
    run_on(&c, close_cb);

    /* The same bound met while the messages still wait for the loop: one
     * larger than the bound still goes to an empty queue, a second one
     * does not fit behind it. */
    run_on(&c, open_cb);
    char big[400];
    memset(big, 'x', sizeof big);
    assert_int_equal(vial_hub_publish(h, "a", big, sizeof big), 1);
    run_on(&c, noop_cb);
    assert_int_equal(vial_sub_ended(c.sub), 0);
    run_on(&c, close_cb);
    run_on(&c, open_cb);
    assert_int_equal(vial_hub_publish(h, "a", big, sizeof big), 1);
    assert_int_equal(vial_hub_publish(h, "a", "P0:0", 4), 1);
    run_on(&c, noop_cb);
    assert_int_equal(vial_sub_ended(c.sub), VIAL_HUB_ABORT);
    run_on(&c, close_cb);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

/* Under VIAL_HUB_DROP_OLDEST the byte bound drops the oldest until the new
 * message fits; nothing is lost below it however many messages wait. */
static void test_limits_drop_oldest_by_bytes(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_set_policy(h, "b", VIAL_HUB_DROP_OLDEST, 1000), 0);
    assert_int_equal(vial_hub_set_limits(h, "b", &(vial_hub_limits){.max_bytes = 5 * (4 + VIAL_HUB_MSG_OVERHEAD)}),
                     0);
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx c = {.loop = &lt[0].loop, .hub = h, .topic = "b", .drain = 0};
    run_on(&c, open_cb);
    for (int i = 0; i < 9; i++)
        publish_step(&c, i);
    c.next[0] = 4; /* the five newest */
    run_on(&c, drain_cb);
    assert_int_equal(atomic_load(&c.got), 5);
    assert_int_equal(atomic_load(&c.bad), 0);
    assert_int_equal(vial_sub_dropped(c.sub), 4);
    assert_int_equal(vial_sub_ended(c.sub), 0);
    run_on(&c, close_cb);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

/* A subscriber whose queue has not moved for stall_ms is slow at the next
 * message; one that takes its messages is not. */
static void test_limits_stall_clock(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_int_equal(vial_hub_set_policy(h, "s", VIAL_HUB_ABORT, VIAL_HUB_QUEUE_MAX), 0);
    assert_int_equal(vial_hub_set_limits(h, "s", &(vial_hub_limits){.max_bytes = 1 << 20, .stall_ms = 50}), 0);
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx c = {.loop = &lt[0].loop, .hub = h, .topic = "s", .drain = 0};
    run_on(&c, open_cb);
    publish_step(&c, 0);
    usleep(20000);
    publish_step(&c, 1);
    run_on(&c, drain_cb); /* it moved */
    usleep(120000);
    publish_step(&c, 2);
    assert_int_equal(vial_sub_ended(c.sub), 0); /* its queue was empty: the clock started then */
    usleep(120000);
    publish_step(&c, 3);
    assert_int_equal(vial_sub_ended(c.sub), VIAL_HUB_ABORT);
    run_on(&c, close_cb);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

/* A binary publish is a binary frame, a text one a text frame. */
static void take_opcodes(vial_loop *l, vial_msg *m)
{
    (void)l;
    sub_ctx *c = (sub_ctx *)((char *)m - offsetof(sub_ctx, m));
    vial_shared_bytes *b;
    long ops = 0;
    while ((b = vial_sub_take_frame(c->sub))) {
        ops = ops * 16 + b->bytes[0];
        vial_shared_bytes_unref(b);
    }
    atomic_store(&c->got, ops);
}

static void test_publish_binary_frame(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    loop_thread lt[1];
    loops_start(lt, 1);
    sub_ctx c = {.loop = &lt[0].loop, .hub = h, .topic = "bin", .drain = 0};
    run_on(&c, open_cb);
    assert_int_equal(vial_hub_publish_binary(h, "bin", "\x00\x01", 2), 1);
    assert_int_equal(vial_hub_publish(h, "bin", "t", 1), 1);
    run_on(&c, noop_cb);
    run_on(&c, take_opcodes);
    assert_int_equal(atomic_load(&c.got), 0x82 * 16 + 0x81);
    run_on(&c, close_cb);
    loops_stop(lt, 1);
    vial_hub_free(h);
}

/* --- SSE through the test client ------------------------------------------------------------ */

static vial_hub *app_hub;

static int publish_later(vial_req *rq, void *arg)
{
    (void)arg;
    vial_sleep(rq, 30);
    vial_hub_publish_event(app_hub, "live", &(vial_sse_event){.id = "10", .data = "one\ntwo", .len = 7});
    vial_hub_publish(app_hub, "live", "three", 5);
    return 0;
}

static int replay(vial_req *rq, vial_res *rs, const char *last, void *arg)
{
    (void)rq;
    (void)arg;
    char id[32];
    snprintf(id, sizeof id, "%s+1", last);
    return vial_sse_send(rs, &(vial_sse_event){.id = id, .data = "missed", .len = 6});
}

static int sse_view(vial_req *rq, vial_res *rs)
{
    if (!vial_spawn(rq, publish_later, NULL))
        return vial_abort(rs, 500);
    vial_sse_opts o = {.heartbeat_ms = 10, .retry_ms = 2000, .replay = replay, .max_events = 2};
    vial_sse_serve(rq, rs, app_hub, "live", &o);
    return 0;
}

static void test_sse_through_test_client(void **state)
{
    (void)state;
    app_hub = vial_hub_new();
    vial_app *app = vial_app_new();
    assert_int_equal(vial_route(app, "GET /events", sse_view), 0);
    vial_test_client *tc = vial_test_client_new(app);
    const char *hdrs[] = {"Last-Event-ID: 41", NULL};
    vial_test_response *r = vial_test_client_request(tc, "GET", "/events", hdrs, NULL, 0);
    assert_non_null(r);
    assert_int_equal(vial_test_response_status(r), 200);
    assert_string_equal(vial_test_response_header(r, "Content-Type"), "text/event-stream; charset=utf-8");
    assert_string_equal(vial_test_response_header(r, "Cache-Control"), "no-cache");
    assert_string_equal(vial_test_response_header(r, "X-Accel-Buffering"), "no");
    size_t len;
    const char *body = vial_test_response_body(r, &len);
    /* retry first, then the replay, heartbeats while the topic is quiet,
     * then the two live events */
    const char *p = strstr(body, "retry: 2000\n\n");
    assert_ptr_equal(p, body);
    p = strstr(body, "id: 41+1\ndata: missed\n\n");
    assert_non_null(p);
    const char *ping = strstr(p, ": ping\n\n");
    assert_non_null(ping);
    const char *one = strstr(p, "id: 10\ndata: one\ndata: two\n\n");
    assert_non_null(one);
    assert_true(ping < one);
    assert_non_null(strstr(one, "data: three\n\n"));
    vial_test_response_free(r);
    vial_hub_counts c;
    vial_hub_stats(&c);
    assert_int_equal(c.subscribers, 0); /* the stream's subscription ended with it */
    vial_test_client_free(tc);
    vial_app_free(app);
    vial_hub_free(app_hub);
}

/* Redis mode's setup: arguments, once per hub, and a hub freed with
 * publishes still in its outbox (no server ran to send them; ASan checks
 * they are freed). */
static void test_use_redis_setup(void **state)
{
    (void)state;
    vial_hub *h = vial_hub_new();
    assert_non_null(h);
#ifdef VIAL_HAVE_REDIS
    assert_int_equal(vial_hub_use_redis(NULL, "127.0.0.1:1", "p:"), -EINVAL);
    assert_int_equal(vial_hub_use_redis(h, NULL, "p:"), -EINVAL);
    assert_true(vial_hub_use_redis(h, "127.0.0.1:notaport", "p:") < 0);
    assert_int_equal(vial_hub_use_redis(h, "127.0.0.1:1", "p:*"), 0);
    assert_int_equal(vial_hub_use_redis(h, "127.0.0.1:1", "q:"), -EBUSY);
    /* Local delivery does not wait for Redis: no loop here, so 0 threads. */
    assert_int_equal(vial_hub_publish(h, "t", "x", 1), 0);
    vial_sse_event ev = {.event = "e", .id = "1", .data = "y", .len = 1, .retry_ms = 5};
    assert_int_equal(vial_hub_publish_event(h, "t", &ev), 0);
#else
    assert_int_equal(vial_hub_use_redis(h, "127.0.0.1:1", "p:"), -ENOTSUP);
#endif
    vial_hub_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_fields),
        cmocka_unit_test(test_encode_multiline_data),
        cmocka_unit_test(test_encode_refuses_injection),
        cmocka_unit_test(test_encode_short_buffer),
        cmocka_unit_test(test_order_across_threads),
        cmocka_unit_test(test_leave_and_join),
        cmocka_unit_test(test_policy_drop_oldest),
        cmocka_unit_test(test_ring_grows_in_order),
        cmocka_unit_test(test_policy_disconnect),
        cmocka_unit_test(test_limits_byte_bound_aborts),
        cmocka_unit_test(test_limits_drop_oldest_by_bytes),
        cmocka_unit_test(test_limits_stall_clock),
        cmocka_unit_test(test_publish_binary_frame),
        cmocka_unit_test(test_sse_through_test_client),
        cmocka_unit_test(test_use_redis_setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
