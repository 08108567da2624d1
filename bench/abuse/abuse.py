#!/usr/bin/python3
"""Attacks a vial server as a hostile client would and prints what it held.

    /usr/bin/python3 bench/abuse/abuse.py [--bin build/examples/conformance]
                                          [--only NAME[,NAME...]] [--quick]

Each attack starts its own conformance server (one loop thread, so a held
loop shows in the latency of plain requests), runs for a bounded time, and
reports one row: what the issue expects, and what was observed — the server's
RSS before / peak / after, the longest time a plain request on the same loop
waited meanwhile (the loop hold), and the attack's own result. Standard
library only; loopback only; every loop is bounded in count and time. The
process table is touched only through the PIDs this script started.

--quick shrinks every attack (fewer connections, shorter phases): the form the
test suite could run. The figures the issue asks for come from a full run.
"""

import argparse
import base64
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# --- the server under attack ---------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, nofile=None, threads=1):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="vial-abuse-", suffix=".log", delete=False)
        pre = None
        if nofile:
            def pre():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, preexec_fn=pre)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("server did not start")

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def nfds(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.proc.pid))
        except OSError:
            return -1

    def log_lines(self):
        try:
            with open(self.log.name, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def stop(self, sig=signal.SIGTERM, limit=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


class RssSampler(threading.Thread):
    """Peak RSS of the server, sampled every 20 ms until stopped."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv, self.peak, self.halt = srv, srv.rss_kib(), threading.Event()

    def run(self):
        while not self.halt.wait(0.02):
            self.peak = max(self.peak, self.srv.rss_kib())

    def stop(self):
        self.halt.set()
        self.join()
        return self.peak


class Prober(threading.Thread):
    """Plain keep-alive GETs on a fresh connection every 10 ms; records each
    request's latency (a timeout counts as the timeout)."""

    def __init__(self, port, path="/hello/probe", timeout=5.0):
        super().__init__(daemon=True)
        self.port, self.path, self.timeout = port, path, timeout
        self.lat, self.failures, self.halt = [], 0, threading.Event()

    def run(self):
        sock = None
        req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % self.path).encode()
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
                sock.sendall(req)
                read_response(sock)
                self.lat.append(time.monotonic() - t0)
            except OSError:
                self.failures += 1
                self.lat.append(time.monotonic() - t0)
                if sock:
                    sock.close()
                sock = None
            self.halt.wait(0.01)
        if sock:
            sock.close()

    def stop(self):
        self.halt.set()
        self.join()
        lat = sorted(self.lat) or [0.0]
        return {"n": len(self.lat), "max_ms": lat[-1] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
                "failures": self.failures}


def read_response(sock):
    """Reads one Content-Length response; returns (status, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return status, rest[:length]


def get(port, path, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        return read_response(s)


# --- websocket client bits ------------------------------------------------------------------


def ws_connect(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        buf += chunk
    if b" 101 " not in buf.split(b"\r\n", 1)[0]:
        raise ConnectionError("no 101: %r" % buf[:80])
    return s, buf.partition(b"\r\n\r\n")[2]


def ws_frame(payload, opcode=1):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class WsCounter(threading.Thread):
    """Reads a websocket and counts the bytes of frames received (a member
    that keeps up)."""

    def __init__(self, sock, pending=b""):
        super().__init__(daemon=True)
        self.sock, self.bytes, self.closed, self.halt = sock, len(pending), False, threading.Event()
        self.sock.settimeout(0.2)

    def run(self):
        while not self.halt.is_set():
            try:
                chunk = self.sock.recv(262144)
            except socket.timeout:
                continue
            except OSError:
                self.closed = True
                return
            if not chunk:
                self.closed = True
                return
            self.bytes += len(chunk)

    def stop(self):
        self.halt.set()
        self.join()


# --- the attacks ---------------------------------------------------------------------------
# Each returns a dict: expected, observed (text), and the figures.


def attack_ws_chat_flood(binary, q):
    """A chat member floods 1 KiB frames and never reads; another member reads."""
    secs = 2 if q else 5
    srv = Server(binary)
    try:
        rss0 = srv.rss_kib()
        good, pend = ws_connect(srv.port, "/ws/chat")
        reader = WsCounter(good, pend)
        reader.start()
        flood, _ = ws_connect(srv.port, "/ws/chat")
        flood.settimeout(0.5)
        sampler, prober = RssSampler(srv), Prober(srv.port)
        sampler.start()
        prober.start()
        frame = ws_frame(b"x" * 1024) * 64
        sent, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < secs:
            try:
                sent += flood.send(frame)
            except socket.timeout:
                continue
            except OSError:
                break
        probe = prober.stop()
        reader.stop()
        peak = sampler.stop()
        flood.close()
        good.close()
        time.sleep(0.5)
        return row("ws-chat-flood", "RSS +<=64 MiB, loop hold <=50 ms, reader keeps receiving",
                   rss0, peak, srv.rss_kib(), probe,
                   "flooder sent %.1f MiB; reader got %.1f MiB%s" %
                   (sent / 2**20, reader.bytes / 2**20, " (dropped)" if reader.closed else ""))
    finally:
        srv.stop(signal.SIGKILL)


def attack_ws_echo_flood(binary, q):
    """An echo client that sends as fast as it can and reads its echoes."""
    secs = 2 if q else 5
    srv = Server(binary)
    try:
        rss0 = srv.rss_kib()
        s, pend = ws_connect(srv.port, "/ws/echo")
        reader = WsCounter(s, pend)
        reader.start()
        sampler, prober = RssSampler(srv), Prober(srv.port)
        sampler.start()
        prober.start()
        frame = ws_frame(b"y" * 1024) * 64
        sent, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < secs:
            try:
                sent += s.send(frame)
            except OSError:
                break
        probe = prober.stop()
        reader.stop()
        peak = sampler.stop()
        s.close()
        return row("ws-echo-flood", "loop hold <=50 ms", rss0, peak, srv.rss_kib(), probe,
                   "sent %.1f MiB, echoed %.1f MiB" % (sent / 2**20, reader.bytes / 2**20))
    finally:
        srv.stop(signal.SIGKILL)


def attack_emfile(binary, q):
    """Descriptors run out (ulimit -n 512), then free up: accepting must resume."""
    n = 700 if q else 1500
    srv = Server(binary, nofile=512)
    try:
        rss0 = srv.rss_kib()
        socks = []
        for _ in range(n):
            try:
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", srv.port))
                socks.append(c)
            except OSError:
                break
        time.sleep(1.0)
        fds_full = srv.nfds()
        for c in socks:
            c.close()
        t_free = time.monotonic()
        resumed = None
        while time.monotonic() - t_free < 5:
            try:
                if get(srv.port, "/hello/x", timeout=0.5)[0] == 200:
                    resumed = time.monotonic() - t_free
                    break
            except OSError:
                pass
        lines = [l for l in srv.log_lines() if "accept" in l.lower()]
        return row("emfile", "accepting resumes <=1 s after fds free; log throttled",
                   rss0, None, srv.rss_kib(), None,
                   "%d conns opened, server fds %d; fresh GET %s; %d accept log lines" %
                   (len(socks), fds_full, "after %.2f s" % resumed if resumed is not None else "FAILED (5 s)",
                    len(lines)))
    finally:
        srv.stop(signal.SIGKILL)


def attack_trickle(binary, q):
    """Uploads that send one body byte every 3 s (an inactivity timer never fires)."""
    n, secs = (30, 14) if q else (300, 40)
    srv = Server(binary)
    try:
        rss0 = srv.rss_kib()
        socks = []
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            c.sendall(b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
            socks.append(c)
        sampler = RssSampler(srv)
        sampler.start()
        t0, alive = time.monotonic(), list(socks)
        while alive and time.monotonic() - t0 < secs:
            still = []
            for c in alive:
                try:
                    c.send(b"a")
                    still.append(c)
                except OSError:
                    c.close()
            alive = still
            time.sleep(3)
        # a closed-by-server socket shows on the next send or as EOF on recv
        closed = 0
        for c in alive:
            c.setblocking(False)
            try:
                data = c.recv(4096)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    closed += 1  # refused (408, then closed) or closed outright
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        closed += n - len(alive)
        peak = sampler.stop()
        for c in socks:
            c.close()
        return row("trickle", "uploads under a minimum rate get 408 and are closed",
                   rss0, peak, srv.rss_kib(), None,
                   "%d of %d trickling uploads closed by the server within %d s" % (closed, n, secs))
    finally:
        srv.stop(signal.SIGKILL)


def attack_upload_hold(binary, q):
    """Many uploads hold almost a whole max_body each, then leave."""
    n = 100 if q else 1000
    srv = Server(binary)
    try:
        rss0 = srv.rss_kib()
        sampler = RssSampler(srv)
        sampler.start()
        socks, body = [], b"b" * (1048576 - 1)
        for _ in range(n):
            try:
                c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                c.sendall(b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
                c.settimeout(0.05)
                try:
                    c.sendall(body)
                except OSError:
                    pass
                socks.append(c)
            except OSError:
                break
        time.sleep(1.0)
        peak = sampler.stop()
        for c in socks:
            c.close()
        time.sleep(1.5)
        return row("upload-hold", "body memory bounded by a server-wide budget; returned after",
                   rss0, peak, srv.rss_kib(), None, "%d uploads of 1 MiB - 1 byte held, then closed" % len(socks))
    finally:
        srv.stop(signal.SIGKILL)


def attack_reset_before_handler(binary, q):
    """Requests whose client resets at once: the handler must be cancelled."""
    n = 40 if q else 200
    srv = Server(binary)
    try:
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.sendall(b"GET /async/disconnect-probe?ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n")
            c.close()  # RST
        time.sleep(2.5)
        import json
        stats = json.loads(get(srv.port, "/async/stats")[1])
        return row("reset-before-handler", "none runs its full 2 s (cancelled, or never started)", None, None, None, None,
                   "started %d, cancelled %d, completed %d" %
                   (stats["started"], stats["cancelled"], stats["completed"]))
    finally:
        srv.stop(signal.SIGKILL)


def attack_sigterm_inflight(binary, q):
    """SIGTERM with async sleeps and blocked sync jobs in flight."""
    n_async, n_sync = (50, 8) if q else (250, 32)
    srv = Server(binary)
    results = {"async_200": 0, "async_503": 0, "async_cut": 0, "sync_200": 0, "sync_503": 0, "sync_cut": 0}
    lock = threading.Lock()

    def one(path, kind):
        try:
            st, _ = get(srv.port, path, timeout=10)
            key = kind + ("_200" if st == 200 else "_503" if st == 503 else "_cut")
        except OSError:
            key = kind + "_cut"
        with lock:
            results[key] += 1

    threads = [threading.Thread(target=one, args=("/sync/block?ms=1500", "sync")) for _ in range(n_sync)]
    threads += [threading.Thread(target=one, args=("/async/sleep?ms=1000", "async")) for _ in range(n_async)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(15)
    rc = srv.proc.wait(15)
    took = time.monotonic() - t0
    srv.stop()
    return row("sigterm-inflight", "every async request answered (200, or 503 when its sync hooks were refused) "
               "within the grace period", None, None, None, None,
               "async: %d 200, %d 503, %d cut of %d; sync: %d 200, %d 503, %d cut; exit %s after %.2f s" %
               (results["async_200"], results["async_503"], results["async_cut"], n_async, results["sync_200"],
                results["sync_503"], results["sync_cut"], rc, took))


def attack_reset_flood_pool(binary, q):
    """Many requests reset by their clients: their sync work must not fill the pool's queue."""
    n = 2000 if q else 10000
    srv = Server(binary)
    try:
        for i in range(n):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.sendall(b"GET /sync/block?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            c.close()
        prober = Prober(srv.port, "/")
        prober.start()
        time.sleep(2)
        probe = prober.stop()
        st = get(srv.port, "/")[0]
        return row("reset-flood-pool", "plain requests unaffected (no 503, no seconds of wait)",
                   None, None, None, probe, "%d reset requests; GET / then: %d" % (n, st))
    finally:
        srv.stop(signal.SIGKILL)


def attack_form_fields(binary, q):
    """40,000 distinct urlencoded fields (quadratic field handling)."""
    n = 10000 if q else 40000
    srv = Server(binary)
    try:
        body = "&".join("f%d=v" % i for i in range(n)).encode()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as c:
            t0 = time.monotonic()
            c.sendall(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            st, _ = read_response(c)
            took = time.monotonic() - t0
        return row("form-fields", "413 with a message past the field limit, or linear handling",
                   None, None, None, None, "%d fields: %d in %.2f s" % (n, st, took))
    finally:
        srv.stop(signal.SIGKILL)


ATTACKS = [
    ("ws-chat-flood", attack_ws_chat_flood),
    ("ws-echo-flood", attack_ws_echo_flood),
    ("emfile", attack_emfile),
    ("trickle", attack_trickle),
    ("upload-hold", attack_upload_hold),
    ("reset-before-handler", attack_reset_before_handler),
    ("sigterm-inflight", attack_sigterm_inflight),
    ("reset-flood-pool", attack_reset_flood_pool),
    ("form-fields", attack_form_fields),
]


def row(name, expected, rss0, peak, after, probe, observed):
    def mib(k):
        return "-" if k is None else "%.0f" % (k / 1024)
    hold = "-" if probe is None else "%.0f ms (p99 %.0f, %d fail)" % (probe["max_ms"], probe["p99_ms"], probe["failures"])
    return {"attack": name, "expected": expected, "rss": "%s / %s / %s" % (mib(rss0), mib(peak), mib(after)),
            "hold": hold, "observed": observed}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(REPO / "build" / "examples" / "conformance"))
    ap.add_argument("--only", default="")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    rows = []
    for name, fn in ATTACKS:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            r = fn(Path(args.bin), args.quick)
        except Exception as e:  # an attack that breaks the harness is a row, not a crash
            r = row(name, "-", None, None, None, None, "harness error: %s" % e)
        r["secs"] = time.monotonic() - t0
        rows.append(r)
        print("%-22s %5.1fs  RSS MiB before/peak/after %-14s  plain-request wait %-28s  %s" %
              (r["attack"], r["secs"], r["rss"], r["hold"], r["observed"]), flush=True)
    print()
    print("| attack | expected | RSS MiB before / peak / after | longest plain-request wait | observed |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s | %s |" % (r["attack"], r["expected"], r["rss"], r["hold"], r["observed"]))


if __name__ == "__main__":
    main()
