"""--trusted-proxy (issue 11, item 7): X-Forwarded-For and X-Forwarded-Proto
are believed only from a trusted peer; the client is the rightmost untrusted
hop (a client's own header cannot be pushed past a proxy that appends);
IPv4, IPv6 and Unix peers. Seen through the access log's remote_addr and
url_for(_external) (/url-for). Each test runs a private server."""

import json
import socket

import pytest

from httpkit import Client, req
from listenkit import Proc, tcp_port, unix_get, wait_lines

pytestmark = pytest.mark.slow


def served(srv, alog, cases):
    """cases: [(xff or None, xfp or None)]; returns the access log's
    remote_addr and the external URL, per case, in order."""
    with Client(*srv.addr) as c:
        for i, (xff, xfp) in enumerate(cases):
            h = [("X-Forwarded-For", v) for v in (xff if isinstance(xff, list) else [xff]) if v is not None]
            if xfp is not None:
                h.append(("X-Forwarded-Proto", xfp))
            r = c.request(req("GET", "/url-for?case=%d" % i, headers=h))
            assert r.status == 200, r
            c_ext = json.loads(r.body)["external"]
            cases[i] = (xff, xfp, c_ext)
    docs = [json.loads(l) for l in wait_lines(alog, len(cases))]
    by_case = {d["target"]: d for d in docs}
    return [(by_case["/url-for?case=%d" % i]["remote_addr"], cases[i][2]) for i in range(len(cases))]


def test_trusted_peer(spawn_server, tmp_path):
    alog = str(tmp_path / "access.json")
    srv = spawn_server(["--access-log", alog, "--access-log-format", "json",
                        "--trusted-proxy", "10.0.0.0/8, 127.0.0.1"])
    got = served(srv, alog, [
        ("203.0.113.7", "https"),
        # a spoof attempt: the client's own header, then what the proxy appended
        ("1.1.1.1, 203.0.113.7", "http"),
        # a chain of trusted proxies is walked through
        ("203.0.113.8, 10.1.2.3, 127.0.0.1", "HTTPS"),
        # two header lines are one list
        (["1.1.1.1", "203.0.113.9"], None),
        # every hop trusted: the leftmost
        ("10.0.0.1, 10.0.0.2", None),
        # IPv6, normalised
        ("2001:DB8::0:1", None),
        # garbage ends the walk: the hop to its right (or the peer)
        ("203.0.113.7, <script>", "javascript"),
        ("<script>, 10.9.9.9", None),
        (None, None),
    ])
    assert got == [
        ("203.0.113.7", "https://localhost/users/42"),
        ("203.0.113.7", "http://localhost/users/42"),
        ("203.0.113.8", "https://localhost/users/42"),
        ("203.0.113.9", "http://localhost/users/42"),
        ("10.0.0.1", "http://localhost/users/42"),
        ("2001:db8::1", "http://localhost/users/42"),
        ("127.0.0.1", "http://localhost/users/42"),
        ("10.9.9.9", "http://localhost/users/42"),
        ("127.0.0.1", "http://localhost/users/42"),
    ]


@pytest.mark.parametrize("trusted", [None, "10.0.0.0/8", "::1/128", "unix"])
def test_untrusted_peer_is_never_believed(spawn_server, tmp_path, trusted):
    alog = str(tmp_path / "access.json")
    args = ["--access-log", alog, "--access-log-format", "json"]
    if trusted:
        args += ["--trusted-proxy", trusted]
    srv = spawn_server(args)
    got = served(srv, alog, [("203.0.113.7", "https"), ("10.0.0.1", "https")])
    assert got == [("127.0.0.1", "http://localhost/users/42")] * 2


def test_ipv6_peer_trusted(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    alog = str(tmp_path / "access.json")
    p = Proc(tmp_path, ["--listen", "[::1]:0", "--access-log", alog, "--access-log-format", "json",
                        "--trusted-proxy", "::1/128"])
    try:
        port = tcp_port(p.wait_listening())
        s = socket.create_connection(("::1", port), timeout=5)
        s.sendall(b"GET /v6 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.4\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
        s.close()
        assert json.loads(wait_lines(alog, 1)[0])["remote_addr"] == "198.51.100.4"
        assert p.stop() == 0
    finally:
        p.kill()


def test_unix_peer_trusted(tmp_path):
    sock = str(tmp_path / "p.sock")
    alog = str(tmp_path / "access.json")
    p = Proc(tmp_path, ["--host", "unix:" + sock, "--access-log", alog, "--access-log-format", "json",
                        "--trusted-proxy", "unix"])
    try:
        p.wait_listening()
        status, body, _ = unix_get(sock, "/url-for", {"X-Forwarded-For": "198.51.100.5",
                                                     "X-Forwarded-Proto": "https", "Host": "example.org"})
        assert status == 200 and json.loads(body)["external"] == "https://example.org/users/42"
        status, _, _ = unix_get(sock, "/plain")
        # lines from two loop threads: matched by target, not by order
        by_target = {d["target"]: d["remote_addr"] for d in map(json.loads, wait_lines(alog, 2))}
        assert by_target == {"/url-for": "198.51.100.5", "/plain": "unix"}
        assert p.stop() == 0
    finally:
        p.kill()


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "nonsense", "10.0.0.0/33"])
def test_bad_trusted_proxy_is_refused(tmp_path, bad):
    p = Proc(tmp_path, ["--port", "0", "--trusted-proxy", bad])
    try:
        assert p.wait_exit() not in (0, None)
        assert "--trusted-proxy" in p.text()
    finally:
        p.kill()
