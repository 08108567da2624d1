"""Listening (issue 11, item 5): --host unix:/path with --unix-mode, stale
socket files, several listeners at once (--listen, repeatable or
comma-separated; VIAL_LISTEN; the config file), and "unix" as the client
address of a Unix-socket client. Each test runs a private server."""

import os
import socket
import stat
import subprocess

import pytest

from conftest import conformance_binary
from listenkit import procs, Proc, tcp_port, unix_get, wait_lines
from httpkit import Client, req

pytestmark = pytest.mark.slow


def start(procs, tmp_path, args, **kw):
    p = Proc(tmp_path, args, **kw)
    procs.append(p)
    return p


@pytest.mark.parametrize("mode_arg,mode", [("0660", 0o660), ("600", 0o600)])
def test_host_unix_serves_logs_and_is_removed(procs, tmp_path, mode_arg, mode):
    sock = str(tmp_path / "app.sock")
    alog = str(tmp_path / "access.log")
    p = start(procs, tmp_path, ["--host", "unix:" + sock, "--unix-mode", mode_arg, "--access-log", alog])
    assert p.wait_listening() == ["unix:" + sock]
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
    status, body, _ = unix_get(sock, "/")
    assert (status, body) == (200, b"vial conformance")
    status, body, _ = unix_get(sock, "/hello/unix")
    assert status == 200
    lines = wait_lines(alog, 2)
    assert all(l.startswith("unix - - [") for l in lines), lines
    assert p.stop() == 0
    assert not os.path.exists(sock), "the socket file outlived a clean exit"


def test_stale_socket_file_is_replaced(procs, tmp_path):
    sock = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)  # bound, never listening, closed: what a killed server leaves
    s.close()
    assert os.path.exists(sock)
    p = start(procs, tmp_path, ["--host", "unix:" + sock])
    p.wait_listening()
    assert "stale" in p.text()
    assert unix_get(sock, "/")[0] == 200
    assert p.stop() == 0


def test_live_socket_is_not_taken(procs, tmp_path):
    sock = str(tmp_path / "live.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(sock)
    other.listen(8)
    try:
        p = start(procs, tmp_path, ["--host", "unix:" + sock])
        rc = p.wait_exit()
        assert rc not in (0, None), p.text()
        assert "already in use" in p.text()
        # the other server keeps its socket file and its clients
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(sock)
        c.close()
    finally:
        other.close()


def test_other_file_is_not_removed(procs, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("keep me")
    p = start(procs, tmp_path, ["--host", "unix:" + str(path)])
    assert p.wait_exit() not in (0, None)
    assert "not a socket" in p.text()
    assert path.read_text() == "keep me"


def test_several_listeners(procs, tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    sock = str(tmp_path / "multi.sock")
    alog = str(tmp_path / "access.log")
    p = start(procs, tmp_path, ["--listen", "unix:%s, 127.0.0.1:0" % sock, "--listen", "[::1]:0",
                                "--access-log", alog])
    listens = p.wait_listening()
    assert len(listens) == 3 and listens[-1] == "unix:" + sock, listens
    v4 = [l for l in listens if l.startswith("http://127.0.0.1:")]
    v6 = [l for l in listens if l.startswith("http://[::1]:")]
    assert len(v4) == 1 and len(v6) == 1, listens
    with Client("127.0.0.1", tcp_port(v4)) as c:
        assert c.request(req("GET", "/v4")).status in (200, 404)
    s6 = socket.create_connection(("::1", int(v6[0].rsplit(":", 1)[1])), timeout=5)
    s6.sendall(b"GET /v6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert s6.recv(64).startswith(b"HTTP/1.1 ")
    s6.close()
    assert unix_get(sock, "/unix")[0] in (200, 404)
    lines = wait_lines(alog, 3)
    addrs = sorted(l.split(" ")[0] for l in lines)
    assert addrs == ["127.0.0.1", "::1", "unix"], lines
    assert p.stop() == 0
    assert not os.path.exists(sock)


def test_listen_from_environment_and_config_file(procs, tmp_path):
    s_env, s_file, s_flag = (str(tmp_path / n) for n in ("env.sock", "file.sock", "flag.sock"))
    conf = tmp_path / "vial.conf"
    conf.write_text("listen = unix:%s\nlisten = 127.0.0.1:0\nunix-mode = 0640\n" % s_file)
    p = start(procs, tmp_path, ["--config", str(conf)])
    listens = p.wait_listening()
    assert "unix:" + s_file in listens and len(listens) == 2, listens
    assert stat.S_IMODE(os.stat(s_file).st_mode) == 0o640
    assert p.stop() == 0

    p = start(procs, tmp_path, [], env={"VIAL_LISTEN": "unix:" + s_env, "VIAL_UNIX_MODE": "0600"})
    assert p.wait_listening() == ["unix:" + s_env]
    assert stat.S_IMODE(os.stat(s_env).st_mode) == 0o600
    assert p.stop() == 0

    # flags over the environment over the file
    p = start(procs, tmp_path, ["--config", str(conf), "--listen", "unix:" + s_flag],
              env={"VIAL_LISTEN": "unix:" + s_env})
    assert p.wait_listening() == ["unix:" + s_flag]
    assert p.stop() == 0


@pytest.mark.parametrize("bad", ["[::1", "127.0.0.1:99999", "unix:", ","])
def test_bad_listen_entry_is_refused(procs, tmp_path, bad):
    p = start(procs, tmp_path, ["--listen", bad])
    assert p.wait_exit() not in (0, None)
    assert "listen" in p.text(), p.text()


def test_bad_unix_mode_is_refused():
    r = subprocess.run([str(conformance_binary()), "--unix-mode", "0999"], capture_output=True, timeout=5)
    assert r.returncode != 0 and b"--unix-mode needs octal" in r.stderr


def test_help_lists_the_options():
    r = subprocess.run([str(conformance_binary()), "--help"], capture_output=True, timeout=5)
    out = r.stdout.decode()
    for opt in ("--listen ADDR", "--unix-mode MODE", "--trusted-proxy CIDR"):
        assert opt in out, out
