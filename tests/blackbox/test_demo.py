"""Black-box tests of examples/demo over real sockets: its pages, sessions,
CSRF, the JSON API, the websocket and the SSE feed.

Runs against SQLite (a temp file) always, and PostgreSQL too when
VIAL_TEST_PG holds a conninfo (scripts/test.sh starts a throwaway server:
tests/services/pg.sh start). The database may hold other runs' rows, so
every test makes its own users and tasks.
"""
import asyncio
import json
import os
import re
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import websockets
from websockets.exceptions import InvalidStatusCode

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("VIAL_BUILD_DIR") or REPO / "build")
DEMO = BUILD / "examples" / "demo"
TIMEOUT = 5


def start(tmp, backend):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEMO_DB")}
    if backend == "pg":
        if not os.environ.get("VIAL_TEST_PG"):
            pytest.skip("VIAL_TEST_PG is not set (tests/services/pg.sh start)")
        env["DATABASE_URL"] = os.environ["VIAL_TEST_PG"]
    log = open(tmp / "stderr.log", "wb")
    p = subprocess.Popen([str(DEMO), "--port", "0", "--db", str(tmp / "demo.db"),
                          "--dir", str(REPO / "examples" / "demo")],
                         stdout=subprocess.PIPE, bufsize=0, stderr=log, env=env)
    deadline, seen = time.monotonic() + 10, b""
    while time.monotonic() < deadline and p.poll() is None:
        if select.select([p.stdout], [], [], 0.5)[0]:
            line = p.stdout.readline()
            seen += line
            m = re.search(rb"point your browser at (http://127\.0\.0\.1:\d+)/", line)
            if m:
                return p, m.group(1).decode()
    p.kill()
    raise AssertionError("the demo did not start: %r" % seen)


@pytest.fixture(scope="module", params=["sqlite", "pg"])
def base(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    p, url = start(tmp, request.param)
    yield url
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=4 * TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    # A clean stop; under ASan/UBSan (VIAL_SANITIZED=1) no report either.
    err = (tmp / "stderr.log").read_text(errors="replace")
    assert p.returncode == 0, "the demo exited with %s:\n%s" % (p.returncode, err[-4000:])
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in err, err[-4000:]


def csrf(s, url):
    r = s.get(url, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def user(base, name=None, password="s3cret-pw"):
    """A new session, registered and logged in as a fresh user."""
    s = requests.Session()
    name = name or "u" + uuid.uuid4().hex[:10]
    r = s.post(base + "/register", data={"csrf_token": csrf(s, base + "/register"),
                                         "name": name, "password": password},
               allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 303 and r.headers["Location"] == "/board", r.text
    s.name = name
    # The API is authenticated by the session cookie, so the page's script
    # sends the CSRF token in a header: so do we.
    board = s.get(base + "/board", timeout=TIMEOUT)
    s.first_page = board.text
    s.headers["X-CSRFToken"] = re.search(r'name="csrf-token" content="([^"]+)"',
                                         board.text).group(1)
    return s


def new_task(s, base, **fields):
    r = s.post(base + "/api/tasks", json=fields, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()


def test_prints_where_to_point_the_browser(base):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)


def test_api_requires_login(base):
    s = requests.Session()  # a session with a CSRF token, but no user
    s.headers["X-CSRFToken"] = csrf(s, base + "/login")
    for method, path in (("GET", "/api/tasks"), ("POST", "/api/tasks"),
                         ("PATCH", "/api/tasks/1"), ("DELETE", "/api/tasks/1")):
        r = s.request(method, base + path, json={}, timeout=TIMEOUT)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["Content-Type"] == "application/json"
        assert r.json() == {"error": "login required"}


def test_board_redirects_to_login(base):
    r = requests.get(base + "/board", allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 303 and r.headers["Location"] == "/login"


def test_register_login_logout(base):
    s = user(base, password="correct horse")
    assert "Welcome, %s!" % s.name in s.first_page
    assert '<span id="whoami">%s</span>' % s.name in s.first_page
    # The stored password is a hash: a wrong one is refused.
    t = requests.Session()
    r = t.post(base + "/login", data={"csrf_token": csrf(t, base + "/login"), "name": s.name,
                                      "password": "wrong"}, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 401 and "Wrong name or password." in r.text
    r = t.post(base + "/login", data={"csrf_token": csrf(t, base + "/login"), "name": "nobody-x",
                                      "password": "correct horse"}, timeout=TIMEOUT)
    assert r.status_code == 401 and "Wrong name or password." in r.text
    r = t.post(base + "/login", data={"csrf_token": csrf(t, base + "/login"), "name": s.name,
                                      "password": "correct horse"}, allow_redirects=False,
               timeout=TIMEOUT)
    assert r.status_code == 303, r.text
    assert t.get(base + "/api/tasks", timeout=TIMEOUT).status_code == 200
    r = t.post(base + "/logout", data={"csrf_token": csrf(t, base + "/board")},
               allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert t.get(base + "/api/tasks", timeout=TIMEOUT).status_code == 401


def test_register_rejects_taken_and_bad_names(base):
    s = user(base)
    t = requests.Session()
    for name, status in ((s.name, 409), ("", 400), ("no spaces", 400)):
        r = t.post(base + "/register", data={"csrf_token": csrf(t, base + "/register"),
                                             "name": name, "password": "long enough"},
                   allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == status, (name, r.text)


def test_forms_without_csrf_token_are_refused(base):
    s = user(base)
    token = s.headers.pop("X-CSRFToken")
    for path, data in (("/tasks", {"title": "forged"}), ("/logout", {}),
                       ("/tasks", {"title": "forged", "csrf_token": "0" * 32})):
        r = s.post(base + path, data=data, allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 400 and "CSRF" in r.text, (path, r.text)
    # The JSON API too: a cookie-authenticated script must send the token.
    for method, path in (("POST", "/api/tasks"), ("PATCH", "/api/tasks/1"),
                         ("DELETE", "/api/tasks/1")):
        r = s.request(method, base + path, json={"title": "forged"}, timeout=TIMEOUT)
        assert r.status_code == 400 and "CSRF" in r.json()["error"], (method, r.text)
    s.headers["X-CSRFToken"] = token
    titles = [t["title"] for t in s.get(base + "/api/tasks", timeout=TIMEOUT).json()]
    assert "forged" not in titles
    # A fresh client without any session is refused as well.
    r = requests.post(base + "/login", data={"name": "x", "password": "y"}, timeout=TIMEOUT)
    assert r.status_code == 400


def test_form_adds_a_task_and_the_board_escapes_it(base):
    s = user(base)
    title = "<b>bold</b> & %s" % uuid.uuid4().hex
    r = s.post(base + "/tasks", data={"csrf_token": csrf(s, base + "/board"), "title": title,
                                      "assignee": "bob"}, allow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 303 and r.headers["Location"] == "/board"
    page = s.get(base + "/board", timeout=TIMEOUT).text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; " in page and "<b>bold</b>" not in page
    assert "Added task #" in page


def test_api_crud(base):
    s = user(base)
    t = new_task(s, base, title="Write docs", assignee="ann")
    assert t["title"] == "Write docs" and t["status"] == "todo"
    assert t["assignee"] == "ann" and t["created_by"] == s.name and isinstance(t["id"], int)
    url = base + "/api/tasks/%d" % t["id"]
    assert t in s.get(base + "/api/tasks", timeout=TIMEOUT).json()
    assert s.get(url, timeout=TIMEOUT).json() == t
    r = s.patch(url, json={"status": "doing", "assignee": None}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json() == dict(t, status="doing", assignee=None)
    r = s.patch(url, json={"title": "Write the docs"}, timeout=TIMEOUT)
    assert r.json()["title"] == "Write the docs" and r.json()["status"] == "doing"
    assert s.delete(url, timeout=TIMEOUT).status_code == 204
    for r in (s.get(url, timeout=TIMEOUT), s.delete(url, timeout=TIMEOUT),
              s.patch(url, json={"status": "done"}, timeout=TIMEOUT)):
        assert r.status_code == 404 and r.json() == {"error": "no such task"}


@pytest.mark.parametrize("body, field", [
    ({}, "title"),
    ({"title": ""}, "title"),
    ({"title": 7}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": "\u00e9" * 201}, "title"),
    ({"title": "line\nbreak"}, "title"),
    ({"title": "ok", "status": "later"}, "status"),
    ({"title": "ok", "status": None}, "status"),
    ({"title": "ok", "assignee": 3}, "assignee"),
    ({"title": "ok", "assignee": "y" * 65}, "assignee"),
    ([1, 2], "body"),
])
def test_api_validation_names_the_field(base, body, field):
    s = user(base)
    r = s.post(base + "/api/tasks", json=body, timeout=TIMEOUT)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["field"] == field and field in r.json()["error"]
    t = new_task(s, base, title="\u00e9" * 200)  # characters, not bytes
    r = s.patch(base + "/api/tasks/%d" % t["id"], json=body, timeout=TIMEOUT)
    if body == {}:
        assert r.status_code == 200  # a PATCH may leave every field alone
    else:
        assert r.status_code == 400 and r.json()["field"] == field, r.text


def test_api_bad_json_is_a_json_4xx(base):
    s = user(base)
    r = s.post(base + "/api/tasks", data=b'{"title":', timeout=TIMEOUT,
               headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    r = s.post(base + "/api/tasks", data=b"title=x", timeout=TIMEOUT,
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_pages_and_api_are_compressed(base):
    s = user(base)
    for i in range(10):
        new_task(s, base, title="compress me %d" % i)
    for path in ("/board", "/api/tasks"):
        r = s.get(base + path, headers={"Accept-Encoding": "gzip"}, timeout=TIMEOUT)
        assert r.status_code == 200 and r.headers.get("Content-Encoding") == "gzip", path
        assert "compress me 9" in r.text
        assert "Accept-Encoding" in r.headers["Vary"]


def test_static_files_have_caching_headers(base):
    r = requests.get(base + "/static/app.css?v=1", timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/css")
    assert r.headers["Cache-Control"] == "public, max-age=86400"
    etag = r.headers["ETag"]
    r = requests.get(base + "/static/board.js", headers={"If-None-Match": "x"}, timeout=TIMEOUT)
    assert r.status_code == 200 and "javascript" in r.headers["Content-Type"]
    r = requests.get(base + "/static/app.css", headers={"If-None-Match": etag}, timeout=TIMEOUT)
    assert r.status_code == 304


def ws_url(base):
    return base.replace("http://", "ws://") + "/ws"


def cookie_header(s):
    return "; ".join("%s=%s" % (c.name, c.value) for c in s.cookies)


def test_websocket_needs_login(base):
    async def go():
        with pytest.raises(InvalidStatusCode) as e:
            async with websockets.connect(ws_url(base), open_timeout=TIMEOUT):
                pass
        assert e.value.status_code == 403
    asyncio.run(asyncio.wait_for(go(), 3 * TIMEOUT))


def test_websocket_hears_every_change(base):
    s, other = user(base), user(base)

    async def go():
        async with websockets.connect(ws_url(base), open_timeout=TIMEOUT,
                                      extra_headers={"Cookie": cookie_header(s)}) as ws:
            await asyncio.sleep(0.2)  # joined the group
            loop = asyncio.get_running_loop()
            t = await loop.run_in_executor(None, lambda: new_task(other, base, title="live"))
            url = base + "/api/tasks/%d" % t["id"]
            await loop.run_in_executor(
                None, lambda: other.patch(url, json={"status": "done"}, timeout=TIMEOUT))
            await loop.run_in_executor(None, lambda: other.delete(url, timeout=TIMEOUT))
            got = []
            while len(got) < 3:
                m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                if m["id"] == t["id"]:
                    got.append(m["event"])
            assert got == ["created", "updated", "deleted"]
    asyncio.run(asyncio.wait_for(go(), 6 * TIMEOUT))


def sse_events(r):
    """The events of a streamed response, as dicts of their fields."""
    ev = {}
    for line in r.iter_lines(decode_unicode=True):
        if not line:
            if ev:
                yield ev
            ev = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            ev[name] = value[1:] if value.startswith(" ") else value


def test_sse_feed_streams_activity(base):
    s = user(base)
    assert requests.get(base + "/events", timeout=TIMEOUT).status_code == 401
    title = "feed %s" % uuid.uuid4().hex
    with s.get(base + "/events", stream=True, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        t = new_task(user(base), base, title=title)
        deadline = time.monotonic() + TIMEOUT
        for ev in sse_events(r):
            if title in ev.get("data", ""):
                at, text = ev["data"].split(" ", 1)
                assert abs(int(at) - time.time()) < 60
                assert text.endswith('created #%d "%s"' % (t["id"], title))
                seen = int(ev["id"])
                break
            assert time.monotonic() < deadline, "no activity line for the new task"
    # A reconnect with Last-Event-ID gets what came after that event first.
    with s.get(base + "/events", stream=True, timeout=TIMEOUT,
               headers={"Last-Event-ID": str(seen - 1)}) as r:
        ev = next(sse_events(r))
        assert int(ev["id"]) == seen and title in ev["data"]
