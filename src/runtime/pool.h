/* The worker pool: a bounded set of threads for blocking work (sync handlers,
 * offloaded calls). A job is submitted from a loop thread; when it finishes,
 * its completion is posted back to that loop's mailbox, so the submitting
 * coroutine resumes on its own thread. The queue is bounded: a full queue is
 * an error the caller turns into 503, not unbounded buffering. */
#ifndef VIAL_RUNTIME_POOL_H
#define VIAL_RUNTIME_POOL_H

#include "runtime/loop.h"

typedef struct vial_pool vial_pool;

typedef struct vial_job vial_job;
struct vial_job {
    vial_msg done;            /* posted to `loop` when work() returned */
    vial_job *next, *prev;    /* queue links (prev: a waiting job can be withdrawn) */
    void (*work)(vial_job *); /* runs on a worker thread */
    vial_loop *loop;          /* where completion is delivered */
    unsigned char droppable;  /* may be refused unrun when the pool drains */
    unsigned char refused;    /* set when it was refused: work() never ran */
    uint64_t queued_ns;       /* when it entered the queue (the wait figures) */
};

/* Starts `threads` workers with room for `queue_max` waiting jobs. */
vial_pool *vial_pool_new(unsigned threads, unsigned queue_max);
/* Waits for queued jobs to finish, then joins the workers. */
void vial_pool_free(vial_pool *pool);

/* Queues job; job->done.cb runs on job->loop once job->work returned.
 * Returns 0, or -EAGAIN when the queue is full. Thread-safe. */
int vial_pool_submit(vial_pool *pool, vial_job *job);

/* From a coroutine: runs fn(arg) on the pool and parks until it returned,
 * even if the coroutine is cancelled meanwhile (a thread cannot be
 * interrupted safely, and fn's arguments usually live on the caller's
 * stack; teardown must run after a cancellation too). Returns 0 or -EAGAIN
 * (queue full). */
int vial_pool_run(vial_pool *pool, void (*fn)(void *), void *arg);

/* vial_pool_run for work that is only worth doing while someone waits for
 * it (a sync handler): if the coroutine is abandoned (vial_coro_abandon: its
 * client reset the connection) while the job still waits in the queue, the
 * job is taken out, never runs, and -ECANCELED is returned; so departed
 * clients cannot fill the queue. Once a worker has started it, it is awaited
 * to its end as with vial_pool_run. */
int vial_pool_run_cancellable(vial_pool *pool, void (*fn)(void *), void *arg);
/* (It returns -ESHUTDOWN once vial_pool_drain has run, queued or not.) */

/* Shutdown: from now on droppable jobs (those of vial_pool_run_cancellable)
 * are refused — the queued ones are taken out and completed unrun with
 * job->refused set, later ones fail at submission with -ESHUTDOWN — so
 * requests still in flight answer at once (503) instead of waiting behind
 * blocked workers past the grace period. Other jobs (teardown functions,
 * offloaded client calls) still run. Thread-safe. */
void vial_pool_drain(vial_pool *pool);

/* Jobs waiting for a worker (not counting running ones). */
unsigned vial_pool_queued(vial_pool *pool);

unsigned vial_pool_threads(const vial_pool *pool);

/* When the oldest job still waiting was queued (vial_clock_ns), 0 when none
 * waits: its age is the queue's delay now (load shedding). Lock-free. */
uint64_t vial_pool_oldest_ns(vial_pool *pool);
/* How long a job queued now would wait, estimated: the jobs waiting times
 * the recent average run time, over the threads (kept only while an
 * observer is set, below; 0 otherwise). A burst queued at once shows here
 * before any of it has waited. Lock-free. */
uint64_t vial_pool_backlog_ns(vial_pool *pool);

/* Every pool (process-wide): fn(wait, now) is called on the worker thread
 * as each job starts, with the time it waited in the queue (load
 * shedding's samples). NULL: none (the default). */
void vial_pool_observe_waits(void (*fn)(uint64_t wait_ns, uint64_t now_ns));

/* On a worker thread, the coroutine whose sync function it is running,
 * else NULL: for crash reports. */
struct vial_coro *vial_pool_current_coro(void);

/* Jobs taken from the queue so far and their total time waiting in it (ns),
 * for the metrics. Counted under the queue's lock, which is held anyway. */
void vial_pool_wait_stats(vial_pool *pool, uint64_t *jobs, uint64_t *wait_ns);

#endif
