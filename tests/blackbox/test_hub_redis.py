"""The hub across instances (vial_hub_use_redis): two conformance servers on one
Redis act as one hub. A websocket subscriber on A and an SSE subscriber on B
(and one of each kind on the other instance) get what a sync view of A and an
async view of B publish, once each, in order; a Redis restart leaves the
subscribers connected and the hub resubscribes.

Needs a throwaway Redis: VIAL_TEST_REDIS=127.0.0.1:PORT (scripts/test.sh
starts one; by hand: tests/services/redis.sh start DIR). Without it the tests
fail, as the Redis client's do: a hub that never crossed instances must not
pass silently."""

import os
import socket
import subprocess
import time
import uuid

import pytest
import requests

from realtimekit import SseClient, WsClient

PREFIX = "vialtest:hub:"  # examples/conformance/realtime.c


def redis_addr():
    a = os.environ.get("VIAL_TEST_REDIS", "")
    if not a:
        pytest.fail("VIAL_TEST_REDIS is not set (tests/services/redis.sh start DIR prints the port)",
                    pytrace=False)
    host, port = a.rsplit(":", 1)
    return host, int(port)


def redis_cmd(*args, timeout=2.0):
    """One command over RESP; the reply as int, bytes, str or list (simple)."""
    s = socket.create_connection(redis_addr(), timeout=timeout)
    try:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")

        def read():
            line = f.readline().rstrip(b"\r\n")
            t, rest = line[:1], line[1:]
            if t == b"+":
                return rest.decode()
            if t == b"-":
                raise AssertionError("redis: " + rest.decode())
            if t == b":":
                return int(rest)
            if t == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)
                return data[:-2]
            if t == b"*":
                return [read() for _ in range(int(rest))]
            raise AssertionError("redis: bad reply %r" % line)

        return read()
    finally:
        s.close()


def base(srv):
    return "http://%s:%d" % srv.addr


def stats(srv):
    r = requests.get(base(srv) + "/hub/stats", timeout=5)
    assert r.status_code == 200
    return r.json()


def wait_for(cond, what, limit=10.0):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def numpat():
    """Connections with a pattern subscription (PUBSUB NUMPAT counts patterns)."""
    return redis_cmd("CLIENT", "LIST").count(b" psub=1 ")


def settled_numpat():
    """numpat() once the previous test's servers' connections are gone: a
    killed server's sockets close some milliseconds after its exit (tens of
    ms on io_uring, whose ring a kernel worker tears down)."""
    last = numpat()
    for _ in range(20):
        time.sleep(0.1)
        now = numpat()
        if now == last:
            return now
        last = now
    return last


@pytest.fixture
def pair(spawn_server):
    """Two instances on the shared Redis, both subscribed to it."""
    redis_addr()
    env = dict(os.environ, CONFORMANCE_HUB_REDIS=os.environ["VIAL_TEST_REDIS"])
    before = settled_numpat()
    a = spawn_server(["--metrics-path", "/metrics"], env=env)
    b = spawn_server(env=env)
    wait_for(lambda: numpat() >= before + 2, "both instances to PSUBSCRIBE")
    return a, b


class Subscribers:
    """A websocket and an SSE subscriber on each instance, all of one topic."""

    def __init__(self, a, b, topic):
        self.ws_a = WsClient(a.addr, "/ws/hub/" + topic)
        self.ws_b = WsClient(b.addr, "/ws/hub/" + topic)
        for w in (self.ws_a, self.ws_b):
            op, first = w.frame()
            assert first.startswith(b"thread:")
        self.sse_a = SseClient(a.addr, "/hub/sse/" + topic)
        self.sse_b = SseClient(b.addr, "/hub/sse/" + topic)
        for c in (self.sse_a, self.sse_b):
            assert c.status == 200
        wait_for(lambda: stats(a)["subscribers"] >= 2 and stats(b)["subscribers"] >= 2, "the subscribers")

    def next_all(self, limit=5.0):
        """What each subscriber receives next: [ws A, ws B, sse A, sse B]."""
        out = []
        for w in (self.ws_a, self.ws_b):
            f = w.frame(limit)
            out.append(f[1].decode() if f else None)
        for c in (self.sse_a, self.sse_b):
            ev = c.next_event(limit)
            out.append(ev.get("data") if ev else None)
        return out

    def close(self):
        for c in (self.ws_a, self.ws_b, self.sse_a, self.sse_b):
            c.close()


def publish_sync(srv, topic, body):
    r = requests.post(base(srv) + "/hub/publish/" + topic, data=body, timeout=5)
    assert r.status_code == 200, r.text


def publish_async(srv, topic, body):
    r = requests.post(base(srv) + "/hub/publish-async/" + topic, data=body, timeout=5)
    assert r.status_code == 200, r.text


def test_two_instances_are_one_hub(pair):
    a, b = pair
    topic = "t" + uuid.uuid4().hex[:8]
    n0 = numpat()
    subs = Subscribers(a, b, topic)
    more = [Subscribers(a, b, topic + "-other") for _ in range(2)]
    try:
        assert numpat() == n0  # one subscription per instance, not per client
        publish_sync(a, topic, b"one from A (sync view)")
        assert subs.next_all() == ["one from A (sync view)"] * 4
        publish_async(b, topic, b"two from B (async view)")
        assert subs.next_all() == ["two from B (async view)"] * 4
        r = requests.post(base(b) + "/hub/from-thread/" + topic, data=b"three from a thread of B", timeout=5)
        assert r.status_code == 200, r.text
        assert subs.next_all() == ["three from a thread of B"] * 4
        # Exactly once: a duplicate of any would come before this.
        publish_sync(b, topic, b"end")
        assert subs.next_all() == ["end"] * 4
        sa, sb = stats(a), stats(b)
        assert sa["redis_published"] >= 1 and sb["redis_published"] >= 2, (sa, sb)
        assert sa["redis_received"] >= 2 and sb["redis_received"] >= 1, (sa, sb)
        body = requests.get(base(a) + "/metrics", timeout=5).text
        for name in ("published", "received", "reconnects", "dropped"):
            assert "\nvial_hub_redis_%s_total " % name in body, name
    finally:
        subs.close()
        for m in more:
            m.close()


def test_order_per_publisher_across_instances(pair):
    a, b = pair
    topic = "o" + uuid.uuid4().hex[:8]
    subs = Subscribers(a, b, topic)
    try:
        n = 200
        r = requests.post(base(a) + "/hub/flood/" + topic, params={"n": n, "size": 24, "tag": "A"}, timeout=30)
        assert r.status_code == 200
        for w in (subs.ws_a, subs.ws_b):
            got = []
            for _ in range(n):
                f = w.frame()
                assert f, "ws: only %d of %d" % (len(got), n)
                got.append(int(f[1].split(b":")[1]))
            assert got == list(range(n))
        for c in (subs.sse_a, subs.sse_b):
            got = [int(c.next_event()["data"].split(":")[1]) for _ in range(n)]
            assert got == list(range(n))
    finally:
        subs.close()


def redis_restart():
    """Stops the test Redis and starts it again on the same port with its
    own config file (tests/services/redis.sh writes one)."""
    info = redis_cmd("INFO", "server").decode()
    fields = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
    conf = fields["config_file"].strip()
    pid = int(fields["process_id"])
    assert conf, "the test Redis runs without a config file: cannot restart it"
    try:
        redis_cmd("SHUTDOWN", "NOSAVE")
    except (OSError, AssertionError):
        pass  # it closes the connection instead of answering
    t0 = time.monotonic()
    while os.path.exists("/proc/%d" % pid):
        assert time.monotonic() - t0 < 10, "Redis did not stop"
        time.sleep(0.02)
    subprocess.run(["redis-server", conf], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while True:
        try:
            if redis_cmd("PING") == "PONG":
                return
        except OSError:
            pass
        assert time.monotonic() - t0 < 10, "Redis did not come back"
        time.sleep(0.05)


def test_redis_restart_keeps_subscribers(pair):
    a, b = pair
    topic = "r" + uuid.uuid4().hex[:8]
    subs = Subscribers(a, b, topic)
    try:
        publish_sync(a, topic, b"before")
        assert subs.next_all() == ["before"] * 4
        reconnects = stats(a)["redis_reconnects"], stats(b)["redis_reconnects"]
        redis_restart()
        # The outage: delivered on the publishing instance at least.
        wait_for(lambda: stats(a)["redis_reconnects"] > reconnects[0]
                 and stats(b)["redis_reconnects"] > reconnects[1], "both hubs to resubscribe", limit=15)
        publish_async(b, topic, b"after")
        assert subs.next_all() == ["after"] * 4
        publish_sync(a, topic, b"end")
        assert subs.next_all() == ["end"] * 4
        assert stats(a)["subscribers"] >= 2 and stats(b)["subscribers"] >= 2
    finally:
        subs.close()


def test_plain_publish_from_outside_reaches_subscribers(pair):
    """A PUBLISH that is not the hub's own form (redis-cli) arrives as data."""
    a, b = pair
    topic = "x" + uuid.uuid4().hex[:8]
    subs = Subscribers(a, b, topic)
    try:
        assert redis_cmd("PUBLISH", PREFIX + topic, "from redis-cli") >= 2
        assert subs.next_all() == ["from redis-cli"] * 4
    finally:
        subs.close()


def test_shutdown_ends_the_subscription(pair):
    """SIGTERM: an instance in Redis mode exits at once, cleanly (its
    subscription is cancelled with the drain), and leaves Redis."""
    a, b = pair
    before = numpat()
    rc, took = a.stop()
    assert rc == 0 and took < 3, (rc, took, a.log_text())
    wait_for(lambda: numpat() == before - 1, "the instance's PSUBSCRIBE to go")


def test_redis_unreachable_delivers_locally(spawn_server):
    """No Redis at the address: the instance serves, publishes reach its own
    subscribers (once), and SIGTERM cancels the retry pause."""
    redis_addr()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    a = spawn_server(env=dict(os.environ, CONFORMANCE_HUB_REDIS="127.0.0.1:%d" % port))
    ws = WsClient(a.addr, "/ws/hub/alone")
    try:
        assert ws.frame()[1].startswith(b"thread:")
        wait_for(lambda: stats(a)["subscribers"] >= 1, "the subscriber")
        publish_sync(a, "alone", b"local only")
        publish_async(a, "alone", b"still local")
        assert ws.frame()[1] == b"local only"
        assert ws.frame()[1] == b"still local"
        assert ws.frame(0.3) is None
        assert stats(a)["redis_published"] == 0
    finally:
        ws.close()
    rc, took = a.stop()
    assert rc == 0 and took < 3, (rc, took, a.log_text())
    assert "Redis subscription failed" in a.log_text()


def test_sse_fields_cross_instances(pair):
    """Event name, id and multi-line data published on A reach B's SSE
    subscriber as they were."""
    a, b = pair
    topic = "f" + uuid.uuid4().hex[:8]
    c = SseClient(b.addr, "/hub/sse/" + topic)
    try:
        wait_for(lambda: stats(b)["subscribers"] >= 1, "the subscriber")
        r = requests.post(base(a) + "/hub/publish/" + topic, data=b"line 1\nline 2",
                          params={"event": "news"}, timeout=5)
        assert r.status_code == 200
        ev = c.next_event()
        assert ev and ev["data"] == "line 1\nline 2" and ev.get("event") == "news", ev
        assert ev.get("id") == r.text.split()[0], (ev, r.text)
    finally:
        c.close()
