#!/usr/bin/env bash
# A throwaway Redis server for the tests, on loopback.
#
#   tests/services/redis.sh start DIR   starts redis-server with its config,
#                                       pidfile, log and working directory in
#                                       DIR (created if missing) on a free port
#                                       of 127.0.0.1, waits until it answers
#                                       PING, and prints the port on stdout
#   tests/services/redis.sh stop DIR    stops the server whose pid DIR/redis.pid
#                                       names (TERM, then KILL after 5 s) and
#                                       removes DIR
#
# Nothing is persisted (save "" and appendonly no). The config is a file
# (DIR/redis.conf) so that a test may restart the server exactly as it was:
# the server reports the file in INFO server (config_file), and a restart
# rewrites DIR/redis.pid, which is what stop reads.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

free_port() {
  # Bind to port 0 and report what the kernel chose; the small window before
  # redis-server binds it is covered by retrying with another port.
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

alive() { # pid: running, and still a redis-server (a stale pidfile's pid may be reused)
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    case "$(cat "/proc/$1/comm" 2>/dev/null || echo redis-server)" in redis-server*) true ;; *) false ;; esac
}

case "$cmd" in
start)
  command -v redis-server >/dev/null || { echo "redis.sh: redis-server not installed (scripts/deps.sh test)" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
unixsocket $dir/redis.sock
unixsocketperm 700
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
save ""
appendonly no
EOF
    rm -f "$dir/redis.pid"
    redis-server "$dir/redis.conf" >/dev/null 2>&1 || true
    # Up to 5 s for the first PONG.
    for _ in $(seq 1 50); do
      if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)" = PONG ]; then
        echo "$port"
        exit 0
      fi
      sleep 0.1
    done
    # Not up: most likely the port was taken meanwhile. Stop what may have
    # started and try another port.
    pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
    if alive "$pid"; then kill "$pid" 2>/dev/null || true; fi
    echo "redis.sh: redis-server did not answer on port $port (attempt $attempt)" >&2
  done
  tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
  exit 1
  ;;
stop)
  [ -d "$dir" ] || exit 0
  pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -rf "$dir"
  ;;
*)
  usage
  ;;
esac
