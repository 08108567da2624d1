"""The broadcast hub over real sockets (include/vial/realtime.h): websocket,
SSE and plain-stream subscribers spread over the loop threads all get what a
sync view (a worker thread) or a thread of the app's own publishes, each
publisher's messages in order; slow websocket subscribers are dropped from or
closed with 1008 per the topic's policy; leaving ends the subscription
(conformance routes in examples/conformance/realtime.c)."""

import asyncio
import struct
import threading
import time

import pytest
import requests

from realtimekit import (SseClient, WsClient, base, flood, publish, seq_of, stats, tag_of, take_baseline,
                         wait_subscribers, ws_uri)
import tlskit

try:
    import websockets
except ImportError:  # pragma: no cover
    websockets = None

needs_lib = pytest.mark.skipif(websockets is None, reason="python3-websockets not installed")
OP_TEXT, OP_CLOSE = 1, 8




@pytest.fixture(autouse=True)
def hub_baseline(server):
    take_baseline(server)

class StreamClient(SseClient):
    """/hub/stream/<topic>: one line a message."""

    def next_line(self, limit=5.0):
        deadline = time.monotonic() + limit
        while b"\n" not in self.body:
            if not self._fill(deadline):
                return None
        line, self.body = self.body.split(b"\n", 1)
        return line.decode()


@needs_lib
def test_ws_sse_and_stream_subscribers_on_every_thread(server):
    async def go():
        # The kernel spreads connections over the loop threads by a hash:
        # six can all land on one (about 1 in 32), so open more until two
        # threads are covered (bounded).
        wss, threads = [], set()
        while len(wss) < 6 or (len(threads) < 2 and len(wss) < 40):
            w = await websockets.connect(ws_uri(server, "/ws/hub/all"), compression=None)
            wss.append(w)
            first = await w.recv()
            assert first.startswith("thread:")
            threads.add(first)
        sses, streams = [], []
        while len(sses) < 6 or (len({c.headers["x-thread"] for c in sses + streams}) < 2 and len(sses) < 40):
            sses.append(SseClient(server, "/hub/sse/all"))
        streams = [StreamClient(server, "/hub/stream/all") for _ in range(4)]
        sse_threads = {c.headers["x-thread"] for c in sses + streams}
        wait_subscribers(server, len(wss) + len(sses) + len(streams))
        # 2 loop threads (the default on this machine): connections spread
        assert len(threads) > 1 and len(sse_threads) > 1, (threads, sse_threads)
        loop = asyncio.get_running_loop()
        r = await loop.run_in_executor(None, lambda: publish(server, "all", b"to everyone"))
        assert r.status_code == 200
        assert int(r.text.split()[1]) > 1  # posted to more than one loop thread
        r2 = await loop.run_in_executor(None, lambda: requests.post(
            base(server) + "/hub/from-thread/all", data=b"from a thread", timeout=5))
        assert r2.status_code == 200 and int(r2.text) > 1
        for w in wss:
            assert await asyncio.wait_for(w.recv(), 5) == "to everyone"
            assert await asyncio.wait_for(w.recv(), 5) == "from a thread"
        for c in sses:
            assert c.next_event()["data"] == "to everyone"
            assert c.next_event()["data"] == "from a thread"
        for c in streams:
            assert c.next_line() == "to everyone"
            assert c.next_line() == "from a thread"
        for w in wss:
            await w.close()
        for c in sses + streams:
            c.close()
    asyncio.run(asyncio.wait_for(go(), 30))
    wait_subscribers(server, 0)


def test_order_per_publisher_with_concurrent_publishers(server):
    """Two workers flood the topic at once: every subscriber sees each one's
    messages in order, and all of them (the default queue holds the burst)."""
    subs = [WsClient(server, "/ws/hub/order") for _ in range(4)]
    for w in subs:
        assert w.frame()[1].startswith(b"thread:")
    sses = [SseClient(server, "/hub/sse/order") for _ in range(4)]
    wait_subscribers(server, 8)
    n = 100
    pubs = [threading.Thread(target=flood, args=(server, "order", n, 32, tag)) for tag in ("a", "b")]
    for t in pubs:
        t.start()
    for t in pubs:
        t.join()

    def check(payloads):
        by = {"a": [], "b": []}
        for p in payloads:
            by[tag_of(p)].append(seq_of(p))
        assert by["a"] == list(range(n)) and by["b"] == list(range(n)), by

    for w in subs:
        frames = [w.frame() for _ in range(2 * n)]
        assert all(f and f[0] == OP_TEXT for f in frames)
        check([f[1] for f in frames])
    for c in sses:
        check([c.next_event()["data"] for _ in range(2 * n)])
    for w in subs:
        w.close()
    for c in sses:
        c.close()
    wait_subscribers(server, 0)


def test_ws_slow_subscriber_drop_oldest(server):
    before = stats(server)
    w = WsClient(server, "/ws/hub/slow-drop", rcvbuf=4096)
    assert w.frame()[1].startswith(b"thread:")
    wait_subscribers(server, 1)
    flood(server, "slow-drop", 400, 65536)
    publish(server, "slow-drop", b"seq:999999:after")
    seqs = []
    while True:
        f = w.frame(limit=3.0)
        assert f is not None and f[0] == OP_TEXT, "session ended (%d messages)" % len(seqs)
        seqs.append(seq_of(f[1]))
        if seqs[-1] == 999999:
            break
    assert seqs == sorted(seqs)
    assert len(seqs) < 401, "nothing was dropped"
    assert stats(server)["dropped"] - before["dropped"] == 401 - len(seqs)
    w.send_close()
    w.close()
    wait_subscribers(server, 0)


def test_ws_direct_sends_cut_short_keep_frames_whole_and_in_order(server):
    """A subscriber that reads slowly: the hub's drain writes broadcasts
    straight to its socket until the socket is full (or takes part of a
    frame: the rest must go out before anything else); later broadcasts
    queue behind and go out through the session. Every frame arrives whole,
    in order, none lost (the queue holds them all)."""
    before = stats(server)
    w = WsClient(server, "/ws/hub/direct-partial", rcvbuf=4096)
    assert w.frame()[1].startswith(b"thread:")
    wait_subscribers(server, 1)
    n, size = 240, 30000  # 7 MB: more than the socket's send buffer takes
    for i in range(3):
        flood(server, "direct-partial", n // 3, size, tag="p%d" % i)
    got = []
    for _ in range(n):
        f = w.frame(limit=5.0)
        assert f is not None and f[0] == OP_TEXT, "ended after %d messages" % len(got)
        assert len(f[1]) == size and f[1].endswith(b"x"), (len(got), f[1][:40])
        got.append((tag_of(f[1]), seq_of(f[1])))
    assert got == [("p%d" % i, k) for i in range(3) for k in range(n // 3)]
    assert stats(server)["dropped"] == before["dropped"]
    w.send_close()
    w.close()
    wait_subscribers(server, 0)


def test_ws_batched_direct_sends_cut_short_keep_frames_whole_and_in_order(server):
    """The same with six slow readers of one topic: at least three share a
    loop thread, whose drain sends to them in one batch (runtime/sendq.c,
    io_uring where the kernel allows it). A send in the batch that takes
    part of a frame, or none (the socket full), must leave that
    subscriber's stream whole and in order, as a lone send does."""
    before = stats(server)
    ws = [WsClient(server, "/ws/hub/direct-batch", rcvbuf=4096) for _ in range(6)]
    for w in ws:
        assert w.frame()[1].startswith(b"thread:")
    wait_subscribers(server, 6)
    n, size = 120, 30000  # 3.6 MB each: more than a socket's send buffer takes
    for i in range(3):
        flood(server, "direct-batch", n // 3, size, tag="b%d" % i)
    for j, w in enumerate(ws):
        got = []
        for _ in range(n):
            f = w.frame(limit=5.0)
            assert f is not None and f[0] == OP_TEXT, "subscriber %d ended after %d messages" % (j, len(got))
            assert len(f[1]) == size and f[1].endswith(b"x"), (j, len(got), f[1][:40])
            got.append((tag_of(f[1]), seq_of(f[1])))
        assert got == [("b%d" % i, k) for i in range(3) for k in range(n // 3)], j
    assert stats(server)["dropped"] == before["dropped"]
    for w in ws:
        w.send_close()
        w.close()
    wait_subscribers(server, 0)


def test_ws_slow_subscriber_closed_with_1008(server):
    before = stats(server)
    w = WsClient(server, "/ws/hub/slow-close", rcvbuf=4096)
    assert w.frame()[1].startswith(b"thread:")
    wait_subscribers(server, 1)
    flood(server, "slow-close", 400, 65536)
    seqs = []
    while True:
        f = w.frame(limit=5.0)
        assert f is not None, "no close frame (%d messages)" % len(seqs)
        if f[0] == OP_CLOSE:
            assert struct.unpack(">H", f[1][:2])[0] == 1008
            break
        seqs.append(seq_of(f[1]))
    assert seqs == list(range(len(seqs))) and len(seqs) < 400
    assert stats(server)["disconnected"] == before["disconnected"] + 1
    w.close()
    wait_subscribers(server, 0)


@needs_lib
def test_ws_leaving_ends_subscription(server):
    async def go():
        ws = [await websockets.connect(ws_uri(server, "/ws/hub/bye"), compression=None) for _ in range(5)]
        for w in ws:
            await w.recv()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, wait_subscribers, server, 5)
        for w in ws[:2]:
            await w.close()
        ws[2].transport.abort()  # vanishes without a close
        await loop.run_in_executor(None, wait_subscribers, server, 2)
        await loop.run_in_executor(None, publish, server, "bye", b"left")
        for w in ws[3:]:
            assert await asyncio.wait_for(w.recv(), 5) == "left"
            await w.close()
    asyncio.run(asyncio.wait_for(go(), 30))
    wait_subscribers(server, 0)


@needs_lib
def test_ws_message_published_to_topic(server):
    """A websocket handler publishes what its peer sends: every subscriber of
    the topic gets it, the sender too."""
    async def go():
        a = await websockets.connect(ws_uri(server, "/ws/hub/chat"), compression=None)
        b = await websockets.connect(ws_uri(server, "/ws/hub/chat"), compression=None)
        await a.recv()
        await b.recv()
        await a.send("hi from a")
        assert await asyncio.wait_for(a.recv(), 5) == "hi from a"
        assert await asyncio.wait_for(b.recv(), 5) == "hi from a"
        await a.close()
        await b.close()
    asyncio.run(asyncio.wait_for(go(), 30))
    wait_subscribers(server, 0)


def test_metrics_name_the_hub(spawn_server):
    srv = spawn_server(["--metrics-path", "/metrics"])
    body = requests.get("%s://%s:%d/metrics" % ((tlskit.scheme(),) + srv.addr), timeout=5).text
    for name in ("vial_hub_published_total", "vial_hub_delivered_total", "vial_hub_dropped_total",
                 "vial_hub_disconnected_total", "vial_hub_subscribers"):
        assert "\n" + name + " " in body, name
