#!/usr/bin/env bash
# Issue 5's cancellation figure: a client that disconnects mid-query leaves
# no query running on the PostgreSQL server. Starts a throwaway PostgreSQL
# (tests/services/pg.sh), serves build/bench/pg_slow (GET /slow runs
# `select pg_sleep(5)`), connects, sends the request, closes the socket after
# 300 ms, then polls pg_stat_activity every 50 ms until the query is gone.
# Prints how long that took. Loopback only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=$(tests/services/pg.sh start)
PORT=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
VIAL_PG="$PG" build/bench/pg_slow --port "$PORT" 2>/tmp/pg_slow.log &
SRV=$!
trap 'kill $SRV 2>/dev/null || true; wait $SRV 2>/dev/null || true; tests/services/pg.sh stop "$PG" >/dev/null 2>&1 || true' EXIT
sleep 0.5
PGHOST=$(sed 's/.*host=\([^ ]*\).*/\1/' <<<"$PG"); PGPORT=$(sed 's/.*port=\([^ ]*\).*/\1/' <<<"$PG")
/usr/bin/python3 - "$PORT" "$PGHOST" "$PGPORT" <<'PY'
import socket, subprocess, sys, time
port, pghost, pgport = sys.argv[1], sys.argv[2], sys.argv[3]
def running():
    out = subprocess.run(["psql", "-h", pghost, "-p", pgport, "-U", "postgres", "-d", "postgres", "-tAc",
        "select count(*) from pg_stat_activity where query like 'select pg_sleep(5)%' and state = 'active'"],
        capture_output=True, text=True).stdout.strip()
    return int(out or 0)
s = socket.create_connection(("127.0.0.1", int(port)))
s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(0.3)
print("query running on the server before the disconnect:", running())
t0 = time.time()
s.close()
while running() and time.time() - t0 < 5:
    time.sleep(0.05)
left = running()
print("after the client disconnected: %d running, gone after %.0f ms" % (left, (time.time() - t0) * 1000))
sys.exit(1 if left else 0)
PY
