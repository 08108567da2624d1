"""Half-close (RFC 9112 §9.6): a client may send its requests and then shut
down its sending side; it still expects every answer. A FIN with nothing
left to serve is a disconnect and cancels the running handler (§4.6)."""
import json
import socket
import time
import urllib.request

import pytest

# Python's ssl cannot half-close a connection (SSLSocket.shutdown drops TLS,
# unwrap waits for the server's close_notify): test_tls.py half-closes with
# a close_notify through a memory BIO instead.
pytestmark = pytest.mark.plain_tcp("a TCP half-close; see test_tls.py")


def _read_until_close(sock, limit=5.0):
    sock.settimeout(limit)
    buf = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        d = sock.recv(65536)
        if not d:
            return buf, True
        buf += d
    return buf, False


def test_pipelined_then_half_closed_gets_every_answer(server):
    host, port = server
    reqs = (b"GET /sync/block?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /async/sleep?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n" * 3
            + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection((host, port)) as s:
        s.sendall(reqs)
        s.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        buf, closed = _read_until_close(s)
    assert buf.count(b"HTTP/1.1 200 OK\r\n") == 5, buf[:400]
    assert buf.endswith(b"vial conformance")
    assert closed and time.monotonic() - t0 < 3.0  # closed once answered, not at the idle timeout


def test_single_request_then_half_close_is_answered_when_quick(server):
    host, port = server
    with socket.create_connection((host, port)) as s:
        s.sendall(b"GET /hello/x HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        buf, closed = _read_until_close(s)
    assert buf.startswith(b"HTTP/1.1 200 OK\r\n") and buf.endswith(b"Hello, x!")
    assert closed


def _stats(host, port):
    with urllib.request.urlopen("http://%s:%d/async/stats" % (host, port), timeout=5) as r:
        return json.load(r)


def test_half_close_during_long_handler_cancels_it(server):
    host, port = server
    before = _stats(host, port)
    with socket.create_connection((host, port)) as s:
        s.sendall(b"GET /async/disconnect-probe?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.5
        after = _stats(host, port)
        while after["cancelled"] == before["cancelled"] and time.monotonic() < deadline:
            time.sleep(0.05)
            after = _stats(host, port)
    assert after["started"] == before["started"] + 1
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["completed"] == before["completed"]


def test_fin_right_after_the_answer_closes_the_connection(server):
    # The websocket client's way of giving up: read the answer, then FIN
    # and wait for the server's. On io_uring the FIN completes the armed
    # receive and wakes the poll together; the connection must still be
    # closed for real (the poll must not keep the socket open).
    host, port = server
    for _ in range(20):
        with socket.create_connection((host, port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            buf = b""
            while not buf.endswith(b"vial conformance"):
                d = s.recv(65536)
                assert d, buf
                buf += d
            s.shutdown(socket.SHUT_WR)
            rest, closed = _read_until_close(s, 2.0)
            assert closed and rest == b"", "the server kept the connection after the client's FIN"
