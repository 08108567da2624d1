#!/usr/bin/python3
"""Startup time: from exec to the first successful response.

    /usr/bin/python3 bench/startup-time.py [-n 20] [--port P] [--cpu 0] -- COMMAND...

Starts COMMAND (which must listen on 127.0.0.1:PORT and answer GET
/plaintext; "{port}" in its arguments is replaced by PORT, by default a port
free when this starts) N times, one at a time: each time the clock starts just before
posix_spawn, then this process connects (a refused connect on loopback
fails at once, so the poll is tight: 100 us between tries) and sends
GET /plaintext until a response begins "HTTP/1.1 200"; that instant stops the
clock. The server is then stopped (SIGTERM, then SIGKILL after 5 s) and
reaped before the next run. Prints every time and the median, min and max in
ms. The server runs on --cpu (its affinity is set before the spawn and
inherited), this process on the other CPUs.

Bounded: each start gets 10 s, else the run fails.
"""
import argparse
import os
import signal
import socket
import statistics
import sys
import time


def probe(port):
    """One try: True when GET /plaintext answered 200."""
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


def one(cmd, port, cpu):
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    t0 = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    os.sched_setaffinity(0, (mine - {cpu}) or mine)
    try:
        while not probe(port):
            if time.perf_counter() - t0 > 10:
                raise SystemExit("startup-time: %s did not answer within 10 s" % cmd[0])
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                raise SystemExit("startup-time: %s exited" % cmd[0])
            time.sleep(0.0001)
        return time.perf_counter() - t0
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(500):
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("cmd", nargs="+")
    a = ap.parse_args()
    if not a.port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            a.port = s.getsockname()[1]
    a.cmd = [c.replace("{port}", str(a.port)) for c in a.cmd]
    if probe(a.port):
        sys.exit("startup-time: something already answers on port %d" % a.port)
    times = [one(a.cmd, a.port, a.cpu) * 1000 for _ in range(min(a.n, 1000))]
    print("runs_ms " + " ".join("%.2f" % t for t in times))
    print("median_ms %.2f" % statistics.median(times))
    print("min_ms %.2f" % min(times))
    print("max_ms %.2f" % max(times))


if __name__ == "__main__":
    main()
