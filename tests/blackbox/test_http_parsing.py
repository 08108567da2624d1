"""Spec §6 "Parsing": request line, versions, header fields, line endings.

Every rejection must carry `Connection: close`, be followed by a FIN within 1 s,
and nothing sent after the rejected request may be answered (assert_rejected
appends a valid request to every rejected one to check the latter).
"""

import time

import pytest

from httpkit import GOOD_REQUEST, assert_rejected, check_common, connect, req, roundtrip

H = b"Host: localhost\r\n"


def expect_root(r, method="GET"):
    assert r.status == 200, r
    if method != "HEAD":
        assert r.body == b"vial conformance", r


def assert_served_and_alive(server, raw, check=expect_root, method="GET"):
    """raw is served normally and the connection stays usable for another request."""
    with connect(server) as c:
        c.send(raw)
        r = c.read_final(method)
        check(r)
        assert not r.closes, "connection unexpectedly closed: %r" % r
        r2 = c.request(GOOD_REQUEST)
        expect_root(r2)
        return r


# --- request line ----------------------------------------------------------------

BAD_REQUEST_LINES = {
    "double-space-after-method": b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
    "double-space-before-version": b"GET /  HTTP/1.1\r\n" + H + b"\r\n",
    "trailing-space": b"GET / HTTP/1.1 \r\n" + H + b"\r\n",
    "leading-space": b" GET / HTTP/1.1\r\n" + H + b"\r\n",
    "tab-separators": b"GET\t/\tHTTP/1.1\r\n" + H + b"\r\n",
    "no-version": b"GET /\r\n" + H + b"\r\n",
    "only-target-and-version": b"/ HTTP/1.1\r\n" + H + b"\r\n",
    "method-not-token-paren": b"G(T / HTTP/1.1\r\n" + H + b"\r\n",
    "method-not-token-at": b"GET@ / HTTP/1.1\r\n" + H + b"\r\n",
    "method-control-char": b"G\x01T / HTTP/1.1\r\n" + H + b"\r\n",
    "target-not-origin-or-absolute": b"GET index.html HTTP/1.1\r\n" + H + b"\r\n",
    "target-utf8": b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n",
    "target-del": b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n",
    "target-ctl-01": b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n",
    "target-nul": b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n",
    "target-high-byte": b"GET /\xff HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk-with-GET": b"GET * HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk-with-HEAD": b"HEAD * HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk-with-POST": b"POST * HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
    "connect-authority-form": b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
    "connect-authority-form-ip": b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n",
    "absolute-form-userinfo": b"GET http://user@localhost/ HTTP/1.1\r\n" + H + b"\r\n",
    "absolute-form-userinfo-password": b"GET http://user:pw@localhost:8080/ HTTP/1.1\r\n" + H + b"\r\n",
}


@pytest.mark.parametrize("raw", list(BAD_REQUEST_LINES.values()), ids=list(BAD_REQUEST_LINES))
def test_bad_request_line_is_400(server, raw):
    assert_rejected(server, raw, 400)


def test_absolute_form_routed_by_path(server):
    r = roundtrip(server, b"GET http://localhost/ HTTP/1.1\r\n" + H + b"\r\n")
    expect_root(r)


def test_absolute_form_with_port_and_other_path(server):
    r = roundtrip(server, b"GET http://localhost:8080/methods HTTP/1.1\r\n" + H + b"\r\n")
    assert r.status == 200, r
    assert r.json() == {"method": "GET"}


def test_absolute_form_empty_path_means_root(server):
    r = roundtrip(server, b"GET http://localhost HTTP/1.1\r\n" + H + b"\r\n")
    expect_root(r)


def test_absolute_form_keeps_query(server):
    r = roundtrip(server, b"GET http://localhost/async/sleep?ms=3 HTTP/1.1\r\n" + H + b"\r\n")
    assert r.status == 200, r
    assert r.json() == {"slept_ms": 3}


def test_absolute_form_connection_stays_usable(server):
    assert_served_and_alive(server, b"GET http://127.0.0.1/ HTTP/1.1\r\n" + H + b"\r\n")


def test_options_asterisk_is_200_empty(server):
    with connect(server) as c:
        r = c.request(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
        assert r.status == 200, r
        assert r.body == b""
        assert r.header("content-length") == "0", r
        assert not r.closes
        expect_root(c.request(GOOD_REQUEST))


# --- versions --------------------------------------------------------------------

@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"])
def test_other_major_version_is_505(server, version):
    assert_rejected(server, b"GET / " + version + b"\r\n" + H + b"\r\n", 505)


@pytest.mark.parametrize("version", [
    b"HTTP/1", b"HTTP/11", b"http/1.1", b"HTTP/1.1.1", b"Http/1.1", b"HTTP/1.x",
    b"HTTP/1.10", b"HTTP1.1", b"HTTP/1.1x", b"HTTP/", b"XTTP/1.1",
])
def test_malformed_version_is_400(server, version):
    assert_rejected(server, b"GET / " + version + b"\r\n" + H + b"\r\n", 400)


@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/1.9"])
def test_other_minor_version_served_as_http11(server, version):
    # Served as HTTP/1.1: answered with an HTTP/1.1 status line and persistent by default.
    r = assert_served_and_alive(server, b"GET / " + version + b"\r\n" + H + b"\r\n")
    assert r.version == "HTTP/1.1"


def test_http10_request_answered_with_http11_status_line(server):
    with connect(server) as c:
        r = c.request(b"GET / HTTP/1.0\r\n\r\n")
        expect_root(r)
        assert r.status_line.startswith(b"HTTP/1.1 "), r.status_line


# --- empty lines before the request line ---------------------------------------------

@pytest.mark.parametrize("prefix", [b"\r\n", b"\r\n\r\n", b"\n", b"\n\n", b"\r\n\n\r\n"],
                         ids=["crlf", "2crlf", "lf", "2lf", "mixed"])
def test_empty_lines_before_request_line_ignored(server, prefix):
    assert_served_and_alive(server, prefix + GOOD_REQUEST)


def test_empty_lines_between_pipelined_requests_ignored(server):
    with connect(server) as c:
        c.send(GOOD_REQUEST + b"\r\n\r\n" + GOOD_REQUEST + b"\n" + GOOD_REQUEST)
        for _ in range(3):
            expect_root(c.read_final())


# --- header fields -------------------------------------------------------------------

BAD_FIELDS = {
    "space-before-colon": b"X-A : 1",
    "tab-before-colon": b"X-A\t: 1",
    "empty-name": b": value",
    "name-not-token-paren": b"X(A): 1",
    "name-not-token-quote": b'X"A": 1',
    "name-with-space": b"X A: 1",
    "no-colon": b"NoColonHere",
    "no-colon-with-value": b"X-A 1",
    "value-nul": b"X-A: a\x00b",
    "value-bare-cr": b"X-A: a\rb",
    "value-del": b"X-A: a\x7fb",
    "value-ctl-01": b"X-A: a\x01b",
    "value-esc": b"X-A: a\x1bb",
    "value-vt": b"X-A: a\x0bb",
    "value-ff": b"X-A: a\x0cb",
    "obs-fold-space": b"X-A: a\r\n b",
    "obs-fold-tab": b"X-A: a\r\n\tb",
    "obs-fold-lf": b"X-A: a\n  b",
}


@pytest.mark.parametrize("line", list(BAD_FIELDS.values()), ids=list(BAD_FIELDS))
def test_bad_header_field_is_400(server, line):
    raw = b"GET / HTTP/1.1\r\n" + H + line + b"\r\n\r\n"
    assert_rejected(server, raw, 400)


def test_whitespace_before_colon_in_host_is_400(server):
    assert_rejected(server, b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n", 400)


@pytest.mark.parametrize("ws", [b" ", b"\t"], ids=["space", "tab"])
def test_whitespace_at_start_of_first_field_line_is_400(server, ws):
    assert_rejected(server, b"GET / HTTP/1.1\r\n" + ws + b"Host: localhost\r\n\r\n", 400)
    assert_rejected(server, b"GET / HTTP/1.1\r\n" + ws + b"X-A: 1\r\n" + H + b"\r\n", 400)


def test_htab_allowed_in_field_value(server):
    r = roundtrip(server, b"GET /header/X-Tab HTTP/1.1\r\n" + H + b"X-Tab: \ta\tb \t\r\n\r\n")
    assert r.status == 200, r
    assert r.json() == {"name": "X-Tab", "value": "a\tb"}


def test_host_name_case_insensitive(server):
    assert_served_and_alive(server, b"GET / HTTP/1.1\r\nHOST: localhost\r\n\r\n")


def test_options_asterisk_http10(server):
    with connect(server) as c:
        r = c.request(b"OPTIONS * HTTP/1.0\r\n\r\n")
        assert r.status == 200 and r.body == b"", r


def test_field_without_ows(server):
    r = roundtrip(server, b"GET /header/x-a HTTP/1.1\r\n" + H + b"X-A:value\r\n\r\n")
    assert r.status == 200, r
    assert r.json() == {"name": "x-a", "value": "value"}


def test_http11_without_host_is_400(server):
    assert_rejected(server, b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400)


@pytest.mark.parametrize("hosts", [
    b"Host: localhost\r\nHost: localhost\r\n",
    b"Host: a\r\nHost: b\r\n",
    b"Host: a\r\nX-A: 1\r\nhost: b\r\n",
], ids=["same-twice", "different", "case-differs"])
def test_http11_with_two_host_fields_is_400(server, hosts):
    assert_rejected(server, b"GET / HTTP/1.1\r\n" + hosts + b"\r\n", 400)


def test_http11_empty_host_is_accepted(server):
    assert_served_and_alive(server, b"GET / HTTP/1.1\r\nHost:\r\n\r\n")


def test_http11_empty_host_with_space_is_accepted(server):
    assert_served_and_alive(server, b"GET / HTTP/1.1\r\nHost: \r\n\r\n")


def test_http10_without_host_is_served(server):
    with connect(server) as c:
        expect_root(c.request(b"GET / HTTP/1.0\r\n\r\n"))


# --- line endings ------------------------------------------------------------------

LF_HEADS = {
    "all-lf": b"GET / HTTP/1.1\nHost: localhost\nX-A: 1\n\n",
    "request-line-lf": b"GET / HTTP/1.1\nHost: localhost\r\n\r\n",
    "field-line-lf": b"GET / HTTP/1.1\r\nHost: localhost\n\r\n",
    "final-empty-line-lf": b"GET / HTTP/1.1\r\nHost: localhost\r\n\n",
}


@pytest.mark.parametrize("raw", list(LF_HEADS.values()), ids=list(LF_HEADS))
def test_bare_lf_accepted_in_head(server, raw):
    assert_served_and_alive(server, raw)


def test_bare_lf_header_value_read_correctly(server):
    r = roundtrip(server, b"GET /header/X-A HTTP/1.1\nHost: localhost\nX-A: v1 \n\n")
    assert r.status == 200, r
    assert r.json() == {"name": "X-A", "value": "v1"}


BARE_CR_HEADS = {
    "request-line-ends-cr": b"GET / HTTP/1.1\rHost: localhost\r\n\r\n",
    "request-line-cr-crlf": b"GET / HTTP/1.1\r\r\nHost: localhost\r\n\r\n",
    "in-target": b"GET /a\rb HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "field-ends-cr": b"GET / HTTP/1.1\r\nHost: localhost\rX-A: 1\r\n\r\n",
    "field-cr-crlf": b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\r\n\r\n",
    "final-line-cr-crlf": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\r\n",
}


@pytest.mark.parametrize("raw", list(BARE_CR_HEADS.values()), ids=list(BARE_CR_HEADS))
def test_bare_cr_in_head_is_400(server, raw):
    assert_rejected(server, raw, 400)


def test_request_sent_byte_by_byte(server):
    raw = b"GET /header/x-slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: yes\r\n\r\n"
    with connect(server) as c:
        for i in range(len(raw)):
            c.send(raw[i:i + 1])
            time.sleep(0.002)
        r = c.read_final()
        assert r.status == 200, r
        assert r.json() == {"name": "x-slow", "value": "yes"}


def test_head_and_get_on_same_connection(server):
    with connect(server) as c:
        c.send(req("HEAD", "/") + req("GET", "/"))
        h = c.read_final("HEAD")
        g = c.read_final("GET")
        expect_root(h, "HEAD")
        expect_root(g)
        assert h.body == b""
        check_common(h, "HEAD")
        assert h.header("content-length") == g.header("content-length") == "16"
