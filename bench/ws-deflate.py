#!/usr/bin/python3
"""permessage-deflate cost: a 4 KiB JSON message echoed N times over one
websocket to build/examples/conformance (/ws/echo, one loop thread), with and
without deflate. Prints, per message, the server's CPU time (utime + stime
from /proc, so the client's own work is not counted) and the bytes on the
wire in each direction (frame headers included, TCP/IP not).

    bench/ws-deflate.py [--messages N] [--conns N] [--build DIR]

Then --conns connections (default 500) measure the server's RSS per
connection: idle after a handshake that negotiated deflate (no zlib state
yet), and after one compressed echo each (inflate and deflate state held).

The client is a raw socket with Python's zlib (window 2^12, context kept
across messages, as vial answers "client_max_window_bits"). Messages differ
(ids, names, numbers drawn from a fixed seed) but share their shape, as a
real feed does. Bounded: N defaults to 20000 (the CPU figure has
10 ms ticks), each run stops after 60 s.
"""
import argparse
import base64
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
import zlib

OP_TEXT = 1


def message(rng, size=4096):
    items, out = [], ""
    while True:
        i = rng.randrange(1_000_000)
        items.append({"id": i, "name": "user-%d" % i, "email": "u%d@example.com" % i,
                      "score": round(rng.random() * 1000, 3), "active": rng.random() < 0.5,
                      "tags": rng.sample(["red", "green", "blue", "admin", "dev", "ops"], 2)})
        nxt = json.dumps({"type": "update", "items": items}, separators=(",", ":"))
        if len(nxt) > size:
            return out.encode() if out else nxt.encode()[:size]
        out = nxt


def frame(op, payload, rsv1=False):
    b0 = 0x80 | op | (0x40 if rsv1 else 0)
    n = len(payload)
    head = struct.pack("!BB", b0, 0x80 | n) if n < 126 else struct.pack("!BBH", b0, 0x80 | 126, n)
    key = os.urandom(4)
    k = int.from_bytes(key * ((n + 3) // 4), "big") >> (8 * ((4 - n % 4) % 4))
    return head + key + (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


def read_exact(s, n):
    b = b""
    while len(b) < n:
        got = s.recv(n - len(b))
        if not got:
            raise EOFError
        b += got
    return b


def read_frame(s):
    b0, b1 = read_exact(s, 2)
    n, hl = b1 & 0x7F, 2
    if n == 126:
        n, hl = struct.unpack("!H", read_exact(s, 2))[0], 4
    elif n == 127:
        n, hl = struct.unpack("!Q", read_exact(s, 8))[0], 10
    return bool(b0 & 0x40), read_exact(s, n), hl + n


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def handshake(port, deflate=True):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    s.sendall(("GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (key, ext)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (b"permessage-deflate" in head.lower()) == deflate, head
    return s


def run(port, pid, n, deflate):
    s = handshake(port, deflate)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    comp = zlib.compressobj(6, zlib.DEFLATED, -12)
    decomp = zlib.decompressobj(-15)
    rng = random.Random(7)
    msgs = [message(rng) for _ in range(200)]
    up = down = 0
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for i in range(n):
        m = msgs[i % len(msgs)]
        if deflate:
            z = comp.compress(m) + comp.flush(zlib.Z_SYNC_FLUSH)
            f = frame(OP_TEXT, z[:-4], True)
        else:
            f = frame(OP_TEXT, m)
        s.sendall(f)
        up += len(f) - 4  # the mask key is the client's cost, not the message's
        rsv1, data, wire = read_frame(s)
        down += wire
        if rsv1:
            data = decomp.decompress(data + b"\x00\x00\xff\xff")
        assert data == m
        if time.monotonic() - t0 > 60:
            n = i + 1
            break
    cpu = cpu_seconds(pid) - cpu0
    s.close()
    return n, cpu, up, down, len(msgs[0])


def memory(port, pid, n):
    msg = message(random.Random(1))
    base = rss_kib(pid)
    conns = [handshake(port) for _ in range(n)]
    time.sleep(0.3)
    idle = rss_kib(pid)
    for s in conns:
        c = zlib.compressobj(6, zlib.DEFLATED, -12)
        z = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
        s.sendall(frame(OP_TEXT, z[:-4], True))
    for s in conns:
        rsv1, data, _ = read_frame(s)
        assert rsv1
    time.sleep(0.3)
    active = rss_kib(pid)
    for s in conns:
        s.close()
    print("RSS per connection (%d connections, deflate negotiated): idle %.1f KiB; "
          "after one compressed echo each %.1f KiB" % (n, (idle - base) * 1.0 / n, (active - base) * 1.0 / n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    a = ap.parse_args()
    binary = os.path.join(a.build, "examples", "conformance")
    srv = subprocess.Popen([binary, "--port", "0", "--threads", "1"], stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL)
    try:
        port = None
        deadline = time.monotonic() + 5
        while port is None and time.monotonic() < deadline:
            line = srv.stderr.readline().decode()
            if "listening on" in line:
                port = int(line.split("listening on http://")[1].split()[0].rsplit(":", 1)[1])
        assert port, "server did not start"
        print("%d echoes of a ~4 KiB JSON message, one connection, server on one loop thread" % a.messages)
        print("%-10s %14s %14s %14s" % ("mode", "server CPU/msg", "client->server", "server->client"))
        for deflate in (False, True):
            n, cpu, up, down, size = run(port, srv.pid, a.messages, deflate)
            print("%-10s %11.1f us %9.0f B/msg %9.0f B/msg" % ("deflate" if deflate else "plain",
                                                           cpu / n * 1e6, up / n, down / n))
        print("(message payload %d bytes; CPU from /proc utime+stime at %d Hz)"
              % (size, os.sysconf("SC_CLK_TCK")))
        if a.conns:
            memory(port, srv.pid, a.conns)
    finally:
        srv.terminate()
        srv.wait(5)


if __name__ == "__main__":
    sys.exit(main())
