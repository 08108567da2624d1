/* Tasks (spawn, join, gather), cancellation and deadlines for async code.
 *
 * A task is a coroutine adopted by the coroutine that spawned it, so
 * cancelling a request cancels its whole tree (vial_coro_cancel recurses),
 * and dispatch reaps what a view left running (vial_tasks_reap). Task
 * records live in the request's arena: they are valid until the response is
 * sent, even after the task finished. */
#include "app/app.h"
#include "app/tasks.h"
#include "runtime/coro.h"

#include <errno.h>
#include <string.h>

struct vial_task {
    vial_coro *co;     /* NULL once finished */
    vial_req *rq;
    vial_task_fn fn;
    void *arg;
    int result;
    int done;
    vial_coro *waiter; /* who to wake when it finishes */
};

static void task_main(void *arg)
{
    vial_task *t = arg;
    t->result = t->fn(t->rq, t->arg);
}

static void task_exit(vial_coro *co)
{
    vial_task *t = co->user;
    t->done = 1;
    t->co = NULL;
    if (t->waiter)
        vial_coro_wake(t->waiter, 0);
}

static vial_coro *current_async(vial_req *rq)
{
    return rq->is_sync ? NULL : vial_coro_current();
}

vial_task *vial_spawn(vial_req *rq, vial_task_fn fn, void *arg)
{
    vial_coro *self = current_async(rq);
    if (!self || !fn)
        return NULL;
    vial_task *t = vial_alloc(rq, sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->rq = rq;
    t->fn = fn;
    t->arg = arg;
    vial_coro *co = vial_coro_new(self->loop, task_main, t);
    if (!co)
        return NULL;
    co->user = t;
    co->on_exit = task_exit;
    co->label = self->label;
    co->deadline = self->deadline; /* a child never outlives its parent's deadline */
    vial_coro_adopt(self, co);
    if (self->cancelled)
        co->cancelled = 1;
    t->co = co;
    /* queue it: it starts when the spawner next yields to the loop */
    co->parked = 1;
    vial_coro_wake(co, 0);
    return t;
}

/* Waits, uncancellably, until t finished (used after cancelling it: a
 * cancelled task ends at its next await, so this is short). */
static void await_finish(vial_task *t)
{
    vial_coro *self = vial_coro_current();
    while (!t->done) {
        t->waiter = self;
        vial_coro_park();
        t->waiter = NULL;
    }
}

int vial_join(vial_req *rq, vial_task *t)
{
    vial_coro *self = current_async(rq);
    if (!self || !t)
        return -EPERM;
    while (!t->done) {
        t->waiter = self;
        int r = vial_coro_wait(0);
        t->waiter = NULL;
        if (r < 0 && !t->done)
            return r;
    }
    return t->result;
}

int vial_gather(vial_req *rq, vial_task *const *tasks, size_t n, int flags)
{
    vial_coro *self = current_async(rq);
    if (!self)
        return -EPERM;
    int first_error = 0, stop = 0;
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < n; i++) {
            if (!tasks[i])
                continue;
            if (!tasks[i]->done)
                pending++;
            else if (tasks[i]->result < 0 && !first_error && !(flags & VIAL_GATHER_ALL))
                first_error = tasks[i]->result;
        }
        if (!pending || first_error || stop)
            break;
        for (size_t i = 0; i < n; i++)
            if (tasks[i] && !tasks[i]->done)
                tasks[i]->waiter = self;
        int r = vial_coro_wait(0);
        for (size_t i = 0; i < n; i++)
            if (tasks[i])
                tasks[i]->waiter = NULL;
        if (r < 0) {
            first_error = r; /* the gather itself was cancelled or timed out */
            stop = 1;
        }
    }
    if (first_error) {
        for (size_t i = 0; i < n; i++)
            if (tasks[i] && !tasks[i]->done)
                vial_coro_cancel(tasks[i]->co);
        for (size_t i = 0; i < n; i++)
            if (tasks[i])
                await_finish(tasks[i]);
        return first_error;
    }
    return 0;
}

int vial_task_result(const vial_task *t)
{
    return t->done ? t->result : -EINPROGRESS;
}

void vial_task_cancel(vial_task *t)
{
    if (t && t->co)
        vial_coro_cancel(t->co);
}

void vial_tasks_reap(vial_req *rq)
{
    vial_coro *self = vial_coro_current();
    if (!self || !self->first_child)
        return;
    for (vial_coro *k = self->first_child; k; k = k->next_sibling)
        vial_coro_cancel(k);
    while (self->first_child) {
        vial_task *t = self->first_child->user;
        await_finish(t);
    }
}

int vial_cancelled(vial_req *rq)
{
    vial_coro *c = vial_coro_current();
    return c && c->cancelled;
}

/* --- deadlines ---------------------------------------------------------------- */

static uint64_t deadline_in(vial_coro *c, uint64_t ms)
{
    uint64_t d = vial_clock_ns() + ms * 1000000ull; /* not the cached now: never early */
    return c->deadline && c->deadline < d ? c->deadline : d;
}

int vial_set_deadline(vial_req *rq, uint64_t ms)
{
    vial_coro *c = current_async(rq);
    if (!c)
        return -EPERM;
    c->deadline = deadline_in(c, ms);
    for (vial_coro *k = c->first_child; k; k = k->next_sibling)
        if (!k->deadline || k->deadline > c->deadline)
            k->deadline = c->deadline;
    return 0;
}

void vial_timeout_begin(vial_req *rq, vial_timeout *t, uint64_t ms)
{
    vial_coro *c = current_async(rq);
    if (!c) {
        t->saved = UINT64_MAX; /* marks "not applied" for end */
        return;
    }
    t->saved = c->deadline;
    c->deadline = deadline_in(c, ms);
}

void vial_timeout_end(vial_req *rq, vial_timeout *t)
{
    vial_coro *c = current_async(rq);
    if (c && t->saved != UINT64_MAX)
        c->deadline = t->saved;
}
