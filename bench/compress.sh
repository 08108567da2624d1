#!/usr/bin/env bash
# What response compression costs: server CPU per request for a ~2 KiB JSON
# and a ~2 KiB HTML response (bench/compress_bench.c), without compression,
# with gzip (level 6) and with brotli (quality 4).
#   bench/compress.sh            (after scripts/build.sh build)
# One server (--threads 1, compression on) answers all runs; the client's
# Accept-Encoding picks the coding ("identity" for none). Each run is wrk
# for DURATION seconds; the figure is the server process's CPU time
# (utime+stime from /proc/PID/stat, all threads) over the requests wrk
# completed, so a shared, busy machine slows the runs but changes the
# figure much less than it would req/s. Medians of RUNS runs.
# COUNT=instructions: instead, instructions per request in user space
# (callgrind; needs valgrind): the server answers N and then 2N requests on
# one keep-alive connection (curl), and the difference over N is the
# figure, startup and shutdown cancelled out. Deterministic, so it resolves
# what a loaded machine's CPU times cannot. N [200].
# Environment: BUILD [build] DURATION [2] RUNS [5] CONNECTIONS [8] PORT [18990]
#   GZIP_LEVEL, BR_QUALITY: the levels (vial's defaults, 6 and 4, when unset)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DURATION=${DURATION:-2}
RUNS=${RUNS:-5}
CONNECTIONS=${CONNECTIONS:-8}
PORT=${PORT:-18990}
BIN=$BUILD/bench/compress_bench
[ -x "$BIN" ] || { echo "compress.sh: $BIN missing (scripts/build.sh $BUILD)" >&2; exit 1; }
levels=()
[ -z "${GZIP_LEVEL:-}" ] || levels+=(--gzip-level "$GZIP_LEVEL")
[ -z "${BR_QUALITY:-}" ] || levels+=(--br-quality "$BR_QUALITY")

if [ "${COUNT:-}" = instructions ]; then
  command -v valgrind >/dev/null || { echo "compress.sh: valgrind is missing" >&2; exit 1; }
  N=${N:-200}
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ir() { # PATH CODING REQUESTS -> instructions of the whole server run
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$BIN" --port "$PORT" --threads 1 \
      --workers 1 "${levels[@]}" 2>"$tmp/cg.log" &
    local vp=$! args=()
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT$1" && break; sleep 0.2; done
    for _ in $(seq "$3"); do args+=(-o /dev/null "http://127.0.0.1:$PORT$1"); done
    curl -sf -H "Accept-Encoding: $2" "${args[@]}"
    kill "$vp"; wait "$vp" || true
    awk '/Collected/ {print $4}' "$tmp/cg.log"
  }
  printf '%-6s %-9s %14s\n' path coding "instr/req"
  for path in /json /html; do
    for ae in identity gzip br; do
      a=$(ir "$path" "$ae" "$N"); b=$(ir "$path" "$ae" $((2 * N)))
      printf '%-6s %-9s %14s\n' "$path" "$ae" $(((b - a) / N))
    done
  done
  exit 0
fi
command -v wrk >/dev/null || { echo "compress.sh: wrk is missing (scripts/deps.sh test)" >&2; exit 1; }

"$BIN" --port "$PORT" --threads 1 --workers 1 "${levels[@]}" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/json" && break
  sleep 0.1
done

# Each variant answers with the coding asked for, and decodes to the same
# bytes as the identity response.
for path in /json /html; do
  plain=$(curl -sf "http://127.0.0.1:$PORT$path" | md5sum)
  for ae in gzip br; do
    ce=$(curl -sf -o /dev/null -w '%header{content-encoding}' -H "Accept-Encoding: $ae" \
         "http://127.0.0.1:$PORT$path" 2>/dev/null || true)
    [ -z "$ce" ] || [ "$ce" = "$ae" ] || { echo "compress.sh: $path $ae answered $ce" >&2; exit 1; }
    got=$(curl -sf --compressed -H "Accept-Encoding: $ae" "http://127.0.0.1:$PORT$path" | md5sum)
    [ "$got" = "$plain" ] || { echo "compress.sh: $path $ae does not decode to the plain body" >&2; exit 1; }
  done
  size() { curl -sf -H "Accept-Encoding: $1" "http://127.0.0.1:$PORT$path" | wc -c; }
  echo "$path: identity $(size identity) bytes, gzip $(size gzip), br $(size br)"
done

cpu_ticks() { # utime+stime in clock ticks (fields 14 and 15; comm may hold spaces)
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
hz=$(getconf CLK_TCK)

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

printf '%-6s %-9s %10s %12s\n' path coding "req/s" "cpu_us/req"
for path in /json /html; do
  for ae in identity gzip br; do
    rates=() costs=()
    for _ in $(seq "$RUNS"); do
      t0=$(cpu_ticks "$pid")
      out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Accept-Encoding: $ae" \
            "http://127.0.0.1:$PORT$path")
      t1=$(cpu_ticks "$pid")
      n=$(echo "$out" | awk '/requests in/ {print $1}')
      rates+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
      costs+=("$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.2f", d * 1e6 / hz / n}')")
    done
    printf '%-6s %-9s %10s %12s\n' "$path" "$ae" \
      "$(printf '%s\n' "${rates[@]}" | median)" "$(printf '%s\n' "${costs[@]}" | median)"
  done
done
