#!/usr/bin/env bash
# Configures and builds one build directory.
#   scripts/build.sh [DIR] [cmake args...]     (default DIR: build)
# A new DIR is configured with the arguments; an existing one is configured
# again when arguments are given (so they take effect), else only built.
# Quiet when all is well: ninja's progress lines are dropped, but compiler
# warnings are printed, and on failure everything cmake said, or every
# compiler error and the failed commands.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
./scripts/deps.sh build
log=$(mktemp /tmp/vial-build.XXXXXX)
trap 'rm -f "$log"' EXIT
progress='^(\[[0-9]+/[0-9]+\] |ninja: (Entering|Leaving) directory|ninja: no work to do)'
if [ ! -f "$dir/build.ninja" ] || [ $# -gt 0 ]; then
  if ! cmake -S . -B "$dir" -G Ninja "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "build.sh: cmake failed in $dir" >&2
    exit 1
  fi
fi
if ! ninja -C "$dir" >"$log" 2>&1; then
  grep -vE "$progress" "$log" >&2 || true
  echo "build.sh: build failed in $dir" >&2
  exit 1
fi
grep -vE "$progress" "$log" >&2 || true
