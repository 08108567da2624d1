"""Server-sent events over real sockets (include/vial/realtime.h): the stream's
head, field encoding (no injection through event or id), a publish from a sync
view, Last-Event-ID replay, heartbeats, and the end of the subscription when
the client leaves or is too slow (conformance routes in
examples/conformance/realtime.c)."""

import socket
import time

import pytest
import requests

import tlskit
from realtimekit import SseClient, base, flood, publish, seq_of, stats, tag_of, wait_subscribers, take_baseline



@pytest.fixture(autouse=True)
def hub_baseline(server):
    take_baseline(server)

def test_stream_head(server):
    c = SseClient(server, "/hub/sse/head")
    try:
        assert c.status == 200
        assert c.headers["content-type"].startswith("text/event-stream")
        assert c.headers["cache-control"] == "no-cache"
        assert c.headers["x-accel-buffering"] == "no"
        assert c.headers["transfer-encoding"] == "chunked"
    finally:
        c.close()
    wait_subscribers(server, 0)


def test_publish_from_sync_view_reaches_subscriber(server):
    c = SseClient(server, "/hub/sse/news")
    try:
        wait_subscribers(server, 1)
        r = publish(server, "news", b"line one\nline two\r\nline three\rlast", event="update")
        assert r.status_code == 200
        ev = c.next_event()
        assert ev["event"] == "update"
        assert ev["id"] == r.text.split()[0]
        # each line its own data: line; the client joins them with LF
        assert ev["data"] == "line one\nline two\nline three\nlast"
    finally:
        c.close()
    wait_subscribers(server, 0)


@pytest.mark.parametrize("query", [
    "event=a%0Adata:%20evil&data=x",     # LF in event
    "event=a%0Ddata:%20evil&data=x",     # lone CR in event
    "id=1%0D%0Aevent:%20evil&data=x",    # CRLF in id
    "id=1%0Aretry:%201&data=x",
])
def test_newline_in_event_or_id_is_refused(server, query):
    r = requests.get(base(server) + "/sse/encode?" + query, timeout=5)
    assert r.status_code == 400
    assert r.text == "refused\n"


def test_newline_in_publish_event_is_refused(server):
    r = publish(server, "news", b"x", event="a\nevent: b")
    assert r.status_code == 400


def test_data_lines_cannot_inject_fields(server):
    r = requests.get(base(server) + "/sse/encode", params={"data": "a\nevent: evil\rid: 9\r\n\r\nretry: 1"},
                     timeout=5)
    assert r.status_code == 200
    assert r.text == "data: a\ndata: event: evil\ndata: id: 9\ndata: \ndata: retry: 1\n\n"


def test_last_event_id_replays_missed_events(server):
    ids = []
    for i in range(4):
        r = publish(server, "replay", ("missed %d" % i).encode())
        assert r.status_code == 200
        ids.append(r.text.split()[0])
    c = SseClient(server, "/hub/sse/replay", headers=[("Last-Event-ID", ids[1])])
    try:
        got = [c.next_event() for _ in range(2)]
        assert [e["id"] for e in got] == ids[2:]
        assert [e["data"] for e in got] == ["missed 2", "missed 3"]
        wait_subscribers(server, 1)
        r = publish(server, "replay", b"live")
        ev = c.next_event()
        assert ev["data"] == "live" and ev["id"] == r.text.split()[0]
    finally:
        c.close()
    wait_subscribers(server, 0)


def test_no_last_event_id_no_replay(server):
    publish(server, "replay2", b"old")
    c = SseClient(server, "/hub/sse/replay2")
    try:
        wait_subscribers(server, 1)
        publish(server, "replay2", b"new")
        assert c.next_event()["data"] == "new"
    finally:
        c.close()
    wait_subscribers(server, 0)


def test_heartbeat_comments(server):
    c = SseClient(server, "/hub/sse/quiet?hb=100")
    try:
        t0 = time.monotonic()
        pings = 0
        while pings < 3:
            b = c.next_block(limit=2.0)
            assert b is not None, "no heartbeat"
            assert b == [("", "ping")]
            pings += 1
        assert time.monotonic() - t0 >= 0.25
    finally:
        c.close()
    wait_subscribers(server, 0)


def test_no_heartbeat_while_events_flow(server):
    """Events written straight from the hub (the subscriber's coroutine not
    woken) still count as traffic: no ping while they come faster than the
    heartbeat interval; one once they stop."""
    c = SseClient(server, "/hub/sse/busy?hb=300")
    try:
        wait_subscribers(server, 1)
        for i in range(8):
            publish(server, "busy", b"tick %d" % i)
            time.sleep(0.1)
        blocks = []
        while True:
            b = c.next_block(limit=2.0)
            assert b is not None, "no heartbeat after the events"
            blocks.append(b)
            if b == [("", "ping")]:
                break
        events = [b for b in blocks if b != [("", "ping")]]
        assert len(events) == 8 and len(blocks) == 9, blocks
    finally:
        c.close()
    wait_subscribers(server, 0)


def test_slow_reader_gets_every_event_whole_and_in_order(server):
    """The hub writes events straight to the socket until it is full, then
    through the subscriber's queue and coroutine: 7 MB to a reader with a
    small buffer arrive whole, in order, none dropped (the queue holds
    them all)."""
    before = stats(server)
    c = SseClient(server, "/hub/sse/direct-slow", rcvbuf=4096)
    try:
        wait_subscribers(server, 1)
        n, size = 240, 30000
        for i in range(3):
            flood(server, "direct-slow", n // 3, size, tag="p%d" % i)
        got = []
        for _ in range(n):
            ev = c.next_event(limit=5.0)
            assert ev is not None, "stream stopped after %d events" % len(got)
            assert len(ev["data"]) == size, (len(got), ev["data"][:40])
            got.append((tag_of(ev["data"]), seq_of(ev["data"])))
        assert got == [("p%d" % i, k) for i in range(3) for k in range(n // 3)]
        assert stats(server)["dropped"] == before["dropped"]
    finally:
        c.close()
    wait_subscribers(server, 0)


def test_http10_subscriber_gets_events_unchunked(server):
    """An HTTP/1.0 stream ends at the close, so it is not chunked: the events
    the hub writes straight to it are the bare SSE bytes."""
    s = socket.create_connection(server, timeout=10)
    s = tlskit.wrap(s) if tlskit.ENABLED else s
    try:
        s.sendall(b"GET /hub/sse/old HTTP/1.0\r\nHost: localhost\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            assert d, "closed before the head"
            buf += d
        head, body = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        assert b"chunked" not in head.lower()
        wait_subscribers(server, 1)
        ids = [publish(server, "old", b"first").text.split()[0], publish(server, "old", b"second").text.split()[0]]
        want = b"id: %s\ndata: first\n\nid: %s\ndata: second\n\n" % (ids[0].encode(), ids[1].encode())
        deadline = time.monotonic() + 5
        while len(body) < len(want) and time.monotonic() < deadline:
            d = s.recv(65536)
            if not d:
                break
            body += d
        assert body == want, body
    finally:
        s.close()
    wait_subscribers(server, 0)


def test_client_leaving_ends_subscription(server):
    clients = [SseClient(server, "/hub/sse/leave") for _ in range(6)]
    wait_subscribers(server, 6)
    for c in clients[:3]:
        c.close()
    wait_subscribers(server, 3)
    publish(server, "leave", b"still here")
    for c in clients[3:]:
        assert c.next_event()["data"] == "still here"
        c.close()
    wait_subscribers(server, 0)


def test_slow_subscriber_drop_oldest(server):
    before = stats(server)
    c = SseClient(server, "/hub/sse/slow-drop", rcvbuf=4096)
    try:
        wait_subscribers(server, 1)
        flood(server, "slow-drop", 400, 65536)   # far more than the socket holds
        publish(server, "slow-drop", b"seq:999999:after")
        seqs = []
        while True:
            ev = c.next_event(limit=3.0)
            assert ev is not None, "stream stopped (%d events)" % len(seqs)
            seqs.append(seq_of(ev["data"]))
            if seqs[-1] == 999999:
                break
        assert seqs == sorted(seqs), "out of order"
        assert len(seqs) < 401, "nothing was dropped"
        after = stats(server)
        assert after["dropped"] - before["dropped"] == 401 - len(seqs)
        assert after["disconnected"] == before["disconnected"]
    finally:
        c.close()
    wait_subscribers(server, 0)


def test_slow_subscriber_disconnected(server):
    before = stats(server)
    c = SseClient(server, "/hub/sse/slow-close", rcvbuf=4096)
    try:
        wait_subscribers(server, 1)
        flood(server, "slow-close", 400, 65536)
        seqs = []
        while True:
            ev = c.next_event(limit=5.0)
            if ev is None:
                break
            seqs.append(seq_of(ev["data"]))
        assert c.ended or c.eof, "the stream did not end"
        assert seqs == list(range(len(seqs))), "a gap before the end"
        assert len(seqs) < 400
        assert stats(server)["disconnected"] == before["disconnected"] + 1
    finally:
        c.close()
    wait_subscribers(server, 0)
