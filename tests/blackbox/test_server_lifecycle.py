"""Spec §1: readiness, listening address, and clean exit on SIGTERM/SIGINT (each
test here runs its own server instance)."""

import signal
import socket
import time

import pytest

from httpkit import GOOD_REQUEST, Client, req

STOP_LIMIT = 5.0

pytestmark = pytest.mark.slow


def _assert_stopped(srv, sig=signal.SIGTERM):
    rc, elapsed = srv.stop(sig, limit=STOP_LIMIT + 1)
    assert rc is not None, "server did not exit within %.0f s of %s\n%s" % (
        STOP_LIMIT + 1, sig.name, srv.log_text())
    assert rc == 0, "exit status %s after %s\n%s" % (rc, sig.name, srv.log_text())
    assert elapsed <= STOP_LIMIT, "exit took %.2f s after %s\n%s" % (elapsed, sig.name, srv.log_text())
    # It no longer accepts connections.
    with pytest.raises(OSError):
        socket.create_connection(srv.addr, timeout=1).close()


def _assert_conn_ended(c, timeout=2.0):
    closed, _extra = c.wait_closed(timeout)
    assert closed, "client connection still open after the server exited"


def test_ready_within_5s(spawn_server):
    srv = spawn_server()
    assert srv.ready_after is not None and srv.ready_after < 5.0, srv.ready_after
    with Client(*srv.addr) as c:
        r = c.request(GOOD_REQUEST)
        assert r.status == 200 and r.body == b"vial conformance", r
    _assert_stopped(srv)


def test_listens_only_on_given_address(server):
    host, port = server
    with Client(host, port) as c:
        assert c.request(GOOD_REQUEST).status == 200
    # 127.0.0.2 is also loopback on Linux: a server bound to 0.0.0.0 would answer there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()
    if socket.has_ipv6:
        try:
            s6 = socket.create_connection(("::1", port), timeout=2)
        except OSError:
            pass
        else:
            s6.close()
            pytest.fail("server also accepts connections on [::1]:%d" % port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_exit_0_with_idle_connections(spawn_server, sig):
    srv = spawn_server()
    fresh = Client(*srv.addr)            # connected, never sent anything
    used = Client(*srv.addr)             # keep-alive connection after one request
    r = used.request(GOOD_REQUEST)
    assert r.status == 200 and not r.closes
    partial = Client(*srv.addr)          # in the middle of a request head
    partial.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.1)
    _assert_stopped(srv, sig)
    for c in (fresh, used, partial):
        _assert_conn_ended(c)
        c.close()


def test_exit_0_with_stream_in_progress(spawn_server):
    srv = spawn_server()
    c = Client(*srv.addr, timeout=10)
    c.send(req("GET", "/stream?n=10000&ms=100"))
    head = c.read_head(time.monotonic() + 5)
    assert head.status == 200, head
    # Let a few lines flow.
    got = c.read_some(2.0)
    assert got, "no stream data"
    _assert_stopped(srv)
    _assert_conn_ended(c)
    c.close()


def test_exit_0_with_async_handler_in_progress(spawn_server):
    srv = spawn_server()
    c = Client(*srv.addr, timeout=10)
    c.send(req("GET", "/async/sleep?ms=30000"))
    time.sleep(0.3)
    _assert_stopped(srv)
    _assert_conn_ended(c)
    c.close()


def test_exit_0_with_sync_handler_blocking(spawn_server):
    # A worker thread stuck in a 10 s nanosleep must not hold the exit past 5 s.
    srv = spawn_server()
    c = Client(*srv.addr, timeout=10)
    c.send(req("GET", "/sync/block?ms=10000"))
    time.sleep(0.3)
    _assert_stopped(srv)
    _assert_conn_ended(c)
    c.close()


def test_exit_0_after_traffic(spawn_server):
    srv = spawn_server()
    for _ in range(20):
        with Client(*srv.addr) as c:
            c.send(GOOD_REQUEST * 3)
            for _ in range(3):
                assert c.read_final().status == 200
    _assert_stopped(srv)
