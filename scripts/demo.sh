#!/usr/bin/env bash
# Builds vial and starts an example app on 127.0.0.1:8080 (Ctrl-C stops it).
#   scripts/demo.sh [example]      (default: conformance; also: hello)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh build
exec "build/examples/${1:-conformance}" --host 127.0.0.1 --port 8080
