#!/usr/bin/env python3
"""Hub across instances: two conformance servers on one Redis
(vial_hub_use_redis), a websocket subscriber on each; an async view of the
first publishes R messages one after another, and the time from the POST to
the frame on the same instance (local delivery) and on the other (through
Redis) is measured (median and p99).

    VIAL_TEST_REDIS=127.0.0.1:PORT bench/hub-redis-latency.py [--rounds 300] [--build build]

(tests/services/redis.sh start DIR prints a port.) Bounded: R publishes of a
short message; both servers are stopped at the end."""

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "blackbox"))
from realtimekit import WsClient  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=300)
ap.add_argument("--build", default="build")
args = ap.parse_args()
redis = os.environ.get("VIAL_TEST_REDIS")
if not redis:
    sys.exit("VIAL_TEST_REDIS=host:port of a throwaway Redis is needed (tests/services/redis.sh start DIR)")

env = dict(os.environ, CONFORMANCE_HUB_REDIS=redis)
procs, addrs = [], []
try:
    for i in range(2):
        log = tempfile.NamedTemporaryFile(prefix="hub-redis-latency-", suffix=".log", delete=False)
        procs.append(subprocess.Popen([os.path.join(args.build, "examples", "conformance"), "--host",
                                       "127.0.0.1", "--port", "0"], env=env, stdout=log, stderr=log))
        for _ in range(200):
            m = re.search(rb"listening on http://127.0.0.1:(\d+)", open(log.name, "rb").read())
            if m:
                break
            time.sleep(0.05)
        else:
            sys.exit("server %d did not start (%s)" % (i, log.name))
        addrs.append(("127.0.0.1", int(m.group(1))))
    wa, wb = WsClient(addrs[0], "/ws/hub/latency"), WsClient(addrs[1], "/ws/hub/latency")
    wa.frame()
    wb.frame()
    time.sleep(0.5)  # both hubs subscribed to Redis
    conn = http.client.HTTPConnection(*addrs[0])
    local, remote = [], []
    for i in range(args.rounds):
        body = b"m%d" % i
        t0 = time.perf_counter()
        conn.request("POST", "/hub/publish-async/latency", body=body)
        fa = wa.frame()
        ta = time.perf_counter()
        fb = wb.frame()
        tb = time.perf_counter()
        conn.getresponse().read()
        assert fa and fb and fa[1] == fb[1] == body, (fa, fb)
        local.append((ta - t0) * 1e6)
        remote.append((tb - t0) * 1e6)

    def p99(v):
        return sorted(v)[int(0.99 * (len(v) - 1))]

    print("publish -> frame, same instance:           median %6.0f us  p99 %6.0f us"
          % (statistics.median(local), p99(local)))
    print("publish -> frame, other instance (Redis):  median %6.0f us  p99 %6.0f us"
          % (statistics.median(remote), p99(remote)))
finally:
    for p in procs:
        p.terminate()
        p.wait()
