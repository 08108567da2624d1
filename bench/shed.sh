#!/bin/sh
# Load shedding at 2x overload (issue 11, item 3). build/bench/shed_server's
# GET /work holds one of WORKERS pool threads for MS ms: capacity is
# WORKERS*1000/MS requests/s. bench/openloop.py sends twice that, open loop
# (each request at its scheduled time on a new connection, latency from that
# time), for SECS s, first without shedding, then with --shed-target-ms for
# each TARGET. Prints, per run, the 200s and 503s with p50/p99/max.
# Bounded: about (1 + number of targets) * SECS s; loopback; the server is
# stopped by PID.
#
# usage: bench/shed.sh [WORKERS=1] [MS=10] [SECS=10] [TARGETS="10 25 50"]
# (the generator is Python: keep WORKERS*1000/MS*2 within a few hundred/s)
set -eu
cd "$(dirname "$0")/.."
WORKERS=${1:-1}
MS=${2:-10}
SECS=${3:-10}
TARGETS=${4:-"10 25 50"}
BIN=build/bench/shed_server
[ -x "$BIN" ] || { echo "build first: ./scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo" >&2; exit 1; }
RATE=$((WORKERS * 1000 / MS * 2))
. bench/serverlib.sh
trap 'rm -f "$SERVER_LOG"' EXIT

run() { # $1: target ms (0: off)
    start_server "$BIN" --threads 1 --workers "$WORKERS" --shed-target-ms "$1"
    echo "--shed-target-ms $1: capacity $((WORKERS * 1000 / MS))/s, offered $RATE/s"
    /usr/bin/python3 bench/openloop.py 127.0.0.1 "$port" "/work?ms=$MS" "$RATE" "$SECS" | sed 's/^/  /'
    stop_server
}

run 0
for t in $TARGETS; do
    run "$t"
done
