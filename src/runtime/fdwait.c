#include "runtime/fdwait.h"
#include "runtime/coro.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>

static void fdwait_cb(vial_loop *l, vial_io *io, unsigned ev)
{
    vial_fdwait *w = (vial_fdwait *)io;
    w->got |= ev;
    if (w->waiter && (ev & (w->want | VIAL_IO_HUP | VIAL_IO_ERR)))
        vial_coro_wake(w->waiter, 0);
}

int vial_fdwait_open(vial_fdwait *w, vial_loop *loop, int fd)
{
    memset(w, 0, sizeof *w);
    w->io.fd = fd;
    w->io.cb = fdwait_cb;
    w->loop = loop;
    int r = vial_io_add(loop, &w->io);
    w->registered = r == 0;
    return r;
}

void vial_fdwait_close(vial_fdwait *w)
{
    if (!w->registered)
        return;
    vial_io_del(w->loop, &w->io);
    w->registered = 0;
    if (w->waiter)
        vial_coro_wake(w->waiter, -EBADF);
}

static unsigned poll_now(int fd, unsigned events)
{
    struct pollfd p = {.fd = fd, .events = 0};
    if (events & VIAL_IO_READ)
        p.events |= POLLIN;
    if (events & VIAL_IO_WRITE)
        p.events |= POLLOUT;
    if (poll(&p, 1, 0) <= 0)
        return 0;
    unsigned r = 0;
    if (p.revents & POLLIN)
        r |= VIAL_IO_READ;
    if (p.revents & POLLOUT)
        r |= VIAL_IO_WRITE;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
        r |= VIAL_IO_READ | VIAL_IO_WRITE;
    return r & (events | VIAL_IO_READ | VIAL_IO_WRITE);
}

int vial_fdwait_wait(vial_fdwait *w, unsigned events, uint64_t until)
{
    if (!w->registered)
        return -EBADF;
    for (;;) {
        unsigned ready = poll_now(w->io.fd, events);
        if (ready & events)
            return (int)(ready & events);
        if (ready) /* hang-up / error: let the library find out */
            return (int)ready;
        w->want = events;
        w->got = 0;
        w->waiter = vial_coro_current();
        int r = vial_coro_wait(until);
        w->waiter = NULL;
        if (r < 0)
            return r;
    }
}

static atomic_int next_key;

int vial_loop_key(void)
{
    int k = atomic_fetch_add(&next_key, 1);
    return k < VIAL_LOOP_LOCALS ? k : -1;
}

void *vial_loop_get_local(vial_loop *loop, int key)
{
    return key >= 0 && key < VIAL_LOOP_LOCALS ? loop->locals[key] : NULL;
}

void vial_loop_set_local(vial_loop *loop, int key, void *value)
{
    if (key >= 0 && key < VIAL_LOOP_LOCALS)
        loop->locals[key] = value;
}
