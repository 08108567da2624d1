"""What the hub took over from vial_ws_group (include/vial/realtime.h:
vial_hub_publish_binary, vial_hub_set_limits, VIAL_HUB_ABORT), over real
sockets: a binary publish reaches a websocket as a binary frame; a
subscriber over a topic's byte bound, or whose queue has not moved for the
stall clock, has its connection closed at once while the subscribers that
keep up get everything; a websocket session that publishes faster than a
subscriber reads is paced (its socket not read) instead of the subscriber
being dropped. Conformance topics "bounded", "stalled" and "paced"
(examples/conformance/realtime.c)."""

import asyncio
import socket
import threading
import time

import pytest
import requests

from realtimekit import WsClient, base, flood, seq_of, stats, take_baseline, wait_subscribers, ws_uri
from test_abuse_ws import SlowReader, finish, start_flood, ws_connect

try:
    import websockets
except ImportError:  # pragma: no cover
    websockets = None

needs_lib = pytest.mark.skipif(websockets is None, reason="python3-websockets not installed")
OP_TEXT, OP_BIN = 1, 2



@pytest.fixture(autouse=True)
def hub_baseline(server):
    take_baseline(server)


def run(coro, limit=30):
    return asyncio.run(asyncio.wait_for(coro, limit))


@needs_lib
def test_binary_publish_reaches_a_websocket_as_a_binary_frame(server):
    async def go():
        async with websockets.connect(ws_uri(server, "/ws/hub/bin"), compression=None) as w, \
                websockets.connect(ws_uri(server, "/ws/hub-pub/bin"), compression=None) as pub:
            assert (await w.recv()).startswith("thread:")
            await asyncio.to_thread(wait_subscribers, server, 1)
            payload = bytes(range(256)) * 3
            r = await asyncio.to_thread(requests.post, base(server) + "/hub/publish-binary/bin", data=payload,
                                        timeout=10)
            assert r.status_code == 200 and r.text.strip() == "1", r.text
            got = await asyncio.wait_for(w.recv(), 5)
            assert isinstance(got, bytes) and got == payload
            # a websocket publisher's binary message stays binary, text stays text
            await pub.send(b"\xff\x00bin")
            await pub.send("text")
            assert await asyncio.wait_for(w.recv(), 5) == b"\xff\x00bin"
            assert await asyncio.wait_for(w.recv(), 5) == "text"
    run(go())


class FrameReader(threading.Thread):
    """Reads a raw websocket's frames as they come: the data frames' payloads."""

    def __init__(self, ws):
        super().__init__(daemon=True)
        self.ws, self.got, self.eof = ws, [], False

    def run(self):
        while True:
            try:
                f = self.ws.frame(limit=15)
            except OSError:  # closed by the test
                f = None
            if f is None:
                self.eof = True
                return
            if f[0] in (OP_TEXT, OP_BIN):
                self.got.append(f[1])


def eof_within(ws, secs):
    """Reads (and discards) what ws has until EOF: True, or False when
    bytes still come or nothing comes at all by then."""
    deadline = time.monotonic() + secs
    ws.s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            d = ws.s.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True
        if not d:
            return True
    return False


def slow_and_reader(server, topic):
    """Two subscribers of topic: one with a tiny receive buffer that is
    never read, one read by a FrameReader (started)."""
    slow = WsClient(server, "/ws/hub/" + topic, rcvbuf=4096)
    fast = WsClient(server, "/ws/hub/" + topic)
    assert slow.frame()[1].startswith(b"thread:")
    assert fast.frame()[1].startswith(b"thread:")
    wait_subscribers(server, 2)
    reader = FrameReader(fast)
    reader.start()
    return slow, fast, reader


def test_byte_bound_aborts_a_slow_subscriber_not_a_reader(server):
    # "bounded": 256 KiB a subscriber, VIAL_HUB_ABORT. One subscriber reads,
    # one never does; 100 x 64 KiB are published in steps the reader keeps
    # up with. The one that never reads ends (EOF, no close frame: its
    # socket is full), the reader gets every message, in order.
    before = stats(server)
    slow, fast, reader = slow_and_reader(server, "bounded")
    try:
        steps, per = 50, 2
        for i in range(steps):
            flood(server, "bounded", per, 65536, tag="b%d" % i)
            deadline = time.monotonic() + 10
            while len(reader.got) < (i + 1) * per and time.monotonic() < deadline:
                time.sleep(0.002)
            assert len(reader.got) == (i + 1) * per, "the reader got %d of %d" % (len(reader.got), (i + 1) * per)
        assert eof_within(slow, 10), "the subscriber that never read was not dropped"
        assert not reader.eof, "the reader was dropped"
        assert [seq_of(p) for p in reader.got] == [j for _ in range(steps) for j in range(per)]
        assert stats(server)["disconnected"] - before["disconnected"] == 1
    finally:
        slow.close()
        fast.close()


def test_stall_clock_aborts_a_subscriber_whose_queue_does_not_move(server):
    # "stalled": 64 MiB a subscriber (not reached here), a 500 ms stall clock.
    # A subscriber that never reads holds a queue once its socket is full;
    # a message published a second later finds it stalled and ends it.
    slow, fast, reader = slow_and_reader(server, "stalled")
    try:
        flood(server, "stalled", 100, 65536, tag="s")  # 6.4 MB: more than the socket buffers
        time.sleep(1.2)
        flood(server, "stalled", 1, 65536, tag="t")
        assert eof_within(slow, 10), "the subscriber whose queue did not move was not dropped"
        deadline = time.monotonic() + 10
        while len(reader.got) < 101 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(reader.got) == 101 and not reader.eof, len(reader.got)
    finally:
        slow.close()
        fast.close()


def test_publishing_session_is_paced_to_a_slow_subscriber(spawn_server):
    # "paced": 4 MiB a subscriber, a 1 MiB sender bound. A websocket session
    # publishes 1 KiB frames as fast as its client sends for 2 s; the one
    # subscriber reads 1 MiB/s. The server stops reading the publisher while
    # 1 MiB of its messages are queued, so the subscriber stays (unthrottled
    # it passed 4 MiB within a second and was dropped) and the server read
    # only about what the subscriber took (unthrottled: hundreds of MiB).
    srv = spawn_server(["--threads", "1"])
    ss, spend = ws_connect(srv.addr, "/ws/hub/paced")
    ss.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    slow = SlowReader(ss, spend, rate=1 << 20)
    slow.start()
    time.sleep(0.2)  # subscribed
    flood = start_flood(srv.addr, "/ws/hub-pub/paced", read=False)
    sent, _ = finish(flood)
    time.sleep(0.5)
    slow.stop()
    ss.close()
    # (a dropped subscriber may not have read its way to the EOF yet)
    assert stats(srv.addr)["disconnected"] == 0, "the subscriber that reads slowly was dropped"
    assert not slow.closed, "the subscriber that reads slowly was dropped (got %d bytes)" % slow.bytes
    assert slow.bytes > 512 << 10, slow.bytes
    assert sent < 32 << 20, "the server read %.1f MiB from a publisher far ahead of its subscriber" % (sent / 2**20)
