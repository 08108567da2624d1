#!/usr/bin/python3
"""Two vial builds on both loop backends against nginx (and lwan, when
bench/compare has built it), interleaved, CPU per request from /proc: the
A/B of io_uring work (bench/results/uring-2026-12-06.md).

    OLD=/work/main/build NEW=build TESTS="plaintext json close" RUNS=3 \\
      DURATION=8 bench/uring-ab.py

Tests: plaintext and json (wrk -c CONNECTIONS, keep-alive) and close
(/plaintext with `Connection: close`, wrk -c CLOSE_CONNECTIONS: one
connection per request, so its figure is CPU per connection). Servers:
SERVERS [old-epoll old-io_uring new-epoll new-io_uring nginx lwan], each
on SERVER_CPU with one thread/process, wrk on CLIENT_CPU. Per run: the
server's utime+stime (/proc/PID/stat) during the run / wrk's requests.
Prints every run and a table of medians; the load average before and
after. Environment [defaults]: DURATION [8] RUNS [3] CONNECTIONS [256]
CLOSE_CONNECTIONS [32] PORT_BASE [28600] SERVER_CPU [0] CLIENT_CPU [1]
MEMORY [0]: 1 also prints each vial's RSS after the runs."""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ENV = os.environ
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OLD = ENV.get("OLD", "/work/main/build")
NEW = ENV.get("NEW", os.path.join(ROOT, "build"))
TESTS = ENV.get("TESTS", "plaintext json close").split()
SERVERS = ENV.get("SERVERS", "old-epoll old-io_uring new-epoll new-io_uring nginx lwan").split()
DURATION = int(ENV.get("DURATION", "8"))
RUNS = int(ENV.get("RUNS", "3"))
CONNS = int(ENV.get("CONNECTIONS", "256"))
CLOSE_CONNS = int(ENV.get("CLOSE_CONNECTIONS", "32"))
PORT = int(ENV.get("PORT_BASE", "28600"))
SCPU, CCPU = ENV.get("SERVER_CPU", "0"), ENV.get("CLIENT_CPU", "1")
LWAN = os.path.expanduser("~/.cache/vial-bench/lwan")
HZ = os.sysconf("SC_CLK_TCK")
TMP = tempfile.mkdtemp(prefix="vial-uring-ab.")
PROCS = {}


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def wait_port(port, proc):
    for _ in range(100):
        if proc.poll() is not None:
            sys.exit(f"server on {port} exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def start(name, port):
    log = open(os.path.join(TMP, name + ".log"), "w")
    cwd = None
    if name.startswith(("old-", "new-")):
        build, backend = (OLD if name.startswith("old") else NEW), name[4:]
        argv = [os.path.join(build, "bench/techempower"), "--host", "127.0.0.1", "--port", str(port),
                "--threads", "1", "--backend", backend]
    elif name == "nginx":
        d = os.path.join(TMP, "nginx")
        os.makedirs(os.path.join(d, "logs"))
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(f"""worker_processes 1; daemon off; master_process off; pid {d}/nginx.pid;
error_log {d}/logs/error.log warn; worker_rlimit_nofile 65536;
events {{ worker_connections 16384; multi_accept on; }}
http {{ access_log off; keepalive_requests 100000000;
    client_body_temp_path {d}/cb; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    server {{ listen 127.0.0.1:{port} backlog=4096;
        location = /plaintext {{ default_type text/plain; return 200 "Hello, World!"; }}
        location = /json {{ default_type application/json; return 200 '{{"message":"Hello, World!"}}'; }}
    }} }}
""")
        argv = ["/usr/sbin/nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d]
    elif name == "lwan":
        binary = os.path.join(LWAN, "build/src/samples/techempower/techempower")
        if not os.path.exists(binary):
            return None
        cwd = os.path.join(TMP, "lwan")
        os.makedirs(cwd)
        shutil.copy(os.path.join(LWAN, "src/src/samples/techempower/techempower.db"), cwd)
        with open(os.path.join(cwd, "techempower.conf"), "w") as f:
            f.write(f"listener 127.0.0.1:{port}\nthreads = 1\nsite {{\n    &plaintext /plaintext\n    &json /json\n}}\n")
        argv = [binary]
    else:
        sys.exit("unknown server " + name)
    p = subprocess.Popen(["taskset", "-c", SCPU] + argv, stdout=log, stderr=log, cwd=cwd)
    wait_port(port, p)
    if name.startswith(("old-", "new-")):
        time.sleep(0.1)
        text = open(os.path.join(TMP, name + ".log")).read()
        if not text.rstrip().endswith("on " + name[4:]):
            sys.exit(f"{name} does not run on its backend:\n{text}")
    return p


def wrk(port, test):
    path = "/json" if test == "json" else "/plaintext"
    args = ["taskset", "-c", CCPU, "wrk", "-t1", f"-d{DURATION}s"]
    if test == "close":
        args += [f"-c{CLOSE_CONNS}", "-H", "Connection: close"]
    else:
        args += [f"-c{CONNS}"]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE,
                         text=True, timeout=DURATION + 60).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    errs = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return n, (errs.group(1) if errs else "") + (f" non2xx {non2xx.group(1)}" if non2xx else "")


def main():
    results = {}
    try:
        for i, name in enumerate(SERVERS):
            p = start(name, PORT + i)
            if p:
                PROCS[name] = (p, PORT + i)
        print("load average before:", open("/proc/loadavg").read().split()[0], flush=True)
        for r in range(RUNS):
            for test in TESTS:
                for name, (p, port) in PROCS.items():
                    t0 = cpu_ticks(p.pid)
                    n, err = wrk(port, test)
                    us = (cpu_ticks(p.pid) - t0) * 1e6 / HZ / max(n, 1)
                    results.setdefault((test, name), []).append((us, n / DURATION))
                    print(f"round {r + 1} {test:9} {name:13} {n / DURATION:9.0f} req/s "
                          f"{us:6.2f} us/req {err}", flush=True)
        print("load average after:", open("/proc/loadavg").read().split()[0])
        if ENV.get("MEMORY") == "1":
            for name, (p, port) in PROCS.items():
                rss = re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)
                print(f"{name}: RSS {rss} KiB")
        print("\n| test | server | req/s | CPU µs/req (median) | runs |\n|---|---|---|---|---|")
        for (test, name), v in results.items():
            us = [x[0] for x in v]
            print(f"| {test} | {name} | {statistics.median(x[1] for x in v):,.0f} | "
                  f"{statistics.median(us):.2f} | {' '.join(f'{x:.2f}' for x in us)} |")
    finally:
        for p, _ in PROCS.values():
            p.send_signal(signal.SIGTERM)
        for p, _ in PROCS.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
