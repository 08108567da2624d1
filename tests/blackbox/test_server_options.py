"""Listeners and command-line options (issue 8, item 3): --port 0 binds one
port for every loop thread and logs it; a port another process holds is
refused at start; --help lists every option; bad options are named; an app
adds options of its own (the guide's configuration example).

Each test starts its own server processes and kills them at the end.
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import conformance_binary
from httpkit import req, roundtrip

READY_LIMIT = 5.0
LISTENING = re.compile(r"vial: listening on http://(\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9]+) ")
VIAL_OPTIONS = ["--host", "--port", "--threads", "--workers", "--queue-max", "--stack-size",
                "--grace-ms", "--max-body", "--stall-ms", "--server-header", "--help"]


def guide_binary(name):
    return conformance_binary().parent.parent / "guide" / ("guide_" + name)


class Proc:
    """A server process with stdout and stderr in files (read while it runs)."""

    def __init__(self, argv, tmp_path):
        self.argv = [str(a) for a in argv]
        n = len(list(tmp_path.glob("*.err")))
        self.out_path = tmp_path / ("%d.out" % n)
        self.err_path = tmp_path / ("%d.err" % n)
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err)

    def stderr(self):
        return self.err_path.read_text("utf-8", "replace")

    def stdout(self):
        return self.out_path.read_text("utf-8", "replace")

    def wait_for(self, pattern, text=None, limit=READY_LIMIT):
        """The first match of `pattern` in stderr (or text()), failing if the process exits."""
        text = text or self.stderr
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            m = re.search(pattern, text())
            if m:
                return m
            if self.proc.poll() is not None:
                m = re.search(pattern, text())
                if m:
                    return m
                pytest.fail("%s exited with %s before printing %r\n--- stderr ---\n%s"
                            % (self.argv, self.proc.returncode, pattern.pattern
                               if hasattr(pattern, "pattern") else pattern, self.stderr()))
            time.sleep(0.02)
        pytest.fail("%s did not print %r within %.0f s\n--- stderr ---\n%s"
                    % (self.argv, pattern, limit, self.stderr()))

    def listening(self):
        m = self.wait_for(LISTENING)
        return m.group(1), int(m.group(2))

    def exit_status(self, limit=READY_LIMIT):
        try:
            return self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.out.close()
        self.err.close()


@pytest.fixture
def procs(tmp_path):
    started = []

    def start(*argv):
        p = Proc(argv, tmp_path)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def run(argv, timeout=5):
    return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, text=True)


def listening_sockets(pid):
    """(local port) of every TCP socket of process `pid` in LISTEN state."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                ports.append(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def get_ok(addr, target="/"):
    r = roundtrip(addr, req("GET", target))
    assert r.status == 200, r
    return r


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- --port 0 -----------------------------------------------------------------------

def test_port_zero_one_port_for_every_thread(procs):
    srv = procs(conformance_binary(), "--port", "0", "--threads", "2")
    host, port = srv.listening()
    assert host == "127.0.0.1"
    assert port != 0, srv.stderr()
    # Both loop threads listen, both on the logged port (before: one ephemeral port each).
    assert sorted(listening_sockets(srv.proc.pid)) == [port, port], srv.stderr()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
    try:
        for s in socks:
            s.sendall(req("GET", "/"))
        for s in socks:
            s.settimeout(5)
            assert s.recv(64).startswith(b"HTTP/1.1 200 "), "a connection on port %d unserved" % port
    finally:
        for s in socks:
            s.close()


def test_port_zero_ipv6(procs):
    if not have_ipv6():
        pytest.skip("no IPv6 loopback")
    srv = procs(conformance_binary(), "--host", "::1", "--port=0", "--threads", "2")
    host, port = srv.listening()
    assert host == "[::1]" and port != 0
    assert sorted(listening_sockets(srv.proc.pid)) == [port, port]
    with socket.create_connection(("::1", port), timeout=5) as s:
        s.sendall(req("GET", "/"))
        assert s.recv(64).startswith(b"HTTP/1.1 200 ")


# --- a port in use ---------------------------------------------------------------------

@pytest.mark.parametrize("reuseport", [True, False], ids=["holder-reuseport", "holder-plain"])
@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
                         ids=["ipv4", "ipv6"])
def test_port_held_by_another_process_is_refused(procs, reuseport, family, host):
    if family == socket.AF_INET6 and not have_ipv6():
        pytest.skip("no IPv6 loopback")
    holder = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuseport:  # what lets a second process in silently, unless vial checks
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host, 0))
        holder.listen(16)
        port = holder.getsockname()[1]
        srv = procs(conformance_binary(), "--host", host, "--port", port, "--threads", "2")
        rc = srv.exit_status()
        shown = "[%s]" % host if ":" in host else host
        assert rc is not None, "vial started on %s:%d held by another socket\n%s" % (
            shown, port, srv.stderr())
        assert rc != 0
        assert "vial: %s:%d is already in use\n" % (shown, port) in srv.stderr()
    finally:
        holder.close()


def test_second_vial_on_the_same_port_fails(procs):
    first = procs(conformance_binary(), "--port", "0", "--threads", "2")
    _host, port = first.listening()
    second = procs(conformance_binary(), "--port", port, "--threads", "2")
    rc = second.exit_status()
    assert rc is not None and rc != 0, "a second vial started on port %d:\n%s" % (port, second.stderr())
    assert "vial: 127.0.0.1:%d is already in use" % port in second.stderr()
    # The first keeps serving, every connection.
    for _ in range(20):
        get_ok(("127.0.0.1", port))
    assert first.proc.poll() is None


# --- --help and errors -----------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option(flag):
    r = run([conformance_binary(), flag])
    assert r.returncode == 0, r
    assert r.stderr == ""
    for opt in VIAL_OPTIONS:
        name = opt[2:]
        # "  --name ARG   description (default: ...)", one line each.
        m = re.search(r"^  (?:-h, )?--(?:\[no-\])?%s(?: [A-Z]+)?\s{2,}\S.*$" % re.escape(name),
                      r.stdout, re.M)
        assert m, "--help does not list %s with a description:\n%s" % (opt, r.stdout)
        if name != "help":
            assert "(default: " in m.group(0), m.group(0)
    # A description and the default on each option's line.
    assert re.search(r"--port N\s+\S.*\(default: 8080\)", r.stdout), r.stdout
    assert re.search(r"--max-body BYTES\s+\S.*\(default: 1M\)", r.stdout), r.stdout
    assert "--[no-]server-header" in r.stdout


@pytest.mark.parametrize("argv,message", [
    (["--frob"], "vial: unknown option --frob"),
    (["--frob=1"], "vial: unknown option --frob"),
    (["--port", "http"], "vial: --port needs a number 0-65535"),
    (["--port=65536"], "vial: --port needs a number 0-65535"),
    (["--port"], "vial: --port needs a number 0-65535"),
    (["--threads", "-1"], "vial: --threads needs a number 0-1024"),
    (["--workers", "0"], "vial: --workers needs a number 1-4096"),
    (["--stack-size", "1K"], "vial: --stack-size needs a size 16K-256M"),
    (["--max-body", "1X"], "vial: --max-body needs a size"),
    (["--host", "--port", "80"], "vial: --host needs an address"),
    (["--server-header=yes"], "vial: --server-header takes no value"),
    (["8080"], "vial: unexpected argument 8080"),
])
def test_bad_option_is_named(argv, message):
    r = run([conformance_binary()] + argv)
    assert r.returncode == 2, r
    assert message in r.stderr, r.stderr
    assert "--help" in r.stderr, r.stderr


def test_options_take_effect(procs):
    srv = procs(conformance_binary(), "--port=0", "--threads=1", "--max-body", "16",
                "--server-header", "--workers", "2", "--queue-max", "8", "--stall-ms", "-1",
                "--grace-ms", "500", "--stack-size", "256K")
    _host, port = srv.listening()
    assert "(1 loop threads, 2 workers)" in srv.stderr()
    r = get_ok(("127.0.0.1", port))
    assert r.header("server") == "vial", r
    r = roundtrip(("127.0.0.1", port), req("POST", "/echo/body", body=b"x" * 17))
    assert r.status == 413, r
    r = roundtrip(("127.0.0.1", port), req("POST", "/echo/body", body=b"x" * 16))
    assert r.status == 200, r


# --- the app's own options ---------------------------------------------------------------

def test_app_option_and_on_ready(procs):
    binary = guide_binary("configuration")
    assert binary.exists(), "build the guide examples (%s)" % binary
    srv = procs(binary, "--greeting", "Bonjour", "--port", "0", "--threads", "2")
    m = srv.wait_for(r"ready on port ([0-9]+)\n", text=srv.stdout)
    port = int(m.group(1))
    assert srv.listening()[1] == port
    r = get_ok(("127.0.0.1", port))
    assert r.body == b"Bonjour!", r
    srv2 = procs(binary, "--shout", "--greeting=hey", "--port=0")
    m = srv2.wait_for(r"ready on port ([0-9]+)\n", text=srv2.stdout)
    assert get_ok(("127.0.0.1", int(m.group(1)))).body == b"HEY!"


def test_app_options_in_help_and_errors():
    binary = guide_binary("configuration")
    r = run([binary, "--help"])
    assert r.returncode == 0, r
    assert re.search(r"--greeting TEXT\s+what GET / says \(default: Hello\)", r.stdout), r.stdout
    assert re.search(r"--shout\s+say it in capitals", r.stdout), r.stdout
    for opt in VIAL_OPTIONS:
        assert opt.lstrip("-") in r.stdout
    r = run([binary, "--greeting"])
    assert r.returncode == 2 and "vial: --greeting needs TEXT" in r.stderr, r
    r = run([binary, "--shout=1"])
    assert r.returncode == 2 and "vial: --shout takes no value" in r.stderr, r
