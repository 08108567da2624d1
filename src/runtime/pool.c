/* Worker pool: a mutex-protected FIFO and a condition variable. Workers are
 * idle most of the time in a web server; this is not on the async hot path. */
#include "runtime/pool.h"
#include "runtime/coro.h"

#include <errno.h>
#include <stdlib.h>

struct vial_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    vial_job *head, *tail;
    unsigned queued, queue_max;
    uint64_t dequeued, wait_ns;
    unsigned nthreads;
    int stopping;
    int draining; /* vial_pool_drain ran: droppable jobs are refused */
    /* When the oldest waiting job was queued (0: none): load shedding reads
     * it without the lock (written under it, on every change of head). */
    uint64_t head_ns;
    /* With an observer (shedding on): the queue's length and a running
     * average of a job's run time, for vial_pool_backlog_ns. */
    unsigned queued_now;
    uint64_t avg_run_ns;
    pthread_t threads[];
};

/* The coroutine whose sync function this worker runs, for a crash report
 * (it is parked meanwhile: its label and request do not change). */
static __thread vial_coro *tls_for;

vial_coro *vial_pool_current_coro(void)
{
    return tls_for;
}

/* Lock held. */
static void head_changed(vial_pool *p)
{
    __atomic_store_n(&p->head_ns, p->head ? p->head->queued_ns : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->queued_now, p->queued, __ATOMIC_RELAXED);
}

uint64_t vial_pool_backlog_ns(vial_pool *p)
{
    uint64_t n = __atomic_load_n(&p->queued_now, __ATOMIC_RELAXED);
    return n * __atomic_load_n(&p->avg_run_ns, __ATOMIC_RELAXED) / p->nthreads;
}

static void (*wait_observer)(uint64_t wait_ns, uint64_t now_ns);

void vial_pool_observe_waits(void (*fn)(uint64_t wait_ns, uint64_t now_ns))
{
    __atomic_store_n(&wait_observer, fn, __ATOMIC_RELEASE);
}

uint64_t vial_pool_oldest_ns(vial_pool *p)
{
    return __atomic_load_n(&p->head_ns, __ATOMIC_RELAXED);
}

static void *worker_main(void *arg)
{
    vial_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        vial_job *j = p->head;
        if (!j)
            break; /* stopping and drained */
        p->head = j->next;
        if (p->head)
            p->head->prev = NULL;
        else
            p->tail = NULL;
        j->next = j->prev = NULL;
        p->queued--;
        head_changed(p);
        p->dequeued++;
        uint64_t t = vial_clock_ns(), waited = t - j->queued_ns;
        p->wait_ns += waited;
        pthread_mutex_unlock(&p->lock);
        void (*observe)(uint64_t, uint64_t) = __atomic_load_n(&wait_observer, __ATOMIC_ACQUIRE);
        if (observe)
            observe(waited, t);
        j->work(j);
        vial_loop_post(j->loop, &j->done);
        if (observe) {
            /* An average over about the last 8 jobs (one writer per job,
             * racing others harmlessly: it is an estimate). */
            uint64_t ran = vial_clock_ns() - t, avg = __atomic_load_n(&p->avg_run_ns, __ATOMIC_RELAXED);
            __atomic_store_n(&p->avg_run_ns, avg - avg / 8 + ran / 8, __ATOMIC_RELAXED);
        }
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

vial_pool *vial_pool_new(unsigned threads, unsigned queue_max)
{
    if (threads == 0)
        threads = 1;
    vial_pool *p = calloc(1, sizeof *p + threads * sizeof(pthread_t));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->queue_max = queue_max;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
            break;
        p->nthreads++;
    }
    if (!p->nthreads) {
        free(p);
        return NULL;
    }
    return p;
}

void vial_pool_free(vial_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

unsigned vial_pool_queued(vial_pool *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Takes a queued job out of the queue (lock held); its prev is cleared. */
static void unlink_job(vial_pool *p, vial_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        p->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        p->tail = j->prev;
    j->prev = NULL;
    p->queued--;
    head_changed(p);
}

void vial_pool_drain(vial_pool *p)
{
    vial_job *refused = NULL;
    pthread_mutex_lock(&p->lock);
    p->draining = 1;
    for (vial_job *j = p->head, *next; j; j = next) {
        next = j->next;
        if (!j->droppable)
            continue;
        unlink_job(p, j);
        j->refused = 1;
        j->next = refused;
        refused = j;
    }
    pthread_mutex_unlock(&p->lock);
    /* Completed outside the lock: each goes back to its own loop, which
     * wakes the waiting coroutine as for a finished job. */
    while (refused) {
        vial_job *j = refused;
        refused = j->next;
        j->next = NULL;
        vial_loop_post(j->loop, &j->done);
    }
}

/* Takes j out of the queue if no worker has taken it yet. Returns 1 when it
 * was withdrawn (it will never run, no completion will be posted). */
static int pool_withdraw(vial_pool *p, vial_job *j)
{
    int found = 0;
    pthread_mutex_lock(&p->lock);
    /* A queued job is the head or has a predecessor; a taken one has
     * neither (the worker cleared its links under this lock). */
    if (p->head == j || j->prev) {
        unlink_job(p, j);
        j->next = NULL;
        found = 1;
    }
    pthread_mutex_unlock(&p->lock);
    return found;
}

unsigned vial_pool_threads(const vial_pool *p)
{
    return p->nthreads;
}

int vial_pool_submit(vial_pool *p, vial_job *j)
{
    j->next = NULL;
    j->prev = NULL;
    j->refused = 0;
    pthread_mutex_lock(&p->lock);
    if (p->draining && j->droppable) {
        pthread_mutex_unlock(&p->lock);
        return -ESHUTDOWN;
    }
    if (p->queued >= p->queue_max || p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return -EAGAIN;
    }
    j->queued_ns = vial_clock_ns();
    j->prev = p->tail;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    head_changed(p);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* A job whose submitter is a parked coroutine. */
struct coro_job {
    vial_job job;
    void (*fn)(void *);
    void *arg;
    vial_coro *coro;
    int finished;
};

static void coro_job_work(vial_job *j)
{
    struct coro_job *cj = (struct coro_job *)j;
    tls_for = cj->coro;
    cj->fn(cj->arg);
    tls_for = NULL;
}

static void coro_job_done(vial_loop *l, vial_msg *m)
{
    struct coro_job *cj = (struct coro_job *)m;
    cj->finished = 1;
    vial_coro_wake(cj->coro, 0);
}

static int pool_run(vial_pool *p, void (*fn)(void *), void *arg, int cancellable)
{
    vial_coro *c = vial_coro_current();
    if (cancellable && c->cancelled && vial_coro_is_abandoned(c))
        return -ECANCELED;
    struct coro_job cj = {
        .job = {.done = {.cb = coro_job_done}, .work = coro_job_work, .loop = c->loop,
                .droppable = (unsigned char)cancellable},
        .fn = fn,
        .arg = arg,
        .coro = c,
    };
    int r = vial_pool_submit(p, &cj.job);
    if (r < 0)
        return r;
    /* The job's memory is on this stack: we must not return before the
     * worker is done with it, whatever wakes us. Cancellation wakes are
     * absorbed until the completion message arrives. */
    while (!cj.finished) {
        vial_coro_park();
        if (cancellable && c->cancelled && !cj.finished && vial_coro_is_abandoned(c) && pool_withdraw(p, &cj.job))
            return -ECANCELED;
    }
    return cj.job.refused ? -ESHUTDOWN : 0;
}

int vial_pool_run(vial_pool *p, void (*fn)(void *), void *arg)
{
    return pool_run(p, fn, arg, 0);
}

int vial_pool_run_cancellable(vial_pool *p, void (*fn)(void *), void *arg)
{
    return pool_run(p, fn, arg, 1);
}

void vial_pool_wait_stats(vial_pool *p, uint64_t *jobs, uint64_t *wait_ns)
{
    pthread_mutex_lock(&p->lock);
    *jobs = p->dequeued;
    *wait_ns = p->wait_ns;
    pthread_mutex_unlock(&p->lock);
}
