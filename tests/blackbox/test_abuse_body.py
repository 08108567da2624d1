"""Request bodies under abuse (the abuse issue, item 3): a minimum data rate
after a grace period, and a server-wide budget for body memory that is
returned to the system after the burst. Reduced versions of
bench/abuse/abuse.py's trickle and upload-hold attacks, on private servers
with small limits."""

import socket
import time

from httpkit import Client, req


def test_body_below_minimum_rate_gets_408(spawn_server):
    # grace 1 s, then 1000 bytes/s on average: one byte every 0.3 s is far below
    srv = spawn_server(["--body-grace-ms", "1000", "--body-min-rate", "1000"])
    c = Client(*srv.addr, timeout=10)
    t0 = time.monotonic()
    c.send(req("POST", "/echo/body", content_length=100))
    status = None
    for _ in range(30):
        if not c.send(b"x", ignore_errors=True):
            break
        c.sock.settimeout(0.3)
        try:
            data = c.sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if data:
            status = data.split(b" ", 2)[1]
        break
    took = time.monotonic() - t0
    assert status == b"408", "a body trickled at ~3 bytes/s was not refused (%r after %.1f s)" % (status, took)
    assert took < 5, took


def test_body_at_a_fair_rate_is_served(spawn_server):
    srv = spawn_server(["--body-grace-ms", "1000", "--body-min-rate", "1000"])
    c = Client(*srv.addr, timeout=10)
    body = b"y" * 3000
    c.send(req("POST", "/echo/body", content_length=len(body)))
    for k in range(0, len(body), 1000):  # 1000 bytes every 0.5 s: 2000 bytes/s
        c.send(body[k:k + 1000])
        time.sleep(0.5)
    r = c.read_response("POST", timeout=5)
    assert r.status == 200 and r.body == body, r


def test_body_memory_is_bounded_and_returned(spawn_server):
    # 24 uploads of 1 MiB each stop one byte short; a budget of 4 MiB of
    # bodies must keep the server's memory far below 24 MiB, and every upload
    # must still be served once the clients finish.
    srv = spawn_server(["--body-memory-max", "4M", "--threads", "1"])
    base = srv.rss_kib()
    size = 1 << 20
    socks = []
    try:
        for _ in range(24):
            s = socket.create_connection(srv.addr, timeout=10)
            s.sendall(b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
            s.settimeout(0.02)
            try:
                s.sendall(b"z" * (size - 1))
            except socket.timeout:
                pass  # the server stopped reading this one: that is the point
            socks.append(s)
        time.sleep(1.0)
        held = srv.rss_kib() - base
        assert held < 14 * 1024, "RSS grew by %d KiB holding 24 MiB of bodies with a 4 MiB budget" % held
        # finish every upload, then read every answer
        for s in socks:
            s.settimeout(10)
        ok = 0
        for s in socks:
            s.sendall(b"z" * (size - 1))  # may repeat bytes already sent: only the status matters
        for s in socks:
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
            ok += head.startswith(b"HTTP/1.1 200")
        assert ok == len(socks), "%d of %d uploads served" % (ok, len(socks))
        time.sleep(0.5)
        after = srv.rss_kib() - base
        assert after < 8 * 1024, "RSS still %d KiB above its start after the uploads left" % after
    finally:
        for s in socks:
            s.close()
