"""Spec §4.3: /redirect, /forbidden, /fail, /async/fail, /stream, /sse."""

import time

import pytest

from appkit import (TEXT, assert_hooks, assert_json, call, expected_teardown, get, new_rid, only,
                    run_parallel, wait_teardown)
from httpkit import check_common, connect, req

BAD = {"error": "bad request", "code": 400}


def lines(n, start=1):
    return b"".join(b"chunk %d\n" % i for i in range(start, n + 1))


def events(n, start=1):
    return b"".join(b"id: %d\ndata: event %d\n\n" % (i, i) for i in range(start, n + 1))


# --- /redirect -----------------------------------------------------------------------------

@pytest.mark.parametrize("query,status,location", [
    ("to=/x", 302, "/x"),
    ("to=/", 302, "/"),
    ("to=/a/b/c", 302, "/a/b/c"),
    ("to=/x&code=301", 301, "/x"),
    ("to=/x&code=302", 302, "/x"),
    ("to=/x&code=303", 303, "/x"),
    ("to=/x&code=307", 307, "/x"),
    ("to=/x&code=308", 308, "/x"),
    ("code=303&to=/y", 303, "/y"),
    ("to=/x&code=0307", 307, "/x"),
    ("to=%2Fa%3Fb%3D1%26c", 302, "/a?b=1&c"),
    ("to=/p%2520q", 302, "/p%20q"),
    ("to=/~user/a.b-c_d!$'()*,;:@", 302, "/~user/a.b-c_d!$'()*,;:@"),
    ("to=/a%23frag", 302, "/a#frag"),
    ("to=/a/%5Cb", 302, "/a/\\b"),
    ("to=/a%22%3C%3E%7B%7D%7C%5E%60", 302, '/a"<>{}|^`'),
])
def test_redirect(server, query, status, location):
    r = get(server, "/redirect?" + query)
    assert r.status == status, r
    assert r.header_list("location") == [location], r
    check_common(r)
    assert_hooks(r)


@pytest.mark.parametrize("query", [
    "", "to=", "code=302", "to=x", "to=//x", "to=//", "to=http://x", "to=http://x/y", "to=https:/x",
    "to=%2F%2Fevil.example", "to=x/y", "to=./x", "to=%20/x",
    "to=/a%00b", "to=/a%01", "to=/a%09b", "to=/a%0Ab", "to=/a%0D%0ASet-Cookie:x=1", "to=/a%7F", "to=/%C3%A9",
    "to=/%FF", "to=/x&code=300", "to=/x&code=304", "to=/x&code=305", "to=/x&code=306", "to=/x&code=200",
    "to=/x&code=309", "to=/x&code=0", "to=/x&code=abc", "to=/x&code=", "to=/x&code=-302", "to=/x&code=302.0",
    "to=/x&code=404", "to=/x&code=18446744073709551918",
])
def test_redirect_400(server, query):
    r = get(server, "/redirect?" + query)
    assert_json(r, 400, BAD)
    assert not r.has("location"), r
    assert_hooks(r)


# --- /forbidden, /fail, /async/fail ----------------------------------------------------------

def test_forbidden(server):
    rid = new_rid("forb")
    r = get(server, "/forbidden", [("X-Request-Id", rid)])
    assert_json(r, 403, {"error": "forbidden"})
    assert_hooks(r)
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", "/forbidden", None)


@pytest.mark.parametrize("target", ["/fail", "/async/fail"])
def test_fail(server, target):
    rid = new_rid("fail")
    with connect(server) as c:
        r = c.request(req("GET", target, headers=[("X-Request-Id", rid)]))
        assert_json(r, 500, {"error": "internal server error"})
        assert_hooks(r)
        # The connection stays usable after an unhandled error.
        assert c.request(req("GET", "/")).body == b"vial conformance"
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", target, "boom")


# --- /stream -------------------------------------------------------------------------------

@pytest.mark.parametrize("query,body", [
    ("", lines(5)), ("?n=1", lines(1)), ("?n=2&ms=0", lines(2)), ("?ms=0&n=7", lines(7)),
    ("?n=1000", lines(1000)), ("?n=0", b""), ("?n=0&ms=5000", b""), ("?n=1&ms=10000", lines(1)),
])
def test_stream_body(server, query, body):
    with connect(server) as c:
        r = c.request(req("GET", "/stream" + query))
        assert r.status == 200, r
        assert only(r, "content-type") == TEXT, r
        assert r.framing == "chunked", r
        assert r.tokens("transfer-encoding") == {"chunked"}, r
        assert not r.has("content-length"), r
        assert r.body == body, r
        check_common(r, streamed=True)
        assert_hooks(r)
        assert not r.closes, r
        assert c.request(req("GET", "/")).body == b"vial conformance"


def test_stream_n0_is_empty_chunked_body(server):
    with connect(server) as c:
        c.send(req("GET", "/stream?n=0"))
        r = c.read_response()
        assert r.status == 200 and r.framing == "chunked" and r.body == b"" and r.trailers == [], r
        assert c.request(req("GET", "/")).status == 200


@pytest.mark.parametrize("n", [0, 3])
def test_stream_http10_close_delimited(server, n):
    with connect(server) as c:
        c.send(b"GET /stream?n=%d HTTP/1.0\r\n\r\n" % n)
        r = c.read_final()
        assert r.status == 200, r
        assert r.version == "HTTP/1.1"
        assert not r.has("transfer-encoding") and not r.has("content-length"), r
        assert r.framing == "close", r
        assert r.body == lines(n), r
        assert c.eof
        assert_hooks(r)


def _arrivals(chunks, t0, expected_units):
    """Time (s after t0) at which each of the expected byte units had fully arrived."""
    got = b""
    out = []
    want = b""
    idx = 0
    for t, d in chunks:
        got += d
        while idx < len(expected_units) and got.startswith(want + expected_units[idx]):
            want += expected_units[idx]
            out.append(t - t0)
            idx += 1
    return out


def _timed_stream(server, target, headers=(), timeout=10):
    chunks = []
    with connect(server, timeout=timeout) as c:
        t0 = time.monotonic()
        c.send(req("GET", target, headers=headers))
        r = c.read_final(timeout=timeout, on_data=lambda t, d: chunks.append((t, d)))
    return r, chunks, t0


def test_stream_lines_arrive_incrementally(server):
    ms = 250
    r, chunks, t0 = _timed_stream(server, "/stream?n=4&ms=%d" % ms)
    assert r.status == 200 and r.body == lines(4), r
    at = _arrivals(chunks, t0, [b"chunk %d\n" % i for i in range(1, 5)])
    assert len(at) == 4, (at, r)
    s = ms / 1000.0
    assert at[0] < 0.6 * s, "first line not sent at once: %.3f s" % at[0]
    for i in range(1, 4):
        assert at[i] >= i * s - 0.01, "line %d too early: %.3f s" % (i + 1, at[i])
        assert at[i] < i * s + 0.6 * s, "line %d buffered: arrived %.3f s, produced at %.3f s" % (i + 1, at[i], i * s)


def test_stream_head_of_response_before_first_wait(server):
    """The head and first line are sent before the handler waits (n=2, ms=1500)."""
    with connect(server, timeout=5) as c:
        t0 = time.monotonic()
        c.send(req("GET", "/stream?n=2&ms=1500"))
        first = c.read_head(time.monotonic() + 1.0)
        assert first.status == 200, first
        assert time.monotonic() - t0 < 0.7
        # first chunk already on the wire
        got = b""
        deadline = time.monotonic() + 0.7
        while b"chunk 1\n" not in got and time.monotonic() < deadline:
            try:
                got += c.read_some(max(0.01, deadline - time.monotonic()))
            except AssertionError:
                break
        assert b"chunk 1\n" in got, got
        assert b"chunk 2\n" not in got, got


# --- /sse -----------------------------------------------------------------------------------

@pytest.mark.parametrize("query,last,body", [
    ("", None, events(3)),
    ("?n=1", None, events(1)),
    ("?n=0", None, b""),
    ("?n=5&ms=0", None, events(5)),
    ("?n=500", None, events(500)),
    ("?n=3", "1", events(3, 2)),
    ("?n=5", "2", events(5, 3)),
    ("?n=3", "3", b""),
    ("?n=3", "7", b""),
    ("?n=3", "0", events(3, 1)),
    ("?n=12", "007", events(12, 8)),
    ("?n=3", "99999999999999999999", b""),
    ("?n=3", "abc", events(3)),
    ("?n=3", "-1", events(3)),
    ("?n=3", "+1", events(3)),
    ("?n=3", "1.5", events(3)),
    ("?n=3", "1a", events(3)),
    ("?n=3", "0x1", events(3)),
    ("?n=3", "", events(3)),
    ("?n=3", "1 2", events(3)),
    ("?n=3", "\u00b2", events(3)),
])
def test_sse(server, query, last, body):
    headers = [] if last is None else [("Last-Event-ID", last.encode("utf-8").decode("latin-1"))]
    with connect(server) as c:
        r = c.request(req("GET", "/sse" + query, headers=headers))
        assert r.status == 200, r
        ct = only(r, "content-type").replace(" ", "").lower()
        assert ct in ("text/event-stream", "text/event-stream;charset=utf-8"), r
        assert only(r, "cache-control") == "no-cache", r
        assert r.framing == "chunked" and not r.has("content-length"), r
        assert r.body == body, r
        check_common(r, streamed=True)
        assert_hooks(r)
        assert c.request(req("GET", "/")).status == 200


def test_sse_http10_close_delimited(server):
    with connect(server) as c:
        c.send(b"GET /sse?n=2 HTTP/1.0\r\n\r\n")
        r = c.read_final()
        assert r.status == 200 and r.framing == "close" and r.body == events(2), r


def test_sse_events_arrive_incrementally(server):
    ms = 250
    r, chunks, t0 = _timed_stream(server, "/sse?n=4&ms=%d" % ms, headers=[("Last-Event-ID", "1")])
    assert r.status == 200 and r.body == events(4, 2), r
    at = _arrivals(chunks, t0, [b"id: %d\ndata: event %d\n\n" % (i, i) for i in range(2, 5)])
    assert len(at) == 3, at
    s = ms / 1000.0
    assert at[0] < 0.6 * s, "first event not sent at once: %.3f s" % at[0]
    for i in range(1, 3):
        assert at[i] >= i * s - 0.01, "event too early: %r" % at
        assert at[i] < i * s + 0.6 * s, "event buffered: %r" % at


def test_streams_concurrently(server):
    """Several slow streams at once each take about n*ms, not the sum."""
    def one():
        r, chunks, t0 = _timed_stream(server, "/stream?n=3&ms=200")
        return r, time.monotonic() - t0
    t0 = time.monotonic()
    res = run_parallel([one for _ in range(8)], timeout=15)
    total = time.monotonic() - t0
    for r, _ in res:
        assert r.status == 200 and r.body == lines(3), r
    assert total < 1.5, "8 concurrent 0.4 s streams took %.2f s" % total


@pytest.mark.parametrize("target,ctype", [("/stream?n=3", TEXT), ("/sse?n=2", None)])
def test_head_of_streamed_route(server, target, ctype):
    """Automatic HEAD on a streamed GET route: same status and headers, no body; the
    connection carries on with the next response directly."""
    with connect(server) as c:
        g = c.request(req("GET", target))
        h = c.request(req("HEAD", target), method="HEAD")
        assert h.status == 200 == g.status, (g, h)
        assert h.header("content-type") == g.header("content-type"), (g, h)
        assert h.header("cache-control") == g.header("cache-control"), (g, h)
        assert_hooks(h)
        assert c.request(req("GET", "/")).body == b"vial conformance"
