# Sourced by bench/pg-limit.sh and bench/pg-perf.sh (needs PG, SERVER_CPU,
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
