"""The event-loop backend (issue 13, item 2): --backend and VIAL_BACKEND
choose epoll or io_uring, the listening line names the one in use, and the
server serves on either (the whole black-box suite also runs with
VIAL_BACKEND=io_uring in scripts/test.sh). Where the kernel refuses
io_uring, the server says so and serves on epoll.
"""

import os
import re
import socket

import pytest

from httpkit import req, roundtrip

LISTENING = re.compile(r"vial: listening on \S+ \(\d+ loop threads, \d+ workers\) on (\S+)")


def backend_of(srv):
    m = LISTENING.search(srv.log_text())
    assert m, srv.log_text()
    return m.group(1)


def io_uring_allowed():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip() == "0"
    except OSError:
        return True  # kernels before 6.6 have no such switch


def serves(srv):
    r = roundtrip(srv.addr, req("GET", "/hello/uring"))
    assert r.status == 200, r
    assert b"uring" in r.body, r
    # pipelined requests on one connection
    with socket.create_connection(srv.addr, timeout=5) as s:
        s.sendall(req("GET", "/hello/uring") * 8)
        got = b""
        while got.count(b"HTTP/1.1 200") < 8:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk


@pytest.mark.parametrize("how", ["flag", "env"])
def test_io_uring_starts_says_so_and_serves(spawn_server, how):
    env = dict(os.environ)
    env.pop("VIAL_BACKEND", None)
    args = ["--threads=2"]
    if how == "flag":
        args.append("--backend=io_uring")
    else:
        env["VIAL_BACKEND"] = "io_uring"
    srv = spawn_server(args, env=env)
    if not io_uring_allowed():
        assert "io_uring unavailable" in srv.log_text()
        assert backend_of(srv) == "epoll"
    else:
        assert backend_of(srv) == "io_uring"
    serves(srv)


def test_epoll_is_the_default_and_says_so(spawn_server):
    env = dict(os.environ)
    env.pop("VIAL_BACKEND", None)
    srv = spawn_server(["--threads=1"], env=env)
    assert backend_of(srv) == "epoll"
    serves(srv)
    srv2 = spawn_server(["--threads=1", "--backend", "epoll"], env=dict(env, VIAL_BACKEND="io_uring"))
    assert backend_of(srv2) == "epoll"  # the flag wins over the variable
    serves(srv2)


def refuse_io_uring_setup():
    """preexec: a seccomp filter that fails io_uring_setup(2) with EPERM, as
    container runtimes' default profiles do."""
    import ctypes
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    nr_io_uring_setup = 425
    prog = b"".join([
        struct.pack("HBBI", 0x20, 0, 0, 0),                   # ld [nr]
        struct.pack("HBBI", 0x15, 0, 1, nr_io_uring_setup),   # jeq io_uring_setup
        struct.pack("HBBI", 0x06, 0, 0, 0x00050000 | 1),      # ret ERRNO(EPERM)
        struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000),          # ret ALLOW
    ])
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxP", 4, ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter names x86-64's syscall number")
def test_refused_io_uring_falls_back_to_epoll(spawn_server):
    env = dict(os.environ, VIAL_BACKEND="io_uring")
    srv = spawn_server(["--threads=2"], preexec=refuse_io_uring_setup, env=env)
    log = srv.log_text()
    assert "io_uring unavailable (Operation not permitted): using epoll" in log, log
    assert log.count("io_uring unavailable") == 1, log  # once, not once per loop
    assert backend_of(srv) == "epoll"
    serves(srv)
