#!/usr/bin/env python3
"""Hub fan-out: N websocket and N SSE subscribers of one topic on a
conformance server; a sync view publishes, and the time until every
subscriber has the message is measured (median and p99 over R rounds), with
the server's RSS per subscriber.

    bench/hub-fanout.py [--subs 1000] [--rounds 50] [--build build]

Bounded: R publishes of a 64-byte message; everything stops at the end."""

import argparse
import base64
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchkit import rss_kib, start_server  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--subs", type=int, default=1000)
ap.add_argument("--rounds", type=int, default=50)
ap.add_argument("--build", default="build")
args = ap.parse_args()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.subs + 256)), hard))

proc, base = start_server(os.path.join(args.build, "examples", "conformance"))
port = int(base.rsplit(":", 1)[1])


def rss():
    return rss_kib(proc.pid)


try:
    requests.get(base + "/hub/stats", timeout=5)
    idle = rss()
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(args.subs):
        for kind in ("ws", "sse"):
            s = socket.create_connection(("127.0.0.1", port))
            if kind == "ws":
                key = base64.b64encode(os.urandom(16)).decode()
                s.sendall(("GET /ws/hub/fan HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
            else:
                s.sendall(b"GET /hub/sse/fan HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ)
    while requests.get(base + "/hub/stats", timeout=5).json()["subscribers"] < 2 * args.subs:
        time.sleep(0.05)
    # drain heads and the ws greeting
    end = time.monotonic() + 1
    while time.monotonic() < end:
        for key, _ in sel.select(0.1):
            key.fileobj.recv(65536)
    used = rss()
    print("%d ws + %d SSE subscribers: server RSS %d KiB (idle %d): %.1f KiB per subscriber"
          % (args.subs, args.subs, used, idle, (used - idle) / (2 * args.subs)))
    times = []
    sess = requests.Session()
    for r in range(args.rounds):
        tag = ("R%06d" % r).encode()
        pending = set(socks)
        t = time.monotonic()
        sess.post(base + "/hub/publish/fan", data=tag + b"x" * 57, timeout=10)
        while pending:
            for key, _ in sel.select(5):
                d = key.fileobj.recv(65536)
                if tag in d:
                    pending.discard(key.fileobj)
            if time.monotonic() - t > 10:
                sys.exit("round %d: %d subscribers got nothing" % (r, len(pending)))
        times.append(time.monotonic() - t)
    times.sort()
    print("publish -> all %d received, over %d rounds: median %.1f ms, p99 %.1f ms, max %.1f ms"
          % (2 * args.subs, args.rounds, 1000 * times[len(times) // 2],
             1000 * times[min(len(times) - 1, int(len(times) * 0.99))], 1000 * times[-1]))
    print("(includes the publishing request's round trip and this client reading %d sockets)" % (2 * args.subs))
    for s in socks:
        s.close()
finally:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
