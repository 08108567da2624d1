"""§5 WebSockets (RFC 6455): handshake, /ws/echo, failure codes and /ws/chat.

Frames are crafted by hand on raw sockets (masking, fragmentation, control
frames between fragments, every failure code, the 1 MiB boundary); the
`websockets` library (Debian python3-websockets, asyncio API) drives echo and
chat over many connections, which land on different loop threads.
"""

import asyncio
import base64
import hashlib
import os
import socket
import struct
import time

import pytest

import tlskit
from httpkit import Client, PeerClosed, ReadTimeout, req

try:
    import websockets
except ImportError:  # pragma: no cover
    websockets = None

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MIB = 1048576
OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path="/ws/echo", key="auto", version="13", extra=(), upgrade="websocket",
                    connection="Upgrade", method="GET", http="HTTP/1.1"):
    headers = []
    if upgrade is not None:
        headers.append(("Upgrade", upgrade))
    if connection is not None:
        headers.append(("Connection", connection))
    if key == "auto":
        key = new_key()
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    if version is not None:
        headers.append(("Sec-WebSocket-Version", version))
    headers.extend(extra)
    return req(method, path, headers=headers, version=http), key


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """One client frame; `length` overrides the announced payload length."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if len(payload) < 4096 else \
        _mask_fast(payload, key)
    return head + key + masked


def _mask_fast(payload, key):
    n = len(payload)
    k = int.from_bytes(key * ((n + 3) // 4), "big") >> (8 * ((4 - n % 4) % 4))
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class WS:
    """A raw websocket client over httpkit.Client."""

    def __init__(self, server, path="/ws/echo", timeout=5.0, rcvbuf=None):
        if rcvbuf is None:
            self.c = Client(*server, timeout=timeout)
        else:
            # a small receive window must be set before connecting
            self.c = Client(*server, timeout=timeout, connect=False)
            self.c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.c.sock.settimeout(timeout)
            self.c.sock.connect(server)
            if tlskit.ENABLED:
                self.c.sock = tlskit.wrap(self.c.sock)
        raw, key = upgrade_request(path)
        self.c.send(raw)
        self.resp = self.c.read_head(time.monotonic() + timeout)
        assert self.resp.status == 101, self.resp
        assert self.resp.header("sec-websocket-accept") == accept_for(key)

    def send(self, data):
        self.c.send(data)

    def read_frame(self, timeout=5.0):
        c = self.c
        deadline = time.monotonic() + timeout
        b0, b1 = c.read_exact(2, deadline, "a frame header")
        assert not b1 & 0x80, "server frames must not be masked"
        assert not b0 & 0x70, "RSV bits set in a server frame"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", c.read_exact(2, deadline, "length"))[0]
        elif n == 127:
            n = struct.unpack("!Q", c.read_exact(8, deadline, "length"))[0]
        return bool(b0 & 0x80), b0 & 0x0F, c.read_exact(n, deadline, "a frame payload")

    def read_message(self, timeout=5.0):
        """(opcode, payload) of the next data message or control frame."""
        fin, op, data = self.read_frame(timeout)
        if op >= 8:
            assert fin
            return op, data
        assert op in (OP_TEXT, OP_BIN), "unexpected opcode %d" % op
        while not fin:
            fin, op2, more = self.read_frame(timeout)
            assert op2 == OP_CONT, "server interleaved opcode %d in a message" % op2
            data += more
        return op, data

    def expect_close(self, code, within=1.0):
        """The next frame is a close with `code` (None: empty or 1000), then the
        server closes TCP without waiting for our close reply."""
        op, data = self.read_message()
        assert op == OP_CLOSE, "expected a close frame, got opcode %d %r" % (op, data[:60])
        if code is None:
            assert data in (b"", struct.pack("!H", 1000)), data
        else:
            assert len(data) >= 2, "close frame without a code: %r" % data
            got = struct.unpack("!H", data[:2])[0]
            assert got == code, "close code %d, expected %d" % (got, code)
        t0 = time.monotonic()
        closed, extra = self.c.wait_closed(within + 0.5)
        assert extra == b"", "data after the close frame: %r" % extra[:100]
        assert closed, "server did not close TCP after its close frame"
        assert self.c.eof_at - t0 <= within + 0.25
        return data

    def close(self):
        self.c.close()


@pytest.fixture
def ws(server):
    w = WS(server)
    yield w
    w.close()


# --- handshake ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/chat"])
def test_handshake_101(server, path):
    raw, key = upgrade_request(path)
    with Client(*server) as c:
        c.send(raw)
        r = c.read_head(time.monotonic() + 5)
        assert r.status == 101, r
        assert r.version == "HTTP/1.1"
        assert r.tokens("upgrade") == {"websocket"}
        assert "upgrade" in r.tokens("connection")
        assert r.header("sec-websocket-accept") == accept_for(key)
        assert not r.has("sec-websocket-protocol")
        assert not r.has("sec-websocket-extensions")
        assert not r.has("content-length") and not r.has("transfer-encoding")


@pytest.mark.parametrize("upgrade,connection", [
    ("WebSocket", "upgrade"),
    ("WEBSOCKET", "keep-alive, Upgrade"),
    ("websocket", "UPGRADE"),
])
def test_handshake_tokens_case_insensitive(server, upgrade, connection):
    raw, key = upgrade_request(upgrade=upgrade, connection=connection)
    with Client(*server) as c:
        c.send(raw)
        r = c.read_head(time.monotonic() + 5)
        assert r.status == 101, r
        assert r.header("sec-websocket-accept") == accept_for(key)


def test_no_subprotocol_or_unknown_extension_selected(server):
    raw, key = upgrade_request(extra=[("Sec-WebSocket-Protocol", "chat, superchat"),
                                      ("Sec-WebSocket-Extensions", "x-foo; bar=1")])
    with Client(*server) as c:
        c.send(raw)
        r = c.read_head(time.monotonic() + 5)
        assert r.status == 101, r
        assert not r.has("sec-websocket-protocol")
        assert not r.has("sec-websocket-extensions")


def test_permessage_deflate_offer_not_forced(server):
    # permessage-deflate may be negotiated; if it is not, no extension header at all.
    raw, key = upgrade_request(extra=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")])
    with Client(*server) as c:
        c.send(raw)
        r = c.read_head(time.monotonic() + 5)
        assert r.status == 101, r
        ext = r.header("sec-websocket-extensions")
        assert ext is None or ext.lower().startswith("permessage-deflate")


def rejected(server, raw):
    with Client(*server) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status != 101
        assert not r.has("sec-websocket-accept")
        return r


@pytest.mark.parametrize("key", [
    None,  # missing
    "",
    "not base64!!",
    base64.b64encode(os.urandom(15)).decode(),  # 15 bytes
    base64.b64encode(os.urandom(17)).decode(),  # 17 bytes
    base64.b64encode(os.urandom(32)).decode(),
    "AAAAAAAAAAAAAAAAAAAAAA",                     # 16 bytes without padding
    "AAAAAAAAAAAAAAAAAAAA*A==",
    "AAAAAAAAAAAAAAAAAAAAAA=A",
])
def test_bad_key_400(server, key):
    raw, _ = upgrade_request(key=key)
    r = rejected(server, raw)
    assert r.status == 400, r


@pytest.mark.parametrize("version", [None, "8", "12", "14", "13, 8", "abc"])
def test_bad_version_426(server, version):
    raw, _ = upgrade_request(version=version)
    r = rejected(server, raw)
    assert r.status == 426, r
    assert r.header("sec-websocket-version") == "13"


@pytest.mark.parametrize("path", ["/ws/echo", "/ws/chat"])
def test_plain_get_to_websocket_route_400(server, path):
    with Client(*server) as c:
        r = c.request(req("GET", path))
        assert r.status == 400, r


@pytest.mark.parametrize("upgrade,connection", [(None, "Upgrade"), ("websocket", None), ("websocket", "keep-alive")])
def test_partial_upgrade_headers_400(server, upgrade, connection):
    raw, _ = upgrade_request(upgrade=upgrade, connection=connection)
    r = rejected(server, raw)
    assert r.status == 400, r


@pytest.mark.parametrize("path", ["/", "/hello/x", "/methods", "/api/v1/items/7"])
def test_upgrade_to_non_websocket_route_not_upgraded(server, path):
    raw, _ = upgrade_request(path=path)
    r = rejected(server, raw)
    assert 400 <= r.status < 500, r
    assert not r.has("upgrade")


def test_upgrade_to_unknown_path_404(server):
    raw, _ = upgrade_request(path="/ws/nope")
    r = rejected(server, raw)
    assert r.status == 404, r


def test_websocket_route_runs_no_hooks(server):
    # before_async would answer 403 "blocked" for X-Block: 1 on any app route.
    raw, _ = upgrade_request(extra=[("X-Block", "1")])
    with Client(*server) as c:
        c.send(raw)
        r = c.read_head(time.monotonic() + 5)
        assert r.status == 101, r
        assert not r.has("x-after-order")
    with Client(*server) as c:
        r = c.request(req("GET", "/ws/echo", headers=[("X-Block", "1")]))
        assert r.status == 400, r
        assert not r.has("x-after-order")


def test_get_after_upgrade_bytes_pipelined_with_frame(server):
    # Frame bytes sent in the same segment as the handshake are not lost.
    raw, key = upgrade_request()
    with Client(*server) as c:
        c.send(raw + frame(OP_TEXT, "early"))
        r = c.read_head(time.monotonic() + 5)
        assert r.status == 101
        w = WS.__new__(WS)
        w.c = c
        assert w.read_message() == (OP_TEXT, b"early")


# --- echo -----------------------------------------------------------------------------------


@pytest.mark.parametrize("op,payload", [
    (OP_TEXT, "hello"),
    (OP_TEXT, "h\u00e9llo \u2603 \U0001F600"),
    (OP_BIN, b"\x00\xff\x80binary"),
    (OP_TEXT, b""),
    (OP_BIN, b""),
    (OP_TEXT, "x" * 125),
    (OP_TEXT, "y" * 126),
    (OP_BIN, os.urandom(65535)),
    (OP_BIN, os.urandom(65536)),
])
def test_echo_same_type_and_payload(ws, op, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    ws.send(frame(op, payload))
    assert ws.read_message() == (op, payload)


def test_echo_many_messages_in_one_segment(ws):
    msgs = [("m%d" % i).encode() for i in range(200)]
    ws.send(b"".join(frame(OP_TEXT, m) for m in msgs))
    for m in msgs:
        assert ws.read_message() == (OP_TEXT, m)


def test_echo_byte_by_byte(ws):
    data = frame(OP_TEXT, "split") + frame(OP_BIN, b"\x01\x02")
    for i in range(len(data)):
        ws.send(data[i:i + 1])
        time.sleep(0.002)
    assert ws.read_message() == (OP_TEXT, b"split")
    assert ws.read_message() == (OP_BIN, b"\x01\x02")


def test_fragmented_message_reassembled(ws):
    ws.send(frame(OP_TEXT, "Hel", fin=False) + frame(OP_CONT, "lo, ", fin=False) +
            frame(OP_CONT, "", fin=False) + frame(OP_CONT, "world"))
    assert ws.read_message() == (OP_TEXT, b"Hello, world")


def test_fragmented_binary_with_control_frames_between(ws):
    ws.send(frame(OP_BIN, b"ab", fin=False) + frame(OP_PING, b"p1") + frame(OP_CONT, b"cd", fin=False) +
            frame(OP_PONG, b"unsolicited") + frame(OP_PING, b"") + frame(OP_CONT, b"ef"))
    assert ws.read_message() == (OP_PONG, b"p1")
    assert ws.read_message() == (OP_PONG, b"")
    assert ws.read_message() == (OP_BIN, b"abcdef")


def test_empty_fragmented_message(ws):
    ws.send(frame(OP_BIN, b"", fin=False) + frame(OP_CONT, b""))
    assert ws.read_message() == (OP_BIN, b"")


def test_code_point_split_across_fragments(ws):
    s = "\u20ac\U0001F600".encode()  # 3 + 4 bytes
    ws.send(frame(OP_TEXT, s[:1], fin=False) + frame(OP_CONT, s[1:5], fin=False) + frame(OP_CONT, s[5:]))
    assert ws.read_message() == (OP_TEXT, s)


@pytest.mark.parametrize("payload", [b"", b"ping!", b"x" * 125])
def test_ping_pong_same_payload(ws, payload):
    ws.send(frame(OP_PING, payload))
    assert ws.read_message() == (OP_PONG, payload)


def test_unsolicited_pong_ignored(ws):
    ws.send(frame(OP_PONG, b"hi") + frame(OP_TEXT, "after"))
    assert ws.read_message() == (OP_TEXT, b"after")


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])
def test_close_echoes_valid_code(ws, code):
    ws.send(frame(OP_CLOSE, close_payload(code, b"bye")))
    ws.expect_close(code)


def test_close_without_payload(ws):
    ws.send(frame(OP_CLOSE, b""))
    ws.expect_close(None)


def test_close_after_messages(ws):
    ws.send(frame(OP_TEXT, "one") + frame(OP_CLOSE, close_payload(1000)))
    assert ws.read_message() == (OP_TEXT, b"one")
    ws.expect_close(1000)


def test_close_between_fragments(ws):
    ws.send(frame(OP_TEXT, "par", fin=False) + frame(OP_CLOSE, close_payload(1001)))
    ws.expect_close(1001)


def test_server_close_on_client_eof_keeps_server_alive(server):
    w = WS(server)
    w.send(frame(OP_TEXT, "x", fin=False))
    w.close()  # vanishes mid-message
    w2 = WS(server)
    w2.send(frame(OP_TEXT, "still here"))
    assert w2.read_message() == (OP_TEXT, b"still here")
    w2.close()


# --- failures: 1002 -----------------------------------------------------------------------

PROTOCOL_ERRORS = {
    "unmasked": frame(OP_TEXT, "hi", mask=False),
    "unmasked_empty": frame(OP_BIN, b"", mask=False),
    "rsv1": frame(OP_TEXT, "hi", rsv=4),
    "rsv2": frame(OP_TEXT, "hi", rsv=2),
    "rsv3": frame(OP_TEXT, "hi", rsv=1),
    "rsv_on_ping": frame(OP_PING, b"", rsv=4),
    "opcode3": frame(3, b"x"),
    "opcode7": frame(7, b"x"),
    "opcode11": frame(11, b""),
    "opcode15": frame(15, b""),
    "fragmented_ping": frame(OP_PING, b"p", fin=False),
    "fragmented_close": frame(OP_CLOSE, close_payload(1000), fin=False),
    "fragmented_pong": frame(OP_PONG, b"", fin=False),
    "ping_126": frame(OP_PING, b"x" * 126),
    "close_126": frame(OP_CLOSE, close_payload(1000, b"r" * 124)),
    "pong_126": frame(OP_PONG, b"x" * 126),
    "ping_len_127_form": frame(OP_PING, b"x" * 5, length=None)[:1] + b"\xff" + struct.pack("!Q", 5) + b"\0" * 4 + b"x" * 5,
    "continuation_without_message": frame(OP_CONT, b"x"),
    "continuation_after_complete": frame(OP_TEXT, "a") + frame(OP_CONT, b"b"),
    "text_during_fragmented": frame(OP_TEXT, "a", fin=False) + frame(OP_TEXT, "b"),
    "binary_during_fragmented": frame(OP_BIN, b"a", fin=False) + frame(OP_BIN, b"b"),
    "close_1_byte": frame(OP_CLOSE, b"\x03"),
}


@pytest.mark.parametrize("name", sorted(PROTOCOL_ERRORS))
def test_protocol_error_1002(ws, name):
    data = PROTOCOL_ERRORS[name]
    if name == "continuation_after_complete":
        ws.send(data)
        assert ws.read_message() == (OP_TEXT, b"a")
    else:
        ws.send(data)
    ws.expect_close(1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_code_1002(ws, code):
    ws.send(frame(OP_CLOSE, close_payload(code)))
    ws.expect_close(1002)


def test_failure_closes_without_waiting_for_client(ws):
    # expect_close already checks TCP closes within 1 s while we send nothing.
    ws.send(frame(OP_TEXT, "x", mask=False))
    ws.expect_close(1002, within=1.0)


# --- failures: 1007 -----------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",
    b"abc\xc0\xaf",          # overlong '/'
    b"\xed\xa0\x80",          # surrogate U+D800
    b"\xf4\x90\x80\x80",      # above U+10FFFF
    b"\xe2\x82",              # truncated at the end
    b"\x80",                  # lone continuation
    b"ok\xce",                # truncated 2-byte
]


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_text_1007(ws, payload):
    ws.send(frame(OP_TEXT, payload))
    ws.expect_close(1007)


def test_invalid_utf8_across_fragments_1007(ws):
    # each fragment alone could be a prefix; reassembled it ends inside a code point
    ws.send(frame(OP_TEXT, b"\xf0\x9f", fin=False) + frame(OP_CONT, b"\x98"))
    ws.expect_close(1007)


def test_invalid_utf8_in_later_fragment_1007(ws):
    ws.send(frame(OP_TEXT, b"\xe2\x82", fin=False) + frame(OP_CONT, b"\x41"))
    ws.expect_close(1007)


def test_binary_not_checked_for_utf8(ws):
    ws.send(frame(OP_BIN, b"\xff\xfe"))
    assert ws.read_message() == (OP_BIN, b"\xff\xfe")


def test_close_reason_invalid_utf8_1007(ws):
    ws.send(frame(OP_CLOSE, close_payload(1000, b"\xff\xfe")))
    ws.expect_close(1007)


def test_close_reason_valid_utf8(ws):
    ws.send(frame(OP_CLOSE, close_payload(1000, "d\u00e9j\u00e0".encode())))
    ws.expect_close(1000)


# --- failures: 1009 and the 1 MiB boundary --------------------------------------------------


def test_exactly_1mib_message_ok(ws):
    data = os.urandom(MIB)
    ws.send(frame(OP_BIN, data))
    assert ws.read_message(timeout=10) == (OP_BIN, data)


def test_exactly_1mib_fragmented_ok(ws):
    data = os.urandom(MIB)
    q = MIB // 4
    ws.send(frame(OP_BIN, data[:q], fin=False) + frame(OP_CONT, data[q:2 * q], fin=False) +
            frame(OP_PING, b"mid") + frame(OP_CONT, data[2 * q:3 * q], fin=False) + frame(OP_CONT, data[3 * q:]))
    assert ws.read_message() == (OP_PONG, b"mid")
    assert ws.read_message(timeout=10) == (OP_BIN, data)


def test_exactly_1mib_text_ok(ws):
    data = ("\u00e9" * (MIB // 2)).encode()
    assert len(data) == MIB
    ws.send(frame(OP_TEXT, data))
    assert ws.read_message(timeout=10) == (OP_TEXT, data)


def test_over_1mib_rejected_on_header(ws):
    # Only the header announcing 1048577 bytes: the 1009 must come at once.
    head = frame(OP_BIN, b"", length=MIB + 1)
    ws.send(head)
    ws.expect_close(1009)


@pytest.mark.parametrize("length", [MIB + 1, 2 * MIB, 1 << 40])
def test_over_1mib_lengths_1009(ws, length):
    ws.send(frame(OP_BIN, b"", length=length))
    ws.expect_close(1009)


def test_over_1mib_fragmented_rejected_on_header(ws):
    half = MIB // 2
    ws.send(frame(OP_BIN, b"a" * half, fin=False) + frame(OP_CONT, b"b" * half, fin=False))
    # this header takes the message to MIB + 1; no payload follows
    ws.send(frame(OP_CONT, b"", length=1)[:2])
    ws.send(b"\x00\x00\x00\x00")
    ws.expect_close(1009)


def test_over_1mib_with_payload_sent(ws):
    ws.c.send(frame(OP_TEXT, b"z" * (MIB + 1)), ignore_errors=True)
    ws.expect_close(1009)


def test_failure_after_1009_server_still_serves(server):
    w = WS(server)
    w.send(frame(OP_BIN, b"", length=MIB + 1))
    w.expect_close(1009)
    w.close()
    w = WS(server)
    w.send(frame(OP_TEXT, "alive"))
    assert w.read_message() == (OP_TEXT, b"alive")
    w.close()


# --- the websockets library: echo -------------------------------------------------------------

needs_lib = pytest.mark.skipif(websockets is None, reason="python3-websockets not installed")


def uri(server, path):
    return "%s://%s:%d%s" % (tlskit.scheme(ws=True), server[0], server[1], path)


def run(coro, limit=30):
    return asyncio.run(asyncio.wait_for(coro, limit))


@needs_lib
def test_library_echo(server):
    async def go():
        async with websockets.connect(uri(server, "/ws/echo"), compression=None, max_size=2 * MIB) as c:
            for m in ["text", b"bytes", "", b"", "\u2603" * 1000, os.urandom(200000)]:
                await c.send(m)
                assert await c.recv() == m
            await c.send(["frag", "mented"])
            assert await c.recv() == "fragmented"
            pong = await c.ping(b"lib")
            await asyncio.wait_for(pong, 5)
        assert c.close_code == 1000
    run(go())


@needs_lib
def test_library_echo_many_connections(server):
    async def one(i):
        async with websockets.connect(uri(server, "/ws/echo"), compression=None) as c:
            for j in range(20):
                m = "c%d-m%d" % (i, j)
                await c.send(m)
                assert await c.recv() == m
    async def go():
        await asyncio.gather(*(one(i) for i in range(40)))
    run(go())


# --- chat ------------------------------------------------------------------------------------------


@needs_lib
def test_chat_broadcast_many_members_order_per_sender(server):
    members, per = 20, 25

    async def go():
        conns = [await websockets.connect(uri(server, "/ws/chat"), compression=None) for _ in range(members)]
        try:
            async def sender(i, c):
                for j in range(per):
                    await c.send("%d:%d" % (i, j) if j % 2 == 0 else b"%d:%d" % (i, j))

            async def receiver(c):
                seen = {}
                total = members * per
                got = 0
                while got < total:
                    m = await c.recv()
                    text = m if isinstance(m, str) else m.decode()
                    i, j = map(int, text.split(":"))
                    assert isinstance(m, str) == (j % 2 == 0), "type changed: %r" % m
                    assert seen.get(i, -1) == j - 1, "sender %d: %d after %s" % (i, j, seen.get(i))
                    seen[i] = j
                    got += 1
                return seen

            recvs = [asyncio.ensure_future(receiver(c)) for c in conns]
            await asyncio.gather(*(sender(i, c) for i, c in enumerate(conns)))
            results = await asyncio.gather(*recvs)
            for seen in results:
                assert seen == {i: per - 1 for i in range(members)}
        finally:
            for c in conns:
                await c.close()
    run(go(), 60)


@needs_lib
def test_chat_sender_receives_own_message_unchanged(server):
    async def go():
        async with websockets.connect(uri(server, "/ws/chat"), compression=None) as c:
            for m in ["solo", b"\x00\x01", "", b"", "\u00e9\U0001F600"]:
                await c.send(m)
                # other tests' members may also talk: skip what is not ours
                while True:
                    got = await c.recv()
                    if got == m:
                        break
    run(go())


def test_chat_member_from_before_101(server):
    # B's 101 has been read; a message A sends after that must reach B.
    a = WS(server, "/ws/chat")
    try:
        for i in range(20):
            b = WS(server, "/ws/chat")
            tag = ("probe-%d-%s" % (i, os.urandom(4).hex())).encode()
            a.send(frame(OP_TEXT, tag))
            while True:
                op, data = b.read_message()
                if data == tag:
                    break
            b.close()
    finally:
        a.close()


def test_chat_own_message_right_after_101(server):
    b = WS(server, "/ws/chat")
    tag = os.urandom(8).hex().encode()
    b.send(frame(OP_BIN, tag))
    while True:
        op, data = b.read_message()
        if data == tag:
            assert op == OP_BIN
            break
    b.close()


def test_chat_vanished_member_does_not_affect_others(server):
    a = WS(server, "/ws/chat")
    b = WS(server, "/ws/chat")
    gone = [WS(server, "/ws/chat") for _ in range(5)]
    try:
        gone[0].send(frame(OP_TEXT, "bye", fin=False))
        for g in gone:
            g.c.sock.close()  # no close frame
        for i in range(50):
            tag = ("after-vanish-%d" % i).encode()
            a.send(frame(OP_TEXT, tag))
            for w in (a, b):
                while True:
                    op, data = w.read_message()
                    if data == tag:
                        break
    finally:
        a.close()
        b.close()


def test_chat_reset_member_does_not_affect_others(server):
    a = WS(server, "/ws/chat")
    r = WS(server, "/ws/chat")
    r.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    r.c.sock.close()  # RST
    try:
        tag = b"after-reset"
        a.send(frame(OP_TEXT, tag))
        while True:
            op, data = a.read_message()
            if data == tag:
                break
    finally:
        a.close()


def test_chat_slow_member_dropped_others_unaffected(server):
    # A member that never reads falls behind by more than the per-member bound
    # and is dropped; the others keep receiving everything.
    slow = WS(server, "/ws/chat", rcvbuf=4096)
    a = WS(server, "/ws/chat")
    try:
        big = b"q" * 200000
        n = 100  # 20 MB in total: more than the kernel buffers and the 4 MiB bound
        for i in range(n):
            a.send(frame(OP_BIN, big[:-8] + b"%08d" % i))
            op, data = a.read_message(timeout=10)
            while not data.startswith(b"qqqq") or data[-8:] != b"%08d" % i:
                op, data = a.read_message(timeout=10)
        # the slow member was dropped: reading what it has ends in EOF, not a hang
        deadline = time.monotonic() + 10
        closed = False
        while time.monotonic() < deadline:
            try:
                slow.c.read_some(5)
                slow.c.buf.clear()
            except PeerClosed:
                closed = True
                break
            except ReadTimeout:
                break
        assert closed, "the member that never read was not dropped"
    finally:
        slow.close()
        a.close()


@needs_lib
def test_chat_while_member_closes_cleanly(server):
    async def go():
        a = await websockets.connect(uri(server, "/ws/chat"), compression=None)
        b = await websockets.connect(uri(server, "/ws/chat"), compression=None)
        await b.close()
        assert b.close_code == 1000
        await a.send("after b left")
        while await a.recv() != "after b left":
            pass
        await a.close()
    run(go())


# --- shutdown ------------------------------------------------------------------------------------


def test_sigterm_with_open_websockets_exits_0(spawn_server):
    srv = spawn_server()
    echo = WS(srv.addr)
    chat = WS(srv.addr, "/ws/chat")
    echo.send(frame(OP_TEXT, "x", fin=False))  # mid-message
    rc, elapsed = srv.stop()
    assert rc == 0 and elapsed < 5.0, (rc, elapsed)
    for w in (echo, chat):
        closed, _ = w.c.wait_closed(1.0)
        assert closed
        w.close()
