"""Helpers for the listener tests: a conformance server started with exactly
the arguments and environment a test gives (no --host/--port added), HTTP
over a Unix socket, and the access log read back."""

import http.client
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import conformance_binary

# "(2 loop threads, ...)", or a supervisor's "(2 processes; loop threads: ...)"
LISTEN_LINE = re.compile(rb"vial: listening on (.*) \(\d+ (?:loop threads|processes;)")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_get(path, target="/", headers=None):
    c = UnixHTTPConnection(path)
    try:
        c.request("GET", target, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        c.close()


class Proc:
    """One server process; stderr (vial's own lines) in a file."""

    def __init__(self, tmp_path, args, env=None, preexec=None, pass_fds=(), close_fds=True):
        self.log = tmp_path / ("server-%d.log" % time.monotonic_ns())
        self.logf = open(self.log, "wb")
        full_env = dict(os.environ) if env is not None else None
        if env is not None:
            full_env.update(env)
        self.proc = subprocess.Popen([str(conformance_binary())] + list(args), stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, env=full_env, preexec_fn=preexec,
                                     pass_fds=pass_fds, close_fds=close_fds)

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_listening(self, timeout=5.0):
        """What the 'listening on' line names, split on ' and '."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log, "rb") as f:
                m = LISTEN_LINE.search(f.read())
            if m:
                return m.group(1).decode().split(" and ")
            if self.proc.poll() is not None:
                raise AssertionError("server exited (%s) before listening:\n%s" % (self.proc.returncode, self.text()))
            time.sleep(0.02)
        raise AssertionError("server not listening after %.1f s:\n%s" % (timeout, self.text()))

    def wait_exit(self, timeout=5.0):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait_exit(timeout)
        self.kill()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if not self.logf.closed:
            self.logf.close()


@pytest.fixture
def procs():
    """Servers a test starts (Proc), killed at its end."""
    started = []
    yield started
    for p in started:
        p.kill()


def tcp_port(listens):
    """The port of the first http:// listener in a 'listening on' list."""
    for l in listens:
        if l.startswith("http://"):
            return int(l.rsplit(":", 1)[1])
    raise AssertionError("no TCP listener in %r" % listens)


def wait_lines(path, n, timeout=3.0):
    """The file's lines once it has at least n (the access log flushes every 100 ms)."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError("%s has %d lines, expected %d:\n%s" % (path, len(lines), n, "\n".join(lines)))
