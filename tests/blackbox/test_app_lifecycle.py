"""Spec §4.4 (/lifecycle, /teardown-log), §4.5 (/counter method view), §4.7 (blueprint api)."""

import time

import pytest

from appkit import (assert_hooks, assert_json, assert_text, call, expected_teardown, get, new_rid,
                    only, run_parallel, timed, wait_teardown)
from httpkit import connect, req

APP_TRACE = ["before_sync", "before_async"]
BP_TRACE = ["before_sync", "before_async", "bp_before"]


# --- /lifecycle ---------------------------------------------------------------------------------

@pytest.mark.parametrize("headers,user", [
    ((), "anonymous"),
    ([("X-User", "alice")], "alice"),
    ([("x-user", "  Bob Smith  ")], "Bob Smith"),
    ([("X-User", "")], ""),
])
def test_lifecycle(server, headers, user):
    r = get(server, "/lifecycle", headers)
    assert_json(r, 200, {"user": user, "trace": APP_TRACE, "api": None})
    assert_hooks(r)


def test_lifecycle_awaits_ms(server):
    r, dt = timed(lambda: get(server, "/lifecycle?ms=300", [("X-User", "slow")]))
    assert_json(r, 200, {"user": "slow", "trace": APP_TRACE, "api": None})
    assert 0.29 <= dt < 1.5, dt


def test_lifecycle_x_block(server):
    r = get(server, "/lifecycle?ms=2000", [("X-Block", "1"), ("X-User", "carol")])
    assert_text(r, 403, "blocked")
    assert_hooks(r)


def test_lifecycle_x_block_does_not_wait(server):
    r, dt = timed(lambda: get(server, "/lifecycle?ms=2000", [("X-Block", "1")]))
    assert r.status == 403 and dt < 1.0, (r, dt)


# --- /api/v1/lifecycle --------------------------------------------------------------------------

@pytest.mark.parametrize("headers,user", [((), "anonymous"), ([("X-User", "dave")], "dave")])
def test_api_lifecycle(server, headers, user):
    r = get(server, "/api/v1/lifecycle", headers)
    assert_json(r, 200, {"user": user, "trace": BP_TRACE, "api": "v1"})
    assert_hooks(r, bp=True)


def test_api_lifecycle_awaits_ms_as_lifecycle(server):
    """'as /lifecycle': awaits ms (0 ... 10000) before answering."""
    r, dt = timed(lambda: get(server, "/api/v1/lifecycle?ms=300"))
    assert_json(r, 200, {"user": "anonymous", "trace": BP_TRACE, "api": "v1"})
    assert 0.29 <= dt < 1.5, "answered after %.3f s, want about 0.3 s" % dt


@pytest.mark.parametrize("q", ["ms=10001", "ms=x", "ms="])
def test_api_lifecycle_ms_range_as_lifecycle(server, q):
    r = get(server, "/api/v1/lifecycle?" + q)
    assert_json(r, 400, {"error": "bad request", "code": 400})
    assert_hooks(r, bp=True)


def test_api_lifecycle_x_block(server):
    r = get(server, "/api/v1/lifecycle", [("X-Block", "1")])
    assert_text(r, 403, "blocked")
    assert_hooks(r, bp=True)


# --- /teardown-log ------------------------------------------------------------------------------

def test_teardown_log_format_and_filter(server):
    rid = new_rid("fmt")
    r = get(server, "/lifecycle", [("X-Request-Id", rid)])
    assert r.status == 200
    entries = wait_teardown(server, rid)
    assert entries == expected_teardown(rid, "GET", "/lifecycle"), entries
    for e in entries:
        assert set(e) == {"fn", "rid", "method", "path", "error"}, e


def test_teardown_log_without_argument_lists_all_oldest_first(server):
    a, b = new_rid("allA"), new_rid("allB")
    assert get(server, "/users/1", [("X-Request-Id", a)]).status == 200
    assert wait_teardown(server, a) == expected_teardown(a, "GET", "/users/1")
    assert get(server, "/users/2", [("X-Request-Id", b)]).status == 200
    assert wait_teardown(server, b) == expected_teardown(b, "GET", "/users/2")
    r = get(server, "/teardown-log")
    assert r.status == 200
    entries = r.json()["entries"]
    mine = [e for e in entries if e["rid"] in (a, b)]
    assert mine == expected_teardown(a, "GET", "/users/1") + expected_teardown(b, "GET", "/users/2"), mine
    assert 4 <= len(entries) <= 1000


def test_teardown_log_rid_is_exact_match(server):
    rid = new_rid("exact")
    assert get(server, "/", [("X-Request-Id", rid)]).status == 200
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", "/")
    for probe in (rid[:-1], rid + "x", rid.upper(), ""):
        r = get(server, "/teardown-log?rid=" + probe)
        got = [e for e in r.json()["entries"] if e["rid"] == rid]
        assert got == [], "rid=%r matched %r" % (probe, got)


def test_teardown_log_rid_percent_decoded(server):
    tail = new_rid("pd")
    rid = "sp ace&x=y/" + tail
    assert get(server, "/", [("X-Request-Id", rid)]).status == 200
    assert wait_teardown(server, "sp+ace%26x%3Dy%2F" + tail) == expected_teardown(rid, "GET", "/")


# --- /counter -------------------------------------------------------------------------------------

def test_counter_sequence(server):
    with connect(server) as c:
        def j(method):
            r = c.request(req(method, "/counter"), method=method)
            assert r.status == 200, r
            assert only(r, "content-type") == "application/json", r
            assert_hooks(r)
            return r.json()
        assert j("DELETE") == {"count": 0}
        assert j("GET") == {"count": 0}
        assert j("POST") == {"count": 1}
        assert j("POST") == {"count": 2}
        assert j("POST") == {"count": 3}
        assert j("GET") == {"count": 3}
        assert j("DELETE") == {"count": 0}
        assert j("GET") == {"count": 0}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "TRACE", "FOO", "get", "post"])
def test_counter_other_methods_405(server, method):
    r = call(server, method, "/counter")
    assert_json(r, 405, {"error": "method not allowed", "code": 405})
    assert r.allow_set() == {"DELETE", "GET", "HEAD", "OPTIONS", "POST"}, r
    assert_hooks(r)


def test_counter_405_allow_exact(server):
    r = call(server, "PUT", "/counter")
    allow = only(r, "allow")
    assert sorted(m.strip() for m in allow.split(",")) == ["DELETE", "GET", "HEAD", "OPTIONS", "POST"], allow
    assert all(p == p.strip() for p in allow.split(", ")), allow


def test_counter_head_and_options(server):
    assert get(server, "/counter").status == 200
    h = call(server, "HEAD", "/counter")
    assert h.status == 200 and h.body == b"", h
    o = call(server, "OPTIONS", "/counter")
    assert o.status == 200 and o.body == b"" and o.allow_set() == {"DELETE", "GET", "HEAD", "OPTIONS", "POST"}, o


def test_counter_concurrent_posts_exact(server):
    """200 concurrent POSTs over 50 connections: every new value 1..200 once, final 200."""
    assert call(server, "DELETE", "/counter").json() == {"count": 0}
    conns, per = 50, 4

    def worker():
        vals = []
        with connect(server, timeout=10) as c:
            for _ in range(per):
                r = c.request(req("POST", "/counter"), timeout=10)
                assert r.status == 200, r
                vals.append(r.json()["count"])
        return vals

    results = run_parallel([worker for _ in range(conns)], timeout=30)
    seen = sorted(v for vals in results for v in vals)
    assert seen == list(range(1, conns * per + 1)), "POST results not 1..200 exactly once: %r" % seen[:20]
    for vals in results:
        assert vals == sorted(vals), vals  # one connection's POSTs are sequential
    assert get(server, "/counter").json() == {"count": conns * per}
    assert call(server, "DELETE", "/counter").json() == {"count": 0}


def test_counter_concurrent_mixed_pipelined(server):
    assert call(server, "DELETE", "/counter").json() == {"count": 0}

    def worker():
        with connect(server, timeout=10) as c:
            c.send(b"".join(req("POST", "/counter") for _ in range(25)))
            return [c.read_final(timeout=10).json()["count"] for _ in range(25)]

    results = run_parallel([worker for _ in range(8)], timeout=30)
    assert sorted(v for r in results for v in r) == list(range(1, 201))
    assert get(server, "/counter").json() == {"count": 200}
    assert call(server, "DELETE", "/counter").json() == {"count": 0}


# --- §4.7 blueprint ------------------------------------------------------------------------------

@pytest.mark.parametrize("seg,value", [("7", 7), ("0", 0), ("007", 7), ("9223372036854775807", 9223372036854775807)])
def test_api_item(server, seg, value):
    r = get(server, "/api/v1/items/" + seg)
    assert_json(r, 200, {"id": value, "api": "v1"})
    assert_hooks(r, bp=True)


@pytest.mark.parametrize("seg", ["-1", "+1", "x", "9223372036854775808", "%D9%A3"])
def test_api_item_bad_int_is_app_404(server, seg):
    r = get(server, "/api/v1/items/" + seg)
    assert_json(r, 404, {"error": "not found", "path": "/api/v1/items/" + __import__("urllib.parse").parse.unquote(seg)})
    assert_hooks(r, bp=False)


def test_api_forbidden(server):
    rid = new_rid("apif")
    r = get(server, "/api/v1/forbidden", [("X-Request-Id", rid)])
    assert_json(r, 403, {"error": "forbidden", "scope": "api"})
    assert_hooks(r, bp=True)
    assert wait_teardown(server, rid) == expected_teardown(rid, "GET", "/api/v1/forbidden")


@pytest.mark.parametrize("target", ["/api/v1/unknown", "/api/v1/", "/api/v1", "/api/v1/items", "/api/v1/items/",
                                    "/api/v1/items/1/x", "/api/v2/items/1", "/api/v1/Lifecycle"])
def test_api_unknown_is_app_404_without_api_version(server, target):
    r = get(server, target)
    assert_json(r, 404, {"error": "not found", "path": target})
    assert_hooks(r, bp=False)


def test_app_routes_have_no_api_version(server):
    for target in ("/", "/lifecycle", "/users/1", "/forbidden"):
        r = get(server, target)
        assert not r.has("x-api-version"), r
