#!/usr/bin/env bash
# Issue 5's resilience figure: PostgreSQL is stopped and started again in
# the middle of a load run against /db. Expected: clear 503s while it is
# down, then recovery; the server never crashes.
#   bench/pg-restart-load.sh [SECONDS=15]
# Starts a throwaway PostgreSQL (tests/services/pg.sh), loads
# bench/techempower.sql, serves build/bench/techempower with TECHEMPOWER_PG,
# runs wrk on /db for SECONDS; at 1/3 it stops PostgreSQL, at 1/2 starts it
# again (same port). Then it checks the server still answers /db with 200
# and is still the same process. Loopback only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
PG=$(tests/services/pg.sh start)
DIR=$(tests/services/pg.sh dir "$PG")
PORT=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
SRV=""
cleanup() {
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null || true
  tests/services/pg.sh stop "$PG" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql "$PG" -v ON_ERROR_STOP=1 -q -f bench/techempower.sql >/dev/null 2>&1
TECHEMPOWER_PG="$PG" build/bench/techempower --port "$PORT" --threads 1 2>/tmp/pg-restart-srv.log &
SRV=$!
sleep 1
curl -sf -o /dev/null "http://127.0.0.1:$PORT/db"
wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$PORT/db" > /tmp/pg-restart-wrk.txt 2>&1 &
WRK=$!
sleep $((SECS / 3))
PGBIN=/usr/lib/postgresql/15/bin
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || \
  tests/services/pg.sh stop "$PG" >/dev/null
echo "PostgreSQL stopped at $((SECS / 3)) s"
down=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/db")
echo "/db while PostgreSQL is down: $down"
sleep $((SECS / 2 - SECS / 3))
tests/services/pg.sh restart "$PG" >/dev/null
echo "PostgreSQL started again at $((SECS / 2)) s"
wait "$WRK"
grep -E "Requests/sec|Non-2xx|requests in|Socket errors" /tmp/pg-restart-wrk.txt
sleep 0.5
after=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/db")
alive=$(kill -0 "$SRV" 2>/dev/null && echo yes || echo no)
echo "/db after the restart: $after; server process alive: $alive"
[ "$down" = 503 ] && [ "$after" = 200 ] && [ "$alive" = yes ]
