"""Spec §4.6: /async/sleep, /async/gather, /sync/block, /async/offload, /async/timeout,
/async/disconnect-probe and /async/stats."""

import socket
import struct
import time

import pytest

from appkit import assert_hooks, assert_json, get, run_parallel, timed
from httpkit import connect, req

BAD = {"error": "bad request", "code": 400}


def stats(server):
    r = get(server, "/async/stats")
    assert r.status == 200, r
    assert r.header("content-type") == "application/json", r
    d = r.json()
    assert set(d) == {"started", "completed", "cancelled"}, d
    assert all(isinstance(v, int) and v >= 0 for v in d.values()), d
    return d


def wait_stats(server, pred, within):
    deadline = time.monotonic() + within
    s = stats(server)
    for _ in range(500):
        if pred(s) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
        s = stats(server)
    return s


# --- /async/sleep -------------------------------------------------------------------------------

@pytest.mark.parametrize("q,ms", [("", 0), ("?ms=0", 0), ("?ms=5", 5), ("?ms=250", 250)])
def test_async_sleep(server, q, ms):
    r, dt = timed(lambda: get(server, "/async/sleep" + q))
    assert_json(r, 200, {"slept_ms": ms})
    assert_hooks(r)
    assert ms / 1000.0 - 0.005 <= dt < ms / 1000.0 + 0.5, dt


# --- /async/gather ------------------------------------------------------------------------------

@pytest.mark.parametrize("q,n,ms", [("", 10, 100), ("?n=1&ms=50", 1, 50), ("?n=10&ms=100", 10, 100),
                                    ("?n=1000&ms=200", 1000, 200), ("?n=5&ms=0", 5, 0), ("?n=3", 3, 100)])
def test_gather(server, q, n, ms):
    r, dt = timed(lambda: get(server, "/async/gather" + q, timeout=10))
    assert r.status == 200, r
    assert r.header("content-type") == "application/json", r
    d = r.json()
    assert set(d) == {"n", "ms", "elapsed_ms"}, d
    assert d["n"] == n and d["ms"] == ms, d
    e = d["elapsed_ms"]
    assert isinstance(e, int), d
    assert e >= ms, "timers fired early: elapsed %d < %d" % (e, ms)
    assert e < ms + 250, "timers not concurrent: elapsed %d ms for n=%d x %d ms" % (e, n, ms)
    assert dt >= ms / 1000.0 - 0.005, dt
    assert_hooks(r)


def test_gather_concurrent_requests(server):
    res = run_parallel([lambda: get(server, "/async/gather?n=50&ms=200", timeout=10) for _ in range(10)])
    for r in res:
        d = r.json()
        assert d["n"] == 50 and d["ms"] == 200 and 200 <= d["elapsed_ms"] < 600, d


@pytest.mark.parametrize("q", ["n=0", "n=1001", "ms=60001", "n=-1", "n=", "ms=", "n=1.5", "ms=x"])
def test_gather_ranges(server, q):
    assert_json(get(server, "/async/gather?" + q), 400, BAD)


# --- /async/timeout -----------------------------------------------------------------------------

@pytest.mark.parametrize("q,ms", [("?ms=50&limit=1000", 50), ("?ms=0&limit=100", 0), ("?ms=100&limit=60000", 100)])
def test_timeout_timer_first(server, q, ms):
    r, dt = timed(lambda: get(server, "/async/timeout" + q))
    assert_json(r, 200, {"slept_ms": ms})
    assert_hooks(r)
    assert ms / 1000.0 - 0.005 <= dt < ms / 1000.0 + 0.4, dt


@pytest.mark.parametrize("q,limit", [("", 100), ("?ms=1000&limit=100", 100), ("?ms=60000&limit=200", 200),
                                     ("?ms=5000&limit=0", 0), ("?limit=50", 50)])
def test_timeout_deadline_first(server, q, limit):
    r, dt = timed(lambda: get(server, "/async/timeout" + q))
    assert_json(r, 504, {"error": "timeout", "limit_ms": limit})
    assert_hooks(r)
    assert limit / 1000.0 - 0.005 <= dt < limit / 1000.0 + 0.4, "504 after %.3f s, limit %d ms" % (dt, limit)


def test_timeout_many_at_once(server):
    def one(i):
        def fn():
            return i, timed(lambda: get(server, "/async/timeout?ms=%d&limit=300" % (100 if i % 2 else 3000),
                                        timeout=10))
        return fn
    for i, (r, dt) in run_parallel([one(i) for i in range(20)], timeout=15):
        if i % 2:
            assert r.status == 200 and r.json() == {"slept_ms": 100}, r
        else:
            assert r.status == 504 and r.json() == {"error": "timeout", "limit_ms": 300}, r
            assert 0.295 <= dt < 1.0, dt


@pytest.mark.parametrize("q", ["ms=60001", "limit=60001", "limit=-1", "ms=-1", "limit=", "limit=x", "ms=1e3"])
def test_timeout_ranges(server, q):
    assert_json(get(server, "/async/timeout?" + q), 400, BAD)


# --- /sync/block and /async/offload -------------------------------------------------------------

@pytest.mark.parametrize("route,key", [("/sync/block", "blocked_ms"), ("/async/offload", "offloaded_ms")])
def test_blocking_work_result(server, route, key):
    r, dt = timed(lambda: get(server, route + "?ms=200"))
    assert_json(r, 200, {key: 200})
    assert_hooks(r)
    assert 0.195 <= dt < 1.0, dt


@pytest.mark.parametrize("route", ["/sync/block", "/async/offload"])
def test_at_least_four_blocking_at_once(server, route):
    (res, dt) = timed(lambda: run_parallel([lambda: get(server, route + "?ms=500", timeout=10)
                                            for _ in range(4)], timeout=15))
    for r in res:
        assert r.status == 200, r
    assert dt < 0.95, "4 x 500 ms blocking handlers took %.2f s: not run at once" % dt


@pytest.mark.parametrize("route", ["/sync/block", "/async/offload"])
def test_blocking_does_not_delay_async(server, route):
    """While 4 blocking handlers run (more than the loop threads), async requests are answered promptly."""
    import threading
    blockers = []

    def blocker():
        blockers.append(get(server, route + "?ms=800", timeout=10))

    threads = [threading.Thread(target=blocker, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.15)
    worst = 0.0
    with connect(server, timeout=5) as c:
        for target in ["/async/sleep?ms=0", "/hello/x", "/api/v1/items/1", "/async/sleep?ms=10", "/lifecycle"]:
            r, dt = timed(lambda: c.request(req("GET", target)))
            assert r.status == 200, r
            worst = max(worst, dt)
    for t in threads:
        t.join(10)
    assert all(r.status == 200 for r in blockers) and len(blockers) == 4, blockers
    assert worst < 0.3, "an async request waited %.3f s behind %s" % (worst, route)


# --- /async/disconnect-probe and /async/stats -----------------------------------------------------

def test_probe_completes(server):
    before = stats(server)
    r, dt = timed(lambda: get(server, "/async/disconnect-probe?ms=100"))
    assert_json(r, 200, {"completed": True})
    assert_hooks(r)
    assert dt >= 0.095, dt
    after = stats(server)
    assert after == {"started": before["started"] + 1, "completed": before["completed"] + 1,
                     "cancelled": before["cancelled"]}, (before, after)


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_probe_cancelled_on_disconnect(server, how):
    before = stats(server)
    c = connect(server)
    try:
        c.send(req("GET", "/async/disconnect-probe?ms=10000"))
        s = wait_stats(server, lambda s: s["started"] >= before["started"] + 1, within=1.0)
        assert s["started"] == before["started"] + 1, (before, s)
        time.sleep(0.05)
        t_close = time.monotonic()
        if how == "rst":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        else:
            c.close()
    finally:
        c.close()
    s = wait_stats(server, lambda s: s["cancelled"] >= before["cancelled"] + 1, within=1.0)
    assert time.monotonic() - t_close <= 1.3
    assert s == {"started": before["started"] + 1, "completed": before["completed"],
                 "cancelled": before["cancelled"] + 1}, (before, s)


def test_probe_counters_process_wide(server):
    """Probes on several connections (any loop thread) all count in one set of counters."""
    before = stats(server)
    socks = [connect(server) for _ in range(6)]
    try:
        for c in socks:
            c.send(req("GET", "/async/disconnect-probe?ms=10000"))
        s = wait_stats(server, lambda s: s["started"] >= before["started"] + 6, within=1.5)
        assert s["started"] == before["started"] + 6, (before, s)
    finally:
        for c in socks:
            c.close()
    res = run_parallel([lambda: get(server, "/async/disconnect-probe?ms=50") for _ in range(4)])
    assert all(r.status == 200 and r.json() == {"completed": True} for r in res), res
    s = wait_stats(server, lambda s: s["cancelled"] >= before["cancelled"] + 6, within=1.0)
    assert s == {"started": before["started"] + 10, "completed": before["completed"] + 4,
                 "cancelled": before["cancelled"] + 6}, (before, s)


@pytest.mark.parametrize("q", ["ms=60001", "ms=-1", "ms=", "ms=abc"])
def test_probe_ranges(server, q):
    before = stats(server)
    assert_json(get(server, "/async/disconnect-probe?" + q), 400, BAD)
    assert stats(server) == before
