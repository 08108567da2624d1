#!/usr/bin/env bash
# What --metrics-path costs on /plaintext (bench/techempower.c, one loop
# thread, keep-alive), metrics off vs on.
#   bench/metrics-cost.sh              (after scripts/build.sh build)
# COUNT=instructions (the default): instructions per request in user space
# (callgrind; needs valgrind). The server answers N1 and then N2 requests on
# one keep-alive connection (curl) and the figure is the difference of the
# two runs' totals over N2-N1: startup, shutdown and the first requests'
# warm-up cancel out. Deterministic, so it resolves a few percent that a
# shared machine's CPU times cannot.
# COUNT=cpu: server CPU µs per request (utime+stime from /proc/PID/stat over
# the requests wrk completed), bounded wrk runs, off and on interleaved,
# medians of RUNS.
# Environment: BUILD [build] N1 [1000] N2 [3000] DURATION [3] RUNS [3]
#   CONNECTIONS [16] PORT [18991] EXTRA (more server flags for the "on" runs,
#   e.g. "--access-log /dev/null")
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PORT=${PORT:-18991}
BIN=$BUILD/bench/techempower
[ -x "$BIN" ] || { echo "metrics-cost.sh: $BIN missing (scripts/build.sh $BUILD)" >&2; exit 1; }
# shellcheck disable=SC2206
on=(--metrics-path /metrics ${EXTRA:-})
URL="http://127.0.0.1:$PORT/plaintext"

wait_up() {
  for _ in $(seq 150); do curl -sf -o /dev/null "$URL" && return 0; sleep 0.2; done
  echo "metrics-cost.sh: the server did not answer" >&2; exit 1
}

if [ "${COUNT:-instructions}" = instructions ]; then
  command -v valgrind >/dev/null || { echo "metrics-cost.sh: valgrind is missing" >&2; exit 1; }
  N1=${N1:-1000} N2=${N2:-3000}
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ir() { # REQUESTS FLAGS... -> instructions of the whole server run
    local n=$1; shift
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$BIN" --port "$PORT" --threads 1 \
      --workers 1 "$@" 2>"$tmp/cg.log" &
    local vp=$!
    wait_up
    # One connection: curl reuses it for every URL of the command line.
    seq "$n" | sed "s|.*|url = \"$URL\"\noutput = /dev/null|" >"$tmp/urls"
    curl -sf -K "$tmp/urls"
    if [ "${#on[@]}" -gt 0 ] && [ "$*" != "" ]; then
      curl -sf "http://127.0.0.1:$PORT/metrics" | grep -q '^vial_requests_total{endpoint="plaintext"' ||
        { echo "metrics-cost.sh: /metrics does not count plaintext" >&2; exit 1; }
    fi
    kill "$vp"; wait "$vp" || true
    awk '/Collected/ {print $4}' "$tmp/cg.log"
  }
  printf '%-8s %12s\n' metrics "instr/req"
  for mode in off on; do
    if [ $mode = on ]; then flags=("${on[@]}"); else flags=(); fi
    a=$(ir "$N1" "${flags[@]}"); b=$(ir "$N2" "${flags[@]}")
    printf '%-8s %12s\n' "$mode" "$(awk -v a="$a" -v b="$b" -v n=$((N2 - N1)) 'BEGIN {printf "%.1f", (b - a) / n}')"
  done
  exit 0
fi

command -v wrk >/dev/null || { echo "metrics-cost.sh: wrk is missing (scripts/deps.sh test)" >&2; exit 1; }
DURATION=${DURATION:-3}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-16}
cpu_ticks() { # utime+stime in clock ticks (fields 14 and 15; comm may hold spaces)
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
hz=$(getconf CLK_TCK)
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
pid=
trap '[ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }' EXIT
declare -A costs rates
for _ in $(seq "$RUNS"); do
  for mode in off on; do
    if [ $mode = on ]; then flags=("${on[@]}"); else flags=(); fi
    "$BIN" --port "$PORT" --threads 1 --workers 1 "${flags[@]}" 2>/dev/null &
    pid=$!
    wait_up
    wrk -t1 -c"$CONNECTIONS" -d1s "$URL" >/dev/null # warm-up, not recorded
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$URL")
    t1=$(cpu_ticks "$pid")
    kill "$pid"; wait "$pid" || true; pid=
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    rates[$mode]+="$(echo "$out" | awk '/Requests\/sec/ {print $2}') "
    costs[$mode]+="$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.3f", d * 1e6 / hz / n}') "
  done
done
printf '%-8s %10s %12s   %s\n' metrics "req/s" "cpu_us/req" "runs (cpu_us/req)"
for mode in off on; do
  printf '%-8s %10s %12s   %s\n' $mode "$(printf '%s\n' ${rates[$mode]} | median)" \
    "$(printf '%s\n' ${costs[$mode]} | median)" "${costs[$mode]}"
done
