"""Spec §8 limits at their exact boundaries, plus open connections."""

import hashlib
import json
import re
import selectors
import socket
import ssl
import time

import pytest

from httpkit import GOOD_REQUEST, assert_rejected, chunked, connect, req
import tlskit

MAX_TARGET = 8192
MAX_HEADER_BYTES = 16384
MAX_FIELDS = 100
MAX_BODY = 1048576


# --- request-target -----------------------------------------------------------------

def _target(n):
    t = "/?pad=" + "a" * (n - len("/?pad="))
    assert len(t) == n
    return t


def test_target_of_8192_bytes_served(server):
    with connect(server) as c:
        r = c.request(req("GET", _target(MAX_TARGET)))
        assert r.status == 200 and r.body == b"vial conformance", r
        r2 = c.request(GOOD_REQUEST)
        assert r2.status == 200


def test_target_of_8192_bytes_path_routed(server):
    # A long path is served normally too (no route: 404, not 414).
    t = "/" + "p" * (MAX_TARGET - 1)
    with connect(server) as c:
        r = c.request(req("GET", t))
        assert r.status == 404, r
        assert not r.closes


def test_target_of_8193_bytes_is_414(server):
    assert_rejected(server, req("GET", _target(MAX_TARGET + 1)), 414)


def test_absolute_form_target_of_8192_bytes_served(server):
    prefix = "http://localhost/?pad="
    t = prefix + "a" * (MAX_TARGET - len(prefix))
    assert len(t) == MAX_TARGET
    with connect(server) as c:
        r = c.request(req("GET", t))
        assert r.status == 200 and r.body == b"vial conformance", r


def test_absolute_form_target_of_8193_bytes_is_414(server):
    prefix = "http://localhost/?pad="
    t = prefix + "a" * (MAX_TARGET + 1 - len(prefix))
    assert_rejected(server, req("GET", t), 414)


def test_target_way_over_limit_is_414(server):
    assert_rejected(server, req("GET", _target(100000)), 414)


def test_target_over_limit_without_line_end_is_414(server):
    # The server must not wait for the end of the request line to reject it.
    raw = b"GET /" + b"a" * (MAX_TARGET + 100)
    assert_rejected(server, raw, 414, send_follow=False, timeout=3.0)


# --- header section ------------------------------------------------------------------

def _head_with_field_bytes(total, eol=b"\r\n"):
    """A GET whose field lines (with line endings) are exactly `total` bytes."""
    host = b"Host: localhost" + eol
    prefix = b"X-Pad: "
    k = total - len(host) - len(prefix) - len(eol)
    assert k > 0
    fields = host + prefix + b"a" * k + eol
    assert len(fields) == total
    return b"GET /header/x-pad HTTP/1.1" + eol + fields + eol, k


def test_header_section_of_16384_bytes_served(server):
    raw, k = _head_with_field_bytes(MAX_HEADER_BYTES)
    with connect(server) as c:
        r = c.request(raw)
        assert r.status == 200, r
        assert r.json() == {"name": "x-pad", "value": "a" * k}
        assert not r.closes


def test_header_section_of_16385_bytes_is_431(server):
    raw, _ = _head_with_field_bytes(MAX_HEADER_BYTES + 1)
    assert_rejected(server, raw, 431)


def test_header_section_limit_counts_bare_lf_as_one_byte(server):
    raw, _ = _head_with_field_bytes(MAX_HEADER_BYTES, eol=b"\n")
    with connect(server) as c:
        r = c.request(raw)
        assert r.status == 200, r


def test_header_section_of_16385_bytes_bare_lf_is_431(server):
    raw, _ = _head_with_field_bytes(MAX_HEADER_BYTES + 1, eol=b"\n")
    assert_rejected(server, raw, 431)


def test_header_section_16384_in_many_fields_served(server):
    # 80 fields summing to exactly 16384 bytes.
    host = b"Host: localhost\r\n"
    lines = [host]
    remaining = MAX_HEADER_BYTES - len(host)
    for i in range(79):
        name = b"X-F%02d: " % i
        size = remaining // (79 - i)
        lines.append(name + b"v" * (size - len(name) - 2) + b"\r\n")
        remaining -= size
    fields = b"".join(lines)
    assert len(fields) == MAX_HEADER_BYTES and len(lines) == 80
    with connect(server) as c:
        r = c.request(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
        assert r.status == 200 and r.body == b"vial conformance", r


def test_header_section_way_over_limit_without_end_is_431(server):
    raw = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 40000
    assert_rejected(server, raw, 431, send_follow=False, timeout=3.0)


# --- number of fields ---------------------------------------------------------------

def _head_with_fields(n):
    lines = [b"Host: localhost\r\n"] + [b"X-F%d: %d\r\n" % (i, i) for i in range(1, n)]
    assert len(lines) == n
    return b"GET /header/x-f%d HTTP/1.1\r\n" % (n - 1) + b"".join(lines) + b"\r\n"


def test_100_fields_served(server):
    with connect(server) as c:
        r = c.request(_head_with_fields(MAX_FIELDS))
        assert r.status == 200, r
        assert r.json() == {"name": "x-f99", "value": "99"}


def test_101_fields_is_431(server):
    assert_rejected(server, _head_with_fields(MAX_FIELDS + 1), 431)


def test_101_fields_with_repeated_names_is_431(server):
    # Repeated fields count individually (100 X-Same lines + Host = 101).
    raw = b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X-Same: 1\r\n" * MAX_FIELDS + b"\r\n"
    assert_rejected(server, raw, 431)


def test_1000_fields_is_431(server):
    raw = b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"A: 1\r\n" * 1000 + b"\r\n"
    assert_rejected(server, raw, 431)


# --- request body -------------------------------------------------------------------

def _body(n):
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


def _echo_ok(c, body, timeout=20.0):
    r = c.read_final("POST", timeout=timeout)
    assert r.status == 200, r
    assert len(r.body) == len(body), "echoed %d bytes, sent %d" % (len(r.body), len(body))
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(body).digest(), "echoed body differs"
    return r


def test_body_of_1048576_bytes_content_length_served(server):
    body = _body(MAX_BODY)
    with connect(server, timeout=20) as c:
        c.send(req("POST", "/echo/body", body=body))
        _echo_ok(c, body)
        assert c.request(GOOD_REQUEST).status == 200


def test_body_of_1048576_bytes_with_expect_continue(server):
    body = _body(MAX_BODY)
    with connect(server, timeout=20) as c:
        c.send(req("POST", "/echo/body", headers=[("Expect", "100-continue")], content_length=MAX_BODY))
        interim = c.read_response(timeout=3)
        assert interim.status_line == b"HTTP/1.1 100 Continue", interim
        c.send(body)
        _echo_ok(c, body)


def test_body_of_1048577_bytes_content_length_is_413(server):
    # The 413 is decided from the head; the body we still push may be discarded or reset.
    body = _body(MAX_BODY + 1)
    with connect(server, timeout=10) as c:
        c.send(req("POST", "/echo/body", body=body) + GOOD_REQUEST, ignore_errors=True)
        r = c.read_response(timeout=5)
        assert r.status == 413, r
        assert r.closes, r
        c.assert_closed(1.0)


def test_body_of_1048576_bytes_chunked_served(server):
    body = _body(MAX_BODY)
    pieces = [body[i:i + 100000] for i in range(0, len(body), 100000)]
    with connect(server, timeout=20) as c:
        c.send(req("POST", "/echo/body", headers=[("Transfer-Encoding", "chunked")],
                   body=chunked(*pieces), content_length=None))
        _echo_ok(c, body)
        assert c.request(GOOD_REQUEST).status == 200


def test_body_of_1048576_bytes_single_chunk_served(server):
    body = _body(MAX_BODY)
    with connect(server, timeout=20) as c:
        c.send(req("POST", "/echo/body", headers=[("Transfer-Encoding", "chunked")],
                   body=chunked(body), content_length=None))
        _echo_ok(c, body)


@pytest.mark.parametrize("split", ["one-extra-chunk", "single-chunk", "many-chunks"])
def test_body_of_1048577_bytes_chunked_is_413(server, split):
    body = _body(MAX_BODY + 1)
    if split == "one-extra-chunk":
        pieces = [body[:MAX_BODY], body[MAX_BODY:]]
    elif split == "single-chunk":
        pieces = [body]
    else:
        pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    raw = req("POST", "/echo/body", headers=[("Transfer-Encoding", "chunked")],
              body=chunked(*pieces), content_length=None)
    with connect(server, timeout=10) as c:
        c.send(raw + GOOD_REQUEST, ignore_errors=True)
        r = c.read_response(timeout=5)
        assert r.status == 413, r
        assert r.closes, r
        c.assert_closed(1.0)


# --- open connections ------------------------------------------------------------------

def _complete(buf):
    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:[ \t]*([0-9]+)", head)
    return bool(m) and len(body) >= int(m.group(1))


def _ok(buf):
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    if not (head.startswith(b"HTTP/1.1 200 ") and _complete(buf)):
        return False
    try:
        return json.loads(body) == {"slept_ms": 2000}
    except ValueError:
        return False


@pytest.mark.slow
def test_1000_connections_open_at_once(server):
    """1000 connections, each with an in-flight 2 s request at the same time: all answered."""
    n = 1000
    socks = []
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + 40
    try:
        raw = req("GET", "/async/sleep?ms=2000")
        for _ in range(n):
            s = tlskit.connect(server, 10) if tlskit.ENABLED else socket.create_connection(server, timeout=10)
            s.sendall(raw)
            socks.append(s)
        t_all_sent = time.monotonic()
        bufs = [bytearray() for _ in range(n)]
        done = set()
        for i, s in enumerate(socks):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        while len(done) < n and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.01, deadline - time.monotonic())):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                    continue
                except ConnectionResetError:
                    data = b""
                bufs[i] += data
                if not data or _complete(bufs[i]):
                    done.add(i)
                    sel.unregister(key.fileobj)
        t_done = time.monotonic()
        missing = [i for i in range(n) if i not in done]
        assert not missing, "%d of %d connections got no response in time (e.g. #%d got %r)" % (
            len(missing), n, missing[0], bytes(bufs[missing[0]])[:200])
        bad = [(i, bytes(b)[:200]) for i, b in enumerate(bufs) if not _ok(b)]
        assert not bad, "%d bad responses, e.g. %r" % (len(bad), bad[:3])
        # They ran concurrently: answered in about 2 s after the last was sent.
        assert t_done - t_all_sent < 15, t_done - t_all_sent
    finally:
        sel.close()
        for s in socks:
            s.close()


# --- limits are per request, also deep inside a pipeline ----------------------------------

def test_limits_count_per_request_in_a_pipeline(server):
    big_head, k = _head_with_field_bytes(MAX_HEADER_BYTES)
    parts = [GOOD_REQUEST] * 5 + [big_head] + [req("GET", _target(MAX_TARGET))] + \
        [_head_with_fields(MAX_FIELDS)] + [GOOD_REQUEST]
    with connect(server, timeout=10) as c:
        c.send(b"".join(parts))
        for _ in range(5):
            assert c.read_final().body == b"vial conformance"
        r = c.read_final()
        assert r.status == 200 and r.json() == {"name": "x-pad", "value": "a" * k}, r
        r = c.read_final()
        assert r.status == 200 and r.body == b"vial conformance", r
        r = c.read_final()
        assert r.status == 200 and r.json() == {"name": "x-f99", "value": "99"}, r
        assert c.read_final().body == b"vial conformance"


def test_over_limit_deep_in_pipeline_rejected_in_order(server):
    raw, _ = _head_with_field_bytes(MAX_HEADER_BYTES + 1)
    with connect(server, timeout=10) as c:
        c.send(GOOD_REQUEST * 3 + raw + GOOD_REQUEST)
        for _ in range(3):
            assert c.read_final().body == b"vial conformance"
        r = c.read_response()
        assert r.status == 431 and r.closes, r
        c.assert_closed(1.0)


def test_pipeline_of_200_requests_with_1k_headers(server):
    pad = "p" * 1000
    with connect(server, timeout=20) as c:
        c.send(b"".join(req("GET", "/header/x-seq", headers=[("X-Pad", pad), ("X-Seq", i)]) for i in range(200)))
        for i in range(200):
            r = c.read_final(timeout=20)
            assert r.status == 200 and r.json() == {"name": "x-seq", "value": str(i)}, (i, r)
