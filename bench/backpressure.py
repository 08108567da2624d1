#!/usr/bin/env python3
"""Backpressure: the server's RSS while 100 clients that never read hold a
fast stream each (GET /firehose, 16 KiB chunks without end), and while 100
websocket subscribers that never read get a flood of hub messages.

    bench/backpressure.py [--clients 100] [--seconds 10] [--build build]

Starts build/examples/conformance on 127.0.0.1 (its own port), samples its
VmRSS every 0.5 s, prints the samples and the growth, and stops everything.
Bounded: each phase lasts --seconds; the flood is a fixed number of messages.
A writer that buffered instead of awaiting the drain would grow by the
stream's rate (hundreds of MB/s) times the phase."""

import argparse
import base64
import os
import socket
import subprocess
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchkit import rss_kib, start_server  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--clients", type=int, default=100)
ap.add_argument("--seconds", type=float, default=10)
ap.add_argument("--build", default="build")
args = ap.parse_args()

proc, base = start_server(os.path.join(args.build, "examples", "conformance"))
port = int(base.rsplit(":", 1)[1])


def rss():
    return rss_kib(proc.pid)


def sock():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    return s


def sample(label, seconds):
    xs = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        xs.append(rss())
        time.sleep(0.5)
    print("%-28s RSS KiB: start %d, max %d, end %d (growth %+d KiB over %.0f s)"
          % (label, xs[0], max(xs), xs[-1], xs[-1] - xs[0], seconds))
    print("   samples:", " ".join(str(x) for x in xs))
    return xs


try:
    requests.get(base + "/hub/stats", timeout=5)
    idle = rss()
    print("server idle RSS: %d KiB" % idle)

    # 1. streams: each client reads the head, then nothing
    streams = []
    for _ in range(args.clients):
        s = sock()
        s.sendall(b"GET /firehose?mb=1000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        streams.append(s)
    time.sleep(1.0)
    xs = sample("%d non-reading streams" % args.clients, args.seconds)
    print("   per connection (max - idle): %.1f KiB" % ((max(xs) - idle) / args.clients))
    # proof the streams were live: one client reads for a second
    s = streams[0]
    s.settimeout(2)
    got, end = 0, time.monotonic() + 1
    while time.monotonic() < end:
        got += len(s.recv(1 << 20))
    print("   a client that reads again gets %.0f MB/s" % (got / 1e6))
    for s in streams:
        s.close()
    time.sleep(1.0)
    print("after closing them: %d KiB" % rss())

    # 2. websocket subscribers of a flooded topic (drop-oldest, 4 queued)
    wss = []
    for _ in range(args.clients):
        s = sock()
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /ws/hub/slow-drop HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
        wss.append(s)
    time.sleep(1.0)
    before = requests.get(base + "/hub/stats", timeout=5).json()

    def flood():
        requests.post(base + "/hub/flood/slow-drop", params={"n": 20000, "size": 16384}, timeout=300)

    ft = threading.Thread(target=flood)
    ft.start()
    xs = sample("%d non-reading ws subscribers" % args.clients, args.seconds)
    ft.join()
    after = requests.get(base + "/hub/stats", timeout=5).json()
    print("   published %d x 16 KiB; delivered %d, dropped %d (of %d subscriber copies)"
          % (after["published"] - before["published"], after["delivered"] - before["delivered"],
             after["dropped"] - before["dropped"], 20000 * args.clients))
    print("   per connection (max - idle): %.1f KiB" % ((max(xs) - idle) / args.clients))
    for s in wss:
        s.close()
finally:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
