"""The TechEmpower app (bench/techempower.c) on SQLite, checked against the
benchmark's rules: what bench/ measures must be a correct implementation.

/fortunes is rendered through bench/templates/fortunes.html (issue 10: the
page through a template); the rules want every message escaped, the extra
fortune added at request time and the rows sorted by message.
"""

import html
import json
import os
import re

import pytest
import requests

from conftest import ServerProcess, conformance_binary


def techempower_binary():
    return conformance_binary().parent.parent / "bench" / "techempower"


@pytest.fixture(scope="module")
def te(server_logdir, tmp_path_factory):
    db = tmp_path_factory.mktemp("te") / "te.db"
    env = dict(os.environ, TECHEMPOWER_SQLITE=str(db))
    srv = ServerProcess(server_logdir, ["--threads", "1"], env=env, binary=techempower_binary()).start()
    yield "http://%s:%d" % srv.addr
    rc, _ = srv.stop()
    assert rc == 0, srv.log_text()


def test_plaintext_and_json(te):
    r = requests.get(te + "/plaintext", timeout=10)
    assert r.status_code == 200 and r.text == "Hello, World!"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "Server" in r.headers and "Date" in r.headers
    r = requests.get(te + "/json", timeout=10)
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"message": "Hello, World!"}


def test_db_and_queries(te):
    row = requests.get(te + "/db", timeout=10).json()
    assert set(row) == {"id", "randomNumber"} and 1 <= row["id"] <= 10000
    rows = requests.get(te + "/queries?queries=20", timeout=10).json()
    assert len(rows) == 20
    for row in rows:
        assert set(row) == {"id", "randomNumber"} and 1 <= row["id"] <= 10000
    assert len(requests.get(te + "/queries?queries=foo", timeout=10).json()) == 1
    assert len(requests.get(te + "/queries?queries=501", timeout=10).json()) == 500


def test_fortunes_through_the_template(te):
    r = requests.get(te + "/fortunes", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    body = r.text
    assert body.startswith("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>")
    assert body.endswith("</table></body></html>")
    assert "<script>" not in body  # the stored XSS row is escaped
    cells = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", body)
    messages = [html.unescape(m) for _, m in cells]
    assert len(cells) == 13
    assert "Additional fortune added at request time." in messages
    assert '<script>alert("This should not be displayed in a browser alert box.");</script>' in messages
    assert messages == sorted(messages)
    assert "フレームワークのベンチマーク" in messages  # UTF-8 kept


def test_updates(te):
    rows = requests.get(te + "/updates?queries=5", timeout=10).json()
    assert len(rows) == 5
    for row in rows:
        assert set(row) == {"id", "randomNumber"} and 1 <= row["randomNumber"] <= 10000
