"""Runs a command with io_uring_setup(2) refused (EPERM) by a seccomp
filter, as a container runtime's default profile refuses it; the filter
is inherited, so every server a test suite run under it starts has to
fall back to epoll (and the hub's batched sends to send(2) each).

    python3 tests/blackbox/no_uring.py python3 -m pytest tests/blackbox/...

x86-64 only (the filter names its system call number); elsewhere the
command runs as it is.
"""
import os
import sys

from test_backend import refuse

if os.uname().machine == "x86_64":
    refuse("io_uring_setup")()
os.execvp(sys.argv[1], sys.argv[1:])
