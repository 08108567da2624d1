#!/usr/bin/env bash
# What TLS costs per request: /plaintext (bench/techempower.c) over keep-alive
# connections, plain and over TLS (a throwaway EC P-256 certificate; TLS 1.3,
# AES-256-GCM as OpenSSL and wrk negotiate it), and with a new connection
# per request (Connection: close: a TCP connect, and a TLS handshake, for
# each; wrk resumes no sessions, so these are full handshakes).
#   bench/tls.sh            (after scripts/build.sh build; about a minute)
# Two servers, --threads 1 each, one plain and one with --tls-cert. Each run
# is wrk for DURATION seconds; the figures are req/s and the server's CPU
# time (utime+stime from /proc/PID/stat) over the requests wrk completed,
# which a shared, busy machine disturbs much less than req/s. Medians of
# RUNS runs.
# Environment: BUILD [build] DURATION [3] RUNS [3] CONNECTIONS [8] PORT [18994]
#   EXTRA: more server options for both (e.g. "--log-level debug")
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DURATION=${DURATION:-3}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-8}
PORT=${PORT:-18994}
BIN=$BUILD/bench/techempower
[ -x "$BIN" ] || { echo "tls.sh: $BIN missing (scripts/build.sh $BUILD)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "tls.sh: wrk is missing (scripts/deps.sh test)" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tmp/key.pem" \
  -out "$tmp/cert.pem" -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null

# shellcheck disable=SC2086
"$BIN" --port "$PORT" --threads 1 --workers 1 ${EXTRA:-} 2>"$tmp/plain.log" &
pids+=($!); plain_pid=$!
# shellcheck disable=SC2086
"$BIN" --port $((PORT + 1)) --threads 1 --workers 1 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" \
  ${EXTRA:-} 2>"$tmp/tls.log" &
pids+=($!); tls_pid=$!
for _ in $(seq 50); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/plaintext" &&
    curl -sf -o /dev/null --cacert "$tmp/cert.pem" "https://127.0.0.1:$((PORT + 1))/plaintext" && break
  sleep 0.1
done
curl -sf --cacert "$tmp/cert.pem" "https://127.0.0.1:$((PORT + 1))/plaintext" | grep -q "Hello, World!" ||
  { echo "tls.sh: the TLS server does not answer"; cat "$tmp/tls.log"; exit 1; } >&2

cpu_ticks() { # utime+stime in clock ticks (fields 14 and 15; comm may hold spaces)
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
hz=$(getconf CLK_TCK)
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

run() { # LABEL PID URL [wrk args...]
  local label=$1 pid=$2 url=$3 rates=() costs=()
  shift 3
  for _ in $(seq "$RUNS"); do
    local t0 t1 out n
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$@" "$url")
    t1=$(cpu_ticks "$pid")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    if echo "$out" | grep -q "Non-2xx"; then echo "tls.sh: $label: non-2xx answers" >&2; exit 1; fi
    rates+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
    costs+=("$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", d * 1e6 / hz / n}')")
  done
  printf '%-28s %10s %12s\n' "$label" "$(printf '%s\n' "${rates[@]}" | median)" \
    "$(printf '%s\n' "${costs[@]}" | median)"
}

echo "wrk -t1 -c$CONNECTIONS -d${DURATION}s, medians of $RUNS; server --threads 1"
printf '%-28s %10s %12s\n' "" "req/s" "cpu_us/req"
run "keep-alive plain" "$plain_pid" "http://127.0.0.1:$PORT/plaintext"
run "keep-alive TLS" "$tls_pid" "https://127.0.0.1:$((PORT + 1))/plaintext"
run "new connection plain" "$plain_pid" "http://127.0.0.1:$PORT/plaintext" -H "Connection: close"
run "new connection TLS" "$tls_pid" "https://127.0.0.1:$((PORT + 1))/plaintext" -H "Connection: close"
