"""--processes with the listeners of listen.c (issue 11, items 4 and 5): the
supervisor opens every listener once (a Unix socket, several --listen
entries, the descriptors systemd passed) and every worker serves all of
them; a SIGHUP reload loses no request on any of them; a Unix socket file
outlives the workers a reload retires and is removed by the supervisor
only; systemd hears READY=1, RELOADING=1/READY=1 and STOPPING=1 from the
supervisor, and its watchdog pings. What must stop a start stops it before
any fork. Private servers, real signals."""

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import conformance_binary
from httpkit import Client, req
from listenkit import procs, Proc, tcp_port  # noqa: F401 - procs is a fixture
from test_supervisor import KeepAliveClient, children, wait_for
from test_systemd import Notify, tcp_listener
from test_templates import server_env, write_all

pytestmark = pytest.mark.slow


def connect(addr, timeout=10.0):
    """A Client on ("tcp", port) or ("unix", path)."""
    kind, where = addr
    if kind == "tcp":
        return Client("127.0.0.1", where, timeout=timeout)
    c = Client(None, None, timeout=timeout, connect=False)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(where)
    c.sock = s
    return c


def pid_via(addr):
    with connect(addr, 5.0) as c:
        c.send(req("GET", "/ops/pid"))
        r = c.read_final("GET", timeout=5.0)
    assert r.status == 200, r
    return int(r.body.decode().strip())


def workers_of(p, n=2):
    return set(wait_for(lambda: len(children(p.proc.pid)) == n and children(p.proc.pid),
                        what="%d workers" % n))


def reaches_both_workers(addr, workers):
    """Requests on addr until two distinct workers answered."""
    seen = set()
    for _ in range(400):
        seen.add(pid_via(addr))
        if len(seen) >= 2:
            break
    assert len(seen) >= 2, "every response on %r came from one process: %r" % (addr, seen)
    assert seen <= workers, "a response from outside the workers %r: %r" % (workers, seen)


def reloads_lose_nothing(p, addrs, reloads=2, cap=8000):
    """Load on every addr (a keep-alive and a fresh-connection client each)
    across `reloads` SIGHUPs, each waited for; every request answered 200."""
    statuses, errors = [], []
    lock = threading.Lock()
    counter = [0]
    done = threading.Event()
    per_addr = {a: 0 for a in addrs}

    def take():
        with lock:
            if done.is_set() or counter[0] >= cap:
                return False
            counter[0] += 1
            return True

    def note(addr, r):
        with lock:
            statuses.append(r.status)
            per_addr[addr] += 1

    def keepalive(addr):
        k = KeepAliveClient(lambda: connect(addr))
        try:
            while take():
                note(addr, k.get("/ops/pid"))
        except Exception as e:  # noqa: BLE001 - any failure is a lost request
            with lock:
                errors.append("%r: %r" % (addr, e))
        finally:
            k.close()

    def fresh(addr):
        try:
            while take():
                with connect(addr) as c:
                    c.send(req("GET", "/ops/pid", headers=[("Connection", "close")]))
                    note(addr, c.read_final("GET", timeout=10.0))
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append("%r: %r" % (addr, e))

    ts = [threading.Thread(target=f, args=(a,)) for a in addrs for f in (keepalive, fresh)]
    for t in ts:
        t.start()
    before = p.text().count("reloaded: 2 new workers serving")
    try:
        for hup in range(1, reloads + 1):
            time.sleep(0.3)
            p.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: p.text().count("reloaded: 2 new workers serving") == before + hup,
                     timeout=15.0, what="reload %d" % hup)
        time.sleep(0.3)
    finally:
        done.set()
        for t in ts:
            t.join(30)
    assert not errors, "requests lost across reloads: %r" % errors[:5]
    assert set(statuses) == {200}, "non-200 answers: %r" % sorted(set(statuses))
    for a, n in per_addr.items():
        assert n >= 50, "too little load on %r across the reloads: %d" % (a, n)
    assert "killed by" not in p.text() and "exited with status" not in p.text(), p.text()


def start(procs, tmp_path, args, **kw):  # noqa: F811 - procs is the fixture
    p = Proc(tmp_path, ["--processes", "2", "--threads", "1", "--grace-ms", "3000"] + list(args), **kw)
    procs.append(p)
    return p


def test_processes_on_a_unix_socket(procs, tmp_path):  # noqa: F811
    path = str(tmp_path / "app.sock")
    p = start(procs, tmp_path, ["--host", "unix:" + path])
    assert p.wait_listening() == ["unix:" + path]
    first = workers_of(p)
    addr = ("unix", path)
    reaches_both_workers(addr, first)
    reloads_lose_nothing(p, [addr])
    # The retired workers are gone and the file they served on is still
    # there: only the supervisor removes it.
    now = wait_for(lambda: not (set(children(p.proc.pid)) & first) and workers_of(p),
                   what="the retired workers gone")
    assert os.path.exists(path)
    reaches_both_workers(addr, now)
    assert p.stop() == 0, p.text()
    assert not os.path.exists(path), "the supervisor left its socket file"


def test_processes_on_two_listen_entries(procs, tmp_path):  # noqa: F811
    path = str(tmp_path / "two.sock")
    p = start(procs, tmp_path, ["--listen", "127.0.0.1:0", "--listen", "unix:" + path])
    listens = p.wait_listening()
    assert len(listens) == 2 and listens[1] == "unix:" + path, listens
    addrs = [("tcp", tcp_port(listens)), ("unix", path)]
    first = workers_of(p)
    for a in addrs:
        reaches_both_workers(a, first)
    reloads_lose_nothing(p, addrs)
    assert p.stop() == 0, p.text()
    assert not os.path.exists(path)


def test_processes_on_two_tcp_listeners(procs, tmp_path):  # noqa: F811
    p = start(procs, tmp_path, ["--listen", "127.0.0.1:0,127.0.0.1:0"])
    listens = p.wait_listening()
    ports = [int(l.rsplit(":", 1)[1]) for l in listens]
    assert len(ports) == 2 and ports[0] != ports[1], listens
    addrs = [("tcp", port) for port in ports]
    first = workers_of(p)
    for a in addrs:
        reaches_both_workers(a, first)
    reloads_lose_nothing(p, addrs)
    assert p.stop() == 0, p.text()


def creds_notify(tmp_path):
    """A Notify whose messages are (text, the sender's pid) (SO_PASSCRED)."""
    n = Notify(tmp_path)
    n.s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def next_with_pid(timeout=5.0):
        n.s.settimeout(timeout)
        msg, anc, _, _ = n.s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", data[:12])[0]
        return msg.decode(), pid
    n.next = next_with_pid
    return n


def test_processes_under_socket_activation(procs, tmp_path):  # noqa: F811
    t = tcp_listener()
    port = t.getsockname()[1]
    path = str(tmp_path / "act.sock")
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(path)
    u.listen(64)
    n = creds_notify(tmp_path)
    try:
        e = dict(os.environ, NOTIFY_SOCKET=n.env)

        def preexec():
            os.environ.clear()
            os.environ.update(e)
            os.dup2(t.fileno(), 3)
            os.dup2(u.fileno(), 4)
            os.environ["LISTEN_PID"] = str(os.getpid())
            os.environ["LISTEN_FDS"] = "2"
            os.environ["LISTEN_FDNAMES"] = "web:local"

        p = Proc(tmp_path, ["--processes", "2", "--threads", "1", "--grace-ms", "3000", "--port", "1"],
                 preexec=preexec, close_fds=False)
        procs.append(p)
        assert p.wait_listening() == ["http://127.0.0.1:%d (web)" % port, "unix:%s (local)" % path]
        t.close()  # the server's copies keep the sockets open
        u.close()
        # One READY=1, from the supervisor, once the first workers serve.
        msgs = n.until(lambda m: "READY=1" in m[0], timeout=10.0)
        ready, sender = msgs[-1]
        assert ready.startswith("READY=1\n") and "(2 processes)" in ready, msgs
        assert sender == p.proc.pid, "READY=1 from %r, not the supervisor %d" % (sender, p.proc.pid)
        first = workers_of(p)
        addrs = [("tcp", port), ("unix", path)]
        for a in addrs:
            reaches_both_workers(a, first)
        reloads_lose_nothing(p, addrs, reloads=1)
        # The reload: RELOADING=1, then READY=1 once the new workers serve.
        msgs = n.until(lambda m: "READY=1" in m[0], timeout=10.0)
        texts = [m for m, _ in msgs]
        assert texts[0].startswith("RELOADING=1\nMONOTONIC_USEC="), texts
        assert all(pid == p.proc.pid for _, pid in msgs), msgs
        p.proc.send_signal(signal.SIGTERM)
        msgs = n.until(lambda m: "STOPPING=1" in m[0], timeout=10.0)
        assert msgs[-1][1] == p.proc.pid
        assert not any("READY=1" in m for m, _ in msgs)
        assert p.wait_exit() == 0, p.text()
        # systemd owns an activated socket's file: not removed
        assert os.path.exists(path)
    finally:
        n.close()


def test_watchdog_pinged_by_the_supervisor(procs, tmp_path):  # noqa: F811
    n = creds_notify(tmp_path)
    try:
        p = start(procs, tmp_path, ["--port", "0"],
                  env={"NOTIFY_SOCKET": n.env, "WATCHDOG_USEC": "400000"})
        p.wait_listening()
        pings = []
        deadline = time.monotonic() + 10.0
        while len(pings) < 4 and time.monotonic() < deadline:
            m, pid = n.next()
            if m.startswith("WATCHDOG=1"):
                pings.append((time.monotonic(), pid))
        assert len(pings) >= 4, pings
        assert {pid for _, pid in pings} == {p.proc.pid}, pings  # never a worker
        # Every 200 ms, with room for a loaded machine.
        gaps = [b[0] - a[0] for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 0.4 + 0.6, gaps
        assert p.stop() == 0
    finally:
        n.close()


def run_to_exit(args, env=None, timeout=15):
    p = subprocess.run([str(conformance_binary())] + list(args), env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def test_template_syntax_error_stops_the_start_before_forking(tmp_path):
    write_all(tmp_path / "app", {"good.html": "fine"})
    (tmp_path / "app" / "sub").mkdir()
    (tmp_path / "app" / "sub" / "broken.html").write_text("one\ntwo\n{% for x in %}{% endfor %}\n")
    (tmp_path / "bp").mkdir()
    rc, out = run_to_exit(["--processes", "2", "--port", "0", "--log-level", "debug"],
                          env=server_env(tmp_path))
    assert rc != 0, out
    assert "sub/broken.html:3:" in out, out
    assert "listening" not in out and "worker" not in out, out


def test_bad_trusted_proxy_stops_the_start_before_forking():
    rc, out = run_to_exit(["--processes", "2", "--port", "0", "--log-level", "debug",
                           "--trusted-proxy", "10.0.0.0/99"])
    assert rc != 0, out
    assert "--trusted-proxy" in out, out
    assert "listening" not in out and "worker" not in out, out


def test_workers_that_cannot_start_stop_the_supervisor(tmp_path):
    # Each worker opens the access log: a directory that does not exist
    # fails every one of them, and the supervisor stops instead of
    # replacing them for ever (no READY=1 for systemd).
    n = Notify(tmp_path)
    try:
        rc, out = run_to_exit(["--processes", "2", "--port", "0",
                               "--access-log", str(tmp_path / "no" / "such" / "dir" / "access.log")],
                              env=dict(os.environ, NOTIFY_SOCKET=n.env))
        assert rc != 0, out
        assert "the workers did not start; stopping" in out, out
        with pytest.raises(socket.timeout):
            n.next(0.2)
    finally:
        n.close()
