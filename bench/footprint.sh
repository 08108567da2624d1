#!/usr/bin/env bash
# Scaling and footprint (issue 13, item 5), one section each:
#
#   threads  bench/techempower /plaintext with --threads 1 (on SERVER_CPU)
#            and --threads 2 (on both CPUs), wrk -t1 on CLIENT_CPU: req/s and
#            the server's CPU time per request (utime + stime of the whole
#            process from /proc/PID/stat). With 2 loop threads on a 2-CPU
#            machine wrk shares a core with the server, so req/s says little;
#            CPU per request says what the second thread costs or saves.
#            Interleaved rounds (1, 2, 1, 2, ...), medians.
#   idle     memory per idle keep-alive connection, vial and nginx
#            (bench/idle-conns.py -n IDLE_N); goal <= 0.25 KiB.
#   ws       memory per idle websocket (bench/ws-scale.sh -k ws -n WS_N:
#            the conformance app's hub subscribers).
#   startup  exec to the first 200 on /plaintext, vial (techempower
#            --threads 1) and nginx (one process), median of STARTS runs
#            (bench/startup-time.py); and where vial's time goes: the CPU
#            time of `techempower --help` (all the set-up, no listening),
#            its shared libraries and the dynamic loader's own count.
#   size     libvial.so and libvial.a as built and stripped (.so:
#            --strip-all; .a: --strip-debug, what a library can lose and
#            still link), size(1) text/data/bss.
#
#   bench/footprint.sh [SECTIONS...]        (default: threads idle ws startup size)
#
# Environment [defaults]: DURATION [5] (wrk seconds), ROUNDS [3],
# CONNECTIONS [256], IDLE_N [10000], WS_N [2000], STARTS [20],
# SERVER_CPU [0], CLIENT_CPU [1], NGINX [/usr/sbin/nginx],
# VIAL_BUILD_DIR [<repo>/build].
# Bounded: wrk runs are DURATION long, the helpers have their own timeouts.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${VIAL_BUILD_DIR:-$ROOT/build}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-256}
IDLE_N=${IDLE_N:-10000}
WS_N=${WS_N:-2000}
STARTS=${STARTS:-20}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
SECTIONS=${*:-threads idle ws startup size}
HZ=$(getconf CLK_TCK)
PY=/usr/bin/python3

die() { echo "footprint: $*" >&2; exit 1; }
ninja -C "$BUILD" techempower conformance ws_scale_client vial vial_shared >/dev/null || die "build failed"
. "$HERE/serverlib.sh"
. "$HERE/nginx-conf.sh"
TMP=$(mktemp -d)
cleanup() {
    [ -z "${pid:-}" ] || stop_server
    rm -rf "$TMP" "$SERVER_LOG"
}
trap cleanup EXIT
median() { sort -n | awk '{a[NR] = $1} END {print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

threads() {
    declare -A RPS CPU
    local cpus
    for round in $(seq "$ROUNDS"); do
        for n in 1 2; do
            cpus=$SERVER_CPU
            [ "$n" = 1 ] || cpus="$SERVER_CPU,$CLIENT_CPU"
            start_server taskset -c "$cpus" "$BUILD/bench/techempower" --host 127.0.0.1 --threads "$n"
            curl -sf -o /dev/null "http://127.0.0.1:$port/plaintext" || die "techempower does not answer"
            taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/plaintext" >/dev/null
            local t0 t1 out r reqs
            t0=$(proc_ticks "$pid")
            out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$port/plaintext")
            t1=$(proc_ticks "$pid")
            stop_server
            pid=
            r=$(echo "$out" | awk '/^Requests\/sec/ {printf "%d", $2}')
            reqs=$(echo "$out" | awk '/requests in/ {print $1}')
            RPS[$n]="${RPS[$n]:-} $r"
            CPU[$n]="${CPU[$n]:-} $(awk -v t=$((t1 - t0)) -v n="$reqs" -v hz="$HZ" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')"
            echo "# threads $n round $round: $r req/s, $(echo "${CPU[$n]}" | awk '{print $NF}') us/req" >&2
        done
    done
    echo
    echo "## 1 vs 2 loop threads, /plaintext, wrk -t1 -c$CONNECTIONS -d${DURATION}s on CPU $CLIENT_CPU, $ROUNDS rounds"
    echo
    echo "| loop threads | server CPUs | req/s (median) | server CPU us/req (median) | req/s runs | us/req runs |"
    echo "|---|---|---|---|---|---|"
    for n in 1 2; do
        cpus=$SERVER_CPU
        [ "$n" = 1 ] || cpus="$SERVER_CPU,$CLIENT_CPU"
        echo "| $n | $cpus | $(echo "${RPS[$n]}" | tr ' ' '\n' | grep . | median) | $(echo "${CPU[$n]}" | tr ' ' '\n' | grep . | median) |${RPS[$n]} |${CPU[$n]} |"
    done
}

idle() {
    echo
    echo "## Memory per idle keep-alive connection (bench/idle-conns.py -n $IDLE_N)"
    echo
    ulimit -n $((IDLE_N + 2048)) 2>/dev/null || true
    # Ports of our own: the script's defaults may be taken by another benchmark.
    "$PY" "$HERE/idle-conns.py" -n "$IDLE_N" --servers vial,nginx --vial-bin "$BUILD/bench/techempower" \
        --vial-port "$(free_port)" --nginx-port "$(free_port)" 2>&1 | grep -v '^$' || echo "(idle-conns.py failed)"
}

ws() {
    echo
    echo "## Memory per idle websocket (bench/ws-scale.sh -k ws -n $WS_N -r 3)"
    echo
    "$HERE/ws-scale.sh" -n "$WS_N" -r 3 -k ws -b "$BUILD" | grep -E '^#|KiB per connection'
}

startup() {
    echo
    echo "## Startup: exec to the first 200 on /plaintext, $STARTS starts each (bench/startup-time.py)"
    echo
    local v n
    v=$("$PY" "$HERE/startup-time.py" -n "$STARTS" --cpu "$SERVER_CPU" -- \
        "$BUILD/bench/techempower" --host 127.0.0.1 --port '{port}' --threads 1)
    local nport
    nport=$(free_port)
    nginx_conf "$TMP/nginx" "$nport"
    n=$("$PY" "$HERE/startup-time.py" -n "$STARTS" --cpu "$SERVER_CPU" --port "$nport" -- \
        "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log")
    echo "| server | median ms | min ms | max ms |"
    echo "|---|---|---|---|"
    for s in "vial:$v" "nginx:$n"; do
        echo "| ${s%%:*} | $(echo "${s#*:}" | awk '$1 == "median_ms" {m = $2} $1 == "min_ms" {a = $2} $1 == "max_ms" {b = $2} END {print m " | " a " | " b}') |"
    done
    echo
    echo "Where vial's start-up goes: \`techempower --help\` (everything before listening):"
    echo
    echo '```'
    perf stat -r 10 -e task-clock "$BUILD/bench/techempower" --help 2>&1 >/dev/null | grep -E 'task-clock|elapsed' || true
    echo "shared libraries: $(ldd "$BUILD/bench/techempower" | wc -l) (vial's own deps: $(ldd "$BUILD/libvial.so" | wc -l))"
    LD_DEBUG=statistics "$BUILD/bench/techempower" --help 2>&1 >/dev/null | grep -E 'total startup time|number of relocations:' | sed 's/^ *[0-9]*: *//'
    echo "/bin/true: $(perf stat -r 10 -e task-clock /bin/true 2>&1 | awk '/task-clock/ {print $1 " ms CPU"}')"
    echo '```'
}

size_() {
    echo
    echo "## Library size ($(gcc -dumpfullversion) $(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt"))"
    echo
    local so a
    so=$(readlink -f "$BUILD/libvial.so")
    a=$BUILD/libvial.a
    strip --strip-all -o "$TMP/libvial.so" "$so"
    strip --strip-debug -o "$TMP/libvial.a" "$a"
    echo "| file | bytes | stripped | text | data | bss |"
    echo "|---|---|---|---|---|---|"
    for f in "$so" "$a"; do
        local s
        s=$(size -t "$f" | tail -1 | awk '{print $1 " | " $2 " | " $3}')
        echo "| $(basename "$f") | $(stat -c %s "$f") | $(stat -c %s "$TMP/$(basename "$f" | sed 's/\.so\..*/.so/')") | $s |"
    done
}

for s in $SECTIONS; do
    case $s in
    threads) threads ;;
    idle) idle ;;
    ws) ws ;;
    startup) startup ;;
    size) size_ ;;
    *) die "unknown section $s" ;;
    esac
done
echo
echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
