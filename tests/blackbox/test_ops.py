"""Operations (issue 11, items 1, 2 and 7): the access log (combined and JSON,
reopened on SIGUSR1), vial's own log lines and levels, X-Request-ID, the
Prometheus metrics, the health check, the config file and VIAL_ variables.
Each test runs a private server."""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import conformance_binary
from httpkit import Client, req

pytestmark = pytest.mark.slow

# vial's own lines: UTC ISO 8601 with milliseconds, the level, "vial: ".
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) vial: \S")
COMBINED = re.compile(
    r'^(?P<addr>\S+) - - \[(?P<date>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
    r'"(?P<method>\S+) (?P<target>\S+) (?P<proto>HTTP/1\.[01])" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<ua>[^"]*)" (?P<dur>\d+\.\d{6}) "(?P<rid>[^"]*)"$')
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _wait_lines(path, n, timeout=3.0):
    """The access log's lines once it holds at least n (the writer flushes
    every 100 ms)."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, "rb") as f:
                lines = f.read().decode("utf-8").splitlines()
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError("access log %s has %d lines, expected %d:\n%s" % (path, len(lines), n, "\n".join(lines)))


def _traffic(srv):
    """Three requests with every field worth checking; returns the responses."""
    with Client(*srv.addr) as c:
        r1 = c.request(req("GET", "/hello/ann?x=1&y=%22q%22", headers=[
            ("Referer", "http://example.test/from"), ("User-Agent", "ops-test/1.0"),
            ("X-Request-ID", "trace-42")]))
        r2 = c.request(req("GET", "/no/such/page", headers=[("User-Agent", "ops-test/1.0")]))
        r3 = c.request(req("POST", "/echo/body", body=b"0123456789", version="HTTP/1.0"), method="POST")
    assert (r1.status, r2.status, r3.status) == (200, 404, 200)
    return r1, r2, r3


def test_access_log_combined(spawn_server, tmp_path):
    path = str(tmp_path / "access.log")
    srv = spawn_server(["--access-log", path])
    r1, r2, r3 = _traffic(srv)
    lines = _wait_lines(path, 3)
    ms = [COMBINED.match(l) for l in lines]
    assert all(ms), lines
    by_target = {m["target"]: m for m in ms}
    a = by_target["/hello/ann?x=1&y=%22q%22"]
    assert a["addr"] == "127.0.0.1" and a["method"] == "GET" and a["proto"] == "HTTP/1.1"
    assert a["status"] == "200" and a["bytes"] == str(len(r1.body)) == "11"
    assert a["referer"] == "http://example.test/from" and a["ua"] == "ops-test/1.0"
    assert a["rid"] == "trace-42"
    assert 0 <= float(a["dur"]) < 5
    assert time.strptime(a["date"], "%d/%b/%Y:%H:%M:%S +0000")
    b = by_target["/no/such/page"]
    assert b["status"] == "404" and b["bytes"] == str(len(r2.body)) and b["referer"] == "-"
    assert HEX32.match(b["rid"]) and b["rid"] == r2.header("X-Request-ID")
    c = by_target["/echo/body"]
    assert c["method"] == "POST" and c["proto"] == "HTTP/1.0" and c["bytes"] == "10" and c["ua"] == "-"


def test_access_log_json(spawn_server, tmp_path):
    path = str(tmp_path / "access.json")
    srv = spawn_server(["--access-log", path, "--access-log-format", "json"])
    r1, r2, r3 = _traffic(srv)
    docs = [json.loads(l) for l in _wait_lines(path, 3)]
    by_target = {d["target"]: d for d in docs}
    a = by_target['/hello/ann?x=1&y=%22q%22']
    assert set(a) >= {"time", "remote_addr", "method", "target", "protocol", "status", "bytes",
                      "duration_s", "request_id", "referer", "user_agent"}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", a["time"])
    assert a["remote_addr"] == "127.0.0.1" and a["method"] == "GET" and a["protocol"] == "HTTP/1.1"
    assert a["status"] == 200 and a["bytes"] == 11 and a["request_id"] == "trace-42"
    assert a["referer"] == "http://example.test/from" and a["user_agent"] == "ops-test/1.0"
    assert isinstance(a["duration_s"], float) and 0 <= a["duration_s"] < 5
    b = by_target["/no/such/page"]
    assert b["status"] == 404 and b["referer"] is None and HEX32.match(b["request_id"])
    c = by_target["/echo/body"]
    assert c["protocol"] == "HTTP/1.0" and c["bytes"] == 10 and c["user_agent"] is None


def test_access_log_escapes_what_the_client_sent(spawn_server, tmp_path):
    """A User-Agent with quotes and a raw byte cannot break the line."""
    path = str(tmp_path / "access.log")
    srv = spawn_server(["--access-log", path])
    with Client(*srv.addr) as c:
        r = c.request(b'GET /hello/x HTTP/1.1\r\nHost: h\r\nUser-Agent: a"b\\c\xff\r\n\r\n')
        assert r.status == 200
    (line,) = _wait_lines(path, 1)
    m = COMBINED.match(line)
    assert m, line
    assert m["ua"] == r'a\x22b\x5cc\xff'


def test_access_log_to_stderr(spawn_server):
    srv = spawn_server(["--access-log", "-"])
    _traffic(srv)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and "/no/such/page" not in srv.log_text():
        time.sleep(0.05)
    lines = [l for l in srv.log_text().splitlines() if COMBINED.match(l)]
    assert len(lines) == 3, srv.log_text()


def test_access_log_reopened_on_sigusr1(spawn_server, tmp_path):
    path = str(tmp_path / "access.log")
    srv = spawn_server(["--access-log", path])
    with Client(*srv.addr) as c:
        assert c.request(req("GET", "/hello/before")).status == 200
    _wait_lines(path, 1)
    os.rename(path, path + ".1")  # logrotate's move
    with Client(*srv.addr) as c:
        # Written after the rename but before the signal: still the old file.
        assert c.request(req("GET", "/hello/between")).status == 200
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not os.path.exists(path):
        time.sleep(0.05)
    assert srv.alive(), "SIGUSR1 killed the server\n" + srv.log_text()
    assert os.path.exists(path), "the access log was not reopened\n" + srv.log_text()
    with Client(*srv.addr) as c:
        assert c.request(req("GET", "/hello/after")).status == 200
    new = _wait_lines(path, 1)
    old = _wait_lines(path + ".1", 2)
    assert [" /hello/after " in l for l in new] == [True]
    assert any(" /hello/before " in l for l in old) and any(" /hello/between " in l for l in old)
    rc, _ = srv.stop()
    assert rc == 0, srv.log_text()


def test_request_id(spawn_server):
    srv = spawn_server(["--request-id"])
    with Client(*srv.addr) as c:
        r = c.request(req("GET", "/request-id", headers=[("X-Request-ID", "abc-DEF_123.x")]))
        assert r.status == 200 and r.body == b"abc-DEF_123.x" and r.header("X-Request-ID") == "abc-DEF_123.x"
        ids = set()
        for _ in range(3):
            r = c.request(req("GET", "/request-id"))
            assert HEX32.match(r.body.decode()), r
            assert r.header("X-Request-ID") == r.body.decode()
            ids.add(r.body)
        assert len(ids) == 3
        # Not sane: too long, a space inside, a byte outside ASCII: replaced.
        for bad in [b"x" * 201, b"a b", b"caf\xe9"]:
            r = c.request(b"GET /request-id HTTP/1.1\r\nHost: h\r\nX-Request-ID: " + bad + b"\r\n\r\n")
            assert HEX32.match(r.body.decode()) and r.header("X-Request-ID") == r.body.decode(), (bad, r)
        r = c.request(req("GET", "/request-id", headers=[("X-Request-ID", "y" * 200)]))
        assert r.body == b"y" * 200
        # Error responses carry it too.
        r = c.request(req("GET", "/no/such/page", headers=[("X-Request-ID", "e404")]))
        assert r.status == 404 and r.header("X-Request-ID") == "e404"
        r = c.request(req("GET", "/fail", headers=[("X-Request-ID", "e500")]))
        assert r.status == 500 and r.header("X-Request-ID") == "e500"


def test_request_id_defaults_to_the_access_log(spawn_server, tmp_path):
    for args, echoed in [([], False), (["--access-log", str(tmp_path / "a.log")], True),
                         (["--access-log", str(tmp_path / "b.log"), "--no-request-id"], False)]:
        srv = spawn_server(args)
        with Client(*srv.addr) as c:
            r = c.request(req("GET", "/hello/x"))
            assert r.status == 200 and r.has("X-Request-ID") == echoed, (args, r)
            # Handlers can read it whether it is echoed or not.
            r = c.request(req("GET", "/request-id", headers=[("X-Request-ID", "h1")]))
            assert r.body == b"h1"
        srv.stop()


def _own_lines(text):
    return [l for l in text.splitlines() if " vial: " in l]


def test_own_lines_share_one_format(spawn_server):
    srv = spawn_server()
    with Client(*srv.addr) as c:
        assert c.request(req("GET", "/fail")).status == 500
    rc, _ = srv.stop()
    assert rc == 0
    lines = _own_lines(srv.log_text())
    assert lines and all(OWN_LINE.match(l) for l in lines), lines
    text = "\n".join(lines)
    assert re.search(r"Z info vial: listening on http://", text)
    assert re.search(r"Z error vial: GET /fail: unhandled error: boom", text)
    assert re.search(r"Z info vial: SIGTERM received, shutting down", text)
    assert re.search(r"Z info vial: stopped", text)


def test_log_level_filters(spawn_server):
    srv = spawn_server(["--log-level", "error"])
    with Client(*srv.addr) as c:
        assert c.request(req("GET", "/fail")).status == 500
    rc, _ = srv.stop()
    assert rc == 0
    text = srv.log_text()
    assert "unhandled error: boom" in text           # error: kept
    assert "listening on http://" in text            # the readiness line is always written
    assert "shutting down" not in text and "stopped" not in text, text  # info: dropped

    srv = spawn_server(["--log-level", "warn"])
    rc, _ = srv.stop()
    assert "shutting down" not in srv.log_text()
    srv = spawn_server(["--log-level", "info"])
    rc, _ = srv.stop()
    assert "shutting down" in srv.log_text() and "debug vial:" not in srv.log_text()

    srv = spawn_server(["--log-level", "debug", "--access-log", "-"])
    rc, _ = srv.stop()
    assert re.search(r"Z debug vial: access log: stderr \(combined\)", srv.log_text()), srv.log_text()


def test_bad_log_level_is_a_usage_error():
    p = subprocess.run([conformance_binary(), "--log-level", "verbose"], capture_output=True, timeout=10)
    assert p.returncode == 2
    assert b"--log-level needs one of error|warn|info|debug" in p.stderr


# --- metrics ------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_exposition(text):
    """A strict reader of the Prometheus text format (0.0.4): every line is a
    HELP, a TYPE, or a sample of a declared family; returns {(name, labels):
    value} and {family: type}."""
    types, samples = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, "family declared twice: " + name
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, _, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "sample before its TYPE: " + line
        lab = ()
        if labels:
            pos, parts = 0, []
            while pos < len(labels):
                lm = LABEL.match(labels, pos)
                assert lm, "bad labels: " + line
                parts.append((lm.group(1), lm.group(2)))
                pos = lm.end()
            lab = tuple(sorted(parts))
        key = (name, lab)
        assert key not in samples, "duplicate series: " + line
        samples[key] = float(value)
    return samples, types


def _scrape(c, path="/metrics"):
    r = c.request(req("GET", path))
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    return parse_exposition(r.body.decode())


def test_metrics_count_requests(spawn_server):
    srv = spawn_server(["--metrics-path", "/metrics", "--threads", "2"])
    # Over several connections, so both loop threads count some.
    for i in range(6):
        with Client(*srv.addr) as c:
            assert c.request(req("GET", "/hello/m%d" % i)).status == 200
    with Client(*srv.addr) as c:
        for _ in range(2):
            assert c.request(req("GET", "/no/such")).status == 404
        assert c.request(req("POST", "/methods", body=b"x"), method="POST").status == 200
        assert c.request(req("GET", "/sync/block?ms=1")).status == 200
        s, types = _scrape(c)
    L = lambda **kw: tuple(sorted(kw.items()))  # noqa: E731
    assert types["vial_requests_total"] == "counter"
    assert s[("vial_requests_total", L(endpoint="hello", method="GET", status="200"))] == 6
    assert s[("vial_requests_total", L(endpoint="", method="GET", status="404"))] == 2
    assert s[("vial_requests_total", L(endpoint="methods", method="POST", status="200"))] == 1
    assert types["vial_request_duration_seconds"] == "histogram"
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in s.items()
                     if n == "vial_request_duration_seconds_bucket" and dict(l)["endpoint"] == "hello")
    assert buckets[-1] == (float("inf"), 6)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert s[("vial_request_duration_seconds_count", L(endpoint="hello"))] == 6
    assert 0 < s[("vial_request_duration_seconds_sum", L(endpoint="hello"))] < 6
    assert s[("vial_requests_in_flight", ())] == 1  # the scrape itself
    assert s[("vial_open_connections", ())] >= 1
    assert s[("vial_coroutines", ())] >= 1
    assert s[("vial_websocket_sessions", ())] == 0
    assert s[("vial_pool_queued", ())] == 0
    assert s[("vial_pool_wait_seconds_count", ())] >= 2  # the sync views /methods, /sync/block
    assert ("vial_event_loop_lag_seconds", L(loop="1")) in s
    with Client(*srv.addr) as c:
        s2, _ = _scrape(c)
    # The first scrape is counted under its own endpoint.
    assert s2[("vial_requests_total", L(endpoint="(metrics)", method="GET", status="200"))] == 1
    assert s2[("vial_requests_total", L(endpoint="hello", method="GET", status="200"))] == 6


def test_metrics_and_health_off_by_default(spawn_server):
    srv = spawn_server()
    with Client(*srv.addr) as c:
        assert c.request(req("GET", "/metrics")).status == 404
        assert c.request(req("GET", "/healthz")).status == 404


def test_health_200_then_503_while_draining(spawn_server):
    srv = spawn_server(["--health-path", "/healthz", "--drain-delay-ms", "1500"])
    with Client(*srv.addr) as c:
        r = c.request(req("GET", "/healthz"))
        assert r.status == 200 and r.body == b"ok\n" and r.header("Cache-Control") == "no-store"
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # Draining: the probe fails, the app still answers, new clients too.
        r = c.request(req("GET", "/healthz"))
        assert r.status == 503 and r.body == b"draining\n", r
        assert c.request(req("GET", "/hello/x")).status == 200
    with Client(*srv.addr) as c2:
        assert c2.request(req("GET", "/healthz")).status == 503
    t0 = time.monotonic()
    assert srv.proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 2.5
    assert "serving 1500 ms more while the health check reports draining" in srv.log_text()


def test_health_during_drain_without_delay_exits_promptly(spawn_server):
    srv = spawn_server(["--health-path", "/healthz"])
    with Client(*srv.addr) as c:
        assert c.request(req("GET", "/healthz")).status == 200
    rc, elapsed = srv.stop()
    assert rc == 0 and elapsed < 2


# --- config file and environment ------------------------------------------------

def test_config_file_environment_flags_precedence(spawn_server, tmp_path):
    log = tmp_path / "access.log"
    conf = tmp_path / "vial.conf"
    conf.write_text("# operations\n\naccess-log = %s\naccess-log-format = json\n"
                    "log-level = debug\nmetrics-path = /stats\n" % log)
    env = dict(os.environ, VIAL_ACCESS_LOG_FORMAT="combined", VIAL_METRICS_PATH="/m")
    srv = spawn_server(["--config", str(conf), "--log-level", "warn"], env=env)
    with Client(*srv.addr) as c:
        assert c.request(req("GET", "/hello/x")).status == 200
        assert c.request(req("GET", "/m")).status == 200      # environment over file
        assert c.request(req("GET", "/stats")).status == 404
    lines = _wait_lines(str(log), 3)
    assert all(COMBINED.match(l) for l in lines), lines       # environment over file
    srv.stop()
    assert "debug vial:" not in srv.log_text() and "stopped" not in srv.log_text()  # flag over file


def test_config_errors(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("port = 0\nfrobnicate = 1\n")
    p = subprocess.run([conformance_binary(), "--config", str(conf)], capture_output=True, timeout=10)
    assert p.returncode == 2 and (b"bad.conf:2: unknown option frobnicate" in p.stderr), p.stderr
    env = dict(os.environ, VIAL_PORT="http")
    p = subprocess.run([conformance_binary()], capture_output=True, timeout=10, env=env)
    assert p.returncode == 2 and b"VIAL_PORT: --port needs a number 0-65535" in p.stderr, p.stderr


def test_help_lists_the_options():
    p = subprocess.run([conformance_binary(), "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0
    for opt in [b"--access-log PATH", b"--access-log-format combined|json", b"--log-level",
                b"--metrics-path PATH", b"--health-path PATH", b"--[no-]request-id", b"--config FILE"]:
        assert opt in p.stdout, opt
