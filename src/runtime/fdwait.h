/* Awaiting a file descriptor from a coroutine: the primitive the client
 * libraries (libpq, hiredis, libcurl) are driven with.
 *
 * The loop registers fds edge-triggered; libraries, though, read "some" data
 * and expect to be told again if more is pending (level-triggered). So
 * vial_fdwait_wait first asks the kernel with a zero-timeout poll(2) and
 * parks only when the fd is really not ready: one extra system call per
 * wait, negligible next to a network round trip, and never a lost wake-up. */
#ifndef VIAL_RUNTIME_FDWAIT_H
#define VIAL_RUNTIME_FDWAIT_H

#include "runtime/loop.h"

#include <stdint.h>

typedef struct vial_fdwait {
    vial_io io;
    vial_loop *loop;
    vial_coro *waiter;
    unsigned want;  /* VIAL_IO_READ / VIAL_IO_WRITE the waiter waits for */
    unsigned got;   /* events seen since the wait began */
    int registered;
} vial_fdwait;

/* Registers fd with loop. Returns 0 or a negative errno. */
int vial_fdwait_open(vial_fdwait *w, vial_loop *loop, int fd);

/* Deregisters (call before the fd is closed or handed back to a library
 * that will close it). A coroutine parked on it is woken with -EBADF. */
void vial_fdwait_close(vial_fdwait *w);

/* From a coroutine: waits until fd is ready for any of `events`
 * (VIAL_IO_READ | VIAL_IO_WRITE), until `until` (loop ns; 0: no limit of its
 * own), or the coroutine's deadline. Returns the ready events (> 0),
 * -ETIMEDOUT, -ECANCELED or -EBADF. Hang-ups and errors count as ready for
 * both, so the library's next call sees them. */
int vial_fdwait_wait(vial_fdwait *w, unsigned events, uint64_t until);

/* Per-loop slots for modules that keep per-thread state (connection pools):
 * vial_loop_key() hands out a slot index once per process; the slot's
 * pointer starts NULL on every loop. */
#define VIAL_LOOP_LOCALS 16
int vial_loop_key(void);
void *vial_loop_get_local(vial_loop *loop, int key);
void vial_loop_set_local(vial_loop *loop, int key, void *value);

#endif
