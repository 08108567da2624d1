"""The TechEmpower app (bench/techempower.c) on PostgreSQL ($VIAL_TEST_PG,
from tests/services/pg.sh start), checked against the table it reads:
what bench/pg-limit.sh measures must be a correct implementation. Also its
pool size: 2 connections per loop thread unless $TECHEMPOWER_PG_CONNS says
otherwise (bench/techempower_db.c says why)."""
import html
import os
import re
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import conformance_binary
from test_metrics_pg import PG, ROOT, _free_port
from test_ops import parse_exposition

pytestmark = pytest.mark.skipif(not PG, reason="VIAL_TEST_PG is not set (tests/services/pg.sh start)")


def _psql(sql):
    return subprocess.run(["psql", PG, "-Atc", sql], check=True, capture_output=True, text=True).stdout


class _App:
    def __init__(self, tmp_path, env):
        binary = conformance_binary().parents[1] / "bench" / "techempower"
        if not binary.exists():
            pytest.fail("%s not built" % binary)
        subprocess.run(["psql", PG, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(ROOT / "bench" / "techempower.sql")],
                       check=True, stdout=subprocess.DEVNULL)
        self.port = _free_port()
        self.logpath = tmp_path / "server.log"
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--threads", "1", "--metrics-path", "/metrics"],
            env=dict(os.environ, TECHEMPOWER_PG=PG, **env), stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.logpath.read_text()
                time.sleep(0.05)
        self.url = "http://127.0.0.1:%d" % self.port

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()

    def max_connections_under_load(self, clients=32, seconds=1.5):
        """The most pool connections seen while `clients` keep /db busy."""
        stop = time.monotonic() + seconds
        errors = []

        def hammer():
            with requests.Session() as s:
                while time.monotonic() < stop:
                    r = s.get(self.url + "/db", timeout=10)
                    if r.status_code != 200:
                        errors.append(r.status_code)

        threads = [threading.Thread(target=hammer) for _ in range(clients)]
        for t in threads:
            t.start()
        most = 0
        while any(t.is_alive() for t in threads):
            samples, _ = parse_exposition(requests.get(self.url + "/metrics", timeout=10).text)
            most = max(most, sum(v for (n, _), v in samples.items() if n == "vial_pg_connections"))
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert not errors
        return most


@pytest.fixture
def app(tmp_path):
    a = _App(tmp_path, {})
    yield a
    a.close()


def test_db_rows_are_the_tables(app):
    """Each /db row is the World row of its id (the id is sent as text)."""
    rows = [requests.get(app.url + "/db", timeout=10).json() for _ in range(40)]
    table = dict(tuple(map(int, line.split("|"))) for line in
                 _psql("SELECT id, randomNumber FROM World WHERE id IN (%s)" %
                       ",".join(str(r["id"]) for r in rows)).split())
    for r in rows:
        assert set(r) == {"id", "randomNumber"} and 1 <= r["id"] <= 10000
        assert table[r["id"]] == r["randomNumber"], r
    assert len({r["id"] for r in rows}) > 1  # random ids, not one
    many = requests.get(app.url + "/queries?queries=20", timeout=10).json()
    table = dict(tuple(map(int, line.split("|"))) for line in
                 _psql("SELECT id, randomNumber FROM World WHERE id IN (%s)" %
                       ",".join(str(r["id"]) for r in many)).split())
    assert len(many) == 20 and all(table[r["id"]] == r["randomNumber"] for r in many)


def test_fortunes_sorted_and_escaped(app):
    body = requests.get(app.url + "/fortunes", timeout=10).text
    cells = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", body)
    messages = [html.unescape(m) for _, m in cells]
    stored = _psql("SELECT count(*) FROM Fortune").strip()
    assert len(cells) == int(stored) + 1
    assert messages == sorted(messages)  # code point order = strcmp's on UTF-8
    assert "<script>" not in body
    assert "Additional fortune added at request time." in messages


def test_two_connections_by_default(app):
    assert 1 <= app.max_connections_under_load() <= 2


def test_connections_from_the_environment(tmp_path):
    a = _App(tmp_path, {"TECHEMPOWER_PG_CONNS": "3"})
    try:
        assert a.max_connections_under_load() == 3
    finally:
        a.close()
