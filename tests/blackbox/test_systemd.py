"""systemd without systemd (issue 11, item 5): socket activation (a socket
made here, passed as fd 3 with LISTEN_FDS/LISTEN_PID set in the child) and
the notification protocol (a datagram socket here as NOTIFY_SOCKET, path or
abstract): READY=1 once listening, STOPPING=1 when SIGTERM starts the drain,
WATCHDOG=1 every WATCHDOG_USEC/2, STATUS= lines."""

import os
import signal
import socket
import time

import pytest

from listenkit import procs, Proc, tcp_port, unix_get
from httpkit import Client, req

pytestmark = pytest.mark.slow


def activated(procs, tmp_path, sock, args=(), env=None, fds=1, names=None):
    """Starts the server with sock as fd 3 (and fd 4.. for a list)."""
    socks = sock if isinstance(sock, list) else [sock]

    def preexec():
        for i, s in enumerate(socks):
            os.dup2(s.fileno(), 3 + i)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = str(fds)
        if names:
            os.environ["LISTEN_FDNAMES"] = names

    e = dict(os.environ)
    e.update(env or {})
    p = Proc(tmp_path, list(args), env=None, preexec=lambda: (os.environ.update(e), preexec()),
             close_fds=False)
    procs.append(p)
    return p


def tcp_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def test_socket_activation_tcp_and_unix(procs, tmp_path):
    t = tcp_listener()
    port = t.getsockname()[1]
    path = str(tmp_path / "act.sock")
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(path)
    u.listen(64)
    # --host/--port would bind elsewhere: passed descriptors replace them
    p = activated(procs, tmp_path, [t, u], args=["--port", "1"], fds=2, names="web:local")
    listens = p.wait_listening()
    assert listens == ["http://127.0.0.1:%d (web)" % port, "unix:%s (local)" % path], listens
    assert "socket activation: 2 listeners from systemd" in p.text()
    t.close()  # the server's copies keep the sockets open
    u.close()
    with Client("127.0.0.1", port) as c:
        assert c.request(req("GET", "/")).status == 200
    assert unix_get(path, "/")[0] == 200
    assert p.stop() == 0
    # systemd owns an activated socket's file: not removed
    assert os.path.exists(path)


def test_listen_pid_of_another_process_is_ignored(procs, tmp_path):
    t = tcp_listener()

    def preexec():
        os.dup2(t.fileno(), 3)
        os.environ["LISTEN_PID"] = "1"  # not this process
        os.environ["LISTEN_FDS"] = "1"

    p = Proc(tmp_path, ["--port", "0"], preexec=preexec, close_fds=False)
    procs.append(p)
    listens = p.wait_listening()
    assert tcp_port(listens) != t.getsockname()[1]
    assert "socket activation" not in p.text()
    t.close()
    assert p.stop() == 0


@pytest.mark.parametrize("kind", ["not-listening", "datagram"])
def test_passed_descriptor_must_be_a_listening_stream_socket(procs, tmp_path, kind):
    if kind == "datagram":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = activated(procs, tmp_path, s)
    assert p.wait_exit() not in (0, None)
    assert "fd 3 is not a listening stream socket" in p.text()
    s.close()


class Notify:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, tmp_path, abstract=False):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "vial-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.s.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.s.bind(path)
            self.env = path
        self.s.settimeout(5)

    def next(self, timeout=5.0):
        self.s.settimeout(timeout)
        return self.s.recv(4096).decode()

    def until(self, pred, timeout=5.0):
        """Messages received until one satisfies pred (included)."""
        got = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.next(max(0.01, deadline - time.monotonic()))
            except socket.timeout:
                break
            got.append(m)
            if pred(m):
                return got
        raise AssertionError("no such message; got %r" % got)

    def close(self):
        self.s.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_then_stopping(procs, tmp_path, abstract):
    n = Notify(tmp_path, abstract)
    try:
        p = Proc(tmp_path, ["--port", "0"], env={"NOTIFY_SOCKET": n.env})
        procs.append(p)
        first = n.next()
        listens = p.wait_listening()
        assert first.split("\n")[0] == "READY=1", first
        assert "STATUS=listening on %s" % listens[0] in first
        # READY only once the port accepts
        with Client("127.0.0.1", tcp_port(listens)) as c:
            assert c.request(req("GET", "/")).status == 200
        p.proc.send_signal(signal.SIGTERM)
        msgs = n.until(lambda m: "STOPPING=1" in m)
        assert msgs[-1].startswith("STOPPING=1") and "STATUS=draining (SIGTERM)" in msgs[-1]
        assert not any("READY=1" in m for m in msgs)
        assert p.wait_exit() == 0
    finally:
        n.close()


def test_watchdog_pings(procs, tmp_path):
    n = Notify(tmp_path)
    try:
        p = Proc(tmp_path, ["--port", "0"], env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "200000"})
        procs.append(p)
        assert n.next().startswith("READY=1")
        t0 = time.monotonic()
        pings = []
        while time.monotonic() - t0 < 1.0:
            m = n.next(2.0)
            if m == "WATCHDOG=1":
                pings.append(time.monotonic())
        # every 100 ms: about 10 in a second, allowing for a loaded machine
        assert 5 <= len(pings) <= 13, pings
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 0.4, gaps
        assert p.stop() == 0
    finally:
        n.close()


def test_watchdog_for_another_pid_is_not_pinged(procs, tmp_path):
    n = Notify(tmp_path)
    try:
        p = Proc(tmp_path, ["--port", "0"],
                 env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
        procs.append(p)
        assert n.next().startswith("READY=1")
        with pytest.raises(socket.timeout):
            n.next(0.5)
        assert p.stop() == 0
    finally:
        n.close()


def test_watchdog_withheld_while_a_loop_is_stuck(procs, tmp_path):
    """A loop thread held by a blocking handler stops the pings (systemd then
    restarts the service); they resume when it is free."""
    n = Notify(tmp_path)
    try:
        p = Proc(tmp_path, ["--port", "0", "--threads", "1", "--stall-ms", "-1"],
                 env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "200000"})
        procs.append(p)
        assert n.next().startswith("READY=1")
        port = tcp_port(p.wait_listening())
        n.until(lambda m: m == "WATCHDOG=1")
        s = socket.create_connection(("127.0.0.1", port))
        # /block-loop?ms=N holds the loop thread (conformance fixture)
        s.sendall(b"GET /debug/block-loop?ms=1200 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        n.s.settimeout(0.01)
        try:
            while True:
                n.s.recv(64)  # drain pings sent before the block took hold
        except socket.timeout:
            pass
        quiet_from = time.monotonic()
        m = n.next(3.0)
        waited = time.monotonic() - quiet_from
        assert m == "WATCHDOG=1" and waited > 0.5, (m, waited)
        assert "watchdog ping withheld" in p.text()
        s.close()
        assert p.stop() == 0
    finally:
        n.close()


def test_no_notify_socket_is_fine(procs, tmp_path):
    env = {"NOTIFY_SOCKET": ""}
    p = Proc(tmp_path, ["--port", "0"], env=env)
    procs.append(p)
    p.wait_listening()
    assert p.stop() == 0
