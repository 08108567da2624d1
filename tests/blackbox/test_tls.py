"""TLS (--tls-cert/--tls-key): requests over https, keep-alive, chunked bodies,
streams, websockets over wss, static files (the copy path that replaces
sendfile), ALPN, the protocol floor, session resumption, garbage and silence
before the handshake, certificate reload on SIGHUP, startup failures.

The rest of the black-box protocol suite runs over TLS with VIAL_TEST_TLS=1
(tlskit.py)."""

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests

from conftest import ServerProcess, conformance_binary
import tlskit
from test_websocket import OP_TEXT, accept_for, frame, upgrade_request

HANDSHAKE_MS = 1000


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = tlskit.make_cert(str(d))
    static = d / "static"
    static.mkdir()
    (static / "big.bin").write_bytes(os.urandom(700 * 1024 + 123))
    return d, cert, key, static


def start(logdir, cert, key, extra=(), static=None):
    env = dict(os.environ)
    if static:
        env["CONFORMANCE_STATIC_DIR"] = str(static)
    args = ["--tls-cert", cert, "--tls-key", key, "--tls-handshake-timeout-ms", str(HANDSHAKE_MS)]
    return ServerProcess(logdir, args + list(extra), env=env).start()


@pytest.fixture(scope="module")
def tsrv(tls_dir, server_logdir):
    _, cert, key, static = tls_dir
    s = start(server_logdir, cert, key, static=static)
    yield s
    rc, _ = s.stop()  # under ASan: no leak either
    assert rc == 0, s.log_text()


def url(srv, path):
    return "https://127.0.0.1:%d%s" % (srv.port, path)


def ctx_for(cert, alpn=("http/1.1",)):
    return tlskit.client_context(cert, alpn)


def tls_sock(srv, cert, alpn=("http/1.1",), timeout=5.0, ctx=None):
    s = socket.create_connection(srv.addr, timeout=timeout)
    return (ctx or ctx_for(cert, alpn)).wrap_socket(s, server_hostname="127.0.0.1")


def recv_until_closed(s, limit=5.0):
    s.settimeout(limit)
    buf = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return buf, True
        if not d:
            return buf, True
        buf += d
    return buf, False


# --- requests over https ------------------------------------------------------------------


def test_listening_line_says_https(tsrv):
    assert "listening on https://127.0.0.1:%d" % tsrv.port in tsrv.log_text()


def test_get_post_keep_alive(tsrv, tls_dir):
    cert = tls_dir[1]
    with requests.Session() as s:
        r = s.get(url(tsrv, "/hello/tls"), verify=cert, timeout=5)
        assert r.status_code == 200 and r.text == "Hello, tls!"
        body = os.urandom(100 * 1024)
        r = s.post(url(tsrv, "/echo/body"), data=body, verify=cert, timeout=5)
        assert r.status_code == 200 and r.content == body
        # one TLS connection served both: the pool holds a single connection
        pool = s.get_adapter("https://").poolmanager.connection_from_url(url(tsrv, "/"))
        assert pool.num_connections == 1, pool.num_connections


def test_pipelined_keep_alive_on_one_connection(tsrv, tls_dir):
    with tls_sock(tsrv, tls_dir[1]) as s:
        s.sendall(b"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n" * 20 + b"GET /hello/z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf, closed = recv_until_closed(s)
    assert closed
    assert buf.count(b"HTTP/1.1 200 OK\r\n") == 21 and buf.endswith(b"Hello, z!"), buf[-200:]


def test_chunked_request_body(tsrv, tls_dir):
    pieces = [os.urandom(n) for n in (1, 5000, 70000, 3)]
    r = requests.post(url(tsrv, "/echo/body"), data=iter(pieces), verify=tls_dir[1], timeout=5)
    assert r.status_code == 200 and r.content == b"".join(pieces)


def test_streamed_response(tsrv, tls_dir):
    r = requests.get(url(tsrv, "/stream?n=5&ms=20"), verify=tls_dir[1], timeout=5, stream=True)
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.raw.read() == b"".join(b"chunk %d\n" % i for i in range(1, 6))


def test_server_sent_events(tsrv, tls_dir):
    r = requests.get(url(tsrv, "/sse?n=3&ms=10"), verify=tls_dir[1], timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.count("data:") == 3, r.text


def test_static_file_copied_through_tls(tsrv, tls_dir):
    data = (tls_dir[3] / "big.bin").read_bytes()
    r = requests.get(url(tsrv, "/static/big.bin"), verify=tls_dir[1], timeout=10)
    assert r.status_code == 200 and len(r.content) == len(data)
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
    r = requests.get(url(tsrv, "/static/big.bin"), headers={"Range": "bytes=100000-400000"},
                     verify=tls_dir[1], timeout=10)
    assert r.status_code == 206 and r.content == data[100000:400001]


def test_scheme_and_external_urls_are_https(tsrv, tls_dir):
    r = requests.get(url(tsrv, "/url-for"), verify=tls_dir[1], timeout=5)
    assert r.json()["external"] == "https://127.0.0.1:%d/users/42" % tsrv.port


def test_websocket_over_wss(tsrv, tls_dir):
    with tls_sock(tsrv, tls_dir[1]) as s:
        raw, key = upgrade_request("/ws/echo")
        s.sendall(raw)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert accept_for(key).encode() in head
        rest = head.split(b"\r\n\r\n", 1)[1]
        for msg in (b"hello over wss", os.urandom(40000)):
            s.sendall(frame(OP_TEXT if msg[:5] == b"hello" else 2, msg))
            need = 2 + (0 if len(msg) < 126 else 2 if len(msg) < 65536 else 8) + len(msg)
            while len(rest) < need:
                rest += s.recv(65536)
            got, rest = rest[:need], rest[need:]
            n = got[1] & 0x7F
            off = 2 if n < 126 else 4 if n == 126 else 10
            assert got[off:] == msg


# --- the handshake --------------------------------------------------------------------------


def test_alpn_selects_http11_even_when_h2_is_offered(tsrv, tls_dir):
    with tls_sock(tsrv, tls_dir[1], alpn=("h2", "http/1.1")) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    with tls_sock(tsrv, tls_dir[1], alpn=("h2",)) as s:  # no answer, no fatal alert
        assert s.selected_alpn_protocol() is None
        s.sendall(b"GET /hello/h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf, _ = recv_until_closed(s)
        assert buf.endswith(b"Hello, h!")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls11_refused(tsrv, tls_dir):
    ctx = ctx_for(tls_dir[1])
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        tls_sock(tsrv, tls_dir[1], ctx=ctx).close()
    assert tsrv.alive()


def test_min_version_13(tls_dir, server_logdir):
    _, cert, key, _ = tls_dir
    s = start(server_logdir, cert, key, ["--tls-min-version", "1.3"])
    try:
        ctx = ctx_for(cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls_sock(s, cert, ctx=ctx).close()
        with tls_sock(s, cert) as c:
            assert c.version() == "TLSv1.3"
    finally:
        s.kill()


def test_tls12_accepted_by_default(tsrv, tls_dir):
    ctx = ctx_for(tls_dir[1])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_sock(tsrv, tls_dir[1], ctx=ctx) as s:
        assert s.version() == "TLSv1.2"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption(tsrv, tls_dir, version):
    """Tickets (1.3, 1.2) resume the session on a new connection."""
    ctx = ctx_for(tls_dir[1])
    ctx.maximum_version = version
    with tls_sock(tsrv, tls_dir[1], ctx=ctx) as s:
        s.sendall(b"GET /hello/r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        recv_until_closed(s)  # a 1.3 ticket arrives after the handshake
        sess = s.session
    assert sess is not None
    raw = socket.create_connection(tsrv.addr, timeout=5)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=sess) as s2:
        assert s2.session_reused


def test_plain_http_to_tls_port_gets_400(tsrv):
    with socket.create_connection(tsrv.addr, timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        buf, closed = recv_until_closed(s, 3.0)
    assert buf.startswith(b"HTTP/1.1 400 Bad Request\r\n"), buf
    assert buf.endswith(b"The plain HTTP request was sent to HTTPS port\n")
    assert closed
    assert tsrv.alive()


def test_garbage_before_handshake_closes(tsrv):
    t0 = time.monotonic()
    with socket.create_connection(tsrv.addr, timeout=5) as s:
        s.sendall(b"\x00\x01\x02garbage\xff" * 100)
        buf, closed = recv_until_closed(s, 3.0)
    assert closed and time.monotonic() - t0 < 1.0
    assert b"HTTP" not in buf  # at most a TLS alert
    assert tsrv.alive()


@pytest.mark.parametrize("first", [b"", b"\x16\x03\x01"])
def test_handshake_timeout(tsrv, first):
    """Silence (or half a ClientHello) is closed at --tls-handshake-timeout-ms."""
    with socket.create_connection(tsrv.addr, timeout=5) as s:
        t0 = time.monotonic()
        if first:
            s.sendall(first)
        buf, closed = recv_until_closed(s, 4.0)
        took = time.monotonic() - t0
    assert closed and buf == b""
    assert HANDSHAKE_MS / 1000 - 0.1 <= took <= HANDSHAKE_MS / 1000 + 0.6, took


# --- a half-close: close_notify after pipelined requests ----------------------------------


def test_close_notify_after_pipelined_requests_gets_every_answer(tsrv, tls_dir):
    """TLS's half-close (Python's ssl cannot send one over a socket without
    waiting for the peer's: a memory BIO does it)."""
    ctx = ctx_for(tls_dir[1])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
    s = socket.create_connection(tsrv.addr, timeout=5)

    def pump():
        if out.pending:
            s.sendall(out.read())

    def feed():
        d = s.recv(65536)
        if d:
            inc.write(d)
        else:
            inc.write_eof()
        return d

    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
                feed()
        obj.write(b"GET /async/sleep?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + b"GET /hello/n HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # close_notify queued; the server's not read yet
        pump()
        buf = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                buf += obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not feed():
                try:
                    buf += obj.read(65536)
                except ssl.SSLError:
                    pass
                break
    finally:
        s.close()
    assert buf.count(b"HTTP/1.1 200 OK\r\n") == 3 and buf.endswith(b"Hello, n!"), buf[-300:]


# --- reload and startup -------------------------------------------------------------------


def peer_der(srv):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(srv.addr, timeout=5)) as s:
        return s.getpeercert(binary_form=True)


def der_of(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_sighup_reloads_the_certificate(tmp_path, server_logdir):
    live_cert, live_key = tlskit.make_cert(str(tmp_path), "live")
    first = der_of(live_cert)
    s = start(server_logdir, live_cert, live_key)
    try:
        assert peer_der(s) == first
        old = tls_sock(s, live_cert)  # opened before the reload: keeps its session
        new_cert, new_key = tlskit.make_cert(str(tmp_path), "next")
        os.replace(new_cert, live_cert)
        os.replace(new_key, live_key)
        second = der_of(live_cert)
        assert second != first
        mark = s.log_size()
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 3
        while "reloaded" not in s.log_text(mark) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "reloaded" in s.log_text(mark), s.log_text(mark)
        assert peer_der(s) == second
        old.sendall(b"GET /hello/old HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf, _ = recv_until_closed(old)
        old.close()
        assert buf.endswith(b"Hello, old!")
        # a broken file: the reload fails, the current certificate stays
        with open(live_key, "w") as f:
            f.write("not a key\n")
        mark = s.log_size()
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 3
        while "reload failed" not in s.log_text(mark) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "reload failed" in s.log_text(mark), s.log_text(mark)
        assert s.alive() and peer_der(s) == second
    finally:
        s.kill()


def run_fail(args):
    p = subprocess.run([str(conformance_binary()), "--port", "0"] + args, capture_output=True, timeout=10)
    return p.returncode, p.stderr.decode()


def test_startup_fails_naming_the_file(tmp_path, tls_dir):
    cert, key = tls_dir[1], tls_dir[2]
    missing = str(tmp_path / "missing.pem")
    rc, err = run_fail(["--tls-cert", missing, "--tls-key", key])
    assert rc != 0 and missing in err and "No such file" in err, err
    other_cert, other_key = tlskit.make_cert(str(tmp_path), "other")
    rc, err = run_fail(["--tls-cert", cert, "--tls-key", other_key])
    assert rc != 0 and "does not match" in err and other_key in err, err
    rc, err = run_fail(["--tls-cert", key, "--tls-key", key])
    assert rc != 0 and "certificate" in err and key in err, err
    rc, err = run_fail(["--tls-cert", cert])
    assert rc != 0 and "--tls-key" in err, err
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text("x")
    os.chmod(unreadable, 0)
    if os.geteuid() != 0:  # root reads anything
        rc, err = run_fail(["--tls-cert", str(unreadable), "--tls-key", key])
        assert rc != 0 and "Permission denied" in err, err
