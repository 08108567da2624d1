"""Processes (issue 11, item 4): --processes N runs a supervisor and N worker
processes on one listener; a worker that crashes is logged with its signal
and route and replaced; SIGHUP reloads without losing a request; SIGTERM
drains; workers die with their supervisor. In a single process a crash is
logged (that SIGHUP never kills one is test_reject_log's). Private servers,
real signals."""

import os
import re
import select
import signal
import socket
import threading
import time

import pytest

from httpkit import Client, req

pytestmark = pytest.mark.slow

CRASH_ENV = dict(os.environ, CONFORMANCE_CRASH_ROUTES="1")
# Under ASan/TSan (scripts/test.sh sets VIAL_SANITIZED=1) the sanitizer
# owns the fatal signals: no crash handler, so no crash line to read.
needs_crash_handler = pytest.mark.skipif(os.environ.get("VIAL_SANITIZED") == "1",
                                         reason="no crash handler in a sanitized build")


def children(pid):
    """Pids whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return out


def wait_for(cond, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def get(srv, target, timeout=5.0):
    with Client(srv.host, srv.port, timeout=timeout) as c:
        c.send(req("GET", target))
        return c.read_final("GET", timeout=timeout)


def pid_of_response(srv):
    r = get(srv, "/ops/pid")
    assert r.status == 200, r
    return int(r.body.decode().strip())


def test_workers_serve_from_distinct_processes(spawn_server):
    srv = spawn_server(["--processes", "3", "--threads", "1"])
    workers = wait_for(lambda: len(children(srv.proc.pid)) == 3 and children(srv.proc.pid),
                       what="3 workers")
    seen = set()
    for _ in range(300):
        seen.add(pid_of_response(srv))
        if len(seen) >= 2:
            break
    assert len(seen) >= 2, "every response came from one process: %r" % seen
    assert seen <= set(workers), "a response from outside the workers %r: %r" % (workers, seen)
    assert srv.proc.pid not in seen  # the supervisor serves nothing


@needs_crash_handler
@pytest.mark.parametrize("route,sig,endpoint", [
    ("/ops/crash/segv", "SIGSEGV", "crash_segv"),   # async view, on a loop thread
    ("/ops/crash/abort", "SIGABRT", "crash_abort"),  # sync view, on a pool thread
])
def test_crashed_worker_is_logged_and_replaced(spawn_server, route, sig, endpoint):
    srv = spawn_server(["--processes", "2", "--threads", "1"], env=CRASH_ENV)
    before = set(wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                          what="2 workers"))
    # A keep-alive connection to some worker: unless it is the one that
    # crashes, it goes on being served.
    keep = Client(srv.host, srv.port)
    keep.send(req("GET", "/ops/pid"))
    r = keep.read_final("GET")
    assert r.status == 200, r
    keep_pid = int(r.body.decode().strip())
    with Client(srv.host, srv.port) as c:
        c.send(req("GET", route + "?n=1"))
        closed, got = c.wait_closed(5.0)
        assert closed and not got  # the worker died under the request: no response
    # The request (method, path, query) and its route (pattern, endpoint).
    what = "GET %s?n=1 on %s (%s)" % (route, route, endpoint)
    line = wait_for(lambda: re.search(r"error vial: worker (\d+) killed by %s while serving %s$"
                                      % (sig, re.escape(what)), srv.log_text(), re.M),
                    what="the supervisor's crash line")
    dead = int(line.group(1))
    assert dead in before
    # The worker's own line, written by its crash handler.
    assert "crashed: %s while serving %s\n" % (sig, what) in srv.log_text()
    after = set(wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                         what="a replacement worker"))
    assert dead not in after and len(after - before) == 1
    for _ in range(20):
        assert pid_of_response(srv) in after
    if keep_pid != dead:
        keep.send(req("GET", "/ops/pid"))
        assert keep.read_final("GET").status == 200
    keep.close()
    assert srv.alive()


def test_crash_loop_backs_off(spawn_server):
    srv2 = spawn_server(["--processes", "2", "--threads", "1"], env=CRASH_ENV)
    for _ in range(4):
        try:
            with Client(srv2.host, srv2.port, timeout=2.0) as c:
                c.send(req("GET", "/ops/crash/segv"))
                c.wait_closed(2.0)
        except (AssertionError, OSError):
            pass
        time.sleep(0.05)
    wait_for(lambda: "restarting it in" in srv2.log_text(), what="the back-off line")
    wait_for(lambda: len(children(srv2.proc.pid)) == 2, timeout=15.0, what="2 workers again")
    assert get(srv2, "/ops/pid").status == 200


def test_worker_killed_from_outside_is_replaced(spawn_server):
    srv = spawn_server(["--processes", "2", "--threads", "1"])
    before = wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                      what="2 workers")
    os.kill(before[0], signal.SIGKILL)
    wait_for(lambda: "worker %d killed by SIGKILL while serving (no crash report)" % before[0]
             in srv.log_text(), what="the supervisor's line")
    after = wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                     what="a replacement")
    assert before[0] not in after
    assert pid_of_response(srv) in after


def test_sigusr1_is_forwarded_for_log_rotation(spawn_server, tmp_path):
    log = tmp_path / "access.log"
    srv = spawn_server(["--processes", "2", "--threads", "1", "--access-log", str(log)])
    wait_for(lambda: len(children(srv.proc.pid)) == 2, what="2 workers")
    assert get(srv, "/ops/pid").status == 200
    wait_for(lambda: log.exists() and "/ops/pid" in log.read_text(), what="the first line")
    os.rename(log, tmp_path / "access.log.1")
    srv.proc.send_signal(signal.SIGUSR1)
    # Every worker reopens: whichever answers, its line lands in the new file.
    wait_for(lambda: srv.log_text().count("SIGUSR1 received, reopening log files") >= 2,
             what="both workers reopening")
    for _ in range(10):
        assert get(srv, "/ops/pid?after").status == 200
    wait_for(lambda: log.exists() and log.read_text().count("/ops/pid?after") == 10,
             what="the lines in the reopened file")


class KeepAliveClient:
    """Requests on one connection, reconnecting only when the server had
    closed it before the request was sent (its FIN already here): such a
    request never reached the server, so this loses nothing. Any other
    failure is the test's failure. connect() opens a Client."""

    def __init__(self, connect):
        self.connect = connect
        self.c = None
        self.reconnects = 0

    def get(self, target):
        if self.c is not None:
            r, _, _ = select.select([self.c.sock], [], [], 0)
            if r and not self.c.sock.recv(1, socket.MSG_PEEK):
                self.c.close()
                self.c = None
                self.reconnects += 1
        if self.c is None:
            self.c = self.connect()
        self.c.send(req("GET", target))
        resp = self.c.read_final("GET", timeout=10.0)
        if resp.closes:
            self.c.close()
            self.c = None
        return resp

    def close(self):
        if self.c is not None:
            self.c.close()


def test_sighup_reload_loses_no_request(spawn_server):
    srv = spawn_server(["--processes", "2", "--threads", "1", "--grace-ms", "3000"])
    first = set(wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                         what="2 workers"))
    # Load runs across the three reloads (each waited for), bounded by a
    # request cap; the clients stop once the reloads are done.
    cap, threads = 20000, 4
    statuses, errors, pids = [], [], set()
    lock = threading.Lock()
    counter = [0]
    done = threading.Event()

    def take():
        with lock:
            if done.is_set() or counter[0] >= cap:
                return False
            counter[0] += 1
            return True

    def keepalive():
        kc = KeepAliveClient(lambda: Client(srv.host, srv.port, timeout=10.0))
        try:
            while take():
                r = kc.get("/ops/pid")
                with lock:
                    statuses.append(r.status)
                    pids.add(r.body)
        except Exception as e:  # noqa: BLE001 - any failure is a lost request
            with lock:
                errors.append(repr(e))
        finally:
            kc.close()

    def fresh():
        try:
            while take():
                with Client(srv.host, srv.port, timeout=10.0) as c:
                    c.send(req("GET", "/ops/pid", headers=[("Connection", "close")]))
                    r = c.read_final("GET", timeout=10.0)
                with lock:
                    statuses.append(r.status)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))

    ts = [threading.Thread(target=keepalive if i % 2 else fresh) for i in range(threads)]
    for t in ts:
        t.start()
    try:
        for hup in range(1, 4):
            time.sleep(0.3)
            srv.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: srv.log_text().count("reloaded: 2 new workers serving") == hup,
                     timeout=10.0, what="reload %d" % hup)
        time.sleep(0.3)
    finally:
        done.set()
        for t in ts:
            t.join(30)
    assert not errors, "requests lost across reloads: %r" % errors[:5]
    assert len(statuses) >= 1000, "too little load across the reloads: %d" % len(statuses)
    assert set(statuses) == {200}, "non-200 answers: %r" % sorted(set(statuses))
    assert len(pids) > 2, "responses from %d worker generations only" % len(pids)
    wait_for(lambda: srv.log_text().count("reloaded: 2 new workers serving") == 3, what="3 reloads")
    now = set(wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                       what="the old workers gone"))
    assert not (now & first), "workers from before the reloads still run"
    assert "killed by" not in srv.log_text()
    rc, _ = srv.stop(signal.SIGTERM)
    assert rc == 0


def test_reload_rereads_the_config_file(spawn_server, tmp_path):
    conf = tmp_path / "vial.conf"
    conf.write_text("health-path = /healthz\n")
    srv = spawn_server(["--processes", "2", "--threads", "1", "--config", str(conf)])
    assert get(srv, "/healthz").status == 200
    assert get(srv, "/ready-probe").status == 404
    conf.write_text("health-path = /ready-probe\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded: 2 new workers" in srv.log_text(), what="the reload")
    wait_for(lambda: len(children(srv.proc.pid)) == 2, what="the old workers gone")
    assert get(srv, "/ready-probe").status == 200


def test_sigterm_drains_workers_and_exits_zero(spawn_server):
    srv = spawn_server(["--processes", "2", "--threads", "1", "--grace-ms", "3000"])
    workers = wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                       what="2 workers")
    c = Client(srv.host, srv.port, timeout=10.0)
    c.send(req("GET", "/sync/block?ms=800"))
    time.sleep(0.2)  # the request is in its handler
    srv.proc.send_signal(signal.SIGTERM)
    r = c.read_final("GET", timeout=10.0)
    assert r.status == 200, r  # drained, not cut
    c.close()
    rc, _ = srv.stop(signal.SIGTERM, limit=8.0)
    assert rc == 0, srv.log_text()
    for p in workers:
        assert not os.path.exists("/proc/%d" % p) or "Z" in open("/proc/%d/stat" % p).read().split(")")[1][:3]


def test_workers_exit_when_the_supervisor_dies(spawn_server):
    srv = spawn_server(["--processes", "2", "--threads", "1"])
    workers = wait_for(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid),
                       what="2 workers")
    srv.proc.kill()
    srv.proc.wait(5)

    def gone():
        return all(not os.path.exists("/proc/%d" % p) for p in workers)
    wait_for(gone, timeout=5.0, what="orphaned workers to exit")


@needs_crash_handler
@pytest.mark.parametrize("route,sig,signum,endpoint", [
    ("/ops/crash/segv", "SIGSEGV", signal.SIGSEGV, "crash_segv"),
    ("/ops/crash/abort", "SIGABRT", signal.SIGABRT, "crash_abort"),
])
def test_single_process_crash_is_logged(spawn_server, route, sig, signum, endpoint):
    srv = spawn_server(["--threads", "1"], env=CRASH_ENV)
    with Client(srv.host, srv.port) as c:
        c.send(req("GET", route))
        c.wait_closed(5.0)
    rc = srv.proc.wait(5)
    assert rc == -signum, "exit status %r" % rc  # it still dies of the signal (core dumps)
    line = re.search(r"^\S+Z error vial: crashed: %s while serving GET %s on %s \(%s\)$"
                     % (sig, re.escape(route), re.escape(route), endpoint), srv.log_text(), re.M)
    assert line, srv.log_text()
