# Sourced by bench/pg-limit.sh, pg-perf.sh and pg-core.sh (needs PG, SERVER_CPU,
# HERE and die): sets PM to the postmaster's PID, pins PostgreSQL to
# SERVER_CPU (the postmaster, whose new backends inherit it, and what
# already runs) and loads bench/techempower.sql (drops and recreates World
# and Fortune). PG must be a server on this machine whose postmaster.pid
# this user can read (tests/services/pg.sh start makes one).
pg_setup() {
  local data pid
  data=$(psql "$PG" -Atc "show data_directory")
  PM=$(head -1 "$data/postmaster.pid") || die "cannot read $data/postmaster.pid"
  for pid in $PM $(pgrep -P "$PM"); do
    taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null
  done
  psql "$PG" -v ON_ERROR_STOP=1 -q -f "$HERE/techempower.sql" 2>/dev/null
}

# Starts $BUILD/bench/techempower on SERVER_CPU at PORT (--threads 1; its
# stderr in $OUT/server.log), stops it on exit; SRV is its pid.
pg_server_start() {
  TECHEMPOWER_PG="$PG" taskset -c "$SERVER_CPU" "$BUILD/bench/techempower" --host 127.0.0.1 \
    --port "$PORT" --threads 1 2>"$OUT/server.log" &
  SRV=$!
  trap 'kill -TERM $SRV 2>/dev/null || true; wait $SRV 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/db" && break
    kill -0 "$SRV" 2>/dev/null || die "server exited: $(cat "$OUT/server.log")"
    sleep 0.1
  done
}
