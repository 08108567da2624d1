#!/usr/bin/env bash
# vial against nginx on the TechEmpower plaintext and json tests, and on
# pipelined plaintext (16 requests per write), one core each:
#   the server on CPU $SERVER_CPU (vial with --threads 1, nginx with one
#   process), wrk on CPU $CLIENT_CPU.
# Runs are interleaved (vial, nginx, vial, nginx, ...) so drift in the machine
# hits both alike. For every run it records req/s (wrk) and the CPU time the
# server process used during the run (utime+stime from /proc/PID/stat), and
# prints a table of medians.
#
#   bench/run-techempower.sh
#
# Environment (defaults in brackets):
#   DURATION [10s]  CONNECTIONS [256]  WRK_THREADS [1]  RUNS [3]  WARMUP [1s]
#   PIPELINE_DEPTH [16]  TESTS ["plaintext json pipeline"]
#   SERVER_CPU [0]  CLIENT_CPU [1] (taskset lists: with more cores, e.g.
#   CLIENT_CPU=1-3 WRK_THREADS=3 so that wrk is not the bottleneck)
#   VIAL_PORT [18080]  NGINX_PORT [18081]
#   BACKENDS [epoll]: vial's loop backends to run, each its own server
#   (--backend; "epoll io_uring" compares them, interleaved with nginx; the
#   servers are then named vial-epoll, vial-io_uring and take ports
#   VIAL_PORT + 2, + 3, ...)
#   VIAL_BUILD_DIR [<repo>/build]  SKIP_BUILD [0]  NGINX [/usr/sbin/nginx]
#   RESULTS [unset]: also write every run as TSV to this file.
#   CLEAN_PCT [10]: runs whose server or client CPU was more than this busy
#   with other work are flagged, and a second table shows medians without them.
# With the defaults the whole script takes about 3.5 minutes.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${VIAL_BUILD_DIR:-$ROOT/build}
VIAL_BIN=$BUILD/bench/techempower
NGINX=${NGINX:-/usr/sbin/nginx}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-256}
WRK_THREADS=${WRK_THREADS:-1}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1s}
PIPELINE_DEPTH=${PIPELINE_DEPTH:-16}
TESTS=${TESTS:-"plaintext json pipeline"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
VIAL_PORT=${VIAL_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
BACKENDS=${BACKENDS:-epoll}
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)

die() { echo "run-techempower: $*" >&2; exit 1; }

for tool in wrk taskset curl "$NGINX" "$PY"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/deps.sh test installs it)"
done
if [ "$(nproc)" -lt 2 ]; then
  echo "run-techempower: warning: only $(nproc) CPU; server and wrk share it" >&2
fi

# Build the benchmark program (a no-op when it is up to date). If the tree
# does not build right now, an existing binary is used, with a warning.
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$BUILD/build.ninja" ]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja >/dev/null
  fi
  if ! ninja -C "$BUILD" techempower >"$BUILD/techempower-build.log" 2>&1; then
    grep -m5 -E 'error|FAILED' "$BUILD/techempower-build.log" >&2 || true
    [ -x "$VIAL_BIN" ] || die "cannot build $VIAL_BIN"
    echo "run-techempower: warning: build failed; using the existing $VIAL_BIN" >&2
  fi
fi
[ -x "$VIAL_BIN" ] || die "$VIAL_BIN was not built"

TMP=$(mktemp -d /tmp/vial-bench.XXXXXX)
VIAL_PIDS=()
NGINX_PID=""

stop_pid() { # PID: TERM, wait up to 5 s, then KILL; only PIDs we started
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  for pid in "${VIAL_PIDS[@]}"; do stop_pid "$pid"; done
  stop_pid "$NGINX_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- servers ---------------------------------------------------------------

mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
worker_rlimit_nofile 65536;
events {
    worker_connections 16384;
    multi_accept on;
}
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 65s;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location = /plaintext {
            default_type text/plain;
            return 200 "Hello, World!";
        }
        location = /json {
            default_type application/json;
            return 200 '{"message":"Hello, World!"}';
        }
    }
}
EOF

wait_ready() { # NAME PID PORT LOG
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { cat "$4" >&2; die "$1 exited at start"; }
    if curl -s -o /dev/null "http://127.0.0.1:$3/plaintext"; then return 0; fi
    sleep 0.05
  done
  cat "$4" >&2
  die "$1 did not answer on port $3"
}

# vial listens with SO_REUSEPORT: a stale server on the same port would
# silently take half the connections, so insist that the ports are free.
# VIALS: "name port pid" of each vial server, one per backend.
VIALS=()
nb=$(wc -w <<<"$BACKENDS")
i=0
for b in $BACKENDS; do
  if [ "$nb" -eq 1 ]; then name=vial port=$VIAL_PORT; else name=vial-$b port=$((VIAL_PORT + 2 + i)); fi
  VIALS+=("$name $port")
  i=$((i + 1))
done
for port in $(printf '%s\n' "${VIALS[@]}" | awk '{print $2}') "$NGINX_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use (a stale server?); set VIAL_PORT / NGINX_PORT"
  fi
done

i=0
for b in $BACKENDS; do
  set -- ${VIALS[$i]}
  taskset -c "$SERVER_CPU" "$VIAL_BIN" --host 127.0.0.1 --port "$2" --threads 1 --backend "$b" \
    2>"$TMP/$1.log" &
  VIAL_PIDS+=($!)
  wait_ready "$1" "$!" "$2" "$TMP/$1.log"
  grep -q "workers) on $b\$" "$TMP/$1.log" || { cat "$TMP/$1.log" >&2; die "$1 does not run on $b"; }
  VIALS[$i]="$1 $2 $!"
  i=$((i + 1))
done

taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
  -e "$TMP/nginx/logs/error.log" 2>"$TMP/nginx.log" &
NGINX_PID=$!
wait_ready nginx "$NGINX_PID" "$NGINX_PORT" "$TMP/nginx.log"

# --- verify the responses first ----------------------------------------------

check() { # NAME PORT PATH BODY CTYPE_PREFIX
  local name=$1 port=$2 path=$3 want=$4 ctype=$5 h="$TMP/h" b="$TMP/b"
  curl -sS -D "$h" -o "$b" "http://127.0.0.1:$port$path" || die "$name $path: request failed"
  tr -d '\r' <"$h" >"$h.lf"
  head -n1 "$h.lf" | grep -q '^HTTP/1\.1 200 ' || die "$name $path: $(head -n1 "$h.lf")"
  [ "$(cat "$b")" = "$want" ] || die "$name $path: body '$(cat "$b")', want '$want'"
  grep -qi "^content-type: $ctype" "$h.lf" || die "$name $path: Content-Type is not $ctype"
  grep -qi '^server: .' "$h.lf" || die "$name $path: no Server header"
  grep -qi '^date: .' "$h.lf" || die "$name $path: no Date header"
  grep -qi "^content-length: ${#want}\$" "$h.lf" || die "$name $path: wrong Content-Length"
}

check_pipeline() { # NAME PORT: DEPTH pipelined requests in one write, DEPTH answers
  local name=$1 port=$2 req="" n
  for _ in $(seq $((PIPELINE_DEPTH - 1))); do
    req+="GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
  done
  req+="GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
  n=$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$port"'; printf "'"$req"'" >&3; cat <&3' |
    grep -o 'HTTP/1\.1 200 OK' | wc -l)
  [ "$n" -eq "$PIPELINE_DEPTH" ] || die "$name: $n of $PIPELINE_DEPTH pipelined responses were 200"
}

for s in "${VIALS[@]}" "nginx $NGINX_PORT"; do
  set -- $s
  check "$1" "$2" /plaintext 'Hello, World!' 'text/plain'
  check "$1" "$2" /json '{"message":"Hello, World!"}' 'application/json'
  check_pipeline "$1" "$2"
done
echo "responses verified: vial ($BACKENDS) and nginx answer /plaintext, /json and pipelined /plaintext correctly"

# --- runs --------------------------------------------------------------------------

cpu_ticks() { # PID -> utime+stime in clock ticks (fields 14 and 15; comm may hold spaces)
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

cpu_busy() { # CPULIST (taskset syntax: 1 or 1-3,5) -> user+nice+system+irq+steal
  # ticks of those CPUs from /proc/stat (softirq left out: it is mostly the
  # loopback packet processing that the servers' own sends cause, and the
  # kernel does not charge it to the process)
  awk -v list="$1" 'BEGIN {
      n = split(list, parts, ",")
      for (i = 1; i <= n; i++) {
        if (split(parts[i], r, "-") == 2) { for (c = r[1]; c <= r[2]; c++) want["cpu" c] = 1 }
        else want["cpu" parts[i]] = 1
      }
    }
    $1 in want { t += $2 + $3 + $4 + $7 + $9 }
    END { print t + 0 }' /proc/stat
}

run_wrk() { # PORT TEST DURATION -> wrk output on stdout
  local port=$1 test=$2 dur=$3
  local path=/$test extra=()
  if [ "$test" = pipeline ]; then
    path=/plaintext
    extra=(-s "$HERE/pipeline.lua" "http://127.0.0.1:$port$path" -- "$PIPELINE_DEPTH")
  else
    extra=("http://127.0.0.1:$port$path")
  fi
  taskset -c "$CLIENT_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$dur" "${extra[@]}"
}

RAW="$TMP/runs.tsv"
read -r load1 _ </proc/loadavg
echo "load average before the runs: $load1 (other busy processes on CPUs $SERVER_CPU/$CLIENT_CPU skew everything)"
printf 'test\tserver\trun\trequests\treq_per_s\tcpu_us\tcpu_us_per_req\twrk_pct\tsrv_other_pct\tcli_other_pct\terrors\n' >"$RAW"
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION on CPU $CLIENT_CPU; servers on CPU $SERVER_CPU;" \
  "$RUNS interleaved runs; pipeline depth $PIPELINE_DEPTH"

# CPU time of this shell's waited-for children (wrk) so far, in us: `times`
# must run in this shell, not in a $(...) subshell (which has no children).
children_us() { # FILE written by `times`
  awk 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
    printf "%d", t * 1000000 }' "$1"
}
pct() { # TICKS_BUSY US_OWN WALL_US -> percent of the wall time busy with others
  awk -v b="$1" -v o="$2" -v w="$3" -v hz="$HZ" \
    'BEGIN{v = 100 * (b * 1000000 / hz - o) / w; printf "%.1f", v < 0 ? 0 : v}'
}

# srv_oth% / cli_oth%: how busy the server's / wrk's CPU was with anything but
# the server / wrk (other processes, hard interrupts, hypervisor steal;
# softirq excluded). More than a few percent means a noisy run.
# wrk%: wrk's CPU time / wall time (near 100: the client is the bottleneck).
fmt='%-10s %-6s %3s %11s %11s %7s %8s %5s %8s %8s  %s\n'
printf "$fmt" test server run requests req/s cpu_ms us/req wrk% srv_oth% cli_oth% errors
for test in $TESTS; do
  for s in "${VIALS[@]}" "nginx $NGINX_PORT"; do # warm-up, not recorded
    set -- $s
    run_wrk "$2" "$test" "$WARMUP" >/dev/null
  done
  for run in $(seq "$RUNS"); do
    for s in "${VIALS[@]}" "nginx $NGINX_PORT $NGINX_PID"; do
      set -- $s
      name=$1 port=$2 pid=$3
      times >"$TMP/times0"
      t0=$(cpu_ticks "$pid") w0=$(date +%s%N)
      b0=$(cpu_busy "$SERVER_CPU") k0=$(cpu_busy "$CLIENT_CPU")
      run_wrk "$port" "$test" "$DURATION" >"$TMP/wrk.out"
      b1=$(cpu_busy "$SERVER_CPU") k1=$(cpu_busy "$CLIENT_CPU")
      times >"$TMP/times1"
      t1=$(cpu_ticks "$pid") w1=$(date +%s%N)
      c0=$(children_us "$TMP/times0") c1=$(children_us "$TMP/times1")
      out=$(cat "$TMP/wrk.out")
      kill -0 "$pid" 2>/dev/null || die "$name died during $test"
      reqs=$(awk '/ requests in /{print $1}' <<<"$out")
      rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
      [ -n "$reqs" ] && [ -n "$rps" ] || { echo "$out" >&2; die "cannot parse wrk output"; }
      non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' <<<"$out")
      [ -z "$non2xx" ] || { echo "$out" >&2; die "$name answered $non2xx non-2xx responses in $test"; }
      errors=$(awk -F': ' '/Socket errors:/{print $2}' <<<"$out" | tr -d ' ')
      cpu_us=$(( (t1 - t0) * 1000000 / HZ ))
      per=$(awk -v c="$cpu_us" -v r="$reqs" 'BEGIN{printf "%.3f", r ? c / r : 0}')
      wall=$(( (w1 - w0) / 1000 ))
      soth=$(pct $((b1 - b0)) "$cpu_us" "$wall")
      coth=$(pct $((k1 - k0)) $((c1 - c0)) "$wall")
      wrkp=$((100 * (c1 - c0) / wall))
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$test" "$name" "$run" "$reqs" \
        "$rps" "$cpu_us" "$per" "$wrkp" "$soth" "$coth" "${errors:-none}" >>"$RAW"
      printf "$fmt" "$test" "$name" "$run" "$reqs" "$rps" "$((cpu_us / 1000))" "$per" "$wrkp" \
        "$soth" "$coth" "${errors:-}"
    done
  done
done

[ -z "${RESULTS:-}" ] || cp "$RAW" "$RESULTS"

echo
echo "medians of $RUNS runs (CPU us/req: server CPU time during the run / requests served;"
echo "ratio = vial/nginx: req/s ratio > 1 means vial is faster, CPU ratio < 1 means vial is cheaper)"
"$PY" - "$RAW" "${CLEAN_PCT:-10}" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
clean_pct = float(sys.argv[2])
for r in rows:
    r["noise"] = max(float(r["srv_other_pct"]), float(r["cli_other_pct"]))
tests = list(dict.fromkeys(r["test"] for r in rows))
vials = [v for v in dict.fromkeys(r["server"] for r in rows) if v != "nginx"]
hdr = ("test", "vial req/s", "nginx req/s", "ratio", "vial CPU us/req", "nginx CPU us/req", "CPU ratio")


def table(rs):
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join("---" for _ in hdr) + "|")
    for t in tests:
        for vial in vials:
            def med(server, key):
                v = [float(r[key]) for r in rs if r["test"] == t and r["server"] == server]
                return (statistics.median(v), len(v)) if v else (float("nan"), 0)
            (vr, nv), (nr, nn) = med(vial, "req_per_s"), med("nginx", "req_per_s")
            if not nv or not nn:
                print(f"| {t} | (no run of {vial if not nv else 'nginx'}) | | | | | |")
                continue
            (vc, _), (nc, _) = med(vial, "cpu_us_per_req"), med("nginx", "cpu_us_per_req")
            name = {"pipeline": "plaintext pipelined"}.get(t, t)
            if vial != "vial":
                name += " " + vial
            if nv != nn or (rs is not rows and nv < len([r for r in rows if r["test"] == t]) // 2):
                name += f" (runs {nv}/{nn})"
            ratio = vr / nr if nr else float("nan")
            cratio = vc / nc if nc else float("nan")
            print(f"| {name} | {vr:,.0f} | {nr:,.0f} | {ratio:.2f} | {vc:.3f} | {nc:.3f} | {cratio:.2f} |")


table(rows)
clean = [r for r in rows if r["noise"] <= clean_pct]
if len(clean) < len(rows):
    print(f"\nwarning: {len(rows) - len(clean)} of {len(rows)} runs had the server's or wrk's CPU more "
          f"than {clean_pct:g}% busy with other work (srv_oth%/cli_oth%); those runs are unreliable.")
    if clean:
        print(f"medians of the {len(clean)} runs at most {clean_pct:g}% disturbed "
              "(runs vial/nginx shown where they differ):")
        table(clean)
EOF
