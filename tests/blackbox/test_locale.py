"""Output no locale can change (issue 8 item 2).

The conformance app calls setlocale(LC_ALL, "") first thing, as many C
programs do. Run under LC_ALL=de_DE.UTF-8 (decimal comma, German day and
month names), every byte vial writes must still be the same: the Date header,
Last-Modified, a cookie's Expires, and JSON numbers. Under tr_TR.UTF-8
(whose 'I' is not the capital of 'i'), header names and media types must
still match case-insensitively.
"""

import email.utils
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from httpkit import IMF_FIXDATE, check_common, connect, req

MTIME = 1700000000  # Tue, 14 Nov 2023 22:13:20 GMT


def locale_env(name):
    """The environment that makes <name>.UTF-8 the server's locale, or a skip."""
    run = subprocess.run(["sh", str(REPO_ROOT / "scripts" / "mklocale.sh"), name], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip("%s.UTF-8 cannot be made here (scripts/mklocale.sh; Debian package `locales`)" % name)
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("LC_") or k in ("LANG", "LANGUAGE"):
            del env[k]
    env["LC_ALL"] = name + ".UTF-8"
    if run.stdout.strip():
        env["LOCPATH"] = run.stdout.strip()
    return env


@pytest.fixture(scope="module")
def german_env():
    env = locale_env("de_DE")
    # The test means something only if a C program really gets German names
    # and a decimal comma under this environment.
    probe = subprocess.run(["date", "-u", "-d", "@0", "+%a %b"], env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "Do Jan", probe
    probe = subprocess.run(["printf", "%.2f", "3,25"], env=env, capture_output=True, text=True)
    assert probe.stdout == "3,25", probe
    return env


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("locale-static")
    f = d / "hello.txt"
    f.write_bytes(b"hello\n")
    os.utime(f, (MTIME, MTIME))
    return d


@pytest.fixture(scope="module")
def german_server(german_env, static_dir, server_logdir):
    from conftest import ServerProcess

    env = dict(german_env, CONFORMANCE_STATIC_DIR=str(static_dir))
    srv = ServerProcess(server_logdir, env=env).start()
    yield srv.addr
    srv.kill()


@pytest.fixture(scope="module")
def turkish_server(static_dir, server_logdir):
    """Under tr_TR.UTF-8, glibc's strcasecmp does not fold 'I' to 'i'."""
    from conftest import ServerProcess

    env = dict(locale_env("tr_TR"), CONFORMANCE_STATIC_DIR=str(static_dir))
    srv = ServerProcess(server_logdir, env=env).start()
    yield srv.addr
    srv.kill()


def get(server, target, method="GET", body=b"", headers=()):
    with connect(server) as c:
        return c.request(req(method, target, headers=headers, body=body), method=method)


def raw_date_line(r):
    lines = [l for l in r.raw_head.split(b"\r\n") if l.lower().startswith(b"date:")]
    assert len(lines) == 1, r.raw_head
    return lines[0]


def test_date_header_is_english_imf_fixdate(german_server):
    r = get(german_server, "/")
    assert r.status == 200, r
    check_common(r)
    line = raw_date_line(r)
    assert re.match(rb"^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$", line), line


def test_json_numbers_keep_the_decimal_point(german_server):
    body = b'{"x": 3.25, "y": 1.0, "z": 1e300, "w": 0.00001, "n": -0.5, "i": 42, ' \
           b'"big": 123456789012345678901234567890, "neg": -9223372036854775809}'
    r = get(german_server, "/json", "POST", body, [("Content-Type", "application/json")])
    assert r.status == 200, r
    assert r.body == (b'{"json":{"x":3.25,"y":1.0,"z":1e+300,"w":1e-05,"n":-0.5,"i":42,'
                      b'"big":123456789012345678901234567890,"neg":-9223372036854775809}}'), r.body


def test_last_modified_is_english(german_server):
    r = get(german_server, "/static/hello.txt")
    assert r.status == 200, r
    assert r.body == b"hello\n"
    want = email.utils.formatdate(MTIME, usegmt=True)
    assert want == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert r.header_list("last-modified") == [want], r
    assert IMF_FIXDATE.match(raw_date_line(r)[6:].decode()), r
    # and it is understood back: a conditional GET gives 304
    r = get(german_server, "/static/hello.txt", headers=[("If-Modified-Since", want)])
    assert r.status == 304, r


def test_cookie_expires_is_english(german_server):
    r = get(german_server, "/cookies/delete?name=sid")
    assert r.status == 200, r
    cookies = r.header_list("set-cookie")
    assert len(cookies) == 1, r
    assert "; Expires=Thu, 01 Jan 1970 00:00:00 GMT" in cookies[0], cookies


# Header names and media types are ASCII case-insensitive whatever LC_CTYPE
# says (vial used strcasecmp, which in tr_TR.UTF-8 does not match 'I' and 'i').

def test_turkish_header_names_match(turkish_server):
    want = email.utils.formatdate(MTIME, usegmt=True)
    r = get(turkish_server, "/static/hello.txt", headers=[("IF-MODIFIED-SINCE", want)])
    assert r.status == 304, r
    r = get(turkish_server, "/static/hello.txt", headers=[("if-modified-since", want)])
    assert r.status == 304, r


def test_turkish_media_type_matches(turkish_server):
    r = get(turkish_server, "/json", "POST", b'{"i": 1.5}', [("Content-Type", "APPLICATION/JSON")])
    assert r.status == 200, r
    assert r.body == b'{"json":{"i":1.5}}', r.body
    check_common(r)
