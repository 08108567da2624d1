"""Templates rendered by the conformance app over real sockets (vial_render):
context, url_for, flashed messages, request/session/g globals, blueprint
folder fallback, autoescaping of user input, a missing template (500 naming
it in the log), a syntax error that stops the start (NAME:LINE), and the
debug mode's reload of a changed file.

The app's folders come from $CONFORMANCE_TEMPLATES / $CONFORMANCE_BP_TEMPLATES
(examples/conformance/templates.c)."""

import os
import subprocess
import time

import pytest

from appkit import get
from conftest import ServerProcess, conformance_binary
import tlskit

HTML = "text/html; charset=utf-8"

APP_TEMPLATES = {
    "index.html": "<p>Hello {{ name }}</p>\n<ul>{% for i in items %}<li>{{ i }}</li>{% endfor %}</ul>",
    "links.html": "{{ url_for('tmpl', name='index.html', name2='a b') }}|"
                  "{{ url_for('pages.page', name='bp_only.html') }}|"
                  "{{ url_for('tmpl', name='x', _external=true) }}",
    "badlink.html": "ok\n{{ url_for('no_such_endpoint') }}",
    "flash.html": "{% for cat, msg in get_flashed_messages(with_categories=true) %}"
                  "<li class=\"{{ cat }}\">{{ msg }}</li>{% endfor %}",
    "globals.html": "{{ request.method }}|{{ request.path }}|{{ request.args.q }}|"
                    "{{ request.headers['x-custom'] }}|{{ request.cookies.k }}|{{ request.remote_addr }}|"
                    "{{ request.endpoint }}|{{ session.user }}|{{ 'user' in session }}|{{ g.user }}",
    "shared.html": "from the app",
    "xss.html": "<a title=\"{{ name }}\">{{ name }}</a>{{ name|safe if false }}",
    "reload.html": "version 1",
    "plain.txt": "{{ name }}",
}
BP_TEMPLATES = {
    "shared.html": "from the blueprint",
    "bp_only.html": "blueprint only, {{ name }}",
}


def write_all(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def server_env(tmp, debug=False):
    env = dict(os.environ)
    env["CONFORMANCE_TEMPLATES"] = str(tmp / "app")
    env["CONFORMANCE_BP_TEMPLATES"] = str(tmp / "bp")
    env.pop("VIAL_DEBUG", None)
    if debug:
        env["VIAL_DEBUG"] = "1"
    return env


@pytest.fixture(scope="module")
def tdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("templates")
    write_all(tmp / "app", APP_TEMPLATES)
    write_all(tmp / "bp", BP_TEMPLATES)
    return tmp


@pytest.fixture(scope="module")
def tserver(tdir, server_logdir):
    srv = ServerProcess(server_logdir, env=server_env(tdir)).start()
    yield srv
    srv.kill()


def cookie_of(r):
    """The session cookie a response set, as a Cookie header."""
    for v in r.header_list("set-cookie"):
        if v.startswith("session="):
            return ("Cookie", v.split(";", 1)[0])
    raise AssertionError("no session cookie in %r" % r)


def test_render_with_context(tserver):
    r = get(tserver.addr, "/tmpl/index.html?name=Ada&item=one&item=two")
    assert r.status == 200, r
    assert r.header("content-type") == HTML
    assert r.body == b"<p>Hello Ada</p>\n<ul><li>one</li><li>two</li></ul>"
    r = get(tserver.addr, "/tmpl/plain.txt?name=%3Cb%3E")
    assert r.status == 200 and r.body == b"<b>", r  # .txt: not autoescaped
    assert r.header("content-type") == "text/plain; charset=utf-8"


def test_autoescape_user_input(tserver):
    r = get(tserver.addr, "/tmpl/xss.html?name=%22%3E%3Cscript%3Ealert(%27x%27)%3C/script%3E")
    assert r.status == 200, r
    assert b"<script>" not in r.body
    assert r.body == (b'<a title="&#34;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;">'
                      b"&#34;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</a>")


def test_url_for_in_template(tserver):
    r = get(tserver.addr, "/tmpl/links.html")
    assert r.status == 200, r
    assert r.body == (b"/tmpl/index.html?name2=a+b|/pages/bp_only.html|%s://localhost/tmpl/x" % tlskit.scheme().encode())
    n = tserver.log_size()
    r = get(tserver.addr, "/tmpl/badlink.html")
    assert r.status == 500, r
    log = tserver.log_text(n)
    assert "badlink.html:2:" in log and "no_such_endpoint" in log, log


def test_flashed_messages(tserver):
    r = get(tserver.addr, "/tmpl-flash")
    assert r.status == 200, r
    cookie = cookie_of(r)
    r = get(tserver.addr, "/tmpl/flash.html", headers=[cookie])
    assert r.status == 200, r
    assert r.body == (b'<li class="error">&lt;b&gt;bad&lt;/b&gt; input</li>'
                      b'<li class="message">saved</li>')
    # shown once: the render took them out of the session
    r = get(tserver.addr, "/tmpl/flash.html", headers=[cookie_of(r)])
    assert r.status == 200 and r.body == b"", r


def test_session_request_and_g(tserver):
    r = get(tserver.addr, "/tmpl-login?user=%3Cada%3E")
    assert r.status == 200, r
    session = cookie_of(r)
    cookie = ("Cookie", session[1] + "; k=cookie-value")
    r = get(tserver.addr, "/tmpl/globals.html?q=query", headers=[cookie, ("X-Custom", "hdr"), ("X-User", "bob")])
    assert r.status == 200, r
    assert r.body == (b"GET|/tmpl/globals.html|query|hdr|cookie-value|127.0.0.1|tmpl|"
                      b"&lt;ada&gt;|True|bob"), r
    r = get(tserver.addr, "/tmpl/globals.html")
    assert r.body == b"GET|/tmpl/globals.html||||127.0.0.1|tmpl||False|anonymous", r


def test_blueprint_folder_fallback(tserver):
    r = get(tserver.addr, "/pages/bp_only.html?name=x")
    assert r.status == 200 and r.body == b"blueprint only, x", r
    # the app's folder comes first, for the blueprint's views too (Flask's order)
    r = get(tserver.addr, "/pages/shared.html")
    assert r.status == 200 and r.body == b"from the app", r
    r = get(tserver.addr, "/tmpl/bp_only.html?name=y")
    assert r.status == 200 and r.body == b"blueprint only, y", r


def test_missing_template_is_500_named_in_log(tserver):
    n = tserver.log_size()
    r = get(tserver.addr, "/tmpl/no_such_page.html")
    assert r.status == 500, r
    deadline = time.monotonic() + 2
    while "no_such_page.html" not in tserver.log_text(n) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "no_such_page.html" in tserver.log_text(n), tserver.log_text(n)


def test_syntax_error_stops_the_start(tmp_path):
    write_all(tmp_path / "app", {"good.html": "fine"})
    (tmp_path / "app" / "sub").mkdir()
    (tmp_path / "app" / "sub" / "broken.html").write_text("one\ntwo\n{% for x in %}{% endfor %}\n")
    (tmp_path / "bp").mkdir()
    p = subprocess.run([str(conformance_binary()), "--host", "127.0.0.1", "--port", "0"],
                       env=server_env(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode != 0, out
    assert "sub/broken.html:3:" in out, out
    assert "listening" not in out, out


def test_debug_reload(tmp_path, server_logdir, tserver, tdir):
    write_all(tmp_path / "app", {"reload.html": "version 1"})
    (tmp_path / "bp").mkdir()
    srv = ServerProcess(server_logdir, env=server_env(tmp_path, debug=True)).start()
    try:
        assert get(srv.addr, "/tmpl/reload.html").body == b"version 1"
        assert get(tserver.addr, "/tmpl/reload.html").body == b"version 1"
        (tmp_path / "app" / "reload.html").write_text("version 2")
        (tdir / "app" / "reload.html").write_text("version 2")
        time.sleep(1.2)  # files are looked at once a second
        r = get(srv.addr, "/tmpl/reload.html")
        assert r.status == 200 and r.body == b"version 2", r
        # without --debug the compiled template stays
        assert get(tserver.addr, "/tmpl/reload.html").body == b"version 1"
    finally:
        srv.kill()


def test_concurrent_first_renders(tserver, tdir):
    """Many connections render templates nobody rendered before, at once: the
    per-name cache fills from several loop threads without a lock on reads."""
    import threading
    for i in range(8):
        (tdir / "app" / ("c%d.html" % i)).write_text("page %d {{ name }}" % i)
    results, errors = [], []

    def worker(k):
        try:
            for j in range(4):
                i = (k + j) % 8
                r = get(tserver.addr, "/tmpl/c%d.html?name=n%d" % (i, k))
                results.append((r.status, r.body, i, k))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert len(results) == 64
    for status, body, i, k in results:
        assert status == 200 and body == ("page %d n%d" % (i, k)).encode(), (status, body)
