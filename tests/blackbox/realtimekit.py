"""Helpers for the realtime tests (test_sse.py, test_hub.py): a raw-socket SSE
client (so a test can choose a tiny receive buffer and not read), a raw
websocket client that reads frames, and the conformance hub fixtures
(/hub/publish, /hub/flood, /hub/stats)."""

import base64
import json
import os
import socket
import struct
import time

import requests

import tlskit


def base(server):
    return "%s://%s:%d" % ((tlskit.scheme(),) + tuple(server))


def ws_uri(server, path):
    """The ws:// (wss:// in the TLS pass) address of path on server."""
    return "%s://%s:%d%s" % (tlskit.scheme(ws=True), server[0], server[1], path)


def publish(server, topic, body, event=None):
    params = {"event": event} if event is not None else {}
    r = requests.post(base(server) + "/hub/publish/" + topic, data=body, params=params, timeout=10)
    return r


def flood(server, topic, n, size, tag=""):
    r = requests.post(base(server) + "/hub/flood/%s" % topic, params={"n": n, "size": size, "tag": tag},
                      timeout=60)
    assert r.status_code == 200, r.text
    return r


def stats(server):
    r = requests.get(base(server) + "/hub/stats", timeout=10)
    assert r.status_code == 200
    return r.json()


# Subscribers left over by an earlier test that failed: counts are taken
# relative to them, so one failure does not fail every later test.
baseline = [0]


def take_baseline(server):
    baseline[0] = stats(server)["subscribers"]


def wait_subscribers(server, n, limit=5.0):
    """Waits until the hub has n subscribers more than at the test's start."""
    t0 = time.monotonic()
    while True:
        s = stats(server)["subscribers"] - baseline[0]
        if s == n:
            return
        if time.monotonic() - t0 > limit:
            raise AssertionError("hub subscribers stayed %d, want %d" % (s, n))
        time.sleep(0.02)


def _sock(server, rcvbuf):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(server)
    return tlskit.wrap(s) if tlskit.ENABLED else s


def _recv(s, deadline):
    """What the socket gives before deadline: bytes, b"" at EOF (or reset),
    None when nothing came in time."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    s.settimeout(left)
    try:
        return s.recv(1 << 20)
    except socket.timeout:
        return None
    except ConnectionResetError:
        return b""


class SseClient:
    """GET an event stream; parse the chunked body into events as asked."""

    def __init__(self, server, path, headers=(), rcvbuf=None):
        self.s = _sock(server, rcvbuf)
        lines = ["GET %s HTTP/1.1" % path, "Host: localhost", "Accept: text/event-stream"]
        lines += ["%s: %s" % h for h in headers]
        self.s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.raw = b""
        while b"\r\n\r\n" not in self.raw:
            d = self.s.recv(65536)
            if not d:
                raise AssertionError("closed before the head")
            self.raw += d
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        first, *hl = head.decode("latin-1").split("\r\n")
        self.status = int(first.split()[1])
        self.headers = {}
        for h in hl:
            k, v = h.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.body = b""     # de-chunked bytes not yet parsed into events
        self.ended = False  # the terminating chunk came
        self.eof = False

    def close(self):
        self.s.close()

    def _fill(self, deadline):
        """Reads once more; de-chunks what it can. False at EOF or timeout."""
        while True:
            # de-chunk what is buffered
            i = self.raw.find(b"\r\n")
            if i >= 0:
                size = int(self.raw[:i].split(b";")[0], 16)
                if size == 0:
                    self.ended = True
                    return False
                if len(self.raw) >= i + 2 + size + 2:
                    self.body += self.raw[i + 2:i + 2 + size]
                    self.raw = self.raw[i + 2 + size + 2:]
                    return True
            d = _recv(self.s, deadline)
            if d is None:
                return False
            if not d:
                self.eof = True
                return False
            self.raw += d

    def next_block(self, limit=5.0):
        """The next event block as a list of (field, value) lines (comments as
        ('', text)), or None when the stream ended or nothing came in time."""
        deadline = time.monotonic() + limit
        while b"\n\n" not in self.body:
            if not self._fill(deadline):
                return None
        block, self.body = self.body.split(b"\n\n", 1)
        out = []
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                out.append(("", line[1:].lstrip(" ")))
                continue
            k, _, v = line.partition(":")
            out.append((k, v[1:] if v.startswith(" ") else v))
        return out

    def next_event(self, limit=5.0, skip_comments=True):
        """The next event as a dict (event, id, data joined by LF), or None."""
        while True:
            b = self.next_block(limit)
            if b is None:
                return None
            fields = [f for f in b if f[0]]
            if skip_comments and not fields:
                continue
            ev = {"comments": [v for k, v in b if not k]}
            data = [v for k, v in fields if k == "data"]
            for k, v in fields:
                if k in ("event", "id", "retry"):
                    ev[k] = v
            if data:
                ev["data"] = "\n".join(data)
            return ev


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsClient:
    """A raw websocket client: handshake, then frames read on demand."""

    def __init__(self, server, path, rcvbuf=None):
        self.s = _sock(server, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise AssertionError("closed before the 101")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _need(self, n, deadline):
        while len(self.buf) < n:
            d = _recv(self.s, deadline)
            if not d:
                return False
            self.buf += d
        return True

    def frame(self, limit=5.0):
        """(opcode, payload) of the next frame, or None (EOF or timeout)."""
        deadline = time.monotonic() + limit
        if not self._need(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            if not self._need(4, deadline):
                return None
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            if not self._need(10, deadline):
                return None
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        if not self._need(off + n, deadline):
            return None
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def send_close(self, code=1000):
        payload = struct.pack(">H", code)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.s.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)

    def close(self):
        self.s.close()


def seq_of(payload):
    """The sequence number of a /hub/flood message ("seq:<i>:xxx...")."""
    if isinstance(payload, str):
        payload = payload.encode()
    return int(payload.split(b":", 2)[1])


def tag_of(payload):
    """The publisher's tag of a /hub/flood message."""
    if isinstance(payload, str):
        payload = payload.encode()
    return payload.split(b":", 3)[2].decode()
