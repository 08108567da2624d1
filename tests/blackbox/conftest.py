"""Fixtures for the black-box conformance suite (spec: shared/spec/conformance-app.md).

The `conformance` binary is taken from $VIAL_CONFORMANCE_BIN if set, else
$VIAL_BUILD_DIR/examples/conformance, else <repo>/build/examples/conformance.
Raw-socket client helpers live in httpkit.py (imported by the test modules).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # test modules import httpkit

import tlskit  # noqa: E402  (VIAL_TEST_TLS=1: every server speaks TLS)

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_LIMIT = 5.0
STOP_LIMIT = 5.0


def conformance_binary():
    explicit = os.environ.get("VIAL_CONFORMANCE_BIN")
    if explicit:
        return Path(explicit)
    build = os.environ.get("VIAL_BUILD_DIR")
    build = Path(build) if build else REPO_ROOT / "build"
    if not build.is_absolute():
        build = REPO_ROOT / build
    return build / "examples" / "conformance"


# The server picks its port (--port 0) and names it in this line.
LISTENING = re.compile(rb"vial: listening on https?://[^ ]*:([0-9]+) ")


class ServerProcess:
    """One running `conformance` instance with its stderr captured to a file."""

    def __init__(self, logdir, args=(), preexec=None, env=None, binary=None):
        self.logdir = Path(logdir)
        self.args = list(args)        # extra command-line options
        self.preexec = preexec        # e.g. a resource limit, run in the child
        self.env = env                # the process environment, None: this one's
        self.binary = binary          # another app than conformance (a Path), or None
        self.proc = None
        self.port = None
        self.host = "127.0.0.1"
        self.log_path = None
        self.log_file = None
        self.ready_after = None
        self.generation = 0

    @property
    def addr(self):
        return (self.host, self.port)

    def log_text(self, start=0, limit=20000, path=None):
        path = path or self.log_path
        if not path or not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
        if len(data) > limit:
            data = b"...\n" + data[-limit:]
        return data.decode("utf-8", "replace")

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except (OSError, AttributeError):
            return 0

    def start(self):
        binary = self.binary or conformance_binary()
        if not binary.exists():
            pytest.fail("conformance binary not found at %s (build with cmake -S . -B build -G Ninja "
                        "&& ninja -C build, or set VIAL_BUILD_DIR / VIAL_CONFORMANCE_BIN)" % binary,
                        pytrace=False)
        last_err = None
        for _attempt in range(3):
            self.generation += 1
            self.port = None
            fd, name = tempfile.mkstemp(prefix="vial-conformance-%d-" % self.generation, suffix=".log",
                                        dir=str(self.logdir))
            os.close(fd)
            self.log_path = Path(name)
            self.log_file = open(self.log_path, "wb")
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                [str(binary), "--host", self.host, "--port", "0"]
                + (tlskit.server_args() if tlskit.ENABLED else []) + self.args,
                stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=self.log_file,
                preexec_fn=self.preexec, env=self.env,
            )
            err = self._wait_ready(t0)
            if err is None:
                self.ready_after = time.monotonic() - t0
                return self
            last_err = err
            self.kill()
            if "in use" not in self.log_text().lower():  # only retry port clashes
                break
        pytest.fail("conformance server did not start: %s\n--- server stderr ---\n%s"
                    % (last_err, self.log_text()), pytrace=False)

    def _wait_ready(self, t0):
        while time.monotonic() - t0 < READY_LIMIT:
            rc = self.proc.poll()
            if rc is not None:
                return "exited with status %s before accepting connections" % rc
            if self.port is None:
                with open(self.log_path, "rb") as f:
                    m = LISTENING.search(f.read())
                if not m:
                    time.sleep(0.02)
                    continue
                self.port = int(m.group(1))
            try:
                with socket.create_connection(self.addr, timeout=0.5):
                    return None
            except OSError:
                time.sleep(0.02)
        return "not accepting connections on %s:%s after %.1f s" % (self.host, self.port, READY_LIMIT)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, limit=STOP_LIMIT):
        """Send `sig`; return (exit status or None if it had to be killed, seconds taken)."""
        if self.proc is None:
            return None, 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            rc = None
            self.kill()
        elapsed = time.monotonic() - t0
        self._close_log()
        return rc, elapsed

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def _close_log(self):
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: timing tests that take several seconds (run by default)")
    config.addinivalue_line("markers", "plain_tcp(reason): not run over TLS (VIAL_TEST_TLS=1)")


def pytest_unconfigure(config):
    tlskit.cleanup()


def pytest_collection_modifyitems(config, items):
    if not tlskit.ENABLED:
        return
    for item in items:
        m = item.get_closest_marker("plain_tcp")
        if m:
            item.add_marker(pytest.mark.skip(reason="plain TCP only: " + (m.args[0] if m.args else "")))


@pytest.fixture(scope="session")
def server_logdir(tmp_path_factory):
    return tmp_path_factory.mktemp("vial-server-logs")


@pytest.fixture(scope="session")
def server_instance(server_logdir):
    """The shared server: started once; SIGTERM at the end must exit 0 within 5 s."""
    srv = ServerProcess(server_logdir).start()
    yield srv
    if not srv.alive():
        rc = srv.proc.returncode
        srv._close_log()
        pytest.fail("shared conformance server died during the session (status %s)\n"
                    "--- server stderr ---\n%s" % (rc, srv.log_text()), pytrace=False)
    rc, elapsed = srv.stop(signal.SIGTERM)
    if rc != 0 or elapsed > STOP_LIMIT:
        pytest.fail("conformance server on SIGTERM: exit status %s after %.2f s (want 0 within %.0f s)\n"
                    "--- server stderr ---\n%s" % (rc, elapsed, STOP_LIMIT, srv.log_text()),
                    pytrace=False)


@pytest.fixture
def server(server_instance, request):
    """(host, port) of the shared server. Restarts it if an earlier test crashed it;
    a test during which it dies gets an error with the server's stderr."""
    srv = server_instance
    if not srv.alive():
        srv.start()
    info = (srv, srv.log_path, srv.log_size(), srv.generation)
    request.node._vial_log = info
    yield srv.addr
    if srv.generation == info[3] and not srv.alive():
        rc = srv.proc.returncode
        srv._close_log()
        srv.start()  # for the following tests
        pytest.fail("conformance server died during this test (status %s)\n--- server stderr ---\n%s"
                    % (rc, srv.log_text(info[2], path=info[1])), pytrace=False)


@pytest.fixture
def spawn_server(server_logdir):
    """Factory for private server instances (for shutdown tests). Killed at teardown."""
    started = []

    def spawn(args=(), preexec=None, env=None):
        s = ServerProcess(server_logdir, args, preexec, env).start()
        started.append(s)
        return s

    yield spawn
    for s in started:
        s.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    info = getattr(item, "_vial_log", None)
    if info is None or not rep.failed:
        return
    srv, path, start, _gen = info
    text = srv.log_text(start, path=path)
    if text.strip():
        rep.sections.append(("vial server stderr during this test", text))
