#!/usr/bin/env bash
# Configures and builds one build directory.
#   scripts/build.sh [DIR] [cmake args...]     (default DIR: build)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
./scripts/deps.sh
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
fi
ninja -C "$dir" >/dev/null
