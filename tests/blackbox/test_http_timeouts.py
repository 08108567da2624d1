"""Spec §7 timeouts. The scenarios take 5-15 s each, so they all start together in
background threads when this module's first test asks for them; each test then
waits for its own scenario and checks its outcome. Total wall time ~15 s."""

import socket
import threading
import time
import traceback

import pytest

from httpkit import Client, GOOD_REQUEST, PeerClosed, ReadTimeout, req

pytestmark = pytest.mark.slow

HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
IDLE_TIMEOUT = 5.0
# Accepted window around each timer value (timer wheels may be coarse, CI may be slow).
EARLY = 1.0
LATE = 2.0


def _wait_for_close_or_response(c, limit):
    """Wait up to `limit` s from now for a response or EOF. Returns (t, response or None, eof)."""
    deadline = time.monotonic() + limit
    try:
        r = c.read_response(timeout=max(0.01, deadline - time.monotonic()))
        return time.monotonic(), r, False
    except PeerClosed:
        return c.eof_at, None, True


class Scenario:
    def __init__(self, name, fn):
        self.name = name
        self.fn = fn
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self):
        try:
            self.result = self.fn()
        except BaseException:  # noqa: BLE001 - reported by the test
            self.error = traceback.format_exc()

    def outcome(self, limit=40.0):
        self.thread.join(limit)
        assert not self.thread.is_alive(), "scenario %s still running after %.0f s" % (self.name, limit)
        if self.error:
            pytest.fail("scenario %s raised:\n%s" % (self.name, self.error), pytrace=False)
        return self.result


# --- scenario bodies (each returns a dict of observations) ------------------------------

def head_trickle(addr):
    """Head bytes keep arriving every 0.5 s but the head never ends: 408 at ~10 s total."""
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
    obs = {"t0": t0}
    i = 0
    try:
        while time.monotonic() - t0 < HEAD_TIMEOUT + LATE + 1:
            try:
                c.sock.settimeout(0.5)
                data = c.sock.recv(65536)
                c.buf += data
                if not data:
                    c.eof, c.eof_at = True, time.monotonic()
                break
            except socket.timeout:
                pass
            except ConnectionResetError:
                c.eof, c.eof_at, c.reset = True, time.monotonic(), True
                break
            if not c.send(b"X-Trickle-%d: %d\r\n" % (i, i), ignore_errors=True):
                break
            i += 1
        obs["sent_fields"] = i
        obs["t_first_reply"] = time.monotonic() - t0
        if c.eof and not c.buf:
            obs["response"] = None
        else:
            obs["response"] = c.read_response(timeout=2)
            obs["closed"], obs["extra"] = c.wait_closed(1.5)
            obs["t_closed"] = (c.eof_at - t0) if c.eof_at else None
        return obs
    finally:
        c.close()


def head_stalled(addr):
    """Part of a head, then silence: no close at the 5 s idle mark; 408 at ~10 s."""
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    c.send(b"GET / HTTP/1.1\r\nHost: local")
    try:
        t, r, eof = _wait_for_close_or_response(c, HEAD_TIMEOUT + LATE + 1)
        obs = {"t": t - t0, "response": r, "eof": eof}
        if r is not None:
            obs["closed"], obs["extra"] = c.wait_closed(1.5)
            obs["t_closed"] = (c.eof_at - t0) if c.eof_at else None
        return obs
    finally:
        c.close()


def head_started_after_idle(addr):
    """A request whose head starts 3 s after connecting and trickles 4 s more is served
    (the 5 s idle timer stops at the first byte; the head timer is 10 s)."""
    c = Client(*addr, timeout=30)
    try:
        time.sleep(3.0)
        raw = b"GET /methods HTTP/1.1\r\nHost: localhost\r\n\r\n"
        for k in range(8):
            c.send(raw[k * len(raw) // 8:(k + 1) * len(raw) // 8])
            time.sleep(0.5)
        r = c.read_response(timeout=3)
        return {"response": r}
    finally:
        c.close()


def body_stalled(addr):
    """Head complete, 3 of 10 body bytes, then silence: 408 + close at ~10 s (not 5 s)."""
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    c.send(req("POST", "/echo/body", content_length=10) + b"abc")
    try:
        t, r, eof = _wait_for_close_or_response(c, BODY_TIMEOUT + LATE + 1)
        obs = {"t": t - t0, "response": r, "eof": eof}
        if r is not None:
            obs["closed"], obs["extra"] = c.wait_closed(1.5)
            obs["t_closed"] = (c.eof_at - t0) if c.eof_at else None
        return obs
    finally:
        c.close()


def body_stalled_chunked(addr):
    """Chunked body stalls mid-chunk: 408 + close at ~10 s."""
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    c.send(req("POST", "/echo/body", headers=[("Transfer-Encoding", "chunked")], content_length=None)
           + b"a\r\n01234")
    try:
        t, r, eof = _wait_for_close_or_response(c, BODY_TIMEOUT + LATE + 1)
        obs = {"t": t - t0, "response": r, "eof": eof}
        if r is not None:
            obs["closed"], obs["extra"] = c.wait_closed(1.5)
        return obs
    finally:
        c.close()


def body_trickle(addr):
    """12 body bytes, one per second: the inactivity timer never expires; served."""
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    body = b"trickle-body"
    c.send(req("POST", "/echo/body", content_length=len(body)))
    try:
        for k in range(len(body)):
            time.sleep(1.0)
            c.send(body[k:k + 1])
        r = c.read_response("POST", timeout=5)
        obs = {"response": r, "elapsed": time.monotonic() - t0}
        # The connection is still usable afterwards.
        obs["second"] = c.request(GOOD_REQUEST)
        return obs
    finally:
        c.close()


def idle_before_first_request(addr):
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    try:
        closed, extra = c.wait_closed(IDLE_TIMEOUT + LATE + 1)
        return {"closed": closed, "extra": extra, "t": (c.eof_at - t0) if c.eof_at else None}
    finally:
        c.close()


def idle_between_requests(addr):
    c = Client(*addr, timeout=30)
    try:
        r = c.request(GOOD_REQUEST)
        t0 = time.monotonic()
        closed, extra = c.wait_closed(IDLE_TIMEOUT + LATE + 1)
        return {"response": r, "closed": closed, "extra": extra, "t": (c.eof_at - t0) if c.eof_at else None}
    finally:
        c.close()


def idle_reset_by_request(addr):
    """Requests every 3 s keep the connection alive past 5 s."""
    c = Client(*addr, timeout=30)
    try:
        out = []
        for _ in range(4):
            out.append(c.request(GOOD_REQUEST))
            time.sleep(3.0)
        out.append(c.request(GOOD_REQUEST))
        return {"responses": out}
    finally:
        c.close()


def long_async_handler(addr):
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    try:
        r = c.request(req("GET", "/async/sleep?ms=6000"), timeout=10)
        elapsed = time.monotonic() - t0
        second = c.request(GOOD_REQUEST)  # idle timer restarted, not expired
        return {"response": r, "elapsed": elapsed, "second": second}
    finally:
        c.close()


def long_sync_handler(addr):
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    try:
        r = c.request(req("GET", "/sync/block?ms=6000"), timeout=10)
        return {"response": r, "elapsed": time.monotonic() - t0}
    finally:
        c.close()


def slow_stream(addr):
    """A stream with a 6 s gap between lines is not cut by the idle timer."""
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    try:
        r = c.request(req("GET", "/stream?n=2&ms=6000"), timeout=12)
        return {"response": r, "elapsed": time.monotonic() - t0}
    finally:
        c.close()


def pipelined_long_handler(addr):
    """A second request pipelined behind a 6 s handler is answered (not cut as idle)."""
    c = Client(*addr, timeout=30)
    try:
        c.send(req("GET", "/async/sleep?ms=6000") + req("GET", "/methods"))
        r1 = c.read_response(timeout=10)
        r2 = c.read_response(timeout=5)
        return {"r1": r1, "r2": r2}
    finally:
        c.close()


def second_head_stalled(addr):
    """After one response, a partial second head then silence: 408 at ~10 s after its
    first byte (the 5 s idle timer no longer runs)."""
    c = Client(*addr, timeout=30)
    try:
        r0 = c.request(GOOD_REQUEST)
        t0 = time.monotonic()
        c.send(b"GET /methods HTTP/1.1\r\n")
        t, r, eof = _wait_for_close_or_response(c, HEAD_TIMEOUT + LATE + 1)
        obs = {"first": r0, "t": t - t0, "response": r, "eof": eof}
        if r is not None:
            obs["closed"], obs["extra"] = c.wait_closed(1.5)
        return obs
    finally:
        c.close()


def body_stalled_ignored_route(addr):
    """Body for a route that ignores it stalls: no close at the 5 s idle mark; by ~10 s
    either a 408 (no response begun) or the route's response followed by a silent close."""
    c = Client(*addr, timeout=30)
    t0 = time.monotonic()
    c.send(req("POST", "/methods", content_length=100) + b"0123456789")
    try:
        responses = []
        t_end = None
        while time.monotonic() - t0 < BODY_TIMEOUT + LATE + 1:
            try:
                responses.append((time.monotonic() - t0, c.read_response("POST", timeout=BODY_TIMEOUT + LATE + 1)))
            except PeerClosed:
                t_end = c.eof_at - t0
                break
            except ReadTimeout:
                break
        if t_end is None:
            closed, extra = c.wait_closed(0.5)
            t_end = (c.eof_at - t0) if closed else None
        return {"responses": responses, "t_closed": t_end, "buffered": bytes(c.buf)}
    finally:
        c.close()


SCENARIOS = {
    "second_head_stalled": second_head_stalled,
    "body_stalled_ignored_route": body_stalled_ignored_route,
    "head_trickle": head_trickle,
    "head_stalled": head_stalled,
    "head_started_after_idle": head_started_after_idle,
    "body_stalled": body_stalled,
    "body_stalled_chunked": body_stalled_chunked,
    "body_trickle": body_trickle,
    "idle_before_first_request": idle_before_first_request,
    "idle_between_requests": idle_between_requests,
    "idle_reset_by_request": idle_reset_by_request,
    "long_async_handler": long_async_handler,
    "long_sync_handler": long_sync_handler,
    "slow_stream": slow_stream,
    "pipelined_long_handler": pipelined_long_handler,
}


@pytest.fixture(scope="module")
def scenarios(server_instance):
    if not server_instance.alive():
        server_instance.start()
    addr = server_instance.addr
    running = {}
    for name, fn in SCENARIOS.items():
        s = Scenario(name, lambda fn=fn: fn(addr))
        running[name] = s
        s.thread.start()
    yield running
    for s in running.values():
        s.thread.join(30)


def _assert_408_then_close(obs, lo, hi, what):
    r = obs["response"]
    assert r is not None, "%s: connection closed after %.2f s without a 408" % (what, obs.get("t", -1))
    assert r.status == 408, "%s: expected 408, got %r" % (what, r)
    assert r.closes, "%s: 408 without Connection: close: %r" % (what, r)
    assert lo <= obs["t"] <= hi, "%s: 408 after %.2f s, expected %.0f-%.0f s" % (what, obs["t"], lo, hi)
    assert obs["extra"] == b"", "%s: data after the 408: %r" % (what, obs["extra"])
    assert obs["closed"], "%s: no close within 1 s after the 408" % what


def test_head_timeout_is_total_not_per_byte(scenarios):
    obs = scenarios["head_trickle"].outcome()
    r = obs["response"]
    assert r is not None, "head timeout: connection closed after %.2f s without a 408" % obs["t_first_reply"]
    assert r.status == 408 and r.closes, r
    t = obs["t_first_reply"]
    assert HEAD_TIMEOUT - EARLY <= t <= HEAD_TIMEOUT + LATE, (
        "408 after %.2f s of trickling head bytes (want ~%.0f s total)" % (t, HEAD_TIMEOUT))
    assert obs["extra"] == b"" and obs["closed"], obs
    assert obs["t_closed"] - t <= 1.25, obs


def test_head_timeout_stalled_head(scenarios):
    obs = scenarios["head_stalled"].outcome()
    _assert_408_then_close(obs, HEAD_TIMEOUT - EARLY, HEAD_TIMEOUT + LATE, "stalled head")


def test_head_timeout_on_second_request(scenarios):
    obs = scenarios["second_head_stalled"].outcome()
    assert obs["first"].status == 200
    _assert_408_then_close(obs, HEAD_TIMEOUT - EARLY, HEAD_TIMEOUT + LATE, "stalled second head")


def test_body_inactivity_on_route_ignoring_body(scenarios):
    obs = scenarios["body_stalled_ignored_route"].outcome()
    rs = obs["responses"]
    assert obs["t_closed"] is not None, "connection not closed by %.0f s" % (BODY_TIMEOUT + LATE + 1)
    assert BODY_TIMEOUT - EARLY <= obs["t_closed"] <= BODY_TIMEOUT + LATE, (
        "closed after %.2f s (body inactivity timer is 10 s)" % obs["t_closed"])
    assert obs["buffered"] == b"", obs["buffered"]
    statuses = [r.status for _, r in rs]
    assert statuses in ([408], [200]), "expected a single 408, or the route's 200 then a silent close; got %r" % rs
    if statuses == [408]:
        assert rs[0][1].closes
    else:
        assert rs[0][1].json() == {"method": "POST"}


def test_idle_timer_stops_at_first_head_byte(scenarios):
    obs = scenarios["head_started_after_idle"].outcome()
    r = obs["response"]
    assert r.status == 200 and r.json() == {"method": "GET"}, r


def test_body_inactivity_timeout(scenarios):
    obs = scenarios["body_stalled"].outcome()
    if obs["response"] is None:
        pytest.fail("body inactivity: closed after %.2f s without a 408 (no response had begun)" % obs["t"])
    _assert_408_then_close(obs, BODY_TIMEOUT - EARLY, BODY_TIMEOUT + LATE, "stalled body")


def test_body_inactivity_timeout_chunked(scenarios):
    obs = scenarios["body_stalled_chunked"].outcome()
    r = obs["response"]
    assert r is not None, "chunked body inactivity: closed after %.2f s without a 408" % obs["t"]
    assert r.status == 408 and r.closes, r
    assert BODY_TIMEOUT - EARLY <= obs["t"] <= BODY_TIMEOUT + LATE, obs["t"]
    assert obs["closed"] and obs["extra"] == b"", obs


def test_slowly_trickling_body_is_served(scenarios):
    obs = scenarios["body_trickle"].outcome()
    r = obs["response"]
    assert r.status == 200 and r.body == b"trickle-body", r
    assert obs["elapsed"] >= 11.5
    s = obs["second"]
    assert s.status == 200 and s.body == b"vial conformance", s


def test_idle_timeout_before_first_request(scenarios):
    obs = scenarios["idle_before_first_request"].outcome()
    assert obs["extra"] == b"", "idle close must be silent, got %r" % obs["extra"]
    assert obs["closed"], "idle connection not closed within %.0f s" % (IDLE_TIMEOUT + LATE + 1)
    assert IDLE_TIMEOUT - EARLY <= obs["t"] <= IDLE_TIMEOUT + LATE, "idle close after %.2f s" % obs["t"]


def test_idle_timeout_between_requests(scenarios):
    obs = scenarios["idle_between_requests"].outcome()
    assert obs["response"].status == 200
    assert obs["extra"] == b"", "idle close must be silent, got %r" % obs["extra"]
    assert obs["closed"], "idle keep-alive connection not closed"
    assert IDLE_TIMEOUT - EARLY <= obs["t"] <= IDLE_TIMEOUT + LATE, "idle close after %.2f s" % obs["t"]


def test_idle_timer_restarts_with_each_request(scenarios):
    obs = scenarios["idle_reset_by_request"].outcome()
    assert [r.status for r in obs["responses"]] == [200] * 5


def test_long_async_handler_not_cut_by_idle_timer(scenarios):
    obs = scenarios["long_async_handler"].outcome()
    r = obs["response"]
    assert r.status == 200 and r.json() == {"slept_ms": 6000}, r
    assert obs["elapsed"] >= 6.0
    s = obs["second"]
    assert s.status == 200 and s.body == b"vial conformance", s


def test_long_sync_handler_not_cut_by_idle_timer(scenarios):
    obs = scenarios["long_sync_handler"].outcome()
    r = obs["response"]
    assert r.status == 200 and r.json() == {"blocked_ms": 6000}, r
    assert obs["elapsed"] >= 6.0


def test_slow_stream_not_cut_by_idle_timer(scenarios):
    obs = scenarios["slow_stream"].outcome()
    r = obs["response"]
    assert r.status == 200 and r.body == b"chunk 1\nchunk 2\n", r
    assert obs["elapsed"] >= 6.0


def test_pipelined_request_behind_long_handler(scenarios):
    obs = scenarios["pipelined_long_handler"].outcome()
    assert obs["r1"].status == 200 and obs["r1"].json() == {"slept_ms": 6000}, obs["r1"]
    assert obs["r2"].status == 200 and obs["r2"].json() == {"method": "GET"}, obs["r2"]


def test_read_timeout_helper_sanity():
    # The helper used above really raises on silence (so the scenarios can fail).
    a, b = socket.socketpair()
    try:
        c = Client("127.0.0.1", 0, connect=False)
        c.sock = a
        with pytest.raises(ReadTimeout):
            c.read_response(timeout=0.2)
    finally:
        a.close()
        b.close()
