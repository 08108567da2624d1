#!/usr/bin/python3
"""The Fortunes page by hand (/fortunes) and through a template
(/fortunes-tmpl), side by side, on build/bench/fortunes_tmpl.

The server runs with --threads 1 pinned to SERVER_CPU, wrk on CLIENT_CPU.
Rounds are interleaved (hand, template, hand, template, ...) so drift in a
shared machine hits both alike. Each run records req/s (wrk) and the server's
CPU time per request (utime+stime from /proc/PID/stat over the run, divided
by the requests wrk completed); the table shows medians and the template's
cost relative to the hand-written page (the goal: within 10%).

    bench/fortunes-tmpl.py            (about 40 s with the defaults)

Environment (defaults in brackets): DURATION [5] seconds per run, RUNS [3],
CONNECTIONS [64], SERVER_CPU [0], CLIENT_CPU [1], PORT [18391],
VIAL_BUILD_DIR [<repo>/build].
"""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("VIAL_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "bench", "fortunes_tmpl")
DURATION = int(os.environ.get("DURATION", "5"))
RUNS = int(os.environ.get("RUNS", "3"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "1")
PORT = int(os.environ.get("PORT", "18391"))
HZ = os.sysconf("SC_CLK_TCK")
PAGES = [("hand", "/fortunes"), ("template", "/fortunes-tmpl")]


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def wait_ready(proc):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("fortunes-tmpl: the server exited with status %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("fortunes-tmpl: the server did not start")


def wrk(path, seconds):
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c%d" % CONNECTIONS,
                          "-d%ds" % seconds, "http://127.0.0.1:%d%s" % (PORT, path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=seconds + 30,
                         check=True).stdout.decode()
    m = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or bad:
        sys.exit("fortunes-tmpl: wrk said:\n" + out)
    return int(m.group(1))


def main():
    if not os.path.exists(BIN):
        sys.exit("fortunes-tmpl: %s not built (ninja -C %s fortunes_tmpl)" % (BIN, BUILD))
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, BIN, "--port", str(PORT), "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(proc)
        pages = {}
        for name, path in PAGES:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (PORT, path), timeout=5) as r:
                pages[name] = r.read().replace(b"&quot;", b"&#34;")
            wrk(path, 1)  # warm up
        if pages["hand"] != pages["template"]:
            sys.exit("fortunes-tmpl: the two pages differ")
        results = {name: [] for name, _ in PAGES}
        for rnd in range(RUNS):
            for name, path in PAGES:
                t0 = cpu_ticks(proc.pid)
                n = wrk(path, DURATION)
                t1 = cpu_ticks(proc.pid)
                us = (t1 - t0) / HZ / n * 1e6
                results[name].append((n / DURATION, us))
                print("round %d %-8s %9.0f req/s %7.2f us CPU/request" % (rnd + 1, name, n / DURATION, us))
        med = {k: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v))
               for k, v in results.items()}
        print("\nmedians of %d interleaved rounds (%d s, %d connections, server on CPU %s):"
              % (RUNS, DURATION, CONNECTIONS, SERVER_CPU))
        print("%-8s %10s %16s" % ("page", "req/s", "us CPU/request"))
        for k, (r, u) in med.items():
            print("%-8s %10.0f %16.2f" % (k, r, u))
        h, t = med["hand"], med["template"]
        print("template vs hand: CPU/request %+.1f%%, req/s %+.1f%%"
              % ((t[1] / h[1] - 1) * 100, (t[0] / h[0] - 1) * 100))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
