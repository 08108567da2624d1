/* vial_send_many (sendq.h): a batch of sends through one io_uring_enter. */
#include "runtime/sendq.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

static void send_each(vial_send *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ssize_t w = send(v[i].fd, v[i].p, v[i].len, MSG_NOSIGNAL | MSG_DONTWAIT);
        v[i].res = w < 0 ? -errno : w;
    }
}

#ifdef VIAL_HAVE_URING /* built only with liburing (CMakeLists.txt) */

#include <liburing.h>

/* A chunk's sends, all submitted with one call; the completion ring is
 * twice as long, so a chunk's completions always fit. 256 SQEs: 16 KiB,
 * per loop thread that ever sent a batch. */
#define SENDQ_ENTRIES 256
#define UD_CANCEL UINT64_MAX

typedef struct sendq {
    struct io_uring ring;
    int ok;   /* 1 ring ready, -1 refused or failed (then send(2) each) */
    int made; /* the ring exists (to be freed) */
    vial_msg fini;
} sendq;

static void sendq_fini(vial_loop *l, vial_msg *m)
{
    sendq *q = (sendq *)((char *)m - offsetof(sendq, fini));
    if (q->made)
        io_uring_queue_exit(&q->ring);
    free(q);
    l->sendq = NULL;
}

static sendq *sendq_get(vial_loop *l)
{
    sendq *q = l->sendq;
    if (q)
        return q;
    if (!(q = calloc(1, sizeof *q)))
        return NULL;
    /* SUBMIT_ALL: a send that fails at submission (a closed fd) is
     * completed with its error, and the rest of the chunk still goes. */
    q->made = io_uring_queue_init(SENDQ_ENTRIES, &q->ring, IORING_SETUP_SUBMIT_ALL) == 0;
    q->ok = q->made ? 1 : -1;
    q->fini.cb = sendq_fini;
    vial_loop_at_exit(l, &q->fini);
    l->sendq = q;
    return q;
}

/* Submits v[0..n), n <= SENDQ_ENTRIES, and collects every result. 0, or
 * -1 when the ring failed before anything was submitted (then sent by the
 * caller). */
static int sendq_chunk(sendq *q, vial_send *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct io_uring_sqe *e = io_uring_get_sqe(&q->ring);
        io_uring_prep_send(e, v[i].fd, v[i].p, v[i].len, MSG_NOSIGNAL | MSG_DONTWAIT);
        io_uring_sqe_set_data64(e, i);
    }
    int r;
    do
        r = io_uring_submit(&q->ring);
    while (r == -EINTR);
    if (r <= 0) {
        /* Nothing went, but the entries sit in the shared ring where a later
         * call would submit them: this ring is used no more. */
        q->ok = -1;
        return -1;
    }
    size_t want = (size_t)r, got = 0;
    int cancelled = 0;
    if (want < n) { /* the same: the rest did not go, nor will */
        q->ok = -1;
        for (size_t i = want; i < n; i++)
            v[i].res = -EAGAIN;
    }
    while (got < want) {
        struct io_uring_cqe *c;
        if (io_uring_peek_cqe(&q->ring, &c) != 0) {
            /* A send that did not complete inline waits in the kernel
             * (it should not: MSG_DONTWAIT makes a full socket fail at
             * once); v[] must not outlive this call, so cancel it. */
            if (!cancelled) {
                struct io_uring_sqe *e = io_uring_get_sqe(&q->ring);
                if (e) {
                    io_uring_prep_cancel64(e, 0, IORING_ASYNC_CANCEL_ANY);
                    io_uring_sqe_set_data64(e, UD_CANCEL);
                    io_uring_submit(&q->ring);
                }
                cancelled = 1;
            }
            if (io_uring_wait_cqe(&q->ring, &c) != 0)
                continue;
        }
        uint64_t ud = io_uring_cqe_get_data64(c);
        if (ud != UD_CANCEL && ud < n) {
            v[ud].res = c->res == -ECANCELED ? -EAGAIN : c->res;
            got++;
        }
        io_uring_cqe_seen(&q->ring, c);
    }
    return 0;
}

void vial_send_many(vial_loop *l, vial_send *v, size_t n)
{
    sendq *q = n > 1 && l ? sendq_get(l) : NULL;
    if (!q || q->ok < 0) {
        send_each(v, n);
        return;
    }
    for (size_t i = 0; i < n; i += SENDQ_ENTRIES) {
        size_t k = n - i < SENDQ_ENTRIES ? n - i : SENDQ_ENTRIES;
        if (k == 1 || q->ok < 0 || sendq_chunk(q, v + i, k) < 0)
            send_each(v + i, k);
    }
}

#else

void vial_send_many(vial_loop *l, vial_send *v, size_t n)
{
    (void)l;
    send_each(v, n);
}

#endif
