#!/usr/bin/env bash
# perf profiles of bench/techempower under wrk: /plaintext, /db, /fortunes.
#
#   PG="host=127.0.0.1 port=P user=postgres dbname=postgres" bench/pg-perf.sh OUTDIR
#
# The server runs on SERVER_CPU (--threads 1), PostgreSQL is pinned there
# too (as bench/pg-limit.sh does), wrk -t1 -c256 on CLIENT_CPU. For each
# path: wrk runs for DURATION+3 s, perf records the server for DURATION s
# from the second second on (call graphs: CALLGRAPH, default "dwarf,16384";
# "fp" is cheaper but libc has no frame pointers), and OUTDIR gets
# perf-<name>.txt (perf report --stdio --no-children, the first LINES lines,
# and a flat profile of the top 40 symbols) plus the wrk output.
# Needs root or perf_event_paranoid <= 1 for kernel samples (Debian linux-perf).
#
# Environment [defaults]: DURATION [5], SERVER_CPU [0], CLIENT_CPU [1],
# PORT [18290], VIAL_BUILD_DIR [<repo>/build] (build it RelWithDebInfo),
# PATHS ["plaintext db fortunes"], LINES [120].
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${VIAL_BUILD_DIR:-$ROOT/build}
OUT=${1:?usage: bench/pg-perf.sh OUTDIR}
DURATION=${DURATION:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18290}
PATHS=${PATHS:-"plaintext db fortunes"}
LINES=${LINES:-120}
CALLGRAPH=${CALLGRAPH:-dwarf,16384}
PG=${PG:?set PG to the conninfo of a local PostgreSQL (tests/services/pg.sh start)}

die() { echo "pg-perf: $*" >&2; exit 1; }
for tool in perf wrk taskset psql curl; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$OUT"
ninja -C "$BUILD" techempower >/dev/null || die "build failed"

# shellcheck source=bench/pg-setup.sh
. "$HERE/pg-setup.sh"
pg_setup

pg_server_start

for name in $PATHS; do
  taskset -c "$CLIENT_CPU" wrk -t1 -c256 -d"$((DURATION + 3))s" "http://127.0.0.1:$PORT/$name" \
    >"$OUT/wrk-$name.txt" &
  WRK=$!
  sleep 1.5
  perf record -q --call-graph "$CALLGRAPH" -p "$SRV" -o "$OUT/perf-$name.data" -- sleep "$DURATION" \
    2>/dev/null
  wait "$WRK"
  {
    echo "# /$name: $(grep Requests/sec "$OUT/wrk-$name.txt"); load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "## flat (self time, top 40)"
    perf report -i "$OUT/perf-$name.data" --stdio --no-children -g none --percent-limit 0.3 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -40 || true
    echo "## call graphs (callers, the first $LINES lines)"
    perf report -i "$OUT/perf-$name.data" --stdio --no-children --percent-limit 2 2>/dev/null |
      grep -v '^$' | head -"$LINES" || true
  } >"$OUT/perf-$name.txt"
  echo "pg-perf: /$name done: $OUT/perf-$name.txt" >&2
done
