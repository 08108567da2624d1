#!/usr/bin/env bash
# vial's database tests against PostgreSQL's own limit on this machine.
#
# The raw limit is bench/pg-raw-limit (a plain libpq client pipelining
# RAW_CONNS connections, one Sync per batch of RAW_DEPTH statements) on the
# server's core; vial is bench/techempower (--threads 1) on that same core,
# loaded by wrk on the other. PostgreSQL (postmaster and every backend) is
# pinned to the server's core too, so raw client + PostgreSQL and vial +
# PostgreSQL compete for the same CPU. Rounds are interleaved (raw, vial,
# raw, vial, ...); medians are printed.
#
#   PG="host=127.0.0.1 port=P user=postgres dbname=postgres" bench/pg-limit.sh
#
# PG must be a server on this machine whose postmaster.pid this user can
# read (tests/services/pg.sh start makes one). The script loads
# bench/techempower.sql into it (drops and recreates World and Fortune).
#
# Columns: units/s (raw: statements/s, or /updates units of 20 reads + 1
# update; vial: req/s, and for /queries?queries=20 statements/s = 20 x
# req/s), ratio vial / raw, PostgreSQL's CPU per unit in us (utime +
# stime of the postmaster's children, backends that exited included), the
# raw client's and the vial server's own CPU per unit, and the ratio by
# CPU: (raw client + its PostgreSQL) / (vial + its PostgreSQL) per unit.
#
# Environment [defaults]: DURATION [8] (seconds per run), RUNS [3],
# CONNECTIONS [256] (wrk), SERVER_CPU [0], CLIENT_CPU [1], PORT [18090],
# RAW_CONNS [4], RAW_DEPTH [32], VIAL_BUILD_DIR [<repo>/build],
# TESTS ["db queries fortunes updates plaintext"; also queries5, whose raw
# column is db's: list db before it] (plaintext: no database,
# the ceiling of the HTTP side with this wrk on this machine), RESULTS [unset: a TSV of every run],
# BASE_BUILD_DIR [unset]: another build (e.g. main's) whose techempower runs
# too, on PORT+1, interleaved with the others: a "before" column.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${VIAL_BUILD_DIR:-$ROOT/build}
DURATION=${DURATION:-8}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-256}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18090}
RAW_CONNS=${RAW_CONNS:-4}
RAW_DEPTH=${RAW_DEPTH:-32}
TESTS=${TESTS:-"db queries fortunes updates plaintext"}
HZ=$(getconf CLK_TCK)
PG=${PG:?set PG to the conninfo of a local PostgreSQL (tests/services/pg.sh start)}

die() { echo "pg-limit: $*" >&2; exit 1; }
for tool in wrk taskset psql curl; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
ninja -C "$BUILD" techempower pg-raw-limit >/dev/null || die "build failed"
VIAL=$BUILD/bench/techempower
RAW=$BUILD/bench/pg-raw-limit

# shellcheck source=bench/pg-setup.sh
. "$HERE/pg-setup.sh"
pg_setup

PIDS=""
cleanup() {
  for pid in $PIDS; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
start_vial() { # BINARY PORT
  TECHEMPOWER_PG="$PG" taskset -c "$SERVER_CPU" "$1" --host 127.0.0.1 --port "$2" \
    --threads 1 2>/tmp/pg-limit-vial.$$.log &
  local pid=$!
  PIDS="$PIDS $pid"
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$2/db" && break
    kill -0 "$pid" 2>/dev/null || die "$1 exited: $(cat /tmp/pg-limit-vial.$$.log)"
    sleep 0.1
  done
  rm -f /tmp/pg-limit-vial.$$.log
  STARTED=$pid
}
start_vial "$VIAL" "$PORT"
SERVERS="vial:$PORT:$STARTED"
if [ -n "${BASE_BUILD_DIR:-}" ]; then
  ninja -C "$BASE_BUILD_DIR" techempower >/dev/null || die "base build failed"
  start_vial "$BASE_BUILD_DIR/bench/techempower" $((PORT + 1))
  SERVERS="$SERVERS base:$((PORT + 1)):$STARTED"
fi

pg_ticks() { # the postmaster's own + reaped children's + live children's CPU ticks: "user system"
  local u s cu cs
  read -r u s < <(sed 's/^.*) //' "/proc/$PM/stat" | awk '{print $12 + $14, $13 + $15}')
  for c in $(pgrep -P "$PM"); do
    read -r cu cs < <(sed 's/^.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12, $13}' || echo 0 0)
    u=$((u + ${cu:-0}))
    s=$((s + ${cs:-0}))
  done
  echo "$u $s"
}
# us per unit of a tick delta: per TICKS0 TICKS1 N (ticks "user system"; prints user+system, user, system)
per_unit() {
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$HZ" 'BEGIN {split(a, x, " "); split(b, y, " ");
    u = (y[1] - x[1]) * 1e6 / hz / n; s = (y[2] - x[2]) * 1e6 / hz / n; printf "%.1f %.1f %.1f", u + s, u, s}'
}

declare -A VALS
record() { # KEY VALUE
  VALS[$1]="${VALS[$1]:-} $2"
  [ -z "${RESULTS:-}" ] || printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"
}

# Waits (up to 5 s) until the postmaster has no more than N children: the
# raw client's backends exit after it does, and their CPU moves from "live
# child" to the postmaster's cutime only once it has reaped them; reading
# in between loses (or later double-counts) it.
backends_settle() { # N
  for _ in $(seq 50); do
    [ "$(pgrep -c -P "$PM")" -le "$1" ] && return
    sleep 0.1
  done
}

run_raw() { # MODE DEPTH -> units/s and PG us/unit recorded under raw_MODE
  local mode=$1 depth=$2 t0 t1 out u before
  before=$(pgrep -c -P "$PM")
  t0=$(pg_ticks)
  out=$(taskset -c "$SERVER_CPU" "$RAW" "$PG" "$mode" "$RAW_CONNS" "$depth" "$DURATION")
  backends_settle "$before"
  t1=$(pg_ticks)
  u=$(echo "$out" | awk '/^units\/s/ {print $2}')
  local n
  n=$(echo "$out" | awk '/^units / {print $2}')
  record "raw_$mode" "$u"
  record "raw_${mode}_cliu" "$(echo "$out" | awk '/^cpu_us\/unit/ {print $2}')"
  record "raw_${mode}_cliu_user" "$(echo "$out" | awk '/^cpu_us\/unit/ {print $4}')"
  record "raw_${mode}_cliu_sys" "$(echo "$out" | awk '/^cpu_us\/unit/ {print $6}')"
  local pu
  read -r -a pu <<<"$(per_unit "$t0" "$t1" "$n")"
  record "raw_${mode}_pgus" "${pu[0]}"
  record "raw_${mode}_pgus_user" "${pu[1]}"
  record "raw_${mode}_pgus_sys" "${pu[2]}"
}

run_vial() { # NAME PATH PER_REQUEST: every server in $SERVERS
  local s
  for s in $SERVERS; do
    IFS=: read -r who port pid <<<"$s"
    run_one "$who" "$port" "$pid" "$@"
  done
}

proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; } # "user system"

run_one() { # WHO PORT PID NAME PATH PER_REQUEST
  local who=$1 port=$2 pid=$3 name=$4 path=$5 per=$6 t0 t1 s0 s1 out rps
  s0=$(proc_ticks "$pid")
  t0=$(pg_ticks)
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" \
    "http://127.0.0.1:$port$path")
  # wrk's closing connections cancel the requests in flight, and a pool
  # connection whose statements are all abandoned is closed (vial/pg.h):
  # let those backends exit and be reaped before reading, or their CPU is
  # missed (counted neither live nor in the postmaster's cutime).
  sleep 0.5
  t1=$(pg_ticks)
  s1=$(proc_ticks "$pid")
  echo "$out" | grep -q "Non-2xx" && echo "pg-limit: $path: $(echo "$out" | grep Non-2xx)" >&2
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  local n
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  record "${who}_$name" "$(awk -v r="$rps" -v p="$per" 'BEGIN {printf "%.0f", r * p}')"
  local su pu
  read -r -a su <<<"$(per_unit "$s0" "$s1" $((n * per)))"
  read -r -a pu <<<"$(per_unit "$t0" "$t1" $((n * per)))"
  record "${who}_${name}_srvus" "${su[0]}"
  record "${who}_${name}_srvus_user" "${su[1]}"
  record "${who}_${name}_srvus_sys" "${su[2]}"
  record "${who}_${name}_pgus" "${pu[0]}"
  record "${who}_${name}_pgus_user" "${pu[1]}"
  record "${who}_${name}_pgus_sys" "${pu[2]}"
}

for round in $(seq "$RUNS"); do
  for t in $TESTS; do
    case $t in
      db) run_raw db "$RAW_DEPTH"; run_vial db /db 1 ;;
      queries) run_vial queries "/queries?queries=20" 20 ;;
      queries5) run_vial queries5 "/queries?queries=5" 5 ;;
      fortunes) run_raw fortunes "$RAW_DEPTH"; run_vial fortunes /fortunes 1 ;;
      updates) run_raw updates 1; run_vial updates "/updates?queries=20" 1 ;;
      plaintext) run_vial plaintext /plaintext 1 ;;
    esac
  done
  echo "round $round done" >&2
done

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -n | awk '{a[NR] = $1} END {if (!NR) {print "-"; exit} print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
m() { echo "${VALS[$1]:-}" | median; }

echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0) printf "%.2f", a / b; else printf "-"}'; }
# "by CPU": (raw client + PostgreSQL us/unit) / (vial + PostgreSQL us/unit),
# the ratio the two would reach each alone on the core: under a shared load
# the units/s ratio also measures who got the core.
echo "| test | raw units/s | vial units/s | vial/raw | PG us/unit raw | raw client us/unit | PG us/unit vial | vial us/unit | vial/raw by CPU | runs (vial) | base units/s | base/raw | PG us/unit base | base us/unit | base/raw by CPU |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
cpuratio() { # RAWCLI RAWPG SRV PG
  awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN {if (c + d > 0 && a != "-" && a != "") printf "%.2f", (a + b) / (c + d); else printf "-"}'
}
line() { # LABEL RAWKEY NAME
  local r v b="" rc rp
  r=$(m "$2")
  v=$(m "vial_$3")
  rc=$(m "${2}_cliu")
  rp=$(m "${2}_pgus")
  [ -z "${BASE_BUILD_DIR:-}" ] || b=$(m "base_$3")
  echo "| $1 | $r | $v | $(ratio "$v" "$r") | $rp | $rc | $(m "vial_${3}_pgus") | $(m "vial_${3}_srvus") | $(cpuratio "$rc" "$rp" "$(m "vial_${3}_srvus")" "$(m "vial_${3}_pgus")") |${VALS[vial_$3]} | $b | ${b:+$(ratio "$b" "$r")} | ${b:+$(m "base_${3}_pgus")} | ${b:+$(m "base_${3}_srvus")} | ${b:+$(cpuratio "$rc" "$rp" "$(m "base_${3}_srvus")" "$(m "base_${3}_pgus")")} |"
}
each_test() { # FUNCTION: called as FUNCTION LABEL RAWKEY NAME for every test in $TESTS
  local t
  for t in $TESTS; do
    case $t in
      db) "$1" "/db (queries/s)" raw_db db ;;
      queries) "$1" "/queries?queries=20 (queries/s)" raw_db queries ;;
      queries5) "$1" "/queries?queries=5 (queries/s)" raw_db queries5 ;;
      fortunes) "$1" "/fortunes" raw_fortunes fortunes ;;
      updates) "$1" "/updates?queries=20 (20 reads + 1 update)" raw_updates updates ;;
      plaintext) "$1" "/plaintext (the HTTP side's ceiling, no database)" none plaintext ;;
    esac
  done
}
each_test line

# The same CPU per unit, user and system (kernel) time apart: the client's
# (raw) or the server's (vial, base), and PostgreSQL's.
echo
echo "| test | who | client/server user us | client/server system us | PG user us | PG system us | total us |"
echo "|---|---|---|---|---|---|---|"
split_line() { # LABEL RAWKEY NAME
  local who k
  if [ "$2" != none ]; then
    k=$2
    echo "| $1 | raw | $(m "${k}_cliu_user") | $(m "${k}_cliu_sys") | $(m "${k}_pgus_user") | $(m "${k}_pgus_sys") | $(awk -v a="$(m "${k}_cliu")" -v b="$(m "${k}_pgus")" 'BEGIN {printf "%.1f", a + b}') |"
  fi
  for who in vial ${BASE_BUILD_DIR:+base}; do
    k=${who}_$3
    echo "| $1 | $who | $(m "${k}_srvus_user") | $(m "${k}_srvus_sys") | $(m "${k}_pgus_user") | $(m "${k}_pgus_sys") | $(awk -v a="$(m "${k}_srvus")" -v b="$(m "${k}_pgus")" 'BEGIN {printf "%.1f", a + b}') |"
  done
}
each_test split_line
