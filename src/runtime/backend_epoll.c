/* The epoll backend: edge-triggered registration for read, write and
 * peer hang-up, one epoll_ctl per fd lifetime. */
#include "runtime/loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define EPOLL_BATCH 512

static int ep_init(vial_loop *l)
{
    l->backend_fd = epoll_create1(EPOLL_CLOEXEC);
    return l->backend_fd < 0 ? -errno : 0;
}

static void ep_fini(vial_loop *l)
{
    close(l->backend_fd);
}

static int ep_add(vial_loop *l, vial_io *io)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    return epoll_ctl(l->backend_fd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? -errno : 0;
}

static int ep_del(vial_loop *l, vial_io *io)
{
    return epoll_ctl(l->backend_fd, EPOLL_CTL_DEL, io->fd, NULL) < 0 ? -errno : 0;
}

static int ep_poll(vial_loop *l, int timeout_ms)
{
    struct epoll_event evs[EPOLL_BATCH];
    int n = epoll_wait(l->backend_fd, evs, EPOLL_BATCH, timeout_ms);
    if (n < 0)
        return -errno;
    if (n > 0)
        l->now = vial_clock_ns();
    for (int i = 0; i < n; i++) {
        unsigned e = evs[i].events, v = 0;
        if (e & EPOLLIN)
            v |= VIAL_IO_READ;
        if (e & EPOLLOUT)
            v |= VIAL_IO_WRITE;
        if (e & (EPOLLRDHUP | EPOLLHUP))
            v |= VIAL_IO_HUP;
        if (e & EPOLLERR)
            v |= VIAL_IO_ERR;
        vial_io *io = evs[i].data.ptr;
        io->cb(l, io, v);
    }
    return n;
}

const vial_backend vial_backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .add = ep_add,
    .del = ep_del,
    .poll = ep_poll,
};
