"""Spec §6 "Message body": Content-Length, Transfer-Encoding, chunked framing,
trailers, body consumption, Expect, Upgrade."""

import time

import pytest

from httpkit import GOOD_REQUEST, assert_rejected, chunked, connect, req, roundtrip

H = b"Host: localhost\r\n"
ECHO = b"POST /echo/body HTTP/1.1\r\n" + H


def echo_with(fields, body):
    """POST /echo/body with raw extra field lines (bytes, CRLF-terminated) and raw body bytes."""
    return ECHO + fields + b"\r\n" + body


def assert_echo(server, raw, expected):
    with connect(server) as c:
        c.send(raw)
        r = c.read_final("POST")
        assert r.status == 200, r
        assert r.header("content-type") == "application/octet-stream", r
        assert r.body == expected, r
        assert not r.closes, r
        # The connection stays usable: the body was framed exactly.
        r2 = c.request(GOOD_REQUEST)
        assert r2.status == 200 and r2.body == b"vial conformance", r2


# --- Content-Length -------------------------------------------------------------

@pytest.mark.parametrize("value", [b"+5", b"-1", b"0x5", b"5 5", b"", b"5a", b"five", b"5.0", b"\xd9\xa5"],
                         ids=["plus", "minus", "hex", "two-numbers", "empty", "trailing-letter",
                              "word", "decimal-point", "arabic-indic-digit"])
def test_content_length_not_digits_is_400(server, value):
    assert_rejected(server, echo_with(b"Content-Length: " + value + b"\r\n", b"hello"), 400)


@pytest.mark.parametrize("fields", [
    b"Content-Length: 5\r\nContent-Length: 5\r\n",
    b"Content-Length: 5, 5\r\n",
    b"Content-Length: 5,5\r\n",
], ids=["two-fields", "list", "list-no-space"])
def test_identical_content_lengths_count_as_one(server, fields):
    assert_echo(server, echo_with(fields, b"hello"), b"hello")


@pytest.mark.parametrize("fields", [
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5, 6\r\n",
    b"Content-Length: 6\r\nContent-Length: 5\r\n",
], ids=["two-fields", "list", "two-fields-reversed"])
def test_differing_content_lengths_are_400(server, fields):
    assert_rejected(server, echo_with(fields, b"hello!"), 400)


def test_content_length_with_ows(server):
    assert_echo(server, echo_with(b"Content-Length: \t 5 \t\r\n", b"hello"), b"hello")


def test_content_length_name_case_insensitive(server):
    assert_echo(server, echo_with(b"content-LENGTH: 5\r\n", b"hello"), b"hello")


def test_content_length_leading_zeros(server):
    assert_echo(server, echo_with(b"Content-Length: 0005\r\n", b"hello"), b"hello")


def test_content_length_zero(server):
    assert_echo(server, echo_with(b"Content-Length: 0\r\n", b""), b"")


def test_no_body_framing_means_empty_body(server):
    assert_echo(server, echo_with(b"", b""), b"")


def test_binary_body_echoed_exactly(server):
    body = bytes(range(256)) * 4 + b"\r\n\r\n\x00"
    assert_echo(server, req("POST", "/echo/body", body=body), body)


def test_put_body_echoed(server):
    assert_echo(server, req("PUT", "/echo/body", body=b"put body"), b"put body")


@pytest.mark.parametrize("value", [
    b"1048577", b"2000000", b"9223372036854775807", b"9223372036854775808",
    b"18446744073709551615", b"18446744073709551616", b"99999999999999999999999999999999999999",
    b"1" + b"0" * 200, b"9" * 10000,
])
def test_content_length_over_limit_is_413_at_once(server, value):
    # Only the head is sent: the 413 must come without the body being read.
    raw = echo_with(b"Content-Length: " + value + b"\r\n", b"")
    assert_rejected(server, raw, 413, send_follow=False, timeout=3.0)


@pytest.mark.parametrize("value", [b"1048577", b"18446744073709551616", b"9" * 40])
def test_content_length_over_limit_with_expect_gets_413_not_100(server, value):
    raw = echo_with(b"Content-Length: " + value + b"\r\nExpect: 100-continue\r\n", b"")
    with connect(server, timeout=3.0) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status == 413, "expected 413 without 100 Continue, got %r" % r
        assert r.closes, r
        c.assert_closed(1.0)


# --- Transfer-Encoding -------------------------------------------------------------

BODY = chunked(b"hello", b" world")


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED", b",chunked", b"chunked,",
                                   b" chunked ", b", chunked", b"chunked ,", b",,chunked,,"])
def test_chunked_accepted(server, value):
    assert_echo(server, echo_with(b"Transfer-Encoding: " + value + b"\r\n", BODY), b"hello world")


@pytest.mark.parametrize("fields", [
    b"Transfer-Encoding: gzip\r\n",
    b"Transfer-Encoding: identity\r\n",
    b"Transfer-Encoding: chunked, gzip\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
    b"Transfer-Encoding: chunked, chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked,chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 16\r\n",
    b"Content-Length: 16\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
], ids=["gzip", "identity", "chunked-not-final", "chunked-not-final-two-fields", "chunked-twice",
        "chunked-twice-two-fields", "chunked-twice-no-space",
        "te-and-cl", "cl-and-te", "cl0-and-te"])
def test_bad_transfer_encoding_is_400(server, fields):
    assert_rejected(server, echo_with(fields, BODY), 400)


@pytest.mark.parametrize("fields", [
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: deflate, chunked\r\n",
    b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
], ids=["gzip-chunked", "deflate-chunked", "gzip-chunked-two-fields"])
def test_other_coding_before_chunked_is_501(server, fields):
    assert_rejected(server, echo_with(fields, BODY), 501)


def test_transfer_encoding_in_http10_is_400(server):
    raw = b"POST /echo/body HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + BODY
    assert_rejected(server, raw, 400)


# --- chunked framing -----------------------------------------------------------------

TE = b"Transfer-Encoding: chunked\r\n"

GOOD_CHUNKED = {
    "upper-hex": (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    "lower-hex": (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    "leading-zeros": (b"0005\r\nhello\r\n0\r\n\r\n", b"hello"),
    "sixteen-digits": (b"0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n", b"hello"),
    "last-chunk-zeros": (b"5\r\nhello\r\n000\r\n\r\n", b"hello"),
    "empty-body": (b"0\r\n\r\n", b""),
    "many-small-chunks": (b"".join(b"1\r\n%c\r\n" % c for c in b"abcdefghij") + b"0\r\n\r\n", b"abcdefghij"),
    "ext-name": (b"5;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
    "ext-name-value": (b"5;ext=val\r\nhello\r\n0\r\n\r\n", b"hello"),
    "ext-quoted": (b'5;ext="quoted value; with = stuff"\r\nhello\r\n0\r\n\r\n', b"hello"),
    "ext-quoted-escape": (b'5;ext="a\\"b"\r\nhello\r\n0\r\n\r\n', b"hello"),
    "ext-several": (b'5;a;b=1;c="x"\r\nhello\r\n0\r\n\r\n', b"hello"),
    "ext-ws-before-semicolon": (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
    "ext-ws-after-semicolon": (b"5; ext\r\nhello\r\n0\r\n\r\n", b"hello"),
    "ext-ws-around-equals": (b"5;ext = val\r\nhello\r\n0\r\n\r\n", b"hello"),
    "ext-tabs": (b"5\t;\text\t=\tval\r\nhello\r\n0\r\n\r\n", b"hello"),
    "ext-on-last-chunk": (b"5\r\nhello\r\n0;done=yes\r\n\r\n", b"hello"),
    "trailer": (b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", b"hello"),
    "trailers": (b"5\r\nhello\r\n0\r\nX-T1: a\r\nX-T2: b\tc\r\nX-T3:\r\n\r\n", b"hello"),
    "data-with-crlf-inside": (b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n"),
}


@pytest.mark.parametrize("body,expected", list(GOOD_CHUNKED.values()), ids=list(GOOD_CHUNKED))
def test_chunked_body_accepted(server, body, expected):
    assert_echo(server, echo_with(TE, body), expected)


BAD_CHUNKED = {
    "empty-size": b"\r\nhello\r\n0\r\n\r\n",
    "non-hex": b"g\r\nhello\r\n0\r\n\r\n",
    "hex-then-junk": b"5g\r\nhello\r\n0\r\n\r\n",
    "0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "plus-sign": b"+5\r\nhello\r\n0\r\n\r\n",
    "minus-sign": b"-5\r\nhello\r\n0\r\n\r\n",
    "seventeen-digits": b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    "trailing-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "leading-space": b" 5\r\nhello\r\n0\r\n\r\n",
    "space-inside-size": b"5 5\r\nhello\r\n0\r\n\r\n",
    "ext-no-name": b"2;\r\nhi\r\n0\r\n\r\n",
    "ext-no-name-value": b"2;=v\r\nhi\r\n0\r\n\r\n",
    "ext-empty-value": b"2;a=\r\nhi\r\n0\r\n\r\n",
    "ext-unterminated-quote": b'2;a="x\r\nhi\r\n0\r\n\r\n',
    "ext-space-inside-name": b"2;a b\r\nhi\r\n0\r\n\r\n",
    "ext-bad-char": b"2;a@b\r\nhi\r\n0\r\n\r\n",
    "ext-trailing-space": b"2;a=b \r\nhi\r\n0\r\n\r\n",
    "ext-trailing-space-after-name": b"2;a \r\nhi\r\n0\r\n\r\n",
    "ext-quoted-then-junk": b'2;a="x"y\r\nhi\r\n0\r\n\r\n',
    "size-then-tab": b"2\t\r\nhi\r\n0\r\n\r\n",
    "data-longer-than-size": b"5\r\nhelloX\r\n0\r\n\r\n",
    "data-not-followed-by-crlf": b"5\r\nhello0\r\n\r\n",
    "bare-lf-after-size": b"5\nhello\r\n0\r\n\r\n",
    "bare-lf-after-data": b"5\r\nhello\n0\r\n\r\n",
    "bare-lf-after-last-chunk": b"5\r\nhello\r\n0\n\r\n",
    "bare-lf-final-empty-line": b"5\r\nhello\r\n0\r\n\n",
    "bare-lf-after-trailer": b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
    "bare-cr-in-size-line": b"5\r\r\nhello\r\n0\r\n\r\n",
    "cr-only-after-data": b"5\r\nhello\r0\r\n\r\n",
    "trailer-no-colon": b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n",
    "trailer-obs-fold": b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n",
    "trailer-ws-before-colon": b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n",
    "trailer-nul": b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n",
    "trailer-del": b"5\r\nhello\r\n0\r\nX-T: a\x7fb\r\n\r\n",
    "trailer-bare-cr": b"5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n",
    "trailer-empty-name": b"5\r\nhello\r\n0\r\n: a\r\n\r\n",
}


@pytest.mark.parametrize("body", list(BAD_CHUNKED.values()), ids=list(BAD_CHUNKED))
def test_bad_chunked_framing_is_400(server, body):
    assert_rejected(server, echo_with(TE, body), 400)


@pytest.mark.parametrize("size_line", [b"ffffffffffffffff", b"FFFFFFFFFFFFFFFF", b"100001", b"8000000000000000"])
def test_single_chunk_over_limit_is_413_at_once(server, size_line):
    # Only the chunk-size line is sent: the 413 must not wait for the data.
    assert_rejected(server, echo_with(TE, size_line + b"\r\n"), 413, send_follow=False, timeout=3.0)


# --- bodies sent to routes that do not read them ------------------------------------

def _pipeline(server, first, first_method, check_first):
    with connect(server) as c:
        c.send(first + req("GET", "/methods"))
        r1 = c.read_final(first_method)
        check_first(r1)
        assert not r1.closes, r1
        r2 = c.read_final()
        assert r2.status == 200 and r2.json() == {"method": "GET"}, r2


def test_post_body_to_methods_is_consumed(server):
    def check(r):
        assert r.status == 200 and r.json() == {"method": "POST"}, r
    _pipeline(server, req("POST", "/methods", body=b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n"), "POST", check)


def test_chunked_post_body_to_methods_is_consumed(server):
    def check(r):
        assert r.status == 200 and r.json() == {"method": "POST"}, r
    body = chunked(b"GET /evil HTTP/1.1\r\n", b"Host: x\r\n\r\n", trailers=b"X-T: 1\r\n")
    _pipeline(server, req("POST", "/methods", headers=[("Transfer-Encoding", "chunked")], body=body,
                          content_length=None), "POST", check)


def test_get_with_body_is_consumed(server):
    def check(r):
        assert r.status == 200 and r.body == b"vial conformance", r
    _pipeline(server, req("GET", "/", body=b"GET /x HTTP/1.1\r\n\r\n"), "GET", check)


def test_body_to_405_is_consumed(server):
    def check(r):
        assert r.status == 405, r
    _pipeline(server, req("POST", "/", body=b"hello world"), "POST", check)


def test_body_to_404_is_consumed(server):
    def check(r):
        assert r.status == 404, r
    _pipeline(server, req("POST", "/no/such/route", body=b"hello world"), "POST", check)


def test_large_body_to_route_that_ignores_it_is_consumed(server):
    def check(r):
        assert r.status == 200 and r.json() == {"method": "POST"}, r
    _pipeline(server, req("POST", "/methods", body=b"x" * 200000), "POST", check)


# --- Expect ------------------------------------------------------------------------

@pytest.mark.parametrize("value", [b"100-continue", b"100-Continue", b"100-CONTINUE"])
def test_expect_100_continue_before_body(server, value):
    with connect(server, timeout=3.0) as c:
        c.send(echo_with(b"Content-Length: 5\r\nExpect: " + value + b"\r\n", b""))
        interim = c.read_response(timeout=3.0)
        assert interim.status_line == b"HTTP/1.1 100 Continue", interim
        assert interim.body == b""
        c.send(b"hello")
        r = c.read_final("POST")
        assert r.status == 200 and r.body == b"hello", r
        assert not r.closes
        r2 = c.request(GOOD_REQUEST)
        assert r2.status == 200 and r2.body == b"vial conformance", r2


def test_expect_100_continue_chunked(server):
    with connect(server, timeout=3.0) as c:
        c.send(echo_with(TE + b"Expect: 100-continue\r\n", b""))
        interim = c.read_response(timeout=3.0)
        assert interim.status_line == b"HTTP/1.1 100 Continue", interim
        c.send(chunked(b"abc", b"def"))
        r = c.read_final("POST")
        assert r.status == 200 and r.body == b"abcdef", r


@pytest.mark.parametrize("value", [b"foo", b"200-ok", b"100-continue-please"])
def test_other_expectation_is_417(server, value):
    assert_rejected(server, echo_with(b"Content-Length: 5\r\nExpect: " + value + b"\r\n", b"hello"), 417)


# --- Upgrade -----------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    b"Upgrade: h2c\r\n",
    b"Connection: upgrade\r\nUpgrade: foo/1\r\n",
], ids=["h2c", "h2c-no-connection", "foo"])
def test_non_websocket_upgrade_ignored(server, fields):
    with connect(server) as c:
        r = c.request(b"GET / HTTP/1.1\r\n" + H + fields + b"\r\n")
        assert r.status == 200 and r.body == b"vial conformance", r
        assert not r.has("upgrade"), r
        assert not r.closes, r
        # Still HTTP/1.1 on this connection.
        r2 = c.request(GOOD_REQUEST)
        assert r2.status == 200 and r2.body == b"vial conformance", r2


def test_h2c_upgrade_with_body_ignored(server):
    fields = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    assert_echo(server, echo_with(fields + b"Content-Length: 4\r\n", b"data"), b"data")


def test_body_that_looks_like_a_request_is_echoed(server):
    # A request whose body happens to look like a request must not be parsed as one.
    body = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    r = roundtrip(server, req("POST", "/echo/body", body=body))
    assert r.status == 200 and r.body == body, r


def test_chunked_body_sent_byte_by_byte(server):
    body = chunked(b"hello", b" ", b"world", trailers=b"X-T: 1\r\n")
    with connect(server, timeout=10) as c:
        c.send(echo_with(TE, b""))
        for i in range(len(body)):
            c.send(body[i:i + 1])
            time.sleep(0.002)
        r = c.read_final("POST")
        assert r.status == 200 and r.body == b"hello world", r
        r2 = c.request(GOOD_REQUEST)
        assert r2.status == 200 and r2.body == b"vial conformance", r2


def test_chunk_split_across_sends_at_crlf(server):
    # CR and LF of the framing arrive in separate packets: not a bare CR/LF.
    with connect(server, timeout=10) as c:
        c.send(echo_with(TE, b"5\r"))
        time.sleep(0.05)
        c.send(b"\nhello\r")
        time.sleep(0.05)
        c.send(b"\n0\r")
        time.sleep(0.05)
        c.send(b"\n\r")
        time.sleep(0.05)
        c.send(b"\n")
        r = c.read_final("POST")
        assert r.status == 200 and r.body == b"hello", r


def test_expect_100_continue_to_route_ignoring_body(server):
    with connect(server, timeout=3.0) as c:
        c.send(req("POST", "/methods", headers=[("Expect", "100-continue")], content_length=7))
        first = c.read_response(timeout=3.0)
        assert first.status_line == b"HTTP/1.1 100 Continue", first
        c.send(b"ignored")
        r = c.read_final("POST")
        assert r.status == 200 and r.json() == {"method": "POST"}, r
        assert not r.closes, r
        r2 = c.request(GOOD_REQUEST)
        assert r2.status == 200 and r2.body == b"vial conformance", r2
