#!/usr/bin/python3
"""While N long async handlers are in flight, how fast do short requests go?

Starts build/examples/conformance, opens N connections each waiting on
GET /async/sleep?ms=HOLD (and a few /sync/block?ms=HOLD on the pool), then
times short requests (GET /async/sleep?ms=0) on a separate connection.
Prints the short requests' median and p99 latency next to a baseline taken
with nothing in flight. Bounded: N connections, HOLD ms, a fixed number of
probes; loopback only; the server is stopped by PID.

usage: bench/async-inflight.py [N=1000] [HOLD_MS=1000] [PROBES=200]
"""
import os, resource, selectors, signal, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
HOLD = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
PROBES = int(sys.argv[3]) if len(sys.argv) > 3 else 200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(port, count):
    lat = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(count):
            t0 = time.perf_counter()
            s.sendall(b"GET /async/sleep?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while not buf.endswith(b"}"):
                buf += s.recv(4096)
            lat.append((time.perf_counter() - t0) * 1000)
    return lat


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    srv = subprocess.Popen([os.path.join(ROOT, "build/examples/conformance"), "--host", "127.0.0.1",
                            "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        base = probe(port, PROBES)
        sel = selectors.DefaultSelector()
        socks = []
        t0 = time.perf_counter()
        for i in range(N):
            s = socket.create_connection(("127.0.0.1", port))
            path = "/sync/block?ms=%d" % HOLD if i < 4 else "/async/sleep?ms=%d" % HOLD
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
        opened = (time.perf_counter() - t0) * 1000
        loaded = probe(port, PROBES)
        in_flight_done = 0
        deadline = time.time() + HOLD / 1000 + 10
        while in_flight_done < N and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                try:
                    if key.fileobj.recv(4096):
                        in_flight_done += 1
                except OSError:
                    pass
                sel.unregister(key.fileobj)
        for s in socks:
            s.close()
        def row(name, l):
            l = sorted(l)
            return "%-28s median %7.3f ms   p99 %7.3f ms" % (name, statistics.median(l), l[int(len(l) * 0.99) - 1])
        print("in flight: %d (%d async sleeping %d ms, 4 sync blocking on the pool), opened in %.0f ms"
              % (N, N - 4, HOLD, opened))
        print(row("short request, idle server", base))
        print(row("short request, %d in flight" % N, loaded))
        print("long requests answered: %d/%d" % (in_flight_done, N))
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=10)


if __name__ == "__main__":
    main()
