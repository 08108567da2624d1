#!/bin/sh
# What --shed-target-ms costs when nothing is shed: server CPU time (utime +
# stime from /proc/PID/stat) per GET /plaintext of build/bench/techempower
# (--threads 1) under wrk -c16 for SECS s, rounds alternating off / on.
# (perf's instruction counters are not available on every VM; CPU time is.)
# Bounded: ROUNDS * 2 * (SECS + 2) s; loopback; servers stopped by PID.
#
# usage: bench/shed-cost.sh [ROUNDS=3] [SECS=5] [TARGET_MS=50]
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
TARGET=${3:-50}
BIN=build/bench/techempower
. bench/serverlib.sh
trap 'rm -f "$SERVER_LOG"' EXIT

one() { # $1: --shed-target-ms
    start_server "$BIN" --threads 1 --shed-target-ms "$1"
    wrk -t1 -c16 -d1s "http://127.0.0.1:$port/plaintext" >/dev/null
    a=$(awk '{print $14 + $15}' /proc/$pid/stat)
    n=$(wrk -t1 -c16 -d"${SECS}s" "http://127.0.0.1:$port/plaintext" | awk '/requests in/ {print $1}')
    b=$(awk '{print $14 + $15}' /proc/$pid/stat)
    stop_server
    hz=$(getconf CLK_TCK)
    awk -v t="$1" -v n="$n" -v a="$a" -v b="$b" -v hz="$hz" \
        'BEGIN { printf "--shed-target-ms %-3s %8d requests  %.2f us CPU per request\n", t, n, (b - a) * 1e6 / hz / n }'
}

for _ in $(seq "$ROUNDS"); do
    one 0
    one "$TARGET"
done
