"""CORS over real sockets, against examples/websec (see websec.py): the app
allows https://app.example with credentials (Content-Type and X-CSRFToken
request headers, X-Total exposed, max-age 600); its blueprint /pub allows
any origin without credentials. Each test fails with CORS off
(VIAL_WEBSEC_ARGS=--no-cors)."""

from appkit import call
from httpkit import connect, req
from websec import websec  # noqa: F401 (fixture)

SITE = "https://app.example"
EVIL = "https://evil.example"


def preflight(srv, target, origin, method, req_headers=None):
    hs = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if req_headers:
        hs.append(("Access-Control-Request-Headers", req_headers))
    return call(srv, "OPTIONS", target, headers=hs)


def cors_headers(r):
    return {k.lower(): v for k, v in r.headers if k.lower().startswith("access-control-")}


def test_preflight_allowed(websec):
    r = preflight(websec, "/data", SITE, "PUT", "content-type, x-csrftoken, x-other")
    assert r.status == 204 and r.body == b"", r
    assert r.header("access-control-allow-origin") == SITE, r
    assert r.header("access-control-allow-credentials") == "true", r
    assert "PUT" in {m.strip() for m in r.header("access-control-allow-methods").split(",")}, r
    # Only the allowed ones of the headers asked for.
    assert r.tokens("access-control-allow-headers") == {"content-type", "x-csrftoken"}, r
    assert r.header("access-control-max-age") == "600", r
    assert "origin" in r.tokens("vary"), r
    assert not r.has("x-total"), "the view ran for a preflight: %r" % r


def test_preflight_denied(websec):
    for origin, method in ((EVIL, "PUT"), (SITE, "TRACE")):
        r = preflight(websec, "/data", origin, method)
        assert r.status == 204 and r.body == b"", r
        assert cors_headers(r) == {}, r
        assert "origin" in r.tokens("vary"), r
        assert not r.has("x-total"), r


def test_simple_request_credentials_echo_origin(websec):
    r = call(websec, "GET", "/data", headers=[("Origin", SITE)])
    assert r.status == 200 and r.text() == "GET data", r
    # With credentials, never "*": the origin itself, and Vary: Origin.
    assert r.header_list("access-control-allow-origin") == [SITE], r
    assert r.header("access-control-allow-credentials") == "true", r
    assert r.header("access-control-expose-headers") == "X-Total", r
    assert "origin" in r.tokens("vary"), r


def test_disallowed_origin_gets_no_cors_headers(websec):
    r = call(websec, "GET", "/data", headers=[("Origin", EVIL)])
    assert r.status == 200 and r.text() == "GET data", r  # the browser is what blocks
    assert cors_headers(r) == {}, r
    assert "origin" in r.tokens("vary"), r
    r = call(websec, "GET", "/data")
    assert cors_headers(r) == {} and "origin" in r.tokens("vary"), r


def test_error_responses_carry_headers(websec):
    for method, target, status in (("GET", "/nowhere", 404), ("GET", "/broken", 500),
                                   ("POST", "/submit", 400), ("POST", "/data", 405)):
        r = call(websec, method, target, headers=[("Origin", SITE)])
        assert r.status == status, r
        assert r.header("access-control-allow-origin") == SITE, r
        assert r.header("access-control-allow-credentials") == "true", r


def test_body_too_large_carries_headers(websec):
    # Refused by the HTTP layer from the head (no hook runs there), yet the
    # page's script may read the 413.
    with connect(websec, timeout=10) as c:
        c.send(req("POST", "/submit", headers=[("Origin", SITE)], content_length=1024 * 1024 + 1),
               ignore_errors=True)
        r = c.read_response(timeout=5)
    assert r.status == 413, r
    assert r.header("access-control-allow-origin") == SITE, r


def test_blueprint_any_origin(websec):
    r = call(websec, "GET", "/pub/data", headers=[("Origin", EVIL)])
    assert r.status == 200, r
    assert r.header("access-control-allow-origin") == "*", r
    assert not r.has("access-control-allow-credentials"), r
    r = preflight(websec, "/pub/data", EVIL, "GET")
    assert r.status == 204 and r.header("access-control-allow-origin") == "*", r
