"""PostgreSQL pool figures in /metrics, over real sockets: the TechEmpower
app (bench/techempower.c) on a real server ($VIAL_TEST_PG, from
tests/services/pg.sh start), its /db view one query per request. The whole
scrape must stay valid Prometheus text with the client's families in it."""
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import conformance_binary
from httpkit import Client, req
from test_ops import parse_exposition

PG = os.environ.get("VIAL_TEST_PG")
pytestmark = pytest.mark.skipif(not PG, reason="VIAL_TEST_PG is not set (tests/services/pg.sh start)")
ROOT = Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def techempower(tmp_path):
    binary = conformance_binary().parents[1] / "bench" / "techempower"
    if not binary.exists():
        pytest.fail("%s not built" % binary)
    subprocess.run(["psql", PG, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(ROOT / "bench" / "techempower.sql")],
                   check=True, stdout=subprocess.DEVNULL)
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([str(binary), "--port", str(port), "--threads", "2", "--metrics-path", "/metrics"],
                            env=dict(os.environ, TECHEMPOWER_PG=PG), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.05)
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _pg(samples, name):
    """The sum over pools of a pg family."""
    vals = [v for (n, _), v in samples.items() if n == name]
    assert vals, name + " missing"
    return sum(vals)


def test_pg_pool_figures(techempower):
    with Client(*techempower) as c:
        r = c.request(req("GET", "/metrics"))
        s0, types = parse_exposition(r.body.decode())
        for name, kind in [("vial_pg_connections", "gauge"), ("vial_pg_waiters", "gauge"),
                           ("vial_pg_queries_total", "counter"), ("vial_pg_batches_total", "counter"),
                           ("vial_pg_connects_total", "counter"), ("vial_pg_connect_failures_total", "counter"),
                           ("vial_pg_broken_total", "counter"), ("vial_pg_retries_total", "counter")]:
            assert types[name] == kind, name
        for _ in range(9):
            assert c.request(req("GET", "/db")).status == 200
        r = c.request(req("GET", "/metrics"))
        s1, _ = parse_exposition(r.body.decode())
    # One loop served this connection: 9 statements, 9 batches (one at a time).
    assert _pg(s1, "vial_pg_queries_total") == _pg(s0, "vial_pg_queries_total") + 9
    assert _pg(s1, "vial_pg_batches_total") == _pg(s0, "vial_pg_batches_total") + 9
    assert _pg(s1, "vial_pg_connections") >= 1
    assert _pg(s1, "vial_pg_connects_total") >= _pg(s1, "vial_pg_connections")
    assert _pg(s1, "vial_pg_connect_failures_total") == 0
    assert _pg(s1, "vial_pg_waiters") == 0
    db = [v for (n, l), v in s1.items() if n == "vial_requests_total" and dict(l)["endpoint"] != "(metrics)"]
    assert db == [9]
