"""Spec §3.1 (hooks, g, teardown log), §3.2 (error handlers), §3.3 (methods)."""

import json
import time

import pytest

from appkit import (JSON, TEXT, assert_hooks, assert_json, assert_no_hooks, assert_text, call,
                    expected_teardown, get, new_rid, only, run_parallel, teardown_log,
                    wait_teardown)
from httpkit import check_common, connect, req

# --- §3.1 after_request on every kind of response ------------------------------------------
# (method, target, extra headers, body, expected status, blueprint route?)
KINDS = [
    ("GET", "/", (), b"", 200, False),
    ("GET", "/hello/x", (), b"", 200, False),
    ("GET", "/users/5", (), b"", 200, False),
    ("GET", "/", [("X-Block", "1")], b"", 403, False),
    ("GET", "/no/such/route", (), b"", 404, False),
    ("POST", "/", (), b"", 405, False),
    ("PUT", "/counter", (), b"", 405, False),
    ("GET", "/forbidden", (), b"", 403, False),
    ("GET", "/fail", (), b"", 500, False),
    ("GET", "/async/fail", (), b"", 500, False),
    ("GET", "/dir", (), b"", 308, False),
    ("GET", "/dir?a=1", (), b"", 308, False),
    ("HEAD", "/dir", (), b"", 308, False),
    ("OPTIONS", "/", (), b"", 200, False),
    ("OPTIONS", "/echo/body", (), b"", 200, False),
    ("HEAD", "/", (), b"", 200, False),
    ("HEAD", "/no/such/route", (), b"", 404, False),
    ("GET", "/stream", (), b"", 200, False),
    ("GET", "/stream?n=0", (), b"", 200, False),
    ("GET", "/sse", (), b"", 200, False),
    ("GET", "/status/404", (), b"", 404, False),
    ("GET", "/status/204", (), b"", 204, False),
    ("GET", "/stream?n=x", (), b"", 400, False),
    ("POST", "/json", [("Content-Type", "text/plain")], b"{}", 415, False),
    ("GET", "/redirect?to=/x", (), b"", 302, False),
    ("POST", "/echo/body", (), b"abc", 200, False),
    ("GET", "/api/v1/items/7", (), b"", 200, True),
    ("GET", "/api/v1/lifecycle", (), b"", 200, True),
    ("GET", "/api/v1/forbidden", (), b"", 403, True),
    ("GET", "/api/v1/items/7", [("X-Block", "1")], b"", 403, True),
    ("HEAD", "/api/v1/items/7", (), b"", 200, True),
    ("OPTIONS", "/api/v1/items/7", (), b"", 200, True),
    ("GET", "/api/v1/unknown", (), b"", 404, False),
    ("GET", "/api/v1/items/abc", (), b"", 404, False),
    ("GET", "/api/v1/", (), b"", 404, False),
]


@pytest.mark.parametrize("method,target,headers,body,status,bp", KINDS,
                         ids=["%s %s%s" % (k[0], k[1], " blocked" if k[2] else "") for k in KINDS])
def test_after_hooks_on_every_response(server, method, target, headers, body, status, bp):
    r = call(server, method, target, headers=headers, body=body)
    assert r.status == status, r
    assert_hooks(r, bp=bp)
    check_common(r, method, streamed=status == 200 and target.startswith(("/stream", "/sse")))


def test_x_block_short_circuits_with_403_text_blocked(server):
    r = get(server, "/lifecycle", [("X-Block", "1")])
    assert_text(r, 403, "blocked")
    assert_hooks(r)


@pytest.mark.parametrize("method,target", [
    ("GET", "/no/such/route"),   # routing fails with 404
    ("POST", "/"),               # 405
    ("GET", "/dir"),             # slash redirect
    ("GET", "/forbidden"),       # the view would abort(403)
    ("GET", "/fail"),            # the view would fail
    ("OPTIONS", "/"),            # automatic OPTIONS
    ("HEAD", "/"),               # automatic HEAD
])
def test_before_hooks_run_before_routing_and_views(server, method, target):
    """before_request runs first even when routing fails: X-Block answers 'blocked'."""
    r = call(server, method, target, headers=[("X-Block", "1")])
    assert_text(r, 403, "blocked", method=method)
    assert_hooks(r)


@pytest.mark.parametrize("value", ["0", "", "true", "11", " 1x"])
def test_x_block_other_values_do_not_block(server, value):
    r = get(server, "/lifecycle", [("X-Block", value)])
    assert_json(r, 200, {"user": "anonymous", "trace": ["before_sync", "before_async"], "api": None})
    assert_hooks(r)


def test_x_block_on_streamed_route_blocks(server):
    r = get(server, "/stream?n=3", [("X-Block", "1")])
    assert_text(r, 403, "blocked")
    assert_hooks(r)


# --- g --------------------------------------------------------------------------------------

def test_g_defaults_to_anonymous(server):
    assert_json(get(server, "/lifecycle"),
                200, {"user": "anonymous", "trace": ["before_sync", "before_async"], "api": None})


def test_g_user_from_header(server):
    assert_json(get(server, "/lifecycle", [("X-User", "alice")]),
                200, {"user": "alice", "trace": ["before_sync", "before_async"], "api": None})


def test_g_is_per_request_on_one_connection(server):
    with connect(server) as c:
        r1 = c.request(req("GET", "/api/v1/lifecycle", headers=[("X-User", "alice")]))
        assert r1.json() == {"user": "alice", "trace": ["before_sync", "before_async", "bp_before"],
                             "api": "v1"}, r1
        r2 = c.request(req("GET", "/lifecycle"))
        assert r2.json() == {"user": "anonymous", "trace": ["before_sync", "before_async"], "api": None}, r2
        r3 = c.request(req("GET", "/lifecycle", headers=[("X-User", "bob")]))
        assert r3.json() == {"user": "bob", "trace": ["before_sync", "before_async"], "api": None}, r3


def test_g_isolated_under_concurrent_requests(server):
    """64 requests on 64 connections at once, different X-User values and routes."""
    n = 64

    def one(i):
        def fn():
            if i % 4 == 3:
                headers = []
                user = "anonymous"
            else:
                user = "user-%d-%s" % (i, "x" * (i % 7))
                headers = [("X-User", user)]
            target = "/api/v1/lifecycle?ms=50" if i % 2 else "/lifecycle?ms=50"
            r = get(server, target, headers, timeout=10)
            return i, user, target, r
        return fn

    for i, user, target, r in run_parallel([one(i) for i in range(n)], timeout=20):
        assert r.status == 200, (target, r)
        if target.startswith("/api/"):
            want = {"user": user, "trace": ["before_sync", "before_async", "bp_before"], "api": "v1"}
            assert_hooks(r, bp=True)
        else:
            want = {"user": user, "trace": ["before_sync", "before_async"], "api": None}
            assert_hooks(r)
        assert r.json() == want, (i, target, r)


def test_g_isolated_on_pipelined_requests(server):
    users = ["p%d" % i for i in range(8)]
    with connect(server, timeout=10) as c:
        c.send(b"".join(req("GET", "/lifecycle?ms=20", headers=[("X-User", u)]) for u in users))
        for u in users:
            r = c.read_final(timeout=10)
            assert r.json() == {"user": u, "trace": ["before_sync", "before_async"], "api": None}, r


# --- teardown log ---------------------------------------------------------------------------
# (method, target, extra headers, body, expected status, logged path, error)
TEARDOWN_CASES = [
    ("GET", "/", (), b"", 200, "/", None),
    ("GET", "/hello/w%C3%B6rld", (), b"", 200, "/hello/w\u00f6rld", None),
    ("GET", "/lifecycle?ms=0", (), b"", 200, "/lifecycle", None),
    ("POST", "/methods", (), b"x=1", 200, "/methods", None),
    ("GET", "/fail", (), b"", 500, "/fail", "boom"),
    ("GET", "/async/fail", (), b"", 500, "/async/fail", "boom"),
    ("GET", "/forbidden", (), b"", 403, "/forbidden", None),
    ("GET", "/api/v1/forbidden", (), b"", 403, "/api/v1/forbidden", None),
    ("GET", "/no/such/%41", (), b"", 404, "/no/such/A", None),
    ("DELETE", "/", (), b"", 405, "/", None),
    ("GET", "/stream?n=x", (), b"", 400, "/stream", None),
    ("GET", "/", [("X-Block", "1")], b"", 403, "/", None),
    ("GET", "/dir?q=1", (), b"", 308, "/dir", None),
    ("HEAD", "/users/3", (), b"", 200, "/users/3", None),
    ("OPTIONS", "/counter", (), b"", 200, "/counter", None),
    ("GET", "/stream?n=3", (), b"", 200, "/stream", None),
    ("GET", "/sse?n=2", (), b"", 200, "/sse", None),
    ("GET", "/status/500", (), b"", 500, "/status/500", None),
    ("POST", "/json", [("Content-Type", "application/json")], b"{", 400, "/json", None),
    ("GET", "/api/v1/items/9", (), b"", 200, "/api/v1/items/9", None),
]


@pytest.mark.parametrize("method,target,headers,body,status,path,error", TEARDOWN_CASES,
                         ids=["%s %s%s" % (k[0], k[1], " blocked" if k[2] else "") for k in TEARDOWN_CASES])
def test_teardown_log_entries(server, method, target, headers, body, status, path, error):
    rid = new_rid("td")
    r = call(server, method, target, headers=[("X-Request-Id", rid)] + list(headers), body=body)
    assert r.status == status, r
    entries = wait_teardown(server, rid)
    assert entries == expected_teardown(rid, method, path, error), entries


def test_teardown_log_rid_null_without_header(server):
    marker = new_rid("nohdr")
    r = get(server, "/no/" + marker)
    assert r.status == 404, r
    deadline = time.monotonic() + 1.2
    mine = []
    for _ in range(100):
        mine = [e for e in teardown_log(server) if e["path"] == "/no/" + marker]
        if len(mine) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert mine == expected_teardown(None, "GET", "/no/" + marker), mine


def test_teardown_log_rid_filter_oldest_first(server):
    rid = new_rid("order")
    other = new_rid("other")
    with connect(server) as c:
        for target, who in (("/users/1", rid), ("/users/2", other), ("/hello/a", rid), ("/forbidden", rid)):
            r = c.request(req("GET", target, headers=[("X-Request-Id", who)]))
            assert r.status in (200, 403), r
    entries = wait_teardown(server, rid, count=6)
    want = (expected_teardown(rid, "GET", "/users/1") + expected_teardown(rid, "GET", "/hello/a")
            + expected_teardown(rid, "GET", "/forbidden"))
    assert entries == want, entries
    assert wait_teardown(server, other) == expected_teardown(other, "GET", "/users/2")


def test_teardown_log_unknown_rid_is_empty(server):
    r = get(server, "/teardown-log?rid=" + new_rid("never"))
    assert_json(r, 200, {"entries": []})
    assert_hooks(r)


def test_teardown_log_visible_within_one_second(server):
    rid = new_rid("vis")
    r = get(server, "/async/fail", [("X-Request-Id", rid)])
    t_done = time.monotonic()
    assert r.status == 500, r
    entries = wait_teardown(server, rid, within=1.0)
    assert time.monotonic() - t_done <= 1.3
    assert entries == expected_teardown(rid, "GET", "/async/fail", "boom"), entries


def test_teardown_log_keeps_newest_1000(server):
    old = new_rid("old")
    assert get(server, "/", [("X-Request-Id", old)]).status == 200
    assert wait_teardown(server, old) == expected_teardown(old, "GET", "/")
    fill = new_rid("fill")
    per_conn, conns = 100, 5  # 500 requests -> 1000 newer entries

    def worker(k):
        def fn():
            with connect(server, timeout=10) as c:
                for i in range(per_conn):
                    r = c.request(req("GET", "/users/%d" % (k * per_conn + i),
                                      headers=[("X-Request-Id", fill)]), timeout=10)
                    assert r.status == 200, r
            return True
        return fn

    run_parallel([worker(k) for k in range(conns)], timeout=30)
    deadline = time.monotonic() + 1.5
    filled = []
    for _ in range(100):
        filled = teardown_log(server, fill)
        if len(filled) >= 1000 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(filled) == 1000, "expected all 1000 newest entries for the filling requests, got %d" % len(filled)
    assert teardown_log(server, old) == [], "the oldest entries were not dropped"
    everything = teardown_log(server)
    assert len(everything) == 1000, "log holds %d entries, want the newest 1000" % len(everything)
    # Every request is there once, teardown_async logged before teardown_sync.
    by_path = {}
    for e in filled:
        by_path.setdefault(e["path"], []).append(e["fn"])
    assert set(by_path) == {"/users/%d" % i for i in range(500)}
    bad = {p: fns for p, fns in by_path.items() if fns != ["teardown_async", "teardown_sync"]}
    assert not bad, "wrong teardown order/count for %d requests, e.g. %r" % (len(bad), list(bad.items())[:3])


def test_http_layer_413_runs_no_hooks(server):
    rid = new_rid("big")
    with connect(server) as c:
        c.send(req("POST", "/echo/body", headers=[("X-Request-Id", rid)], content_length=1048577),
               ignore_errors=True)
        r = c.read_final()
    assert r.status == 413, r
    assert_no_hooks(r)
    assert r.closes, r
    # A later request's entries appear; the rejected one has none.
    rid2 = new_rid("after413")
    assert get(server, "/", [("X-Request-Id", rid2)]).status == 200
    assert wait_teardown(server, rid2) == expected_teardown(rid2, "GET", "/")
    time.sleep(0.3)
    assert teardown_log(server, rid) == []


def test_http_layer_413_on_sent_body_runs_no_hooks(server):
    rid = new_rid("big2")
    body = b"a" * 1048577
    with connect(server, timeout=10) as c:
        c.send(req("POST", "/echo/body", headers=[("X-Request-Id", rid)], body=body), ignore_errors=True)
        r = c.read_final(timeout=10)
    assert r.status == 413, r
    assert_no_hooks(r)
    time.sleep(0.5)
    assert teardown_log(server, rid) == []


def test_body_of_exactly_1mib_is_accepted(server):
    body = bytes(range(256)) * 4096
    assert len(body) == 1048576
    r = call(server, "POST", "/echo/body", body=body, timeout=10)
    assert r.status == 200, r
    assert r.body == body
    assert_hooks(r)


# --- §3.2 error handlers --------------------------------------------------------------------

@pytest.mark.parametrize("target,path", [
    ("/no/such/route", "/no/such/route"),
    ("/no?x=1&y", "/no"),
    ("/users/abc", "/users/abc"),
    ("/hello/", "/hello/"),
    ("/methods/", "/methods/"),
    ("/%E2%82%AC", "/\u20ac"),
    ("/x%FFy", "/x\ufffdy"),
    ("/users/1%00", "/users/1\u0000"),
    ("/api/v1/unknown", "/api/v1/unknown"),
    ("/api/v1/items/-1", "/api/v1/items/-1"),
])
def test_404_handler_body(server, target, path):
    r = get(server, target)
    assert_json(r, 404, {"error": "not found", "path": path})
    assert_hooks(r)


def test_403_app_handler(server):
    r = get(server, "/forbidden")
    assert_json(r, 403, {"error": "forbidden"})
    assert_hooks(r)


def test_403_blueprint_handler_wins(server):
    r = get(server, "/api/v1/forbidden")
    assert_json(r, 403, {"error": "forbidden", "scope": "api"})
    assert_hooks(r, bp=True)


@pytest.mark.parametrize("target", ["/fail", "/async/fail"])
def test_500_handler(server, target):
    r = get(server, target)
    assert_json(r, 500, {"error": "internal server error"})
    assert_hooks(r)
    assert not r.closes, "a 500 from the app is an ordinary response: %r" % r


@pytest.mark.parametrize("method,target,headers,body", [
    ("GET", "/stream?n=abc", (), b""),
    ("GET", "/redirect", (), b""),
    ("GET", "/cookies/set?a=%20", (), b""),
    ("GET", "/cookies/delete", (), b""),
    ("POST", "/json", [("Content-Type", "application/json")], b"[1,]"),
    ("POST", "/upload", [("Content-Type", "text/plain")], b"x"),
    ("GET", "/async/gather?n=0", (), b""),
])
def test_400_fallback_handler(server, method, target, headers, body):
    r = call(server, method, target, headers=headers, body=body)
    assert_json(r, 400, {"error": "bad request", "code": 400})
    assert_hooks(r)


@pytest.mark.parametrize("method,target,allow", [
    ("POST", "/", {"GET", "HEAD", "OPTIONS"}),
    ("PUT", "/counter", {"DELETE", "GET", "HEAD", "OPTIONS", "POST"}),
    ("GET", "/form", {"OPTIONS", "POST"}),
    ("DELETE", "/api/v1/items/7", {"GET", "HEAD", "OPTIONS"}),
])
def test_405_fallback_handler_keeps_allow(server, method, target, allow):
    r = call(server, method, target)
    assert_json(r, 405, {"error": "method not allowed", "code": 405})
    assert r.allow_set() == allow, r
    assert only(r, "x-after") == "1", r


def test_415_fallback_handler(server):
    r = call(server, "POST", "/json", headers=[("Content-Type", "text/plain")], body=b"{}")
    assert_json(r, 415, {"error": "unsupported media type", "code": 415})
    assert_hooks(r)


@pytest.mark.parametrize("code", [403, 404, 405, 500, 400, 415, 504])
def test_returned_error_status_is_not_an_error(server, code):
    """A view that returns an error status is sent as is (text, no handler, no Allow)."""
    r = get(server, "/status/%d" % code)
    assert_text(r, code, "status %d" % code)
    assert not r.has("allow"), r
    assert_hooks(r)


def test_slash_redirect_not_passed_to_handlers(server):
    r = get(server, "/dir")
    assert r.status == 308, r
    assert only(r, "location") in ("/dir/", "http://localhost/dir/"), r
    try:
        body = json.loads(r.body.decode("utf-8")) if r.body else None
    except ValueError:
        body = None
    assert not (isinstance(body, dict) and ("code" in body or "error" in body)), \
        "the 308 went through an error handler: %r" % r
    assert_hooks(r)


def test_504_of_async_timeout_is_sent_as_is(server):
    r = get(server, "/async/timeout?ms=2000&limit=50")
    assert_json(r, 504, {"error": "timeout", "limit_ms": 50})
    assert_hooks(r)


# --- §3.3 methods ---------------------------------------------------------------------------

def _norm_headers(r):
    return sorted((k.lower(), v) for k, v in r.headers if k.lower() != "date")


HEAD_TARGETS = ["/", "/hello/x", "/users/12", "/files/a/b/", "/dir/", "/methods", "/url-for",
                "/args?a=1&a=2", "/headers", "/header/Host", "/cookies", "/cookies/set?a=1&b=2",
                "/cookies/delete?name=a", "/redirect?to=/x&code=307", "/forbidden", "/fail",
                "/async/fail", "/lifecycle", "/teardown-log?rid=nothing", "/counter",
                "/async/sleep?ms=1", "/async/stats", "/status/201", "/status/404", "/status/205",
                "/api/v1/items/3", "/api/v1/lifecycle", "/api/v1/forbidden", "/no/such/route",
                "/dir"]


@pytest.mark.parametrize("target", HEAD_TARGETS)
def test_automatic_head_matches_get(server, target):
    with connect(server) as c:
        g = c.request(req("GET", target))
        h = c.request(req("HEAD", target), method="HEAD")
    assert h.status == g.status, (g, h)
    assert h.body == b"", h
    if g.status not in (204, 304):
        assert only(h, "content-length") == str(len(g.body)), (g, h)
    assert _norm_headers(h) == _norm_headers(g), "HEAD headers differ:\nGET  %r\nHEAD %r" % (g.headers, h.headers)
    check_common(h, "HEAD")


@pytest.mark.parametrize("target,allow,bp", [
    ("/", {"GET", "HEAD", "OPTIONS"}, False),
    ("/hello/x", {"GET", "HEAD", "OPTIONS"}, False),
    ("/methods", {"GET", "HEAD", "OPTIONS", "POST"}, False),
    ("/form", {"OPTIONS", "POST"}, False),
    ("/upload", {"OPTIONS", "POST"}, False),
    ("/json", {"OPTIONS", "POST"}, False),
    ("/echo/body", {"OPTIONS", "POST", "PUT"}, False),
    ("/counter", {"DELETE", "GET", "HEAD", "OPTIONS", "POST"}, False),
    ("/sse", {"GET", "HEAD", "OPTIONS"}, False),
    ("/fail", {"GET", "HEAD", "OPTIONS"}, False),
    ("/api/v1/items/1", {"GET", "HEAD", "OPTIONS"}, True),
])
def test_automatic_options(server, target, allow, bp):
    r = call(server, "OPTIONS", target)
    assert r.status == 200, r
    assert r.body == b"" and only(r, "content-length") == "0", r
    assert r.allow_set() == allow, r
    assert_hooks(r, bp=bp)
    check_common(r, "OPTIONS")


@pytest.mark.parametrize("method,target,allow", [
    ("POST", "/hello/x", {"GET", "HEAD", "OPTIONS"}),
    ("GET", "/json", {"OPTIONS", "POST"}),
    ("HEAD", "/upload", {"OPTIONS", "POST"}),
    ("DELETE", "/methods", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("PATCH", "/counter", {"DELETE", "GET", "HEAD", "OPTIONS", "POST"}),
    ("get", "/", {"GET", "HEAD", "OPTIONS"}),
    ("post", "/methods", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("Delete", "/counter", {"DELETE", "GET", "HEAD", "OPTIONS", "POST"}),
    ("options", "/", {"GET", "HEAD", "OPTIONS"}),
])
def test_method_not_allowed(server, method, target, allow):
    r = call(server, method, target)
    assert r.status == 405, r
    assert r.allow_set() == allow, r
    if method != "HEAD":
        assert r.json() == {"error": "method not allowed", "code": 405}, r
    assert_hooks(r)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get"])
def test_unknown_path_is_404_whatever_the_method(server, method):
    r = call(server, method, "/really/not/here")
    assert r.status == 404, r
    assert not r.has("allow"), r
    if method != "HEAD":
        assert r.json() == {"error": "not found", "path": "/really/not/here"}, r
    assert_hooks(r)
