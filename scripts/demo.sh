#!/usr/bin/env bash
# Builds vial and serves the demo application, a live team task board, on
# http://127.0.0.1:8080 (Ctrl-C stops it). Its data goes to ./demo.db (or
# $DEMO_DB); with DATABASE_URL=postgresql://... set it uses PostgreSQL.
#   scripts/demo.sh [EXAMPLE] [OPTIONS...]
# EXAMPLE: demo (default), conformance (the test suite's app) or hello;
# OPTIONS go to the program (--port 9000, --help). VIAL_PORT and VIAL_HOST
# choose the address too.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh build
app=demo
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  app=$1
  shift
fi
exec "build/examples/$app" --host "${VIAL_HOST:-127.0.0.1}" --port "${VIAL_PORT:-8080}" "$@"
