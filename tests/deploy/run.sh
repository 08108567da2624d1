#!/usr/bin/env bash
# Scale-out test: nginx (Debian's) on loopback in front of two instances of
# examples/cluster, with a throwaway Redis and PostgreSQL; the checks are in
# test_deploy.py (websocket and SSE through nginx on different instances, a
# load run of GETs during which one instance is SIGKILLed, client address
# from X-Forwarded-For).
#
#   tests/deploy/run.sh [BUILD_DIR]     (default: build)
#
# Everything runs as throwaway processes in a temp dir with free ports; all
# of them are stopped by PID on exit, whatever happens. Bounded: the driver
# gets DEPLOY_TIMEOUT seconds (default 110).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
APP=$BUILD/examples/cluster
NGINX=${NGINX:-/usr/sbin/nginx}
PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
PY=/usr/bin/python3

die() { echo "deploy: $*" >&2; exit 1; }
[ -x "$APP" ] || die "no $APP (built only with the PostgreSQL and Redis clients)"
[ -x "$NGINX" ] || die "no nginx at $NGINX (apt-get install nginx-light)"

TMP=$(mktemp -d /tmp/vial-deploy.XXXXXX)
PG=""
cleanup() {
  # The driver records each process it starts in $TMP/pids; it stops them
  # itself, this is for when it could not (killed, timed out).
  if [ -f "$TMP/pids" ]; then
    while read -r pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done <"$TMP/pids"
  fi
  [ -n "$PG" ] && tests/services/pg.sh stop "$PG" >/dev/null 2>&1 || true
  tests/services/redis.sh stop "$TMP/redis" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
REDIS_PORT=$(tests/services/redis.sh start "$TMP/redis")
PG=$(tests/services/pg.sh start)
"$PSQL" -q -X -v ON_ERROR_STOP=1 "$PG" -c \
  "create table cluster_messages (id bigserial primary key, instance text not null, body text not null)" \
  || die "cannot create the schema"
echo "deploy: redis on $REDIS_PORT, postgres '$PG' ($(( $(date +%s) - t0 )) s)"

DEPLOY_APP=$APP DEPLOY_NGINX=$NGINX DEPLOY_TMP=$TMP DEPLOY_PG=$PG \
  DEPLOY_REDIS=127.0.0.1:$REDIS_PORT \
  timeout -s KILL "${DEPLOY_TIMEOUT:-110}" $PY tests/deploy/test_deploy.py
echo "deploy: passed in $(( $(date +%s) - t0 )) s"
