"""bench/loadgen (the constant-rate load generator of bench/latency.sh) kept
honest: against a small scripted server whose answers it must parse (chunked
bodies cut anywhere, Content-Length bodies in pieces, 404s, Connection:
close), against a slow server where latency must count the wait for a
connection (no coordinated omission), and against the hello example at
200 req/s for 1 s.
"""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ServerProcess, conformance_binary


def loadgen_binary():
    return conformance_binary().parent.parent / "bench" / "loadgen"


def hello_binary():
    return conformance_binary().parent / "hello"


def run_loadgen(url, *args, timeout=30):
    binary = loadgen_binary()
    if not binary.exists():
        pytest.skip("%s not built" % binary)
    p = subprocess.run([str(binary), *args, url], capture_output=True, text=True, timeout=timeout)
    out = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return p.returncode, out, p.stderr


class ScriptedServer:
    """Answers the k-th request (over all connections) with ANSWERS[k % 4],
    each sent in several pieces; DELAY seconds before each answer."""

    BODY = b"x" * 3000

    def __init__(self, delay=0.0, drop=None):
        self.delay = delay
        self.drop = drop  # "second": close without answering each connection's second request; "all"
        self.count = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = []
        t = threading.Thread(target=self.accept_loop, daemon=True)
        t.start()

    def answer(self, k):
        """The pieces of answer k: bytes sent with a pause in between."""
        kind = k % 4
        if self.delay:  # the latency test wants plain answers in one piece
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
        if kind == 0:  # chunked, with an extension, a trailer, cut mid-size and mid-data
            return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1",
                    b"a;ext=1\r\n" + self.BODY[:13], self.BODY[13:26] + b"\r\n",
                    b"0\r\nX-Trailer: 1\r\n", b"\r\n"]
        if kind == 1:  # Content-Length, head and body in pieces
            return [b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 3000\r\n\r\n" + self.BODY[:1000],
                    self.BODY[1000:]]
        if kind == 2:
            return [b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!"]
        return [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"]

    def accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the pieces go as cut
            t = threading.Thread(target=self.serve, args=(c,), daemon=True)
            t.start()

    def serve(self, c):
        buf = b""
        served = 0
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        data = c.recv(4096)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                buf = buf.split(b"\r\n\r\n", 1)[1]
                served += 1
                if self.drop == "all" or (self.drop == "second" and served == 2):
                    return  # as a server closing an idle connection while the request travels
                with self.lock:
                    k = self.count
                    self.count += 1
                if self.delay:
                    time.sleep(self.delay)
                pieces = self.answer(k)
                try:
                    for i, p in enumerate(pieces):
                        c.sendall(p)
                        if i + 1 < len(pieces):
                            time.sleep(0.002)
                except OSError:
                    return
                if k % 4 == 3 and not self.delay:
                    return

    def close(self):
        self.stopping = True
        self.sock.close()


def against_scripted(*args, **server):
    """loadgen with ARGS against a ScriptedServer(**SERVER) on its own port."""
    srv = ScriptedServer(**server)
    try:
        return run_loadgen("http://127.0.0.1:%d/x" % srv.port, *args)
    finally:
        srv.close()


def test_histogram_selftest():
    binary = loadgen_binary()
    if not binary.exists():
        pytest.skip("%s not built" % binary)
    p = subprocess.run([str(binary), "--selftest"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == "selftest ok\n", p.stderr


def test_parses_every_kind_of_answer():
    rc, out, err = against_scripted("-c", "8", "-r", "200", "-d", "1")
    assert rc == 0, err
    assert out["scheduled"] == "200" and out["completed"] == "200", out
    assert out["errors"] == "0" and out["timeouts"] == "0", out
    assert out["non2xx"] == "50", out  # every fourth answer is a 404
    assert out["status"] == "1xx 0 2xx 150 3xx 0 4xx 50 5xx 0", out
    assert int(out["reconnects"]) == 50, out  # after each Connection: close
    # Half the answers (chunked, Content-Length) come in pieces 2 ms apart,
    # the other half in one piece: p90 is one of the former (at least 2 ms),
    # and the median far below a second.
    assert 2000 <= int(out["p90_us"]), out
    assert int(out["p50_us"]) < 200000, out


def test_a_request_lost_to_a_closing_connection_is_sent_again_once():
    rc, out, err = against_scripted("-c", "4", "-r", "100", "-d", "1", delay=0.001, drop="second")
    assert rc == 0, err
    assert out["completed"] == "100" and out["errors"] == "0", out
    assert int(out["retries"]) >= 4, out  # each connection's second request, at least
    rc, out, err = against_scripted("-c", "4", "-r", "20", "-d", "1", delay=0.001, drop="all")
    assert out["completed"] == "0" and out["errors"] == "20" and out["retries"] == "20", out


def test_latency_counts_the_wait_for_a_connection():
    # One connection, 50 ms per answer, 40 requests due within a second: the
    # server answers 20 a second at best, so the last request waits a second
    # or more before it is even sent, and the median one half a second. A
    # closed-loop client would report ~50 ms for all.
    rc, out, err = against_scripted("-c", "1", "-r", "40", "-d", "1", delay=0.05)
    assert rc == 0, err
    assert out["completed"] == "40", out
    assert 300000 < int(out["p50_us"]) < 5000000, out
    assert 800000 < int(out["max_us"]) < 8000000, out
    assert int(out["max_backlog"]) >= 10, out
    assert int(out["p50_us"]) <= int(out["p90_us"]) <= int(out["p99_us"]) <= int(out["p99.9_us"]) <= int(out["max_us"])


def test_hard_timeout_bounds_a_silent_server():
    # A server that accepts and never answers: the run ends at -d + -T.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    try:
        t0 = time.monotonic()
        rc, out, err = run_loadgen("http://127.0.0.1:%d/" % port, "-c", "2", "-r", "10", "-d", "1", "-T", "1")
        took = time.monotonic() - t0
    finally:
        sock.close()
    assert took < 5, took
    assert rc == 1 and out["completed"] == "0" and out["timeouts"] == "10", out


@pytest.fixture
def hello(server_logdir):
    srv = ServerProcess(server_logdir, ["--threads", "1"], binary=hello_binary()).start()
    yield srv
    srv.stop()


def test_against_hello(hello):
    host, port = hello.addr
    rc, out, err = run_loadgen("http://%s:%d/hello/x" % (host, port), "-c", "4", "-r", "200", "-d", "1",
                               "--pid", str(hello.proc.pid))
    assert rc == 0, err
    assert out["scheduled"] == "200" and out["completed"] == "200", out
    assert out["non2xx"] == "0" and out["errors"] == "0" and out["timeouts"] == "0", out
    p = [int(out[k]) for k in ("p50_us", "p90_us", "p99_us", "p99.9_us", "max_us")]
    assert 0 < p[0] <= p[1] <= p[2] <= p[3] <= p[4] < 5000000, out
    assert 150 < float(out["achieved"]) < 250, out
    assert "server_cpu_us_per_req" in out, out
