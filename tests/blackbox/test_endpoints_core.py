"""Spec §2 conventions, §3.3 methods and the core §4 endpoints:
GET /, /methods, /status/<int:code>, /headers, /header/<name>, /echo/body,
/stream, /async/sleep, /sync/block. (Hook headers and error-handler JSON bodies
are not checked here.)"""

import time

import pytest

from httpkit import GOOD_REQUEST, check_common, connect, req, roundtrip

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


def get(server, target, method="GET", headers=(), body=b"", version="HTTP/1.1"):
    return roundtrip(server, req(method, target, headers=headers, body=body, version=version), method=method)


def media_type(r):
    ct = r.header("content-type")
    assert ct is not None, "no Content-Type: %r" % r
    return ct


def assert_json(r, expected, status=200):
    assert r.status == status, r
    assert media_type(r).split(";")[0].strip().lower() == JSON, r
    assert r.json() == expected, r


# --- GET / ---------------------------------------------------------------------------

def test_index(server):
    r = get(server, "/")
    assert r.status == 200, r
    assert r.header("content-type") == TEXT, r
    assert r.body == b"vial conformance"
    check_common(r)


def test_index_with_query_string(server):
    r = get(server, "/?a=1&b")
    assert r.status == 200 and r.body == b"vial conformance", r


# --- /methods ------------------------------------------------------------------------

def test_methods_get(server):
    assert_json(get(server, "/methods"), {"method": "GET"})


def test_methods_post_ignores_body(server):
    assert_json(get(server, "/methods", method="POST", body=b'{"method": "PUT"}'), {"method": "POST"})


def test_methods_post_without_body(server):
    assert_json(roundtrip(server, req("POST", "/methods", content_length=0)), {"method": "POST"})


def test_methods_trailing_slash_is_404(server):
    assert get(server, "/methods/").status == 404


# --- /status/<int:code> ------------------------------------------------------------------

CODES = [200, 201, 202, 203, 206, 226, 299, 300, 301, 302, 303, 307, 308, 399, 400, 401, 403, 404,
         405, 408, 410, 413, 418, 422, 429, 451, 499, 500, 501, 502, 503, 504, 505, 599]


@pytest.mark.parametrize("code", CODES)
def test_status_code(server, code):
    with connect(server) as c:
        r = c.request(req("GET", "/status/%d" % code))
        assert r.status == code, r
        assert r.header("content-type") == TEXT, r
        assert r.body == b"status %d" % code, r
        check_common(r)
        # A view returning an error status is an ordinary response: the connection stays.
        assert not r.closes, r
        assert c.request(GOOD_REQUEST).status == 200


def test_status_204(server):
    with connect(server) as c:
        r = c.request(req("GET", "/status/204"))
        assert r.status == 204 and r.body == b"", r
        assert not r.has("content-length"), r
        check_common(r)
        c.assert_open(0.2)
        assert c.request(GOOD_REQUEST).status == 200


def test_status_205(server):
    with connect(server) as c:
        r = c.request(req("GET", "/status/205"))
        assert r.status == 205 and r.body == b"", r
        assert r.header("content-length") == "0", r
        c.assert_open(0.2)
        assert c.request(GOOD_REQUEST).status == 200


def test_status_304(server):
    with connect(server) as c:
        r = c.request(req("GET", "/status/304"))
        assert r.status == 304 and r.body == b"", r
        c.assert_open(0.2)
        assert c.request(GOOD_REQUEST).status == 200


def test_status_leading_zeros(server):
    r = get(server, "/status/0201")
    assert r.status == 201 and r.body == b"status 201", r


@pytest.mark.parametrize("seg", ["199", "100", "0", "600", "999", "-1", "+200", "2o0", "abc", "20 0",
                                 "99999999999999999999999", "200.0", "%D9%A2%D9%A0%D9%A0"])
def test_status_out_of_range_or_not_int_is_404(server, seg):
    r = get(server, "/status/" + seg.replace(" ", "%20"))
    assert r.status == 404, r


def test_status_trailing_slash_is_404(server):
    assert get(server, "/status/200/").status == 404


# --- /headers and /header/<name> -----------------------------------------------------------

def test_headers_lowercase_trimmed_joined(server):
    raw = (b"GET /headers HTTP/1.1\r\nHost: example.test\r\nX-Multi: a\r\nX-Case: Val\r\n"
           b"X-Space:   v  v \t\r\nx-multi: b\r\nX-MULTI: c\r\nX-Empty:\r\n\r\n")
    r = roundtrip(server, raw)
    assert_json(r, {"headers": {"host": "example.test", "x-multi": "a, b, c", "x-case": "Val",
                                "x-space": "v  v", "x-empty": ""}})


def test_header_lookup_case_insensitive_echoes_name(server):
    raw = b"GET /header/X-CaSe HTTP/1.1\r\nHost: localhost\r\nx-case: value here \r\n\r\n"
    assert_json(roundtrip(server, raw), {"name": "X-CaSe", "value": "value here"})


def test_header_missing_is_null(server):
    assert_json(get(server, "/header/X-Missing"), {"name": "X-Missing", "value": None})


def test_header_repeated_joined(server):
    raw = b"GET /header/accept HTTP/1.1\r\nHost: localhost\r\nAccept: a/b\r\nAccept: c/d\r\n\r\n"
    assert_json(roundtrip(server, raw), {"name": "accept", "value": "a/b, c/d"})


def test_header_host(server):
    assert_json(get(server, "/header/Host"), {"name": "Host", "value": "localhost"})


# --- /echo/body ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_echo_body(server, method):
    body = b"\x00\x01binary\xff\xfe" * 100
    r = get(server, "/echo/body", method=method, body=body)
    assert r.status == 200, r
    assert r.header("content-type") == "application/octet-stream", r
    assert r.body == body
    check_common(r)


def test_echo_empty_body(server):
    r = roundtrip(server, req("POST", "/echo/body", content_length=0))
    assert r.status == 200 and r.body == b"" and r.header("content-length") == "0", r


# --- §3.3 methods ---------------------------------------------------------------------------

def _same_headers_except_date(g, h):
    def norm(r):
        return sorted((k.lower(), v) for k, v in r.headers if k.lower() != "date")
    assert norm(g) == norm(h), "HEAD headers differ from GET:\nGET  %r\nHEAD %r" % (g.headers, h.headers)


@pytest.mark.parametrize("target", ["/", "/methods", "/status/404", "/status/201", "/headers",
                                    "/header/X-A", "/async/sleep?ms=1", "/sync/block?ms=1"])
def test_automatic_head(server, target):
    with connect(server) as c:
        g = c.request(req("GET", target))
        h = c.request(req("HEAD", target), method="HEAD")
        assert h.status == g.status, (g, h)
        assert h.body == b""
        assert h.header("content-length") == str(len(g.body)), (g, h)
        _same_headers_except_date(g, h)
        c.assert_open(0.2)


@pytest.mark.parametrize("target,allow", [
    ("/", {"GET", "HEAD", "OPTIONS"}),
    ("/methods", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("/status/200", {"GET", "HEAD", "OPTIONS"}),
    ("/echo/body", {"OPTIONS", "POST", "PUT"}),
    ("/headers", {"GET", "HEAD", "OPTIONS"}),
    ("/stream", {"GET", "HEAD", "OPTIONS"}),
])
def test_automatic_options(server, target, allow):
    with connect(server) as c:
        r = c.request(req("OPTIONS", target))
        assert r.status == 200, r
        assert r.body == b"" and r.header("content-length") == "0", r
        assert r.allow_set() == allow, r
        check_common(r)
        assert c.request(GOOD_REQUEST).status == 200


@pytest.mark.parametrize("method,target,allow", [
    ("POST", "/", {"GET", "HEAD", "OPTIONS"}),
    ("DELETE", "/", {"GET", "HEAD", "OPTIONS"}),
    ("PUT", "/methods", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("PATCH", "/methods", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("GET", "/echo/body", {"OPTIONS", "POST", "PUT"}),
    ("HEAD", "/echo/body", {"OPTIONS", "POST", "PUT"}),
    ("DELETE", "/status/200", {"GET", "HEAD", "OPTIONS"}),
    ("get", "/", {"GET", "HEAD", "OPTIONS"}),
    ("Get", "/methods", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("post", "/echo/body", {"OPTIONS", "POST", "PUT"}),
    ("FOO", "/", {"GET", "HEAD", "OPTIONS"}),
    ("BREW", "/headers", {"GET", "HEAD", "OPTIONS"}),
])
def test_method_not_allowed(server, method, target, allow):
    with connect(server) as c:
        r = c.request(req(method, target), method=method)
        assert r.status == 405, r
        assert r.allow_set() == allow, r
        check_common(r, method)
        assert not r.closes, r
        assert c.request(GOOD_REQUEST).status == 200


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "FOO", "get"])
def test_no_route_is_404_whatever_the_method(server, method):
    with connect(server) as c:
        r = c.request(req(method, "/no/such/route"), method=method)
        assert r.status == 404, r
        check_common(r, method)


# --- integer query parameters (§2) ------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/async/sleep?ms=", "/async/sleep?ms=abc", "/async/sleep?ms=-1", "/async/sleep?ms=+1",
    "/async/sleep?ms=1.5", "/async/sleep?ms=0x10", "/async/sleep?ms=60001",
    "/async/sleep?ms=99999999999999999999999999", "/async/sleep?ms=%201", "/async/sleep?ms=1%20",
    "/sync/block?ms=", "/sync/block?ms=x", "/sync/block?ms=60001", "/sync/block?ms=-5",
    "/stream?n=10001", "/stream?n=-1", "/stream?n=", "/stream?ms=10001", "/stream?n=2&ms=abc",
])
def test_bad_integer_parameter_is_400(server, target):
    r = get(server, target)
    assert r.status == 400, r
    check_common(r)


@pytest.mark.parametrize("target,expected", [
    ("/async/sleep", {"slept_ms": 0}),
    ("/async/sleep?ms=0", {"slept_ms": 0}),
    ("/async/sleep?ms=007", {"slept_ms": 7}),
    ("/async/sleep?ms=%31%35", {"slept_ms": 15}),
    ("/async/sleep?other=x&ms=20", {"slept_ms": 20}),
    ("/sync/block", {"blocked_ms": 100}),
    ("/sync/block?ms=0", {"blocked_ms": 0}),
    ("/sync/block?ms=25", {"blocked_ms": 25}),
])
def test_integer_parameter_values(server, target, expected):
    assert_json(get(server, target), expected)


# --- /async/sleep and /sync/block -------------------------------------------------------------

@pytest.mark.parametrize("target,key", [("/async/sleep?ms=300", "slept_ms"), ("/sync/block?ms=300", "blocked_ms")])
def test_sleep_and_block_take_their_time(server, target, key):
    t0 = time.monotonic()
    r = get(server, target)
    elapsed = time.monotonic() - t0
    assert_json(r, {key: 300})
    assert elapsed >= 0.29, elapsed
    assert elapsed < 3.0, elapsed


# --- /stream -------------------------------------------------------------------------------

def _lines(n):
    return b"".join(b"chunk %d\n" % i for i in range(1, n + 1))


@pytest.mark.parametrize("query,n", [("", 5), ("?n=1", 1), ("?n=3&ms=0", 3), ("?n=100&ms=0", 100), ("?n=0", 0)])
def test_stream_body(server, query, n):
    with connect(server) as c:
        r = c.request(req("GET", "/stream" + query))
        assert r.status == 200, r
        assert r.header("content-type") == TEXT, r
        assert r.framing == "chunked", r
        assert "chunked" in r.tokens("transfer-encoding") and not r.has("content-length"), r
        assert r.body == _lines(n), r
        check_common(r, streamed=True)
        assert not r.closes
        assert c.request(GOOD_REQUEST).status == 200


def test_stream_http10_close_delimited(server):
    with connect(server) as c:
        c.send(b"GET /stream?n=4&ms=0 HTTP/1.0\r\n\r\n")
        r = c.read_final()
        assert r.status == 200, r
        assert r.version == "HTTP/1.1"
        assert not r.has("transfer-encoding") and not r.has("content-length"), r
        assert r.framing == "close"
        assert r.body == _lines(4), r
        assert c.eof


@pytest.mark.parametrize("ms", [300, 1000])
def test_stream_lines_arrive_as_produced(server, ms):
    events = []
    t0 = None
    with connect(server, timeout=10) as c:
        t0 = time.monotonic()
        c.send(req("GET", "/stream?n=3&ms=%d" % ms))
        r = c.read_final(timeout=10, on_data=lambda t, d: events.append((t - t0, d)))
    assert r.status == 200 and r.body == _lines(3), r
    # Time at which each complete line had arrived.
    got = b""
    arrival = {}
    for t, d in events:
        got += d
        for i in range(1, 4):
            if i not in arrival and _lines(i) in got[:len(_lines(i))] and len(got) >= len(_lines(i)):
                arrival[i] = t
    s = ms / 1000.0
    assert arrival[1] < 0.8 * s, "first line arrived after %.3f s; second is produced at %.3f s" % (arrival[1], s)
    assert arrival[2] >= 0.9 * s, "second line too early: %.3f s" % arrival[2]
    assert arrival[2] < 2 * s - 0.2 * s, "second line arrived %.3f s, third produced at %.3f s" % (arrival[2], 2 * s)
    assert arrival[3] >= 1.9 * s, "third line too early: %.3f s" % arrival[3]
