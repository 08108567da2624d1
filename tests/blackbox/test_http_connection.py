"""Spec §6 "Connections" and the §2 response invariants (Date, Content-Length,
HTTP/1.1 status line), including on HTTP-layer rejections."""

import threading
import time

import pytest

from httpkit import GOOD_REQUEST, check_common, check_date, connect, req

H = b"Host: localhost\r\n"


def expect_root(r):
    assert r.status == 200 and r.body == b"vial conformance", r


# --- persistence ------------------------------------------------------------------

def test_http11_persistent_by_default(server):
    with connect(server) as c:
        for i in range(5):
            r = c.request(req("GET", "/header/x-i", headers=[("X-I", i)]))
            assert r.status == 200 and r.json() == {"name": "x-i", "value": str(i)}, r
            assert not r.closes, r
        c.assert_open(0.3)


@pytest.mark.parametrize("value", ["close", "Close", "CLOSE", "keep-alive, close", "foo,close", " close "])
def test_connection_close_answered_and_closed(server, value):
    with connect(server) as c:
        c.send(req("GET", "/", headers=[("Connection", value)]) + GOOD_REQUEST + GOOD_REQUEST)
        r = c.read_final()
        expect_root(r)
        assert r.closes, "response to Connection: %s lacks Connection: close: %r" % (value, r)
        c.assert_closed(1.0, what="the Connection: close response (later pipelined requests must not be answered)")


def test_connection_close_second_of_pipeline(server):
    with connect(server) as c:
        c.send(GOOD_REQUEST + req("GET", "/methods", headers=[("Connection", "close")]) + GOOD_REQUEST)
        r1 = c.read_final()
        expect_root(r1)
        assert not r1.closes
        r2 = c.read_final()
        assert r2.status == 200 and r2.json() == {"method": "GET"}, r2
        assert r2.closes, r2
        c.assert_closed(1.0)


def test_connection_close_on_post_with_body(server):
    with connect(server) as c:
        c.send(req("POST", "/echo/body", headers=[("Connection", "close")], body=b"bye"))
        r = c.read_final("POST")
        assert r.status == 200 and r.body == b"bye", r
        assert r.closes
        c.assert_closed(1.0)


def test_http10_closed_after_response(server):
    with connect(server) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n" + b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_final()
        expect_root(r)
        assert r.version == "HTTP/1.1"
        assert "keep-alive" not in r.tokens("connection"), r
        c.assert_closed(1.0, what="the HTTP/1.0 response")


def test_http10_with_host_closed_after_response(server):
    with connect(server) as c:
        r = c.request(b"GET /methods HTTP/1.0\r\nHost: localhost\r\n\r\n")
        assert r.status == 200 and r.json() == {"method": "GET"}, r
        c.assert_closed(1.0, what="the HTTP/1.0 response")


@pytest.mark.parametrize("value", ["keep-alive", "Keep-Alive"])
def test_http10_keep_alive(server, value):
    with connect(server) as c:
        r = c.request(b"GET / HTTP/1.0\r\nConnection: " + value.encode() + b"\r\n\r\n")
        expect_root(r)
        if "keep-alive" in r.tokens("connection"):
            # The server chose to keep it open: it must really be open.
            r2 = c.request(b"GET /methods HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert r2.status == 200 and r2.json() == {"method": "GET"}, r2
        else:
            c.assert_closed(1.0, what="an HTTP/1.0 response without Connection: keep-alive")


def test_http10_post_body(server):
    with connect(server) as c:
        r = c.request(b"POST /echo/body HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
        assert r.status == 200 and r.body == b"abc", r


# --- pipelining --------------------------------------------------------------------

def _numbered(i):
    return req("GET", "/header/x-seq", headers=[("X-Seq", i)])


def _check_numbered(r, i):
    assert r.status == 200, (i, r)
    assert r.json() == {"name": "x-seq", "value": str(i)}, (i, r)


@pytest.mark.parametrize("slow", ["/sync/block?ms=300", "/async/sleep?ms=300"])
def test_pipeline_40_deep_with_slow_request_first(server, slow):
    reqs = [req("GET", slow)]
    kinds = ["slow"]
    for i in range(1, 40):
        if i == 5:
            reqs.append(req("GET", "/async/sleep?ms=100")); kinds.append("sleep100")
        elif i % 10 == 3:
            reqs.append(req("HEAD", "/")); kinds.append("head")
        elif i % 10 == 7:
            reqs.append(req("GET", "/status/204")); kinds.append("204")
        elif i % 10 == 9:
            reqs.append(req("POST", "/echo/body", body=b"body %d" % i)); kinds.append("echo")
        else:
            reqs.append(_numbered(i)); kinds.append("num")
    with connect(server, timeout=10.0) as c:
        t0 = time.monotonic()
        c.send(b"".join(reqs))
        for i, kind in enumerate(kinds):
            method = {"head": "HEAD", "echo": "POST"}.get(kind, "GET")
            r = c.read_final(method, timeout=10.0)
            assert not r.closes, (i, r)
            if kind == "slow":
                assert r.status == 200, r
                assert r.json() in ({"blocked_ms": 300}, {"slept_ms": 300}), r
            elif kind == "sleep100":
                assert r.status == 200 and r.json() == {"slept_ms": 100}, r
            elif kind == "head":
                assert r.status == 200 and r.body == b"" and r.header("content-length") == "16", r
            elif kind == "204":
                assert r.status == 204 and r.body == b"", r
            elif kind == "echo":
                assert r.status == 200 and r.body == b"body %d" % i, r
            else:
                _check_numbered(r, i)
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.3
        # Nothing extra was sent.
        c.assert_open(0.2)


def test_pipeline_100_deep(server):
    with connect(server, timeout=10.0) as c:
        c.send(b"".join(_numbered(i) for i in range(100)))
        for i in range(100):
            _check_numbered(c.read_final(timeout=10.0), i)


def test_pipeline_sent_in_odd_fragments(server):
    raw = b"".join(_numbered(i) for i in range(10))
    with connect(server) as c:
        step = 7
        for off in range(0, len(raw), step):
            c.send(raw[off:off + step])
            time.sleep(0.001)
        for i in range(10):
            _check_numbered(c.read_final(), i)


def test_head_204_304_have_no_body_and_next_response_follows(server):
    seq = [
        ("HEAD", "/"), ("GET", "/status/204"), ("GET", "/status/304"), ("HEAD", "/methods"),
        ("GET", "/status/205"), ("HEAD", "/status/404"), ("HEAD", "/status/204"), ("GET", "/"),
    ]
    with connect(server) as c:
        c.send(b"".join(req(m, t) for m, t in seq))
        out = [c.read_final(m) for m, _ in seq]
        assert [r.status for r in out] == [200, 204, 304, 200, 205, 404, 204, 200], out
        for r in out[:-1]:
            assert r.body == b""
        expect_root(out[-1])
        c.assert_open(0.3)


@pytest.mark.parametrize("target", ["/status/204", "/status/304"])
def test_no_body_statuses_really_send_no_bytes(server, target):
    with connect(server) as c:
        c.send(req("GET", target))
        r = c.read_final()
        # Nothing at all may follow the head of a 204/304 response.
        c.assert_open(0.3)
        assert r.body == b""


def test_head_really_sends_no_body_bytes(server):
    with connect(server) as c:
        c.send(req("HEAD", "/"))
        r = c.read_final("HEAD")
        assert r.status == 200
        c.assert_open(0.3)


# --- §2 response invariants ---------------------------------------------------------

COMMON_CASES = [
    ("GET", "/", b""), ("HEAD", "/", b""), ("OPTIONS", "/", b""), ("GET", "/methods", b""),
    ("POST", "/methods", b"x"), ("GET", "/no/such/route", b""), ("POST", "/", b""),
    ("GET", "/status/200", b""), ("GET", "/status/201", b""), ("GET", "/status/205", b""),
    ("GET", "/status/304", b""), ("GET", "/status/404", b""), ("GET", "/status/500", b""),
    ("GET", "/status/599", b""), ("POST", "/echo/body", b"abc"), ("POST", "/echo/body", b""),
    ("GET", "/headers", b""), ("GET", "/async/sleep?ms=1", b""), ("GET", "/sync/block?ms=1", b""),
    ("GET", "/async/sleep?ms=abc", b""), ("GET", "/status/204", b""), ("HEAD", "/no/such/route", b""),
]


@pytest.mark.parametrize("method,target,body", COMMON_CASES,
                         ids=["%s %s%s" % (m, t, " +body" if b else "") for m, t, b in COMMON_CASES])
def test_response_invariants(server, method, target, body):
    with connect(server) as c:
        r = c.request(req(method, target, body=body, content_length="auto" if method != "POST" else len(body)),
                      method=method)
        check_common(r, method)


def test_response_invariants_http10(server):
    with connect(server) as c:
        r = c.request(b"GET / HTTP/1.0\r\n\r\n")
        check_common(r)


def test_streamed_response_invariants(server):
    with connect(server) as c:
        r = c.request(req("GET", "/stream?n=3&ms=0"))
        assert r.status == 200
        check_common(r, streamed=True)
        assert r.framing == "chunked", r


REJECTIONS = {
    400: b"GET / HTTP/1.1\r\n\r\n",
    505: b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    413: b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
    414: b"GET /?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    417: b"POST /echo/body HTTP/1.1\r\nHost: x\r\nExpect: nope\r\nContent-Length: 1\r\n\r\nx",
    431: b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
    501: b"POST /echo/body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("status", list(REJECTIONS))
def test_rejection_invariants(server, status):
    with connect(server) as c:
        c.send(REJECTIONS[status], ignore_errors=True)
        r = c.read_response(timeout=3.0)
        assert r.status == status, r
        assert r.closes, r
        check_common(r)
        c.assert_closed(1.0)


def test_date_header_format_on_200(server):
    with connect(server) as c:
        r = c.request(GOOD_REQUEST)
        check_date(r)


# --- more connection handling ---------------------------------------------------------

def test_valid_then_rejected_then_valid(server):
    with connect(server) as c:
        c.send(GOOD_REQUEST + b"GET / HTTP/1.1\r\nBad Header\r\n\r\n" + GOOD_REQUEST)
        expect_root(c.read_final())
        r = c.read_response()
        assert r.status == 400 and r.closes, r
        c.assert_closed(1.0, what="the 400 (the third request must not be answered)")


@pytest.mark.plain_tcp("reads and writes one socket from two threads, which an SSLSocket does not allow")
def test_rejection_response_survives_unread_input(server):
    """Lingering close: a 400 followed by lots of unread input still reaches the client."""
    junk = b"x" * (512 * 1024)
    with connect(server, timeout=5) as c:
        done = threading.Event()

        def pump():
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", ignore_errors=True)
            for _ in range(8):
                if not c.send(junk, ignore_errors=True):
                    break
            done.set()
        c.sock.settimeout(5)
        th = threading.Thread(target=pump, daemon=True)
        th.start()
        r = c.read_response(timeout=5)
        assert r.status == 400 and r.closes, r
        th.join(10)


def test_head_of_stream_has_no_body(server):
    with connect(server) as c:
        c.send(req("HEAD", "/stream?n=3&ms=0") + GOOD_REQUEST)
        h = c.read_final("HEAD")
        assert h.status == 200 and h.body == b"", h
        expect_root(c.read_final())


def test_pipeline_behind_stream(server):
    with connect(server, timeout=10) as c:
        c.send(req("GET", "/stream?n=3&ms=100") + _numbered(1) + req("GET", "/stream?n=2&ms=0") + _numbered(2))
        r = c.read_final()
        assert r.status == 200 and r.body == b"chunk 1\nchunk 2\nchunk 3\n", r
        _check_numbered(c.read_final(), 1)
        r = c.read_final()
        assert r.status == 200 and r.body == b"chunk 1\nchunk 2\n", r
        _check_numbered(c.read_final(), 2)


def test_300_sequential_requests_on_one_connection(server):
    with connect(server) as c:
        for i in range(300):
            _check_numbered(c.request(_numbered(i)), i)


@pytest.mark.plain_tcp("reads and writes one socket from two threads, which an SSLSocket does not allow")
def test_pipelined_large_bodies_with_backpressure(server):
    """40 x 64 KiB echo requests pipelined while the client reads concurrently."""
    bodies = [bytes([i]) * 65536 for i in range(40)]
    raw = b"".join(req("POST", "/echo/body", body=b) for b in bodies)
    with connect(server, timeout=20) as c:
        err = []

        def pump():
            try:
                c.send(raw)
            except Exception as e:  # noqa: BLE001
                err.append(e)
        th = threading.Thread(target=pump, daemon=True)
        th.start()
        for i, b in enumerate(bodies):
            r = c.read_final("POST", timeout=20)
            assert r.status == 200 and r.body == b, (i, r)
        th.join(10)
        assert not err, err


# --- abrupt client disconnects ------------------------------------------------------------

ABORTS = {
    "mid-request-line": b"GET /meth",
    "mid-head": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: partial",
    "mid-body": req("POST", "/echo/body", content_length=1000) + b"x" * 100,
    "mid-chunk": req("POST", "/echo/body", headers=[("Transfer-Encoding", "chunked")],
                     content_length=None) + b"100\r\nabc",
    "during-sync-block": req("GET", "/sync/block?ms=300"),
    "during-async-sleep": req("GET", "/async/sleep?ms=300"),
    "during-stream": req("GET", "/stream?n=50&ms=20"),
    "during-big-echo": req("POST", "/echo/body", body=b"y" * 500000),
    "pipeline": GOOD_REQUEST * 50,
}


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("raw", list(ABORTS.values()), ids=list(ABORTS))
def test_abrupt_disconnect_leaves_server_healthy(server, raw, rst):
    import socket
    import struct
    for _ in range(3):
        c = connect(server)
        c.send(raw, ignore_errors=True)
        time.sleep(0.05)
        if rst:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    time.sleep(0.1)
    with connect(server) as c2:
        expect_root(c2.request(GOOD_REQUEST))
