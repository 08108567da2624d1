#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, on loopback only.
#
#   tests/services/pg.sh start            prints the conninfo on stdout:
#                                         host=127.0.0.1 port=P user=postgres dbname=postgres
#   tests/services/pg.sh stop CONNINFO    fast shutdown, then the temp dir is removed
#   tests/services/pg.sh restart CONNINFO fast shutdown and start again (same port, same data)
#   tests/services/pg.sh dir CONNINFO     prints the server's temp dir
#
# start: initdb (trust auth, user postgres) into a fresh temp dir
# ${TMPDIR:-/tmp}/vial-pg.P.XXXXXX, starts postgres on 127.0.0.1:P (a free
# port) with its unix socket in that dir, and waits until it accepts
# connections. The dir is named after the port so that stop/restart can find
# it from the conninfo alone. postgres refuses to run as root, so when run as
# root the server runs as the 'postgres' OS user (runuser), owning the dir.
#
# Typical use (what scripts/test.sh does):
#   VIAL_TEST_PG=$(tests/services/pg.sh start); export VIAL_TEST_PG
#   trap 'tests/services/pg.sh stop "$VIAL_TEST_PG"' EXIT
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
TMPROOT=${TMPDIR:-/tmp}

die() { echo "pg.sh: $*" >&2; exit 1; }

[ -x "$PGBIN/postgres" ] || die "no PostgreSQL binaries in $PGBIN (run scripts/deps.sh test)"

# Runs a command as the server's owner: 'postgres' when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

port_of() {
  local p
  p=$(printf '%s\n' "$1" | sed -n 's/.*port=\([0-9][0-9]*\).*/\1/p')
  [ -n "$p" ] || die "no port= in '$1'"
  echo "$p"
}

dir_of() {
  local port d
  port=$(port_of "$1")
  for d in "$TMPROOT"/vial-pg."$port".*; do
    if [ -f "$d/.vial-pg" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# Starts the server in $dir on $port; returns non-zero if it did not come up.
launch() {
  local dir=$1 port=$2
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200" \
    start >/dev/null 2>&1 || return 1
  # pg_ctl -w waits for the postmaster; make sure TCP answers too.
  local i
  for i in $(seq 1 100); do
    if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

stop_dir() {
  local dir=$1
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
}

cmd=${1:-}
case "$cmd" in
  start)
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      dir=$(mktemp -d "$TMPROOT/vial-pg.$port.XXXXXX")
      touch "$dir/.vial-pg"
      if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$dir"
      fi
      as_owner "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || {
          cat "$dir/initdb.log" >&2
          rm -rf "$dir"
          die "initdb failed"
        }
      if launch "$dir" "$port"; then
        echo "host=127.0.0.1 port=$port user=postgres dbname=postgres"
        exit 0
      fi
      # Most likely the port was taken between the probe and the bind: retry.
      tail -n 5 "$dir/log" >&2 2>/dev/null || true
      stop_dir "$dir"
      rm -rf "$dir"
    done
    die "could not start postgres"
    ;;
  stop)
    [ $# -ge 2 ] || die "usage: pg.sh stop CONNINFO"
    dir=$(dir_of "$2") || die "no server dir for '$2'"
    stop_dir "$dir"
    rm -rf "$dir"
    ;;
  restart)
    [ $# -ge 2 ] || die "usage: pg.sh restart CONNINFO"
    dir=$(dir_of "$2") || die "no server dir for '$2'"
    port=$(port_of "$2")
    stop_dir "$dir"
    launch "$dir" "$port" || die "restart failed (see $dir/log)"
    ;;
  dir)
    [ $# -ge 2 ] || die "usage: pg.sh dir CONNINFO"
    dir_of "$2" || die "no server dir for '$2'"
    ;;
  *)
    echo "usage: pg.sh start | stop CONNINFO | restart CONNINFO | dir CONNINFO" >&2
    exit 2
    ;;
esac
