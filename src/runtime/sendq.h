/* Many independent non-blocking sends from one loop thread at once (the
 * hub's drain: one broadcast to thousands of sockets).
 *
 * A send(2) per socket pays a system call's entry and exit each time —
 * here (a VM with page-table isolation and no PCID) a TLB flush per call,
 * a third of a small loopback send's cost. With io_uring the whole batch
 * goes into the kernel in one io_uring_enter: each send still runs inline
 * and non-blocking (MSG_DONTWAIT: a full socket answers -EAGAIN, it is not
 * retried later), so the results are known when the call returns, as
 * with send(2). Without liburing, or where the kernel refuses a ring
 * (io_uring disabled, seccomp), each is a send(2). */
#ifndef VIAL_RUNTIME_SENDQ_H
#define VIAL_RUNTIME_SENDQ_H

#include <stddef.h>
#include <sys/types.h>

#include "runtime/loop.h"

typedef struct vial_send {
    int fd;
    const void *p;
    size_t len;
    ssize_t res; /* out: bytes sent, or -errno (-EAGAIN: the socket is full) */
} vial_send;

/* Sends each v[i] (MSG_NOSIGNAL | MSG_DONTWAIT) and sets its res. The
 * sends are independent: two to one socket in the same call may go out in
 * either order. On l's thread; l keeps a small ring from its first batch
 * of two or more until it ends. */
void vial_send_many(vial_loop *l, vial_send *v, size_t n);

#endif
