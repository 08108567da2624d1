#!/usr/bin/python3
"""Open-loop HTTP load: RATE requests/s for SECONDS, each sent at its
scheduled time on a new connection whatever the server's state (wrk is
closed-loop: a slow server slows it down, hiding queueing). Latency counts
from the scheduled send time. Prints status counts and, for the 200s and the
503s apart, p50/p99/max in ms. Bounded: RATE*SECONDS requests, each with a
10 s limit; loopback only.

usage: bench/openloop.py HOST PORT PATH RATE SECONDS
"""
import asyncio, sys, time


async def one(host, port, path, when, out):
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    status = "error"
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        w.write(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = await asyncio.wait_for(r.read(), 10)
        w.close()
        if data.startswith(b"HTTP/1.1 "):
            status = data[9:12].decode()
    except (OSError, asyncio.TimeoutError):
        pass
    out.append((status, (time.monotonic() - when) * 1000))


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


async def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rate, secs = float(sys.argv[4]), float(sys.argv[5])
    n = int(rate * secs)
    out = []
    t0 = time.monotonic() + 0.1
    await asyncio.gather(*(one(host, port, path, t0 + i / rate, out) for i in range(n)))
    by = {}
    for st, ms in out:
        by.setdefault(st, []).append(ms)
    print("sent %d at %.0f/s over %.0f s" % (n, rate, secs))
    for st in sorted(by):
        v = sorted(by[st])
        print("  %-5s %6d  p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms" % (st, len(v), pct(v, .5), pct(v, .99), v[-1]))


asyncio.run(main())
