#!/usr/bin/env bash
# Latency at a fixed request rate below saturation (issue 13, item 4):
# p50/p90/p99/p99.9/max of bench/techempower's /plaintext (and nginx's, at the
# same rates) and /db, and /db on 1024 connections with the database pool
# smaller than the connection count.
#
#   bench/latency.sh                                   # /plaintext only
#   PG="host=127.0.0.1 port=P user=postgres dbname=postgres" bench/latency.sh
#
# For each test, short wrk runs (the median of MAX_RUNS runs of MAX_SECONDS,
# same connection count) give the saturation rate of this machine (server on SERVER_CPU, wrk on
# CLIENT_CPU: the figure is that of the pair, whichever limits). Then
# build/bench/loadgen (bench/loadgen.c: constant rate, latency counted from
# each request's scheduled send time, so waiting for a busy connection is
# counted) offers LOADS percent of it for DURATION seconds after WARMUP
# seconds unrecorded. /plaintext: the same rates for vial and nginx, from
# the lower of the two maxima. Runs are interleaved (vial, nginx, vial /db,
# ...) ROUNDS times; with ROUNDS > 1 medians follow.
#
# The database: PG, a local PostgreSQL whose postmaster.pid this user can
# read (tests/services/pg.sh start makes one), pinned to SERVER_CPU with
# its backends; bench/techempower.sql is loaded into it (World, Fortune
# recreated). The app's pool: 4 PostgreSQL connections per loop thread
# (bench/techempower_db.c, .max_conns = 4) and one loop thread here, so
# the 1024-connection test has 1024 HTTP connections over 4 database
# connections (queries pipelined on them).
#
# Environment [defaults]: DURATION [10], WARMUP [1], MAX_SECONDS [3], MAX_RUNS [3],
# CONNECTIONS [64], BIG_CONNECTIONS [1024], LOADS ["50 80"], ROUNDS [1],
# TESTS ["plaintext db db1024"] (db tests need PG), SERVER_CPU [0],
# CLIENT_CPU [1], NGINX [/usr/sbin/nginx; "" to skip nginx], NGINX_PORT
# [18181], VIAL_BUILD_DIR [<repo>/build], VIAL_BIN [$VIAL_BUILD_DIR/bench/techempower],
# RESULTS [unset: a TSV of every run]. Every vial run (and every wrk run
# measuring vial's maximum) gets a fresh server.
# Bounded: every run has its duration and loadgen's hard timeout (-T 10).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${VIAL_BUILD_DIR:-$ROOT/build}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
MAX_SECONDS=${MAX_SECONDS:-3}
MAX_RUNS=${MAX_RUNS:-3}
CONNECTIONS=${CONNECTIONS:-64}
BIG_CONNECTIONS=${BIG_CONNECTIONS:-1024}
LOADS=${LOADS:-"50 80"}
ROUNDS=${ROUNDS:-1}
TESTS=${TESTS:-"plaintext db db1024"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NGINX=${NGINX-/usr/sbin/nginx}
NGINX_PORT=${NGINX_PORT:-18181}
PG=${PG:-}

die() { echo "latency: $*" >&2; exit 1; }
for tool in wrk taskset curl; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
ninja -C "$BUILD" techempower loadgen >/dev/null || die "build failed"
LOADGEN=$BUILD/bench/loadgen
VIAL_BIN=${VIAL_BIN:-$BUILD/bench/techempower}
if [ -z "$PG" ]; then
    TESTS=$(echo "$TESTS" | tr ' ' '\n' | grep -v '^db' | tr '\n' ' ' || true)
    echo "latency: PG not set, /db tests skipped" >&2
fi
[ "$(ulimit -n)" -gt $((BIG_CONNECTIONS + 64)) ] || ulimit -n $((BIG_CONNECTIONS + 256)) ||
    die "ulimit -n is below $BIG_CONNECTIONS + 64"

. "$HERE/serverlib.sh"
. "$HERE/nginx-conf.sh"
TMP=$(mktemp -d)
NGINX_PID=
cleanup() {
    [ -z "${pid:-}" ] || stop_server
    if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null || true; fi
    rm -rf "$TMP" "$SERVER_LOG"
}
trap cleanup EXIT

if [ -n "$PG" ]; then
    DATA=$(psql "$PG" -Atc "show data_directory")
    PM=$(head -1 "$DATA/postmaster.pid") || die "cannot read $DATA/postmaster.pid"
    for p in $PM $(pgrep -P "$PM"); do taskset -a -p -c "$SERVER_CPU" "$p" >/dev/null; done
    psql "$PG" -v ON_ERROR_STOP=1 -q -f "$HERE/techempower.sql" 2>/dev/null
fi
# A fresh vial for every run (its port and PID in $VIAL): what one run
# leaves behind (a burst of 1024 requests fills the coroutine-stack cache)
# must not be charged to the next.
envs=()
[ -z "$PG" ] || envs=(TECHEMPOWER_PG="$PG")
start_vial() {
    start_server env "${envs[@]}" taskset -c "$SERVER_CPU" "$VIAL_BIN" --host 127.0.0.1 --threads 1
    VIAL="vial:$port:$pid"
    curl -sf -o /dev/null "http://127.0.0.1:$port/plaintext" || die "vial does not answer"
    [ -z "$PG" ] || curl -sf -o /dev/null "http://127.0.0.1:$port/db" || die "vial /db does not answer"
}
stop_vial() { stop_server; pid=; }

NG=
if [ -n "$NGINX" ] && echo "$TESTS" | grep -qw plaintext; then
    curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && die "port $NGINX_PORT is in use; set NGINX_PORT"
    nginx_conf "$TMP/nginx" "$NGINX_PORT"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
        -e "$TMP/nginx/error.log" 2>"$TMP/nginx.log" &
    NGINX_PID=$!
    for _ in $(seq 50); do
        curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/plaintext" && break
        sleep 0.1
    done
    curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/plaintext" || die "nginx: $(cat "$TMP/nginx.log")"
    NG="nginx:$NGINX_PORT:$NGINX_PID"
fi

wrk_max() { # PORT|vial PATH CONNS -> req/s, the median of MAX_RUNS wrk runs
    local p=$1
    for _ in $(seq "$MAX_RUNS"); do
        [ "$1" != vial ] || { start_vial >&2; p=$port; }
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$3" -d"${MAX_SECONDS}s" "http://127.0.0.1:$p$2" |
            awk '/^Requests\/sec/ {printf "%d\n", $2}'
        [ "$1" != vial ] || stop_vial >&2
    done | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

declare -A MAX
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for t in $TESTS; do
    case $t in
    plaintext)
        MAX[plaintext]=$(wrk_max vial /plaintext "$CONNECTIONS")
        m=${MAX[plaintext]}
        if [ -n "$NG" ]; then
            n=$(wrk_max "$NGINX_PORT" /plaintext "$CONNECTIONS")
            echo "# max /plaintext -c$CONNECTIONS (wrk, ${MAX_SECONDS}s): vial $m req/s, nginx $n req/s"
            [ "$n" -lt "$m" ] && MAX[plaintext]=$n
        else
            echo "# max /plaintext -c$CONNECTIONS (wrk, ${MAX_SECONDS}s): vial $m req/s"
        fi ;;
    db) MAX[db]=$(wrk_max vial /db "$CONNECTIONS")
        echo "# max /db -c$CONNECTIONS (wrk, ${MAX_SECONDS}s): vial ${MAX[db]} req/s" ;;
    db1024) MAX[db1024]=$(wrk_max vial /db "$BIG_CONNECTIONS")
        echo "# max /db -c$BIG_CONNECTIONS (wrk, ${MAX_SECONDS}s): vial ${MAX[db1024]} req/s" ;;
    *) die "unknown test $t" ;;
    esac
done

cpu_ticks() { # CPU -> "busy total" ticks of that CPU from /proc/stat
    awk -v c="cpu$1" '$1 == c {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat
}
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

ROWS=()
run() { # TEST WHO:PORT:PID|vial PATH CONNS LOAD
    local t=$1 who port spid out
    [ "$2" != vial ] || start_vial
    IFS=: read -r who port spid <<<"${VIAL:-}"
    [ "$2" = vial ] || IFS=: read -r who port spid <<<"$2"
    local rate=$(( ${MAX[$t]} * $5 / 100 ))
    [ "$rate" -gt 0 ] || die "$t: no maximum measured"
    local s0 c0 k0 s1 c1 k1
    s0=$(cpu_ticks "$SERVER_CPU") c0=$(cpu_ticks "$CLIENT_CPU") k0=$(proc_ticks "$spid")
    out=$(taskset -c "$CLIENT_CPU" "$LOADGEN" -c "$4" -r "$rate" -d "$DURATION" -w "$WARMUP" -T 10 \
        --pid "$spid" "http://127.0.0.1:$port$3") || true
    s1=$(cpu_ticks "$SERVER_CPU") c1=$(cpu_ticks "$CLIENT_CPU") k1=$(proc_ticks "$spid")
    # How busy each CPU was with anything but the server / the load
    # generator (its CPU share from its own figure, over the recorded part):
    # other processes, interrupts, steal, and softirq (loopback TCP).
    local lcpu
    lcpu=$(echo "$out" | awk '$1 == "client_cpu_pct" {print $2}')
    local soth coth
    soth=$(echo "$s0 $s1 $k0 $k1" | awk '{t = $4 - $2; printf "%.0f", t ? 100 * ($3 - $1 - ($6 - $5)) / t : 0}')
    coth=$(echo "$c0 $c1 ${lcpu:-0}" | awk '{t = $4 - $2; printf "%.0f", t ? 100 * ($3 - $1) / t - $5 : 0}')
    g() { echo "$out" | awk -v k="$1" '$1 == k {print $2}'; }
    local bad
    bad=$(echo "$out" | awk '$1 == "non2xx" || $1 == "errors" || $1 == "timeouts" {n += $2} END {print n + 0}')
    [ -n "$(g p50_us)" ] || { echo "latency: loadgen failed on $who $3" >&2; bad=-1; }
    local row
    row=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$t" "$who" "$4" "$5" "$rate" \
        "$(g achieved)" "$(g p50_us)" "$(g p90_us)" "$(g p99_us)" "$(g p99.9_us)" "$(g max_us)" \
        "$(g server_cpu_us_per_req)" "$(g client_cpu_pct)" "$bad" "$soth" "$coth")
    [ "$2" != vial ] || stop_vial
    ROWS+=("$row")
    [ -z "${RESULTS:-}" ] || echo "$row" >>"$RESULTS"
    echo "$row" | awk -F'\t' '{printf "# %s %s -c%s %s%% (%s/s): p50 %.2f ms p99 %.2f ms p99.9 %.2f ms, %s bad, others on the CPUs %s%% / %s%%\n", $1, $2, $3, $4, $5, $7/1000, $9/1000, $10/1000, $14, $15, $16}' >&2
}

for _ in $(seq "$ROUNDS"); do
    for load in $LOADS; do
        for t in $TESTS; do
            case $t in
            plaintext)
                run plaintext vial /plaintext "$CONNECTIONS" "$load"
                [ -z "$NG" ] || run plaintext "$NG" /plaintext "$CONNECTIONS" "$load" ;;
            db) run db vial /db "$CONNECTIONS" "$load" ;;
            db1024) run db1024 vial /db "$BIG_CONNECTIONS" "$load" ;;
            esac
        done
    done
done
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "| test | server | conns | load | rate req/s | achieved | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server CPU us/req | loadgen CPU % | non-2xx+errors+timeouts | others on server / client CPU % | runs |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}" | awk -F'\t' '
    function med(s,   n, a, i, j, t) { n = split(s, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { k = $1 SUBSEP $2 SUBSEP $4
      if (!(k in seen)) { seen[k] = 1; order[++nk] = k; conns[k] = $3; rate[k] = $5 }
      for (i = 6; i <= 16; i++) v[k, i] = v[k, i] " " $i
      runs[k]++ }
    END { for (o = 1; o <= nk; o++) { k = order[o]; split(k, p, SUBSEP)
        printf "| %s | %s | %s | %s%% | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.0f | %d | %.0f / %.0f | %d |\n",
            p[1] == "db1024" ? "db" : p[1], p[2], conns[k], p[3], rate[k], med(v[k, 6]),
            med(v[k, 7]) / 1000, med(v[k, 8]) / 1000, med(v[k, 9]) / 1000, med(v[k, 10]) / 1000,
            med(v[k, 11]) / 1000, med(v[k, 12]), med(v[k, 13]), med(v[k, 14]), med(v[k, 15]), med(v[k, 16]), runs[k] } }'
