"""Cancellation that reaches queued work (the abuse issue, item 4): reduced
versions of bench/abuse/abuse.py's reset-before-handler and reset-flood-pool.

A client that sends a request and resets at once is gone before its handler
starts: the request must start cancelled (its sync hooks and views are never
queued, its awaits fail at once), so such clients can neither keep handlers
running nor fill the worker pool's queue."""

import socket
import struct
import time

from appkit import get


def reset_after_sending(server, raw):
    c = socket.create_connection(server, timeout=5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sendall(raw)
    c.close()  # SO_LINGER 0: the close sends RST


def probe_stats(server):
    r = get(server, "/async/stats")
    assert r.status == 200, r
    return r.json()


def test_reset_before_handler_starts_is_cancelled(server):
    before = probe_stats(server)
    n = 20
    for _ in range(n):
        reset_after_sending(server, b"GET /async/disconnect-probe?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(2.0)  # the probes would have completed by now if they ran
    after = probe_stats(server)
    completed = after["completed"] - before["completed"]
    assert completed == 0, "%d of %d reset requests ran their handler to the end (%s -> %s)" % (
        completed, n, before, after)


def test_reset_requests_do_not_fill_the_pool(server):
    # 1500 sync jobs of 50 ms on a 16-thread pool would hold it for ~5 s if
    # they were queued and run although their clients are gone.
    n = 1500
    for _ in range(n):
        reset_after_sending(server, b"GET /sync/block?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
    t0 = time.monotonic()
    r = get(server, "/sync/block?ms=1")
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert took < 2.5, "a sync request waited %.2f s behind %d departed clients' jobs" % (took, n)
