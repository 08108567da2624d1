/* The event loop: one per thread, owning fd readiness, timers, the coroutine
 * ready queue and a mailbox that other threads post to.
 *
 * Readiness comes from a backend (epoll or io_uring) behind vial_backend. Every fd
 * is registered once, edge-triggered, for read, write and hang-up: the owner
 * keeps its own "ready" flags and only waits after a system call said EAGAIN.
 * That shape fits epoll (EPOLLET), kqueue (EV_CLEAR) and io_uring multishot
 * polls alike, and costs no epoll_ctl per request.
 *
 * Backends: epoll (backend_epoll.c) and, when built with liburing,
 * io_uring (backend_uring.c), which may also accept (vial_acceptor) and
 * receive (vial_io_recv) by itself. A registered fd must be deleted
 * (vial_io_del, or vial_io_close) before it is closed: io_uring's poll
 * holds the file open until it is removed. */
#ifndef VIAL_RUNTIME_LOOP_H
#define VIAL_RUNTIME_LOOP_H

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct vial_loop vial_loop;
typedef struct vial_coro vial_coro;

enum {
    VIAL_IO_READ = 1,
    VIAL_IO_WRITE = 2,
    VIAL_IO_HUP = 4, /* peer closed its side (RDHUP) or the socket hung up */
    VIAL_IO_ERR = 8,
    VIAL_IO_SENT = 16, /* a vial_io_send completed (with ERR: not all of it) */
};

typedef struct vial_io vial_io;
typedef void (*vial_io_cb)(vial_loop *loop, vial_io *io, unsigned events);
struct vial_io {
    int fd;
    uint32_t slot; /* the backend's handle while registered (io_uring); 0: none */
    vial_io_cb cb;
    uint32_t gen;  /* which registration a completion is for (io_uring) */
    /* Receiving through the backend (io_uring; see vial_io_recv): set
     * VIAL_IO_RECV_WANTED before vial_io_add to ask for it. rbid: the ring
     * buffer (+ 1) holding input not read yet. In the padding. */
    uint16_t rstate, rbid;
};
enum { VIAL_IO_RECV_WANTED = 1, VIAL_IO_RECV_ON = 2 };

/* A listening socket. Where the backend accepts by itself (io_uring: one
 * multishot accept, a completion per connection, no readiness round trip
 * and no accept4 call), on_accept gets each new descriptor (non-blocking,
 * close-on-exec); otherwise io.cb reports readiness and the owner calls
 * accept4 (epoll). A negative value to on_accept is the error that ended
 * the backend's accepting (-EMFILE ...): nothing more comes until the owner
 * calls vial_accept_resume. */
typedef struct vial_acceptor vial_acceptor;
typedef void (*vial_accept_cb)(vial_loop *loop, vial_acceptor *a, int fd);
struct vial_acceptor {
    vial_io io;
    vial_accept_cb on_accept;
};

/* Timers live in a binary min-heap ordered by deadline; a timer knows its
 * heap slot so stopping one is O(log n). */
typedef struct vial_timer vial_timer;
typedef void (*vial_timer_cb)(vial_loop *loop, vial_timer *t);
struct vial_timer {
    uint64_t when;  /* monotonic ns */
    uint32_t slot;  /* heap index + 1; 0 when not armed */
    vial_timer_cb cb;
};

/* A cross-thread message: intrusive, owned by the sender until run. */
typedef struct vial_msg vial_msg;
typedef void (*vial_msg_cb)(vial_loop *loop, vial_msg *m);
struct vial_msg {
    vial_msg *next;
    vial_msg_cb cb;
};

typedef struct vial_backend {
    const char *name;
    int (*init)(vial_loop *loop);
    void (*fini)(vial_loop *loop);
    /* Registers io for read, write and hang-up, edge-triggered. */
    int (*add)(vial_loop *loop, vial_io *io);
    int (*del)(vial_loop *loop, vial_io *io);
    /* Waits up to timeout_ms (-1: no limit) and calls io->cb for ready fds. */
    int (*poll)(vial_loop *loop, int timeout_ms);
    /* Optional: deletes io and closes its fd (NULL: close(2), which
     * deregisters by itself, as epoll's does). */
    void (*close)(vial_loop *loop, vial_io *io);
    /* Optional: reads what the backend received for io (see vial_io_recv). */
    long (*recv)(vial_loop *loop, vial_io *io, void *dst, size_t cap);
    /* Optional: sends a buffer the backend owns until it is done (see
     * vial_io_send). */
    int (*send)(vial_loop *loop, vial_io *io, void *buf, size_t len,
                void (*release)(vial_loop *loop, void *buf));
    /* Optional: called on the loop's thread when vial_loop_run ends; drops
     * whatever the backend still holds (io_uring: its polls keep sockets
     * open, listeners included, until cancelled). */
    void (*quiesce)(vial_loop *loop);
    /* Optional: registers a listener whose connections the backend accepts
     * (vial_acceptor); deleted as any io. NULL: registered with add. */
    int (*add_acceptor)(vial_loop *loop, vial_acceptor *a);
    /* Accepting again after on_accept was given an error. */
    int (*resume_acceptor)(vial_loop *loop, vial_acceptor *a);
} vial_backend;

extern const vial_backend vial_backend_epoll;
#ifdef VIAL_HAVE_URING
extern const vial_backend vial_backend_uring;
#endif

/* The backend the loops initialised from now on use: "epoll" or
 * "io_uring" (the default when built with liburing). 0, or -ENOTSUP when this build has no such backend (no
 * liburing) and -EINVAL for an unknown name. A loop whose io_uring cannot
 * be set up (kernel too old, io_uring_disabled, seccomp) falls back to
 * epoll and logs it once. Called before the loop threads start. */
int vial_loop_set_backend(const char *name);

struct vial_loop {
    const vial_backend *backend;
    int backend_fd;
    void *backend_data; /* the backend's own state (io_uring's ring) */
    uint64_t now; /* monotonic ns, refreshed once per iteration */
    int stopping;
    int id;

    vial_timer **heap;
    uint32_t nheap, heap_cap;

    vial_coro *ready_head, *ready_tail; /* coroutines to resume */
    vial_coro *running;                 /* the coroutine on the CPU, or NULL */

    /* mailbox: other threads push under the lock, the loop swaps the list out */
    pthread_mutex_t mbox_lock;
    vial_msg *mbox_head, *mbox_tail;
    int mbox_signalled;
    vial_io wake_io; /* eventfd */

    vial_msg *deferred_head, *deferred_tail; /* run after the current batch */

    struct vial_coro_pool *coro_pool;
    void *data; /* owner (the server thread) */
    void *locals[16]; /* per-loop module state (driver.h: vial_drv_key) */
    /* Stall watchdog: a coroutine that runs longer than this without
     * yielding is reported with its label (0: off). */
    uint64_t stall_ns;
    /* Event-loop lag: the most a timer fired late since the metrics last
     * took it (they exchange it with 0 from another thread). */
    uint64_t lag_max_ns;
    /* Called when the loop ends (module state teardown), newest first. */
    vial_msg *at_exit;
    void *sendq; /* vial_send_many's ring (sendq.c), made at its first batch */
};

static inline uint64_t vial_clock_ns(void)
{
    /* Inline: the metrics read it once per request. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int vial_loop_init(vial_loop *loop, int id);
void vial_loop_fini(vial_loop *loop);
/* Runs until vial_loop_stop; returns 0 or a negative errno. */
int vial_loop_run(vial_loop *loop);
/* One iteration: waits at most timeout_ms for events (used by tests). */
int vial_loop_run_once(vial_loop *loop, int timeout_ms);
void vial_loop_stop(vial_loop *loop);

int vial_io_add(vial_loop *loop, vial_io *io);
int vial_io_del(vial_loop *loop, vial_io *io);
/* For an io registered with VIAL_IO_RECV_WANTED where the backend took it
 * (rstate has VIAL_IO_RECV_ON: io_uring with a buffer ring): the kernel
 * receives into a ring buffer ahead of time and a READ event says so; this
 * copies from it, as recv(2) would, without a system call. -EAGAIN when
 * nothing is there yet (a READ event follows), 0 at end of stream. */
static inline long vial_io_recv(vial_loop *loop, vial_io *io, void *dst, size_t cap)
{
    return loop->backend->recv(loop, io, dst, cap);
}

/* Hands buf[0..len) to the backend to send (io_uring: a SEND in the next
 * submission, no system call of its own): 0, and the buffer is the
 * backend's until release(loop, buf) is called (whatever happens to io;
 * at once, before this returns, if the backend copied a short one);
 * io->cb then gets VIAL_IO_SENT, with VIAL_IO_ERR if not all of it went,
 * if io is still registered. Nothing else may be written to the fd before
 * that. -ENOTSUP (epoll), -EBUSY: send it yourself. */
static inline int vial_io_send(vial_loop *loop, vial_io *io, void *buf, size_t len,
                               void (*release)(vial_loop *loop, void *buf))
{
    return loop->backend->send ? loop->backend->send(loop, io, buf, len, release) : -ENOTSUP;
}

/* Deregisters io and closes its fd in the way cheapest for the backend
 * (epoll: one close(2); io_uring: the removal and the close ride the next
 * submission). The fd number stays taken until then. */
void vial_io_close(vial_loop *loop, vial_io *io);

/* Registers a listener (vial_acceptor): 1 when the backend accepts and
 * calls a->on_accept, 0 when it reports readiness to a->io.cb, or a
 * negative errno. Removed with vial_io_del(loop, &a->io). */
int vial_accept_add(vial_loop *loop, vial_acceptor *a);
/* After on_accept was given an error: the backend accepts again (0), or a
 * negative errno. */
int vial_accept_resume(vial_loop *loop, vial_acceptor *a);

void vial_timer_start(vial_loop *loop, vial_timer *t, uint64_t when_ns);
void vial_timer_stop(vial_loop *loop, vial_timer *t);
static inline int vial_timer_armed(const vial_timer *t) { return t->slot != 0; }

/* Thread-safe: queues m for loop's thread and wakes it. */
void vial_loop_post(vial_loop *loop, vial_msg *m);

/* Loop thread only: runs m after the events of this iteration are handled.
 * Freeing an object whose fd may still have an event in the batch must wait
 * for this. */
void vial_loop_defer(vial_loop *loop, vial_msg *m);

/* Loop thread only: runs m->cb when the loop is finalised (module state
 * such as per-thread connection pools), newest first. */
void vial_loop_at_exit(vial_loop *loop, vial_msg *m);

/* The loop running on this thread, or NULL. */
vial_loop *vial_loop_current(void);

#endif
