#!/usr/bin/python3
"""Memory per idle keep-alive connection: vial against nginx.

    /usr/bin/python3 bench/idle-conns.py [-n 10000] [--servers vial,nginx]

For each server (vial: build/bench/techempower --threads 1; nginx: one
process), started here on CPU 0 with this client on CPU 1:

  1. warm up (a few hundred requests on short-lived connections) so one-time
     allocations (buffer and coroutine-stack caches, ...) are not counted;
  2. read the server's VmRSS from /proc/PID/status ("before");
  3. open N keep-alive connections, send one GET /plaintext on each and read
     the whole response, so each is a real keep-alive connection idle
     between two requests (non-blocking sockets on one selector, at most
     --batch connections in flight at a time);
  4. read VmRSS again ("after") and check that all N connections are still
     open (none readable: the server closed none);
  5. print (after - before) / N in KiB per idle connection.

vial closes a keep-alive connection after 5 s idle, so steps 3 and 4 must fit
in that window; the script reports how long they took and fails if any
connection was closed before the measurement. nginx gets keepalive_timeout
300s and worker_connections / worker_rlimit_nofile above N.

Nothing but 127.0.0.1; only the processes started here are stopped; the temp
directory is removed on exit.
"""
import argparse
import errno
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b"Hello, World!"


def die(msg):
    print(f"idle-conns: {msg}", file=sys.stderr)
    sys.exit(1)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        try:  # root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return
        except (ValueError, OSError):
            die(f"RLIMIT_NOFILE hard limit {hard} < {need}; lower -n or raise the limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def taskset(cpu):
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def one_request(port, timeout=2.0):
    """Sends GET /plaintext on a new connection; returns the response bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b


def wait_ready(proc, port, name, log):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die(f"{name} exited at start:\n{open(log).read()}")
        try:
            r = one_request(port, 0.5)
            if r.startswith(b"HTTP/1.1 200") and r.endswith(BODY):
                return
            die(f"{name} answered wrongly: {r[:200]!r}")
        except OSError:
            time.sleep(0.05)
    die(f"{name} did not answer on port {port}:\n{open(log).read()}")


def start_vial(args, tmp):
    binary = args.vial_bin
    if not os.access(binary, os.X_OK):
        die(f"{binary} not built (ninja -C build techempower)")
    log = os.path.join(tmp, "vial.log")
    cmd = taskset(args.server_cpu) + [binary, "--host", "127.0.0.1", "--port",
                                      str(args.vial_port), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    wait_ready(proc, args.vial_port, "vial", log)
    return proc


def start_nginx(args, tmp):
    d = os.path.join(tmp, "nginx")
    os.makedirs(os.path.join(d, "logs"))
    n = args.conns
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
worker_rlimit_nofile {n + 2048};
events {{
    worker_connections {n + 1024};
}}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{args.nginx_port} backlog=4096;
        location = /plaintext {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}
        location = /json {{
            default_type application/json;
            return 200 '{{"message":"Hello, World!"}}';
        }}
    }}
}}
""")
    log = os.path.join(tmp, "nginx.log")
    cmd = taskset(args.server_cpu) + [args.nginx, "-p", d + "/", "-c", conf,
                                      "-e", os.path.join(d, "logs", "error.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    wait_ready(proc, args.nginx_port, "nginx", log)
    return proc


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def response_complete(buf):
    """None while incomplete; else (status line, body)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    length = 0
    for h in head[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    if len(buf) < end + 4 + length:
        return None
    return head[0], buf[end + 4:end + 4 + length]


def open_idle(port, n, batch):
    """Opens n connections, one request/response each; returns (sockets,
    time of the first response, time of the last)."""
    sel = selectors.DefaultSelector()
    idle = []
    started = 0
    inflight = 0
    first = last = None
    deadline = time.monotonic() + 60
    while len(idle) < n:
        while inflight < batch and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(("127.0.0.1", port))
            if rc not in (0, errno.EINPROGRESS):
                die(f"connect #{started}: {os.strerror(rc)}")
            sel.register(s, selectors.EVENT_WRITE, [b""])
            started += 1
            inflight += 1
        if time.monotonic() > deadline:
            die(f"only {len(idle)} of {n} connections answered within 60 s")
        for key, mask in sel.select(1.0):
            s, state = key.fileobj, key.data
            if mask & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    die(f"connect: {os.strerror(err)}")
                s.send(REQUEST)  # 45 bytes into an empty socket buffer
                sel.modify(s, selectors.EVENT_READ, state)
                continue
            try:
                b = s.recv(4096)
            except BlockingIOError:
                continue
            if not b:
                die("server closed a connection before answering")
            state[0] += b
            r = response_complete(state[0])
            if r is None:
                continue
            status, body = r
            if not status.startswith("HTTP/1.1 200") or body != BODY:
                die(f"wrong response: {state[0][:200]!r}")
            sel.unregister(s)
            inflight -= 1
            idle.append(s)
            last = time.monotonic()
            if first is None:
                first = last
    sel.close()
    return idle, first, last


def closed_count(socks):
    """How many of socks the server has closed (readable = EOF or junk)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    n = len(sel.select(0))
    sel.close()
    return n


def measure(name, proc, port, args):
    pid = proc.pid
    for _ in range(args.warmup):  # warm the caches: not per-connection cost
        one_request(port)
    time.sleep(0.2)
    before = rss_kib(pid)
    t0 = time.monotonic()
    socks, first, last = open_idle(port, args.conns, args.batch)
    after = rss_kib(pid)
    t_measured = time.monotonic()
    gone = closed_count(socks)
    if gone:
        die(f"{name}: {gone} of {args.conns} connections were closed before the RSS was read "
            f"(open+request took {last - t0:.2f} s); lower -n or raise --batch")
    per = (after - before) / args.conns
    res = {
        "name": name, "before": before, "after": after, "per": per,
        "open_s": last - t0, "window_s": t_measured - first,
    }
    for s in socks:
        s.close()
    time.sleep(0.5)
    res["closed"] = rss_kib(pid)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--conns", type=int, default=10000, help="idle connections (10000)")
    ap.add_argument("--servers", default="vial,nginx", help="comma-separated: vial,nginx")
    ap.add_argument("--batch", type=int, default=1000, help="connections in flight at once (1000)")
    ap.add_argument("--warmup", type=int, default=300, help="warm-up requests (300)")
    ap.add_argument("--vial-bin", default=os.path.join(
        os.environ.get("VIAL_BUILD_DIR", os.path.join(ROOT, "build")), "bench", "techempower"))
    ap.add_argument("--nginx", default=os.environ.get("NGINX", "/usr/sbin/nginx"))
    ap.add_argument("--vial-port", type=int, default=18090)
    ap.add_argument("--nginx-port", type=int, default=18091)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    args = ap.parse_args()

    raise_nofile(args.conns + 1024)
    if args.client_cpu is not None and args.client_cpu < os.cpu_count():
        os.sched_setaffinity(0, {args.client_cpu})

    tmp = tempfile.mkdtemp(prefix="vial-idle.")
    procs = []
    results = []
    try:
        for name in args.servers.split(","):
            if name == "vial":
                proc = start_vial(args, tmp)
                port = args.vial_port
            elif name == "nginx":
                proc = start_nginx(args, tmp)
                port = args.nginx_port
            else:
                die(f"unknown server {name}")
            procs.append(proc)
            r = measure(name, proc, port, args)
            results.append(r)
            stop(proc)
            print(f"{name}: RSS {r['before']} KiB -> {r['after']} KiB with {args.conns} idle "
                  f"keep-alive connections (opened and answered in {r['open_s']:.2f} s, "
                  f"RSS read {r['window_s']:.2f} s after the first response; all still open); "
                  f"{r['closed']} KiB after closing them", flush=True)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"| server | RSS before (KiB) | RSS with {args.conns} idle conns (KiB) | KiB per idle conn |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['before']} | {r['after']} | {r['per']:.2f} |")


if __name__ == "__main__":
    main()
