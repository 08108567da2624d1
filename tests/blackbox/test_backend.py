"""The event-loop backend (issue 13, item 2): io_uring by default, epoll by
--backend or VIAL_BACKEND; the listening line (and the metric
vial_event_loop_backend) names the one in use, and the server serves on
either (scripts/test.sh runs the whole black-box suite on the default and
again with VIAL_BACKEND=epoll). Where the kernel or a sandbox refuses
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
    """Whether this process may make a ring (the servers it starts inherit
    its seccomp filter and the sysctl): asked of the kernel where the
    system call's number is known, else read from the sysctl."""
    if os.uname().machine == "x86_64":
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)  # struct io_uring_params
        fd = libc.syscall(425, 4, params)  # io_uring_setup
        if fd >= 0:
            os.close(fd)
        return fd >= 0
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip() == "0"
    except OSError:
        return True  # kernels before 6.6 have no such switch


def metrics_backends(srv):
    r = roundtrip(srv.addr, req("GET", "/metrics"))
    assert r.status == 200, r
    return re.findall(rb'vial_event_loop_backend\{loop="\d+",backend="(\w+)"\} 1', r.body)


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


def choose(how, name):
    """The arguments and environment that choose backend name: by the
    flag, by the variable, or (name None) neither."""
    env = dict(os.environ)
    env.pop("VIAL_BACKEND", None)
    args = ["--threads=2"]
    if how == "flag":
        args.append("--backend=" + name)
    elif how == "env":
        env["VIAL_BACKEND"] = name
    return args, env


@pytest.mark.parametrize("how", ["flag", "env"])
def test_io_uring_starts_says_so_and_serves(spawn_server, how):
    args, env = choose(how, "io_uring")
    srv = spawn_server(args, env=env)
    if not io_uring_allowed():
        assert "io_uring unavailable" in srv.log_text()
        assert backend_of(srv) == "epoll"
    else:
        assert backend_of(srv) == "io_uring"
    serves(srv)


def test_io_uring_is_the_default_and_says_so(spawn_server):
    args, env = choose("default", None)
    srv = spawn_server(args + ["--metrics-path=/metrics"], env=env)
    want = "io_uring" if io_uring_allowed() else "epoll"
    assert backend_of(srv) == want
    assert metrics_backends(srv) == [want.encode()] * 2
    serves(srv)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_epoll_is_chosen_by_name_and_says_so(spawn_server, how):
    args, env = choose(how, "epoll")
    srv = spawn_server(args, env=env)
    assert backend_of(srv) == "epoll"
    assert "unavailable" not in srv.log_text()
    serves(srv)
    srv2 = spawn_server(["--threads=1", "--backend", "epoll"], env=dict(env, VIAL_BACKEND="io_uring"))
    assert backend_of(srv2) == "epoll"  # the flag wins over the variable
    serves(srv2)


NR = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427}


def refuse(*calls):
    """A preexec that installs a seccomp filter failing the named io_uring
    system calls with EPERM, as container runtimes' default profiles do
    (io_uring_disabled=2 fails io_uring_setup the same way)."""
    def install():
        import ctypes
        import struct
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        prog = [struct.pack("HBBI", 0x20, 0, 0, 0)]                    # ld [nr]
        for i, name in enumerate(calls):                               # jeq nr -> deny
            prog.append(struct.pack("HBBI", 0x15, len(calls) - i, 0, NR[name]))
        prog.append(struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000))       # ret ALLOW
        prog.append(struct.pack("HBBI", 0x06, 0, 0, 0x00050000 | 1))   # ret ERRNO(EPERM)
        buf = ctypes.create_string_buffer(b"".join(prog))
        fprog = struct.pack("HxxxxxxP", len(prog), ctypes.addressof(buf))
        fbuf = ctypes.create_string_buffer(fprog)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
        if libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
            raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
    return install


x86_only = pytest.mark.skipif(os.uname().machine != "x86_64",
                              reason="the filter names x86-64's syscall numbers")


@x86_only
@pytest.mark.parametrize("how", ["default", "env"])
def test_refused_io_uring_falls_back_to_epoll(spawn_server, how):
    args, env = choose(how, "io_uring")
    srv = spawn_server(args + ["--metrics-path=/metrics"], preexec=refuse("io_uring_setup"), env=env)
    log = srv.log_text()
    assert "io_uring unavailable (Operation not permitted): using epoll" in log, log
    assert log.count("io_uring unavailable") == 1, log  # once, not once per loop
    assert backend_of(srv) == "epoll"
    assert metrics_backends(srv) == [b"epoll"] * 2
    serves(srv)


@x86_only
@pytest.mark.parametrize("calls", [("io_uring_enter",), ("io_uring_register",),
                                   ("io_uring_enter", "io_uring_register")])
def test_a_ring_that_cannot_be_used_falls_back_to_epoll(spawn_server, calls):
    """A sandbox may let io_uring_setup through and refuse what uses the
    ring: the loops must find out before they serve, not when they first
    wait (a loop thread whose first wait fails would end)."""
    args, env = choose("default", None)
    srv = spawn_server(args, preexec=refuse(*calls), env=env)
    log = srv.log_text()
    assert "io_uring unavailable" in log and "using epoll" in log, log
    assert backend_of(srv) == "epoll"
    serves(srv)
    serves(srv)
