/* The io_uring backend: the loop's edge-triggered readiness from multishot
 * polls, a thread's own listeners on multishot accepts, plain connections'
 * input received into a provided-buffer ring; every submission of an
 * iteration in one io_uring_enter with the wait, every completion drained
 * in one pass.
 *
 * A completion names its fd's registration by slot and generation, never
 * by pointer: a poll removal is itself asynchronous, so completions for a
 * vial_io that was deleted (and perhaps freed, its slot reused) can still
 * come out of the ring. Every registration gets a new generation; a
 * completion whose generation is not that of the io now in its slot is
 * dropped. */
#include "runtime/loop.h"

#ifdef VIAL_HAVE_URING /* built only with liburing (CMakeLists.txt) */

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_FEAT_MIN_TIMEOUT /* liburing before 2.8 */
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif

#define URING_ENTRIES 4096
/* Batched waits under load (wait_events); wrk -c256 on /plaintext and /json
 * (bench/results/uring-2026-12-06.md, Wave 6): 25, 50 and 100 us cut the
 * CPU per request 9-11 %, 13-15 % and 17-19 %; 50 keeps the delay a
 * request can meet well under the loop's own latency under load. */
#define MIN_WAIT_US 50
#define WAIT_NR 32
#define BUSY_BATCH 4
#define CQE_BATCH 512

/* user_data: kind (8 bits) | slot index (24 bits) | generation (32 bits). */
enum { UD_POLL = 1, UD_IGNORE = 2, UD_QUIESCE = 3, UD_ACCEPT = 4, UD_RECV = 5, UD_SEND = 6 };
#define UD(kind, idx, gen) (((uint64_t)(kind) << 56) | ((uint64_t)(idx) << 32) | (uint64_t)(gen))
#define UD_KIND(u) ((unsigned)((u) >> 56))
#define UD_IDX(u) ((uint32_t)((u) >> 32) & 0xffffffu)
#define UD_GEN(u) ((uint32_t)(u))

#define POLL_MASK (POLLIN | POLLOUT | POLLRDHUP)
/* The receive buffers: a fixed 512 KiB per loop thread, not per
 * connection. The kernel takes them in ring order, so after as many
 * receives as there are buffers all of them are resident — with 512 the
 * first 512 receives touched 2 MiB, which the idle-connection measure (300
 * warm-up requests, then 5,000 connections) counted as 0.17 KiB per idle
 * connection. A buffer is held only from its completion until the
 * coroutine reads it: 128 left none short under wrk -c256 or -c1024 (64:
 * 62 -ENOBUFS in 113,000 receives, 32: one in seven), and a receive that
 * finds none falls back to recv(2). */
#define RBUF_COUNT 128 /* a power of two */
#define RBUF_SIZE 4096 /* a full one is followed by recv(2) (ur_recv): big reads stay big */
/* rstate beyond loop.h's two flags. R_ARMED: the multishot receive is live
 * (from its submission to its last completion, the one without F_MORE);
 * R_STOP: a cancel of it is on its way. */
enum { R_ARMED = 4, R_EOF = 8, R_ERR = 16, R_SYSCALL = 32, R_SENDING = 64, R_STOP = 128 };

/* Sends in flight, each owning its buffer until the completion — or, for
 * a short one, a copy: the caller's buffer (32 KiB, its first page
 * touched) goes back at once, so a burst of answers in flight does not
 * raise the buffer cache's recent peak, which it keeps (idle connections
 * measured 0.26-0.28 KiB each with the buffers held, 0.25 without). The
 * table is reserved whole and touched as used (LIFO free list). */
#define SENDS_MAX 4096
#define SEND_INLINE 480
typedef struct sending {
    void *buf; /* the caller's, or NULL: the copy in data */
    void (*release)(vial_loop *loop, void *buf);
    uint32_t len, idx, gen, next_free;
    char data[SEND_INLINE];
} sending;

/* Slot i: ios[i], the registered vial_io (tagged with bit 1 when it is a
 * vial_acceptor's, whose request is an accept), or while free the next
 * free slot's index + 1, shifted and tagged with bit 0. A registration's
 * generation is a serial from the loop-wide counter, kept in the vial_io
 * (where it fills padding): a completion is for the io in its slot only if
 * their generations match, so neither a freed slot taken by another io nor
 * the same io registered again hears an older registration's completions.
 * The array is reserved whole (one per descriptor the process may open)
 * and only its touched pages are resident: 8 bytes a registration, no
 * copies left behind by growth — idle connections are counted in bytes. */
typedef struct uring {
    struct io_uring ring;
    uintptr_t *ios;
    uint32_t nslots, cap, free_head;
    uint32_t serial;
    /* Receive buffers (a provided-buffer ring, group 0): a connection
     * holds one only from the completion until it has read it; the ones a
     * connection holds are a list from its io->rbid through rnext (each
     * an index + 1, 0 ends it), in the order they were filled. */
    struct io_uring_buf_ring *br;
    char *rbufs;
    uint16_t rlen[RBUF_COUNT], roff[RBUF_COUNT], rnext[RBUF_COUNT];
    sending *sends; /* SENDS_MAX, touched as used; free list through next_free (+ 1) */
    /* Batched waits (wait_events): min_wait_us 0 where the kernel cannot. */
    uint32_t last_batch, min_wait_us;
    uint32_t nsends, sends_free;
    int enabled; /* rings are enabled by the thread that submits */
} uring;

static void give_back(uring *u, unsigned bid);
static void send_end(vial_loop *l, uring *u, uint32_t i);
static void setup_recv_buffers(uring *u);
static int arm_recv(uring *u, vial_io *io, uint32_t idx);

static inline vial_io *slot_io(const uring *u, uint32_t idx)
{
    return u->ios[idx] & 1 ? NULL : (vial_io *)(u->ios[idx] & ~(uintptr_t)2);
}

static inline unsigned slot_kind(const uring *u, uint32_t idx)
{
    return u->ios[idx] & 2 ? UD_ACCEPT : UD_POLL;
}

static inline void slot_free(uring *u, uint32_t idx)
{
    u->ios[idx] = ((uintptr_t)u->free_head << 1) | 1;
    u->free_head = idx + 1;
}

/* A free SQE; when the queue is full its entries go to the kernel first.
 * NULL only if that fails (a submission from a thread other than the
 * ring's issuer, which the loop never makes while serving). */
static struct io_uring_sqe *sqe_get(uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    while (!sqe) {
        int r = io_uring_submit(&u->ring);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
            return NULL;
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

/* A sandbox may allow io_uring_setup and refuse the calls that use the
 * ring (a seccomp profile that names some of the three): found out here,
 * the loop serves on epoll; found out at the first wait, it would end.
 * Neither probe submits anything: an enter on a ring still disabled
 * answers -EBADFD (0 on a ring that is not), a probe registration 0. */
static int usable(uring *u)
{
    long r = syscall(__NR_io_uring_enter, u->ring.ring_fd, 0, 0, 0, NULL, 0);
    if (r < 0 && errno != EBADFD)
        return -errno;
    union {
        struct io_uring_probe p;
        char room[sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op)];
    } probe;
    memset(&probe, 0, sizeof probe);
    int e = io_uring_register_probe(&u->ring, &probe.p, 256);
    return e < 0 ? e : 0;
}

static int ur_init(vial_loop *l)
{
    uring *u = calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    /* One thread submits, and completions are reaped only when it enters
     * the kernel anyway: the kernel then runs their work in a batch rather
     * than interrupting the thread for each. The ring is created disabled
     * because the thread that enables it becomes its single issuer, and
     * loops are set up on the main thread. */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
    p.cq_entries = URING_ENTRIES * 4;
    p.flags |= IORING_SETUP_CQSIZE;
    int r = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &p);
    if (r == -EINVAL) { /* kernel before 6.1 */
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = URING_ENTRIES * 4;
        r = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &p);
        u->enabled = 1;
    }
    if (r < 0) {
        free(u);
        return r;
    }
    if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_EXT_ARG)) {
        io_uring_queue_exit(&u->ring);
        free(u);
        return -ENOTSUP;
    }
    if ((r = usable(u)) < 0) {
        io_uring_queue_exit(&u->ring);
        free(u);
        return r;
    }
    struct rlimit rl;
    rlim_t cap = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_max : 0;
    if (cap < 1024 || cap > (1u << 22))
        cap = cap < 1024 ? 1024 : 1u << 22;
    u->ios = mmap(NULL, (size_t)cap * sizeof *u->ios, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (u->ios == MAP_FAILED) {
        io_uring_queue_exit(&u->ring);
        free(u);
        return -ENOMEM;
    }
    u->cap = (uint32_t)cap;
    setup_recv_buffers(u);
    u->min_wait_us = p.features & IORING_FEAT_MIN_TIMEOUT ? MIN_WAIT_US : 0;
    l->backend_data = u;
    l->backend_fd = u->ring.ring_fd;
    return 0;
}

/* Cancels every request still in the ring and waits for the cancellations
 * to complete, so that the files they held are released now, on this
 * thread: a ring's own teardown at exit releases them later, from a kernel
 * worker, and a listener would go on accepting after the process is gone.
 * Completions are dropped, not dispatched: the loop is over. */
static void ur_quiesce(vial_loop *l)
{
    uring *u = l->backend_data;
    if (!u || !u->enabled)
        return;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, UD(UD_QUIESCE, 0, 0));
    int want = -1, got = 0; /* the requests cancelled, and their ends seen */
    for (int rounds = 0; rounds < 1000; rounds++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000};
        struct io_uring_cqe *cqe;
        int r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR)
            return;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&u->ring, head, cqe) {
            if (UD_KIND(cqe->user_data) == UD_QUIESCE)
                want = cqe->res > 0 ? cqe->res : 0;
            else if (UD_KIND(cqe->user_data) == UD_ACCEPT && cqe->res >= 0)
                close(cqe->res); /* accepted before the cancel: refused */
            else if (UD_KIND(cqe->user_data) == UD_SEND)
                send_end(l, u, UD_IDX(cqe->user_data));
            if ((UD_KIND(cqe->user_data) == UD_POLL || UD_KIND(cqe->user_data) == UD_ACCEPT ||
                 UD_KIND(cqe->user_data) == UD_RECV || UD_KIND(cqe->user_data) == UD_SEND) &&
                !(cqe->flags & IORING_CQE_F_MORE))
                got++;
            n++;
        }
        io_uring_cq_advance(&u->ring, n);
        if ((want >= 0 && got >= want) || r == -ETIME)
            break;
    }
    /* Later deletions (module teardown at fini) have nothing to remove. */
    for (uint32_t i = 0; i < u->nslots; i++) {
        vial_io *io = slot_io(u, i);
        if (io)
            io->gen = ++u->serial;
    }
}

static void ur_fini(vial_loop *l)
{
    uring *u = l->backend_data;
    if (!u)
        return;
    io_uring_queue_exit(&u->ring);
    if (u->ios)
        munmap(u->ios, (size_t)u->cap * sizeof *u->ios);
    if (u->sends)
        munmap(u->sends, SENDS_MAX * sizeof *u->sends);
    if (u->br) {
        munmap(u->br, RBUF_COUNT * sizeof(struct io_uring_buf));
        munmap(u->rbufs, (size_t)RBUF_COUNT * RBUF_SIZE);
    }
    free(u);
    l->backend_data = NULL;
}

static int arm_poll(uring *u, vial_io *io, uint32_t idx)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_multishot(sqe, io->fd,
                                 io->rstate & VIAL_IO_RECV_ON ? POLL_MASK & ~POLLIN : POLL_MASK);
    io_uring_sqe_set_data64(sqe, UD(UD_POLL, idx, io->gen));
    return 0;
}

/* Connections come as completions, each with its descriptor: no wake-up
 * to turn into an accept4, and a backlog of several is taken in one go. */
static int arm_accept(uring *u, vial_io *io, uint32_t idx)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_multishot_accept(sqe, io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, UD(UD_ACCEPT, idx, io->gen));
    return 0;
}

static int slot_take(uring *u, uint32_t *idx)
{
    if (u->free_head) {
        *idx = u->free_head - 1;
        u->free_head = (uint32_t)(u->ios[*idx] >> 1);
        return 0;
    }
    if (u->nslots == u->cap)
        return -ENOSPC; /* more registrations than descriptors */
    *idx = u->nslots++;
    return 0;
}

static int add_kind(uring *u, vial_io *io, unsigned kind)
{
    uint32_t idx;
    int r = slot_take(u, &idx);
    if (r < 0)
        return r;
    io->gen = ++u->serial;
    if (kind == UD_ACCEPT)
        io->rstate = 0;
    else
        io->rstate = io->rstate & VIAL_IO_RECV_WANTED && u->br ? VIAL_IO_RECV_ON : 0;
    io->rbid = 0;
    if ((kind == UD_ACCEPT ? arm_accept : arm_poll)(u, io, idx) < 0 ||
        ((io->rstate & VIAL_IO_RECV_ON) && arm_recv(u, io, idx) < 0)) {
        slot_free(u, idx);
        return -EBUSY;
    }
    u->ios[idx] = (uintptr_t)io | (kind == UD_ACCEPT ? 2 : 0);
    io->slot = idx + 1;
    return 0;
}

static int ur_add(vial_loop *l, vial_io *io)
{
    return add_kind(l->backend_data, io, UD_POLL);
}

static int ur_add_acceptor(vial_loop *l, vial_acceptor *a)
{
    return add_kind(l->backend_data, &a->io, UD_ACCEPT);
}

static int ur_resume_acceptor(vial_loop *l, vial_acceptor *a)
{
    if (!a->io.slot)
        return -ENOENT;
    return arm_accept(l->backend_data, &a->io, a->io.slot - 1);
}

static int ur_del(vial_loop *l, vial_io *io)
{
    uring *u = l->backend_data;
    if (!io->slot)
        return -ENOENT;
    uint32_t idx = io->slot - 1;
    io->slot = 0;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe) { /* else the poll lives on, unheard, until the ring ends */
        /* A cancel, not a poll removal: a removal that meets the poll while
         * its wake-up is pending (a FIN that also completed the RECV) fails
         * with -EALREADY and leaves it armed, holding the closed socket. */
        io_uring_prep_cancel64(sqe, UD(slot_kind(u, idx), idx, io->gen), 0);
        io_uring_sqe_set_data64(sqe, UD(UD_IGNORE, 0, 0));
    }
    if ((io->rstate & (R_ARMED | R_STOP)) == R_ARMED && (sqe = sqe_get(u))) {
        io_uring_prep_cancel64(sqe, UD(UD_RECV, idx, io->gen), 0);
        io_uring_sqe_set_data64(sqe, UD(UD_IGNORE, 0, 0));
    }
    while (io->rbid) {
        unsigned bid = io->rbid - 1u;
        io->rbid = u->rnext[bid];
        give_back(u, bid);
    }
    io->rstate = 0;
    slot_free(u, idx);
    return 0;
}

/* The close itself is not queued: a loop that ends right after (its last
 * connection gone) would never submit it, and the ring is torn down by
 * the main thread, which may not submit to a single-issuer ring. */
static void ur_close(vial_loop *l, vial_io *io)
{
    /* A send queued for this fd but not submitted yet would look the fd
     * up after the close — or find its number taken by another socket. */
    uring *u = l->backend_data;
    if ((io->rstate & R_SENDING) && io_uring_sq_ready(&u->ring))
        io_uring_submit(&u->ring);
    ur_del(l, io);
    close(io->fd);
}

/* --- receiving into ring buffers ------------------------------------------ */

static void setup_recv_buffers(uring *u)
{
    size_t ringsz = RBUF_COUNT * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, ringsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *bufs = mmap(NULL, (size_t)RBUF_COUNT * RBUF_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED)
        goto off;
    struct io_uring_buf_reg reg = {.ring_addr = (uintptr_t)br, .ring_entries = RBUF_COUNT, .bgid = 0};
    if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0)
        goto off; /* before 5.19: receive with recv(2) after readiness */
    u->br = br;
    u->rbufs = bufs;
    io_uring_buf_ring_init(u->br);
    for (int i = 0; i < RBUF_COUNT; i++)
        io_uring_buf_ring_add(u->br, u->rbufs + (size_t)i * RBUF_SIZE, RBUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(RBUF_COUNT), i);
    io_uring_buf_ring_advance(u->br, RBUF_COUNT);
    return;
off:
    if (br != MAP_FAILED)
        munmap(br, ringsz);
    if (bufs != MAP_FAILED)
        munmap(bufs, (size_t)RBUF_COUNT * RBUF_SIZE);
}

static void give_back(uring *u, unsigned bid)
{
    io_uring_buf_ring_add(u->br, u->rbufs + (size_t)bid * RBUF_SIZE, RBUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(RBUF_COUNT), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

/* One multishot receive per connection, live while it reads through the
 * ring: each arrival is a completion with the buffer it filled, and nothing
 * is submitted between one request and the next (a one-shot receive re-armed
 * after every read cost a submission, a first attempt that found the socket
 * empty and a poll armed and torn down each time). A connection that lets
 * input pile up — a second buffer arrives before it read the first, or one
 * comes full (a bulk body) — has its receive cancelled, so it holds only
 * what came before the cancel took effect, and it reads any rest with
 * recv(2) once the receive has ended. An idle connection holds no buffer. */
static int arm_recv(uring *u, vial_io *io, uint32_t idx)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_recv_multishot(sqe, io->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, UD(UD_RECV, idx, io->gen));
    io->rstate = (uint16_t)((io->rstate | R_ARMED) & ~R_STOP);
    return 0;
}

/* Ends io's receive: its last completion (-ECANCELED, or whatever ended it
 * first) comes later. Without a free SQE it lives on: still correct, it
 * just holds more buffers. */
static void stop_recv(uring *u, vial_io *io)
{
    if ((io->rstate & (R_ARMED | R_STOP)) != R_ARMED || !io->slot)
        return;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, UD(UD_RECV, io->slot - 1, io->gen), 0);
    io_uring_sqe_set_data64(sqe, UD(UD_IGNORE, 0, 0));
    io->rstate |= R_STOP;
}

/* Receives through the ring again once io holds nothing, its last receive
 * has ended, and it is not reading with recv(2). */
static void rearm(uring *u, vial_io *io)
{
    if (!io->rbid && !(io->rstate & (R_ARMED | R_EOF | R_ERR | R_SYSCALL)) && io->slot)
        arm_recv(u, io, io->slot - 1);
}

typedef struct done {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
} done;

static void recv_done(vial_loop *l, uring *u, const done *d)
{
    uint32_t idx = UD_IDX(d->ud);
    int has_buf = (d->flags & IORING_CQE_F_BUFFER) != 0;
    unsigned bid = d->flags >> IORING_CQE_BUFFER_SHIFT;
    vial_io *io = idx < u->nslots ? slot_io(u, idx) : NULL;
    if (!io || io->gen != UD_GEN(d->ud)) {
        if (has_buf)
            give_back(u, bid); /* deleted since: the data goes with it */
        return;
    }
    if (!(d->flags & IORING_CQE_F_MORE))
        io->rstate &= (uint16_t)~(R_ARMED | R_STOP); /* the receive's last word */
    if (d->res > 0 && has_buf) {
        u->roff[bid] = 0;
        u->rlen[bid] = (uint16_t)d->res;
        u->rnext[bid] = 0;
        int piled = io->rbid != 0;
        if (!piled) {
            io->rbid = (uint16_t)(bid + 1);
        } else { /* a few at most: the receive is stopped at the second */
            unsigned t = io->rbid - 1u;
            while (u->rnext[t])
                t = u->rnext[t] - 1u;
            u->rnext[t] = (uint16_t)(bid + 1);
        }
        if (d->res == RBUF_SIZE)
            io->rstate |= R_SYSCALL; /* likely more waiting: recv(2) takes it in big reads */
        if (piled || d->res == RBUF_SIZE)
            stop_recv(u, io);
        io->cb(l, io, VIAL_IO_READ);
    } else if (d->res == 0) {
        io->rstate |= R_EOF;
        io->cb(l, io, VIAL_IO_READ | VIAL_IO_HUP);
    } else if (d->res == -ENOBUFS) {
        /* Every buffer is held: this one reads with recv(2) until the
         * socket runs dry, then receives through the ring again. */
        io->rstate |= R_SYSCALL;
        io->cb(l, io, VIAL_IO_READ);
    } else if (d->res == -ECANCELED) {
        /* Stopped by stop_recv. With nothing held, the reader may be
         * waiting on this end: to read with recv(2), or for a new receive. */
        if (!io->rbid) {
            if (io->rstate & R_SYSCALL)
                io->cb(l, io, VIAL_IO_READ);
            else
                rearm(u, io);
        }
    } else if (d->res < 0) {
        io->rstate |= R_ERR;
        io->cb(l, io, VIAL_IO_READ | VIAL_IO_ERR);
    }
}

/* Copies what the ring received, as recv(2) would, buffers in the order
 * they were filled. A buffer the kernel filled whole says more is likely
 * waiting: once the receive has ended and what it took is read, the socket
 * is read with recv(2) like epoll's path, as much as the caller takes,
 * until a short read or EAGAIN says it ran dry (a bulk upload is not slowed
 * to one 4 KiB buffer per completion); then a receive is armed again. Never
 * recv(2) while a receive is live: the two would race for the same bytes.
 * A short read means nothing is held: the next input is a new edge (the
 * caller may go idle on it), which the live or re-armed receive reports. */
static long ur_recv(vial_loop *l, vial_io *io, void *dst, size_t cap)
{
    uring *u = l->backend_data;
    size_t got = 0;
    while (io->rbid && got < cap) {
        unsigned bid = io->rbid - 1u;
        size_t n = (size_t)(u->rlen[bid] - u->roff[bid]);
        if (n > cap - got)
            n = cap - got;
        memcpy((char *)dst + got, u->rbufs + (size_t)bid * RBUF_SIZE + u->roff[bid], n);
        got += n;
        u->roff[bid] = (uint16_t)(u->roff[bid] + n);
        if (u->roff[bid] < u->rlen[bid])
            return (long)got; /* the caller's buffer is full */
        io->rbid = u->rnext[bid];
        give_back(u, bid);
    }
    if (got == cap)
        return (long)got;
    if (io->rstate & R_ARMED) /* live, or its end not seen yet: its completions say what comes */
        return got ? (long)got : -EAGAIN;
    if (io->rstate & R_SYSCALL) {
        ssize_t n = recv(io->fd, (char *)dst + got, cap - got, 0);
        if (n > 0 && got + (size_t)n == cap)
            return (long)cap; /* maybe more: stay on recv(2) */
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return got ? (long)got : n == 0 ? 0 : -errno; /* the next call sees it again */
        io->rstate &= (uint16_t)~R_SYSCALL;
        rearm(u, io);
        got += n > 0 ? (size_t)n : 0;
        return got ? (long)got : -EAGAIN;
    }
    if (io->rstate & R_EOF)
        return (long)got;
    if (io->rstate & R_ERR)
        return got ? (long)got : -ECONNRESET;
    rearm(u, io); /* stopped, and all it took is read */
    return got ? (long)got : -EAGAIN;
}

static unsigned poll_events(int res)
{
    unsigned v = 0;
    if (res & POLLIN)
        v |= VIAL_IO_READ;
    if (res & POLLOUT)
        v |= VIAL_IO_WRITE;
    if (res & (POLLRDHUP | POLLHUP))
        v |= VIAL_IO_HUP;
    if (res & POLLERR)
        v |= VIAL_IO_ERR;
    return v;
}

static void dispatch_accept(vial_loop *l, uring *u, const done *d)
{
    uint32_t idx = UD_IDX(d->ud);
    vial_io *io = idx < u->nslots ? slot_io(u, idx) : NULL;
    if (!io || io->gen != UD_GEN(d->ud)) {
        /* Deleted since (the listener closed): a connection accepted
         * meanwhile has no owner and is refused. */
        if (d->res >= 0)
            close(d->res);
        return;
    }
    vial_acceptor *a = (vial_acceptor *)io;
    if (d->res == -ECANCELED)
        return;
    a->on_accept(l, a, d->res); /* an error ends the accept: the owner resumes it */
    /* Ended without an error: the completion queue was full. */
    if (d->res >= 0 && !(d->flags & IORING_CQE_F_MORE) && slot_io(u, idx) == io &&
        io->gen == UD_GEN(d->ud))
        arm_accept(u, io, idx);
}

/* Hands buf[0..len) to the kernel: one SEND, MSG_WAITALL so that a
 * completion is all of it or an error. The buffer is the send's until the
 * completion, which calls release with it whatever became of io; io hears
 * VIAL_IO_SENT then (with VIAL_IO_ERR if not all went), if still
 * registered. -EBUSY: too many in flight (send it yourself). */
static int ur_send(vial_loop *l, vial_io *io, void *buf, size_t len,
                   void (*release)(vial_loop *loop, void *buf))
{
    uring *u = l->backend_data;
    if (!io->slot)
        return -ENOENT;
    uint32_t i;
    if (u->sends_free) {
        i = u->sends_free - 1;
        u->sends_free = u->sends[i].next_free;
    } else {
        if (!u->sends) {
            void *m = mmap(NULL, SENDS_MAX * sizeof *u->sends, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED)
                return -ENOMEM;
            u->sends = m;
        }
        if (u->nsends == SENDS_MAX)
            return -EBUSY;
        i = u->nsends++;
    }
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe) {
        u->sends[i].next_free = u->sends_free;
        u->sends_free = i + 1;
        return -EBUSY;
    }
    sending *e = &u->sends[i];
    e->release = release;
    e->len = (uint32_t)len;
    e->idx = io->slot - 1;
    e->gen = io->gen;
    e->next_free = 0;
    if (len <= SEND_INLINE) {
        memcpy(e->data, buf, len);
        e->buf = NULL;
        release(l, buf);
    } else {
        e->buf = buf;
    }
    io_uring_prep_send(sqe, io->fd, e->buf ? e->buf : e->data, len, MSG_WAITALL | MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, UD(UD_SEND, i, 0));
    io->rstate |= R_SENDING;
    return 0;
}

static void send_end(vial_loop *l, uring *u, uint32_t i)
{
    sending *s = &u->sends[i];
    if (s->buf)
        s->release(l, s->buf);
    s->buf = NULL;
    s->next_free = u->sends_free;
    u->sends_free = i + 1;
}

static void send_done(vial_loop *l, uring *u, const done *d)
{
    uint32_t i = UD_IDX(d->ud);
    uint32_t idx = u->sends[i].idx, gen = u->sends[i].gen, len = u->sends[i].len;
    send_end(l, u, i);
    vial_io *io = idx < u->nslots ? slot_io(u, idx) : NULL;
    if (!io || io->gen != gen)
        return;
    io->rstate &= (uint16_t)~R_SENDING;
    io->cb(l, io, d->res == (int32_t)len ? VIAL_IO_SENT : VIAL_IO_SENT | VIAL_IO_ERR);
}

static void dispatch(vial_loop *l, uring *u, const done *d)
{
    uint32_t idx = UD_IDX(d->ud);
    unsigned kind = UD_KIND(d->ud);
    if (kind == UD_RECV) {
        recv_done(l, u, d);
        return;
    }
    if (kind == UD_SEND) {
        send_done(l, u, d);
        return;
    }
    if (kind == UD_ACCEPT) {
        dispatch_accept(l, u, d);
        return;
    }
    if (kind != UD_POLL || idx >= u->nslots)
        return;
    vial_io *io = slot_io(u, idx);
    if (!io || io->gen != UD_GEN(d->ud))
        return; /* deleted since: the removal's echo */
    if (d->res < 0) {
        if (d->res == -ECANCELED)
            return;
        /* The poll itself failed (a bad fd): tell the owner, once. */
        if (!(d->flags & IORING_CQE_F_MORE))
            io->cb(l, io, VIAL_IO_ERR | VIAL_IO_HUP);
        return;
    }
    io->cb(l, io, poll_events(d->res));
    /* A multishot poll ends when the kernel could not post (completion
     * queue overflow) or chose to stop: arm it again, if the owner kept it. */
    if (!(d->flags & IORING_CQE_F_MORE) && slot_io(u, idx) == io && io->gen == UD_GEN(d->ud))
        arm_poll(u, io, idx);
}

/* The SQEs prepared since the last enter, made visible to the kernel (what
 * liburing's submit does before its own enter). */
static unsigned sq_flush(struct io_uring *ring)
{
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    return tail - IO_URING_READ_ONCE(*sq->khead);
}

/* Submits, and sleeps until a completion or timeout_ms (< 0: none). Under
 * load — the last iteration handled BUSY_BATCH completions or more — the
 * kernel (6.12+) is asked to wait up to MIN_WAIT_US for WAIT_NR of them
 * before it wakes the thread, and after that for any one: every sleep and
 * wake-up costs a context switch and, on this VM, interrupt-enabling that
 * is dear, so fewer, fuller batches are cheaper (wrk -c256: 5.8 requests
 * per io_uring_enter without, 19 with). A request to a quiet loop is not
 * delayed: the previous iteration had few completions, so the wait is for
 * one. Under load an arrival can wait up to MIN_WAIT_US for company. */
static int wait_events(uring *u, int timeout_ms)
{
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    struct io_uring_getevents_arg arg = {.sigmask = 0, .sigmask_sz = _NSIG / 8,
                                         .ts = timeout_ms > 0 ? (uint64_t)(uintptr_t)&ts : 0};
    unsigned wait_nr = 1;
    if (u->min_wait_us && u->last_batch >= BUSY_BATCH) {
        wait_nr = WAIT_NR;
        arg.pad = u->min_wait_us; /* min_wait_usec since 6.12 */
    }
    return io_uring_enter2((unsigned)u->ring.ring_fd, sq_flush(&u->ring), wait_nr,
                           IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg, sizeof arg);
}

static int ur_poll(vial_loop *l, int timeout_ms)
{
    uring *u = l->backend_data;
    if (!u->enabled) {
        /* (liburing 2.3 declares io_uring_enable_rings but does not export it) */
        int r = io_uring_register(u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
        if (r < 0)
            return r;
        u->enabled = 1;
    }
    int r;
    if (timeout_ms == 0)
        r = io_uring_submit_and_get_events(&u->ring);
    else
        r = wait_events(u, timeout_ms);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN)
        return r;
    int total = 0;
    for (;;) {
        struct io_uring_cqe *cqes[CQE_BATCH];
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, CQE_BATCH);
        if (!n)
            break;
        /* Copied out and released before any callback runs: a callback
         * may submit, and the ring's slots are the kernel's again. */
        done d[CQE_BATCH];
        for (unsigned i = 0; i < n; i++)
            d[i] = (done){cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
        io_uring_cq_advance(&u->ring, n);
        if (!total)
            l->now = vial_clock_ns();
        for (unsigned i = 0; i < n; i++)
            dispatch(l, u, &d[i]);
        total += (int)n;
        if (n < CQE_BATCH)
            break;
    }
    u->last_batch = (uint32_t)total;
    return r == -EINTR ? -EINTR : total;
}

const vial_backend vial_backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .add = ur_add,
    .del = ur_del,
    .poll = ur_poll,
    .close = ur_close,
    .quiesce = ur_quiesce,
    .add_acceptor = ur_add_acceptor,
    .resume_acceptor = ur_resume_acceptor,
    .recv = ur_recv,
    .send = ur_send,
};
#endif
