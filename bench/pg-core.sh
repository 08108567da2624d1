#!/usr/bin/env bash
# Where the shared core's time goes, per unit: vial (server + PostgreSQL)
# against the raw libpq client (client + PostgreSQL), from one perf
# recording of the whole core (perf record -C SERVER_CPU), so that every
# process on it is seen: the server or the raw client, each PostgreSQL
# backend, and whoever else ran there (other sessions on a shared machine:
# reported apart, not counted).
#
#   PG="host=127.0.0.1 port=P user=postgres dbname=postgres" bench/pg-core.sh OUTDIR
#
# For each test, the shares of the recorded core time: the server's (or
# raw client's) user and kernel time, PostgreSQL's user and kernel time,
# and other processes'; the server's own time is split further by
# bench/pg-split.py (HTTP, handler, /fortunes rendering, the PostgreSQL
# client) from the call chains, as shares of the server's time. Shares,
# not microseconds: perf's own work (a dwarf stack copy per sample) is
# charged to the process it interrupts and inflates the absolute times;
# multiply the shares by bench/pg-limit.sh's CPU per unit (/proc, without
# perf) for a decomposition in us. OUTDIR keeps the recordings
# (perf-raw-TEST.data, perf-vial-TEST.data) for per-symbol comparisons, e.g.
#   perf report -i OUTDIR/perf-vial-db.data --comms postgres --sort sym
#
# Environment [defaults]: DURATION [5], SERVER_CPU [0], CLIENT_CPU [1],
# PORT [18390], VIAL_BUILD_DIR [<repo>/build], TESTS ["db fortunes
# plaintext"], RAW_CONNS [4], RAW_DEPTH [32], FREQ [4000], VIAL_BACKEND
# (epoll or io_uring: passed to the server).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${VIAL_BUILD_DIR:-$ROOT/build}
OUT=${1:?usage: bench/pg-core.sh OUTDIR}
DURATION=${DURATION:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18390}
TESTS=${TESTS:-"db fortunes plaintext"}
RAW_CONNS=${RAW_CONNS:-4}
RAW_DEPTH=${RAW_DEPTH:-32}
FREQ=${FREQ:-4000}
PG=${PG:?set PG to the conninfo of a local PostgreSQL (tests/services/pg.sh start)}

die() { echo "pg-core: $*" >&2; exit 1; }
for tool in perf wrk taskset psql curl; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$OUT"
ninja -C "$BUILD" techempower pg-raw-limit >/dev/null || die "build failed"

# shellcheck source=bench/pg-setup.sh
. "$HERE/pg-setup.sh"
pg_setup

pg_server_start

# The samples of one recording by process class and side: "who side count"
# lines, who = self (the server or raw client), postgres, other.
classes() { # DATA SELF_COMM
  perf report -i "$1" --stdio --no-children -g none --sort comm,dso -F overhead,sample,comm,dso \
    2>/dev/null | awk -v self="$2" '
    /^#/ || NF < 4 {next}
    {n = $2; comm = $3; dso = $NF
     who = (comm == self || comm ~ /^vial-/) ? "self" : (comm == "postgres" ? "postgres" : "other")
     side = (dso ~ /kernel/) ? "kernel" : "user"
     c[who " " side] += n}
    END {for (k in c) print k, c[k]}'
}

report() { # NAME DATA SELF_COMM
  local name=$1 data=$2 self=$3
  classes "$data" "$self" >"$OUT/classes-$name.txt"
  perf script -i "$data" --comms "$self,vial-loop-0" -F ip,sym,dso 2>/dev/null | "$HERE/pg-split.py" \
    >"$OUT/split-$name.txt" || true
  awk -v name="$name" -v sfile="$OUT/split-$name.txt" '
    {c[$1 " " $2] = $3; tot[$1] += $3; all += $3}
    END {
      printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f |", name, c["self user"] * 100 / all,
        c["self kernel"] * 100 / all, c["postgres user"] * 100 / all, c["postgres kernel"] * 100 / all,
        tot["other"] * 100 / all
      while ((getline line < sfile) > 0) {
        split(line, f, "\t")
        if (f[1] ~ /^(http|app|render|pg)$/) parts = parts sprintf(" %s %s/%s", f[1], f[2], f[3])
      }
      printf "%s |\n", parts
    }' "$OUT/classes-$name.txt"
}

echo "| run | self user % | self kernel % | PG user % | PG kernel % | others % | the server's time, user/kernel % (bench/pg-split.py) |"
echo "|---|---|---|---|---|---|---|"
for t in $TESTS; do
  if [ "$t" != plaintext ]; then
    taskset -c "$SERVER_CPU" "$BUILD/bench/pg-raw-limit" "$PG" "$t" "$RAW_CONNS" "$RAW_DEPTH" \
      "$((DURATION + 2))" >"$OUT/raw-$t.txt" &
    RAW=$!
    sleep 1
    perf record -q -F "$FREQ" -C "$SERVER_CPU" --call-graph dwarf,8192 -o "$OUT/perf-raw-$t.data" \
      -- sleep "$DURATION" 2>/dev/null
    wait "$RAW"
    report "raw-$t" "$OUT/perf-raw-$t.data" pg-raw-limit
  fi
  taskset -c "$CLIENT_CPU" wrk -t1 -c256 -d"$((DURATION + 3))s" "http://127.0.0.1:$PORT/$t" \
    >"$OUT/wrk-$t.txt" &
  WRK=$!
  sleep 1.5
  perf record -q -F "$FREQ" -C "$SERVER_CPU" --call-graph dwarf,8192 -o "$OUT/perf-vial-$t.data" \
    -- sleep "$DURATION" 2>/dev/null
  wait "$WRK"
  report "vial-$t" "$OUT/perf-vial-$t.data" techempower
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
