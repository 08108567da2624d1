"""Two instances of examples/cluster behind nginx, with Redis and PostgreSQL
(run by tests/deploy/run.sh, which starts those two and passes them in the
environment; this starts the instances and nginx and stops them by PID).

Clients always go through nginx. The realtime part pins each client to one
instance with nginx's /a/ and /b/ locations (each proxies to one instance
only); the load run goes through /, the upstream of both.

Delivery across instances (a message published through one instance
reaches the subscribers of the other through the Redis hub) is asserted
unless VIAL_DEPLOY_CROSS=0.
"""

import concurrent.futures
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "blackbox"))
from realtimekit import SseClient, WsClient  # noqa: E402

APP = os.environ["DEPLOY_APP"]
NGINX = os.environ["DEPLOY_NGINX"]
TMP = os.environ["DEPLOY_TMP"]
PG = os.environ["DEPLOY_PG"]
REDIS = os.environ["DEPLOY_REDIS"]
CROSS = os.environ.get("VIAL_DEPLOY_CROSS", "1") != "0"
LOAD_REQUESTS = int(os.environ.get("DEPLOY_LOAD_REQUESTS", "5000"))
LOAD_THREADS = 8

procs = []


def log(msg):
    print("deploy: " + msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(name, args):
    out = open(os.path.join(TMP, name + ".log"), "wb")
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    with open(os.path.join(TMP, "pids"), "a") as f:  # run.sh's trap kills these if we cannot
        f.write("%d\n" % p.pid)
    procs.append(p)
    p.name = name
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def tail(name, n=30):
    try:
        with open(os.path.join(TMP, name + ".log"), "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return ""


def backend_of(name):
    for line in tail(name, 200).splitlines():
        if "vial: listening on " in line:
            return line.rsplit(" on ", 1)[1]
    return "?"


def get(port, path, headers=None, source=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                   source_address=(source, 0) if source else None)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def post(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=body)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def wait_up(p, port, path, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise AssertionError("%s exited at start (%s):\n%s" % (p.name, p.returncode, tail(p.name)))
        try:
            if get(port, path, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("%s did not answer on %d:\n%s" % (p.name, port, tail(p.name)))


def on_free_port(start):
    """start(port) on a free port; another one if it was taken meanwhile."""
    for attempt in range(3):
        port = free_port()
        try:
            return start(port), port
        except AssertionError:
            if attempt == 2:
                raise
            procs[-1].kill()
            procs[-1].wait()
            log("retrying on another port")


def start_instance(name, port):
    p = spawn(name, [APP, "--name", name, "--host", "127.0.0.1", "--port", str(port),
                     "--threads", "1", "--workers", "4", "--pg", PG, "--redis", REDIS,
                     "--trusted-proxy", "127.0.0.1",
                     "--access-log", os.path.join(TMP, name + ".access.log"),
                     "--health-path", "/healthz"])
    wait_up(p, port, "/healthz")
    return p


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx/nginx.pid;
error_log {tmp}/nginx/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$remote_addr "$request" $status up=$upstream_addr upstatus=$upstream_status';
    access_log {tmp}/nginx/access.log upstream;
    client_body_temp_path {tmp}/nginx/client_body;
    proxy_temp_path {tmp}/nginx/proxy;
    fastcgi_temp_path {tmp}/nginx/fastcgi;
    uwsgi_temp_path {tmp}/nginx/uwsgi;
    scgi_temp_path {tmp}/nginx/scgi;

    upstream app {{
        server 127.0.0.1:{pa} max_fails=1 fail_timeout=10s;
        server 127.0.0.1:{pb} max_fails=1 fail_timeout=10s;
        keepalive 16;
    }}
    # The test's own: a backend that reads each request and hangs up
    # without answering (an instance dying mid-request), b as its backup.
    upstream flaky {{
        server 127.0.0.1:{ps} max_fails=0;
        server 127.0.0.1:{pb} backup;
    }}
    upstream app_a {{ server 127.0.0.1:{pa}; keepalive 4; }}
    upstream app_b {{ server 127.0.0.1:{pb}; keepalive 4; }}

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    server {{
        listen 127.0.0.1:{pn};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_connect_timeout 2s;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 2;

        location / {{
            proxy_pass http://app;
        }}
        location = /events {{
            proxy_pass http://app;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
        location = /ws {{
            proxy_pass http://app;
            proxy_read_timeout 1h;
        }}

        # The test's own: one instance each, to pin a client to it.
        location /a/ {{
            proxy_pass http://app_a/;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
        location /b/ {{
            proxy_pass http://app_b/;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
        location /flaky/ {{
            proxy_pass http://flaky/;
        }}
    }}
}}
"""


def start_nginx(pa, pb, ps, pn):
    os.makedirs(os.path.join(TMP, "nginx"), exist_ok=True)
    conf = os.path.join(TMP, "nginx", "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=TMP, pa=pa, pb=pb, ps=ps, pn=pn))
    p = spawn("nginx", [NGINX, "-p", os.path.join(TMP, "nginx") + "/", "-c", conf,
                        "-e", os.path.join(TMP, "nginx", "error.log")])
    wait_up(p, pn, "/healthz")
    return p


def lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def check_names(pn):
    assert get(pn, "/a/whoami") == (200, "a\n")
    assert get(pn, "/b/whoami") == (200, "b\n")
    seen = {get(pn, "/whoami")[1].strip() for _ in range(8)}
    assert seen == {"a", "b"}, seen
    log("/a/ and /b/ reach one instance each, / reaches both")


def check_client_address(pn, pa):
    # Through nginx from 127.0.0.2: nginx appends the peer to what the
    # client claimed; vial trusts only 127.0.0.1, so takes 127.0.0.2.
    for path in ("/ip", "/a/ip", "/b/ip"):
        r = get(pn, path, headers={"X-Forwarded-For": "198.51.100.9"}, source="127.0.0.2")
        assert r == (200, "127.0.0.2\n"), (path, r)
    # Straight to an instance from an untrusted peer: the header is not read.
    r = get(pa, "/ip", headers={"X-Forwarded-For": "198.51.100.9"}, source="127.0.0.2")
    assert r == (200, "127.0.0.2\n"), r
    log("the client's address comes from X-Forwarded-For via the trusted proxy only")


def subscribers(pn, inst):
    st, body = get(pn, "/%s/subscribers" % inst)
    assert st == 200
    return int(body)


def wait_subscribers(pn, inst, want, limit=5.0):
    deadline = time.monotonic() + limit
    while True:
        n = subscribers(pn, inst)
        if n == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s has %d hub subscribers, want %d" % (inst, n, want))
        time.sleep(0.02)


def next_message(read, what, limit, probes):
    """The next message read(timeout) gives (it returns the text, None after
    the timeout, or False for something to skip), bridge probes skipped
    unless probes. None after limit if probes, else an error."""
    deadline = time.monotonic() + limit
    while True:
        m = read(max(0.001, deadline - time.monotonic()))
        if m is None and probes:
            return None
        assert m is not None, "no %s within %.1f s" % (what, limit)
        if m is not False and (probes or not m.startswith("probe ")):
            return m


def ws_text(ws, limit=5.0, probes=False):
    def read(t):
        f = ws.frame(t)
        if f is None:
            return None
        assert f[0] in (0x1, 0x9, 0xA), "unexpected websocket opcode %d" % f[0]
        return f[1].decode() if f[0] == 0x1 else False
    return next_message(read, "websocket message", limit, probes)


def sse_data(sse, limit=5.0, probes=False):
    def read(t):
        ev = sse.next_event(t)
        return None if ev is None else ev.get("data", "")
    return next_message(read, "SSE event", limit, probes)


def await_bridge(pn, via, read, limit=10.0):
    """Publishes probes through instance `via` until the other instance's
    subscriber (read) gets one: each instance subscribes to Redis on its own
    once it runs, so the first messages may precede the other's subscription."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit:
        assert post(pn, "/%s/publish" % via, "probe %s %d" % (via, i))[0] == 200
        i += 1
        got = read(0.1)
        while got is not None and not got.startswith("probe %s " % via):
            got = read(0.1)
        if got is not None:
            return time.monotonic() - t0
    raise AssertionError("nothing published through %s reached the other instance in %.0f s" % (via, limit))


def check_realtime(pn):
    # The documented locations, through the upstream of both instances.
    w = WsClient(("127.0.0.1", pn), "/ws")
    assert ws_text(w) in ("hello from a", "hello from b")
    w.send_close()
    w.close()
    e = SseClient(("127.0.0.1", pn), "/events")
    assert e.status == 200 and e.headers["content-type"].startswith("text/event-stream"), e.headers
    e.close()

    base_a, base_b = subscribers(pn, "a"), subscribers(pn, "b")
    ws = WsClient(("127.0.0.1", pn), "/a/ws")
    assert ws_text(ws) == "hello from a"
    sse = SseClient(("127.0.0.1", pn), "/b/events")
    assert sse.status == 200 and sse.headers["content-type"].startswith("text/event-stream"), sse.headers
    wait_subscribers(pn, "a", base_a + 1)
    wait_subscribers(pn, "b", base_b + 1)

    if CROSS:
        ta = await_bridge(pn, "a", lambda t: sse_data(sse, t, probes=True))
        tb = await_bridge(pn, "b", lambda t: ws_text(ws, t, probes=True))
        log("the Redis hub links a to b (%.0f ms) and b to a (%.0f ms)" % (ta * 1000, tb * 1000))

    t = time.monotonic()
    assert post(pn, "/a/publish", "one via a (sync)")[0] == 200
    assert ws_text(ws) == "one via a (sync)"
    if CROSS:
        assert sse_data(sse) == "one via a (sync)"
    st, body = post(pn, "/b/publish-async", "two via b (async)")
    assert st == 200, body
    assert sse_data(sse) == "two via b (async)"
    if CROSS:
        assert ws_text(ws) == "two via b (async)"
    took = time.monotonic() - t
    # nginx passes events at once (proxy_buffering off, X-Accel-Buffering): a
    # buffered stream would wait for heartbeats or the proxy's buffer to fill.
    assert took < 4.0, took
    log("websocket on a and SSE on b received %s (%.0f ms)" % (
        "both messages, published through a and through b" if CROSS
        else "their own instance's message only (cross-instance checks off: VIAL_DEPLOY_CROSS=0)",
        took * 1000))
    ws.send_close()
    ws.close()
    sse.close()

    # Shared state: the message stored by b is counted by both.
    assert get(pn, "/a/count") == (200, "1\n")
    assert get(pn, "/b/count") == (200, "1\n")
    log("/count agrees on both instances (PostgreSQL)")


class HangUp:
    """A backend that reads a request's head (and a short body) and closes
    the connection without a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    d = c.recv(4096)
                    if not d:
                        break
                    data += d
            except OSError:
                pass
            if data:
                self.seen.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
            c.close()


def check_retry_policy(pn, stub):
    """nginx retries a GET whose backend hung up on the next one, never a
    POST that reached a backend (proxy_next_upstream without non_idempotent)."""
    assert get(pn, "/flaky/whoami") == (200, "b\n")
    assert stub.seen == ["GET /whoami HTTP/1.1"], stub.seen
    st, body = post(pn, "/flaky/publish?once=1", "must not be sent twice")
    assert st == 502, (st, body)
    assert stub.seen[1:] == ["POST /publish?once=1 HTTP/1.1"], stub.seen
    # b's access log is written in the background: a request sent after the
    # POST marks how far it got.
    assert get(pn, "/b/whoami?mark=1")[0] == 200
    path = os.path.join(TMP, "b.access.log")
    deadline = time.monotonic() + 5
    while not any("mark=1" in l for l in lines(path)):
        assert time.monotonic() < deadline, "b's access log lacks the marker"
        time.sleep(0.02)
    posts = [l for l in lines(path) if "once=1" in l]
    assert not posts, posts
    log("a GET the backend hung up on was retried on b; a POST was not (502)")


def load_with_kill(pn, pa, pb, a):
    """LOAD_REQUESTS idempotent GETs through / from LOAD_THREADS keep-alive
    clients; instance a is SIGKILLed a third of the way in."""
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "kill_at": None}
    results = []  # (started, path, status, body) or (started, path, None, error)
    killed = threading.Event()

    def worker():
        conn = None
        while True:
            with lock:
                i = state["next"]
                if i >= LOAD_REQUESTS:
                    break
                state["next"] = i + 1
            path = "/whoami" if i % 2 == 0 else "/count"
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", pn, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read().decode()
                res = (started, path, r.status, body)
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                res = (started, path, None, repr(e))
                conn.close()
                conn = None
            with lock:
                results.append(res)
                state["done"] += 1
                if state["done"] == LOAD_REQUESTS // 3:
                    killed.set()
        if conn:
            conn.close()

    def killer():
        killed.wait()
        # The access logs are written by a background thread: give a's a
        # moment to show its share before it dies.
        deadline = time.monotonic() + 2
        while not lines(os.path.join(TMP, "a.access.log")) and time.monotonic() < deadline:
            time.sleep(0.01)
        state["a_lines"] = len(lines(os.path.join(TMP, "a.access.log")))
        state["b_lines"] = len(lines(os.path.join(TMP, "b.access.log")))
        a.send_signal(signal.SIGKILL)
        a.wait()
        state["kill_at"] = time.monotonic()  # a answers nothing started after this

    t0 = time.monotonic()
    k = threading.Thread(target=killer)
    k.start()
    with concurrent.futures.ThreadPoolExecutor(LOAD_THREADS) as ex:
        for f in [ex.submit(worker) for _ in range(LOAD_THREADS)]:
            f.result()
    killed.set()
    k.join()
    took = time.monotonic() - t0

    errors = [r for r in results if r[2] is None]
    bad = [r for r in results if r[2] is not None and r[2] != 200]
    kill_at = state["kill_at"]
    before = {r[3].strip() for r in results if r[1] == "/whoami" and r[2] == 200 and r[0] < kill_at}
    after = {r[3].strip() for r in results if r[1] == "/whoami" and r[2] == 200 and r[0] > kill_at}
    ng = lines(os.path.join(TMP, "nginx", "access.log"))
    retried = [l for l in ng if "up=127.0.0.1:%d, 127.0.0.1:%d" % (pa, pb) in l]
    log("load: %d GETs in %.1f s (%d req/s) through nginx, a SIGKILLed after %d: "
        "%d socket errors, %d non-200; whoami before the kill %s, after %s; "
        "access log lines before the kill a=%d b=%d; nginx retried %d request(s) from a to b"
        % (len(results), took, len(results) / took, LOAD_REQUESTS // 3, len(errors), len(bad),
           sorted(before), sorted(after), state["a_lines"], state["b_lines"], len(retried)))
    assert len(results) == LOAD_REQUESTS
    assert not errors, errors[:5]
    assert not bad, bad[:5]
    assert before == {"a", "b"}, before
    assert after == {"b"}, after
    assert state["a_lines"] > 0 and state["b_lines"] > 0, state
    assert retried, "no request in nginx's log went to a, then b"


def main():
    t0 = time.monotonic()
    try:
        a, pa = on_free_port(lambda port: start_instance("a", port))
        b, pb = on_free_port(lambda port: start_instance("b", port))
        stub = HangUp()
        _, pn = on_free_port(lambda port: start_nginx(pa, pb, stub.port, port))
        log("nginx on %d in front of a on %d and b on %d (%.1f s)" % (pn, pa, pb, time.monotonic() - t0))
        log("a and b serve on %s (their listening lines)" % " and ".join(
            sorted({backend_of(n) for n in ("a", "b")})))
        check_names(pn)
        check_client_address(pn, pa)
        check_realtime(pn)
        check_retry_policy(pn, stub)
        load_with_kill(pn, pa, pb, a)
        assert b.poll() is None, "b died:\n" + tail("b")
    except BaseException:
        for name in ("a", "b", "nginx"):
            sys.stderr.write("--- %s.log ---\n%s\n" % (name, tail(name)))
        sys.stderr.write("--- nginx error.log ---\n%s\n" % "\n".join(
            lines(os.path.join(TMP, "nginx", "error.log"))[-20:]))
        raise
    finally:
        stop_all()
    assert b.returncode == 0, "b's exit on SIGTERM: %s\n%s" % (b.returncode, tail("b"))
    log("all checks passed, b stopped cleanly on SIGTERM (%.1f s)" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
