"""CSRF protection over real sockets, against examples/websec (see websec.py).

Every refusal is a 400 rendered by the app's error handler, whose body
names the problem. Tests that show a token accepted also show the same
request without it refused, so each fails with the protection off
(VIAL_WEBSEC_ARGS=--no-csrf)."""

import time
from urllib.parse import urlencode

from appkit import call
from websec import form_token, restamp, session_cookie, websec  # noqa: F401 (fixture)

FORM = ("Content-Type", "application/x-www-form-urlencoded")


def new_session(srv):
    """(session cookie, form token) of a fresh client."""
    r = call(srv, "GET", "/form")
    assert r.status == 200, r
    cookie = session_cookie(r)
    assert cookie, "GET /form set no session cookie: %r" % r
    return cookie, form_token(r)


def post(srv, target, cookie=None, fields=None, headers=()):
    hs = [FORM] + list(headers)
    if cookie:
        hs.append(("Cookie", cookie))
    return call(srv, "POST", target, headers=hs, body=urlencode(fields or {}))


def assert_refused(r, message):
    assert r.status == 400, r
    assert r.text() == "400 Bad Request: %s\n" % message, r


def test_form_with_token_accepted(websec):
    cookie, token = new_session(websec)
    r = post(websec, "/submit", cookie, {"title": "a & b", "csrf_token": token})
    assert r.status == 200 and r.text() == "saved a & b", r
    assert_refused(post(websec, "/submit", cookie, {"title": "x"}), "The CSRF token is missing.")


def test_tokens_masked_per_page(websec):
    cookie, first = new_session(websec)
    r = call(websec, "GET", "/form", headers=[("Cookie", cookie)])
    second = form_token(r)
    assert first != second, "the same bytes on every page (BREACH)"
    for tok in (first, second):
        assert post(websec, "/submit", cookie, {"csrf_token": tok}).status == 200
    assert_refused(post(websec, "/submit", cookie, {"csrf_token": first[:-2]}), "The CSRF token is invalid.")


def test_missing_token_refused(websec):
    cookie, _ = new_session(websec)
    assert_refused(post(websec, "/submit", cookie, {"title": "x"}), "The CSRF token is missing.")
    assert_refused(post(websec, "/submit", cookie, {"csrf_token": ""}), "The CSRF token is missing.")


def test_invalid_token_refused(websec):
    cookie, token = new_session(websec)
    payload, stamp, mac = token.split(".")
    bad_mac = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    bad_payload = ("A" if payload[0] != "A" else "B") + payload[1:]
    for bad in ("garbage", "%s.%s.%s" % (payload, stamp, bad_mac), "%s.%s.%s" % (bad_payload, stamp, mac),
                "%s.%d.%s" % (payload, int(stamp) + 1, mac)):
        assert_refused(post(websec, "/submit", cookie, {"csrf_token": bad}), "The CSRF token is invalid.")


def test_expired_token_refused(websec):
    cookie, token = new_session(websec)
    now = int(time.time())
    # Signed right, stamped an hour and a bit ago (the default limit: 3600 s).
    assert_refused(post(websec, "/submit", cookie, {"csrf_token": restamp(token, now - 3700)}),
                   "The CSRF token has expired.")
    r = post(websec, "/submit", cookie, {"csrf_token": restamp(token, now - 3000)})
    assert r.status == 200, r


def test_session_token_missing_refused(websec):
    _, token = new_session(websec)
    assert_refused(post(websec, "/submit", None, {"csrf_token": token}), "The CSRF session token is missing.")


def test_token_bound_to_session(websec):
    cookie_a, token_a = new_session(websec)
    cookie_b, token_b = new_session(websec)
    assert_refused(post(websec, "/submit", cookie_b, {"csrf_token": token_a}), "The CSRF tokens do not match.")
    assert post(websec, "/submit", cookie_b, {"csrf_token": token_b}).status == 200
    assert post(websec, "/submit", cookie_a, {"csrf_token": token_a}).status == 200


def test_header_token_accepted(websec):
    cookie, _ = new_session(websec)
    r = call(websec, "GET", "/token", headers=[("Cookie", cookie)])
    token = r.text()
    for name in ("X-CSRFToken", "X-CSRF-Token"):
        r = call(websec, "POST", "/submit", headers=[("Cookie", cookie), (name, token)])
        assert r.status == 200, r
    assert_refused(call(websec, "POST", "/submit", headers=[("Cookie", cookie)]), "The CSRF token is missing.")


def test_json_body_needs_header_token(websec):
    cookie, token = new_session(websec)
    body = '{"csrf_token": "%s"}' % token  # a JSON body is no form
    hs = [("Cookie", cookie), ("Content-Type", "application/json")]
    assert_refused(call(websec, "POST", "/submit", headers=hs, body=body), "The CSRF token is missing.")
    assert call(websec, "POST", "/submit", headers=hs + [("X-CSRFToken", token)], body=body).status == 200


def test_exempt_endpoint_and_blueprint_accepted(websec):
    r = post(websec, "/webhook")
    assert r.status == 200 and r.text() == "hook ok", r
    r = call(websec, "POST", "/api/ping", headers=[("Content-Type", "application/json")], body="{}")
    assert r.status == 200 and r.json() == {"pong": True}, r
    assert_refused(post(websec, "/submit"), "The CSRF token is missing.")


def test_safe_methods_and_routing_errors_unchecked(websec):
    assert call(websec, "GET", "/data").status == 200
    assert call(websec, "POST", "/nowhere", headers=[FORM]).status == 404
    r = call(websec, "POST", "/data", headers=[FORM])
    assert r.status == 405, r
    assert_refused(post(websec, "/submit"), "The CSRF token is missing.")


def test_html_escape_helper(websec):
    r = call(websec, "GET", "/hello?name=%3Cscript%3Ealert(%27x%27)%26%22%3C%2Fscript%3E")
    assert r.status == 200, r
    assert r.text() == "<p>Hello, &lt;script&gt;alert(&#39;x&#39;)&amp;&#34;&lt;/script&gt;!</p>\n"
