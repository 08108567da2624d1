#!/bin/sh
# 10,000 websocket / SSE subscribers of one hub topic on one vial process:
# RSS per connection, publish-to-all time (median, p99), and a
# connect/disconnect churn with the RSS sampled once a second.
#
#   bench/ws-scale.sh [-n 10000] [-r 20] [-c CHURN_SECONDS] [-k "ws ws-deflate sse churn"]
#                     [-b BUILD_DIR] [-s SERVER_BINARY] [-t SERVER_THREADS] [-p SERVER_CPUS]
#                     [-B] [-P]
#
# The server (examples/conformance: /ws/hub/<topic>, /hub/sse/<topic>,
# POST /hub/publish/<topic>) runs on CPU 0, the load generator
# (build/bench/ws_scale_client, one epoll loop, C) on CPU 1. A fresh server
# for each kind, so each RSS figure starts from the same idle process.
# -p: the server's CPU list for taskset (default 0; "0,1" lets -t 2 use both
# cores, sharing CPU 1 with the load generator). With -t 2 the kernel's
# SO_REUSEPORT hash spreads the connections over both loop threads.
# -P: each loop thread on one CPU of -p's list (the i-th thread on the i-th
# CPU, by the thread names vial-loop-i): without it the scheduler may wake
# both on one CPU — with the load generator polling on CPU 1, CPU 0 is the
# idle one, and -t 2 -p 0,1 then sends the two halves one after the other.
# With -P the generator yields its CPU when a poll finds nothing (--yield),
# to the loop thread placed beside it.
# Kinds: ws, ws-deflate (negotiated; 64-byte broadcasts stay under
# ws-deflate-min, so no zlib state), ws-deflate-256 (256-byte broadcasts:
# hub frames are built once and sent uncompressed, so still no zlib state),
# sse, churn (n open, 1,000 replaced a second, -c seconds).
# -B: the load generator sleeps in epoll_wait during rounds (default: it
# polls, so the server's CPU does not pay loopback wake-ups of the client).
# Bounded: every run has a timeout; only the processes started here are
# stopped. Needs RLIMIT_NOFILE above n + 64 for both (ulimit -n).
set -eu
n=10000 rounds=20 churn=60 kinds="ws ws-deflate sse churn" build=build server= threads=1 cpus=0 block= place=
while getopts n:r:c:k:b:s:t:p:BP o; do
    case $o in
    n) n=$OPTARG ;; r) rounds=$OPTARG ;; c) churn=$OPTARG ;; k) kinds=$OPTARG ;;
    b) build=$OPTARG ;; s) server=$OPTARG ;; t) threads=$OPTARG ;; p) cpus=$OPTARG ;; B) block=--block ;; P) place=1 block=${block:---yield} ;;
    *) sed -n 2,30p "$0"; exit 2 ;;
    esac
done
server=${server:-$build/examples/conformance}
client=$build/bench/ws_scale_client
[ -x "$server" ] && [ -x "$client" ] || { echo "ws-scale: build $server and $client first" >&2; exit 1; }
[ "$(ulimit -n)" -gt $((n + 64)) ] 2>/dev/null || ulimit -n $((n + 256)) 2>/dev/null ||
    { echo "ws-scale: ulimit -n $(ulimit -n) is below n + 64" >&2; exit 1; }
pin0= pin1=
command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ] && pin0="taskset -c $cpus" pin1="taskset -c 1"
log=$(mktemp)
pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap 'stop; rm -f "$log"' EXIT INT TERM

start() {
    : >"$log"
    $pin0 "$server" --host 127.0.0.1 --port 0 --threads "$threads" \
        >/dev/null 2>"$log" &
    pid=$!
    i=0
    while ! port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9]*\) .*/\1/p' "$log" | head -1) || [ -z "$port" ]; do
        i=$((i + 1)); [ $i -lt 100 ] || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    [ -n "$place" ] && [ -n "$pin0" ] && place_loops
    return 0
}

# -P: vial-loop-i to the i-th CPU of $cpus (modulo their count).
place_loops() {
    set -- $(echo "$cpus" | tr ',' ' ')
    for task in /proc/$pid/task/*; do
        name=$(cat "$task/comm" 2>/dev/null) || continue
        case $name in vial-loop-*) ;; *) continue ;; esac
        i=$(( ${name#vial-loop-} % $# + 1 ))
        eval cpu=\${$i}
        taskset -p -c "$cpu" "${task##*/}" >/dev/null
    done
}

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) cores, n=$n rounds=$rounds churn=${churn}s server threads=$threads on CPU $cpus; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for k in $kinds; do
    start
    case $k in
    ws) timeout 300 $pin1 "$client" --port "$port" --pid "$pid" -n "$n" --rounds "$rounds" $block ;;
    ws-deflate) timeout 300 $pin1 "$client" --port "$port" --pid "$pid" -n "$n" --rounds "$rounds" $block --deflate ;;
    ws-deflate-256) timeout 300 $pin1 "$client" --port "$port" --pid "$pid" -n "$n" --rounds "$rounds" $block --deflate \
        --size 256 ;;
    sse) timeout 300 $pin1 "$client" --port "$port" --pid "$pid" -n "$n" --rounds "$rounds" $block --kind sse ;;
    churn) timeout $((churn + 300)) $pin1 "$client" --port "$port" --pid "$pid" -n "$n" --churn "$churn" ;;
    *) echo "ws-scale: unknown kind $k" >&2; exit 2 ;;
    esac
    stop
done
