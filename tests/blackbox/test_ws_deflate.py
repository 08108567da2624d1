"""WebSocket permessage-deflate (RFC 7692) over real sockets, against /ws/echo.

The `websockets` library (Debian python3-websockets) offers permessage-deflate
by default: its echo must work compressed, and uncompressed with
compression=None. Hand-made compressed frames (Python's zlib, raw deflate)
check what a library hides: RSV1 on the server's frames, fragmented
compressed messages with control frames between the fragments, context
takeover across messages, the inflated-size limit (1009), corrupt data
(1007), and RSV1 where it is not allowed (1002).
"""

import asyncio
import json
import os
import struct
import time
import zlib

import pytest

from httpkit import Client
from test_websocket import (MIB, OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, accept_for,
                            close_payload, frame, needs_lib, run, upgrade_request, uri, websockets)
RSV1 = 4  # frame()'s rsv argument: bits 6..4 of the first byte, RSV1 the highest


def compressor(wbits=12):  # the window the default offer is answered with
    return zlib.compressobj(6, zlib.DEFLATED, -wbits)


def compress(c, data):
    """One message with the client's compressor: sync-flushed, trailer stripped."""
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class DWS:
    """A raw websocket client that may offer permessage-deflate."""

    def __init__(self, server, offer="permessage-deflate; client_max_window_bits", path="/ws/echo"):
        self.c = Client(*server, timeout=5.0)
        extra = [("Sec-WebSocket-Extensions", offer)] if offer else []
        raw, key = upgrade_request(path, extra=extra)
        self.c.send(raw)
        self.resp = self.c.read_head(time.monotonic() + 5)
        assert self.resp.status == 101, self.resp
        assert self.resp.header("sec-websocket-accept") == accept_for(key)
        self.ext = self.resp.header("sec-websocket-extensions")
        self.inflater = zlib.decompressobj(-15)

    def send(self, data):
        self.c.send(data)

    def read_frame(self):
        c = self.c
        deadline = time.monotonic() + 5
        b0, b1 = c.read_exact(2, deadline, "a frame header")
        assert not b1 & 0x80
        assert not b0 & 0x30, "RSV2/RSV3 set"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", c.read_exact(2, deadline, "length"))[0]
        elif n == 127:
            n = struct.unpack("!Q", c.read_exact(8, deadline, "length"))[0]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, c.read_exact(n, deadline, "payload")

    def read_message(self):
        """(opcode, payload, compressed, wire length) of the next message or control frame."""
        fin, rsv1, op, data = self.read_frame()
        if op >= 8:
            assert not rsv1, "RSV1 on a control frame"
            return op, data, False, len(data)
        while not fin:
            fin, r, op2, more = self.read_frame()
            assert op2 == OP_CONT and not r
            data += more
        wire = len(data)
        if rsv1:
            data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
        return op, data, rsv1, wire

    def expect_close(self, code):
        op, data, _, _ = self.read_message()
        assert op == OP_CLOSE, (op, data[:60])
        assert struct.unpack("!H", data[:2])[0] == code, data
        closed, _ = self.c.wait_closed(1.5)
        assert closed

    def close(self):
        self.c.close()


def json_message(size=4096):
    items, out = [], ""
    i = 0
    while len(out) < size:
        items.append({"id": i, "name": "item-%d" % i, "tags": ["a", "b"], "price": i * 1.25,
                      "in_stock": i % 3 == 0})
        out = json.dumps({"items": items})
        i += 1
    return out


# --- negotiation ---------------------------------------------------------------------------


@pytest.mark.parametrize("offer,answer", [
    ("permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=12"),
    ("permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"),
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
    ("x-webkit-deflate-frame, permessage-deflate; bogus, permessage-deflate", "permessage-deflate"),
    ("permessage-deflate; client_max_window_bits=16", None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ("x-foo", None),
])
def test_negotiation(server, offer, answer):
    w = DWS(server, offer)
    assert w.ext == answer
    w.close()


def test_disabled_by_option(spawn_server):
    srv = spawn_server(["--no-ws-deflate"])
    w = DWS(srv.addr)
    assert w.ext is None
    # and RSV1 is then a protocol error
    w.send(frame(OP_TEXT, compress(compressor(), b"hello"), rsv=RSV1))
    w.expect_close(1002)
    w.close()


def test_disabled_by_environment(spawn_server):
    srv = spawn_server(env=dict(os.environ, VIAL_WS_DEFLATE="off"))
    w = DWS(srv.addr)
    assert w.ext is None
    w.close()


# --- the websockets library -----------------------------------------------------------------


@needs_lib
def test_library_echo_compressed(server):
    async def go():
        async with websockets.connect(uri(server, "/ws/echo"), max_size=2 * MIB) as c:
            ext = c.response_headers.get("Sec-WebSocket-Extensions", "")
            assert ext.startswith("permessage-deflate")
            for m in ["x", "small text", json_message(), "\u2603" * 50000, os.urandom(100000),
                      b"\0" * (MIB - 1), "", b""]:
                await c.send(m)
                assert await c.recv() == m
            await c.send(["frag", "mented " * 100])  # fragmented, compressed
            assert await c.recv() == "frag" + "mented " * 100
            pong = await c.ping(b"lib")
            await asyncio.wait_for(pong, 5)
        assert c.close_code == 1000
    run(go())


@needs_lib
def test_library_echo_uncompressed(server):
    async def go():
        async with websockets.connect(uri(server, "/ws/echo"), compression=None) as c:
            assert c.response_headers.get("Sec-WebSocket-Extensions") is None
            for m in ["plain", json_message()]:
                await c.send(m)
                assert await c.recv() == m
    run(go())


@needs_lib
def test_library_inflated_over_limit_1009(server):
    async def go():
        async with websockets.connect(uri(server, "/ws/echo"), max_size=None) as c:
            await c.send(b"\0" * (MIB + 1))  # about 1 KiB on the wire
            with pytest.raises(websockets.ConnectionClosed):
                await c.recv()
        assert c.close_code == 1009
    run(go())


@needs_lib
def test_library_chat_broadcasts_reach_compressed_sessions(server):
    # Group broadcasts are framed once for every member, uncompressed (RSV1
    # clear), which a session that negotiated deflate must accept.
    async def go():
        a = await websockets.connect(uri(server, "/ws/chat"))
        b = await websockets.connect(uri(server, "/ws/chat"))
        assert a.response_headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
        text = json_message()
        await a.send(text)
        assert await asyncio.wait_for(b.recv(), 5) == text
        assert await asyncio.wait_for(a.recv(), 5) == text
        await a.close()
        await b.close()
    run(go())


# --- hand-made frames ------------------------------------------------------------------------


def test_server_compresses_over_threshold_only(server):
    w = DWS(server)
    msg = json_message().encode()
    w.send(frame(OP_TEXT, msg))  # uncompressed from the client is fine too
    op, data, compressed, wire = w.read_message()
    assert (op, data, compressed) == (OP_TEXT, msg, True)
    assert wire < len(msg) // 3
    small = b"a" * 127  # compressible, but under the 128-byte threshold
    w.send(frame(OP_TEXT, small))
    assert w.read_message() == (OP_TEXT, small, False, 127)
    w.close()


def test_fragmented_compressed_with_controls_between(server):
    w = DWS(server)
    c = compressor()
    msg = json_message().encode()
    z = compress(c, msg)
    a, b = len(z) // 3, 2 * len(z) // 3
    w.send(frame(OP_TEXT, z[:a], fin=False, rsv=RSV1) + frame(OP_PING, b"p1") +
           frame(OP_CONT, z[a:b], fin=False) + frame(OP_PONG, b"x") + frame(OP_PING, b"p2") +
           frame(OP_CONT, z[b:]))
    assert w.read_message()[:2] == (OP_PONG, b"p1")
    assert w.read_message()[:2] == (OP_PONG, b"p2")
    assert w.read_message()[:3] == (OP_TEXT, msg, True)
    # an empty compressed message: just the empty stored block's marker
    w.send(frame(OP_BIN, compress(c, b""), rsv=RSV1))
    assert w.read_message()[:2] == (OP_BIN, b"")
    w.close()


def test_context_takeover_both_ways(server):
    w = DWS(server)
    c = compressor()
    msg = json_message(2000).encode()  # within the 4 KiB windows
    sizes = []
    for _ in range(3):
        z = compress(c, msg)
        w.send(frame(OP_BIN, z, rsv=RSV1))
        op, data, compressed, wire = w.read_message()
        assert (op, data, compressed) == (OP_BIN, msg, True)
        sizes.append((len(z), wire))
    # the repeats are back-references to the earlier messages, in both directions
    # (vial's level 1 finds fewer of them than the client's level 6)
    assert sizes[1][0] < 40 and sizes[1][1] < sizes[0][1] // 2, sizes
    assert sizes[2][1] < sizes[0][1] // 2, sizes
    w.close()


def test_server_no_context_takeover(server):
    w = DWS(server, "permessage-deflate; server_no_context_takeover")
    assert w.ext == "permessage-deflate; server_no_context_takeover"
    msg = json_message().encode()
    for _ in range(3):
        w.inflater = zlib.decompressobj(-15)  # a fresh context per message must do
        w.send(frame(OP_TEXT, msg))
        op, data, compressed, wire = w.read_message()
        assert (op, data, compressed) == (OP_TEXT, msg, True)
        assert wire > 200
    w.close()


def test_client_no_context_takeover_and_final_blocks(server):
    # A client that starts afresh per message, and ends each with a final
    # deflate block (BFINAL) instead of a sync flush: RFC 7692 7.2.3.3.
    w = DWS(server, "permessage-deflate; client_no_context_takeover")
    assert w.ext == "permessage-deflate; client_no_context_takeover"
    for m in [b"first " * 50, b"second " * 50, b"third " * 50]:
        c = compressor(15)
        z = c.compress(m) + c.flush(zlib.Z_FINISH)
        w.send(frame(OP_BIN, z, rsv=RSV1))
        assert w.read_message()[:2] == (OP_BIN, m)
    w.close()


def test_client_window_bits_honoured(server):
    w = DWS(server, "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9")
    assert w.ext == "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"
    w.inflater = zlib.decompressobj(-9)  # the server's replies fit a 512-byte window
    c = compressor(9)
    msg = json_message().encode()
    for _ in range(2):
        w.send(frame(OP_TEXT, compress(c, msg), rsv=RSV1))
        assert w.read_message()[:3] == (OP_TEXT, msg, True)
    w.close()


def test_compressed_text_checked_after_inflation_1007(server):
    w = DWS(server)
    w.send(frame(OP_TEXT, compress(compressor(), b"ok \xff\xfe"), rsv=RSV1))
    w.expect_close(1007)
    w.close()


def test_compressed_binary_not_utf8_checked(server):
    w = DWS(server)
    w.send(frame(OP_BIN, compress(compressor(), b"\xff\xfe" * 100), rsv=RSV1))
    assert w.read_message()[:2] == (OP_BIN, b"\xff\xfe" * 100)
    w.close()


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x00\x05\x00\x00\x00"])
def test_corrupt_deflate_1007(server, payload):
    w = DWS(server)
    w.send(frame(OP_BIN, payload, rsv=RSV1))
    w.expect_close(1007)
    w.close()


def test_inflated_over_limit_1009_without_inflating_everything(server):
    w = DWS(server)
    # 64 MiB of zeros, about 64 KiB compressed, sent in 4 KiB fragments: the
    # server must fail at 1 MiB, before reading the rest.
    c = compressor()
    z = c.compress(b"\0" * (64 * MIB)) + c.flush(zlib.Z_SYNC_FLUSH)
    z = z[:-4]
    parts = [z[i:i + 4096] for i in range(0, len(z), 4096)]
    data = frame(OP_BIN, parts[0], fin=False, rsv=RSV1)
    for p in parts[1:-1]:
        data += frame(OP_CONT, p, fin=False)
    data += frame(OP_CONT, parts[-1])
    try:
        w.send(data)
    except OSError:
        pass  # the server may close before taking it all
    w.expect_close(1009)
    w.close()


def test_exactly_limit_inflated_ok(server):
    w = DWS(server)
    c = compressor()
    w.send(frame(OP_BIN, compress(c, b"a" * MIB), rsv=RSV1))
    op, data, compressed, _ = w.read_message()
    assert (op, len(data), compressed) == (OP_BIN, MIB, True)
    w.close()


@pytest.mark.parametrize("name", ["not_negotiated", "continuation", "ping", "close", "rsv2"])
def test_rsv_misuse_1002(server, name):
    z = compress(compressor(), b"hello")
    if name == "not_negotiated":
        w, data = DWS(server, None), frame(OP_TEXT, z, rsv=RSV1)
    elif name == "continuation":
        w, data = DWS(server), frame(OP_TEXT, z[:2], fin=False, rsv=RSV1) + frame(OP_CONT, z[2:], rsv=RSV1)
    elif name == "ping":
        w, data = DWS(server), frame(OP_PING, b"", rsv=RSV1)
    elif name == "close":
        w, data = DWS(server), frame(OP_CLOSE, close_payload(1000), rsv=RSV1)
    else:
        w, data = DWS(server), frame(OP_TEXT, z, rsv=RSV1 | 2)
    if name == "not_negotiated":
        assert w.ext is None
    w.send(data)
    w.expect_close(1002)
    w.close()


def test_threshold_option(spawn_server):
    srv = spawn_server(["--ws-deflate-min", "1"])
    w = DWS(srv.addr)
    w.send(frame(OP_TEXT, b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
    assert w.read_message()[:3] == (OP_TEXT, b"a" * 52, True)
    w.close()


def test_memory_cap(spawn_server):
    # 90 KiB: room at the handshake for one connection's state (about 77 KiB:
    # the inflater's 32 KiB window, a 4 KiB deflate window), checked against
    # what is held now; zlib's own allocations are checked against the cap as
    # they happen.
    srv = spawn_server(["--ws-deflate-memory-max", "90K"])
    msg = json_message().encode()
    a, b = DWS(srv.addr), DWS(srv.addr)
    assert a.ext and b.ext  # nothing held yet: both negotiate
    a.send(frame(OP_TEXT, compress(compressor(), msg), rsv=RSV1))
    assert a.read_message()[:3] == (OP_TEXT, msg, True)  # a holds ~77 KiB now
    c = DWS(srv.addr)
    assert c.ext is None  # no room: the extension is declined at the handshake
    c.send(frame(OP_TEXT, msg))
    assert c.read_message()[:3] == (OP_TEXT, msg, False)
    b.send(frame(OP_TEXT, msg))
    assert b.read_message()[:3] == (OP_TEXT, msg, False)  # no room for a compressor: sent plain
    b.send(frame(OP_TEXT, compress(compressor(), msg), rsv=RSV1))
    b.expect_close(1013)  # nor for a decompressor: try again later
    b.close()
    a.close()
    # a's state is given back when it ends: new connections negotiate again
    deadline = time.monotonic() + 5
    while True:
        d = DWS(srv.addr)
        if d.ext or time.monotonic() > deadline:
            break
        d.close()
        time.sleep(0.05)
    assert d.ext
    d.send(frame(OP_TEXT, compress(compressor(), msg), rsv=RSV1))
    assert d.read_message()[:3] == (OP_TEXT, msg, True)
    d.close()
    c.close()
